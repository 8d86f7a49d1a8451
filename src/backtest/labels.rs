//! Ground truth for backtests: known crises, and which incidents caught them.
//!
//! A labels file is JSONL, one crisis per line, in the format
//! `crisiswatch generate --crises FILE` writes:
//!
//! ```json
//! {"name":"quality_surge","kind":"product_quality_surge",
//!  "slice":{"product":"router-x","region":"eu-west"},
//!  "start":"2026-11-20T08:00:00Z","end":"2026-11-20T11:00:00Z"}
//! ```
//!
//! `start` and `end` are RFC 3339 times or integer milliseconds; `kind` and any
//! other field are optional. Blank lines and lines starting with `#` are skipped.
//!
//! The matching rule ([`matches()`], also the demo summary's): an incident
//! matches a crisis when its group agrees with the crisis slice on
//! every attribute both name (and they share at least one, unless the rule has
//! no `group_by`), and it *fired* within `[start, end + grace]`. The grace is
//! the rule's window by default: an alert on a window of W still sees the
//! crisis for up to W after it ends.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::event::{format_ts, parse_rfc3339_ms};

/// Errors loading a labels file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read.
    #[error("cannot read labels file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a crisis.
    #[error("{path}:{line}: {message} (expected {{\"name\":…, \"slice\":{{…}}, \"start\":RFC3339, \"end\":RFC3339}})")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `--crisis NAME` named no crisis of the file.
    #[error("no crisis named {name:?} in the labels (known: {known})")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The names in the file.
        known: String,
    },
}

/// One known crisis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Crisis {
    /// Short name, unique within a file by convention.
    pub name: String,
    /// Playbook kind, if given.
    pub kind: String,
    /// Attribute constraints of the affected slice.
    pub slice: Vec<(String, String)>,
    /// Start (ms, inclusive).
    pub start_ms: i64,
    /// End (ms).
    pub end_ms: i64,
}

impl Crisis {
    /// The slice as `k=v k=v`.
    pub(crate) fn slice_label(&self) -> String {
        if self.slice.is_empty() {
            return "(all)".to_string();
        }
        self.slice
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Deserialize)]
struct Line {
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    slice: BTreeMap<String, String>,
    start: Time,
    end: Time,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Ms(i64),
    Text(String),
}

impl Time {
    fn ms(&self) -> Option<i64> {
        match self {
            Time::Ms(ms) => Some(*ms),
            Time::Text(s) => parse_rfc3339_ms(s),
        }
    }
}

/// Reads a labels file.
pub fn load(path: &Path) -> Result<Vec<Crisis>, LabelsError> {
    let text = super::input::read_text(path).map_err(|source| LabelsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses labels text; `source` names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Vec<Crisis>, LabelsError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim().trim_start_matches('\u{feff}').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| LabelsError::Parse {
            path: source.to_string(),
            line: i + 1,
            message,
        };
        let l: Line = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        if l.name.is_empty() {
            return Err(err("\"name\" is empty".to_string()));
        }
        let start = l
            .start
            .ms()
            .ok_or_else(|| err("\"start\" is not an RFC 3339 time".to_string()))?;
        let end = l
            .end
            .ms()
            .ok_or_else(|| err("\"end\" is not an RFC 3339 time".to_string()))?;
        if end <= start {
            return Err(err(format!(
                "\"end\" ({}) must be after \"start\" ({})",
                format_ts(end),
                format_ts(start)
            )));
        }
        let c = Crisis {
            name: l.name,
            kind: l.kind,
            slice: l.slice.into_iter().collect(),
            start_ms: start,
            end_ms: end,
        };
        // The same crisis twice (a line pasted twice) is one crisis, not two.
        if out.contains(&c) {
            tracing::warn!(labels = source, line = i + 1, crisis = %c.name, "Labels: the same crisis again; counted once.");
            continue;
        }
        if out.iter().any(|o: &Crisis| o.name == c.name) {
            tracing::warn!(
                labels = source,
                line = i + 1,
                crisis = %c.name,
                "Labels: a crisis named {:?} again with another slice or time: scored as a crisis of its own \
                 (each caught or missed by itself); give it its own name if that is meant",
                c.name
            );
        }
        out.push(c);
    }
    Ok(out)
}

/// The generator's injected crises as labels (for tests and the demo data).
pub fn from_generator(crises: &[crate::generator::Crisis]) -> Vec<Crisis> {
    crises
        .iter()
        .map(|c| Crisis {
            name: c.name.to_string(),
            kind: c.kind.to_string(),
            slice: c.slice.clone(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
        })
        .collect()
}

/// What responders' labels say as ground truth ([`from_feedback`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackTruth {
    /// One crisis per incident labelled `useful`, named `useful:<incident
    /// key>`: its slice is what the incident's alerts share (the route's
    /// `group_by` labels), its interval from the first breach to the last
    /// resolve.
    pub crises: Vec<Crisis>,
    /// Incidents labelled `useful`.
    pub useful: usize,
    /// Incidents labelled `noise`: not crises, so an incident a candidate
    /// raises there counts as false.
    pub noise: usize,
}

