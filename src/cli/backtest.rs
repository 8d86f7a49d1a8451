//! The backtest tools: `backtest`, `tune`, `suggest`, `chart`, `review` and `test-rules`.
//! Arguments (clap) and the glue from them to [`crate::backtest`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::backtest::chart::{self, ChartError};
use crate::backtest::input::InputError;
use crate::backtest::kafka_input::KafkaInputError;
use crate::backtest::labels::{self, Crisis, LabelsError};
use crate::backtest::report::{Incident, SummaryOptions};
use crate::backtest::review::ReviewError;
use crate::backtest::ruletest;
use crate::backtest::tune::{self, TuneError, TuneOptions, Vary};
use crate::backtest::BacktestError;
use crate::config::{Config, ProcessEnv};
use crate::incident::outbox::OutboxReader;

mod history;
mod review;
mod suggest;

use super::args::{refuse_overwriting_inputs, BadNow, ConfigArg, OverwritesInput};

use history::HistoryArgs;
use review::{write_reviews, ReviewArgs};
use suggest::SuggestArgs;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
    /// Replay history (JSONL, gzip accepted) through the rules: incidents, time firing,
    /// flaps and peaks per rule and slice; with --labels, detection delay, missed
    /// crises, false incidents, precision and recall.
    Backtest(BacktestArgs),
    /// Evaluate many thresholds / `for` / windows of one rule in one pass over history.
    Tune(TuneArgs),
    /// Propose thresholds for every rule from history: the most useful ones that
    /// keep false incidents under a target (default: one per rule per 30 days
    /// outside the labelled crises); reports what each catches, writes a snippet.
    Suggest(SuggestArgs),
    /// Draw one rule's indicator for one slice over time (SVG), with thresholds,
    /// firing intervals and known crises.
    Chart(ChartArgs),
    /// Write a Markdown post-incident review of incidents from a backtest, a transitions file
    /// or the live service's outbox.
    Review(ReviewArgs),
    /// Run rule unit tests: input events and expected transitions (exit 1 on a failure).
    TestRules(TestRulesArgs),
}

impl Commands {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        Ok(match self {
            Commands::Backtest(a) => backtest(&a)?,
            Commands::Tune(a) => tune(&a)?,
            Commands::Suggest(a) => suggest::suggest(&a)?,
            Commands::Chart(a) => chart(&a)?,
            Commands::Review(a) => review::review(&a)?,
            Commands::TestRules(a) => test_rules(&a)?,
        })
    }
}

