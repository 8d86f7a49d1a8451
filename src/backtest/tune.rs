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
//! [`Dedup`] sees the same ids at the same clock, so the result is the same),
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

use std::fmt::Write as _;
use std::io::Write;
use std::str::FromStr;

use serde::Serialize;

use crate::alert::Transition;
use crate::config::{Config, Dur, RuleConfig, Thresholds};
use crate::dedup::Dedup;
use crate::engine::{Engine, EngineError};
use crate::event::{decode, Event};
use crate::route::CompiledSelector;

use super::input::{InputError, Inputs};
use super::report::{self, fmt_dur, fmt_value, short_ts, RuleSummary, SummaryOptions, Tracker};

pub mod shared;
use shared::PolicyFan;

/// Most candidates in one run: each is an engine in memory.
pub const MAX_CANDIDATES: usize = 512;

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
pub enum Dim {
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
}

impl Dim {
    /// The name used in `--vary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Window => "window",
            Dim::Threshold => "threshold",
            Dim::Clear => "clear",
            Dim::For => "for",
            Dim::KeepFiringFor => "keep_firing_for",
        }
    }

    fn is_duration(self) -> bool {
        matches!(self, Dim::Window | Dim::For | Dim::KeepFiringFor)
    }
}

/// A value of a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Val {
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
    pub dim: Dim,
    /// Its values, in order.
    pub values: Vec<Val>,
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
            other => {
                return Err(err(format!(
                "unknown setting {other:?}; use threshold, clear, for, keep_firing_for or window"
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
        if s == "0" {
            return Ok(0.0);
        }
        humantime::parse_duration(s)
            .map(|d| d.as_millis() as f64)
            .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 5m, 1h"))
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
    pub settings: Vec<(Dim, Val)>,
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
pub fn candidates(base: &RuleConfig, varies: &[Vary]) -> Result<Vec<Candidate>, TuneError> {
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

/// `base` with `settings` applied (window, then threshold, then clear, then durations).
pub fn apply(base: &RuleConfig, settings: &[(Dim, Val)]) -> RuleConfig {
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

// === the one pass ===

/// Options of a tuning run.
#[derive(Debug, Clone, Default)]
pub struct TuneOptions {
    /// The rule to tune.
    pub rule: String,
    /// The dimensions to vary.
    pub varies: Vec<Vary>,
    /// Flap gap, grace and labels (as for `backtest`).
    pub summary: SummaryOptions,
    /// Wall clock for the future-skew check; `None` skips it.
    pub now_ms: Option<i64>,
    /// 1-based row to choose instead of the automatic choice.
    pub pick: Option<usize>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The candidate.
    pub candidate: Candidate,
    /// Its figures (as `backtest` reports them for the rule).
    pub summary: RuleSummary,
    /// Pareto-optimal (false, missed, median delay); only with labels.
    pub pareto: bool,
    /// This row is the rule as configured.
    pub current: bool,
}

impl Row {
    /// False incidents (with labels).
    pub fn false_incidents(&self) -> Option<usize> {
        self.summary.truth.as_ref().map(|t| t.false_incidents)
    }
    /// Missed crises (with labels).
    pub fn missed(&self) -> Option<usize> {
        self.summary.truth.as_ref().map(|t| t.missed)
    }
    /// Median detection delay (with labels and at least one detection).
    pub fn median_delay_ms(&self) -> Option<i64> {
        self.summary
            .truth
            .as_ref()
            .and_then(|t| t.delay)
            .map(|d| d.median_ms)
    }
}

/// What a tuning run found.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneResult {
    /// The tuned rule, as configured.
    pub base: RuleConfig,
    /// Candidate rows, in candidate order; the configured rule is appended as
    /// `current` when no candidate equals it.
    pub rows: Vec<Row>,
    /// Index into `rows` of the chosen row.
    pub chosen: Option<usize>,
    /// Lines read.
    pub lines: u64,
    /// First event time.
    pub first_ms: Option<i64>,
    /// Last event time.
    pub end_ms: Option<i64>,
    /// Whether ground truth was given.
    pub labelled: bool,
}

/// The engines of a group of candidates.
enum Lane {
    /// Candidates with one window signature: one engine, their policies replayed.
    Shared {
        fan: PolicyFan,
        /// Row of each policy of the fan.
        rows: Vec<usize>,
    },
    /// One candidate, its own engine.
    Single { engine: Engine, row: usize },
}

/// The candidates' engines, fed together.
pub struct Tuner {
    base: RuleConfig,
    rows: Vec<(Candidate, bool)>,
    lanes: Vec<Lane>,
    trackers: Vec<Tracker>,
    dedup: Dedup,
    selectors: Vec<CompiledSelector>,
    /// The attributes the rule reads (`group_by` and selectors): the events
    /// the candidates see carry only these, so each engine resolves fewer.
    needed: Vec<String>,
    limits: crate::event::DecodeLimits,
    now_ms: Option<i64>,
    clock: Option<i64>,
    first_ms: Option<i64>,
    lines: u64,
    out: Vec<Transition>,
}

impl Tuner {
    /// Builds the engines for the candidates of `opts.varies` for rule
    /// `opts.rule`: one per window signature, the candidates that differ only
    /// in their alert policy sharing it ([`shared`]).
    pub fn new(cfg: &Config, opts: &TuneOptions) -> Result<Tuner, TuneError> {
        Self::build(cfg, opts, true)
    }

    /// Like [`Tuner::new`] with one engine per candidate (no sharing).
    pub fn separate(cfg: &Config, opts: &TuneOptions) -> Result<Tuner, TuneError> {
        Self::build(cfg, opts, false)
    }

    fn build(cfg: &Config, opts: &TuneOptions, share: bool) -> Result<Tuner, TuneError> {
        let base = cfg
            .rules
            .iter()
            .find(|r| r.name == opts.rule)
            .cloned()
            .ok_or_else(|| TuneError::UnknownRule {
                name: opts.rule.clone(),
                known: cfg
                    .rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut rows: Vec<(Candidate, bool)> = candidates(&base, &opts.varies)?
            .into_iter()
            .map(|c| {
                let current = c.rule == base;
                (c, current)
            })
            .collect();
        if !rows.iter().any(|(_, cur)| *cur) {
            rows.push((
                Candidate {
                    settings: Vec::new(),
                    rule: base.clone(),
                },
                true,
            ));
        }
        let mut configs = Vec::with_capacity(rows.len());
        for (c, _) in &rows {
            let ccfg = candidate_config(cfg, &c.rule);
            let errors = ccfg.validate();
            if !errors.is_empty() {
                return Err(TuneError::Invalid {
                    candidate: c.label(),
                    errors: errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            configs.push(ccfg);
        }
        // Rows grouped by window signature, in order of first appearance.
        let mut groups: Vec<(RuleConfig, Vec<usize>)> = Vec::new();
        for (i, (c, _)) in rows.iter().enumerate() {
            let sig = shared::window_signature(&c.rule, &base);
            match groups.iter_mut().find(|(s, _)| *s == sig && share) {
                Some((_, members)) => members.push(i),
                None => groups.push((sig, vec![i])),
            }
        }
        let mut lanes = Vec::with_capacity(groups.len());
        for (_, members) in groups {
            if let [row] = members[..] {
                lanes.push(Lane::Single {
                    engine: Engine::new(&configs[row])?,
                    row,
                });
            } else {
                let rules: Vec<RuleConfig> =
                    members.iter().map(|&i| rows[i].0.rule.clone()).collect();
                lanes.push(Lane::Shared {
                    fan: PolicyFan::new(&configs[members[0]], &rules)?,
                    rows: members,
                });
            }
        }
        let trackers = configs
            .iter()
            .map(|c| Tracker::for_rules(&c.rules))
            .collect();
        let selectors = base
            .indicator
            .selectors()
            .into_iter()
            .map(CompiledSelector::compile)
            .collect();
        let mut needed: Vec<String> = base.group_by.clone();
        for sel in base.indicator.selectors() {
            needed.extend(sel.attrs.keys().cloned());
        }
        needed.sort();
        needed.dedup();
        let limits = configs
            .first()
            .map(|c| crate::event::DecodeLimits {
                max_event_bytes: c.engine.max_event_bytes,
                max_future_skew_ms: c.engine.max_future_skew.as_ms(),
            })
            .unwrap_or_default();
        Ok(Tuner {
            base,
            rows,
            lanes,
            trackers,
            dedup: Dedup::new(cfg.engine.dedup_horizon.as_ms(), cfg.engine.dedup_max_ids),
            selectors,
            needed,
            limits,
            now_ms: opts.now_ms,
            clock: None,
            first_ms: None,
            lines: 0,
            out: Vec::new(),
        })
    }

    /// Number of candidates (plus the current rule when it is not one).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no candidates (never: the current rule is always one).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of engines running (one per window signature, or per candidate).
    pub fn engines(&self) -> usize {
        self.lanes.len()
    }

    /// Whether every row is exactly what a backtest of its candidate gives:
    /// false when the group cap made a shared engine's groups differ from
    /// what its candidates' own engines would keep ([`PolicyFan::exact`]).
    pub fn exact(&self) -> bool {
        self.lanes.iter().all(|l| match l {
            Lane::Shared { fan, .. } => fan.exact(),
            Lane::Single { .. } => true,
        })
    }

    /// Feeds one line to every candidate.
    pub fn feed(&mut self, line: &[u8]) {
        self.lines += 1;
        let Ok(ev) = decode(line, &self.limits, self.now_ms) else {
            return;
        };
        self.first_ms.get_or_insert(ev.ts);
        let t = self.clock.map_or(ev.ts, |c| c.max(ev.ts));
        self.clock = Some(t);
        let duplicate = self.dedup.check_and_insert(&ev.id, t);
        let relevant = !duplicate && self.selectors.iter().any(|s| s.matches(&ev));
        // The event as the rule sees it: the same, less the attributes it never reads.
        let projected = relevant.then(|| Event {
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            ts: ev.ts,
            customer_id: ev.customer_id.clone(),
            attrs: ev
                .attrs
                .iter()
                .filter(|(k, _)| self.needed.iter().any(|n| n == k.as_ref()))
                .cloned()
                .collect(),
            score: ev.score,
            sentiment: ev.sentiment,
        });
        let trackers = &mut self.trackers;
        for lane in &mut self.lanes {
            match lane {
                Lane::Shared { fan, rows } => {
                    let mut sink = |k: usize, tr: &Transition| trackers[rows[k]].transition(tr);
                    match &projected {
                        Some(ev) => fan.process(ev, &mut sink),
                        None => fan.advance_clock(t, &mut sink),
                    }
                }
                Lane::Single { engine, row } => {
                    match &projected {
                        Some(ev) => {
                            engine.process(ev, &mut self.out);
                        }
                        None => engine.advance_clock(t, &mut self.out),
                    }
                    for tr in self.out.drain(..) {
                        trackers[*row].transition(&tr);
                    }
                }
            }
        }
    }

    /// The table.
    pub fn finish(mut self, opts: &TuneOptions) -> Result<TuneResult, TuneError> {
        let trackers = &mut self.trackers;
        for lane in &mut self.lanes {
            if let Lane::Shared { fan, rows } = lane {
                fan.finish(&mut |k, tr| trackers[rows[k]].transition(tr));
            }
        }
        let end = self.clock.unwrap_or(0);
        let names = vec![self.base.name.clone()];
        let mut rows: Vec<Row> = self
            .rows
            .into_iter()
            .zip(self.trackers)
            .map(|((candidate, current), tracker)| {
                let incidents = tracker.finish();
                let (mut rules, _, _) = report::summarize(&names, &incidents, end, &opts.summary);
                // One summary per name, and `names` holds exactly one.
                let summary = rules.remove(0);
                Row {
                    candidate,
                    summary,
                    pareto: false,
                    current,
                }
            })
            .collect();
        let labelled = opts.summary.labels.is_some();
        if labelled {
            mark_pareto(&mut rows);
        }
        let chosen = match opts.pick {
            Some(p) if p == 0 || p > rows.len() => return Err(TuneError::Pick(p, rows.len())),
            Some(p) => Some(p - 1),
            None if labelled => (0..rows.len()).min_by_key(|&i| choice_key(&rows[i], i)),
            None => None,
        };
        Ok(TuneResult {
            base: self.base,
            rows,
            chosen,
            lines: self.lines,
            first_ms: self.first_ms,
            end_ms: self.clock,
            labelled,
        })
    }
}

/// The configuration of one candidate: only the tuned rule, no own dedup
/// (the tuner deduplicates once for all), no evidence ids.
fn candidate_config(cfg: &Config, rule: &RuleConfig) -> Config {
    let mut c = Config {
        engine: cfg.engine.clone(),
        rules: vec![rule.clone()],
        ..Config::default()
    };
    c.engine.dedup_horizon = Dur::from_ms(0);
    c.engine.sample_event_ids = 0;
    c
}

/// The configuration of a candidate as `backtest` would run it (for checks).
pub fn backtest_config(cfg: &Config, rule: &RuleConfig) -> Config {
    let mut c = cfg.clone();
    for r in &mut c.rules {
        if r.name == rule.name {
            *r = rule.clone();
        }
    }
    c
}

fn choice_key(r: &Row, i: usize) -> (usize, usize, i64, usize, i64, usize) {
    (
        r.missed().unwrap_or(usize::MAX),
        r.false_incidents().unwrap_or(usize::MAX),
        r.median_delay_ms().unwrap_or(i64::MAX),
        r.summary.flaps,
        r.summary.firing_ms,
        i,
    )
}

fn mark_pareto(rows: &mut [Row]) {
    let obj: Vec<[i64; 3]> = rows
        .iter()
        .map(|r| {
            [
                r.false_incidents().map_or(i64::MAX, |v| v as i64),
                r.missed().map_or(i64::MAX, |v| v as i64),
                r.median_delay_ms().unwrap_or(i64::MAX),
            ]
        })
        .collect();
    for i in 0..rows.len() {
        let dominated = obj
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.iter().zip(&obj[i]).all(|(a, b)| a <= b) && *o != obj[i]);
        rows[i].pareto = !dominated;
    }
}

/// Runs a tuning pass over `inputs`.
///
/// When the group cap made the shared pass inexact ([`Tuner::exact`]), the
/// history is read once more with one engine per candidate; from standard
/// input it cannot be, and a warning says the figures may differ slightly.
pub fn run(cfg: &Config, inputs: &Inputs, opts: &TuneOptions) -> Result<TuneResult, TuneError> {
    let mut tuner = Tuner::new(cfg, opts)?;
    let started = std::time::Instant::now();
    inputs.for_each_line(|line, _| tuner.feed(line))?;
    tracing::info!(
        candidates = tuner.len(),
        engines = tuner.engines(),
        lines = tuner.lines,
        seconds = started.elapsed().as_secs_f64(),
        "Tuning pass finished"
    );
    if !tuner.exact() {
        if inputs.uses_stdin() {
            tracing::warn!(
                "engine.max_groups_per_rule was reached: candidates sharing one engine may differ \
                 slightly from separate backtests (pass files instead of stdin for exact figures)"
            );
        } else {
            tracing::warn!(
                "engine.max_groups_per_rule was reached: reading the history again with one \
                 engine per candidate for exact figures"
            );
            tuner = Tuner::separate(cfg, opts)?;
            inputs.for_each_line(|line, _| tuner.feed(line))?;
        }
    }
    tuner.finish(opts)
}

/// Runs a tuning pass over lines in memory (tests, benches).
/// As [`run`], the group-cap fallback included.
pub fn run_lines<'a>(
    cfg: &Config,
    lines: impl IntoIterator<Item = &'a [u8]> + Clone,
    opts: &TuneOptions,
) -> Result<TuneResult, TuneError> {
    let mut tuner = Tuner::new(cfg, opts)?;
    for l in lines.clone() {
        tuner.feed(l);
    }
    if !tuner.exact() {
        tuner = Tuner::separate(cfg, opts)?;
        for l in lines {
            tuner.feed(l);
        }
    }
    tuner.finish(opts)
}

// === outputs ===

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The table, for a terminal.
pub fn render_table(r: &TuneResult) -> String {
    let mut s = String::new();
    let span = match (r.first_ms, r.end_ms) {
        (Some(a), Some(b)) => format!("{} → {}", short_ts(a), short_ts(b)),
        _ => "no events".to_string(),
    };
    let _ = writeln!(
        s,
        "Tuning {} over {span}: {} lines, {} candidates in one pass",
        r.base.name,
        r.lines,
        r.rows.len()
    );
    let head = [
        "#",
        "candidate",
        "incidents",
        "false",
        "missed",
        "median delay",
        "time firing",
        "flaps",
    ];
    let cells: Vec<[String; 8]> = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            [
                (i + 1).to_string(),
                row.candidate.label(),
                row.summary.incidents.to_string(),
                opt(row.false_incidents()),
                opt(row.missed()),
                row.median_delay_ms()
                    .map_or_else(|| "-".to_string(), fmt_dur),
                fmt_dur(row.summary.firing_ms),
                row.summary.flaps.to_string(),
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for c in &cells {
        for (k, x) in c.iter().enumerate() {
            w[k] = w[k].max(x.chars().count());
        }
    }
    // The candidate column is left-aligned, the figures right-aligned.
    let line = |mark: &str, c: &[String]| {
        let mut l = format!(
            "{mark:<3} {:>w0$}  {:<w1$}",
            c[0],
            c[1],
            w0 = w[0],
            w1 = w[1]
        );
        for k in 2..c.len() {
            let _ = write!(l, "  {:>wk$}", c[k], wk = w[k]);
        }
        l
    };
    let _ = writeln!(s, "{}", line("", &head.map(String::from)));
    for (i, c) in cells.iter().enumerate() {
        let row = &r.rows[i];
        let mark = format!(
            "{}{}{}",
            if row.pareto { '*' } else { ' ' },
            if r.chosen == Some(i) { '>' } else { ' ' },
            if row.current { '=' } else { ' ' },
        );
        let _ = writeln!(s, "{}", line(&mark, c));
    }
    if r.labelled {
        let _ = writeln!(
            s,
            "* Pareto-optimal (no other candidate is as good on false incidents, missed crises and median delay, and better on one)"
        );
    } else {
        let _ = writeln!(
            s,
            "(no --labels: false incidents, missed crises and delays need ground truth)"
        );
    }
    let _ = writeln!(s, "= the rule as configured");
    match r.chosen {
        Some(i) => {
            let _ = writeln!(
                s,
                "> chosen: #{} {} (fewest missed, then false incidents, then median delay)",
                i + 1,
                r.rows[i].candidate.label()
            );
        }
        None => {
            let _ = writeln!(s, "> none chosen: pass --labels or --pick N");
        }
    }
    s
}

/// The table as CSV.
pub fn write_csv(r: &TuneResult, w: &mut dyn Write) -> std::io::Result<()> {
    let mut dims: Vec<Dim> = r
        .rows
        .iter()
        .flat_map(|row| row.candidate.settings.iter().map(|(d, _)| *d))
        .collect();
    dims.sort();
    dims.dedup();
    let mut head = vec!["candidate".to_string(), "label".to_string()];
    head.extend(dims.iter().map(|d| d.as_str().to_string()));
    head.extend(
        [
            "incidents",
            "false_incidents",
            "missed",
            "median_delay_s",
            "p90_delay_s",
            "max_delay_s",
            "time_firing_s",
            "flaps",
            "precision",
            "recall",
            "pareto",
            "chosen",
            "current",
        ]
        .map(String::from),
    );
    writeln!(w, "{}", head.join(","))?;
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    for (i, row) in r.rows.iter().enumerate() {
        let mut f = vec![(i + 1).to_string(), csv_field(&row.candidate.label())];
        for d in &dims {
            let v = match row.candidate.settings.iter().find(|(x, _)| x == d) {
                Some((_, Val::Num(v))) => v.to_string(),
                Some((_, Val::Dur(x))) => (x.as_ms() as f64 / 1000.0).to_string(),
                None => String::new(),
            };
            f.push(v);
        }
        let t = row.summary.truth.as_ref();
        let delay = t.and_then(|t| t.delay);
        f.push(row.summary.incidents.to_string());
        f.push(t.map(|t| t.false_incidents.to_string()).unwrap_or_default());
        f.push(t.map(|t| t.missed.to_string()).unwrap_or_default());
        f.push(delay.map(|d| secs(d.median_ms)).unwrap_or_default());
        f.push(delay.map(|d| secs(d.p90_ms)).unwrap_or_default());
        f.push(delay.map(|d| secs(d.max_ms)).unwrap_or_default());
        f.push(secs(row.summary.firing_ms));
        f.push(row.summary.flaps.to_string());
        f.push(
            t.and_then(|t| t.precision)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
        );
        f.push(
            t.and_then(|t| t.recall)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
        );
        f.push(row.pareto.to_string());
        f.push((r.chosen == Some(i)).to_string());
        f.push(row.current.to_string());
        writeln!(w, "{}", f.join(","))?;
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[derive(Serialize)]
struct Snippet<'a> {
    rules: [&'a RuleConfig; 1],
}

/// The chosen row's rule as a TOML `[[rules]]` snippet to paste over the
/// rule's entry in the configuration.
pub fn snippet(r: &TuneResult, row: usize) -> Result<String, TuneError> {
    let Some(rw) = r.rows.get(row) else {
        return Err(TuneError::Pick(row + 1, r.rows.len()));
    };
    let body = toml::to_string(&Snippet {
        rules: [&rw.candidate.rule],
    })
    .map_err(|e| TuneError::Toml(e.to_string()))?;
    let body = drop_empty_tables(&body);
    let t = rw.summary.truth.as_ref();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# crisiswatch tune: rule {:?}, candidate #{} ({})",
        r.base.name,
        row + 1,
        rw.candidate.label()
    );
    let _ = writeln!(
        s,
        "# over {} lines: incidents {}, false {}, missed {}, median delay {}, time firing {}, flaps {}",
        r.lines,
        rw.summary.incidents,
        opt(t.map(|t| t.false_incidents)),
        opt(t.map(|t| t.missed)),
        rw.median_delay_ms().map_or_else(|| "-".to_string(), fmt_dur),
        fmt_dur(rw.summary.firing_ms),
        rw.summary.flaps
    );
    let _ = writeln!(
        s,
        "# Replace the [[rules]] entry named {:?} with this one.",
        r.base.name
    );
    s.push_str(&body);
    Ok(s)
}

/// Removes `[table]` headers with no keys (empty selector `attrs`).
fn drop_empty_tables(toml_text: &str) -> String {
    let lines: Vec<&str> = toml_text.lines().collect();
    let mut out = String::with_capacity(toml_text.len());
    for (i, l) in lines.iter().enumerate() {
        let header = l.starts_with('[') && !l.starts_with("[[");
        if header {
            let next = lines[i + 1..].iter().find(|x| !x.trim().is_empty());
            if next.is_none_or(|n| n.starts_with('[')) {
                continue;
            }
        }
        if l.trim().is_empty() && out.ends_with("\n\n") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> RuleConfig {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "r"
window = "1h"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }
thresholds = { warning = 0.065, critical = 0.10 }
clear = 0.04
for = "5m"
"#,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        cfg.rules[0].clone()
    }

    #[test]
    fn parses_ranges_and_lists() {
        let v: Vary = "threshold=0.02..0.08:0.01".parse().unwrap();
        assert_eq!(v.dim, Dim::Threshold);
        let nums: Vec<String> = v.values.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            nums,
            ["0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08"]
        );
        let v: Vary = "for=0m,5m,15m".parse().unwrap();
        let d: Vec<String> = v.values.iter().map(|v| v.to_string()).collect();
        assert_eq!(d, ["0s", "5m", "15m"]);
        let v: Vary = "window=15m..1h:15m".parse().unwrap();
        assert_eq!(v.values.len(), 4);
        for bad in [
            "x=1",
            "threshold",
            "threshold=a",
            "for=5q",
            "threshold=0.1..0.0:0.1",
            "threshold=0..1:0",
        ] {
            assert!(bad.parse::<Vary>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_threshold_moves_the_ladder_in_proportion() {
        let r = apply(&rule(), &[(Dim::Threshold, Val::Num(0.13))]);
        assert_eq!(r.thresholds.warning, Some(0.13));
        assert_eq!(r.thresholds.critical, Some(0.2));
        assert_eq!(r.clear, Some(0.08));
        // An explicit clear wins, whatever the order given.
        let r = apply(
            &rule(),
            &[
                (Dim::Clear, Val::Num(0.01)),
                (Dim::Threshold, Val::Num(0.13)),
            ],
        );
        assert_eq!(r.clear, Some(0.01));
        // From 0, a shift.
        let mut z = rule();
        z.thresholds.warning = Some(0.0);
        z.clear = Some(-0.5);
        let r = apply(&z, &[(Dim::Threshold, Val::Num(1.0))]);
        assert_eq!(r.thresholds.critical, Some(1.1));
        assert_eq!(r.clear, Some(0.5));
    }

    #[test]
    fn candidates_are_the_cartesian_product() {
        let c = candidates(
            &rule(),
            &[
                "threshold=0.05,0.07".parse().unwrap(),
                "for=0m,5m,15m".parse().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].label(), "threshold=0.05 for=0s");
        assert_eq!(c[5].label(), "threshold=0.07 for=15m");
        assert_eq!(c[4].rule.for_, Dur::mins(5));
        let twice = candidates(
            &rule(),
            &["for=1m".parse().unwrap(), "for=2m".parse().unwrap()],
        );
        assert!(twice.is_err());
    }

    #[test]
    fn the_snippet_is_a_valid_rule() {
        let base = rule();
        let cand = Candidate {
            settings: vec![(Dim::Threshold, Val::Num(0.05))],
            rule: apply(&base, &[(Dim::Threshold, Val::Num(0.05))]),
        };
        let result = TuneResult {
            base: base.clone(),
            rows: vec![Row {
                candidate: cand.clone(),
                summary: RuleSummary {
                    rule: "r".into(),
                    incidents: 0,
                    slices: 0,
                    firing_ms: 0,
                    flaps: 0,
                    truth: None,
                },
                pareto: false,
                current: false,
            }],
            chosen: Some(0),
            lines: 0,
            first_ms: None,
            end_ms: None,
            labelled: false,
        };
        let text = snippet(&result, 0).unwrap();
        let back =
            Config::from_toml_str(&text, &std::collections::HashMap::<String, String>::new())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.rules, vec![cand.rule]);
    }
}
