//! Core throughput: decode + engine (20 rules, 100,000 live groups) beside a
//! decode-only baseline of the same events, in the same run.
//!
//! `cargo bench --bench core_throughput` prints criterion's figures for both,
//! then summary lines (best of 3 plain timed passes, one core):
//!
//! * `SUMMARY`: events/s of decode-only and of decode + engine, and their
//!   ratio. The target: ≥ 1,000,000 events/s through the core, at no less
//!   than half the speed of decoding alone.
//! * `SCALING`: the same events through 1, 20 and 100 rules (the 100 are the
//!   20 five times over, so many share a `group_by`), events/s and the cost
//!   per event relative to one rule. The target: sub-linear.
//! * `MEMORY`: heap bytes per live group (a counting allocator, dedup off)
//!   beside two theoretical sizes: `dense` — the key and three 8-byte
//!   counters for every pane the window spans (the issue's "panes ×
//!   counters plus key") — and `stored` — the key and, per stored (non-empty) pane, its
//!   index and counters; customer entries at 12 bytes in both. The target:
//!   ≤ 1.5× the theoretical size.
//!
//! * `EXPLAIN`: the 20 rules with `explain` (root-cause hints) on each,
//!   events/s and heap bytes per live group beside the same rules without.
//! * `WORKERS`: the 20 rules through a `ShardedEngine` of 1, 2 and 4 worker
//!   threads (64 shards; lines decoded on the calling thread in batches of
//!   4,096, as `run` hands released events over), events/s and the speed-up
//!   over one worker. The output is identical in all (tested); this is what
//!   `engine.workers` buys on the machine at hand.
//!
//! The engine passes decode lines in batches of 256 and hand each batch to
//! `Engine::process_batch` (what `run`'s engine stage does with released
//! events: the events ahead are looked up and prefetched while one is
//! applied); `CRISISWATCH_BENCH_UNBATCHED=1` makes them call
//! `Engine::process_bytes` once per line instead (the same output).
//!
//! `CRISISWATCH_BENCH_EVENTS=N` shortens the stream (default 1,000,000);
//! `CRISISWATCH_BENCH_QUICK=1` skips criterion and runs one timed pass each;
//! `CRISISWATCH_BENCH_ONLY=workers,scaling` runs only the named sections.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use crisiswatch::config::Config;
use crisiswatch::engine::{Engine, Op, ShardedEngine};
use crisiswatch::event::{decode, decode_into, DecodeLimits, Event};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};

const PRODUCTS: usize = 100;

/// The binary's allocator (mimalloc), counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the binary's allocator.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the binary's allocator.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the binary's allocator.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Events in the stream (`CRISISWATCH_BENCH_EVENTS`, default 1,000,000).
fn n_events() -> usize {
    env_usize("CRISISWATCH_BENCH_EVENTS")
        .filter(|&n| n > 0)
        .unwrap_or(1_000_000)
}

/// Whether section `name` runs: `CRISISWATCH_BENCH_ONLY` (a comma list of
/// summary, scaling, explain, workers, memory) picks some; unset, all run.
fn wanted(name: &str) -> bool {
    std::env::var("CRISISWATCH_BENCH_ONLY").map_or(true, |v| v.split(',').any(|x| x.trim() == name))
}

