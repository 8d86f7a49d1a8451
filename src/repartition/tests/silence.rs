//! Silences of the whole stream (`engine.silence_after`) with scale-out: an
//! owner learns of the panes other owners' events filled from the split
//! stages' reports, and must leave out of its surges' baselines exactly the
//! silences one instance leaves out. Streams here: 20 minutes of complaints,
//! a silence of 25 minutes (longer than the test configuration's 10), then
//! traffic again. From a review of the change (the first and last tests
//! failed before the fixes that came with them).

use super::*;

const S: i64 = 1000;
const M: i64 = 60 * S;

fn complaint(id: &str, ms: i64) -> String {
    format!(
        r#"{{"id":"{id}","type":"complaint","ts":{},"customer_id":"c1","attrs":{{"product":"p0","region":"r0","channel":"ch0"}}}}"#,
        T0 + ms
    )
}

/// 40 complaints over 20 minutes, then from `resume` three every 30 s for
/// 15 minutes; `odd` follows the first 40 in arrival order.
fn stream(odd: &str, resume: i64) -> Vec<String> {
    let mut lines: Vec<String> = (0..40)
        .map(|k| complaint(&format!("a{k}"), k * 30 * S))
        .collect();
    lines.push(odd.to_string());
    let mut t = resume;
    let mut k = 0;
    while t < resume + 15 * M {
        for j in 0..3 {
            lines.push(complaint(&format!("b{k}_{j}"), t));
        }
        t += 30 * S;
        k += 1;
    }
    lines
}

/// One instance's transitions, and one owner's fed by one split stage.
fn both(cfg: &Config, lines: &[String]) -> (Vec<String>, Vec<String>) {
    let want = one_instance(cfg, lines);
    let gens: Vec<Gen> = lines
        .iter()
        .map(|_| (0, 0, 0, 0, 0, 0, 0, 0, false))
        .collect();
    let c = cluster(1, 1, cfg, &gens, lines, 1, 1, 1, 7, 1, &[0], 12345);
    let got: Vec<Transition> = c.out[0].iter().map(|k| k.transition.clone()).collect();
    (json(&want), json(&got))
}

fn surges(out: &[String]) -> usize {
    out.iter()
        .filter(|t| t.contains("\"rule\":\"surge"))
        .count()
}

#[test]
fn an_owner_leaves_out_the_silence_one_instance_leaves_out() {
    let (want, got) = both(
        &config(),
        &stream(&complaint("a40", 20 * M), 45 * M + 10 * S),
    );
    assert_eq!(got, want);
    // The silence is left out: the traffic after it does not surge.
    let cfg_off = Config::from_toml_str(
        &CFG.replace("silence_after = \"10m\"", "silence_after = \"0s\""),
        &HashMap::<String, String>::new(),
    )
    .expect("config");
    let (off, _) = both(
        &cfg_off,
        &stream(&complaint("a40", 20 * M), 45 * M + 10 * S),
    );
    assert!(surges(&off) > surges(&want), "{off:#?}\n{want:#?}");
}

/// An id sent again with another time, inside the silence: one instance
/// drops it as a duplicate, and the split stage (no dedup memory) reports
/// its pane. Both note the pane (one instance before its duplicate check),
/// so both break the silence alike; before, the owner alone did and paged.
#[test]
fn an_id_sent_again_inside_the_silence_counts_alike() {
    let text = CFG.replacen("[engine]\n", "[engine]\ndedup_horizon = \"1h\"\n", 1);
    let cfg = Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("config");
    let (want, got) = both(
        &cfg,
        &stream(&complaint("a39", 38 * M + 30 * S), 45 * M + 10 * S),
    );
    assert_eq!(got, want);
}

/// A restart after a reload changed `silence_after`: the ring, sized for
/// the new setting at the restart, takes over what the checkpoint's knew
/// (before, the sizes differed and every silence it knew became history:
/// the restarted engine paged where the uninterrupted one did not).
#[test]
fn a_restart_after_silence_after_changed_keeps_the_silences() {
    let a = config();
    let b = Config::from_toml_str(
        &CFG.replace("silence_after = \"10m\"", "silence_after = \"30m\""),
        &HashMap::<String, String>::new(),
    )
    .expect("config");
    let lines = stream(&complaint("a40", 20 * M), 60 * M + 10 * S);
    let limits = *Engine::new(&b).expect("engine").limits();
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).expect("valid"))
        .collect();
    let mut straight = Engine::new(&b).expect("engine");
    let mut want = Vec::new();
    for e in &evs {
        straight.process(e, &mut want);
    }
    for reload in [true, false] {
        let mut first = if reload {
            let mut e = Engine::new(&a).expect("engine");
            e.reconfigure(&b).expect("reload");
            e
        } else {
            // The checkpoint of an engine that ran with the other setting.
            Engine::new(&a).expect("engine")
        };
        let mut got = Vec::new();
        let cut = 42;
        for e in &evs[..cut] {
            first.process(e, &mut got);
        }
        let snap = first.snapshot().expect("snapshot");
        let mut second = Engine::new(&b).expect("engine");
        second.restore(&snap).expect("restore");
        for e in &evs[cut..] {
            second.process(e, &mut got);
        }
        assert_eq!(json(&got), json(&want), "reload {reload}");
    }
}
