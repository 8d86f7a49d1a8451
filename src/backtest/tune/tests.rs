//! Unit tests of `backtest::tune`: varying, candidates, and runs over files.

use super::super::report::RuleSummary;
use super::*;
use crate::config::Config;

fn rule() -> RuleConfig {
    let cfg = Config::from_toml_str(
        r#"
[[rules]]
name = "r"
window = "1h"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }
thresholds = { warning = 0.065, critical = 0.10 }
clear = 0.04
for = "5m"
"#,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    cfg.rules[0].clone()
}

/// 2026-11-20T00:00:00Z.
const ORIGIN: i64 = 1_795_132_800_000;

/// One count rule, `n`, over 10 minutes, warning above 5.
fn count_rule() -> Config {
    Config::from_toml_str(
        "[[rules]]\nname = \"n\"\nwindow = \"10m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 5 }\n",
        &std::collections::HashMap::new(),
    )
    .unwrap()
}

/// A history in `dir` of `n` orders `step` ms apart from [`ORIGIN`].
fn orders(dir: &std::path::Path, n: i64, step: i64) -> std::path::PathBuf {
    let p = dir.join("h.jsonl");
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"id\":\"e{i}\",\"type\":\"order\",\"ts\":{}}}\n",
                ORIGIN + i * step
            )
        })
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

/// Labelled crises outside the history are not scored: `tune` says so
/// (as `backtest` does) instead of showing "missed 0" as if caught.
#[test]
fn crises_outside_the_history_are_warned_about() {
    let (cfg, dir, s) = (count_rule(), tempfile::tempdir().unwrap(), ORIGIN);
    let p = orders(dir.path(), 60, 60_000);
    let crisis = |name: &str, start: i64| crate::backtest::labels::Crisis {
        name: name.into(),
        kind: String::new(),
        slice: Vec::new(),
        start_ms: start,
        end_ms: start + 3_600_000,
    };
    let opts = TuneOptions {
        rule: "n".into(),
        varies: vec!["threshold=3,5".parse().unwrap()],
        summary: crate::backtest::SummaryOptions {
            labels: Some(vec![
                crisis("before", s - 365 * 86_400_000),
                crisis("within", s + 600_000),
                crisis("after", s + 365 * 86_400_000),
            ]),
            ..crate::backtest::SummaryOptions::default()
        },
        ..TuneOptions::default()
    };
    let inputs = crate::backtest::Inputs::new(vec![p]).unwrap().quiet();
    let (result, log) = crate::testlog::logged(|| run(&cfg, &inputs, &opts));
    assert!(result.is_ok());
    assert!(
        log.contains("2 of 3 labelled crises lie outside the history (1 start after it ends, 1 end before it starts)"),
        "{log}"
    );
}

/// Candidate thresholds the indicator can never cross are named, once
/// each; the reachable ones and the configured rule are not.
#[test]
fn candidates_an_indicator_cannot_reach_are_warned_about() {
    let (cfg, dir) = (count_rule(), tempfile::tempdir().unwrap());
    let p = orders(dir.path(), 60, 60_000);
    let opts = TuneOptions {
        rule: "n".into(),
        varies: vec![
            "threshold=-2,3".parse().unwrap(),
            "for=0s,1m".parse().unwrap(),
        ],
        ..TuneOptions::default()
    };
    let inputs = crate::backtest::Inputs::new(vec![p]).unwrap().quiet();
    let (result, log) = crate::testlog::logged(|| run(&cfg, &inputs, &opts));
    assert!(result.is_ok());
    let named: Vec<&str> = log.lines().filter(|l| l.contains("lies outside")).collect();
    // Once, however many `for` values the threshold is crossed with.
    assert_eq!(named.len(), 1, "{log}");
    assert!(
        named.iter().all(|l| l.contains("candidate threshold=-2")
            && l.contains("threshold warning = -2 with condition above")
            && l.contains("it always (with enough volume) fires")),
        "{log}"
    );
}

/// `suggest` judges the history once every event is in (the last
/// `allowed_lateness` of it too): a crisis in the history's last minute
/// is in the history, not warned about as outside it.
#[test]
fn suggest_sees_the_whole_history_before_judging_it() {
    let (cfg, dir, s) = (count_rule(), tempfile::tempdir().unwrap(), ORIGIN);
    let p = orders(dir.path(), 360, 10_000);
    let opts = crate::backtest::suggest::SuggestOptions {
        summary: crate::backtest::SummaryOptions {
            labels: Some(vec![crate::backtest::labels::Crisis {
                name: "late".into(),
                kind: String::new(),
                slice: Vec::new(),
                start_ms: s + 3_570_000,
                end_ms: s + 3_590_000,
            }]),
            ..crate::backtest::SummaryOptions::default()
        },
        now_ms: None,
        max_false_per_30d: 1.0,
        rules: Vec::new(),
    };
    let inputs = crate::backtest::Inputs::new(vec![p]).unwrap().quiet();
    let (result, log) =
        crate::testlog::logged(|| crate::backtest::suggest::run(&cfg, &inputs, &opts));
    let result = result.unwrap();
    assert!(!log.contains("outside the history"), "{log}");
    assert_eq!(result[0].result.end_ms, Some(s + 3_590_000));
}

