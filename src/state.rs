//! Durable engine state for `crisiswatch run`: incremental checkpoints in an
//! embedded SQLite store, loaded on start (`docs/time.md`, README "What a
//! restart keeps").
//!
//! ```text
//! engine stage ──(every state.checkpoint_interval, on revoke, on stop)──► state.sqlite
//!      ▲            only the groups changed since the last checkpoint         │
//!      └──────────────────────── restore on start ◄──────────────────────────┘
//! ```
//!
//! The store holds the engine's state as one row per (rule, group) — keyed
//! by the group's shard, the rule's id and the group key — the dedup memory
//! in chunks, and one record per checkpoint: the engine's rule-wide state
//! ([`Delta`](crate::engine::Delta), `engine::snapshot::incremental`), the
//! sequencer's release point, and per partition its newest event time and
//! its progress: `resume` (every offset before it is done), `next` (the
//! offset after the last one read) and the offsets in between that are not
//! done (events still held by the sequencer, dead letters not yet
//! acknowledged). A checkpoint replaces the rows of the groups that changed,
//! deletes those of the groups forgotten and replaces the record, in one
//! transaction: what it costs follows what changed, not the whole state.
//! Kafka offsets are committed only up to a checkpoint's `resume`, so a
//! restart re-reads from there and skips what the checkpoint already covers.
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
//! **Integrity.** The record, every group row and every dedup chunk carry a
//! SHA-256 checksum; the record says how many groups each rule has and how
//! many ids the dedup memory holds, and a restore checks both. A checkpoint
//! of another format, or one that fails any check, is refused with a message
//! naming `crisiswatch state reset`, never loaded silently. The whole-engine
//! checkpoints of the previous format (one row) are migrated: loaded once,
//! and the first checkpoint after them writes the rows and drops the old
//! table.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{Delta, Stored, SNAPSHOT_VERSION};

mod store;
#[cfg(test)]
mod tests;

pub use store::StateStore;

/// Format of the store: its layout (2: incremental rows) and the engine
/// snapshot's.
pub(crate) const FORMAT: u32 = 2_000 + SNAPSHOT_VERSION;

/// Format of the previous layout's one-row checkpoints, which a store migrates.
pub(crate) const LEGACY_FORMAT: u32 = 1_000 + SNAPSHOT_VERSION;

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

impl StateError {
    /// The file or directory the error is about.
    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            StateError::Db { path, .. }
            | StateError::Dir { path, .. }
            | StateError::Version { path, .. }
            | StateError::Corrupt { path, .. } => path,
        }
    }

    /// Whether the checkpoint itself is unusable (corrupt, another format),
    /// as opposed to the store being unreachable.
    pub(crate) fn is_unloadable(&self) -> bool {
        match self {
            StateError::Version { .. } | StateError::Corrupt { .. } => true,
            // The file itself is damaged (truncated, overwritten): SQLite
            // cannot read it as a database at all.
            StateError::Db {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ),
            _ => false,
        }
    }
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
    /// The last message read (at `next - 1`): a restore checks that the
    /// broker still holds it before skipping anything (a topic recreated
    /// while crisiswatch was down holds other messages at those offsets).
    /// Absent in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last: Option<Last>,
}

/// A message identified by its offset and fingerprint (`source::fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    /// Its offset.
    pub(crate) offset: i64,
    /// The fingerprint of its value and key.
    pub(crate) print: u32,
}

impl PartitionState {
    /// Whether `offset` is covered by the checkpoint (done: skip it when read again).
    pub(crate) fn covers(&self, offset: i64) -> bool {
        offset < self.resume || (offset < self.next && self.pending.binary_search(&offset).is_err())
    }

    /// This restored progress together with what the session read since
    /// (every offset before `resume` done, `pending` not done in
    /// `[resume, next)`): an offset is done if either has it done. While a
    /// restart re-reads the stretch between the committed offset and the
    /// checkpoint's position, the session alone is behind what the engine
    /// holds; a checkpoint written then from it alone moved the position
    /// back, and the next restart applied the stretch a second time.
    /// Returns (resume, next, pending).
    pub(crate) fn merged(&self, resume: i64, next: i64, pending: &[i64]) -> (i64, i64, Vec<i64>) {
        let session_done = |o: i64| o < resume || (o < next && pending.binary_search(&o).is_err());
        let mut open: Vec<i64> = self
            .pending
            .iter()
            .copied()
            .filter(|&o| !session_done(o))
            .chain(pending.iter().copied().filter(|&o| !self.covers(o)))
            .collect();
        open.sort_unstable();
        open.dedup();
        let next = next.max(self.next);
        let resume = open.first().copied().unwrap_or(next);
        (resume, next, open)
    }
}

/// A checkpoint to write: the engine's changes since the last one and
/// everything else a restart needs besides the outbox.
#[derive(Debug)]
pub struct Checkpoint {
    /// Wall-clock time it was written (ms).
    pub written_ms: i64,
    /// The engine's changes (or all of its state, [`Delta::full`]).
    pub engine: Delta,
    /// Every event older than this had reached the engine.
    pub released_below: Option<i64>,
    /// Per-partition progress.
    pub partitions: Vec<PartitionState>,
}

/// The engine state a store holds.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineState {
    /// Rows of incremental checkpoints
    /// ([`ShardedEngine::restore_stored`](crate::engine::ShardedEngine::restore_stored)).
    Rows(Stored),
    /// A whole-engine snapshot of the previous format
    /// ([`ShardedEngine::restore`](crate::engine::ShardedEngine::restore));
    /// the next checkpoint must be full.
    Whole(Vec<u8>),
}

/// What a store holds: checked (format, checksums) before it is returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Wall-clock time it was written (ms).
    pub written_ms: i64,
    /// The engine's state.
    pub engine: EngineState,
    /// Every event older than this had reached the engine.
    pub released_below: Option<i64>,
    /// Per-partition progress.
    pub partitions: Vec<PartitionState>,
    /// Bytes of the engine state stored.
    pub engine_bytes: usize,
}
