//! The backtest commands run as a user runs them: `generate`, then
//! `backtest`, `tune`, `chart`, `review` and `test-rules` on the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The wall clock the history commands check future skew against: after
/// the generated history, so the tests do not depend on today's date.
const HISTORY_NOW: &str = "2026-11-22T00:00:00Z";

fn example() -> String {
    format!("{ROOT}/config/crisiswatch.toml")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "crisiswatch {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A generated day and its crises, written once by `crisiswatch generate`.
fn generate(_dir: &Path) -> (PathBuf, PathBuf) {
    static DAY: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DAY.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli");
        std::fs::create_dir_all(&dir).unwrap();
        generate_into(&dir)
    })
    .clone()
}

fn generate_into(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("day.jsonl");
    let crises = dir.join("crises.jsonl");
    run(&[
        "generate",
        "--seed",
        "5",
        "--orders-per-minute",
        "300",
        "--output",
        s(&data),
        "--crises",
        s(&crises),
    ]);
    (data, crises)
}

#[test]
fn backtest_reads_split_and_gzipped_history_like_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, crises) = generate(dir.path());
    let whole = run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&data),
        "--labels",
        s(&crises),
        "--json",
        s(&dir.path().join("report.json")),
    ]);
    let text = String::from_utf8(whole.stdout).unwrap();
    assert!(
        text.contains("missed 0 of 3, false incidents 0 of"),
        "{text}"
    );
    assert!(text.contains("precision 1.00, recall 1.00"), "{text}");

    // The same history as a plain first half and a gzipped second half.
    let all = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let first = dir.path().join("part1.jsonl");
    std::fs::write(&first, a.join("\n") + "\n").unwrap();
    let second = dir.path().join("part2.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((b.join("\n") + "\n").as_bytes()).unwrap();
    // With the zero padding a tar or a tape leaves after the last member
    // (`zcat` reads past it; it stopped the backtest after its last line).
    let mut padded = gz.finish().unwrap();
    padded.extend(vec![0u8; 512]);
    std::fs::write(&second, padded).unwrap();
    let split = run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&first),
        s(&second),
        "--labels",
        s(&crises),
    ]);
    assert_eq!(String::from_utf8(split.stdout).unwrap(), text);
    // A split that does not overlap says nothing of overlaps.
    assert!(
        !String::from_utf8_lossy(&split.stderr).contains("overlap"),
        "{}",
        String::from_utf8_lossy(&split.stderr)
    );

    // Overlapping parts: warned, naming both files.
    let (c, d) = (&lines[..lines.len() * 2 / 3], &lines[lines.len() / 3..]);
    let early = dir.path().join("early.jsonl");
    let late = dir.path().join("late.jsonl");
    std::fs::write(&early, c.join("\n") + "\n").unwrap();
    std::fs::write(&late, d.join("\n") + "\n").unwrap();
    let over = run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&early),
        s(&late),
    ]);
    let err = String::from_utf8_lossy(&over.stderr);
    assert!(
        err.contains("inputs overlap in time") && err.contains(s(&late)) && err.contains(s(&early)),
        "{err}"
    );
    // The two halves given newest first: out of order, not overlapping.
    let reversed = run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&second),
        s(&first),
    ]);
    let err = String::from_utf8_lossy(&reversed.stderr);
    assert!(
        err.contains("inputs out of time order") && err.contains("give the files oldest first"),
        "{err}"
    );
    assert!(!err.contains("overlap"), "{err}");
    // One file twice: refused.
    let twice = Command::new(BIN)
        .args([
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&first),
            s(&first),
        ])
        .output()
        .unwrap();
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("is given twice"),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );
    // The same file through a hard link: refused too.
    let hard = dir.path().join("hard-link.jsonl");
    std::fs::hard_link(&first, &hard).unwrap();
    let linked = Command::new(BIN)
        .args([
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&first),
            s(&hard),
        ])
        .output()
        .unwrap();
    assert!(!linked.status.success());
    assert!(
        String::from_utf8_lossy(&linked.stderr).contains("is given twice"),
        "{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    // Two outputs naming one file (one not there yet): refused before
    // anything is read or written.
    let same = dir.path().join("same.out");
    let clash = Command::new(BIN)
        .args([
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&first),
            "--transitions",
            s(&same),
            "--json",
            &format!("{}/./same.out", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("named for two of this command's outputs"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
    assert!(!same.exists());

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["truth"]["missed"], 0);
    assert_eq!(json["truth"]["recall"], 1.0);
    // Times are RFC 3339 under `_at` (or plain) names; `_ms` names hold ms.
    assert!(
        json["first_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
    assert!(
        json["end_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
    let outcome = &json["truth"]["outcomes"][0];
    assert!(
        outcome["start"].is_string() && outcome["end"].is_string(),
        "{outcome}"
    );
    assert!(
        outcome["delay_ms"].is_i64() && json["covered_ms"].is_i64(),
        "{json}"
    );
    for gone in ["first_ms", "end_ms"] {
        assert!(json.get(gone).is_none(), "{gone}");
    }
    assert_eq!(json["rules"].as_array().unwrap().len(), 10);
    assert!(json["incidents"][0]["dedup_key"].is_string());
    assert!(json["incidents"][0]["group"].is_object());
}

#[test]
fn tune_writes_csv_chart_and_a_snippet_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (data, crises) = generate(dir.path());
    let csv = dir.path().join("t.csv");
    let svg = dir.path().join("t.svg");
    let snippet = dir.path().join("rule.toml");
    let out = run(&[
        "tune",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&data),
        "--rule",
        "social_spike",
        "--vary",
        "threshold=0.4,0.6,0.8",
        "--vary",
        "for=0m,3m",
        "--labels",
        s(&crises),
        "--crisis",
        "social_spike",
        "--csv",
        s(&csv),
        "--chart",
        s(&svg),
        "--write-snippet",
        s(&snippet),
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("7 candidates in one pass"), "{table}");
    assert!(table.contains("> chosen: #"), "{table}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 8);
    roxmltree::Document::parse(&std::fs::read_to_string(&svg).unwrap()).unwrap();
    // The snippet is a valid configuration on its own.
    let check = run(&["check", "--config", s(&snippet)]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("is valid (1 rule,"));

    // Without labels nothing is chosen, so a snippet needs --pick.
    let out = Command::new(BIN)
        .args([
            "tune",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&data),
            "--rule",
            "social_spike",
            "--vary",
            "threshold=0.4,0.6",
            "--write-snippet",
            s(&snippet),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pick"));
    // A bad --vary names itself.
    let out = Command::new(BIN)
        .args([
            "tune",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&data),
            "--rule",
            "social_spike",
            "--vary",
            "treshold=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting \"treshold\""));
}

#[test]
fn chart_and_review_of_the_quality_surge() {
    let dir = tempfile::tempdir().unwrap();
    let (data, crises) = generate(dir.path());
    let svg = dir.path().join("c.svg");
    let out = run(&[
        "chart",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&data),
        "--rule",
        "complaint_rate",
        "--group",
        "region=eu-west,product=router-x",
        "--labels",
        s(&crises),
        "--output",
        s(&svg),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 crisis interval(s)"));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert!(doc.descendants().any(|n| n
        .text()
        .is_some_and(|t| t.trim() == "crisis: quality_surge")));
    // A slice that does not fit the rule is refused with the expected form.
    let bad = Command::new(BIN)
        .args([
            "chart",
            "--now",
            HISTORY_NOW,
            "--config",
            &example(),
            "--input",
            s(&data),
            "--rule",
            "complaint_rate",
            "--group",
            "product=router-x",
            "--output",
            s(&svg),
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("product=VALUE,region=VALUE"));

    // backtest --review-dir writes one review per incident.
    let reviews = dir.path().join("reviews");
    run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&data),
        "--labels",
        s(&crises),
        "--review-dir",
        s(&reviews),
        "--transitions",
        s(&dir.path().join("t.jsonl")),
    ]);
    let md = std::fs::read_dir(&reviews)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| s(p).contains("complaint_rate_product_router-x_region_eu-west"))
        .expect("a review of the quality surge's complaint_rate incident");
    let review = std::fs::read_to_string(&md).unwrap();
    for want in [
        "# Incident review: complaint_rate — product=router-x region=eu-west",
        "| Known crisis | quality_surge (product_quality_surge)",
        "## Timeline",
        "| firing | warning |",
        "| Distinct customers (signal events) |",
        "| category | product_quality |",
    ] {
        assert!(review.contains(want), "missing {want:?} in\n{review}");
    }
    let n = std::fs::read_dir(&reviews).unwrap().count();
    assert!(n >= 3, "{n} reviews");
    // And the transitions file feeds `review` without a replay.
    let out = run(&[
        "review",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--transitions",
        s(&dir.path().join("t.jsonl")),
        "--incident",
        "churn_surge/",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# Incident review: churn_surge"), "{text}");
    assert!(text.contains("Not computed: pass the history"), "{text}");
    // With the history too, the events are counted (one pass, no replay).
    let md = dir.path().join("churn.md");
    run(&[
        "review",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--transitions",
        s(&dir.path().join("t.jsonl")),
        "--input",
        s(&data),
        "--incident",
        "churn_surge/",
        "--output",
        s(&md),
    ]);
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| By type | cancellation "), "{text}");
    assert!(
        text.contains("| segment |")
            || text.contains("| category |")
            || text.contains("| channel |"),
        "{text}"
    );
}

#[test]
fn test_rules_exit_code_follows_the_cases() {
    let shipped = format!("{ROOT}/config/tests/crisiswatch_rules.toml");
    let out = run(&["test-rules", &shipped]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().ends_with("10 passed, 0 failed"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"
[[rules]]
name = "errors"
window = "5m"
indicator = { kind = "count", select = { type = "error" } }
thresholds = { warning = 0 }

[[tests]]
name = "one error fires, but the expectation says pending"

[[tests.input]]
event = { type = "error" }

[[tests.expect]]
rule = "errors"
state = "pending"
at = "+0s"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["test-rules", s(&p)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL  one error fires"), "{text}");
    assert!(text.contains("state = \"firing\", at = \"+0s\""), "{text}");
    assert!(text.trim_end().ends_with("0 passed, 1 failed"), "{text}");

    // An unreadable file is an error too.
    let out = Command::new(BIN)
        .args(["test-rules", "/nonexistent/t.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/t.toml"));
}

/// The README's `test-rules` example passes against the shipped
/// configuration (a field trial found it could not: orders only, and the
/// rule's slicing was product alone).
#[test]
fn the_readme_s_test_rules_example_passes() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("config = \"../crisiswatch.toml\"        # or [engine]")
        .expect("the README's test-rules example");
    let end = start + readme[start..].find("```").expect("its end");
    let block: String = readme[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("example.toml");
    let shipped = format!("{ROOT}/config/crisiswatch.toml");
    std::fs::write(
        &p,
        block.replace("\"../crisiswatch.toml\"", &format!("{shipped:?}")),
    )
    .unwrap();
    let out = run(&["test-rules", s(&p)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ok    complaint rate fires"), "{text}");
    assert!(text.trim_end().ends_with("1 passed, 0 failed"), "{text}");
}

/// Issue 11 (clock robustness, history half): a line stamped in the year 5138
/// is rejected against the wall clock (`--now`, so the test does not depend
/// on today's date; the crises are still found, the line is counted
/// `future_timestamp`); a line merely days ahead of the rest of an old
/// history is held aside by `engine.max_clock_jump` and, not confirmed by the
/// lines after it, counted `clock_jump` and named in the report. With the
/// guard off it moves the clock, and `backtest` and `chart` then warn that
/// most events were late, naming that line.
#[test]
fn bad_timestamps_in_history_are_rejected_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, crises) = generate(dir.path());
    let all = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    // The history with `line` as its `n`-th line.
    let with_line_at = |n: usize, line: &str, name: &str| {
        let mut copy = lines.clone();
        copy.insert(n - 1, line);
        let p = dir.path().join(name);
        std::fs::write(&p, copy.join("\n") + "\n").unwrap();
        p
    };
    const NOW: &str = "2026-12-01T00:00:00Z";
    let far = r#"{"id":"bad-5138","type":"order","ts":99999999999999,"attrs":{"product":"router-x","region":"eu-west"}}"#;
    let far_file = with_line_at(1000, far, "far.jsonl");
    let json = dir.path().join("far.json");
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&far_file),
        "--labels",
        s(&crises),
        "--json",
        s(&json),
        "--now",
        NOW,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("missed 0 of 3"), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let base_json = dir.path().join("base.json");
    run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&data),
        "--json",
        s(&base_json),
        "--now",
        NOW,
    ]);
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&base_json).unwrap()).unwrap();
    assert_eq!(
        report["stats"]["invalid"].as_u64().unwrap(),
        base["stats"]["invalid"].as_u64().unwrap() + 1,
        "the year-5138 line is one more invalid line"
    );
    // Named by reason and line in the JSON report as in the text.
    let by = &report["stats"]["invalid_by_reason"];
    let base_by = &base["stats"]["invalid_by_reason"];
    let n = |v: &serde_json::Value, r: &str| v[r].as_u64().unwrap_or(0);
    assert_eq!(
        n(by, "future_timestamp"),
        n(base_by, "future_timestamp") + 1,
        "{by} vs {base_by}"
    );
    let named = report["invalid_lines"].as_array().expect("invalid_lines");
    assert!(
        named.iter().all(|l| l["line"].as_u64().is_some()
            && l["reason"].is_string()
            && l["detail"].is_string()),
        "{named:?}"
    );
    assert_eq!(report["stats"]["late"], base["stats"]["late"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("were late"), "{stderr}");

    // Three days after the generated day: in the past of the wall clock,
    // but far ahead of the history's own clock.
    let ahead = r#"{"id":"bad-ahead","type":"order","ts":"2026-11-24T00:00:00Z","attrs":{"product":"router-x","region":"eu-west"}}"#;
    let ahead_file = with_line_at(2000, ahead, "ahead.jsonl");
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&ahead_file),
        "--labels",
        s(&crises),
        "--now",
        NOW,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("missed 0 of 3"), "{text}");
    assert!(
        text.contains("ahead.jsonl:2000: clock_jump: ts 2026-11-24T00:00:00Z is more than engine.max_clock_jump"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("were late"), "{stderr}");

    // With the guard off, the line moves the clock: the tools warn.
    let off = dir.path().join("off.toml");
    let shipped = std::fs::read_to_string(example()).unwrap();
    let guard_off = shipped.replacen("max_clock_jump = \"24h\"", "max_clock_jump = \"0\"", 1);
    assert_ne!(guard_off, shipped);
    std::fs::write(&off, guard_off).unwrap();
    for args in [
        vec!["backtest", "--input", s(&ahead_file)],
        vec![
            "chart",
            "--input",
            s(&ahead_file),
            "--rule",
            "complaint_rate",
            "--group",
            "product=router-x,region=eu-west",
            "--output",
            s(&dir.path().join("c.svg")),
        ],
    ] {
        let mut full = args.clone();
        full.extend(["--config", s(&off), "--now", NOW]);
        let out = run(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("were late for every rule")
                && stderr.contains("ahead.jsonl:2000 moved the clock to 2026-11-24T00:00:00"),
            "{}: {stderr}",
            args[0]
        );
    }

    // Files given newest first: no stamp is wrong, the order is. The warning
    // says so, and its count is the report's `late`.
    let (first, second) = lines.split_at(lines.len() * 2 / 3);
    let early = dir.path().join("early.jsonl");
    let later = dir.path().join("later.jsonl");
    std::fs::write(&early, first.join("\n") + "\n").unwrap();
    std::fs::write(&later, second.join("\n") + "\n").unwrap();
    let json = dir.path().join("swapped.json");
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&later),
        s(&early),
        "--json",
        s(&json),
        "--now",
        NOW,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let late = report["stats"]["late"].as_u64().unwrap();
    assert!(late > 0, "{report}");
    assert!(
        stderr.contains(&format!("{late} of "))
            && stderr.contains("were late for every rule that selected them")
            && stderr.contains("later.jsonl:")
            && stderr.contains("out of time order")
            && stderr.contains("give the files oldest first")
            && !stderr.contains("check that event's time"),
        "late {late}: {stderr}"
    );

    // One line stamped 1970 mid-history: too few to reach the late share,
    // yet its time is wrong; it is named (it was counted late, nowhere else).
    let past = r#"{"id":"bad-1970","type":"order","ts":0,"attrs":{"product":"router-x","region":"eu-west"}}"#;
    let past_file = with_line_at(3000, past, "past.jsonl");
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&past_file),
        "--now",
        NOW,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "1 event(s) lie more than 30 days behind the event before them, the first at"
        ) && stderr.contains("past.jsonl:3000 (1970-01-01T00:00:00"),
        "{stderr}"
    );
}

