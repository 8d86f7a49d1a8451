//! Checkpoint and restore of the engine at 100,000 and 1,000,000 live
//! groups: what a checkpoint stalls the engine task for when 1 % of the
//! groups changed since the previous one (incremental), beside a full
//! checkpoint and the whole-engine snapshot earlier releases took every
//! time; the fsynced SQLite write of each (on the writer thread, not a
//! stall); load + restore time; bytes per group. Prints a table and the
//! ratios measured in this run; no assertions (see README "Benchmarks").
//!
//! `cargo bench --bench state_checkpoint [-- 100000 1000000]`

use std::collections::HashMap;
use std::time::Instant;

use crisiswatch::config::Config;
use crisiswatch::engine::{Op, ShardedEngine};
use crisiswatch::event::decode;
use crisiswatch::state::{Checkpoint, EngineState, StateStore};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: i64 = 1_795_132_800_000;

fn line(g: usize, round: i64, ts: i64) -> String {
    format!(
        r#"{{"id":"e{g}-{round}","type":"complaint","ts":{ts},"attrs":{{"product":"product-{}","region":"r{}"}}}}"#,
        g / 8,
        g % 8
    )
}

/// Feeds lines in batches of 4096.
fn feed(e: &mut ShardedEngine, lines: &[String]) {
    let limits = *e.limits();
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    for chunk in lines.chunks(4096) {
        let evs: Vec<_> = chunk
            .iter()
            .filter_map(|l| decode(l.as_bytes(), &limits, None).ok())
            .collect();
        let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
        e.run(&ops, &mut out, &mut outcomes);
        out.clear();
        outcomes.clear();
    }
}

fn ms(s: Instant) -> f64 {
    s.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "{:>9} {:>11} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "groups",
        "checkpoint",
        "stall ms",
        "write ms",
        "MB",
        "rows",
        "load ms",
        "restore",
        "B/group",
        "ratio*",
        "ratio**"
    );
    for n in sizes {
        let cfg = Config::from_toml_str(
            &format!(
                r#"
[engine]
max_groups_per_rule = {n}
[[rules]]
name = "complaints"
group_by = ["product", "region"]
window = "1h"
slide = "5m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 1000000 }}
"#
            ),
            &HashMap::<String, String>::new(),
        )
        .expect("config");
        let mut engine = ShardedEngine::new(&cfg, 1, 64).expect("engine");
        // Two events per group, in two panes (the dedup memory keeps its
        // default million ids).
        for round in 0..2i64 {
            let lines: Vec<String> = (0..n)
                .map(|g| line(g, round, T0 + round * 300_000 + (g % 1000) as i64))
                .collect();
            feed(&mut engine, &lines);
        }
        let groups = engine.engines()[0].live_groups(0);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(dir.path()).expect("store");

        // The whole-engine snapshot of earlier releases (every checkpoint).
        let s = Instant::now();
        let whole = engine.snapshot().expect("snapshot");
        let whole_ms = ms(s);
        let mut fresh = ShardedEngine::new(&cfg, 1, 64).expect("engine");
        let s = Instant::now();
        fresh.restore(&whole).expect("restore");
        let whole_restore = ms(s);
        drop(fresh);
        println!(
            "{:>9} {:>11} {:>9.1} {:>9} {:>9.1} {:>10} {:>9} {:>9.1} {:>9.1} {:>8} {:>8}",
            groups,
            "whole (old)",
            whole_ms,
            "-",
            whole.len() as f64 / 1e6,
            groups,
            "-",
            whole_restore,
            whole.len() as f64 / groups.max(1) as f64,
            "",
            ""
        );

        // A full checkpoint (the first of a process, after a reload or a failure).
        let s = Instant::now();
        let full = engine.checkpoint_delta(true).expect("delta");
        let full_ms = ms(s);
        let (full_bytes, full_rows) = (full.bytes(), full.upserts.len());
        let cp = |engine| Checkpoint {
            written_ms: 0,
            engine,
            released_below: None,
            partitions: Vec::new(),
        };
        let s = Instant::now();
        store.write(&cp(full)).expect("write");
        let full_write = ms(s);
        println!(
            "{:>9} {:>11} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>9} {:>9} {:>9.1} {:>8} {:>8}",
            groups,
            "full",
            full_ms,
            full_write,
            full_bytes as f64 / 1e6,
            full_rows,
            "-",
            "-",
            full_bytes as f64 / groups.max(1) as f64,
            "",
            ""
        );

        // Three incremental checkpoints, each after 1 % of the groups
        // changed (one event each, inside the current pane: no boundary).
        let mut stalls = Vec::new();
        let mut last = (0.0, 0usize, 0usize);
        for k in 0..3usize {
            let changed: Vec<String> = (0..n / 100)
                .map(|i| {
                    let g = (i * 100 + k * 37) % n;
                    line(g, 2 + k as i64, T0 + 300_500 + (i % 400) as i64)
                })
                .collect();
            feed(&mut engine, &changed);
            let s = Instant::now();
            let d = engine.checkpoint_delta(false).expect("delta");
            stalls.push(ms(s));
            let (bytes, rows) = (d.bytes(), d.upserts.len());
            let s = Instant::now();
            store.write(&cp(d)).expect("write");
            last = (ms(s), bytes, rows);
        }
        stalls.sort_by(f64::total_cmp);
        let stall = stalls[1];
        let (write_ms, bytes, rows) = last;

        // Load and restore what the store holds.
        let s = Instant::now();
        let loaded = store.load().expect("load").expect("checkpoint");
        let load_ms = ms(s);
        let mut fresh = ShardedEngine::new(&cfg, 1, 64).expect("engine");
        let s = Instant::now();
        let summary = match &loaded.engine {
            EngineState::Rows(r) => fresh.restore_stored(r).expect("restore"),
            EngineState::Whole(_) => unreachable!("rows were written"),
        };
        let restore_ms = ms(s);
        assert_eq!(summary.groups, groups);
        println!(
            "{:>9} {:>11} {:>9.1} {:>9.1} {:>9.2} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>7.0}x {:>7.0}x",
            groups,
            "1% changed",
            stall,
            write_ms,
            bytes as f64 / 1e6,
            rows,
            load_ms,
            restore_ms,
            loaded.engine_bytes as f64 / groups.max(1) as f64,
            whole_ms / stall.max(1e-6),
            full_ms / stall.max(1e-6),
        );
    }
    println!("stall: the engine task's pause (median of 3 incremental checkpoints); write: the writer thread's fsynced transaction;");
    println!("B/group: bytes of the checkpoint (whole, full) or of the store (1% row); ratio*: whole (old) stall / incremental stall; ratio**: full / incremental.");
}
