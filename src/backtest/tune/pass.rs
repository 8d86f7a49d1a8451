//! The one pass of `tune`: the candidates' engines fed together, and the
//! table of their figures (its rows, the Pareto marking and the automatic
//! choice are in `rows.rs`; how lines reach the engines, in order, is in
//! `pass/feed.rs`).

use crate::alert::Transition;
use crate::config::{Config, Dur, RuleConfig};
use crate::dedup::Dedup;
use crate::engine::Engine;
use crate::event::ahead::Decoded;
use crate::event::{Event, OwnedEvent};
use crate::route::CompiledSelector;
use crate::sequencer::{JumpGuard, SequencerOf};

use super::super::input::{Inputs, LineRef};
use super::super::report::{self, SummaryOptions, Tracker};
use super::rows::{choice_key, mark_pareto, Row, TuneResult};
use super::shared::{self, PolicyFan};
use super::{candidates, Candidate, TuneError, Vary};

mod feed;
mod separate;

pub(crate) use separate::{run_separate, separate_passes, SEPARATE_PER_PASS};

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
    /// Time the events cover (gaps of more than a day left out).
    coverage: crate::backtest::coverage::Coverage,
    lines: u64,
    out: Vec<Transition>,
    /// Late events and the input that moved the clock before them.
    watch: crate::backtest::clock_watch::ClockWatch,
    /// Events held until the watermark passes them, then applied in the
    /// canonical order (as `backtest` and `replay` do).
    seq: SequencerOf<OwnedEvent>,
    /// Newest valid event time read.
    newest: Option<i64>,
    lateness_ms: i64,
    /// Holds events that would jump the clock (`engine.max_clock_jump`), as
    /// `backtest` does.
    guard: JumpGuard<Suspect>,
    /// Refuted clock jumps: (line count, where from, why), warned about.
    refuted: Vec<(u64, Option<LineRef>, String)>,
    /// Lines that are not valid events, warned about.
    invalid: crate::backtest::invalid_lines::InvalidLines,
    /// The labelled crises' (start, end), ms: those outside the history
    /// are warned about.
    labelled: Vec<(i64, i64)>,
}

/// An event the clock-jump guard may hold: the event, the line count and
/// position it came from, and why it would be a jump.
type Suspect = (OwnedEvent, u64, Option<LineRef>, String);

impl Tuner {
    /// Builds the engines for the candidates of `opts.varies` for rule
    /// `opts.rule`: one per window signature, the candidates that differ only
    /// in their alert policy sharing it ([`shared`]).
    pub fn new(cfg: &Config, opts: &TuneOptions) -> Result<Tuner, TuneError> {
        Self::build(cfg, opts, true, None)
    }

    /// Like [`Tuner::new`] with one engine per candidate (no sharing), for
    /// the rows in `only` alone (the other rows get no engine, and empty
    /// figures).
    pub(crate) fn separate(
        cfg: &Config,
        opts: &TuneOptions,
        only: std::ops::Range<usize>,
    ) -> Result<Tuner, TuneError> {
        Self::build(cfg, opts, false, Some(only))
    }