/// The history options every history command shares: a Kafka option needs
/// `--kafka-topic` and none goes with `--input`; a bad `--now` is named the
/// same way by `replay`, `backtest`, `tune`, `chart` and `review`.
#[test]
fn the_shared_history_options_are_checked_alike_by_every_command() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_shared");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    let cfg = example();
    let refused = |args: &[&str], says: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    };
    for cmd in ["backtest", "chart", "review"] {
        let extra: &[&str] = match cmd {
            "chart" => &[
                "--rule",
                "complaint_surge",
                "--group",
                "product=x",
                "--output",
                "x.svg",
            ],
            _ => &[],
        };
        let with = |more: &[&str]| {
            let mut a = vec![cmd, "--config", &cfg];
            a.extend_from_slice(extra);
            a.extend_from_slice(more);
            a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        let v = with(&["--bootstrap", "127.0.0.1:1"]);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&v, &["--kafka-topic <TOPIC>"]);
        let v = with(&["--input", s(&input), "--from-offset", "3"]);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&v, &["cannot be used with", "--from-offset"]);
        let v = with(&["--input", s(&input), "--kafka-topic", "t"]);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&v, &["cannot be used with", "--kafka-topic"]);
        let v = with(&["--input", s(&input), "--now", "yesterday"]);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&v, &["--now \"yesterday\" is not an RFC 3339 time"]);
    }
    refused(
        &[
            "replay",
            "--config",
            &cfg,
            "--input",
            s(&input),
            "--now",
            "yesterday",
        ],
        &["--now \"yesterday\" is not an RFC 3339 time"],
    );
    // An explicit clock is taken by all of them (the defaulted --kafka-timeout is not "given").
    let now = ["--now", "2026-01-01T00:00:00Z"];
    run(&[
        &["backtest", "--config", &cfg, "--input", s(&input)][..],
        &now,
    ]
    .concat());
    run(&[
        &[
            "replay",
            "--config",
            &cfg,
            "--input",
            s(&input),
            "--output",
            s(&dir.join("t.jsonl")),
        ][..],
        &now,
    ]
    .concat());
}

