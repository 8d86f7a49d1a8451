//! The incident lifecycle: alert transitions in, incident notifications
//! (open → update* → resolve) out.
//!
//! The first step of the incident stage, right after the engine. It is a pure
//! function of the transitions and of event time — no wall clock, no I/O — so
//! the same input gives the same incidents, keys and notifications in live
//! runs, replays and tests. The manager persists its state with every batch.
//!
//! * An alert that **fires** is routed ([`Router`]); per route it joins the
//!   open incident of its grouping labels, or opens a new one whose key is
//!   `route/labels/start-ms` (the first alert's start).
//! * A new incident waits `group_window` (event time) for more alerts of its
//!   group, then sends `open` with all of them; later alerts join with an
//!   `update`. Its severity is the highest among its active alerts.
//! * **Escalation** updates the incident (and routes the alert again: a route
//!   with `min_severity` may take it now).
//! * An alert that **resolves** leaves; the incident sends `update` while
//!   others still fire and `resolve` when the last one resolves.
//! * While open, an incident sends a **progress** `update` every
//!   `update_interval` without other news: current value, peak, duration.
//! * An open incident gathers its changes for the route's `group_interval`
//!   (event time) into **one** `update`, as Alertmanager does: a crisis that
//!   trips a rule on 300 slices of one product seconds apart pages once or
//!   twice, not 300 times. The update is held ([`Held`]) from its first
//!   change until `group_interval` later (at least until event time passes
//!   that instant) or the input ends; an escalation that raises the
//!   incident's severity sends it once event time passes the escalation;
//!   the incident resolving replaces it (the `resolve` shows every alert).
//!   Held in event time and kept with the incident, it is the same in every
//!   run, with or without restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::alert::{Labels, State, Transition};
use crate::config::{Condition, Config, Severity};

use super::model::{self, Action, AlertEvidence, Notification, Reason};
use super::routing::{Ownership, Route, Router};

mod ack;
mod closing;
mod due;
mod held;
mod keys;
mod values;

pub(crate) use held::Held;
use held::{group_interval, hold, release, settle, settle_before_resolve};
use keys::ClosedKeys;

pub use values::{NoValues, ValueSource};

/// One incident, as persisted in the outbox between batches and restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `route/labels/start-ms`: the incident's `dedup_key` from open to resolve.
    pub(crate) key: String,
    /// Route name.
    pub(crate) route: String,
    /// Grouping labels.
    pub(crate) labels: Labels,
    /// Start of the first alert (event time, ms).
    pub(crate) started_at: i64,
    /// When the `open` goes out if it has not yet (end of the group window).
    pub(crate) open_at: i64,
    /// Whether `open` was sent.
    pub(crate) opened: bool,
    /// Notifications sent so far.
    pub(crate) seq: u32,
    /// When the next progress update is due.
    pub(crate) next_update_at: Option<i64>,
    /// Every alert that joined, in joining order.
    pub(crate) alerts: Vec<AlertEvidence>,
    /// Whether its `acknowledge` went out ([`Lifecycle::acknowledge`]).
    #[serde(default)]
    pub(crate) acknowledged: bool,
    /// Progress updates sent since its last other notification.
    #[serde(default)]
    pub(crate) quiet: u32,
    /// An `update` not sent yet: more changes of its kind may come at its
    /// instant and go out with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) held: Option<Held>,
    /// The worst value a progress update showed for each active alert (by
    /// its `dedup_key`), so a later update never shows a lower peak. Shown
    /// only, like the current values: every other notification carries the
    /// transitions' peak.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) shown_peaks: BTreeMap<String, f64>,
}

impl Incident {
    fn has_active(&self, alert_key: &str) -> bool {
        self.alerts
            .iter()
            .any(|a| a.active && a.dedup_key == alert_key)
    }

