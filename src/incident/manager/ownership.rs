//! Incident groups that move between instances (`sources.kafka.scale_out`):
//! the manager keeps only the incident partitions this instance is
//! assigned, takes over a partition's open incidents and queued
//! notifications from its checkpoint, and gives them up, without notifying
//! anyone, when the partition leaves: its queued notifications are marked
//! handed and are sent by the partition's next owner only (`outbox::handoff`).

use std::collections::BTreeMap;

use super::super::lifecycle::{Changes, Incident};
use super::super::metrics::IncidentMetrics;
use super::super::outbox::{Moved, Outbox, QueuedRow};
use super::super::routing::{incident_partition, Ownership};
use super::{IncidentError, IncidentManager};
use crate::alert::Labels;

/// Marks everything `outbox` has queued handed, before any delivery: an
/// instance of a scaled group owns no incident partition until the group
/// assigns it some, and their owners send what their checkpoints carry.
pub(super) fn hand_off_at_open(
    outbox: &Outbox,
    metrics: &IncidentMetrics,
    now: i64,
) -> Result<(), IncidentError> {
    outbox.set_scaled();
    outbox.await_ownership();
    let handed = outbox.hand_off_all(now)?;
    metrics.record_handed(&handed);
    if handed.total() > 0 {
        tracing::info!(
            notifications = handed.total(),
            "Queued notifications handed with their incidents to their partitions' owners (sources.kafka.scale_out); not sent from here."
        );
    }
    Ok(())
}

/// What leaves with an incident partition ([`IncidentManager::release`]).
#[derive(Debug, Default)]
pub(crate) struct Leaving {
    /// Its open incidents, each with the receivers that heard of it here.
    pub(crate) incidents: Vec<(Incident, Vec<String>)>,
    /// The notifications queued for its incidents, oldest first.
    pub(crate) queued: Vec<QueuedRow>,
    /// The keys its incidents closed, with when (`Lifecycle::closed_in`).
    pub(crate) closed: Vec<(String, i64)>,
}

impl IncidentManager {
    /// Keeps only incident partitions `owned` (of `partitions`); what the
    /// others held leaves in one transaction: their open incidents and the
    /// notifications queued for their incidents, marked handed here. No
    /// notification can be queued for them in between (an acknowledgement
    /// or an operator's close, on another thread) and stay behind.
    pub(crate) fn release(
        &self,
        partitions: u32,
        owned: &[u32],
    ) -> Result<BTreeMap<u32, Leaving>, IncidentError> {
        let keep = Ownership::new(partitions, owned.iter().copied());
        let mut out: BTreeMap<u32, Leaving> = BTreeMap::new();
        let mut handed = Moved::default();
        self.step(|lc, ch, tx, _| {
            // Every receiver the outbox knows, not only those running now:
            // at a stop the drain has stopped them all.
            let receivers = tx.receivers_known()?;
            for inc in lc.take(|i: &Incident| !keep.owns(&i.route, &i.labels)) {
                let mut heard = Vec::new();
                for r in &receivers {
                    if tx.announced(r, &inc.key)? {
                        heard.push(r.clone());
                    }
                }
                ch.removed.push(inc.key.clone());
                let q = incident_partition(&inc.route, &inc.labels, partitions);
                out.entry(q).or_default().incidents.push((inc, heard));
            }
            let ids = tx.ids_by("pending", |route, labels| {
                (!keep.owns(route, labels)).then(|| incident_partition(route, labels, partitions))
            })?;
            let only: Vec<i64> = ids.iter().map(|&(id, _)| id).collect();
            // All still queued within this transaction: one row per id.
            for (&(_, q), row) in ids.iter().zip(tx.queued_rows(&only)?) {
                out.entry(q).or_default().queued.push(row);
            }
            handed = tx.hand_off_ids(&only)?;
            for q in (0..partitions).filter(|&q| !keep.owns_partition(q)) {
                let closed = lc.closed_in(q);
                if !closed.is_empty() {
                    out.entry(q).or_default().closed = closed;
                }
            }
            lc.set_ownership(keep.clone());
            Ok(())
        })?;
        if let Ok(mut o) = self.ownership.lock() {
            *o = Some(keep);
        }
        self.outbox.set_scaled();
        self.outbox.note_owning();
        if out.values().any(|l| !l.incidents.is_empty()) {
            self.outbox.note_moved();
        }
        self.metrics.record_handed(&handed);
        if handed.total() > 0 {
            tracing::info!(
                notifications = handed.total(),
                partitions = ?out.keys().collect::<Vec<_>>(),
                "Queued notifications handed with their incidents to their partitions' next owners."
            );
        }
        Ok(out)
    }

    /// The ids of the notifications queued for the incidents of each
    /// incident partition of `wanted` (of `partitions`), oldest first.
    pub(crate) fn queued_ids(
        &self,
        partitions: u32,
        wanted: &[u32],
    ) -> Result<BTreeMap<u32, Vec<i64>>, IncidentError> {
        let ids = self.outbox.transaction(self.clock.now_ms(), |tx| {
            tx.ids_by("pending", |route, labels| {
                Some(incident_partition(route, labels, partitions)).filter(|q| wanted.contains(q))
            })
        })?;
        let mut out: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (id, q) in ids {
            out.entry(q).or_default().push(id);
        }
        Ok(out)
    }

