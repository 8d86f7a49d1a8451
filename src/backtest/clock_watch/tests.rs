//! Tests of the clock watch: which move a late event is charged to, and
//! what the warning says.

use super::*;

fn watch() -> ClockWatch {
    ClockWatch {
        horizon_ms: 1000,
        ..ClockWatch::default()
    }
}

/// Late as the engine judges it: older than the clock less the horizon,
/// not at it (the warning counted an event the engine applied).
#[test]
fn an_event_exactly_at_the_horizon_is_not_counted_late() {
    let mut w = watch();
    w.observe(10_000, 1, None);
    w.observe(9_000, 2, None);
    assert_eq!(w.late, 0);
    w.observe(8_999, 3, None);
    assert_eq!(w.late, 1);
}

#[test]
fn a_history_newest_first_is_called_out_of_order_not_a_bad_first_stamp() {
    let mut w = watch();
    for i in (0..200).rev() {
        w.observe(1_700_000_000_000 + i * 100, 200 - i as u64, None);
    }
    let s = w.late_share().expect("a warning");
    assert!(s.descending);
    let text = s.describe(None);
    assert!(text.contains("newest first"), "{text}");
    assert!(!text.contains("bad timestamp"), "{text}");
    // Ascending with a few stragglers is not "newest first".
    let mut w = watch();
    for i in 0..200i64 {
        let ts = if i % 10 == 5 { i * 100 - 3000 } else { i * 100 };
        w.observe(1_700_000_000_000 + ts, i as u64 + 1, None);
    }
    assert!(!w.descending());
}

#[test]
fn a_history_in_seconds_is_recognised() {
    let mut w = watch();
    for i in 0..100 {
        w.observe(1_795_132_800 + i, i as u64 + 1, None);
    }
    assert_eq!(w.seconds_like(), Some(1_795_132_899));
    let mut w = watch();
    for i in 0..100 {
        w.observe(1_795_132_800_000 + i, i as u64 + 1, None);
    }
    assert_eq!(w.seconds_like(), None);
    assert_eq!(ClockWatch::default().seconds_like(), None);
}

#[test]
fn a_stamp_far_ahead_is_named_as_the_culprit() {
    let mut w = watch();
    for i in 0..50 {
        w.observe(i * 100, i as u64 + 1, None);
    }
    w.observe(99_999_999_999_999, 51, None);
    for i in 50..200 {
        w.observe(i * 100, i as u64 + 2, None);
    }
    let s = w.late_share().expect("a warning");
    assert_eq!((s.late, s.events), (150, 201));
    let m = s.culprit.unwrap();
    assert_eq!(
        (m.line, m.to_ms, m.from_ms),
        (51, 99_999_999_999_999, Some(4900))
    );
    assert_eq!(m.late_after, 150);
    let text = s.describe(None);
    assert!(text.contains("line 51 moved the clock to 5138-"), "{text}");
}

/// A burst of stamps far ahead, each a step after the one before: the
/// late events after it are the first one's (it jumped the clock), not
/// the last one's (an ordinary step).
#[test]
fn the_late_events_after_a_burst_ahead_are_charged_to_its_first_line() {
    let mut w = watch();
    for i in 0..50 {
        w.observe(i * 100, i as u64 + 1, None);
    }
    for k in 0..5 {
        w.observe(1_000_000 + k * 10, 51 + k as u64, None);
    }
    for i in 50..200 {
        w.observe(i * 100, i as u64 + 6, None);
    }
    let s = w.late_share().expect("a warning");
    let m = s.culprit.unwrap();
    assert_eq!((m.line, m.to_ms, m.from_ms), (51, 1_000_000, Some(4900)));
    assert_eq!(m.late_after, 150);
    let text = s.describe(None);
    assert!(text.contains("line 51 moved the clock"), "{text}");
    assert!(text.contains("check that event's time"), "{text}");
    assert!(!text.contains("ordinary step"), "{text}");
    // The same through `saw` and `counted_at` (backtest's way).
    let mut v = watch();
    for i in 0..50 {
        v.saw(i * 100, i as u64 + 1, None);
        v.counted_at(i * 100, false);
    }
    for k in 0..5 {
        v.saw(1_000_000 + k * 10, 51 + k as u64, None);
        v.counted_at(1_000_000 + k * 10, false);
    }
    for i in 50..200 {
        v.saw(i * 100, i as u64 + 6, None);
        v.counted_at(i * 100, true);
    }
    assert_eq!(v.late_share().and_then(|s| s.culprit), Some(m));
}

