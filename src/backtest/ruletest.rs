//! Rule unit tests (`crisiswatch test-rules FILE...`), as `promtool test rules`
//! does for Prometheus: input events in, expected transitions out.
//!
//! A test file is TOML:
//!
//! ```toml
//! config = "../crisiswatch.toml"     # the configuration under test, relative to this file
//! start = "2026-11-20T00:00:00Z"     # origin of relative times such as "+5m"
//!
//! [[tests]]
//! name = "complaint rate fires after 5 minutes above 6.5 %"
//! rules = ["complaint_rate"]         # transitions compared (default: every rule)
//! until = "+3h"                      # then advance event time to here (lets alerts resolve)
//!
//! [[tests.input]]                    # a series: `count` events `every` apart from `at`
//! at = "+0s"
//! count = 300
//! every = "10s"
//! event = { type = "order", customer_id = "c-{n%50}", attrs = { product = "router-x" } }
//!
//! [[tests.input]]                    # or raw JSON lines; a "ts" of "+5m" is relative
//! lines = '''
//! {"id":"c1","type":"complaint","ts":"+5m","attrs":{"product":"router-x"}}
//! '''
//!
//! [[tests.expect]]
//! rule = "complaint_rate"
//! group = { product = "router-x" }
//! state = "firing"                   # pending, firing, escalated, resolved
//! at = "+12m"
//! severity = "warning"               # optional
//! value = 0.07                       # optional (± 1e-6)
//! ```
//!
//! Instead of `config`, a file may define `[engine]` and `[[rules]]` inline.
//! In a series, string fields may use `{n}` (the event's number, from 0) and
//! `{n%K}`; `score` may be a list, used in turn. Events of all inputs are
//! merged by time (stably) unless `sort = false`, which keeps them as written
//! (to test out-of-order and late events). Times in `at`/`until`/`ts` are
//! `+DURATION` from `start` or RFC 3339.
//!
//! A case passes when the transitions of the rules under test are exactly the
//! expected ones (same rule, group, state and time; severity and value when
//! given). Alerts evaluated at slide boundaries fire or resolve 1 ms after the
//! boundary (`+15m 1ms`): on failure the actual transitions are printed in
//! the `expect` syntax, ready to check and paste.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::alert::Transition;
use crate::config::{Config, ProcessEnv};
use crate::event::{format_ts, parse_rfc3339_ms};

use super::{Driver, Observer};

mod file;

use file::{Case, Scores, TestFile};

/// Errors that stop a test file (a failing case is not an error).
#[derive(Debug, thiserror::Error)]
pub enum RuleTestError {
    /// The file could not be read.
    #[error("cannot read test file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid test file.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case's name.
    pub(crate) name: String,
    /// Whether it passed.
    pub(crate) passed: bool,
    /// A problem with the case itself (bad time, unknown rule).
    pub(crate) error: Option<String>,
    /// Expected transitions that did not happen.
    pub(crate) missing: Vec<String>,
    /// Transitions that happened and were not expected.
    pub(crate) unexpected: Vec<String>,
    /// Every transition of the rules under test, in `expect` syntax.
    pub(crate) actual: Vec<String>,
}

/// The outcome of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResult {
    /// The file.
    pub(crate) path: PathBuf,
    /// The configuration it tested.
    pub config: String,
    /// Its cases.
    pub cases: Vec<CaseResult>,
}

