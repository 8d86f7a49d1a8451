//! The command line, run as a user runs it: `check`, `replay`, `generate`, `demo`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn example() -> String {
    format!("{ROOT}/config/crisiswatch.toml")
}

#[test]
fn check_accepts_the_example() {
    let out = Command::new(BIN)
        .args(["check", "--config", &example()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("is valid (10 rules"), "{stdout}");
}

#[test]
fn check_lists_every_error_with_path_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "nowhere"

[[rules]]
name = "Complaint Rate"
window = "30m"
slide = "7m"
indicator = { kind = "count" }
thresholds = { warning = 5, critical = 1 }
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 error(s)"), "{err}");
    for want in [
        "server.listen = \"nowhere\"",
        "rules[0].name = \"Complaint Rate\"",
        "rules[0].slide = \"7m\"",
        "rules[0].thresholds.critical = 1:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/crisiswatch.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A missing variable without a default is an error naming the key.
    std::fs::write(&path, "[server]\nlisten = \"${CW_TEST_UNSET_VARIABLE}\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("CW_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen") && err.contains("CW_TEST_UNSET_VARIABLE"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env("CW_TEST_UNSET_VARIABLE", "127.0.0.1:1234")
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// A missing or wrong input is named once, with its cause once: no gzip
/// hint for a directory, no OS error printed twice.
#[test]
fn input_errors_name_the_file_and_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "").unwrap();
    let missing = dir.path().join("missing.jsonl");
    let array = dir.path().join("events.json");
    std::fs::write(&array, "[{\"id\": \"a\"}]\n").unwrap();
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["backtest", "--input", missing.to_str().unwrap()],
            "No such file or directory",
        ),
        // `replay` checks its input as the other history tools do.
        (
            vec!["replay", "--input", dir.path().to_str().unwrap()],
            "it is a directory",
        ),
        (
            vec!["replay", "--input", array.to_str().unwrap()],
            "jq -c '.[]'",
        ),
        (
            vec!["backtest", "--input", array.to_str().unwrap()],
            "jq -c '.[]'",
        ),
        (
            vec![
                "backtest",
                "--input",
                data.to_str().unwrap(),
                "--labels",
                missing.to_str().unwrap(),
            ],
            "No such file or directory",
        ),
        (
            vec!["backtest", "--input", dir.path().to_str().unwrap()],
            "it is a directory",
        ),
    ];
    for (args, cause) in cases {
        let config = example();
        let out = Command::new(BIN)
            .args(&args)
            .args(["--config", &config])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.matches(cause).count(), 1, "{args:?}: {err}");
        assert!(!err.contains(".gz"), "{args:?}: {err}");
    }
}

