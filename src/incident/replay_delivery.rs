//! Incident delivery for `crisiswatch replay`: when the configuration has an
//! HTTP receiver with a URL, the replay's transitions also go through the
//! incident manager — persisted to the outbox, delivered, drained at the end
//! within `incidents.drain_timeout` — while standard output keeps the
//! transitions exactly as before.
//!
//! Replaying the same input again is safe: transitions already applied are
//! recognised in the outbox and skipped, and queued notifications left by an
//! interrupted run are delivered first.
//!
//! Like the live service at its start, a replay first applies what
//! operators and responders asked for offline (`crisiswatch incident close`,
//! `incident ack`); and alerts of open incidents that its engine does not
//! have — a history replayed in parts into one data directory: the engine
//! of the second part never saw the first part's alerts, which could then
//! never resolve — leave their incidents (`alert_gone`), as `run` retires
//! them: once its transitions (or its clock, where a progress update falls
//! due) are past the time the engine could still derive them again and
//! past the incident's latest notification, or at the end of the input.
//!
//! Progress updates show the engine's current values, as `run`'s do: after
//! each line the engine applied, what fell due by its clock goes out
//! ([`ReplayDelivery::on_applied`]).
//!
//! The summary counts what became of this run's notifications (those it
//! queued and those left queued by an earlier run) from the outbox: delivered,
//! refused, dead-lettered or still queued, so a replay whose receivers refused
//! everything does not read as a success.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::alert::Transition;
use crate::config::Config;
use crate::engine::Engine;

use super::outbox::{Outbox, OutboxError, Status};
use super::{has_http_receivers, DrainReport, IncidentError, IncidentManager, ManagerOptions};

/// The incident side of one replay.
pub struct ReplayDelivery {
    runtime: tokio::runtime::Runtime,
    manager: Arc<IncidentManager>,
    drain: std::time::Duration,
    error: Option<IncidentError>,
    submitted: usize,
    /// Transitions not yet handed to the incident manager: they go in
    /// batches of [`BATCH`], as `run` hands over each engine batch. (One
    /// at a time, each rewrote its incident whole: a crisis on thousands of
    /// slices took minutes, quadratic in its alerts.) The same
    /// notifications either way: each transition's due work runs at its
    /// own event time.
    pending: Vec<Transition>,
    /// When the next open or progress update falls due, as the manager last
    /// said (it changes only through this run's hand-overs and ticks).
    due: Option<i64>,
    /// The outbox rows this run answers for, as found before it started.
    start: RunStart,
    /// Active alerts of the incidents an earlier run left open that this
    /// run's engine has not derived again, each with the time past which it
    /// cannot any more (its breach's start plus its window and
    /// `allowed_lateness`: the events that would start it again are late
    /// there, so a transition later than that means the engine will never
    /// have it — also with events later than `allowed_lateness` in the
    /// input, whose transitions come out of time order), and never before
    /// the incident's latest notification (parts that overlap in time: a
    /// resolve is not dated before an update the receivers already have).
    /// It then leaves its
    /// incident, as `run` retires alerts its engine does not have once the
    /// clock passes them (a history replayed in parts: the second part never
    /// sees the first part's alerts, whose incident sent "still firing" with
    /// their last values for the whole second part). The same input
    /// replayed again derives every one of them again: nothing is retired.
    inherited: HashMap<String, i64>,
    /// The earliest time in `inherited`.
    inherited_first: i64,
    /// One sender per outbox (see `crate::dir_lock`).
    _lock: crate::dir_lock::DirLock,
}

/// Where the outbox stood before the replay: its rows after `last_id` are the
/// ones the replay queued; `carried` were left queued by an earlier run and
/// are sent by this one.
#[derive(Debug, Default)]
struct RunStart {
    /// The newest row id (0 in an empty outbox).
    last_id: i64,
    /// Rows pending before the replay started.
    carried: BTreeSet<i64>,
}

