//! Durable state of the engine stage: restore on start, checkpoints while
//! running (see `crate::state` for the format and the consistency argument).
//!
//! * **Restore**: the engine snapshot goes back into the engine, the
//!   sequencer's release point and each partition's newest event time into the
//!   feed; the offset tracker commits nothing past a checkpoint from then on.
//!   When a partition is read again from its committed offset, every message
//!   the checkpoint covers is skipped ([`PartitionState::covers`]): held events
//!   and dead letters in flight at the checkpoint are processed again, nothing
//!   else.
//! * **Checkpoint** every `state.checkpoint_interval`, before a revoked
//!   partition is committed, and at a graceful stop — always after the
//!   transitions so far are in the outbox. The engine task only takes the
//!   snapshot (and the progress it covers); a writer thread serialises the
//!   fsynced write, so ingestion pauses for the snapshot alone
//!   (`crisiswatch_checkpoint_stall_milliseconds`). A periodic checkpoint due
//!   while the previous write is still running is skipped; the one before a
//!   revoke and the final one wait for their write. Commits advance to a
//!   checkpoint only once it is written. A failed write is logged at ERROR
//!   and counted, readiness drops (`/readyz` names the store's error), and
//!   commits stay at the last checkpoint until a write succeeds again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge, Registry};

use crate::engine::ShardedEngine;
use crate::source::context::Shared;
use crate::source::Partition;
use crate::state::{Checkpoint, PartitionState, StateStore};

use super::feed::LiveFeed;
use super::RunError;

/// Checkpoint metrics (`crisiswatch_checkpoint_*`, `crisiswatch_restore_*`).
#[derive(Debug, Clone)]
pub(crate) struct StateMetrics {
    duration_ms: IntGauge,
    stall_ms: IntGauge,
    bytes: IntGauge,
    last_success: IntGauge,
    written: IntCounter,
    failures: IntCounter,
    restore_ms: IntGauge,
    restore_groups: IntGauge,
}

impl StateMetrics {
    /// Registers the metrics.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(StateMetrics {
            duration_ms: gauge(
                "crisiswatch_checkpoint_duration_milliseconds",
                "How long the last checkpoint took, snapshot to fsynced write.",
            )?,
            stall_ms: gauge(
                "crisiswatch_checkpoint_stall_milliseconds",
                "How long the last checkpoint held up the engine task (the snapshot; the write runs beside it).",
            )?,
            bytes: gauge(
                "crisiswatch_checkpoint_bytes",
                "Size of the last checkpoint's engine snapshot.",
            )?,
            last_success: gauge(
                "crisiswatch_checkpoint_last_success_timestamp_seconds",
                "Wall-clock time of the last checkpoint written (age: time() minus this).",
            )?,
            written: counter("crisiswatch_checkpoints_total", "Checkpoints written.")?,
            failures: counter(
                "crisiswatch_checkpoint_failures_total",
                "Checkpoints that could not be written (commits wait for the next one).",
            )?,
            restore_ms: gauge(
                "crisiswatch_restore_duration_milliseconds",
                "How long loading the checkpoint took at start.",
            )?,
            restore_groups: gauge(
                "crisiswatch_restore_groups",
                "Live groups restored from the checkpoint at start.",
            )?,
        })
    }
}

/// The store, its schedule and what a restore must still skip.
#[derive(Debug)]
pub(crate) struct Durable {
    /// The store until the writer thread starts (first checkpoint).
    store: Option<StateStore>,
    path: PathBuf,
    every: Duration,
    last: Instant,
    /// Per partition: the restored checkpoint's progress, until the
    /// partition has been read past it.
    skip: HashMap<Partition, PartitionState>,
    metrics: StateMetrics,
    /// The writer thread's queue.
    writer: Option<mpsc::Sender<Job>>,
    /// A write is queued or running.
    busy: Arc<AtomicBool>,
    /// Why the last checkpoint failed (`None`: it did not).
    failure: Arc<Mutex<Option<String>>>,
}

/// One checkpoint for the writer thread.
struct Job {
    cp: Checkpoint,
    resume: Vec<(Partition, i64)>,
    started: Instant,
    /// Told whether the write succeeded (a checkpoint that must be written
    /// before the caller goes on).
    done: Option<mpsc::Sender<bool>>,
}

