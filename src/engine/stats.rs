//! What the engine counts: the outcome of one event, engine-wide and per-rule
//! counters (plain integers the hot loop updates; the metrics layer copies them
//! out per batch).

use crate::event::InvalidReason;

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to at least one rule's window.
    Applied,
    /// A repeat of an id within the dedup horizon: dropped.
    Duplicate,
    /// Late for every rule that selected it: dropped.
    Late,
    /// Selected by no rule.
    Unmatched,
    /// Selected only by rules whose group cap was reached: dropped.
    Overflow,
}

/// Counters of the engine as a whole. Plain integers: the hot loop updates
/// them, and the metrics layer copies them out per batch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Events offered (valid or not).
    pub(crate) events_in: u64,
    /// Invalid inputs by [`InvalidReason::index`].
    pub invalid: [u64; InvalidReason::ALL.len()],
    /// Events applied to at least one window.
    pub applied: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Events late for every rule that selected them.
    pub late: u64,
    /// Events no rule selected, or that changed nothing in the rules that
    /// did (a second response to an answered complaint, a complaint the
    /// backlog holds already).
    pub(crate) unmatched: u64,
    /// Events dropped because of group caps.
    pub(crate) overflow: u64,
    /// Transitions emitted.
    pub transitions: u64,
}

impl EngineStats {
    /// Total invalid inputs.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }

    /// Adds `other`'s counters (engines that each saw some of the events:
    /// an event two of them saw counts twice).
    pub(crate) fn add(&mut self, other: &EngineStats) {
        self.events_in += other.events_in;
        for (a, b) in self.invalid.iter_mut().zip(other.invalid) {
            *a += b;
        }
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.unmatched += other.unmatched;
        self.overflow += other.overflow;
        self.transitions += other.transitions;
    }
}

/// Counters of one rule.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleStats {
    /// Events late for this rule.
    pub late: u64,
    /// Events the rule's selectors took, late ones included (the late
    /// share's denominator). Counted by this process only: not in checkpoints.
    #[serde(skip)]
    pub selected: u64,
    /// Events of new groups dropped because `max_groups_per_rule` was reached.
    pub group_overflow: u64,
    /// Transitions emitted by this rule.
    pub(crate) transitions: u64,
    /// Evaluations performed.
    pub(crate) evaluations: u64,
    /// `unanswered` rules: responses seen (with a `ref_id`).
    pub responses: u64,
    /// First responses: complaints answered (each once).
    pub responses_first: u64,
    /// Of the first responses, those that came before their complaint.
    pub responses_early: u64,
    /// Responses to a complaint already answered (or to the same unknown id again).
    pub responses_repeat: u64,
    /// Complaints or early responses not kept because the rule's book was
    /// full (`engine.dedup_max_ids`).
    pub backlog_overflow: u64,
}

impl RuleStats {
    /// Responses whose complaint is unknown (so far): neither a first
    /// response nor a repeat (early ones still waiting included).
    pub fn responses_unknown(&self) -> u64 {
        self.responses
            .saturating_sub(self.responses_first)
            .saturating_sub(self.responses_repeat)
    }
}

impl RuleStats {
    /// Adds `other`'s counters (the workers of a sharded engine, each
    /// counting the pairs it keeps).
    pub(crate) fn add(&mut self, other: &RuleStats) {
        self.late += other.late;
        self.selected += other.selected;
        self.group_overflow += other.group_overflow;
        self.transitions += other.transitions;
        self.evaluations += other.evaluations;
        self.responses += other.responses;
        self.responses_first += other.responses_first;
        self.responses_early += other.responses_early;
        self.responses_repeat += other.responses_repeat;
        self.backlog_overflow += other.backlog_overflow;
    }
}
