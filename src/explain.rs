//! Root-cause hints: which attribute values are over-represented in a
//! breaching slice's current window, against the slice's own baseline.
//!
//! Sits inside the engine, beside a (rule, group)'s window: a rule with
//! `explain = ["category", "channel"]` keeps, per group, an [`Explain`] of
//! per-value counts of its *signal* events (the events alert evidence comes
//! from: the numerator of a ratio, the counted events of a count or surge,
//! detractors of an NPS) for those attributes only. When the group's alert
//! moves (pending, firing, escalated) and at every progress update, the
//! values whose share of the window stands out from the baseline become
//! [`Hint`]s, e.g. `category=product_quality 78 % (usually 21 %, ×3.7)`.
//!
//! **The statistic.** For each value `v` of an explained attribute, the 2×2
//! table (events with / without `v`) × (current window / baseline) is scored
//! with the likelihood-ratio statistic `G = 2 Σ O·ln(O/E)` (the G-test,
//! χ² with one degree of freedom under "same share now as usually"). A value
//! is a hint when it has at least [`MIN_SUPPORT`] events in the window, its
//! share is at least [`MIN_LIFT`] times its usual share (the *lift*, with
//! the baseline share smoothed by half an event so a value never seen before
//! has a finite lift), and `G ≥` [`MIN_SCORE`] (10.83: p < 0.001 for one
//! value; strict, because every value of every attribute is tested at every
//! notification). Hints are ranked by `G`, best first, at most [`TOP`].
//! `G` rather than lift alone: lift favours rare values (one event usually,
//! three now is a lift of 3 and means nothing), while `G` grows with the
//! evidence; the lift and shares are what a responder reads.
//!
//! **Exact and approximate.** The current window's counts are exact (per
//! pane, the same panes as the rule's window). The baseline is the slice's
//! signal events in the `explain_baseline` (default 24 windows) before the
//! window, summed in blocks of one window, so it spans between that and one
//! window more (exact counts, window-sized granularity). Per attribute the
//! first [`MAX_VALUES`] distinct values the group sees are counted by name;
//! later new values are counted together as `other` (a hint then names
//! them as "values past the first 16 this slice saw"), and
//! values are cut to [`MAX_VALUE_BYTES`]. An event without the attribute
//! counts under the empty value (shown `(none)`). The state is forgotten
//! with its group (window empty and alert inactive), so a slice that comes
//! back starts a new baseline.
//!
//! **Deterministic.** Everything is integer counts keyed by pane; a pane
//! moves into its baseline block whenever the state is next brought to a
//! later window end, and the sum is the same whenever that happens — so live
//! runs, replays and restored checkpoints give the same hints.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// At most this many attributes per rule.
pub const MAX_ATTRS: usize = 8;
/// Distinct values counted by name per attribute and group (the rest: `other`).
pub const MAX_VALUES: usize = 16;
/// Longer values are cut (at a character boundary) before they are counted.
pub const MAX_VALUE_BYTES: usize = 128;
/// At most this many hints per alert.
pub const TOP: usize = 5;
/// `explain_baseline` is at most this many windows.
pub const MAX_BASELINE_WINDOWS: i64 = 100;
/// Default `explain_baseline`, in windows.
pub const DEFAULT_BASELINE_WINDOWS: i64 = 24;
/// A hint needs at least this many events with the value in the window.
pub const MIN_SUPPORT: u64 = 5;
/// No hints before the baseline holds this many signal events.
pub const MIN_BASELINE_EVENTS: u64 = 20;
/// A hint's share is at least this many times its usual share.
pub const MIN_LIFT: f64 = 1.5;
/// A hint's G statistic is at least this (χ²₁ at p = 0.001).
pub const MIN_SCORE: f64 = 10.83;

/// One root-cause hint: an attribute value over-represented in the window
/// (`docs/contract.md` §3, `hints`).
///
/// Serialized as its fields in text formats (JSON: `untracked` only when
/// true). In binary formats (bincode: the scaled-out wire, incident
/// checkpoints) it keeps the layout it had before `untracked` existed, so
/// instances and checkpoints of either build read each other: there an
/// untracked hint's `value` is [`UNTRACKED_MARK`], longer than any value
/// counted by name can be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Hint {
    /// The attribute, e.g. `category`.
    pub attribute: String,
    /// Its value (`""` when the events lack the attribute).
    pub value: String,
    /// Signal events with this value in the current window.
    pub count: u64,
    /// Their share of the window's signal events (0–1).
    pub share: f64,
    /// The value's share of the baseline's signal events (0–1).
    pub baseline_share: f64,
    /// `share` ÷ the baseline share (smoothed by half an event).
    pub lift: f64,
    /// The G statistic the hints are ranked by.
    pub score: f64,
    /// The values past the first [`MAX_VALUES`] the slice saw, counted
    /// together (`value` is empty): one of them stands out, but which is
    /// not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untracked: bool,
}

