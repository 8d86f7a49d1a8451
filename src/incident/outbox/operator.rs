//! The operator's side of the outbox: listing, re-queueing dead letters,
//! pruning history, and the silences stored beside the notifications. Used by
//! `crisiswatch outbox|silence`, the silences HTTP endpoint and the manager.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{row, Outbox, OutboxError, RetryReport, Row, Status, ROW_COLUMNS};
use crate::incident::silence::Silence;

/// What one [`Outbox::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows removed in all: notifications (dead letters included), ledger
    /// entries and silences.
    pub(crate) rows: usize,
    /// Dead letters removed, per receiver (receivers with none are left out).
    pub(crate) dead_letters: Vec<(String, u64)>,
}

impl Outbox {
    /// Rows by status and receiver (newest first), at most `limit`.
    pub fn list(
        &self,
        status: Option<Status>,
        receiver: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, OutboxError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM notifications
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR receiver = ?2)
             ORDER BY id DESC LIMIT ?3"
        );
        let mut st = conn.prepare(&sql)?;
        let rows = st
            .query_map(
                params![status.map(Status::as_str), receiver, limit as i64],
                row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Pending notifications per receiver, by name (from the index: no body
    /// is read).
    pub fn pending_by_receiver(&self) -> Result<Vec<(String, u64)>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT receiver, COUNT(*) FROM notifications
             WHERE status = 'pending' GROUP BY receiver ORDER BY receiver",
        )?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(rec, n)| (rec, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// How many notifications [`Outbox::list`] would show without a limit.
    pub fn count(
        &self,
        status: Option<Status>,
        receiver: Option<&str>,
    ) -> Result<u64, OutboxError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM notifications
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR receiver = ?2)",
            params![status.map(Status::as_str), receiver],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Notifications delivered at or after `since_ms` (wall clock).
    pub fn delivered_since(&self, since_ms: i64) -> Result<u64, OutboxError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM notifications WHERE status = 'delivered' AND done_ms >= ?1",
            params![since_ms],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Queues dead letters (and failed ones with `include_failed`) again: all
    /// of them, or those in `ids`, optionally of one receiver. A row whose
    /// incident already got a later notification through is marked
    /// `superseded` instead, so a receiver never sees an incident go backwards.
    pub fn retry(
        &self,
        ids: &[i64],
        receiver: Option<&str>,
        include_failed: bool,
        now: i64,
    ) -> Result<RetryReport, OutboxError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: Vec<(i64, String, String, u32)> = {
            let mut st = tx.prepare(
                "SELECT id, receiver, incident, seq FROM notifications
                 WHERE (status = 'dead' OR (?1 AND status = 'failed'))
                   AND (?2 IS NULL OR receiver = ?2) ORDER BY id",
            )?;
            let rows = st
                .query_map(params![include_failed, receiver], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            rows
        };
        let mut report = RetryReport::default();
        for (id, rec, incident, seq) in candidates {
            if !ids.is_empty() && !ids.contains(&id) {
                continue;
            }
            let later: Option<i64> = tx
                .query_row(
                    "SELECT id FROM notifications WHERE receiver = ?1 AND incident = ?2 AND seq > ?3 AND status = 'delivered' LIMIT 1",
                    params![rec, incident, seq],
                    |r| r.get(0),
                )
                .optional()?;
            if later.is_some() {
                tx.execute(
                    "UPDATE notifications SET status = 'superseded', done_ms = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                report.superseded.push(id);
            } else {
                tx.execute(
                    "UPDATE notifications SET status = 'pending', attempts = 0, created_ms = ?2,
                     next_attempt_ms = ?2, done_ms = NULL WHERE id = ?1",
                    params![id, now],
                )?;
                report.requeued.push(id);
            }
        }
        for &id in ids {
            if report.requeued.contains(&id) || report.superseded.contains(&id) {
                continue;
            }
            let known: Option<i64> = tx
                .query_row(
                    "SELECT id FROM notifications WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() && !report.unknown.contains(&id) {
                report.unknown.push(id);
            }
        }
        tx.commit()?;
        Ok(report)
    }

    /// Pending rows across `receivers`.
    pub(crate) fn pending_total(&self, receivers: &[String]) -> Result<i64, OutboxError> {
        let mut total = 0;
        for r in receivers {
            total += self.queue_stats(r)?.pending;
        }
        Ok(total)
    }

    /// Deletes finished rows — delivered, failed, muted, superseded and dead
    /// letters — and ledger entries older than `retention_ms`, and silences
    /// that ended that long ago. A dead letter's age counts from when it was
    /// dead-lettered; until then `crisiswatch outbox retry` can re-queue it.
    pub(crate) fn prune(&self, now: i64, retention_ms: i64) -> Result<Pruned, OutboxError> {
        let cutoff = now.saturating_sub(retention_ms);
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let dead_letters: Vec<(String, u64)> = {
            let mut st = tx.prepare(
                "SELECT receiver, COUNT(*) FROM notifications
                 WHERE status = 'dead' AND done_ms < ?1 GROUP BY receiver ORDER BY receiver",
            )?;
            let rows = st
                .query_map(params![cutoff], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(rec, n)| (rec, u64::try_from(n).unwrap_or(0)))
                .collect()
        };
        let mut rows = tx.execute(
            "DELETE FROM notifications WHERE status IN ('delivered', 'failed', 'muted', 'superseded', 'dead') AND done_ms < ?1",
            params![cutoff],
        )?;
        rows += tx.execute(
            "DELETE FROM applied WHERE recorded_ms < ?1",
            params![cutoff],
        )?;
        rows += tx.execute("DELETE FROM silences WHERE ends_ms < ?1", params![cutoff])?;
        tx.commit()?;
        Ok(Pruned { rows, dead_letters })
    }

    /// Stores a silence.
    pub fn add_silence(&self, s: &Silence) -> Result<(), OutboxError> {
        let body = serde_json::to_string(s).map_err(|source| OutboxError::Corrupt {
            what: "silence",
            source,
        })?;
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR REPLACE INTO silences (id, body, ends_ms) VALUES (?1, ?2, ?3)",
            params![s.id, body, s.ends_at],
        )?;
        Ok(())
    }

    /// Every stored silence, latest ending first.
    pub fn silences(&self) -> Result<Vec<Silence>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached("SELECT body FROM silences ORDER BY ends_ms DESC, id")?;
        let bodies: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b).map_err(|source| OutboxError::Corrupt {
                    what: "silence",
                    source,
                })
            })
            .collect()
    }

    /// Ends a silence at `now`; `false` if there is no such silence.
    pub(crate) fn expire_silence(&self, id: &str, now: i64) -> Result<bool, OutboxError> {
        let Some(mut s) = self.silences()?.into_iter().find(|s| s.id == id) else {
            return Ok(false);
        };
        s.ends_at = s.ends_at.min(now);
        self.add_silence(&s)?;
        Ok(true)
    }
}
