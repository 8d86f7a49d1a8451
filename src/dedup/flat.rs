//! The set of remembered id hashes, in one flat array of 64-bit slots
//! ([`Slots`]: open addressing, at most three quarters full), so that the
//! slot a lookup starts at follows from the hash alone and can be asked of
//! the memory ahead of time ([`FlatSet::prefetch`]). The stored values are
//! keyed hashes already, so they are their own hash; 0 marks an empty slot,
//! so the value 0 itself is kept aside.

use crate::slots::Slots;

/// At most three quarters of the slots hold a value.
const MAX_LOAD: (usize, usize) = (3, 4);

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct FlatSet {
    slots: Slots,
    zero: bool,
}

/// A stored value is its own hash.
fn itself(h: u64) -> u64 {
    h
}

impl FlatSet {
    /// Asks the memory for the line a lookup of `h` starts at (a hint).
    #[inline]
    pub(super) fn prefetch(&self, h: u64) {
        self.slots.prefetch(h);
    }

    pub(super) fn contains(&self, h: u64) -> bool {
        if h == 0 {
            return self.zero;
        }
        self.slots.find(h, |s| s == h).is_some()
    }

    /// Adds `h`; whether it was not there.
    pub(super) fn insert(&mut self, h: u64) -> bool {
        if h == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if self.contains(h) {
            return false;
        }
        self.slots.insert(h, h, MAX_LOAD, itself);
        true
    }

    /// Removes `h` if there.
    pub(super) fn remove(&mut self, h: u64) {
        if h == 0 {
            self.zero = false;
        } else if let Some(at) = self.slots.find(h, |s| s == h) {
            self.slots.remove_at(at, itself);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len() + usize::from(self.zero)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every value (keeps the memory).
    pub(super) fn clear(&mut self) {
        self.slots.clear();
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
