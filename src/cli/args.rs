//! What several command families share: the configuration file argument, the
//! configuration loading and the async runtime of the long-running commands
//! (their signals: [`crate::signal`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, ProcessEnv};

/// `--config FILE`, the argument of every command that reads a configuration.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConfigArg {
    /// Configuration file.
    #[arg(long)]
    pub(crate) config: PathBuf,
}

impl ConfigArg {
    /// Loads and validates the configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        load(&self.config)
    }
}

/// Loads and validates a configuration file; every error in one message.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The async runtime of the long-running commands (2 workers: the work is one
/// engine task; the Kafka consumer has its own thread).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
