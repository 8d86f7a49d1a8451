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
//!   done with it, so `GET /api/v1/incidents/close/{id}` shows it there. A
//!   request published without a partition (nobody named the incident: it
//!   resolved meanwhile) is applied by whichever instance holds it; when no
//!   running instance's holding names it for `scale_out.close_wait`, the
//!   requesting instance answers `not_open` itself ([`tidy::Unheld`]).
//! * **Feedback** (`feedback/<instance>/<id>`) is copied into every other
//!   instance's feedback log; the holder of the incident sends an
//!   acknowledgement's `acknowledge` to its receivers.
//! * **Holdings** (`holding/<instance>`): each instance's open incidents
//!   with their partitions, published when they change and every
//!   [`HEARTBEAT`], with the admin listener's bound address. The admin API
//!   and the console use them to accept an action for an incident held
//!   elsewhere and to show who holds what ([`crate::incident::peers`]); they
//!   are also kept in the outbox for the CLI. A graceful stop writes a
//!   tombstone for the instance's holding, so the others stop listing its
//!   incidents at once (a crashed instance's list ages out after three
//!   minutes).
//! * **Tombstones** (a null value for a key) keep the compacted topic from
//!   growing by one record per action for ever: a silence that ended, and a
//!   close request, outcome, feedback entry or holding older than
//!   `incidents.retention` ([`tidy::due`]). A tombstone read back forgets the
//!   key and never brings anything back: a silence still active here ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::source::context::ReaderContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::internal::Ordered;
use super::{ScaledError, ScaledMetrics, Topics};
use crate::config::KafkaSourceConfig;
use crate::incident::peers::Peers;
use crate::incident::IncidentManager;

mod record;
mod stage;
mod tidy;

use record::ControlsMetrics;
use stage::Controls;

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
/// How often the records read are checked for tombstones to write (and
/// once the topic was read to its end).
const TIDY_EVERY: Duration = Duration::from_secs(60);

fn inc(e: crate::incident::outbox::OutboxError) -> ScaledError {
    ScaledError::Incident(e.into())
}

/// The topic's reader: partition 0 from the beginning, no consumer group.
fn reader(k: &KafkaSourceConfig, topic: &str) -> Result<BaseConsumer<ReaderContext>, ScaledError> {
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
    let consumer: BaseConsumer<ReaderContext> = c
        .create_with_context(ReaderContext("controls reader"))
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
    /// `incidents.retention`: older closes, outcomes and feedback entries
    /// are tombstoned.
    pub(crate) retention: Duration,
    /// `scale_out.close_wait`.
    pub(crate) close_wait: Duration,
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
    s.scaled.unreadable.with_label_values(&["controls"]);
    let consumer = reader(s.k, &s.topics.controls)?;
    tracing::info!(instance = %me, topic = %s.topics.controls, "Operator actions shared through the controls topic.");
    // The bound address (`server.listen` may say port 0).
    let listen = s.state.admin.listen().unwrap_or(s.listen);
    let mut st = Controls::new(stage::Parts {
        topic: s.topics.controls.clone(),
        listen,
        partitions: s.topics.incident_partitions,
        manager: s.manager,
        outbox,
        peers,
        producer: s.producer,
        scaled: s.scaled,
        metrics,
        retention: s.retention,
        close_wait: s.close_wait,
    });
    super::spawn("crisiswatch-controls", move || {
        let started = Instant::now();
        let mut last = Instant::now();
        let mut tidied: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    match m.payload() {
                        Some(p) => st.read(&key, p),
                        None => st.read_tombstone(&key),
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    if !st.caught_up {
                        tracing::info!(records = st.records(), "Controls topic read to its end.");
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
            st.poll();
            // What the topic already has is known once it was read to its end.
            if st.caught_up && last.elapsed() >= EVERY {
                last = Instant::now();
                if let Err(e) = st.publish() {
                    tracing::warn!(error = %e, "Cannot publish operator actions; retrying.");
                }
                st.apply_requests()?;
                if let Err(e) = st.answer_unheld() {
                    tracing::warn!(error = %e, "Cannot answer close requests nobody holds; retrying.");
                }
                if tidied.is_none_or(|t| t.elapsed() >= TIDY_EVERY) {
                    tidied = Some(Instant::now());
                    st.tidy();
                }
            }
        }
        let _ = st.publish();
        // The others stop listing this instance's incidents at once.
        st.leave();
        if let Err(e) = st.flush(Duration::from_secs(5)) {
            tracing::debug!(error = %e, "Controls records not confirmed at the stop; they are sent again at the next start.");
        }
        Ok(())
    })
}
