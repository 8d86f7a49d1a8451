//! Repartitioning by state shard: how several instances split the engine's
//! state and still fire exactly what one instance fires (`docs/architecture.md`,
//! "Scale-out").
//!
//! ```text
//! input partitions ─► Splitter (any instance) ─► internal partitions ─► Owner (one instance each) ─► transitions
//!                     event → the internal partitions       (by shard)     sequencer + engine of
//!                     of its (rule, group) shards;                         the owned shards
//!                     per source: newest time + origins
//! ```
//!
//! * **Shards.** A (rule, group) pair lives in shard
//!   [`shard_of`](crate::engine::shard_of)`(rule, group)`, and shard `s` in
//!   internal partition `s mod partitions`. Whoever is assigned an internal
//!   partition owns its shards: every window lives on exactly one instance.
//! * **Splitting** ([`Splitter`]). An instance that reads an input partition
//!   decodes and validates each message as today, and forwards the valid
//!   event once to each internal partition one of its (rule, group) shards
//!   lives in ([`Envelope::Event`], naming all of them): decoded, in the
//!   compact binary form of `wire_event`, with the order key of the input
//!   line ([`order_key`](crate::sequencer::order_key)) instead of the line.
//!   It keeps no window state.
//! * **Watermarks travel with the data.** After the events it forwarded, the
//!   splitter sends every internal partition a [`Envelope::Report`] per
//!   input partition (source): the newest event time read from it, and per
//!   rule with a baseline the earliest time of an event its selectors
//!   matched (the rule's warm-up origin is rule-wide). Kafka keeps one
//!   producer's messages in order within a partition, so a report follows
//!   every event it covers.
//! * **Owning** ([`Owner`]). An owner's clock is the minimum, over the
//!   internal partitions it owns and every source, of the newest time
//!   reported on that partition for that source — as the single instance's
//!   clock is the slowest input partition's. Events wait in the
//!   [`Sequencer`](crate::sequencer) until that clock minus
//!   `allowed_lateness` passes them and reach an engine that keeps only the
//!   owned shards ([`Engine::owning`](crate::engine::Engine::owning)) in
//!   `(ts, id, order key)` order, as one instance releases them. An event
//!   sent to two partitions of one owner
//!   is applied once (from the lowest of them). Before a release, each
//!   rule's origin is noted from the reports once it lies behind the
//!   release point.
//!
//! The result, for streams whose disorder stays within `allowed_lateness`:
//! each owner emits exactly the transitions one instance emits for the
//! (rule, group) pairs it owns, with the same times, values and keys
//! (`tests` checks it as a property over random streams, splits,
//! assignments and interleavings). Divergences, as with worker threads: a
//! rule's `max_groups_per_rule` is checked per owner, and duplicate
//! detection sees the events of the owner's shards (a redelivered message is
//! dropped; two different events under one id may both count when their
//! slices live on different instances).

use serde::{Deserialize, Serialize};

use crate::config::Config;

mod incidents;
mod owner;
mod split;
pub(crate) mod wire_event;

pub use incidents::{FeedPart, IncidentFeed, IncidentOwner, TransitionSplit};
pub use owner::{Owner, OwnerCheckpointError};
pub use split::Splitter;

/// Version byte in front of every internal message. 3: events travel
/// decoded (`wire_event`) with an order key instead of the input line,
/// and integers are varints; 4: an event carries its input offset.
pub const WIRE_VERSION: u8 = 4;

/// An input partition: the topic's index in `sources.kafka.topics` and the
/// partition number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// Index of the topic in the configuration.
    pub topic: u16,
    /// Partition number.
    pub partition: i32,
}

/// A message on an internal partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// A valid event for the shards of the listed internal partitions.
    Event {
        /// Where it was read.
        source: Source,
        /// Its offset there: an owner drops what a split stage forwards
        /// again (an instance that took a dead one's input partitions
        /// re-reads from the last commit), see [`Owner`].
        offset: i64,
        /// Every internal partition it was sent to, ascending.
        targets: Vec<u32>,
        /// [`order_key`](crate::sequencer::order_key) of the message as
        /// read: with the event's time and id, the order one instance
        /// releases events in (the input line itself is not sent).
        key: u64,
        /// The event as the splitter decoded and validated it, in the
        /// compact binary form of `wire_event` (the owner reads it back
        /// without parsing JSON).
        #[serde(with = "body_bytes")]
        event: Vec<u8>,
    },
    /// How far a source has been read.
    Report {
        /// The input partition.
        source: Source,
        /// The newest event time read from it (ms).
        newest: i64,
        /// (rule index, earliest time of an event its selectors matched),
        /// for the rules with a baseline.
        origins: Vec<(u32, i64)>,
        /// The writer's [`fingerprint`] of the configuration.
        config: u64,
    },
    /// A source with nothing new for `sources.kafka.idle_partition_timeout`:
    /// it stops holding the owners' clocks back until it reports again (as
    /// an idle partition does on one instance).
    Idle {
        /// The input partition.
        source: Source,
        /// The writer's [`fingerprint`] of the configuration.
        config: u64,
    },
    /// Every source the writer reads has had nothing new for
    /// `engine.idle_timeout`: event time moves on with the wall clock (as
    /// one instance's quiet stream does, `crate::clock`). An owner whose
    /// every source is idle and quiet moves its clock to the newest time
    /// reported plus the shortest of their quiet spells.
    Quiet {
        /// The input partition.
        source: Source,
        /// How long the writer's sources have had nothing new (ms).
        quiet_ms: u64,
        /// The writer's [`fingerprint`] of the configuration.
        config: u64,
    },
    /// The panes in which a source had events since its last report: per
    /// surge rule (rule index, pane of its slide). Sent before the
    /// [`Envelope::Report`] that covers them. A surge's baseline leaves out
    /// the panes in which the whole stream was silent
    /// (`engine::occupancy`); an owner sees only its shards' events, so
    /// every split stage tells it where the stream had any. Last of the
    /// variants: the others encode as before.
    Occupied {
        /// The input partition.
        source: Source,
        /// (rule index, pane), ascending.
        panes: Vec<(u32, i64)>,
        /// The writer's [`fingerprint`] of the configuration.
        config: u64,
    },
}

