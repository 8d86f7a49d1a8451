//! Silences of the whole stream in surge baselines (`engine.silence_after`):
//! which pane an event notes in a surge rule's occupancy, how many panes of
//! a baseline a silence leaves out, and the rule-wide check at every pane
//! boundary that evaluates the rule's slices when a silence first reaches
//! their baseline.
//!
//! A slice's value changes only when the slice is evaluated — at an event
//! of its own, a pane boundary the wheel or the warm-up scheduled, or an
//! alert deadline — whatever the interleaving, the worker threads or the
//! alert policy `tune` replays:
//!
//! * a pane is noted only while the clock has not left it, and runs of
//!   unnoted panes end before the window's end pane, so no event changes a
//!   silence an evaluation already judged;
//! * the boundary at which a silence first reaches the baseline (its
//!   *onset*: no baseline pane was silent at the boundary before) is known
//!   from the occupancy alone, so the rule checks every boundary and
//!   evaluates all its live slices there; while a silence stays in the
//!   baseline, fewer baseline panes than the rule's `baseline` hold
//!   history, so every live slice is evaluated at every boundary as during
//!   the warm-up, until the silent panes have left it.

use super::occupancy::Occupancy;
use super::pane::{boundary_time, pane_of};
use super::{Engine, RuleRt};
use crate::alert::Transition;

/// The longest silence run a pane ring holds beyond the window and the
/// baseline: a longer `engine.silence_after` (in panes of the rule's slide)
/// finds only the runs the ring still holds.
const MAX_SILENCE_PANES: i64 = 65_536;

/// [`RuleRt::silence_memo`] when it holds nothing.
pub(super) const NO_MEMO: ((i64, i64), i64) = ((i64::MIN, i64::MIN), 0);

impl RuleRt {
    /// Baseline panes with history behind a window ending at `end`: after
    /// the origin pane, and (a surge) not silent — a pane in which the
    /// whole stream had no event is no history (`occupancy`).
    pub(super) fn baseline_panes(&self, end: i64) -> i64 {
        if self.shape.m == 0 {
            return 0;
        }
        let Some(origin) = self.origin else { return 0 };
        // Panes after the origin pane are fully covered by the stream.
        let panes = (end - self.shape.n - origin).clamp(0, self.shape.m);
        match &self.occupancy {
            Some(o) if panes > 0 && self.silence_panes > 0 => {
                let through = end - self.shape.n;
                let key = (end, through - panes);
                let (k, silent) = self.silence_memo.get();
                if k == key {
                    return panes - silent;
                }
                // Runs end before the window's end pane, whose own events
                // are still coming.
                let silent = o.silent_runs(through - panes, through, end - 1, self.silence_panes);
                self.silence_memo.set((key, silent));
                panes - silent
            }
            _ => panes,
        }
    }

    /// The pane an event of the stream at `ts` (any valid event, selected
    /// or not) notes in a surge rule's occupancy at `clock`: its own, unless
    /// the clock has left it (see the module docs). An event behind the
    /// clock's pane (later than `allowed_lateness`, or out of order in an
    /// unsequenced engine) does not end a silence.
    #[inline]
    pub(super) fn occupied_pane(&self, ts: i64, clock: i64) -> Option<i64> {
        let p = pane_of(ts, self.slide);
        (p >= pane_of(clock, self.slide)).then_some(p)
    }

    /// Notes pane `pane` as occupied (an event of the stream, or a split
    /// stage's report). Returns when the rule's silence check is due if
    /// noting it armed the check: the caller lowers the engine's
    /// `wheel_floor` to it, or a clock moving past it would skip the check
    /// and run it late, behind evaluations at later times.
    #[must_use]
    pub(super) fn note_occupied_pane(&mut self, pane: i64) -> Option<i64> {
        let o = self.occupancy.as_deref_mut()?;
        if !o.mark(pane) {
            return None;
        }
        self.silence_memo.set(NO_MEMO);
        // A silence may have ended: its panes will leave the baseline.
        self.arm_silence_check(pane);
        self.silence_check_due()
    }

