//! `crisiswatch generate`: the demo's synthetic stream as JSONL.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::event::{format_ts, parse_rfc3339_ms};
use crate::generator::{Generator, GeneratorSettings};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
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
}

/// The largest `--orders-per-minute`: a day of it is already some
/// 1.7 billion events; more would run for days before writing a line.
const MAX_ORDERS_PER_MINUTE: f64 = 1_000_000.0;

impl Commands {
    /// Writes the stream an hour of simulated time at a time, then the crises.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Commands::Generate {
            seed,
            start,
            duration,
            orders_per_minute,
            no_crises,
            no_noise,
            output,
            crises,
        } = self;
        let start_ms = parse_rfc3339_ms(&start)
            .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?;
        let duration_ms = i64::try_from(std::time::Duration::from(duration).as_millis())
            .context("--duration is too long")?;
        if !(orders_per_minute.is_finite() && orders_per_minute > 0.0) {
            anyhow::bail!("--orders-per-minute must be positive");
        }
        if orders_per_minute > MAX_ORDERS_PER_MINUTE {
            anyhow::bail!(
                "--orders-per-minute {orders_per_minute} is more than {MAX_ORDERS_PER_MINUTE} (about {} events a day): generate several files with other seeds instead",
                (MAX_ORDERS_PER_MINUTE * 1440.0 * 1.2) as u64
            );
        }
        let mut gen = Generator::new(GeneratorSettings {
            seed,
            start_ms,
            duration_ms,
            orders_per_minute,
            crises: !no_crises,
            noise: !no_noise,
            shape: crate::generator::TrafficShape::default(),
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
                    "start": format_ts(c.start_ms),
                    "end": format_ts(c.end_ms),
                    "description": c.description,
                });
                writeln!(f, "{line}")?;
            }
            f.flush()?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
