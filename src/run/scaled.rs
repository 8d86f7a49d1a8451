//! `crisiswatch run` with `[sources.kafka.scale_out]`: several instances in
//! one consumer group share the engine's state shards through internal
//! Kafka topics and fire exactly the incidents one instance fires
//! (`src/repartition.rs` is the protocol and its property tests; this is
//! its wiring; README "Running several instances").
//!
//! ```text
//!  input topics ─► split stage ─► <prefix>.shards ─► shard owners ─► <prefix>.transitions ─► incident owners ─► outbox ─► receivers
//!  (group G)       (split.rs)      P partitions      (group G.owners,  Q partitions          (group G.incidents,
//!                                                     owners.rs)                              incidents.rs)
//!                                   <prefix>.shards-changelog ◄─┘      <prefix>.incidents-changelog ◄─┘
//! ```
//!
//! Every instance runs the three stages; Kafka's consumer groups decide who
//! reads which input partition, owns which shard partition (its windows and
//! alerts) and which incident partition (its incidents). A partition that
//! moves (an instance joins, leaves or dies) is restored by its new owner
//! from the partition's latest checkpoint in the changelog topic, and read
//! from the offset that checkpoint covers: no shared filesystem. What the
//! new owner emits again is dropped downstream (transitions behind an
//! incident partition's release point; the outbox's applied marks).
//! Operator actions (silences, close requests, feedback) reach every
//! instance through `<prefix>.controls` (`controls.rs`).

mod controls;
mod incidents;
pub(crate) mod inspect;
mod internal;
mod owners;
mod split;
mod topics;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tokio::sync::{mpsc, watch};

use super::{sink::TransitionSink, RunError, RunOptions, RunSummary};
use crate::config::Config;
use crate::dir_lock;
use crate::engine::EngineError;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::repartition::Splitter;
use crate::source::context::{ArrivalDecode, Shared};
use crate::source::dlq::DeadLetters;
use crate::source::health::Health;
use crate::source::metrics::SourceMetrics;
use crate::source::offsets::OffsetTracker;
use crate::source::{kafka, SourceError};

pub(crate) use topics::Topics;

/// Why a scaled instance does not reload (the reply to SIGHUP and
/// `POST /api/v1/reload`).
const SCALED_RELOAD: &str = "with [sources.kafka.scale_out] the instances of a group must run one configuration: stop every instance, then start them all with the new file (the configuration file was not re-read)";

/// How often the split stage reports idle sources and the stages are checked.
const TICK: Duration = Duration::from_millis(500);

