//! The delivery workers' side of the outbox: each receiver's queue. What is
//! due (each incident's oldest pending row, so an incident's notifications go
//! out in order) and when the next one is; an attempt's outcome (delivered,
//! failed, retried later); dead letters past `max_age`; the queue's depth for
//! the gauges; and the alerts an Alertmanager re-push repeats. Used by
//! [`crate::incident::delivery`].

use rusqlite::{params, TransactionBehavior};

use super::{row, Outbox, OutboxError, Row, Status, ROW_COLUMNS};
use crate::incident::model::Notification;

/// The dead-letter reason of a notification never attempted before `max_age`.
const NOT_ATTEMPTED: &str = "not attempted before max_age: the receiver was held (circuit breaker or Retry-After) or an earlier notification of the incident was pending";

/// Depth of one receiver's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Pending rows.
    pub pending: i64,
    /// Enqueue time of the oldest pending row, ms.
    pub(crate) oldest_ms: Option<i64>,
    /// Dead letters kept.
    pub(crate) dead: i64,
}

// === impl Outbox ===

impl Outbox {
    /// Pending rows of `receiver` due at `now`: for each incident only its
    /// oldest pending row (order per incident), oldest first.
    pub(crate) fn due(
        &self,
        receiver: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Row>, OutboxError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM notifications n
             WHERE receiver = ?1 AND status = 'pending' AND next_attempt_ms <= ?2
               AND NOT EXISTS (SELECT 1 FROM notifications p
                   WHERE p.receiver = n.receiver AND p.incident = n.incident
                     AND p.status = 'pending' AND p.id < n.id)
             ORDER BY id LIMIT ?3"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st
            .query_map(params![receiver, now, limit as i64], row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The earliest next attempt among the rows [`Outbox::due`] can return:
    /// each incident's oldest pending row. (The rows queued behind one in
    /// backoff carry their creation time, in the past: counting them woke the
    /// receiver's worker at once, again and again, for the whole backoff.)
    pub(crate) fn next_due(&self, receiver: &str) -> Result<Option<i64>, OutboxError> {
        let conn = self.conn()?;
        let v = conn.query_row(
            "SELECT MIN(next_attempt_ms) FROM notifications n
             WHERE receiver = ?1 AND status = 'pending'
               AND NOT EXISTS (SELECT 1 FROM notifications p
                   WHERE p.receiver = n.receiver AND p.incident = n.incident
                     AND p.status = 'pending' AND p.id < n.id)",
            params![receiver],
            |r| r.get::<_, Option<i64>>(0),
        )?;
        Ok(v)
    }

    /// Marks a row finished with `status` (failed, dead) and the last error.
    pub(crate) fn finish(
        &self,
        id: i64,
        status: Status,
        attempts: u32,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), OutboxError> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE notifications SET status = ?2, attempts = ?3, last_error = COALESCE(?4, last_error), done_ms = ?5 WHERE id = ?1",
            params![id, status.as_str(), attempts, error, now],
        )?;
        Ok(())
    }

    /// Makes `receiver`'s pending rows that wait for a retry after `now` due
    /// at `now` (the receiver's settings changed: its old backoff was
    /// about the old destination); returns how many. Attempts are kept.
    pub(crate) fn due_now(&self, receiver: &str, now: i64) -> Result<usize, OutboxError> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE notifications SET next_attempt_ms = ?2
             WHERE receiver = ?1 AND status = 'pending' AND next_attempt_ms > ?2",
            params![receiver, now],
        )?;
        Ok(n)
    }

    /// Schedules another attempt.
    pub(crate) fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE notifications SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_ms, error],
        )?;
        Ok(())
    }

    /// Dead-letters `receiver`'s pending rows enqueued at or before `cutoff`; returns them.
    pub(crate) fn expire(
        &self,
        receiver: &str,
        cutoff: i64,
        now: i64,
    ) -> Result<Vec<Row>, OutboxError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<Row> = {
            let sql = format!(
                "SELECT {ROW_COLUMNS} FROM notifications WHERE receiver = ?1 AND status = 'pending' AND created_ms <= ?2 ORDER BY id"
            );
            let mut st = tx.prepare(&sql)?;
            let rows = st
                .query_map(params![receiver, cutoff], row)?
                .collect::<Result<_, _>>()?;
            rows
        };
        let mut rows = rows;
        for r in &mut rows {
            // The reason, as the row keeps it (so the log says it too).
            let why = r
                .last_error
                .get_or_insert_with(|| NOT_ATTEMPTED.to_string());
            tx.execute(
                "UPDATE notifications SET status = 'dead', done_ms = ?2, last_error = ?3 WHERE id = ?1",
                params![r.id, now, why.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Queue depth, oldest pending and dead letters of `receiver`.
    pub fn queue_stats(&self, receiver: &str) -> Result<QueueStats, OutboxError> {
        let conn = self.conn()?;
        let (pending, oldest) = conn.query_row(
            "SELECT COUNT(*), MIN(created_ms) FROM notifications WHERE receiver = ?1 AND status = 'pending'",
            params![receiver],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        let dead = conn.query_row(
            "SELECT COUNT(*) FROM notifications WHERE receiver = ?1 AND status = 'dead'",
            params![receiver],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(QueueStats {
            pending,
            oldest_ms: oldest,
            dead,
        })
    }

    /// For each incident whose latest delivered notification to `receiver` is
    /// not a resolve, that notification (what an Alertmanager re-push repeats)
    /// — unless its resolve was refused, dead-lettered, muted or superseded:
    /// such an incident is over, and is left to end at its last `endsAt`.
    pub(crate) fn firing(&self, receiver: &str) -> Result<Vec<Notification>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT body FROM notifications n WHERE receiver = ?1 AND status = 'delivered'
               AND seq = (SELECT MAX(seq) FROM notifications m WHERE m.receiver = n.receiver
                          AND m.incident = n.incident AND m.status = 'delivered')
               AND action != 'resolve'
               AND NOT EXISTS (SELECT 1 FROM notifications r WHERE r.receiver = n.receiver
                          AND r.incident = n.incident AND r.action = 'resolve'
                          AND r.status IN ('failed', 'dead', 'muted', 'superseded'))
               ORDER BY id",
        )?;
        let bodies: Vec<String> = st
            .query_map(params![receiver], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b).map_err(|source| OutboxError::Corrupt {
                    what: "notification",
                    source,
                })
            })
            .collect()
    }
}
