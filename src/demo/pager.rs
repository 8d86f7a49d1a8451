//! What the demo prints about incidents: each notification as the pager
//! gets it — open with every alert's evidence and root-cause hints,
//! escalations and joins, progress updates, resolve — as one block per
//! incident notification, read back from the outbox after each step (the
//! same notifications the receivers get).

use std::io::Write;
use std::time::Duration;

use crate::event::format_ts;
use crate::explain::hints_text;
use crate::incident::model::{fmt_value, Notification};
use crate::incident::outbox::{Outbox, OutboxError};

/// Prints the notifications written since the last call.
#[derive(Debug, Default)]
pub(crate) struct Pager {
    cursor: i64,
}

impl Pager {
    /// A pager that prints what comes after row `id` (an outbox that
    /// holds earlier runs' notifications).
    pub(crate) fn after(id: i64) -> Self {
        Pager { cursor: id }
    }

    /// Prints every notification stored since the last call.
    pub(crate) fn print_new(
        &mut self,
        ob: &Outbox,
        out: &mut dyn Write,
    ) -> Result<(), OutboxError> {
        let (last, notes) = ob.notifications_after(self.cursor)?;
        self.cursor = last;
        for n in &notes {
            // A write error to the demo's output is not an outbox error: stop printing.
            if block(n, out).is_err() {
                break;
            }
        }
        Ok(())
    }
}

fn short(ms: i64) -> String {
    let s = format_ts(ms);
    s.get(..16).map_or(s.clone(), |p| p.replace('T', " "))
}

fn block(n: &Notification, out: &mut dyn Write) -> std::io::Result<()> {
    let reason = serde_json::to_value(n.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let head = match n.action.as_str() {
        "open" => "OPEN",
        "resolve" => "RESOLVE",
        "acknowledge" => "ACK",
        _ if reason == "progress" => "PROGRESS",
        _ if reason == "escalated" => "ESCALATE",
        _ => "UPDATE",
    };
    writeln!(
        out,
        "[{}] {head:<8} {:<8} incident {}",
        short(n.at),
        n.severity.as_str(),
        n.dedup_key
    )?;
    writeln!(out, "    {}", n.summary)?;
    if head == "ACK" {
        return writeln!(out);
    }
    if n.action.as_str() == "resolve" {
        writeln!(
            out,
            "    lasted {} ({reason})",
            humantime::format_duration(Duration::from_secs((n.duration_ms() / 60_000 * 60) as u64))
        )?;
        return writeln!(out);
    }
    for a in n.alerts.iter().filter(|a| a.active) {
        let cond = match a.condition {
            crate::config::Condition::Above => ">",
            crate::config::Condition::Below => "<",
        };
        writeln!(
            out,
            "    {:<8} {:<20} {:<34} value {:>7} (threshold {cond} {}, peak {}), since {}",
            a.severity.as_str(),
            a.rule,
            a.group_text(),
            fmt_value(a.value),
            fmt_value(Some(a.threshold)),
            fmt_value(a.peak),
            short(a.started_at)
        )?;
        if !a.hints.is_empty() && head != "PROGRESS" {
            writeln!(out, "             hints: {}", hints_text(&a.hints))?;
        }
    }
    writeln!(out)
}