/// After a real gap, a file given again (out of order): its events were
/// late before the gap too — not the gap's doing.
#[test]
fn events_behind_the_clock_before_a_gap_are_not_charged_to_the_gap() {
    let mut w = watch();
    for i in 0..500 {
        w.observe(100_000 + i * 100, i as u64 + 1, None);
    }
    for i in 0..500 {
        w.observe(10_000_000 + i * 100, 501 + i as u64, None);
    }
    // The first file again.
    for i in 0..500 {
        w.observe(100_000 + i * 100, 1001 + i as u64, None);
    }
    let s = w.late_share().expect("a warning");
    assert_eq!(s.late, 500);
    let m = s.culprit.unwrap();
    // (The last 11 were within the horizon of the clock before the gap:
    // those the gap made late.)
    assert_eq!((m.line, m.late_after), (1000, 489));
    assert!(s.describe(None).contains("out of time order"));
    // Behind the clock before the gap by less than the horizon: the gap
    // made them late.
    let mut w = watch();
    for i in 0..500 {
        w.observe(100_000 + i * 100, i as u64 + 1, None);
    }
    w.observe(10_000_000, 501, None);
    for i in 0..100 {
        w.observe(10_000_000 + i, 502 + i as u64, None);
    }
    for i in 0..100 {
        w.observe(149_900 - 900 + i, 602 + i as u64, None);
    }
    let m = w.late_share().unwrap().culprit.unwrap();
    assert_eq!((m.line, m.late_after), (501, 100));
}

/// A replay's warning gives its summary's count, fewer or more.
#[test]
fn adopted_counts_are_the_warnings() {
    let mut w = watch();
    w.observe(0, 1, None);
    w.observe(1_000_000, 2, None);
    for i in 0..10 {
        w.observe(i, 3 + i as u64, None);
    }
    w.adopt_counts(12, 7);
    let s = w.late_share().unwrap();
    assert_eq!((s.late, s.events), (7, 12));
    assert_eq!(s.culprit.map(|m| m.late_after), Some(7));
    w.adopt_counts(12, 11);
    assert_eq!(w.late_share().unwrap().late, 11);
    w.adopt_counts(12, 0);
    assert_eq!(w.late_share(), None);
}

#[test]
fn files_out_of_order_are_named_as_such_not_as_a_bad_stamp() {
    let mut w = watch();
    // The later half of a history first, then the earlier half.
    for i in 500..1000 {
        w.observe(i * 100, i as u64 - 499, None);
    }
    for i in 0..500 {
        w.observe(i * 100, i as u64 + 501, None);
    }
    let s = w.late_share().expect("a warning");
    assert_eq!(s.late, 500);
    let text = s.describe(None);
    assert!(text.contains("line 500 moved the clock"), "{text}");
    assert!(text.contains("out of time order"), "{text}");
    assert!(!text.contains("check that event's time"), "{text}");
    // Without a horizon (run's watch) it stays the jump message.
    let s = LateShare { horizon_ms: 0, ..s };
    assert!(s.describe(None).contains("check that event's time"));
}

#[test]
fn saw_moves_the_clock_and_counts_nothing() {
    let mut w = watch();
    w.saw(5_000, 1, None);
    w.saw(4_000, 2, None);
    assert_eq!(w.clock(), Some(5_000));
    w.counted(true);
    w.counted(false);
    let s = w.late_share().expect("a warning");
    assert_eq!((s.late, s.events), (1, 2));
    assert_eq!(s.culprit.map(|m| m.line), Some(1));
}