#[test]
fn generate_then_replay_is_reproducible_from_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.jsonl");
    let crises = dir.path().join("crises.jsonl");
    let st = Command::new(BIN)
        .args(["generate", "--seed", "5", "--duration", "14h", "--output"])
        .arg(&input)
        .arg("--crises")
        .arg(&crises)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read_to_string(&crises).unwrap().lines().count(), 3);

    let run_from = |input: &std::path::Path, out: &std::path::Path| {
        let o = Command::new(BIN)
            .args([
                "replay",
                "--config",
                &example(),
                "--now",
                "2026-11-21T00:00:00Z",
                "--input",
            ])
            .arg(input)
            .arg("--output")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let run_file = |out: &std::path::Path| run_from(&input, out);
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let summary = run_file(&a);
    run_file(&b);
    let a_bytes = std::fs::read(&a).unwrap();
    assert!(!a_bytes.is_empty());
    assert_eq!(
        a_bytes,
        std::fs::read(&b).unwrap(),
        "same input + config → same bytes"
    );
    for want in [
        "lines read:",
        "invalid:",
        "late:",
        "transitions:",
        "duplicates:",
    ] {
        assert!(summary.contains(want), "{summary}");
    }
    // Every output line is a transition per the contract.
    for line in String::from_utf8(a_bytes.clone()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in [
            "rule",
            "group",
            "state",
            "severity",
            "at",
            "value",
            "threshold",
            "dedup_key",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
    }

    // Saved on Windows (a byte-order mark, CRLF line ends), then gzipped:
    // the same transitions, no line lost.
    let mut windows = b"\xEF\xBB\xBF".to_vec();
    for l in std::fs::read(&input)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        windows.extend_from_slice(l);
        windows.extend_from_slice(b"\r\n");
    }
    let gz = dir.path().join("day.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&windows).unwrap();
    enc.finish().unwrap();
    let c = dir.path().join("c.jsonl");
    let summary_gz = run_from(&gz, &c);
    assert_eq!(std::fs::read(&c).unwrap(), a_bytes, "{summary_gz}");
    let invalid = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("invalid:"))
            .map(str::to_string)
    };
    assert_eq!(invalid(&summary_gz), invalid(&summary), "{summary_gz}");

    // The same through stdin.
    let mut child = Command::new(BIN)
        .args([
            "replay",
            "--config",
            &example(),
            "--now",
            "2026-11-21T00:00:00Z",
            "--input",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = std::fs::read(&input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, a_bytes);
}

#[test]
fn demo_prints_incidents_and_serves_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .args([
            "demo",
            "--config",
            &example(),
            "--speed",
            "200000",
            "--listen",
            "127.0.0.1:0",
            "--linger",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut addr = None;
    let mut transcript = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Serving metrics on http://") {
            addr = Some(rest.trim_end_matches("/metrics").to_string());
        }
        let done = line.starts_with("Still serving /metrics");
        transcript.push(line);
        if done || Instant::now() > deadline {
            break;
        }
    }
    let text = transcript.join("\n");
    let addr = addr.expect("demo announced its metrics address");
    let metrics = http_get(&addr, "/metrics");
    let ready = http_get(&addr, "/readyz");
    let console = http_get(&addr, "/");
    // Stopped as a service manager stops it: it ends cleanly and removes
    // its scratch outbox.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(scratch_dirs(tmp.path()), Vec::<String>::new());

    assert!(text.contains("OPEN"), "{text}");
    assert!(text.contains("RESOLVE"), "{text}");
    // Incidents as the pager gets them: one block per notification of an
    // incident (key, summary, every active alert), progress updates included.
    assert!(text.contains(&format!("Console: http://{addr}/")), "{text}");
    assert!(
        text.contains("incident product/product=router-x/"),
        "{text}"
    );
    assert!(text.contains("PROGRESS"), "{text}");
    assert!(text.contains("    critical complaint_rate"), "{text}");
    assert!(
        console.contains("200 OK") && console.contains("Open incidents"),
        "{console}"
    );
    assert!(text.contains("crisis quality_surge"), "{text}");
    assert!(
        text.contains("alerts outside any injected crisis: 0"),
        "{text}"
    );
    for crisis in ["quality_surge", "social_spike", "churn_wave"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("crisis {crisis}")))
            .unwrap();
        assert!(line.contains("detected after"), "{line}");
    }
    assert!(ready.contains("200 OK"), "{ready}");
    for want in [
        "crisiswatch_events_total{outcome=\"applied\"}",
        "crisiswatch_events_invalid_total{reason=\"not_json\"}",
        "crisiswatch_indicator_value{rule=\"complaint_rate\",product=\"router-x\",region=\"eu-west\"}",
        "crisiswatch_indicator_threshold{rule=\"complaint_rate\",severity=\"warning\"} 0.05",
        "crisiswatch_alert_transitions_total{rule=\"complaint_rate\",state=\"firing\"}",
        "crisiswatch_window_groups{rule=\"complaint_rate\"}",
        "crisiswatch_watermark_timestamp_seconds",
    ] {
        assert!(metrics.contains(want), "missing {want}");
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

/// `demo` on a port that is taken ends with the one error that says so.
/// Its delivery workers, stopped with the runtime, used to report each
/// cancelled outbox call as "the outbox was left locked by a crashed
/// thread" — up to 200 ERROR lines before the real error, in about one run
/// in five (102 such lines over 15 runs; none since).
#[test]
fn demo_on_a_taken_port_says_so_and_nothing_else() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..8 {
        let out = Command::new(BIN)
            .env("TMPDIR", tmp.path())
            .args([
                "demo",
                "--listen",
                &addr,
                "--duration",
                "10m",
                "--speed",
                "100000",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Address already in use"), "{err}");
        assert!(!err.contains("crashed thread"), "{err}");
        assert!(!err.contains("ERROR"), "{err}");
    }
    // The scratch outbox each run made is removed on the error too.
    assert_eq!(scratch_dirs(tmp.path()), Vec::<String>::new());
}

/// The demo's scratch outbox directories left in `tmp`.
fn scratch_dirs(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("crisiswatch-demo-"))
        .collect()
}

/// Commands that look at the outbox or the checkpoint never create one:
/// pointed at a directory that holds none (a typo, the wrong working
/// directory) they say so. Before, they created an empty store there and
/// answered "No open incident." or an empty table.
#[test]
fn looking_at_a_store_that_does_not_exist_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let m = missing.to_str().unwrap();
    let cfg = example();
    for args in [
        vec!["incident", "--config", &cfg, "--data-dir", m, "list"],
        vec!["outbox", "--config", &cfg, "--data-dir", m, "list"],
        vec!["silence", "--config", &cfg, "--data-dir", m, "list"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("no outbox at") && err.contains("does not exist"),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {m}");
    }
    let out = Command::new(BIN)
        .args(["state", "--config", &cfg, "--dir", m, "inspect"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("No checkpoint") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!missing.exists(), "state inspect created {m}");
}

/// A standard error that cannot be written (full, or a pipe whose reader
/// left) never turns into a panic (exit 101): messages and log lines are
/// dropped and the command ends with its own exit code.
#[test]
fn a_full_standard_error_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "x = 1\n").unwrap();
    // Lines newest first: backtest logs a WARN about them.
    let history = dir.path().join("h.jsonl");
    let mut text = String::new();
    for i in (0..100).rev() {
        text.push_str(&format!(
            "{{\"id\":\"e{i}\",\"type\":\"order\",\"ts\":{},\"attrs\":{{\"product\":\"p\"}}}}\n",
            1_795_132_800_000i64 + i * 60_000
        ));
    }
    std::fs::write(&history, text).unwrap();
    let cfg = example();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for (args, want) in [
        (vec!["check", "--config", bad.to_str().unwrap()], Some(1)),
        (
            vec!["replay", "--config", &cfg, "--input", "/nonexistent"],
            Some(1),
        ),
        (
            vec![
                "backtest",
                "--config",
                &cfg,
                "--input",
                history.to_str().unwrap(),
            ],
            Some(0),
        ),
    ] {
        let st = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(full())
            .status()
            .unwrap();
        assert_eq!(st.code(), want, "{args:?}");
    }
}

