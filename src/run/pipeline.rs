//! The engine stage of `crisiswatch run`: batches from the consumer thread in,
//! transitions out.
//!
//! One task owns the [`Engine`]. Each message arrives decoded (the consumer
//! thread decodes a batch, with the topic's default `type`, while this task
//! applies the one before; a batch decoded with limits a configuration reload
//! has since changed is decoded again here). A valid event goes to the [`LiveFeed`]
//! (which holds it until the watermark passes it, then applies it in
//! event-time order — see `crate::sequencer`), or counts an invalid one and
//! hands it to the dead-letter producer. A message's offset stays pending in
//! the offset tracker until its event reached the engine (the applied log
//! records it then). After each batch the feed releases what the slowest
//! active partition's watermark passed. A periodic tick moves time on for idle
//! partitions and a quiet stream ([`IdleClock`]), checks consumer health and
//! publishes metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alert::{State, Transition};
use crate::clock::IdleClock;
use crate::engine::{Outcome, ShardedEngine};
use crate::event::InvalidReason;
use crate::http::AppState;
use crate::metrics::Recorder;
use crate::source::context::Shared;
use crate::source::dlq::DeadLetters;
use crate::source::watermarks::Watermarks;
use crate::source::{Batch, SourceMsg};

use super::applied_log::AppliedLog;
use super::durable::{Durable, StateMetrics};
use super::feed::{LiveFeed, Origin};
use super::progress::BatchProgress;
use super::reread::Reread;
use super::sink::TransitionSink;
use super::RunError;

mod rebalance;
mod state;

/// Settings of the engine stage.
#[derive(Debug, Clone)]
pub(crate) struct StageSettings {
    /// Default event type per topic index.
    pub(crate) default_types: Vec<Option<String>>,
    /// Partitions idle this long stop holding the clock back.
    pub(crate) idle_partition_timeout: Duration,
    /// No consumer progress this long: stalled.
    pub(crate) stall_timeout: Duration,
    /// Whole stream quiet this long: event time follows the wall clock.
    pub(crate) idle_timeout: Duration,
    /// How long a drain waits for in-flight dead letters.
    pub(crate) drain_timeout: Duration,
    /// How long fingerprints of processed messages are kept, to skip them
    /// when their partition comes back ([`Reread`]).
    pub(crate) reread_keep: Duration,
    /// How long a partition the broker names but the group has not assigned
    /// yet holds the clock ([`SourceMsg::Known`]): a crashed member may hold
    /// it until its session times out.
    pub(crate) known_grace: Duration,
}

/// The engine stage.
pub(crate) struct Stage {
    engine: ShardedEngine,
    shared: Arc<Shared>,
    settings: StageSettings,
    feed: LiveFeed,
    idle: IdleClock,
    dlq: Option<DeadLetters>,
    applied: Option<AppliedLog>,
    sink: TransitionSink,
    /// Transitions not yet handed to the sink.
    out: Vec<Transition>,
    /// Per topic: events by type and processing lag, until the next publish.
    recorders: Vec<Recorder>,
    /// When metrics and the admin snapshot were last published.
    last_publish: Option<Instant>,
    /// Released on a tick, no longer pending once their transitions are persisted.
    pending_release: Vec<Origin>,
    /// Checkpoints, when durable state is on.
    durable: Option<Durable>,
    /// The final drain is done: the last checkpoint is written.
    closing: bool,
    /// When incidents were last compared with the engine's alerts (`None`:
    /// at the next tick).
    last_retire: Option<Instant>,
    /// When the stage was made (a stream quiet since then: see `tick`).
    started: Instant,
    /// Why the outbox could not store the last transitions. While set, they
    /// stay in `out` (their offsets held), no checkpoint is written, no new
    /// batch is taken, and every tick retries.
    blocked: Option<String>,
    /// What was processed, to skip it when a partition comes back to this
    /// process and is read again from a commit that trailed it.
    reread: Reread,
    /// `reread.skipped()` when last logged.
    reread_logged: u64,
}

/// How often the engine's metrics and admin snapshot are refreshed.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// How often open incidents are compared with the engine's alerts (an alert
/// dropped by a configuration reload closes its incident within this).
const RETIRE_EVERY: Duration = Duration::from_secs(5);

