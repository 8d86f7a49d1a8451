//! The splitting stage of a scaled instance: the input partitions the
//! consumer group assigned it (read by the same consumer thread as the
//! single-instance service, `crate::source`), each valid event forwarded to
//! the shard-topic partitions of its slices, each invalid one counted and
//! dead-lettered. After every batch, the sources' reports follow the events
//! they cover; a source with nothing new for `idle_partition_timeout` is
//! reported idle. An input offset becomes committable once everything it
//! caused is written to the shard topic: the writes of consecutive batches
//! are confirmed together at most every 200 ms (and before a revoke), so
//! that the producer batches across them instead of waiting for one broker
//! round trip per batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::internal::Ordered;
use super::{ScaledError, ScaledMetrics, Topics};
use crate::repartition::{Envelope, Source, Splitter};
use crate::run::progress::BatchProgress;
use crate::source::context::Shared;
use crate::source::dlq::DeadLetters;
use crate::source::{Batch, Partition, SourceMsg};

/// How long writing a batch's messages may take before the stage gives up.
const FLUSH_WAIT: Duration = Duration::from_secs(60);
/// How often a quiet stream's progress is sent.
const QUIET_EVERY: Duration = Duration::from_secs(1);
/// How long input offsets may wait for the shard-topic writes they caused
/// to be confirmed: batches are not flushed one by one (one broker round
/// trip each), the producer batches across them.
const SETTLE_EVERY: Duration = Duration::from_millis(200);

/// The splitting stage.
pub(crate) struct SplitStage {
    splitter: Splitter,
    producer: Arc<Ordered>,
    topics: Topics,
    shared: Arc<Shared>,
    dlq: Option<DeadLetters>,
    default_types: Vec<Option<String>>,
    idle_after: Duration,
    /// `engine.idle_timeout`: after this long without a message on any
    /// assigned source, event time follows the wall clock.
    quiet_after: Duration,
    /// The last message on any source (or the start).
    last_message: Instant,
    /// When the quiet stream's progress was last sent.
    quiet_sent: Option<Instant>,
    /// Input offsets whose shard-topic messages are queued, not yet
    /// confirmed written: committable after the next [`SplitStage::settle`].
    unsettled: Vec<(Partition, i64)>,
    /// When the queued messages were last confirmed.
    last_settle: Instant,
    drain_timeout: Duration,
    /// Assigned sources: when they last had a message, whether they were
    /// reported idle since.
    assigned: BTreeMap<Source, (Instant, bool)>,
    metrics: Arc<ScaledMetrics>,
}

fn source(p: Partition) -> Source {
    Source {
        topic: p.topic,
        partition: p.partition,
    }
}

