//! `crisiswatch check`: validate a configuration file.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use crate::config::{Config, LoadError, ProcessEnv};

use super::args::ConfigArg;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
    /// Validate a configuration file and print every error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

impl Commands {
    /// Exit 0 when valid, 1 with every error listed, 2 when the file cannot be read.
    pub fn run(self) -> ExitCode {
        let Commands::Check { config } = self;
        let path = config.config.as_path();
        match Config::load(path, &ProcessEnv) {
            Ok(cfg) => {
                // What this machine lacks is a warning, not an error: the
                // file is valid, and may be checked where its secrets are
                // not (a CI job); `run` refuses to start over these.
                for m in unavailable(&cfg) {
                    crate::say!("warning: {m} (on this machine `run` would refuse to start)");
                }
                for d in degraded(&cfg) {
                    crate::say!("warning: {d}");
                }
                for a in crate::config::advice(&cfg) {
                    crate::say!("warning: {a}");
                }
                if cfg.rules.is_empty() {
                    crate::say!(
                        "warning: {} has no [[rules]]: nothing is watched and nothing can page",
                        path.display()
                    );
                }
                let color = io::stdout().is_terminal();
                let ok = if color { "\x1b[32mOK\x1b[0m" } else { "OK" };
                let n = |k: usize, one: &str, many: &str| {
                    format!("{k} {}", if k == 1 { one } else { many })
                };
                println!(
                    "{ok}: {} is valid ({}, {})",
                    path.display(),
                    n(cfg.rules.len(), "rule", "rules"),
                    n(cfg.receivers.len(), "receiver", "receivers")
                );
                ExitCode::SUCCESS
            }
            Err(LoadError::Io { path, source }) => {
                crate::say!("error: cannot read {path}: {source}");
                ExitCode::from(2)
            }
            Err(LoadError::Invalid(errors)) => {
                // The closing "more errors follow" note is not one of them.
                let n = errors
                    .iter()
                    .filter(|e| !e.message.starts_with(crate::config::MORE_ERRORS))
                    .count();
                let more = n < errors.len();
                if more {
                    crate::say!(
                        "{}: more than {n} error(s), the first {n} shown",
                        path.display()
                    );
                } else {
                    crate::say!("{}: {n} error(s)", path.display());
                }
                if errors.iter().any(|e| e.path == "tests") {
                    crate::say!(
                        "  (a [[tests]] table: this looks like a `crisiswatch test-rules` file; run `crisiswatch test-rules {}`)",
                        path.display()
                    );
                }
                for e in errors {
                    crate::say!("  - {e}");
                }
                ExitCode::from(1)
            }
        }
    }
}

/// What a valid configuration names but this machine cannot give it, and
/// `run` would refuse to start over: the secrets of receivers (an unset
/// variable, a missing or empty file) and their `ca_file`s.
fn unavailable(cfg: &Config) -> Vec<String> {
    cfg.receivers
        .iter()
        .filter_map(|r| {
            crate::incident::delivery::ReceiverRt::from_config(r, None)
                .err()
                .map(|e| format!("receivers.{}: {e}", r.name))
        })
        .collect()
}

/// Secrets `run` starts without, refusing what they guard: the admin token
/// (reloads, silences) and the read token (the data endpoints).
fn degraded(cfg: &Config) -> Vec<String> {
    let sv = &cfg.server;
    [
        (
            "server.admin_token_env / admin_token_file",
            &sv.admin_token_env,
            &sv.admin_token_file,
            "the admin API (reload, silences) refuses every request",
        ),
        (
            "server.read_token_env / read_token_file",
            &sv.read_token_env,
            &sv.read_token_file,
            "the data endpoints refuse every request",
        ),
    ]
    .into_iter()
    .filter_map(|(what, env, file, then)| {
        crate::secret::Secret::load(env.as_deref(), file.as_deref())
            .err()
            .map(|e| format!("{what}: {e}: {then}"))
    })
    .collect()
}
