//! Backtesting and threshold tuning: replay history through the same core and
//! measure what the rules would have done.
//!
//! ```text
//! JSONL/.gz files ─► input ─► Driver (decode ─► Engine ─► transitions) ─► report::Tracker ─► Report
//!                               │   └─ slide boundaries: group values (peaks, charts)
//!                               └─ labels (known crises) ─► delay, missed, false, precision, recall
//! ```
//!
//! * [`input`] reads many files in order, gzip accepted, with a progress bar on a terminal.
//! * [`line`](mod@line) is what every source hands out with a line: its origin and the read's counts.
//! * [`kafka_input`] reads a range of Kafka topics instead (`--kafka-topic`):
//!   offsets or message timestamps, partitions merged by event time; the
//!   same [`Inputs`] to every command.
//! * [`Driver`] feeds lines to one [`Engine`] exactly as `replay` does (same
//!   transitions, byte for byte), and stops at every slide boundary so
//!   observers can read group values ([`Engine::groups`]) as time passes.
//! * [`report`] turns transitions into incidents and per rule / slice figures;
//!   [`labels`] is the ground truth and its matching rule.
//! * [`tune`] evaluates many candidate thresholds / `for` / windows of one rule
//!   in one pass over the data: each line is read, decoded and deduplicated
//!   once and fed to one engine per candidate.
//! * [`chart`] draws an indicator over time (SVG), and the tuning trade-off.
//! * [`review`] writes the Markdown post-incident review of an incident.
//! * [`ruletest`] runs rule unit tests (`crisiswatch test-rules`), as
//!   `promtool test rules` does for Prometheus.
//!
//! History has no wall clock: backtests skip the future-skew check unless a
//! `now` is given.

pub mod chart;
pub mod clock_watch;
pub(crate) mod coverage;
mod finish;
pub(crate) use finish::finish;
pub mod input;
pub(crate) mod invalid_lines;
pub mod kafka_input;
pub(crate) mod label_watch;
pub mod labels;
pub(crate) mod launch_watch;
pub mod line;
pub mod report;
pub mod review;
pub(crate) mod rule_warnings;
pub mod ruletest;
pub mod suggest;
pub mod tune;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use crate::alert::Transition;
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::event::ahead::{DecodeAhead, Decoded, Inspect};
use crate::event::{decode_held, DecodeLimits, Event, Invalid, InvalidReason, OwnedEvent};
use crate::sequencer::{watermark, JumpGuard, SequencerOf};

pub use input::{InputError, Inputs};
pub use report::{Incident, Report, SummaryOptions};

/// Most slide boundaries visited in one gap between events: a stray event far
/// in the future must not make a backtest walk millions of empty minutes.
const MAX_BOUNDARIES_PER_GAP: i64 = 10_000;

/// Refuted clock jumps named in a report (each is counted regardless).
const MAX_NAMED_JUMPS: usize = 20;

/// Errors of a backtest.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Reading the history failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The configuration does not build an engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing the transitions file failed.
    #[error("cannot write transitions: {0}")]
    Write(#[source] std::io::Error),
}

/// Sees what a [`Driver`] does.
pub trait Observer {
    /// Every transition, in output order.
    fn transition(&mut self, t: &Transition);
    /// At each slide boundary the data crosses (after the engine has run every
    /// evaluation due then), with the engine to read group values from.
    fn boundary(&mut self, _engine: &Engine, _at: i64) {}
}

/// Drives one engine over lines, as `replay` does, stopping at slide boundaries.
#[derive(Debug)]
pub struct Driver {
    engine: Engine,
    limits: DecodeLimits,
    now_ms: Option<i64>,
    out: Vec<Transition>,
    /// Boundary spacing, ms (0: no boundaries).
    cadence_ms: i64,
    next_boundary: Option<i64>,
    lines: u64,
    first_ms: Option<i64>,
    /// Time the events cover (gaps of more than a day left out).
    coverage: coverage::Coverage,
    invalid_examples: Vec<(u64, InvalidReason, String)>,
    /// Where each of `invalid_examples` came from.
    invalid_at: Vec<Option<input::LineRef>>,
    /// Refuted clock jumps named (also in `invalid_examples`), with where each came from.
    refuted: Vec<(Option<input::LineRef>, String)>,
    /// Where the next line comes from ([`Driver::feed_at`]).
    at: Option<input::LineRef>,
    /// Late events and the input that moved the clock before them.
    watch: clock_watch::ClockWatch,
    /// Holds events until the watermark passes them, as `replay` and `run` do.
    seq: SequencerOf<OwnedEvent>,
    /// Newest event time fed.
    newest: Option<i64>,
    /// Holds events that would jump the clock (`engine.max_clock_jump`).
    guard: JumpGuard<Suspect>,
}

