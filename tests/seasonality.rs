//! Seasonal baselines (issue 11, item 4): a surge with `seasonality = "1d"`
//! compares its window with the same time of earlier days, so a strong daily
//! rhythm (quiet nights, a steep morning ramp) does not page, while the same
//! surge against a trailing baseline pages every morning. A real surge is
//! still caught, and with a lower threshold than a trailing rule can afford —
//! earlier. The profile is checkpointed: an engine restored from a snapshot
//! taken mid-stream emits exactly what an uninterrupted one does.

use std::collections::HashMap;

use crisiswatch::backtest::labels::Crisis;
use crisiswatch::backtest::report::SummaryOptions;
use crisiswatch::backtest::{self};
use crisiswatch::config::Config;
use crisiswatch::engine::Engine;

/// 2026-11-01T00:00:00Z.
const S: i64 = 1_793_491_200_000;
const MIN: i64 = 60_000;
const DAY: i64 = 1440 * MIN;
const DAYS: i64 = 9;
/// The surge: day 8, 13:00–14:30, +6 complaints a minute on router-x (×3).
const SURGE: (i64, i64) = (8 * DAY + 13 * 60 * MIN, 8 * DAY + 14 * 60 * MIN + 30 * MIN);

/// Complaints a minute at minute `m` of the day: 0.2 at night, 3 in the
/// day, a one-hour ramp at 07:00 and 20:00.
fn rhythm(m: i64) -> f64 {
    let h = m as f64 / 60.0;
    match h {
        h if h < 7.0 => 0.2,
        h if h < 8.0 => 0.2 + 2.8 * (h - 7.0),
        h if h < 20.0 => 3.0,
        h if h < 21.0 => 3.0 - 2.8 * (h - 20.0),
        _ => 0.2,
    }
}

/// Poisson-ish arrivals (deterministic): `DAYS` days of complaints for two
/// products, with the surge when `surge`.
fn stream(seed: u64, surge: bool) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut lines = Vec::new();
    let mut id = 0u64;
    for (p, product) in ["router-x", "tv-max"].into_iter().enumerate() {
        let mut t = S as f64;
        let end = (S + DAYS * DAY) as f64;
        loop {
            let rel = t as i64 - S;
            let mut rate = rhythm(rel.rem_euclid(DAY) / MIN) * (1.0 + 0.3 * p as f64);
            if surge && p == 0 && rel >= SURGE.0 && rel < SURGE.1 {
                rate += 6.0;
            }
            // Exponential gap at the current rate (per ms).
            t += -(1.0 - uniform()).ln() / (rate / MIN as f64);
            if t >= end {
                break;
            }
            id += 1;
            lines.push((
                t as i64,
                format!(
                    r#"{{"id":"c{id}","type":"complaint","ts":{},"attrs":{{"product":"{product}"}}}}"#,
                    t as i64
                ),
            ));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l.into_bytes()).collect()
}

/// A trailing surge and a seasonal one, at the given thresholds.
fn config(trailing: f64, seasonal: f64) -> Config {
    let text = format!(
        r#"
[engine]
max_clock_jump = "0"
[[rules]]
name = "trailing"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = {{ kind = "surge", select = {{ type = "complaint" }}, baseline = "3h", min_baseline = 15 }}
thresholds = {{ warning = {trailing} }}
for = "3m"
[[rules]]
name = "seasonal"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = {{ kind = "surge", select = {{ type = "complaint" }}, baseline = "3d", seasonality = "1d", min_baseline = 15 }}
thresholds = {{ warning = {seasonal} }}
for = "3m"
"#
    );
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap()
}

fn crisis() -> Crisis {
    Crisis {
        name: "surge".into(),
        kind: "complaint_surge".into(),
        slice: vec![("product".into(), "router-x".into())],
        start_ms: S + SURGE.0,
        end_ms: S + SURGE.1,
    }
}

/// (incidents, false incidents, missed, median delay) per rule.
fn figures(cfg: &Config, lines: &[Vec<u8>]) -> HashMap<String, (usize, usize, usize, Option<i64>)> {
    let opts = SummaryOptions {
        labels: Some(vec![crisis()]),
        ..SummaryOptions::default()
    };
    let r = backtest::run_lines(cfg, lines.iter().map(|l| l.as_slice()), &opts).unwrap();
    r.rules
        .iter()
        .map(|s| {
            let t = s.truth.as_ref().unwrap();
            (
                s.rule.clone(),
                (
                    s.incidents,
                    t.false_incidents,
                    t.missed,
                    t.delay.map(|d| d.median_ms),
                ),
            )
        })
        .collect()
}

