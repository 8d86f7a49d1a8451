//! Incident keys are never taken twice, across restarts: a later incident
//! whose first alert started in the same millisecond as an earlier one's
//! (same route and labels) gets a suffix, and every receiver gets its
//! notifications. Before, the outbox's rows of the first (`incident`,
//! `seq`) swallowed the second's open and resolve.

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};

use crate::incident::{IncidentManager, ManagerOptions};

const CONFIG: &str = r#"
[[rules]]
name = "a"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[[rules]]
name = "b"
group_by = ["product"]
window = "20m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[[rules]]
name = "c"
group_by = ["product"]
window = "30m"
indicator = { kind = "count" }
thresholds = { warning = 5 }

[[incidents.routes]]
name = "product"
group_by = ["product"]
receivers = ["hook"]
group_window = "1m"

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
"#;

const S: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

/// Rule `rule`'s alert on product p, started at [`S`], in `state` at `at`.
fn t(rule: &str, state: State, at: i64) -> Transition {
    let group: Labels = [("product".to_string(), "p".to_string())]
        .into_iter()
        .collect();
    Transition {
        rule: rule.to_string(),
        dedup_key: Transition::make_dedup_key(rule, &group, S),
        group,
        state,
        severity: Severity::Warning,
        at,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: S,
        window_ms: 600_000,
        sample_event_ids: vec![format!("e{at}")],
        hints: Vec::new(),
    }
}

#[test]
fn a_key_closed_before_is_never_taken_again_even_after_a_restart() {
    let cfg = Config::from_toml_str(CONFIG, &std::collections::HashMap::new()).expect("config");
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let open = || {
        IncidentManager::open(
            &cfg,
            &prometheus::Registry::new(),
            dir.path(),
            ManagerOptions::default(),
        )
        .expect("manager")
    };
    let m = open();
    // a fires and resolves; b, whose breach began at the same event, fires after.
    for tr in [
        t("a", State::Firing, S),
        t("a", State::Resolved, S + 3 * MIN),
        t("b", State::Firing, S + 5 * MIN),
        t("b", State::Resolved, S + 10 * MIN),
    ] {
        m.submit(std::slice::from_ref(&tr), tr.at).expect("submit");
    }
    m.flush(S + 20 * MIN).expect("flush");
    drop(m);
    // A restart: c, started at the same event too, fires.
    let m = open();
    for tr in [
        t("c", State::Firing, S + 30 * MIN),
        t("c", State::Resolved, S + 35 * MIN),
    ] {
        m.submit(std::slice::from_ref(&tr), tr.at).expect("submit");
    }
    m.flush(S + 40 * MIN).expect("flush");
    drop(m);
    let conn = rusqlite::Connection::open(dir.path().join("outbox.sqlite")).expect("outbox");
    let mut st = conn
        .prepare("SELECT incident, seq, action FROM notifications ORDER BY id")
        .expect("query");
    let rows: Vec<(String, i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let base = format!("product/product=p/{S}");
    let want: Vec<(String, i64, String)> = ["", "-1", "-2"]
        .iter()
        .flat_map(|suffix| {
            [
                (format!("{base}{suffix}"), 1, "open".to_string()),
                (format!("{base}{suffix}"), 2, "resolve".to_string()),
            ]
        })
        .collect();
    assert_eq!(rows, want);
}

/// With several instances: the keys an incident partition's incidents
/// closed leave with it (`release`, into its checkpoint) and its next
/// owner takes them over (`adopt_closed`), so an incident made there after
/// the move gets the suffix one instance would have given it.
#[test]
fn closed_keys_move_with_their_incident_partition() {
    let cfg = Config::from_toml_str(CONFIG, &std::collections::HashMap::new()).expect("config");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let (da, db) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let open = |dir: &std::path::Path| {
        let opts = ManagerOptions {
            hand_off_queued: true,
            ..ManagerOptions::default()
        };
        IncidentManager::open(&cfg, &prometheus::Registry::new(), dir, opts).expect("manager")
    };
    let a = open(da.path());
    a.set_ownership(1, &[0]).expect("own");
    for tr in [
        t("a", State::Firing, S),
        t("a", State::Resolved, S + 3 * MIN),
    ] {
        a.submit(std::slice::from_ref(&tr), tr.at).expect("submit");
    }
    let base = format!("product/product=p/{S}");
    let mut leaving = a.release(1, &[]).expect("release");
    let closed = leaving.remove(&0).expect("partition 0").closed;
    assert_eq!(closed, vec![(base.clone(), S + 3 * MIN)]);
    assert!(a.closed_of(0).is_empty(), "forgotten where it left");
    let b = open(db.path());
    b.set_ownership(1, &[0]).expect("own");
    b.adopt_closed(0, closed);
    for tr in [
        t("b", State::Firing, S + 5 * MIN),
        t("b", State::Resolved, S + 10 * MIN),
    ] {
        b.submit(std::slice::from_ref(&tr), tr.at).expect("submit");
    }
    b.flush(S + 20 * MIN).expect("flush");
    let keys: Vec<String> = b.closed_of(0).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![base.clone(), format!("{base}-1")]);
}
