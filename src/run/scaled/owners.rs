//! The shard owners of a scaled instance: the shard-topic partitions the
//! group assigned it, one [`Owner`] each, restored from the shard changelog
//! and checkpointed to it; their transitions go to the transition topic,
//! split by incident partition, followed by each owner's release point.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::Offset;

use super::internal::{read_latest_counted, state_consumer, Ordered, PartitionState, StateContext};
use super::wire::{decode, encode, Note, ShardCheckpoint, WireTransition, WireValue};
use super::{ScaledError, ScaledMetrics, Topics};
use crate::alert::State;
use crate::config::Config;
use crate::http::AppState;
use crate::incident::routing::Unrouted;
use crate::incident::IncidentManager;
use crate::repartition::{Envelope, Keyed, Owner, Source, TransitionSplit};

/// How long a flush of the internal producer may take before the stage
/// gives up (the broker is down: the service stops with an error).
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// How often the owners send their active alerts' current values to the
/// incident owners (for progress updates; one instance's stage ticks every
/// second too).
const VALUES_EVERY: Duration = Duration::from_secs(1);

/// How often the owned shards' indicators and counters are published to the
/// metrics and the admin API (one instance's stage: every second too).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Least time between two warnings about late events.
const LATE_WARN_EVERY: Duration = Duration::from_secs(60);

/// One owned shard partition.
struct Part {
    owner: Owner,
    /// The next offset to read: everything before is in `owner`.
    next_offset: i64,
    /// The release point last sent to the incident partitions.
    sent_below: Option<i64>,
    /// Messages applied since the last checkpoint.
    dirty: bool,
    /// The incident partitions last sent a non-empty [`Note::Values`] (they
    /// get an empty one when the values are gone).
    values_to: BTreeSet<u32>,
    /// The engine's counters when last added to the metrics (as restored,
    /// at first: a partition that moved here brings its history, which the
    /// instance that held it counted).
    counted: Counted,
}

/// An engine's counters: engine-wide and per rule.
type Counted = (crate::engine::EngineStats, Vec<crate::engine::RuleStats>);

fn counters(e: &crate::engine::Engine) -> Counted {
    use crate::engine::EngineView;
    (
        e.counters(),
        (0..e.rule_count()).map(|i| e.rule_counters(i)).collect(),
    )
}

/// The owned shard partitions (the state behind the consumer's rebalances).
pub(crate) struct Owners {
    cfg: Arc<Config>,
    k: crate::config::KafkaSourceConfig,
    topics: Topics,
    sources: Vec<Source>,
    parts: BTreeMap<i32, Part>,
    split: TransitionSplit,
    producer: Arc<Ordered>,
    out: Vec<Keyed>,
    metrics: Arc<ScaledMetrics>,
    /// This instance's incident stage: counts and logs the alerts no route
    /// takes at any severity, which are sent to no incident partition.
    incidents: Arc<IncidentManager>,
    /// A failure inside a rebalance callback: the stage stops with it.
    failure: Option<ScaledError>,
    /// When the active alerts' values were last sent.
    values_sent: Option<Instant>,
    /// The service's metrics and admin API: the owned shards' indicators,
    /// counters and groups, published every [`PUBLISH_EVERY`].
    state: Arc<AppState>,
    /// When they were last published.
    published: Option<Instant>,
    /// Late events (per owned partition) not warned about yet, and when the
    /// last warning was logged.
    late: (BTreeMap<i32, u64>, Option<Instant>),
}

impl Owners {
    pub(crate) fn new(
        cfg: Arc<Config>,
        topics: Topics,
        sources: Vec<Source>,
        producer: Arc<Ordered>,
        metrics: Arc<ScaledMetrics>,
        incidents: Arc<IncidentManager>,
        state: Arc<AppState>,
    ) -> Result<Self, ScaledError> {
        let k = cfg
            .sources
            .kafka
            .clone()
            .ok_or(ScaledError::NotConfigured)?;
        let split = TransitionSplit::new(&cfg, topics.incident_partitions);
        Ok(Owners {
            cfg,
            k,
            topics,
            sources,
            parts: BTreeMap::new(),
            split,
            producer,
            out: Vec::new(),
            metrics,
            incidents,
            failure: None,
            values_sent: None,
            state,
            published: None,
            late: (BTreeMap::new(), None),
        })
    }