/// What became of this run's notifications, from the outbox after the drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Answered 2xx.
    pub(crate) delivered: usize,
    /// Refused for good by the receiver (a 4xx other than 429).
    pub(crate) failed: usize,
    /// Not delivered within the receiver's `max_age`.
    pub(crate) dead: usize,
    /// Still queued when the outbox was read (the drain timed out).
    pub(crate) pending: usize,
}

/// What the incident side of a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayIncidents {
    /// Rows queued for receivers during the replay.
    pub(crate) queued: usize,
    /// What the final drain left.
    pub(crate) drain: DrainReport,
    /// What became of this run's rows.
    pub(crate) outcome: Outcome,
}

impl fmt::Display for ReplayIncidents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Outcome {
            delivered,
            failed,
            dead,
            pending,
        } = self.outcome;
        // Both from the outbox read once after the drain: a request in
        // flight when `drain_timeout` passed is counted where it ended.
        write!(
            f,
            "incidents:    {} notification(s) queued, {pending} still undelivered; \
             this run: {delivered} delivered, {failed} failed (refused by the receiver), \
             {dead} dead-lettered (not delivered within max_age)",
            self.queued
        )?;
        if pending > 0 {
            write!(
                f,
                "\nwarning: {pending} incident notification(s) are still queued after \
                 incidents.drain_timeout: `crisiswatch outbox --config <file> deliver` \
                 sends them (so does the next replay or start of the service)"
            )?;
        }
        // The exit code stays 0 (the transitions were written; delivery is
        // the receivers' side): the warning says what was not delivered.
        if let Some(hint) = not_delivered(failed as u64, dead as u64) {
            write!(f, "\nwarning: {hint}")?;
        }
        Ok(())
    }
}

/// What was not delivered — `failed` refused by a receiver (4xx), `dead`
/// dead-lettered — and the commands that list and queue each again
/// (`None`: nothing).
pub(crate) fn not_delivered(failed: u64, dead: u64) -> Option<String> {
    if failed + dead == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if failed > 0 {
        parts.push(format!(
            "{failed} refused (`crisiswatch outbox --config <file> list --status failed`)"
        ));
    }
    if dead > 0 {
        parts.push(format!(
            "{dead} dead-lettered (`crisiswatch outbox --config <file> list --status dead`)"
        ));
    }
    Some(format!(
        "{} incident notification(s) were not delivered: {}; \
         `crisiswatch outbox --config <file> retry` queues dead letters again \
         (`--include-failed`: the refused too)",
        failed + dead,
        parts.join(", ")
    ))
}

/// Transitions handed to the incident manager at a time.
const BATCH: usize = 512;

