//! Rebuilding one incident from what the outbox keeps: its notifications,
//! its alerts' [`Incident`] timelines (from the ledger, or from the
//! notifications once the ledger is pruned) and what the outbox cannot tell.

use std::collections::HashMap;

use crate::alert::State;
use crate::backtest::report::{group_label, Incident, Peak, Step};
use crate::config::{Config, Severity};
use crate::incident::lifecycle;
use crate::incident::model::{Action, AlertEvidence, Reason};
use crate::incident::outbox::{AppliedTransition, StoredNotification};

use super::*;

pub(super) fn build(
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
                since: n.since,
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
                hints: Vec::new(),
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
        hints: hints_seen(&views),
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
    if action == Action::Acknowledge {
        return "acknowledged".to_string();
    }
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

/// The value of a transition, if a notification sent because of it carried
/// it: one sent at that moment, or an update that gathered the changes from
/// `since` to `at` in which it was the alert's last (an alert's evidence
/// holds the value of its last transition).
fn value_at(views: &[(Option<&Sent>, &AlertEvidence)], t: &AppliedTransition) -> Option<f64> {
    views.iter().find_map(|(s, a)| {
        let s = (*s)?;
        if t.at < s.since.unwrap_or(s.at) || t.at > s.at {
            return None;
        }
        let last = [
            Some(a.fired_at),
            a.superseded_at.last().copied(),
            a.resolved_at,
        ]
        .into_iter()
        .flatten()
        .max();
        if last != Some(t.at) {
            return None;
        }
        let caused = match t.state {
            State::Pending => false,
            State::Firing => {
                a.fired_at == t.at
                    && matches!(
                        s.reason,
                        Reason::Opened | Reason::AlertJoined | Reason::Escalated
                    )
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
    // (A NaN is settled nowhere.)
    !v.is_nan() && !a.condition.past(v, a.clear)
}

/// The root-cause hints the notifications carried for one alert: (time,
/// hints) each time they changed.
fn hints_seen(views: &[(Option<&Sent>, &AlertEvidence)]) -> Vec<(i64, Vec<crate::explain::Hint>)> {
    let mut out: Vec<(i64, Vec<crate::explain::Hint>)> = Vec::new();
    for (s, a) in views {
        if a.hints.is_empty() || out.last().is_some_and(|(_, h)| *h == a.hints) {
            continue;
        }
        out.push((s.map_or(a.fired_at, |s| s.at), a.hints.clone()));
    }
    out
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
        hints: first.hints.clone(),
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
                hints: a.hints.clone(),
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
            hints: Vec::new(),
        });
    }
    steps
}
