//! Operator actions shared by every instance of a scaled group: silences,
//! close requests (and their outcomes), acknowledgements and labels, and
//! which instance holds which open incident, through the internal topic
//! `<prefix>.controls` (one partition, compacted: the latest record per key).
//!
//! Each instance owns only the incident groups of its incident partitions,
//! and each keeps its own outbox; without this stage an action sent to one
//! instance's admin API (or CLI) would act on that instance alone.
//!
//! ```text
//!  admin API / CLI ─► own outbox ─► publish (this stage) ─► <prefix>.controls ─► every instance (this stage) ─► its outbox / manager
//! ```
//!
//! * **Publishing** follows the outbox pattern: the API and the CLI write the
//!   action to the local outbox as in one instance (durable, `synchronous =
//!   FULL`) and answer; this stage sends every local action the topic does
//!   not have yet, and sends it again after [`RESEND`] until it reads it back
//!   from the topic. An action survives a broker outage and a restart, and the
//!   CLI, which writes to the outbox file directly, is covered too.
//! * **Reading**: every instance reads the whole topic from the beginning at
//!   start (assigned, no consumer group) and keeps following it; applying a
//!   record is idempotent (by key), so reading it again after a restart
//!   changes nothing.
//! * **Silences** (`silence/<id>`) are merged into the outbox's silences: new
//!   ones are stored, an existing one only ever ends earlier (an expiry on any
//!   instance wins), so every instance converges on the same silences.
//! * **Close requests** (`close/<instance>/<id>`) are applied by the
//!   instance that owns the incident's partition, once every record before
//!   it has been read; it writes the outcome (`closed` or `not_open`) in the
//!   transaction that queues the `resolve`, and publishes it
//!   (`closed/<instance>/<id>`); the requesting instance marks its request
//!   done with it, so `GET /api/v1/incidents/close/{id}` shows it there.
//! * **Feedback** (`feedback/<instance>/<id>`) is copied into every other
//!   instance's feedback log; the holder of the incident sends an
//!   acknowledgement's `acknowledge` to its receivers.
//! * **Holdings** (`holding/<instance>`): each instance's open incidents
//!   with their partitions, published when they change and every
//!   [`HEARTBEAT`]. The admin API uses
//!   them to accept an action for an incident held elsewhere and to show who
//!   holds what ([`crate::incident::peers`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::internal::Ordered;
use super::{ScaledError, ScaledMetrics, Topics};
use crate::alert::Labels;
use crate::config::KafkaSourceConfig;
use crate::incident::outbox::feedback::{Feedback, Label, LabelledAlert};
use crate::incident::outbox::Outbox;
use crate::incident::peers::{Holding, Peers};
use crate::incident::silence::Silence;
use crate::incident::IncidentManager;

/// How often local actions are published and close requests applied.
const EVERY: Duration = Duration::from_millis(250);
/// A sent record not read back from the topic after this long is sent again.
const RESEND: Duration = Duration::from_secs(10);
/// An instance publishes its holding again after this long even when it did
/// not change (its `at` tells a running instance from one that stopped).
const HEARTBEAT: Duration = Duration::from_secs(60);
/// At start, how long the stage waits to have read the topic to its end
/// before it publishes and applies close requests anyway.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// The record format's version (a record of another version is skipped and
/// counted as unreadable).
const VERSION: u32 = 1;

/// One record of the controls topic (JSON, keyed as the module docs say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    /// [`VERSION`].
    v: u32,
    #[serde(flatten)]
    control: Control,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Control {
    /// A silence as it stands on some instance.
    Silence { silence: Silence },
    /// An operator's close request made on instance `origin` (its request `id`).
    Close {
        origin: String,
        id: i64,
        incident: String,
        reason: String,
        by: String,
        requested_ms: i64,
        /// The incident's partition when the requesting instance knew it;
        /// `None`: whichever instance holds the incident applies it.
        partition: Option<u32>,
    },
    /// The outcome of `origin`'s close request `id`, decided by `by_instance`.
    Closed {
        origin: String,
        id: i64,
        outcome: String,
        done_ms: i64,
        by_instance: String,
    },
    /// A feedback entry made on instance `origin` (its entry `id`).
    Feedback {
        origin: String,
        id: i64,
        entry: FeedbackEntry,
    },
    /// An instance's open incidents.
    Holding { holding: Holding },
}

/// A feedback entry on the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FeedbackEntry {
    incident: String,
    kind: String,
    label: Option<Label>,
    note: String,
    by: String,
    at_ms: i64,
    labels: Labels,
    alerts: Vec<LabelledAlert>,
}

impl FeedbackEntry {
    fn of(f: &Feedback) -> Self {
        FeedbackEntry {
            incident: f.incident.clone(),
            kind: f.kind.clone(),
            label: f.label,
            note: f.note.clone(),
            by: f.by.clone(),
            at_ms: f.at_ms,
            labels: f.labels.clone(),
            alerts: f.alerts.clone(),
        }
    }

