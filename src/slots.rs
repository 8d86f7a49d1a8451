//! Open addressing over one flat array of 64-bit slots, shared by the
//! engine's group-table index (`engine::table::index`) and the dedup set
//! (`dedup::flat`).
//!
//! A lookup starts at the slot the hash's low bits name and walks on
//! (linear probing) to the first empty slot (0), so the hash alone gives the
//! line a lookup reads first: [`Slots::prefetch`] asks the memory for it
//! ahead of time. What a slot holds, and which hash a held value was placed
//! under, is the user's: the calls that move slots (growth, removal) take a
//! `home_of` that gives the hash of a held value. A removal shifts the slots
//! after it back (no tombstones).

use prefetch_index::prefetch_index;

/// Fewest slots of a non-empty array.
const MIN_SLOTS: usize = 16;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<u64>,
    len: usize,
}

impl Slots {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where a lookup of `hash` starts (meaningless while the array is empty).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash as usize) & self.mask()
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Asks the memory for the line a lookup of `hash` starts at (a hint:
    /// it changes nothing).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch_index(&self.slots, self.home(hash));
        }
    }

    /// The value in the slot a lookup of `hash` starts at, if not empty.
    #[inline]
    pub(crate) fn first(&self, hash: u64) -> Option<u64> {
        let s = *self.slots.get(self.home(hash))?;
        (s != 0).then_some(s)
    }

    /// The position of the first value from `hash`'s home on that `hit`
    /// accepts, before the first empty slot.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut hit: impl FnMut(u64) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if hit(s) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The value at a position [`Slots::find`] gave.
    #[inline]
    pub(crate) fn get(&self, at: usize) -> u64 {
        self.slots[at]
    }

    /// Adds `value` (not 0) under `hash`, growing the array first if it
    /// would be more than `max_load` full (numerator, denominator).
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        value: u64,
        max_load: (usize, usize),
        home_of: impl Fn(u64) -> u64,
    ) {
        debug_assert_ne!(value, 0, "0 marks an empty slot");
        let (num, den) = max_load;
        if (self.len + 1) * den > self.slots.len() * num {
            let n = (self.slots.len() * 2).max(MIN_SLOTS);
            let old = std::mem::replace(&mut self.slots, vec![0; n]);
            for s in old.into_iter().filter(|&s| s != 0) {
                self.place(home_of(s), s);
            }
        }
        self.place(hash, value);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, value: u64) {
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = value;
    }

    /// Empties the slot at `at` (a position [`Slots::find`] gave) and moves
    /// the values after it back to where a lookup finds them.
    pub(crate) fn remove_at(&mut self, mut at: usize, home_of: impl Fn(u64) -> u64) {
        let mask = self.mask();
        let mut j = at;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(home_of(s));
            // The value stays if its home lies cyclically in (hole, j].
            let stays = if at <= j {
                at < home && home <= j
            } else {
                at < home || home <= j
            };
            if !stays {
                self.slots[at] = s;
                at = j;
            }
        }
        self.slots[at] = 0;
        self.len -= 1;
    }

    /// Forgets every value (keeps the memory).
    pub(crate) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = 0);
        self.len = 0;
    }
}
