//! Clock jumps (issue 11): an event stamped far ahead of the stream's clock
//! must not move the clock by itself, or one stray stamp (the year 5138, a
//! producer whose clock is days ahead) makes everything after it late.
//!
//! [`JumpGuard`] sits in front of a feed's sequencer. An event more than
//! `engine.max_clock_jump` ahead of the clock (the newest event time the feed
//! has let through) is a *suspect*: held aside, not offered to the sequencer.
//! Then the following events decide:
//!
//! * suspects — events beyond the old clock's allowance — at
//!   `engine.clock_jump_confirm` + 1 **distinct times** that **agree** (all
//!   within `max_clock_jump` of the newest) **confirm** the jump: a real gap
//!   in the history (the data resumes days later, and what follows the gap
//!   is close in time and moves on). Those suspects are let through in
//!   arrival order and the clock moves with them; suspects that do not agree
//!   (a burst of stray stamps in different years, the year 5138 before a
//!   real gap) are not carried along: within the new clock's allowance they
//!   pass, beyond it they stay suspects. A burst stamped with one and the
//!   same wrong time (a batch given a default date), however long, confirms
//!   nothing: the events after it refute it.
//! * as many events within the allowance **refute** it: the suspects are
//!   invalid (`clock_jump`), counted and dead-lettered (named in the tools'
//!   summaries), and the clock never moved.
//! * at the end of the input, undecided suspects are refuted (nothing
//!   followed them to confirm the jump).
//!
//! With no clock yet, the first event would set it unchecked: a history
//! whose first line is stamped days ahead would make every line after it
//! late. The history tools therefore start [anchored](JumpGuard::anchored):
//! the first events wait until one of them has `clock_jump_confirm` others
//! within `max_clock_jump` of it (either way); the clock starts there, and the
//! waiting events are then offered in arrival order as above (one far ahead
//! is a suspect like any other; one more than `max_clock_jump` *behind* it —
//! a stray old line at the top of a file, which would start the warm-up of
//! every surge baseline days early — is refuted the same way). `run` does not wait: there, an event ahead
//! of the wall clock is refused on arrival (`engine.max_future_skew`), and a
//! quiet partition must not hold its first events.
//!
//! **A sparse stream's own rhythm.** `max_clock_jump` is the floor of the
//! reach: a stream whose events come a day or more apart (a small company's
//! cancellations, one summary a day) steps past it with every event. So the
//! reach is the larger of `max_clock_jump` and [`SPREAD`] times the stream's
//! usual step: the lower median of the last [`STEPS`] forward steps between
//! consecutive events let through (in arrival order; from [`MIN_STEPS`] of
//! them; an anchored guard starts from its first events' own rhythm). On a
//! dense stream that median is milliseconds and the reach is
//! `max_clock_jump`; on a stream of one event a day it is four days, so its
//! events pass (they were refuted as jumps, 26 of 30 on a month of them),
//! while one stamped weeks ahead is still held. One stray stamp is one step
//! among sixteen and moves no median; suspects note their steps only once
//! they pass; and the reach never exceeds [`MAX_SPREAD`] times
//! `max_clock_jump`. Before the rhythm is known (a stream's first events, or
//! a restart), suspects agree within the rhythm of the clock and their own
//! times, so a sparse stream's first days confirm one another.
//!
//! Deterministic: the verdict depends on the input order only.

use std::collections::{BTreeMap, VecDeque};

/// What an offered event leads to.
#[derive(Debug)]
pub struct Verdict<T> {
    /// Events to feed now, in order (the offered one, or confirmed suspects
    /// followed by nothing else).
    pub pass: Vec<T>,
    /// Suspects refuted: invalid (`clock_jump`).
    pub rejected: Vec<T>,
}

