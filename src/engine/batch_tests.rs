//! [`Engine::process_batch`] against [`Engine::process`] event by event: the
//! same transitions, outcomes, counters and state (snapshot bytes), whatever
//! the batch sizes — on streams whose slices come and go (group tables grow,
//! entries are freed and reused while events are looked up ahead), with
//! duplicates, late events, responses matched across groups, a group cap
//! and root-cause hints.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::{Engine, Outcome};
use crate::config::Config;
use crate::event::decode;

const CFG: &str = r#"
[engine]
max_groups_per_rule = 12
[[rules]]
name = "count_product_region"
group_by = ["product", "region"]
window = "5m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3, critical = 6 }
for = "1m"
explain = ["channel"]
[[rules]]
name = "ratio_product_region"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "cancellation" }, denominator = { type = "order" }, min_denominator = 2 }
thresholds = { warning = 0.5 }
keep_firing_for = "2m"
[[rules]]
name = "repeat_product"
group_by = ["product"]
window = "10m"
slide = "2m"
indicator = { kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }
thresholds = { warning = 2 }
[[rules]]
name = "surge_region"
group_by = ["region"]
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "10m", min_baseline = 1 }
thresholds = { warning = 2.0 }
[[rules]]
name = "mean_channel"
group_by = ["channel"]
window = "5m"
slide = "1m"
indicator = { kind = "mean_score", select = { type = "feedback" } }
condition = "below"
thresholds = { warning = 4.0 }
[[rules]]
name = "backlog_product"
group_by = ["product"]
window = "1h"
slide = "5m"
indicator = { kind = "unanswered", select = { type = "complaint" }, sla = "10m" }
thresholds = { warning = 0.5 }
[[rules]]
name = "all_orders"
window = "5m"
slide = "1m"
indicator = { kind = "count", select = { type = "order" } }
thresholds = { warning = 1000 }
"#;

const T0: i64 = 1_795_132_800_000;

/// (ms step, type, product, region, channel, customer, id, score).
type Gen = (i64, u8, u16, u8, u8, u8, u16, u8);

fn line(g: &Gen, ts: i64) -> String {
    let (_, ty, p, r, c, cust, id, score) = *g;
    match ty % 6 {
        5 => {
            // A response to some earlier complaint (maybe none).
            format!(
                r#"{{"id":"x{id}","type":"response","ts":{ts},"ref_id":"e{}"}}"#,
                id / 2
            )
        }
        k => {
            let ty = [
                "complaint",
                "order",
                "cancellation",
                "complaint",
                "feedback",
            ][k as usize];
            format!(
                r#"{{"id":"e{id}","type":"{ty}","ts":{ts},"customer_id":"c{cust}","score":{},"attrs":{{"product":"p{p}","region":"r{r}","channel":"ch{c}"}}}}"#,
                score % 11
            )
        }
    }
}

/// A running clock with bursts and pauses; each event jittered back up to
/// 12 min (some late); slices from a wide pool come and go.
fn events() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (
            0i64..720_000,
            0u8..6,
            0u16..60,
            0u8..4,
            0u8..3,
            0u8..9,
            0u16..600,
            0u8..11,
        ),
        50..500,
    )
    .prop_map(|v| {
        let mut t = 0i64;
        v.iter()
            .enumerate()
            .map(|(i, g)| {
                t += match (i / 50) % 4 {
                    1 => 2_000,
                    3 => 400_000,
                    _ => 20_000,
                };
                line(g, T0 + t - g.0)
            })
            .collect()
    })
}

fn config() -> Config {
    Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("test config")
}

/// Transitions (JSON), outcomes, counters and snapshot of one engine.
type Run = (Vec<String>, Vec<Outcome>, String, Vec<u8>);

fn finish(e: &Engine, out: &[crate::alert::Transition], outcomes: Vec<Outcome>) -> Run {
    let json = out
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    let stats = format!(
        "{:?} {:?}",
        e.stats(),
        (0..e.rule_count())
            .map(|i| e.rule_stats(i))
            .collect::<Vec<_>>()
    );
    (json, outcomes, stats, e.snapshot().expect("snapshot"))
}

fn one_by_one(cfg: &Config, lines: &[String]) -> Run {
    let mut e = Engine::new(cfg).expect("engine");
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    for l in lines {
        if let Ok(ev) = decode(l.as_bytes(), e.limits(), None) {
            outcomes.push(e.process(&ev, &mut out));
        }
    }
    finish(&e, &out, outcomes)
}

fn batched(cfg: &Config, lines: &[String], batch: usize) -> Run {
    batched_engine(cfg, lines, batch).0
}

fn batched_engine(cfg: &Config, lines: &[String], batch: usize) -> (Run, Engine) {
    let mut e = Engine::new(cfg).expect("engine");
    let limits = *e.limits();
    let evs: Vec<_> = lines
        .iter()
        .filter_map(|l| decode(l.as_bytes(), &limits, None).ok())
        .collect();
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    for chunk in evs.chunks(batch.max(1)) {
        let mut seen = 0;
        e.process_batch(chunk, &mut out, |i, o, _| {
            assert_eq!(i, seen, "outcomes come in order");
            seen += 1;
            outcomes.push(o);
        });
        assert_eq!(seen, chunk.len());
    }
    (finish(&e, &out, outcomes), e)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_gives_what_one_event_at_a_time_gives(lines in events(), batch in 1usize..120) {
        let cfg = config();
        let want = one_by_one(&cfg, &lines);
        let got = batched(&cfg, &lines, batch);
        prop_assert_eq!(&got.0, &want.0);
        prop_assert_eq!(&got.1, &want.1);
        prop_assert_eq!(&got.2, &want.2);
        prop_assert!(got.3 == want.3, "snapshots differ");
    }
}

/// The stream above is not trivial: alerts fire, groups are capped,
/// events come late and duplicated, responses answer complaints.
#[test]
fn the_stream_exercises_what_it_claims() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let cfg = config();
    let (mut fired, mut late, mut dup, mut overflow) = (0, 0, 0, 0);
    for _ in 0..16 {
        let lines = events().new_tree(&mut runner).expect("tree").current();
        let ((json, outcomes, _, _), e) = batched_engine(&cfg, &lines, 64);
        overflow += (0..e.rule_count())
            .map(|i| e.rule_stats(i).group_overflow)
            .sum::<u64>();
        fired += json.iter().filter(|t| t.contains("\"firing\"")).count();
        late += outcomes.iter().filter(|&&o| o == Outcome::Late).count();
        dup += outcomes
            .iter()
            .filter(|&&o| o == Outcome::Duplicate)
            .count();
    }
    assert!(fired > 0, "no alert fired");
    assert!(late > 0, "no late event");
    assert!(dup > 0, "no duplicate");
    assert!(overflow > 0, "no group overflow");
}
