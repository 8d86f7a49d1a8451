//! Scale-out across instances (`[sources.kafka.scale_out]`) against a real
//! Kafka-protocol broker (Tansu): one embedded instance with two engine
//! threads, and one, two and three `crisiswatch run` processes in one group
//! send a receiver exactly the notifications (by `dedup_key` and action)
//! that one embedded instance with one thread sends over the same data, and a `kill -9` of one of them moves its partitions to the others
//! (restored from the changelog topics) without changing what is sent.
//!
//! The traffic is shaped unlike the demo's: six products in three regions,
//! keyed by event id over four partitions per topic, a complaint burst
//! that trips two rules of different slicings (product; product × region)
//! whose shards live on different instances, grouped into one incident per
//! product by the route; a cancellation wave on another product.

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, hour_t0, wait_until};

const PARTITIONS: i32 = 4;

const RULES: &str = r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 18, critical = 30 }
clear = 8
for = "2m"

[[rules]]
name = "regional_complaints"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 10 }
clear = 4

[[rules]]
name = "cancellations"
group_by = ["product"]
window = "15m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "cancellation" }, denominator = { type = "order" }, min_denominator = 20 }
thresholds = { warning = 0.3 }
clear = 0.15

# Orders against their own last 20 minutes: the p5 wave's extra orders
# fire it; the ten minutes of silence before the end (longer than
# `silence_after`) must not — counted as zeros, it fired on p3, p4 and p6
# when traffic resumed (`replay` with `silence_after = "0s"`). Scaled out,
# each split stage reports the panes its input partitions had events in
# (`Envelope::Occupied`).
[[rules]]
name = "order_surge"
group_by = ["product"]
window = "5m"
slide = "1m"
indicator = { kind = "surge", select = { type = "order" }, baseline = "20m", min_baseline = 1 }
thresholds = { warning = 1.8 }
clear = 1.3

[[incidents.routes]]
name = "by_product"
group_by = ["product"]
receivers = ["hook"]
"#;

/// The partition of an event keyed by its id (as a producer keying by id).
fn partition_of(id: &str) -> i32 {
    (id.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % PARTITIONS as u64) as i32
}

/// Seventy minutes of traffic (see the module docs).
fn scenario(topic: &str) -> Vec<Out> {
    let start = hour_t0();
    let products = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let regions = ["eu", "us", "apac"];
    let mut rng = 11u64;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut out = Vec::new();
    for s in 0..4200i64 {
        // The whole stream silent for ten minutes (minutes 55–65).
        if (3300..3900).contains(&s) {
            continue;
        }
        let ts = start + s * 1000 + (next() % 1000) as i64;
        let p = products[(next() % 6) as usize];
        let r = regions[(next() % 3) as usize];
        let mut push = |id: String, kind: &str, p: &str, r: &str| {
            let json = format!(
                r#"{{"id":"{id}","type":"{kind}","ts":{ts},"attrs":{{"product":"{p}","region":"{r}"}}}}"#
            );
            out.push(Out::new(topic, partition_of(&id), json.into_bytes()));
        };
        if s % 2 == 0 {
            push(format!("o{s}"), "order", p, r);
        }
        if s % 97 == 3 {
            push(format!("c{s}"), "complaint", p, r);
        }
        // p3 in eu: a complaint burst (minutes 15–22).
        if (900..1320).contains(&s) && s % 9 == 0 {
            push(format!("b{s}"), "complaint", "p3", "eu");
        }
        // p5: a cancellation wave (minutes 35–50), orders as usual.
        if (2100..3000).contains(&s) && s % 5 == 0 {
            push(format!("x{s}"), "cancellation", "p5", r);
            push(format!("xo{s}"), "order", "p5", r);
        }
    }
    out
}

fn config(bs: &str, group: &str, topic: &str, data: &str, url: &str, scaled: bool) -> String {
    let mut cfg = base_config(bs, group, &[(topic, None)], "", data);
    // No wall-clock time for a quiet stream: what fires comes from the data.
    cfg = cfg.replacen(
        "idle_timeout = \"2s\"",
        "idle_timeout = \"1h\"\nsilence_after = \"5m\"",
        1,
    );
    assert!(cfg.contains("silence_after"));
    // One progress update per 5 minutes of event time without other news:
    // compared like the rest (their number, times and seq do not depend on
    // when an instance looks).
    cfg = cfg.replacen(
        "[incidents]\n",
        "[incidents]\nupdate_interval = \"5m\"\n",
        1,
    );
    if scaled {
        cfg.push_str(&format!(
            "\n[sources.kafka.scale_out]\nshard_partitions = 4\nincident_partitions = 3\ncheckpoint_interval = \"500ms\"\ntopic_prefix = \"{group}\"\n"
        ));
    }
    cfg.push_str(RULES);
    cfg.push_str(&format!(
        "\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{url}\"\n"
    ));
    cfg
}

