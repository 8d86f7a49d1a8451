//! Reviews of the live service's incidents, rebuilt from its outbox
//! (`crisiswatch review --outbox`).
//!
//! The outbox ([`crate::incident::outbox`]) keeps every notification an
//! incident sent — open, updates, resolve, each with the evidence of all its
//! alerts — per receiver, the incidents still open, and a ledger of the alert
//! transitions it applied. [`load`] reads it read-only (the service may be
//! running) and rebuilds each incident:
//!
//! * its **notifications**, once per (incident, seq) however many receivers
//!   got them; muted ones count (the incident existed);
//! * per **alert**, the review's [`Incident`] model: rule, slice, breach
//!   start, firing, resolve, highest severity, and the transition timeline
//!   from the ledger (exact times and severities, pending included) — or, when
//!   the ledger was pruned, from the notifications;
//! * what the outbox does **not** keep is left out rather than estimated:
//!   indicator values appear only where a notification sent at that moment
//!   carried one, and the peak is the most extreme value the incident stage
//!   saw, with its time only when a notification pins it down.
//!
//! The event figures come from the history, as for any review:
//! [`super::collect_evidence`] over each alert's rule and slice.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::alert::{Labels, State};
use crate::backtest::report::{group_label, short_ts, Incident, Peak, Step};
use crate::config::{Condition, Config, Severity};
use crate::incident::lifecycle;
use crate::incident::model::{Action, AlertEvidence, Reason};
use crate::incident::outbox::{AppliedTransition, OutboxReader, Status, StoredNotification};

use super::{safe_name, ReviewError};

/// Incidents listed in a "no match" error.
const LISTED_KEYS: usize = 20;

/// The incidents of one outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxReview {
    /// The database file read.
    pub path: PathBuf,
    /// Every incident, by breach start then key.
    pub incidents: Vec<OutboxIncident>,
    /// The latest event time the outbox knows (ledger and notifications),
    /// ms: the end for incidents still open.
    pub end_ms: i64,
}

/// One incident of the live service, as its outbox tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxIncident {
    /// `route/labels/start-ms`, the incident's dedup key.
    pub key: String,
    /// The route that grouped it.
    pub route: String,
    /// The grouping labels its alerts share.
    pub labels: Labels,
    /// When its first alert's breach began, ms.
    pub started_at: i64,
    /// Highest severity it was announced with.
    pub severity: Severity,
    /// When it resolved, if a resolve is stored.
    pub resolved_at: Option<i64>,
    /// Still among the outbox's open incidents.
    pub open: bool,
    /// Its stored notifications, by seq (pruned ones are missing).
    pub notifications: Vec<Sent>,
    /// Every alert that joined, in joining order.
    pub alerts: Vec<AlertReview>,
}

/// One notification of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Number within the incident (1 = open).
    pub seq: u32,
    /// Event time, ms.
    pub at: i64,
    /// Open, update or resolve (as the lifecycle sent it).
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// The incident's severity then.
    pub severity: Severity,
    /// What changed since the previous stored notification, e.g.
    /// `complaint_rate escalated to critical`.
    pub change: String,
    /// The responder's sentence.
    pub summary: String,
    /// (receiver, status), by receiver.
    pub deliveries: Vec<(String, Status)>,
    /// Receivers that got this update as their `open`.
    pub sent_as_open: Vec<String>,
}

/// One alert of an outbox incident.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReview {
    /// The alert in the review's model. Step values are `None` where no
    /// notification carried the value at that moment; `peak` is set only when
    /// its time is known (see [`AlertReview::peak`]).
    pub incident: Incident,
    /// What the rule catches (from the notification).
    pub description: String,
    /// The most extreme value the incident stage saw (transitions and
    /// progress updates).
    pub peak: Option<f64>,
    /// When that peak was seen, as far as the outbox tells.
    pub peak_at: PeakTime,
    /// Where the timeline comes from.
    pub timeline: TimelineSource,
    /// Signal event ids of the latest notification.
    pub sample_event_ids: Vec<String>,
}