#[test]
fn ordinary_reordering_and_a_confirmed_gap_do_not_warn() {
    let mut w = watch();
    for i in 0..1000 {
        // Within the horizon: reordered by up to 900 ms.
        w.observe(i * 100 - (i % 10) * 90, i as u64 + 1, None);
    }
    // A real gap in the history: everything after it follows it.
    for i in 0..1000 {
        w.observe(10_000_000 + i * 100, 1001 + i as u64, None);
    }
    assert_eq!(w.late_share(), None);
}

/// Stamps far in the past (every 20th written in seconds, read as
/// milliseconds: January 1970) are wrong stamps, not disorder: the warning
/// says so, and does not advise sorting (which would start the history in
/// 1970).
#[test]
fn stamps_far_in_the_past_are_called_wrong_not_out_of_order() {
    let mut w = watch();
    let t0 = 1_795_132_800_000;
    for i in 0..400i64 {
        let ts = if i % 20 == 7 {
            (t0 + i * 1000) / 1000
        } else {
            t0 + i * 1000
        };
        w.observe(ts, i as u64 + 1, None);
    }
    let s = w.late_share().expect("a warning");
    assert_eq!(s.far_behind, 20);
    let text = s.describe(None);
    assert!(
        text.contains("20 events lie more than 30 days behind")
            && text.contains("the oldest at 1970-01-21"),
        "{text}"
    );
    assert!(!text.contains("sort the lines by time"), "{text}");
    // A few minutes out of order is still disorder.
    let mut w = watch();
    for i in 0..400i64 {
        let ts = if i % 20 == 7 {
            t0 + i * 1000 - 5 * 60_000
        } else {
            t0 + i * 1000
        };
        w.observe(ts, i as u64 + 1, None);
    }
    let text = w.late_share().expect("a warning").describe(None);
    assert!(!text.contains("30 days"), "{text}");
}

/// One line far ahead (a jump), then the history goes on behind it: the
/// events the engine judged late for a rule with a short window, though
/// within the longest one of the jump's end, are the jump's too — not the
/// ordinary line before it (a field trial: `backtest` named that line and
/// called the input out of order). A move larger than the shortest window
/// but not the longest one is named as a bad time, not an ordinary step.
#[test]
fn late_events_near_a_jumps_end_are_the_jumps() {
    let mut v = ClockWatch {
        horizon_ms: 10_000,
        short_ms: 2_000,
        ..ClockWatch::default()
    };
    for i in 0..50 {
        v.saw(i * 100, i as u64 + 1, None);
        v.counted_at(i * 100, false);
    }
    // 50 s ahead: a jump (more than the 10 s horizon).
    v.saw(54_900, 51, None);
    v.counted_at(54_900, false);
    // The history goes on behind it; from 52.9 s on the events are within
    // 2 s of its end (in time for every rule); before, late.
    for i in 50..550 {
        let ts = i * 100;
        v.saw(ts, i as u64 + 2, None);
        v.counted_at(ts, ts < 52_900);
    }
    let s = v.late_share().expect("a warning");
    let m = s.culprit.expect("a culprit");
    assert_eq!((m.line, m.late_after), (51, 479), "{m:?}");
    let text = s.describe(None);
    assert!(text.contains("line 51 moved the clock"), "{text}");
    assert!(text.contains("check that event's time"), "{text}");
    // A 5 s step: larger than the shortest horizon, within the longest.
    let mut w = ClockWatch {
        horizon_ms: 10_000,
        short_ms: 2_000,
        ..ClockWatch::default()
    };
    for i in 0..50 {
        w.saw(i * 100, i as u64 + 1, None);
        w.counted_at(i * 100, false);
    }
    w.saw(9_900, 51, None);
    w.counted_at(9_900, false);
    for i in 50..90 {
        w.saw(i * 100, i as u64 + 2, None);
        w.counted_at(i * 100, i * 100 < 7_900);
    }
    let text = w.late_share().expect("a warning").describe(None);
    assert!(text.contains("line 51 moved the clock"), "{text}");
    assert!(text.contains("check that event's time"), "{text}");
    assert!(!text.contains("ordinary step"), "{text}");
}
