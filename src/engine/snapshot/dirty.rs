//! Which groups changed since the last checkpoint: one bit per slot of a
//! rule and the keys of the groups it forgot, so an incremental checkpoint
//! (`super::incremental`) writes only those.
//!
//! A group's state, and the wheel entries and deadline timers that point at
//! it, change only when an event is applied to it, a response answers one of
//! its complaints, or one of its timers fires; each of those marks its slot.
//! A group that is forgotten leaves its key here (its slot may be reused by
//! another group before the checkpoint). Tracking is off unless a caller
//! turns it on (`run` with durable state): replays and backtests keep
//! nothing.

use super::super::key::GroupKey;

/// Changes of one rule since the last checkpoint (see the module docs).
#[derive(Debug, Default)]
pub(in crate::engine) struct Dirty {
    on: bool,
    /// One bit per slot.
    bits: Vec<u64>,
    /// Keys of the groups forgotten.
    removed: Vec<GroupKey>,
}

impl Dirty {
    /// Turns tracking on or off; either way nothing is marked.
    pub(in crate::engine) fn set_tracking(&mut self, on: bool) {
        self.on = on;
        self.bits = Vec::new();
        self.removed = Vec::new();
    }

    /// The group in `slot` changed (or was created).
    #[inline]
    pub(in crate::engine) fn mark(&mut self, slot: u32) {
        if !self.on {
            return;
        }
        let w = (slot >> 6) as usize;
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1u64 << (slot & 63);
    }

    /// The group with `key` was forgotten.
    #[inline]
    pub(in crate::engine) fn forgot(&mut self, key: &[u8]) {
        if self.on {
            self.removed.push(GroupKey::from_slice(key));
        }
    }

    /// Whether `slot` is marked.
    #[cfg(test)]
    fn is_marked(&self, slot: u32) -> bool {
        self.bits
            .get((slot >> 6) as usize)
            .is_some_and(|w| w & (1u64 << (slot & 63)) != 0)
    }

    /// The marked slots, in order.
    pub(super) fn marked(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &bits)| {
            let mut b = bits;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let i = b.trailing_zeros();
                b &= b - 1;
                Some((w as u32) << 6 | i)
            })
        })
    }

    /// Whether nothing is marked.
    #[cfg(test)]
    fn is_clean(&self) -> bool {
        self.removed.is_empty() && self.bits.iter().all(|&w| w == 0)
    }

    /// Forgets the marks (after a checkpoint took them); returns the keys
    /// of the groups forgotten.
    pub(super) fn clear(&mut self) -> Vec<GroupKey> {
        self.bits.iter_mut().for_each(|w| *w = 0);
        std::mem::take(&mut self.removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_while_tracking_and_lists_them_in_order() {
        let mut d = Dirty::default();
        d.mark(3);
        d.forgot(&GroupKey::from_slice(b"k"));
        assert!(d.is_clean(), "off by default");
        d.set_tracking(true);
        for s in [130, 3, 64, 3] {
            d.mark(s);
        }
        assert!(d.is_marked(64) && !d.is_marked(65) && !d.is_marked(100_000));
        assert_eq!(d.marked().collect::<Vec<_>>(), vec![3, 64, 130]);
        d.forgot(&GroupKey::from_slice(b"k"));
        assert_eq!(d.clear().len(), 1);
        assert!(d.is_clean());
    }
}
