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

/// Asserts that `resp` has `status` and an `error` naming `text`.
fn assert_refused(resp: &str, status: u16, text: &str) {
    assert_eq!(status_of(resp), status, "{resp}");
    assert!(
        json(resp)["error"]
            .as_str()
            .unwrap_or_default()
            .contains(text),
        "{resp}"
    );
}

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

/// A demo of the configuration at `cfg` with the admin token (and `env`),
/// listening on a free port, slow enough to outlast the test: its address,
/// pid and guard.
fn demo(cfg: &std::path::Path, env: &[(&str, &str)]) -> (String, u32, ChildGuard) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["demo", "--speed", "300", "--listen", &addr, "--config"])
        .arg(cfg)
        .env("CRISISWATCH_ADMIN_TOKEN", TOKEN)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let guard = ChildGuard(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&addr), "{first}");
    std::thread::spawn(move || for _ in lines {});
    (addr, pid, guard)
}

#[test]
fn admin_api_reload_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("crisiswatch.toml");
    let original = std::fs::read_to_string(format!("{ROOT}/config/crisiswatch.toml")).unwrap();
    assert!(original.contains("admin_token_env = \"CRISISWATCH_ADMIN_TOKEN\""));
    std::fs::write(&cfg_path, &original).unwrap();
    let (addr, pid, _guard) = demo(&cfg_path, &[]);

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
    assert_refused(&r, 422, "thresholds.critical");
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

    // An empty file (an editor that truncates before it writes) is valid
    // TOML with no rules: refused, not applied as "watch nothing".
    std::fs::write(&cfg_path, "").unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_refused(&r, 422, "has no rules");
    assert_eq!(rule_names(&addr).len(), 10, "the running rules stay");

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
    // So are the live engine's worker threads (laid out at start).
    let moved = original
        .replace(
            "data_dir = \"${CRISISWATCH_DATA_DIR:-crisiswatch-data}\"",
            "data_dir = \"elsewhere\"",
        )
        .replacen("[engine]\n", "[engine]\nworkers = 3\n", 1);
    assert_ne!(moved, original);
    assert!(moved.contains("workers = 3"));
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
        serde_json::json!(["incidents.data_dir", "engine.workers"]),
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

    // A rotated admin token (now from a file) takes effect with the reload:
    // the old one is refused, the new one admitted.
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "rotated-admin-token-0123456789\n").unwrap();
    let rotated = original.replace(
        "admin_token_env = \"CRISISWATCH_ADMIN_TOKEN\"",
        &format!("admin_token_file = {:?}", token_file.display().to_string()),
    );
    assert_ne!(rotated, original);
    std::fs::write(&cfg_path, &rotated).unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 401, "the old admin token is refused: {r}");
    let new_auth = "Bearer rotated-admin-token-0123456789";
    // A token file that cannot be read refuses the reload: the running
    // token stays.
    let gone = rotated.replace(
        &token_file.display().to_string(),
        &dir.path().join("missing.token").display().to_string(),
    );
    std::fs::write(&cfg_path, &gone).unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", new_auth)],
        "",
    );
    assert_eq!(status_of(&r), 422, "{r}");
    assert!(body_of(&r).contains("cannot read the admin token"), "{r}");
    std::fs::write(&cfg_path, &rotated).unwrap();
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", new_auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "the new token still works: {r}");
}

/// `http` with a client timeout: `None` when no answer came within `within`.
fn http_within(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(within)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok().map(|_| buf)
}

/// After the simulated period, `demo --linger` keeps serving, but there is no
/// run left to reload: a reload is answered at once with 503 (it used to hang
/// for `server.request_timeout` and answer 408); nor an incident stage to
/// carry out an acknowledgement or a close: 503 too (they used to be
/// accepted, stored and never sent).
#[test]
fn reload_during_the_demo_linger_is_answered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--duration",
            "2h",
            "--speed",
            "100000",
            "--linger",
            "120s",
        ])
        .args(["--listen", &addr, "--config"])
        .arg(format!("{ROOT}/config/crisiswatch.toml"))
        .env("CRISISWATCH_ADMIN_TOKEN", TOKEN)
        .env("CRISISWATCH_DATA_DIR", dir.path().join("data"))
        .env_remove("CRISISWATCH_WEBHOOK_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut transcript = Vec::new();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {what:?}: {transcript:?}"));
            if line.contains(what) {
                return line;
            }
            transcript.push(line);
        }
    };
    wait_for("Still serving /metrics");
    let auth = format!("Bearer {TOKEN}");
    let r = http_within(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        Duration::from_secs(10),
    )
    .expect("a reload during the linger is answered, not left hanging");
    assert_refused(&r, 503, "nothing to reload");
    let line = wait_for("Reload refused");
    assert!(line.contains("the simulated run has ended"), "{line}");
    // An acknowledgement or a close would be stored and never carried out
    // (the incident stage has stopped): refused, through the API and the
    // console alike. A label is only stored, and still taken.
    let incidents: Value = json(&http(
        &addr,
        "GET",
        "/api/v1/incidents",
        &[("Authorization", &auth)],
        "",
    ));
    let key = incidents["incidents"][0]["key"]
        .as_str()
        .unwrap_or("product/product=router-x/1")
        .to_string();
    for (path, body) in [
        (
            "/api/v1/incidents/ack",
            serde_json::json!({"key": key, "by": "op"}).to_string(),
        ),
        (
            "/api/v1/incidents/close",
            serde_json::json!({"key": key, "reason": "done", "by": "op"}).to_string(),
        ),
    ] {
        let r = http(&addr, "POST", path, &[("Authorization", &auth)], &body);
        assert_refused(&r, 503, "the incident stage has stopped");
    }
    let form = format!("key={key}&by=op&token={TOKEN}");
    let r = http(
        &addr,
        "POST",
        "/console/incidents/ack",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(
        body_of(&r).contains("the incident stage has stopped"),
        "{r}"
    );
    let r = http(
        &addr,
        "POST",
        "/api/v1/incidents/label",
        &[("Authorization", &auth)],
        &serde_json::json!({"key": key, "label": "useful", "by": "op"}).to_string(),
    );
    assert_ne!(status_of(&r), 503, "{r}");
    // The linger goes on: metrics are still served.
    assert_eq!(status_of(&http_get(&addr, "/healthz")), 200);
}

