//! Duplicate suppression: a repeated event `id` within the dedup horizon is
//! counted once (`docs/contract.md` §1).
//!
//! Sits between decoding and routing. Redeliveries after a consumer restart
//! (at-least-once) must not inflate a window, so every accepted id is
//! remembered for `engine.dedup_horizon` of event time. Ids are kept as 64-bit
//! hashes (a false "duplicate" needs a 64-bit collision among the ids inside
//! one horizon: about 1 in 10^7 for a million ids), in a map plus an
//! insertion-ordered queue that expires them. Memory is bounded by
//! `engine.dedup_max_ids`: past it the oldest ids are forgotten early, and
//! that is counted.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashSet;

/// Seeds of the id hash; fixed so that replays are deterministic.
const ID_HASH_SEED: u64 = 0x6372_6973_6973_7761;

/// Remembers recent event ids.
#[derive(Debug)]
pub struct Dedup {
    /// Horizon in ms of event time; 0 disables deduplication.
    horizon_ms: i64,
    /// Upper bound on remembered ids.
    max_ids: usize,
    /// Hashes of the remembered ids.
    seen: HashSet<u64, foldhash::fast::FixedState>,
    /// (clock when seen, id hash), oldest first, for expiry.
    order: VecDeque<(i64, u64)>,
    hasher: foldhash::fast::FixedState,
    /// Ids forgotten before their horizon because of `max_ids`.
    pub evicted_early: u64,
}

impl Dedup {
    /// A dedup set with the given horizon (ms) and capacity.
    pub fn new(horizon_ms: i64, max_ids: usize) -> Self {
        Dedup {
            horizon_ms,
            max_ids: max_ids.max(1),
            seen: HashSet::with_hasher(foldhash::fast::FixedState::with_seed(ID_HASH_SEED)),
            order: VecDeque::new(),
            hasher: foldhash::fast::FixedState::with_seed(ID_HASH_SEED),
            evicted_early: 0,
        }
    }

    /// The remembered ids as (clock when seen, id hash), oldest first, and
    /// the early-eviction count: what a checkpoint keeps.
    pub fn export(&self) -> (Vec<(i64, u64)>, u64) {
        (self.order.iter().copied().collect(), self.evicted_early)
    }

    /// Restores what [`Dedup::export`] returned.
    pub fn restore(&mut self, order: Vec<(i64, u64)>, evicted_early: u64) {
        self.seen.clear();
        self.seen.extend(order.iter().map(|&(_, h)| h));
        self.order = order.into();
        self.evicted_early = evicted_early;
    }

    /// Whether deduplication is on.
    pub fn enabled(&self) -> bool {
        self.horizon_ms > 0
    }

    /// Records `id` at engine clock `clock`; returns `true` if it is a repeat
    /// of an id seen within the horizon (the caller drops the event).
    pub fn check_and_insert(&mut self, id: &str, clock: i64) -> bool {
        if self.horizon_ms <= 0 {
            return false;
        }
        self.expire(clock);
        let h = self.hasher.hash_one(id);
        if self.seen.contains(&h) {
            return true;
        }
        if self.seen.len() >= self.max_ids {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
                self.evicted_early += 1;
            }
        }
        self.seen.insert(h);
        self.order.push_back((clock, h));
        false
    }

    /// Forgets ids seen more than the horizon before `clock`.
    fn expire(&mut self, clock: i64) {
        let limit = clock.saturating_sub(self.horizon_ms);
        while let Some(&(t, h)) = self.order.front() {
            if t >= limit {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&h);
        }
    }

    /// Number of ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_horizon_are_dropped() {
        let mut d = Dedup::new(1000, 100);
        assert!(!d.check_and_insert("a", 0));
        assert!(d.check_and_insert("a", 500));
        assert!(d.check_and_insert("a", 1000));
        // Past the horizon the id is forgotten and counts again.
        assert!(!d.check_and_insert("a", 1001));
    }

    #[test]
    fn disabled_with_zero_horizon() {
        let mut d = Dedup::new(0, 100);
        assert!(!d.check_and_insert("a", 0));
        assert!(!d.check_and_insert("a", 0));
        assert!(!d.enabled());
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedup::new(i64::MAX / 4, 10);
        for i in 0..1000 {
            assert!(!d.check_and_insert(&format!("id-{i}"), i));
        }
        assert_eq!(d.len(), 10);
        assert_eq!(d.evicted_early, 990);
        assert!(d.check_and_insert("id-999", 1000));
    }
}
