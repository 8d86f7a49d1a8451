//! The wire formats of `docs/contract.md` §4: one [`Notification`] rendered for a
//! generic webhook, PagerDuty Events API v2, an Alertmanager, or the console.
//!
//! The last step before the network: the delivery worker renders a stored
//! notification at send time (Alertmanager's `endsAt` depends on it) and
//! signs the exact bytes it sends ([`super::signature`]).

use serde_json::{json, Map, Value};

use crate::config::Severity;
use crate::event::format_ts;
use crate::explain::{hints_text, Hint};
use crate::secret::Secret;

use super::model::{fmt_value, labels_text, Action, AlertEvidence, Notification};

mod alertmanager;
#[cfg(test)]
use alertmanager::alertmanager;
pub(crate) use alertmanager::{alertmanager_bodies, alertmanager_url, RESOLVED_RETENTION_MS};

/// PagerDuty caps `payload.summary` at 1024 characters.
pub(crate) const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// PagerDuty refuses an event larger than 512 KB, in decimal: 512,000 bytes
/// (Prometheus Alertmanager's and Grafana's PagerDuty notifiers check the
/// same `maxEventSize = 512000`).
pub(crate) const PAGERDUTY_EVENT_MAX: usize = 512_000;
/// The largest PagerDuty body crisiswatch sends: [`PAGERDUTY_EVENT_MAX`] less
/// a 12,000-byte margin, should PagerDuty measure an event a little
/// differently from the bytes on the wire (its own re-encoding).
pub(crate) const PAGERDUTY_BODY_MAX: usize = PAGERDUTY_EVENT_MAX - 12_000;
/// `payload.source` is shown as a host name: kept to a readable length.
pub(crate) const PAGERDUTY_SOURCE_MAX: usize = 255;

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
        "hints": a.hints,
    })
}

/// The generic JSON webhook: the contract's fields from the headline alert,
/// plus the incident's own and every alert's evidence that fits in
/// `max_body` bytes (the rest counted in `alerts_omitted`, as PagerDuty's).
pub(crate) fn generic(n: &Notification, max_body: usize) -> Value {
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
        "hints": p.map_or(&[][..], |a| &a.hints[..]),
        "alerts": [],
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
    if let (Some(a), Value::Object(m)) = (&n.ack, &mut doc) {
        m.insert(
            "acknowledged".into(),
            json!({"by": a.by, "note": a.note, "at": format_ts(a.at)}),
        );
    }
    fit_alerts(&mut doc, "", n, max_body, false);
    doc
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// PagerDuty's severity for ours (the same four names).
pub(crate) fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
        Severity::Critical => "critical",
    }
}

