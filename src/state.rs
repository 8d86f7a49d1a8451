//! Durable engine state for `crisiswatch run`: checkpoints in an embedded
//! SQLite store, loaded on start (`docs/time.md`, README "What a restart keeps").
//!
//! ```text
//! engine stage ──(every state.checkpoint_interval, on revoke, on stop)──► state.sqlite
//!      ▲                                                                      │
//!      └──────────────────────── restore on start ◄──────────────────────────┘
//! ```
//!
//! A [`Checkpoint`] is the engine's snapshot (windows, alert instances,
//! timers, dedup memory — [`Engine::snapshot`](crate::engine::Engine::snapshot)),
//! the sequencer's release point, and per partition its newest event time
//! and its progress: `resume` (every offset before it is done), `next` (the
//! offset after the last one read) and the offsets in between that are not
//! done (events still held by the sequencer, dead letters not yet
//! acknowledged). Kafka offsets are committed only up to a checkpoint's
//! `resume`, so a restart re-reads from there and skips what the checkpoint
//! already covers.
//!
//! **Consistency with the incident outbox.** Transitions are persisted in the
//! outbox before a checkpoint is written, and the outbox recognises a
//! transition it already applied. The checkpoint lives in its own store, in
//! its own transaction, so after a crash the outbox may be *ahead* of the
//! checkpoint: the restored engine then meets the events after the checkpoint
//! again, in the same canonical order, emits the very same transitions (same
//! times, values and keys: the core is deterministic), and the outbox drops
//! them as already applied. The outbox is never *behind* the checkpoint. That
//! is equivalent to writing both in one transaction, without coupling the two
//! stores' locks.
//!
//! **Integrity.** The engine bytes carry a format version and a SHA-256
//! checksum. A checkpoint of another format, or one whose bytes do not match
//! their checksum, is refused with a message naming `crisiswatch state
//! reset`, never loaded silently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::SNAPSHOT_VERSION;

/// Format of a checkpoint row: the store's layout and the engine snapshot's.
pub(crate) const FORMAT: u32 = 1_000 + SNAPSHOT_VERSION;

/// The store's file name in the state directory.
pub(crate) const FILE_NAME: &str = "state.sqlite";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database cannot be opened, read or written (disk full, read-only).
    #[error("state store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory cannot be created.
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint of another format.
    #[error("the checkpoint in {path} has format {found}, this crisiswatch reads format {expected}: run `crisiswatch state reset` (the service then starts empty from the committed offsets; reset the consumer group's offsets to replay history)")]
    Version {
        /// The database file.
        path: PathBuf,
        /// Format found.
        found: u32,
        /// Format expected.
        expected: u32,
    },
    /// The checkpoint's bytes do not match their checksum, or do not decode.
    #[error("the checkpoint in {path} is corrupt ({detail}); it was not loaded: run `crisiswatch state reset` to start empty")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// One partition's progress in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Topic name.
    pub(crate) topic: String,
    /// Partition number.
    pub(crate) partition: i32,
    /// Newest valid event time seen.
    pub(crate) max_ts: Option<i64>,
    /// Every offset before this is done: the offset to commit and resume at.
    pub(crate) resume: i64,
    /// The offset after the last one read.
    pub(crate) next: i64,
    /// Offsets in `[resume, next)` that are not done (held events, dead
    /// letters in flight): read again after a restore; the rest is skipped.
    pub(crate) pending: Vec<i64>,
}

impl PartitionState {
    /// Whether `offset` is covered by the checkpoint (done: skip it when read again).
    pub(crate) fn covers(&self, offset: i64) -> bool {
        offset < self.resume || (offset < self.next && self.pending.binary_search(&offset).is_err())
    }
}

/// Everything a restart needs besides the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Wall-clock time it was written (ms).
    pub written_ms: i64,
    /// The engine snapshot.
    pub engine: Vec<u8>,
    /// Every event older than this had reached the engine.
    pub released_below: Option<i64>,
    /// Per-partition progress.
    pub partitions: Vec<PartitionState>,
}

/// What `state inspect` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Wall-clock time it was written (ms).
    pub(crate) written_ms: i64,
    /// Format of the row.
    pub(crate) format: u32,
    /// Bytes of the engine snapshot.
    pub(crate) engine_bytes: usize,
    /// Release point of the sequencer.
    pub(crate) released_below: Option<i64>,
    /// Per-partition progress.
    pub(crate) partitions: Vec<PartitionState>,
}

