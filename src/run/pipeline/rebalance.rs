//! What a rebalance does to the engine stage: partitions assigned start
//! with a fresh watermark; partitions revoked are drained — dead letters
//! flushed, a checkpoint written (their final commit goes up to it), held
//! events dropped for the next owner — and what the engine did of them is
//! remembered, so that the same messages read again after a failed commit
//! are skipped if the partitions come back (`super::super::reread`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::source::Partition;

use super::Stage;

impl Stage {
    /// The broker names `parts` at the start: those not assigned yet hold
    /// the clock for `known_grace` (a crashed member of the group may hold
    /// them until its session times out; the clock must not move on the
    /// others alone meanwhile).
    pub(super) fn known(&mut self, parts: Vec<Partition>) {
        let now = Instant::now();
        tracing::debug!(
            partitions = parts.len(),
            grace_s = self.settings.known_grace.as_secs(),
            "Partitions named by the broker hold the clock until assigned (or for the grace)."
        );
        for p in parts {
            self.feed.wait_for(p, now, self.settings.known_grace);
        }
    }

    /// Partitions `parts` were assigned.
    pub(super) fn assigned(&mut self, parts: Vec<Partition>) {
        let now = Instant::now();
        // Partitions revoked and not handed back went to another
        // member: their fingerprints are of no use any more.
        self.reread.assigned(&parts);
        for p in parts {
            self.feed.assign(p, now);
        }
    }

    /// Partitions `revoked` are being revoked: everything the engine took of
    /// them is made final; `ack` tells the consumer thread it may commit.
    pub(super) async fn drain(
        &mut self,
        revoked: Vec<Partition>,
        ack: std::sync::mpsc::SyncSender<()>,
    ) {
        if self.closing {
            // The revoke of leaving the group, after the final drain:
            // everything is applied, checkpointed and committed
            // already; waiting on dead letters again would only spend
            // the shutdown bound.
            let _ = ack.send(());
            return;
        }
        if let Some(d) = &self.dlq {
            if !d.flush(self.settings.drain_timeout).await {
                tracing::warn!(
                    "Dead letters still in flight at a drain; their offsets stay uncommitted."
                );
            }
        }
        // The revoked partitions (at a stop: all) are committed up to
        // this checkpoint; after the final drain nothing more is
        // applied or checkpointed.
        self.checkpoint(true);
        if self.shared.stopping.load(Ordering::SeqCst) {
            self.closing = true;
            // The log's last word on late events counts them all.
            self.feed.warn_late_now(Instant::now());
        }
        if !self.closing {
            // What the engine has not done of the revoked partitions
            // (held events, dropped below; dead letters in flight)
            // is processed again if they come back.
            let progress = self.shared.tracker().export();
            for (at, _, _, pending) in progress {
                if revoked.contains(&at) {
                    self.reread.revoke(at, &pending);
                }
            }
        }
        for p in revoked {
            let dropped = self.feed.revoke(p);
            if dropped > 0 {
                tracing::debug!(topic = %self.shared.topics[usize::from(p.topic)], partition = p.partition, dropped, "Held events of a revoked partition dropped; its next owner reads them again.");
            }
        }
        // The consumer thread may have given up waiting: nothing to do then.
        let _ = ack.send(());
    }

    /// Forgets fingerprints past their time; logs the messages skipped as
    /// read again since the last call.
    pub(super) fn reread_trim(&mut self, now: Instant) {
        self.reread.trim(now);
        if self.reread.skipped() > self.reread_logged {
            tracing::info!(
                skipped = self.reread.skipped() - self.reread_logged,
                "Skipped messages read again after their partitions came back: the engine applied them before the revoke (whose commit failed)."
            );
            self.reread_logged = self.reread.skipped();
        }
    }
}
