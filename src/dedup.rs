//! Duplicate suppression: a repeated event `id` within the dedup horizon is
//! counted once (`docs/contract.md` §1).
//!
//! Sits between decoding and routing. Redeliveries after a consumer restart
//! (at-least-once) must not inflate a window, so every accepted id is
//! remembered for `engine.dedup_horizon` of event time. Ids are kept as 64-bit
//! keyed hashes (SipHash-1-3 under a [`DedupKey`]; a false "duplicate" needs a
//! 64-bit collision among the ids inside one horizon: about 1 in 10^7 for a
//! million ids), in a map plus an insertion-ordered queue that expires them.
//! Memory is bounded by `engine.dedup_max_ids`: past it the oldest ids are
//! forgotten early, and that is counted.
//!
//! The key decides which ids collide. `run` uses a random key made once per
//! installation and kept in its data directory ([`DedupKey::load_or_create`]),
//! so a producer who knows the code still cannot choose two ids that collide
//! and so have a real event dropped as a "duplicate"; the key outlives
//! restarts, so the dedup memory a checkpoint restores still matches the ids
//! that come again. `replay`, `backtest`, `tune` and `demo` use
//! [`DedupKey::FIXED`], so their results depend on their input alone.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use siphasher::sip::SipHasher13;

mod flat;

use flat::FlatSet;

/// The key of the id hash (128 bits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct DedupKey([u8; 16]);

impl std::fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is not printed: whoever knows it can make ids collide.
        f.write_str("DedupKey(**REDACTED**)")
    }
}

/// Why the installation's dedup key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum DedupKeyError {
    /// Reading or writing the key file failed.
    #[error("dedup key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not 32 hex digits.
    #[error("dedup key {path} is not 32 hex digits; delete it to make a new key (the dedup memory of a checkpoint is then lost)")]
    Corrupt {
        /// The key file.
        path: PathBuf,
    },
}

impl DedupKey {
    /// The fixed key of replay, backtest, tune and demo.
    pub(crate) const FIXED: DedupKey = DedupKey(*b"crisiswatch-ddup");

    /// The key file's name in the data directory.
    pub(crate) const FILE_NAME: &'static str = "dedup.key";