/// Errors of the backtest commands, each saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration did not load.
    #[error("{0}")]
    Config(String),
    /// The backtest failed.
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    /// Tuning failed.
    #[error(transparent)]
    Tune(#[from] TuneError),
    /// Drawing failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The review failed.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The labels file is wrong.
    #[error(transparent)]
    Labels(#[from] LabelsError),
    /// Reading the history failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The Kafka history arguments are wrong (boxed: a large error).
    #[error(transparent)]
    Kafka(Box<KafkaInputError>),
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// `--now` is not a time.
    #[error(transparent)]
    Now(#[from] BadNow),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(String),
    /// An output would overwrite an input.
    #[error(transparent)]
    Overwrites(#[from] OverwritesInput),
}

impl From<KafkaInputError> for CliError {
    fn from(e: KafkaInputError) -> Self {
        CliError::Kafka(Box::new(e))
    }
}

/// Ground truth and incident-matching options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TruthArgs {
    /// Known crises, JSONL (the format `crisiswatch generate --crises` writes).
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Only this crisis of the labels file (repeatable).
    #[arg(long = "crisis", value_name = "NAME")]
    pub(crate) crises: Vec<String>,
    /// Responders' labels from the live service's outbox (its data directory
    /// or outbox.sqlite; without a value, incidents.data_dir): incidents marked
    /// `useful` are the known crises, those marked `noise` false pages. With
    /// --labels too, both sets of crises count.
    // A `String`: clap refuses an empty `PathBuf`, the "no value" marker.
    #[arg(long, value_name = "OUTBOX", num_args = 0..=1, default_missing_value = "")]
    pub(crate) labels_from: Option<String>,
    /// How long after a crisis ends a firing still counts as catching it [default: the rule's window].
    #[arg(long)]
    pub(crate) grace: Option<crate::config::Dur>,
    /// A re-fire of the same rule and slice this soon after a resolve counts as a flap.
    #[arg(long, default_value = "15m")]
    pub(crate) flap_gap: crate::config::Dur,
}

/// `crisiswatch backtest`.
#[derive(clap::Args, Debug)]
pub(crate) struct BacktestArgs {
    /// The configuration, the history (files or Kafka) and the clock.
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub(crate) truth: TruthArgs,
    /// Also write every transition as JSONL (the bytes `replay` writes) to this file.
    #[arg(long)]
    pub(crate) transitions: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write a Markdown review of every incident into this directory (reads the input twice).
    #[arg(long)]
    pub(crate) review_dir: Option<PathBuf>,
}

/// `crisiswatch tune`.
#[derive(clap::Args, Debug)]
pub(crate) struct TuneArgs {
    /// The configuration, the history (files or Kafka) and the clock.
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
    /// The rule to tune.
    #[arg(long)]
    pub(crate) rule: String,
    /// A setting and its candidate values (repeatable): threshold=0.02..0.08:0.01,
    /// clear=0.03,0.04, for=0m,5m,15m, keep_firing_for=…, window=15m,30m,1h, confidence=0.9,0.95.
    #[arg(long, required = true, value_name = "SETTING=VALUES")]
    pub(crate) vary: Vec<String>,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub(crate) truth: TruthArgs,
    /// Choose this row (1-based) instead of the automatic choice.
    #[arg(long)]
    pub(crate) pick: Option<usize>,
    /// Write the table as CSV to this file.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Draw median delay against false incidents (SVG) to this file (needs --labels).
    #[arg(long)]
    pub(crate) chart: Option<PathBuf>,
    /// Write the chosen candidate as a TOML [[rules]] snippet to this file.
    #[arg(long)]
    pub(crate) write_snippet: Option<PathBuf>,
}

/// `crisiswatch chart`.
#[derive(clap::Args, Debug)]
pub(crate) struct ChartArgs {
    /// The configuration, the history (files or Kafka) and the clock.
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
    /// The rule.
    #[arg(long)]
    pub(crate) rule: String,
    /// The slice, e.g. product=router-x,region=eu-west ("" for a rule without group_by).
    #[arg(long, default_value = "")]
    pub(crate) group: String,
    /// Output SVG file.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Known crises to mark (JSONL).
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
}

/// `crisiswatch test-rules`.
#[derive(clap::Args, Debug)]
pub(crate) struct TestRulesArgs {
    /// Test files (TOML).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
}

/// The files a history command reads: its configuration, its history files
/// and, with `truth`, its labels (what no output may overwrite).
pub fn read_paths<'a>(
    config: &'a ConfigArg,
    input: &'a [PathBuf],
    truth: Option<&'a TruthArgs>,
) -> Vec<(&'a Path, &'static str)> {
    let mut v = vec![(config.config.as_path(), "configuration")];
    v.extend(input.iter().map(|p| (p.as_path(), "input")));
    if let Some(t) = truth {
        v.extend(t.labels.iter().map(|p| (p.as_path(), "labels file")));
        v.extend(
            t.labels_from
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| (Path::new(p.as_str()), "labels outbox")),
        );
    }
    v
}

/// Refuses outputs that are inputs of the command (see
/// [`refuse_overwriting_inputs`]).
pub fn guard_outputs<'a>(
    reads: &[(&'a Path, &'static str)],
    outputs: impl IntoIterator<Item = &'a Option<PathBuf>>,
) -> Result<(), CliError> {
    let outputs: Vec<&Path> = outputs.into_iter().filter_map(|o| o.as_deref()).collect();
    refuse_overwriting_inputs(reads.iter().copied(), outputs.iter().copied())?;
    // Before the history is read (which can take long): an output whose
    // directory does not exist fails now, not after the run.
    for o in outputs {
        check_parent(o)?;
    }
    Ok(())
}

/// Fails when the directory `path` would be written in does not exist.
pub fn check_parent(path: &Path) -> Result<(), CliError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(CliError::Write {
            path: path.display().to_string(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("the directory {} does not exist", dir.display()),
            ),
        }),
        _ => Ok(()),
    }
}

/// Creates the directory that several files go into (reviews, one per
/// incident), or says that `dir` is a file; `or` is the command's other way
/// out (`review`: one incident), if it has one.
pub fn make_dir(dir: &Path, or: &str) -> Result<(), CliError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is a file: the reviews of several incidents go one file each into a directory — \
             name a directory{or}",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(write_err(dir))
}

/// Loads the configuration of a history command, and warns of settings
/// that cannot work as meant (`config::advice`) before the report.
pub fn load_config(arg: &ConfigArg) -> Result<Config, CliError> {
    let cfg =
        Config::load(&arg.config, &ProcessEnv).map_err(|e| CliError::Config(e.to_string()))?;
    for a in crate::config::advice(&cfg) {
        crate::say!("warning: {a}");
    }
    Ok(cfg)
}

fn dur_ms(d: crate::config::Dur) -> i64 {
    i64::try_from(std::time::Duration::from(d).as_millis()).unwrap_or(i64::MAX)
}

