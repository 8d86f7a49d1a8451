//! The command-line faces of the backtest tools: `backtest`, `tune`, `chart`,
//! `review` and `test-rules`. Arguments (clap) and the glue from them to the
//! library functions, so `main` only dispatches. Results go to standard
//! output (or the files named); progress and logs to standard error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ProcessEnv};
use crate::event::parse_rfc3339_ms;

use super::chart::{self, ChartError};
use super::input::{InputError, Inputs};
use super::kafka_input::{KafkaHistory, KafkaInputError, KafkaRange, PartitionOffsets};
use super::labels::{self, Crisis, LabelsError};
use super::report::{Incident, SummaryOptions};
use super::review::{self, ReviewError};
use super::rule_tests;
use super::tune::{self, TuneError, TuneOptions, Vary};
use super::BacktestError;

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
    #[error("--now {0:?} is not an RFC 3339 time")]
    Now(String),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(String),
}

impl From<KafkaInputError> for CliError {
    fn from(e: KafkaInputError) -> Self {
        CliError::Kafka(Box::new(e))
    }
}

/// Ground truth and incident-matching options.
#[derive(clap::Args, Debug, Clone)]
pub struct TruthArgs {
    /// Known crises, JSONL (the format `crisiswatch generate --crises` writes).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Only this crisis of the labels file (repeatable).
    #[arg(long = "crisis", value_name = "NAME")]
    pub crises: Vec<String>,
    /// How long after a crisis ends a firing still counts as catching it [default: the rule's window].
    #[arg(long)]
    pub grace: Option<humantime::Duration>,
    /// A re-fire of the same rule and slice this soon after a resolve counts as a flap.
    #[arg(long, default_value = "15m")]
    pub flap_gap: humantime::Duration,
}

/// History from Kafka topics instead of files (every history command takes these).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KafkaArgs {
    /// Read the history from this Kafka topic instead of --input files (repeatable:
    /// topics and partitions are merged by event time). Brokers and librdkafka
    /// properties come from [sources.kafka], as does the topic's default_type.
    #[arg(long = "kafka-topic", value_name = "TOPIC", conflicts_with = "input")]
    pub kafka_topics: Vec<String>,
    /// Bootstrap servers, instead of sources.kafka.brokers.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "kafka_topics",
        conflicts_with = "input"
    )]
    pub bootstrap: Option<String>,
    /// First offset read, per partition: earliest (default), N, or P:N for
    /// partition P (repeatable or comma-separated; a plain value is for the others).
    #[arg(
        long,
        value_name = "earliest|N|P:N",
        value_delimiter = ',',
        requires = "kafka_topics",
        conflicts_with = "input"
    )]
    pub from_offset: Vec<String>,
    /// First offset NOT read, per partition: latest (default: each partition's
    /// end when the read reaches it), N, or P:N.
    #[arg(
        long,
        value_name = "latest|N|P:N",
        value_delimiter = ',',
        requires = "kafka_topics",
        conflicts_with = "input"
    )]
    pub to_offset: Vec<String>,
    /// Only messages whose Kafka timestamp is at or after this time (RFC 3339).
    #[arg(
        long,
        value_name = "RFC3339",
        requires = "kafka_topics",
        conflicts_with = "input"
    )]
    pub from_time: Option<String>,
    /// Only messages whose Kafka timestamp is before this time (RFC 3339).
    #[arg(
        long,
        value_name = "RFC3339",
        requires = "kafka_topics",
        conflicts_with = "input"
    )]
    pub to_time: Option<String>,
    /// Fail when the broker answers nothing for this long (unreachable, stalled).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        conflicts_with = "input"
    )]
    pub kafka_timeout: humantime::Duration,
}

