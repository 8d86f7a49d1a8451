//! The command line: one file per command family, this file only lists them.
//!
//! Every family (`demo`, `replay`, `backtest`, ...) is a file here that holds
//! its clap definitions (a [`clap::Subcommand`] enum, flattened into
//! [`Cli`]) and the glue from the arguments to the library. Adding a family is
//! a new file, a `mod` line and one variant of `Command` with its `run` arm.
//!
//! Results go to standard output (or the files named); progress, logs and
//! errors to standard error. Exit codes: 0 success, 1 an error or a failed
//! check, 2 a usage error (clap) or an unreadable configuration (`check`).
//! This is the program's edge, the one place where errors become
//! [`anyhow`] messages.

mod args;
mod backtest;
mod check;
mod demo;
mod generate;
mod incident;
mod replay;
mod run;
mod state;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Streaming early-warning monitor for customer crises.
#[derive(Parser, Debug)]
#[command(name = "crisiswatch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The command families, in the order `--help` lists them (the large
/// arguments boxed: clippy's `large_enum_variant`).
#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Demo(demo::Commands),
    #[command(flatten)]
    Replay(replay::Commands),
    #[command(flatten)]
    Generate(generate::Commands),
    #[command(flatten)]
    Backtest(Box<backtest::Commands>),
    #[command(flatten)]
    Incident(incident::Commands),
    #[command(flatten)]
    Check(check::Commands),
    #[command(flatten)]
    Run(run::Commands),
    #[command(flatten)]
    State(state::Commands),
}

impl Cli {
    /// Runs the command; `Ok` carries its exit code.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Demo(c) => c.run(),
            Command::State(c) => c.run(),
            Command::Replay(c) => c.run(),
            Command::Generate(c) => c.run(),
            Command::Backtest(c) => (*c).run(),
            Command::Incident(c) => c.run(),
            Command::Check(c) => Ok(c.run()),
            Command::Run(c) => c.run(),
        }
    }
}

/// The message of a command's error for people: each cause after the first,
/// joined with ": ", unless the text so far already says it (many errors
/// name their cause in their own message, and printing the chain as it is
/// would say "No such file or directory" twice).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
