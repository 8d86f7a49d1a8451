//! Unit tests of the alert state machine.

use super::*;

fn policy(for_ms: i64, kff_ms: i64) -> AlertPolicy {
    AlertPolicy {
        levels: vec![(Severity::Warning, 10.0), (Severity::Critical, 20.0)],
        clear: 5.0,
        condition: Condition::Above,
        for_ms,
        keep_firing_for_ms: kff_ms,
    }
}

/// Feeds (at, value) pairs and collects (at, state, severity) transitions.
fn run(p: &AlertPolicy, steps: &[(i64, Option<f64>)]) -> (Vec<(i64, State, Severity)>, Phase) {
    let mut phase = Phase::Inactive;
    let mut out = Vec::new();
    for &(at, v) in steps {
        let s = p.step(&mut phase, at, v);
        if let Some((st, sev)) = s.transition {
            out.push((at, st, sev));
        }
    }
    (out, phase)
}

#[test]
fn pending_firing_escalated_resolved() {
    let p = policy(100, 0);
    let (t, phase) = run(
        &p,
        &[
            (0, Some(1.0)),
            (10, Some(11.0)),  // breach → pending
            (50, Some(12.0)),  // still pending
            (110, Some(12.0)), // for elapsed → firing
            (120, Some(25.0)), // escalated
            (130, Some(7.0)),  // below warning but above clear: still firing
            (140, Some(4.0)),  // past clear, kff = 0 → resolved
        ],
    );
    assert_eq!(
        t,
        vec![
            (10, State::Pending, Severity::Warning),
            (110, State::Firing, Severity::Warning),
            (120, State::Escalated, Severity::Critical),
            (140, State::Resolved, Severity::Critical),
        ]
    );
    assert_eq!(phase, Phase::Inactive);
}

#[test]
fn for_zero_fires_at_once_with_the_highest_severity() {
    let p = policy(0, 0);
    let (t, _) = run(&p, &[(5, Some(30.0))]);
    assert_eq!(t, vec![(5, State::Firing, Severity::Critical)]);
}

#[test]
fn pending_that_recovers_is_silent() {
    let p = policy(100, 0);
    let (t, phase) = run(&p, &[(0, Some(11.0)), (50, Some(9.0)), (200, Some(9.0))]);
    assert_eq!(t, vec![(0, State::Pending, Severity::Warning)]);
    assert_eq!(phase, Phase::Inactive);
}

#[test]
fn a_higher_level_touched_during_pending_does_not_page_at_that_level() {
    let p = policy(100, 0);
    // Critical for a moment while `for` runs, warning when it has passed:
    // the page is a warning, and its value is past the warning threshold.
    let (t, _) = run(&p, &[(0, Some(11.0)), (50, Some(21.0)), (100, Some(12.0))]);
    assert_eq!(
        t,
        vec![
            (0, State::Pending, Severity::Warning),
            (100, State::Firing, Severity::Warning)
        ]
    );
    // Critical still when `for` has passed: the page is critical.
    let (t, _) = run(&p, &[(0, Some(11.0)), (50, Some(21.0)), (100, Some(22.0))]);
    assert_eq!(t[1], (100, State::Firing, Severity::Critical));
    // Whatever the path, a firing transition's severity is the breach of
    // its own value.
    for v in [10.5, 15.0, 20.5, 40.0] {
        let mut phase = Phase::Inactive;
        for (at, x) in [(0, 30.0), (40, 11.0), (60, 25.0), (100, v)] {
            let s = p.step(&mut phase, at, Some(x));
            if let Some((State::Firing, sev)) = s.transition {
                assert_eq!(Some(sev), p.breach(Some(v)));
                assert!(v > p.threshold(sev));
            }
        }
    }
}

#[test]
fn keep_firing_for_bridges_short_dips() {
    let p = policy(0, 100);
    let (t, _) = run(
        &p,
        &[
            (0, Some(15.0)),
            (10, Some(1.0)),  // cleared, keep firing until 110
            (60, Some(15.0)), // back: dip forgotten
            (70, Some(1.0)),  // cleared again at 70
            (160, Some(1.0)), // 90 < 100: still firing
            (170, Some(1.0)), // 100 elapsed → resolved
        ],
    );
    assert_eq!(
        t,
        vec![
            (0, State::Firing, Severity::Warning),
            (170, State::Resolved, Severity::Warning)
        ]
    );
}

#[test]
fn keep_firing_for_returns_a_deadline() {
    let p = policy(0, 100);
    let mut phase = Phase::Inactive;
    p.step(&mut phase, 0, Some(15.0));
    let s = p.step(&mut phase, 10, Some(1.0));
    assert_eq!(s.transition, None);
    assert_eq!(s.wake_at, Some(110));
    let s = p.step(&mut phase, 110, Some(1.0));
    assert_eq!(s.transition, Some((State::Resolved, Severity::Warning)));
    assert_eq!(s.since, 0, "resolve carries the instance's start");
}

