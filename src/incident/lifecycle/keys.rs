//! Incident keys: how a new incident's key is made, and the memory of the
//! keys incidents closed before, so that no later incident takes one.
//!
//! A key is `route/labels/<first alert's start>` ([`model::incident_key`]).
//! A later incident can share route, labels and first alert's start (an
//! alert escalating after an operator closed its incident; a second rule
//! whose breach began at the same event): it takes `-1`, `-2` … so that the
//! outbox's rows of the first never swallow its notifications. In one
//! instance the memory also holds every key the outbox has rows of; with
//! `scale_out` it is kept per incident partition and travels in the
//! partition's changelog checkpoint (see README, "Incident keys").

use std::collections::BTreeMap;

use super::super::model;
use super::super::routing::Ownership;
use super::{Incident, Lifecycle};
use crate::alert::Labels;

/// Keys of incidents closed before, with their incident partition (0 in
/// one instance) and the event time they closed at.
#[derive(Debug)]
pub(super) struct ClosedKeys {
    keys: BTreeMap<String, (u32, i64)>,
    /// How long (event time) a closed key is kept (`incidents.retention`).
    retention_ms: i64,
}

impl ClosedKeys {
    pub(super) fn new(retention_ms: i64) -> ClosedKeys {
        ClosedKeys {
            keys: BTreeMap::new(),
            retention_ms,
        }
    }

    /// Takes a reloaded `incidents.retention`.
    pub(super) fn set_retention(&mut self, retention_ms: i64) {
        self.retention_ms = retention_ms;
    }

    /// The key of a new incident of `route` and `labels` whose first alert
    /// started at `started_at`: neither an open incident's nor a closed one's.
    pub(super) fn fresh(
        &self,
        route: &str,
        labels: &Labels,
        started_at: i64,
        open: &BTreeMap<String, Incident>,
    ) -> String {
        let base = model::incident_key(route, labels, started_at);
        let mut key = base.clone();
        let mut n = 1;
        while open.contains_key(&key) || self.keys.contains_key(&key) {
            key = format!("{base}-{n}");
            n += 1;
        }
        key
    }

    /// Notes that incident `key` (of partition `part`) closed at `at`, and
    /// forgets keys closed more than the retention of event time before: an
    /// incident's key can be made again only while an alert that started
    /// with it still fires, and the outbox forgets its rows after as long.
    pub(super) fn note(&mut self, key: String, part: u32, at: i64) {
        let horizon = at.saturating_sub(self.retention_ms);
        self.keys.retain(|_, (_, t)| *t >= horizon);
        self.keys.insert(key, (part, at));
    }

    /// Forgets the keys of the partitions for which `owned` is false.
    pub(super) fn keep_partitions(&mut self, owned: impl Fn(u32) -> bool) {
        self.keys.retain(|_, (p, _)| owned(*p));
    }
}

/// The incident partition of an incident of `route` and `labels` (0 in one
/// instance).
pub(super) fn partition(ownership: Option<&Ownership>, route: &str, labels: &Labels) -> u32 {
    ownership.map_or(0, |o| o.partition_of(route, labels))
}

impl Lifecycle {
    /// Notes `keys` as taken by incidents of the past (the outbox's; one
    /// instance only, see [`Lifecycle::set_ownership`]).
    pub(crate) fn know_closed(&mut self, keys: impl IntoIterator<Item = String>) {
        if self.ownership.is_none() {
            // The outbox keeps them for `incidents.retention`: never dropped here.
            self.closed
                .keys
                .extend(keys.into_iter().map(|k| (k, (0, i64::MAX))));
        }
    }

    /// The keys incident partition `q`'s incidents closed (for its
    /// checkpoint: its next owner must not make them again, nor make
    /// others than this instance would).
    pub(crate) fn closed_in(&self, q: u32) -> Vec<(String, i64)> {
        self.closed
            .keys
            .iter()
            .filter(|(_, (p, _))| *p == q)
            .map(|(k, &(_, at))| (k.clone(), at))
            .collect()
    }

    /// Takes over the closed keys of incident partition `q` (its checkpoint's).
    pub(crate) fn adopt_closed(&mut self, q: u32, keys: Vec<(String, i64)>) {
        for (k, at) in keys {
            self.closed.keys.insert(k, (q, at));
        }
    }
}
