//! The set of remembered id hashes: one flat array of 64-bit slots (open
//! addressing, linear probing, at most three quarters full), so that the
//! slot a lookup starts at follows from the hash alone and can be asked of
//! the memory ahead of time ([`FlatSet::prefetch`]). The stored values are
//! keyed hashes already, so they are their own hash. 0 marks an empty slot;
//! the value 0 itself is kept aside. A removal shifts the slots after it
//! back (no tombstones).

use prefetch_index::prefetch_index;

/// Fewest slots of a non-empty set.
const MIN_SLOTS: usize = 16;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct FlatSet {
    slots: Vec<u64>,
    /// Values in `slots` (the value 0 not included).
    len: usize,
    zero: bool,
}

impl FlatSet {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (h as usize) & self.mask()
    }

    /// Asks the memory for the line a lookup of `h` starts at (a hint).
    #[inline]
    pub(super) fn prefetch(&self, h: u64) {
        if !self.slots.is_empty() {
            prefetch_index(&self.slots, self.home(h));
        }
    }

    /// The slot holding `h`, or the empty slot where a lookup stops.
    #[inline]
    fn probe(&self, h: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(h);
        loop {
            match self.slots[i] {
                0 => return (i, false),
                s if s == h => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    pub(super) fn contains(&self, h: u64) -> bool {
        if h == 0 {
            return self.zero;
        }
        !self.slots.is_empty() && self.probe(h).1
    }

    /// Adds `h`; whether it was not there.
    pub(super) fn insert(&mut self, h: u64) -> bool {
        if h == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let (i, found) = self.probe(h);
        if found {
            return false;
        }
        self.slots[i] = h;
        self.len += 1;
        true
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; n]);
        for h in old.into_iter().filter(|&h| h != 0) {
            let (i, _) = self.probe(h);
            self.slots[i] = h;
        }
    }

    /// Removes `h` if there.
    pub(super) fn remove(&mut self, h: u64) {
        if h == 0 {
            self.zero = false;
            return;
        }
        if self.slots.is_empty() {
            return;
        }
        let (mut i, found) = self.probe(h);
        if !found {
            return;
        }
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(s);
            // The slot stays if its home lies cyclically in (hole, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = s;
                i = j;
            }
        }
        self.slots[i] = 0;
        self.len -= 1;
    }

    pub(super) fn len(&self) -> usize {
        self.len + usize::from(self.zero)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every value (keeps the memory).
    pub(super) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = 0);
        self.len = 0;
        self.zero = false;
    }
}

impl Extend<u64> for FlatSet {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, iter: I) {
        for h in iter {
            self.insert(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::FlatSet;

    proptest! {
        /// Any sequence of inserts and removes holds what a set holds;
        /// values crowd a few homes on purpose (and 0 is one of them).
        #[test]
        fn holds_what_a_set_holds(ops in proptest::collection::vec((0u8..3, 0u64..48), 0..500), spread in any::<bool>()) {
            let value = |k: u64| if spread { k.wrapping_mul(0x9e37_79b9_7f4a_7c15) } else { (k % 4) | ((k / 4) << 40) };
            let mut set = FlatSet::default();
            let mut model = HashSet::new();
            for (op, k) in ops {
                let h = value(k);
                match op {
                    0 => prop_assert_eq!(set.insert(h), model.insert(h)),
                    1 => {
                        set.remove(h);
                        model.remove(&h);
                    }
                    _ => prop_assert_eq!(set.contains(h), model.contains(&h)),
                }
                prop_assert_eq!(set.len(), model.len());
                for probe in 0u64..48 {
                    prop_assert_eq!(set.contains(value(probe)), model.contains(&value(probe)));
                }
            }
            set.clear();
            prop_assert!(set.is_empty());
        }
    }
}
