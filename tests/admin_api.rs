//! The admin API of a running `crisiswatch demo`: read-only endpoints, bearer
//! authentication of mutations, and hot reload (API and SIGHUP) including a
//! broken configuration that must leave the running one in place.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{body_of, free_port, http, http_get, status_of, ChildGuard, BIN, ROOT};

const TOKEN: &str = "test-admin-token-7c1e";

fn json(resp: &str) -> Value {
    serde_json::from_str(body_of(resp)).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rule_names(addr: &str) -> Vec<String> {
    json(&http_get(addr, "/api/v1/rules"))["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn live_groups(addr: &str, rule: &str) -> u64 {
    json(&http_get(addr, "/api/v1/rules"))["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rule)
        .map_or(0, |r| r["live_groups"].as_u64().unwrap_or(0))
}

#[test]
fn admin_api_reload_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("crisiswatch.toml");
    let original = std::fs::read_to_string(format!("{ROOT}/config/crisiswatch.toml")).unwrap();
    assert!(original.contains("admin_token_env = \"CRISISWATCH_ADMIN_TOKEN\""));
    std::fs::write(&cfg_path, &original).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Slow enough that the demo is still running when the test finishes.
    let mut child = Command::new(BIN)
        .args(["demo", "--speed", "300", "--listen", &addr, "--config"])
        .arg(&cfg_path)
        .env("CRISISWATCH_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let _guard = ChildGuard(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&addr), "{first}");
    std::thread::spawn(move || for _ in lines {});

    // Read-only endpoints are open.
    assert_eq!(status_of(&http_get(&addr, "/healthz")), 200);
    poll("ready", || {
        (status_of(&http_get(&addr, "/readyz")) == 200).then_some(())
    });
    let status = json(&http_get(&addr, "/api/v1/status"));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let hash = status["config_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert_eq!(status["admin_token_configured"], true);
    // No reload yet: nothing reported (it read `"ok": false` before).
    assert!(status["last_reload"].is_null(), "{status}");
    assert_eq!(rule_names(&addr).len(), 10);
    poll("groups", || {
        (live_groups(&addr, "complaint_rate") > 0).then_some(())
    });
    let alerts = json(&http_get(&addr, "/api/v1/alerts"));
    assert!(alerts["alerts"].is_array());

    // Mutations need the token.
    let r = http(&addr, "POST", "/api/v1/reload", &[], "");
    assert_eq!(status_of(&r), 401, "{r}");
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(status_of(&r), 401, "{r}");
    let auth = format!("Bearer {TOKEN}");

    // A broken configuration is refused; the running one stays.
    let broken = original.replace(
        "thresholds = { warning = 0.05, critical = 0.10 }",
        "thresholds = { warning = 0.5, critical = 0.1 }",
    );
    assert_ne!(
        broken, original,
        "complaint_rate's thresholds in the example"
    );
    std::fs::write(&cfg_path, broken).unwrap();
    // The scheme is case-insensitive (RFC 7235): a lower-case one is let in.
    let lower = format!("bearer {TOKEN}");
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &lower)],
        "",
    );
    assert_eq!(status_of(&r), 422, "{r}");
    assert!(
        json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("thresholds.critical"),
        "{r}"
    );
    let status = json(&http_get(&addr, "/api/v1/status"));
    assert_eq!(status["last_reload"]["ok"], false);
    assert!(status["last_reload"]["error"]
        .as_str()
        .unwrap()
        .contains("thresholds.critical"));
    assert_eq!(
        status["config_hash"],
        hash.as_str(),
        "the old config keeps running"
    );
    assert_eq!(rule_names(&addr).len(), 10);
    assert!(live_groups(&addr, "complaint_rate") > 0, "state kept");
    let metrics = body_of(&http_get(&addr, "/metrics")).to_string();
    assert!(
        metrics.contains("crisiswatch_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert!(metrics.contains("crisiswatch_config_reloads_total{result=\"failure\"} 1"));
    assert!(
        metrics.contains("crisiswatch_ready 0"),
        "a failed reload reports not ready"
    );
    let r = http_get(&addr, "/readyz");
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(body_of(&r).contains("reload failed"), "{r}");

    // A valid change: one rule retuned (thresholds only: it keeps its
    // windows and alerts), one removed; unchanged rules keep their windows.
    let groups_before = live_groups(&addr, "complaint_rate");
    let changed = original.replace(
        "thresholds = { warning = 0.5, critical = 0.7 }",
        "thresholds = { warning = 0.6, critical = 0.7 }",
    );
    assert_ne!(
        changed, original,
        "social_spike's thresholds in the example"
    );
    let start = changed.find("[[rules]]\nname = \"nps_drop\"").unwrap();
    let end = start + changed[start..].find("# Playbook trigger 4").unwrap();
    let changed = format!("{}{}", &changed[..start], &changed[end..]);
    std::fs::write(&cfg_path, &changed).unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let summary = &json(&r)["summary"];
    assert_eq!(summary["changed"], serde_json::json!([]));
    assert_eq!(summary["retuned"], serde_json::json!(["social_spike"]));
    assert_eq!(summary["removed"], serde_json::json!(["nps_drop"]));
    assert!(summary["kept"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "complaint_rate"));
    assert_eq!(rule_names(&addr).len(), 9);
    assert!(
        live_groups(&addr, "complaint_rate") >= groups_before.min(1),
        "kept rule lost its windows"
    );
    let status = json(&http_get(&addr, "/api/v1/status"));
    assert_eq!(status["last_reload"]["ok"], true);
    assert!(
        status["last_reload"]["restart_needed"].is_null(),
        "{status}"
    );
    assert_ne!(status["config_hash"], hash.as_str());
    let metrics = body_of(&http_get(&addr, "/metrics")).to_string();
    assert!(metrics.contains("crisiswatch_config_last_reload_successful 1"));
    assert_eq!(status_of(&http_get(&addr, "/readyz")), 200, "ready again");

    // A setting a reload cannot apply (the incident data directory) is
    // named, and the rest applies.
    let moved = original.replace(
        "data_dir = \"${CRISISWATCH_DATA_DIR:-crisiswatch-data}\"",
        "data_dir = \"elsewhere\"",
    );
    assert_ne!(moved, original);
    std::fs::write(&cfg_path, &moved).unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let status = json(&http_get(&addr, "/api/v1/status"));
    assert_eq!(
        status["last_reload"]["restart_needed"],
        serde_json::json!(["incidents.data_dir"]),
        "{status}"
    );

    // SIGHUP reloads too.
    std::fs::write(&cfg_path, &original).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    poll("SIGHUP reload", || {
        let status = json(&http_get(&addr, "/api/v1/status"));
        (rule_names(&addr).len() == 10 && status["config_hash"] == hash.as_str()).then_some(())
    });
}