/// Runs crisiswatch expecting a refusal: (exit code, stderr).
fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "crisiswatch {args:?} should have refused:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Outputs that cannot be written are refused before the history is read
/// (which takes long on a large one): a file in a directory that does not
/// exist, a review directory that is a file; and `generate` of nothing.
#[test]
fn outputs_that_cannot_be_written_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let missing = dir.path().join("no-such-dir").join("x.out");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "keep").unwrap();
    let (d, m, f, c) = (s(&day), s(&missing), s(&file), example());
    for args in [
        vec!["backtest", "--config", &c, "--input", d, "--json", m],
        vec!["backtest", "--config", &c, "--input", d, "--transitions", m],
        vec![
            "tune",
            "--config",
            &c,
            "--input",
            d,
            "--rule",
            "complaint_rate",
            "--vary",
            "threshold=0.05,0.06",
            "--csv",
            m,
        ],
        vec![
            "chart",
            "--config",
            &c,
            "--input",
            d,
            "--rule",
            "complaint_rate",
            "--output",
            m,
        ],
    ] {
        let err = refused(&[&args[..], &["--now", HISTORY_NOW]].concat());
        assert!(
            err.contains("no-such-dir does not exist") && !err.contains("Backtest over"),
            "{args:?}: {err}"
        );
    }
    let err = refused(&[
        "backtest",
        "--config",
        &c,
        "--input",
        d,
        "--review-dir",
        f,
        "--now",
        HISTORY_NOW,
    ]);
    assert!(err.contains("a-file is a file"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    let err = refused(&["generate", "--duration", "0s", "--output", m]);
    assert!(err.contains("--duration 0s generates nothing"), "{err}");
}

/// An output named like one of the command's inputs (the history, the
/// configuration, the labels) is refused before anything is written, under
/// whatever path names it; the file is left as it was. Before, `replay
/// --output` and `backtest --transitions` emptied the history they were
/// reading and exited 0.
#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (day, crises) = generate(dir.path());
    let history = dir.path().join("history.jsonl");
    std::fs::copy(&day, &history).unwrap();
    let labels = dir.path().join("labels.jsonl");
    std::fs::copy(&crises, &labels).unwrap();
    let cfg = dir.path().join("crisiswatch.toml");
    std::fs::copy(example(), &cfg).unwrap();
    // The same file through another path.
    let alias = dir.path().join(".").join("history.jsonl");
    let before = std::fs::read(&history).unwrap();
    let (h, a, l, c) = (s(&history), s(&alias), s(&labels), s(&cfg));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "replay",
                "--config",
                c,
                "--input",
                h,
                "--output",
                a,
                "--now",
                HISTORY_NOW,
            ],
            "input",
        ),
        (
            vec![
                "replay",
                "--config",
                c,
                "--input",
                h,
                "--output",
                c,
                "--now",
                HISTORY_NOW,
            ],
            "configuration",
        ),
        (
            vec![
                "backtest",
                "--config",
                c,
                "--input",
                h,
                "--transitions",
                h,
                "--now",
                HISTORY_NOW,
            ],
            "input",
        ),
        (
            vec![
                "backtest",
                "--config",
                c,
                "--input",
                h,
                "--labels",
                l,
                "--json",
                l,
                "--now",
                HISTORY_NOW,
            ],
            "labels file",
        ),
        (
            vec![
                "tune",
                "--config",
                c,
                "--input",
                h,
                "--rule",
                "complaint_rate",
                "--vary",
                "threshold=0.05,0.06",
                "--write-snippet",
                c,
                "--now",
                HISTORY_NOW,
            ],
            "configuration",
        ),
        (
            vec![
                "suggest",
                "--config",
                c,
                "--input",
                h,
                "--write-snippet",
                a,
                "--now",
                HISTORY_NOW,
            ],
            "input",
        ),
        (
            vec![
                "chart",
                "--config",
                c,
                "--input",
                h,
                "--rule",
                "complaint_rate",
                "--group",
                "product=router-x,region=eu-west",
                "--output",
                h,
                "--now",
                HISTORY_NOW,
            ],
            "input",
        ),
        (
            vec![
                "review",
                "--config",
                c,
                "--input",
                h,
                "--output",
                h,
                "--now",
                HISTORY_NOW,
            ],
            "input",
        ),
    ];
    for (args, role) in cases {
        let err = refused(&args);
        assert!(
            err.contains(&format!("is also this command's {role}")),
            "{args:?}: {err}"
        );
        assert!(
            std::fs::read(&history).unwrap() == before,
            "{args:?} changed the history"
        );
    }
    assert_eq!(
        std::fs::read(&cfg).unwrap(),
        std::fs::read(example()).unwrap()
    );
    assert_eq!(
        std::fs::read(&labels).unwrap(),
        std::fs::read(&crises).unwrap()
    );
}

/// `review` and `backtest --review-dir` read the history twice: a pipe
/// (here a named one, as `<(…)` gives) is refused like "-" instead of
/// giving reviews with no events in them.
#[test]
fn a_history_read_twice_refuses_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("history.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (f, cfg) = (s(&fifo), example());
    let reviews = dir.path().join("reviews");
    for args in [
        vec![
            "review",
            "--config",
            &cfg,
            "--input",
            f,
            "--now",
            HISTORY_NOW,
        ],
        vec![
            "backtest",
            "--config",
            &cfg,
            "--input",
            f,
            "--review-dir",
            s(&reviews),
            "--now",
            HISTORY_NOW,
        ],
    ] {
        let err = refused(&args);
        assert!(
            err.contains("give files, not \"-\" or a pipe"),
            "{args:?}: {err}"
        );
    }
}

