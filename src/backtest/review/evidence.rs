//! The event figures of a review: the history read once more, and for each
//! incident the events its rule counts in its slice, from one window before
//! the breach to the resolve (duplicates once; invalid lines, future stamps
//! and refuted clock jumps skipped, as the backtest skips them).

use std::collections::{HashMap, HashSet};

use crate::backtest::input::InputError;
use crate::backtest::report::Incident;
use crate::config::{Config, RuleConfig};
use crate::dedup::Dedup;
use crate::event::{decode, Event};
use crate::indicator::Indicator;
use crate::sequencer::JumpGuard;

use super::ReviewError;

/// Attribute values tracked per attribute; rarer ones beyond this are "other".
const MAX_VALUES_PER_ATTR: usize = 10_000;
/// Top values listed per attribute.
const TOP_VALUES: usize = 5;
/// Sample event ids listed.
const SAMPLE_IDS: usize = 10;

/// What the events behind one incident show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Start of the interval considered (one window before the breach), ms.
    pub(crate) from_ms: i64,
    /// End of the interval (resolve or end of data), ms.
    pub(crate) to_ms: i64,
    /// Events the rule counts in this slice and interval.
    pub events: u64,
    /// Of which signal events (numerator, counted events, detractors...).
    pub signal: u64,
    /// Events by type, most first.
    pub by_type: Vec<(String, u64)>,
    /// Distinct customers among the signal events.
    pub signal_customers: usize,
    /// Distinct customers among all the events.
    pub customers: usize,
    /// Per attribute (outside the slice), the top values among signal events.
    pub top: Vec<(String, Vec<(String, u64)>)>,
    /// The first signal event ids.
    pub(crate) sample_ids: Vec<String>,
}

#[derive(Default)]
struct Acc {
    events: u64,
    signal: u64,
    by_type: HashMap<String, u64>,
    signal_customers: HashSet<String>,
    customers: HashSet<String>,
    attrs: HashMap<String, HashMap<String, u64>>,
    sample_ids: Vec<String>,
}

/// Reads the history once more and gathers the evidence of each incident
/// (`incidents[i]` → `result[i]`). `feed` calls its argument with every line.
///
/// Lines are judged as the backtest judges them: decoded with the same limits
/// (`now_ms` is the wall clock of the future-skew check, `None` skips it), and
/// behind the same clock-jump guard (`engine.max_clock_jump`), so a stamp far
/// ahead of the history (the year 5138) neither counts nor moves the clock
/// the duplicate memory expires by.
pub fn collect_evidence(
    cfg: &Config,
    incidents: &[&Incident],
    end_ms: i64,
    now_ms: Option<i64>,
    feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), InputError>,
) -> Result<Vec<Evidence>, ReviewError> {
    let rules: Vec<&RuleConfig> = cfg.rules.iter().collect();
    let mut tally = Tally {
        indicators: rules
            .iter()
            .map(|r| Indicator::compile(&r.indicator, r.window.as_ms()))
            .collect(),
        per_rule: vec![Vec::new(); rules.len()],
        incidents,
        acc: incidents.iter().map(|_| Acc::default()).collect(),
        dedup: Dedup::new(cfg.engine.dedup_horizon.as_ms(), cfg.engine.dedup_max_ids),
        clock: None,
    };
    let mut evidence: Vec<Evidence> = Vec::with_capacity(incidents.len());
    for (k, i) in incidents.iter().enumerate() {
        let from = i.started_at.saturating_sub(i.window_ms);
        let to = i.resolved_at.unwrap_or(end_ms);
        if let Some(r) = rules.iter().position(|r| r.name == i.rule) {
            tally.per_rule[r].push((k, from, to));
        }
        evidence.push(Evidence {
            from_ms: from,
            to_ms: to,
            ..Evidence::default()
        });
    }
    let limits = cfg.engine.decode_limits();
    let mut guard: JumpGuard<Vec<u8>> =
        JumpGuard::new(limits.max_clock_jump_ms, limits.clock_jump_confirm).anchored();
    feed(&mut |line: &[u8]| {
        let Ok(ev) = decode(line, &limits, now_ms) else {
            return;
        };
        if guard.pass_quick(ev.ts) {
            tally.count(&ev);
            return;
        }
        // Held aside until later lines confirm the jump (then counted in
        // arrival order) or refute it (never counted).
        let ts = ev.ts;
        drop(ev);
        for held in guard.offer(ts, line.to_vec()).pass {
            if let Ok(ev) = decode(&held, &limits, now_ms) {
                tally.count(&ev);
            }
        }
    })?;
    for held in guard.settle_start().pass {
        if let Ok(ev) = decode(&held, &limits, now_ms) {
            tally.count(&ev);
        }
    }
    for (e, a) in evidence.iter_mut().zip(tally.acc) {
        e.events = a.events;
        e.signal = a.signal;
        e.by_type = sorted_counts(a.by_type, usize::MAX);
        e.signal_customers = a.signal_customers.len();
        e.customers = a.customers.len();
        let mut top: Vec<(String, Vec<(String, u64)>)> = a
            .attrs
            .into_iter()
            .map(|(k, m)| (k, sorted_counts(m, TOP_VALUES)))
            .collect();
        top.sort_by(|x, y| x.0.cmp(&y.0));
        e.top = top;
        e.sample_ids = a.sample_ids;
    }
    Ok(evidence)
}

/// The counting state of one pass.
struct Tally<'a> {
    indicators: Vec<Indicator>,
    /// Per rule: the incidents under review, with their interval.
    per_rule: Vec<Vec<(usize, i64, i64)>>,
    incidents: &'a [&'a Incident],
    acc: Vec<Acc>,
    dedup: Dedup,
    /// Newest event time counted (the duplicate memory's clock).
    clock: Option<i64>,
}

impl Tally<'_> {
    /// Counts one valid event that passed the clock-jump guard.
    fn count(&mut self, ev: &Event<'_>) {
        let t = self.clock.map_or(ev.ts, |c| c.max(ev.ts));
        self.clock = Some(t);
        if self.dedup.check_and_insert(&ev.id, t) {
            return;
        }
        for (r, list) in self.per_rule.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let Some(contrib) = self.indicators[r].contribution(ev) else {
                continue;
            };
            for &(k, from, to) in list {
                if ev.ts <= from || ev.ts > to {
                    continue;
                }
                let same_slice = self.incidents[k]
                    .group
                    .iter()
                    .all(|(a, v)| ev.attr(a).unwrap_or("") == v);
                if !same_slice {
                    continue;
                }
                let a = &mut self.acc[k];
                a.events += 1;
                *a.by_type.entry(ev.kind.to_string()).or_default() += 1;
                if let Some(c) = ev.customer_id.as_deref() {
                    a.customers.insert(c.to_string());
                    if contrib.signal {
                        a.signal_customers.insert(c.to_string());
                    }
                }
                if contrib.signal {
                    a.signal += 1;
                    if a.sample_ids.len() < SAMPLE_IDS {
                        a.sample_ids.push(ev.id.to_string());
                    }
                    for (key, val) in &ev.attrs {
                        if self.incidents[k]
                            .group
                            .iter()
                            .any(|(g, _)| g == key.as_ref())
                        {
                            continue;
                        }
                        let m = a.attrs.entry(key.to_string()).or_default();
                        if let Some(n) = m.get_mut(val.as_ref()) {
                            *n += 1;
                        } else if m.len() < MAX_VALUES_PER_ATTR {
                            m.insert(val.to_string(), 1);
                        } else {
                            *m.entry("(other)".to_string()).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
}

fn sorted_counts(m: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}
