//! librdkafka's callbacks for the consumer: rebalances, commits, statistics, logs.
//!
//! Every callback runs on the consumer thread, inside `poll`. The context also
//! holds the batch being filled, so a revoke that interrupts a poll can hand
//! it over before draining: on revoke the engine stage applies everything
//! consumed so far (a barrier through the same channel), the offsets are
//! committed synchronously, and only then are the partitions released.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::health::Health;
use super::metrics::SourceMetrics;
use super::offsets::OffsetTracker;
use super::{Batch, Partition, SourceMsg};
use crate::event::DecodeLimits;

/// State shared by the consumer thread, the engine stage and the dead-letter tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Configured topic names; a [`Partition`]'s `topic` indexes this.
    pub(crate) topics: Vec<String>,
    /// What may be committed.
    pub(crate) tracker: Mutex<OffsetTracker>,
    /// Consumer liveness.
    pub(crate) health: Health,
    /// Consumer metrics.
    pub(crate) metrics: SourceMetrics,
    /// Set by the consumer thread before its final drain: the engine stage
    /// writes its last checkpoint at that drain and none after (the consumer
    /// then forgets its partitions).
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// How the consumer thread decodes messages before handing them over.
    pub(crate) arrival: ArrivalDecode,
    /// When the consumer thread last handed over a valid event of each
    /// partition: a partition with events on their way to the engine stage is
    /// not idle ([`Watermarks::received`](super::watermarks::Watermarks::received)).
    pub(crate) delivered: Mutex<BTreeMap<Partition, Instant>>,
    /// Partitions the broker holds messages of that the consumer has not
    /// handed over yet (lag above 0 in librdkafka's latest statistics), and
    /// partitions assigned that have handed nothing over since and that the
    /// statistics have not shown caught up: such a partition is starved by
    /// the consumer (it serves another partition's backlog first), not idle
    /// ([`Shared::backlogged`]).
    pub(crate) backlog: Mutex<BTreeMap<Partition, Backlog>>,
    /// How long after its last hand-over a partition with a backlog still
    /// counts as delivering (a lag that never drops — a transaction marker
    /// at the end of a partition — must not hold the clock for ever).
    pub(crate) backlog_hold: Duration,
}

/// Why a partition counts as starved rather than idle ([`Shared::backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backlog {
    /// Its lag was above 0 in the statistics seen then, within
    /// `backlog_hold` of its last hand-over.
    Lag(Instant),
    /// Assigned then; nothing handed over since, and no statistics since
    /// showed it caught up. Before its first hand-over a partition's lag may
    /// be unknown (no high watermark before its first fetch, no consumed
    /// offset) or seen only late: the consumer thread stops polling while
    /// the engine stage pushes back, and the statistics come from its polls.
    Assigned(Instant),
}

/// The decoding settings of the consumer thread: the engine's limits (a
/// configuration reload may change them: the engine stage then sets them
/// here, and decodes again any batch decoded with the old ones), each
/// topic's default type, and the watch for values in another form than the
/// selectors name them (`super::forms`).
#[derive(Debug)]
pub(crate) struct ArrivalDecode {
    limits: Mutex<DecodeLimits>,
    default_types: Vec<Option<String>>,
    forms: Mutex<super::forms::Forms>,
}

impl ArrivalDecode {
    /// Settings for `default_types` (per topic, by index) and `limits`,
    /// watching for the values `rules`' selectors name.
    pub(crate) fn new(
        limits: DecodeLimits,
        default_types: Vec<Option<String>>,
        rules: &[crate::config::RuleConfig],
    ) -> Self {
        ArrivalDecode {
            limits: Mutex::new(limits),
            default_types,
            forms: Mutex::new(super::forms::Forms::new(rules)),
        }
    }

    /// Watch for the values `rules`' selectors name from now on (a reload).
    pub(crate) fn set_rules(&self, rules: &[crate::config::RuleConfig]) {
        *self.forms.lock().unwrap_or_else(|p| p.into_inner()) = super::forms::Forms::new(rules);
    }

