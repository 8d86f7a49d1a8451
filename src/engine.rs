//! The deterministic core: events + rules → alert transitions.
//!
//! ```text
//! bytes ─► decode ─► dedup ─► route ─► window (per rule, group) ─► indicator ─► alert ─► Transition
//! ```
//!
//! [`Engine`] is a pure function of the events, the rules and event time: no
//! wall clock, no sockets. `replay`, `demo`, the live Kafka service and the
//! tests all drive it. Its clock is event time:
//!
//! * [`Engine::process`] advances the clock to the event's time if it is newer
//!   (the replay mode), then applies the event;
//! * [`Engine::apply`] applies an event without moving the clock, and
//!   [`Engine::advance_clock`] moves it — the live service uses these to hold the
//!   clock at the slowest partition and to advance it on idle.
//!
//! The watermark is `clock − allowed_lateness`; an event at or before
//! `watermark − window` is late for that rule and dropped. At time `t` a rule
//! evaluates the window ending at the first slide boundary at or after `t`.
//! A group is evaluated when an event changes its current window, and at the
//! exact times its window changes without events (a pane leaves) or its alert
//! has a deadline (`for`, `keep_firing_for`): those are timers in one heap
//! ordered by (time, rule, group slot), which makes the output order a function
//! of the input alone. A group whose window is empty and whose alert is
//! inactive is forgotten, so memory follows the live slices.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::alert::{AlertPolicy, Phase, Transition};
use crate::config::{Config, RuleConfig};
use crate::dedup::Dedup;
use crate::event::{decode_into, DecodeLimits, Event, Invalid, InvalidReason};
use crate::explain::ExplainSpec;
use crate::indicator::Indicator;
use crate::route::Router;
use crate::window::Shape;

mod answer;
mod apply;
mod backlog;
pub(crate) mod case_watch;
mod evaluate;
mod key;
pub(crate) mod occupancy;
mod pane;
mod partitions;
mod record;
mod reload;
mod rule;
mod shard_hash;
mod shards;
mod silence;
mod slice_watch;
mod snapshot;
mod stats;
mod table;
mod timers;
mod views;
mod wheel;

pub use pane::{end_pane, pane_of};
pub use record::Evaluation;
use record::Recorder;
pub(crate) use reload::Reconfigure;
pub use reload::ReloadSummary;
use rule::Slot;
use shard_hash::ShardFilter;
pub use shards::{shard_of, Op, ShardedEngine, DEFAULT_SHARDS};
pub use snapshot::incremental::{stored_groups, DedupChunk, Delta, GroupRow, Stored, DEDUP_CHUNK};
pub use snapshot::{RestoreSummary, SnapshotError, SNAPSHOT_VERSION};
pub use stats::{EngineStats, Outcome, RuleStats};
use table::GroupTable;
pub use views::{CurrentValue, EngineSet, EngineView, Footprint};
use wheel::Wheel;

/// Seed of the group-key hash.
const GROUP_HASH_SEED: u64 = 0x6772_6f75_705f_6b65;