/// `crisiswatch backtest`.
#[derive(clap::Args, Debug)]
pub struct BacktestArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// History: JSONL files (gzip accepted, by content), read in the order given; "-" reads stdin.
    #[arg(long, num_args = 1.., required_unless_present = "kafka_topics")]
    pub input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub truth: TruthArgs,
    /// Also write every transition as JSONL (the bytes `replay` writes) to this file.
    #[arg(long)]
    pub transitions: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a Markdown review of every incident into this directory (reads the input twice).
    #[arg(long)]
    pub review_dir: Option<PathBuf>,
    /// Wall clock (RFC 3339) for the future-skew check [default: no check: history has no wall clock].
    #[arg(long)]
    pub now: Option<String>,
}

/// `crisiswatch tune`.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// History: JSONL files (gzip accepted), read in order; "-" reads stdin.
    #[arg(long, num_args = 1.., required_unless_present = "kafka_topics")]
    pub input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The rule to tune.
    #[arg(long)]
    pub rule: String,
    /// A setting and its candidate values (repeatable): threshold=0.02..0.08:0.01,
    /// clear=0.03,0.04, for=0m,5m,15m, keep_firing_for=…, window=15m,30m,1h.
    #[arg(long, required = true, value_name = "SETTING=VALUES")]
    pub vary: Vec<String>,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub truth: TruthArgs,
    /// Choose this row (1-based) instead of the automatic choice.
    #[arg(long)]
    pub pick: Option<usize>,
    /// Write the table as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw median delay against false incidents (SVG) to this file (needs --labels).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Write the chosen candidate as a TOML [[rules]] snippet to this file.
    #[arg(long)]
    pub write_snippet: Option<PathBuf>,
    /// Wall clock (RFC 3339) for the future-skew check [default: no check].
    #[arg(long)]
    pub now: Option<String>,
}

/// `crisiswatch chart`.
#[derive(clap::Args, Debug)]
pub struct ChartArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// History: JSONL files (gzip accepted), read in order.
    #[arg(long, num_args = 1.., required_unless_present = "kafka_topics")]
    pub input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The rule.
    #[arg(long)]
    pub rule: String,
    /// The slice, e.g. product=router-x,region=eu-west ("" for a rule without group_by).
    #[arg(long, default_value = "")]
    pub group: String,
    /// Output SVG file.
    #[arg(long)]
    pub output: PathBuf,
    /// Known crises to mark (JSONL).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Wall clock (RFC 3339) for the future-skew check [default: no check].
    #[arg(long)]
    pub now: Option<String>,
}

/// `crisiswatch review`.
#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// History: JSONL files (gzip accepted). Without --transitions or --outbox the
    /// incidents come from a backtest of it; with them it gives the event figures.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Incidents from a transitions JSONL file (`replay`/`backtest --transitions`
    /// output, or an export of the live service's transitions) instead of a backtest.
    #[arg(long)]
    pub transitions: Option<PathBuf>,
    /// Incidents from the live service's outbox, opened read-only (the service may
    /// run): its data directory (as `outbox --data-dir`) or the outbox.sqlite file
    /// [default when given without a value: incidents.data_dir].
    #[arg(long, value_name = "DIR_OR_FILE", num_args = 0..=1, conflicts_with = "transitions")]
    pub outbox: Option<Option<PathBuf>>,
    /// The incident: its dedup key, or a part of it that matches one (repeatable; default: all).
    /// With --outbox, an incident key or the dedup key of one of its alerts.
    #[arg(long = "incident", value_name = "KEY")]
    pub incidents: Vec<String>,
    /// List the incidents (key, severity, times) instead of writing reviews.
    #[arg(long, conflicts_with = "incidents")]
    pub list: bool,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub truth: TruthArgs,
    /// Output: a file for one incident, a directory for several [default: stdout].
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `crisiswatch test-rules`.
#[derive(clap::Args, Debug)]
pub struct TestRulesArgs {
    /// Test files (TOML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn load_config(path: &Path) -> Result<Config, CliError> {
    Config::load(path, &ProcessEnv).map_err(|e| CliError::Config(e.to_string()))
}

fn now_ms(now: &Option<String>) -> Result<Option<i64>, CliError> {
    match now {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(s)
            .map(Some)
            .ok_or_else(|| CliError::Now(s.clone())),
    }
}

