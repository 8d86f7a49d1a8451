//! The controls stage's state: what it read from the topic, what it sent,
//! and how it applies records, publishes local actions, answers close
//! requests nobody holds and writes tombstones.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{encode, Control, ControlsMetrics, FeedbackEntry, Record, VERSION};
use super::tidy::{self, Unheld};
use super::{inc, HEARTBEAT, RESEND};
use crate::incident::outbox::Outbox;
use crate::incident::peers::{Holding, Peers};
use crate::incident::IncidentManager;
use crate::run::scaled::internal::Ordered;
use crate::run::scaled::{ScaledError, ScaledMetrics};

/// A close request read from the topic, not yet answered.
#[derive(Debug, Clone)]
struct OpenRequest {
    origin: String,
    id: i64,
    incident: String,
    reason: String,
    by: String,
    partition: Option<u32>,
}

/// What the stage is made of.
pub(super) struct Parts {
    pub(super) topic: String,
    pub(super) listen: String,
    pub(super) partitions: u32,
    pub(super) manager: Arc<IncidentManager>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) peers: Arc<Peers>,
    pub(super) producer: Arc<Ordered>,
    pub(super) scaled: Arc<ScaledMetrics>,
    pub(super) metrics: ControlsMetrics,
    pub(super) retention: Duration,
    pub(super) close_wait: Duration,
}

