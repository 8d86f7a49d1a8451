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

/// `replay` of `lines` (one per line): its transitions output and summary.
fn replay_lines(cfg: &Config, lines: &[Vec<u8>]) -> (Vec<u8>, crisiswatch::replay::ReplaySummary) {
    let input: Vec<u8> = lines
        .iter()
        .flat_map(|l| [l.as_slice(), b"\n"].concat())
        .collect();
    let mut engine = Engine::new(cfg).unwrap();
    let mut out = Vec::new();
    let s = crisiswatch::replay::replay(&mut engine, Cursor::new(input), &mut out, None, |_| {})
        .unwrap();
    (out, s)
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

/// A burst of stray stamps in a row (a producer whose clock field was
/// corrupted for a moment): more than `clock_jump_confirm`, but scattered
/// over centuries, so they do not agree with one another and confirm
/// nothing. Each is refuted and named; the day is as without them.
#[test]
fn a_burst_of_scattered_stamps_does_not_blank_the_backtest() {
    let (lines, crises) = day(3, S, 300.0);
    let mut bad = lines.clone();
    for (i, ts) in [
        99_999_999_999_999_i64,
        S + 400 * DAY,
        S + 40_000 * DAY,
        4_102_444_800_000,
        S + 9 * DAY,
    ]
    .into_iter()
    .enumerate()
    {
        bad.insert(
            3000 + i,
            format!(
                r#"{{"id":"stray-{i}","type":"complaint","ts":{ts},"attrs":{{"product":"router-x","region":"eu-west"}}}}"#
            )
            .into_bytes(),
        );
    }
    let cfg = example("24h");
    let clean = backtest(&cfg, &lines, &crises);
    let r = backtest(&cfg, &bad, &crises);
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 5, "{r}");
    assert_eq!(r.stats.applied, clean.stats.applied);
    assert_eq!(r.stats.late, clean.stats.late);
    assert_eq!(r.incidents, clean.incidents);
    let t = r.truth.as_ref().unwrap();
    assert_eq!((t.crises, t.missed, t.false_incidents), (3, 0, 0), "{r}");
    let named: Vec<u64> = r
        .invalid_examples
        .iter()
        .filter(|e| e.1 == InvalidReason::ClockJump)
        .map(|e| e.0)
        .collect();
    assert_eq!(named, [3001, 3002, 3003, 3004, 3005]);
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

/// The first line of the history stamped days ahead: with no clock yet, it
/// would have started the clock there and made every line after it late.
/// The history tools wait for the first events to agree before the clock
/// starts, so it is refuted like a stamp in the middle.
#[test]
fn a_first_line_days_ahead_does_not_blank_the_history() {
    let (lines, crises) = day(2, S, 120.0);
    let mut bad = lines.clone();
    bad.insert(
        0,
        format!(
            r#"{{"id":"first-ahead","type":"order","ts":{},"attrs":{{"product":"tv-max","region":"apac"}}}}"#,
            S + 3 * DAY
        )
        .into_bytes(),
    );
    let cfg = example("24h");
    let clean = backtest(&cfg, &lines, &crises);
    let r = backtest(&cfg, &bad, &crises);
    assert_eq!(r.incidents, clean.incidents, "{r}");
    assert_eq!(r.truth, clean.truth);
    assert_eq!(
        (r.stats.applied, r.stats.late),
        (clean.stats.applied, clean.stats.late)
    );
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 1, "{r}");
    assert!(
        r.to_string()
            .contains("input line 1: clock_jump: ts 2026-11-23"),
        "{r}"
    );
    // replay: the same transitions as without the line, the line named.
    let (want, _) = replay_lines(&cfg, &lines);
    let (got, summary) = replay_lines(&cfg, &bad);
    assert_eq!(got, want, "the same transitions, byte for byte");
    assert_eq!(summary.stats.invalid[InvalidReason::ClockJump.index()], 1);
    assert!(
        summary
            .invalid_examples
            .iter()
            .any(|(line, r, _)| *line == 1 && *r == InvalidReason::ClockJump),
        "{summary}"
    );
}

/// A stray old line at the top of a history (ten days before the rest, or
/// a stamp in seconds read as milliseconds): it used to pass — nothing was
/// ahead of it — and start every surge baseline's warm-up ten days early,
/// so `complaint_surge` paged five times in the first hours. The first
/// events agree on where the stream starts; the stray is refuted and named.
#[test]
fn a_first_line_days_behind_does_not_start_the_baselines_early() {
    let (lines, crises) = day(7, S, 300.0);
    let cfg = example("24h");
    let clean = backtest(&cfg, &lines, &crises);
    for (name, ts) in [("ten days behind", S - 10 * DAY), ("in seconds", S / 1000)] {
        let mut bad = lines.clone();
        bad.insert(
            0,
            format!(
                r#"{{"id":"stray-old","type":"complaint","ts":{ts},"attrs":{{"product":"router-x","region":"eu-west"}}}}"#
            )
            .into_bytes(),
        );
        let r = backtest(&cfg, &bad, &crises);
        assert_eq!(r.incidents, clean.incidents, "{name}: {r}");
        assert_eq!(r.truth, clean.truth, "{name}");
        assert_eq!(r.stats.applied, clean.stats.applied, "{name}");
        assert_eq!(
            r.stats.invalid[InvalidReason::ClockJump.index()],
            1,
            "{name}: {r}"
        );
        let text = r.to_string();
        assert!(
            text.contains("input line 1: clock_jump: ts ") && text.contains("behind 2026-11-20"),
            "{name}: {text}"
        );
    }
}