    /// The latest event time it knows of: its open, and the firing,
    /// escalations and resolves of its alerts.
    fn latest_time(&self) -> i64 {
        self.alerts
            .iter()
            .flat_map(|a| {
                [a.fired_at, a.resolved_at.unwrap_or(i64::MIN)]
                    .into_iter()
                    .chain(a.superseded_at.iter().copied())
            })
            .chain([
                self.started_at,
                if self.opened { self.open_at } else { i64::MIN },
            ])
            .max()
            .unwrap_or(self.started_at)
    }

    /// The highest severity among its active alerts.
    fn active_severity(&self) -> Option<Severity> {
        self.alerts
            .iter()
            .filter(|a| a.active)
            .map(|a| a.severity)
            .max()
    }
}

/// What one batch changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Notifications to enqueue, in order.
    pub(crate) notifications: Vec<Notification>,
    /// Keys of incidents whose state changed (to save).
    pub(crate) saved: BTreeSet<String>,
    /// Keys of incidents that resolved (to delete).
    pub(crate) removed: Vec<String>,
    /// Alerts that fired or escalated and that no route takes: they open no
    /// incident; the manager counts and logs them.
    pub(crate) unrouted: Vec<super::routing::Unrouted>,
}

#[derive(Debug, Clone, Default)]
struct RuleInfo {
    condition: Condition,
    description: String,
    runbook: Option<String>,
    dashboard: Option<String>,
}

fn rule_infos(cfg: &Config) -> HashMap<String, RuleInfo> {
    cfg.rules
        .iter()
        .map(|r| {
            let info = RuleInfo {
                condition: r.condition,
                description: r.description.clone(),
                runbook: r.runbook.clone(),
                dashboard: r.dashboard.clone(),
            };
            (r.name.clone(), info)
        })
        .collect()
}

/// The state machine of every open incident.
#[derive(Debug)]
pub struct Lifecycle {
    router: Router,
    /// Routes a reload removed while incidents of theirs were open: those
    /// incidents keep the receivers they had until they resolve.
    retired: BTreeMap<String, Route>,
    rules: HashMap<String, RuleInfo>,
    update_interval_ms: i64,
    incidents: BTreeMap<String, Incident>,
    /// Several instances: the incident groups this one keeps (`None`: all).
    ownership: Option<Ownership>,
    /// Keys of incidents closed before (this run's, and the outbox's): a
    /// new incident never takes one ([`keys`]).
    closed: ClosedKeys,
}

// === impl Lifecycle ===

impl Lifecycle {
    /// The latest event time open incident `key` knows of (`None`: no such
    /// incident).
    pub(crate) fn latest_time(&self, key: &str) -> Option<i64> {
        self.incidents.get(key).map(Incident::latest_time)
    }

    /// A lifecycle with no open incident.
    pub(crate) fn new(cfg: &Config) -> Lifecycle {
        Lifecycle {
            router: Router::new(cfg),
            retired: BTreeMap::new(),
            rules: rule_infos(cfg),
            update_interval_ms: cfg.incidents.update_interval.as_ms(),
            incidents: BTreeMap::new(),
            ownership: None,
            closed: ClosedKeys::new(cfg.incidents.retention.as_ms()),
        }
    }

    /// Keeps only the incidents of the groups `ownership` owns: an alert
    /// joins no incident of another instance's group. The closed keys of
    /// partitions no longer owned are forgotten: a partition's next owner
    /// applies again what followed its checkpoint and must make the keys
    /// its previous owner made, so it starts with none (see README).
    pub(crate) fn set_ownership(&mut self, ownership: Ownership) {
        self.closed.keep_partitions(|p| ownership.owns_partition(p));
        self.ownership = Some(ownership);
    }