/// Histories shaped as users export them, not as the generator writes
/// them: times in seconds (read as January 1970), lines newest first, and
/// times as strings of digits. Each tool says what is wrong instead of
/// printing empty or thin figures with no word: `replay` warned of nothing
/// on a newest-first file (65 % of its events dropped late) nor on seconds,
/// `backtest` blamed a newest-first file's first line for a bad timestamp
/// and printed no reason for lines all invalid.
#[test]
fn histories_in_seconds_newest_first_or_with_string_times_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let text = std::fs::read_to_string(&day).unwrap();
    let (mut secs, mut strings) = (String::new(), String::new());
    for line in text.lines() {
        let Ok(serde_json::Value::Object(mut ev)) = serde_json::from_str(line) else {
            continue;
        };
        let Some(ts) = ev.get("ts").and_then(|t| t.as_str()) else {
            continue;
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
            continue;
        };
        let ms = t.timestamp_millis();
        ev.insert("ts".into(), (ms / 1000).into());
        secs.push_str(&serde_json::Value::Object(ev.clone()).to_string());
        secs.push('\n');
        ev.insert("ts".into(), ms.to_string().into());
        strings.push_str(&serde_json::Value::Object(ev).to_string());
        strings.push('\n');
    }
    let newest_first: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let secs = write("secs.jsonl", &secs);
    let strings = write("strings.jsonl", &strings);
    let newest_first = write("newest-first.jsonl", &newest_first);
    let cfg = example();
    let stderr = |args: &[&str]| String::from_utf8_lossy(&run(args).stderr).into_owned();
    let stdout = |args: &[&str]| String::from_utf8_lossy(&run(args).stdout).into_owned();
    for tool in ["replay", "backtest"] {
        let mut args = vec![tool, "--config", &cfg, "--now", HISTORY_NOW];
        if tool == "replay" {
            args.extend(["--output", "/dev/null"]);
        }
        let with = |input: &Path| {
            let mut a = args.clone();
            a.extend(["--input", s(input)]);
            stderr(&a)
        };
        let err = with(&secs);
        assert!(
            err.contains("lies before 1973") && err.contains("multiply them by 1000"),
            "{tool}: {err}"
        );
        let err = with(&newest_first);
        assert!(err.contains("the input runs newest first"), "{tool}: {err}");
        assert!(!err.contains("bad timestamp makes"), "{tool}: {err}");
    }
    // suggest reads the history with tune's pass: the same warning, once.
    let err = stderr(&[
        "suggest",
        "--config",
        &cfg,
        "--now",
        HISTORY_NOW,
        "--rule",
        "complaint_rate",
        "--input",
        s(&newest_first),
    ]);
    assert_eq!(
        err.matches("the input runs newest first").count(),
        1,
        "{err}"
    );
    let out = stdout(&[
        "backtest",
        "--config",
        &cfg,
        "--now",
        HISTORY_NOW,
        "--input",
        s(&strings),
    ]);
    assert!(out.contains("invalid by reason: bad_timestamp"), "{out}");
    assert!(
        out.contains(&format!("{}:1: bad_timestamp", strings.display())),
        "{out}"
    );
    assert!(out.contains("no valid event reached the rules"), "{out}");
}

/// A snippet from `tune` and `suggest` goes back into a configuration as
/// written: a literal `$` (written `$$`) stays escaped and an environment
/// reference stays a reference, instead of the expanded value (a secret, or
/// text that the next load reads as a reference to an unset variable).
#[test]
fn snippets_keep_dollars_and_environment_references_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let cfg = std::fs::read_to_string(example())
        .unwrap()
        .replace(
            "runbook = \"https://runbooks.example.com/crisiswatch/complaint-rate\"",
            "runbook = \"https://wiki.example.com/$${PAGE}/x\"\ndashboard = \"https://dash.example.com/${CW_TEST_SECRET}?costs=$$5\"",
        )
        // A multi-line string and a nested one hold references too.
        .replace(
            "description = \"Share of orders that get a complaint, per product and region.\"",
            "description = \"\"\"token:\n${CW_TEST_SECRET}\"\"\"",
        )
        .replace(
            "numerator = { type = \"complaint\" }, denominator = { type = \"order\" }, min_denominator = 100",
            "numerator = { type = \"${CW_KIND:-complaint}\" }, denominator = { type = \"order\" }, min_denominator = 100",
        );
    assert!(cfg.contains("${CW_KIND:-complaint}") && cfg.contains("token:\n${CW_TEST_SECRET}"));
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let tune = dir.path().join("tune.toml");
    let suggest = dir.path().join("suggest.toml");
    let with_env = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("CW_TEST_SECRET", "s3cr3t-value")
            .env_remove("PAGE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let c = s(&cfg_path);
    with_env(&[
        "tune",
        "--config",
        c,
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--vary",
        "threshold=0.05,0.06",
        "--pick",
        "1",
        "--write-snippet",
        s(&tune),
        "--now",
        HISTORY_NOW,
    ]);
    with_env(&[
        "suggest",
        "--config",
        c,
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--write-snippet",
        s(&suggest),
        "--now",
        HISTORY_NOW,
    ]);
    for p in [&tune, &suggest] {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            text.contains("runbook = \"https://wiki.example.com/$${PAGE}/x\""),
            "{text}"
        );
        assert!(
            text.contains("https://dash.example.com/${CW_TEST_SECRET}?costs=$$5"),
            "{text}"
        );
        assert!(text.contains("${CW_KIND:-complaint}"), "{text}");
        assert!(
            text.contains("${CW_TEST_SECRET}\"") || text.contains("${CW_TEST_SECRET}\"\"\""),
            "{text}"
        );
        assert!(!text.contains("s3cr3t-value"), "{text}");
        // It loads back, PAGE unset, to the same values.
        with_env(&["check", "--config", s(p)]);
    }
}

/// A rule whose second selector nothing fed is named: a history without
/// responses (every complaint of `response_backlog` would read as
/// unanswered: false incidents), a ratio whose denominator is mistyped
/// (never computed). The full generated day, which has both, gets neither
/// warning.
#[test]
fn a_rule_whose_second_selector_nothing_feeds_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let all = std::fs::read_to_string(&day).unwrap();
    let no_responses: String = all
        .lines()
        .filter(|l| !l.contains("\"type\":\"response\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(no_responses.len() < all.len());
    let quiet = dir.path().join("no-responses.jsonl");
    std::fs::write(&quiet, no_responses).unwrap();
    let text = std::fs::read_to_string(example()).unwrap();
    let typo = text.replacen(
        "denominator = { type = \"order\" }, min_denominator = 100",
        "denominator = { type = \"ordr\" }, min_denominator = 100",
        1,
    );
    assert_ne!(typo, text);
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, typo).unwrap();
    let responses = "rule \"response_backlog\" saw";
    let denominator = "none of them matched its `denominator` selector";
    for (args, want_responses, want_denominator) in [
        (
            vec!["backtest", "--config", s(&cfg), "--input", s(&quiet)],
            true,
            true,
        ),
        (
            vec![
                "replay",
                "--config",
                &example(),
                "--input",
                s(&quiet),
                "--output",
                "/dev/null",
            ],
            true,
            false,
        ),
        (
            vec!["backtest", "--config", &example(), "--input", s(&day)],
            false,
            false,
        ),
    ] {
        let mut args = args;
        args.extend(["--now", HISTORY_NOW]);
        let err = String::from_utf8_lossy(&run(&args).stderr).into_owned();
        assert_eq!(err.contains(responses), want_responses, "{args:?}: {err}");
        assert_eq!(
            err.contains(denominator),
            want_denominator,
            "{args:?}: {err}"
        );
        if want_responses {
            assert!(err.contains("every one counts as unanswered"), "{err}");
        }
    }
}

/// Values written in another case than a selector names them, or padded
/// with spaces, are named: selectors compare exactly, so a producer writing
/// `"Social"` leaves `social_spike` without those complaints, and one
/// writing `"complaint "` every rule on complaints. The generated day has
/// none.
#[test]
fn values_in_another_case_than_a_selector_names_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let all = std::fs::read_to_string(&day).unwrap();
    let mut n = 0;
    let mut complaints = 0;
    let shouted: String = all
        .lines()
        .map(|l| {
            if l.contains("\"type\":\"complaint\"") {
                complaints += 1;
                if complaints % 50 == 0 {
                    return format!(
                        "{}\n",
                        l.replace("\"type\":\"complaint\"", "\"type\":\"complaint \"")
                    );
                }
            }
            if l.contains("\"channel\":\"social\"") {
                n += 1;
                if n % 2 == 0 {
                    return format!(
                        "{}\n",
                        l.replace("\"channel\":\"social\"", "\"channel\":\"Social\"")
                    );
                }
            }
            format!("{l}\n")
        })
        .collect();
    assert!(n > 10, "{n} social events");
    let mixed = dir.path().join("mixed-case.jsonl");
    std::fs::write(&mixed, shouted).unwrap();
    let want = "have channel = \"Social\", which the selectors of rule(s) \"social_spike\"";
    let padded = "have type = \"complaint \", which the selectors of rule(s) \"complaint_surge\", \"complaint_rate\"";
    let config = example();
    for (input, named) in [(s(&mixed), true), (s(&day), false)] {
        for tool in ["backtest", "replay"] {
            let mut args = vec![
                tool,
                "--config",
                &config,
                "--input",
                input,
                "--now",
                HISTORY_NOW,
            ];
            if tool == "replay" {
                args.extend(["--output", "/dev/null"]);
            }
            let err = String::from_utf8_lossy(&run(&args).stderr).into_owned();
            assert_eq!(err.contains(want), named, "{args:?}: {err}");
            assert_eq!(err.contains(padded), named, "{args:?}: {err}");
        }
    }
}

