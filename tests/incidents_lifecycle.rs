//! Incidents end to end in one process: the real engine's transitions, the
//! lifecycle, the outbox and real HTTP receivers on loopback.

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::{State, Transition};
use crisiswatch::config::Severity;
use crisiswatch::engine::Engine;
use crisiswatch::incident::lifecycle::NoValues;
use crisiswatch::incident::outbox::Status;
use crisiswatch::incident::silence::{Matcher, Silence};
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use hmac::{Hmac, Mac};
use incidents_support::*;
use prometheus::Registry;
use serde_json::Value;
use sha2::Sha256;

const T0: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    mac.verify_slice(&hex::decode(hex_sig).unwrap()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_tripping_four_rules_opens_one_incident_with_all_evidence_and_resolves_once() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "s3cr3t-signing-key\n").unwrap();
    let text = format!(
        r#"
[incidents]
update_interval = "0"
[[incidents.routes]]
name = "slice"
group_by = ["product", "region"]
group_window = "1m"
{}
[[receivers]]
name = "hook"
kind = "generic"
url = "{}"
secret_file = "{}"
"#,
        rules_toml(),
        rx.url(),
        secret_file.display()
    );
    let cfg = config(&text);
    let mut engine = Engine::new(&cfg).unwrap();
    let reg = Registry::new();
    let m = IncidentManager::open(
        &cfg,
        &reg,
        &dir.path().join("data"),
        ManagerOptions::default(),
    )
    .unwrap();
    // Every route's notification series exist from the start, at zero: a
    // series born at its first increment hides it from `increase()`.
    let zero = reg.gather().into_iter().any(|f| {
        f.get_name() == "crisiswatch_incident_notifications_total"
            && f.get_metric().iter().any(|m| {
                let l: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.get_name(), l.get_value()))
                    .collect();
                l.contains(&("route", "slice"))
                    && l.contains(&("action", "open"))
                    && m.get_counter().get_value() == 0.0
            })
    });
    assert!(zero, "no zero series for route slice, action open");
    let mut out: Vec<Transition> = Vec::new();
    // The crisis: six social safety complaints and four feedbacks in one minute on one slice.
    for i in 0..6 {
        let line = format!(
            r#"{{"id":"c{i}","type":"complaint","ts":{},"customer_id":"u{i}","attrs":{{"product":"router-x","region":"eu-west","channel":"social","category":"safety"}}}}"#,
            T0 + i * 5_000
        );
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
    for i in 0..4 {
        let line = format!(
            r#"{{"id":"f{i}","type":"feedback","ts":{},"score":2,"attrs":{{"product":"router-x","region":"eu-west"}}}}"#,
            T0 + 2_000 + i * 5_000
        );
        engine
            .process_bytes(line.as_bytes(), None, &mut out)
            .unwrap();
    }
    let fired: Vec<&str> = out
        .iter()
        .filter(|t| t.state == State::Firing)
        .map(|t| t.rule.as_str())
        .collect();
    assert_eq!(fired.len(), 4, "the engine fired four rules: {fired:?}");
    m.submit(&out, engine.clock().unwrap()).unwrap();
    out.clear();
    assert!(
        rx.requests().is_empty(),
        "the open waits for the group window"
    );
    // Event time moves on: the group window closes, later the windows empty and everything resolves.
    engine.advance_clock(T0 + 2 * 60_000, &mut out);
    m.submit(&out, T0 + 2 * 60_000).unwrap();
    out.clear();
    engine.advance_clock(T0 + 40 * 60_000, &mut out);
    assert_eq!(out.iter().filter(|t| t.state == State::Resolved).count(), 4);
    m.submit(&out, T0 + 40 * 60_000).unwrap();
    let reqs = rx
        .wait_until(Duration::from_secs(20), "the resolve", |r| {
            r.iter().any(|x| x.json()["action"] == "resolve")
        })
        .await;
    m.shutdown(Duration::from_secs(5)).await;
    let docs: Vec<Value> = rx.requests().iter().map(|r| r.json()).collect();
    let actions: Vec<&str> = docs.iter().map(|d| d["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "open").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "resolve").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(actions.first(), Some(&"open"));
    assert_eq!(actions.last(), Some(&"resolve"));
    let key = docs[0]["dedup_key"].as_str().unwrap();
    assert!(
        key.starts_with("slice/product=router-x,region=eu-west/"),
        "{key}"
    );
    assert!(
        docs.iter().all(|d| d["dedup_key"] == key),
        "one dedup_key from open to resolve"
    );
    // The open carries every alert's evidence.
    let open = &docs[0];
    let alerts = open["alerts"].as_array().unwrap();
    let mut rules: Vec<&str> = alerts.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    rules.sort_unstable();
    assert_eq!(
        rules,
        [
            "complaint_count",
            "detractor_count",
            "severe_count",
            "social_count"
        ]
    );
    for a in alerts {
        assert_eq!(
            a["group"],
            serde_json::json!({"product": "router-x", "region": "eu-west"})
        );
        assert!(
            a["value"].as_f64().unwrap() > a["threshold"].as_f64().unwrap(),
            "{a}"
        );
        assert_eq!(a["window"], "10m");
        assert!(!a["sample_event_ids"].as_array().unwrap().is_empty(), "{a}");
        assert!(a["started_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-20T10:00"));
    }
    for field in [
        "rule",
        "group",
        "severity",
        "value",
        "threshold",
        "window",
        "started_at",
        "summary",
        "sample_event_ids",
    ] {
        assert!(
            !open[field].is_null(),
            "contract field {field} missing: {open}"
        );
    }
    // The body's links are its headline rule's (only complaint_count has
    // any here); each alert's own travel with its evidence.
    if open["rule"] == "complaint_count" {
        assert_eq!(
            open["links"]["runbook"],
            "https://runbooks.example.com/complaints"
        );
        assert_eq!(
            open["links"]["dashboard"],
            "https://grafana.example.com/d/crisiswatch"
        );
    } else {
        assert!(open.get("links").is_none(), "{open}");
    }
    let linked = alerts
        .iter()
        .find(|a| a["rule"] == "complaint_count")
        .unwrap();
    assert_eq!(linked["runbook"], "https://runbooks.example.com/complaints");
    assert_eq!(
        linked["dashboard"],
        "https://grafana.example.com/d/crisiswatch"
    );
    let summary = open["summary"].as_str().unwrap();
    assert!(
        summary.contains("product=router-x, region=eu-west") && summary.contains("Also firing"),
        "{summary}"
    );
    // Every request is signed with the configured secret.
    for r in &reqs {
        let sig = r
            .headers
            .get("x-crisiswatch-signature")
            .expect("signature header");
        assert!(
            verify("s3cr3t-signing-key", &r.body, sig),
            "signature does not verify"
        );
        assert!(!verify("another-key", &r.body, sig));
    }
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_incident_notifications_total",
            &[("route", "slice"), ("action", "open")]
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn receiver_down_then_up_gets_every_notification_in_order_per_incident() {
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let cfg = config(&generic_receiver(
        "hook",
        &url,
        r#"backoff_initial = "200ms", backoff_max = "5s", breaker_failures = 3, breaker_cooldown = "10s""#,
    ));
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    use Severity::*;
    use State::*;
    let steps = [
        tr("a", "p1", Firing, Warning, 1000, 1000),
        tr("a", "p2", Firing, Warning, 2000, 2000),
        tr("a", "p1", Escalated, Critical, 3000, 1000),
        tr("a", "p3", Firing, Warning, 4000, 4000),
        tr("a", "p2", Resolved, Warning, 5000, 2000),
        tr("a", "p1", Resolved, Critical, 6000, 1000),
        tr("a", "p3", Escalated, Critical, 7000, 4000),
    ];
    for t in &steps {
        m.submit(std::slice::from_ref(t), t.at).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The last escalation's update waits for the other changes of its
    // instant: event time moves on (the next event, or the idle clock).
    assert_eq!(m.outbox().queue_stats("hook").unwrap().pending, 6);
    m.submit(&[], 7001).unwrap();
    let ob = m.outbox().clone();
    assert_eq!(
        ob.queue_stats("hook").unwrap().pending,
        7,
        "all seven persisted, none delivered"
    );
    assert!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "connect")]
        ) >= 3.0
    );
    // The receiver comes back.
    let rx = Receiver::start_on(addr).await;
    rx.wait_until(Duration::from_secs(120), "seven notifications", |r| {
        r.len() >= 7
    })
    .await;
    eventually(Duration::from_secs(30), "outbox drained", || {
        ob.queue_stats("hook").unwrap().pending == 0
    })
    .await;
    let docs: Vec<Value> = rx.requests().iter().map(|r| r.json()).collect();
    let got: Vec<(String, u64, String)> = docs
        .iter()
        .map(|d| {
            (
                d["dedup_key"].as_str().unwrap().to_string(),
                d["seq"].as_u64().unwrap(),
                d["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), 7, "nothing twice: {got:?}");
    let per = |p: &str| -> Vec<String> {
        got.iter()
            .filter(|(k, _, _)| k.contains(&format!("product={p}/")))
            .map(|(_, s, a)| format!("{s}:{a}"))
            .collect()
    };
    assert_eq!(per("p1"), ["1:open", "2:update", "3:resolve"]);
    assert_eq!(per("p2"), ["1:open", "2:resolve"]);
    assert_eq!(per("p3"), ["1:open", "2:update"]);
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn silenced_incidents_are_recorded_not_delivered_and_silences_expire() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let text = format!(
        "[incidents]\nupdate_interval = \"10m\"\n{}",
        generic_receiver("hook", &rx.url(), "")
    );
    let m =
        IncidentManager::open(&config(&text), &reg, dir.path(), ManagerOptions::default()).unwrap();
    let now = m.now_ms();
    let ob = m.outbox().clone();
    let five_min = 5 * 60_000;
    let s = Silence::new(
        vec![Matcher::parse("product=p1").unwrap()],
        now,
        five_min,
        "test".into(),
        "known issue".into(),
    )
    .unwrap();
    ob.add_silence(&s).unwrap();
    use Severity::*;
    use State::*;
    m.submit(&[tr("a", "p1", Firing, Warning, 1000, 1000)], 1000)
        .unwrap();
    m.submit(&[tr("b", "p1", Firing, Warning, 1000, 1000)], 1000)
        .unwrap();
    m.submit(&[tr("a", "p2", Firing, Warning, 1000, 1000)], 1000)
        .unwrap();
    m.submit(&[tr("b", "p1", Resolved, Warning, 2000, 1000)], 2000)
        .unwrap();
    rx.wait_for(1, Duration::from_secs(10)).await;
    let muted = ob.list(Some(Status::Muted), None, 10).unwrap();
    assert_eq!(
        muted.len(),
        3,
        "a/p1 open, b/p1 open and resolve recorded as muted"
    );
    // The silence expires by itself; a/p1's next notification (a progress
    // update) reaches the receiver, as an open since it never heard of it.
    tokio::time::sleep(Duration::from_millis(five_min as u64)).await;
    m.tick(1000 + 10 * 60_000, &mut NoValues).unwrap();
    m.submit(
        &[tr("a", "p1", Resolved, Warning, 1000 + 11 * 60_000, 1000)],
        1000 + 11 * 60_000,
    )
    .unwrap();
    let reqs = rx
        .wait_until(Duration::from_secs(10), "a/p1 open and resolve", |r| {
            r.iter()
                .filter(|x| {
                    x.json()["dedup_key"]
                        .as_str()
                        .unwrap()
                        .starts_with("default/rule=a,product=p1")
                })
                .count()
                == 2
        })
        .await;
    let p1: Vec<Value> = reqs
        .iter()
        .map(|r| r.json())
        .filter(|d| {
            d["dedup_key"]
                .as_str()
                .unwrap()
                .starts_with("default/rule=a,product=p1")
        })
        .collect();
    assert_eq!(p1[0]["action"], "open");
    assert_eq!(p1[0]["reason"], "progress");
    assert_eq!(p1[1]["action"], "resolve");
    assert!(
        !rx.requests()
            .iter()
            .any(|r| r.json()["dedup_key"].as_str().unwrap().contains("rule=b")),
        "the incident silenced from start to end never reached the receiver"
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notifications_total",
            &[("receiver", "hook"), ("outcome", "muted")]
        ),
        3.0
    );
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn pagerduty_events_trigger_and_resolve_by_dedup_key_with_evidence() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, "R0UT1NGKEY0000000000000000000000\n").unwrap();
    let text = format!(
        r#"
[[rules]]
name = "complaint_rate"
group_by = ["product"]
window = "1h"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5, critical = 10 }}
runbook = "https://runbooks.example.com/rate"
dashboard = "https://grafana.example.com/d/rate"

[[receivers]]
name = "pd"
kind = "pagerduty"
url = "{}"
routing_key_file = "{}"
"#,
        rx.url(),
        key_file.display()
    );
    let reg = Registry::new();
    let m = IncidentManager::open(
        &config(&text),
        &reg,
        &dir.path().join("data"),
        ManagerOptions::default(),
    )
    .unwrap();
    let long_product = "x".repeat(1500);
    let mut fire = tr(
        "complaint_rate",
        &long_product,
        State::Firing,
        Severity::Critical,
        1000,
        1000,
    );
    fire.sample_event_ids = vec!["e-1".into(), "e-2".into()];
    m.submit(&[fire], 1000).unwrap();
    m.submit(
        &[tr(
            "complaint_rate",
            &long_product,
            State::Resolved,
            Severity::Critical,
            90_000,
            1000,
        )],
        90_000,
    )
    .unwrap();
    let reqs = rx.wait_for(2, Duration::from_secs(10)).await;
    let (trigger, resolve) = (reqs[0].json(), reqs[1].json());
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY0000000000000000000000");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    let p = &trigger["payload"];
    let summary = p["summary"].as_str().unwrap();
    assert!(
        summary.chars().count() <= 1024 && summary.ends_with('…'),
        "{} chars",
        summary.chars().count()
    );
    assert_eq!(p["severity"], "critical");
    assert!(p["timestamp"]
        .as_str()
        .unwrap()
        .starts_with("1970-01-01T00:00:01"));
    assert!(p["source"].as_str().unwrap().starts_with("crisiswatch"));
    let ev = &p["custom_details"]["alerts"][0];
    assert_eq!(ev["rule"], "complaint_rate");
    assert_eq!(ev["sample_event_ids"], serde_json::json!(["e-1", "e-2"]));
    assert_eq!(ev["threshold"], 5.0);
    let links: Vec<&str> = trigger["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            "https://grafana.example.com/d/rate",
            "https://runbooks.example.com/rate"
        ]
    );
    m.shutdown(Duration::from_secs(1)).await;
}