/// The writer thread: writes checkpoints in order; after each success,
/// commits may advance to it.
struct Writer {
    store: StateStore,
    shared: Arc<Shared>,
    metrics: StateMetrics,
    busy: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            let ok = self.write(&job);
            self.busy.store(false, Ordering::SeqCst);
            if let Some(done) = job.done {
                let _ = done.send(ok);
            }
        }
    }

    fn write(&mut self, job: &Job) -> bool {
        match self.store.write(&job.cp) {
            Ok(()) => {
                self.shared.tracker().checkpointed(job.resume.clone());
                let ms = job.started.elapsed().as_millis();
                self.metrics
                    .duration_ms
                    .set(i64::try_from(ms).unwrap_or(i64::MAX));
                self.metrics.bytes.set(job.cp.engine.len() as i64);
                self.metrics.last_success.set(job.cp.written_ms / 1000);
                self.metrics.written.inc();
                if lock(&self.failure).take().is_some() {
                    tracing::info!("Checkpoints are written again.");
                }
                tracing::debug!(
                    bytes = job.cp.engine.len(),
                    ms = ms as u64,
                    "Checkpoint written."
                );
                true
            }
            Err(e) => {
                fail(&self.metrics, &self.failure, &e.to_string());
                false
            }
        }
    }
}