impl FileResult {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Runs every case of a test file.
pub fn run_file(path: &Path) -> Result<FileResult, RuleTestError> {
    let invalid = |message: String| RuleTestError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| RuleTestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file: TestFile =
        toml::from_str(&text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
    let (cfg, config_name) = match (&file.config, &file.rules) {
        (Some(c), None) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(c);
            let cfg = Config::load(&p, &ProcessEnv)
                .map_err(|e| invalid(format!("config {}: {e}", p.display())))?;
            (cfg, p.display().to_string())
        }
        (None, Some(rules)) => {
            let mut t = toml::map::Map::new();
            if let Some(e) = &file.engine {
                t.insert("engine".into(), e.clone());
            }
            t.insert("rules".into(), toml::Value::Array(rules.clone()));
            let text =
                toml::to_string(&toml::Value::Table(t)).map_err(|e| invalid(e.to_string()))?;
            let cfg = Config::from_toml_str(&text, &ProcessEnv)
                .map_err(|e| invalid(format!("inline rules: {e}")))?;
            (cfg, "inline rules".to_string())
        }
        _ => {
            return Err(invalid(
                "give either `config = \"path\"` or inline `[[rules]]` (not both)".into(),
            ))
        }
    };
    if file.engine.is_some() && file.config.is_some() {
        return Err(invalid("`[engine]` goes with inline rules only".into()));
    }
    let start = parse_rfc3339_ms(&file.start)
        .ok_or_else(|| invalid(format!("start = {:?} is not an RFC 3339 time", file.start)))?;
    let cases = file
        .tests
        .iter()
        .enumerate()
        .map(|(i, case)| match run_case(&cfg, case, i, start) {
            Ok(r) => r,
            Err(e) => CaseResult {
                name: case.name.clone(),
                passed: false,
                error: Some(e),
                missing: Vec::new(),
                unexpected: Vec::new(),
                actual: Vec::new(),
            },
        })
        .collect();
    Ok(FileResult {
        path: path.to_path_buf(),
        config: config_name,
        cases,
    })
}

/// A time: `+DURATION` from `start`, or RFC 3339.
fn parse_time(s: &str, start: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(rel) = s.strip_prefix('+') {
        return dur_ms(rel).map(|d| start + d);
    }
    if let Some(t) = parse_rfc3339_ms(s) {
        return Ok(t);
    }
    Err(format!("{s:?} is neither +DURATION nor an RFC 3339 time"))
}

fn dur_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    s.parse::<crate::config::Dur>().map(|d| d.as_ms())
}

/// `+12m 1ms` relative to `start`.
fn rel(ms: i64, start: i64) -> String {
    let d = ms - start;
    if d == 0 {
        return "+0s".to_string();
    }
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        humantime::format_duration(std::time::Duration::from_millis(d.unsigned_abs()))
    )
}

