//! Liveness of the consumer: when is it stalled, and so not ready.
//!
//! The consumer makes progress when it receives messages, or when it is caught
//! up (no lag on any assigned partition), holds its assignment (not between a
//! revoke and the next assign, and has joined at all) and the broker is answering (its response
//! counter moved since the previous statistics report). It is **stalled** when
//! neither happened for `stall_timeout`: behind but not consuming, stuck
//! rejoining its group, or cut off from a broker that does not answer (a
//! paused or partitioned broker: then the lag is unknown, and silence is what
//! shows).
//! `/readyz` answers 503 while the consumer is stalled or has not joined its
//! group yet; nothing else is needed to recover: librdkafka reconnects and
//! rejoins by itself, the next message or caught-up report clears the stall.
//!
//! **One partition stuck** while the others flow — its fetch position has
//! not moved for `stall_timeout` though the broker holds messages past it,
//! and nothing of it is fetched and waiting — is no progress either: a
//! batch the consumer cannot read (a codec it lacks, a corrupt batch: only
//! librdkafka's log says so) stopped that partition, and its slices would be
//! watched no more while the service looked healthy. `/readyz` names it.
//!
//! A consumer that should read every partition (one instance, no
//! `scale_out`: [`Health::expecting_partitions`]) and holds none while its
//! topics have some is not caught up but idle — another member of its group
//! holds them, or the group is stuck after a broker restart — so that is no
//! progress either: it stalls and says why.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One assigned partition's fetch, by the statistics reports.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    /// The next offset to fetch, and since when it is that.
    next: i64,
    since: Instant,
    /// Messages the broker serves past it (end − `next_offset`).
    behind: i64,
    /// Fetched messages waiting for the application.
    queued: i64,
    /// The report that last named it.
    seen: Instant,
}

#[derive(Debug)]
struct State {
    last_progress: Instant,
    /// Broker responses counted by the previous statistics report.
    last_rx: Option<u64>,
    /// Messages behind, by the last statistics report (approximate).
    lag: i64,
    joined: bool,
    /// Between a revoke and the next assign.
    rebalancing: bool,
    stalled: bool,
    /// Whether this consumer should hold partitions whenever its topics
    /// have any (one instance reads them all).
    expects_partitions: bool,
    /// Partitions assigned, and partitions its topics have, by the last
    /// statistics report.
    assigned: usize,
    available: usize,
    /// How recent progress must be for the stream to count as confirmed
    /// quiet ([`Health::confirmed`]); `None`: statistics are off, nothing
    /// can confirm it, every quiet stretch counts.
    confirm_within: Option<Duration>,
    /// Holding some of its topics' partitions but not all, without
    /// `scale_out` (warned once until it holds them all again).
    partial: bool,
    /// Since when librdkafka reports every broker down (cleared by the
    /// next progress or assignment): what a stall is then about.
    brokers_down: Option<Instant>,
    /// When messages last came.
    last_messages: Option<Instant>,
    /// Each assigned partition's fetch, by (topic, partition).
    fetch: HashMap<(String, i32), Fetch>,
    /// The stuck partitions last warned about.
    stuck: BTreeSet<(String, i32)>,
}

impl State {
    /// Joined, holding nothing, while its topics have partitions to read.
    fn holds_none(&self) -> bool {
        self.expects_partitions && self.joined && self.assigned == 0 && self.available > 0
    }

    /// Joined and settled, holding some of its topics' partitions but not
    /// all: another consumer of its group holds the rest.
    fn holds_part(&self) -> bool {
        self.expects_partitions
            && self.joined
            && !self.rebalancing
            && self.assigned > 0
            && self.assigned < self.available
    }
}

/// Shared between the consumer thread (which reports) and the engine stage
/// (which checks and sets readiness).
#[derive(Debug)]
pub(crate) struct Health {
    state: Mutex<State>,
}

/// What [`Health::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// Whether `/readyz` should answer 200.
    pub(crate) ready: bool,
    /// Whether the consumer is stalled.
    pub(crate) stalled: bool,
    /// Why it is not ready, for `/readyz`.
    pub(crate) why: Option<String>,
}

impl Health {
    /// A consumer that has just started (not joined yet).
    pub(crate) fn new(now: Instant) -> Self {
        Health {
            state: Mutex::new(State {
                last_progress: now,
                last_rx: None,
                lag: 0,
                joined: false,
                rebalancing: false,
                stalled: false,
                expects_partitions: false,
                assigned: 0,
                available: 0,
                confirm_within: Some(Duration::from_secs(3)),
                partial: false,
                brokers_down: None,
                last_messages: None,
                fetch: HashMap::new(),
                stuck: BTreeSet::new(),
            }),
        }
    }

