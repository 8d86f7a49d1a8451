//! Durable state of the engine stage: restore on start, incremental
//! checkpoints while running (see `crate::state` for the format and the
//! consistency argument).
//!
//! * **Restore**: the stored groups go back into the engine (into any
//!   number of workers), the sequencer's release point and each partition's
//!   newest event time into the feed; the offset tracker commits nothing past
//!   a checkpoint from then on. When a partition is read again from its
//!   committed offset, every message the checkpoint covers is skipped
//!   ([`PartitionState::covers`]): held events and dead letters in flight at
//!   the checkpoint are processed again, nothing else.
//! * **Checkpoint** every `state.checkpoint_interval`, before a revoked
//!   partition is committed, and at a graceful stop — always after the
//!   transitions so far are in the outbox. The engine task only encodes the
//!   groups changed since the previous checkpoint
//!   ([`ShardedEngine::checkpoint_delta`]) and the progress it covers; a
//!   writer thread ([`writer`]) does the fsynced write, so ingestion pauses
//!   for the encoding alone (`crisiswatch_checkpoint_stall_seconds`). A
//!   periodic checkpoint due while the previous write is still running is
//!   skipped (its changes go with the next one); the one before a revoke and
//!   the final one wait for their write. Commits advance to a checkpoint only
//!   once it is written. A failed write is logged at ERROR and counted,
//!   readiness drops (`/readyz` names the store's error), commits stay at the
//!   last checkpoint, and the next checkpoint writes the whole state again.
//! * **A checkpoint that cannot be loaded** (corrupt, another format) is
//!   never loaded and never overwritten: the service stays up but consumes
//!   nothing, `/readyz` answers 503 with the reason and
//!   `crisiswatch_checkpoint_unreadable` is 1, until an operator runs
//!   `crisiswatch state reset` beside it or repairs it: the store is looked
//!   at again every `checkpoint_interval` (its record's stamp and SQLite's
//!   `data_version`, which any other process's commit changes), and when it
//!   changed, consumption starts from what it then holds, checked against
//!   the broker like a restore at a start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::config::KafkaSourceConfig;
use crate::engine::ShardedEngine;
use crate::source::context::Shared;
use crate::source::identity::Identity;
use crate::source::offsets::OffsetTracker;
use crate::source::Partition;
use crate::state::{Checkpoint, EngineState, Last, PartitionState, StateError, StateStore};

use super::feed::LiveFeed;
use super::reread::Reread;
use super::RunError;

mod check;
mod metrics;
mod writer;

pub(crate) use metrics::StateMetrics;
use writer::{fail, lock, Flags, Job, Writer};

/// The store, its schedule and what a restore must still skip.
#[derive(Debug)]
pub(crate) struct Durable {
    /// The store until the writer thread starts (first checkpoint).
    store: Option<StateStore>,
    /// A checkpoint was loaded since [`Durable::take_loaded`] last looked:
    /// the metrics count from the restored counters.
    loaded: bool,
    path: PathBuf,
    every: Duration,
    grace: Duration,
    last: Instant,
    /// Per partition: the restored checkpoint's progress, until the
    /// partition has been read past it.
    skip: HashMap<Partition, PartitionState>,
    /// Restored partitions whose first message since the restore has not
    /// been read yet (see [`Durable::covered`]).
    first: std::collections::HashSet<Partition>,
    metrics: StateMetrics,
    /// The writer thread's queue.
    writer: Option<mpsc::Sender<Job>>,
    flags: Flags,
    /// The stored checkpoint's stamp (format, written) once loaded: the
    /// writer checks that nobody changed the store before building on it.
    stamp: Option<(u32, i64)>,
    /// The stored checkpoint cannot be loaded: why, and the store as it was
    /// then.
    refused: Option<(String, Seen)>,
    /// The client settings the broker check of a restore uses (none: no check).
    source: Option<KafkaSourceConfig>,
    /// The broker check of the restored partitions, while it runs: nothing
    /// is consumed (so nothing skipped) until its verdict is in.
    check: Option<mpsc::Receiver<HashMap<Partition, Identity>>>,
    /// When the running check started.
    check_started: Option<Instant>,
}

/// How long a restore waits for the broker to show the restored partitions'
/// last messages (`source::identity`); past it, the checkpoint's offsets are
/// trusted as before the check existed.
const CHECK_BUDGET: Duration = Duration::from_secs(10);