    /// An owned (shard partition, source) pair whose last clock message was
    /// written under another configuration: (partition, source, its
    /// fingerprint, this instance's).
    pub(crate) fn foreign(&self) -> Option<(i32, Source, u64, u64)> {
        self.parts.iter().find_map(|(&p, part)| {
            part.owner
                .foreign()
                .map(|(_, s, theirs)| (p, s, theirs, part.owner.fingerprint()))
        })
    }

    fn shards(&self) -> u32 {
        self.cfg.engine.shards
    }

    /// The owner of `p`: restored from its latest checkpoint, or new.
    fn restore(&self, p: i32) -> Result<Part, ScaledError> {
        let started = Instant::now();
        let fresh = || {
            Owner::new(
                &self.cfg,
                self.shards(),
                self.topics.shard_partitions,
                [p as u32],
                self.sources.clone(),
            )
            .map_err(ScaledError::Engine)
        };
        let (latest, cost) = read_latest_counted(&self.k, &self.topics.shards_changelog, p)?;
        let part = match latest {
            None => {
                let owner = fresh()?;
                Part {
                    counted: counters(owner.engine()),
                    owner,
                    next_offset: 0,
                    sent_below: None,
                    dirty: false,
                    values_to: BTreeSet::new(),
                }
            }
            Some(bytes) => {
                let cp: ShardCheckpoint = decode(&bytes)
                    .map_err(|e| ScaledError::Checkpoint(format!("shard partition {p}: {e}")))?;
                let owner = Owner::restore(
                    &self.cfg,
                    self.shards(),
                    self.topics.shard_partitions,
                    [p as u32],
                    self.sources.clone(),
                    &cp.owner,
                )
                .map_err(|e| ScaledError::Checkpoint(format!("shard partition {p}: {e}")))?;
                Part {
                    sent_below: owner.released_below(),
                    counted: counters(owner.engine()),
                    owner,
                    next_offset: cp.next_offset,
                    dirty: false,
                    values_to: BTreeSet::new(),
                }
            }
        };
        let secs = started.elapsed().as_secs_f64();
        self.metrics
            .restore_seconds
            .with_label_values(&["shard"])
            .observe(secs);
        tracing::info!(
            partition = p,
            from_offset = part.next_offset,
            groups = part
                .owner
                .engine()
                .groups_per_rule()
                .iter()
                .map(|(_, n)| n)
                .sum::<usize>(),
            held = part.owner.held(),
            seconds = secs,
            changelog_kept = cost.kept,
            changelog_read = cost.read,
            "Shard partition restored."
        );
        Ok(part)
    }

    /// A message read at `offset` of shard partition `p`.
    fn offer(&mut self, p: i32, offset: i64, payload: &[u8]) {
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        if offset < part.next_offset {
            return; // in the restored checkpoint already
        }
        part.next_offset = offset + 1;
        part.dirty = true;
        self.metrics.owner_messages.inc();
        match Envelope::decode(payload) {
            Ok(env) => {
                let mut out = std::mem::take(&mut self.out);
                part.owner.offer(p as u32, offset, env, &mut out);
                self.send(p, &mut out);
                self.out = out;
            }
            Err(e) => {
                self.metrics.unreadable.with_label_values(&["shards"]).inc();
                tracing::warn!(partition = p, offset, error = %e, "Unreadable message on the shard topic: skipped.");
            }
        }
    }

