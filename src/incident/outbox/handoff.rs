//! Notifications that move with their incident between instances
//! (`sources.kafka.scale_out`). An incident partition's checkpoint carries
//! the notifications still queued for its incidents ([`QueuedRow`]); the
//! partition's next owner queues them first, ahead of anything it adds, and
//! the instance that gave the partition up marks its own copies handed
//! (`superseded`, with [`HANDED`] as the reason) so it never sends them —
//! not after a restart, not by `outbox deliver` — where they would reach the
//! receiver after the new owner's later notifications (a resolve before the
//! update it follows). A handed row comes back to life when this instance
//! owns the partition again and queues the same notification.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::super::lifecycle::Incident;
use super::super::model::{
    incident_severity, primary_index, summary, Action, Notification, Reason,
};
use super::{Outbox, OutboxError, Tx};
use crate::alert::Labels;

/// The reason of an update taken over with its incident's resolve queued
/// behind it: not sent ([`Tx::take_over`]).
pub(crate) const RESOLVED_BEHIND: &str =
    "taken over with its incident's resolve queued behind it: the resolve is sent, not this update (the previous owner may have sent both)";

/// The reason a handed row keeps (`outbox list` shows it).
pub(crate) const HANDED: &str =
    "handed with its incident to the owner of its incident partition (sources.kafka.scale_out)";

/// The rows of a status with their incidents, oldest first: from the
/// covering index alone (a row's status comes after its body, so reading
/// the table would walk every large body; `queue::tests::plans`).
pub(super) const IDS_OF_STATUS: &str =
    "SELECT id, incident FROM notifications INDEXED BY notifications_pending
     WHERE status = ?1 ORDER BY id";

/// A queued notification as a partition checkpoint carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueuedRow {
    /// The receiver's name.
    pub(crate) receiver: String,
    /// The incident's key.
    pub(crate) incident: String,
    /// The notification's number within the incident.
    pub(crate) seq: u32,
    /// Open, update, acknowledge or resolve.
    pub(crate) action: String,
    /// The notification (JSON), as the outbox stores it.
    pub(crate) body: String,
    /// When it was first queued (ms): `max_age` counts from here.
    pub(crate) created_ms: i64,
    /// Attempts so far, and the last one's error.
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
}

/// How many notifications moved, per receiver (handed away, or taken over):
/// `crisiswatch_notifications_total{outcome="handed"}` and
/// `crisiswatch_notifications_taken_over_total` count them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Moved(BTreeMap<String, usize>);

impl Moved {
    /// How many in all.
    pub(crate) fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Each receiver with its count.
    pub(crate) fn per_receiver(&self) -> impl Iterator<Item = (&str, usize)> {
        self.0.iter().map(|(r, &n)| (r.as_str(), n))
    }

    fn add(&mut self, receiver: &str, n: usize) {
        if n > 0 {
            *self.0.entry(receiver.to_owned()).or_default() += n;
        }
    }
}

/// An open incident as it stands, as a progress update would show it (its
/// current severity and alerts; the time of its latest change): what a
/// re-push shows of an incident whose latest notification went out from
/// another instance.
fn view(inc: &Incident) -> Notification {
    let severity = incident_severity(&inc.alerts);
    let at = inc
        .alerts
        .iter()
        .flat_map(|a| {
            [a.started_at, a.fired_at, a.resolved_at.unwrap_or(i64::MIN)]
                .into_iter()
                .chain(a.superseded_at.iter().copied())
        })
        .max()
        .unwrap_or(inc.started_at);
    let mut n = Notification {
        dedup_key: inc.key.clone(),
        action: Action::Update,
        seq: inc.seq,
        reason: Reason::Progress,
        route: inc.route.clone(),
        labels: inc.labels.clone(),
        severity,
        at,
        started_at: inc.started_at,
        resolved_at: None,
        primary: primary_index(&inc.alerts),
        alerts: inc.alerts.clone(),
        summary: String::new(),
        ack: None,
        since: None,
    };
    n.summary = summary(&n);
    n
}

/// Where a stored notification's incident belongs: the fields of its body
/// that decide the incident partition.
#[derive(Deserialize)]
struct Place {
    route: String,
    labels: Labels,
}

/// A body whose place cannot be read (damaged) stays where it is.
fn place(body: &str) -> Option<Place> {
    serde_json::from_str(body).ok()
}

