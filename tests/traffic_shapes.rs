//! The shipped example configuration on other shapes of traffic (issue 11,
//! item 6): generated days with the three playbook crises, for traffic whose
//! volume, social share, category mix, rates, products, regions and weekly
//! rhythm differ from the demo's. No rule may fire outside a crisis (its
//! slice and interval, plus one hour to clear), and the quality surge and the
//! social spike must be caught by some rule on their slice within 30 minutes
//! of their start. The churn wave is held to 100 minutes where it is held at
//! all: its extra cancellations come 40 % at once and 60 % 2–55 minutes after
//! a complaint, so at the demo's volume the vip slice has about 4 extra
//! cancellations against 0.8 expected by minute 27 of the wave, and a
//! 30-minute window must hold 8 for chance to reach that count less than
//! once in 1,000 days per slice: about one wave in six gets there in time,
//! whatever the form of the rule (README, "Why not in 30 minutes below ten
//! times the volume", and `scripts/churn-wave-odds.py`). The shipped churn
//! rules (`churn_surge`, `churn_surge_2h`: cancellations against the slice's
//! own last 24 hours, thresholds from `scripts/churn-surge-odds.py`) catch it
//! in 70–90 minutes at the demo's volume and in 25–46 at three to ten times
//! the volume or a 1–3 % cancellation rate; nothing is excused, a stream
//! whose normal cancellation rate is 3 % of orders included.
//!
//! `a_few_shapes` runs in the default suite; `shape_matrix` (ignored: about a
//! minute per shape in a debug build, longer for ×10 volume) runs the whole
//! matrix over three seeds and prints a table:
//! `cargo test --test traffic_shapes -- --ignored --nocapture`.
//! `CRISISWATCH_SHAPES_CONFIG=A.toml,B.toml` runs the matrix on other
//! configurations (each replays the same generated streams),
//! `CRISISWATCH_SHAPES=demo,x3` restricts it to some shapes and
//! `CRISISWATCH_SHAPES_SEEDS=1,2` to some seeds. In a release build the
//! matrix takes a few minutes: `cargo test --release --test traffic_shapes
//! -- --ignored --nocapture`.
//!
//! `false_pages_over_a_month` (ignored, about a minute per shape in a release
//! build) replays 30 generated days of a few shapes **without** crises and
//! prints the false incidents per rule; each rule must stay within one per
//! 30 days (`CRISISWATCH_FALSE_DAYS` sets the days).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};

use crisiswatch::config::{Config, EXAMPLE_CONFIG};
use crisiswatch::engine::Engine;
use crisiswatch::generator::{Crisis, Generator, GeneratorSettings, TrafficShape};
use crisiswatch::replay::replay;
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;
const HOUR: i64 = 3600 * 1000;
/// 2026-11-20T00:00:00Z, a Friday (so a two-day run covers a weekend day).
const START: i64 = 1_795_132_800_000;
/// The target: every crisis caught this soon after it starts.
const MAX_DELAY_MIN: i64 = 30;

/// One generated traffic shape.
struct Shape {
    name: &'static str,
    shape: TrafficShape,
    days: i64,
}

/// What one shape gave under one configuration.
#[derive(Debug)]
struct Outcome {
    /// Crises caught within [`MAX_DELAY_MIN`], of those injected.
    caught: usize,
    crises: usize,
    /// Detection delay per crisis, minutes, and the first rule (`None`: missed).
    delays: Vec<(String, Option<(i64, String)>)>,
    /// Firing transitions outside every crisis.
    false_incidents: Vec<String>,
}

/// The churn wave's allowance, minutes (see the module comment).
const CHURN_DELAY_MIN: i64 = 100;

impl Outcome {
    /// No false incident, and the quality surge and social spike caught in
    /// 30 minutes.
    fn ok(&self) -> bool {
        self.false_incidents.is_empty()
            && self.delays.iter().all(|(c, d)| {
                c == "churn_wave" || d.as_ref().is_some_and(|(d, _)| *d <= MAX_DELAY_MIN)
            })
    }

