//! `crisiswatch run`: the live service on Kafka.
//!
//! ```text
//!  Kafka ─► consumer thread ─► channel (bounded) ─► engine stage ─► transitions ─► stdout / incidents
//!           (source::kafka)                         (run::pipeline)
//!                │                                        │
//!                └── /readyz (stall), consumer metrics ───┴── /metrics
//! ```
//!
//! The wiring: the configuration's `[sources.kafka]` becomes a consumer thread
//! ([`crate::source`]); its batches feed the same [`Engine`] that `replay` uses,
//! in the engine stage ([`pipeline`]); `/metrics` and `/readyz` are served on
//! `server.listen`. Delivery is at least once: an offset is committed only
//! after its event was applied (or its invalid message dead-lettered).
//!
//! **Shutdown** (SIGINT/SIGTERM, or the `shutdown` channel): the consumer stops
//! fetching, the engine stage applies what is in flight, the offsets are
//! committed synchronously, the consumer leaves its group, and the process
//! exits — all within `sources.kafka.shutdown_timeout`, or it gives up with an
//! error (what was not committed is read again after a restart).

pub mod applied_log;
pub mod durable;
pub mod feed;
pub mod pipeline;
pub mod progress;
pub(crate) mod reread;
pub mod scaled;
pub mod sink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{EngineError, EngineStats, ShardedEngine};
use crate::http::{self, AppState, HttpError};
use crate::metrics::{Metrics, MetricsError};
use crate::source::context::{ArrivalDecode, Shared};
use crate::source::dlq::DeadLetters;
use crate::source::health::Health;
use crate::source::metrics::SourceMetrics;
use crate::source::offsets::OffsetTracker;
use crate::source::{kafka, SourceError};
use applied_log::AppliedLog;
use pipeline::{Stage, StageParts, StageSettings};
use sink::TransitionSink;

