use super::due::MAX_QUIET_UPDATES;
use super::*;
use crate::config::Config;

pub(super) fn cfg(routes: &str) -> Config {
    let text = format!(
        r#"
[incidents]
update_interval = "10m"

[[rules]]
name = "a"
group_by = ["product", "region"]
window = "10m"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5, critical = 10 }}

[[rules]]
name = "b"
group_by = ["product"]
window = "10m"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5 }}

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
{routes}
"#
    );
    Config::from_toml_str(&text, &std::collections::HashMap::new()).unwrap()
}

pub(super) fn t(
    rule: &str,
    group: &[(&str, &str)],
    state: State,
    sev: Severity,
    at: i64,
) -> Transition {
    let group: Labels = group
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Transition {
        rule: rule.to_string(),
        dedup_key: Transition::make_dedup_key(rule, &group, 1000),
        group,
        state,
        severity: sev,
        at,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: 1000,
        window_ms: 600_000,
        sample_event_ids: vec![format!("e{at}")],
        hints: Vec::new(),
    }
}

pub(super) fn actions(ch: &Changes) -> Vec<(String, Action, u32)> {
    ch.notifications
        .iter()
        .map(|n| (n.dedup_key.clone(), n.action, n.seq))
        .collect()
}

pub(super) const ROUTE: &str = r#"
[[incidents.routes]]
name = "slice"
group_by = ["product"]
group_window = "1m"
"#;

