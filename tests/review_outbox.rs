//! `crisiswatch review --outbox`: post-incident reviews of the live service's
//! incidents, rebuilt from a real outbox. `crisiswatch replay` fills it the
//! way the service does (the example configuration, a generated day, two
//! webhook receivers on loopback, a silence muting one product), and each
//! alert's timeline and event figures are checked against the backtest's
//! review of the same history.

mod incidents_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use incidents_support::Receiver;

const BIN: &str = env!("CARGO_BIN_EXE_crisiswatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    /// The data directory holding outbox.sqlite.
    data: PathBuf,
    history: PathBuf,
    transitions: PathBuf,
    /// `review --input` (a backtest) of every incident, one file per alert instance.
    backtest_reviews: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("CRISISWATCH_WEBHOOK_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn run_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(
        out.status.success(),
        "crisiswatch {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A generated day replayed into an outbox, once for all tests.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("review_outbox");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let history = dir.join("day.jsonl");
        run_ok(&["generate", "--seed", "5", "--output", s(&history)], &[]);
        // The example configuration with a second webhook receiver.
        let example = std::fs::read_to_string(format!("{ROOT}/config/crisiswatch.toml")).unwrap();
        let config = dir.join("crisiswatch.toml");
        std::fs::write(
            &config,
            format!(
                "{example}\n[[receivers]]\nname = \"audit\"\nkind = \"generic\"\nurl = \"${{CRISISWATCH_WEBHOOK_URL:-}}\"\n"
            ),
        )
        .unwrap();
        let data = dir.join("data");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let rx = rt.block_on(Receiver::start());
        let url = rx.url();
        let env = [
            ("CRISISWATCH_DATA_DIR", s(&data)),
            ("CRISISWATCH_WEBHOOK_URL", url.as_str()),
        ];
        run_ok(
            &[
                "silence", "--config", s(&config), "add", "product=phone-z", "--for", "1000h",
            ],
            &env,
        );
        let transitions = dir.join("transitions.jsonl");
        let out = run(
            &[
                "replay",
                "--config",
                s(&config),
                "--input",
                s(&history),
                "--output",
                s(&transitions),
                "--now",
                "2026-11-21T00:00:00Z",
            ],
            &env,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(", 0 still undelivered"), "{stderr}");
        drop(rx);
        drop(rt);
        let backtest_reviews = dir.join("backtest-reviews");
        run_ok(
            &[
                "review",
                "--config",
                s(&config),
                "--input",
                s(&history),
                "--output",
                s(&backtest_reviews),
            ],
            &[],
        );
        Fixture {
            dir,
            config,
            data,
            history,
            transitions,
            backtest_reviews,
        }
    })
}

/// `crisiswatch review --outbox <data> ARGS...` (must succeed).
fn review_outbox(f: &Fixture, args: &[&str]) -> String {
    let mut a = vec!["review", "--config", s(&f.config), "--outbox", s(&f.data)];
    a.extend_from_slice(args);
    run_ok(&a, &[])
}

/// A dedup key made safe for a file name (as `review` names its files when
/// the key holds only ASCII letters, digits, `-_.` and the separators
/// `/=,`, as this fixture's do; others end with a hash of the key).
fn safe_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A value as the reviews print it: up to 4 decimals, no trailing zeros.
fn fmt_value(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The table row of `md` that starts with `| {name} |`.
fn row<'a>(md: &'a str, name: &str) -> &'a str {
    let head = format!("| {name} |");
    md.lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no {name:?} row in\n{md}"))
}

/// The transition rows of a timeline table: [time, state, severity, value, threshold].
fn timeline(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with("| 20"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|c| {
            c.len() == 5 && ["pending", "firing", "escalated", "resolved"].contains(&c[1].as_str())
        })
        .collect()
}

/// The text between `from` and the next line starting with any of `until` (or the end).
fn section<'a>(md: &'a str, from: &str, until: &[&str]) -> &'a str {
    let start = md
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in\n{md}"));
    let rest = &md[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| until.iter().any(|u| rest[i..].starts_with(u)))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The alert sections of an outbox review.
fn alert_sections(md: &str) -> Vec<&str> {
    md.match_indices("\n## Alert ")
        .map(|(i, _)| {
            section(
                &md[i + 1..],
                "## Alert ",
                &["## Alert ", "## Events", "---"],
            )
        })
        .collect()
}

