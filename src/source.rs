//! The Kafka source of `crisiswatch run`: a consumer group reading the event
//! topics, at least once, in order per partition.
//!
//! The first stage of the live data flow:
//!
//! ```text
//!  broker ─► consumer thread ─► bounded channel ─► engine stage (run::pipeline) ─► transitions
//!            (poll, batch,      of [`SourceMsg`]    (decode, apply, watermarks,
//!             rebalances,                            dead letters, offsets)
//!             commits, stats)          ▲                       │
//!                  └────── commit ◄── [`offsets::OffsetTracker`] ◄┘
//! ```
//!
//! * [`kafka`] owns the librdkafka consumer on a dedicated thread: it polls,
//!   copies messages into [`Batch`]es, hands them to the engine stage through a
//!   bounded channel (backpressure: memory does not grow with lag), and commits.
//! * [`context`] handles librdkafka's callbacks: rebalances (a revoke drains the
//!   engine and commits before the partitions are released), commit results,
//!   statistics (lag, broker liveness) and logs.
//! * [`offsets`] tracks, per partition, the offset up to which every message
//!   has been applied or dead-lettered: only that is ever committed.
//! * [`watermarks`] keeps each partition's event time; the service clock is the
//!   minimum over active partitions, and an idle partition stops holding it back.
//! * [`health`] decides when the consumer is stalled (not ready).
//! * [`dlq`] produces invalid messages unchanged to the dead-letter topic.
//! * [`metrics`] are the consumer's Prometheus metrics.

pub mod context;
pub mod dlq;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod watermarks;

use std::ops::Range;

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration has no `[sources.kafka]` section.
    #[error("no Kafka source configured: add a [sources.kafka] section")]
    NotConfigured,
    /// librdkafka refused the configuration or failed to start a client.
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        /// `consumer` or `dead-letter producer`.
        what: &'static str,
        /// The librdkafka error.
        source: rdkafka::error::KafkaError,
    },
    /// Subscribing to the topics failed.
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        /// The topics.
        topics: Vec<String>,
        /// The librdkafka error.
        source: rdkafka::error::KafkaError,
    },
    /// A fatal consumer error: the client cannot continue.
    #[error("fatal Kafka consumer error: {0}")]
    Fatal(rdkafka::error::KafkaError),
    /// The consumer thread could not be started.
    #[error("cannot start the consumer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A consumed partition: the topic's index in `sources.kafka.topics` and the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Partition {
    /// Index of the topic in the configuration.
    pub(crate) topic: u16,
    /// Partition number.
    pub(crate) partition: i32,
}

/// What the consumer thread sends to the engine stage, in order.
#[derive(Debug)]
pub(crate) enum SourceMsg {
    /// Messages, in partition order.
    Batch(Batch),
    /// Partitions newly assigned to this instance.
    Assigned(Vec<Partition>),
    /// A barrier: apply everything sent before, wait for in-flight dead letters,
    /// forget `revoked`, then acknowledge. Sent on revoke and on shutdown.
    Drain {
        /// Partitions leaving this instance.
        revoked: Vec<Partition>,
        /// Acknowledged once everything before the barrier is done.
        ack: std::sync::mpsc::SyncSender<()>,
    },
}

/// A record header, copied (rare: most events carry none).
pub(crate) type Header = (String, Option<Vec<u8>>);

/// Where one message's bytes live in its batch.
#[derive(Debug, Clone)]
struct Slot {
    at: Partition,
    offset: i64,
    payload: Range<usize>,
    key: Option<Range<usize>>,
    headers: Range<usize>,
}

/// Messages copied into one contiguous buffer: one allocation per batch, not per message.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    slots: Vec<Slot>,
    headers: Vec<Header>,
}

/// One message of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    /// Its partition.
    pub(crate) at: Partition,
    /// Its offset.
    pub(crate) offset: i64,
    /// The value (empty for a tombstone).
    pub(crate) payload: &'a [u8],
    /// The key, if any.
    pub(crate) key: Option<&'a [u8]>,
    /// The original headers.
    pub(crate) headers: &'a [Header],
}

impl Batch {
    /// Copies a message into the batch.
    pub(crate) fn push(&mut self, topic: u16, msg: &BorrowedMessage<'_>) {
        let payload = self.copy(msg.payload().unwrap_or_default());
        let key = msg.key().map(|k| self.copy(k));
        let first = self.headers.len();
        if let Some(hs) = msg.headers() {
            for h in hs.iter() {
                self.headers
                    .push((h.key.to_string(), h.value.map(<[u8]>::to_vec)));
            }
        }
        self.slots.push(Slot {
            at: Partition {
                topic,
                partition: msg.partition(),
            },
            offset: msg.offset(),
            payload,
            key,
            headers: first..self.headers.len(),
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
    }

    /// Messages in the batch.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the batch holds no message.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of payloads and keys held.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The messages, in the order they were consumed.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.slots.iter().map(|s| Record {
            at: s.at,
            offset: s.offset,
            payload: &self.buf[s.payload.clone()],
            key: s.key.clone().map(|k| &self.buf[k]),
            headers: &self.headers[s.headers.clone()],
        })
    }
}
