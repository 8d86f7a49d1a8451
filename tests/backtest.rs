//! Backtests, tuning, charts and reviews on seeded scenarios with known crises.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use crisiswatch::backtest::labels::{self, Crisis};
use crisiswatch::backtest::report::{Report, SummaryOptions};
use crisiswatch::backtest::tune::{self, TuneOptions};
use crisiswatch::backtest::{self, chart, review, Inputs};
use crisiswatch::config::Config;
use crisiswatch::generator::{Generator, GeneratorSettings};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// 2026-11-20T00:00:00Z.
const S: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn example() -> Config {
    Config::load(
        &PathBuf::from(ROOT).join("config/crisiswatch.toml"),
        &no_env(),
    )
    .unwrap()
}

/// A seeded simulated day, as `crisiswatch generate` writes it, and its crises.
fn day(seed: u64, orders_per_minute: f64, noise: bool) -> (Vec<Vec<u8>>, Vec<Crisis>) {
    let mut gen = Generator::new(GeneratorSettings {
        seed,
        start_ms: S,
        duration_ms: 24 * 3_600_000,
        orders_per_minute,
        crises: true,
        noise,
        shape: crisiswatch::generator::TrafficShape::default(),
    });
    let mut lines = Vec::new();
    let mut t = S;
    while !gen.is_done() {
        t += 3_600_000;
        gen.generate_until(t, &mut lines);
    }
    let crises = labels::from_generator(gen.crises());
    (lines, crises)
}

fn lines_of(lines: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> + Clone {
    lines.iter().map(|l| l.as_slice())
}

// === a hand-checked scenario ===

const HAND_CONFIG: &str = r#"
[[rules]]
name = "spike"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3 }
"#;

fn complaint(id: &str, at: i64, product: &str, customer: &str, channel: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"complaint","ts":{},"customer_id":"{customer}","attrs":{{"product":"{product}","channel":"{channel}","region":"eu"}}}}"#,
        S + at
    )
    .into_bytes()
}

/// 19 lines. `spike` counts complaints per product over 10 minutes (1-minute
/// panes) and fires above 3, at once (`for` 0), resolving as soon as the count
/// is back to 3 (`clear` = the threshold, `keep_firing_for` 0).
///
/// * A: complaints at +10m, +11m, (+11m30s a redelivery of +11m's id: dropped),
///   +12m, +13m → 4 at +13m: fires at +13m. The +10m pane leaves the window at
///   +19m 1ms → 3: resolves. Crisis A starts at +5m: delay 8m.
/// * B: +30m, +30m30s, +31m, +31m30s → fires at +31m30s; the +30m pane leaves
///   at +39m 1ms. Crisis B starts at +25m: delay 6m30s.
/// * C (no crisis): +50m..+53m → fires at +53m, resolves at +59m 1ms; then
///   +62m..+65m → fires at +65m (the +53m pane left at +62m 1ms), resolves at
///   +71m 1ms: two false incidents, and a flap (re-fired 5m59.999s after the resolve).
/// * Crisis D (+70m..+80m) has no complaints at all: missed.
/// * A garbage line, and an order at +90m to move event time past every resolve.
///
/// By hand: 4 incidents, 2 false, 1 missed of 3 crises; precision 2/4 = 0.5,
/// recall 2/3; delays {6m30s, 8m} → nearest-rank median 6m30s, p90 8m, max 8m;
/// time firing A 6m 1ms + B 7m 30s 1ms + C 2 × 6m 1ms = 25m 30s 4ms; 1 flap.
fn hand_lines() -> Vec<Vec<u8>> {
    let mut v = vec![
        complaint("a1", 10 * MIN, "A", "c1", "social"),
        complaint("a2", 11 * MIN, "A", "c2", "social"),
        complaint("a2", 11 * MIN + 30_000, "A", "c2", "social"),
        b"{not json".to_vec(),
        complaint("a3", 12 * MIN, "A", "c1", "email"),
        complaint("a4", 13 * MIN, "A", "c3", "social"),
        complaint("b1", 30 * MIN, "B", "c4", "web"),
        complaint("b2", 30 * MIN + 30_000, "B", "c5", "web"),
        complaint("b3", 31 * MIN, "B", "c6", "web"),
        complaint("b4", 31 * MIN + 30_000, "B", "c7", "web"),
    ];
    for (i, m) in [50, 51, 52, 53, 62, 63, 64, 65].iter().enumerate() {
        v.push(complaint(&format!("c{i}"), m * MIN, "C", "c8", "app"));
    }
    v.push(
        format!(
            r#"{{"id":"o1","type":"order","ts":{},"attrs":{{"product":"Z"}}}}"#,
            S + 90 * MIN
        )
        .into_bytes(),
    );
    v
}

fn hand_labels() -> Vec<Crisis> {
    let c = |name: &str, product: &str, start: i64, end: i64| Crisis {
        name: name.into(),
        kind: String::new(),
        slice: vec![("product".into(), product.into())],
        start_ms: S + start * MIN,
        end_ms: S + end * MIN,
    };
    vec![c("A", "A", 5, 20), c("B", "B", 25, 40), c("D", "D", 70, 80)]
}