/// An event the clock-jump guard may hold: the event, the line count and
/// position it came from, and why it would be a jump.
type Suspect = (OwnedEvent, u64, Option<input::LineRef>, String);

impl Driver {
    /// A driver for `cfg`. Boundaries come every `cadence_ms` of event time, at
    /// `k × cadence + 1 ms` (when the engine's windows move); 0 turns them off.
    /// `now_ms` is the wall clock for the future-skew check (`None` skips it).
    pub(crate) fn new(
        cfg: &Config,
        cadence_ms: i64,
        now_ms: Option<i64>,
    ) -> Result<Self, EngineError> {
        let mut engine = Engine::new(cfg)?;
        engine.set_sequenced(true);
        Ok(Driver {
            seq: SequencerOf::new(),
            newest: None,
            guard: JumpGuard::new(
                engine.limits().max_clock_jump_ms,
                engine.limits().clock_jump_confirm,
            )
            .anchored(),
            limits: *engine.limits(),
            engine,
            now_ms,
            out: Vec::new(),
            cadence_ms: cadence_ms.max(0),
            next_boundary: None,
            lines: 0,
            first_ms: None,
            coverage: coverage::Coverage::default(),
            invalid_examples: Vec::new(),
            invalid_at: Vec::new(),
            refuted: Vec::new(),
            at: None,
            watch: clock_watch::ClockWatch::new(cfg),
        })
    }

    /// Late events and the clock moves seen so far (warns with
    /// [`ClockWatch::warn`](clock_watch::ClockWatch::warn)).
    pub(crate) fn clock_watch(&self) -> &clock_watch::ClockWatch {
        &self.watch
    }

