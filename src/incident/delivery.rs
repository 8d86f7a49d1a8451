//! Delivery workers: one task per receiver drains that receiver's rows of the
//! outbox, in order per incident, under the policy of [`super::policy`].
//!
//! The last stage of the data flow. A worker wakes when the manager enqueues,
//! when its next retry is due, when its breaker's cooldown ends, and every few
//! seconds to see rows re-queued by `crisiswatch outbox retry` from another
//! process. Receivers never share a worker, a connection pool or a retry
//! queue, so one dead receiver (timing out, with its breaker open) does not
//! slow the others.
//!
//! Per row: render for the receiver's kind, sign, POST with a timeout; 2xx
//! marks it delivered; 429/5xx/timeouts/connection errors schedule a retry
//! (backoff with jitter, at least `Retry-After`); another 4xx fails it; a row
//! still pending `max_age` after it was queued is dead-lettered (kept, logged
//! at ERROR, counted). Alertmanager receivers also re-push their firing
//! alerts every `resend_interval`, as Prometheus does; an Alertmanager push
//! goes in as many requests as `max_body_bytes` needs.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{ReceiverKind, SignatureScheme};
use crate::secret::Secret;

use super::metrics::IncidentMetrics;
use super::model::{Action, Notification};
use super::outbox::{Outbox, OutboxError, Row, Status};
use super::policy::{Backoff, Breaker, Outcome};
use super::signature;
use record::{Record, Unrecorded, RECORD_RETRY_MS};

mod answer;
mod record;
mod redact;
mod request;
pub(crate) use answer::RESPONSE_BODY_LIMIT;

/// Rows taken per round.
const BATCH: usize = 32;
/// Longest sleep without a reason to wake: picks up rows re-queued by another process.
const POLL_MS: i64 = 5_000;

/// Wall-clock milliseconds that follow tokio's clock, so paused-time tests
/// drive retries, ages and breakers deterministically.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    /// Anchors the clock at the current wall time.
    pub(crate) fn new() -> Clock {
        Clock {
            base_ms: chrono::Utc::now().timestamp_millis(),
            base: Instant::now(),
        }
    }

    /// Now, ms since the epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }

    /// The tokio instant of wall time `ms`.
    pub(crate) fn instant_at(&self, ms: i64) -> Instant {
        let ahead = u64::try_from(ms.saturating_sub(self.base_ms)).unwrap_or(0);
        self.base + Duration::from_millis(ahead)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Where a receiver's notifications go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// An HTTP endpoint.
    Http {
        /// The receiver's own client (own pool, own timeout).
        client: reqwest::Client,
        /// Full endpoint URL.
        url: String,
    },
    /// Lines on a writer (standard output in the live service).
    Console(Arc<Mutex<Box<dyn Write + Send>>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Http { .. } => f.write_str("Sink::Http"),
            Sink::Console(_) => f.write_str("Sink::Console"),
        }
    }
}

/// A receiver, ready to deliver.
#[derive(Debug, Clone)]
pub(crate) struct ReceiverRt {
    /// Name.
    pub(crate) name: String,
    /// Format.
    pub(crate) kind: ReceiverKind,
    /// Destination.
    pub(crate) sink: Sink,
    /// Signing secret.
    pub(crate) secret: Option<Secret>,
    /// Which signature headers a signed request carries.
    pub(crate) signature: SignatureScheme,
    /// PagerDuty routing key.
    pub(crate) routing_key: Option<Secret>,
    /// Retry delays.
    pub(crate) backoff: Backoff,
    /// Dead-letter age, ms.
    pub(crate) max_age_ms: i64,
    /// Breaker threshold.
    pub(crate) breaker_failures: u32,
    /// Breaker cooldown, ms.
    pub(crate) breaker_cooldown_ms: i64,
    /// Alertmanager re-push interval, ms.
    pub(crate) resend_ms: i64,
    /// Alertmanager alerts' `generatorURL` when the rule has no dashboard
    /// or runbook: the console (`server.external_url`).
    pub(crate) generator_url: Option<String>,
    /// Largest body (`max_body_bytes`): generic and PagerDuty trim their
    /// alert list to it, Alertmanager splits a push into requests within it.
    pub(crate) max_body: usize,
}

