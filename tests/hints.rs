//! Root-cause hints end to end: a generated crisis whose extra complaints are
//! mostly `category=product_quality` on the social channel gets hints naming
//! both (with their lift) in its transitions and in the generic and PagerDuty
//! bodies a real HTTP receiver gets; a slice that surges with its usual mix,
//! and a quiet slice whose usual mix is the crisis mix, get none.

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::{State, Transition};
use crisiswatch::engine::Engine;
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use incidents_support::*;
use prometheus::Registry;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const T0: i64 = 1_795_132_800_000; // 2026-11-20T00:00:00Z
const MIN: i64 = 60_000;
/// The crisis (router-x) and the plain surge (tv-q) start at 12:00 and last an hour.
const CRISIS: i64 = T0 + 12 * 60 * MIN;

/// A category and a channel drawn from a mix: (share of product_quality,
/// share of social).
fn draw(rng: &mut impl Rng, pq: f64, social: f64) -> (&'static str, &'static str) {
    let cat = if rng.gen_bool(pq) {
        "product_quality"
    } else if rng.gen_bool(0.5) {
        "billing"
    } else {
        "delivery"
    };
    let ch = if rng.gen_bool(social) {
        "social"
    } else if rng.gen_bool(0.6) {
        "web"
    } else {
        "phone"
    };
    (cat, ch)
}

/// Fourteen hours of complaints, one a minute per product: router-x and
/// tv-q with the usual mix (21 % product_quality, 24 % social), phone-z
/// always with the crisis-like mix (78 %, 51 %). From 12:00 to 13:00
/// router-x gets three extra complaints a minute, 90 % product_quality and
/// 75 % social; tv-q three extra with its usual mix.
fn stream(seed: u64) -> Vec<(i64, String)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut push = |rng: &mut rand_chacha::ChaCha8Rng, t: i64, product: &str, mix: (f64, f64)| {
        let ts = t + rng.gen_range(0..MIN);
        let (cat, ch) = draw(rng, mix.0, mix.1);
        n += 1;
        out.push((
            ts,
            format!(
                r#"{{"id":"e{n}","type":"complaint","ts":{ts},"attrs":{{"product":"{product}","region":"eu-west","category":"{cat}","channel":"{ch}"}}}}"#
            ),
        ));
    };
    for m in 0..14 * 60 {
        let t = T0 + m * MIN;
        push(&mut rng, t, "router-x", (0.21, 0.24));
        push(&mut rng, t, "tv-q", (0.21, 0.24));
        push(&mut rng, t, "phone-z", (0.78, 0.51));
        if (CRISIS..CRISIS + 60 * MIN).contains(&t) {
            for _ in 0..3 {
                push(&mut rng, t, "router-x", (0.9, 0.75));
                push(&mut rng, t, "tv-q", (0.21, 0.24));
            }
        }
    }
    out.sort_by_key(|(ts, _)| *ts);
    out
}

fn config_text(generic: &str, pagerduty: &str, key_file: &std::path::Path) -> String {
    format!(
        r#"
[incidents]
update_interval = "20m"
[[incidents.routes]]
name = "slice"
group_by = ["product"]
group_window = "1m"

[[rules]]
name = "complaint_surge"
group_by = ["product"]
window = "1h"
slide = "5m"
indicator = {{ kind = "surge", select = {{ type = "complaint" }}, baseline = "6h", method = "ratio", min_baseline = 10 }}
thresholds = {{ warning = 2.0 }}
clear = 1.3
explain = ["category", "channel"]

[[receivers]]
name = "hook"
kind = "generic"
url = "{generic}"
delivery = {{ backoff_initial = "1s" }}

[[receivers]]
name = "pd"
kind = "pagerduty"
url = "{pagerduty}"
routing_key_file = "{}"
"#,
        key_file.display()
    )
}

