//! Operator actions shared by the instances of a scaled group
//! (`src/run/scaled/controls.rs`): what this instance holds, and a close
//! request of any instance applied by the owner of the incident's partition,
//! its outcome recorded in the same transaction as the `resolve`.

use super::super::model::Reason;
use super::super::peers::Held;
use super::super::routing::incident_partition;
use super::{IncidentError, IncidentManager};

impl IncidentManager {
    /// Whether this instance owns incident partition `p`; `None` before an
    /// ownership was set (one embedded instance).
    pub(crate) fn owns_partition(&self, p: u32) -> Option<bool> {
        self.ownership
            .lock()
            .ok()
            .and_then(|o| o.as_ref().map(|o| o.owns_partition(p)))
    }

    /// The open incidents held here, each with its partition of `partitions`.
    pub(crate) fn holdings(&self, partitions: u32) -> Vec<Held> {
        let mut out: Vec<Held> = self
            .open_incidents()
            .into_iter()
            .map(|i| Held {
                partition: incident_partition(&i.route, &i.labels, partitions),
                severity: i
                    .alerts
                    .iter()
                    .filter(|a| a.active)
                    .map(|a| a.severity)
                    .max()
                    .map(|s| s.as_str().to_string()),
                opened: i.opened,
                started_at: i.started_at,
                key: i.key,
                route: i.route,
                labels: i.labels,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Applies a close request of any instance here (the caller checked that
    /// this instance owns the incident's partition, or holds it): closes the
    /// incident now (wall clock) with reason `closed`, or finds it no longer
    /// open; records `outcome_body(outcome)` under `outcome_key` in the same
    /// transaction. Returns the outcome (`closed` or `not_open`).
    pub(crate) fn close_shared(
        &self,
        incident: &str,
        reason: &str,
        by: &str,
        outcome_key: &str,
        outcome_body: impl FnOnce(&str) -> String,
    ) -> Result<&'static str, IncidentError> {
        let at = self.clock.now_ms();
        let note = format!("{reason} (by {by})");
        let mut outcome = "not_open";
        self.step(|lc, ch, tx, _| {
            if lc.close(incident, at, Reason::Closed, &note, ch) {
                outcome = "closed";
            }
            tx.record_control_outcome(outcome_key, &outcome_body(outcome))
        })?;
        if outcome == "closed" {
            tracing::info!(
                incident,
                reason,
                by,
                "Incident closed by an operator (through the controls topic)."
            );
        }
        Ok(outcome)
    }
}
