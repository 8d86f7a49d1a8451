//! Property tests of value bounds and pane arithmetic (issue 11, item 2).
//!
//! * `window_totals_match_model_or_saturate`: a [`Window`] fed arbitrary pane
//!   additions (including counters near `i64::MAX`/`i64::MIN`) and arbitrary
//!   advances never panics — the tests run in a debug build, where an
//!   overflowing `+` would — and, while every value is moderate, its running
//!   totals equal a naive recomputation over the panes.
//! * `indicator_values_never_panic`: every indicator kind computes a value from
//!   a window holding extreme totals without panicking; the value is a number
//!   or "no data", never an error.
//! * `extreme_scores_cannot_enter`: events with arbitrary scores and sentiments
//!   (1e16, 1e300, −0.5, …) go through the engine; those outside
//!   `engine.score_range` / `engine.sentiment_range` are counted `out_of_range`
//!   and nothing else, and every score indicator stays within what in-range
//!   scores can give (mean in the range, NPS in [−100, 100]).

use std::collections::BTreeMap;

use crisiswatch::config::{Config, IndicatorConfig};
use crisiswatch::engine::Engine;
use crisiswatch::event::InvalidReason;
use crisiswatch::indicator::Indicator;
use crisiswatch::window::{Counters, Shape, Window};
use proptest::prelude::*;

/// Counter deltas: mostly moderate, sometimes at or near the limits.
fn delta_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -1_000_000i64..1_000_000,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX - 1),
        1 => (i64::MAX / 2)..i64::MAX,
        1 => i64::MIN..(i64::MIN / 2),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Add to the pane `end + offset`.
    Add(i64, Counters),
    /// Move the end forward by this many panes.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-12i64..6, [delta_value(), delta_value(), delta_value()])
            .prop_map(|(o, d)| Op::Add(o, d)),
        1 => (0i64..8).prop_map(Op::Advance),
    ]
}

fn moderate(v: i128) -> bool {
    v.abs() < i128::from(i64::MAX / 4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn window_totals_match_model_or_saturate(
        n in 1i64..5,
        m in 0i64..6,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let shape = Shape { n, m, customers: false, min_events: 1, max_customers: 10 };
        let mut end = 100i64;
        let mut w = Window::new(end, &shape);
        // The model: exact (i128) counters of every pane the window accepted.
        let mut panes: BTreeMap<i64, [i128; 3]> = BTreeMap::new();
        let mut all_moderate = true;
        for op in ops {
            match op {
                Op::Add(off, delta) => {
                    let idx = end + off;
                    if w.add(idx, delta, None, &shape).is_some() {
                        let p = panes.entry(idx).or_default();
                        for (a, d) in p.iter_mut().zip(delta) {
                            *a += i128::from(d);
                            all_moderate &= moderate(*a);
                        }
                    } else {
                        prop_assert!(idx <= end - n - m, "only expired panes are refused");
                    }
                }
                Op::Advance(k) => {
                    end += k;
                    w.advance(end, &shape);
                }
            }
            let mut cur = [0i128; 3];
            let (mut base, mut sumsq) = (0i128, 0i128);
            for (&idx, c) in &panes {
                if idx > end - n && idx <= end {
                    for (t, v) in cur.iter_mut().zip(c) {
                        *t += v;
                    }
                } else if idx > end - n - m && idx <= end - n {
                    base += c[0];
                    sumsq = sumsq.saturating_add(c[0].saturating_mul(c[0]));
                }
            }
            all_moderate &= cur.iter().all(|&v| moderate(v)) && moderate(base);
            if all_moderate {
                prop_assert_eq!(w.cur.map(i128::from), cur);
                prop_assert_eq!(i128::from(w.base_sum), base);
                prop_assert_eq!(w.base_sumsq, sumsq);
            }
        }
    }

    #[test]
    fn indicator_values_never_panic(
        deltas in proptest::collection::vec([delta_value(), delta_value(), delta_value()], 1..6),
        baseline in proptest::collection::vec(delta_value(), 0..6),
    ) {
        let shape = Shape { n: 2, m: 4, customers: false, min_events: 1, max_customers: 10 };
        let mut w = Window::new(10, &shape);
        for (i, d) in baseline.iter().enumerate() {
            w.add(5 + i as i64 % 4, [*d, 0, 0], None, &shape);
        }
        for d in &deltas {
            w.add(10, *d, None, &shape);
        }
        for kind in KINDS {
            let cfg: IndicatorConfig = toml::from_str::<Wrapper>(&format!("i = {kind}"))
                .expect("indicator config parses")
                .i;
            let ind = Indicator::compile(&cfg, 3_600_000);
            let (value, _volume) =
                ind.value(&w, shape.n, crisiswatch::indicator::Baseline::of(&w, shape.m));
            if let Some(v) = value {
                prop_assert!(!v.is_nan(), "{kind}: {v}");
            }
        }
    }
}

/// Scores: mostly valid NPS values, sometimes far outside.
fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u8..=20).prop_map(|h| f64::from(h) / 2.0),
        1 => Just(1e16),
        1 => Just(-1e16),
        1 => Just(1e300),
        1 => Just(-0.5),
        1 => Just(10.5),
        1 => Just(9.223372036854776e18),
    ]
}