/// One rule, compiled, with its groups.
#[derive(Debug)]
struct RuleRt {
    cfg: RuleConfig,
    name: Arc<str>,
    group_by: Box<[Box<str>]>,
    /// Ids of the `group_by` attributes in the engine's attribute table.
    group_attrs: Box<[u16]>,
    /// Id of this rule's `group_by` list: the index of its [`GroupTable`],
    /// shared by the rules with the same list.
    group_by_id: usize,
    /// This rule's position among its table's members.
    member: u32,
    indicator: Indicator,
    policy: AlertPolicy,
    slide: i64,
    /// The last pane [`RuleRt::pane_at`] computed: (first ms, last ms, pane).
    pane_memo: (i64, i64, i64),
    window_ms: i64,
    shape: Shape,
    min_volume: i64,
    max_groups: usize,
    /// Stable hash of the rule's name: with the group's, picks its shard.
    shard_seed: u64,
    /// The first pane that holds data (surge warm-up).
    origin: Option<i64>,
    /// A surge rule's panes that held any event of the stream: its baseline
    /// leaves out the silent ones (`occupancy`). None for other rules.
    occupancy: Option<Box<occupancy::Occupancy>>,
    /// `engine.silence_after` in panes: only a silence this long is left
    /// out of the baseline (0: none).
    silence_panes: i64,
    /// The last silent-pane count: ((end, after), count). Every group of
    /// the rule evaluated at one boundary asks the same; a new mark clears it.
    silence_memo: std::cell::Cell<((i64, i64), i64)>,
    /// The pane boundary of the rule's next silence check (`silence`;
    /// `i64::MAX`: not armed).
    silence_next: i64,
    /// A silence reached the baseline at one of the checks (since start).
    silence_seen: bool,
    /// Re-evaluations at pane boundaries (panes leaving the window or baseline).
    wheel: Wheel,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    stats: RuleStats,
    /// Events that selected this rule, of them those counted toward its
    /// signal (numerator, counted events), and those that fed its second
    /// selector (denominator, `responses`): a history tool warns of a rule
    /// that no event selected, or whose signal or second selector none fed.
    /// Not checkpointed.
    selected: [u64; 3],
    /// Of `stats.late`, the events another rule took (the engine's `late`
    /// does not count them): what the rule alone lost to its window. Not
    /// checkpointed.
    late_alone: u64,
    /// Events whose customer a window did not count because
    /// `engine.max_customers_per_group` was reached: the rule's distinct and
    /// repeat figures are capped. Not checkpointed.
    customers_uncounted: u64,
    /// Set by [`Engine::record`]: every evaluation is kept for a caller.
    recorder: Option<Box<Recorder>>,
    /// The rule's `explain` (root-cause hints); `None`: no per-value counts.
    explain: Option<ExplainSpec>,
    /// `unanswered` rules: which complaint each response answers.
    backlog: Option<Box<backlog::Backlog>>,
    /// Groups changed since the last incremental checkpoint.
    dirty: snapshot::dirty::Dirty,
    /// (slot, hash, key) of live groups waiting for their group-table entry:
    /// filled by a restore or by [`table::stash`], emptied by [`table::rebuild`].
    keys: Vec<(u32, u64, key::GroupKey)>,
}

/// A read-only view of one group, for metrics and the API.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// (attribute, value) in `group_by` order.
    pub group: Vec<(String, String)>,
    /// Latest value (with `confidence`: the confidence bound judged).
    pub value: Option<f64>,
    /// The point estimate behind `value` when the rule has a `confidence`
    /// (recomputed from the window of the latest evaluation; `None` for
    /// rules without one, whose `value` is the estimate).
    pub(crate) estimate: Option<f64>,
    /// When it was computed.
    pub(crate) evaluated_at: i64,
    /// Alert phase.
    pub phase: Phase,
    /// Dedup key of the active alert instance, if any.
    pub(crate) dedup_key: Option<String>,
    /// Evidence of the active alert instance.
    pub(crate) sample_event_ids: Vec<String>,
}

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration did not validate.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The deterministic core.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<RuleRt>,
    router: Router,
    dedup: Dedup,
    limits: DecodeLimits,
    lateness_ms: i64,
    /// Fed through a [`Sequencer`](crate::sequencer::Sequencer): the clock
    /// already is the watermark, so the late check allows no more lateness.
    sequenced: bool,
    sample_ids: usize,
    /// Event-time clock; `None` before the first event.
    clock: Option<i64>,
    /// (time, rule, slot, generation) of pending evaluations.
    timers: BinaryHeap<Reverse<(i64, u32, u32, u32)>>,
    /// No rule's wheel holds an entry due before this time (`i64::MIN`:
    /// unknown), so a clock move short of it skips the wheels. Lowered by
    /// whatever schedules on a wheel; recomputed by every full scan.
    wheel_floor: i64,
    stats: EngineStats,
    hasher: foldhash::fast::FixedState,
    /// Every attribute name some rule groups by → its id.
    attr_ids: hashbrown::HashMap<Box<str>, u16, foldhash::fast::FixedState>,
    /// The same names by id: a few names are found faster by a scan than by hashing.
    attr_names: Vec<Box<str>>,
    /// One group table per distinct `group_by` list.
    tables: Vec<GroupTable>,
    /// (horizon ms, max ids) the dedup set was built with.
    dedup_settings: (i64, usize),
    /// Set on the engines of a [`ShardedEngine`]: the shards whose
    /// (rule, group) pairs this engine keeps; the others it skips.
    shard: Option<ShardFilter>,
    /// History tools: values the selectors name in another case
    /// ([`Engine::watch_cases`]).
    cases: Option<Box<case_watch::CaseWatch>>,
    /// History tools: `group_by` values missing or in several forms
    /// ([`Engine::watch_cases`]).
    slices: Option<Box<slice_watch::SliceWatch>>,
    /// Rules that note which panes held any event (surges: `occupancy`).
    occupied: Vec<u32>,
}

