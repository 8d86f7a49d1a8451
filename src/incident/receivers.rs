//! The wire formats of `contract.md` §4: one [`Notification`] rendered for a
//! generic webhook, PagerDuty Events API v2, an Alertmanager, or the console.
//!
//! The last step before the network: the delivery worker renders a stored
//! notification at send time (Alertmanager's `endsAt` depends on it) and
//! signs the exact bytes it sends ([`super::signature`]).

use serde_json::{json, Map, Value};

use crate::config::Severity;
use crate::event::format_ts;
use crate::secret::Secret;

use super::model::{fmt_value, labels_text, Action, AlertEvidence, Notification};

/// PagerDuty caps `payload.summary` at 1024 characters.
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;

fn labels_obj(labels: &[(String, String)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn num(v: Option<f64>) -> Value {
    v.filter(|x| x.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn window_text(ms: i64) -> String {
    crate::config::Dur::from_ms(ms.max(0) as u64).to_string()
}

fn evidence_json(a: &AlertEvidence) -> Value {
    json!({
        "rule": a.rule,
        "description": a.description,
        "group": labels_obj(&a.group),
        "state": if a.active { "firing" } else { "resolved" },
        "severity": a.severity.as_str(),
        "value": num(a.value),
        "threshold": a.threshold,
        "clear": a.clear,
        "peak": num(a.peak),
        "window": window_text(a.window_ms),
        "started_at": format_ts(a.started_at),
        "fired_at": format_ts(a.fired_at),
        "resolved_at": a.resolved_at.map(format_ts),
        "dedup_key": a.dedup_key,
        "sample_event_ids": a.sample_event_ids,
        "runbook": a.runbook,
        "dashboard": a.dashboard,
    })
}

/// The generic JSON webhook: the contract's fields from the headline alert,
/// plus the incident's own and every alert's evidence.
pub fn generic(n: &Notification) -> Value {
    let p = n.primary();
    let mut doc = json!({
        "dedup_key": n.dedup_key,
        "action": n.action.as_str(),
        "seq": n.seq,
        "reason": n.reason,
        "rule": p.map(|a| a.rule.as_str()),
        "group": p.map_or(Value::Null, |a| labels_obj(&a.group)),
        "severity": n.severity.as_str(),
        "value": num(p.and_then(|a| a.value)),
        "threshold": p.map(|a| a.threshold),
        "clear": p.map(|a| a.clear),
        "peak": num(p.and_then(|a| a.peak)),
        "window": p.map(|a| window_text(a.window_ms)),
        "started_at": format_ts(n.started_at),
        "at": format_ts(n.at),
        "resolved_at": n.resolved_at.map(format_ts),
        "duration_seconds": n.duration_ms() / 1000,
        "summary": n.summary,
        "sample_event_ids": p.map_or(&[][..], |a| &a.sample_event_ids[..]),
        "route": n.route,
        "labels": labels_obj(&n.labels),
        "alerts": n.alerts.iter().map(evidence_json).collect::<Vec<_>>(),
    });
    let (dashboard, runbook) = n.links();
    let mut links = Map::new();
    if let Some(d) = dashboard {
        links.insert("dashboard".into(), Value::String(d.to_string()));
    }
    if let Some(r) = runbook {
        links.insert("runbook".into(), Value::String(r.to_string()));
    }
    if let (false, Value::Object(m)) = (links.is_empty(), &mut doc) {
        m.insert("links".into(), Value::Object(links));
    }
    doc
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// PagerDuty's severity for ours (the same four names).
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
        Severity::Critical => "critical",
    }
}

/// A PagerDuty Events API v2 event: `trigger` for open and update (PagerDuty
/// deduplicates on `dedup_key`), `resolve` for resolve.
pub fn pagerduty(n: &Notification, routing_key: &Secret) -> Value {
    if n.action == Action::Resolve {
        return json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        });
    }
    let p = n.primary();
    let (dashboard, runbook) = n.links();
    let mut links = Vec::new();
    if let Some(d) = dashboard {
        links.push(json!({"href": d, "text": "Dashboard"}));
    }
    if let Some(r) = runbook {
        links.push(json!({"href": r, "text": "Runbook"}));
    }
    json!({
        "routing_key": routing_key.expose(),
        "event_action": "trigger",
        "dedup_key": n.dedup_key,
        "client": "crisiswatch",
        "payload": {
            "summary": truncate_chars(&n.summary, PAGERDUTY_SUMMARY_MAX),
            "source": format!("crisiswatch {}", labels_text(&n.labels)),
            "severity": pagerduty_severity(n.severity),
            "timestamp": format_ts(n.at),
            "class": p.map(|a| a.rule.as_str()),
            "group": n.route,
            "custom_details": {
                "action": n.action.as_str(),
                "reason": n.reason,
                "started_at": format_ts(n.started_at),
                "duration_seconds": n.duration_ms() / 1000,
                "value": num(p.and_then(|a| a.value)),
                "threshold": p.map(|a| a.threshold),
                "peak": num(p.and_then(|a| a.peak)),
                "labels": labels_obj(&n.labels),
                "alerts": n.alerts.iter().map(evidence_json).collect::<Vec<_>>(),
            },
        },
        "links": links,
    })
}

/// `POST /api/v2/alerts` of the Alertmanager at `base` (a base URL, or the full endpoint).
pub fn alertmanager_url(base: &str) -> String {
    if base.ends_with("/api/v2/alerts") {
        base.to_string()
    } else {
        format!("{}/api/v2/alerts", base.trim_end_matches('/'))
    }
}

/// Alertmanager alerts for the notifications (one per incident alert):
/// firing ones end `4 × resend_ms` after `now_ms` unless re-sent, as
/// Prometheus does; resolved ones end when they resolved (never after `now_ms`).
pub fn alertmanager(ns: &[&Notification], now_ms: i64, resend_ms: i64) -> Value {
    let mut out = Vec::new();
    for n in ns {
        for a in &n.alerts {
            out.push(alertmanager_alert(n, a, now_ms, resend_ms));
        }
    }
    Value::Array(out)
}

fn alertmanager_alert(n: &Notification, a: &AlertEvidence, now_ms: i64, resend_ms: i64) -> Value {
    let mut labels = Map::new();
    labels.insert("alertname".into(), Value::String(a.rule.clone()));
    labels.insert("severity".into(), Value::String(a.severity.as_str().into()));
    labels.insert("incident".into(), Value::String(n.dedup_key.clone()));
    for (k, v) in &a.group {
        if !v.is_empty() {
            labels.insert(crate::metrics::label_name(k), Value::String(v.clone()));
        }
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), Value::String(n.summary.clone()));
    if !a.description.is_empty() {
        annotations.insert("description".into(), Value::String(a.description.clone()));
    }
    annotations.insert("value".into(), Value::String(fmt_value(a.value)));
    annotations.insert(
        "threshold".into(),
        Value::String(fmt_value(Some(a.threshold))),
    );
    annotations.insert("peak".into(), Value::String(fmt_value(a.peak)));
    annotations.insert("window".into(), Value::String(window_text(a.window_ms)));
    annotations.insert(
        "sample_event_ids".into(),
        Value::String(a.sample_event_ids.join(",")),
    );
    if let Some(r) = &a.runbook {
        annotations.insert("runbook_url".into(), Value::String(r.clone()));
    }
    if let Some(d) = &a.dashboard {
        annotations.insert("dashboard".into(), Value::String(d.clone()));
    }
    let resolved = (!a.active || n.action == Action::Resolve)
        .then(|| a.resolved_at.or(n.resolved_at).unwrap_or(n.at));
    let ends = match resolved {
        Some(r) => r.min(now_ms),
        None => now_ms.saturating_add(resend_ms.saturating_mul(4)),
    };
    let starts = a.started_at.min(ends);
    let mut alert = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": format_ts(starts),
        "endsAt": format_ts(ends),
    });
    if let (Some(url), Value::Object(m)) = (a.dashboard.as_ref().or(a.runbook.as_ref()), &mut alert)
    {
        m.insert("generatorURL".into(), Value::String(url.clone()));
    }
    alert
}

/// One line for the console receiver.
pub fn console_line(n: &Notification) -> String {
    format!(
        "[{}] INCIDENT {:<7} {:<8} {} — {}",
        format_ts(n.at),
        n.action.as_str().to_uppercase(),
        n.severity.as_str(),
        n.dedup_key,
        n.summary
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(
            truncate_chars(&"é".repeat(2000), 1024).chars().count(),
            1024
        );
    }

    #[test]
    fn alertmanager_endpoint() {
        assert_eq!(
            alertmanager_url("http://am:9093/"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alertmanager_url("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
        );
    }
}