/// A rule that no event of the history selects (here a mistyped `type`)
/// is named by `backtest` and `replay`: its empty line in the report says
/// nothing about its thresholds. The example configuration on a generated
/// day gets no such warning.
#[test]
fn a_rule_no_event_selects_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let text = std::fs::read_to_string(example()).unwrap();
    let typo = text.replacen(
        "numerator = { type = \"complaint\" }",
        "numerator = { type = \"complain\" }",
        1,
    );
    assert_ne!(typo, text);
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, typo).unwrap();
    let d = s(&day);
    for (args, named) in [
        (vec!["backtest", "--config", s(&cfg), "--input", d], true),
        (
            vec![
                "replay",
                "--config",
                s(&cfg),
                "--input",
                d,
                "--output",
                "/dev/null",
            ],
            true,
        ),
        (
            vec!["backtest", "--config", &example(), "--input", d],
            false,
        ),
    ] {
        let mut args = args;
        args.extend(["--now", HISTORY_NOW]);
        let err = String::from_utf8_lossy(&run(&args).stderr).into_owned();
        assert_eq!(
            err.contains("none of them counted toward its signal"),
            named,
            "{args:?}: {err}"
        );
        assert!(!err.contains("which none of its events had"), "{err}");
    }
    // A `group_by` attribute no event has.
    let typo = text.replacen(
        "group_by = [\"product\", \"region\"]",
        "group_by = [\"product\", \"regoin\"]",
        1,
    );
    assert_ne!(typo, text);
    std::fs::write(&cfg, typo).unwrap();
    let err = String::from_utf8_lossy(
        &run(&[
            "backtest",
            "--config",
            s(&cfg),
            "--input",
            d,
            "--now",
            HISTORY_NOW,
        ])
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains("groups by \"regoin\", which none of its events had"),
        "{err}"
    );
}

/// `chart` of a slice the history never had is an error that lists slices
/// it does have, not an empty drawing.
#[test]
fn a_chart_of_a_slice_that_never_occurred_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (day, _) = generate(dir.path());
    let svg = dir.path().join("c.svg");
    let err = refused(&[
        "chart",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--group",
        "product=nope,region=eu-west",
        "--output",
        s(&svg),
        "--now",
        HISTORY_NOW,
    ]);
    assert!(err.contains("never occurred in the history"), "{err}");
    assert!(err.contains("slices it has: --group \"product="), "{err}");
    assert!(!svg.exists());
    // A chart named for another format is refused, not written as SVG
    // under that name; `tune --chart` without labels before its pass.
    let png = dir.path().join("c.png");
    let err = refused(&[
        "chart",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--output",
        s(&png),
    ]);
    assert!(err.contains("written as SVG only"), "{err}");
    assert!(!png.exists());
    let err = refused(&[
        "tune",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--vary",
        "confidence=0.9,0.95",
        "--chart",
        s(&svg),
    ]);
    assert!(err.contains("pass --labels"), "{err}");
    assert!(!svg.exists());
}

/// A labelled crisis with no slice, which no rule of a configuration where
/// every rule has a `group_by` can catch, is named instead of silently
/// counted as missed.
#[test]
fn a_label_without_a_slice_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (day, crises) = generate(dir.path());
    let first = std::fs::read_to_string(&crises).unwrap();
    let mut label: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    label.as_object_mut().unwrap().remove("slice");
    let labels = dir.path().join("labels.jsonl");
    std::fs::write(&labels, format!("{label}\n")).unwrap();
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--labels",
        s(&labels),
        "--now",
        HISTORY_NOW,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names no slice"), "{err}");
}

/// An empty labels file is said to be empty: its precision of 0 and
/// undefined recall would otherwise read as a verdict on the rules.
#[test]
fn an_empty_labels_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = generate(dir.path());
    let empty = dir.path().join("none.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = run(&[
        "backtest",
        "--now",
        HISTORY_NOW,
        "--config",
        &example(),
        "--input",
        s(&data),
        "--labels",
        s(&empty),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no crisis"), "{err}");
}

/// `tune`, `suggest` and `chart` have no report for invalid lines: a history
/// partly unreadable is warned about (counted by reason, the first lines
/// named by file and line when they are 1 % or more), never tuned on in
/// silence.
#[test]
fn tune_suggest_and_chart_warn_about_invalid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (day, crises) = generate(dir.path());
    let text = std::fs::read_to_string(&day).unwrap();
    // Every 40th line followed by a broken one: 2.5 %.
    let mut bad = String::new();
    let mut broken = 0;
    for (i, l) in text.lines().enumerate() {
        bad.push_str(l);
        bad.push('\n');
        if i % 40 == 39 {
            bad.push_str("{\"id\": broken\n");
            broken += 1;
        }
    }
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, bad).unwrap();
    let lines = text.lines().count() + broken;
    let cfg = example();
    let svg = dir.path().join("c.svg");
    let snippet = dir.path().join("s.toml");
    let runs: [Vec<&str>; 3] = [
        vec![
            "tune",
            "--config",
            &cfg,
            "--input",
            s(&path),
            "--rule",
            "complaint_rate",
            "--vary",
            "threshold=0.1,0.2",
            "--labels",
            s(&crises),
            "--now",
            HISTORY_NOW,
        ],
        vec![
            "suggest",
            "--config",
            &cfg,
            "--input",
            s(&path),
            "--rule",
            "complaint_rate",
            "--labels",
            s(&crises),
            "--write-snippet",
            s(&snippet),
            "--now",
            HISTORY_NOW,
        ],
        vec![
            "chart",
            "--config",
            &cfg,
            "--input",
            s(&path),
            "--rule",
            "complaint_rate",
            "--group",
            "product=router-x,region=us-east",
            "--output",
            s(&svg),
            "--now",
            HISTORY_NOW,
        ],
    ];
    for args in runs {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        // The generated day has malformed lines of its own.
        let want = format!(" of {lines} lines (2.");
        let counted = err
            .split(&want)
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        assert!(
            counted.is_some_and(|n| n >= broken && n < broken + lines / 100),
            "{}: no `N{want}` with N ≥ {broken} in\n{err}",
            args[0]
        );
        assert!(
            err.contains("are invalid and were left out (not_json"),
            "{}: {err}",
            args[0]
        );
        // The first broken line is the 41st of the file.
        assert!(
            err.contains(&format!("{}:41: not_json", path.display())),
            "{}: {err}",
            args[0]
        );
        assert!(err.contains("not_json"), "{}: {err}", args[0]);
    }
    // The same history without the broken lines: its own few malformed
    // lines (well under 1 %) are counted, not named.
    let out = run(&[
        "tune",
        "--config",
        &cfg,
        "--input",
        s(&day),
        "--rule",
        "complaint_rate",
        "--vary",
        "threshold=0.1",
        "--now",
        HISTORY_NOW,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("are invalid and were left out"), "{err}");
    assert!(!err.contains("the first:"), "{err}");
}

/// The number after `key` in `text` (`late 103728,`, `late:   103728`).
fn count_after(text: &str, key: &str) -> u64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {text}"));
    text[at + key.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no count after {key:?} in {text}"))
}