fn lock(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a failed checkpoint and keeps its error for readiness; logs the
/// first of a run of failures.
fn fail(metrics: &StateMetrics, failure: &Mutex<Option<String>>, error: &str) {
    metrics.failures.inc();
    if lock(failure).replace(error.to_string()).is_none() {
        tracing::error!(
            error,
            "Checkpoint failed; offsets stay at the last checkpoint until one succeeds."
        );
    }
}

impl Durable {
    /// Opens the store; restores the checkpoint (if any) into the engine, the
    /// feed and the tracker. Each checkpointed partition holds the clock for
    /// `grace` (plus the idle-partition timeout) even before it is assigned:
    /// after a crash its previous owner keeps it until the consumer session
    /// times out, and events released meanwhile would make its events late.
    pub(crate) fn restore(
        store: StateStore,
        (every, grace): (Duration, Duration),
        metrics: StateMetrics,
        topics: &[String],
        engine: &mut ShardedEngine,
        feed: &mut LiveFeed,
        tracker: &mut crate::source::offsets::OffsetTracker,
    ) -> Result<Self, RunError> {
        let started = Instant::now();
        tracker.limit_to_checkpoints();
        let mut skip = HashMap::new();
        if let Some(cp) = store.load()? {
            let summary = engine.restore(&cp.engine)?;
            let now = Instant::now();
            let (seq, watermarks) = feed.parts_mut();
            seq.set_released_below(cp.released_below);
            let mut resume = Vec::new();
            for p in cp.partitions {
                let Some(t) = topics.iter().position(|n| *n == p.topic) else {
                    tracing::warn!(topic = %p.topic, "Checkpoint of a topic no longer configured: ignored.");
                    continue;
                };
                let at = Partition {
                    topic: t as u16,
                    partition: p.partition,
                };
                watermarks.restore(at, p.max_ts, now, grace);
                resume.push((at, p.resume));
                skip.insert(at, p);
            }
            tracker.checkpointed(resume);
            let ms = started.elapsed().as_millis();
            metrics
                .restore_ms
                .set(i64::try_from(ms).unwrap_or(i64::MAX));
            metrics.restore_groups.set(summary.groups as i64);
            let age_s = (chrono::Utc::now().timestamp_millis() - cp.written_ms) / 1000;
            tracing::info!(
                store = %store.path().display(),
                groups = summary.groups,
                rules = summary.rules_restored.len(),
                partitions = skip.len(),
                age_s,
                ms = ms as u64,
                "Engine state restored from the checkpoint."
            );
            if !summary.rules_dropped.is_empty() {
                tracing::warn!(rules = ?summary.rules_dropped, "Rules changed or removed since the checkpoint start empty.");
            }
        } else {
            tracing::info!(store = %store.path().display(), "No checkpoint: the engine starts empty.");
        }
        Ok(Durable {
            path: store.path().to_path_buf(),
            store: Some(store),
            every,
            last: Instant::now(),
            skip,
            metrics,
            writer: None,
            busy: Arc::new(AtomicBool::new(false)),
            failure: Arc::new(Mutex::new(None)),
        })
    }

    /// Whether message `offset` of `at` is covered by the restored checkpoint
    /// (skip it: its effect is in the restored state).
    pub(crate) fn covered(&mut self, at: Partition, offset: i64) -> bool {
        let Some(p) = self.skip.get(&at) else {
            return false;
        };
        if p.covers(offset) {
            return true;
        }
        if offset >= p.next {
            self.skip.remove(&at);
        }
        false
    }

    /// Whether a checkpoint is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.every
    }

    /// Whether the last checkpoint write failed.
    pub(crate) fn failing(&self) -> bool {
        lock(&self.failure).is_some()
    }

    /// Why the last checkpoint failed (the store's error), while it did.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Checkpoints `engine` and `feed` with the tracker's progress: the
    /// snapshot is taken now, the write happens on the writer thread. With
    /// `wait` (before a revoke is committed, at the final stop) it returns
    /// once the write is done; otherwise a checkpoint due while the previous
    /// write still runs is skipped until the next tick. A failure is logged
    /// and counted (not fatal: commits wait for the next checkpoint).
    pub(crate) fn checkpoint(
        &mut self,
        engine: &ShardedEngine,
        feed: &LiveFeed,
        shared: &Arc<Shared>,
        wait: bool,
    ) {
        let started = Instant::now();
        self.last = started;
        if !wait && self.busy.load(Ordering::SeqCst) {
            tracing::debug!("Checkpoint skipped: the previous one is still being written.");
            return;
        }
        let engine_bytes = match engine.snapshot() {
            Ok(b) => b,
            Err(e) => {
                fail(&self.metrics, &self.failure, &e.to_string());
                return;
            }
        };
        let progress = shared.tracker().export();
        let clocks: HashMap<Partition, Option<i64>> =
            feed.watermarks().partition_clocks().into_iter().collect();
        let mut partitions: Vec<PartitionState> = Vec::new();
        let mut resume = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (at, r, next, pending) in progress {
            seen.insert(at);
            resume.push((at, r));
            partitions.push(PartitionState {
                topic: shared.topics[usize::from(at.topic)].clone(),
                partition: at.partition,
                max_ts: clocks.get(&at).copied().flatten(),
                resume: r,
                next,
                pending,
            });
        }
        // Restored partitions not read since keep their progress.
        for (at, p) in &self.skip {
            if !seen.contains(at) {
                resume.push((*at, p.resume));
                partitions.push(p.clone());
            }
        }
        let cp = Checkpoint {
            written_ms: chrono::Utc::now().timestamp_millis(),
            engine: engine_bytes,
            released_below: feed.released_below(),
            partitions,
        };
        self.metrics
            .stall_ms
            .set(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX));
        let Some(writer) = self.writer(shared) else {
            fail(
                &self.metrics,
                &self.failure,
                "the checkpoint writer thread could not start",
            );
            return;
        };
        let (done, result) = if wait {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.busy.store(true, Ordering::SeqCst);
        let job = Job {
            cp,
            resume,
            started,
            done,
        };
        if writer.send(job).is_err() {
            self.busy.store(false, Ordering::SeqCst);
            self.writer = None;
            fail(
                &self.metrics,
                &self.failure,
                "the checkpoint writer thread ended",
            );
            return;
        }
        if let Some(rx) = result {
            // The write must be on disk before the caller commits or exits.
            let _ = rx.recv();
        }
    }

    /// The writer thread's queue (started at the first checkpoint).
    fn writer(&mut self, shared: &Arc<Shared>) -> Option<mpsc::Sender<Job>> {
        if let Some(w) = &self.writer {
            return Some(w.clone());
        }
        let store = self.store.take()?;
        let (tx, rx) = mpsc::channel();
        let w = Writer {
            store,
            shared: Arc::clone(shared),
            metrics: self.metrics.clone(),
            busy: Arc::clone(&self.busy),
            failure: Arc::clone(&self.failure),
        };
        match std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || w.run(rx))
        {
            Ok(_) => {
                self.writer = Some(tx.clone());
                Some(tx)
            }
            Err(e) => {
                tracing::error!(error = %e, store = %self.path.display(), "Cannot start the checkpoint writer thread.");
                None
            }
        }
    }
}
