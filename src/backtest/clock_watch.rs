//! Watching the event-time clock of a pass over history, so that one bad
//! timestamp cannot silently blank a backtest.
//!
//! The engine's clock is the newest event time seen. One line stamped days
//! (or millennia) ahead of the rest moves it there, and every later event is
//! then *late* — behind the watermark by more than any window — and dropped:
//! the backtest reports no incident at all. The history tools reject events
//! ahead of the wall clock by default (`--now`), which catches a stamp in the
//! future of today, but not one that is merely ahead of the rest of an old
//! history. So every history pass (`backtest`, `tune`, `chart`, `review`) feeds
//! the times it decodes through a [`ClockWatch`], which counts events that are
//! late for every rule (older than clock − `allowed_lateness` − the longest
//! window) and remembers which input moved the clock before them; when more
//! than [`LATE_SHARE_WARNING`] of the events are late, the tool logs a warning
//! that names that line (`file:line`) or Kafka message
//! (`topic[partition]@offset`).

use super::input::{Inputs, LineRef};
use crate::config::Config;
use crate::event::format_ts;

/// Share of late events above which a history tool warns. A healthy history
/// has none beyond a few stragglers (the generated demo stream has none: its
/// late noise stays within `allowed_lateness`); 1 % late means either a clock
/// that jumped or a history whose files are out of order.
pub(crate) const LATE_SHARE_WARNING: f64 = 0.01;

/// The input that moved the clock, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClockMove {
    /// Where the line came from, when the caller said (files, Kafka).
    pub(crate) at: Option<LineRef>,
    /// Its position among all lines fed (1-based).
    pub(crate) line: u64,
    /// The clock before it (`None`: it was the first event).
    pub(crate) from_ms: Option<i64>,
    /// Its event time: the clock after it.
    pub(crate) to_ms: i64,
    /// Events found late while the clock stood where it put it.
    pub(crate) late_after: u64,
}

/// Counts late events and remembers which clock move they came after.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClockWatch {
    /// allowed_lateness + the longest window: older than clock − this is late
    /// for every rule.
    horizon_ms: i64,
    /// allowed_lateness + the shortest window (0: as `horizon_ms`): a clock
    /// move larger than this can make events late for some rule.
    short_ms: i64,
    clock: Option<i64>,
    events: u64,
    late: u64,
    /// The last ordinary move (no larger than the horizon, or the first
    /// event): late events no jump accounts for are charged to it.
    current: Option<ClockMove>,
    /// The earlier ordinary move with the most late events after it.
    worst: Option<ClockMove>,
    /// The recent moves larger than the horizon (with a horizon only), in
    /// clock order: a late event whose time the clock passed (less the
    /// horizon) in one of them is charged to that jump, however many
    /// ordinary steps followed it.
    jumps: Vec<ClockMove>,
    /// The previous event's time, and how many events came before
    /// (`down`) or after (`up`) it in time: a history given newest first.
    prev: Option<i64>,
    down: u64,
    up: u64,
    /// Per input read, in reading order: (its index, earliest, latest time).
    spans: Vec<(usize, i64, i64)>,
    /// Events more than [`FAR_BEHIND_MS`] behind the one read before them,
    /// and the oldest of them: stamps in the wrong unit or with a wrong
    /// date, not disorder (after a stamp far *ahead*, only the first event
    /// steps back so far; the others follow one another).
    far_behind: u64,
    oldest_late: Option<i64>,
    /// The first of them: (its position among all lines fed, where it
    /// came from, its time).
    first_far: Option<(u64, Option<LineRef>, i64)>,
    /// Runs of events sharing one time: a history stamped in batches.
    stamps: stamp_runs::StampRuns,
}

/// An event this far behind the one read before it (30 days) is not out of
/// order: its stamp is wrong (seconds written as milliseconds, a wrong year).
const FAR_BEHIND_MS: i64 = 30 * 86_400_000;

/// The most jumps a watch keeps apart ([`ClockWatch::jumps`]); an older
/// one is folded into `worst`.
const MAX_JUMPS: usize = 256;

/// How far an input may start before the one before it ends without a
/// warning (files cut mid-minute).
const OVERLAP_TOLERANCE_MS: i64 = 60_000;