impl Outbox {
    /// This outbox is an instance's of a scaled group: an Alertmanager
    /// re-push repeats only the incidents this instance holds
    /// ([`Outbox::firing`]); those that went to another instance are its.
    pub(crate) fn set_scaled(&self) {
        self.scaled.store(true, Ordering::Release);
    }

    /// Deliveries wait on `fence` after a stop of this process (a scaled
    /// instance; `incident::fence`).
    pub(crate) fn set_fence(&self, fence: std::sync::Arc<crate::incident::fence::Fence>) {
        if let Ok(mut f) = self.fence.lock() {
            *f = Some(fence);
        }
    }

    /// Whether a delivery must wait now (a stop not confirmed yet).
    pub(crate) fn fenced(&self) -> bool {
        self.fence
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|f| f.holds(std::time::Instant::now())))
            .unwrap_or(false)
    }

    /// The group updated this instance's incident partitions: deliveries
    /// held after a stop may go.
    fn confirm_fence(&self) {
        if let Ok(f) = self.fence.lock() {
            if let Some(f) = f.as_ref() {
                f.confirm();
            }
        }
    }

    /// Notes that incidents went to another instance (a delivery worker
    /// reloads what it re-pushes).
    pub(crate) fn note_moved(&self) {
        self.handed.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether [`Outbox::set_scaled`] was called.
    pub(crate) fn is_scaled(&self) -> bool {
        self.scaled.load(Ordering::Acquire)
    }

    /// A scaled instance starting: the incidents stored here are not its
    /// own until the group assigns it incident partitions (after a crash
    /// they are the ones it held then, long moved on): nothing is re-pushed
    /// to an Alertmanager until [`Outbox::note_owning`].
    pub(crate) fn await_ownership(&self) {
        self.owning.store(false, Ordering::Release);
    }

    /// The incidents stored here are this instance's (its incident
    /// partitions are known, or updated by a rebalance).
    pub(crate) fn note_owning(&self) {
        self.owning.store(true, Ordering::Release);
        self.confirm_fence();
    }

    /// What an Alertmanager re-push of a scaled instance repeats: every
    /// incident it holds that `receiver` has heard of, here or through the
    /// instance it came from. Its latest notification delivered here where
    /// that is the incident's latest (or a silence muted those after it);
    /// else the incident as it stands (an incident taken over with its
    /// partition has no delivered row here, or only old ones from before it
    /// went away and came back: re-pushing those would bring back a
    /// severity it escalated from). None before the instance knows its
    /// partitions.
    pub(super) fn firing_held(&self, receiver: &str) -> Result<Vec<Notification>, OutboxError> {
        if !self.owning.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let conn = self.conn()?;
        let held: Vec<(String, String)> = {
            let mut st = conn.prepare("SELECT key, state FROM incidents ORDER BY key")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut latest = conn.prepare_cached(
            "SELECT seq, body FROM notifications WHERE receiver = ?1 AND incident = ?2
               AND status = 'delivered' ORDER BY seq DESC LIMIT 1",
        )?;
        let mut muted_after = conn.prepare_cached(
            "SELECT 1 FROM notifications WHERE receiver = ?1 AND incident = ?2
               AND status = 'muted' AND seq > ?3 LIMIT 1",
        )?;
        let mut handed =
            conn.prepare_cached("SELECT 1 FROM handed_over WHERE receiver = ?1 AND incident = ?2")?;
        let corrupt = |what| move |source| OutboxError::Corrupt { what, source };
        let mut out = Vec::new();
        for (key, state) in held {
            let inc: Incident = serde_json::from_str(&state).map_err(corrupt("incident"))?;
            let delivered: Option<(u32, String)> = latest
                .query_row(params![receiver, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let n = match delivered {
                Some((seq, body))
                    if seq >= inc.seq || muted_after.exists(params![receiver, key, seq])? =>
                {
                    serde_json::from_str::<Notification>(&body).map_err(corrupt("notification"))?
                }
                Some(_) => view(&inc),
                None if inc.opened && handed.exists(params![receiver, key])? => view(&inc),
                None => continue,
            };
            if n.action != Action::Resolve {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Marks everything queued handed (an instance of a scaled group that
    /// owns no incident partition yet); returns how many.
    pub(crate) fn hand_off_all(&self, now: i64) -> Result<Moved, OutboxError> {
        self.transaction(now, |tx| tx.hand_off_where(|_, _| true))
    }

    /// How many times rows were handed away: a delivery worker that read rows
    /// before a change re-checks each before sending it.
    pub(crate) fn handed_generation(&self) -> u64 {
        self.handed.load(Ordering::Acquire)
    }

    /// Whether row `id` is still waiting to be sent.
    pub(crate) fn still_pending(&self, id: i64) -> Result<bool, OutboxError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM notifications WHERE id = ?1 AND status = 'pending'",
            params![id],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}

impl Tx<'_> {
    /// The ids of the rows of `status` (oldest first), each with the class
    /// `classify` gives its incident by route and grouping labels (`None`:
    /// left out). Reads the index for the ids and one body per incident (an
    /// incident's rows share its place), never every row's body: a receiver
    /// down for hours leaves thousands queued.
    pub(crate) fn ids_by(
        &self,
        status: &str,
        classify: impl Fn(&str, &Labels) -> Option<u32>,
    ) -> Result<Vec<(i64, u32)>, OutboxError> {
        let rows: Vec<(i64, String)> = {
            let mut st = self.tx.prepare_cached(IDS_OF_STATUS)?;
            let rows = st.query_map(params![status], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut classes: HashMap<&str, Option<u32>> = HashMap::new();
        let mut ids = Vec::new();
        for (id, incident) in &rows {
            let class = match classes.get(incident.as_str()) {
                Some(&class) => class,
                None => {
                    let body: String = self.tx.query_row(
                        "SELECT body FROM notifications WHERE id = ?1",
                        params![id],
                        |r| r.get(0),
                    )?;
                    let class = place(&body).and_then(|p| classify(&p.route, &p.labels));
                    classes.insert(incident, class);
                    class
                }
            };
            if let Some(c) = class {
                ids.push((*id, c));
            }
        }
        Ok(ids)
    }

    fn ids_where(
        &self,
        status: &str,
        pick: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Vec<i64>, OutboxError> {
        let ids = self.ids_by(status, |route, labels| pick(route, labels).then_some(0))?;
        Ok(ids.into_iter().map(|(id, _)| id).collect())
    }

    /// The rows of `ids` still queued, in that order.
    pub(crate) fn queued_rows(&self, ids: &[i64]) -> Result<Vec<QueuedRow>, OutboxError> {
        let mut st = self.tx.prepare_cached(
            "SELECT receiver, incident, seq, action, body, created_ms, attempts, last_error
             FROM notifications WHERE id = ?1 AND status = 'pending'",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = st
                .query_row(params![id], |r| {
                    Ok(QueuedRow {
                        receiver: r.get(0)?,
                        incident: r.get(1)?,
                        seq: r.get(2)?,
                        action: r.get(3)?,
                        body: r.get(4)?,
                        created_ms: r.get(5)?,
                        attempts: r.get(6)?,
                        last_error: r.get(7)?,
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// The queued notifications whose incident `belongs` picks (by route and
    /// grouping labels), oldest first.
    #[cfg(test)]
    pub(crate) fn queued_where(
        &self,
        belongs: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Vec<QueuedRow>, OutboxError> {
        let ids = self.ids_where("pending", belongs)?;
        self.queued_rows(&ids)
    }

    /// Every receiver this outbox holds a notification or a hand-over of,
    /// whether it runs now or not (a drain at a stop has stopped them all;
    /// a reload may have taken one off): who heard of an incident is a fact
    /// of the outbox.
    pub(crate) fn receivers_known(&self) -> Result<Vec<String>, OutboxError> {
        let mut st = self.tx.prepare_cached(
            "SELECT receiver FROM notifications GROUP BY receiver
             UNION SELECT receiver FROM handed_over",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks the queued rows `ids` handed (never sent from here); returns how
    /// many, per receiver.
    pub(crate) fn hand_off_ids(&self, ids: &[i64]) -> Result<Moved, OutboxError> {
        let mut st = self.tx.prepare_cached(
            "UPDATE notifications SET status = 'superseded', done_ms = ?2, last_error = ?3
             WHERE id = ?1 AND status = 'pending' RETURNING receiver",
        )?;
        let mut moved = Moved::default();
        for id in ids {
            let receiver: Option<String> = st
                .query_row(params![id, self.now, HANDED], |r| r.get(0))
                .optional()?;
            if let Some(r) = receiver {
                moved.add(&r, 1);
            }
        }
        if moved.total() > 0 {
            self.handed.fetch_add(1, Ordering::AcqRel);
        }
        Ok(moved)
    }

    /// Marks the queued notifications whose incident `leaves` picks handed
    /// (never sent from here); returns how many, per receiver.
    pub(crate) fn hand_off_where(
        &self,
        leaves: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Moved, OutboxError> {
        let ids = self.ids_where("pending", leaves)?;
        self.hand_off_ids(&ids)
    }

    /// Queues notifications handed over with their incidents, in their
    /// order, ahead of anything queued for those incidents later; returns how
    /// many were queued, per receiver (one already stored, other than as
    /// handed, is kept).
    pub(crate) fn take_over(&self, rows: &[QueuedRow]) -> Result<Moved, OutboxError> {
        let mut queued = Moved::default();
        // The latest resolve queued per (receiver, incident).
        let mut resolves: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.action == "resolve") {
            let seq = resolves
                .entry((r.receiver.as_str(), r.incident.as_str()))
                .or_insert(r.seq);
            *seq = (*seq).max(r.seq);
        }
        for r in rows {
            self.drop_handed(&r.receiver, &r.incident, r.seq)?;
            // An update with its incident's resolve queued behind it is not
            // sent: the checkpoint is the previous owner's last, which may
            // have sent both since; repeated after that resolve, a PagerDuty
            // `trigger` opens the incident again until the repeated resolve
            // closes it. The resolve leaves the receiver where it would be.
            let resolved_after = resolves
                .get(&(r.receiver.as_str(), r.incident.as_str()))
                .is_some_and(|&seq| seq > r.seq);
            if r.action == "update" && resolved_after {
                self.tx.execute(
                    "INSERT OR IGNORE INTO notifications (receiver, incident, seq, action, body, status, created_ms, next_attempt_ms, done_ms, attempts, last_error)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'superseded', ?6, ?7, ?7, ?8, ?9)",
                    params![r.receiver, r.incident, r.seq, r.action, r.body, r.created_ms, self.now, r.attempts, RESOLVED_BEHIND],
                )?;
                continue;
            }
            let n = self.tx.execute(
                "INSERT OR IGNORE INTO notifications (receiver, incident, seq, action, body, status, created_ms, next_attempt_ms, attempts, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9)",
                params![r.receiver, r.incident, r.seq, r.action, r.body, r.created_ms, self.now, r.attempts, r.last_error],
            )?;
            queued.add(&r.receiver, n);
        }
        Ok(queued)
    }

    /// Makes this instance's handed rows of the incidents `belongs` picks
    /// queued again (a checkpoint written before checkpoints carried queued
    /// notifications: this outbox's copies are the only ones); returns how
    /// many, per receiver.
    pub(crate) fn revive_handed_where(
        &self,
        belongs: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Moved, OutboxError> {
        let mut ids = self.ids_where("superseded", belongs)?;
        // Of those, the handed ones (not dead letters an operator's retry
        // superseded).
        let mut st = self.tx.prepare_cached(
            "SELECT COALESCE(last_error = ?2, 0) FROM notifications WHERE id = ?1",
        )?;
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids.drain(..) {
            if st.query_row(params![id, HANDED], |r| r.get::<_, bool>(0))? {
                kept.push(id);
            }
        }
        let mut revive = self.tx.prepare_cached(
            "UPDATE notifications SET status = 'pending', done_ms = NULL, last_error = NULL,
               next_attempt_ms = ?2 WHERE id = ?1 RETURNING receiver",
        )?;
        let mut moved = Moved::default();
        for id in &kept {
            let receiver: String = revive.query_row(params![id, self.now], |r| r.get(0))?;
            moved.add(&receiver, 1);
        }
        Ok(moved)
    }

    /// Deletes a handed row of (`receiver`, `incident`, `seq`), so the same
    /// notification can be queued again behind what is queued now; `true`
    /// if there was one.
    pub(crate) fn drop_handed(
        &self,
        receiver: &str,
        incident: &str,
        seq: u32,
    ) -> Result<bool, OutboxError> {
        let n = self.tx.execute(
            "DELETE FROM notifications WHERE receiver = ?1 AND incident = ?2 AND seq = ?3
               AND status = 'superseded' AND last_error = ?4",
            params![receiver, incident, seq, HANDED],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests;