    /// No false incident, and the quality surge and social spike caught
    /// (at any delay): what the whole matrix asserts.
    fn holds(&self) -> bool {
        self.false_incidents.is_empty()
            && self
                .delays
                .iter()
                .all(|(c, d)| c == "churn_wave" || d.is_some())
    }

    /// [`Outcome::ok`], and the churn wave caught within [`CHURN_DELAY_MIN`].
    fn ok_with_churn(&self) -> bool {
        self.ok()
            && self.delays.iter().all(|(c, d)| {
                c != "churn_wave" || d.as_ref().is_some_and(|(d, _)| *d <= CHURN_DELAY_MIN)
            })
    }
}

/// Streams a generator's lines (newline-terminated) without holding the
/// whole period in memory.
struct GenRead {
    gen: Generator,
    at: i64,
    end: i64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for GenRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.at >= self.end {
                return Ok(0);
            }
            self.at += 10 * 60_000;
            let mut lines = Vec::new();
            self.gen.generate_until(self.at.min(self.end), &mut lines);
            self.buf.clear();
            self.pos = 0;
            for l in lines {
                self.buf.extend_from_slice(&l);
                self.buf.push(b'\n');
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn generator(seed: u64, s: &Shape) -> Generator {
    Generator::new(GeneratorSettings {
        seed,
        start_ms: START,
        duration_ms: s.days * DAY_MS,
        orders_per_minute: 300.0,
        crises: true,
        noise: true,
        shape: s.shape.clone(),
    })
}

fn run_shape(seed: u64, s: &Shape, cfg: &Config) -> Outcome {
    let gen = generator(seed, s);
    let crises = gen.crises().to_vec();
    let end = START + s.days * DAY_MS;
    let input = BufReader::new(GenRead {
        gen,
        at: START,
        end,
        buf: Vec::new(),
        pos: 0,
    });
    let mut engine = Engine::new(cfg).unwrap();
    let mut out = Vec::new();
    replay(&mut engine, input, &mut out, Some(end), |_| {}).unwrap();
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
            false_incidents.push(format!(
                "{} {} at {} (value {})",
                f["rule"], f["group"], f["at"], f["value"]
            ));
        }
    }
    if std::env::var("CRISISWATCH_SHAPES_VERBOSE").is_ok() {
        for c in &crises {
            let mut per_rule = BTreeMap::<String, i64>::new();
            for f in &firing {
                let at = ms(&f["at"]);
                if matches(f["group"].as_object().unwrap(), c) && at >= c.start_ms && at <= c.end_ms
                {
                    let r = f["rule"].as_str().unwrap_or("?").to_string();
                    let d = (at - c.start_ms) / 60_000;
                    per_rule
                        .entry(r)
                        .and_modify(|x| *x = (*x).min(d))
                        .or_insert(d);
                }
            }
            eprintln!("  {}: {per_rule:?}", c.name);
        }
    }
    let delays: Vec<(String, Option<(i64, String)>)> = crises
        .iter()
        .map(|c| {
            let first = firing
                .iter()
                .filter(|f| matches(f["group"].as_object().unwrap(), c))
                .map(|f| (ms(&f["at"]), f["rule"].as_str().unwrap_or("?").to_string()))
                .filter(|(at, _)| *at >= c.start_ms && *at <= c.end_ms)
                .min();
            (
                c.name.to_string(),
                first.map(|(at, rule)| ((at - c.start_ms) / 60_000, rule)),
            )
        })
        .collect();
    Outcome {
        caught: delays
            .iter()
            .filter(|(_, d)| d.as_ref().is_some_and(|(d, _)| *d <= MAX_DELAY_MIN))
            .count(),
        crises: crises.len(),
        delays,
        false_incidents,
    }
}

