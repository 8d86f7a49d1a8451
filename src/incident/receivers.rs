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
pub(crate) use alertmanager::{alertmanager, alertmanager_url};

/// PagerDuty caps `payload.summary` at 1024 characters.
pub(crate) const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// PagerDuty refuses events larger than 512 KB.
pub(crate) const PAGERDUTY_BODY_MAX: usize = 512 * 1024;
/// Room kept below a body limit for the `alerts_omitted` field (a margin,
/// not a measurement).
const BODY_SLACK: usize = 1024;
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
    let base = serde_json::to_vec(&doc).map_or(0, |b| b.len());
    let (alerts, omitted) = alerts_within(n, max_body.saturating_sub(base + BODY_SLACK));
    if let Value::Object(m) = &mut doc {
        m.insert("alerts".into(), Value::Array(alerts));
        if omitted > 0 {
            m.insert("alerts_omitted".into(), Value::from(omitted));
        }
    }
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
/// (never `null`), and the body stays under 512 KB: when every alert's
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
    let base = serde_json::to_vec(&doc).map_or(0, |b| b.len());
    let (alerts, omitted) = alerts_within(
        n,
        PAGERDUTY_BODY_MAX
            .min(max_body)
            .saturating_sub(base + BODY_SLACK),
    );
    if let Some(Value::Object(details)) = doc.pointer_mut("/payload/custom_details") {
        details.insert("alerts".into(), Value::Array(alerts));
        if omitted > 0 {
            details.insert("alerts_omitted".into(), Value::from(omitted));
        }
    }
    doc
}

