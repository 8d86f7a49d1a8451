//! The Markdown of an outbox incident's review: the incident, its
//! notifications, and per alert its facts, timeline and events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::backtest::labels::Crisis;
use crate::backtest::report::{fmt_dur, fmt_value, group_label, short_ts};
use crate::backtest::review::{
    cell, code, heading, write_crisis_rows, write_events, write_identity_rows, write_rule_rows,
    write_timeline, Evidence,
};
use crate::config::Config;
use crate::incident::model::Action;

use super::{AlertReview, OutboxIncident, PeakTime, TimelineSource};

/// The Markdown review of one outbox incident. `evidence`: per alert, in
/// order, when the history was given.
pub fn render(
    i: &OutboxIncident,
    cfg: &Config,
    evidence: Option<&[Evidence]>,
    crises: &[Crisis],
    grace_ms: Option<i64>,
    end_ms: i64,
    source: &Path,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Incident review: {} — {}\n",
        heading(&i.route),
        heading(&group_label(&i.labels))
    );
    let _ = writeln!(
        s,
        "From the live service's outbox (`{}`): the notifications this incident sent and \
         the outbox's ledger of applied alert transitions. The outbox keeps no indicator \
         values between notifications: a value is shown where a notification sent at that \
         moment carried it (`-` otherwise), and an alert's peak is the most extreme value the \
         incident stage saw (at transitions and progress updates), not one sampled at every \
         slide as in a backtest.\n",
        source.display()
    );
    let _ = writeln!(s, "| | |\n| --- | --- |");
    let _ = writeln!(s, "| Incident | {} |", code(&i.key));
    let _ = writeln!(s, "| Route | {} |", code(&i.route));
    let _ = writeln!(s, "| Labels | {} |", cell(&group_label(&i.labels)));
    let _ = writeln!(s, "| Highest severity | {} |", i.severity);
    let _ = writeln!(s, "| Breach began | {} |", short_ts(i.started_at));
    let opened = match i.notifications.iter().find(|n| n.seq == 1) {
        Some(n) => format!("{} (notification #1)", short_ts(n.at)),
        None if i.notifications.is_empty() => {
            "not yet: waiting for the route's group window".to_string()
        }
        None => "notification #1 is no longer in the outbox".to_string(),
    };
    let _ = writeln!(s, "| Opened | {opened} |");
    let resolved = match (i.resolved_at, i.open) {
        (Some(r), _) => short_ts(r),
        (None, true) => format!(
            "still open at the last event time the outbox knows ({})",
            short_ts(end_ms)
        ),
        (None, false) => "no resolve in the outbox, and not open either".to_string(),
    };
    let _ = writeln!(s, "| Resolved | {resolved} |");
    let _ = writeln!(
        s,
        "| Duration | {} (breach began → {}) |",
        fmt_dur(i.resolved_at.unwrap_or(end_ms).saturating_sub(i.started_at)),
        if i.resolved_at.is_some() {
            "resolved"
        } else {
            "last event time"
        }
    );
    let names: Vec<String> = i
        .alerts
        .iter()
        .map(|a| format!("{} ({})", a.incident.rule, group_label(&a.incident.group)))
        .collect();
    let _ = writeln!(
        s,
        "| Alerts | {}: {} |",
        names.len(),
        cell(&names.join(", "))
    );
    let _ = writeln!(s, "| Notifications | {} |", notification_counts(i));
    let _ = writeln!(s, "| Receivers | {} |", cell(&receiver_counts(i)));
    write_notifications(&mut s, i);
    for (k, a) in i.alerts.iter().enumerate() {
        write_alert(&mut s, k, a, i, cfg, crises, grace_ms, end_ms);
        if let Some(e) = evidence {
            write_events(&mut s, e.get(k), "###");
        }
    }
    if evidence.is_none() {
        let _ = writeln!(
            s,
            "\n## Events involved\n\nNot computed: the history was not given. Pass it with \
             `--input` to count each alert's events, distinct customers and top attribute values."
        );
    }
    s
}

fn notification_counts(i: &OutboxIncident) -> String {
    if i.notifications.is_empty() {
        return "none yet".to_string();
    }
    let count = |a: Action| i.notifications.iter().filter(|n| n.action == a).count();
    let acks = match count(Action::Acknowledge) {
        0 => String::new(),
        n => format!(", acknowledge {n}"),
    };
    format!(
        "{} stored: open {}, update {}, resolve {}{acks}",
        i.notifications.len(),
        count(Action::Open),
        count(Action::Update),
        count(Action::Resolve)
    )
}

