//! Which offsets may be committed: at-least-once bookkeeping per partition.
//!
//! The engine stage marks each message done once its event has been applied
//! to the windows (or found invalid and counted). An invalid message that goes
//! to the dead-letter topic stays pending until the broker has acknowledged the
//! dead letter. The committable offset of a partition is the first offset not
//! yet done: everything before it is applied or dead-lettered, so committing it
//! loses nothing, and a restart re-reads at most what came after it.
//!
//! The tracker is shared (behind a mutex) by the engine stage, the dead-letter
//! tasks and the consumer thread, which commits.

use std::collections::HashMap;

use super::Partition;

mod pending;

use pending::Pending;

#[derive(Debug, Clone, Default)]
struct Progress {
    /// The offset after the last message processed, if any.
    next: Option<i64>,
    /// Offsets held by the sequencer and dead letters not yet acknowledged.
    pending: Pending,
}

impl Progress {
    fn committable(&self) -> Option<i64> {
        match (self.pending.first(), self.next) {
            (Some(p), _) => Some(p),
            (None, n) => n,
        }
    }
}

/// Per-partition progress of the engine stage.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Looked up for every message twice (held, then released): a fast
    /// hasher (a partition is not chosen by an adversary).
    parts: HashMap<Partition, Progress, foldhash::fast::RandomState>,
    /// With durable state: the offsets the latest checkpoint covers. Nothing
    /// past them is committed (a restart resumes from the checkpoint), and a
    /// partition without one commits nothing.
    limit: Option<HashMap<Partition, i64>>,
}

impl OffsetTracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `offset` was applied (or counted as invalid with no dead-letter topic).
    pub(crate) fn done(&mut self, at: Partition, offset: i64) {
        let p = self.parts.entry(at).or_default();
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// `offset` was handed to the dead-letter producer: it holds commits back
    /// until [`OffsetTracker::dead_letter_done`].
    pub(crate) fn dead_letter_pending(&mut self, at: Partition, offset: i64) {
        let p = self.parts.entry(at).or_default();
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        p.pending.insert(offset);
    }

    /// The dead letter of `offset` was acknowledged by the broker.
    pub(crate) fn dead_letter_done(&mut self, at: Partition, offset: i64) {
        if let Some(p) = self.parts.get_mut(&at) {
            p.pending.remove(offset);
        }
    }

    /// `offset` was read and is held by the sequencer: it holds commits back
    /// until [`OffsetTracker::unhold`] (its event reached the engine).
    pub(crate) fn hold(&mut self, at: Partition, offset: i64) {
        self.dead_letter_pending(at, offset);
    }

    /// The held event of `offset` reached the engine (its transitions persisted).
    pub(crate) fn unhold(&mut self, at: Partition, offset: i64) {
        self.dead_letter_done(at, offset);
    }

    /// The offset to commit for `at`: every message before it is done (and,
    /// with durable state, covered by the latest checkpoint).
    pub(crate) fn committable(&self, at: Partition) -> Option<i64> {
        let own = self.parts.get(&at).and_then(Progress::committable);
        match &self.limit {
            None => own,
            Some(limit) => match (own, limit.get(&at)) {
                (Some(o), Some(&l)) => Some(o.min(l)),
                _ => None,
            },
        }
    }

    /// Durable state is on: commits wait for checkpoints ([`OffsetTracker::checkpointed`]).
    pub(crate) fn limit_to_checkpoints(&mut self) {
        self.limit.get_or_insert_with(HashMap::new);
    }

    /// A checkpoint covering these resume offsets was written.
    pub(crate) fn checkpointed(&mut self, resume: impl IntoIterator<Item = (Partition, i64)>) {
        let limit = self.limit.get_or_insert_with(HashMap::new);
        for (at, o) in resume {
            limit.insert(at, o);
        }
    }

    /// Per partition: (resume, next, pending offsets) — what a checkpoint keeps.
    pub(crate) fn export(&self) -> Vec<(Partition, i64, i64, Vec<i64>)> {
        let mut v: Vec<_> = self
            .parts
            .iter()
            .filter_map(|(&at, p)| {
                let next = p.next?;
                let resume = p.committable().unwrap_or(next);
                Some((at, resume, next, p.pending.to_vec()))
            })
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// The committable offset of every partition with progress.
    pub(crate) fn all_committable(&self) -> Vec<(Partition, i64)> {
        let mut v: Vec<_> = self
            .parts
            .keys()
            .filter_map(|&at| self.committable(at).map(|o| (at, o)))
            .collect();
        v.sort_unstable();
        v
    }

    /// Dead letters not yet acknowledged, over all partitions.
    pub fn pending_dead_letters(&self) -> usize {
        self.parts.values().map(|p| p.pending.len()).sum()
    }

    /// Forgets a partition that left this instance (after its final commit).
    pub(crate) fn forget(&mut self, at: Partition) {
        self.parts.remove(&at);
        if let Some(l) = &mut self.limit {
            l.remove(&at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Partition = Partition {
        topic: 0,
        partition: 3,
    };

    #[test]
    fn commits_after_the_last_applied_offset() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.committable(P), None);
        t.done(P, 10);
        t.done(P, 11);
        assert_eq!(t.committable(P), Some(12));
        // A redelivery of an older offset does not move it back.
        t.done(P, 5);
        assert_eq!(t.committable(P), Some(12));
    }

    #[test]
    fn a_pending_dead_letter_holds_the_commit_back() {
        let mut t = OffsetTracker::new();
        t.done(P, 0);
        t.dead_letter_pending(P, 1);
        t.done(P, 2);
        t.dead_letter_pending(P, 3);
        assert_eq!(t.committable(P), Some(1));
        assert_eq!(t.pending_dead_letters(), 2);
        t.dead_letter_done(P, 3);
        assert_eq!(t.committable(P), Some(1), "1 is still in flight");
        t.dead_letter_done(P, 1);
        assert_eq!(t.committable(P), Some(4));
        let q = Partition {
            topic: 1,
            partition: 0,
        };
        t.done(q, 7);
        assert_eq!(t.all_committable(), vec![(P, 4), (q, 8)]);
        t.forget(P);
        assert_eq!(t.all_committable(), vec![(q, 8)]);
        t.dead_letter_done(P, 9); // late acknowledgement of a forgotten partition
        assert_eq!(t.committable(P), None);
    }
}
