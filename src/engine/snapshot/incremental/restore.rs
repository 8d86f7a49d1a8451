//! Restoring incremental checkpoints: the stored rows back into fresh
//! workers, each group to the worker that owns its shard, rules matched by
//! id or — a rule only retuned since the checkpoint — by computation id.

use std::cmp::Reverse;

use super::super::super::pane::boundary_time;
use super::super::super::rule::Slot;
use super::super::super::{Engine, EngineStats};
use super::super::{RestoreSummary, SnapshotError};
use super::{
    computation_id, decode_err, group_shard_hash, rule_id, Cursor, Meta, Row, Stored, DEDUP_ENTRY,
};

/// Whether `stored` holds a checkpoint's rows consistently: the per-rule
/// row counts and the dedup memory's length as its record says. (Each row's
/// checksum is the store's to check.)
fn decode_meta(stored: &Stored) -> Result<Meta, SnapshotError> {
    Meta::decode(&stored.meta)
}

/// Replaces the state of `engines` (fresh workers of one sharded engine)
/// by what `stored` holds: each group goes to the worker that owns its
/// shard. Turns change tracking on.
pub(in crate::engine) fn restore(
    engines: &mut [Engine],
    shards: u32,
    cursor: &mut Cursor,
    stored: &Stored,
) -> Result<(RestoreSummary, EngineStats), SnapshotError> {
    let meta = decode_meta(stored)?;
    let mut summary = RestoreSummary::default();
    let current: Vec<[u8; 16]> = engines[0].rules.iter().map(rule_id).collect();
    // Stored rule → current rule index: the same rule, else (by name) the
    // same computation judged by other settings.
    let mut map: Vec<Option<usize>> = meta
        .rules
        .iter()
        .map(|rm| current.iter().position(|id| *id == rm.id))
        .collect();
    let mut retuned = vec![false; map.len()];
    if meta.computations.len() == meta.rules.len() {
        for (si, rm) in meta.rules.iter().enumerate() {
            if map[si].is_some() {
                continue;
            }
            let found = engines[0].rules.iter().enumerate().position(|(i, r)| {
                *r.name == *rm.name
                    && !map.contains(&Some(i))
                    && computation_id(r) == meta.computations[si]
            });
            if found.is_some() {
                map[si] = found;
                retuned[si] = true;
            }
        }
    }
    for ((rm, m), re) in meta.rules.iter().zip(&map).zip(&retuned) {
        match m {
            Some(_) => summary.rules_restored.push(rm.name.clone()),
            None => summary.rules_dropped.push(rm.name.clone()),
        }
        if *re {
            summary.rules_retuned.push(rm.name.clone());
        }
    }
    // The dedup memory.
    let mut order = Vec::with_capacity(meta.dedup_len as usize);
    let end = meta.dedup_front + meta.dedup_len;
    let mut expect = meta.dedup_front;
    for (first, data) in &stored.dedup {
        if data.len() % DEDUP_ENTRY != 0 {
            return Err(decode_err("a dedup chunk is truncated"));
        }
        for (i, e) in data.chunks_exact(DEDUP_ENTRY).enumerate() {
            let seq = first + i as u64;
            if seq < meta.dedup_front || seq >= end {
                continue;
            }
            if seq != expect {
                return Err(decode_err(format!(
                    "the dedup memory has a gap at id {expect} (found {seq})"
                )));
            }
            expect += 1;
            let (t, h) = e.split_at(8);
            let t = i64::from_le_bytes(t.try_into().map_err(decode_err)?);
            let h = u64::from_le_bytes(h.try_into().map_err(decode_err)?);
            order.push((t, h));
        }
    }
    if expect != end {
        return Err(decode_err(format!(
            "the dedup memory holds {} ids, its record says {}",
            expect - meta.dedup_front,
            meta.dedup_len
        )));
    }
    // Every row decoded and counted before anything changes: a store that
    // does not hold what its record says leaves the engine as it was.
    let by_id: Vec<Option<usize>> = stored
        .rule_ids
        .iter()
        .map(|id| meta.rules.iter().position(|rm| rm.id[..] == id[..]))
        .collect();
    let mut counts = vec![0u64; meta.rules.len()];
    let mut rows: Vec<(usize, Row)> = Vec::with_capacity(stored.groups.len());
    for (id, data) in &stored.groups {
        let Some(&Some(si)) = by_id.get(*id as usize) else {
            return Err(decode_err("a group of a rule the checkpoint does not list"));
        };
        counts[si] += 1;
        if let Some(r) = map[si] {
            rows.push((r, bincode::deserialize(data).map_err(decode_err)?));
        }
    }
    for (rm, n) in meta.rules.iter().zip(&counts) {
        if rm.live != *n {
            return Err(decode_err(format!(
                "rule {} has {n} groups stored, its record says {}",
                rm.name, rm.live
            )));
        }
    }
    let workers = engines.len();
    for (w, e) in engines.iter_mut().enumerate() {
        // Keys of groups already there (a fresh engine has none).
        crate::engine::table::stash(&e.tables, &mut e.rules);
        e.clock = meta.clock;
        e.stats = meta.stats.clone();
        if w > 0 {
            // Counters are the first worker's to carry.
            e.stats.transitions = 0;
        }
        e.dedup
            .restore_seq(meta.dedup_front, order.clone(), meta.dedup_evicted_early);
        e.timers.clear();
        e.wheel_floor = i64::MIN;
        for (si, (rm, m)) in meta.rules.iter().zip(&map).enumerate() {
            let Some(i) = *m else { continue };
            let rule = &mut e.rules[i];
            rule.origin = rm.origin;
            super::super::restore_occupancy(rule, meta.occupancy.get(si), meta.clock);
            if w == 0 {
                rule.stats = rm.stats.clone();
            }
        }
    }
    // The groups, each to the worker that owns it (room made first: the
    // slots are large and a million of them doubling their vector twenty
    // times costs as much as decoding them).
    for e in engines.iter_mut() {
        for (si, m) in map.iter().enumerate() {
            if let Some(r) = *m {
                e.rules[r]
                    .slots
                    .reserve((counts[si] as usize).div_ceil(workers));
            }
        }
    }
    for (r, row) in rows {
        let w = if workers > 1 {
            let rule = &engines[0].rules[r];
            let (seed, gh) = (rule.shard_seed, group_shard_hash(rule, &row.group.key));
            engines
                .iter()
                .position(|e| e.shard.as_ref().is_none_or(|f| f.owns(seed, gh)))
                .unwrap_or(0)
        } else {
            0
        };
        let e = &mut engines[w];
        let rule = &mut e.rules[r];
        let slot = rule.slots.len() as u32;
        let (group, key, hash) = row.group.into_parts();
        rule.keys.push((slot, hash, key));
        rule.slots.push(Slot {
            gen: 0,
            group: Some(group),
        });
        rule.live += 1;
        for q in row.wheel {
            if !rule.wheel.schedule(q, slot, 0) {
                e.timers
                    .push(Reverse((boundary_time(q, rule.slide), r as u32, slot, 0)));
            }
        }
        for t in row.timers {
            e.timers.push(Reverse((t, r as u32, slot, 0)));
        }
    }
    for e in engines.iter_mut() {
        for (rm, m) in meta.rules.iter().zip(&map) {
            let Some(i) = *m else { continue };
            let rule = &mut e.rules[i];
            let owner = e.shard.as_ref().is_none_or(|f| f.owns(rule.shard_seed, 0));
            let early = if owner {
                rm.backlog_early.clone()
            } else {
                Vec::new()
            };
            rule.reindex(early);
            summary.groups += rule.live;
        }
        crate::engine::table::rebuild(&mut e.tables, &mut e.rules);
        for rule in &mut e.rules {
            rule.dirty.set_tracking(true);
        }
    }
    cursor.tracking = true;
    // Rows stored under ids no current rule has: rewritten whole.
    cursor.full_next = !summary.rules_dropped.is_empty()
        || !summary.rules_retuned.is_empty()
        || meta.shards != shards;
    cursor.dedup_next = end;
    Ok((summary, meta.stats))
}

/// Live groups the record of a stored checkpoint lists, per rule (for
/// `state inspect` without restoring).
pub fn stored_groups(meta: &[u8]) -> Result<Vec<(String, u64)>, SnapshotError> {
    let meta = Meta::decode(meta)?;
    Ok(meta.rules.into_iter().map(|r| (r.name, r.live)).collect())
}