/// A failed reload's error quotes the file (a receiver URL may carry a
/// token): with a read token configured, the open `/api/v1/status` and
/// `/readyz` show it only to a request with the read or admin token.
#[test]
fn a_failed_reload_error_is_shown_only_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("crisiswatch.toml");
    let original = std::fs::read_to_string(format!("{ROOT}/config/crisiswatch.toml"))
        .unwrap()
        .replace(
            "# read_token_env = \"CRISISWATCH_READ_TOKEN\"",
            "read_token_env = \"CRISISWATCH_READ_TOKEN\"",
        );
    assert!(original.contains("\nread_token_env"));
    std::fs::write(&cfg_path, &original).unwrap();
    let (addr, _, _guard) = demo(&cfg_path, &[("CRISISWATCH_READ_TOKEN", "reader-tok")]);
    poll("ready", || {
        (status_of(&http_get(&addr, "/readyz")) == 200).then_some(())
    });
    let broken = original.replace(
        "thresholds = { warning = 0.05, critical = 0.10 }",
        "thresholds = { warning = 0.5, critical = 0.1 }",
    );
    assert_ne!(broken, original);
    std::fs::write(&cfg_path, broken).unwrap();
    let admin = format!("Bearer {TOKEN}");
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &admin)],
        "",
    );
    assert_eq!(status_of(&r), 422, "{r}");
    assert!(body_of(&r).contains("thresholds.critical"), "{r}");
    let error = |auth: Option<&str>| -> String {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let s = json(&http(&addr, "GET", "/api/v1/status", &headers, ""));
        assert_eq!(s["last_reload"]["ok"], false, "{s}");
        s["last_reload"]["error"].as_str().unwrap().to_string()
    };
    let hidden = error(None);
    assert!(!hidden.contains("thresholds"), "{hidden}");
    assert!(hidden.contains("crisiswatch check"), "{hidden}");
    assert!(error(Some("Bearer wrong")) == hidden);
    assert!(error(Some("Bearer reader-tok")).contains("thresholds.critical"));
    assert!(error(Some(&admin)).contains("thresholds.critical"));
    let r = http_get(&addr, "/readyz");
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(
        body_of(&r).contains("reload failed") && !body_of(&r).contains("thresholds"),
        "{r}"
    );
    let r = http(
        &addr,
        "GET",
        "/readyz",
        &[("Authorization", "Bearer reader-tok")],
        "",
    );
    assert!(body_of(&r).contains("thresholds.critical"), "{r}");
}

/// A demo started without an HTTP receiver keeps its outbox in a scratch
/// directory removed at exit. A receiver added by a reload gets pages there:
/// when some are still undelivered at the end (here: nothing listens), the
/// directory is kept and the demo says how to send them, instead of removing
/// them with it.
#[test]
fn pages_for_a_receiver_added_by_reload_to_a_scratch_demo_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("crisiswatch.toml");
    let original = std::fs::read_to_string(format!("{ROOT}/config/crisiswatch.toml"))
        .unwrap()
        .replace("drain_timeout = \"30s\"", "drain_timeout = \"2s\"");
    assert!(original.contains("drain_timeout = \"2s\""));
    std::fs::write(&cfg_path, &original).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "4h", "--speed", "1000"])
        .args(["--listen", &addr, "--config"])
        .arg(&cfg_path)
        .env("CRISISWATCH_ADMIN_TOKEN", TOKEN)
        .env_remove("CRISISWATCH_WEBHOOK_URL")
        .env_remove("CRISISWATCH_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = ChildGuard(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&addr), "{first}");
    // Nothing listens on port 1: every page to it stays queued.
    let added = original.replace(
        "url = \"${CRISISWATCH_WEBHOOK_URL:-}\"",
        "url = \"${CRISISWATCH_WEBHOOK_URL:-http://127.0.0.1:1/hook}\"",
    );
    assert_ne!(added, original);
    std::fs::write(&cfg_path, &added).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let r = http(
        &addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let transcript: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = guard.0.wait();
    let kept = transcript
        .iter()
        .find(|l| l.contains("for receivers added by a reload"))
        .unwrap_or_else(|| panic!("{transcript:#?}"));
    let scratch = kept
        .split("kept in ")
        .nth(1)
        .and_then(|t| t.split(" (").next())
        .unwrap()
        .to_string();
    let scratch = std::path::PathBuf::from(scratch);
    assert!(scratch.join("outbox.sqlite").exists(), "{kept}");
    let out = Command::new(BIN)
        .args(["outbox", "--config"])
        .arg(&cfg_path)
        .arg("--data-dir")
        .arg(&scratch)
        .args(["list", "--status", "pending", "--json"])
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(out.status.success(), "{rows}");
    assert!(
        rows.lines().count() > 0 && rows.lines().all(|l| l.contains("\"receiver\":\"webhook\"")),
        "{rows}"
    );
}
