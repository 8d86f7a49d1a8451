//! A timing wheel of pane boundaries, one per rule.
//!
//! Panes leave the window (and the surge baseline) exactly at slide
//! boundaries, so the timers that re-evaluate groups when that happens are
//! bucketed by boundary pane instead of going through a heap: scheduling is an
//! append, and firing walks one bucket sequentially. Buckets are recycled to
//! keep allocations flat.

use std::collections::VecDeque;

/// (slot, generation) entries bucketed by boundary pane.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Wheel {
    /// Pane index of `buckets[0]`.
    base: i64,
    buckets: VecDeque<Vec<(u32, u32)>>,
    /// Emptied buckets kept for reuse.
    #[serde(skip)]
    spare: Vec<Vec<(u32, u32)>>,
    /// Entries scheduled and not yet taken.
    len: usize,
}

/// Buckets further ahead than this are refused (the caller falls back to a heap).
const MAX_SPAN: i64 = 1 << 20;

impl Wheel {
    /// Schedules (slot, gen) at boundary pane `q`. Returns `false` if `q` is
    /// before the wheel's base (already due) or too far ahead.
    pub(crate) fn schedule(&mut self, q: i64, slot: u32, gen: u32) -> bool {
        if self.buckets.is_empty() {
            self.base = q;
        }
        if q < self.base {
            // Earlier than the first bucket: grow at the front if it is close.
            let gap = self.base - q;
            if gap > MAX_SPAN {
                return false;
            }
            for _ in 0..gap {
                let b = self.spare.pop().unwrap_or_default();
                self.buckets.push_front(b);
            }
            self.base = q;
        }
        let off = q - self.base;
        if off > MAX_SPAN {
            return false;
        }
        let off = off as usize;
        while self.buckets.len() <= off {
            let b = self.spare.pop().unwrap_or_default();
            self.buckets.push_back(b);
        }
        self.buckets[off].push((slot, gen));
        self.len += 1;
        true
    }

    /// The first boundary pane with entries, dropping empty leading buckets.
    pub(crate) fn next(&mut self) -> Option<i64> {
        while let Some(front) = self.buckets.front() {
            if !front.is_empty() {
                return Some(self.base);
            }
            if let Some(b) = self.buckets.pop_front() {
                self.spare.push(b);
            }
            self.base += 1;
        }
        None
    }

    /// Takes the entries of the first non-empty bucket (call after [`Wheel::next`]).
    pub(crate) fn take_front(&mut self) -> Vec<(u32, u32)> {
        match self.buckets.pop_front() {
            Some(b) => {
                self.base += 1;
                self.len -= b.len();
                b
            }
            None => Vec::new(),
        }
    }

    /// Returns a drained bucket for reuse.
    pub(crate) fn recycle(&mut self, mut b: Vec<(u32, u32)>) {
        b.clear();
        if self.spare.len() < 64 {
            self.spare.push(b);
        }
    }

    /// The union of `parts`, each entry's slot moved by its part's offset;
    /// entries that do not fit (too far from the others) are handed to
    /// `refused` as (boundary pane, slot, gen).
    pub(crate) fn merged<'a>(
        parts: impl Iterator<Item = (&'a Wheel, u32)>,
        mut refused: impl FnMut(i64, u32, u32),
    ) -> Wheel {
        let mut w = Wheel::default();
        for (p, off) in parts {
            for (i, b) in p.buckets.iter().enumerate() {
                let q = p.base + i as i64;
                for &(slot, gen) in b {
                    if !w.schedule(q, slot + off, gen) {
                        refused(q, slot + off, gen);
                    }
                }
            }
        }
        w
    }

    /// Every entry as (boundary pane, slot, gen), by pane (a checkpoint
    /// keeps a group's entries with the group).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (i64, u32, u32)> + '_ {
        self.buckets.iter().enumerate().flat_map(move |(i, b)| {
            let q = self.base + i as i64;
            b.iter().map(move |&(slot, gen)| (q, slot, gen))
        })
    }

    /// Entries pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_boundary_order() {
        let mut w = Wheel::default();
        assert!(w.schedule(10, 1, 0));
        assert!(w.schedule(12, 2, 0));
        assert!(w.schedule(10, 3, 0));
        assert!(w.schedule(8, 4, 0));
        assert_eq!(w.len(), 4);
        assert_eq!(w.next(), Some(8));
        assert_eq!(w.take_front(), vec![(4, 0)]);
        assert_eq!(w.next(), Some(10));
        let b = w.take_front();
        assert_eq!(b, vec![(1, 0), (3, 0)]);
        w.recycle(b);
        assert_eq!(w.next(), Some(12));
        assert_eq!(w.take_front(), vec![(2, 0)]);
        assert_eq!(w.next(), None);
        assert!(w.is_empty());
        assert!(w.schedule(20, 0, 0));
        assert!(
            !w.schedule(21 + MAX_SPAN, 0, 0),
            "too far ahead of the first bucket"
        );
    }
}