    /// Releases what each owner's clock passed; sends the transitions, then
    /// the release points that moved.
    fn release(&mut self) {
        let ps: Vec<i32> = self.parts.keys().copied().collect();
        for p in ps {
            let mut out = std::mem::take(&mut self.out);
            let Some(part) = self.parts.get_mut(&p) else {
                continue;
            };
            part.owner.release(&mut out, |_, _, _| {});
            let below = part.owner.released_below();
            let moved = below.is_some() && below != part.sent_below;
            if moved {
                part.sent_below = below;
            }
            self.send(p, &mut out);
            self.out = out;
            if let (true, Some(below)) = (moved, below) {
                let note = encode(&Note::Released {
                    from: p as u32,
                    below,
                });
                for q in 0..self.topics.incident_partitions {
                    self.producer
                        .send(&self.topics.transitions, q as i32, b"", &note);
                }
            }
        }
        let due = self.values_sent.is_none_or(|t| t.elapsed() >= VALUES_EVERY);
        if due {
            self.values_sent = Some(Instant::now());
            self.send_values();
        }
        if self.published.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY) {
            self.published = Some(Instant::now());
            self.publish();
        }
        self.metrics
            .held
            .set(self.parts.values().map(|p| p.owner.held() as i64).sum());
        self.metrics
            .resent_events
            .set(self.parts.values().map(|p| p.owner.resent() as i64).sum());
        self.producer.poll();
    }

    /// Adds what each owned partition's engine counted since the last call
    /// to the metrics, and publishes the owned shards' groups (indicator
    /// series, live groups, watermark) to the metrics and the admin API.
    /// Each (rule, group) series lives on the instance owning its shard:
    /// summed over the group's instances, the series are one instance's.
    fn publish(&mut self) {
        let metrics = &self.state.metrics;
        for (&p, part) in self.parts.iter_mut() {
            let now = counters(part.owner.engine());
            let late = now.0.late.saturating_sub(part.counted.0.late);
            if late > 0 {
                *self.late.0.entry(p).or_default() += late;
            }
            metrics.add_counts(
                part.owner.engine(),
                (&now.0, &now.1),
                (&part.counted.0, &part.counted.1),
            );
            part.counted = now;
        }
        let engines: Vec<&crate::engine::Engine> =
            self.parts.values().map(|p| p.owner.engine()).collect();
        let view = crate::engine::EngineSet::new(&engines);
        metrics.publish_groups(&view, chrono::Utc::now().timestamp_millis());
        self.state.admin.publish(crate::admin::snapshot(&view));
        self.warn_late(false);
    }

    /// Warns about the events that came late since the last warning (at most
    /// once a minute; `now`: whatever the last warning's time, at a stop).
    fn warn_late(&mut self, now: bool) {
        let (late, warned) = &mut self.late;
        if late.is_empty() || !now && warned.is_some_and(|t| t.elapsed() < LATE_WARN_EVERY) {
            return;
        }
        *warned = Some(Instant::now());
        let by_partition = std::mem::take(late);
        tracing::warn!(
            late = by_partition.values().sum::<u64>(),
            shard_partitions = ?by_partition,
            "Events came late for every rule that selected them (behind the shard owner's clock minus \
             engine.allowed_lateness) and were dropped: an input partition that was idle for \
             idle_partition_timeout and delivered again, or events stamped far behind the rest. \
             Counted in crisiswatch_events_total{{outcome=\"late\"}} and per rule in \
             crisiswatch_rule_events_late_total."
        );
    }

    /// Sends each owned partition's active alerts' current values to the
    /// incident partitions that hold their incidents ([`Note::Values`]), and
    /// an empty list where values were sent before and are gone.
    fn send_values(&mut self) {
        for (&p, part) in self.parts.iter_mut() {
            let Some(at) = part.owner.engine().clock() else {
                continue;
            };
            let mut by_target: BTreeMap<u32, Vec<WireValue>> = BTreeMap::new();
            for v in part.owner.active_values() {
                let targets = self.split.partitions_for(&v.rule, &v.group);
                let wire = WireValue::from(v);
                for q in targets {
                    by_target.entry(q).or_default().push(wire.clone());
                }
            }
            let gone: Vec<u32> = part
                .values_to
                .iter()
                .copied()
                .filter(|q| !by_target.contains_key(q))
                .collect();
            for q in gone {
                by_target.insert(q, Vec::new());
            }
            part.values_to = by_target
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(q, _)| *q)
                .collect();
            for (q, values) in by_target {
                let note = encode(&Note::Values {
                    from: p as u32,
                    at,
                    values,
                });
                self.producer
                    .send(&self.topics.transitions, q as i32, b"", &note);
            }
        }
    }

    /// Sends shard partition `p`'s transitions to their incident partitions.
    fn send(&self, p: i32, out: &mut Vec<Keyed>) {
        let mut unrouted = Vec::new();
        for k in out.drain(..) {
            let targets = self.split.partitions_of(&k.transition);
            if targets.is_empty() {
                // No route takes this alert at any severity: no incident
                // partition hears of it, so it is counted here.
                if matches!(k.transition.state, State::Firing | State::Escalated) {
                    unrouted.push(Unrouted::of(&k.transition));
                }
                continue;
            }
            let note = encode(&Note::Transition {
                from: p as u32,
                targets: targets.clone(),
                order: k.order.clone(),
                transition: Box::new(WireTransition::from(&k.transition)),
            });
            for q in targets {
                self.producer.send(
                    &self.topics.transitions,
                    q as i32,
                    k.transition.dedup_key.as_bytes(),
                    &note,
                );
            }
            self.metrics.transitions.inc();
            self.state
                .metrics
                .record_transitions(std::iter::once(&k.transition));
        }
        if !unrouted.is_empty() {
            self.incidents.note_unrouted(&unrouted);
        }
    }

    /// Writes the checkpoints of the changed partitions among `ps` (`None`:
    /// all) once the transitions before them are written.
    fn checkpoint(&mut self, ps: Option<&[i32]>) -> Result<(), ScaledError> {
        self.release();
        self.producer.flush(FLUSH_WAIT)?;
        let mut wrote = 0;
        for (p, part) in self.parts.iter_mut() {
            // A partition that did not change has its latest checkpoint written.
            if !part.dirty || ps.is_some_and(|ps| !ps.contains(p)) {
                continue;
            }
            let owner = part
                .owner
                .checkpoint()
                .map_err(|e| ScaledError::Checkpoint(e.to_string()))?;
            let cp = encode(&ShardCheckpoint {
                partition: *p as u32,
                next_offset: part.next_offset,
                owner,
            });
            self.metrics
                .checkpoint_bytes
                .with_label_values(&["shard"])
                .observe(cp.len() as f64);
            let id = (part.next_offset, chrono::Utc::now().timestamp_millis());
            self.producer
                .send_checkpoint(&self.topics.shards_changelog, *p, id, &cp);
            part.dirty = false;
            wrote += 1;
        }
        if wrote > 0 {
            self.producer.flush(FLUSH_WAIT)?;
            self.metrics
                .checkpoints
                .with_label_values(&["shard"])
                .inc_by(wrote);
        }
        Ok(())
    }
}

