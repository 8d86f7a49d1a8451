//! Responders' feedback on incidents, stored in the outbox database beside
//! them: an acknowledgement ("someone is on it") and a label — `useful` (a
//! real crisis) or `noise` (a false page) — from `crisiswatch incident
//! ack|label`, `POST /api/v1/incidents/ack|label` and the web console.
//!
//! Feedback is a log (table `feedback`, added to existing outboxes when they
//! are opened: `CREATE TABLE IF NOT EXISTS`); an incident's current label is
//! its latest one. Each row carries what the label is about — every alert's
//! rule, slice and breach interval — so `tune --labels-from` and the threshold
//! suggestions can read it after the notifications themselves were pruned.
//! Feedback is never pruned: it is the team's judgement, small, and what the
//! next thresholds learn from.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{Outbox, OutboxError, Tx};
use crate::alert::Labels;
use crate::incident::lifecycle::Incident;
use crate::incident::model::{AlertEvidence, Notification};

/// The label a responder gives an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// A real crisis: the page was worth it.
    Useful,
    /// A false page.
    Noise,
}

impl Label {
    /// Lowercase name, as stored and as the CLI and API take it.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Useful => "useful",
            Label::Noise => "noise",
        }
    }

    /// Parses `useful` or `noise`.
    pub fn parse(s: &str) -> Option<Label> {
        match s.trim() {
            "useful" => Some(Label::Useful),
            "noise" => Some(Label::Noise),
            _ => None,
        }
    }
}

/// What an incident's alerts were, as a label keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledAlert {
    /// Rule.
    pub rule: String,
    /// Slice, in `group_by` order.
    pub group: Labels,
    /// Breach start (event time, ms).
    pub started_at: i64,
    /// When it fired (event time, ms).
    pub fired_at: i64,
    /// When it resolved, or the latest time the incident was seen.
    pub end: i64,
}

impl LabelledAlert {
    fn of(a: &AlertEvidence, seen_until: i64) -> LabelledAlert {
        LabelledAlert {
            rule: a.rule.clone(),
            group: a.group.clone(),
            started_at: a.started_at,
            fired_at: a.fired_at,
            end: a.resolved_at.unwrap_or(seen_until).max(a.fired_at),
        }
    }
}

/// One feedback entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    /// Entry id.
    pub id: i64,
    /// The incident's key.
    pub incident: String,
    /// `ack` or `label`.
    pub kind: String,
    /// The label (`useful`, `noise`) of a `label` entry.
    pub label: Option<Label>,
    /// Free text from the responder.
    pub note: String,
    /// Who.
    pub by: String,
    /// When (wall clock, ms).
    pub at_ms: i64,
    /// The labels the incident's alerts share (its route's `group_by`).
    pub labels: Labels,
    /// The incident's alerts when the entry was made.
    pub alerts: Vec<LabelledAlert>,
}

/// What a feedback entry stores about its incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Subject {
    /// The incident's grouping labels.
    pub(crate) labels: Labels,
    /// Its alerts.
    pub(crate) alerts: Vec<LabelledAlert>,
}

/// An incident's feedback folded: the first acknowledgement and the latest label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackState {
    /// The first acknowledgement.
    pub ack: Option<Feedback>,
    /// The latest label.
    pub label: Option<Feedback>,
}

/// The incident a feedback entry is about, found in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// Whether it is still open.
    pub(crate) open: bool,
    /// Its labels and alerts.
    pub(crate) subject: Subject,
}

/// What [`Outbox::record_feedback`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Stored with this id.
    Entry(i64),
    /// No incident of that key in the outbox.
    Unknown,
    /// An acknowledgement of an incident that is no longer open.
    NotOpen,
}

pub(super) const COLUMNS: &str = "id, incident, kind, label, note, by, at_ms, alerts";

pub(super) fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Feedback, String)> {
    let label: Option<String> = r.get(3)?;
    Ok((
        Feedback {
            id: r.get(0)?,
            incident: r.get(1)?,
            kind: r.get(2)?,
            label: label.as_deref().and_then(Label::parse),
            note: r.get(4)?,
            by: r.get(5)?,
            at_ms: r.get(6)?,
            labels: Labels::new(),
            alerts: Vec::new(),
        },
        r.get(7)?,
    ))
}