/// `check` looks at what the service will need from this machine: a
/// receiver's secret variable unset, its secret file or `ca_file` missing
/// are warnings saying `run` would refuse to start (the file is valid, and
/// may be checked where its secrets are not), an admin token that is not
/// there is a warning (the service starts and refuses admin requests), and a
/// file with no rules is valid but says nothing is watched. Before, all of
/// these printed a bare OK.
#[test]
fn check_names_secrets_and_files_this_machine_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let missing = dir.path().join("missing.pem");
    let cfg = write(
        "c.toml",
        &format!(
            r#"
[server]
admin_token_env = "CW_TEST_UNSET_ADMIN"

[[receivers]]
name = "signed"
kind = "generic"
url = "https://hooks.example.com/a"
secret_env = "CW_TEST_UNSET_SECRET"

[[receivers]]
name = "private_ca"
kind = "generic"
url = "https://hooks.example.com/b"
ca_file = "{}"
"#,
            missing.display()
        ),
    );
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env_remove("CW_TEST_UNSET_SECRET")
        .env_remove("CW_TEST_UNSET_ADMIN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Valid, with warnings: the file may be checked where its secrets are not.
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: receivers.signed")
            && err.contains("CW_TEST_UNSET_SECRET is not set")
            && err.contains("`run` would refuse to start"),
        "{err}"
    );
    assert!(
        err.contains("receivers.private_ca") && err.contains("missing.pem"),
        "{err}"
    );
    // With the secret set and no ca_file: valid, the admin token a warning,
    // no rules a warning.
    let cfg = write(
        "d.toml",
        r#"
[server]
admin_token_env = "CW_TEST_UNSET_ADMIN"

[[receivers]]
name = "signed"
kind = "generic"
url = "https://hooks.example.com/a"
secret_env = "CW_TEST_SET_SECRET"
"#,
    );
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env("CW_TEST_SET_SECRET", "x")
        .env_remove("CW_TEST_UNSET_ADMIN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: server.admin_token_env"), "{err}");
    assert!(err.contains("has no [[rules]]"), "{err}");
}