/// The outbox's feedback as labels: each incident's latest label counts; a
/// `useful` incident becomes a crisis, a `noise` one a false page (no crisis).
pub fn from_feedback(entries: &[crate::incident::outbox::feedback::Feedback]) -> FeedbackTruth {
    use crate::incident::outbox::feedback::{fold, Label};
    let mut out = FeedbackTruth::default();
    for (key, st) in fold(entries) {
        let Some(f) = st.label else { continue };
        match f.label {
            Some(Label::Useful) => {
                out.useful += 1;
                let (Some(start), Some(end)) = (
                    f.alerts.iter().map(|a| a.started_at).min(),
                    f.alerts.iter().map(|a| a.end).max(),
                ) else {
                    continue;
                };
                // The labels every alert shares; a route without `group_by`
                // leaves them empty, then the alerts' common slice.
                let mut slice = f.labels.clone();
                if slice.is_empty() {
                    slice = f.alerts[0].group.clone();
                    slice.retain(|kv| f.alerts.iter().all(|a| a.group.contains(kv)));
                }
                out.crises.push(Crisis {
                    name: format!("useful:{key}"),
                    kind: "labelled useful".to_string(),
                    slice,
                    start_ms: start,
                    end_ms: end.max(start.saturating_add(1)),
                });
            }
            Some(Label::Noise) => out.noise += 1,
            None => {}
        }
    }
    out
}