/// Every notification: (dedup_key, seq, action, severity, alerts, at,
/// reason). The sequence numbers make the comparison exact: the same
/// notifications, in the same order per incident, none twice.
type Note = (String, u64, String, String, usize, String, String);

fn notifications(r: &Receiver) -> BTreeSet<Note> {
    r.bodies()
        .iter()
        .map(|b| {
            (
                b["dedup_key"].as_str().unwrap_or_default().to_string(),
                b["seq"].as_u64().unwrap_or_default(),
                b["action"].as_str().unwrap_or_default().to_string(),
                b["severity"].as_str().unwrap_or_default().to_string(),
                b["alerts"].as_array().map_or(0, Vec::len),
                b["at"].as_str().unwrap_or_default().to_string(),
                b["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn count(set: &BTreeSet<Note>, action: &str) -> usize {
    set.iter().filter(|n| n.2 == action).count()
}

/// What one embedded instance sends over the whole topic.
fn reference(bs: &str, dir: &std::path::Path, topic: &str, messages: usize) -> Reference {
    embedded(bs, dir, topic, messages, 1)
}

/// What an embedded run sent, and the indicator and counter series it
/// exported at the end.
struct Reference {
    notes: BTreeSet<Note>,
    series: BTreeMap<String, String>,
}

/// The metrics a scaled group exports per rule and group (each series on
/// the instance owning its shard), and per rule or input topic (summed over
/// instances: [`SUMMED`]).
const COMPARED: [&str; 5] = [
    "crisiswatch_indicator_value{",
    "crisiswatch_alert_state{",
    "crisiswatch_window_groups{",
    "crisiswatch_rule_evaluations_total{",
    "crisiswatch_events_received_total{",
];

const SUMMED: [&str; 3] = [
    "crisiswatch_window_groups{",
    "crisiswatch_rule_evaluations_total{",
    "crisiswatch_events_received_total{",
];

/// The series of [`COMPARED`] in an exposition: `name{labels}` → value.
fn compared_series(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter(|l| COMPARED.iter().any(|m| l.starts_with(m)))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The series of several instances as one: per-group series each on one
/// instance, per-rule and per-topic counts and gauges summed.
fn merged_series(services: &[Service]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for s in services {
        for (k, v) in compared_series(&s.get("/metrics").1) {
            let summed = SUMMED.iter().any(|m| k.starts_with(m));
            match out.get_mut(&k) {
                Some(sum) if summed => {
                    let total: f64 = sum.parse::<f64>().unwrap() + v.parse::<f64>().unwrap();
                    *sum = total.to_string();
                }
                Some(_) => panic!("{k} exported by two instances"),
                None => {
                    out.insert(k, v.parse::<f64>().unwrap().to_string());
                }
            }
        }
    }
    out
}

/// What one embedded instance with `workers` engine threads sends over the
/// whole topic.
fn embedded(
    bs: &str,
    dir: &std::path::Path,
    topic: &str,
    messages: usize,
    workers: usize,
) -> Reference {
    let r = Receiver::start();
    let name = format!("ref-w{workers}");
    let data = dir.join(format!("data-{name}")).display().to_string();
    let cfg = config(bs, &name, topic, &data, &r.url, false).replacen(
        "[engine]\n",
        &format!("[engine]\nworkers = {workers}\n"),
        1,
    );
    let svc = Service::start(dir, &name, &cfg);
    // The last `allowed_lateness` of event time stays held (no wall clock
    // moves a quiet stream here): every event before it is applied.
    wait_until(
        Duration::from_secs(90),
        "reference: every event before the last minute applied",
        || svc.applied_set().len() + messages / 70 >= messages,
    );
    let opens = |r: &Receiver| count(&notifications(r), "open");
    let resolves = |r: &Receiver| count(&notifications(r), "resolve");
    wait_until(
        Duration::from_secs(60),
        "reference: the crises opened and resolved",
        || opens(&r) >= 2 && resolves(&r) >= opens(&r),
    );
    // A late notification would show up by now (and the metrics are
    // published every second).
    std::thread::sleep(Duration::from_secs(2));
    let series = compared_series(&svc.get("/metrics").1)
        .into_iter()
        .map(|(k, v)| (k, v.parse::<f64>().unwrap().to_string()))
        .collect();
    svc.sigterm();
    Reference {
        notes: notifications(&r),
        series,
    }
}

/// Waits until `r` got exactly `want` and nothing more for two seconds.
fn expect_exactly(r: &Receiver, want: &BTreeSet<Note>, what: &str, logs: &[&Service]) {
    let got_all = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(Duration::from_secs(120), what, || &notifications(r) == want)
    }));
    std::thread::sleep(Duration::from_secs(2));
    let got = notifications(r);
    if got_all.is_err() || &got != want {
        let mut text = String::new();
        for s in logs {
            text.push_str(&format!("--- {}\n{}\n", s.name, s.stderr_text()));
        }
        panic!(
            "{what}:\nmissing {:?}\nextra {:?}\n{text}",
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(want).collect::<Vec<_>>()
        );
    }
}

#[test]
fn one_two_and_three_instances_page_what_one_embedded_instance_pages() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    // One partition more than the data uses: it never delivers, and is
    // reported idle instead of holding every owner's clock.
    create_topics(&bs, &[("events", PARTITIONS + 1)]);
    let produced = produce(&bs, &scenario("events"), Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let Reference {
        notes: want,
        series,
    } = reference(&bs, dir.path(), "events", produced.len());
    assert!(
        series
            .keys()
            .any(|k| k.starts_with("crisiswatch_indicator_value{") && k.contains("p3")),
        "indicator series are compared: {series:?}"
    );
    assert!(
        count(&want, "open") >= 2,
        "the scenario has two crises: {want:?}"
    );
    assert!(
        want.iter().filter(|n| n.6 == "progress").count() >= 2,
        "progress updates are compared too: {want:?}"
    );
    // Two rules of different slicings (and shards) join the p3 incident.
    assert!(
        want.iter().any(|n| n.0.contains("p3") && n.4 == 2),
        "{want:?}"
    );
    // One instance with two engine threads pages the same.
    let two = embedded(&bs, dir.path(), "events", produced.len(), 2);
    assert_eq!(two.notes, want, "two worker threads against one");
    assert_eq!(
        two.series, series,
        "two worker threads' metrics against one's"
    );
    for n in [1, 2, 3] {
        let r = Receiver::start();
        let group = format!("scaled{n}");
        let services: Vec<Service> = (0..n)
            .map(|i| {
                let data = dir
                    .path()
                    .join(format!("data-{group}-{i}"))
                    .display()
                    .to_string();
                Service::start(
                    dir.path(),
                    &format!("{group}-{i}"),
                    &config(&bs, &group, "events", &data, &r.url, true),
                )
            })
            .collect();
        let logs: Vec<&Service> = services.iter().collect();
        expect_exactly(&r, &want, &format!("{n} scaled instances"), &logs);
        // The indicators and per-rule counters: each (rule, group) series on
        // the instance that owns its shard, the counts adding up to one
        // instance's (published every second).
        let got = std::panic::catch_unwind(|| {
            wait_until(
                Duration::from_secs(10),
                &format!("{n} scaled instances' metrics"),
                || merged_series(&services) == series,
            )
        });
        if got.is_err() {
            let merged = merged_series(&services);
            let missing: Vec<_> = series
                .iter()
                .filter(|(k, v)| merged.get(*k) != Some(v))
                .collect();
            let extra: Vec<_> = merged
                .iter()
                .filter(|(k, v)| series.get(*k) != Some(v))
                .collect();
            panic!("{n} scaled instances' metrics differ from one instance's:\n  one instance only: {missing:?}\n  scaled only: {extra:?}");
        }
        let owned: f64 = services
            .iter()
            .filter_map(|s| s.metric("crisiswatch_scale_owned_partitions{kind=\"shard\"}"))
            .sum();
        assert_eq!(owned, 4.0, "every shard partition has exactly one owner");
        // Every shard partition's read lag is exported by its owner (every 5 s).
        wait_until(Duration::from_secs(20), "the shard partitions' lag", || {
            (0..4).all(|p| {
                services.iter().any(|s| {
                    s.metric(&format!(
                        "crisiswatch_scale_lag_messages{{kind=\"shard\",partition=\"{p}\"}}"
                    ))
                    .is_some_and(|lag| lag >= 0.0)
                })
            })
        });
        for s in &services {
            s.sigterm();
        }
    }
}

#[test]
fn a_killed_instance_s_partitions_move_and_the_pages_do_not_change() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let all = scenario("events");
    // Produced in event-time order: the first part holds the p3 crisis.
    let cut = all.len() * 2 / 5;
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let start = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        Service::start(
            dir.path(),
            name,
            &config(&bs, "moving", "events", &data, &r.url, true),
        )
    };
    let mut a = start("a");
    let b = start("b");
    produce(&bs, &all[..cut], Duration::from_secs(30));
    wait_until(Duration::from_secs(90), "the p3 incident opened", || {
        notifications(&r)
            .iter()
            .any(|n| n.0.contains("p3") && n.2 == "open")
    });
    let owned = |s: &Service, kind: &str| {
        s.metric(&format!(
            "crisiswatch_scale_owned_partitions{{kind=\"{kind}\"}}"
        ))
        .unwrap_or(0.0)
    };
    // Both own windows, so the victim's move restores state elsewhere.
    wait_until(
        Duration::from_secs(30),
        "both instances own shard partitions",
        || owned(&a, "shard") > 0.0 && owned(&b, "shard") > 0.0,
    );
    // Let a checkpoint cover some of what the victim did, not all of it.
    std::thread::sleep(Duration::from_millis(700));
    a.signal("KILL");
    let _ = a.wait_exit(Duration::from_secs(10));
    let c = start("c");
    produce(&bs, &all[cut..], Duration::from_secs(30));
    let want = reference(&bs, dir.path(), "events", all.len()).notes;
    expect_exactly(
        &r,
        &want,
        "after a kill -9 and a new instance",
        &[&a, &b, &c],
    );
    let moved: f64 = [&b, &c]
        .iter()
        .filter_map(|s| s.metric("crisiswatch_scale_restore_seconds_count{kind=\"shard\"}"))
        .sum();
    assert!(
        moved >= 4.0,
        "the shard partitions were restored after the kill: {moved}"
    );
    assert_eq!(owned(&b, "shard") + owned(&c, "shard"), 4.0);
    assert_eq!(owned(&b, "incident") + owned(&c, "incident"), 3.0);
    // The changelog and control readers read to the end of their
    // partitions on purpose: no ERROR line for it (librdkafka reports each
    // end of partition as an error, which its default context logged).
    for s in [&b, &c] {
        let log = s.stderr_text();
        assert!(
            !log.lines()
                .any(|l| l.contains("ERROR") && l.contains("PartitionEOF")),
            "{log}"
        );
    }
    b.sigterm();
    c.sigterm();
}

