//! The outputs of `tune`: the table, CSV, and the chosen row as a config snippet.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::config::RuleConfig;

use super::super::report::{fmt_dur, short_ts};
use super::{Dim, TuneError, TuneResult, Val};

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The table, for a terminal.
pub fn render_table(r: &TuneResult) -> String {
    let mut s = String::new();
    let span = match (r.first_ms, r.end_ms) {
        (Some(a), Some(b)) => format!("{} → {}", short_ts(a), short_ts(b)),
        _ => "no events".to_string(),
    };
    let _ = writeln!(
        s,
        "Tuning {} over {span}: {} lines, {} candidates in one pass",
        r.base.name,
        r.lines,
        r.rows.len()
    );
    let head = [
        "#",
        "candidate",
        "incidents",
        "false",
        "missed",
        "median delay",
        "time firing",
        "flaps",
    ];
    let cells: Vec<[String; 8]> = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            [
                (i + 1).to_string(),
                row.candidate.label(),
                row.summary.incidents.to_string(),
                opt(row.false_incidents()),
                opt(row.missed()),
                row.median_delay_ms()
                    .map_or_else(|| "-".to_string(), fmt_dur),
                fmt_dur(row.summary.firing_ms),
                row.summary.flaps.to_string(),
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for c in &cells {
        for (k, x) in c.iter().enumerate() {
            w[k] = w[k].max(x.chars().count());
        }
    }
    // The candidate column is left-aligned, the figures right-aligned.
    let line = |mark: &str, c: &[String]| {
        let mut l = format!(
            "{mark:<3} {:>w0$}  {:<w1$}",
            c[0],
            c[1],
            w0 = w[0],
            w1 = w[1]
        );
        for k in 2..c.len() {
            let _ = write!(l, "  {:>wk$}", c[k], wk = w[k]);
        }
        l
    };
    let _ = writeln!(s, "{}", line("", &head.map(String::from)));
    for (i, c) in cells.iter().enumerate() {
        let row = &r.rows[i];
        let mark = format!(
            "{}{}{}",
            if row.pareto { '*' } else { ' ' },
            if r.chosen == Some(i) { '>' } else { ' ' },
            if row.current { '=' } else { ' ' },
        );
        let _ = writeln!(s, "{}", line(&mark, c));
    }
    if r.labelled {
        let _ = writeln!(
            s,
            "* Pareto-optimal (no other candidate is as good on false incidents, missed crises and median delay, and better on one)"
        );
    } else {
        let _ = writeln!(
            s,
            "(no --labels: false incidents, missed crises and delays need ground truth)"
        );
    }
    let _ = writeln!(s, "= the rule as configured");
    match r.chosen {
        Some(i) => {
            let why = if r.picked {
                "--pick"
            } else {
                "fewest missed, then false incidents, then median delay"
            };
            let _ = writeln!(
                s,
                "> chosen: #{} {} ({why})",
                i + 1,
                r.rows[i].candidate.label()
            );
        }
        None => {
            let _ = writeln!(s, "> none chosen: pass --labels or --pick N");
        }
    }
    s
}

/// The table as CSV.
pub fn write_csv(r: &TuneResult, w: &mut dyn Write) -> std::io::Result<()> {
    let mut dims: Vec<Dim> = r
        .rows
        .iter()
        .flat_map(|row| row.candidate.settings.iter().map(|(d, _)| *d))
        .collect();
    dims.sort();
    dims.dedup();
    let mut head = vec!["candidate".to_string(), "label".to_string()];
    head.extend(dims.iter().map(|d| d.as_str().to_string()));
    head.extend(
        [
            "incidents",
            "false_incidents",
            "missed",
            "median_delay_s",
            "p90_delay_s",
            "max_delay_s",
            "time_firing_s",
            "flaps",
            "precision",
            "recall",
            "pareto",
            "chosen",
            "current",
        ]
        .map(String::from),
    );
    writeln!(w, "{}", head.join(","))?;
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    for (i, row) in r.rows.iter().enumerate() {
        let mut f = vec![(i + 1).to_string(), csv_field(&row.candidate.label())];
        for d in &dims {
            let v = match row.candidate.settings.iter().find(|(x, _)| x == d) {
                Some((_, Val::Num(v))) => v.to_string(),
                Some((_, Val::Dur(x))) => (x.as_ms() as f64 / 1000.0).to_string(),
                None => String::new(),
            };
            f.push(v);
        }
        let t = row.summary.truth.as_ref();
        let delay = t.and_then(|t| t.delay);
        f.push(row.summary.incidents.to_string());
        f.push(t.map(|t| t.false_incidents.to_string()).unwrap_or_default());
        f.push(t.map(|t| t.missed.to_string()).unwrap_or_default());
        f.push(delay.map(|d| secs(d.median_ms)).unwrap_or_default());
        f.push(delay.map(|d| secs(d.p90_ms)).unwrap_or_default());
        f.push(delay.map(|d| secs(d.max_ms)).unwrap_or_default());
        f.push(secs(row.summary.firing_ms));
        f.push(row.summary.flaps.to_string());
        f.push(
            t.and_then(|t| t.precision)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
        );
        f.push(
            t.and_then(|t| t.recall)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
        );
        f.push(row.pareto.to_string());
        f.push((r.chosen == Some(i)).to_string());
        f.push(row.current.to_string());
        writeln!(w, "{}", f.join(","))?;
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The `[[rules]]` entries of a configuration file as written, before
/// `${VAR}` expansion, by rule name: a snippet keeps their text where a
/// string held a `$` (an environment reference stays a reference, `$$`
/// stays escaped) instead of the expanded value (which may be a secret).
#[derive(Debug, Clone, Default)]
pub struct WrittenRules(std::collections::HashMap<String, toml::Table>);

impl WrittenRules {
    /// The rules of the file at `path`; none when it cannot be read or is
    /// not TOML before expansion (a `${VAR}` in place of a number): the
    /// snippet then escapes every `$` of the loaded values.
    pub fn read(path: &std::path::Path) -> Self {
        let Ok(text) = std::fs::read_to_string(path) else {
            return WrittenRules::default();
        };
        let Ok(doc) = text.parse::<toml::Table>() else {
            return WrittenRules::default();
        };
        let mut by_name = std::collections::HashMap::new();
        if let Some(toml::Value::Array(rules)) = doc.get("rules") {
            for r in rules {
                if let toml::Value::Table(t) = r {
                    if let Some(toml::Value::String(name)) = t.get("name") {
                        by_name.insert(name.clone(), t.clone());
                    }
                }
            }
        }
        WrittenRules(by_name)
    }
}

/// The chosen row's rule as a TOML `[[rules]]` snippet to paste over the
/// rule's entry in the configuration.
pub fn snippet(r: &TuneResult, row: usize) -> Result<String, TuneError> {
    snippet_as_written(r, row, &WrittenRules::default())
}

/// [`snippet`], keeping the text of `written`'s entry of the rule for its
/// strings that held a `$` there (see [`WrittenRules`]). Every other `$`
/// is written `$$`: the configuration loader expands the whole file's text,
/// reading `$$` as one `$` and `${…}` as an environment reference.
pub fn snippet_as_written(
    r: &TuneResult,
    row: usize,
    written: &WrittenRules,
) -> Result<String, TuneError> {
    let Some(rw) = r.rows.get(row) else {
        return Err(TuneError::Pick(row + 1, r.rows.len()));
    };
    let raw = written.0.get(&r.base.name);
    let body = written_body(&rw.candidate.rule, &r.base, raw)?;
    let body = drop_empty_tables(&body);
    let t = rw.summary.truth.as_ref();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# crisiswatch tune: rule {:?}, candidate #{} ({})",
        r.base.name,
        row + 1,
        rw.candidate.label()
    );
    let _ = writeln!(
        s,
        "# over {} lines: incidents {}, false {}, missed {}, median delay {}, time firing {}, flaps {}",
        r.lines,
        rw.summary.incidents,
        opt(t.map(|t| t.false_incidents)),
        opt(t.map(|t| t.missed)),
        rw.median_delay_ms().map_or_else(|| "-".to_string(), fmt_dur),
        fmt_dur(rw.summary.firing_ms),
        rw.summary.flaps
    );
    let _ = writeln!(
        s,
        "# Replace the [[rules]] entry named {:?} with this one.",
        r.base.name
    );
    s.push_str(&body);
    Ok(s)
}

/// The candidate rule as TOML, `$` escaped as `$$`, except where the rule
/// as written (`raw`) held a string with a `$` (a `${VAR}` reference, or
/// `$$`) that the candidate did not change: there the written text is put
/// back whole — at any depth (`select.attrs.product`), and whatever the
/// string's form (multi-line, literal) — so no expanded value (a secret)
/// reaches the snippet and `crisiswatch check` reads it as the original.
fn written_body(
    candidate: &RuleConfig,
    base: &RuleConfig,
    raw: Option<&toml::Table>,
) -> Result<String, TuneError> {
    let to_value =
        |rule: &RuleConfig| toml::Value::try_from(rule).map_err(|e| TuneError::Toml(e.to_string()));
    let mut tree = to_value(candidate)?;
    let base = to_value(base)?;
    let mut kept: Vec<String> = Vec::new();
    if let Some(raw) = raw {
        mark_written(
            &mut tree,
            &base,
            &toml::Value::Table(raw.clone()),
            &mut kept,
        );
    }
    let body = toml::to_string(&SnippetTree { rules: [tree] })
        .map_err(|e| TuneError::Toml(e.to_string()))?;
    let mut body = body.replace('$', "$$");
    for (i, w) in kept.iter().enumerate() {
        let written = toml::Value::String(w.clone()).to_string();
        for quoted in [format!("\"{}\"", marker(i)), format!("'{}'", marker(i))] {
            body = body.replace(&quoted, &written);
        }
    }
    Ok(body)
}

#[derive(Serialize)]
struct SnippetTree {
    rules: [toml::Value; 1],
}

/// A placeholder no configuration string holds.
fn marker(i: usize) -> String {
    format!("crisiswatch-written-{i}-5f0c9e2d")
}

/// Replaces, in `tree`, each string the candidate left as the configuration
/// had it (`base`) and that `raw` wrote with a `$`, by a marker; `kept`
/// gets the written text of each marker, in order.
fn mark_written(
    tree: &mut toml::Value,
    base: &toml::Value,
    raw: &toml::Value,
    kept: &mut Vec<String>,
) {
    match (tree, raw) {
        (toml::Value::String(t), toml::Value::String(w)) if w.contains('$') => {
            if matches!(base, toml::Value::String(b) if b == t) {
                *t = marker(kept.len());
                kept.push(w.clone());
            }
        }
        (toml::Value::Table(t), toml::Value::Table(w)) => {
            for (k, v) in t.iter_mut() {
                if let (Some(b), Some(r)) = (base.get(k), w.get(k)) {
                    mark_written(v, b, r, kept);
                }
            }
        }
        (toml::Value::Array(t), toml::Value::Array(w)) if t.len() == w.len() => {
            for (i, v) in t.iter_mut().enumerate() {
                if let (Some(b), Some(r)) = (base.get(i), w.get(i)) {
                    mark_written(v, b, r, kept);
                }
            }
        }
        _ => {}
    }
}

/// Removes `[table]` headers with no keys (empty selector `attrs`).
fn drop_empty_tables(toml_text: &str) -> String {
    let lines: Vec<&str> = toml_text.lines().collect();
    let mut out = String::with_capacity(toml_text.len());
    for (i, l) in lines.iter().enumerate() {
        let header = l.starts_with('[') && !l.starts_with("[[");
        if header {
            let next = lines[i + 1..].iter().find(|x| !x.trim().is_empty());
            if next.is_none_or(|n| n.starts_with('[')) {
                continue;
            }
        }
        if l.trim().is_empty() && out.ends_with("\n\n") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}
