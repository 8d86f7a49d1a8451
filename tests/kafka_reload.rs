//! Hot reload of a live `crisiswatch run` (a real broker, the service as a
//! child process): authenticated API reload, a broken configuration refused
//! with the running one kept, and SIGHUP.

mod kafka_support;
mod support;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, complaint_burst, hour_t0, wait_until};
use std::time::Duration;
use support::{body_of, http, status_of};

const TOKEN: &str = "reload-test-token-41f0";

const RULES: &str = r#"
[[rules]]
name = "complaints_a"
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 100 }

[[rules]]
name = "complaints_b"
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 200 }
"#;

/// The test configuration of group `group` on `topics`, its data under
/// `dir`, with the admin token in `dir/admin-token`.
fn admin_config(
    bs: &str,
    group: &str,
    topics: &[(&str, Option<&str>)],
    dir: &std::path::Path,
) -> String {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = dir.join("data");
    base_config(bs, group, topics, "", data.to_str().unwrap()).replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
    )
}

fn rules(svc: &Service) -> Vec<String> {
    let (status, body) = svc.get("/api/v1/rules");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn run_reloads_on_the_api_and_sighup_and_refuses_a_broken_config() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let base = admin_config(
        &bs,
        "reload-test",
        &[("complaints", Some("complaint"))],
        dir.path(),
    );
    let svc = Service::start(dir.path(), "svc", &format!("{base}{RULES}"));
    let cfg_path = dir.path().join("svc.toml");
    assert_eq!(rules(&svc), ["complaints_a", "complaints_b"]);

    // Without the token: refused.
    let r = http(svc.addr(), "POST", "/api/v1/reload", &[], "");
    assert_eq!(status_of(&r), 401, "{r}");
    let auth = format!("Bearer {TOKEN}");

    // A broken file is refused; the running rules stay.
    std::fs::write(
        &cfg_path,
        format!("{base}{RULES}").replace("warning = 200", "warning = \"x\""),
    )
    .unwrap();
    let r = http(
        svc.addr(),
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 422, "{r}");
    assert!(body_of(&r).contains("rules[1].thresholds.warning"), "{r}");
    assert_eq!(rules(&svc), ["complaints_a", "complaints_b"]);
    let (_, status) = svc.get("/api/v1/status");
    assert!(status.contains("\"ok\":false"), "{status}");
    assert_eq!(
        svc.metric("crisiswatch_config_last_reload_successful"),
        Some(0.0)
    );

    // A valid change applies: one rule removed, one changed.
    let changed = format!("{base}{RULES}").replace("warning = 200", "warning = 300");
    let start = changed.find("[[rules]]\nname = \"complaints_a\"").unwrap();
    let end = changed.find("[[rules]]\nname = \"complaints_b\"").unwrap();
    let changed = format!("{}{}", &changed[..start], &changed[end..]);
    std::fs::write(&cfg_path, &changed).unwrap();
    let r = http(
        svc.addr(),
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(
        body_of(&r).contains("\"removed\":[\"complaints_a\"]"),
        "{r}"
    );
    assert_eq!(rules(&svc), ["complaints_b"]);
    assert_eq!(
        svc.metric("crisiswatch_config_last_reload_successful"),
        Some(1.0)
    );

    // SIGHUP reloads the file too.
    std::fs::write(&cfg_path, format!("{base}{RULES}")).unwrap();
    svc.signal("HUP");
    wait_until(Duration::from_secs(30), "the SIGHUP reload", || {
        rules(&svc) == ["complaints_a", "complaints_b"]
    });
}

fn incident_rule(name: &str, warning: u32, runbook: &str) -> String {
    format!(
        r#"
[[rules]]
name = "{name}"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = {warning} }}
runbook = "{runbook}"
"#
    )
}

/// (action, rule, product, runbook link) of what a receiver got.
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
            (
                s("/action"),
                s("/rule"),
                s("/group/product"),
                s("/links/runbook"),
            )
        })
        .collect()
}

fn hook(
    action: &str,
    rule: &str,
    product: &str,
    runbook: &str,
) -> (String, String, String, String) {
    (action.into(), rule.into(), product.into(), runbook.into())
}