#[test]
fn parses_ranges_and_lists() {
    let v: Vary = "threshold=0.02..0.08:0.01".parse().unwrap();
    assert_eq!(v.dim, Dim::Threshold);
    let nums: Vec<String> = v.values.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        nums,
        ["0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08"]
    );
    let v: Vary = "for=0m,5m,15m".parse().unwrap();
    let d: Vec<String> = v.values.iter().map(|v| v.to_string()).collect();
    assert_eq!(d, ["0s", "5m", "15m"]);
    let v: Vary = "window=15m..1h:15m".parse().unwrap();
    assert_eq!(v.values.len(), 4);
    for bad in [
        "x=1",
        "threshold",
        "threshold=a",
        "for=5q",
        "threshold=0.1..0.0:0.1",
        "threshold=0..1:0",
    ] {
        assert!(bad.parse::<Vary>().is_err(), "{bad}");
    }
}

#[test]
fn a_threshold_moves_the_ladder_in_proportion() {
    let r = apply(&rule(), &[(Dim::Threshold, Val::Num(0.13))]);
    assert_eq!(r.thresholds.warning, Some(0.13));
    assert_eq!(r.thresholds.critical, Some(0.2));
    assert_eq!(r.clear, Some(0.08));
    // An explicit clear wins, whatever the order given.
    let r = apply(
        &rule(),
        &[
            (Dim::Clear, Val::Num(0.01)),
            (Dim::Threshold, Val::Num(0.13)),
        ],
    );
    assert_eq!(r.clear, Some(0.01));
    // From 0, a shift.
    let mut z = rule();
    z.thresholds.warning = Some(0.0);
    z.clear = Some(-0.5);
    let r = apply(&z, &[(Dim::Threshold, Val::Num(1.0))]);
    assert_eq!(r.thresholds.critical, Some(1.1));
    assert_eq!(r.clear, Some(0.5));
}

#[test]
fn candidates_are_the_cartesian_product() {
    let c = candidates(
        &rule(),
        &[
            "threshold=0.05,0.07".parse().unwrap(),
            "for=0m,5m,15m".parse().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(c.len(), 6);
    assert_eq!(c[0].label(), "threshold=0.05 for=0s");
    assert_eq!(c[5].label(), "threshold=0.07 for=15m");
    assert_eq!(c[4].rule.for_, Dur::mins(5));
    let twice = candidates(
        &rule(),
        &["for=1m".parse().unwrap(), "for=2m".parse().unwrap()],
    );
    assert!(twice.is_err());
}

#[test]
fn the_snippet_is_a_valid_rule() {
    let base = rule();
    let cand = Candidate {
        settings: vec![(Dim::Threshold, Val::Num(0.05))],
        rule: apply(&base, &[(Dim::Threshold, Val::Num(0.05))]),
    };
    let result = TuneResult {
        base: base.clone(),
        rows: vec![Row {
            candidate: cand.clone(),
            summary: RuleSummary {
                rule: "r".into(),
                incidents: 0,
                slices: 0,
                firing_ms: 0,
                flaps: 0,
                truth: None,
            },
            pareto: false,
            current: false,
        }],
        chosen: Some(0),
        picked: false,
        lines: 0,
        first_ms: None,
        end_ms: None,
        covered_ms: None,
        labelled: false,
    };
    let text = snippet(&result, 0).unwrap();
    let back = Config::from_toml_str(&text, &std::collections::HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.rules, vec![cand.rule]);
    // The legend says why the row was chosen: `--pick`, not the labels'
    // order when there were none.
    let picked = TuneResult {
        picked: true,
        ..result.clone()
    };
    let table = super::output::render_table(&picked);
    assert!(
        table.contains("> chosen: #1") && table.contains("(--pick)"),
        "{table}"
    );
    assert!(!table.contains("fewest missed"), "{table}");
}

/// A candidate window longer than a surge's baseline is refused (it would
/// never have a value), and the error names the rule's own index in the
/// file, not the one-rule configuration the candidate is run in.
#[test]
fn a_candidate_window_beyond_a_surge_baseline_is_refused_by_its_own_index() {
    let cfg = Config::from_toml_str(
        r#"
[[rules]]
name = "n"
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[[rules]]
name = "s"
window = "30m"
slide = "10m"
indicator = { kind = "surge", select = { type = "order" }, baseline = "1h", min_baseline = 1 }
thresholds = { warning = 3 }
"#,
        &std::collections::HashMap::new(),
    )
    .unwrap();
    let opts = |windows: &str| TuneOptions {
        rule: "s".into(),
        varies: vec![format!("window=30m,{windows}").parse().unwrap()],
        ..TuneOptions::default()
    };
    let e = Tuner::new(&cfg, &opts("2h")).err().unwrap().to_string();
    assert!(
        e.contains("candidate window=2h")
            && e.contains("rules[1].indicator.baseline")
            && e.contains("at least the window (2h)"),
        "{e}"
    );
    assert!(Tuner::new(&cfg, &opts("1h")).is_ok());
}
