//! Engine checkpoints: the whole state of the core as bytes, and back.
//!
//! A snapshot holds, per rule, every group's window panes, alert instance
//! (phase, severity, since, dedup key, deadlines, keep-firing timer) and the
//! rule's timers, plus the engine clock, the timer heap, the counters and the
//! dedup memory. Restoring it into an engine built from the same rules gives an
//! engine that continues exactly as the one that wrote it: the same
//! transitions, times and `dedup_key`s (tested against an uninterrupted run).
//!
//! Rules are matched by name and by their configuration: a rule whose
//! definition changed since the snapshot starts empty (its alerts are gone; the
//! incident stage closes what they had open), the others keep their state —
//! and so does a rule only retuned (its `thresholds`, `clear`, `for` or
//! `keep_firing_for` changed), matched by its computation id as a reload
//! retunes it in place.
//!
//! The encoding is bincode of the structs below, behind a versioned header
//! with a SHA-256 checksum (`crate::state` writes and checks it).

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::rule::{GroupOut, Slot, SlotIn, SlotOut};
use super::table::GroupTable;
use super::{Engine, EngineStats, RuleStats};
use crate::engine::occupancy::Occupancy;
use crate::engine::wheel::Wheel;

pub(super) mod dirty;
pub(super) mod incremental;
#[cfg(test)]
mod tests_incremental;
#[cfg(test)]
mod tests_layout;
#[cfg(test)]
mod tests_retuned;

/// Version of the snapshot layout; bump on any change to the structs below
/// (3: `EngineStats::invalid` counts `clock_jump` too; 4: a group keeps a
/// seasonal surge's profile, `engine::season`; 5: a group's per-value
/// counts for root-cause hints, `explain`; 6: the response-SLA backlog —
/// groups' books, rules' early responses and response counters; 7: a
/// group's book keeps first-response times, `response_time`). Not bumped
/// for `computations`: a trailing field, which an older crisiswatch reads
/// past and this one does without (`EngineSnapshotBefore`); nor for
/// `occupancy`, after it (`EngineSnapshotNoOccupancy`).
pub const SNAPSHOT_VERSION: u32 = 7;

/// Errors decoding a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not decode.
    #[error("engine snapshot does not decode: {0}")]
    Decode(String),
    /// Encoding failed (out of memory, or a bug).
    #[error("engine snapshot does not encode: {0}")]
    Encode(String),
}

#[derive(Deserialize)]
struct EngineSnapshot {
    clock: Option<i64>,
    timers: Vec<(i64, u32, u32, u32)>,
    stats: EngineStats,
    dedup_order: Vec<(i64, u64)>,
    dedup_evicted_early: u64,
    rules: Vec<RuleSnapshot>,
    /// Per rule, its computation id (`incremental::computation_id`): a rule
    /// only retuned since the snapshot restores by it. Last, so that an
    /// older crisiswatch still reads the snapshot; empty in one it wrote.
    computations: Vec<[u8; 16]>,
    /// Per rule, a surge's pane occupancy (`engine::occupancy`). After
    /// `computations`, for the same reason; empty in an older snapshot.
    occupancy: Vec<Option<Occupancy>>,
}

/// [`EngineSnapshot`] as written before `occupancy`.
#[derive(Deserialize)]
struct EngineSnapshotNoOccupancy {
    clock: Option<i64>,
    timers: Vec<(i64, u32, u32, u32)>,
    stats: EngineStats,
    dedup_order: Vec<(i64, u64)>,
    dedup_evicted_early: u64,
    rules: Vec<RuleSnapshot>,
    computations: Vec<[u8; 16]>,
}

/// [`EngineSnapshot`] as written before `computations`.
#[derive(Deserialize)]
struct EngineSnapshotBefore {
    clock: Option<i64>,
    timers: Vec<(i64, u32, u32, u32)>,
    stats: EngineStats,
    dedup_order: Vec<(i64, u64)>,
    dedup_evicted_early: u64,
    rules: Vec<RuleSnapshot>,
}

