//! A read-only view of an outbox database, for looking back at incidents
//! (`crisiswatch review --outbox`).
//!
//! It opens `outbox.sqlite` with `SQLITE_OPEN_READ_ONLY`: it never creates
//! the file, never takes a write lock, and reads a consistent snapshot
//! ([`OutboxReader::snapshot`]) while the live service keeps writing (WAL
//! mode). It gives back what the incident stage recorded: every notification
//! once per (incident, seq) with its deliveries per receiver, the open
//! incidents, and the ledger of applied alert transitions (exact times and
//! severities of every transition).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::alert::State;
use crate::config::Severity;
use crate::incident::lifecycle::Incident;
use crate::incident::model::{Action, Notification, Reason};

use super::Status;

/// The file name of the outbox inside a data directory.
pub const OUTBOX_FILE: &str = "outbox.sqlite";

/// The tables that make a SQLite file a crisiswatch outbox.
const TABLES: [&str; 3] = ["notifications", "incidents", "applied"];

/// Errors of reading an outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxReadError {
    /// Nothing at the path.
    #[error("no outbox at {path}: the file does not exist; give the service's data directory (`incidents.data_dir`) or its {OUTBOX_FILE}")]
    Missing {
        /// The path looked at.
        path: String,
    },
    /// The file is not SQLite, or lacks the outbox tables.
    #[error("{path} is not a crisiswatch outbox ({detail})")]
    NotAnOutbox {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// SQLite failed while reading.
    #[error("cannot read the outbox {path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A stored record could not be decoded.
    #[error("{path}: corrupt {what} {id}: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What was being read.
        what: &'static str,
        /// Which row.
        id: String,
        /// The decoding error.
        detail: String,
    },
}

/// One notification of an incident, once, with what each receiver did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNotification {
    /// The notification as the lifecycle produced it. A receiver that had not
    /// heard of the incident gets an update as an `open`; here the action is
    /// the lifecycle's own (see `sent_as_open`).
    pub(crate) notification: Notification,
    /// (receiver, status) for every receiver it was recorded for, by receiver.
    pub(crate) deliveries: Vec<(String, Status)>,
    /// Receivers that got this update as an `open` (their first unmuted one).
    pub(crate) sent_as_open: Vec<String>,
}

/// One applied alert transition from the outbox's ledger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppliedTransition {
    /// The state entered.
    pub(crate) state: State,
    /// Severity after it.
    pub(crate) severity: Severity,
    /// Event time, ms.
    pub(crate) at: i64,
}

/// A read-only connection to an outbox.
#[derive(Debug)]
pub struct OutboxReader {
    conn: Connection,
    path: PathBuf,
}

// === impl OutboxReader ===

