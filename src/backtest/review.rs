//! Post-incident review: one Markdown report per incident.
//!
//! The input to a post-incident review: the timeline of transitions, the peak
//! value and when, how long it fired, and what the events behind it were —
//! how many, from how many distinct customers, and the top attribute values.
//!
//! Incidents come from a backtest ([`super::run`]), from a file of
//! transitions (the JSONL `replay` and `backtest --transitions` write, or an
//! export of the live service's transitions, read by event time whatever its
//! order, a repeated transition once): [`incidents_from_transitions`],
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

use crate::backtest::report::{columns, printable, Cell};
use std::fmt::Write as _;
use std::path::Path;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity};
use crate::event::parse_rfc3339_ms;
use crate::incident::outbox::OutboxReadError;

use super::input::InputError;
use super::report::{short_ts, Incident, Tracker};

mod evidence;
pub mod outbox;
mod render;

pub use evidence::{collect_evidence, Evidence};
pub use render::render;
pub(crate) use render::{
    cell, code, heading, write_crisis_rows, write_events, write_identity_rows, write_rule_rows,
    write_timeline,
};

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
    /// Two incidents' reviews would be one file (see [`file_names`]).
    #[error(
        "the reviews of {first:?} and {second:?} would both be written to {name}; nothing written"
    )]
    FileName {
        /// The file name.
        name: String,
        /// The first incident's key.
        first: String,
        /// The second incident's key.
        second: String,
    },
}

/// Reads incidents from a transitions JSONL file (`replay` output or an
/// export of the live service's transitions). Returns them and the time of the
/// last transition (the end for incidents still open).
///
/// The file's order is not trusted: the transitions are read by event time
/// ([`in_time_order`]), so a newest-first export gives the same incidents,
/// and a transition written twice (an at-least-once export) counts once. A
/// WARN says when the file was out of order or held duplicates.
pub fn incidents_from_transitions(
    cfg: &Config,
    path: &Path,
) -> Result<(Vec<Incident>, i64), ReviewError> {
    let text = super::input::read_text(path).map_err(|source| ReviewError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut transitions = Vec::new();
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
        transitions.push(t);
    }
    let order = in_time_order(&mut transitions);
    if order.behind > 0 {
        tracing::warn!(
            file = %path.display(),
            lines = order.behind,
            "Transitions file not in time order (lines older than one before them): read by event time"
        );
    }
    if order.duplicates > 0 {
        tracing::warn!(
            file = %path.display(),
            duplicates = order.duplicates,
            "Transitions file holds duplicate transitions (same dedup key, state, time and severity): each read once"
        );
    }
    let mut tracker = Tracker::for_rules(&cfg.rules);
    let mut last = i64::MIN;
    for t in &transitions {
        last = last.max(t.at);
        tracker.transition(t);
    }
    if tracker.fired_before > 0 {
        tracing::warn!(
            file = %path.display(),
            incidents = tracker.fired_before,
            "Transitions file begins after some incidents fired (their first line escalates or resolves): \
             each is shown as firing from its breach start (`started_at`), its firing time not being in the file"
        );
    }
    Ok((tracker.finish(), last.max(0)))
}

/// What [`in_time_order`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Reordered {
    /// Transitions older than one before them in the file.
    behind: usize,
    /// Exact repeats dropped.
    duplicates: usize,
}

/// Puts transitions read from a file in the order the engine emits them:
/// by event time; at one time, an alert instance's transitions in their
/// lifecycle order — an older instance (breach start) before a newer one
/// (its resolve before the next breach of the slice), then pending, firing,
/// escalations by severity, resolved — and otherwise in file order (the sort
/// is stable). A repeat of a transition (same dedup key, state, time and
/// severity) is dropped.
fn in_time_order(transitions: &mut Vec<Transition>) -> Reordered {
    use std::collections::HashSet;
    let mut latest = i64::MIN;
    let behind = transitions
        .iter()
        .filter(|t| {
            let late = t.at < latest;
            latest = latest.max(t.at);
            late
        })
        .count();
    let lifecycle = |s: State| match s {
        State::Pending => 0u8,
        State::Firing => 1,
        State::Escalated => 2,
        State::Resolved => 3,
    };
    transitions.sort_by_key(|t| (t.at, t.started_at, lifecycle(t.state), t.severity));
    // Repeats share their time: one set per run of equal times.
    let before = transitions.len();
    let mut at = i64::MIN;
    let mut seen: HashSet<(String, State, Severity)> = HashSet::new();
    transitions.retain(|t| {
        if t.at != at {
            at = t.at;
            seen.clear();
        }
        seen.insert((t.dedup_key.clone(), t.state, t.severity))
    });
    Reordered {
        behind,
        duplicates: before - transitions.len(),
    }
}

/// Parses one transition line (`docs/contract.md` §3).
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
        hints: v
            .get("hints")
            .and_then(|h| serde_json::from_value(h.clone()).ok())
            .unwrap_or_default(),
    })
}

