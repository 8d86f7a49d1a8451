//! Seasonal baselines (issue 11, item 4): a surge with `seasonality = "1d"`
//! (or `"7d"`) compares its window with the same time of the previous days
//! (weeks) instead of the trailing hours, so a daily or weekly rhythm — the
//! morning ramp, the evening peak, the quiet weekend — is not a surge, and the
//! threshold can be lower.
//!
//! Per (rule, group), a [`Seasonal`] profile cuts time into buckets one
//! window long (`W`): bucket `b` covers event times `(b·W, (b+1)·W]`, and its
//! place in the season is `b mod P` with `P = seasonality ÷ W` (validated
//! ≤ 2016). It keeps the counts of the last `P` buckets (this season), and per
//! place an exponentially weighted mean and mean square of the counts of
//! earlier seasons (weight `1/k` for the `k`-th season, then `1/K` with
//! `K = baseline ÷ seasonality`: about the last `K` seasons). A bucket's count
//! joins the profile when the same place of the next season begins, so the
//! expectation never includes the current season (nor the surge being
//! judged). Memory: `P × 18` bytes per group (daily, 30-minute window: under
//! 1 KB; weekly: 6 KB), whatever the traffic.
//!
//! The expectation for the window ending at pane `E` (panes `(E−n, E]`) is
//! the pane-weighted mix of the profile at the (at most two) buckets it
//! spans; it exists once each of them has seen a season. Deterministic
//! (integer bucket arithmetic, fixed update order) and serialised with the
//! group in the engine snapshot.

use serde::{Deserialize, Serialize};

/// The profile's dimensions, from the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeasonShape {
    /// Buckets per season (`seasonality ÷ window`).
    pub(crate) buckets: i64,
    /// Seasons averaged (`baseline ÷ seasonality`).
    pub(crate) seasons: u32,
}

/// The expected count of a window, and its variance across seasons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Expectation {
    pub(crate) mean: f64,
    pub(crate) var: f64,
}

/// One group's seasonal profile (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Seasonal {
    /// The newest bucket counted (`None`: nothing yet).
    newest: Option<i64>,
    /// The first bucket counted: earlier places have no count to fold.
    first: i64,
    /// Counts of buckets `newest−P+1 ..= newest`, by place.
    this: Vec<i64>,
    /// Per place: mean count of earlier seasons.
    mean: Vec<f32>,
    /// Per place: mean squared count of earlier seasons.
    sq: Vec<f32>,
    /// Per place: seasons folded in (saturating at the rule's `K`).
    seen: Vec<u16>,
}

impl Seasonal {
    pub(crate) fn new(s: SeasonShape) -> Self {
        let p = usize::try_from(s.buckets.max(1)).unwrap_or(1);
        Seasonal {
            newest: None,
            first: 0,
            this: vec![0; p],
            mean: vec![0.0; p],
            sq: vec![0.0; p],
            seen: vec![0; p],
        }
    }

    fn place(&self, bucket: i64) -> usize {
        // `this` is never empty and its length fits an i64.
        bucket.rem_euclid(self.this.len() as i64) as usize
    }

    /// The bucket of pane `pane` for a window of `n` panes.
    pub(crate) fn bucket_of(pane: i64, n: i64) -> i64 {
        (pane - 1).div_euclid(n.max(1))
    }

    /// Counts `count` events in pane `pane` (window of `n` panes).
    pub(crate) fn add(&mut self, s: SeasonShape, pane: i64, n: i64, count: i64) {
        let b = Self::bucket_of(pane, n);
        self.advance(s, b);
        let p = self.this.len() as i64;
        // A late event of this season still counts; older ones are gone.
        if self.newest.is_some_and(|nb| b > nb - p) && b >= self.first {
            let i = self.place(b);
            self.this[i] = self.this[i].saturating_add(count);
        }
    }

