//! The dead-letter topic: invalid messages, produced unchanged, with headers
//! saying why and where from.
//!
//! An invalid message keeps its value, its key and its original headers, and
//! gains:
//!
//! | header | value |
//! | --- | --- |
//! | `crisiswatch.reason` | the invalid reason (`not_json`, `missing_field`, … as in `crisiswatch_events_invalid_total`) |
//! | `crisiswatch.detail` | what was wrong, e.g. `ts "yesterday" is not RFC 3339 with an offset` |
//! | `crisiswatch.source.topic` | the topic it was consumed from |
//! | `crisiswatch.source.partition` | its partition (decimal) |
//! | `crisiswatch.source.offset` | its offset (decimal) |
//!
//! The consumer moves on at once; each dead letter is produced by its own task,
//! retried with backoff until the broker acknowledges it. Its source offset is
//! not committed before that (at-least-once for dead letters too), and at most
//! `dlq_max_in_flight` are in flight: beyond that the engine stage waits.
//!
//! A message too large for the dead-letter topic (the producer's or the
//! broker's `message.max.bytes`; an `oversized` event can be any size the
//! source topic takes) would never be written, and its partition's commits
//! would wait on it for ever: it is written with its value cut to
//! [`TRUNCATED_VALUE`] bytes and a `crisiswatch.truncated` header holding
//! the original length (the source headers say where the whole message is),
//! with a WARN.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Semaphore;

use super::context::{log_librdkafka, Shared};
use super::{Partition, Record, SourceError};
use crate::config::KafkaSourceConfig;
use crate::event::InvalidReason;

/// Longest `crisiswatch.detail` header, in bytes.
const MAX_DETAIL: usize = 512;
/// Bytes of the value kept when a dead letter is too large to write whole.
pub(crate) const TRUNCATED_VALUE: usize = 64 * 1024;
/// Retry backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Failed attempts after which a dead letter that still cannot be written is
/// an ERROR: the commit of its partition is held back until it succeeds.
const ATTEMPTS_BEFORE_ERROR: u32 = 5;

/// Logs of the dead-letter producer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DlqContext;

impl ClientContext for DlqContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::context::log_client_error("dead-letter producer", &error, reason);
    }
}

