//! Receivers with limits and manners, through real HTTP servers on
//! loopback: a crisis across a thousand slices within PagerDuty's 512,000
//! bytes and an Alertmanager proxy's body limit, and a gateway that echoes
//! the refused request without the routing key reaching logs or the outbox.

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

/// The label sets of the alerts in an Alertmanager request body, with
/// their `endsAt`.
fn am_alerts(body: &Value) -> Vec<(String, String)> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|a| (a["labels"].to_string(), a["endsAt"].to_string()))
        .collect()
}

/// A crisis on 1,000 stores pushed to an Alertmanager behind a proxy that
/// takes at most 64 KiB (`max_body_bytes = 65536`): every push, the
/// notification's and the re-pushes, is split into requests within the
/// bound, and together they carry every alert once — what the single
/// 800 KB request carried before. A re-push leaves out the alert that
/// resolved half an hour ago (its notification carried its `endsAt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_pushes_are_split_within_max_body_bytes_and_lose_no_alert() {
    let am = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "am-signing-secret\n").unwrap();
    let max_body = 65_536;
    let text = config_text(&format!(
        r#"
[[receivers]]
name = "am"
kind = "alertmanager"
url = "http://{}"
secret_file = "{}"
max_body_bytes = {max_body}
delivery = {{ resend_interval = "1s" }}
"#,
        am.addr,
        secret_file.display()
    ));
    let reg = Registry::new();
    let m = open(&text, &dir, &reg);
    // Event time an hour ago: the store that resolves does so 30 minutes
    // before now, beyond a re-push's 15 minutes.
    let now = chrono::Utc::now().timestamp_millis();
    let (t0, resolved_at) = (now - 3_600_000, now - 1_800_000);
    let fire: Vec<Transition> = (0..1001)
        .map(|i| store_alert(i, State::Firing, t0, t0))
        .collect();
    m.submit(&fire, t0).unwrap();
    m.submit(&[], t0 + 61_000).unwrap();
    m.submit(
        &[store_alert(1000, State::Resolved, resolved_at, t0)],
        resolved_at,
    )
    .unwrap();
    m.submit(&[], resolved_at + 61_000).unwrap();
    let old_store = "\"store\":\"store-1000\"";
    let ended = format!("\"{}\"", crisiswatch::event::format_ts(resolved_at));
    // Pushes by `webhook-id` (the parts of one push share its prefix), in
    // the order they began.
    let pushes = |reqs: &[Request]| {
        let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for r in reqs {
            let id = r.headers["webhook-id"].clone();
            let push: String = id.split('_').take(2).collect::<Vec<_>>().join("_");
            let alerts = am_alerts(&r.json());
            match out.iter_mut().find(|(p, _)| *p == push) {
                Some((_, list)) => list.extend(alerts),
                None => out.push((push, alerts)),
            }
        }
        out
    };
    let has_old = |alerts: &[(String, String)]| alerts.iter().any(|(l, _)| l.contains(old_store));
    let reqs = am
        .wait_until(
            Duration::from_secs(60),
            "a re-push after the store resolved",
            |reqs| {
                // An oversized request fails the test below at once.
                if reqs.iter().any(|r| r.body.len() > max_body) {
                    return true;
                }
                let p = pushes(reqs);
                let resolved = p
                    .iter()
                    .position(|(_, a)| a.iter().any(|(l, e)| l.contains(old_store) && *e == ended));
                resolved.is_some_and(|i| p[i + 1..].iter().any(|(_, a)| a.len() == 1000))
            },
        )
        .await;
    for r in &reqs {
        assert!(r.body.len() <= max_body, "{} bytes", r.body.len());
        assert_eq!(r.status, 202);
    }
    let p = pushes(&reqs);
    assert!(reqs.len() >= 3 * 12, "{} requests", reqs.len());
    // The notification that opened the incident: every store, once, firing.
    let (_, opened) = &p[0];
    let labels: std::collections::BTreeSet<&String> = opened.iter().map(|(l, _)| l).collect();
    assert_eq!(opened.len(), 1001);
    assert_eq!(labels.len(), 1001, "each alert once");
    for i in 0..1001 {
        let store = format!("\"store\":\"store-{i:04}\"");
        assert!(labels.iter().any(|l| l.contains(&store)), "{store} pushed");
    }
    // The update that resolved one store: all 1,001 again, that one ended.
    let resolved = p
        .iter()
        .position(|(_, a)| a.iter().any(|(l, e)| l.contains(old_store) && *e == ended))
        .unwrap();
    assert_eq!(p[resolved].1.len(), 1001);
    // Re-pushes after it: the 1,000 firing stores, not the one long resolved.
    let after = &p[resolved + 1..];
    assert!(!after.is_empty());
    for (_, alerts) in after {
        assert!(!has_old(alerts), "a re-push left the resolved store out");
        let firing: std::collections::BTreeSet<&String> = alerts.iter().map(|(l, _)| l).collect();
        let expected: std::collections::BTreeSet<&String> = labels
            .iter()
            .copied()
            .filter(|l| !l.contains(old_store))
            .collect();
        assert_eq!(firing, expected);
        assert_eq!(alerts.len(), 1000);
    }
    m.shutdown(Duration::from_secs(1)).await;
}

/// Everything crisiswatch logs in this test binary (installed once, at
/// TRACE for crisiswatch's own targets).
fn captured_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        struct W(&'static std::sync::Mutex<Vec<u8>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("crisiswatch=trace"))
            .with_ansi(false)
            .with_writer(move || W(buf))
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one subscriber per test binary");
        buf
    })
}

/// A PagerDuty gateway that answers 400 with the tail of the request it
/// refused — the routing key: the failure detail stored in the outbox and
/// the WARN logged name the refusal but not the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_echoing_the_request_does_not_leak_the_routing_key() {
    let log = captured_log();
    let pd = Receiver::start().await;
    // The field test's gateway: the last 150 bytes of the request.
    pd.set_default(Reply::echo(400, 150));
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
    m.submit(&[store_alert(1, State::Firing, t0, t0)], t0)
        .unwrap();
    m.submit(&[], t0 + 61_000).unwrap();
    let reqs = pd.wait_for(1, Duration::from_secs(30)).await;
    assert!(
        String::from_utf8_lossy(&reqs[0].body[reqs[0].body.len() - 150..]).contains(ROUTING_KEY),
        "the receiver echoed the key"
    );
    let failed = || {
        m.outbox()
            .list(
                Some(crisiswatch::incident::outbox::Status::Failed),
                None,
                10,
            )
            .unwrap()
    };
    eventually(Duration::from_secs(30), "the trigger failed", || {
        !failed().is_empty()
    })
    .await;
    let detail = failed()[0].last_error.clone().unwrap_or_default();
    assert!(detail.starts_with("HTTP 400: "), "{detail}");
    assert!(
        detail.contains("\"routing_key\":\"**REDACTED**\""),
        "{detail}"
    );
    assert!(!detail.contains(ROUTING_KEY), "{detail}");
    m.shutdown(Duration::from_secs(1)).await;
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        log.contains("Receiver refused a notification") && log.contains("REDACTED"),
        "the refusal is logged: {log}"
    );
    assert!(!log.contains(ROUTING_KEY), "{log}");
    assert!(!log.contains(&ROUTING_KEY[..16]), "{log}");
}
