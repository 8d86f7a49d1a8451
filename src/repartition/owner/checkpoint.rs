//! An owner's state as bytes, so that its internal partitions can move to
//! another instance: the engine's snapshot of the owned shards, the events
//! held for the clock, the reported clocks and origins. Restored and fed
//! the internal partitions from the offsets the checkpoint was taken at, an
//! owner emits exactly what the original emitted after that point.

use serde::{Deserialize, Serialize};

use super::{Owner, Pending, Tag};
use crate::config::Config;
use crate::engine::{EngineError, SnapshotError};
use crate::repartition::Source;

/// Version of the checkpoint format (3: held events as their shard-topic
/// body and order key; 4: the input offsets forwarded per internal
/// partition and source, `Owner::forwarded` — a version 3 checkpoint still
/// restores, without them).
const VERSION: u8 = 4;

/// An owner checkpoint that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OwnerCheckpointError {
    /// The engine's snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The engine cannot be built from the configuration.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The bytes are not an owner checkpoint of this version.
    #[error("owner checkpoint does not decode: {0}")]
    Decode(String),
    /// The checkpoint belongs to other internal partitions.
    #[error("owner checkpoint of partitions {found:?}, expected {expected:?}")]
    Partitions {
        /// Partitions the checkpoint covers.
        found: Vec<u32>,
        /// Partitions asked for.
        expected: Vec<u32>,
    },
}

#[derive(Serialize, Deserialize)]
struct HeldRow {
    key: u64,
    body: Vec<u8>,
    partition: u32,
    offset: i64,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u8,
    owned: Vec<u32>,
    engine: Vec<u8>,
    held: Vec<HeldRow>,
    released_below: Option<i64>,
    marks: Vec<(u32, Source, i64)>,
    idle: Vec<(u32, Source)>,
    origins: Vec<(u32, i64)>,
    newest: Option<i64>,
    skipped: u64,
    unreadable: u64,
    /// Version 4 on.
    forwarded: Vec<(u32, Source, i64)>,
    resent: u64,
}

/// [`Checkpoint`] of version 3.
#[derive(Deserialize)]
struct CheckpointV3 {
    version: u8,
    owned: Vec<u32>,
    engine: Vec<u8>,
    held: Vec<HeldRow>,
    released_below: Option<i64>,
    marks: Vec<(u32, Source, i64)>,
    idle: Vec<(u32, Source)>,
    origins: Vec<(u32, i64)>,
    newest: Option<i64>,
    skipped: u64,
    unreadable: u64,
}

impl Checkpoint {
    fn decode(bytes: &[u8]) -> Result<Checkpoint, OwnerCheckpointError> {
        let bad = |e: bincode::Error| OwnerCheckpointError::Decode(e.to_string());
        match bytes.first() {
            Some(3) => {
                let c: CheckpointV3 = bincode::deserialize(bytes).map_err(bad)?;
                Ok(Checkpoint {
                    version: c.version,
                    owned: c.owned,
                    engine: c.engine,
                    held: c.held,
                    released_below: c.released_below,
                    marks: c.marks,
                    idle: c.idle,
                    origins: c.origins,
                    newest: c.newest,
                    skipped: c.skipped,
                    unreadable: c.unreadable,
                    forwarded: Vec::new(),
                    resent: 0,
                })
            }
            _ => bincode::deserialize(bytes).map_err(bad),
        }
    }
}

impl Owner {
    /// The owner's state (take it between two messages; record with it the
    /// next offset of each owned internal partition).
    pub fn checkpoint(&self) -> Result<Vec<u8>, OwnerCheckpointError> {
        let cp = Checkpoint {
            version: VERSION,
            owned: self.owned.iter().copied().collect(),
            engine: self.engine.snapshot()?,
            held: self
                .seq
                .iter()
                .map(|h| HeldRow {
                    key: h.key,
                    body: h.body.to_vec(),
                    partition: h.tag.partition,
                    offset: h.tag.offset,
                })
                .collect(),
            released_below: self.seq.released_below(),
            marks: self.marks.iter().map(|(&(p, s), &t)| (p, s, t)).collect(),
            idle: self.idle.iter().copied().collect(),
            origins: self.origins.iter().map(|(&r, &t)| (r, t)).collect(),
            newest: self.newest,
            skipped: self.skipped,
            unreadable: self.unreadable,
            forwarded: self
                .forwarded
                .iter()
                .map(|(&(p, s), &o)| (p, s, o))
                .collect(),
            resent: self.resent,
        };
        let mut out = Vec::new();
        bincode::serialize_into(&mut out, &cp)
            .map_err(|e| OwnerCheckpointError::Decode(e.to_string()))?;
        Ok(out)
    }

    /// The owner of `owned` as it was when `bytes` were taken (the other
    /// arguments as for [`Owner::new`]).
    pub fn restore(
        cfg: &Config,
        shards: u32,
        partitions: u32,
        owned: impl IntoIterator<Item = u32>,
        sources: Vec<Source>,
        bytes: &[u8],
    ) -> Result<Owner, OwnerCheckpointError> {
        let cp = Checkpoint::decode(bytes)?;
        if cp.version != VERSION && cp.version != 3 {
            return Err(OwnerCheckpointError::Decode(format!(
                "version {}, this crisiswatch reads {VERSION}",
                cp.version
            )));
        }
        let mut owner = Owner::new(cfg, shards, partitions, owned, sources)?;
        let expected: Vec<u32> = owner.owned.iter().copied().collect();
        if cp.owned != expected {
            return Err(OwnerCheckpointError::Partitions {
                found: cp.owned,
                expected,
            });
        }
        owner.engine.restore(&cp.engine)?;
        for h in cp.held {
            let tag = Tag {
                partition: h.partition,
                offset: h.offset,
            };
            let held = Pending::new(h.key, h.body, tag)
                .map_err(|e| OwnerCheckpointError::Decode(e.to_string()))?;
            // Held events lie at or after the release point: all are kept.
            let _ = owner.seq.offer(held);
        }
        owner.seq.set_released_below(cp.released_below);
        owner.marks = cp.marks.into_iter().map(|(p, s, t)| ((p, s), t)).collect();
        owner.idle = cp.idle.into_iter().collect();
        owner.origins = cp.origins.into_iter().collect();
        owner.newest = cp.newest;
        owner.skipped = cp.skipped;
        owner.unreadable = cp.unreadable;
        owner.forwarded = cp
            .forwarded
            .into_iter()
            .map(|(p, s, o)| ((p, s), o))
            .collect();
        owner.resent = cp.resent;
        Ok(owner)
    }
}