/// Issue 11 (pager limits): a slice with a 300-character attribute value and
/// an attribute named like Alertmanager's own labels reaches PagerDuty, a
/// generic webhook and an Alertmanager with one bounded key (≤ 255
/// characters, a readable prefix), the same in every receiver and in the
/// outbox; PagerDuty gets strings where it expects strings.
#[tokio::test(start_paused = true)]
async fn long_attribute_values_keep_pager_limits_and_one_key_everywhere() {
    let (pd, hook, am) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, "R0UT1NGKEY0000000000000000000000\n").unwrap();
    let text = format!(
        r#"
[[rules]]
name = "complaint_rate"
group_by = ["product", "alertname"]
window = "1h"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5 }}

[[receivers]]
name = "pd"
kind = "pagerduty"
url = "{}"
routing_key_file = "{}"

[[receivers]]
name = "am"
kind = "alertmanager"
url = "{}"
{}"#,
        pd.url(),
        key_file.display(),
        am.url(),
        generic_receiver("hook", &hook.url(), "")
    );
    let reg = Registry::new();
    let m = IncidentManager::open(
        &config(&text),
        &reg,
        &dir.path().join("data"),
        ManagerOptions::default(),
    )
    .unwrap();
    let long = format!("router-{}", "x".repeat(293));
    assert_eq!(long.chars().count(), 300);
    let with_group = |mut t: Transition| {
        t.group.push(("alertname".into(), "spoofed".into()));
        t.dedup_key = Transition::make_dedup_key(&t.rule, &t.group, t.started_at);
        t
    };
    let fire = with_group(tr(
        "complaint_rate",
        &long,
        State::Firing,
        Severity::Warning,
        1000,
        1000,
    ));
    m.submit(&[fire], 1000).unwrap();
    let resolve = with_group(tr(
        "complaint_rate",
        &long,
        State::Resolved,
        Severity::Warning,
        90_000,
        1000,
    ));
    m.submit(&[resolve], 90_000).unwrap();
    let pd_reqs = pd.wait_for(2, Duration::from_secs(10)).await;
    let hook_reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    let am_reqs = am.wait_for(1, Duration::from_secs(10)).await;
    let (trigger, pd_resolve) = (pd_reqs[0].json(), pd_reqs[1].json());
    let key = trigger["dedup_key"].as_str().unwrap().to_string();
    assert!(key.chars().count() <= 255, "{} characters", key.len());
    assert!(
        key.starts_with("default/rule=complaint_rate,product=router-xxx"),
        "readable prefix: {key}"
    );
    assert!(key.ends_with("/1000"), "start time kept: {key}");
    assert_eq!(pd_resolve["dedup_key"], key.as_str());
    for r in &hook_reqs {
        assert_eq!(r.json()["dedup_key"], key.as_str(), "generic webhook");
    }
    let am_alert = &am_reqs[0].json()[0];
    assert_eq!(am_alert["labels"]["incident"], key.as_str(), "alertmanager");
    assert_eq!(am_alert["labels"]["alertname"], "complaint_rate");
    assert_eq!(am_alert["labels"]["attr_alertname"], "spoofed");
    assert_eq!(am_alert["labels"]["product"], long.as_str());
    let rows = m.outbox().list(None, None, 100).unwrap();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row.incident, key, "outbox row of {}", row.receiver);
    }
    // Strings where PagerDuty expects strings.
    let p = &trigger["payload"];
    for field in [
        "summary",
        "source",
        "severity",
        "timestamp",
        "class",
        "group",
    ] {
        assert!(p[field].is_string(), "payload.{field} = {}", p[field]);
    }
    assert_eq!(p["class"], "complaint_rate");
    assert!(p["source"].as_str().unwrap().chars().count() <= 255);
    assert_eq!(
        p["custom_details"]["alerts"][0]["group"]["product"],
        long.as_str(),
        "the evidence keeps the full value"
    );
    assert!(p["custom_details"].get("alerts_omitted").is_none());
    m.shutdown(Duration::from_secs(1)).await;
}
