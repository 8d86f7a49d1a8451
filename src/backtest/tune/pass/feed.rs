//! How lines reach the candidates of a tuning pass: decoded (possibly
//! ahead, on another thread), held by the clock-jump guard
//! (`engine.max_clock_jump`), then held by the watermark sequencer and
//! applied in `(ts, id, bytes)` order — the order `backtest` and `replay`
//! use, so every candidate sees exactly what its own backtest would.
//!
//! What is applied goes to every lane at once (`Tuner::apply`, in the
//! parent module); what the guard refutes is kept for the warnings.

use crate::backtest::input::LineRef;
use crate::event::ahead::DecodeAhead;
use crate::event::{decode, decode_held, Event, Invalid, OwnedEvent};
use crate::sequencer::watermark;

use super::{Suspect, Tuner};

// === impl Tuner ===

impl Tuner {
    /// Feeds one line to every candidate.
    pub fn feed(&mut self, line: &[u8]) {
        self.feed_from(line, None);
    }

    /// Like [`Tuner::feed`], for a line from `at` (named in the late-events warning).
    ///
    /// A valid event is held until the watermark (newest event time minus
    /// `allowed_lateness`) passes it, then applied in `(ts, id, bytes)`
    /// order — the order `backtest` and `replay` use — so every candidate
    /// sees exactly what its own backtest would.
    ///
    /// An event far ahead of the clock is held by the clock-jump guard first
    /// (`engine.max_clock_jump`): refuted, it is left out (and warned about),
    /// exactly as `backtest` counts it invalid.
    pub(crate) fn feed_from(&mut self, line: &[u8], at: Option<LineRef>) {
        // Decoded in place: the event is large, a returned one is moved.
        let mut ev = Event::default();
        let decoded = decode_held(line, &self.limits, self.now_ms, None, &mut ev);
        drop(ev);
        self.feed_decoded(decoded, at);
    }

    /// Like [`Tuner::feed_from`], for a line already decoded by
    /// [`decode_held`] (as a [`DecodeAhead`] does).
    pub(crate) fn feed_decoded(
        &mut self,
        decoded: Result<OwnedEvent, Invalid>,
        at: Option<LineRef>,
    ) {
        self.lines += 1;
        let held = match decoded {
            Ok(held) => held,
            Err(inv) => {
                self.invalid.see(self.lines, at, &inv);
                return;
            }
        };
        let ts = held.ts();
        if self.guard.pass_quick(ts) {
            // The usual case: nothing held aside, no jump.
            self.hold(held, self.lines, at);
            return;
        }
        let detail = self.guard.jump_detail(ts).unwrap_or_default();
        let v = self.guard.offer(ts, (held, self.lines, at, detail));
        self.refute(v.rejected);
        for (held, lines, at, _) in v.pass {
            self.hold(held, lines, at);
        }
    }

    /// Decoding ahead for [`Tuner::feed_decoded`], with this tuner's limits.
    pub(crate) fn decode_ahead(&self) -> DecodeAhead<LineRef> {
        DecodeAhead::new(self.limits, self.now_ms)
    }

    /// Remembers refuted clock jumps (left out of every candidate).
    fn refute(&mut self, rejected: Vec<Suspect>) {
        for (held, lines, at, detail) in rejected {
            let detail = self.guard.detail_or_refuted(held.ts(), detail);
            self.refuted.push((lines, at, detail));
        }
    }

    /// Holds an event that passed the clock-jump guard; applies what the
    /// watermark releases.
    fn hold(&mut self, held: OwnedEvent, lines: u64, at: Option<LineRef>) {
        let ts = held.ts();
        let released = self.seq.released_below();
        crate::backtest::coverage::history_start(
            &mut self.first_ms,
            &mut self.coverage,
            released,
            ts,
        );
        self.coverage.see(ts);
        self.watch.observe(ts, lines, at);
        let newest = self.newest.map_or(ts, |n| n.max(ts));
        self.newest = Some(newest);
        if let Some(behind) = self.seq.offer(held) {
            self.apply_held(&behind);
        }
        let wm = watermark(newest, self.lateness_ms);
        if self.seq.released_below().is_none_or(|b| wm > b) {
            let mut released = Vec::new();
            self.seq.release(wm, |h| released.push(h));
            for h in &released {
                self.apply_held(h);
            }
            self.advance_lanes(wm.saturating_sub(1));
        }
    }

    /// End of the input: undecided clock jumps are refuted; applies every
    /// event still held. A second call finds nothing more to do.
    pub(crate) fn end_input(&mut self) {
        let v = self.guard.settle_start();
        self.refute(v.rejected);
        for (held, lines, at, _) in v.pass {
            self.hold(held, lines, at);
        }
        let undecided = self
            .guard
            .finish_explained(|(held, _, _, detail)| (held.ts(), detail));
        self.refute(undecided);
        let mut released = Vec::new();
        self.seq.release_all(|h| released.push(h));
        for h in &released {
            self.apply_held(h);
        }
    }

    fn apply_held(&mut self, held: &OwnedEvent) {
        // Lent in place: the event is large, a returned one is moved.
        let mut ev = Event::default();
        if held.event_into(&mut ev) {
            self.apply(&ev);
        } else if let Ok(ev) = decode(held.raw(), &self.limits, None) {
            self.apply(&ev);
        }
    }
}
