//! `crisiswatch replay`: drives the core over a JSONL file or stdin and writes
//! the alert transitions, one JSON object per line (`docs/contract.md` §3).
//!
//! A source at the edge of the data flow: lines in, transitions out, nothing
//! else. With the same input, configuration and `--now`, the output is
//! byte-identical. The summary (events read, invalid by reason, late,
//! transitions) is returned for the caller to print on stderr.

use std::cell::RefCell;
use std::fmt;
use std::io::{BufRead, Write};

use crate::alert::Transition;
use crate::backtest::clock_watch::ClockWatch;
use crate::engine::{Engine, EngineStats, Outcome};
use crate::event::ahead::{DecodeAhead, Decoded};
use crate::event::{decode, decode_held, Event, Invalid, InvalidReason, OwnedEvent};
use crate::sequencer::{watermark, JumpGuard, SequencerOf, Verdict};

/// Errors of a replay: only I/O can fail; bad lines are counted, not fatal.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the input failed.
    #[error("cannot read input: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Write(#[source] std::io::Error),
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    /// Non-empty lines read.
    pub(crate) lines: u64,
    /// The engine's counters at the end.
    pub stats: EngineStats,
    /// The first few invalid lines, and up to five refuted clock jumps:
    /// (line number, reason, detail).
    pub invalid_examples: Vec<(u64, InvalidReason, String)>,
    /// The event-time clock as the lines moved it: late shares, a history
    /// newest first or in seconds ([`ReplaySummary::warn`]).
    pub(crate) watch: ClockWatch,
    /// Ids the dedup memory forgot before `dedup_horizon` (it was full).
    pub(crate) dedup_evicted: u64,
}

impl ReplaySummary {
    /// Logs what the summary's figures do not say by themselves: many
    /// events late (and the line that moved the clock before them, or a
    /// history given newest first), times that look like seconds.
    /// `input` names the file read (`None`: stdin), so the line that moved
    /// the clock is named `FILE:LINE`.
    pub fn warn(&self, input: Option<&str>) {
        self.watch.warn_named("replay", None, input);
    }

    /// Names a refuted clock jump: up to five of them, whatever other
    /// invalid lines came first (one such line can blank a replay).
    fn name_jump(&mut self, at: u64, detail: String) {
        let named = self
            .invalid_examples
            .iter()
            .filter(|e| e.1 == InvalidReason::ClockJump)
            .count();
        if named < 5 {
            self.invalid_examples
                .push((at, InvalidReason::ClockJump, detail));
        }
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "lines read:   {}", self.lines)?;
        writeln!(f, "applied:      {}", s.applied)?;
        writeln!(f, "invalid:      {}", s.invalid_total())?;
        for r in InvalidReason::ALL {
            let n = s.invalid[r.index()];
            if n > 0 {
                writeln!(f, "  {:<18}{n}", r.as_str())?;
            }
        }
        writeln!(f, "duplicates:   {}", s.duplicates)?;
        if self.dedup_evicted > 0 {
            writeln!(
                f,
                "  dedup memory full (engine.dedup_max_ids): {} ids forgotten before engine.dedup_horizon; a repeat of one counted again",
                self.dedup_evicted
            )?;
        }
        writeln!(f, "late:         {}", s.late)?;
        writeln!(f, "unmatched:    {}", s.unmatched)?;
        writeln!(f, "overflow:     {}", s.overflow)?;
        write!(f, "transitions:  {}", s.transitions)?;
        for (line, reason, detail) in &self.invalid_examples {
            write!(f, "\n  line {line}: {reason}: {detail}")?;
        }
        Ok(())
    }
}

/// Replays `input` through `engine`, writing each transition as a JSON line to
/// `output`. `now_ms` is the reference for the future-skew check (`None` skips it).
/// `on_transition` sees every transition too (backtests and the demo use it).
pub fn replay(
    engine: &mut Engine,
    input: impl BufRead,
    output: &mut dyn Write,
    now_ms: Option<i64>,
    on_transition: impl FnMut(&Transition),
) -> Result<ReplaySummary, ReplayError> {
    replay_with(engine, input, output, now_ms, on_transition, |_| {})
}

