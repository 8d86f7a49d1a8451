//! Receivers new to the configuration while incidents are open on their
//! routes: one a reload added or renamed, or — at a start — one the outbox
//! had no row of before its prune (the configuration changed while the
//! service was stopped).
//! They hear each open incident's latest state at once, as an `open`,
//! rather than at its next change — which may never come before it
//! resolves. For an `alertmanager` receiver that matters most: it re-pushes
//! only the incidents it heard of, so a receiver renamed in the
//! configuration left every open incident to expire in Alertmanager, a
//! false all-clear, and renaming it back paged them all again. A receiver
//! the configuration already had keeps what it heard: a route moved from
//! one existing receiver to another leaves the open incidents with the
//! first (README "Hot reload").

use super::super::outbox::{OutboxError, Status};
use super::super::IncidentError;
use super::{enqueue, IncidentManager};

impl IncidentManager {
    /// Queues, for each of `new` (receivers new to the configuration) that
    /// is enabled and on an open incident's route and has not heard of it,
    /// the incident's latest notification as an `open` (a silence still
    /// mutes it), and for an incident acknowledged before, to a receiver
    /// that takes acknowledgements, its acknowledgement after it. Returns
    /// how many opens were queued.
    pub(crate) fn announce_open(&self, new: &[String]) -> Result<usize, IncidentError> {
        let wall = self.clock.now_ms();
        let (silences, enabled, acknowledging) = self.queueing(wall)?;
        let lc = self.lifecycle.lock().map_err(|_| OutboxError::Poisoned)?;
        let queued = self.outbox.transaction(wall, |tx| {
            let mut queued = Vec::new();
            let enabled: Vec<&String> = enabled.iter().filter(|r| new.contains(r)).collect();
            if enabled.is_empty() {
                return Ok(queued);
            }
            for inc in lc.incidents().values().filter(|i| i.opened) {
                let route = lc.route_receivers(&inc.route);
                let mut deaf = Vec::new();
                for rec in enabled.iter().copied().filter(|r| route.contains(r)) {
                    if !tx.announced(rec, &inc.key)? {
                        deaf.push(rec);
                    }
                }
                if deaf.is_empty() {
                    continue;
                }
                let Some(n) = tx.latest_announcement(&inc.key)? else {
                    continue;
                };
                // Acknowledged before: a receiver that takes
                // acknowledgements hears that too, after the open (queued
                // after it, it is sent after it), else a pager would page
                // for an incident a responder already has.
                let ack = if inc.acknowledged {
                    tx.latest_acknowledgement(&inc.key)?
                } else {
                    None
                };
                for rec in deaf {
                    if enqueue(tx, rec, &n, &silences, wall)? == Some(Status::Pending) {
                        queued.push((rec.clone(), inc.key.clone()));
                        if let Some(a) = ack.as_ref().filter(|_| acknowledging.contains(rec)) {
                            enqueue(tx, rec, a, &silences, wall)?;
                        }
                    }
                }
            }
            Ok(queued)
        })?;
        drop(lc);
        for (receiver, incident) in &queued {
            tracing::info!(%receiver, %incident, "Open incident announced to a receiver on its route that had not heard of it.");
        }
        if !queued.is_empty() {
            if let Ok(r) = self.receivers.lock() {
                r.wake_all();
            }
        }
        Ok(queued.len())
    }
}
