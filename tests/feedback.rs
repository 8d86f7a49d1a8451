//! Responders' feedback as a user gives it: a generated day is replayed with
//! a webhook receiver (so its incidents land in the outbox), an incident is
//! labelled with `crisiswatch incident label`, and `tune --labels-from` reads
//! the label: `noise` makes the incident a false page, `useful` a caught crisis.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The wall clock of the history commands: after the generated day, so the
/// test does not depend on today's date.
const HISTORY_NOW: &str = "2026-11-22T00:00:00Z";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
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

/// A webhook receiver that accepts every request (the replay's incidents
/// need a receiver with a URL to be written to the outbox).
fn accepting_receiver() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = c.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len {
                        let _ = c.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/hook")
}

/// The tune row of the configured rule (`=` in the table) from the CSV.
fn current_row(csv: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    for l in lines {
        let row: std::collections::HashMap<String, String> = head
            .iter()
            .map(|h| h.to_string())
            .zip(l.split(',').map(str::to_string))
            .collect();
        if row["current"] == "true" {
            return row;
        }
    }
    panic!("no current row in {text}");
}

#[test]
fn a_noise_label_makes_tune_count_a_false_page_and_useful_a_caught_crisis() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("day.jsonl");
    let crises = dir.path().join("crises.jsonl");
    run(
        &[
            "generate",
            "--seed",
            "5",
            "--orders-per-minute",
            "300",
            "--output",
            s(&data),
            "--crises",
            s(&crises),
        ],
        &[],
    );
    let outbox = dir.path().join("data");
    let url = accepting_receiver();
    let env = [
        ("CRISISWATCH_DATA_DIR", s(&outbox)),
        ("CRISISWATCH_WEBHOOK_URL", url.as_str()),
    ];
    let config = format!("{ROOT}/config/crisiswatch.toml");
    run(
        &[
            "replay",
            "--now",
            HISTORY_NOW,
            "--config",
            &config,
            "--input",
            s(&data),
            "--output",
            s(&dir.path().join("transitions.jsonl")),
        ],
        &env,
    );

    // The incident that carries the social spike.
    let db = rusqlite::Connection::open(outbox.join("outbox.sqlite")).unwrap();
    let keys: Vec<String> = db
        .prepare("SELECT DISTINCT incident FROM notifications WHERE body LIKE '%\"rule\":\"social_spike\"%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(db);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];

    let tune = |name: &str| {
        let csv = dir.path().join(format!("{name}.csv"));
        let out = run(
            &[
                "tune",
                "--now",
                HISTORY_NOW,
                "--config",
                &config,
                "--input",
                s(&data),
                "--rule",
                "social_spike",
                "--vary",
                "for=0m,3m",
                "--labels-from",
                s(&outbox),
                "--csv",
                s(&csv),
            ],
            &env,
        );
        (
            current_row(&csv),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // A resolved incident cannot be acknowledged, but it can be labelled.
    let ack = Command::new(BIN)
        .args(["incident", "--config", &config, "ack", key])
        .envs(env)
        .output()
        .unwrap();
    assert!(!ack.status.success());
    assert!(String::from_utf8_lossy(&ack.stdout).contains("no longer open"));
    let out = run(
        &[
            "incident",
            "--config",
            &config,
            "label",
            key,
            "noise",
            "--by",
            "ana",
            "--note",
            "a meme, not a crisis",
        ],
        &env,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("noise by ana"));
    let (row, stderr) = tune("noise");
    assert!(
        stderr.contains("0 incident(s) marked useful, 1 marked noise"),
        "{stderr}"
    );
    assert_eq!(row["incidents"], "1", "{row:?}");
    assert_eq!(
        row["false_incidents"], "1",
        "the noise page counts as false: {row:?}"
    );
    assert_eq!(row["missed"], "0", "{row:?}");

    // The team changes its mind: the latest label counts.
    run(
        &["incident", "--config", &config, "label", key, "useful"],
        &env,
    );
    let (row, stderr) = tune("useful");
    assert!(stderr.contains("1 incident(s) marked useful"), "{stderr}");
    // Without a value, `--labels-from` reads the configured data directory.
    let bare = run(
        &[
            "backtest",
            "--now",
            HISTORY_NOW,
            "--config",
            &config,
            "--input",
            s(&data),
            "--labels-from",
        ],
        &env,
    );
    let bare_err = String::from_utf8_lossy(&bare.stderr);
    assert!(
        bare_err.contains(&format!("labels from {}", outbox.display()))
            && bare_err.contains("1 incident(s) marked useful"),
        "{bare_err}"
    );
    assert_eq!(row["false_incidents"], "0", "{row:?}");
    assert_eq!(row["missed"], "0", "{row:?}");
    assert!(
        !row["median_delay_s"].is_empty(),
        "the crisis is caught: {row:?}"
    );

    // An unknown key is refused and records nothing.
    let bad = Command::new(BIN)
        .args([
            "incident",
            "--config",
            &config,
            "label",
            "no/such/1",
            "noise",
        ])
        .envs(env)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let db = rusqlite::Connection::open(outbox.join("outbox.sqlite")).unwrap();
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM feedback", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}
