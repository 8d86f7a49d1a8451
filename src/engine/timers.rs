//! The engine's clock: moving event time forward runs every evaluation due
//! on the way — wheel boundaries (panes leaving a window) and alert deadlines
//! — in time order, and emits their transitions in canonical order.

use std::cmp::Reverse;

use super::evaluate::evaluate;
use super::pane::{boundary_time, end_pane};
use super::Engine;
use crate::alert::Transition;

impl Engine {
    /// Moves the event-time clock forward to `t` (never back), running every
    /// evaluation due on the way, in time order.
    ///
    /// The transitions it emits are in canonical order — by time, then rule
    /// (configuration order), then group — which does not depend on how the
    /// groups are laid out in memory, so that sharded engines merge into
    /// exactly this engine's output.
    pub fn advance_clock(&mut self, t: i64, out: &mut Vec<Transition>) {
        if let Some(c) = self.clock {
            if t <= c {
                return;
            }
        }
        let start = out.len();
        self.run_timers(t, out);
        if out.len() - start > 1 {
            let rules = &self.rules;
            out[start..].sort_by_cached_key(|tr| {
                let r = rules.iter().position(|x| *x.name == *tr.rule);
                (tr.at, r, tr.group.clone())
            });
        }
    }

    /// Runs every evaluation due up to `t`, then sets the clock to `t`.
    fn run_timers(&mut self, t: i64, out: &mut Vec<Transition>) {
        // Nothing due on the way (the common case between pane boundaries):
        // no need to look at every rule's wheel.
        if t < self.wheel_floor
            && self
                .timers
                .peek()
                .is_none_or(|&Reverse((time, ..))| time > t)
        {
            self.clock = Some(t);
            return;
        }
        loop {
            // The next due evaluation: the earliest wheel boundary of any rule,
            // silence check or alert deadline; ties go to the lower rule, then
            // wheel, silence check, deadline.
            let mut next: Option<(i64, u32, Due)> = None;
            let mut floor = i64::MAX;
            let mut offer = |c: (i64, u32, Due)| {
                if c.0 <= t && next.is_none_or(|n| c < n) {
                    next = Some(c);
                }
            };
            for (r, rule) in self.rules.iter_mut().enumerate() {
                if let Some(q) = rule.wheel.next() {
                    let time = boundary_time(q, rule.slide);
                    floor = floor.min(time);
                    offer((time, r as u32, Due::Wheel));
                }
                if let Some(time) = rule.silence_check_due() {
                    floor = floor.min(time);
                    offer((time, r as u32, Due::Silence));
                }
            }
            if let Some(&Reverse((time, r, _, _))) = self.timers.peek() {
                offer((time, r, Due::Deadline));
            }
            let Some((time, r, due)) = next else {
                // Every wheel's first entry and silence check is past `t`.
                self.wheel_floor = floor;
                break;
            };
            // Everything due up to the clock ran when the clock got there:
            // whatever schedules a timer lowers `wheel_floor` to it.
            debug_assert!(
                self.clock.is_none_or(|c| time >= c),
                "{due:?} due at {time} runs behind the clock {:?}",
                self.clock
            );
            self.clock = Some(self.clock.map_or(time, |c| c.max(time)));
            if due == Due::Silence {
                self.silence_check(r, time, out);
            } else if due == Due::Wheel {
                let rule = &mut self.rules[r as usize];
                let bucket = rule.wheel.take_front();
                for &(slot, gen) in &bucket {
                    self.fire(r, slot, gen, time, out);
                }
                self.rules[r as usize].wheel.recycle(bucket);
            } else if let Some(Reverse((_, r, slot, gen))) = self.timers.pop() {
                if let Some(g) = self.rules[r as usize]
                    .slots
                    .get_mut(slot as usize)
                    .filter(|s| s.gen == gen)
                    .and_then(|s| s.group.as_mut())
                {
                    if g.deadline == time {
                        g.deadline = i64::MIN;
                    }
                }
                self.fire(r, slot, gen, time, out);
            }
        }
        self.clock = Some(t);
    }

    /// Runs one timer: re-evaluates the group if the slot still holds it.
    pub(super) fn fire(
        &mut self,
        r: u32,
        slot: u32,
        gen: u32,
        time: i64,
        out: &mut Vec<Transition>,
    ) {
        let rule = &mut self.rules[r as usize];
        let current = rule
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && s.group.is_some());
        if !current {
            return;
        }
        rule.dirty.mark(slot);
        if let Some(w) = evaluate(
            rule,
            &self.tables[rule.group_by_id],
            slot,
            time,
            true,
            None,
            self.sample_ids,
            &mut self.stats,
            out,
        ) {
            self.timers.push(Reverse((w, r, slot, gen)));
        }
        rule.expire_book(slot, false);
        rule.maybe_evict(slot, &mut self.tables[rule.group_by_id]);
    }
}

/// What falls due at one instant, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// A rule's wheel boundary.
    Wheel,
    /// A surge rule's silence check (`silence`).
    Silence,
    /// An alert deadline.
    Deadline,
}

/// The earliest time a surge warm-up re-evaluation scheduled by an
/// evaluation at `at` can be due (the next boundary: see `evaluate`).
#[inline]
pub(super) fn warm_up_due(at: i64, slide: i64) -> i64 {
    boundary_time(end_pane(at, slide).saturating_add(1), slide)
}