#[test]
fn a_restore_reads_the_changelog_from_its_end() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let all = scenario("events");
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let start = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        let cfg = config(&bs, "tail", "events", &data, &r.url, true).replacen(
            "checkpoint_interval = \"500ms\"",
            "checkpoint_interval = \"100ms\"",
            1,
        );
        Service::start(dir.path(), name, &cfg)
    };
    let mut a = start("a");
    wait_until(Duration::from_secs(60), "a owns the shards", || {
        a.metric("crisiswatch_scale_owned_partitions{kind=\"shard\"}") == Some(4.0)
    });
    // The stream in 40 slices, each followed by a few checkpoint intervals:
    // every shard partition's changelog gets a checkpoint per slice.
    let slice = all.len().div_ceil(40);
    for part in all.chunks(slice) {
        produce(&bs, part, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_until(Duration::from_secs(60), "a wrote many checkpoints", || {
        a.metric("crisiswatch_scale_checkpoints_total{kind=\"shard\"}")
            .is_some_and(|n| n >= 4.0 * 30.0)
    });
    a.signal("KILL");
    let _ = a.wait_exit(Duration::from_secs(10));
    let b = start("b");
    wait_until(Duration::from_secs(60), "b restored the shards", || {
        b.metric("crisiswatch_scale_restore_seconds_count{kind=\"shard\"}")
            .is_some_and(|n| n >= 4.0)
    });
    let restores = restored_from_changelog(&b.stderr_text());
    assert_eq!(
        restores.len(),
        4,
        "every shard partition from a checkpoint: {restores:?}"
    );
    for &(kept, read) in &restores {
        assert!(
            kept >= 30,
            "each changelog partition kept its checkpoints: {restores:?}"
        );
        // About one checkpoint: the first tail read, not the whole log.
        assert!(
            read <= 16,
            "a restore read {read} of the {kept} changelog messages kept: {restores:?}"
        );
    }
    b.sigterm();
}

/// (changelog messages kept, read) of every shard partition restored from a
/// checkpoint, from a service's log.
fn restored_from_changelog(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains("Shard partition restored."))
        .filter_map(|l| Some((field(l, "changelog_kept")?, field(l, "changelog_read")?)))
        .filter(|&(_, read)| read > 0)
        .collect()
}

