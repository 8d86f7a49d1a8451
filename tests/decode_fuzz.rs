//! Decoder fuzzing with proptest: arbitrary bytes, and valid events with
//! random mutations, never panic; every rejection carries a reason; every
//! accepted event satisfies the contract's invariants; and the decoder's fast
//! path never changes a result: every input decodes exactly (event or typed
//! error with its detail) as the full serde parser alone decodes it.

use crisiswatch::event::{
    decode, decode_reference, fast_path_accepts, DecodeLimits, InvalidReason, MAX_ID_BYTES,
};
use proptest::prelude::*;

fn check(bytes: &[u8]) {
    let limits = DecodeLimits::default();
    let now = Some(1_800_000_000_000);
    assert_eq!(
        decode(bytes, &limits, now),
        decode_reference(bytes, &limits, now, None),
        "fast path and full parser disagree on {:?}",
        String::from_utf8_lossy(bytes)
    );
    match decode(bytes, &limits, now) {
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

/// Whitespace JSON allows between tokens, and some it does not.
fn blank() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just(""),
        1 => Just(" "),
        1 => Just("\t\n "),
        1 => Just("\r\n"),
        1 => Just("\u{a0}"),
        1 => Just("\u{0}"),
    ]
}

/// Numbers in every spelling, valid JSON or not.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        (0u32..30).prop_map(|n| format!("1{}", "0".repeat(n as usize))),
        (0u32..30).prop_map(|n| format!("-9{}", "9".repeat(n as usize))),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        (-2.0f64..2.0).prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "00",
            "01",
            "-01",
            "0.0",
            "-0.0",
            "1.",
            ".5",
            "1e",
            "1e+",
            "1E-2",
            "2e308",
            "-2e308",
            "1e-400",
            "+1",
            "--1",
            "1-1",
            "0x10",
            "1.5e3",
            "NaN",
            "Infinity",
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
        ])
        .prop_map(str::to_string),
    ]
}

/// Strings with and without escapes and odd characters.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9_-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        1 => prop::sample::select(vec![
            "\"a\\\"b\"", "\"\\u00e9\"", "\"\\n\"", "\"tab\there\"", "\"é\"",
            "\"2026-11-22T05:55:19.123Z\"", "\"2026-11-22T05:55:19+02:00\"", "\"\"", "\"x\\\"",
        ])
        .prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string(),
        3 => number(),
        1 => prop::sample::select(vec!["null", "true", "false", "nul", "tru", "[]", "{}", "[1]", "{\"a\":1}"])
            .prop_map(str::to_string),
    ]
}

fn attrs() -> impl Strategy<Value = String> {
    let entry = (
        prop::sample::select(vec!["product", "region", "channel", "k", "product"]),
        prop_oneof![4 => string(), 1 => value()],
    );
    prop_oneof![
        6 => prop::collection::vec(entry, 0..5).prop_map(|es| {
            let body: Vec<String> = es.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        }),
        1 => value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Event-shaped objects: fields in any order, repeated, missing or of any
    /// type, odd numbers and strings, blanks between tokens.
    #[test]
    fn fast_path_matches_the_full_parser(
        fields in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "id", "type", "ts", "customer_id", "score", "sentiment", "attrs", "extra",
                ]),
                value(),
                attrs(),
            ),
            0..9,
        ),
        gaps in prop::collection::vec(blank(), 8),
        trailing in prop::sample::select(vec!["", " ", ",", "}", "x", "\n"]),
        base in prop::bool::weighted(0.8),
        ts in prop::sample::select(vec!["1795132800000", "\"2026-11-22T05:55:19.123Z\"", "0", "-5"]),
    ) {
        let g = |i: usize| gaps[i % gaps.len()];
        // Mostly a valid event the random fields then add to or override.
        let head = base.then(|| format!(r#""id":"e-1","type":"complaint","ts":{ts}"#));
        let body: Vec<String> = head
            .into_iter()
            .chain(fields
            .iter()
            .enumerate()
            .map(|(i, (k, v, a))| {
                let v = if *k == "attrs" { a } else { v };
                format!("{}\"{k}\"{}:{}{v}{}", g(i), g(i + 1), g(i + 2), g(i + 3))
            }))
            .collect();
        let line = format!("{}{{{}}}{}{trailing}", g(4), body.join(","), g(5));
        check(line.as_bytes());
    }
}

#[test]
fn typical_lines_take_the_fast_path() {
    // The generator's valid lines and the contract's example must not fall
    // back to the slow parser, or the decoder silently loses its speed.
    let mut gen =
        crisiswatch::generator::Generator::new(crisiswatch::generator::GeneratorSettings {
            seed: 3,
            start_ms: 1_795_132_800_000,
            duration_ms: 3_600_000,
            orders_per_minute: 100.0,
            crises: true,
            noise: false,
            shape: crisiswatch::generator::TrafficShape::default(),
        });
    let mut lines = Vec::new();
    gen.generate_until(1_795_132_800_000 + 3_600_000, &mut lines);
    assert!(lines.len() > 1000, "{} lines", lines.len());
    for l in lines.iter().map(|l| l.as_slice()).chain([VALID.as_bytes()]) {
        check(l);
        assert!(
            fast_path_accepts(l),
            "slow path for {}",
            String::from_utf8_lossy(l)
        );
    }
    // And the ones it must leave to the full parser.
    for l in [
        r#"{"id":"a\"b","type":"order","ts":1}"#,
        r#"{"id":"a","type":"order","ts":1,"meta":{"x":1}}"#,
        r#"{"id":"a","type":"order","ts":1,"attrs":{"n":1}}"#,
        r#"{"id":"a","type":"order","ts":1,}"#,
        r#"[1]"#,
    ] {
        check(l.as_bytes());
        assert!(!fast_path_accepts(l.as_bytes()), "{l}");
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
