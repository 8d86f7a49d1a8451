//! Incidents and the engine's alerts out of step: incidents that end
//! without their alerts resolving — an operator's close request, or alerts
//! the engine no longer has (see
//! [`Lifecycle::close`](super::lifecycle::Lifecycle::close) and
//! [`Lifecycle::retire`](super::lifecycle::Lifecycle::retire)) — and firing
//! alerts an outbox never heard of ([`IncidentManager::adopt_firing`]).

use std::collections::{HashMap, HashSet};

use super::super::model::{AlertEvidence, Reason};
use super::{IncidentError, IncidentManager};
use crate::alert::Transition;

impl IncidentManager {
    /// Applies what operators and responders asked for through the outbox:
    /// first the acknowledgements recorded since the last call
    /// ([`IncidentManager::apply_acks`]), then the queued close requests
    /// (`crisiswatch incident close`, the admin API): each open incident
    /// named closes now — at the latest event time the engine gave
    /// ([`IncidentManager::action_time`]) — with a `resolve` carrying the
    /// operator's reason. Returns how many closed.
    pub(crate) fn apply_close_requests(&self) -> Result<usize, IncidentError> {
        self.apply_acks()?;
        let requests = self.outbox.pending_close_requests()?;
        if requests.is_empty() {
            return Ok(0);
        }
        let mut closed = Vec::new();
        self.step(|lc, ch, tx, _| {
            for r in &requests {
                let at = self.action_time(lc, &r.incident);
                let note = format!("{} (by {})", r.reason, r.requested_by);
                let done = lc.close(&r.incident, at, Reason::Closed, &note, ch);
                tx.finish_close_request(r.id, if done { "closed" } else { "not_open" })?;
                if done {
                    closed.push((r.incident.clone(), r.reason.clone(), r.requested_by.clone()));
                }
            }
            Ok(())
        })?;
        for (key, reason, by) in &closed {
            tracing::info!(incident = %key, reason = %reason, by = %by, "Incident closed by an operator.");
        }
        Ok(closed.len())
    }

    /// Whether an open incident has an active alert (what
    /// [`IncidentManager::retire_missing`] looks at).
    pub(crate) fn has_active_alerts(&self) -> bool {
        self.lifecycle
            .lock()
            .map(|l| l.has_active_alerts())
            .unwrap_or(false)
    }

    /// Alerts of open incidents that the engine no longer has leave them.
    ///
    /// `live` are the engine's active alert keys, `rules` its rule names and
    /// `clock` its event-time clock. An alert counts as gone when it is not
    /// in `live` and either its rule no longer exists or the engine's clock
    /// has reached the time it fired. An alert that fired later than the
    /// engine's clock (its transition was persisted after the restored
    /// checkpoint, or there is no checkpoint and the consumer reads from the
    /// start) is re-derived under the same key once the engine reads those
    /// events again, so it is left alone until then; after a state reset the
    /// engine's clock passes it with the first events read (or, on a quiet
    /// stream, when event time follows the wall clock). Incidents left
    /// without active alerts close with reason `alert_gone` at `clock`.
    /// Returns the incidents closed and how many notifications were queued.
    pub(crate) fn retire_missing(
        &self,
        live: &HashSet<String>,
        rules: &HashSet<String>,
        clock: Option<i64>,
    ) -> Result<(Vec<String>, usize), IncidentError> {
        let at = clock.unwrap_or_else(|| self.clock.now_ms());
        let gone = |a: &AlertEvidence| {
            !live.contains(&a.dedup_key)
                && (!rules.contains(&a.rule) || clock.is_some_and(|c| a.fired_at <= c))
        };
        let any = self
            .lifecycle
            .lock()
            .map(|l| {
                l.incidents()
                    .values()
                    .any(|i| i.alerts.iter().any(|a| a.active && gone(a)))
            })
            .unwrap_or(false);
        if !any {
            return Ok((Vec::new(), 0));
        }
        if let Ok(l) = self.lifecycle.lock() {
            for a in l.incidents().values().flat_map(|i| i.alerts.iter()) {
                if a.active && gone(a) {
                    tracing::debug!(alert = %a.dedup_key, fired_at = a.fired_at, clock = ?clock, live = live.len(), "Alert of an open incident not in the engine.");
                }
            }
        }
        self.retire_where(gone, at)
    }

