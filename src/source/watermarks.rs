//! Event time per partition, and the service clock derived from it.
//!
//! Kafka orders messages only within a partition, and partitions are consumed
//! at different speeds (a lagging partition, a backlog after a rebalance). The
//! service clock is therefore the **minimum over active partitions** of each
//! partition's newest event time: events of a partition that is ahead wait in
//! the engine's future panes instead of making the slower partitions' events
//! late. A partition is active while it delivered a valid event within
//! `idle_partition_timeout` — delivered to the consumer thread, not applied
//! by the engine stage: a partition whose events wait in the channel behind
//! other partitions' (a slow engine stage, a stalled disk) is not idle; a newly
//! assigned partition holds the clock until it delivers or that timeout passes. An idle partition stops holding the clock
//! back, so one quiet partition cannot freeze alert resolution; when every
//! partition is idle the clock is the newest event time seen, and
//! [`IdleClock`](crate::clock::IdleClock) advances it with the wall clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Partition;

#[derive(Debug, Clone)]
struct PartClock {
    /// Newest event time seen, once the partition has delivered a valid event.
    max_ts: Option<i64>,
    /// When it last delivered one (or was assigned; or, not assigned yet,
    /// until when it is waited for).
    last_seen: Instant,
    /// Assigned to this instance (or delivering), not only restored from a
    /// checkpoint or named by the broker.
    assigned: bool,
}

/// Per-partition event time.
#[derive(Debug, Clone)]
pub(crate) struct Watermarks {
    parts: BTreeMap<Partition, PartClock>,
    idle_after: Duration,
}

impl Watermarks {
    /// Partitions go idle after `idle_after` without a valid event.
    pub(crate) fn new(idle_after: Duration) -> Self {
        Watermarks {
            parts: BTreeMap::new(),
            idle_after,
        }
    }

    /// A partition was assigned: it holds the clock until it delivers or goes
    /// idle — counted from now, also for a partition restored from a
    /// checkpoint or named by the broker before: their grace was for
    /// waiting on the assignment (joining a group whose killed member still
    /// holds partitions can take longer than the grace; its events would then
    /// come after the other partitions had moved the clock past them), and
    /// an assigned partition with nothing to deliver must not hold the clock
    /// for the rest of that grace.
    pub(crate) fn assign(&mut self, at: Partition, now: Instant) {
        let p = self.parts.entry(at).or_insert(PartClock {
            max_ts: None,
            last_seen: now,
            assigned: true,
        });
        if p.assigned {
            p.last_seen = p.last_seen.max(now);
        } else {
            p.last_seen = now;
            p.assigned = true;
        }
    }

    /// The consumer received a valid event of `at` at `when`, which the engine
    /// stage has not reached yet (it is queued behind other partitions'
    /// events): the partition is not idle, whatever the engine's backlog. A
    /// partition not assigned here is ignored.
    pub(crate) fn received(&mut self, at: Partition, when: Instant) {
        if !self.parts.contains_key(&at) {
            return;
        }
        self.wake(at, when);
        if let Some(p) = self.parts.get_mut(&at) {
            p.last_seen = p.last_seen.max(when);
        }
    }

    /// `at` delivers at `when`: if every partition was idle then (the whole
    /// stream paused for `idle_after`), the other assigned partitions wake
    /// too — each holds the clock at its old time until it delivers or
    /// `idle_after` passes again, as at an assignment. Without this, the
    /// first partition of a burst after the pause was the only active one
    /// and moved the clock alone: the others' events of the same burst came
    /// late (a backfill after an upstream outage is such a burst).
    fn wake(&mut self, at: Partition, when: Instant) {
        // Per event: the usual case (this partition active) costs one lookup.
        if self
            .parts
            .get(&at)
            .is_some_and(|p| when.saturating_duration_since(p.last_seen) < self.idle_after)
        {
            return;
        }
        let all_idle = self
            .parts
            .values()
            .all(|p| when.saturating_duration_since(p.last_seen) >= self.idle_after);
        if !all_idle {
            return;
        }
        for (q, p) in &mut self.parts {
            if *q != at && p.assigned {
                p.last_seen = p.last_seen.max(when);
            }
        }
    }

