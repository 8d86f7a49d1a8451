//! Delivery policy against real HTTP receivers on loopback, in paused tokio
//! time: retries and their spacing, refusals, dead letters, the circuit
//! breaker, and one dead receiver beside a healthy one.

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::State;
use crisiswatch::config::Severity;
use crisiswatch::incident::outbox::Status;
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use incidents_support::*;
use prometheus::Registry;

fn open(
    cfg_text: &str,
    dir: &tempfile::TempDir,
    reg: &Registry,
) -> std::sync::Arc<IncidentManager> {
    IncidentManager::open(
        &config(cfg_text),
        reg,
        dir.path(),
        ManagerOptions::default(),
    )
    .unwrap()
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

#[tokio::test(start_paused = true)]
async fn retries_503_503_429_then_202_are_spaced_by_the_policy() {
    let rx = Receiver::start().await;
    rx.script([
        Reply::status(503),
        Reply::status(503),
        Reply::retry_after(429, "1"),
        Reply::status(202),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "100ms", backoff_max = "10s", jitter = 0.2"#,
        ),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    let reqs = rx.wait_for(4, Duration::from_secs(60)).await;
    // However long we wait, there is no fifth attempt.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(rx.requests().len(), 4, "exactly four attempts");
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 429, 202]);
    let gaps: Vec<i64> = reqs.windows(2).map(|w| ms(w[1].at - w[0].at)).collect();
    // Backoff 100 ms doubling, ±20 % jitter (±2 ms of timer rounding)…
    assert!(
        (78..=122).contains(&gaps[0]),
        "first retry after {}ms",
        gaps[0]
    );
    assert!(
        (158..=242).contains(&gaps[1]),
        "second retry after {}ms",
        gaps[1]
    );
    // …and Retry-After: 1 wins over the 400 ms ± 20 % backoff.
    assert!(
        (999..=1002).contains(&gaps[2]),
        "retry after 429 after {}ms",
        gaps[2]
    );
    let bodies: Vec<serde_json::Value> = reqs.iter().map(|r| r.json()).collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry sends the same document"
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_attempts_total",
            &[("receiver", "hook")]
        ),
        4.0
    );
    let fail = |reason| {
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", reason)],
        )
    };
    assert_eq!(
        (fail("server_error"), fail("rate_limited"), fail("rejected")),
        (2.0, 1.0, 0.0)
    );
    let delivered = m.outbox().list(Some(Status::Delivered), None, 10).unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].attempts, 4);
    // Latency, queued to 2xx: the three waits.
    let [p50, _, _, max] = m.metrics().latency_ms("hook").unwrap();
    assert_eq!(p50, max);
    assert!(
        max as i64 >= gaps.iter().sum::<i64>() - 3,
        "latency {max}ms"
    );
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_400_is_one_attempt_and_a_counted_failure() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver("hook", &rx.url(), r#"backoff_initial = "100ms""#),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(1, Duration::from_secs(10)).await;
    let ob = m.outbox().clone();
    eventually(Duration::from_secs(10), "the open marked failed", || {
        ob.list(Some(Status::Failed), None, 10).unwrap().len() == 1
    })
    .await;
    // The incident goes on: its resolve is still delivered, once.
    m.submit(
        &[tr("a", "p", State::Resolved, Severity::Warning, 9000, 1000)],
        9000,
    )
    .unwrap();
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one attempt for the refused open, one for the resolve"
    );
    assert_eq!(reqs[0].json()["action"], "open");
    assert_eq!(reqs[1].json()["action"], "resolve");
    let failed = ob.list(Some(Status::Failed), None, 10).unwrap();
    assert_eq!(failed[0].attempts, 1);
    assert!(failed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("HTTP 400"));
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notifications_total",
            &[("receiver", "hook"), ("outcome", "failed")]
        ),
        1.0
    );
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_redirect_is_not_followed_and_not_a_delivery() {
    for status in [301u16, 302, 303, 307, 308] {
        let rx = Receiver::start().await;
        let moved = Reply {
            headers: vec![(
                "location".into(),
                format!("http://{}/elsewhere?token=secret", rx.addr),
            )],
            ..Reply::status(status)
        };
        // Moved twice, then the receiver takes it.
        rx.script([moved.clone(), moved]);
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new();
        let m = open(
            &generic_receiver("hook", &rx.url(), r#"backoff_initial = "100ms""#),
            &dir,
            &reg,
        );
        m.submit(
            &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
            1000,
        )
        .unwrap();
        let reqs = rx.wait_for(3, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let reqs_after = rx.requests();
        assert_eq!(reqs_after.len(), 3, "{status}: {reqs:?}");
        // Every attempt is the POST to the configured path, never the target.
        for r in &reqs_after {
            assert_eq!(r.path, "/hook", "{status}");
            assert_eq!(r.json()["action"], "open", "{status}");
        }
        assert_eq!(
            metric(
                &reg,
                "crisiswatch_notification_failures_total",
                &[("receiver", "hook"), ("reason", "other")]
            ),
            2.0,
            "{status}"
        );
        let ob = m.outbox().clone();
        eventually(Duration::from_secs(10), "the open delivered", || {
            ob.list(Some(Status::Delivered), None, 10).unwrap().len() == 1
        })
        .await;
        let delivered = ob.list(Some(Status::Delivered), None, 10).unwrap();
        assert_eq!(delivered[0].attempts, 3, "{status}");
        m.shutdown(Duration::from_secs(1)).await;
    }
}

/// A receiver that reads the request and closes the connection without an
/// answer (a crash, a proxy dropping it) is a connection failure: counted as
/// `connect`, not `other`, and retried until it answers.
#[tokio::test(start_paused = true)]
async fn a_connection_closed_without_an_answer_is_a_connect_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let server = tokio::spawn(async move {
        for n in 1usize.. {
            let (mut sock, _) = listener.accept().await.unwrap();
            // Read the request head and body (until the client waits).
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            loop {
                let k = sock.read(&mut buf).await.unwrap_or(0);
                got.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&got);
                if k == 0 || text.contains("\"action\"") && text.trim_end().ends_with('}') {
                    break;
                }
            }
            if n <= 2 {
                drop(sock); // closed, no answer
            } else {
                sock.write_all(
                    b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            }
            let _ = seen_tx.send(n);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver(
            "hook",
            &format!("http://{addr}/hook"),
            r#"backoff_initial = "100ms""#,
        ),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    for want in 1..=3 {
        let n = tokio::time::timeout(Duration::from_secs(120), seen_rx.recv())
            .await
            .expect("the receiver is tried again")
            .unwrap();
        assert_eq!(n, want);
    }
    let ob = m.outbox().clone();
    eventually(Duration::from_secs(10), "the open delivered", || {
        ob.list(Some(Status::Delivered), None, 10).unwrap().len() == 1
    })
    .await;
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "connect")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "other")]
        ),
        0.0
    );
    m.shutdown(Duration::from_secs(1)).await;
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn the_drain_keeps_its_limit_while_a_receiver_does_not_answer() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::hang());
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver("hook", &rx.url(), r#"timeout = "120s""#),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(1, Duration::from_secs(10)).await;
    let started = tokio::time::Instant::now();
    let report = m.shutdown(Duration::from_secs(5)).await;
    let took = started.elapsed();
    // Paused time: the deadline and the grace, not the receiver's 120 s.
    assert!(
        took >= Duration::from_secs(5)
            && took <= Duration::from_secs(5) + crisiswatch::incident::STOP_GRACE,
        "{took:?}"
    );
    assert_eq!(report.pending, 1);
    // The cancelled attempt is not counted; the open stays queued for the next start.
    let pending = m.outbox().list(Some(Status::Pending), None, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_holds_the_whole_receiver() {
    let rx = Receiver::start().await;
    rx.script([Reply::retry_after(429, "10")]);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver("hook", &rx.url(), r#"backoff_initial = "100ms""#),
        &dir,
        &reg,
    );
    // Two incidents (two products): the receiver refuses the first open
    // with Retry-After: 10; the second open waits as well.
    m.submit(
        &[
            tr("a", "p", State::Firing, Severity::Warning, 1000, 1000),
            tr("a", "q", State::Firing, Severity::Warning, 1000, 1000),
        ],
        1000,
    )
    .unwrap();
    let reqs = rx.wait_for(3, Duration::from_secs(120)).await;
    assert_eq!(reqs[0].status, 429);
    for r in &reqs[1..3] {
        assert!(
            r.at.duration_since(reqs[0].at) >= Duration::from_secs(10),
            "sent {:?} after the 429 asked for 10 s",
            r.at.duration_since(reqs[0].at)
        );
        assert_eq!(r.status, 202);
    }
    m.shutdown(Duration::from_secs(1)).await;
}

/// A receiver cannot pause itself for longer than its `backoff_max`: a
/// `Retry-After` dated 2099 held every notification to it (for any
/// incident) until `max_age` dead-lettered them.
#[tokio::test(start_paused = true)]
async fn a_retry_after_of_years_holds_the_receiver_for_backoff_max_only() {
    let rx = Receiver::start().await;
    rx.script([Reply::retry_after(429, "Wed, 21 Oct 2099 07:28:00 GMT")]);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "100ms", backoff_max = "3s", jitter = 0.0, max_age = "1h""#,
        ),
        &dir,
        &reg,
    );
    m.submit(
        &[
            tr("a", "p", State::Firing, Severity::Warning, 1000, 1000),
            tr("a", "q", State::Firing, Severity::Warning, 1000, 1000),
        ],
        1000,
    )
    .unwrap();
    let reqs = rx.wait_for(3, Duration::from_secs(120)).await;
    assert_eq!(reqs[0].status, 429);
    for r in &reqs[1..3] {
        let after = r.at.duration_since(reqs[0].at);
        assert!(
            after >= Duration::from_secs(3) && after < Duration::from_secs(10),
            "sent {after:?} after the 429 (backoff_max 3 s)"
        );
        assert_eq!(r.status, 202);
    }
    m.shutdown(Duration::from_secs(1)).await;
}