/// A burst of lines days ahead, confirmed as a jump (more than
/// `clock_jump_confirm` of them), followed by the rest of the history: the
/// warning names the first of them — the line that jumped the clock — not
/// the last (a step of a second after it), and gives the count of the
/// summary (`backtest` and `replay`).
#[test]
fn a_confirmed_burst_ahead_names_the_line_that_jumped_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = generate(dir.path());
    let all = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = all.lines().map(str::to_string).collect();
    let burst = (0..5).map(|i| {
        format!(
            r#"{{"id":"ahead-{i}","type":"order","ts":"2026-11-25T00:00:0{i}Z","customer_id":"c-1","attrs":{{"product":"laptop-pro","region":"us-east","channel":"web","segment":"consumer"}}}}"#
        )
    });
    lines.splice(30_000..30_000, burst);
    let f = dir.path().join("burst.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    const NOW: &str = "2026-12-01T00:00:00Z";
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&f),
        "--now",
        NOW,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let warning = stderr
        .lines()
        .find(|l| l.contains("were late for every rule"))
        .unwrap_or_else(|| panic!("no late warning: {stderr}"));
    assert!(
        warning.contains("burst.jsonl:30001 moved the clock to 2026-11-25T00:00:00Z ("),
        "{warning}"
    );
    assert!(warning.contains("check that event's time"), "{warning}");
    assert!(!warning.contains("ordinary step"), "{warning}");
    let late = count_after(&stdout, "late ");
    assert!(late > 0, "{stdout}");
    assert!(warning.contains(&format!("late={late} ")), "{warning}");
    assert!(
        warning.contains(&format!(" {late} of them came after")),
        "{warning}"
    );
    let events_of = |w: &str| {
        w.split("events=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    };
    let backtest_events = events_of(warning);
    assert!(backtest_events.is_some(), "{warning}");

    let out = run(&[
        "replay",
        "--config",
        &example(),
        "--input",
        s(&f),
        "--output",
        s(&dir.path().join("transitions.jsonl")),
        "--now",
        NOW,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let warning = stderr
        .lines()
        .find(|l| l.contains("were late for every rule"))
        .unwrap_or_else(|| panic!("no late warning: {stderr}"));
    assert!(
        warning.contains("burst.jsonl:30001 moved the clock to 2026-11-25T00:00:00Z ("),
        "{warning}"
    );
    assert!(!warning.contains("ordinary step"), "{warning}");
    // replay's count is its summary's `late`.
    let late = count_after(&format!("{stdout}{stderr}"), "late:");
    assert!(warning.contains(&format!("late={late} ")), "{warning}");
    // Out of as many events as backtest's (duplicates counted alike).
    assert_eq!(events_of(warning), backtest_events, "{warning}");
}

/// An empty input among several is named, an all-empty history says the
/// report is empty and why, invalid lines are named `file:line` (text and
/// JSON), and a UTF-8 line that merely starts with the bytes of a UTF-16
/// byte-order mark is one bad line, not a refused file.
#[test]
fn empty_inputs_and_bad_lines_are_named_by_file_and_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_named");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.join("blank.jsonl");
    std::fs::write(&blank, "\n\n  \n").unwrap();
    let good = dir.join("good.jsonl");
    let mut text = String::new();
    for m in 0..30 {
        text.push_str(&format!(
            "{{\"id\":\"o{m}\",\"type\":\"order\",\"ts\":\"2026-11-20T00:{m:02}:00Z\",\"attrs\":{{\"product\":\"router-x\",\"region\":\"eu-west\"}}}}\n"
        ));
        if m == 10 {
            // Blank lines are counted by an editor, not by the event count.
            text.push_str("\n\nnot json at all\n");
        }
    }
    std::fs::write(&good, &text).unwrap();
    let bom_like = dir.join("ffe.jsonl");
    let mut b =
        b"\xff\xfe{\"id\":\"a\",\"type\":\"order\",\"ts\":\"2026-11-20T00:10:00Z\"}\n".to_vec();
    b.extend_from_slice(b"{\"id\":\"b\",\"type\":\"order\",\"ts\":\"2026-11-20T00:10:01Z\"}\n");
    std::fs::write(&bom_like, &b).unwrap();

    // Nothing at all: the report says it is empty, and why.
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&empty),
        s(&blank),
        "--now",
        HISTORY_NOW,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("no valid event reached the rules")
            && stdout.contains("the input holds no event line"),
        "{stdout}"
    );
    for f in [&empty, &blank] {
        assert!(
            stderr.contains(&format!("input {} holds no event line", f.display())),
            "{stderr}"
        );
    }

    // An empty file among others is named; the bad line is `good.jsonl:14`
    // (its physical line), in the text and in the JSON report.
    let json = dir.join("named.json");
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&empty),
        s(&good),
        "--json",
        s(&json),
        "--now",
        HISTORY_NOW,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("input {} holds no event line", empty.display())),
        "{stderr}"
    );
    let place = format!("{}:14", good.display());
    assert!(stdout.contains(&format!("  {place}: not_json")), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let named = report["invalid_lines"].as_array().expect("invalid_lines");
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0]["at"], serde_json::json!(place), "{named:?}");
    assert_eq!(named[0]["line"], serde_json::json!(12), "{named:?}");
    assert_eq!(
        named[0]["reason"],
        serde_json::json!("not_json"),
        "{named:?}"
    );

    // Bytes FF FE at the start of a UTF-8 file: one not_json line.
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&bom_like),
        "--json",
        s(&json),
        "--now",
        HISTORY_NOW,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["stats"]["applied"], serde_json::json!(1), "{report}");
    assert_eq!(
        report["stats"]["invalid_by_reason"]["not_json"],
        serde_json::json!(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A backtest that fails part-way (a truncated gzip) leaves no
/// `--transitions` file that would look like a whole result.
#[test]
fn a_failed_backtest_leaves_no_transitions_file() {
    let (data, _) = generate(Path::new("."));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_failed");
    std::fs::create_dir_all(&dir).unwrap();
    let gz = dir.join("cut.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&data).unwrap()).unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let tr = dir.join("cut.transitions");
    let out = Command::new(BIN)
        .args([
            "backtest",
            "--config",
            &example(),
            "--input",
            s(&data),
            s(&gz),
            "--transitions",
            s(&tr),
            "--now",
            HISTORY_NOW,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cut.jsonl.gz"), "{stderr}");
    assert!(
        !tr.exists(),
        "a partial transitions file was left: {stderr}"
    );
}

/// Files given newest first are named in one readable warning.
#[test]
fn files_given_newest_first_are_named() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_order");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, hour: u32| {
        let p = dir.join(name);
        let mut text = String::new();
        for m in 0..60 {
            text.push_str(&format!(
                "{{\"id\":\"{name}{m}\",\"type\":\"order\",\"ts\":\"2026-11-20T{hour:02}:{m:02}:00Z\",\"attrs\":{{\"product\":\"router-x\",\"region\":\"eu-west\"}}}}\n"
            ));
        }
        std::fs::write(&p, text).unwrap();
        p
    };
    let (early, late) = (file("early.jsonl", 1), file("late.jsonl", 5));
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&late),
        s(&early),
        "--now",
        HISTORY_NOW,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "inputs out of time order: {} holds only events older than those of {}, which was given before it, so they come behind the clock and are late — give the files oldest first",
            early.display(),
            late.display()
        )),
        "{stderr}"
    );
}

/// A history with a gap of days: the tools warn that rules with a baseline
/// take the gap for silence (their incidents after it may be false).
#[test]
fn a_gap_of_days_is_named_for_the_rules_with_a_baseline() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_gap");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("gap.jsonl");
    let mut text = String::new();
    for (day, hour) in [(20, 1), (20, 2), (24, 10), (24, 11)] {
        for m in 0..60 {
            text.push_str(&format!(
                "{{\"id\":\"o{day}-{hour}-{m}\",\"type\":\"order\",\"ts\":\"2026-11-{day}T{hour:02}:{m:02}:00Z\",\"attrs\":{{\"product\":\"router-x\",\"region\":\"eu-west\"}}}}\n"
            ));
        }
    }
    std::fs::write(&p, text).unwrap();
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&p),
        "--now",
        "2026-11-30T00:00:00Z",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the history has 1 gap(s) of more than a day without events (the first: 2026-11-20T02:59:00Z → 2026-11-24T10:00:00Z)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rules with a baseline (complaint_surge, churn_surge, churn_surge_2h)"),
        "{stderr}"
    );
    // The shipped `unanswered` rule is named too: complaints just before a
    // gap pass their deadline inside it.
    assert!(
        stderr.contains("rules that wait for responses (response_backlog)"),
        "{stderr}"
    );
    let out = run(&[
        "tune",
        "--config",
        &example(),
        "--input",
        s(&p),
        "--now",
        "2026-11-30T00:00:00Z",
        "--rule",
        "churn_surge",
        "--vary",
        "threshold=4,5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules with a baseline (churn_surge) take a gap for silence"),
        "{stderr}"
    );
    // A rule without a baseline: nothing to say.
    let out = run(&[
        "tune",
        "--config",
        &example(),
        "--input",
        s(&p),
        "--now",
        "2026-11-30T00:00:00Z",
        "--rule",
        "complaint_rate",
        "--vary",
        "threshold=0.05,0.06",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("take a gap for silence"), "{stderr}");
}

