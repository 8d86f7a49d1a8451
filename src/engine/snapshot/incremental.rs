//! Incremental checkpoints: the engine's state as one row per (rule, group)
//! plus a small per-checkpoint record, and a checkpoint that carries only
//! the rows that changed since the previous one.
//!
//! ```text
//! Delta ─ meta:    clock, counters, rules (id, definition, origin, live groups,
//!                   counters, early responses), dedup range, computation ids
//!       ─ upserts: (rule id, group key, shard, row) of every group marked dirty
//!       ─ removed: (rule id, group key) of every group forgotten
//!       ─ dedup:   the chunks of the dedup memory that gained ids
//! ```
//!
//! A row is bincode of the group (windows, alert instance, book, profile,
//! hints) with its pending wheel boundaries and deadline timers, found by one
//! scan of the rule's wheel and the timer heap (8 and 24 bytes an entry);
//! which groups changed comes from [`Dirty`](super::dirty::Dirty). Rows are
//! keyed by a rule id (a hash of the rule's name and definition: a changed
//! rule's rows are never read back as the new rule's — except a rule only
//! retuned, matched by the record's computation ids, see [`computation_id`])
//! and the group key, and
//! carry the group's shard (`shard_of`), so a shard's rows can later move as
//! a unit. The dedup memory is an append-only sequence: ids are written in
//! chunks of [`DEDUP_CHUNK`], and a checkpoint rewrites only the chunks that
//! gained ids; chunks wholly before the oldest id left are deleted.
//!
//! A checkpoint is *full* (every row rewritten, the others deleted) when
//! changes were not tracked before (the first checkpoint of a process that
//! restored nothing), after a reload, after a restore that dropped rules or
//! changed `engine.shards`, and when the caller asks (a failed write). The
//! restore puts the groups in fresh slots, in row order, with their timers;
//! the output does not depend on slot numbers (transitions are emitted in
//! canonical order), so the engine continues exactly as the one that wrote
//! the rows (property-tested in `super::tests_incremental`).

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::key::decode_key;
use super::super::rule::{GroupIn, GroupOut};
use super::super::shard_hash::{shard_index, stable_group_hash};
use super::super::{Engine, EngineStats, RuleRt, RuleStats};
use super::{definition, SnapshotError};
use crate::engine::occupancy::Occupancy;

mod restore;
pub(in crate::engine) use restore::restore;
pub use restore::stored_groups;

/// Ids of the dedup memory per stored chunk.
pub const DEDUP_CHUNK: u64 = 4096;

/// Bytes of one dedup id in a chunk: its time and hash, little-endian.
const DEDUP_ENTRY: usize = 16;

/// One checkpoint's changes (see the module docs).
#[derive(Debug, Default)]
pub struct Delta {
    /// Every row is in `upserts`: the store drops the rows it has first.
    pub full: bool,
    /// The per-checkpoint record (bincode).
    pub meta: Vec<u8>,
    /// The current rules' ids (`upserts` and `removed` index them).
    pub rule_ids: Vec<[u8; 16]>,
    /// Groups created or changed.
    pub upserts: Vec<GroupRow>,
    /// Groups forgotten: (index in `rule_ids`, shard, group key). Applied
    /// before `upserts` (a group forgotten and created again is in both).
    pub removed: Vec<(u16, u32, Vec<u8>)>,
    /// Sequence number of the oldest dedup id remembered: chunks wholly
    /// before it are deleted.
    pub dedup_front: u64,
    /// Dedup chunks to (re)write.
    pub dedup: Vec<DedupChunk>,
    /// Live groups in all.
    pub groups: usize,
}

impl Delta {
    /// Bytes this checkpoint writes.
    pub fn bytes(&self) -> usize {
        self.meta.len()
            + self
                .upserts
                .iter()
                .map(|r| r.key.len() + r.data.len())
                .sum::<usize>()
            + self.dedup.iter().map(|c| c.data.len()).sum::<usize>()
    }
}

