//! Tests of the clock-jump guard.

use super::*;

const DAY: i64 = 86_400_000;

#[test]
fn a_lone_stamp_far_ahead_is_refuted_and_the_clock_stays() {
    let mut g = JumpGuard::new(DAY, 3);
    assert_eq!(g.offer(1_000, "a").pass, ["a"]);
    let v = g.offer(99_999_999_999_999, "bad");
    assert!(v.pass.is_empty() && v.rejected.is_empty());
    assert_eq!(g.offer(2_000, "b").pass, ["b"]);
    assert_eq!(g.offer(3_000, "c").pass, ["c"]);
    let v = g.offer(4_000, "d");
    assert_eq!((v.pass, v.rejected), (vec!["d"], vec!["bad"]));
    assert_eq!(g.clock(), Some(4_000));
}

#[test]
fn a_real_gap_is_confirmed_by_the_events_after_it() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(1_000, 1);
    assert!(g.offer(3 * DAY, 2).pass.is_empty());
    assert!(g.offer(3 * DAY + 10, 3).pass.is_empty());
    assert!(g.offer(3 * DAY + 20, 4).pass.is_empty());
    // The suspect and three further events beyond the old clock.
    let v = g.offer(3 * DAY + 30, 5);
    assert_eq!(v.pass, [2, 3, 4, 5]);
    assert!(v.rejected.is_empty());
    assert_eq!(g.clock(), Some(3 * DAY + 30));
    assert_eq!(g.offer(3 * DAY + 40, 6).pass, [6]);
}

/// Four stray stamps in a row, in different years: they do not agree
/// with one another, so they confirm nothing and the events after them
/// refute them.
#[test]
fn a_burst_of_stamps_that_do_not_agree_confirms_nothing() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(1_000, "a");
    for (i, bad) in ["y2999", "y5138", "y3100", "y4000"].into_iter().enumerate() {
        let ts = 30_000_000_000_000 + i as i64 * 40_000_000_000_000;
        let v = g.offer(ts, bad);
        assert!(v.pass.is_empty() && v.rejected.is_empty(), "{bad}");
    }
    assert_eq!(g.offer(2_000, "b").pass, ["b"]);
    assert_eq!(g.offer(3_000, "c").pass, ["c"]);
    let v = g.offer(4_000, "d");
    assert_eq!(v.pass, ["d"]);
    assert_eq!(v.rejected, ["y2999", "y5138", "y3100", "y4000"]);
    assert_eq!(g.clock(), Some(4_000));
}

/// A stray stamp just before a real gap: the gap's events agree and
/// confirm it without it; it stays a suspect against the new clock (and
/// is refuted), while one that the new clock covers passes with them.
#[test]
fn a_real_gap_confirms_without_the_strays_before_it() {
    let mut g = JumpGuard::new(DAY, 3);
    // A dense stream's rhythm first (a second apart).
    for t in [-3_000, -2_000, -1_000, 0] {
        g.offer(t, 0);
    }
    g.offer(1_000, 1);
    assert!(g.offer(99_999_999_999_999, 99).pass.is_empty());
    assert!(g.offer(2 * DAY, 98).pass.is_empty());
    assert!(g.offer(3 * DAY, 2).pass.is_empty());
    assert!(g.offer(3 * DAY + 10, 3).pass.is_empty());
    assert!(g.offer(3 * DAY + 20, 4).pass.is_empty());
    let v = g.offer(3 * DAY + 30, 5);
    assert_eq!(v.pass, [98, 2, 3, 4, 5], "in arrival order");
    assert_eq!(g.clock(), Some(3 * DAY + 30));
    assert_eq!(g.held(), 1);
    g.offer(3 * DAY + 40, 6);
    g.offer(3 * DAY + 50, 7);
    let v = g.offer(3 * DAY + 60, 8);
    assert_eq!((v.pass, v.rejected), (vec![8], vec![99]));
}

/// Stamps that scatter far ahead and never agree (further apart than any
/// rhythm: `MAX_SPREAD` times `max_clock_jump`), with nothing within the
/// allowance between them, are refuted oldest first beyond MAX_SUSPECTS:
/// the guard's memory is bounded.
#[test]
fn suspects_held_are_bounded() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(0, 0);
    let mut rejected = Vec::new();
    for i in 1..=(MAX_SUSPECTS as i64 + 10) {
        let v = g.offer(i * (MAX_SPREAD + 1) * DAY, i);
        assert!(v.pass.is_empty());
        rejected.extend(v.rejected);
    }
    assert_eq!(g.held(), MAX_SUSPECTS);
    assert_eq!(rejected, (1..=10).collect::<Vec<i64>>());
}

