//! A real Prometheus scrapes a real `crisiswatch demo` run.
//!
//! Checks that `promtool check metrics` accepts `/metrics`, that the monitor's
//! own alerting rules load, that every PromQL expression of every dashboard
//! panel returns at least one series through Prometheus's HTTP API (with the
//! dashboards' `job` variable set to the scrape job), and that the crisis
//! slice's indicator series crosses its threshold series. The dashboards'
//! shape (variables, scoping, no rule names, provisioning files) is checked
//! without Prometheus.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, installed by
//! `scripts/install-test-deps.sh`).

mod prometheus_support;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prometheus_support::{enc, exprs, query, rules_file, Prometheus, DASHBOARDS};
use serde_json::Value;
use support::{free_port, http_get, require_program, ChildGuard, BIN, ROOT};

#[test]
fn dashboards_and_rules_work_against_a_real_prometheus() {
    require_program("prometheus");
    let promtool = require_program("promtool");
    let dir = tempfile::tempdir().unwrap();

    // The demo: a simulated day in about a minute, then metrics stay up.
    let demo_port = free_port();
    let demo_addr = format!("127.0.0.1:{demo_port}");
    let mut demo = Command::new(BIN)
        .args([
            "demo",
            "--config",
            &format!("{ROOT}/config/crisiswatch.toml"),
            "--speed",
            "1440",
            "--listen",
            &demo_addr,
            "--linger",
            "600s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let _demo = ChildGuard(demo);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Prometheus scraping it every second, with the monitor's own rules.
    let prom = Prometheus::start(dir.path(), &[&demo_addr], &[&rules_file()]);
    let prom_addr = prom.addr.clone();
    let started = chrono::Utc::now().timestamp() - 5;

    // Wait for the demo's summary (the simulated day is over).
    let deadline = Instant::now() + Duration::from_secs(400);
    let mut transcript = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("demo did not finish: {transcript:?}"));
        let done = line.contains("alerts outside any injected crisis");
        transcript.push(line);
        if done {
            break;
        }
    }

    // promtool accepts the exposition.
    let metrics = http_get(&demo_addr, "/metrics");
    let body = metrics
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait until Prometheus has scraped the end of the day.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = query(
            &prom_addr,
            "/api/v1/query?query=crisiswatch_watermark_timestamp_seconds",
        );
        let ts = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        // The demo day ends at 2026-11-21T00:00:00Z (1795219200).
        if ts >= 1_795_219_200.0 - 120.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the end of the day: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let end = chrono::Utc::now().timestamp() + 1;

    // The monitor's own alerting rules loaded and evaluate.
    let rules = query(&prom_addr, "/api/v1/rules");
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(n >= 8, "rules not loaded: {rules}");

    // Every dashboard expression returns at least one series over the run.
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in DASHBOARDS {
        let text = std::fs::read_to_string(format!("{ROOT}/dashboards/{file}")).unwrap();
        let dash: Value = serde_json::from_str(&text).unwrap();
        let mut all = Vec::new();
        exprs(&dash, &mut all);
        assert!(all.len() >= 10, "{file}: too few panels");
        for e in all {
            let q = e.replace("$rule", ".*");
            let v = query(
                &prom_addr,
                &format!(
                    "/api/v1/query_range?query={}&start={started}&end={end}&step=1",
                    enc(&q)
                ),
            );
            checked += 1;
            let empty = v["data"]["result"].as_array().is_none_or(Vec::is_empty);
            if v["status"] != "success" || empty {
                failures.push(format!("{file}: {e} → {v}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} expressions returned nothing:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The crisis slice's indicator crosses its threshold series.
    let sel = r#"rule="complaint_rate",product="router-x",region="eu-west""#;
    let v = query(
        &prom_addr,
        &format!(
            "/api/v1/query_range?query={}&start={started}&end={end}&step=1",
            enc(&format!(
                "crisiswatch_indicator_value{{{sel}}} > on (rule) group_left () crisiswatch_indicator_threshold{{rule=\"complaint_rate\",severity=\"warning\"}}"
            ))
        ),
    );
    let above = v["data"]["result"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        above > 0,
        "the crisis slice never crossed its threshold: {v}"
    );
    let quiet = query(
        &prom_addr,
        &format!(
            "/api/v1/query_range?query={}&start={started}&end={end}&step=1",
            enc("crisiswatch_indicator_value{rule=\"complaint_rate\",product=\"tv-max\"} > on (rule) group_left () crisiswatch_indicator_threshold{rule=\"complaint_rate\",severity=\"warning\"}")
        ),
    );
    assert!(
        quiet["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "a quiet slice crossed: {quiet}"
    );
    let state = query(
        &prom_addr,
        &format!(
            "/api/v1/query_range?query={}&start={started}&end={end}&step=1",
            enc(&format!("crisiswatch_alert_state{{{sel}}} == 2"))
        ),
    );
    assert!(
        state["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "the crisis slice never showed as firing: {state}"
    );

    // "Top slices" ranks by the side a rule pages on: the highest slices of
    // an `above` rule, the lowest of a `below` one (nps_drop); "Margin past
    // the first threshold" is positive past it on either side.
    let overview: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/dashboards/crisiswatch-overview.json")).unwrap(),
    )
    .unwrap();
    let panel_expr = |title: &str| -> String {
        let p = overview["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"].as_str().is_some_and(|t| t.starts_with(title)))
            .unwrap_or_else(|| panic!("no panel {title}"));
        p["targets"][0]["expr"].as_str().unwrap().to_string()
    };
    let instant = |expr: &str| -> Vec<(String, f64)> {
        let v = query(
            &prom_addr,
            &format!("/api/v1/query?query={}&time={end}", enc(expr)),
        );
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{expr}: {v}"))
            .iter()
            .map(|r| {
                (
                    format!("{}/{}", r["metric"]["product"], r["metric"]["region"]),
                    r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect()
    };
    let bind = |e: &str, rule: &str| {
        e.replace("$job", "crisiswatch")
            .replace("$instance", ".+")
            .replace("$rule", rule)
    };
    for (rule, below) in [("nps_drop", true), ("complaint_rate", false)] {
        let mut all: Vec<f64> = instant(&format!("crisiswatch_indicator_value{{rule=\"{rule}\"}}"))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert!(all.len() > 10, "{rule}: {all:?}");
        all.sort_by(f64::total_cmp);
        if !below {
            all.reverse();
        }
        let mut top: Vec<f64> = instant(&bind(&panel_expr("Top slices"), rule))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        top.sort_by(f64::total_cmp);
        if !below {
            top.reverse();
        }
        assert_eq!(top, all[..10].to_vec(), "{rule}: the ten nearest to paging");
        // The rule's first threshold (config/crisiswatch.toml).
        let first = if below { 15.0 } else { 0.05 };
        let values = instant(&format!("crisiswatch_indicator_value{{rule=\"{rule}\"}}"));
        let margins = instant(&bind(&panel_expr("Margin past the first threshold"), rule));
        assert_eq!(margins.len(), values.len(), "{rule}: {margins:?}");
        for (slice, m) in &margins {
            let v = values.iter().find(|(s, _)| s == slice).unwrap().1;
            let want = if below { first - v } else { v - first };
            assert!(
                (m - want).abs() < 1e-9,
                "{rule} {slice}: margin {m}, value {v}"
            );
        }
    }
}

#[test]
fn monitor_rules_pass_promtool() {
    let promtool = require_program("promtool");
    // Valid, and they fire on synthetic series as their unit tests say (a
    // monitor that cannot be scraped, a stream that stopped, invalid events
    // as a share of every input).
    for args in [
        vec!["check", "rules", "crisiswatch-rules.yml"],
        vec!["test", "rules", "tests/crisiswatch-rules-test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(format!("{ROOT}/config/prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dashboards_are_scoped_by_job_and_instance_and_name_no_rule() {
    for file in DASHBOARDS {
        let text = std::fs::read_to_string(format!("{ROOT}/dashboards/{file}")).unwrap();
        let dash: Value = serde_json::from_str(&text).unwrap();
        let vars: Vec<&str> = dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for v in ["datasource", "job", "instance"] {
            assert!(vars.contains(&v), "{file}: no {v} variable: {vars:?}");
        }
        let raw = raw_exprs(&dash);
        assert!(raw.len() >= 10, "{file}: too few panels");
        for e in raw {
            // Every selector is scoped to the chosen job and instance.
            let selectors = e.matches("crisiswatch_").count();
            let scoped = e.matches("{job=~\"$job\", instance=~\"$instance\"").count();
            assert_eq!(selectors, scoped, "{file}: unscoped selector in {e}");
            // Rules come from the `rule` variable, never by name.
            assert!(!e.contains("rule=\""), "{file}: a rule named in {e}");
        }
    }
    for f in [
        "provisioning/dashboards/crisiswatch.yaml",
        "provisioning/datasources/prometheus.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{ROOT}/dashboards/{f}")).unwrap();
        assert!(text.contains("apiVersion: 1"), "{f}");
    }
}

/// The committed dashboards are what `scripts/gen-dashboards.py` writes
/// (so the script, where panels are edited, loses no hand edit of the JSON
/// when it is run again).
#[test]
fn dashboards_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::create_dir(dir.path().join("dashboards")).unwrap();
    let script = dir.path().join("scripts/gen-dashboards.py");
    std::fs::copy(format!("{ROOT}/scripts/gen-dashboards.py"), &script).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .expect("python3 (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in DASHBOARDS {
        let made = std::fs::read_to_string(dir.path().join("dashboards").join(file)).unwrap();
        let committed = std::fs::read_to_string(format!("{ROOT}/dashboards/{file}")).unwrap();
        assert!(
            made == committed,
            "dashboards/{file} differs from what scripts/gen-dashboards.py writes: edit the script and run it"
        );
    }
}

/// The panel queries as written (variables unbound).
fn raw_exprs(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in node["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.extend(t["expr"].as_str().map(str::to_string));
        }
        out.extend(raw_exprs(p));
    }
    out
}
