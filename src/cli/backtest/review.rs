//! `crisiswatch review`: Markdown post-incident reviews, of incidents from a
//! backtest, a transitions file or the live service's outbox.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::backtest::report::{Incident, SummaryOptions};
use crate::backtest::review;
use crate::backtest::Inputs;
use crate::config::Config;

use crate::cli::args::{ConfigArg, NowArg};

use super::history::{history, KafkaArgs};
use super::{load_config, read_paths, summary_options, write_err, CliError, TruthArgs};

/// `review`'s other way out of a `--output` that is a file.
const ONE_INCIDENT: &str = ", or pick one incident (--incident KEY)";

/// `crisiswatch review`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReviewArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// History: JSONL files (gzip accepted). Without --transitions or --outbox the
    /// incidents come from a backtest of it; with them it gives the event figures.
    #[arg(long, num_args = 1..)]
    pub(crate) input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    /// Incidents from a transitions JSONL file (`replay`/`backtest --transitions`
    /// output, or an export of the live service's transitions) instead of a backtest.
    #[arg(long)]
    pub(crate) transitions: Option<PathBuf>,
    /// Incidents from the live service's outbox, opened read-only (the service may
    /// run): its data directory (as `outbox --data-dir`) or the outbox.sqlite file
    /// [default when given without a value: incidents.data_dir].
    #[arg(long, value_name = "DIR_OR_FILE", num_args = 0..=1, conflicts_with = "transitions")]
    pub(crate) outbox: Option<Option<PathBuf>>,
    /// The incident: its dedup key, or a part of it that matches one (repeatable; default: all).
    /// With --outbox, an incident key or the dedup key of one of its alerts.
    #[arg(long = "incident", value_name = "KEY")]
    pub(crate) incidents: Vec<String>,
    /// List the incidents (key, severity, times) instead of writing reviews.
    #[arg(long, conflicts_with = "incidents")]
    pub(crate) list: bool,
    /// Ground truth and matching options.
    #[command(flatten)]
    pub(crate) truth: TruthArgs,
    /// Output: a file for one incident, a directory for several [default: stdout].
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// The wall clock of the future-skew check (of the backtest and of the event figures).
    #[command(flatten)]
    pub(crate) now: NowArg,
}

