//! The Markdown of an outbox incident's review: the incident, its
//! notifications, and per alert its facts, timeline and events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::backtest::labels::Crisis;
use crate::backtest::report::{fmt_dur, fmt_value, group_label, short_ts};
use crate::backtest::review::{write_crisis_rows, write_events, write_rule_rows, Evidence};
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
        i.route,
        group_label(&i.labels)
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
    let _ = writeln!(s, "| Incident | `{}` |", i.key);
    let _ = writeln!(s, "| Route | `{}` |", i.route);
    let _ = writeln!(s, "| Labels | {} |", group_label(&i.labels));
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
        fmt_dur(i.resolved_at.unwrap_or(end_ms) - i.started_at),
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
    let _ = writeln!(s, "| Alerts | {}: {} |", names.len(), names.join(", "));
    let _ = writeln!(s, "| Notifications | {} |", notification_counts(i));
    let _ = writeln!(s, "| Receivers | {} |", receiver_counts(i));
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

/// Text made safe for one Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn notification_counts(i: &OutboxIncident) -> String {
    if i.notifications.is_empty() {
        return "none yet".to_string();
    }
    let count = |a: Action| i.notifications.iter().filter(|n| n.action == a).count();
    format!(
        "{} stored: open {}, update {}, resolve {}",
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
            "Notifications {} are no longer in the outbox (pruned after `incidents.retention`).\n",
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
            rec.join(", "),
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
        i.rule,
        group_label(&i.group)
    );
    let _ = writeln!(s, "| | |\n| --- | --- |");
    let desc = rule
        .map(|r| r.description.as_str())
        .filter(|d| !d.is_empty())
        .or_else(|| Some(a.description.as_str()).filter(|d| !d.is_empty()));
    let _ = writeln!(
        s,
        "| Rule | `{}`{} |",
        i.rule,
        desc.map(|d| format!(" — {d}")).unwrap_or_default()
    );
    let _ = writeln!(s, "| Slice | {} |", group_label(&i.group));
    let _ = writeln!(s, "| Dedup key | `{}` |", i.dedup_key);
    let _ = writeln!(s, "| Highest severity | {} |", i.severity);
    let _ = writeln!(s, "| Breach began | {} |", short_ts(i.started_at));
    let _ = writeln!(
        s,
        "| Fired | {} ({} after the breach began) |",
        short_ts(i.fired_at),
        fmt_dur(i.fired_at - i.started_at)
    );
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
        let ids: Vec<String> = a
            .sample_event_ids
            .iter()
            .map(|x| format!("`{x}`"))
            .collect();
        let _ = writeln!(
            s,
            "| Sample event ids (last notification) | {} |",
            ids.join(", ")
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
            t.value.map_or_else(|| "-".to_string(), fmt_value),
            if t.threshold.is_finite() {
                fmt_value(t.threshold)
            } else {
                "-".to_string()
            }
        );
    }
    if i.resolved_at.is_none() {
        let _ = writeln!(
            s,
            "| {} | (last event time in the outbox) | | | |",
            short_ts(end_ms)
        );
    }
}
