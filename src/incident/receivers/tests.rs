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
        untracked: false,
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
    // A value just past its threshold is not printed as the threshold.
    n.alerts[0].condition = crate::config::Condition::Above;
    n.alerts[0].threshold = 0.1;
    n.alerts[0].clear = 0.07;
    n.alerts[0].value = Some(0.10034);
    let s = super::super::model::summary(&n);
    assert!(
        s.contains("is 0.1003, above the warning threshold 0.1000 over"),
        "{s}"
    );
    n.alerts[0].threshold = 150.0;
    n.alerts[0].clear = 100.0;
    n.alerts[0].value = Some(150.4);
    let s = super::super::model::summary(&n);
    assert!(
        s.contains("is 150.4, above the warning threshold 150.0 over"),
        "{s}"
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

mod alertmanager;

/// PagerDuty's body carries no `null`: what is not known (no value yet, no
/// runbook or dashboard, not resolved, no headline alert) is left out.
#[test]
fn pagerduty_bodies_carry_no_null() {
    fn nulls(v: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Null => found.push(at.to_string()),
            serde_json::Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| nulls(x, &format!("{at}/{k}"), found)),
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| nulls(x, &format!("{at}/{i}"), found)),
            _ => {}
        }
    }
    let key = Secret::new("k".to_string());
    let mut unknown = alert(0, true, "d");
    unknown.value = None;
    unknown.peak = None;
    for n in [
        notification(vec![unknown, alert(1, false, "e")], 0),
        notification(Vec::new(), 0),
    ] {
        let doc = pagerduty(&n, &key, PAGERDUTY_BODY_MAX);
        let mut found = Vec::new();
        nulls(&doc, "", &mut found);
        assert!(found.is_empty(), "nulls at {found:?} in {doc}");
        assert!(doc["payload"]["custom_details"]["alerts"].is_array());
    }
}