/// Expands `{n}` and `{n%K}`.
fn expand(template: &str, n: u64) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(i) = rest.find("{n") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let spec = &after[..close];
        let v = if spec.is_empty() {
            Some(n)
        } else {
            spec.strip_prefix('%')
                .and_then(|k| k.trim().parse::<u64>().ok())
                .filter(|&k| k > 0)
                .map(|k| n % k)
        };
        match v {
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str(&rest[i..i + 3 + close]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The case's input lines, with their times (for merging).
fn build_input(case: &Case, idx: usize, start: i64) -> Result<Vec<(i64, Vec<u8>)>, String> {
    let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
    for (k, input) in case.input.iter().enumerate() {
        match (&input.lines, &input.event) {
            (Some(lines), None) => {
                let mut last = start;
                for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match serde_json::from_str::<serde_json::Value>(l) {
                        Ok(mut v) => {
                            if let Some(ts) = v.get("ts").and_then(|t| t.as_str()) {
                                if ts.starts_with('+') {
                                    let t = parse_time(ts, start)?;
                                    v["ts"] = serde_json::Value::from(t);
                                }
                            }
                            let ts = match v.get("ts") {
                                Some(serde_json::Value::Number(n)) => n.as_i64(),
                                Some(serde_json::Value::String(s)) => parse_rfc3339_ms(s),
                                _ => None,
                            };
                            last = ts.unwrap_or(last);
                            out.push((last, v.to_string().into_bytes()));
                        }
                        // Not JSON: passed through as written (to test invalid input).
                        Err(_) => out.push((last, l.as_bytes().to_vec())),
                    }
                }
            }
            (None, Some(t)) => {
                let at = parse_time(input.at.as_deref().unwrap_or("+0s"), start)?;
                let every = dur_ms(input.every.as_deref().unwrap_or("0s"))?;
                let count = input.count.unwrap_or(1);
                if count > 10_000_000 {
                    return Err(format!("input {k}: count {count} is too large"));
                }
                for n in 0..count {
                    let ts = at + every * n as i64;
                    let id = match &t.id {
                        Some(id) => expand(id, n),
                        None => format!("t{idx}-i{k}-{n}"),
                    };
                    let mut ev = serde_json::json!({ "id": id, "type": t.kind, "ts": ts });
                    if let Some(c) = &t.customer_id {
                        ev["customer_id"] = expand(c, n).into();
                    }
                    if !t.attrs.is_empty() {
                        let attrs: serde_json::Map<String, serde_json::Value> = t
                            .attrs
                            .iter()
                            .map(|(a, v)| (a.clone(), expand(v, n).into()))
                            .collect();
                        ev["attrs"] = attrs.into();
                    }
                    match &t.score {
                        Some(Scores::One(s)) => ev["score"] = (*s).into(),
                        Some(Scores::Cycle(v)) if !v.is_empty() => {
                            ev["score"] = v[(n as usize) % v.len()].into();
                        }
                        _ => {}
                    }
                    if let Some(s) = t.sentiment {
                        ev["sentiment"] = s.into();
                    }
                    out.push((ts, ev.to_string().into_bytes()));
                }
            }
            _ => {
                return Err(format!(
                    "input {k}: give either `lines` or `event` (with at/count/every)"
                ))
            }
        }
    }
    if case.sort {
        out.sort_by_key(|(t, _)| *t);
    }
    Ok(out)
}

struct Collect(Vec<Transition>);

impl Observer for Collect {
    fn transition(&mut self, t: &Transition) {
        self.0.push(t.clone());
    }
}

fn sorted_group(g: &[(String, String)]) -> Vec<(String, String)> {
    let mut g = g.to_vec();
    g.sort();
    g
}

fn show(t: &Transition, start: i64) -> String {
    let group: Vec<String> = t
        .group
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect();
    let value = t
        .value
        .map(|v| format!(", value = {}", super::report::fmt_value(v)))
        .unwrap_or_default();
    format!(
        "{{ rule = {:?}, group = {{ {} }}, state = \"{}\", at = \"{}\", severity = \"{}\"{value} }}",
        t.rule,
        group.join(", "),
        t.state,
        rel(t.at, start),
        t.severity
    )
}

fn run_case(cfg: &Config, case: &Case, idx: usize, start: i64) -> Result<CaseResult, String> {
    for r in case.rules.iter().chain(case.expect.iter().map(|e| &e.rule)) {
        if !cfg.rules.iter().any(|x| &x.name == r) {
            return Err(format!("no rule named {r:?} in the configuration"));
        }
    }
    let lines = build_input(case, idx, start)?;
    let mut driver = Driver::new(cfg, 0, None).map_err(|e| e.to_string())?;
    let mut obs = Collect(Vec::new());
    for (_, l) in &lines {
        driver.feed(l, &mut obs);
    }
    // Every event is applied (the last `allowed_lateness` of them and any
    // the clock-jump guard still holds too), then event time moves on to
    // `until`.
    driver.finish_input(&mut obs);
    if let Some(u) = &case.until {
        driver.advance_to(parse_time(u, start)?, &mut obs);
    }
    let actual: Vec<Transition> = obs
        .0
        .into_iter()
        .filter(|t| case.rules.is_empty() || case.rules.contains(&t.rule))
        .collect();
    let mut used = vec![false; actual.len()];
    let mut missing = Vec::new();
    for e in &case.expect {
        let at = parse_time(&e.at, start)?;
        let want_group: Vec<(String, String)> = e
            .group
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let hit = actual.iter().enumerate().position(|(k, t)| {
            !used[k]
                && t.rule == e.rule
                && t.state == e.state.state()
                && t.at == at
                && sorted_group(&t.group) == want_group
                && e.severity.is_none_or(|s| s == t.severity)
                && e.value
                    .is_none_or(|v| t.value.is_some_and(|x| (x - v).abs() <= 1e-6))
        });
        match hit {
            Some(k) => used[k] = true,
            None => {
                let group: Vec<String> =
                    want_group.iter().map(|(k, v)| format!("{k}={v}")).collect();
                missing.push(format!(
                    "{} {} {{{}}} at {} ({}){}{}",
                    e.state.state(),
                    e.rule,
                    group.join(","),
                    e.at,
                    format_ts(at),
                    e.severity
                        .map(|s| format!(" severity {s}"))
                        .unwrap_or_default(),
                    e.value.map(|v| format!(" value {v}")).unwrap_or_default()
                ));
            }
        }
    }
    let unexpected: Vec<String> = actual
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(t, _)| show(t, start))
        .collect();
    Ok(CaseResult {
        name: case.name.clone(),
        passed: missing.is_empty() && unexpected.is_empty(),
        error: None,
        missing,
        unexpected,
        actual: actual.iter().map(|t| show(t, start)).collect(),
    })
}

