//! Incidents from transitions: the [`Tracker`] follows each alert instance
//! from its first transition to its resolve, with its peak value.

use std::collections::HashMap;

use crate::alert::{Labels, Phase, State, Transition};
use crate::config::{Condition, RuleConfig};
use crate::engine::Engine;

use super::{Incident, Peak, Step};

#[derive(Debug)]
struct Open {
    incident: Incident,
    fired: bool,
}

#[derive(Debug, Clone)]
struct RuleMeta {
    name: String,
    condition: Condition,
    window_ms: i64,
}

/// Turns a stream of transitions into incidents.
#[derive(Debug)]
pub struct Tracker {
    rules: Vec<RuleMeta>,
    by_name: HashMap<String, usize>,
    /// Open instances per rule: group → instance. Pending-only instances whose
    /// breach ended silently are replaced by the group's next instance.
    open: Vec<HashMap<Labels, Open>>,
    done: Vec<Incident>,
    /// Instances first seen escalating or resolving: they fired before the
    /// transitions began (a file that starts mid-incident).
    pub(crate) fired_before: usize,
}

impl Tracker {
    /// A tracker for the rules of `engine`.
    pub(crate) fn new(engine: &Engine) -> Self {
        let rules: Vec<&RuleConfig> = (0..engine.rule_count())
            .map(|i| engine.rule_config(i))
            .collect();
        Tracker::for_rules(rules)
    }

    /// A tracker for these rules (in engine order).
    pub(crate) fn for_rules<'a>(rules: impl IntoIterator<Item = &'a RuleConfig>) -> Self {
        let rules: Vec<RuleMeta> = rules
            .into_iter()
            .map(|r| RuleMeta {
                name: r.name.clone(),
                condition: r.condition,
                window_ms: r.window.as_ms(),
            })
            .collect();
        let by_name = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let open = rules.iter().map(|_| HashMap::new()).collect();
        Tracker {
            rules,
            by_name,
            open,
            done: Vec::new(),
            fired_before: 0,
        }
    }

    /// Whether rule `i` has an open (pending or firing) instance.
    pub fn has_open(&self, i: usize) -> bool {
        !self.open[i].is_empty()
    }

    /// Takes one transition.
    pub(crate) fn transition(&mut self, t: &Transition) {
        let Some(&r) = self.by_name.get(&t.rule) else {
            return;
        };
        let meta = &self.rules[r];
        let step = Step {
            at: t.at,
            state: t.state,
            severity: t.severity,
            value: t.value,
            threshold: t.threshold,
            hints: t.hints.clone(),
        };
        let open = &mut self.open[r];
        let same = open
            .get(&t.group)
            .is_some_and(|o| o.incident.dedup_key == t.dedup_key);
        if !same {
            // A new instance; any older one of this group ended silently (a
            // pending alert whose breach went away emits nothing).
            let fresh = Open {
                incident: Incident {
                    rule: t.rule.clone(),
                    group: t.group.clone(),
                    dedup_key: t.dedup_key.clone(),
                    started_at: t.started_at,
                    fired_at: t.at,
                    resolved_at: None,
                    severity: t.severity,
                    peak: None,
                    timeline: Vec::new(),
                    window_ms: meta.window_ms,
                    condition: meta.condition,
                },
                fired: false,
            };
            // Escalating or resolving without a `firing` first: it fired
            // before the transitions begin (an export from a later time).
            // Its breach start is known; its firing time is not.
            let fresh = if matches!(t.state, State::Escalated | State::Resolved) {
                self.fired_before += 1;
                let mut f = fresh;
                f.fired = true;
                f.incident.fired_at = t.started_at;
                f
            } else {
                fresh
            };
            if let Some(old) = open.insert(t.group.clone(), fresh) {
                if old.fired {
                    // Cannot happen (a firing instance ends with `resolved`);
                    // keep it rather than lose it.
                    self.done.push(old.incident);
                }
            }
        }
        let condition = meta.condition;
        let Some(o) = open.get_mut(&t.group) else {
            return;
        };
        o.incident.timeline.push(step);
        // The severity it fired at, then every escalation (a pending breach
        // fires at the level its value has then, maybe below the pending one).
        o.incident.severity = match t.state {
            State::Firing if !o.fired => t.severity,
            _ => o.incident.severity.max(t.severity),
        };
        if let Some(v) = t.value {
            update_peak(&mut o.incident.peak, v, t.at, condition);
        }
        match t.state {
            State::Pending => {}
            State::Firing => {
                if !o.fired {
                    o.fired = true;
                    o.incident.fired_at = t.at;
                }
            }
            State::Escalated => {}
            State::Resolved => {
                if let Some(mut o) = open.remove(&t.group) {
                    o.incident.resolved_at = Some(t.at);
                    if o.fired {
                        self.done.push(o.incident);
                    }
                }
            }
        }
    }

    /// Samples the current values of every group with an open instance (at a
    /// slide boundary), for peaks; forgets pending instances that ended silently.
    pub(crate) fn sample(&mut self, engine: &Engine) {
        for r in 0..self.rules.len() {
            if self.open[r].is_empty() {
                continue;
            }
            let condition = self.rules[r].condition;
            self.open[r].retain(|labels, o| {
                let state = engine.lookup(r, labels.iter().map(|(_, v)| v.as_str()));
                match state {
                    // Forgotten by the engine, or back to inactive: a pending
                    // alert that ended silently; a fired one waits for its resolve.
                    None => o.fired,
                    Some((Phase::Inactive, _, _)) if !o.fired => false,
                    Some((_, value, at)) => {
                        if let Some(v) = value {
                            update_peak(&mut o.incident.peak, v, at, condition);
                        }
                        true
                    }
                }
            });
        }
    }

    /// Every incident, still-open ones included, ordered by firing time, rule, slice.
    pub(crate) fn finish(mut self) -> Vec<Incident> {
        for open in self.open {
            for (_, o) in open {
                if o.fired {
                    self.done.push(o.incident);
                }
            }
        }
        self.done.sort_by(|a, b| {
            (a.fired_at, &a.rule, &a.group, &a.dedup_key).cmp(&(
                b.fired_at,
                &b.rule,
                &b.group,
                &b.dedup_key,
            ))
        });
        self.done
    }
}

pub(super) fn update_peak(peak: &mut Option<Peak>, v: f64, at: i64, c: Condition) {
    if !v.is_finite() {
        return;
    }
    let better = match (*peak, c) {
        (None, _) => true,
        (Some(p), Condition::Above) => v > p.value,
        (Some(p), Condition::Below) => v < p.value,
    };
    if better {
        *peak = Some(Peak { value: v, at });
    }
}
