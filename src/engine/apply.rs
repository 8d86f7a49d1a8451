//! Applying one event: routing (deduplication, the rules whose selectors it
//! matches and what it contributes to each, its grouping values resolved
//! once) and then each matched rule's work (group lookup or creation, the
//! window, the evaluation).
//!
//! The two halves are separate so that a [`ShardedEngine`](super::ShardedEngine)
//! routes an event once, on the caller's thread, and hands each worker only
//! the [`Hit`]s of the (rule, group) pairs its shards own.

use std::cmp::Reverse;

use smallvec::SmallVec;

use super::evaluate::{evaluate, schedule_pane};
use super::key::{encode_key, group_hash};
use super::pane::boundary_time;
use super::shard_hash::stable_group_hash;
use super::table::{attr_id, NONE};
use super::{Engine, Outcome};
use crate::alert::Transition;
use crate::event::Event;
use crate::explain::Explain;
use crate::indicator::{customer_hash, Contribution};
use crate::window::Region;

/// What an event contributes to one rule it matches.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub(super) rule: u32,
    pub(super) contrib: Contribution,
}

/// How an event's hits went in one engine.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Applied {
    /// Some hit reached a group.
    pub(super) applied: bool,
    /// Some hit was late for its rule.
    pub(super) late: bool,
    /// Some hit was refused by a cap (`max_groups_per_rule`, the backlog's).
    pub(super) overflow: bool,
}

/// Grouping values of one event by attribute id ("" where absent).
pub(super) type Values<'v> = SmallVec<[&'v str; 16]>;

/// An event's routing (see [`Engine::route_ahead`]).
#[derive(Debug, Default)]
pub(super) struct Routed<'v> {
    hits: SmallVec<[Hit; 32]>,
    values: Values<'v>,
    /// Per group table (empty: none looked at yet).
    tables: SmallVec<[Ahead; 8]>,
    /// The keyed hash of the event's id (deduplication on, routed ahead).
    id_hash: Option<u64>,
}

/// What was found ahead of an event in one group table.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ahead {
    /// The event's key hash, if a hit uses the table.
    hash: Option<u64>,
    /// The key's entry ([`NONE`]: not in the table) and the table's
    /// [`GroupTable::version`](super::table::GroupTable::version) when it
    /// was looked up: still the answer if the version is.
    entry: Option<(u32, u64)>,
}

/// Makes `v` hold `n` copies of `x`, reusing what it holds: the same as
/// `clear` then `resize`, without `resize`'s general path (a few items,
/// every event).
#[inline]
fn refill<A: smallvec::Array>(v: &mut SmallVec<A>, n: usize, x: A::Item)
where
    A::Item: Copy,
{
    v.truncate(n);
    v.fill(x);
    while v.len() < n {
        v.push(x);
    }
}

impl Engine {
    /// Applies an event at the current clock (which it does not move; before
    /// the first clock advance the clock starts at the event's time).
    pub(crate) fn apply(&mut self, ev: &Event<'_>, out: &mut Vec<Transition>) -> Outcome {
        let mut routed = Routed::default();
        self.apply_routed(ev, &mut routed, false, out)
    }

