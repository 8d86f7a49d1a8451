//! Issue 10, item 4: an incident whose alerts no longer exist after a
//! configuration change is closed with a clear reason, not left open for
//! ever. A real broker, `crisiswatch run` as a child process and a real
//! webhook receiver: an incident opens on rule `complaints`, a SIGHUP reload
//! removes that rule, and the receiver gets the incident's `resolve` with
//! reason `alert_gone` — while an incident of a rule the reload kept stays
//! open.

mod kafka_support;

use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, complaint_burst, hour_t0, wait_until};

/// A count rule per product: `warning` complaints in 10 minutes.
fn rule(name: &str, warning: u32) -> String {
    format!(
        r#"
[[rules]]
name = "{name}"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = {warning} }}
"#
    )
}

/// (action, reason, rule of the first alert, product) of every webhook.
fn webhooks(rx: &Receiver) -> Vec<(String, String, String, String)> {
    rx.bodies()
        .iter()
        .map(|b| {
            let s = |p: &str| {
                b.pointer(p)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            (s("/action"), s("/reason"), s("/rule"), s("/group/product"))
        })
        .collect()
}

#[test]
fn a_reload_that_removes_a_rule_closes_its_incident_with_reason_alert_gone() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 1)]);
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = base_config(
        &bs,
        "rule-removed",
        &[("complaints", Some("complaint"))],
        "",
        data.to_str().unwrap(),
    )
    .replace("[engine]\n", "[engine]\nallowed_lateness = \"1s\"\n")
    .replace("[incidents]\n", "[incidents]\nupdate_interval = \"0\"\n");
    let receiver = format!(
        "\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{}\"\n",
        rx.url
    );
    // One incident per rule and product (routes match in order).
    let routes = "\n[[incidents.routes]]\nname = \"kept\"\nrules = [\"kept\"]\ngroup_by = [\"product\"]\ngroup_window = \"1s\"\n\n[[incidents.routes]]\nname = \"main\"\ngroup_by = [\"product\"]\ngroup_window = \"1s\"\n";
    let v1 = format!(
        "{base}{routes}{receiver}{}{}",
        rule("complaints", 20),
        rule("kept", 10)
    );
    let svc = Service::start(dir.path(), "svc", &v1);
    produce(
        &bs,
        &complaint_burst("one", "p1", hour_t0(), 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "both incidents open", || {
        webhooks(&rx).iter().filter(|w| w.0 == "open").count() == 2
    });
    let mut opened = webhooks(&rx);
    opened.sort();
    assert_eq!(
        opened
            .iter()
            .map(|w| (w.0.as_str(), w.2.as_str(), w.3.as_str()))
            .collect::<Vec<_>>(),
        [("open", "complaints", "p1"), ("open", "kept", "p1")]
    );

    // The reload removes `complaints`: its alert can never resolve now.
    let v2 = format!("{base}{routes}{receiver}{}", rule("kept", 10));
    std::fs::write(dir.path().join("svc.toml"), &v2).unwrap();
    svc.signal("HUP");
    // Polled for 30 s; a failure says what the endpoint last answered.
    let mut last = (0u16, String::new());
    let reloaded = (0..600).any(|_| {
        last = svc.get("/api/v1/status");
        let done = last.1.contains("\"removed\":[\"complaints\"]");
        if !done {
            std::thread::sleep(Duration::from_millis(50));
        }
        done
    });
    assert!(
        reloaded,
        "the SIGHUP reload is not in /api/v1/status; its last answer: {last:?}\n{}",
        svc.stderr_text()
    );
    wait_until(
        Duration::from_secs(30),
        "the removed rule's resolve",
        || webhooks(&rx).iter().any(|w| w.0 == "resolve"),
    );
    let resolves: Vec<serde_json::Value> = rx
        .bodies()
        .into_iter()
        .filter(|b| b["action"] == "resolve")
        .collect();
    assert_eq!(resolves.len(), 1, "{resolves:#?}");
    let r = &resolves[0];
    assert_eq!(r["reason"], "alert_gone", "{r}");
    assert_eq!(r["rule"], "complaints", "{r}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("no longer"),
        "{r}"
    );
    // The kept rule's incident is still open (its alert is still firing in
    // the engine); the removed rule's is not.
    let (status, open) = svc.get("/api/v1/incidents");
    assert_eq!(status, 200, "{open}");
    let open: serde_json::Value = serde_json::from_str(&open).unwrap();
    let keys: Vec<&str> = open["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys.len(), 1, "{open}");
    assert!(keys[0].starts_with("kept/"), "{open}");
    assert!(
        !webhooks(&rx)
            .iter()
            .any(|w| w.0 == "resolve" && w.2 == "kept"),
        "{:?}",
        webhooks(&rx)
    );
    svc.signal("TERM");
}