    fn build(
        cfg: &Config,
        opts: &TuneOptions,
        share: bool,
        only: Option<std::ops::Range<usize>>,
    ) -> Result<Tuner, TuneError> {
        let base = cfg
            .rules
            .iter()
            .find(|r| r.name == opts.rule)
            .cloned()
            .ok_or_else(|| TuneError::UnknownRule {
                name: opts.rule.clone(),
                known: cfg.rule_names(),
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
            // Checked as `backtest` would run it: the errors name the rule's
            // own index in the file (the candidate's config holds it alone).
            let errors = super::backtest_config(cfg, &c.rule).validate();
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
            if only
                .as_ref()
                .is_some_and(|r| !members.iter().all(|m| r.contains(m)))
            {
                continue;
            }
            if let [row] = members[..] {
                let mut engine = Engine::new(&configs[row])?;
                engine.set_sequenced(true);
                lanes.push(Lane::Single { engine, row });
            } else {
                let rules: Vec<RuleConfig> =
                    members.iter().map(|&i| rows[i].0.rule.clone()).collect();
                let mut fan = PolicyFan::new(&configs[members[0]], &rules)?;
                fan.set_sequenced(true);
                lanes.push(Lane::Shared { fan, rows: members });
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
            .map(|c| c.engine.decode_limits())
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
            coverage: crate::backtest::coverage::Coverage::default(),
            lines: 0,
            out: Vec::new(),
            watch: crate::backtest::clock_watch::ClockWatch::new(cfg),
            seq: SequencerOf::new(),
            newest: None,
            lateness_ms: cfg.engine.allowed_lateness.as_ms(),
            guard: JumpGuard::new(limits.max_clock_jump_ms, limits.clock_jump_confirm).anchored(),
            refuted: Vec::new(),
            invalid: Default::default(),
            labelled: opts
                .summary
                .labels
                .iter()
                .flatten()
                .map(|c| (c.start_ms, c.end_ms))
                .collect(),
        })
    }

    /// Number of candidates (plus the current rule when it is not one).
    pub(crate) fn len(&self) -> usize {
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

    /// Logs, for `tool`, what the clock watch saw (many late events, a
    /// history newest first or in seconds; see `clock_watch`).
    /// Also warns about the refuted clock jumps (left out of every
    /// candidate) and the invalid lines.
    pub(crate) fn warn_input(&self, tool: &str, inputs: &Inputs) {
        self.watch.warn(tool, Some(inputs));
        for (line, at, detail) in &self.refuted {
            let place = at.map_or_else(|| format!("line {line}"), |a| inputs.describe(a));
            tracing::warn!(
                tool,
                "{place}: clock_jump: {detail} (left out of every candidate, as backtest counts it invalid)"
            );
        }
        self.invalid.warn(tool, self.lines, Some(inputs));
        if self.dedup.evicted_here > 0 {
            tracing::warn!(
                tool,
                "dedup memory full (engine.dedup_max_ids): {} ids forgotten before engine.dedup_horizon; \
                 a repeat of one counted again (as backtest counts it)",
                self.dedup.evicted_here
            );
        }
        if let (Some(first), Some(end)) = (self.first_ms, self.clock) {
            let after = self.labelled.iter().filter(|(s, _)| *s > end).count();
            let before = self
                .labelled
                .iter()
                .filter(|(s, e)| *s <= end && *e < first)
                .count();
            if after + before > 0 {
                tracing::warn!(
                    tool,
                    "{} of {} labelled crises lie outside the history ({} start after it ends, {} end \
                     before it starts): they are not scored, neither caught nor missed \
                     (is it the labels file of this history?)",
                    after + before,
                    self.labelled.len(),
                    after,
                    before
                );
            }
        }
    }

    /// Warns when the history has gaps and any of `rules` has a baseline
    /// (see [`crate::backtest::coverage::Coverage::baseline_warning`]).
    pub(crate) fn warn_gaps<'a>(
        &self,
        tool: &str,
        rules: impl IntoIterator<Item = &'a RuleConfig>,
    ) {
        let rules = crate::backtest::coverage::baseline_rules(rules);
        if let Some(w) = self.coverage.baseline_warning(&rules) {
            tracing::warn!(tool, "{w}");
        }
    }

    /// The rule this tuner varies.
    pub(crate) fn base(&self) -> &RuleConfig {
        &self.base
    }

    /// Fails when no valid event has been fed: figures over nothing would
    /// look like a quiet history, and thresholds chosen on it mean nothing.
    pub(crate) fn check_fed(&self) -> Result<(), TuneError> {
        match self.first_ms {
            Some(_) => Ok(()),
            None => Err(TuneError::NoEvents(self.lines)),
        }
    }

    /// Moves every candidate's clock to `t` (never backwards).
    fn advance_lanes(&mut self, t: i64) {
        if self.clock.is_some_and(|c| c >= t) {
            return;
        }
        let trackers = &mut self.trackers;
        for lane in &mut self.lanes {
            match lane {
                Lane::Shared { fan, rows } => {
                    fan.advance_clock(t, &mut |k: usize, tr: &Transition| {
                        trackers[rows[k]].transition(tr)
                    });
                }
                Lane::Single { engine, row } => {
                    engine.advance_clock(t, &mut self.out);
                    for tr in self.out.drain(..) {
                        trackers[*row].transition(&tr);
                    }
                }
            }
        }
    }

    /// Applies one released event to every candidate.
    fn apply(&mut self, ev: &Event<'_>) {
        let t = self.clock.map_or(ev.ts, |c| c.max(ev.ts));
        self.clock = Some(t);
        let duplicate = self.dedup.check_and_insert(&ev.id, t);
        let relevant = !duplicate && self.selectors.iter().any(|s| s.matches(ev));
        // The event as the rule sees it: the same, less the attributes it never reads.
        let projected = relevant.then(|| Event {
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            ts: ev.ts,
            customer_id: ev.customer_id.clone(),
            ref_id: ev.ref_id.clone(),
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
    pub(crate) fn finish(self, opts: &TuneOptions) -> Result<TuneResult, TuneError> {
        conclude(self.finish_rows(opts), opts)
    }

    /// The table's rows and figures, before the Pareto marking and the
    /// choice ([`conclude`]).
    fn finish_rows(mut self, opts: &TuneOptions) -> TuneResult {
        self.end_input();
        let trackers = &mut self.trackers;
        for lane in &mut self.lanes {
            if let Lane::Shared { fan, rows } = lane {
                fan.finish(&mut |k, tr| trackers[rows[k]].transition(tr));
            }
        }
        let end = self.clock.unwrap_or(0);
        let first = self.first_ms;
        let names = vec![self.base.name.clone()];
        let rows: Vec<Row> = self
            .rows
            .into_iter()
            .zip(self.trackers)
            .map(|((candidate, current), tracker)| {
                let incidents = tracker.finish();
                let (mut rules, _, _) =
                    report::summarize(&names, &incidents, first, end, &opts.summary);
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
        TuneResult {
            base: self.base,
            rows,
            chosen: None,
            picked: false,
            lines: self.lines,
            first_ms: self.first_ms,
            end_ms: self.clock,
            covered_ms: self.coverage.covered_ms(),
            labelled: opts.summary.labels.is_some(),
        }
    }
}

/// Marks the Pareto rows and makes the choice (`opts.pick`, else the
/// automatic one when labelled).
fn conclude(mut result: TuneResult, opts: &TuneOptions) -> Result<TuneResult, TuneError> {
    let rows = &mut result.rows;
    if result.labelled {
        mark_pareto(rows);
    }
    result.picked = opts.pick.is_some();
    result.chosen = match opts.pick {
        Some(p) if p == 0 || p > rows.len() => return Err(TuneError::Pick(p, rows.len())),
        Some(p) => Some(p - 1),
        None if result.labelled => (0..rows.len()).min_by_key(|&i| choice_key(&rows[i], i)),
        None => None,
    };
    Ok(result)
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

/// Runs a tuning pass over `inputs`.
///
/// When the group cap made the shared pass inexact ([`Tuner::exact`]), the
/// history is read once more with one engine per candidate; from standard
/// input it cannot be, and a warning says the figures may differ slightly.
pub fn run(cfg: &Config, inputs: &Inputs, opts: &TuneOptions) -> Result<TuneResult, TuneError> {
    let mut tuner = Tuner::new(cfg, opts)?;
    for w in unreachable_candidates(cfg, opts) {
        tracing::warn!(tool = "tune", "{w}");
    }
    let started = std::time::Instant::now();
    // Lines are decoded on a second thread while this one applies the ones
    // before them: the same results, in the same order.
    let mut ahead = tuner.decode_ahead();
    let mut labels =
        (opts.summary.labels.as_deref()).map(crate::backtest::label_watch::LabelWatch::new);
    let mut sink = |(at, decoded): Decoded<LineRef>| {
        if let Some(l) = &mut labels {
            l.observe_held(&decoded);
        }
        tuner.feed_decoded(decoded, Some(at));
    };
    inputs.for_each_line(|line, at| ahead.push(line, None, at, &mut sink))?;
    ahead.finish(&mut sink);
    tuner.end_input();
    tuner.check_fed()?;
    tuner.warn_input("tune", inputs);
    if let Some(l) = &labels {
        l.warn("tune");
    }
    tuner.warn_gaps("tune", [tuner.base()]);
    tracing::info!(
        candidates = tuner.len(),
        engines = tuner.engines(),
        lines = tuner.lines,
        seconds = started.elapsed().as_secs_f64(),
        "Tuning pass finished"
    );
    if !tuner.exact() {
        if inputs.read_once() {
            tracing::warn!(
                "engine.max_groups_per_rule was reached, or a silence of the whole stream reached a surge \
                 baseline while an alert on a slice without data was active: candidates sharing one engine \
                 may differ slightly from separate backtests (pass files instead of stdin or a pipe for \
                 exact figures)"
            );
        } else {
            tracing::warn!(
                "engine.max_groups_per_rule was reached, or a silence of the whole stream reached a surge \
                 baseline while an alert on a slice without data was active: reading the history again \
                 with one engine per candidate for exact figures ({SEPARATE_PER_PASS} candidates per reading)"
            );
            drop(tuner);
            return run_separate(cfg, inputs, opts);
        }
    }
    tuner.finish(opts)
}

/// A warning per candidate threshold that the rule's indicator can never
/// cross or is always past (`--vary threshold=20,30` on a share between 0
/// and 1), naming the candidate; the configured rule's own are `check`'s.
pub(crate) fn unreachable_candidates(cfg: &Config, opts: &TuneOptions) -> Vec<String> {
    let Some(base) = cfg.rules.iter().find(|r| r.name == opts.rule) else {
        return Vec::new();
    };
    let Ok(all) = candidates(base, &opts.varies) else {
        return Vec::new();
    };
    // Once per threshold (the first candidate that has it), and not the
    // configured rule's own (`check` names those).
    let own = crate::config::unreachable_thresholds(base, &cfg.engine);
    let mut seen: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for c in all.iter().filter(|c| c.rule != *base) {
        for w in crate::config::unreachable_thresholds(&c.rule, &cfg.engine) {
            if own.contains(&w) || seen.contains(&w) {
                continue;
            }
            out.push(format!("candidate {}: {w}", c.label()));
            seen.push(w);
        }
    }
    out
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
    tuner.end_input();
    if !tuner.exact() {
        drop(tuner);
        return separate_passes(cfg, opts, |t| {
            for l in lines.clone() {
                t.feed(l);
            }
            Ok(())
        });
    }
    tuner.finish(opts)
}
