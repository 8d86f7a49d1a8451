//! Which panes of a surge rule's slide held any event of the stream: a
//! stretch in which the whole stream was silent (a business closed at the
//! weekend, a feed outage of hours) is not history, and a surge baseline
//! leaves its panes out — as it leaves out the panes before the rule's
//! origin — instead of counting them as zeros (which made every slice look
//! like it surged when traffic came back).
//!
//! A ring of bits, one per pane, over the newest `cap` panes marked. A pane
//! older than the ring, or at or before `known_from` (a state restored from
//! a checkpoint written before panes were tracked), counts as occupied: what
//! is not known is taken as history, as before.

use serde::{Deserialize, Serialize};

/// Panes kept beyond a rule's window and baseline: events ahead of the
/// clock (within the allowed future skew) mark panes beyond the window's
/// end without pushing the baseline out of the ring.
const SLACK_PANES: i64 = 1024;

/// The occupied panes of one rule's slide (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    /// Panes in the ring (a multiple of 64).
    cap: i64,
    /// The newest pane marked.
    newest: Option<i64>,
    /// Panes at or before this one count as occupied.
    known_from: i64,
    /// Bit `p mod cap` of pane `p`.
    bits: Vec<u64>,
}

impl Occupancy {
    /// A ring for a rule whose window and baseline span `panes` panes.
    pub fn new(panes: i64) -> Occupancy {
        let want = panes.max(1).saturating_mul(2).saturating_add(SLACK_PANES);
        let words = usize::try_from((want + 63) / 64).unwrap_or(1).max(1);
        Occupancy {
            cap: words as i64 * 64,
            newest: None,
            known_from: i64::MIN,
            bits: vec![0; words],
        }
    }

    /// An empty ring of the same size as `other`.
    pub fn new_like(other: &Occupancy) -> Occupancy {
        Occupancy {
            cap: other.cap,
            newest: None,
            known_from: i64::MIN,
            bits: vec![0; other.bits.len()],
        }
    }

    /// Whether `other` is a ring of the same size (a rule restored as it was
    /// written).
    pub fn same_shape(&self, other: &Occupancy) -> bool {
        self.cap == other.cap && self.bits.len() == other.bits.len()
    }

    /// A ring of this one's size holding what `stored` (a checkpoint's,
    /// perhaps of another size: `engine.silence_after` changed) knows: its
    /// occupied panes, and the panes before what it held count as occupied.
    /// `None` when `stored` is not a well-formed ring.
    pub fn carried_from(&self, stored: &Occupancy) -> Option<Occupancy> {
        if !stored.well_formed() {
            return None;
        }
        if stored.same_shape(self) {
            return Some(stored.clone());
        }
        let mut out = Occupancy::new_like(self);
        out.known_from = stored.known_from;
        let Some(n) = stored.newest else {
            return Some(out);
        };
        // What the stored ring held: (n − cap, n]; before it, unknown.
        let first = (n - stored.cap + 1).max(stored.known_from.saturating_add(1));
        out.known_from = out.known_from.max(n - stored.cap);
        for p in first..=n {
            if stored.occupied(p) {
                out.mark(p);
            }
        }
        // Silent panes up to the stored newest stay known as silent.
        if out.newest.is_none_or(|m| m < n) {
            out.advance_to(n);
        }
        Some(out)
    }

    /// Whether a ring read from a checkpoint can be used: its size matches
    /// its words, and its panes are far from the ends of `i64` (a corrupt
    /// one could make the ring arithmetic overflow or loop for ever).
    fn well_formed(&self) -> bool {
        const SANE: i64 = 1 << 60;
        let sane = |p: i64| (-SANE..=SANE).contains(&p);
        usize::try_from(self.cap).is_ok_and(|c| c > 0 && c % 64 == 0 && c / 64 == self.bits.len())
            && (self.known_from == i64::MIN || sane(self.known_from))
            && self.newest.is_none_or(sane)
    }

    /// Moves the newest pane to `pane` without marking it (the panes up
    /// to it are known to be silent).
    fn advance_to(&mut self, pane: i64) {
        if self.mark(pane) {
            let (w, b) = self.slot(pane);
            self.bits[w] &= !b;
        }
    }

    /// Panes at or before `pane` count as occupied from now on (a state
    /// restored without pane tracking).
    pub fn assume_occupied_through(&mut self, pane: i64) {
        self.known_from = self.known_from.max(pane);
    }