/// How long the check waits for a broker that does not answer at all (down,
/// restarting) before the checkpoint's offsets are trusted unchecked.
const CHECK_UNREACHABLE: Duration = Duration::from_secs(300);

/// The store as a refused load saw it: its checkpoint's stamp and SQLite's
/// `data_version` (a repair in place, a row put back, changes the latter
/// only). Either changing makes a waiting service load again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    stamp: Option<(u32, i64)>,
    version: Option<i64>,
}

impl Seen {
    fn of(store: &StateStore) -> Result<Self, StateError> {
        Ok(Seen {
            stamp: store.stamp()?,
            version: store.data_version().ok(),
        })
    }
}

/// Says, at the first message a restored partition reads, which messages
/// the checkpoint still needed were skipped over: the consumer starts at
/// the group's committed offset, which a checkpoint never trails — unless
/// `state.sqlite` was put back from an older copy (a backup, a lost `-wal`
/// file). Those events are missing from the state, and were silently so.
/// A gap of one past the checkpoint's last message is a transaction marker.
fn unread_after_restore(p: &PartitionState, first: i64) -> usize {
    let pending = p.pending.iter().filter(|&&o| o < first).count();
    let beyond = first.saturating_sub(p.next).saturating_sub(1).max(0);
    let unread = pending.saturating_add(usize::try_from(beyond).unwrap_or(usize::MAX));
    if unread > 0 {
        tracing::error!(
            topic = %p.topic,
            partition = p.partition,
            checkpoint_resume = p.resume,
            first_read = first,
            unread,
            "The first message read after the restore lies past where the checkpoint resumes: messages it needed were never read, and their events are missing from the state (the group's committed offsets are ahead of the checkpoint: a state.sqlite older than them, put back from a copy or without its -wal file; aborted transactions or compaction can explain a few). To apply them, stop the service and reset the group's offsets of this partition to checkpoint_resume (kafka-consumer-groups --reset-offsets --to-offset), then start it."
        );
    }
    unread
}

/// Why a restore did not happen.
enum LoadError {
    /// The stored checkpoint cannot be loaded: the service waits.
    Refused(String),
    /// The store cannot be read at all.
    Fatal(RunError),
}

impl Durable {
    /// Opens the store; restores the checkpoint (if any) into the engine, the
    /// feed and the tracker. Each checkpointed partition holds the clock for
    /// `grace` (plus the idle-partition timeout) even before it is assigned:
    /// after a crash its previous owner keeps it until the consumer session
    /// times out, and events released meanwhile would make its events late.
    /// A checkpoint that cannot be loaded is not an error here: the service
    /// waits for an operator ([`Durable::failing`], see the module docs).
    pub(crate) fn restore(
        store: Result<StateStore, StateError>,
        (every, grace): (Duration, Duration),
        metrics: StateMetrics,
        topics: &[String],
        engine: &mut ShardedEngine,
        feed: &mut LiveFeed,
        tracker: &mut OffsetTracker,
    ) -> Result<Self, RunError> {
        tracker.limit_to_checkpoints();
        let path = match &store {
            Ok(s) => s.path().to_path_buf(),
            Err(e) => e.path().to_path_buf(),
        };
        let mut d = Durable {
            path,
            store: None,
            every,
            grace,
            last: Instant::now(),
            skip: HashMap::new(),
            first: std::collections::HashSet::new(),
            loaded: false,
            metrics,
            writer: None,
            flags: Flags::default(),
            stamp: None,
            refused: None,
            source: None,
            check: None,
            check_started: None,
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => {
                // The file cannot even be opened as a database (truncated,
                // overwritten): the service waits as for a checkpoint it
                // cannot load, and opens it again once it changes.
                d.refuse(
                    e.to_string(),
                    Seen {
                        stamp: None,
                        version: None,
                    },
                );
                return Ok(d);
            }
        };
        match d.load(&store, topics, engine, feed, tracker) {
            Ok(()) => {}
            Err(LoadError::Refused(why)) => {
                let seen = Seen::of(&store).unwrap_or(Seen {
                    stamp: None,
                    version: None,
                });
                d.refuse(why, seen)
            }
            Err(LoadError::Fatal(e)) => return Err(e),
        }
        d.store = Some(store);
        Ok(d)
    }