    /// The limits messages are decoded with.
    pub(crate) fn limits(&self) -> DecodeLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decode with `limits` from now on.
    pub(crate) fn set_limits(&self, limits: DecodeLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// Each topic's default type, by index.
    pub(crate) fn default_types(&self) -> &[Option<String>] {
        &self.default_types
    }
}

impl Shared {
    /// Notes that a valid event of each of `parts` was handed over at `when`.
    pub(crate) fn note_delivered(&self, parts: impl Iterator<Item = Partition>, when: Instant) {
        let mut d = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        for p in parts {
            d.insert(p, when);
        }
    }

    /// When a valid event of each partition was last handed over.
    pub(crate) fn delivered(&self) -> Vec<(Partition, Instant)> {
        let d = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        d.iter().map(|(&p, &t)| (p, t)).collect()
    }

    /// The partitions with messages left to read that the consumer handed
    /// nothing of over lately, with when their backlog was last seen: the
    /// idle rules count that as a hand-over. Without it, a partition the
    /// consumer starved for longer than `idle_partition_timeout` (it served
    /// another partition's backlog for 20 s) was taken for idle, the other
    /// partitions moved the clock to their newest time, and its own events
    /// came late once the consumer reached them.
    ///
    /// A partition assigned to this process counts so from its assignment,
    /// until it hands something over or the statistics show it caught up
    /// (at most `backlog_hold`): the consumer may serve other partitions'
    /// backlogs for longer than `idle_partition_timeout` before its first
    /// message (the scaled soak's seed 502: partition 0 of a restarted
    /// instance, behind the others' prefetched messages, was taken for idle
    /// ten seconds after the assignment and its events came late).
    pub(crate) fn backlogged(&self) -> Vec<(Partition, Instant)> {
        self.backlogged_at(Instant::now())
    }

    /// [`Shared::backlogged`] at `now`.
    pub(crate) fn backlogged_at(&self, now: Instant) -> Vec<(Partition, Instant)> {
        let d = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        let b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        b.iter()
            .filter_map(|(&p, &why)| match why {
                Backlog::Lag(seen) => Some((p, seen)),
                Backlog::Assigned(at) => (now.saturating_duration_since(at) < self.backlog_hold
                    && d.get(&p).is_none_or(|&t| t < at))
                .then_some((p, now)),
            })
            .collect()
    }

    /// Partitions `parts` were assigned at `now`: starved until they hand
    /// something over or the statistics show them caught up.
    fn assigned(&self, parts: &[Partition], now: Instant) {
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        for &at in parts {
            b.insert(at, Backlog::Assigned(now));
        }
    }

    /// Notes partition `at`'s lag from the statistics seen at `now` (-1:
    /// unknown, librdkafka's convention).
    fn lag_seen(&self, at: Partition, lag: i64, now: Instant) {
        let last = self
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&at)
            .copied();
        let recent = last.is_some_and(|t| now.saturating_duration_since(t) < self.backlog_hold);
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&Backlog::Assigned(since)) = b.get(&at) {
            if last.is_none_or(|t| t < since) {
                // Nothing handed over since the assignment: starved until
                // shown caught up (or the hold runs out).
                if lag == 0 {
                    b.remove(&at);
                }
                return;
            }
        }
        if lag > 0 && recent {
            b.insert(at, Backlog::Lag(now));
        } else {
            b.remove(&at);
        }
    }

    /// The offset tracker, locked (a panic elsewhere cannot poison progress).
    pub(crate) fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The consumer's librdkafka context.
pub(crate) struct SourceContext {
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceMsg>,
    index: HashMap<String, u16>,
    /// The batch the consumer thread is filling.
    batch: Mutex<Batch>,
    /// Partitions assigned to this instance.
    assignment: Mutex<BTreeSet<Partition>>,
    /// How long a revoke waits for the engine stage.
    drain_timeout: Duration,
    /// Set once the engine stage has gone (the channel is closed).
    closed: AtomicBool,
    /// Whether the group rebalances cooperatively, asked of librdkafka at
    /// the first rebalance and never again (see `rebalance.rs`).
    cooperative: std::sync::OnceLock<bool>,
}