/// The stage's state.
pub(super) struct Controls {
    p: Parts,
    /// The latest record read per key.
    seen: HashMap<String, Control>,
    /// Records sent and not yet read back: when they were sent.
    sent: HashMap<String, Instant>,
    /// Close requests read without an outcome, by key.
    requests: BTreeMap<String, OpenRequest>,
    /// Keys of the close requests whose outcome was read.
    answered: BTreeSet<String>,
    /// Keys whose tombstone this instance sent or read: never sent again.
    gone: HashSet<String>,
    /// This instance's requests without a partition, and since when nobody
    /// holds their incident.
    unheld: Unheld,
    /// Whether the topic was read to its end once (close requests wait for it).
    pub(super) caught_up: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Controls {
    pub(super) fn new(p: Parts) -> Self {
        Controls {
            p,
            seen: HashMap::new(),
            sent: HashMap::new(),
            requests: BTreeMap::new(),
            answered: BTreeSet::new(),
            gone: HashSet::new(),
            unheld: Unheld::default(),
            caught_up: false,
        }
    }

    fn me(&self) -> &str {
        self.p.peers.me()
    }

    /// Records read (and not tombstoned) so far.
    pub(super) fn records(&self) -> usize {
        self.seen.len()
    }

    /// Polls the producer for delivery reports.
    pub(super) fn poll(&self) {
        self.p.producer.poll();
    }

    /// Waits for what was sent to be written.
    pub(super) fn flush(&self, timeout: Duration) -> Result<(), ScaledError> {
        self.p.producer.flush(timeout)
    }

    /// The oldest record time kept (wall clock, ms): now minus the retention.
    fn cutoff(&self, now: i64) -> i64 {
        now.saturating_sub(ms(self.p.retention))
    }

    /// A record read from the topic.
    pub(super) fn read(&mut self, key: &str, payload: &[u8]) {
        let record: Record = match serde_json::from_slice::<Record>(payload) {
            Ok(r) if r.v == VERSION => r,
            Ok(_) | Err(_) => {
                self.p
                    .scaled
                    .unreadable
                    .with_label_values(&["controls"])
                    .inc();
                tracing::warn!(key, "Unreadable record on the controls topic: skipped.");
                return;
            }
        };
        self.sent.remove(key);
        // On the topic again (say an instance restarted): tombstoned again
        // when it is done with.
        self.gone.remove(key);
        if let Err(e) = self.apply(key, &record.control) {
            tracing::warn!(key, error = %e, "Cannot apply a controls-topic record; it is applied again at the next start.");
        }
        self.seen.insert(key.to_string(), record.control);
    }

    /// A tombstone read from the topic (a null value): the key is
    /// forgotten, and nothing it said comes back. A silence still active
    /// here ends (tombstones are written only for silences that ended);
    /// a close request is answered elsewhere or past the retention; an
    /// instance's holding is gone (it stopped).
    pub(super) fn read_tombstone(&mut self, key: &str) {
        self.sent.remove(key);
        self.seen.remove(key);
        self.gone.insert(key.to_string());
        if let Err(e) = self.forget(key) {
            tracing::warn!(key, error = %e, "Cannot apply a controls-topic tombstone.");
        }
    }

    fn forget(&mut self, key: &str) -> Result<(), ScaledError> {
        if let Some(id) = key.strip_prefix("silence/") {
            let now = now_ms();
            let active = self
                .p
                .outbox
                .silences()
                .map_err(inc)?
                .into_iter()
                .any(|s| s.id == id && s.active(now));
            if active && self.p.outbox.expire_silence(id, now).map_err(inc)? {
                self.p.metrics.applied.with_label_values(&["silence"]).inc();
                tracing::info!(
                    id,
                    "Silence ended here by its tombstone on the controls topic."
                );
            }
        } else if key.starts_with("close/") {
            self.requests.remove(key);
            self.answered.insert(key.to_string());
        } else if key.starts_with("closed/") {
            self.p.outbox.forget_control_outcome(key).map_err(inc)?;
        } else if let Some(instance) = key.strip_prefix("holding/") {
            self.p.peers.remove(instance);
            self.p.outbox.forget_holding(instance).map_err(inc)?;
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, key: &str, c: &Control) -> Result<(), ScaledError> {
        match c {
            Control::Silence { silence } => {
                if self.p.outbox.merge_silence(silence).map_err(inc)? {
                    self.p.metrics.applied.with_label_values(&["silence"]).inc();
                    tracing::info!(id = %silence.id, "Silence taken from the controls topic.");
                }
            }
            Control::Close {
                origin,
                id,
                incident,
                reason,
                by,
                partition,
                ..
            } => {
                if !self.answered.contains(key) {
                    self.requests.insert(
                        key.to_string(),
                        OpenRequest {
                            origin: origin.clone(),
                            id: *id,
                            incident: incident.clone(),
                            reason: reason.clone(),
                            by: by.clone(),
                            partition: *partition,
                        },
                    );
                }
            }
            Control::Closed {
                origin,
                id,
                outcome,
                done_ms,
                by_instance,
            } => {
                let request = format!("close/{origin}/{id}");
                self.requests.remove(&request);
                self.answered.insert(request);
                if origin == self.me()
                    && self
                        .p
                        .outbox
                        .finish_close_if_pending(*id, outcome, *done_ms)
                        .map_err(inc)?
                {
                    self.p.metrics.applied.with_label_values(&["outcome"]).inc();
                    tracing::info!(request = id, outcome = %outcome, by_instance = %by_instance, "Close request answered by the incident's owner.");
                }
            }
            Control::Feedback { origin, entry, .. } => {
                if origin != self.me() {
                    let mut f = entry.to_feedback();
                    if f.alerts.is_empty() {
                        // Made where the incident was not held: this
                        // instance may know its alerts.
                        if let Some(k) = self.p.outbox.known_incident(&f.incident).map_err(inc)? {
                            f.labels = k.subject.labels;
                            f.alerts = k.subject.alerts;
                        }
                    }
                    if self.p.outbox.add_shared_feedback(key, &f).map_err(inc)? {
                        self.p
                            .metrics
                            .applied
                            .with_label_values(&["feedback"])
                            .inc();
                    }
                }
            }
            Control::Holding { holding } => {
                if holding.instance != self.me() {
                    self.p.outbox.store_holding(holding).map_err(inc)?;
                    // Another instance's list of the incidents it holds
                    // (shown under `elsewhere`).
                    self.p.metrics.applied.with_label_values(&["holding"]).inc();
                }
                self.p.peers.set(holding.clone());
            }
        }
        Ok(())
    }

    /// Sends `control` under `key` unless the topic has it or it was sent
    /// less than [`RESEND`] ago; `true` when the topic does not have it yet.
    fn offer(&mut self, key: String, kind: &str, control: Control, same: bool) -> bool {
        if same || self.gone.contains(&key) {
            return false;
        }
        if self.sent.get(&key).is_some_and(|t| t.elapsed() < RESEND) {
            return true;
        }
        self.p
            .producer
            .send(&self.p.topic, 0, key.as_bytes(), &encode(control));
        self.p.metrics.published.with_label_values(&[kind]).inc();
        self.sent.insert(key, Instant::now());
        true
    }

    /// Sends a tombstone for `key` (once).
    fn tombstone(&mut self, key: &str) {
        if !self.gone.insert(key.to_string()) {
            return;
        }
        self.p
            .producer
            .send_tombstone(&self.p.topic, 0, key.as_bytes());
        self.p
            .metrics
            .published
            .with_label_values(&["tombstone"])
            .inc();
    }

    /// Sends every local action the topic does not have yet.
    pub(super) fn publish(&mut self) -> Result<(), ScaledError> {
        let me = self.me().to_string();
        let now = now_ms();
        let cutoff = self.cutoff(now);
        let mut pending = 0;
        for s in self.p.outbox.silences().map_err(inc)? {
            let key = format!("silence/{}", s.id);
            let (same, skip) = match self.seen.get(&key) {
                Some(Control::Silence { silence }) => (silence.ends_at <= s.ends_at, false),
                // An ended silence the topic does not have is not brought back.
                _ => (false, s.ends_at <= now),
            };
            if !skip {
                pending +=
                    usize::from(self.offer(key, "silence", Control::Silence { silence: s }, same));
            }
        }
        let holdings = self.p.manager.holdings(self.p.partitions);
        for r in self.p.outbox.pending_close_requests().map_err(inc)? {
            let key = format!("close/{me}/{}", r.id);
            let same = self.seen.contains_key(&key) || r.requested_ms < cutoff;
            let partition = holdings
                .iter()
                .find(|h| h.key == r.incident)
                .map(|h| h.partition)
                .or_else(|| self.p.peers.holder(&r.incident).map(|(_, h)| h.partition));
            let c = Control::Close {
                origin: me.clone(),
                id: r.id,
                incident: r.incident,
                reason: r.reason,
                by: r.requested_by,
                requested_ms: r.requested_ms,
                partition,
            };
            pending += usize::from(self.offer(key, "close", c, same));
        }
        for (key, body) in self.p.outbox.control_outcomes().map_err(inc)? {
            if self.seen.contains_key(&key) {
                continue;
            }
            match serde_json::from_str::<Record>(&body) {
                Ok(Record {
                    control: Control::Closed { done_ms, .. },
                    ..
                }) if done_ms < cutoff => {}
                Ok(r) => pending += usize::from(self.offer(key, "outcome", r.control, false)),
                Err(e) => tracing::warn!(key, error = %e, "Unreadable stored close outcome."),
            }
        }
        for f in self.p.outbox.own_feedback().map_err(inc)? {
            let key = format!("feedback/{me}/{}", f.id);
            let same = self.seen.contains_key(&key) || f.at_ms < cutoff;
            let c = Control::Feedback {
                origin: me.clone(),
                id: f.id,
                entry: FeedbackEntry::of(&f),
            };
            pending += usize::from(self.offer(key, "feedback", c, same));
        }
        let key = format!("holding/{me}");
        // A holding tombstoned (say by an instance that found it old) is
        // published again while this instance runs.
        self.gone.remove(&key);
        let same = matches!(self.seen.get(&key), Some(Control::Holding { holding })
            if holding.incidents == holdings && holding.listen == self.p.listen
                && now - holding.at_ms < ms(HEARTBEAT));
        let c = Control::Holding {
            holding: Holding {
                instance: me.clone(),
                listen: self.p.listen.clone(),
                at_ms: now,
                incidents: holdings,
            },
        };
        self.offer(key, "holding", c, same);
        self.p.metrics.pending.set(pending as i64);
        Ok(())
    }

    /// Answers `not_open` this instance's close requests published
    /// without a partition whose incident no running instance's holding
    /// has named for `close_wait` (it resolved before anyone applied the
    /// request, or only a stopped instance held it): recorded as this
    /// instance's outcome and published like an owner's, so every instance
    /// drops the request.
    pub(super) fn answer_unheld(&mut self) -> Result<(), ScaledError> {
        let me = self.me().to_string();
        let now = now_ms();
        let wait = ms(self.p.close_wait);
        let held: HashSet<String> = self
            .p
            .manager
            .open_incidents()
            .into_iter()
            .map(|i| i.key)
            .collect();
        let mine: Vec<(String, OpenRequest)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.origin == me && r.partition.is_none())
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        self.unheld.retain(|k| mine.iter().any(|(key, _)| key == k));
        for (key, r) in mine {
            let named = held.contains(&r.incident) || self.p.peers.holder(&r.incident).is_some();
            if !self.unheld.check(&key, named, now, wait) {
                continue;
            }
            let outcome_key = format!("closed/{me}/{}", r.id);
            let body = String::from_utf8(encode(Control::Closed {
                origin: me.clone(),
                id: r.id,
                outcome: "not_open".into(),
                done_ms: now,
                by_instance: me.clone(),
            }))
            .unwrap_or_default();
            self.p
                .outbox
                .answer_close_request(r.id, "not_open", now, &outcome_key, &body)
                .map_err(inc)?;
            self.requests.remove(&key);
            self.answered.insert(key);
            tracing::info!(request = r.id, incident = %r.incident, "Close request answered not_open: no running instance has held the incident for scale_out.close_wait.");
        }
        Ok(())
    }

    /// Writes a tombstone for every record read that [`tidy::due`] says is
    /// done with.
    pub(super) fn tidy(&mut self) {
        let now = now_ms();
        let cutoff = self.cutoff(now);
        let me = format!("holding/{}", self.me());
        let due: Vec<String> = self
            .seen
            .iter()
            .filter(|(k, c)| **k != me && tidy::due(c, now, cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.tombstone(&key);
        }
    }

    /// At a graceful stop: a tombstone for this instance's holding, so the
    /// other instances stop listing its incidents at once.
    pub(super) fn leave(&mut self) {
        let key = format!("holding/{}", self.me());
        self.gone.remove(&key);
        self.tombstone(&key);
    }

    /// Applies the close requests whose incident partition this instance
    /// owns (or, without a partition, whose incident it holds).
    pub(super) fn apply_requests(&mut self) -> Result<(), ScaledError> {
        let due: Vec<(String, OpenRequest)> = self
            .requests
            .iter()
            .filter(|(_, r)| match r.partition {
                Some(p) => self.p.manager.owns_partition(p) == Some(true),
                None => self
                    .p
                    .manager
                    .open_incidents()
                    .iter()
                    .any(|i| i.key == r.incident),
            })
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, r) in due {
            let outcome_key = format!("closed/{}/{}", r.origin, r.id);
            if self
                .p
                .outbox
                .has_control_outcome(&outcome_key)
                .map_err(inc)?
            {
                continue;
            }
            let me = self.me().to_string();
            let done_ms = chrono::Utc::now().timestamp_millis();
            let (origin, id) = (r.origin.clone(), r.id);
            let outcome = self.p.manager.close_shared(
                &r.incident,
                &r.reason,
                &r.by,
                &outcome_key,
                |outcome| {
                    String::from_utf8(encode(Control::Closed {
                        origin,
                        id,
                        outcome: outcome.to_string(),
                        done_ms,
                        by_instance: me,
                    }))
                    .unwrap_or_default()
                },
            )?;
            self.p.metrics.applied.with_label_values(&["close"]).inc();
            tracing::info!(incident = %r.incident, request = %key, outcome, "Close request of the controls topic applied here (this instance owns the incident).");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
