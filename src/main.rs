//! The `crisiswatch` command line: `demo`, `replay`, `check`, `run`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crisiswatch::config::{Config, LoadError, ProcessEnv, EXAMPLE_CONFIG};
use crisiswatch::demo::{self, DemoOptions};
use crisiswatch::engine::Engine;
use crisiswatch::generator::{Generator, GeneratorSettings};
use crisiswatch::replay::replay;

/// Streaming early-warning monitor for customer crises.
#[derive(Parser, Debug)]
#[command(name = "crisiswatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole pipeline on a built-in simulated day with injected crises.
    Demo {
        /// Configuration file (default: config/crisiswatch.toml, else the embedded example).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Simulated seconds per wall-clock second (overrides demo.speed).
        #[arg(long)]
        speed: Option<f64>,
        /// Simulated period, e.g. "24h" (overrides demo.duration).
        #[arg(long)]
        duration: Option<humantime::Duration>,
        /// Generator seed (overrides demo.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Listen address for /metrics (overrides server.listen; "" disables).
        #[arg(long)]
        listen: Option<String>,
        /// Keep serving /metrics this long after the simulated period, e.g. "30s".
        #[arg(long)]
        linger: Option<humantime::Duration>,
        /// Also print pending transitions.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Replay a JSONL file (or "-" for stdin) and write alert transitions as JSONL.
    Replay {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Input events, one JSON object per line; "-" reads stdin.
        #[arg(long)]
        input: String,
        /// Output file for transitions (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Wall-clock time (RFC 3339) for the future-skew check; default: now.
        /// Set it to make replays of future-dated data reproducible.
        #[arg(long)]
        now: Option<String>,
    },
    /// Write the demo's synthetic stream as JSONL (for replay, or to produce to Kafka).
    Generate {
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Simulated start (RFC 3339).
        #[arg(long, default_value = "2026-11-20T00:00:00Z")]
        start: String,
        /// Simulated period.
        #[arg(long, default_value = "24h")]
        duration: humantime::Duration,
        /// Orders per minute at the daily peak.
        #[arg(long, default_value_t = 300.0)]
        orders_per_minute: f64,
        /// Leave out the injected crises.
        #[arg(long)]
        no_crises: bool,
        /// Leave out malformed lines, duplicates and out-of-order events.
        #[arg(long)]
        no_noise: bool,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also write the injected crises (ground truth) as JSONL to this file.
        #[arg(long)]
        crises: Option<PathBuf>,
    },
    /// Replay history (JSONL, gzip accepted) through the rules: incidents, time firing,
    /// flaps and peaks per rule and slice; with --labels, detection delay, missed
    /// crises, false incidents, precision and recall.
    Backtest(crisiswatch::backtest::cli::BacktestArgs),
    /// Evaluate many thresholds / `for` / windows of one rule in one pass over history.
    Tune(crisiswatch::backtest::cli::TuneArgs),
    /// Draw one rule's indicator for one slice over time (SVG), with thresholds,
    /// firing intervals and known crises.
    Chart(crisiswatch::backtest::cli::ChartArgs),
    /// Write a Markdown post-incident review of incidents from a backtest, a transitions file
    /// or the live service's outbox.
    Review(crisiswatch::backtest::cli::ReviewArgs),
    /// Run rule unit tests: input events and expected transitions (exit 1 on a failure).
    TestRules(crisiswatch::backtest::cli::TestRulesArgs),
    /// Incident outbox: list and retry dead-lettered notifications, or deliver what is queued.
    Outbox {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Outbox directory (default: incidents.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: crisiswatch::incident::cli::OutboxCommand,
    },
    /// Silences: mute matching incidents for a while (add, list, expire).
    Silence {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Outbox directory (default: incidents.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: crisiswatch::incident::cli::SilenceCommand,
    },
    /// Validate a configuration file and print every error.
    Check {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the live service: consume [sources.kafka], alert, serve /metrics.
    Run {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Debugging: append `topic,partition,offset` of every applied message to this file.
        #[arg(long)]
        applied_log: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRISISWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => Ok(check(&config)),
        Command::Outbox {
            config,
            data_dir,
            command,
        } => {
            let cfg = load(&config)?;
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(&cfg.incidents.data_dir));
            let ok = crisiswatch::incident::cli::outbox(&cfg, &dir, command, &mut io::stdout())?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Silence {
            config,
            data_dir,
            command,
        } => {
            let cfg = load(&config)?;
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(&cfg.incidents.data_dir));
            let ok = crisiswatch::incident::cli::silence(&dir, command, &mut io::stdout())?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Backtest(a) => Ok(crisiswatch::backtest::cli::backtest(&a)?),
        Command::Tune(a) => Ok(crisiswatch::backtest::cli::tune(&a)?),
        Command::Chart(a) => Ok(crisiswatch::backtest::cli::chart(&a)?),
        Command::Review(a) => Ok(crisiswatch::backtest::cli::review(&a)?),
        Command::TestRules(a) => Ok(crisiswatch::backtest::cli::test_rules(&a)?),
        Command::Run {
            config,
            applied_log,
        } => {
            let cfg = load(&config)?;
            let config_text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let opts = crisiswatch::run::RunOptions {
                applied_log,
                metrics: None,
                config_path: Some(config.clone()),
                config_text,
            };
            let rt = runtime()?;
            let result = rt.block_on(async {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = tx.send(true);
                });
                crisiswatch::run::run(&cfg, opts, rx).await
            });
            // `run` bounds the shutdown; a client still blocked on a dead broker must not hold the exit.
            rt.shutdown_background();
            let summary = result?;
            eprintln!(
                "Stopped: {} events applied, {} invalid, {} transitions.",
                summary.stats.applied,
                summary.stats.invalid_total(),
                summary.transitions
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            seed,
            start,
            duration,
            orders_per_minute,
            no_crises,
            no_noise,
            output,
            crises,
        } => {
            let start_ms = crisiswatch::event::parse_rfc3339_ms(&start)
                .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?;
            let duration_ms = i64::try_from(std::time::Duration::from(duration).as_millis())
                .context("--duration is too long")?;
            if !(orders_per_minute.is_finite() && orders_per_minute > 0.0) {
                anyhow::bail!("--orders-per-minute must be positive");
            }
            let mut gen = Generator::new(GeneratorSettings {
                seed,
                start_ms,
                duration_ms,
                orders_per_minute,
                crises: !no_crises,
                noise: !no_noise,
            });
            let mut writer: Box<dyn Write> = match output {
                Some(p) => Box::new(BufWriter::new(
                    File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(BufWriter::new(io::stdout().lock())),
            };
            let mut lines = Vec::new();
            let mut t = start_ms;
            let end = start_ms.saturating_add(duration_ms);
            while t < end {
                t = t.saturating_add(3_600_000).min(end);
                lines.clear();
                gen.generate_until(t, &mut lines);
                for l in &lines {
                    writer.write_all(l)?;
                    writer.write_all(b"\n")?;
                }
            }
            writer.flush()?;
            if let Some(p) = crises {
                let mut f = BufWriter::new(
                    File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
                );
                for c in gen.crises() {
                    let slice: serde_json::Map<String, serde_json::Value> = c
                        .slice
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    let line = serde_json::json!({
                        "name": c.name,
                        "kind": c.kind,
                        "slice": slice,
                        "start": crisiswatch::event::format_ts(c.start_ms),
                        "end": crisiswatch::event::format_ts(c.end_ms),
                        "description": c.description,
                    });
                    writeln!(f, "{line}")?;
                }
                f.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            config,
            input,
            output,
            now,
        } => {
            let cfg = load(&config)?;
            let mut engine = Engine::new(&cfg)?;
            let now_ms = match now {
                Some(s) => Some(
                    crisiswatch::event::parse_rfc3339_ms(&s)
                        .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
                ),
                None => Some(chrono::Utc::now().timestamp_millis()),
            };
            let reader: Box<dyn io::BufRead> = if input == "-" {
                Box::new(BufReader::new(io::stdin().lock()))
            } else {
                let f = File::open(&input).with_context(|| format!("cannot open input {input}"))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            };
            let mut writer: Box<dyn Write> = match output {
                Some(p) => Box::new(BufWriter::new(
                    File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(BufWriter::new(io::stdout().lock())),
            };
            // With HTTP receivers configured, incidents are delivered too (stdout unchanged).
            let mut incidents = crisiswatch::incident::replay::ReplayDelivery::start(&cfg)?;
            let summary = replay(&mut engine, reader, &mut writer, now_ms, |t| {
                if let Some(d) = incidents.as_mut() {
                    d.on_transition(t);
                }
            })?;
            drop(writer);
            eprintln!("{summary}");
            if let Some(d) = incidents {
                eprintln!("{}", d.finish(engine.clock())?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            speed,
            duration,
            seed,
            listen,
            linger,
            verbose,
        } => {
            let path = config.or_else(|| {
                let default = PathBuf::from("config/crisiswatch.toml");
                default.exists().then_some(default)
            });
            let (mut cfg, config_text) = match &path {
                Some(p) => (
                    load(p)?,
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                ),
                None => (
                    Config::from_toml_str(EXAMPLE_CONFIG, &ProcessEnv)
                        .map_err(|e| anyhow::anyhow!("embedded example config: {e}"))?,
                    EXAMPLE_CONFIG.to_string(),
                ),
            };
            if let Some(s) = speed {
                cfg.demo.speed = s;
            }
            if let Some(d) = duration {
                cfg.demo.duration = crisiswatch::config::Dur(d.into());
            }
            if let Some(s) = seed {
                cfg.demo.seed = s;
            }
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            let errors = cfg.validate();
            if !errors.is_empty() {
                return Err(anyhow::anyhow!("{}", LoadError::Invalid(errors)));
            }
            let opts = DemoOptions {
                config_path: path,
                config_text,
                linger: linger.map(Into::into).unwrap_or(Duration::ZERO),
                verbose,
                no_http: false,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = tx.send(true);
                });
                let mut stdout = io::stdout();
                demo::run(&cfg, &opts, &mut stdout, rx).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(path: &Path) -> ExitCode {
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
            eprintln!("error: cannot read {path}: {source}");
            ExitCode::from(2)
        }
        Err(LoadError::Invalid(errors)) => {
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            for e in errors {
                eprintln!("  - {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// The async runtime of the long-running commands (2 workers: the work is one
/// engine task; the Kafka consumer has its own thread).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
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
