//! First-response times (`response_time` rules) through the whole engine:
//! any order of complaints, first, repeated, early and unknown responses
//! gives, per slice, the quantile a naive model computes from the
//! complaints' first responses; a restart from a snapshot anywhere continues
//! exactly; the times leave with the window; a slice whose responses slow
//! down pages and resolves when its answers are fast again.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::alert::{State, Transition};
use crate::config::Config;
use crate::engine::Engine;
use crate::replay::OrderedFeed;

const T0: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;
const SLICES: [&str; 3] = ["a", "b", "c"];

fn cfg(window: &str, quantile: f64) -> Config {
    let text = format!(
        r#"
[[rules]]
name = "first_response"
group_by = ["product"]
window = "{window}"
slide = "10m"
indicator = {{ kind = "response_time", select = {{ type = "complaint" }}, quantile = {quantile:?} }}
thresholds = {{ warning = 3600 }}
"#
    );
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap()
}

/// One input event: a complaint (id, slice, ts) or a response (id, the
/// complaint id it names, ts).
#[derive(Debug, Clone)]
enum Ev {
    Complaint(String, &'static str, i64),
    Response(String, String, i64),
}

impl Ev {
    fn line(&self) -> String {
        match self {
            Ev::Complaint(id, p, ts) => format!(
                r#"{{"id":"{id}","type":"complaint","ts":{ts},"attrs":{{"product":"{p}"}}}}"#
            ),
            Ev::Response(id, of, ts) => {
                format!(r#"{{"id":"{id}","type":"response","ts":{ts},"ref_id":"{of}"}}"#)
            }
        }
    }
}

/// The naive model: per slice, the time from each complaint to the first
/// response (in input order) that names it, whenever either came; its
/// nearest-rank quantile `q` in seconds.
fn model(events: &[Ev], q: f64) -> HashMap<&'static str, Option<f64>> {
    let mut complaints: HashMap<&str, (&'static str, i64)> = HashMap::new();
    let mut responses: Vec<(&str, i64)> = Vec::new();
    for e in events {
        match e {
            Ev::Complaint(id, p, ts) => {
                complaints.insert(id, (p, *ts));
            }
            Ev::Response(_, of, ts) => responses.push((of, *ts)),
        }
    }
    let mut first: HashMap<&str, i64> = HashMap::new();
    for (of, ts) in responses {
        first.entry(of).or_insert(ts);
    }
    let mut times: HashMap<&'static str, Vec<i64>> = HashMap::new();
    for (id, (p, ts)) in &complaints {
        let list = times.entry(p).or_default();
        if let Some(at) = first.get(id) {
            list.push((at - ts).max(0));
        }
    }
    times
        .into_iter()
        .map(|(p, mut list)| {
            list.sort_unstable();
            let n = list.len() as f64;
            let v = list
                .iter()
                .enumerate()
                .find(|(i, _)| (*i + 1) as f64 >= q * n)
                .map(|(_, ms)| *ms as f64 / 1000.0);
            (p, v)
        })
        .collect()
}

fn values(engine: &mut Engine) -> HashMap<String, Option<f64>> {
    engine
        .current_values(0)
        .into_iter()
        .map(|(labels, v)| (labels[0].1.clone(), v))
        .collect()
}

fn feed(engine: &mut Engine, events: &[Ev], out: &mut Vec<Transition>) {
    for e in events {
        engine
            .process_bytes(e.line().as_bytes(), None, out)
            .unwrap();
    }
}

/// Complaints (slice, minute) and responses (which complaint — past the
/// last: an unknown id — and minute), within two hours, in a random input
/// order, so that responses come before, after and again.
fn events() -> impl Strategy<Value = Vec<Ev>> {
    (
        prop::collection::vec((0..3usize, 0..120i64), 1..25),
        prop::collection::vec((0..30usize, 0..120i64), 0..40),
    )
        .prop_flat_map(|(cs, rs)| {
            let n = cs.len();
            let mut all: Vec<Ev> = cs
                .iter()
                .enumerate()
                .map(|(i, (p, m))| Ev::Complaint(format!("c{i}"), SLICES[*p], T0 + m * MIN + 7))
                .collect();
            all.extend(rs.iter().enumerate().map(|(j, (k, m))| {
                let of = if *k < n {
                    format!("c{k}")
                } else {
                    format!("nobody{k}")
                };
                Ev::Response(format!("r{j}"), of, T0 + m * MIN + 3)
            }));
            Just(all).prop_shuffle()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn first_response_quantiles_match_a_naive_model_in_any_order(
        events in events(),
        q100 in 1..=100u32,
        cut in any::<prop::sample::Index>(),
    ) {
        let q = f64::from(q100) / 100.0;
        let cfg = cfg("6h", q);
        let mut engine = Engine::new(&cfg).unwrap();
        let mut out = Vec::new();
        feed(&mut engine, &events, &mut out);
        let got = values(&mut engine);
        let want = model(&events, q);
        prop_assert_eq!(got.len(), want.len(), "{:?} vs {:?}", got, want);
        for (p, v) in &want {
            prop_assert_eq!(got.get(*p).copied().flatten(), *v, "slice {}", p);
        }
        // A restart from a snapshot anywhere continues exactly.
        let cut = cut.index(events.len() + 1);
        let mut first = Engine::new(&cfg).unwrap();
        let mut out2 = Vec::new();
        feed(&mut first, &events[..cut], &mut out2);
        let bytes = first.snapshot().unwrap();
        let mut second = Engine::new(&cfg).unwrap();
        second.restore(&bytes).unwrap();
        prop_assert_eq!(second.snapshot().unwrap(), bytes);
        feed(&mut second, &events[cut..], &mut out2);
        prop_assert_eq!(values(&mut second), got);
        prop_assert_eq!(&out2, &out);
        // The times leave with the window, and the groups with them.
        let end = T0 + 9 * 60 * MIN;
        engine.advance_clock(end, &mut out);
        prop_assert_eq!(engine.live_groups(0), 0);
        let held = engine.rules[0].backlog.as_ref().map_or(1, |b| b.times + b.index.len());
        prop_assert_eq!(held, 0);
    }
}

/// Eight hours of complaints in slices a and b, every 5 minutes, each
/// answered 20 minutes later — except b's complaints of minutes 120 to 175,
/// answered 90 minutes later. Sorted by time.
fn slow_hour() -> Vec<(i64, String)> {
    let mut ev = Vec::new();
    for k in (0..480).step_by(5) {
        for p in ["a", "b"] {
            let slow = p == "b" && (120..180).contains(&k);
            let ts = T0 + k * MIN + if p == "a" { 1_000 } else { 2_000 };
            let at = ts + if slow { 90 } else { 20 } * MIN;
            let c = Ev::Complaint(format!("c-{p}-{k}"), if p == "a" { "a" } else { "b" }, ts);
            let r = Ev::Response(format!("r-{p}-{k}"), format!("c-{p}-{k}"), at);
            ev.push((ts, c.line()));
            ev.push((at, r.line()));
        }
    }
    ev.sort();
    ev
}

#[test]
fn a_slice_whose_answers_slow_down_pages_and_resolves_when_they_are_fast_again() {
    let cfg = cfg("2h", 0.9);
    let lines = slow_hour();
    let mut engine = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    for (ts, l) in &lines {
        engine.process_bytes(l.as_bytes(), None, &mut out).unwrap();
        if *ts == T0 + 100 * MIN + 1_000 {
            // Before the slow hour: both slices answer in 20 minutes.
            let v = values(&mut engine);
            assert_eq!(v.get("a"), Some(&Some(1200.0)), "{v:?}");
            assert_eq!(v.get("b"), Some(&Some(1200.0)), "{v:?}");
        }
    }
    let states: Vec<(&str, State, i64, Option<f64>)> = out
        .iter()
        .map(|t| (t.group[0].1.as_str(), t.state, t.at, t.value))
        .collect();
    assert!(states.iter().all(|s| s.0 == "b"), "{states:?}");
    let firing: Vec<_> = states.iter().filter(|s| s.1 == State::Firing).collect();
    assert_eq!(firing.len(), 1, "{states:?}");
    // The second slow answer (minute 215) makes a tenth of the window's.
    assert_eq!(firing[0].3, Some(5400.0), "{states:?}");
    assert!(
        firing[0].2 >= T0 + 210 * MIN && firing[0].2 <= T0 + 230 * MIN,
        "{states:?}"
    );
    let resolved: Vec<_> = states.iter().filter(|s| s.1 == State::Resolved).collect();
    assert_eq!(resolved.len(), 1, "{states:?}");
    assert!(
        resolved[0].2 > T0 + 300 * MIN && resolved[0].2 < T0 + 400 * MIN,
        "{states:?}"
    );
    let s = engine.rule_stats(0);
    assert_eq!((s.responses, s.responses_first), (192, 192), "{s:?}");
    // The live path, and a restart from a snapshot, give the same.
    let whole: Vec<String> = out
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    for cut in [None, Some(1), Some(100), Some(250), Some(383)] {
        let mut engine = Engine::new(&cfg).unwrap();
        let mut feed = OrderedFeed::new(&mut engine);
        let mut got = Vec::new();
        for (i, (_, l)) in lines.iter().enumerate() {
            if Some(i) == cut {
                let bytes = engine.snapshot().unwrap();
                let mut fresh = Engine::new(&cfg).unwrap();
                fresh.set_sequenced(true);
                fresh.restore(&bytes).unwrap();
                engine = fresh;
            }
            feed.push(&mut engine, l.as_bytes(), None, &mut got)
                .unwrap();
        }
        feed.finish(&mut engine, &mut got);
        let got: Vec<String> = got
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        assert_eq!(got, whole, "cut at {cut:?}");
    }
}

#[test]
fn the_times_of_a_full_rule_are_counted_not_kept() {
    let text = r#"
[engine]
dedup_max_ids = 2
[[rules]]
name = "first_response"
group_by = ["product"]
window = "1h"
slide = "10m"
indicator = { kind = "response_time", select = { type = "complaint" }, quantile = 1.0 }
thresholds = { warning = 3600 }
"#;
    let cfg = Config::from_toml_str(text, &HashMap::<String, String>::new()).unwrap();
    let mut engine = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    let c = |k: i64, m: i64| Ev::Complaint(format!("c{k}"), "a", T0 + m * MIN);
    let r = |k: i64, m: i64| Ev::Response(format!("r{k}"), format!("c{k}"), T0 + m * MIN);
    // Two complaints answered in 39 minutes fill the rule's two times; their
    // complaints leave the book with the window, the times stay until the
    // answers leave it: a third complaint is booked, its answer finds no room.
    let events = [c(0, 1), c(1, 2), r(0, 40), r(1, 41), c(2, 75), r(2, 76)];
    feed(&mut engine, &events, &mut out);
    let s = engine.rule_stats(0).clone();
    assert_eq!((s.responses, s.responses_first), (3, 3), "{s:?}");
    assert_eq!(s.backlog_overflow, 1, "{s:?}");
    assert_eq!(values(&mut engine).get("a"), Some(&Some(2340.0)));
    // Once the two answers left the window, there is room again.
    feed(&mut engine, &[c(3, 110), r(3, 115)], &mut out);
    assert_eq!(values(&mut engine).get("a"), Some(&Some(300.0)));
}
