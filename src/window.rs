//! Sliding event-time windows as rings of slide-sized panes (`docs/contract.md` §2).
//!
//! One [`Window`] per (rule, group). Time is cut into panes of the rule's slide
//! `S`: pane `p` covers event times `((p−1)·S, p·S]`. The window ending at pane
//! `E` covers panes `(E−n, E]` where `n = window ÷ slide`, i.e. event times
//! `(E·S − W, E·S]`, exactly the contract's `t − W < ts ≤ t`. A surge indicator
//! also keeps the `m = baseline ÷ slide` panes before the window.
//!
//! Only non-empty panes are stored, oldest first, in three contiguous regions:
//! baseline, current window, future (panes beyond the current end, which exist
//! when the live service holds the clock back for a slower partition). Each
//! region keeps running totals, so an event touches one pane and a slide moves
//! only the panes that change region: O(1) amortised per event.
//!
//! Counters are integers (scores in thousandths), so adding and subtracting
//! panes never drifts. The decoder keeps scores within `engine.score_range`,
//! so sums stay far from the integer limits; the arithmetic saturates anyway,
//! so an extreme input can distort one window's value but never panics (a
//! property test feeds it counters near `i64::MAX`). Customer-level indicators additionally keep a
//! per-window count per customer ([`CustomerCounts`]), bounded by
//! `engine.max_customers_per_group`.

use std::collections::VecDeque;

use hashbrown::HashMap;

mod panes;

use panes::Panes;

/// The counters of one pane or one region. Their meaning depends on the
/// indicator kind (see `indicator.rs`).
pub type Counters = [i64; 3];

/// One slide-sized slice of time (32 bytes: two panes to a cache line).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Pane {
    /// Pane index: the pane covers `((idx−1)·S, idx·S]`.
    idx: i64,
    /// Counters of the events in this pane.
    c: Counters,
}

/// Which region of the window a pane is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Older than the baseline: no longer kept.
    Expired,
    /// In the surge baseline before the current window.
    Baseline,
    /// In the current window.
    Current,
    /// After the current window's end.
    Future,
}

/// Per-customer event counts over the current window, for distinct and repeat
/// customer indicators.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CustomerCounts {
    #[serde(with = "customer_map")]
    counts: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// Per stored pane (parallel to the window's panes): hashes of the
    /// customers counted in it, with their event counts. Kept here, not in
    /// the panes, so windows without customers have small panes.
    panes: VecDeque<Vec<(u64, u32)>>,
    /// Customers whose count is at least `min_events`.
    repeat: u64,
    /// Events dropped from customer tracking because the map was full.
    pub(crate) overflow: u64,
}

/// Checkpoints store the customer map as a sorted list (its hasher is not
/// serialisable, and a sorted list is byte-stable).
mod customer_map {
    use hashbrown::HashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Map = HashMap<u64, u32, foldhash::fast::FixedState>;

    pub(crate) fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(u64, u32)> = m.iter().map(|(&k, &c)| (k, c)).collect();
        v.sort_unstable();
        v.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let v = Vec::<(u64, u32)>::deserialize(d)?;
        let mut m = Map::default();
        m.extend(v);
        Ok(m)
    }
}

impl CustomerCounts {
    /// Distinct customers in the window.
    pub(crate) fn distinct(&self) -> u64 {
        self.counts.len() as u64
    }
    /// Customers with at least `min_events` events in the window.
    pub(crate) fn repeat(&self) -> u64 {
        self.repeat
    }

    fn inc(&mut self, cust: u64, by: u32, min_events: u32, cap: usize) -> bool {
        let len = self.counts.len();
        match self.counts.get_mut(&cust) {
            Some(c) => {
                let before = *c;
                *c = c.saturating_add(by);
                if before < min_events && *c >= min_events {
                    self.repeat += 1;
                }
                true
            }
            None if len >= cap => {
                self.overflow += u64::from(by);
                false
            }
            None => {
                self.counts.insert(cust, by);
                if by >= min_events {
                    self.repeat += 1;
                }
                true
            }
        }
    }

    fn dec(&mut self, cust: u64, by: u32, min_events: u32) {
        if let Some(c) = self.counts.get_mut(&cust) {
            let before = *c;
            *c = c.saturating_sub(by);
            if before >= min_events && *c < min_events {
                self.repeat = self.repeat.saturating_sub(1);
            }
            if *c == 0 {
                self.counts.remove(&cust);
            }
        }
    }
}

