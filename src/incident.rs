//! Incidents: alert transitions become incidents in the systems responders
//! use — never lost, never duplicated.
//!
//! The last stage of the data flow, after the engine:
//!
//! ```text
//! transitions ─► lifecycle ─► silences ─► outbox (SQLite) ─► delivery worker per receiver ─► generic / PagerDuty /
//!  (engine)      (routing,     (mute,      every row          (order per incident, retries,      Alertmanager / console
//!                grouping,     record)     persisted first)    breaker, dead letters)
//!                updates)
//! ```
//!
//! * [`lifecycle`] groups alerts into incidents (open → update* → resolve),
//!   by the routes of [`routing`], in event time.
//! * [`silence`] mutes matching incidents: their rows are recorded as `muted`.
//! * [`outbox`] is the durable store (why SQLite: see there).
//! * [`endpoint`] readies each receiver (secrets, HTTP client, TLS trust);
//!   [`delivery`] drains the outbox per receiver under the [`policy`] (backoff, breaker);
//!   [`receivers`] renders the wire formats, [`signature`] signs them
//!   (Standard Webhooks, and the documented [`signature::verify`]).
//! * [`metrics`] exports attempts, failures, latency quantiles, depth and age.
//! * A configuration reload reaches the stage through
//!   [`IncidentManager::prepare`] / [`IncidentManager::apply`]: routes, rule
//!   metadata and receivers change in place (workers: `workers.rs`).
//! * The silences HTTP endpoint is [`crate::http::silences`]; the `outbox` and
//!   `silence` commands are in `crate::cli`; [`replay_delivery`] delivers the
//!   incidents of `crisiswatch replay`.
//! * [`peers`] is what the other instances of a scaled group hold (filled
//!   from the controls topic, `src/run/scaled/controls.rs`), for the admin API.
//!
//! # Using it from a driver (`run`, `demo`, `replay`)
//!
//! ```text
//! let manager = IncidentManager::open(&cfg, metrics.registry(), data_dir, ManagerOptions::default())?;
//! // per batch of engine output (`now` = the engine's event-time clock):
//! manager.submit(&transitions, now)?;   // persisted when it returns; workers woken
//! manager.tick(now, &mut engine)?;      // group windows and progress updates (cheap when nothing is due)
//! // at the end of the input (replay) or on shutdown:
//! manager.flush(now)?;                  // replay only: what fell due by `now`, then opens still in their group window
//! manager.shutdown(timeout).await;      // drain within the bound; the rest stays queued for the next start
//! ```
//!
//! `open` must run inside a tokio runtime (it spawns the workers). `submit`,
//! `tick` and `flush` are synchronous: one fsync'd SQLite transaction, a few
//! milliseconds. An error from them means the batch was not persisted (logged
//! at ERROR; the lifecycle is rolled back to the stored state).

pub mod delivery;
pub mod endpoint;
pub(crate) mod fence;
pub mod lifecycle;
mod manager;
pub mod metrics;
pub mod model;
pub mod outbox;
pub(crate) mod peers;
pub mod policy;
pub mod receivers;
pub mod replay_delivery;
pub mod routing;
pub mod signature;
pub mod silence;
mod workers;

use std::io::Write;

use crate::secret::SecretError;

pub use self::manager::stopping::{prune_interval, STOP_GRACE};
pub use self::manager::{has_http_receivers, receiver_enabled, IncidentManager, PreparedReload};
use self::outbox::OutboxError;
pub use self::silence::Silence;
pub use self::workers::ReceiverChanges;

/// Errors of the incident stage.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Another process sends from this outbox (`crisiswatch.lock`).
    #[error(transparent)]
    Locked(#[from] crate::dir_lock::DirLockError),
    /// The outbox failed: notifications of this batch are not persisted.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A receiver's secret could not be read.
    #[error("receiver {receiver}: {source}")]
    Secret {
        /// The receiver.
        receiver: String,
        /// What went wrong.
        source: SecretError,
    },
    /// The HTTP client could not be built.
    #[error("receiver {receiver}: cannot build the HTTP client: {source}")]
    Client {
        /// The receiver.
        receiver: String,
        /// The error.
        source: reqwest::Error,
    },
    /// A receiver's `ca_file` could not be used.
    #[error("receiver {receiver}: cannot use ca_file {path}: {reason}")]
    CaFile {
        /// The receiver.
        receiver: String,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Metrics could not be registered (opened twice on one registry?).
    #[error("cannot register incident metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The async runtime for delivery could not start.
    #[error("cannot start the async runtime for incident delivery: {0}")]
    Runtime(#[source] std::io::Error),
    /// `open` was called outside a tokio runtime.
    #[error(
        "the incident manager must be opened inside a tokio runtime (it runs delivery workers)"
    )]
    NoRuntime,
}

/// Options of [`IncidentManager::open`].
#[derive(Default)]
pub struct ManagerOptions {
    /// Where `console` receivers write; `None` disables them (replay keeps
    /// standard output for transitions, the demo prints its own lines).
    pub(crate) console: Option<Box<dyn Write + Send>>,
    /// This process serves the web console at `server.listen` (`run`, the
    /// demo): Alertmanager alerts without a dashboard or runbook link to it
    /// (`generatorURL`). Otherwise (`replay`, `outbox deliver`) only a
    /// configured `server.external_url` is linked, never a loopback address
    /// nothing answers on.
    pub(crate) serves_console: bool,
    /// The outbox belongs to an instance of a scaled group
    /// (`sources.kafka.scale_out`): before any delivery, what it has queued
    /// is marked handed to the owners of the incidents' partitions, whose
    /// checkpoints carry it (`outbox::handoff`); an owner queues it again.
    pub(crate) hand_off_queued: bool,
}

/// What a batch produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Submitted {
    /// Transitions applied (not seen before).
    pub(crate) applied: usize,
    /// Incident notifications produced.
    pub(crate) notifications: usize,
    /// Rows queued for delivery.
    pub(crate) queued: usize,
    /// Rows recorded as muted by a silence.
    pub(crate) muted: usize,
}

/// What a shutdown left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Notifications still queued (delivered after the next start).
    pub pending: i64,
}
