//! A scaled instance's incident partition restored from a checkpoint older
//! than what its own outbox applied before a crash: the transitions after
//! the checkpoint are applied again (`submit_sequenced`), so the incident
//! comes back under its key instead of being lost.

use std::collections::HashMap;

use crate::alert::{Labels, State, Transition};
use crate::config::Config;
use crate::config::Severity;

use super::{IncidentManager, ManagerOptions};

const CONFIG: &str = r#"
[[rules]]
name = "a"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5, critical = 10 }

[[rules]]
name = "b"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[[incidents.routes]]
name = "product"
group_by = ["product"]
receivers = ["hook"]

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
"#;

fn t(rule: &str, sev: Severity, started: i64, at: i64) -> Transition {
    let group: Labels = [("product".to_string(), "p1".to_string())]
        .into_iter()
        .collect();
    Transition {
        rule: rule.to_string(),
        dedup_key: Transition::make_dedup_key(rule, &group, started),
        group,
        state: State::Firing,
        severity: sev,
        at,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: started,
        window_ms: 600_000,
        sample_event_ids: vec![format!("e{at}")],
        hints: Vec::new(),
    }
}

/// (key, rules of the alerts) of every open incident.
fn open(m: &IncidentManager) -> Vec<(String, Vec<String>)> {
    m.open_incidents()
        .into_iter()
        .map(|i| (i.key, i.alerts.iter().map(|a| a.rule.clone()).collect()))
        .collect()
}

fn restarted(dir: &std::path::Path, cfg: &Config, sequenced: bool) -> Vec<(String, Vec<String>)> {
    let registry = prometheus::Registry::new();
    let m = IncidentManager::open(cfg, &registry, dir, ManagerOptions::default()).expect("manager");
    // As `IncidentParts::new`, then the assignment with an empty checkpoint.
    m.set_ownership(3, &[]).expect("ownership");
    m.set_ownership(3, &[0, 1, 2]).expect("ownership");
    m.adopt(Vec::new(), Some(&[]), |_, _| false).expect("adopt");
    let again = [
        t("a", Severity::Warning, 1_000, 2_000),
        t("b", Severity::Warning, 3_000, 3_000),
        t("a", Severity::Critical, 1_000, 4_000),
    ];
    if sequenced {
        m.submit_sequenced(&again, 4_000).expect("submit");
    } else {
        m.submit(&again, 4_000).expect("submit");
    }
    open(&m)
}

#[test]
fn an_incident_applied_before_a_crash_but_not_checkpointed_comes_back_under_its_key() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).expect("config");
    let run = |sequenced: bool| {
        let dir = tempfile::tempdir().expect("dir");
        let registry = prometheus::Registry::new();
        let m = IncidentManager::open(&cfg, &registry, dir.path(), ManagerOptions::default())
            .expect("manager");
        m.set_ownership(3, &[0, 1, 2]).expect("ownership");
        m.submit_sequenced(
            &[
                t("a", Severity::Warning, 1_000, 2_000),
                t("b", Severity::Warning, 3_000, 3_000),
            ],
            3_000,
        )
        .expect("submit");
        let before = open(&m);
        assert_eq!(before.len(), 1, "{before:?}");
        // The crash: no checkpoint of the incident partition was written
        // after these transitions; the outbox recorded them as applied.
        drop(m);
        (before, restarted(dir.path(), &cfg, sequenced))
    };
    let (before, after) = run(true);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, before[0].0, "the same incident key");
    assert_eq!(after[0].1, ["a", "b"], "both alerts rejoined it");
    // What `submit` did: the two transitions skipped, the incident lost;
    // the escalation alone opened it again with one alert.
    let (_, skipped) = run(false);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].1, ["a"], "{skipped:?}");
}

/// A partition leaving takes its open incident and the notifications queued
/// for it in one step, with the receivers that heard of it even after the
/// stop's drain stopped them: afterwards nothing of it is queued here
/// (handed, the next owner sends them) and a later transition of its group
/// is not applied here.
#[test]
fn a_leaving_partition_takes_its_incidents_and_their_queue_in_one_step() {
    use crate::incident::lifecycle::NoValues;
    use crate::incident::outbox::Status;
    use crate::incident::routing::incident_partition;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).expect("config");
    let dir = tempfile::tempdir().expect("dir");
    let registry = prometheus::Registry::new();
    let m = IncidentManager::open(&cfg, &registry, dir.path(), ManagerOptions::default())
        .expect("manager");
    m.set_ownership(3, &[0, 1, 2]).expect("ownership");
    m.submit_sequenced(&[t("a", Severity::Warning, 1_000, 2_000)], 2_000)
        .expect("submit");
    m.tick(200_000, &mut NoValues).expect("tick");
    let pending = || {
        m.outbox()
            .count(Some(Status::Pending), None)
            .expect("count")
    };
    assert_eq!(
        pending(),
        1,
        "the open is queued: {:?} {:?}",
        m.open_incidents(),
        m.outbox().list(None, None, 10)
    );
    let labels: Labels = vec![("product".to_string(), "p1".to_string())];
    let q = incident_partition("product", &labels, 3);
    let keep: Vec<u32> = (0..3).filter(|&p| p != q).collect();
    // As at a stop: the drain ends (the receiver is down) and stops the
    // workers before the hand-over; who heard of the incident stays known.
    rt.block_on(m.shutdown(std::time::Duration::from_millis(100)));
    let mut leaving = m.release(3, &keep).expect("release");
    let l = leaving.remove(&q).expect("the partition's share");
    assert_eq!(l.incidents.len(), 1);
    assert_eq!(l.incidents[0].1, ["hook"], "the receiver that heard of it");
    assert_eq!(l.queued.len(), 1);
    assert_eq!(l.queued[0].seq, 1);
    assert!(m.open_incidents().is_empty());
    assert_eq!(pending(), 0, "handed, not sent from here");
    let handed = |m: &IncidentManager| {
        m.metrics()
            .notifications
            .with_label_values(&["hook", "handed"])
            .get()
    };
    assert_eq!(handed(&m), 1, "counted as handed");
    m.submit_sequenced(&[t("b", Severity::Warning, 3_000, 210_000)], 210_000)
        .expect("submit");
    m.tick(400_000, &mut NoValues).expect("tick");
    assert_eq!(pending(), 0);
    assert!(m.open_incidents().is_empty());
    // The next owner takes the incident and its queue, and counts it.
    let dir2 = tempfile::tempdir().expect("dir");
    let registry2 = prometheus::Registry::new();
    let next = IncidentManager::open(&cfg, &registry2, dir2.path(), ManagerOptions::default())
        .expect("manager");
    next.set_ownership(3, &[q]).expect("ownership");
    let taken = next
        .adopt(l.incidents, Some(&l.queued), |_, _| true)
        .expect("adopt");
    assert_eq!(taken, 1);
    let taken_over = next.metrics().taken_over.with_label_values(&["hook"]).get();
    assert_eq!(taken_over, 1, "counted as taken over");
    assert_eq!(handed(&next), 0);
    rt.block_on(next.shutdown(std::time::Duration::from_millis(100)));
}