/// The measured capacity model (README "Running several instances"): the
/// time one embedded instance and 1, 2 and 3 scaled instances (processes on
/// this machine) take to read a generated stream from the broker, each from
/// its own consumer group. Ignored by default (it is a measurement, not a
/// check): `cargo test --release --test kafka_scale -- --ignored --nocapture capacity`;
/// `CRISISWATCH_CAPACITY_HOURS` sets the stream's length (default 6).
#[test]
#[ignore]
fn capacity() {
    let hours: u64 = std::env::var("CRISISWATCH_CAPACITY_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("stream.jsonl");
    let out = std::process::Command::new(kafka_support::service::BIN)
        .args(["generate", "--seed", "42", "--duration"])
        .arg(format!("{hours}h"))
        .arg("--output")
        .arg(&jsonl)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let msgs: Vec<Out> = text
        .lines()
        .map(|l| {
            let id = serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            Out::new("events", partition_of(&id), l.as_bytes().to_vec())
        })
        .collect();
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    produce(&bs, &msgs, Duration::from_secs(120));
    let n = msgs.len() as f64;
    let sum = |svcs: &[Service], series: &str| -> f64 {
        svcs.iter().filter_map(|s| s.metric(series)).sum()
    };
    let processed = "crisiswatch_kafka_processed_messages_total{topic=\"events\"}";
    let mut rows = Vec::new();
    for (name, instances, scaled) in [
        ("embedded", 1, false),
        ("scaled", 1, true),
        ("scaled", 2, true),
        ("scaled", 3, true),
    ] {
        let group = format!("cap-{name}-{instances}");
        let started = std::time::Instant::now();
        let svcs: Vec<Service> = (0..instances)
            .map(|i| {
                let data = dir
                    .path()
                    .join(format!("data-{group}-{i}"))
                    .display()
                    .to_string();
                Service::start(
                    dir.path(),
                    &format!("{group}-{i}"),
                    &config(&bs, &group, "events", &data, "http://127.0.0.1:9/", scaled),
                )
            })
            .collect();
        wait_until(Duration::from_secs(1800), "the stream read", || {
            sum(&svcs, processed) >= n
                && (!scaled
                    || sum(&svcs, "crisiswatch_scale_owner_messages_total")
                        >= sum(&svcs, "crisiswatch_scale_shard_messages_total"))
        });
        let secs = started.elapsed().as_secs_f64();
        let shard = sum(&svcs, "crisiswatch_scale_shard_messages_total");
        rows.push((format!("{name} ×{instances}"), secs, shard / n));
        for s in &svcs {
            s.sigterm();
        }
    }
    let base = rows[0].1;
    eprintln!(
        "\n{} events ({hours} h generated, seed 42), 4 partitions, 3 rules, group join included",
        msgs.len()
    );
    eprintln!("| run | seconds | events/s | × embedded | shard messages per event |");
    eprintln!("| --- | --- | --- | --- | --- |");
    for (name, secs, per) in &rows {
        eprintln!(
            "| {name} | {secs:.1} | {:.0} | {:.2} | {per:.2} |",
            n / secs,
            base / secs
        );
    }
}

/// A broker paused past the session timeout: the revoke's commit fails (no
/// commit happened before it: `commit_interval = "1h"`) and the input
/// partitions come back to the same instance, read again from the start.
/// The split stage skips what it forwarded before the revoke (each message's
/// fingerprint): every event reaches the shard topic once, not twice.
#[test]
fn a_partition_handed_back_after_a_pause_is_not_forwarded_twice() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("paused", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let data = dir.path().join("data").display().to_string();
    let cfg = config(&bs, "pz", "paused", &data, &r.url, true).replacen(
        "commit_interval = \"1s\"",
        "commit_interval = \"1h\"",
        1,
    );
    assert!(cfg.contains("commit_interval = \"1h\""));
    let svc = Service::start(dir.path(), "pz", &cfg);
    let ts = hour_t0();
    let batch = move |from: usize| -> Vec<Out> {
        (from..from + 400)
            .map(move |i| {
                let json = format!(
                    r#"{{"id":"z{i}","type":"complaint","ts":{},"attrs":{{"product":"p{}","region":"eu"}}}}"#,
                    ts + i as i64 * 100,
                    i % 4
                );
                Out::new("paused", (i % 2) as i32, json.into_bytes())
            })
            .collect()
    };
    let processed = |svc: &Service| {
        svc.metric("crisiswatch_kafka_processed_messages_total{topic=\"paused\"}")
            .unwrap_or(0.0)
    };
    let forwarded = |svc: &Service| {
        svc.metric("crisiswatch_scale_shard_messages_total")
            .unwrap_or(0.0)
    };
    produce(&bs, &batch(0), Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "the first batch is split", || {
        processed(&svc) >= 400.0
    });
    let first = forwarded(&svc);
    assert!(first >= 400.0, "{first}");

    broker.pause();
    let bs2 = bs.clone();
    let second = std::thread::spawn(move || produce(&bs2, &batch(400), Duration::from_secs(120)));
    // Past the 6 s session timeout (the stimulus, not a wait for a condition).
    std::thread::sleep(Duration::from_secs(8));
    broker.resume();
    second.join().expect("producer thread");
    // The first batch read again (nothing was committed), then the second.
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            Duration::from_secs(90),
            "both batches split, the first read twice",
            || {
                processed(&svc) >= 1200.0
                    && forwarded(&svc) >= 2.0 * first
                    && svc
                        .stderr_text()
                        .contains("Skipped messages read again after their partitions came back")
            },
        )
    }));
    let log = svc.stderr_text();
    assert!(
        done.is_ok(),
        "processed {}, forwarded {} (first batch {first})\n{log}",
        processed(&svc),
        forwarded(&svc)
    );
    // The same shape of events in both batches: as many shard-topic messages each.
    assert_eq!(forwarded(&svc), 2.0 * first, "{log}");
    svc.sigterm();
}

