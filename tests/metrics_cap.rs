//! A flood of 100,000 distinct attribute values: the exported series stay at
//! the cap, the overflow is counted, and memory stays bounded.

use std::collections::HashMap;

use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::metrics::Metrics;

const CONFIG: &str = r#"
[engine]
max_groups_per_rule = 5000
dedup_max_ids = 20000

[server]
max_series_per_rule = 50

[[rules]]
name = "flood"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000000 }
"#;

/// Resident set size of this process, bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn flood(engine: &mut Engine, from: u64, n: u64) {
    let mut out = Vec::new();
    let t0 = 1_795_132_800_000i64;
    for i in from..from + n {
        let line = format!(
            r#"{{"id":"f-{i}","type":"complaint","ts":{},"attrs":{{"product":"p-{i}"}}}}"#,
            t0 + (i as i64) % 1000
        );
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
}

fn series_lines(text: &str, metric: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{rule=\"flood\"")))
        .count()
}

#[test]
fn series_and_groups_stay_capped_under_a_flood() {
    let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let metrics = Metrics::new(cfg.server.max_series_per_rule).unwrap();

    flood(&mut engine, 0, 100_000);
    metrics.publish(&engine, 0);
    let text = metrics.render();
    assert_eq!(engine.live_groups(0), 5000, "groups capped");
    assert_eq!(
        engine.rule_stats(0).group_overflow,
        95_000,
        "overflow counted"
    );
    assert_eq!(
        series_lines(&text, "crisiswatch_indicator_value"),
        50,
        "series capped"
    );
    assert_eq!(series_lines(&text, "crisiswatch_alert_state"), 50);
    assert!(
        text.contains("crisiswatch_indicator_series_dropped{rule=\"flood\"} 4950"),
        "dropped series counted"
    );
    assert!(text.contains("crisiswatch_window_group_overflow_total{rule=\"flood\"} 95000"));
    assert!(text.contains("crisiswatch_events_total{outcome=\"overflow\"} 95000"));
    assert!(engine.dedup_len() <= 20_000);

    // Another 400,000 new values: nothing grows.
    let before = rss();
    flood(&mut engine, 100_000, 400_000);
    metrics.publish(&engine, 0);
    let after = rss();
    assert_eq!(engine.live_groups(0), 5000);
    assert!(engine.dedup_len() <= 20_000);
    assert_eq!(
        series_lines(&metrics.render(), "crisiswatch_indicator_value"),
        50
    );
    // Generous: the allocator may keep freed pages, but 4× more input must not
    // mean proportionally more memory (no per-value state is kept).
    assert!(
        after.saturating_sub(before) < 64 * 1024 * 1024,
        "RSS grew by {} MB",
        (after - before) / (1024 * 1024)
    );
}

/// Attribute names that clean up to one label name (`a-b` and `a_b`), or to
/// a reserved one with its `attr_` form also taken, still give every series
/// distinct label names: a label twice would make Prometheus refuse the
/// whole scrape. An attribute whose name is a valid label name keeps it
/// (`a_b`, `attr_severity`), whatever comes before it in `group_by`.
#[test]
fn colliding_attribute_names_give_distinct_label_names() {
    let cfg = Config::from_toml_str(
        r#"
[[rules]]
name = "dup_labels"
group_by = ["a-b", "a_b", "attr_severity", "severity"]
window = "1h"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1000 }
"#,
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let metrics = Metrics::new(cfg.server.max_series_per_rule).unwrap();
    let mut out = Vec::new();
    let line = r#"{"id":"d-1","type":"complaint","ts":1795132800000,"attrs":{"a-b":"dash","a_b":"under","attr_severity":"x","severity":"low"}}"#;
    engine
        .process_bytes(line.as_bytes(), None, &mut out)
        .unwrap();
    metrics.publish(&engine, 0);
    let text = metrics.render();
    let series = text
        .lines()
        .find(|l| l.starts_with("crisiswatch_indicator_value{rule=\"dup_labels\""))
        .unwrap_or_else(|| panic!("no series in {text}"));
    assert_eq!(
        series,
        "crisiswatch_indicator_value{rule=\"dup_labels\",attr_a_b=\"dash\",a_b=\"under\",attr_severity=\"x\",attr_attr_severity=\"low\"} 1"
    );
}

