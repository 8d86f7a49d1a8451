//! Incidents that end without their alerts resolving, against a real
//! Kafka-protocol broker (Tansu), a real `crisiswatch run` and a real HTTP
//! receiver: an operator closes one (`crisiswatch incident close`, and the
//! admin API's checks), a graceful restart with durable state keeps the other
//! open, and after `state reset` the incident whose alerts the engine no
//! longer has is closed with reason `alert_gone` instead of staying open for
//! ever.

mod kafka_support;

use std::process::Command;
use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const TOKEN: &str = "close-test-admin-token";

/// Twenty minutes of orders over four products ending half a minute ago
/// (recent, so that a quiet stream's clock, which follows the wall clock,
/// does not move past the crisis), with complaint bursts for p2 and p4 in the
/// last six minutes.
fn scenario() -> Vec<Out> {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 20 * 60_000 - 30_000;
    let mut out = Vec::new();
    for s in 0..1200i64 {
        let ts = start + s * 1000;
        let p = ["p1", "p2", "p3", "p4"][(s % 4) as usize];
        let mut push = |id: String, kind: &str, p: &str| {
            let json =
                format!(r#"{{"id":"{id}","type":"{kind}","ts":{ts},"attrs":{{"product":"{p}"}}}}"#);
            out.push(Out::new("x-events", (s % 2) as i32, json.into_bytes()));
        };
        if s % 3 == 0 {
            push(format!("o{s}"), "order", p);
        }
        if s >= 840 && s % 6 == 0 {
            push(format!("b2-{s}"), "complaint", "p2");
            push(format!("b4-{s}"), "complaint", "p4");
        }
    }
    out
}

fn config(bs: &str, data: &str, url: &str, token_file: &str) -> String {
    let cfg = base_config(bs, "gx", &[("x-events", None)], "", data).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nadmin_token_file = \"{token_file}\""),
    );
    format!(
        r#"{cfg}
[state]
checkpoint_interval = "300ms"

[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 20 }}
clear = 8
for = "2m"

[[incidents.routes]]
name = "product"
group_by = ["product"]
group_window = "0s"

[[receivers]]
name = "hook"
kind = "generic"
url = "{url}"
"#
    )
}

/// The key of the incident on `product` that the receiver saw open.
fn opened(r: &Receiver, product: &str) -> Option<String> {
    r.bodies()
        .iter()
        .find(|b| {
            b["action"] == "open"
                && b["dedup_key"]
                    .as_str()
                    .is_some_and(|k| k.contains(&format!("product={product}")))
        })
        .and_then(|b| b["dedup_key"].as_str().map(str::to_string))
}

/// The `resolve` the receiver got for `key`, if any.
fn resolve(r: &Receiver, key: &str) -> Option<serde_json::Value> {
    r.bodies()
        .into_iter()
        .find(|b| b["action"] == "resolve" && b["dedup_key"] == key)
}

fn open_keys(svc: &Service) -> Vec<String> {
    let (status, body) = svc.request("GET", "/api/v1/incidents", None, "");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn operators_close_incidents_and_incidents_without_alerts_close_themselves() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("x-events", 2)]);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let cfg = config(
        &bs,
        &data.display().to_string(),
        &receiver.url,
        &token_file.display().to_string(),
    );
    let cfg_path = dir.path().join("x.toml");
    let mut svc = Service::start(dir.path(), "x", &cfg);
    produce(&bs, &scenario(), Duration::from_secs(30));
    wait_until(Duration::from_secs(90), "both incidents open", || {
        opened(&receiver, "p2").is_some() && opened(&receiver, "p4").is_some()
    });
    let p2 = opened(&receiver, "p2").unwrap();
    let p4 = opened(&receiver, "p4").unwrap();

    // The CLI lists both.
    let out = Command::new(BIN)
        .args(["incident", "--config"])
        .arg(&cfg_path)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains(&p2) && listed.contains(&p4), "{listed}");

    // The admin API refuses a close without the token, without a reason, or of
    // an incident that is not open.
    let body = format!(r#"{{"key":"{p2}","reason":"known outage"}}"#);
    assert_eq!(
        svc.request("POST", "/api/v1/incidents/close", None, &body)
            .0,
        401
    );
    let no_reason = format!(r#"{{"key":"{p2}","reason":" "}}"#);
    assert_eq!(
        svc.request("POST", "/api/v1/incidents/close", Some(TOKEN), &no_reason)
            .0,
        400
    );
    let unknown = r#"{"key":"product/product=nope/1","reason":"x"}"#;
    assert_eq!(
        svc.request("POST", "/api/v1/incidents/close", Some(TOKEN), unknown)
            .0,
        404
    );

    // An operator closes p2 with the CLI; the service applies it.
    let out = Command::new(BIN)
        .args(["incident", "--config"])
        .arg(&cfg_path)
        .args([
            "close",
            &p2,
            "--reason",
            "duplicate of INC-42",
            "--by",
            "alice",
            "--wait",
            "20s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("closed"));
    wait_until(Duration::from_secs(20), "p2's resolve", || {
        resolve(&receiver, &p2).is_some()
    });
    let r = resolve(&receiver, &p2).unwrap();
    assert_eq!(r["reason"], "closed", "{r}");
    let summary = r["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("duplicate of INC-42") && summary.contains("alice"),
        "{summary}"
    );
    assert!(resolve(&receiver, &p4).is_none(), "p4 must stay open");
    assert_eq!(open_keys(&svc), vec![p4.clone()]);

    // A graceful restart with durable state keeps p4 open: its alert is in the
    // restored engine.
    svc.sigterm();
    assert!(svc
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let mut svc = Service::start(dir.path(), "x", &cfg);
    wait_until(Duration::from_secs(30), "state restored", || {
        svc.metric("crisiswatch_restore_groups").unwrap_or(0.0) > 0.0
    });
    // Several ticks of the incident stage (500 ms each) later it is still open.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(open_keys(&svc), vec![p4.clone()]);
    assert!(resolve(&receiver, &p4).is_none(), "{:?}", receiver.bodies());

    // `state reset`: the engine starts empty, nothing can resolve p4's alert,
    // so the incident closes at start with reason `alert_gone`.
    svc.sigterm();
    assert!(svc
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let out = Command::new(BIN)
        .args(["state", "--config"])
        .arg(&cfg_path)
        .args(["reset", "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut svc = Service::start(dir.path(), "x", &cfg);
    wait_until(Duration::from_secs(20), "p4's resolve", || {
        resolve(&receiver, &p4).is_some()
    });
    let r = resolve(&receiver, &p4).unwrap();
    assert_eq!(r["reason"], "alert_gone", "{r}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("no longer"),
        "{r}"
    );
    assert!(open_keys(&svc).is_empty());
    svc.sigterm();
    svc.wait_exit(Duration::from_secs(30));
}
