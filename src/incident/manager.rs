//! The [`IncidentManager`]: the incident stage of one process, tying the
//! lifecycle, the silences, the outbox and the delivery workers together
//! (see the module header of [`crate::incident`] for how drivers use it).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alert::Transition;
use crate::config::{Config, ReceiverConfig, ReceiverKind};

use super::delivery::Clock;
use super::lifecycle::{self, Changes, Lifecycle, NoValues, ValueSource};
use super::metrics::IncidentMetrics;
use super::model::{self, Action, Notification};
use super::outbox::{Outbox, OutboxError, Status, Tx};
use super::silence::{self, Silence};
use super::workers::{self, Console, Prepared, ReceiverChanges, ReceiverSet};
use super::{IncidentError, ManagerOptions, Submitted};

/// The incident stage of one process.
pub struct IncidentManager {
    outbox: Arc<Outbox>,
    lifecycle: Mutex<Lifecycle>,
    receivers: Mutex<ReceiverSet>,
    console: Option<Console>,
    /// This process serves the web console ([`ManagerOptions::serves_console`]).
    serves_console: bool,
    metrics: Arc<IncidentMetrics>,
    clock: Clock,
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The last write failed (logged at ERROR once, until one succeeds).
    failing: std::sync::atomic::AtomicBool,
    /// The incident partitions this instance owns (`sources.kafka.scale_out`;
    /// `None` in one embedded instance), as last set by `set_ownership`.
    ownership: Mutex<Option<super::routing::Ownership>>,
    /// Rules whose unrouted alerts were logged (once per rule and process).
    unrouted_logged: Mutex<std::collections::BTreeSet<String>>,
    /// The latest event time the engine gave (`submit`, `tick`, `flush`;
    /// `i64::MIN` before the first): operators' closes and acknowledgements
    /// are placed on the incidents' event-time axis at it.
    event_now: std::sync::atomic::AtomicI64,
}

/// A configuration readied by [`IncidentManager::prepare`], applied by
/// [`IncidentManager::apply`].
pub struct PreparedReload {
    cfg: Config,
    receivers: Vec<Prepared>,
}

impl std::fmt::Debug for PreparedReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedReload").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IncidentManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncidentManager")
            .field("outbox", &self.outbox.path())
            .field("receivers", &self.receivers())
            .finish_non_exhaustive()
    }
}

/// Whether a receiver delivers in this process: HTTP kinds need a URL,
/// `console` needs a console writer.
pub fn receiver_enabled(r: &ReceiverConfig, console: bool) -> bool {
    match r.kind {
        ReceiverKind::Console => console,
        _ => !r.url.is_empty(),
    }
}

/// Whether the configuration has an HTTP receiver with a URL (what makes
/// `replay` and `demo` deliver incidents).
pub fn has_http_receivers(cfg: &Config) -> bool {
    cfg.receivers.iter().any(|r| receiver_enabled(r, false))
}

// === impl IncidentManager ===

