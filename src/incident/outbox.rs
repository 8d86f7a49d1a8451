//! The durable outbox: every notification is written here before any delivery
//! is tried, with the open incidents, the ledger of applied transitions and
//! the silences.
//!
//! The hinge of the incident stage: the lifecycle writes one transaction per
//! batch (transitions marked applied, incident state, one row per notification
//! and receiver), and each receiver's delivery worker drains its rows in order.
//!
//! **Why SQLite** (rusqlite, bundled) rather than redb: the workers need
//! queries — "the oldest due row of each incident of this receiver", depth and
//! age per receiver, dead letters by receiver — that are one indexed SQL
//! statement each instead of hand-kept secondary indexes; WAL mode lets the
//! CLI (`outbox list|retry`, `silence ...`) read and write the same file while
//! the service runs; `synchronous = FULL` makes every commit survive a crash
//! or power loss; and an operator can open the file with any `sqlite3` shell
//! during an incident review. Bundling compiles SQLite in, so nothing needs
//! installing.
//!
//! Rows are idempotent: `(receiver, incident, seq)` is unique, and the ledger
//! `applied(alert, state, severity)` ignores a transition seen before (a
//! replay after a restart), so nothing is enqueued twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::alert::Transition;

use super::lifecycle::Incident;
use super::model::Notification;

/// What to do about an outbox that does not open: a damaged file is not
/// a matter of space or permissions.
fn open_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            "the file is damaged (not a database SQLite can read): move it aside and start \
             again to begin a new outbox — its queued and undelivered notifications stay in \
             the old file (`sqlite3 FILE .recover` may save them; open incidents are not \
             re-sent)"
        }
        _ => "check that the data directory is writable and has free space",
    }
}

/// Errors of the outbox store.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The data directory could not be created.
    #[error("cannot create the outbox directory {path}: {source}; check `incidents.data_dir` and its permissions")]
    Dir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be opened or set up (a read-only or full data
    /// directory, a damaged file).
    #[error("cannot open the outbox {path}: {source}; {}", open_hint(source))]
    Open {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// SQLite failed.
    #[error("outbox database error: {0}; check free disk space and the permissions of the data directory")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record could not be decoded.
    #[error("corrupt {what} in the outbox: {source}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A thread panicked while holding the database.
    #[error("the outbox was left locked by a crashed thread; restart the process")]
    Poisoned,
    /// The process is shutting down: the outbox call was not run (nothing
    /// changed; what it would have done is done at the next start).
    #[error("the process is shutting down")]
    Stopping,
}

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for (another) attempt.
    Pending,
    /// A 2xx came back.
    Delivered,
    /// Refused for good (4xx other than 429).
    Failed,
    /// Not delivered within `max_age`: kept for `outbox retry`.
    Dead,
    /// Silenced: recorded, never delivered.
    Muted,
    /// A dead letter whose incident moved on before it was retried; or a
    /// queued notification handed with its incident to another instance
    /// (`sources.kafka.scale_out`), which sends it.
    Superseded,
}

impl Status {
    /// Every status.
    pub(crate) const ALL: [Status; 6] = [
        Status::Pending,
        Status::Delivered,
        Status::Failed,
        Status::Dead,
        Status::Muted,
        Status::Superseded,
    ];

    /// Lowercase name, as stored.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Muted => "muted",
            Status::Superseded => "superseded",
        }
    }

    /// Parses a stored name.
    pub(crate) fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One stored notification for one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Enqueue order.
    pub id: i64,
    /// Receiver name.
    pub receiver: String,
    /// Incident key.
    pub incident: String,
    /// Notification number within the incident.
    pub(crate) seq: u32,
    /// open / update / resolve.
    pub(crate) action: String,
    /// The [`Notification`] as JSON.
    pub(crate) body: String,
    /// Status.
    pub(crate) status: Status,
    /// Wall clock when enqueued, ms.
    pub(crate) created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Wall clock of the next attempt, ms.
    pub(crate) next_attempt_ms: i64,
    /// Last failure, for operators.
    pub last_error: Option<String>,
    /// Wall clock when it left `pending`, ms.
    pub(crate) done_ms: Option<i64>,
}

