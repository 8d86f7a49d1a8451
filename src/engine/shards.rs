//! State shards and worker threads: the engine's (rule, group) pairs split
//! into a fixed number of shards by a stable hash, and the shards spread over
//! worker engines that run on their own threads — with output identical to
//! one [`Engine`].
//!
//! ```text
//!                     ┌─► worker engine 0 (shards 0, W, 2W, …) ─┐
//! ops (events, clock) ┼─► worker engine 1 (shards 1, W+1, …)    ┼─► merge ─► transitions
//!                     └─► …                                     ┘  (step, time, rule, group)
//! ```
//!
//! **Shard of a pair.** `shard_of(rule, group)` hashes the rule's name and the
//! group's values with SipHash-1-3 under fixed keys (a specified function,
//! stable across builds and machines) and reduces the mix to `0..shards`. It
//! is the unit of parallelism and ownership; `engine.shards` fixes how many
//! there are (default [`DEFAULT_SHARDS`]), `engine.workers` how many threads
//! share them.
//!
//! **Why the output is identical.** Every worker engine sees every event and
//! every clock move, and keeps only the pairs of its shards. A pair's state
//! depends only on its own events and the clock, so each pair evolves exactly
//! as in one engine. What is rule-wide is kept identical in every worker: the
//! clock, the deduplication of event ids (each worker dedups the same ids),
//! and a surge rule's warm-up origin (every worker notes the first in-time
//! event its rule selects, owned or not). The order is made canonical: an
//! engine emits a clock move's transitions sorted by (time, rule, group) and
//! an event's in rule order, so merging the workers' outputs step by step
//! with the same key gives exactly one engine's sequence.
//!
//! The one difference: `engine.max_groups_per_rule` is split evenly between
//! the workers (rounded up), so a rule that hits its cap may drop different
//! new groups than one engine would. The cap is an overload guard, counted in
//! `crisiswatch_group_overflow_total`.

use super::key::decode_key;
pub use super::shard_hash::shard_of;
use super::shard_hash::{stable_group_hash, ShardFilter};
use super::{
    Engine, EngineError, EngineStats, GroupView, Outcome, RestoreSummary, RuleStats, SnapshotError,
};
use super::{EngineView, ReloadSummary};
use crate::alert::{Labels, Transition};
use crate::config::{Config, RuleConfig};
use crate::event::{DecodeLimits, Event, InvalidReason};
use plan::WorkerOut;

/// Shards when `engine.shards` is not set (a configuration default).
pub use crate::config::DEFAULT_SHARDS;

/// Batches shorter than this run the workers in turn on the caller's thread.
const PARALLEL_FROM: usize = 64;

/// One step of input for [`ShardedEngine::run`].
#[derive(Debug, Clone, Copy)]
pub enum Op<'a, 'e> {
    /// [`Engine::process`]: move the clock to the event (if newer), apply it.
    Process(&'a Event<'e>),
    /// [`Engine::advance_clock`].
    Advance(i64),
}

/// Engines over disjoint shards, run on worker threads (see the module docs).
#[derive(Debug)]
pub struct ShardedEngine {
    engines: Vec<Engine>,
    shards: u32,
    /// Engine-wide counters of the merged outcomes (the workers' own count
    /// what they kept).
    stats: EngineStats,
    rule_names: Vec<String>,
    /// Where incremental checkpoints stand (`snapshot::incremental`).
    cursor: super::snapshot::incremental::Cursor,
}

impl ShardedEngine {
    /// `workers` engines (at least 1) over `shards` shards (at least
    /// `workers`).
    pub fn new(cfg: &Config, workers: usize, shards: u32) -> Result<Self, EngineError> {
        let workers = workers.max(1);
        let shards = shards.max(workers as u32);
        let mut engines = Vec::with_capacity(workers);
        for w in 0..workers {
            let mut e = Engine::new(cfg)?;
            if workers > 1 {
                e.shard = Some(ShardFilter::round_robin(w, workers, shards));
                for r in &mut e.rules {
                    r.max_groups = r.max_groups.div_ceil(workers);
                }
            }
            engines.push(e);
        }
        let rule_names = cfg.rules.iter().map(|r| r.name.clone()).collect();
        Ok(ShardedEngine {
            engines,
            shards,
            stats: EngineStats::default(),
            rule_names,
            cursor: Default::default(),
        })
    }

