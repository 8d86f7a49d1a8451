use std::collections::HashMap;

use crate::config::Config;
use crate::engine::Engine;
use crate::replay::OrderedFeed;

const CFG: &str = r#"
[[rules]]
name = "c"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3 }
for = "2m"
keep_firing_for = "1m"
[[rules]]
name = "d"
window = "10m"
slide = "1m"
indicator = { kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }
thresholds = { warning = 1 }
[[rules]]
name = "s"
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6m", min_baseline = 1 }
thresholds = { warning = 2.5 }
"#;

fn lines() -> Vec<String> {
    let t0 = 1_795_132_800_000i64;
    (0..400)
        .map(|i| {
            let burst = (150..230).contains(&i);
            let ts = t0 + i * if burst { 5_000 } else { 20_000 } + (i % 7) * 900;
            format!(
                r#"{{"id":"e{}","type":"complaint","ts":{ts},"customer_id":"c{}","attrs":{{"product":"p{}"}}}}"#,
                i % 397,
                i % 13,
                i % 3
            )
        })
        .collect()
}

fn run(cut: Option<usize>, cfg: &Config) -> Vec<String> {
    run_lines(cut, cfg, &lines(), 3)
}

fn run_lines(cut: Option<usize>, cfg: &Config, all: &[String], rules: usize) -> Vec<String> {
    let mut engine = Engine::new(cfg).unwrap();
    let mut feed = OrderedFeed::new(&mut engine);
    let mut out = Vec::new();
    for (i, l) in all.iter().enumerate() {
        if Some(i) == cut {
            // Restart: a new engine from the snapshot (the feed's held
            // events are what the live service re-reads from Kafka).
            let bytes = engine.snapshot().unwrap();
            let mut fresh = Engine::new(cfg).unwrap();
            fresh.set_sequenced(true);
            let summary = fresh.restore(&bytes).unwrap();
            assert_eq!(summary.rules_restored.len(), rules);
            assert_eq!(fresh.snapshot().unwrap(), bytes, "restore is exact");
            engine = fresh;
        }
        feed.push(&mut engine, l.as_bytes(), None, &mut out)
            .unwrap();
    }
    feed.finish(&mut engine, &mut out);
    out.iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect()
}

#[test]
fn a_restored_engine_continues_exactly() {
    let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).unwrap();
    let whole = run(None, &cfg);
    assert!(whole.iter().any(|l| l.contains("\"firing\"")));
    assert!(whole.iter().any(|l| l.contains("\"resolved\"")));
    for cut in [1, 57, 160, 199, 231, 399] {
        assert_eq!(run(Some(cut), &cfg), whole, "cut at {cut}");
    }
}

#[test]
fn root_cause_counts_survive_a_restore() {
    let cfg = Config::from_toml_str(
        r#"
[[rules]]
name = "s"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "1h", min_baseline = 5 }
thresholds = { warning = 2.0 }
explain = ["channel"]
"#,
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    // Three hours of two complaints a minute (a quarter social), then
    // twenty minutes of six a minute, mostly social.
    let t0 = 1_795_132_800_000i64;
    let mut all = Vec::new();
    for m in 0..200i64 {
        let k = if m >= 180 { 6 } else { 2 };
        for j in 0..k {
            let social = if m >= 180 { j != 0 } else { (m + j) % 4 == 0 };
            let channel = if social { "social" } else { "web" };
            all.push(format!(
                r#"{{"id":"e{m}-{j}","type":"complaint","ts":{},"attrs":{{"product":"p","channel":"{channel}"}}}}"#,
                t0 + m * 60_000 + j * 7_000
            ));
        }
    }
    let whole = run_lines(None, &cfg, &all, 1);
    assert!(
        whole
            .iter()
            .any(|l| l.contains(r#""hints":[{"attribute":"channel","value":"social""#)),
        "{whole:?}"
    );
    for cut in [100, 361, 370, 390] {
        assert_eq!(run_lines(Some(cut), &cfg, &all, 1), whole, "cut at {cut}");
    }
}

/// An engine of `CFG` after the first 200 lines, and its snapshot.
fn after_200_lines() -> (Engine, Vec<u8>) {
    let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    for l in lines().iter().take(200) {
        engine.process_bytes(l.as_bytes(), None, &mut out).unwrap();
    }
    let bytes = engine.snapshot().unwrap();
    (engine, bytes)
}

#[test]
fn a_changed_rule_starts_empty_and_the_others_keep_their_state() {
    let (engine, bytes) = after_200_lines();
    let changed = CFG.replace(
        "group_by = [\"product\"]\nwindow = \"10m\"",
        "group_by = [\"product\"]\nwindow = \"20m\"",
    );
    assert_ne!(changed, CFG);
    let cfg2 = Config::from_toml_str(&changed, &HashMap::<String, String>::new()).unwrap();
    let mut e2 = Engine::new(&cfg2).unwrap();
    let s = e2.restore(&bytes).unwrap();
    assert_eq!(s.rules_dropped, vec!["c".to_string()]);
    assert_eq!(s.rules_restored, vec!["d".to_string(), "s".to_string()]);
    assert_eq!(e2.live_groups(0), 0);
    assert_eq!(e2.live_groups(1), engine.live_groups(1));
    assert!(e2.restore(b"garbage").is_err());
    // Only retuned (its thresholds): it keeps its state.
    let retuned = CFG.replace(
        "thresholds = { warning = 3 }",
        "thresholds = { warning = 4 }",
    );
    let cfg3 = Config::from_toml_str(&retuned, &HashMap::<String, String>::new()).unwrap();
    let mut e3 = Engine::new(&cfg3).unwrap();
    let s = e3.restore(&bytes).unwrap();
    assert!(s.rules_dropped.is_empty());
    assert_eq!(s.rules_retuned, vec!["c".to_string()]);
    assert_eq!(e3.live_groups(0), engine.live_groups(0));
}

#[test]
fn a_rule_whose_runbook_changed_keeps_its_state() {
    let (engine, bytes) = after_200_lines();
    let edited = CFG.replace(
        "thresholds = { warning = 3 }",
        "thresholds = { warning = 3 }\nrunbook = \"https://wiki.example/runbooks/c\"\ndescription = \"edited\"",
    );
    assert_ne!(edited, CFG);
    let cfg2 = Config::from_toml_str(&edited, &HashMap::<String, String>::new()).unwrap();
    let mut e2 = Engine::new(&cfg2).unwrap();
    let s = e2.restore(&bytes).unwrap();
    assert!(s.rules_dropped.is_empty(), "{:?}", s.rules_dropped);
    assert_eq!(e2.live_groups(0), engine.live_groups(0));
}
