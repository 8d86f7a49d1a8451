//! The splitting stage of a scaled instance: the input partitions the
//! consumer group assigned it (read by the same consumer thread as the
//! single-instance service, `crate::source`), each valid event forwarded to
//! the shard-topic partitions of its slices, each invalid one counted and
//! dead-lettered. After every batch, the sources' reports follow the events
//! they cover; a source with nothing new for `idle_partition_timeout` is
//! reported idle. "New" counts from when the consumer thread handed a valid
//! event of the source over (as the single-instance service's watermarks
//! do), not from when this stage reached it: a stage that stalls (a slow
//! shard-topic write) with the source's messages queued in the channel must
//! not report it idle, or the owners' clocks would pass those events and
//! drop them as late. An input offset becomes committable once everything it
//! caused is written to the shard topic: the writes of consecutive batches
//! are confirmed together at most every 200 ms (and before a revoke), so
//! that the producer batches across them instead of waiting for one broker
//! round trip per batch.
//!
//! A partition handed back to this process after a revoke whose commit failed
//! (a broker stalled past the session timeout) is read again from the last
//! successful commit: what was forwarded before the revoke is skipped, checked
//! by each message's fingerprint (`crate::run::reread`), as in the
//! single-instance stage — the owners' id dedup would catch such re-reads only
//! within `engine.dedup_horizon` of event time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::internal::Ordered;
use super::{ScaledError, ScaledMetrics, Topics};
use crate::event::Event;
use crate::repartition::{Envelope, Source, Splitter};
use crate::run::feed::{dead_letter_refuted, decode_as, LiveClock, Pass};
use crate::run::progress::BatchProgress;
use crate::run::reread::Reread;
use crate::source::context::Shared;
use crate::source::dlq::DeadLetters;
use crate::source::{Batch, Partition, SourceMsg};

/// How long writing a batch's messages may take before the stage gives up.
const FLUSH_WAIT: Duration = Duration::from_secs(60);
/// How often a quiet stream's progress is sent.
const QUIET_EVERY: Duration = Duration::from_secs(1);
/// How long input offsets may wait for the shard-topic writes they caused
/// to be confirmed: batches are not flushed one by one (one broker round
/// trip each), the producer batches across them.
const SETTLE_EVERY: Duration = Duration::from_millis(200);

/// The splitting stage.
pub(crate) struct SplitStage {
    splitter: Splitter,
    producer: Arc<Ordered>,
    topics: Topics,
    shared: Arc<Shared>,
    dlq: Option<DeadLetters>,
    default_types: Vec<Option<String>>,
    idle_after: Duration,
    /// `engine.idle_timeout`: after this long without a message on any
    /// assigned source, event time follows the wall clock.
    quiet_after: Duration,
    /// When the assigned sources last had a message.
    activity: Activity,
    /// Input offsets whose shard-topic messages are queued, not yet
    /// confirmed written: committable after the next [`SplitStage::settle`].
    unsettled: Vec<(Partition, i64)>,
    /// When the queued messages were last confirmed.
    last_settle: Instant,
    drain_timeout: Duration,
    metrics: Arc<ScaledMetrics>,
    /// What was forwarded of each partition, to skip when it comes back.
    reread: Reread,
    /// `reread.skipped()` when last logged.
    reread_logged: u64,
    /// Per input topic: valid events by type and how far behind the wall
    /// clock they were read (`crisiswatch_events_received_total`,
    /// `crisiswatch_processing_lag_seconds`), moved into `all_metrics` on
    /// each tick.
    recorders: Vec<crate::metrics::Recorder>,
    all_metrics: Arc<crate::metrics::Metrics>,
    /// Per input partition, the clock-jump guard (`engine.max_clock_jump`),
    /// as in the single-instance feed: a message stamped far ahead of its
    /// partition's clock is held aside (its offset pending) until the
    /// partition's next messages confirm it (forwarded then) or refute it
    /// (invalid `clock_jump`, dead-lettered).
    clock: LiveClock,
    /// Confirmed jumps forwarded since the last [`SplitStage::settle`]: their
    /// offsets were held, and are released once their messages are written.
    unsettled_held: Vec<(Partition, i64)>,
}

