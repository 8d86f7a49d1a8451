//! Candidates that differ only in their alert policy share one set of windows.
//!
//! Thresholds, `clear`, `for` and `keep_firing_for` change what a rule does
//! with its values, not the values: every such candidate of one rule sees the
//! same window contents at the same times. A [`PolicyFan`] therefore runs
//! **one** engine for the group of candidates (recording every evaluation:
//! [`Engine::record`]) and replays the recorded values through each
//! candidate's own alert state machine ([`AlertPolicy::step`]), with its own
//! deadlines:
//!
//! ```text
//! event ─► Engine(one rule, recording) ─► evaluations ─┬─► policy 1 ─► transitions 1
//!                                                      ├─► policy 2 ─► transitions 2
//!                                                      └─► …
//! ```
//!
//! The replay gives each candidate exactly the transitions its own engine
//! would, because:
//!
//! * a group's value changes only at an evaluation, so between two recorded
//!   evaluations a deadline sees the last recorded value; ties at one instant
//!   run in the engine's order — boundary timers, then deadlines, then events;
//! * a candidate's engine forgets a group once a timer evaluation leaves it
//!   inactive with an empty window, and evaluates it again only when an event
//!   brings data: the replay marks such a group *dormant* and skips its
//!   empty-window evaluations until then;
//! * a group the recording engine forgot while a candidate's alert is still
//!   active has an empty window (baseline included) whose value no longer
//!   moves: empty counts give a fixed value, and a surge's only other input,
//!   the warm-up's count of baseline panes, already covered a window when the
//!   alert breached (before that a surge has no value). So the deadlines of
//!   that alert see the last recorded value, as its own engine's would.
//!
//! Two things can break the equivalence. A silence of the whole stream
//! (`engine.silence_after`) that reaches a surge's baseline moves the value
//! of a group without data, which the recording engine may have forgotten
//! while a candidate's alert on it is active: the fan reports
//! [`PolicyFan::exact`] `false` when such an alert is active once a silence
//! has reached the baseline. And the group cap. Groups outlive their
//! data in some candidates' engines and not in others, so a candidate's engine
//! may refuse a group the recording engine admits, or the reverse. The fan
//! bounds each candidate's live groups (the recording engine's, plus the
//! candidate's active alerts on groups whose window was last seen empty) and
//! reports [`PolicyFan::exact`] `false` as soon as that bound reaches the cap
//! or the recording engine refuses a group; the caller then runs the
//! candidates with one engine each instead.
//! `tests/prop_engine.rs` (`shared_policies_match_separate_engines`) checks the
//! equivalence on random rules of every kind.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::alert::{AlertPolicy, Labels, Phase, Transition};
use crate::config::{Config, RuleConfig};
use crate::engine::{Engine, EngineError, Evaluation};
use crate::event::Event;

/// The rule with its alert policy fields set to a fixed value: candidates
/// with equal signatures share their windows.
pub(crate) fn window_signature(rule: &RuleConfig, reference: &RuleConfig) -> RuleConfig {
    let mut r = rule.clone();
    r.thresholds = reference.thresholds.clone();
    r.clear = reference.clear;
    r.for_ = reference.for_;
    r.keep_firing_for = reference.keep_firing_for;
    r
}

/// The alert policy of a rule, as the engine builds it.
pub(crate) fn policy_of(r: &RuleConfig) -> AlertPolicy {
    AlertPolicy {
        levels: r.thresholds.levels(),
        clear: r.clear_threshold().unwrap_or(0.0),
        condition: r.condition,
        for_ms: r.for_.as_ms(),
        keep_firing_for_ms: r.keep_firing_for.as_ms(),
    }
}

/// One engine, several alert policies of its rule.
pub struct PolicyFan {
    engine: Engine,
    replays: Vec<Replay>,
    /// Labels of the recorded group keys, materialised on first use.
    labels: Vec<Option<Labels>>,
    evaluations: Vec<Evaluation>,
    out: Vec<Transition>,
    /// `engine.max_groups_per_rule`.
    max_groups: usize,
    /// A candidate's engine may have held a different set of groups, or
    /// seen a silence move a value the recording engine no longer has.
    cap_reached: bool,
}