/// Keeps only the crises named (all of them when `names` is empty).
pub fn select(crises: Vec<Crisis>, names: &[String]) -> Result<Vec<Crisis>, LabelsError> {
    if names.is_empty() {
        return Ok(crises);
    }
    for n in names {
        if !crises.iter().any(|c| &c.name == n) {
            return Err(LabelsError::UnknownName {
                name: n.clone(),
                known: crises
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(crises
        .into_iter()
        .filter(|c| names.contains(&c.name))
        .collect())
}

/// One warning per crisis slice attribute that no rule of `cfg` groups by
/// (a misspelt `prodcut`): no incident can share it, so the crisis can only
/// be caught through its other attributes, or, with none, by a rule without
/// `group_by` — and reads as missed.
pub(crate) fn unknown_slice_attrs(crises: &[Crisis], cfg: &crate::config::Config) -> Vec<String> {
    let known: std::collections::BTreeSet<&str> = cfg
        .rules
        .iter()
        .flat_map(|r| r.group_by.iter().map(String::as_str))
        .collect();
    if known.is_empty() {
        return Vec::new();
    }
    // An attribute a rule selects on (`channel = "social"` in a rule
    // grouped by product) is no misspelling: an incident of that rule
    // matches the crisis through the attributes it does group by.
    let selected: std::collections::BTreeSet<&str> = cfg
        .rules
        .iter()
        .flat_map(|r| r.indicator.selectors())
        .flat_map(|s| s.attrs.keys().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for c in crises {
        for (k, _) in &c.slice {
            if !known.contains(k.as_str()) && !selected.contains(k.as_str()) {
                let hint = crate::config::did_you_mean(k, known.iter().copied());
                out.push(format!(
                    "crisis {:?}: slice attribute {k:?} is grouped by no rule{hint}: no incident can match it, so the crisis may read as missed — the rules group by {}",
                    c.name,
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    out
}

/// Whether an incident of group `group` that fired at `fired_at` caught crisis `c`.
pub(crate) fn matches(
    group: &[(String, String)],
    fired_at: i64,
    c: &Crisis,
    grace_ms: i64,
) -> bool {
    let mut shared = 0;
    for (k, v) in group {
        if let Some((_, cv)) = c.slice.iter().find(|(ck, _)| ck == k) {
            if cv != v {
                return false;
            }
            shared += 1;
        }
    }
    (shared > 0 || group.is_empty())
        && fired_at >= c.start_ms
        && fired_at <= c.end_ms.saturating_add(grace_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, GeneratorSettings};

    fn g(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_what_generate_writes() {
        let text = r#"
# a comment
{"name":"quality_surge","kind":"product_quality_surge","slice":{"product":"router-x","region":"eu-west"},"start":"2026-11-20T08:00:00Z","end":"2026-11-20T11:00:00Z","description":"x"}
{"name":"n2","slice":{},"start":1000,"end":2000}
"#;
        let l = parse(text, "t").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].slice,
            g(&[("product", "router-x"), ("region", "eu-west")])
        );
        assert_eq!(l[0].end_ms - l[0].start_ms, 3 * 3_600_000);
        assert_eq!(l[1].start_ms, 1000);
    }

    #[test]
    fn a_line_pasted_twice_is_one_crisis_and_a_byte_order_mark_is_dropped() {
        let line = r#"{"name":"a","slice":{"product":"p"},"start":1000,"end":2000}"#;
        let text = format!("\u{feff}{line}\n{line}\n{}\n", line.replace("2000", "3000"));
        let l = parse(&text, "t").unwrap();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!((l[0].end_ms, l[1].end_ms), (2000, 3000));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = parse("{\"name\":\"a\",\"start\":\"x\",\"end\":1}\n", "f.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("f.jsonl:1:"), "{e}");
        let e = parse("\n{\"name\":\"a\",\"start\":5,\"end\":5}\n", "f").unwrap_err();
        assert!(e.to_string().contains("f:2:"), "{e}");
        assert!(e.to_string().contains("must be after"), "{e}");
    }

    #[test]
    fn a_slice_attribute_no_rule_groups_by_is_named_with_the_closest_one() {
        let cfg = crate::config::Config::from_toml_str(
            "[[rules]]\nname = \"r\"\ngroup_by = [\"product\", \"region\"]\nwindow = \"10m\"\nslide = \"1m\"\nindicator = { kind = \"count\", select = { type = \"complaint\" } }\nthresholds = { warning = 1 }\n",
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect("config");
        let crises = parse(
            r#"{"name":"x","kind":"k","slice":{"prodcut":"router-x","region":"eu"},"start":"2026-11-20T04:00:00Z","end":"2026-11-20T06:00:00Z"}"#,
            "t",
        )
        .expect("labels");
        let w = unknown_slice_attrs(&crises, &cfg);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("\"prodcut\"") && w[0].contains("did you mean \"product\""),
            "{w:?}"
        );
        let ok = parse(
            r#"{"name":"y","kind":"k","slice":{"product":"router-x"},"start":"2026-11-20T04:00:00Z","end":"2026-11-20T06:00:00Z"}"#,
            "t",
        )
        .expect("labels");
        assert!(unknown_slice_attrs(&ok, &cfg).is_empty());
        // An attribute a rule selects on (the shipped social_spike: grouped
        // by product, selecting channel = social) is not named.
        let example = crate::config::Config::from_toml_str(
            crate::config::EXAMPLE_CONFIG,
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect("example config");
        let social = parse(
            r#"{"name":"social_spike","kind":"k","slice":{"product":"router-x","channel":"social"},"start":"2026-11-20T04:00:00Z","end":"2026-11-20T06:00:00Z"}"#,
            "t",
        )
        .expect("labels");
        assert!(unknown_slice_attrs(&social, &example).is_empty());
    }

    #[test]
    fn select_rejects_unknown_names() {
        let l = parse("{\"name\":\"a\",\"start\":1,\"end\":2}", "t").unwrap();
        assert_eq!(select(l.clone(), &["a".into()]).unwrap().len(), 1);
        let e = select(l, &["b".into()]).unwrap_err();
        assert!(e.to_string().contains("known: a"), "{e}");
    }

    /// The rule as the module documents it, written out plainly.
    fn documented_rule(group: &[(String, String)], fired: i64, c: &Crisis, grace: i64) -> bool {
        let named_by_both: Vec<_> = group
            .iter()
            .filter(|(k, _)| c.slice.iter().any(|(ck, _)| ck == k))
            .collect();
        let agree = named_by_both
            .iter()
            .all(|(k, v)| c.slice.iter().any(|(ck, cv)| ck == k && cv == v));
        agree
            && (!named_by_both.is_empty() || group.is_empty())
            && (c.start_ms..=c.end_ms + grace).contains(&fired)
    }

    /// The matching rule, case for case, on the generator's crises.
    #[test]
    fn matches_the_documented_rule() {
        let gen = Generator::new(GeneratorSettings {
            seed: 3,
            start_ms: 1_795_132_800_000,
            duration_ms: 86_400_000,
            orders_per_minute: 10.0,
            crises: true,
            noise: false,
            shape: crate::generator::TrafficShape::default(),
        });
        let groups = [
            g(&[("product", "router-x"), ("region", "eu-west")]),
            g(&[("product", "router-x"), ("region", "us-east")]),
            g(&[("product", "phone-z")]),
            g(&[("region", "us-east"), ("segment", "vip")]),
            g(&[("channel", "email")]),
            g(&[]),
        ];
        let labels = from_generator(gen.crises());
        let mut checked = 0;
        for (c, l) in gen.crises().iter().zip(&labels) {
            for group in &groups {
                for fired in [
                    c.start_ms - 1,
                    c.start_ms,
                    c.end_ms,
                    c.end_ms + 600_000,
                    c.end_ms + 600_001,
                ] {
                    assert_eq!(
                        matches(group, fired, l, 600_000),
                        documented_rule(group, fired, l, 600_000),
                        "{group:?} at {fired} vs {}",
                        c.name
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 6 * 5);
    }
}
