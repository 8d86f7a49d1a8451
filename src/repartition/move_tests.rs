//! A shard partition moves: its owner's checkpoint, restored on another
//! instance that reads the partition again from the checkpoint's offset,
//! continues exactly — what the original emitted before the checkpoint
//! followed by what the new owner emits equals an uninterrupted owner's
//! output, however far the original ran past the checkpoint before it died.

use proptest::prelude::*;

use super::tests::{config, json, line, stream, Gen, Rng};
use super::*;
use crate::alert::Transition;
use crate::engine::Engine;
use crate::event::decode;

const SHARDS: u32 = 16;

/// The internal topic for `gens` over `inputs` input partitions, split by
/// one splitter per input partition, reports after every bite.
fn internal_log(gens: &[Gen], inputs: u8, partitions: u32, seed: u64) -> Vec<Vec<Vec<u8>>> {
    let cfg = config();
    let limits = *Engine::new(&cfg).expect("engine").limits();
    let mut rng = Rng(seed | 1);
    let mut input: Vec<Vec<String>> = vec![Vec::new(); inputs as usize];
    for (i, g) in gens.iter().enumerate() {
        input[(g.7 % inputs) as usize].push(line(i, g));
    }
    let mut split: Vec<Splitter> = (0..inputs)
        .map(|_| Splitter::new(&cfg, SHARDS, partitions).expect("splitter"))
        .collect();
    let mut log: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions as usize];
    let mut pos = vec![0usize; inputs as usize];
    loop {
        let open: Vec<usize> = (0..inputs as usize)
            .filter(|&p| pos[p] < input[p].len())
            .collect();
        if open.is_empty() {
            return log;
        }
        let p = open[rng.next(open.len())];
        for _ in 0..1 + rng.next(6) {
            let Some(l) = input[p].get(pos[p]) else {
                break;
            };
            let ev = decode(l.as_bytes(), &limits, None).expect("valid");
            let source = Source {
                topic: 0,
                partition: p as i32,
            };
            if let Some((targets, env)) = split[p].split(source, pos[p] as i64, &ev, l.as_bytes()) {
                for t in targets {
                    log[t as usize].push(env.encode());
                }
            }
            pos[p] += 1;
        }
        for r in split[p].reports() {
            for l in log.iter_mut() {
                l.push(r.encode());
            }
        }
    }
}

fn owner_of(p: u32, partitions: u32, inputs: u8) -> Owner {
    let sources = (0..inputs)
        .map(|i| Source {
            topic: 0,
            partition: i32::from(i),
        })
        .collect();
    Owner::new(&config(), SHARDS, partitions, [p], sources).expect("owner")
}

/// Feeds `log[from..to]` of partition `p` in random bites.
fn feed(
    owner: &mut Owner,
    p: u32,
    log: &[Vec<u8>],
    from: usize,
    to: usize,
    rng: &mut Rng,
    out: &mut Vec<Keyed>,
) {
    let mut i = from;
    while i < to {
        let end = (i + 1 + rng.next(9)).min(to);
        for (o, m) in log.iter().enumerate().take(end).skip(i) {
            let env = Envelope::decode(m).expect("wire");
            let _ = owner.offer(p, o as i64, env, out);
        }
        owner.release(out, |_, _, _| {});
        i = end;
    }
}