/// Event times below this (1973-03-03, 10^11 ms) in a whole history are
/// taken for seconds since the epoch read as milliseconds: such a history
/// sits in January 1970.
const SECONDS_LIKE_BELOW_MS: i64 = 100_000_000_000;

/// What a warning says: how many events were late and which move caused most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LateShare {
    /// Late events.
    pub(crate) late: u64,
    /// Valid events seen.
    pub(crate) events: u64,
    /// The clock move most late events came after.
    pub(crate) culprit: Option<ClockMove>,
    /// The watch's shortest horizon (0: unknown): a move no larger than it
    /// cannot have made events late by itself.
    pub(crate) horizon_ms: i64,
    /// The events came newest first ([`ClockWatch::descending`]).
    pub(crate) descending: bool,
    /// Events far behind the one before them, and the oldest of them.
    pub(crate) far_behind: u64,
    pub(crate) oldest_late: Option<i64>,
}

impl ClockWatch {
    /// A watch for the rules of `cfg`.
    pub(crate) fn new(cfg: &Config) -> Self {
        let windows = || cfg.rules.iter().map(|r| r.window.as_ms());
        let lateness = cfg.engine.allowed_lateness.as_ms();
        ClockWatch {
            horizon_ms: lateness.saturating_add(windows().max().unwrap_or(0)),
            short_ms: lateness.saturating_add(windows().min().unwrap_or(0)),
            ..ClockWatch::default()
        }
    }

    /// A watch judging events late `horizon_ms` behind the clock, for
    /// whose rules a clock move larger than `short_ms` can make events late.
    pub(crate) fn with_horizons(horizon_ms: i64, short_ms: i64) -> Self {
        ClockWatch {
            horizon_ms,
            short_ms,
            ..ClockWatch::default()
        }
    }

    /// One valid event with time `ts`, the `line`-th fed, from `at`.
    pub(crate) fn observe(&mut self, ts: i64, line: u64, at: Option<LineRef>) {
        self.order(ts, line, at);
        self.span(ts, at);
        match self.clock {
            Some(c) if ts <= c => self.counted_at(ts, ts < c.saturating_sub(self.horizon_ms)),
            _ => {
                self.moved_to(ts, line, at);
                self.counted(false);
            }
        }
    }

    /// The `line`-th input, from `at`, has time `ts`: the clock moves when it
    /// is newer. Nothing is counted: the caller counts the engine's outcome
    /// with [`ClockWatch::counted`], so the warning's figure is the report's.
    pub(crate) fn saw(&mut self, ts: i64, line: u64, at: Option<LineRef>) {
        self.order(ts, line, at);
        self.span(ts, at);
        if self.clock.is_none_or(|c| ts > c) {
            self.moved_to(ts, line, at);
        }
    }

    /// Widens the time span of the input `at` is from.
    fn span(&mut self, ts: i64, at: Option<LineRef>) {
        let Some(at) = at else {
            return;
        };
        match self.spans.last_mut() {
            Some((f, lo, hi)) if *f == at.file => {
                *lo = (*lo).min(ts);
                *hi = (*hi).max(ts);
            }
            _ => self.spans.push((at.file, ts, ts)),
        }
    }

    /// Two inputs read one after the other whose times overlap: the later
    /// one's index, its earliest time, the earlier one's index and latest.
    pub(crate) fn overlap(&self) -> Option<(usize, i64, usize, i64)> {
        self.spans.windows(2).find_map(|w| {
            let ((a, a_lo, a_hi), (b, b_lo, b_hi)) = (w[0], w[1]);
            (b_lo < a_hi.saturating_sub(OVERLAP_TOLERANCE_MS)
                && b_hi > a_lo.saturating_add(OVERLAP_TOLERANCE_MS))
            .then_some((b, b_lo, a, a_hi))
        })
    }

    /// Two inputs read one after the other where the later one lies wholly
    /// before the earlier one (given newest first, not overlapping): the
    /// later one's index and the earlier one's.
    pub(crate) fn reversed(&self) -> Option<(usize, usize)> {
        self.spans.windows(2).find_map(|w| {
            let ((a, a_lo, _), (b, b_lo, b_hi)) = (w[0], w[1]);
            (b_hi <= a_lo.saturating_add(OVERLAP_TOLERANCE_MS) && b_lo < a_lo).then_some((b, a))
        })
    }

