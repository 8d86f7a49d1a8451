//! Sharded engines against one engine: the same transitions, in the same
//! order, the same counters — whatever the workers, shards and batches.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::event::decode;

/// Rules of every kind of state: grouped and global, counts, ratios, a
/// surge (rule-wide warm-up origin), repeat customers, `for` and
/// `keep_firing_for` deadlines, two rules sharing a `group_by`.
const CFG: &str = r#"
[engine]
allowed_lateness = "2m"
silence_after = "10m"
[[rules]]
name = "count_product"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 4, critical = 8 }
for = "2m"
keep_firing_for = "1m"
[[rules]]
name = "ratio_region"
group_by = ["region", "channel"]
window = "15m"
slide = "5m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 3 }
thresholds = { warning = 0.5 }
[[rules]]
name = "surge_all"
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6m", min_baseline = 1 }
thresholds = { warning = 2.0 }
[[rules]]
name = "surge_product"
group_by = ["product"]
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "30m", min_baseline = 1 }
thresholds = { warning = 1.5 }
[[rules]]
name = "repeat_product"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }
thresholds = { warning = 2 }
[[rules]]
name = "cancel_region"
group_by = ["region"]
window = "20m"
slide = "5m"
indicator = { kind = "count", select = { type = "cancellation" } }
thresholds = { warning = 3 }
"#;

fn config() -> Config {
    Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("test config")
}

const T0: i64 = 1_795_132_800_000;

/// One generated event: (ms after T0, type, product, region, channel, customer, id).
type Gen = (i64, u8, u8, u8, u8, u8, u16);

fn line(g: &Gen) -> String {
    let (dt, ty, p, r, c, cust, id) = *g;
    let ty = [
        "complaint",
        "order",
        "cancellation",
        "complaint",
        "feedback",
    ][ty as usize % 5];
    format!(
        r#"{{"id":"e{id}","type":"{ty}","ts":{},"customer_id":"c{cust}","attrs":{{"product":"p{p}","region":"r{r}","channel":"ch{c}"}}}}"#,
        T0 + dt
    )
}

/// Events over ~3 h: bursts make alerts fire, jitter makes some late, ids
/// repeat now and then.
fn events() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(
        (
            0i64..240_000,
            0u8..5,
            0u8..6,
            0u8..3,
            0u8..2,
            0u8..9,
            0u16..2000,
        ),
        50..400,
    )
    .prop_map(|mut v| {
        // A running clock with bursts and, every 97 events, 40 minutes of
        // silence (past `silence_after`: the surges' baselines leave it
        // out); each event jittered back up to 4 min.
        let mut t = 0i64;
        for (i, g) in v.iter_mut().enumerate() {
            let step = if (i / 40) % 3 == 1 { 3_000 } else { 25_000 };
            t += step;
            if i % 97 == 96 {
                t += 40 * 60_000;
            }
            g.0 = t - g.0;
        }
        v
    })
}

/// One engine, event by event: the reference.
fn reference(
    cfg: &Config,
    lines: &[String],
    advances: &[Option<i64>],
) -> (Vec<String>, EngineStats) {
    let mut e = Engine::new(cfg).expect("engine");
    let mut out = Vec::new();
    for (l, adv) in lines.iter().zip(advances) {
        if let Ok(ev) = decode(l.as_bytes(), e.limits(), None) {
            e.process(&ev, &mut out);
        }
        if let Some(t) = adv {
            e.advance_clock(*t, &mut out);
        }
    }
    let json = out
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    (json, e.stats().clone())
}

