use super::*;

fn dec(s: &str) -> Result<Event<'_>, Invalid> {
    decode(s.as_bytes(), &DecodeLimits::default(), None)
}

#[test]
fn decodes_the_contract_example() {
    let e = dec(r#"{"id":"evt-8f2c","type":"complaint","ts":"2026-11-22T05:55:19.123Z","customer_id":"c-10293","attrs":{"product":"router-x","region":"eu-west","channel":"social"},"score":3,"sentiment":-0.8,"extra":{"a":[1,2]}}"#).unwrap();
    assert_eq!(e.id, "evt-8f2c");
    assert_eq!(e.kind, "complaint");
    assert_eq!(e.ts, 1_795_326_919_123);
    assert_eq!(e.customer_id.as_deref(), Some("c-10293"));
    assert_eq!(e.attr("region"), Some("eu-west"));
    assert_eq!(e.attr("missing"), None);
    assert_eq!(e.score, Some(3.0));
    assert_eq!(e.sentiment, Some(-0.8));
    assert!(matches!(e.id, Cow::Borrowed(_)));
}

#[test]
fn integer_millis_and_offsets() {
    let a = dec(r#"{"id":"a","type":"order","ts":1795326919123}"#).unwrap();
    let b = dec(r#"{"id":"a","type":"order","ts":"2026-11-22T06:55:19.123+01:00"}"#).unwrap();
    let c = dec(r#"{"id":"a","type":"order","ts":"2026-11-22T05:55:19.123456Z"}"#).unwrap();
    assert_eq!(a.ts, b.ts);
    assert_eq!(a.ts, c.ts);
    assert_eq!(format_ts(a.ts), "2026-11-22T05:55:19.123Z");
    assert_eq!(format_ts(1_763_791_800_000), "2025-11-22T06:10:00Z");
}

#[test]
fn rfc3339_matches_chrono() {
    for s in [
        "1970-01-01T00:00:00Z",
        "2000-02-29T23:59:59.999Z",
        "1969-12-31T23:59:59.5-05:30",
        "2026-11-22T05:55:19+14:00",
        "0001-01-01T00:00:00Z",
    ] {
        let ours = parse_rfc3339_ms(s).unwrap();
        let theirs = chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis();
        assert_eq!(ours, theirs, "{s}");
    }
    for s in [
        "2026-02-30T00:00:00Z",
        "2026-11-22T05:55:19",
        "2026-11-22 05:55",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-22T05:55:19.Z",
    ] {
        assert_eq!(parse_rfc3339_ms(s), None, "{s}");
    }
}

#[test]
fn typed_reasons() {
    let cases: &[(&str, InvalidReason)] = &[
        ("not json", InvalidReason::NotJson),
        ("{\"id\":", InvalidReason::NotJson),
        ("[1,2]", InvalidReason::NotObject),
        ("\"x\"", InvalidReason::NotObject),
        (r#"{"type":"order","ts":1}"#, InvalidReason::MissingField),
        (
            r#"{"id":null,"type":"order","ts":1}"#,
            InvalidReason::MissingField,
        ),
        (r#"{"id":"a","ts":1}"#, InvalidReason::MissingField),
        (r#"{"id":"a","type":"order"}"#, InvalidReason::MissingField),
        (
            r#"{"id":5,"type":"order","ts":1}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"a","type":["x"],"ts":1}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"a","type":"order","ts":true}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"a","type":"order","ts":1,"attrs":{"p":1}}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"a","type":"order","ts":1,"attrs":"p"}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"a","type":"order","ts":1,"score":"9"}"#,
            InvalidReason::WrongType,
        ),
        (
            r#"{"id":"","type":"order","ts":1}"#,
            InvalidReason::EmptyField,
        ),
        (r#"{"id":"a","type":"","ts":1}"#, InvalidReason::EmptyField),
        (
            r#"{"id":"a","type":"order","ts":"yesterday"}"#,
            InvalidReason::BadTimestamp,
        ),
        (
            r#"{"id":"a","type":"order","ts":1.5}"#,
            InvalidReason::BadTimestamp,
        ),
        (
            r#"{"id":"a","type":"order","ts":99999999999999999999}"#,
            InvalidReason::BadTimestamp,
        ),
        // After 9999-12-31T23:59:59.999Z: no RFC 3339 time writes it.
        (
            r#"{"id":"a","type":"order","ts":253402300800000}"#,
            InvalidReason::BadTimestamp,
        ),
        (
            r#"{"id":"a","type":"order","ts":"9999-12-31T23:59:59-23:59"}"#,
            InvalidReason::BadTimestamp,
        ),
        (
            r#"{"id":"a","type":"order","ts":1,"score":1e999}"#,
            InvalidReason::NonFiniteNumber,
        ),
        (
            r#"{"id":"a","type":"order","ts":1,"sentiment":2}"#,
            InvalidReason::OutOfRange,
        ),
    ];
    for (input, reason) in cases {
        let err = dec(input).unwrap_err();
        assert_eq!(err.reason, *reason, "{input}: {err}");
    }
    let long = format!(r#"{{"id":"{}","type":"order","ts":1}}"#, "x".repeat(129));
    assert_eq!(dec(&long).unwrap_err().reason, InvalidReason::IdTooLong);
    let ok = format!(r#"{{"id":"{}","type":"order","ts":1}}"#, "x".repeat(128));
    assert!(dec(&ok).is_ok());
}

#[test]
fn scores_and_sentiments_outside_their_ranges_are_out_of_range() {
    let limits = DecodeLimits::default();
    let line =
        |field: &str, v: &str| format!(r#"{{"id":"a","type":"feedback","ts":1,"{field}":{v}}}"#);
    for (field, v, ok) in [
        ("score", "0", true),
        ("score", "10", true),
        ("score", "7.5", true),
        ("score", "-0.5", false),
        ("score", "10.001", false),
        ("score", "1e16", false),
        ("score", "-9223372036854775808", false),
        ("score", "18446744073709551615", false),
        ("sentiment", "-1", true),
        ("sentiment", "1", true),
        ("sentiment", "1.5", false),
        ("sentiment", "-2", false),
    ] {
        let l = line(field, v);
        // Both decode paths agree.
        for r in [
            decode(l.as_bytes(), &limits, None),
            decode_reference(l.as_bytes(), &limits, None, None),
        ] {
            match r {
                Ok(_) => assert!(ok, "{l} was accepted"),
                Err(e) => {
                    assert!(!ok, "{l}: {e}");
                    assert_eq!(e.reason, InvalidReason::OutOfRange, "{l}");
                    assert!(e.detail.starts_with(field), "{}", e.detail);
                }
            }
        }
    }
    let err = decode(line("score", "1e16").as_bytes(), &limits, None).unwrap_err();
    assert_eq!(
        err.detail,
        "score 1e16 is outside [0, 10] (engine.score_range)"
    );
    // A CSAT stream configures its own range.
    let csat = DecodeLimits {
        score_range: (1.0, 5.0),
        ..limits
    };
    assert!(decode(line("score", "5").as_bytes(), &csat, None).is_ok());
    assert_eq!(
        decode(line("score", "0").as_bytes(), &csat, None)
            .unwrap_err()
            .reason,
        InvalidReason::OutOfRange
    );
    // Open limits take any finite value.
    assert!(decode(line("score", "1e300").as_bytes(), &DecodeLimits::OPEN, None).is_ok());
}

#[test]
fn field_errors_name_the_field() {
    let err = dec(r#"{"id":"a","type":"order","ts":1,"attrs":{"region":7}}"#).unwrap_err();
    assert_eq!(err.detail, "attrs.region is a number, expected a string");
}

#[test]
fn future_skew_and_size_limits() {
    let limits = DecodeLimits {
        max_event_bytes: 100,
        max_future_skew_ms: 1000,
        ..DecodeLimits::default()
    };
    let e = br#"{"id":"a","type":"order","ts":5000}"#;
    assert!(decode(e, &limits, Some(4000)).is_ok());
    assert_eq!(
        decode(e, &limits, Some(3999)).unwrap_err().reason,
        InvalidReason::FutureTimestamp
    );
    let big = format!(
        r#"{{"id":"a","type":"order","ts":1,"x":"{}"}}"#,
        "y".repeat(200)
    );
    assert_eq!(
        decode(big.as_bytes(), &limits, None).unwrap_err().reason,
        InvalidReason::Oversized
    );
}

#[test]
fn escaped_strings_and_numeric_customer() {
    let e = dec(
        r#"{"id":"a\"b","type":"order","ts":1,"customer_id":42,"attrs":{"k":"v\u00e9","n":null}}"#,
    )
    .unwrap();
    assert_eq!(e.id, "a\"b");
    assert_eq!(e.customer_id.as_deref(), Some("42"));
    assert_eq!(e.attr("k"), Some("vé"));
    assert_eq!(e.attr("n"), None);
    let owned = e.into_owned();
    assert_eq!(owned.id, "a\"b");
}

#[test]
fn default_type_fills_only_a_missing_type() {
    let l = DecodeLimits::default();
    let d = Some("complaint");
    let e = decode_with_default(br#"{"id":"a","ts":1}"#, &l, None, d).unwrap();
    assert_eq!(e.kind, "complaint");
    let e = decode_with_default(br#"{"id":"a","type":null,"ts":1}"#, &l, None, d).unwrap();
    assert_eq!(e.kind, "complaint");
    let e = decode_with_default(br#"{"id":"a","type":"order","ts":1}"#, &l, None, d).unwrap();
    assert_eq!(e.kind, "order", "an explicit type wins");
    for bad in [
        r#"{"id":"a","type":"","ts":1}"#,
        r#"{"id":"a","type":3,"ts":1}"#,
    ] {
        assert!(
            decode_with_default(bad.as_bytes(), &l, None, d).is_err(),
            "{bad}"
        );
    }
    let e = decode_with_default(br#"{"id":"a","ts":1}"#, &l, None, None).unwrap_err();
    assert_eq!(e.reason, InvalidReason::MissingField);
}

#[test]
fn ten_thousand_attributes_are_oversized_in_both_paths() {
    let attrs: Vec<String> = (0..10_000).map(|i| format!("\"k{i}\":\"v\"")).collect();
    let line = format!(
        r#"{{"id":"a","type":"order","ts":1,"attrs":{{{}}}}}"#,
        attrs.join(",")
    );
    let open = DecodeLimits::OPEN;
    let err = decode(line.as_bytes(), &open, None).unwrap_err();
    assert_eq!(err.reason, InvalidReason::Oversized);
    assert!(
        err.detail.contains("more than 256 attributes"),
        "{}",
        err.detail
    );
    let reference = crate::event::decode_reference(line.as_bytes(), &open, None, None).unwrap_err();
    assert_eq!(reference.reason, InvalidReason::Oversized);
    // At the limit, and with repeated keys (the last value wins), it decodes.
    let mut at_limit: Vec<String> = (0..256).map(|i| format!("\"k{i}\":\"v\"")).collect();
    at_limit.push("\"k0\":\"w\"".to_string());
    let line = format!(
        r#"{{"id":"a","type":"order","ts":1,"attrs":{{{}}}}}"#,
        at_limit.join(",")
    );
    let e = decode(line.as_bytes(), &open, None).unwrap();
    assert_eq!(e.attrs.len(), 256);
    assert_eq!(e.attrs[0].1, "w");
}

#[test]
fn attributes_are_bounded_in_total_size_and_repeats_resolve_past_the_scan() {
    let open = DecodeLimits::OPEN;
    let line = |attrs: &[String]| {
        format!(
            r#"{{"id":"a","type":"order","ts":1,"attrs":{{{}}}}}"#,
            attrs.join(",")
        )
    };
    // Three attributes of 6 KiB each: 18 KiB of attributes is oversized in both paths.
    let big = "v".repeat(6 * 1024);
    let attrs: Vec<String> = (0..3).map(|i| format!("\"k{i}\":\"{big}\"")).collect();
    let l = line(&attrs);
    let err = decode(l.as_bytes(), &open, None).unwrap_err();
    assert_eq!(err.reason, InvalidReason::Oversized);
    assert!(
        err.detail.contains("more than 16384 bytes"),
        "{}",
        err.detail
    );
    let reference = crate::event::decode_reference(l.as_bytes(), &open, None, None).unwrap_err();
    assert_eq!(reference.reason, InvalidReason::Oversized);
    // One key repeated forty times with 6 KiB values counts once: it decodes.
    let attrs: Vec<String> = (0..40).map(|_| format!("\"k\":\"{big}\"")).collect();
    let l = line(&attrs);
    let e = decode(l.as_bytes(), &open, None).unwrap();
    assert_eq!(e.attrs.len(), 1);
    // Past the scan (more than 16 attributes) repeated keys still keep their
    // last value in first-seen order, in both paths.
    let mut attrs: Vec<String> = (0..200).map(|i| format!("\"k{i}\":\"a{i}\"")).collect();
    attrs.extend((0..200).step_by(7).map(|i| format!("\"k{i}\":\"b{i}\"")));
    let l = line(&attrs);
    for e in [
        decode(l.as_bytes(), &open, None).unwrap(),
        crate::event::decode_reference(l.as_bytes(), &open, None, None).unwrap(),
    ] {
        assert_eq!(e.attrs.len(), 200);
        for (i, (k, v)) in e.attrs.iter().enumerate() {
            assert_eq!(k, &format!("k{i}"));
            let want = if i % 7 == 0 { "b" } else { "a" };
            assert_eq!(v, &format!("{want}{i}"));
        }
    }
}

#[test]
fn ref_id_names_the_answered_event_and_is_checked_like_an_id() {
    // The fast path, and the full parse (an escape in a key sends it there).
    for line in [
        r#"{"id":"r1","type":"response","ts":5,"ref_id":"c-1"}"#,
        r#"{"id":"r1","type":"response","ts":5,"ref_id":"c-1","x\u0041":{"deep":[1]}}"#,
    ] {
        let e = dec(line).unwrap();
        assert_eq!(e.ref_id.as_deref(), Some("c-1"), "{line}");
    }
    assert_eq!(
        dec(r#"{"id":"r","type":"response","ts":5,"ref_id":null}"#)
            .unwrap()
            .ref_id,
        None
    );
    assert_eq!(
        dec(r#"{"id":"r","type":"response","ts":5}"#)
            .unwrap()
            .ref_id,
        None
    );
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let too_long = format!(r#"{{"id":"r","type":"response","ts":5,"ref_id":"{long}"}}"#);
    assert_eq!(dec(&too_long).unwrap_err().reason, InvalidReason::IdTooLong);
    for bad in [r#""ref_id":7"#, r#""ref_id":"""#] {
        let line = format!(r#"{{"id":"r","type":"response","ts":5,{bad}}}"#);
        let reason = dec(&line).unwrap_err().reason;
        assert!(
            matches!(reason, InvalidReason::WrongType | InvalidReason::EmptyField),
            "{line}: {reason:?}"
        );
    }
}

#[test]
fn a_line_is_trimmed_of_white_space_and_a_byte_order_mark() {
    assert_eq!(trim_line(b"  {\"a\":1}\r\n"), b"{\"a\":1}");
    assert_eq!(trim_line(b"\xEF\xBB\xBF{\"a\":1}\r"), b"{\"a\":1}");
    assert_eq!(trim_line(b" \xEF\xBB\xBF {}"), b"{}");
    assert_eq!(trim_line(b"\xEF\xBB\xBF"), b"");
    assert_eq!(trim_line(b"\xEF\xBB{}"), b"\xEF\xBB{}");
    assert_eq!(trim_line(b""), b"");
}

#[test]
fn timestamp_errors_say_what_is_wrong() {
    let detail = |ts: &str| {
        dec(&format!(r#"{{"id":"a","type":"order","ts":{ts}}}"#))
            .unwrap_err()
            .detail
    };
    let d = detail(r#""2026-02-29T00:00:00Z""#);
    assert!(d.contains("not a valid date and time"), "{d}");
    // Beyond 64 bits: said so, not shown as the float it parsed to.
    for big in ["99999999999999999999", "99999999999999999999999"] {
        let d = detail(big);
        assert!(d.contains("beyond 64 bits: out of range"), "{d}");
        assert!(!d.contains("1000000"), "{d}");
    }
    let e = dec(r#"{"id":"a","type":"order","ts":1,"customer_id":12345678901234567890123}"#)
        .unwrap_err();
    assert_eq!(e.reason, InvalidReason::WrongType);
    assert!(
        e.detail.contains("beyond 64 bits: write it as a string"),
        "{e:?}"
    );
    let d = detail("1.5");
    assert!(d.contains("not an integer number of milliseconds"), "{d}");
    let d = detail("1000.0");
    assert!(d.contains("write integer milliseconds, as 1000"), "{d}");
    let d = detail("1.795132800445e12");
    assert!(
        d.contains("write integer milliseconds, as 1795132800445"),
        "{d}"
    );
    // `-0` is the integer 0.
    assert_eq!(dec(r#"{"id":"a","type":"order","ts":-0}"#).unwrap().ts, 0);
}

#[test]
fn an_empty_customer_id_names_no_customer() {
    let e = dec(r#"{"id":"a","type":"complaint","ts":1,"customer_id":""}"#).unwrap();
    assert_eq!(e.customer_id, None);
    let e = dec(r#"{"id":"a","type":"complaint","ts":1,"customer_id":"c"}"#).unwrap();
    assert_eq!(e.customer_id.as_deref(), Some("c"));
}

/// A Kafka message decodes as `replay` decodes the same bytes as a line: a
/// byte-order mark and white space around the object are not part of it,
/// and the held event's bytes (its order key) are the line's.
#[test]
fn a_byte_order_mark_and_surrounding_space_decode_as_the_bare_object() {
    let bare: &[u8] = br#"{"id":"bom1","type":"complaint","ts":5,"attrs":{"product":"p"}}"#;
    let limits = DecodeLimits::default();
    let want = decode(bare, &limits, None).expect("valid");
    for wrapped in [
        [b"\xEF\xBB\xBF".as_slice(), bare].concat(),
        [b" \t".as_slice(), bare, b"\r\n"].concat(),
        [b"\xEF\xBB\xBF ".as_slice(), bare, b"\n"].concat(),
    ] {
        let got = decode(&wrapped, &limits, None).map(Event::into_owned);
        assert_eq!(got, Ok(want.clone().into_owned()));
        let mut slot = Event::default();
        let held =
            crate::event::decode_held(&wrapped, &limits, None, None, &mut slot).expect("valid");
        assert_eq!(held.raw(), bare);
        assert_eq!(held.raw(), trim_line(&wrapped));
    }
}

/// `ts` is an integer of milliseconds: `-0` is one (JSON parsers read it as
/// a float; `-0.0` reads the same and passes too), `0.0` is not, like any
/// other number written with a point.
#[test]
fn a_zero_timestamp_written_with_a_point_is_not_an_integer() {
    assert_eq!(
        dec(r#"{"id":"z","type":"order","ts":-0}"#).map(|e| e.ts),
        Ok(0)
    );
    assert_eq!(
        dec(r#"{"id":"z","type":"order","ts":0}"#).map(|e| e.ts),
        Ok(0)
    );
    // The last millisecond RFC 3339 can write.
    assert_eq!(
        dec(r#"{"id":"z","type":"order","ts":253402300799999}"#).map(|e| e.ts),
        Ok(253_402_300_799_999)
    );
    for ts in ["0.0", "0e0", "1764928800000.0"] {
        let line = format!(r#"{{"id":"z","type":"order","ts":{ts}}}"#);
        let err = dec(&line).expect_err(ts);
        assert_eq!(err.reason, InvalidReason::BadTimestamp, "{ts}");
    }
}