    /// Like [`Driver::feed_with_default`], for a line from `at` (named in
    /// the late-events warning).
    pub(crate) fn feed_at(
        &mut self,
        line: &[u8],
        default_type: Option<&str>,
        at: input::LineRef,
        obs: &mut impl Observer,
    ) {
        self.at = Some(at);
        self.feed_with_default(line, default_type, obs);
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Lines fed.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Time of the earliest event the history holds (see [`coverage::history_start`]).
    pub(crate) fn first_ms(&self) -> Option<i64> {
        self.first_ms
    }

    /// Time the valid events cover (see [`coverage`]).
    pub(crate) fn coverage(&self) -> coverage::Coverage {
        self.coverage
    }

    /// The first few invalid lines: (line count when seen, reason, detail).
    pub fn invalid_examples(&self) -> &[(u64, InvalidReason, String)] {
        &self.invalid_examples
    }

    /// The first few invalid lines for a report, each with where it came
    /// from when `inputs` can say.
    pub(crate) fn named_invalid_lines(&self, inputs: Option<&Inputs>) -> Vec<report::InvalidLine> {
        self.invalid_examples
            .iter()
            .zip(&self.invalid_at)
            .map(|((line, reason, detail), at)| report::InvalidLine {
                line: *line,
                at: (*at).and_then(|at| inputs.map(|i| i.describe(at))),
                reason: *reason,
                detail: detail.clone(),
            })
            .collect()
    }

    /// The invalid lines: counts by reason and the first few with where
    /// they came from (named `file:line` in the warning).
    pub(crate) fn invalid_lines(&self) -> invalid_lines::InvalidLines {
        let mut out = invalid_lines::InvalidLines::from_counts(self.engine.stats().invalid, &[]);
        for ((line, reason, detail), at) in self.invalid_examples.iter().zip(&self.invalid_at) {
            out.name(*line, *at, *reason, detail.clone());
        }
        out
    }

    /// Feeds one input line.
    pub(crate) fn feed(&mut self, line: &[u8], obs: &mut impl Observer) {
        self.feed_with_default(line, None, obs);
    }

    /// Feeds one input line with the event type to assume when it has none
    /// (its Kafka topic's `default_type`): decoded exactly as `run` decodes
    /// the message (size limit on the bytes received, same invalid reasons).
    pub(crate) fn feed_with_default(
        &mut self,
        line: &[u8],
        default_type: Option<&str>,
        obs: &mut impl Observer,
    ) {
        let at = self.at.take();
        // Decoded in place: the event is large, a returned one is moved.
        let mut slot = Event::default();
        let decoded = decode_held(line, &self.limits, self.now_ms, default_type, &mut slot);
        drop(slot);
        self.feed_decoded(decoded, at, obs);
    }

    /// Feeds the next line, already decoded by [`decode_held`] (as a
    /// [`DecodeAhead`] does; `at`: where it came from).
    pub(crate) fn feed_decoded(
        &mut self,
        decoded: Result<OwnedEvent, Invalid>,
        at: Option<input::LineRef>,
        obs: &mut impl Observer,
    ) {
        self.lines += 1;
        let held = match decoded {
            Ok(held) => held,
            Err(inv) => {
                self.engine.record_invalid(inv.reason);
                let others = self.invalid_examples.len() - self.refuted.len();
                if others < 5 {
                    self.invalid_examples
                        .push((self.lines, inv.reason, inv.detail));
                    self.invalid_at.push(at);
                }
                return;
            }
        };
        let ts = held.ts();
        if self.guard.pass_quick(ts) {
            // The usual case: nothing held aside, no jump.
            self.hold(held, self.lines, at, obs);
            return;
        }
        let detail = self.guard.jump_detail(ts).unwrap_or_default();
        let v = self.guard.offer(ts, (held, self.lines, at, detail));
        self.refute(v.rejected);
        for (held, lines, at, _) in v.pass {
            self.hold(held, lines, at, obs);
        }
    }

    /// Counts refuted clock jumps as invalid (`clock_jump`), naming them:
    /// up to [`MAX_NAMED_JUMPS`] of them, whatever other invalid lines came
    /// first (one such line can blank a report), with where they came from.
    fn refute(&mut self, rejected: Vec<Suspect>) {
        for (held, lines, at, detail) in rejected {
            let detail = self.guard.detail_or_refuted(held.ts(), detail);
            self.engine.record_invalid(InvalidReason::ClockJump);
            if self.refuted.len() < MAX_NAMED_JUMPS {
                self.refuted.push((at, detail.clone()));
                self.invalid_examples
                    .push((lines, InvalidReason::ClockJump, detail));
                self.invalid_at.push(at);
            }
        }
    }

    /// Logs, for `tool`, each refuted clock jump named (where from, why).
    pub(crate) fn warn_refuted(&self, tool: &str, inputs: Option<&input::Inputs>) {
        for (at, detail) in &self.refuted {
            let place = match (at, inputs) {
                (Some(at), Some(i)) => i.describe(*at),
                _ => "a line".to_string(),
            };
            tracing::warn!(
                tool,
                "{place}: clock_jump: {detail} (left out: counted invalid)"
            );
        }
    }

    /// Holds a valid event that passed the clock-jump guard (line count
    /// `lines`, from `at`); applies what the watermark releases.
    fn hold(
        &mut self,
        held: OwnedEvent,
        lines: u64,
        at: Option<input::LineRef>,
        obs: &mut impl Observer,
    ) {
        let ts = held.ts();
        let released = self.seq.released_below();
        coverage::history_start(&mut self.first_ms, &mut self.coverage, released, ts);
        self.coverage.see(ts);
        self.watch.saw(ts, lines, at);
        let newest = self.newest.map_or(ts, |n| n.max(ts));
        self.newest = Some(newest);
        if let Some(behind) = self.seq.offer(held) {
            self.apply(behind, obs);
        }
        let wm = watermark(newest, self.engine.lateness_ms());
        if self.seq.released_below().is_none_or(|b| wm > b) {
            self.release(wm, obs);
            // Boundaries are sampled from the first applied event on; the
            // engine's clock moves from the first event on, as `replay`'s
            // does, so an event behind the watermark before any was applied
            // is late here too (it started the clock at its own time).
            if self.engine.clock().is_some() {
                self.advance_to(wm.saturating_sub(1), obs);
            } else {
                self.engine
                    .advance_clock(wm.saturating_sub(1), &mut self.out);
                for tr in self.out.drain(..) {
                    obs.transition(&tr);
                }
            }
        }
    }

    /// Applies every held event older than `below`, in order.
    fn release(&mut self, below: i64, obs: &mut impl Observer) {
        let mut released = Vec::new();
        self.seq.release(below, |h| released.push(h));
        for h in released {
            self.apply(h, obs);
        }
    }

    fn apply(&mut self, h: OwnedEvent, obs: &mut impl Observer) {
        // Lent in place: the event is large, a returned one is moved. A held
        // event always lends (it decoded once already).
        let mut ev = Event::default();
        if !h.event_into(&mut ev) {
            return;
        }
        let t = self.engine.clock().map_or(ev.ts, |c| c.max(ev.ts));
        self.boundaries_until(t, obs);
        let outcome = self.engine.process(&ev, &mut self.out);
        // Events no rule selected are not counted: the late share is of
        // what the rules read (a stray stamp that made the complaints late
        // must not hide behind the orders no rule reads).
        if outcome != crate::engine::Outcome::Unmatched {
            self.watch
                .counted_at(ev.ts, outcome == crate::engine::Outcome::Late);
        }
        for tr in self.out.drain(..) {
            obs.transition(&tr);
        }
    }

    /// End of input: undecided clock jumps are refuted; applies every event
    /// still held.
    pub fn finish_input(&mut self, obs: &mut impl Observer) {
        let v = self.guard.settle_start();
        self.refute(v.rejected);
        for (held, lines, at, _) in v.pass {
            self.hold(held, lines, at, obs);
        }
        let undecided = self
            .guard
            .finish_explained(|(held, _, _, detail)| (held.ts(), detail));
        self.refute(undecided);
        let mut released = Vec::new();
        self.seq.release_all(|h| released.push(h));
        for h in released {
            self.apply(h, obs);
        }
    }

    /// Advances the engine clock to `t` (never back), stopping at every
    /// boundary on the way; events held up to `t` are applied first. Used at
    /// the end of a rule test to let alerts resolve.
    pub(crate) fn advance_to(&mut self, t: i64, obs: &mut impl Observer) {
        self.release(t.saturating_add(1), obs);
        self.boundaries_until(t, obs);
        self.engine.advance_clock(t, &mut self.out);
        for tr in self.out.drain(..) {
            obs.transition(&tr);
        }
    }

    fn boundaries_until(&mut self, t: i64, obs: &mut impl Observer) {
        let c = self.cadence_ms;
        if c <= 0 {
            return;
        }
        let mut b = *self
            .next_boundary
            .get_or_insert_with(|| (t - 1).div_euclid(c) * c + c + 1);
        if b > t {
            return;
        }
        let gap = (t - b) / c;
        if gap > MAX_BOUNDARIES_PER_GAP {
            b += (gap - MAX_BOUNDARIES_PER_GAP) * c;
        }
        while b <= t {
            self.engine.advance_clock(b, &mut self.out);
            for tr in self.out.drain(..) {
                obs.transition(&tr);
            }
            obs.boundary(&self.engine, b);
            b += c;
        }
        self.next_boundary = Some(b);
    }
}

/// The shortest slide of the configuration's rules (the backtest's sampling step).
pub(crate) fn min_slide_ms(cfg: &Config) -> i64 {
    cfg.rules
        .iter()
        .map(|r| r.slide().as_ms())
        .filter(|&s| s > 0)
        .min()
        .unwrap_or(60_000)
}

/// The backtest observer: incidents, and optionally the transitions as JSONL.
struct Collect<'a> {
    tracker: report::Tracker,
    writer: Option<&'a mut dyn Write>,
    write_error: Option<std::io::Error>,
}

