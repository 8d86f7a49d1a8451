//! Restarts with retuned rules: a checkpoint restored into an engine whose
//! rules changed only in how their alerts judge the values continues as the
//! uninterrupted engine reloaded at the same point; a checkpoint of the
//! previous record layout still restores.

use std::collections::HashMap;

use proptest::prelude::*;

use super::tests_incremental::{events, line, to_json, Model, CFG};
use crate::config::Config;
use crate::engine::{Op, ShardedEngine};
use crate::event::decode;

/// [`CFG`] with every rule's alert judged by other settings (thresholds,
/// `clear`, `for`, `keep_firing_for`) and, with `window`, one rule computing
/// something else (a longer window).
fn retuned_cfg(window: bool) -> String {
    let mut s = CFG
        .replacen(
            "thresholds = { warning = 4, critical = 8 }\nfor = \"2m\"\nkeep_firing_for = \"1m\"",
            "thresholds = { warning = 3, critical = 6 }\nclear = 1\nfor = \"1m\"\nkeep_firing_for = \"3m\"",
            1,
        )
        .replacen("thresholds = { warning = 0.5 }", "thresholds = { warning = 0.4 }", 1)
        .replacen("thresholds = { warning = 2 }", "thresholds = { warning = 3 }", 1)
        .replacen("thresholds = { warning = 1.5 }", "thresholds = { warning = 2 }", 1)
        .replacen("thresholds = { warning = 0.5 }", "thresholds = { warning = 0.3 }", 1)
        .replacen("thresholds = { warning = 600 }", "thresholds = { warning = 300 }", 1);
    if window {
        s = s.replacen(
            "name = \"repeat_product\"\ngroup_by = [\"product\"]\nwindow = \"10m\"",
            "name = \"repeat_product\"\ngroup_by = [\"product\"]\nwindow = \"20m\"",
            1,
        );
    }
    assert_ne!(s, CFG);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A restart with retuned rules is a reload at the checkpoint: restored
    /// into an engine of the retuned configuration, a checkpoint gives the
    /// same transitions (so the same alerts under the same keys) as the
    /// uninterrupted engine reloaded with that configuration at the same
    /// point; a rule that computes something else starts empty either way.
    #[test]
    fn a_restart_with_retuned_thresholds_continues_as_a_reload(
        gens in events(),
        cut in 0usize..350,
        workers in 1usize..4,
        window in any::<bool>(),
    ) {
        let env = HashMap::<String, String>::new();
        let cfg = Config::from_toml_str(CFG, &env).expect("config");
        let cfg2 = Config::from_toml_str(&retuned_cfg(window), &env).expect("config");
        let lines: Vec<String> = gens.iter().map(line).collect();
        let cut = cut.min(lines.len());
        let mut a = ShardedEngine::new(&cfg, 1, 64).expect("engine");
        let limits = *a.limits();
        let evs: Vec<_> = lines
            .iter()
            .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
            .collect();
        let (mut out, mut outcomes) = (Vec::new(), Vec::new());
        let ops: Vec<Op> = evs[..cut].iter().map(Op::Process).collect();
        a.run(&ops, &mut out, &mut outcomes);
        let mut model = Model::default();
        model.apply(&a.checkpoint_delta(false).expect("delta"));
        let emitted = out.len();
        // The whole-engine snapshot (a scaled-out owner's checkpoint).
        let whole = a.snapshot().expect("snapshot");
        let reload = a.reconfigure(&cfg2).expect("reload");
        let rest: Vec<Op> = evs[cut..].iter().map(Op::Process).collect();
        a.run(&rest, &mut out, &mut outcomes);

        let mut r = ShardedEngine::new(&cfg2, workers, 64).expect("engine");
        let summary = r.restore_stored(&model.stored()).expect("restore");
        let changed: Vec<String> = if window { vec!["repeat_product".into()] } else { vec![] };
        prop_assert_eq!(&summary.rules_dropped, &changed);
        prop_assert_eq!(&reload.changed, &changed);
        prop_assert_eq!(summary.rules_retuned.len(), 6 - changed.len());
        prop_assert_eq!(&summary.rules_retuned, &reload.retuned);
        let mut got = out[..emitted].to_vec();
        r.run(&rest, &mut got, &mut outcomes);
        prop_assert_eq!(to_json(&got), to_json(&out));
        // The same from the whole-engine snapshot.
        let mut w = ShardedEngine::new(&cfg2, workers, 64).expect("engine");
        let summary = w.restore(&whole).expect("restore");
        prop_assert_eq!(&summary.rules_dropped, &changed);
        prop_assert_eq!(&summary.rules_retuned, &reload.retuned);
        let mut got = out[..emitted].to_vec();
        w.run(&rest, &mut got, &mut outcomes);
        prop_assert_eq!(to_json(&got), to_json(&out));
        // Its next checkpoint is whole, under the new rules' ids only.
        let next = r.checkpoint_delta(false).expect("delta");
        prop_assert!(next.full);
        model.apply(&next);
        let ids: Vec<Vec<u8>> = next.rule_ids.iter().map(|i| i.to_vec()).collect();
        prop_assert!(model.rows.keys().all(|(id, _)| ids.contains(id)));
    }
}