impl EngineSnapshot {
    fn decode(bytes: &[u8]) -> Result<EngineSnapshot, SnapshotError> {
        bincode::deserialize(bytes).or_else(|e| {
            if let Ok(s) = bincode::deserialize::<EngineSnapshotNoOccupancy>(bytes) {
                return Ok(EngineSnapshot {
                    clock: s.clock,
                    timers: s.timers,
                    stats: s.stats,
                    dedup_order: s.dedup_order,
                    dedup_evicted_early: s.dedup_evicted_early,
                    rules: s.rules,
                    computations: s.computations,
                    occupancy: Vec::new(),
                });
            }
            let s: EngineSnapshotBefore =
                bincode::deserialize(bytes).map_err(|_| SnapshotError::Decode(e.to_string()))?;
            Ok(EngineSnapshot {
                clock: s.clock,
                timers: s.timers,
                stats: s.stats,
                dedup_order: s.dedup_order,
                dedup_evicted_early: s.dedup_evicted_early,
                rules: s.rules,
                computations: Vec::new(),
                occupancy: Vec::new(),
            })
        })
    }
}

/// A restored rule's pane occupancy: the snapshot's, else (a snapshot
/// written before occupancy was kept) every pane up to the snapshot's clock
/// counts as history, as it did then.
pub(super) fn restore_occupancy(
    rule: &mut super::RuleRt,
    stored: Option<&Option<Occupancy>>,
    clock: Option<i64>,
) {
    let slide = rule.slide;
    rule.silence_memo.set(super::silence::NO_MEMO);
    // The silence check runs from the next boundary on, as it does in the
    // engine that wrote the checkpoint.
    rule.silence_next = i64::MAX;
    if let Some(c) = clock {
        rule.arm_silence_check(super::pane::pane_of(c, slide));
    }
    let Some(o) = rule.occupancy.as_deref_mut() else {
        return;
    };
    // The checkpoint's ring, carried into this one's size (it differs when
    // `engine.silence_after` changed); else (none, or not well formed)
    // every pane up to the checkpoint's clock counts as history.
    match stored
        .and_then(|s| s.as_ref())
        .and_then(|s| o.carried_from(s))
    {
        Some(c) => *o = c,
        None => {
            *o = Occupancy::new_like(o);
            if let Some(c) = clock {
                o.assume_occupied_through(super::pane::pane_of(c, slide));
            }
        }
    }
}

#[derive(Deserialize)]
struct RuleSnapshot {
    name: String,
    /// The rule's configuration as text: a changed rule does not restore.
    definition: String,
    origin: Option<i64>,
    wheel: Wheel,
    slots: Vec<SlotIn>,
    free: Vec<u32>,
    live: usize,
    stats: RuleStats,
    /// `unanswered` rules: responses that came before their complaint.
    backlog_early: Vec<(i64, Box<str>)>,
}

/// What a restore kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Rules whose state was restored.
    pub(crate) rules_restored: Vec<String>,
    /// Rules in the snapshot that are gone or changed (their state dropped).
    pub(crate) rules_dropped: Vec<String>,
    /// Restored rules whose thresholds, `clear`, `for` or `keep_firing_for`
    /// changed since the checkpoint: kept with their windows and alerts,
    /// judged by the new settings (also in `rules_restored`).
    pub(crate) rules_retuned: Vec<String>,
    /// Live groups restored.
    pub groups: usize,
}

/// What a rule computes, for matching a snapshot's rules with the current
/// ones: its configuration less what only people read (description, runbook,
/// dashboard), as a configuration reload compares them — a runbook edit keeps
/// the rule's restored state.
fn definition(rule: &super::RuleRt) -> String {
    let computed = crate::config::RuleConfig {
        description: String::new(),
        runbook: None,
        dashboard: None,
        ..rule.cfg.clone()
    };
    format!("{computed:?}")
}