/// The report of some files: a line per case, details of failures, and the
/// closing `N passed, N failed` line.
pub fn render(results: &[FileResult]) -> String {
    let mut s = String::new();
    let (mut passed, mut failed) = (0, 0);
    for f in results {
        let _ = writeln!(s, "{} ({})", f.path.display(), f.config);
        for c in &f.cases {
            if c.passed {
                passed += 1;
                let _ = writeln!(s, "  ok    {}", c.name);
                continue;
            }
            failed += 1;
            let _ = writeln!(s, "  FAIL  {}", c.name);
            if let Some(e) = &c.error {
                let _ = writeln!(s, "        error: {e}");
            }
            for m in &c.missing {
                let _ = writeln!(s, "        missing:    {m}");
            }
            for u in &c.unexpected {
                let _ = writeln!(s, "        unexpected: {u}");
            }
            if c.error.is_none() {
                let _ = writeln!(s, "        got ({}):", c.actual.len());
                for a in &c.actual {
                    let _ = writeln!(s, "          {a},");
                }
            }
        }
    }
    let _ = writeln!(s, "{passed} passed, {failed} failed");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_times() {
        assert_eq!(expand("c-{n}", 7), "c-7");
        assert_eq!(expand("c-{n%5}-{n}", 7), "c-2-7");
        assert_eq!(expand("{x}{n%0}{n", 7), "{x}{n%0}{n");
        let s = 1_000_000;
        assert_eq!(parse_time("+5m", s), Ok(s + 300_000));
        assert_eq!(parse_time("+12m 1ms", s), Ok(s + 720_001));
        assert_eq!(rel(s + 720_001, s), "+12m 1ms");
        assert!(parse_time("5m", s).is_err());
    }

    /// With `until`, the last events are applied too (the ones the last
    /// `allowed_lateness` and the clock-jump guard still held): a case
    /// whose last event crosses the threshold sees it fire.
    #[test]
    fn until_applies_the_last_events_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            r#"
start = "2026-11-20T00:00:00Z"
[[rules]]
name = "spike"
group_by = ["product"]
window = "1h"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }

[[tests]]
name = "fires on the last event"
until = "+5h"
[[tests.input]]
lines = """
{"id":"c1","type":"complaint","ts":"+10m","attrs":{"product":"p"}}
{"id":"c2","type":"complaint","ts":"+15m","attrs":{"product":"p"}}
{"id":"c3","type":"complaint","ts":"+20m","attrs":{"product":"p"}}
"""
[[tests.expect]]
rule = "spike"
group = { product = "p" }
state = "firing"
at = "+20m"
[[tests.expect]]
rule = "spike"
group = { product = "p" }
state = "resolved"
at = "+1h 9m 1ms"
"#,
        )
        .unwrap();
        let r = run_file(&p).unwrap();
        assert!(r.cases[0].passed, "{:#?}", r.cases[0]);
    }
}
