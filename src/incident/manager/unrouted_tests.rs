//! Alerts no route takes: counted per rule in
//! `crisiswatch_alerts_unrouted_total`, logged once per rule, and nothing
//! else happens to them; routed alerts and the default route count nothing.

use std::collections::HashMap;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};

use super::{IncidentManager, ManagerOptions};

/// Rules `a` (product, region; warning and critical) and `b` (product),
/// a generic receiver that is never reached, then `routes`.
fn config(routes: &str) -> Config {
    let text = format!(
        r#"
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
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("config")
}

fn t(rule: &str, product: &str, state: State, sev: Severity, at: i64) -> Transition {
    let mut group: Labels = vec![("product".to_string(), product.to_string())];
    if rule == "a" {
        group.push(("region".to_string(), "eu-west".to_string()));
    }
    Transition {
        rule: rule.to_string(),
        dedup_key: Transition::make_dedup_key(rule, &group, 1_000),
        group,
        state,
        severity: sev,
        at,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: 1_000,
        window_ms: 600_000,
        sample_event_ids: vec![format!("e{at}")],
        hints: Vec::new(),
    }
}

/// Submits `transitions` to a new manager for `cfg`; returns the unrouted
/// counts of `a` and `b` as `/metrics` shows them, the open incidents and
/// what was logged.
fn run(cfg: &Config, batches: &[Vec<Transition>]) -> ([f64; 2], usize, String) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let dir = tempfile::tempdir().expect("dir");
    let registry = prometheus::Registry::new();
    let m = IncidentManager::open(cfg, &registry, dir.path(), ManagerOptions::default())
        .expect("manager");
    let ((), log) = crate::testlog::logged(|| {
        for (i, batch) in batches.iter().enumerate() {
            m.submit(batch, 10_000 * (i as i64 + 1)).expect("submit");
        }
    });
    let count = |rule: &str| {
        registry
            .gather()
            .iter()
            .filter(|f| f.get_name() == "crisiswatch_alerts_unrouted_total")
            .flat_map(|f| f.get_metric().iter())
            .find(|s| s.get_label().iter().any(|l| l.get_value() == rule))
            .map(|s| s.get_counter().get_value())
            .expect("a series per rule from the start")
    };
    ([count("a"), count("b")], m.open_incidents().len(), log)
}

#[test]
fn alerts_a_typo_keeps_from_every_route_are_counted_per_rule_and_logged_once() {
    // The field trial's typo: `regoin` is on no alert, so the route takes none.
    let cfg = config(
        "[[incidents.routes]]\nname = \"product\"\nmatch = { regoin = \"eu-west\" }\ngroup_by = [\"product\"]\ngroup_window = \"0s\"\n",
    );
    let (counts, open, log) = run(
        &cfg,
        &[
            vec![
                t("a", "p1", State::Firing, Severity::Warning, 2_000),
                t("a", "p2", State::Firing, Severity::Warning, 2_000),
                t("b", "p1", State::Firing, Severity::Warning, 3_000),
            ],
            // Escalating, it is routed again, and again taken by none.
            vec![t("a", "p1", State::Escalated, Severity::Critical, 12_000)],
        ],
    );
    assert_eq!(counts, [3.0, 1.0]);
    assert_eq!(open, 0);
    let warned = |rule: &str| {
        log.lines()
            .filter(|l| {
                l.contains("WARN")
                    && l.contains(&format!("Rule {rule} has an alert"))
                    && l.contains("no [[incidents.routes]] takes")
            })
            .count()
    };
    assert_eq!(warned("a"), 1, "{log}");
    assert_eq!(warned("b"), 1, "{log}");
    assert!(
        log.contains("firing on product=p1, region=eu-west"),
        "names the slice: {log}"
    );
}

#[test]
fn routed_alerts_count_nothing_and_neither_does_the_default_route() {
    let batch = vec![
        t("a", "p1", State::Firing, Severity::Warning, 2_000),
        t("b", "p1", State::Firing, Severity::Warning, 3_000),
    ];
    // No routes: the implicit default route takes every alert.
    let (counts, open, log) = run(&config(""), std::slice::from_ref(&batch));
    assert_eq!((counts, open), ([0.0, 0.0], 2));
    assert!(!log.contains("no [[incidents.routes]]"), "{log}");
    // A route matching `a`'s region, a catch-all for the rest.
    let cfg = config(
        "[[incidents.routes]]\nname = \"eu\"\nmatch = { region = \"eu-west\" }\n[[incidents.routes]]\nname = \"rest\"\n",
    );
    let (counts, open, _) = run(&cfg, std::slice::from_ref(&batch));
    assert_eq!((counts, open), ([0.0, 0.0], 2));
}

#[test]
fn an_alert_below_every_route_s_min_severity_counts_until_it_escalates_into_one() {
    let cfg = config("[[incidents.routes]]\nname = \"pager\"\nmin_severity = \"critical\"\n");
    let (counts, open, _) = run(
        &cfg,
        &[
            vec![t("a", "p1", State::Firing, Severity::Warning, 2_000)],
            vec![t("a", "p1", State::Escalated, Severity::Critical, 12_000)],
        ],
    );
    assert_eq!(counts, [1.0, 0.0]);
    assert_eq!(open, 1);
}

#[test]
fn an_alert_in_an_incident_whose_route_a_reload_removed_is_not_unrouted() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let dir = tempfile::tempdir().expect("dir");
    let registry = prometheus::Registry::new();
    let before = config("[[incidents.routes]]\nname = \"all\"\n");
    let m = IncidentManager::open(&before, &registry, dir.path(), ManagerOptions::default())
        .expect("manager");
    m.submit(
        &[t("a", "p1", State::Firing, Severity::Warning, 2_000)],
        2_000,
    )
    .expect("submit");
    let after = config("[[incidents.routes]]\nname = \"b_only\"\nrules = [\"b\"]\n");
    m.apply(m.prepare(&after).expect("prepare"))
        .expect("reload");
    // It escalates in the incident it is in; a new alert of `a` has no route.
    m.submit(
        &[
            t("a", "p1", State::Escalated, Severity::Critical, 12_000),
            t("a", "p2", State::Firing, Severity::Warning, 13_000),
        ],
        13_000,
    )
    .expect("submit");
    assert_eq!(m.metrics().unrouted.with_label_values(&["a"]).get(), 1);
    assert_eq!(m.open_incidents().len(), 1);
}