fn decode(rows: Vec<(Feedback, String)>) -> Result<Vec<Feedback>, OutboxError> {
    rows.into_iter()
        .map(|(mut f, subject)| {
            let s: Subject =
                serde_json::from_str(&subject).map_err(|source| OutboxError::Corrupt {
                    what: "feedback",
                    source,
                })?;
            f.labels = s.labels;
            f.alerts = s.alerts;
            Ok(f)
        })
        .collect()
}

/// Folds a log (oldest first) into each incident's state.
pub fn fold(entries: &[Feedback]) -> std::collections::BTreeMap<String, FeedbackState> {
    let mut out: std::collections::BTreeMap<String, FeedbackState> = Default::default();
    for f in entries {
        let s = out.entry(f.incident.clone()).or_default();
        match f.kind.as_str() {
            "ack" if s.ack.is_none() => s.ack = Some(f.clone()),
            "label" => s.label = Some(f.clone()),
            _ => {}
        }
    }
    out
}

impl Outbox {
    /// The incident `key`: open (its state) or past (its latest notification).
    pub(crate) fn known_incident(&self, key: &str) -> Result<Option<Known>, OutboxError> {
        let conn = self.conn()?;
        let open: Option<String> = conn
            .query_row(
                "SELECT state FROM incidents WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(state) = open {
            let inc: Incident =
                serde_json::from_str(&state).map_err(|source| OutboxError::Corrupt {
                    what: "incident",
                    source,
                })?;
            let until = inc
                .alerts
                .iter()
                .map(|a| a.resolved_at.unwrap_or(a.fired_at))
                .max()
                .unwrap_or(inc.started_at);
            return Ok(Some(Known {
                open: true,
                subject: Subject {
                    labels: inc.labels.clone(),
                    alerts: inc
                        .alerts
                        .iter()
                        .map(|a| LabelledAlert::of(a, until))
                        .collect(),
                },
            }));
        }
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM notifications WHERE incident = ?1 ORDER BY seq DESC, id DESC LIMIT 1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(body) = body else {
            return Ok(None);
        };
        let n: Notification =
            serde_json::from_str(&body).map_err(|source| OutboxError::Corrupt {
                what: "notification",
                source,
            })?;
        let until = n.resolved_at.unwrap_or(n.at);
        Ok(Some(Known {
            open: false,
            subject: Subject {
                labels: n.labels.clone(),
                alerts: n
                    .alerts
                    .iter()
                    .map(|a| LabelledAlert::of(a, until))
                    .collect(),
            },
        }))
    }

    /// Records feedback on the incident `key` after checking it: an
    /// acknowledgement (`label` `None`) needs an open incident, a label any
    /// incident the outbox knows (open, or with notifications kept).
    pub(crate) fn record_feedback(
        &self,
        key: &str,
        label: Option<Label>,
        note: &str,
        by: &str,
        now: i64,
    ) -> Result<Recorded, OutboxError> {
        let Some(known) = self.known_incident(key)? else {
            return Ok(Recorded::Unknown);
        };
        if label.is_none() && !known.open {
            return Ok(Recorded::NotOpen);
        }
        let id = self.add_feedback(key, label, note, by, &known.subject, now)?;
        Ok(Recorded::Entry(id))
    }

    /// Records feedback on `key`; `label` is `None` for an acknowledgement.
    /// Returns the entry id.
    pub(crate) fn add_feedback(
        &self,
        key: &str,
        label: Option<Label>,
        note: &str,
        by: &str,
        subject: &Subject,
        now: i64,
    ) -> Result<i64, OutboxError> {
        let alerts = serde_json::to_string(subject).map_err(|source| OutboxError::Corrupt {
            what: "feedback",
            source,
        })?;
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO feedback (incident, kind, label, note, by, at_ms, alerts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                key,
                if label.is_some() { "label" } else { "ack" },
                label.map(Label::as_str),
                note,
                by,
                now,
                alerts
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Every feedback entry, oldest first.
    pub fn feedback(&self) -> Result<Vec<Feedback>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM feedback ORDER BY id"))?;
        let rows = st.query_map([], entry)?.collect::<Result<_, _>>()?;
        decode(rows)
    }
}

/// The `meta` key of the last feedback entry whose acknowledgement the
/// incident manager has handled.
const ACKS_HANDLED: &str = "acks_handled";

/// An acknowledgement not yet handled by the incident manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingAck {
    /// Its feedback entry.
    pub(crate) id: i64,
    /// The incident's key.
    pub(crate) incident: String,
    /// Who.
    pub(crate) by: String,
    /// Their note.
    pub(crate) note: String,
    /// When (wall clock, ms).
    pub(crate) at_ms: i64,
}

