//! The live service's path into the core: per-partition event time, the
//! [`Sequencer`], and the engine.
//!
//! Each valid message is held by the sequencer; the watermark is the slowest
//! active partition's newest event time ([`Watermarks`]) minus
//! `allowed_lateness`, and what it passes reaches the engine in `(ts, id)`
//! order — exactly what `replay` feeds for the same events. So batch sizes,
//! poll timing and how partitions interleave change nothing the engine sees,
//! as long as no partition delivers an event more than `allowed_lateness`
//! behind the watermark.
//!
//! Before that, each partition's clock-jump guard may hold a message stamped
//! far ahead of the partition's clock ([`clock`]), and the feed warns when
//! many events are late, naming the message that moved the clock.
//!
//! Each release reaches the engine's workers as one batch
//! ([`ShardedEngine::run`]): the same sequence, in the same order, whatever
//! the number of workers.
//!
//! Events are held decoded ([`OwnedEvent`], as `replay` holds them): a message
//! is decoded once, on arrival (by the consumer thread), and its release
//! lends the engine the event without parsing it again.

use std::time::Instant;

use crate::alert::Transition;
use std::cmp::Ordering;

use crate::engine::{Op, Outcome, ShardedEngine};
use crate::event::{decode_with_default, DecodeLimits, Event, OwnedEvent};
use crate::sequencer::{watermark, Holdable, SequencerOf};
use crate::source::watermarks::Watermarks;
use crate::source::{Partition, Record};

mod clock;

pub(crate) use clock::{LiveClock, Pass, Suspect};

/// A clock jump the guard refuted: invalid (`clock_jump`), counted per
/// topic and dead-lettered unchanged; its offset, held until now, is released
/// by the dead letter's task once written, or at once without a dead-letter
/// topic (the engine stage and the split stage).
pub(crate) async fn dead_letter_refuted(
    s: &Suspect,
    shared: &crate::source::context::Shared,
    dlq: Option<&crate::source::dlq::DeadLetters>,
) {
    let (at, offset) = (s.origin.at, s.origin.offset);
    shared
        .metrics
        .invalid
        .with_label_values(&[
            shared.topics[usize::from(at.topic)].as_str(),
            crate::event::InvalidReason::ClockJump.as_str(),
        ])
        .inc();
    match dlq {
        Some(dlq) => {
            dlq.send(
                &s.record(),
                crate::event::InvalidReason::ClockJump,
                &s.detail,
            )
            .await
        }
        None => shared.tracker().unhold(at, offset),
    }
}

/// Where a held event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Topic and partition.
    pub(crate) at: Partition,
    /// Offset.
    pub(crate) offset: i64,
}

/// A valid event held by the sequencer, decoded, with where it came from.
/// Ordered as the sequencer releases events: `(ts, id, order key of the raw bytes)`.
#[derive(Debug)]
pub struct HeldEvent {
    ev: OwnedEvent,
    origin: Origin,
}

impl PartialEq for HeldEvent {
    fn eq(&self, other: &Self) -> bool {
        self.ev == other.ev
    }
}

impl Eq for HeldEvent {}

impl PartialOrd for HeldEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeldEvent {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ev.cmp(&other.ev)
    }
}

impl Holdable for HeldEvent {
    fn ts(&self) -> i64 {
        self.ev.ts()
    }
    fn raw_len(&self) -> usize {
        self.ev.raw().len()
    }
}

/// Per-partition clocks, the sequencer, and the topics' default types.
#[derive(Debug)]
pub struct LiveFeed {
    seq: SequencerOf<HeldEvent>,
    watermarks: Watermarks,
    lateness_ms: i64,
    default_types: Vec<Option<String>>,
    limits: DecodeLimits,
    /// Clock-jump guards and the late-share warning.
    clock: LiveClock,
    /// Confirmed clock jumps applied at once (behind the watermark), for the
    /// next release's `applied`.
    applied_now: Vec<(Origin, Outcome)>,
}