    /// Loads what `store` holds into the engine, the feed and the tracker
    /// (nothing changes unless it all loads).
    fn load(
        &mut self,
        store: &StateStore,
        topics: &[String],
        engine: &mut ShardedEngine,
        feed: &mut LiveFeed,
        tracker: &mut OffsetTracker,
    ) -> Result<(), LoadError> {
        let started = Instant::now();
        let cp = match store.load() {
            Ok(Some(cp)) => cp,
            Ok(None) => {
                tracing::info!(store = %store.path().display(), "No checkpoint: the engine starts empty.");
                return Ok(());
            }
            Err(e) if e.is_unloadable() => return Err(LoadError::Refused(e.to_string())),
            Err(e) => return Err(LoadError::Fatal(e.into())),
        };
        let restored = match &cp.engine {
            EngineState::Rows(rows) => engine.restore_stored(rows),
            EngineState::Whole(bytes) => engine.restore(bytes),
        };
        let summary = restored.map_err(|e| {
            LoadError::Refused(
                StateError::Corrupt {
                    path: store.path().to_path_buf(),
                    detail: e.to_string(),
                }
                .to_string(),
            )
        })?;
        self.loaded = true;
        if matches!(cp.engine, EngineState::Whole(_)) {
            tracing::info!("Checkpoint of the previous format loaded; the next checkpoint rewrites it in the current one.");
        }
        self.stamp = store.stamp().ok().flatten();
        let now = Instant::now();
        let lateness = feed.lateness_ms();
        let (seq, watermarks) = feed.parts_mut();
        seq.set_released_below(cp.released_below);
        let mut resume = Vec::new();
        for p in cp.partitions {
            let Some(t) = topics.iter().position(|n| *n == p.topic) else {
                tracing::warn!(topic = %p.topic, "Checkpoint of a topic no longer configured: ignored.");
                continue;
            };
            let at = Partition {
                topic: t as u16,
                partition: p.partition,
            };
            // What the partition had read past the release point was held,
            // not applied, and is read again: its clock restarts no further
            // than the release point allowed, or while it reads those events
            // again a faster partition moves the release point past them
            // and they arrive late.
            let max_ts = restored_clock(p.max_ts, cp.released_below, lateness);
            watermarks.restore(at, max_ts, now, self.grace);
            resume.push((at, p.resume));
            self.first.insert(at);
            self.skip.insert(at, p);
        }
        tracker.checkpointed(resume);
        let ms = started.elapsed().as_millis();
        let m = &self.metrics;
        m.restore_s.set(started.elapsed().as_secs_f64());
        m.restore_groups.set(summary.groups as i64);
        let age_s = (chrono::Utc::now().timestamp_millis() - cp.written_ms) / 1000;
        tracing::info!(
            store = %store.path().display(),
            groups = summary.groups,
            bytes = cp.engine_bytes,
            rules = summary.rules_restored.len(),
            partitions = self.skip.len(),
            age_s,
            ms = ms as u64,
            "Engine state restored from the checkpoint."
        );
        if !summary.rules_retuned.is_empty() {
            tracing::info!(rules = ?summary.rules_retuned, "Rules retuned since the checkpoint (thresholds, clear, for or keep_firing_for) keep their windows and alerts and are judged by the new settings.");
        }
        if !summary.rules_dropped.is_empty() {
            tracing::warn!(rules = ?summary.rules_dropped, "Rules changed or removed since the checkpoint start empty.");
        }
        Ok(())
    }

    /// Waits for an operator: the stored checkpoint (the store as `seen`)
    /// cannot be loaded.
    fn refuse(&mut self, why: String, seen: Seen) {
        tracing::error!(
            error = %why,
            "The stored checkpoint cannot be loaded: nothing is consumed or overwritten until `crisiswatch state reset` (not ready)."
        );
        self.metrics.unreadable.set(1);
        self.refused = Some((why, seen));
    }

    /// Whether a checkpoint was loaded since the last call.
    pub(crate) fn take_loaded(&mut self) -> bool {
        std::mem::take(&mut self.loaded)
    }

