//! Scale-out across instances, measured in one process: what the
//! repartition protocol (`src/repartition/`) costs per input event and what
//! several instances could do, beside one instance in the same run.
//!
//! `cargo bench --bench repartition` generates demo history (seed 1,
//! `CRISISWATCH_BENCH_HOURS`, default 24 h, ~190,000 events) with the example
//! configuration and prints (best of 3 plain timed passes, one core):
//!
//! * `ONE`: one instance — decode, the event-time sequencer and the engine
//!   (`crisiswatch replay` from memory), events/s;
//! * `SPLIT`: the splitting side — decode, the shards an event feeds and the
//!   encoded messages — events/s; shard partitions per event; bytes written
//!   to the shard topic per input event (events to each of their partitions,
//!   plus one report per source and bite to every partition) beside the input
//!   line's bytes;
//! * `OWN P=…`: per shard partition, the owner's work on its log (decode the
//!   messages, sequence, engine of its shards), events/s of input covered;
//! * `MODEL`: for 1, 2 and 4 instances each splitting `1/k` of the input and
//!   owning `P/k` partitions, the busiest instance's time and the events/s the
//!   group would sustain on one core each (Kafka transport not included), and
//!   the factor over `ONE`.
//!
//! The outputs are identical to one instance's (property-tested in
//! `src/repartition/`); this measures the price.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::event::decode;
use crisiswatch::generator::{Generator, GeneratorSettings};
use crisiswatch::repartition::{Envelope, Owner, Source, Splitter};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-20T00:00:00Z.
const START: i64 = 1_795_132_800_000;
const SHARDS: u32 = 64;
/// Input partitions of the simulated topic.
const INPUTS: usize = 4;
/// Input events per bite (one report per source and bite).
const BITE: usize = 500;

fn history(hours: i64) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut gen = Generator::new(GeneratorSettings {
        seed: 1,
        start_ms: START,
        duration_ms: hours * 3_600_000,
        orders_per_minute: 300.0,
        crises: true,
        noise: false,
        shape: crisiswatch::generator::TrafficShape::default(),
    });
    let mut t = START;
    while !gen.is_done() {
        t += 3_600_000;
        gen.generate_until(t, &mut lines);
    }
    lines
}

fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/crisiswatch.toml");
    Config::load(&path, &HashMap::<String, String>::new()).expect("example config")
}

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn source(p: usize) -> Source {
    Source {
        topic: 0,
        partition: p as i32,
    }
}

/// Splits input partitions `parts` (line `i` is in partition `i mod INPUTS`)
/// into the shard topic's logs; returns the logs and the bytes written.
fn split(
    cfg: &Config,
    lines: &[Vec<u8>],
    parts: &[usize],
    partitions: u32,
) -> (Vec<Vec<Vec<u8>>>, usize, usize) {
    let limits = *Engine::new(cfg).expect("engine").limits();
    let mut s = Splitter::new(cfg, SHARDS, partitions).expect("splitter");
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions as usize];
    let (mut bytes, mut targets_total) = (0usize, 0usize);
    for &p in parts {
        let mine: Vec<&Vec<u8>> = lines.iter().skip(p).step_by(INPUTS).collect();
        let mut offset = 0i64;
        for bite in mine.chunks(BITE) {
            for l in bite {
                offset += 1;
                let Ok(ev) = decode(l, &limits, None) else {
                    continue;
                };
                if let Some((targets, env)) = s.split(source(p), offset, &ev, l) {
                    let m = env.encode();
                    bytes += m.len() * targets.len();
                    targets_total += targets.len();
                    for t in targets {
                        logs[t as usize].push(m.clone());
                    }
                }
            }
            for r in s.reports() {
                let m = r.encode();
                bytes += m.len() * logs.len();
                for log in logs.iter_mut() {
                    log.push(m.clone());
                }
            }
        }
    }
    (logs, bytes, targets_total)
}

/// The owner of partition `p` over its log.
fn own(cfg: &Config, log: &[Vec<u8>], p: u32, partitions: u32) -> usize {
    let sources = (0..INPUTS).map(source).collect();
    let mut owner = Owner::new(cfg, SHARDS, partitions, [p], sources).expect("owner");
    let mut out = Vec::new();
    for (i, m) in log.iter().enumerate() {
        if let Ok(env) = Envelope::decode(m) {
            let _ = owner.offer(p, i as i64, env, &mut out);
        }
        if i % BITE == BITE - 1 {
            owner.release(&mut out, |_, _, _| {});
        }
    }
    owner.finish(&mut out, |_, _, _| {});
    out.len()
}

fn main() {
    let hours: i64 = std::env::var("CRISISWATCH_BENCH_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let lines = history(hours);
    let cfg = config();
    let n = lines.len() as f64;
    let input_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    let mut transitions = 0;
    let t_one = best_of_3(|| {
        let mut e = Engine::new(&cfg).expect("engine");
        let mut joined = Vec::with_capacity(input_bytes);
        for l in &lines {
            joined.extend_from_slice(l);
            joined.push(b'\n');
        }
        let summary =
            crisiswatch::replay::replay(&mut e, &joined[..], &mut std::io::sink(), None, |_| {})
                .expect("replay");
        transitions = summary.stats.transitions;
    });
    println!(
        "\nONE events={} rules={} transitions={} one_instance={:.0} ev/s",
        lines.len(),
        cfg.rules.len(),
        transitions,
        n / t_one
    );

    for partitions in [2u32, 4, 8] {
        let all: Vec<usize> = (0..INPUTS).collect();
        let mut written = (Vec::new(), 0, 0);
        let t_split = best_of_3(|| written = split(&cfg, &lines, &all, partitions));
        let (logs, bytes, targets) = written;
        println!(
            "SPLIT P={partitions} split={:.0} ev/s partitions_per_event={:.2} shard_topic_bytes_per_event={:.0} input_bytes_per_event={:.0}",
            n / t_split,
            targets as f64 / n,
            bytes as f64 / n,
            input_bytes as f64 / n,
        );
        let mut t_own = Vec::new();
        let mut emitted = 0;
        for p in 0..partitions {
            let t = best_of_3(|| {
                black_box(own(&cfg, &logs[p as usize], p, partitions));
            });
            emitted += own(&cfg, &logs[p as usize], p, partitions);
            t_own.push(t);
        }
        println!(
            "OWN P={partitions} per_partition_ev_s=[{}] transitions={emitted}",
            t_own
                .iter()
                .map(|t| format!("{:.0}", n / t))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for k in [1usize, 2, 4] {
            if k as u32 > partitions {
                continue;
            }
            // Instance i splits input partitions i, i+k, ... and owns shard
            // partitions i, i+k, ...
            let mut busiest = 0f64;
            for i in 0..k {
                let parts: Vec<usize> = (i..INPUTS).step_by(k).collect();
                let t_s = best_of_3(|| {
                    black_box(split(&cfg, &lines, &parts, partitions));
                });
                let t_o: f64 = (i..partitions as usize).step_by(k).map(|p| t_own[p]).sum();
                busiest = busiest.max(t_s + t_o);
            }
            println!(
                "MODEL P={partitions} instances={k} busiest_s={busiest:.3} group={:.0} ev/s x_one={:.2}",
                n / busiest,
                t_one / busiest
            );
        }
    }
}