impl LiveFeed {
    /// A feed into `engine` (marked as sequenced).
    pub(crate) fn new(
        engine: &mut ShardedEngine,
        watermarks: Watermarks,
        default_types: Vec<Option<String>>,
    ) -> Self {
        engine.set_sequenced(true);
        LiveFeed {
            seq: SequencerOf::new(),
            watermarks,
            lateness_ms: engine.lateness_ms(),
            default_types,
            limits: *engine.limits(),
            clock: LiveClock::new(engine.limits()),
            applied_now: Vec::new(),
        }
    }

    /// Names the topics (by index) in the feed's warnings.
    pub(crate) fn named(mut self, topics: Vec<String>) -> Self {
        self.clock.set_topics(topics);
        self
    }

    /// A partition exists and may be assigned soon: unless tracked already,
    /// it holds the clock for `grace` from `now` (as a restored one).
    pub(crate) fn wait_for(&mut self, at: Partition, now: Instant, grace: std::time::Duration) {
        self.watermarks.restore(at, None, now, grace);
    }

    /// A partition was assigned.
    pub(crate) fn assign(&mut self, at: Partition, now: Instant) {
        self.watermarks.assign(at, now);
    }

    /// Valid events of these partitions reached the consumer thread at these
    /// instants (the engine stage may not have reached them yet): none of
    /// them is idle before its timeout from then.
    pub(crate) fn received(&mut self, delivered: &[(Partition, Instant)]) {
        for &(at, when) in delivered {
            self.watermarks.received(at, when);
        }
    }

    /// A partition was revoked: its held events are dropped (the next owner
    /// reads them again from the committed offset, which cannot pass them).
    pub(crate) fn revoke(&mut self, at: Partition) -> usize {
        self.watermarks.revoke(at);
        self.applied_now.retain(|(o, _)| o.at != at);
        self.clock.revoke(at) + self.seq.retain(|h| h.origin.at != at)
    }

    /// Offers a valid event read from `origin` (as [`LiveFeed::offer_record`]
    /// for a message without key or headers).
    #[cfg(test)]
    pub(crate) fn offer(
        &mut self,
        engine: &mut ShardedEngine,
        origin: Origin,
        ev: &Event<'_>,
        raw: &[u8],
        now: Instant,
        out: &mut Vec<Transition>,
    ) -> Option<Outcome> {
        let rec = Record {
            at: origin.at,
            offset: origin.offset,
            payload: raw,
            null: false,
            print: crate::source::fingerprint(raw, None),
            key: None,
            headers: &[],
        };
        self.offer_record(engine, &rec, OwnedEvent::new(ev, raw), now, out)
    }

    /// Offers the valid event `ev` (decoded on arrival) of message `rec`. It
    /// is held (returns `None`) — by the sequencer, or by the partition's
    /// clock-jump guard (refuted: see [`LiveFeed::take_refuted`]) — or, more
    /// than `allowed_lateness` behind the watermark, applied at once (returns
    /// its outcome).
    pub(crate) fn offer_record(
        &mut self,
        engine: &mut ShardedEngine,
        rec: &Record<'_>,
        ev: OwnedEvent,
        now: Instant,
        out: &mut Vec<Transition>,
    ) -> Option<Outcome> {
        let origin = Origin {
            at: rec.at,
            offset: rec.offset,
        };
        let watermarks = &self.watermarks;
        let restored = || {
            watermarks
                .partition_clocks()
                .into_iter()
                .find(|(p, _)| *p == rec.at)
                .and_then(|(_, c)| c)
        };
        let pass = match self.clock.offer(rec, ev.ts(), restored) {
            Pass::This => return self.pass_this(engine, origin, ev, now, out),
            Pass::Held => return None,
            Pass::Some(pass) => pass,
        };
        let mut outcome = None;
        let mut this = Some(ev);
        for item in pass {
            match item {
                None => {
                    if let Some(ev) = this.take() {
                        outcome = self.pass_this(engine, origin, ev, now, out);
                    }
                }
                Some(s) => {
                    self.watermarks.observe(s.origin.at, s.ts, now);
                    self.clock.passed(s.origin, s.ts);
                    // A confirmed jump: decoded again (rare), as on arrival
                    // but without the future-skew check it passed then.
                    let Some(ev) = decode_as(&self.limits, &self.default_types, s.origin, &s.raw)
                    else {
                        continue;
                    };
                    let held = HeldEvent {
                        ev: OwnedEvent::new(&ev, &s.raw),
                        origin: s.origin,
                    };
                    if let Some(h) = self.seq.offer(held) {
                        // Behind the watermark (a stream quiet for longer
                        // than the jump): applied now, reported by the next
                        // release.
                        let now_applied = &mut self.applied_now;
                        let clock = &mut self.clock;
                        apply_held(
                            engine,
                            out,
                            &mut |o, oc| {
                                clock.counted(oc);
                                now_applied.push((o, oc));
                            },
                            &h,
                        );
                    }
                }
            }
        }
        outcome
    }