/// When an alert's peak was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakTime {
    /// At this transition (a notification sent at that moment carried it).
    At(i64),
    /// Not stored; first carried by notification `seq` at `at`.
    ReportedBy {
        /// Event time of the notification, ms.
        at: i64,
        /// Its number.
        seq: u32,
    },
    /// Not stored.
    Unknown,
}

/// The source of an alert's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineSource {
    /// The outbox's ledger of applied transitions: every transition, exact.
    Ledger,
    /// The notifications (the ledger entries were pruned): no pending
    /// transitions, and escalations before the incident opened are folded
    /// into the open.
    Notifications,
}

/// Reads the outbox at `path` (a data directory or `outbox.sqlite`), read-only.
pub fn load(cfg: &Config, path: &Path) -> Result<OutboxReview, ReviewError> {
    let reader = OutboxReader::open(path)?;
    // One snapshot: a resolve written between two reads would otherwise leave
    // an incident neither open nor resolved.
    let (stored, open, ledger) =
        reader.snapshot(|r| Ok((r.notifications()?, r.open_incidents()?, r.applied()?)))?;
    let mut end_ms = ledger
        .values()
        .flatten()
        .map(|t| t.at)
        .max()
        .unwrap_or(i64::MIN);
    let mut by_key: BTreeMap<String, Vec<StoredNotification>> = BTreeMap::new();
    for n in stored {
        end_ms = end_ms.max(n.notification.at);
        by_key
            .entry(n.notification.dedup_key.clone())
            .or_default()
            .push(n);
    }
    let open: HashMap<String, lifecycle::Incident> =
        open.into_iter().map(|i| (i.key.clone(), i)).collect();
    for k in open.keys() {
        by_key.entry(k.clone()).or_default();
    }
    let mut incidents: Vec<OutboxIncident> = by_key
        .iter()
        .filter_map(|(k, notes)| build(k, notes, open.get(k), &ledger, cfg))
        .collect();
    incidents.sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
    tracing::debug!(
        outbox = %reader.path().display(),
        incidents = incidents.len(),
        "Incidents rebuilt from the outbox."
    );
    Ok(OutboxReview {
        path: reader.path().to_path_buf(),
        incidents,
        end_ms: end_ms.max(0),
    })
}

fn build(
    key: &str,
    notes: &[StoredNotification],
    state: Option<&lifecycle::Incident>,
    ledger: &HashMap<String, Vec<AppliedTransition>>,
    cfg: &Config,
) -> Option<OutboxIncident> {
    // Every alert that joined (the last notification lists them all).
    let all_alerts = notes
        .last()
        .map_or(&[][..], |n| n.notification.alerts.as_slice());
    let sent: Vec<Sent> = notes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n = &s.notification;
            let prev = k
                .checked_sub(1)
                .and_then(|p| notes.get(p))
                .map(|p| p.notification.alerts.as_slice());
            Sent {
                seq: n.seq,
                at: n.at,
                action: n.action,
                reason: n.reason,
                severity: n.severity,
                change: change(prev, &n.alerts, n.action, all_alerts),
                summary: n.summary.clone(),
                deliveries: s.deliveries.clone(),
                sent_as_open: s.sent_as_open.clone(),
            }
        })
        .collect();
    // The alerts as each notification showed them; an incident still in its
    // group window has no notification yet, only its stored state.
    let mut snaps: Vec<(Option<&Sent>, &[AlertEvidence])> = notes
        .iter()
        .zip(&sent)
        .map(|(s, x)| (Some(x), s.notification.alerts.as_slice()))
        .collect();
    if notes.is_empty() {
        snaps.push((None, state?.alerts.as_slice()));
    }
    let mut keys: Vec<&str> = Vec::new();
    for (_, alerts) in &snaps {
        for a in alerts.iter() {
            if !keys.contains(&a.dedup_key.as_str()) {
                keys.push(&a.dedup_key);
            }
        }
    }
    let alerts: Vec<AlertReview> = keys
        .iter()
        .filter_map(|k| build_alert(k, &snaps, ledger.get(*k).map(Vec::as_slice), cfg))
        .collect();
    let (route, labels, started_at) = match (notes.first(), state) {
        (Some(n), _) => (
            n.notification.route.clone(),
            n.notification.labels.clone(),
            n.notification.started_at,
        ),
        (None, Some(s)) => (s.route.clone(), s.labels.clone(), s.started_at),
        (None, None) => return None,
    };
    let severity = sent
        .iter()
        .map(|n| n.severity)
        .chain(
            alerts
                .iter()
                .map(|a| a.incident.severity)
                .filter(|_| sent.is_empty()),
        )
        .max()
        .unwrap_or(Severity::Info);
    let resolved_at = notes
        .iter()
        .filter(|s| s.notification.action == Action::Resolve)
        .find_map(|s| s.notification.resolved_at);
    Some(OutboxIncident {
        key: key.to_string(),
        route,
        labels,
        started_at,
        severity,
        resolved_at,
        open: state.is_some(),
        notifications: sent,
        alerts,
    })
}

