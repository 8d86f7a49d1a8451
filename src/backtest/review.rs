//! Post-incident review: one Markdown report per incident.
//!
//! The input to a post-incident review: the timeline of transitions, the peak
//! value and when, how long it fired, and what the events behind it were —
//! how many, from how many distinct customers, and the top attribute values.
//!
//! Incidents come from a backtest ([`super::run`]), from a file of
//! transitions (the JSONL `replay` and `backtest --transitions` write, or an
//! export of the live service's transitions): [`incidents_from_transitions`],
//! or from the live service's outbox (`review --outbox`): [`outbox`] reads it
//! read-only and rebuilds each incident — its notifications, and per alert
//! this module's [`Incident`] with the timeline from the outbox's ledger —
//! saying in the report what the outbox does not keep (values between
//! notifications, the time of the peak) instead of estimating it.
//! The event figures need the history itself: [`collect_evidence`] reads it
//! once more and, for each incident, takes the events the rule counts in that
//! slice from one window before the breach began (the window that caused it)
//! to the resolve (or the end of the data). Duplicate ids are counted once, as
//! the engine does; invalid lines are skipped.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, RuleConfig, Severity};
use crate::dedup::Dedup;
use crate::event::{decode, parse_rfc3339_ms};
use crate::incident::outbox::OutboxReadError;
use crate::indicator::Indicator;

use super::input::InputError;
use super::labels::{self, Crisis};
use super::report::{fmt_dur, fmt_value, group_label, short_ts, Incident, Tracker};

pub mod outbox;

/// Attribute values tracked per attribute; rarer ones beyond this are "other".
const MAX_VALUES_PER_ATTR: usize = 10_000;
/// Top values listed per attribute.
const TOP_VALUES: usize = 5;
/// Sample event ids listed.
const SAMPLE_IDS: usize = 10;

/// Errors of a review.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Reading the history failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The transitions file could not be read.
    #[error("cannot read transitions file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A transitions line is malformed.
    #[error("{path}:{line}: not a transition ({message})")]
    Transition {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `--incident` matched nothing or several incidents.
    #[error("{0}")]
    Select(String),
    /// The live service's outbox could not be read.
    #[error(transparent)]
    Outbox(#[from] OutboxReadError),
}

/// What the events behind one incident show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Start of the interval considered (one window before the breach), ms.
    pub from_ms: i64,
    /// End of the interval (resolve or end of data), ms.
    pub to_ms: i64,
    /// Events the rule counts in this slice and interval.
    pub events: u64,
    /// Of which signal events (numerator, counted events, detractors...).
    pub signal: u64,
    /// Events by type, most first.
    pub by_type: Vec<(String, u64)>,
    /// Distinct customers among the signal events.
    pub signal_customers: usize,
    /// Distinct customers among all the events.
    pub customers: usize,
    /// Per attribute (outside the slice), the top values among signal events.
    pub top: Vec<(String, Vec<(String, u64)>)>,
    /// The first signal event ids.
    pub sample_ids: Vec<String>,
}

#[derive(Default)]
struct Acc {
    events: u64,
    signal: u64,
    by_type: HashMap<String, u64>,
    signal_customers: HashSet<String>,
    customers: HashSet<String>,
    attrs: HashMap<String, HashMap<String, u64>>,
    sample_ids: Vec<String>,
}