    /// The notifications of `ids` still queued, in that order.
    pub(crate) fn queued_rows(&self, ids: &[i64]) -> Result<Vec<QueuedRow>, IncidentError> {
        Ok(self
            .outbox
            .transaction(self.clock.now_ms(), |tx| tx.queued_rows(ids))?)
    }

    /// Keeps only the incident groups of incident partitions `owned` (of
    /// `partitions`); open incidents of other groups (from this instance's
    /// outbox, before the group assigned it partitions) are given up, with
    /// their queued notifications (their owners' checkpoints carry them).
    pub(crate) fn set_ownership(
        &self,
        partitions: u32,
        owned: &[u32],
    ) -> Result<Vec<Incident>, IncidentError> {
        let ownership = Ownership::new(partitions, owned.iter().copied());
        self.outbox.set_scaled();
        let given_up = self.give_up(|route, labels| !ownership.owns(route, labels))?;
        // What is stored now is this instance's: re-pushes may begin.
        self.outbox.note_owning();
        self.outbox.note_moved();
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

    /// The keys incident partition `partition`'s incidents closed here.
    pub(crate) fn closed_of(&self, partition: u32) -> Vec<(String, i64)> {
        self.lifecycle
            .lock()
            .map(|l| l.closed_in(partition))
            .unwrap_or_default()
    }

    /// Takes over the keys incident partition `partition`'s incidents
    /// closed on its former owner (its checkpoint's).
    pub(crate) fn adopt_closed(&self, partition: u32, keys: Vec<(String, i64)>) {
        if let Ok(mut l) = self.lifecycle.lock() {
            l.adopt_closed(partition, keys);
        }
    }

    /// The receivers that heard of incident `key` here (an unmuted
    /// notification, or one handed over with the incident).
    pub(crate) fn heard_by(&self, key: &str) -> Result<Vec<String>, IncidentError> {
        Ok(self.outbox.transaction(self.clock.now_ms(), |tx| {
            let mut heard = Vec::new();
            for r in tx.receivers_known()? {
                if tx.announced(&r, key)? {
                    heard.push(r);
                }
            }
            Ok(heard)
        })?)
    }

    /// Takes over open incidents (a moved partition's checkpoint), each with
    /// the receivers that heard of it on its former instance, and the
    /// notifications queued for the partition's incidents there: they
    /// continue here as if they had always been here (a resolve reaches
    /// whoever heard the open; what was queued goes out first, in order).
    /// `queued` is `None` for a checkpoint that could not carry them (written
    /// by an older build): this outbox's own handed copies of the partition
    /// (`belongs`) are queued again instead.
    pub(crate) fn adopt(
        &self,
        incidents: Vec<(Incident, Vec<String>)>,
        queued: Option<&[QueuedRow]>,
        belongs: impl Fn(&str, &Labels) -> bool,
    ) -> Result<usize, IncidentError> {
        let mut taken = Moved::default();
        let arriving = !incidents.is_empty();
        self.step(|lc, ch, tx, _| {
            for (inc, heard) in incidents {
                for r in &heard {
                    tx.hand_over(r, &inc.key)?;
                }
                ch.saved.insert(inc.key.clone());
                lc.insert(inc);
            }
            taken = match queued {
                Some(rows) => tx.take_over(rows)?,
                None => tx.revive_handed_where(&belongs)?,
            };
            Ok(())
        })?;
        self.metrics.record_taken_over(&taken);
        self.outbox.note_owning();
        if arriving {
            // An Alertmanager worker re-pushes the incidents it now holds
            // (their previous owner's last push ends at its `endsAt`).
            self.outbox.note_moved();
        }
        if taken.total() > 0 || arriving {
            if let Ok(r) = self.receivers.lock() {
                r.wake_all();
            }
        }
        Ok(taken.total())
    }

    /// Forgets the open incidents of the groups `leaves` picks (by route and
    /// grouping labels; their partition went to another instance, which
    /// continues them) and hands their queued notifications to it: no
    /// notification goes out from here.
    pub(crate) fn give_up(
        &self,
        leaves: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Vec<Incident>, IncidentError> {
        let mut gone = Vec::new();
        let mut handed = Moved::default();
        self.step(|lc, ch: &mut Changes, tx, _| {
            gone = lc.take(|i: &Incident| leaves(&i.route, &i.labels));
            ch.removed.extend(gone.iter().map(|i| i.key.clone()));
            handed = tx.hand_off_where(&leaves)?;
            Ok(())
        })?;
        self.metrics.record_handed(&handed);
        if handed.total() > 0 {
            tracing::info!(
                notifications = handed.total(),
                "Queued notifications handed with their incidents to their partitions' owners."
            );
        }
        Ok(gone)
    }
}