/// `generate` refuses a rate it could not write in any useful time (it
/// spun without writing a line).
#[test]
fn generate_refuses_an_absurd_rate() {
    let out = Command::new(BIN)
        .args([
            "generate",
            "--orders-per-minute",
            "1e12",
            "--output",
            "/dev/null",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is more than 1000000"), "{err}");
}

/// Counts of a generated stream: (social complaints, complaints,
/// cancellations, orders, products seen).
fn stream_mix(args: &[&str]) -> (usize, usize, usize, usize, usize) {
    let out = Command::new(BIN)
        .args([
            "generate",
            "--seed",
            "3",
            "--duration",
            "24h",
            "--no-crises",
            "--no-noise",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut social, mut complaints, mut cancels, mut orders) = (0, 0, 0, 0);
    let mut products = std::collections::BTreeSet::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if let Some(p) = v["attrs"]["product"].as_str() {
            products.insert(p.to_string());
        }
        match v["type"].as_str() {
            Some("complaint") => {
                complaints += 1;
                social += usize::from(v["attrs"]["channel"] == "social");
            }
            Some("cancellation") => cancels += 1,
            Some("order") => orders += 1,
            _ => {}
        }
    }
    (social, complaints, cancels, orders, products.len())
}

/// `generate` (and `demo`) take the traffic-shape knobs, so a data team can
/// make history shaped like its own; the defaults are the demo's stream, and
/// a knob out of range is a clear error.
#[test]
fn generate_takes_the_traffic_shape() {
    let (social, complaints, cancels, orders, products) = stream_mix(&[]);
    assert_eq!(products, 5);
    let social_share = social as f64 / complaints as f64;
    assert!(social_share < 0.08, "demo social share {social_share}");
    let (social2, complaints2, cancels2, orders2, products2) = stream_mix(&[
        "--social-share",
        "0.3",
        "--cancel-rate",
        "0.03",
        "--products",
        "2",
        "--volume",
        "0.5",
    ]);
    assert_eq!(products2, 2);
    let share2 = social2 as f64 / complaints2 as f64;
    assert!(
        (0.25..0.35).contains(&share2),
        "social share {share2} of {complaints2}"
    );
    let rate = cancels as f64 / orders as f64;
    let rate2 = cancels2 as f64 / orders2 as f64;
    assert!(rate2 > 4.0 * rate, "cancel rate {rate2} beside {rate}");
    // Half the volume on two products of five: about a fifth of the orders.
    let ratio = orders2 as f64 / orders as f64;
    assert!((0.1..0.3).contains(&ratio), "orders ×{ratio}");

    let out = Command::new(BIN)
        .args([
            "generate",
            "--volume",
            "50",
            "--regions",
            "9",
            "--output",
            "/dev/null",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--volume must lie in [0.1, 10]"), "{err}");
    assert!(err.contains("--regions must be 3 or 4"), "{err}");
}

/// `run` with a receiver whose secret cannot be read refuses to start, and
/// says nothing of serving before it does (it once announced
/// `Serving /metrics …` and then exited).
#[test]
fn run_refuses_an_unreadable_secret_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[sources.kafka]
brokers = "127.0.0.1:1"
group_id = "cw-test"
topics = [{{ name = "events" }}]

[incidents]
data_dir = "{}"

[[receivers]]
name = "hook"
kind = "generic"
url = "http://127.0.0.1:1/"
secret_env = "CW_TEST_UNSET_RUN_SECRET"
"#,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env_remove("CW_TEST_UNSET_RUN_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(err.contains("CW_TEST_UNSET_RUN_SECRET is not set"), "{all}");
    assert!(!all.contains("Serving"), "{all}");
}

/// `replay` of an empty or blank file says so (it replayed nothing); and
/// `generate` refuses a period past year 9999 and one file named for both
/// the stream and its crises.
#[test]
fn replay_of_a_blank_file_warns_and_generate_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.jsonl");
    std::fs::write(&blank, "\n\n  \n").unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--config", &example(), "--input"])
        .arg(&blank)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("holds no event line"), "{err}");
    assert!(out.stdout.is_empty());

    let out = Command::new(BIN)
        .args([
            "generate",
            "--start",
            "9999-12-31T23:30:00Z",
            "--duration",
            "1h",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("9999-12-31T23:59:59.999Z"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let both = dir.path().join("both.jsonl");
    let out = Command::new(BIN)
        .args(["generate", "--duration", "1m", "--output"])
        .arg(&both)
        .arg("--crises")
        .arg(&both)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("two of this command's outputs"),
        "{err}"
    );
    assert!(!both.exists());
}

/// `state reset` of a directory without a store creates none (a mistyped
/// `--dir` stays visible to `inspect`), and it removes a file that is not
/// a store at all — the way out the README names for a checkpoint that
/// cannot be loaded.
#[test]
fn state_reset_creates_nothing_and_removes_a_file_that_is_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nodir");
    let out = Command::new(BIN)
        .args(["state", "--config", &example(), "--dir"])
        .arg(&missing)
        .args(["reset", "--yes"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("No checkpoint to delete"), "{stdout}");
    assert!(!missing.exists(), "reset created {}", missing.display());

    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(
        junk.join("state.sqlite"),
        b"this is not a database at all, just text",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["state", "--config", &example(), "--dir"])
        .arg(&junk)
        .args(["reset", "--yes"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Checkpoint deleted"), "{stdout}");
    assert!(!junk.join("state.sqlite").exists());
    let out = Command::new(BIN)
        .args(["state", "--config", &example(), "--dir"])
        .arg(&junk)
        .arg("inspect")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist"));
}

/// A receiver that answers every request 204 (one connection per request).
fn accepting_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let _ = conn.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    url
}

/// Two demos delivering to one outbox (an HTTP receiver's
/// `incidents.data_dir`): the second prints and counts its own incidents
/// only, not the first one's again.
#[test]
fn a_demo_on_an_outbox_with_earlier_runs_counts_its_own_incidents() {
    let data = tempfile::tempdir().unwrap();
    let url = accepting_receiver();
    let demo = |seed: &str| {
        let out = Command::new(BIN)
            .env("CRISISWATCH_DATA_DIR", data.path())
            .env("CRISISWATCH_WEBHOOK_URL", &url)
            .args([
                "demo",
                "--speed",
                "200000",
                "--seed",
                seed,
                "--listen",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        let opened: std::collections::BTreeSet<String> = text
            .lines()
            .filter(|l| l.contains(" OPEN "))
            .filter_map(|l| l.split(" incident ").nth(1))
            .map(|k| k.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        let grouped = text
            .lines()
            .find_map(|l| l.split("grouped into ").nth(1))
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no incident count: {text}"));
        (opened, grouped)
    };
    let (first, n1) = demo("1");
    let (second, n2) = demo("2");
    assert!(!first.is_empty() && !second.is_empty());
    assert_eq!(n1, first.len());
    assert_eq!(n2, second.len(), "{second:?}");
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    // Everything was delivered: a list of what is pending prints no table
    // header over nothing, only the message (on standard error).
    let out = Command::new(BIN)
        .args(["outbox", "--config", &example(), "--data-dir"])
        .arg(data.path())
        .args(["list", "--status", "pending"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "", "{stderr}");
    assert!(stderr.contains("no pending notifications in"), "{stderr}");
}