#[test]
fn alerts_of_one_group_form_one_incident_that_resolves_once() {
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    let p = [("product", "p"), ("region", "eu")];
    lc.apply(&t("a", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    lc.apply(
        &t(
            "b",
            &[("product", "p")],
            State::Firing,
            Severity::Warning,
            20_000,
        ),
        &mut ch,
    );
    assert!(
        ch.notifications.is_empty(),
        "the open waits for the group window"
    );
    lc.due(60_999, &mut NoValues, &mut ch);
    assert!(ch.notifications.is_empty());
    lc.due(61_000, &mut NoValues, &mut ch);
    let key = "slice/product=p/1000";
    assert_eq!(actions(&ch), vec![(key.to_string(), Action::Open, 1)]);
    assert_eq!(ch.notifications[0].alerts.len(), 2, "both alerts' evidence");
    lc.apply(
        &t("a", &p, State::Escalated, Severity::Critical, 70_000),
        &mut ch,
    );
    assert_eq!(
        ch.notifications.len(),
        1,
        "the update waits for the other changes of its instant"
    );
    // Event time passes 70 s (every caller looks before a transition).
    lc.due(80_000, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications[1].severity, Severity::Critical);
    assert_eq!(ch.notifications[1].at, 70_000);
    lc.apply(
        &t("a", &p, State::Resolved, Severity::Critical, 80_000),
        &mut ch,
    );
    lc.due(139_999, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 2, "gathered for group_interval");
    lc.due(140_000, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications[2].action, Action::Update);
    assert_eq!(ch.notifications[2].reason, Reason::AlertResolved);
    assert_eq!(ch.notifications[2].at, 80_000);
    assert_eq!(
        ch.notifications[2].severity,
        Severity::Warning,
        "only b is active"
    );
    assert!(
        ch.notifications[2]
            .summary
            .starts_with("Resolved: a on product=p, region=eu after 1m. WARNING: b on product=p"),
        "{}",
        ch.notifications[2].summary
    );
    lc.apply(
        &t(
            "b",
            &[("product", "p")],
            State::Resolved,
            Severity::Warning,
            150_000,
        ),
        &mut ch,
    );
    let last = ch.notifications.last().unwrap();
    assert_eq!((last.action, last.seq), (Action::Resolve, 4));
    assert_eq!(
        last.severity,
        Severity::Critical,
        "resolved: highest reached"
    );
    assert!(lc.incidents().is_empty());
    assert_eq!(ch.removed, vec![key.to_string()]);
}

#[test]
fn progress_updates_carry_current_value_peak_and_duration() {
    struct Values(f64);
    impl ValueSource for Values {
        fn current(&mut self, _: &str, _: &Labels) -> Option<f64> {
            Some(self.0)
        }
    }
    let mut lc = Lifecycle::new(&cfg(""));
    let mut ch = Changes::default();
    lc.apply(
        &t(
            "b",
            &[("product", "p")],
            State::Firing,
            Severity::Warning,
            1000,
        ),
        &mut ch,
    );
    assert_eq!(ch.notifications.len(), 1, "default route: no group window");
    lc.due(1000 + 600_000 - 1, &mut Values(50.0), &mut ch);
    assert_eq!(ch.notifications.len(), 1);
    lc.due(1000 + 600_000, &mut Values(50.0), &mut ch);
    lc.due(1000 + 1_200_000, &mut Values(20.0), &mut ch);
    // A late look sends one update per interval passed, each at its time.
    lc.due(1000 + 5_000_000, &mut Values(30.0), &mut ch);
    let ups: Vec<&Notification> = ch.notifications[1..].iter().collect();
    assert_eq!(ups.len(), 8);
    assert!(ups.iter().all(|n| n.reason == Reason::Progress));
    let times: Vec<i64> = ups.iter().map(|n| n.at).collect();
    let every_interval: Vec<i64> = (1..=8).map(|k| 1000 + k * 600_000).collect();
    assert_eq!(times, every_interval);
    let seqs: Vec<u32> = ups.iter().map(|n| n.seq).collect();
    assert_eq!(seqs, (2..=9).collect::<Vec<u32>>());
    assert_eq!(ups[7].alerts[0].value, Some(30.0));
    assert_eq!(ups[1].alerts[0].value, Some(20.0));
    // The peak of the transitions' values, the values earlier progress
    // updates showed and the current one: it never goes back.
    assert_eq!(ups[0].alerts[0].peak, Some(50.0));
    assert_eq!(ups[1].alerts[0].peak, Some(50.0));
    assert!(ups.iter().all(|n| n.alerts[0].peak == Some(50.0)));
    assert!(ups[1].summary.contains("peak 50"), "{}", ups[1].summary);
    // Kept with the incident: a restart shows the same peak.
    let inc = lc.incidents().values().next().unwrap().clone();
    assert_eq!(
        inc.shown_peaks.values().copied().collect::<Vec<_>>(),
        [50.0]
    );
    let back: Incident = serde_json::from_str(&serde_json::to_string(&inc).unwrap()).unwrap();
    let mut other = Lifecycle::new(&cfg(""));
    other.restore(vec![back]);
    let mut after = Changes::default();
    other.due(1000 + 5_400_000, &mut Values(10.0), &mut after);
    assert_eq!(after.notifications.len(), 1);
    assert_eq!(after.notifications[0].alerts[0].value, Some(10.0));
    assert_eq!(after.notifications[0].alerts[0].peak, Some(50.0));
    // The alert's own evidence (every other notification) keeps the
    // transitions' peak.
    assert_eq!(inc.alerts[0].peak, Some(6.0));
    assert_eq!(ups[1].duration_ms(), 1_200_000);
    assert!(
        ups[1].summary.contains("Still firing after 20m"),
        "{}",
        ups[1].summary
    );
}

/// An alert resolved for want of data (its window's volume fell below the
/// rule's minimum: the transition's value is null) is shown with no value,
/// not with the last one seen, which may still be past the threshold.
#[test]
fn a_resolve_for_want_of_data_shows_no_value() {
    let mut lc = Lifecycle::new(&cfg(""));
    let mut ch = Changes::default();
    let p = [("product", "p")];
    lc.apply(&t("b", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    let mut gone = t("b", &p, State::Resolved, Severity::Warning, 5000);
    gone.value = None;
    lc.apply(&gone, &mut ch);
    let resolve = ch
        .notifications
        .iter()
        .find(|n| n.action == Action::Resolve)
        .expect("a resolve");
    assert_eq!(resolve.alerts[0].value, None);
    assert_eq!(resolve.alerts[0].peak, Some(6.0));
    assert!(
        resolve
            .summary
            .contains("has too little data to judge (no value; peak 6"),
        "{}",
        resolve.summary
    );
    assert!(!resolve.summary.contains("back to"), "{}", resolve.summary);
}

#[test]
fn repeated_transitions_do_not_join_twice_and_state_round_trips() {
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    let f = t(
        "a",
        &[("product", "p"), ("region", "eu")],
        State::Firing,
        Severity::Warning,
        1000,
    );
    lc.apply(&f, &mut ch);
    lc.apply(&f, &mut ch);
    let inc = lc.incidents().values().next().unwrap().clone();
    assert_eq!(inc.alerts.len(), 1);
    let json = serde_json::to_string(&inc).unwrap();
    let back: Incident = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inc);
    let mut other = Lifecycle::new(&cfg(ROUTE));
    other.restore(vec![back]);
    other.flush(5000, &mut ch);
    assert_eq!(ch.notifications.last().unwrap().action, Action::Open);
}

/// Progress updates stop after MAX_QUIET_UPDATES in a row without other
/// news (a clock that leapt weeks), and start again when the incident
/// changes: counted in event time, the same however the service looks.
#[test]
fn a_leap_of_weeks_sends_a_bounded_run_of_progress_updates() {
    let mut lc = Lifecycle::new(&cfg(""));
    let mut ch = Changes::default();
    let p = [("product", "p")];
    lc.apply(&t("b", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    lc.due(i64::MAX - 1, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 1 + MAX_QUIET_UPDATES as usize);
    assert_eq!(lc.next_due(), None);
    lc.due(i64::MAX, &mut NoValues, &mut ch);
    assert_eq!(ch.notifications.len(), 1 + MAX_QUIET_UPDATES as usize);
    // The same count looking at every interval.
    let mut step = Lifecycle::new(&cfg(""));
    let mut ch2 = Changes::default();
    step.apply(
        &t("b", &p, State::Firing, Severity::Warning, 1000),
        &mut ch2,
    );
    for k in 1..=(MAX_QUIET_UPDATES as i64 + 5) {
        step.due(1000 + k * 600_000, &mut NoValues, &mut ch2);
    }
    assert_eq!(ch2.notifications.len(), ch.notifications.len());
    assert_eq!(ch2.notifications, ch.notifications);
}

/// Current values are shown in the progress update that asked for them and
/// not kept: a later escalation or resolve carries the transitions'
/// evidence alone, as in a replay that has no current values.
#[test]
fn current_values_show_in_progress_updates_only() {
    struct Values(f64);
    impl ValueSource for Values {
        fn current(&mut self, _: &str, _: &Labels) -> Option<f64> {
            Some(self.0)
        }
    }
    let run = |values: &mut dyn ValueSource| {
        let mut lc = Lifecycle::new(&cfg(ROUTE));
        let mut ch = Changes::default();
        let p = [("product", "p"), ("region", "eu")];
        lc.apply(&t("a", &p, State::Firing, Severity::Warning, 1000), &mut ch);
        lc.due(61_000, values, &mut ch);
        lc.due(661_000, values, &mut ch);
        lc.apply(
            &t("a", &p, State::Resolved, Severity::Warning, 700_000),
            &mut ch,
        );
        ch.notifications
    };
    let live = run(&mut Values(99.0));
    let replay = run(&mut NoValues);
    let reasons: Vec<Reason> = live.iter().map(|n| n.reason).collect();
    assert_eq!(
        reasons,
        [Reason::Opened, Reason::Progress, Reason::Resolved]
    );
    assert_eq!(live[1].alerts[0].value, Some(99.0));
    assert_eq!(live[1].alerts[0].peak, Some(99.0));
    assert_eq!(
        live[0], replay[0],
        "the open: the firing transition's evidence"
    );
    assert_eq!(live[2], replay[2], "the resolve: no current value kept");
    assert_eq!(live[2].alerts[0].peak, Some(6.0));
}

/// An open still in its group window when the input ends goes out at the
/// end of the window, as in a run that reads on.
#[test]
fn an_open_flushed_at_the_end_keeps_the_time_it_was_due() {
    let mut lc = Lifecycle::new(&cfg(ROUTE));
    let mut ch = Changes::default();
    let p = [("product", "p"), ("region", "eu")];
    lc.apply(&t("a", &p, State::Firing, Severity::Warning, 1000), &mut ch);
    lc.flush(30_000, &mut ch);
    assert_eq!(ch.notifications.len(), 1);
    assert_eq!(
        (ch.notifications[0].action, ch.notifications[0].at),
        (Action::Open, 61_000)
    );
}

mod looks {
    //! Progress updates are a function of the transitions and of event time:
    //! however often the service looks (batches, ticks), the notifications
    //! are those of a replay that looks only at each transition.
    use super::*;
    use proptest::prelude::*;

    /// Alerts: (rule, group); three per product, so that several can
    /// join, escalate or resolve in one product's incident at one instant.
    fn alert(i: usize) -> (&'static str, Vec<(&'static str, &'static str)>) {
        match i % 6 {
            0 => ("a", vec![("product", "p"), ("region", "eu")]),
            1 => ("a", vec![("product", "q"), ("region", "us")]),
            2 => ("b", vec![("product", "p")]),
            3 => ("b", vec![("product", "q")]),
            4 => ("a", vec![("product", "p"), ("region", "us")]),
            _ => ("a", vec![("product", "q"), ("region", "eu")]),
        }
    }

    /// A stream of well-formed alert lifecycles: `steps` of (alert, minutes
    /// after the previous transition, escalate rather than resolve).
    fn stream(steps: &[(usize, i64, bool)]) -> Vec<Transition> {
        let mut state: [Option<(i64, Severity)>; 6] = [None; 6];
        let mut at = 1000;
        let mut out = Vec::new();
        for &(i, gap, escalate) in steps {
            at += gap * 60_000 + gap % 7 * 1000;
            let (rule, group) = alert(i);
            let i = i % 6;
            let (next, st, sev, since) = match state[i] {
                None => (
                    Some((at, Severity::Warning)),
                    State::Firing,
                    Severity::Warning,
                    at,
                ),
                Some((s, Severity::Warning)) if escalate && rule == "a" => (
                    Some((s, Severity::Critical)),
                    State::Escalated,
                    Severity::Critical,
                    s,
                ),
                Some((s, sev)) => (None, State::Resolved, sev, s),
            };
            state[i] = next;
            let mut tr = t(rule, &group, st, sev, at);
            tr.started_at = since;
            tr.dedup_key = Transition::make_dedup_key(rule, &tr.group, since);
            tr.value = Some(5.0 + gap as f64);
            out.push(tr);
        }
        out
    }

    fn replay(cfg: &Config, ts: &[Transition], end: i64) -> Vec<Notification> {
        let mut lc = Lifecycle::new(cfg);
        let mut ch = Changes::default();
        for tr in ts {
            lc.due(tr.at, &mut NoValues, &mut ch);
            lc.apply(tr, &mut ch);
        }
        lc.flush(end, &mut ch);
        ch.notifications
    }

    /// Batches of `cuts` sizes; after each, looks at `looks` fractions of
    /// the way to the next transition (as the live service's batch end and
    /// ticks do: never past the next transition's time, which the engine's
    /// clock has not reached yet), and restarts where `restarts` says (the
    /// incidents persisted as JSON and restored into a new lifecycle, also
    /// between two changes of one instant).
    fn live(
        cfg: &Config,
        ts: &[Transition],
        end: i64,
        cuts: &[usize],
        looks: &[u8],
        restarts: &[bool],
    ) -> Vec<Notification> {
        let mut lc = Lifecycle::new(cfg);
        let mut ch = Changes::default();
        let (mut i, mut c, mut l) = (0, 0, 0);
        while i < ts.len() {
            let n = cuts.get(c).copied().unwrap_or(1).max(1);
            c += 1;
            let batch = &ts[i..(i + n).min(ts.len())];
            for tr in batch {
                lc.due(tr.at, &mut NoValues, &mut ch);
                lc.apply(tr, &mut ch);
            }
            i += batch.len();
            let from = batch.last().map_or(0, |t| t.at);
            let to = ts.get(i).map_or(end, |t| t.at);
            for _ in 0..2 {
                let f = i64::from(looks.get(l).copied().unwrap_or(0));
                l += 1;
                lc.due(from + (to - from) * f / 255, &mut NoValues, &mut ch);
            }
            if restarts.get(c).copied().unwrap_or(false) {
                let saved: Vec<Incident> = lc
                    .incidents()
                    .values()
                    .map(|i| serde_json::from_value(serde_json::to_value(i).unwrap()).unwrap())
                    .collect();
                lc = Lifecycle::new(cfg);
                // As the outbox has them: every key notified so far.
                lc.know_closed(ch.notifications.iter().map(|n| n.dedup_key.clone()));
                lc.restore(saved);
            }
        }
        lc.due(end, &mut NoValues, &mut ch);
        lc.flush(end, &mut ch);
        ch.notifications
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn progress_updates_do_not_depend_on_when_the_service_looks(
            // A third of the steps at the previous one's instant.
            steps in prop::collection::vec(
                (0usize..6, (0i64..75).prop_map(|g| (g - 25).max(0)), any::<bool>()),
                1..30,
            ),
            cuts in prop::collection::vec(1usize..6, 0..30),
            looks in prop::collection::vec(any::<u8>(), 0..60),
            tail in 0i64..120,
            grouped in any::<bool>(),
            restarts in prop::collection::vec(any::<bool>(), 0..30),
        ) {
            // Grouped: changes a few minutes apart are gathered (5 min).
            let route = ROUTE.replace(
                "group_window = \"1m\"",
                "group_window = \"1m\"\ngroup_interval = \"5m\"",
            );
            let cfg = cfg(if grouped { &route } else { "" });
            let ts = stream(&steps);
            let end = ts.last().map_or(0, |t| t.at) + tail * 60_000;
            let want = replay(&cfg, &ts, end);
            let got = live(&cfg, &ts, end, &cuts, &looks, &restarts);
            prop_assert_eq!(&got, &want);
            // Each incident's notifications count up from 1 without a gap
            // (an alert that fires again at the instant it resolved opens an
            // incident under the same key: counted afresh).
            let mut seqs: BTreeMap<&str, u32> = BTreeMap::new();
            // Changes of one kind at one instant made one update: never two
            // in a row for one incident.
            let mut last: BTreeMap<&str, (Action, Reason, i64)> = BTreeMap::new();
            for n in &want {
                let this = (n.action, n.reason, n.at);
                let before = last.insert(n.dedup_key.as_str(), this);
                prop_assert!(
                    !(n.action == Action::Update && before == Some(this)),
                    "two updates {:?} in a row for {}", this, n.dedup_key
                );
                let s = seqs.entry(n.dedup_key.as_str()).or_default();
                if n.action == Action::Open {
                    *s = 0;
                }
                *s += 1;
                prop_assert_eq!(n.seq, *s);
            }
        }
    }
}

mod keys;