/// The history of a command: the `--input` files, or the Kafka topics.
fn history(cfg: &Config, input: &[PathBuf], k: &KafkaArgs) -> Result<Inputs, CliError> {
    if k.kafka_topics.is_empty() {
        return Ok(Inputs::new(input.to_vec())?);
    }
    let time = |flag: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(s)
            .map(Some)
            .ok_or_else(|| CliError::Usage(format!("{flag} {s:?} is not an RFC 3339 time"))),
    };
    let range = KafkaRange {
        topics: k.kafka_topics.clone(),
        from: PartitionOffsets::parse("--from-offset", "earliest", &k.from_offset)?,
        to: PartitionOffsets::parse("--to-offset", "latest", &k.to_offset)?,
        from_ms: time("--from-time", &k.from_time)?,
        to_ms: time("--to-time", &k.to_time)?,
        timeout: k.kafka_timeout.into(),
    };
    let h = KafkaHistory::new(cfg.sources.kafka.as_ref(), k.bootstrap.as_deref(), range)?;
    Ok(Inputs::kafka(h))
}

fn dur_ms(d: humantime::Duration) -> i64 {
    i64::try_from(std::time::Duration::from(d).as_millis()).unwrap_or(i64::MAX)
}

fn load_labels(t: &TruthArgs) -> Result<Option<Vec<Crisis>>, CliError> {
    match &t.labels {
        None if !t.crises.is_empty() => {
            Err(CliError::Usage("--crisis needs --labels FILE".to_string()))
        }
        None => Ok(None),
        Some(p) => Ok(Some(labels::select(labels::load(p)?, &t.crises)?)),
    }
}

