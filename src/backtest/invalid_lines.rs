//! Invalid lines of a pass over history, for the tools whose output has no
//! place for them (`tune`, `suggest`, `chart`): counted by reason, the first
//! few kept with where they came from, and one warning at the end, so that a
//! history partly unreadable is never tuned or charted on in silence.
//! `backtest` prints the same in its report (`report::text`).

use super::input::{Inputs, LineRef};
use crate::event::{Invalid, InvalidReason};

/// How many invalid lines a warning names.
const NAMED: usize = 5;

/// Share of invalid lines from which the warning names the first few (as
/// `backtest` does): a few malformed lines in a large history are counted only.
const NAME_FROM_SHARE: f64 = 0.01;

/// Invalid lines by reason, and the first few.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InvalidLines {
    counts: [u64; InvalidReason::ALL.len()],
    /// (line count among all lines fed, where it came from, reason, detail).
    first: Vec<(u64, Option<LineRef>, InvalidReason, String)>,
}

impl InvalidLines {
    /// Line `line` (1-based among all lines fed; from `at`) was invalid.
    pub(crate) fn see(&mut self, line: u64, at: Option<LineRef>, inv: &Invalid) {
        self.counts[inv.reason.index()] += 1;
        if self.first.len() < NAMED {
            self.first.push((line, at, inv.reason, inv.detail.clone()));
        }
    }

    /// From counts by reason and the first few (line, reason, detail) a
    /// pass kept without positions.
    pub(crate) fn from_counts(
        counts: [u64; InvalidReason::ALL.len()],
        first: &[(u64, InvalidReason, String)],
    ) -> Self {
        InvalidLines {
            counts,
            first: first
                .iter()
                .take(NAMED)
                .map(|(l, r, d)| (*l, None, *r, d.clone()))
                .collect(),
        }
    }

    /// Names one more of the first invalid lines (already counted).
    pub(crate) fn name(
        &mut self,
        line: u64,
        at: Option<LineRef>,
        reason: InvalidReason,
        detail: String,
    ) {
        if self.first.len() < NAMED {
            self.first.push((line, at, reason, detail));
        }
    }

    /// Invalid lines in all.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The warning for a pass of `lines` lines (`None`: no invalid line).
    pub(crate) fn message(&self, lines: u64, inputs: Option<&Inputs>) -> Option<String> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let by_reason: Vec<String> = InvalidReason::ALL
            .iter()
            .filter(|r| self.counts[r.index()] > 0)
            .map(|r| format!("{r} {}", self.counts[r.index()]))
            .collect();
        let share = total as f64 / lines.max(1) as f64;
        // Never "0.0 %" of lines that are there.
        let pct = if 100.0 * share < 0.05 {
            "< 0.1 %".to_string()
        } else {
            format!("{:.1} %", 100.0 * share)
        };
        let mut m = format!(
            "{total} of {lines} lines ({pct}) are invalid and were left out ({})",
            by_reason.join(", ")
        );
        let named: Vec<String> = self
            .first
            .iter()
            .filter(|(_, _, r, _)| *r != InvalidReason::ClockJump)
            .map(|(line, at, reason, detail)| {
                let place = match (at, inputs) {
                    (Some(at), Some(i)) => i.describe(*at),
                    _ => format!("non-blank input line {line}"),
                };
                format!("{place}: {reason}: {detail}")
            })
            .collect();
        if share >= NAME_FROM_SHARE && !named.is_empty() {
            m.push_str(&format!("; the first: {}", named.join("; ")));
        }
        m.push_str(" (`crisiswatch backtest --json` on the same input names the first few, by file and line)");
        Some(m)
    }

    /// Logs [`InvalidLines::message`] for `tool`.
    pub(crate) fn warn(&self, tool: &str, lines: u64, inputs: Option<&Inputs>) {
        if let Some(m) = self.message(lines, inputs) {
            tracing::warn!(tool, "{m}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(reason: InvalidReason, detail: &str) -> Invalid {
        Invalid {
            reason,
            detail: detail.into(),
        }
    }

    #[test]
    fn counts_by_reason_and_names_the_first_when_many() {
        let mut v = InvalidLines::default();
        assert_eq!(v.message(100, None), None);
        v.see(3, None, &inv(InvalidReason::NotJson, "expected value"));
        v.see(9, None, &inv(InvalidReason::BadTimestamp, "ts"));
        v.see(12, None, &inv(InvalidReason::NotJson, "eof"));
        assert_eq!(v.total(), 3);
        let m = v.message(100, None).expect("a warning");
        assert!(
            m.starts_with("3 of 100 lines (3.0 %) are invalid and were left out (not_json 2, bad_timestamp 1)"),
            "{m}"
        );
        assert!(
            m.contains("non-blank input line 3: not_json: expected value"),
            "{m}"
        );
        // A few in a large history: counted, not named.
        let m = v.message(100_000, None).expect("a warning");
        assert!(m.contains("3 of 100000 lines (< 0.1 %)"), "{m}");
        assert!(!m.contains("line 3"), "{m}");
    }

    #[test]
    fn keeps_the_first_five() {
        let mut v = InvalidLines::default();
        for i in 0..9 {
            v.see(i, None, &inv(InvalidReason::NotObject, &format!("d{i}")));
        }
        let m = v.message(10, None).expect("a warning");
        assert!(m.contains("d4") && !m.contains("d5"), "{m}");
        let w = InvalidLines::from_counts(v.counts, &[(7, InvalidReason::NotObject, "x".into())]);
        assert_eq!(w.total(), 9);
        assert!(w
            .message(10, None)
            .expect("warning")
            .contains("line 7: not_object: x"));
    }
}
