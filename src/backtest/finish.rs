//! The report of a backtest once every line has been fed: incidents, the
//! figures per rule and slice (against the labels, if any), and the
//! engine's counts.

use super::report::{self, Report, SummaryOptions};
use super::Driver;

/// Builds the report once every line has been fed.
pub(crate) fn finish(driver: &Driver, tracker: report::Tracker, opts: &SummaryOptions) -> Report {
    let engine = driver.engine();
    let end_ms = engine.clock();
    let incidents = tracker.finish();
    let names: Vec<String> = (0..engine.rule_count())
        .map(|i| engine.rule_config(i).name.clone())
        .collect();
    let (rules, slices, truth) = report::summarize(
        &names,
        &incidents,
        driver.first_ms(),
        end_ms.unwrap_or(0),
        opts,
    );
    let capped = (0..engine.rule_count())
        .filter_map(|i| {
            let n = engine.rule_stats(i).group_overflow;
            (n > 0).then(|| (engine.rule_config(i).name.clone(), n))
        })
        .collect();
    // A rule that lost events other rules took: the engine's `late` does not
    // show them (whatever other events were late for every rule).
    let late_for = (0..engine.rule_count())
        .filter(|&i| engine.rule_late_alone(i) > 0)
        .map(|i| {
            (
                engine.rule_config(i).name.clone(),
                engine.rule_stats(i).late,
            )
        })
        .collect();
    Report {
        capped,
        late_for,
        lines: driver.lines(),
        stats: engine.stats().clone(),
        dedup_evicted: engine.dedup_evicted(),
        first_ms: driver.first_ms(),
        end_ms,
        covered_ms: driver.coverage().covered_ms(),
        gaps: driver.coverage().gaps(),
        flap_gap_ms: opts.flap_gap_ms,
        grace_ms: opts.grace_ms,
        rules,
        slices,
        truth,
        incidents,
        invalid_examples: driver.invalid_examples().to_vec(),
        invalid_lines: driver.named_invalid_lines(None),
    }
}
