//! The checkpoint writer thread: writes checkpoints in order, off the
//! engine task; after each success, commits may advance to it.
//!
//! A write that fails leaves the store at the previous checkpoint, so the
//! changes it carried are not in the store: the engine must write all of its
//! state again. The writer then refuses incremental checkpoints (they build
//! on the failed one) and asks for a full one (`need_full`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::source::context::Shared;
use crate::source::Partition;
use crate::state::{Checkpoint, StateStore};

use super::StateMetrics;

/// One checkpoint for the writer thread.
pub(super) struct Job {
    pub(super) cp: Checkpoint,
    pub(super) resume: Vec<(Partition, i64)>,
    pub(super) started: Instant,
    /// Told whether the write succeeded (a checkpoint that must be written
    /// before the caller goes on).
    pub(super) done: Option<mpsc::Sender<bool>>,
}

/// What the engine task and the writer thread share.
#[derive(Debug, Clone, Default)]
pub(super) struct Flags {
    /// A write is queued or running.
    pub(super) busy: Arc<AtomicBool>,
    /// The store lacks changes of a failed write: the next checkpoint must be full.
    pub(super) need_full: Arc<AtomicBool>,
    /// Why the last checkpoint failed (`None`: it did not).
    pub(super) failure: Arc<Mutex<Option<String>>>,
}

pub(super) struct Writer {
    pub(super) store: StateStore,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: StateMetrics,
    pub(super) flags: Flags,
    /// The stamp of the checkpoint the store holds, as this process last
    /// wrote (or loaded) it: an incremental checkpoint builds on it.
    pub(super) stamp: Option<(u32, i64)>,
}

impl Writer {
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            let ok = self.write(&job);
            self.flags.busy.store(false, Ordering::SeqCst);
            if let Some(done) = job.done {
                let _ = done.send(ok);
            }
        }
    }

    fn write(&mut self, job: &Job) -> bool {
        if !job.cp.engine.full {
            if self.flags.need_full.load(Ordering::SeqCst) {
                // Built on a checkpoint that was not written: wait for a full one.
                self.metrics.failures.inc();
                lock(&self.flags.failure)
                    .get_or_insert_with(|| "a previous checkpoint failed".to_string());
                return false;
            }
            match self.store.stamp() {
                Ok(s) if s == self.stamp => {}
                Ok(_) => {
                    self.flags.need_full.store(true, Ordering::SeqCst);
                    tracing::warn!("The state store changed beside this process (a `state reset`?): the next checkpoint writes the whole state.");
                    self.metrics.failures.inc();
                    return false;
                }
                Err(e) => {
                    self.flags.need_full.store(true, Ordering::SeqCst);
                    fail(&self.metrics, &self.flags.failure, &e.to_string());
                    return false;
                }
            }
        }
        match self.store.write(&job.cp) {
            Ok(()) => {
                self.stamp = Some((crate::state::FORMAT, job.cp.written_ms));
                if job.cp.engine.full {
                    self.flags.need_full.store(false, Ordering::SeqCst);
                }
                self.shared.tracker().checkpointed(job.resume.clone());
                let ms = job.started.elapsed().as_millis();
                let bytes = job.cp.engine.bytes();
                let m = &self.metrics;
                m.duration_s.set(job.started.elapsed().as_secs_f64());
                m.bytes.set(bytes as i64);
                m.groups_written.set(job.cp.engine.upserts.len() as i64);
                m.last_success.set(job.cp.written_ms / 1000);
                m.written.inc();
                if lock(&self.flags.failure).take().is_some() {
                    tracing::info!("Checkpoints are written again.");
                }
                tracing::debug!(
                    bytes,
                    groups = job.cp.engine.upserts.len(),
                    forgotten = job.cp.engine.removed.len(),
                    full = job.cp.engine.full,
                    ms = ms as u64,
                    "Checkpoint written."
                );
                true
            }
            Err(e) => {
                self.flags.need_full.store(true, Ordering::SeqCst);
                fail(&self.metrics, &self.flags.failure, &e.to_string());
                false
            }
        }
    }
}

pub(super) fn lock(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a failed checkpoint and keeps its error for readiness; logs the
/// first of a run of failures.
pub(super) fn fail(metrics: &StateMetrics, failure: &Mutex<Option<String>>, error: &str) {
    metrics.failures.inc();
    if lock(failure).replace(error.to_string()).is_none() {
        tracing::error!(
            error,
            "Checkpoint failed; offsets stay at the last checkpoint until one succeeds."
        );
    }
}
