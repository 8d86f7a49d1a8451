//! Clock jumps (issue 11, item 1): an event stamped far ahead of the rest of
//! a history must not move the clock by itself (it would make everything
//! after it late and blank the backtest), while a real gap in the history —
//! the data resumes days later — still works because the events after it
//! confirm the jump.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;

use crisiswatch::backtest::labels::{self, Crisis};
use crisiswatch::backtest::report::SummaryOptions;
use crisiswatch::backtest::{self, tune};
use crisiswatch::config::Config;
use crisiswatch::engine::Engine;
use crisiswatch::event::InvalidReason;
use crisiswatch::generator::{Generator, GeneratorSettings, TrafficShape};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// 2026-11-20T00:00:00Z.
const S: i64 = 1_795_132_800_000;
const DAY: i64 = 86_400_000;

/// The shipped configuration, with `engine.max_clock_jump` set to `jump`.
fn example(jump: &str) -> Config {
    let shipped =
        std::fs::read_to_string(PathBuf::from(ROOT).join("config/crisiswatch.toml")).unwrap();
    let text = shipped.replacen(
        "max_clock_jump = \"24h\"",
        &format!("max_clock_jump = \"{jump}\""),
        1,
    );
    assert!(text.contains(&format!("max_clock_jump = \"{jump}\"")));
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap()
}

/// A seeded simulated day from `start`.
fn day(seed: u64, start: i64, orders_per_minute: f64) -> (Vec<Vec<u8>>, Vec<Crisis>) {
    let mut gen = Generator::new(GeneratorSettings {
        seed,
        start_ms: start,
        duration_ms: DAY,
        orders_per_minute,
        crises: true,
        noise: true,
        shape: TrafficShape::default(),
    });
    let mut lines = Vec::new();
    gen.generate_until(start + DAY, &mut lines);
    (lines, labels::from_generator(gen.crises()))
}

fn backtest(cfg: &Config, lines: &[Vec<u8>], crises: &[Crisis]) -> backtest::Report {
    let opts = SummaryOptions {
        labels: Some(crises.to_vec()),
        ..SummaryOptions::default()
    };
    backtest::run_lines(cfg, lines.iter().map(|l| l.as_slice()), &opts).unwrap()
}

/// The day with a year-5138 stamp at line 2000 and one four days ahead at
/// line 5000.
fn with_bad_stamps(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = lines.to_vec();
    out.insert(
        1999,
        br#"{"id":"bad-5138","type":"complaint","ts":99999999999999,"attrs":{"product":"router-x","region":"eu-west"}}"#.to_vec(),
    );
    out.insert(
        4999,
        format!(
            r#"{{"id":"bad-days","type":"order","ts":{},"attrs":{{"product":"tv-max","region":"apac"}}}}"#,
            S + 4 * DAY
        )
        .into_bytes(),
    );
    out
}

#[test]
fn stamps_far_ahead_are_counted_named_and_do_not_blank_the_backtest() {
    let (lines, crises) = day(1, S, 300.0);
    let bad = with_bad_stamps(&lines);
    let cfg = example("24h");
    let clean = backtest(&cfg, &lines, &crises);
    let r = backtest(&cfg, &bad, &crises);
    let t = r.truth.as_ref().unwrap();
    assert_eq!((t.crises, t.missed, t.false_incidents), (3, 0, 0), "{r}");
    assert_eq!(clean.truth, r.truth);
    // Exactly the incidents of the day without the two lines.
    assert_eq!(r.incidents, clean.incidents);
    assert_eq!(r.stats.applied, clean.stats.applied);
    assert_eq!(r.stats.late, clean.stats.late);
    let jumps = r.stats.invalid[InvalidReason::ClockJump.index()];
    assert_eq!(jumps, 2, "{r}");
    assert_eq!(
        r.stats.invalid_total(),
        clean.stats.invalid_total() + 2,
        "nothing else is invalid"
    );
    // Named: the line, the reason, the stamp and the clock it was ahead of.
    let named: Vec<&(u64, InvalidReason, String)> = r
        .invalid_examples
        .iter()
        .filter(|e| e.1 == InvalidReason::ClockJump)
        .collect();
    assert_eq!(named.len(), 2, "{:?}", r.invalid_examples);
    assert_eq!(named[0].0, 2000);
    assert!(named[0].2.contains("5138-"), "{}", named[0].2);
    assert_eq!(named[1].0, 5000);
    assert!(named[1].2.contains("2026-11-24T00:00:00"), "{}", named[1].2);
    let text = r.to_string();
    assert!(
        text.contains("input line 2000: clock_jump: ts 5138-"),
        "{text}"
    );

    // Without the guard (max_clock_jump = "0") the year-5138 line moves the
    // clock and the rest of the day is late: the backtest goes blank.
    let off = backtest(&example("0"), &bad, &crises);
    let t = off.truth.as_ref().unwrap();
    assert_eq!(t.missed, 3, "{off}");
    assert!(off.stats.late > off.stats.applied, "{off}");
}

