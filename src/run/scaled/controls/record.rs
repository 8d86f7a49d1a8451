//! The controls topic's records (JSON with `"v": 1`, keyed as
//! `super` says) and the stage's metrics.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::alert::Labels;
use crate::incident::outbox::feedback::{Feedback, Label, LabelledAlert};
use crate::incident::peers::Holding;
use crate::incident::silence::Silence;

/// The record format's version (a record of another version is skipped and
/// counted as unreadable).
pub(super) const VERSION: u32 = 1;

/// One record of the controls topic (JSON, keyed as the module docs say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    /// [`VERSION`].
    pub(super) v: u32,
    #[serde(flatten)]
    pub(super) control: Control,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Control {
    /// A silence as it stands on some instance.
    Silence { silence: Silence },
    /// An operator's close request made on instance `origin` (its request `id`).
    Close {
        origin: String,
        id: i64,
        incident: String,
        reason: String,
        by: String,
        requested_ms: i64,
        /// The incident's partition when the requesting instance knew it;
        /// `None`: whichever instance holds the incident applies it.
        partition: Option<u32>,
    },
    /// The outcome of `origin`'s close request `id`, decided by `by_instance`.
    Closed {
        origin: String,
        id: i64,
        outcome: String,
        done_ms: i64,
        by_instance: String,
    },
    /// A feedback entry made on instance `origin` (its entry `id`).
    Feedback {
        origin: String,
        id: i64,
        entry: FeedbackEntry,
    },
    /// An instance's open incidents.
    Holding { holding: Holding },
}

/// A feedback entry on the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct FeedbackEntry {
    incident: String,
    kind: String,
    label: Option<Label>,
    note: String,
    by: String,
    pub(super) at_ms: i64,
    labels: Labels,
    alerts: Vec<LabelledAlert>,
}

impl FeedbackEntry {
    pub(super) fn of(f: &Feedback) -> Self {
        FeedbackEntry {
            incident: f.incident.clone(),
            kind: f.kind.clone(),
            label: f.label,
            note: f.note.clone(),
            by: f.by.clone(),
            at_ms: f.at_ms,
            labels: f.labels.clone(),
            alerts: f.alerts.clone(),
        }
    }

    pub(super) fn to_feedback(&self) -> Feedback {
        Feedback {
            id: 0,
            incident: self.incident.clone(),
            kind: self.kind.clone(),
            label: self.label,
            note: self.note.clone(),
            by: self.by.clone(),
            at_ms: self.at_ms,
            labels: self.labels.clone(),
            alerts: self.alerts.clone(),
        }
    }
}

pub(super) fn encode(control: Control) -> Vec<u8> {
    // A record is plain data: serialising it cannot fail.
    serde_json::to_vec(&Record {
        v: VERSION,
        control,
    })
    .unwrap_or_default()
}

/// The stage's metrics (`crisiswatch_scale_controls_*`).
#[derive(Debug)]
pub(super) struct ControlsMetrics {
    /// Records sent to the topic, by kind.
    pub(super) published: IntCounterVec,
    /// Records of other instances (and outcomes) applied here, by kind.
    pub(super) applied: IntCounterVec,
    /// Local actions not yet read back from the topic.
    pub(super) pending: IntGauge,
}

const KINDS: [&str; 5] = ["silence", "close", "outcome", "feedback", "holding"];

impl ControlsMetrics {
    pub(super) fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let published = IntCounterVec::new(
            Opts::new(
                "crisiswatch_scale_controls_published_total",
                "Records this instance sent to the controls topic, by kind (silence, close, outcome, feedback, holding, tombstone).",
            ),
            &["kind"],
        )?;
        let applied = IntCounterVec::new(
            Opts::new(
                "crisiswatch_scale_controls_applied_total",
                "Controls-topic records that changed this instance, by kind (silence, close: applied as the incident's owner, outcome: a close request of this instance answered, feedback, holding: another instance's list of the incidents it holds).",
            ),
            &["kind"],
        )?;
        let pending = IntGauge::new(
            "crisiswatch_scale_controls_pending",
            "Operator actions of this instance not yet read back from the controls topic.",
        )?;
        r.register(Box::new(published.clone()))?;
        r.register(Box::new(applied.clone()))?;
        r.register(Box::new(pending.clone()))?;
        for k in KINDS {
            published.with_label_values(&[k]);
            applied.with_label_values(&[k]);
        }
        published.with_label_values(&["tombstone"]);
        Ok(ControlsMetrics {
            published,
            applied,
            pending,
        })
    }
}
