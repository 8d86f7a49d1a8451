//! A surge group's own history: a slice first seen mid-stream (a product
//! launched, a new market) warms up as the rule did at the start, instead of
//! being judged against a baseline of zeros; so does one back after a
//! silence longer than its window and baseline. Checkpoints keep it.

use std::collections::HashMap;

use super::*;
use crate::config::Config;
use crate::event::{decode, DecodeLimits};

const MIN: i64 = 60_000;

/// A 10-minute surge over the hour before it, floored at 2 events.
fn engine() -> Engine {
    let text = r#"
[engine]
allowed_lateness = "0s"

[[rules]]
name = "surge"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "1h", min_baseline = 2 }
thresholds = { warning = 3.0 }
"#;
    let cfg = Config::from_toml_str(text, &HashMap::<String, String>::new()).unwrap();
    Engine::new(&cfg).unwrap()
}

fn complaint(e: &mut Engine, id: &str, ts: i64, product: &str, out: &mut Vec<Transition>) {
    let line = format!(
        r#"{{"id":"{id}","type":"complaint","ts":{ts},"attrs":{{"product":"{product}"}}}}"#
    );
    let ev = decode(line.as_bytes(), &DecodeLimits::default(), None).unwrap();
    e.process(&ev, out);
}

/// Feeds `products` one complaint a minute each (two a minute: ten per
/// window, five times the floor) from minute `from` to `to`.
fn steady(e: &mut Engine, products: &[&str], from: i64, to: i64, out: &mut Vec<Transition>) {
    for m in from..to {
        for p in products {
            for k in 0..2 {
                let ts = m * MIN + k * 20_000 + 1;
                complaint(e, &format!("{p}-{m}-{k}"), ts, p, out);
            }
        }
    }
}

fn value_of(e: &Engine, product: &str) -> Option<f64> {
    e.groups(0)
        .into_iter()
        .find(|g| g.group.iter().any(|(_, v)| v == product))
        .and_then(|g| g.value)
}

#[test]
fn a_slice_launched_mid_stream_warms_up_instead_of_paging() {
    let mut e = engine();
    let mut out = Vec::new();
    // An established product for three hours, then a new one at the same
    // ordinary rate beside it.
    steady(&mut e, &["old"], 0, 180, &mut out);
    steady(&mut e, &["old", "new"], 180, 195, &mut out);
    // Its first window and a half: no history of its own yet, no value (it
    // was 20 ÷ 2 = 10 against a baseline of zeros, and paged).
    assert_eq!(value_of(&e, "new"), None);
    steady(&mut e, &["old", "new"], 195, 260, &mut out);
    // Once its own history holds a window, it is judged on it: ordinary.
    let v = value_of(&e, "new").expect("a value once warmed up");
    assert!((0.5..=1.5).contains(&v), "{v}");
    assert!(out.is_empty(), "{out:?}");
    // A real surge on it still pages.
    for k in 0..60 {
        complaint(
            &mut e,
            &format!("burst-{k}"),
            260 * MIN + k * 1_000 + 1,
            "new",
            &mut out,
        );
    }
    assert!(
        out.iter().any(|t| t.group.iter().any(|(_, v)| v == "new")),
        "{out:?}"
    );
}

#[test]
fn a_slice_back_after_a_long_silence_starts_its_history_again() {
    let mut e = engine();
    let mut out = Vec::new();
    steady(&mut e, &["a", "b"], 0, 120, &mut out);
    // "b" stops for longer than its window and baseline (70 minutes), "a"
    // goes on; "b" comes back at its old rate.
    steady(&mut e, &["a"], 120, 200, &mut out);
    steady(&mut e, &["a", "b"], 200, 205, &mut out);
    assert_eq!(value_of(&e, "b"), None);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_checkpoint_keeps_a_slices_own_history() {
    let mut e = engine();
    let mut out = Vec::new();
    steady(&mut e, &["old"], 0, 180, &mut out);
    steady(&mut e, &["old", "new"], 180, 200, &mut out);
    let mut restored = engine();
    restored.restore(&e.snapshot().unwrap()).unwrap();
    let mut out2 = Vec::new();
    steady(&mut e, &["old", "new"], 200, 230, &mut out);
    steady(&mut restored, &["old", "new"], 200, 230, &mut out2);
    assert_eq!(value_of(&e, "new"), value_of(&restored, "new"));
    assert!(value_of(&e, "new").is_some());
    assert!(out.is_empty() && out2.is_empty(), "{out:?} {out2:?}");
}
