//! What crisiswatch sends to receivers that have limits, through real HTTP
//! servers on loopback: the size of a crisis across a thousand slices
//! (PagerDuty's 512,000 bytes).

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::{State, Transition};
use crisiswatch::config::Severity;
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use incidents_support::*;
use prometheus::Registry;
use serde_json::Value;

const ROUTING_KEY: &str = "R0UTINGKEYSECRET0123456789abcdef";

/// One `count` rule per (product, store), an incident per product, and
/// `receivers` (TOML).
fn config_text(receivers: &str) -> String {
    format!(
        r#"
[incidents]
update_interval = "0"
[[incidents.routes]]
name = "product"
group_by = ["product"]
group_window = "1m"

[[rules]]
name = "store_complaints"
description = "Complaints per product and store: a crisis shows on many stores at once."
group_by = ["product", "store"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 5 }}
runbook = "https://runbooks.example.com/store-complaints"
dashboard = "https://grafana.example.com/d/crisiswatch-stores"
{receivers}
"#
    )
}

/// The alert of store `i` of product `router-x`, firing or resolved at `at`.
fn store_alert(i: usize, state: State, at: i64, started: i64) -> Transition {
    let mut t = tr(
        "store_complaints",
        "router-x",
        state,
        Severity::Warning,
        at,
        started,
    );
    t.group.push(("store".into(), format!("store-{i:04}")));
    t.dedup_key = Transition::make_dedup_key(&t.rule, &t.group, t.started_at);
    t.sample_event_ids = (0..5).map(|j| format!("evt-{i:04}-{j}")).collect();
    t
}

fn open(text: &str, dir: &tempfile::TempDir, reg: &Registry) -> std::sync::Arc<IncidentManager> {
    IncidentManager::open(&config(text), reg, dir.path(), ManagerOptions::default()).unwrap()
}

/// A crisis on 1,000 stores is one incident of 1,000 alerts, more evidence
/// than PagerDuty takes: every event PagerDuty gets stays within its 512,000
/// bytes (as it counts them: the bytes received), the alert list trimmed and
/// the rest counted, so the page goes out instead of being refused with a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alert_incident_pages_pagerduty_within_512000_bytes() {
    let pd = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, format!("{ROUTING_KEY}\n")).unwrap();
    let text = config_text(&format!(
        r#"
[[receivers]]
name = "pd"
kind = "pagerduty"
url = "{}"
routing_key_file = "{}"
"#,
        pd.url(),
        key_file.display()
    ));
    let reg = Registry::new();
    let m = open(&text, &dir, &reg);
    let t0 = 1_000_000;
    let fire: Vec<Transition> = (0..1000)
        .map(|i| store_alert(i, State::Firing, t0, t0))
        .collect();
    m.submit(&fire, t0).unwrap();
    // The group window ends: the incident opens with every alert.
    m.submit(&[], t0 + 61_000).unwrap();
    let count = |b: &Value| {
        let d = &b["payload"]["custom_details"];
        d["alerts"].as_array().map_or(0, Vec::len)
            + d["alerts_omitted"].as_u64().unwrap_or(0) as usize
    };
    let reqs = pd
        .wait_until(Duration::from_secs(60), "a trigger with 1000 alerts", |r| {
            r.iter().any(|r| count(&r.json()) == 1000)
        })
        .await;
    for r in &reqs {
        assert!(r.body.len() <= 512_000, "{} bytes", r.body.len());
    }
    let big = reqs
        .iter()
        .map(|r| r.json())
        .find(|b| count(b) == 1000)
        .unwrap();
    assert_eq!(big["event_action"], "trigger");
    let omitted = big["payload"]["custom_details"]["alerts_omitted"]
        .as_u64()
        .unwrap();
    assert!(omitted > 0, "the evidence was trimmed to fit");
    m.shutdown(Duration::from_secs(1)).await;
}
