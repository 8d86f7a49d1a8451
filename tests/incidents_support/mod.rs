//! Shared pieces of the incident tests: a scripted webhook receiver (a real
//! HTTP server on 127.0.0.1), transitions and configurations.
#![allow(dead_code)]

pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use crisiswatch::alert::{State, Transition};
use crisiswatch::config::{Config, Severity};
use tokio::sync::Notify;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Never answer (the client times out).
    pub hang: bool,
    /// Bytes of the answer's body (empty unless set).
    pub body: Vec<u8>,
    /// Answer with the last this many bytes of the request's body instead
    /// (a gateway that echoes what it refused).
    pub echo_tail: Option<usize>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            hang: false,
            body: Vec::new(),
            echo_tail: None,
        }
    }
    /// `status` with a body of `len` bytes.
    pub fn with_body(status: u16, len: usize) -> Reply {
        Reply {
            body: vec![b'x'; len],
            ..Reply::status(status)
        }
    }
    pub fn retry_after(status: u16, secs: &str) -> Reply {
        Reply {
            status,
            headers: vec![("retry-after".into(), secs.into())],
            hang: false,
            body: Vec::new(),
            echo_tail: None,
        }
    }
    pub fn hang() -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            hang: true,
            body: Vec::new(),
            echo_tail: None,
        }
    }
    /// `status`, echoing the last `tail` bytes of the request's body.
    pub fn echo(status: u16, tail: usize) -> Reply {
        Reply {
            echo_tail: Some(tail),
            ..Reply::status(status)
        }
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Arrival on tokio's clock (paused in paused-time tests).
    pub at: tokio::time::Instant,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    requests: Vec<Request>,
}

/// A real HTTP receiver on loopback that answers from a script.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Starts on a free port; answers 202 unless scripted.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// Starts on `addr` (a port reserved earlier: "the receiver comes back").
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let arrived = Arc::new(Notify::new());
        let (i2, a2) = (Arc::clone(&inner), Arc::clone(&arrived));
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (inner, arrived) = (Arc::clone(&i2), Arc::clone(&a2));
            async move { handle(inner, arrived, uri, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            inner,
            arrived,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers these, in order, then the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// The answer once the script is used up (202 unless set).
    pub fn set_default(&self, r: Reply) {
        self.inner.lock().unwrap().default = Some(r);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Waits until `pred` holds for the requests, at most `deadline` (tokio time).
    pub async fn wait_until(
        &self,
        deadline: Duration,
        what: &str,
        pred: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.arrived.notified();
            let reqs = self.requests();
            if pred(&reqs) {
                return reqs;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                let reqs = self.requests();
                if pred(&reqs) {
                    return reqs;
                }
                panic!(
                    "receiver: {what} did not happen within {deadline:?}; got {} request(s): {:?}",
                    reqs.len(),
                    reqs.iter()
                        .map(|r| (
                            r.status,
                            String::from_utf8_lossy(&r.body)
                                .chars()
                                .take(120)
                                .collect::<String>()
                        ))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for `n` requests.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Request> {
        self.wait_until(deadline, &format!("{n} request(s)"), |r| r.len() >= n)
            .await
    }

    /// Stops listening (the port is free again).
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn handle(
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut g = inner.lock().unwrap();
        let r = g
            .script
            .pop_front()
            .or_else(|| g.default.clone())
            .unwrap_or_else(|| Reply::status(202));
        g.requests.push(Request {
            at: tokio::time::Instant::now(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
            status: if r.hang { 0 } else { r.status },
        });
        r
    };
    arrived.notify_waiters();
    if reply.hang {
        std::future::pending::<()>().await;
    }
    let answer = match reply.echo_tail {
        Some(tail) => body[body.len().saturating_sub(tail)..].to_vec(),
        None => reply.body,
    };
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), answer).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

/// A port that nothing listens on (reserved, then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Parses a config (no environment).
pub fn config(text: &str) -> Config {
    config_env(text, &[])
}

/// Parses a config with these environment variables.
pub fn config_env(text: &str, env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match Config::from_toml_str(text, &env) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

/// Four count rules over one (product, region) slice, plus `extra` TOML.
pub fn rules_toml() -> &'static str {
    r#"
[[rules]]
name = "complaint_count"
description = "Complaints per product and region."
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 5, critical = 50 }
clear = 2
runbook = "https://runbooks.example.com/complaints"
dashboard = "https://grafana.example.com/d/crisiswatch"

[[rules]]
name = "social_count"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint", attrs = { channel = "social" } } }
thresholds = { warning = 3 }
clear = 1

[[rules]]
name = "severe_count"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint", attrs = { category = "safety" } } }
thresholds = { warning = 3 }
clear = 1

[[rules]]
name = "detractor_count"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "feedback" } }
thresholds = { warning = 3 }
clear = 1
"#
}

/// A transition of an alert of `rule` on product `p`.
pub fn tr(
    rule: &str,
    product: &str,
    state: State,
    sev: Severity,
    at: i64,
    started: i64,
) -> Transition {
    let group = vec![("product".to_string(), product.to_string())];
    Transition {
        rule: rule.to_string(),
        dedup_key: Transition::make_dedup_key(rule, &group, started),
        group,
        state,
        severity: sev,
        at,
        value: Some(10.0),
        threshold: 5.0,
        clear: 2.0,
        started_at: started,
        window_ms: 600_000,
        sample_event_ids: vec![format!("evt-{rule}-{at}")],
        hints: Vec::new(),
    }
}

/// The receiver TOML of a generic webhook with fast test delivery settings.
pub fn generic_receiver(name: &str, url: &str, delivery: &str) -> String {
    format!(
        r#"
[[receivers]]
name = "{name}"
kind = "generic"
url = "{url}"
delivery = {{ {delivery} }}
"#
    )
}

/// The value of a metric series in `reg` (0 when absent).
pub fn metric(reg: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for fam in reg.gather() {
        if fam.get_name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.get_name() == *k && l.get_value() == *v)
            });
            if ok {
                if fam.get_field_type() == prometheus::proto::MetricType::COUNTER {
                    return m.get_counter().get_value();
                }
                return m.get_gauge().get_value();
            }
        }
    }
    0.0
}

/// Polls `f` until it holds, at most `deadline` (tokio time).
pub async fn eventually(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "{what} did not happen within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
