//! What several command families share: the configuration file argument, the
//! `--now` wall clock of the history commands, the configuration loading and the
//! async runtime of the long-running commands (their signals: [`crate::signal`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, ProcessEnv};
use crate::event::parse_rfc3339_ms;

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

/// `--now TIME`, the wall clock of the future-skew check of every command that
/// reads history (`replay`, `backtest`, `tune`, `chart`, `review`).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct NowArg {
    /// Wall clock (RFC 3339) for the future-skew check: events more than
    /// engine.max_future_skew after it are invalid. Set it to make runs over
    /// future-dated data reproducible [default: the real wall clock: history is in the past].
    #[arg(long, value_name = "RFC3339")]
    pub(crate) now: Option<String>,
}

/// `--now` is not a time.
#[derive(Debug, thiserror::Error)]
#[error("--now {0:?} is not an RFC 3339 time")]
pub struct BadNow(String);

impl NowArg {
    /// The wall clock in ms: `--now`, else the real one (history is in the
    /// past, so an event ahead of today is a bad stamp that would otherwise
    /// move the clock and make everything after it late).
    pub fn ms(&self) -> Result<i64, BadNow> {
        match &self.now {
            None => Ok(chrono::Utc::now().timestamp_millis()),
            Some(s) => parse_rfc3339_ms(s).ok_or_else(|| BadNow(s.clone())),
        }
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

/// An output file of a command is also one of its inputs, or another of
/// its outputs.
#[derive(Debug, thiserror::Error)]
pub enum OverwritesInput {
    /// An output is an input.
    #[error("{output} is also this command's {role}: writing it would destroy what the command reads; choose another output file")]
    Input {
        /// The output, as given.
        output: String,
        /// Which input it is ("input", "configuration", "labels", …).
        role: &'static str,
    },
    /// Two outputs name one file.
    #[error("{output} is named for two of this command's outputs: one would overwrite the other; choose another file for one of them")]
    TwoOutputs {
        /// The second output naming the file, as given.
        output: String,
    },
}

/// Refuses, before anything is read or written, an output that is the same
/// file as an input (by device and inode, whatever path names it): a history
/// file named as `--output` would be truncated while it is read; and two
/// outputs that name one file (by inode when it exists, else by its
/// resolved directory and name), one of which would silently replace the
/// other. Outputs that do not exist yet are fine otherwise.
pub(crate) fn refuse_overwriting_inputs<'a>(
    inputs: impl IntoIterator<Item = (&'a Path, &'static str)> + Clone,
    outputs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), OverwritesInput> {
    let outputs: Vec<&Path> = outputs.into_iter().collect();
    for (i, out) in outputs.iter().enumerate() {
        for (input, role) in inputs.clone() {
            if same_file::is_same_file(out, input).unwrap_or(false) {
                return Err(OverwritesInput::Input {
                    output: out.display().to_string(),
                    role,
                });
            }
        }
        if outputs[..i].iter().any(|earlier| same_path(earlier, out)) {
            return Err(OverwritesInput::TwoOutputs {
                output: out.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Whether two paths name one file: the same inode when it exists, else the
/// same name in the same (resolved) directory.
fn same_path(a: &Path, b: &Path) -> bool {
    if same_file::is_same_file(a, b).unwrap_or(false) {
        return true;
    }
    fn resolved(p: &Path) -> Option<PathBuf> {
        let name = p.file_name()?;
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(name))
    }
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
