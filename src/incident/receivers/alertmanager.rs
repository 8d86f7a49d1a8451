//! The Alertmanager receiver's body: one alert per incident alert
//! (`POST /api/v2/alerts`), re-pushed as Prometheus does, with the label
//! sets an escalation superseded ended.

use serde_json::{json, Map, Value};

use super::{fmt_value, hints_text, window_text, Action, AlertEvidence, Notification, Severity};
use crate::event::format_ts;

/// `POST /api/v2/alerts` of the Alertmanager at `base`: a base URL, or the
/// endpoint itself — with or without a trailing `/`, and the v1 endpoint
/// (`/api/v1/alerts`, removed from Alertmanager; the body is v2's) taken as
/// v2's. Before, `…/api/v2/alerts/` became `…/api/v2/alerts/api/v2/alerts`
/// and every page a 404.
pub(crate) fn alertmanager_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_string()
    } else if let Some(root) = base.strip_suffix("/api/v1/alerts") {
        format!("{root}/api/v2/alerts")
    } else {
        format!("{base}/api/v2/alerts")
    }
}

/// How long after it ended a re-push still carries an alert (a resolved
/// one, or a label set an escalation left behind): 15 minutes, Prometheus's
/// `resolvedRetention` for the same purpose. The notification that ended it
/// was delivered with its `endsAt`; after this, Alertmanager has long had it,
/// and a long incident's re-pushes stop growing with every alert that came
/// and went.
pub(crate) const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// [`alerts_ending`]'s alerts as one JSON array: one push, unsplit.
#[cfg(test)]
pub(crate) fn alertmanager(
    ns: &[&Notification],
    now_ms: i64,
    resend_ms: i64,
    generator: Option<&str>,
) -> Value {
    Value::Array(
        alerts_ending(ns, now_ms, resend_ms, generator)
            .into_iter()
            .map(|(alert, _)| alert)
            .collect(),
    )
}

/// The bodies of one push of [`alerts_ending`]'s alerts, each a JSON array of
/// at most `max_body` bytes as sent: Alertmanager takes any number of
/// alerts per request, so a push too large for one request (a crisis across
/// thousands of slices, a re-push of every firing incident) is split, and
/// nothing is lost. An alert larger than `max_body` on its own (a long
/// description, a long summary) goes alone, its annotations shortened until
/// it fits ([`shortened`]); its labels — its identity — are never touched.
/// A re-push passes `ended_before`: alerts that ended before it (ms) are
/// left out ([`RESOLVED_RETENTION_MS`]). No alert, no body.
pub(crate) fn alertmanager_bodies(
    ns: &[&Notification],
    now_ms: i64,
    resend_ms: i64,
    generator: Option<&str>,
    ended_before: Option<i64>,
    max_body: usize,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (alert, ends) in alerts_ending(ns, now_ms, resend_ms, generator) {
        if ended_before.is_some_and(|cut| ends < cut) {
            continue;
        }
        let mut bytes = serde_json::to_vec(&alert)?;
        if bytes.len() + 2 > max_body {
            bytes = serde_json::to_vec(&shortened(alert, max_body.saturating_sub(2))?)?;
        }
        // `[` … `]` around, a comma before all but the first.
        if !body.is_empty() && body.len() + 1 + bytes.len() + 1 > max_body {
            body.push(b']');
            bodies.push(std::mem::take(&mut body));
        }
        body.push(if body.is_empty() { b'[' } else { b',' });
        body.extend_from_slice(&bytes);
    }
    if !body.is_empty() {
        body.push(b']');
        bodies.push(body);
    }
    Ok(bodies)
}

/// Annotations an alert too large for a body gives up first, in this order:
/// the rule's description (the config and the runbook still have it), then
/// the evidence of the moment; the summary is cut last, only as far as needed.
const EXPENDABLE: [&str; 3] = ["description", "hints", "sample_event_ids"];

