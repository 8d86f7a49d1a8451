//! Read-only views of the engine's groups, for metrics, the API and backtests.

use crate::alert::{Labels, Phase};

use super::backlog::response_time;
use super::key::{group_hash, key_eq};
use super::pane::end_pane;
use super::{Engine, EngineStats, GroupView, RuleStats};
use crate::config::RuleConfig;

/// What the engine's groups hold, for comparing memory use with the data
/// itself (benches/core_throughput.rs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Live groups, all rules.
    pub groups: usize,
    /// Stored (non-empty) panes.
    pub panes: usize,
    /// Bytes of the groups' flat keys.
    pub(crate) key_bytes: usize,
    /// (customer hash, count) entries stored in panes.
    pub(crate) customer_entries: usize,
    /// Panes the groups' windows span (window and surge baseline), stored or not.
    pub(crate) window_panes: usize,
}

impl Footprint {
    /// The data's own size: per group its key, per stored pane its index and
    /// three 8-byte counters, per customer entry a hash and a count (12 bytes).
    pub fn stored_bytes(&self) -> usize {
        self.key_bytes + self.panes * 32 + self.customer_entries * 12
    }

    /// The size of a dense layout: per group its key and three 8-byte
    /// counters for every pane its window spans, plus the customer entries.
    pub fn dense_bytes(&self) -> usize {
        self.key_bytes + self.window_panes * 24 + self.customer_entries * 12
    }
}

/// What the metrics, the admin API and the incident stage read from the
/// core: one [`Engine`] or a [`ShardedEngine`](super::ShardedEngine), whose
/// workers' groups it merges.
pub trait EngineView {
    /// The event-time clock (ms).
    fn clock(&self) -> Option<i64>;
    /// Engine-wide counters.
    fn counters(&self) -> EngineStats;
    /// Number of rules.
    fn rule_count(&self) -> usize;
    /// The configuration of rule `i`.
    fn rule_config(&self, i: usize) -> &RuleConfig;
    /// Counters of rule `i`.
    fn rule_counters(&self, i: usize) -> RuleStats;
    /// Live groups of rule `i`.
    fn live_groups(&self, i: usize) -> usize;
    /// At most `k` groups of rule `i` (alerting first, then the highest
    /// values) and the number of live groups.
    fn top_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize);
    /// At most `k` groups of rule `i`, alerting first, then the furthest on
    /// the breaching side of the rule's condition, and the number of live groups.
    fn worst_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize);
    /// The groups of rule `i` whose alert is pending or firing.
    fn active_groups(&self, i: usize) -> Vec<GroupView>;
    /// Dedup keys of every active alert instance, sorted.
    fn active_alert_keys(&self) -> Vec<String>;
    /// Ids held by deduplication.
    fn dedup_len(&self) -> usize;
    /// Ids deduplication forgot early (see [`Engine::dedup_evicted`]).
    fn dedup_evicted(&self) -> u64;
    /// The watermark (see [`Engine::watermark`]).
    fn watermark(&self) -> Option<i64>;
    /// Events rule `i` did not count per customer since the start
    /// (`engine.max_customers_per_group` reached in a slice).
    fn customers_uncounted(&self, _i: usize) -> u64 {
        0
    }
}

impl EngineView for Engine {
    fn clock(&self) -> Option<i64> {
        Engine::clock(self)
    }
    fn counters(&self) -> EngineStats {
        self.stats.clone()
    }
    fn rule_count(&self) -> usize {
        Engine::rule_count(self)
    }
    fn rule_config(&self, i: usize) -> &RuleConfig {
        Engine::rule_config(self, i)
    }
    fn rule_counters(&self, i: usize) -> RuleStats {
        self.rules[i].stats.clone()
    }
    fn customers_uncounted(&self, i: usize) -> u64 {
        self.rules[i].customers_uncounted
    }
    fn live_groups(&self, i: usize) -> usize {
        Engine::live_groups(self, i)
    }
    fn top_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        Engine::top_groups(self, i, k)
    }
    fn worst_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        Engine::worst_groups(self, i, k)
    }
    fn active_groups(&self, i: usize) -> Vec<GroupView> {
        Engine::active_groups(self, i)
    }
    fn active_alert_keys(&self) -> Vec<String> {
        Engine::active_alert_keys(self)
    }
    fn dedup_len(&self) -> usize {
        Engine::dedup_len(self)
    }
    fn dedup_evicted(&self) -> u64 {
        Engine::dedup_evicted(self)
    }
    fn watermark(&self) -> Option<i64> {
        Engine::watermark(self)
    }
}