    /// Moves the profile to bucket `to`: every bucket that a new season's
    /// bucket replaces joins the profile first.
    pub(crate) fn advance(&mut self, s: SeasonShape, to: i64) {
        let p = self.this.len() as i64;
        let Some(newest) = self.newest else {
            self.newest = Some(to);
            self.first = to;
            return;
        };
        if to <= newest {
            return;
        }
        // Buckets newest+1 ..= to replace newest+1−P ..= to−P. Past a whole
        // season of nothing, each further season folds a zero per place
        // (at most K of them: the profile has forgotten the rest by then).
        let steps = to - newest;
        let extra_seasons = ((steps - 1) / p).min(i64::from(s.seasons));
        let direct = steps.min(p);
        for k in 0..direct {
            let b = to - direct + 1 + k;
            self.fold(s, b - p);
        }
        for _ in 0..extra_seasons {
            for i in 0..self.this.len() {
                self.fold_place(s, i, 0);
            }
        }
        self.newest = Some(to);
    }

    /// Folds bucket `old`'s count (held at its place) into the profile.
    fn fold(&mut self, s: SeasonShape, old: i64) {
        let i = self.place(old);
        let x = std::mem::take(&mut self.this[i]);
        if old >= self.first {
            self.fold_place(s, i, x);
        }
    }

    fn fold_place(&mut self, s: SeasonShape, i: usize, x: i64) {
        let k = self.seen[i]
            .saturating_add(1)
            .min(s.seasons.clamp(1, 1000) as u16);
        self.seen[i] = k;
        let a = 1.0 / f32::from(k);
        let x = x as f32;
        self.mean[i] += a * (x - self.mean[i]);
        self.sq[i] += a * (x * x - self.sq[i]);
    }

    /// The expected count of the window of `n` panes ending at pane `end`:
    /// `None` until the buckets it spans have seen a season.
    pub(crate) fn expected(&self, end: i64, n: i64) -> Option<Expectation> {
        let n = n.max(1);
        let b2 = Self::bucket_of(end, n);
        // Panes of the window in bucket b2, the rest in b2 − 1.
        let k2 = end - b2 * n;
        let mut mean = 0.0f64;
        let mut var = 0.0f64;
        for (b, panes) in [(b2, k2), (b2 - 1, n - k2)] {
            if panes <= 0 {
                continue;
            }
            let i = self.place(b);
            if self.seen[i] == 0 {
                return None;
            }
            let w = panes as f64 / n as f64;
            let m = f64::from(self.mean[i]);
            mean += w * m;
            var += w * (f64::from(self.sq[i]) - m * m).max(0.0);
        }
        Some(Expectation { mean, var })
    }

    /// Whether the profile holds nothing (the group may be forgotten).
    pub(crate) fn is_empty(&self) -> bool {
        self.this.iter().all(|&c| c == 0) && self.mean.iter().all(|&m| m == 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SeasonShape = SeasonShape {
        buckets: 4,
        seasons: 2,
    };

    #[test]
    fn the_expectation_is_the_same_place_of_earlier_seasons() {
        // Window of 2 panes, 4 buckets a season: a season is 8 panes.
        let mut p = Seasonal::new(S);
        // Season 0: bucket b gets 10·(b+1) events.
        for b in 0..4 {
            p.add(S, b * 2 + 1, 2, 10 * (b + 1));
        }
        assert_eq!(p.expected(8, 2), None, "nothing folded yet");
        // Season 1 begins: bucket 4 replaces bucket 0.
        p.add(S, 9, 2, 1);
        let e = p.expected(10, 2).unwrap();
        assert_eq!(e.mean, 10.0);
        // Half-way between buckets 4 and 5 (panes 10 and 11): bucket 1's place
        // has not folded yet.
        assert_eq!(p.expected(11, 2), None);
        p.advance(S, 5);
        let e = p.expected(11, 2).unwrap();
        assert_eq!(e.mean, 15.0, "half of 10, half of 20");
        // Season 2, place 0: mean of 10 and 30 (weight ½ for the second).
        p.add(S, 9, 2, 29);
        p.advance(S, 8);
        assert_eq!(p.expected(18, 2).unwrap().mean, 20.0);
        assert!(!p.is_empty());
    }

    #[test]
    fn a_long_gap_folds_zeros_and_forgets() {
        let mut p = Seasonal::new(S);
        p.add(S, 1, 2, 40);
        p.advance(S, 4);
        assert_eq!(p.expected(10, 2).unwrap().mean, 40.0);
        // Ten seasons of nothing: the profile decays (K = 2 seasons of
        // zeros folded, not ten: bounded work).
        p.advance(S, 44);
        assert_eq!(p.expected(90, 2).unwrap().mean, 5.0);
    }
}