/// Holds events that would jump the clock until later events decide (see the
/// module docs).
#[derive(Debug)]
pub struct JumpGuard<T> {
    max_jump_ms: i64,
    confirm: u32,
    /// The newest event time let through.
    clock: Option<i64>,
    /// Events held aside, in arrival order, with their times and their
    /// arrival numbers (`offered` when they came).
    suspects: VecDeque<(i64, u64, T)>,
    /// The suspects' times, with how many suspects have each.
    times: BTreeMap<i64, u32>,
    /// Events offered since the clock started (arrival numbers).
    offered: u64,
    /// Events within the allowance since the first suspect.
    against: u32,
    /// Anchoring: the first events, waiting for the clock to start.
    start: Option<Vec<(i64, T)>>,
    /// Where an anchored clock started.
    anchored_at: Option<i64>,
    /// The last forward steps between consecutive offered events (arrival
    /// order), and the time of the last one offered.
    steps: VecDeque<i64>,
    last_ts: Option<i64>,
}

/// The reach is at least this many times the stream's usual step.
pub(crate) const SPREAD: i64 = 4;

/// ... and at most this many times `max_clock_jump` (32 days by default):
/// stamps centuries apart never make a rhythm.
pub(crate) const MAX_SPREAD: i64 = 32;

/// Forward steps between consecutive events kept for the usual step.
const STEPS: usize = 16;

/// Steps needed before the usual step counts (one or two could be a stray
/// stamp's own step).
const MIN_STEPS: usize = 3;

/// The most events an anchoring guard holds before it starts the clock at
/// the best-agreed one anyway.
const MAX_START: usize = 64;

/// The most suspects held at once: a stream whose stamps scatter far ahead
/// and never agree, or a burst of one wrong time with nothing after it, is
/// refuted oldest first beyond it. Far above what a real gap needs (the
/// first `clock_jump_confirm` + 1 distinct times after it).
const MAX_SUSPECTS: usize = 65_536;

impl<T> JumpGuard<T> {
    /// A guard allowing jumps up to `max_jump_ms` (0: any), decided by
    /// `confirm` events.
    pub fn new(max_jump_ms: i64, confirm: u32) -> Self {
        JumpGuard {
            max_jump_ms,
            confirm: confirm.max(1),
            clock: None,
            suspects: VecDeque::new(),
            times: BTreeMap::new(),
            offered: 0,
            against: 0,
            start: None,
            anchored_at: None,
            steps: VecDeque::with_capacity(STEPS + 1),
            last_ts: None,
        }
    }

    /// The forward steps between the waiting first events' times, in time
    /// order (the last [`STEPS`]).
    fn start_steps(start: &[(i64, T)]) -> VecDeque<i64> {
        steps_of(start.iter().map(|&(t, _)| t))
    }

    /// Notes the time of an event let through: a forward step from the
    /// last one (suspects note theirs only when they pass, so a burst of
    /// stray stamps never sets the usual step).
    #[inline]
    fn step(&mut self, ts: i64) {
        if let Some(last) = self.last_ts {
            if ts > last {
                self.steps.push_back(ts.saturating_sub(last));
                if self.steps.len() > STEPS {
                    self.steps.pop_front();
                }
            }
        }
        self.last_ts = Some(ts);
    }

    /// How far ahead of the clock (or apart, or behind the start) an event
    /// may be: `max_clock_jump`, or [`SPREAD`] times the stream's usual step
    /// when that is longer (see the module docs). 0: jumps are not checked.
    pub(crate) fn reach(&self) -> i64 {
        Self::reach_of(self.max_jump_ms, &self.steps)
    }

    fn reach_of(max_jump_ms: i64, steps: &VecDeque<i64>) -> i64 {
        if max_jump_ms <= 0 || steps.len() < MIN_STEPS {
            return max_jump_ms.max(0);
        }
        let mut v: Vec<i64> = steps.iter().copied().collect();
        let mid = (v.len() - 1) / 2;
        let (_, usual, _) = v.select_nth_unstable(mid);
        usual
            .saturating_mul(SPREAD)
            .clamp(max_jump_ms, max_jump_ms.saturating_mul(MAX_SPREAD))
    }

