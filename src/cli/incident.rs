//! `crisiswatch outbox` and `silence`: the operator's commands on the incident stage:
//!
//! * `crisiswatch outbox list [--status dead] [--receiver R] [--json]` — see
//!   notifications (dead letters by default) with their attempts and last error;
//! * `crisiswatch outbox retry [ID...] [--receiver R] [--include-failed]` —
//!   queue dead letters again (a running service picks them up within seconds);
//! * `crisiswatch outbox deliver [--timeout 60s]` — deliver what is queued and exit;
//! * `crisiswatch silence add MATCHER... --for 2h [--comment C] [--author A]`,
//!   `silence list [--all]`, `silence expire ID`.
//!
//! * `crisiswatch incident list [--json]`, `incident close KEY --reason R
//!   [--by U] [--wait 10s]` — the open incidents; close one (see `close`).
//!
//! They work on the outbox database of `incidents.data_dir` (or `--data-dir`),
//! also while the service runs (SQLite WAL).

use crate::backtest::report::printable;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::config::Config;
use crate::event::format_ts;
use crate::incident::delivery::Clock;
use crate::incident::outbox::{Outbox, OutboxError, Row, Status};
use crate::incident::silence::{Matcher, Silence, SilenceError};
use crate::incident::{IncidentError, IncidentManager, ManagerOptions};

use super::args::ConfigArg;

mod close;

#[derive(Subcommand, Debug)]
pub(crate) enum Commands {
    /// Incident outbox: list and retry dead-lettered notifications, or deliver what is queued.
    Outbox {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Open incidents: list them, acknowledge one, label it, or close one with a reason.
    Incident {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: close::IncidentCommand,
    },
    /// Silences: mute matching incidents for a while (add, list, expire).
    Silence {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: SilenceCommand,
    },
}

/// The outbox database the incident commands work on.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Outbox directory (default: incidents.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration and the outbox directory.
    fn open(&self) -> anyhow::Result<(Config, PathBuf)> {
        let cfg = self.config.load()?;
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&cfg.incidents.data_dir));
        Ok((cfg, dir))
    }
}

impl Commands {
    /// Exit 1 when the command ran but not everything is well.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let ok = match self {
            Commands::Outbox { store, command } => {
                let (cfg, dir) = store.open()?;
                existing_outbox(&dir)?;
                outbox(&cfg, &dir, command, &mut io::stdout())?
            }
            Commands::Incident { store, command } => {
                let (cfg, dir) = store.open()?;
                existing_outbox(&dir)?;
                let scaled = cfg
                    .sources
                    .kafka
                    .as_ref()
                    .is_some_and(|k| k.scale_out.is_some());
                close::incident(&dir, scaled, command, &mut io::stdout())?
            }
            Commands::Silence { store, command } => {
                let (_, dir) = store.open()?;
                // A silence may be set before the service first runs.
                if !matches!(command, SilenceCommand::Add { .. }) {
                    existing_outbox(&dir)?;
                }
                silence(&dir, command, &mut io::stdout())?
            }
        };
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// The outbox of `dir` must exist already: a command that only looks at it
/// (or works on what it holds) would otherwise create an empty one and
/// report "nothing" for a mistyped directory or the wrong working directory.
fn existing_outbox(dir: &Path) -> Result<(), CliError> {
    let file = dir.join(crate::incident::outbox::OUTBOX_FILE);
    if file.exists() {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "no outbox at {}: the file does not exist; give the service's data directory (--data-dir, or incidents.data_dir in the configuration; a relative one is taken from the working directory)",
        file.display()
    )))
}

/// Errors of the incident commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The outbox or the manager failed.
    #[error(transparent)]
    Incident(#[from] IncidentError),
    /// A silence was malformed.
    #[error(transparent)]
    Silence(#[from] SilenceError),
    /// Output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Another process delivers from this data directory.
    #[error(transparent)]
    Locked(#[from] crate::dir_lock::DirLockError),
}

impl From<OutboxError> for CliError {
    fn from(e: OutboxError) -> Self {
        CliError::Incident(e.into())
    }
}

/// `crisiswatch outbox ...`
#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// List notifications: dead letters by default.
    List {
        /// dead, failed, pending, delivered, muted, superseded or all.
        #[arg(long, default_value = "dead")]
        status: String,
        /// Only this receiver.
        #[arg(long)]
        receiver: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead-lettered notifications for delivery again (all, or the given ids).
    Retry {
        /// Notification ids (from `outbox list`); none: every dead letter.
        ids: Vec<i64>,
        /// Only this receiver.
        #[arg(long)]
        receiver: Option<String>,
        /// Also notifications a receiver refused (4xx).
        #[arg(long)]
        include_failed: bool,
    },
    /// Deliver every queued notification, then exit (exit code 1 if some remain).
    Deliver {
        /// Give up after this long (default: incidents.drain_timeout).
        #[arg(long)]
        timeout: Option<crate::config::Dur>,
    },
}

/// `crisiswatch silence ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SilenceCommand {
    /// Mute incidents whose alerts match every matcher (`rule=...`, `product!=...`).
    Add {
        /// Matchers: name=value or name!=value; `rule` or a group label.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. "2h".
        #[arg(long = "for", default_value = "2h")]
        duration: crate::config::Dur,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// List active silences (`--all`: also expired ones).
    List {
        /// Include expired silences.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence id.
        id: String,
    },
}

fn row_line(r: &Row) -> String {
    format!(
        "{:>6}  {:<10} {:<14} {:<7} {:>3}  {}  {}  {}",
        r.id,
        r.status.as_str(),
        r.receiver,
        r.action,
        r.attempts,
        format_ts(r.created_ms),
        printable(&r.incident),
        printable(r.last_error.as_deref().unwrap_or(""))
    )
}

fn row_json(r: &Row) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "status": r.status.as_str(),
        "receiver": r.receiver,
        "incident": r.incident,
        "seq": r.seq,
        "action": r.action,
        "attempts": r.attempts,
        "created_at": format_ts(r.created_ms),
        "last_error": r.last_error,
    })
}

