//! A stretch in which the whole stream is silent — a business closed for a
//! day, a feed outage of hours — is not history: when traffic comes back at
//! its usual level, the shipped surge rules must not page (they did: the
//! silent panes counted as zeros in every slice's baseline, so ordinary
//! traffic looked like a surge; a field trial saw 3–13 false incidents after
//! a one-day gap and 5 after a 7-hour outage). Real crises after the gap
//! still fire (`a_crisis_after_a_silent_day_still_fires`).

use crisiswatch::config::{Config, EXAMPLE_CONFIG};
use crisiswatch::engine::Engine;
use crisiswatch::generator::{Generator, GeneratorSettings, TrafficShape};
use crisiswatch::replay::replay;
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;
const HOUR: i64 = 3600 * 1000;
/// 2026-11-23T00:00:00Z, a Monday.
const START: i64 = 1_795_392_000_000;

fn config() -> Config {
    Config::from_toml_str(EXAMPLE_CONFIG, &std::collections::HashMap::new()).expect("config")
}

/// A generated stretch of `hours` from `start`, ids prefixed with `tag`
/// (two generators number their events alike).
fn stretch(seed: u64, start: i64, hours: i64, crises: bool, tag: &str) -> Vec<String> {
    let mut gen = Generator::new(GeneratorSettings {
        seed,
        start_ms: start,
        duration_ms: hours * HOUR,
        orders_per_minute: 300.0,
        crises,
        noise: true,
        shape: TrafficShape::default(),
    });
    let mut lines = Vec::new();
    gen.generate_until(start + hours * HOUR, &mut lines);
    lines
        .into_iter()
        .map(|l| {
            String::from_utf8(l).expect("utf-8").replacen(
                "\"id\":\"",
                &format!("\"id\":\"{tag}"),
                1,
            )
        })
        .collect()
}

/// Firing transitions (rule, group, at) of a replay of `lines`.
fn firings(lines: &[String]) -> Vec<(String, String, String)> {
    firings_with(&config(), lines)
}

/// The time of a generated line (RFC 3339 text or epoch milliseconds;
/// `i64::MIN` for the generator's noise that is not JSON).
fn ts_of(l: &str) -> i64 {
    serde_json::from_str::<Value>(l)
        .ok()
        .and_then(|v| match &v["ts"] {
            Value::String(t) => chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.timestamp_millis()),
            t => t.as_i64(),
        })
        .unwrap_or(i64::MIN)
}

/// Firing transitions of a replay of `lines` under `cfg`.
fn firings_with(cfg: &Config, lines: &[String]) -> Vec<(String, String, String)> {
    let mut engine = Engine::new(cfg).expect("engine");
    let text = lines.join("\n") + "\n";
    let mut out = Vec::new();
    replay(&mut engine, text.as_bytes(), &mut out, None, |_| {}).expect("replay");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).expect("transition"))
        .filter(|t| t["state"] == "firing")
        .map(|t| {
            (
                t["rule"].as_str().unwrap_or_default().to_string(),
                t["group"].to_string(),
                t["at"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_silent_day_between_two_ordinary_days_pages_nothing() {
    let first = stretch(3, START, 24, false, "a");
    let second = stretch(4, START + 2 * DAY_MS, 24, false, "b");
    // Each day alone: the example configuration's quiet on ordinary traffic.
    let alone: Vec<_> = [firings(&first), firings(&second)].concat();
    let mut both = first.clone();
    both.extend(second.iter().cloned());
    let together = firings(&both);
    assert!(
        together.len() <= alone.len(),
        "the silent day paged {} times more: {:?}\n(each day alone: {alone:?})",
        together.len() - alone.len(),
        together
    );
}

#[test]
fn a_seven_hour_outage_pages_nothing_when_traffic_resumes() {
    let day = stretch(5, START, 24, false, "a");
    let (from, to) = (START + 10 * HOUR, START + 17 * HOUR);
    // The generator's noise that is not JSON is kept.
    let outage: Vec<String> = day
        .iter()
        .filter(|l| !(from..to).contains(&ts_of(l)))
        .cloned()
        .collect();
    assert!(
        outage.len() < day.len() * 9 / 10,
        "the outage removed traffic"
    );
    let whole = firings(&day);
    let with_outage = firings(&outage);
    // The surge rules (a backlog of complaints unanswered past their SLA
    // builds whenever traffic starts, on each generated day too).
    let surges: Vec<String> = EXAMPLE_CONFIG
        .split("[[rules]]")
        .filter(|r| r.contains("kind = \"surge\""))
        .filter_map(|r| r.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"').to_string())
        .collect();
    assert!(surges.len() >= 3, "{surges:?}");
    let new: Vec<_> = with_outage
        .iter()
        .filter(|f| surges.contains(&f.0) && !whole.contains(f))
        .collect();
    assert!(
        new.is_empty(),
        "pages the outage caused: {new:?}\n(the whole day's: {whole:?})"
    );
}

#[test]
fn a_crisis_after_a_silent_day_still_fires() {
    // The generator's crises start hours into its day: after a silent day
    // and a day of ordinary traffic, the day with crises pages them.
    let first = stretch(6, START, 24, false, "a");
    let second = stretch(7, START + 2 * DAY_MS, 24, true, "b");
    let alone = firings(&second);
    assert!(!alone.is_empty(), "the crises fire on their own day");
    let mut both = first;
    both.extend(second);
    let together = firings(&both);
    let alone_rules: std::collections::BTreeSet<_> = alone
        .iter()
        .map(|(r, g, _)| (r.clone(), g.clone()))
        .collect();
    let together_rules: std::collections::BTreeSet<_> = together
        .iter()
        .map(|(r, g, _)| (r.clone(), g.clone()))
        .collect();
    // Every slice that fired on its own day fires after the silent one too,
    // except surges that needed the day's history (none here: the day
    // before brings it).
    let missed: Vec<_> = alone_rules.difference(&together_rules).collect();
    assert!(missed.is_empty(), "missed after the silent day: {missed:?}");
}

/// A shop open 09:00–21:00 with no traffic at all at night: the 6-hour
/// baseline of the morning is the closed night, so with the silence counted
/// as zeros `complaint_surge` paged every product every morning (field
/// trial of 2026-12-07); left out, it pages nothing.
#[test]
fn a_shop_closed_at_night_pages_nothing_in_the_morning() {
    let mut days = Vec::new();
    for d in 0..2 {
        let day = stretch(
            8 + d as u64,
            START + d * DAY_MS,
            24,
            false,
            &format!("d{d}"),
        );
        let (open, close) = (
            START + d * DAY_MS + 9 * HOUR,
            START + d * DAY_MS + 21 * HOUR,
        );
        days.extend(day.into_iter().filter(|l| {
            let t = ts_of(l);
            t == i64::MIN || (open..close).contains(&t)
        }));
    }
    let surge = |f: &(String, String, String)| f.0 == "complaint_surge";
    let now: Vec<_> = firings(&days).into_iter().filter(surge).collect();
    assert!(now.is_empty(), "{now:?}");
    // Counted as zeros, as before: the second morning pages.
    let zeros = Config::from_toml_str(
        &EXAMPLE_CONFIG.replacen("silence_after = \"6h\"", "silence_after = \"0s\"", 1),
        &std::collections::HashMap::new(),
    )
    .expect("config");
    let before: Vec<_> = firings_with(&zeros, &days)
        .into_iter()
        .filter(surge)
        .collect();
    assert!(!before.is_empty(), "the closed night paged before");
}