/// A `below` rule over the series cap exports the slices nearest to
/// breaching — the lowest values — not the healthiest.
#[test]
fn a_below_rule_over_the_cap_exports_its_lowest_slices() {
    let cfg = Config::from_toml_str(
        r#"
[server]
max_series_per_rule = 3

[[rules]]
name = "csat"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = { kind = "mean_score", select = { type = "feedback" } }
condition = "below"
thresholds = { warning = 1 }
"#,
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let metrics = Metrics::new(cfg.server.max_series_per_rule).unwrap();
    let mut out = Vec::new();
    for p in 0..10 {
        let line = format!(
            r#"{{"id":"f-{p}","type":"feedback","ts":1795132800000,"score":{},"attrs":{{"product":"p{p}"}}}}"#,
            p + 1
        );
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
    metrics.publish(&engine, 0);
    let text = metrics.render();
    let mut exported: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("crisiswatch_indicator_value{rule=\"csat\""))
        .collect();
    exported.sort_unstable();
    assert_eq!(
        exported,
        [
            "crisiswatch_indicator_value{rule=\"csat\",product=\"p0\"} 1",
            "crisiswatch_indicator_value{rule=\"csat\",product=\"p1\"} 2",
            "crisiswatch_indicator_value{rule=\"csat\",product=\"p2\"} 3",
        ],
        "{text}"
    );
}

/// A slice past `engine.max_customers_per_group` caps its distinct and
/// repeat figures; the events it did not count per customer are exported
/// by rule, never silently lost.
#[test]
fn customers_past_the_cap_are_counted_by_rule() {
    let cfg = Config::from_toml_str(
        r#"
[engine]
max_customers_per_group = 10

[[rules]]
name = "distinct"
window = "1h"
slide = "1m"
indicator = { kind = "distinct_customers", select = { type = "complaint" } }
thresholds = { warning = 1000 }
"#,
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let metrics = Metrics::new(cfg.server.max_series_per_rule).unwrap();
    let mut out = Vec::new();
    for c in 0..25 {
        let line = format!(
            r#"{{"id":"c-{c}","type":"complaint","ts":1795132800000,"customer_id":"u{c}","attrs":{{}}}}"#
        );
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
    assert_eq!(engine.rule_customers_uncounted(0), 15);
    metrics.publish(&engine, 0);
    let text = metrics.render();
    assert!(
        text.contains("crisiswatch_window_customers_uncounted{rule=\"distinct\"} 15"),
        "{text}"
    );
}

/// A feed two hours behind the stream's clock: its events are late for the
/// one-hour rule, counted beside what the rule selected — the share the
/// shipped `CrisiswatchRuleEventsLate` alert watches. An order the rule does
/// not select counts in neither.
#[test]
fn a_rule_counts_what_it_selected_beside_what_it_dropped_as_late() {
    let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let metrics = Metrics::new(cfg.server.max_series_per_rule).unwrap();
    let t0 = 1_795_132_800_000i64;
    let mut out = Vec::new();
    for i in 0..100i64 {
        let (ts, kind) = if i % 4 == 3 {
            (t0 + i * 1000 - 2 * 3_600_000, "complaint")
        } else if i % 10 == 0 {
            (t0 + i * 1000, "order")
        } else {
            (t0 + i * 1000, "complaint")
        };
        let line =
            format!(r#"{{"id":"e-{i}","type":"{kind}","ts":{ts},"attrs":{{"product":"p"}}}}"#);
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
    metrics.publish(&engine, t0 + 100_000);
    let text = metrics.render();
    // 25 complaints stamped two hours back, 65 in time, 10 orders.
    assert!(
        text.contains("crisiswatch_rule_events_late_total{rule=\"flood\"} 25"),
        "{text}"
    );
    assert!(
        text.contains("crisiswatch_rule_events_selected_total{rule=\"flood\"} 90"),
        "{text}"
    );
}