fn quick() -> bool {
    std::env::var("CRISISWATCH_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Regions in the synthetic stream: 1000 (100,000 product × region slices) by
/// default; `CRISISWATCH_BENCH_REGIONS=10` measures a cache-resident 1,000 slices.
fn regions() -> usize {
    std::env::var("CRISISWATCH_BENCH_REGIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(1000)
}

/// 1,000,000 events over 2 hours of event time; (product, region) cycles
/// through 100 × 1000 = 100,000 slices, so every slice is live in 30 min windows.
fn events() -> Vec<Vec<u8>> {
    let events = n_events();
    let start: i64 = 1_795_132_800_000;
    let span: i64 = 2 * 3600 * 1000;
    let n_regions = regions();
    let channels = ["web", "app", "phone", "email", "store", "social"];
    let segments = ["consumer", "smb", "vip"];
    let cats = [
        "billing",
        "delivery",
        "product_quality",
        "service_attitude",
        "safety",
        "outage",
    ];
    (0..events)
        .map(|i| {
            let ts = start + (i as i64 * span) / events as i64;
            let product = i % PRODUCTS;
            let region = (i / PRODUCTS) % n_regions;
            let kind = match i % 20 {
                0 => "complaint",
                1 | 2 => "feedback",
                3 => "cancellation",
                _ => "order",
            };
            let customer = (i * 7919) % 500_000;
            let score = if kind == "feedback" {
                format!(",\"score\":{}", i % 11)
            } else {
                String::new()
            };
            format!(
                r#"{{"id":"e-{i}","type":"{kind}","ts":{ts},"customer_id":"c-{customer}","attrs":{{"product":"p{product}","region":"r{region}","channel":"{}","segment":"{}","category":"{}"}}{score}}}"#,
                channels[i % channels.len()],
                segments[i % segments.len()],
                cats[i % cats.len()],
            )
            .into_bytes()
        })
        .collect()
}

/// 20 rules of every kind, grouped by several slicings.
fn config() -> Config {
    config_with(20, true)
}

/// The first `n` of the 20 rules (cycling through them again, under new
/// names, past 20); `dedup` off measures the groups' memory alone.
fn config_with(n: usize, dedup: bool) -> Config {
    config_opts(n, dedup, false)
}

/// [`config_with`], with `explain` (root-cause hints) on every rule when
/// `explain`: channel, segment and category, less the rule's `group_by`.
fn config_opts(n: usize, dedup: bool, explain: bool) -> Config {
    let mut text = String::from(
        "[engine]\nmax_groups_per_rule = 200000\ndedup_max_ids = 2000000\nmax_future_skew = \"1h\"\n",
    );
    if !dedup {
        text.push_str("dedup_horizon = \"0s\"\n");
    }
    let rules: &[(&str, &str, &str)] = &[
        (
            "ratio",
            r#"["product", "region"]"#,
            r#"{ kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 5 }"#,
        ),
        (
            "ratio",
            r#"["product", "region"]"#,
            r#"{ kind = "ratio", numerator = { type = "cancellation" }, denominator = { type = "order" } }"#,
        ),
        (
            "ratio",
            r#"["product"]"#,
            r#"{ kind = "ratio", numerator = { type = "complaint", attrs = { category = ["product_quality", "safety"] } }, denominator = { type = "complaint" } }"#,
        ),
        (
            "ratio",
            r#"["region", "segment"]"#,
            r#"{ kind = "ratio", numerator = { type = "cancellation" }, denominator = { type = "order" } }"#,
        ),
        (
            "count",
            r#"["product"]"#,
            r#"{ kind = "count", select = { type = "complaint", attrs = { channel = "social" } } }"#,
        ),
        (
            "count",
            r#"["product", "region"]"#,
            r#"{ kind = "count", select = { type = "complaint" } }"#,
        ),
        (
            "count",
            "[]",
            r#"{ kind = "count", select = { type = "complaint" } }"#,
        ),
        (
            "rate",
            r#"["region"]"#,
            r#"{ kind = "rate", select = { type = "order" }, per = "minute" }"#,
        ),
        (
            "rate",
            r#"["channel"]"#,
            r#"{ kind = "rate", select = { type = "complaint" }, per = "hour" }"#,
        ),
        (
            "surge",
            r#"["product"]"#,
            r#"{ kind = "surge", select = { type = "complaint" }, baseline = "2h" }"#,
        ),
        (
            "surge",
            r#"["region"]"#,
            r#"{ kind = "surge", select = { type = "complaint" }, baseline = "2h", method = "zscore" }"#,
        ),
        (
            "distinct",
            r#"["region"]"#,
            r#"{ kind = "distinct_customers", select = { type = "complaint" } }"#,
        ),
        (
            "distinct",
            r#"["product"]"#,
            r#"{ kind = "distinct_customers", select = { type = "cancellation" } }"#,
        ),
        (
            "repeat",
            r#"["product", "region"]"#,
            r#"{ kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }"#,
        ),
        (
            "repeat",
            r#"["product"]"#,
            r#"{ kind = "repeat_customers", select = { type = ["complaint", "cancellation"] }, min_events = 2 }"#,
        ),
        (
            "share",
            r#"["product", "region"]"#,
            r#"{ kind = "score_share", select = { type = "feedback" }, min = 0, max = 6 }"#,
        ),
        (
            "share",
            r#"["segment"]"#,
            r#"{ kind = "score_share", select = { type = "feedback" }, min = 9, max = 10 }"#,
        ),
        (
            "mean",
            r#"["product"]"#,
            r#"{ kind = "mean_score", select = { type = "feedback" } }"#,
        ),
        (
            "mean",
            r#"["region"]"#,
            r#"{ kind = "mean_score", select = { type = "feedback", attrs = { segment = { not = "vip" } } } }"#,
        ),
        (
            "nps",
            r#"["product", "region"]"#,
            r#"{ kind = "nps", select = { type = "feedback" } }"#,
        ),
    ];
    for (i, (kind, group_by, indicator)) in rules.iter().cycle().take(n).enumerate() {
        let condition = if *kind == "nps" || *kind == "mean" {
            "below"
        } else {
            "above"
        };
        let thresholds = if condition == "below" {
            "{ warning = -50.0, critical = -80.0 }"
        } else {
            "{ warning = 1000000.0 }"
        };
        text.push_str(&format!(
            "\n[[rules]]\nname = \"r{i}_{kind}\"\ngroup_by = {group_by}\nwindow = \"30m\"\nslide = \"1m\"\nindicator = {indicator}\ncondition = \"{condition}\"\nthresholds = {thresholds}\n"
        ));
        if explain {
            let attrs: Vec<String> = ["channel", "segment", "category"]
                .iter()
                .filter(|a| !group_by.contains(*a))
                .map(|a| format!("\"{a}\""))
                .collect();
            text.push_str(&format!("explain = [{}]\n", attrs.join(", ")));
        }
    }
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).expect("bench config is valid")
}

/// Decodes every line into one event slot, as the engine's `process_bytes` does.
fn decode_all(lines: &[Vec<u8>], limits: &DecodeLimits) -> usize {
    let mut ok = 0;
    let mut ev = Event::default();
    for l in lines {
        if decode_into(l, limits, None, None, &mut ev).is_ok() {
            black_box(&ev);
            ok += 1;
        }
    }
    ok
}

fn engine_all(engine: &mut Engine, lines: &[Vec<u8>]) -> usize {
    if std::env::var("CRISISWATCH_BENCH_UNBATCHED").is_ok_and(|v| v == "1") {
        return engine_each(engine, lines);
    }
    engine_batched(engine, lines)
}

/// One `process_bytes` call per line.
fn engine_each(engine: &mut Engine, lines: &[Vec<u8>]) -> usize {
    let mut out = Vec::new();
    let mut n = 0;
    for l in lines {
        let _ = engine.process_bytes(l, None, &mut out);
        n += out.len();
        out.clear();
    }
    n
}

/// Lines decoded in batches of [`BATCH`] and processed with
/// `Engine::process_batch`, as `replay` and `run` hand released events over.
fn engine_batched(engine: &mut Engine, lines: &[Vec<u8>]) -> usize {
    const BATCH: usize = 256;
    let limits = *engine.limits();
    let mut out = Vec::new();
    let mut n = 0;
    let mut evs: Vec<Event<'_>> = (0..BATCH).map(|_| Event::default()).collect();
    for chunk in lines.chunks(BATCH) {
        let mut k = 0;
        for l in chunk {
            if decode_into(l, &limits, None, None, &mut evs[k]).is_ok() {
                k += 1;
            }
        }
        engine.process_batch(&evs[..k], &mut out, |_, _, out| {
            n += out.len();
            out.clear();
        });
    }
    n
}

fn bench(c: &mut Criterion) {
    let lines = events();
    let cfg = config();
    let limits = DecodeLimits::default();
    if !quick() {
        let mut g = c.benchmark_group("core");
        g.sample_size(10);
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function("decode_only", |b| b.iter(|| decode_all(&lines, &limits)));
        g.bench_function("decode_and_engine_20_rules", |b| {
            b.iter_batched(
                || Engine::new(&cfg).expect("engine"),
                |mut e| engine_all(&mut e, &lines),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
    let passes = if quick() { 1 } else { 3 };

    // The summary: best of 3 plain passes each, in the same process.
    let mut best_decode = f64::MAX;
    let mut best_engine = f64::MAX;
    let mut groups = 0;
    for _ in 0..passes {
        if !wanted("summary") && !wanted("explain") {
            break;
        }
        let t = Instant::now();
        black_box(decode_all(&lines, &limits));
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
        let (secs, e) = timed_engine(&cfg, &lines);
        best_engine = best_engine.min(secs);
        groups = (0..e.rule_count()).map(|i| e.live_groups(i)).sum::<usize>();
        assert_eq!(
            e.stats().applied as usize,
            lines.len(),
            "every event applied"
        );
    }
    let n = lines.len() as f64;
    if wanted("summary") {
        println!(
        "\nSUMMARY events={} rules={} live_groups_at_end={} decode_only={:.0} ev/s engine={:.0} ev/s ratio={:.2}",
        lines.len(),
        cfg.rules.len(),
        groups,
        n / best_decode,
        n / best_engine,
        best_decode / best_engine
    );
    }

    // Rule-count scaling: the same events through 1, 20 and 100 rules.
    if wanted("scaling") {
        let mut line = String::from("SCALING");
        let mut one_rule = 0.0;
        for rules in [1, 20, 100] {
            let cfg = config_with(rules, true);
            let mut best = f64::MAX;
            let mut groups = 0;
            for _ in 0..passes.min(2) {
                let (secs, e) = timed_engine(&cfg, &lines);
                best = best.min(secs);
                groups = (0..e.rule_count()).map(|i| e.live_groups(i)).sum::<usize>();
            }
            if rules == 1 {
                one_rule = best;
            }
            line.push_str(&format!(
                " rules={rules}: {:.0} ev/s ({groups} groups, cost x{:.1} of 1 rule)",
                n / best,
                best / one_rule
            ));
        }
        println!("{line}");
    }

    // Root-cause hints: the 20 rules with `explain` on every one, beside
    // the same rules without (the SUMMARY's engine figure is without).
    if wanted("explain") {
        let explained = config_opts(20, true, true);
        let mut best = f64::MAX;
        for _ in 0..passes.min(2) {
            best = best.min(timed_engine(&explained, &lines).0);
        }
        let mem = |cfg: &Config| {
            let before = ALLOCATED.load(Ordering::Relaxed);
            let mut e = Engine::new(cfg).expect("engine");
            black_box(engine_all(&mut e, &lines));
            let used = (ALLOCATED.load(Ordering::Relaxed) - before).max(0) as f64;
            used / e.footprint().groups.max(1) as f64
        };
        println!(
        "EXPLAIN rules=20 without={:.0} ev/s with_explain={:.0} ev/s (cost x{:.2}) bytes_per_group without={:.0} with_explain={:.0}",
        n / best_engine,
        n / best,
        best / best_engine,
        mem(&config_with(20, false)),
        mem(&config_opts(20, false, true)),
    );
    }

    // Worker threads: the same events and rules through 1, 2 and 4 workers.
    if wanted("workers") {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut line = format!("WORKERS cores={cores}");
        let mut one = 0.0;
        for workers in [1, 2, 4] {
            let mut best = f64::MAX;
            let mut transitions = 0;
            for _ in 0..passes.min(2) {
                let mut s = ShardedEngine::new(&cfg, workers, 64).expect("sharded");
                let t = Instant::now();
                transitions = sharded_all(&mut s, &lines);
                best = best.min(t.elapsed().as_secs_f64());
            }
            if workers == 1 {
                one = best;
            }
            line.push_str(&format!(
                " workers={workers}: {:.0} ev/s (x{:.2}, {transitions} transitions)",
                n / best,
                one / best
            ));
        }
        println!("{line}");
    }

    // Memory per live group beside the data's own size (dedup off).
    if !wanted("memory") {
        return;
    }
    let cfg = config_with(20, false);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut e = Engine::new(&cfg).expect("engine");
    black_box(engine_all(&mut e, &lines));
    let used = (ALLOCATED.load(Ordering::Relaxed) - before).max(0) as f64;
    let f = e.footprint();
    let per = |b: f64| b / f.groups.max(1) as f64;
    let (measured, dense, stored) = (
        per(used),
        per(f.dense_bytes() as f64),
        per(f.stored_bytes() as f64),
    );
    println!(
        "MEMORY live_groups={} stored_panes={} bytes_per_group={measured:.0} theoretical_dense={dense:.0} (x{:.2}) theoretical_stored={stored:.0} (x{:.2})",
        f.groups,
        f.panes,
        measured / dense,
        measured / stored
    );
}

/// Decode + sharded engine over `lines`, 4,096 events per batch; returns
/// the transitions emitted.
fn sharded_all(s: &mut ShardedEngine, lines: &[Vec<u8>]) -> usize {
    let limits = *s.limits();
    let (mut out, mut outcomes) = (Vec::new(), Vec::new());
    let mut n = 0;
    for chunk in lines.chunks(4096) {
        let evs: Vec<_> = chunk
            .iter()
            .filter_map(|l| decode(l, &limits, None).ok())
            .collect();
        let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
        s.run(&ops, &mut out, &mut outcomes);
        n += out.len();
        out.clear();
        outcomes.clear();
    }
    n
}

/// One timed pass of decode + engine over `lines`; the engine afterwards.
fn timed_engine(cfg: &Config, lines: &[Vec<u8>]) -> (f64, Engine) {
    let mut e = Engine::new(cfg).expect("engine");
    let t = Instant::now();
    black_box(engine_all(&mut e, lines));
    (t.elapsed().as_secs_f64(), e)
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
