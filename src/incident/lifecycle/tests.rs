use super::*;
use crate::config::Config;

fn cfg(routes: &str) -> Config {
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

fn t(rule: &str, group: &[(&str, &str)], state: State, sev: Severity, at: i64) -> Transition {
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

fn actions(ch: &Changes) -> Vec<(String, Action, u32)> {
    ch.notifications
        .iter()
        .map(|n| (n.dedup_key.clone(), n.action, n.seq))
        .collect()
}

const ROUTE: &str = r#"
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
    assert_eq!(ch.notifications[1].severity, Severity::Critical);
    lc.apply(
        &t("a", &p, State::Resolved, Severity::Critical, 80_000),
        &mut ch,
    );
    assert_eq!(ch.notifications[2].action, Action::Update);
    assert_eq!(ch.notifications[2].reason, Reason::AlertResolved);
    assert_eq!(
        ch.notifications[2].severity,
        Severity::Warning,
        "only b is active"
    );
    lc.apply(
        &t(
            "b",
            &[("product", "p")],
            State::Resolved,
            Severity::Warning,
            90_000,
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
    // A late tick sends one update, not one per missed interval.
    lc.due(1000 + 5_000_000, &mut Values(30.0), &mut ch);
    let ups: Vec<&Notification> = ch.notifications[1..].iter().collect();
    assert_eq!(ups.len(), 3);
    assert!(ups.iter().all(|n| n.reason == Reason::Progress));
    assert_eq!(ups[1].alerts[0].value, Some(20.0));
    assert_eq!(ups[1].alerts[0].peak, Some(50.0));
    assert_eq!(ups[1].duration_ms(), 1_200_000);
    assert!(
        ups[1].summary.contains("Still firing after 20m"),
        "{}",
        ups[1].summary
    );
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