impl IncidentManager {
    /// Opens the outbox in `data_dir`, restores open incidents, and starts a
    /// delivery worker per enabled receiver (rows already queued, e.g. from
    /// before a crash, are delivered at once).
    pub fn open(
        cfg: &Config,
        registry: &prometheus::Registry,
        data_dir: &Path,
        opts: ManagerOptions,
    ) -> Result<Arc<IncidentManager>, IncidentError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| IncidentError::NoRuntime)?;
        let clock = Clock::new();
        let outbox = Arc::new(Outbox::open(data_dir)?);
        let mut lifecycle = Lifecycle::new(cfg);
        if !opts.hand_off_queued {
            // One instance: its outbox is its incident state (see `Lifecycle::closed`).
            lifecycle.know_closed(outbox.incident_keys_seen()?);
        }
        lifecycle.restore(outbox.load_incidents()?);
        let console: Option<Console> = opts.console.map(|w| Arc::new(Mutex::new(w)));
        let serves_console = opts.serves_console;
        let prepared = workers::prepare(cfg, console.as_ref(), serves_console)?;
        let names: Vec<String> = cfg
            .receivers
            .iter()
            .filter(|r| receiver_enabled(r, console.is_some()))
            .map(|r| r.name.clone())
            .collect();
        let metrics = Arc::new(IncidentMetrics::new(registry, &names)?);
        metrics
            .open_incidents
            .set(lifecycle.incidents().len() as i64);
        for r in &cfg.rules {
            metrics.add_rule(&r.name);
        }
        metrics.add_routes(cfg);
        // The receivers the outbox has no row of, before the prune takes
        // the rows of a quiet one (see `announce`).
        let unheard: Vec<String> = outbox.transaction(clock.now_ms(), |tx| {
            let mut out = Vec::new();
            for n in &names {
                if !tx.has_rows(n)? {
                    out.push(n.clone());
                }
            }
            Ok(out)
        })?;
        let pruned = outbox.prune(clock.now_ms(), cfg.incidents.retention.as_ms())?;
        metrics.record_pruned(&pruned);
        if opts.hand_off_queued {
            ownership::hand_off_at_open(&outbox, &metrics, clock.now_ms())?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut receivers = ReceiverSet::new(
            handle.clone(),
            Arc::clone(&outbox),
            Arc::clone(&metrics),
            clock,
        );
        receivers.apply(prepared);
        let workers = vec![handle.spawn(stopping::prune_periodically(
            Arc::clone(&outbox),
            Arc::clone(&metrics),
            clock,
            cfg.incidents.retention.as_ms(),
            stop_rx,
        ))];
        tracing::info!(
            outbox = %outbox.path().display(),
            receivers = ?names,
            open_incidents = lifecycle.incidents().len(),
            pruned = pruned.rows,
            "Incident outbox open."
        );
        let m = Arc::new(IncidentManager {
            outbox,
            lifecycle: Mutex::new(lifecycle),
            receivers: Mutex::new(receivers),
            console,
            serves_console,
            metrics,
            clock,
            stop,
            workers: Mutex::new(workers),
            failing: std::sync::atomic::AtomicBool::new(false),
            ownership: Mutex::new(None),
            unrouted_logged: Mutex::new(std::collections::BTreeSet::new()),
            event_now: std::sync::atomic::AtomicI64::new(i64::MIN),
        });
        // One instance: a receiver on an open incident's route that never
        // heard of it (a configuration changed while stopped) hears it now.
        if !opts.hand_off_queued {
            if let Err(e) = m.announce_open(&unheard) {
                tracing::warn!(error = %e, "Cannot announce open incidents to receivers that have not heard of them; they hear of them at their next change.");
            }
        }
        // Acknowledgements recorded while no service ran go out now.
        if let Err(e) = m.apply_acks() {
            tracing::warn!(error = %e, "Cannot send the pending acknowledgements; retrying at the next tick.");
        }
        Ok(m)
    }

    /// Wall-clock ms on the delivery clock (follows tokio's clock, so paused in paused-time tests).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The store (silences API, CLI, tests).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<IncidentMetrics> {
        &self.metrics
    }

    /// Names of the receivers that deliver in this process.
    pub fn receivers(&self) -> Vec<String> {
        self.receivers.lock().map(|r| r.names()).unwrap_or_default()
    }

    /// Readies a reloaded configuration without changing anything: reads the
    /// receivers' secrets and builds their clients, so a reload that cannot
    /// work is refused whole.
    pub fn prepare(&self, cfg: &Config) -> Result<PreparedReload, IncidentError> {
        Ok(PreparedReload {
            cfg: cfg.clone(),
            receivers: workers::prepare(cfg, self.console.as_ref(), self.serves_console)?,
        })
    }

    /// Switches to a prepared configuration: routes, rule metadata (open
    /// incidents take their rules' new description, runbook and dashboard in
    /// their next notification) and receivers (see [`super::workers`]).
    /// Open incidents stay open.
    pub fn apply(&self, p: PreparedReload) -> Result<ReceiverChanges, IncidentError> {
        let changes = match self.receivers.lock() {
            Ok(mut r) => r.apply(p.receivers),
            Err(_) => return Err(OutboxError::Poisoned.into()),
        };
        self.step(|lc, ch, _, _| {
            lc.reconfigure(&p.cfg, ch);
            Ok(())
        })?;
        for r in &p.cfg.rules {
            self.metrics.add_rule(&r.name);
        }
        self.metrics.add_routes(&p.cfg);
        tracing::info!(kept = ?changes.kept, added = ?changes.added, changed = ?changes.changed, removed = ?changes.removed, "Incident routes, rule metadata and receivers reloaded.");
        // A receiver the reload added (or renamed) hears the open incidents
        // of its routes now.
        if let Err(e) = self.announce_open(&changes.added) {
            tracing::warn!(error = %e, "Cannot announce open incidents to the receivers the reload added; they hear of them at their next change.");
        }
        Ok(changes)
    }

    /// The open incidents (for dashboards and tests).
    pub fn open_incidents(&self) -> Vec<lifecycle::Incident> {
        self.lifecycle
            .lock()
            .map(|l| l.incidents().values().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies alert transitions (those seen before are skipped), then what is
    /// due at event time `now`; persists everything, then wakes the workers.
    pub fn submit(&self, transitions: &[Transition], now: i64) -> Result<Submitted, IncidentError> {
        self.submit_with(transitions, now, false)
    }

    /// [`IncidentManager::submit`] for a scaled instance's incident
    /// partitions: every transition is applied, also one this outbox
    /// recorded as applied before. Their sequencer
    /// ([`crate::repartition::IncidentFeed`]) already drops what the state
    /// they were restored from covers (transitions behind its release point);
    /// what comes after was not in that state, even if this instance applied
    /// it before a crash — its outbox kept the record, the changelog
    /// checkpoint (older) did not keep the incident. Skipping such a
    /// transition lost the incident: its updates and resolve never came, and
    /// the next alert opened another one. The notifications such a transition
    /// re-creates are stored once per receiver, incident and `seq`, so the
    /// ones sent before are not sent again.
    pub(crate) fn submit_sequenced(
        &self,
        transitions: &[Transition],
        now: i64,
    ) -> Result<Submitted, IncidentError> {
        self.submit_with(transitions, now, true)
    }

    fn submit_with(
        &self,
        transitions: &[Transition],
        now: i64,
        again: bool,
    ) -> Result<Submitted, IncidentError> {
        self.saw_event_time(
            transitions
                .iter()
                .map(|t| t.at)
                .max()
                .unwrap_or(now)
                .max(now),
        );
        self.step(|lc, ch, tx, out| {
            for t in transitions {
                // What fell due before this transition goes out first, in event-time order.
                lc.due(t.at, &mut NoValues, ch);
                if tx.mark_applied(t)? || again {
                    out.applied += 1;
                    lc.apply(t, ch);
                }
            }
            lc.due(now, &mut NoValues, ch);
            Ok(())
        })
    }

    /// When the next open or progress update falls due (event time).
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.lifecycle.lock().ok().and_then(|l| l.next_due())
    }

    /// Sends the opens and progress updates due at event time `now`, with
    /// current values from `values` (the engine).
    pub fn tick(&self, now: i64, values: &mut dyn ValueSource) -> Result<Submitted, IncidentError> {
        self.saw_event_time(now);
        let due = self
            .lifecycle
            .lock()
            .map(|l| l.next_due().is_some_and(|d| d <= now))
            .unwrap_or(true);
        if !due {
            return Ok(Submitted::default());
        }
        self.step(|lc, ch, _, _| {
            lc.due(now, values, ch);
            Ok(())
        })
    }

    /// The input ended at event time `now`: sends what fell due by then
    /// (opens, progress updates) and every open still waiting for its group window.
    pub(crate) fn flush(&self, now: i64) -> Result<Submitted, IncidentError> {
        self.saw_event_time(now);
        self.step(|lc, ch, _, _| {
            lc.flush(now, ch);
            Ok(())
        })
    }

    /// Notes event time `t` (the latest is kept).
    fn saw_event_time(&self, t: i64) {
        self.event_now
            .fetch_max(t, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where an operator's action on incident `key` now falls on the
    /// incidents' event-time axis: the latest event time the engine gave,
    /// else (nothing read since the start: `outbox deliver`, a service just
    /// started) the latest the incident knows of, else the wall clock. A
    /// stream read behind the wall clock (a backlog, history) would
    /// otherwise get a close or acknowledgement days after its incidents'
    /// other times, and durations mixing both.
    pub(crate) fn action_time(&self, lc: &Lifecycle, key: &str) -> i64 {
        match self.event_now.load(std::sync::atomic::Ordering::Relaxed) {
            i64::MIN => lc.latest_time(key).unwrap_or_else(|| self.clock.now_ms()),
            t => t,
        }
    }

    /// What queueing a notification at wall time `wall` needs: the active
    /// silences, the enabled receivers and those taking acknowledgements.
    fn queueing(&self, wall: i64) -> Result<Queueing, IncidentError> {
        let silences: Vec<Silence> = self
            .outbox
            .silences()?
            .into_iter()
            .filter(|s| s.active(wall))
            .collect();
        let (enabled, acknowledging) = self
            .receivers
            .lock()
            .map(|r| (r.names(), r.acknowledging()))
            .unwrap_or_default();
        Ok((silences, enabled, acknowledging))
    }

    fn step(
        &self,
        f: impl FnOnce(&mut Lifecycle, &mut Changes, &Tx<'_>, &mut Submitted) -> Result<(), OutboxError>,
    ) -> Result<Submitted, IncidentError> {
        let wall = self.clock.now_ms();
        let (silences, enabled, acknowledging) = self.queueing(wall)?;
        let mut lc = self.lifecycle.lock().map_err(|_| OutboxError::Poisoned)?;
        let mut muted_for: Vec<String> = Vec::new();
        let result = self.outbox.transaction(wall, |tx| {
            let mut ch = Changes::default();
            let mut out = Submitted::default();
            f(&mut lc, &mut ch, tx, &mut out)?;
            for n in &ch.notifications {
                // The route's receivers; and a receiver that heard the open
                // hears the rest until the resolve, even if a reload took it
                // off the route. An acknowledgement goes only to receivers
                // that take them and heard the open.
                let route = lc.route_receivers(&n.route);
                let mut receivers = Vec::new();
                for rec in &enabled {
                    let takes = match n.action {
                        Action::Open => route.contains(rec),
                        Action::Acknowledge => {
                            acknowledging.contains(rec) && tx.announced(rec, &n.dedup_key)?
                        }
                        _ => route.contains(rec) || tx.announced(rec, &n.dedup_key)?,
                    };
                    if takes {
                        receivers.push(rec);
                    }
                }
                for rec in receivers {
                    match enqueue(tx, rec, n, &silences, wall)? {
                        Some(Status::Muted) => {
                            out.muted += 1;
                            muted_for.push(rec.clone());
                        }
                        Some(_) => out.queued += 1,
                        None => {}
                    }
                }
            }
            for key in &ch.saved {
                if let Some(inc) = lc.incident(key) {
                    tx.save_incident(inc)?;
                }
            }
            for key in &ch.removed {
                tx.delete_incident(key)?;
            }
            out.notifications = ch.notifications.len();
            Ok((out, ch.notifications, ch.unrouted))
        });
        match result {
            Ok((out, notifications, unrouted)) => {
                if self
                    .failing
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::info!(outbox = %self.outbox.path().display(), "The outbox stores incident changes again.");
                }
                self.metrics.open_incidents.set(lc.incidents().len() as i64);
                drop(lc);
                for rec in &muted_for {
                    self.metrics
                        .notifications
                        .with_label_values(&[rec, "muted"])
                        .inc();
                }
                for n in &notifications {
                    self.metrics
                        .incidents
                        .with_label_values(&[&n.route, n.action.as_str()])
                        .inc();
                    tracing::info!(incident = %n.dedup_key, action = n.action.as_str(), seq = n.seq, severity = n.severity.as_str(), alerts = n.alerts.len(), "Incident {}.", n.action.as_str());
                }
                self.note_unrouted(&unrouted);
                if out.queued > 0 {
                    if let Ok(r) = self.receivers.lock() {
                        r.wake_all();
                    }
                }
                Ok(out)
            }
            Err(e) => {
                self.metrics.write_failures.inc();
                if self
                    .failing
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::debug!(error = %e, "The outbox still cannot store incident changes.");
                } else {
                    tracing::error!(error = %e, outbox = %self.outbox.path().display(), "Cannot persist incident notifications (disk full or read-only?); this batch is not queued and is retried.");
                }
                match self.outbox.load_incidents() {
                    Ok(stored) => lc.restore(stored),
                    Err(e2) => {
                        tracing::error!(error = %e2, "Cannot reload incidents after a failed write.")
                    }
                }
                Err(e.into())
            }
        }
    }
}

/// Active silences, enabled receivers, receivers taking acknowledgements.
type Queueing = (Vec<Silence>, Vec<String>, Vec<String>);

/// Queues (or mutes) one notification for one receiver. A receiver that never
/// heard of the incident (its open was muted) gets its first unmuted update
/// as an `open`, and no `resolve` for it.
fn enqueue(
    tx: &Tx<'_>,
    receiver: &str,
    n: &Notification,
    silences: &[Silence],
    wall: i64,
) -> Result<Option<Status>, OutboxError> {
    let announced = n.action != Action::Open && tx.announced(receiver, &n.dedup_key)?;
    let muted = silence::mutes(silences, n, wall);
    let (status, row) = match n.action {
        Action::Resolve if announced => (Status::Pending, None),
        Action::Resolve => (Status::Muted, None),
        _ if muted => (Status::Muted, None),
        Action::Update if !announced => {
            let mut open = n.clone();
            open.action = Action::Open;
            open.summary = model::summary(&open);
            (Status::Pending, Some(open))
        }
        _ => (Status::Pending, None),
    };
    let inserted = tx.enqueue(receiver, row.as_ref().unwrap_or(n), status)?;
    if inserted && status == Status::Muted {
        tracing::info!(receiver, incident = %n.dedup_key, action = n.action.as_str(), "Notification muted by a silence; recorded, not delivered.");
    }
    Ok(inserted.then_some(status))
}

mod acks;
#[cfg(test)]
mod adopt_tests;
mod announce;
#[cfg(test)]
mod announce_tests;
#[cfg(test)]
mod batch_tests;
mod closing;
mod ownership;
#[cfg(test)]
mod sequenced_tests;
mod shared;
pub(super) mod stopping;
mod unrouted;
#[cfg(test)]
mod unrouted_tests;