impl Engine {
    /// Builds an engine from a validated configuration.
    pub fn new(cfg: &Config) -> Result<Self, EngineError> {
        check_config(cfg)?;
        let e = &cfg.engine;
        let rules: Vec<RuleRt> = cfg.rules.iter().map(|r| RuleRt::new(r, cfg)).collect();
        let mut engine = Engine {
            rules,
            router: Router::default(),
            dedup: Dedup::new(e.dedup_horizon.as_ms(), e.dedup_max_ids),
            limits: e.decode_limits(),
            lateness_ms: e.allowed_lateness.as_ms(),
            sequenced: false,
            sample_ids: e.sample_event_ids,
            clock: None,
            timers: BinaryHeap::new(),
            wheel_floor: i64::MIN,
            stats: EngineStats::default(),
            hasher: foldhash::fast::FixedState::with_seed(GROUP_HASH_SEED),
            attr_ids: hashbrown::HashMap::default(),
            attr_names: Vec::new(),
            tables: Vec::new(),
            dedup_settings: (e.dedup_horizon.as_ms(), e.dedup_max_ids),
            shard: None,
            cases: None,
            slices: None,
            occupied: Vec::new(),
        };
        engine.index_rules();
        Ok(engine)
    }

    /// Rebuilds the attribute table, the group tables and the router after
    /// the rule list changed (or the groups were restored).
    fn index_rules(&mut self) {
        self.occupied = (0..self.rules.len() as u32)
            .filter(|&r| self.rules[r as usize].occupancy.is_some())
            .collect();
        let mut attr_ids: hashbrown::HashMap<Box<str>, u16, foldhash::fast::FixedState> =
            hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(GROUP_HASH_SEED));
        // (list, its attribute ids, members so far)
        type List = (Box<[Box<str>]>, Box<[u16]>, u32);
        let mut lists: Vec<List> = Vec::new();
        for rule in &mut self.rules {
            let mut ids = Vec::with_capacity(rule.group_by.len());
            for name in rule.group_by.iter() {
                let next = attr_ids.len() as u16;
                ids.push(*attr_ids.entry(name.clone()).or_insert(next));
            }
            rule.group_attrs = ids.into_boxed_slice();
            rule.group_by_id = match lists.iter().position(|l| l.0 == rule.group_by) {
                Some(i) => i,
                None => {
                    lists.push((rule.group_by.clone(), rule.group_attrs.clone(), 0));
                    lists.len() - 1
                }
            };
            rule.member = lists[rule.group_by_id].2;
            lists[rule.group_by_id].2 += 1;
        }
        self.tables = lists
            .into_iter()
            .map(|(_, attrs, width)| GroupTable::new(attrs, width as usize))
            .collect();
        table::rebuild(&mut self.tables, &mut self.rules);
        self.wheel_floor = i64::MIN;
        self.router = Router::new(self.rules.iter().map(|r| r.indicator.selectors()));
        let mut names: Vec<(u16, Box<str>)> =
            attr_ids.iter().map(|(k, &v)| (v, k.clone())).collect();
        names.sort();
        self.attr_names = names.into_iter().map(|(_, k)| k).collect();
        self.attr_ids = attr_ids;
    }

    /// Decode limits derived from the configuration.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// The event-time clock (ms), once an event has been seen.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// The watermark: clock − allowed lateness (the clock itself when the
    /// engine is fed through a sequencer, whose release point it follows).
    pub(crate) fn watermark(&self) -> Option<i64> {
        self.clock.map(|c| c.saturating_sub(self.late_margin()))
    }

    /// `engine.allowed_lateness` in ms.
    pub(crate) fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// How far behind the clock an event is late for every rule:
    /// `allowed_lateness` plus the longest window.
    pub(crate) fn late_horizon_ms(&self) -> i64 {
        let longest = self.rules.iter().map(|r| r.window_ms).max().unwrap_or(0);
        self.lateness_ms.saturating_add(longest)
    }

    /// `allowed_lateness` plus the shortest window: a clock move larger
    /// than this can make events late for some rule.
    pub(crate) fn short_late_horizon_ms(&self) -> i64 {
        let shortest = self.rules.iter().map(|r| r.window_ms).min().unwrap_or(0);
        self.lateness_ms.saturating_add(shortest)
    }

    /// Declares that events reach this engine through a
    /// [`Sequencer`](crate::sequencer::Sequencer), in event-time order behind
    /// the watermark: the engine clock is then the watermark, and an event is
    /// late when it is older than the clock minus the rule's window.
    pub(crate) fn set_sequenced(&mut self, on: bool) {
        self.sequenced = on;
    }

    /// Whether the engine is fed through a sequencer.
    pub fn is_sequenced(&self) -> bool {
        self.sequenced
    }

    fn late_margin(&self) -> i64 {
        if self.sequenced {
            0
        } else {
            self.lateness_ms
        }
    }

    /// Engine-wide counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Memory held by deduplication (ids).
    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    /// Ids the dedup memory forgot before `dedup_horizon` because it held
    /// `engine.dedup_max_ids` (a redelivery of one would count again), in
    /// this process: a checkpoint restores its earlier count, which this
    /// leaves out, so a restart or a partition taken over is not counted
    /// again.
    pub fn dedup_evicted(&self) -> u64 {
        self.dedup.evicted_here
    }

    /// Hashes event ids under `key` (`run`: the installation's); set before
    /// the first event and before a snapshot is restored.
    pub(crate) fn set_dedup_key(&mut self, key: crate::dedup::DedupKey) {
        self.dedup.set_key(key);
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Counts, from now on, the processed events whose `type` or an
    /// attribute a selector matches differs from a value the selectors
    /// name only in letter case (history tools: [`Engine::case_variants`]).
    pub(crate) fn watch_cases(&mut self) {
        let w = case_watch::CaseWatch::new(self.rules.iter().map(|r| &r.cfg));
        self.cases = Some(Box::new(w));
        let s = slice_watch::SliceWatch::new(self.rules.iter().map(|r| &r.cfg), |a| {
            table::attr_id(&self.attr_names, &self.attr_ids, a)
        });
        self.slices = Some(Box::new(s));
    }

    /// What the `group_by` watch of [`Engine::watch_cases`] warns of:
    /// events without a rule's `group_by` attribute, values in several
    /// forms (one line each).
    pub(crate) fn slice_warnings(&self) -> Vec<String> {
        self.slices
            .as_deref()
            .map(slice_watch::SliceWatch::warnings)
            .unwrap_or_default()
    }

    /// The values seen in another case than a selector names them.
    pub(crate) fn case_variants(&self) -> Vec<case_watch::CaseVariant> {
        self.cases
            .as_deref()
            .map(|w| w.variants(self.rules.iter().map(|r| &r.cfg)))
            .unwrap_or_default()
    }

    /// The configuration of rule `i`.
    pub(crate) fn rule_config(&self, i: usize) -> &RuleConfig {
        &self.rules[i].cfg
    }

    /// Events that selected rule `i`, of them those counted toward its
    /// signal, and those that fed its second selector (a ratio's
    /// denominator, a backlog rule's `responses`).
    pub(crate) fn rule_selected(&self, i: usize) -> [u64; 3] {
        self.rules[i].selected
    }

    /// Events too old for rule `i`'s window that another rule took (see
    /// `RuleRt::late_alone`).
    pub(crate) fn rule_late_alone(&self, i: usize) -> u64 {
        self.rules[i].late_alone
    }

    /// `engine.max_customers_per_group`.
    pub(crate) fn max_customers_per_group(&self) -> usize {
        self.rules.first().map_or(0, |r| r.shape.max_customers)
    }

    /// Events rule `i` did not count per customer (see
    /// `RuleRt::customers_uncounted`).
    pub fn rule_customers_uncounted(&self, i: usize) -> u64 {
        self.rules[i].customers_uncounted
    }

    /// Counters of rule `i`.
    pub fn rule_stats(&self, i: usize) -> &RuleStats {
        &self.rules[i].stats
    }

    /// Live groups of rule `i`.
    pub fn live_groups(&self, i: usize) -> usize {
        self.rules[i].live
    }

    /// Counts an input that failed to decode.
    pub(crate) fn record_invalid(&mut self, reason: InvalidReason) {
        self.stats.events_in += 1;
        self.stats.invalid[reason.index()] += 1;
    }

    /// Decodes and processes one input in replay mode (the clock follows the
    /// events). `now_ms` is the wall clock for the future-skew check.
    pub fn process_bytes(
        &mut self,
        bytes: &[u8],
        now_ms: Option<i64>,
        out: &mut Vec<Transition>,
    ) -> Result<Outcome, Invalid> {
        let mut ev = Event::default();
        match decode_into(bytes, &self.limits, now_ms, None, &mut ev) {
            Ok(()) => Ok(self.process(&ev, out)),
            Err(inv) => {
                self.record_invalid(inv.reason);
                Err(inv)
            }
        }
    }

    /// Replay mode: advances the clock to the event time if newer, then applies the event.
    pub fn process(&mut self, ev: &Event<'_>, out: &mut Vec<Transition>) -> Outcome {
        if let Some(w) = self.cases.as_deref_mut() {
            w.observe(ev);
        }
        let t = self.clock.map_or(ev.ts, |c| c.max(ev.ts));
        self.advance_clock(t, out);
        self.apply(ev, out)
    }

    /// [`Engine::process`] of each event in order, calling `each` with the
    /// event's position and outcome after each (`out` then holds the
    /// transitions so far). The same transitions, outcomes and state as one
    /// `process` call per event; faster on many groups: the events ahead are
    /// routed early and their index lines, entries and groups asked of the
    /// memory while the current one is applied.
    pub fn process_batch<'e, E: std::borrow::Borrow<Event<'e>>>(
        &mut self,
        events: &[E],
        out: &mut Vec<Transition>,
        mut each: impl FnMut(usize, Outcome, &mut Vec<Transition>),
    ) {
        /// Events routed ahead of the one applied; entries are asked for
        /// half as far ahead, groups a quarter.
        const AHEAD: usize = 8;
        const RING: usize = AHEAD + 1;
        let mut ring: [apply::Routed<'_>; RING] = Default::default();
        for (k, ev) in events.iter().take(AHEAD).enumerate() {
            self.route_ahead(ev.borrow(), &mut ring[k], k);
        }
        for (i, ev) in events.iter().enumerate() {
            let ev = ev.borrow();
            if let Some(next) = events.get(i + AHEAD) {
                self.route_ahead(next.borrow(), &mut ring[(i + AHEAD) % RING], AHEAD);
            }
            if i + AHEAD / 2 < events.len() {
                self.prefetch_entries(&ring[(i + AHEAD / 2) % RING]);
            }
            if i + AHEAD / 4 < events.len() {
                self.prefetch_groups(&mut ring[(i + AHEAD / 4) % RING]);
            }
            let t = self.clock.map_or(ev.ts, |c| c.max(ev.ts));
            self.advance_clock(t, out);
            let outcome = self.apply_routed(ev, &mut ring[i % RING], true, out);
            each(i, outcome, out);
        }
    }
}

/// Validates a configuration for the engine.
fn check_config(cfg: &Config) -> Result<(), EngineError> {
    let errors = cfg.validate();
    if errors.is_empty() {
        return Ok(());
    }
    let msg = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(EngineError::Config(msg))
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod tests;