impl Engine {
    /// The engine's whole state as bytes (see the module docs).
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        encode(std::slice::from_ref(self), &self.stats)
    }

    /// Replaces the engine's state by a snapshot's. Rules are matched by name
    /// and definition; the others start empty.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<RestoreSummary, SnapshotError> {
        let mut snap = EngineSnapshot::decode(bytes)?;
        let mut summary = RestoreSummary::default();
        // Old rule index → new rule index: the same rule, else (by name) the
        // same computation judged by other settings.
        let mut targets: Vec<Option<usize>> = snap
            .rules
            .iter()
            .map(|rs| {
                self.rules
                    .iter()
                    .position(|r| *r.name == *rs.name && definition(r) == rs.definition)
            })
            .collect();
        let mut retuned = vec![false; targets.len()];
        if snap.computations.len() == snap.rules.len() {
            for (si, rs) in snap.rules.iter().enumerate() {
                if targets[si].is_some() {
                    continue;
                }
                let found = self.rules.iter().enumerate().position(|(i, r)| {
                    *r.name == *rs.name
                        && !targets.contains(&Some(i))
                        && incremental::computation_id(r) == snap.computations[si]
                });
                targets[si] = found;
                retuned[si] = found.is_some();
            }
        }
        let mut map: Vec<Option<u32>> = Vec::with_capacity(snap.rules.len());
        // The keys of the groups the rules keep (those not in the snapshot).
        super::table::stash(&self.tables, &mut self.rules);
        let (occupancy, clock) = (std::mem::take(&mut snap.occupancy), snap.clock);
        for (si, ((rs, target), retuned)) in
            snap.rules.into_iter().zip(targets).zip(retuned).enumerate()
        {
            if retuned {
                summary.rules_retuned.push(rs.name.clone());
            }
            let Some(i) = target else {
                summary.rules_dropped.push(rs.name);
                map.push(None);
                continue;
            };
            let rule = &mut self.rules[i];
            rule.origin = rs.origin;
            restore_occupancy(rule, occupancy.get(si), clock);
            rule.wheel = rs.wheel;
            rule.keys.clear();
            rule.slots = Vec::with_capacity(rs.slots.len());
            for (s, slot) in rs.slots.into_iter().enumerate() {
                let group = slot.group.map(|g| {
                    let (g, key, hash) = g.into_parts();
                    rule.keys.push((s as u32, hash, key));
                    g
                });
                rule.slots.push(Slot {
                    gen: slot.gen,
                    group,
                });
            }
            rule.free = rs.free;
            rule.live = rs.live;
            rule.stats = rs.stats;
            rule.reindex(rs.backlog_early);
            summary.groups += rule.live;
            summary.rules_restored.push(rs.name);
            map.push(Some(i as u32));
        }
        // The shared group tables, from the restored groups.
        super::table::rebuild(&mut self.tables, &mut self.rules);
        self.wheel_floor = i64::MIN;
        self.clock = snap.clock;
        self.stats = snap.stats;
        self.dedup
            .restore(snap.dedup_order, snap.dedup_evicted_early);
        self.timers.clear();
        for (t, r, slot, gen) in snap.timers {
            if let Some(Some(nr)) = map.get(r as usize) {
                self.timers.push(Reverse((t, *nr, slot, gen)));
            }
        }
        Ok(summary)
    }

    /// Dedup keys of every active alert instance (pending or firing).
    pub(crate) fn active_alert_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for rule in &self.rules {
            for slot in &rule.slots {
                if let Some(k) = slot
                    .group
                    .as_ref()
                    .and_then(|g| g.instance.as_deref())
                    .and_then(|i| i.key.as_deref())
                {
                    keys.push(k.to_string());
                }
            }
        }
        keys.sort_unstable();
        keys
    }

    /// A `firing` transition for every alert instance that is firing now,
    /// as the engine holds it (rule order, then slot order), each with when
    /// it fired as far as the state tells (its start plus the rule's `for`,
    /// not past the clock): what a start restored from a checkpoint hands an
    /// outbox that has never seen those alerts (`outbox.sqlite` moved aside)
    /// so their incidents are known again and resolve. `at` is the clock
    /// (dated when it fired, an alert firing for days would be owed a
    /// progress update for every `update_interval` since); `value` the
    /// latest evaluated one; no root-cause hints.
    pub(crate) fn firing_transitions(&self) -> Vec<(i64, crate::alert::Transition)> {
        let mut out = Vec::new();
        let Some(clock) = self.clock else {
            return out;
        };
        for rule in &self.rules {
            let table = &self.tables[rule.group_by_id];
            for g in rule.slots.iter().filter_map(|s| s.group.as_ref()) {
                let crate::alert::Phase::Firing {
                    since, severity, ..
                } = g.phase
                else {
                    continue;
                };
                let Some(inst) = g.instance.as_deref() else {
                    continue;
                };
                let Some(key) = inst.key.as_deref() else {
                    continue;
                };
                let group = rule
                    .group_by
                    .iter()
                    .zip(super::key::decode_key(table.key(g.entry)))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let fired = since.saturating_add(rule.policy.for_ms.max(0)).min(clock);
                out.push((
                    fired,
                    crate::alert::Transition {
                        rule: rule.name.to_string(),
                        group,
                        state: crate::alert::State::Firing,
                        severity,
                        at: clock,
                        value: g.value,
                        threshold: rule.policy.threshold(severity),
                        clear: rule.policy.clear,
                        dedup_key: key.to_string(),
                        started_at: since,
                        window_ms: rule.window_ms,
                        sample_event_ids: inst.samples.iter().map(|s| s.to_string()).collect(),
                        hints: Vec::new(),
                    },
                ));
            }
        }
        out
    }

    /// Live groups per rule: (rule name, groups).
    pub fn groups_per_rule(&self) -> Vec<(String, usize)> {
        self.rules
            .iter()
            .map(|r| (r.name.to_string(), r.live))
            .collect()
    }
}