fn build_alert(
    key: &str,
    snaps: &[(Option<&Sent>, &[AlertEvidence])],
    ledger: Option<&[AppliedTransition]>,
    cfg: &Config,
) -> Option<AlertReview> {
    let views: Vec<(Option<&Sent>, &AlertEvidence)> = snaps
        .iter()
        .filter_map(|(s, alerts)| alerts.iter().find(|a| a.dedup_key == key).map(|a| (*s, a)))
        .collect();
    let (_, first) = *views.first()?;
    let (_, last) = *views.last()?;
    let rule = cfg.rules.iter().find(|r| r.name == last.rule);
    let threshold_of = |sev: Severity| {
        views
            .iter()
            .find(|(_, a)| a.severity == sev)
            .map(|(_, a)| a.threshold)
            .or_else(|| {
                rule.and_then(|r| {
                    r.thresholds
                        .levels()
                        .into_iter()
                        .find(|(s, _)| *s == sev)
                        .map(|(_, v)| v)
                })
            })
            .unwrap_or(f64::NAN)
    };
    let ledger = ledger.unwrap_or_default();
    let resolved_at = last.resolved_at.or_else(|| {
        ledger
            .iter()
            .find(|t| t.state == State::Resolved)
            .map(|t| t.at)
    });
    // An alert joins an incident by firing: a ledger without its `firing` was
    // pruned (at least in part).
    let complete = ledger.iter().any(|t| t.state == State::Firing);
    let (timeline, source) = if !complete {
        (
            steps_from_notifications(&views, resolved_at),
            TimelineSource::Notifications,
        )
    } else {
        let steps = ledger
            .iter()
            .map(|t| Step {
                at: t.at,
                state: t.state,
                severity: t.severity,
                value: value_at(&views, t),
                threshold: if t.state == State::Resolved {
                    last.threshold
                } else {
                    threshold_of(t.severity)
                },
            })
            .collect();
        (steps, TimelineSource::Ledger)
    };
    let severity = views
        .iter()
        .map(|(_, a)| a.severity)
        .chain(timeline.iter().map(|s| s.severity))
        .max()
        .unwrap_or(first.severity);
    let peak = last.peak;
    let peak_at = match peak {
        None => PeakTime::Unknown,
        Some(p) => timeline
            .iter()
            .find(|s| matches!(s.state, State::Firing | State::Escalated) && s.value == Some(p))
            .map(|s| PeakTime::At(s.at))
            .or_else(|| {
                views.iter().find_map(|(s, a)| match s {
                    Some(s) if a.peak == Some(p) => Some(PeakTime::ReportedBy {
                        at: s.at,
                        seq: s.seq,
                    }),
                    _ => None,
                })
            })
            .unwrap_or(PeakTime::Unknown),
    };
    let incident = Incident {
        rule: last.rule.clone(),
        group: last.group.clone(),
        dedup_key: key.to_string(),
        started_at: last.started_at,
        fired_at: last.fired_at,
        resolved_at,
        severity,
        peak: match (peak, peak_at) {
            (Some(value), PeakTime::At(at)) => Some(Peak { value, at }),
            _ => None,
        },
        timeline,
        window_ms: last.window_ms,
        condition: last.condition,
    };
    Some(AlertReview {
        incident,
        description: last.description.clone(),
        peak,
        peak_at,
        timeline: source,
        sample_event_ids: last.sample_event_ids.clone(),
    })
}

