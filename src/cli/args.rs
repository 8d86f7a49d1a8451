//! What several command families share: the configuration file argument, the
//! configuration loading and the async runtime of the long-running commands.

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
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        load(&self.config)
    }
}

/// Loads and validates a configuration file; every error in one message.
pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The async runtime of the long-running commands (2 workers: the work is one
/// engine task; the Kafka consumer has its own thread).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A watch that turns true on SIGINT or SIGTERM (spawned on the current runtime).
pub(crate) fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