/// Engines that each hold some of the shards, seen as one for the metrics
/// and the admin API: the shard owners of a scaled instance (one engine per
/// owned shard partition). Groups and per-rule counters add up exactly
/// (every (rule, group) pair lives in one shard); engine-wide counters count
/// an event once in each engine it reached; the clock and watermark are the
/// slowest engine's.
#[derive(Debug, Clone, Copy)]
pub struct EngineSet<'a> {
    engines: &'a [&'a Engine],
}

impl<'a> EngineSet<'a> {
    /// The engines, all built from one configuration.
    pub fn new(engines: &'a [&'a Engine]) -> Self {
        EngineSet { engines }
    }
}

impl EngineView for EngineSet<'_> {
    fn clock(&self) -> Option<i64> {
        self.engines.iter().filter_map(|e| e.clock()).min()
    }
    fn counters(&self) -> EngineStats {
        let mut s = EngineStats::default();
        for e in self.engines {
            s.add(&e.stats);
        }
        s
    }
    fn rule_count(&self) -> usize {
        self.engines.first().map_or(0, |e| e.rule_count())
    }
    fn rule_config(&self, i: usize) -> &RuleConfig {
        // `rule_count` is 0 without engines: never called then.
        self.engines[0].rule_config(i)
    }
    fn rule_counters(&self, i: usize) -> RuleStats {
        let mut s = RuleStats::default();
        for e in self.engines {
            s.add(&e.rules[i].stats);
        }
        s
    }
    fn live_groups(&self, i: usize) -> usize {
        self.engines.iter().map(|e| e.live_groups(i)).sum()
    }
    fn customers_uncounted(&self, i: usize) -> u64 {
        self.engines
            .iter()
            .map(|e| e.rules[i].customers_uncounted)
            .sum()
    }
    fn top_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        ranked(self.engines.iter().copied(), k, 1.0, |e| e.top_groups(i, k))
    }
    fn worst_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        let sign = match self.rule_config(i).condition {
            crate::config::Condition::Above => 1.0,
            crate::config::Condition::Below => -1.0,
        };
        ranked(self.engines.iter().copied(), k, sign, |e| {
            e.worst_groups(i, k)
        })
    }
    fn active_groups(&self, i: usize) -> Vec<GroupView> {
        let mut all: Vec<GroupView> = self
            .engines
            .iter()
            .flat_map(|e| e.active_groups(i))
            .collect();
        all.sort_by(|a, b| a.group.cmp(&b.group));
        all
    }
    fn active_alert_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .engines
            .iter()
            .flat_map(|e| e.active_alert_keys())
            .collect();
        keys.sort_unstable();
        keys
    }
    fn dedup_len(&self) -> usize {
        self.engines.iter().map(|e| e.dedup_len()).sum()
    }
    fn dedup_evicted(&self) -> u64 {
        self.engines.iter().map(|e| e.dedup_evicted()).sum()
    }
    fn watermark(&self) -> Option<i64> {
        self.engines.iter().filter_map(|e| e.watermark()).min()
    }
}

/// The first `k` of every engine's ranked groups, ranked as one engine
/// ranks them (alerting first, then `sign × value` highest; ties by group,
/// not memory layout), and the live groups of all.
fn ranked<'a>(
    engines: impl IntoIterator<Item = &'a Engine>,
    k: usize,
    sign: f64,
    each: impl Fn(&Engine) -> (Vec<GroupView>, usize),
) -> (Vec<GroupView>, usize) {
    let mut total = 0;
    let mut all = Vec::new();
    for e in engines {
        let (v, n) = each(e);
        total += n;
        all.extend(v);
    }
    let key = |g: &GroupView| {
        g.value
            .filter(|v| !v.is_nan())
            .map_or(f64::NEG_INFINITY, |v| sign * v)
    };
    all.sort_by(|a, b| {
        b.phase
            .code()
            .cmp(&a.phase.code())
            .then_with(|| key(b).total_cmp(&key(a)))
            .then_with(|| a.group.cmp(&b.group))
    });
    all.truncate(k);
    (all, total)
}