#[test]
fn jumps_within_the_allowance_and_a_disabled_guard_pass() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(0, 1);
    assert_eq!(g.offer(DAY, 2).pass, [2]);
    let mut off = JumpGuard::new(0, 3);
    off.offer(0, 1);
    assert_eq!(off.offer(100 * DAY, 2).pass, [2]);
    // Undecided at the end: refuted.
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(0, 1);
    g.offer(10 * DAY, 2);
    assert_eq!(g.finish(), [2]);
}

#[test]
fn a_jump_refuted_by_the_end_of_input_says_so() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(0, 1);
    g.offer(10 * DAY, 2);
    let detail = g.jump_detail(10 * DAY).unwrap();
    assert!(detail.ends_with("the 3 events after it did not confirm the jump"));
    g.offer(10, 3);
    g.offer(11 * DAY, 4);
    assert_eq!(g.finish_counted(), [(2, 2), (4, 0)]);
    let last = g.ended_detail(&detail, 0);
    assert!(
        last.contains("it was the last event of the input"),
        "{last}"
    );
    assert!(!last.contains("events after it did not"), "{last}");
    let two = g.ended_detail(&detail, 2);
    assert!(two.contains("the input ended 2 events after it"), "{two}");
}

#[test]
fn one_confirming_event_confirms_and_one_refuting_event_refutes() {
    // `clock_jump_confirm = 1`: one further event decides, either way.
    let mut g = JumpGuard::new(DAY, 1);
    g.offer(0, 1);
    assert!(g.offer(3 * DAY, 2).pass.is_empty());
    let v = g.offer(10, 3);
    assert_eq!((v.pass, v.rejected), (vec![3], vec![2]));
    assert!(g.offer(5 * DAY, 4).pass.is_empty());
    assert_eq!(g.offer(5 * DAY + 1, 5).pass, [4, 5]);
}

/// A batch stamped with one wrong time (a default date), as long as
/// you like: one time confirms nothing, the events after it refute it.
#[test]
fn a_burst_at_one_wrong_time_confirms_nothing() {
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(1_000, 0);
    for i in 1..=500 {
        let v = g.offer(11 * DAY, i);
        assert!(v.pass.is_empty() && v.rejected.is_empty());
    }
    g.offer(2_000, 501);
    g.offer(3_000, 502);
    let v = g.offer(4_000, 503);
    assert_eq!(v.pass, [503]);
    assert_eq!(v.rejected, (1..=500).collect::<Vec<i32>>());
    assert_eq!(g.clock(), Some(4_000));
    // A real gap whose first events share a stamp (second resolution)
    // is confirmed once its times move on.
    let mut g = JumpGuard::new(DAY, 3);
    g.offer(1_000, 0);
    for i in 1..=50 {
        assert!(g.offer(5 * DAY + (i / 20) * 1000, i).pass.is_empty());
    }
    let v = g.offer(5 * DAY + 3000, 51);
    assert_eq!(v.pass, (1..=51).collect::<Vec<i64>>());
    assert_eq!(g.clock(), Some(5 * DAY + 3000));
}

/// A stray old line at the top of a history (ten days before the rest):
/// it would start every surge baseline's warm-up days early. The first
/// events agree on where the stream starts; the stray is refuted, with
/// a detail that says so.
#[test]
fn an_anchored_guard_refutes_a_first_event_far_behind() {
    let mut g = JumpGuard::new(DAY, 3).anchored();
    let mut passed = Vec::new();
    let mut rejected = Vec::new();
    for (t, x) in [
        (10 * DAY, "a"),
        (0, "old"),
        (10 * DAY + 10, "b"),
        (10 * DAY + 20, "c"),
        (10 * DAY + 30, "d"),
        (10 * DAY - 3_600_000, "an hour behind"),
    ] {
        let v = g.offer(t, x);
        passed.extend(v.pass);
        rejected.extend(v.rejected);
    }
    assert_eq!(passed, ["a", "b", "c", "d", "an hour behind"]);
    assert_eq!(rejected, ["old"]);
    let detail = g.refuted_detail(0);
    assert!(detail.contains("behind 1970-01-11"), "{detail}");
    assert!(detail.contains("stray line"), "{detail}");
    assert_eq!(g.refuted_detail(10 * DAY + 40), "");
}

