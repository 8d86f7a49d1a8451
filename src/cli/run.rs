//! `crisiswatch run`: the live service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::run::RunOptions;

use super::args::{runtime, ConfigArg};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
    /// Run the live service: consume [sources.kafka], alert, serve /metrics.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Debugging: append `topic,partition,offset` of every applied message to this file.
        #[arg(long)]
        applied_log: Option<PathBuf>,
    },
}

impl Commands {
    /// Runs until SIGINT or SIGTERM, then prints what was done.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Commands::Run {
            config,
            applied_log,
        } = self;
        let cfg = config.load()?;
        let config = config.config;
        let config_text = std::fs::read_to_string(&config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let opts = RunOptions {
            applied_log,
            metrics: None,
            config_path: Some(config.clone()),
            config_text,
        };
        let rt = runtime()?;
        let result = rt.block_on(async {
            let shutdown = crate::signal::shutdown_watch();
            crate::run::run(&cfg, opts, shutdown).await
        });
        // `run` bounds the shutdown; a client still blocked on a dead broker must not hold the exit.
        rt.shutdown_background();
        let summary = result?;
        // Scaled out, an instance's shard owners write transitions and its
        // incident owners (maybe none) take them: "0 transitions" alone
        // read as an instance that judged nothing.
        let transitions = match summary.written {
            None => format!("{} transitions in this run", summary.transitions),
            Some(w) => format!(
                "{w} transitions written by this instance's shard owners and {} taken by its incident owners in this run",
                summary.transitions
            ),
        };
        crate::say!(
            "Stopped: {} events applied, {} invalid, {} late (with durable state, since it began: checkpoints carry the counts over restarts), {transitions}.",
            summary.stats.applied,
            summary.stats.invalid_total(),
            summary.stats.late,
        );
        Ok(ExitCode::SUCCESS)
    }
}
