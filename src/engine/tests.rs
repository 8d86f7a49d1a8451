//! Unit tests of the engine: time semantics, lateness, dedup, caps, timers.

use std::collections::HashMap;

use super::*;
use crate::alert::State;
use crate::config::{Config, Severity};
use crate::engine::pane::boundary_time;
use crate::event::{decode, DecodeLimits};

const MIN: i64 = 60_000;
const SEC: i64 = 1_000;

fn engine(extra: &str) -> Engine {
    let text = format!(
        r#"
[engine]
allowed_lateness = "1m"
dedup_horizon = "10m"
max_groups_per_rule = 3
{extra}

[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 2, critical = 4 }}
clear = 1
"#
    );
    let cfg = Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap();
    Engine::new(&cfg).unwrap()
}

fn ev(id: &str, kind: &str, ts: i64, product: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"{kind}","ts":{ts},"attrs":{{"product":"{product}"}}}}"#)
        .into_bytes()
}

fn feed(e: &mut Engine, bytes: &[u8], out: &mut Vec<Transition>) -> Outcome {
    let ev = decode(bytes, &DecodeLimits::default(), None).unwrap();
    e.process(&ev, out)
}

#[test]
fn fires_on_the_event_that_crosses_and_resolves_when_quiet() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    for i in 0..3 {
        feed(
            &mut e,
            &ev(&format!("a{i}"), "complaint", t0 + i, "p"),
            &mut out,
        );
    }
    // The third complaint crosses "> 2": firing on that very event.
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].state, out[0].severity, out[0].at),
        (State::Firing, Severity::Warning, t0 + 2)
    );
    assert_eq!(out[0].sample_event_ids, vec!["a2".to_string()]);
    out.clear();
    // Two more → 5 > 4: escalated.
    feed(&mut e, &ev("a3", "complaint", t0 + 3, "p"), &mut out);
    feed(&mut e, &ev("a4", "complaint", t0 + 4, "p"), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].state, out[0].severity),
        (State::Escalated, Severity::Critical)
    );
    out.clear();
    // No more events for this product; time moves on through another product.
    // The window (10 min) empties and the alert resolves at the pane boundary.
    e.advance_clock(t0 + 30 * MIN, &mut out);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.state, State::Resolved);
    assert_eq!(r.value, Some(0.0));
    // Events at t0..t0+4 are in pane 101 (t0 is a boundary, so t0 itself is pane 100);
    // the window ending at pane 110 no longer holds pane 100 → count drops to 4 (> 1),
    // at pane 111 it is 0: resolved at the first instant of pane 111.
    assert_eq!(r.at, 110 * MIN + 1);
    assert_eq!(r.dedup_key, format!("complaints/product=p/{}", t0 + 2));
    // The group is forgotten once empty and inactive.
    assert_eq!(e.live_groups(0), 0);
}

#[test]
fn late_events_are_counted_and_dropped() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    assert_eq!(
        feed(&mut e, &ev("a", "complaint", t0, "p"), &mut out),
        Outcome::Applied
    );
    // watermark = t0 − 1m; late when ts ≤ watermark − 10m = t0 − 11m.
    assert_eq!(
        feed(&mut e, &ev("b", "complaint", t0 - 11 * MIN, "p"), &mut out),
        Outcome::Late
    );
    assert_eq!(
        feed(
            &mut e,
            &ev("c", "complaint", t0 - 11 * MIN + 1, "p"),
            &mut out
        ),
        Outcome::Applied
    );
    assert_eq!(e.stats().late, 1);
    assert_eq!(e.rule_stats(0).late, 1);
}

/// A window ends at a slide boundary: with the watermark mid-pane, an event
/// newer than `watermark − window` can still sit in a pane the window has
/// left. It would change nothing, so it is late, not applied.
#[test]
fn an_event_in_a_pane_the_window_has_left_is_late() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN + 30 * SEC;
    assert_eq!(
        feed(&mut e, &ev("a", "complaint", t0, "p"), &mut out),
        Outcome::Applied
    );
    // watermark 99m30s: the window (10 panes of 1m) ends at pane 100 and
    // holds panes 91–100; 89m45s (pane 90) is after watermark − 10m.
    assert_eq!(
        feed(
            &mut e,
            &ev("b", "complaint", 89 * MIN + 45 * SEC, "p"),
            &mut out
        ),
        Outcome::Late
    );
    // 90m0.001s is pane 91: in the window.
    assert_eq!(
        feed(&mut e, &ev("c", "complaint", 90 * MIN + 1, "p"), &mut out),
        Outcome::Applied
    );
    assert_eq!(e.rule_stats(0).late, 1);
}

