//! One rule at run time: its groups (find or create, forget) and what a
//! group holds (windows, alert instance, book, profile), as kept and as
//! checkpointed.

use std::sync::Arc;

use crate::alert::{AlertPolicy, Phase};
use crate::config::{Config, IndicatorConfig, RuleConfig};
use crate::explain::{Explain, ExplainSpec};
use crate::indicator::Indicator;
use crate::window::{Shape, Window};

use super::backlog::{Backlog, Book};
use super::key::{decode_key, GroupKey};
use super::pane::{boundary_time, end_pane, pane_of};
use super::silence::NO_MEMO;
use super::table::GroupTable;
use super::wheel::Wheel;
use super::{GroupView, RuleRt, RuleStats};
use crate::indicator::season::Seasonal;

/// Live state of one (rule, group). Its key lives in the group table's
/// entry (`entry`); checkpoints write it beside the group ([`GroupOut`]).
#[derive(Debug)]
pub(super) struct Group {
    pub(super) window: Window,
    pub(super) phase: Phase,
    /// The latest evaluated value.
    pub(super) value: Option<f64>,
    /// When the value was last evaluated.
    pub(super) evaluated_at: i64,
    /// The alert deadline already in the timer heap (`i64::MIN`: none), so each
    /// deadline is scheduled once however many evaluations see it.
    pub(super) deadline: i64,
    /// The last boundary pane scheduled for a surge warm-up re-evaluation.
    pub(super) warm_tick: i64,
    /// Alert instance state, allocated when the group first alerts: most
    /// groups never do, and this keeps the hot group small.
    pub(super) instance: Option<Box<Instance>>,
    /// Id of the key in the rule's [`Recorder`] (0 when not recording).
    pub(super) key_id: u32,
    /// The group's entry in its rule's [`GroupTable`](super::table::GroupTable)
    /// (rebuilt on restore): where its key is.
    pub(super) entry: u32,
    /// A seasonal surge's profile of earlier seasons (`seasonality`).
    pub(super) season: Option<Box<Seasonal>>,
    /// Per-value counts for root-cause hints (rules with `explain` only,
    /// from the group's first signal event).
    pub(super) explain: Option<Box<Explain>>,
    /// `unanswered` and `response_time` rules: the group's complaints and
    /// first-response times (see `backlog.rs`).
    pub(super) book: Option<Box<Book>>,
}

/// A group as checkpoints write it: its key and hash (from the group table)
/// and its own fields, in the order of the snapshot format (version 7 wrote
/// the group with its own copy of the key; the bytes are the same).
#[derive(serde::Serialize)]
pub(super) struct GroupOut<'a> {
    key: &'a [u8],
    hash: u64,
    window: &'a Window,
    phase: Phase,
    value: Option<f64>,
    evaluated_at: i64,
    deadline: i64,
    warm_tick: i64,
    instance: &'a Option<Box<Instance>>,
    key_id: u32,
    season: &'a Option<Box<Seasonal>>,
    explain: &'a Option<Box<Explain>>,
    book: &'a Option<Box<Book>>,
}

impl<'a> GroupOut<'a> {
    /// `g`, whose key (and its hash) are `key` and `hash`.
    pub(super) fn new(g: &'a Group, key: &'a [u8], hash: u64) -> Self {
        GroupOut {
            key,
            hash,
            window: &g.window,
            phase: g.phase,
            value: g.value,
            evaluated_at: g.evaluated_at,
            deadline: g.deadline,
            warm_tick: g.warm_tick,
            instance: &g.instance,
            key_id: g.key_id,
            season: &g.season,
            explain: &g.explain,
            book: &g.book,
        }
    }
}

/// A group as checkpoints hold it (see [`GroupOut`]).
#[derive(serde::Deserialize)]
pub(super) struct GroupIn {
    pub(super) key: GroupKey,
    pub(super) hash: u64,
    window: Window,
    phase: Phase,
    value: Option<f64>,
    evaluated_at: i64,
    deadline: i64,
    warm_tick: i64,
    instance: Option<Box<Instance>>,
    key_id: u32,
    season: Option<Box<Seasonal>>,
    explain: Option<Box<Explain>>,
    book: Option<Box<Book>>,
}

