//! Incidents that end without their alerts resolving: an operator's
//! close, and alerts the engine no longer has (the manager's side is
//! `manager/closing.rs`).

use super::super::model::{self, AlertEvidence, Reason};
use super::{emit, keys, release, settle_before_resolve, Action, Changes, Lifecycle};

impl Lifecycle {
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
        let part = keys::partition(self.ownership.as_ref(), &inc.route, &inc.labels);
        self.incidents.remove(key);
        self.closed.note(key.to_string(), part, at);
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
