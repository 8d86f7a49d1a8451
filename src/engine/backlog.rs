//! The response-SLA backlog (`unanswered` and `response_time` rules): which
//! complaint each response answers, and how long the first answer took.
//!
//! A complaint the rule selects adds 1 to its pane in its own slice, like a
//! count; the rule's window is shaped so that the panes within `sla` (plus
//! one) are the current region and the older ones (up to the rule's
//! `window`) the region behind it, whose total is the indicator's value: a
//! complaint counts from the first slide boundary at which its pane is
//! wholly past the SLA — never before its deadline, at most a slide after.
//! A response (an event the rule's `responses` select, naming the
//! complaint's `id` in `ref_id`) takes its complaint out: −1 in the
//! complaint's pane of the complaint's slice,
//! then an evaluation — so an incident resolves as soon as the backlog is
//! answered, and opens at the boundary where the first unanswered complaint
//! passes the SLA (a pane boundary timer, like every window change). This
//! module keeps the books; `answer.rs` changes the window.
//!
//! A `response_time` rule matches complaints and responses the same way, but
//! its window is plain (the rule's `window`): a complaint adds 1 to `c0` (it
//! keeps its slice, and its book, alive), a first response adds 1 to `c1` in
//! the response's pane and its time (response − complaint, at least 0) to
//! the book; the value is a quantile of the times whose pane is in the
//! window ([`response_time`]), which leave the book with their pane.
//!
//! State, all bounded by `engine.dedup_max_ids` per rule and by the window:
//! * per group, its **book**: the complaints of its window (time, id) and
//!   whether each is answered — it lives with the group that owns the
//!   complaint's slice and is checkpointed with it; for `response_time` also
//!   the first-response times of the window (at most the cap per rule);
//! * per rule, the **index** id → (slot, time) of the books (derived: rebuilt
//!   from the groups on restore) and the **early** responses, whose
//!   complaint has not come (yet): a complaint that arrives after its response
//!   is answered on arrival. They are checkpointed; those older than the
//!   window are dropped.
//!
//! Counted per rule ([`super::RuleStats`]): responses seen, first responses
//! (of which early), repeats (a complaint answered again, or the same early
//! reference twice) — each complaint is answered once — and complaints not
//! booked because the rule's book is full. Unknown references are the rest:
//! `responses − first − repeat` (early ones still waiting included).
//!
//! With shards, the book lives with the owner of the complaint's slice; a
//! response is checked by every worker, and only the owner finds it in its
//! index — the others hold it as early. The per-rule counters other than
//! `responses` are then counted by the owner alone.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::event::Event;
use crate::indicator::Contribution;

use super::pane::pane_of;
use super::RuleRt;

/// One group's part of the backlog, checkpointed with the group.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Book {
    /// The complaints of the window: (time, id) → answered.
    complaints: BTreeMap<(i64, Box<str>), bool>,
    /// `response_time` rules: the first-response times (pane of the
    /// response, milliseconds), ordered by pane.
    times: VecDeque<(i64, i64)>,
}

impl Book {
    /// Complaints booked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.complaints.len()
    }

    fn is_empty(&self) -> bool {
        self.complaints.is_empty() && self.times.is_empty()
    }
}

/// The `q` quantile (nearest rank: the smallest time with at least `q` of
/// the times at or below it) of a book's first-response times whose
/// response falls in panes `(from, to]`, in seconds, and how many there
/// are (`response_time` rules).
pub(super) fn response_time(book: Option<&Book>, from: i64, to: i64, q: f64) -> (Option<f64>, i64) {
    let mut ms: Vec<i64> = book
        .map(|b| {
            b.times
                .iter()
                .filter(|(p, _)| *p > from && *p <= to)
                .map(|(_, ms)| *ms)
                .collect()
        })
        .unwrap_or_default();
    let n = ms.len();
    if n == 0 {
        return (None, 0);
    }
    // ceil(q·n), within [1, n]; q is validated in (0, 1].
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    let (_, kth, _) = ms.select_nth_unstable(rank - 1);
    (
        Some(*kth as f64 / 1000.0),
        i64::try_from(n).unwrap_or(i64::MAX),
    )
}

