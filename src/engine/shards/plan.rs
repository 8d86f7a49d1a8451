//! Routing a batch once, on the caller's thread: each event is deduplicated
//! and matched against the rules once, its grouping values resolved once, and
//! each hit goes to the worker that owns its (rule, group) shard. Every worker
//! gets every clock move (its own groups' timers are due then) and only the
//! hits of its shards.
//!
//! What is rule-wide is decided here for all workers: deduplication (the
//! first worker's memory, the one a checkpoint writes), lateness and a rule's
//! warm-up origin (noted in every worker the moment the rule's first in-time
//! event is routed; no group of the rule exists anywhere before that event,
//! so no evaluation can see the difference).

use super::super::apply::Hit;
use super::super::shard_hash::{shard_index, stable_group_hash};
use super::super::{Engine, Outcome};
use super::Op;
use crate::alert::Transition;

/// One step of a worker's share of a batch.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Move the clock to `t` (op `step / 2`).
    Clock { step: u32, t: i64 },
    /// Note an event at `ts` in the surge rules' pane occupancy, at clock
    /// `clock` (`Engine::note_occupancy`).
    Occupy { ts: i64, clock: i64 },
    /// Apply `hits[from..to]` of op `op`, whose values start at `values`.
    Apply {
        op: u32,
        values: u32,
        from: u32,
        to: u32,
    },
}

/// One worker's share of a batch.
#[derive(Debug, Default)]
pub(super) struct Plan {
    work: Vec<Work>,
    hits: Vec<Hit>,
}

/// A routed batch: every worker's plan, the grouping values of the routed
/// events, and each op's outcome as far as routing decides it (the workers
/// then say which events reached a group).
pub(super) struct Routed<'a> {
    pub(super) plans: Vec<Plan>,
    values: Vec<&'a str>,
    stride: usize,
    /// Per op: its outcome unless a worker applies it (`None` for clock moves).
    pub(super) outcomes: Vec<Option<Outcome>>,
}

/// What one worker produced: transitions tagged with their step (two per op:
/// the clock move, then the event), and the ops it applied.
/// A worker's transitions (by step), the ops it applied and the ops a cap
/// refused a hit of.
pub(super) type WorkerOut = (Vec<(u32, Transition)>, Vec<u32>, Vec<u32>);

