//! `crisiswatch tune`: many candidate settings of one rule, evaluated in one
//! pass over the history.
//!
//! ```text
//! line ─► decode ─► dedup ─► relevant to the rule? ─┬─► Engine(window 1) ─┬─► policy 1 ─► Tracker 1
//!        (once)     (once)   (selectors, once)      │                     └─► policy 2 ─► Tracker 2
//!                                                   └─► Engine(window 2) ─► …          ─► table
//! ```
//!
//! Candidates are the cartesian product of `--vary` dimensions:
//!
//! * `threshold=0.02..0.08:0.01` (or a list `0.03,0.05`): the rule's
//!   *lowest-severity* threshold. The higher severities and the `clear`
//!   threshold move with it **in proportion** (×new/old), so the ladder keeps
//!   its shape and stays valid; when the old threshold is 0 or the sign would
//!   flip they are **shifted** by new − old instead.
//! * `clear=…`: the clear threshold itself (overrides the proportional move).
//! * `for=0m,5m,15m`, `keep_firing_for=…`, `window=15m,30m,1h` (durations,
//!   lists or `a..b:step`). A window must stay a multiple of the rule's slide.
//!
//! Each candidate is a copy of the configuration holding only the tuned rule
//! (other rules cannot change its transitions). Candidates that differ only in
//! their alert policy (`threshold`, `clear`, `for`, `keep_firing_for`) share
//! one engine: it computes the windows once and the candidates' alert state
//! machines run over its recorded evaluations ([`shared`]); so `--vary
//! threshold=…` over N values costs about one engine, and each distinct
//! `window` one more. Reading, decompression, decoding and deduplication
//! happen once per line for all (the engines' own dedup is off; one shared
//! [`Dedup`](crate::dedup::Dedup) sees the same ids at the same clock, so the result is the same),
//! and an event none of the rule's selectors matches only advances the
//! engines' clocks; the others reach them carrying only the attributes the
//! rule reads. Every candidate row equals a `backtest` of that candidate's
//! config (when the group cap is reached, sharing could break that: the
//! history is then read again with one engine per candidate).
//!
//! The table marks the Pareto-optimal candidates (no other has fewer or equal
//! false incidents, missed crises and median delay, with one strictly fewer)
//! and the chosen one: the fewest missed crises, then false incidents, then
//! the shortest median delay, then fewest flaps, then least time firing.

use std::str::FromStr;

use serde::Serialize;

use crate::config::{Dur, RuleConfig, Thresholds};
use crate::engine::EngineError;

use super::input::InputError;
use super::report::fmt_value;

mod output;
mod pass;
mod rows;
pub mod shared;

pub use output::{render_table, snippet, snippet_as_written, write_csv, WrittenRules};
pub use pass::{run, run_lines, TuneOptions, Tuner};
pub(crate) use pass::{run_separate, SEPARATE_PER_PASS};
pub use rows::{Row, TuneResult};

/// Most candidates in one run: each is an engine in memory.
pub(crate) const MAX_CANDIDATES: usize = 512;

/// Errors of a tuning run.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A `--vary` argument does not parse.
    #[error("--vary {arg:?}: {message}")]
    Vary {
        /// The argument.
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// The rule is not in the configuration.
    #[error("no rule named {name:?} in the configuration (rules: {known})")]
    UnknownRule {
        /// The name asked for.
        name: String,
        /// The configured rules.
        known: String,
    },
    /// Too many combinations.
    #[error(
        "{0} candidates is more than {MAX_CANDIDATES}: use coarser steps or fewer --vary values"
    )]
    TooMany(usize),
    /// A candidate makes an invalid rule.
    #[error("candidate {candidate} is not a valid rule: {errors} (adjust the --vary range)")]
    Invalid {
        /// The candidate's label.
        candidate: String,
        /// The validation errors.
        errors: String,
    },
    /// Nothing in the history to tune on.
    #[error(
        "the history holds no valid event ({0} lines read): nothing to judge thresholds on \
         (`crisiswatch backtest` on it shows the invalid reasons; a history stamped after \
         this machine's clock is future_timestamp: pass --now with a time after it)"
    )]
    NoEvents(u64),
    /// `--pick` is out of range.
    #[error("--pick {0} is not a candidate number (1..={1})")]
    Pick(usize, usize),
    /// Reading the history failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing an output failed.
    #[error("cannot write {what}: {source}")]
    Write {
        /// Which output.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The snippet could not be rendered.
    #[error("cannot render the rule as TOML: {0}")]
    Toml(String),
}

