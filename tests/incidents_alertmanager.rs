//! The Alertmanager receiver against a real Alertmanager (Debian package
//! `prometheus-alertmanager`, installed by `scripts/install-test-deps.sh`):
//! the alert shows while firing, is re-pushed as Prometheus does, and resolves.

mod incidents_support;
mod kafka_support;

use std::time::{Duration, Instant};

use crisiswatch::alert::State;
use crisiswatch::config::Severity;
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use incidents_support::*;
use kafka_support::alertmanager::Alertmanager;
use serde_json::Value;

/// A started Alertmanager (it answers ready), and a client.
async fn ready_alertmanager() -> (Alertmanager, reqwest::Client) {
    // Blocks while it starts (well under a second): before any task runs.
    (Alertmanager::start(), reqwest::Client::new())
}

async fn alerts(c: &reqwest::Client, am: &str) -> Option<Vec<Value>> {
    let r = c.get(format!("{am}/api/v2/alerts")).send().await.ok()?;
    r.json::<Vec<Value>>().await.ok()
}

/// Polls Alertmanager's alerts until `pred` finds what it wants (bounded).
async fn until<T>(
    c: &reqwest::Client,
    am: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(list) = alerts(c, am).await {
            if let Some(v) = pred(&list) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager: {what} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find<'a>(list: &'a [Value], product: &str) -> Option<&'a Value> {
    list.iter()
        .find(|a| a["labels"]["product"] == product && a["labels"]["alertname"] == "complaint_rate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_shows_the_alert_while_firing_and_resolves_it() {
    let (am, c) = ready_alertmanager().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        r#"
[[rules]]
name = "complaint_rate"
description = "Complaints per order."
group_by = ["product"]
window = "1h"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5, critical = 10 }}
runbook = "https://runbooks.example.com/rate"

[[receivers]]
name = "am"
kind = "alertmanager"
url = "{}"
delivery = {{ resend_interval = "1s" }}
"#,
        am.url()
    ));
    let reg = prometheus::Registry::new();
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    let now = m.now_ms();
    use Severity::*;
    use State::*;
    m.submit(
        &[
            tr(
                "complaint_rate",
                "router-x",
                Firing,
                Critical,
                now - 60_000,
                now - 120_000,
            ),
            tr(
                "complaint_rate",
                "phone-y",
                Firing,
                Warning,
                now - 60_000,
                now - 120_000,
            ),
        ],
        now,
    )
    .unwrap();
    let first = until(&c, &am.url(), "router-x firing", |l| {
        find(l, "router-x").cloned()
    })
    .await;
    assert_eq!(first["status"]["state"], "active");
    assert_eq!(first["labels"]["severity"], "critical");
    assert!(first["labels"]["incident"]
        .as_str()
        .unwrap()
        .starts_with("default/rule=complaint_rate,product=router-x/"));
    assert!(first["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("router-x"));
    assert_eq!(
        first["annotations"]["runbook_url"],
        "https://runbooks.example.com/rate"
    );
    assert_eq!(first["generatorURL"], "https://runbooks.example.com/rate");
    // Re-sent while firing: endsAt keeps moving ahead.
    let ends0 = first["endsAt"].as_str().unwrap().to_string();
    until(&c, &am.url(), "a re-push moving endsAt", |l| {
        find(l, "router-x")
            .filter(|a| a["endsAt"].as_str().unwrap() > ends0.as_str())
            .map(|_| ())
    })
    .await;
    // Resolve router-x; phone-y keeps firing (and being re-pushed).
    let at = m.now_ms();
    m.submit(
        &[tr(
            "complaint_rate",
            "router-x",
            Resolved,
            Critical,
            at,
            now - 120_000,
        )],
        at,
    )
    .unwrap();
    until(&c, &am.url(), "router-x resolved", |l| {
        find(l, "router-x").is_none().then_some(())
    })
    .await;
    let attempts = metric(
        &reg,
        "crisiswatch_notification_attempts_total",
        &[("receiver", "am")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &reg,
        "crisiswatch_notification_attempts_total",
        &[("receiver", "am")],
    ) < attempts + 2.0
    {
        assert!(Instant::now() < deadline, "no re-push of phone-y");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = alerts(&c, &am.url()).await.unwrap();
    assert!(
        find(&list, "router-x").is_none(),
        "a re-push does not bring a resolved alert back"
    );
    assert_eq!(find(&list, "phone-y").unwrap()["status"]["state"], "active");
    m.shutdown(Duration::from_secs(2)).await;
}

/// Escalated, an alert is another Alertmanager alert (`severity` is a
/// label): the copy pushed before the escalation resolves at once, it does
/// not fire beside the critical one until its `endsAt` (4 × a long
/// `resend_interval`) runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_leaves_one_alert_firing_in_real_alertmanager() {
    let (am, c) = ready_alertmanager().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        r#"
[[rules]]
name = "complaint_rate"
group_by = ["product"]
window = "1h"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5, critical = 10 }}

[[receivers]]
name = "am"
kind = "alertmanager"
url = "{}"
delivery = {{ resend_interval = "10m" }}
"#,
        am.url()
    ));
    let reg = prometheus::Registry::new();
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    let now = m.now_ms();
    use Severity::*;
    use State::*;
    let started = now - 120_000;
    m.submit(
        &[tr(
            "complaint_rate",
            "phone-y",
            Firing,
            Warning,
            now - 60_000,
            started,
        )],
        now,
    )
    .unwrap();
    let firing = |l: &[Value], sev: &str| {
        l.iter()
            .filter(|a| a["labels"]["product"] == "phone-y" && a["labels"]["severity"] == sev)
            .count()
    };
    until(&c, &am.url(), "phone-y firing at warning", |l| {
        (firing(l, "warning") == 1).then_some(())
    })
    .await;
    let at = m.now_ms();
    m.submit(
        &[tr(
            "complaint_rate",
            "phone-y",
            Escalated,
            Critical,
            at,
            started,
        )],
        // Event time has moved past the escalation's instant: its update
        // (held for other changes of that instant) goes out.
        at + 1,
    )
    .unwrap();
    let list = until(
        &c,
        &am.url(),
        "phone-y critical, its warning copy ended",
        |l| (firing(l, "critical") == 1 && firing(l, "warning") == 0).then(|| l.to_vec()),
    )
    .await;
    let phone: Vec<&Value> = list
        .iter()
        .filter(|a| a["labels"]["product"] == "phone-y")
        .collect();
    assert_eq!(phone.len(), 1, "{phone:?}");
    assert_eq!(phone[0]["status"]["state"], "active");
    m.shutdown(Duration::from_secs(2)).await;
}
