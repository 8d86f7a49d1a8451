//! A response takes its complaint out of an `unanswered` rule's window: the
//! backlog (`backlog.rs`) says which complaint it answers; here the
//! complaint's pane of the complaint's slice loses 1 and the group is
//! evaluated, so an incident resolves as soon as the backlog is answered.

use std::cmp::Reverse;

use crate::alert::Transition;
use crate::event::Event;
use crate::window::Region;

use super::backlog::Response;
use super::evaluate::evaluate;
use super::pane::{end_pane, pane_of};
use super::Engine;

impl Engine {
    /// A response of backlog rule `r` at the clock `clock`: answers its
    /// complaint (−1 in the complaint's pane, then an evaluation) or keeps it
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