/// A batch stamped with one wrong time (ten lines at a default date a week
/// ahead): one time, however many lines, confirms no jump; the events after
/// it refute it. It used to confirm itself and make 70 % of the day late.
#[test]
fn a_burst_at_one_wrong_time_does_not_blank_the_backtest() {
    let (lines, crises) = day(7, S, 300.0);
    let mut bad = lines.clone();
    for i in 0..10 {
        bad.insert(
            4000 + i,
            format!(
                r#"{{"id":"batch-{i}","type":"complaint","ts":{},"attrs":{{"product":"phone-z","region":"apac"}}}}"#,
                S + 7 * DAY
            )
            .into_bytes(),
        );
    }
    let cfg = example("24h");
    let clean = backtest(&cfg, &lines, &crises);
    let r = backtest(&cfg, &bad, &crises);
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 10, "{r}");
    assert_eq!(
        (r.stats.applied, r.stats.late),
        (clean.stats.applied, clean.stats.late)
    );
    assert_eq!(r.incidents, clean.incidents);
    let t = r.truth.as_ref().unwrap();
    assert_eq!((t.crises, t.missed, t.false_incidents), (3, 0, 0), "{r}");
}

#[test]
fn replay_counts_and_names_the_stamp_and_keeps_the_transitions() {
    let (lines, _) = day(1, S, 120.0);
    let bad = with_bad_stamps(&lines);
    let cfg = example("24h");
    let (clean, _) = replay_lines(&cfg, &lines);
    let (out, summary) = replay_lines(&cfg, &bad);
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

/// Index of the first line of `kind` in `group` (every label matches the
/// line's attrs) with `ts` in `(lo, hi]`.
fn line_in(lines: &[Vec<u8>], kind: &str, group: &[(String, String)], lo: i64, hi: i64) -> usize {
    lines
        .iter()
        .position(|l| {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) else {
                return false;
            };
            let ts = match &v["ts"] {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => crisiswatch::event::parse_rfc3339_ms(s),
                _ => None,
            };
            v["type"] == kind
                && ts.is_some_and(|t| t > lo && t <= hi)
                && group.iter().all(|(k, want)| v["attrs"][k] == want.as_str())
        })
        .expect("a line in the incident's slice")
}