    fn slot(&self, pane: i64) -> (usize, u64) {
        let i = pane.rem_euclid(self.cap);
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Notes an event in `pane`; whether that changed anything.
    #[inline]
    pub fn mark(&mut self, pane: i64) -> bool {
        match self.newest {
            Some(n) if pane == n => false,
            Some(n) if pane < n => {
                if pane > n.saturating_sub(self.cap) {
                    let (w, b) = self.slot(pane);
                    let new = self.bits[w] & b == 0;
                    self.bits[w] |= b;
                    new
                } else {
                    false
                }
            }
            Some(n) if pane.saturating_sub(n) < self.cap => {
                for p in n + 1..pane {
                    let (w, b) = self.slot(p);
                    self.bits[w] &= !b;
                }
                let (w, b) = self.slot(pane);
                self.bits[w] |= b;
                self.newest = Some(pane);
                true
            }
            _ => {
                self.bits.iter_mut().for_each(|w| *w = 0);
                let (w, b) = self.slot(pane);
                self.bits[w] |= b;
                self.newest = Some(pane);
                true
            }
        }
    }

    /// Panes in `(after, through]` that lie in a run of at least `run`
    /// panes without an event, the run bounded by pane `end` (the
    /// evaluation's: what comes later is not known yet). `run` 0: none.
    pub fn silent_runs(&self, after: i64, through: i64, end: i64, run: i64) -> i64 {
        if run <= 0 || through <= after {
            return 0;
        }
        let free = |p: i64| p <= end && !self.occupied(p);
        let mut count = 0;
        let mut p = after + 1;
        while p <= through {
            if !free(p) {
                p += 1;
                continue;
            }
            // The run holding p: it may begin before the range (only the
            // first one can), and goes on past it up to `end`.
            let mut start = p;
            if p == after + 1 {
                while start > p.saturating_sub(run) && free(start - 1) {
                    start -= 1;
                }
            }
            let mut last = p;
            while last < end && free(last + 1) {
                last += 1;
            }
            if last - start + 1 >= run {
                count += last.min(through) - p + 1;
            }
            p = last + 1;
        }
        count
    }

    /// Panes without an event ending at `last` (`last`, `last − 1`, …),
    /// counted up to `cap`.
    pub fn free_run_back(&self, last: i64, cap: i64) -> i64 {
        let mut n = 0;
        let mut p = last;
        // Every pane after the newest one is free.
        if let Some(newest) = self.newest {
            if p > newest {
                n = p.saturating_sub(newest).min(cap);
                p = p.saturating_sub(n);
            }
        }
        while n < cap && !self.occupied(p) {
            n += 1;
            p = p.saturating_sub(1);
        }
        n
    }

    /// Whether `pane` held an event (or is not known: see the module docs).
    pub fn occupied(&self, pane: i64) -> bool {
        if pane <= self.known_from {
            return true;
        }
        let Some(n) = self.newest else { return false };
        if pane > n {
            return false;
        }
        if pane <= n.saturating_sub(self.cap) {
            return true;
        }
        let (w, b) = self.slot(pane);
        self.bits[w] & b != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panes in `(after, through]` without an event: runs of one pane.
    fn silent(o: &Occupancy, after: i64, through: i64) -> i64 {
        o.silent_runs(after, through, through, 1)
    }

    /// The naive answer: count pane by pane.
    fn naive(o: &Occupancy, after: i64, through: i64) -> i64 {
        (after + 1..=through).filter(|&p| !o.occupied(p)).count() as i64
    }

    #[test]
    fn marks_and_silences() {
        let mut o = Occupancy::new(10);
        assert_eq!(silent(&o, 0, 5), 5, "nothing marked");
        o.mark(3);
        o.mark(4);
        o.mark(8);
        assert!(o.occupied(3) && o.occupied(4) && o.occupied(8));
        assert!(!o.occupied(5) && !o.occupied(9) && !o.occupied(2));
        assert_eq!(silent(&o, 2, 8), 3, "5, 6, 7");
        assert_eq!(silent(&o, 2, 12), 7, "and 9..=12 after the newest");
        // A late mark fills a gap.
        o.mark(6);
        assert_eq!(silent(&o, 2, 8), 2);
        // A jump past the ring forgets the old marks: unknown is occupied.
        o.mark(8 + o.cap + 5);
        assert!(o.occupied(3), "out of the ring: taken as history");
        assert!(!o.occupied(8 + o.cap + 4));
    }

    #[test]
    fn a_restored_state_takes_what_it_does_not_know_as_history() {
        let mut o = Occupancy::new(10);
        o.assume_occupied_through(100);
        assert_eq!(silent(&o, 90, 100), 0);
        assert_eq!(silent(&o, 90, 103), 3);
        o.mark(102);
        assert_eq!(silent(&o, 90, 103), 2);
    }

    /// The naive answer for runs: every silent pane whose whole run (up to
    /// `end`, the unknown before it counting as occupied) is long enough.
    fn naive_runs(o: &Occupancy, after: i64, through: i64, end: i64, run: i64) -> i64 {
        if run <= 0 {
            return 0;
        }
        let free = |p: i64| p <= end && !o.occupied(p);
        (after + 1..=through)
            .filter(|&p| {
                if !free(p) {
                    return false;
                }
                let (mut a, mut b) = (p, p);
                while free(a - 1) && p - a < run {
                    a -= 1;
                }
                while free(b + 1) && b - a < run {
                    b += 1;
                }
                b - a + 1 >= run
            })
            .count() as i64
    }

    #[test]
    fn a_ring_of_another_size_takes_over_what_one_knew() {
        let mut small = Occupancy::new(10);
        for p in [100, 101, 105, 140] {
            small.mark(p);
        }
        let big = Occupancy::new(500);
        let carried = big.carried_from(&small).expect("well formed");
        let n = 140;
        for p in n - small.cap + 1..=n + 3 {
            assert_eq!(carried.occupied(p), small.occupied(p), "pane {p}");
        }
        assert!(
            carried.occupied(n - small.cap),
            "before the old ring: history"
        );
        assert_eq!(
            carried.silent_runs(100, 140, 145, 10),
            small.silent_runs(100, 140, 145, 10)
        );
        // And into a smaller one.
        let back = small.carried_from(&carried).expect("well formed");
        assert_eq!(
            back.silent_runs(100, 140, 145, 10),
            small.silent_runs(100, 140, 145, 10)
        );
    }

    #[test]
    fn a_ring_that_is_not_well_formed_is_refused_and_extremes_do_not_overflow() {
        let o = Occupancy::new(10);
        let mut bad = o.clone();
        bad.newest = Some(i64::MIN + 5);
        assert!(o.carried_from(&bad).is_none());
        let mut bad = o.clone();
        bad.bits.pop();
        assert!(o.carried_from(&bad).is_none());
        let mut bad = o.clone();
        bad.cap = 0;
        bad.bits.clear();
        assert!(o.carried_from(&bad).is_none());
        // A newest far from the next pane neither overflows nor loops.
        let mut far = Occupancy::new(10);
        far.newest = Some(i64::MIN + 5);
        assert!(!far.occupied(100));
        assert!(far.mark(100));
        assert!(far.occupied(100));
        far.mark(i64::MAX - 3);
        assert!(far.occupied(i64::MAX - 3));
    }

    #[test]
    fn only_long_silences_count() {
        let mut o = Occupancy::new(100);
        for p in [1, 2, 5, 20, 21, 30] {
            o.mark(p);
        }
        // Gaps: 3–4 (2 panes), 6–19 (14), 22–29 (8), 31.. (to `end`).
        assert_eq!(o.silent_runs(0, 30, 30, 10), 14);
        assert_eq!(o.silent_runs(0, 30, 30, 8), 22);
        assert_eq!(
            o.silent_runs(10, 25, 30, 10),
            9,
            "11–19 of 6–19, which begins before the range"
        );
        assert_eq!(o.silent_runs(25, 40, 40, 10), 10, "31–40, cut at the end");
        assert_eq!(o.silent_runs(25, 40, 35, 10), 0, "31–35: 5 panes so far");
        assert_eq!(o.silent_runs(0, 30, 30, 0), 0, "off");
    }

    #[test]
    fn the_counts_match_pane_by_pane() {
        let mut seed = 7u64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for round in 0..200 {
            let mut o = Occupancy::new(1 + next(300) as i64);
            let mut p = next(1000) as i64 - 500;
            for _ in 0..next(400) {
                p += next(5) as i64 - 1;
                if next(50) == 0 {
                    p += next(3000) as i64;
                }
                o.mark(p);
            }
            if round % 3 == 0 {
                o.assume_occupied_through(p - next(200) as i64);
            }
            for _ in 0..20 {
                let a = p - next(3000) as i64;
                let b = a + next(3000) as i64;
                assert_eq!(
                    silent(&o, a, b),
                    naive(&o, a, b),
                    "round {round}: ({a}, {b}]"
                );
                let (end, run) = (b + next(50) as i64, next(40) as i64);
                assert_eq!(
                    o.silent_runs(a, b, end, run),
                    naive_runs(&o, a, b, end, run),
                    "round {round}: ({a}, {b}] to {end}, runs of {run}"
                );
                let cap = next(400) as i64;
                let naive_back = (0..cap).take_while(|k| !o.occupied(b - k)).count() as i64;
                assert_eq!(
                    o.free_run_back(b, cap),
                    naive_back,
                    "round {round}: free run back from {b}, at most {cap}"
                );
            }
        }
    }
}