/// A PagerDuty Events API v2 event: `trigger` for open and update (PagerDuty
/// deduplicates on `dedup_key`), `acknowledge` for a responder's
/// acknowledgement, `resolve` for resolve.
///
/// PagerDuty's limits are kept: `dedup_key` ≤ 255 characters (incident keys
/// are bounded when made, [`super::model::incident_key`]; an older stored key
/// is bounded the same way here), every string field it defines is a string
/// (never `null`), and the body stays under PagerDuty's 512,000 bytes (at
/// most [`PAGERDUTY_BODY_MAX`], or `max_body` when smaller): when every alert's
/// evidence would not fit, `custom_details.alerts` keeps the headline alert,
/// then the active ones, then the rest in joining order as far as they fit,
/// and `custom_details.alerts_omitted` counts what was left out.
pub(crate) fn pagerduty(n: &Notification, routing_key: &Secret, max_body: usize) -> Value {
    let dedup_key =
        super::model::bounded_key(&n.dedup_key, n.started_at, super::model::MAX_INCIDENT_KEY);
    // Acknowledge and resolve name the incident only (PagerDuty ignores a
    // payload on them).
    let bare = match n.action {
        Action::Resolve => Some("resolve"),
        Action::Acknowledge => Some("acknowledge"),
        Action::Open | Action::Update => None,
    };
    if let Some(event_action) = bare {
        return json!({
            "routing_key": routing_key.expose(),
            "event_action": event_action,
            "dedup_key": dedup_key,
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
    let mut doc = json!({
        "routing_key": routing_key.expose(),
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "crisiswatch",
        "payload": {
            "summary": truncate_chars(&n.summary, PAGERDUTY_SUMMARY_MAX),
            "source": truncate_chars(
                &format!("crisiswatch {}", labels_text(&n.labels)),
                PAGERDUTY_SOURCE_MAX,
            ),
            "severity": pagerduty_severity(n.severity),
            "timestamp": format_ts(n.at),
            // The rule of the headline alert; the route when there is none.
            "class": p.map_or(n.route.as_str(), |a| a.rule.as_str()),
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
                "hints": p.map_or_else(Vec::new, |a| a.hints.iter().map(Hint::text).collect()),
                "alerts": [],
            },
        },
        "links": links,
    });
    // What is not known (no value yet, no runbook, not resolved) is left
    // out rather than sent as `null`, here and in each alert's evidence.
    if let Some(details) = doc.pointer_mut("/payload/custom_details") {
        drop_nulls(details);
    }
    fit_alerts(
        &mut doc,
        "/payload/custom_details",
        n,
        PAGERDUTY_BODY_MAX.min(max_body),
        true,
    );
    doc
}

/// Removes every `null` member of the objects in `v`, at any depth.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Fills the `alerts` list of the object at `at` (a JSON pointer) in `doc`
/// with the evidence of `n`'s alerts that fits, with the rest of `doc`, in
/// `max_body` bytes as sent (`serde_json::to_vec`), and sets `alerts_omitted`
/// when some were left out.
///
/// Measured, not estimated: the document is serialised with an empty list
/// and the largest `alerts_omitted` it can carry, and each alert adds its own
/// serialised size and a comma, so the body sent is never larger than
/// `max_body` (only the headline alert's evidence alone can overflow a limit
/// too small for it, and then it is omitted too).
fn fit_alerts(doc: &mut Value, at: &str, n: &Notification, max_body: usize, no_nulls: bool) {
    let Some(Value::Object(m)) = doc.pointer_mut(at) else {
        return;
    };
    m.insert("alerts".into(), Value::Array(Vec::new()));
    m.insert("alerts_omitted".into(), Value::from(n.alerts.len()));
    let base = serde_json::to_vec(&*doc).map_or(usize::MAX, |b| b.len());
    let (alerts, omitted) = alerts_within(n, max_body.saturating_sub(base), no_nulls);
    if let Some(Value::Object(m)) = doc.pointer_mut(at) {
        m.insert("alerts".into(), Value::Array(alerts));
        if omitted > 0 {
            m.insert("alerts_omitted".into(), Value::from(omitted));
        } else {
            m.remove("alerts_omitted");
        }
    }
}

/// The evidence of `n`'s alerts that fits in `budget` bytes of JSON — the
/// headline alert first, then active alerts, then the rest, each group in
/// joining order, listed back in joining order — and how many were left out.
fn alerts_within(n: &Notification, budget: usize, no_nulls: bool) -> (Vec<Value>, usize) {
    let mut order: Vec<usize> = (0..n.alerts.len()).collect();
    order.sort_by_key(|&i| (i != n.primary, !n.alerts[i].active, i));
    let mut kept: Vec<(usize, Value)> = Vec::with_capacity(order.len());
    let mut used = 0usize;
    for i in order {
        let mut v = evidence_json(&n.alerts[i]);
        if no_nulls {
            drop_nulls(&mut v);
        }
        // One byte for the separating comma.
        let size = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len() + 1);
        if used.saturating_add(size) > budget {
            continue;
        }
        used += size;
        kept.push((i, v));
    }
    kept.sort_by_key(|(i, _)| *i);
    let omitted = n.alerts.len() - kept.len();
    (kept.into_iter().map(|(_, v)| v).collect(), omitted)
}

/// One line for the console receiver.
pub(crate) fn console_line(n: &Notification) -> String {
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
mod tests;