    /// Before the stream's rhythm is known (fewer than [`MIN_STEPS`] steps
    /// let through: its start, or a restart), the reach within which
    /// suspects agree: from the steps between the clock and the suspects'
    /// times in order — a sparse stream's first days agree with one another
    /// (capped by [`MAX_SPREAD`], so stamps years apart never do).
    fn provisional_reach(&self) -> i64 {
        // The clock and the earliest suspect times (a bounded look: a
        // scatter of thousands of strays costs the same).
        let times = self
            .clock
            .into_iter()
            .chain(self.times.keys().copied().take(STEPS));
        Self::reach_of(self.max_jump_ms, &steps_of(times)).max(self.reach())
    }

    /// Holds the first events until one of them is agreed by
    /// `confirm` others (see the module docs); the history tools' guard.
    /// Call [`JumpGuard::settle_start`] before [`JumpGuard::finish`].
    pub fn anchored(mut self) -> Self {
        if self.max_jump_ms > 0 && self.clock.is_none() {
            self.start = Some(Vec::new());
        }
        self
    }

    /// The clock's start among the waiting first events: the first (in
    /// arrival order) that `confirm` others agree with, or, with `any`, the
    /// one most others agree with.
    fn anchor(&self, any: bool) -> Option<i64> {
        let start = self.start.as_ref()?;
        let reach = Self::reach_of(self.max_jump_ms, &Self::start_steps(start)).unsigned_abs();
        let near = |a: i64, b: i64| a.abs_diff(b) <= reach;
        let mut best: Option<(usize, i64)> = None;
        for (i, &(t, _)) in start.iter().enumerate() {
            let agree = start
                .iter()
                .enumerate()
                .filter(|&(j, &(u, _))| j != i && near(t, u))
                .count();
            if agree >= self.confirm as usize {
                return Some(t);
            }
            if best.is_none_or(|(n, _)| agree > n) {
                best = Some((agree, t));
            }
        }
        (any || start.len() >= MAX_START)
            .then_some(best.map(|(_, t)| t))
            .flatten()
    }

    /// Starts the clock at `anchor` and offers the waiting events in
    /// arrival order; those more than `max_clock_jump` behind it are refuted.
    fn start_at(&mut self, anchor: i64) -> Verdict<T> {
        let waiting = self.start.take().unwrap_or_default();
        self.clock = Some(anchor);
        self.anchored_at = Some(anchor);
        let mut v = Verdict {
            pass: Vec::new(),
            rejected: Vec::new(),
        };
        // The waiting events' own rhythm (their times in order) seeds the
        // stream's usual step.
        self.steps = Self::start_steps(&waiting);
        let reach = self.reach();
        for (t, item) in waiting {
            if t < anchor.saturating_sub(reach) {
                v.rejected.push(item);
                continue;
            }
            let w = self.offer_noted(t, item);
            v.pass.extend(w.pass);
            v.rejected.extend(w.rejected);
        }
        v
    }

    /// End of input for an [anchored](JumpGuard::anchored) guard whose clock
    /// has not started: starts it at the best-agreed first event. Empty
    /// otherwise.
    pub fn settle_start(&mut self) -> Verdict<T> {
        match self.anchor(true) {
            Some(a) => self.start_at(a),
            None => {
                self.start = None;
                Verdict {
                    pass: Vec::new(),
                    rejected: Vec::new(),
                }
            }
        }
    }

    /// Offers the next valid event (time `ts`) in arrival order.
    pub fn offer(&mut self, ts: i64, item: T) -> Verdict<T> {
        if let Some(start) = self.start.as_mut() {
            start.push((ts, item));
            return match self.anchor(false) {
                Some(a) => self.start_at(a),
                None => Verdict {
                    pass: Vec::new(),
                    rejected: Vec::new(),
                },
            };
        }
        self.offer_noted(ts, item)
    }