/// The extreme value of an alert over its firing, escalated and resolved
/// transitions in the replay's output: what the incident stage observed.
fn observed_peak(transitions: &Path, key: &str) -> f64 {
    let text = std::fs::read_to_string(transitions).unwrap();
    let mut values = Vec::new();
    let mut below = false;
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["dedup_key"] != key || v["state"] == "pending" {
            continue;
        }
        below = v["clear"].as_f64().unwrap() > v["threshold"].as_f64().unwrap();
        if let Some(x) = v["value"].as_f64() {
            values.push(x);
        }
    }
    let pick = if below { f64::min } else { f64::max };
    values
        .into_iter()
        .reduce(pick)
        .expect("the alert has values")
}

#[test]
fn outbox_reviews_match_the_backtest_reviews_of_the_same_history() {
    let f = fixture();
    let out = f.dir.join("outbox-reviews");
    review_outbox(f, &["--input", s(&f.history), "--output", s(&out)]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("product_product_router-x_")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("product_product_phone-z_")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("churn_region_us-east_")),
        "{names:?}"
    );
    let mut compared = 0;
    for file in &files {
        let md = std::fs::read_to_string(file).unwrap();
        assert!(md.starts_with("# Incident review: "), "{md}");
        assert!(row(&md, "Resolved").contains("2026-11-20T"), "{md}");
        let alerts = alert_sections(&md);
        assert!(!alerts.is_empty(), "{md}");
        assert!(
            row(&md, "Alerts").starts_with(&format!("| Alerts | {}: ", alerts.len())),
            "{md}"
        );
        for a in alerts {
            let key = row(a, "Dedup key")
                .trim_start_matches("| Dedup key | `")
                .trim_end_matches("` |")
                .to_string();
            let bt_path = f.backtest_reviews.join(format!("{}.md", safe_name(&key)));
            let bt = std::fs::read_to_string(&bt_path)
                .unwrap_or_else(|e| panic!("{}: {e}", bt_path.display()));
            // The same alert instance, the same facts.
            for name in [
                "Rule",
                "Slice",
                "Highest severity",
                "Breach began",
                "Fired",
                "Resolved",
                "Duration (firing)",
                "Thresholds",
                "Window",
            ] {
                assert_eq!(row(a, name), row(&bt, name), "{key}: {name}");
            }
            // Every transition from the ledger: same times, states, severities
            // and thresholds; a value wherever a notification carried one,
            // equal to the engine's.
            let ours = timeline(section(a, "### Timeline", &["### Events", "## "]));
            let theirs = timeline(section(&bt, "## Timeline", &["## Events"]));
            assert_eq!(ours.len(), theirs.len(), "{key}:\n{a}\n{bt}");
            // Every rule of the example but response_backlog has a `for`:
            // its alerts go through pending, and the review shows it.
            let pending = |rows: &[Vec<String>]| rows.iter().any(|r| r[1] == "pending");
            assert_eq!(
                pending(&ours),
                !key.starts_with("response_backlog/"),
                "{key}: pending shows"
            );
            assert_eq!(pending(&theirs), pending(&ours), "{key}");
            for (o, t) in ours.iter().zip(&theirs) {
                assert_eq!(
                    (&o[0], &o[1], &o[2], &o[4]),
                    (&t[0], &t[1], &t[2], &t[4]),
                    "{key}"
                );
                assert!(o[3] == "-" || o[3] == t[3], "{key}: value {o:?} vs {t:?}");
            }
            assert!(
                ours.iter().any(|r| r[3] != "-"),
                "{key}: some transition value is known"
            );
            // The peak the incident stage observed, never beyond the backtest's sampled one.
            let peak = observed_peak(&f.transitions, &key);
            let peak_row = row(a, "Peak value");
            assert!(
                peak_row.starts_with(&format!("| Peak value | {}", fmt_value(peak))),
                "{key}: {peak_row} (want {peak})"
            );
            let sampled: f64 = row(&bt, "Peak value")
                .trim_start_matches("| Peak value | ")
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let below = row(&bt, "Thresholds").contains("| below:");
            // Both as the reviews print them (four decimals): a sampled
            // peak equal to the observed one may print lower than it is.
            let shown: f64 = fmt_value(peak).parse().unwrap();
            assert!(
                if below {
                    sampled <= shown
                } else {
                    sampled >= shown
                },
                "{key}: sampled {sampled} vs observed {peak}"
            );
            // The events behind it: the very figures the backtest review gives.
            let ev = section(a, "### Events involved", &["## Alert", "---"]).replace("### ", "## ");
            let bt_ev = section(&bt, "## Events involved", &[]);
            assert_eq!(ev.trim(), bt_ev.trim(), "{key}");
            assert!(
                bt_ev.contains("| Distinct customers (all events) |"),
                "{bt_ev}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared} alerts compared");
}

#[test]
fn router_x_incident_timeline_and_events() {
    let f = fixture();
    let md = review_outbox(
        f,
        &[
            "--incident",
            "product/product=router-x",
            "--input",
            s(&f.history),
        ],
    );
    for want in [
        "# Incident review: product — product=router-x",
        "| Route | `product` |",
        "| Labels | product=router-x |",
        "| Breach began | 2026-11-20T09:07:30Z |",
        "| Opened | 2026-11-20T09:14:30Z (notification #1) |",
        "| Resolved | 2026-11-20T15:39:13Z |",
        "| Notifications | 24 stored: open 1, update 22, resolve 1 |",
        "| Receivers | audit: delivered 24; webhook: delivered 24 |",
        "| 1 | 2026-11-20T09:14:30Z | open | opened: severe_share | warning | audit delivered, webhook delivered |",
        "| 24 | 2026-11-20T15:39:13Z | resolve | response_backlog resolved |",
        // Changes within a minute (`group_interval`): one update.
        "| 6 | 2026-11-20T09:34:00Z | update | severe_share escalated to critical; complaint_rate escalated to critical | critical |",
        "| 15 | 2026-11-20T12:30:00Z | update | at_risk_customers resolved; nps_drop resolved | critical |",
        "## Alert 3 of 7: complaint_rate — product=router-x region=eu-west",
        "## Alert 7 of 7: response_backlog — product=router-x",
        // The support team's backlog keeps the incident open until it is answered.
        "| 2026-11-20T10:10:00Z | firing | warning | 30 | 10 |",
        "| 2026-11-20T15:39:13Z | resolved | critical | 5 | 50 |",
        "| Dedup key | `complaint_rate/product=router-x,region=eu-west/1795166141726` |",
        "| 2026-11-20T09:15:41Z | pending | warning | - | 0.05 |",
        "| 2026-11-20T09:18:41Z | firing | warning | 0.0589 | 0.05 |",
        "| 2026-11-20T09:34:00Z | escalated | critical | 0.1002 | 0.1 |",
        "| 2026-11-20T12:55:00Z | resolved | critical | 0.0215 | 0.1 |",
        "| Peak value | 0.1002 at 2026-11-20T09:34:00Z ",
        "| Events | 6448 |",
        "| Distinct customers (signal events) | 477 |",
        "| category | product_quality | 339 | 52.7 % |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    // The 24 notifications, once each although two receivers got them.
    let seqs: Vec<u32> = section(&md, "## Notifications", &["## Alert"])
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
    // An alert's dedup key picks its incident too.
    let by_alert = review_outbox(
        f,
        &[
            "--incident",
            "complaint_rate/product=router-x,region=eu-west/1795166141726",
        ],
    );
    assert!(by_alert.starts_with("# Incident review: product — product=router-x"));
    assert!(
        by_alert.contains("Not computed: the history was not given"),
        "{by_alert}"
    );
    assert!(!by_alert.contains("| Events |"), "{by_alert}");
}

#[test]
fn muted_notifications_count_and_list_shows_every_incident() {
    let f = fixture();
    let list = review_outbox(f, &["--list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(lines[0].starts_with("incident "), "{list}");
    for (l, key) in lines[1..].iter().zip([
        "product/product=router-x/",
        "product/product=phone-z/",
        "churn/region=us-east/",
    ]) {
        assert!(l.starts_with(key) && l.contains(" resolved "), "{list}");
    }
    assert!(lines[1].ends_with(" 7             24"), "{list}");
    // phone-z was silenced: nobody was told, the incident is still reviewed.
    let md = review_outbox(f, &["--incident", "phone-z"]);
    let n = row(&md, "Notifications")
        .trim_start_matches("| Notifications | ")
        .split(' ')
        .next()
        .unwrap()
        .parse::<usize>()
        .unwrap();
    assert!(n >= 3, "{md}");
    assert_eq!(
        row(&md, "Receivers"),
        format!("| Receivers | audit: muted {n}; webhook: muted {n} |")
    );
    let muted_rows = md
        .lines()
        .filter(|l| l.contains("| audit muted, webhook muted |"))
        .count();
    assert_eq!(muted_rows, n, "{md}");
}

#[test]
fn reads_while_the_service_writes_and_rebuilds_without_the_ledger() {
    let f = fixture();
    let copy = f.dir.join("copy-held");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(f.data.join("outbox.sqlite"), copy.join("outbox.sqlite")).unwrap();
    // The service's own store holds the database open (WAL) ...
    let service = crisiswatch::incident::outbox::Outbox::open(&copy).unwrap();
    // ... and a write sits in the WAL: the ledger is gone (as after `retention`).
    let writer = rusqlite::Connection::open(copy.join("outbox.sqlite")).unwrap();
    writer.execute("DELETE FROM applied", []).unwrap();
    let md = run_ok(
        &[
            "review",
            "--config",
            s(&f.config),
            "--outbox",
            s(&copy.join("outbox.sqlite")),
            "--incident",
            "complaint_rate/product=router-x,region=eu-west/",
        ],
        &[],
    );
    drop(writer);
    drop(service);
    let a = alert_sections(&md)
        .into_iter()
        .find(|a| a.contains("complaint_rate — product=router-x"))
        .unwrap();
    assert!(a.contains("Rebuilt from the notifications"), "{a}");
    let rows = timeline(a);
    let states: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(states, ["firing", "escalated", "resolved"], "{a}");
    assert_eq!(rows[0][0], "2026-11-20T09:18:41Z");
    assert_eq!(
        rows[1][..4],
        ["2026-11-20T09:34:00Z", "escalated", "critical", "0.1002"]
    );
    assert_eq!(
        rows[2][..4],
        ["2026-11-20T12:55:00Z", "resolved", "critical", "0.0215"]
    );
}

#[test]
fn the_review_leaves_the_outbox_as_it_was() {
    let f = fixture();
    let db = f.data.join("outbox.sqlite");
    let before = std::fs::read(&db).unwrap();
    review_outbox(f, &["--list"]);
    review_outbox(f, &["--incident", "churn/"]);
    assert!(std::fs::read(&db).unwrap() == before, "the outbox changed");
}

#[test]
fn errors_say_what_is_wrong() {
    let f = fixture();
    let cfg = s(&f.config);
    let fail = |args: &[&str]| {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = f.dir.join("no-such-dir");
    let e = fail(&["review", "--config", cfg, "--outbox", s(&missing)]);
    assert!(
        e.contains("no outbox at") && e.contains("no-such-dir"),
        "{e}"
    );
    let e = fail(&["review", "--config", cfg, "--outbox", s(&f.history)]);
    assert!(e.contains("is not a crisiswatch outbox"), "{e}");
    let other = f.dir.join("other.sqlite");
    let _ = std::fs::remove_file(&other);
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (x TEXT);")
        .unwrap();
    let e = fail(&["review", "--config", cfg, "--outbox", s(&other)]);
    assert!(
        e.contains("is not a crisiswatch outbox (no table notifications, incidents, applied)"),
        "{e}"
    );
    let data = s(&f.data);
    let e = fail(&[
        "review",
        "--config",
        cfg,
        "--outbox",
        data,
        "--incident",
        "tablet-q",
    ]);
    assert!(
        e.contains("no incident in")
            && e.contains("matches \"tablet-q\"; incidents: product/product=router-x/"),
        "{e}"
    );
    let e = fail(&[
        "review",
        "--config",
        cfg,
        "--outbox",
        data,
        "--incident",
        "product/",
    ]);
    assert!(e.contains("\"product/\" matches 2 incidents"), "{e}");
    assert!(
        e.contains("product/product=router-x/") && e.contains("product/product=phone-z/"),
        "{e}"
    );
    // --outbox and --transitions are two sources: clap refuses both (exit 2).
    let out = run(
        &[
            "review",
            "--config",
            cfg,
            "--outbox",
            data,
            "--transitions",
            s(&f.transitions),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    // Without a value, --outbox is incidents.data_dir of the configuration.
    let list = run_ok(
        &["review", "--config", cfg, "--outbox", "--list"],
        &[("CRISISWATCH_DATA_DIR", data)],
    );
    assert_eq!(list.lines().count(), 4, "{list}");
}