    /// A partition was revoked: it no longer counts.
    pub(crate) fn revoke(&mut self, at: Partition) {
        self.parts.remove(&at);
    }

    /// A valid event of time `ts` arrived on `at`.
    pub(crate) fn observe(&mut self, at: Partition, ts: i64, now: Instant) {
        if self.parts.contains_key(&at) {
            self.wake(at, now);
        }
        let p = self.parts.entry(at).or_insert(PartClock {
            max_ts: None,
            last_seen: now,
            assigned: true,
        });
        p.max_ts = Some(p.max_ts.map_or(ts, |m| m.max(ts)));
        p.last_seen = now;
        p.assigned = true;
    }

    fn active(&self, p: &PartClock, now: Instant) -> bool {
        now.saturating_duration_since(p.last_seen) < self.idle_after
    }

    /// The event time the service clock may advance to now: the minimum over
    /// active partitions, or the newest event time when all are idle. `None`
    /// while an active partition has not delivered yet (or nothing was seen).
    pub(crate) fn target(&self, now: Instant) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for p in self.parts.values().filter(|p| self.active(p, now)) {
            any_active = true;
            let ts = p.max_ts?;
            min = Some(min.map_or(ts, |m| m.min(ts)));
        }
        if any_active {
            min
        } else {
            self.parts.values().filter_map(|p| p.max_ts).max()
        }
    }

    /// Whether a partition is awaited: not idle, and either not assigned yet
    /// (named by the broker or restored, within its grace) or assigned
    /// without having delivered. Its events are on their way, so a stream
    /// without events meanwhile is not quiet: moving event time on with the
    /// wall clock would make them late.
    pub(crate) fn awaited(&self, now: Instant) -> bool {
        self.parts
            .values()
            .any(|p| self.active(p, now) && (p.max_ts.is_none() || !p.assigned))
    }

    /// The newest event time seen on any partition.
    pub(crate) fn newest(&self) -> Option<i64> {
        self.parts.values().filter_map(|p| p.max_ts).max()
    }

    /// Each partition's newest event time (checkpoints).
    pub(crate) fn partition_clocks(&self) -> Vec<(Partition, Option<i64>)> {
        self.parts.iter().map(|(&at, p)| (at, p.max_ts)).collect()
    }

    /// Restores a partition's newest event time (after a checkpoint restore;
    /// `None`: a partition the broker names, not tracked yet); unless
    /// assigned already, it holds the clock as if it had delivered at
    /// `now + grace`, so that a partition still held by a crashed
    /// predecessor (until its consumer session times out) is waited for
    /// instead of having its events arrive late after the rebalance.
    pub(crate) fn restore(
        &mut self,
        at: Partition,
        max_ts: Option<i64>,
        now: Instant,
        grace: Duration,
    ) {
        let p = self.parts.entry(at).or_insert(PartClock {
            max_ts: None,
            last_seen: now + grace,
            assigned: false,
        });
        p.max_ts = p.max_ts.max(max_ts);
    }

    /// Partitions tracked and how many of them are idle.
    pub(crate) fn counts(&self, now: Instant) -> (usize, usize) {
        let idle = self.parts.values().filter(|p| !self.active(p, now)).count();
        (self.parts.len(), idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32) -> Partition {
        Partition {
            topic: 0,
            partition,
        }
    }

    #[test]
    fn the_slowest_active_partition_sets_the_clock() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(10));
        assert_eq!(w.target(t0), None);
        w.assign(p(0), t0);
        w.assign(p(1), t0);
        w.observe(p(0), 5_000, t0);
        assert_eq!(w.target(t0), None, "partition 1 has not delivered yet");
        w.observe(p(1), 3_000, t0);
        assert_eq!(w.target(t0), Some(3_000));
        w.observe(p(1), 9_000, t0);
        w.observe(p(1), 8_000, t0); // out of order within the partition
        assert_eq!(w.target(t0), Some(5_000));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_clock_back() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(10));
        w.assign(p(0), t0);
        w.assign(p(1), t0);
        w.observe(p(0), 5_000, t0);
        let t1 = t0 + Duration::from_secs(6);
        w.observe(p(0), 7_000, t1);
        assert_eq!(
            w.target(t1),
            None,
            "an empty new partition holds for a while"
        );
        let t2 = t0 + Duration::from_secs(11);
        assert_eq!(w.target(t2), Some(7_000), "partition 1 went idle");
        assert_eq!(w.counts(t2), (2, 1));
        // Everything idle: the newest event time seen.
        w.observe(p(1), 2_000, t2);
        let t3 = t2 + Duration::from_secs(20);
        assert_eq!(w.counts(t3), (2, 2));
        assert_eq!(w.target(t3), Some(7_000));
        // A revoked partition no longer counts.
        w.observe(p(1), 3_000, t3);
        w.observe(p(0), 8_000, t3);
        assert_eq!(w.target(t3), Some(3_000));
        w.revoke(p(1));
        assert_eq!(w.target(t3), Some(8_000));
        w.received(p(1), t3 + Duration::from_secs(1));
        assert_eq!(w.counts(t3), (1, 0), "a revoked partition stays out");
    }

    #[test]
    fn a_restored_partition_holds_the_clock_from_its_assignment() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(2));
        // Restored with a grace of 12 s; the group hands the partitions
        // over only 20 s later (a killed member's session ran out first).
        w.restore(p(0), Some(5_000), t0, Duration::from_secs(12));
        w.restore(p(1), Some(4_000), t0, Duration::from_secs(12));
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(w.counts(t1), (2, 2), "past the grace, not assigned yet");
        w.assign(p(0), t1);
        w.assign(p(1), t1);
        w.observe(p(0), 300_000, t1);
        // Partition 1 has not delivered yet: it holds the clock.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(w.target(t2), Some(4_000));
        w.observe(p(1), 290_000, t2);
        assert_eq!(w.target(t2), Some(290_000));
    }

    #[test]
    fn a_partition_the_broker_names_holds_the_clock_until_assigned() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(2));
        // Three partitions at the start; a crashed member still holds the
        // third, the first two are assigned at once.
        for i in 0..3 {
            w.restore(p(i), None, t0, Duration::from_secs(12));
        }
        w.assign(p(0), t0);
        w.assign(p(1), t0);
        w.observe(p(0), 5_000, t0);
        w.observe(p(1), 6_000, t0);
        let t1 = t0 + Duration::from_secs(7);
        w.observe(p(0), 300_000, t1);
        w.observe(p(1), 300_000, t1);
        assert_eq!(w.target(t1), None, "the third holds the clock");
        // Assigned at 8 s: from then on an ordinary partition.
        let t2 = t0 + Duration::from_secs(8);
        w.assign(p(2), t2);
        w.observe(p(2), 4_000, t2);
        assert_eq!(w.target(t2), Some(4_000));
        assert!(!w.awaited(t2));
        // Never assigned: waited for until the grace (and then the idle
        // timeout, as for a partition that delivered then) runs out.
        let mut w = Watermarks::new(Duration::from_secs(2));
        w.restore(p(0), None, t0, Duration::from_secs(12));
        w.restore(p(1), None, t0, Duration::from_secs(12));
        w.assign(p(0), t0);
        w.observe(p(0), 5_000, t0);
        assert_eq!(w.target(t0 + Duration::from_secs(13)), None);
        assert!(w.awaited(t0 + Duration::from_secs(13)));
        assert_eq!(w.target(t0 + Duration::from_secs(15)), Some(5_000));
        assert!(!w.awaited(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn an_assigned_partition_with_nothing_to_deliver_goes_idle_from_its_assignment() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(2));
        // Named by the broker with a long grace, assigned one second later:
        // an empty partition holds the clock for the idle timeout from its
        // assignment, not for the rest of the grace.
        w.restore(p(0), None, t0, Duration::from_secs(90));
        w.restore(p(1), None, t0, Duration::from_secs(90));
        let t1 = t0 + Duration::from_secs(1);
        w.assign(p(0), t1);
        w.assign(p(1), t1);
        w.observe(p(0), 5_000, t1);
        assert_eq!(w.target(t1 + Duration::from_secs(1)), None);
        assert!(
            w.awaited(t1 + Duration::from_secs(1)),
            "partition 1 is awaited"
        );
        assert_eq!(w.target(t1 + Duration::from_secs(3)), Some(5_000));
        // A second assignment (a rebalance handing it back) keeps the later
        // time. (Partition 0 resuming after both went idle wakes 1 too.)
        w.received(p(0), t1 + Duration::from_secs(5));
        w.assign(p(0), t1 + Duration::from_secs(4));
        assert_eq!(w.counts(t1 + Duration::from_millis(6_500)), (2, 0));
        assert_eq!(w.counts(t1 + Duration::from_millis(7_500)), (2, 2));
    }

    #[test]
    fn after_a_pause_of_the_whole_stream_every_partition_holds_the_clock_again() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(2));
        for i in 0..3 {
            w.assign(p(i), t0);
            w.observe(p(i), 5_000, t0);
        }
        // Partition 2 stays quiet for good from 1 s on; 0 and 1 go on.
        let t1 = t0 + Duration::from_secs(1);
        w.observe(p(0), 9_000, t1);
        w.observe(p(1), 9_000, t1);
        // The whole stream pauses; at 20 s partition 0 delivers a burst
        // first: it does not move the clock alone.
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(w.counts(t2), (3, 3));
        w.observe(p(0), 900_000, t2);
        assert_eq!(w.target(t2), Some(5_000), "1 and 2 hold it at their times");
        // Partition 1's part of the burst arrives through the consumer first.
        w.received(p(1), t2 + Duration::from_millis(500));
        w.observe(p(1), 880_000, t2 + Duration::from_secs(1));
        assert_eq!(w.target(t2 + Duration::from_secs(1)), Some(5_000));
        // Partition 2 has nothing: idle again after the timeout.
        assert_eq!(w.target(t2 + Duration::from_millis(2_500)), Some(880_000));
        // A partition resuming while another is active wakes nobody.
        let t3 = t2 + Duration::from_millis(2_600);
        w.observe(p(0), 901_000, t3);
        assert_eq!(w.counts(t3), (3, 1));
        // Partitions not assigned here (named by the broker, held by
        // another member) are not woken.
        let mut w = Watermarks::new(Duration::from_secs(2));
        w.restore(p(5), None, t0, Duration::from_secs(1));
        w.assign(p(0), t0);
        w.observe(p(0), 5_000, t0);
        let t4 = t0 + Duration::from_secs(10);
        w.observe(p(0), 9_000, t4);
        assert_eq!(w.target(t4), Some(9_000));
    }

    #[test]
    fn a_partition_whose_events_are_on_their_way_is_not_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(2));
        w.assign(p(0), t0);
        w.assign(p(1), t0);
        w.observe(p(0), 5_000, t0);
        w.observe(p(1), 5_000, t0);
        // The consumer got partition 1's next events at 1.5 s; the engine
        // stage, behind, applies partition 0's until 3 s.
        w.received(p(1), t0 + Duration::from_millis(1_500));
        let t1 = t0 + Duration::from_secs(3);
        w.observe(p(0), 300_000, t1);
        assert_eq!(
            w.target(t1),
            Some(5_000),
            "partition 1 still holds the clock"
        );
        // An older note changes nothing.
        w.received(p(1), t0);
        assert_eq!(w.target(t1), Some(5_000));
        // Nothing more from partition 1 for the timeout: idle.
        let t2 = t0 + Duration::from_millis(3_600);
        assert_eq!(w.target(t2), Some(300_000));
    }
}