/// How often the engine stage advances idle time, checks health and publishes metrics.
const TICK: Duration = Duration::from_millis(500);

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The rules could not be compiled.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The HTTP listener failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The Kafka source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The incident outbox failed: the batch's offsets are not committed.
    #[error(transparent)]
    Incident(#[from] crate::incident::IncidentError),
    /// The state store failed, or holds a checkpoint that cannot be loaded.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The engine snapshot could not be made or restored.
    #[error(transparent)]
    Snapshot(#[from] crate::engine::SnapshotError),
    /// The data or state directory is used by another `run`.
    #[error(transparent)]
    DirLock(#[from] crate::dir_lock::DirLockError),
    /// The installation's dedup key could not be read or made.
    #[error(transparent)]
    DedupKey(#[from] crate::dedup::DedupKeyError),
    /// The `--applied-log` file could not be written.
    #[error("cannot write the applied log: {0}")]
    AppliedLog(#[source] std::io::Error),
    /// The reload machinery could not be set up.
    #[error("cannot set up configuration reload: {0}")]
    Reload(String),
    /// The graceful shutdown took longer than its bound.
    #[error(
        "shutdown did not finish within {0:?}; offsets since the last commit will be read again"
    )]
    ShutdownTimeout(Duration),
    /// The engine task panicked.
    #[error("the engine task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A stage of the scaled service failed.
    #[error(transparent)]
    Scaled(#[from] scaled::ScaledError),
}

/// Options of `crisiswatch run` beyond the configuration.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Append `topic,partition,offset` for every applied message to this file.
    pub applied_log: Option<PathBuf>,
    /// Use this metrics registry (to observe the service from the caller).
    pub metrics: Option<Arc<Metrics>>,
    /// The configuration file, for hot reload and `/api/v1/status`.
    pub config_path: Option<PathBuf>,
    /// The configuration text, for the config hash.
    pub config_text: String,
}

/// What a run did, when it ended.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The engine's counters.
    pub stats: EngineStats,
    /// Transitions submitted to the incident manager (scaled out: by the
    /// incident owners of this instance).
    pub transitions: u64,
    /// Scaled out: the transitions the shard owners of this instance wrote
    /// to the transition topic (`None`: one instance).
    pub written: Option<u64>,
}

/// Runs the service until `shutdown` turns true (or the source fails).
pub async fn run(
    cfg: &Config,
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let k = cfg
        .sources
        .kafka
        .clone()
        .ok_or(SourceError::NotConfigured)?;
    if k.scale_out.is_some() {
        return scaled::run(cfg, opts, shutdown).await;
    }
    let mut engine = ShardedEngine::new(cfg, cfg.engine.worker_count(), cfg.engine.shards)?;
    tracing::info!(
        workers = engine.workers(),
        shards = engine.shards(),
        "Engine workers share the state shards."
    );
    let state_dir = std::path::Path::new(cfg.state.dir_or(&cfg.incidents.data_dir));
    // This process's incidents and checkpoints: no second `run` beside it.
    let data_dir = std::path::Path::new(&cfg.incidents.data_dir);
    let mut _locks = vec![crate::dir_lock::DirLock::acquire(data_dir)?];
    if !same_dir(state_dir, data_dir) {
        _locks.push(crate::dir_lock::DirLock::acquire(state_dir)?);
    }
    // Event ids hash under this installation's key, kept beside the checkpoints.
    engine.set_dedup_key(crate::dedup::DedupKey::load_or_create(state_dir)?);
    let grace = restore_grace(&k, state_dir);
    let metrics = match opts.metrics {
        Some(m) => m,
        None => Metrics::new(cfg.server.max_series_per_rule)?,
    };
    let topics: Vec<String> = k.topics.iter().map(|t| t.name.clone()).collect();
    let shared = Arc::new(Shared {
        metrics: SourceMetrics::register(metrics.registry(), &topics)?,
        topics,
        tracker: std::sync::Mutex::new(OffsetTracker::new()),
        health: Health::new(Instant::now())
            .expecting_partitions()
            .with_statistics_interval(kafka::statistics_interval_ms(&k)),
        stopping: std::sync::atomic::AtomicBool::new(false),
        arrival: ArrivalDecode::new(
            *engine.limits(),
            k.topics.iter().map(|t| t.default_type.clone()).collect(),
            &cfg.rules,
        ),
        delivered: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        backlog: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        backlog_hold: crate::source::backlog_hold(&k),
    });
    let state = AppState::new(Arc::clone(&metrics));
    let (reload_rx, reload_metrics) = crate::admin::set_up(
        &state.admin,
        metrics.registry(),
        cfg,
        opts.config_path.clone(),
        &opts.config_text,
    )
    .map_err(|e| RunError::Reload(e.to_string()))?;
    // The rules are listed from the start, before the first tick.
    state.admin.publish(crate::admin::snapshot(&engine));
    // The incident stage first: a receiver whose secret cannot be read
    // refuses the start before anything says the service is serving.
    let sink = TransitionSink::open(cfg, &state)?;
    let (stop_http, stop_http_rx) = watch::channel(false);
    let server = if cfg.server.listen.is_empty() {
        None
    } else {
        let (addr, fut) = http::bind(&cfg.server.listen, Arc::clone(&state), stop_http_rx).await?;
        crate::say!("Serving /metrics and /readyz on http://{addr}");
        Some(tokio::spawn(fut))
    };
    let applied = match &opts.applied_log {
        Some(p) => Some(AppliedLog::open(p).map_err(RunError::AppliedLog)?),
        None => None,
    };
    let dlq = DeadLetters::new(&k, Arc::clone(&shared))?;
    let (tx, rx) = mpsc::channel(k.channel_capacity);
    let source = kafka::start(&k, Arc::clone(&shared), tx)?;
    let settings = StageSettings {
        default_types: k.topics.iter().map(|t| t.default_type.clone()).collect(),
        idle_partition_timeout: k.idle_partition_timeout.0,
        stall_timeout: k.stall_timeout.0,
        idle_timeout: cfg.engine.idle_timeout.0,
        drain_timeout: k.shutdown_timeout.0 / 2,
        // Commits wait for checkpoints: a re-read goes back at most to the
        // last successful one, two intervals ago when one failed.
        reread_keep: 2 * k.commit_interval.0.max(cfg.state.checkpoint_interval.0)
            + Duration::from_secs(30),
        known_grace: grace,
    };
    let parts = StageParts {
        recorders: k
            .topics
            .iter()
            .map(|_| crate::metrics::Recorder::new(cfg))
            .collect(),
        shared,
        dlq,
        applied,
        sink,
    };
    let mut stage = Stage::new(engine, settings, parts);
    if !cfg.state.checkpoint_interval.0.is_zero() {
        let dir = cfg.state.dir_or(&cfg.incidents.data_dir);
        // A damaged file (not a database any more) is waited on like a
        // checkpoint that cannot be loaded: not ready, nothing consumed.
        let store = match crate::state::StateStore::open(std::path::Path::new(dir)) {
            Ok(s) => Ok(s),
            Err(e) if e.is_unloadable() => Err(e),
            Err(e) => return Err(e.into()),
        };
        let m = durable::StateMetrics::register(metrics.registry())
            .map_err(|e| RunError::Reload(e.to_string()))?;
        stage.restore_state(store, cfg.state.checkpoint_interval.0, grace, m)?;
        // The Prometheus counters count this process's events, from zero.
        if stage.take_loaded() {
            metrics.count_from(stage.engine());
        }
        // Before anything is skipped: are the checkpoint's offsets still the
        // same messages (`source::identity`)? Checked beside the engine task.
        stage.check_restore(&k);
    }
    let mut engine_task = tokio::spawn(drive(
        stage,
        rx,
        Arc::clone(&state),
        reload_rx,
        reload_metrics,
    ));

    let ended_early = tokio::select! {
        _ = signalled(&mut shutdown) => None,
        r = &mut engine_task => Some(r),
    };
    tracing::info!("Stopping: draining and committing.");
    source.stop();
    let bound = k.shutdown_timeout.0;
    let deadline = tokio::time::Instant::now() + bound;
    let finish = async {
        let stage = match ended_early {
            Some(r) => r,
            None => engine_task.await,
        };
        let joined = tokio::task::spawn_blocking(move || source.join()).await;
        if let Ok(Ok(stage)) = &stage {
            // Whatever the bound leaves (a second kept for the exit, and the
            // grace a request in flight gets before it is cancelled) drains incidents.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let keep = Duration::from_secs(1) + crate::incident::STOP_GRACE;
            let drain = cfg.incidents.drain_timeout.0.min(left.saturating_sub(keep));
            stage.sink().shutdown(drain).await;
        }
        (stage, joined)
    };
    let result = match tokio::time::timeout(bound, finish).await {
        Ok((stage, joined)) => {
            joined??;
            let stage = stage??;
            Ok(RunSummary {
                stats: stage.engine().stats(),
                transitions: stage.sink().submitted(),
                written: None,
            })
        }
        Err(_) => {
            tracing::error!(
                bound_s = bound.as_secs(),
                "Shutdown did not finish in time; exiting now: what was applied after the last commit logged above is read again at the next start."
            );
            Err(RunError::ShutdownTimeout(bound))
        }
    };
    let _ = stop_http.send(true);
    if let Some(s) = server {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), s).await {
            tracing::warn!(error = %e, "HTTP server ended with an error.");
        }
    }
    result
}

