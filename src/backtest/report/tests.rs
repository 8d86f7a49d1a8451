//! Tests of the report's figures and formats.

use super::*;

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(Delays::of(&[]), None);
    let d = Delays::of(&[30, 10]).unwrap();
    assert_eq!((d.median_ms, d.p90_ms, d.max_ms), (10, 30, 30));
    let d = Delays::of(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]).unwrap();
    assert_eq!((d.median_ms, d.p90_ms, d.max_ms), (5, 9, 10));
    let d = Delays::of(&[7]).unwrap();
    assert_eq!((d.median_ms, d.p90_ms, d.max_ms), (7, 7, 7));
}

#[test]
fn formats_for_people() {
    assert_eq!(fmt_dur(0), "0s");
    assert_eq!(fmt_dur(3_723_900), "1h 2m 3s");
    assert_eq!(fmt_dur(15 * 86_400_000 + 3_600_000), "15d 1h");
    assert_eq!(fmt_value(0.065_000_1), "0.065");
    assert_eq!(fmt_value(40.0), "40");
    assert_eq!(short_ts(1_795_165_111_560), "2026-11-20T08:58:31Z");
}

fn incident(rule: &str, fired_at: i64) -> Incident {
    Incident {
        rule: rule.to_string(),
        group: vec![("product".into(), "kettle-a".into())],
        dedup_key: format!("{rule}-{fired_at}"),
        started_at: fired_at - 60_000,
        fired_at,
        resolved_at: None,
        severity: Severity::Warning,
        peak: None,
        timeline: Vec::new(),
        window_ms: 1_800_000,
        condition: Condition::Above,
    }
}

/// A crisis's rules are listed the first to fire first, each once (a field
/// trial read "by complaint_rate, complaint_surge" beside the surge's
/// earlier firing as the rate having fired first).
#[test]
fn a_crisis_lists_its_rules_the_first_to_fire_first() {
    let crisis = labels::Crisis {
        name: "x10".into(),
        kind: String::new(),
        slice: vec![("product".into(), "kettle-a".into())],
        start_ms: 1_000_000,
        end_ms: 9_000_000,
    };
    let incidents = [
        incident("complaint_rate", 2_000_000),
        incident("complaint_surge", 1_500_000),
        incident("complaint_rate", 1_400_000),
        incident("b_rule", 3_000_000),
        incident("a_rule", 3_000_000),
    ];
    let refs: Vec<&Incident> = incidents.iter().collect();
    let t = score(&refs, std::slice::from_ref(&crisis), |_| 0);
    let o = &t.outcomes[0];
    assert_eq!(o.detected_at, Some(1_400_000));
    assert_eq!(
        o.rules,
        ["complaint_rate", "complaint_surge", "a_rule", "b_rule"]
    );
}