/// Longest pause between two of the stage's looks at its sources that
/// still counts as watching them: a longer one (the stage blocked, waiting
/// for its broker to confirm what it wrote) is a stretch nothing was
/// confirmed over — not idle time, not quiet time.
const LOOK_GAP: Duration = Duration::from_secs(2);

/// One assigned source.
#[derive(Debug, Clone, Copy)]
struct Assigned {
    /// When it last had a message (or was assigned).
    last: Instant,
    /// When it was last reported idle since.
    sent: Option<Instant>,
    /// Of the time since `last`, what the consumer did not confirm (its
    /// broker silent, the stage blocked): a partition is idle after
    /// `idle_partition_timeout` of confirmed silence only. Without this, a
    /// 20 s broker pause had the stage report partitions idle the moment
    /// the broker came back, before their messages could be fetched: the
    /// owners' clocks moved on without them, and their events came late
    /// (different transitions and keys from a replay).
    unconfirmed: Duration,
}

impl Assigned {
    fn at(last: Instant) -> Self {
        Assigned {
            last,
            sent: None,
            unconfirmed: Duration::ZERO,
        }
    }
}

/// When each assigned source last had a message, and what was reported of
/// it: the idle and quiet decisions of [`SplitStage::tick`].
#[derive(Debug)]
struct Activity {
    /// Assigned sources.
    assigned: BTreeMap<Source, Assigned>,
    /// When the stage last looked ([`Activity::look`]).
    looked: Option<Instant>,
    /// The last message on any source (or the start).
    last_message: Instant,
    /// When the quiet stream's progress was last sent.
    quiet_sent: Option<Instant>,
    /// Of the time since `last_message`, what the consumer did not confirm
    /// quiet (its broker silent, or behind): not quiet time.
    unconfirmed: crate::clock::UnconfirmedTime,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            assigned: BTreeMap::new(),
            looked: None,
            last_message: now,
            quiet_sent: None,
            unconfirmed: {
                let mut u = crate::clock::UnconfirmedTime::default();
                u.reset(tokio::time::Instant::from_std(now));
                u
            },
        }
    }

    /// `s` was assigned at `now`: it holds the clocks as if it had just had
    /// a message.
    fn assign(&mut self, s: Source, now: Instant) {
        self.assigned.insert(s, Assigned::at(now));
    }

    fn revoke(&mut self, s: Source) {
        self.assigned.remove(&s);
    }

    /// This stage processed a message of `s` at `now` (after
    /// [`Activity::any_message`] for its batch).
    fn message(&mut self, s: Source, now: Instant) {
        if let Some(a) = self.assigned.get_mut(&s) {
            *a = Assigned::at(now);
        }
    }

    /// This stage processed a batch with messages at `now`.
    fn any_message(&mut self, now: Instant) {
        if now > self.last_message {
            self.last_message = now;
            self.unconfirmed.reset(tokio::time::Instant::from_std(now));
        }
        self.quiet_sent = None;
    }

    /// A look at `now`: whether the consumer confirms the stream quiet.
    /// The time since the last look counts as unconfirmed unless it is, and
    /// the stage looked within [`LOOK_GAP`].
    fn look(&mut self, now: Instant, confirmed: bool) {
        // Unwatched since the later of the last look and `from`.
        let looked = self.looked;
        let gap = |from: Instant| {
            let since = looked.map_or(from, |l| l.max(from));
            now.saturating_duration_since(since)
        };
        for a in self.assigned.values_mut() {
            let g = gap(a.last);
            if !confirmed || g > LOOK_GAP {
                a.unconfirmed = a.unconfirmed.saturating_add(g);
            }
        }
        let stream = confirmed && gap(self.last_message) <= LOOK_GAP;
        self.looked = Some(now);
        self.unconfirmed
            .look(tokio::time::Instant::from_std(now), stream);
    }

    /// The consumer thread handed a valid event of `s` over at `when` (this
    /// stage may not have reached it yet): the source is not idle, and the
    /// stream not quiet, before their timeouts from then.
    fn handed_over(&mut self, s: Source, when: Instant) {
        if when > self.last_message {
            self.last_message = when;
            self.unconfirmed.reset(tokio::time::Instant::from_std(when));
            self.quiet_sent = None;
        }
        if let Some(a) = self.assigned.get_mut(&s) {
            if when > a.last {
                // A source reported idle stays so until this stage forwards
                // its message (which makes it active on the owners again).
                a.last = when;
                a.unconfirmed = Duration::ZERO;
            }
        }
    }

    /// The sources to report idle now: without a message for `idle_after`
    /// of confirmed time (see [`Assigned::unconfirmed`]),
    /// and not reported idle within the last `idle_after` (the report is
    /// repeated while the source stays idle: an owner that woke it after a
    /// pause of the whole stream ends the wake on the repeats,
    /// `repartition::Owner`).
    fn idle_due(&mut self, now: Instant, idle_after: Duration) -> Vec<Source> {
        let mut idle = Vec::new();
        for (s, a) in self.assigned.iter_mut() {
            let due = a
                .sent
                .is_none_or(|t| now.saturating_duration_since(t) >= idle_after);
            let silent = now
                .saturating_duration_since(a.last)
                .saturating_sub(a.unconfirmed);
            if due && silent >= idle_after {
                a.sent = Some(now);
                idle.push(*s);
            }
        }
        idle
    }

    /// How long the stream has been quiet, when its progress is due to be
    /// sent now (at most every [`QUIET_EVERY`]); marks it sent.
    fn quiet_due(&mut self, now: Instant, quiet_after: Duration) -> Option<Duration> {
        let quiet = now
            .saturating_duration_since(self.last_message)
            .saturating_sub(self.unconfirmed.total());
        let due = !self.assigned.is_empty()
            && quiet >= quiet_after
            && self
                .quiet_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= QUIET_EVERY);
        due.then(|| {
            self.quiet_sent = Some(now);
            quiet
        })
    }

    fn sources(&self) -> Vec<Source> {
        self.assigned.keys().copied().collect()
    }
}