    /// Switches to a reloaded configuration: routes, rule metadata and the
    /// progress interval. Open incidents stay open; their alerts take their
    /// rule's new description, runbook and dashboard (the incidents changed
    /// are added to `ch.saved`), and an incident whose route was removed
    /// keeps that route's receivers until it resolves.
    pub(crate) fn reconfigure(&mut self, cfg: &Config, ch: &mut Changes) {
        let old = std::mem::replace(&mut self.router, Router::new(cfg));
        for r in old.routes() {
            if self.router.get(&r.name).is_none() {
                self.retired.insert(r.name.clone(), r.clone());
            }
        }
        self.retired.retain(|name, _| {
            self.router.get(name).is_none() && self.incidents.values().any(|i| &i.route == name)
        });
        self.rules = rule_infos(cfg);
        self.update_interval_ms = cfg.incidents.update_interval.as_ms();
        self.closed.set_retention(cfg.incidents.retention.as_ms());
        for inc in self.incidents.values_mut() {
            let mut changed = false;
            for a in &mut inc.alerts {
                let Some(info) = self.rules.get(&a.rule) else {
                    continue;
                };
                if a.description != info.description
                    || a.runbook != info.runbook
                    || a.dashboard != info.dashboard
                {
                    a.description.clone_from(&info.description);
                    a.runbook.clone_from(&info.runbook);
                    a.dashboard.clone_from(&info.dashboard);
                    changed = true;
                }
            }
            if changed {
                ch.saved.insert(inc.key.clone());
            }
        }
    }

    /// The routing table.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The receivers that hear of incidents of `route`: the route's, or, for a
    /// route a reload removed, those it had.
    pub(crate) fn route_receivers(&self, route: &str) -> &[String] {
        self.router
            .get(route)
            .or_else(|| self.retired.get(route))
            .map_or(&[][..], |r| &r.receivers[..])
    }

    /// Replaces the state with persisted incidents (start-up, or after a failed write).
    pub(crate) fn restore(&mut self, incidents: Vec<Incident>) {
        self.incidents = incidents.into_iter().map(|i| (i.key.clone(), i)).collect();
    }

    /// The open (or forming) incidents, by key.
    pub(crate) fn incidents(&self) -> &BTreeMap<String, Incident> {
        &self.incidents
    }

    /// An incident by key.
    pub(crate) fn incident(&self, key: &str) -> Option<&Incident> {
        self.incidents.get(key)
    }

    /// Applies one alert transition.
    pub(crate) fn apply(&mut self, t: &Transition, ch: &mut Changes) {
        match t.state {
            State::Pending => {}
            State::Firing => {
                let routes = self.router.matching(&t.rule, t.severity, &t.group);
                if routes.is_empty() {
                    ch.unrouted.push(super::routing::Unrouted::of(t));
                }
                for r in routes {
                    self.join(r, t, ch);
                }
            }
            State::Escalated => {
                // `escalate` routes it again; unrouted when no route takes
                // it and no incident has it (routes a reload removed).
                if self
                    .router
                    .matching(&t.rule, t.severity, &t.group)
                    .is_empty()
                    && !self.incidents.values().any(|i| i.has_active(&t.dedup_key))
                {
                    ch.unrouted.push(super::routing::Unrouted::of(t));
                }
                self.escalate(t, ch)
            }
            State::Resolved => self.resolve(t, ch),
        }
    }

    /// Adds an open incident (taken over from another instance).
    pub(crate) fn insert(&mut self, inc: Incident) {
        self.incidents.insert(inc.key.clone(), inc);
    }

    /// Removes and returns the open incidents `pick` selects.
    pub(crate) fn take(&mut self, pick: impl Fn(&Incident) -> bool) -> Vec<Incident> {
        let keys: Vec<String> = self
            .incidents
            .values()
            .filter(|i| pick(i))
            .map(|i| i.key.clone())
            .collect();
        keys.iter()
            .filter_map(|k| self.incidents.remove(k))
            .collect()
    }

    /// Whether some incident has an active alert.
    pub(crate) fn has_active_alerts(&self) -> bool {
        self.incidents
            .values()
            .any(|i| i.alerts.iter().any(|a| a.active))
    }