#[test]
fn hysteresis_prevents_flapping_between_clear_and_fire() {
    let p = policy(0, 0);
    // Oscillates between 6 (above clear) and 11 (above warning) for a long time.
    let steps: Vec<(i64, Option<f64>)> = (0..200)
        .map(|i| (i, Some(if i % 2 == 0 { 11.0 } else { 6.0 })))
        .collect();
    let (t, phase) = run(&p, &steps);
    assert_eq!(t, vec![(0, State::Firing, Severity::Warning)]);
    assert!(matches!(phase, Phase::Firing { .. }));
}

#[test]
fn without_hysteresis_an_oscillation_would_flap() {
    // The same oscillation with clear == warning threshold resolves and re-fires:
    // this is what the separate clear threshold exists to prevent.
    let mut p = policy(0, 0);
    p.clear = 10.0;
    let steps: Vec<(i64, Option<f64>)> = (0..10)
        .map(|i| (i, Some(if i % 2 == 0 { 11.0 } else { 6.0 })))
        .collect();
    let (t, _) = run(&p, &steps);
    assert_eq!(t.len(), 10);
}

#[test]
fn no_data_never_fires_and_resolves_a_firing_alert() {
    let p = policy(0, 0);
    let (t, _) = run(&p, &[(0, None), (1, Some(12.0)), (2, None)]);
    assert_eq!(
        t,
        vec![
            (1, State::Firing, Severity::Warning),
            (2, State::Resolved, Severity::Warning)
        ]
    );
}

#[test]
fn below_condition() {
    let p = AlertPolicy {
        levels: vec![(Severity::Warning, 15.0), (Severity::Critical, 0.0)],
        clear: 25.0,
        condition: Condition::Below,
        for_ms: 0,
        keep_firing_for_ms: 0,
    };
    let (t, _) = run(
        &p,
        &[
            (0, Some(40.0)),
            (1, Some(10.0)),
            (2, Some(-5.0)),
            (3, Some(20.0)),
            (4, Some(30.0)),
        ],
    );
    assert_eq!(
        t,
        vec![
            (1, State::Firing, Severity::Warning),
            (2, State::Escalated, Severity::Critical),
            (4, State::Resolved, Severity::Critical)
        ]
    );
}

#[test]
fn thresholds_are_strict() {
    let p = policy(0, 0);
    assert_eq!(p.breach(Some(10.0)), None);
    assert_eq!(p.breach(Some(10.000001)), Some(Severity::Warning));
    assert_eq!(p.breach(Some(20.5)), Some(Severity::Critical));
    assert!(!p.holds(Some(5.0)));
    assert!(p.holds(Some(5.5)));
}

#[test]
fn dedup_keys_are_deterministic_and_unambiguous() {
    let g = vec![
        ("product".to_string(), "router-x".to_string()),
        ("region".to_string(), "eu-west".to_string()),
    ];
    assert_eq!(
        Transition::make_dedup_key("complaint_rate_surge", &g, 1_763_791_800_000),
        "complaint_rate_surge/product=router-x,region=eu-west/1763791800000"
    );
    let tricky = vec![("a".to_string(), "x,b=y/%".to_string())];
    assert_eq!(
        Transition::make_dedup_key("r", &tricky, 1),
        "r/a=x%2Cb%3Dy%2F%25/1"
    );
    assert_eq!(Transition::make_dedup_key("r", &[], 7), "r/all/7");
}

#[test]
fn transition_json_matches_the_contract() {
    let t = Transition {
        rule: "complaint_rate_surge".into(),
        group: vec![
            ("product".into(), "router-x".into()),
            ("region".into(), "eu-west".into()),
        ],
        state: State::Firing,
        severity: Severity::Critical,
        at: 1_763_791_800_000,
        value: Some(0.083),
        threshold: 0.05,
        clear: 0.03,
        dedup_key: "complaint_rate_surge/product=router-x,region=eu-west/1763791800000".into(),
        started_at: 1_763_791_800_000,
        window_ms: 1_800_000,
        sample_event_ids: vec!["evt-1".into()],
        hints: Vec::new(),
    };
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.starts_with(
        r#"{"rule":"complaint_rate_surge","group":{"product":"router-x","region":"eu-west"},"state":"firing","severity":"critical","at":"2025-11-22T06:10:00Z","value":0.083,"threshold":0.05,"#
    ), "{json}");
    assert!(json.contains(
        r#""dedup_key":"complaint_rate_surge/product=router-x,region=eu-west/1763791800000""#
    ));
    assert!(json.contains(r#""window":"30m""#));
    let none = Transition { value: None, ..t };
    assert!(serde_json::to_string(&none)
        .unwrap()
        .contains(r#""value":null"#));
}