/// The `value` an untracked hint carries in binary formats: longer than
/// [`MAX_VALUE_BYTES`], so no value counted by name is ever read as it.
const UNTRACKED_MARK: &str = "\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked\u{1}untracked";

/// [`Hint`] as binary formats write it (the layout before `untracked`).
#[derive(Serialize, Deserialize)]
struct HintBinary<'a> {
    attribute: std::borrow::Cow<'a, str>,
    value: std::borrow::Cow<'a, str>,
    count: u64,
    share: f64,
    baseline_share: f64,
    lift: f64,
    score: f64,
}

impl<'a> From<&'a Hint> for HintBinary<'a> {
    fn from(h: &'a Hint) -> Self {
        HintBinary {
            attribute: (&h.attribute).into(),
            value: if h.untracked {
                UNTRACKED_MARK.into()
            } else {
                (&h.value).into()
            },
            count: h.count,
            share: h.share,
            baseline_share: h.baseline_share,
            lift: h.lift,
            score: h.score,
        }
    }
}

impl From<HintBinary<'_>> for Hint {
    fn from(h: HintBinary<'_>) -> Self {
        let untracked = h.value == UNTRACKED_MARK;
        Hint {
            attribute: h.attribute.into_owned(),
            value: if untracked {
                String::new()
            } else {
                h.value.into_owned()
            },
            count: h.count,
            share: h.share,
            baseline_share: h.baseline_share,
            lift: h.lift,
            score: h.score,
            untracked,
        }
    }
}

// Text formats: the derived fields (`Hint::serialize`, the `remote`
// derive's own); binary formats: [`HintBinary`].
impl Serialize for Hint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            Hint::serialize(self, s)
        } else {
            HintBinary::from(self).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Hint::deserialize(d)
        } else {
            HintBinary::deserialize(d).map(Hint::from)
        }
    }
}

impl Hint {
    /// `category=product_quality 78 % (usually 21 %, ×3.7)`.
    pub fn text(&self) -> String {
        let value = if self.untracked {
            "(values past the first 16 this slice saw)"
        } else if self.value.is_empty() {
            "(none)"
        } else {
            &self.value
        };
        format!(
            "{}={value} {} (usually {}, ×{:.1})",
            self.attribute,
            percent(self.share),
            percent(self.baseline_share),
            self.lift
        )
    }
}

/// The hints as one phrase: `a=x 78 % (usually 21 %, ×3.7); b=y …`.
pub fn hints_text(hints: &[Hint]) -> String {
    hints.iter().map(Hint::text).collect::<Vec<_>>().join("; ")
}

/// A share as a percentage for people: whole percents from 10 %, one
/// decimal below.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p >= 9.95 || p == 0.0 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// The `explain` settings of one rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct ExplainSpec {
    /// The explained attributes.
    pub(crate) attrs: Box<[Box<str>]>,
    /// Panes per window (and per baseline block).
    n: i64,
    /// Baseline blocks kept before the newest one.
    blocks: i64,
}

impl ExplainSpec {
    /// The spec of a rule with `explain` attributes (`None` without), whose
    /// window has `n` panes and whose surge baseline (0 otherwise) `m`.
    pub(crate) fn new(
        attrs: &[String],
        baseline_ms: Option<i64>,
        window_ms: i64,
        n: i64,
        m: i64,
    ) -> Option<Self> {
        if attrs.is_empty() {
            return None;
        }
        let n = n.max(1);
        let windows = baseline_ms
            .map_or(DEFAULT_BASELINE_WINDOWS, |b| {
                (b + window_ms.max(1) - 1) / window_ms.max(1)
            })
            .clamp(1, MAX_BASELINE_WINDOWS);
        // A surge keeps `m` panes before its window: events may still land
        // there, so their blocks must be kept.
        let blocks = windows.max((m + n - 1) / n + 1);
        Some(ExplainSpec {
            attrs: attrs.iter().map(|a| a.clone().into_boxed_str()).collect(),
            n,
            blocks,
        })
    }
}

/// One pane of signal events not yet folded into the baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PaneCounts {
    idx: i64,
    events: u32,
    /// (code, events) pairs, one per value seen in the pane.
    counts: Vec<(u16, u32)>,
}

/// One window-sized block of the baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Block {
    idx: i64,
    events: u64,
    /// Events by code (dense; codes beyond its length are 0).
    counts: Vec<u64>,
}