impl PolicyFan {
    /// A fan over `rules`, which must share one [`window_signature`]; `cfg`
    /// supplies the engine settings. The engine runs the first rule.
    pub fn new(cfg: &Config, rules: &[RuleConfig]) -> Result<Self, EngineError> {
        let Some(first) = rules.first() else {
            return Err(EngineError::Config("a policy fan needs a rule".into()));
        };
        let mut c = cfg.clone();
        c.rules = vec![first.clone()];
        let mut engine = Engine::new(&c)?;
        engine.record(0);
        let name: std::sync::Arc<str> = first.name.as_str().into();
        let replays = rules
            .iter()
            .map(|r| Replay {
                policy: policy_of(r),
                name: name.clone(),
                window_ms: r.window.as_ms().max(r.slide().as_ms().max(1)),
                keys: Vec::new(),
                deadlines: BinaryHeap::new(),
                active_empty: 0,
                active_empty_peak: 0,
            })
            .collect();
        Ok(PolicyFan {
            engine,
            replays,
            labels: Vec::new(),
            evaluations: Vec::new(),
            out: Vec::new(),
            max_groups: cfg.engine.max_groups_per_rule,
            cap_reached: false,
        })
    }

    /// The fan is fed in the canonical order (the tuner's sequencer): its
    /// engine judges lateness against the released clock alone, as a
    /// sequenced backtest's engine does (see [`Engine::set_sequenced`]).
    pub fn set_sequenced(&mut self, on: bool) {
        self.engine.set_sequenced(on);
    }

    /// Whether the replayed transitions are exactly each policy's own
    /// engine's: true unless the group cap refused a group or a silence
    /// moved the value of a group with an active alert and no data.
    pub fn exact(&self) -> bool {
        !self.cap_reached && self.engine.rule_stats(0).group_overflow == 0
    }

    /// Processes one event (replay mode: the clock follows event time);
    /// `sink(policy index, transition)` receives every transition.
    pub fn process(&mut self, ev: &Event<'_>, sink: &mut impl FnMut(usize, &Transition)) {
        self.engine.process(ev, &mut self.out);
        self.out.clear();
        self.replay(sink);
    }

    /// Moves the clock to `t`.
    pub(crate) fn advance_clock(&mut self, t: i64, sink: &mut impl FnMut(usize, &Transition)) {
        self.engine.advance_clock(t, &mut self.out);
        self.out.clear();
        self.replay(sink);
    }

    /// Runs the deadlines due at the engine's clock (call once, at the end).
    pub fn finish(&mut self, sink: &mut impl FnMut(usize, &Transition)) {
        self.replay(sink);
        let Some(clock) = self.engine.clock() else {
            return;
        };
        for (k, rp) in self.replays.iter_mut().enumerate() {
            rp.deadlines_until(clock, true, &self.engine, &mut self.labels, &mut |t| {
                sink(k, t)
            });
        }
        self.check_cap();
    }

    fn replay(&mut self, sink: &mut impl FnMut(usize, &Transition)) {
        self.engine.take_evaluations(0, &mut self.evaluations);
        if !self.evaluations.is_empty() {
            for (k, rp) in self.replays.iter_mut().enumerate() {
                for e in &self.evaluations {
                    rp.evaluation(e, &self.engine, &mut self.labels, &mut |t| sink(k, t));
                }
            }
            self.evaluations.clear();
        }
        // Also without evaluations: a silence may have reached the baseline.
        self.check_cap();
    }

    /// Marks the fan inexact once some candidate's engine could have reached
    /// the group cap: it holds at most the recording engine's groups plus its
    /// own active alerts on groups last seen with an empty window; or once
    /// such an alert was active after a silence reached the baseline.
    fn check_cap(&mut self) {
        let peak = self
            .replays
            .iter_mut()
            .map(|r| std::mem::replace(&mut r.active_empty_peak, r.active_empty))
            .max()
            .unwrap_or(0);
        if peak > 0 && self.engine.rule_silence_seen(0) {
            self.cap_reached = true;
        }
        let live = self.engine.live_groups(0);
        let extra = self
            .replays
            .iter()
            .map(|r| r.active_empty)
            .max()
            .unwrap_or(0);
        if live.saturating_add(extra) >= self.max_groups && extra > 0 {
            self.cap_reached = true;
        }
    }
}

/// One policy's alert state over the recorded groups.
struct Replay {
    policy: AlertPolicy,
    name: std::sync::Arc<str>,
    window_ms: i64,
    keys: Vec<KeyState>,
    /// (time, key) of pending deadlines.
    deadlines: BinaryHeap<Reverse<(i64, u32)>>,
    /// Groups whose alert is active here and whose window was last seen empty.
    active_empty: usize,
    /// The most `active_empty` reached since the fan last checked.
    active_empty_peak: usize,
}