fn hand_report() -> Report {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let lines = hand_lines();
    let opts = SummaryOptions {
        labels: Some(hand_labels()),
        ..SummaryOptions::default()
    };
    backtest::run_lines(&cfg, lines_of(&lines), &opts).unwrap()
}

#[test]
fn hand_checked_scenario_gives_the_hand_computed_figures() {
    let r = hand_report();
    assert_eq!(r.lines, 19);
    assert_eq!(r.stats.invalid_total(), 1);
    assert_eq!(r.stats.duplicates, 1);
    assert_eq!(r.stats.applied, 16);
    let fired: Vec<(String, i64, Option<i64>)> = r
        .incidents
        .iter()
        .map(|i| {
            (
                i.group_label(),
                i.fired_at - S,
                i.resolved_at.map(|t| t - S),
            )
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            ("product=A".to_string(), 13 * MIN, Some(19 * MIN + 1)),
            (
                "product=B".to_string(),
                31 * MIN + 30_000,
                Some(39 * MIN + 1)
            ),
            ("product=C".to_string(), 53 * MIN, Some(59 * MIN + 1)),
            ("product=C".to_string(), 65 * MIN, Some(71 * MIN + 1)),
        ]
    );
    let t = r.truth.as_ref().unwrap();
    assert_eq!(t.crises, 3);
    assert_eq!(t.incidents, 4);
    assert_eq!(t.false_incidents, 2);
    assert_eq!(t.detected, 2);
    assert_eq!(t.missed, 1);
    assert_eq!(t.precision, Some(0.5));
    assert_eq!(t.recall, Some(2.0 / 3.0));
    let d = t.delay.unwrap();
    assert_eq!(d.median_ms, 6 * MIN + 30_000);
    assert_eq!(d.p90_ms, 8 * MIN);
    assert_eq!(d.max_ms, 8 * MIN);
    let names: Vec<(&str, Option<i64>)> = t
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.delay_ms))
        .collect();
    assert_eq!(
        names,
        [
            ("A", Some(8 * MIN)),
            ("B", Some(6 * MIN + 30_000)),
            ("D", None)
        ]
    );
    assert_eq!(t.false_keys.len(), 2);
    assert!(t
        .false_keys
        .iter()
        .all(|k| k.starts_with("spike/product=C/")));

    let rule = &r.rules[0];
    assert_eq!(rule.incidents, 4);
    assert_eq!(rule.slices, 3);
    assert_eq!(rule.flaps, 1);
    assert_eq!(rule.firing_ms, 25 * MIN + 30_000 + 4);
    let c = r.slices.iter().find(|s| s.group[0].1 == "C").unwrap();
    assert_eq!((c.incidents, c.flaps, c.firing_ms), (2, 1, 12 * MIN + 2));
    assert_eq!(c.peak.map(|p| p.value), Some(4.0));
    // A shorter flap gap: the C re-fire (after 5m59.999s) is no longer a flap.
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let lines = hand_lines();
    let short = SummaryOptions {
        flap_gap_ms: 5 * MIN,
        ..SummaryOptions::default()
    };
    let r2 = backtest::run_lines(&cfg, lines_of(&lines), &short).unwrap();
    assert_eq!(r2.rules[0].flaps, 0);
    assert!(r2.truth.is_none());
    // A grace of 0 still catches A and B: both fired inside their crisis.
    let strict = SummaryOptions {
        grace_ms: Some(0),
        labels: Some(hand_labels()),
        ..SummaryOptions::default()
    };
    let r3 = backtest::run_lines(&cfg, lines_of(&lines), &strict).unwrap();
    assert_eq!(r3.truth.unwrap().detected, 2);
    // The text report carries the same figures.
    let text = r.to_string();
    assert!(
        text.contains("missed 1 of 3, false incidents 2 of 4, precision 0.50, recall 0.67"),
        "{text}"
    );
    assert!(
        text.contains("detection delay: median 6m 30s, p90 8m, max 8m"),
        "{text}"
    );
}

/// The history starts at its earliest event, not at its first line: lines a
/// few seconds out of order (within the allowed lateness) give the same
/// start and covered time as the sorted file.
#[test]
fn the_history_starts_at_its_earliest_event_whatever_line_comes_first() {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let at = |secs: &[i64]| -> Vec<Vec<u8>> {
        secs.iter()
            .enumerate()
            .map(|(i, s)| complaint(&format!("c{i}"), s * 1000, "p", "u", "web"))
            .collect()
    };
    let json = |lines: &[Vec<u8>]| {
        let r = backtest::run_lines(&cfg, lines_of(lines), &SummaryOptions::default()).unwrap();
        serde_json::to_value(&r).unwrap()
    };
    let sorted = json(&at(&[0, 50, 60, 120, 180]));
    let shuffled = json(&at(&[50, 0, 60, 180, 120]));
    assert_eq!(sorted["first_at"], "2026-11-20T00:00:00Z", "{sorted}");
    assert_eq!(sorted["covered_ms"], 180_000);
    for k in ["first_at", "end_at", "covered_ms", "gaps"] {
        assert_eq!(shuffled[k], sorted[k], "{k}");
    }
}