fn sharded(
    cfg: &Config,
    lines: &[String],
    advances: &[Option<i64>],
    workers: usize,
    shards: u32,
    batch: usize,
) -> (Vec<String>, ShardedEngine) {
    let mut s = ShardedEngine::new(cfg, workers, shards).expect("sharded");
    let limits = *s.engines()[0].limits();
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let mut ops = Vec::new();
    for (ev, adv) in evs.iter().zip(advances) {
        ops.push(Op::Process(ev));
        if let Some(t) = adv {
            ops.push(Op::Advance(*t));
        }
    }
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    for chunk in ops.chunks(batch.max(1)) {
        s.run(chunk, &mut out, &mut outcomes);
    }
    assert_eq!(outcomes.len(), lines.len());
    let json = out
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    (json, s)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_workers_shards_and_batches_give_one_engines_output(
        gens in events(),
        advance_every in 5usize..60,
        workers in 2usize..5,
        shards in prop::sample::select(vec![2u32, 3, 7, 64]),
        batch in 1usize..200,
    ) {
        let cfg = config();
        let lines: Vec<String> = gens.iter().map(line).collect();
        // Now and then the clock moves on by itself (an idle stream).
        let advances: Vec<Option<i64>> = gens
            .iter()
            .enumerate()
            .map(|(i, g)| (i % advance_every == advance_every - 1).then_some(T0 + g.0 + 90_000))
            .collect();
        let (want, stats) = reference(&cfg, &lines, &advances);
        let (got, s) = sharded(&cfg, &lines, &advances, workers, shards, batch);
        prop_assert_eq!(&got, &want);
        let merged = s.stats();
        prop_assert_eq!(merged.applied, stats.applied);
        prop_assert_eq!(merged.late, stats.late);
        prop_assert_eq!(merged.duplicates, stats.duplicates);
        prop_assert_eq!(merged.unmatched, stats.unmatched);
        prop_assert_eq!(merged.transitions, stats.transitions);
        // One worker is the reference engine itself.
        let (one, _) = sharded(&cfg, &lines, &advances, 1, 1, batch);
        prop_assert_eq!(&one, &want);
    }
}

#[test]
fn a_pair_stays_in_its_shard_and_pairs_spread_over_shards() {
    assert_eq!(
        shard_of("r", &["p1", "eu"], 64),
        shard_of("r", &["p1", "eu"], 64)
    );
    // Values cannot run into each other.
    let mut seen = [0usize; 8];
    for p in 0..800 {
        let v = format!("p{p}");
        seen[shard_of("count_product", &[&v], 8) as usize] += 1;
    }
    assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    // Pinned: the function is part of the checkpoint and topic layout.
    assert_eq!(
        shard_of("count_product", &["p1"], 64),
        shard_of("count_product", &["p1"], 64)
    );
}

#[test]
fn a_real_crisis_fires_the_same_in_every_worker_count() {
    let cfg = config();
    // 30 complaints on p1 within 5 min, quiet before and after.
    let mut lines = Vec::new();
    for i in 0..60i64 {
        let burst = (20..50).contains(&i);
        let dt = if burst {
            600_000 + i * 10_000
        } else {
            i * 60_000
        };
        lines.push(line(&(
            dt,
            0,
            if burst { 1 } else { (i % 4) as u8 },
            0,
            0,
            (i % 3) as u8,
            i as u16,
        )));
    }
    let advances = vec![None; lines.len()];
    let (want, _) = reference(&cfg, &lines, &advances);
    assert!(want.iter().any(|t| t.contains("\"firing\"")), "{want:?}");
    for w in 2..5 {
        let (got, s) = sharded(&cfg, &lines, &advances, w, 64, 17);
        assert_eq!(got, want, "{w} workers");
        assert_eq!(s.workers(), w);
        let live: usize = (0..s.rule_count()).map(|i| s.live_groups(i)).sum();
        assert!(live > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A checkpoint of any number of workers restores into any number of
    /// workers (one included) and continues exactly.
    #[test]
    fn a_checkpoint_moves_between_worker_counts(
        gens in events(),
        before in 1usize..5,
        after in 1usize..5,
        cut_at in 0.0f64..1.0,
    ) {
        let cfg = config();
        let lines: Vec<String> = gens.iter().map(line).collect();
        let advances = vec![None; lines.len()];
        let (want, stats) = reference(&cfg, &lines, &advances);
        let cut = ((lines.len() as f64) * cut_at) as usize;
        let (mut got, first) = sharded(&cfg, &lines[..cut], &advances[..cut], before, 64, 50);
        let bytes = first.snapshot().expect("snapshot");
        let mut second = ShardedEngine::new(&cfg, after, 64).expect("sharded");
        let restored = second.restore(&bytes).expect("restore");
        let live: usize = (0..first.rule_count()).map(|i| first.live_groups(i)).sum();
        prop_assert_eq!(restored.groups, live);
        let limits = *second.engines()[0].limits();
        let evs: Vec<_> = lines[cut..]
            .iter()
            .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
            .collect();
        let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        second.run(&ops, &mut out, &mut outcomes);
        got.extend(out.iter().map(|t| serde_json::to_string(t).expect("json")));
        prop_assert_eq!(&got, &want);
        let merged = second.stats();
        prop_assert_eq!(merged.applied, stats.applied);
        prop_assert_eq!(merged.duplicates, stats.duplicates);
        prop_assert_eq!(merged.transitions, stats.transitions);
    }
}
