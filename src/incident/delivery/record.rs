//! Delivery outcomes the outbox could not record (disk full, a read-only or
//! locked file): the worker keeps them and writes them again before it sends
//! anything else. Without this, a notification the receiver accepted stayed
//! due in the outbox and was sent again at once, in a loop, for as long as
//! the outbox refused writes (thousands of duplicate pages a second).

use super::{Status, Worker};
use crate::incident::outbox::OutboxError;

/// Pause between attempts to record what the outbox refused, ms.
pub(super) const RECORD_RETRY_MS: i64 = 1_000;

/// The write a delivery outcome needs.
#[derive(Debug, Clone)]
pub(super) enum Record {
    /// The row reached its end (`Delivered`, `Failed`).
    Finish {
        status: Status,
        attempts: u32,
        error: Option<String>,
        at: i64,
    },
    /// Another attempt at `next`.
    Retry {
        attempts: u32,
        next: i64,
        error: String,
    },
}

/// Outcomes not yet recorded, oldest first (row id, write).
#[derive(Debug, Default)]
pub(super) struct Unrecorded {
    rows: Vec<(i64, Record)>,
    /// When the first of them failed (logged once per episode).
    since: Option<i64>,
}

impl Unrecorded {
    /// Whether some outcome waits to be recorded: nothing else is sent.
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl Worker {
    /// Records `rec` for row `id`; keeps it in `pending` when the outbox
    /// refuses (logged at ERROR the first time in a row of failures).
    pub(super) async fn record(&self, id: i64, rec: Record, pending: &mut Unrecorded) {
        match self.write(id, rec.clone()).await {
            Ok(()) => {}
            Err(OutboxError::Stopping) => pending.rows.push((id, rec)),
            Err(e) => {
                if pending.since.is_none() {
                    pending.since = Some(self.clock.now_ms());
                    tracing::error!(
                        receiver = %self.rt.name,
                        id,
                        error = %e,
                        "Cannot record a delivery outcome in the outbox; this receiver sends nothing more until it can (retrying every second), so nothing is sent twice."
                    );
                }
                pending.rows.push((id, rec));
            }
        }
    }

    /// Writes the kept outcomes again, oldest first, until one fails.
    pub(super) async fn flush(&self, pending: &mut Unrecorded) {
        while let Some((id, rec)) = pending.rows.first().cloned() {
            if self.write(id, rec).await.is_err() {
                return;
            }
            pending.rows.remove(0);
        }
        if let Some(since) = pending.since.take() {
            tracing::info!(
                receiver = %self.rt.name,
                waited_ms = self.clock.now_ms().saturating_sub(since),
                "The outbox records delivery outcomes again; deliveries resume."
            );
        }
    }

    /// At shutdown: says which outcomes were never recorded (their rows are
    /// sent again at the next start, under the same `webhook-id`).
    pub(super) fn abandon(&self, pending: &Unrecorded) {
        if !pending.is_empty() {
            tracing::warn!(
                receiver = %self.rt.name,
                notifications = pending.rows.len(),
                "Stopping with delivery outcomes the outbox did not record: those notifications are sent again by the next worker — after a reload at once, else at the next start (same webhook-id, so a receiver can drop the repeat)."
            );
        }
    }

    async fn write(&self, id: i64, rec: Record) -> Result<(), OutboxError> {
        match rec {
            Record::Finish {
                status,
                attempts,
                error,
                at,
            } => {
                self.db(move |o| o.finish(id, status, attempts, error.as_deref(), at))
                    .await
            }
            Record::Retry {
                attempts,
                next,
                error,
            } => {
                self.db(move |o| o.mark_retry(id, attempts, next, &error))
                    .await
            }
        }
    }
}