/// Shape of a window: pane counts of its regions.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Panes in the window (window ÷ slide).
    pub n: i64,
    /// Panes in the baseline before it (0 unless the indicator is a surge).
    pub m: i64,
    /// Whether per-customer counts are kept.
    pub customers: bool,
    /// `min_events` of a repeat-customers indicator (1 otherwise).
    pub min_events: u32,
    /// Cap on distinct customers per window.
    pub max_customers: usize,
}

/// The sliding window of one (rule, group).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The stored panes, oldest first (a few inline: see `window/panes.rs`).
    panes: Panes,
    /// Index in `panes` of the first pane of the current window.
    cur_start: usize,
    /// Index in `panes` of the first future pane.
    fut_start: usize,
    /// The current window ends at this pane (inclusive).
    end: i64,
    /// No pane changes region before the window ends at this pane (a lower
    /// bound), so [`Window::advance`] below it need not read the panes.
    wake: i64,
    /// Totals of the current window.
    pub cur: Counters,
    /// Sum of `c[0]` over baseline panes.
    pub base_sum: i64,
    /// Sum of squares of `c[0]` over baseline panes.
    pub base_sumsq: i128,
    /// Per-customer counts of the current window, if the indicator needs them.
    pub(crate) customers: Option<Box<CustomerCounts>>,
}

impl Window {
    /// An empty window ending at pane `end`.
    pub fn new(end: i64, shape: &Shape) -> Self {
        Self::with_customers(end, shape.customers.then(Box::default))
    }

    /// [`Window::new`] with its customer counts allocated by the caller
    /// (`Some` when the shape counts customers).
    pub(crate) fn with_customers(end: i64, customers: Option<Box<CustomerCounts>>) -> Self {
        Window {
            panes: Panes::default(),
            cur_start: 0,
            fut_start: 0,
            end,
            wake: i64::MAX,
            cur: [0; 3],
            base_sum: 0,
            base_sumsq: 0,
            customers,
        }
    }

    /// The pane the current window ends at.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Whether no pane is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }

    /// Number of stored (non-empty) panes.
    pub fn pane_count(&self) -> usize {
        self.panes.len()
    }

    /// Customer entries stored in the panes (customer-level indicators).
    pub fn customer_entries(&self) -> usize {
        self.customers
            .as_ref()
            .map_or(0, |cc| cc.panes.iter().map(Vec::len).sum())
    }

    /// The region pane `idx` belongs to, for a window ending at `end`.
    pub(crate) fn region_of(idx: i64, end: i64, shape: &Shape) -> Region {
        if idx > end {
            Region::Future
        } else if idx > end - shape.n {
            Region::Current
        } else if idx > end - shape.n - shape.m {
            Region::Baseline
        } else {
            Region::Expired
        }
    }

    /// The baseline region's sum and sum of squares of the first counter
    /// without its panes at or before `pane` (a stream's origin pane, which
    /// it covers only in part, and any before it: see
    /// [`crate::indicator::Baseline`]).
    pub(crate) fn baseline_after(&self, pane: i64) -> (i64, i128) {
        let (mut sum, mut sumsq) = (self.base_sum, self.base_sumsq);
        for i in 0..self.cur_start {
            let Some(p) = self.panes.get(i) else { break };
            if p.idx > pane {
                break;
            }
            sum = sum.saturating_sub(p.c[0]);
            sumsq = sumsq.saturating_sub(square(p.c[0]));
        }
        (sum, sumsq)
    }

    /// Events whose customer this window did not count because
    /// `engine.max_customers_per_group` was reached (0 without customers).
    pub(crate) fn customers_uncounted(&self) -> u64 {
        self.customers.as_deref().map_or(0, |c| c.overflow)
    }