    /// Notes whether `ts` (the `line`-th input, from `at`) steps back or
    /// forth from the event before it.
    fn order(&mut self, ts: i64, line: u64, at: Option<LineRef>) {
        if self
            .prev
            .is_some_and(|p| p.saturating_sub(ts) > FAR_BEHIND_MS)
        {
            self.far_behind += 1;
            self.first_far.get_or_insert((line, at, ts));
            self.oldest_late = Some(self.oldest_late.map_or(ts, |o| o.min(ts)));
        }
        match self.prev {
            Some(p) if ts < p => self.down += 1,
            Some(p) if ts > p => self.up += 1,
            _ => {}
        }
        self.prev = Some(ts);
        self.stamps.note(ts, line, at);
    }

    /// Whether the events came mostly newest first: at least nine steps
    /// back in time for every step forward, over at least 20 events.
    pub(crate) fn descending(&self) -> bool {
        self.down >= 20 && self.down >= 9 * self.up
    }

    /// The newest event time, when every event of the history lies before
    /// 1973: times in seconds read as milliseconds.
    pub(crate) fn seconds_like(&self) -> Option<i64> {
        self.clock
            .filter(|&c| self.events > 0 && (0..SECONDS_LIKE_BELOW_MS).contains(&c))
    }

    /// One valid event counted, `late` as its reader judged it (`run`: the
    /// engine's outcome), charged to the last ordinary move.
    pub(crate) fn counted(&mut self, late: bool) {
        self.events += 1;
        if late {
            self.late += 1;
            if let Some(m) = self.current.as_mut() {
                m.late_after += 1;
            }
        }
    }

    /// [`ClockWatch::counted`] of an event at `ts`: a late one is charged to
    /// the jump that moved the clock past it (the clock before that jump
    /// would have taken it; one the engine judged late for a rule with a
    /// shorter window lies up to the jump's end), else to the last ordinary
    /// move.
    pub(crate) fn counted_at(&mut self, ts: i64, late: bool) {
        if !late {
            self.counted(false);
            return;
        }

        let h = self.horizon_ms;
        // Jumps are in clock order and do not overlap: the last one that
        // starts (less the horizon) at or before `ts`.
        let i = self
            .jumps
            .partition_point(|j| j.from_ms.unwrap_or(i64::MIN).saturating_sub(h) <= ts);
        match i.checked_sub(1).map(|i| &mut self.jumps[i]) {
            Some(j) if ts < j.to_ms => {
                self.events += 1;
                self.late += 1;
                j.late_after += 1;
            }
            _ => self.counted(true),
        }
    }

    /// The clock moved to `to` (later than before) because of the `line`-th
    /// input, from `at`.
    pub(crate) fn moved_to(&mut self, to: i64, line: u64, at: Option<LineRef>) {
        let next = ClockMove {
            at,
            line,
            from_ms: self.clock,
            to_ms: to,
            late_after: 0,
        };
        self.clock = Some(self.clock.map_or(to, |c| c.max(to)));
        let jump = self.horizon_ms > 0
            && next
                .from_ms
                .is_some_and(|f| to.saturating_sub(f) > self.horizon_ms);
        if jump {
            // Kept apart: the ordinary steps after it do not take its blame.
            self.jumps.push(next);
            if self.jumps.len() > MAX_JUMPS {
                let old = self.jumps.remove(0);
                self.keep_worst(old);
            }
            return;
        }
        if let Some(prev) = self.current.replace(next) {
            self.keep_worst(prev);
        }
    }

    /// Remembers `m` as the worst earlier move if it has the most late
    /// events after it.
    fn keep_worst(&mut self, m: ClockMove) {
        if self.worst.is_none_or(|w| m.late_after > w.late_after) {
            self.worst = Some(m);
        }
    }

    /// The clock as moved so far.
    pub(crate) fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// Takes the reader's totals (a `replay`, whose sequencer applies
    /// events after the watch saw them: the engine's late count is the one
    /// its summary prints, and the warning says the same, more or fewer
    /// than this watch judged by its horizon). The moves keep the shares
    /// the watch charged them, at most the total.
    pub(crate) fn adopt_counts(&mut self, events: u64, late: u64) {
        self.events = events;
        self.late = late;
    }

