//! Recording a rule's evaluations, for callers that run other alert policies
//! over the same values (`tune`'s shared windows).

use crate::alert::Labels;

use super::{Engine, GROUP_HASH_SEED};

/// One evaluation of a recorded rule's group (see [`Engine::record`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The group: an id of the rule's recorder ([`Engine::recorded_labels`]).
    pub(crate) key: u32,
    /// Evaluation time.
    pub(crate) at: i64,
    /// The value (after `min_volume`).
    pub(crate) value: Option<f64>,
    /// Run by a timer (a pane boundary or a deadline) rather than by an event.
    pub(crate) timer: bool,
    /// The group's window (baseline included) holds no pane.
    pub(crate) empty: bool,
}

/// The evaluations of a recorded rule, and its group keys by id.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    pub(super) ids: hashbrown::HashMap<Box<[u8]>, u32, foldhash::fast::FixedState>,
    pub(super) keys: Vec<Box<[u8]>>,
    pub(super) evaluations: Vec<Evaluation>,
}

impl Engine {
    /// Records every evaluation of rule `i` from now on, for callers that run
    /// other alert policies over the same values (`tune`'s shared windows).
    /// Nothing else changes: the rule evaluates, alerts and forgets groups as
    /// it would unrecorded.
    pub(crate) fn record(&mut self, i: usize) {
        if let Some(rule) = self.rules.get_mut(i) {
            let rec = Recorder {
                ids: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                    GROUP_HASH_SEED,
                )),
                ..Recorder::default()
            };
            rule.recorder.get_or_insert_with(|| Box::new(rec));
        }
    }

    /// Moves the evaluations recorded for rule `i` since the last call to the
    /// end of `out`, in the order they ran.
    pub(crate) fn take_evaluations(&mut self, i: usize, out: &mut Vec<Evaluation>) {
        if let Some(rec) = self
            .rules
            .get_mut(i)
            .and_then(|r| r.recorder.as_deref_mut())
        {
            out.append(&mut rec.evaluations);
        }
    }

    /// The labels of group `key` of recorded rule `i`.
    pub(crate) fn recorded_labels(&self, i: usize, key: u32) -> Labels {
        let Some(rule) = self.rules.get(i) else {
            return Labels::new();
        };
        rule.recorder
            .as_deref()
            .and_then(|rec| rec.keys.get(key as usize))
            .map(|k| rule.labels(k))
            .unwrap_or_default()
    }
}
