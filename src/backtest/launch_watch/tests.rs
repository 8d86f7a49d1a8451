//! Tests of the launch watch: which surge incidents it names.

use std::collections::HashMap;

use super::*;
use crate::config::{Condition, Severity};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn config() -> Config {
    let toml = r#"
[[rules]]
name = "complaint_surge"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6h", method = "ratio", min_baseline = 3.0 }
thresholds = { warning = 3.0 }

[[rules]]
name = "seasonal"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "7d", seasonality = "1d" }
thresholds = { warning = 3.0 }

[[rules]]
name = "complaint_count"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 100.0 }
"#;
    Config::from_toml_str(toml, &HashMap::<String, String>::new()).unwrap()
}

fn event(kind: &'static str, product: &'static str, ts: i64) -> Event<'static> {
    Event {
        kind: kind.into(),
        ts,
        attrs: [("product".into(), product.into())].into_iter().collect(),
        ..Event::default()
    }
}

fn incident(rule: &str, product: &str, fired_at: i64) -> Incident {
    Incident {
        rule: rule.to_string(),
        group: vec![("product".into(), product.into())],
        dedup_key: format!("{rule}-{fired_at}"),
        started_at: fired_at - MIN,
        fired_at,
        resolved_at: None,
        severity: Severity::Warning,
        peak: None,
        timeline: Vec::new(),
        window_ms: 30 * MIN,
        condition: Condition::Above,
    }
}

#[test]
fn names_surge_pages_on_slices_first_seen_mid_history() {
    let cfg = config();
    let mut w = LaunchWatch::new(&cfg).unwrap();
    // The surge rules alone are watched, by one `group_by`.
    assert_eq!(w.rules.len(), 1);
    assert_eq!(w.sets.len(), 1);
    let t0 = 1_790_000_000_000 / HOUR * HOUR;
    // "old" from the start; "new" (an order first) 8 h in, "sparse" an
    // order at the start and its first complaint 8 h in.
    w.observe(&event("order", "old", t0));
    w.observe(&event("order", "sparse", t0 + MIN));
    w.observe(&event("order", "new", t0 + 8 * HOUR));
    w.observe(&event("complaint", "new", t0 + 8 * HOUR + 5 * MIN));
    w.observe(&event("complaint", "sparse", t0 + 8 * HOUR));
    // A line out of order: the earliest time is the slice's first.
    w.observe(&event("order", "old", t0 - 2 * MIN));
    assert_eq!(
        w.sets[0].first.get(&slice_hash(["old"])),
        Some(&(t0 - 2 * MIN))
    );
    let origin = |r: usize| (r == 0).then_some(t0);
    let incidents = [
        // 23 minutes after its first event: the whole baseline is before it.
        incident("complaint_surge", "new", t0 + 8 * HOUR + 23 * MIN),
        // Days later: its baseline is its own history.
        incident("complaint_surge", "new", t0 + 40 * HOUR),
        // Sparse but there from the start: its zeros are history.
        incident("complaint_surge", "sparse", t0 + 8 * HOUR + 23 * MIN),
        // Another kind of rule, and a seasonal surge: not watched.
        incident("complaint_count", "new", t0 + 8 * HOUR + 23 * MIN),
        incident("seasonal", "new", t0 + 8 * HOUR + 23 * MIN),
        // A slice no event had (a corrupt transitions file): not named.
        incident("complaint_surge", "ghost", t0 + 9 * HOUR),
    ];
    let found = w.launches(&incidents, origin);
    assert_eq!(
        found,
        vec![Launch {
            rule: "complaint_surge".into(),
            slice: vec![("product".into(), "new".into())],
            fired_at: t0 + 8 * HOUR + 23 * MIN,
            first_seen: t0 + 8 * HOUR,
            reach_ms: 6 * HOUR + 30 * MIN,
        }]
    );
    let text = warning(&found).unwrap();
    assert!(
        text.contains("complaint_surge on product=\"new\" fired at")
            && text.contains("23m after the slice's first event of any type")
            && text
                .contains("`crisiswatch silence add rule=complaint_surge product=new --for 6h30m`"),
        "{text}"
    );
    assert_eq!(warning(&[]), None);
}