impl Engine {
    /// Counts what the groups of every rule hold (see [`Footprint`]).
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        for rule in &self.rules {
            let span = (rule.shape.n + rule.shape.m) as usize;
            for g in rule.slots.iter().filter_map(|s| s.group.as_ref()) {
                f.groups += 1;
                f.window_panes += span;
                f.panes += g.window.pane_count();
                f.key_bytes += self.tables[rule.group_by_id].key(g.entry).len();
                f.customer_entries += g.window.customer_entries();
            }
        }
        f
    }

    /// The groups of rule `i` with their latest values, in slot order
    /// (deterministic for a given input).
    pub fn groups(&self, i: usize) -> Vec<GroupView> {
        let rule = &self.rules[i];
        rule.slots
            .iter()
            .filter_map(|s| s.group.as_ref())
            .map(|g| rule.view(g, &self.tables[rule.group_by_id]))
            .collect()
    }

    /// At most `k` groups of rule `i`: alerting ones first (firing, then
    /// pending), then the highest values; ties in slot order. Returns them and
    /// the number of live groups. Only the chosen groups are materialised, so
    /// this is cheap with many groups.
    pub(crate) fn top_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        self.ranked_groups(i, k, 1.0)
    }

    /// Like [`Engine::top_groups`], but the values ranked worst first: the
    /// highest for a rule that fires `above` its thresholds, the lowest for
    /// one that fires `below` (the console's "worst slices").
    pub(crate) fn worst_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        let sign = match self.rules[i].cfg.condition {
            crate::config::Condition::Above => 1.0,
            crate::config::Condition::Below => -1.0,
        };
        self.ranked_groups(i, k, sign)
    }

    fn ranked_groups(&self, i: usize, k: usize, sign: f64) -> (Vec<GroupView>, usize) {
        let rule = &self.rules[i];
        let mut keys: Vec<(i64, f64, usize)> = rule
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, slot)| {
                slot.group.as_ref().map(|g| {
                    let v = g
                        .value
                        .filter(|v| !v.is_nan())
                        .map_or(f64::NEG_INFINITY, |v| sign * v);
                    (g.phase.code(), v, s)
                })
            })
            .collect();
        let total = keys.len();
        let order = |a: &(i64, f64, usize), b: &(i64, f64, usize)| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.total_cmp(&a.1))
                .then_with(|| a.2.cmp(&b.2))
        };
        if keys.len() > k {
            keys.select_nth_unstable_by(k, order);
            keys.truncate(k);
        }
        keys.sort_by(order);
        let views = keys
            .into_iter()
            .filter_map(|(_, _, s)| {
                rule.slots[s]
                    .group
                    .as_ref()
                    .map(|g| rule.view(g, &self.tables[rule.group_by_id]))
            })
            .collect();
        (views, total)
    }

    /// One group of rule `i`, found by its `group_by` values in order: its
    /// alert phase, latest value and when that was computed. Nothing is
    /// materialised, so this is cheap however many groups the rule has.
    pub(crate) fn lookup<'a>(
        &self,
        i: usize,
        values: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<(Phase, Option<f64>, i64)> {
        let rule = self.rules.get(i)?;
        let hash = group_hash(&self.hasher, values.clone());
        let table = self.tables.get(rule.group_by_id)?;
        let e = table.find_by(hash, |key| key_eq(key, values.clone()))?;
        let g = rule
            .slots
            .get(table.slot(e, rule.member) as usize)?
            .group
            .as_ref()?;
        Some((g.phase, g.value, g.evaluated_at))
    }

    /// The groups of rule `i` whose alert is pending or firing.
    pub(crate) fn active_groups(&self, i: usize) -> Vec<GroupView> {
        let rule = &self.rules[i];
        rule.slots
            .iter()
            .filter_map(|s| s.group.as_ref())
            .filter(|g| g.phase != Phase::Inactive)
            .map(|g| rule.view(g, &self.tables[rule.group_by_id]))
            .collect()
    }

    /// The groups of rule `i` as of the current clock: windows are advanced
    /// to the clock and values recomputed, without touching alert state.
    pub fn current_values(&mut self, i: usize) -> Vec<(Labels, Option<f64>)> {
        let Some(clock) = self.clock else {
            return Vec::new();
        };
        (0..self.rules[i].slots.len())
            .filter_map(|s| self.slot_value(i, s, clock))
            .collect()
    }

    /// The current value, as of the clock, of every pending or firing alert
    /// (rule order, then slot order), with its root-cause hints when the
    /// rule explains: what a progress update made on another instance needs
    /// (scaled mode sends these to the incident owners).
    pub fn active_values(&mut self) -> Vec<CurrentValue> {
        let Some(clock) = self.clock else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            for s in 0..self.rules[i].slots.len() {
                let active = self.rules[i].slots[s]
                    .group
                    .as_ref()
                    .is_some_and(|g| g.phase != Phase::Inactive);
                if !active {
                    continue;
                }
                let Some((group, value)) = self.slot_value(i, s, clock) else {
                    continue;
                };
                let rule = self.rules[i].name.to_string();
                let hints = self.hints(&rule, &group);
                out.push(CurrentValue {
                    rule,
                    group,
                    value,
                    hints,
                });
            }
        }
        out
    }

    /// The value of rule `i`'s group `group` (values in `group_by` order) as
    /// of the clock, like [`Engine::current_values`] for that one group
    /// (found by its hash, not by walking the rule's groups). `None`: no
    /// clock, no such group, or no value.
    pub fn current_value(&mut self, i: usize, group: &[(String, String)]) -> Option<f64> {
        let clock = self.clock?;
        let rule = self.rules.get(i)?;
        if group.len() != rule.group_by.len() {
            return None;
        }
        let values = group.iter().map(|(_, v)| v.as_str());
        let hash = group_hash(&self.hasher, values.clone());
        let table = self.tables.get(rule.group_by_id)?;
        let e = table.find_by(hash, |key| key_eq(key, values.clone()))?;
        let slot = table.slot(e, rule.member) as usize;
        self.slot_value(i, slot, clock).and_then(|(_, v)| v)
    }

    /// Slot `s` of rule `i` brought to `clock` (its window advanced, alert
    /// state untouched): its labels and value.
    fn slot_value(&mut self, i: usize, s: usize, clock: i64) -> Option<(Labels, Option<f64>)> {
        let rule = &mut self.rules[i];
        let table = &self.tables[rule.group_by_id];
        let end = end_pane(clock, rule.slide);
        let shape = rule.shape;
        let (base, origin) = (rule.baseline_panes(end), rule.origin);
        let g = rule.slots.get_mut(s)?.group.as_mut()?;
        g.window.advance(end, &shape);
        let (v, vol) = match &g.season {
            // The profile as it stands (advanced only by evaluations).
            Some(p) => {
                let exp = p.expected(end, shape.n);
                rule.indicator.seasonal_value(&g.window, exp, false)
            }
            None => match rule.indicator.response_quantile() {
                Some(q) => response_time(g.book.as_deref(), end - shape.n, end, q),
                None => {
                    let b = super::rule::baseline_of(&g.window, base, shape.m, origin);
                    rule.indicator.value(&g.window, shape.n, b)
                }
            },
        };
        let v = if vol < rule.min_volume { None } else { v };
        let entry = g.entry;
        Some((rule.labels(table.key(entry)), v))
    }
}

