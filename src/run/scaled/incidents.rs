//! The incident owners of a scaled instance: the transition-topic partitions
//! the group assigned it. Their transitions are sequenced by
//! [`IncidentFeed`] (one instance's order, once every shard partition's
//! owner passed them) and applied by this instance's incident manager, which
//! keeps only the incident groups of those partitions. A partition's state —
//! release points, waiting transitions and open incidents — goes to the
//! incident changelog on revoke, at a stop and every `checkpoint_interval`;
//! its next owner continues from there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::Offset;

use super::internal::{read_latest_counted, state_consumer, Ordered, PartitionState, StateContext};
use super::wire::{decode, encode, HandedIncident, IncidentCheckpoint, Note, WireValue};
use super::{ScaledError, ScaledMetrics, Topics};
use crate::alert::Labels;
use crate::config::KafkaSourceConfig;
use crate::explain::Hint;
use crate::incident::lifecycle::{Incident, ValueSource};
use crate::incident::outbox::QueuedRow;
use crate::incident::routing::incident_partition;
use crate::incident::IncidentManager;
use crate::repartition::{FeedPart, IncidentFeed, Keyed};

/// How long a flush of the changelog producer may take.
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// The owned incident partitions (the state behind the consumer's rebalances).
pub(crate) struct IncidentParts {
    k: KafkaSourceConfig,
    topics: Topics,
    feed: IncidentFeed,
    manager: Arc<IncidentManager>,
    producer: Arc<Ordered>,
    /// Per owned partition: the next offset to read, and whether it changed
    /// since its last checkpoint.
    next: BTreeMap<i32, (i64, bool)>,
    metrics: Arc<ScaledMetrics>,
    failure: Option<ScaledError>,
    /// Transitions submitted to the manager.
    pub(crate) submitted: u64,
    /// The release point last handed to the manager.
    last_below: Option<i64>,
    /// The shard owners' latest values of their active alerts.
    values: SentValues,
    /// Per owned partition, [`signature`] of the queue its last checkpoint
    /// carried.
    queued_sig: BTreeMap<i32, u64>,
}

/// The current values the shard owners last sent ([`Note::Values`]), per
/// (incident partition, shard partition): where progress updates take their
/// current value and hints from, as one instance's take them from its engine.
#[derive(Debug, Default)]
struct SentValues {
    from: BTreeMap<(u32, u32), (i64, Vec<WireValue>)>,
}

impl SentValues {
    fn replace(&mut self, q: u32, from: u32, at: i64, values: Vec<WireValue>) {
        if values.is_empty() {
            self.from.remove(&(q, from));
        } else {
            self.from.insert((q, from), (at, values));
        }
    }

    /// The newest value sent for `rule` on `group`.
    fn find(&self, rule: &str, group: &Labels) -> Option<&WireValue> {
        self.from
            .values()
            .flat_map(|(at, vs)| vs.iter().map(move |v| (*at, v)))
            .filter(|(_, v)| v.rule == rule && &v.group == group)
            .max_by_key(|(at, _)| *at)
            .map(|(_, v)| v)
    }
}

impl ValueSource for SentValues {
    fn current(&mut self, rule: &str, group: &Labels) -> Option<f64> {
        self.find(rule, group).and_then(|v| v.value)
    }

    fn hints(&mut self, rule: &str, group: &Labels) -> Option<Vec<Hint>> {
        self.find(rule, group).and_then(|v| v.hints.clone())
    }
}

impl IncidentParts {
    pub(crate) fn new(
        k: KafkaSourceConfig,
        topics: Topics,
        manager: Arc<IncidentManager>,
        producer: Arc<Ordered>,
        metrics: Arc<ScaledMetrics>,
    ) -> Result<Self, ScaledError> {
        // Until the group assigns partitions, this instance keeps no incident:
        // those its outbox holds from an earlier run go back to their owners.
        // What it had queued for them goes with them: their checkpoints
        // carry it, and their owners queue again what came after those.
        let given_up = manager.set_ownership(topics.incident_partitions, &[])?;
        if !given_up.is_empty() {
            tracing::info!(
                incidents = given_up.len(),
                "Open incidents of the outbox wait for their partition's owner."
            );
        }
        Ok(IncidentParts {
            feed: IncidentFeed::new(topics.shard_partitions),
            k,
            topics,
            manager,
            producer,
            next: BTreeMap::new(),
            metrics,
            failure: None,
            submitted: 0,
            last_below: None,
            values: SentValues::default(),
            queued_sig: BTreeMap::new(),
        })
    }