/// Reads the history once more and gathers the evidence of each incident
/// (`incidents[i]` → `result[i]`). `feed` calls its argument with every line.
pub fn collect_evidence(
    cfg: &Config,
    incidents: &[&Incident],
    end_ms: i64,
    feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), InputError>,
) -> Result<Vec<Evidence>, ReviewError> {
    let rules: Vec<&RuleConfig> = cfg.rules.iter().collect();
    let indicators: Vec<Indicator> = rules
        .iter()
        .map(|r| Indicator::compile(&r.indicator, r.window.as_ms()))
        .collect();
    // Per rule: the incidents under review, with their interval.
    let mut per_rule: Vec<Vec<(usize, i64, i64)>> = vec![Vec::new(); rules.len()];
    let mut evidence: Vec<Evidence> = Vec::with_capacity(incidents.len());
    for (k, i) in incidents.iter().enumerate() {
        let from = i.started_at.saturating_sub(i.window_ms);
        let to = i.resolved_at.unwrap_or(end_ms);
        if let Some(r) = rules.iter().position(|r| r.name == i.rule) {
            per_rule[r].push((k, from, to));
        }
        evidence.push(Evidence {
            from_ms: from,
            to_ms: to,
            ..Evidence::default()
        });
    }
    let mut acc: Vec<Acc> = incidents.iter().map(|_| Acc::default()).collect();
    let limits = crate::event::DecodeLimits {
        // History: no wall clock to be ahead of.
        max_future_skew_ms: i64::MAX,
        ..cfg.engine.decode_limits()
    };
    let mut dedup = Dedup::new(cfg.engine.dedup_horizon.as_ms(), cfg.engine.dedup_max_ids);
    let mut clock: Option<i64> = None;
    feed(&mut |line: &[u8]| {
        let Ok(ev) = decode(line, &limits, None) else {
            return;
        };
        let t = clock.map_or(ev.ts, |c| c.max(ev.ts));
        clock = Some(t);
        if dedup.check_and_insert(&ev.id, t) {
            return;
        }
        for (r, list) in per_rule.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let Some(contrib) = indicators[r].contribution(&ev) else {
                continue;
            };
            for &(k, from, to) in list {
                if ev.ts <= from || ev.ts > to {
                    continue;
                }
                let same_slice = incidents[k]
                    .group
                    .iter()
                    .all(|(a, v)| ev.attr(a).unwrap_or("") == v);
                if !same_slice {
                    continue;
                }
                let a = &mut acc[k];
                a.events += 1;
                *a.by_type.entry(ev.kind.to_string()).or_default() += 1;
                if let Some(c) = ev.customer_id.as_deref() {
                    a.customers.insert(c.to_string());
                    if contrib.signal {
                        a.signal_customers.insert(c.to_string());
                    }
                }
                if contrib.signal {
                    a.signal += 1;
                    if a.sample_ids.len() < SAMPLE_IDS {
                        a.sample_ids.push(ev.id.to_string());
                    }
                    for (key, val) in &ev.attrs {
                        if incidents[k].group.iter().any(|(g, _)| g == key.as_ref()) {
                            continue;
                        }
                        let m = a.attrs.entry(key.to_string()).or_default();
                        if let Some(n) = m.get_mut(val.as_ref()) {
                            *n += 1;
                        } else if m.len() < MAX_VALUES_PER_ATTR {
                            m.insert(val.to_string(), 1);
                        } else {
                            *m.entry("(other)".to_string()).or_default() += 1;
                        }
                    }
                }
            }
        }
    })?;
    for (e, a) in evidence.iter_mut().zip(acc) {
        e.events = a.events;
        e.signal = a.signal;
        e.by_type = sorted_counts(a.by_type, usize::MAX);
        e.signal_customers = a.signal_customers.len();
        e.customers = a.customers.len();
        let mut top: Vec<(String, Vec<(String, u64)>)> = a
            .attrs
            .into_iter()
            .map(|(k, m)| (k, sorted_counts(m, TOP_VALUES)))
            .collect();
        top.sort_by(|x, y| x.0.cmp(&y.0));
        e.top = top;
        e.sample_ids = a.sample_ids;
    }
    Ok(evidence)
}

fn sorted_counts(m: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Reads incidents from a transitions JSONL file (`replay` output or an
/// export of the live service's transitions). Returns them and the time of the
/// last transition (the end for incidents still open).
pub fn incidents_from_transitions(
    cfg: &Config,
    path: &Path,
) -> Result<(Vec<Incident>, i64), ReviewError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReviewError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut tracker = Tracker::for_rules(&cfg.rules);
    let mut last = i64::MIN;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let t = parse_transition(line).map_err(|message| ReviewError::Transition {
            path: path.display().to_string(),
            line: n + 1,
            message,
        })?;
        let Some(rule) = cfg.rules.iter().find(|r| r.name == t.rule) else {
            tracing::warn!(rule = %t.rule, line = n + 1, "Transition of a rule not in the configuration skipped");
            continue;
        };
        // JSON objects come back in key order: restore the rule's `group_by` order.
        let mut t = t;
        t.group
            .sort_by_key(|(k, _)| rule.group_by.iter().position(|g| g == k));
        last = last.max(t.at);
        tracker.transition(&t);
    }
    Ok((tracker.finish(), last.max(0)))
}

