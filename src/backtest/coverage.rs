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
    /// The earliest event time seen ([`Coverage::reach_back`]).
    start: Option<i64>,
    covered_ms: i64,
    gaps: u64,
    /// The first gap: (the newest event time before it, the next after it).
    first_gap: Option<(i64, i64)>,
}

impl Coverage {
    /// One event with time `ts`.
    pub(crate) fn see(&mut self, ts: i64) {
        match self.clock {
            Some(c) if ts > c => {
                let step = ts.saturating_sub(c);
                if step > GAP_MS {
                    self.gaps += 1;
                    self.first_gap.get_or_insert((c, ts));
                } else {
                    self.covered_ms = self.covered_ms.saturating_add(step);
                }
                self.clock = Some(ts);
            }
            Some(_) => {}
            None => {
                self.clock = Some(ts);
                self.start.get_or_insert(ts);
            }
        }
    }

    /// An event applied in time at `ts`, maybe before the first one seen
    /// (lines a little out of order): the covered time reaches back to it.
    pub(crate) fn reach_back(&mut self, ts: i64) {
        let start = *self.start.get_or_insert(ts);
        if ts < start {
            let step = start.saturating_sub(ts);
            if step <= GAP_MS {
                self.covered_ms = self.covered_ms.saturating_add(step);
            } else {
                self.gaps += 1;
            }
            self.start = Some(ts);
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

    /// The warning for rules a gap misleads, when the history has gaps
    /// (`rules`, from [`gap_rules`]; `None`: nothing to say). To a rule
    /// with a baseline a gap is silence, so for a baseline's length after
    /// it ordinary traffic is judged against a baseline the gap emptied (a
    /// surge then pages on it); a rule that waits for responses sees the
    /// deadlines of the complaints just before a gap pass inside it, their
    /// answers never having come, and may page there.
    pub(crate) fn baseline_warning(&self, rules: &[GapRule]) -> Option<String> {
        let (from, to) = self.first_gap?;
        if rules.is_empty() {
            return None;
        }
        let names = |backlog: bool| {
            rules
                .iter()
                .filter(|r| r.backlog == backlog)
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
        };
        let (baseline, backlog) = (names(false), names(true));
        let mut parts = Vec::new();
        if !baseline.is_empty() {
            let reach = rules
                .iter()
                .filter(|r| !r.backlog)
                .map(|r| r.reach_ms)
                .max()
                .unwrap_or(0);
            parts.push(format!(
                "rules with a baseline ({}) take a gap for silence, so for up to {} after it they \
                 judge ordinary traffic against a baseline the gap emptied",
                baseline.join(", "),
                crate::backtest::report::fmt_dur(reach),
            ));
        }
        if !backlog.is_empty() {
            parts.push(format!(
                "rules that wait for responses ({}) take the complaints just before a gap for \
                 unanswered once their deadline passes inside it (their answers would have come \
                 after the data stops), and may page in the gap",
                backlog.join(", "),
            ));
        }
        Some(format!(
            "the history has {} gap(s) of more than a day without events (the first: {} → {}); \
             {}: their incidents there may be false, and counted as such — leave the stretch \
             around a gap out of the history, or give the history before it",
            self.gaps,
            crate::backtest::report::short_ts(from),
            crate::backtest::report::short_ts(to),
            parts.join("; "),
        ))
    }
}

/// A rule that a gap in the history misleads (see
/// [`Coverage::baseline_warning`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GapRule {
    /// The rule's name.
    pub(crate) name: String,
    /// How far back it looks: window plus baseline, ms (surges).
    pub(crate) reach_ms: i64,
    /// It waits for responses (`unanswered`), rather than having a baseline.
    pub(crate) backlog: bool,
}

/// Rules of `rules` that a gap misleads: those with a trailing baseline
/// (surges), each with how far back it looks (window plus baseline, ms),
/// and those that wait for responses (`unanswered`).
pub(crate) fn baseline_rules<'a>(
    rules: impl IntoIterator<Item = &'a crate::config::RuleConfig>,
) -> Vec<GapRule> {
    use crate::config::IndicatorConfig;
    rules
        .into_iter()
        .filter_map(|r| match &r.indicator {
            IndicatorConfig::Surge { baseline, .. } => Some(GapRule {
                name: r.name.clone(),
                reach_ms: r.window.as_ms().saturating_add(baseline.as_ms()),
                backlog: false,
            }),
            IndicatorConfig::Unanswered { .. } => Some(GapRule {
                name: r.name.clone(),
                reach_ms: r.window.as_ms(),
                backlog: true,
            }),
            _ => None,
        })
        .collect()
}

/// Notes a valid event at `ts` in the history's start and covered time:
/// the start is the earliest event the sequencer holds in time order
/// (within `engine.allowed_lateness` of the newest), wherever its line is,
/// so lines a few seconds out of order give the sorted file's start; an
/// event already behind the released ones does not move it. `backtest`,
/// `tune` and `suggest` share it, so their figures agree.
pub(crate) fn history_start(
    first_ms: &mut Option<i64>,
    coverage: &mut Coverage,
    released_below: Option<i64>,
    ts: i64,
) {
    if released_below.is_some_and(|b| ts < b) {
        return;
    }
    if first_ms.is_none_or(|f| ts < f) {
        *first_ms = Some(ts);
    }
    coverage.reach_back(ts);
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
        // The driver applies them in time order, each in time: the hours
        // before the first line count too.
        for t in [3, 5, 7, 9, 9, 12] {
            c.reach_back(t * HOUR);
        }
        assert_eq!(c.covered_ms(), Some(9 * HOUR));
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
        let surge = GapRule {
            name: "complaint_surge".into(),
            reach_ms: 3 * HOUR,
            backlog: false,
        };
        let w = c
            .baseline_warning(std::slice::from_ref(&surge))
            .expect("a warning");
        assert!(
            w.starts_with("the history has 2 gap(s) of more than a day without events (the first: 1970-01-01T00:00:00Z → "),
            "{w}"
        );
        assert!(w.contains("rules with a baseline (complaint_surge)"), "{w}");
        assert!(w.contains("for up to 3h after it"), "{w}");
        assert!(!w.contains("wait for responses"), "{w}");
        let backlog = GapRule {
            name: "response_backlog".into(),
            reach_ms: HOUR,
            backlog: true,
        };
        let w = c
            .baseline_warning(&[surge, backlog.clone()])
            .expect("a warning");
        assert!(w.contains("rules with a baseline (complaint_surge)"), "{w}");
        assert!(
            w.contains("rules that wait for responses (response_backlog)"),
            "{w}"
        );
        let w = c.baseline_warning(&[backlog]).expect("a warning");
        assert!(
            !w.contains("with a baseline") && w.contains("may page in the gap"),
            "{w}"
        );
        assert_eq!(c.baseline_warning(&[]), None);
        // A step of exactly a day is history (a quiet day), not a gap.
        let mut d = Coverage::default();
        d.see(0);
        d.see(GAP_MS);
        assert_eq!((d.covered_ms(), d.gaps()), (Some(GAP_MS), 0));
    }
}