/// Refuses `--receiver NAME` that names neither a configured receiver nor one
/// with notifications in the outbox (a receiver since removed from the
/// config): a typo would otherwise list or retry nothing, silently.
fn known_receiver(cfg: &Config, ob: &Outbox, receiver: Option<&str>) -> Result<(), CliError> {
    let Some(name) = receiver else {
        return Ok(());
    };
    if cfg.receivers.iter().any(|r| r.name == name) || !ob.list(None, Some(name), 1)?.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
    Err(CliError::Usage(format!(
        "--receiver {name:?}: no such receiver in the config or the outbox{} (receivers: {})",
        crate::config::did_you_mean(name, names.iter().copied()),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )))
}

/// Runs an `outbox` command; `Ok(false)` means "ran, but not everything is
/// well" (exit code 1).
fn outbox(
    cfg: &Config,
    data_dir: &Path,
    cmd: OutboxCommand,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    match cmd {
        OutboxCommand::List {
            status,
            receiver,
            limit,
            json,
        } => {
            let status = match status.as_str() {
                "all" => None,
                s => Some(Status::parse(s).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--status {s:?}: use dead, failed, pending, delivered, muted, superseded or all"
                    ))
                })?),
            };
            let ob = Outbox::open(data_dir)?;
            known_receiver(cfg, &ob, receiver.as_deref())?;
            let rows = ob.list(status, receiver.as_deref(), limit)?;
            // No header over nothing: the message below says there is none.
            if !json && !rows.is_empty() {
                writeln!(
                    out,
                    "{:>6}  {:<10} {:<14} {:<7} {:>3}  {:<24}  incident  last error",
                    "id", "status", "receiver", "action", "try", "queued at"
                )?;
            }
            for r in &rows {
                if json {
                    writeln!(out, "{}", row_json(r))?;
                } else {
                    writeln!(out, "{}", row_line(r))?;
                }
            }
            if rows.is_empty() {
                // On standard error: `--json` output stays one row per line.
                crate::say!(
                    "no {}notifications{} in {}",
                    status.map_or(String::new(), |s| format!("{} ", s.as_str())),
                    receiver
                        .as_deref()
                        .map(|r| format!(" for receiver {r}"))
                        .unwrap_or_default(),
                    ob.path().display()
                );
            }
            if rows.len() >= limit {
                // On standard error: `--json` output stays one row per line.
                let all = ob.count(status, receiver.as_deref())?;
                if all > rows.len() as u64 {
                    crate::say!(
                        "{} of {all} notifications shown, newest first: --limit {all} shows them all",
                        rows.len()
                    );
                }
            }
            Ok(true)
        }
        OutboxCommand::Retry {
            ids,
            receiver,
            include_failed,
        } => {
            let ob = Outbox::open(data_dir)?;
            known_receiver(cfg, &ob, receiver.as_deref())?;
            let now = Clock::new().now_ms();
            let rep = ob.retry(&ids, receiver.as_deref(), include_failed, now)?;
            writeln!(
                out,
                "Queued {} notification(s) again{}.",
                rep.requeued.len(),
                if rep.requeued.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        rep.requeued
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )?;
            if !rep.superseded.is_empty() {
                writeln!(
                    out,
                    "Not re-sent, superseded by a later notification of the same incident: {}.",
                    rep.superseded
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
            if !rep.unknown.is_empty() {
                writeln!(out, "No notification with id: {:?}.", rep.unknown)?;
            }
            let missing: Vec<&i64> = ids
                .iter()
                .filter(|i| {
                    !rep.requeued.contains(i)
                        && !rep.superseded.contains(i)
                        && !rep.unknown.contains(i)
                })
                .collect();
            if !missing.is_empty() {
                writeln!(
                    out,
                    "Not dead letters (left alone; `--include-failed` takes refused ones too): {missing:?}."
                )?;
            }
            Ok(rep.unknown.is_empty() && missing.is_empty())
        }
        OutboxCommand::Deliver { timeout } => {
            let timeout: Duration = timeout.map_or(cfg.incidents.drain_timeout.0, Into::into);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(IncidentError::Runtime)?;
            let report = rt.block_on(async {
                let registry = prometheus::Registry::new();
                let opts = ManagerOptions {
                    console: Some(Box::new(std::io::stdout())),
                    // It serves no console: only `server.external_url` is linked.
                    serves_console: false,
                    // An instance of a scaled group: its queued notifications
                    // are its incident partitions' owners' to send, in order.
                    hand_off_queued: cfg
                        .sources
                        .kafka
                        .as_ref()
                        .is_some_and(|k| k.scale_out.is_some()),
                };
                // One sender per outbox: a running service (or another
                // `deliver`) would send the same rows at the same time.
                let _lock = crate::dir_lock::DirLock::acquire(data_dir)?;
                if opts.hand_off_queued {
                    let now = chrono::Utc::now().timestamp_millis();
                    let handed = Outbox::open(data_dir)?.hand_off_all(now)?.total();
                    if handed > 0 {
                        writeln!(out, "{handed} queued notification(s) belong to the incident partitions of a scaled group (sources.kafka.scale_out): their owners send them, in order; not sent from here.")?;
                    }
                }
                let started = chrono::Utc::now().timestamp_millis();
                let m = IncidentManager::open(cfg, &registry, data_dir, opts)?;
                let sending = m.receivers();
                let report = m.shutdown(timeout).await;
                let sent = Outbox::open(data_dir)?.delivered_since(started)?;
                Ok::<_, CliError>((report, sending, sent))
            })?;
            let (report, sending, sent) = report;
            writeln!(out, "{sent} notification(s) delivered.")?;
            // Rows of a receiver this configuration does not send to (one
            // removed, or disabled by an empty `url`): never sent by this
            // command, and not "0 still queued".
            let others: Vec<(String, u64)> = Outbox::open(data_dir)?
                .pending_by_receiver()?
                .into_iter()
                .filter(|(r, _)| !sending.contains(r))
                .collect();
            if others.is_empty() {
                writeln!(out, "{} notification(s) still queued.", report.pending)?;
            } else {
                writeln!(
                    out,
                    "{} notification(s) still queued for the receivers this configuration sends to.",
                    report.pending
                )?;
            }
            if !others.is_empty() {
                let list: Vec<String> = others.iter().map(|(r, n)| format!("{r}: {n}")).collect();
                writeln!(
                    out,
                    "{} more queued for receivers this configuration does not send to (removed, or disabled by an empty url: is its variable set?), not sent: {}.",
                    others.iter().map(|(_, n)| n).sum::<u64>(),
                    list.join(", ")
                )?;
            }
            Ok(report.pending == 0 && others.is_empty())
        }
    }
}