    fn to_feedback(&self) -> Feedback {
        Feedback {
            id: 0,
            incident: self.incident.clone(),
            kind: self.kind.clone(),
            label: self.label,
            note: self.note.clone(),
            by: self.by.clone(),
            at_ms: self.at_ms,
            labels: self.labels.clone(),
            alerts: self.alerts.clone(),
        }
    }
}

fn encode(control: Control) -> Vec<u8> {
    // A record is plain data: serialising it cannot fail.
    serde_json::to_vec(&Record {
        v: VERSION,
        control,
    })
    .unwrap_or_default()
}

/// The stage's metrics (`crisiswatch_scale_controls_*`).
#[derive(Debug)]
struct ControlsMetrics {
    /// Records sent to the topic, by kind.
    published: IntCounterVec,
    /// Records of other instances (and outcomes) applied here, by kind.
    applied: IntCounterVec,
    /// Local actions not yet read back from the topic.
    pending: IntGauge,
}

const KINDS: [&str; 5] = ["silence", "close", "outcome", "feedback", "holding"];

impl ControlsMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let published = IntCounterVec::new(
            Opts::new(
                "crisiswatch_scale_controls_published_total",
                "Records this instance sent to the controls topic, by kind (silence, close, outcome, feedback, holding).",
            ),
            &["kind"],
        )?;
        let applied = IntCounterVec::new(
            Opts::new(
                "crisiswatch_scale_controls_applied_total",
                "Controls-topic records that changed this instance, by kind (silence, close: applied as the incident's owner, outcome: a close request of this instance answered, feedback).",
            ),
            &["kind"],
        )?;
        let pending = IntGauge::new(
            "crisiswatch_scale_controls_pending",
            "Operator actions of this instance not yet read back from the controls topic.",
        )?;
        r.register(Box::new(published.clone()))?;
        r.register(Box::new(applied.clone()))?;
        r.register(Box::new(pending.clone()))?;
        for k in KINDS {
            published.with_label_values(&[k]);
            applied.with_label_values(&[k]);
        }
        Ok(ControlsMetrics {
            published,
            applied,
            pending,
        })
    }
}

/// A close request read from the topic, not yet answered.
#[derive(Debug, Clone)]
struct OpenRequest {
    origin: String,
    id: i64,
    incident: String,
    reason: String,
    by: String,
    partition: Option<u32>,
}

/// The stage's state.
struct Controls {
    topic: String,
    listen: String,
    partitions: u32,
    manager: Arc<IncidentManager>,
    outbox: Arc<Outbox>,
    peers: Arc<Peers>,
    producer: Arc<Ordered>,
    scaled: Arc<ScaledMetrics>,
    metrics: ControlsMetrics,
    /// The latest record read per key.
    seen: HashMap<String, Control>,
    /// Records sent and not yet read back: when they were sent.
    sent: HashMap<String, Instant>,
    /// Close requests read without an outcome, by key.
    requests: BTreeMap<String, OpenRequest>,
    /// Keys of the close requests whose outcome was read.
    answered: BTreeSet<String>,
    /// Whether the topic was read to its end once (close requests wait for it).
    caught_up: bool,
}

impl Controls {
    fn me(&self) -> &str {
        self.peers.me()
    }

    /// A record read from the topic.
    fn read(&mut self, key: &str, payload: &[u8]) {
        let record: Record = match serde_json::from_slice(payload) {
            Ok(r) if r_version_ok(&r) => r,
            Ok(_) | Err(_) => {
                self.scaled
                    .unreadable
                    .with_label_values(&["controls"])
                    .inc();
                tracing::warn!(key, "Unreadable record on the controls topic: skipped.");
                return;
            }
        };
        self.sent.remove(key);
        if let Err(e) = self.apply(key, &record.control) {
            tracing::warn!(key, error = %e, "Cannot apply a controls-topic record; it is applied again at the next start.");
        }
        self.seen.insert(key.to_string(), record.control);
    }

