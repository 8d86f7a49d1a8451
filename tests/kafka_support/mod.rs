//! Support for the Kafka integration tests and bench: a real broker
//! ([`broker`]), rdkafka clients for the test side ([`client`]), the service
//! as a child process ([`service`]) and a webhook receiver ([`receiver`]).

#![allow(dead_code)]

pub mod alertmanager;
pub mod broker;
pub mod client;
pub mod receiver;
pub mod service;

use std::time::{Duration, Instant};

/// Event time of test data: two hours ago, on a full hour (well inside the
/// future-skew limit, the same for every message of a run).
pub fn hour_t0() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(3_600_000) - 2 * 3_600_000
}

/// `n` complaints for `product` on partition 0 of `complaints` from `from`
/// (ms), one a second, then one for an idle product two minutes later that
/// moves event time past the end of their one-minute pane.
pub fn complaint_burst(tag: &str, product: &str, from: i64, n: i64) -> Vec<client::Out> {
    let mut out: Vec<client::Out> = (0..n)
        .map(|i| {
            let ts = from + i * 1000;
            client::Out::new(
                "complaints",
                0,
                format!(r#"{{"id":"{tag}-{i}","ts":{ts},"attrs":{{"product":"{product}"}}}}"#),
            )
        })
        .collect();
    let ts = from + 120_000;
    out.push(client::Out::new(
        "complaints",
        0,
        format!(r#"{{"id":"{tag}-tick","ts":{ts},"attrs":{{"product":"idle"}}}}"#),
    ));
    out
}

/// Polls `cond` until it holds; fails the test after `deadline` saying `what`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `[sources.kafka]` and engine settings every test uses: fast group
/// joins on this broker (see docs/broker.md), short timeouts so the tests
/// observe stalls, idleness and commits within seconds.
pub fn base_config(
    bootstrap: &str,
    group: &str,
    topics: &[(&str, Option<&str>)],
    dlq: &str,
    data_dir: &str,
) -> String {
    let topics: Vec<String> = topics
        .iter()
        .map(|(n, t)| match t {
            Some(t) => format!("{{ name = \"{n}\", default_type = \"{t}\" }}"),
            None => format!("{{ name = \"{n}\" }}"),
        })
        .collect();
    format!(
        r#"
[engine]
idle_timeout = "2s"
max_event_bytes = 2048

[server]
listen = "127.0.0.1:0"

[incidents]
data_dir = "{data_dir}"

[sources.kafka]
brokers = "{bootstrap}"
group_id = "{group}"
topics = [{topics}]
dead_letter_topic = "{dlq}"
commit_interval = "1s"
idle_partition_timeout = "2s"
stall_timeout = "5s"
shutdown_timeout = "15s"
max_batch_messages = 500

[sources.kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"topic.metadata.refresh.interval.ms" = "2000"
{debug}"#,
        topics = topics.join(", "),
        // CRISISWATCH_TEST_RDKAFKA_DEBUG=cgrp,topic: librdkafka's debug contexts
        // (with CRISISWATCH_TEST_LOG=debug to see them).
        debug = std::env::var("CRISISWATCH_TEST_RDKAFKA_DEBUG")
            .map(|d| format!("\"debug\" = \"{d}\"\n"))
            .unwrap_or_default(),
    )
}

/// An HTTP/1.0 request to `addr` with an optional bearer token and a JSON
/// body; (status, body). A refused connection is status 0.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