/// [`replay`], calling `on_applied` with the engine after each line's
/// events were handed to it and their transitions to `on_transition` (the
/// incident side sends what fell due by the engine's clock, with its
/// current values).
pub fn replay_with(
    engine: &mut Engine,
    mut input: impl BufRead,
    output: &mut dyn Write,
    now_ms: Option<i64>,
    mut on_transition: impl FnMut(&Transition),
    mut on_applied: impl FnMut(&mut Engine),
) -> Result<ReplaySummary, ReplayError> {
    let mut summary = ReplaySummary::default();
    let mut line = Vec::with_capacity(1024);
    let mut out = Vec::new();
    let mut line_no = 0u64;
    let mut feed = OrderedFeed::new(engine);
    // Lines are decoded on a second thread while this one applies the ones
    // before them: the same results, in the same order.
    let mut ahead = DecodeAhead::new(*engine.limits(), now_ms);
    tracing::debug!(threaded = ahead.threaded(), "replay: decoding ahead");
    // The first failed write: nothing more is applied or written after it.
    let failed: RefCell<Option<ReplayError>> = RefCell::new(None);
    feed.watch_clock(ClockWatch::with_horizons(
        engine.late_horizon_ms(),
        engine.short_late_horizon_ms(),
    ));
    // One byte past the event size limit is enough to call a line oversized.
    let line_cap = engine.limits().max_event_bytes.saturating_add(1);
    let mut sink = |(at, decoded): Decoded<u64>| {
        if failed.borrow().is_some() {
            return;
        }
        let pushed = feed.push_decoded(engine, decoded, at, &mut out);
        for (at, detail) in feed.take_rejected() {
            summary.name_jump(at, detail);
        }
        if let Err(inv) = pushed {
            if summary.invalid_examples.len() < 5 {
                summary.invalid_examples.push((at, inv.reason, inv.detail));
            }
        }
        if let Err(e) = write_transitions(&mut out, output, &mut on_transition) {
            *failed.borrow_mut() = Some(e);
            return;
        }
        on_applied(engine);
    };
    let mut lines = 0u64;
    while failed.borrow().is_none() {
        line.clear();
        // One byte past the limit is enough to call a line oversized.
        let n = crate::event::read_line_capped(&mut input, &mut line, line_cap)
            .map_err(ReplayError::Read)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let trimmed = crate::event::trim_line(&line);
        if trimmed.is_empty() {
            continue;
        }
        lines += 1;
        ahead.push(trimmed, None, line_no, &mut sink);
    }
    ahead.finish(&mut sink);
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    summary.lines = lines;
    feed.finish(engine, &mut out);
    if let Some(w) = feed.take_watch() {
        summary.watch = w;
    }
    for (at, detail) in feed.take_rejected() {
        summary.name_jump(at, detail);
    }
    write_transitions(&mut out, output, &mut on_transition)?;
    output.flush().map_err(ReplayError::Write)?;
    summary.stats = engine.stats().clone();
    summary.dedup_evicted = engine.dedup_evicted();
    let st = &summary.stats;
    // Every valid event a rule selected, as `backtest` counts them
    // (duplicates and refused ones too), so both name the same share.
    summary
        .watch
        .adopt_counts(st.applied + st.duplicates + st.late + st.overflow, st.late);
    Ok(summary)
}

/// One source read in arrival order (a file, stdin) fed to an engine through
/// a [`Sequencer`]: the clock is the newest event time, the watermark that
/// minus `allowed_lateness`, and events reach the engine in `(ts, id)` order
/// behind it — the order the live service feeds, so the same events give the
/// same transitions in both. Events are held decoded ([`OwnedEvent`]), so
/// each input is decoded once.
#[derive(Debug)]
pub struct OrderedFeed {
    seq: SequencerOf<OwnedEvent>,
    newest: Option<i64>,
    lateness_ms: i64,
    /// Holds events that would jump the clock (`engine.max_clock_jump`).
    guard: JumpGuard<(OwnedEvent, u64, String)>,
    /// Refuted jumps not yet taken: (position, detail).
    rejected: Vec<(u64, String)>,
    /// Watches the events the guard let through (`replay`'s late-share
    /// warning): a refuted jump never moves it.
    watch: Option<ClockWatch>,
}

