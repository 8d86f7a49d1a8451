//! Batch-stamped history: many events with one timestamp.
//!
//! A producer that stamps a batch of events with one time (its export's or
//! its flush's) instead of each event's own puts hours of traffic at one
//! instant. Every window then counts them together: a burst no rule can tell
//! from a crisis, and nothing is late, so no other warning names it (a field
//! trial's four hours stamped with one millisecond gave 18 false incidents).
//! [`StampRuns`] measures the runs of consecutive events sharing a time and
//! names a run far longer than the history's usual one, or a history whose
//! every time carries a crowd minutes apart from the next.

use super::super::input::LineRef;
use crate::event::format_ts;

/// A run this long is never named: at high volume (times written to the
/// second, thousands of events per second) runs of hundreds are ordinary.
const MIN_BATCH: u64 = 1_000;

/// A run is a batch when it is this many times the history's mean run.
const BATCH_FACTOR: u64 = 50;

/// A history whose times are nearly all this far apart (and carry
/// [`MIN_BATCH`] events each on average) is stamped in batches throughout.
const COARSE_STEP_MS: i64 = 60_000;

/// One run of events sharing a time: its length, the position among all
/// lines fed of its first event, where that came from, and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) len: u64,
    pub(crate) line: u64,
    pub(crate) at: Option<LineRef>,
    pub(crate) ts: i64,
}

/// What the watch found: the longest run, and how many runs of at least
/// [`MIN_BATCH`] events the history had beside it and the events in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batches {
    /// One run far longer than the rest (and `others` more of
    /// [`MIN_BATCH`] events or more, holding `in_others`).
    Burst {
        longest: Run,
        events: u64,
        others: u64,
        in_others: u64,
    },
    /// Every time carries a crowd, minutes apart: `runs` times for `events`
    /// events, `step_ms` apart on average.
    Coarse {
        events: u64,
        runs: u64,
        step_ms: i64,
    },
}

/// Runs of consecutive events with one time ([`Batches`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StampRuns {
    events: u64,
    runs: u64,
    /// The run going on.
    current: Option<Run>,
    longest: Option<Run>,
    /// Runs of at least [`MIN_BATCH`] events, and the events in them.
    big: u64,
    in_big: u64,
    /// Steps between one run's time and the next one's: at least
    /// [`COARSE_STEP_MS`] apart either way (with their sum), or closer.
    wide: u64,
    wide_ms: i64,
    narrow: u64,
}

impl StampRuns {
    /// The `line`-th event fed, from `at`, has time `ts`.
    pub(crate) fn note(&mut self, ts: i64, line: u64, at: Option<LineRef>) {
        self.events += 1;
        match self.current.as_mut() {
            Some(r) if r.ts == ts => r.len += 1,
            prev => {
                if let Some(p) = prev {
                    let step = ts.saturating_sub(p.ts).saturating_abs();
                    if step >= COARSE_STEP_MS {
                        self.wide += 1;
                        self.wide_ms = self.wide_ms.saturating_add(step);
                    } else {
                        self.narrow += 1;
                    }
                }
                self.close();
                self.runs += 1;
                self.current = Some(Run {
                    len: 1,
                    line,
                    at,
                    ts,
                });
            }
        }
    }

    /// Ends the run going on.
    fn close(&mut self) {
        let Some(r) = self.current.take() else {
            return;
        };
        if r.len >= MIN_BATCH {
            self.big += 1;
            self.in_big += r.len;
        }
        if self.longest.is_none_or(|l| r.len > l.len) {
            self.longest = Some(r);
        }
    }

    /// The batches of the events noted so far, if any.
    pub(crate) fn batches(&self) -> Option<Batches> {
        let mut all = self.clone();
        all.close();
        let longest = all.longest?;
        if longest.len < MIN_BATCH {
            return None;
        }
        // The mean run of the others: a history of one run has none.
        let others = all.runs - 1;
        let mean_others = (all.events - longest.len) / others.max(1);
        if others == 0 || longest.len >= BATCH_FACTOR * mean_others.max(1) {
            return Some(Batches::Burst {
                longest,
                events: all.events,
                others: all.big - 1,
                in_others: all.in_big - longest.len,
            });
        }
        // Nearly every step wide (a gap of days between samples of busy
        // traffic stamped to the second is one wide step among thousands).
        let coarse =
            all.events / all.runs >= MIN_BATCH && all.wide > 0 && all.wide >= 9 * all.narrow;
        coarse.then(|| Batches::Coarse {
            events: all.events,
            runs: all.runs,
            step_ms: all.wide_ms / all.wide as i64,
        })
    }
}