/// What the stage needs besides the engine.
pub(crate) struct StageParts {
    /// State shared with the consumer thread.
    pub(crate) shared: Arc<Shared>,
    /// The dead-letter producer, if configured.
    pub(crate) dlq: Option<DeadLetters>,
    /// The `--applied-log`, if asked for.
    pub(crate) applied: Option<AppliedLog>,
    /// Where transitions go.
    pub(crate) sink: TransitionSink,
    /// One per topic (`crisiswatch_events_received_total{source=<topic>}`,
    /// processing lag and event-to-incident latency).
    pub(crate) recorders: Vec<Recorder>,
}

impl Stage {
    /// A stage around `engine`.
    pub(crate) fn new(
        mut engine: ShardedEngine,
        settings: StageSettings,
        parts: StageParts,
    ) -> Self {
        let feed = LiveFeed::new(
            &mut engine,
            Watermarks::new(settings.idle_partition_timeout),
            settings.default_types.clone(),
        )
        .named(parts.shared.topics.clone());
        let reread = Reread::new(settings.reread_keep);
        Stage {
            engine,
            feed,
            idle: IdleClock::new(settings.idle_timeout),
            shared: parts.shared,
            settings,
            dlq: parts.dlq,
            applied: parts.applied,
            sink: parts.sink,
            recorders: parts.recorders,
            out: Vec::new(),
            last_publish: None,
            pending_release: Vec::new(),
            durable: None,
            closing: false,
            last_retire: None,
            started: Instant::now(),
            blocked: None,
            reread,
            reread_logged: 0,
        }
    }

    /// The engine (for metrics and the summary).
    pub(crate) fn engine(&self) -> &ShardedEngine {
        &self.engine
    }

    /// The engine, for a configuration reload.
    pub(crate) fn engine_mut(&mut self) -> &mut ShardedEngine {
        &mut self.engine
    }

    /// After a configuration reload: the consumer thread watches for the
    /// values the new rules' selectors name (`source::forms`).
    pub(crate) fn watch_forms(&self, rules: &[crate::config::RuleConfig]) {
        self.shared.arrival.set_rules(rules);
    }

    /// The transition sink (for the final drain).
    pub(crate) fn sink(&self) -> &TransitionSink {
        &self.sink
    }

    /// Whether the stage takes no new batches: the outbox or the state store
    /// cannot be written (a stop still drains). Ticks go on and retry.
    pub(crate) fn paused(&self) -> bool {
        let failing = self.blocked.is_some() || self.durable.as_ref().is_some_and(Durable::failing);
        failing && !self.shared.stopping.load(Ordering::SeqCst)
    }

