//! The shipped example configuration on other shapes of traffic (issue 11,
//! item 6): a generated day with the three playbook crises, for traffic whose
//! volume, social share, category mix, rates, products, regions and weekly
//! rhythm differ from the demo's. For each shape: every crisis must be caught
//! by some rule on its slice in time (30 minutes; the churn wave, which the
//! shipped rules see through a 2-hour cancellation rate, 100 minutes, as in
//! `golden_replay.rs`), and no incident may open outside a crisis (its slice
//! and interval, plus one hour to clear). The table also shows the issue's
//! stricter target (every crisis within 30 minutes).
//!
//! `a_few_shapes` runs in the default suite; `shape_matrix` (ignored: about a
//! minute per shape in a debug build) runs the whole matrix over two seeds and
//! prints a table: `cargo test --test traffic_shapes -- --ignored --nocapture`
//! (`CRISISWATCH_SHAPES_CONFIG=FILE` runs the matrix on another configuration).

use std::collections::HashMap;
use std::io::Cursor;

use crisiswatch::config::{Config, EXAMPLE_CONFIG};
use crisiswatch::engine::Engine;
use crisiswatch::generator::{Crisis, Generator, GeneratorSettings, TrafficShape};
use crisiswatch::replay::replay;
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;
const HOUR: i64 = 3600 * 1000;
/// 2026-11-20T00:00:00Z, a Friday (so a two-day run would cover a weekend day).
const START: i64 = 1_795_132_800_000;
/// The target: every crisis caught this soon after it starts.
const MAX_DELAY_MIN: i64 = 30;

/// What the default-suite test asks of each crisis, minutes.
fn allowed_delay(crisis: &str) -> i64 {
    match crisis {
        "churn_wave" => 100,
        _ => MAX_DELAY_MIN,
    }
}

/// What one shape gave.
#[derive(Debug)]
struct Outcome {
    /// Crises caught within [`MAX_DELAY_MIN`], of those injected.
    caught: usize,
    /// Crises caught within [`allowed_delay`].
    caught_in_time: usize,
    crises: usize,
    /// Detection delay per crisis, minutes (`None`: missed).
    delays: Vec<(String, Option<i64>)>,
    /// Firing transitions outside every crisis.
    false_incidents: Vec<String>,
}

fn run_shape(seed: u64, shape: &TrafficShape) -> Outcome {
    let mut gen = Generator::new(GeneratorSettings {
        seed,
        start_ms: START,
        duration_ms: DAY_MS,
        orders_per_minute: 300.0,
        crises: true,
        noise: true,
        shape: shape.clone(),
    });
    let mut lines = Vec::new();
    gen.generate_until(START + DAY_MS, &mut lines);
    let crises = gen.crises().to_vec();
    let mut input = Vec::new();
    for l in lines {
        input.extend_from_slice(&l);
        input.push(b'\n');
    }
    // The shipped configuration, or another one to compare (the matrix only).
    let text = match std::env::var("CRISISWATCH_SHAPES_CONFIG") {
        Ok(path) => std::fs::read_to_string(path).unwrap(),
        Err(_) => EXAMPLE_CONFIG.to_string(),
    };
    let cfg = Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    replay(
        &mut engine,
        Cursor::new(input),
        &mut out,
        Some(START + DAY_MS),
        |_| {},
    )
    .unwrap();
    let firing: Vec<Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .filter(|t| t["state"] == "firing")
        .collect();
    let mut false_incidents = Vec::new();
    for f in &firing {
        let at = ms(&f["at"]);
        let group = f["group"].as_object().unwrap();
        let ok = crises
            .iter()
            .any(|c| matches(group, c) && at >= c.start_ms && at <= c.end_ms + HOUR);
        if !ok {
            false_incidents.push(format!("{} {} at {}", f["rule"], f["group"], f["at"]));
        }
    }
    let delays: Vec<(String, Option<i64>)> = crises
        .iter()
        .map(|c| {
            let first = firing
                .iter()
                .filter(|f| matches(f["group"].as_object().unwrap(), c))
                .map(|f| ms(&f["at"]))
                .filter(|&at| at >= c.start_ms)
                .min();
            (
                c.name.to_string(),
                first.map(|at| (at - c.start_ms) / 60_000),
            )
        })
        .collect();
    Outcome {
        caught_in_time: delays
            .iter()
            .filter(|(c, d)| d.is_some_and(|d| d <= allowed_delay(c)))
            .count(),
        caught: delays
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| d <= MAX_DELAY_MIN))
            .count(),
        crises: crises.len(),
        delays,
        false_incidents,
    }
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