/// An active alert's value as of the engine's clock ([`Engine::active_values`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentValue {
    /// The rule's name.
    pub rule: String,
    /// The group, in `group_by` order.
    pub group: Vec<(String, String)>,
    /// The indicator's value (`None`: below `min_volume` or no data).
    pub value: Option<f64>,
    /// Root-cause hints (`None`: the rule does not explain).
    pub hints: Option<Vec<crate::explain::Hint>>,
}

impl Engine {
    /// The root-cause hints of `rule` on `group` (values in `group_by`
    /// order) for the window at the current clock; `None` when the rule has
    /// no `explain` or the group is gone. For progress updates: counts are
    /// brought to the clock, alert state is not touched.
    pub fn hints(&mut self, rule: &str, group: &Labels) -> Option<Vec<crate::explain::Hint>> {
        let clock = self.clock?;
        let i = self.rules.iter().position(|r| &*r.name == rule)?;
        let values = group.iter().map(|(_, v)| v.as_str());
        let r = &self.rules[i];
        r.explain.as_ref()?;
        if group.len() != r.group_by.len() {
            return None;
        }
        let hash = group_hash(&self.hasher, values.clone());
        let table = self.tables.get(r.group_by_id)?;
        let e = table.find_by(hash, |key| key_eq(key, values.clone()))?;
        let slot = table.slot(e, r.member) as usize;
        let rule = &mut self.rules[i];
        let end = end_pane(clock, rule.slide);
        let spec = rule.explain.as_ref()?;
        let g = rule.slots.get_mut(slot)?.group.as_mut()?;
        // A group without counts has seen no signal event: nothing stands out.
        Some(
            g.explain
                .as_deref_mut()
                .map_or_else(Vec::new, |x| x.hints(spec, end)),
        )
    }
}
