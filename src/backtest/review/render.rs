//! The Markdown of a review: identity, timeline, rule, crises and events
//! sections (shared with the outbox reviews of [`super::outbox`]).

use std::fmt::Write as _;

use crate::backtest::labels::{self, Crisis};
use crate::backtest::report::{fmt_dur, fmt_value, group_label, short_ts, Incident};
use crate::config::RuleConfig;

use super::Evidence;

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
        heading(&i.rule),
        heading(&group_label(&i.group))
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
            match (peaks_sampled, i.condition) {
                (true, _) => "",
                (false, crate::config::Condition::Below) => " (lowest at a transition)",
                (false, crate::config::Condition::Above) => " (highest at a transition)",
            }
        );
    }
    if let Some(r) = rule {
        write_rule_rows(&mut s, r);
    }
    write_crisis_rows(&mut s, i, crises, grace_ms);

    let _ = writeln!(s, "\n## Timeline\n");
    write_timeline(&mut s, i, end_ms, "no data", "(end of data)");
    write_hints(&mut s, i);

    write_events(&mut s, evidence, "##");
    s
}

/// The root-cause hints of the incident's transitions (rules with
/// `explain`), one line per transition that carried any.
pub(crate) fn write_hints(s: &mut String, i: &Incident) {
    let steps: Vec<_> = i.timeline.iter().filter(|t| !t.hints.is_empty()).collect();
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Root-cause hints\n\nValues over-represented in the slice's window against its own baseline (ranked by the G statistic):\n"
    );
    for t in steps {
        let _ = writeln!(
            s,
            "* {} ({}): {}",
            short_ts(t.at),
            t.state,
            crate::explain::hints_text(&t.hints).replace(['\r', '\n'], " ")
        );
    }
}

/// Text made safe for one Markdown table cell: a `|` would start a new
/// cell, a line break would end the table, and HTML would be rendered.
pub(crate) fn cell(text: &str) -> String {
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ");
    crate::backtest::report::printable(&text).into_owned()
}

/// Text as one inline code span, safe in a table cell: fenced with more
/// backticks than it holds in a row (a backtick in an attribute value
/// would end a single-backtick span), on one line.
pub(crate) fn code(text: &str) -> String {
    let text = text.replace('|', "\\|").replace(['\r', '\n'], " ");
    let text = crate::backtest::report::printable(&text).into_owned();
    let mut run = 0;
    let mut longest = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Text for a heading: on one line, with Markdown's markup characters and
/// HTML escaped (it names attribute values, which can hold anything).
pub(crate) fn heading(text: &str) -> String {
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // `_` inside a word is not emphasis: names like `complaint_rate` stay as they are.
        if matches!(c, '`' | '*' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The rule, slice, dedup key, severity, breach and fire rows of an
/// incident's table (both reviews).
pub(crate) fn write_identity_rows(s: &mut String, i: &Incident, desc: Option<&str>) {
    let _ = writeln!(
        s,
        "| Rule | {}{} |",
        code(&i.rule),
        desc.map(|d| format!(" — {}", cell(d))).unwrap_or_default()
    );
    let _ = writeln!(s, "| Slice | {} |", cell(&group_label(&i.group)));
    let _ = writeln!(s, "| Dedup key | {} |", code(&i.dedup_key));
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
        "| Thresholds | {}: {}; clear {} |",
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
                        .map(|x| code(x))
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
    use super::{cell, code, heading};

    #[test]
    fn attribute_values_cannot_break_the_markdown() {
        assert_eq!(
            heading("spike — product=a\n# b <b>x</b> `c`"),
            "spike — product=a # b &lt;b&gt;x&lt;/b&gt; \\`c\\`"
        );
        assert_eq!(heading("complaint_rate"), "complaint_rate");
        assert_eq!(code("rule/p=a`b/1"), "``rule/p=a`b/1``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(cell("a|b\n<i>"), "a\\|b &lt;i&gt;");
    }
}
