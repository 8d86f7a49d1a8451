//! The clock of a scaled group beyond the data, against a real Kafka-protocol
//! broker (Tansu) and a real receiver: when the whole input goes quiet,
//! event time follows the wall clock on every shard owner (as on one
//! instance, `engine.idle_timeout`), so an incident still firing when the
//! traffic stops resolves without new events; and two instances started
//! with different configurations do not mix them — the owners' clocks wait,
//! `/readyz` and `crisiswatch_scale_config_mismatch` say why, until the odd
//! instance leaves. `state inspect` reads the group's state from the
//! changelog topics.

mod kafka_support;

use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, wait_until};

const PARTITIONS: i32 = 4;

fn rules(warning: u32) -> String {
    format!(
        r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "20s"
slide = "5s"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = {warning} }}
clear = 1

[[incidents.routes]]
name = "by_product"
group_by = ["product"]
receivers = ["hook"]
"#
    )
}

fn config(bs: &str, group: &str, data: &str, url: &str, warning: u32) -> String {
    config_with(bs, group, data, url, warning, "0")
}

fn config_with(bs: &str, group: &str, data: &str, url: &str, warning: u32, update: &str) -> String {
    let mut cfg = base_config(bs, group, &[("events", None)], "", data);
    cfg = cfg.replacen("[engine]\n", "[engine]\nallowed_lateness = \"2s\"\n", 1);
    cfg = cfg.replacen(
        "[incidents]\n",
        &format!("[incidents]\nupdate_interval = \"{update}\"\n"),
        1,
    );
    cfg.push_str(&format!(
        "\n[sources.kafka.scale_out]\nshard_partitions = 4\nincident_partitions = 2\ncheckpoint_interval = \"500ms\"\ntopic_prefix = \"{group}\"\n"
    ));
    cfg.push_str(&rules(warning));
    cfg.push_str(&format!(
        "\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{url}\"\n"
    ));
    cfg
}

/// Eight complaints about p1 within four seconds, a minute ago, and orders
/// of other products around them, over every partition.
fn burst() -> Vec<Out> {
    events(40, 100, |i| i % 5 == 0 || i < 8)
}

/// `n` events `spacing_ms` apart from a minute ago, over every partition:
/// complaints about p1 where `complaint(i)`, orders of p2 between them.
fn events(n: i64, spacing_ms: i64, complaint: impl Fn(i64) -> bool) -> Vec<Out> {
    let t0 = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut out = Vec::new();
    for i in 0..n {
        let (kind, product) = if complaint(i) {
            ("complaint", "p1")
        } else {
            ("order", "p2")
        };
        let json = format!(
            r#"{{"id":"e{i}","type":"{kind}","ts":{},"attrs":{{"product":"{product}"}}}}"#,
            t0 + i * spacing_ms
        );
        out.push(Out::new(
            "events",
            (i % i64::from(PARTITIONS)) as i32,
            json.into_bytes(),
        ));
    }
    out
}

/// The newest event time in `events`.
fn newest_ts(events: &[Out]) -> i64 {
    events
        .iter()
        .filter_map(|o| serde_json::from_slice::<serde_json::Value>(&o.payload).ok())
        .filter_map(|v| v["ts"].as_i64())
        .max()
        .unwrap_or_default()
}