    fn apply(&mut self, key: &str, c: &Control) -> Result<(), ScaledError> {
        match c {
            Control::Silence { silence } => {
                if self.outbox.merge_silence(silence).map_err(inc)? {
                    self.metrics.applied.with_label_values(&["silence"]).inc();
                    tracing::info!(id = %silence.id, "Silence taken from the controls topic.");
                }
            }
            Control::Close {
                origin,
                id,
                incident,
                reason,
                by,
                partition,
                ..
            } => {
                if !self.answered.contains(key) {
                    self.requests.insert(
                        key.to_string(),
                        OpenRequest {
                            origin: origin.clone(),
                            id: *id,
                            incident: incident.clone(),
                            reason: reason.clone(),
                            by: by.clone(),
                            partition: *partition,
                        },
                    );
                }
            }
            Control::Closed {
                origin,
                id,
                outcome,
                done_ms,
                by_instance,
            } => {
                let request = format!("close/{origin}/{id}");
                self.requests.remove(&request);
                self.answered.insert(request);
                if origin == self.me()
                    && self
                        .outbox
                        .finish_close_if_pending(*id, outcome, *done_ms)
                        .map_err(inc)?
                {
                    self.metrics.applied.with_label_values(&["outcome"]).inc();
                    tracing::info!(request = id, outcome = %outcome, by_instance = %by_instance, "Close request answered by the incident's owner.");
                }
            }
            Control::Feedback { origin, entry, .. } => {
                if origin != self.me() {
                    let mut f = entry.to_feedback();
                    if f.alerts.is_empty() {
                        // Made where the incident was not held: this
                        // instance may know its alerts.
                        if let Some(k) = self.outbox.known_incident(&f.incident).map_err(inc)? {
                            f.labels = k.subject.labels;
                            f.alerts = k.subject.alerts;
                        }
                    }
                    if self.outbox.add_shared_feedback(key, &f).map_err(inc)? {
                        self.metrics.applied.with_label_values(&["feedback"]).inc();
                    }
                }
            }
            Control::Holding { holding } => self.peers.set(holding.clone()),
        }
        Ok(())
    }

    /// Sends `control` under `key` unless the topic has it or it was sent
    /// less than [`RESEND`] ago; `true` when the topic does not have it yet.
    fn offer(&mut self, key: String, kind: &str, control: Control, same: bool) -> bool {
        if same {
            return false;
        }
        if self.sent.get(&key).is_some_and(|t| t.elapsed() < RESEND) {
            return true;
        }
        self.producer
            .send(&self.topic, 0, key.as_bytes(), &encode(control));
        self.metrics.published.with_label_values(&[kind]).inc();
        self.sent.insert(key, Instant::now());
        true
    }

    /// Sends every local action the topic does not have yet.
    fn publish(&mut self) -> Result<(), ScaledError> {
        let me = self.me().to_string();
        let mut pending = 0;
        for s in self.outbox.silences().map_err(inc)? {
            let key = format!("silence/{}", s.id);
            let same = matches!(self.seen.get(&key), Some(Control::Silence { silence }) if silence.ends_at <= s.ends_at);
            pending +=
                usize::from(self.offer(key, "silence", Control::Silence { silence: s }, same));
        }
        let holdings = self.manager.holdings(self.partitions);
        for r in self.outbox.pending_close_requests().map_err(inc)? {
            let key = format!("close/{me}/{}", r.id);
            let same = self.seen.contains_key(&key);
            let partition = holdings
                .iter()
                .find(|h| h.key == r.incident)
                .map(|h| h.partition)
                .or_else(|| self.peers.holder(&r.incident).map(|(_, h)| h.partition));
            let c = Control::Close {
                origin: me.clone(),
                id: r.id,
                incident: r.incident,
                reason: r.reason,
                by: r.requested_by,
                requested_ms: r.requested_ms,
                partition,
            };
            pending += usize::from(self.offer(key, "close", c, same));
        }
        for (key, body) in self.outbox.control_outcomes().map_err(inc)? {
            if self.seen.contains_key(&key) {
                continue;
            }
            match serde_json::from_str::<Record>(&body) {
                Ok(r) => pending += usize::from(self.offer(key, "outcome", r.control, false)),
                Err(e) => tracing::warn!(key, error = %e, "Unreadable stored close outcome."),
            }
        }
        for f in self.outbox.own_feedback().map_err(inc)? {
            let key = format!("feedback/{me}/{}", f.id);
            let same = self.seen.contains_key(&key);
            let c = Control::Feedback {
                origin: me.clone(),
                id: f.id,
                entry: FeedbackEntry::of(&f),
            };
            pending += usize::from(self.offer(key, "feedback", c, same));
        }
        let key = format!("holding/{me}");
        let now = chrono::Utc::now().timestamp_millis();
        let same = matches!(self.seen.get(&key), Some(Control::Holding { holding })
            if holding.incidents == holdings && holding.listen == self.listen
                && now - holding.at_ms < HEARTBEAT.as_millis() as i64);
        let c = Control::Holding {
            holding: Holding {
                instance: me.clone(),
                listen: self.listen.clone(),
                at_ms: now,
                incidents: holdings,
            },
        };
        self.offer(key, "holding", c, same);
        self.metrics.pending.set(pending as i64);
        Ok(())
    }

