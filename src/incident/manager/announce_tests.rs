//! A receiver added or renamed while an incident is open hears of it at
//! once, by a reload or at a restart with the new configuration: an
//! `alertmanager` receiver re-pushes only what it heard of, so a renamed
//! one left every open incident to expire in Alertmanager.

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};

use crate::incident::{IncidentManager, ManagerOptions};

fn config(receiver: &str) -> Config {
    let text = format!(
        r#"
[[rules]]
name = "a"
group_by = ["product"]
window = "10m"
indicator = {{ kind = "count" }}
thresholds = {{ warning = 5 }}

[[incidents.routes]]
name = "product"
group_by = ["product"]
receivers = ["{receiver}"]
group_window = "0s"

[[receivers]]
name = "{receiver}"
kind = "generic"
url = "http://127.0.0.1:1/"
acknowledge = true
"#
    );
    Config::from_toml_str(&text, &std::collections::HashMap::new()).expect("config")
}

const S: i64 = 1_800_000_000_000;

fn firing(product: &str) -> Transition {
    let group: Labels = [("product".to_string(), product.to_string())]
        .into_iter()
        .collect();
    Transition {
        rule: "a".to_string(),
        dedup_key: Transition::make_dedup_key("a", &group, S),
        group,
        state: State::Firing,
        severity: Severity::Warning,
        at: S,
        value: Some(6.0),
        threshold: 5.0,
        clear: 3.0,
        started_at: S,
        window_ms: 600_000,
        sample_event_ids: vec!["e1".to_string()],
        hints: Vec::new(),
    }
}

/// (receiver, incident, seq, action) of every row, in order.
fn rows(dir: &std::path::Path) -> Vec<(String, String, i64, String)> {
    let conn = rusqlite::Connection::open(dir.join("outbox.sqlite")).expect("outbox");
    let mut st = conn
        .prepare("SELECT receiver, incident, seq, action FROM notifications ORDER BY id")
        .expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_receiver_added_or_renamed_hears_the_open_incidents_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let open = |cfg: &Config| {
        IncidentManager::open(
            cfg,
            &prometheus::Registry::new(),
            dir.path(),
            ManagerOptions::default(),
        )
        .expect("manager")
    };
    let m = open(&config("am"));
    m.submit(&[firing("p"), firing("q")], S).expect("submit");
    let key = |p: &str| format!("product/product={p}/{S}");
    let opened = |rec: &str| {
        let mut v: Vec<(String, String, i64, String)> = ["p", "q"]
            .iter()
            .map(|p| (rec.to_string(), key(p), 1, "open".to_string()))
            .collect();
        v.sort();
        v
    };
    let of = |rec: &str| {
        let mut v: Vec<_> = rows(dir.path())
            .into_iter()
            .filter(|r| r.0 == rec)
            .collect();
        v.sort();
        v
    };
    assert_eq!(of("am"), opened("am"));
    // A responder acknowledges p's incident: `am` takes acknowledgements.
    m.outbox()
        .record_feedback(&key("p"), None, "on it", "ana", S)
        .expect("ack");
    m.apply_acks().expect("acks");
    let acked = |rec: &str| {
        let mut v = opened(rec);
        v.push((rec.to_string(), key("p"), 2, "acknowledge".to_string()));
        v.sort();
        v
    };
    assert_eq!(of("am"), acked("am"));

    // A reload renames the receiver: the new name hears both incidents now,
    // and that p's was acknowledged (after its open).
    let prepared = m.prepare(&config("am_main")).expect("prepare");
    let changes = m.apply(prepared).expect("apply");
    assert_eq!(
        (changes.added, changes.removed),
        (vec!["am_main".to_string()], vec!["am".to_string()])
    );
    assert_eq!(of("am_main"), acked("am_main"));
    assert_eq!(of("am"), acked("am"), "nothing more for the old name");
    let order: Vec<String> = rows(dir.path())
        .into_iter()
        .filter(|r| r.0 == "am_main" && r.1 == key("p"))
        .map(|r| r.3)
        .collect();
    assert_eq!(order, ["open", "acknowledge"]);
    // Another reload of the same file announces nothing twice.
    let prepared = m.prepare(&config("am_main")).expect("prepare");
    m.apply(prepared).expect("apply");
    assert_eq!(of("am_main"), acked("am_main"));
    drop(m);

    // A restart with the receiver renamed again: it hears them at the start.
    let m = open(&config("pager"));
    assert_eq!(of("pager"), acked("pager"));
    drop(m);
    let m = open(&config("pager"));
    assert_eq!(
        of("pager"),
        acked("pager"),
        "a plain restart announces nothing"
    );
    drop(m);
}
