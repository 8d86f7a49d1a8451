//! Operators' close requests (`crisiswatch incident close`, `POST
//! /api/v1/incidents/close`), queued in the outbox database.
//!
//! The running service owns the open incidents in memory, so neither the CLI
//! nor the HTTP endpoint edits them: they queue a request, and the incident
//! manager applies it on its next tick (within a second), in the same
//! transaction that queues the incident's `resolve` and marks the request
//! done. A request made while no service runs is applied at the next start.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Outbox, OutboxError, Tx};

/// One close request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseRequest {
    /// Request id.
    pub(crate) id: i64,
    /// The incident's key (`dedup_key`).
    pub(crate) incident: String,
    /// Why the operator closes it (goes into the `resolve`'s summary).
    pub(crate) reason: String,
    /// Who asked.
    pub(crate) requested_by: String,
    /// When it was asked (wall clock, ms).
    pub(crate) requested_ms: i64,
    /// When it was applied (wall clock, ms); `None` while queued.
    pub(crate) done_ms: Option<i64>,
    /// `closed`, or `not_open` when the incident had resolved meanwhile.
    pub(crate) outcome: Option<String>,
}

fn request(r: &rusqlite::Row<'_>) -> rusqlite::Result<CloseRequest> {
    Ok(CloseRequest {
        id: r.get(0)?,
        incident: r.get(1)?,
        reason: r.get(2)?,
        requested_by: r.get(3)?,
        requested_ms: r.get(4)?,
        done_ms: r.get(5)?,
        outcome: r.get(6)?,
    })
}

const COLUMNS: &str = "id, incident, reason, requested_by, requested_ms, done_ms, outcome";

impl Outbox {
    /// Queues a request to close `incident`; returns its id.
    pub(crate) fn request_close(
        &self,
        incident: &str,
        reason: &str,
        requested_by: &str,
        now: i64,
    ) -> Result<i64, OutboxError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO close_requests (incident, reason, requested_by, requested_ms) VALUES (?1, ?2, ?3, ?4)",
            params![incident, reason, requested_by, now],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Requests not yet applied, oldest first.
    pub(crate) fn pending_close_requests(&self) -> Result<Vec<CloseRequest>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM close_requests WHERE done_ms IS NULL ORDER BY id"
        ))?;
        let out = st.query_map([], request)?.collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// One request by id.
    pub(crate) fn close_request(&self, id: i64) -> Result<Option<CloseRequest>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM close_requests WHERE id = ?1"
        ))?;
        let mut rows = st.query_map(params![id], request)?;
        Ok(rows.next().transpose()?)
    }

    /// Deletes applied requests older than `cutoff` (wall clock, ms).
    pub fn prune_close_requests(&self, cutoff: i64) -> Result<usize, OutboxError> {
        let conn = self.conn()?;
        Ok(conn.execute(
            "DELETE FROM close_requests WHERE done_ms IS NOT NULL AND done_ms < ?1",
            params![cutoff],
        )?)
    }
}

impl Tx<'_> {
    /// Marks request `id` applied with `outcome`.
    pub(crate) fn finish_close_request(&self, id: i64, outcome: &str) -> Result<(), OutboxError> {
        self.tx.execute(
            "UPDATE close_requests SET done_ms = ?1, outcome = ?2 WHERE id = ?3",
            params![self.now, outcome, id],
        )?;
        Ok(())
    }
}

impl Outbox {
    /// The event time of the latest notification of `incident` (what an
    /// earlier run told the receivers last), if it has any.
    pub(crate) fn last_notified_at(&self, incident: &str) -> Result<Option<i64>, OutboxError> {
        let conn = self.conn()?;
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM notifications WHERE incident = ?1 ORDER BY seq DESC LIMIT 1",
                params![incident],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.and_then(|b| {
            serde_json::from_str::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["at"].as_i64())
        }))
    }
}