/// One group's row.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// Index in [`Delta::rule_ids`].
    pub rule: u16,
    /// The group key (flat values).
    pub key: Vec<u8>,
    /// The shard of the (rule, group).
    pub shard: u32,
    /// The row (bincode).
    pub data: Vec<u8>,
}

/// A chunk of the dedup memory.
#[derive(Debug, Clone)]
pub struct DedupChunk {
    /// Chunk number (sequence number / [`DEDUP_CHUNK`]).
    pub chunk: u64,
    /// Sequence number of its first id.
    pub first: u64,
    /// The ids, [`DEDUP_ENTRY`] bytes each.
    pub data: Vec<u8>,
}

/// What a store holds, to restore from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stored {
    /// The per-checkpoint record.
    pub meta: Vec<u8>,
    /// The rule ids the rows name.
    pub rule_ids: Vec<Vec<u8>>,
    /// (index in `rule_ids`, row) of every group, in a fixed order.
    pub groups: Vec<(u16, Vec<u8>)>,
    /// (first sequence number, ids) of every dedup chunk, by chunk.
    pub dedup: Vec<(u64, Vec<u8>)>,
}

/// Where the incremental checkpoints of a [`ShardedEngine`](super::super::ShardedEngine) stand.
#[derive(Debug, Default)]
pub(in crate::engine) struct Cursor {
    /// Changes are tracked (since the last checkpoint or restore).
    tracking: bool,
    /// The next checkpoint must be full.
    full_next: bool,
    /// The dedup sequence number the last checkpoint reached.
    dedup_next: u64,
}

