//! Statistically guarded thresholds (issue 11, item 3), through the backtest.
//!
//! Two slices with the same severe share (0.64) against a 0.6 threshold: a
//! small one (25 complaints) and a large one (2,500). On the point value both
//! fire; with `confidence = 0.95` only the large one does — the small slice's
//! 0.64 is well within chance of a true share below 0.6. Likewise a mean
//! score falling below its threshold on a handful of responses, and a surge
//! of a few events over a tiny baseline.

use std::collections::HashMap;

use crisiswatch::backtest::{self, SummaryOptions};
use crisiswatch::config::Config;

fn config(confidence: &str) -> Config {
    let text = format!(
        r#"
[[rules]]
name = "severe_share"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = {{ kind = "ratio", numerator = {{ type = "complaint", attrs = {{ severity = "high" }} }}, denominator = {{ type = "complaint" }}, min_denominator = 20 }}
thresholds = {{ warning = 0.6 }}
{confidence}

[[rules]]
name = "mean_score"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = {{ kind = "mean_score", select = {{ type = "feedback" }} }}
condition = "below"
thresholds = {{ warning = 6.0 }}
{confidence}
"#
    );
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("valid config")
}

/// `n` complaints on `product`, the first `severe` of them severe, spread
/// over 50 minutes from `start`; and `scores` as feedback.
fn slice(product: &str, n: usize, severe: usize, scores: &[u8], start: i64) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let severity = if i < severe { "high" } else { "low" };
        // Interleave severe and mild ones evenly in time.
        let slot = (i * 7919) % n;
        out.push(format!(
            r#"{{"id":"{product}-c{i}","type":"complaint","ts":{},"attrs":{{"product":"{product}","severity":"{severity}"}}}}"#,
            start + (slot as i64 * 3_000_000) / n as i64
        ));
    }
    for (i, s) in scores.iter().enumerate() {
        out.push(format!(
            r#"{{"id":"{product}-f{i}","type":"feedback","ts":{},"score":{s},"attrs":{{"product":"{product}"}}}}"#,
            start + (i as i64 * 3_000_000) / scores.len() as i64
        ));
    }
    out
}

fn incidents(cfg: &Config, lines: &[String]) -> Vec<(String, String)> {
    let mut sorted: Vec<(i64, &String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["ts"].as_i64().unwrap(), l)
        })
        .collect();
    sorted.sort();
    let report = backtest::run_lines(
        cfg,
        sorted.iter().map(|(_, l)| l.as_bytes()),
        &SummaryOptions::default(),
    )
    .unwrap();
    let mut got: Vec<(String, String)> = report
        .incidents
        .iter()
        .map(|i| (i.rule.clone(), i.group[0].1.clone()))
        .collect();
    got.sort();
    got.dedup();
    got
}

#[test]
fn a_small_slice_needs_stronger_evidence_than_a_large_one() {
    let start = 1_795_000_000_000;
    let mut lines = slice("small", 25, 16, &[7, 3, 5], start);
    // Large: 64 % severe of 2,500; 200 scores averaging 5.
    let scores: Vec<u8> = (0..200).map(|i| [4, 5, 6][i % 3]).collect();
    lines.extend(slice("large", 2500, 1600, &scores, start));
    let point = incidents(&config(""), &lines);
    assert_eq!(
        point,
        [
            ("mean_score".to_string(), "large".to_string()),
            ("mean_score".to_string(), "small".to_string()),
            ("severe_share".to_string(), "large".to_string()),
            ("severe_share".to_string(), "small".to_string()),
        ],
        "on the point value every slice breaches"
    );
    let guarded = incidents(&config("confidence = 0.95"), &lines);
    assert_eq!(
        guarded,
        [
            ("mean_score".to_string(), "large".to_string()),
            ("severe_share".to_string(), "large".to_string()),
        ],
        "with confidence = 0.95 only the large slice has the evidence"
    );
}

#[test]
fn confidence_is_validated() {
    let text = r#"
[[rules]]
name = "spike"
window = "1h"
indicator = { kind = "count" }
thresholds = { warning = 5 }
confidence = 0.95

[[rules]]
name = "share"
window = "1h"
indicator = { kind = "score_share", min = 0, max = 6 }
thresholds = { warning = 0.5 }
confidence = 1.5
"#;
    let err = Config::from_toml_str(text, &HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].confidence"), "{err}");
    assert!(err.contains("rules[1].confidence"), "{err}");
}

