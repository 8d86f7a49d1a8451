//! Incidents that end without their alerts resolving: an operator's
//! close, and alerts the engine no longer has (the manager's side is
//! `manager/closing.rs`).

use super::super::model::{self, AlertEvidence, Reason};
use super::{emit, release, settle_before_resolve, Action, Changes, Lifecycle};

impl Lifecycle {
    /// Notes `keys` as taken by incidents of the past (the outbox's; one
    /// instance only, see [`Lifecycle::set_ownership`]).
    pub(crate) fn know_closed(&mut self, keys: impl IntoIterator<Item = String>) {
        if self.ownership.is_none() {
            // The outbox keeps them for `incidents.retention`: never dropped here.
            self.closed
                .extend(keys.into_iter().map(|k| (k, (0, i64::MAX))));
        }
    }

    /// The keys incident partition `q`'s incidents closed (for its
    /// checkpoint: its next owner must not make them again, nor make
    /// others than this instance would).
    pub(crate) fn closed_in(&self, q: u32) -> Vec<(String, i64)> {
        self.closed
            .iter()
            .filter(|(_, (p, _))| *p == q)
            .map(|(k, &(_, at))| (k.clone(), at))
            .collect()
    }

    /// Takes over the closed keys of incident partition `q` (its checkpoint's).
    pub(crate) fn adopt_closed(&mut self, q: u32, keys: Vec<(String, i64)>) {
        for (k, at) in keys {
            self.closed.insert(k, (q, at));
        }
    }

    /// Closes incident `key` at `at` with `reason` (`Closed` by an operator,
    /// `AlertGone` when nothing can resolve it): its active alerts leave,
    /// and a `resolve` whose summary carries `note` goes out (an incident
    /// still inside its group window sends its `open` first, as when it
    /// resolves by itself). `false` when no such incident is open.
    ///
    /// An alert closed this way stays active in the engine until it resolves
    /// there; its later `resolved` transition finds no incident and changes
    /// nothing. A later escalation routes it again like a new alert.
    pub(crate) fn close(
        &mut self,
        key: &str,
        at: i64,
        reason: Reason,
        note: &str,
        ch: &mut Changes,
    ) -> bool {
        let interval = self.update_interval_ms;
        let Some(inc) = self.incidents.get_mut(key) else {
            return false;
        };
        let at = at.max(inc.started_at);
        // A held update goes out first, as it was (or gives way to a
        // resolve at its own instant).
        settle_before_resolve(inc, at, interval, ch);
        for a in inc.alerts.iter_mut().filter(|a| a.active) {
            a.active = false;
            a.resolved_at = Some(at);
        }
        if !inc.opened {
            emit(inc, Action::Open, Reason::Opened, at, interval, ch);
        }
        emit(inc, Action::Resolve, reason, at, interval, ch);
        annotate(ch, note);
        ch.saved.remove(key);
        ch.removed.push(key.to_string());
        let part = self
            .ownership
            .as_ref()
            .map_or(0, |o| o.partition_of(&inc.route, &inc.labels));
        self.incidents.remove(key);
        note_closed(
            &mut self.closed,
            self.retention_ms,
            key.to_string(),
            part,
            at,
        );
        true
    }

    /// Alerts active in an incident for which `gone` holds (the engine no
    /// longer has them) leave their incident at `at`: an incident left
    /// without active alerts is closed (`resolve`, reason `alert_gone`), one
    /// with others still firing gets an `update`. The live service calls it
    /// after the engine state is restored and then periodically (a
    /// configuration reload may drop a rule's state), so that an incident
    /// whose alerts vanished does not stay open for ever. Returns the keys of
    /// the incidents closed.
    pub(crate) fn retire(
        &mut self,
        gone: &dyn Fn(&AlertEvidence) -> bool,
        at: i64,
        ch: &mut Changes,
    ) -> Vec<String> {
        let interval = self.update_interval_ms;
        let note = "the engine no longer has these alerts (their rule was changed or removed, or the engine state was reset)";
        let touched: Vec<String> = self
            .incidents
            .values()
            .filter(|i| i.alerts.iter().any(|a| a.active && gone(a)))
            .map(|i| i.key.clone())
            .collect();
        let mut closed = Vec::new();
        for key in touched {
            let Some(inc) = self.incidents.get_mut(&key) else {
                continue;
            };
            let at = at.max(inc.started_at);
            if inc.alerts.iter().any(|a| a.active && !gone(a)) {
                // Others still fire: an annotated update of its own.
                release(inc, interval, ch);
            }
            for a in inc.alerts.iter_mut().filter(|a| a.active && gone(a)) {
                a.active = false;
                a.resolved_at = Some(at);
            }
            if inc.alerts.iter().any(|a| a.active) {
                ch.saved.insert(key.clone());
                if inc.opened {
                    emit(inc, Action::Update, Reason::AlertGone, at, interval, ch);
                    annotate(ch, note);
                }
                continue;
            }
            self.close(&key, at, Reason::AlertGone, note, ch);
            closed.push(key);
        }
        closed
    }
}

/// Puts `note` into the summary of the notification just emitted.
fn annotate(ch: &mut Changes, note: &str) {
    if let Some(n) = ch.notifications.last_mut() {
        n.summary = model::closing_summary(n, note);
    }
}

/// Notes that incident `key` (of partition `part`) closed at `at`, and
/// forgets keys closed more than `retention_ms` of event time before: an
/// incident's key can be made again only while an alert that started with
/// it still fires, and the outbox forgets its rows after as long.
pub(super) fn note_closed(
    closed: &mut std::collections::BTreeMap<String, (u32, i64)>,
    retention_ms: i64,
    key: String,
    part: u32,
    at: i64,
) {
    let horizon = at.saturating_sub(retention_ms);
    closed.retain(|_, (_, t)| *t >= horizon);
    closed.insert(key, (part, at));
}