#[test]
fn duplicates_within_the_horizon_count_once() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    assert_eq!(
        feed(&mut e, &ev("a", "complaint", t0, "p"), &mut out),
        Outcome::Applied
    );
    assert_eq!(
        feed(&mut e, &ev("a", "complaint", t0, "p"), &mut out),
        Outcome::Duplicate
    );
    assert_eq!(e.groups(0)[0].value, Some(1.0));
    // After the horizon the id may be reused.
    assert_eq!(
        feed(&mut e, &ev("a", "complaint", t0 + 11 * MIN, "p"), &mut out),
        Outcome::Applied
    );
    assert_eq!(e.stats().duplicates, 1);
}

#[test]
fn unmatched_and_group_overflow() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    assert_eq!(
        feed(&mut e, &ev("o", "order", t0, "p"), &mut out),
        Outcome::Unmatched
    );
    for (i, p) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(
            feed(&mut e, &ev(&format!("x{i}"), "complaint", t0, p), &mut out),
            Outcome::Applied
        );
    }
    assert_eq!(
        feed(&mut e, &ev("x9", "complaint", t0, "d"), &mut out),
        Outcome::Overflow
    );
    assert_eq!(e.rule_stats(0).group_overflow, 1);
    assert_eq!(e.live_groups(0), 3);
    // Existing groups still accept events.
    assert_eq!(
        feed(&mut e, &ev("y", "complaint", t0, "a"), &mut out),
        Outcome::Applied
    );
    // Once groups empty out, room frees up.
    e.advance_clock(t0 + 60 * MIN, &mut out);
    assert_eq!(e.live_groups(0), 0);
    assert_eq!(
        feed(&mut e, &ev("z", "complaint", t0 + 60 * MIN, "d"), &mut out),
        Outcome::Applied
    );
}

#[test]
fn missing_group_attribute_groups_under_empty_value() {
    let mut e = engine("");
    let mut out = Vec::new();
    let ev = decode(
        br#"{"id":"n","type":"complaint","ts":6000000}"#,
        &DecodeLimits::default(),
        None,
    )
    .unwrap();
    assert_eq!(e.process(&ev, &mut out), Outcome::Applied);
    assert_eq!(
        e.groups(0)[0].group,
        vec![("product".to_string(), String::new())]
    );
}

#[test]
fn apply_without_clock_holds_future_panes() {
    // Live mode: the clock is held back (slowest partition); events ahead of it
    // wait in future panes and count once the clock reaches them.
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    e.advance_clock(t0, &mut out);
    for i in 0..3 {
        let b = ev(&format!("f{i}"), "complaint", t0 + 5 * MIN, "p");
        let event = decode(&b, &DecodeLimits::default(), None).unwrap();
        assert_eq!(e.apply(&event, &mut out), Outcome::Applied);
    }
    assert!(out.is_empty(), "future events do not count yet");
    assert_eq!(e.current_values(0)[0].1, Some(0.0));
    e.advance_clock(t0 + 5 * MIN, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].state, State::Firing);
    assert_eq!(out[0].at, t0 + 4 * MIN + 1);
    // One group's value, found by its key, is the walk's; the firing alert
    // is among the active values (what scaled mode sends to incident owners).
    let all = e.current_values(0);
    let (group, value) = all[0].clone();
    assert_eq!(e.current_value(0, &group), value);
    assert!(value.is_some());
    assert_eq!(
        e.current_value(0, &[("product".into(), "other".into())]),
        None
    );
    let active = e.active_values();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!((active[0].group.clone(), active[0].value), (group, value));
}