    /// Adds `delta` (and optionally one customer event) to pane `idx`.
    /// Returns the pane's region and whether the pane is new (so the caller
    /// schedules its region changes); `None` if the pane is already expired.
    pub fn add(
        &mut self,
        idx: i64,
        delta: Counters,
        customer: Option<u64>,
        shape: &Shape,
    ) -> Option<(Region, bool)> {
        let region = Self::region_of(idx, self.end, shape);
        if region == Region::Expired {
            return None;
        }
        let (pos, created) = self.pane_position(idx, shape.n);
        if created {
            self.wake = self.wake.min(Self::leaves_region_at(idx, region, shape));
        }
        let pane = &mut self.panes[pos];
        let old0 = pane.c[0];
        for (p, d) in pane.c.iter_mut().zip(delta) {
            *p = p.saturating_add(d);
        }
        let new0 = pane.c[0];
        match region {
            Region::Current => {
                for (c, d) in self.cur.iter_mut().zip(delta) {
                    *c = c.saturating_add(d);
                }
            }
            Region::Baseline => {
                self.base_sum = self.base_sum.saturating_add(new0.saturating_sub(old0));
                self.base_sumsq = self
                    .base_sumsq
                    .saturating_add(square(new0))
                    .saturating_sub(square(old0));
            }
            Region::Future | Region::Expired => {}
        }
        if let (Some(cust), Some(cc)) = (customer, self.customers.as_deref_mut()) {
            let record = match region {
                Region::Current => cc.inc(cust, 1, shape.min_events, shape.max_customers),
                Region::Future => true,
                _ => false,
            };
            if record {
                if let Some(list) = cc.panes.get_mut(pos) {
                    match list.iter_mut().rev().take(4).find(|(c, _)| *c == cust) {
                        Some(entry) => entry.1 = entry.1.saturating_add(1),
                        None => list.push((cust, 1)),
                    }
                }
            }
        }
        Some((region, created))
    }

    /// The window end at which pane `idx`, now in `region`, moves on.
    fn leaves_region_at(idx: i64, region: Region, shape: &Shape) -> i64 {
        match region {
            Region::Future => idx,
            Region::Current => idx.saturating_add(shape.n),
            Region::Baseline | Region::Expired => idx.saturating_add(shape.n + shape.m),
        }
    }

    /// Finds or inserts pane `idx`, keeping the region cursors right.
    fn pane_position(&mut self, idx: i64, n: i64) -> (usize, bool) {
        let pos = match self.panes.back() {
            Some(back) if back.idx == idx => return (self.panes.len() - 1, false),
            // The common case: time moves forward, the pane goes at the end.
            Some(back) if back.idx < idx => self.panes.len(),
            None => 0,
            Some(_) => match self.panes.binary_search_idx(idx) {
                Ok(pos) => return (pos, false),
                Err(pos) => pos,
            },
        };
        self.panes.insert(pos, Pane { idx, c: [0; 3] });
        if let Some(cc) = self.customers.as_deref_mut() {
            cc.panes.insert(pos, Vec::new());
        }
        // Regions are contiguous and sorted: the cursors count the panes before them.
        if idx <= self.end - n {
            self.cur_start += 1;
            self.fut_start += 1;
        } else if idx <= self.end {
            self.fut_start += 1;
        }
        (pos, true)
    }

    /// Moves the window end to `new_end` (never backwards), moving panes between
    /// regions and dropping expired ones.
    pub fn advance(&mut self, new_end: i64, shape: &Shape) {
        if new_end <= self.end {
            return;
        }
        let old_end = self.end;
        self.end = new_end;
        if new_end < self.wake {
            return;
        }
        // Future → current (or straight to baseline / expired after a jump).
        while self.fut_start < self.panes.len() && self.panes[self.fut_start].idx <= new_end {
            let i = self.fut_start;
            self.fut_start += 1;
            let idx = self.panes[i].idx;
            debug_assert!(idx > old_end);
            self.enter_current(i, shape);
        }
        // Current → baseline.
        while self.cur_start < self.fut_start && self.panes[self.cur_start].idx <= new_end - shape.n
        {
            let i = self.cur_start;
            self.cur_start += 1;
            self.leave_current(i, shape);
            let c0 = self.panes[i].c[0];
            self.base_sum = self.base_sum.saturating_add(c0);
            self.base_sumsq = self.base_sumsq.saturating_add(square(c0));
        }
        // Baseline → expired.
        let horizon = new_end - shape.n - shape.m;
        while let Some(front) = self.panes.front() {
            if front.idx > horizon || self.cur_start == 0 {
                break;
            }
            let c0 = front.c[0];
            self.base_sum = self.base_sum.saturating_sub(c0);
            self.base_sumsq = self.base_sumsq.saturating_sub(square(c0));
            self.panes.pop_front();
            if let Some(cc) = self.customers.as_deref_mut() {
                cc.panes.pop_front();
            }
            self.cur_start -= 1;
            self.fut_start -= 1;
        }
        // The next change: the first future pane arriving, the first current
        // pane leaving, or the front baseline pane expiring.
        let at = |i: usize, region| {
            self.panes
                .get(i)
                .map_or(i64::MAX, |p| Self::leaves_region_at(p.idx, region, shape))
        };
        let mut wake = at(self.fut_start, Region::Future);
        if self.cur_start < self.fut_start {
            wake = wake.min(at(self.cur_start, Region::Current));
        }
        if self.cur_start > 0 {
            wake = wake.min(at(0, Region::Baseline));
        }
        self.wake = wake;
    }

