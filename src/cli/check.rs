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
                let color = io::stdout().is_terminal();
                let ok = if color { "\x1b[32mOK\x1b[0m" } else { "OK" };
                println!(
                    "{ok}: {} is valid ({} rules, {} receivers)",
                    path.display(),
                    cfg.rules.len(),
                    cfg.receivers.len()
                );
                ExitCode::SUCCESS
            }
            Err(LoadError::Io { path, source }) => {
                crate::say!("error: cannot read {path}: {source}");
                ExitCode::from(2)
            }
            Err(LoadError::Invalid(errors)) => {
                crate::say!("{}: {} error(s)", path.display(), errors.len());
                for e in errors {
                    crate::say!("  - {e}");
                }
                ExitCode::from(1)
            }
        }
    }
}