impl OutboxReader {
    /// Opens `path` read-only: a data directory (its `outbox.sqlite`) or the
    /// database file itself. Checks that it is a crisiswatch outbox.
    pub fn open(path: &Path) -> Result<OutboxReader, OutboxReadError> {
        let file = if path.is_dir() {
            path.join(OUTBOX_FILE)
        } else {
            path.to_path_buf()
        };
        let shown = file.display().to_string();
        if !file.is_file() {
            return Err(OutboxReadError::Missing { path: shown });
        }
        // No SQLITE_OPEN_URI: the path is a file name, never a `file:` URI.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&file, flags).map_err(|source| {
            OutboxReadError::Sqlite {
                path: shown.clone(),
                source,
            }
        })?;
        // The service holds write transactions only briefly (one batch).
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|source| OutboxReadError::Sqlite {
                path: shown.clone(),
                source,
            })?;
        let reader = OutboxReader { conn, path: file };
        reader.check_schema()?;
        tracing::debug!(outbox = %reader.path.display(), "Outbox opened read-only.");
        Ok(reader)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one read transaction, so every query in it sees the same
    /// snapshot however the service writes meanwhile (WAL): notifications,
    /// open incidents and ledger that agree with each other.
    pub fn snapshot<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, OutboxReadError>,
    ) -> Result<T, OutboxReadError> {
        let tx = self.conn.unchecked_transaction().map_err(self.sql_err())?;
        let out = f(self);
        // Nothing was written: dropping the transaction rolls back, ending the snapshot.
        drop(tx);
        out
    }

    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> OutboxReadError + '_ {
        move |source| OutboxReadError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn corrupt(&self, what: &'static str, id: String, detail: String) -> OutboxReadError {
        OutboxReadError::Corrupt {
            path: self.path.display().to_string(),
            what,
            id,
            detail,
        }
    }

    fn check_schema(&self) -> Result<(), OutboxReadError> {
        let not_outbox = |detail: String| OutboxReadError::NotAnOutbox {
            path: self.path.display().to_string(),
            detail,
        };
        let tables: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => not_outbox(e.to_string()),
                // E.g. a WAL file that cannot be opened: not the file's fault.
                _ => (self.sql_err())(e),
            })?;
        let missing: Vec<&str> = TABLES
            .into_iter()
            .filter(|t| !tables.iter().any(|x| x == t))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(not_outbox(format!("no table {}", missing.join(", "))))
        }
    }

    /// Every notification once per (incident, seq), by incident then seq.
    /// Muted rows count: the incident existed even if nobody was told.
    pub fn notifications(&self) -> Result<Vec<StoredNotification>, OutboxReadError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, receiver, incident, seq, status, body FROM notifications
                 ORDER BY incident, seq, receiver, id",
            )
            .map_err(self.sql_err())?;
        type Raw = (i64, String, String, u32, String, String);
        let rows: Vec<Raw> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err())?;
        let mut out: Vec<StoredNotification> = Vec::new();
        let mut index: HashMap<(String, u32), usize> = HashMap::new();
        for (id, receiver, incident, seq, status, body) in rows {
            let mut n: Notification = serde_json::from_str(&body)
                .map_err(|e| self.corrupt("notification", format!("#{id}"), e.to_string()))?;
            let status = Status::parse(&status).ok_or_else(|| {
                self.corrupt(
                    "notification",
                    format!("#{id}"),
                    format!("status {status:?}"),
                )
            })?;
            // An update sent as `open` to a receiver that had not heard of the
            // incident still says why it was sent; restore the lifecycle's action.
            let as_open = n.action == Action::Open && n.reason != Reason::Opened;
            if as_open {
                n.action = Action::Update;
            }
            let k = *index.entry((incident, seq)).or_insert_with(|| {
                out.push(StoredNotification {
                    notification: n.clone(),
                    deliveries: Vec::new(),
                    sent_as_open: Vec::new(),
                });
                out.len() - 1
            });
            let s = &mut out[k];
            if as_open {
                s.sent_as_open.push(receiver.clone());
            } else if s.deliveries.iter().all(|(r, _)| s.sent_as_open.contains(r)) {
                // Prefer the body as the lifecycle wrote it (its summary).
                s.notification = n;
            }
            s.deliveries.push((receiver, status));
        }
        Ok(out)
    }

    /// The incidents still open (or waiting for their group window), by key.
    pub fn open_incidents(&self) -> Result<Vec<Incident>, OutboxReadError> {
        let mut st = self
            .conn
            .prepare("SELECT key, state FROM incidents ORDER BY key")
            .map_err(self.sql_err())?;
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err())?;
        rows.into_iter()
            .map(|(key, state)| {
                serde_json::from_str(&state)
                    .map_err(|e| self.corrupt("incident", key, e.to_string()))
            })
            .collect()
    }

    /// The ledger of applied transitions, per alert dedup key, in time order.
    /// Entries older than `incidents.retention` may have been pruned.
    pub fn applied(&self) -> Result<HashMap<String, Vec<AppliedTransition>>, OutboxReadError> {
        let mut st = self
            .conn
            .prepare("SELECT alert, state, severity, at_ms FROM applied ORDER BY alert, at_ms")
            .map_err(self.sql_err())?;
        let rows: Vec<(String, String, String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err())?;
        let mut out: HashMap<String, Vec<AppliedTransition>> = HashMap::new();
        for (alert, state, severity, at) in rows {
            let bad = |what: &str| self.corrupt("ledger entry", alert.clone(), what.to_string());
            let state = parse_state(&state).ok_or_else(|| bad(&format!("state {state:?}")))?;
            let severity = Severity::ALL
                .into_iter()
                .find(|s| s.as_str() == severity)
                .ok_or_else(|| bad(&format!("severity {severity:?}")))?;
            out.entry(alert).or_default().push(AppliedTransition {
                state,
                severity,
                at,
            });
        }
        for v in out.values_mut() {
            v.sort_by_key(|t| (t.at, state_rank(t.state), t.severity));
        }
        Ok(out)
    }

    /// Responders' feedback, oldest first (none in an outbox written before
    /// feedback existed).
    pub fn feedback(&self) -> Result<Vec<super::feedback::Feedback>, OutboxReadError> {
        let rows = super::feedback::read_all(&self.conn).map_err(self.sql_err())?;
        super::feedback::decode_all(rows.unwrap_or_default())
            .map_err(|e| self.corrupt("feedback", "log".into(), e.to_string()))
    }
}