    /// [`Stage::emit`]; an outbox that cannot be written pauses the stage
    /// instead of ending it (see `blocked`), and a write that works again
    /// resumes it.
    fn emit_or_pause(&mut self, state: &AppState) -> Result<(), RunError> {
        let had = !self.out.is_empty();
        match self.emit(state) {
            Ok(()) => {
                if had && self.blocked.take().is_some() {
                    tracing::info!("The outbox is writable again; consumption resumes.");
                }
                Ok(())
            }
            Err(RunError::Incident(e)) => {
                if self.blocked.is_none() {
                    tracing::error!(error = %e, "Cannot store incident changes: consumption paused, offsets stay uncommitted; retrying until the data directory is writable again.");
                }
                self.blocked = Some(format!("incident outbox: {e}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Persists the transitions produced so far, at the engine's clock.
    fn emit(&mut self, state: &AppState) -> Result<(), RunError> {
        if self.out.is_empty() {
            return Ok(());
        }
        state.metrics.record_transitions(self.out.iter());
        let wall = chrono::Utc::now().timestamp_millis();
        if let Some(rec) = self.recorders.first_mut() {
            for t in &self.out {
                if matches!(t.state, State::Firing | State::Escalated) {
                    rec.incident(t.at, wall);
                }
            }
        }
        // Up to the last transition's time: the opens and progress updates
        // due after it go out from `tick`, with the engine's current values
        // and hints (not the last transition's).
        let clock = self.engine.clock().unwrap_or_default();
        let now = self.out.last().map_or(clock, |t| t.at.min(clock));
        self.sink.submit(&self.out, now)?;
        self.out.clear();
        Ok(())
    }

    /// Handles one message from the consumer thread.
    pub(crate) async fn handle(
        &mut self,
        msg: SourceMsg,
        state: &AppState,
    ) -> Result<(), RunError> {
        match msg {
            SourceMsg::Batch(b) => self.batch(b, state).await?,
            SourceMsg::Known(parts) => self.known(parts),
            SourceMsg::Assigned(parts) => self.assigned(parts),
            SourceMsg::Drain { revoked, ack } => self.drain(revoked, ack).await,
        }
        Ok(())
    }

    /// Clock jumps the feed refuted: invalid (`clock_jump`), counted and
    /// dead-lettered unchanged (their offsets were held until now).
    async fn refuted_jumps(&mut self) {
        for s in self.feed.take_refuted() {
            self.engine.record_invalid(InvalidReason::ClockJump);
            crate::run::feed::dead_letter_refuted(&s, &self.shared, self.dlq.as_ref()).await;
        }
    }

    async fn batch(&mut self, mut b: Batch, state: &AppState) -> Result<(), RunError> {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.reread_trim(now);
        let limits = *self.engine.limits();
        if self.shared.arrival.limits() != limits {
            // A reload changed them: the consumer thread decodes with these
            // from now on, and this batch is decoded again below.
            self.shared.arrival.set_limits(limits);
        }
        // Decoded on the consumer thread, while this task applied the batch before.
        let arrivals = b.take_arrivals(&limits, &self.settings.default_types, now_ms);
        let topics = self.shared.topics.len();
        let mut processed = vec![0u64; topics];
        let mut late = vec![0u64; topics];
        let mut seen_valid = false;
        // Invalid messages to dead-letter once the batch's progress is recorded.
        let mut dead = Vec::new();
        // Valid messages held by the sequencer: pending until released.
        let mut held: Vec<Origin> = Vec::new();
        // Valid messages applied at once (behind the watermark).
        let mut now_applied: Vec<Origin> = Vec::new();
        let mut progress = BatchProgress::default();
        for (rec, arrival) in b.records().zip(arrivals) {
            let t = usize::from(rec.at.topic);
            processed[t] += 1;
            let part = progress.partition(rec.at, rec.offset);
            let print = rec.print;
            self.reread.processed(rec.at, rec.offset, print, now);
            if self.reread.done_before(rec.at, rec.offset, print) {
                // Applied before its partition was revoked from this process.
                continue;
            }
            if let Some(d) = &mut self.durable {
                if d.covered(rec.at, rec.offset) {
                    // Its effect is in the restored checkpoint.
                    continue;
                }
            }
            match arrival {
                Ok(ev) => {
                    let ts = ev.ts();
                    part.max_ts = Some(part.max_ts.map_or(ts, |m| m.max(ts)));
                    seen_valid = true;
                    if let Some(r) = self.recorders.get_mut(t) {
                        r.event(ev.kind(), now_ms.saturating_sub(ts));
                    }
                    let origin = Origin {
                        at: rec.at,
                        offset: rec.offset,
                    };
                    match self
                        .feed
                        .offer_record(&mut self.engine, &rec, ev, now, &mut self.out)
                    {
                        None => held.push(origin),
                        Some(outcome) => {
                            if outcome == Outcome::Late {
                                late[t] += 1;
                            }
                            now_applied.push(origin);
                        }
                    }
                }
                Err(inv) => {
                    self.engine.record_invalid(inv.reason);
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
        {
            // One lock: held events and dead letters are pending before the
            // batch's last offsets are done, so no commit can pass them.
            let mut tracker = self.shared.tracker();
            // Applied at once: held until their transitions are stored.
            for o in held.iter().chain(&now_applied) {
                tracker.hold(o.at, o.offset);
            }
            for (rec, _) in &dead {
                tracker.dead_letter_pending(rec.at, rec.offset);
            }
            for p in &progress.parts {
                tracker.done(p.at, p.last_offset);
            }
        }
        let mut released: Vec<Origin> = Vec::new();
        let late_ref = &mut late;
        // Partitions whose events wait in the channel are not idle.
        self.feed.received(&self.shared.delivered());
        self.feed.received(&self.shared.backlogged());
        self.feed
            .release(&mut self.engine, now, None, &mut self.out, |o, outcome| {
                if outcome == Outcome::Late {
                    late_ref[usize::from(o.at.topic)] += 1;
                }
                released.push(o);
            });
        if seen_valid {
            if let Some(c) = self.feed.newest() {
                self.idle.on_events(c);
            }
        }
        self.applied_done(&now_applied, &released)?;
        // Incidents are persisted before the applied events' offsets can be committed.
        self.emit_or_pause(state)?;
        if self.blocked.is_some() {
            self.pending_release.extend(now_applied);
            self.pending_release.extend(released);
        } else {
            self.release_offsets(&now_applied);
            self.release_offsets(&released);
        }
        if let Some(dlq) = &self.dlq {
            for (rec, inv) in &dead {
                dlq.send(rec, inv.reason, &inv.detail).await;
            }
        }
        self.refuted_jumps().await;
        state.metrics.batches.inc();
        let m = &self.shared.metrics;
        for (t, name) in self.shared.topics.iter().enumerate() {
            if processed[t] > 0 {
                m.processed
                    .with_label_values(&[name.as_str()])
                    .inc_by(processed[t]);
            }
            if late[t] > 0 {
                m.late.with_label_values(&[name.as_str()]).inc_by(late[t]);
            }
        }
        Ok(())
    }

    /// Writes the applied log for events that reached the engine.
    fn applied_done(&mut self, now: &[Origin], released: &[Origin]) -> Result<(), RunError> {
        if let Some(log) = &mut self.applied {
            for o in now.iter().chain(released) {
                let topic = &self.shared.topics[usize::from(o.at.topic)];
                log.record(topic, o.at.partition, o.offset)
                    .map_err(RunError::AppliedLog)?;
            }
            log.flush().map_err(RunError::AppliedLog)?;
        }
        Ok(())
    }

    /// Released events' offsets are no longer pending.
    fn release_offsets(&self, released: &[Origin]) {
        if released.is_empty() {
            return;
        }
        let mut tracker = self.shared.tracker();
        for o in released {
            tracker.unhold(o.at, o.offset);
        }
    }

    /// Releases what the watermark passed; `floor` is event time moved on by
    /// a quiet stream.
    fn advance(&mut self, now: Instant, floor: Option<i64>) -> Result<(), RunError> {
        let mut released: Vec<Origin> = Vec::new();
        let mut late = vec![0u64; self.shared.topics.len()];
        self.feed.received(&self.shared.delivered());
        self.feed.received(&self.shared.backlogged());
        self.feed
            .release(&mut self.engine, now, floor, &mut self.out, |o, outcome| {
                if outcome == Outcome::Late {
                    late[usize::from(o.at.topic)] += 1;
                }
                released.push(o);
            });
        self.applied_done(&[], &released)?;
        for (t, n) in late.into_iter().enumerate() {
            if n > 0 {
                self.shared
                    .metrics
                    .late
                    .with_label_values(&[self.shared.topics[t].as_str()])
                    .inc_by(n);
            }
        }
        self.pending_release.extend(released);
        Ok(())
    }

    /// The periodic tick: idle partitions and a quiet stream move time on;
    /// readiness and metrics are refreshed.
    pub(crate) fn tick(&mut self, state: &AppState) -> Result<(), RunError> {
        if let Some(d) = &mut self.durable {
            d.poll_check(&self.shared.topics);
        }
        if self.closing {
            // Nothing moves after the final checkpoint.
            return Ok(());
        }
        let now = Instant::now();
        if self.blocked.is_none() {
            // A restored clock (no event read since the start) moves on like
            // one after events, once nothing is left to read: an incident
            // open at the restart still resolves on a quiet stream.
            if self.idle.unset() {
                if let Some(c) = self.engine.clock() {
                    self.idle.on_restore(c);
                }
            }
            // Quiet time counts only while the consumer confirms it (its
            // broker answers, nothing left to read): cut off from the
            // broker, the stretch's events are still on their way.
            self.idle.look(self.shared.health.confirmed(now));
            let (parts, idle) = self.feed.partition_counts(now);
            let caught_up = parts > 0 && idle == parts;
            // No events for a while is not a quiet stream while a partition
            // is awaited (one a crashed member still holds, one assigned
            // that has not delivered yet): its events would come late.
            let floor = if self.feed.awaiting(now) {
                None
            } else {
                self.idle.idle_target_after_restore(caught_up)
            };
            self.advance(now, floor)?;
        }
        state.metrics.set_held(self.feed.held().0);
        self.emit_or_pause(state)?;
        if self.blocked.is_none() {
            let released = std::mem::take(&mut self.pending_release);
            self.release_offsets(&released);
            if let Some(clock) = self.engine.clock() {
                if let Err(e) = self.sink.tick(clock, &mut self.engine) {
                    // Opens and updates stay due; the next tick tries again.
                    tracing::debug!(error = %e, "Cannot store due incident notifications.");
                }
            }
        }
        if self.blocked.is_none() {
            let check = self
                .last_retire
                .is_none_or(|t| now.saturating_duration_since(t) >= RETIRE_EVERY);
            if check {
                self.last_retire = Some(now);
            }
            // A stream that has been quiet since the start (nothing to read
            // on any assigned partition for `idle_timeout`) leaves the engine
            // without a clock: event time then follows the wall clock, as it
            // would after events, so that incidents whose alerts a state
            // reset removed still close.
            let (parts, idle) = self.feed.partition_counts(now);
            let quiet = self.engine.clock().is_none()
                && parts > 0
                && idle == parts
                && now.saturating_duration_since(self.started) >= self.settings.idle_timeout;
            let wall = quiet.then(|| chrono::Utc::now().timestamp_millis());
            if let Err(e) = self.sink.operator(&self.engine, check, wall) {
                // Close requests stay queued; the next tick tries again.
                tracing::warn!(error = %e, "Cannot apply incident close requests.");
            }
        }
        if self.durable.as_ref().is_some_and(|d| d.due(now)) {
            self.checkpoint(false);
        }
        let status = self.shared.health.check(now, self.settings.stall_timeout);
        let storage = self
            .blocked
            .as_ref()
            .map(|b| format!("cannot write the data directory (consumption paused, nothing committed past it; retrying): {b}"))
            .or_else(|| self.durable.as_ref().and_then(Durable::failure));
        state
            .ready
            .store(status.ready && storage.is_none(), Ordering::Relaxed);
        state.admin.set_storage_error(storage);
        state.admin.set_consumer_wait(status.why);
        let m = &self.shared.metrics;
        m.stalled.set(i64::from(status.stalled));
        m.idle_partitions
            .set(self.feed.partition_counts(now).1 as i64);
        // A refused checkpoint loaded once its store changed (by the
        // checkpoint call above; nothing was consumed meanwhile): counted
        // from, as at the start, before anything is published.
        if self.take_loaded() {
            state.metrics.count_from(&self.engine);
        }
        // Snapshots walk every group: once a second is plenty for scrapes.
        if self
            .last_publish
            .is_none_or(|t| now.saturating_duration_since(t) >= PUBLISH_EVERY)
        {
            self.last_publish = Some(now);
            for (rec, topic) in self.recorders.iter_mut().zip(&self.shared.topics) {
                state.metrics.absorb(topic, rec);
            }
            state
                .metrics
                .publish(&self.engine, chrono::Utc::now().timestamp_millis());
            state.admin.publish(crate::admin::snapshot(&self.engine));
        }
        Ok(())
    }

    /// Flushes the applied log and writes a last checkpoint at the end.
    pub(crate) fn finish(&mut self) -> Result<(), RunError> {
        if !self.closing {
            self.checkpoint(true);
        }
        if let Some(log) = &mut self.applied {
            log.flush().map_err(RunError::AppliedLog)?;
        }
        if let Some(d) = &self.dlq {
            d.abandon();
        }
        Ok(())
    }
}
