//! What the demo prints: a line per transition (pending ones with
//! `--verbose`), and the closing summary that checks every crisis was
//! caught and nothing else fired.

use std::io::Write;
use std::time::Duration;

use super::DemoReport;
use crate::alert::{State, Transition};
use crate::engine::Engine;
use crate::event::format_ts;
use crate::incident::model::{fmt_prec, fmt_value, precision};

/// `v` with enough decimals to show it apart from `other` when they differ
/// (a value of 0.10034 is not printed as its threshold 0.100), as the
/// incident summaries do.
fn fmt_apart(v: Option<f64>, other: f64) -> String {
    match v {
        None => fmt_value(None),
        Some(x) => fmt_prec(x, precision(v, &[other])),
    }
}

fn short_ts(ms: i64) -> String {
    let s = format_ts(ms);
    // 2026-11-20T09:14:00Z → 2026-11-20 09:14
    s.get(..16).map_or(s.clone(), |p| p.replace('T', " "))
}

pub(super) fn print_transition(
    out: &mut dyn Write,
    t: &Transition,
    verbose: bool,
) -> std::io::Result<()> {
    let verb = match t.state {
        State::Pending if !verbose => return Ok(()),
        State::Pending => "pending  ",
        State::Firing => "OPEN     ",
        State::Escalated => "ESCALATE ",
        State::Resolved => "RESOLVE  ",
    };
    let dur = if t.state == State::Resolved {
        format!(
            " after {}",
            humantime::format_duration(Duration::from_secs(
                ((t.at - t.started_at).max(0) / 60_000 * 60) as u64
            ))
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "[{}] {verb} {:<8} {:<22} {:<34} value {} (threshold {}){dur}",
        short_ts(t.at),
        t.severity.as_str(),
        t.rule,
        t.group_label(),
        fmt_apart(t.value, t.threshold),
        fmt_apart(Some(t.threshold), t.value.unwrap_or(t.threshold)),
    )
}

/// What the summary says of a crisis no alert caught, the run having
/// reached event time `clock`: a run stopped early (a signal, `--duration`)
/// may not have reached it, or may have stopped in it.
fn undetected(c: &crate::generator::Crisis, clock: Option<i64>) -> String {
    match clock {
        Some(t) if t < c.start_ms => {
            format!(
                "not reached (the run stopped at {}, before it began)",
                short_ts(t)
            )
        }
        Some(t) if t < c.end_ms => format!(
            "NOT detected (the run stopped at {}, while it went on)",
            short_ts(t)
        ),
        None => "not reached (the run stopped before any event)".to_string(),
        _ => "NOT detected".to_string(),
    }
}

pub(super) fn print_summary(
    out: &mut dyn Write,
    r: &DemoReport,
    engine: &Engine,
    opened: Option<usize>,
) -> std::io::Result<()> {
    let s = &r.stats;
    writeln!(out)?;
    writeln!(out, "Summary")?;
    writeln!(
        out,
        "  lines {}, applied {}, invalid {}, duplicates {}, late {}, unmatched {}",
        r.lines,
        s.applied,
        s.invalid_total(),
        s.duplicates,
        s.late,
        s.unmatched
    )?;
    let open = r
        .incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .count();
    // An alert is one rule on one slice; the incident stage groups the
    // alerts of a route's labels into one incident (what the pager shows).
    writeln!(
        out,
        "  alerts fired {} ({} still firing){}, transitions {}",
        r.incidents.len(),
        open,
        opened.map_or_else(String::new, |n| format!(", grouped into {n} incident(s)")),
        s.transitions
    )?;
    let grace = (0..engine.rule_count())
        .map(|i| engine.rule_config(i).window.as_ms())
        .max()
        .unwrap_or(0);
    for (c, hits) in r.detections(grace) {
        let first = hits.iter().map(|i| i.fired_at).min();
        match first {
            Some(f) => writeln!(
                out,
                "  crisis {:<14} {} → detected after {} by {} alert(s): {}",
                c.name,
                short_ts(c.start_ms),
                humantime::format_duration(Duration::from_secs(
                    ((f - c.start_ms).max(0) / 1000) as u64
                )),
                hits.len(),
                {
                    let mut rules: Vec<&str> = hits.iter().map(|i| i.rule.as_str()).collect();
                    rules.sort_unstable();
                    rules.dedup();
                    rules.join(", ")
                }
            )?,
            None => writeln!(
                out,
                "  crisis {:<14} {} → {}",
                c.name,
                short_ts(c.start_ms),
                undetected(c, engine.clock())
            )?,
        }
    }
    let false_ones = r.false_incidents(grace);
    writeln!(
        out,
        "  alerts outside any injected crisis: {}",
        false_ones.len()
    )?;
    for i in false_ones {
        writeln!(
            out,
            "    {} {} at {}",
            i.rule,
            i.group
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            short_ts(i.fired_at)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod undetected_tests {
    use super::*;

    #[test]
    fn a_crisis_the_run_did_not_reach_is_not_called_missed() {
        let c = crate::generator::Crisis {
            name: "churn_wave",
            kind: "churn_wave",
            slice: Vec::new(),
            start_ms: 1_000_000,
            end_ms: 2_000_000,
            description: "",
        };
        assert!(undetected(&c, Some(500_000)).starts_with("not reached"));
        assert!(undetected(&c, None).starts_with("not reached"));
        assert!(undetected(&c, Some(1_500_000)).starts_with("NOT detected (the run stopped"));
        assert_eq!(undetected(&c, Some(2_500_000)), "NOT detected");
    }
}