    /// The active alerts of the open incidents: each one's dedup key and a
    /// time before which its engine may still derive it again: the end of
    /// its first window (its breach's start plus its window: older events
    /// are late past that, with the engine's lateness on top), and no
    /// earlier than the incident's latest notification (an earlier run
    /// reached that far; a later input that overlaps it in time must not
    /// end the incident before what the receivers were already told).
    pub(crate) fn active_alerts(&self) -> Result<Vec<(String, i64)>, IncidentError> {
        let alerts: Vec<(String, String, i64)> = self
            .lifecycle
            .lock()
            .map(|l| {
                l.incidents()
                    .values()
                    .flat_map(|i| i.alerts.iter().map(move |a| (i, a)))
                    .filter(|(_, a)| a.active)
                    .map(|(i, a)| {
                        (
                            i.key.clone(),
                            a.dedup_key.clone(),
                            a.started_at.saturating_add(a.window_ms),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut last: HashMap<String, Option<i64>> = HashMap::new();
        let mut out = Vec::with_capacity(alerts.len());
        for (incident, alert, end) in alerts {
            let told = match last.get(&incident) {
                Some(&t) => t,
                None => {
                    let t = self.outbox.last_notified_at(&incident)?;
                    last.insert(incident, t);
                    t
                }
            };
            out.push((alert, told.map_or(end, |t| t.max(end))));
        }
        Ok(out)
    }

    /// The active alerts `gone` picks leave their incidents; incidents left
    /// without active alerts close with reason `alert_gone` at `at`.
    /// Returns the incidents closed and how many notifications were queued.
    pub(crate) fn retire_where(
        &self,
        gone: impl Fn(&AlertEvidence) -> bool,
        at: i64,
    ) -> Result<(Vec<String>, usize), IncidentError> {
        let mut closed = Vec::new();
        let queued = self
            .step(|lc, ch, _, _| {
                closed = lc.retire(&gone, at, ch);
                Ok(())
            })?
            .queued;
        for key in &closed {
            tracing::warn!(incident = %key, "Incident closed: its alerts no longer exist in the engine (rule changed or removed, or engine state reset).");
        }
        Ok((closed, queued))
    }

    /// Firing alerts this outbox never heard of join incidents as if they
    /// had just fired: `firing` are the engine's firing alert instances at
    /// a start restored from a checkpoint
    /// ([`ShardedEngine::firing_transitions`](crate::engine::ShardedEngine::firing_transitions)).
    /// An outbox moved aside (damaged) or removed beside a kept checkpoint
    /// otherwise knows none of their incidents: the receivers that were paged
    /// before would never hear the resolve, and an escalation would join
    /// nothing. An incident's key depends on its route, labels and first
    /// alert's start only, so it comes back under the key the receivers
    /// know when its first alert still fires (a trigger they deduplicate;
    /// one resolved by hand meanwhile opens again — the alert is still
    /// firing). Only an outbox with no history at all adopts: in one that
    /// has some, an alert without a record is one whose record was pruned
    /// after `incidents.retention` (an incident an operator closed would
    /// page again at every restart). Returns the dedup keys of the alerts
    /// adopted.
    pub(crate) fn adopt_firing(&self, firing: &[Transition]) -> Result<Vec<String>, IncidentError> {
        if firing.is_empty() {
            return Ok(Vec::new());
        }
        let mut adopted = Vec::new();
        let now = firing.iter().map(|t| t.at).max().unwrap_or(i64::MIN);
        self.step(|lc, ch, tx, out| {
            if tx.has_history()? {
                return Ok(());
            }
            for t in firing {
                if tx.knows_alert(&t.dedup_key)? {
                    continue;
                }
                lc.due(t.at, &mut super::NoValues, ch);
                if tx.mark_applied(t)? {
                    out.applied += 1;
                    lc.apply(t, ch);
                    adopted.push(t.dedup_key.clone());
                }
            }
            lc.due(now, &mut super::NoValues, ch);
            Ok(())
        })?;
        Ok(adopted)
    }
}