// === dimensions ===

/// A tunable setting of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Dim {
    /// The window length.
    Window,
    /// The lowest-severity threshold (the others and `clear` follow).
    Threshold,
    /// The clear threshold.
    Clear,
    /// The pending duration.
    For,
    /// The keep-firing duration.
    KeepFiringFor,
    /// The rule's `confidence` (its value is a confidence bound).
    Confidence,
}

impl Dim {
    /// The name used in `--vary`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dim::Window => "window",
            Dim::Threshold => "threshold",
            Dim::Clear => "clear",
            Dim::For => "for",
            Dim::KeepFiringFor => "keep_firing_for",
            Dim::Confidence => "confidence",
        }
    }

    fn is_duration(self) -> bool {
        matches!(self, Dim::Window | Dim::For | Dim::KeepFiringFor)
    }
}

/// A value of a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Val {
    /// A threshold.
    Num(f64),
    /// A duration.
    Dur(Dur),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Num(v) => f.write_str(&fmt_value(*v)),
            Val::Dur(d) if d.0.is_zero() => f.write_str("0s"),
            Val::Dur(d) => write!(f, "{d}"),
        }
    }
}

/// One `--vary` argument: a dimension and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    /// Which setting.
    pub(crate) dim: Dim,
    /// Its values, in order.
    pub(crate) values: Vec<Val>,
}

impl FromStr for Vary {
    type Err = TuneError;

    fn from_str(arg: &str) -> Result<Self, TuneError> {
        let err = |m: String| TuneError::Vary {
            arg: arg.to_string(),
            message: m,
        };
        let (name, spec) = arg
            .split_once('=')
            .ok_or_else(|| err("expected NAME=VALUES, e.g. threshold=0.02..0.08:0.01".into()))?;
        let dim = match name.trim() {
            "window" => Dim::Window,
            "threshold" => Dim::Threshold,
            "clear" => Dim::Clear,
            "for" => Dim::For,
            "keep_firing_for" => Dim::KeepFiringFor,
            "confidence" => Dim::Confidence,
            other => {
                return Err(err(format!(
                "unknown setting {other:?}; use threshold, clear, for, keep_firing_for, window or confidence"
            )))
            }
        };
        let values = if let Some((range, step)) = spec.split_once(':') {
            let (lo, hi) = range
                .split_once("..")
                .ok_or_else(|| err("a range is LOW..HIGH:STEP".into()))?;
            let (lo, hi, step) = (
                parse_num(dim, lo).map_err(&err)?,
                parse_num(dim, hi).map_err(&err)?,
                parse_num(dim, step).map_err(&err)?,
            );
            if step.is_nan() || step <= 0.0 || hi < lo {
                return Err(err("the step must be positive and HIGH ≥ LOW".into()));
            }
            let n = ((hi - lo) / step + 1e-9).floor() as usize + 1;
            if n > MAX_CANDIDATES {
                return Err(TuneError::TooMany(n));
            }
            (0..n)
                .map(|i| to_val(dim, round_sig(lo + i as f64 * step)))
                .collect()
        } else {
            spec.split(',')
                .map(|s| parse_num(dim, s).map(|v| to_val(dim, v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?
        };
        if values.is_empty() {
            return Err(err("no values".into()));
        }
        Ok(Vary { dim, values })
    }
}

/// A number, or a duration in ms for duration dimensions.
fn parse_num(dim: Dim, s: &str) -> Result<f64, String> {
    let s = s.trim();
    if dim.is_duration() {
        s.parse::<crate::config::Dur>()
            .map(|d| d.0.as_millis() as f64)
    } else {
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{s:?} is not a number")),
        }
    }
}

fn to_val(dim: Dim, v: f64) -> Val {
    if dim.is_duration() {
        Val::Dur(Dur::from_ms(v.max(0.0).round() as u64))
    } else {
        Val::Num(v)
    }
}

/// Rounds to 9 significant digits, so 0.02 + 3 × 0.01 prints as 0.05.
fn round_sig(v: f64) -> f64 {
    round_to(v, 9)
}

/// Rounds to `digits` significant digits.
fn round_to(v: f64, digits: usize) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    format!("{v:.*e}", digits.saturating_sub(1))
        .parse()
        .unwrap_or(v)
}

// === candidates ===

/// One combination of settings, and the rule it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The settings, in dimension order.
    pub(crate) settings: Vec<(Dim, Val)>,
    /// The rule with these settings.
    pub rule: RuleConfig,
}