impl Observer for Collect<'_> {
    fn transition(&mut self, t: &Transition) {
        self.tracker.transition(t);
        if let (Some(w), None) = (self.writer.as_mut(), self.write_error.as_ref()) {
            let res = serde_json::to_writer(&mut **w, t)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = res {
                self.write_error = Some(e);
            }
        }
    }

    fn boundary(&mut self, engine: &Engine, _at: i64) {
        self.tracker.sample(engine);
    }
}

/// Runs a backtest of `cfg` over `inputs`. With `transitions`, every
/// transition is also written there as JSONL (the same bytes `replay` writes).
pub fn run(
    cfg: &Config,
    inputs: &Inputs,
    opts: &SummaryOptions,
    now_ms: Option<i64>,
    transitions: Option<&mut dyn Write>,
) -> Result<Report, BacktestError> {
    let mut driver = Driver::new(cfg, min_slide_ms(cfg), now_ms)?;
    driver.engine.watch_cases();
    let mut obs = Collect {
        tracker: report::Tracker::new(driver.engine()),
        writer: transitions,
        write_error: None,
    };
    let started = std::time::Instant::now();
    // Lines are decoded on a second thread while this one applies the ones
    // before them: the same results, in the same order.
    // The launch watch reads every event where it is decoded, off this thread.
    let launches = launch_watch::LaunchWatch::new(cfg).map(|w| Arc::new(Mutex::new(w)));
    let mut ahead = match &launches {
        Some(w) => {
            let w = Arc::clone(w);
            let inspect: Inspect<input::LineRef> =
                Arc::new(Mutex::new(move |decoded: &[Decoded<input::LineRef>]| {
                    let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                    for (_, held) in decoded {
                        w.observe_held(held);
                    }
                }));
            DecodeAhead::inspecting(*driver.engine().limits(), now_ms, inspect)
        }
        None => DecodeAhead::new(*driver.engine().limits(), now_ms),
    };
    let mut labels = opts.labels.as_deref().map(label_watch::LabelWatch::new);
    let mut sink = |(at, decoded): Decoded<input::LineRef>| {
        if let Some(l) = &mut labels {
            l.observe_held(&decoded);
        }
        driver.feed_decoded(decoded, Some(at), &mut obs);
    };
    inputs.for_each_line_with_default(|line, default_type, at| {
        ahead.push(line, default_type, at, &mut sink);
    })?;
    ahead.finish(&mut sink);
    driver.finish_input(&mut obs);
    driver.clock_watch().warn("backtest", Some(inputs));
    if let Some(l) = &labels {
        l.warn("backtest");
    }
    rule_warnings::warn_silent_rules("backtest", driver.engine());
    if let Some(w) = driver
        .coverage()
        .baseline_warning(&coverage::baseline_rules(&cfg.rules))
    {
        tracing::warn!(tool = "backtest", "{w}");
    }
    driver.warn_refuted("backtest", Some(inputs));
    if let Some(e) = obs.write_error {
        return Err(BacktestError::Write(e));
    }
    if let Some(w) = obs.writer {
        w.flush().map_err(BacktestError::Write)?;
    }
    let mut report = finish(&driver, obs.tracker, opts);
    report.invalid_lines = driver.named_invalid_lines(Some(inputs));
    if let Some(w) = &launches {
        let w = w.lock().unwrap_or_else(PoisonError::into_inner);
        let found = w.launches(&report.incidents, |r| driver.engine().origin_end(r));
        if let Some(msg) = launch_watch::warning(&found) {
            tracing::warn!(tool = "backtest", "{msg}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        lines = report.lines,
        incidents = report.incidents.len(),
        seconds = secs,
        events_per_second = report.lines as f64 / secs.max(1e-9),
        "Backtest finished"
    );
    Ok(report)
}

/// A backtest over lines already in memory (tests, benches).
pub fn run_lines<'a>(
    cfg: &Config,
    lines: impl IntoIterator<Item = &'a [u8]>,
    opts: &SummaryOptions,
) -> Result<Report, EngineError> {
    let mut driver = Driver::new(cfg, min_slide_ms(cfg), None)?;
    let mut obs = Collect {
        tracker: report::Tracker::new(driver.engine()),
        writer: None,
        write_error: None,
    };
    for l in lines {
        driver.feed(l, &mut obs);
    }
    driver.finish_input(&mut obs);
    Ok(finish(&driver, obs.tracker, opts))
}