/// Event time after which pending transitions are handed over whatever
/// their number, so that the opens and progress updates they make due are
/// known while the engine's values are at hand ([`ReplayDelivery::on_applied`]).
const HAND_OVER_MS: i64 = 60_000;

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
        let lock = crate::dir_lock::DirLock::acquire(Path::new(&cfg.incidents.data_dir))?;
        // Before the manager opens: its workers start sending at once.
        let start = RunStart::read(&Outbox::open(Path::new(&cfg.incidents.data_dir))?)?;
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
        {
            let _guard = runtime.enter();
            let closed = manager.apply_close_requests()?;
            if closed > 0 {
                crate::say!(
                    "{closed} incident(s) closed as operators asked (crisiswatch incident close)"
                );
            }
        }
        let lateness = cfg.engine.allowed_lateness.as_ms();
        let inherited: HashMap<String, i64> = manager
            .active_alerts()?
            .into_iter()
            .map(|(k, end)| (k, end.saturating_add(lateness)))
            .collect();
        // Incidents an earlier run left open may have updates due already.
        let due = manager.next_due();
        Ok(Some(ReplayDelivery {
            runtime,
            manager,
            drain: cfg.incidents.drain_timeout.0,
            error: None,
            submitted: 0,
            pending: Vec::new(),
            due,
            start,
            inherited_first: inherited.values().copied().min().unwrap_or(i64::MAX),
            inherited,
            _lock: lock,
        }))
    }

    /// Takes one transition; its notifications are persisted with the
    /// batch it ends up in (the first error is kept for
    /// [`ReplayDelivery::finish`]).
    pub fn on_transition(&mut self, t: &Transition) {
        if self.error.is_some() {
            return;
        }
        // A batch keeps event times in order (then it does exactly what one
        // call per transition does); the engine's are, but a batch never
        // relies on it.
        if self.pending.last().is_some_and(|p| t.at < p.at) {
            self.submit_pending();
        }
        if !self.inherited.is_empty() {
            self.inherited.remove(&t.dedup_key);
            if self.inherited_first < t.at {
                self.retire_inherited(t.at);
            }
        }
        self.pending.push(t.clone());
        if self.pending.len() >= BATCH {
            self.submit_pending();
        }
    }

    /// Retires the inherited alerts that cannot be derived again by `at`
    /// (the time of a transition: the engine has passed them), after the
    /// transitions before it.
    fn retire_inherited(&mut self, at: i64) {
        self.submit_pending();
        let gone: HashSet<String> = self
            .inherited
            .iter()
            .filter(|&(_, &past)| past < at)
            .map(|(k, _)| k.clone())
            .collect();
        self.inherited.retain(|_, &mut past| past >= at);
        self.inherited_first = self.inherited.values().copied().min().unwrap_or(i64::MAX);
        if self.error.is_some() || gone.is_empty() {
            return;
        }
        let _guard = self.runtime.enter();
        match self
            .manager
            .retire_where(|a| gone.contains(&a.dedup_key), at)
        {
            Ok((_, queued)) => self.submitted += queued,
            Err(e) => self.error = Some(e),
        }
        self.due = self.manager.next_due();
    }

    /// Hands the pending transitions to the incident manager.
    fn submit_pending(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        let Some(last) = batch.last() else { return };
        if self.error.is_some() {
            return;
        }
        match self.manager.submit(&batch, last.at) {
            Ok(s) => self.submitted += s.queued,
            Err(e) => self.error = Some(e),
        }
        self.due = self.manager.next_due();
    }

    /// The engine applied another event: what fell due by its clock (a
    /// progress update, an open at its group window's end) goes out now,
    /// showing the engine's current values and hints, as `run` sends them
    /// after each batch — not the last transition's, which left a replay's
    /// updates saying "peak 5.013" of a surge that had reached 11.19.
    /// Transitions pending for [`HAND_OVER_MS`] of event time are handed
    /// over first, so their incidents' updates are known in time.
    pub fn on_applied(&mut self, engine: &mut Engine) {
        let Some(clock) = engine.clock() else { return };
        if self.error.is_some() {
            return;
        }
        if self
            .pending
            .first()
            .is_some_and(|p| clock.saturating_sub(p.at) >= HAND_OVER_MS)
        {
            self.submit_pending();
        }
        if self.due.is_none_or(|d| d > clock) {
            return;
        }
        // An earlier run's alert this engine has passed leaves its incident
        // first: a tick would page it "still firing" through a quiet stretch.
        if self.inherited_first < clock {
            self.retire_inherited(clock);
        }
        self.submit_pending();
        self.tick(clock, engine);
    }

    /// Sends what fell due by `clock` with `engine`'s values.
    fn tick(&mut self, clock: i64, engine: &mut Engine) {
        if self.error.is_some() {
            return;
        }
        let _guard = self.runtime.enter();
        match self.manager.tick(clock, engine) {
            Ok(s) => self.submitted += s.queued,
            Err(e) => self.error = Some(e),
        }
        self.due = self.manager.next_due();
    }

    /// Retires the alerts of open incidents that `engine` (at the end of
    /// the input) does not have, sends what fell due by its clock and the
    /// opens still waiting for their group window, then waits for delivery
    /// (at most `incidents.drain_timeout`).
    pub fn finish(mut self, engine: &mut Engine) -> Result<ReplayIncidents, IncidentError> {
        self.submit_pending();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let clock = engine.clock();
        if clock.is_some() && self.manager.has_active_alerts() {
            let live: HashSet<String> = engine.active_alert_keys().into_iter().collect();
            let rules: HashSet<String> = (0..engine.rule_count())
                .map(|i| engine.rule_config(i).name.clone())
                .collect();
            let _guard = self.runtime.enter();
            self.submitted += self.manager.retire_missing(&live, &rules, clock)?.1;
        }
        if let Some(now) = clock {
            // What fell due by the end goes out with the engine's values
            // (after the retires: an alert the engine no longer has sends
            // no update).
            self.due = self.manager.next_due();
            self.tick(now, engine);
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            self.submitted += self.manager.flush(now)?.queued;
        }
        let drain = self.runtime.block_on(self.manager.shutdown(self.drain));
        let outcome = self.start.outcome(self.manager.outbox())?;
        Ok(ReplayIncidents {
            queued: self.submitted,
            drain,
            outcome,
        })
    }
}