/// The per-value counts of one (rule, group) (see the module docs). Codes
/// `0..attrs` are each attribute's `other`; code `attrs + i` is `values[i]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Explain {
    /// (attribute index, value) of each named code.
    values: Vec<(u8, Box<str>)>,
    /// Panes after the baseline (current window and future), oldest first.
    panes: VecDeque<PaneCounts>,
    /// Baseline blocks, oldest first.
    blocks: VecDeque<Block>,
    /// The window end the state was last brought to.
    end: i64,
}

impl Explain {
    /// An empty state.
    pub(crate) fn new() -> Box<Self> {
        Box::new(Explain {
            end: i64::MIN,
            ..Explain::default()
        })
    }

    fn code(&mut self, a: usize, value: &str) -> u16 {
        let mut cut = value.len().min(MAX_VALUE_BYTES);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        let value = &value[..cut];
        let mut seen = 0;
        for (i, (attr, v)) in self.values.iter().enumerate() {
            if *attr as usize == a {
                if v.as_ref() == value {
                    return (MAX_ATTRS + i) as u16;
                }
                seen += 1;
            }
        }
        if seen >= MAX_VALUES {
            return a as u16;
        }
        self.values.push((a as u8, value.into()));
        (MAX_ATTRS + self.values.len() - 1) as u16
    }

