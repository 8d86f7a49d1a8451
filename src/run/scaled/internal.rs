//! Kafka clients of the scaled service's internal topics: a consumer-group
//! member whose partitions carry state (restored on assignment, written out
//! on revoke), a producer that keeps each partition's messages in order, and
//! the changelog topics (latest checkpoint per partition).
//!
//! librdkafka runs rebalance callbacks inside `poll`: each stage polls its
//! consumer on its own thread, and the callback locks the stage's state
//! (never held across a poll), so a revoked partition is checkpointed before
//! another instance can be assigned it, and an assigned one starts reading
//! at its checkpoint's offset.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::wire::{decode, encode, Chunk};
use super::ScaledError;
use crate::config::KafkaSourceConfig;
use crate::source::context::{log_librdkafka, ReaderContext};

/// Bytes of checkpoint per changelog message: under the brokers' default
/// `message.max.bytes` (1 MB) with room for the framing.
const CHUNK_BYTES: usize = 512 * 1024;

/// How long a changelog read waits for the partition's last message.
const CHANGELOG_WAIT: Duration = Duration::from_secs(20);

/// State kept per assigned partition of an internal topic.
pub(crate) trait PartitionState: Send + 'static {
    /// Partitions newly assigned: restore them; the offset to read each from.
    fn assigned(&mut self, partitions: &[i32]) -> Vec<(i32, Offset)>;
    /// Partitions revoked: write their checkpoints, then forget them.
    fn revoked(&mut self, partitions: &[i32]);
    /// A failure inside a rebalance callback (the stage stops with it).
    fn take_failure(&mut self) -> Option<ScaledError>;
    /// A message read at `offset` of partition `p`.
    fn on_message(&mut self, p: i32, offset: i64, payload: &[u8]);
    /// Passes on what the partitions' clocks have passed.
    fn on_release(&mut self) -> Result<(), ScaledError>;
    /// Writes the checkpoints of the partitions changed since their last one.
    fn on_checkpoint(&mut self) -> Result<(), ScaledError>;
    /// Logs where the partitions stand (debug level), every [`STATUS_EVERY`].
    fn on_status(&self) {}
    /// The stage stops (after its last checkpoint).
    fn on_stop(&mut self) {}
}
/// How often a stage logs its partitions' status (debug level).
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Runs a stage until `stop`: poll, hand each message to the state, release
/// when the topic is quiet or every 50 ms, checkpoint every `interval`; at
/// the stop a last checkpoint, then the consumer leaves the group (the
/// partitions go to the other instances at once; the revoke finds nothing
/// left to checkpoint). The state's lock is never held across a poll: the
/// rebalance callbacks run inside it.
pub(crate) fn drive<S: PartitionState>(
    state: Arc<Mutex<S>>,
    consumer: BaseConsumer<StateContext<S>>,
    interval: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), ScaledError> {
    let mut last_release = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_status = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(50));
        let quiet = polled.is_none();
        let mut st = lock(&state);
        if let Some(e) = st.take_failure() {
            return Err(e);
        }
        match polled {
            Some(Ok(m)) => {
                st.on_message(m.partition(), m.offset(), m.payload().unwrap_or_default())
            }
            Some(Err(e)) => {
                tracing::warn!(topic = %consumer.context().topic, error = %e, "Internal topic consumer error.")
            }
            None => {}
        }
        if quiet || last_release.elapsed() >= Duration::from_millis(50) {
            st.on_release()?;
            last_release = Instant::now();
        }
        if last_checkpoint.elapsed() >= interval {
            st.on_checkpoint()?;
            last_checkpoint = Instant::now();
        }
        if last_status.elapsed() >= STATUS_EVERY {
            st.on_status();
            last_status = Instant::now();
        }
    }
    {
        let mut st = lock(&state);
        st.on_checkpoint()?;
        st.on_stop();
        // A failure of the stop's own work (the incident owners' hand-over).
        st.take_failure().map_or(Ok(()), Err)?;
    }
    drop(consumer);
    Ok(())
}