impl OrderedFeed {
    /// A feed into `engine` (which it marks as sequenced).
    pub fn new(engine: &mut Engine) -> Self {
        engine.set_sequenced(true);
        OrderedFeed {
            seq: SequencerOf::new(),
            newest: None,
            lateness_ms: engine.lateness_ms(),
            guard: JumpGuard::new(
                engine.limits().max_clock_jump_ms,
                engine.limits().clock_jump_confirm,
            )
            .anchored(),
            rejected: Vec::new(),
            watch: None,
        }
    }

    /// Watches the clock of the events that pass the clock-jump guard.
    pub(crate) fn watch_clock(&mut self, watch: ClockWatch) {
        self.watch = Some(watch);
    }

    /// The watch given to [`OrderedFeed::watch_clock`].
    pub(crate) fn take_watch(&mut self) -> Option<ClockWatch> {
        self.watch.take()
    }

    /// [`OrderedFeed::push`] of the input at position `at` (a line number),
    /// which names it if it turns out a refuted clock jump.
    pub fn push_at(
        &mut self,
        engine: &mut Engine,
        bytes: &[u8],
        now_ms: Option<i64>,
        at: u64,
        out: &mut Vec<Transition>,
    ) -> Result<(), crate::event::Invalid> {
        // Decoded in place: the event is large, a returned one is moved.
        let mut ev = Event::default();
        let decoded = decode_held(bytes, engine.limits(), now_ms, None, &mut ev);
        drop(ev);
        self.push_decoded(engine, decoded, at, out)
    }

    /// [`OrderedFeed::push_at`] of an input already decoded (by
    /// [`decode_held`], as a [`DecodeAhead`] does).
    pub(crate) fn push_decoded(
        &mut self,
        engine: &mut Engine,
        decoded: Result<OwnedEvent, Invalid>,
        at: u64,
        out: &mut Vec<Transition>,
    ) -> Result<(), Invalid> {
        let held = match decoded {
            Ok(held) => held,
            Err(inv) => {
                engine.record_invalid(inv.reason);
                return Err(inv);
            }
        };
        if self.guard.pass_quick(held.ts()) {
            // The usual case: nothing held aside, no jump.
            self.hold(engine, held, at, out);
            return Ok(());
        }
        let detail = self.guard.jump_detail(held.ts()).unwrap_or_default();
        let v = self.guard.offer(held.ts(), (held, at, detail));
        self.settle(engine, v, out);
        Ok(())
    }

    /// Applies what the guard let through; counts and names what it refuted.
    fn settle(
        &mut self,
        engine: &mut Engine,
        v: Verdict<(OwnedEvent, u64, String)>,
        out: &mut Vec<Transition>,
    ) {
        for (held, at, detail) in v.rejected {
            let detail = self.guard.detail_or_refuted(held.ts(), detail);
            engine.record_invalid(InvalidReason::ClockJump);
            self.rejected.push((at, detail));
        }
        for (held, at, _) in v.pass {
            self.hold(engine, held, at, out);
        }
    }

