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
//! event time and depend, as on one instance, on when ticks happen (their
//! current values come from the shard owners' latest `Values` notes in the
//! live service); every other notification is exact.

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
        self.partitions_for(&t.rule, &t.group)
    }

    /// The incident partitions (ascending) of every incident group an alert
    /// of `rule` on `group` can join, at any severity.
    pub fn partitions_for(&self, rule: &str, group: &crate::alert::Labels) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let routes = self.router.routes();
        for sev in [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ] {
            for r in self.router.matching(rule, sev, group) {
                let route = &routes[r];
                let labels = route.grouping(rule, group);
                let p = incident_partition(&route.name, &labels, self.partitions);
                if let Err(i) = out.binary_search(&p) {
                    out.insert(i, p);
                }
            }
        }
        out
    }
}

/// Transitions of some incident partitions, released in one instance's
/// order once every shard partition's owner has passed them (see the
/// module docs). The sequencing half of [`IncidentOwner`]; the live service
/// feeds its incident manager from it.
#[derive(Debug, Default)]
pub struct IncidentFeed {
    owned: BTreeSet<u32>,
    shard_partitions: u32,
    /// (incident partition, shard partition) → the release point the shard
    /// partition's owner reported on that incident partition.
    marks: BTreeMap<(u32, u32), i64>,
    /// Transitions waiting for every shard partition to pass them, with the
    /// incident partition they were read from. Identical re-sends collapse.
    held: BTreeMap<HeldKey, (u32, Transition)>,
    /// Per owned incident partition: every transition before this was applied.
    released: BTreeMap<u32, i64>,
    /// Transitions read again (an owner restored from an older checkpoint
    /// sends what it sent before): dropped.
    resent: u64,
}

/// A held transition's place: its [`Order`], then state and severity (one
/// event can move an alert through two states at one time).
type HeldKey = (Order, u8, u8);

/// What an incident partition's sequencing state is, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedPart {
    /// Every transition before this was applied.
    pub released: Option<i64>,
    /// (shard partition, release point reported).
    pub marks: Vec<(u32, i64)>,
    /// Transitions waiting, in order.
    pub held: Vec<Keyed>,
}

impl IncidentFeed {
    /// A feed of no incident partition yet, fed by the owners of
    /// `shard_partitions` shard partitions.
    pub fn new(shard_partitions: u32) -> Self {
        IncidentFeed {
            shard_partitions: shard_partitions.max(1),
            ..IncidentFeed::default()
        }
    }

    /// Starts feeding incident partition `partition` from `part` (what a
    /// checkpoint of it held; default: nothing yet).
    pub fn adopt(&mut self, partition: u32, part: FeedPart) {
        self.owned.insert(partition);
        if let Some(r) = part.released {
            self.released.insert(partition, r);
        }
        for (from, below) in part.marks {
            self.marks.insert((partition, from), below);
        }
        for k in part.held {
            self.held.insert(held_key(&k), (partition, k.transition));
        }
    }

    /// Stops feeding `partition`: its state, for the next owner.
    pub fn disown(&mut self, partition: u32) -> FeedPart {
        let part = self.part(partition);
        self.owned.remove(&partition);
        self.released.remove(&partition);
        self.marks.retain(|(p, _), _| *p != partition);
        self.held.retain(|_, (p, _)| *p != partition);
        part
    }

    /// The state of `partition` (a checkpoint).
    pub fn part(&self, partition: u32) -> FeedPart {
        FeedPart {
            released: self.released.get(&partition).copied(),
            marks: self
                .marks
                .iter()
                .filter(|((p, _), _)| *p == partition)
                .map(|((_, from), b)| (*from, *b))
                .collect(),
            held: self
                .held
                .iter()
                .filter(|(_, (p, _))| *p == partition)
                .map(|((order, _, _), (_, t))| Keyed {
                    order: order.clone(),
                    transition: t.clone(),
                })
                .collect(),
        }
    }

    /// The incident partitions fed.
    pub fn owned(&self) -> &BTreeSet<u32> {
        &self.owned
    }

    /// A transition read from incident partition `partition`, sent to the
    /// incident partitions `targets` (the lowest this instance owns takes
    /// it). One behind the partition's release point was applied already
    /// (an owner restored from a checkpoint sends it again): dropped.
    pub fn offer(&mut self, partition: u32, targets: &[u32], k: Keyed) {
        if targets.iter().find(|t| self.owned.contains(t)) != Some(&partition) {
            return;
        }
        if self
            .released
            .get(&partition)
            .is_some_and(|&b| k.order.at < b)
        {
            self.resent += 1;
            return;
        }
        let key = held_key(&k);
        if self.held.insert(key, (partition, k.transition)).is_some() {
            self.resent += 1;
        }
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

    /// Hands `apply`, in one instance's order, every transition before the
    /// slowest shard partition's release point; that point, once every
    /// owned partition has heard from every shard partition.
    pub fn release(&mut self, mut apply: impl FnMut(Transition)) -> Option<i64> {
        let below = self.clock()?;
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0.at >= below {
                break;
            }
            apply(entry.remove().1);
        }
        for &p in &self.owned {
            let r = self.released.entry(p).or_insert(below);
            *r = (*r).max(below);
        }
        Some(below)
    }