    fn evidence(&self, t: &Transition) -> AlertEvidence {
        let info = self.rules.get(&t.rule).cloned().unwrap_or_default();
        let mut a = AlertEvidence {
            rule: t.rule.clone(),
            description: info.description,
            group: t.group.clone(),
            severity: t.severity,
            superseded: Vec::new(),
            superseded_at: Vec::new(),
            active: true,
            condition: info.condition,
            value: None,
            threshold: t.threshold,
            clear: t.clear,
            peak: None,
            window_ms: t.window_ms,
            started_at: t.started_at,
            fired_at: t.at,
            resolved_at: None,
            dedup_key: t.dedup_key.clone(),
            sample_event_ids: t.sample_event_ids.clone(),
            runbook: info.runbook,
            dashboard: info.dashboard,
            hints: t.hints.clone(),
        };
        a.observe(t.value);
        a
    }

    fn join(&mut self, r: usize, t: &Transition, ch: &mut Changes) {
        let Some(route) = self.router.routes().get(r) else {
            return;
        };
        let labels = route.grouping(&t.rule, &t.group);
        if self
            .ownership
            .as_ref()
            .is_some_and(|o| !o.owns(&route.name, &labels))
        {
            return;
        }
        let (route_name, window, gather) = (
            route.name.clone(),
            route.group_window_ms,
            route.group_interval_ms,
        );
        let evidence = self.evidence(t);
        let interval = self.update_interval_ms;
        if let Some(inc) = self
            .incidents
            .values_mut()
            .find(|i| i.route == route_name && i.labels == labels)
        {
            if inc.has_active(&t.dedup_key) {
                return;
            }
            settle(inc, t.at, interval, ch);
            let before = inc.active_severity();
            inc.alerts.push(evidence);
            ch.saved.insert(inc.key.clone());
            if inc.opened {
                let raised = inc.active_severity() > before;
                hold(inc, Reason::AlertJoined, t.at, gather, raised);
            }
            return;
        }
        let key = self
            .closed
            .fresh(&route_name, &labels, t.started_at, &self.incidents);
        let mut inc = Incident {
            key: key.clone(),
            route: route_name,
            labels,
            started_at: t.started_at,
            open_at: t.at.saturating_add(window.max(0)),
            opened: false,
            seq: 0,
            next_update_at: None,
            alerts: vec![evidence],
            acknowledged: false,
            quiet: 0,
            held: None,
            shown_peaks: BTreeMap::new(),
        };
        if window <= 0 {
            emit(&mut inc, Action::Open, Reason::Opened, t.at, interval, ch);
        }
        ch.saved.insert(key.clone());
        self.incidents.insert(key, inc);
    }

    fn escalate(&mut self, t: &Transition, ch: &mut Changes) {
        let interval = self.update_interval_ms;
        let (router, retired) = (&self.router, &self.retired);
        for inc in self.incidents.values_mut() {
            if !inc.has_active(&t.dedup_key) {
                continue;
            }
            settle(inc, t.at, interval, ch);
            let gather = group_interval(router, retired, &inc.route);
            let before = inc.active_severity();
            let Some(a) = inc
                .alerts
                .iter_mut()
                .find(|a| a.active && a.dedup_key == t.dedup_key)
            else {
                continue;
            };
            if t.severity > a.severity {
                // Before the first escalation recorded with its time, the
                // earlier ones end with it.
                a.superseded_at.resize(a.superseded.len(), t.at);
                a.superseded.push(a.severity);
                a.superseded_at.push(t.at);
                a.severity = t.severity;
            }
            a.threshold = t.threshold;
            a.observe(t.value);
            a.sample_event_ids = t.sample_event_ids.clone();
            if !t.hints.is_empty() {
                a.hints = t.hints.clone();
            }
            ch.saved.insert(inc.key.clone());
            if inc.opened {
                let raised = inc.active_severity() > before;
                hold(inc, Reason::Escalated, t.at, gather, raised);
            }
        }
        // Routes that take the alert at its new severity (or at all, if it was
        // never seen firing) get it too; `join` skips routes that have it.
        for r in self.router.matching(&t.rule, t.severity, &t.group) {
            self.join(r, t, ch);
        }
    }