fn plain(out: &[Keyed]) -> Vec<Transition> {
    out.iter().map(|k| k.transition.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_partition_restored_from_its_checkpoint_continues_exactly(
        gens in stream(),
        inputs in 1u8..4,
        partitions in 1u32..4,
        cut in 0.0f64..1.0,
        past in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let log = internal_log(&gens, inputs, partitions, seed);
        let mut rng = Rng(seed.rotate_left(7) | 1);
        for p in 0..partitions {
            let l = &log[p as usize];
            let n = l.len();
            // Uninterrupted.
            let mut whole = owner_of(p, partitions, inputs);
            let mut want = Vec::new();
            feed(&mut whole, p, l, 0, n, &mut rng, &mut want);
            whole.finish(&mut want, |_, _, _| {});
            // Checkpoint at `k`, die at `k2`, restore and read from `k`.
            let k = (n as f64 * cut) as usize;
            let k2 = k + ((n - k) as f64 * past) as usize;
            let mut first = owner_of(p, partitions, inputs);
            let mut before = Vec::new();
            feed(&mut first, p, l, 0, k, &mut rng, &mut before);
            let bytes = first.checkpoint().expect("checkpoint");
            let kept = before.len();
            feed(&mut first, p, l, k, k2, &mut rng, &mut before);
            prop_assert_eq!(json(&plain(&before)), json(&plain(&want[..before.len()])), "a prefix before the crash");
            let sources = (0..inputs).map(|i| Source { topic: 0, partition: i32::from(i) }).collect();
            let mut second = Owner::restore(&config(), SHARDS, partitions, [p], sources, &bytes)
                .expect("restore");
            prop_assert_eq!(second.checkpoint().expect("checkpoint"), bytes.clone(), "restored byte for byte");
            let mut after = Vec::new();
            feed(&mut second, p, l, k, n, &mut rng, &mut after);
            second.finish(&mut after, |_, _, _| {});
            let mut got = plain(&before[..kept]);
            got.extend(plain(&after));
            prop_assert_eq!(json(&got), json(&plain(&want)), "partition {} cut at {} of {}", p, k, n);
            for (a, b) in after.iter().zip(&want[kept..]) {
                prop_assert_eq!(&a.order, &b.order);
            }
        }
    }
}

#[test]
fn a_checkpoint_of_other_partitions_or_garbage_is_refused() {
    let owner = owner_of(0, 2, 1);
    let bytes = owner.checkpoint().expect("checkpoint");
    let src = vec![Source {
        topic: 0,
        partition: 0,
    }];
    let other = Owner::restore(&config(), SHARDS, 2, [1], src.clone(), &bytes);
    assert!(matches!(
        other,
        Err(OwnerCheckpointError::Partitions { .. })
    ));
    let garbage = Owner::restore(&config(), SHARDS, 2, [0], src, b"not a checkpoint");
    assert!(matches!(garbage, Err(OwnerCheckpointError::Decode(_))));
}

/// An instance dies after its split stage forwarded input offsets up to `k`
/// but committed only up to `j`: the instance that takes the input
/// partition over forwards `j..k` again (at least once). With event time
/// running ahead of the commit interval by more than `engine.dedup_horizon`
/// (a backlog, a catch-up, a fast replayed stream), the owner's id dedup
/// has forgotten those ids, and a rule whose window is longer than the
/// horizon counts the events twice: every complaint becomes a "repeat
/// customer". What the owner emits must not depend on the re-forward.
#[test]
fn events_forwarded_again_after_a_split_stage_crash_are_not_counted_twice() {
    const CFG: &str = r#"
[engine]
allowed_lateness = "1m"
dedup_horizon = "10m"

[[rules]]
name = "at_risk"
group_by = ["product"]
window = "2h"
slide = "5m"
indicator = { kind = "repeat_share", select = { type = "complaint" }, min_events = 2, min_customers = 20 }
thresholds = { warning = 0.15 }
"#;
    let cfg = Config::from_toml_str(CFG, &std::collections::HashMap::<String, String>::new())
        .expect("config");
    let limits = *Engine::new(&cfg).expect("engine").limits();
    let source = Source {
        topic: 0,
        partition: 0,
    };
    // One complaint a minute for 4 hours, every one from another customer:
    // nobody complains twice, the share stays 0.
    let t0: i64 = 1_795_000_000_000;
    let lines: Vec<String> = (0..240)
        .map(|i| {
            format!(
                r#"{{"id":"e{i}","type":"complaint","ts":{},"customer_id":"c{i}","attrs":{{"product":"p"}}}}"#,
                t0 + i as i64 * 60_000
            )
        })
        .collect();
    // The shard log of one internal partition: `order` lists the input
    // offsets in the order split stages forwarded them; a new splitter
    // (another instance) takes over at each `None`.
    let log_of = |order: &[Option<usize>]| -> Vec<Vec<u8>> {
        let mut split = Splitter::new(&cfg, SHARDS, 1).expect("splitter");
        let mut log = Vec::new();
        for o in order {
            let Some(i) = *o else {
                split = Splitter::new(&cfg, SHARDS, 1).expect("splitter");
                continue;
            };
            let ev = decode(lines[i].as_bytes(), &limits, None).expect("valid");
            if let Some((_, env)) = split.split(source, i as i64, &ev, lines[i].as_bytes()) {
                log.push(env.encode());
            }
            for r in split.reports() {
                log.push(r.encode());
            }
        }
        log
    };
    let run = |log: &[Vec<u8>]| -> Vec<Transition> {
        let mut owner = Owner::new(&cfg, SHARDS, 1, [0], vec![source]).expect("owner");
        let mut out = Vec::new();
        for (o, m) in log.iter().enumerate() {
            let env = Envelope::decode(m).expect("wire");
            let _ = owner.offer(0, o as i64, env, &mut out);
            owner.release(&mut out, |_, _, _| {});
        }
        owner.finish(&mut out, |_, _, _| {});
        plain(&out)
    };
    let once: Vec<Option<usize>> = (0..240).map(Some).collect();
    let want = run(&log_of(&once));
    assert!(want.is_empty(), "no repeat customer: {:?}", json(&want));
    // Forwarded up to offset 150, committed up to 100 (50 minutes of event
    // time: five dedup horizons), then the other instance from 100 on.
    let (j, k) = (100, 150);
    let mut again: Vec<Option<usize>> = (0..k).map(Some).collect();
    again.push(None);
    again.extend((j..240).map(Some));
    let got = run(&log_of(&again));
    assert_eq!(
        json(&got),
        json(&want),
        "the re-forwarded events were counted a second time"
    );
}

/// A checkpoint of the previous format (3, before the owners kept the
/// input offsets forwarded to them) still restores: without offsets, so
/// second copies fall back to the id dedup until the next checkpoint.
#[test]
fn a_checkpoint_of_the_previous_format_restores() {
    let cfg = config();
    let mut owner = owner_of(0, 1, 1);
    let mut split = Splitter::new(&cfg, SHARDS, 1).expect("splitter");
    let limits = *split.limits();
    let source = Source {
        topic: 0,
        partition: 0,
    };
    let mut out = Vec::new();
    for i in 0..5i64 {
        let l = format!(
            r#"{{"id":"e{i}","type":"complaint","ts":{},"attrs":{{"product":"p"}}}}"#,
            1_795_000_000_000 + i * 1000
        );
        let ev = decode(l.as_bytes(), &limits, None).expect("valid");
        let (_, env) = split.split(source, i, &ev, l.as_bytes()).expect("routed");
        owner.offer(0, i, env, &mut out);
    }
    let mut bytes = owner.checkpoint().expect("checkpoint");
    assert_eq!(bytes[0], 4);
    // Version 3: the same fields less the trailing offsets (one entry of
    // 4 + 6 + 8 bytes behind its length) and the dropped count.
    bytes.truncate(bytes.len() - 8 - 8 - 18);
    bytes[0] = 3;
    let restored = Owner::restore(&cfg, SHARDS, 1, [0], vec![source], &bytes).expect("restore");
    assert_eq!(restored.held(), owner.held());
    assert_eq!(restored.resent(), 0);
    assert_eq!(restored.checkpoint().expect("checkpoint")[0], 4);
}