fn summary_options(t: &TruthArgs) -> Result<SummaryOptions, CliError> {
    Ok(SummaryOptions {
        flap_gap_ms: dur_ms(t.flap_gap).max(0),
        grace_ms: t.grace.map(dur_ms),
        labels: load_labels(t)?,
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

fn write_err(path: &Path) -> impl Fn(io::Error) -> CliError + '_ {
    move |source| CliError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// `crisiswatch backtest`: prints the report.
pub fn backtest(a: &BacktestArgs) -> Result<ExitCode, CliError> {
    let cfg = load_config(&a.config)?;
    let opts = summary_options(&a.truth)?;
    let inputs = history(&cfg, &a.input, &a.kafka)?;
    if a.review_dir.is_some() && inputs.uses_stdin() {
        return Err(CliError::Usage(
            "--review-dir reads the input twice: give files, not \"-\"".into(),
        ));
    }
    let mut tw = a.transitions.as_deref().map(create).transpose()?;
    let report = super::run(
        &cfg,
        &inputs,
        &opts,
        now_ms(&a.now)?,
        tw.as_mut().map(|w| w as &mut dyn Write),
    )?;
    drop(tw);
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
        let files = write_reviews(&cfg, &inputs, &all, end, &opts, Some(dir))?;
        writeln!(
            out,
            "\nwrote {files} incident review(s) to {}",
            dir.display()
        )
        .map_err(write_err(Path::new("stdout")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Gathers evidence and writes one review per incident into `dir` (or
/// stdout when `dir` is `None`). Returns the number written.
fn write_reviews(
    cfg: &Config,
    inputs: &Inputs,
    incidents: &[&Incident],
    end_ms: i64,
    opts: &SummaryOptions,
    dir: Option<&Path>,
) -> Result<usize, CliError> {
    let evidence = review::collect_evidence(cfg, incidents, end_ms, |f| {
        inputs
            .clone()
            .quiet()
            .for_each_line(|l, _| f(l))
            .map(|_| ())
    })?;
    write_review_files(cfg, incidents, Some(&evidence), end_ms, opts, dir, true)
}

fn write_review_files(
    cfg: &Config,
    incidents: &[&Incident],
    evidence: Option<&[review::Evidence]>,
    end_ms: i64,
    opts: &SummaryOptions,
    dir: Option<&Path>,
    peaks_sampled: bool,
) -> Result<usize, CliError> {
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(write_err(d))?;
    }
    let crises = opts.labels.as_deref().unwrap_or(&[]);
    let mut stdout = io::stdout().lock();
    for (k, i) in incidents.iter().enumerate() {
        let rule = cfg.rules.iter().find(|r| r.name == i.rule);
        let md = review::render(
            i,
            rule,
            evidence.and_then(|e| e.get(k)),
            crises,
            opts.grace_ms,
            end_ms,
            peaks_sampled,
        );
        match dir {
            Some(d) => {
                let p = d.join(review::file_name(i));
                std::fs::write(&p, md).map_err(write_err(&p))?;
            }
            None => {
                if k > 0 {
                    writeln!(stdout, "\n---\n").map_err(write_err(Path::new("stdout")))?;
                }
                write!(stdout, "{md}").map_err(write_err(Path::new("stdout")))?;
            }
        }
    }
    Ok(incidents.len())
}

/// `crisiswatch tune`: prints the table, writes the requested files.
pub fn tune(a: &TuneArgs) -> Result<ExitCode, CliError> {
    let cfg = load_config(&a.config)?;
    let varies = a
        .vary
        .iter()
        .map(|v| v.parse::<Vary>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = TuneOptions {
        rule: a.rule.clone(),
        varies,
        summary: summary_options(&a.truth)?,
        now_ms: now_ms(&a.now)?,
        pick: a.pick,
    };
    if a.write_snippet.is_some() && opts.summary.labels.is_none() && a.pick.is_none() {
        return Err(CliError::Usage(
            "--write-snippet needs a chosen candidate: pass --labels, or --pick N".into(),
        ));
    }
    let inputs = history(&cfg, &a.input, &a.kafka)?;
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
        let text = tune::snippet(&result, i)?;
        std::fs::write(p, text).map_err(write_err(p))?;
        writeln!(out, "wrote candidate #{} to {}", i + 1, p.display())
            .map_err(write_err(Path::new("stdout")))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `crisiswatch chart`: draws one rule and slice.
pub fn chart(a: &ChartArgs) -> Result<ExitCode, CliError> {
    let cfg = load_config(&a.config)?;
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
    let inputs = history(&cfg, &a.input, &a.kafka)?;
    let data = chart::collect(&cfg, &inputs, &a.rule, &group, &crises, now_ms(&a.now)?)?;
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

/// `crisiswatch review`: Markdown reviews of incidents.
pub fn review(a: &ReviewArgs) -> Result<ExitCode, CliError> {
    let cfg = load_config(&a.config)?;
    let opts = summary_options(&a.truth)?;
    let inputs = if a.input.is_empty() && a.kafka.kafka_topics.is_empty() {
        None
    } else {
        let i = history(&cfg, &a.input, &a.kafka)?;
        if i.uses_stdin() {
            return Err(CliError::Usage(
                "review reads the input more than once: give files, not \"-\"".into(),
            ));
        }
        Some(i)
    };
    if let Some(dir) = &a.outbox {
        let path = dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&cfg.incidents.data_dir));
        return review_outbox(a, &cfg, &opts, inputs.as_ref(), &path);
    }
    let (incidents, end) = match (&a.transitions, &inputs) {
        (Some(t), _) => review::incidents_from_transitions(&cfg, t)?,
        (None, Some(i)) => {
            let r = super::run(&cfg, i, &opts, None, None)?;
            let end = r.end_ms.unwrap_or(0);
            (r.incidents, end)
        }
        (None, None) => {
            return Err(CliError::Usage(
                "give --input FILES (to backtest), --transitions FILE or --outbox [DIR]".into(),
            ))
        }
    };
    if a.list {
        print!("{}", review::list(&incidents));
        return Ok(ExitCode::SUCCESS);
    }
    let sampled = a.transitions.is_none();
    let chosen = review::select(&incidents, &a.incidents)?;
    if chosen.is_empty() {
        eprintln!("no incidents to review");
        return Ok(ExitCode::SUCCESS);
    }
    let evidence = match &inputs {
        Some(i) => Some(review::collect_evidence(&cfg, &chosen, end, |f| {
            i.clone().quiet().for_each_line(|l, _| f(l)).map(|_| ())
        })?),
        None => None,
    };
    match &a.output {
        Some(p) if chosen.len() == 1 && !p.is_dir() => {
            let rule = cfg.rules.iter().find(|r| r.name == chosen[0].rule);
            let md = review::render(
                chosen[0],
                rule,
                evidence.as_ref().and_then(|e| e.first()),
                opts.labels.as_deref().unwrap_or(&[]),
                opts.grace_ms,
                end,
                sampled,
            );
            std::fs::write(p, md).map_err(write_err(p))?;
            eprintln!("wrote {}", p.display());
        }
        Some(dir) => {
            let n = write_review_files(
                &cfg,
                &chosen,
                evidence.as_deref(),
                end,
                &opts,
                Some(dir),
                sampled,
            )?;
            eprintln!("wrote {n} review(s) to {}", dir.display());
        }
        None => {
            write_review_files(
                &cfg,
                &chosen,
                evidence.as_deref(),
                end,
                &opts,
                None,
                sampled,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `crisiswatch review --outbox`: reviews of the live service's incidents,
/// rebuilt from its outbox; the history (if given) gives the event figures.
fn review_outbox(
    a: &ReviewArgs,
    cfg: &Config,
    opts: &SummaryOptions,
    inputs: Option<&Inputs>,
    path: &Path,
) -> Result<ExitCode, CliError> {
    let ob = review::outbox::load(cfg, path)?;
    if a.list {
        print!("{}", review::outbox::list(&ob));
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = review::outbox::select(&ob, &a.incidents)?;
    if chosen.is_empty() {
        eprintln!("no incidents to review in {}", ob.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // One pass over the history for every alert of every chosen incident.
    let evidence: Option<Vec<review::Evidence>> = match inputs {
        Some(i) => {
            let alerts: Vec<&Incident> = chosen
                .iter()
                .flat_map(|c| c.alerts.iter().map(|a| &a.incident))
                .collect();
            Some(review::collect_evidence(cfg, &alerts, ob.end_ms, |f| {
                i.clone().quiet().for_each_line(|l, _| f(l)).map(|_| ())
            })?)
        }
        None => None,
    };
    let crises = opts.labels.as_deref().unwrap_or(&[]);
    let mut docs: Vec<(String, String)> = Vec::with_capacity(chosen.len());
    let mut first_alert = 0;
    for c in &chosen {
        let n = c.alerts.len();
        let ev = evidence
            .as_deref()
            .map(|e| e.get(first_alert..first_alert + n).unwrap_or_default());
        first_alert += n;
        let md = review::outbox::render(c, cfg, ev, crises, opts.grace_ms, ob.end_ms, &ob.path);
        docs.push((review::outbox::file_name(c), md));
    }
    match &a.output {
        Some(p) if docs.len() == 1 && !p.is_dir() => {
            std::fs::write(p, &docs[0].1).map_err(write_err(p))?;
            eprintln!("wrote {}", p.display());
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(write_err(dir))?;
            for (name, md) in &docs {
                let p = dir.join(name);
                std::fs::write(&p, md).map_err(write_err(&p))?;
            }
            eprintln!("wrote {} review(s) to {}", docs.len(), dir.display());
        }
        None => {
            let mut out = io::stdout().lock();
            for (k, (_, md)) in docs.iter().enumerate() {
                if k > 0 {
                    writeln!(out, "\n---\n").map_err(write_err(Path::new("stdout")))?;
                }
                write!(out, "{md}").map_err(write_err(Path::new("stdout")))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `crisiswatch test-rules`: exit 0 when every case passes, 1 otherwise.
pub fn test_rules(a: &TestRulesArgs) -> Result<ExitCode, CliError> {
    let mut results = Vec::new();
    let mut broken = 0;
    for f in &a.files {
        match rule_tests::run_file(f) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                broken += 1;
            }
        }
    }
    print!("{}", rule_tests::render(&results));
    let failed: usize = results.iter().map(|r| r.failed()).sum();
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