    /// While refused: loads the store again if it changed (a reset, a
    /// checkpoint put back, a row repaired in place).
    fn retry(&mut self, engine: &mut ShardedEngine, feed: &mut LiveFeed, shared: &Arc<Shared>) {
        let Some((_, was)) = &self.refused else {
            return;
        };
        let was = *was;
        let store = match self.store.take() {
            Some(s) => s,
            // Never opened (a damaged file): once it opens (reset, put
            // back), it is a store that changed.
            None => match self.path.parent().map(StateStore::open) {
                Some(Ok(s)) => s,
                _ => return,
            },
        };
        match Seen::of(&store) {
            Ok(now) if now != was => {
                let mut tracker = shared.tracker();
                match self.load(&store, &shared.topics, engine, feed, &mut tracker) {
                    Ok(()) => {
                        self.refused = None;
                        self.metrics.unreadable.set(0);
                        tracing::info!("The state store is readable again (reset or replaced): consumption starts.");
                        self.start_check(&shared.topics);
                    }
                    Err(LoadError::Refused(why)) => self.refuse(why, now),
                    Err(LoadError::Fatal(e)) => {
                        tracing::warn!(error = %e, "Cannot read the state store.");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Cannot read the state store."),
        }
        self.store = Some(store);
    }

    /// Whether message `offset` of `at` is covered by the restored checkpoint
    /// (skip it: its effect is in the restored state).
    pub(crate) fn covered(&mut self, at: Partition, offset: i64) -> bool {
        let Some(p) = self.skip.get(&at) else {
            return false;
        };
        if self.first.remove(&at) {
            unread_after_restore(p, offset);
        }
        if p.covers(offset) {
            return true;
        }
        if offset >= p.next {
            self.skip.remove(&at);
        }
        false
    }

    /// Whether the store held no checkpoint at the start (nothing restored,
    /// nothing refused).
    pub(crate) fn started_empty(&self) -> bool {
        self.stamp.is_none() && self.refused.is_none()
    }

    /// Whether a checkpoint is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.every
    }

    /// Whether the stage must not consume: the last checkpoint write failed,
    /// the stored checkpoint cannot be loaded, or the restored partitions are
    /// being checked against the broker.
    pub(crate) fn failing(&self) -> bool {
        self.refused.is_some() || self.check.is_some() || lock(&self.flags.failure).is_some()
    }

    /// Why the stage is not ready, while [`Durable::failing`].
    pub(crate) fn failure(&self) -> Option<String> {
        if self.check.is_some() {
            let since = self.check_started.map_or(0, |t| t.elapsed().as_secs());
            return Some(format!(
                "state store: checking that the broker still holds the messages the restored checkpoint read, for {since}s: nothing is consumed until the broker answers (waited for up to {}s; a broker that is down or unreachable shows as crisiswatch_kafka_consumer_stalled), then at most {}s",
                CHECK_UNREACHABLE.as_secs(),
                CHECK_BUDGET.as_secs()
            ));
        }
        if let Some((why, _)) = &self.refused {
            return Some(format!(
                "state store: the stored checkpoint cannot be loaded, nothing is consumed until `crisiswatch state reset`: {why}"
            ));
        }
        lock(&self.flags.failure).clone().map(|f| {
            format!("cannot write the data directory (consumption paused, nothing committed past it; retrying): state store: the last checkpoint could not be written: {f}")
        })
    }

    /// Checkpoints `engine` and `feed` with the tracker's progress: the
    /// changes are encoded now, the write happens on the writer thread. With
    /// `wait` (before a revoke is committed, at the final stop) it returns
    /// once the write is done; otherwise a checkpoint due while the previous
    /// write still runs is skipped until the next tick. A failure is logged
    /// and counted (not fatal: commits wait for the next checkpoint). While
    /// the stored checkpoint cannot be loaded, it only looks whether an
    /// operator reset it, and writes nothing.
    pub(crate) fn checkpoint(
        &mut self,
        engine: &mut ShardedEngine,
        feed: &mut LiveFeed,
        shared: &Arc<Shared>,
        reread: &Reread,
        wait: bool,
    ) {
        let started = Instant::now();
        self.last = started;
        if self.refused.is_some() {
            self.retry(engine, feed, shared);
            return;
        }
        if !wait && self.flags.busy.load(Ordering::SeqCst) {
            tracing::debug!("Checkpoint skipped: the previous one is still being written.");
            return;
        }
        let full = self.flags.need_full.load(Ordering::SeqCst);
        let delta = match engine.checkpoint_delta(full) {
            Ok(d) => d,
            Err(e) => {
                // Its marks are gone: the next one writes everything.
                self.flags.need_full.store(true, Ordering::SeqCst);
                fail(&self.metrics, &self.flags.failure, &e.to_string());
                return;
            }
        };
        let progress = shared.tracker().export();
        let clocks: HashMap<Partition, Option<i64>> =
            feed.watermarks().partition_clocks().into_iter().collect();
        let mut partitions: Vec<PartitionState> = Vec::new();
        let mut resume = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (at, r, next, pending) in progress {
            seen.insert(at);
            // Only the message at `next - 1`: a position moved back in
            // place (no rebalance) leaves `next` ahead of what was read.
            let mut last = reread
                .last(at)
                .filter(|&(o, _)| o == next - 1)
                .map(|(offset, print)| Last { offset, print });
            // A restored partition still re-read below its checkpoint's
            // position (from the committed offset): what the engine holds
            // is the checkpoint's progress and what was read since.
            let (r, next, pending) = match self.skip.get(&at) {
                Some(p) => {
                    let merged = p.merged(r, next, &pending);
                    if merged.1 == p.next && p.next > next {
                        last = p.last;
                    }
                    merged
                }
                None => (r, next, pending),
            };
            resume.push((at, r));
            partitions.push(PartitionState {
                topic: shared.topics[usize::from(at.topic)].clone(),
                partition: at.partition,
                max_ts: clocks.get(&at).copied().flatten(),
                resume: r,
                next,
                pending,
                last,
            });
        }
        // Restored partitions not read since keep their progress.
        for (at, p) in &self.skip {
            if !seen.contains(at) {
                resume.push((*at, p.resume));
                partitions.push(p.clone());
            }
        }
        let cp = Checkpoint {
            written_ms: chrono::Utc::now().timestamp_millis(),
            engine: delta,
            released_below: feed.released_below(),
            partitions,
        };
        self.metrics.stall_s.set(started.elapsed().as_secs_f64());
        let Some(writer) = self.writer(shared) else {
            self.flags.need_full.store(true, Ordering::SeqCst);
            fail(
                &self.metrics,
                &self.flags.failure,
                "the checkpoint writer thread could not start",
            );
            return;
        };
        let (done, result) = if wait {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.flags.busy.store(true, Ordering::SeqCst);
        let job = Job {
            cp,
            resume,
            started,
            done,
        };
        if writer.send(job).is_err() {
            self.flags.busy.store(false, Ordering::SeqCst);
            self.flags.need_full.store(true, Ordering::SeqCst);
            self.writer = None;
            fail(
                &self.metrics,
                &self.flags.failure,
                "the checkpoint writer thread ended",
            );
            return;
        }
        if let Some(rx) = result {
            // The write must be on disk before the caller commits or exits.
            let _ = rx.recv();
        }
    }

    /// The writer thread's queue (started at the first checkpoint).
    fn writer(&mut self, shared: &Arc<Shared>) -> Option<mpsc::Sender<Job>> {
        if let Some(w) = &self.writer {
            return Some(w.clone());
        }
        let store = self.store.take()?;
        let (tx, rx) = mpsc::channel();
        let w = Writer {
            store,
            shared: Arc::clone(shared),
            metrics: self.metrics.clone(),
            flags: self.flags.clone(),
            stamp: self.stamp,
        };
        match std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || w.run(rx))
        {
            Ok(_) => {
                self.writer = Some(tx.clone());
                Some(tx)
            }
            Err(e) => {
                tracing::error!(error = %e, store = %self.path.display(), "Cannot start the checkpoint writer thread.");
                None
            }
        }
    }
}

/// A partition's clock after a restore: the newest event time it had read
/// (`max_ts`), but no further than the release point (`released_below`)
/// allowed — what it read past that was held, not applied, and is read
/// again. None when nothing was released (everything is read again).
fn restored_clock(
    max_ts: Option<i64>,
    released_below: Option<i64>,
    lateness_ms: i64,
) -> Option<i64> {
    let below = released_below?;
    max_ts.map(|m| m.min(below.saturating_add(lateness_ms)))
}

#[cfg(test)]
mod tests;
