//! Clock jumps and late events in the live feed (issue 11, item 1), as the
//! history tools handle them.
//!
//! * **Clock jumps.** Each partition's clock is the newest event time it let
//!   through. A message stamped more than `engine.max_clock_jump` ahead of it
//!   is held aside by that partition's [`JumpGuard`] — not offered to the
//!   sequencer, its offset not committed — until the partition's next
//!   messages decide: `engine.clock_jump_confirm` more beyond the allowance
//!   confirm the jump (a real gap: they go on in arrival order, and a warning
//!   names the offset that moved the clock); as many within it refute it:
//!   the message is invalid (`clock_jump`), counted, named in a warning and
//!   dead-lettered unchanged. Without this, one producer with a clock days
//!   ahead on a single-partition topic moves the watermark and makes every
//!   later event late.
//! * **Late share.** When more than 1 % of the events since the last warning
//!   were late (the engine dropped them), a warning names the message that
//!   moved the clock before most of them (`topic[partition]@offset`), as
//!   `backtest` names the line. At most one such warning a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::backtest::clock_watch::{ClockMove, ClockWatch};
use crate::backtest::input::LineRef;
use crate::event::{format_ts, DecodeLimits};
use crate::sequencer::JumpGuard;
use crate::source::{Header, Partition, Record};

use super::Origin;

/// Least time between two late-share warnings.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Least events counted before a late-share warning.
const WARN_MIN_EVENTS: u64 = 100;

/// A message held by a partition's clock-jump guard: all that is needed to
/// apply it (confirmed) or dead-letter it unchanged (refuted).
#[derive(Debug)]
pub(crate) struct Suspect {
    /// Where it came from.
    pub(crate) origin: Origin,
    pub(crate) ts: i64,
    pub(crate) raw: Box<[u8]>,
    key: Option<Box<[u8]>>,
    headers: Vec<Header>,
    /// Why it is a jump (the dead letter's detail).
    pub(crate) detail: String,
}

impl Suspect {
    /// The message as it was read (for the dead-letter producer).
    pub(crate) fn record(&self) -> Record<'_> {
        Record {
            at: self.origin.at,
            offset: self.origin.offset,
            payload: &self.raw,
            null: false,
            print: 0,
            key: self.key.as_deref(),
            headers: &self.headers,
        }
    }
}

/// What the guard says about an offered message.
pub(crate) enum Pass {
    /// The offered message goes on now (nothing held).
    This,
    /// Held aside: nothing goes on now.
    Held,
    /// These go on now, in order; `None` stands for the offered message.
    Some(Vec<Option<Suspect>>),
}

/// Per-partition clock-jump guards and the late-share watch of the feed.
#[derive(Debug)]
pub(crate) struct LiveClock {
    max_jump_ms: i64,
    confirm: u32,
    guards: HashMap<Partition, JumpGuard<Option<Suspect>>>,
    refuted: Vec<Suspect>,
    /// Topic names by index (for warnings).
    topics: Vec<String>,
    /// Late events and the message that moved the clock before them;
    /// `LineRef.file` indexes `places`, `LineRef.line` is the offset.
    watch: ClockWatch,
    places: Vec<Partition>,
    /// Per partition: the newest event time let through and its offset.
    newest: HashMap<Partition, (i64, i64)>,
    last_warning: Option<Instant>,
}

impl LiveClock {
    pub(crate) fn new(limits: &DecodeLimits) -> Self {
        LiveClock {
            max_jump_ms: limits.max_clock_jump_ms,
            confirm: limits.clock_jump_confirm,
            guards: HashMap::new(),
            refuted: Vec::new(),
            topics: Vec::new(),
            watch: ClockWatch::default(),
            places: Vec::new(),
            newest: HashMap::new(),
            last_warning: None,
        }
    }

    pub(crate) fn set_topics(&mut self, topics: Vec<String>) {
        self.topics = topics;
    }

    /// `topic[partition]@offset`.
    pub(super) fn place(&self, at: Partition, offset: i64) -> String {
        match self.topics.get(usize::from(at.topic)) {
            Some(t) => format!("{t}[{}]@{offset}", at.partition),
            None => format!("topic #{}[{}]@{offset}", at.topic, at.partition),
        }
    }

    /// Offers a valid message read from `rec` to its partition's guard;
    /// `restored` is the partition's clock from a checkpoint, for a new guard.
    pub(crate) fn offer(
        &mut self,
        rec: &Record<'_>,
        ts: i64,
        restored: impl FnOnce() -> Option<i64>,
    ) -> Pass {
        if self.max_jump_ms <= 0 {
            return Pass::This;
        }
        let (max, confirm) = (self.max_jump_ms, self.confirm);
        let guard = self
            .guards
            .entry(rec.at)
            .or_insert_with(|| JumpGuard::new(max, confirm).with_clock(restored()));
        if guard.pass_quick(ts) {
            return Pass::This;
        }
        let suspect = guard.jump_detail(ts).map(|detail| Suspect {
            origin: Origin {
                at: rec.at,
                offset: rec.offset,
            },
            ts,
            raw: rec.payload.into(),
            key: rec.key.map(Into::into),
            headers: rec.headers.to_vec(),
            detail,
        });
        let held = suspect.is_some();
        let from = guard.clock();
        let v = guard.offer(ts, suspect);
        for s in v.rejected.into_iter().flatten() {
            self.refute(s);
        }
        if v.pass.is_empty() {
            return Pass::Held;
        }
        if held {
            // Confirmed: the first suspect moved the clock.
            if let Some(Some(first)) = v.pass.first() {
                tracing::warn!(
                    message = %self.place(first.origin.at, first.origin.offset),
                    from = %from.map(format_ts).unwrap_or_default(),
                    to = %format_ts(first.ts),
                    confirmed_by = confirm,
                    "A clock jump beyond engine.max_clock_jump was confirmed by the events after it (a gap in the stream): this message moved the partition's clock."
                );
            }
        }
        Pass::Some(v.pass)
    }