    /// Worker engines (threads while running).
    pub fn workers(&self) -> usize {
        self.engines.len()
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The worker engines (read-only views, snapshots).
    pub fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// Declares every worker sequenced (see [`Engine::set_sequenced`]).
    pub(crate) fn set_sequenced(&mut self, on: bool) {
        for e in &mut self.engines {
            e.set_sequenced(on);
        }
    }

    /// The event-time clock (the same in every worker).
    pub fn clock(&self) -> Option<i64> {
        self.engines[0].clock()
    }

    /// Counts an input that failed to decode.
    pub(crate) fn record_invalid(&mut self, reason: InvalidReason) {
        self.stats.events_in += 1;
        self.stats.invalid[reason.index()] += 1;
    }

    /// Engine-wide counters, as one engine would count them.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats.clone();
        s.transitions = self.engines.iter().map(|e| e.stats().transitions).sum();
        s
    }

    /// Counters of rule `i`, summed over the workers.
    pub fn rule_stats(&self, i: usize) -> RuleStats {
        let mut s = RuleStats::default();
        for e in &self.engines {
            s.add(e.rule_stats(i));
        }
        s
    }

    /// Every group of rule `i`, sorted by group.
    pub fn groups(&self, i: usize) -> Vec<GroupView> {
        let mut all: Vec<GroupView> = self.engines.iter().flat_map(|e| e.groups(i)).collect();
        all.sort_by(|a, b| a.group.cmp(&b.group));
        all
    }

    /// The first worker engine (tests look at its rules).
    #[cfg(test)]
    pub(super) fn first_engine(&self) -> &Engine {
        &self.engines[0]
    }

    /// Decode limits derived from the configuration.
    pub fn limits(&self) -> &DecodeLimits {
        self.engines[0].limits()
    }

    /// `engine.allowed_lateness` in ms.
    pub(crate) fn lateness_ms(&self) -> i64 {
        self.engines[0].lateness_ms()
    }

    /// Hashes event ids under `key` in every worker (see
    /// [`Engine::set_dedup_key`]).
    pub(crate) fn set_dedup_key(&mut self, key: crate::dedup::DedupKey) {
        for e in &mut self.engines {
            e.set_dedup_key(key);
        }
    }

    /// Switches every worker to a new configuration (see
    /// [`Engine::reconfigure`]); the worker count and the shards stay.
    pub(crate) fn reconfigure(&mut self, cfg: &Config) -> Result<ReloadSummary, EngineError> {
        let workers = self.engines.len();
        let mut summary = ReloadSummary::default();
        for (w, e) in self.engines.iter_mut().enumerate() {
            let s = e.reconfigure(cfg)?;
            if workers > 1 {
                for r in &mut e.rules {
                    r.max_groups = r.max_groups.div_ceil(workers);
                }
            }
            if w == 0 {
                summary = s;
            }
        }
        self.rule_names = cfg.rules.iter().map(|r| r.name.clone()).collect();
        self.cursor.reloaded();
        Ok(summary)
    }

    /// The current value of rule `rule`'s group `group` at the clock.
    pub(crate) fn current_value(&mut self, rule: &str, group: &Labels) -> Option<f64> {
        let i = self.rule_names.iter().position(|n| n == rule)?;
        self.engines
            .iter_mut()
            .find_map(|e| e.current_value(i, group))
    }

    /// The current root-cause hints of rule `rule`'s group `group` (from
    /// the worker that owns it).
    pub(crate) fn hints(
        &mut self,
        rule: &str,
        group: &Labels,
    ) -> Option<Vec<crate::explain::Hint>> {
        self.engines.iter_mut().find_map(|e| e.hints(rule, group))
    }

    /// Every firing alert instance as a `firing` transition
    /// ([`Engine::firing_transitions`]), in the order they fired — then rule
    /// (configuration order), then group — whatever the workers: an
    /// incident's key is its first alert's, the first to fire.
    pub(crate) fn firing_transitions(&self) -> Vec<crate::alert::Transition> {
        let mut all: Vec<_> = self
            .engines
            .iter()
            .flat_map(|e| e.firing_transitions())
            .collect();
        let names = &self.rule_names;
        all.sort_by_cached_key(|(fired, t)| {
            let r = names.iter().position(|n| *n == t.rule);
            (*fired, r, t.group.clone())
        });
        all.into_iter().map(|(_, t)| t).collect()
    }