/// Runs a `silence` command.
fn silence(data_dir: &Path, cmd: SilenceCommand, out: &mut dyn Write) -> Result<bool, CliError> {
    let ob = Outbox::open(data_dir)?;
    let now = Clock::new().now_ms();
    match cmd {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
            author,
        } => {
            let matchers = matchers
                .iter()
                .map(|m| Matcher::parse(m))
                .collect::<Result<Vec<_>, _>>()?;
            let ms = i64::try_from(Duration::from(duration).as_millis()).unwrap_or(i64::MAX);
            // Someone is always named: the operator, else the login, else the tool.
            let author = author
                .filter(|a| !a.trim().is_empty())
                .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
                .unwrap_or_else(|| "crisiswatch CLI".to_string());
            let s = Silence::new(matchers, now, ms, author, comment)?;
            ob.add_silence(&s)?;
            writeln!(out, "{}", s.id)?;
            Ok(true)
        }
        SilenceCommand::List { all } => {
            for s in ob.silences()? {
                if !all && !s.active(now) {
                    continue;
                }
                let state = if s.active(now) { "active" } else { "expired" };
                writeln!(
                    out,
                    "{}  {:<8} until {}  {}  by {:?}: {}",
                    s.id,
                    state,
                    format_ts(s.ends_at),
                    s.matchers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    s.created_by,
                    s.comment
                )?;
            }
            Ok(true)
        }
        SilenceCommand::Expire { id } => {
            if ob.expire_silence(&id, now)? {
                writeln!(out, "Silence {id} expired.")?;
                Ok(true)
            } else {
                writeln!(out, "No silence {id}.")?;
                Ok(false)
            }
        }
    }
}