fn hint_names(hints: &[crisiswatch::explain::Hint]) -> Vec<String> {
    hints
        .iter()
        .map(|h| format!("{}={}", h.attribute, h.value))
        .collect()
}

fn labels(product: &str) -> Vec<(String, String)> {
    vec![("product".to_string(), product.to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quality_crisis_on_social_is_explained_in_transitions_and_bodies() {
    let rx = Receiver::start().await;
    let pd = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, "R0UT1NGKEY0000000000000000000000\n").unwrap();
    let cfg = config(&config_text(&rx.url(), &pd.url(), &key_file));
    let mut engine = Engine::new(&cfg).unwrap();
    let reg = Registry::new();
    let m = IncidentManager::open(
        &cfg,
        &reg,
        &dir.path().join("data"),
        ManagerOptions::default(),
    )
    .unwrap();

    let mut all: Vec<Transition> = Vec::new();
    let mut out: Vec<Transition> = Vec::new();
    let mut next_tick = T0;
    for (ts, line) in stream(7) {
        if ts >= next_tick {
            // Progress updates read the engine's current values and hints.
            m.tick(ts, &mut engine).unwrap();
            next_tick = ts + MIN;
        }
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
        if !out.is_empty() {
            m.submit(&out, engine.clock().unwrap()).unwrap();
            all.append(&mut out);
        }
        if (CRISIS + 50 * MIN..CRISIS + 51 * MIN).contains(&ts) {
            // The quiet slice with the crisis-like mix, mid-crisis: no hints.
            assert_eq!(
                engine.hints("complaint_surge", &labels("phone-z")),
                Some(Vec::new()),
                "phone-z's mix is its usual one"
            );
        }
    }
    // The end of the stream: everything resolves.
    let end = T0 + 20 * 60 * MIN;
    engine.advance_clock(end, &mut out);
    m.submit(&out, end).unwrap();
    all.append(&mut out);

    // Transitions: router-x fires with both hints, tv-q fires with none,
    // phone-z never alerts.
    let fired = |p: &str| {
        all.iter()
            .find(|t| t.state == State::Firing && t.group == labels(p))
            .cloned()
    };
    let x = fired("router-x").expect("the crisis fires");
    assert!(x.at >= CRISIS && x.at < CRISIS + 60 * MIN, "{}", x.at);
    assert_eq!(
        hint_names(&x.hints),
        ["category=product_quality", "channel=social"],
        "{:?}",
        x.hints
    );
    for h in &x.hints {
        assert!(h.lift >= 1.8, "{h:?}");
        assert!(h.share > 0.4 && h.baseline_share < 0.3, "{h:?}");
        assert!(h.score >= 10.83, "{h:?}");
    }
    let line = serde_json::to_value(&x).unwrap();
    assert_eq!(line["hints"][0]["attribute"], "category");
    assert_eq!(line["hints"][0]["value"], "product_quality");
    assert!(line["hints"][0]["lift"].as_f64().unwrap() >= 1.8);
    let tv = fired("tv-q").expect("the plain surge fires too");
    assert!(tv.hints.is_empty(), "usual mix, no hints: {:?}", tv.hints);
    assert!(
        !all.iter().any(|t| t.group == labels("phone-z")),
        "the quiet slice never alerts"
    );
    assert!(
        all.iter()
            .filter(|t| t.state == State::Resolved)
            .all(|t| t.hints.is_empty()),
        "a resolve carries no hints"
    );

    // The generic body: the open of router-x names both values with their
    // lift, in `hints`, in the alert's evidence and in the summary; tv-q's
    // open carries an empty list.
    let docs = |r: &Receiver| -> Vec<Value> { r.requests().iter().map(|q| q.json()).collect() };
    rx.wait_until(Duration::from_secs(30), "both resolves", |r| {
        r.iter().filter(|q| q.json()["action"] == "resolve").count() >= 2
    })
    .await;
    pd.wait_until(Duration::from_secs(30), "both resolves", |r| {
        r.iter()
            .filter(|q| q.json()["event_action"] == "resolve")
            .count()
            >= 2
    })
    .await;
    m.shutdown(Duration::from_secs(5)).await;
    let generic = docs(&rx);
    let open_of = |p: &str| {
        generic
            .iter()
            .find(|d| d["action"] == "open" && d["group"]["product"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("no open for {p}"))
    };
    let open = open_of("router-x");
    let hints = open["hints"].as_array().unwrap();
    let names: Vec<String> = hints
        .iter()
        .map(|h| {
            format!(
                "{}={}",
                h["attribute"].as_str().unwrap(),
                h["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        ["category=product_quality", "channel=social"],
        "{open}"
    );
    assert!(hints.iter().all(|h| h["lift"].as_f64().unwrap() >= 1.8));
    assert_eq!(open["alerts"][0]["hints"], open["hints"]);
    let summary = open["summary"].as_str().unwrap();
    eprintln!("open of router-x: {summary}");
    assert!(
        summary.contains("Over-represented: category=product_quality ")
            && summary.contains("(usually ")
            && summary.contains("channel=social "),
        "{summary}"
    );
    assert_eq!(open_of("tv-q")["hints"], Value::Array(Vec::new()));
    // A progress update of the crisis carries the hints of its time.
    let progress = generic
        .iter()
        .find(|d| d["reason"] == "progress" && d["group"]["product"] == "router-x")
        .expect("a progress update during the crisis");
    assert!(
        progress["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["value"] == "product_quality"),
        "{progress}"
    );

    // PagerDuty: the summary line and `custom_details.hints`.
    let pds = docs(&pd);
    let trigger = pds
        .iter()
        .find(|d| {
            d["event_action"] == "trigger"
                && d["payload"]["custom_details"]["labels"]["product"] == "router-x"
        })
        .expect("a trigger for router-x");
    let details = &trigger["payload"]["custom_details"];
    let texts: Vec<&str> = details["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].starts_with("category=product_quality ") && texts[0].contains("(usually "));
    assert!(texts[1].starts_with("channel=social "), "{texts:?}");
    assert!(trigger["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("category=product_quality"));
    assert_eq!(
        details["alerts"][0]["hints"][0]["value"], "product_quality",
        "the evidence carries them too"
    );

    // The reviews: from the outbox (a row each time the hints changed) and
    // from a backtest of the same history (a section per transition).
    let cfg_path = dir.path().join("crisiswatch.toml");
    std::fs::write(&cfg_path, config_text(&rx.url(), &pd.url(), &key_file)).unwrap();
    let history = dir.path().join("history.jsonl");
    let text: String = stream(7).into_iter().map(|(_, l)| l + "\n").collect();
    std::fs::write(&history, text).unwrap();
    let review = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crisiswatch"))
            .args(["review", "--config", cfg_path.to_str().unwrap()])
            .args(args)
            .args(["--now", "2026-12-30T00:00:00Z"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let data = dir.path().join("data");
    let md = review(&["--outbox", data.to_str().unwrap(), "--incident", "router-x"]);
    let row = md
        .lines()
        .find(|l| l.starts_with("| Root-cause hints ("))
        .unwrap_or_else(|| panic!("no hints row in\n{md}"));
    assert!(
        row.contains("category=product_quality ") && row.contains("channel=social "),
        "{row}"
    );
    let md = review(&[
        "--input",
        history.to_str().unwrap(),
        "--incident",
        "product=router-x",
    ]);
    let section = md
        .split("## Root-cause hints")
        .nth(1)
        .unwrap_or_else(|| panic!("no hints section in\n{md}"));
    assert!(
        section.contains("(firing): category=product_quality "),
        "{section}"
    );
    assert!(!md.contains("product=tv-q"), "one incident: {md}");
}

#[test]
fn explain_is_validated_with_key_paths() {
    let text = |explain: &str, extra: &str| {
        format!(
            r#"
[[rules]]
name = "r"
group_by = ["product"]
window = "1h"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5 }}
explain = {explain}
{extra}
"#
        )
    };
    let errors = |t: String| match crisiswatch::config::Config::from_toml_str(
        &t,
        &std::collections::HashMap::new(),
    ) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    assert_eq!(errors(text(r#"["category", "channel"]"#, "")), "");
    let e = errors(text(r#"["product", "category", "category", ""]"#, ""));
    for path in [
        "rules[0].explain[0]",
        "rules[0].explain[2]",
        "rules[0].explain[3]",
    ] {
        assert!(e.contains(path), "{path} in {e}");
    }
    let e = errors(text(r#"["category"]"#, r#"explain_baseline = "30m""#));
    assert!(e.contains("rules[0].explain_baseline"), "{e}");
    let e = errors(text("[]", r#"explain_baseline = "6h""#));
    assert!(e.contains("only with `explain`"), "{e}");
    let e = errors(text(r#"["a","b","c","d","e","f","g","h","i"]"#, ""));
    assert!(e.contains("at most 8"), "{e}");
    let e = errors(text(r#"["category"]"#, r#"explain_values = 3"#));
    assert!(e.contains("explain_values"), "unknown keys are errors: {e}");
}

/// The demo's generated day through the shipped configuration: the quality
/// surge (router-x in eu-west, product_quality and safety complaints) and the
/// social spike (phone-z on the social channel) are each explained by what
/// was injected.
#[test]
fn the_demo_crises_are_explained_by_what_was_injected() {
    use crisiswatch::config::{Config, EXAMPLE_CONFIG};
    use crisiswatch::generator::{Generator, GeneratorSettings};
    const DAY: i64 = 24 * 60 * MIN;
    for seed in [42, 7] {
        let mut gen = Generator::new(GeneratorSettings {
            seed,
            start_ms: T0,
            duration_ms: DAY,
            orders_per_minute: 300.0,
            crises: true,
            noise: true,
            shape: crisiswatch::generator::TrafficShape::default(),
        });
        let mut lines = Vec::new();
        gen.generate_until(T0 + DAY, &mut lines);
        let input: Vec<u8> = lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect();
        let cfg = Config::from_toml_str(
            EXAMPLE_CONFIG,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let mut engine = Engine::new(&cfg).unwrap();
        let mut fired: Vec<Transition> = Vec::new();
        let mut out = Vec::new();
        crisiswatch::replay::replay(
            &mut engine,
            std::io::Cursor::new(input),
            &mut out,
            Some(T0 + DAY),
            |t| {
                if t.state == State::Firing {
                    fired.push(t.clone());
                }
            },
        )
        .unwrap();
        let hints_of = |rule: &str, product: &str| -> Vec<String> {
            let t = fired
                .iter()
                .find(|t| t.rule == rule && t.group[0].1 == product)
                .unwrap_or_else(|| panic!("seed {seed}: {rule} did not fire on {product}"));
            hint_names(&t.hints)
        };
        let quality = hints_of("complaint_surge", "router-x");
        for want in ["category=product_quality", "region=eu-west"] {
            assert!(
                quality.contains(&want.to_string()),
                "seed {seed}: {quality:?}"
            );
        }
        let social = hints_of("complaint_surge", "phone-z");
        assert_eq!(
            social.first().map(String::as_str),
            Some("channel=social"),
            "seed {seed}"
        );
        // What a rule selects on is never a hint of its own: every social_spike
        // event is social, so its hints name other attributes.
        assert!(hints_of("social_spike", "phone-z")
            .iter()
            .all(|h| !h.starts_with("channel=")));
        // Every hint meets the support and lift minimums.
        for t in &fired {
            for h in &t.hints {
                assert!(h.lift >= 1.5 && h.count >= 5, "seed {seed}: {h:?}");
            }
        }
    }
}
