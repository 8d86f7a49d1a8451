//! Golden replay: a seeded simulated day with three known crises, replayed
//! through the shipped example configuration.
//!
//! Asserts, for every injected crisis, the expected incidents open inside the
//! crisis interval and resolve after it; that nothing fires on the quiet slices;
//! and that replaying the same input twice gives byte-identical output.

use std::collections::HashMap;
use std::io::Cursor;

use crisiswatch::alert::State;
use crisiswatch::config::{Config, EXAMPLE_CONFIG};
use crisiswatch::engine::Engine;
use crisiswatch::generator::{Crisis, Generator, GeneratorSettings};
use crisiswatch::replay::replay;
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;
const HOUR: i64 = 3600 * 1000;
/// 2026-11-20T00:00:00Z
const START: i64 = 1_795_132_800_000;

fn day(seed: u64) -> (Vec<u8>, Vec<Crisis>) {
    let mut gen = Generator::new(GeneratorSettings {
        seed,
        start_ms: START,
        duration_ms: DAY_MS,
        orders_per_minute: 300.0,
        crises: true,
        noise: true,
        shape: crisiswatch::generator::TrafficShape::default(),
    });
    let mut lines = Vec::new();
    gen.generate_until(START + DAY_MS, &mut lines);
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(&l);
        buf.push(b'\n');
    }
    (buf, gen.crises().to_vec())
}

fn run(input: &[u8]) -> (Vec<u8>, crisiswatch::replay::ReplaySummary) {
    let cfg = Config::from_toml_str(EXAMPLE_CONFIG, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    let summary = replay(
        &mut engine,
        Cursor::new(input),
        &mut out,
        Some(START + DAY_MS),
        |_| {},
    )
    .unwrap();
    (out, summary)
}

fn matches(group: &serde_json::Map<String, Value>, c: &Crisis) -> bool {
    let mut shared = 0;
    for (k, v) in group {
        if let Some((_, cv)) = c.slice.iter().find(|(ck, _)| ck == k) {
            if Some(cv.as_str()) != v.as_str() {
                return false;
            }
            shared += 1;
        }
    }
    shared > 0
}

fn ms(v: &Value) -> i64 {
    crisiswatch::event::parse_rfc3339_ms(v.as_str().unwrap()).unwrap()
}

#[test]
fn crises_fire_in_their_interval_and_nowhere_else() {
    for seed in [42, 7] {
        let (input, crises) = day(seed);
        let (out, summary) = run(&input);
        assert!(summary.stats.applied > 300_000, "{summary}");
        assert!(summary.stats.invalid_total() > 0, "noise lines are counted");
        assert!(summary.stats.duplicates > 0, "redeliveries are dropped");
        let transitions: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let firing: Vec<&Value> = transitions
            .iter()
            .filter(|t| t["state"] == "firing")
            .collect();
        // Every firing belongs to a crisis: right slice, inside [start, end + 1h].
        for f in &firing {
            let at = ms(&f["at"]);
            let group = f["group"].as_object().unwrap();
            let ok = crises
                .iter()
                .any(|c| matches(group, c) && at >= c.start_ms && at <= c.end_ms + HOUR);
            assert!(ok, "seed {seed}: false incident {f}");
        }
        // Every crisis is caught by the rules written for it, early.
        // (crisis, rule, max detection delay in minutes). Shares over a 1 h window
        // need about half the window to cross; surges are faster. The shipped
        // rules judge 95 % confidence bounds, 99 % for complaint_rate and
        // detractor_share (seeds 42 and 7 measured: quality surge 21/22 min by
        // complaint_rate, 18/16 by severe_share, 27/25 by complaint_surge,
        // 40/27 by at_risk_customers — a share of repeat complainers needs
        // their second complaints —, 54/45 by detractor_share, 55/50 by
        // nps_drop (the slice's NPS falls from about 40 to about -17); social
        // spike 9/9 by social_spike; churn wave 70/89 by churn_surge).
        // The support team answers the crises' complaints 40 min–4 h late:
        // response_backlog (more than 10 complaints past the 1-hour SLA,
        // counted at 10-minute boundaries) fires 70/70 min into the quality
        // surge and 70/70 into the social spike.
        let expect: &[(&str, &str, i64)] = &[
            ("quality_surge", "complaint_surge", 30),
            ("quality_surge", "complaint_rate", 30),
            ("quality_surge", "severe_share", 20),
            ("quality_surge", "at_risk_customers", 45),
            ("quality_surge", "detractor_share", 75),
            ("quality_surge", "nps_drop", 75),
            ("social_spike", "social_spike", 15),
            ("social_spike", "complaint_surge", 30),
            ("churn_wave", "churn_surge", 100),
            ("quality_surge", "response_backlog", 80),
            ("social_spike", "response_backlog", 80),
        ];
        for (name, rule, max_delay_min) in expect {
            let c = crises.iter().find(|c| c.name == *name).unwrap();
            let hit = firing
                .iter()
                .filter(|f| f["rule"] == *rule && matches(f["group"].as_object().unwrap(), c))
                .map(|f| ms(&f["at"]))
                .min();
            let at = hit.unwrap_or_else(|| panic!("seed {seed}: {rule} did not fire for {name}"));
            let delay = (at - c.start_ms) / 60_000;
            assert!(
                (0..=*max_delay_min).contains(&delay),
                "seed {seed}: {rule} fired {delay} min into {name}"
            );
        }
        // Every incident resolves after its crisis ends (all crises end by 21:00).
        for f in &firing {
            let key = &f["dedup_key"];
            let resolved = transitions
                .iter()
                .find(|t| t["dedup_key"] == *key && t["state"] == State::Resolved.as_str())
                .unwrap_or_else(|| panic!("seed {seed}: {key} never resolved"));
            let c = crises
                .iter()
                .find(|c| matches(f["group"].as_object().unwrap(), c))
                .unwrap();
            assert!(
                ms(&resolved["at"]) >= c.end_ms - HOUR,
                "{resolved} resolved too early"
            );
        }
        // The quality surge in router-x/eu-west is the one the contract example describes.
        let cr = firing
            .iter()
            .find(|f| f["rule"] == "complaint_rate")
            .unwrap();
        assert_eq!(cr["group"]["product"], "router-x");
        assert_eq!(cr["group"]["region"], "eu-west");
        // The value is the Wilson lower bound (confidence 0.95), above the warning.
        assert!(cr["value"].as_f64().unwrap() > 0.05);
        assert!(cr["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("complaint_rate/product=router-x,region=eu-west/"));
    }
}

#[test]
fn replay_is_byte_identical() {
    let (input, _) = day(3);
    let (a, sa) = run(&input);
    let (b, sb) = run(&input);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}
