//! The stored panes of one window, oldest first: up to [`INLINE`] of them
//! inside the window itself, more in a ring on the heap.
//!
//! At high cardinality most groups hold one to three panes (a slice seen a
//! few times per window), and a heap ring per group cost an allocation at
//! its first event, a free when it was forgotten and a cache miss on every
//! event. Inline, a group's panes sit in the same allocation as the group.
//! A window that needs more panes moves them to the heap once and keeps the
//! ring while it lives. Checkpoints see a plain sequence of panes, the same
//! bytes as before.

use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Pane;

/// Panes kept inside the window before it moves them to the heap.
pub(super) const INLINE: usize = 3;

/// The panes of a window (see the module docs).
#[derive(Debug, Clone)]
pub(super) enum Panes {
    /// `len` panes in `buf[..len]`.
    Inline { len: u8, buf: [Pane; INLINE] },
    /// Past [`INLINE`] panes (kept once there, however many leave).
    Heap(VecDeque<Pane>),
}

const EMPTY: Pane = Pane { idx: 0, c: [0; 3] };

impl Default for Panes {
    fn default() -> Self {
        Panes::Inline {
            len: 0,
            buf: [EMPTY; INLINE],
        }
    }
}

impl Panes {
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Panes::Inline { len, .. } => *len as usize,
            Panes::Heap(v) => v.len(),
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&Pane> {
        match self {
            Panes::Inline { len, buf } => buf[..*len as usize].get(i),
            Panes::Heap(v) => v.get(i),
        }
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&Pane> {
        self.get(0)
    }

    #[inline]
    pub(super) fn back(&self) -> Option<&Pane> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Like [`VecDeque::binary_search_by_key`] (the panes are sorted by index).
    pub(super) fn binary_search_idx(&self, idx: i64) -> Result<usize, usize> {
        match self {
            Panes::Inline { len, buf } => {
                buf[..*len as usize].binary_search_by_key(&idx, |p| p.idx)
            }
            Panes::Heap(v) => v.binary_search_by_key(&idx, |p| p.idx),
        }
    }

    /// Inserts `pane` at `pos` (≤ len), moving the panes to the heap when
    /// the inline room is full.
    pub(super) fn insert(&mut self, pos: usize, pane: Pane) {
        match self {
            Panes::Inline { len, buf } if (*len as usize) < INLINE => {
                let n = *len as usize;
                buf.copy_within(pos..n, pos + 1);
                buf[pos] = pane;
                *len += 1;
            }
            Panes::Inline { len, buf } => {
                let mut v = VecDeque::with_capacity(2 * INLINE + 2);
                v.extend(buf[..*len as usize].iter().copied());
                v.insert(pos, pane);
                *self = Panes::Heap(v);
            }
            Panes::Heap(v) => v.insert(pos, pane),
        }
    }

    /// Removes the oldest pane.
    pub(super) fn pop_front(&mut self) -> Option<Pane> {
        match self {
            Panes::Inline { len, buf } => {
                let n = *len as usize;
                if n == 0 {
                    return None;
                }
                let first = buf[0];
                buf.copy_within(1..n, 0);
                *len -= 1;
                Some(first)
            }
            Panes::Heap(v) => v.pop_front(),
        }
    }

    /// The panes, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Pane> {
        let (a, b): (&[Pane], &[Pane]) = match self {
            Panes::Inline { len, buf } => (&buf[..*len as usize], &[]),
            Panes::Heap(v) => v.as_slices(),
        };
        a.iter().chain(b)
    }

    /// Whether the panes live on the heap.
    #[cfg(test)]
    pub(super) fn spilled(&self) -> bool {
        matches!(self, Panes::Heap(_))
    }
}

impl Index<usize> for Panes {
    type Output = Pane;

    #[inline]
    fn index(&self, i: usize) -> &Pane {
        match self {
            Panes::Inline { len, buf } => &buf[..*len as usize][i],
            Panes::Heap(v) => &v[i],
        }
    }
}

impl IndexMut<usize> for Panes {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Pane {
        match self {
            Panes::Inline { len, buf } => &mut buf[..*len as usize][i],
            Panes::Heap(v) => &mut v[i],
        }
    }
}

impl FromIterator<Pane> for Panes {
    fn from_iter<I: IntoIterator<Item = Pane>>(iter: I) -> Self {
        let mut p = Panes::default();
        for pane in iter {
            let n = p.len();
            p.insert(n, pane);
        }
        p
    }
}

/// A sequence of panes, as a `VecDeque` of them was written.
impl Serialize for Panes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Panes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Pane>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(idx: i64) -> Pane {
        Pane {
            idx,
            c: [idx, 0, 0],
        }
    }

    fn idxs(p: &Panes) -> Vec<i64> {
        p.iter().map(|x| x.idx).collect()
    }

    /// Inline and on the heap, the panes behave as a `VecDeque` of them.
    #[test]
    fn behaves_as_a_deque() {
        let mut p = Panes::default();
        let mut model: VecDeque<Pane> = VecDeque::new();
        // Inserts at the back, the front and the middle, past the inline room.
        for (pos, idx) in [(0, 10), (1, 30), (1, 20), (0, 5), (4, 40), (2, 15)] {
            p.insert(pos, pane(idx));
            model.insert(pos, pane(idx));
            assert_eq!(idxs(&p), model.iter().map(|x| x.idx).collect::<Vec<_>>());
            assert_eq!(p.len(), model.len());
        }
        assert!(p.spilled());
        assert_eq!(p.binary_search_idx(20), Ok(3));
        assert_eq!(p.binary_search_idx(21), Err(4));
        p[3].c[1] = 7;
        assert_eq!(p.get(3).map(|x| x.c[1]), Some(7));
        while let Some(x) = p.pop_front() {
            assert_eq!(Some(x.idx), model.pop_front().map(|m| m.idx));
        }
        assert!(p.is_empty() && model.is_empty());

        let mut q = Panes::default();
        q.insert(0, pane(2));
        q.insert(0, pane(1));
        q.insert(2, pane(3));
        assert!(!q.spilled(), "three panes stay inline");
        assert_eq!(idxs(&q), [1, 2, 3]);
        assert_eq!(
            (q.front().map(|x| x.idx), q.back().map(|x| x.idx)),
            (Some(1), Some(3))
        );
        assert_eq!(q.binary_search_idx(3), Ok(2));
        assert_eq!(q.pop_front().map(|x| x.idx), Some(1));
        assert_eq!(idxs(&q), [2, 3]);
        assert_eq!(q.get(2).map(|x| x.idx), None);
    }

    /// Checkpoints: the same bytes as a `VecDeque` of the same panes.
    #[test]
    fn serialises_as_a_deque() {
        for n in [0, 2, 3, 7] {
            let panes: Panes = (1..=n).map(pane).collect();
            let deque: VecDeque<Pane> = (1..=n).map(pane).collect();
            let a = bincode::serialize(&panes).unwrap();
            assert_eq!(a, bincode::serialize(&deque).unwrap());
            let back: Panes = bincode::deserialize(&a).unwrap();
            assert_eq!(idxs(&back), idxs(&panes));
        }
    }
}