/// Slice values that a file name shows alike (letters outside ASCII of one
/// length, `ü`/`ä`, a blank, `_` and `:`) still get one review file each:
/// the count printed is the files written, by `backtest --review-dir` and
/// by `review --output DIR`.
#[test]
fn reviews_of_slices_named_alike_are_one_file_each() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_review_names");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.toml");
    std::fs::write(&config, COUNT_RULE).unwrap();
    let products = ["路由器", "手机壳", "Zürich", "Zärich", "a b", "a_b", "a:b"];
    let events = dir.join("e.jsonl");
    std::fs::write(&events, complaints(&products)).unwrap();
    let files = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let reviews = dir.join("reviews");
    let out = run(&[
        "backtest",
        "--config",
        s(&config),
        "--input",
        s(&events),
        "--review-dir",
        s(&reviews),
        "--now",
        HISTORY_NOW,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "wrote 7 incident review(s) to {}",
            reviews.display()
        )),
        "{stdout}"
    );
    let names = files(&reviews);
    assert_eq!(names.len(), 7, "{names:?}");
    // A key of safe characters keeps its name; the others are told apart by
    // a hash of the exact key.
    assert!(
        names.contains(&"cnt_product_a_b_1795168802000.md".to_string()),
        "{names:?}"
    );
    for p in products {
        let n = names
            .iter()
            .filter(|n| {
                std::fs::read_to_string(reviews.join(n))
                    .unwrap()
                    .starts_with(&format!("# Incident review: cnt — product={p}\n"))
            })
            .count();
        assert_eq!(n, 1, "{p}: {names:?}");
    }
    // `review --output DIR` names them alike.
    let again = dir.join("again");
    let out = run(&[
        "review",
        "--config",
        s(&config),
        "--input",
        s(&events),
        "--output",
        s(&again),
        "--now",
        HISTORY_NOW,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrote 7 review(s)"), "{stderr}");
    assert_eq!(files(&again), names);
}

/// A transitions export newest first (`tac`), or with every line twice (an
/// at-least-once export), gives the reviews of the file as written.
#[test]
fn a_transitions_file_newest_first_or_doubled_gives_the_same_reviews() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_review_order");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.toml");
    std::fs::write(&config, COUNT_RULE).unwrap();
    let events = dir.join("e.jsonl");
    std::fs::write(&events, complaints(&["router-x", "phone-z", "Zürich"])).unwrap();
    let transitions = dir.join("t.jsonl");
    run(&[
        "backtest",
        "--config",
        s(&config),
        "--input",
        s(&events),
        "--transitions",
        s(&transitions),
        "--now",
        HISTORY_NOW,
    ]);
    let text = std::fs::read_to_string(&transitions).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().any(|l| l.contains("\"resolved\"")), "{text}");
    let review = |name: &str, lines: Vec<&str>| {
        let p = dir.join(name);
        std::fs::write(&p, lines.join("\n")).unwrap();
        let out = run(&["review", "--config", s(&config), "--transitions", s(&p)]);
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (want, _) = review("as-written.jsonl", lines.clone());
    assert!(!want.contains("still firing"), "{want}");
    assert_eq!(want.matches("| resolved |").count(), 3, "{want}");
    let (newest_first, stderr) = review("tac.jsonl", lines.iter().rev().copied().collect());
    assert_eq!(newest_first, want);
    assert!(stderr.contains("not in time order"), "{stderr}");
    let (doubled, stderr) = review(
        "doubled.jsonl",
        lines.iter().flat_map(|l| [*l, *l]).collect(),
    );
    assert_eq!(doubled, want);
    assert!(stderr.contains("duplicates=6"), "{stderr}");
}

/// A count of complaints per product, warning above 1.
const COUNT_RULE: &str = r#"
[[rules]]
name = "cnt"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1 }
"#;

/// Two complaints per product at 10:00, then an order at 10:30 that moves
/// the clock past their window (they resolve).
fn complaints(products: &[&str]) -> String {
    let mut text = String::new();
    for p in products {
        for i in 1..=2 {
            text.push_str(&format!(
                "{{\"id\":\"{p}{i}\",\"type\":\"complaint\",\"ts\":\"2026-11-20T10:00:0{i}Z\",\"attrs\":{{\"product\":\"{p}\"}}}}\n"
            ));
        }
    }
    text.push_str("{\"id\":\"o\",\"type\":\"order\",\"ts\":\"2026-11-20T10:30:00Z\",\"attrs\":{\"product\":\"x\"}}\n");
    text
}

