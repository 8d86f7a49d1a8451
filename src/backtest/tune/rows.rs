//! The table of a tuning run: its rows (a candidate and its figures), the
//! Pareto marking and the order of the automatic choice.

use crate::config::RuleConfig;

use super::super::report::RuleSummary;
use super::Candidate;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The candidate.
    pub candidate: Candidate,
    /// Its figures (as `backtest` reports them for the rule).
    pub summary: RuleSummary,
    /// Pareto-optimal (false, missed, median delay); only with labels.
    pub pareto: bool,
    /// This row is the rule as configured.
    pub current: bool,
}

impl Row {
    /// False incidents (with labels).
    pub fn false_incidents(&self) -> Option<usize> {
        self.summary.truth.as_ref().map(|t| t.false_incidents)
    }
    /// Missed crises (with labels).
    pub fn missed(&self) -> Option<usize> {
        self.summary.truth.as_ref().map(|t| t.missed)
    }
    /// Median detection delay (with labels and at least one detection).
    pub fn median_delay_ms(&self) -> Option<i64> {
        self.summary
            .truth
            .as_ref()
            .and_then(|t| t.delay)
            .map(|d| d.median_ms)
    }
}

/// What a tuning run found.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneResult {
    /// The tuned rule, as configured.
    pub(crate) base: RuleConfig,
    /// Candidate rows, in candidate order; the configured rule is appended as
    /// `current` when no candidate equals it.
    pub rows: Vec<Row>,
    /// Index into `rows` of the chosen row.
    pub chosen: Option<usize>,
    /// The chosen row was picked by `--pick`, not by the labels.
    pub(crate) picked: bool,
    /// Lines read.
    pub(crate) lines: u64,
    /// First event time.
    pub(crate) first_ms: Option<i64>,
    /// Last event time.
    pub(crate) end_ms: Option<i64>,
    /// Time the events cover, ms (gaps of more than a day left out; see
    /// `backtest::coverage`).
    pub(crate) covered_ms: Option<i64>,
    /// Whether ground truth was given.
    pub(crate) labelled: bool,
}

/// The automatic choice's order: fewest missed, then fewest false
/// incidents, shortest median delay, fewest flaps, least time firing, and
/// candidate order.
pub(super) fn choice_key(r: &Row, i: usize) -> (usize, usize, i64, usize, i64, usize) {
    (
        r.missed().unwrap_or(usize::MAX),
        r.false_incidents().unwrap_or(usize::MAX),
        r.median_delay_ms().unwrap_or(i64::MAX),
        r.summary.flaps,
        r.summary.firing_ms,
        i,
    )
}

/// Marks the rows no other row beats on every one of (false incidents,
/// missed crises, median delay).
pub(super) fn mark_pareto(rows: &mut [Row]) {
    let obj: Vec<[i64; 3]> = rows
        .iter()
        .map(|r| {
            [
                r.false_incidents().map_or(i64::MAX, |v| v as i64),
                r.missed().map_or(i64::MAX, |v| v as i64),
                r.median_delay_ms().unwrap_or(i64::MAX),
            ]
        })
        .collect();
    for i in 0..rows.len() {
        let dominated = obj
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.iter().zip(&obj[i]).all(|(a, b)| a <= b) && *o != obj[i]);
        rows[i].pareto = !dominated;
    }
}
