//! `crisiswatch incident list|close`: the open incidents, and an operator's
//! close (queued in the outbox database, applied by the running service —
//! see `crate::incident::outbox::CloseRequest`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::event::format_ts;
use crate::http::incidents::{incident_json, request_json};
use crate::incident::delivery::Clock;
use crate::incident::model::labels_text;
use crate::incident::outbox::Outbox;

use super::CliError;

/// `crisiswatch incident ...`
#[derive(Debug, Subcommand)]
pub(crate) enum IncidentCommand {
    /// List the open incidents (and queued close requests).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Close an open incident now: its receivers get a `resolve` (reason
    /// `closed`) with your reason. The running service applies it within a
    /// second; with no service running, at its next start.
    Close {
        /// The incident's key (`dedup_key`, from `incident list`).
        key: String,
        /// Why (sent to the responders in the resolve's summary).
        #[arg(long)]
        reason: String,
        /// Who closes it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Wait this long for the running service to apply it (exit 1 if it
        /// has not), e.g. "10s".
        #[arg(long)]
        wait: Option<humantime::Duration>,
    },
}

/// Runs an `incident` command.
pub fn incident(
    data_dir: &Path,
    cmd: IncidentCommand,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let ob = Outbox::open(data_dir)?;
    match cmd {
        IncidentCommand::List { json } => {
            let incidents = ob.load_incidents()?;
            let requests = ob.pending_close_requests()?;
            if json {
                for i in &incidents {
                    writeln!(out, "{}", incident_json(i))?;
                }
                for r in &requests {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "close_request": request_json(r) })
                    )?;
                }
                return Ok(true);
            }
            if incidents.is_empty() {
                writeln!(out, "No open incident.")?;
            }
            for i in &incidents {
                let active: Vec<&str> = i
                    .alerts
                    .iter()
                    .filter(|a| a.active)
                    .map(|a| a.rule.as_str())
                    .collect();
                writeln!(
                    out,
                    "{}\n    route {} on {}, since {}, {}, active: {}",
                    i.key,
                    i.route,
                    labels_text(&i.labels),
                    format_ts(i.started_at),
                    if i.opened { "open" } else { "forming" },
                    if active.is_empty() {
                        "none".to_string()
                    } else {
                        active.join(", ")
                    },
                )?;
            }
            for r in &requests {
                writeln!(
                    out,
                    "close requested #{} for {} by {} at {}: {}",
                    r.id,
                    r.incident,
                    r.requested_by,
                    format_ts(r.requested_ms),
                    r.reason
                )?;
            }
            Ok(true)
        }
        IncidentCommand::Close {
            key,
            reason,
            by,
            wait,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::Usage(
                    "--reason must say why (it is sent to the responders)".into(),
                ));
            }
            if !ob.load_incidents()?.iter().any(|i| i.key == key) {
                writeln!(
                    out,
                    "No open incident {key:?} (see `crisiswatch incident list`)."
                )?;
                return Ok(false);
            }
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into());
            let id = ob.request_close(&key, &reason, &by, Clock::new().now_ms())?;
            let Some(wait) = wait else {
                writeln!(out, "Close of {key} requested (#{id}): the running service sends its resolve within a second, or at its next start.")?;
                return Ok(true);
            };
            let deadline = Instant::now() + Duration::from(wait);
            loop {
                if let Some(r) = ob.close_request(id)? {
                    if let Some(outcome) = &r.outcome {
                        writeln!(out, "Close of {key} (#{id}): {outcome}.")?;
                        return Ok(outcome == "closed");
                    }
                }
                if Instant::now() >= deadline {
                    writeln!(out, "Close of {key} requested (#{id}) but not applied within {wait}: is the service running? It is applied at its next start.")?;
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
