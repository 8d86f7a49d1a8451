//! `crisiswatch suggest` (issue 11, item 5): thresholds proposed from one
//! stretch of generated history, judged on another, differently seeded one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use crisiswatch::backtest::labels::{self, Crisis};
use crisiswatch::backtest::report::SummaryOptions;
use crisiswatch::backtest::suggest::{self, SuggestOptions, Suggestion};
use crisiswatch::backtest::{self};
use crisiswatch::config::Config;
use crisiswatch::generator::{Generator, GeneratorSettings, TrafficShape};

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DAY: i64 = 86_400_000;

fn shipped() -> Config {
    let text =
        std::fs::read_to_string(PathBuf::from(ROOT).join("config/crisiswatch.toml")).unwrap();
    Config::from_toml_str(&text, &HashMap::<String, String>::new()).unwrap()
}

/// `days` generated days from `start` (one seed each, from `seed`), each with
/// its three crises, as one history. Each day's generator sends the first
/// responses the previous day's complaints got after midnight, as a
/// continuous stream would (else every midnight leaves a response backlog).
fn history(seed: u64, start: i64, days: i64, opm: f64) -> (Vec<Vec<u8>>, Vec<Crisis>) {
    let mut lines = Vec::new();
    let mut crises = Vec::new();
    let mut carried = Vec::new();
    for d in 0..days {
        let from = start + d * DAY;
        let mut gen = Generator::new(GeneratorSettings {
            seed: seed + d as u64,
            start_ms: from,
            duration_ms: DAY,
            orders_per_minute: opm,
            crises: true,
            noise: true,
            shape: TrafficShape::default(),
        });
        gen.carry_in(carried);
        gen.generate_until(from + DAY, &mut lines);
        carried = gen.take_carry_over();
        crises.extend(labels::from_generator(gen.crises()));
    }
    (lines, crises)
}

fn opts(crises: &[Crisis], rules: &[&str]) -> SuggestOptions {
    SuggestOptions {
        summary: SummaryOptions {
            labels: Some(crises.to_vec()),
            ..SummaryOptions::default()
        },
        now_ms: None,
        max_false_per_30d: 1.0,
        rules: rules.iter().map(|r| r.to_string()).collect(),
    }
}

/// The configuration with every suggested rule in place.
fn apply(cfg: &Config, all: &[Suggestion]) -> Config {
    let mut c = cfg.clone();
    for sg in all {
        if let Some(i) = sg.chosen {
            let rule = &sg.result.rows[i].candidate.rule;
            for r in &mut c.rules {
                if r.name == rule.name {
                    *r = rule.clone();
                }
            }
        }
    }
    c
}

fn backtest(cfg: &Config, lines: &[Vec<u8>], crises: &[Crisis]) -> backtest::Report {
    let o = SummaryOptions {
        labels: Some(crises.to_vec()),
        ..SummaryOptions::default()
    };
    backtest::run_lines(cfg, lines.iter().map(|l| l.as_slice()), &o).unwrap()
}

/// 2026-11-01.
const A: i64 = 1_793_491_200_000;
/// 2026-11-11.
const B: i64 = A + 10 * DAY;