/// A checkpoint written before the record kept what each rule computes
/// still restores: its unchanged rules by their ids, a retuned rule empty
/// (as every changed rule was then).
#[test]
fn a_record_of_the_previous_layout_still_restores() {
    let env = HashMap::<String, String>::new();
    let cfg = Config::from_toml_str(CFG, &env).expect("config");
    let mut a = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let limits = *a.limits();
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
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    a.run(&ops, &mut out, &mut outcomes);
    let mut model = Model::default();
    let d = a.checkpoint_delta(true).expect("delta");
    model.apply(&d);
    // The layout before pane occupancy: the same record without its
    // trailing field.
    let rules = d.rule_ids.len();
    let occupancy = super::occupancy_tail(a.first_engine());
    let mut before_occupancy = model.clone();
    before_occupancy.meta.truncate(model.meta.len() - occupancy);
    let s = ShardedEngine::new(&cfg, 1, 64)
        .expect("engine")
        .restore_stored(&before_occupancy.stored())
        .expect("restore");
    assert_eq!((s.rules_restored.len(), s.groups), (rules, d.groups));
    // The previous layout: the same record without the trailing ids
    // either (a length and 16 bytes per rule).
    model
        .meta
        .truncate(model.meta.len() - occupancy - 8 - 16 * rules);
    let stored = model.stored();
    let mut same = ShardedEngine::new(&cfg, 1, 64).expect("engine");
    let s = same.restore_stored(&stored).expect("restore");
    assert_eq!(s.rules_restored.len(), rules);
    assert!(s.rules_dropped.is_empty() && s.rules_retuned.is_empty());
    assert_eq!(s.groups, d.groups);
    let cfg2 = Config::from_toml_str(&retuned_cfg(false), &env).expect("config");
    let mut retuned = ShardedEngine::new(&cfg2, 1, 64).expect("engine");
    let s = retuned.restore_stored(&stored).expect("restore");
    assert_eq!(s.rules_dropped.len(), rules);
    assert!(s.rules_retuned.is_empty());
    // And with the ids kept, every rule is restored, retuned.
    let mut model = Model::default();
    model.apply(&d);
    let s = ShardedEngine::new(&cfg2, 1, 64)
        .expect("engine")
        .restore_stored(&model.stored())
        .expect("restore");
    assert_eq!(s.rules_retuned.len(), rules);
    assert!(s.rules_dropped.is_empty());
    assert_eq!(s.groups, d.groups);
    // The whole-engine snapshot likewise.
    let mut whole = a.snapshot().expect("snapshot");
    let s = ShardedEngine::new(&cfg2, 1, 64)
        .expect("engine")
        .restore(&whole)
        .expect("restore");
    assert_eq!(s.rules_retuned.len(), rules);
    whole.truncate(whole.len() - occupancy - 8 - 16 * rules);
    let s = ShardedEngine::new(&cfg, 1, 64)
        .expect("engine")
        .restore(&whole)
        .expect("restore");
    assert_eq!((s.rules_restored.len(), s.groups), (rules, d.groups));
    let s = ShardedEngine::new(&cfg2, 1, 64)
        .expect("engine")
        .restore(&whole)
        .expect("restore");
    assert_eq!((s.rules_dropped.len(), s.rules_retuned.len()), (rules, 0));
}
