//! Incident groups that move between instances (`sources.kafka.scale_out`):
//! the manager keeps only the incident partitions this instance is
//! assigned, takes over a partition's open incidents from its checkpoint,
//! and gives them up, without notifying anyone, when the partition leaves.

use super::super::lifecycle::{Changes, Incident};
use super::super::routing::{incident_partition, Ownership};
use super::{IncidentError, IncidentManager};

impl IncidentManager {
    /// Keeps only the incident groups of incident partitions `owned` (of
    /// `partitions`); open incidents of other groups (from this instance's
    /// outbox, before the group assigned it partitions) are given up.
    pub(crate) fn set_ownership(
        &self,
        partitions: u32,
        owned: &[u32],
    ) -> Result<Vec<Incident>, IncidentError> {
        let ownership = Ownership::new(partitions, owned.iter().copied());
        let given_up = self.give_up(|i| !ownership.owns(&i.route, &i.labels))?;
        if let Ok(mut o) = self.ownership.lock() {
            *o = Some(ownership.clone());
        }
        if let Ok(mut lc) = self.lifecycle.lock() {
            lc.set_ownership(ownership);
        }
        Ok(given_up)
    }

    /// The open incidents of incident partition `partition` (of `partitions`).
    pub(crate) fn incidents_of(&self, partitions: u32, partition: u32) -> Vec<Incident> {
        self.lifecycle
            .lock()
            .map(|l| {
                l.incidents()
                    .values()
                    .filter(|i| incident_partition(&i.route, &i.labels, partitions) == partition)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The receivers that heard of incident `key` here (an unmuted
    /// notification, or one handed over with the incident).
    pub(crate) fn heard_by(&self, key: &str) -> Result<Vec<String>, IncidentError> {
        let receivers = self.receivers();
        Ok(self.outbox.transaction(self.clock.now_ms(), |tx| {
            let mut heard = Vec::new();
            for r in receivers {
                if tx.announced(&r, key)? {
                    heard.push(r);
                }
            }
            Ok(heard)
        })?)
    }

    /// Takes over open incidents (a moved partition's checkpoint), each with
    /// the receivers that heard of it on its former instance: they continue
    /// here as if they had always been here (a resolve reaches whoever
    /// heard the open).
    pub(crate) fn adopt(
        &self,
        incidents: Vec<(Incident, Vec<String>)>,
    ) -> Result<(), IncidentError> {
        if incidents.is_empty() {
            return Ok(());
        }
        self.step(|lc, ch, tx, _| {
            for (inc, heard) in incidents {
                for r in &heard {
                    tx.hand_over(r, &inc.key)?;
                }
                ch.saved.insert(inc.key.clone());
                lc.insert(inc);
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Forgets the open incidents `leaves` picks (their partition went to
    /// another instance, which continues them): no notification.
    pub(crate) fn give_up(
        &self,
        leaves: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, IncidentError> {
        let mut gone = Vec::new();
        self.step(|lc, ch: &mut Changes, _, _| {
            gone = lc.take(&leaves);
            ch.removed.extend(gone.iter().map(|i| i.key.clone()));
            Ok(())
        })?;
        Ok(gone)
    }
}