fn actions(r: &Receiver, product: &str) -> Vec<String> {
    r.bodies()
        .iter()
        .filter(|b| b["dedup_key"].as_str().is_some_and(|k| k.contains(product)))
        .map(|b| b["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn start(dir: &std::path::Path, bs: &str, name: &str, url: &str, warning: u32) -> Service {
    let data = dir.join(format!("data-{name}")).display().to_string();
    Service::start(dir, name, &config(bs, "quiet", &data, url, warning))
}

#[test]
fn a_quiet_stream_resolves_on_the_wall_clock_across_instances() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let a = start(dir.path(), &bs, "a", &r.url, 5);
    let b = start(dir.path(), &bs, "b", &r.url, 5);
    let events = burst();
    let newest = newest_ts(&events);
    produce(&bs, &events, Duration::from_secs(30));
    // Nothing follows the burst: only the quiet clock can release it (its
    // events are within `allowed_lateness` of the newest) and empty the window.
    let got = std::panic::catch_unwind(|| {
        wait_until(
            Duration::from_secs(90),
            "the p1 incident opened and resolved with no new event",
            || actions(&r, "p1") == ["open", "resolve"],
        )
    });
    if got.is_err() {
        panic!(
            "notifications {:?}\n--- a\n{}\n--- b\n{}",
            r.bodies(),
            a.stderr_text(),
            b.stderr_text()
        );
    }
    assert_eq!(actions(&r, "p2"), Vec::<String>::new());
    a.sigterm();
    b.sigterm();
    // The state is in the changelog topics: `state inspect` reads it there.
    let mut a = a;
    let mut b = b;
    let _ = a.wait_exit(Duration::from_secs(30));
    let _ = b.wait_exit(Duration::from_secs(30));
    let out = std::process::Command::new(kafka_support::service::BIN)
        .args(["state", "--config"])
        .arg(dir.path().join("a.toml"))
        .args(["inspect", "--json"])
        .output()
        .expect("state inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let shards = doc["shard_partitions"]
        .as_array()
        .expect("shard partitions");
    assert_eq!(shards.len(), 4, "{doc}");
    // Every owner's checkpointed clock went past the burst on the wall clock
    // (the data alone leaves it at the newest time minus the lateness).
    for p in shards {
        let clock = p["engine_clock"].as_str().unwrap_or_default();
        let clock = chrono::DateTime::parse_from_rfc3339(clock).map_or(0, |c| c.timestamp_millis());
        assert!(clock > newest, "clock {clock}, newest {newest}: {p}");
        assert!(p["next_offset"].as_i64() > Some(0), "{p}");
    }
    assert!(
        shards.iter().all(|p| p["held_events"] == 0),
        "the quiet clock released everything: {doc}"
    );
    let incidents = doc["incident_partitions"]
        .as_array()
        .expect("incident partitions");
    assert_eq!(incidents.len(), 2, "{doc}");
    assert!(
        incidents
            .iter()
            .all(|p| p["open_incidents"].as_array().is_some_and(Vec::is_empty)),
        "the incident resolved: {doc}"
    );
    let reset = std::process::Command::new(kafka_support::service::BIN)
        .args(["state", "--config"])
        .arg(dir.path().join("a.toml"))
        .args(["reset", "--yes"])
        .output()
        .expect("state reset");
    assert_eq!(
        reset.status.code(),
        Some(2),
        "a shared state is not reset from one instance"
    );
    assert!(String::from_utf8_lossy(&reset.stderr).contains("new group_id"));
}

/// Sixteen complaints about p1 over eight seconds, a minute ago, with orders
/// of p2 between them, over every partition.
fn long_burst() -> Vec<Out> {
    events(32, 250, |i| i % 2 == 0)
}

#[test]
fn progress_updates_carry_the_shard_owners_current_values() {
    // The incident of p1 lives on one instance, its alert's window possibly
    // on the other: progress updates must still say how the count stands
    // now (the window drains on the quiet clock: up to 16, then fewer,
    // then resolved), not repeat the value the alert fired with.
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let start = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        let cfg = config_with(&bs, "progress", &data, &r.url, 5, "2s");
        // A shorter window drains sooner: 10 s in 2-s panes holds the whole
        // 7.5-s burst at some point.
        let cfg = cfg
            .replacen("window = \"20s\"", "window = \"10s\"", 1)
            .replacen("slide = \"5s\"", "slide = \"2s\"", 1);
        let cfg = cfg.replacen(
            "receivers = [\"hook\"]",
            "group_window = \"1s\"\nreceivers = [\"hook\"]",
            1,
        );
        Service::start(dir.path(), name, &cfg)
    };
    let a = start("a");
    let b = start("b");
    produce(&bs, &long_burst(), Duration::from_secs(30));
    let got = std::panic::catch_unwind(|| {
        wait_until(
            Duration::from_secs(90),
            "the p1 incident opened and resolved",
            || actions(&r, "p1").last().map(String::as_str) == Some("resolve"),
        )
    });
    if got.is_err() {
        panic!(
            "notifications {:?}\n--- a\n{}\n--- b\n{}",
            r.bodies(),
            a.stderr_text(),
            b.stderr_text()
        );
    }
    let bodies = r.bodies();
    let p1: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| b["dedup_key"].as_str().is_some_and(|k| k.contains("p1")))
        .collect();
    let progress: Vec<f64> = p1
        .iter()
        .filter(|b| b["action"] == "update" && b["reason"] == "progress")
        .filter_map(|b| b["value"].as_f64())
        .collect();
    let mut distinct = progress.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "progress updates follow the draining window, not the firing value: {progress:?} in {p1:#?}"
    );
    let peak = distinct.last().copied().unwrap_or_default();
    assert!(
        progress.last().is_some_and(|&v| v < peak),
        "the window drains before the resolve: {progress:?}"
    );
    eprintln!("progress values: {progress:?}");
    a.sigterm();
    b.sigterm();
}

