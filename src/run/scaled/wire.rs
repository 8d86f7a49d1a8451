//! What the scaled service writes to its internal topics besides the shard
//! topic's [`Envelope`](crate::repartition::Envelope)s: alert transitions and
//! release points on the transition topic, and partition checkpoints on the
//! changelog topics. Every message starts with
//! [`WIRE_VERSION`](crate::repartition::WIRE_VERSION); another version is
//! refused with [`WireError::Version`].

use serde::{Deserialize, Serialize};

use crate::alert::{State, Transition};
use crate::config::Severity;
use crate::explain::Hint;
use crate::incident::outbox::QueuedRow;
use crate::repartition::{Keyed, Order, WireError, WIRE_VERSION};

/// A message on the transition topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Note {
    /// An alert transition of shard partition `from`'s owner, sent to every
    /// incident partition in `targets` (ascending).
    Transition {
        /// The shard partition whose owner emitted it.
        from: u32,
        /// The incident partitions it was sent to.
        targets: Vec<u32>,
        /// Its place in one instance's output.
        order: Order,
        /// The transition.
        transition: Box<WireTransition>,
    },
    /// Shard partition `from`'s owner has sent every transition before `below`.
    Released {
        /// The shard partition.
        from: u32,
        /// Its release point (ms).
        below: i64,
    },
    /// The current values of shard partition `from`'s active alerts whose
    /// incidents this incident partition holds, as of the owner's clock
    /// `at`: the progress updates' current values. Replaces the partition's
    /// previous values from `from`. (Appended last: a build without it counts
    /// it unreadable and goes on.)
    Values {
        /// The shard partition.
        from: u32,
        /// The owner's clock (ms) the values are computed at.
        at: i64,
        /// The alerts' values.
        values: Vec<WireValue>,
    },
}

/// One active alert's current value ([`crate::engine::CurrentValue`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireValue {
    /// The rule's name.
    pub(crate) rule: String,
    /// The group, in `group_by` order.
    pub(crate) group: Vec<(String, String)>,
    /// The indicator's value.
    pub(crate) value: Option<f64>,
    /// Root-cause hints (`None`: the rule does not explain).
    pub(crate) hints: Option<Vec<Hint>>,
}

impl From<crate::engine::CurrentValue> for WireValue {
    fn from(v: crate::engine::CurrentValue) -> Self {
        WireValue {
            rule: v.rule,
            group: v.group,
            value: v.value,
            hints: v.hints,
        }
    }
}

/// [`Transition`] as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireTransition {
    rule: String,
    group: Vec<(String, String)>,
    state: u8,
    severity: Severity,
    at: i64,
    value: Option<f64>,
    threshold: f64,
    clear: f64,
    dedup_key: String,
    started_at: i64,
    window_ms: i64,
    sample_event_ids: Vec<String>,
    hints: Vec<Hint>,
}

impl From<&Transition> for WireTransition {
    fn from(t: &Transition) -> Self {
        WireTransition {
            rule: t.rule.clone(),
            group: t.group.clone(),
            state: match t.state {
                State::Pending => 0,
                State::Firing => 1,
                State::Escalated => 2,
                State::Resolved => 3,
            },
            severity: t.severity,
            at: t.at,
            value: t.value,
            threshold: t.threshold,
            clear: t.clear,
            dedup_key: t.dedup_key.clone(),
            started_at: t.started_at,
            window_ms: t.window_ms,
            sample_event_ids: t.sample_event_ids.clone(),
            hints: t.hints.clone(),
        }
    }
}

impl WireTransition {
    /// The transition, or an error for an unknown state.
    pub(crate) fn into_transition(self) -> Result<Transition, WireError> {
        let state = match self.state {
            0 => State::Pending,
            1 => State::Firing,
            2 => State::Escalated,
            3 => State::Resolved,
            s => return Err(WireError::Decode(format!("unknown alert state {s}"))),
        };
        Ok(Transition {
            rule: self.rule,
            group: self.group,
            state,
            severity: self.severity,
            at: self.at,
            value: self.value,
            threshold: self.threshold,
            clear: self.clear,
            dedup_key: self.dedup_key,
            started_at: self.started_at,
            window_ms: self.window_ms,
            sample_event_ids: self.sample_event_ids,
            hints: self.hints,
        })
    }
}

/// A shard partition's checkpoint on the shard changelog topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShardCheckpoint {
    /// The shard partition.
    pub(crate) partition: u32,
    /// The next shard-topic offset to read: everything before is in `owner`.
    pub(crate) next_offset: i64,
    /// [`Owner::checkpoint`](crate::repartition::Owner::checkpoint) of the partition.
    pub(crate) owner: Vec<u8>,
}

