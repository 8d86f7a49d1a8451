//! Incremental checkpoints against the whole state: a random stream with
//! checkpoints at random cuts (so random sets of changed groups), applied to
//! a model of the store. At every cut the store equals what a full
//! checkpoint of an engine fed the same stream writes; restored at a random
//! cut into 1–3 workers, the output continues exactly as the uninterrupted
//! run's.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use crate::config::Config;
use crate::engine::{Delta, Op, ShardedEngine, Stored, DEDUP_CHUNK};
use crate::event::decode;

/// Every kind of per-group state: counts with `for` and `keep_firing_for`,
/// a ratio, surges (rule-wide warm-up origin), repeat customers, the
/// response-SLA backlog (one shard, rule-wide early responses), the
/// first-response time and root-cause counts (`explain`); a small dedup
/// memory, so ids are evicted early.
pub(super) const CFG: &str = r#"
[engine]
allowed_lateness = "2m"
dedup_max_ids = 150
silence_after = "3m"
[[rules]]
name = "count_product"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 4, critical = 8 }
for = "2m"
keep_firing_for = "1m"
explain = ["channel"]
[[rules]]
name = "ratio_region"
group_by = ["region", "channel"]
window = "15m"
slide = "5m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 3 }
thresholds = { warning = 0.5 }
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
name = "backlog"
group_by = ["product"]
window = "1h"
slide = "5m"
indicator = { kind = "unanswered", select = { type = "complaint" }, sla = "10m" }
thresholds = { warning = 0.5 }
[[rules]]
name = "first_response"
group_by = ["region"]
window = "1h"
slide = "5m"
indicator = { kind = "response_time", select = { type = "complaint" }, quantile = 0.9 }
thresholds = { warning = 600 }
"#;

/// The rules of `tests/kafka_state.rs` (a count and a ratio sharing one
/// `group_by`), thresholds scaled to the generated stream.
const CFG_SHARED: &str = r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3, critical = 5 }
clear = 1
for = "2m"
keep_firing_for = "1m"
[[rules]]
name = "complaint_rate"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 2 }
thresholds = { warning = 0.6 }
clear = 0.3
"#;

const T0: i64 = 1_795_132_800_000;

/// (ms after T0, type, product, region, channel, customer, id, answers)
type Gen = (i64, u8, u8, u8, u8, u8, u16, u16);

pub(super) fn line(g: &Gen) -> String {
    let (dt, ty, p, r, c, cust, id, of) = *g;
    if ty == 5 {
        return format!(
            r#"{{"id":"r{id}","type":"response","ts":{},"ref_id":"e{of}"}}"#,
            T0 + dt
        );
    }
    let ty = [
        "complaint",
        "order",
        "cancellation",
        "complaint",
        "complaint",
    ][ty as usize];
    format!(
        r#"{{"id":"e{id}","type":"{ty}","ts":{},"customer_id":"c{cust}","attrs":{{"product":"p{p}","region":"r{r}","channel":"ch{c}"}}}}"#,
        T0 + dt
    )
}

pub(super) fn events() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(
        (
            0i64..240_000,
            0u8..6,
            0u8..12,
            0u8..3,
            0u8..2,
            0u8..9,
            0u16..600,
            0u16..600,
        ),
        50..350,
    )
    .prop_map(|mut v| {
        // A running clock with bursts and quiet spells (groups forgotten;
        // past `silence_after`, left out of the surge's baseline, so the
        // checkpoints carry the pane occupancy); each event jittered back
        // up to 4 min.
        let mut t = 0i64;
        for (i, g) in v.iter_mut().enumerate() {
            let step = match (i / 40) % 4 {
                1 => 3_000,
                3 => 200_000,
                _ => 25_000,
            };
            t += step;
            g.0 = t - g.0;
        }
        v
    })
}

/// The store, as `crate::state` keeps it.
#[derive(Default, Clone)]
pub(super) struct Model {
    pub(super) meta: Vec<u8>,
    pub(super) rows: BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>,
    dedup: BTreeMap<u64, (u64, Vec<u8>)>,
}

impl Model {
    pub(super) fn apply(&mut self, d: &Delta) {
        if d.full {
            self.rows.clear();
            self.dedup.clear();
        }
        for (r, _, key) in &d.removed {
            self.rows
                .remove(&(d.rule_ids[*r as usize].to_vec(), key.clone()));
        }
        for u in &d.upserts {
            self.rows.insert(
                (d.rule_ids[u.rule as usize].to_vec(), u.key.clone()),
                u.data.clone(),
            );
        }
        self.dedup
            .retain(|c, _| (c + 1) * DEDUP_CHUNK > d.dedup_front);
        for c in &d.dedup {
            self.dedup.insert(c.chunk, (c.first, c.data.clone()));
        }
        self.meta = d.meta.clone();
    }