#[test]
fn backtest_transitions_are_the_bytes_replay_writes() {
    let (lines, _) = day(7, 80.0, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("day.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in &lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let cfg = example();
    let mut from_replay = Vec::new();
    let mut engine = crisiswatch::engine::Engine::new(&cfg).unwrap();
    let input = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    crisiswatch::replay::replay(&mut engine, input, &mut from_replay, None, |_| {}).unwrap();
    let mut from_backtest = Vec::new();
    let inputs = Inputs::new(vec![path]).unwrap().quiet();
    let report = backtest::run(
        &cfg,
        &inputs,
        &SummaryOptions::default(),
        None,
        Some(&mut from_backtest),
    )
    .unwrap();
    assert!(report.stats.transitions > 0);
    assert_eq!(report.stats, *engine.stats());
    assert!(
        from_backtest == from_replay,
        "backtest and replay transitions differ"
    );
}

#[test]
fn the_example_config_catches_every_labelled_crisis_without_false_incidents() {
    let (lines, crises) = day(1, 300.0, true);
    let opts = SummaryOptions {
        labels: Some(crises),
        ..SummaryOptions::default()
    };
    let r = backtest::run_lines(&example(), lines_of(&lines), &opts).unwrap();
    let t = r.truth.as_ref().unwrap();
    assert_eq!((t.crises, t.missed, t.false_incidents), (3, 0, 0), "{r}");
    assert_eq!((t.precision, t.recall), (Some(1.0), Some(1.0)));
    let d = t.delay.unwrap();
    // The slowest is the churn wave: 49 minutes on this day (churn_surge needs
    // 10 cancellations in 30 minutes where the slice expects 1 or fewer).
    assert!(d.max_ms <= 60 * MIN, "{r}");
    let churn = r.rules.iter().find(|x| x.rule == "churn_surge").unwrap();
    let caught: Vec<&str> = churn
        .truth
        .as_ref()
        .unwrap()
        .outcomes
        .iter()
        .filter(|o| o.detected_at.is_some())
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(caught, ["churn_wave"]);
    // Every incident is in a slice; peaks are past the thresholds.
    for s in &r.slices {
        let rule = r.rules.iter().position(|x| x.rule == s.rule).unwrap();
        let lowest = example().rules[rule].thresholds.levels()[0].1;
        let p = s.peak.unwrap().value;
        match example().rules[rule].condition {
            crisiswatch::config::Condition::Above => assert!(p > lowest, "{s:?}"),
            crisiswatch::config::Condition::Below => assert!(p < lowest, "{s:?}"),
        }
    }
}

/// A bad default: complaint_rate at 3 % (the normal rate is about 2 %).
fn bad_config() -> Config {
    let mut cfg = example();
    let r = cfg
        .rules
        .iter_mut()
        .find(|r| r.name == "complaint_rate")
        .unwrap();
    r.thresholds.warning = Some(0.03);
    r.clear = Some(0.02);
    assert!(cfg.validate().is_empty());
    cfg
}

#[test]
fn tune_picks_a_threshold_that_catches_every_crisis_with_fewer_false_incidents() {
    let (lines, crises) = day(1, 300.0, false);
    // The crises complaint_rate is meant to catch.
    let crises = labels::select(crises, &["quality_surge".into(), "social_spike".into()]).unwrap();
    let cfg = bad_config();
    let opts = SummaryOptions {
        labels: Some(crises.clone()),
        ..SummaryOptions::default()
    };
    let bad = backtest::run_lines(&cfg, lines_of(&lines), &opts).unwrap();
    let bad_rule = bad
        .rules
        .iter()
        .find(|r| r.rule == "complaint_rate")
        .unwrap();
    let bad_false = bad_rule.truth.as_ref().unwrap().false_incidents;
    assert!(bad_false > 0, "the bad default must be noisy: {bad}");

    let topts = TuneOptions {
        rule: "complaint_rate".into(),
        varies: vec!["threshold=0.03..0.08:0.01".parse().unwrap()],
        summary: opts.clone(),
        now_ms: None,
        pick: None,
    };
    let result = tune::run_lines(&cfg, lines_of(&lines), &topts).unwrap();
    assert_eq!(
        result.rows.len(),
        6,
        "0.03 is the configured value: no extra row"
    );
    assert!(result.rows[0].current);
    assert_eq!(
        result.rows[0].summary,
        bad_rule.clone(),
        "the current row is the backtest's figure"
    );
    let chosen = &result.rows[result.chosen.unwrap()];
    assert_eq!(chosen.missed(), Some(0), "{}", tune::render_table(&result));
    assert!(chosen.false_incidents().unwrap() < bad_false);
    assert!(chosen.pareto);
    let t = chosen.candidate.rule.thresholds.warning.unwrap();
    assert!(t > 0.03, "{t}");

    // The snippet, pasted over the rule, backtests to the chosen row's figures.
    let snippet = tune::snippet(&result, result.chosen.unwrap()).unwrap();
    let snip_cfg = Config::from_toml_str(&snippet, &no_env()).unwrap();
    let mut tuned = cfg.clone();
    for r in &mut tuned.rules {
        if r.name == "complaint_rate" {
            *r = snip_cfg.rules[0].clone();
        }
    }
    let after = backtest::run_lines(&tuned, lines_of(&lines), &opts).unwrap();
    let after_rule = after
        .rules
        .iter()
        .find(|r| r.rule == "complaint_rate")
        .unwrap();
    assert_eq!(*after_rule, chosen.summary);

    // CSV: a header and one line per row.
    let mut csv = Vec::new();
    tune::write_csv(&result, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + result.rows.len());
    assert!(csv.starts_with("candidate,label,threshold,incidents,false_incidents,missed,"));
}

#[test]
fn every_tuning_row_equals_a_backtest_of_that_candidate() {
    let (lines, crises) = day(4, 120.0, true);
    let cfg = example();
    let opts = SummaryOptions {
        labels: Some(crises),
        ..SummaryOptions::default()
    };
    let topts = TuneOptions {
        rule: "social_spike".into(),
        varies: vec![
            "threshold=0.45,0.6".parse().unwrap(),
            "for=0m,3m".parse().unwrap(),
            "window=20m,30m".parse().unwrap(),
        ],
        summary: opts.clone(),
        now_ms: None,
        pick: Some(3),
    };
    let result = tune::run_lines(&cfg, lines_of(&lines), &topts).unwrap();
    assert_eq!(result.rows.len(), 9, "8 candidates and the current rule");
    assert_eq!(result.chosen, Some(2));
    let mut fired = 0;
    for row in &result.rows {
        let c = tune::backtest_config(&cfg, &row.candidate.rule);
        let r = backtest::run_lines(&c, lines_of(&lines), &opts).unwrap();
        let want = r.rules.iter().find(|x| x.rule == "social_spike").unwrap();
        assert_eq!(*want, row.summary, "{}", row.candidate.label());
        fired += row.summary.incidents;
    }
    assert!(fired > 0, "the candidates must do something");
}

#[test]
fn tuning_rows_stay_exact_when_the_group_cap_is_reached() {
    // One group allowed. With threshold 10 nothing fires and product A's group
    // is forgotten when its window empties, so B's complaints are counted;
    // with threshold 1 and a long keep_firing_for, A keeps firing (and its
    // group alive) with an empty window, so B's group is refused. The two
    // candidates share one engine (threshold 10 runs it): `tune` must notice
    // the cap and give each its own engine, as separate backtests do.
    let cfg = Config::from_toml_str(
        r#"
[engine]
max_groups_per_rule = 1

[[rules]]
name = "spike"
group_by = ["product"]
window = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 10 }
keep_firing_for = "1h"
"#,
        &no_env(),
    )
    .unwrap();
    let lines: Vec<Vec<u8>> = vec![
        complaint("a1", 0, "A", "c1", "web"),
        complaint("a2", 1000, "A", "c2", "web"),
        complaint("b1", 5 * MIN, "B", "c3", "web"),
        complaint("b2", 5 * MIN + 1000, "B", "c4", "web"),
        complaint("z", 90 * MIN, "A", "c5", "web"),
    ];
    let opts = SummaryOptions::default();
    let topts = TuneOptions {
        rule: "spike".into(),
        // More candidates than one pass of the exact fallback gives
        // engines to: the rows come from several readings.
        varies: vec!["threshold=10,2,3,5,7,1".parse().unwrap()],
        summary: opts.clone(),
        now_ms: None,
        pick: None,
    };
    let mut shared = tune::Tuner::new(&cfg, &topts).unwrap();
    assert_eq!(shared.engines(), 1, "threshold candidates share one engine");
    for l in lines_of(&lines) {
        shared.feed(l);
    }
    assert!(!shared.exact(), "the shared pass must see the cap");
    let result = tune::run_lines(&cfg, lines_of(&lines), &topts).unwrap();
    let mut incidents = Vec::new();
    for row in &result.rows {
        let c = tune::backtest_config(&cfg, &row.candidate.rule);
        let r = backtest::run_lines(&c, lines_of(&lines), &opts).unwrap();
        let want = r.rules.iter().find(|x| x.rule == "spike").unwrap();
        assert_eq!(*want, row.summary, "{}", row.candidate.label());
        incidents.push(row.summary.incidents);
    }
    // Threshold 10: nothing. Threshold 1: A only (B was refused).
    // (Threshold 1 is the sixth row: it comes from the second reading.)
    assert_eq!(incidents, vec![0, 0, 0, 0, 0, 1]);
}

#[test]
fn the_indicator_chart_is_an_svg_with_the_expected_series() {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let lines = hand_lines();
    let group = chart::parse_group(&cfg.rules[0], "product=C").unwrap();
    let crises = vec![Crisis {
        name: "c_trouble".into(),
        kind: String::new(),
        slice: vec![("product".into(), "C".into())],
        start_ms: S + 48 * MIN,
        end_ms: S + 70 * MIN,
    }];
    let data = chart::collect_from(&cfg, "spike", &group, &crises, None, |f| {
        lines.iter().for_each(|l| f(l));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        data.firing,
        vec![
            (S + 53 * MIN, S + 59 * MIN + 1),
            (S + 65 * MIN, S + 71 * MIN + 1)
        ]
    );
    assert_eq!(data.crises.len(), 1);
    // One sample per minute boundary (+10m 1ms .. +89m 1ms), plus the 4
    // transitions of C (the two resolves also fall on boundaries).
    assert_eq!(data.points.len(), 80 + 4);
    let on_boundaries = data
        .points
        .iter()
        .filter(|(t, _)| (t - S) % MIN == 1)
        .count();
    assert_eq!(on_boundaries, 80 + 2);
    let with_value: Vec<(i64, f64)> = data
        .points
        .iter()
        .filter_map(|&(t, v)| v.map(|v| (t, v)))
        .collect();
    assert!(with_value.contains(&(S + 53 * MIN, 4.0)));
    assert!(with_value.contains(&(S + 59 * MIN + 1, 3.0)));

    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("c.svg");
    chart::render_indicator(&data, &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    for want in [
        "spike — product=C",
        "warning 3",
        "clear 3",
        "firing",
        "crisis: c_trouble",
        "spike",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "no text {want:?} in {texts:?}"
        );
    }
    // The indicator line: its points are the samples that have a value, plus
    // the 2 of the legend's sample line.
    let indicator_points: usize = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#1F4EA8"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .sum();
    assert_eq!(indicator_points, with_value.len() + 2);
    // Two shaded firing intervals (and the legend swatch).
    let red_rects = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#FF0000"))
        .count();
    assert_eq!(red_rects, 3);
}

#[test]
fn the_tuning_chart_plots_the_candidates() {
    let (lines, crises) = day(1, 300.0, false);
    let crises = labels::select(crises, &["social_spike".into()]).unwrap();
    let topts = TuneOptions {
        rule: "social_spike".into(),
        varies: vec!["threshold=0.4,0.5,0.7".parse().unwrap()],
        summary: SummaryOptions {
            labels: Some(crises),
            ..SummaryOptions::default()
        },
        now_ms: None,
        pick: None,
    };
    let result = tune::run_lines(&example(), lines_of(&lines), &topts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.svg");
    chart::render_tune(&result, &p).unwrap();
    let svg = std::fs::read_to_string(&p).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    let labels: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .filter(|t| t.starts_with('#'))
        .collect();
    let plotted = result
        .rows
        .iter()
        .filter(|r| r.median_delay_ms().is_some())
        .count();
    assert_eq!(labels.len(), plotted, "{labels:?}");
    assert!(labels.iter().any(|l| l.contains("threshold=0.5")));
}

#[test]
fn the_review_counts_the_events_customers_and_attributes_by_hand() {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let r = hand_report();
    let a = &r.incidents[0];
    let lines = hand_lines();
    let ev = review::collect_evidence(&cfg, &[a], r.end_ms.unwrap(), None, |f| {
        lines.iter().for_each(|l| f(l));
        Ok(())
    })
    .unwrap();
    // A's window before the breach (+3m) to its resolve (+19m 1ms): four
    // complaints (the redelivery counted once) from c1, c2, c1, c3.
    let e = &ev[0];
    assert_eq!((e.events, e.signal), (4, 4));
    assert_eq!((e.signal_customers, e.customers), (3, 3));
    assert_eq!(e.by_type, vec![("complaint".to_string(), 4)]);
    assert_eq!(
        e.top,
        vec![
            (
                "channel".to_string(),
                vec![("social".to_string(), 3), ("email".to_string(), 1)]
            ),
            ("region".to_string(), vec![("eu".to_string(), 4)]),
        ]
    );
    let md = review::render(
        a,
        Some(&cfg.rules[0]),
        Some(e),
        &hand_labels(),
        None,
        r.end_ms.unwrap(),
        true,
    );
    for want in [
        "# Incident review: spike — product=A",
        "| Fired | 2026-11-20T00:13:00Z (0s after the breach began) |",
        "| Resolved | 2026-11-20T00:19:00Z |",
        "| Duration (firing) | 6m |",
        "| Peak value | 4 at 2026-11-20T00:13:00Z |",
        "| Known crisis | A (-), 2026-11-20T00:05:00Z → 2026-11-20T00:20:00Z, on product=A; fired 8m after it began |",
        "| 2026-11-20T00:13:00Z | firing | warning | 4 | 3 |",
        "| 2026-11-20T00:19:00Z | resolved | warning | 3 | 3 |",
        "| Events | 4 |",
        "| Distinct customers (signal events) | 3 |",
        "| channel | social | 3 | 75.0 % |",
        "| channel | email | 1 | 25.0 % |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
}

#[test]
fn incidents_from_a_transitions_file_match_the_backtest() {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let lines = hand_lines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join(&b"\n"[..])).unwrap();
    let mut transitions = Vec::new();
    let report = backtest::run(
        &cfg,
        &Inputs::new(vec![input]).unwrap().quiet(),
        &SummaryOptions::default(),
        None,
        Some(&mut transitions),
    )
    .unwrap();
    let tpath = dir.path().join("t.jsonl");
    std::fs::write(&tpath, &transitions).unwrap();
    let (from_file, end) = review::incidents_from_transitions(&cfg, &tpath).unwrap();
    assert_eq!(end, S + 71 * MIN + 1);
    assert_eq!(from_file.len(), report.incidents.len());
    for (a, b) in from_file.iter().zip(&report.incidents) {
        assert_eq!(a.dedup_key, b.dedup_key);
        assert_eq!(a.timeline, b.timeline);
        assert_eq!((a.fired_at, a.resolved_at), (b.fired_at, b.resolved_at));
    }
    let picked = review::select(&from_file, &["product=B".into()]).unwrap();
    assert_eq!(picked.len(), 1);
    assert!(
        review::select(&from_file, &["product=C".into()]).is_err(),
        "ambiguous"
    );
    assert!(review::select(&from_file, &["nope".into()]).is_err());
}

#[test]
fn the_shipped_rule_tests_pass_and_a_wrong_expectation_fails() {
    let shipped = PathBuf::from(ROOT).join("config/tests/crisiswatch_rules.toml");
    let r = backtest::ruletest::run_file(&shipped).unwrap();
    assert!(r.cases.len() >= 7);
    assert_eq!(
        r.failed(),
        0,
        "{}",
        backtest::ruletest::render(std::slice::from_ref(&r))
    );

    // The same file with one expectation a millisecond off fails that case only.
    let text = std::fs::read_to_string(&shipped).unwrap();
    let wrong = text.replacen("at = \"+49m 1ms\"", "at = \"+49m 2ms\"", 1);
    assert_ne!(text, wrong);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wrong.toml");
    std::fs::write(
        &p,
        wrong.replace(
            "../crisiswatch.toml",
            &format!("{ROOT}/config/crisiswatch.toml"),
        ),
    )
    .unwrap();
    let r = backtest::ruletest::run_file(&p).unwrap();
    assert_eq!(r.failed(), 1);
    let passed = r.cases.len() - 1;
    let out = backtest::ruletest::render(&[r]);
    assert!(
        out.contains("missing:    resolved social_spike {product=phone-z} at +49m 2ms"),
        "{out}"
    );
    assert!(out.contains("unexpected: { rule = \"social_spike\", group = { product = \"phone-z\" }, state = \"resolved\", at = \"+49m 1ms\""), "{out}");
    assert!(
        out.ends_with(&format!("{passed} passed, 1 failed\n")),
        "{out}"
    );
}

#[test]
fn inline_rules_in_a_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("inline.toml");
    std::fs::write(
        &p,
        r#"
start = "2026-11-20T00:00:00Z"

[engine]
dedup_horizon = "0"

[[rules]]
name = "errors"
window = "5m"
slide = "1m"
indicator = { kind = "count", select = { type = "error" } }
thresholds = { warning = 2, critical = 4 }

[[tests]]
name = "five errors: firing, escalated, resolved"
until = "+20m"

[[tests.input]]
count = 5
every = "10s"
event = { type = "error", id = "same" }   # the same id five times: dedup is off

[[tests.expect]]
rule = "errors"
state = "firing"
at = "+20s"
severity = "warning"

[[tests.expect]]
rule = "errors"
state = "escalated"
at = "+40s"
severity = "critical"
value = 5

[[tests.expect]]
rule = "errors"
state = "resolved"
at = "+5m 1ms"
"#,
    )
    .unwrap();
    let r = backtest::ruletest::run_file(&p).unwrap();
    assert_eq!(
        r.failed(),
        0,
        "{}",
        backtest::ruletest::render(std::slice::from_ref(&r))
    );
    assert_eq!(r.config, "inline rules");
}

/// Events a rule's group cap refused are named per rule, even when another
/// rule took them (they count as applied, not as overflow).
#[test]
fn a_rule_at_its_group_cap_is_named_in_the_report() {
    let text = r#"
[engine]
max_groups_per_rule = 5
max_future_skew = "1h"

[[rules]]
name = "per_product"
group_by = ["product"]
window = "10m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 100 }

[[rules]]
name = "everything"
group_by = []
window = "10m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }
"#;
    let cfg = crisiswatch::config::Config::from_toml_str(
        text,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let t0 = 1_795_132_800_000i64;
    let lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id":"c{i}","type":"complaint","ts":{},"attrs":{{"product":"p{i}"}}}}"#,
                t0 + i * 1000
            )
        })
        .collect();
    let report = backtest::run_lines(
        &cfg,
        lines.iter().map(|l| l.as_bytes()),
        &SummaryOptions::default(),
    )
    .unwrap();
    assert_eq!(report.stats.applied, 20);
    assert_eq!(report.capped, vec![("per_product".to_string(), 15)]);
    let shown = report.to_string();
    assert!(
        shown.contains("rule per_product: 15 events refused at engine.max_groups_per_rule"),
        "{shown}"
    );
}