#[test]
fn review_counts_the_evidence_behind_the_same_guard() {
    // A complaint inside an incident's slice and interval, its redelivery
    // right after it — and, in the bad history, a year-5138 stamp between
    // the two. The backtest drops the redelivery either way (the guard keeps
    // the clock); the review's event figures must too, and the review
    // itself must be the clean history's.
    let (lines, crises) = day(1, S, 120.0);
    let cfg = example("24h");
    let clean_r = backtest(&cfg, &lines, &crises);
    let inc = clean_r
        .incidents
        .iter()
        .find(|i| i.rule == "complaint_surge")
        .unwrap_or_else(|| panic!("a complaint_surge incident: {clean_r}"));
    let j = line_in(
        &lines,
        "complaint",
        &inc.group,
        inc.fired_at - 5 * 60_000,
        inc.fired_at,
    );
    let stamp = br#"{"id":"bad-5138","type":"complaint","ts":99999999999999,"attrs":{"product":"router-x","region":"eu-west"}}"#.to_vec();
    let mut clean = lines[..=j].to_vec();
    clean.push(lines[j].clone());
    clean.extend(lines[j + 1..].iter().cloned());
    let mut bad = lines[..=j].to_vec();
    bad.push(stamp);
    bad.push(lines[j].clone());
    bad.extend(lines[j + 1..].iter().cloned());

    let r_clean = backtest(&cfg, &clean, &crises);
    let r_bad = backtest(&cfg, &bad, &crises);
    assert_eq!(r_bad.incidents, r_clean.incidents);
    assert_eq!(r_bad.stats.invalid[InvalidReason::ClockJump.index()], 1);
    let all: Vec<&backtest::report::Incident> = r_clean.incidents.iter().collect();
    let end = r_clean.end_ms.unwrap();
    let evidence = |cfg: &Config, ls: &[Vec<u8>]| {
        backtest::review::collect_evidence(cfg, &all, end, None, |f| {
            ls.iter().for_each(|l| f(l));
            Ok(())
        })
        .unwrap()
    };
    let k = all
        .iter()
        .position(|i| i.dedup_key == inc.dedup_key)
        .unwrap();
    let ev_clean = evidence(&cfg, &clean);
    let ev_bad = evidence(&cfg, &bad);
    assert!(ev_clean[k].events > 0 && ev_clean[k].signal > 0);
    assert_eq!(ev_bad, ev_clean, "the stamp changes no event figure");
    // Without the guard the stamp moves the duplicate memory's clock a
    // few thousand years on: the redelivery is counted a second time.
    let ev_off = evidence(&example("0"), &bad);
    assert_eq!(ev_off[k].events, ev_clean[k].events + 1);

    // The CLI: `review` of the history with the stamp is the clean one's.
    let dir = tempfile::tempdir().unwrap();
    let review = |name: &str, ls: &[Vec<u8>]| {
        let path = dir.path().join(name);
        let mut text = Vec::new();
        for l in ls {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crisiswatch"))
            .args([
                "review",
                "--config",
                &format!("{ROOT}/config/crisiswatch.toml"),
            ])
            .arg("--input")
            .arg(&path)
            .args([
                "--now",
                "2026-11-22T00:00:00Z",
                "--incident",
                &inc.dedup_key,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let md_clean = review("clean.jsonl", &clean);
    let md_bad = review("bad.jsonl", &bad);
    assert!(md_clean.contains(&inc.dedup_key), "{md_clean}");
    assert_eq!(md_bad, md_clean);
}

/// A clock jump is named even after more than five other invalid lines
/// (the examples of other reasons stop at five; the jumps do not).
#[test]
fn a_jump_after_other_invalid_lines_is_still_named() {
    let t0 = S;
    let mut lines: Vec<Vec<u8>> = (0..8)
        .map(|i| format!("not json {i}").into_bytes())
        .collect();
    for i in 0..50 {
        lines.push(
            format!(
                r#"{{"id":"o{i}","type":"order","ts":{},"attrs":{{"product":"p"}}}}"#,
                t0 + i * 60_000
            )
            .into_bytes(),
        );
        if i == 20 {
            lines.push(
                br#"{"id":"bad-5138","type":"complaint","ts":99999999999999,"attrs":{"product":"p"}}"#
                    .to_vec(),
            );
        }
    }
    let r = backtest(&example("24h"), &lines, &[]);
    assert_eq!(r.stats.invalid[InvalidReason::NotJson.index()], 8);
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 1);
    let text = r.to_string();
    assert!(
        text.contains("input line 30: clock_jump: ts 5138-"),
        "{text}\n{:?}",
        r.invalid_examples
    );
    assert_eq!(
        r.invalid_examples
            .iter()
            .filter(|e| e.1 == InvalidReason::NotJson)
            .count(),
        5
    );
}

/// A stream of one complaint a day (at scattered hours) is its own rhythm,
/// not a series of clock jumps: every event is applied, in a backtest and a
/// replay, and the alert fires on the day the fourth complaint of the week
/// comes — as with the guard off.
#[test]
fn a_stream_of_one_event_a_day_loses_nothing() {
    let rules = |jump: &str| {
        Config::from_toml_str(
            &format!(
                r#"
[engine]
allowed_lateness = "0s"
max_clock_jump = "{jump}"

[[rules]]
name = "weekly"
window = "7d"
slide = "1d"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 3 }}
"#
            ),
            &HashMap::<String, String>::new(),
        )
        .unwrap()
    };
    const HOUR: i64 = 3_600_000;
    let lines: Vec<Vec<u8>> = (0..30i64)
        .map(|d| {
            let ts = S + d * DAY + ((d * 7919) % 21) * HOUR;
            format!(r#"{{"id":"c{d}","type":"complaint","ts":{ts},"attrs":{{}}}}"#).into_bytes()
        })
        .collect();
    let guarded = backtest(&rules("24h"), &lines, &[]);
    let off = backtest(&rules("0"), &lines, &[]);
    assert_eq!(guarded.stats.applied, 30, "{guarded}");
    assert_eq!(guarded.stats.invalid_total(), 0, "{guarded}");
    assert_eq!(
        guarded
            .incidents
            .iter()
            .map(|i| i.fired_at)
            .collect::<Vec<_>>(),
        off.incidents.iter().map(|i| i.fired_at).collect::<Vec<_>>(),
        "{guarded}\n{off}"
    );
    assert!(!guarded.incidents.is_empty(), "{guarded}");
    // A stamp six weeks ahead of that stream is still refuted.
    let mut strayed = lines.clone();
    strayed.insert(
        20,
        format!(
            r#"{{"id":"bad","type":"complaint","ts":{},"attrs":{{}}}}"#,
            S + 62 * DAY
        )
        .into_bytes(),
    );
    let r = backtest(&rules("24h"), &strayed, &[]);
    assert_eq!(r.stats.applied, 30, "{r}");
    assert_eq!(r.stats.invalid[InvalidReason::ClockJump.index()], 1, "{r}");
}
