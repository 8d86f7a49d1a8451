//! An incident's timeline as the console shows it: every notification once
//! (open, updates, resolve), with what each receiver did with it.

use rusqlite::params;

use super::{Outbox, OutboxError, Status};
use crate::incident::model::Notification;

/// One notification of an incident, once for all receivers.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The notification (the first receiver's copy).
    pub(crate) notification: Notification,
    /// (receiver, status), by receiver.
    pub(crate) deliveries: Vec<(String, Status)>,
}

impl Outbox {
    /// The notifications of incident `key`, by seq (at most `limit`, the latest).
    pub(crate) fn timeline(&self, key: &str, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(
            "SELECT seq, receiver, status, body FROM notifications WHERE incident = ?1
             AND seq > COALESCE((SELECT MAX(seq) FROM notifications WHERE incident = ?1), 0) - ?2
             ORDER BY seq, receiver",
        )?;
        let rows: Vec<(u32, String, String, String)> = st
            .query_map(params![key, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out: Vec<(u32, Entry)> = Vec::new();
        for (seq, receiver, status, body) in rows {
            let status = Status::parse(&status).unwrap_or(Status::Pending);
            if let Some((_, e)) = out.last_mut().filter(|(s, _)| *s == seq) {
                e.deliveries.push((receiver, status));
                continue;
            }
            let notification: Notification =
                serde_json::from_str(&body).map_err(|source| OutboxError::Corrupt {
                    what: "notification",
                    source,
                })?;
            out.push((
                seq,
                Entry {
                    notification,
                    deliveries: vec![(receiver, status)],
                },
            ));
        }
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }
}

impl Outbox {
    /// Notifications stored after row `after` (once per incident and seq,
    /// in the order they were written) and the last row id seen.
    pub(crate) fn notifications_after(
        &self,
        after: i64,
    ) -> Result<(i64, Vec<Notification>), OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(
            "SELECT MIN(id), MAX(id), body FROM notifications WHERE id > ?1
             GROUP BY incident, seq ORDER BY MIN(id)",
        )?;
        let rows: Vec<(i64, i64, String)> = st
            .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let last = rows.iter().map(|r| r.1).max().unwrap_or(after);
        let out = rows
            .into_iter()
            .map(|(_, _, body)| {
                serde_json::from_str(&body).map_err(|source| OutboxError::Corrupt {
                    what: "notification",
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((last, out))
    }
}