/// One receiver's delivery task.
pub(crate) struct Worker {
    /// The receiver.
    pub(crate) rt: ReceiverRt,
    /// The store.
    pub(crate) outbox: Arc<Outbox>,
    /// Metrics.
    pub(crate) metrics: Arc<IncidentMetrics>,
    /// Time.
    pub(crate) clock: Clock,
    /// Signalled by the manager after each enqueue.
    pub(crate) wake: Arc<Notify>,
    /// Turns true on shutdown.
    pub(crate) stop: watch::Receiver<bool>,
    /// The receiver's settings changed (a reload replaced its worker): what
    /// its queue holds is due at once, not after the old destination's
    /// backoff.
    pub(crate) retry_queued: bool,
}

// === impl Worker ===

impl Worker {
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let ob = Arc::clone(&self.outbox);
        match tokio::task::spawn_blocking(move || f(&ob)).await {
            Ok(r) => r,
            // The runtime is shutting down: not a crash, nothing to report.
            Err(e) if e.is_cancelled() => Err(OutboxError::Stopping),
            Err(_) => Err(OutboxError::Poisoned),
        }
    }

    /// Runs until the stop signal.
    pub async fn run(mut self) {
        let name = self.rt.name.clone();
        let am = self.rt.kind == ReceiverKind::Alertmanager;
        let mut breaker = Breaker::new(self.rt.breaker_failures, self.rt.breaker_cooldown_ms);
        let mut rng = StdRng::from_entropy();
        let mut firing: BTreeMap<String, Notification> = BTreeMap::new();
        let mut moved = self.outbox.handed_generation();
        if am {
            self.load_firing(&mut firing).await;
        }
        if self.retry_queued {
            let (n, now) = (name.clone(), self.clock.now_ms());
            match self.db(move |o| o.due_now(&n, now)).await {
                Ok(0) => {}
                Ok(k) => tracing::info!(
                    receiver = %name,
                    notifications = k,
                    "The receiver changed: its queued notifications are due now, not after the old backoff."
                ),
                Err(e) => {
                    tracing::warn!(receiver = %name, error = %e, "Cannot reschedule the queued notifications of a changed receiver; they keep their retry times.")
                }
            }
        }
        let mut next_resend = self.clock.now_ms();
        let mut unrecorded = Unrecorded::default();
        loop {
            if *self.stop.borrow() {
                break;
            }
            // What the outbox did not take before goes in first: a row
            // delivered meanwhile is not dead-lettered as undelivered.
            if !unrecorded.is_empty() {
                self.flush(&mut unrecorded).await;
            }
            // Incidents went to another instance (it re-pushes them now) or
            // came here: what is re-pushed changes, and what came is
            // re-pushed at once (its previous owner's last push ends at its
            // `endsAt`, which a rebalance's pause can come close to).
            if am && self.outbox.handed_generation() != moved {
                moved = self.outbox.handed_generation();
                self.load_firing(&mut firing).await;
                next_resend = self.clock.now_ms();
            }
            let now = self.clock.now_ms();
            if self.expire(now, &mut firing).await.is_break() {
                break;
            }
            // An Alertmanager re-push that is due goes out first, and one due
            // while the receiver is held (Retry-After, the breaker) stays due
            // until the hold ends: skipped then, and the queued rows going
            // first after each hold, a receiver that kept asking for pauses
            // heard one re-push in ten, and alerts without updates could
            // pass their `endsAt`. Nothing goes out while an outcome waits to
            // be recorded, re-pushes included.
            // After a stop of this process, nothing goes out until the
            // group has confirmed its incident partitions (`fence`).
            if self.outbox.fenced() {
                self.hold_while_fenced().await;
                continue;
            }
            if am
                && unrecorded.is_empty()
                && now >= next_resend
                && breaker.blocked_until(now).is_none()
            {
                if !firing.is_empty() {
                    self.resend(&firing, &mut breaker).await;
                }
                next_resend = self.clock.now_ms().saturating_add(self.rt.resend_ms);
            }
            let now = self.clock.now_ms();
            let mut more = false;
            if unrecorded.is_empty() && breaker.blocked_until(now).is_none() {
                let limit = if breaker.is_open() { 1 } else { BATCH };
                let n = name.clone();
                let generation = self.outbox.handed_generation();
                let rows = match self.db(move |o| o.due(&n, now, limit)).await {
                    Ok(rows) => rows,
                    Err(OutboxError::Stopping) => break,
                    Err(e) => {
                        tracing::error!(receiver = %name, error = %e, "Cannot read the outbox; notifications wait.");
                        Vec::new()
                    }
                };
                more = rows.len() == limit && !breaker.is_open();
                if !rows.is_empty() {
                    self.publish_queue(self.clock.now_ms()).await;
                }
                for row in rows {
                    if *self.stop.borrow() {
                        // Replaced by a reload (or stopping) while it read the
                        // queue: the rows stay for the successor.
                        more = false;
                        break;
                    }
                    if self.outbox.fenced() {
                        // Stopped since the rows were read: read again once
                        // the group has confirmed what this instance holds.
                        more = true;
                        break;
                    }
                    // Rows handed with their incident to another instance
                    // since they were read are that instance's to send.
                    if self.outbox.handed_generation() != generation {
                        let id = row.id;
                        if !matches!(self.db(move |o| o.still_pending(id)).await, Ok(true)) {
                            continue;
                        }
                    }
                    // The queue's gauges stay current while a receiver takes
                    // its time (up to `delivery.timeout` per request): a
                    // backlog alert must not see an empty queue meanwhile.
                    {
                        let delivery =
                            self.deliver(row, &mut breaker, &mut rng, &mut firing, &mut unrecorded);
                        tokio::pin!(delivery);
                        let mut tick = tokio::time::interval(Duration::from_secs(1));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        tick.tick().await;
                        loop {
                            tokio::select! {
                                () = &mut delivery => break,
                                _ = tick.tick() => {
                                    self.publish_queue(self.clock.now_ms()).await;
                                }
                            }
                        }
                    }
                    if breaker.blocked_until(self.clock.now_ms()).is_some()
                        || *self.stop.borrow()
                        || !unrecorded.is_empty()
                    {
                        more = false;
                        break;
                    }
                }
            }
            let now = self.clock.now_ms();
            let oldest = self.publish(now, &breaker).await;
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let mut wake_at = now.saturating_add(POLL_MS);
            let n = name.clone();
            if let Ok(Some(due)) = self.db(move |o| o.next_due(&n)).await {
                wake_at = wake_at.min(due.max(breaker.blocked_until(now).unwrap_or(due)));
            }
            if let Some(o) = oldest {
                wake_at = wake_at.min(o.saturating_add(self.rt.max_age_ms));
            }
            if am {
                // Not before a hold ends: a re-push due meanwhile waits for it.
                wake_at =
                    wake_at.min(next_resend.max(breaker.blocked_until(now).unwrap_or(i64::MIN)));
            }
            if !unrecorded.is_empty() {
                // Nothing is sent until the outbox records again: try it
                // again in a while, not at the next due row.
                wake_at = now.saturating_add(RECORD_RETRY_MS);
            }
            let sleep = tokio::time::sleep_until(self.clock.instant_at(wake_at.max(now)));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep => {}
                _ = self.stop.changed() => {}
            }
        }
        if !unrecorded.is_empty() {
            // One last try: the outbox may take it now.
            self.flush(&mut unrecorded).await;
        }
        self.abandon(&unrecorded);
    }

    /// Dead-letters notifications older than the receiver's `max_age`;
    /// breaks when the process is shutting down.
    /// A dead-lettered resolve also ends the incident's re-pushes (in
    /// `firing`): re-asserting a resolved incident would keep it firing in
    /// Alertmanager for ever; left alone, it ends at its last `endsAt`.
    async fn expire(
        &self,
        now: i64,
        firing: &mut BTreeMap<String, Notification>,
    ) -> std::ops::ControlFlow<()> {
        let (name, cutoff) = (self.rt.name.clone(), now.saturating_sub(self.rt.max_age_ms));
        let rows = match self.db(move |o| o.expire(&name, cutoff, now)).await {
            Ok(rows) => rows,
            Err(OutboxError::Stopping) => return std::ops::ControlFlow::Break(()),
            Err(e) => {
                tracing::error!(receiver = %self.rt.name, error = %e, "Cannot dead-letter expired notifications.");
                return std::ops::ControlFlow::Continue(());
            }
        };
        for r in rows {
            if r.action == Action::Resolve.as_str() {
                firing.remove(&r.incident);
            }
            self.metrics
                .notifications
                .with_label_values(&[&self.rt.name, "dead_lettered"])
                .inc();
            tracing::error!(
                receiver = %self.rt.name,
                id = r.id,
                incident = %r.incident,
                action = %r.action,
                attempts = r.attempts,
                last_error = r.last_error.as_deref().unwrap_or(""),
                "Notification dead-lettered after max_age without delivery; see `crisiswatch outbox list`, redeliver with `crisiswatch outbox retry`."
            );
        }
        std::ops::ControlFlow::Continue(())
    }

    async fn deliver(
        &self,
        row: Row,
        breaker: &mut Breaker,
        rng: &mut StdRng,
        firing: &mut BTreeMap<String, Notification>,
        unrecorded: &mut Unrecorded,
    ) {
        let name = &self.rt.name;
        let n = match row.notification() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(receiver = %name, id = row.id, error = %e, "Unreadable notification in the outbox; marked failed.");
                let rec = Record::Finish {
                    status: Status::Failed,
                    attempts: row.attempts,
                    error: Some(e.to_string()),
                    at: self.clock.now_ms(),
                };
                self.record(row.id, rec, unrecorded).await;
                return;
            }
        };
        self.metrics.attempts.with_label_values(&[name]).inc();
        let attempts = row.attempts.saturating_add(1);
        let msg_id = signature::message_id(&row.receiver, &row.incident, row.seq);
        let outcome = self.send(&[&n], &msg_id, false).await;
        let now = self.clock.now_ms();
        let id = row.id;
        let rec = match outcome {
            Outcome::Delivered => {
                breaker.success();
                let latency = now - row.created_ms;
                self.metrics.record_latency(name, latency);
                self.metrics
                    .notifications
                    .with_label_values(&[name, "delivered"])
                    .inc();
                tracing::debug!(receiver = %name, incident = %n.dedup_key, action = n.action.as_str(), attempts, latency_ms = latency, "Notification delivered.");
                if n.action == Action::Resolve {
                    firing.remove(&n.dedup_key);
                } else {
                    firing.insert(n.dedup_key.clone(), n);
                }
                Record::Finish {
                    status: Status::Delivered,
                    attempts,
                    error: None,
                    at: now,
                }
            }
            Outcome::Failed {
                reason,
                detail,
                retry_after_ms,
            } => {
                self.metrics
                    .failures
                    .with_label_values(&[name, reason.as_str()])
                    .inc();
                if !reason.retryable() {
                    breaker.success();
                    if n.action == Action::Resolve {
                        // Refused: no longer re-pushed as firing either (it
                        // ends in Alertmanager at its last `endsAt`).
                        firing.remove(&n.dedup_key);
                    }
                    self.metrics
                        .notifications
                        .with_label_values(&[name, "failed"])
                        .inc();
                    tracing::warn!(receiver = %name, incident = %n.dedup_key, action = n.action.as_str(), detail = %detail, "Receiver refused a notification; it is not retried (see `crisiswatch outbox list --status failed`).");
                    Record::Finish {
                        status: Status::Failed,
                        attempts,
                        error: Some(detail),
                        at: now,
                    }
                } else {
                    if breaker.failure(now) {
                        tracing::warn!(receiver = %name, cooldown_ms = self.rt.breaker_cooldown_ms, detail = %detail, "Circuit breaker open: receiver keeps failing; pausing its deliveries.");
                    }
                    // A receiver cannot pause itself for longer than
                    // `backoff_max`: a Retry-After of hours (or a date in
                    // 2099) would otherwise hold every page to it until
                    // max_age dead-letters them.
                    let retry_after_ms = retry_after_ms.map(|ra| {
                        let capped = self.rt.backoff.cap_retry_after(ra);
                        if capped < ra {
                            tracing::warn!(receiver = %name, retry_after_ms = ra, held_ms = capped, "Receiver asked for a pause longer than its backoff_max; holding it for backoff_max instead.");
                        }
                        capped
                    });
                    if let Some(ra) = retry_after_ms {
                        // Retry-After is about the receiver, not this notification.
                        breaker.hold(now, ra);
                    }
                    let delay = self.rt.backoff.delay_ms(attempts, retry_after_ms, rng);
                    tracing::info!(receiver = %name, incident = %n.dedup_key, action = n.action.as_str(), attempts, retry_in_ms = delay, reason = reason.as_str(), detail = %detail, "Delivery failed; will retry.");
                    Record::Retry {
                        attempts,
                        next: now.saturating_add(delay),
                        error: detail,
                    }
                }
            }
        };
        self.record(id, rec, unrecorded).await;
    }

    /// What an Alertmanager re-push repeats, from the outbox ([`Outbox::firing`]).
    async fn load_firing(&self, firing: &mut BTreeMap<String, Notification>) {
        let n = self.rt.name.clone();
        match self.db(move |o| o.firing(&n)).await {
            Ok(list) => *firing = list.into_iter().map(|n| (n.dedup_key.clone(), n)).collect(),
            Err(e) => {
                tracing::error!(receiver = %self.rt.name, error = %e, "Cannot load the firing alerts to re-push.")
            }
        }
    }

    /// Waits while the outbox is fenced (a stop of this process that the
    /// consumer group has not confirmed this instance's incident partitions
    /// since; `incident::fence`), or until the worker stops.
    async fn hold_while_fenced(&self) {
        let mut stop = self.stop.clone();
        while self.outbox.fenced() && !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(super::fence::TICK) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
    }

    async fn resend(&self, firing: &BTreeMap<String, Notification>, breaker: &mut Breaker) {
        let name = &self.rt.name;
        let list: Vec<&Notification> = firing.values().collect();
        self.metrics.attempts.with_label_values(&[name]).inc();
        // A re-push is a new message (new alerts' `endsAt`), so a new id.
        let resend = format!("alertmanager-resend/{}", self.clock.now_ms());
        let msg_id = signature::message_id(name, &resend, 0);
        match self.send(&list, &msg_id, true).await {
            Outcome::Delivered => {
                breaker.success();
                tracing::debug!(receiver = %name, alerts = list.len(), "Re-pushed firing alerts.");
            }
            Outcome::Failed { reason, detail, .. } => {
                self.metrics
                    .failures
                    .with_label_values(&[name, reason.as_str()])
                    .inc();
                if reason.retryable() {
                    breaker.failure(self.clock.now_ms());
                }
                tracing::info!(receiver = %name, reason = reason.as_str(), detail = %detail, "Re-push of firing alerts failed; next one at the next interval.");
            }
        }
    }

    /// Refreshes the receiver's gauges; returns the oldest pending enqueue time.
    async fn publish(&self, now: i64, breaker: &Breaker) -> Option<i64> {
        self.metrics
            .breaker_open
            .with_label_values(&[&self.rt.name])
            .set(i64::from(breaker.is_open()));
        self.publish_queue(now).await
    }

    /// Sets the queue's gauges (depth, dead letters, oldest age) from the
    /// outbox; returns the oldest pending notification's time.
    async fn publish_queue(&self, now: i64) -> Option<i64> {
        let name = self.rt.name.clone();
        let stats = self.db(move |o| o.queue_stats(&name)).await.ok()?;
        let name = &self.rt.name;
        self.metrics
            .depth
            .with_label_values(&[name])
            .set(stats.pending);
        self.metrics
            .dead_letters
            .with_label_values(&[name])
            .set(stats.dead);
        self.metrics.oldest_age.with_label_values(&[name]).set(
            stats
                .oldest_ms
                .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0),
        );
        stats.oldest_ms
    }
}