    /// [`JumpGuard::offer`] once the clock started.
    fn offer_noted(&mut self, ts: i64, item: T) -> Verdict<T> {
        let mut v = Verdict {
            pass: Vec::new(),
            rejected: Vec::new(),
        };
        self.offered += 1;
        let max = self.reach();
        let beyond = max > 0 && self.clock.is_some_and(|c| ts > c.saturating_add(max));
        if !beyond {
            self.step(ts);
            self.clock = Some(self.clock.map_or(ts, |c| c.max(ts)));
            v.pass.push(item);
            if !self.suspects.is_empty() {
                self.against += 1;
                if self.against >= self.confirm {
                    v.rejected = self.take_suspects().map(|(_, _, t)| t).collect();
                    self.against = 0;
                }
            }
            return v;
        }
        self.suspects.push_back((ts, self.offered, item));
        *self.times.entry(ts).or_default() += 1;
        // Suspects at `confirm` + 1 distinct times that agree with this one.
        let max = if self.steps.len() < MIN_STEPS {
            self.provisional_reach()
        } else {
            max
        };
        let agreeing_times = self
            .times
            .range(ts.saturating_sub(max)..=ts.saturating_add(max))
            .take(self.confirm as usize + 1)
            .count();
        if agreeing_times > self.confirm as usize {
            let reach = max.unsigned_abs();
            let (mut passing, others): (Vec<_>, Vec<_>) = self
                .take_suspects()
                .partition(|&(t, _, _)| t.abs_diff(ts) <= reach);
            for &(t, _, _) in &passing {
                self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
            }
            // The others, against the new clock: within its allowance they
            // pass; beyond it they wait for the events after them.
            for s in others {
                if self.jump_detail(s.0).is_some() {
                    *self.times.entry(s.0).or_default() += 1;
                    self.suspects.push_back(s);
                } else {
                    passing.push(s);
                }
            }
            passing.sort_by_key(|&(_, n, _)| n);
            for &(t, _, _) in &passing {
                self.step(t);
            }
            v.pass.extend(passing.into_iter().map(|(_, _, item)| item));
            self.against = 0;
        } else if self.suspects.len() > MAX_SUSPECTS {
            if let Some((t, _, oldest)) = self.suspects.pop_front() {
                self.forget_time(t);
                v.rejected.push(oldest);
            }
        }
        v
    }

    /// Every suspect, in arrival order; none is held any more.
    fn take_suspects(&mut self) -> std::collections::vec_deque::IntoIter<(i64, u64, T)> {
        self.times.clear();
        std::mem::take(&mut self.suspects).into_iter()
    }

    /// A suspect at `t` left.
    fn forget_time(&mut self, t: i64) {
        if let Some(n) = self.times.get_mut(&t) {
            *n -= 1;
            if *n == 0 {
                self.times.remove(&t);
            }
        }
    }

    /// The common case without building a verdict: when nothing is held and
    /// `ts` is within the allowance, it passes (the clock follows) and this
    /// returns `true`; otherwise nothing changes and the caller
    /// [offers](JumpGuard::offer) the event.
    pub fn pass_quick(&mut self, ts: i64) -> bool {
        if !self.suspects.is_empty() || self.start.is_some() {
            return false;
        }
        // Within `max_clock_jump` it passes whatever the stream's step; only
        // beyond it does the reach (a median) need working out.
        let floor_ok = self.max_jump_ms <= 0
            || self
                .clock
                .is_none_or(|c| ts <= c.saturating_add(self.max_jump_ms));
        if !floor_ok {
            let reach = self.reach();
            if self.clock.is_some_and(|c| ts > c.saturating_add(reach)) {
                return false;
            }
        }
        self.step(ts);
        self.clock = Some(self.clock.map_or(ts, |c| c.max(ts)));
        true
    }

    /// Starts from a clock restored from a checkpoint (no suspects held).
    pub fn with_clock(mut self, clock: Option<i64>) -> Self {
        self.clock = clock;
        self
    }

    /// End of input: undecided suspects are refuted.
    pub fn finish(&mut self) -> Vec<T> {
        self.finish_counted().into_iter().map(|(t, _)| t).collect()
    }

    /// [`JumpGuard::finish`], each suspect with how many events came after
    /// it (for [`JumpGuard::ended_detail`]).
    fn finish_counted(&mut self) -> Vec<(T, u64)> {
        self.against = 0;
        let offered = self.offered;
        self.take_suspects()
            .map(|(_, n, t)| (t, offered - n))
            .collect()
    }