/// What changed between two notifications' alerts, in words; an alert is
/// named by its rule, with its slice when the rule has several in `all`.
fn change(
    prev: Option<&[AlertEvidence]>,
    cur: &[AlertEvidence],
    action: Action,
    all: &[AlertEvidence],
) -> String {
    let name = |a: &AlertEvidence| {
        if all.iter().filter(|b| b.rule == a.rule).count() > 1 {
            format!("{} ({})", a.rule, group_label(&a.group))
        } else {
            a.rule.clone()
        }
    };
    let Some(prev) = prev else {
        let active: Vec<String> = cur.iter().filter(|a| a.active).map(name).collect();
        return match action {
            Action::Open if active.is_empty() => "opened (already over)".to_string(),
            Action::Open => format!("opened: {}", active.join(", ")),
            _ => "(earlier notifications not stored)".to_string(),
        };
    };
    let mut parts: Vec<String> = Vec::new();
    for a in cur {
        match prev.iter().find(|p| p.dedup_key == a.dedup_key) {
            None => parts.push(format!("{} joined ({})", name(a), a.severity)),
            Some(p) => {
                if a.severity > p.severity {
                    parts.push(format!("{} escalated to {}", name(a), a.severity));
                }
                if p.active && !a.active {
                    parts.push(format!("{} resolved", name(a)));
                }
            }
        }
    }
    if parts.is_empty() {
        "no change (progress)".to_string()
    } else {
        parts.join("; ")
    }
}

/// The value of a transition, if a notification sent at that moment because
/// of it carried it.
fn value_at(views: &[(Option<&Sent>, &AlertEvidence)], t: &AppliedTransition) -> Option<f64> {
    views.iter().find_map(|(s, a)| {
        let s = (*s)?;
        if s.at != t.at {
            return None;
        }
        let caused = match t.state {
            State::Pending => false,
            State::Firing => {
                a.fired_at == t.at && matches!(s.reason, Reason::Opened | Reason::AlertJoined)
            }
            State::Escalated => s.reason == Reason::Escalated && a.severity == t.severity,
            State::Resolved => a.resolved_at == Some(t.at),
        };
        if !caused {
            return None;
        }
        a.value
            .filter(|v| t.state != State::Resolved || settled(a, *v))
    })
}

/// Whether `v` is back past the alert's clear threshold. A resolve for lack
/// of data leaves the value before it in the evidence: one still past the
/// threshold cannot be the resolve's own.
fn settled(a: &AlertEvidence, v: f64) -> bool {
    match a.condition {
        Condition::Above => v <= a.clear,
        Condition::Below => v >= a.clear,
    }
}

/// A timeline from the notifications alone (the ledger was pruned).
fn steps_from_notifications(
    views: &[(Option<&Sent>, &AlertEvidence)],
    resolved_at: Option<i64>,
) -> Vec<Step> {
    let Some((s0, first)) = views.first() else {
        return Vec::new();
    };
    let mut steps = vec![Step {
        at: first.fired_at,
        state: State::Firing,
        severity: first.severity,
        value: s0.filter(|s| s.at == first.fired_at).and(first.value),
        threshold: first.threshold,
    }];
    let mut severity = first.severity;
    for (s, a) in views.iter().skip(1) {
        if a.severity > severity {
            severity = a.severity;
            steps.push(Step {
                at: s.map_or(a.fired_at, |s| s.at),
                state: State::Escalated,
                severity,
                value: a.value,
                threshold: a.threshold,
            });
        }
    }
    if let Some(r) = resolved_at {
        let value = views.iter().rev().find_map(|(s, a)| {
            (s.is_some_and(|s| s.at == r) && a.resolved_at == Some(r))
                .then_some(a.value)
                .flatten()
                .filter(|v| settled(a, *v))
        });
        let threshold = views.last().map_or(f64::NAN, |(_, a)| a.threshold);
        steps.push(Step {
            at: r,
            state: State::Resolved,
            severity,
            value,
            threshold,
        });
    }
    steps
}

