//! A first response changes its complaint's slice: the backlog
//! (`backlog.rs`) says which complaint it answers; here, for an `unanswered`
//! rule, the complaint's pane loses 1 (an incident resolves as soon as the
//! backlog is answered); for a `response_time` rule, the response's pane
//! gains a first response and the group's book its time. Then the group is
//! evaluated.

use std::cmp::Reverse;

use crate::alert::Transition;
use crate::event::Event;
use crate::window::Region;

use super::backlog::Response;
use super::evaluate::{evaluate, schedule_pane};
use super::pane::{end_pane, pane_of};
use super::Engine;

impl Engine {
    /// A response of backlog rule `r` at the clock `clock`: answers its
    /// complaint (`unanswered`: −1 in the complaint's pane; `response_time`:
    /// its time, [`Engine::first_response`]; then an evaluation) or keeps it
    /// as early. Returns whether it changed anything.
    pub(super) fn answer(
        &mut self,
        r: u32,
        ev: &Event<'_>,
        clock: i64,
        out: &mut Vec<Transition>,
    ) -> bool {
        let rule = &mut self.rules[r as usize];
        let (slot, t) = match rule.respond(ev, clock) {
            Response::First { slot, t } => (slot, t),
            Response::Held => return true,
            Response::Nothing => return false,
        };
        rule.dirty.mark(slot);
        if rule.timed() {
            return self.first_response(r, slot, t, ev.ts, clock, out);
        }
        let (shape, slide) = (rule.shape, rule.slide);
        let gen = rule.slots[slot as usize].gen;
        let Some(group) = rule.slots[slot as usize].group.as_mut() else {
            return false;
        };
        group.window.advance(end_pane(clock, slide), &shape);
        let Some((region, _)) = group
            .window
            .add(pane_of(t, slide), [-1, 0, 0], None, &shape)
        else {
            return true;
        };
        if matches!(region, Region::Current | Region::Baseline) {
            self.wheel_floor = self
                .wheel_floor
                .min(super::timers::warm_up_due(clock, slide));
            if let Some(w) = evaluate(
                rule,
                &self.tables[rule.group_by_id],
                slot,
                clock,
                false,
                None,
                self.sample_ids,
                &mut self.stats,
                out,
            ) {
                self.timers.push(Reverse((w, r, slot, gen)));
            }
        }
        true
    }

    /// The first response at `at` to the complaint at `t` booked in the
    /// group of `slot` of a `response_time` rule `r`: +1 first response in
    /// the response's pane, its time (`at − t`, at least 0) in the group's
    /// book, then an evaluation. Nothing for other rules, for a response
    /// older than the rule keeps, or when the rule holds as many times as it
    /// may (counted as an overflow). Returns whether it changed anything.
    pub(super) fn first_response(
        &mut self,
        r: u32,
        slot: u32,
        t: i64,
        at: i64,
        clock: i64,
        out: &mut Vec<Transition>,
    ) -> bool {
        let rule = &mut self.rules[r as usize];
        if !rule.timed() || !rule.time_room() {
            return false;
        }
        let (shape, slide) = (rule.shape, rule.slide);
        let gen = rule.slots[slot as usize].gen;
        rule.dirty.mark(slot);
        let Some(group) = rule.slots[slot as usize].group.as_mut() else {
            return false;
        };
        let now_end = end_pane(clock, slide);
        group.window.advance(now_end, &shape);
        let pane = pane_of(at, slide);
        let Some((region, created)) = group.window.add(pane, [0, 1, 0], None, &shape) else {
            return false;
        };
        rule.keep_time(slot, pane, at.saturating_sub(t).max(0));
        if created {
            let (timers, floor) = (&mut self.timers, &mut self.wheel_floor);
            schedule_pane(rule, timers, floor, r, pane, region, now_end, slot, gen);
        }
        if region == Region::Current {
            self.wheel_floor = self
                .wheel_floor
                .min(super::timers::warm_up_due(clock, slide));
            if let Some(w) = evaluate(
                rule,
                &self.tables[rule.group_by_id],
                slot,
                clock,
                false,
                None,
                self.sample_ids,
                &mut self.stats,
                out,
            ) {
                self.timers.push(Reverse((w, r, slot, gen)));
            }
        }
        true
    }
}