/// Parses one transition line (`contract.md` §3).
pub fn parse_transition(line: &str) -> Result<Transition, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| format!("\"{k}\" is missing or not a string"))
    };
    let ts = |k: &str| {
        s(k).and_then(|x| parse_rfc3339_ms(x).ok_or_else(|| format!("\"{k}\" is not a time")))
    };
    let state = match s("state")? {
        "pending" => State::Pending,
        "firing" => State::Firing,
        "escalated" => State::Escalated,
        "resolved" => State::Resolved,
        other => return Err(format!("unknown state {other:?}")),
    };
    let severity: Severity = serde_json::from_value(v.get("severity").cloned().unwrap_or_default())
        .map_err(|e| format!("\"severity\": {e}"))?;
    let group: Labels = match v.get("group") {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_string()))
            .collect(),
        _ => return Err("\"group\" is missing or not an object".into()),
    };
    let at = ts("at")?;
    let window_ms = v
        .get("window")
        .and_then(|x| x.as_str())
        .and_then(|w| humantime::parse_duration(w).ok())
        .map_or(0, |d| d.as_millis() as i64);
    Ok(Transition {
        rule: s("rule")?.to_string(),
        group,
        state,
        severity,
        at,
        value: v.get("value").and_then(|x| x.as_f64()),
        threshold: v
            .get("threshold")
            .and_then(|x| x.as_f64())
            .unwrap_or(f64::NAN),
        clear: v.get("clear").and_then(|x| x.as_f64()).unwrap_or(f64::NAN),
        dedup_key: s("dedup_key")?.to_string(),
        started_at: ts("started_at").unwrap_or(at),
        window_ms,
        sample_event_ids: v
            .get("sample_event_ids")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Picks incidents by dedup key (exact, or a substring matching exactly one);
/// all of them when `keys` is empty.
pub fn select<'a>(
    incidents: &'a [Incident],
    keys: &[String],
) -> Result<Vec<&'a Incident>, ReviewError> {
    if keys.is_empty() {
        return Ok(incidents.iter().collect());
    }
    let mut out = Vec::new();
    for k in keys {
        if let Some(i) = incidents.iter().find(|i| &i.dedup_key == k) {
            out.push(i);
            continue;
        }
        let hits: Vec<&Incident> = incidents
            .iter()
            .filter(|i| i.dedup_key.contains(k.as_str()))
            .collect();
        match hits.len() {
            1 => out.push(hits[0]),
            0 => {
                return Err(ReviewError::Select(format!(
                    "no incident matches {k:?}; incidents: {}",
                    list_keys(incidents)
                )))
            }
            n => {
                return Err(ReviewError::Select(format!(
                    "{k:?} matches {n} incidents: {}; give the whole dedup key",
                    list_keys(&hits.into_iter().cloned().collect::<Vec<_>>())
                )))
            }
        }
    }
    Ok(out)
}

/// One line per incident: dedup key, severity, firing and resolve times
/// (`review --list`).
pub fn list(incidents: &[Incident]) -> String {
    let w = incidents
        .iter()
        .map(|i| i.dedup_key.len())
        .max()
        .unwrap_or(0)
        .max("incident".len());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<8}  {:<20}  {:<20}",
        "incident", "severity", "fired", "resolved"
    );
    for i in incidents {
        let _ = writeln!(
            s,
            "{:<w$}  {:<8}  {:<20}  {:<20}",
            i.dedup_key,
            i.severity.as_str(),
            short_ts(i.fired_at),
            i.resolved_at.map_or_else(|| "-".to_string(), short_ts)
        );
    }
    s
}

fn list_keys(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "(none)".to_string();
    }
    let mut s: Vec<&str> = incidents
        .iter()
        .take(20)
        .map(|i| i.dedup_key.as_str())
        .collect();
    if incidents.len() > 20 {
        s.push("…");
    }
    s.join(", ")
}

/// A file name for an incident's review: its dedup key made safe.
pub fn file_name(i: &Incident) -> String {
    format!("{}.md", safe_name(&i.dedup_key))
}

