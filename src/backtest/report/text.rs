//! The text report, and the number and time formats every backtest output uses.

use std::fmt::{self, Write as _};

use crate::event::{format_ts, InvalidReason};

use super::*;

/// A duration in ms for people, to the second (truncated, like [`short_ts`]):
/// `1h 2m 3s`, `15d 20h 29m`, `0s`.
pub fn fmt_dur(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    if secs == 0 {
        return "0s".to_string();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An event time to the second, UTC: `2026-11-20T09:18:31Z`.
pub fn short_ts(ms: i64) -> String {
    // Saturating: near i64::MIN the rounding down would overflow.
    format_ts(ms.div_euclid(1000).saturating_mul(1000))
}

/// A value with up to 4 decimals, without trailing zeros.
pub fn fmt_value(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let span = match (self.first_ms, self.end_ms) {
            (Some(a), Some(b)) => {
                let mut span = format!("{} → {} ({}", short_ts(a), short_ts(b), fmt_dur(b - a));
                if self.gaps > 0 {
                    span.push_str(&format!(
                        "; the events cover {}: {} gap(s) of more than a day without events left out",
                        fmt_dur(self.covered_ms.unwrap_or(0)),
                        self.gaps
                    ));
                }
                span + ")"
            }
            _ => "no events".to_string(),
        };
        writeln!(f, "Backtest over {span}")?;
        writeln!(
            f,
            "  lines {}, applied {}, invalid {}, duplicates {}, late {}, unmatched {}, overflow {}, transitions {}",
            self.lines,
            s.applied,
            s.invalid_total(),
            s.duplicates,
            s.late,
            s.unmatched,
            s.overflow,
            s.transitions
        )?;
        if self.dedup_evicted > 0 {
            writeln!(
                f,
                "  dedup memory full (engine.dedup_max_ids): {} ids forgotten before engine.dedup_horizon; a repeat of one counted again",
                self.dedup_evicted
            )?;
        }
        for (rule, n) in &self.capped {
            writeln!(
                f,
                "  rule {rule}: {n} events refused at engine.max_groups_per_rule (slices past the cap are not watched; raise it or slice less finely)"
            )?;
        }
        for (rule, n) in &self.late_for {
            writeln!(
                f,
                "  rule {rule}: {n} events too old for its window were not counted (late for this rule; `late` above counts only events late for every rule): the input is out of time order — sort it by time; if one source's events trail the rest (a producer stamping in another time zone, a batch resent later), sorting does not help: fix that source's stamps, and a resend older than engine.dedup_horizon counts twice"
            )?;
        }
        // Why lines were invalid, and the first few of them (refuted clock
        // jumps always: one such line would otherwise blank the report).
        if s.invalid_total() > 0 {
            let by_reason: Vec<String> = InvalidReason::ALL
                .iter()
                .filter(|r| s.invalid[r.index()] > 0)
                .map(|r| format!("{} {}", r.as_str(), s.invalid[r.index()]))
                .collect();
            writeln!(f, "  invalid by reason: {}", by_reason.join(", "))?;
        }
        // Other invalid lines are named when they are many (1 % of the
        // lines, or all of them): a few malformed lines in a large history
        // are counted only.
        let many = s.invalid_total() > 0
            && (s.applied == 0 || s.invalid_total() as f64 >= 0.01 * self.lines as f64);
        for l in &self.invalid_lines {
            if many || l.reason == InvalidReason::ClockJump {
                // `file:line` where the report knows the inputs; else the
                // count over the non-blank lines of all inputs.
                let place =
                    l.at.clone()
                        .unwrap_or_else(|| format!("non-blank input line {}", l.line));
                writeln!(f, "  {place}: {}: {}", l.reason, l.detail)?;
            }
        }
        if s.applied == 0 {
            let future = s.invalid[InvalidReason::FutureTimestamp.index()] > 0;
            writeln!(
                f,
                "  no valid event reached the rules: every figure below is empty{}",
                if self.lines == 0 {
                    " (the input holds no event line: is it the right file?)"
                } else if future {
                    " (events after the wall clock are future_timestamp: pass --now with a time after the history)"
                } else if s.invalid_total() > 0 {
                    " (the reasons above say why)"
                } else {
                    " (see the counts above: events no rule selects are unmatched, the others late or duplicates)"
                }
            )?;
        }
        writeln!(f)?;
        let with_truth = self.truth.is_some();
        let mut head = format!(
            "{:<24} {:>9} {:>6} {:>13} {:>5}",
            "rule", "incidents", "slices", "time firing", "flaps"
        );
        if with_truth {
            head.push_str(&format!(
                " {:>5} {:>9}  crises caught",
                "false", "precision"
            ));
        }
        writeln!(f, "{}", head.trim_end())?;
        for r in &self.rules {
            let mut line = format!(
                "{:<24} {:>9} {:>6} {:>13} {:>5}",
                r.rule,
                r.incidents,
                r.slices,
                fmt_dur(r.firing_ms),
                r.flaps
            );
            if let Some(t) = &r.truth {
                let caught: Vec<&str> = t
                    .outcomes
                    .iter()
                    .filter(|o| o.detected_at.is_some())
                    .map(|o| o.name.as_str())
                    .collect();
                let _ = write!(
                    line,
                    " {:>5} {:>9}  {}",
                    t.false_incidents,
                    fmt_ratio(t.precision),
                    if caught.is_empty() {
                        "-".to_string()
                    } else {
                        caught.join(", ")
                    }
                );
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        if !self.slices.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<24} {:<36} {:>9} {:>13} {:>5}  {:<9} peak",
                "rule", "slice", "incidents", "time firing", "flaps", "severity"
            )?;
            for s in &self.slices {
                let peak = s.peak.map_or_else(
                    || "-".to_string(),
                    |p| format!("{} at {}", fmt_value(p.value), short_ts(p.at)),
                );
                writeln!(
                    f,
                    "{:<24} {:<36} {:>9} {:>13} {:>5}  {:<9} {}",
                    s.rule,
                    Cell(&group_label(&s.group)),
                    s.incidents,
                    fmt_dur(s.firing_ms),
                    s.flaps,
                    s.severity.as_str(),
                    peak
                )?;
            }
        }
        if let Some(t) = &self.truth {
            writeln!(f)?;
            let grace = self
                .grace_ms
                .map_or_else(|| "each rule's window".to_string(), fmt_dur);
            writeln!(
                f,
                "Ground truth: {} known crises (grace after a crisis ends: {grace})",
                t.crises
            )?;
            if t.after_history > 0 {
                writeln!(
                    f,
                    "  {} more labelled crises start after the history ends: not scored",
                    t.after_history
                )?;
            }
            if t.before_history > 0 {
                writeln!(
                    f,
                    "  {} more labelled crises end before the history starts: not scored",
                    t.before_history
                )?;
            }
            writeln!(
                f,
                "{:<16} {:<36} {:<20} {:<20} {:>9}  by",
                "crisis", "slice", "start", "first firing", "delay"
            )?;
            for o in &t.outcomes {
                writeln!(
                    f,
                    "{:<16} {:<36} {:<20} {:<20} {:>9}  {}",
                    Cell(&o.name),
                    Cell(&group_label(&o.slice)),
                    short_ts(o.start_ms),
                    o.detected_at.map_or_else(|| "MISSED".to_string(), short_ts),
                    o.delay_ms.map_or_else(|| "-".to_string(), fmt_dur),
                    o.rules.join(", ")
                )?;
            }
            writeln!(
                f,
                "missed {} of {}, false incidents {} of {}, precision {}, recall {}",
                t.missed,
                t.crises,
                t.false_incidents,
                t.incidents,
                fmt_ratio(t.precision),
                fmt_ratio(t.recall)
            )?;
            match t.delay {
                Some(d) => writeln!(
                    f,
                    "detection delay: median {}, p90 {}, max {}",
                    fmt_dur(d.median_ms),
                    fmt_dur(d.p90_ms),
                    fmt_dur(d.max_ms)
                )?,
                None => writeln!(f, "detection delay: - (nothing detected)")?,
            }
        }
        Ok(())
    }
}