/// Whether a firing group is the crisis's slice: every label the group shares
/// with the crisis slice agrees, and it shares at least one.
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
fn shapes() -> Vec<Shape> {
    let d = TrafficShape::default;
    let one = |name, shape| Shape {
        name,
        shape,
        days: 1,
    };
    vec![
        one("demo", d()),
        one("volume x0.1", TrafficShape { volume: 0.1, ..d() }),
        one("volume x0.3", TrafficShape { volume: 0.3, ..d() }),
        one(
            "volume x0.1, social 25%, severe 40%",
            TrafficShape {
                volume: 0.1,
                social_share: 0.25,
                severe_share: 0.4,
                ..d()
            },
        ),
        one("volume x3", TrafficShape { volume: 3.0, ..d() }),
        one(
            "volume x10",
            TrafficShape {
                volume: 10.0,
                ..d()
            },
        ),
        one(
            "social 2%",
            TrafficShape {
                social_share: 0.02,
                ..d()
            },
        ),
        one(
            "social 25%",
            TrafficShape {
                social_share: 0.25,
                ..d()
            },
        ),
        one(
            "social 30%, volume x10",
            TrafficShape {
                social_share: 0.3,
                volume: 10.0,
                ..d()
            },
        ),
        one(
            "severe 10%",
            TrafficShape {
                severe_share: 0.1,
                ..d()
            },
        ),
        one(
            "severe 40%",
            TrafficShape {
                severe_share: 0.4,
                ..d()
            },
        ),
        one(
            "feedback 4%, cancel 1%",
            TrafficShape {
                feedback_rate: 0.04,
                cancel_rate: 0.01,
                ..d()
            },
        ),
        one(
            "feedback 30%, cancel 0.1%",
            TrafficShape {
                feedback_rate: 0.3,
                cancel_rate: 0.001,
                ..d()
            },
        ),
        one(
            "cancel 3%",
            TrafficShape {
                cancel_rate: 0.03,
                ..d()
            },
        ),
        one(
            "2 products, 3 regions",
            TrafficShape {
                products: 2,
                regions: 3,
                ..d()
            },
        ),
        Shape {
            name: "weekend x0.4, 2 days",
            shape: TrafficShape {
                weekend_factor: 0.4,
                ..d()
            },
            days: 2,
        },
        Shape {
            name: "weekend x2.5, 2 days",
            shape: TrafficShape {
                weekend_factor: 2.5,
                ..d()
            },
            days: 2,
        },
    ]
}

fn row(name: &str, seed: u64, o: &Outcome) -> String {
    let delays: Vec<String> = o
        .delays
        .iter()
        .map(|(c, d)| match d {
            Some((d, rule)) => format!("{c} {d}m ({rule})"),
            None => format!("{c} missed"),
        })
        .collect();
    let mut by_rule = BTreeMap::<String, usize>::new();
    for f in &o.false_incidents {
        let rule = f.split(' ').next().unwrap_or("?").trim_matches('"');
        *by_rule.entry(rule.to_string()).or_default() += 1;
    }
    let falses: Vec<String> = by_rule.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(
        "| {name} | {seed} | {}/{} | {} | {} |",
        o.caught,
        o.crises,
        delays.join(", "),
        if falses.is_empty() {
            "0".to_string()
        } else {
            falses.join(", ")
        }
    )
}

fn shipped() -> Config {
    Config::from_toml_str(EXAMPLE_CONFIG, &HashMap::<String, String>::new()).unwrap()
}

/// The configurations to run: `CRISISWATCH_SHAPES_CONFIG=A.toml,B.toml`, or
/// the shipped one.
fn configs() -> Vec<(String, Config)> {
    match std::env::var("CRISISWATCH_SHAPES_CONFIG") {
        Ok(paths) => paths
            .split(',')
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let cfg = Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap();
                (p.to_string(), cfg)
            })
            .collect(),
        Err(_) => vec![("config/crisiswatch.toml".to_string(), shipped())],
    }
}