impl GroupIn {
    /// The group, its key and the key's hash (the group's entry is set when
    /// the tables are rebuilt).
    pub(super) fn into_parts(self) -> (Group, GroupKey, u64) {
        let g = Group {
            window: self.window,
            phase: self.phase,
            value: self.value,
            evaluated_at: self.evaluated_at,
            deadline: self.deadline,
            warm_tick: self.warm_tick,
            instance: self.instance,
            key_id: self.key_id,
            entry: super::table::NONE,
            season: self.season,
            explain: self.explain,
            book: self.book,
        };
        (g, self.key, self.hash)
    }
}

/// A slot as checkpoints write it (see [`GroupOut`]).
#[derive(serde::Serialize)]
pub(super) struct SlotOut<'a> {
    pub(super) gen: u32,
    pub(super) group: Option<GroupOut<'a>>,
}

/// A slot as checkpoints hold it.
#[derive(serde::Deserialize)]
pub(super) struct SlotIn {
    pub(super) gen: u32,
    pub(super) group: Option<GroupIn>,
}

/// The alert instances of one group (see [`Group::instance`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Instance {
    /// Evidence while the alert is active: recent signal event ids.
    pub(super) samples: Vec<Box<str>>,
    /// The dedup key of the current alert instance.
    pub(super) key: Option<Box<str>>,
    /// Start time of the last alert instance, and how many instances started
    /// in that same millisecond (their keys get a `-N` suffix to stay unique).
    pub(super) last_since: i64,
    pub(super) same_ms_seq: u32,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            samples: Vec::new(),
            key: None,
            last_since: i64::MIN,
            same_ms_seq: 0,
        }
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    /// Bumped each time the slot is reused, so stale timers are ignored.
    pub(super) gen: u32,
    pub(super) group: Option<Group>,
}

// === impl RuleRt ===

impl RuleRt {
    /// Judges the rule's values by `r`'s thresholds, `clear`, `for` and
    /// `keep_firing_for` from its next evaluation on (a reload that changed
    /// only those: windows and alert states stay).
    pub(super) fn retune(&mut self, r: &RuleConfig) {
        self.policy.levels = r.thresholds.levels();
        self.policy.clear = r.clear_threshold().unwrap_or(0.0);
        self.policy.for_ms = r.for_.as_ms();
        self.policy.keep_firing_for_ms = r.keep_firing_for.as_ms();
    }

    pub(super) fn new(r: &RuleConfig, cfg: &Config) -> Self {
        let slide = r.slide().as_ms().max(1);
        let window_ms = r.window.as_ms().max(slide);
        let indicator = Indicator::for_rule(r, window_ms, cfg.engine.score_range);
        // Panes of the window, and of the baseline region behind it: a surge's
        // baseline (none for a seasonal surge: it keeps a profile instead);
        // for the SLA backlog the window is the SLA and the region behind it
        // the complaints past it (up to the rule's window).
        let (n, m) = match &r.indicator {
            IndicatorConfig::Surge {
                seasonality: Some(_),
                ..
            } => (window_ms / slide, 0),
            IndicatorConfig::Surge { baseline, .. } => {
                (window_ms / slide, baseline.as_ms() / slide)
            }
            // One pane more than the SLA: a complaint counts from the first
            // boundary at which its whole pane is past the SLA (never early,
            // at most one slide late).
            IndicatorConfig::Unanswered { sla, .. } => {
                let n = (sla.as_ms() / slide + 1).clamp(1, window_ms / slide);
                (n, window_ms / slide - n)
            }
            _ => (window_ms / slide, 0),
        };
        let shape = Shape {
            n,
            m,
            customers: indicator.needs_customers(),
            min_events: indicator.min_events(),
            max_customers: cfg.engine.max_customers_per_group,
        };
        let levels = r.thresholds.levels();
        let clear = r.clear_threshold().unwrap_or(0.0);
        let mut rule = RuleRt {
            name: Arc::from(r.name.as_str()),
            group_by: r
                .group_by
                .iter()
                .map(|g| g.clone().into_boxed_str())
                .collect(),
            group_attrs: Box::default(),
            group_by_id: 0,
            member: 0,
            indicator,
            policy: AlertPolicy {
                levels,
                clear,
                condition: r.condition,
                for_ms: r.for_.as_ms(),
                keep_firing_for_ms: r.keep_firing_for.as_ms(),
            },
            slide,
            pane_memo: (i64::MAX, i64::MIN, 0),
            window_ms,
            shape,
            min_volume: i64::try_from(r.min_volume).unwrap_or(i64::MAX),
            max_groups: cfg.engine.max_groups_per_rule,
            shard_seed: super::shard_hash::stable_rule_hash(&r.name),
            origin: None,
            silence_panes: 0,
            silence_memo: std::cell::Cell::new(NO_MEMO),
            silence_next: i64::MAX,
            silence_seen: false,
            occupancy: match &r.indicator {
                IndicatorConfig::Surge {
                    seasonality: None, ..
                } => Some(Box::new(super::occupancy::Occupancy::new(0))),
                _ => None,
            },
            wheel: Wheel::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            stats: RuleStats::default(),
            selected: [0; 3],
            late_alone: 0,
            customers_uncounted: 0,
            recorder: None,
            explain: ExplainSpec::new(
                &r.explain,
                r.explain_baseline.map(|b| b.as_ms()),
                window_ms,
                shape.n,
                shape.m,
            ),
            backlog: match r.indicator {
                IndicatorConfig::Unanswered { .. } => {
                    Some(Box::new(Backlog::new(cfg.engine.dedup_max_ids, false)))
                }
                IndicatorConfig::ResponseTime { .. } => {
                    Some(Box::new(Backlog::new(cfg.engine.dedup_max_ids, true)))
                }
                _ => None,
            },
            dirty: Default::default(),
            keys: Vec::new(),
            cfg: r.clone(),
        };
        rule.set_silence(cfg.engine.silence_after.as_ms());
        rule
    }