/// One instance killed with `kill -9` and started again on its own data
/// directory, its incident partitions' last checkpoint older than what its
/// outbox applied (here: none, the interval is an hour): the transitions
/// after the checkpoint are applied again and the open incident continues
/// under its key. Before, the outbox's record of them skipped every one: the
/// incident's updates and resolve never came and the next alert opened
/// another incident.
#[test]
fn an_instance_restarted_on_its_data_directory_keeps_its_open_incident() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let all = scenario("events");
    let cut = all.len() * 2 / 5;
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    let data = dir.path().join("data-a").display().to_string();
    let cfg = config(&bs, "restarted", "events", &data, &r.url, true).replace(
        "checkpoint_interval = \"500ms\"",
        "checkpoint_interval = \"1h\"",
    );
    assert!(cfg.contains("checkpoint_interval = \"1h\""));
    let mut a = Service::start(dir.path(), "a", &cfg);
    produce(&bs, &all[..cut], Duration::from_secs(30));
    wait_until(Duration::from_secs(90), "the p3 incident opened", || {
        notifications(&r)
            .iter()
            .any(|n| n.0.contains("p3") && n.2 == "open")
    });
    a.signal("KILL");
    let _ = a.wait_exit(Duration::from_secs(10));
    let again = Service::start(dir.path(), "a-again", &cfg);
    produce(&bs, &all[cut..], Duration::from_secs(30));
    let want = reference(&bs, dir.path(), "events", all.len()).notes;
    expect_exactly(&r, &want, "after a kill -9 and a restart", &[&a, &again]);
}

