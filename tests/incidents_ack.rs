//! A responder's acknowledgement reaches the receivers that take it, as a
//! user gives it: `crisiswatch replay` leaves an incident open (paged to
//! PagerDuty and two webhooks, real HTTP servers on loopback), `crisiswatch
//! incident ack` records the acknowledgement, and the next process that
//! opens the outbox (`crisiswatch outbox deliver` here; the running service
//! within a second) sends PagerDuty an `acknowledge` event on the incident's
//! `dedup_key` — retried when PagerDuty answers 503, like any notification —
//! and the generic webhook that opted in (`acknowledge = true`) an `action:
//! "acknowledge"`; the other webhook hears nothing more (the contract's open,
//! update and resolve only). A second acknowledgement sends nothing again.

mod incidents_support;

use std::path::Path;
use std::process::{Command, Output};

use incidents_support::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const T0: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z
/// The wall clock of `replay`'s future-skew check: after every event.
const HISTORY_NOW: &str = "2026-11-22T00:00:00Z";
const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000000";

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

/// Eight complaints about router-x in ten minutes: `complaint_count` fires
/// (warning above 5) and is still firing when the input ends.
fn crisis_input(path: &Path) {
    let lines: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"id":"c{i}","type":"complaint","ts":{},"attrs":{{"product":"router-x","region":"eu-west"}}}}"#,
                T0 + i * 30_000
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn write_config(dir: &Path, pd: &Receiver, hook: &Receiver, acking: &Receiver) -> String {
    let key_file = dir.join("pd-key");
    std::fs::write(&key_file, format!("{ROUTING_KEY}\n")).unwrap();
    let fast = r#"backoff_initial = "100ms", backoff_max = "200ms", breaker_failures = 0"#;
    let text = format!(
        r#"
[server]
listen = ""
[incidents]
data_dir = "{data}"
update_interval = "0"
drain_timeout = "30s"
[[incidents.routes]]
name = "slice"
group_by = ["product", "region"]
group_window = "0s"
[[rules]]
name = "complaint_count"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 5 }}

[[receivers]]
name = "pd"
kind = "pagerduty"
url = "{pd}"
routing_key_file = "{key}"
delivery = {{ {fast} }}
{hook}
{acking}acknowledge = true
"#,
        data = dir.join("data").display(),
        pd = pd.url(),
        key = key_file.display(),
        hook = generic_receiver("hook", &hook.url(), fast),
        acking = generic_receiver("acking", &acking.url(), fast),
    );
    let p = dir.join("crisiswatch.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn bodies(rx: &Receiver) -> Vec<Value> {
    rx.accepted().iter().map(|r| r.json()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_reaches_pagerduty_and_opted_in_webhooks_once() {
    let (pd, hook, acking) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    crisis_input(&input);
    let cfg = write_config(dir.path(), &pd, &hook, &acking);
    let cfg = cfg.as_str();
    run(&[
        "replay",
        "--now",
        HISTORY_NOW,
        "--config",
        cfg,
        "--input",
        input.to_str().unwrap(),
        "--output",
        "/dev/null",
    ]);
    // The incident is open and paged everywhere.
    let triggers = bodies(&pd);
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["event_action"], "trigger");
    let key = triggers[0]["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(bodies(&hook).len(), 1);
    assert_eq!(bodies(&acking)[0]["action"], "open");

    let out = run(&[
        "incident", "--config", cfg, "ack", &key, "--by", "ana", "--note", "on it",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("acknowledged by ana"), "{stdout}");
    // Nothing is sent until a process with the incident stage runs.
    assert_eq!(pd.requests().len(), 1);

    // PagerDuty is down at first: the acknowledgement is retried.
    pd.script([Reply::status(503)]);
    let out = run(&["outbox", "--config", cfg, "deliver"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 notification(s) still queued"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reqs = pd.requests();
    assert_eq!(reqs.len(), 3, "trigger, a refused acknowledge, its retry");
    assert_eq!(reqs[1].status, 503);
    assert_eq!(reqs[1].body, reqs[2].body, "the retry sends the same event");
    assert_eq!(
        reqs[2].json(),
        serde_json::json!({
            "routing_key": ROUTING_KEY,
            "event_action": "acknowledge",
            "dedup_key": key,
        })
    );
    let got = bodies(&acking);
    assert_eq!(got.len(), 2, "{got:?}");
    let ack = &got[1];
    assert_eq!(ack["action"], "acknowledge");
    assert_eq!(ack["reason"], "acknowledged");
    assert_eq!(ack["dedup_key"], key.as_str());
    assert_eq!(ack["seq"], 2, "after the open, in the incident's sequence");
    assert_eq!(ack["acknowledged"]["by"], "ana");
    assert_eq!(ack["acknowledged"]["note"], "on it");
    assert_eq!(ack["rule"], "complaint_count");
    let summary = ack["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Acknowledged by ana (on it) after "),
        "{summary}"
    );
    // On the incident's event-time axis (the history is of 2026-11-20, the
    // acknowledgement made weeks later by the wall clock): minutes after
    // its start, not weeks.
    assert!(
        ack["duration_seconds"]
            .as_i64()
            .is_some_and(|d| (0..3600).contains(&d)),
        "{ack}"
    );
    // The webhook that did not opt in hears only the contract's actions.
    assert_eq!(bodies(&hook).len(), 1, "{:?}", bodies(&hook));

    // A second acknowledgement is recorded, and sends nothing again.
    run(&["incident", "--config", cfg, "ack", &key, "--by", "bob"]);
    run(&["outbox", "--config", cfg, "deliver"]);
    assert_eq!(pd.requests().len(), 3);
    assert_eq!(bodies(&acking).len(), 2);
    assert_eq!(bodies(&hook).len(), 1);
    // Both acknowledgements are in the feedback log.
    let list = run(&["incident", "--config", cfg, "list", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("\"ana\""), "{text}");
}

/// An attribute value with terminal control sequences reaches `incident
/// list` escaped (`\u{1b}`), never raw: raw, it cleared and recoloured the
/// operator's terminal.
#[tokio::test]
async fn incident_list_escapes_control_characters() {
    let (pd, hook, acking) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"id":"c{i}","type":"complaint","ts":{},"attrs":{{"product":"x\u001b[2J\u001b[31mFAKE\r\nline","region":"eu-west"}}}}"#,
                T0 + i * 30_000
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let cfg = write_config(dir.path(), &pd, &hook, &acking);
    run(&[
        "replay",
        "--now",
        HISTORY_NOW,
        "--config",
        &cfg,
        "--input",
        input.to_str().unwrap(),
        "--output",
        "/dev/null",
    ]);
    let list = run(&["incident", "--config", &cfg, "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
}