#[test]
fn instances_with_different_configurations_do_not_mix_them() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let a = start(dir.path(), &bs, "a", &r.url, 5);
    let mut odd = start(dir.path(), &bs, "odd", &r.url, 6);
    let mismatch = |s: &Service| s.metric("crisiswatch_scale_config_mismatch").unwrap_or(0.0);
    let owned = |s: &Service| {
        s.metric("crisiswatch_scale_owned_partitions{kind=\"shard\"}")
            .unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(60), "both own shard partitions", || {
        owned(&a) > 0.0 && owned(&odd) > 0.0
    });
    produce(&bs, &burst(), Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "both see the other's configuration and say so",
        || mismatch(&a) == 1.0 && mismatch(&odd) == 1.0,
    );
    let (status, body) = a.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("another configuration"), "{body}");
    // Nothing was paged from a mix of two configurations.
    assert_eq!(r.bodies().len(), 0, "{:?}", r.bodies());
    odd.sigterm();
    let _ = odd.wait_exit(Duration::from_secs(30));
    // The survivor reads the odd instance's input partitions itself: its
    // clock moves again, and the burst pages once.
    wait_until(
        Duration::from_secs(90),
        "the survivor is ready again",
        || mismatch(&a) == 0.0 && a.ready(),
    );
    wait_until(
        Duration::from_secs(90),
        "the p1 incident opened and resolved",
        || actions(&r, "p1") == ["open", "resolve"],
    );
    a.sigterm();
}

/// On a single-partition input, a stamp minutes ahead of its neighbours
/// (inside `max_future_skew`) with `max_clock_jump = "2m"`: the split stage's
/// guard holds it aside and the next messages refute it, as one instance's
/// feed does — counted, dead-lettered, and no event after it comes late.
/// Without the guard it moved the owners' clocks four minutes on and the
/// next four minutes of events were dropped as late.
#[test]
fn a_stamp_minutes_ahead_is_refuted_by_the_split_stage() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", 1), ("jumps-dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let data = dir.path().join("data-j").display().to_string();
    let cfg = config(&bs, "jumps", &data, &r.url, 1000)
        .replacen("[engine]\n", "[engine]\nmax_clock_jump = \"2m\"\n", 1)
        .replacen(
            "dead_letter_topic = \"\"",
            "dead_letter_topic = \"jumps-dlq\"",
            1,
        );
    assert!(cfg.contains("jumps-dlq"), "{cfg}");
    let svc = Service::start(dir.path(), "j", &cfg);
    // Ten minutes of events a second apart, ending five minutes ago.
    let t0 = chrono::Utc::now().timestamp_millis() - 15 * 60_000;
    let line = |id: String, ts: i64| {
        Out::new(
            "events",
            0,
            format!(r#"{{"id":"{id}","type":"complaint","ts":{ts},"attrs":{{"product":"p1"}}}}"#)
                .into_bytes(),
        )
    };
    let mut msgs: Vec<Out> = (0..600)
        .map(|i| line(format!("e{i}"), t0 + i * 1000))
        .collect();
    msgs.insert(100, line("ahead".into(), t0 + 99_000 + 4 * 60_000));
    let metric = |m: &str| svc.metric(m).unwrap_or(0.0);
    // The stamp ends the first part: read (and, without the guard, reported
    // to the owners and released past) before the rest is produced.
    let rest = msgs.split_off(101);
    produce(&bs, &msgs, Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "the first part read", || {
        metric("crisiswatch_kafka_messages_total{topic=\"events\"}") >= 101.0
    });
    std::thread::sleep(Duration::from_millis(300));
    produce(&bs, &rest, Duration::from_secs(30));
    let got = std::panic::catch_unwind(|| {
        wait_until(
            Duration::from_secs(90),
            "the stamp refuted and dead-lettered",
            || {
                metric("crisiswatch_kafka_invalid_messages_total{reason=\"clock_jump\",topic=\"events\"}") == 1.0
                && metric("crisiswatch_kafka_dlq_produced_total{reason=\"clock_jump\"}") == 1.0
            },
        );
        // Everything but the last `allowed_lateness` is applied (the quiet
        // clock releases the rest within seconds).
        wait_until(Duration::from_secs(60), "the events applied", || {
            metric("crisiswatch_events_total{outcome=\"applied\"}")
                + metric("crisiswatch_events_total{outcome=\"late\"}")
                >= 600.0
        });
    });
    if got.is_err() {
        panic!("{}", svc.stderr_text());
    }
    assert_eq!(
        metric("crisiswatch_events_total{outcome=\"late\"}"),
        0.0,
        "{}",
        svc.stderr_text()
    );
    assert_eq!(
        metric("crisiswatch_events_total{outcome=\"applied\"}"),
        600.0
    );
    let log = svc.stderr_text();
    assert!(
        log.contains("Event rejected as a clock jump") && log.contains("events[0]@100"),
        "{log}"
    );
    // The stop summary counts what the owners applied and the split stage
    // found invalid (it said 0 of everything scaled out).
    let mut svc = svc;
    svc.sigterm();
    let _ = svc.wait_exit(Duration::from_secs(30));
    let log = svc.stderr_text();
    assert!(
        log.contains("Stopped: 600 events applied, 1 invalid, 0 late"),
        "{log}"
    );
    // Scaled out, the transitions are counted where they are made and where
    // they are taken (it said "0 transitions" of an instance owning no
    // incident partition).
    assert!(
        log.contains("transitions written by this instance's shard owners and ")
            && log.contains(" taken by its incident owners in this run."),
        "{log}"
    );
}
