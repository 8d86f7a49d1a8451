use super::*;

fn spec() -> ExplainSpec {
    // 60 panes per window, a 24-window baseline.
    ExplainSpec::new(
        &["category".to_string(), "channel".to_string()],
        None,
        3_600_000,
        60,
        0,
    )
    .unwrap()
}

/// Adds `k` events with (category, channel) in pane `pane`, window end `end`.
fn add(x: &mut Explain, s: &ExplainSpec, pane: i64, end: i64, cat: &str, ch: &str, k: usize) {
    for _ in 0..k {
        x.add(s, pane, end, |name| match name {
            "category" => Some(cat),
            "channel" => Some(ch),
            _ => None,
        });
    }
}

/// Twelve windows of the usual mix: per pane 2 product_quality + 8 billing,
/// spread over social (2 of 10) and web.
fn usual(x: &mut Explain, s: &ExplainSpec, panes: std::ops::Range<i64>) {
    for p in panes {
        add(x, s, p, p, "product_quality", "social", 1);
        add(x, s, p, p, "product_quality", "web", 1);
        add(x, s, p, p, "billing", "social", 1);
        add(x, s, p, p, "billing", "web", 7);
    }
}

#[test]
fn a_crisis_mix_names_the_over_represented_values() {
    let s = spec();
    let mut x = Explain::new();
    usual(&mut x, &s, 1..721);
    // The last window: the usual mix plus 12 product_quality/social per pane.
    usual(&mut x, &s, 721..781);
    for p in 721..781 {
        add(&mut x, &s, p, p, "product_quality", "social", 12);
    }
    let hints = x.hints(&s, 780);
    let names: Vec<String> = hints
        .iter()
        .map(|h| format!("{}={}", h.attribute, h.value))
        .collect();
    assert_eq!(
        names,
        ["category=product_quality", "channel=social"],
        "{hints:?}"
    );
    let pq = &hints[0];
    // 14 of 22 events per pane now, 2 of 10 usually.
    assert_eq!(pq.count, 14 * 60);
    assert!((pq.share - 14.0 / 22.0).abs() < 1e-4, "{pq:?}");
    assert!((pq.baseline_share - 0.2).abs() < 1e-4, "{pq:?}");
    assert!(pq.lift > 3.0 && pq.score > MIN_SCORE, "{pq:?}");
    assert_eq!(
        pq.text(),
        "category=product_quality 64 % (usually 20 %, ×3.2)"
    );
    assert!(hints[1]
        .text()
        .starts_with("channel=social 64 % (usually 20 %"));
}

#[test]
fn the_usual_mix_gives_no_hints_even_when_skewed() {
    let s = spec();
    let mut x = Explain::new();
    // Always mostly product_quality on social: skewed, but as usual.
    for p in 1..781 {
        let k = if p > 720 { 5 } else { 1 }; // five times the volume at the end
        add(&mut x, &s, p, p, "product_quality", "social", 8 * k);
        add(&mut x, &s, p, p, "billing", "web", 2 * k);
    }
    assert_eq!(x.hints(&s, 780), Vec::new());
}

#[test]
fn no_baseline_no_hints_and_rare_values_need_support() {
    let s = spec();
    let mut x = Explain::new();
    for p in 1..61 {
        add(&mut x, &s, p, p, "product_quality", "social", 5);
    }
    assert!(x.hints(&s, 60).is_empty(), "no baseline yet");
    let mut x = Explain::new();
    usual(&mut x, &s, 1..781);
    // Four events of a value never seen before: a huge lift, too little support.
    add(&mut x, &s, 780, 780, "safety", "web", 4);
    assert!(x.hints(&s, 780).is_empty());
    add(&mut x, &s, 780, 780, "safety", "web", 20);
    let h = x.hints(&s, 780);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!((h[0].value.as_str(), h[0].baseline_share), ("safety", 0.0));
}

#[test]
fn values_beyond_the_cap_count_as_other_and_are_named_together() {
    let s = spec();
    let mut x = Explain::new();
    usual(&mut x, &s, 1..721);
    for p in 721..781 {
        for v in 0..40 {
            add(&mut x, &s, p, p, &format!("c{v}"), "web", 1);
        }
    }
    let named = x.values.iter().filter(|(a, _)| *a == 0).count();
    assert_eq!(named, MAX_VALUES);
    // Each of c0..c13 has 60 events in a window of 1,200: over-represented
    // against a baseline that never had them; `other` (26 values) is never
    // named as one of them, and not at all here: the baseline's oldest
    // block had no value past the first 16, so `other`'s usual share is
    // not known.
    let h = x.hints(&s, 780);
    assert!(h.len() <= TOP);
    assert!(
        h.iter().all(|h| !h.untracked && h.value.starts_with('c')),
        "{h:?}"
    );
    // Long values are cut.
    let mut y = Explain::new();
    add(&mut y, &s, 1, 1, &"é".repeat(200), "web", 1);
    assert!(y.values[0].1.len() <= MAX_VALUE_BYTES);
}

