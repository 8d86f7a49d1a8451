//! Incidents on exactly one instance: owners' transitions re-keyed by
//! incident group.
//!
//! ```text
//! Owner (shards) ─► TransitionSplit ─► incident partitions ─► IncidentOwner (one instance each) ─► notifications
//!                   a transition → the partitions of the         sequenced by Order on the owners'
//!                   incident groups it can join; per owned        release points; a lifecycle keeping
//!                   shard partition: its release point            only its incident groups
//! ```
//!
//! An alert joins, per route that takes it, the incident of the route's
//! grouping labels ([`Lifecycle`]); those groups are spread over incident
//! partitions by [`incident_partition`]. A transition goes to the partitions
//! of every route that could take its rule and group at some severity (an
//! escalation may reach a route with `min_severity`). The instance assigned
//! a partition runs the incident lifecycle for its groups only
//! ([`Lifecycle::set_ownership`]): it sees every transition of those groups,
//! in one instance's order ([`Order`]), once every shard partition's owner
//! has reported releasing past it — so a crisis that trips rules whose
//! shards live on different instances opens one incident, with the keys,
//! alerts and times one instance gives it. Progress updates are ticks of
//! event time and depend, as on one instance, on when ticks happen; every
//! other notification is exact.

use std::collections::{BTreeMap, BTreeSet};

use super::{Keyed, Order};
use crate::alert::Transition;
use crate::config::{Config, Severity};
use crate::incident::lifecycle::{Changes, Lifecycle, NoValues};
use crate::incident::routing::{incident_partition, Ownership, Router};

/// Which incident partitions a transition goes to.
#[derive(Debug, Clone)]
pub struct TransitionSplit {
    router: Router,
    partitions: u32,
}

impl TransitionSplit {
    /// The routes of `cfg` over `partitions` incident partitions.
    pub fn new(cfg: &Config, partitions: u32) -> Self {
        TransitionSplit {
            router: Router::new(cfg),
            partitions: partitions.max(1),
        }
    }

    /// The incident partitions (ascending) of every incident group the
    /// transition's alert can join, at any severity.
    pub fn partitions_of(&self, t: &Transition) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let routes = self.router.routes();
        for sev in [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ] {
            for r in self.router.matching(&t.rule, sev, &t.group) {
                let route = &routes[r];
                let labels = route.grouping(&t.rule, &t.group);
                let p = incident_partition(&route.name, &labels, self.partitions);
                if let Err(i) = out.binary_search(&p) {
                    out.insert(i, p);
                }
            }
        }
        out
    }
}

/// The incident lifecycle of the groups of some incident partitions.
#[derive(Debug)]
pub struct IncidentOwner {
    lifecycle: Lifecycle,
    owned: BTreeSet<u32>,
    shard_partitions: u32,
    /// (incident partition, shard partition) → the release point the shard
    /// partition's owner reported on that incident partition.
    marks: BTreeMap<(u32, u32), i64>,
    /// Transitions waiting for every shard partition to pass them.
    held: BTreeMap<(Order, u64), Transition>,
    arrivals: u64,
    released_below: Option<i64>,
    /// Transitions that arrived behind the release point (applied at once).
    late: u64,
}

impl IncidentOwner {
    /// The owner of incident partitions `owned` (of `partitions`), fed by
    /// the owners of `shard_partitions` shard partitions.
    pub fn new(
        cfg: &Config,
        shard_partitions: u32,
        partitions: u32,
        owned: impl IntoIterator<Item = u32>,
    ) -> Self {
        let owned: BTreeSet<u32> = owned.into_iter().collect();
        let mut lifecycle = Lifecycle::new(cfg);
        lifecycle.set_ownership(Ownership::new(partitions, owned.iter().copied()));
        IncidentOwner {
            lifecycle,
            owned,
            shard_partitions: shard_partitions.max(1),
            marks: BTreeMap::new(),
            held: BTreeMap::new(),
            arrivals: 0,
            released_below: None,
            late: 0,
        }
    }

    /// A transition read from incident partition `partition`, sent to the
    /// incident partitions `targets` (the lowest this instance owns applies
    /// it). One behind the release point (its owner reported past it: it
    /// cannot happen with a well-behaved owner) is applied at once and
    /// counted.
    pub fn offer(&mut self, partition: u32, targets: &[u32], k: Keyed, ch: &mut Changes) {
        if targets.iter().find(|t| self.owned.contains(t)) != Some(&partition) {
            return;
        }
        if self.released_below.is_some_and(|b| k.order.at < b) {
            self.late += 1;
            self.lifecycle.due(k.transition.at, &mut NoValues, ch);
            self.lifecycle.apply(&k.transition, ch);
            return;
        }
        self.arrivals += 1;
        self.held.insert((k.order, self.arrivals), k.transition);
    }

    /// Read on incident partition `partition`: the owner of shard partition
    /// `from` has sent every transition before `below` (Kafka keeps its
    /// messages to one partition in order).
    pub fn released(&mut self, partition: u32, from: u32, below: i64) {
        if from < self.shard_partitions && self.owned.contains(&partition) {
            let m = self.marks.entry((partition, from)).or_insert(below);
            *m = (*m).max(below);
        }
    }

    /// Applies, in one instance's order, every transition before the
    /// slowest shard partition's release point, then what fell due then.
    pub fn release(&mut self, ch: &mut Changes) {
        let Some(below) = self.clock() else {
            return;
        };
        if self.released_below.is_some_and(|b| below <= b) {
            return;
        }
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0.at >= below {
                break;
            }
            let t = entry.remove();
            self.lifecycle.due(t.at, &mut NoValues, ch);
            self.lifecycle.apply(&t, ch);
        }
        self.released_below = Some(below);
        // Opens whose group window ended before the release point (at the
        // end of a finite stream, `below` is `i64::MAX`: every one).
        self.lifecycle
            .due(below.saturating_sub(1), &mut NoValues, ch);
    }

    /// The minimum over owned incident partitions and every shard partition
    /// of the release points reported; none until all have reported.
    fn clock(&self) -> Option<i64> {
        let mut min = i64::MAX;
        for &p in &self.owned {
            for from in 0..self.shard_partitions {
                min = min.min(*self.marks.get(&(p, from))?);
            }
        }
        Some(min)
    }

    /// The lifecycle (its open incidents).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Transitions waiting, and those that arrived late.
    pub fn counts(&self) -> (usize, u64) {
        (self.held.len(), self.late)
    }
}