    pub(super) fn stored(&self) -> Stored {
        let mut rule_ids: Vec<Vec<u8>> = self.rows.keys().map(|(id, _)| id.clone()).collect();
        rule_ids.dedup();
        Stored {
            meta: self.meta.clone(),
            groups: self
                .rows
                .iter()
                .map(|((id, _), data)| {
                    let i = rule_ids.iter().position(|r| r == id).unwrap_or(0);
                    (i as u16, data.clone())
                })
                .collect(),
            rule_ids,
            dedup: self.dedup.values().cloned().collect(),
        }
    }

    /// The dedup ids from `front` on, as (seq, bytes).
    fn dedup_ids(&self, front: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for (first, data) in self.dedup.values() {
            for (i, e) in data.chunks(16).enumerate() {
                let seq = first + i as u64;
                if seq >= front {
                    out.push((seq, e.to_vec()));
                }
            }
        }
        out
    }
}

pub(super) fn to_json(out: &[crate::alert::Transition]) -> Vec<String> {
    out.iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn incremental_checkpoints_equal_full_ones_and_restore_exactly(
        gens in events(),
        cuts in prop::collection::btree_set(0usize..350, 1..12),
        restore_at in 0usize..12,
        workers in 1usize..4,
        batch in 1usize..80,
    ) {
        let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("config");
        let lines: Vec<String> = gens.iter().map(line).collect();
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= lines.len()).collect();
        prop_assume!(!cuts.is_empty());
        let restore_cut = cuts[restore_at % cuts.len()];
        // Incremental checkpoints (a) beside full ones (b) of the same stream.
        let mut a = ShardedEngine::new(&cfg, 1, 64).expect("engine");
        let mut b = ShardedEngine::new(&cfg, 2, 64).expect("engine");
        let limits = *a.limits();
        let evs: Vec<_> = lines
            .iter()
            .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
            .collect();
        let (mut model, mut whole) = (Model::default(), Model::default());
        let (mut out, mut out_b, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
        let mut at_restore: Option<(Stored, usize)> = None;
        let mut done = 0usize;
        for &cut in &cuts {
            let ops: Vec<Op> = evs[done..cut].iter().map(Op::Process).collect();
            for chunk in ops.chunks(batch) {
                a.run(chunk, &mut out, &mut outcomes);
                b.run(chunk, &mut out_b, &mut outcomes);
            }
            done = cut;
            let d = a.checkpoint_delta(false).expect("delta");
            model.apply(&d);
            let full = b.checkpoint_delta(true).expect("full");
            prop_assert!(full.full);
            whole.apply(&full);
            prop_assert_eq!(&model.meta, &whole.meta, "record at cut {}", cut);
            prop_assert!(model.rows == whole.rows, "rows at cut {}", cut);
            prop_assert_eq!(model.dedup_ids(d.dedup_front), whole.dedup_ids(d.dedup_front));
            prop_assert_eq!(d.groups, whole.rows.len());
            if cut == restore_cut {
                at_restore = Some((model.stored(), out.len()));
            }
        }
        let ops: Vec<Op> = evs[done..].iter().map(Op::Process).collect();
        for chunk in ops.chunks(batch) {
            a.run(chunk, &mut out, &mut outcomes);
        }
        prop_assert_eq!(to_json(&out[..out_b.len()]), to_json(&out_b));
        let want = to_json(&out);
        // Restored at the chosen cut into `workers` workers, it continues exactly.
        let (stored, emitted) = at_restore.expect("restore cut");
        let mut r = ShardedEngine::new(&cfg, workers, 64).expect("engine");
        r.restore_stored(&stored).expect("restore");
        let mut got = out[..emitted].to_vec();
        let ops: Vec<Op> = evs[restore_cut..].iter().map(Op::Process).collect();
        for chunk in ops.chunks(batch) {
            r.run(chunk, &mut got, &mut outcomes);
        }
        prop_assert_eq!(to_json(&got), want);
        // And its own next checkpoint is incremental and as full as the first's.
        let next = r.checkpoint_delta(false).expect("delta");
        prop_assert!(!next.full);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// As the live service runs it: events in time order with clock moves
    /// between them (watermarks, ticks), checkpoints written by any number
    /// of workers, a crash at a checkpoint, a restore into another worker
    /// count that goes on checkpointing into the same store, a second crash
    /// and restore: the transitions are the uninterrupted run's.
    #[test]
    fn crashes_and_restores_across_worker_counts_with_clock_moves(
        gens in events(),
        cuts in prop::collection::btree_set(1usize..350, 2..14),
        workers in prop::collection::vec(1usize..4, 3),
        moves in prop::collection::vec(0usize..350, 0..60),
        crash_at in (0usize..14, 0usize..14),
        batch in 1usize..80,
        redo in 0usize..12,
        shared in any::<bool>(),
    ) {
        let text = if shared { CFG_SHARED } else { CFG };
        let cfg = Config::from_toml_str(text, &HashMap::<String, String>::new()).expect("config");
        let mut lines: Vec<(i64, String)> = gens.iter().map(|g| (g.0, line(g))).collect();
        lines.sort_by_key(|(t, _)| *t);
        let limits = *ShardedEngine::new(&cfg, 1, 64).expect("engine").limits();
        let evs: Vec<_> = lines
            .iter()
            .map(|(_, l)| decode(l.as_bytes(), &limits, None).expect("valid"))
            .collect();
        // Ops: the events, with a clock move to just before the next event
        // at the chosen places.
        let mut ops: Vec<Op> = Vec::new();
        for (i, ev) in evs.iter().enumerate() {
            if moves.contains(&i) && i > 0 && ev.ts > evs[i - 1].ts {
                ops.push(Op::Advance(ev.ts - 1));
            }
            ops.push(Op::Process(ev));
        }
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= ops.len()).collect();
        prop_assume!(cuts.len() >= 2);
        let (c1, c2) = {
            let a = crash_at.0 % cuts.len();
            let b = crash_at.1 % cuts.len();
            (cuts[a.min(b)], cuts[a.max(b)])
        };
        let new_engine = |w: usize| {
            let mut e = ShardedEngine::new(&cfg, w, 64).expect("engine");
            e.set_sequenced(true);
            e
        };
        let run = |e: &mut ShardedEngine, ops: &[Op], out: &mut Vec<crate::alert::Transition>| {
            let mut outcomes = Vec::new();
            for chunk in ops.chunks(batch) {
                e.run(chunk, out, &mut outcomes);
            }
        };
        let mut redelivered: Vec<(usize, Vec<Op>)> = Vec::new();
        let mut u_done = 0usize;
        // Crashed at c1 (its store as the checkpoint at c1 left it), restored,
        // crashed at c2, restored.
        let mut store = Model::default();
        let mut got: Vec<crate::alert::Transition> = Vec::new();
        let mut e = new_engine(workers[0]);
        let mut done = 0usize;
        let mut emitted_at_checkpoint = 0usize;
        let mut life = 0usize;
        for &cut in &cuts {
            run(&mut e, &ops[done..cut], &mut got);
            done = cut;
            let d = e.checkpoint_delta(false).expect("delta");
            store.apply(&d);
            emitted_at_checkpoint = got.len();
            let crash = (life == 0 && cut == c1) || (life == 1 && cut == c2 && c2 > c1);
            if crash {
                life += 1;
                // What ran after the checkpoint is lost with the process.
                got.truncate(emitted_at_checkpoint);
                e = new_engine(workers[life]);
                e.restore_stored(&store.stored()).expect("restore");
                // Events applied before the checkpoint whose offsets were
                // still pending (transitions not yet stored) are read again:
                // the restored dedup memory drops every one of them.
                let again: Vec<Op> = ops[cut.saturating_sub(redo)..cut]
                    .iter()
                    .copied()
                    .filter(|o| matches!(o, Op::Process(_)))
                    .collect();
                let mut outcomes = Vec::new();
                let before = got.len();
                e.run(&again, &mut got, &mut outcomes);
                // Each one as the engine that never stopped takes the same
                // redelivery (a duplicate, unless its id left the dedup memory).
                let mut u = new_engine(1);
                let (mut u_out, mut u_outcomes) = (Vec::new(), Vec::new());
                for (at, again) in &redelivered {
                    run(&mut u, &ops[u_done..*at], &mut u_out);
                    u_done = *at;
                    u.run(again, &mut u_out, &mut u_outcomes);
                }
                run(&mut u, &ops[u_done..cut], &mut u_out);
                let mut again_outcomes = Vec::new();
                u.run(&again, &mut u_out, &mut again_outcomes);
                prop_assert_eq!(
                    &outcomes, &again_outcomes,
                    "read again after a restore into {} workers", workers[life]
                );
                let _ = before;
                redelivered.push((cut, again));
                u_done = 0;
            }
        }
        let _ = emitted_at_checkpoint;
        run(&mut e, &ops[done..], &mut got);
        // The uninterrupted run, given the same redeliveries at the same places.
        let mut u = new_engine(1);
        let (mut want, mut outcomes) = (Vec::new(), Vec::new());
        let mut at = 0usize;
        for (cut, again) in &redelivered {
            run(&mut u, &ops[at..*cut], &mut want);
            at = *cut;
            u.run(again, &mut want, &mut outcomes);
        }
        run(&mut u, &ops[at..], &mut want);
        let want = to_json(&want);
        prop_assert_eq!(to_json(&got), want, "workers {:?}, crashes at {} and {}", workers, c1, c2);
    }
}