#[test]
fn output_is_deterministic() {
    let run = || {
        let mut e = engine("");
        let mut out = Vec::new();
        let mut all = Vec::new();
        for i in 0..500i64 {
            let p = ["a", "b", "c"][(i * 7 % 3) as usize];
            let ts = 100 * MIN + (i * 37_000) % (50 * MIN) + i * 1000;
            feed(&mut e, &ev(&format!("e{i}"), "complaint", ts, p), &mut out);
            all.append(&mut out);
        }
        serde_json::to_string(&all).unwrap()
    };
    let a = run();
    assert!(a.len() > 100);
    assert_eq!(a, run());
}

#[test]
fn pane_arithmetic() {
    assert_eq!(pane_of(0, 1000), 0);
    assert_eq!(pane_of(1, 1000), 1);
    assert_eq!(pane_of(1000, 1000), 1);
    assert_eq!(pane_of(1001, 1000), 2);
    assert_eq!(pane_of(-1, 1000), 0);
    assert_eq!(pane_of(-1000, 1000), -1);
    assert_eq!(pane_of(-1001, 1000), -1);
    assert_eq!(boundary_time(2, 1000), 1001);
}

/// A rule's remembered pane gives what `pane_of` gives, at pane edges, going
/// back and forth, and at the ends of the time range.
#[test]
fn remembered_pane_is_pane_of() {
    let mut e = engine("");
    let rule = &mut e.rules[0];
    let s = rule.slide;
    let mut times = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0, 1, -1];
    for p in [-3, 0, 1, 2, 29_000_000] {
        for d in [-1, 0, 1] {
            times.push(p * s + d);
            times.push(p * s + d);
        }
    }
    times.extend([5 * s, 4 * s + 1, 5 * s + 1, 4 * s, i64::MAX, 3 * s]);
    for t in times {
        assert_eq!(rule.pane_at(t), pane_of(t, s), "t = {t}");
    }
}

#[test]
fn reconfigure_keeps_unchanged_rules_and_resets_changed_ones() {
    let base = r#"
[[rules]]
name = "keep"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }

[[rules]]
name = "change"
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 100 }
"#;
    let env = HashMap::<String, String>::new();
    let cfg = Config::from_toml_str(base, &env).unwrap();
    let mut e = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    for i in 0..3 {
        feed(
            &mut e,
            &ev(&format!("a{i}"), "complaint", t0 + i, "p"),
            &mut out,
        );
    }
    assert_eq!(out.len(), 1, "keep fired");
    out.clear();

    // "keep" gets a runbook: metadata only, so it keeps its state.
    let changed = base
        .replace(
            "thresholds = { warning = 2 }",
            "thresholds = { warning = 2 }\nrunbook = \"https://rb.example/keep\"",
        )
        .replace(
            "select = { type = \"complaint\" } }\nthresholds = { warning = 100 }",
            "select = { type = \"order\" } }\nthresholds = { warning = 100 }",
        )
        .replace(
        "[[rules]]\nname = \"change\"",
        "[[rules]]\nname = \"added\"\nwindow = \"5m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 0 }\n\n[[rules]]\nname = \"change\"",
    );
    let cfg2 = Config::from_toml_str(&changed, &env).unwrap();
    let summary = e.reconfigure(&cfg2).unwrap();
    assert_eq!(summary.kept, vec!["keep".to_string()]);
    assert_eq!(summary.added, vec!["added".to_string()]);
    assert_eq!(summary.changed, vec!["change".to_string()]);
    assert!(summary.removed.is_empty());
    assert_eq!(
        e.rule_config(0).runbook.as_deref(),
        Some("https://rb.example/keep")
    );
    // The kept rule still has its group and firing alert.
    let kept = e.groups(0);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].value, Some(3.0));
    assert!(matches!(kept[0].phase, Phase::Firing { .. }));
    // The changed rule starts empty.
    assert_eq!(e.live_groups(2), 0);
    // Time goes on: the kept alert resolves on schedule (its timers were kept).
    e.advance_clock(t0 + 30 * MIN, &mut out);
    assert!(
        out.iter()
            .any(|t| t.rule == "keep" && t.state == State::Resolved),
        "{out:?}"
    );

    // An invalid configuration changes nothing.
    let bad = changed.replace("window = \"5m\"", "window = \"0s\"");
    let before = e.rule_count();
    let bad_cfg: Config = toml::from_str(&bad).unwrap();
    assert!(e.reconfigure(&bad_cfg).is_err());
    assert_eq!(e.rule_count(), before);
}

