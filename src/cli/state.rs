//! `crisiswatch state inspect|reset`: the live service's durable engine state.
//!
//! * `crisiswatch state --config F inspect [--json]` — what the checkpoint in
//!   `state.dir` (default `incidents.data_dir`) holds: when it was written,
//!   its size, the live groups per rule, the alert instances, and each
//!   partition's resume offset and event time;
//! * `crisiswatch state --config F reset [--yes]` — deletes the checkpoint
//!   (asks first unless `--yes`): the next `run` starts empty from the
//!   consumer group's committed offsets.
//!
//! Both work while the service runs (SQLite WAL), though a reset then only
//! lasts until its next checkpoint.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::engine::{EngineView, ShardedEngine};
use crate::event::format_ts;
use crate::state::{EngineState, StateStore};

use super::args::ConfigArg;

#[derive(Subcommand, Debug)]
pub(crate) enum Commands {
    /// Durable engine state of `run`: inspect or reset the checkpoint.
    State {
        #[command(flatten)]
        config: ConfigArg,
        /// State directory (default: state.dir, else incidents.data_dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        command: StateCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum StateCommand {
    /// Show what the checkpoint holds (partitions, offsets, groups per rule, alert instances, size, age).
    Inspect {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete the checkpoint: the next start is empty, from the committed offsets.
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

impl Commands {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Commands::State {
            config,
            dir,
            command,
        } = self;
        let cfg = config.load()?;
        let dir = dir.unwrap_or_else(|| PathBuf::from(cfg.state.dir_or(&cfg.incidents.data_dir)));
        match command {
            StateCommand::Inspect { json } => inspect(&cfg, &dir, json, &mut io::stdout()),
            StateCommand::Reset { yes } => {
                reset(&dir, yes, &mut io::stdin().lock(), &mut io::stdout())
            }
        }
    }
}

fn inspect(
    cfg: &crate::config::Config,
    dir: &Path,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let store = StateStore::open(dir)?;
    let Some(cp) = store.load()? else {
        writeln!(out, "No checkpoint in {}.", store.path().display())?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut engine = ShardedEngine::new(cfg, 1, cfg.engine.shards)?;
    let restored = match &cp.engine {
        EngineState::Rows(rows) => engine.restore_stored(rows)?,
        EngineState::Whole(bytes) => engine.restore(bytes)?,
    };
    let groups = engine.engines()[0].groups_per_rule();
    let alerts = engine.active_alert_keys();
    let age_s = (chrono::Utc::now().timestamp_millis() - cp.written_ms) / 1000;
    if json {
        let doc = serde_json::json!({
            "store": store.path().display().to_string(),
            "format": crate::state::FORMAT,
            "written_at": format_ts(cp.written_ms),
            "age_seconds": age_s,
            "engine_bytes": cp.engine_bytes,
            "engine_clock": engine.clock().map(format_ts),
            "released_below": cp.released_below.map(format_ts),
            "groups": groups.iter().map(|(r, n)| serde_json::json!({"rule": r, "groups": n})).collect::<Vec<_>>(),
            "rules_not_restored": restored.rules_dropped,
            "alert_instances": alerts,
            "partitions": cp.partitions,
        });
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "checkpoint     {}", store.path().display())?;
    writeln!(
        out,
        "written        {} ({age_s} s ago), format {}, {} bytes",
        format_ts(cp.written_ms),
        crate::state::FORMAT,
        cp.engine_bytes
    )?;
    if let Some(c) = engine.clock() {
        writeln!(out, "engine clock   {}", format_ts(c))?;
    }
    writeln!(out, "groups per rule:")?;
    for (r, n) in &groups {
        writeln!(out, "  {r:<28}{n}")?;
    }
    if !restored.rules_dropped.is_empty() {
        writeln!(
            out,
            "not restorable with this configuration (changed or removed): {}",
            restored.rules_dropped.join(", ")
        )?;
    }
    writeln!(out, "alert instances ({}):", alerts.len())?;
    for k in &alerts {
        writeln!(out, "  {k}")?;
    }
    writeln!(out, "partitions:")?;
    for p in &cp.partitions {
        writeln!(
            out,
            "  {}/{}  resume {}  next {}  pending {}  event time {}",
            p.topic,
            p.partition,
            p.resume,
            p.next,
            p.pending.len(),
            p.max_ts.map_or_else(|| "-".to_string(), format_ts)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(
    dir: &Path,
    yes: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut store = StateStore::open(dir)?;
    if !yes {
        write!(
            out,
            "Delete the checkpoint in {}? The next start forgets every window and alert. [y/N] ",
            store.path().display()
        )?;
        out.flush()?;
        let mut answer = String::new();
        input.read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(out, "Kept.")?;
            return Ok(ExitCode::from(1));
        }
    }
    if store.reset()? {
        writeln!(out, "Checkpoint deleted.")?;
    } else {
        writeln!(out, "No checkpoint to delete.")?;
    }
    Ok(ExitCode::SUCCESS)
}