#[test]
fn a_stored_record_that_does_not_match_its_rows_is_refused() {
    let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("config");
    let mut a = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let limits = *a.limits();
    let lines: Vec<String> = (0..40u16)
        .map(|i| line(&(i as i64 * 20_000, 0, (i % 5) as u8, 0, 0, 1, i, 0)))
        .collect();
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
    a.run(&ops, &mut Vec::new(), &mut Vec::new());
    let mut model = Model::default();
    model.apply(&a.checkpoint_delta(false).expect("delta"));
    let mut stored = model.stored();
    assert!(ShardedEngine::new(&cfg, 1, 64)
        .expect("engine")
        .restore_stored(&stored)
        .is_ok());
    // A row missing.
    stored.groups.pop();
    let e = ShardedEngine::new(&cfg, 1, 64)
        .expect("engine")
        .restore_stored(&stored)
        .unwrap_err();
    assert!(e.to_string().contains("groups stored"), "{e}");
    // A dedup id missing.
    let mut stored = model.stored();
    stored.dedup[0].1.truncate(16);
    assert!(ShardedEngine::new(&cfg, 1, 64)
        .expect("engine")
        .restore_stored(&stored)
        .is_err());
}

#[test]
fn after_a_reload_the_new_rules_are_checkpointed_too() {
    let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("config");
    // The reload keeps every rule but the first and adds one.
    let reloaded = CFG.replacen(
        "thresholds = { warning = 4, critical = 8 }",
        "thresholds = { warning = 5 }",
        1,
    ) + r#"
[[rules]]
name = "cancel_region"
group_by = ["region"]
window = "20m"
slide = "5m"
indicator = { kind = "count", select = { type = "cancellation" } }
thresholds = { warning = 3 }
"#;
    let cfg2 = Config::from_toml_str(&reloaded, &HashMap::<String, String>::new()).expect("config");
    let lines: Vec<String> = (0..300u16)
        .map(|i| {
            line(&(
                i as i64 * 15_000,
                (i % 3) as u8,
                (i % 7) as u8,
                (i % 3) as u8,
                0,
                1,
                i,
                0,
            ))
        })
        .collect();
    let mut a = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let mut b = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let limits = *a.limits();
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let (mut model, mut whole) = (Model::default(), Model::default());
    let mut sink = (Vec::new(), Vec::new());
    for (k, part) in evs.chunks(50).enumerate() {
        if k == 2 {
            a.reconfigure(&cfg2).expect("reload");
            b.reconfigure(&cfg2).expect("reload");
        }
        let ops: Vec<Op> = part.iter().map(Op::Process).collect();
        a.run(&ops, &mut sink.0, &mut sink.1);
        b.run(&ops, &mut sink.0, &mut sink.1);
        let d = a.checkpoint_delta(false).expect("delta");
        assert_eq!(d.full, k == 0 || k == 2, "checkpoint {k}");
        model.apply(&d);
        whole.apply(&b.checkpoint_delta(true).expect("full"));
        assert!(model.rows == whole.rows, "rows after checkpoint {k}");
        assert_eq!(model.meta, whole.meta);
    }
}

#[test]
fn the_shared_rules_fire_on_the_generated_stream() {
    // So that the crash property compares alerts, not silence.
    let gens = proptest::strategy::ValueTree::current(
        &events()
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .expect("tree"),
    );
    let cfg = Config::from_toml_str(CFG_SHARED, &HashMap::<String, String>::new()).expect("config");
    let mut lines: Vec<(i64, String)> = gens.iter().map(|g| (g.0, line(g))).collect();
    lines.sort_by_key(|(t, _)| *t);
    let mut e = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let limits = *e.limits();
    let evs: Vec<_> = lines
        .iter()
        .map(|(_, l)| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    e.run(&ops, &mut out, &mut outcomes);
    let json = to_json(&out);
    for rule in ["\"complaints\"", "\"complaint_rate\""] {
        assert!(
            json.iter()
                .any(|l| l.contains(rule) && l.contains("\"firing\"")),
            "{rule}: {json:?}"
        );
    }
}
