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
//!
//! With `[sources.kafka.scale_out]` the state is in the group's changelog
//! topics: `inspect` reads every partition's latest checkpoint from the
//! broker (`run::scaled::inspect`); `reset` is refused with what to do
//! instead (a new group).

use anyhow::Context;
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
        if scaled(&cfg) {
            return match command {
                StateCommand::Inspect { json } => inspect_scaled(&cfg, json, &mut io::stdout()),
                StateCommand::Reset { .. } => {
                    crate::say!(
                        "With [sources.kafka.scale_out] the engine state lives in the changelog topics of the \
                         group, shared by every instance: it is not reset from one of them. To start empty, stop \
                         every instance and start them with a new group_id (or scale_out.topic_prefix)."
                    );
                    Ok(ExitCode::from(2))
                }
            };
        }
        match command {
            StateCommand::Inspect { json } => inspect(&cfg, &dir, json, &mut io::stdout()),
            StateCommand::Reset { yes } => {
                reset(&dir, yes, &mut io::stdin().lock(), &mut io::stdout())
            }
        }
    }
}

/// Whether `cfg` runs a scaled group (state in changelog topics).
fn scaled(cfg: &crate::config::Config) -> bool {
    cfg.sources
        .kafka
        .as_ref()
        .is_some_and(|k| k.scale_out.is_some())
}

/// `inspect` of a scaled group: every partition's latest checkpoint, read
/// from the changelog topics.
fn inspect_scaled(
    cfg: &crate::config::Config,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let doc = crate::run::scaled::inspect::inspect(cfg)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    writeln!(out, "changelog      {}", s(&doc["shards_changelog"]))?;
    writeln!(out, "shard partitions:")?;
    for p in doc["shard_partitions"].as_array().into_iter().flatten() {
        if p.get("next_offset").is_none() {
            writeln!(out, "  {}  no checkpoint", p["partition"])?;
            continue;
        }
        let groups: u64 = p["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["groups"].as_u64())
            .sum();
        writeln!(
            out,
            "  {}  next offset {}  clock {}  released below {}  held {}  groups {}  alerts {}  ({} bytes)",
            p["partition"],
            p["next_offset"],
            s(&p["engine_clock"]),
            s(&p["released_below"]),
            p["held_events"],
            groups,
            p["alert_instances"].as_array().map_or(0, Vec::len),
            p["checkpoint_bytes"]
        )?;
        for a in p["alert_instances"].as_array().into_iter().flatten() {
            writeln!(out, "      {}", s(a))?;
        }
    }
    writeln!(out, "changelog      {}", s(&doc["incidents_changelog"]))?;
    writeln!(out, "incident partitions:")?;
    for p in doc["incident_partitions"].as_array().into_iter().flatten() {
        if p.get("next_offset").is_none() {
            writeln!(out, "  {}  no checkpoint", p["partition"])?;
            continue;
        }
        writeln!(
            out,
            "  {}  next offset {}  released below {}  held {}  open incidents {}",
            p["partition"],
            p["next_offset"],
            s(&p["released_below"]),
            p["held_transitions"],
            p["open_incidents"].as_array().map_or(0, Vec::len)
        )?;
        for i in p["open_incidents"].as_array().into_iter().flatten() {
            writeln!(out, "      {}", s(i))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(
    cfg: &crate::config::Config,
    dir: &Path,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let file = dir.join(crate::state::FILE_NAME);
    if !file.exists() {
        // Looking must not create a store (a mistyped --dir would then
        // hold an empty one).
        writeln!(
            out,
            "No checkpoint: {} does not exist (check --dir, state.dir or incidents.data_dir).",
            file.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    // A damaged store: say what to do about it, not only SQLite's words.
    let damaged = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        // Only for a damaged file: a permission or a busy database is not
        // one, and the advice would delete a healthy checkpoint.
        let broken = ["not a database", "malformed", "checksum", "corrupt"]
            .iter()
            .any(|w| text.contains(w));
        if broken && !text.contains("state reset") {
            anyhow::anyhow!(
                "{text}\n(the store is damaged; `run` consumes nothing while it cannot load it. \
                 `crisiswatch state --config <file> reset` removes it, and the service starts empty)"
            )
        } else {
            anyhow::anyhow!("{text}")
        }
    };
    let store = StateStore::open(dir).map_err(|e| damaged(&e))?;
    let Some(cp) = store.load().map_err(|e| damaged(&e))? else {
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
            "rules_retuned": restored.rules_retuned,
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
    if !restored.rules_retuned.is_empty() {
        writeln!(
            out,
            "restored with this configuration's thresholds, clear, for or keep_firing_for: {}",
            restored.rules_retuned.join(", ")
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
    let file = dir.join(crate::state::FILE_NAME);
    if !file.exists() {
        // Nothing to delete, and nothing is created (a mistyped --dir would
        // then hold an empty store, and `inspect` no longer say so).
        writeln!(
            out,
            "No checkpoint to delete: {} does not exist (check --dir, state.dir or incidents.data_dir).",
            file.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        write!(
            out,
            "Delete the checkpoint in {}? The next start forgets every window and alert. [y/N] ",
            file.display()
        )?;
        out.flush()?;
        let mut answer = String::new();
        input.read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(out, "Kept.")?;
            return Ok(ExitCode::from(1));
        }
    }
    match StateStore::open(dir) {
        Ok(mut store) => {
            if store.reset()? {
                writeln!(out, "Checkpoint deleted.")?;
            } else {
                writeln!(out, "No checkpoint to delete.")?;
            }
        }
        Err(e) => {
            // Not a store at all (another file, damaged beyond opening): the
            // reset the README names as the way out removes it, so the next
            // start creates a new one.
            for suffix in ["", "-wal", "-shm"] {
                let p = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
            writeln!(
                out,
                "Checkpoint deleted: {} could not be opened as a store ({e}); its file was removed.",
                file.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