/// Whether two paths name one directory (after the lock created both).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The file beside the checkpoints that keeps the consumer session timeout
/// of the last start ([`restore_grace`]).
const SESSION_FILE: &str = "kafka-session-timeout-ms";

/// How long a partition of the checkpoint (or one the broker names at the
/// start) holds the clock before it is assigned: twice the consumer session
/// timeout (librdkafka's default 45 s), the time a crashed predecessor's
/// partitions take to come back — the predecessor's own timeout, which a
/// restart with another configuration does not know: the last start's is
/// kept in `state_dir` and the longer of the two counts.
fn restore_grace(k: &crate::config::KafkaSourceConfig, state_dir: &std::path::Path) -> Duration {
    let own = k.session_timeout_ms();
    let path = state_dir.join(SESSION_FILE);
    let before = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if before != own {
        if let Err(e) = std::fs::write(&path, format!("{own}\n")) {
            tracing::warn!(path = %path.display(), error = %e, "Cannot keep the consumer session timeout for the next start.");
        }
    }
    if before > own {
        tracing::info!(
            session_ms = own,
            before_ms = before,
            "The last start had a longer consumer session timeout: partitions its process may still hold are waited for that long."
        );
    }
    Duration::from_millis(own.max(before).saturating_mul(2))
}

/// The engine task: handle every message until the consumer thread closes the
/// channel; tick in between.
async fn drive(
    mut stage: Stage,
    mut rx: mpsc::Receiver<crate::source::SourceMsg>,
    state: Arc<AppState>,
    mut reload_rx: mpsc::Receiver<crate::admin::ReloadRequest>,
    reload_metrics: crate::admin::ReloadMetrics,
) -> Result<Stage, RunError> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A data directory that cannot be written pauses consumption
            // (the consumer thread waits on the full channel).
            msg = rx.recv(), if !stage.paused() => match msg {
                Some(m) => stage.handle(m, &state).await?,
                None => break,
            },
            _ = tick.tick() => stage.tick(&state)?,
            Some(req) = reload_rx.recv() => {
                // Rules, engine settings, incident routes, rule metadata and
                // receivers change in place; sources keep their startup
                // configuration until a restart.
                let incidents = Arc::clone(stage.sink().manager());
                let result = crate::admin::reload(
                    stage.engine_mut(),
                    &state.admin,
                    &reload_metrics,
                    &crate::config::ProcessEnv,
                    Some(&incidents),
                )
                .map(|(summary, cfg)| {
                    stage.watch_forms(&cfg.rules);
                    summary
                });
                state.admin.publish(crate::admin::snapshot(stage.engine()));
                if let Some(tx) = req.reply {
                    let _ = tx.send(result);
                }
            }
        }
        // A task this step woke (a delivery worker, after the outbox stored
        // new notifications) waits in this worker thread's LIFO slot, which
        // no other thread may steal: without a yield it would run only once
        // the channel runs dry or this task's cooperative budget is spent —
        // hundreds of milliseconds under sustained load
        // (benches/incident_latency.rs). Yielding costs one reschedule per
        // batch and changes no output.
        tokio::task::yield_now().await;
    }
    stage.tick(&state)?;
    stage.finish()?;
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    Ok(stage)
}