    /// Forgets the counts (after a warning in a long run), keeping the clock.
    pub(crate) fn reset_counts(&mut self) {
        self.events = 0;
        self.late = 0;
        self.far_behind = 0;
        self.oldest_late = None;
        self.first_far = None;
        self.worst = None;
        if let Some(m) = self.current.as_mut() {
            m.late_after = 0;
        }
        for j in &mut self.jumps {
            j.late_after = 0;
        }
    }

    /// Late events and the move most of them came after, when they are more
    /// than [`LATE_SHARE_WARNING`] of the events.
    pub(crate) fn late_share(&self) -> Option<LateShare> {
        if self.late == 0 || (self.late as f64) < LATE_SHARE_WARNING * self.events as f64 {
            return None;
        }
        let ordinary = match (self.current, self.worst) {
            (Some(c), Some(w)) if w.late_after > c.late_after => Some(w),
            (c, w) => c.or(w),
        };
        // The move most late events came after; on a tie the jump, then the
        // latest jump.
        let culprit = self
            .jumps
            .iter()
            .rev()
            .copied()
            .fold(None, |best: Option<ClockMove>, j| match best {
                Some(b) if b.late_after >= j.late_after => Some(b),
                _ => Some(j),
            })
            .filter(|j| j.late_after > 0 && ordinary.is_none_or(|o| j.late_after >= o.late_after))
            .or(ordinary)
            // Never more than the total (a replay's total is the engine's).
            .map(|m| ClockMove {
                late_after: m.late_after.min(self.late),
                ..m
            });
        Some(LateShare {
            late: self.late,
            events: self.events,
            culprit,
            horizon_ms: if self.short_ms > 0 {
                self.short_ms
            } else {
                self.horizon_ms
            },
            descending: self.descending(),
            far_behind: self.far_behind.min(self.late),
            oldest_late: self.oldest_late,
        })
    }

    /// Logs the warning of [`ClockWatch::late_share`], if any, for `tool`
    /// reading `inputs`.
    pub(crate) fn warn(&self, tool: &str, inputs: Option<&Inputs>) {
        self.warn_named(tool, inputs, None);
    }

    /// [`ClockWatch::warn`] for a reader of one input named `name` (a
    /// replay's `--input`): the line that moved the clock is named in it.
    pub(crate) fn warn_named(&self, tool: &str, inputs: Option<&Inputs>, name: Option<&str>) {
        // Where the `line`-th input fed, from `at`, came from.
        let place = |at: Option<LineRef>, line: u64| match (at, inputs, name) {
            (Some(at), Some(i), _) => i.describe(at),
            (_, _, Some(name)) => format!("{name}:{line}"),
            _ => format!("line {line}"),
        };
        if let (Some((b, a)), Some(i)) = (self.reversed(), inputs) {
            if i.are_files() {
                tracing::warn!(
                    tool,
                    "inputs out of time order: {} holds only events older than those of {}, \
                     which was given before it, so they come behind the clock and are late — \
                     give the files oldest first",
                    i.name(b),
                    i.name(a)
                );
            }
        }
        if let (Some((b, b_lo, a, a_hi)), Some(i)) = (self.overlap(), inputs) {
            if i.are_files() {
                tracing::warn!(
                    tool,
                    "inputs overlap in time: {} starts at {}, before {} ends ({}): files are \
                     read one after the other, not merged by time, so the later file's events \
                     behind the clock are late (and an event in both counts twice once its copies \
                     are further apart than engine.dedup_horizon) — files of one period split \
                     another way (by event type, by region) must be merged by time first \
                     (`jq -c -s 'sort_by(.ts)[]' A B`, when every ts is written one way), or \
                     produced to a Kafka topic and read with --kafka-topic, which merges by \
                     event time",
                    i.name(b),
                    format_ts(b_lo),
                    i.name(a),
                    format_ts(a_hi)
                );
            }
        }
        if let Some(s) = self.late_share() {
            let message = match (inputs, name) {
                (None, Some(name)) => s.describe_with(|m| format!("{name}:{}", m.line)),
                _ => s.describe(inputs),
            };
            tracing::warn!(tool, late = s.late, events = s.events, "{message}");
        } else if let Some((line, at, ts)) = self.first_far {
            // Too few to reach the late share, yet not disorder: a stamp
            // weeks or years off (a field trial's 1970 line was counted
            // late and named nowhere).
            let place = place(at, line);
            tracing::warn!(
                tool,
                events = self.far_behind,
                "{} event(s) lie more than 30 days behind the event before them, the first at {place} ({}): their times are wrong, not merely out of order (a wrong year or date, seconds written as milliseconds?) — they were late and left out",
                self.far_behind,
                format_ts(ts)
            );
        }
        if let Some(b) = self.stamps.batches() {
            tracing::warn!(tool, "{}", stamp_runs::describe(&b, place));
        }
        if let Some(newest) = self.seconds_like() {
            tracing::warn!(
                tool,
                newest = %format_ts(newest),
                "every event of the history lies before 1973 (the newest at {}): `ts` is \
                 milliseconds since the epoch, and times in seconds read as January 1970 — \
                 multiply them by 1000 or write RFC 3339 times",
                format_ts(newest)
            );
        }
    }
}

