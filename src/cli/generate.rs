//! `crisiswatch generate`: the demo's synthetic stream as JSONL.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::event::{format_ts, parse_rfc3339_ms};
use crate::generator::{Generator, GeneratorSettings, TrafficShape};

/// The shape of the generated traffic (`TrafficShape`): every knob keeps
/// the demo's value unless given, so the default stream is the demo's.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ShapeArgs {
    /// Volume on every slice, × the demo's (0.1–10; crises scale with it).
    #[arg(long, help_heading = "Traffic shape")]
    volume: Option<f64>,
    /// Share of ordinary complaints arriving on the social channel (demo 0.04; consumer brands up to 0.3).
    #[arg(long, help_heading = "Traffic shape")]
    social_share: Option<f64>,
    /// Share of ordinary complaints in a severe category (demo 0.25).
    #[arg(long, help_heading = "Traffic shape")]
    severe_share: Option<f64>,
    /// Feedback responses per order (demo 0.10).
    #[arg(long, help_heading = "Traffic shape")]
    feedback_rate: Option<f64>,
    /// Cancellations per order (demo 0.004).
    #[arg(long, help_heading = "Traffic shape")]
    cancel_rate: Option<f64>,
    /// Products sold, 2–5 (demo 5; the crises need the first two).
    #[arg(long, help_heading = "Traffic shape")]
    products: Option<usize>,
    /// Regions served, 3–4 (demo 4; the churn wave is in the third).
    #[arg(long, help_heading = "Traffic shape")]
    regions: Option<usize>,
    /// Volume on Saturdays and Sundays (UTC) relative to weekdays (demo 1: no weekly rhythm).
    #[arg(long, help_heading = "Traffic shape")]
    weekend_factor: Option<f64>,
}

impl ShapeArgs {
    /// The shape these knobs give, or every problem with them.
    pub(crate) fn shape(&self) -> anyhow::Result<TrafficShape> {
        let d = TrafficShape::default();
        let shape = TrafficShape {
            volume: self.volume.unwrap_or(d.volume),
            social_share: self.social_share.unwrap_or(d.social_share),
            severe_share: self.severe_share.unwrap_or(d.severe_share),
            feedback_rate: self.feedback_rate.unwrap_or(d.feedback_rate),
            cancel_rate: self.cancel_rate.unwrap_or(d.cancel_rate),
            products: self.products.unwrap_or(d.products),
            regions: self.regions.unwrap_or(d.regions),
            weekend_factor: self.weekend_factor.unwrap_or(d.weekend_factor),
        };
        let problems = shape.problems();
        if !problems.is_empty() {
            anyhow::bail!(
                "traffic shape: --{}",
                problems.join("; --").replace('_', "-")
            );
        }
        Ok(shape)
    }
}

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
        duration: crate::config::Dur,
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
        #[command(flatten)]
        shape: ShapeArgs,
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
            shape,
        } = self;
        let shape = shape.shape()?;
        let start_ms = parse_rfc3339_ms(&start)
            .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?;
        let duration_ms = i64::try_from(std::time::Duration::from(duration).as_millis())
            .context("--duration is too long")?;
        if duration_ms == 0 {
            anyhow::bail!("--duration 0s generates nothing: give a period, e.g. --duration 24h");
        }
        if !(orders_per_minute.is_finite() && orders_per_minute > 0.0) {
            anyhow::bail!("--orders-per-minute must be positive");
        }
        if orders_per_minute > MAX_ORDERS_PER_MINUTE {
            anyhow::bail!(
                "--orders-per-minute {orders_per_minute} is more than {MAX_ORDERS_PER_MINUTE} (about {} events a day): generate several files with other seeds instead",
                (MAX_ORDERS_PER_MINUTE * 1440.0 * 1.2) as u64
            );
        }
        // RFC 3339 times end with year 9999: a period past it would stop
        // there, short of what was asked, with crises in year +10000.
        const LAST_MS: i64 = 253_402_300_799_999;
        if start_ms.saturating_add(duration_ms) > LAST_MS.saturating_add(1) {
            anyhow::bail!(
                "--start {start} plus --duration {duration} ends after 9999-12-31T23:59:59.999Z, the last time events can carry: start earlier or shorten the period"
            );
        }
        if let (Some(o), Some(c)) = (&output, &crises) {
            super::args::refuse_overwriting_inputs(
                std::iter::empty::<(&std::path::Path, &'static str)>(),
                [o.as_path(), c.as_path()],
            )?;
        }
        let mut gen = Generator::new(GeneratorSettings {
            seed,
            start_ms,
            duration_ms,
            orders_per_minute,
            crises: !no_crises,
            noise: !no_noise,
            shape,
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