fn parse_state(s: &str) -> Option<State> {
    [
        State::Pending,
        State::Firing,
        State::Escalated,
        State::Resolved,
    ]
    .into_iter()
    .find(|x| x.as_str() == s)
}

/// Order of states within one millisecond.
fn state_rank(s: State) -> u8 {
    match s {
        State::Pending => 0,
        State::Firing => 1,
        State::Escalated => 2,
        State::Resolved => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::outbox::Outbox;

    #[test]
    fn refuses_what_is_not_an_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let missing = OutboxReader::open(&dir.path().join("nope")).unwrap_err();
        assert!(
            matches!(missing, OutboxReadError::Missing { .. }),
            "{missing}"
        );
        // A directory without an outbox.
        let empty = OutboxReader::open(dir.path()).unwrap_err();
        assert!(matches!(empty, OutboxReadError::Missing { .. }), "{empty}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, just some text\n".repeat(50)).unwrap();
        let e = OutboxReader::open(&text).unwrap_err();
        assert!(matches!(e, OutboxReadError::NotAnOutbox { .. }), "{e}");
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let e = OutboxReader::open(&other).unwrap_err();
        assert!(e.to_string().contains("no table notifications"), "{e}");
    }

    fn note(seq: u32, action: Action, reason: Reason) -> Notification {
        Notification {
            dedup_key: "product/product=router-x/1000".into(),
            action,
            seq,
            reason,
            route: "product".into(),
            labels: vec![("product".into(), "router-x".into())],
            severity: Severity::Warning,
            at: 2000 + i64::from(seq),
            started_at: 1000,
            resolved_at: None,
            alerts: Vec::new(),
            primary: 0,
            summary: format!("{} {seq}", action.as_str()),
            ack: None,
            since: None,
        }
    }

    /// A notification dead-lettered without an attempt comes back (for the
    /// ERROR log) with the reason its row keeps; one that was attempted
    /// keeps its last error.
    #[test]
    fn expired_rows_carry_their_dead_letter_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.transaction(5, |tx| {
            tx.enqueue("a", &note(1, Action::Open, Reason::Opened), Status::Pending)?;
            tx.enqueue("b", &note(1, Action::Open, Reason::Opened), Status::Pending)
        })
        .unwrap();
        let b = ob.due("b", 10, 10).unwrap();
        ob.mark_retry(b[0].id, 1, 20, "HTTP 503").unwrap();
        let rows = ob.expire("a", 10, 30).unwrap();
        assert_eq!(rows.len(), 1);
        let why = rows[0].last_error.as_deref().unwrap_or_default();
        assert!(why.starts_with("not attempted before max_age"), "{why:?}");
        let stored = ob.list(Some(Status::Dead), None, 10).unwrap();
        assert_eq!(stored[0].last_error.as_deref(), Some(why));
        let rows = ob.expire("b", 10, 30).unwrap();
        assert_eq!(rows[0].last_error.as_deref(), Some("HTTP 503"));
    }

    /// The next wake-up of a receiver's worker is the head row's retry,
    /// not the creation time of the rows queued behind it (which are in the
    /// past: the worker would wake at once, again and again).
    #[test]
    fn the_next_due_time_skips_rows_queued_behind_a_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.transaction(5, |tx| {
            tx.enqueue("a", &note(1, Action::Open, Reason::Opened), Status::Pending)?;
            tx.enqueue(
                "a",
                &note(2, Action::Update, Reason::AlertJoined),
                Status::Pending,
            )?;
            tx.enqueue(
                "a",
                &note(3, Action::Resolve, Reason::Resolved),
                Status::Pending,
            )
        })
        .unwrap();
        assert_eq!(ob.next_due("a").unwrap(), Some(5));
        let head = ob.due("a", 10, 10).unwrap();
        assert_eq!(head.len(), 1, "one row per incident at a time");
        ob.mark_retry(head[0].id, 1, 5_000, "HTTP 503").unwrap();
        assert!(ob.due("a", 10, 10).unwrap().is_empty());
        assert_eq!(ob.next_due("a").unwrap(), Some(5_000));
        assert_eq!(ob.next_due("b").unwrap(), None);
    }

    /// An incident whose resolve was refused or dead-lettered is no longer
    /// re-pushed as firing after a restart (it would fire in Alertmanager
    /// for ever); one whose resolve is still pending is, until delivered.
    #[test]
    fn a_refused_resolve_ends_the_re_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        let other = |mut n: Notification| {
            n.dedup_key = "product/product=earbuds-s/1000".into();
            n
        };
        ob.transaction(5, |tx| {
            tx.enqueue(
                "am",
                &note(1, Action::Open, Reason::Opened),
                Status::Pending,
            )?;
            tx.enqueue(
                "am",
                &other(note(1, Action::Open, Reason::Opened)),
                Status::Pending,
            )
        })
        .unwrap();
        for r in ob.due("am", 10, 10).unwrap() {
            ob.finish(r.id, Status::Delivered, 1, None, 10).unwrap();
        }
        assert_eq!(ob.firing("am").unwrap().len(), 2);
        ob.transaction(20, |tx| {
            tx.enqueue(
                "am",
                &note(2, Action::Resolve, Reason::Resolved),
                Status::Pending,
            )?;
            tx.enqueue(
                "am",
                &other(note(2, Action::Resolve, Reason::Resolved)),
                Status::Pending,
            )
        })
        .unwrap();
        // Pending resolves: both still asserted until delivered.
        assert_eq!(ob.firing("am").unwrap().len(), 2);
        let rows = ob.due("am", 30, 10).unwrap();
        assert_eq!(rows.len(), 2);
        ob.finish(rows[0].id, Status::Failed, 1, Some("HTTP 400"), 30)
            .unwrap();
        let left = ob.firing("am").unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].dedup_key, "product/product=earbuds-s/1000");
        ob.finish(rows[1].id, Status::Dead, 0, Some("max_age"), 40)
            .unwrap();
        assert!(ob.firing("am").unwrap().is_empty());
    }

    #[test]
    fn one_notification_per_seq_with_every_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        ob.transaction(5, |tx| {
            tx.enqueue("a", &note(1, Action::Open, Reason::Opened), Status::Muted)?;
            tx.enqueue("b", &note(1, Action::Open, Reason::Opened), Status::Muted)?;
            tx.enqueue(
                "a",
                &note(2, Action::Update, Reason::AlertJoined),
                Status::Pending,
            )?;
            // `b` never heard of it: its first unmuted update goes out as an open.
            tx.enqueue(
                "b",
                &note(2, Action::Open, Reason::AlertJoined),
                Status::Pending,
            )?;
            Ok(())
        })
        .unwrap();
        let r = OutboxReader::open(&dir.path().join(OUTBOX_FILE)).unwrap();
        let got = r.notifications().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].deliveries,
            [
                ("a".to_string(), Status::Muted),
                ("b".to_string(), Status::Muted)
            ]
        );
        assert_eq!(got[1].notification.action, Action::Update);
        assert_eq!(got[1].notification.summary, "update 2");
        assert_eq!(got[1].sent_as_open, ["b"]);
        assert_eq!(got[1].deliveries.len(), 2);
    }

    #[test]
    fn a_snapshot_does_not_see_what_is_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        let r = OutboxReader::open(dir.path()).unwrap();
        let (before, during) = r
            .snapshot(|r| {
                let before = r.notifications()?.len();
                ob.transaction(5, |tx| {
                    tx.enqueue("a", &note(1, Action::Open, Reason::Opened), Status::Pending)
                })
                .unwrap();
                Ok((before, r.notifications()?.len()))
            })
            .unwrap();
        assert_eq!((before, during), (0, 0));
        assert_eq!(r.notifications().unwrap().len(), 1);
    }

    #[test]
    fn reads_an_outbox_the_writer_keeps_open() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        let r = OutboxReader::open(dir.path()).unwrap();
        assert!(r.notifications().unwrap().is_empty());
        assert!(r.open_incidents().unwrap().is_empty());
        assert!(r.applied().unwrap().is_empty());
        drop(ob);
    }
}