/// Locks a stage's state (a poisoned lock still holds usable state: the
/// panicking holder was this thread's own callback).
pub(crate) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer context of an internal topic: rebalances go to the state.
pub(crate) struct StateContext<S> {
    topic: String,
    state: Arc<Mutex<S>>,
    /// `crisiswatch_scale_lag_messages` and this stage's `kind` label.
    lag: (prometheus::IntGaugeVec, &'static str),
    /// Partitions whose lag is exported (cleared when they go).
    exported: Mutex<std::collections::BTreeSet<i32>>,
}

impl<S: PartitionState> ClientContext for StateContext<S> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    /// Per owned partition, the messages not yet read (librdkafka's high
    /// watermark minus the position, every `statistics.interval.ms`).
    fn stats(&self, stats: rdkafka::Statistics) {
        let (gauge, kind) = &self.lag;
        let mut now = std::collections::BTreeSet::new();
        if let Some(t) = stats.topics.get(&self.topic) {
            for (&p, part) in &t.partitions {
                // The position (`app_offset`): these consumers commit nothing,
                // their offsets are in the partitions' checkpoints.
                if p >= 0
                    && part.fetch_state == "active"
                    && part.hi_offset >= 0
                    && part.app_offset >= 0
                {
                    gauge
                        .with_label_values(&[kind, &p.to_string()])
                        .set((part.hi_offset - part.app_offset).max(0));
                    now.insert(p);
                }
            }
        }
        let mut exported = lock(&self.exported);
        for gone in exported.difference(&now) {
            let _ = gauge.remove_label_values(&[kind, &gone.to_string()]);
        }
        *exported = now;
    }
}

impl<S: PartitionState> ConsumerContext for StateContext<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let parts: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = lock(&self.state).assigned(&parts);
                for (p, offset) in starts {
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                        tracing::warn!(topic = %self.topic, partition = p, error = %e, "Cannot set a partition's start offset.");
                    }
                }
                tracing::info!(topic = %self.topic, partitions = ?parts, "Internal partitions assigned.");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(topic = %self.topic, error = %e, "Cannot take the assigned partitions.");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                lock(&self.state).revoked(&parts);
                tracing::info!(topic = %self.topic, partitions = ?parts, "Internal partitions revoked.");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(topic = %self.topic, error = %e, "Cannot release the revoked partitions.");
                }
            }
            other => tracing::warn!(topic = %self.topic, error = ?other, "Rebalance error."),
        }
    }
}

/// The common client configuration: the pass-through properties (security),
/// then the brokers; and never a topic created by a client's metadata
/// request: an internal topic made with the broker's defaults (its partition
/// count, no compaction: after a broker lost its topics, librdkafka's
/// producers asked for them and got them) would be refused at the next
/// start, and an uncompacted changelog grows for ever. The start creates
/// them as they must be (`topics.rs`).
fn client_config(k: &KafkaSourceConfig) -> ClientConfig {
    configured(k, k.properties.iter())
}

/// [`client_config`] for a producer: without the consumer-only properties.
fn producer_config(k: &KafkaSourceConfig) -> ClientConfig {
    configured(k, k.producer_properties())
}

fn configured<'a>(
    k: &KafkaSourceConfig,
    properties: impl Iterator<Item = (&'a String, &'a String)>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, value) in properties {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &k.brokers)
        .set("allow.auto.create.topics", "false");
    c
}

/// Logs a failed internal message: the first at once, then one line per
/// [`FAILED_LOG_EVERY`] (a broker that lost its topics fails thousands a
/// second; every one is counted).
fn log_failed(failed_before: u64, what: &str, error: &dyn std::fmt::Display) {
    let n = failed_before + 1;
    if n == 1 || n.is_multiple_of(FAILED_LOG_EVERY) {
        tracing::error!(failed = n, error = %error, "{what} (failures so far: {n}; logged once per {FAILED_LOG_EVERY}).");
    }
}

/// Failed internal messages per log line after the first.
const FAILED_LOG_EVERY: u64 = 1000;

/// A member of consumer group `group` on internal topic `topic`, whose
/// rebalances go to `state`.
pub(crate) fn state_consumer<S: PartitionState>(
    k: &KafkaSourceConfig,
    group: &str,
    topic: &str,
    state: Arc<Mutex<S>>,
    lag: (prometheus::IntGaugeVec, &'static str),
) -> Result<BaseConsumer<StateContext<S>>, ScaledError> {
    let mut c = client_config(k);
    c.set("statistics.interval.ms", "5000")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Eager rebalancing: a revoke takes every partition, checkpointed first.
        .set("partition.assignment.strategy", "roundrobin")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<StateContext<S>> = c
        .create_with_context(StateContext {
            topic: topic.to_string(),
            state,
            lag,
            exported: Mutex::new(std::collections::BTreeSet::new()),
        })
        .map_err(|e| ScaledError::Client("internal consumer", e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| ScaledError::Client("internal consumer", e))?;
    Ok(consumer)
}

/// Producer context: logs, and counts messages the broker refused for good.
#[derive(Default)]
pub(crate) struct OrderedContext {
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for OrderedContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }
}

impl rdkafka::producer::ProducerContext for OrderedContext {
    type DeliveryOpaque = ();
    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        _opaque: Self::DeliveryOpaque,
    ) {
        if let Err((e, _)) = result {
            let before = self
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log_failed(before, "An internal message could not be written", e);
        }
    }
}