const SCORE_RULES: &str = r#"
[[rules]]
name = "mean"
group_by = []
window = "10m"
slide = "1m"
indicator = { kind = "mean_score", select = { type = "feedback" } }
condition = "below"
thresholds = { warning = -1e9 }

[[rules]]
name = "nps"
group_by = []
window = "10m"
slide = "1m"
indicator = { kind = "nps", select = { type = "feedback" } }
condition = "below"
thresholds = { warning = -1000 }
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn extreme_scores_cannot_enter(
        events in proptest::collection::vec((score(), prop::option::of(-3i8..=3)), 1..40),
    ) {
        let cfg = Config::from_toml_str(SCORE_RULES, &std::collections::HashMap::<String, String>::new())
            .expect("config is valid");
        let mut engine = Engine::new(&cfg).expect("engine builds");
        let mut out = Vec::new();
        let mut expected_invalid = 0u64;
        for (i, (score, sentiment)) in events.iter().enumerate() {
            let sentiment = sentiment.map(|s| f64::from(s) / 2.0);
            let line = serde_json::json!({
                "id": format!("e{i}"), "type": "feedback", "ts": 1_000 * i as i64,
                "score": score, "sentiment": sentiment,
            });
            let bad = !(0.0..=10.0).contains(score)
                || sentiment.is_some_and(|s| !(-1.0..=1.0).contains(&s));
            expected_invalid += u64::from(bad);
            let r = engine.process_bytes(line.to_string().as_bytes(), None, &mut out);
            match r {
                Ok(_) => prop_assert!(!bad, "{line} accepted"),
                Err(e) => {
                    prop_assert!(bad, "{line}: {e}");
                    prop_assert_eq!(e.reason, InvalidReason::OutOfRange);
                }
            }
            for v in engine.current_values(0).into_iter().filter_map(|(_, v)| v) {
                prop_assert!((0.0..=10.0).contains(&v), "mean {v}");
            }
            for v in engine.current_values(1).into_iter().filter_map(|(_, v)| v) {
                prop_assert!((-100.0..=100.0).contains(&v), "nps {v}");
            }
        }
        let stats = engine.stats();
        prop_assert_eq!(stats.invalid[InvalidReason::OutOfRange.index()], expected_invalid);
        prop_assert_eq!(stats.invalid.iter().sum::<u64>(), expected_invalid);
        prop_assert!(out.is_empty(), "no rule can fire: {out:?}");
    }
}

#[derive(serde::Deserialize)]
struct Wrapper {
    i: IndicatorConfig,
}

const KINDS: [&str; 8] = [
    r#"{ kind = "count", select = { type = "complaint" } }"#,
    r#"{ kind = "rate", select = { type = "complaint" }, per = "hour" }"#,
    r#"{ kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }"#,
    r#"{ kind = "score_share", select = { type = "feedback" }, min = 0, max = 6 }"#,
    r#"{ kind = "mean_score", select = { type = "feedback" } }"#,
    r#"{ kind = "nps", select = { type = "feedback" } }"#,
    r#"{ kind = "surge", select = { type = "complaint" }, baseline = "4h", method = "ratio" }"#,
    r#"{ kind = "surge", select = { type = "complaint" }, baseline = "4h", method = "zscore" }"#,
];
