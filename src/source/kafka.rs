//! The consumer thread: polls librdkafka, batches, hands over, commits.
//!
//! librdkafka runs rebalance callbacks inside `poll`, and a revoke must block
//! until the engine stage has caught up; so the consumer lives on its own OS
//! thread with a [`BaseConsumer`], never on the async runtime. Messages are
//! copied into a [`Batch`](super::Batch), decoded there (on this thread, so
//! that decoding overlaps the engine stage's work on the batch before) and
//! sent through a bounded channel (blocking when it is full: backpressure). Offsets are committed only from
//! the [`OffsetTracker`](super::offsets::OffsetTracker), every
//! `commit_interval` (asynchronously), on revoke and on shutdown (synchronously).
//! librdkafka's own prefetch is bounded by `queued.max.messages.kbytes`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::sync::mpsc;

use super::context::{Shared, SourceContext};
use super::{Partition, SourceError, SourceMsg};
use crate::config::KafkaSourceConfig;

/// How long one poll waits for a message before the loop checks for shutdown
/// and commits: short enough for a prompt shutdown, long enough not to spin.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// How long the start waits, at most, for the topics' metadata
/// ([`known_partitions`]) before it consumes without it.
const METADATA_WAIT: Duration = Duration::from_secs(5);

/// Batches are handed over at this size even below `max_batch_messages`.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// librdkafka properties crisiswatch sets unless the configuration overrides them.
const DEFAULTS: [(&str, &str); 5] = [
    // A new group reads the retained history instead of skipping to the end,
    // and a partition whose position vanished (topic recreated) restarts at 0.
    ("auto.offset.reset", "earliest"),
    // Lag per partition and broker liveness (stall detection) come from these reports.
    ("statistics.interval.ms", "1000"),
    // Bounds librdkafka's prefetch (its default is 64 MiB per consumer).
    ("queued.max.messages.kbytes", "16384"),
    ("enable.partition.eof", "false"),
    // When the engine pushes back and the local queue fills, librdkafka pauses
    // fetching for this long; its default (1 s) cut end-to-end throughput by
    // more than half in benches/kafka_throughput.rs.
    ("fetch.queue.backoff.ms", "100"),
];

/// The consumer's `statistics.interval.ms` (crisiswatch's default unless the
/// configuration sets it; 0: off).
pub(crate) fn statistics_interval_ms(k: &KafkaSourceConfig) -> u64 {
    let default = DEFAULTS
        .iter()
        .find(|(key, _)| *key == "statistics.interval.ms")
        .map_or("0", |(_, v)| *v);
    k.properties
        .get("statistics.interval.ms")
        .map_or(default, String::as_str)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The client configuration of the consumer: crisiswatch's defaults, then the
/// pass-through `properties`, then what crisiswatch must own (validation
/// rejects overriding those).
pub(crate) fn consumer_config(k: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, value) in DEFAULTS {
        c.set(key, value);
    }
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// A running consumer thread.
#[derive(Debug)]
pub struct SourceHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), SourceError>>,
}

impl SourceHandle {
    /// Asks the thread to stop fetching, drain, commit and leave the group.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread (blocking).
    pub(crate) fn join(self) -> Result<(), SourceError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(SourceError::Fatal(KafkaError::Canceled)))
    }
}

/// Creates the consumer, subscribes, and starts the consumer thread.
pub(crate) fn start(
    k: &KafkaSourceConfig,
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceMsg>,
) -> Result<SourceHandle, SourceError> {
    let ctx = SourceContext::new(Arc::clone(&shared), tx, k.shutdown_timeout.0);
    let consumer: BaseConsumer<SourceContext> = consumer_config(k)
        .create_with_context(ctx)
        .map_err(|source| SourceError::Client {
            what: "consumer",
            source,
        })?;
    let topics: Vec<&str> = shared.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| SourceError::Subscribe {
            topics: shared.topics.clone(),
            source,
        })?;
    tracing::info!(brokers = %k.brokers, group = %k.group_id, topics = ?topics, "Kafka consumer subscribed.");
    let stop = Arc::new(AtomicBool::new(false));
    let settings = LoopSettings {
        max_batch: k.max_batch_messages,
        commit_interval: k.commit_interval.0,
    };
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || consume(consumer, settings, &flag))
        .map_err(SourceError::Thread)?;
    Ok(SourceHandle { stop, thread })
}

#[derive(Debug, Clone, Copy)]
struct LoopSettings {
    max_batch: usize,
    commit_interval: Duration,
}