/// A producer to internal topics: retries without end and one request in
/// flight per broker, so each partition keeps the order messages were sent
/// in (a report after the events it covers).
pub(crate) struct Ordered {
    producer: BaseProducer<OrderedContext>,
}

impl Ordered {
    /// A producer with the source's brokers and security properties;
    /// batches compressed with lz4 unless the properties set
    /// `compression.type` (README "Running several instances").
    pub(crate) fn new(k: &KafkaSourceConfig) -> Result<Self, ScaledError> {
        let mut c = producer_config(k);
        if !k.properties.contains_key("compression.type") {
            c.set("compression.type", "lz4");
        }
        c.set("message.timeout.ms", "0")
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "5");
        let producer = c
            .create_with_context(OrderedContext::default())
            .map_err(|e| ScaledError::Client("internal producer", e))?;
        Ok(Ordered { producer })
    }

    /// Queues `value` for `partition` of `topic` (waits while librdkafka's
    /// queue is full).
    pub(crate) fn send(&self, topic: &str, partition: i32, key: &[u8], value: &[u8]) {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(key)
            .payload(value);
        if let Err(e) = self.queue(record) {
            let before = self
                .producer
                .context()
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log_failed(
                before,
                &format!("Cannot queue an internal message for {topic}[{partition}]"),
                &e,
            );
        }
    }

    /// Queues a tombstone (no value) for `key` on `partition` of `topic`
    /// (a compacted topic then drops the key).
    pub(crate) fn send_tombstone(&self, topic: &str, partition: i32, key: &[u8]) {
        let record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).key(key);
        if let Err(e) = self.queue(record) {
            tracing::warn!(error = %e, topic, "Cannot queue a tombstone; the key stays on the topic for now.");
        }
    }

    /// Queues `record`, waiting while librdkafka's queue is full.
    fn queue(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Queues checkpoint `bytes` of `partition` on changelog `topic`, in
    /// chunks under the brokers' message size limit, each keyed by partition
    /// and chunk index (so compaction keeps the newest of each index), all
    /// naming the checkpoint's `id` (`(next offset, wall ms)`: the newest is
    /// the largest).
    pub(crate) fn send_checkpoint(
        &self,
        topic: &str,
        partition: i32,
        id: (i64, i64),
        bytes: &[u8],
    ) {
        let count = bytes.len().div_ceil(CHUNK_BYTES).max(1) as u32;
        for index in 0..count {
            let from = index as usize * CHUNK_BYTES;
            let to = (from + CHUNK_BYTES).min(bytes.len());
            let chunk = encode(&Chunk {
                partition: partition as u32,
                id,
                index,
                count,
                bytes: bytes[from..to].to_vec(),
            });
            let key = format!("{partition}/{index}");
            self.send(topic, partition, key.as_bytes(), &chunk);
        }
    }

    /// Serves delivery reports.
    pub(crate) fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until everything queued is written; an error if a message was
    /// refused for good since the start (the stage stops: what it wrote
    /// after its last checkpoint is written again by its next owner).
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), ScaledError> {
        self.producer
            .flush(timeout)
            .map_err(|e| ScaledError::Client("internal producer flush", e))?;
        let failed = self
            .producer
            .context()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            return Err(ScaledError::Lost(failed));
        }
        Ok(())
    }
}

/// Messages at the end of a changelog partition the first read covers;
/// each further read covers [`TAIL_GROWTH`] times more.
const TAIL_MESSAGES: i64 = 16;
/// How much each further changelog read widens the tail it covers.
const TAIL_GROWTH: i64 = 4;

/// The newest complete checkpoint of `partition` on changelog topic `topic`.
///
/// Read from the **end**: the last [`TAIL_MESSAGES`] messages first, then a
/// tail [`TAIL_GROWTH`] times wider until one holds a complete checkpoint
/// (or the whole partition has been read). A checkpoint's chunks are
/// written one after another, so this reads about one checkpoint, however
/// many older ones the broker still keeps: compaction only runs on closed
/// log segments, and a changelog written every `checkpoint_interval` can
/// hold thousands of uncompacted checkpoints, which a read from the start
/// would fetch and hold in memory. Any complete checkpoint is a correct
/// place to resume from (an older one only makes the partition re-read
/// more of its input, and what is emitted again is dropped downstream); of
/// those a read finds, the newest by id wins. Gives up after
/// [`CHANGELOG_WAIT`] with what it has read.
pub(crate) fn read_latest(
    k: &KafkaSourceConfig,
    topic: &str,
    partition: i32,
) -> Result<Option<Vec<u8>>, ScaledError> {
    Ok(read_latest_counted(k, topic, partition)?.0)
}