impl SourceContext {
    /// A context sending to `tx`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        tx: mpsc::Sender<SourceMsg>,
        drain_timeout: Duration,
    ) -> Self {
        let index = (0u16..)
            .zip(&shared.topics)
            .map(|(i, t)| (t.clone(), i))
            .collect();
        SourceContext {
            shared,
            tx,
            index,
            batch: Mutex::new(Batch::default()),
            assignment: Mutex::new(BTreeSet::new()),
            drain_timeout,
            closed: AtomicBool::new(false),
            cooperative: std::sync::OnceLock::new(),
        }
    }

    /// The shared state.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The index of a consumed topic.
    pub(crate) fn topic_index(&self, topic: &str) -> Option<u16> {
        self.index.get(topic).copied()
    }

    /// The batch being filled.
    pub(crate) fn batch(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the engine stage is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn send(&self, msg: SourceMsg) -> bool {
        // Blocks while the channel is full: backpressure on the consumer.
        if self.tx.blocking_send(msg).is_err() {
            self.closed.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Tells the engine stage every partition the broker's metadata names
    /// ([`SourceMsg::Known`]).
    pub(crate) fn known(&self, parts: Vec<Partition>) {
        if !parts.is_empty() {
            self.send(SourceMsg::Known(parts));
        }
    }

    /// Hands the batch being filled to the engine stage.
    pub(crate) fn flush(&self) {
        let mut batch = std::mem::take(&mut *self.batch());
        if !batch.is_empty() {
            let arrival = &self.shared.arrival;
            let mut forms = arrival.forms.lock().unwrap_or_else(|p| p.into_inner());
            batch.decode(
                &arrival.limits(),
                arrival.default_types(),
                chrono::Utc::now().timestamp_millis(),
                Some(&mut forms),
            );
            forms.export(&self.shared.metrics.value_variants);
            drop(forms);
            self.shared
                .note_delivered(batch.delivering(), Instant::now());
            self.send(SourceMsg::Batch(batch));
        }
    }

    /// Flushes, then waits until the engine stage has applied everything sent
    /// so far and forgotten `revoked`. False if it did not answer in time.
    pub(crate) fn drain(&self, revoked: Vec<Partition>) -> bool {
        self.flush();
        let (ack, done) = std_mpsc::sync_channel(1);
        if !self.send(SourceMsg::Drain { revoked, ack }) {
            return false;
        }
        done.recv_timeout(self.drain_timeout).is_ok()
    }

    /// Partitions currently assigned.
    pub(crate) fn assignment(&self) -> Vec<Partition> {
        let a = self.assignment.lock().unwrap_or_else(|p| p.into_inner());
        a.iter().copied().collect()
    }

    /// Commits the committable offsets of `only` (every partition when `None`);
    /// how many partitions it committed (0: nothing to commit).
    /// The outcome is counted in [`ConsumerContext::commit_callback`].
    pub(crate) fn commit(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        only: Option<&[Partition]>,
        mode: CommitMode,
    ) -> KafkaResult<usize> {
        let offsets = self.shared.tracker().all_committable();
        let mut tpl = TopicPartitionList::new();
        for (at, offset) in offsets {
            if only.is_some_and(|o| !o.contains(&at)) {
                continue;
            }
            let topic = &self.shared.topics[usize::from(at.topic)];
            tpl.add_partition_offset(topic, at.partition, Offset::Offset(offset))?;
        }
        if tpl.count() == 0 {
            return Ok(0);
        }
        let result = consumer.commit(&tpl, mode).map(|()| tpl.count());
        if matches!(mode, CommitMode::Sync) {
            // A synchronous commit's outcome is its return value: librdkafka
            // raises no commit event for it (nor, without an
            // `offset_commit_cb`, for an asynchronous one).
            let m = &self.shared.metrics;
            match &result {
                Ok(_) => m.commits.inc(),
                Err(_) => m.commit_failures.inc(),
            }
        }
        result
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<Partition> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                self.topic_index(e.topic()).map(|topic| Partition {
                    topic,
                    partition: e.partition(),
                })
            })
            .collect()
    }

    fn on_revoke(&self, consumer: &BaseConsumer<SourceContext>, revoked: Vec<Partition>) {
        let m = &self.shared.metrics;
        m.rebalances.with_label_values(&["revoke"]).inc();
        let lost = consumer.assignment_lost();
        if !self.drain(revoked.clone()) && !self.is_closed() {
            tracing::warn!(
                timeout_s = self.drain_timeout.as_secs(),
                "Engine did not finish the revoked partitions in time; committing what it applied."
            );
        }
        if let Err(e) = self.commit(consumer, Some(&revoked), CommitMode::Sync) {
            tracing::warn!(error = %e, lost, "Cannot commit revoked partitions: their events since the last commit will be read again (duplicates are dropped by id).");
        }
        let mut assignment = self.assignment.lock().unwrap_or_else(|p| p.into_inner());
        let mut tracker = self.shared.tracker();
        for at in &revoked {
            assignment.remove(at);
            tracker.forget(*at);
            self.shared
                .backlog
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(at);
            let topic = &self.shared.topics[usize::from(at.topic)];
            let _ = m
                .lag
                .remove_label_values(&[topic.as_str(), &at.partition.to_string()]);
        }
        m.assigned.set(assignment.len() as i64);
        self.shared.health.on_revoked();
        tracing::info!(partitions = revoked.len(), lost, "Partitions revoked.");
    }

    fn on_assign(&self, assigned: Vec<Partition>) {
        let m = &self.shared.metrics;
        m.rebalances.with_label_values(&["assign"]).inc();
        let total = {
            let mut a = self.assignment.lock().unwrap_or_else(|p| p.into_inner());
            a.extend(assigned.iter().copied());
            a.len()
        };
        m.assigned.set(total as i64);
        self.shared.assigned(&assigned, Instant::now());
        self.shared.health.on_assigned(Instant::now());
        tracing::info!(partitions = assigned.len(), total, "Partitions assigned.");
        self.send(SourceMsg::Assigned(assigned));
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.shared.health.on_brokers_down(Instant::now());
        }
        log_client_error("consumer", &error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let now = Instant::now();
        let rx: u64 = stats.brokers.values().map(|b| b.rx).sum();
        let assignment = self.assignment();
        let mut total = 0i64;
        let mut available = 0usize;
        for (name, topic) in &stats.topics {
            let Some(t) = self.topic_index(name) else {
                continue;
            };
            available += topic.partitions.keys().filter(|&&p| p >= 0).count();
            for (&partition, p) in &topic.partitions {
                let at = Partition {
                    topic: t,
                    partition,
                };
                if partition < 0 || !assignment.contains(&at) {
                    continue;
                }
                let base = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.committed_offset
                };
                // Without a consumed or committed offset (nothing read or
                // committed yet, e.g. a group reading from `latest`): what
                // the fetch position leaves plus what is fetched but not
                // handed over. Unknown (-1) before the partition's first
                // fetch (no high watermark or fetch position), unless it
                // holds nothing at all.
                let lag = if p.hi_offset >= 0 && base >= 0 {
                    (p.hi_offset - base).max(0)
                } else if p.hi_offset >= 0 && p.next_offset >= 0 {
                    (p.hi_offset - p.next_offset).max(0) + p.fetchq_cnt.max(0)
                } else if p.hi_offset >= 0 && p.lo_offset >= 0 && p.hi_offset <= p.lo_offset {
                    0
                } else {
                    -1
                };
                self.shared.lag_seen(at, lag, now);
                // The end a fetch can reach: the last stable offset (what
                // read_committed, librdkafka's default, is served up to:
                // an open transaction holds it below the high watermark),
                // else the high watermark. Fetched but not handed over:
                // per partition (`fetchq_cnt` counts the whole consumer
                // queue a group consumer forwards every partition to).
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                let waiting = if p.next_offset >= 0 && p.app_offset >= 0 {
                    (p.next_offset - p.app_offset).max(0)
                } else {
                    0
                };
                self.shared
                    .health
                    .on_partition(now, name, partition, p.next_offset, end, waiting);
                let lag = lag.max(0);
                total += lag;
                self.shared
                    .metrics
                    .lag
                    .with_label_values(&[name.as_str(), &partition.to_string()])
                    .set(lag);
            }
        }
        self.shared
            .health
            .on_stats(now, rx, total, assignment.len(), available);
    }
}

mod log;
mod rebalance;
#[cfg(test)]
use log::repeat_gate;
pub(crate) use log::{log_client_error, log_librdkafka, ReaderContext};

#[cfg(test)]
mod gate_tests;