    /// The minimum over owned incident partitions and every shard partition
    /// of the release points reported; none until all have reported.
    fn clock(&self) -> Option<i64> {
        if self.owned.is_empty() {
            return None;
        }
        let mut min = i64::MAX;
        for &p in &self.owned {
            for from in 0..self.shard_partitions {
                min = min.min(*self.marks.get(&(p, from))?);
            }
        }
        Some(min)
    }

    /// Transitions waiting, and those read again and dropped.
    pub fn counts(&self) -> (usize, u64) {
        (self.held.len(), self.resent)
    }
}

fn held_key(k: &Keyed) -> HeldKey {
    (
        k.order.clone(),
        k.transition.state as u8,
        k.transition.severity as u8,
    )
}

/// The incident lifecycle of the groups of some incident partitions.
#[derive(Debug)]
pub struct IncidentOwner {
    lifecycle: Lifecycle,
    feed: IncidentFeed,
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
        let mut feed = IncidentFeed::new(shard_partitions);
        for p in owned {
            feed.adopt(p, FeedPart::default());
        }
        IncidentOwner { lifecycle, feed }
    }

    /// A transition read from incident partition `partition` (see
    /// [`IncidentFeed::offer`]).
    pub fn offer(&mut self, partition: u32, targets: &[u32], k: Keyed, _ch: &mut Changes) {
        self.feed.offer(partition, targets, k);
    }

    /// A release point read on incident partition `partition` (see
    /// [`IncidentFeed::released`]).
    pub fn released(&mut self, partition: u32, from: u32, below: i64) {
        self.feed.released(partition, from, below);
    }

    /// Applies, in one instance's order, every transition before the
    /// slowest shard partition's release point, then what fell due then.
    pub fn release(&mut self, ch: &mut Changes) {
        let lifecycle = &mut self.lifecycle;
        let Some(below) = self.feed.release(|t| {
            lifecycle.due(t.at, &mut NoValues, ch);
            lifecycle.apply(&t, ch);
        }) else {
            return;
        };
        // Opens whose group window ended before the release point (at the
        // end of a finite stream, `below` is `i64::MAX`: every one).
        self.lifecycle
            .due(below.saturating_sub(1), &mut NoValues, ch);
    }

    /// The lifecycle (its open incidents).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Transitions waiting, and those read again and dropped.
    pub fn counts(&self) -> (usize, u64) {
        self.feed.counts()
    }
}

#[cfg(test)]
mod feed_tests {
    use super::*;
    use crate::alert::State;

    fn keyed(at: i64, event: &str) -> Keyed {
        let group = vec![("product".to_string(), "p".to_string())];
        Keyed {
            order: Order {
                at,
                event: Some(event.into()),
                rule: 0,
                group: group.clone(),
            },
            transition: Transition {
                rule: "r".into(),
                group,
                state: State::Firing,
                severity: Severity::Warning,
                at,
                value: Some(1.0),
                threshold: 1.0,
                clear: 0.5,
                dedup_key: format!("r/product=p/{at}"),
                started_at: at,
                window_ms: 60_000,
                sample_event_ids: Vec::new(),
                hints: Vec::new(),
            },
        }
    }

    fn drain(f: &mut IncidentFeed) -> Vec<i64> {
        let mut out = Vec::new();
        f.release(|t| out.push(t.at));
        out
    }

    #[test]
    fn re_sends_are_dropped_and_a_partition_moves_with_its_state() {
        let mut a = IncidentFeed::new(2);
        a.adopt(0, FeedPart::default());
        a.offer(0, &[0], keyed(10, "e1"));
        a.offer(0, &[0], keyed(10, "e1")); // the same transition twice
        a.offer(0, &[0], keyed(30, "e2"));
        a.released(0, 0, 20);
        assert_eq!(
            drain(&mut a),
            Vec::<i64>::new(),
            "shard partition 1 has not reported"
        );
        a.released(0, 1, 25);
        assert_eq!(drain(&mut a), vec![10]);
        // A restored shard owner sends what it sent before: dropped.
        a.offer(0, &[0], keyed(10, "e1"));
        assert_eq!(a.counts(), (1, 2));
        // Sent to partitions 0 and 1: the lowest owned takes it.
        a.offer(1, &[0, 1], keyed(31, "e3"));
        assert_eq!(a.counts().0, 1);
        // The partition moves: its state goes with it, nothing is lost or doubled.
        let part = a.disown(0);
        assert_eq!(part.released, Some(20));
        assert_eq!(part.held.len(), 1);
        assert_eq!(a.counts().0, 0);
        let mut b = IncidentFeed::new(2);
        b.adopt(0, part);
        b.offer(0, &[0], keyed(10, "e1"));
        b.offer(0, &[0], keyed(30, "e2"));
        b.released(0, 0, 40);
        b.released(0, 1, 40);
        assert_eq!(drain(&mut b), vec![30]);
        assert_eq!(b.counts(), (0, 2));
    }
}