/// The warning for people; `place` names the `line`-th input fed, from `at`.
pub(crate) fn describe(b: &Batches, place: impl Fn(Option<LineRef>, u64) -> String) -> String {
    const REMEDY: &str = "crisiswatch windows by event time, so events stamped alike count as \
        one instant: a burst no rule can tell from a crisis (and a quiet stretch before it) — \
        write each event's own time in `ts`, not a batch's or an export's";
    match *b {
        Batches::Burst {
            longest,
            events,
            others,
            in_others,
        } => {
            let pct = 100.0 * longest.len as f64 / events.max(1) as f64;
            let more = match others {
                0 => String::new(),
                n => format!(" ({n} more time(s) carry {in_others} events, 1,000 or more each)"),
            };
            format!(
                "{} of {events} events ({pct:.1} %) share one time, {}, from {} on{more}: \
                 the history looks stamped in batches — {REMEDY}",
                longest.len,
                format_ts(longest.ts),
                place(longest.at, longest.line),
            )
        }
        Batches::Coarse {
            events,
            runs,
            step_ms,
        } => format!(
            "{events} events carry only {runs} distinct times, {} apart on average: the history \
             looks stamped in batches — {REMEDY}",
            crate::config::Dur::from_ms((step_ms.max(0) / 1000 * 1000) as u64),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(times: impl IntoIterator<Item = i64>) -> StampRuns {
        let mut s = StampRuns::default();
        for (i, ts) in times.into_iter().enumerate() {
            s.note(ts, i as u64 + 1, None);
        }
        s
    }

    /// Ordinary traffic: a few events per millisecond at most.
    fn ordinary(from: i64, n: i64) -> impl Iterator<Item = i64> {
        (0..n).map(move |i| from + i * 37 / 10)
    }

    #[test]
    fn ordinary_traffic_has_no_batch() {
        assert_eq!(fed(ordinary(0, 200_000)).batches(), None);
        // Times to the second at thousands of events per second: long runs,
        // all alike.
        let seconds =
            (0..40_i64).flat_map(|s| std::iter::repeat_n(s * 1000, 3000 + (s as usize % 7) * 300));
        assert_eq!(fed(seconds).batches(), None);
        assert_eq!(fed(std::iter::repeat_n(5, 999)).batches(), None);
    }

    #[test]
    fn a_batch_among_ordinary_traffic_is_named() {
        let times = ordinary(0, 50_000)
            .chain(std::iter::repeat_n(200_000, 20_000))
            .chain(ordinary(200_001, 50_000));
        let Some(Batches::Burst {
            longest,
            events,
            others,
            in_others,
        }) = fed(times).batches()
        else {
            panic!("no burst")
        };
        assert_eq!(
            (longest.len, longest.line, longest.ts),
            (20_000, 50_001, 200_000)
        );
        assert_eq!((events, others, in_others), (120_000, 0, 0));
        // A second, shorter batch is counted beside it.
        let times = ordinary(0, 50_000)
            .chain(std::iter::repeat_n(200_000, 20_000))
            .chain(std::iter::repeat_n(300_000, 4_000))
            .chain(ordinary(300_001, 50_000));
        let Some(Batches::Burst {
            others, in_others, ..
        }) = fed(times).batches()
        else {
            panic!("no burst")
        };
        assert_eq!((others, in_others), (1, 4_000));
    }

    #[test]
    fn a_history_at_one_instant_or_in_hourly_batches_is_named() {
        assert!(matches!(
            fed(std::iter::repeat_n(7, 5_000)).batches(),
            Some(Batches::Burst {
                longest: Run { len: 5_000, .. },
                ..
            })
        ));
        let hourly =
            (0..24_i64).flat_map(|h| std::iter::repeat_n(h * 3_600_000, 2_000 + h as usize));
        assert_eq!(
            fed(hourly.clone()).batches(),
            Some(Batches::Coarse {
                events: 48_276,
                runs: 24,
                step_ms: 3_600_000
            })
        );
        // Newest first, the same.
        let mut newest_first: Vec<i64> = hourly.collect();
        newest_first.reverse();
        assert!(matches!(
            fed(newest_first).batches(),
            Some(Batches::Coarse { runs: 24, .. })
        ));
    }

    /// Busy traffic stamped to the second with a gap of days, or a stray
    /// line far ahead: a few wide steps among many narrow ones (a review
    /// found them called coarse by the mean step).
    #[test]
    fn gaps_between_busy_seconds_are_not_batches() {
        let second = |from: i64| {
            (0..3_600_i64).flat_map(move |s| std::iter::repeat_n(from + s * 1000, 1_500))
        };
        let week = 7 * 86_400_000;
        assert_eq!(fed(second(0).chain(second(week))).batches(), None);
        let stray = (0..60_i64)
            .flat_map(|s| std::iter::repeat_n(s * 1000, 3_000))
            .chain([5 * 86_400_000]);
        assert_eq!(fed(stray).batches(), None);
    }
}
