//! Tests of the updates an open incident gathers (`group_interval`).

use super::super::tests::{actions, cfg, t, ROUTE};
use super::super::*;

/// Alerts `a` on `n` regions of product `p`, with `rule` `a` grouped per
/// product by the route: `state` at `at`.
fn regions(n: usize, state: State, sev: Severity, at: i64) -> Vec<Transition> {
    (0..n)
        .map(|i| {
            let region = format!("r{i:03}");
            t(
                "a",
                &[("product", "p"), ("region", &region)],
                state,
                sev,
                at,
            )
        })
        .collect()
}

/// `ts` spread out: the i-th `step` ms after the one before it, from `from`.
fn spread(mut ts: Vec<Transition>, from: i64, step: i64) -> Vec<Transition> {
    for (i, t) in ts.iter_mut().enumerate() {
        t.at = from + i as i64 * step;
    }
    ts
}

/// A crisis that trips one rule on 300 slices of one incident seconds
/// apart pages once, not 300 times: an open incident gathers its changes
/// for the route's `group_interval` (1 minute by default) into one update,
/// which names them; an escalation that raises the incident's severity
/// sends it at once; a restart while one is held sends the same one; the
/// incident resolving replaces it.
#[test]
fn an_open_incident_gathers_its_changes_into_one_update() {
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    let step = |lc: &mut Lifecycle, ts: &[Transition], ch: &mut Changes| {
        for tr in ts {
            lc.due(tr.at, &mut NoValues, ch);
            lc.apply(tr, ch);
        }
    };
    let first = regions(1, State::Firing, Severity::Warning, 1000);
    step(&mut lc, &first, &mut ch);
    lc.due(61_000, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 1, "the open");
    let key = "slice/product=p/1000";

    // 299 more regions, one every 200 ms from 120.2 s: one update, a
    // minute after the first of them, at the last one's time.
    let all = regions(300, State::Firing, Severity::Warning, 0);
    let more = spread(all[1..].to_vec(), 120_200, 200);
    step(&mut lc, &more, &mut ch);
    lc.due(180_199, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 1, "gathering for a minute");
    assert_eq!(lc.next_due(), Some(180_200));
    lc.due(180_200, &mut NoValues, &mut ch);
    assert_eq!(actions(&ch)[1], (key.to_string(), Action::Update, 2));
    let joined = &ch.notifications[1];
    assert_eq!((joined.reason, joined.at), (Reason::AlertJoined, 179_800));
    assert_eq!(joined.since, Some(120_200));
    assert_eq!(joined.alerts.len(), 300);
    assert!(
        joined
            .summary
            .starts_with("299 alerts joined (a on product=p, region=r001 (warning); "),
        "{}",
        joined.summary
    );
    assert!(
        joined.summary.contains("; and 296 more) after "),
        "{}",
        joined.summary
    );
    assert!(
        joined.summary.contains("Also firing: a ×299."),
        "{}",
        joined.summary
    );

    // From 200 s 50 resolve; at 230 s 100 escalate to critical: the
    // incident's severity rose, so the update goes out once event time
    // passes 230 s, with both.
    let resolved = spread(
        regions(150, State::Resolved, Severity::Warning, 0)[100..].to_vec(),
        200_000,
        100,
    );
    step(&mut lc, &resolved, &mut ch);
    let escalated = regions(100, State::Escalated, Severity::Critical, 230_000);
    step(&mut lc, &escalated, &mut ch);
    assert_eq!(lc.next_due(), Some(230_001));
    lc.due(230_001, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 3);
    let n = &ch.notifications[2];
    assert_eq!(
        (n.reason, n.seq, n.severity),
        (Reason::Escalated, 3, Severity::Critical)
    );
    assert!(
        n.summary
            .starts_with("100 alerts escalated (a on product=p, region=r000 to CRITICAL; "),
        "{}",
        n.summary
    );
    assert!(
        n.summary
            .contains("; 50 alerts resolved (a on product=p, region=r100; "),
        "{}",
        n.summary
    );
    assert!(
        n.summary.contains(" after 3m. CRITICAL: a on product=p"),
        "{}",
        n.summary
    );

    // Persisted while held (a restart between two changes it gathers): the
    // same single update.
    let part = regions(200, State::Resolved, Severity::Warning, 300_000);
    step(&mut lc, &part[150..170], &mut ch);
    let saved: Vec<Incident> = lc
        .incidents()
        .values()
        .map(|i| serde_json::from_str(&serde_json::to_string(i).unwrap()).unwrap())
        .collect();
    assert!(saved[0].held.is_some());
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    lc.restore(saved);
    step(&mut lc, &part[170..], &mut ch);
    lc.due(359_999, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 3);
    lc.due(360_000, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 4);
    assert_eq!(ch.notifications[3].seq, 4);
    assert!(
        ch.notifications[3]
            .summary
            .starts_with("50 alerts resolved"),
        "{}",
        ch.notifications[3].summary
    );

    // The other 100 resolve at 400 s: the incident resolves; the update
    // held for the first 99 of them gives way to the resolve.
    let rest = regions(300, State::Resolved, Severity::Critical, 400_000);
    let mut rest: Vec<Transition> = rest[..100].to_vec();
    rest.extend(regions(300, State::Resolved, Severity::Warning, 400_000)[200..].to_vec());
    step(&mut lc, &rest, &mut ch);
    assert_eq!(actions(&ch)[4], (key.to_string(), Action::Resolve, 5));
    assert_eq!(ch.notifications.len(), 5);
    assert!(lc.incidents().is_empty());
}

/// `group_interval = "0s"`: only the changes of one instant are gathered.
#[test]
fn a_zero_group_interval_gathers_one_instant() {
    let route = ROUTE.replace(
        "group_window = \"1m\"",
        "group_window = \"1m\"\ngroup_interval = \"0s\"",
    );
    assert!(route.contains("group_interval"));
    let mut lc = Lifecycle::new(&cfg(&route));
    let mut ch = Changes::default();
    let all = regions(4, State::Firing, Severity::Warning, 1000);
    let mut ts = vec![all[0].clone()];
    ts.extend(regions(4, State::Firing, Severity::Warning, 90_000)[1..3].to_vec());
    ts.extend(spread(all[3..].to_vec(), 90_500, 1));
    for tr in &ts {
        lc.due(tr.at, &mut NoValues, &mut ch);
        lc.apply(tr, &mut ch);
    }
    lc.flush(100_000, &mut ch);
    let got: Vec<(Action, i64)> = ch.notifications.iter().map(|n| (n.action, n.at)).collect();
    assert_eq!(
        got,
        [
            (Action::Open, 61_000),
            (Action::Update, 90_000),
            (Action::Update, 90_500)
        ]
    );
}

/// The input ends at the instant of a held update: it goes out, at its time.
#[test]
fn a_held_update_goes_out_when_the_input_ends() {
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    for tr in regions(1, State::Firing, Severity::Warning, 1000)
        .into_iter()
        .chain(
            regions(3, State::Firing, Severity::Warning, 90_000)
                .into_iter()
                .skip(1),
        )
    {
        lc.due(tr.at, &mut NoValues, &mut ch);
        lc.apply(&tr, &mut ch);
    }
    lc.flush(90_000, &mut ch);
    let got: Vec<(Action, Reason, i64)> = ch
        .notifications
        .iter()
        .map(|n| (n.action, n.reason, n.at))
        .collect();
    assert_eq!(
        got,
        [
            (Action::Open, Reason::Opened, 61_000),
            (Action::Update, Reason::AlertJoined, 90_000)
        ]
    );
}