impl Candidate {
    /// `threshold=0.05 for=5m`.
    pub fn label(&self) -> String {
        if self.settings.is_empty() {
            return "current".to_string();
        }
        self.settings
            .iter()
            .map(|(d, v)| format!("{}={v}", d.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every combination of `varies` applied to `base`, first `--vary` slowest.
pub(crate) fn candidates(base: &RuleConfig, varies: &[Vary]) -> Result<Vec<Candidate>, TuneError> {
    for (i, v) in varies.iter().enumerate() {
        if varies[..i].iter().any(|w| w.dim == v.dim) {
            return Err(TuneError::Vary {
                arg: v.dim.as_str().to_string(),
                message: "given twice".into(),
            });
        }
    }
    let total = varies
        .iter()
        .try_fold(1usize, |n, v| n.checked_mul(v.values.len()))
        .unwrap_or(usize::MAX);
    if total > MAX_CANDIDATES {
        return Err(TuneError::TooMany(total));
    }
    let mut combos: Vec<Vec<(Dim, Val)>> = vec![Vec::new()];
    for v in varies {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                v.values.iter().map(move |&x| {
                    let mut c = c.clone();
                    c.push((v.dim, x));
                    c
                })
            })
            .collect();
    }
    Ok(combos
        .into_iter()
        .map(|settings| {
            let rule = apply(base, &settings);
            Candidate { settings, rule }
        })
        .collect())
}

/// The configuration of a candidate as `backtest` would run it (for checks).
pub fn backtest_config(cfg: &crate::config::Config, rule: &RuleConfig) -> crate::config::Config {
    let mut c = cfg.clone();
    for r in &mut c.rules {
        if r.name == rule.name {
            *r = rule.clone();
        }
    }
    c
}

/// `base` with `settings` applied (window, then threshold, then clear, then durations).
pub(crate) fn apply(base: &RuleConfig, settings: &[(Dim, Val)]) -> RuleConfig {
    let mut rule = base.clone();
    let mut sorted = settings.to_vec();
    sorted.sort_by_key(|(d, _)| *d);
    for (dim, val) in sorted {
        match (dim, val) {
            (Dim::Window, Val::Dur(d)) => rule.window = d,
            (Dim::Threshold, Val::Num(v)) => set_lowest_threshold(&mut rule, v),
            (Dim::Clear, Val::Num(v)) => rule.clear = Some(v),
            (Dim::For, Val::Dur(d)) => rule.for_ = d,
            (Dim::KeepFiringFor, Val::Dur(d)) => rule.keep_firing_for = d,
            (Dim::Confidence, Val::Num(v)) => rule.confidence = Some(v),
            _ => {}
        }
    }
    rule
}

/// Sets the lowest-severity threshold to `v`, moving the others and an
/// explicit `clear` in proportion (or by the same shift when that cannot work).
fn set_lowest_threshold(rule: &mut RuleConfig, v: f64) {
    let Some(&(_, old)) = rule.thresholds.levels().first() else {
        return;
    };
    let proportional = old != 0.0 && v / old > 0.0;
    // Derived levels are rounded to 4 significant digits so that the snippet
    // reads like a hand-written rule; the candidate is exactly what is printed.
    let map = |x: f64| {
        if proportional {
            round_to(x * v / old, 4)
        } else {
            round_to(x + (v - old), 4)
        }
    };
    let t = &rule.thresholds;
    let mut first = true;
    let mut next = |x: Option<f64>| {
        x.map(|x| {
            if first {
                first = false;
                v
            } else {
                map(x)
            }
        })
    };
    rule.thresholds = Thresholds {
        info: next(t.info),
        warning: next(t.warning),
        error: next(t.error),
        critical: next(t.critical),
    };
    rule.clear = rule.clear.map(map);
}

#[cfg(test)]
mod tests;
