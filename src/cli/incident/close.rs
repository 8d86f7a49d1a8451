//! `crisiswatch incident list|close|ack|label`: the open incidents, an
//! operator's close (queued in the outbox database, applied by the running
//! service — see `crate::incident::outbox::CloseRequest`), and responders'
//! feedback (`crate::incident::outbox::feedback`).
//!
//! With `sources.kafka.scale_out`, another instance of the group may hold
//! the incident: the commands also read the other instances' open
//! incidents that this instance's service keeps in its outbox (from the
//! controls topic, `src/run/scaled/controls.rs`), accept a close or an
//! acknowledgement for one of them, and list them. The request is written
//! to this instance's outbox as always; its running service sends it to the
//! holder through the controls topic.

use crate::backtest::report::printable;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::event::format_ts;
use crate::http::incidents::{incident_json, request_json, with_feedback};
use crate::incident::delivery::Clock;
use crate::incident::model::labels_text;
use crate::incident::outbox::feedback::{fold, Label, Recorded};
use crate::incident::outbox::Outbox;
use crate::incident::peers::Peers;

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
        wait: Option<crate::config::Dur>,
    },
    /// Acknowledge an open incident (recorded with it; shown in `list`, the
    /// API and the console).
    Ack {
        /// The incident's key.
        key: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// A note for the other responders.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Label an incident, open or past: `useful` (a real crisis) or `noise`
    /// (a false page). `tune --labels-from` learns from the labels.
    Label {
        /// The incident's key.
        key: String,
        /// `useful` or `noise`.
        #[arg(value_parser = ["useful", "noise"])]
        label: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// Someone is always named: the operator, else the login, else the tool
/// (as `silence add`; the admin API names itself "admin API").
fn who(by: Option<String>) -> String {
    by.filter(|b| !b.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "crisiswatch CLI".into())
}

fn feedback(
    ob: &Outbox,
    peers: Option<&Peers>,
    key: &str,
    label: Option<Label>,
    note: &str,
    by: String,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let what = label.map_or("acknowledged", Label::as_str);
    match ob.record_shared_feedback(peers, key, label, note, &by, Clock::new().now_ms())? {
        Recorded::Entry(id) => {
            writeln!(out, "{key}: {what} by {by} (#{id}).")?;
            if let Some((instance, _)) = peers.and_then(|p| p.holder(key)) {
                writeln!(out, "Instance {instance} holds it: this instance's running service sends the entry there through the controls topic.")?;
            }
            if label.is_none() {
                writeln!(out, "Receivers that take acknowledgements (PagerDuty; a generic webhook with `acknowledge = true`) hear it from the running service within a second, or at its next start.")?;
            }
            Ok(true)
        }
        Recorded::Unknown if peers.is_some() => {
            writeln!(
                out,
                "No incident {key:?} in this instance's outbox, and no running instance of the group holds it (as this instance last read the controls topic; see `crisiswatch incident list`)."
            )?;
            Ok(false)
        }
        Recorded::Unknown => {
            writeln!(
                out,
                "No incident {key:?} in the outbox (see `crisiswatch incident list`)."
            )?;
            Ok(false)
        }
        Recorded::NotOpen => {
            writeln!(out, "Incident {key:?} is no longer open: nothing to acknowledge (a label still can be given).")?;
            Ok(false)
        }
    }
}

/// Runs an `incident` command (`scaled`: the configuration has
/// `sources.kafka.scale_out`).
pub fn incident(
    data_dir: &Path,
    scaled: bool,
    cmd: IncidentCommand,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let ob = Outbox::open(data_dir)?;
    let peers = if scaled {
        Some(Peers::stored(&ob)?)
    } else {
        None
    };
    let peers = peers.as_ref();
    match cmd {
        IncidentCommand::List { json } => {
            let incidents = ob.load_incidents()?;
            let requests = ob.pending_close_requests()?;
            let fb = fold(&ob.feedback()?);
            if json {
                for i in &incidents {
                    writeln!(out, "{}", with_feedback(incident_json(i), fb.get(&i.key)))?;
                }
                for r in &requests {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "close_request": request_json(r) })
                    )?;
                }
                for h in peers.map(Peers::elsewhere).unwrap_or_default() {
                    writeln!(out, "{}", serde_json::json!({ "elsewhere": h }))?;
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
                    printable(&i.key),
                    i.route,
                    printable(&labels_text(&i.labels)),
                    format_ts(i.started_at),
                    if i.opened { "open" } else { "forming" },
                    if active.is_empty() {
                        "none".to_string()
                    } else {
                        active.join(", ")
                    },
                )?;
                if let Some(f) = fb.get(&i.key) {
                    if let Some(a) = &f.ack {
                        writeln!(
                            out,
                            "    acknowledged by {} at {}",
                            a.by,
                            format_ts(a.at_ms)
                        )?;
                    }
                    if let Some(l) = &f.label {
                        let label = l.label.map_or("?", Label::as_str);
                        writeln!(
                            out,
                            "    labelled {label} by {} at {}",
                            l.by,
                            format_ts(l.at_ms)
                        )?;
                    }
                }
            }
            for r in &requests {
                writeln!(
                    out,
                    "close requested #{} for {} by {} at {}: {}",
                    r.id,
                    printable(&r.incident),
                    printable(&r.requested_by),
                    format_ts(r.requested_ms),
                    printable(&r.reason)
                )?;
            }
            for h in peers.map(Peers::elsewhere).unwrap_or_default() {
                for i in &h.incidents {
                    writeln!(
                        out,
                        "{}\n    route {} on {}, since {}, held by instance {} ({}), as of {}",
                        printable(&i.key),
                        i.route,
                        printable(&labels_text(&i.labels)),
                        format_ts(i.started_at),
                        h.instance,
                        h.listen,
                        format_ts(h.at_ms),
                    )?;
                }
            }
            Ok(true)
        }
        IncidentCommand::Ack { key, by, note } => {
            feedback(&ob, peers, &key, None, &note, who(by), out)
        }
        IncidentCommand::Label {
            key,
            label,
            by,
            note,
        } => feedback(&ob, peers, &key, Label::parse(&label), &note, who(by), out),
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
            if !ob.closable(peers, &key)? {
                if peers.is_some() {
                    writeln!(out, "No open incident {key:?} on this instance, and no running instance of the group holds it (as this instance last read the controls topic; see `crisiswatch incident list`).")?;
                } else {
                    writeln!(
                        out,
                        "No open incident {key:?} (see `crisiswatch incident list`)."
                    )?;
                }
                return Ok(false);
            }
            let by = who(by);
            let id = ob.request_close(&key, &reason, &by, Clock::new().now_ms())?;
            let Some(wait) = wait else {
                match peers.and_then(|p| p.holder(&key)) {
                    Some((instance, _)) => writeln!(out, "Close of {key} requested (#{id}): instance {instance} holds it; this instance's running service sends the request there through the controls topic, and the holder sends the resolve.")?,
                    None => writeln!(out, "Close of {key} requested (#{id}): the running service sends its resolve within a second, or at its next start.")?,
                }
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