    /// A message let through to the sequencer.
    pub(super) fn passed(&mut self, origin: Origin, ts: i64) {
        let n = self.newest.entry(origin.at).or_insert((ts, origin.offset));
        if ts > n.0 {
            *n = (ts, origin.offset);
        }
    }

    /// The service clock's target moved to `target`: the partition whose
    /// newest event is at `target` moved it.
    pub(super) fn target(&mut self, target: i64) {
        if self.watch.clock().is_some_and(|c| target <= c) {
            return;
        }
        let Some((&at, &(_, offset))) = self.newest.iter().find(|(_, n)| n.0 == target) else {
            return;
        };
        let file = match self.places.iter().position(|p| *p == at) {
            Some(i) => i,
            None => {
                self.places.push(at);
                self.places.len() - 1
            }
        };
        let line = u64::try_from(offset).unwrap_or(0);
        self.watch
            .moved_to(target, line, Some(LineRef { file, line }));
    }

    /// An event reached the engine with outcome `o`: late (dropped) or
    /// not; one no rule selected is not counted (a stray stamp that made
    /// the complaints late must not hide behind the orders no rule reads).
    pub(super) fn counted(&mut self, o: crate::engine::Outcome) {
        if o != crate::engine::Outcome::Unmatched {
            self.watch.counted(o == crate::engine::Outcome::Late);
        }
    }

    /// Warns (at most once a minute) when more than 1 % of the events since
    /// the last warning were late, naming the message that moved the clock.
    pub(super) fn warn(&mut self, now: Instant) {
        if self
            .last_warning
            .is_some_and(|w| now.saturating_duration_since(w) < WARN_EVERY)
        {
            return;
        }
        self.warn_now(now);
    }

    /// [`LiveClock::warn`] without waiting out the minute since the last
    /// warning: at a stop, so that the log counts every late event.
    pub(super) fn warn_now(&mut self, now: Instant) {
        let Some(s) = self.watch.late_share() else {
            return;
        };
        if s.events < WARN_MIN_EVENTS {
            return;
        }
        let text = s.describe_with(|m: &ClockMove| match m.at {
            Some(r) => match self.places.get(r.file) {
                Some(&at) => self.place(at, i64::try_from(r.line).unwrap_or(i64::MAX)),
                None => format!("offset {}", r.line),
            },
            None => format!("offset {}", m.line),
        });
        // Live, a partition's events also come late when it was idle for
        // `idle_partition_timeout` (or the consumer stalled that long) while
        // the others moved the clock: no timestamp is wrong then.
        let text = format!(
            "{text}. Live, events also come late when a partition delivers after being idle \
             (no event) for sources.kafka.idle_partition_timeout while the others moved the clock \
             on, or the consumer stalled that long: then raise that timeout above the longest \
             stall"
        );
        tracing::warn!(tool = "run", late = s.late, events = s.events, "{text}");
        self.last_warning = Some(now);
        self.watch.reset_counts();
    }

    /// Refuted clock jumps since the last call.
    pub(crate) fn take_refuted(&mut self) -> Vec<Suspect> {
        std::mem::take(&mut self.refuted)
    }

    /// A partition was revoked: its guard and suspects go (the next owner
    /// reads them again). Returns how many suspects were dropped.
    pub(crate) fn revoke(&mut self, at: Partition) -> usize {
        self.newest.remove(&at);
        self.guards.remove(&at).map_or(0, |mut g| g.finish().len())
    }

    /// A suspect refuted: named in a warning and kept for the dead letters.
    fn refute(&mut self, s: Suspect) {
        tracing::warn!(
            message = %self.place(s.origin.at, s.origin.offset),
            detail = %s.detail,
            "Event rejected as a clock jump (clock_jump): counted and dead-lettered; the partition's clock did not move."
        );
        self.refuted.push(s);
    }

    /// End of a test stream: undecided suspects are refuted (and named, like
    /// every refuted message).
    pub(super) fn finish(&mut self) {
        let undecided: Vec<Suspect> = self
            .guards
            .values_mut()
            .flat_map(|g| g.finish())
            .flatten()
            .collect();
        for s in undecided {
            self.refute(s);
        }
    }

    /// Messages held by the guards.
    pub(super) fn held(&self) -> usize {
        self.guards.values().map(JumpGuard::held).sum()
    }
}
