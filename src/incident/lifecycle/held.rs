//! Updates held while an open incident gathers its changes (a route's
//! `group_interval`): a change starts or joins the held update, an
//! escalation that raises the incident's severity makes it due at once, a
//! resolve drops it, and [`release`] sends it naming what changed (see the
//! lifecycle's module docs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::model::{self, Action, Reason};
use super::super::routing::{Route, Router};
use super::{emit, Changes, Incident};

/// An incident's `update` gathering changes until it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    /// Why: `escalated` if an alert escalated, else `alert_joined` if one
    /// joined, else `alert_resolved`.
    pub(crate) reason: Reason,
    /// Event time of its first change, ms.
    pub(crate) first: i64,
    /// Event time of its last change, ms: the update's `at`.
    pub(crate) at: i64,
    /// When it goes out: once event time reaches this, ms.
    pub(crate) due: i64,
}

/// The `group_interval` of the route `name` (one a reload removed keeps
/// its own), ms.
pub(super) fn group_interval(
    router: &Router,
    retired: &BTreeMap<String, Route>,
    name: &str,
) -> i64 {
    router
        .get(name)
        .or_else(|| retired.get(name))
        .map_or(0, |r| r.group_interval_ms)
}

/// Before a change at `at`: a held update due by then goes out first (the
/// callers look before every transition, so this only guards direct use).
pub(super) fn settle(inc: &mut Incident, at: i64, interval: i64, ch: &mut Changes) {
    if inc.held.is_some_and(|h| h.due <= at) {
        release(inc, interval, ch);
    }
}

/// Before the incident resolves at `at`: a held update not yet due is
/// dropped (the `resolve` shows every alert), one already due goes out.
pub(super) fn settle_before_resolve(inc: &mut Incident, at: i64, interval: i64, ch: &mut Changes) {
    match inc.held {
        Some(h) if h.due > at => {
            inc.held = None;
            ch.saved.insert(inc.key.clone());
        }
        Some(_) => release(inc, interval, ch),
        None => {}
    }
}

/// Gathers a change of kind `reason` at `at` into the held update (or
/// starts one, due `gather` ms later — at least once event time passes
/// `at`); `raised`: it raised the incident's severity, so the update goes
/// out once event time passes `at`.
pub(super) fn hold(inc: &mut Incident, reason: Reason, at: i64, gather: i64, raised: bool) {
    let soon = at.saturating_add(1);
    let h = inc.held.get_or_insert(Held {
        reason,
        first: at,
        at,
        due: at.saturating_add(gather.max(1)),
    });
    h.at = h.at.max(at);
    h.reason = match (h.reason, reason) {
        (Reason::Escalated, _) | (_, Reason::Escalated) => Reason::Escalated,
        (Reason::AlertJoined, _) | (_, Reason::AlertJoined) => Reason::AlertJoined,
        (r, _) => r,
    };
    if raised {
        h.due = h.due.min(soon);
    }
}

/// Sends the held update, if any, at its last change's time, naming what
/// changed since its first.
pub(super) fn release(inc: &mut Incident, interval: i64, ch: &mut Changes) {
    if let Some(h) = inc.held.take() {
        emit(inc, Action::Update, h.reason, h.at, interval, ch);
        if let Some(n) = ch.notifications.last_mut() {
            n.since = Some(h.first);
            n.summary = model::summary(n);
        }
    }
}

#[cfg(test)]
mod tests;
