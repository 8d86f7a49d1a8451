//! The HTTP listener's bounds against real sockets: slow-loris clients are cut
//! off and do not keep `/metrics` from answering, oversized requests are
//! refused, and the customer-data endpoints honour the read token.

use std::sync::Arc;
use std::time::Duration;

use crisiswatch::admin::ReadAccess;
use crisiswatch::http::{self, AppState};
use crisiswatch::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(server_toml: &str) -> (String, Arc<AppState>, tokio::sync::watch::Sender<bool>) {
    let metrics = crisiswatch::metrics::Metrics::new(10).unwrap();
    let state = AppState::new(metrics);
    state
        .admin
        .set_config(None, &format!("[server]\n{server_toml}\n"));
    let (tx, stop) = tokio::sync::watch::channel(false);
    let (addr, fut) = http::bind("127.0.0.1:0", Arc::clone(&state), stop)
        .await
        .unwrap();
    tokio::spawn(fut);
    (addr.to_string(), state, tx)
}

/// Polls `f` until it returns `Some`, at most `secs` seconds.
async fn within<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{what} did not happen within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that opens a connection per request: these tests send bodies
/// the server refuses (413) and stops reading, and a server may close such a
/// connection while a pooled client already reuses it for the next request
/// (a broken pipe, seen once in CI).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_and_metrics_still_answers() {
    let (addr, _state, _stop) = start("max_connections = 8\nheader_read_timeout = \"1s\"").await;
    // Three times more slow clients than slots, each sending half a request head.
    let mut loris = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        loris.push(s);
    }
    // A scrape is answered (the slow clients' slots free up as they are cut off)…
    let url = format!("http://{addr}/metrics");
    let body = within(60, "a /metrics answer", || async {
        let r = client().get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("crisiswatch_http_connections"), "{body}");
    // …every slow client is disconnected by the server…
    for s in &mut loris {
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .expect("the server closes a slow client");
        // EOF, a reset, or hyper's 408 before closing: never a real answer.
        if let Ok(n) = r {
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || head.starts_with("HTTP/1.1 408"), "{head}");
        }
    }
    // …and both bounds are counted.
    let text = within(30, "the bounds counted", || async {
        let t = client().get(&url).send().await.ok()?.text().await.ok()?;
        (metric(&t, "crisiswatch_http_header_timeouts_total") >= 16.0).then_some(t)
    })
    .await;
    assert!(metric(&text, "crisiswatch_http_connections_limited_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused() {
    let (addr, state, _stop) = start("max_body_bytes = 1024").await;
    state.admin.set_token(Some(Secret::new("admin-tok")));
    let c = client();
    let r = c
        .post(format!("http://{addr}/api/v1/silences"))
        .bearer_auth("admin-tok")
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .get(format!("http://{addr}/metrics"))
        .header("x-big", "y".repeat(64 * 1024))
        .send()
        .await;
    // hyper answers 431 or closes the connection: either way, not served.
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
    let r = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends `head` (a request head, maybe a few body bytes after it) and
/// returns the status line of the answer, read while the rest of the
/// body is still owed.
async fn answer_before_the_body(addr: &str, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What needs no body is checked before the body is read: a client
/// without the token, or one announcing a body over the limit, is answered
/// while its body is still owed (it cannot hold a slot by trickling it);
/// a body that does not arrive within `header_read_timeout` is cut off;
/// a loopback listener answers local host names only (DNS rebinding); and
/// every answer says `nosniff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_refused_before_their_body_and_only_local_names_served() {
    let (addr, state, _stop) = start("max_body_bytes = 1024\nheader_read_timeout = \"1s\"").await;
    state.admin.set_token(Some(Secret::new("admin-tok")));
    let post = |auth: &str, length: usize| {
        format!(
            "POST /api/v1/silences HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
        )
    };
    let no_token = answer_before_the_body(&addr, &post("", 1000)).await;
    assert!(no_token.contains(" 401 "), "{no_token}");
    let huge = answer_before_the_body(
        &addr,
        &post("Authorization: Bearer admin-tok\r\n", 1_000_000_000),
    )
    .await;
    assert!(huge.contains(" 413 "), "{huge}");
    // A chunked body (no length announced) over the limit: 413 too.
    let chunk = "x".repeat(2000);
    let chunked = answer_before_the_body(
        &addr,
        &format!(
            "POST /api/v1/silences HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer admin-tok\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
    )
    .await;
    assert!(chunked.contains(" 413 "), "{chunked}");
    // With the token and a small body that never comes: cut off.
    let slow =
        answer_before_the_body(&addr, &post("Authorization: Bearer admin-tok\r\n", 100)).await;
    assert!(slow.contains(" 408 "), "{slow}");
    // DNS rebinding: another name pointed at 127.0.0.1.
    let c = client();
    let url = format!("http://{addr}/api/v1/rules");
    let foreign = c
        .get(&url)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421);
    for host in [addr.clone(), "localhost".to_string()] {
        let r = c
            .get(&url)
            .header("host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let r = c
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // The API still works with the token and a whole body.
    let r = c
        .post(format!("http://{addr}/api/v1/silences"))
        .bearer_auth("admin-tok")
        .json(&serde_json::json!({"matchers": ["product=p"], "duration": "1h", "comment": "c", "created_by": "t"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() != 401 && r.status() != 408 && r.status() != 413,
        "{}",
        r.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_data_needs_the_read_token_when_one_is_set_or_off_loopback() {
    let (addr, state, _stop) = start("").await;
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut r = c.get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Loopback without a read token: open.
    assert_eq!(get("/api/v1/alerts", None).await, 200);
    // Not loopback and no read token: refused, even with a wrong token.
    state.admin.set_loopback(false);
    assert_eq!(get("/api/v1/alerts", None).await, 401);
    assert_eq!(get("/api/v1/rules", Some("nope")).await, 401);
    // The open endpoints stay open.
    assert_eq!(get("/metrics", None).await, 200);
    assert_eq!(get("/api/v1/status", None).await, 200);
    // A read token: required, and the admin token works as well.
    state
        .admin
        .set_read_access(ReadAccess::Token(Secret::new("read-tok")));
    state.admin.set_token(Some(Secret::new("admin-tok")));
    state.admin.set_loopback(true);
    assert_eq!(get("/api/v1/alerts", None).await, 401);
    assert_eq!(get("/api/v1/alerts", Some("wrong")).await, 401);
    assert_eq!(get("/api/v1/alerts", Some("read-tok")).await, 200);
    assert_eq!(get("/api/v1/rules", Some("admin-tok")).await, 200);
    assert_eq!(get("/api/v1/silences", None).await, 401);
    // Loaded from the configuration: the environment variable it names.
    std::env::set_var("CW_TEST_READ_TOKEN", "from-env");
    state
        .admin
        .set_config(None, "[server]\nread_token_env = \"CW_TEST_READ_TOKEN\"\n");
    assert_eq!(get("/api/v1/alerts", Some("from-env")).await, 200);
    assert_eq!(get("/api/v1/alerts", Some("read-tok")).await, 401);
}

/// `/readyz` says why the consumer is not ready (it answered a bare "not
/// ready" while the group had not taken the instance back after a crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_why_the_consumer_is_not_ready() {
    let (addr, state, _stop) = start("").await;
    state.admin.set_consumer_wait(Some(
        "the Kafka consumer has not joined its group yet".into(),
    ));
    let r = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("not ready: the Kafka consumer has not joined"),
        "{body}"
    );
}

/// Every error of the API is JSON, the router's own too: no such endpoint,
/// a method the endpoint does not take (with `Allow`), a path value of the
/// wrong form, a body over the limit. Other paths keep their plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_even_the_routers_own() {
    let (addr, state, _stop) = start("max_body_bytes = 1024").await;
    state.admin.set_token(Some(Secret::new("admin-tok")));
    let c = client();
    let error_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body: serde_json::Value = r.json().await.expect("a JSON body");
        let error = body["error"].as_str().unwrap_or_default().to_string();
        (status, error, allow)
    };
    let r = c
        .get(format!("http://{addr}/api/v1/nope"))
        .send()
        .await
        .unwrap();
    let (status, error, _) = error_of(r).await;
    assert_eq!(status, 404);
    assert!(
        error.contains("no such endpoint: GET /api/v1/nope"),
        "{error}"
    );
    let r = c
        .delete(format!("http://{addr}/api/v1/alerts"))
        .bearer_auth("admin-tok")
        .send()
        .await
        .unwrap();
    let (status, error, allow) = error_of(r).await;
    assert_eq!(status, 405);
    assert!(!error.is_empty());
    assert!(
        allow.is_some_and(|a| a.contains("GET")),
        "the Allow header stays"
    );
    let r = c
        .get(format!("http://{addr}/api/v1/incidents/close/xyz"))
        .bearer_auth("admin-tok")
        .send()
        .await
        .unwrap();
    let (status, error, _) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(error.contains("xyz"), "{error}");
    assert!(
        error.contains("ids are numbers") && !error.contains("i64"),
        "{error}"
    );
    let r = c
        .post(format!("http://{addr}/api/v1/silences"))
        .bearer_auth("admin-tok")
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    let (status, _, _) = error_of(r).await;
    assert_eq!(status, 413);
    // Outside the API: plain text as before.
    let r = c.get(format!("http://{addr}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().starts_with("no such endpoint"));
}