/// A dedup key made safe for a file name.
pub(crate) fn safe_name(key: &str) -> String {
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

/// The Markdown review of one incident. `peaks_sampled`: the peak comes from a
/// backtest (transitions and slide boundaries), not from transitions alone.
pub fn render(
    i: &Incident,
    rule: Option<&RuleConfig>,
    evidence: Option<&Evidence>,
    crises: &[Crisis],
    grace_ms: Option<i64>,
    end_ms: i64,
    peaks_sampled: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Incident review: {} — {}\n",
        i.rule,
        group_label(&i.group)
    );
    let _ = writeln!(s, "| | |\n| --- | --- |");
    let desc = rule
        .map(|r| r.description.as_str())
        .filter(|d| !d.is_empty());
    write_identity_rows(&mut s, i, desc);
    match i.resolved_at {
        Some(r) => {
            let _ = writeln!(s, "| Resolved | {} |", short_ts(r));
        }
        None => {
            let _ = writeln!(
                s,
                "| Resolved | still firing at the end of the data ({}) |",
                short_ts(end_ms)
            );
        }
    }
    let _ = writeln!(
        s,
        "| Duration (firing) | {} |",
        fmt_dur(i.firing_ms(end_ms))
    );
    if let Some(p) = i.peak {
        let _ = writeln!(
            s,
            "| Peak value | {} at {}{} |",
            fmt_value(p.value),
            short_ts(p.at),
            if peaks_sampled {
                ""
            } else {
                " (highest at a transition)"
            }
        );
    }
    if let Some(r) = rule {
        write_rule_rows(&mut s, r);
    }
    write_crisis_rows(&mut s, i, crises, grace_ms);

    let _ = writeln!(s, "\n## Timeline\n");
    write_timeline(&mut s, i, end_ms, "no data", "(end of data)");

    write_events(&mut s, evidence, "##");
    s
}

/// Text made safe for one Markdown table cell: a `|` would start a new
/// cell and a line break would end the table.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// The rule, slice, dedup key, severity, breach and fire rows of an
/// incident's table (both reviews).
pub(crate) fn write_identity_rows(s: &mut String, i: &Incident, desc: Option<&str>) {
    let _ = writeln!(
        s,
        "| Rule | `{}`{} |",
        cell(&i.rule),
        desc.map(|d| format!(" — {}", cell(d))).unwrap_or_default()
    );
    let _ = writeln!(s, "| Slice | {} |", cell(&group_label(&i.group)));
    let _ = writeln!(s, "| Dedup key | `{}` |", cell(&i.dedup_key));
    let _ = writeln!(s, "| Highest severity | {} |", i.severity);
    let _ = writeln!(s, "| Breach began | {} |", short_ts(i.started_at));
    let _ = writeln!(
        s,
        "| Fired | {} ({} after the breach began) |",
        short_ts(i.fired_at),
        fmt_dur(i.fired_at.saturating_sub(i.started_at))
    );
}

/// An incident's timeline as a table: one row per transition (`no_value`
/// where the value is not known), then, while it is still open, a last row at
/// `end_ms` saying `end_note`.
pub(crate) fn write_timeline(
    s: &mut String,
    i: &Incident,
    end_ms: i64,
    no_value: &str,
    end_note: &str,
) {
    let _ = writeln!(
        s,
        "| time | state | severity | value | threshold |\n| --- | --- | --- | --- | --- |"
    );
    for t in &i.timeline {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            short_ts(t.at),
            t.state,
            t.severity,
            t.value.map_or_else(|| no_value.to_string(), fmt_value),
            if t.threshold.is_finite() {
                fmt_value(t.threshold)
            } else {
                "-".to_string()
            }
        );
    }
    if i.resolved_at.is_none() {
        let _ = writeln!(s, "| {} | {end_note} | | | |", short_ts(end_ms));
    }
}

/// The rule's settings as rows of a review's table: thresholds, window, links.
pub(crate) fn write_rule_rows(s: &mut String, r: &RuleConfig) {
    let levels: Vec<String> = r
        .thresholds
        .levels()
        .iter()
        .map(|(sev, v)| format!("{sev} {}", fmt_value(*v)))
        .collect();
    let clear = r.clear_threshold().map(fmt_value).unwrap_or_default();
    let _ = writeln!(
        s,
        "| Thresholds | {:?}: {}; clear {} |",
        r.condition,
        levels.join(", "),
        clear
    );
    let _ = writeln!(
        s,
        "| Window | {} (slide {}), for {}, keep firing for {} |",
        r.window,
        r.slide(),
        dur_or_zero(r.for_.as_ms()),
        dur_or_zero(r.keep_firing_for.as_ms())
    );
    if let Some(rb) = &r.runbook {
        let _ = writeln!(s, "| Runbook | {rb} |");
    }
    if let Some(d) = &r.dashboard {
        let _ = writeln!(s, "| Dashboard | {d} |");
    }
}