async fn signalled(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            // The sender is gone: no shutdown can come any more.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(session_ms: Option<u64>) -> crate::config::KafkaSourceConfig {
        let props = session_ms
            .map(|ms| format!("[sources.kafka.properties]\n\"session.timeout.ms\" = \"{ms}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "[sources.kafka]\nbrokers = \"localhost:9092\"\ntopics = [{{ name = \"t\" }}]\n{props}\n[[rules]]\nname = \"r\"\nwindow = \"10m\"\nslide = \"1m\"\nindicator = {{ kind = \"count\", select = {{ type = \"complaint\" }} }}\nthresholds = {{ warning = 1 }}\n"
        );
        let cfg = Config::from_toml_str(&text, &std::collections::HashMap::<String, String>::new())
            .expect("config");
        cfg.sources.kafka.expect("kafka")
    }

    #[test]
    fn the_grace_covers_the_last_starts_longer_session() {
        let dir = tempfile::tempdir().expect("dir");
        // A first start with 30 s, then one with 6 s (killed in between):
        // the 30 s member may still hold partitions for 30 s.
        assert_eq!(
            restore_grace(&kafka(Some(30_000)), dir.path()),
            Duration::from_secs(60)
        );
        assert_eq!(
            restore_grace(&kafka(Some(6_000)), dir.path()),
            Duration::from_secs(60)
        );
        // The next start knows only the 6 s one.
        assert_eq!(
            restore_grace(&kafka(Some(6_000)), dir.path()),
            Duration::from_secs(12)
        );
        // librdkafka's default when the property is not set.
        assert_eq!(
            restore_grace(&kafka(None), dir.path()),
            Duration::from_secs(90)
        );
    }
}
