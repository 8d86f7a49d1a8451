//! Incident delivery for `crisiswatch replay`: when the configuration has an
//! HTTP receiver with a URL, the replay's transitions also go through the
//! incident manager — persisted to the outbox, delivered, drained at the end
//! within `incidents.drain_timeout` — while standard output keeps the
//! transitions exactly as before.
//!
//! Replaying the same input again is safe: transitions already applied are
//! recognised in the outbox and skipped, and queued notifications left by an
//! interrupted run are delivered first.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::alert::Transition;
use crate::config::Config;

use super::{has_http_receivers, DrainReport, IncidentError, IncidentManager, ManagerOptions};

/// The incident side of one replay.
pub struct ReplayDelivery {
    runtime: tokio::runtime::Runtime,
    manager: Arc<IncidentManager>,
    drain: std::time::Duration,
    error: Option<IncidentError>,
    submitted: usize,
    /// One sender per outbox (see `run::dir_lock`).
    _lock: crate::run::dir_lock::DirLock,
}

/// What the incident side of a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayIncidents {
    /// Rows queued for receivers during the replay.
    pub(crate) queued: usize,
    /// What the final drain left.
    pub(crate) drain: DrainReport,
}

impl fmt::Display for ReplayIncidents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "incidents:    {} notification(s) queued, {} still undelivered",
            self.queued, self.drain.pending
        )
    }
}

// === impl ReplayDelivery ===

impl ReplayDelivery {
    /// Starts delivery if `cfg` has an HTTP receiver with a URL; `None` otherwise.
    pub fn start(cfg: &Config) -> Result<Option<ReplayDelivery>, IncidentError> {
        if !has_http_receivers(cfg) {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(IncidentError::Runtime)?;
        let lock = crate::run::dir_lock::DirLock::acquire(Path::new(&cfg.incidents.data_dir))?;
        let manager = {
            let _guard = runtime.enter();
            let registry = prometheus::Registry::new();
            IncidentManager::open(
                cfg,
                &registry,
                Path::new(&cfg.incidents.data_dir),
                ManagerOptions::default(),
            )?
        };
        Ok(Some(ReplayDelivery {
            runtime,
            manager,
            drain: cfg.incidents.drain_timeout.0,
            error: None,
            submitted: 0,
            _lock: lock,
        }))
    }

    /// Persists one transition's notifications (the first error is kept for [`ReplayDelivery::finish`]).
    pub fn on_transition(&mut self, t: &Transition) {
        if self.error.is_some() {
            return;
        }
        match self.manager.submit(std::slice::from_ref(t), t.at) {
            Ok(s) => self.submitted += s.queued,
            Err(e) => self.error = Some(e),
        }
    }

    /// Sends the opens still waiting at event time `clock`, then waits for
    /// delivery (at most `incidents.drain_timeout`).
    pub fn finish(mut self, clock: Option<i64>) -> Result<ReplayIncidents, IncidentError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(now) = clock {
            self.submitted += self.manager.flush(now)?.queued;
        }
        let drain = self.runtime.block_on(self.manager.shutdown(self.drain));
        Ok(ReplayIncidents {
            queued: self.submitted,
            drain,
        })
    }
}
