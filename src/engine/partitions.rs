//! The engine as the repartitioning stage sees it
//! ([`crate::repartition`]): which shards an event feeds, and engines that
//! keep an arbitrary set of shards and take a rule's warm-up origin from
//! outside.
//!
//! An instance that reads input partitions does not keep state: it asks
//! [`Engine::shards_of`] which (rule, group) shards an event contributes to
//! and forwards the event to their internal partitions. An instance that owns
//! internal partitions runs an engine built with [`Engine::owning`]: it keeps
//! the (rule, group) pairs of its shards and skips the rest, exactly like a
//! worker of a [`ShardedEngine`](super::ShardedEngine). What is rule-wide —
//! the warm-up origin of a rule with a baseline — is noted from the stream's
//! reports ([`Engine::note_origin`]), since an owner sees only the events of
//! its own shards.

use smallvec::SmallVec;

use super::shard_hash::{self, ShardFilter};
use super::table::attr_id;
use super::{Engine, EngineError};
use crate::config::Config;
use crate::event::Event;

impl Engine {
    /// An engine that keeps the (rule, group) pairs of the shards
    /// (`0..shards`) for which `owned` is true.
    pub fn owning(
        cfg: &Config,
        shards: u32,
        owned: impl Fn(u32) -> bool,
    ) -> Result<Engine, EngineError> {
        let mut e = Engine::new(cfg)?;
        e.shard = Some(ShardFilter::from_fn(shards.max(1), owned));
        Ok(e)
    }

    /// Calls `f(rule, shard)` for every rule the event contributes to (its
    /// selectors match), with the shard (`0..shards`) of the event's group
    /// of that rule. A response-SLA rule's groups all share its shard of the
    /// empty group. Lateness is not judged here: the owner does that.
    pub fn shards_of(&self, ev: &Event<'_>, shards: u32, mut f: impl FnMut(usize, u32)) {
        let shards = shards.max(1);
        let mut values: SmallVec<[&str; 16]> = SmallVec::new();
        let mut stable: SmallVec<[Option<u64>; 8]> = SmallVec::new();
        let mut candidates: SmallVec<[u32; 32]> = SmallVec::new();
        self.router
            .for_each_candidate(&ev.kind, |r| candidates.push(r));
        for r in candidates {
            let rule = &self.rules[r as usize];
            if rule.indicator.contribution(ev).is_none() {
                continue;
            }
            if values.is_empty() {
                values.resize(self.attr_names.len(), "");
                for (k, v) in &ev.attrs {
                    if let Some(id) = attr_id(&self.attr_names, &self.attr_ids, k) {
                        values[id] = v.as_ref();
                    }
                }
                stable.resize(self.tables.len(), None);
            }
            let g = if rule.backlog.is_some() {
                0
            } else {
                let table = &self.tables[rule.group_by_id];
                *stable[rule.group_by_id].get_or_insert_with(|| {
                    shard_hash::stable_group_hash(table.attrs.iter().map(|&i| values[i as usize]))
                })
            };
            f(
                r as usize,
                shard_hash::shard_index(rule.shard_seed, g, shards),
            );
        }
    }

    /// Rules whose value depends on a rule-wide warm-up origin (a baseline).
    pub fn origin_rules(&self) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&r| self.rules[r].shape.m > 0)
            .collect()
    }

    /// Rules that note the panes holding any event of the stream (surges),
    /// with the pane an event at `ts` falls in for each.
    pub fn occupied_panes(&self, ts: i64, mut f: impl FnMut(u32, i64)) {
        for &r in &self.occupied {
            f(r, super::pane::pane_of(ts, self.rules[r as usize].slide));
        }
    }

    /// Notes pane `pane` of rule `r` as holding an event of the stream, as
    /// one engine over the whole stream notes it (from a split stage's
    /// report: an owner sees only its shards' events).
    pub fn note_occupied(&mut self, r: usize, pane: i64) {
        let clock = self.clock;
        if let Some(rule) = self.rules.get_mut(r) {
            // As one engine notes it: unless the clock has left the pane (a
            // report comes before the release of the events it covers, at a
            // clock no later than theirs).
            let last = pane.saturating_mul(rule.slide);
            if clock.is_none_or(|c| rule.occupied_pane(last, c).is_some()) {
                if let Some(due) = rule.note_occupied_pane(pane) {
                    self.wheel_floor = self.wheel_floor.min(due);
                }
            }
        }
    }

    /// When rule `r`'s baseline history starts: the end of its warm-up
    /// origin pane (`None` before its first event).
    pub(crate) fn origin_end(&self, r: usize) -> Option<i64> {
        let rule = self.rules.get(r)?;
        rule.origin.map(|p| p.saturating_mul(rule.slide))
    }

    /// Whether rule `r` has its warm-up origin.
    pub fn has_origin(&self, r: usize) -> bool {
        self.rules.get(r).is_some_and(|x| x.origin.is_some())
    }

    /// Notes rule `r`'s warm-up origin as one engine over the whole stream
    /// notes it: at the first event its selectors match, of time `ts`, when
    /// the clock is that event's time.
    pub fn note_origin(&mut self, r: usize, ts: i64) {
        if let Some(rule) = self.rules.get_mut(r) {
            if rule.backlog.is_none() {
                rule.note_origin(ts, ts);
            }
        }
    }
}