/// `customers` complaining customers on `product` over 50 minutes, the first
/// `twice` of them complaining a second time.
fn repeaters(product: &str, customers: usize, twice: usize, start: i64) -> Vec<String> {
    let mut out = Vec::new();
    let step = 3_000_000 / (customers + twice) as i64;
    let mut t = start;
    for c in (0..customers).chain(0..twice) {
        out.push(format!(
            r#"{{"id":"{product}-{}","type":"complaint","ts":{t},"customer_id":"{product}-cust{c}","attrs":{{"product":"{product}"}}}}"#,
            out.len()
        ));
        t += step;
    }
    out
}

#[test]
fn repeat_share_is_judged_on_its_confidence_bound() {
    // One customer in three complains twice in both slices: 8 of 24 (95 %
    // Wilson lower bound 0.199) and 80 of 240 (bound 0.285), against 0.25.
    let rule = |confidence: &str| {
        let text = format!(
            r#"
[[rules]]
name = "at_risk"
group_by = ["product"]
window = "2h"
slide = "5m"
indicator = {{ kind = "repeat_share", select = {{ type = "complaint" }}, min_events = 2, min_customers = 20 }}
thresholds = {{ warning = 0.25 }}
{confidence}
"#
        );
        Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("valid config")
    };
    let start = 1_795_000_000_000;
    let mut lines = repeaters("small", 24, 8, start);
    lines.extend(repeaters("large", 240, 80, start));
    assert_eq!(
        incidents(&rule(""), &lines),
        [
            ("at_risk".to_string(), "large".to_string()),
            ("at_risk".to_string(), "small".to_string()),
        ],
        "a third of the customers repeat in both: 0.33 > 0.25"
    );
    assert_eq!(
        incidents(&rule("confidence = 0.95"), &lines),
        [("at_risk".to_string(), "large".to_string())],
        "with confidence = 0.95 only the large slice has the evidence"
    );
    // Fewer customers than min_customers is no data: 19 of 19 repeating.
    assert!(incidents(&rule(""), &repeaters("tiny", 19, 19, start)).is_empty());
    // min_customers = 0 and min_events = 0 are refused.
    let bad = r#"
[[rules]]
name = "a"
window = "1h"
indicator = { kind = "repeat_share", min_events = 0 }
thresholds = { warning = 0.5 }

[[rules]]
name = "b"
window = "1h"
indicator = { kind = "repeat_share", min_events = 2, min_customers = 0 }
thresholds = { warning = 0.5 }
"#;
    let err = Config::from_toml_str(bad, &HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].indicator.min_events"), "{err}");
    assert!(err.contains("rules[1].indicator.min_customers"), "{err}");
}

/// The value of `metric{labels}` in a Prometheus text exposition.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    let head = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.parse().unwrap())
}