fn load_labels(t: &TruthArgs, cfg: &Config) -> Result<Option<Vec<Crisis>>, CliError> {
    let from_file = match &t.labels {
        None if !t.crises.is_empty() => {
            return Err(CliError::Usage("--crisis needs --labels FILE".to_string()))
        }
        None => None,
        Some(p) => {
            let crises = labels::select(labels::load(p)?, &t.crises)?;
            if crises.is_empty() {
                tracing::warn!(
                    labels = %p.display(),
                    "Labels: {} holds no crisis: every incident counts as false and recall is undefined — check the file (one JSON object per line, as `crisiswatch generate --crises` writes)",
                    p.display()
                );
            }
            // A crisis with no slice is caught only by a rule without
            // group_by: with none, it would be "missed" by every rule.
            if cfg.rules.iter().all(|r| !r.group_by.is_empty()) {
                for c in crises.iter().filter(|c| c.slice.is_empty()) {
                    tracing::warn!(
                        labels = %p.display(),
                        crisis = %c.name,
                        "Labels: crisis {:?} names no slice (\"slice\" missing or empty): only a rule without group_by can catch it, and this configuration has none — give the slice it hit, e.g. \"slice\": {{\"product\": \"router-x\"}}",
                        c.name
                    );
                }
            }
            for w in labels::unknown_slice_attrs(&crises, cfg) {
                tracing::warn!(labels = %p.display(), "Labels: {w}");
            }
            Some(crises)
        }
    };
    let Some(ob) = &t.labels_from else {
        return Ok(from_file);
    };
    let path = if ob.is_empty() {
        PathBuf::from(&cfg.incidents.data_dir)
    } else {
        PathBuf::from(ob)
    };
    let entries = OutboxReader::open(&path)
        .and_then(|r| r.feedback())
        .map_err(|e| CliError::Usage(format!("--labels-from: {e}")))?;
    let truth = labels::from_feedback(&entries);
    crate::say!(
        "labels from {}: {} incident(s) marked useful, {} marked noise",
        path.display(),
        truth.useful,
        truth.noise
    );
    let mut all = from_file.unwrap_or_default();
    all.extend(truth.crises);
    Ok(Some(all))
}

pub fn summary_options(t: &TruthArgs, cfg: &Config) -> Result<SummaryOptions, CliError> {
    Ok(SummaryOptions {
        flap_gap_ms: dur_ms(t.flap_gap).max(0),
        grace_ms: t.grace.map(dur_ms),
        labels: load_labels(t, cfg)?,
    })
}

fn create(path: &Path) -> Result<BufWriter<File>, CliError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })
}

pub fn write_err(path: &Path) -> impl Fn(io::Error) -> CliError + '_ {
    move |source| CliError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// `crisiswatch backtest`: prints the report.
