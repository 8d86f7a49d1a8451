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
}

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
        }
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
        let near = |a: i64, b: i64| a.abs_diff(b) <= self.max_jump_ms.unsigned_abs();
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
        for (t, item) in waiting {
            if t < anchor.saturating_sub(self.max_jump_ms) {
                v.rejected.push(item);
                continue;
            }
            let w = self.offer(t, item);
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
        let mut v = Verdict {
            pass: Vec::new(),
            rejected: Vec::new(),
        };
        if let Some(start) = self.start.as_mut() {
            start.push((ts, item));
            return match self.anchor(false) {
                Some(a) => self.start_at(a),
                None => v,
            };
        }
        self.offered += 1;
        let beyond = self.max_jump_ms > 0
            && self
                .clock
                .is_some_and(|c| ts > c.saturating_add(self.max_jump_ms));
        if !beyond {
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
        let max = self.max_jump_ms;
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
        if !self.suspects.is_empty() || self.start.is_some() || self.jump_detail(ts).is_some() {
            return false;
        }
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

    /// The detail of a refuted `clock_jump` at `ts`: [`JumpGuard::jump_detail`],
    /// or, for an event refuted when the clock started, how far behind the
    /// first events' agreed time it was.
    pub fn refuted_detail(&self, ts: i64) -> String {
        if let Some(d) = self.jump_detail(ts) {
            return d;
        }
        match self.anchored_at {
            Some(a) if self.max_jump_ms > 0 && ts < a.saturating_sub(self.max_jump_ms) => format!(
                "ts {} is more than engine.max_clock_jump ({} ms) behind {}, where the input's first events agree the stream starts (a stray line from another time)",
                crate::event::format_ts(ts),
                self.max_jump_ms,
                crate::event::format_ts(a),
            ),
            _ => String::new(),
        }
    }

    /// Why an event at `ts` would be held (`None`: it would pass), as the
    /// detail of its `clock_jump` if it is refuted.
    pub fn jump_detail(&self, ts: i64) -> Option<String> {
        let c = self.clock?;
        (self.max_jump_ms > 0 && ts > c.saturating_add(self.max_jump_ms)).then(|| {
            format!(
                "ts {} is more than engine.max_clock_jump ({} ms) ahead of the stream's clock {}{}",
                crate::event::format_ts(ts),
                self.max_jump_ms,
                crate::event::format_ts(c),
                self.refuted_tail()
            )
        })
    }
}

#[cfg(test)]
mod tests;