impl Row {
    /// The stored notification.
    pub(crate) fn notification(&self) -> Result<Notification, OutboxError> {
        serde_json::from_str(&self.body).map_err(|source| OutboxError::Corrupt {
            what: "notification",
            source,
        })
    }
}

/// What `outbox retry` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryReport {
    /// Rows queued again.
    pub requeued: Vec<i64>,
    /// Rows not re-sent because a later notification of their incident already
    /// reached the receiver (re-sending would undo it).
    pub(crate) superseded: Vec<i64>,
    /// Ids asked for that name no notification at all (a typo, or pruned).
    pub(crate) unknown: Vec<i64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    done_ms INTEGER,
    UNIQUE (receiver, incident, seq)
);
-- Every column the queue's queries read but the body (and the error): a row
-- is read only for what is sent. The body comes before `status` and the
-- times in a row, so a query that had to read the table walked every large
-- body's overflow pages (130 ms per query at 1,500 bodies of 400 KB).
DROP INDEX IF EXISTS notifications_queue;
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications
    (receiver, status, incident, id, next_attempt_ms, created_ms, seq, action);
CREATE TABLE IF NOT EXISTS incidents (key TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    alert TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL,
    at_ms INTEGER NOT NULL, recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (alert, state, severity)
);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL, ends_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS close_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, incident TEXT NOT NULL, reason TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_ms INTEGER NOT NULL, done_ms INTEGER, outcome TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, incident TEXT NOT NULL, kind TEXT NOT NULL,
    label TEXT, note TEXT NOT NULL, by TEXT NOT NULL, at_ms INTEGER NOT NULL, alerts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_incident ON feedback (incident, id);
CREATE TABLE IF NOT EXISTS handed_over (
    receiver TEXT NOT NULL, incident TEXT NOT NULL, PRIMARY KEY (receiver, incident)
);
CREATE TABLE IF NOT EXISTS control_outcomes (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS control_feedback (local_id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS control_holdings (instance TEXT PRIMARY KEY, body TEXT NOT NULL);
";

const ROW_COLUMNS: &str = "id, receiver, incident, seq, action, body, status, created_ms, attempts, next_attempt_ms, last_error, done_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let status: String = r.get(6)?;
    Ok(Row {
        id: r.get(0)?,
        receiver: r.get(1)?,
        incident: r.get(2)?,
        seq: r.get(3)?,
        action: r.get(4)?,
        body: r.get(5)?,
        status: Status::parse(&status).unwrap_or(Status::Pending),
        created_ms: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_error: r.get(10)?,
        done_ms: r.get(11)?,
    })
}

/// The store. One connection behind a mutex: writes are short transactions.
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Bumped whenever rows or incidents go to another instance (`handoff`).
    handed: AtomicU64,
    /// An instance of a scaled group: incidents come and go (`handoff`).
    scaled: AtomicBool,
    /// A scaled instance knows which incident partitions it owns: until
    /// then its stored incidents are not its own (a restart after a crash)
    /// and an Alertmanager re-push repeats none of them.
    owning: AtomicBool,
    /// A scaled instance's hold on deliveries after a stop (`fence`).
    fence: Mutex<Option<Arc<super::fence::Fence>>>,
}

/// A write transaction of one lifecycle batch.
pub(crate) struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    now: i64,
    handed: &'a AtomicU64,
}

// === impl Outbox ===

