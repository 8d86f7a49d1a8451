//! `crisiswatch replay`: a JSONL file through the core, transitions out.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::Engine;
use crate::incident::replay_delivery::ReplayDelivery;
use crate::replay::replay_with;

use super::args::{refuse_overwriting_inputs, ConfigArg, NowArg};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Commands {
    /// Replay a JSONL file (or "-" for stdin) and write alert transitions as JSONL.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Input events, one JSON object per line; "-" reads stdin.
        #[arg(long)]
        input: String,
        /// Output file for transitions (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        now: NowArg,
    },
}

impl Commands {
    /// Replays the input; the summary (and the incidents delivered) go to stderr.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Commands::Replay {
            config,
            input,
            output,
            now,
        } = self;
        let mut reads = vec![(config.config.as_path(), "configuration")];
        if input != "-" {
            reads.push((Path::new(&input), "input"));
        }
        refuse_overwriting_inputs(reads, output.as_deref())?;
        let cfg = config.load()?;
        let mut engine = Engine::new(&cfg)?;
        engine.watch_cases();
        let now_ms = Some(now.ms()?);
        let mut raw: Box<dyn io::BufRead> = if input == "-" {
            Box::new(BufReader::new(io::stdin().lock()))
        } else {
            let f = File::open(&input).with_context(|| format!("cannot open input {input}"))?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                anyhow::bail!(
                    "cannot read input {input}: it is a directory: replay reads one file (or stdin); `backtest --input DIR/*.jsonl` reads several"
                );
            }
            Box::new(BufReader::with_capacity(1 << 20, f))
        };
        // A gzipped input is read through gzip, as `backtest` reads it.
        let gz = crate::backtest::input::is_gzip(&mut raw)
            .with_context(|| format!("cannot read input {input}"))?;
        let mut reader: Box<dyn io::BufRead> = if gz {
            Box::new(BufReader::with_capacity(
                1 << 20,
                crate::backtest::input::GzMembers::new(raw),
            ))
        } else {
            raw
        };
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read input {input}"))?;
        if crate::backtest::input::is_utf16(head) {
            return Err(crate::backtest::input::InputError::utf16(&input, gz).into());
        }
        // Another archive or a JSON array: refused with the command that
        // converts it, as the other history tools refuse it.
        if let Some((what, tool)) = crate::backtest::input::other_format(head) {
            let convert = if gz {
                format!("zcat {input} | {tool}")
            } else {
                format!("{tool} {input}")
            };
            return Err(crate::backtest::input::InputError::Format {
                path: input.clone(),
                what,
                convert,
            }
            .into());
        }
        let mut writer: Box<dyn Write> = match output {
            Some(p) => Box::new(BufWriter::new(
                File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(BufWriter::new(io::stdout().lock())),
        };
        // With HTTP receivers configured, incidents are delivered too (stdout unchanged).
        // Both hooks take the incident side in turn, never at once.
        let incidents = std::cell::RefCell::new(ReplayDelivery::start(&cfg)?);
        let summary = replay_with(
            &mut engine,
            reader,
            &mut writer,
            now_ms,
            |t| {
                if let Some(d) = incidents.borrow_mut().as_mut() {
                    d.on_transition(t);
                }
            },
            |engine| {
                if let Some(d) = incidents.borrow_mut().as_mut() {
                    d.on_applied(engine);
                }
            },
        )
        .map_err(|e| match e {
            crate::replay::ReplayError::Read(e) if gz => {
                anyhow::anyhow!("cannot read input {input}: {e} (a truncated or corrupt .gz file?)")
            }
            crate::replay::ReplayError::Read(e) => {
                anyhow::anyhow!("cannot read input {input}: {e}")
            }
            e => e.into(),
        })?;
        drop(writer);
        crate::say!("{summary}");
        summary.warn((input != "-").then_some(input.as_str()));
        crate::backtest::rule_warnings::warn_silent_rules("replay", &engine);
        for i in 0..engine.rule_count() {
            let n = engine.rule_stats(i).group_overflow;
            if n > 0 {
                crate::say!(
                    "warning: rule {}: {n} events refused at engine.max_groups_per_rule ({}): \
                     slices past the cap are not watched; raise it or slice less finely",
                    engine.rule_config(i).name,
                    cfg.engine.max_groups_per_rule
                );
            }
        }
        if summary.lines == 0 {
            crate::say!(
                "warning: input {} holds no event line (it is empty or blank): nothing was replayed",
                if input == "-" { "stdin" } else { input.as_str() }
            );
        }
        if summary.lines > 0 && summary.stats.invalid_total() == summary.lines {
            crate::say!(
                "warning: none of the {} lines read is a valid event (see the reasons above); \
                 nothing reached the rules",
                summary.lines
            );
        }
        if let Some(d) = incidents.into_inner() {
            crate::say!("{}", d.finish(&mut engine)?);
        }
        Ok(ExitCode::SUCCESS)
    }
}
