//! The SQLite store of incremental checkpoints (see `crate::state`): a
//! record per checkpoint, a row per (shard, rule, group), the dedup memory
//! in chunks; each with its SHA-256 checksum.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{
    Checkpoint, EngineState, Loaded, PartitionState, StateError, FILE_NAME, FORMAT, LEGACY_FORMAT,
};
use crate::engine::{Stored, DEDUP_CHUNK};

/// The previous layout's table: one row, the whole engine snapshot.
const LEGACY_TABLE: &str = "checkpoint";

/// The SQLite store of checkpoints.
#[derive(Debug)]
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

/// A group row's checksum: over its rule id, key and bytes.
fn row_sum(rule: &[u8], key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((rule.len() as u32).to_le_bytes());
    h.update(rule);
    h.update((key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(data);
    h.finalize().into()
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
            // Pages of 8 KiB (a new store; rows of a few hundred bytes) and a
            // 64 MiB page cache: a checkpoint touches rows all over the table.
            "PRAGMA page_size = 8192;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -65536;
             CREATE TABLE IF NOT EXISTS state_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 format INTEGER NOT NULL,
                 written_ms INTEGER NOT NULL,
                 meta BLOB NOT NULL,
                 meta_sha256 BLOB NOT NULL,
                 released_below INTEGER,
                 partitions TEXT NOT NULL,
                 groups INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS state_groups (
                 shard INTEGER NOT NULL,
                 rule BLOB NOT NULL,
                 key BLOB NOT NULL,
                 data BLOB NOT NULL,
                 sha256 BLOB NOT NULL,
                 PRIMARY KEY (shard, rule, key)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS state_dedup (
                 chunk INTEGER PRIMARY KEY,
                 first INTEGER NOT NULL,
                 data BLOB NOT NULL,
                 sha256 BLOB NOT NULL
             );",
        )
        .map_err(db)?;
        Ok(StateStore { conn, path })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// A value of the wrong type is a damaged store, not an unreachable one.
    fn read(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |e| match e {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => self.corrupt(e.to_string()),
            source => StateError::Db {
                path: self.path.clone(),
                source,
            },
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn has_legacy(&self) -> Result<bool, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [LEGACY_TABLE],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        Ok(n > 0)
    }

    /// Writes a checkpoint: the engine's changed rows replaced, its
    /// forgotten ones deleted (every row replaced when it is full), the
    /// dedup chunks and the record — one transaction, fsynced.
    pub fn write(&mut self, cp: &Checkpoint) -> Result<(), StateError> {
        let parts =
            serde_json::to_string(&cp.partitions).map_err(|e| self.corrupt(e.to_string()))?;
        let path = self.path.clone();
        let db = |source| StateError::Db {
            path: path.clone(),
            source,
        };
        let legacy = self.has_legacy()?;
        let d = &cp.engine;
        let tx = self.conn.transaction().map_err(db)?;
        if d.full {
            tx.execute("DELETE FROM state_groups", []).map_err(db)?;
            tx.execute("DELETE FROM state_dedup", []).map_err(db)?;
        }
        {
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM state_groups WHERE shard = ?1 AND rule = ?2 AND key = ?3",
                )
                .map_err(db)?;
            for (r, shard, key) in &d.removed {
                let id = &d.rule_ids[*r as usize][..];
                del.execute(params![shard, id, key]).map_err(db)?;
            }
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO state_groups (shard, rule, key, data, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db)?;
            // In key order: neighbouring rows land on the same pages.
            let mut order: Vec<&crate::engine::GroupRow> = d.upserts.iter().collect();
            order.sort_unstable_by(|a, b| {
                (a.shard, &d.rule_ids[a.rule as usize], &a.key).cmp(&(
                    b.shard,
                    &d.rule_ids[b.rule as usize],
                    &b.key,
                ))
            });
            for u in order {
                let id = &d.rule_ids[u.rule as usize][..];
                let sum = row_sum(id, &u.key, &u.data);
                put.execute(params![u.shard, id, u.key, u.data, &sum[..]])
                    .map_err(db)?;
            }
            tx.execute(
                "DELETE FROM state_dedup WHERE chunk < ?1",
                [(d.dedup_front / DEDUP_CHUNK) as i64],
            )
            .map_err(db)?;
            let mut chunk = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO state_dedup (chunk, first, data, sha256)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            for c in &d.dedup {
                let sum = Sha256::digest(&c.data);
                chunk
                    .execute(params![
                        c.chunk as i64,
                        c.first as i64,
                        c.data,
                        sum.as_slice()
                    ])
                    .map_err(db)?;
            }
        }
        let sum = Sha256::digest(&d.meta);
        tx.execute(
            "INSERT OR REPLACE INTO state_meta
             (id, format, written_ms, meta, meta_sha256, released_below, partitions, groups)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                FORMAT,
                cp.written_ms,
                d.meta,
                sum.as_slice(),
                cp.released_below,
                parts,
                d.groups as i64
            ],
        )
        .map_err(db)?;
        if legacy {
            // Migrated: the rows now hold what the old row held.
            tx.execute_batch(&format!("DROP TABLE {LEGACY_TABLE}"))
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// SQLite's `data_version` of this connection: it changes whenever
    /// another connection commits to the store (a repair or a row put back
    /// leaves the stamp as it was), never for this connection's own writes.
    pub(crate) fn data_version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.db())
    }

    /// When the checkpoint was written and its format, without loading it
    /// (`None`: there is none) — to notice a reset or a new checkpoint.
    pub(crate) fn stamp(&self) -> Result<Option<(u32, i64)>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT format, written_ms FROM state_meta WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())?;
        if row.is_some() || !self.has_legacy()? {
            return Ok(row);
        }
        self.conn
            .query_row(
                &format!("SELECT format, written_ms FROM {LEGACY_TABLE} WHERE id = 1"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())
    }

    /// The checkpoint, if any: checked (format, checksums) before it is
    /// returned.
    pub fn load(&self) -> Result<Option<Loaded>, StateError> {
        type Row = (u32, i64, Vec<u8>, Vec<u8>, Option<i64>, String);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT format, written_ms, meta, meta_sha256, released_below, partitions
                 FROM state_meta WHERE id = 1",
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
            .map_err(self.read())?;
        let Some((format, written_ms, meta, sum, released_below, parts)) = row else {
            return self.load_legacy();
        };
        if format != FORMAT {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: format,
                expected: FORMAT,
            });
        }
        if Sha256::digest(&meta).as_slice() != sum.as_slice() {
            return Err(self.corrupt("the checkpoint record does not match its SHA-256 checksum"));
        }
        let partitions = self.partitions(&parts)?;
        let mut bytes = meta.len();
        let mut groups = Vec::new();
        let mut rule_ids: Vec<Vec<u8>> = Vec::new();
        {
            let mut q = self
                .conn
                .prepare(
                    "SELECT rule, key, data, sha256 FROM state_groups ORDER BY shard, rule, key",
                )
                .map_err(self.db())?;
            let mut rows = q.query([]).map_err(self.db())?;
            // Borrowed where they are only checked; the row's bytes copied once.
            let owned = |r: &rusqlite::Row<'_>, i: usize| -> Result<Vec<u8>, StateError> {
                r.get(i).map_err(self.read())
            };
            while let Some(r) = rows.next().map_err(self.db())? {
                let blob = |i: usize| {
                    r.get_ref(i)
                        .and_then(|v| v.as_blob().map_err(Into::into))
                        .map_err(self.read())
                };
                let (rule, key, sum) = (blob(0)?, blob(1)?, blob(3)?);
                let data = owned(r, 2)?;
                if row_sum(rule, key, &data)[..] != sum[..] {
                    return Err(self.corrupt("a group's row does not match its SHA-256 checksum"));
                }
                bytes += key.len() + data.len();
                let id = match rule_ids.iter().position(|x| x[..] == rule[..]) {
                    Some(i) => i,
                    None => {
                        rule_ids.push(rule.to_vec());
                        rule_ids.len() - 1
                    }
                };
                groups.push((id as u16, data));
            }
        }
        let mut dedup = Vec::new();
        {
            let mut q = self
                .conn
                .prepare("SELECT first, data, sha256 FROM state_dedup ORDER BY chunk")
                .map_err(self.db())?;
            let mut rows = q.query([]).map_err(self.db())?;
            while let Some(r) = rows.next().map_err(self.db())? {
                let first: i64 = r.get(0).map_err(self.read())?;
                let data: Vec<u8> = r.get(1).map_err(self.read())?;
                let sum: Vec<u8> = r.get(2).map_err(self.read())?;
                if Sha256::digest(&data).as_slice() != sum.as_slice() {
                    return Err(self.corrupt(
                        "a chunk of the dedup memory does not match its SHA-256 checksum",
                    ));
                }
                bytes += data.len();
                dedup.push((first as u64, data));
            }
        }
        Ok(Some(Loaded {
            written_ms,
            engine: EngineState::Rows(Stored {
                meta,
                rule_ids,
                groups,
                dedup,
            }),
            released_below,
            partitions,
            engine_bytes: bytes,
        }))
    }

    fn partitions(&self, text: &str) -> Result<Vec<PartitionState>, StateError> {
        let mut partitions: Vec<PartitionState> = serde_json::from_str(text)
            .map_err(|e| self.corrupt(format!("partition progress: {e}")))?;
        for p in &mut partitions {
            p.pending.sort_unstable();
        }
        Ok(partitions)
    }

    /// A checkpoint of the previous layout (one row, the whole engine).
    fn load_legacy(&self) -> Result<Option<Loaded>, StateError> {
        if !self.has_legacy()? {
            return Ok(None);
        }
        type Row = (u32, i64, Vec<u8>, Vec<u8>, Option<i64>, String);
        let row: Option<Row> = self
            .conn
            .query_row(
                &format!(
                    "SELECT format, written_ms, engine, engine_sha256, released_below, partitions
                     FROM {LEGACY_TABLE} WHERE id = 1"
                ),
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
            .map_err(self.read())?;
        let Some((format, written_ms, engine, sum, released_below, parts)) = row else {
            return Ok(None);
        };
        if format != LEGACY_FORMAT {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: format,
                expected: FORMAT,
            });
        }
        if Sha256::digest(&engine).as_slice() != sum.as_slice() {
            return Err(self.corrupt("the engine snapshot does not match its SHA-256 checksum"));
        }
        Ok(Some(Loaded {
            written_ms,
            engine_bytes: engine.len(),
            engine: EngineState::Whole(engine),
            released_below,
            partitions: self.partitions(&parts)?,
        }))
    }

    /// Deletes the checkpoint; returns whether there was one.
    pub fn reset(&mut self) -> Result<bool, StateError> {
        let had = self.stamp()?.is_some();
        let path = self.path.clone();
        let db = |source| StateError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute_batch(
            "DELETE FROM state_meta; DELETE FROM state_groups; DELETE FROM state_dedup;",
        )
        .map_err(db)?;
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {LEGACY_TABLE}"))
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(had)
    }

    /// The database connection (tests damage rows through it).
    #[cfg(test)]
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}