    /// `engine.silence_after` in this rule's panes (rounded up; 0: off),
    /// and a pane ring that holds the window, the baseline and a silence's
    /// run before it (up to [`MAX_SILENCE_PANES`]): what the ring knew is
    /// carried over when its size changes (a reload).
    pub(super) fn set_silence(&mut self, silence_ms: i64) {
        let slide = self.slide.max(1);
        self.silence_panes = if silence_ms <= 0 {
            0
        } else {
            silence_ms.saturating_add(slide - 1) / slide
        };
        let span = self
            .shape
            .n
            .saturating_add(self.shape.m)
            .saturating_add(self.silence_panes.min(MAX_SILENCE_PANES));
        if let Some(o) = self.occupancy.as_deref_mut() {
            let sized = Occupancy::new(span);
            if !sized.same_shape(o) {
                *o = sized.carried_from(o).unwrap_or(sized);
            }
        }
        if self.silence_panes == 0 {
            self.silence_next = i64::MAX;
        }
        self.silence_memo.set(NO_MEMO);
    }

    /// Baseline panes behind a window ending at `end` that a silence
    /// leaves out.
    fn silent_in_baseline(&self, end: i64) -> i64 {
        let Some(origin) = self.origin else { return 0 };
        let panes = (end - self.shape.n - origin).clamp(0, self.shape.m);
        panes - self.baseline_panes(end)
    }

    /// Arms the rule's silence check at the boundary after pane `end` (its
    /// first evaluation, a restore), if silences are on and it is not armed.
    #[inline]
    pub(super) fn arm_silence_check(&mut self, end: i64) {
        if self.silence_next == i64::MAX && self.silence_panes > 0 && self.occupancy.is_some() {
            self.silence_next = end.saturating_add(1);
        }
    }

    /// When the rule's next silence check is due.
    #[inline]
    pub(super) fn silence_check_due(&self) -> Option<i64> {
        (self.silence_next != i64::MAX).then(|| boundary_time(self.silence_next, self.slide))
    }
}

impl Engine {
    /// Whether a silence has reached rule `i`'s baseline at one of its
    /// checks since the engine started (`tune`'s fan is then exact only
    /// while no alert on a group without data is active).
    pub(crate) fn rule_silence_seen(&self, i: usize) -> bool {
        self.rules.get(i).is_some_and(|r| r.silence_seen)
    }

    /// Rule `r`'s silence check at its boundary `time`: at a silence's
    /// onset every live slice of the rule is evaluated. The next check is
    /// at the following boundary, or later when nothing can happen before:
    /// while the stream is quiet, no onset comes before the quiet run is
    /// `silence_after` long and has reached the baseline; while it is
    /// silent with the silence in the baseline, none comes before the
    /// silence ends (the next noted pane arms the check again). So a clock
    /// that moves years at once runs a few checks, not one per boundary.
    pub(super) fn silence_check(&mut self, r: u32, time: i64, out: &mut Vec<Transition>) {
        let rule = &mut self.rules[r as usize];
        let end = rule.silence_next;
        let (n, run) = (rule.shape.n, rule.silence_panes);
        let quiet = rule
            .occupancy
            .as_deref()
            .map_or(0, |o| o.free_run_back(end - 1, run.max(n)));
        if rule.silent_in_baseline(end) == 0 {
            rule.silence_next = if quiet + 1 >= n {
                // The quiet run covers the window: no other run can reach
                // the baseline first.
                (end + 1).max(end - quiet + n).max(end + run - quiet)
            } else {
                end.saturating_add(1)
            };
            return;
        }
        rule.silence_seen = true;
        // A silence still going on that has reached the baseline keeps a
        // baseline pane silent until it ends.
        rule.silence_next = if quiet >= run.max(n) {
            i64::MAX
        } else {
            end.saturating_add(1)
        };
        if rule.silent_in_baseline(end - 1) > 0 {
            return;
        }
        let live: Vec<(u32, u32)> = rule
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.group.is_some())
            .map(|(i, s)| (i as u32, s.gen))
            .collect();
        for (slot, gen) in live {
            self.fire(r, slot, gen, time, out);
        }
    }
}