/// The evidence of `n`'s alerts that fits in `budget` bytes of JSON — the
/// headline alert first, then active alerts, then the rest, each group in
/// joining order, listed back in joining order — and how many were left out.
fn alerts_within(n: &Notification, budget: usize) -> (Vec<Value>, usize) {
    let mut order: Vec<usize> = (0..n.alerts.len()).collect();
    order.sort_by_key(|&i| (i != n.primary, !n.alerts[i].active, i));
    let mut kept: Vec<(usize, Value)> = Vec::with_capacity(order.len());
    let mut used = 0usize;
    for i in order {
        let v = evidence_json(&n.alerts[i]);
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

    fn alert(i: usize, active: bool, description: &str) -> AlertEvidence {
        AlertEvidence {
            rule: format!("rule_{i}"),
            description: description.to_string(),
            group: vec![("product".into(), "router-x".into())],
            severity: Severity::Warning,
            superseded: Vec::new(),
            superseded_at: Vec::new(),
            active,
            condition: crate::config::Condition::Above,
            value: Some(1.0),
            threshold: 0.5,
            clear: 0.4,
            peak: Some(1.0),
            window_ms: 3_600_000,
            started_at: 1000,
            fired_at: 1000,
            resolved_at: None,
            dedup_key: format!("rule_{i}/product=router-x/1000"),
            sample_event_ids: vec!["e-1".into()],
            runbook: None,
            dashboard: None,
            hints: Vec::new(),
        }
    }

    fn notification(alerts: Vec<AlertEvidence>, primary: usize) -> Notification {
        Notification {
            dedup_key: "default/product=router-x/1000".into(),
            action: Action::Update,
            seq: 2,
            reason: super::super::model::Reason::AlertJoined,
            route: "default".into(),
            labels: vec![("product".into(), "router-x".into())],
            severity: Severity::Warning,
            at: 2000,
            started_at: 1000,
            resolved_at: None,
            alerts,
            primary,
            summary: "s".into(),
            ack: None,
        }
    }

    /// The generic body stays under the receiver's `max_body_bytes` the same
    /// way: the headline alert kept, the rest counted.
    #[test]
    fn generic_body_stays_under_its_limit_and_counts_what_it_left_out() {
        let long = "d".repeat(2000);
        let alerts: Vec<_> = (0..300).map(|i| alert(i, true, &long)).collect();
        let n = notification(alerts, 299);
        let whole = generic(&n, usize::MAX);
        assert_eq!(whole["alerts"].as_array().unwrap().len(), 300);
        assert!(whole.get("alerts_omitted").is_none());
        let limit = 64 * 1024;
        let doc = generic(&n, limit);
        let size = serde_json::to_vec(&doc).unwrap().len();
        assert!(size <= limit, "{size} bytes");
        let listed = doc["alerts"].as_array().unwrap();
        let omitted = doc["alerts_omitted"].as_u64().unwrap() as usize;
        assert_eq!(listed.len() + omitted, 300);
        assert!(listed.len() > 10, "{} listed", listed.len());
        assert!(
            listed.iter().any(|a| a["rule"] == "rule_299"),
            "headline kept"
        );
        // The contract's fields are the headline alert's, whatever was cut.
        assert_eq!(doc["rule"], "rule_299");
        assert_eq!(doc["dedup_key"], whole["dedup_key"]);
    }

    #[test]
    fn pagerduty_body_stays_under_its_limit_and_counts_what_it_left_out() {
        let key = Secret::new("k".to_string());
        // Small: every alert is listed, nothing omitted.
        let n = notification((0..3).map(|i| alert(i, true, "d")).collect(), 0);
        let doc = pagerduty(&n, &key, PAGERDUTY_BODY_MAX);
        assert_eq!(
            doc["payload"]["custom_details"]["alerts"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(doc["payload"]["custom_details"]
            .get("alerts_omitted")
            .is_none());
        // 400 alerts of ~2 KB each (800 KB): trimmed below 512 KB.
        let long = "d".repeat(2000);
        let alerts: Vec<_> = (0..400)
            .map(|i| alert(i, i % 2 == 1 || i == 399, &long))
            .collect();
        let n = notification(alerts, 399);
        let doc = pagerduty(&n, &key, PAGERDUTY_BODY_MAX);
        let size = serde_json::to_vec(&doc).unwrap().len();
        assert!(size <= PAGERDUTY_BODY_MAX, "{size} bytes");
        let details = &doc["payload"]["custom_details"];
        let listed = details["alerts"].as_array().unwrap();
        let omitted = details["alerts_omitted"].as_u64().unwrap() as usize;
        assert_eq!(listed.len() + omitted, 400);
        assert!(omitted > 0 && listed.len() > 200, "{} listed", listed.len());
        let rules: Vec<&str> = listed.iter().map(|a| a["rule"].as_str().unwrap()).collect();
        assert!(rules.contains(&"rule_399"), "the headline alert is kept");
        // Active alerts go before resolved ones, and the list keeps joining order.
        let active = listed.iter().filter(|a| a["state"] == "firing").count();
        assert_eq!(active, 200, "every active alert fits");
        let idx: Vec<usize> = rules.iter().map(|r| r[5..].parse().unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn pagerduty_class_is_a_string_and_keys_are_bounded() {
        let key = Secret::new("k".to_string());
        let mut n = notification(Vec::new(), 0);
        n.dedup_key = format!("default/product={}/1000", "y".repeat(400));
        let doc = pagerduty(&n, &key, PAGERDUTY_BODY_MAX);
        assert_eq!(doc["payload"]["class"], "default");
        let k = doc["dedup_key"].as_str().unwrap();
        assert!(k.len() <= 255 && k.ends_with("/1000"), "{k}");
        n.action = Action::Resolve;
        assert_eq!(
            pagerduty(&n, &key, PAGERDUTY_BODY_MAX)["dedup_key"],
            k,
            "resolve uses the same key"
        );
    }

    #[test]
    fn alertmanager_attribute_labels_never_overwrite_its_own() {
        let mut a = alert(0, true, "");
        a.group = vec![
            ("alertname".into(), "x".into()),
            ("incident".into(), "y".into()),
            ("severity".into(), "z".into()),
            ("a-b".into(), "1".into()),
            ("a_b".into(), "2".into()),
        ];
        let n = notification(vec![a], 0);
        let doc = alertmanager(&[&n], 5000, 60_000, None);
        let labels = &doc[0]["labels"];
        assert_eq!(labels["alertname"], "rule_0");
        assert_eq!(labels["incident"], "default/product=router-x/1000");
        assert_eq!(labels["severity"], "warning");
        assert_eq!(labels["attr_alertname"], "x");
        assert_eq!(labels["attr_incident"], "y");
        assert_eq!(labels["attr_severity"], "z");
        assert_eq!(labels["a_b"], "1");
        assert_eq!(labels["attr_a_b"], "2");
    }

    /// An escalated alert's lower severities go out ended, so the copy
    /// pushed before the escalation resolves; the alert itself fires on.
    #[test]
    fn alertmanager_ends_the_label_sets_an_escalation_left_behind() {
        let mut a = alert(0, true, "");
        a.severity = Severity::Error;
        a.superseded = vec![Severity::Info, Severity::Warning];
        let n = notification(vec![a], 0);
        let doc = alertmanager(&[&n], 5000, 60_000, None);
        let list = doc.as_array().unwrap();
        let sev = |v: &Value| v["labels"]["severity"].as_str().unwrap().to_string();
        assert_eq!(
            list.iter().map(sev).collect::<Vec<_>>(),
            ["error", "info", "warning"]
        );
        assert_eq!(list[0]["endsAt"], format_ts(5000 + 4 * 60_000));
        for lower in &list[1..] {
            assert_eq!(lower["endsAt"], format_ts(2000), "ended at the escalation");
            assert_eq!(lower["startsAt"], list[0]["startsAt"]);
            let mut same = lower["labels"].clone();
            same["severity"] = list[0]["labels"]["severity"].clone();
            assert_eq!(same, list[0]["labels"], "only the severity differs");
        }
        // With the escalations' times kept, each ends at its own, however
        // late the notification that carries it (a progress update, the
        // resolve).
        let mut a = alert(0, true, "");
        a.severity = Severity::Error;
        a.superseded = vec![Severity::Info, Severity::Warning];
        a.superseded_at = vec![1200, 1500];
        let mut n = notification(vec![a], 0);
        n.at = 90_000;
        let doc = alertmanager(&[&n], 100_000, 60_000, None);
        let ends: Vec<_> = doc.as_array().unwrap()[1..]
            .iter()
            .map(|v| v["endsAt"].clone())
            .collect();
        assert_eq!(ends, [format_ts(1200), format_ts(1500)]);
        // A level it never had is not sent: one that fired at `error` has
        // nothing to end.
        let n = notification(
            vec![AlertEvidence {
                severity: Severity::Error,
                ..alert(1, true, "")
            }],
            0,
        );
        assert_eq!(
            alertmanager(&[&n], 5000, 60_000, None)
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn hints_reach_every_format() {
        let mut a = alert(0, true, "d");
        a.hints = vec![crate::explain::Hint {
            attribute: "category".into(),
            value: "product_quality".into(),
            count: 42,
            share: 0.78,
            baseline_share: 0.21,
            lift: 3.71,
            score: 88.5,
        }];
        let mut n = notification(vec![a], 0);
        n.action = Action::Open;
        n.reason = super::super::model::Reason::Opened;
        n.summary = super::super::model::summary(&n);
        let text = "category=product_quality 78 % (usually 21 %, ×3.7)";
        assert!(
            n.summary.contains(&format!("Over-represented: {text}.")),
            "{}",
            n.summary
        );
        assert!(console_line(&n).contains(text));
        let g = generic(&n, PAGERDUTY_BODY_MAX);
        assert_eq!(g["hints"][0]["value"], "product_quality");
        assert_eq!(g["hints"][0]["lift"], 3.71);
        assert_eq!(g["alerts"][0]["hints"], g["hints"]);
        let pd = pagerduty(&n, &Secret::new("k".to_string()), PAGERDUTY_BODY_MAX);
        assert_eq!(pd["payload"]["custom_details"]["hints"][0], text);
        assert!(pd["payload"]["summary"].as_str().unwrap().contains(text));
        let am = alertmanager(&[&n], 5000, 60_000, None);
        assert_eq!(am[0]["annotations"]["hints"], text);
        // Without hints: an empty list in the generic body, no annotation.
        let plain = notification(vec![alert(1, true, "d")], 0);
        assert_eq!(
            generic(&plain, PAGERDUTY_BODY_MAX)["hints"],
            serde_json::json!([])
        );
        assert!(
            alertmanager(&[&plain], 5000, 60_000, None)[0]["annotations"]
                .get("hints")
                .is_none()
        );
    }

    /// Every Alertmanager alert links somewhere (contract §4 lists
    /// `generatorURL`): the rule's dashboard, else its runbook, else the
    /// console.
    #[test]
    fn alertmanager_alerts_link_the_dashboard_runbook_or_console() {
        let console = Some("http://cw.example:9464/");
        let mut n = notification(vec![alert(0, true, "d")], 0);
        let url =
            |n: &Notification, g| alertmanager(&[n], 5000, 60_000, g)[0]["generatorURL"].clone();
        assert_eq!(url(&n, console), "http://cw.example:9464/");
        assert!(url(&n, None).is_null());
        n.alerts[0].runbook = Some("https://wiki/rb".into());
        assert_eq!(url(&n, console), "https://wiki/rb");
        n.alerts[0].dashboard = Some("https://grafana/d".into());
        assert_eq!(url(&n, console), "https://grafana/d");
    }

    #[test]
    fn an_acknowledgement_names_the_incident_for_pagerduty_and_says_who_in_generic() {
        let mut n = notification(vec![alert(0, true, "d")], 0);
        n.action = Action::Acknowledge;
        n.reason = super::super::model::Reason::Acknowledged;
        n.ack = Some(super::super::model::Acknowledgement {
            by: "ana".into(),
            note: "on it".into(),
            at: 61_000,
        });
        n.at = 61_000;
        n.summary = super::super::model::summary(&n);
        assert_eq!(
            n.summary,
            "Acknowledged by ana (on it) after 1m; still firing: rule_0 on product=router-x \
             is 1, above the warning threshold 0.500 over the last 1h."
        );
        let pd = pagerduty(&n, &Secret::new("k".to_string()), PAGERDUTY_BODY_MAX);
        assert_eq!(
            pd,
            serde_json::json!({
                "routing_key": "k",
                "event_action": "acknowledge",
                "dedup_key": "default/product=router-x/1000",
            })
        );
        let g = generic(&n, PAGERDUTY_BODY_MAX);
        assert_eq!(g["action"], "acknowledge");
        assert_eq!(g["reason"], "acknowledged");
        assert_eq!(g["acknowledged"]["by"], "ana");
        assert_eq!(g["acknowledged"]["note"], "on it");
        assert_eq!(g["acknowledged"]["at"], "1970-01-01T00:01:01Z");
        // Other notifications carry no `acknowledged`.
        n.action = Action::Update;
        n.ack = None;
        assert!(generic(&n, PAGERDUTY_BODY_MAX)
            .get("acknowledged")
            .is_none());
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