/// A cell of a text table: left-aligned to the width the format asks for
/// (`{:<36}`) in terminal columns, not characters — a CJK character or an
/// emoji takes two, a combining accent none — so the columns after a slice
/// label written in any script stay aligned. Only left alignment is needed.
pub(crate) struct Cell<'a>(pub(crate) &'a str);

impl std::fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        for _ in columns(self.0)..f.width().unwrap_or(0) {
            f.write_str(" ")?;
        }
        Ok(())
    }
}

/// The terminal columns `s` takes.
pub(crate) fn columns(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` with every control character (a NUL, an escape sequence, a line
/// break) and the two non-characters U+FFFE and U+FFFF written as
/// `\u{…}`: an attribute value may hold any of them, and raw they drive
/// the terminal, break a table's line, or make an SVG chart invalid XML.
pub(crate) fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() || c == '\u{fffe}' || c == '\u{ffff}';
    if !s.contains(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table cell is padded to terminal columns: wide characters take
    /// two, combining marks none, so the next column starts where the
    /// ASCII rows' does.
    #[test]
    fn cells_pad_to_terminal_columns() {
        let row = |v: &str| format!("{:<12}|", Cell(v));
        let ascii = row("product=x");
        for v in ["product=日本", "product=e\u{301}e\u{301}", "product=🚀"] {
            let r = row(v);
            assert_eq!(columns(&r), columns(&ascii), "{r:?} against {ascii:?}");
        }
        assert_eq!(row("product=日本"), "product=日本|");
        // Longer than the cell: written whole, as `{:<12}` does.
        assert_eq!(row("product=router-xl"), "product=router-xl|");
    }
}
