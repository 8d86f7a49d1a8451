//! Tuning in one pass against one replay per candidate, and backtest
//! throughput, on the same generated history in the same run.
//!
//! `cargo bench --bench tune` prints criterion's figures, then summary lines
//! (best of 3 plain timed passes, one core):
//!
//! * `TUNE`: 8 candidate thresholds of `complaint_rate` evaluated by
//!   `tune` in one pass, against 8 separate backtests of the same candidates —
//!   each with only the tuned rule (the same work per engine as the one pass),
//!   and each with the whole example configuration (what a user would run
//!   without `tune`) — and the ratios.
//! * `BACKTEST`: events/s of a backtest of the example configuration (8 rules)
//!   from memory, from a JSONL file and from a gzipped file (decode, engine,
//!   incident tracking and peak sampling included).

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crisiswatch::backtest::report::SummaryOptions;
use crisiswatch::backtest::tune::{self, TuneOptions};
use crisiswatch::backtest::{self, labels, Inputs};
use crisiswatch::config::Config;
use crisiswatch::generator::{Generator, GeneratorSettings};
use criterion::{criterion_group, Criterion, Throughput};

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-20T00:00:00Z.
const START: i64 = 1_795_132_800_000;
const DAY: i64 = 86_400_000;
const DAYS: i64 = 2;

/// Two generated days (seeds 1 and 2) back to back, with their crises.
fn history() -> (Vec<Vec<u8>>, Vec<labels::Crisis>) {
    let mut lines = Vec::new();
    let mut crises = Vec::new();
    for d in 0..DAYS {
        let mut gen = Generator::new(GeneratorSettings {
            seed: 1 + d as u64,
            start_ms: START + d * DAY,
            duration_ms: DAY,
            orders_per_minute: 300.0,
            crises: true,
            noise: true,
            shape: crisiswatch::generator::TrafficShape::default(),
        });
        let mut t = START + d * DAY;
        while !gen.is_done() {
            t += 3_600_000;
            gen.generate_until(t, &mut lines);
        }
        crises.extend(labels::from_generator(gen.crises()));
    }
    (lines, crises)
}

fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/crisiswatch.toml");
    Config::load(&path, &HashMap::<String, String>::new()).expect("example config")
}

fn tune_opts(crises: &[labels::Crisis]) -> TuneOptions {
    TuneOptions {
        rule: "complaint_rate".into(),
        // 8 values, the configured 0.065 among them: 8 engines.
        varies: vec!["threshold=0.035..0.07:0.005".parse().expect("vary")],
        summary: SummaryOptions {
            labels: Some(crises.to_vec()),
            ..SummaryOptions::default()
        },
        now_ms: None,
        pick: None,
    }
}

fn lines_of(lines: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> + Clone {
    lines.iter().map(|l| l.as_slice())
}

fn one_pass(cfg: &Config, lines: &[Vec<u8>], opts: &TuneOptions) -> tune::TuneResult {
    tune::run_lines(cfg, lines_of(lines), opts).expect("tune")
}

/// One backtest per candidate config.
fn replays(configs: &[Config], lines: &[Vec<u8>], opts: &SummaryOptions) -> usize {
    configs
        .iter()
        .map(|c| {
            backtest::run_lines(c, lines_of(lines), opts)
                .expect("backtest")
                .incidents
                .len()
        })
        .sum()
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

fn bench(c: &mut Criterion) {
    let (lines, crises) = history();
    let cfg = config();
    let opts = tune_opts(&crises);
    let result = one_pass(&cfg, &lines, &opts);
    assert_eq!(result.rows.len(), 8);
    // The same candidates as separate configurations.
    let single: Vec<Config> = result
        .rows
        .iter()
        .map(|r| Config {
            engine: cfg.engine.clone(),
            rules: vec![r.candidate.rule.clone()],
            ..Config::default()
        })
        .collect();
    let whole: Vec<Config> = result
        .rows
        .iter()
        .map(|r| tune::backtest_config(&cfg, &r.candidate.rule))
        .collect();
    let summary = opts.summary.clone();

    let mut g = c.benchmark_group("tune");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(20));
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("one_pass_8_candidates", |b| {
        b.iter(|| black_box(one_pass(&cfg, &lines, &opts)))
    });
    g.bench_function("8_replays_single_rule", |b| {
        b.iter(|| black_box(replays(&single, &lines, &summary)))
    });
    g.bench_function("backtest_example_config", |b| {
        b.iter(|| black_box(backtest::run_lines(&cfg, lines_of(&lines), &summary)))
    });
    g.finish();

    // The summary: plain timed passes in the same process.
    let t_one = best_of_3(|| {
        black_box(one_pass(&cfg, &lines, &opts));
    });
    let t_single = best_of_3(|| {
        black_box(replays(&single, &lines, &summary));
    });
    let t_whole = best_of_3(|| {
        black_box(replays(&whole, &lines, &summary));
    });
    // The one pass and the replays find the same incidents.
    let one_incidents: usize = result.rows.iter().map(|r| r.summary.incidents).sum();
    assert_eq!(one_incidents, replays(&single, &lines, &summary));
    println!(
        "\nTUNE events={} candidates=8 one_pass={:.3}s replays_single_rule={:.3}s ({:.2}x) replays_whole_config={:.3}s ({:.2}x)",
        lines.len(),
        t_one,
        t_single,
        t_single / t_one,
        t_whole,
        t_whole / t_one
    );

    let t_mem = best_of_3(|| {
        black_box(backtest::run_lines(&cfg, lines_of(&lines), &summary).expect("backtest"));
    });
    let dir = std::env::temp_dir().join(format!("crisiswatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plain = dir.join("history.jsonl");
    let gz = dir.join("history.jsonl.gz");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&plain).expect("file"));
        let mut z = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(std::fs::File::create(&gz).expect("file")),
            flate2::Compression::default(),
        );
        for l in &lines {
            f.write_all(l)
                .and_then(|()| f.write_all(b"\n"))
                .expect("write");
            z.write_all(l)
                .and_then(|()| z.write_all(b"\n"))
                .expect("write");
        }
        f.flush().expect("flush");
        z.finish().expect("gzip").flush().expect("flush");
    }
    let from = |p: &Path| {
        let inputs = Inputs::new(vec![p.to_path_buf()]).expect("inputs").quiet();
        best_of_3(|| {
            black_box(backtest::run(&cfg, &inputs, &summary, None, None).expect("backtest"));
        })
    };
    let t_file = from(&plain);
    let t_gz = from(&gz);
    let _ = std::fs::remove_dir_all(&dir);
    let n = lines.len() as f64;
    println!(
        "BACKTEST events={} rules={} memory={:.0} ev/s jsonl_file={:.0} ev/s gzip_file={:.0} ev/s",
        lines.len(),
        cfg.rules.len(),
        n / t_mem,
        n / t_file,
        n / t_gz
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