    fn owned(&self) -> Vec<u32> {
        self.next.keys().map(|&p| p as u32).collect()
    }

    /// Restores partition `q` from its latest checkpoint: the offset to read from.
    fn restore(&mut self, q: i32) -> Result<i64, ScaledError> {
        let started = Instant::now();
        let (latest, cost) = read_latest_counted(&self.k, &self.topics.incidents_changelog, q)?;
        let (next, part, incidents, queued, closed) = match latest {
            // Never checkpointed (a new group, or one switched from a single
            // instance): what this outbox queued for it before is its own.
            None => (0, FeedPart::default(), Vec::new(), None, Vec::new()),
            Some(bytes) => {
                let cp = IncidentCheckpoint::decode(&bytes)
                    .map_err(|e| ScaledError::Checkpoint(format!("incident partition {q}: {e}")))?;
                let mut held = Vec::with_capacity(cp.held.len());
                for (order, t) in cp.held {
                    let transition = t.into_transition().map_err(|e| {
                        ScaledError::Checkpoint(format!("incident partition {q}: {e}"))
                    })?;
                    held.push(Keyed { order, transition });
                }
                let mut incidents = Vec::with_capacity(cp.incidents.len());
                for h in cp.incidents {
                    let inc: Incident = serde_json::from_str(&h.state).map_err(|e| {
                        ScaledError::Checkpoint(format!("incident partition {q}: {e}"))
                    })?;
                    incidents.push((inc, h.heard));
                }
                let part = FeedPart {
                    released: cp.released,
                    marks: cp.marks,
                    held,
                };
                let closed = cp.closed.unwrap_or_default();
                (cp.next_offset, part, incidents, cp.queued, closed)
            }
        };
        let adopted = incidents.len();
        self.feed.adopt(q as u32, part);
        self.next.insert(q, (next, false));
        self.manager
            .set_ownership(self.topics.incident_partitions, &self.owned())?;
        let partitions = self.topics.incident_partitions;
        self.manager.adopt_closed(q as u32, closed);
        let queued = self
            .manager
            .adopt(incidents, queued.as_deref(), |route, labels| {
                incident_partition(route, labels, partitions) == q as u32
            })?;
        let secs = started.elapsed().as_secs_f64();
        self.metrics
            .restore_seconds
            .with_label_values(&["incident"])
            .observe(secs);
        tracing::info!(
            partition = q,
            from_offset = next,
            incidents = adopted,
            queued_notifications = queued,
            seconds = secs,
            changelog_kept = cost.kept,
            changelog_read = cost.read,
            "Incident partition restored."
        );
        Ok(next)
    }

    /// A message read at `offset` of incident partition `q`.
    fn offer(&mut self, q: i32, offset: i64, payload: &[u8]) {
        let Some((next, dirty)) = self.next.get_mut(&q) else {
            return;
        };
        if offset < *next {
            return;
        }
        *next = offset + 1;
        *dirty = true;
        match decode::<Note>(payload) {
            Ok(Note::Released { from, below }) => self.feed.released(q as u32, from, below),
            Ok(Note::Values { from, at, values }) => {
                self.values.replace(q as u32, from, at, values)
            }
            Ok(Note::Transition {
                targets,
                order,
                transition,
                ..
            }) => match transition.into_transition() {
                Ok(transition) => self
                    .feed
                    .offer(q as u32, &targets, Keyed { order, transition }),
                Err(e) => self.unreadable(q, offset, &e.to_string()),
            },
            Err(e) => self.unreadable(q, offset, &e.to_string()),
        }
    }

