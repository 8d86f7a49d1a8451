//! The `crisiswatch` binary: logs to standard error, then runs the command
//! line of [`crisiswatch::cli`].

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use crisiswatch::cli::Cli;

/// mimalloc (without transparent huge pages: with them, page faults that
/// zero 2 MiB each halved the core's throughput in some runs). The
/// decode-ahead thread of `replay` and `backtest` allocates each held event
/// and the engine thread frees it; the system allocator paid a locked slow
/// path for every such free, and replay ran at half the speed (README
/// "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRISISWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // A log line that cannot be written (standard error closed or full)
        // is dropped: reporting that on standard error again would panic.
        .log_internal_errors(false)
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    match Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            // A closed standard error must not turn the error into a panic.
            let _ = writeln!(
                io::stderr(),
                "error: {}",
                crisiswatch::cli::error_message(&e)
            );
            ExitCode::from(1)
        }
    }
}