/// The rule-wide part of a backlog rule (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Complaint id → (slot of the group whose book holds it, its time).
    index: HashMap<Box<str>, (u32, i64)>,
    /// References of responses that came before their complaint → response time.
    early: HashMap<Box<str>, i64>,
    /// The same, oldest first (an entry whose reference was matched since is skipped).
    early_order: VecDeque<(i64, Box<str>)>,
    /// Most complaints (and early responses, and first-response times) held.
    cap: usize,
    /// Whether the rule keeps first-response times (`response_time`).
    timed: bool,
    /// First-response times held in the groups' books.
    times: usize,
}

/// What a response did to its rule's backlog ([`RuleRt::respond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Response {
    /// The first answer of the complaint at time `t` booked in the group of
    /// `slot`: it leaves the window.
    First {
        /// The slot of the group whose book holds the complaint.
        slot: u32,
        /// The complaint's time.
        t: i64,
    },
    /// Held as early: its complaint has not come (yet).
    Held,
    /// Nothing changed (a repeat, an overflow, no reference, no backlog rule).
    Nothing,
}

impl Backlog {
    /// An empty backlog holding at most `cap` complaints; with `timed`, it
    /// keeps first-response times too (at most `cap`).
    pub(super) fn new(cap: usize, timed: bool) -> Self {
        Backlog {
            cap: cap.max(1),
            timed,
            ..Backlog::default()
        }
    }

    /// The early responses, for a checkpoint (oldest first).
    pub(super) fn early(&self) -> Vec<(i64, Box<str>)> {
        self.early_order
            .iter()
            .filter(|(t, id)| self.early.get(id) == Some(t))
            .cloned()
            .collect()
    }

    /// Drops early responses at or before `horizon`.
    fn expire_early(&mut self, horizon: i64) {
        while let Some((t, _)) = self.early_order.front() {
            if *t > horizon {
                break;
            }
            if let Some((t, id)) = self.early_order.pop_front() {
                if self.early.get(&id) == Some(&t) {
                    self.early.remove(&id);
                }
            }
        }
    }
}

impl RuleRt {
    /// An event this rule selects, `c` its contribution: for a complaint of
    /// a backlog rule, `None` if it is not booked (the book is full, or its
    /// id is booked already); else the contribution (for an `unanswered`
    /// rule nothing, if an early response answered the complaint) and the
    /// time of that early response.
    #[inline]
    pub(super) fn admit(
        &mut self,
        c: Contribution,
        ev: &Event<'_>,
    ) -> Option<(Contribution, Option<i64>)> {
        let Some(b) = self.backlog.as_deref_mut() else {
            return Some((c, None));
        };
        if b.index.contains_key(ev.id.as_ref()) {
            return None;
        }
        if b.index.len() >= b.cap {
            self.stats.backlog_overflow += 1;
            return None;
        }
        if let Some(at) = b.early.remove(ev.id.as_ref()) {
            self.stats.responses_first += 1;
            self.stats.responses_early += 1;
            if b.timed {
                return Some((c, Some(at)));
            }
            return Some((Contribution { delta: [0; 3], ..c }, Some(at)));
        }
        Some((c, None))
    }

    /// Whether this rule keeps first-response times (`response_time`).
    pub(super) fn timed(&self) -> bool {
        self.backlog.as_deref().is_some_and(|b| b.timed)
    }

    /// Whether the rule has room for one more first-response time; counts
    /// an overflow if not.
    pub(super) fn time_room(&mut self) -> bool {
        let Some(b) = self.backlog.as_deref_mut() else {
            return false;
        };
        if b.times >= b.cap {
            self.stats.backlog_overflow += 1;
            return false;
        }
        true
    }