/// The consumer thread's loop, then its shutdown.
fn consume(
    consumer: BaseConsumer<SourceContext>,
    s: LoopSettings,
    stop: &AtomicBool,
) -> Result<(), SourceError> {
    let ctx = consumer.context();
    // Before the first poll (which runs the first assignment's callback).
    ctx.known(known_partitions(&consumer));
    let topics = ctx.shared().topics.len();
    let (mut counts, mut bytes) = (vec![0u64; topics], vec![0u64; topics]);
    let mut last_commit = Instant::now();
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) && !ctx.is_closed() {
        let mut wait = POLL_WAIT;
        loop {
            match consumer.poll(wait) {
                Some(Ok(msg)) => {
                    let Some(t) = ctx.topic_index(msg.topic()) else {
                        continue;
                    };
                    counts[usize::from(t)] += 1;
                    bytes[usize::from(t)] += msg.payload_len() as u64;
                    let mut batch = ctx.batch();
                    batch.push(t, &msg);
                    if batch.len() >= s.max_batch || batch.bytes() >= MAX_BATCH_BYTES {
                        break;
                    }
                }
                Some(Err(e)) if is_fatal(&e) => {
                    tracing::error!(error = %e, "Fatal Kafka consumer error; stopping the service.");
                    result = Err(SourceError::Fatal(e));
                    break;
                }
                Some(Err(e)) => {
                    // Also reported (and logged) through the client error callback.
                    tracing::debug!(error = %e, "Kafka consumer error.");
                    break;
                }
                None => break,
            }
            // Collect what is already fetched without waiting.
            wait = Duration::ZERO;
        }
        record_received(ctx.shared(), &mut counts, &mut bytes);
        ctx.flush();
        if result.is_err() {
            break;
        }
        if last_commit.elapsed() >= s.commit_interval {
            if let Err(e) = ctx.commit(&consumer, None, CommitMode::Async) {
                tracing::warn!(error = %e, "Cannot start an offset commit.");
            }
            last_commit = Instant::now();
        }
    }
    shut_down(&consumer);
    result
}

/// Every partition of the subscribed topics, from the broker's metadata
/// (bounded by [`METADATA_WAIT`] in all). A topic the broker does not know
/// (yet) or a metadata request that fails only leaves its partitions out:
/// they are then tracked from their assignment on, as before.
fn known_partitions(consumer: &BaseConsumer<SourceContext>) -> Vec<Partition> {
    let ctx = consumer.context();
    let end = Instant::now() + METADATA_WAIT;
    let mut out = Vec::new();
    for (i, name) in (0u16..).zip(&ctx.shared().topics) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.fetch_metadata(Some(name), left) {
            Ok(md) => {
                for t in md.topics().iter().filter(|t| t.name() == name) {
                    if t.error().is_some() {
                        continue;
                    }
                    out.extend(t.partitions().iter().map(|p| Partition {
                        topic: i,
                        partition: p.id(),
                    }));
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %e, "No metadata for a topic at the start; its partitions count from their assignment.");
            }
        }
    }
    out
}

fn record_received(shared: &Shared, counts: &mut [u64], bytes: &mut [u64]) {
    let m = &shared.metrics;
    let mut any = false;
    for (i, (c, b)) in counts.iter_mut().zip(bytes.iter_mut()).enumerate() {
        if *c > 0 {
            let topic = shared.topics[i].as_str();
            m.messages.with_label_values(&[topic]).inc_by(*c);
            m.bytes.with_label_values(&[topic]).inc_by(*b);
            any = true;
        }
        (*c, *b) = (0, 0);
    }
    if any {
        shared.health.on_messages(Instant::now());
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
}

/// Stop fetching, let the engine stage apply everything in flight, commit
/// synchronously, leave the group.
fn shut_down(consumer: &BaseConsumer<SourceContext>) {
    let ctx = consumer.context();
    let assigned = ctx.assignment();
    ctx.shared()
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if !ctx.drain(Vec::new()) && !ctx.is_closed() {
        tracing::warn!("Engine did not drain in time; committing what it applied.");
    }
    match ctx.commit(consumer, None, CommitMode::Sync) {
        Ok(0) => tracing::info!(
            partitions = assigned.len(),
            "No offsets left to commit (nothing applied since the last commit, or the partitions were revoked)."
        ),
        Ok(committed) => tracing::info!(
            partitions = committed,
            "Committed the offsets of every applied event."
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Final offset commit failed: events since the last commit will be read again after a restart.")
        }
    }
    consumer.unsubscribe();
}