impl Owners {
    /// Where each owned partition stands (debug level): its release point,
    /// events held, and the input partitions its clock still waits for.
    fn log_status(&self) {
        for (p, part) in &self.parts {
            let waiting: Vec<String> = part
                .owner
                .waiting_for()
                .iter()
                .map(|(_, s)| format!("{}/{}", s.topic, s.partition))
                .collect();
            tracing::debug!(
                partition = p,
                next_offset = part.next_offset,
                released_below = ?part.owner.released_below(),
                held = part.owner.held(),
                waiting_for = ?waiting,
                "Shard partition status."
            );
        }
    }
}

impl PartitionState for Owners {
    fn assigned(&mut self, partitions: &[i32]) -> Vec<(i32, Offset)> {
        let mut starts = Vec::new();
        for &p in partitions {
            match self.restore(p) {
                Ok(part) => {
                    starts.push((p, Offset::Offset(part.next_offset)));
                    self.parts.insert(p, part);
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "Cannot restore a shard partition.");
                    self.failure.get_or_insert(e);
                }
            }
        }
        self.metrics
            .owned
            .with_label_values(&["shard"])
            .set(self.parts.len() as i64);
        starts
    }

    fn revoked(&mut self, partitions: &[i32]) {
        if let Err(e) = self.checkpoint(Some(partitions)) {
            tracing::error!(error = %e, "Cannot checkpoint revoked shard partitions; their next owner re-reads from the previous checkpoint.");
            self.failure.get_or_insert(e);
        }
        for p in partitions {
            self.parts.remove(p);
        }
        self.metrics
            .owned
            .with_label_values(&["shard"])
            .set(self.parts.len() as i64);
    }

    fn take_failure(&mut self) -> Option<ScaledError> {
        self.failure.take()
    }

    fn on_message(&mut self, p: i32, offset: i64, payload: &[u8]) {
        self.offer(p, offset, payload);
    }

    fn on_release(&mut self) -> Result<(), ScaledError> {
        self.release();
        Ok(())
    }

    fn on_checkpoint(&mut self) -> Result<(), ScaledError> {
        self.checkpoint(None)
    }

    /// The last counts published, and every late event warned about.
    fn on_stop(&mut self) {
        self.publish();
        self.warn_late(true);
    }

    fn on_status(&self) {
        self.log_status();
    }
}

/// The shard owners' consumer.
pub(crate) fn consumer(
    cfg: &Config,
    topics: &Topics,
    state: Arc<Mutex<Owners>>,
    lag: prometheus::IntGaugeVec,
) -> Result<BaseConsumer<StateContext<Owners>>, ScaledError> {
    let k = cfg
        .sources
        .kafka
        .as_ref()
        .ok_or(ScaledError::NotConfigured)?;
    state_consumer(
        k,
        &topics.owners_group,
        &topics.shards,
        state,
        (lag, "shard"),
    )
}