/// `crisiswatch review`: Markdown reviews of incidents.
pub fn review(a: &ReviewArgs) -> Result<ExitCode, CliError> {
    let mut reads = read_paths(&a.config, &a.input, Some(&a.truth));
    reads.extend(
        a.transitions
            .iter()
            .map(|p| (p.as_path(), "transitions file")),
    );
    if let Some(Some(o)) = &a.outbox {
        reads.push((o.as_path(), "outbox"));
    }
    // `--output` is a file or a directory (made, parents too, for several
    // reviews): only overwriting an input is refused up front.
    crate::cli::args::refuse_overwriting_inputs(reads.iter().copied(), a.output.as_deref())?;
    let cfg = load_config(&a.config)?;
    let opts = summary_options(&a.truth, &cfg)?;
    let now_ms = a.now.ms()?;
    let inputs = if a.input.is_empty() && a.kafka.kafka_topics.is_empty() {
        None
    } else {
        let i = history(&cfg, &a.input, &a.kafka)?;
        if i.read_once() {
            return Err(CliError::Usage(
                "review reads the input more than once: give files, not \"-\" or a pipe".into(),
            ));
        }
        Some(i)
    };
    if let Some(dir) = &a.outbox {
        let path = dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&cfg.incidents.data_dir));
        return review_outbox(a, &cfg, &opts, inputs.as_ref(), &path, now_ms);
    }
    let (mut incidents, end) = match (&a.transitions, &inputs) {
        (Some(t), _) => review::incidents_from_transitions(&cfg, t)?,
        (None, Some(i)) => {
            let r = crate::backtest::run(&cfg, i, &opts, Some(now_ms), None)?;
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
    let mut sampled = a.transitions.is_none();
    if let (Some(t), Some(i)) = (&a.transitions, &inputs) {
        // The file holds the values at transitions only: with the history
        // at hand, the peaks come from a backtest of it, sampled at every
        // slide boundary, as `backtest --review-dir` gives them.
        let r = crate::backtest::run(&cfg, i, &opts, Some(now_ms), None)?;
        sampled = review::sample_peaks(&mut incidents, &r.incidents);
        if !sampled {
            crate::say!(
                "note: not every incident of {} is one a backtest of the history with this configuration gives: peaks are the transitions' values",
                t.display()
            );
        }
    }
    let chosen = review::select(&incidents, &a.incidents)?;
    if chosen.is_empty() {
        crate::say!("no incidents to review");
        return Ok(ExitCode::SUCCESS);
    }
    let evidence = match &inputs {
        Some(i) => Some(review::collect_evidence(
            &cfg,
            &chosen,
            end,
            Some(now_ms),
            |f| i.clone().quiet().for_each_line(|l, _| f(l)).map(|_| ()),
        )?),
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
            crate::say!("wrote {}", p.display());
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
            crate::say!("wrote {n} review(s) to {}", dir.display());
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
    now_ms: i64,
) -> Result<ExitCode, CliError> {
    let ob = review::outbox::load(cfg, path)?;
    if a.list {
        print!("{}", review::outbox::list(&ob));
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = review::outbox::select(&ob, &a.incidents)?;
    if chosen.is_empty() {
        crate::say!("no incidents to review in {}", ob.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // One pass over the history for every alert of every chosen incident.
    let evidence: Option<Vec<review::Evidence>> = match inputs {
        Some(i) => {
            let alerts: Vec<&Incident> = chosen
                .iter()
                .flat_map(|c| c.alerts.iter().map(|a| &a.incident))
                .collect();
            Some(review::collect_evidence(
                cfg,
                &alerts,
                ob.end_ms,
                Some(now_ms),
                |f| i.clone().quiet().for_each_line(|l, _| f(l)).map(|_| ()),
            )?)
        }
        None => None,
    };
    let crises = opts.labels.as_deref().unwrap_or(&[]);
    let names = review::file_names(chosen.iter().map(|c| c.key.as_str()))?;
    let mut docs: Vec<(String, String)> = Vec::with_capacity(chosen.len());
    let mut first_alert = 0;
    for (c, name) in chosen.iter().zip(names) {
        let n = c.alerts.len();
        let ev = evidence
            .as_deref()
            .map(|e| e.get(first_alert..first_alert + n).unwrap_or_default());
        first_alert += n;
        let md = review::outbox::render(c, cfg, ev, crises, opts.grace_ms, ob.end_ms, &ob.path);
        docs.push((name, md));
    }
    match &a.output {
        Some(p) if docs.len() == 1 && !p.is_dir() => {
            std::fs::write(p, &docs[0].1).map_err(write_err(p))?;
            crate::say!("wrote {}", p.display());
        }
        Some(dir) => {
            super::make_dir(dir, ONE_INCIDENT)?;
            for (name, md) in &docs {
                let p = dir.join(name);
                std::fs::write(&p, md).map_err(write_err(&p))?;
            }
            crate::say!("wrote {} review(s) to {}", docs.len(), dir.display());
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

/// Gathers evidence and writes one review per incident into `dir` (or
/// stdout when `dir` is `None`). Returns the number written.
pub fn write_reviews(
    cfg: &Config,
    inputs: &Inputs,
    incidents: &[&Incident],
    end_ms: i64,
    now_ms: i64,
    opts: &SummaryOptions,
    dir: Option<&Path>,
) -> Result<usize, CliError> {
    let evidence = review::collect_evidence(cfg, incidents, end_ms, Some(now_ms), |f| {
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
    // Every name first: one file per incident, and nothing written when two
    // would meet.
    let paths: Option<Vec<PathBuf>> = match dir {
        Some(d) => {
            let names = review::file_names(incidents.iter().map(|i| i.dedup_key.as_str()))?;
            super::make_dir(d, ONE_INCIDENT)?;
            Some(names.iter().map(|n| d.join(n)).collect())
        }
        None => None,
    };
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
        match paths.as_ref().and_then(|p| p.get(k)) {
            Some(p) => std::fs::write(p, md).map_err(write_err(p))?,
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