#[test]
fn an_anchored_guard_refutes_a_first_event_far_ahead() {
    let mut g = JumpGuard::new(DAY, 3).anchored();
    let mut passed = Vec::new();
    let mut rejected = Vec::new();
    for (t, x) in [
        (3 * DAY, "ahead"),
        (0, "a"),
        (10, "b"),
        (20, "c"),
        (30, "d"),
    ] {
        let v = g.offer(t, x);
        passed.extend(v.pass);
        rejected.extend(v.rejected);
    }
    assert_eq!(passed, ["a", "b", "c", "d"]);
    assert_eq!(rejected, ["ahead"]);
    assert_eq!(g.clock(), Some(30));
    assert!(g.jump_detail(3 * DAY).is_some());
    // A normal start: the first events pass once agreed, in arrival order.
    let mut g = JumpGuard::new(DAY, 3).anchored();
    assert!(g.offer(5, 1).pass.is_empty());
    assert!(g.offer(0, 2).pass.is_empty());
    assert!(g.offer(7, 3).pass.is_empty());
    assert_eq!(g.held(), 3);
    assert_eq!(g.offer(9, 4).pass, [1, 2, 3, 4]);
    assert_eq!(g.offer(11, 5).pass, [5]);
    // A short input: settled at the end at the best-agreed event.
    let mut g = JumpGuard::new(DAY, 3).anchored();
    g.offer(3 * DAY, "ahead");
    g.offer(0, "a");
    g.offer(10, "b");
    let v = g.settle_start();
    assert_eq!(v.pass, ["a", "b"]);
    assert_eq!(g.finish(), ["ahead"]);
    // Off, or restored: no waiting.
    let mut off = JumpGuard::new(0, 3).anchored();
    assert_eq!(off.offer(1, 1).pass, [1]);
}

/// A stream of one event a day (at scattered hours: steps of up to two
/// days) is its own rhythm: every event passes, anchored or not; a stamp
/// weeks ahead of it is still held, and refuted by the days after it.
#[test]
fn a_sparse_stream_passes_and_a_stamp_far_ahead_of_it_is_still_refuted() {
    const HOUR: i64 = 3_600_000;
    let days: Vec<i64> = (0..30)
        .map(|d: i64| d * DAY + ((d * 7919) % 21) * HOUR)
        .collect();
    for anchored in [false, true] {
        let mut g = JumpGuard::new(DAY, 3);
        if anchored {
            g = g.anchored();
        }
        let mut passed = Vec::new();
        let mut rejected = Vec::new();
        for (i, &t) in days.iter().enumerate() {
            let v = g.offer(t, i);
            passed.extend(v.pass);
            rejected.extend(v.rejected);
            if i == 20 {
                // Six weeks ahead of a daily stream.
                let v = g.offer(t + 42 * DAY, 999);
                passed.extend(v.pass);
                rejected.extend(v.rejected);
            }
        }
        let v = g.settle_start();
        passed.extend(v.pass);
        rejected.extend(v.rejected);
        rejected.extend(g.finish());
        assert_eq!(
            passed,
            (0..30).collect::<Vec<usize>>(),
            "anchored {anchored}"
        );
        assert_eq!(rejected, [999], "anchored {anchored}");
    }
    // The reach named in a refusal says what set it.
    let mut g = JumpGuard::new(DAY, 3);
    for (i, &t) in days.iter().take(10).enumerate() {
        g.offer(t, i);
    }
    let detail = g.jump_detail(days[9] + 42 * DAY).expect("held");
    assert!(
        detail
            .contains("times the stream's usual step between events, above engine.max_clock_jump"),
        "{detail}"
    );
    assert!(g.reach() > DAY && g.reach() <= 8 * DAY, "{}", g.reach());
}

/// A dense stream keeps `max_clock_jump` as its reach: a stray stamp two
/// days ahead is held, and a burst of strays in increasing years does not
/// set the usual step (suspects note their steps only when they pass).
#[test]
fn a_dense_stream_keeps_max_clock_jump_whatever_its_strays() {
    let mut g = JumpGuard::new(DAY, 3);
    for i in 0..100 {
        g.offer(i * 1_000, "ok");
    }
    assert_eq!(g.reach(), DAY);
    for (i, bad) in ["y2999", "y3100", "y4000", "y5138"].into_iter().enumerate() {
        let ts = 30_000_000_000_000 + i as i64 * 40_000_000_000_000;
        assert!(g.offer(ts, bad).pass.is_empty(), "{bad}");
    }
    assert_eq!(g.reach(), DAY);
    assert!(g.offer(100_000 + 2 * DAY, "two days").pass.is_empty());
    assert_eq!(g.offer(101_000, "a").pass, ["a"]);
    assert_eq!(g.offer(102_000, "b").pass, ["b"]);
    let v = g.offer(103_000, "c");
    assert_eq!(v.rejected, ["y2999", "y3100", "y4000", "y5138", "two days"]);
}