impl LateShare {
    /// The warning for people, naming the input that moved the clock.
    pub(crate) fn describe(&self, inputs: Option<&Inputs>) -> String {
        self.describe_with(|m| match (m.at, inputs) {
            (Some(at), Some(i)) => i.describe(at),
            _ => format!("line {}", m.line),
        })
    }

    /// Like [`LateShare::describe`], with `place` naming the input of a move.
    pub(crate) fn describe_with(&self, place: impl Fn(&ClockMove) -> String) -> String {
        let pct = 100.0 * self.late as f64 / self.events.max(1) as f64;
        let mut s = format!(
            "{} of {} events a rule selected ({pct:.1} %) were late for every rule that selected them and were dropped",
            self.late, self.events
        );
        if self.descending {
            s.push_str(
                "; the input runs newest first (its times go down, line after line): \
                 crisiswatch reads history oldest first, as it happened — sort the lines \
                 by time, ascending (and give the files oldest first)",
            );
            return s;
        }
        if self.far_behind > 0 && self.far_behind * 2 >= self.late {
            // Most are far in the past: wrong stamps, not disorder — sorting
            // would start the history at the oldest of them.
            s.push_str(&format!(
                "; {} events lie more than 30 days behind the event before them (the oldest \
                 at {}): their times are wrong, not merely out of order — seconds written as \
                 milliseconds, a wrong year or date format? — fix those stamps (sorting the \
                 lines would start the history at them)",
                self.far_behind,
                self.oldest_late.map_or_else(|| "?".to_string(), format_ts),
            ));
            return s;
        }
        if let Some(m) = self.culprit.filter(|m| m.late_after > 0) {
            let place = place(&m);
            let step = m.from_ms.map(|f| m.to_ms.saturating_sub(f));
            if self.horizon_ms > 0 && step.is_some_and(|d| d <= self.horizon_ms) {
                // The move was an ordinary step: the late events were behind
                // the clock before it already. The input is out of time order.
                s.push_str(&format!(
                    "; {} of them came after {place} moved the clock to {}, an ordinary step \
                     (not a jump): the input is out of time order — inputs are read in the \
                     order given, so give the files oldest first (or sort the lines by time)",
                    m.late_after,
                    format_ts(m.to_ms),
                ));
                return s;
            }
            let ahead = match m.from_ms {
                Some(f) => format!(
                    "{} ahead of the events before it",
                    // Whole minutes: the warning is for people.
                    crate::config::Dur::from_ms(
                        (m.to_ms.saturating_sub(f).max(0) / 60_000 * 60_000) as u64
                    )
                ),
                None => "as the first event".to_string(),
            };
            s.push_str(&format!(
                "; {} of them came after {place} moved the clock to {} ({ahead}): \
                 check that event's time (a bad timestamp makes everything after it late)",
                m.late_after,
                format_ts(m.to_ms),
            ));
        }
        s
    }
}

mod stamp_runs;

#[cfg(test)]
mod tests;