/// A labelled crisis that starts after the history ends is not scored: it
/// neither counts as missed nor lowers the recall.
#[test]
fn a_crisis_after_the_end_of_the_history_is_not_scored() {
    let cfg = Config::from_toml_str(HAND_CONFIG, &no_env()).unwrap();
    let lines = hand_lines();
    let mut with_later = hand_labels();
    with_later.push(Crisis {
        name: "later".into(),
        kind: String::new(),
        slice: vec![("product".into(), "A".into())],
        start_ms: S + 600 * MIN,
        end_ms: S + 620 * MIN,
    });
    let opts = |labels| SummaryOptions {
        labels: Some(labels),
        ..SummaryOptions::default()
    };
    let base = backtest::run_lines(&cfg, lines_of(&lines), &opts(hand_labels())).unwrap();
    let later = backtest::run_lines(&cfg, lines_of(&lines), &opts(with_later)).unwrap();
    let (b, l) = (base.truth.as_ref().unwrap(), later.truth.as_ref().unwrap());
    assert_eq!(l.crises, b.crises);
    assert_eq!(l.missed, b.missed);
    assert_eq!(l.recall, b.recall);
    assert_eq!(l.after_history, 1);
    assert_eq!(b.after_history, 0);
    assert!(later
        .rules
        .iter()
        .all(|r| r.truth.as_ref().is_some_and(|t| t.after_history == 1)));
    let shown = later.to_string();
    assert!(
        shown.contains("1 more labelled crises start after the history ends"),
        "{shown}"
    );
    // One that ended before the history started is not scored either.
    let mut with_earlier = hand_labels();
    with_earlier.push(Crisis {
        name: "earlier".into(),
        kind: String::new(),
        slice: vec![("product".into(), "A".into())],
        start_ms: S - 600 * MIN,
        end_ms: S - 580 * MIN,
    });
    let earlier = backtest::run_lines(&cfg, lines_of(&lines), &opts(with_earlier)).unwrap();
    let e = earlier.truth.as_ref().unwrap();
    assert_eq!(
        (e.crises, e.missed, e.recall),
        (b.crises, b.missed, b.recall)
    );
    assert_eq!((e.before_history, e.after_history), (1, 0));
    assert!(earlier
        .to_string()
        .contains("1 more labelled crises end before the history starts"));
}

