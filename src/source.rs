//! The Kafka source of `crisiswatch run`: a consumer group reading the event
//! topics, at least once, in order per partition.
//!
//! The first stage of the live data flow:
//!
//! ```text
//!  broker ─► consumer thread ─► bounded channel ─► engine stage (run::pipeline) ─► transitions
//!            (poll, batch,      of [`SourceMsg`]    (apply, watermarks,
//!             decode,                                dead letters, offsets)
//!             rebalances,
//!             commits, stats)          ▲                       │
//!                  └────── commit ◄── [`offsets::OffsetTracker`] ◄┘
//! ```
//!
//! * [`kafka`] owns the librdkafka consumer on a dedicated thread: it polls,
//!   copies messages into [`Batch`]es, decodes them, hands them to the engine
//!   stage through a bounded channel (backpressure: memory does not grow with
//!   lag), and commits.
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
//! * [`identity`] asks the broker, before a restored checkpoint's offsets are
//!   skipped, whether they still name the messages the checkpoint read.

pub mod context;
pub mod dlq;
pub(crate) mod forms;
pub mod health;
pub(crate) mod identity;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod watermarks;

use std::ops::Range;

use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::event::{decode_held, DecodeLimits, Event, Invalid, OwnedEvent};

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
    /// Every partition of the subscribed topics the broker's metadata named
    /// at the start, sent before the first assignment: one not assigned yet
    /// may still be held by a member that crashed (until its session times
    /// out), so it holds the clock for a grace instead of being unknown.
    Known(Vec<Partition>),
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
    /// The message has no value at all (a tombstone), not an empty one.
    null: bool,
    /// [`fingerprint`] of its value and key.
    print: u32,
    key: Option<Range<usize>>,
    headers: Range<usize>,
}

/// A message's value decoded on arrival: the event (owning its bytes, ready
/// to be held by the sequencer) or why it is invalid.
pub(crate) type Arrival = Result<OwnedEvent, Invalid>;

/// Messages copied into one contiguous buffer: one allocation per batch, not
/// per message; and, once [`Batch::decode`] ran (the consumer thread runs it
/// before handing the batch over), each message's value decoded.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    slots: Vec<Slot>,
    headers: Vec<Header>,
    /// One per slot once decoded, with the limits used.
    arrivals: Vec<Arrival>,
    decoded_with: Option<DecodeLimits>,
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
    /// Whether the message has no value (a tombstone): dead-lettered as one.
    pub(crate) null: bool,
    /// [`fingerprint`] of value and key (0 where not taken: dead letters).
    pub(crate) print: u32,
    /// The key, if any.
    pub(crate) key: Option<&'a [u8]>,
    /// The original headers.
    pub(crate) headers: &'a [Header],
}

/// How long after its last hand-over a partition with messages left to read
/// still counts as delivering ([`context::Shared::backlogged`]): six times
/// `idle_partition_timeout` (a minute by default). A consumer that starves a
/// partition longer than that, or a lag that never drops (a transaction
/// marker at a partition's end), falls back to the idle timeout alone.
pub(crate) fn backlog_hold(k: &crate::config::KafkaSourceConfig) -> std::time::Duration {
    k.idle_partition_timeout.0.saturating_mul(6)
}

/// The fingerprint of a message: its value and key, never 0 (see
/// `run::reread`). Taken on the consumer thread as the message is copied,
/// off the engine's thread. A checkpoint stores it (`state::Last`), so it is
/// a hash with a fixed specification — CRC-32 (IEEE), the same on every
/// machine and in every version — not a hasher free to change.
pub(crate) fn fingerprint(payload: &[u8], key: Option<&[u8]>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(payload);
    match key {
        Some(k) => {
            h.update(&[1]);
            h.update(k);
        }
        None => h.update(&[0]),
    }
    h.finalize() | 1
}