/// The running service, its broker and real webhook receivers: a SIGHUP
/// reload moves the route to another receiver, changes a rule's runbook and
/// adds a rule, and the next webhooks show all three; the rule with only a new
/// runbook keeps its firing alert.
#[test]
fn a_reload_changes_the_route_and_the_runbook_seen_in_the_next_webhook() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 1)]);
    let (a, b) = (Receiver::start(), Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = base_config(
        &bs,
        "reload-incidents",
        &[("complaints", Some("complaint"))],
        "",
        data.to_str().unwrap(),
    )
    .replace("[engine]\n", "[engine]\nallowed_lateness = \"1s\"\n")
    .replace("[incidents]\n", "[incidents]\nupdate_interval = \"0\"\n");
    let receivers = format!(
        "\n[[receivers]]\nname = \"a\"\nkind = \"generic\"\nurl = \"{}\"\n\n[[receivers]]\nname = \"b\"\nkind = \"generic\"\nurl = \"{}\"\n",
        a.url, b.url
    );
    let route = |to: &str| {
        format!("\n[[incidents.routes]]\nname = \"main\"\ngroup_window = \"1s\"\nreceivers = [\"{to}\"]\n")
    };
    let v1 = format!(
        "{base}{}{receivers}{}",
        route("a"),
        incident_rule("complaints", 20, "https://rb.example/complaints-v1")
    );
    let svc = Service::start(dir.path(), "svc", &v1);
    let start = hour_t0();
    produce(
        &bs,
        &complaint_burst("one", "p1", start, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "the first incident at a", || {
        !a.bodies().is_empty()
    });
    assert_eq!(
        webhooks(&a),
        [hook(
            "open",
            "complaints",
            "p1",
            "https://rb.example/complaints-v1"
        )]
    );

    // The route goes to b, the runbook changes, a rule is added; SIGHUP.
    let v2 = format!(
        "{base}{}{receivers}{}{}",
        route("b"),
        incident_rule("complaints", 20, "https://rb.example/complaints-v2"),
        incident_rule("complaints_fast", 10, "https://rb.example/fast")
    );
    std::fs::write(dir.path().join("svc.toml"), &v2).unwrap();
    svc.signal("HUP");
    wait_until(Duration::from_secs(30), "the SIGHUP reload", || {
        let (_, status) = svc.get("/api/v1/status");
        status.contains("\"added\":[\"complaints_fast\"]")
    });
    let (_, status) = svc.get("/api/v1/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    // Only the runbook changed: the rule keeps its windows and firing alert.
    assert_eq!(v["last_reload"]["summary"]["kept"][0], "complaints", "{v}");
    assert_eq!(
        v["last_reload"]["receivers"]["kept"],
        serde_json::json!(["a", "b"]),
        "{v}"
    );

    produce(
        &bs,
        &complaint_burst("two", "p2", start + 5 * 60_000, 30),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(60), "both new incidents at b", || {
        b.bodies().len() >= 2
    });
    let mut got = webhooks(&b);
    got.sort();
    assert_eq!(
        got,
        [
            hook(
                "open",
                "complaints",
                "p2",
                "https://rb.example/complaints-v2"
            ),
            hook("open", "complaints_fast", "p2", "https://rb.example/fast"),
        ]
    );
    // a heard nothing of them; the p1 alert is still firing (kept, not reset).
    assert_eq!(a.bodies().len(), 1);
    assert_eq!(
        svc.metric("crisiswatch_alert_transitions_total{rule=\"complaints\",state=\"firing\"}"),
        Some(2.0)
    );
    assert_eq!(
        svc.metric("crisiswatch_alert_transitions_total{rule=\"complaints\",state=\"resolved\"}")
            .unwrap_or(0.0),
        0.0
    );
}

/// Messages whose `type` or a selected attribute is written in another form
/// than a selector names it (`"Social"`, `"complaint "`) feed no rule; `run`
/// counts them per field and named value and logs each form once, with the
/// rules that miss it. A reload watches for the new rules' values: after
/// the `channel` rule is gone, `"Social"` is no longer counted.
#[test]
fn values_in_another_form_than_a_selector_names_are_counted_and_logged() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("forms", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let base = admin_config(&bs, "forms-test", &[("forms", None)], dir.path());
    let social = r#"
[[rules]]
name = "social_spike"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint", attrs = { channel = "social" } } }
thresholds = { warning = 100 }
"#;
    let svc = Service::start(dir.path(), "svc", &format!("{base}{RULES}{social}"));
    let cfg_path = dir.path().join("svc.toml");
    let t0 = hour_t0();
    let line = |i: usize, kind: &str, channel: &str| {
        format!(
            r#"{{"id":"f{i}","type":"{kind}","ts":{},"attrs":{{"product":"p1","channel":"{channel}"}}}}"#,
            t0 + i as i64 * 1000
        )
    };
    let batch = |from: usize| -> Vec<Out> {
        (from..from + 30)
            .map(|i| {
                let (kind, channel) = match i % 3 {
                    0 => ("complaint", "Social"),
                    1 => ("complaint ", "web"),
                    _ => ("complaint", "social"),
                };
                Out::new("forms", 0, line(i, kind, channel))
            })
            .collect()
    };
    produce(&bs, &batch(0), Duration::from_secs(30));
    let channel =
        "crisiswatch_kafka_value_variant_messages_total{field=\"channel\",named=\"social\"}";
    let kind = "crisiswatch_kafka_value_variant_messages_total{field=\"type\",named=\"complaint\"}";
    wait_until(Duration::from_secs(60), "the variants counted", || {
        svc.metric(channel) == Some(10.0) && svc.metric(kind) == Some(10.0)
    });
    let log = svc.stderr_text();
    assert!(
        log.contains(r#"messages have channel = "Social", which the selectors of rule(s) "social_spike" write "social""#),
        "{log}"
    );
    assert!(
        log.contains(r#"messages have type = "complaint ", which the selectors of rule(s) "complaints_a", "complaints_b", "social_spike" write "complaint""#),
        "{log}"
    );
    // Each form is logged once, however many messages have it.
    produce(&bs, &batch(30), Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "the next variants counted", || {
        svc.metric(channel) == Some(20.0) && svc.metric(kind) == Some(20.0)
    });
    assert_eq!(
        svc.stderr_text()
            .matches("messages have channel = \"Social\"")
            .count(),
        1
    );

    // Without the channel rule, "Social" is nobody's variant any more.
    std::fs::write(&cfg_path, format!("{base}{RULES}")).unwrap();
    let r = http(
        svc.addr(),
        "POST",
        "/api/v1/reload",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    produce(&bs, &batch(60), Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "the variants after the reload",
        || svc.metric(kind) == Some(30.0),
    );
    assert_eq!(svc.metric(channel), Some(20.0));
    // The watch starts afresh: the padded type is logged again, for the rules left.
    assert!(
        svc.stderr_text().contains(r#"messages have type = "complaint ", which the selectors of rule(s) "complaints_a", "complaints_b" write "complaint""#),
        "{}",
        svc.stderr_text()
    );
}
