//! How the incident stage stops, and its periodic outbox pruning: the
//! drain at shutdown (wait for the queue to empty up to a deadline, stop
//! the workers, cancel a request still in flight after a grace) and the
//! prune task that runs until the stop signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::delivery::Clock;
use super::super::metrics::IncidentMetrics;
use super::super::outbox::Outbox;
use super::super::DrainReport;
use super::IncidentManager;

impl IncidentManager {
    /// Waits (at most `timeout`) until nothing is queued, then stops the
    /// workers. The rest goes out after the next start (`scale_out`: from
    /// its partition's next owner). A request in flight at the deadline (a
    /// receiver that does not answer) gets [`STOP_GRACE`] more, then is
    /// cancelled: its row stays queued, sent again with the same `webhook-id`.
    pub async fn shutdown(&self, timeout: Duration) -> DrainReport {
        let names = self.receivers();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending;
        loop {
            let (ob, n) = (Arc::clone(&self.outbox), names.clone());
            pending = tokio::task::spawn_blocking(move || ob.pending_total(&n))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(-1);
            let now = tokio::time::Instant::now();
            if pending == 0 || now >= deadline {
                break;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
        }
        let _ = self.stop.send(true);
        let mut workers: Vec<JoinHandle<()>> = self
            .workers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        if let Ok(mut r) = self.receivers.lock() {
            workers.extend(r.stop_all());
        }
        // A worker finishes its current request before it stops, but not
        // past the deadline (and a short grace): the drain keeps its limit
        // even when a receiver takes up to its `delivery.timeout`.
        let until = deadline.max(tokio::time::Instant::now() + STOP_GRACE);
        let mut cancelled = 0;
        for mut w in workers {
            if tokio::time::timeout_at(until, &mut w).await.is_err() {
                w.abort();
                let _ = w.await;
                cancelled += 1;
            }
        }
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "Deliveries still waiting for their receiver at the end of the drain were cancelled; they stay queued and are sent again on the next start."
            );
        }
        if pending > 0 {
            let scaled = self.ownership.lock().map(|o| o.is_some()).unwrap_or(false);
            let next = if scaled {
                "they go with their incident partitions to the partitions' next owners"
            } else {
                "they are delivered by the next start of the service or the next `crisiswatch outbox deliver`"
            };
            let outbox = self.outbox.path().display();
            tracing::warn!(pending, %outbox, "Notifications still queued at shutdown; {next}.");
        }
        DrainReport {
            pending: pending.max(0),
        }
    }
}

/// How long a stopping worker may finish the request it is in past the
/// drain's deadline before it is cancelled.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// How often a long-running process prunes its outbox: an eighth of the
/// retention, between one minute and one hour.
pub fn prune_interval(retention_ms: i64) -> Duration {
    let ms = u64::try_from(retention_ms / 8).unwrap_or(0);
    Duration::from_millis(ms).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

/// Prunes the outbox every [`prune_interval`] (on the delivery clock) until
/// the stop signal, so a service that runs for months keeps only
/// `incidents.retention` of history, not just what it pruned at start.
pub(super) async fn prune_periodically(
    outbox: Arc<Outbox>,
    metrics: Arc<IncidentMetrics>,
    clock: Clock,
    retention_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let every = prune_interval(retention_ms);
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        next += every;
        match outbox.prune(clock.now_ms(), retention_ms) {
            Ok(p) if p.rows == 0 => {}
            Ok(p) => {
                metrics.record_pruned(&p);
                tracing::info!(rows = p.rows, dead_letters = ?p.dead_letters, "Outbox pruned.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot prune the outbox; retrying at the next interval.")
            }
        }
    }
}