fn source(p: Partition) -> Source {
    Source {
        topic: p.topic,
        partition: p.partition,
    }
}

impl SplitStage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        splitter: Splitter,
        producer: Arc<Ordered>,
        topics: Topics,
        shared: Arc<Shared>,
        dlq: Option<DeadLetters>,
        default_types: Vec<Option<String>>,
        idle_after: Duration,
        quiet_after: Duration,
        (drain_timeout, reread_keep): (Duration, Duration),
        (metrics, all_metrics, recorders): (
            Arc<ScaledMetrics>,
            Arc<crate::metrics::Metrics>,
            Vec<crate::metrics::Recorder>,
        ),
    ) -> Self {
        let mut clock = LiveClock::new(splitter.limits());
        clock.set_topics(shared.topics.clone());
        SplitStage {
            splitter,
            producer,
            topics,
            shared,
            dlq,
            default_types,
            idle_after,
            quiet_after,
            activity: Activity::new(Instant::now()),
            unsettled: Vec::new(),
            last_settle: Instant::now(),
            drain_timeout,
            metrics,
            reread: Reread::new(reread_keep),
            reread_logged: 0,
            recorders,
            all_metrics,
            clock,
            unsettled_held: Vec::new(),
        }
    }

    /// Handles one message of the consumer thread.
    pub(crate) async fn handle(&mut self, msg: SourceMsg) -> Result<(), ScaledError> {
        match msg {
            SourceMsg::Batch(b) => self.batch(b).await?,
            // Shard owners track event time per partition of the internal
            // topic, which the owners' own assignment covers.
            SourceMsg::Known(_) => {}
            SourceMsg::Assigned(parts) => {
                let now = Instant::now();
                // Revoked partitions not handed back went to another member.
                self.reread.assigned(&parts);
                for p in parts {
                    self.activity.assign(source(p), now);
                }
            }
            SourceMsg::Drain { revoked, ack } => {
                // What the revoked partitions caused is written before their
                // final commit.
                self.settle().await?;
                if let Some(d) = &self.dlq {
                    if !d.flush(self.drain_timeout).await {
                        tracing::warn!("Dead letters still in flight at a drain; their offsets stay uncommitted.");
                    }
                }
                if !self
                    .shared
                    .stopping
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    // Everything forwarded is written; dead letters still in
                    // flight are processed again if the partitions come back.
                    let progress = self.shared.tracker().export();
                    for (at, _, _, pending) in progress {
                        if revoked.contains(&at) {
                            self.reread.revoke(at, &pending);
                        }
                    }
                }
                for p in revoked {
                    self.activity.revoke(source(p));
                    // Held jumps go with the partition: their offsets were
                    // never committed, its next reader reads them again.
                    self.clock.revoke(p);
                }
                let _ = ack.send(());
            }
        }
        Ok(())
    }

    /// Reports the assigned sources quiet for `idle_partition_timeout` idle
    /// (once, until they have messages again); once none has had a message
    /// for `engine.idle_timeout`, reports every second how long the stream
    /// has been quiet, so that event time follows the wall clock on the
    /// owners (`Envelope::Quiet`).
    pub(crate) fn tick(&mut self) {
        for (p, when) in self.shared.delivered() {
            self.activity.handed_over(source(p), when);
        }
        // Messages left to read: starved by the consumer, not idle.
        for (p, when) in self.shared.backlogged() {
            self.activity.handed_over(source(p), when);
        }
        for (rec, topic) in self.recorders.iter_mut().zip(&self.shared.topics) {
            self.all_metrics.absorb(topic, rec);
        }
        let now = Instant::now();
        self.reread.trim(now);
        if self.reread.skipped() > self.reread_logged {
            tracing::info!(
                skipped = self.reread.skipped() - self.reread_logged,
                "Skipped messages read again after their partitions came back: they were forwarded before the revoke (whose commit failed)."
            );
            self.reread_logged = self.reread.skipped();
        }
        // Looked first: a stretch the stage was blocked (its broker away)
        // is not idle time.
        self.activity.look(now, self.shared.health.confirmed(now));
        for s in self.activity.idle_due(now, self.idle_after) {
            let bytes = self.splitter.idle(s).encode();
            self.to_every_partition(&bytes);
            tracing::debug!(
                topic = s.topic,
                partition = s.partition,
                "Input partition idle: it no longer holds the owners' clocks."
            );
        }
        if let Some(quiet) = self.activity.quiet_due(now, self.quiet_after) {
            for s in self.activity.sources() {
                let bytes = self.splitter.quiet(s, quiet).encode();
                self.to_every_partition(&bytes);
            }
        }
        self.producer.poll();
    }

    /// Confirms what is queued once [`SETTLE_EVERY`] has passed since the
    /// last confirmation (called after each batch and on the stage's tick).
    pub(crate) async fn settle_due(&mut self) -> Result<(), ScaledError> {
        if self.last_settle.elapsed() >= SETTLE_EVERY {
            self.settle().await?;
        }
        Ok(())
    }

    /// Waits until every queued shard-topic message is written, then lets
    /// the input offsets that caused them be committed.
    pub(crate) async fn settle(&mut self) -> Result<(), ScaledError> {
        self.last_settle = Instant::now();
        if self.unsettled.is_empty() && self.unsettled_held.is_empty() {
            return Ok(());
        }
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.flush(FLUSH_WAIT))
            .await
            .map_err(|e| ScaledError::Thread(e.to_string()))??;
        let mut tracker = self.shared.tracker();
        for (at, offset) in self.unsettled.drain(..) {
            tracker.done(at, offset);
        }
        for (at, offset) in self.unsettled_held.drain(..) {
            tracker.unhold(at, offset);
        }
        Ok(())
    }

    fn to_every_partition(&self, bytes: &[u8]) {
        for q in 0..self.topics.shard_partitions {
            self.producer
                .send(&self.topics.shards, q as i32, b"", bytes);
        }
    }

    /// Forwards the valid event `ev` read at `offset` of `src` (decoded from
    /// `raw`) to the shard partitions of its slices, and counts it.
    fn forward(&mut self, src: Source, offset: i64, ev: &Event<'_>, raw: &[u8], now_ms: i64) {
        if let Some(r) = self.recorders.get_mut(usize::from(src.topic)) {
            r.event(&ev.kind, now_ms.saturating_sub(ev.ts));
        }
        if let Some((targets, env)) = self.splitter.split(src, offset, ev, raw) {
            let bytes = env.encode();
            for q in targets {
                // No key: the partition is chosen, the body names the event.
                self.producer
                    .send(&self.topics.shards, q as i32, b"", &bytes);
                self.metrics.shard_messages.inc();
            }
        }
    }

    /// Clock jumps the guard refuted: invalid (`clock_jump`), counted and
    /// dead-lettered unchanged (their offsets were held until now).
    async fn refuted_jumps(&mut self) {
        for s in self.clock.take_refuted() {
            dead_letter_refuted(&s, &self.shared, self.dlq.as_ref()).await;
        }
    }

    async fn batch(&mut self, mut b: Batch) -> Result<(), ScaledError> {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let limits = *self.splitter.limits();
        let mut progress = BatchProgress::default();
        let mut dead = Vec::new();
        // Messages the clock-jump guard holds aside: pending until decided.
        let mut held: Vec<(Partition, i64)> = Vec::new();
        let mut processed = vec![0u64; self.shared.topics.len()];
        if b.records().next().is_some() {
            self.activity.any_message(now);
        }
        // Decoded on the consumer thread (again here only after a reload
        // changed the limits).
        let arrivals = b.take_arrivals(&limits, &self.default_types, now_ms);
        for (rec, arrival) in b.records().zip(arrivals) {
            let t = usize::from(rec.at.topic);
            processed[t] += 1;
            progress.partition(rec.at, rec.offset);
            let src = source(rec.at);
            self.activity.message(src, now);
            self.reread.processed(rec.at, rec.offset, rec.print, now);
            if self.reread.done_before(rec.at, rec.offset, rec.print) {
                // Forwarded before its partition was revoked from this process.
                continue;
            }
            match arrival {
                Ok(owned) => {
                    // Always lent: the event decoded from UTF-8 bytes.
                    let Some(ev) = owned.event() else { continue };
                    match self.clock.offer(&rec, ev.ts, || None) {
                        Pass::This => self.forward(src, rec.offset, &ev, rec.payload, now_ms),
                        Pass::Held => held.push((rec.at, rec.offset)),
                        Pass::Some(pass) => {
                            // Rare (a jump decided): the decode borrows them.
                            let types = self.default_types.clone();
                            for item in pass {
                                let Some(s) = item else {
                                    self.forward(src, rec.offset, &ev, rec.payload, now_ms);
                                    continue;
                                };
                                // A confirmed jump: decoded again (rare), as on
                                // arrival but without the future-skew check it
                                // passed then.
                                if let Some(e) = decode_as(&limits, &types, s.origin, &s.raw) {
                                    self.forward(
                                        source(s.origin.at),
                                        s.origin.offset,
                                        &e,
                                        &s.raw,
                                        now_ms,
                                    );
                                }
                                self.unsettled_held.push((s.origin.at, s.origin.offset));
                            }
                        }
                    }
                }
                Err(inv) => {
                    self.shared
                        .metrics
                        .invalid
                        .with_label_values(&[self.shared.topics[t].as_str(), inv.reason.as_str()])
                        .inc();
                    tracing::debug!(topic = %self.shared.topics[t], partition = rec.at.partition, offset = rec.offset, reason = %inv.reason, detail = %inv.detail, "Invalid message.");
                    if self.dlq.is_some() {
                        dead.push((rec, inv));
                    }
                }
            }
        }
        // The reports follow the events they cover on every partition.
        for r in self.splitter.reports() {
            let bytes: Vec<u8> = Envelope::encode(&r);
            self.to_every_partition(&bytes);
        }
        {
            let mut tracker = self.shared.tracker();
            for &(at, offset) in &held {
                tracker.hold(at, offset);
            }
            for (rec, _) in &dead {
                tracker.dead_letter_pending(rec.at, rec.offset);
            }
        }
        self.refuted_jumps().await;
        self.unsettled
            .extend(progress.parts.iter().map(|p| (p.at, p.last_offset)));
        if let Some(dlq) = &self.dlq {
            for (rec, inv) in &dead {
                dlq.send(rec, inv.reason, &inv.detail).await;
            }
        }
        for (t, name) in self.shared.topics.iter().enumerate() {
            if processed[t] > 0 {
                self.shared
                    .metrics
                    .processed
                    .with_label_values(&[name.as_str()])
                    .inc_by(processed[t]);
            }
        }
        self.settle_due().await
    }
}

#[cfg(test)]
mod tests;