/// `alert` with its annotations shortened to fit `budget` bytes as sent:
/// [`EXPENDABLE`] ones left out one by one, then the summary cut (at a
/// character boundary, with `…`) when it can take the whole excess; a
/// `truncated` annotation names what was left out or cut. Labels and links
/// stay whole, so the alert keeps its identity (an alert whose labels and
/// links alone are over the budget goes over it: the receiver answers).
fn shortened(mut alert: Value, budget: usize) -> Result<Value, serde_json::Error> {
    let size = |a: &Value| serde_json::to_vec(a).map(|b| b.len());
    let mut cut: Vec<&str> = Vec::new();
    let note = |alert: &mut Value, cut: &[&str]| {
        if let Some(Value::Object(ann)) = alert.get_mut("annotations") {
            ann.insert(
                "truncated".into(),
                Value::String(format!(
                    "shortened to fit the receiver's max_body_bytes: {}",
                    cut.join(", ")
                )),
            );
        }
    };
    for key in EXPENDABLE {
        if size(&alert)? <= budget {
            return Ok(alert);
        }
        let removed = match alert.get_mut("annotations") {
            Some(Value::Object(ann)) => ann.remove(key).is_some(),
            _ => false,
        };
        if removed {
            cut.push(key);
            note(&mut alert, &cut);
        }
    }
    let over = size(&alert)?.saturating_sub(budget);
    if over > 0 {
        // Cut only a summary that can take the whole excess: otherwise the
        // labels and links alone are over the budget, and a summary cut to
        // nothing would help no one.
        if let Some(Value::String(summary)) = alert
            .pointer_mut("/annotations/summary")
            .filter(|s| s.as_str().is_some_and(|s| s.len() > over + 32))
        {
            // Cut `over` bytes and a few more for the `…` (3 bytes) and the
            // longer note; JSON escapes only make the cut larger than needed.
            let keep = summary.len().saturating_sub(over + 32);
            let mut at = keep;
            while !summary.is_char_boundary(at) {
                at -= 1;
            }
            summary.truncate(at);
            summary.push('…');
            cut.push("summary (cut)");
            note(&mut alert, &cut);
        }
    }
    Ok(alert)
}

/// Alertmanager alerts for the notifications (one per incident alert), and
/// when each ends (ms):
/// firing ones end `4 × resend_ms` after `now_ms` unless re-sent, as
/// Prometheus does; resolved ones end when they resolved (never after `now_ms`).
/// `generatorURL` is the rule's dashboard, else its runbook, else
/// `generator` (the console), as Prometheus links its own page.
///
/// `severity` is a label (routes and inhibitions match on it), so an alert
/// that escalated is another Alertmanager alert than the one it was: each
/// alert also carries the label sets of the severities it had before
/// (`superseded`), ended at their escalation, so the copy pushed
/// before the escalation resolves at once instead of firing beside it until
/// it times out.
fn alerts_ending(
    ns: &[&Notification],
    now_ms: i64,
    resend_ms: i64,
    generator: Option<&str>,
) -> Vec<(Value, i64)> {
    let mut out = Vec::new();
    for n in ns {
        for a in &n.alerts {
            let (alert, span) = alertmanager_alert(n, a, now_ms, resend_ms, generator);
            let at = n.at.min(now_ms).max(a.started_at);
            // Each ended at its escalation (older stored incidents: now).
            let lower: Vec<(Value, i64)> = a
                .superseded
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let ended = a.superseded_at.get(i).map_or(at, |&e| e.min(at));
                    superseded(&alert, span, *s, ended)
                })
                .collect();
            out.push((alert, span.1));
            out.extend(lower);
        }
    }
    out
}