#[derive(Default)]
struct KeyState {
    phase: Phase,
    value: Option<f64>,
    /// This policy's engine would have forgotten the group.
    dormant: bool,
    /// The window was empty at the last evaluation.
    empty: bool,
    /// The deadline already scheduled (`i64::MIN`: none).
    deadline: i64,
    instance_key: Option<String>,
    last_since: i64,
    same_ms_seq: u32,
}

impl Replay {
    fn key(&mut self, key: u32) -> &mut KeyState {
        let i = key as usize;
        if self.keys.len() <= i {
            self.keys.resize_with(i + 1, || KeyState {
                deadline: i64::MIN,
                last_since: i64::MIN,
                ..KeyState::default()
            });
        }
        &mut self.keys[i]
    }

    /// Runs the deadlines before `t` (at `t` too when `inclusive`).
    fn deadlines_until(
        &mut self,
        t: i64,
        inclusive: bool,
        engine: &Engine,
        labels: &mut Vec<Option<Labels>>,
        sink: &mut impl FnMut(&Transition),
    ) {
        while let Some(&Reverse((d, key))) = self.deadlines.peek() {
            if d > t || (d == t && !inclusive) {
                break;
            }
            self.deadlines.pop();
            let ks = self.key(key);
            if ks.deadline == d {
                ks.deadline = i64::MIN;
            }
            if ks.dormant {
                continue;
            }
            let value = ks.value;
            self.step(key, d, value, None, engine, labels, sink);
        }
    }

    fn evaluation(
        &mut self,
        e: &Evaluation,
        engine: &Engine,
        labels: &mut Vec<Option<Labels>>,
        sink: &mut impl FnMut(&Transition),
    ) {
        // Boundary timers run before deadlines at the same instant, events after.
        self.deadlines_until(e.at, !e.timer, engine, labels, sink);
        let ks = self.key(e.key);
        if e.empty && ks.dormant {
            return;
        }
        ks.dormant = false;
        ks.value = e.value;
        self.step(e.key, e.at, e.value, Some(e.empty), engine, labels, sink);
        let ks = self.key(e.key);
        if e.timer && e.empty && ks.phase == Phase::Inactive {
            ks.dormant = true;
        }
    }

    /// One evaluation of `key` at `at`; `empty` is the window's emptiness when
    /// it comes from a recorded evaluation (`None` for a deadline).
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        key: u32,
        at: i64,
        value: Option<f64>,
        empty: Option<bool>,
        engine: &Engine,
        labels: &mut Vec<Option<Labels>>,
        sink: &mut impl FnMut(&Transition),
    ) {
        let policy = &self.policy;
        let i = key as usize;
        let ks = &mut self.keys[i];
        let was_inactive = ks.phase == Phase::Inactive;
        let counted_before = !was_inactive && ks.empty;
        if let Some(e) = empty {
            ks.empty = e;
        }
        let step = policy.step(&mut ks.phase, at, value);
        let counted_after = ks.phase != Phase::Inactive && ks.empty;
        match (counted_before, counted_after) {
            (false, true) => {
                self.active_empty += 1;
                self.active_empty_peak = self.active_empty_peak.max(self.active_empty);
            }
            (true, false) => self.active_empty = self.active_empty.saturating_sub(1),
            _ => {}
        }
        if let Some((state, severity)) = step.transition {
            if labels.len() <= i {
                labels.resize(i + 1, None);
            }
            let group = labels[i].get_or_insert_with(|| engine.recorded_labels(0, key));
            if was_inactive || ks.instance_key.is_none() {
                if step.since == ks.last_since {
                    ks.same_ms_seq += 1;
                } else {
                    ks.last_since = step.since;
                    ks.same_ms_seq = 0;
                }
                let mut k = Transition::make_dedup_key(&self.name, group, step.since);
                if ks.same_ms_seq > 0 {
                    k.push_str(&format!("-{}", ks.same_ms_seq));
                }
                ks.instance_key = Some(k);
            }
            sink(&Transition {
                rule: self.name.to_string(),
                group: group.clone(),
                state,
                severity,
                at,
                value,
                threshold: policy.threshold(severity),
                clear: policy.clear,
                dedup_key: ks.instance_key.clone().unwrap_or_default(),
                started_at: step.since,
                window_ms: self.window_ms,
                sample_event_ids: Vec::new(),
                hints: Vec::new(),
            });
        }
        if ks.phase == Phase::Inactive {
            ks.instance_key = None;
        }
        if let Some(w) = step.wake_at {
            if w != ks.deadline {
                ks.deadline = w;
                self.deadlines.push(Reverse((w, key)));
            }
        }
    }
}
