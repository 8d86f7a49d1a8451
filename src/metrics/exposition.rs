//! The text exposition of the rules' series: Prometheus label names made
//! from attribute names, label escaping, and the indicator, threshold,
//! alert-state and rule-info series rendered from the rules' snapshots.

use std::fmt::Write as _;

use super::{RuleSnapshot, Series};
use crate::alert::Phase;

/// A label name from an attribute name: `[a-zA-Z_][a-zA-Z0-9_]*`, never a reserved one.
pub(crate) fn label_name(attr: &str) -> String {
    let mut s: String = attr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("__") {
        s.insert_str(0, "attr_");
    }
    if matches!(
        s.as_str(),
        "rule" | "severity" | "kind" | "le" | "quantile" | "job" | "instance"
    ) {
        s.insert_str(0, "attr_");
    }
    s
}

/// The label names of a group's attributes, in order: each attribute's
/// [`label_name`], with `attr_` put in front again while it equals an
/// earlier one (`group_by = ["a-b", "a_b"]` gives `a_b` and `attr_a_b`), so
/// a series never carries one label name twice, which would make
/// Prometheus refuse the whole scrape.
pub(crate) fn label_names<'a>(attrs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let attrs: Vec<&str> = attrs.into_iter().collect();
    let mut names: Vec<Option<String>> = vec![None; attrs.len()];
    let mut taken: Vec<String> = Vec::new();
    // An attribute whose name is a valid label name as it is keeps it,
    // whatever comes before it in `group_by` (as Alertmanager labels do):
    // `a_b` is labelled `a_b`, never `attr_a_b` because `a-b` came first.
    for (i, a) in attrs.iter().enumerate() {
        let name = label_name(a);
        if name == *a && !taken.contains(&name) {
            taken.push(name.clone());
            names[i] = Some(name);
        }
    }
    // The others (cleaned up, reserved, or taken) get `attr_` until free.
    for (i, a) in attrs.iter().enumerate() {
        if names[i].is_some() {
            continue;
        }
        let mut name = label_name(a);
        while taken.contains(&name) {
            name.insert_str(0, "attr_");
        }
        taken.push(name.clone());
        names[i] = Some(name);
    }
    names.into_iter().flatten().collect()
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(out: &mut String, rule: &str, extra: &[(String, String)]) {
    out.push_str("{rule=\"");
    escape_label(rule, out);
    out.push('"');
    for (k, v) in extra {
        out.push(',');
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
    out.push('}');
}

/// One gauge with a sample per exported group that has `pick`'s value.
fn render_group_gauge(
    snaps: &[RuleSnapshot],
    out: &mut String,
    name: &str,
    help: &str,
    pick: impl Fn(&Series) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for s in snaps {
        for series in &s.series {
            if let Some(v) = pick(series).filter(|v| v.is_finite()) {
                out.push_str(name);
                write_labels(out, &s.name, &series.labels);
                let _ = writeln!(out, " {v}");
            }
        }
    }
}

pub(super) fn render_indicators(snaps: &[RuleSnapshot], out: &mut String) {
    render_group_gauge(
        snaps,
        out,
        "crisiswatch_indicator_value",
        "Indicator value per rule and group (the rule's group_by attributes are labels).",
        |s| s.value,
    );
    render_group_gauge(
        snaps,
        out,
        "crisiswatch_indicator_estimate",
        "Point estimate per rule and group for rules with a confidence (crisiswatch_indicator_value is then the confidence bound judged).",
        |s| s.estimate,
    );
    out.push_str("# HELP crisiswatch_indicator_threshold Threshold per rule and severity; severity=\"clear\" is the hysteresis threshold.\n");
    out.push_str("# TYPE crisiswatch_indicator_threshold gauge\n");
    for s in snaps {
        for (sev, v) in s
            .thresholds
            .iter()
            .map(|(a, b)| (a.as_str(), *b))
            .chain([("clear", s.clear)])
        {
            out.push_str("crisiswatch_indicator_threshold");
            write_labels(out, &s.name, &[("severity".to_string(), sev.to_string())]);
            let _ = writeln!(out, " {v}");
        }
    }
    out.push_str("# HELP crisiswatch_alert_state Alert state per rule and group: 0 inactive, 1 pending, 2 firing.\n");
    out.push_str("# TYPE crisiswatch_alert_state gauge\n");
    for s in snaps {
        for series in &s.series {
            out.push_str("crisiswatch_alert_state");
            write_labels(out, &s.name, &series.labels);
            let _ = writeln!(out, " {}", series.state);
        }
    }
    out.push_str("# HELP crisiswatch_rule_info Static information about each rule.\n");
    out.push_str("# TYPE crisiswatch_rule_info gauge\n");
    for s in snaps {
        out.push_str("crisiswatch_rule_info");
        write_labels(
            out,
            &s.name,
            &[
                ("kind".to_string(), s.kind.clone()),
                ("condition".to_string(), s.condition.to_string()),
            ],
        );
        out.push_str(" 1\n");
    }
}

/// Phase as a label-friendly string.
pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Inactive => "inactive",
        Phase::Pending { .. } => "pending",
        Phase::Firing { .. } => "firing",
    }
}