/// Routes `ops` for `engines.len()` workers over `shards` shards (see the
/// module docs).
pub(super) fn route<'a>(engines: &mut [Engine], shards: u32, ops: &[Op<'a, '_>]) -> Routed<'a> {
    let workers = engines.len();
    let stride = engines[0].attr_count();
    // Sized for the batch up front: no reallocation while routing.
    let mut plans: Vec<Plan> = (0..workers)
        .map(|_| Plan {
            work: Vec::with_capacity(2 * ops.len() / workers + 16),
            hits: Vec::with_capacity(8 * ops.len() / workers + 16),
        })
        .collect();
    let tables = engines[0].tables.len();
    let margin = engines[0].late_margin();
    let mut values: Vec<&'a str> = Vec::with_capacity(ops.len() * stride);
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut clock = engines[0].clock();
    let mut hits = Vec::new();
    let mut stable: Vec<Option<u64>> = vec![None; tables];
    let mut open: Vec<Option<usize>> = vec![None; workers];
    let mut last_occupied: Vec<i64> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let step = 2 * i as u32;
        let ev = match *op {
            Op::Advance(t) => {
                if clock.is_none_or(|c| t > c) {
                    clock = Some(t);
                    for p in &mut plans {
                        p.work.push(Work::Clock { step, t });
                    }
                }
                outcomes.push(None);
                continue;
            }
            Op::Process(ev) => ev,
        };
        let t = clock.map_or(ev.ts, |c| c.max(ev.ts));
        if clock != Some(t) {
            clock = Some(t);
            for p in &mut plans {
                p.work.push(Work::Clock { step, t });
            }
        }
        // Rule-wide, like the origin: every worker notes the event's pane
        // in the surge rules' occupancy, at its place in the batch (an
        // evaluation before it must not see it), duplicate or not, as one
        // engine does; only when the pane differs from the last one planned
        // (noting again changes nothing).
        if engines[0].occupancy_news(ev.ts, t, &mut last_occupied) {
            for p in &mut plans {
                p.work.push(Work::Occupy {
                    ts: ev.ts,
                    clock: t,
                });
            }
        }
        let lead = &mut engines[0];
        if lead.dedup.check_and_insert(&ev.id, t) {
            outcomes.push(Some(Outcome::Duplicate));
            continue;
        }
        hits.clear();
        let lead = &engines[0];
        lead.route(ev, |h| hits.push(h));
        if hits.is_empty() {
            outcomes.push(Some(Outcome::Unmatched));
            continue;
        }
        let base = values.len();
        values.resize(base + stride, "");
        lead.resolve_values(ev, &mut values[base..]);
        let vals = &values[base..];
        stable.iter_mut().for_each(|s| *s = None);
        open.iter_mut().for_each(|o| *o = None);
        let watermark = t.saturating_sub(margin);
        let mut late = false;
        for &h in &hits {
            let rule = &engines[0].rules[h.rule as usize];
            let in_time = rule.in_time(ev.ts, watermark);
            late |= !in_time;
            // A response-SLA rule matches responses to complaints by id
            // across its groups: all its groups share one shard.
            let pinned = rule.backlog.is_some();
            let g = if pinned {
                0
            } else {
                let attrs = &engines[0].tables[rule.group_by_id].attrs;
                *stable[rule.group_by_id].get_or_insert_with(|| {
                    stable_group_hash(attrs.iter().map(|&a| vals[a as usize]))
                })
            };
            let w = shard_index(rule.shard_seed, g, shards) as usize % workers;
            if in_time && !pinned && rule.origin.is_none() {
                for e in engines.iter_mut() {
                    e.rules[h.rule as usize].note_origin(ev.ts, t);
                }
            }
            let plan = &mut plans[w];
            let at = match open[w] {
                Some(at) => at,
                None => {
                    plan.work.push(Work::Apply {
                        op: i as u32,
                        values: base as u32,
                        from: plan.hits.len() as u32,
                        to: plan.hits.len() as u32,
                    });
                    open[w] = Some(plan.work.len() - 1);
                    plan.work.len() - 1
                }
            };
            plan.hits.push(h);
            if let Work::Apply { to, .. } = &mut plan.work[at] {
                *to = plan.hits.len() as u32;
            }
        }
        // Applied if a worker applies it; else late if some hit was late,
        // else overflow if a worker's cap refused a hit, else unmatched
        // (it changed nothing), as one engine decides over its rules.
        outcomes.push(Some(if late {
            Outcome::Late
        } else {
            Outcome::Unmatched
        }));
    }
    Routed {
        plans,
        values,
        stride,
        outcomes,
    }
}

/// Runs one worker's plan: its clock moves and its hits, in op order.
pub(super) fn work(
    engine: &mut Engine,
    ops: &[Op<'_, '_>],
    routed: &Routed<'_>,
    w: usize,
) -> WorkerOut {
    let plan = &routed.plans[w];
    let mut tagged = Vec::new();
    let mut applied = Vec::new();
    let mut overflowed = Vec::new();
    let mut buf = Vec::new();
    for &item in &plan.work {
        match item {
            Work::Clock { step, t } => {
                engine.advance_clock(t, &mut buf);
                tagged.extend(buf.drain(..).map(|tr| (step, tr)));
            }
            Work::Occupy { ts, clock } => engine.note_occupancy(ts, clock),
            Work::Apply {
                op,
                values,
                from,
                to,
            } => {
                let Op::Process(ev) = ops[op as usize] else {
                    continue;
                };
                let vals = &routed.values[values as usize..values as usize + routed.stride];
                let done = engine.apply_hits(
                    ev,
                    &plan.hits[from as usize..to as usize],
                    vals,
                    &mut [],
                    &mut buf,
                );
                if done.applied {
                    applied.push(op);
                } else if done.overflow {
                    overflowed.push(op);
                }
                tagged.extend(buf.drain(..).map(|tr| (2 * op + 1, tr)));
            }
        }
    }
    (tagged, applied, overflowed)
}