#[test]
fn a_daily_rhythm_pages_against_a_trailing_baseline_but_not_a_seasonal_one() {
    let lines = stream(11, true);
    let f = figures(&config(2.0, 2.0), &lines);
    let (incidents, false_inc, missed, seasonal_delay) = f["seasonal"];
    assert_eq!((false_inc, missed), (0, 0), "seasonal: {:?}", f["seasonal"]);
    assert!(incidents >= 1);
    let seasonal_delay = seasonal_delay.unwrap();
    assert!(
        seasonal_delay <= 30 * MIN,
        "caught within 30 minutes: {seasonal_delay} ms"
    );
    // The same threshold against the trailing 3 hours pages on the morning
    // ramps: at least one false incident a day after the first.
    let (_, trailing_false, _, _) = f["trailing"];
    assert!(
        trailing_false >= (DAYS - 1) as usize,
        "trailing: {:?}",
        f["trailing"]
    );
    // A trailing threshold high enough not to page on the rhythm misses the
    // surge or catches it later than the seasonal rule.
    let mut quiet = None;
    for threshold in [3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0] {
        let (_, false_inc, missed, delay) = figures(&config(threshold, 2.0), &lines)["trailing"];
        if false_inc == 0 {
            quiet = Some((threshold, missed, delay));
            break;
        }
    }
    let (threshold, missed, delay) = quiet.expect("some trailing threshold does not page");
    eprintln!(
        "seasonal at 2.0: {:?}; trailing at 2.0: {:?}; trailing quiet from {threshold}: missed {missed}, delay {delay:?}",
        f["seasonal"], f["trailing"]
    );
    assert!(threshold > 2.0);
    assert!(
        missed == 1 || delay.is_some_and(|d| d > seasonal_delay),
        "trailing at {threshold}: missed {missed}, delay {delay:?}; seasonal {seasonal_delay}"
    );
}

#[test]
fn without_a_surge_the_seasonal_rule_stays_quiet_on_another_seed() {
    let lines = stream(29, false);
    let opts = SummaryOptions::default();
    let r =
        backtest::run_lines(&config(2.0, 2.0), lines.iter().map(|l| l.as_slice()), &opts).unwrap();
    let n = |name: &str| r.rules.iter().find(|s| s.rule == name).unwrap().incidents;
    assert_eq!(n("seasonal"), 0, "{r}");
    assert!(n("trailing") >= (DAYS - 1) as usize, "{r}");
}

#[test]
fn the_profile_is_checkpointed_with_the_engine() {
    // Restored mid-stream (day 5, 09:00), the engine emits exactly what the
    // uninterrupted one emits after that point.
    let lines = stream(11, true);
    let cfg = config(2.0, 2.0);
    let cut = lines
        .iter()
        .position(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["ts"].as_i64().unwrap() > S + 5 * DAY + 9 * 60 * MIN
        })
        .unwrap();
    let run = |engine: &mut Engine, part: &[Vec<u8>]| {
        let mut out = Vec::new();
        for l in part {
            let _ = engine.process_bytes(l, None, &mut out);
        }
        out.iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect::<Vec<_>>()
    };
    let mut whole = Engine::new(&cfg).unwrap();
    run(&mut whole, &lines[..cut]);
    let after_whole = run(&mut whole, &lines[cut..]);
    let mut first = Engine::new(&cfg).unwrap();
    run(&mut first, &lines[..cut]);
    let snap = first.snapshot().unwrap();
    let mut restored = Engine::new(&cfg).unwrap();
    restored.restore(&snap).unwrap();
    let after_restored = run(&mut restored, &lines[cut..]);
    assert_eq!(after_restored, after_whole);
    assert!(
        after_whole.iter().any(|t| t.contains("\"seasonal\"")),
        "the seasonal rule fires after the cut (the surge on day 8)"
    );
}

#[test]
fn a_seasonality_that_does_not_fit_is_refused_with_its_field() {
    let bad = |season: &str, baseline: &str| {
        let toml = format!(
            r#"
[[rules]]
name = "s"
window = "30m"
slide = "1m"
indicator = {{ kind = "surge", select = {{ type = "complaint" }}, baseline = "{baseline}", seasonality = "{season}" }}
thresholds = {{ warning = 2 }}
"#
        );
        match Config::from_toml_str(&toml, &HashMap::<String, String>::new()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    assert_eq!(bad("1d", "7d"), "");
    assert!(
        bad("1d 10m", "7d").contains("seasonality"),
        "{}",
        bad("1d 10m", "7d")
    );
    assert!(
        bad("100d", "100d").contains("2016"),
        "{}",
        bad("100d", "100d")
    );
    assert!(
        bad("1d", "36h").contains("indicator.baseline"),
        "{}",
        bad("1d", "36h")
    );
}