/// Errors of the scaled service.
#[derive(Debug, thiserror::Error)]
pub enum ScaledError {
    /// No `[sources.kafka]`.
    #[error("no Kafka source configured: add a [sources.kafka] section")]
    NotConfigured,
    /// A Kafka client failed.
    #[error("Kafka {0} failed: {1}")]
    Client(&'static str, #[source] rdkafka::error::KafkaError),
    /// An internal topic is missing, cannot be made, or does not fit.
    #[error("{0}")]
    Topic(String),
    /// A partition checkpoint cannot be written or read.
    #[error("partition checkpoint: {0}")]
    Checkpoint(String),
    /// Internal messages the broker refused for good.
    #[error("{0} internal messages could not be written; stopping so that the partitions' next owners write them again")]
    Lost(u64),
    /// The rules could not be compiled.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The incident outbox failed.
    #[error(transparent)]
    Incident(#[from] crate::incident::IncidentError),
    /// A stage thread could not start or panicked.
    #[error("stage thread: {0}")]
    Thread(String),
}

/// The scaled service's own metrics.
#[derive(Debug)]
pub(crate) struct ScaledMetrics {
    /// Internal partitions this instance owns, by kind (`shard`, `incident`).
    pub(crate) owned: IntGaugeVec,
    /// Seconds to restore a partition from its changelog, by kind.
    pub(crate) restore_seconds: HistogramVec,
    /// Partition checkpoints written, by kind.
    pub(crate) checkpoints: IntCounterVec,
    /// Size of a partition checkpoint, by kind.
    pub(crate) checkpoint_bytes: HistogramVec,
    /// Internal messages that could not be read, by topic (`shards`, `transitions`).
    pub(crate) unreadable: IntCounterVec,
    /// Messages written to the shard topic.
    pub(crate) shard_messages: IntCounter,
    /// Shard-topic messages the shard owners of this instance read.
    pub(crate) owner_messages: IntCounter,
    /// Alert transitions written to the transition topic.
    pub(crate) transitions: IntCounter,
    /// Events the shard owners hold for their clocks.
    pub(crate) held: IntGauge,
    /// Transitions the incident owners hold for the shard owners' release points.
    pub(crate) held_transitions: IntGauge,
    /// Transitions read again after a partition moved (dropped), since the start.
    pub(crate) resent: IntGauge,
    /// Events forwarded again after an instance died (dropped by the shard
    /// owners of this instance, as their checkpoints count them).
    pub(crate) resent_events: IntGauge,
    /// 1 while a shard partition this instance owns gets clock messages
    /// written under another configuration.
    pub(crate) config_mismatch: IntGauge,
    /// Messages not yet read, per owned internal partition, by kind.
    pub(crate) lag: IntGaugeVec,
}

impl ScaledMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            c: C,
        ) -> Result<C, prometheus::Error> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let kinds = ["shard", "incident"];
        let buckets = vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let bytes = vec![1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
        let m = ScaledMetrics {
            owned: reg(r, IntGaugeVec::new(Opts::new("crisiswatch_scale_owned_partitions", "Internal partitions this instance owns, by kind (shard: windows and alerts; incident: incidents)."), &["kind"])?)?,
            restore_seconds: reg(r, HistogramVec::new(HistogramOpts::new("crisiswatch_scale_restore_seconds", "Seconds to restore an internal partition from its changelog when it is assigned, by kind.").buckets(buckets), &["kind"])?)?,
            checkpoints: reg(r, IntCounterVec::new(Opts::new("crisiswatch_scale_checkpoints_total", "Internal partition checkpoints written to the changelog topics, by kind."), &["kind"])?)?,
            checkpoint_bytes: reg(r, HistogramVec::new(HistogramOpts::new("crisiswatch_scale_checkpoint_bytes", "Size of an internal partition checkpoint, by kind.").buckets(bytes), &["kind"])?)?,
            unreadable: reg(r, IntCounterVec::new(Opts::new("crisiswatch_scale_unreadable_messages_total", "Internal messages that could not be read (another crisiswatch version?), by topic."), &["topic"])?)?,
            shard_messages: reg(r, IntCounter::new("crisiswatch_scale_shard_messages_total", "Events written to the shard topic (one per shard partition an event's slices live in).")?)?,
            owner_messages: reg(r, IntCounter::new("crisiswatch_scale_owner_messages_total", "Shard-topic messages read by the shard owners of this instance.")?)?,
            transitions: reg(r, IntCounter::new("crisiswatch_scale_transitions_total", "Alert transitions written to the transition topic.")?)?,
            held: reg(r, IntGauge::new("crisiswatch_scale_held_events", "Events the shard owners of this instance hold until every input partition has passed them.")?)?,
            held_transitions: reg(r, IntGauge::new("crisiswatch_scale_held_transitions", "Transitions the incident owners of this instance hold until every shard owner has passed them.")?)?,
            resent: reg(r, IntGauge::new("crisiswatch_scale_resent_transitions", "Transitions read again after a shard partition moved, dropped (since the start).")?)?,
            resent_events: reg(r, IntGauge::new("crisiswatch_scale_resent_events", "Events a split stage forwarded again after an instance died (re-read from its last commit), dropped by this instance's shard owners (their checkpoints carry the count).")?)?,
            lag: reg(r, IntGaugeVec::new(Opts::new("crisiswatch_scale_lag_messages", "Messages of an owned internal partition not yet read (high watermark minus position, every 5 s), by kind (shard, incident) and partition."), &["kind", "partition"])?)?,
            config_mismatch: reg(r, IntGauge::new("crisiswatch_scale_config_mismatch", "1 while a shard partition this instance owns is fed by an instance running another configuration (its clock waits; /readyz says which).")?)?,
        };
        for k in kinds {
            m.owned.with_label_values(&[k]);
            m.checkpoints.with_label_values(&[k]);
        }
        for t in ["shards", "transitions"] {
            m.unreadable.with_label_values(&[t]);
        }
        Ok(m)
    }
}

/// A stage thread.
fn spawn(
    name: &str,
    f: impl FnOnce() -> Result<(), ScaledError> + Send + 'static,
) -> Result<JoinHandle<Result<(), ScaledError>>, ScaledError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| ScaledError::Thread(e.to_string()))
}

fn join(h: JoinHandle<Result<(), ScaledError>>) -> Result<(), ScaledError> {
    h.join()
        .map_err(|_| ScaledError::Thread("a stage thread panicked".into()))?
}

