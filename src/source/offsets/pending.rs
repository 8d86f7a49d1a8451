//! The offsets of one partition still pending (held by the sequencer, or
//! dead letters not yet acknowledged): a set that every consumed message
//! enters and leaves, so it must be cheap.
//!
//! A partition's messages arrive in offset order and leave in event-time
//! order, so the pending offsets lie in a short stretch behind the newest
//! one: a bitmap over that stretch (one bit per offset, from the oldest
//! pending word to the newest) holds them with no allocation per offset and
//! finds the oldest by looking at its first word. An offset far behind or
//! far ahead of the stretch (a redelivery after a rebalance, a gap of
//! millions) goes to an ordered set beside it instead of stretching the bitmap.

use std::collections::{BTreeSet, VecDeque};

/// Words the bitmap may grow by at once (262,144 offsets, 32 KiB): an offset
/// further ahead goes to the set.
const MAX_GROWTH_WORDS: usize = 4096;

/// Pending offsets of one partition (see the module docs).
#[derive(Debug, Clone, Default)]
pub(super) struct Pending {
    /// Offset of bit 0 of `words[0]` (a multiple of 64).
    base: i64,
    /// Bit `i` of word `w`: offset `base + 64 w + i` is pending. The first
    /// word is never 0 (empty words at the front are dropped).
    words: VecDeque<u64>,
    /// Bits set in `words`.
    bits: usize,
    /// Pending offsets outside the bitmap.
    others: BTreeSet<i64>,
}

impl Pending {
    /// Word index and bit of `offset` in the bitmap, if it lies in it.
    fn position(&self, offset: i64) -> Option<(usize, u32)> {
        let d = offset.checked_sub(self.base)?;
        if d < 0 {
            return None;
        }
        let w = usize::try_from(d / 64).ok()?;
        (w < self.words.len()).then_some((w, (d % 64) as u32))
    }

    /// Adds `offset` (no effect if it is pending already).
    pub(super) fn insert(&mut self, offset: i64) {
        if !self.others.is_empty() && self.others.contains(&offset) {
            return;
        }
        if self.words.is_empty() {
            self.base = offset - offset.rem_euclid(64);
        }
        let d = offset.saturating_sub(self.base);
        let w = usize::try_from(d / 64).unwrap_or(usize::MAX);
        if d < 0 || w >= self.words.len() + MAX_GROWTH_WORDS {
            self.others.insert(offset);
            return;
        }
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (d % 64);
        if self.words[w] & bit == 0 {
            self.words[w] |= bit;
            self.bits += 1;
        }
    }

    /// Removes `offset` (no effect if it is not pending).
    pub(super) fn remove(&mut self, offset: i64) {
        if !self.others.is_empty() {
            self.others.remove(&offset);
        }
        let Some((w, b)) = self.position(offset) else {
            return;
        };
        let bit = 1u64 << b;
        if self.words[w] & bit == 0 {
            return;
        }
        self.words[w] &= !bit;
        self.bits -= 1;
        while self.words.front() == Some(&0) {
            self.words.pop_front();
            self.base += 64;
        }
    }

    /// The oldest pending offset.
    pub(super) fn first(&self) -> Option<i64> {
        let bitmap = self
            .words
            .front()
            .map(|&w| self.base + i64::from(w.trailing_zeros()));
        match (bitmap, self.others.first()) {
            (Some(a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b.copied()),
        }
    }

    /// How many offsets are pending.
    pub(super) fn len(&self) -> usize {
        self.bits + self.others.len()
    }

    /// The pending offsets, ascending.
    pub(super) fn to_vec(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.others.iter().copied().collect();
        for (i, &word) in self.words.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let b = word.trailing_zeros();
                v.push(self.base + 64 * i as i64 + i64::from(b));
                word &= word - 1;
            }
        }
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_set() {
        let mut x: u64 = 11;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut p = Pending::default();
        let mut model = BTreeSet::new();
        let mut newest = 1_000i64;
        for step in 0..20_000 {
            let r = next();
            let offset = match r % 10 {
                // Mostly the next offsets, with small gaps.
                0..=4 => {
                    newest += 1 + (r >> 8) as i64 % 3;
                    newest
                }
                // Now and then far behind or far ahead.
                5 if step % 50 == 0 => newest - 500_000,
                5 if step % 75 == 0 => newest + 100_000_000,
                // Otherwise one pending (or recent) offset leaves.
                _ => {
                    let o = newest - (r >> 8) as i64 % 400;
                    p.remove(o);
                    model.remove(&o);
                    assert_eq!(p.first(), model.first().copied());
                    continue;
                }
            };
            p.insert(offset);
            model.insert(offset);
            assert_eq!(p.first(), model.first().copied(), "step {step}");
            assert_eq!(p.len(), model.len());
            if step % 97 == 0 {
                assert_eq!(p.to_vec(), model.iter().copied().collect::<Vec<_>>());
            }
        }
        assert_eq!(p.to_vec(), model.iter().copied().collect::<Vec<_>>());
        for o in model.clone() {
            p.remove(o);
            model.remove(&o);
            assert_eq!(p.first(), model.first().copied());
        }
        assert_eq!(p.len(), 0);
        assert!(p.words.is_empty());
    }
}