/// While a receiver takes its time (here it never answers, and the timeout
/// is a minute), the queue's gauges stay current: a backlog alert on
/// `crisiswatch_outbox_oldest_age_seconds` must not see an empty queue.
#[tokio::test(start_paused = true)]
async fn queue_gauges_stay_current_while_a_request_hangs() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::hang());
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver("hook", &rx.url(), r#"timeout = "60s""#),
        &dir,
        &reg,
    );
    let opens: Vec<_> = (0..5)
        .map(|i| {
            tr(
                "a",
                &format!("p{i}"),
                State::Firing,
                Severity::Warning,
                1000,
                1000,
            )
        })
        .collect();
    m.submit(&opens, 1000).unwrap();
    rx.wait_for(1, Duration::from_secs(10)).await;
    let depth = || metric(&reg, "crisiswatch_outbox_depth", &[("receiver", "hook")]);
    let age = || {
        metric(
            &reg,
            "crisiswatch_outbox_oldest_age_seconds",
            &[("receiver", "hook")],
        )
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(depth(), 5.0, "the queue, while the first request hangs");
    let first = age();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let later = age();
    assert!(
        later >= first + 15.0,
        "the oldest age moves on: {first} s, then {later} s"
    );
    assert_eq!(depth(), 5.0);
    m.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn dead_receiver_does_not_slow_the_healthy_one() {
    let dead = Receiver::start().await;
    dead.set_default(Reply::hang());
    let healthy = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let delivery =
        r#"timeout = "5s", backoff_initial = "1s", breaker_failures = 3, breaker_cooldown = "30s""#;
    let text = format!(
        "{}{}",
        generic_receiver("dead", &dead.url(), delivery),
        generic_receiver("healthy", &healthy.url(), delivery)
    );
    let m = open(&text, &dir, &reg);
    let t0 = tokio::time::Instant::now();
    // Ten incidents open over ten minutes of event time, while the dead receiver times out.
    for i in 0..10i64 {
        let at = 1000 + i * 60_000;
        let sent = tokio::time::Instant::now();
        m.submit(
            &[tr(
                "a",
                &format!("p{i}"),
                State::Firing,
                Severity::Warning,
                at,
                at,
            )],
            at,
        )
        .unwrap();
        let got = healthy
            .wait_until(Duration::from_secs(60), "healthy delivery", |r| {
                r.len() > i as usize
            })
            .await;
        assert!(
            got[i as usize].at - sent < Duration::from_millis(100),
            "healthy receiver waited {:?} behind the dead one",
            got[i as usize].at - sent
        );
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    let [_, _, p99, max] = m.metrics().latency_ms("healthy").unwrap();
    assert!(max < 100, "healthy p99 {p99}ms max {max}ms");
    // Meanwhile the dead one timed out and its breaker opened.
    assert!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "dead"), ("reason", "timeout")]
        ) >= 3.0
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_receiver_circuit_open",
            &[("receiver", "dead")]
        ),
        1.0
    );
    assert!(metric(&reg, "crisiswatch_outbox_depth", &[("receiver", "dead")]) >= 9.0);
    assert_eq!(
        metric(&reg, "crisiswatch_outbox_depth", &[("receiver", "healthy")]),
        0.0
    );
    assert!(tokio::time::Instant::now() - t0 >= Duration::from_secs(70));
    m.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_holds_attempts_during_its_cooldown() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "100ms", backoff_max = "1s", jitter = 0.0, breaker_failures = 3, breaker_cooldown = "30s""#,
        ),
        &dir,
        &reg,
    );
    for p in ["p1", "p2"] {
        m.submit(
            &[tr("a", p, State::Firing, Severity::Warning, 1000, 1000)],
            1000,
        )
        .unwrap();
    }
    let reqs = rx.wait_for(5, Duration::from_secs(120)).await;
    let gaps: Vec<i64> = reqs.windows(2).map(|w| ms(w[1].at - w[0].at)).collect();
    // Two incidents: both tried at once, the first retried at 100 ms → three failures: open.
    assert!(gaps[0] <= 2 && (99..=102).contains(&gaps[1]), "{gaps:?}");
    // Then one trial per cooldown, however many notifications wait.
    assert!((29_999..=30_002).contains(&gaps[2]), "{gaps:?}");
    assert!((29_999..=30_002).contains(&gaps[3]), "{gaps:?}");
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_receiver_circuit_open",
            &[("receiver", "hook")]
        ),
        1.0
    );
    rx.set_default(Reply::status(202));
    rx.wait_until(Duration::from_secs(60), "both delivered", |r| {
        r.iter().filter(|x| x.status == 202).count() == 2
    })
    .await;
    let ob = m.outbox().clone();
    eventually(Duration::from_secs(10), "breaker closed", || {
        metric(
            &reg,
            "crisiswatch_receiver_circuit_open",
            &[("receiver", "hook")],
        ) == 0.0
            && ob.queue_stats("hook").unwrap().pending == 0
    })
    .await;
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn undelivered_past_max_age_is_dead_lettered_kept_and_redelivered_on_retry() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "1s", backoff_max = "2s", max_age = "10s", breaker_failures = 0"#,
        ),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Critical, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(3, Duration::from_secs(30)).await;
    // While it waits: depth 1, and the age of the oldest grows.
    eventually(Duration::from_secs(9), "oldest age reaching 3 s", || {
        metric(
            &reg,
            "crisiswatch_outbox_oldest_age_seconds",
            &[("receiver", "hook")],
        ) >= 3.0
    })
    .await;
    assert_eq!(
        metric(&reg, "crisiswatch_outbox_depth", &[("receiver", "hook")]),
        1.0
    );
    let ob = m.outbox().clone();
    eventually(Duration::from_secs(60), "dead-lettered", || {
        ob.list(Some(Status::Dead), None, 10).unwrap().len() == 1
    })
    .await;
    let attempts = rx.requests().len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        rx.requests().len(),
        attempts,
        "a dead letter is not attempted"
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notifications_total",
            &[("receiver", "hook"), ("outcome", "dead_lettered")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_outbox_dead_letters",
            &[("receiver", "hook")]
        ),
        1.0
    );
    assert_eq!(
        metric(&reg, "crisiswatch_outbox_depth", &[("receiver", "hook")]),
        0.0
    );
    // The operator retries it once the receiver is back.
    rx.set_default(Reply::status(202));
    let dead = ob.list(Some(Status::Dead), None, 10).unwrap();
    let rep = ob.retry(&[dead[0].id], None, false, m.now_ms()).unwrap();
    assert_eq!(rep.requeued, vec![dead[0].id]);
    let got = rx
        .wait_until(Duration::from_secs(30), "redelivery", |r| {
            r.iter().any(|x| x.status == 202)
        })
        .await;
    assert_eq!(got.last().unwrap().json()["action"], "open");
    eventually(Duration::from_secs(10), "delivered", || {
        ob.list(Some(Status::Delivered), None, 10).unwrap().len() == 1
    })
    .await;
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_running_manager_prunes_delivered_notifications_past_retention() {
    // Retention 1 h: the manager prunes every 7.5 min while it runs, not only
    // when it opens, so a long-running service keeps an hour of history.
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let text = format!(
        "[incidents]\nretention = \"1h\"\n{}",
        generic_receiver("hook", &rx.url(), r#"backoff_initial = "100ms""#)
    );
    let m = open(&text, &dir, &reg);
    assert_eq!(
        crisiswatch::incident::prune_interval(3_600_000),
        Duration::from_secs(450)
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(1, Duration::from_secs(60)).await;
    let delivered = || {
        m.outbox()
            .list(Some(Status::Delivered), None, 100)
            .unwrap()
            .len()
    };
    let wait_delivered = async {
        for _ in 0..1000 {
            if delivered() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the notification was never marked delivered");
    };
    wait_delivered.await;
    // Within the retention it stays, across several prunes.
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert_eq!(delivered(), 1, "pruned before its retention ran out");
    // An hour after delivery (and one interval more) it is gone.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(delivered(), 0, "still there after its retention");
    m.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn dead_letters_are_pruned_by_retention_and_counted() {
    // A receiver that stays dead: its dead letters do not pile up for ever,
    // they leave with the rest of the history after `incidents.retention`.
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let text = format!(
        "[incidents]\nretention = \"1h\"\n{}",
        generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "1s", backoff_max = "2s", max_age = "10s", breaker_failures = 0"#,
        )
    );
    let m = open(&text, &dir, &reg);
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Critical, 1000, 1000)],
        1000,
    )
    .unwrap();
    let ob = m.outbox().clone();
    let dead = || ob.list(Some(Status::Dead), None, 10).unwrap().len();
    eventually(Duration::from_secs(60), "dead-lettered", || dead() == 1).await;
    let pruned = || {
        metric(
            &reg,
            "crisiswatch_outbox_dead_letters_pruned_total",
            &[("receiver", "hook")],
        )
    };
    // Within the retention it stays (an operator can still retry it).
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert_eq!(dead(), 1, "pruned before its retention ran out");
    assert_eq!(pruned(), 0.0);
    // An hour after it was dead-lettered (and one prune interval more) it is gone, and counted.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(dead(), 0, "still there after its retention");
    assert_eq!(pruned(), 1.0);
    eventually(Duration::from_secs(60), "the gauge follows", || {
        metric(
            &reg,
            "crisiswatch_outbox_dead_letters",
            &[("receiver", "hook")],
        ) == 0.0
    })
    .await;
    m.shutdown(Duration::from_secs(1)).await;
}