fn backtest(a: &BacktestArgs) -> Result<ExitCode, CliError> {
    let reads = read_paths(&a.history.config, &a.history.input, Some(&a.truth));
    guard_outputs(&reads, [&a.transitions, &a.json])?;
    let cfg = load_config(&a.history.config)?;
    let opts = summary_options(&a.truth, &cfg)?;
    let inputs = a.history.open(&cfg)?;
    if let Some(d) = a.review_dir.as_deref().filter(|d| d.exists()) {
        // Said before the history is read: a file where the directory goes.
        make_dir(d, "")?;
    }
    if a.review_dir.is_some() && inputs.read_once() {
        return Err(CliError::Usage(
            "--review-dir reads the input twice: give files, not \"-\" or a pipe".into(),
        ));
    }
    let mut tw = a.transitions.as_deref().map(create).transpose()?;
    let now_ms = a.history.now.ms()?;
    let report = crate::backtest::run(
        &cfg,
        &inputs,
        &opts,
        Some(now_ms),
        tw.as_mut().map(|w| w as &mut dyn Write),
    );
    drop(tw);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // A failed run (a truncated gzip, a read error) leaves no
            // `--transitions` file that looks like a whole result. Only a
            // regular file is removed (never /dev/stdout or a pipe).
            if let Some(p) = &a.transitions {
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
                    if let Err(err) = std::fs::remove_file(p) {
                        tracing::warn!(path = %p.display(), error = %err, "Cannot remove the incomplete transitions file.");
                    }
                }
            }
            return Err(e.into());
        }
    };
    let mut out = io::stdout().lock();
    write!(out, "{report}").map_err(write_err(Path::new("stdout")))?;
    if let Some(p) = &a.json {
        let mut w = create(p)?;
        serde_json::to_writer_pretty(&mut w, &report)
            .map_err(io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
            .map_err(write_err(p))?;
    }
    if let Some(dir) = &a.review_dir {
        let all: Vec<&Incident> = report.incidents.iter().collect();
        let end = report.end_ms.unwrap_or(0);
        let files = write_reviews(&cfg, &inputs, &all, end, now_ms, &opts, Some(dir))?;
        writeln!(
            out,
            "\nwrote {files} incident review(s) to {}",
            dir.display()
        )
        .map_err(write_err(Path::new("stdout")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `crisiswatch tune`: prints the table, writes the requested files.
fn tune(a: &TuneArgs) -> Result<ExitCode, CliError> {
    let reads = read_paths(&a.history.config, &a.history.input, Some(&a.truth));
    guard_outputs(&reads, [&a.csv, &a.chart, &a.write_snippet])?;
    let cfg = load_config(&a.history.config)?;
    let varies = a
        .vary
        .iter()
        .map(|v| v.parse::<Vary>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = TuneOptions {
        rule: a.rule.clone(),
        varies,
        summary: summary_options(&a.truth, &cfg)?,
        now_ms: Some(a.history.now.ms()?),
        pick: a.pick,
    };
    if let Some(p) = &a.chart {
        svg_output(p)?;
        if opts.summary.labels.is_none() {
            // Said before the pass, not after it.
            return Err(CliError::Usage(
                "--chart plots detection delay against false incidents: pass --labels".into(),
            ));
        }
    }
    if a.write_snippet.is_some() && opts.summary.labels.is_none() && a.pick.is_none() {
        return Err(CliError::Usage(
            "--write-snippet needs a chosen candidate: pass --labels, or --pick N".into(),
        ));
    }
    let inputs = a.history.open(&cfg)?;
    let result = tune::run(&cfg, &inputs, &opts)?;
    let mut out = io::stdout().lock();
    write!(out, "{}", tune::render_table(&result)).map_err(write_err(Path::new("stdout")))?;
    if let Some(p) = &a.csv {
        let mut w = create(p)?;
        tune::write_csv(&result, &mut w)
            .and_then(|()| w.flush())
            .map_err(write_err(p))?;
    }
    if let Some(p) = &a.chart {
        chart::render_tune(&result, p)?;
    }
    if let Some(p) = &a.write_snippet {
        let Some(i) = result.chosen else {
            return Err(CliError::Usage(
                "--write-snippet needs a chosen candidate: pass --labels, or --pick N".into(),
            ));
        };
        let written = tune::WrittenRules::read(&a.history.config.config);
        let text = tune::snippet_as_written(&result, i, &written)?;
        std::fs::write(p, text).map_err(write_err(p))?;
        writeln!(out, "wrote candidate #{} to {}", i + 1, p.display())
            .map_err(write_err(Path::new("stdout")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `crisiswatch chart`: draws one rule and slice.
fn chart(a: &ChartArgs) -> Result<ExitCode, CliError> {
    let mut reads = read_paths(&a.history.config, &a.history.input, None);
    reads.extend(a.labels.iter().map(|p| (p.as_path(), "labels file")));
    guard_outputs(&reads, [&Some(a.output.clone())])?;
    svg_output(&a.output)?;
    let cfg = load_config(&a.history.config)?;
    let rule =
        cfg.rules
            .iter()
            .find(|r| r.name == a.rule)
            .ok_or_else(|| ChartError::UnknownRule {
                name: a.rule.clone(),
                known: cfg.rule_names(),
            })?;
    let group = chart::parse_group(rule, &a.group)?;
    let crises = match &a.labels {
        Some(p) => labels::load(p)?,
        None => Vec::new(),
    };
    let inputs = a.history.open(&cfg)?;
    let data = chart::collect(
        &cfg,
        &inputs,
        &a.rule,
        &group,
        &crises,
        Some(a.history.now.ms()?),
    )?;
    chart::render_indicator(&data, &a.output)?;
    println!(
        "wrote {} ({} samples, {} firing interval(s), {} crisis interval(s))",
        a.output.display(),
        data.points.len(),
        data.firing.len(),
        data.crises.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Charts are SVG: a file named for another format (`.png`, `.pdf`) would
/// hold SVG under the wrong name.
fn svg_output(p: &Path) -> Result<(), CliError> {
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) if !e.eq_ignore_ascii_case("svg") => Err(CliError::Usage(format!(
            "{}: charts are written as SVG only; name the file .svg (convert it with e.g. `rsvg-convert -o chart.png chart.svg`)",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// `crisiswatch test-rules`: exit 0 when every case passes, 1 otherwise.
fn test_rules(a: &TestRulesArgs) -> Result<ExitCode, CliError> {
    let mut results = Vec::new();
    let mut broken = 0;
    for f in &a.files {
        match ruletest::run_file(f) {
            Ok(r) => results.push(r),
            Err(e) => {
                crate::say!("error: {e}");
                broken += 1;
            }
        }
    }
    print!("{}", ruletest::render(&results));
    let failed: usize = results.iter().map(|r| r.failed()).sum();
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