    /// The offered event itself goes on to the sequencer.
    fn pass_this(
        &mut self,
        engine: &mut ShardedEngine,
        origin: Origin,
        ev: OwnedEvent,
        now: Instant,
        out: &mut Vec<Transition>,
    ) -> Option<Outcome> {
        let ts = ev.ts();
        self.watermarks.observe(origin.at, ts, now);
        self.clock.passed(origin, ts);
        let held = HeldEvent { ev, origin };
        // Not held: it cannot be put in its place any more.
        let outcome = self
            .seq
            .offer(held)
            .and_then(|h| h.ev.event().map(|ev| apply_one(engine, &ev, out)));
        if let Some(o) = outcome {
            self.clock.counted(o);
        }
        outcome
    }

    /// Clock jumps refuted since the last call: invalid (`clock_jump`), to be
    /// counted and dead-lettered by the caller (their offsets were held).
    pub(crate) fn take_refuted(&mut self) -> Vec<Suspect> {
        self.clock.take_refuted()
    }

    /// Releases what the watermark passed — the slowest active partition
    /// minus `allowed_lateness` — into the engine, in order, and moves the
    /// engine clock to just before the watermark. `quiet` is event time moved
    /// on by a stream that has been quiet for `engine.idle_timeout` (the
    /// newest event time plus the wall time since): then nothing newer is
    /// coming to wait for, so everything held is released and the engine
    /// clock follows it. `applied` sees each released event's origin and
    /// outcome.
    pub(crate) fn release(
        &mut self,
        engine: &mut ShardedEngine,
        now: Instant,
        quiet: Option<i64>,
        out: &mut Vec<Transition>,
        mut applied: impl FnMut(Origin, Outcome),
    ) {
        for (o, oc) in self.applied_now.drain(..) {
            applied(o, oc);
        }
        let mut released = Vec::new();
        let (advance, target) = if let Some(t) = quiet {
            self.seq.release_all(|h| released.push(h));
            let below = self.seq.released_below().map_or(t, |b| b.max(t));
            self.seq.set_released_below(Some(below));
            (Some(t), None)
        } else {
            let Some(target) = self.watermarks.target(now) else {
                return;
            };
            let wm = watermark(target, self.lateness_ms);
            let mut advance = None;
            if self.seq.released_below().is_none_or(|b| wm > b) {
                self.seq.release(wm, |h| released.push(h));
                advance = Some(wm.saturating_sub(1));
            }
            (advance, Some(target))
        };
        let clock = &mut self.clock;
        let mut counted = |o: Origin, oc: Outcome| {
            clock.counted(oc);
            applied(o, oc);
        };
        apply_batch(engine, &released, advance, out, &mut counted);
        if let Some(target) = target {
            self.clock.target(target);
            self.clock.warn(now);
        }
    }

    /// Warns about the late events not warned about yet (at a stop: the
    /// warnings otherwise come at most once a minute).
    pub(crate) fn warn_late_now(&mut self, now: Instant) {
        self.clock.warn_now(now);
    }

    /// Releases everything held (end of a test stream).
    pub fn finish(
        &mut self,
        engine: &mut ShardedEngine,
        out: &mut Vec<Transition>,
        mut applied: impl FnMut(Origin, Outcome),
    ) {
        self.clock.finish();
        for (o, oc) in self.applied_now.drain(..) {
            applied(o, oc);
        }
        let mut released = Vec::new();
        self.seq.release_all(|h| released.push(h));
        apply_batch(engine, &released, None, out, &mut applied);
    }