    /// The state of every worker as one engine's snapshot (the format of
    /// [`Engine::snapshot`], so a checkpoint restores into any number of
    /// workers).
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        super::snapshot::encode(&self.engines, &self.stats())
    }

    /// Restores a snapshot (of one engine or of any number of workers): every
    /// worker restores it whole and forgets the groups of the shards it does
    /// not own.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<RestoreSummary, SnapshotError> {
        let mut summary = RestoreSummary::default();
        let workers = self.engines.len();
        for (w, e) in self.engines.iter_mut().enumerate() {
            let s = e.restore(bytes)?;
            if w == 0 {
                self.stats = e.stats.clone();
                summary = s;
                summary.groups = 0;
            } else {
                // Counters are the first worker's to carry: summed, the
                // others would count them again.
                e.stats.transitions = 0;
                for r in &mut e.rules {
                    r.stats = RuleStats::default();
                }
            }
            if workers > 1 {
                e.forget_unowned();
            }
            summary.groups += e.rules.iter().map(|r| r.live).sum::<usize>();
        }
        Ok(summary)
    }

    /// An incremental checkpoint: the groups changed since the last one
    /// (all of them with `full`, and whenever the last one cannot be built
    /// on), see `snapshot::incremental`.
    pub fn checkpoint_delta(&mut self, full: bool) -> Result<super::Delta, SnapshotError> {
        let stats = self.stats();
        let shards = self.shards;
        super::snapshot::incremental::delta(
            &mut self.engines,
            shards,
            stats,
            &mut self.cursor,
            full,
        )
    }

    /// Restores what incremental checkpoints stored (into a fresh engine).
    pub fn restore_stored(
        &mut self,
        stored: &super::Stored,
    ) -> Result<RestoreSummary, SnapshotError> {
        let (summary, stats) = super::snapshot::incremental::restore(
            &mut self.engines,
            self.shards,
            &mut self.cursor,
            stored,
        )?;
        self.stats = stats;
        Ok(summary)
    }

    /// Runs `ops` through every worker (each on its own thread when there
    /// are several), appends the merged transitions to `out` and one outcome
    /// per [`Op::Process`] to `outcomes`.
    pub fn run(
        &mut self,
        ops: &[Op<'_, '_>],
        out: &mut Vec<Transition>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if self.engines.len() == 1 {
            let e = &mut self.engines[0];
            // Each run of events between clock moves as one batch.
            let mut events: Vec<&Event<'_>> = Vec::new();
            let mut rest = ops;
            while let Some((first, tail)) = rest.split_first() {
                if let Op::Advance(t) = *first {
                    e.advance_clock(t, out);
                    rest = tail;
                    continue;
                }
                let run = rest
                    .iter()
                    .position(|op| matches!(op, Op::Advance(_)))
                    .unwrap_or(rest.len());
                events.clear();
                events.extend(rest[..run].iter().filter_map(|op| match *op {
                    Op::Process(ev) => Some(ev),
                    Op::Advance(_) => None,
                }));
                let stats = &mut self.stats;
                e.process_batch(&events, out, |_, o, _| {
                    count(stats, o);
                    outcomes.push(o);
                });
                rest = &rest[run..];
            }
            return;
        }
        let routed = plan::route(&mut self.engines, self.shards, ops);
        let results: Vec<WorkerOut> = if ops.len() < PARALLEL_FROM {
            // Too little to be worth a thread hand-off: the same work in turn.
            self.engines
                .iter_mut()
                .enumerate()
                .map(|(w, e)| plan::work(e, ops, &routed, w))
                .collect()
        } else {
            let routed = &routed;
            std::thread::scope(|s| {
                let (first, rest) = self.engines.split_at_mut(1);
                let handles: Vec<_> = rest
                    .iter_mut()
                    .enumerate()
                    .map(|(w, e)| s.spawn(move || plan::work(e, ops, routed, w + 1)))
                    .collect();
                let mut results = vec![plan::work(&mut first[0], ops, routed, 0)];
                for h in handles {
                    match h.join() {
                        Ok(r) => results.push(r),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                results
            })
        };
        // Outcomes: applied by any worker wins over what routing decided
        // (late, else unmatched); a cap's refusal wins over unmatched, as
        // one engine decides over all its rules.
        let mut decided = routed.outcomes;
        for r in &results {
            for &op in &r.2 {
                if decided[op as usize] == Some(Outcome::Unmatched) {
                    decided[op as usize] = Some(Outcome::Overflow);
                }
            }
        }
        for r in &results {
            for &op in &r.1 {
                decided[op as usize] = Some(Outcome::Applied);
            }
        }
        for o in decided.into_iter().flatten() {
            count(&mut self.stats, o);
            outcomes.push(o);
        }
        let mut merged: Vec<(u32, Transition)> = results.into_iter().flat_map(|r| r.0).collect();
        let names = &self.rule_names;
        merged.sort_by_cached_key(|(step, t)| {
            let r = names.iter().position(|n| *n == t.rule);
            (*step, t.at, r, t.group.clone())
        });
        out.extend(merged.into_iter().map(|(_, t)| t));
    }
}

impl ShardedEngine {
    /// `f` on the workers seen as one [`EngineSet`](super::EngineSet).
    fn as_set<R>(&self, f: impl FnOnce(&super::EngineSet<'_>) -> R) -> R {
        let engines: Vec<&Engine> = self.engines.iter().collect();
        f(&super::EngineSet::new(&engines))
    }
}

impl EngineView for ShardedEngine {
    fn clock(&self) -> Option<i64> {
        self.engines[0].clock()
    }
    fn counters(&self) -> EngineStats {
        self.stats()
    }
    fn rule_count(&self) -> usize {
        self.rule_names.len()
    }
    fn rule_config(&self, i: usize) -> &RuleConfig {
        self.engines[0].rule_config(i)
    }
    fn rule_counters(&self, i: usize) -> RuleStats {
        self.rule_stats(i)
    }
    // The workers' groups merge as any set of engines' do.
    fn live_groups(&self, i: usize) -> usize {
        self.as_set(|e| e.live_groups(i))
    }
    fn customers_uncounted(&self, i: usize) -> u64 {
        self.as_set(|e| e.customers_uncounted(i))
    }
    fn top_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        self.as_set(|e| e.top_groups(i, k))
    }
    fn worst_groups(&self, i: usize, k: usize) -> (Vec<GroupView>, usize) {
        self.as_set(|e| e.worst_groups(i, k))
    }
    fn active_groups(&self, i: usize) -> Vec<GroupView> {
        self.as_set(|e| e.active_groups(i))
    }
    fn active_alert_keys(&self) -> Vec<String> {
        self.as_set(|e| e.active_alert_keys())
    }
    fn dedup_len(&self) -> usize {
        // Every worker remembers the same ids.
        self.engines[0].dedup_len()
    }
    fn dedup_evicted(&self) -> u64 {
        self.engines[0].dedup_evicted()
    }
    fn watermark(&self) -> Option<i64> {
        self.engines[0].watermark()
    }
}

impl Engine {
    /// Forgets every group of a shard this engine does not own (after a
    /// restore of the whole state). Their timers go stale with their slots.
    fn forget_unowned(&mut self) {
        let Some(filter) = self.shard.clone() else {
            return;
        };
        super::table::stash(&self.tables, &mut self.rules);
        for rule in &mut self.rules {
            let seed = rule.shard_seed;
            // A response-SLA rule lives whole in one shard (see `Engine::apply`).
            let pinned = rule.backlog.is_some();
            let mut keep = Vec::with_capacity(rule.keys.len());
            for (s, hash, key) in std::mem::take(&mut rule.keys) {
                let gh = if pinned {
                    0
                } else {
                    stable_group_hash(decode_key(&key).into_iter())
                };
                if filter.owns(seed, gh) {
                    keep.push((s, hash, key));
                    continue;
                }
                let slot = &mut rule.slots[s as usize];
                slot.group = None;
                slot.gen = slot.gen.wrapping_add(1);
                rule.free.push(s);
                rule.live -= 1;
            }
            rule.keys = keep;
            if pinned && !filter.owns(seed, 0) {
                // Not ours: no complaints, no early responses.
                rule.reindex(Vec::new());
            }
        }
        super::table::rebuild(&mut self.tables, &mut self.rules);
    }
}

/// Counts an event's merged outcome as one engine does.
fn count(stats: &mut EngineStats, o: Outcome) {
    stats.events_in += 1;
    match o {
        Outcome::Applied => stats.applied += 1,
        Outcome::Duplicate => stats.duplicates += 1,
        Outcome::Late => stats.late += 1,
        Outcome::Unmatched => stats.unmatched += 1,
        Outcome::Overflow => stats.overflow += 1,
    }
}

mod plan;
#[cfg(test)]
mod tests;