/// Per incident, the `seq`s `r` accepted, in arrival order.
fn arrival_order(r: &Receiver) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for b in r.bodies() {
        out.entry(b["dedup_key"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(b["seq"].as_u64().unwrap_or_default());
    }
    out
}

/// An instance that dies (`kill -9`) with notifications queued for a
/// receiver that is down: the incident partition's next owner sends them
/// (its checkpoint carried them), first and in order, and the instance,
/// restarted later on its data directory, does not send its own copies
/// after the new owner's resolve. (Before, they stayed in the dead
/// instance's outbox: missing until it came back, then delivered after the
/// resolve.)
#[test]
fn queued_notifications_move_with_their_incident_and_never_arrive_after_its_resolve() {
    handed_over_on("KILL", true);
}

/// The same for an instance stopped for good (scale-down, `SIGTERM`): it
/// tries to deliver while it still owns the partition, then its last
/// checkpoint hands what is left to the next owner.
#[test]
fn a_stopped_instance_hands_its_queued_notifications_to_the_next_owner() {
    handed_over_on("TERM", true);
}

/// A stopped instance's incident, its open delivered, nothing queued: the
/// next owner knows who heard it (the stop's drain had stopped the
/// receivers before the hand-over, which then named none: the next update
/// went out as an `open` and the resolve was muted).
#[test]
fn a_stopped_instance_s_incident_resolves_to_whoever_heard_it() {
    handed_over_on("TERM", false);
}

/// An instance stopped (`SIGSTOP`: a paused VM, a machine deep in swap)
/// for longer than the session timeout while it holds queued notifications
/// for a receiver that is down: the group gives its partitions to the other
/// instance, which sends them once the receiver is back. When the stopped
/// one resumes, it sends nothing of what it held — its consumer learns of
/// the loss only at its next poll, and before, its delivery workers ran
/// first and sent their due rows again, after the new owner's (a field
/// trial saw a PagerDuty `trigger` after the resolve, re-opening the
/// incident for good).
#[test]
fn a_resumed_instance_sends_nothing_its_partitions_new_owner_sent() {
    handed_over_on("STOP", true);
}

fn handed_over_on(signal: &str, receiver_down: bool) {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let all = scenario("events");
    let cut = all.len() * 2 / 5;
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start();
    r.set_failing(receiver_down);
    let cfg_of = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        let cfg = config(&bs, "handing", "events", &data, &r.url, true);
        let fast = "kind = \"generic\"\ndelivery = { backoff_initial = \"100ms\", backoff_max = \"500ms\", breaker_failures = 0 }\n";
        let cfg = cfg.replacen("kind = \"generic\"\n", fast, 1);
        assert!(cfg.contains("backoff_max = \"500ms\""));
        // No input partition counts idle during the test's pauses. The
        // stream pauses between the two halves; had the victim's partitions
        // gone idle before the survivor's, the survivor's half (read while
        // the victim's partitions wait for the group to reassign them)
        // would move the owners' clocks past theirs, and their events would
        // come late: the documented limit of idle partitions ("A burst
        // after a pause", README), not what this test is about (it failed
        // so about once in 25 runs).
        let cfg = cfg.replacen(
            "idle_partition_timeout = \"2s\"",
            "idle_partition_timeout = \"1h\"",
            1,
        );
        assert!(cfg.contains("idle_partition_timeout = \"1h\""));
        cfg
    };
    let a = Service::start(dir.path(), "a", &cfg_of("a"));
    let b = Service::start(dir.path(), "b", &cfg_of("b"));
    produce(&bs, &all[..cut], Duration::from_secs(30));
    wait_until(Duration::from_secs(90), "the p3 open was tried", || {
        let tried = if receiver_down {
            r.refused()
        } else {
            r.bodies()
        };
        tried
            .iter()
            .any(|n| n["dedup_key"].as_str().unwrap_or("").contains("p3") && n["action"] == "open")
    });
    // Queued notifications with the receiver down, else the open incident.
    let holds = |s: &Service| {
        let series = if receiver_down {
            "crisiswatch_outbox_depth{receiver=\"hook\"}"
        } else {
            "crisiswatch_incidents_open"
        };
        s.metric(series).unwrap_or(0.0)
    };
    // The instance holding the p3 incident (and what it queued) stops.
    let (mut victim, survivor, victim_name) = if holds(&a) > 0.0 {
        (a, b, "a")
    } else {
        (b, a, "b")
    };
    assert!(holds(&victim) > 0.0, "the victim holds the incident");
    // A periodic checkpoint (500 ms) carries what is queued.
    std::thread::sleep(Duration::from_millis(1500));
    victim.signal(signal);
    if signal == "STOP" {
        resumed_after(victim, survivor, &r, &bs, &all, cut, dir.path());
        return;
    }
    assert!(
        victim.wait_exit(Duration::from_secs(30)).is_some(),
        "the victim stopped"
    );
    produce(&bs, &all[cut..], Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "the survivor owns every incident partition",
        || {
            survivor
                .metric("crisiswatch_scale_owned_partitions{kind=\"incident\"}")
                .unwrap_or(0.0)
                == 3.0
        },
    );
    r.set_failing(false);
    let want = reference(&bs, dir.path(), "events", all.len()).notes;
    // The victim comes back on its data directory once the survivor has
    // sent everything: its outbox still holds the open it queued.
    expect_exactly(
        &r,
        &want,
        "the survivor sends what the victim had queued",
        &[&victim, &survivor],
    );
    let back = Service::start(
        dir.path(),
        &format!("{victim_name}-again"),
        &cfg_of(victim_name),
    );
    wait_until(Duration::from_secs(60), "the victim is back", || {
        back.ready()
    });
    expect_exactly(
        &r,
        &want,
        "after the victim came back",
        &[&victim, &survivor, &back],
    );
    for (key, seqs) in arrival_order(&r) {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key}: notifications arrived as seq {seqs:?} (each once, in order)"
        );
    }
    // Handed at the stop (SIGTERM), or when it came back (`kill -9`).
    let log = format!("{}{}", victim.stderr_text(), back.stderr_text());
    assert!(
        !receiver_down || log.contains("handed with their incidents"),
        "{log}"
    );
    // A stop hands its queue over in its last checkpoint: the survivor
    // counts what it took.
    if receiver_down && signal == "TERM" {
        let taken = survivor
            .metric("crisiswatch_notifications_taken_over_total{receiver=\"hook\"}")
            .unwrap_or(0.0);
        assert!(
            taken > 0.0,
            "the survivor counts the notifications it took over"
        );
    }
    survivor.sigterm();
    back.sigterm();
}