#[test]
fn suggested_thresholds_hold_on_a_differently_seeded_stretch() {
    // Two days each at the demo's volume; the rules of the three crises'
    // first detectors. (The whole configuration over a month: the ignored
    // test below.)
    let (a, crises_a) = history(1, A, 2, 300.0);
    let (b, crises_b) = history(51, B, 2, 300.0);
    let cfg = shipped();
    let rules = ["complaint_surge", "social_spike", "churn_surge"];
    let all = suggest::run_lines(
        &cfg,
        a.iter().map(|l| l.as_slice()),
        &opts(&crises_a, &rules),
    )
    .unwrap();
    assert_eq!(all.len(), 3);
    let text = suggest::render(&all, &opts(&crises_a, &rules));
    eprintln!("{text}");
    for sg in &all {
        let i = sg
            .chosen
            .unwrap_or_else(|| panic!("a suggestion for every rule:\n{text}"));
        assert_eq!(sg.allowed_false, 0, "two days allow no false incident");
        assert_eq!(sg.result.rows[i].false_incidents(), Some(0), "{text}");
    }
    assert!(text.contains("suggested"), "{text}");
    let tuned = apply(&cfg, &all);
    assert!(tuned.validate().is_empty());
    // On histories A and B the suggested thresholds page no more falsely and
    // miss no more than the configured ones, and catch every quality surge
    // and social spike. Measured: A pages nothing but the crises and catches
    // the churn wave on its first day only (the second brings too few
    // cancellations for either churn rule; README "Why not in 30 minutes below
    // ten times the volume"); B catches all six, and churn_surge pages once
    // outside them at the configured threshold: 11 cancellations in 30
    // minutes in eu-west × smb at 14:58 on its second day (8 within 6 minutes,
    // against 1.1 expected from its last 24 hours and about 2.3 at that hour;
    // by scripts/churn-surge-odds.py that slice pages falsely about once in
    // 10,000 days, the worst slice once in 5,000 with a day of history).
    for (lines, crises, which) in [(&a, &crises_a, "A"), (&b, &crises_b, "B")] {
        let r = backtest(&tuned, lines, crises);
        let t = r.truth.as_ref().unwrap();
        let configured = backtest(&cfg, lines, crises);
        let t0 = configured.truth.as_ref().unwrap();
        assert_eq!(t.crises, 6, "{which}:\n{r}");
        assert!(t.false_incidents <= t0.false_incidents, "{which}:\n{r}");
        assert!(t.false_incidents <= 1, "{which}:\n{r}");
        assert!(t.missed <= t0.missed, "{which}:\n{r}\n{configured}");
        for o in &t.outcomes {
            assert!(
                o.name == "churn_wave" || o.detected_at.is_some(),
                "{which}: {} missed\n{r}",
                o.name
            );
        }
    }
    // The snippet is a valid configuration of the three rules.
    let snippet = suggest::snippet(&all, &Default::default()).unwrap();
    let parsed = Config::from_toml_str(&snippet, &HashMap::<String, String>::new()).unwrap();
    assert_eq!(parsed.rules.len(), 3);
}

/// One stray stamp decades before the history (the probe's "old first line")
/// changes nothing: it is refuted as a clock jump behind the stream's start,
/// so the days allowed false incidents are the day the events cover, not the
/// 26 years the stray line would stretch the span to.
#[test]
fn a_stray_old_stamp_does_not_stretch_the_history() {
    let (day, crises) = history(7, A, 1, 300.0);
    let cfg = shipped();
    let rules = ["complaint_rate", "severe_share"];
    let mut strayed = vec![
        br#"{"id":"old-1","type":"order","ts":"2000-01-01T00:00:00Z","attrs":{"product":"tv-max","region":"apac"}}"#.to_vec(),
    ];
    strayed.extend(day.iter().cloned());
    let picks = |lines: &[Vec<u8>]| {
        let all = suggest::run_lines(
            &cfg,
            lines.iter().map(|l| l.as_slice()),
            &opts(&crises, &rules),
        )
        .unwrap();
        let text = suggest::render(&all, &opts(&crises, &rules));
        let picks: Vec<(usize, Option<usize>)> =
            all.iter().map(|sg| (sg.allowed_false, sg.chosen)).collect();
        (picks, text)
    };
    let (base, base_text) = picks(&day);
    let (with_stray, text) = picks(&strayed);
    assert!(
        base.iter().all(|p| p.0 == 0),
        "one day allows none: {base_text}"
    );
    assert_eq!(with_stray, base, "{base_text}\n---\n{text}");
    // The history tools refute it (more than engine.max_clock_jump behind
    // where the first events agree the stream starts) and name it: the
    // backtest spans the day.
    let r = backtest(&cfg, &strayed, &crises);
    let report = r.to_string();
    assert!(
        report.contains("non-blank input line 1: clock_jump: ts 2000-01-01T00:00:00Z is more than engine.max_clock_jump"),
        "{report}"
    );
    assert!(report.starts_with("Backtest over 2026-"), "{report}");
    assert!(!report.contains("gap(s) of more than a day"), "{report}");
}

