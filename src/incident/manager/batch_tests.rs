//! Transitions handed to the incident manager in batches (as `run` hands
//! each engine batch, and `replay` hands runs of up to 512) give exactly the
//! notifications of one call per transition: each transition's due work
//! (opens after `group_window`, updates gathered over `group_interval`)
//! runs at its own event time.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};

use super::{IncidentManager, ManagerOptions};

const CONFIG: &str = r#"
[[rules]]
name = "a"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5, critical = 10 }

[[rules]]
name = "b"
group_by = ["product"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5, critical = 10 }

[[incidents.routes]]
name = "product"
group_by = ["product"]
receivers = ["hook"]
group_window = "2m"
group_interval = "5m"

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
"#;

/// One step of a random stream: (rule, product, what, minutes later).
type Step = (usize, usize, u8, i64);

/// Valid transitions from `steps`: an alert fires, may escalate, resolves;
/// steps that do not fit the alert's state are skipped.
fn transitions(steps: &[Step]) -> Vec<Transition> {
    let mut at = 1_800_000_000_000i64;
    // (rule, product) → (started_at, severity) while firing.
    let mut firing: HashMap<(usize, usize), (i64, Severity)> = HashMap::new();
    let mut out = Vec::new();
    for &(rule, product, what, dt) in steps {
        at += dt * 60_000;
        let name = ["a", "b"][rule];
        let group: Labels = [("product".to_string(), format!("p{product}"))]
            .into_iter()
            .collect();
        let (state, severity, started) = match (firing.get(&(rule, product)).copied(), what % 3) {
            (None, _) => (State::Firing, Severity::Warning, at),
            (Some((s, Severity::Warning)), 1) => (State::Escalated, Severity::Critical, s),
            (Some((s, sev)), _) => (State::Resolved, sev, s),
        };
        match state {
            State::Resolved => {
                firing.remove(&(rule, product));
            }
            _ => {
                firing.insert((rule, product), (started, severity));
            }
        }
        out.push(Transition {
            rule: name.to_string(),
            dedup_key: Transition::make_dedup_key(name, &group, started),
            group,
            state,
            severity,
            at,
            value: Some(6.0 + dt as f64),
            threshold: 5.0,
            clear: 3.0,
            started_at: started,
            window_ms: 600_000,
            sample_event_ids: vec![format!("e{at}")],
            hints: Vec::new(),
        });
    }
    out
}

/// Every notification stored, in order: (incident, seq, action, body).
fn stored(dir: &std::path::Path) -> Vec<(String, i64, String, String)> {
    let conn = rusqlite::Connection::open(dir.join("outbox.sqlite")).expect("outbox");
    let mut st = conn
        .prepare("SELECT incident, seq, action, body FROM notifications ORDER BY incident, seq")
        .expect("query");
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    rows
}

/// Submits `ts` in runs of the given sizes (cycled), each with the run's
/// last event time as `now`, then flushes at `end`.
fn run(
    cfg: &Config,
    ts: &[Transition],
    sizes: &[usize],
    end: i64,
) -> Vec<(String, i64, String, String)> {
    let dir = tempfile::tempdir().expect("dir");
    let registry = prometheus::Registry::new();
    let m = IncidentManager::open(cfg, &registry, dir.path(), ManagerOptions::default())
        .expect("manager");
    let mut rest = ts;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(n.clamp(1, rest.len()));
        let now = batch.last().map_or(0, |t| t.at);
        m.submit(batch, now).expect("submit");
        rest = tail;
    }
    m.flush(end).expect("flush");
    drop(m);
    stored(dir.path())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn batches_give_the_notifications_of_one_transition_at_a_time(
        steps in prop::collection::vec((0usize..2, 0usize..3, 0u8..6, 0i64..4), 1..40),
        sizes in prop::collection::vec(1usize..8, 1..5),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let _g = rt.enter();
        let cfg = Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).expect("config");
        let ts = transitions(&steps);
        let end = ts.last().map_or(0, |t| t.at) + 3_600_000;
        let one = run(&cfg, &ts, &[1], end);
        let batched = run(&cfg, &ts, &sizes, end);
        prop_assert!(!one.is_empty());
        prop_assert_eq!(one, batched);
    }
}
