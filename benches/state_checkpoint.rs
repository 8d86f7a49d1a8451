//! Checkpoint and restore of the engine at 100,000 and 1,000,000 live groups:
//! snapshot time, SQLite write time (fsynced), load + restore time, and bytes
//! per group beside a naive lower bound (the group key plus its non-empty
//! panes' counters). Prints a table; no assertions (see README "Benchmarks").
//!
//! `cargo bench --bench state_checkpoint [-- 100000 1000000]`

use std::collections::HashMap;
use std::time::Instant;

use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::state::{Checkpoint, StateStore};

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
        "{:>10} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "groups", "snapshot ms", "write ms", "load ms", "restore ms", "bytes/group", "naive bytes"
    );
    for n in sizes {
        let cfg = Config::from_toml_str(
            &format!(
                r#"
[engine]
max_groups_per_rule = {n}
dedup_horizon = "0"
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
        let mut engine = Engine::new(&cfg).expect("engine");
        let mut out = Vec::new();
        let t0 = 1_795_132_800_000i64;
        // Two events per group, in two panes.
        for round in 0..2i64 {
            for g in 0..n {
                let line = format!(
                    r#"{{"id":"e{g}-{round}","type":"complaint","ts":{},"attrs":{{"product":"product-{}","region":"r{}"}}}}"#,
                    t0 + round * 300_000 + (g % 1000) as i64,
                    g / 8,
                    g % 8
                );
                let _ = engine.process_bytes(line.as_bytes(), None, &mut out);
            }
        }
        let groups = engine.live_groups(0);
        let s = Instant::now();
        let bytes = engine.snapshot().expect("snapshot");
        let snapshot_ms = s.elapsed().as_secs_f64() * 1e3;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(dir.path()).expect("store");
        let cp = Checkpoint {
            written_ms: 0,
            engine: bytes,
            released_below: None,
            partitions: Vec::new(),
        };
        let s = Instant::now();
        store.write(&cp).expect("write");
        let write_ms = s.elapsed().as_secs_f64() * 1e3;
        let s = Instant::now();
        let loaded = store.load().expect("load").expect("checkpoint");
        let load_ms = s.elapsed().as_secs_f64() * 1e3;
        let mut fresh = Engine::new(&cfg).expect("engine");
        let s = Instant::now();
        let summary = fresh.restore(&loaded.engine).expect("restore");
        let restore_ms = s.elapsed().as_secs_f64() * 1e3;
        assert_eq!(summary.groups, groups);
        // Key ("product-NNNNN" + "rN" with 4-byte lengths) + 2 panes × (index + 3 counters).
        let naive = (4 + 13 + 4 + 2) + 2 * (8 + 24);
        println!(
            "{:>10} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>14.1} {:>14}",
            groups,
            snapshot_ms,
            write_ms,
            load_ms,
            restore_ms,
            cp.engine.len() as f64 / groups.max(1) as f64,
            naive
        );
    }
}