/// One stray line stamped three hours ahead (within `max_clock_jump`, so
/// not refuted) makes a large share of the complaints late; the rule reads
/// complaints only. The warning's share is of the events some rule
/// selected: it was of every event, so the orders no rule reads hid it
/// (under 1 % of all lines, a third of the complaints).
#[test]
fn a_stray_stamp_is_named_when_it_makes_the_selected_events_late() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = generate(dir.path());
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // A valid line halfway: its time plus three hours.
    let n = (lines.len() / 2..lines.len())
        .find(|&i| {
            serde_json::from_str::<serde_json::Value>(lines[i])
                .ok()
                .and_then(|v| v["ts"].as_str().map(str::to_string))
                .is_some()
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(lines[n]).unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap()
        + chrono::Duration::hours(3);
    let stray = format!(
        r#"{{"id":"stray","type":"order","ts":"{}"}}"#,
        ts.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let mut copy = lines.clone();
    copy.insert(n, &stray);
    let input = dir.path().join("stray.jsonl");
    std::fs::write(&input, copy.join("\n") + "\n").unwrap();
    let cfg = dir.path().join("complaints.toml");
    std::fs::write(
        &cfg,
        r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }
"#,
    )
    .unwrap();
    let named = format!("stray.jsonl:{} moved the clock", n + 1);
    for tool in ["backtest", "replay"] {
        let out = run(&[
            tool,
            "--config",
            s(&cfg),
            "--input",
            s(&input),
            "--now",
            HISTORY_NOW,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("events a rule selected") && stderr.contains(&named),
            "{tool}: {stderr}"
        );
    }
}

/// An attribute value may hold any character: control characters (a NUL,
/// an escape sequence) are written escaped in the chart's SVG (raw, it was
/// invalid XML), the text reports and `review --list` (raw, they drove the
/// terminal).
#[test]
fn control_characters_in_values_are_written_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let value = "a\\u0000b\\u001b[31m";
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        format!(
            "{{\"id\":\"1\",\"type\":\"complaint\",\"ts\":\"2026-11-20T00:00:00Z\",\"attrs\":{{\"product\":\"{value}\"}}}}\n\
             {{\"id\":\"2\",\"type\":\"complaint\",\"ts\":\"2026-11-20T00:01:00Z\",\"attrs\":{{\"product\":\"{value}\"}}}}\n"
        ),
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[rules]]\nname = \"cnt\"\ngroup_by = [\"product\"]\nwindow = \"10m\"\nslide = \"1m\"\n\
         indicator = { kind = \"count\", select = { type = \"complaint\" } }\nthresholds = { warning = 1 }\n",
    )
    .unwrap();
    let svg = dir.path().join("x.svg");
    let base = [
        "--config",
        s(&cfg),
        "--input",
        s(&input),
        "--now",
        NOW_LATER,
    ];
    let mut chart = vec!["chart"];
    chart.extend(base);
    chart.extend([
        "--rule",
        "cnt",
        "--group",
        "product=a%00b%1B[31m",
        "--output",
        s(&svg),
    ]);
    run(&chart);
    let mut outputs = vec![std::fs::read(&svg).unwrap()];
    for tool in [vec!["backtest"], vec!["review", "--list"]] {
        let mut args = tool.clone();
        args.extend(base);
        outputs.push(run(&args).stdout);
    }
    for (i, bytes) in outputs.iter().enumerate() {
        assert!(
            !bytes.iter().any(|&b| b < 0x20 && b != b'\n' && b != b'\t'),
            "output {i}: {}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            String::from_utf8_lossy(bytes).contains("a\\u{0}b\\u{1b}[31m"),
            "output {i}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

const NOW_LATER: &str = "2026-12-01T00:00:00Z";

/// `suggest` from stdin (read once) keeps the shared engine's figures when
/// a rule reached its group cap, and says so as `tune` does (it said
/// nothing; from a file it reads the history again for exact figures).
#[test]
fn suggest_from_stdin_says_when_its_figures_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = generate(dir.path());
    let cfg = dir.path().join("cap.toml");
    std::fs::write(
        &cfg,
        r#"
[engine]
max_groups_per_rule = 5

[[rules]]
name = "rate"
group_by = ["product", "region"]
window = "30m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 20 }
thresholds = { warning = 0.2 }
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "suggest",
            "--config",
            s(&cfg),
            "--input",
            "-",
            "--now",
            HISTORY_NOW,
        ])
        .stdin(std::fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("candidates sharing one engine may differ"),
        "{stderr}"
    );
}

/// Hours of a history stamped with one time (a producer that writes its
/// batch's time, not each event's): nothing is late, yet every window counts
/// them at one instant. `backtest` and `replay` name the first such line;
/// the history as generated gets no such warning.
#[test]
fn a_history_stamped_in_batches_is_named() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_batch");
    std::fs::create_dir_all(&dir).unwrap();
    let (day, _) = generate(&dir);
    let text = std::fs::read_to_string(&day).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (from, to) = (100_000, 140_000);
    // The generator writes some times as RFC 3339, some as milliseconds.
    let ts_of = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v.get("ts")?.as_str().map(str::to_string)
    };
    let from = (from..).find(|&i| ts_of(lines[i]).is_some()).unwrap();
    let to = (to..).find(|&i| ts_of(lines[i]).is_some()).unwrap();
    let stamp = ts_of(lines[to]).unwrap();
    let mut batched = String::new();
    for (i, l) in lines.iter().enumerate() {
        // Lines the generator spoils on purpose stay as they are.
        let mut v = serde_json::from_str::<serde_json::Value>(l).ok();
        match v.as_mut().and_then(|v| v.as_object_mut()) {
            Some(o) if (from..to).contains(&i) && o.contains_key("ts") => {
                o.insert("ts".into(), serde_json::Value::String(stamp.clone()));
                batched.push_str(&serde_json::to_string(o).unwrap());
            }
            _ => batched.push_str(l),
        }
        batched.push('\n');
    }
    let file = dir.join("batched.jsonl");
    std::fs::write(&file, batched).unwrap();
    let place = format!("{}:{}", file.display(), from + 1);
    for tool in ["backtest", "replay"] {
        let out = run(&[
            tool,
            "--config",
            &example(),
            "--input",
            s(&file),
            "--now",
            HISTORY_NOW,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // "N of M events (P %) share one time": N the batch's valid events.
        let n: usize = stderr
            .lines()
            .find(|l| l.contains("share one time"))
            .and_then(|l| l.split(" of ").next()?.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0);
        assert!(
            (to - from - 2_000..=to - from + 10).contains(&n)
                && stderr.contains(&format!("share one time, {}", &stamp[..19]))
                && stderr.contains(&format!(", from {place} on"))
                && stderr.contains("stamped in batches"),
            "{tool}: {stderr}"
        );
        let out = run(&[
            tool,
            "--config",
            &example(),
            "--input",
            s(&day),
            "--now",
            HISTORY_NOW,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("stamped in batches"), "{tool}: {stderr}");
    }
}

/// A product launched mid-history at ordinary rates is judged by the surge
/// rules against a baseline of zeros from before it existed, and pages: the
/// backtest names the incident, its slice and the slice's first event, and
/// says what to do; the untouched day names nothing.
#[test]
fn a_surge_page_on_a_slice_launched_mid_history_is_named() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_launch");
    std::fs::create_dir_all(&dir).unwrap();
    let (day, _) = generate(&dir);
    let text = std::fs::read_to_string(&day).unwrap();
    // tv-max's traffic from 12:30 to 14:00 (between the crises) once more,
    // as a new product's.
    let mut launched = String::with_capacity(text.len() + text.len() / 50);
    let mut copies = 0;
    for l in text.lines() {
        launched.push_str(l);
        launched.push('\n');
        let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(l) else {
            continue;
        };
        let in_span = o
            .get("ts")
            .and_then(|t| t.as_str())
            .is_some_and(|t| ("2026-11-20T12:30".."2026-11-20T14:00").contains(&t));
        let tv = o
            .get("attrs")
            .and_then(|a| a.get("product"))
            .is_some_and(|p| p == "tv-max");
        if !(in_span && tv) {
            continue;
        }
        for k in ["id", "ref_id"] {
            if let Some(serde_json::Value::String(v)) = o.get_mut(k) {
                v.push_str("-new");
            }
        }
        if let Some(serde_json::Value::Object(a)) = o.get_mut("attrs") {
            a.insert("product".into(), "tv-new".into());
        }
        launched.push_str(&serde_json::to_string(&o).unwrap());
        launched.push('\n');
        copies += 1;
    }
    assert!(copies > 1_000, "{copies} events copied");
    let file = dir.join("launched.jsonl");
    std::fs::write(&file, launched).unwrap();
    let backtest = |input: &Path| {
        let out = run(&[
            "backtest",
            "--config",
            &example(),
            "--input",
            s(input),
            "--now",
            HISTORY_NOW,
        ]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = backtest(&file);
    let line = stderr
        .lines()
        .find(|l| l.contains("first seen mid-history"))
        .unwrap_or_else(|| panic!("no launch named: {stderr}"));
    assert!(
        line.contains("complaint_surge on product=\"tv-new\" fired at 2026-11-20T1")
            && line.contains("after the slice's first event of any type (2026-11-20T12:30:")
            && line.contains("`crisiswatch silence add rule=complaint_surge product=tv-new --for 6h30m`")
            // The crises of the day are not launches.
            && !line.contains("router-x")
            && !line.contains("phone-z"),
        "{line}"
    );
    assert!(!backtest(&day).contains("mid-history"));
}

/// `review --transitions T --input H` gives the reviews `backtest
/// --review-dir` gives of the same history: peaks sampled at every slide
/// boundary, not only the transitions' values (a field trial found a
/// `below` rule's lowest value missed). Transitions a backtest of the
/// history does not give keep theirs, with a note.
#[test]
fn reviews_from_transitions_and_history_equal_the_backtests() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backtest_cli_review_peaks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (day, _) = generate(&dir);
    let (t, by_backtest, by_review) = (
        dir.join("t.jsonl"),
        dir.join("backtest"),
        dir.join("review"),
    );
    let out = run(&[
        "backtest",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--now",
        HISTORY_NOW,
        "--transitions",
        s(&t),
        "--review-dir",
        s(&by_backtest),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "review",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--now",
        HISTORY_NOW,
        "--transitions",
        s(&t),
        "--output",
        s(&by_review),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<_> = std::fs::read_dir(&by_backtest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let mut sampled = 0;
    for n in &names {
        let a = std::fs::read_to_string(by_backtest.join(n)).unwrap();
        let b = std::fs::read_to_string(by_review.join(n)).unwrap();
        assert_eq!(a, b, "{n:?}");
        sampled += usize::from(!a.contains("at a transition)"));
    }
    assert_eq!(sampled, names.len());
    // A transition no backtest of the history gives: the transitions'
    // values, said so.
    let mut text = std::fs::read_to_string(&t).unwrap();
    text.push_str(r#"{"rule":"complaint_surge","group":{"product":"no-such"},"state":"firing","severity":"warning","at":"2026-11-20T23:00:00Z","value":9.0,"threshold":5.0,"dedup_key":"complaint_surge/product=no-such/1795215600000"}"#);
    text.push('\n');
    let other = dir.join("other.jsonl");
    std::fs::write(&other, text).unwrap();
    let out = run(&[
        "review",
        "--config",
        &example(),
        "--input",
        s(&day),
        "--now",
        HISTORY_NOW,
        "--transitions",
        s(&other),
        "--output",
        s(&dir.join("other")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("peaks are the transitions' values"),
        "{stderr}"
    );
}