/// `CRISISWATCH_SHAPES=demo,x3`: only shapes whose name contains one of these.
fn only_shapes() -> Option<Vec<String>> {
    std::env::var("CRISISWATCH_SHAPES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect())
}

/// `CRISISWATCH_SHAPES_SEEDS=1,2`, or `default`.
fn seeds(default: &[u64]) -> Vec<u64> {
    std::env::var("CRISISWATCH_SHAPES_SEEDS")
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or_else(|_| default.to_vec())
}

/// Shapes in the default suite: the demo's, three times its volume, a
/// consumer brand's social share, other feedback and cancellation rates, and
/// a normal cancellation rate of 3 % of orders (where an absolute churn rate
/// would page all day); each must also catch the churn wave within
/// [`CHURN_DELAY_MIN`].
#[test]
fn a_few_shapes() {
    let wanted = [
        "demo",
        "volume x3",
        "social 25%",
        "feedback 4%, cancel 1%",
        "cancel 3%",
    ];
    let cfg = shipped();
    let mut ran = 0;
    for s in shapes().iter().filter(|s| wanted.contains(&s.name)) {
        assert!(s.shape.problems().is_empty(), "{}", s.name);
        let o = run_shape(42, s, &cfg);
        assert_eq!(o.crises, 3, "{}", s.name);
        assert!(
            o.ok_with_churn(),
            "{}: {:?}",
            row(s.name, 42, &o),
            o.false_incidents
        );
        ran += 1;
    }
    assert_eq!(ran, wanted.len());
}

/// A tenth of the demo's volume: no false incident, and the quality surge and
/// the social spike caught (in up to an hour: fewer events, the same
/// confidence). Also with other channel and category mixes. The churn wave is
/// not held here: its slice expects about one cancellation in three hours and
/// the wave adds about one an hour, too few to tell from chance for a rule
/// that does not page on chance elsewhere (README, "Why not in 30 minutes
/// below ten times the volume").
#[test]
fn a_tenth_of_the_volume() {
    let cfg = shipped();
    let all = shapes();
    for (name, seed) in [
        ("volume x0.1", 42),
        ("volume x0.1", 1234),
        ("volume x0.1, social 25%, severe 40%", 42),
    ] {
        let s = all.iter().find(|s| s.name == name).unwrap();
        assert!(s.shape.problems().is_empty(), "{name}");
        let o = run_shape(seed, s, &cfg);
        let r = row(name, seed, &o);
        assert_eq!(o.crises, 3, "{r}");
        assert!(o.holds(), "{r}: {:?}", o.false_incidents);
    }
}

/// The whole matrix: every shape and seed must have no false incident and
/// catch the quality surge and the social spike; the delays are reported, with how many rows meet the 30-minute
/// target (at a tenth and three tenths of the demo's volume the quality surge
/// can take up to an hour: fewer events, the same confidence).
#[test]
#[ignore = "the whole matrix: about a minute per shape and seed in a debug build"]
fn shape_matrix() {
    let configs = configs();
    let only = only_shapes();
    let seeds = seeds(&[42, 7, 1234]);
    let mut failures = Vec::new();
    let (mut rows, mut on_target) = (0, 0);
    for (path, cfg) in &configs {
        println!("\n{path}\n");
        println!(
            "| shape | seed | crises caught ≤ {MAX_DELAY_MIN} min | delay (first rule) | false incidents |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for s in shapes() {
            if only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|n| s.name.contains(n.as_str())))
            {
                continue;
            }
            for &seed in &seeds {
                let o = run_shape(seed, &s, cfg);
                println!("{}", row(s.name, seed, &o));
                for f in &o.false_incidents {
                    eprintln!("  false: {f}");
                }
                rows += 1;
                on_target += usize::from(o.ok());
                if !o.holds() {
                    failures.push(format!("{path}: {}", row(s.name, seed, &o)));
                }
            }
        }
    }
    println!(
        "\n{on_target} of {rows} rows: no false incident, quality surge and social spike within {MAX_DELAY_MIN} min"
    );
    assert!(failures.is_empty(), "shapes that fail: {failures:#?}");
}

