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
//! A consumer that should read every partition (one instance, no
//! `scale_out`: [`Health::expecting_partitions`]) and holds none while its
//! topics have some is not caught up but idle — another member of its group
//! holds them, or the group is stuck after a broker restart — so that is no
//! progress either: it stalls and says why.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// Whether `/readyz` should answer 200.
    pub(crate) ready: bool,
    /// Whether the consumer is stalled.
    pub(crate) stalled: bool,
    /// Why it is not ready, for `/readyz`.
    pub(crate) why: Option<&'static str>,
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
        s.brokers_down = None;
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
                "Kafka consumer holds {} of its topics' {} partitions: another consumer in its group holds the rest, and without sources.kafka.scale_out each instance counts only the events of its own partitions (a slice's complaints and its orders, a complaint and its response, can land on different ones) — its indicators and incidents are wrong. Give each instance its own group_id, or turn on scale_out.",
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
        Status {
            ready: s.joined && !stalled,
            stalled,
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn quiet_is_confirmed_only_while_progress_is_recent() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let h = Health::new(t0);
        h.on_assigned(t0);
        assert!(h.confirmed(at(3_000)));
        assert!(
            !h.confirmed(at(3_001)),
            "the broker has not answered for 3 s"
        );
        // Statistics every second, the broker answering, nothing behind.
        h.on_stats(at(3_500), 10, 0, 1, 1);
        h.on_stats(at(4_500), 11, 0, 1, 1);
        assert!(h.confirmed(at(5_000)));
        // Answering but behind: not confirmed.
        h.on_stats(at(9_000), 12, 500, 1, 1);
        assert!(!h.confirmed(at(9_000)));
        // Statistics every 5 s: confirmed within 15 s.
        let slow = Health::new(t0).with_statistics_interval(5_000);
        assert!(slow.confirmed(at(15_000)) && !slow.confirmed(at(15_001)));
        // Statistics off: nothing can confirm it, every stretch counts.
        let off = Health::new(t0).with_statistics_interval(0);
        assert!(off.confirmed(at(3_600_000)));
    }

    #[test]
    fn ready_after_joining_until_progress_stops() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        let s = h.check(t0, T);
        assert!(!s.ready, "not joined yet");
        assert!(s.why.is_some_and(|w| w.contains("not joined")), "{s:?}");
        h.on_assigned(t0);
        assert!(h.check(t0, T).ready);
        assert_eq!(h.check(t0, T).why, None);
        h.on_messages(t0 + Duration::from_secs(8));
        assert!(h.check(t0 + Duration::from_secs(15), T).ready);
        let s = h.check(t0 + Duration::from_secs(19), T);
        assert!(!s.ready && s.stalled);
        assert!(s.why.is_some_and(|w| w.contains("stalled")), "{s:?}");
        h.on_messages(t0 + Duration::from_secs(20));
        assert!(h.check(t0 + Duration::from_secs(20), T).ready, "recovers");
    }

    #[test]
    fn caught_up_with_an_answering_broker_is_progress() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        h.on_assigned(t0);
        let at = |s| t0 + Duration::from_secs(s);
        h.on_stats(at(1), 100, 0, 2, 2);
        h.on_stats(at(9), 120, 0, 2, 2);
        assert!(
            h.check(at(18), T).ready,
            "the broker answered at 9 s, no lag"
        );
        // Behind: broker answers but nothing is consumed.
        h.on_stats(at(19), 140, 500, 2, 2);
        assert!(!h.check(at(20), T).ready);
        // Caught up but the broker went silent (paused): still stalled.
        h.on_stats(at(21), 140, 0, 2, 2);
        assert!(!h.check(at(21), T).ready);
        h.on_stats(at(22), 141, 0, 2, 2);
        assert!(h.check(at(22), T).ready);
        // Rejoining the group after the session was lost is not progress.
        h.on_revoked();
        h.on_stats(at(30), 150, 0, 2, 2);
        assert!(!h.check(at(33), T).ready);
        h.on_assigned(at(34));
        assert!(h.check(at(34), T).ready);
    }

    /// A stall while librdkafka reports every broker down says so, not
    /// "another member holds the partitions"; progress clears it.
    #[test]
    fn a_stall_with_every_broker_down_names_the_brokers() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let h = Health::new(t0).expecting_partitions();
        h.on_assigned(t0);
        h.on_stats(at(1), 100, 0, 4, 4);
        h.on_brokers_down(at(2));
        // The group lost the partitions meanwhile: none held.
        h.on_revoked();
        h.on_assigned(at(2));
        h.on_brokers_down(at(3));
        h.on_stats(at(3), 100, 0, 0, 4);
        let s = h.check(at(20), T);
        assert!(!s.ready && s.stalled, "{s:?}");
        assert!(
            s.why
                .is_some_and(|w| w.contains("reaches none of its brokers")),
            "{s:?}"
        );
        h.on_messages(at(21));
        h.on_stats(at(21), 120, 0, 4, 4);
        let s = h.check(at(21), T);
        assert!(s.ready && s.why.is_none(), "{s:?}");
        // Down again, then back on a quiet stream (answers, no message),
        // then stalled for another reason: not named as brokers down.
        h.on_brokers_down(at(22));
        h.on_stats(at(23), 130, 0, 4, 4);
        h.on_stats(at(24), 131, 500, 4, 4);
        let s = h.check(at(40), T);
        assert!(s.stalled, "{s:?}");
        assert!(s.why.is_some_and(|w| !w.contains("brokers")), "{s:?}");
    }

    /// One instance holding part of its topics' partitions (a second
    /// replica in its group, without `scale_out`) is said to be split, and
    /// stays ready; a scaled-out member with part of them is fine.
    #[test]
    fn holding_part_of_the_partitions_without_scale_out_is_a_split() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let alone = Health::new(t0).expecting_partitions();
        let member = Health::new(t0);
        for h in [&alone, &member] {
            h.on_assigned(t0);
            h.on_stats(at(1), 100, 0, 4, 4);
            assert!(!h.split());
            h.on_stats(at(2), 101, 0, 2, 4);
        }
        assert!(alone.split() && alone.check(at(2), T).ready);
        assert!(!member.split());
        // While a rebalance runs, nothing is said; all four back: no split.
        alone.on_revoked();
        alone.on_assigned(at(3));
        alone.on_stats(at(4), 102, 0, 4, 4);
        assert!(!alone.split());
    }

    /// One instance holding none of its topics' partitions (a group stuck
    /// after a broker restart) is stalled, not caught up; a scaled-out
    /// member with none (more instances than partitions) is fine.
    #[test]
    fn holding_no_partition_of_existing_topics_is_no_progress_for_one_instance() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let alone = Health::new(t0).expecting_partitions();
        let member = Health::new(t0);
        for h in [&alone, &member] {
            h.on_assigned(t0);
            for s in 1..=20 {
                h.on_stats(at(s), 100 + s, 0, 0, 4);
            }
        }
        let s = alone.check(at(20), T);
        assert!(!s.ready && s.stalled, "{s:?}");
        assert!(s.why.is_some_and(|w| w.contains("holds none")), "{s:?}");
        assert!(member.check(at(20), T).ready);
        // Topics without partitions (not created yet): nothing to hold.
        let empty = Health::new(t0).expecting_partitions();
        empty.on_assigned(t0);
        for s in 1..=20 {
            empty.on_stats(at(s), 100 + s, 0, 0, 0);
        }
        assert!(empty.check(at(20), T).ready);
        // Assigned again: progress.
        alone.on_assigned(at(21));
        alone.on_stats(at(22), 200, 0, 4, 4);
        assert!(alone.check(at(22), T).ready);
    }
}