/// The known crises an incident matches, as rows of a review's table.
pub(crate) fn write_crisis_rows(
    s: &mut String,
    i: &Incident,
    crises: &[Crisis],
    grace_ms: Option<i64>,
) {
    let grace = grace_ms.unwrap_or(i.window_ms);
    for c in crises
        .iter()
        .filter(|c| labels::matches(&i.group, i.fired_at, c, grace))
    {
        let _ = writeln!(
            s,
            "| Known crisis | {} ({}), {} → {}, on {}; fired {} after it began |",
            cell(&c.name),
            if c.kind.is_empty() {
                "-".to_string()
            } else {
                cell(&c.kind)
            },
            short_ts(c.start_ms),
            short_ts(c.end_ms),
            cell(&c.slice_label()),
            fmt_dur(i.fired_at.saturating_sub(c.start_ms))
        );
    }
}

/// The "Events involved" section and the top attribute values, under
/// headings of level `h` (`"##"`); says how to get them when not computed.
pub(crate) fn write_events(s: &mut String, evidence: Option<&Evidence>, h: &str) {
    let _ = writeln!(s, "\n{h} Events involved\n");
    match evidence {
        None => {
            let _ = writeln!(
                s,
                "Not computed: pass the history (`--input`) to count the events behind this incident."
            );
        }
        Some(e) => {
            let _ = writeln!(
                s,
                "Events the rule counts in this slice from {} (one window before the breach) to {}.\n",
                short_ts(e.from_ms),
                short_ts(e.to_ms)
            );
            let _ = writeln!(s, "| | |\n| --- | --- |");
            let _ = writeln!(s, "| Events | {} |", e.events);
            let _ = writeln!(s, "| Signal events | {} |", e.signal);
            let by_type: Vec<String> = e
                .by_type
                .iter()
                .map(|(k, n)| format!("{} {n}", cell(k)))
                .collect();
            let _ = writeln!(
                s,
                "| By type | {} |",
                if by_type.is_empty() {
                    "-".to_string()
                } else {
                    by_type.join(", ")
                }
            );
            let _ = writeln!(
                s,
                "| Distinct customers (signal events) | {} |",
                e.signal_customers
            );
            let _ = writeln!(s, "| Distinct customers (all events) | {} |", e.customers);
            if !e.sample_ids.is_empty() {
                let _ = writeln!(
                    s,
                    "| Sample signal event ids | {} |",
                    e.sample_ids
                        .iter()
                        .map(|x| format!("`{}`", cell(x)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if !e.top.is_empty() {
                let _ = writeln!(s, "\n{h} Top attribute values among signal events\n");
                let _ = writeln!(
                    s,
                    "| attribute | value | events | share |\n| --- | --- | ---: | ---: |"
                );
                for (attr, vals) in &e.top {
                    for (v, n) in vals {
                        let share = if e.signal > 0 {
                            *n as f64 / e.signal as f64 * 100.0
                        } else {
                            0.0
                        };
                        let _ =
                            writeln!(s, "| {} | {} | {n} | {share:.1} % |", cell(attr), cell(v));
                    }
                }
            }
        }
    }
}

fn dur_or_zero(ms: i64) -> String {
    if ms == 0 {
        "0".to_string()
    } else {
        fmt_dur(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_replay_line() {
        let line = r#"{"rule":"complaint_rate","group":{"product":"router-x","region":"eu-west"},"state":"firing","severity":"warning","at":"2026-11-20T09:18:31.560Z","value":0.0661,"threshold":0.065,"clear":0.04,"dedup_key":"complaint_rate/product=router-x,region=eu-west/1795165111560","started_at":"2026-11-20T09:13:31.560Z","window":"1h","sample_event_ids":["e-42-98121"]}"#;
        let t = parse_transition(line).unwrap();
        assert_eq!(t.state, State::Firing);
        let at = parse_rfc3339_ms("2026-11-20T09:18:31.560Z").unwrap();
        assert_eq!(t.at, at);
        assert_eq!(t.started_at, at - 300_000);
        assert_eq!(t.window_ms, 3_600_000);
        assert_eq!(t.group[1], ("region".to_string(), "eu-west".to_string()));
        assert!(parse_transition("{\"rule\":\"x\"}").is_err());
    }
}