/// An incident partition's checkpoint on the incident changelog topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IncidentCheckpoint {
    /// The incident partition.
    pub(crate) partition: u32,
    /// The next transition-topic offset to read.
    pub(crate) next_offset: i64,
    /// Every transition before this was applied.
    pub(crate) released: Option<i64>,
    /// (shard partition, release point reported).
    pub(crate) marks: Vec<(u32, i64)>,
    /// Transitions waiting: order and transition.
    pub(crate) held: Vec<(Order, WireTransition)>,
    /// Its open incidents.
    pub(crate) incidents: Vec<HandedIncident>,
    /// The notifications queued for its incidents (resolved ones too), in
    /// queue order: the next owner sends them. Appended last: `None` when
    /// read from a checkpoint written before it ([`IncidentCheckpoint::decode`]).
    pub(crate) queued: Option<Vec<QueuedRow>>,
    /// The keys its incidents closed, with when (event time): its next
    /// owner makes no incident under one of them, as this instance would
    /// not. Appended last: `None` from a checkpoint written before it.
    pub(crate) closed: Option<Vec<(String, i64)>>,
}

/// [`IncidentCheckpoint`] as builds before `closed` wrote it.
#[derive(Deserialize)]
struct IncidentCheckpointV2 {
    partition: u32,
    next_offset: i64,
    released: Option<i64>,
    marks: Vec<(u32, i64)>,
    held: Vec<(Order, WireTransition)>,
    incidents: Vec<HandedIncident>,
    queued: Option<Vec<QueuedRow>>,
}

/// [`IncidentCheckpoint`] as builds before `queued` wrote it.
#[derive(Deserialize)]
struct IncidentCheckpointV1 {
    partition: u32,
    next_offset: i64,
    released: Option<i64>,
    marks: Vec<(u32, i64)>,
    held: Vec<(Order, WireTransition)>,
    incidents: Vec<HandedIncident>,
}

impl IncidentCheckpoint {
    /// Reads a checkpoint written by [`encode`], by this build or one
    /// before `closed` or `queued` (an older build reading a newer
    /// checkpoint ignores the trailing fields).
    pub(crate) fn decode(bytes: &[u8]) -> Result<IncidentCheckpoint, WireError> {
        let first = match decode::<IncidentCheckpoint>(bytes) {
            Ok(cp) => return Ok(cp),
            Err(WireError::Decode(first)) => first,
            Err(e) => return Err(e),
        };
        if let Ok(v2) = decode_exact::<IncidentCheckpointV2>(bytes) {
            return Ok(IncidentCheckpoint {
                partition: v2.partition,
                next_offset: v2.next_offset,
                released: v2.released,
                marks: v2.marks,
                held: v2.held,
                incidents: v2.incidents,
                queued: v2.queued,
                closed: None,
            });
        }
        match decode_exact::<IncidentCheckpointV1>(bytes) {
            Ok(v1) => Ok(IncidentCheckpoint {
                partition: v1.partition,
                next_offset: v1.next_offset,
                released: v1.released,
                marks: v1.marks,
                held: v1.held,
                incidents: v1.incidents,
                queued: None,
                closed: None,
            }),
            Err(_) => Err(WireError::Decode(first)),
        }
    }
}

/// An open incident handed to the partition's next owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HandedIncident {
    /// The incident as the outbox stores it (JSON).
    pub(crate) state: String,
    /// The receivers that heard of it.
    pub(crate) heard: Vec<String>,
}

impl Keyed {
    /// Plain data of a keyed transition.
    pub(crate) fn to_wire(&self) -> (Order, WireTransition) {
        (self.order.clone(), WireTransition::from(&self.transition))
    }
}

/// One message of a partition checkpoint on a changelog topic (checkpoints
/// are split under the brokers' message size limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    /// The internal partition the checkpoint is of.
    pub(crate) partition: u32,
    /// The checkpoint: (next offset, wall ms when written); the newest is the largest.
    pub(crate) id: (i64, i64),
    /// This chunk's place, from 0.
    pub(crate) index: u32,
    /// The checkpoint's chunks.
    pub(crate) count: u32,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
}

/// `WIRE_VERSION`, then the value (bincode).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Serialising plain data into a Vec cannot fail.
    if let Err(e) = bincode::serialize_into(&mut out, v) {
        tracing::error!(error = %e, "cannot encode an internal message");
    }
    out
}

/// [`decode`], refusing bytes left over: a message of an older layout is
/// told from a newer one damaged past its older fields.
fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    use bincode::Options;
    match bytes.split_first() {
        Some((&WIRE_VERSION, body)) => bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .reject_trailing_bytes()
            .deserialize(body)
            .map_err(|e| WireError::Decode(e.to_string())),
        other => Err(WireError::Version {
            found: other.map(|(v, _)| *v),
        }),
    }
}