impl SplitStage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        splitter: Splitter,
        producer: Arc<Ordered>,
        topics: Topics,
        shared: Arc<Shared>,
        dlq: Option<DeadLetters>,
        default_types: Vec<Option<String>>,
        idle_after: Duration,
        quiet_after: Duration,
        drain_timeout: Duration,
        metrics: Arc<ScaledMetrics>,
    ) -> Self {
        SplitStage {
            splitter,
            producer,
            topics,
            shared,
            dlq,
            default_types,
            idle_after,
            quiet_after,
            last_message: Instant::now(),
            quiet_sent: None,
            unsettled: Vec::new(),
            last_settle: Instant::now(),
            drain_timeout,
            assigned: BTreeMap::new(),
            metrics,
        }
    }

    /// Handles one message of the consumer thread.
    pub(crate) async fn handle(&mut self, msg: SourceMsg) -> Result<(), ScaledError> {
        match msg {
            SourceMsg::Batch(b) => self.batch(b).await?,
            SourceMsg::Assigned(parts) => {
                let now = Instant::now();
                for p in parts {
                    self.assigned.insert(source(p), (now, false));
                }
            }
            SourceMsg::Drain { revoked, ack } => {
                // What the revoked partitions caused is written before their
                // final commit.
                self.settle().await?;
                if let Some(d) = &self.dlq {
                    if !d.flush(self.drain_timeout).await {
                        tracing::warn!("Dead letters still in flight at a drain; their offsets stay uncommitted.");
                    }
                }
                for p in revoked {
                    self.assigned.remove(&source(p));
                }
                let _ = ack.send(());
            }
        }
        Ok(())
    }

    /// Reports the assigned sources quiet for `idle_partition_timeout` idle
    /// (once, until they have messages again); once none has had a message
    /// for `engine.idle_timeout`, reports every second how long the stream
    /// has been quiet, so that event time follows the wall clock on the
    /// owners (`Envelope::Quiet`).
    pub(crate) fn tick(&mut self) {
        let mut idle = Vec::new();
        for (s, (last, sent)) in self.assigned.iter_mut() {
            if !*sent && last.elapsed() >= self.idle_after {
                *sent = true;
                idle.push(*s);
            }
        }
        for s in idle {
            let bytes = self.splitter.idle(s).encode();
            self.to_every_partition(&bytes);
            tracing::debug!(
                topic = s.topic,
                partition = s.partition,
                "Input partition idle: it no longer holds the owners' clocks."
            );
        }
        let quiet = self.last_message.elapsed();
        if !self.assigned.is_empty()
            && quiet >= self.quiet_after
            && self.quiet_sent.is_none_or(|t| t.elapsed() >= QUIET_EVERY)
        {
            self.quiet_sent = Some(Instant::now());
            let sources: Vec<Source> = self.assigned.keys().copied().collect();
            for s in sources {
                let bytes = self.splitter.quiet(s, quiet).encode();
                self.to_every_partition(&bytes);
            }
        }
        self.producer.poll();
    }

    /// Confirms what is queued once [`SETTLE_EVERY`] has passed since the
    /// last confirmation (called after each batch and on the stage's tick).
    pub(crate) async fn settle_due(&mut self) -> Result<(), ScaledError> {
        if self.last_settle.elapsed() >= SETTLE_EVERY {
            self.settle().await?;
        }
        Ok(())
    }

    /// Waits until every queued shard-topic message is written, then lets
    /// the input offsets that caused them be committed.
    pub(crate) async fn settle(&mut self) -> Result<(), ScaledError> {
        self.last_settle = Instant::now();
        if self.unsettled.is_empty() {
            return Ok(());
        }
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.flush(FLUSH_WAIT))
            .await
            .map_err(|e| ScaledError::Thread(e.to_string()))??;
        let mut tracker = self.shared.tracker();
        for (at, offset) in self.unsettled.drain(..) {
            tracker.done(at, offset);
        }
        Ok(())
    }

    fn to_every_partition(&self, bytes: &[u8]) {
        for q in 0..self.topics.shard_partitions {
            self.producer
                .send(&self.topics.shards, q as i32, b"", bytes);
        }
    }

    async fn batch(&mut self, mut b: Batch) -> Result<(), ScaledError> {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let limits = *self.splitter.limits();
        let mut progress = BatchProgress::default();
        let mut dead = Vec::new();
        let mut processed = vec![0u64; self.shared.topics.len()];
        if b.records().next().is_some() {
            self.last_message = now;
            self.quiet_sent = None;
        }
        // Decoded on the consumer thread (again here only after a reload
        // changed the limits).
        let arrivals = b.take_arrivals(&limits, &self.default_types, now_ms);
        for (rec, arrival) in b.records().zip(arrivals) {
            let t = usize::from(rec.at.topic);
            processed[t] += 1;
            progress.partition(rec.at, rec.offset);
            let src = source(rec.at);
            if let Some(a) = self.assigned.get_mut(&src) {
                *a = (now, false);
            }
            match arrival {
                Ok(owned) => {
                    // Always lent: the event decoded from UTF-8 bytes.
                    let Some(ev) = owned.event() else { continue };
                    if let Some((targets, env)) = self.splitter.split(src, &ev, rec.payload) {
                        let bytes = env.encode();
                        for q in targets {
                            // No key: the partition is chosen, the body names the event.
                            self.producer
                                .send(&self.topics.shards, q as i32, b"", &bytes);
                            self.metrics.shard_messages.inc();
                        }
                    }
                }
                Err(inv) => {
                    self.shared
                        .metrics
                        .invalid
                        .with_label_values(&[self.shared.topics[t].as_str(), inv.reason.as_str()])
                        .inc();
                    tracing::debug!(topic = %self.shared.topics[t], partition = rec.at.partition, offset = rec.offset, reason = %inv.reason, detail = %inv.detail, "Invalid message.");
                    if self.dlq.is_some() {
                        dead.push((rec, inv));
                    }
                }
            }
        }
        // The reports follow the events they cover on every partition.
        for r in self.splitter.reports() {
            let bytes: Vec<u8> = Envelope::encode(&r);
            self.to_every_partition(&bytes);
        }
        {
            let mut tracker = self.shared.tracker();
            for (rec, _) in &dead {
                tracker.dead_letter_pending(rec.at, rec.offset);
            }
        }
        self.unsettled
            .extend(progress.parts.iter().map(|p| (p.at, p.last_offset)));
        if let Some(dlq) = &self.dlq {
            for (rec, inv) in &dead {
                dlq.send(rec, inv.reason, &inv.detail).await;
            }
        }
        for (t, name) in self.shared.topics.iter().enumerate() {
            if processed[t] > 0 {
                self.shared
                    .metrics
                    .processed
                    .with_label_values(&[name.as_str()])
                    .inc_by(processed[t]);
            }
        }
        self.settle_due().await
    }
}