#[test]
fn the_rule_s_own_warm_up_is_not_a_launch() {
    let cfg = config();
    let mut w = LaunchWatch::new(&cfg).unwrap();
    let t0 = 1_790_000_000_000 / HOUR * HOUR;
    w.observe(&event("order", "a", t0));
    w.observe(&event("order", "b", t0 + 2 * HOUR));
    let fired = t0 + 2 * HOUR + 40 * MIN;
    let inc = [incident("complaint_surge", "b", fired)];
    // The rule's history starts with its first complaint, 2 h in: b was
    // there for all of it, so nothing is named.
    assert!(w.launches(&inc, |_| Some(t0 + 2 * HOUR)).is_empty());
    // From the start, two thirds of the history in b's baseline (2 h of
    // 2 h 10 m) lie before b's first event.
    assert_eq!(w.launches(&inc, |_| Some(t0)).len(), 1);
    // Without an origin (the rule had no event) nothing is said.
    assert!(w.launches(&inc, |_| None).is_empty());
}

#[test]
fn many_launches_are_counted_past_the_named_ones() {
    let launches: Vec<Launch> = (0..8)
        .map(|i| Launch {
            rule: "complaint_surge".into(),
            slice: vec![("product".into(), format!("p{i}"))],
            fired_at: 1_790_000_000_000 + i * MIN,
            first_seen: 1_790_000_000_000,
            reach_ms: 6 * HOUR + 30 * MIN,
        })
        .collect();
    let text = warning(&launches).unwrap();
    assert!(text.starts_with("8 incident(s)"), "{text}");
    assert!(text.contains("product=\"p4\"") && !text.contains("product=\"p5\""));
    assert!(text.contains("and 3 more;"), "{text}");
}

#[test]
fn slices_of_several_attributes_are_told_apart() {
    assert_ne!(slice_hash(["ab", ""]), slice_hash(["a", "b"]));
    let toml = r#"
[[rules]]
name = "churn_surge"
group_by = ["region", "segment"]
window = "30m"
slide = "1m"
indicator = { kind = "surge", select = { type = "cancellation" }, baseline = "6h" }
thresholds = { warning = 3.0 }
"#;
    let cfg = Config::from_toml_str(toml, &HashMap::<String, String>::new()).unwrap();
    let mut w = LaunchWatch::new(&cfg).unwrap();
    let t0 = 1_790_000_000_000 / HOUR * HOUR;
    let ev = |region: &'static str, segment: &'static str, ts: i64| Event {
        kind: "order".into(),
        ts,
        // A repeated key: the first counts, as in the engine.
        attrs: [
            ("segment".into(), segment.into()),
            ("region".into(), region.into()),
            ("region".into(), "elsewhere".into()),
        ]
        .into_iter()
        .collect(),
        ..Event::default()
    };
    w.observe(&ev("eu", "vip", t0));
    w.observe(&ev("us", "smb", t0));
    // Both values are old; their combination is new at 8 h.
    w.observe(&ev("eu", "smb", t0 + 8 * HOUR));
    let inc = |region: &str, segment: &str| Incident {
        group: vec![
            ("region".into(), region.into()),
            ("segment".into(), segment.into()),
        ],
        ..incident("churn_surge", "-", t0 + 8 * HOUR + 20 * MIN)
    };
    // Were the repeated key's last value taken, (eu, smb) would be unknown.
    let found = w.launches(&[inc("eu", "smb"), inc("eu", "vip")], |_| Some(t0));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].slice,
        vec![
            ("region".to_string(), "eu".to_string()),
            ("segment".to_string(), "smb".to_string())
        ]
    );
}

#[test]
fn the_silence_command_can_be_pasted() {
    // The duration is one word the command line takes.
    let d: crate::config::Dur = "6h30m".parse().unwrap();
    assert_eq!(d.as_ms(), 6 * HOUR + 30 * MIN);
    assert_eq!(shell_word("product=tv-new"), "product=tv-new");
    assert_eq!(shell_word("product=tv new"), "'product=tv new'");
    assert_eq!(shell_word("product=it's"), r"'product=it'\''s'");
    let l = Launch {
        rule: "complaint_surge".into(),
        slice: vec![("product".into(), "tv new".into())],
        fired_at: 1_790_000_000_000,
        first_seen: 1_790_000_000_000 - 17 * MIN,
        reach_ms: 26 * HOUR,
    };
    let text = warning(&[l]).unwrap();
    assert!(
        text.contains("`crisiswatch silence add rule=complaint_surge 'product=tv new' --for 1d2h`"),
        "{text}"
    );
    // Panes as the engine's: ((p − 1)·S, p·S].
    assert_eq!(pane_of(60_000, 60_000), 1);
    assert_eq!(pane_of(60_001, 60_000), 2);
    assert_eq!(pane_of(0, 60_000), 0);
    assert_eq!(pane_of(-1, 60_000), 0);
}