/// The state of `engines` — one engine, or the workers of a
/// [`ShardedEngine`](super::ShardedEngine), whose groups are disjoint — as the
/// snapshot of one engine holding all their groups: each worker's slots follow
/// the previous workers' (timers and wheel entries moved with them), counters
/// are summed, and what is rule-wide (clock, dedup memory, origins) is the
/// first worker's, identical in all. `stats` are the engine-wide counters.
pub(super) fn encode(engines: &[Engine], stats: &EngineStats) -> Result<Vec<u8>, SnapshotError> {
    /// The slots of one rule over every worker, as one sequence (each
    /// worker's with the group table holding its keys).
    struct Slots<'a>(Vec<(&'a [Slot], &'a GroupTable)>);
    impl Serialize for Slots<'_> {
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let total = self.0.iter().map(|p| p.0.len()).sum();
            let mut seq = ser.serialize_seq(Some(total))?;
            for (slots, table) in &self.0 {
                for s in slots.iter() {
                    seq.serialize_element(&SlotOut {
                        gen: s.gen,
                        group: s
                            .group
                            .as_ref()
                            .map(|g| GroupOut::new(g, table.key(g.entry), table.hash(g.entry))),
                    })?;
                }
            }
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct Ref<'a> {
        clock: Option<i64>,
        timers: Vec<(i64, u32, u32, u32)>,
        stats: &'a EngineStats,
        dedup_order: Vec<(i64, u64)>,
        dedup_evicted_early: u64,
        rules: Vec<RuleRef<'a>>,
        computations: Vec<[u8; 16]>,
        occupancy: Vec<Option<&'a Occupancy>>,
    }
    #[derive(Serialize)]
    struct RuleRef<'a> {
        name: &'a str,
        definition: String,
        origin: Option<i64>,
        wheel: std::borrow::Cow<'a, Wheel>,
        slots: Slots<'a>,
        free: std::borrow::Cow<'a, [u32]>,
        live: usize,
        stats: std::borrow::Cow<'a, RuleStats>,
        backlog_early: Vec<(i64, Box<str>)>,
    }
    let first = &engines[0];
    // offsets[r][w]: where worker w's slots of rule r start.
    let offsets: Vec<Vec<u32>> = (0..first.rules.len())
        .map(|r| {
            let mut off = 0u32;
            engines
                .iter()
                .map(|e| {
                    let o = off;
                    off += e.rules[r].slots.len() as u32;
                    o
                })
                .collect()
        })
        .collect();
    let mut timers: Vec<(i64, u32, u32, u32)> = Vec::new();
    for (w, e) in engines.iter().enumerate() {
        timers.extend(e.timers.iter().map(|Reverse((t, r, slot, gen))| {
            let off = offsets.get(*r as usize).map_or(0, |o| o[w]);
            (*t, *r, slot + off, *gen)
        }));
    }
    let mut rules = Vec::with_capacity(first.rules.len());
    for (r, rule) in first.rules.iter().enumerate() {
        let offsets = &offsets[r];
        let single = engines.len() == 1;
        let wheel = if single {
            std::borrow::Cow::Borrowed(&rule.wheel)
        } else {
            let parts = engines
                .iter()
                .zip(offsets.iter())
                .map(|(e, &o)| (&e.rules[r].wheel, o));
            let slide = rule.slide;
            std::borrow::Cow::Owned(Wheel::merged(parts, |q, slot, gen| {
                timers.push((super::pane::boundary_time(q, slide), r as u32, slot, gen));
            }))
        };
        let (free, stats) = if single {
            (
                std::borrow::Cow::Borrowed(&rule.free[..]),
                std::borrow::Cow::Borrowed(&rule.stats),
            )
        } else {
            let mut free = Vec::new();
            let mut st = RuleStats::default();
            for (e, &o) in engines.iter().zip(offsets.iter()) {
                let er = &e.rules[r];
                free.extend(er.free.iter().map(|s| s + o));
                st.add(&er.stats);
            }
            (std::borrow::Cow::Owned(free), std::borrow::Cow::Owned(st))
        };
        rules.push(RuleRef {
            name: &rule.name,
            definition: definition(rule),
            // The same in every worker (a response-SLA rule's: its one owner's).
            origin: engines.iter().filter_map(|e| e.rules[r].origin).min(),
            wheel,
            slots: Slots(
                engines
                    .iter()
                    .map(|e| {
                        let rule = &e.rules[r];
                        (&rule.slots[..], &e.tables[rule.group_by_id])
                    })
                    .collect(),
            ),
            free,
            live: engines.iter().map(|e| e.rules[r].live).sum(),
            stats,
            // Held by the one worker that owns a response-SLA rule.
            backlog_early: engines
                .iter()
                .flat_map(|e| {
                    e.rules[r]
                        .backlog
                        .as_ref()
                        .map(|b| b.early())
                        .unwrap_or_default()
                })
                .collect(),
        });
    }
    timers.sort_unstable();
    let (dedup_order, dedup_evicted_early) = first.dedup.export();
    let r = Ref {
        clock: first.clock,
        timers,
        stats,
        dedup_order,
        dedup_evicted_early,
        rules,
        computations: first
            .rules
            .iter()
            .map(incremental::computation_id)
            .collect(),
        // Every worker sees every event: the first's is everyone's.
        occupancy: first.rules.iter().map(|r| r.occupancy.as_deref()).collect(),
    };
    bincode::serialize(&r).map_err(|e| SnapshotError::Encode(e.to_string()))
}

/// Bytes of the trailing `occupancy` field an engine's snapshot and
/// checkpoint record end with (tests of the older layouts cut it).
#[cfg(test)]
pub(super) fn occupancy_tail(engine: &Engine) -> usize {
    let o: Vec<Option<&Occupancy>> = engine
        .rules
        .iter()
        .map(|r| r.occupancy.as_deref())
        .collect();
    bincode::serialized_size(&o).map_or(0, |n| n as usize)
}

#[cfg(test)]
mod tests;