/// Named shapes: the demo's and variations of one or two knobs.
fn shapes() -> Vec<(&'static str, TrafficShape)> {
    let d = TrafficShape::default;
    vec![
        ("demo", d()),
        ("volume x0.3", TrafficShape { volume: 0.3, ..d() }),
        ("volume x3", TrafficShape { volume: 3.0, ..d() }),
        (
            "social 25%",
            TrafficShape {
                social_share: 0.25,
                ..d()
            },
        ),
        (
            "social 2%",
            TrafficShape {
                social_share: 0.02,
                ..d()
            },
        ),
        (
            "severe 40%",
            TrafficShape {
                severe_share: 0.4,
                ..d()
            },
        ),
        (
            "feedback 4%, cancel 1%",
            TrafficShape {
                feedback_rate: 0.04,
                cancel_rate: 0.01,
                ..d()
            },
        ),
        (
            "2 products, 3 regions",
            TrafficShape {
                products: 2,
                regions: 3,
                ..d()
            },
        ),
        (
            "social 30%, volume x10",
            TrafficShape {
                social_share: 0.3,
                volume: 10.0,
                ..d()
            },
        ),
        ("volume x0.1", TrafficShape { volume: 0.1, ..d() }),
    ]
}

fn row(name: &str, seed: u64, o: &Outcome) -> String {
    let delays: Vec<String> = o
        .delays
        .iter()
        .map(|(c, d)| match d {
            Some(d) => format!("{c} {d}m"),
            None => format!("{c} missed"),
        })
        .collect();
    format!(
        "| {name} | {seed} | {}/{} | {} | {} |",
        o.caught,
        o.crises,
        delays.join(", "),
        o.false_incidents.len()
    )
}

#[test]
fn a_few_shapes() {
    // Shapes the shipped configuration holds on today; the matrix shows the
    // ones it does not (see the README).
    let wanted = ["demo", "social 2%", "severe 40%"];
    for (name, shape) in shapes().into_iter().filter(|(n, _)| wanted.contains(n)) {
        assert!(shape.problems().is_empty(), "{name}");
        let o = run_shape(42, &shape);
        assert_eq!(o.caught_in_time, o.crises, "{}", row(name, 42, &o));
        assert!(
            o.false_incidents.is_empty(),
            "{}: {:?}",
            row(name, 42, &o),
            o.false_incidents
        );
    }
}

#[test]
#[ignore = "the whole matrix: about a minute per shape and seed in a debug build"]
fn shape_matrix() {
    println!("| shape | seed | crises caught (≤ {MAX_DELAY_MIN} min) | delay | false incidents |");
    println!("| --- | --- | --- | --- | --- |");
    let mut failures = Vec::new();
    for (name, shape) in shapes() {
        for seed in [42, 7] {
            let o = run_shape(seed, &shape);
            println!("{}", row(name, seed, &o));
            for f in &o.false_incidents {
                println!("|   false: {f} | | | | |");
            }
            if o.caught_in_time != o.crises || !o.false_incidents.is_empty() {
                failures.push(row(name, seed, &o));
            }
        }
    }
    assert!(failures.is_empty(), "shapes that fail: {failures:#?}");
}