/// A notification the receiver accepted while the outbox cannot record it
/// (disk full, a read-only file: here a trigger that refuses the write) is
/// not sent again: the worker keeps the outcome, sends nothing else to
/// that receiver meanwhile, and records it once the outbox takes writes.
/// Before, the row stayed due and went out again at once, in a loop.
#[tokio::test(start_paused = true)]
async fn an_outcome_the_outbox_refuses_is_kept_not_sent_again() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(202));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(&generic_receiver("hook", &rx.url(), ""), &dir, &reg);
    // Another connection makes the outbox refuse every status change.
    let db = rusqlite::Connection::open(dir.path().join("outbox.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE UPDATE OF status ON notifications \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Critical, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(1, Duration::from_secs(30)).await;
    // A second incident queued meanwhile waits: nothing goes out.
    m.submit(
        &[tr("b", "q", State::Firing, Severity::Critical, 2000, 2000)],
        2000,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rx.requests().len(),
        1,
        "the accepted notification is not sent again"
    );
    let ob = m.outbox().clone();
    assert!(ob
        .list(Some(Status::Delivered), None, 10)
        .unwrap()
        .is_empty());
    // The outbox takes writes again: the kept outcome is recorded, then
    // the waiting incident goes out — each notification once.
    db.execute_batch("DROP TRIGGER refuse;").unwrap();
    let reqs = rx.wait_for(2, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "both delivered", || {
        ob.list(Some(Status::Delivered), None, 10).unwrap().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rx.requests().len(), 2, "{reqs:?}");
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| {
            r.json()["dedup_key"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "one request per incident: {ids:?}");
    m.shutdown(Duration::from_secs(1)).await;
}

/// An Alertmanager re-push due while the receiver is held (its 429's
/// `Retry-After`) goes out when the hold ends, before the queued rows: it
/// was skipped and put a whole `resend_interval` off, and as the queued
/// rows went first after each hold and drew the next 429, a receiver that
/// kept asking for pauses heard no re-push at all — its firing alerts
/// would pass their `endsAt` and resolve there.
#[tokio::test(start_paused = true)]
async fn an_alertmanager_re_push_due_during_a_hold_goes_out_when_it_ends() {
    let rx = Receiver::start().await;
    // The open of `p` is taken; everything after it is asked to wait 1 s.
    rx.script([Reply::status(200)]);
    rx.set_default(Reply::retry_after(429, "1"));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let m = open(
        &format!(
            r#"
[[receivers]]
name = "am"
kind = "alertmanager"
url = "{}"
delivery = {{ resend_interval = "2s", backoff_initial = "100ms", breaker_failures = 0 }}
"#,
            rx.url()
        ),
        &dir,
        &reg,
    );
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    rx.wait_for(1, Duration::from_secs(60)).await;
    // Other incidents open all the while, and the receiver refuses each
    // with Retry-After: after every hold, a fresh row is due.
    for i in 0..40 {
        let at = 2000 + i * 500;
        m.submit(
            &[tr(
                "a",
                &format!("q{i}"),
                State::Firing,
                Severity::Warning,
                at,
                at,
            )],
            at,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let products = |r: &Request| -> Vec<String> {
        r.json()
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["labels"]["product"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let reqs = rx.requests();
    let repushes = reqs[1..].iter().filter(|r| products(r) == ["p"]).count();
    let opens_of_q = reqs
        .iter()
        .filter(|r| products(r).iter().all(|p| p.starts_with('q')))
        .count();
    assert!(
        opens_of_q >= 5,
        "the others' opens are tried after each hold: {opens_of_q}"
    );
    // One every 2 s over 20 s: some ten.
    assert!(repushes >= 6, "re-pushes of p in 20 s: {repushes}");
    m.shutdown(Duration::from_secs(1)).await;
}