/// A history with no valid event is an error for `tune` (and `suggest`,
/// which tunes), not a table of thresholds chosen on nothing.
#[test]
fn tune_refuses_a_history_without_valid_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "not json\n{\"id\":\"x\"}\n\n").unwrap();
    let inputs = Inputs::new(vec![path]).unwrap().quiet();
    let topts = TuneOptions {
        rule: "complaint_rate".into(),
        varies: vec!["threshold=0.03..0.08:0.01".parse().unwrap()],
        summary: SummaryOptions::default(),
        now_ms: None,
        pick: None,
    };
    let err = tune::run(&example(), &inputs, &topts).unwrap_err();
    assert!(
        err.to_string()
            .contains("the history holds no valid event (2 lines read)"),
        "{err}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Backtest and replay drive one core: on any history — events out of
    /// order, stragglers behind the first event's watermark before anything
    /// was applied, jumps back and forth — they write the same transitions
    /// and count the same outcomes. (Before, an event behind the watermark
    /// that came before any event was applied started backtest's clock at
    /// its own time: applied and alerting in backtest, late in replay.)
    #[test]
    fn backtest_and_replay_agree_on_any_order(
        steps in proptest::collection::vec((-40i64..25, 0u8..3, 0u8..4), 2..60),
        lateness in proptest::sample::select(vec!["0s", "1m", "5m"]),
    ) {
        let cfg = Config::from_toml_str(
            &format!(
                r#"
[engine]
allowed_lateness = "{lateness}"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 2 }}
[[rules]]
name = "rate"
window = "15m"
slide = "5m"
indicator = {{ kind = "ratio", numerator = {{ type = "complaint" }}, denominator = {{ type = "order" }}, min_denominator = 1 }}
thresholds = {{ warning = 0.5 }}
"#
            ),
            &no_env(),
        )
        .unwrap();
        // Minutes from S + 10 h: each step moves a running time back or on.
        let mut t = 600 * MIN;
        let mut text = String::new();
        for (i, (dm, product, kind)) in steps.iter().enumerate() {
            t += dm * MIN / 2;
            let ty = if *kind == 0 { "order" } else { "complaint" };
            text.push_str(&format!(
                "{{\"id\":\"e{i}\",\"type\":\"{ty}\",\"ts\":{},\"attrs\":{{\"product\":\"p{product}\"}}}}\n",
                S + t
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut from_replay = Vec::new();
        let mut engine = crisiswatch::engine::Engine::new(&cfg).unwrap();
        crisiswatch::replay::replay(&mut engine, text.as_bytes(), &mut from_replay, None, |_| {})
            .unwrap();
        let mut from_backtest = Vec::new();
        let inputs = Inputs::new(vec![path]).unwrap().quiet();
        let report = backtest::run(
            &cfg,
            &inputs,
            &SummaryOptions::default(),
            None,
            Some(&mut from_backtest),
        )
        .unwrap();
        proptest::prop_assert_eq!(&report.stats, engine.stats());
        proptest::prop_assert_eq!(
            String::from_utf8_lossy(&from_backtest),
            String::from_utf8_lossy(&from_replay)
        );
    }
}

/// An event too old for a short rule's window but taken by a longer rule is
/// not in the report's `late` (late for every rule): the short rule's count
/// is named on its own line.
#[test]
fn events_late_for_one_rule_only_are_named() {
    let cfg = Config::from_toml_str(
        r#"
[engine]
allowed_lateness = "1m"

[[rules]]
name = "short"
window = "10m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }

[[rules]]
name = "long"
window = "6h"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }
"#,
        &no_env(),
    )
    .unwrap();
    let mut lines: Vec<Vec<u8>> = (0..120)
        .map(|m| {
            format!(
                r#"{{"id":"c{m}","type":"complaint","ts":{},"attrs":{{}}}}"#,
                S + m * MIN
            )
            .into_bytes()
        })
        .collect();
    // Two hours behind the clock: too old for `short`, in time for `long`.
    lines.push(
        format!(
            r#"{{"id":"old","type":"complaint","ts":{},"attrs":{{}}}}"#,
            S + MIN / 2
        )
        .into_bytes(),
    );
    let r = backtest::run_lines(&cfg, lines_of(&lines), &SummaryOptions::default()).unwrap();
    assert_eq!(r.stats.late, 0, "{r}");
    assert_eq!(r.late_for, vec![("short".to_string(), 1)]);
    assert!(
        r.to_string()
            .contains("rule short: 1 events too old for its window were not counted"),
        "{r}"
    );
    // Sorting is not the only cause it names: a source whose stamps trail.
    assert!(
        r.to_string().contains(
            "fix that source's stamps, and a resend older than engine.dedup_horizon counts twice"
        ),
        "{r}"
    );
    // The JSON report carries it too, beside the invalid lines.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["late_for_rule"],
        serde_json::json!({ "short": 1 }),
        "{json}"
    );
    assert_eq!(json["capped"], serde_json::json!({}), "{json}");
    assert_eq!(json["invalid_lines"], serde_json::json!([]), "{json}");
    assert_eq!(
        json["stats"]["invalid_by_reason"],
        serde_json::json!({}),
        "{json}"
    );
}