/// The rest of [`a_resumed_instance_sends_nothing_its_partitions_new_owner_sent`]:
/// `victim` is stopped (`SIGSTOP`) with notifications queued.
fn resumed_after(
    victim: Service,
    survivor: Service,
    r: &Receiver,
    bs: &str,
    all: &[Out],
    cut: usize,
    dir: &std::path::Path,
) {
    produce(bs, &all[cut..], Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        "the survivor owns every incident partition",
        || {
            survivor
                .metric("crisiswatch_scale_owned_partitions{kind=\"incident\"}")
                .unwrap_or(0.0)
                == 3.0
        },
    );
    r.set_failing(false);
    let want = reference(bs, dir, "events", all.len()).notes;
    expect_exactly(
        r,
        &want,
        "the survivor sends what the stopped one had queued",
        &[&victim, &survivor],
    );
    victim.signal("CONT");
    wait_until(
        Duration::from_secs(60),
        "the resumed instance has seen the stop and rejoined",
        || {
            let log = victim.stderr_text();
            log.contains("This process was stopped for")
                && log.contains("notifications go out again")
        },
    );
    expect_exactly(
        r,
        &want,
        "after the stopped one resumed",
        &[&victim, &survivor],
    );
    for (key, seqs) in arrival_order(r) {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key}: notifications arrived as seq {seqs:?} (each once, in order)\n--- resumed\n{}",
            victim.stderr_text()
        );
    }
    victim.sigterm();
    survivor.sigterm();
}

