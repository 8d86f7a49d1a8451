//! Replay from a file with the example configuration, beside its baselines
//! measured in the same run.
//!
//! `cargo bench --bench replay_throughput` generates one demo day (seed 1,
//! ~660,000 events), writes it to a JSONL file and prints one `REPLAY` line
//! (best of 3 plain timed passes, one core):
//!
//! * `decode_only`: decoding every line from memory (the limit);
//! * `engine_unsequenced`: decode + engine from memory, events applied in
//!   arrival order (no sequencer: what the core costs by itself);
//! * `replay_file`: `crisiswatch replay` on the file — reading, decoding, the
//!   event-time sequencer, the engine and writing the transitions (the
//!   target: ≥ 1,000,000 events/s);
//!
//! and the ratios of `replay_file` to both (the sequencer's price is the gap
//! between `engine_unsequenced` and `replay_file`).

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::event::decode;
use crisiswatch::generator::{Generator, GeneratorSettings};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-20T00:00:00Z.
const START: i64 = 1_795_132_800_000;
const DAY: i64 = 86_400_000;

/// One generated demo day, with crises and noise.
fn history() -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut gen = Generator::new(GeneratorSettings {
        seed: 1,
        start_ms: START,
        duration_ms: DAY,
        orders_per_minute: 300.0,
        crises: true,
        noise: true,
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

fn main() {
    let lines = history();
    let cfg = config();
    let dir = std::env::temp_dir().join(format!("crisiswatch-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("history.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
        for l in &lines {
            f.write_all(l)
                .and_then(|()| f.write_all(b"\n"))
                .expect("write");
        }
        f.flush().expect("flush");
    }
    let limits = *Engine::new(&cfg).expect("engine").limits();

    let t_decode = best_of_3(|| {
        let mut ok = 0usize;
        for l in &lines {
            if let Ok(ev) = decode(l, &limits, None) {
                black_box(&ev);
                ok += 1;
            }
        }
        black_box(ok);
    });
    let t_engine = best_of_3(|| {
        let mut e = Engine::new(&cfg).expect("engine");
        let mut out = Vec::new();
        for l in &lines {
            let _ = e.process_bytes(l, None, &mut out);
            out.clear();
        }
        black_box(e.stats().applied);
    });
    let mut transitions = 0;
    let t_replay = best_of_3(|| {
        let mut e = Engine::new(&cfg).expect("engine");
        let file = std::io::BufReader::new(std::fs::File::open(&path).expect("open"));
        let summary = crisiswatch::replay::replay(&mut e, file, &mut std::io::sink(), None, |_| {})
            .expect("replay");
        transitions = summary.stats.transitions;
        black_box(summary);
    });
    let _ = std::fs::remove_dir_all(&dir);
    let n = lines.len() as f64;
    println!(
        "\nREPLAY events={} rules={} transitions={} decode_only={:.0} ev/s engine_unsequenced={:.0} ev/s replay_file={:.0} ev/s replay/decode={:.2} replay/unsequenced={:.2}",
        lines.len(),
        cfg.rules.len(),
        transitions,
        n / t_decode,
        n / t_engine,
        n / t_replay,
        t_decode / t_replay,
        t_engine / t_replay,
    );
}
