//! Incident keys never taken twice, and the levels a resolve shows.

use super::*;

/// An incident closed before keeps its key: a later incident of the same
/// route and labels whose first alert started in the same millisecond —
/// a second rule whose breach began at the same event and fires after the
/// first resolved, or an alert escalating after an operator closed its
/// incident — gets `-1`, `-2` …, and its own open from seq 1 (with the
/// first's key, the outbox's rows of it swallowed the second's).
#[test]
fn an_incident_never_takes_the_key_of_one_closed_before() {
    let p = [("product", "p"), ("region", "eu")];
    let q = [("product", "p")];
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    let base = "slice/product=p/1000";
    // Rule a fires and resolves; rule b, started at the same event, fires after.
    lc.apply(&t("a", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    lc.apply(
        &t("a", &p, State::Resolved, Severity::Warning, 120_000),
        &mut ch,
    );
    lc.apply(
        &t("b", &q, State::Firing, Severity::Warning, 200_000),
        &mut ch,
    );
    lc.apply(
        &t("b", &q, State::Resolved, Severity::Warning, 300_000),
        &mut ch,
    );
    let second = format!("{base}-1");
    assert_eq!(
        actions(&ch),
        vec![
            (base.to_string(), Action::Open, 1),
            (base.to_string(), Action::Resolve, 2),
            (second.clone(), Action::Open, 1),
            (second.clone(), Action::Resolve, 2),
        ]
    );
    // An operator closes the incident of a still-firing alert, which then
    // escalates: a third incident, `-2`.
    let mut ch = Changes::default();
    lc.apply(
        &t("a", &p, State::Firing, Severity::Warning, 400_000),
        &mut ch,
    );
    let third = format!("{base}-2");
    assert!(
        lc.incidents().contains_key(&third),
        "{:?}",
        lc.incidents().keys()
    );
    assert!(lc.close(&third, 500_000, Reason::Closed, "by hand", &mut ch));
    lc.apply(
        &t("a", &p, State::Escalated, Severity::Critical, 600_000),
        &mut ch,
    );
    lc.apply(
        &t("a", &p, State::Resolved, Severity::Critical, 700_000),
        &mut ch,
    );
    let fourth = format!("{base}-3");
    let got = actions(&ch);
    assert_eq!(
        got[got.len() - 2..],
        [
            (fourth.clone(), Action::Open, 1),
            (fourth, Action::Resolve, 2)
        ],
        "{got:?}"
    );
    // Keys the outbox had rows of count as taken too (a restart).
    let mut fresh = Lifecycle::new(&cfg(ROUTE));
    fresh.know_closed([base.to_string()]);
    let mut ch = Changes::default();
    fresh.apply(&t("b", &q, State::Firing, Severity::Warning, 1000), &mut ch);
    assert!(
        fresh.incidents().contains_key(&second),
        "{:?}",
        fresh.incidents().keys()
    );
    // An instance of a scaled group keeps the keys its partitions closed
    // while it owns them (as one instance does), none from its outbox, and
    // forgets a partition's when it leaves: its next owner applies again
    // what followed its checkpoint and must make the same keys.
    use crate::incident::routing::Ownership;
    let mut scaled = Lifecycle::new(&cfg(ROUTE));
    scaled.set_ownership(Ownership::new(1, [0]));
    scaled.know_closed([base.to_string()]);
    let mut ch = Changes::default();
    for tr in [
        t("a", &p, State::Firing, Severity::Warning, 1000),
        t("a", &p, State::Resolved, Severity::Warning, 120_000),
        t("b", &q, State::Firing, Severity::Warning, 200_000),
        t("b", &q, State::Resolved, Severity::Warning, 300_000),
    ] {
        scaled.apply(&tr, &mut ch);
    }
    assert_eq!(actions(&ch)[2], (second.clone(), Action::Open, 1));
    scaled.set_ownership(Ownership::new(1, []));
    scaled.set_ownership(Ownership::new(1, [0]));
    scaled.apply(
        &t("a", &p, State::Firing, Severity::Warning, 400_000),
        &mut ch,
    );
    assert!(
        scaled.incidents().contains_key(base),
        "{:?}",
        scaled.incidents().keys()
    );
}

/// A resolve shows the levels the alert resolved against: after a reload
/// moved a rule's threshold and clear, the resolve said "clears at" the old
/// clear level, below the value it resolved at.
#[test]
fn a_resolve_shows_the_levels_it_resolved_against() {
    let p = [("product", "p"), ("region", "eu")];
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    lc.apply(&t("a", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    let mut resolved = t("a", &p, State::Resolved, Severity::Warning, 120_000);
    (resolved.threshold, resolved.clear, resolved.value) = (60.0, 55.0, Some(53.0));
    lc.apply(&resolved, &mut ch);
    let last = ch.notifications.last().expect("a resolve");
    assert_eq!(last.action, Action::Resolve);
    assert!(
        last.summary.contains("clears at 55") && !last.summary.contains("clears at 3"),
        "{}",
        last.summary
    );
    let a = &last.alerts[0];
    assert_eq!((a.threshold, a.clear), (60.0, 55.0));
}