    /// The consumer's statistics come every `interval_ms` (librdkafka's
    /// `statistics.interval.ms`; 0: off): progress is confirmed within three
    /// of them (at least 3 s).
    pub(crate) fn with_statistics_interval(self, interval_ms: u64) -> Self {
        self.lock().confirm_within = (interval_ms > 0).then(|| {
            Duration::from_millis(interval_ms.saturating_mul(3)).max(Duration::from_secs(3))
        });
        self
    }

    /// Whether the consumer made progress (messages, or caught up with a
    /// broker that answers) recently enough that a quiet stream is known to
    /// be quiet, not cut off: while the broker does not answer or the
    /// consumer is behind, event time must not follow the wall clock — the
    /// events of that stretch are still on their way. Always `true` when
    /// statistics are off.
    pub(crate) fn confirmed(&self, now: Instant) -> bool {
        let s = self.lock();
        s.confirm_within
            .is_none_or(|w| now.saturating_duration_since(s.last_progress) <= w)
    }

    /// A consumer that reads every partition of its topics (no
    /// `scale_out`): holding none of them is no progress.
    pub(crate) fn expecting_partitions(self) -> Self {
        self.lock().expects_partitions = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages were received.
    pub(crate) fn on_messages(&self, now: Instant) {
        let mut s = self.lock();
        s.last_progress = now;
        s.last_messages = Some(now);
        s.brokers_down = None;
    }

    /// A statistics report's figures of one assigned partition: its next
    /// offset to fetch, the end a fetch can reach (the last stable offset,
    /// else the high watermark) and the messages fetched but not handed to
    /// the application (call before [`Health::on_stats`], which forgets the
    /// partitions the report did not name).
    pub(crate) fn on_partition(
        &self,
        now: Instant,
        topic: &str,
        partition: i32,
        next_offset: i64,
        end_offset: i64,
        queued: i64,
    ) {
        let mut s = self.lock();
        let behind = if next_offset >= 0 && end_offset >= 0 {
            (end_offset - next_offset).max(0)
        } else {
            0
        };
        let f = s
            .fetch
            .entry((topic.to_string(), partition))
            .or_insert(Fetch {
                next: next_offset,
                since: now,
                behind,
                queued,
                seen: now,
            });
        if f.next != next_offset || behind == 0 || queued > 0 {
            f.since = now;
        }
        f.next = next_offset;
        f.behind = behind;
        f.queued = queued;
        f.seen = now;
    }

    /// The group assigned partitions to this instance (possibly none).
    pub(crate) fn on_assigned(&self, now: Instant) {
        let mut s = self.lock();
        s.joined = true;
        s.rebalancing = false;
        s.last_progress = now;
        s.brokers_down = None;
    }

    /// librdkafka reports that it reaches none of the brokers.
    pub(crate) fn on_brokers_down(&self, now: Instant) {
        self.lock().brokers_down.get_or_insert(now);
    }

    /// The group revoked this instance's partitions: no progress until the next assign.
    pub(crate) fn on_revoked(&self) {
        self.lock().rebalancing = true;
    }

    /// A statistics report: total broker responses so far, the total lag
    /// of the assigned partitions (0 when none or unknown), how many
    /// partitions are assigned and how many the topics have.
    pub(crate) fn on_stats(
        &self,
        now: Instant,
        broker_rx: u64,
        lag: i64,
        assigned: usize,
        available: usize,
    ) {
        let mut s = self.lock();
        s.fetch.retain(|_, f| f.seen == now);
        let answering = s.last_rx.is_some_and(|r| broker_rx > r);
        s.last_rx = Some(broker_rx);
        if answering {
            // A broker answers again (a quiet stream has no messages to say so).
            s.brokers_down = None;
        }
        s.lag = lag;
        s.assigned = assigned;
        s.available = available;
        if answering && lag <= 0 && s.joined && !s.rebalancing && !s.holds_none() {
            s.last_progress = now;
        }
        // Another consumer in the group (a second replica, a second `run`
        // with the same `group_id`) without `scale_out`: each counts only
        // its own partitions' events, so per-slice indicators and pages are
        // wrong on both. Not a readiness failure (a rolling update overlaps
        // two replicas for a while, and the new one must become ready for
        // the old one to stop), but said loudly, once.
        if s.holds_part() && !s.partial {
            s.partial = true;
            tracing::warn!(
                assigned = s.assigned,
                partitions = s.available,
                "Kafka consumer holds {} of its topics' {} partitions: another consumer in its group holds the rest. Right after a restart that is usually this instance's predecessor, stopped without leaving the group (kill -9, a crash): the group gives its partitions back within session.timeout.ms, and a line saying the consumer holds all of them again follows. Otherwise it is a second instance with the same group_id, and without sources.kafka.scale_out each instance counts only the events of its own partitions (a slice's complaints and its orders, a complaint and its response, can land on different ones) — its indicators and incidents are wrong: give each instance its own group_id, or turn on scale_out.",
                s.assigned,
                s.available
            );
        } else if s.partial && s.expects_partitions && s.assigned >= s.available && s.available > 0
        {
            s.partial = false;
            tracing::info!(
                partitions = s.available,
                "Kafka consumer holds all of its topics' partitions again."
            );
        }
    }

    /// Whether the consumer holds only part of its topics' partitions
    /// without `scale_out` (another consumer in its group has the rest).
    #[cfg(test)]
    pub(crate) fn split(&self) -> bool {
        self.lock().partial
    }

    /// Decides readiness now; logs when the consumer stalls or recovers.
    pub(crate) fn check(&self, now: Instant, stall_timeout: Duration) -> Status {
        let mut s = self.lock();
        let quiet = now.saturating_duration_since(s.last_progress);
        let stalled = quiet > stall_timeout;
        if stalled && !s.stalled && s.brokers_down.is_some() {
            tracing::warn!(
                quiet_s = quiet.as_secs(),
                "Kafka consumer reaches none of its brokers (all brokers down); not ready until they answer."
            );
        } else if stalled && !s.stalled && s.holds_none() {
            tracing::warn!(
                quiet_s = quiet.as_secs(),
                partitions = s.available,
                "Kafka consumer holds none of its topics' partitions: another member of its group holds them, or the group is stuck (after a broker restart, restarting the service rejoins it); not ready."
            );
        } else if stalled && !s.stalled {
            tracing::warn!(
                quiet_s = quiet.as_secs(),
                lag = s.lag,
                joined = s.joined,
                "Kafka consumer stalled: no progress while behind or while the broker does not answer; not ready."
            );
        } else if !stalled && s.stalled {
            tracing::info!(lag = s.lag, "Kafka consumer progressing again; ready.");
        }
        s.stalled = stalled;
        // Partitions stuck while the others flow (messages came within the
        // timeout): not when the whole consumer stands still (said above).
        let flowing = s
            .last_messages
            .is_some_and(|t| now.saturating_duration_since(t) <= stall_timeout);
        let stuck: Vec<((String, i32), Fetch)> = if stalled || !flowing || s.rebalancing {
            Vec::new()
        } else {
            s.fetch
                .iter()
                .filter(|(_, f)| {
                    f.behind > 0
                        && f.queued <= 0
                        && now.saturating_duration_since(f.since) > stall_timeout
                })
                .map(|(k, f)| (k.clone(), *f))
                .collect()
        };
        let names: BTreeSet<(String, i32)> = stuck.iter().map(|(k, _)| k.clone()).collect();
        for ((topic, partition), f) in &stuck {
            if !s.stuck.contains(&(topic.clone(), *partition)) {
                tracing::error!(
                    topic = %topic,
                    partition,
                    offset = f.next,
                    behind = f.behind,
                    quiet_s = now.saturating_duration_since(f.since).as_secs(),
                    "Kafka consumer reads nothing more of this partition while it reads the others: its fetch stays at this offset though the broker holds messages past it — a batch it cannot read (librdkafka's log names why) or a broker that does not serve the partition; its events are not applied, its slices not watched. Not ready."
                );
            }
        }
        if names.is_empty() && !s.stuck.is_empty() {
            tracing::info!("Every partition is read again.");
        }
        s.stuck = names;
        let stuck_why = stuck.first().map(|((topic, partition), f)| {
            format!(
                "the Kafka consumer reads nothing more of {topic}[{partition}] (fetch at offset {}, {} messages behind, for {}s{}) while it reads the others: a batch it cannot read, or a broker that does not serve it (see the log)",
                f.next,
                f.behind,
                now.saturating_duration_since(f.since).as_secs(),
                if stuck.len() > 1 {
                    format!("; {} more partitions so", stuck.len() - 1)
                } else {
                    String::new()
                }
            )
        });
        let why = if stalled && s.brokers_down.is_some() {
            // Not a group problem: no partition is held because no broker answers.
            Some("the Kafka consumer reaches none of its brokers (librdkafka: all brokers down; it reconnects by itself): check the brokers and the network")
        } else if stalled && s.holds_none() {
            Some("the Kafka consumer holds none of its topics' partitions: another member of its group holds them, or the group is stuck (see the log)")
        } else if stalled {
            Some("the Kafka consumer is stalled: behind but not consuming, rejoining its group, or the broker does not answer (see the log)")
        } else if !s.joined {
            Some("the Kafka consumer has not joined its group yet (after a crash the group waits up to session.timeout.ms for the old member)")
        } else {
            None
        };
        let why = why.map(String::from).or(stuck_why);
        Status {
            ready: s.joined && !stalled && stuck.is_empty(),
            stalled: stalled || !stuck.is_empty(),
            why,
        }
    }
}

#[cfg(test)]
mod tests;