    /// The installation's key from `dir`/`dedup.key`, made (random, from the
    /// operating system) and written there on first use, readable by the
    /// owner only.
    pub(crate) fn load_or_create(dir: &Path) -> Result<DedupKey, DedupKeyError> {
        let path = dir.join(Self::FILE_NAME);
        let io = |source| DedupKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).ok();
                let key = bytes.and_then(|b| <[u8; 16]>::try_from(b).ok());
                key.map(DedupKey)
                    .ok_or_else(|| DedupKeyError::Corrupt { path: path.clone() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let mut key = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                // Written beside, then renamed: a crash never leaves half a key.
                let tmp = dir.join(format!("{}.tmp", Self::FILE_NAME));
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp).map_err(io)?;
                writeln!(f, "{}", hex::encode(key)).map_err(io)?;
                f.sync_all().map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                tracing::info!(path = %path.display(), "Made this installation's dedup key.");
                Ok(DedupKey(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn hash(&self, id: &str) -> u64 {
        let mut h = SipHasher13::new_with_key(&self.0);
        h.write(id.as_bytes());
        h.finish()
    }
}

/// Remembers recent event ids.
#[derive(Debug)]
pub struct Dedup {
    /// Horizon in ms of event time; 0 disables deduplication.
    horizon_ms: i64,
    /// Upper bound on remembered ids.
    max_ids: usize,
    /// Hashes of the remembered ids.
    seen: FlatSet,
    /// (clock when seen, id hash), oldest first, for expiry.
    order: VecDeque<(i64, u64)>,
    key: DedupKey,
    /// Ids forgotten before their horizon because of `max_ids`.
    pub(crate) evicted_early: u64,
    /// Of those, the ones this process forgot (not restored from a
    /// checkpoint): what the metric counts.
    pub(crate) evicted_here: u64,
    /// Ids ever remembered: the sequence number of the next one (the
    /// oldest remembered has `appended - order.len()`), so an incremental
    /// checkpoint writes only the ids remembered since the last one.
    appended: u64,
}

impl Dedup {
    /// A dedup set with the given horizon (ms) and capacity.
    pub(crate) fn new(horizon_ms: i64, max_ids: usize) -> Self {
        Dedup {
            horizon_ms,
            max_ids: max_ids.max(1),
            seen: FlatSet::default(),
            order: VecDeque::new(),
            key: DedupKey::FIXED,
            evicted_early: 0,
            evicted_here: 0,
            appended: 0,
        }
    }

    /// Hashes ids under `key` from now on. Set it before the first id, and
    /// before [`Dedup::restore`]: remembered hashes are only valid under the
    /// key that made them.
    pub(crate) fn set_key(&mut self, key: DedupKey) {
        self.key = key;
    }

    /// The key ids are hashed under.
    pub(crate) fn key(&self) -> DedupKey {
        self.key
    }

    /// The remembered ids as (clock when seen, id hash), oldest first, and
    /// the early-eviction count: what a checkpoint keeps.
    pub(crate) fn export(&self) -> (Vec<(i64, u64)>, u64) {
        (self.order.iter().copied().collect(), self.evicted_early)
    }

    /// Restores what [`Dedup::export`] returned.
    pub(crate) fn restore(&mut self, order: Vec<(i64, u64)>, evicted_early: u64) {
        self.seen.clear();
        self.seen.extend(order.iter().map(|&(_, h)| h));
        self.order = order.into();
        self.evicted_early = evicted_early;
        self.appended = self.order.len() as u64;
    }

    /// Sequence numbers: (of the oldest id remembered, of the next id).
    pub(crate) fn seq_range(&self) -> (u64, u64) {
        (self.appended - self.order.len() as u64, self.appended)
    }

    /// The remembered ids with sequence numbers in `from..to` (within
    /// [`Dedup::seq_range`]), oldest first.
    pub(crate) fn export_seq(&self, from: u64, to: u64) -> impl Iterator<Item = (i64, u64)> + '_ {
        let front = self.appended - self.order.len() as u64;
        let clamp = |s: u64| (s.clamp(front, self.appended) - front) as usize;
        let (a, b) = (clamp(from), clamp(to));
        self.order.range(a..b.max(a)).copied()
    }

    /// Restores ids exported with [`Dedup::export_seq`]: `order` holds the
    /// ids with sequence numbers from `front` on.
    pub(crate) fn restore_seq(&mut self, front: u64, order: Vec<(i64, u64)>, evicted_early: u64) {
        self.restore(order, evicted_early);
        self.appended = front + self.order.len() as u64;
    }

    /// Whether deduplication is on.
    pub fn enabled(&self) -> bool {
        self.horizon_ms > 0
    }

    /// Records `id` at engine clock `clock`; returns `true` if it is a repeat
    /// of an id seen within the horizon (the caller drops the event).
    pub(crate) fn check_and_insert(&mut self, id: &str, clock: i64) -> bool {
        if self.horizon_ms <= 0 {
            return false;
        }
        let h = self.key.hash(id);
        self.check_and_insert_hash(h, clock)
    }

    /// The keyed hash of an id, for [`Dedup::check_and_insert_hash`]
    /// (`None` when deduplication is off).
    #[inline]
    pub(crate) fn hash_of(&self, id: &str) -> Option<u64> {
        (self.horizon_ms > 0).then(|| self.key.hash(id))
    }

    /// Asks the memory for where the set looks `h` up, and for where it
    /// holds the id `ahead` places from the oldest (the one expiry is
    /// likely to remove that many ids later: one per id in a steady
    /// stream). Hints only.
    #[inline]
    pub(crate) fn prefetch(&self, h: u64, ahead: usize) {
        self.seen.prefetch(h);
        if let Some(&(_, old)) = self.order.get(ahead) {
            self.seen.prefetch(old);
        }
    }

    /// [`Dedup::check_and_insert`] of the id whose [`Dedup::hash_of`] is `h`.
    pub(crate) fn check_and_insert_hash(&mut self, h: u64, clock: i64) -> bool {
        if self.horizon_ms <= 0 {
            return false;
        }
        self.expire(clock);
        if self.seen.len() < self.max_ids {
            // One probe: `insert` says whether the id was new.
            if !self.seen.insert(h) {
                return true;
            }
        } else {
            if self.seen.contains(h) {
                return true;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(old);
                self.evicted_early += 1;
                self.evicted_here += 1;
            }
            self.seen.insert(h);
        }
        self.order.push_back((clock, h));
        self.appended += 1;
        false
    }

    /// Forgets ids seen more than the horizon before `clock`.
    fn expire(&mut self, clock: i64) {
        let limit = clock.saturating_sub(self.horizon_ms);
        while let Some(&(t, h)) = self.order.front() {
            if t >= limit {
                break;
            }
            self.order.pop_front();
            self.seen.remove(h);
        }
    }

    /// Number of ids remembered now.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_horizon_are_dropped() {
        let mut d = Dedup::new(1000, 100);
        assert!(!d.check_and_insert("a", 0));
        assert!(d.check_and_insert("a", 500));
        assert!(d.check_and_insert("a", 1000));
        // Past the horizon the id is forgotten and counts again.
        assert!(!d.check_and_insert("a", 1001));
    }

    #[test]
    fn the_installation_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = DedupKey::load_or_create(dir.path()).unwrap();
        let k2 = DedupKey::load_or_create(dir.path()).unwrap();
        assert_eq!(k1, k2, "the key is stable across restarts");
        assert_ne!(k1, DedupKey::FIXED);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(k1, DedupKey::load_or_create(other.path()).unwrap());
        assert!(!format!("{k1:?}").contains(&hex::encode(k1.0)));
        // Ids hash differently under another key: which ids collide is not
        // predictable without the key.
        let (mut a, mut b) = (Dedup::new(1000, 10), Dedup::new(1000, 10));
        a.set_key(k1);
        a.check_and_insert("evt-1", 0);
        b.check_and_insert("evt-1", 0);
        assert_ne!(a.export().0, b.export().0);
        // A damaged file is an error that names it, never a silent new key.
        std::fs::write(dir.path().join(DedupKey::FILE_NAME), "zz\n").unwrap();
        let e = DedupKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dedup.key"), "{e}");
    }

    #[test]
    fn disabled_with_zero_horizon() {
        let mut d = Dedup::new(0, 100);
        assert!(!d.check_and_insert("a", 0));
        assert!(!d.check_and_insert("a", 0));
        assert!(!d.enabled());
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedup::new(i64::MAX / 4, 10);
        for i in 0..1000 {
            assert!(!d.check_and_insert(&format!("id-{i}"), i));
        }
        assert_eq!(d.len(), 10);
        assert_eq!(d.evicted_early, 990);
        assert_eq!(d.evicted_here, 990);
        assert!(d.check_and_insert("id-999", 1000));
        // Restored elsewhere (a restart, a partition taken over): the
        // earlier evictions are kept for the checkpoint, not counted as
        // this process's.
        let (order, early) = d.export();
        let mut again = Dedup::new(i64::MAX / 4, 10);
        again.restore(order, early);
        assert_eq!((again.evicted_early, again.evicted_here), (990, 0));
        again.check_and_insert("new", 1001);
        assert_eq!((again.evicted_early, again.evicted_here), (991, 1));
    }
}