impl Envelope {
    /// The configuration fingerprint of a clock message (reports, idle and
    /// quiet marks); `None` for an event.
    pub fn config(&self) -> Option<u64> {
        match self {
            Envelope::Event { .. } => None,
            Envelope::Report { config, .. }
            | Envelope::Idle { config, .. }
            | Envelope::Quiet { config, .. }
            | Envelope::Occupied { config, .. } => Some(*config),
        }
    }
}

/// What every instance of a scaled group must agree on, hashed: the rules,
/// the engine's settings (but `workers`, which is per machine), the input
/// topics, the scale-out partitioning and the incident routes. Instances
/// whose fingerprints differ would route, window or group differently; an
/// owner refuses the clock messages of another fingerprint (its partitions
/// wait, `/readyz` says why) rather than mix two configurations.
pub fn fingerprint(cfg: &Config) -> u64 {
    use sha2::{Digest, Sha256};
    let mut engine = cfg.engine.clone();
    engine.workers = 0;
    let kafka = cfg.sources.kafka.as_ref();
    let topics: Vec<(&str, Option<&str>)> = kafka
        .map(|k| {
            k.topics
                .iter()
                .map(|t| (t.name.as_str(), t.default_type.as_deref()))
                .collect()
        })
        .unwrap_or_default();
    let scale = kafka.and_then(|k| k.scale_out.as_ref());
    let value = serde_json::json!({
        "engine": engine,
        "rules": cfg.rules,
        "routes": cfg.incidents.routes,
        "topics": topics,
        "partitions": scale.map(|s| (s.shard_partitions, s.incident_partitions)),
    });
    let digest = Sha256::digest(value.to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// An internal message that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Empty, or written by another version of crisiswatch.
    #[error(
        "internal message of wire version {found:?}, this crisiswatch reads version {WIRE_VERSION}"
    )]
    Version {
        /// The version byte found (none: empty message).
        found: Option<u8>,
    },
    /// The body does not decode.
    #[error("internal message does not decode: {0}")]
    Decode(String),
}

/// bincode with variable-length integers (a small number takes one byte).
fn varint() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

impl Envelope {
    /// The message's bytes: [`WIRE_VERSION`], then the body (bincode, with
    /// variable-length integers).
    pub fn encode(&self) -> Vec<u8> {
        use bincode::Options;
        let mut out = vec![WIRE_VERSION];
        // Serialising plain data into a Vec cannot fail.
        if let Err(e) = varint().serialize_into(&mut out, self) {
            tracing::error!(error = %e, "cannot encode an internal message");
        }
        out
    }

    /// Reads a message written by [`Envelope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
        use bincode::Options;
        match bytes.split_first() {
            Some((&WIRE_VERSION, body)) => varint()
                .deserialize(body)
                .map_err(|e| WireError::Decode(e.to_string())),
            other => Err(WireError::Version {
                found: other.map(|(v, _)| *v),
            }),
        }
    }
}

/// An event body as bytes, not as a sequence of numbers (one copy).
mod body_bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// Where a transition stands in one instance's output: by time, then what
/// caused it — timers (`event: None`) before events, events by id — then
/// rule (configuration order) and group. Owners' transitions merged by this
/// key come out in exactly one engine's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Order {
    /// The transition's time (ms).
    pub at: i64,
    /// The id of the event that caused it; `None`: a timer.
    pub event: Option<Box<str>>,
    /// The rule's index in the configuration.
    pub rule: u32,
    /// The group, in `group_by` order.
    pub group: Vec<(String, String)>,
}

/// A transition and its [`Order`].
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed {
    /// Its place in one instance's output.
    pub order: Order,
    /// The transition.
    pub transition: crate::alert::Transition,
}

/// The internal partition of shard `shard`.
pub fn partition_of_shard(shard: u32, partitions: u32) -> u32 {
    shard % partitions.max(1)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod move_tests;

#[cfg(test)]
mod clock_tests;

#[cfg(test)]
mod order_tests;