    fn unreadable(&self, q: i32, offset: i64, error: &str) {
        self.metrics
            .unreadable
            .with_label_values(&["transitions"])
            .inc();
        tracing::warn!(
            partition = q,
            offset,
            error,
            "Unreadable message on the transition topic: skipped."
        );
    }

    /// Applies what every shard partition's owner has passed.
    fn release(&mut self) -> Result<(), ScaledError> {
        let mut batch = Vec::new();
        let Some(below) = self.feed.release(|t| batch.push(t)) else {
            return Ok(());
        };
        if batch.is_empty() && self.last_below == Some(below) {
            return Ok(());
        }
        self.last_below = Some(below);
        let now = below.saturating_sub(1);
        // As on one instance: transitions with what fell due between them,
        // then opens and progress updates due by now with the current values
        // the shard owners sent.
        if !batch.is_empty() {
            // The feed is the duplicate check (see `submit_sequenced`).
            self.manager.submit_sequenced(&batch, now)?;
        }
        self.manager.tick(now, &mut self.values)?;
        self.submitted += batch.len() as u64;
        let (held, resent) = self.feed.counts();
        self.metrics.held_transitions.set(held as i64);
        self.metrics.resent.set(resent as i64);
        Ok(())
    }

    /// Sends partition `q`'s checkpoint (read from offset `next` on) with
    /// `incidents` and `queued` (flushed by the caller).
    fn send_checkpoint(
        &self,
        q: i32,
        next: i64,
        incidents: Vec<(Incident, Vec<String>)>,
        queued: Vec<QueuedRow>,
        closed: Vec<(String, i64)>,
    ) -> Result<(), ScaledError> {
        let part = self.feed.part(q as u32);
        let mut handed = Vec::with_capacity(incidents.len());
        for (inc, heard) in incidents {
            let state =
                serde_json::to_string(&inc).map_err(|e| ScaledError::Checkpoint(e.to_string()))?;
            handed.push(HandedIncident { state, heard });
        }
        let cp = encode(&IncidentCheckpoint {
            partition: q as u32,
            next_offset: next,
            released: part.released,
            marks: part.marks,
            held: part.held.iter().map(Keyed::to_wire).collect(),
            incidents: handed,
            queued: Some(queued),
            closed: Some(closed),
        });
        self.metrics
            .checkpoint_bytes
            .with_label_values(&["incident"])
            .observe(cp.len() as f64);
        let id = (next, chrono::Utc::now().timestamp_millis());
        self.producer
            .send_checkpoint(&self.topics.incidents_changelog, q, id, &cp);
        Ok(())
    }

    /// Flushes `wrote` checkpoints.
    fn flushed(&self, wrote: u64) -> Result<(), ScaledError> {
        if wrote > 0 {
            self.producer.flush(FLUSH_WAIT)?;
            self.metrics
                .checkpoints
                .with_label_values(&["incident"])
                .inc_by(wrote);
        }
        Ok(())
    }

    /// Writes the checkpoints of the partitions with new messages, or whose
    /// queued notifications changed since their last checkpoint (deliveries,
    /// an operator's close): after a crash the next owner sends a queue at
    /// most `checkpoint_interval` old, not one long delivered.
    fn checkpoint(&mut self) -> Result<(), ScaledError> {
        self.release()?;
        let partitions = self.topics.incident_partitions;
        let ids = self.manager.queued_ids(partitions, &self.owned())?;
        let mut wrote = 0;
        let owned: Vec<(i32, i64, bool)> =
            self.next.iter().map(|(&q, &(n, d))| (q, n, d)).collect();
        for (q, next, dirty) in owned {
            let now = ids.get(&(q as u32)).map_or(&[][..], Vec::as_slice);
            let sig = signature(now);
            if !dirty && self.queued_sig.get(&q).copied().unwrap_or(signature(&[])) == sig {
                continue;
            }
            let mut incidents = Vec::new();
            for inc in self.manager.incidents_of(partitions, q as u32) {
                let heard = self.manager.heard_by(&inc.key)?;
                incidents.push((inc, heard));
            }
            let queued = self.manager.queued_rows(now)?;
            let closed = self.manager.closed_of(q as u32);
            self.send_checkpoint(q, next, incidents, queued, closed)?;
            self.next.insert(q, (next, false));
            self.queued_sig.insert(q, sig);
            wrote += 1;
        }
        self.flushed(wrote)
    }