/// Gives the incidents of a transitions file the peaks of the same
/// incidents in `sampled` — a backtest of the history, whose peaks are
/// sampled at every slide boundary —, the worse of the two each. The same:
/// one dedup key, fired and resolved at the same times (a file made with
/// another `clear` shares keys with incidents that last longer). Only when
/// every incident is found there (`false`, and nothing changed, otherwise):
/// a review's peaks are then all of one kind.
pub(crate) fn sample_peaks(incidents: &mut [Incident], sampled: &[Incident]) -> bool {
    let by_key: std::collections::HashMap<&str, &Incident> =
        sampled.iter().map(|i| (i.dedup_key.as_str(), i)).collect();
    if !incidents.iter().all(|i| {
        by_key
            .get(i.dedup_key.as_str())
            .is_some_and(|b| (b.fired_at, b.resolved_at) == (i.fired_at, i.resolved_at))
    }) {
        return false;
    }
    for i in incidents.iter_mut() {
        let Some(b) = by_key.get(i.dedup_key.as_str()).and_then(|b| b.peak) else {
            continue;
        };
        if i.peak.is_none_or(|p| i.condition.past(b.value, p.value)) {
            i.peak = Some(b);
        }
    }
    true
}

/// Picks incidents by dedup key (exact, or a substring matching exactly one);
/// all of them when `keys` is empty. An incident picked twice is taken once.
pub fn select<'a>(
    incidents: &'a [Incident],
    keys: &[String],
) -> Result<Vec<&'a Incident>, ReviewError> {
    if keys.is_empty() {
        return Ok(incidents.iter().collect());
    }
    let mut out: Vec<&Incident> = Vec::new();
    let mut take = |i: &'a Incident| {
        if !out.iter().any(|o| std::ptr::eq(*o, i)) {
            out.push(i);
        }
    };
    for k in keys {
        if let Some(i) = incidents.iter().find(|i| &i.dedup_key == k) {
            take(i);
            continue;
        }
        let hits: Vec<&Incident> = incidents
            .iter()
            .filter(|i| i.dedup_key.contains(k.as_str()))
            .collect();
        match hits.len() {
            1 => take(hits[0]),
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
        .map(|i| columns(&printable(&i.dedup_key)))
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
            Cell(&printable(&i.dedup_key)),
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

/// The longest file name [`safe_name`] makes (file systems refuse names
/// over 255 bytes; `.md` and room for a suffix stay free).
const MAX_FILE_NAME: usize = 200;

/// The characters a dedup key is built with (`rule/k=v,k=v/start-ms`,
/// values percent-encoded where they hold one): a file name shows them as
/// `_` without a hash, so the usual keys keep their readable names.
const KEY_SEPARATORS: [char; 3] = ['/', '=', ','];

/// The `~` and 16 hex digits a [`safe_name`] ends with when it needs them.
const HASH_SUFFIX: usize = 17;

/// A dedup key made safe for a file name: ASCII letters, digits, `-_.`
/// kept, anything else `_`. When that lost more than the key's separators
/// (`/`, `=`, `,` — a blank, `:`, `%`, a letter outside ASCII: `Zürich` and
/// `Zärich` would be one name), or the name would be longer than
/// [`MAX_FILE_NAME`] (long attribute values), it keeps a readable prefix and
/// ends with `~` and 16 hex digits of the exact key's SHA-256, so two keys
/// get two names. A key of ASCII letters, digits, `-_.` and the separators
/// gets the same name as always.
///
/// Keys can still meet in one name (`a/b` and `a_b`, or names that differ
/// only in letter case, one file on a case-insensitive file system):
/// [`file_names`] names a batch of reviews without that.
pub fn safe_name(key: &str) -> String {
    let mut lossy = false;
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                lossy |= !KEY_SEPARATORS.contains(&c);
                '_'
            }
        })
        .collect();
    if !lossy && name.len() <= MAX_FILE_NAME {
        return name;
    }
    hashed_name(key, &name)
}

/// `name` (ASCII, `key` made safe) cut to leave room for the hash, then `~`
/// and 16 hex digits of `key`'s SHA-256.
fn hashed_name(key: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    // ASCII only: any byte is a char boundary.
    let keep = name.len().min(MAX_FILE_NAME - HASH_SUFFIX);
    format!("{}~{hex}", &name[..keep])
}

/// The file names of the reviews of incidents with these keys (dedup keys,
/// or the outbox's incident keys), in order: each key's [`safe_name`] and
/// `.md`, one file per incident. Keys whose names would still be one file —
/// different keys made alike (`a/b` and `a_b`), or names that differ only in
/// letter case — all get the hash; a key given again (two incidents with one
/// key) gets `~2`, `~3`… in order. Should two names still meet (the same 64
/// bits of two hashes), that is an error before anything is written, never a
/// review overwriting another.
pub fn file_names<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, ReviewError> {
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    let keys: Vec<&str> = keys.into_iter().collect();
    let mut names: Vec<String> = keys.iter().map(|k| safe_name(k)).collect();
    // Names alike (ignoring case) for different keys: all of them hashed.
    let mut alike: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        alike.entry(n.to_ascii_lowercase()).or_default().push(i);
    }
    for group in alike.values().filter(|g| g.len() > 1) {
        for &i in group {
            if group.iter().any(|&j| keys[j] != keys[i]) && !names[i].contains('~') {
                names[i] = hashed_name(keys[i], &names[i]);
            }
        }
    }
    // The same key again: numbered.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let n = seen.entry(k).or_insert(0);
        *n += 1;
        if *n > 1 {
            names[i] = format!("{}~{n}", names[i]);
        }
    }
    let mut taken: HashMap<String, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        match taken.entry(n.to_ascii_lowercase()) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(o) => {
                return Err(ReviewError::FileName {
                    name: format!("{n}.md"),
                    first: keys[*o.get()].to_string(),
                    second: keys[i].to_string(),
                })
            }
        }
    }
    Ok(names.into_iter().map(|n| format!("{n}.md")).collect())
}

#[cfg(test)]
mod tests;
