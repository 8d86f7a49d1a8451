//! A configuration reload reaches the incident stage (issue 15 A7), against
//! real HTTP receivers: routes, receivers and rule metadata change in place,
//! open incidents stay open, and a receiver that heard an open hears its
//! resolve even after a reload took it off the route.

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::State;
use crisiswatch::config::{Config, Severity};
use crisiswatch::incident::{IncidentManager, ManagerOptions, ReceiverChanges};
use incidents_support::*;
use prometheus::Registry;

fn rule(name: &str, runbook: &str) -> String {
    format!(
        r#"
[[rules]]
name = "{name}"
description = "{name} described"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 5 }}
runbook = "{runbook}"
"#
    )
}

/// Route `main` to `route_to`; the receivers; the rules.
fn cfg(route_to: &str, receivers: &[(&str, &str)], rules: &[String]) -> Config {
    let mut text = format!(
        "[incidents]\nupdate_interval = \"0\"\n\n[[incidents.routes]]\nname = \"main\"\ngroup_window = \"1s\"\nreceivers = [\"{route_to}\"]\n"
    );
    for (name, url) in receivers {
        text.push_str(&generic_receiver(name, url, ""));
    }
    for r in rules {
        text.push_str(r);
    }
    config(&text)
}

/// (action, rule, product, runbook) of every request a receiver accepted.
fn seen(rx: &Receiver) -> Vec<(String, String, String, String)> {
    rx.accepted()
        .iter()
        .map(|r| {
            let v = r.json();
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            (
                s("/action"),
                s("/rule"),
                s("/group/product"),
                s("/links/runbook"),
            )
        })
        .collect()
}

fn row(action: &str, rule: &str, product: &str, runbook: &str) -> (String, String, String, String) {
    (action.into(), rule.into(), product.into(), runbook.into())
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_reload_changes_routes_receivers_and_runbooks_of_the_running_stage() {
    let (a, b, c) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let (ua, ub, uc) = (a.url(), b.url(), c.url());
    let v1 = cfg(
        "a",
        &[("a", &ua), ("b", &ub)],
        &[rule("r1", "https://rb.example/r1-v1")],
    );
    let m = IncidentManager::open(&v1, &reg, dir.path(), ManagerOptions::default()).unwrap();
    m.submit(
        &[tr("r1", "p1", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    m.submit(&[], 5000).unwrap();
    a.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        seen(&a),
        [row("open", "r1", "p1", "https://rb.example/r1-v1")]
    );

    // Reload: the route goes to b, r1's runbook changes, rule r2 is added.
    let v2 = cfg(
        "b",
        &[("a", &ua), ("b", &ub)],
        &[
            rule("r1", "https://rb.example/r1-v2"),
            rule("r2", "https://rb.example/r2"),
        ],
    );
    let changes = m.apply(m.prepare(&v2).unwrap()).unwrap();
    assert_eq!(
        changes,
        ReceiverChanges {
            kept: names(&["a", "b"]),
            ..Default::default()
        }
    );
    m.submit(
        &[
            tr("r1", "p2", State::Firing, Severity::Warning, 10_000, 10_000),
            tr("r2", "p3", State::Firing, Severity::Warning, 10_000, 10_000),
        ],
        10_000,
    )
    .unwrap();
    m.submit(&[], 20_000).unwrap();
    b.wait_for(2, Duration::from_secs(30)).await;
    let mut got = seen(&b);
    got.sort();
    assert_eq!(
        got,
        [
            row("open", "r1", "p2", "https://rb.example/r1-v2"),
            row("open", "r2", "p3", "https://rb.example/r2"),
        ]
    );
    // The incident a heard of stays a's: its resolve goes to a (not to b,
    // which never heard the open), with the rule's new runbook.
    m.submit(
        &[tr(
            "r1",
            "p1",
            State::Resolved,
            Severity::Warning,
            30_000,
            1000,
        )],
        30_000,
    )
    .unwrap();
    a.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        seen(&a)[1],
        row("resolve", "r1", "p1", "https://rb.example/r1-v2")
    );

    // Reload: b moves to another URL (its worker is replaced), a is removed.
    let v3 = cfg(
        "b",
        &[("b", &uc)],
        &[
            rule("r1", "https://rb.example/r1-v2"),
            rule("r2", "https://rb.example/r2"),
        ],
    );
    let changes = m.apply(m.prepare(&v3).unwrap()).unwrap();
    assert_eq!(
        changes,
        ReceiverChanges {
            changed: names(&["b"]),
            removed: names(&["a"]),
            ..Default::default()
        }
    );
    assert_eq!(m.receivers(), ["b"]);
    m.submit(
        &[tr(
            "r1",
            "p4",
            State::Firing,
            Severity::Warning,
            40_000,
            40_000,
        )],
        40_000,
    )
    .unwrap();
    m.submit(&[], 50_000).unwrap();
    c.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        seen(&c),
        [row("open", "r1", "p4", "https://rb.example/r1-v2")]
    );
    // Nothing more went to the old URL or to the removed receiver.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(b.accepted().len(), 2);
    assert_eq!(a.accepted().len(), 2);

    // A reload whose receiver cannot be readied is refused before anything changes.
    let bad = config_env(
        &format!(
            "{}secret_env = \"CW_TEST_RELOAD_MISSING_SECRET\"\n{}",
            generic_receiver("b", &uc, ""),
            rule("r1", "https://rb.example/r1-v3")
        ),
        &[],
    );
    assert!(m.prepare(&bad).is_err());
    assert_eq!(m.receivers(), ["b"]);
    assert_eq!(m.shutdown(Duration::from_secs(5)).await.pending, 0);
}

/// A receiver that failed into a long backoff, then fixed by a reload (a new
/// URL): what its queue holds goes to the new URL at once, not after the
/// backoff the old URL earned.
#[tokio::test(start_paused = true)]
async fn a_receiver_fixed_by_a_reload_gets_its_queue_at_once() {
    let (broken, fixed) = (Receiver::start().await, Receiver::start().await);
    broken.set_default(Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let slow = r#"backoff_initial = "10m", backoff_max = "10m", breaker_failures = 100"#;
    let with = |url: &str| {
        let mut text = String::from(
            "[incidents]\nupdate_interval = \"0\"\n\n[[incidents.routes]]\nname = \"main\"\ngroup_window = \"1s\"\n",
        );
        text.push_str(&generic_receiver("r", url, slow));
        text.push_str(&rule("r1", "https://rb.example/r1"));
        config(&text)
    };
    let m = IncidentManager::open(
        &with(&broken.url()),
        &reg,
        dir.path(),
        ManagerOptions::default(),
    )
    .unwrap();
    m.submit(
        &[tr("r1", "p1", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    m.submit(&[], 5000).unwrap();
    // The open failed once: its next attempt is ten minutes away.
    broken
        .wait_until(Duration::from_secs(30), "a failed attempt", |r| {
            !r.is_empty()
        })
        .await;
    let changes = m.apply(m.prepare(&with(&fixed.url())).unwrap()).unwrap();
    assert_eq!(changes.changed, names(&["r"]));
    // Well inside the old backoff, the fixed URL has the open.
    fixed.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(
        seen(&fixed),
        [row("open", "r1", "p1", "https://rb.example/r1")]
    );
    assert_eq!(m.shutdown(Duration::from_secs(5)).await.pending, 0);
}