    /// Refuted clock jumps since the last call: (position, detail). They
    /// are counted as invalid (`clock_jump`) by the engine.
    pub fn take_rejected(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.rejected)
    }

    /// Decodes one input and holds it; applies what the watermark releases.
    /// An invalid input is counted by the engine and returned.
    pub fn push(
        &mut self,
        engine: &mut Engine,
        bytes: &[u8],
        now_ms: Option<i64>,
        out: &mut Vec<Transition>,
    ) -> Result<(), crate::event::Invalid> {
        self.push_at(engine, bytes, now_ms, 0, out)
    }

    /// Holds a valid event that passed the clock-jump guard; applies what
    /// the watermark releases.
    fn hold(&mut self, engine: &mut Engine, held: OwnedEvent, at: u64, out: &mut Vec<Transition>) {
        if let Some(w) = self.watch.as_mut() {
            w.saw(held.ts(), at, None);
        }
        let newest = self.newest.map_or(held.ts(), |n| n.max(held.ts()));
        self.newest = Some(newest);
        if let Some(behind) = self.seq.offer(held) {
            let o = apply_held(engine, &behind, out);
            watched(&mut self.watch, behind.ts(), o);
        }
        let wm = watermark(newest, self.lateness_ms);
        if self.seq.released_below().is_none_or(|b| wm > b) {
            let watch = &mut self.watch;
            self.seq.release(wm, |h| {
                let o = apply_held(engine, &h, out);
                watched(watch, h.ts(), o);
            });
            engine.advance_clock(wm.saturating_sub(1), out);
        }
    }

    /// End of input: undecided clock jumps are refuted; releases everything
    /// still held.
    pub fn finish(&mut self, engine: &mut Engine, out: &mut Vec<Transition>) {
        let v = self.guard.settle_start();
        self.settle(engine, v, out);
        let undecided = self
            .guard
            .finish_explained(|(held, _, detail)| (held.ts(), detail));
        for (_, at, detail) in undecided {
            engine.record_invalid(InvalidReason::ClockJump);
            self.rejected.push((at, detail));
        }
        let watch = &mut self.watch;
        self.seq.release_all(|h| {
            let o = apply_held(engine, &h, out);
            watched(watch, h.ts(), o);
        });
    }
}

/// Applies a released event (valid when it was held, and held decoded).
fn apply_held(engine: &mut Engine, held: &OwnedEvent, out: &mut Vec<Transition>) -> Outcome {
    // Lent in place: the event is large, a returned one is moved.
    let mut ev = Event::default();
    if held.event_into(&mut ev) {
        engine.process(&ev, out)
    } else if let Ok(ev) = decode(held.raw(), engine.limits(), None) {
        // Unreachable for an event that decoded; decode it again rather than lose it.
        engine.process(&ev, out)
    } else {
        Outcome::Unmatched
    }
}

/// Counts an applied event's outcome in the late-share watch, as
/// `backtest` does: late as the engine judged it (for a rule with a short
/// window too), charged to the clock move that made it so; an event no
/// rule selected is not counted.
fn watched(watch: &mut Option<ClockWatch>, ts: i64, o: Outcome) {
    if let Some(w) = watch.as_mut() {
        if o != Outcome::Unmatched {
            w.counted_at(ts, o == Outcome::Late);
        }
    }
}