/// Reads a message written by [`encode`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    match bytes.split_first() {
        Some((&WIRE_VERSION, body)) => {
            bincode::deserialize(body).map_err(|e| WireError::Decode(e.to_string()))
        }
        other => Err(WireError::Version {
            found: other.map(|(v, _)| *v),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_checkpoints_round_trip_and_another_version_is_refused() {
        let t = Transition {
            rule: "r".into(),
            group: vec![("product".into(), "p".into())],
            state: State::Escalated,
            severity: Severity::Critical,
            at: 5,
            value: Some(0.5),
            threshold: 0.4,
            clear: 0.3,
            dedup_key: "r/product=p/1".into(),
            started_at: 1,
            window_ms: 60_000,
            sample_event_ids: vec!["e1".into()],
            hints: Vec::new(),
        };
        let note = Note::Transition {
            from: 3,
            targets: vec![0, 2],
            order: Order {
                at: 5,
                event: Some("e1".into()),
                rule: 0,
                group: t.group.clone(),
            },
            transition: Box::new(WireTransition::from(&t)),
        };
        let bytes = encode(&note);
        let back: Note = decode(&bytes).unwrap();
        assert_eq!(back, note);
        let Note::Transition { transition, .. } = back else {
            panic!("a transition");
        };
        assert_eq!(transition.into_transition().unwrap(), t);
        let mut other = bytes.clone();
        other[0] = WIRE_VERSION + 1;
        assert!(matches!(
            decode::<Note>(&other),
            Err(WireError::Version { found: Some(v) }) if v == WIRE_VERSION + 1
        ));
        let values = Note::Values {
            from: 1,
            at: 7,
            values: vec![WireValue {
                rule: "r".into(),
                group: t.group.clone(),
                value: Some(0.25),
                hints: None,
            }],
        };
        assert_eq!(decode::<Note>(&encode(&values)).unwrap(), values);
        assert!(decode::<Note>(&[]).is_err());
        assert!(decode::<Note>(&[WIRE_VERSION, 9, 9]).is_err());
    }

    /// A checkpoint written before `queued` reads with `queued: None` (the
    /// reader queues its own handed copies instead); one written now
    /// round-trips; and a build before `queued` reads a new checkpoint
    /// (bincode ignores the trailing field).
    #[test]
    fn incident_checkpoints_of_either_layout_read() {
        #[derive(Serialize)]
        struct Before {
            partition: u32,
            next_offset: i64,
            released: Option<i64>,
            marks: Vec<(u32, i64)>,
            held: Vec<(Order, WireTransition)>,
            incidents: Vec<HandedIncident>,
        }
        let incidents = vec![HandedIncident {
            state: "{}".into(),
            heard: vec!["hook".into()],
        }];
        let old = encode(&Before {
            partition: 2,
            next_offset: 40,
            released: Some(7),
            marks: vec![(0, 7)],
            held: Vec::new(),
            incidents: incidents.clone(),
        });
        let cp = IncidentCheckpoint::decode(&old).unwrap();
        assert_eq!(
            (cp.partition, cp.next_offset, cp.released),
            (2, 40, Some(7))
        );
        assert_eq!(cp.incidents, incidents);
        assert_eq!(cp.queued, None);
        let now = IncidentCheckpoint {
            queued: Some(vec![QueuedRow {
                receiver: "hook".into(),
                incident: "k".into(),
                seq: 3,
                action: "update".into(),
                body: "{}".into(),
                created_ms: 9,
                attempts: 2,
                last_error: Some("HTTP 500".into()),
            }]),
            ..cp
        };
        let bytes = encode(&now);
        assert_eq!(IncidentCheckpoint::decode(&bytes).unwrap(), now);
        let read_before: IncidentCheckpointV1 = decode(&bytes).unwrap();
        assert_eq!(read_before.next_offset, 40);
        // A checkpoint of the builds with `queued` but before `closed`.
        #[derive(Serialize)]
        struct WithQueued<'a> {
            partition: u32,
            next_offset: i64,
            released: Option<i64>,
            marks: &'a [(u32, i64)],
            held: &'a [(Order, WireTransition)],
            incidents: &'a [HandedIncident],
            queued: &'a Option<Vec<QueuedRow>>,
        }
        let v2 = encode(&WithQueued {
            partition: now.partition,
            next_offset: now.next_offset,
            released: now.released,
            marks: &now.marks,
            held: &now.held,
            incidents: &now.incidents,
            queued: &now.queued,
        });
        assert_eq!(IncidentCheckpoint::decode(&v2).unwrap(), now);
        let closed = IncidentCheckpoint {
            closed: Some(vec![("product/product=p/5-1".into(), 9)]),
            ..now.clone()
        };
        let bytes = encode(&closed);
        assert_eq!(IncidentCheckpoint::decode(&bytes).unwrap(), closed);
        let read_v2: IncidentCheckpointV2 = decode(&bytes).unwrap();
        assert_eq!(read_v2.queued, now.queued);
        assert!(IncidentCheckpoint::decode(&[WIRE_VERSION, 1, 2]).is_err());
        // A new checkpoint damaged in its queued notifications is refused,
        // not read as an older layout without them.
        let cut = &bytes[..bytes.len() - 3];
        assert!(IncidentCheckpoint::decode(cut).is_err());
    }
}
