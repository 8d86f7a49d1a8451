//! Acknowledgements: a responder says "someone is on it" (`crisiswatch
//! incident ack`, the admin API, the console), and receivers that take
//! acknowledgements hear it as an `acknowledge` notification — PagerDuty's
//! `event_action: "acknowledge"` on the incident's `dedup_key`.
//!
//! Like an operator's close, it is an input from outside the event stream:
//! the manager feeds it to the lifecycle from the outbox's feedback log, so
//! the notification takes its place in the incident's sequence (after the
//! `open`, before the `resolve`) and is delivered, retried and dead-lettered
//! like any other.

use super::super::model::{self, Acknowledgement, Action, Reason};
use super::{emit, Changes, Lifecycle};

impl Lifecycle {
    /// The first acknowledgement of the open incident `key` emits its
    /// `acknowledge` notification (`ack.at` is its time). Returns whether it
    /// did: an incident that is not open (resolved, closed, unknown), not yet
    /// announced (its `open` waits for the group window: nobody was paged
    /// yet), or already acknowledged emits nothing. The progress updates keep
    /// their schedule.
    pub(crate) fn acknowledge(
        &mut self,
        key: &str,
        ack: Acknowledgement,
        ch: &mut Changes,
    ) -> bool {
        let interval = self.update_interval_ms;
        let Some(inc) = self.incidents.get_mut(key) else {
            return false;
        };
        if !inc.opened || inc.acknowledged {
            return false;
        }
        inc.acknowledged = true;
        let next_update = inc.next_update_at;
        let at = ack.at.max(inc.started_at);
        emit(
            inc,
            Action::Acknowledge,
            Reason::Acknowledged,
            at,
            interval,
            ch,
        );
        inc.next_update_at = next_update;
        if let Some(n) = ch.notifications.last_mut() {
            n.ack = Some(ack);
            n.summary = model::summary(n);
        }
        true
    }
}