    /// Keeps the first-response time `ms` of a response in `pane`, in the
    /// book of the group of `slot` (after [`RuleRt::time_room`]).
    pub(super) fn keep_time(&mut self, slot: u32, pane: i64, ms: i64) {
        let (Some(b), Some(g)) = (
            self.backlog.as_deref_mut(),
            self.slots
                .get_mut(slot as usize)
                .and_then(|s| s.group.as_mut()),
        ) else {
            return;
        };
        let times = &mut g.book.get_or_insert_with(Box::default).times;
        let at = times.partition_point(|(p, _)| *p <= pane);
        times.insert(at, (pane, ms));
        b.times += 1;
    }

    /// Books complaint `ev` in the group of `slot` (its pane was added).
    pub(super) fn book(&mut self, slot: u32, ev: &Event<'_>, answered: bool) {
        let Some(b) = self.backlog.as_deref_mut() else {
            return;
        };
        let Some(g) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.group.as_mut())
        else {
            return;
        };
        let id: Box<str> = ev.id.as_ref().into();
        g.book
            .get_or_insert_with(Box::default)
            .complaints
            .insert((ev.ts, id.clone()), answered);
        b.index.insert(id, (slot, ev.ts));
    }

    /// Drops the complaints of the group in `slot` whose pane left the
    /// window (all of them when the group is forgotten).
    pub(super) fn expire_book(&mut self, slot: u32, all: bool) {
        let (Some(b), Some(g)) = (
            self.backlog.as_deref_mut(),
            self.slots
                .get_mut(slot as usize)
                .and_then(|s| s.group.as_mut()),
        ) else {
            return;
        };
        let Some(book) = g.book.as_deref_mut() else {
            return;
        };
        let horizon = g.window.end() - self.shape.n - self.shape.m;
        while let Some(((t, _), _)) = book.complaints.first_key_value() {
            if !all && pane_of(*t, self.slide) > horizon {
                break;
            }
            if let Some(((_, id), _)) = book.complaints.pop_first() {
                b.index.remove(&id);
            }
        }
        while let Some((p, _)) = book.times.front() {
            if !all && *p > horizon {
                break;
            }
            book.times.pop_front();
            b.times = b.times.saturating_sub(1);
        }
        if book.is_empty() {
            g.book = None;
        }
    }

    /// Rebuilds the index from the groups' books and sets the early
    /// responses (after a restore).
    pub(super) fn reindex(&mut self, early: Vec<(i64, Box<str>)>) {
        let Some(b) = self.backlog.as_deref_mut() else {
            return;
        };
        b.index.clear();
        b.times = 0;
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(book) = s.group.as_ref().and_then(|g| g.book.as_deref()) else {
                continue;
            };
            for (t, id) in book.complaints.keys() {
                b.index.insert(id.clone(), (slot as u32, *t));
            }
            b.times += book.times.len();
        }
        b.early = early.iter().map(|(t, id)| (id.clone(), *t)).collect();
        b.early_order = early.into();
    }

    /// A response of this backlog rule at the clock `clock`: marks its
    /// complaint answered (the caller takes it out of the window), or holds
    /// it as early, or counts it as a repeat or an overflow.
    pub(super) fn respond(&mut self, ev: &Event<'_>, clock: i64) -> Response {
        let (Some(b), Some(reference)) = (self.backlog.as_deref_mut(), ev.ref_id.as_deref()) else {
            return Response::Nothing;
        };
        self.stats.responses += 1;
        b.expire_early(clock.saturating_sub(self.window_ms));
        let Some(&(slot, t)) = b.index.get(reference) else {
            if b.early.contains_key(reference) {
                self.stats.responses_repeat += 1;
                return Response::Nothing;
            }
            if b.early.len() >= b.cap {
                self.stats.backlog_overflow += 1;
                return Response::Nothing;
            }
            b.early.insert(reference.into(), ev.ts);
            b.early_order.push_back((ev.ts, reference.into()));
            return Response::Held;
        };
        let Some(answered) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.group.as_mut())
            .and_then(|g| g.book.as_deref_mut())
            .and_then(|book| book.complaints.get_mut(&(t, reference.into())))
        else {
            return Response::Nothing;
        };
        if *answered {
            self.stats.responses_repeat += 1;
            return Response::Nothing;
        }
        *answered = true;
        self.stats.responses_first += 1;
        Response::First { slot, t }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;