/// Days of one long run without crises (`CRISISWATCH_FALSE_DAYS`).
const LONG_DAYS: i64 = 30;

/// False pages over a month: `LONG_DAYS` generated days of one shape as one
/// stream, **without** crises, so every firing transition is false; printed
/// per rule. Each rule must stay within the budget (the one `suggest`
/// works to): one false incident per 30 days in every row; the matrix's days
/// are too few to see rates of that order. Default shapes: the demo's, three tenths and three times
/// its volume, a 3 % cancellation rate, and quiet weekends (×0.4, four weekends
/// a month: the small slices where a guarded rule is weakest).
/// `CRISISWATCH_SHAPES`, `CRISISWATCH_SHAPES_SEEDS` and
/// `CRISISWATCH_SHAPES_CONFIG` as for the matrix.
#[test]
#[ignore = "a generated month per shape: about a minute per shape in a release build"]
fn false_pages_over_a_month() {
    let days: i64 = std::env::var("CRISISWATCH_FALSE_DAYS")
        .map(|d| d.parse().unwrap())
        .unwrap_or(LONG_DAYS);
    let wanted = [
        "demo",
        "volume x0.3",
        "volume x3",
        "cancel 3%",
        "weekend x0.4, 2 days",
    ];
    let only = only_shapes();
    let seeds = seeds(&[42]);
    let mut over = Vec::new();
    for (path, cfg) in &configs() {
        let rules: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
        println!("\n{path}: false incidents per rule in {days} days without crises\n");
        println!("| shape | seed | {} |", rules.join(" | "));
        println!("|{}", " --- |".repeat(rules.len() + 2));
        let mut total = BTreeMap::<&str, usize>::new();
        for s in shapes() {
            let keep = match &only {
                Some(o) => o.iter().any(|n| s.name.contains(n.as_str())),
                None => wanted.contains(&s.name),
            };
            if !keep {
                continue;
            }
            let name = s.name.trim_end_matches(", 2 days");
            let s = Shape { days, ..s };
            for &seed in &seeds {
                let gen = Generator::new(GeneratorSettings {
                    seed,
                    start_ms: START,
                    duration_ms: days * DAY_MS,
                    orders_per_minute: 300.0,
                    crises: false,
                    noise: true,
                    shape: s.shape.clone(),
                });
                assert!(gen.crises().is_empty());
                let end = START + days * DAY_MS;
                let input = BufReader::new(GenRead {
                    gen,
                    at: START,
                    end,
                    buf: Vec::new(),
                    pos: 0,
                });
                let mut engine = Engine::new(cfg).unwrap();
                let mut out = Vec::new();
                replay(&mut engine, input, &mut out, Some(end), |_| {}).unwrap();
                let mut per_rule = BTreeMap::<String, usize>::new();
                for l in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let t: Value = serde_json::from_slice(l).unwrap();
                    if t["state"] == "firing" {
                        let rule = t["rule"].as_str().unwrap().to_string();
                        eprintln!(
                            "  {name} {seed} false: {rule} {} at {} (value {})",
                            t["group"], t["at"], t["value"]
                        );
                        *per_rule.entry(rule).or_default() += 1;
                    }
                }
                let cells: Vec<String> = rules
                    .iter()
                    .map(|r| {
                        let n = per_rule.get(*r).copied().unwrap_or(0);
                        *total.entry(r).or_default() += n;
                        if n as i64 * LONG_DAYS > days {
                            over.push(format!("{path}: {name}, seed {seed}: {r} {n}"));
                        }
                        n.to_string()
                    })
                    .collect();
                println!("| {name} | {seed} | {} |", cells.join(" | "));
            }
        }
        let cells: Vec<String> = rules
            .iter()
            .map(|r| total.get(r).copied().unwrap_or(0).to_string())
            .collect();
        println!("| all | | {} |", cells.join(" | "));
    }
    assert!(
        over.is_empty(),
        "more than one false incident per rule per {LONG_DAYS} days: {over:#?}"
    );
}
