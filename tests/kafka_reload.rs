//! Hot reload of a live `crisiswatch run` (a real broker, the service as a
//! child process): authenticated API reload, a broken configuration refused
//! with the running one kept, and SIGHUP.

mod kafka_support;
mod support;

use kafka_support::broker::Broker;
use kafka_support::client::create_topics;
use kafka_support::service::Service;
use kafka_support::{base_config, wait_until};
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
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = dir.path().join("data");
    let base = base_config(
        &bs,
        "reload-test",
        &[("complaints", Some("complaint"))],
        "",
        data.to_str().unwrap(),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
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