    /// Counts one signal event in pane `pane`, the window ending at pane
    /// `end`; `value` gives the event's value of an attribute.
    pub(crate) fn add<'a>(
        &mut self,
        spec: &ExplainSpec,
        pane: i64,
        end: i64,
        value: impl Fn(&str) -> Option<&'a str>,
    ) {
        self.advance(spec, end);
        let mut codes: smallvec::SmallVec<[u16; MAX_ATTRS]> = smallvec::SmallVec::new();
        for (a, name) in spec.attrs.iter().enumerate() {
            let v = value(name).unwrap_or("");
            codes.push(self.code(a, v));
        }
        if pane > self.end - spec.n {
            let pos = match self.panes.binary_search_by_key(&pane, |p| p.idx) {
                Ok(pos) => pos,
                Err(pos) => {
                    self.panes.insert(
                        pos,
                        PaneCounts {
                            idx: pane,
                            ..PaneCounts::default()
                        },
                    );
                    pos
                }
            };
            let p = &mut self.panes[pos];
            p.events = p.events.saturating_add(1);
            for c in codes {
                match p.counts.iter_mut().find(|(k, _)| *k == c) {
                    Some(e) => e.1 = e.1.saturating_add(1),
                    None => p.counts.push((c, 1)),
                }
            }
        } else if let Some(b) = self.block(spec, pane) {
            b.events = b.events.saturating_add(1);
            for c in codes {
                bump(&mut b.counts, c, 1);
            }
        }
    }

    /// The baseline block of pane `pane` (created if missing); `None` if it
    /// is older than the baseline kept.
    fn block(&mut self, spec: &ExplainSpec, pane: i64) -> Option<&mut Block> {
        let idx = pane.div_euclid(spec.n);
        let oldest = (self.end - spec.n).div_euclid(spec.n) - spec.blocks;
        if idx < oldest {
            return None;
        }
        let pos = match self.blocks.binary_search_by_key(&idx, |b| b.idx) {
            Ok(pos) => pos,
            Err(pos) => {
                self.blocks.insert(
                    pos,
                    Block {
                        idx,
                        ..Block::default()
                    },
                );
                pos
            }
        };
        self.blocks.get_mut(pos)
    }

    /// Brings the state to the window ending at pane `end`: panes that left
    /// the window go to their baseline block, blocks too old are dropped.
    pub(crate) fn advance(&mut self, spec: &ExplainSpec, end: i64) {
        if end <= self.end {
            return;
        }
        self.end = end;
        while self.panes.front().is_some_and(|p| p.idx <= end - spec.n) {
            let Some(p) = self.panes.pop_front() else {
                break;
            };
            if let Some(b) = self.block(spec, p.idx) {
                b.events = b.events.saturating_add(u64::from(p.events));
                for (c, k) in p.counts {
                    bump(&mut b.counts, c, u64::from(k));
                }
            }
        }
        let oldest = (end - spec.n).div_euclid(spec.n) - spec.blocks;
        while self.blocks.front().is_some_and(|b| b.idx < oldest) {
            self.blocks.pop_front();
        }
    }

    /// The hints for the window ending at pane `end`, best first.
    pub(crate) fn hints(&mut self, spec: &ExplainSpec, end: i64) -> Vec<Hint> {
        self.advance(spec, end);
        let codes = MAX_ATTRS + self.values.len();
        let mut cur = vec![0u64; codes];
        let mut n_cur = 0u64;
        for p in self.panes.iter().filter(|p| p.idx <= end) {
            n_cur += u64::from(p.events);
            for &(c, k) in &p.counts {
                if let Some(x) = cur.get_mut(c as usize) {
                    *x += u64::from(k);
                }
            }
        }
        let mut base = vec![0u64; codes];
        let mut n_base = 0u64;
        for b in &self.blocks {
            n_base += b.events;
            for (x, k) in base.iter_mut().zip(&b.counts) {
                *x += k;
            }
        }
        if n_cur < MIN_SUPPORT || n_base < MIN_BASELINE_EVENTS {
            return Vec::new();
        }
        let mut out: Vec<Hint> = Vec::new();
        // The values counted by name, then each attribute's `other`: the
        // values past the first MAX_VALUES, counted together (a crisis on
        // a value first seen late — a new store, a new app version — is
        // then said to be among them, not silently missed).
        let named = self
            .values
            .iter()
            .enumerate()
            .map(|(i, (a, v))| (MAX_ATTRS + i, *a, v.as_ref(), false));
        // An attribute's `other` counts nothing until its first 16 values
        // are taken, so its usual share is judged on the baseline blocks
        // after the oldest one, and only when the oldest already counted
        // some (the 16 were taken by then): the blocks compared never
        // include the filling.
        let (mut n_later, mut later) = (0u64, vec![0u64; MAX_ATTRS]);
        for blk in self.blocks.iter().skip(1) {
            n_later += blk.events;
            for (x, k) in later.iter_mut().zip(&blk.counts) {
                *x += k;
            }
        }
        let filled = |a: usize| {
            n_later >= MIN_BASELINE_EVENTS
                && self
                    .blocks
                    .front()
                    .is_some_and(|b| b.counts.get(a).is_some_and(|&k| k > 0))
        };
        let others = (0..spec.attrs.len().min(MAX_ATTRS))
            .filter(|&a| filled(a))
            .map(|a| (a, a as u8, "", true));
        for (code, a, value, untracked) in named.chain(others) {
            let c = cur.get(code).copied().unwrap_or(0);
            let (b, n_base) = if untracked {
                (later.get(code).copied().unwrap_or(0), n_later)
            } else {
                (base.get(code).copied().unwrap_or(0), n_base)
            };
            if c < MIN_SUPPORT {
                continue;
            }
            let share = c as f64 / n_cur as f64;
            let usual = b as f64 / n_base as f64;
            let lift = share / ((b as f64 + 0.5) / (n_base as f64 + 1.0));
            if share <= usual || lift < MIN_LIFT {
                continue;
            }
            let score = g_score(c, n_cur - c, b, n_base - b);
            if score < MIN_SCORE {
                continue;
            }
            let Some(attribute) = spec.attrs.get(a as usize) else {
                continue;
            };
            out.push(Hint {
                attribute: attribute.to_string(),
                value: value.to_string(),
                count: c,
                share: round(share, 4),
                baseline_share: round(usual, 4),
                lift: round(lift, 2),
                score: round(score, 1),
                untracked,
            });
        }
        // Best first; ties by attribute order and value, so the order is a
        // function of the counts alone.
        out.sort_by(|x, y| {
            y.score
                .total_cmp(&x.score)
                .then_with(|| x.attribute.cmp(&y.attribute))
                .then_with(|| x.value.cmp(&y.value))
                .then_with(|| x.untracked.cmp(&y.untracked))
        });
        out.truncate(TOP);
        out
    }
}

fn bump(counts: &mut Vec<u64>, code: u16, by: u64) {
    let i = code as usize;
    if counts.len() <= i {
        counts.resize(i + 1, 0);
    }
    counts[i] = counts[i].saturating_add(by);
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The G statistic of the 2×2 table `[[a, b], [c, d]]` (rows: window,
/// baseline; columns: with the value, without).
pub(crate) fn g_score(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (a, b, c, d) = (a as f64, b as f64, c as f64, d as f64);
    let n = a + b + c + d;
    if n <= 0.0 {
        return 0.0;
    }
    let term = |o: f64, row: f64, col: f64| {
        let e = row * col / n;
        if o > 0.0 && e > 0.0 {
            o * (o / e).ln()
        } else {
            0.0
        }
    };
    2.0 * (term(a, a + b, a + c)
        + term(b, a + b, b + d)
        + term(c, c + d, a + c)
        + term(d, c + d, b + d))
}

#[cfg(test)]
mod tests;