fn receiver_counts(i: &OutboxIncident) -> String {
    let mut by: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for n in &i.notifications {
        for (r, st) in &n.deliveries {
            *by.entry(r).or_default().entry(st.as_str()).or_default() += 1;
        }
    }
    if by.is_empty() {
        return "-".to_string();
    }
    by.iter()
        .map(|(r, m)| {
            let parts: Vec<String> = m.iter().map(|(st, n)| format!("{st} {n}")).collect();
            format!("{r}: {}", parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn write_notifications(s: &mut String, i: &OutboxIncident) {
    let _ = writeln!(s, "\n## Notifications\n");
    if i.notifications.is_empty() {
        let _ = writeln!(
            s,
            "None yet: the incident waits for its route's group window before the open."
        );
        return;
    }
    let max = i.notifications.iter().map(|n| n.seq).max().unwrap_or(0);
    let missing: Vec<String> = (1..=max)
        .filter(|q| !i.notifications.iter().any(|n| n.seq == *q))
        .map(|q| format!("#{q}"))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            "Notifications {} are not in the outbox: pruned after `incidents.retention`, or \
             acknowledgements that no configured receiver takes (nothing is stored for them).\n",
            missing.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "| # | time | action | what changed | severity | receivers | summary |\n| ---: | --- | --- | --- | --- | --- | --- |"
    );
    for n in &i.notifications {
        let mut rec: Vec<String> = n
            .deliveries
            .iter()
            .map(|(r, st)| format!("{r} {}", st.as_str()))
            .collect();
        if !n.sent_as_open.is_empty() {
            rec.push(format!("(as open to {})", n.sent_as_open.join(", ")));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            n.seq,
            short_ts(n.at),
            n.action.as_str(),
            cell(&n.change),
            n.severity,
            cell(&rec.join(", ")),
            cell(&n.summary)
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn write_alert(
    s: &mut String,
    k: usize,
    a: &AlertReview,
    inc: &OutboxIncident,
    cfg: &Config,
    crises: &[Crisis],
    grace_ms: Option<i64>,
    end_ms: i64,
) {
    let i = &a.incident;
    let rule = cfg.rules.iter().find(|r| r.name == i.rule);
    let _ = writeln!(
        s,
        "\n## Alert {} of {}: {} — {}\n",
        k + 1,
        inc.alerts.len(),
        cell(&i.rule),
        cell(&group_label(&i.group))
    );
    let _ = writeln!(s, "| | |\n| --- | --- |");
    let desc = rule
        .map(|r| r.description.as_str())
        .filter(|d| !d.is_empty())
        .or_else(|| Some(a.description.as_str()).filter(|d| !d.is_empty()));
    write_identity_rows(s, i, desc);
    let resolved = match i.resolved_at {
        Some(r) => short_ts(r),
        None => format!(
            "still firing at the last event time the outbox knows ({})",
            short_ts(end_ms)
        ),
    };
    let _ = writeln!(s, "| Resolved | {resolved} |");
    let _ = writeln!(
        s,
        "| Duration (firing) | {} |",
        fmt_dur(i.firing_ms(end_ms))
    );
    let peak = match (a.peak, a.peak_at) {
        (None, _) => "not known (no value was carried)".to_string(),
        (Some(p), PeakTime::At(t)) => format!(
            "{} at {} (the most extreme the incident stage saw, at transitions and progress updates)",
            fmt_value(p),
            short_ts(t)
        ),
        (Some(p), PeakTime::ReportedBy { at, seq }) => format!(
            "{}, first reported by notification #{seq} at {}; when it was reached is not stored",
            fmt_value(p),
            short_ts(at)
        ),
        (Some(p), PeakTime::Unknown) => {
            format!("{}; when it was reached is not stored", fmt_value(p))
        }
    };
    let _ = writeln!(s, "| Peak value | {peak} |");
    if !a.sample_event_ids.is_empty() {
        let ids: Vec<String> = a.sample_event_ids.iter().map(|x| code(x)).collect();
        let _ = writeln!(
            s,
            "| Sample event ids (last notification) | {} |",
            ids.join(", ")
        );
    }
    for (at, hints) in &a.hints {
        let _ = writeln!(
            s,
            "| Root-cause hints ({}) | {} |",
            short_ts(*at),
            cell(&crate::explain::hints_text(hints))
        );
    }
    if let Some(r) = rule {
        write_rule_rows(s, r);
    }
    write_crisis_rows(s, i, crises, grace_ms);

    let _ = writeln!(s, "\n### Timeline\n");
    let _ = writeln!(
        s,
        "{}\n",
        match a.timeline {
            TimelineSource::Ledger =>
                "Every transition, from the outbox's ledger of applied transitions. A value \
                 shows where a notification sent at that moment carried it; a resolve for \
                 lack of data carries none.",
            TimelineSource::Notifications =>
                "Rebuilt from the notifications (the ledger entries were pruned after \
                 `incidents.retention`): pending transitions, and escalations before the \
                 incident opened, do not show.",
        }
    );
    write_timeline(s, i, end_ms, "-", "(last event time in the outbox)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::State;
    use crate::backtest::report::{Incident, Step};
    use crate::backtest::review::outbox::Sent;
    use crate::config::{Condition, Severity};
    use crate::incident::model::Reason;
    use crate::incident::outbox::Status;

    /// An incident whose every text comes from `text` and every time from `at`.
    fn incident(text: &str, at: [i64; 4]) -> OutboxIncident {
        let [started, fired, resolved, step] = at;
        let group = vec![("product".to_string(), text.to_string())];
        let alert = Incident {
            rule: format!("rule {text}"),
            group: group.clone(),
            dedup_key: format!("rule/product={text}/1"),
            started_at: started,
            fired_at: fired,
            resolved_at: None,
            severity: Severity::Warning,
            peak: None,
            timeline: vec![Step {
                at: step,
                state: State::Firing,
                severity: Severity::Warning,
                value: Some(1.0),
                threshold: 0.5,
                hints: Vec::new(),
            }],
            window_ms: 60_000,
            condition: Condition::Above,
        };
        OutboxIncident {
            key: format!("route/product={text}/1"),
            route: format!("route {text}"),
            labels: group,
            started_at: started,
            severity: Severity::Warning,
            resolved_at: Some(resolved),
            open: false,
            notifications: vec![Sent {
                seq: 1,
                at: fired,
                since: None,
                action: Action::Open,
                reason: Reason::Opened,
                severity: Severity::Warning,
                change: format!("opened: {text}"),
                summary: format!("summary {text}"),
                deliveries: vec![(format!("hook {text}"), Status::Delivered)],
                sent_as_open: vec![format!("other {text}")],
            }],
            alerts: vec![AlertReview {
                incident: alert,
                description: format!("description {text}"),
                peak: Some(1.0),
                peak_at: PeakTime::Unknown,
                timeline: TimelineSource::Ledger,
                sample_event_ids: vec![format!("id {text}"), "plain".to_string()],
                hints: Vec::new(),
            }],
        }
    }

    fn crisis(text: &str, start_ms: i64, end_ms: i64) -> Crisis {
        Crisis {
            name: format!("crisis {text}"),
            kind: format!("kind {text}"),
            slice: vec![("product".to_string(), text.to_string())],
            start_ms,
            end_ms,
        }
    }

    /// The `|` of a table line that separate cells (not escaped ones).
    fn separators(line: &str) -> usize {
        let b = line.as_bytes();
        (0..b.len())
            .filter(|&k| b[k] == b'|' && (k == 0 || b[k - 1] != b'\\'))
            .count()
    }

    #[test]
    fn data_with_pipes_and_line_breaks_stays_in_its_cell() {
        let text = "a|b\nINJECTED|c\r\nd";
        let i = incident(text, [1_000, 61_000, 121_000, 61_000]);
        let evidence = Evidence {
            events: 3,
            signal: 2,
            by_type: vec![(format!("type {text}"), 3)],
            sample_ids: vec![format!("e {text}")],
            top: vec![(format!("attr {text}"), vec![(format!("value {text}"), 2)])],
            ..Evidence::default()
        };
        let md = render(
            &i,
            &Config::default(),
            Some(&[evidence]),
            &[crisis(text, 0, 200_000)],
            None,
            121_000,
            Path::new("outbox.sqlite"),
        );
        // Every table keeps its header's number of cells on every row, and
        // no value spills onto a line of its own.
        let mut cells = None;
        let mut rows = 0;
        for line in md.lines() {
            assert!(!line.starts_with("INJECTED"), "a line break escaped:\n{md}");
            if !line.starts_with('|') {
                cells = None;
                continue;
            }
            let n = separators(line);
            assert_eq!(*cells.get_or_insert(n), n, "{line:?} in\n{md}");
            rows += 1;
        }
        assert!(rows > 20, "{md}");
        for want in [
            // A slice's value shows its line breaks escaped (`group_label`).
            "| Labels | product=a\\|b\\u{a}INJECTED\\|c\\u{d}\\u{a}d |",
            "| Sample event ids (last notification) | `id a\\|b INJECTED\\|c  d`, `plain` |",
            "| Sample signal event ids | `e a\\|b INJECTED\\|c  d` |",
            "| Known crisis | crisis a\\|b INJECTED\\|c  d (kind a\\|b INJECTED\\|c  d), ",
            "| attr a\\|b INJECTED\\|c  d | value a\\|b INJECTED\\|c  d | 2 | 100.0 % |",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
    }

    #[test]
    fn corrupt_outbox_times_do_not_overflow() {
        // Times at both ends of i64 (a corrupt outbox): durations between
        // them saturate instead of overflowing (a panic in debug builds).
        let i = incident("p", [i64::MIN, i64::MAX, i64::MAX, i64::MIN]);
        let md = render(
            &i,
            &Config::default(),
            None,
            &[crisis("p", i64::MIN, i64::MAX)],
            None,
            i64::MAX,
            Path::new("outbox.sqlite"),
        );
        assert!(md.contains("| Duration | "), "{md}");
        assert!(md.contains("| Known crisis | crisis p"), "{md}");
        let mut open = incident("p", [i64::MAX, i64::MIN, 0, i64::MIN]);
        open.resolved_at = None;
        open.open = true;
        let md = render(
            &open,
            &Config::default(),
            None,
            &[],
            None,
            i64::MAX,
            Path::new("outbox.sqlite"),
        );
        assert!(md.contains("| Duration (firing) | "), "{md}");
    }
}
