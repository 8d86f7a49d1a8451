//! Tests of the receivers' bodies: formats, limits, links.

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
        since: None,
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

/// A crisis across 1,000 slices (one incident, 1,000 alerts of ordinary
/// evidence, about 700 KB of it): the trigger as sent stays under
/// PagerDuty's 512,000 bytes, the alert list trimmed and counted.
#[test]
fn pagerduty_body_of_a_thousand_alert_incident_stays_under_512000_bytes() {
    let key = Secret::new("R0UTINGKEYSECRET0123456789abcdef".to_string());
    let alerts: Vec<_> = (0..1000)
        .map(|i| {
            let mut a = alert(i, true, &"Complaints per product and store. ".repeat(4));
            a.group.push(("store".into(), format!("store-{i:04}")));
            a.sample_event_ids = (0..5).map(|j| format!("evt-{i}-{j}")).collect();
            a.runbook = Some("https://runbooks.example.com/complaints".into());
            a.dashboard = Some("https://grafana.example.com/d/crisiswatch".into());
            a
        })
        .collect();
    let n = notification(alerts, 0);
    let whole = serde_json::to_vec(&generic(&n, usize::MAX)).unwrap();
    assert!(whole.len() > 600_000, "the evidence: {} bytes", whole.len());
    for max_body in [PAGERDUTY_BODY_MAX, 512 * 1024, usize::MAX] {
        let doc = pagerduty(&n, &key, max_body);
        // The bytes the delivery worker sends.
        let sent = serde_json::to_vec(&doc).unwrap();
        assert!(sent.len() <= PAGERDUTY_EVENT_MAX, "{} bytes", sent.len());
        assert!(sent.len() <= PAGERDUTY_BODY_MAX, "{} bytes", sent.len());
        let details = &doc["payload"]["custom_details"];
        let listed = details["alerts"].as_array().unwrap().len();
        let omitted = details["alerts_omitted"].as_u64().unwrap() as usize;
        assert_eq!(listed + omitted, 1000);
        // Filled, not just cut: less than one alert's room is left.
        assert!(
            sent.len() + 1000 > PAGERDUTY_BODY_MAX,
            "{} bytes, {listed} alerts",
            sent.len()
        );
    }
}

/// The generic body, measured as sent, is never over its limit, also when
/// the limit falls anywhere within an alert or the `alerts_omitted` field.
#[test]
fn generic_body_is_measured_as_sent() {
    let alerts: Vec<_> = (0..50).map(|i| alert(i, i % 3 == 0, "d")).collect();
    let n = notification(alerts, 7);
    let whole = serde_json::to_vec(&generic(&n, usize::MAX)).unwrap().len();
    for max_body in (whole - 3000)..=whole {
        let sent = serde_json::to_vec(&generic(&n, max_body)).unwrap().len();
        assert!(sent <= max_body, "{sent} bytes for a limit of {max_body}");
    }
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
    // The attribute named `a_b` keeps its name; `a-b`, sanitised to it,
    // gets the prefix.
    assert_eq!(labels["a_b"], "2");
    assert_eq!(labels["attr_a_b"], "1");
}

