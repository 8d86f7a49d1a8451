//! `crisiswatch suggest`: thresholds for every rule from the user's own
//! history (see [`crate::backtest::suggest`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::backtest::suggest::{self, SuggestOptions};

use super::history::HistoryArgs;
use super::{
    guard_outputs, load_config, read_paths, summary_options, write_err, CliError, TruthArgs,
};

/// `crisiswatch suggest`.
#[derive(clap::Args, Debug)]
pub(crate) struct SuggestArgs {
    /// The configuration, the history (files or Kafka) and the clock.
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
    /// Ground truth (labelled crises) and matching options.
    #[command(flatten)]
    pub(crate) truth: TruthArgs,
    /// False incidents allowed per rule per 30 days of history (outside the labelled crises).
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    pub(crate) max_false_per_30d: f64,
    /// Only this rule (repeatable) [default: every rule].
    #[arg(long = "rule", value_name = "NAME")]
    pub(crate) rules: Vec<String>,
    /// Write the suggested rules as TOML [[rules]] entries to this file.
    #[arg(long)]
    pub(crate) write_snippet: Option<PathBuf>,
}

/// Prints the suggestions, writes the snippet.
pub(crate) fn suggest(a: &SuggestArgs) -> Result<ExitCode, CliError> {
    let reads = read_paths(&a.history.config, &a.history.input, Some(&a.truth));
    guard_outputs(&reads, [&a.write_snippet])?;
    let cfg = load_config(&a.history.config)?;
    if !(a.max_false_per_30d.is_finite() && a.max_false_per_30d >= 0.0) {
        return Err(CliError::Usage(format!(
            "--max-false-per-30d {} must be a number ≥ 0",
            a.max_false_per_30d
        )));
    }
    let opts = SuggestOptions {
        summary: summary_options(&a.truth, &cfg)?,
        now_ms: Some(a.history.now.ms()?),
        max_false_per_30d: a.max_false_per_30d,
        rules: a.rules.clone(),
    };
    let inputs = a.history.open(&cfg)?;
    let all = suggest::run(&cfg, &inputs, &opts)?;
    let mut out = io::stdout().lock();
    write!(out, "{}", suggest::render(&all, &opts)).map_err(write_err(Path::new("stdout")))?;
    if let Some(p) = &a.write_snippet {
        let written = crate::backtest::tune::WrittenRules::read(&a.history.config.config);
        let text = suggest::snippet(&all, &written)?;
        std::fs::write(p, text).map_err(write_err(p))?;
        writeln!(out, "\nwrote the suggested rules to {}", p.display())
            .map_err(write_err(Path::new("stdout")))?;
    }
    Ok(ExitCode::SUCCESS)
}