#[test]
fn a_real_gap_in_the_history_is_confirmed_by_the_events_after_it() {
    // Two days four days apart: the second day's first events are far ahead
    // of the first day's clock, and so is everything after them.
    let (a, crises_a) = day(1, S, 120.0);
    let (b, crises_b) = day(2, S + 5 * DAY, 120.0);
    let mut lines = a.clone();
    lines.extend(b.iter().cloned());
    let mut crises = crises_a.clone();
    crises.extend(crises_b.iter().cloned());
    let cfg = example("24h");
    let r = backtest(&cfg, &lines, &crises);
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 0);
    // As the two days backtested apart: every event applied, nothing late,
    // the same incidents and the same crises caught.
    let (ra, rb) = (backtest(&cfg, &a, &crises_a), backtest(&cfg, &b, &crises_b));
    assert_eq!(r.stats.applied, ra.stats.applied + rb.stats.applied);
    assert_eq!(r.stats.late, ra.stats.late + rb.stats.late);
    let mut apart = ra.incidents.clone();
    apart.extend(rb.incidents.iter().cloned());
    assert_eq!(r.incidents, apart);
    let (t, ta, tb) = (
        r.truth.as_ref().unwrap(),
        ra.truth.as_ref().unwrap(),
        rb.truth.as_ref().unwrap(),
    );
    assert_eq!(t.crises, 6);
    assert_eq!(t.missed, ta.missed + tb.missed, "{r}");
    assert!(t.missed < 3, "most crises are caught: {r}");
}

#[test]
fn replay_counts_and_names_the_stamp_and_keeps_the_transitions() {
    let (lines, _) = day(1, S, 120.0);
    let bad = with_bad_stamps(&lines);
    let join = |ls: &[Vec<u8>]| {
        let mut v = Vec::new();
        for l in ls {
            v.extend_from_slice(l);
            v.push(b'\n');
        }
        v
    };
    let cfg = example("24h");
    let run = |input: Vec<u8>| {
        let mut engine = Engine::new(&cfg).unwrap();
        let mut out = Vec::new();
        let s =
            crisiswatch::replay::replay(&mut engine, Cursor::new(input), &mut out, None, |_| {})
                .unwrap();
        (out, s)
    };
    let (clean, _) = run(join(&lines));
    let (out, summary) = run(join(&bad));
    assert!(!clean.is_empty());
    assert_eq!(out, clean, "the same transitions, byte for byte");
    assert_eq!(summary.stats.invalid[InvalidReason::ClockJump.index()], 2);
    assert!(
        summary
            .invalid_examples
            .iter()
            .any(|(line, r, d)| *line == 2000
                && *r == InvalidReason::ClockJump
                && d.contains("5138-")),
        "{summary}"
    );
}

#[test]
fn tune_leaves_the_stamps_out_as_backtest_does() {
    // Every tuning row on the day with the two bad stamps equals the row on
    // the clean day (and so the backtest of that candidate); without the
    // guard the same rows go blank.
    let (lines, crises) = day(1, S, 120.0);
    let bad = with_bad_stamps(&lines);
    let topts = |cfg_crises: &[Crisis]| tune::TuneOptions {
        rule: "complaint_rate".into(),
        varies: vec!["threshold=0.04,0.05,0.08".parse().unwrap()],
        summary: SummaryOptions {
            labels: Some(cfg_crises.to_vec()),
            ..SummaryOptions::default()
        },
        now_ms: None,
        pick: None,
    };
    let run = |cfg: &Config, ls: &[Vec<u8>]| {
        tune::run_lines(cfg, ls.iter().map(|l| l.as_slice()), &topts(&crises)).unwrap()
    };
    let cfg = example("24h");
    let clean = run(&cfg, &lines);
    let guarded = run(&cfg, &bad);
    assert_eq!(guarded.rows, clean.rows);
    assert!(
        clean.rows.iter().any(|r| r.summary.incidents > 0),
        "the rows compare something"
    );
    let off = run(&example("0"), &bad);
    assert_ne!(
        off.rows, clean.rows,
        "without the guard the stamp blanks tune"
    );
    assert!(
        off.rows.iter().all(|r| r.summary.incidents <= 1),
        "{:?}",
        off.rows
    );
}
