//! The index of a group table: entry numbers by key hash, in one flat array
//! of 64-bit slots ([`Slots`]: open addressing, at most half full).
//!
//! A slot holds the high 32 bits of the key's hash (a tag) and the entry
//! number plus one. The hash alone gives the address of the first slot a
//! lookup reads ([`Index::prefetch`]), which lets a batch of events ask for
//! the index lines of the events ahead before it needs them; and a tag that
//! differs is a miss without reading the entry.

use crate::slots::Slots;

/// At most half the slots hold an entry.
const MAX_LOAD: (usize, usize) = (1, 2);

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Index {
    slots: Slots,
}

#[inline]
fn pack(hash: u64, e: u32) -> u64 {
    (hash & 0xffff_ffff_0000_0000) | (u64::from(e) + 1)
}

#[inline]
fn entry_of(slot: u64) -> u32 {
    // Slots are never 0 here: the low half is an entry number plus one.
    (slot as u32).wrapping_sub(1)
}

impl Index {
    /// Asks the memory for the line a lookup of `hash` starts at (a hint:
    /// it changes nothing).
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        self.slots.prefetch(hash);
    }

    /// The first entry stored under `hash` that `same` accepts.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut same: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = hash >> 32;
        let at = self
            .slots
            .find(hash, |s| s >> 32 == tag && same(entry_of(s)))?;
        Some(entry_of(self.slots.get(at)))
    }

    /// The entry a lookup of `hash` would try first, without comparing keys
    /// (for prefetching the entry: `None` when the first slot is empty or
    /// holds another tag).
    #[inline]
    pub(super) fn first_candidate(&self, hash: u64) -> Option<u32> {
        let s = self.slots.first(hash)?;
        (s >> 32 == hash >> 32).then(|| entry_of(s))
    }

    /// Adds entry `e` under `hash` (not already there); `hash_of` gives the
    /// hash of any stored entry (to place them again when the index grows).
    pub(super) fn insert(&mut self, hash: u64, e: u32, hash_of: impl Fn(u32) -> u64) {
        self.slots
            .insert(hash, pack(hash, e), MAX_LOAD, |s| hash_of(entry_of(s)));
    }

    /// Removes entry `e`, stored under `hash`; `hash_of` as for
    /// [`Index::insert`].
    pub(super) fn remove(&mut self, hash: u64, e: u32, hash_of: impl Fn(u32) -> u64) {
        let target = pack(hash, e);
        if let Some(at) = self.slots.find(hash, |s| s == target) {
            self.slots.remove_at(at, |s| hash_of(entry_of(s)));
        }
    }

    /// Entries indexed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every entry (keeps the memory).
    pub(super) fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::Index;

    /// Hashes that collide on purpose: few distinct homes and tags.
    fn hash(k: u16, spread: bool) -> u64 {
        let k = u64::from(k);
        if spread {
            k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        } else {
            ((k % 3) << 32) | (k % 5)
        }
    }

    proptest! {
        /// Any sequence of inserts and removes finds exactly what a map holds.
        #[test]
        fn finds_what_a_map_holds(ops in proptest::collection::vec((any::<bool>(), 0u16..64), 0..400), spread in any::<bool>()) {
            let mut index = Index::default();
            // entry number → key; key → entry number.
            let mut keys: HashMap<u32, u16> = HashMap::new();
            let mut model: HashMap<u16, u32> = HashMap::new();
            let mut next = 0u32;
            for (add, k) in ops {
                let h = hash(k, spread);
                let hash_of = |keys: &HashMap<u32, u16>| {
                    let keys = keys.clone();
                    move |e: u32| hash(keys[&e], spread)
                };
                if add && !model.contains_key(&k) {
                    keys.insert(next, k);
                    index.insert(h, next, hash_of(&keys));
                    model.insert(k, next);
                    next += 1;
                } else if !add {
                    if let Some(e) = model.remove(&k) {
                        index.remove(h, e, hash_of(&keys));
                        keys.remove(&e);
                    }
                }
                for probe in 0u16..64 {
                    let found = index.find(hash(probe, spread), |e| keys.get(&e) == Some(&probe));
                    prop_assert_eq!(found, model.get(&probe).copied(), "key {}", probe);
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
    }

    #[test]
    fn an_empty_index_finds_nothing_and_prefetches_nothing() {
        let index = Index::default();
        index.prefetch(42);
        assert_eq!(index.find(42, |_| true), None);
        assert_eq!(index.first_candidate(42), None);
    }
}
