//! Decoder fuzzing with proptest: arbitrary bytes, and valid events with
//! random mutations, never panic; every rejection carries a reason; every
//! accepted event satisfies the contract's invariants.

use crisiswatch::event::{decode, DecodeLimits, InvalidReason, MAX_ID_BYTES};
use proptest::prelude::*;

fn check(bytes: &[u8]) {
    let limits = DecodeLimits::default();
    match decode(bytes, &limits, Some(1_800_000_000_000)) {
        Ok(ev) => {
            assert!(!ev.id.is_empty() && ev.id.len() <= MAX_ID_BYTES);
            assert!(!ev.kind.is_empty());
            assert!(ev.score.is_none_or(f64::is_finite));
            assert!(ev.sentiment.is_none_or(|s| (-1.0..=1.0).contains(&s)));
            assert!(ev.ts <= 1_800_000_000_000 + limits.max_future_skew_ms);
        }
        Err(inv) => {
            assert!(InvalidReason::ALL.contains(&inv.reason));
            assert!(!inv.detail.is_empty());
        }
    }
}

const VALID: &str = r#"{"id":"evt-8f2c","type":"complaint","ts":"2026-11-22T05:55:19.123Z","customer_id":"c-10293","attrs":{"product":"router-x","region":"eu-west"},"score":3,"sentiment":-0.8}"#;

/// JSON-ish fragments that stress the visitor's branches.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("1e999".to_string()),
        Just("-1e999".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"2026-02-29T00:00:00Z\"".to_string()),
        Just("\"9999-12-31T23:59:59.999999999+23:59\"".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        "[a-z]{0,200}".prop_map(|s| format!("\"{s}\"")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn mutated_valid_events_never_panic(
        cut in 0usize..VALID.len(),
        insert in proptest::collection::vec(any::<u8>(), 0..8),
        flip in proptest::collection::vec((0usize..VALID.len(), any::<u8>()), 0..4),
    ) {
        let mut b = VALID.as_bytes().to_vec();
        for (i, v) in flip {
            b[i] = v;
        }
        b.splice(cut..cut, insert);
        check(&b);
    }

    #[test]
    fn any_field_value_is_handled(
        field in prop_oneof![
            Just("id"), Just("type"), Just("ts"), Just("customer_id"),
            Just("attrs"), Just("score"), Just("sentiment"), Just("other")
        ],
        value in fragment(),
        nested in fragment(),
    ) {
        let obj = format!(
            r#"{{"id":"a","type":"order","ts":1700000000000,"{field}":{value},"attrs":{{"k":{nested}}}}}"#
        );
        check(obj.as_bytes());
    }
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let limits = DecodeLimits {
        max_event_bytes: 1 << 20,
        ..DecodeLimits::default()
    };
    for field in ["x", "id", "attrs"] {
        let deep = format!(
            "{{\"{field}\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = decode(deep.as_bytes(), &limits, None).unwrap_err();
        assert!(
            matches!(
                err.reason,
                InvalidReason::NotJson | InvalidReason::MissingField | InvalidReason::WrongType
            ),
            "{field}: {err}"
        );
    }
}