    /// Asks the memory for group slot `slot` (a hint that changes nothing):
    /// the lines of the fields an event's application reads (a slot spans
    /// several lines).
    #[inline]
    pub(super) fn prefetch_slot(&self, slot: u32) {
        use prefetch_index::prefetch_index;
        use std::slice::from_ref;
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        prefetch_index(from_ref(s), 0);
        prefetch_index(from_ref(&s.gen), 0);
        if let Some(g) = &s.group {
            prefetch_index(from_ref(&g.window), 0);
            prefetch_index(from_ref(&g.window.cur), 0);
            prefetch_index(from_ref(&g.window.base_sumsq), 0);
            prefetch_index(from_ref(&g.value), 0);
            prefetch_index(from_ref(&g.deadline), 0);
            prefetch_index(from_ref(&g.book), 0);
            prefetch_index(from_ref(&g.season), 0);
            prefetch_index(from_ref(&g.explain), 0);
            prefetch_index(from_ref(&g.instance), 0);
            prefetch_index(from_ref(&g.phase), 0);
            prefetch_index(from_ref(&g.window.customers), 0);
        }
    }

    /// The pane holding time `t` ([`pane_of`]; also the end of the window
    /// evaluated at `t`). Event times and the clock move in small steps, so
    /// most calls fall in the pane of the last one and skip the division.
    #[inline]
    pub(super) fn pane_at(&mut self, t: i64) -> i64 {
        let (first, last, p) = self.pane_memo;
        if first <= t && t <= last {
            return p;
        }
        let p = pane_of(t, self.slide);
        // Pane p covers ((p − 1)·S, p·S]; saturation only narrows the range.
        self.pane_memo = (
            boundary_time(p, self.slide),
            p.saturating_mul(self.slide),
            p,
        );
        p
    }

    /// Sets the rule's origin (its first pane with data) if it has none: the
    /// first in-time event the rule selects, at the clock `clock`.
    #[inline]
    pub(super) fn note_origin(&mut self, ts: i64, clock: i64) {
        if self.origin.is_none() {
            self.origin = Some(self.pane_at(ts).min(self.pane_at(clock)));
        }
    }

    /// The baseline with history of window `w` ending at `end` (see
    /// [`crate::indicator::Baseline`]).
    pub(super) fn baseline(
        &self,
        w: &crate::window::Window,
        end: i64,
    ) -> crate::indicator::Baseline {
        baseline_of(w, self.baseline_panes(end), self.shape.m, self.origin)
    }

    /// Whether an event at `ts` is in time for this rule at `watermark`.
    /// Late: at or before the watermark less the window (contract §2); and,
    /// for a rule without a baseline, in a pane that has already left the
    /// window ending at the watermark — a window ends at a slide boundary,
    /// so an event within a slide of the edge can fall just outside it and
    /// would change nothing (its pane is dropped), yet count as applied.
    #[inline]
    pub(super) fn in_time(&self, ts: i64, watermark: i64) -> bool {
        let edge = watermark.saturating_sub(self.window_ms);
        ts > edge
            && (self.shape.m > 0
                || ts > edge.saturating_add(self.slide)
                || pane_of(ts, self.slide) > pane_of(watermark, self.slide) - self.shape.n)
    }