/// Picks incidents: by incident key or an alert's dedup key — exact, or a
/// substring matching exactly one incident; all of them when `keys` is empty.
pub fn select<'a>(
    review: &'a OutboxReview,
    keys: &[String],
) -> Result<Vec<&'a OutboxIncident>, ReviewError> {
    let all = &review.incidents;
    if keys.is_empty() {
        return Ok(all.iter().collect());
    }
    let mut out: Vec<&OutboxIncident> = Vec::new();
    for k in keys {
        let has_alert = |i: &OutboxIncident, f: &dyn Fn(&str) -> bool| {
            i.alerts.iter().any(|a| f(&a.incident.dedup_key))
        };
        let exact: Vec<&OutboxIncident> = all
            .iter()
            .filter(|i| i.key == *k || has_alert(i, &|a| a == k))
            .collect();
        let mut hits: Vec<&OutboxIncident> =
            all.iter().filter(|i| i.key.contains(k.as_str())).collect();
        if hits.is_empty() {
            hits = all
                .iter()
                .filter(|i| has_alert(i, &|a| a.contains(k.as_str())))
                .collect();
        }
        let hits = if exact.len() == 1 { exact } else { hits };
        match hits.as_slice() {
            [one] => {
                if !out.iter().any(|o| o.key == one.key) {
                    out.push(one);
                }
            }
            [] => {
                return Err(ReviewError::Select(format!(
                    "no incident in {} matches {k:?}; incidents: {}",
                    review.path.display(),
                    list_keys(all.iter())
                )))
            }
            many => {
                return Err(ReviewError::Select(format!(
                    "{k:?} matches {} incidents in {}: {}; give more of the key",
                    many.len(),
                    review.path.display(),
                    list_keys(many.iter().copied())
                )))
            }
        }
    }
    Ok(out)
}

fn list_keys<'a>(incidents: impl ExactSizeIterator<Item = &'a OutboxIncident>) -> String {
    let n = incidents.len();
    if n == 0 {
        return "(none)".to_string();
    }
    let mut s: Vec<&str> = incidents
        .take(LISTED_KEYS)
        .map(|i| i.key.as_str())
        .collect();
    if n > LISTED_KEYS {
        s.push("…");
    }
    s.join(", ")
}

/// One line per incident: key, state, severity, breach start, resolve,
/// alerts and notifications (`review --outbox --list`).
pub fn list(review: &OutboxReview) -> String {
    let w = review
        .incidents
        .iter()
        .map(|i| i.key.len())
        .max()
        .unwrap_or(0)
        .max("incident".len());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<8}  {:<8}  {:<20}  {:<20}  {:>6}  {:>13}",
        "incident", "state", "severity", "breach began", "resolved", "alerts", "notifications"
    );
    for i in &review.incidents {
        let _ = writeln!(
            s,
            "{:<w$}  {:<8}  {:<8}  {:<20}  {:<20}  {:>6}  {:>13}",
            i.key,
            state_word(i),
            i.severity.as_str(),
            short_ts(i.started_at),
            i.resolved_at.map_or_else(|| "-".to_string(), short_ts),
            i.alerts.len(),
            i.notifications.len()
        );
    }
    s
}

fn state_word(i: &OutboxIncident) -> &'static str {
    match (i.resolved_at, i.open, i.notifications.is_empty()) {
        (Some(_), _, _) => "resolved",
        (None, true, true) => "forming",
        (None, true, false) => "open",
        (None, false, _) => "unknown",
    }
}

/// A file name for an incident's review: its key made safe.
pub fn file_name(i: &OutboxIncident) -> String {
    format!("{}.md", safe_name(&i.key))
}

mod render;
pub use render::render;