fn write_transitions(
    out: &mut Vec<Transition>,
    output: &mut dyn Write,
    on_transition: &mut impl FnMut(&Transition),
) -> Result<(), ReplayError> {
    for t in out.drain(..) {
        on_transition(&t);
        serde_json::to_writer(&mut *output, &t).map_err(|e| ReplayError::Write(e.into()))?;
        output.write_all(b"\n").map_err(ReplayError::Write)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// `replay` of `n` orders a second apart, the 201st stamped `ahead_ms`
    /// after the first instead.
    fn replay_orders(cfg: &Config, n: i64, ahead_ms: i64) -> ReplaySummary {
        let s: i64 = 1_795_132_800_000;
        let mut input = String::new();
        for i in 0..n {
            let ts = if i == 200 { s + ahead_ms } else { s + i * 1000 };
            input.push_str(&format!(
                "{{\"id\":\"e{i}\",\"type\":\"order\",\"ts\":{ts},\"attrs\":{{}}}}\n"
            ));
        }
        let mut engine = Engine::new(cfg).expect("engine");
        let mut out = Vec::new();
        replay(&mut engine, input.as_bytes(), &mut out, None, |_| {}).expect("replay")
    }

    /// One line an hour ahead of an ordinary stream, with a 10-minute and a
    /// 2-hour rule: not a jump for the longest window, yet the events after
    /// it are late for the short one. The warning names that line as a bad
    /// time (before, `replay` named no cause: its watch judged lateness by
    /// the longest window alone).
    #[test]
    fn a_stray_line_within_the_longest_window_is_named() {
        let cfg = Config::from_toml_str(
            "[[rules]]\nname = \"short\"\nwindow = \"10m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 1000000 }\n\n\
             [[rules]]\nname = \"long\"\nwindow = \"2h\"\nindicator = { kind = \"count\", select = { type = \"complaint\" } }\nthresholds = { warning = 1000000 }\n",
            &std::collections::HashMap::new(),
        )
        .expect("config");
        let summary = replay_orders(&cfg, 1200, 3_600_000);
        assert!(summary.stats.late > 500, "{:?}", summary.stats);
        let share = summary.watch.late_share().expect("a warning");
        let m = share.culprit.expect("a culprit");
        assert_eq!(m.line, 201, "{m:?}");
        let text = share.describe(None);
        assert!(text.contains("check that event's time"), "{text}");
        assert!(!text.contains("ordinary step"), "{text}");
    }

    /// A line days ahead, refuted by the lines after it, neither moves the
    /// clock the late-share warning watches nor makes anything late.
    #[test]
    fn a_refuted_jump_leaves_the_late_share_watch_alone() {
        let cfg = Config::from_toml_str(
            "[[rules]]\nname = \"n\"\nwindow = \"10m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 1000000 }\n",
            &std::collections::HashMap::new(),
        )
        .expect("config");
        let summary = replay_orders(&cfg, 400, 3 * 86_400_000);
        assert_eq!(summary.stats.invalid[InvalidReason::ClockJump.index()], 1);
        assert_eq!(summary.stats.late, 0);
        assert!(summary.watch.late_share().is_none(), "{:?}", summary.watch);
        assert!(summary
            .invalid_examples
            .iter()
            .any(|(line, r, _)| *line == 201 && *r == InvalidReason::ClockJump));
    }

    /// A dedup memory too small for its horizon is not silent: the ids it
    /// forgot early are counted in the summary and in
    /// `crisiswatch_dedup_evicted_total`, and the repeats it let through
    /// are the ones it forgot.
    #[test]
    fn a_full_dedup_memory_is_counted_and_named() {
        let cfg = Config::from_toml_str(
            "[engine]\ndedup_max_ids = 2\n[[rules]]\nname = \"n\"\nwindow = \"10m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 1000000 }\n",
            &std::collections::HashMap::new(),
        )
        .expect("config");
        let s: i64 = 1_795_132_800_000;
        let line = |id: &str, k: i64| {
            format!(
                "{{\"id\":\"{id}\",\"type\":\"order\",\"ts\":{},\"attrs\":{{}}}}\n",
                s + k * 1000
            )
        };
        // e0..e4 (three forgotten early), then e4 again (remembered: a
        // duplicate) and e0 again (forgotten: counted again).
        let mut input: String = (0..5).map(|i| line(&format!("e{i}"), i)).collect();
        input.push_str(&line("e4", 5));
        input.push_str(&line("e0", 6));
        let mut engine = Engine::new(&cfg).expect("engine");
        let summary =
            replay(&mut engine, input.as_bytes(), &mut Vec::new(), None, |_| {}).expect("replay");
        assert_eq!(summary.stats.duplicates, 1);
        assert_eq!(summary.stats.applied, 6);
        assert_eq!(summary.dedup_evicted, 4);
        let text = summary.to_string();
        assert!(
            text.contains("dedup memory full (engine.dedup_max_ids): 4 ids forgotten"),
            "{text}"
        );
        let metrics = crate::metrics::Metrics::new(10).expect("metrics");
        metrics.publish_groups(&engine, 0);
        metrics.publish_groups(&engine, 0);
        let page = metrics.render();
        assert!(page.contains("crisiswatch_dedup_evicted_total 4"), "{page}");
    }
}