    /// What the API shows of group `g` (`table`: the rule's group table).
    pub(super) fn view(&self, g: &Group, table: &GroupTable) -> GroupView {
        let estimate = if self.indicator.is_guarded() {
            let end = end_pane(g.evaluated_at, self.slide);
            let base = self.baseline(&g.window, end);
            let (v, volume) = match &g.season {
                Some(s) => {
                    self.indicator
                        .seasonal_value(&g.window, s.expected(end, self.shape.n), true)
                }
                None => self.indicator.estimate(&g.window, self.shape.n, base),
            };
            v.filter(|_| volume >= self.min_volume)
        } else {
            None
        };
        GroupView {
            group: self.labels(table.key(g.entry)),
            value: g.value,
            estimate,
            evaluated_at: g.evaluated_at,
            phase: g.phase,
            dedup_key: g
                .instance
                .as_ref()
                .and_then(|i| i.key.as_deref())
                .map(str::to_string),
            sample_event_ids: g
                .instance
                .as_ref()
                .map(|i| i.samples.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        }
    }

    pub(super) fn labels(&self, key: &[u8]) -> Vec<(String, String)> {
        self.group_by
            .iter()
            .zip(decode_key(key))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Creates the group of `key` (in entry `entry` of the rule's group
    /// table; the caller checked there is room) and returns its slot.
    pub(super) fn create_group(&mut self, key: &[u8], entry: u32, ts: i64, clock: i64) -> u32 {
        let end = self.pane_at(clock);
        if self.origin.is_none() {
            self.origin = Some(self.pane_at(ts).min(end));
        }
        let key_id = match self.recorder.as_deref_mut() {
            Some(rec) => match rec.ids.get(key) {
                Some(&id) => id,
                None => {
                    let id = rec.keys.len() as u32;
                    let boxed: Box<[u8]> = Box::from(key);
                    rec.keys.push(boxed.clone());
                    rec.ids.insert(boxed, id);
                    id
                }
            },
            None => 0,
        };
        let season = self.indicator.season().map(|s| Box::new(Seasonal::new(s)));
        let customers = self.shape.customers.then(Box::default);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    group: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        // Written in its slot (no group-sized copy through the stack).
        self.slots[slot as usize].group = Some(Group {
            window: Window::with_customers(end, customers),
            phase: Phase::Inactive,
            value: None,
            evaluated_at: clock,
            deadline: i64::MIN,
            warm_tick: i64::MIN,
            instance: None,
            key_id,
            season,
            entry,
            explain: None,
            book: None,
        });
        self.live += 1;
        self.dirty.mark(slot);
        slot
    }

    /// Forgets a group whose window is empty and whose alert is inactive,
    /// and releases its entry in `table` (the rule's group table); returns
    /// whether it did.
    pub(super) fn maybe_evict(&mut self, slot: u32, table: &mut GroupTable) -> bool {
        let s = &mut self.slots[slot as usize];
        let Some(g) = s.group.as_ref() else {
            return false;
        };
        let profile = g.season.as_ref().is_some_and(|s| !s.is_empty());
        if !(g.window.is_empty() && g.phase == Phase::Inactive) || profile {
            return false;
        }
        let entry = g.entry;
        self.expire_book(slot, true);
        let s = &mut self.slots[slot as usize];
        if s.group.is_some() {
            // Dropped in place (`take` would copy the group out first).
            s.group = None;
            self.dirty.forgot(table.key(entry));
        }
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        table.unset(entry, self.member);
        true
    }
}

/// The baseline with history of window `w`: `panes` of the rule's `m` have
/// history since its `origin` pane (see [`crate::indicator::Baseline`]).
pub(super) fn baseline_of(
    w: &crate::window::Window,
    panes: i64,
    m: i64,
    origin: Option<i64>,
) -> crate::indicator::Baseline {
    if m == 0 {
        return crate::indicator::Baseline::default();
    }
    let mut base = crate::indicator::Baseline::of(w, panes);
    if let Some(origin) = origin.filter(|_| panes < m) {
        // Still warming up: the origin pane may be in the baseline region.
        (base.sum, base.sumsq) = w.baseline_after(origin);
    }
    base
}