    /// The newest event time seen on any partition.
    pub(crate) fn newest(&self) -> Option<i64> {
        self.watermarks.newest()
    }

    /// Whether a partition is awaited ([`Watermarks::awaited`]): the stream
    /// is not quiet then, whatever the time since the last event.
    pub(crate) fn awaiting(&self, now: Instant) -> bool {
        self.watermarks.awaited(now)
    }

    /// Partitions tracked and how many are idle.
    pub(crate) fn partition_counts(&self, now: Instant) -> (usize, usize) {
        self.watermarks.counts(now)
    }

    /// Events held (by the sequencer and the clock-jump guards) and the
    /// sequencer's bytes.
    pub fn held(&self) -> (usize, usize) {
        (self.seq.len() + self.clock.held(), self.seq.held_bytes())
    }

    /// Every event older than this has reached the engine.
    pub(crate) fn released_below(&self) -> Option<i64> {
        self.seq.released_below()
    }

    /// The sequencer (checkpoints).
    pub fn sequencer(&self) -> &SequencerOf<HeldEvent> {
        &self.seq
    }

    /// The sequencer and the per-partition clocks, for a restore.
    pub(crate) fn parts_mut(&mut self) -> (&mut SequencerOf<HeldEvent>, &mut Watermarks) {
        (&mut self.seq, &mut self.watermarks)
    }

    /// `engine.allowed_lateness`, ms: the release point trails the clock by it.
    pub(crate) fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// The per-partition clocks.
    pub(crate) fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }
}

/// Applies one event at once (behind the watermark: it cannot wait).
fn apply_one(engine: &mut ShardedEngine, ev: &Event<'_>, out: &mut Vec<Transition>) -> Outcome {
    let mut outcome = Vec::with_capacity(1);
    engine.run(&[Op::Process(ev)], out, &mut outcome);
    outcome.pop().unwrap_or(Outcome::Unmatched)
}

/// Decodes `raw` of `origin` with its topic's default type, without the
/// future-skew check (a held clock jump passed it on arrival).
pub(crate) fn decode_as<'a>(
    limits: &DecodeLimits,
    types: &'a [Option<String>],
    origin: Origin,
    raw: &'a [u8],
) -> Option<Event<'a>> {
    let default_type = types
        .get(usize::from(origin.at.topic))
        .and_then(|t| t.as_deref());
    decode_with_default(raw, limits, None, default_type).ok()
}

/// Applies a released event at once.
fn apply_held(
    engine: &mut ShardedEngine,
    out: &mut Vec<Transition>,
    applied: &mut impl FnMut(Origin, Outcome),
    h: &HeldEvent,
) {
    // Lent in place: the event is large, a returned one is moved.
    let mut ev = Event::default();
    if h.ev.event_into(&mut ev) {
        let outcome = apply_one(engine, &ev, out);
        applied(h.origin, outcome);
    }
}

/// Applies released events, in order, as one batch for the engine's
/// workers, then moves the clock to `advance`.
fn apply_batch(
    engine: &mut ShardedEngine,
    released: &[HeldEvent],
    advance: Option<i64>,
    out: &mut Vec<Transition>,
    applied: &mut impl FnMut(Origin, Outcome),
) {
    // Each event lent in its place in the batch (the event is large, a
    // returned one is moved).
    let mut decoded: Vec<(Origin, Event<'_>)> = Vec::with_capacity(released.len());
    for h in released {
        decoded.push((h.origin, Event::default()));
        if let Some((_, slot)) = decoded.last_mut() {
            if !h.ev.event_into(slot) {
                decoded.pop();
            }
        }
    }
    let mut ops: Vec<Op<'_, '_>> = decoded.iter().map(|(_, ev)| Op::Process(ev)).collect();
    if let Some(t) = advance {
        ops.push(Op::Advance(t));
    }
    let mut outcomes = Vec::with_capacity(decoded.len());
    engine.run(&ops, out, &mut outcomes);
    for ((origin, _), outcome) in decoded.iter().zip(outcomes) {
        applied(*origin, outcome);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod jump_tests;