// === impl RunStart ===

impl RunStart {
    /// No limit on the rows [`Outbox::list`] returns.
    const ALL: usize = u32::MAX as usize;

    /// Where `outbox` stands now.
    fn read(outbox: &Outbox) -> Result<RunStart, OutboxError> {
        Ok(RunStart {
            last_id: newest_id(outbox)?,
            carried: outbox
                .list(Some(Status::Pending), None, Self::ALL)?
                .iter()
                .map(|r| r.id)
                .collect(),
        })
    }

    /// Counts this run's rows by status (the rows after the oldest one it
    /// answers for, newest first, are all that is read).
    fn outcome(&self, outbox: &Outbox) -> Result<Outcome, OutboxError> {
        let since = self
            .carried
            .first()
            .map_or(self.last_id, |&id| (id - 1).min(self.last_id));
        let newer = usize::try_from(newest_id(outbox)? - since).unwrap_or(0);
        let mut out = Outcome::default();
        for row in outbox.list(None, None, newer)? {
            if row.id <= self.last_id && !self.carried.contains(&row.id) {
                continue;
            }
            match row.status {
                Status::Delivered => out.delivered += 1,
                Status::Failed => out.failed += 1,
                Status::Dead => out.dead += 1,
                Status::Pending => out.pending += 1,
                Status::Muted | Status::Superseded => {}
            }
        }
        Ok(out)
    }
}

/// The newest row id of `outbox` (0 when it is empty).
pub(crate) fn newest_id(outbox: &Outbox) -> Result<i64, OutboxError> {
    Ok(outbox.list(None, None, 1)?.first().map_or(0, |r| r.id))
}

#[cfg(test)]
mod tests {
    use super::not_delivered;

    /// Refused notifications are listed with `--status failed` and queued
    /// again with `--include-failed`: the hint `replay` and `demo` print
    /// names the command that finds each kind (a 4xx is no dead letter).
    #[test]
    fn the_not_delivered_hint_names_the_commands_for_each_kind() {
        assert_eq!(not_delivered(0, 0), None);
        let refused = not_delivered(189, 0).unwrap_or_default();
        assert!(
            refused.starts_with("189 incident notification(s)"),
            "{refused}"
        );
        assert!(refused.contains("list --status failed"), "{refused}");
        assert!(!refused.contains("--status dead"), "{refused}");
        assert!(refused.contains("--include-failed"), "{refused}");
        let both = not_delivered(2, 3).unwrap_or_default();
        assert!(
            both.contains("2 refused") && both.contains("3 dead-lettered"),
            "{both}"
        );
    }
}