/// The SQLite store of checkpoints (one row: the latest).
#[derive(Debug)]
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = |source| StateError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS checkpoint (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 format INTEGER NOT NULL,
                 written_ms INTEGER NOT NULL,
                 engine BLOB NOT NULL,
                 engine_sha256 BLOB NOT NULL,
                 released_below INTEGER,
                 partitions TEXT NOT NULL
             );",
        )
        .map_err(db)?;
        Ok(StateStore { conn, path })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the checkpoint (one transaction, fsynced).
    pub fn write(&mut self, cp: &Checkpoint) -> Result<(), StateError> {
        let parts = serde_json::to_string(&cp.partitions).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let sum = Sha256::digest(&cp.engine);
        let path = self.path.clone();
        let db = |source| StateError::Db { path, source };
        self.conn
            .execute(
                "INSERT OR REPLACE INTO checkpoint
                 (id, format, written_ms, engine, engine_sha256, released_below, partitions)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    FORMAT,
                    cp.written_ms,
                    cp.engine,
                    sum.as_slice(),
                    cp.released_below,
                    parts
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    /// The checkpoint, if any: checked (format, checksum) before it is returned.
    pub fn load(&self) -> Result<Option<Checkpoint>, StateError> {
        type Row = (u32, i64, Vec<u8>, Vec<u8>, Option<i64>, String);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT format, written_ms, engine, engine_sha256, released_below, partitions
                 FROM checkpoint WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|source| StateError::Db {
                path: self.path.clone(),
                source,
            })?;
        let Some((format, written_ms, engine, sum, released_below, parts)) = row else {
            return Ok(None);
        };
        if format != FORMAT {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: format,
                expected: FORMAT,
            });
        }
        if Sha256::digest(&engine).as_slice() != sum.as_slice() {
            return Err(StateError::Corrupt {
                path: self.path.clone(),
                detail: "the engine snapshot does not match its SHA-256 checksum".into(),
            });
        }
        let mut partitions: Vec<PartitionState> =
            serde_json::from_str(&parts).map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                detail: format!("partition progress: {e}"),
            })?;
        for p in &mut partitions {
            p.pending.sort_unstable();
        }
        Ok(Some(Checkpoint {
            written_ms,
            engine,
            released_below,
            partitions,
        }))
    }

    /// What the checkpoint holds, without decoding the engine.
    pub fn summary(&self) -> Result<Option<Summary>, StateError> {
        Ok(self.load()?.map(|cp| Summary {
            written_ms: cp.written_ms,
            format: FORMAT,
            engine_bytes: cp.engine.len(),
            released_below: cp.released_below,
            partitions: cp.partitions,
        }))
    }

    /// Deletes the checkpoint; returns whether there was one.
    pub fn reset(&mut self) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute("DELETE FROM checkpoint", [])
            .map_err(|source| StateError::Db {
                path: self.path.clone(),
                source,
            })?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            written_ms: 1_795_132_800_000,
            engine: vec![1, 2, 3, 4, 5],
            released_below: Some(42),
            partitions: vec![PartitionState {
                topic: "complaints".into(),
                partition: 2,
                max_ts: Some(99),
                resume: 10,
                next: 20,
                pending: vec![10, 15],
            }],
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_reset_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap(), None);
        s.write(&cp()).unwrap();
        drop(s);
        let mut s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.load().unwrap(), Some(cp()));
        assert!(s.reset().unwrap());
        assert_eq!(s.load().unwrap(), None);
        assert!(!s.reset().unwrap());
    }

    #[test]
    fn covered_offsets_are_the_done_ones() {
        let p = &cp().partitions[0];
        assert!(p.covers(3), "before resume");
        assert!(!p.covers(10), "held at the checkpoint");
        assert!(p.covers(11));
        assert!(!p.covers(15));
        assert!(p.covers(19));
        assert!(!p.covers(20), "not read before the checkpoint");
    }

    #[test]
    fn corrupt_and_other_version_checkpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(dir.path()).unwrap();
        s.write(&cp()).unwrap();
        // A flipped bit in the engine bytes.
        s.conn
            .execute("UPDATE checkpoint SET engine = X'0102030405FF'", [])
            .unwrap();
        let e = s.load().unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("crisiswatch state reset"), "{e}");
        // Truncated.
        s.write(&cp()).unwrap();
        s.conn
            .execute("UPDATE checkpoint SET engine = X'0102'", [])
            .unwrap();
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
        // Another format.
        s.write(&cp()).unwrap();
        s.conn
            .execute("UPDATE checkpoint SET format = 7", [])
            .unwrap();
        let e = s.load().unwrap_err();
        assert!(matches!(e, StateError::Version { found: 7, .. }), "{e}");
        // Garbled partition progress.
        s.write(&cp()).unwrap();
        s.conn
            .execute("UPDATE checkpoint SET partitions = 'nope'", [])
            .unwrap();
        assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    }
}