/// Events late for every rule (orders an order rule no longer takes) do not
/// hide a rule's own line: a history split one file per event type, whose
/// later files are all "late", still names what each rule lost alone.
#[test]
fn late_events_of_other_types_do_not_hide_a_rules_own_losses() {
    let cfg = Config::from_toml_str(
        r#"
[engine]
allowed_lateness = "1m"

[[rules]]
name = "short"
window = "10m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }

[[rules]]
name = "long"
window = "6h"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }

[[rules]]
name = "orders"
window = "10m"
indicator = { kind = "count", select = { type = "order" } }
thresholds = { warning = 1000 }
"#,
        &no_env(),
    )
    .unwrap();
    let event = |id: String, kind: &str, ts: i64| {
        format!(r#"{{"id":"{id}","type":"{kind}","ts":{ts},"attrs":{{}}}}"#).into_bytes()
    };
    // Orders for two hours, then the complaints of the same two hours (an
    // export split by type, given in that order), then older orders again.
    let mut lines: Vec<Vec<u8>> = (0..120)
        .map(|m| event(format!("o{m}"), "order", S + m * MIN))
        .collect();
    lines.extend((0..120).map(|m| event(format!("c{m}"), "complaint", S + m * MIN)));
    lines.extend((0..360).map(|m| event(format!("old{m}"), "order", S + (m % 120) * MIN)));
    let r = backtest::run_lines(&cfg, lines_of(&lines), &SummaryOptions::default()).unwrap();
    // The old orders are late for every rule that selects them: in `late`.
    // The complaints before the last 10 minutes (and the lateness) are too
    // old for `short` but `long` took them: named on their own.
    assert!(r.stats.late >= 300, "{r}");
    let short = r
        .late_for
        .iter()
        .find(|(rule, _)| rule == "short")
        .map(|(_, n)| *n);
    assert!(short.is_some_and(|n| n >= 100), "{:?}\n{r}", r.late_for);
    assert!(
        !r.late_for.iter().any(|(rule, _)| rule != "short"),
        "{:?}",
        r.late_for
    );
    assert!(
        r.to_string().contains(&format!(
            "rule short: {} events too old for its window were not counted",
            short.unwrap_or_default()
        )),
        "{r}"
    );
}