    /// [`Engine::apply`] of an event whose routing `routed` holds when
    /// `ready` (see [`Engine::route_ahead`]; else it is routed here, after
    /// deduplication).
    pub(super) fn apply_routed<'v>(
        &mut self,
        ev: &'v Event<'_>,
        routed: &mut Routed<'v>,
        ready: bool,
        out: &mut Vec<Transition>,
    ) -> Outcome {
        self.stats.events_in += 1;
        let clock = *self.clock.get_or_insert(ev.ts);
        // Before the duplicate check: a split stage, which keeps no dedup
        // memory, reports a repeated id's pane too.
        self.note_occupancy(ev.ts, clock);
        let duplicate = match routed.id_hash {
            Some(h) if ready => self.dedup.check_and_insert_hash(h, clock),
            _ => self.dedup.check_and_insert(&ev.id, clock),
        };
        if duplicate {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
        }
        if !ready {
            self.route(ev, |h| routed.hits.push(h));
            if routed.hits.is_empty() {
                self.stats.unmatched += 1;
                return Outcome::Unmatched;
            }
            routed.values.resize(self.attr_count(), "");
            self.resolve_values(ev, &mut routed.values);
            routed.tables.clear();
            routed.tables.resize(self.tables.len(), Ahead::default());
        }
        let Routed {
            hits,
            values,
            tables: ahead,
            ..
        } = routed;
        if hits.is_empty() {
            self.stats.unmatched += 1;
            return Outcome::Unmatched;
        }
        if let Some(w) = self.slices.as_deref_mut() {
            w.observe(ev.ref_id.is_some(), hits, values);
        }
        if self.shard.is_some() {
            self.keep_owned(ev, clock, hits, values);
            if hits.is_empty() {
                self.stats.unmatched += 1;
                return Outcome::Unmatched;
            }
        }
        let done = self.apply_hits(ev, hits, values, ahead, out);
        if done.applied {
            self.stats.applied += 1;
            Outcome::Applied
        } else if done.late {
            self.stats.late += 1;
            Outcome::Late
        } else if done.overflow {
            self.stats.overflow += 1;
            Outcome::Overflow
        } else {
            // Selected, but it changed nothing (a second response to an
            // answered complaint, a complaint booked already).
            self.stats.unmatched += 1;
            Outcome::Unmatched
        }
    }

    /// Notes an event at `ts` (duplicate or not) in the surge rules' pane
    /// occupancy, at `clock`, for each rule whose clock has not left its
    /// pane ([`RuleRt::occupied_pane`]).
    #[inline]
    pub(super) fn note_occupancy(&mut self, ts: i64, clock: i64) {
        for &r in &self.occupied {
            let rule = &mut self.rules[r as usize];
            if let Some(due) = rule
                .occupied_pane(ts, clock)
                .and_then(|p| rule.note_occupied_pane(p))
            {
                self.wheel_floor = self.wheel_floor.min(due);
            }
        }
    }

    /// Whether [`Engine::note_occupancy`] of an event at `ts` could note a
    /// pane other than the last one each rule noted through this call
    /// (`last`: per surge rule, kept by the caller across a batch).
    pub(super) fn occupancy_news(&self, ts: i64, clock: i64, last: &mut Vec<i64>) -> bool {
        last.resize(self.occupied.len(), i64::MIN);
        let mut news = false;
        for (k, &r) in self.occupied.iter().enumerate() {
            if let Some(p) = self.rules[r as usize].occupied_pane(ts, clock) {
                news |= last[k] != p;
                last[k] = p;
            }
        }
        news
    }

    /// Routes an event ahead of its application, into `routed` (cleared
    /// first): its hits, its grouping values and the key hash of each group
    /// table a hit uses; and asks the memory for the index line of each
    /// such key. Reads the engine only: applying the event later with
    /// [`Engine::apply_routed`] gives exactly what [`Engine::apply`] gives.
    /// `ahead`: how many events come before this one.
    pub(super) fn route_ahead<'v>(&self, ev: &'v Event<'_>, routed: &mut Routed<'v>, ahead: usize) {
        routed.hits.clear();
        routed.id_hash = self.dedup.hash_of(&ev.id);
        if let Some(h) = routed.id_hash {
            self.dedup.prefetch(h, ahead);
        }
        self.route(ev, |h| routed.hits.push(h));
        if routed.hits.is_empty() {
            routed.values.clear();
            routed.tables.clear();
            return;
        }
        refill(&mut routed.values, self.attr_count(), "");
        self.resolve_values(ev, &mut routed.values);
        refill(&mut routed.tables, self.tables.len(), Ahead::default());
        for h in &routed.hits {
            let t = self.rules[h.rule as usize].group_by_id;
            if routed.tables[t].hash.is_none() {
                let table = &self.tables[t];
                let hash = group_hash(
                    &self.hasher,
                    table.attrs.iter().map(|&i| routed.values[i as usize]),
                );
                table.prefetch_index(hash);
                routed.tables[t].hash = Some(hash);
            }
        }
    }

    /// Second step ahead: asks the memory for the entry each of the event's
    /// keys most likely has (its index line should be here by now).
    pub(super) fn prefetch_entries(&self, routed: &Routed<'_>) {
        for (t, ahead) in routed.tables.iter().enumerate() {
            if let Some(hash) = ahead.hash {
                self.tables[t].prefetch_entry(hash);
            }
        }
    }

    /// Last step ahead: looks each key up (index and entries should be here
    /// by now; the answer is kept for the application) and asks the memory
    /// for the group of each hit whose entry is found.
    pub(super) fn prefetch_groups(&self, routed: &mut Routed<'_>) {
        for (t, ahead) in routed.tables.iter_mut().enumerate() {
            if let Some(hash) = ahead.hash {
                let table = &self.tables[t];
                let e = table.find(hash, &routed.values).unwrap_or(NONE);
                ahead.entry = Some((e, table.version()));
            }
        }
        for h in &routed.hits {
            let rule = &self.rules[h.rule as usize];
            let Some(Ahead {
                entry: Some((e, _)),
                ..
            }) = routed.tables.get(rule.group_by_id)
            else {
                continue;
            };
            if *e == NONE {
                continue;
            }
            let slot = self.tables[rule.group_by_id].slot(*e, rule.member);
            if slot != NONE {
                rule.prefetch_slot(slot);
            }
        }
    }

    /// Calls `f` with each rule the event contributes to, in rule order.
    #[inline]
    pub(super) fn route(&self, ev: &Event<'_>, mut f: impl FnMut(Hit)) {
        let rules = &self.rules;
        self.router.for_each_candidate(&ev.kind, |r| {
            if let Some(contrib) = rules[r as usize].indicator.contribution(ev) {
                f(Hit { rule: r, contrib });
            }
        });
    }

    /// An engine that keeps some shards only (see `partitions.rs`): drops
    /// the hits of pairs it does not own. A dropped in-time hit still notes
    /// its rule's warm-up origin, which is rule-wide.
    fn keep_owned(
        &mut self,
        ev: &Event<'_>,
        clock: i64,
        hits: &mut SmallVec<[Hit; 32]>,
        values: &[&str],
    ) {
        let Some(filter) = &self.shard else {
            return;
        };
        let watermark = clock.saturating_sub(self.late_margin());
        let mut stable: SmallVec<[Option<u64>; 8]> = SmallVec::new();
        stable.resize(self.tables.len(), None);
        let (rules, tables) = (&mut self.rules, &self.tables);
        hits.retain(|h| {
            let rule = &mut rules[h.rule as usize];
            // A response-SLA rule matches responses to complaints by id
            // across its groups: all its groups share one shard.
            let pinned = rule.backlog.is_some();
            let g = if pinned {
                0
            } else {
                let attrs = &tables[rule.group_by_id].attrs;
                *stable[rule.group_by_id].get_or_insert_with(|| {
                    stable_group_hash(attrs.iter().map(|&i| values[i as usize]))
                })
            };
            if filter.owns(rule.shard_seed, g) {
                return true;
            }
            if !pinned && rule.in_time(ev.ts, watermark) {
                rule.note_origin(ev.ts, clock);
            }
            false
        });
    }

    /// Number of grouping attributes (the length of [`Values`]).
    pub(super) fn attr_count(&self) -> usize {
        self.attr_names.len()
    }

    /// Writes the event's grouping values by attribute id into `values`
    /// ([`Engine::attr_count`] of them, each "" until set).
    #[inline]
    pub(super) fn resolve_values<'v>(&self, ev: &'v Event<'_>, values: &mut [&'v str]) {
        for (k, v) in &ev.attrs {
            if let Some(id) = attr_id(&self.attr_names, &self.attr_ids, k) {
                values[id] = v.as_ref();
            }
        }
    }

    /// Applies the event's `hits` (in rule order) at the current clock;
    /// `values` are its grouping values (see [`Engine::resolve_values`]).
    /// `ahead`: per group table, what was found ahead of the event (empty:
    /// nothing); it also keeps each key's entry once looked up here, valid
    /// while the table's version is.
    pub(super) fn apply_hits(
        &mut self,
        ev: &Event<'_>,
        hits: &[Hit],
        values: &[&str],
        ahead: &mut [Ahead],
        out: &mut Vec<Transition>,
    ) -> Applied {
        let clock = *self.clock.get_or_insert(ev.ts);
        let watermark = clock.saturating_sub(self.late_margin());
        let mut done = Applied::default();
        // Rules the event was too old for (noted as late for them alone if
        // another rule takes it).
        let mut late_for: SmallVec<[u32; 8]> = SmallVec::new();
        // Per group table, when `ahead` has none.
        let mut own: SmallVec<[Ahead; 8]> = SmallVec::new();
        let ahead = if ahead.len() < self.tables.len() {
            own.resize(self.tables.len(), Ahead::default());
            &mut own[..]
        } else {
            ahead
        };
        for &Hit { rule: r, contrib } in hits {
            let rule = &mut self.rules[r as usize];
            rule.selected[0] += 1;
            rule.stats.selected += 1;
            rule.selected[1] += u64::from(contrib.signal);
            rule.selected[2] += u64::from(contrib.second);
            let in_time = rule.in_time(ev.ts, watermark);
            if !in_time {
                rule.stats.late += 1;
                done.late = true;
                late_for.push(r);
                continue;
            }
            if contrib.response {
                // The backlog's cap counts a refused response in its stats.
                let refused = rule.stats.backlog_overflow;
                done.applied |= self.answer(r, ev, clock, out);
                done.overflow |= self.rules[r as usize].stats.backlog_overflow > refused;
                continue;
            }
            let refused = rule.stats.backlog_overflow;
            let Some((contrib, early)) = rule.admit(contrib, ev) else {
                done.overflow |= rule.stats.backlog_overflow > refused;
                continue;
            };
            rule.note_origin(ev.ts, clock);
            let table = &mut self.tables[rule.group_by_id];
            let known = &mut ahead[rule.group_by_id];
            let hash = *known.hash.get_or_insert_with(|| {
                group_hash(
                    &self.hasher,
                    table.attrs.iter().map(|&i| values[i as usize]),
                )
            });
            let mut e = match known.entry {
                // Looked up (ahead, or for an earlier hit), and the table
                // has not changed since.
                Some((e, version)) if version == table.version() => e,
                _ => {
                    let e = table.find(hash, values).unwrap_or(NONE);
                    known.entry = Some((e, table.version()));
                    e
                }
            };
            let mut slot = if e == NONE {
                NONE
            } else {
                table.slot(e, rule.member)
            };
            if slot == NONE {
                if rule.live >= rule.max_groups {
                    rule.stats.group_overflow += 1;
                    done.overflow = true;
                    continue;
                }
                if e == NONE {
                    let key = encode_key(table.attrs.iter().map(|&i| values[i as usize]));
                    e = table.insert(hash, key);
                    known.entry = Some((e, table.version()));
                }
                slot = rule.create_group(table.key(e), e, ev.ts, clock);
                table.set(e, rule.member, slot);
            }
            let gen = rule.slots[slot as usize].gen;
            rule.dirty.mark(slot);
            done.applied = true;
            let pane = rule.pane_at(ev.ts);
            let now_end = rule.pane_at(clock);
            let customer = if contrib.customer {
                ev.customer_id.as_deref().map(customer_hash)
            } else {
                None
            };
            let (shape, season) = (rule.shape, rule.indicator.season());
            let Some(group) = rule.slots[slot as usize].group.as_mut() else {
                continue;
            };
            if let (Some(p), Some(s)) = (group.season.as_deref_mut(), season) {
                p.add(s, pane, shape.n, contrib.delta[0]);
            }
            // Bring the window to the clock first, so the pane lands in the right region.
            group.window.advance(now_end, &shape);
            let uncounted = customer.map(|_| group.window.customers_uncounted());
            let added = group.window.add(pane, contrib.delta, customer, &shape);
            if let Some(before) = uncounted {
                let after = group.window.customers_uncounted();
                rule.customers_uncounted += after.saturating_sub(before);
            }
            let Some((region, created)) = added else {
                // Older than anything the rule keeps: nothing to store.
                // Evicting bumps the table's version: the next rule looks
                // the key up again.
                rule.maybe_evict(slot, &mut self.tables[rule.group_by_id]);
                continue;
            };
            if contrib.signal {
                if let Some(spec) = rule.explain.as_ref() {
                    // Allocated at the group's first signal event: groups
                    // that only ever see denominator events keep nothing.
                    let x = group.explain.get_or_insert_with(Explain::new);
                    x.add(spec, pane, now_end, |name| ev.attr(name));
                }
            }
            rule.book(slot, ev, early.is_some());
            if created {
                let (timers, floor) = (&mut self.timers, &mut self.wheel_floor);
                schedule_pane(rule, timers, floor, r, pane, region, now_end, slot, gen);
            }
            // A surge also changes when its baseline does.
            if region == Region::Current || (region == Region::Baseline && shape.m > 0) {
                let signal = contrib.signal.then_some(ev.id.as_ref());
                // A surge's warm-up may schedule the next boundary.
                let due = boundary_time(now_end.saturating_add(1), rule.slide);
                self.wheel_floor = self.wheel_floor.min(due);
                if let Some(t) = evaluate(
                    rule,
                    &self.tables[rule.group_by_id],
                    slot,
                    clock,
                    false,
                    signal,
                    self.sample_ids,
                    &mut self.stats,
                    out,
                ) {
                    self.timers.push(Reverse((t, r, slot, gen)));
                }
            }
            // A `response_time` complaint an early response answered: its time.
            if let Some(at) = early {
                self.first_response(r, slot, ev.ts, at, clock, out);
            }
        }
        if done.applied {
            for r in late_for {
                self.rules[r as usize].late_alone += 1;
            }
        }
        done
    }
}
