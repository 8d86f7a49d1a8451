//! How much time a history's events cover, so that one stray stamp cannot
//! stretch the rates computed per day of history.
//!
//! A history's span (first event → last) is the wrong denominator when the
//! events do not fill it: a single line stamped in the year 2000 ahead of a
//! day of 2026 makes the "history" 26 years long, and `suggest` then allows
//! thousands of false incidents (and picks thresholds far too sensitive);
//! a real pause in the data (a week missing) likewise adds days on which no
//! incident could fire. [`Coverage`] sums the forward steps of the clock (the
//! newest event time seen, in input order) and leaves out every step longer
//! than [`GAP_MS`]: a continuous history covers exactly its span, and a gap of
//! more than a day between consecutive events counts as no time at all.

/// A forward step of the clock longer than this is a gap, not history.
pub(crate) const GAP_MS: i64 = 86_400_000;

/// Time covered by events, seen in input order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    clock: Option<i64>,
    covered_ms: i64,
    gaps: u64,
}

impl Coverage {
    /// One event with time `ts`.
    pub(crate) fn see(&mut self, ts: i64) {
        match self.clock {
            Some(c) if ts > c => {
                let step = ts.saturating_sub(c);
                if step > GAP_MS {
                    self.gaps += 1;
                } else {
                    self.covered_ms = self.covered_ms.saturating_add(step);
                }
                self.clock = Some(ts);
            }
            Some(_) => {}
            None => self.clock = Some(ts),
        }
    }

    /// Time covered, ms (`None`: no event seen).
    pub(crate) fn covered_ms(&self) -> Option<i64> {
        self.clock.map(|_| self.covered_ms)
    }

    /// Gaps (steps longer than [`GAP_MS`]) left out.
    pub(crate) fn gaps(&self) -> u64 {
        self.gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_continuous_history_covers_its_span_whatever_the_order_within() {
        let mut c = Coverage::default();
        for t in [5, 3, 9, 9, 7, 12] {
            c.see(t * HOUR);
        }
        assert_eq!(c.covered_ms(), Some(7 * HOUR));
        assert_eq!(c.gaps(), 0);
        assert_eq!(Coverage::default().covered_ms(), None);
    }

    #[test]
    fn a_stray_old_first_stamp_and_a_pause_add_nothing() {
        let mut c = Coverage::default();
        c.see(0); // the year 1970, before a day of data decades later
        let day0 = 20_000 * 24 * HOUR;
        for h in 0..=24 {
            c.see(day0 + h * HOUR);
        }
        // A week without data, then six more hours.
        for h in 0..=6 {
            c.see(day0 + 8 * 24 * HOUR + h * HOUR);
        }
        assert_eq!(c.covered_ms(), Some(30 * HOUR));
        assert_eq!(c.gaps(), 2);
        // A step of exactly a day is history (a quiet day), not a gap.
        let mut d = Coverage::default();
        d.see(0);
        d.see(GAP_MS);
        assert_eq!((d.covered_ms(), d.gaps()), (Some(GAP_MS), 0));
    }
}