impl Outbox {
    /// Opens (creating if needed) `dir/outbox.sqlite`.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("outbox.sqlite");
        let setup = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            // A data directory that cannot be written fails here, named,
            // rather than at the first batch.
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_ms', ?1)",
                params![chrono::Utc::now().timestamp_millis()],
            )?;
            Ok(conn)
        };
        let conn = setup().map_err(|source| OutboxError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Outbox {
            conn: Mutex::new(conn),
            path,
            handed: AtomicU64::new(0),
            scaled: AtomicBool::new(false),
            owning: AtomicBool::new(true),
            fence: Mutex::new(None),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, OutboxError> {
        self.conn.lock().map_err(|_| OutboxError::Poisoned)
    }

    /// Runs `f` in one immediate transaction, committed if it returns `Ok`.
    pub(crate) fn transaction<T>(
        &self,
        now: i64,
        f: impl FnOnce(&Tx<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tx = Tx {
            tx,
            now,
            handed: &self.handed,
        };
        let out = f(&tx)?;
        tx.tx.commit()?;
        Ok(out)
    }

    /// Every incident key the outbox has rows of (notifications, feedback,
    /// close requests): keys a new incident must not take again.
    pub(crate) fn incident_keys_seen(&self) -> Result<Vec<String>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT incident FROM notifications UNION SELECT incident FROM feedback \
             UNION SELECT incident FROM close_requests",
        )?;
        let keys = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(keys)
    }

    /// Every persisted open incident.
    pub(crate) fn load_incidents(&self) -> Result<Vec<Incident>, OutboxError> {
        let conn = self.conn()?;
        let mut st = conn.prepare("SELECT state FROM incidents ORDER BY key")?;
        let states: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        states
            .iter()
            .map(|s| {
                serde_json::from_str(s).map_err(|source| OutboxError::Corrupt {
                    what: "incident",
                    source,
                })
            })
            .collect()
    }
}

// === impl Tx ===

