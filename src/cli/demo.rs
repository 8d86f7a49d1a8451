//! `crisiswatch demo`: the whole pipeline on a built-in simulated day.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Dur, LoadError, ProcessEnv, EXAMPLE_CONFIG};
use crate::demo::{self, DemoOptions};

use super::args::{load, runtime};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
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
        duration: Option<crate::config::Dur>,
        /// Generator seed (overrides demo.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Listen address for /metrics (overrides server.listen; "" disables).
        #[arg(long)]
        listen: Option<String>,
        /// Keep serving /metrics, the console and the API this long after the
        /// simulated period, e.g. "30s". The incident stage has stopped by
        /// then: nothing more is sent (Alertmanager resolves open incidents at
        /// their endsAt) and reloads, acknowledgements and closes get 503.
        #[arg(long)]
        linger: Option<crate::config::Dur>,
        /// Also print every per-rule transition: pending too, beside OPEN (firing),
        /// ESCALATE and RESOLVE.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        shape: super::generate::ShapeArgs,
    },
}

impl Commands {
    /// Runs the simulated period (stopped early by SIGINT or SIGTERM).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Commands::Demo {
            config,
            speed,
            duration,
            seed,
            listen,
            linger,
            verbose,
            shape,
        } = self;
        let shape = shape.shape()?;
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
            cfg.demo.duration = Dur(d.into());
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
            shape,
        };
        runtime()?.block_on(async {
            let shutdown = crate::signal::shutdown_watch();
            let mut stdout = std::io::stdout();
            demo::run(&cfg, &opts, &mut stdout, shutdown).await
        })?;
        Ok(ExitCode::SUCCESS)
    }
}