    /// Applies the close requests whose incident partition this instance
    /// owns (or, without a partition, whose incident it holds).
    fn apply_requests(&mut self) -> Result<(), ScaledError> {
        let due: Vec<(String, OpenRequest)> = self
            .requests
            .iter()
            .filter(|(_, r)| match r.partition {
                Some(p) => self.manager.owns_partition(p) == Some(true),
                None => self
                    .manager
                    .open_incidents()
                    .iter()
                    .any(|i| i.key == r.incident),
            })
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, r) in due {
            let outcome_key = format!("closed/{}/{}", r.origin, r.id);
            if self.outbox.has_control_outcome(&outcome_key).map_err(inc)? {
                continue;
            }
            let me = self.me().to_string();
            let done_ms = chrono::Utc::now().timestamp_millis();
            let (origin, id) = (r.origin.clone(), r.id);
            let outcome = self.manager.close_shared(
                &r.incident,
                &r.reason,
                &r.by,
                &outcome_key,
                |outcome| {
                    String::from_utf8(encode(Control::Closed {
                        origin,
                        id,
                        outcome: outcome.to_string(),
                        done_ms,
                        by_instance: me,
                    }))
                    .unwrap_or_default()
                },
            )?;
            self.metrics.applied.with_label_values(&["close"]).inc();
            tracing::info!(incident = %r.incident, request = %key, outcome, "Close request of the controls topic applied here (this instance owns the incident).");
        }
        Ok(())
    }
}

fn r_version_ok(r: &Record) -> bool {
    r.v == VERSION
}

fn inc(e: crate::incident::outbox::OutboxError) -> ScaledError {
    ScaledError::Incident(e.into())
}

/// The topic's reader: partition 0 from the beginning, no consumer group.
fn reader(k: &KafkaSourceConfig, topic: &str) -> Result<BaseConsumer, ScaledError> {
    let mut c = ClientConfig::new();
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &k.brokers)
        // A group id librdkafka needs for `assign`; nothing is ever committed.
        .set("group.id", format!("{}.controls-reader", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = c
        .create()
        .map_err(|e| ScaledError::Client("controls reader", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| ScaledError::Client("controls reader", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| ScaledError::Client("controls reader", e))?;
    Ok(consumer)
}

/// What the stage needs from the service.
pub(crate) struct Setup<'a> {
    pub(crate) k: &'a KafkaSourceConfig,
    pub(crate) topics: &'a Topics,
    pub(crate) listen: String,
    pub(crate) manager: Arc<IncidentManager>,
    pub(crate) state: &'a crate::http::AppState,
    pub(crate) producer: Arc<Ordered>,
    pub(crate) scaled: Arc<ScaledMetrics>,
}

/// Starts the stage on its own thread; it runs until `stop`.
pub(crate) fn start(
    s: Setup<'_>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<(), ScaledError>>, ScaledError> {
    let outbox = Arc::clone(s.manager.outbox());
    let me = outbox.instance_id().map_err(inc)?;
    let peers = Arc::new(Peers::new(me.clone()));
    let _ = s.state.peers.set(Arc::clone(&peers));
    let metrics = ControlsMetrics::register(s.state.metrics.registry())
        .map_err(|e| ScaledError::Thread(format!("controls metrics: {e}")))?;
    let consumer = reader(s.k, &s.topics.controls)?;
    tracing::info!(instance = %me, topic = %s.topics.controls, "Operator actions shared through the controls topic.");
    let mut st = Controls {
        topic: s.topics.controls.clone(),
        listen: s.listen,
        partitions: s.topics.incident_partitions,
        manager: s.manager,
        outbox,
        peers,
        producer: s.producer,
        scaled: s.scaled,
        metrics,
        seen: HashMap::new(),
        sent: HashMap::new(),
        requests: BTreeMap::new(),
        answered: BTreeSet::new(),
        caught_up: false,
    };
    super::spawn("crisiswatch-controls", move || {
        let started = Instant::now();
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    st.read(&key, m.payload().unwrap_or_default());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    if !st.caught_up {
                        tracing::info!(records = st.seen.len(), "Controls topic read to its end.");
                    }
                    st.caught_up = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "Controls topic consumer error."),
                None => {}
            }
            if !st.caught_up && started.elapsed() >= CATCH_UP_WAIT {
                tracing::warn!("The controls topic did not report its end in time; applying close requests with what was read.");
                st.caught_up = true;
            }
            st.producer.poll();
            // What the topic already has is known once it was read to its end.
            if st.caught_up && last.elapsed() >= EVERY {
                last = Instant::now();
                if let Err(e) = st.publish() {
                    tracing::warn!(error = %e, "Cannot publish operator actions; retrying.");
                }
                st.apply_requests()?;
            }
        }
        let _ = st.publish();
        if let Err(e) = st.producer.flush(Duration::from_secs(5)) {
            tracing::debug!(error = %e, "Controls records not confirmed at the stop; they are sent again at the next start.");
        }
        Ok(())
    })
}
