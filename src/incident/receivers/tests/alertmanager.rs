//! The Alertmanager receiver's bodies: labels from slice attributes, the
//! label sets an escalation ended, links, splitting a push within
//! `max_body_bytes`, re-push cut-offs and an alert too large alone.

use super::*;

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
    // The alert instance's own key, which its transitions carry.
    assert_eq!(
        doc[0]["annotations"]["dedup_key"],
        n.alerts[0].dedup_key.as_str()
    );
    assert_ne!(n.alerts[0].dedup_key, n.dedup_key);
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
    // A label name depends on the rule's attributes, not on which values
    // are empty: `a.b` is `attr_a_b` whether or not `a-b` has a value
    // (it was `a_b` when `a-b` was empty), and an empty value is left out.
    let both = labels_of(&[("a-b", "1"), ("a.b", "2")]);
    let one = labels_of(&[("a-b", ""), ("a.b", "2")]);
    assert_eq!(
        (&both["a_b"], &both["attr_a_b"]),
        (&"1".into(), &"2".into())
    );
    assert_eq!(one["attr_a_b"], "2");
    assert!(one.get("a_b").is_none(), "{one}");
    let one = labels_of(&[("alertname", "evil"), ("attr_alertname", "")]);
    assert_eq!(one["attr_attr_alertname"], "evil");
    assert!(one.get("attr_alertname").is_none(), "{one}");
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
fn alertmanager_endpoint() {
    assert_eq!(
        alertmanager_url("http://am:9093/"),
        "http://am:9093/api/v2/alerts"
    );
    assert_eq!(
        alertmanager_url("http://am:9093/api/v2/alerts"),
        "http://am:9093/api/v2/alerts"
    );
    // The endpoint with a trailing slash, and v1's: v2's endpoint (they
    // were 404s for every page).
    for written in [
        "http://am:9093/api/v2/alerts/",
        "http://am:9093/api/v1/alerts",
        "http://am:9093/api/v1/alerts/",
    ] {
        assert_eq!(
            alertmanager_url(written),
            "http://am:9093/api/v2/alerts",
            "{written}"
        );
    }
    assert_eq!(
        alertmanager_url("https://am.example/prefix//"),
        "https://am.example/prefix/api/v2/alerts"
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