    fn resolve(&mut self, t: &Transition, ch: &mut Changes) {
        let interval = self.update_interval_ms;
        let (router, retired) = (&self.router, &self.retired);
        let keys: Vec<String> = self
            .incidents
            .values()
            .filter(|i| i.has_active(&t.dedup_key))
            .map(|i| i.key.clone())
            .collect();
        for key in keys {
            let Some(inc) = self.incidents.get_mut(&key) else {
                continue;
            };
            let last = inc
                .alerts
                .iter()
                .filter(|a| a.active && a.dedup_key != t.dedup_key)
                .count()
                == 0;
            if last {
                settle_before_resolve(inc, t.at, interval, ch);
            } else {
                settle(inc, t.at, interval, ch);
            }
            let gather = group_interval(router, retired, &inc.route);
            if let Some(a) = inc
                .alerts
                .iter_mut()
                .find(|a| a.active && a.dedup_key == t.dedup_key)
            {
                a.active = false;
                a.resolved_at = Some(t.at);
                // The levels it resolved against (a reload may have moved them).
                (a.threshold, a.clear) = (t.threshold, t.clear);
                // Resolved for want of data (the window's volume fell below
                // the rule's minimum): no value, not the last one seen.
                match t.value {
                    Some(_) => a.observe(t.value),
                    None => a.value = None,
                }
                if !t.sample_event_ids.is_empty() {
                    a.sample_event_ids = t.sample_event_ids.clone();
                }
            }
            if inc.alerts.iter().any(|a| a.active) {
                ch.saved.insert(key.clone());
                if inc.opened {
                    hold(inc, Reason::AlertResolved, t.at, gather, false);
                }
                continue;
            }
            if !inc.opened {
                // Over within its group window: responders still hear of it.
                emit(inc, Action::Open, Reason::Opened, t.at, interval, ch);
            }
            emit(inc, Action::Resolve, Reason::Resolved, t.at, interval, ch);
            ch.saved.remove(&key);
            ch.removed.push(key.clone());
            let part = keys::partition(self.ownership.as_ref(), &inc.route, &inc.labels);
            self.incidents.remove(&key);
            self.closed.note(key, part, t.at);
        }
    }
}

fn emit(
    inc: &mut Incident,
    action: Action,
    reason: Reason,
    at: i64,
    interval: i64,
    ch: &mut Changes,
) {
    let alerts = inc.alerts.clone();
    emit_showing(inc, action, reason, at, interval, alerts, ch);
}

/// [`emit`] with the alerts as the notification shows them (a progress
/// update's current values).
fn emit_showing(
    inc: &mut Incident,
    action: Action,
    reason: Reason,
    at: i64,
    interval: i64,
    alerts: Vec<model::AlertEvidence>,
    ch: &mut Changes,
) {
    inc.seq += 1;
    if reason == Reason::Progress {
        inc.quiet += 1;
    } else {
        inc.quiet = 0;
    }
    if action == Action::Open {
        inc.opened = true;
    }
    inc.next_update_at =
        (interval > 0 && action != Action::Resolve).then(|| at.saturating_add(interval));
    let severity = model::incident_severity(&inc.alerts);
    let mut n = Notification {
        dedup_key: inc.key.clone(),
        action,
        seq: inc.seq,
        reason,
        route: inc.route.clone(),
        labels: inc.labels.clone(),
        severity,
        at,
        started_at: inc.started_at,
        resolved_at: (action == Action::Resolve).then_some(at),
        primary: model::primary_index(&alerts),
        alerts,
        summary: String::new(),
        ack: None,
        since: None,
    };
    n.summary = model::summary(&n);
    ch.saved.insert(inc.key.clone());
    ch.notifications.push(n);
}

#[cfg(test)]
mod tests;