#[test]
fn the_point_estimate_is_exported_and_charted_beside_the_bound() {
    // 16 severe of 25 complaints (0.64): the guarded rule judges the 95 %
    // Wilson lower bound 0.4757, and exports the 0.64 beside it; the same
    // rule without confidence exports its value only.
    let cfg = config("confidence = 0.95");
    let start = 1_795_000_000_000;
    let lines = slice("small", 25, 16, &[], start);
    let mut engine = crisiswatch::engine::Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"].as_i64());
    for l in &sorted {
        engine.process_bytes(l.as_bytes(), None, &mut out).unwrap();
    }
    let metrics = crisiswatch::metrics::Metrics::new(100).unwrap();
    metrics.publish(&engine, 0);
    let text = metrics.render();
    let labels = r#"rule="severe_share",product="small""#;
    let bound = sample(&text, "crisiswatch_indicator_value", labels).expect("value");
    let estimate = sample(&text, "crisiswatch_indicator_estimate", labels).expect("estimate");
    assert!((bound - 0.475_708_864).abs() < 1e-6, "{bound}");
    assert!((estimate - 0.64).abs() < 1e-12, "{estimate}");
    assert!(text.contains("# TYPE crisiswatch_indicator_estimate gauge"));

    let plain = config("");
    let mut engine = crisiswatch::engine::Engine::new(&plain).unwrap();
    for l in &sorted {
        engine.process_bytes(l.as_bytes(), None, &mut out).unwrap();
    }
    let metrics = crisiswatch::metrics::Metrics::new(100).unwrap();
    metrics.publish(&engine, 0);
    let text = metrics.render();
    assert_eq!(
        sample(&text, "crisiswatch_indicator_value", labels),
        Some(0.64)
    );
    assert_eq!(
        sample(&text, "crisiswatch_indicator_estimate", labels),
        None,
        "no estimate without a confidence"
    );

    // The chart samples both at every pane boundary: the bound never above
    // the estimate, and the estimate drawn and named.
    let group = vec![("product".to_string(), "small".to_string())];
    let chart = backtest::chart::collect_from(&cfg, "severe_share", &group, &[], None, |f| {
        sorted.iter().for_each(|l| f(l.as_bytes()));
        Ok(())
    })
    .unwrap();
    assert!(!chart.estimates.is_empty());
    let mut compared = 0;
    for (t, e) in &chart.estimates {
        let v = chart
            .points
            .iter()
            .find(|(pt, _)| pt == t)
            .and_then(|p| p.1);
        if let (Some(e), Some(v)) = (e, v) {
            assert!(v <= *e, "bound {v} above estimate {e} at {t}");
            compared += 1;
        }
    }
    assert!(compared > 0);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("c.svg");
    backtest::chart::render_indicator(&chart, &svg).unwrap();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("point estimate"), "{svg}");
    assert!(svg.contains("severe_share (95 % confidence bound)"));
    let plain_chart =
        backtest::chart::collect_from(&plain, "severe_share", &group, &[], None, |f| {
            sorted.iter().for_each(|l| f(l.as_bytes()));
            Ok(())
        })
        .unwrap();
    assert!(plain_chart.estimates.is_empty());
}

/// A `mean_score` rule (below 5) and an `nps` rule (below 0), both at 99 %.
fn feedback_rules(confidence: &str) -> Config {
    let text = format!(
        r#"
[[rules]]
name = "low_mean"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = {{ kind = "mean_score", select = {{ type = "feedback" }} }}
condition = "below"
thresholds = {{ warning = 5.0 }}
{confidence}

[[rules]]
name = "low_nps"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = {{ kind = "nps", select = {{ type = "feedback" }} }}
condition = "below"
thresholds = {{ warning = 0.0 }}
{confidence}
"#
    );
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("valid config")
}

#[test]
fn a_response_or_two_do_not_page_on_a_mean_or_nps_bound() {
    // Two scores of 2 (no spread at all), 2 and 3, a single detractor: on the
    // point value each breaches, but neither the mean's Student bound (with
    // its variance floor) nor the adjusted-Wald NPS bound at 99 % does.
    let start = 1_795_000_000_000;
    let mut tiny = slice("twos", 0, 0, &[2, 2], start);
    tiny.extend(slice("two_three", 0, 0, &[2, 3], start));
    tiny.extend(slice("one", 0, 0, &[3], start));
    let s = |r: &str, p: &str| (r.to_string(), p.to_string());
    assert_eq!(
        incidents(&feedback_rules(""), &tiny),
        [
            s("low_mean", "one"),
            s("low_mean", "two_three"),
            s("low_mean", "twos"),
            s("low_nps", "one"),
            s("low_nps", "two_three"),
            s("low_nps", "twos"),
        ],
        "on the point value every tiny slice breaches"
    );
    assert_eq!(
        incidents(&feedback_rules("confidence = 0.99"), &tiny),
        [],
        "at 99 % a response or two are no evidence"
    );
    // Forty responses averaging 2, all detractors: evidence at 99 %.
    let scores: Vec<u8> = (0..40).map(|i| [1, 2, 3][i % 3]).collect();
    let mut lines = tiny.clone();
    lines.extend(slice("many", 0, 0, &scores, start));
    assert_eq!(
        incidents(&feedback_rules("confidence = 0.99"), &lines),
        [s("low_mean", "many"), s("low_nps", "many")],
        "a large, clearly low slice still pages"
    );
}
