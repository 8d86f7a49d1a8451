//! The outbox side of operator actions shared by the instances of a scaled
//! group (`sources.kafka.scale_out`, see `src/run/scaled/controls.rs`): the
//! instance's id, silences merged from other instances, close outcomes this
//! instance decided (kept until they are on the controls topic), and the
//! feedback entries that came from other instances (so they are not sent
//! back as this instance's own).
//!
//! Three tables, created with the others when the outbox opens:
//! `control_outcomes (key, body)` — a close request of any instance that
//! this one applied (or answered `not_open` because nobody held its
//! incident), written in the transaction that queues the `resolve`;
//! `control_feedback (local_id, key)` — which local feedback rows are copies
//! of another instance's entries; `control_holdings (instance, body)` — the
//! other instances' latest open incidents, so that the CLI (a separate
//! process) knows who holds what.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::feedback::{self, Feedback, Label, Recorded, Subject};
use super::{Outbox, OutboxError, Tx};
use crate::incident::peers::{Holding, Peers};
use crate::incident::silence::Silence;

impl Outbox {
    /// This outbox's instance id (12 hex digits), made once and kept in the
    /// `meta` table: the same after a restart, different for every data
    /// directory.
    pub(crate) fn instance_id(&self) -> Result<String, OutboxError> {
        let conn = self.conn()?;
        let found: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'instance_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let v = match found {
            Some(v) => v,
            None => {
                let v = (rand::random::<u64>() & 0xffff_ffff_ffff) as i64;
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
                    params![v],
                )?;
                conn.query_row(
                    "SELECT value FROM meta WHERE key = 'instance_id'",
                    [],
                    |r| r.get(0),
                )?
            }
        };
        Ok(format!("{v:012x}"))
    }

    /// Takes in a silence from another instance: stored when new; an
    /// existing one only ever ends earlier (an expiry anywhere wins).
    /// `true` when the stored silence changed.
    pub(crate) fn merge_silence(&self, s: &Silence) -> Result<bool, OutboxError> {
        let current = self.silences()?.into_iter().find(|x| x.id == s.id);
        match current {
            None => self.add_silence(s)?,
            Some(mut c) if s.ends_at < c.ends_at => {
                c.ends_at = s.ends_at;
                self.add_silence(&c)?;
            }
            Some(_) => return Ok(false),
        }
        Ok(true)
    }

    /// Marks close request `id` done with `outcome` at `done_ms` unless it
    /// already is; `true` when it changed.
    pub(crate) fn finish_close_if_pending(
        &self,
        id: i64,
        outcome: &str,
        done_ms: i64,
    ) -> Result<bool, OutboxError> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE close_requests SET done_ms = ?1, outcome = ?2 WHERE id = ?3 AND done_ms IS NULL",
            params![done_ms, outcome, id],
        )?;
        Ok(n == 1)
    }

    /// Every close outcome this instance decided: (topic key, record).
    pub(crate) fn control_outcomes(&self) -> Result<Vec<(String, String)>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached("SELECT key, body FROM control_outcomes ORDER BY key")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Whether this instance decided the close request of topic key `key`.
    pub(crate) fn has_control_outcome(&self, key: &str) -> Result<bool, OutboxError> {
        let conn = self.conn()?;
        let v: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM control_outcomes WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.is_some())
    }

    /// Whether incident `key` can be closed from here: open in this outbox,
    /// or held by another running instance of the group (`peers`).
    pub(crate) fn closable(&self, peers: Option<&Peers>, key: &str) -> Result<bool, OutboxError> {
        if peers.is_some_and(|p| p.holder(key).is_some()) {
            return Ok(true);
        }
        Ok(self.load_incidents()?.iter().any(|i| i.key == key))
    }

    /// Records feedback as [`Outbox::record_feedback`] does, and also for an
    /// incident another running instance holds (`peers`): recorded with its
    /// labels (its holder adds its alerts), it reaches the holder through
    /// the controls topic. The admin API, the console and the CLI use this.
    pub(crate) fn record_shared_feedback(
        &self,
        peers: Option<&Peers>,
        key: &str,
        label: Option<Label>,
        note: &str,
        by: &str,
        now: i64,
    ) -> Result<Recorded, OutboxError> {
        let held = peers.and_then(|p| p.holder(key));
        match (self.record_feedback(key, label, note, by, now)?, held) {
            (Recorded::Unknown | Recorded::NotOpen, Some((_, h))) => {
                let subject = Subject {
                    labels: h.labels,
                    alerts: Vec::new(),
                };
                self.add_feedback(key, label, note, by, &subject, now)
                    .map(Recorded::Entry)
            }
            (r, _) => Ok(r),
        }
    }

    /// Answers this instance's close request `id` itself with `outcome`
    /// at `done_ms`, unless it is already done, and records the outcome
    /// record `body` under topic key `key` (published like an owner's), in
    /// one transaction.
    pub(crate) fn answer_close_request(
        &self,
        id: i64,
        outcome: &str,
        done_ms: i64,
        key: &str,
        body: &str,
    ) -> Result<(), OutboxError> {
        self.transaction(done_ms, |tx| {
            tx.tx.execute(
                "UPDATE close_requests SET done_ms = ?1, outcome = ?2 WHERE id = ?3 AND done_ms IS NULL",
                params![done_ms, outcome, id],
            )?;
            tx.record_control_outcome(key, body)
        })
    }

    /// Drops the close outcome of topic key `key` (its tombstone was read:
    /// it is past the retention on every instance).
    pub(crate) fn forget_control_outcome(&self, key: &str) -> Result<(), OutboxError> {
        let conn = self.conn()?;
        conn.execute("DELETE FROM control_outcomes WHERE key = ?1", params![key])?;
        Ok(())
    }

    /// Keeps another instance's latest holding (for the CLI).
    pub(crate) fn store_holding(&self, h: &Holding) -> Result<(), OutboxError> {
        let body = serde_json::to_string(h).map_err(|source| OutboxError::Corrupt {
            what: "holding",
            source,
        })?;
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR REPLACE INTO control_holdings (instance, body) VALUES (?1, ?2)",
            params![h.instance, body],
        )?;
        Ok(())
    }

    /// Forgets an instance's holding (it stopped).
    pub(crate) fn forget_holding(&self, instance: &str) -> Result<(), OutboxError> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM control_holdings WHERE instance = ?1",
            params![instance],
        )?;
        Ok(())
    }

    /// The other instances' holdings kept by [`Outbox::store_holding`].
    pub(crate) fn holdings(&self) -> Result<Vec<Holding>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached("SELECT body FROM control_holdings ORDER BY instance")?;
        let bodies: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b).map_err(|source| OutboxError::Corrupt {
                    what: "holding",
                    source,
                })
            })
            .collect()
    }

    /// Feedback entries made on this instance (not copies of another
    /// instance's), oldest first.
    pub(crate) fn own_feedback(&self) -> Result<Vec<Feedback>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {} FROM feedback WHERE id NOT IN (SELECT local_id FROM control_feedback) ORDER BY id",
            feedback::COLUMNS
        ))?;
        let rows = st
            .query_map([], feedback::entry)?
            .collect::<Result<_, _>>()?;
        feedback::decode_all(rows)
    }

    /// Stores a copy of another instance's feedback entry (topic key `key`)
    /// once; `true` when it was new. The incident manager then sends an
    /// acknowledgement's `acknowledge` if this instance holds the incident.
    pub(crate) fn add_shared_feedback(&self, key: &str, f: &Feedback) -> Result<bool, OutboxError> {
        let subject = Subject {
            labels: f.labels.clone(),
            alerts: f.alerts.clone(),
        };
        let alerts = serde_json::to_string(&subject).map_err(|source| OutboxError::Corrupt {
            what: "feedback",
            source,
        })?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT local_id FROM control_feedback WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO feedback (incident, kind, label, note, by, at_ms, alerts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                f.incident,
                f.kind,
                f.label.map(feedback::Label::as_str),
                f.note,
                f.by,
                f.at_ms,
                alerts
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO control_feedback (local_id, key) VALUES (?1, ?2)",
            params![id, key],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

impl Tx<'_> {
    /// Records that this instance decided close request `key` (`body`: the
    /// outcome record for the controls topic).
    pub(crate) fn record_control_outcome(&self, key: &str, body: &str) -> Result<(), OutboxError> {
        self.tx.execute(
            "INSERT OR REPLACE INTO control_outcomes (key, body) VALUES (?1, ?2)",
            params![key, body],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::silence::Matcher;

    #[test]
    fn ids_stay_silences_only_shorten_and_copies_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        let id = ob.instance_id().unwrap();
        assert_eq!(id.len(), 12);
        assert_eq!(ob.instance_id().unwrap(), id);

        let s = Silence::new(
            vec![Matcher::parse("product=p1").unwrap()],
            1_000,
            10_000,
            "ann".into(),
            String::new(),
        )
        .unwrap();
        assert!(ob.merge_silence(&s).unwrap());
        assert!(!ob.merge_silence(&s).unwrap());
        let mut longer = s.clone();
        longer.ends_at += 5_000;
        assert!(!ob.merge_silence(&longer).unwrap());
        let mut shorter = s.clone();
        shorter.ends_at = 2_000;
        assert!(ob.merge_silence(&shorter).unwrap());
        assert_eq!(ob.silences().unwrap()[0].ends_at, 2_000);

        let f = Feedback {
            id: 7,
            incident: "k".into(),
            kind: "ack".into(),
            label: None,
            note: "on it".into(),
            by: "bob".into(),
            at_ms: 5,
            labels: vec![("product".into(), "p1".into())],
            alerts: Vec::new(),
        };
        assert!(ob.add_shared_feedback("feedback/a/7", &f).unwrap());
        assert!(!ob.add_shared_feedback("feedback/a/7", &f).unwrap());
        assert_eq!(ob.feedback().unwrap().len(), 1);
        assert!(ob.own_feedback().unwrap().is_empty());
        ob.add_feedback("k", None, "", "cy", &Subject::default(), 6)
            .unwrap();
        assert_eq!(ob.own_feedback().unwrap().len(), 1);

        let req = ob.request_close("k", "dup", "ann", 1).unwrap();
        assert!(ob.finish_close_if_pending(req, "closed", 9).unwrap());
        assert!(!ob.finish_close_if_pending(req, "not_open", 10).unwrap());
        assert_eq!(
            ob.close_request(req).unwrap().unwrap().outcome.as_deref(),
            Some("closed")
        );
        ob.transaction(1, |tx| tx.record_control_outcome("closed/a/1", "{}"))
            .unwrap();
        assert!(ob.has_control_outcome("closed/a/1").unwrap());
        assert_eq!(ob.control_outcomes().unwrap().len(), 1);
        ob.forget_control_outcome("closed/a/1").unwrap();
        assert!(!ob.has_control_outcome("closed/a/1").unwrap());

        // Answered by this instance itself: done once, outcome recorded.
        let req = ob.request_close("gone", "late", "ann", 1).unwrap();
        ob.answer_close_request(req, "not_open", 20, "closed/me/2", "{}")
            .unwrap();
        ob.answer_close_request(req, "closed", 30, "closed/me/2", "{}")
            .unwrap();
        let r = ob.close_request(req).unwrap().unwrap();
        assert_eq!(
            (r.outcome.as_deref(), r.done_ms),
            (Some("not_open"), Some(20))
        );
        assert!(ob.has_control_outcome("closed/me/2").unwrap());
    }

    #[test]
    fn incidents_held_elsewhere_take_closes_and_feedback_from_here() {
        use crate::incident::peers::Held;
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        let h = Holding {
            instance: "b".into(),
            listen: "127.0.0.1:1".into(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            incidents: vec![Held {
                key: "k".into(),
                route: "r".into(),
                labels: vec![("product".into(), "p1".into())],
                partition: 1,
                started_at: 0,
                severity: None,
                opened: true,
            }],
        };
        ob.store_holding(&h).unwrap();
        ob.store_holding(&h).unwrap();
        let peers = Peers::stored(&ob).unwrap();
        assert!(ob.closable(Some(&peers), "k").unwrap());
        assert!(!ob.closable(None, "k").unwrap());
        assert!(!ob.closable(Some(&peers), "other").unwrap());
        assert!(matches!(
            ob.record_shared_feedback(Some(&peers), "k", None, "on it", "ana", 5)
                .unwrap(),
            Recorded::Entry(_)
        ));
        assert_eq!(ob.feedback().unwrap()[0].labels, h.incidents[0].labels);
        assert!(matches!(
            ob.record_shared_feedback(None, "k", None, "", "ana", 6)
                .unwrap(),
            Recorded::Unknown
        ));
        ob.forget_holding("b").unwrap();
        assert!(ob.holdings().unwrap().is_empty());
    }
}