/// One dead letter, owned by its task.
#[derive(Debug)]
struct Letter {
    at: Partition,
    offset: i64,
    reason: InvalidReason,
    payload: Vec<u8>,
    /// No value at all (a tombstone): written without one, as it was read.
    null: bool,
    key: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

/// The dead-letter producer.
pub(crate) struct DeadLetters {
    producer: FutureProducer<DlqContext>,
    topic: Arc<str>,
    permits: Arc<Semaphore>,
    max_in_flight: u32,
    shared: Arc<Shared>,
    /// Set when the service gives up on in-flight dead letters (shutdown bound).
    abandon: Arc<AtomicBool>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A producer for `k.dead_letter_topic` (with the same brokers and properties
    /// as the consumer), or `None` when no dead-letter topic is configured.
    pub(crate) fn new(
        k: &KafkaSourceConfig,
        shared: Arc<Shared>,
    ) -> Result<Option<Self>, SourceError> {
        if k.dead_letter_topic.is_empty() {
            return Ok(None);
        }
        let mut c = ClientConfig::new();
        // Give up on one attempt after 30 s; the task retries it.
        c.set("message.timeout.ms", "30000");
        for (key, value) in k.producer_properties() {
            c.set(key, value);
        }
        c.set("bootstrap.servers", &k.brokers);
        let producer = c
            .create_with_context(DlqContext)
            .map_err(|source| SourceError::Client {
                what: "dead-letter producer",
                source,
            })?;
        let max = u32::try_from(k.dlq_max_in_flight).unwrap_or(u32::MAX >> 3);
        Ok(Some(DeadLetters {
            producer,
            topic: Arc::from(k.dead_letter_topic.as_str()),
            permits: Arc::new(Semaphore::new(max as usize)),
            max_in_flight: max,
            shared,
            abandon: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// Hands an invalid message to a task that produces it; waits only when
    /// `dlq_max_in_flight` letters are already in flight. The caller has
    /// marked its offset pending in the tracker; the task marks it done.
    pub(crate) async fn send(&self, rec: &Record<'_>, reason: InvalidReason, detail: &str) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return; // closed: never happens, the semaphore is never closed
        };
        let topic_name = &self.shared.topics[usize::from(rec.at.topic)];
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len() + 5);
        for (k, v) in rec.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let detail = crate::event::truncate_bytes(detail, MAX_DETAIL);
        let partition = rec.at.partition.to_string();
        let offset = rec.offset.to_string();
        for (k, v) in [
            ("crisiswatch.reason", reason.as_str()),
            ("crisiswatch.detail", detail),
            ("crisiswatch.source.topic", topic_name.as_str()),
            ("crisiswatch.source.partition", partition.as_str()),
            ("crisiswatch.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let letter = Letter {
            at: rec.at,
            offset: rec.offset,
            reason,
            payload: rec.payload.to_vec(),
            null: rec.null,
            key: rec.key.map(<[u8]>::to_vec),
            headers,
        };
        let producer = self.producer.clone();
        let topic = Arc::clone(&self.topic);
        let shared = Arc::clone(&self.shared);
        let abandon = Arc::clone(&self.abandon);
        tokio::spawn(async move {
            deliver(&producer, &topic, &letter, &shared, &abandon).await;
            drop(permit);
        });
    }

    /// Waits until every dead letter in flight is acknowledged, at most `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let all = self.permits.acquire_many(self.max_in_flight);
        matches!(tokio::time::timeout(timeout, all).await, Ok(Ok(_)))
    }

    /// Stops retrying (the shutdown bound passed): unacknowledged dead letters
    /// stay uncommitted and are read, and dead-lettered, again after a restart.
    pub(crate) fn abandon(&self) {
        self.abandon.store(true, Ordering::Relaxed);
    }
}

/// Whether a produce error says the message is larger than the producer or
/// the broker takes.
fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

async fn deliver(
    producer: &FutureProducer<DlqContext>,
    topic: &str,
    l: &Letter,
    shared: &Shared,
    abandon: &AtomicBool,
) {
    let mut backoff = BACKOFF_MIN;
    let mut attempts = 0u32;
    // Set once the whole message proved too large: (value kept, headers).
    let mut cut: Option<(&[u8], OwnedHeaders)> = None;
    loop {
        let (payload, headers) = match &cut {
            Some((p, h)) => (*p, h.clone()),
            None => (l.payload.as_slice(), l.headers.clone()),
        };
        let mut record = FutureRecord::to(topic).headers(headers);
        if !l.null {
            record = record.payload(payload);
        }
        if let Some(k) = &l.key {
            record = record.key(k.as_slice());
        }
        match producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => {
                shared.tracker().dead_letter_done(l.at, l.offset);
                shared
                    .metrics
                    .dlq_produced
                    .with_label_values(&[l.reason.as_str()])
                    .inc();
                return;
            }
            Err((e, _)) if cut.is_none() && too_large(&e) => {
                // Not a failure: the letter is written cut (a failure of
                // that write is counted below).
                let keep = l.payload.len().min(TRUNCATED_VALUE);
                tracing::warn!(
                    error = %e,
                    topic,
                    bytes = l.payload.len(),
                    kept = keep,
                    source_partition = l.at.partition,
                    source_offset = l.offset,
                    "Dead letter too large for the dead-letter topic: written with its value cut (header crisiswatch.truncated); the whole message stays in the source topic."
                );
                let len = l.payload.len().to_string();
                let headers = l.headers.clone().insert(Header {
                    key: "crisiswatch.truncated",
                    value: Some(len.as_str()),
                });
                cut = Some((&l.payload[..keep], headers));
                continue;
            }
            Err((e, _)) => {
                attempts += 1;
                shared.metrics.dlq_failures.inc();
                if attempts == ATTEMPTS_BEFORE_ERROR {
                    tracing::error!(error = %e, topic, attempts, "Cannot write to the dead-letter topic; commits of the source partition are held back until it succeeds. Check that the topic exists and is writable.");
                } else {
                    tracing::warn!(error = %e, topic, attempts, "Dead letter not written; retrying.");
                }
            }
        }
        if abandon.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