/// `alert` (which starts at `starts` and ends at `ends`, ms) under severity
/// `s`, ended by `at` at the latest; and when it ends.
fn superseded(alert: &Value, (starts, ends): (i64, i64), s: Severity, at: i64) -> (Value, i64) {
    let mut copy = alert.clone();
    let ends = ends.min(at);
    if let Value::Object(m) = &mut copy {
        if let Some(Value::Object(labels)) = m.get_mut("labels") {
            labels.insert("severity".into(), Value::String(s.as_str().into()));
        }
        m.insert(
            "startsAt".into(),
            Value::String(format_ts(starts.min(ends))),
        );
        m.insert("endsAt".into(), Value::String(format_ts(ends)));
    }
    (copy, ends)
}

/// One Alertmanager alert, and when it starts and ends (ms).
fn alertmanager_alert(
    n: &Notification,
    a: &AlertEvidence,
    now_ms: i64,
    resend_ms: i64,
    generator: Option<&str>,
) -> (Value, (i64, i64)) {
    let mut labels = Map::new();
    labels.insert("alertname".into(), Value::String(a.rule.clone()));
    labels.insert("severity".into(), Value::String(a.severity.as_str().into()));
    labels.insert("incident".into(), Value::String(n.dedup_key.clone()));
    attribute_labels(&a.group, &mut labels);
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
    // The alert instance's own key (the transitions' `dedup_key`); the
    // `incident` label is the incident's.
    annotations.insert("dedup_key".into(), Value::String(a.dedup_key.clone()));
    annotations.insert(
        "sample_event_ids".into(),
        Value::String(a.sample_event_ids.join(",")),
    );
    if !a.hints.is_empty() {
        annotations.insert("hints".into(), Value::String(hints_text(&a.hints)));
    }
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
    let url = a
        .dashboard
        .as_deref()
        .or(a.runbook.as_deref())
        .or(generator);
    if let (Some(url), Value::Object(m)) = (url, &mut alert) {
        // A stray `%` (a link stored before `check` refused it) would make
        // Alertmanager refuse the whole push.
        let url = crate::config::escape_stray_percent(url);
        m.insert("generatorURL".into(), Value::String(url.into_owned()));
    }
    (alert, (starts, ends))
}

/// Adds the slice's attributes to `labels` (which holds crisiswatch's own),
/// an empty value left out as Prometheus does.
///
/// An attribute whose name is already a valid label name that is not
/// reserved (`metrics::label_name` leaves it as it is) and not one of
/// crisiswatch's own keeps it, whatever other attributes there are: a route
/// or silence on `a_b="…"` matches the attribute named `a_b`. Only then do
/// the others get theirs, in the group's order: sanitised or reserved, with
/// the `attr_` prefix put in front again while the name is taken — never
/// overwriting a label, and the same labels for the same group every time;
/// names are given over every attribute, empty ones included, so they
/// follow from the rule's `group_by` alone.
fn attribute_labels(group: &[(String, String)], labels: &mut Map<String, Value>) {
    // Names are given over every attribute of the slice, empty ones too
    // (which are then left out), so that an attribute's label name depends
    // on the rule's `group_by` alone: before, `a.b` was `a_b` in a slice
    // whose `a-b` was empty and `attr_a_b` in one where it was not, and a
    // route or silence on `a_b` caught the one and missed the other.
    let mut taken: std::collections::BTreeSet<String> = labels.keys().cloned().collect();
    let mut named: Vec<(String, &String)> = Vec::with_capacity(group.len());
    let mut renamed = Vec::new();
    for (k, v) in group {
        if crate::metrics::label_name(k) == *k && !taken.contains(k) {
            taken.insert(k.clone());
            named.push((k.clone(), v));
        } else {
            renamed.push((k, v));
        }
    }
    for (k, v) in renamed {
        let mut name = crate::metrics::label_name(k);
        while taken.contains(&name) {
            name.insert_str(0, "attr_");
        }
        taken.insert(name.clone());
        named.push((name, v));
    }
    for (name, v) in named {
        if !v.is_empty() {
            labels.insert(name, Value::String(v.clone()));
        }
    }
}