    fn enter_current(&mut self, i: usize, shape: &Shape) {
        let pane = &self.panes[i];
        for (c, d) in self.cur.iter_mut().zip(pane.c) {
            *c = c.saturating_add(d);
        }
        if let Some(cc) = self.customers.as_deref_mut() {
            let Some(list) = cc.panes.get_mut(i) else {
                return;
            };
            let mut list = std::mem::take(list);
            list.retain(|&(cust, n)| cc.inc(cust, n, shape.min_events, shape.max_customers));
            cc.panes[i] = list;
        }
    }

    fn leave_current(&mut self, i: usize, shape: &Shape) {
        let pane = &self.panes[i];
        for (c, d) in self.cur.iter_mut().zip(pane.c) {
            *c = c.saturating_sub(d);
        }
        if let Some(cc) = self.customers.as_deref_mut() {
            let list = cc.panes.get_mut(i).map(std::mem::take).unwrap_or_default();
            for &(cust, n) in &list {
                cc.dec(cust, n, shape.min_events);
            }
        }
    }
}

/// `v²` as the baseline's sum of squares holds it (cannot overflow: |v| < 2⁶³).
fn square(v: i64) -> i128 {
    i128::from(v) * i128::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: i64, m: i64) -> Shape {
        Shape {
            n,
            m,
            customers: true,
            min_events: 2,
            max_customers: 100,
        }
    }

    #[test]
    fn panes_move_through_regions() {
        let s = shape(3, 2);
        let mut w = Window::new(10, &s);
        // Current window is panes 8, 9, 10; baseline 6, 7.
        assert_eq!(
            w.add(10, [1, 0, 0], Some(1), &s),
            Some((Region::Current, true))
        );
        assert_eq!(
            w.add(10, [1, 0, 0], Some(1), &s),
            Some((Region::Current, false))
        );
        assert_eq!(
            w.add(7, [5, 0, 0], None, &s),
            Some((Region::Baseline, true))
        );
        assert_eq!(
            w.add(12, [2, 0, 0], Some(2), &s),
            Some((Region::Future, true))
        );
        assert_eq!(w.add(5, [9, 0, 0], None, &s), None);
        assert_eq!(w.cur[0], 2);
        assert_eq!(w.base_sum, 5);
        assert_eq!(w.base_sumsq, 25);
        let cc = w.customers.as_ref().unwrap();
        assert_eq!((cc.distinct(), cc.repeat()), (1, 1));

        w.advance(12, &s); // current 10..=12, baseline 8, 9
        assert_eq!(w.cur[0], 4);
        assert_eq!(w.base_sum, 0, "pane 7 expired");
        let cc = w.customers.as_ref().unwrap();
        assert_eq!((cc.distinct(), cc.repeat()), (2, 1));

        w.advance(13, &s); // current 11..=13, baseline 9, 10
        assert_eq!(w.cur[0], 2);
        assert_eq!(w.base_sum, 2);
        assert_eq!(w.base_sumsq, 4);
        let cc = w.customers.as_ref().unwrap();
        assert_eq!((cc.distinct(), cc.repeat()), (1, 0));

        w.advance(100, &s);
        assert!(w.is_empty());
        assert_eq!((w.cur, w.base_sum, w.base_sumsq), ([0; 3], 0, 0));
    }

    #[test]
    fn out_of_order_insertions_keep_regions() {
        let s = shape(2, 2);
        let mut w = Window::new(10, &s);
        w.add(10, [1, 0, 0], None, &s);
        w.add(8, [1, 0, 0], None, &s); // baseline
        w.add(9, [1, 0, 0], None, &s); // current, inserted before pane 10
        w.add(11, [1, 0, 0], None, &s); // future
        w.add(7, [1, 0, 0], None, &s); // baseline, at the front
        assert_eq!(w.cur[0], 2);
        assert_eq!(w.base_sum, 2);
        w.advance(11, &s);
        assert_eq!(w.cur[0], 2);
        assert_eq!(w.base_sum, 2, "panes 8 and 9");
    }

    #[test]
    fn customer_cap_counts_overflow() {
        let s = Shape {
            max_customers: 2,
            ..shape(2, 0)
        };
        let mut w = Window::new(1, &s);
        for c in 0..5 {
            w.add(1, [1, 0, 0], Some(c), &s);
        }
        let cc = w.customers.as_ref().unwrap();
        assert_eq!(cc.distinct(), 2);
        assert_eq!(cc.overflow, 3);
    }
}