/// What a changelog read found and cost (logged at each restore).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChangelogRead {
    /// Offsets the broker keeps for the partition (high − low watermark).
    pub(crate) kept: i64,
    /// Messages read to find the checkpoint.
    pub(crate) read: u64,
}

/// [`read_latest`], and what the read cost.
pub(crate) fn read_latest_counted(
    k: &KafkaSourceConfig,
    topic: &str,
    partition: i32,
) -> Result<(Option<Vec<u8>>, ChangelogRead), ScaledError> {
    let mut c = client_config(k);
    // A group id librdkafka needs for `assign`; nothing is ever committed.
    c.set("group.id", format!("{}.changelog-reader", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let (low, high) = {
        let consumer: BaseConsumer<ReaderContext> = c
            .create_with_context(ReaderContext("changelog reader"))
            .map_err(|e| ScaledError::Client("changelog reader", e))?;
        consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|e| ScaledError::Client("changelog watermarks", e))?
    };
    let mut cost = ChangelogRead {
        kept: (high - low).max(0),
        read: 0,
    };
    if high <= low {
        return Ok((None, cost));
    }
    let deadline = Instant::now() + CHANGELOG_WAIT;
    let mut tail = TAIL_MESSAGES;
    loop {
        let from = high.saturating_sub(tail).max(low);
        // A consumer of its own per read: nothing prefetched for an earlier
        // (narrower) read can stand in for this one's messages.
        let consumer: BaseConsumer<ReaderContext> = c
            .create_with_context(ReaderContext("changelog reader"))
            .map_err(|e| ScaledError::Client("changelog reader", e))?;
        let (found, n, timed_out) = read_range(&consumer, topic, partition, from, high, deadline)?;
        cost.read += n;
        if found.is_some() || from == low || timed_out {
            if found.is_none() {
                tracing::warn!(
                    topic,
                    partition,
                    low,
                    high,
                    read = cost.read,
                    "No complete checkpoint in the changelog partition."
                );
            }
            return Ok((found, cost));
        }
        tail = tail.saturating_mul(TAIL_GROWTH);
    }
}

/// Reads offsets `from..high` of `partition`: the newest complete
/// checkpoint among them, the messages read, and whether `deadline` passed
/// first (a warning; what was read still counts).
fn read_range(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    partition: i32,
    from: i64,
    high: i64,
    deadline: Instant,
) -> Result<(Option<Vec<u8>>, u64, bool), ScaledError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| ScaledError::Client("changelog reader", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| ScaledError::Client("changelog reader", e))?;
    // Checkpoint id → its chunks by index.
    let mut chunks: BTreeMap<(i64, i64), BTreeMap<u32, Chunk>> = BTreeMap::new();
    let mut last: Option<i64> = None;
    let mut read = 0u64;
    let mut timed_out = false;
    loop {
        if last.is_some_and(|o| o + 1 >= high) {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(topic, partition, high, read = ?last, "The changelog did not deliver its end in time; restoring from the newest checkpoint read.");
            timed_out = true;
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // A message from before this read's start (a previous
                // assignment's prefetch) is not this range's.
                if m.offset() < from {
                    continue;
                }
                read += 1;
                last = Some(last.map_or(m.offset(), |l| l.max(m.offset())));
                let Some(v) = m.payload() else { continue };
                match decode::<Chunk>(v) {
                    Ok(c) if c.partition == partition as u32 => {
                        chunks.entry(c.id).or_default().insert(c.index, c);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(ScaledError::Checkpoint(format!(
                            "{topic} partition {partition}: {e}"
                        )))
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) if last.is_some() => break,
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => tracing::warn!(topic, partition, error = %e, "Changelog read error."),
        }
    }
    // The newest checkpoint whose chunks are all there.
    for (_, parts) in chunks.into_iter().rev() {
        let count = parts.values().next().map_or(0, |c| c.count);
        if parts.len() as u32 == count && parts.keys().copied().eq(0..count) {
            return Ok((
                Some(parts.into_values().flat_map(|c| c.bytes).collect()),
                read,
                timed_out,
            ));
        }
    }
    Ok((None, read, timed_out))
}

#[cfg(test)]
mod tests;