#[test]
fn folding_order_does_not_change_the_counts() {
    // One state brought forward pane by pane, one only at the end: the same hints.
    let s = spec();
    let mut a = Explain::new();
    let mut b = Explain::new();
    for p in 1..781 {
        let (cat, k) = if p > 720 {
            ("product_quality", 6)
        } else {
            ("billing", 1)
        };
        add(&mut a, &s, p, p, cat, "social", k);
        add(&mut a, &s, p, p, "billing", "web", 3);
        a.advance(&s, p + 1);
        // b sees the same events with its clock held back at pane 1.
        add(&mut b, &s, p, 1, cat, "social", k);
        add(&mut b, &s, p, 1, "billing", "web", 3);
    }
    let (ha, hb) = (a.hints(&s, 781), b.hints(&s, 781));
    assert!(!ha.is_empty());
    assert_eq!(ha, hb);
}

#[test]
fn g_score_matches_a_hand_computed_table() {
    // [[30, 70], [20, 180]]: expected 16.67/83.33/33.33/166.67.
    let g = g_score(30, 70, 20, 180);
    let e = |o: f64, e: f64| o * (o / e).ln();
    let want = 2.0
        * (e(30.0, 100.0 * 50.0 / 300.0)
            + e(70.0, 100.0 * 250.0 / 300.0)
            + e(20.0, 200.0 * 50.0 / 300.0)
            + e(180.0, 200.0 * 250.0 / 300.0));
    assert!((g - want).abs() < 1e-9, "{g} vs {want}");
    assert_eq!(g_score(0, 0, 0, 0), 0.0);
    assert!(g_score(10, 90, 100, 900) < 1e-9, "same share: no evidence");
}

/// A value first seen after the slice's first 16 (a new store, a new app
/// version) is counted with the other late values: when they stand out,
/// the hint says so instead of none at all.
#[test]
fn a_value_past_the_first_sixteen_is_named_as_such() {
    let s = spec();
    let mut x = Explain::new();
    // Twelve windows of 20 categories, one event each per pane.
    for p in 1..721 {
        for c in 0..20 {
            add(&mut x, &s, p, p, &format!("c{c}"), "web", 1);
        }
    }
    // The last window: as usual, plus 10 per pane of the 19th category.
    for p in 721..781 {
        for c in 0..20 {
            add(&mut x, &s, p, p, &format!("c{c}"), "web", 1);
        }
        add(&mut x, &s, p, p, "c18", "web", 10);
    }
    let hints = x.hints(&s, 780);
    assert_eq!(hints.len(), 1, "{hints:?}");
    let h = &hints[0];
    assert!(
        h.untracked && h.attribute == "category" && h.value.is_empty(),
        "{h:?}"
    );
    assert!(
        h.text()
            .starts_with("category=(values past the first 16 this slice saw) 47 % (usually 20 %"),
        "{}",
        h.text()
    );
}

/// Binary formats (the scaled-out wire, incident checkpoints) keep the
/// layout hints had before `untracked`: an instance or a checkpoint of the
/// earlier build reads them, and reads back an untracked one as such.
/// Text formats carry `untracked` (only when true).
#[test]
fn hints_keep_their_binary_layout_and_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Before {
        attribute: String,
        value: String,
        count: u64,
        share: f64,
        baseline_share: f64,
        lift: f64,
        score: f64,
    }
    let named = Hint {
        attribute: "category".into(),
        value: "product_quality".into(),
        count: 42,
        share: 0.78,
        baseline_share: 0.21,
        lift: 3.71,
        score: 88.5,
        untracked: false,
    };
    let before = Before {
        attribute: "category".into(),
        value: "product_quality".into(),
        count: 42,
        share: 0.78,
        baseline_share: 0.21,
        lift: 3.71,
        score: 88.5,
    };
    let bytes = bincode::serialize(&named).unwrap();
    assert_eq!(bytes, bincode::serialize(&before).unwrap());
    assert_eq!(bincode::deserialize::<Hint>(&bytes).unwrap(), named);
    let untracked = Hint {
        value: String::new(),
        untracked: true,
        ..named.clone()
    };
    let back: Hint = bincode::deserialize(&bincode::serialize(&untracked).unwrap()).unwrap();
    assert_eq!(back, untracked);
    // An earlier build reads it as a value it never counted by name.
    let old: Before = bincode::deserialize(&bincode::serialize(&untracked).unwrap()).unwrap();
    assert!(old.value.len() > MAX_VALUE_BYTES);
    // JSON: `untracked` only when true, and read back either way.
    let json = serde_json::to_string(&named).unwrap();
    assert!(!json.contains("untracked"), "{json}");
    assert_eq!(serde_json::from_str::<Hint>(&json).unwrap(), named);
    let json = serde_json::to_string(&untracked).unwrap();
    assert!(
        json.contains("\"untracked\":true") && json.contains("\"value\":\"\""),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<Hint>(&json).unwrap(), untracked);
}

/// A young slice whose first 16 values filled during its baseline: the
/// values past them were counted for part of it only, so their share is
/// judged on the blocks after the filling, never on those — the review's
/// case: a baseline of 40 events of 40 stores (16 named, 24 not), then a
/// window of 100 events spread over 200 stores, 92 of them not named.
#[test]
fn values_past_the_first_sixteen_are_judged_after_the_filling() {
    let s = spec();
    let mut x = Explain::new();
    for k in 0..40 {
        add(&mut x, &s, 1 + k, 1 + k, &format!("s{k}"), "web", 1);
    }
    for k in 0..100i64 {
        let p = 61 + k * 59 / 100;
        add(&mut x, &s, p, p, &format!("s{}", (k * 7) % 200), "web", 1);
    }
    let h = x.hints(&s, 120);
    assert!(h.iter().all(|h| !h.untracked), "{h:?}");
}