    /// The suspects still undecided at the end of the input, refuted: each
    /// one's detail (reached through `parts`, with its time; empty when it
    /// was held before the clock started) is written, and ends with how
    /// many events came after it ([`JumpGuard::ended_detail`]).
    pub fn finish_explained(&mut self, parts: impl Fn(&mut T) -> (i64, &mut String)) -> Vec<T> {
        let undecided = self.finish_counted();
        undecided
            .into_iter()
            .map(|(mut t, after)| {
                let (ts, detail) = parts(&mut t);
                if detail.is_empty() {
                    *detail = self.refuted_detail(ts);
                }
                *detail = self.ended_detail(detail, after);
                t
            })
            .collect()
    }

    /// The [`JumpGuard::jump_detail`] of a suspect refuted at the end of
    /// the input with `after` events after it: no longer "the events after
    /// it did not confirm the jump" (there may have been none).
    fn ended_detail(&self, detail: &str, after: u64) -> String {
        let Some(head) = detail.strip_suffix(&self.refuted_tail()) else {
            return detail.to_string();
        };
        match after {
            0 => format!("{head}, and it was the last event of the input: no event after it confirmed the jump"),
            1 => format!("{head}, and the input ended one event after it, before {} events confirmed the jump", self.confirm),
            n => format!("{head}, and the input ended {n} events after it, before {} events confirmed the jump", self.confirm),
        }
    }

    /// How [`JumpGuard::jump_detail`] ends: refuted by the events after it.
    fn refuted_tail(&self) -> String {
        format!(
            ", and the {} events after it did not confirm the jump",
            self.confirm
        )
    }

    /// Events held aside.
    pub fn held(&self) -> usize {
        self.suspects.len() + self.start.as_ref().map_or(0, Vec::len)
    }

    /// The newest event time let through.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// `detail` of a refuted jump, or when it has none (held before the
    /// clock started) its [`JumpGuard::refuted_detail`]: described against
    /// where the stream started.
    pub(crate) fn detail_or_refuted(&self, ts: i64, detail: String) -> String {
        if detail.is_empty() {
            self.refuted_detail(ts)
        } else {
            detail
        }
    }

    /// The detail of a refuted `clock_jump` at `ts`: [`JumpGuard::jump_detail`],
    /// or, for an event refuted when the clock started, how far behind the
    /// first events' agreed time it was.
    pub fn refuted_detail(&self, ts: i64) -> String {
        if let Some(d) = self.jump_detail(ts) {
            return d;
        }
        let reach = self.reach();
        match self.anchored_at {
            Some(a) if reach > 0 && ts < a.saturating_sub(reach) => format!(
                "ts {} is more than {} behind {}, where the input's first events agree the stream starts (a stray line from another time)",
                crate::event::format_ts(ts),
                self.reach_text(reach),
                crate::event::format_ts(a),
            ),
            _ => String::new(),
        }
    }

    /// The reach, named: `engine.max_clock_jump (… ms)`, or the stream's
    /// own step when that is what set it.
    fn reach_text(&self, reach: i64) -> String {
        if reach <= self.max_jump_ms {
            format!("engine.max_clock_jump ({} ms)", self.max_jump_ms)
        } else {
            format!(
                "{reach} ms ({SPREAD} times the stream's usual step between events, above engine.max_clock_jump)"
            )
        }
    }

    /// Why an event at `ts` would be held (`None`: it would pass), as the
    /// detail of its `clock_jump` if it is refuted.
    pub fn jump_detail(&self, ts: i64) -> Option<String> {
        let c = self.clock?;
        let reach = self.reach();
        (reach > 0 && ts > c.saturating_add(reach)).then(|| {
            format!(
                "ts {} is more than {} ahead of the stream's clock {}{}",
                crate::event::format_ts(ts),
                self.reach_text(reach),
                crate::event::format_ts(c),
                self.refuted_tail()
            )
        })
    }
}

/// The forward steps between `times` in time order (the last [`STEPS`]).
fn steps_of(times: impl IntoIterator<Item = i64>) -> VecDeque<i64> {
    let mut times: Vec<i64> = times.into_iter().collect();
    times.sort_unstable();
    let steps: Vec<i64> = times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|&d| d > 0)
        .collect();
    steps[steps.len().saturating_sub(STEPS)..]
        .iter()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