/// A month at a tenth of the demo's volume (30 days, 90 crises;
/// `CRISISWATCH_MONTH_OPM` sets another) proposes, a second differently
/// seeded month judges. Measured (2026-12-02, release build, 52 s, with the
/// churn rules churn_surge / churn_surge_2h and the 99 % complaint_rate and
/// detractor_share): suggested detractor_share 0.3 → 0.21, at_risk_customers
/// 0.15 → 0.105 and churn_surge_2h 5 → 3.5 (one churn wave caught on month A,
/// none false), every other rule kept (response_backlog at 10: 60 incidents
/// on month A, none false); on month B the suggested configuration pages no
/// false incident and misses 30 of 90 crises, as the configured one does:
/// the 30 churn waves, too few cancellations at that volume to tell from
/// chance. Every quality surge and social spike is caught. At the demo's
/// volume (`CRISISWATCH_MONTH_OPM=300`, 263 s): churn_surge_2h 5 → 4, the rest
/// kept; month B: no false incident, 7 churn waves missed (configured: 13).
/// Before the margin without `for`, detractor_share went to 0.18 and gave 3
/// false incidents on month B.
#[test]
#[ignore = "a generated month twice through every rule: minutes in a debug build"]
fn suggest_on_a_month_then_a_second_month() {
    // CRISISWATCH_MONTH_OPM: orders per minute at the daily peak (the demo's
    // is 300).
    let opm: f64 = std::env::var("CRISISWATCH_MONTH_OPM")
        .map(|v| v.parse().unwrap())
        .unwrap_or(30.0);
    let (a, crises_a) = history(100, A - 60 * DAY, 30, opm);
    let (b, crises_b) = history(500, A - 30 * DAY, 30, opm);
    let cfg = shipped();
    let all =
        suggest::run_lines(&cfg, a.iter().map(|l| l.as_slice()), &opts(&crises_a, &[])).unwrap();
    eprintln!("{}", suggest::render(&all, &opts(&crises_a, &[])));
    let tuned = apply(&cfg, &all);
    let before = backtest(&cfg, &b, &crises_b);
    let r = backtest(&tuned, &b, &crises_b);
    let (t0, t) = (before.truth.as_ref().unwrap(), r.truth.as_ref().unwrap());
    eprintln!(
        "month B: configured missed {} false {}; suggested missed {} false {}",
        t0.missed, t0.false_incidents, t.missed, t.false_incidents
    );
    for (which, truth) in [("configured", t0), ("suggested", t)] {
        let mut missed = BTreeMap::<&str, usize>::new();
        for o in truth.outcomes.iter().filter(|o| o.detected_at.is_none()) {
            *missed.entry(o.name.as_str()).or_default() += 1;
        }
        eprintln!("month B, {which}: missed by crisis {missed:?}");
    }
    assert_eq!(t.false_incidents, 0, "{r}");
    assert!(t.missed <= t0.missed, "{r}");
}

#[test]
fn the_cli_reports_and_writes_a_snippet_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, crises_a) = history(7, A, 1, 60.0);
    let input = dir.path().join("a.jsonl");
    let mut text = Vec::new();
    for l in &a {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let labels = dir.path().join("a.crises");
    let lines: Vec<String> = crises_a
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "kind": c.kind,
                "slice": c.slice.iter().cloned().collect::<HashMap<_, _>>(),
                "start": crisiswatch::event::format_ts(c.start_ms),
                "end": crisiswatch::event::format_ts(c.end_ms),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&labels, lines.join("\n") + "\n").unwrap();
    let snippet = dir.path().join("suggested.toml");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = Command::new(BIN)
        .args([
            "suggest",
            "--config",
            &format!("{ROOT}/config/crisiswatch.toml"),
            "--input",
            &s(&input),
            "--labels",
            &s(&labels),
            "--now",
            "2026-11-03T00:00:00Z",
            "--rule",
            "social_spike",
            "--rule",
            "complaint_rate",
            "--write-snippet",
            &s(&snippet),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "at most 1 false incident(s) per rule per 30 days outside the labelled crises",
        // 0.25 … 0.65: from 0.75 on its critical (×1.4) would pass 1,
        // which a share never does.
        "social_spike (8 candidates, 0 false allowed on this history)",
        "  configured 0.5: ",
        "complaint_rate (",
        "caught ",
        "wrote the suggested rules to",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let check = Command::new(BIN)
        .args(["check", "--config", &s(&snippet)])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("is valid (2 rules"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // An unknown rule names the known ones.
    let bad = Command::new(BIN)
        .args([
            "suggest",
            "--config",
            &format!("{ROOT}/config/crisiswatch.toml"),
            "--input",
            &s(&input),
            "--now",
            "2026-11-03T00:00:00Z",
            "--rule",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("social_spike"));
}