/// An attribute whose name is a valid label name keeps it, whichever other
/// attributes sanitise or prefix to the same name and in whatever order they
/// come; only the sanitised or reserved ones are prefixed, and nothing is
/// overwritten.
#[test]
fn alertmanager_attributes_with_valid_names_keep_them() {
    let labels_of = |group: &[(&str, &str)]| {
        let mut a = alert(0, true, "");
        a.group = group
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let n = notification(vec![a], 0);
        alertmanager(&[&n], 5000, 60_000, None)[0]["labels"].clone()
    };
    // The field test's slice: `-` sorts before `_`, and used to win `a_b`.
    let group = [
        ("a-b", "dash"),
        ("a_b", "under"),
        ("attr_a_b", "pre"),
        ("alertname", "spoofed"),
        ("attr_alertname", "pre-alertname"),
        ("9lives", "cat"),
        ("job", "reserved"),
    ];
    let labels = labels_of(&group);
    assert_eq!(labels["a_b"], "under");
    assert_eq!(labels["attr_a_b"], "pre");
    assert_eq!(labels["attr_attr_a_b"], "dash");
    assert_eq!(labels["alertname"], "rule_0");
    assert_eq!(labels["attr_alertname"], "pre-alertname");
    assert_eq!(labels["attr_attr_alertname"], "spoofed");
    assert_eq!(labels["attr_9lives"], "cat");
    assert_eq!(labels["attr_job"], "reserved");
    // Every attribute and crisiswatch's own three, each once.
    assert_eq!(labels.as_object().unwrap().len(), group.len() + 3);
    // Adding a sanitised attribute does not move the others.
    let labels = labels_of(&[("a_b", "under"), ("a.b", "dot")]);
    assert_eq!(labels["a_b"], "under");
    assert_eq!(labels["attr_a_b"], "dot");
    assert_eq!(labels_of(&[("a_b", "under")])["a_b"], "under");
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
    let url = |n: &Notification, g| alertmanager(&[n], 5000, 60_000, g)[0]["generatorURL"].clone();
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

/// A push split to stay within `max_body`: each body is a JSON array within
/// the bound as sent, and together they carry the unsplit push's alerts, in
/// order; an alert too large alone goes in a body of its own, its
/// annotations shortened to fit.
#[test]
fn alertmanager_push_is_split_within_max_body_and_loses_nothing() {
    let mut alerts: Vec<_> = (0..300).map(|i| alert(i, i % 4 != 0, "d")).collect();
    alerts[17].description = "x".repeat(40_000);
    alerts[3].superseded = vec![Severity::Info];
    let n = notification(alerts, 0);
    let whole = alertmanager(&[&n], 5000, 60_000, None);
    let max_body = 16 * 1024;
    let bodies = alertmanager_bodies(&[&n], 5000, 60_000, None, None, max_body).unwrap();
    assert!(bodies.len() > 5, "{} bodies", bodies.len());
    let mut union = Vec::new();
    for b in &bodies {
        let v: Value = serde_json::from_slice(b).unwrap();
        let list = v.as_array().unwrap();
        assert!(
            b.len() <= max_body,
            "{} bytes, {} alerts",
            b.len(),
            list.len()
        );
        union.extend(list.iter().cloned());
    }
    // The alert too large alone lost its description (and said so), and
    // nothing else changed.
    let at = whole
        .as_array()
        .unwrap()
        .iter()
        .position(|a| a["annotations"]["description"].as_str().unwrap().len() == 40_000)
        .unwrap();
    let big = &mut union[at];
    assert_eq!(big["labels"], whole[at]["labels"]);
    assert!(big["annotations"].get("description").is_none());
    assert_eq!(
        big["annotations"]["truncated"],
        "shortened to fit the receiver's max_body_bytes: description"
    );
    assert_eq!(
        big["annotations"]["summary"],
        whole[at]["annotations"]["summary"]
    );
    let ann = big["annotations"].as_object_mut().unwrap();
    ann.remove("truncated");
    ann.insert(
        "description".into(),
        whole[at]["annotations"]["description"].clone(),
    );
    assert_eq!(Value::Array(union), whole);
    // One request when it fits; none without alerts.
    assert_eq!(
        alertmanager_bodies(&[&n], 5000, 60_000, None, None, usize::MAX)
            .unwrap()
            .len(),
        1
    );
    assert!(alertmanager_bodies(&[], 5000, 60_000, None, None, max_body)
        .unwrap()
        .is_empty());
}

/// A re-push leaves out what ended before its cut-off (resolved alerts, the
/// label sets an escalation left behind); the notification's own push keeps
/// them, so Alertmanager hears each `endsAt`.
#[test]
fn alertmanager_repush_leaves_out_what_ended_long_ago() {
    let now = 10_000_000;
    let mut old = alert(0, false, "d");
    old.resolved_at = Some(now - RESOLVED_RETENTION_MS - 1);
    let mut recent = alert(1, false, "d");
    recent.resolved_at = Some(now - 60_000);
    let mut escalated = alert(2, true, "d");
    escalated.severity = Severity::Error;
    escalated.superseded = vec![Severity::Warning];
    escalated.superseded_at = vec![now - RESOLVED_RETENTION_MS - 1];
    let mut n = notification(vec![old, recent, escalated], 2);
    n.at = now;
    let rules = |cut: Option<i64>| -> Vec<String> {
        alertmanager_bodies(&[&n], now, 60_000, None, cut, usize::MAX)
            .unwrap()
            .iter()
            .flat_map(|b| serde_json::from_slice::<Vec<Value>>(b).unwrap())
            .map(|a| {
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["severity"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        rules(None),
        [
            "rule_0/warning",
            "rule_1/warning",
            "rule_2/error",
            "rule_2/warning"
        ]
    );
    assert_eq!(
        rules(Some(now - RESOLVED_RETENTION_MS)),
        ["rule_1/warning", "rule_2/error"]
    );
}

/// The sentence says where the value stands: past the threshold, back
/// inside it but not yet at `clear` (still firing), back past `clear`
/// (resolving after `keep_firing_for`), or without a value — never "above"
/// a threshold it is below.
#[test]
fn the_summary_tells_the_truth_about_the_value_and_the_threshold() {
    let mut n = notification(vec![alert(0, true, "d")], 0);
    n.action = Action::Open;
    n.alerts[0].threshold = 5.0;
    n.alerts[0].clear = 1.5;
    let cases = [
        (Some(6.0), "is 6, above the warning threshold 5 over"),
        (
            Some(3.2),
            "is 3.200, below the warning threshold 5 but not back to 1.500 yet over",
        ),
        (
            Some(1.0),
            "is 1, at or below its clear level 1.500 (the warning threshold is 5; it resolves if it stays there) over",
        ),
        (
            None,
            "is n/a, without a value (too little volume; the warning threshold is 5) over",
        ),
    ];
    for (value, want) in cases {
        n.alerts[0].value = value;
        let s = super::super::model::summary(&n);
        assert!(s.contains(want), "{value:?}: {s}");
    }
    // A rule that fires below its threshold says it the other way round.
    n.alerts[0].condition = crate::config::Condition::Below;
    n.alerts[0].threshold = 40.0;
    n.alerts[0].clear = 50.0;
    n.alerts[0].value = Some(45.0);
    let s = super::super::model::summary(&n);
    assert!(
        s.contains("is 45, above the warning threshold 40 but not back to 50 yet"),
        "{s}"
    );
}

/// An alert whose summary alone is larger than the body limit (the summary
/// quotes attribute values) is cut to fit, at a character boundary; its
/// labels stay whole.
#[test]
fn alertmanager_alert_too_large_alone_is_shortened_to_fit() {
    let mut a = alert(0, true, "d");
    a.description = "é".repeat(5_000);
    let mut n = notification(vec![a], 0);
    n.summary = "ü".repeat(30_000);
    let max_body = 16 * 1024;
    let bodies = alertmanager_bodies(&[&n], 5000, 60_000, None, None, max_body).unwrap();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].len() <= max_body, "{} bytes", bodies[0].len());
    let v: Vec<Value> = serde_json::from_slice(&bodies[0]).unwrap();
    let whole = alertmanager(&[&n], 5000, 60_000, None);
    assert_eq!(v[0]["labels"], whole[0]["labels"]);
    let summary = v[0]["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.ends_with('…') && summary.len() > 8_000,
        "{}",
        summary.len()
    );
    assert!(summary.trim_end_matches('…').chars().all(|c| c == 'ü'));
    assert_eq!(
        v[0]["annotations"]["truncated"],
        "shortened to fit the receiver's max_body_bytes: description, sample_event_ids, summary (cut)"
    );
}

/// A body's `links` are the headline rule's, never another rule's: with the
/// runbook configured only for a joined alert's rule, the body names no
/// runbook, and that alert's evidence carries its own.
#[test]
fn links_are_the_headline_rules_only() {
    let headline = alert(0, true, "d");
    let mut other = alert(1, true, "d");
    other.runbook = Some("https://runbooks.example/other".into());
    other.dashboard = Some("https://grafana.example/other".into());
    let n = notification(vec![headline, other], 0);
    let g = generic(&n, usize::MAX);
    assert!(g.get("links").is_none(), "{g}");
    assert_eq!(g["alerts"][1]["runbook"], "https://runbooks.example/other");
    let pd = pagerduty(&n, &Secret::new("rk".to_string()), usize::MAX);
    assert!(
        pd.get("links")
            .is_none_or(|l| l.as_array().is_some_and(Vec::is_empty)),
        "{pd}"
    );
    // The headline rule's own links are the body's.
    let mut n = n;
    n.primary = 1;
    let g = generic(&n, usize::MAX);
    assert_eq!(g["links"]["runbook"], "https://runbooks.example/other");
    assert_eq!(g["links"]["dashboard"], "https://grafana.example/other");
    let pd = pagerduty(&n, &Secret::new("rk".to_string()), usize::MAX);
    assert_eq!(pd["links"][1]["href"], "https://runbooks.example/other");
}

/// An alert whose labels alone are over the limit keeps its summary (cutting
/// it to nothing would not make it fit): it goes over the limit, the
/// expendable annotations left out.
#[test]
fn alertmanager_alert_with_huge_labels_keeps_its_summary() {
    let mut a = alert(0, true, "d");
    a.group = vec![("product".into(), "p".repeat(20_000))];
    let n = notification(vec![a], 0);
    let bodies = alertmanager_bodies(&[&n], 5000, 60_000, None, None, 16 * 1024).unwrap();
    assert_eq!(bodies.len(), 1);
    let v: Vec<Value> = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(v[0]["annotations"]["summary"], "s");
    assert_eq!(v[0]["labels"]["product"].as_str().unwrap().len(), 20_000);
    assert!(v[0]["annotations"].get("description").is_none());
}
