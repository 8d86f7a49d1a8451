//! Firing alerts handed to an outbox at a restart
//! ([`IncidentManager::adopt_firing`]): only an outbox with no history
//! adopts, and an alert firing for days opens once, without a progress
//! update for every `update_interval` since it fired.

use std::collections::HashMap;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};
use crate::incident::lifecycle::NoValues;
use crate::incident::outbox::Outbox;

use super::{IncidentManager, ManagerOptions};

mod key_tests;

const CONFIG: &str = r#"
[[rules]]
name = "a"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[incidents]
update_interval = "30m"

[[incidents.routes]]
name = "product"
group_by = ["product"]
group_window = "0s"
receivers = ["hook"]

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
"#;

const HOUR: i64 = 3_600_000;

fn firing(product: &str, started: i64, at: i64) -> Transition {
    let group: Labels = [("product".to_string(), product.to_string())]
        .into_iter()
        .collect();
    Transition {
        rule: "a".to_string(),
        dedup_key: Transition::make_dedup_key("a", &group, started),
        group,
        state: State::Firing,
        severity: Severity::Warning,
        at,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: started,
        window_ms: 600_000,
        sample_event_ids: Vec::new(),
        hints: Vec::new(),
    }
}

fn rows(dir: &std::path::Path) -> u64 {
    Outbox::open(dir)
        .expect("outbox")
        .count(None, None)
        .expect("count")
}

#[test]
fn a_fresh_outbox_adopts_an_old_alert_once_and_one_with_history_does_not() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _g = rt.enter();
    let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).expect("config");
    let now = 1_800_000_000_000;
    // Firing for two days, handed over at the engine's clock.
    let old = firing("p1", now - 48 * HOUR, now);
    let dir = tempfile::tempdir().expect("dir");
    let m = IncidentManager::open(
        &cfg,
        &prometheus::Registry::new(),
        dir.path(),
        ManagerOptions::default(),
    )
    .expect("manager");
    let adopted = m.adopt_firing(std::slice::from_ref(&old)).expect("adopt");
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0], old.dedup_key);
    m.tick(now, &mut NoValues).expect("tick");
    assert_eq!(
        rows(dir.path()),
        1,
        "the open alone, no backlog of progress updates"
    );
    assert_eq!(m.open_incidents().len(), 1);
    // Adopting again (the next restart): the outbox has history now.
    assert!(m.adopt_firing(&[old]).expect("adopt").is_empty());
    drop(m);
    // An outbox with history, but no record of this alert (pruned after
    // `incidents.retention`, or an incident an operator closed long ago):
    // not adopted — it would page at every restart.
    let m = IncidentManager::open(
        &cfg,
        &prometheus::Registry::new(),
        dir.path(),
        ManagerOptions::default(),
    )
    .expect("manager");
    let other = firing("p2", now - HOUR, now);
    assert!(m.adopt_firing(&[other]).expect("adopt").is_empty());
    assert_eq!(rows(dir.path()), 1);
}