impl Cursor {
    /// After a reload: the rule set or the dedup memory may have changed.
    pub(in crate::engine) fn reloaded(&mut self) {
        self.full_next = true;
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    shards: u32,
    clock: Option<i64>,
    stats: EngineStats,
    dedup_evicted_early: u64,
    dedup_front: u64,
    dedup_len: u64,
    rules: Vec<RuleMeta>,
    /// Per rule of `rules`, its [`computation_id`]: a rule whose thresholds,
    /// `clear`, `for` or `keep_firing_for` changed since the checkpoint is
    /// restored by it (empty in checkpoints written before it was kept;
    /// last, so that an older crisiswatch still reads the record).
    computations: Vec<[u8; 16]>,
    /// Per rule of `rules`, a surge's pane occupancy
    /// (`engine::occupancy`); empty in checkpoints written before it was
    /// kept (last, for the same reason as `computations`).
    occupancy: Vec<Option<Occupancy>>,
}

/// [`Meta`] as checkpoints written before `occupancy` hold it.
#[derive(Deserialize)]
struct MetaNoOccupancy {
    shards: u32,
    clock: Option<i64>,
    stats: EngineStats,
    dedup_evicted_early: u64,
    dedup_front: u64,
    dedup_len: u64,
    rules: Vec<RuleMeta>,
    computations: Vec<[u8; 16]>,
}

/// [`Meta`] as checkpoints written before `computations` hold it.
#[derive(Deserialize)]
struct MetaBefore {
    shards: u32,
    clock: Option<i64>,
    stats: EngineStats,
    dedup_evicted_early: u64,
    dedup_front: u64,
    dedup_len: u64,
    rules: Vec<RuleMeta>,
}

impl Meta {
    /// The record from its bytes, of either layout.
    fn decode(bytes: &[u8]) -> Result<Meta, SnapshotError> {
        bincode::deserialize(bytes).or_else(|e| {
            if let Ok(m) = bincode::deserialize::<MetaNoOccupancy>(bytes) {
                return Ok(Meta {
                    shards: m.shards,
                    clock: m.clock,
                    stats: m.stats,
                    dedup_evicted_early: m.dedup_evicted_early,
                    dedup_front: m.dedup_front,
                    dedup_len: m.dedup_len,
                    rules: m.rules,
                    computations: m.computations,
                    occupancy: Vec::new(),
                });
            }
            let m: MetaBefore = bincode::deserialize(bytes).map_err(|_| decode_err(e))?;
            Ok(Meta {
                shards: m.shards,
                clock: m.clock,
                stats: m.stats,
                dedup_evicted_early: m.dedup_evicted_early,
                dedup_front: m.dedup_front,
                dedup_len: m.dedup_len,
                rules: m.rules,
                computations: Vec::new(),
                occupancy: Vec::new(),
            })
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RuleMeta {
    id: [u8; 16],
    name: String,
    definition: String,
    origin: Option<i64>,
    /// Rows of this rule in the store.
    live: u64,
    stats: RuleStats,
    backlog_early: Vec<(i64, Box<str>)>,
}

#[derive(Serialize)]
struct RowRef<'a> {
    group: GroupOut<'a>,
    wheel: Vec<i64>,
    timers: Vec<i64>,
}

#[derive(Deserialize)]
struct Row {
    group: GroupIn,
    wheel: Vec<i64>,
    timers: Vec<i64>,
}

/// The id of a rule: its name and definition, hashed.
fn rule_id(rule: &RuleRt) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(rule.name.as_bytes());
    h.update([0]);
    h.update(definition(rule).as_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// The id of what a rule computes: its name and definition less how its
/// alert judges the values (`thresholds`, `clear`, `for`,
/// `keep_firing_for`), hashed. A restore gives a rule whose [`rule_id`]
/// changed but not this id its stored groups, as a reload retunes a rule in
/// place: an open alert goes on under its key, judged by the new settings.
pub(in crate::engine::snapshot) fn computation_id(rule: &RuleRt) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"computation\0");
    h.update(rule.name.as_bytes());
    h.update([0]);
    h.update(format!("{:?}", super::super::reload::computation(&rule.cfg)).as_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// The stable group hash a rule's group is sharded by (a response-SLA
/// rule lives whole in one shard).
fn group_shard_hash(rule: &RuleRt, key: &[u8]) -> u64 {
    if rule.backlog.is_some() {
        0
    } else {
        stable_group_hash(decode_key(key).into_iter())
    }
}

fn encode_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Encode(e.to_string())
}

fn decode_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Decode(e.to_string())
}

/// The rows of one rule of one engine to write: every live group (`full`)
/// or the marked ones.
fn rule_rows(
    engine: &Engine,
    r: usize,
    id: u16,
    shards: u32,
    full: bool,
    out: &mut Vec<GroupRow>,
) -> Result<(), SnapshotError> {
    let rule = &engine.rules[r];
    let table = &engine.tables[rule.group_by_id];
    let slots: Vec<u32> = if full {
        (0..rule.slots.len() as u32).collect()
    } else {
        rule.dirty.marked().collect()
    };
    let slots: Vec<u32> = slots
        .into_iter()
        .filter(|&s| {
            rule.slots
                .get(s as usize)
                .is_some_and(|slot| slot.group.is_some())
        })
        .collect();
    if slots.is_empty() {
        return Ok(());
    }
    // slot → its position in `slots` (and in `pending`): one array lookup
    // per wheel entry (the scan is over every entry of the rule).
    let mut pos = vec![u32::MAX; rule.slots.len()];
    for (i, &s) in slots.iter().enumerate() {
        pos[s as usize] = i as u32;
    }
    let current = |slot: u32, gen: u32| -> Option<usize> {
        let i = *pos.get(slot as usize)?;
        (i != u32::MAX && rule.slots[slot as usize].gen == gen).then_some(i as usize)
    };
    let mut pending: Vec<(Vec<i64>, Vec<i64>)> = vec![(Vec::new(), Vec::new()); slots.len()];
    for (q, slot, gen) in rule.wheel.entries() {
        if let Some(i) = current(slot, gen) {
            pending[i].0.push(q);
        }
    }
    for Reverse((t, tr, slot, gen)) in engine.timers.iter() {
        if *tr as usize == r {
            if let Some(i) = current(*slot, *gen) {
                pending[i].1.push(*t);
            }
        }
    }
    for (&s, (wheel, mut timers)) in slots.iter().zip(pending) {
        let Some(group) = rule.slots[s as usize].group.as_ref() else {
            continue;
        };
        timers.sort_unstable();
        let key = table.key(group.entry);
        let data = bincode::serialize(&RowRef {
            group: GroupOut::new(group, key, table.hash(group.entry)),
            wheel,
            timers,
        })
        .map_err(encode_err)?;
        let shard = shard_index(rule.shard_seed, group_shard_hash(rule, key), shards.max(1));
        out.push(GroupRow {
            rule: id,
            key: key.to_vec(),
            shard,
            data,
        });
    }
    Ok(())
}

/// The changes of `engines` (the workers of one sharded engine) since the
/// last checkpoint, or all of their state (`full`); clears the marks.
pub(in crate::engine) fn delta(
    engines: &mut [Engine],
    shards: u32,
    stats: EngineStats,
    cursor: &mut Cursor,
    full: bool,
) -> Result<Delta, SnapshotError> {
    let full = full || cursor.full_next || !cursor.tracking;
    let first = &engines[0];
    let rule_ids: Vec<[u8; 16]> = first.rules.iter().map(rule_id).collect();
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for e in engines.iter() {
        for r in 0..e.rules.len() {
            rule_rows(e, r, r as u16, shards, full, &mut upserts)?;
        }
    }
    // What is rule-wide: summed over the workers, or the same in all.
    let mut rules = Vec::with_capacity(first.rules.len());
    for (r, rule) in first.rules.iter().enumerate() {
        let mut st = RuleStats::default();
        for e in engines.iter() {
            st.add(&e.rules[r].stats);
        }
        rules.push(RuleMeta {
            id: rule_ids[r],
            name: rule.name.to_string(),
            definition: definition(rule),
            origin: engines.iter().filter_map(|e| e.rules[r].origin).min(),
            live: engines.iter().map(|e| e.rules[r].live as u64).sum(),
            stats: st,
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
    let groups = rules.iter().map(|r| r.live as usize).sum();
    // The dedup memory (the same in every worker): the chunks that gained ids.
    let dd = &first.dedup;
    let (front, next) = dd.seq_range();
    let from = if full {
        front
    } else {
        cursor.dedup_next.clamp(front, next)
    };
    let mut dedup = Vec::new();
    let mut c = from / DEDUP_CHUNK;
    while c * DEDUP_CHUNK < next {
        let lo = (c * DEDUP_CHUNK).max(front);
        let hi = ((c + 1) * DEDUP_CHUNK).min(next);
        let mut data = Vec::with_capacity((hi - lo) as usize * DEDUP_ENTRY);
        for (t, h) in dd.export_seq(lo, hi) {
            data.extend_from_slice(&t.to_le_bytes());
            data.extend_from_slice(&h.to_le_bytes());
        }
        dedup.push(DedupChunk {
            chunk: c,
            first: lo,
            data,
        });
        c += 1;
    }
    let meta = Meta {
        shards,
        clock: first.clock,
        stats,
        dedup_evicted_early: dd.evicted_early,
        dedup_front: front,
        dedup_len: next - front,
        rules,
        computations: first.rules.iter().map(computation_id).collect(),
        // Every worker sees every event: the first's is everyone's.
        occupancy: first
            .rules
            .iter()
            .map(|r| r.occupancy.as_deref().cloned())
            .collect(),
    };
    let meta = bincode::serialize(&meta).map_err(encode_err)?;
    for e in engines.iter_mut() {
        for (r, rule) in e.rules.iter_mut().enumerate() {
            if full {
                // Every rule tracked from here on (a reload's new ones too).
                rule.dirty.set_tracking(true);
                continue;
            }
            for key in rule.dirty.clear() {
                let gh = group_shard_hash(rule, &key);
                let shard = shard_index(rule.shard_seed, gh, shards.max(1));
                removed.push((r as u16, shard, key.to_vec()));
            }
        }
    }
    cursor.tracking = true;
    cursor.full_next = false;
    cursor.dedup_next = next;
    Ok(Delta {
        full,
        meta,
        rule_ids,
        upserts,
        removed,
        dedup_front: front,
        dedup: dedup.into_iter().filter(|c| !c.data.is_empty()).collect(),
        groups,
    })
}