#[cfg(test)]
#[test]
fn the_fingerprint_is_fixed() {
    // Stored in checkpoints: it must never change (CRC-32 of the bytes).
    assert_eq!(fingerprint(b"", None), 0xd202_ef8d);
    assert_eq!(
        fingerprint(br#"{"id":"e1"}"#, Some(b"k")),
        crc32fast::hash(b"{\"id\":\"e1\"}\x01k") | 1
    );
    assert_ne!(fingerprint(b"a", None), fingerprint(b"a", Some(b"")));
}

impl Batch {
    /// Copies a message into the batch.
    pub(crate) fn push(&mut self, topic: u16, msg: &BorrowedMessage<'_>) {
        let null = msg.payload().is_none();
        let print = fingerprint(msg.payload().unwrap_or_default(), msg.key());
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
            null,
            print,
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

    /// Decodes every message's value (the value of a topic without a `type`
    /// gets the topic's `default_types` entry), checking future skew against
    /// the wall clock `now_ms`. Moves decoding off the engine stage: the
    /// consumer thread does it while the engine applies the batch before.
    pub(crate) fn decode(
        &mut self,
        limits: &DecodeLimits,
        default_types: &[Option<String>],
        now_ms: i64,
        mut forms: Option<&mut forms::Forms>,
    ) {
        let Batch {
            buf,
            slots,
            arrivals,
            decoded_with,
            ..
        } = self;
        arrivals.clear();
        arrivals.reserve(slots.len());
        let mut ev = Event::default();
        for s in slots.iter() {
            let raw = &buf[s.payload.clone()];
            let default_type = default_types
                .get(usize::from(s.at.topic))
                .and_then(|t| t.as_deref());
            let arrival = decode_held(raw, limits, Some(now_ms), default_type, &mut ev);
            if let (Ok(_), Some(f)) = (&arrival, forms.as_deref_mut()) {
                f.observe(&ev);
            }
            arrivals.push(arrival);
        }
        *decoded_with = Some(*limits);
    }

    /// The partitions with at least one valid event in the batch (once decoded).
    pub(crate) fn delivering(&self) -> impl Iterator<Item = Partition> {
        let mut parts: Vec<Partition> = Vec::new();
        for (s, a) in self.slots.iter().zip(&self.arrivals) {
            if a.is_ok() && !parts.contains(&s.at) {
                parts.push(s.at);
            }
        }
        parts.into_iter()
    }

    /// The decoded messages, one per record in order, taken out of the batch;
    /// decoded now if the batch was not decoded with `limits` (a reload
    /// changed them since).
    pub(crate) fn take_arrivals(
        &mut self,
        limits: &DecodeLimits,
        default_types: &[Option<String>],
        now_ms: i64,
    ) -> Vec<Arrival> {
        if self.decoded_with.as_ref() != Some(limits) || self.arrivals.len() != self.slots.len() {
            // Looked at for other forms already, when first decoded.
            self.decode(limits, default_types, now_ms, None);
        }
        self.decoded_with = None;
        std::mem::take(&mut self.arrivals)
    }

    /// The messages, in the order they were consumed.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.slots.iter().map(|s| Record {
            at: s.at,
            offset: s.offset,
            payload: &self.buf[s.payload.clone()],
            null: s.null,
            print: s.print,
            key: s.key.clone().map(|k| &self.buf[k]),
            headers: &self.headers[s.headers.clone()],
        })
    }
}

#[cfg(test)]
impl Batch {
    /// Adds a message without key or headers (tests).
    pub(crate) fn push_value(&mut self, at: Partition, offset: i64, payload: &[u8]) {
        let payload = self.copy(payload);
        let first = self.headers.len();
        self.slots.push(Slot {
            at,
            offset,
            null: false,
            print: fingerprint(&self.buf[payload.clone()], None),
            payload,
            key: None,
            headers: first..first,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode_with_default, InvalidReason};

    fn batch() -> Batch {
        let mut b = Batch::default();
        let at = |topic| Partition {
            topic,
            partition: 0,
        };
        for (i, (topic, line)) in [
            (
                0,
                r#"{"id":"a","type":"complaint","ts":1000,"attrs":{"product":"p"}}"#,
            ),
            (0, r#"{"id":"b","type":"feedback","ts":2000,"score":9}"#),
            (0, r#"{"id":"c","type":"complaint","ts":"#),
            (1, r#"{"id":"d","ts":3000}"#),
            (0, r#"{"id":"e","ts":3000}"#),
        ]
        .into_iter()
        .enumerate()
        {
            b.push_value(at(topic), i as i64, line.as_bytes());
        }
        b
    }

    /// What the engine stage used to do itself: decode each record on arrival.
    fn direct(b: &Batch, limits: &DecodeLimits, types: &[Option<String>]) -> Vec<String> {
        b.records()
            .map(|r| {
                let t = types[usize::from(r.at.topic)].as_deref();
                match decode_with_default(r.payload, limits, Some(0), t) {
                    Ok(ev) => format!("{:?}", OwnedEvent::new(&ev, r.payload).event()),
                    Err(inv) => format!("{}: {}", inv.reason, inv.detail),
                }
            })
            .collect()
    }

    fn shown(arrivals: &[Arrival]) -> Vec<String> {
        arrivals
            .iter()
            .map(|a| match a {
                Ok(ev) => format!("{:?}", ev.event()),
                Err(inv) => format!("{}: {}", inv.reason, inv.detail),
            })
            .collect()
    }

    #[test]
    fn arrivals_are_what_decoding_each_record_gives() {
        let types = vec![None, Some("order".to_string())];
        let limits = DecodeLimits::default();
        let mut b = batch();
        let want = direct(&b, &limits, &types);
        b.decode(&limits, &types, 0, None);
        let got = b.take_arrivals(&limits, &types, 0);
        assert_eq!(shown(&got), want);
        // The second topic's default type; the first topic has none.
        assert!(got[3].as_ref().is_ok_and(|e| e.kind() == "order"));
        assert!(got[4].is_err());
        assert!(got[2]
            .as_ref()
            .is_err_and(|inv| inv.reason == InvalidReason::NotJson));
        // Not decoded beforehand (or taken already): decoded on the spot.
        let mut fresh = batch();
        assert_eq!(shown(&fresh.take_arrivals(&limits, &types, 0)), want);
        assert_eq!(shown(&b.take_arrivals(&limits, &types, 0)), want);
    }

    #[test]
    fn a_batch_decoded_with_other_limits_is_decoded_again() {
        let types = vec![None, None];
        let before = DecodeLimits::default();
        let after = DecodeLimits {
            score_range: (1.0, 5.0),
            ..before
        };
        let mut b = batch();
        b.decode(&before, &types, 0, None);
        let got = b.take_arrivals(&after, &types, 0);
        assert_eq!(shown(&got), direct(&b, &after, &types));
        assert!(got[1]
            .as_ref()
            .is_err_and(|inv| inv.reason == InvalidReason::OutOfRange));
    }
}