/// A reload that changes only how a rule's alert judges its values
/// (thresholds, `clear`, `for`, `keep_firing_for`) keeps the rule's windows
/// and alerts: a firing alert stays open under its key (it resolved and
/// opened again under a new one), a higher severity escalates it at the next
/// evaluation, and thresholds above the value resolve it on its own key.
#[test]
fn a_reload_that_changes_only_thresholds_keeps_the_alert_and_its_key() {
    let base = r#"
[[rules]]
name = "r"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }
"#;
    let env = HashMap::<String, String>::new();
    let mut e = Engine::new(&Config::from_toml_str(base, &env).unwrap()).unwrap();
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    for i in 0..4 {
        feed(
            &mut e,
            &ev(&format!("a{i}"), "complaint", t0 + i, "p"),
            &mut out,
        );
    }
    assert_eq!(out.len(), 1);
    let key = out[0].dedup_key.clone();
    out.clear();
    let retuned = base.replace(
        "thresholds = { warning = 2 }",
        "thresholds = { warning = 1, critical = 4 }\nfor = \"0s\"",
    );
    let summary = e
        .reconfigure(&Config::from_toml_str(&retuned, &env).unwrap())
        .unwrap();
    assert_eq!(summary.kept, ["r"]);
    assert_eq!(summary.retuned, ["r"]);
    assert!(summary.changed.is_empty());
    assert!(out.is_empty(), "nothing resolves at the reload: {out:?}");
    assert!(matches!(e.groups(0)[0].phase, Phase::Firing { .. }));
    // One more complaint (5 > 4): critical, same key.
    feed(&mut e, &ev("a4", "complaint", t0 + 10, "p"), &mut out);
    assert!(
        out.iter().all(|t| t.dedup_key == key)
            && out.iter().any(|t| t.severity == Severity::Critical),
        "{out:?}"
    );
    out.clear();
    // Thresholds above the value: it resolves, on its own key.
    let high = base.replace(
        "thresholds = { warning = 2 }",
        "thresholds = { warning = 50 }",
    );
    let summary = e
        .reconfigure(&Config::from_toml_str(&high, &env).unwrap())
        .unwrap();
    assert_eq!(summary.retuned, ["r"]);
    feed(&mut e, &ev("a5", "complaint", t0 + 20, "p"), &mut out);
    assert!(
        out.iter()
            .any(|t| t.dedup_key == key && t.state == State::Resolved),
        "{out:?}"
    );
}

/// The firing alerts a restart hands to a new outbox: dated at the clock
/// (dated when they fired, one firing for days was owed a progress update
/// per interval since), with when they fired beside them, keys as emitted.
#[test]
fn firing_transitions_are_dated_at_the_clock_with_their_firing_time() {
    let mut e = engine("");
    let mut out = Vec::new();
    let t0 = 100 * MIN;
    for i in 0..3 {
        feed(
            &mut e,
            &ev(&format!("a{i}"), "complaint", t0 + i, "p"),
            &mut out,
        );
    }
    assert_eq!(out.len(), 1);
    let fired = out[0].clone();
    // More complaints keep it firing while the clock moves on.
    for i in 0..5 {
        let ts = t0 + 5 * MIN + i;
        feed(
            &mut e,
            &ev(&format!("b{i}"), "complaint", ts, "p"),
            &mut out,
        );
    }
    let clock = e.clock().unwrap();
    let got = e.firing_transitions();
    assert_eq!(got.len(), 1, "{got:?}");
    let (when, t) = &got[0];
    assert_eq!(*when, fired.at, "fired when the third complaint crossed");
    assert_eq!(t.at, clock);
    assert_eq!(t.dedup_key, fired.dedup_key);
    assert_eq!(t.started_at, fired.started_at);
    assert_eq!(t.state, State::Firing);
}
