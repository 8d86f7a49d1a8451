//! `tune` is exact: every candidate row equals a separate `backtest` of that
//! candidate over the same history — on streams with disorder inside
//! `allowed_lateness`, late events, duplicates and bursts, whatever the
//! candidates share (one engine and replayed policies for thresholds, `for`
//! and `clear`; their own engine for another window). Property-tested.

use std::collections::HashMap;

use crisiswatch::backtest::{self, tune, SummaryOptions};
use crisiswatch::config::Config;
use proptest::prelude::*;

const CONFIG: &str = r#"
[engine]
allowed_lateness = "2m"

[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 6 }
clear = 3

[[rules]]
name = "rate"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 5 }
thresholds = { warning = 0.4 }
clear = 0.2
"#;

const MIN: i64 = 60_000;

/// A stream: orders and complaints over three products for two hours, with
/// complaint bursts, every event shifted by up to `jitter` (inside or beyond
/// the lateness), some duplicated.
fn stream(seed: u64, bursts: &[(usize, i64)], jitter_ms: i64, dup_every: usize) -> Vec<Vec<u8>> {
    let mut rng = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let t0 = 1_790_000_000_000i64;
    let products = ["a", "b", "c"];
    let mut lines = Vec::new();
    let mut n = 0usize;
    for s in (0..7200i64).step_by(20) {
        let base = t0 + s * 1000;
        let p = products[(next() % 3) as usize];
        let mut push = |kind: &str, p: &str, next: &mut dyn FnMut() -> u64| {
            n += 1;
            let ts = base + (next() as i64 % (2 * jitter_ms + 1)) - jitter_ms;
            let line =
                format!(r#"{{"id":"e{n}","type":"{kind}","ts":{ts},"attrs":{{"product":"{p}"}}}}"#);
            if dup_every > 0 && n.is_multiple_of(dup_every) {
                lines.push(line.clone().into_bytes());
            }
            lines.push(line.into_bytes());
        };
        push("order", p, &mut next);
        if next() % 5 == 0 {
            push("complaint", p, &mut next);
        }
        for &(prod, at_min) in bursts {
            if (at_min * 60..at_min * 60 + 900).contains(&s) {
                push("complaint", products[prod % 3], &mut next);
            }
        }
    }
    lines
}

fn check(
    cfg: &Config,
    rule: &str,
    varies: &[&str],
    lines: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let opts = tune::TuneOptions {
        rule: rule.into(),
        varies: varies.iter().map(|v| v.parse().unwrap()).collect(),
        summary: SummaryOptions::default(),
        now_ms: None,
        pick: None,
    };
    let result = tune::run_lines(cfg, lines.iter().map(|l| l.as_slice()), &opts).unwrap();
    prop_assert!(result.rows.len() >= 2);
    for row in &result.rows {
        let bcfg = tune::backtest_config(cfg, &row.candidate.rule);
        let report = backtest::run_lines(
            &bcfg,
            lines.iter().map(|l| l.as_slice()),
            &SummaryOptions::default(),
        )
        .unwrap();
        let want = report.rules.iter().find(|r| r.rule == rule).unwrap();
        prop_assert_eq!(
            &row.summary,
            want,
            "candidate {} of {}",
            row.candidate.label(),
            rule
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_tune_row_is_its_own_backtest(
        seed in any::<u64>(),
        bursts in prop::collection::vec((0usize..3, 5i64..100), 0..3),
        jitter_ms in prop::sample::select(vec![0i64, 30_000, 110_000, 4 * MIN]),
        dup_every in prop::sample::select(vec![0usize, 7, 31]),
    ) {
        let cfg = Config::from_toml_str(CONFIG, &HashMap::new()).unwrap();
        let lines = stream(seed, &bursts, jitter_ms, dup_every);
        check(&cfg, "complaints", &["threshold=4..8:2", "for=0s,2m"], &lines)?;
        check(&cfg, "rate", &["threshold=0.3,0.5", "window=10m,20m"], &lines)?;
    }
}