/// Of `shutdown_timeout`, what the stop keeps for the incident partitions'
/// last checkpoints after the drain.
const HAND_OVER_ROOM: Duration = Duration::from_secs(5);

/// Runs one instance of a scaled group until `shutdown` turns true (or a
/// stage fails).
pub(crate) async fn run(
    cfg: &Config,
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let k = cfg
        .sources
        .kafka
        .clone()
        .ok_or(SourceError::NotConfigured)?;
    let so = k.scale_out.clone().unwrap_or_default();
    if opts.applied_log.is_some() {
        tracing::warn!("--applied-log is not written with sources.kafka.scale_out.");
    }
    let data_dir = std::path::Path::new(&cfg.incidents.data_dir);
    let _lock = dir_lock::DirLock::acquire(data_dir)?;
    let metrics = match opts.metrics {
        Some(m) => m,
        None => Metrics::new(cfg.server.max_series_per_rule)?,
    };
    let sm = Arc::new(
        ScaledMetrics::register(metrics.registry()).map_err(|e| RunError::Reload(e.to_string()))?,
    );
    let topic_names: Vec<String> = k.topics.iter().map(|t| t.name.clone()).collect();
    let shared = Arc::new(Shared {
        metrics: SourceMetrics::register(metrics.registry(), &topic_names)?,
        topics: topic_names,
        tracker: std::sync::Mutex::new(OffsetTracker::new()),
        health: Health::new(Instant::now())
            .with_statistics_interval(crate::source::kafka::statistics_interval_ms(&k)),
        stopping: AtomicBool::new(false),
        arrival: ArrivalDecode::new(
            cfg.engine.decode_limits(),
            k.topics.iter().map(|t| t.default_type.clone()).collect(),
            &cfg.rules,
        ),
        delivered: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        backlog: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        backlog_hold: crate::source::backlog_hold(&k),
    });
    let state = AppState::new(Arc::clone(&metrics));
    // The admin token and read access, for operator actions. No reload: the
    // instances of a group must run one configuration (README "One
    // configuration per group"), so a reload request is refused, and a
    // SIGHUP no longer ends the process.
    crate::admin::set_access(
        &state.admin,
        cfg,
        opts.config_path.clone(),
        &opts.config_text,
    );
    crate::admin::refuse_reloads(&state.admin, SCALED_RELOAD);
    let (stop_http, stop_http_rx) = watch::channel(false);
    let server = if cfg.server.listen.is_empty() {
        None
    } else {
        let (addr, fut) = http::bind(&cfg.server.listen, Arc::clone(&state), stop_http_rx).await?;
        crate::say!("Serving /metrics and /readyz on http://{addr}");
        Some(tokio::spawn(fut))
    };
    let result = serve(cfg, &k, &so, &shared, &state, &sm, &mut shutdown).await;
    state.ready.store(false, Ordering::Relaxed);
    let _ = stop_http.send(true);
    if let Some(s) = server {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), s).await {
            tracing::warn!(error = %e, "HTTP server ended with an error.");
        }
    }
    result
}

