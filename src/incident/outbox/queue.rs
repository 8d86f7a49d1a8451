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

// The queue's queries: each reads the covering index `notifications_pending`
// only, and a row (its body) only for what it returns (`tests::plans`).

/// Each incident's oldest pending row of a receiver, if due (`FROM` on).
const DUE: &str = "FROM notifications n
     WHERE receiver = ?1 AND status = 'pending' AND next_attempt_ms <= ?2
       AND NOT EXISTS (SELECT 1 FROM notifications p
           WHERE p.receiver = n.receiver AND p.incident = n.incident
             AND p.status = 'pending' AND p.id < n.id)
     ORDER BY id LIMIT ?3";

/// When the earliest of those is due.
const NEXT_DUE: &str = "SELECT MIN(next_attempt_ms) FROM notifications n
     WHERE receiver = ?1 AND status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM notifications p
           WHERE p.receiver = n.receiver AND p.incident = n.incident
             AND p.status = 'pending' AND p.id < n.id)";

/// A receiver's pending rows and the oldest one's enqueue time.
const DEPTH: &str = "SELECT COUNT(*), MIN(created_ms) FROM notifications
     WHERE receiver = ?1 AND status = 'pending'";

/// A receiver's dead letters.
const DEAD: &str = "SELECT COUNT(*) FROM notifications WHERE receiver = ?1 AND status = 'dead'";

/// What an Alertmanager re-push repeats (see [`Outbox::firing`]).
const FIRING: &str = "SELECT body FROM notifications n WHERE receiver = ?1 AND status = 'delivered'
       AND seq = (SELECT MAX(seq) FROM notifications m INDEXED BY notifications_pending
                  WHERE m.receiver = n.receiver AND m.status = 'delivered'
                  AND m.incident = n.incident)
       AND action != 'resolve'
       AND NOT EXISTS (SELECT 1 FROM notifications r WHERE r.receiver = n.receiver
                  AND r.incident = n.incident AND r.action = 'resolve'
                  AND r.status IN ('failed', 'dead', 'muted', 'superseded'))
       ORDER BY id";

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
        let sql = format!("SELECT {ROW_COLUMNS} {DUE}");
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
        let v = conn.query_row(NEXT_DUE, params![receiver], |r| r.get::<_, Option<i64>>(0))?;
        Ok(v)
    }

    /// Marks a row finished with `status` (delivered, failed, dead) and the
    /// last error. Only a row still queued: one handed with its incident to
    /// another instance while its request was in flight keeps its mark (the
    /// new owner sends it), unless this request delivered it.
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
            "UPDATE notifications SET status = ?2, attempts = ?3, last_error = COALESCE(?4, last_error), done_ms = ?5
             WHERE id = ?1 AND (status = 'pending' OR ?2 = 'delivered')",
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

    /// Schedules another attempt (of a row still queued: see [`Outbox::finish`]).
    pub(crate) fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE notifications SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4
             WHERE id = ?1 AND status = 'pending'",
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
        let (pending, oldest) = conn.query_row(DEPTH, params![receiver], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let dead = conn.query_row(DEAD, params![receiver], |r| r.get::<_, i64>(0))?;
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
    ///
    /// Of a scaled instance's outbox, only the incidents it holds, as
    /// [`Outbox::firing_held`] shows them: one that went to another instance
    /// is re-pushed (and resolved) by that one — re-pushed from here too,
    /// it came back firing after its resolve.
    pub(crate) fn firing(&self, receiver: &str) -> Result<Vec<Notification>, OutboxError> {
        if self.is_scaled() {
            return self.firing_held(receiver);
        }
        let conn = self.conn()?;
        let mut st = conn.prepare(FIRING)?;
        let bodies: Vec<String> = st
            .query_map(params![receiver], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(bodies.len());
        for b in &bodies {
            let n: Notification =
                serde_json::from_str(b).map_err(|source| OutboxError::Corrupt {
                    what: "notification",
                    source,
                })?;
            out.push(n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every queue query reads the covering index, never the table (whose
    /// rows hold the bodies): a row is read only for what a query returns.
    /// An outbox made with the earlier index gets the new one at open.
    #[test]
    fn plans() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join("outbox.sqlite")).unwrap();
            conn.execute_batch(
                "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT,
                   receiver TEXT NOT NULL, incident TEXT NOT NULL, seq INTEGER NOT NULL,
                   action TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
                   created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                   next_attempt_ms INTEGER NOT NULL, last_error TEXT, done_ms INTEGER,
                   UNIQUE (receiver, incident, seq));
                 CREATE INDEX notifications_queue ON notifications (receiver, status, incident, id);",
            )
            .unwrap();
        }
        let ob = Outbox::open(dir.path()).unwrap();
        let conn = ob.conn().unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'notifications'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            indexes.contains(&"notifications_pending".to_string()),
            "{indexes:?}"
        );
        assert!(
            !indexes.contains(&"notifications_queue".to_string()),
            "{indexes:?}"
        );
        let due = format!("SELECT id {DUE}");
        // The re-push returns bodies: its rows are read, only once the
        // index has picked them (SQLite defers the row's read).
        let firing = FIRING.replacen("SELECT body", "SELECT id", 1);
        for sql in [
            due.as_str(),
            NEXT_DUE,
            DEPTH,
            DEAD,
            firing.as_str(),
            super::super::handoff::IDS_OF_STATUS,
        ] {
            let n = sql.matches('?').count().max(1);
            let args: Vec<rusqlite::types::Value> =
                (0..n).map(|_| rusqlite::types::Value::Integer(1)).collect();
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let reads: Vec<&String> = plan
                .iter()
                .filter(|d| d.starts_with("SEARCH") || d.starts_with("SCAN"))
                .collect();
            assert!(!reads.is_empty(), "{sql}: {plan:?}");
            for d in reads {
                assert!(
                    d.contains("COVERING INDEX notifications_pending"),
                    "{sql}: {plan:?}"
                );
            }
        }
    }

    /// Whether a receiver heard of an incident: any row but a muted one.
    #[test]
    fn announced_is_any_status_but_muted() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        for status in Status::ALL {
            let conn = ob.conn().unwrap();
            conn.execute(
                "INSERT INTO notifications (receiver, incident, seq, action, body, status, created_ms, next_attempt_ms)
                 VALUES ('r', ?1, 0, 'open', '{}', ?1, 0, 0)",
                rusqlite::params![status.as_str()],
            )
            .unwrap();
            drop(conn);
            let heard = ob
                .transaction(0, |tx| tx.announced("r", status.as_str()))
                .unwrap();
            assert_eq!(heard, status != Status::Muted, "{status:?}");
        }
    }
}