/// An Alertmanager receiver of a scaled group. (1) A rebalance (an eager
/// one revokes every partition from every member) does not stop the
/// re-push of an open incident: before, no instance re-pushed it until its
/// next notification, and Alertmanager resolved it at its `endsAt` — a false
/// all-clear. (2) An instance restarted on its data directory after
/// `kill -9` does not push the incidents it held at the crash: before, it
/// pushed them within milliseconds of starting, and one resolved elsewhere
/// meanwhile came back firing. A real Alertmanager, `resend_interval` 1 s
/// (an alert not pushed again ends 4 s later).
#[test]
fn an_alertmanager_keeps_a_moved_incident_firing_and_gets_no_stale_one_back() {
    use kafka_support::alertmanager::Alertmanager;
    let am = Alertmanager::start();
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", PARTITIONS)]);
    let all = scenario("events");
    let cut = all.len() * 2 / 5;
    let dir = tempfile::tempdir().unwrap();
    let cfg_of = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        let cfg = config(
            &bs,
            "am-moves",
            "events",
            &data,
            "http://127.0.0.1:1/",
            true,
        );
        let am_receiver = format!(
            "kind = \"alertmanager\"\nurl = \"{}\"\ndelivery = {{ resend_interval = \"1s\", backoff_initial = \"100ms\", backoff_max = \"500ms\" }}\n",
            am.url()
        );
        let cfg = cfg
            .replacen("kind = \"generic\"\n", &am_receiver, 1)
            .replacen("url = \"http://127.0.0.1:1/\"\n", "", 1);
        assert!(cfg.contains("resend_interval = \"1s\""), "{cfg}");
        cfg
    };
    let p3_firing = || {
        am.active().is_some_and(|list| {
            list.iter().any(|a| {
                a["labels"]["incident"]
                    .as_str()
                    .is_some_and(|i| i.contains("p3"))
            })
        })
    };
    let a = Service::start(dir.path(), "a", &cfg_of("a"));
    let b = Service::start(dir.path(), "b", &cfg_of("b"));
    produce(&bs, &all[..cut], Duration::from_secs(30));
    wait_until(
        Duration::from_secs(90),
        "the p3 incident fires in Alertmanager",
        p3_firing,
    );
    // (1) A third member joins: every partition is revoked and assigned again.
    let c = Service::start(dir.path(), "c", &cfg_of("c"));
    // The rebalance done: every incident partition owned again, c holding
    // one. (While the group rebalances nobody owns the incident, and with
    // a 1 s `resend_interval` Alertmanager may end it meanwhile: its new
    // owner pushes it again as it takes it over.)
    let owned = |s: &Service| {
        s.metric("crisiswatch_scale_owned_partitions{kind=\"incident\"}")
            .unwrap_or(0.0)
    };
    // Settled: the same shares for 2 s, every partition owned, c one.
    let mut seen = Vec::new();
    wait_until(
        Duration::from_secs(90),
        "the three members own every incident partition, c one, for 2 s",
        || {
            let now = (owned(&a), owned(&b), owned(&c));
            seen.push(now);
            std::thread::sleep(Duration::from_millis(400));
            let n = seen.len();
            n >= 5
                && seen[n - 5..].iter().all(|s| *s == now)
                && now.2 >= 1.0
                && now.0 + now.1 + now.2 == 3.0
        },
    );
    // Its owner since the rebalance has pushed it (Alertmanager's
    // `updatedAt` moves with every push).
    let settled = chrono::Utc::now();
    wait_until(
        Duration::from_secs(30),
        "the p3 incident is pushed again after the rebalance",
        || {
            am.active().is_some_and(|list| {
                list.iter().any(|a| {
                    a["labels"]["incident"]
                        .as_str()
                        .is_some_and(|i| i.contains("p3"))
                        && a["updatedAt"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .is_some_and(|t| t > settled)
                })
            })
        },
    );
    // Well past 4 s after any push from before the rebalance.
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            p3_firing(),
            "{:.1} s after the rebalance the open p3 incident is no longer firing in Alertmanager",
            f64::from(i) * 0.3
        );
    }
    // (2) The holder of the p3 incident dies; the incident resolves at its
    // new owner; the dead instance comes back on its data directory.
    let holds = |s: &Service| s.metric("crisiswatch_incidents_open").unwrap_or(0.0) > 0.0;
    let mut members = vec![("a", a), ("b", b), ("c", c)];
    let at = members
        .iter()
        .position(|(_, s)| holds(s))
        .expect("an instance holds the p3 incident");
    let (victim_name, mut victim) = members.remove(at);
    // A periodic checkpoint (500 ms) carries the incident.
    std::thread::sleep(Duration::from_millis(1500));
    victim.signal("KILL");
    assert!(victim.wait_exit(Duration::from_secs(30)).is_some());
    produce(&bs, &all[cut..], Duration::from_secs(30));
    // Resolved at its new owner (not merely expired in Alertmanager while
    // the group waited out the dead member's session).
    wait_until(
        Duration::from_secs(120),
        "the survivors own every incident partition and hold no open incident",
        || {
            let owned: f64 = members
                .iter()
                .map(|(_, s)| {
                    s.metric("crisiswatch_scale_owned_partitions{kind=\"incident\"}")
                        .unwrap_or(0.0)
                })
                .sum();
            owned == 3.0 && members.iter().all(|(_, s)| !holds(s))
        },
    );
    wait_until(
        Duration::from_secs(30),
        "the p3 incident ends in Alertmanager",
        || !p3_firing(),
    );
    let back = Service::start(
        dir.path(),
        &format!("{victim_name}-again"),
        &cfg_of(victim_name),
    );
    // From its start: a stale push would show for 4 s.
    for _ in 0..40 {
        assert!(
            !p3_firing(),
            "the restarted instance pushed the resolved p3 incident as firing again:\n{}",
            back.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until(Duration::from_secs(60), "the victim is back", || {
        back.ready()
    });
    back.sigterm();
    for (_, s) in &members {
        s.sigterm();
    }
}