impl Outbox {
    /// Whether an acknowledgement was recorded that the incident manager has
    /// not handled yet (one indexed read: cheap enough for every tick).
    pub(crate) fn has_pending_acks(&self) -> Result<bool, OutboxError> {
        let conn = self.conn()?;
        let v: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM feedback WHERE kind = 'ack'
                 AND id > COALESCE((SELECT value FROM meta WHERE key = ?1), 0) LIMIT 1",
                params![ACKS_HANDLED],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.is_some())
    }
}

impl Tx<'_> {
    /// The acknowledgements recorded since the last [`Tx::acks_handled`],
    /// oldest first.
    pub(crate) fn pending_acks(&self) -> Result<Vec<PendingAck>, OutboxError> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, incident, by, note, at_ms FROM feedback WHERE kind = 'ack'
             AND id > COALESCE((SELECT value FROM meta WHERE key = ?1), 0) ORDER BY id",
        )?;
        let rows = st
            .query_map(params![ACKS_HANDLED], |r| {
                Ok(PendingAck {
                    id: r.get(0)?,
                    incident: r.get(1)?,
                    by: r.get(2)?,
                    note: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Marks every acknowledgement up to entry `id` handled.
    pub(crate) fn acks_handled(&self, id: i64) -> Result<(), OutboxError> {
        self.tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![ACKS_HANDLED, id],
        )?;
        Ok(())
    }
}

/// Reads the feedback log of an outbox opened read-only (an outbox written
/// before feedback existed has none).
pub(crate) fn read_all(
    conn: &rusqlite::Connection,
) -> rusqlite::Result<Option<Vec<(Feedback, String)>>> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'feedback'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM feedback ORDER BY id"))?;
    let rows = st.query_map([], entry)?.collect::<Result<_, _>>()?;
    Ok(Some(rows))
}

/// Decodes what [`read_all`] read.
pub(crate) fn decode_all(rows: Vec<(Feedback, String)>) -> Result<Vec<Feedback>, OutboxError> {
    decode(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_outbox_gains_the_table_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        {
            // An outbox as an earlier version made it: no feedback table.
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE silences (id TEXT PRIMARY KEY, body TEXT NOT NULL, ends_ms INTEGER NOT NULL);
                 INSERT INTO silences VALUES ('s1', '{}', 5);",
            )
            .unwrap();
            assert!(read_all(&c).unwrap().is_none());
        }
        let ob = Outbox::open(dir.path()).unwrap();
        let n: i64 = ob
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM silences", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(ob.feedback().unwrap().is_empty());
        let alerts = Subject {
            labels: vec![("product".into(), "x".into())],
            alerts: vec![LabelledAlert {
                rule: "r".into(),
                group: vec![("product".into(), "x".into())],
                started_at: 1,
                fired_at: 2,
                end: 3,
            }],
        };
        ob.add_feedback("k", None, "", "ann", &alerts, 10).unwrap();
        ob.add_feedback("k", Some(Label::Useful), "", "bob", &alerts, 11)
            .unwrap();
        ob.add_feedback("k", Some(Label::Noise), "dup", "cy", &alerts, 12)
            .unwrap();
        ob.add_feedback("k", None, "", "dan", &alerts, 13).unwrap();
        let all = ob.feedback().unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].alerts, alerts.alerts);
        assert_eq!(all[0].labels, alerts.labels);
        let st = fold(&all);
        let k = &st["k"];
        assert_eq!(k.ack.as_ref().unwrap().by, "ann");
        assert_eq!(k.label.as_ref().unwrap().label, Some(Label::Noise));
        assert_eq!(k.label.as_ref().unwrap().note, "dup");
    }

    #[test]
    fn labels_parse() {
        assert_eq!(Label::parse("useful"), Some(Label::Useful));
        assert_eq!(Label::parse(" noise "), Some(Label::Noise));
        assert_eq!(Label::parse("spam"), None);
    }
}
