//! Responders' acknowledgements reach the receivers: the manager reads the
//! ones recorded in the outbox's feedback log (by `crisiswatch incident ack`,
//! the admin API or the console, possibly from another process) and queues
//! each incident's `acknowledge` notification (see
//! [`Lifecycle::acknowledge`](super::super::lifecycle::Lifecycle::acknowledge)).

use super::super::model::Acknowledgement;
use super::{IncidentError, IncidentManager};

impl IncidentManager {
    /// Queues the `acknowledge` of every open incident acknowledged since
    /// the last call, for the receivers that take acknowledgements and heard
    /// its open, in the same transaction that marks the acknowledgements
    /// handled (so each is sent once, and one made while no service ran is
    /// sent at the next start). Returns how many incidents it notified of.
    pub(crate) fn apply_acks(&self) -> Result<usize, IncidentError> {
        if !self.outbox.has_pending_acks()? {
            return Ok(0);
        }
        let mut sent = Vec::new();
        self.step(|lc, ch, tx, _| {
            let acks = tx.pending_acks()?;
            for a in &acks {
                // On the incidents' event-time axis, as a close
                // ([`IncidentManager::action_time`]); the feedback log
                // keeps the wall-clock time it was made.
                let ack = Acknowledgement {
                    by: a.by.clone(),
                    note: a.note.clone(),
                    at: self.action_time(lc, &a.incident),
                };
                if lc.acknowledge(&a.incident, ack, ch) {
                    sent.push((a.incident.clone(), a.by.clone()));
                }
            }
            if let Some(last) = acks.last() {
                tx.acks_handled(last.id)?;
            }
            Ok(())
        })?;
        for (key, by) in &sent {
            tracing::info!(incident = %key, by = %by, "Incident acknowledged; receivers that take acknowledgements are notified.");
        }
        Ok(sent.len())
    }
}