/// Exports whether an owned shard partition is fed by an instance with
/// another configuration (see `repartition::fingerprint`), and says so on
/// `/readyz` and in the log (when it starts and when it ends).
fn check_config(
    owners: &Mutex<owners::Owners>,
    inputs: &[String],
    state: &AppState,
    sm: &ScaledMetrics,
) {
    // The owners' thread holds the lock while it restores the shard
    // partitions assigned to it (seconds: it reads their changelogs inside
    // its rebalance callback). Waiting for it here stalled the split stage:
    // the consumer handed nothing over meanwhile, and the input partitions
    // assigned at the same time were taken for idle at the first tick after
    // it. The check waits for a later tick instead.
    let foreign = match owners.try_lock() {
        Ok(o) => o.foreign(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().foreign(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let was = state.admin.scale_error();
    let now = foreign.map(|(p, s, theirs, mine)| {
        format!(
            "shard partition {p} is fed from input partition {}[{}] by an instance running another configuration \
             (fingerprint {theirs:016x}, this instance {mine:016x}); its clock waits. Run one configuration \
             (rules, engine, routes, topics, scale_out partitions) on every instance of the group",
            inputs.get(usize::from(s.topic)).map_or("?", String::as_str),
            s.partition
        )
    });
    match (&was, &now) {
        (None, Some(e)) => tracing::error!("{e}"),
        (Some(_), None) => {
            tracing::info!("Every instance feeding this one runs its configuration again.")
        }
        _ => {}
    }
    sm.config_mismatch.set(i64::from(now.is_some()));
    if was != now {
        state.admin.set_scale_error(now);
    }
}

/// The three stages, from start to stop.
async fn serve(
    cfg: &Config,
    k: &crate::config::KafkaSourceConfig,
    so: &crate::config::ScaleOutConfig,
    shared: &Arc<Shared>,
    state: &Arc<AppState>,
    sm: &Arc<ScaledMetrics>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let topics = Topics::new(k, so);
    topics.ensure(k, so).await.map_err(RunError::Scaled)?;
    let kc = k.clone();
    let sources = tokio::task::spawn_blocking(move || topics::input_sources(&kc))
        .await?
        .map_err(RunError::Scaled)?;
    tracing::info!(
        shards_topic = %topics.shards,
        shard_partitions = topics.shard_partitions,
        incident_partitions = topics.incident_partitions,
        input_partitions = sources.len(),
        "Scale-out: sharing the state shards through internal topics."
    );
    let producer = Arc::new(internal::Ordered::new(k).map_err(RunError::Scaled)?);
    let sink = TransitionSink::open(cfg, state)?;
    let manager = Arc::clone(sink.manager());
    // After a stop of this process, deliveries wait until the group has
    // confirmed its incident partitions (`incident::fence`).
    manager
        .outbox()
        .set_fence(crate::incident::fence::Fence::start(k.session_timeout_ms()));
    let cfg_arc = Arc::new(cfg.clone());
    let stop = Arc::new(AtomicBool::new(false));

    let owners = Arc::new(Mutex::new(
        owners::Owners::new(
            Arc::clone(&cfg_arc),
            topics.clone(),
            sources,
            Arc::clone(&producer),
            Arc::clone(sm),
            Arc::clone(&manager),
            Arc::clone(state),
        )
        .map_err(RunError::Scaled)?,
    ));
    let owners_consumer = owners::consumer(cfg, &topics, Arc::clone(&owners), sm.lag.clone())
        .map_err(RunError::Scaled)?;
    let interval = so.checkpoint_interval.0;
    let owners_thread = {
        let (st, stop) = (Arc::clone(&owners), Arc::clone(&stop));
        spawn("crisiswatch-owners", move || {
            internal::drive(st, owners_consumer, interval, stop)
        })
        .map_err(RunError::Scaled)?
    };
    let parts = Arc::new(Mutex::new(
        incidents::IncidentParts::new(
            k.clone(),
            topics.clone(),
            Arc::clone(&manager),
            Arc::clone(&producer),
            Arc::clone(sm),
        )
        .map_err(RunError::Scaled)?,
    ));
    let incidents_consumer = incidents::consumer(k, &topics, Arc::clone(&parts), sm.lag.clone())
        .map_err(RunError::Scaled)?;
    // The incident owners stop last, after the deliveries drained: what is
    // still queued then goes with their partitions to the next owners.
    let stop_incidents = Arc::new(AtomicBool::new(false));
    let incidents_thread = {
        let (st, stop) = (Arc::clone(&parts), Arc::clone(&stop_incidents));
        spawn("crisiswatch-incidents", move || {
            internal::drive(st, incidents_consumer, interval, stop)
        })
        .map_err(RunError::Scaled)?
    };

    let controls_thread = controls::start(
        controls::Setup {
            k,
            topics: &topics,
            listen: cfg.server.listen.clone(),
            manager: Arc::clone(&manager),
            state,
            producer: Arc::clone(&producer),
            scaled: Arc::clone(sm),
            retention: cfg.incidents.retention.0,
            close_wait: so.close_wait.0,
        },
        Arc::clone(&stop),
    )
    .map_err(RunError::Scaled)?;

    let splitter = Splitter::new(cfg, cfg.engine.shards, topics.shard_partitions)?;
    let dlq = DeadLetters::new(k, Arc::clone(shared))?;
    let mut stage = split::SplitStage::new(
        splitter,
        Arc::clone(&producer),
        topics.clone(),
        Arc::clone(shared),
        dlq,
        k.topics.iter().map(|t| t.default_type.clone()).collect(),
        k.idle_partition_timeout.0,
        cfg.engine.idle_timeout.0,
        (
            k.shutdown_timeout.0 / 2,
            // Commits follow the shard-topic writes every commit_interval: a
            // re-read goes back at most two of them when one failed.
            2 * k.commit_interval.0 + Duration::from_secs(30),
        ),
        (
            Arc::clone(sm),
            Arc::clone(&state.metrics),
            k.topics
                .iter()
                .map(|_| crate::metrics::Recorder::new(cfg))
                .collect(),
        ),
    );
    let (tx, mut rx) = mpsc::channel(k.channel_capacity);
    let source = kafka::start(k, Arc::clone(shared), tx)?;
    state.ready.store(true, Ordering::Relaxed);

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed: Option<RunError> = None;
    loop {
        tokio::select! {
            _ = super::signalled(shutdown) => break,
            msg = rx.recv() => match msg {
                Some(m) => if let Err(e) = stage.handle(m).await {
                    failed = Some(RunError::Scaled(e));
                    break;
                },
                None => break,
            },
            _ = tick.tick() => {
                stage.tick();
                if let Err(e) = stage.settle_due().await {
                    failed = Some(RunError::Scaled(e));
                    break;
                }
                check_config(&owners, &shared.topics, state, sm);
                // Close requests go through the controls topic (controls.rs).
                if let Err(e) = manager.apply_acks() {
                    tracing::warn!(error = %e, "Cannot apply acknowledgements.");
                }
                if owners_thread.is_finished() || incidents_thread.is_finished() || controls_thread.is_finished() {
                    break;
                }
            }
        }
    }
    tracing::info!("Stopping: splitting what is in flight, checkpointing the owned partitions.");
    let stopping = std::time::Instant::now();
    source.stop();
    // What the consumer thread handed over before it stopped is split and
    // committed (its final commit waits for the drain).
    while let Some(m) = rx.recv().await {
        if failed.is_none() {
            if let Err(e) = stage.handle(m).await {
                failed = Some(RunError::Scaled(e));
            }
        } else if let crate::source::SourceMsg::Drain { ack, .. } = m {
            let _ = ack.send(());
        }
    }
    if failed.is_none() {
        if let Err(e) = stage.settle().await {
            failed = Some(RunError::Scaled(e));
        }
    }
    // The consumer's close is bounded: it can block for ever in librdkafka
    // (a rebalance call in the close's revoke, librdkafka #4041/#4884), and
    // a stop waiting for it kept an instance running, holding its
    // partitions, for minutes. Its offsets were committed before the close;
    // a thread still closing at the exit is ended with the process.
    let close_bound = k.shutdown_timeout.0.saturating_sub(stopping.elapsed()) / 2;
    let joined = match tokio::time::timeout(
        close_bound,
        tokio::task::spawn_blocking(move || source.join()),
    )
    .await
    {
        Ok(j) => j?,
        Err(_) => {
            tracing::error!(
                bound_ms = u64::try_from(close_bound.as_millis()).unwrap_or(u64::MAX),
                "The Kafka consumer did not close in time (librdkafka); stopping without it: its offsets were committed, the group sees this member leave when its session times out."
            );
            Ok(())
        }
    };
    stop.store(true, Ordering::Relaxed);
    let o = tokio::task::spawn_blocking(move || join(owners_thread)).await?;
    // Within `shutdown_timeout` from the stop's start, with room left for
    // the hand-over after the drain (a supervisor's kill at the deadline
    // would make it a crash).
    let left = k.shutdown_timeout.0.saturating_sub(
        stopping.elapsed() + Duration::from_secs(1) + crate::incident::STOP_GRACE + HAND_OVER_ROOM,
    );
    // Delivered while this instance still owns the incident partitions; then
    // their last checkpoints hand what is left to the next owners.
    sink.shutdown(cfg.incidents.drain_timeout.0.min(left)).await;
    stop_incidents.store(true, Ordering::Relaxed);
    let i = tokio::task::spawn_blocking(move || join(incidents_thread)).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    joined?;
    o.map_err(RunError::Scaled)?;
    i.map_err(RunError::Scaled)?;
    tokio::task::spawn_blocking(move || join(controls_thread))
        .await?
        .map_err(RunError::Scaled)?;
    let submitted = internal::lock(&parts).submitted;
    // What the shard owners published (each event once per shard partition
    // it reached) and the split stage found invalid.
    let mut stats = state.metrics.published_outcomes();
    for t in &shared.topics {
        for r in crate::event::InvalidReason::ALL {
            stats.invalid[r.index()] += shared
                .metrics
                .invalid
                .with_label_values(&[t.as_str(), r.as_str()])
                .get();
        }
    }
    Ok(RunSummary {
        stats,
        transitions: submitted,
        written: Some(sm.transitions.get()),
    })
}
