//! One evaluation of a (rule, group): the window brought to the evaluation
//! time, the indicator's value, the alert state machine's step, and the
//! transition with its `dedup_key`; and the scheduling of a boundary
//! re-evaluation (the pane arithmetic itself is in `pane.rs`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::alert::{Phase, State, Transition};
use crate::window::Region;

use super::backlog::response_time;
use super::key::decode_key;
use super::pane::boundary_time;
use super::record::Evaluation;
use super::rule::baseline_of;
use super::table::GroupTable;
use super::{EngineStats, RuleRt};
use crate::indicator::season::Seasonal;

/// Schedules a re-evaluation at boundary pane `q` on the rule's wheel (or, if the
/// wheel refuses it, as a plain timer).
pub(super) fn schedule_boundary(
    rule: &mut RuleRt,
    timers: &mut BinaryHeap<Reverse<(i64, u32, u32, u32)>>,
    r: u32,
    q: i64,
    slot: u32,
    gen: u32,
) {
    if !rule.wheel.schedule(q, slot, gen) {
        timers.push(Reverse((boundary_time(q, rule.slide), r, slot, gen)));
    }
}

/// Schedules the boundaries of a pane just created at `pane` (in `region`)
/// in the group of `slot`, after the clock's window end `now_end`: when a
/// future pane enters the window, and when it leaves the window and the
/// baseline behind it; lowers the engine's `wheel_floor` to the earliest.
#[allow(clippy::too_many_arguments)]
pub(super) fn schedule_pane(
    rule: &mut RuleRt,
    timers: &mut BinaryHeap<Reverse<(i64, u32, u32, u32)>>,
    wheel_floor: &mut i64,
    r: u32,
    pane: i64,
    region: Region,
    now_end: i64,
    slot: u32,
    gen: u32,
) {
    let shape = rule.shape;
    let boundaries = [
        (region == Region::Future).then_some(pane),
        Some(pane + shape.n),
        (shape.m > 0).then_some(pane + shape.n + shape.m),
    ];
    for q in boundaries.into_iter().flatten() {
        if q > now_end {
            schedule_boundary(rule, timers, r, q, slot, gen);
            *wheel_floor = (*wheel_floor).min(boundary_time(q, rule.slide));
        }
    }
}

/// Evaluates one group at time `at`, emitting a transition if the alert moves
/// (`table`: the rule's group table, which holds the group's key).
/// Schedules surge warm-up re-evaluations on the rule's wheel itself; returns a
/// new alert deadline for the caller to put in the timer heap.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate(
    rule: &mut RuleRt,
    table: &GroupTable,
    slot: u32,
    at: i64,
    timer: bool,
    signal_id: Option<&str>,
    sample_ids: usize,
    stats: &mut EngineStats,
    out: &mut Vec<Transition>,
) -> Option<i64> {
    let end = rule.pane_at(at);
    rule.arm_silence_check(end);
    let base = rule.baseline_panes(end);
    let origin = rule.origin;
    let (shape, season) = (rule.shape, rule.indicator.season());
    let min_volume = rule.min_volume;
    rule.stats.evaluations += 1;
    let gen = rule.slots[slot as usize].gen;
    let group = rule.slots[slot as usize].group.as_mut()?;
    group.window.advance(end, &shape);
    let (value, volume) = match (group.season.as_deref_mut(), season) {
        (Some(p), Some(s)) => {
            p.advance(s, Seasonal::bucket_of(end, shape.n));
            let exp = p.expected(end, shape.n);
            rule.indicator.seasonal_value(&group.window, exp, false)
        }
        _ => match rule.indicator.response_quantile() {
            Some(q) => response_time(group.book.as_deref(), end - shape.n, end, q),
            None => {
                let b = baseline_of(&group.window, base, shape.m, origin);
                rule.indicator.value(&group.window, shape.n, b)
            }
        },
    };
    let value = if volume < min_volume { None } else { value };
    group.value = value;
    group.evaluated_at = at;
    if let Some(rec) = rule.recorder.as_deref_mut() {
        rec.evaluations.push(Evaluation {
            key: group.key_id,
            at,
            value,
            timer,
            empty: group.window.is_empty(),
        });
    }
    let was_inactive = group.phase == Phase::Inactive;
    let step = rule.policy.step(&mut group.phase, at, value);
    if group.phase != Phase::Inactive {
        if let Some(id) = signal_id {
            if sample_ids > 0 {
                let samples = &mut group.instance.get_or_insert_with(Box::default).samples;
                if samples.len() >= sample_ids {
                    samples.remove(0);
                }
                samples.push(id.into());
            }
        }
    }
    if let Some((state, severity)) = step.transition {
        let labels: Vec<(String, String)> = rule
            .group_by
            .iter()
            .zip(decode_key(table.key(group.entry)))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let inst = group.instance.get_or_insert_with(Box::default);
        if was_inactive || inst.key.is_none() {
            // A new alert instance: its key must differ from every earlier one,
            // even one that started in the same millisecond.
            if step.since == inst.last_since {
                inst.same_ms_seq += 1;
            } else {
                inst.last_since = step.since;
                inst.same_ms_seq = 0;
            }
            let mut key = Transition::make_dedup_key(&rule.name, &labels, step.since);
            if inst.same_ms_seq > 0 {
                key.push_str(&format!("-{}", inst.same_ms_seq));
            }
            inst.key = Some(key.into_boxed_str());
        }
        let dedup_key = inst.key.as_deref().unwrap_or_default().to_string();
        let hints = match (&rule.explain, group.explain.as_deref_mut()) {
            (Some(spec), Some(x)) if state != State::Resolved => x.hints(spec, end),
            _ => Vec::new(),
        };
        out.push(Transition {
            rule: rule.name.to_string(),
            group: labels,
            state,
            severity,
            at,
            value,
            threshold: rule.policy.threshold(severity),
            clear: rule.policy.clear,
            dedup_key,
            started_at: step.since,
            window_ms: rule.window_ms,
            sample_event_ids: inst.samples.iter().map(|s| s.to_string()).collect(),
            hints,
        });
        stats.transitions += 1;
        rule.stats.transitions += 1;
    }
    if group.phase == Phase::Inactive {
        // The instance ended (resolved, or a pending that never fired).
        if let Some(inst) = group.instance.as_deref_mut() {
            inst.key = None;
            inst.samples.clear();
        }
    }
    // While a surge's baseline is still filling, its value moves at every boundary.
    if shape.m > 0 && base < shape.m && end + 1 > group.warm_tick {
        group.warm_tick = end + 1;
        if !group.window.is_empty() || group.phase != Phase::Inactive {
            rule.wheel.schedule(end + 1, slot, gen);
        }
    }
    match step.wake_at {
        Some(t) if t != group.deadline => {
            group.deadline = t;
            Some(t)
        }
        _ => None,
    }
}