    /// Hands partitions `ps` over: what is due is applied, then their open
    /// incidents and queued notifications leave the manager in one
    /// transaction (marked handed) and go into their checkpoints.
    fn hand_over(&mut self, ps: &[i32]) -> Result<(), ScaledError> {
        let due = self.release();
        let remaining: Vec<u32> = self
            .next
            .keys()
            .filter(|q| !ps.contains(q))
            .map(|&q| q as u32)
            .collect();
        let mut leaving = self
            .manager
            .release(self.topics.incident_partitions, &remaining)?;
        let mut wrote = 0;
        for &q in ps {
            let Some(&(next, _)) = self.next.get(&q) else {
                continue;
            };
            let l = leaving.remove(&(q as u32)).unwrap_or_default();
            self.send_checkpoint(q, next, l.incidents, l.queued, l.closed)?;
            wrote += 1;
        }
        self.flushed(wrote)?;
        due
    }
}

/// A queue's identity: its rows' ids.
fn signature(ids: &[i64]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ids.hash(&mut h);
    h.finish()
}

impl PartitionState for IncidentParts {
    fn assigned(&mut self, partitions: &[i32]) -> Vec<(i32, Offset)> {
        let mut starts = Vec::new();
        for &q in partitions {
            match self.restore(q) {
                Ok(next) => starts.push((q, Offset::Offset(next))),
                Err(e) => {
                    tracing::error!(partition = q, error = %e, "Cannot restore an incident partition.");
                    self.failure.get_or_insert(e);
                }
            }
        }
        self.metrics
            .owned
            .with_label_values(&["incident"])
            .set(self.next.len() as i64);
        starts
    }

    fn revoked(&mut self, partitions: &[i32]) {
        if let Err(e) = self.hand_over(partitions) {
            // As after a crash: the next owner continues from the previous
            // checkpoint; what was queued here stays handed.
            tracing::error!(error = %e, "Cannot checkpoint revoked incident partitions; their next owner continues from the previous checkpoint.");
            self.failure.get_or_insert(e);
        }
        for &q in partitions {
            self.feed.disown(q as u32);
            self.next.remove(&q);
            self.queued_sig.remove(&q);
        }
        self.values
            .from
            .retain(|(q, _), _| !partitions.contains(&(*q as i32)));
        self.metrics
            .owned
            .with_label_values(&["incident"])
            .set(self.next.len() as i64);
    }

    fn take_failure(&mut self) -> Option<ScaledError> {
        self.failure.take()
    }

    fn on_message(&mut self, q: i32, offset: i64, payload: &[u8]) {
        self.offer(q, offset, payload);
    }

    fn on_release(&mut self) -> Result<(), ScaledError> {
        self.release()
    }

    fn on_checkpoint(&mut self) -> Result<(), ScaledError> {
        self.checkpoint()
    }

    /// At the stop (after the service delivered what it could while still
    /// the owner): the last checkpoint of every owned partition, with what is
    /// still queued, then the partitions' incidents and queued notifications
    /// are handed to their next owners — nothing goes out from here after it.
    fn on_stop(&mut self) {
        let owned: Vec<i32> = self.next.keys().copied().collect();
        self.revoked(&owned);
    }
}

/// The incident owners' consumer.
pub(crate) fn consumer(
    k: &KafkaSourceConfig,
    topics: &Topics,
    state: Arc<Mutex<IncidentParts>>,
    lag: prometheus::IntGaugeVec,
) -> Result<BaseConsumer<StateContext<IncidentParts>>, ScaledError> {
    state_consumer(
        k,
        &topics.incidents_group,
        &topics.transitions,
        state,
        (lag, "incident"),
    )
}