impl Tx<'_> {
    /// Records a transition as applied; `false` if it was applied before.
    pub(crate) fn mark_applied(&self, t: &Transition) -> Result<bool, OutboxError> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO applied (alert, state, severity, at_ms, recorded_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.dedup_key, t.state.as_str(), t.severity.as_str(), t.at, self.now],
        )?;
        Ok(n == 1)
    }

    /// Whether this outbox has applied, opened or sent anything (one moved
    /// aside and replaced by a new one has not).
    pub(crate) fn has_history(&self) -> Result<bool, OutboxError> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM applied UNION ALL SELECT 1 FROM incidents
                 UNION ALL SELECT 1 FROM notifications LIMIT 1",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether any transition of alert instance `alert` (its dedup key) was
    /// ever applied here.
    pub(crate) fn knows_alert(&self, alert: &str) -> Result<bool, OutboxError> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM applied WHERE alert = ?1 LIMIT 1",
                params![alert],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Enqueues `n` for `receiver` with `status` (pending or muted); `false`
    /// if that (receiver, incident, seq) is already stored.
    pub(crate) fn enqueue(
        &self,
        receiver: &str,
        n: &Notification,
        status: Status,
    ) -> Result<bool, OutboxError> {
        let body = serde_json::to_string(n).map_err(|source| OutboxError::Corrupt {
            what: "notification",
            source,
        })?;
        let done = (status != Status::Pending).then_some(self.now);
        let insert = || {
            self.tx.execute(
                "INSERT OR IGNORE INTO notifications (receiver, incident, seq, action, body, status, created_ms, next_attempt_ms, done_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                params![receiver, n.dedup_key, n.seq, n.action.as_str(), body, status.as_str(), self.now, done],
            )
        };
        let mut inserted = insert()?;
        // This instance handed the same notification away earlier and owns
        // its incident again (`handoff`): queued anew, behind what is queued.
        if inserted == 0 && self.drop_handed(receiver, &n.dedup_key, n.seq)? {
            inserted = insert()?;
        }
        Ok(inserted == 1)
    }

    /// Whether `receiver` has heard of `incident` (a row that was not muted).
    pub(crate) fn announced(&self, receiver: &str, incident: &str) -> Result<bool, OutboxError> {
        let v: Option<i64> = self
            .tx
            .query_row(
                // Every status but `muted`, named: the covering index
                // answers it (`!=` read each row's status behind its body).
                "SELECT 1 FROM notifications WHERE receiver = ?1 AND incident = ?2
                   AND status IN ('pending', 'delivered', 'failed', 'dead', 'superseded')
                 UNION ALL SELECT 1 FROM handed_over WHERE receiver = ?1 AND incident = ?2 LIMIT 1",
                params![receiver, incident],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.is_some())
    }

    /// Whether the outbox has any row of `receiver` (a notification, or an
    /// incident handed over to it).
    pub(crate) fn has_rows(&self, receiver: &str) -> Result<bool, OutboxError> {
        let v: Option<i64> = self
            .tx
            .query_row(
                "SELECT 1 FROM notifications WHERE receiver = ?1
                 UNION ALL SELECT 1 FROM handed_over WHERE receiver = ?1 LIMIT 1",
                params![receiver],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.is_some())
    }

    /// The latest `open` or `update` of `incident` queued for any receiver
    /// (what a receiver that never heard of it is told: [`super::manager`]'s
    /// `announce_open`).
    pub(crate) fn latest_announcement(
        &self,
        incident: &str,
    ) -> Result<Option<Notification>, OutboxError> {
        self.latest_of(incident, "open", "update")
    }

    /// The latest `acknowledge` of `incident` queued for any receiver.
    pub(crate) fn latest_acknowledgement(
        &self,
        incident: &str,
    ) -> Result<Option<Notification>, OutboxError> {
        self.latest_of(incident, "acknowledge", "acknowledge")
    }

    /// The latest notification of `incident` whose action is `a` or `b`.
    fn latest_of(
        &self,
        incident: &str,
        a: &str,
        b: &str,
    ) -> Result<Option<Notification>, OutboxError> {
        let body: Option<String> = self
            .tx
            .query_row(
                "SELECT body FROM notifications WHERE incident = ?1 AND action IN (?2, ?3)
                 ORDER BY seq DESC LIMIT 1",
                params![incident, a, b],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|source| OutboxError::Corrupt {
                what: "notification",
                source,
            })
        })
        .transpose()
    }

    /// Saves an incident's state.
    pub(crate) fn save_incident(&self, inc: &Incident) -> Result<(), OutboxError> {
        let state = serde_json::to_string(inc).map_err(|source| OutboxError::Corrupt {
            what: "incident",
            source,
        })?;
        self.tx.execute(
            "INSERT OR REPLACE INTO incidents (key, state) VALUES (?1, ?2)",
            params![inc.key, state],
        )?;
        Ok(())
    }

    /// Records that `receiver` heard of `incident` through another instance
    /// (`sources.kafka.scale_out`: the incident moved here).
    pub(crate) fn hand_over(&self, receiver: &str, incident: &str) -> Result<(), OutboxError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO handed_over (receiver, incident) VALUES (?1, ?2)",
            params![receiver, incident],
        )?;
        Ok(())
    }

    /// Forgets a resolved incident.
    pub(crate) fn delete_incident(&self, key: &str) -> Result<(), OutboxError> {
        self.tx
            .execute("DELETE FROM incidents WHERE key = ?1", params![key])?;
        self.tx
            .execute("DELETE FROM handed_over WHERE incident = ?1", params![key])?;
        Ok(())
    }
}

pub use closing::CloseRequest;
mod closing;
pub(crate) mod controls;
pub mod feedback;
mod handoff;
pub(crate) use handoff::{Moved, QueuedRow};
mod operator;
mod queue;
pub(crate) mod timeline;
pub use operator::Pruned;
pub use queue::QueueStats;
// Read-only access for looking back at incidents (`crisiswatch review --outbox`).
mod reader;
pub use reader::{
    AppliedTransition, OutboxReadError, OutboxReader, StoredNotification, OUTBOX_FILE,
};

#[cfg(test)]
mod open_tests {
    use super::*;

    /// A damaged outbox file is named as such, not as a matter of disk
    /// space or permissions.
    #[test]
    fn a_damaged_file_is_named_damaged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("outbox.sqlite"), vec![0x5a_u8; 100_000]).unwrap();
        let Err(e) = Outbox::open(dir.path()) else {
            panic!("a damaged outbox opened");
        };
        let e = e.to_string();
        assert!(e.contains("the file is damaged"), "{e}");
        assert!(e.contains("move it aside"), "{e}");
        assert!(!e.contains("free space"), "{e}");
    }
}
