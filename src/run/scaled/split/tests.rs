//! The split stage's idle and quiet decisions (`Activity`).
use super::*;

const IDLE: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_secs(2);

fn src(partition: i32) -> Source {
    Source {
        topic: 0,
        partition,
    }
}

#[test]
fn a_source_is_idle_only_after_its_timeout_from_its_last_message() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut a = Activity::new(t0);
    a.assign(src(0), t0);
    a.assign(src(1), t0);
    a.any_message(at(5));
    a.message(src(1), at(5));
    assert!(a.idle_due(at(9), IDLE).is_empty());
    assert_eq!(a.idle_due(at(10), IDLE), vec![src(0)]);
    assert!(a.idle_due(at(14), IDLE).is_empty());
    assert_eq!(a.idle_due(at(15), IDLE), vec![src(1)]);
    // Repeated every IDLE while the source stays idle.
    assert!(a.idle_due(at(19), IDLE).is_empty());
    assert_eq!(a.idle_due(at(20), IDLE), vec![src(0)]);
    a.message(src(0), at(20));
    assert_eq!(a.idle_due(at(25), IDLE), vec![src(1)]);
    assert!(a.idle_due(at(29), IDLE).is_empty());
    assert_eq!(a.idle_due(at(30), IDLE), vec![src(0)]);
    assert_eq!(a.idle_due(at(35), IDLE), vec![src(1)]);
    a.revoke(src(0));
    a.message(src(0), at(31));
    assert_eq!(a.idle_due(at(60), IDLE), vec![src(1)]);
}

/// A source the consumer thread handed a message of over is not
/// reported idle again until the timeout passes from the hand-over.
#[test]
fn a_hand_over_stops_the_idle_repeats() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut a = Activity::new(t0);
    a.assign(src(0), t0);
    assert_eq!(a.idle_due(at(10), IDLE), vec![src(0)]);
    a.handed_over(src(0), at(15));
    assert!(a.idle_due(at(20), IDLE).is_empty());
    assert!(a.idle_due(at(24), IDLE).is_empty());
    assert_eq!(a.idle_due(at(25), IDLE), vec![src(0)]);
}

/// The stage stalled (a slow shard-topic write) while the consumer thread
/// handed over messages of a source: the source is not idle, and the
/// stream not quiet, from the stage's point of view either.
#[test]
fn a_source_with_messages_handed_over_is_not_idle_while_the_stage_stalls() {
    let t0 = Instant::now();
    let mut a = Activity::new(t0);
    a.assign(src(0), t0);
    a.any_message(t0);
    a.message(src(0), t0);
    // Handed over at 8 s; the stage reaches its tick only at 9 s, then
    // stalls until 12 s.
    a.handed_over(src(0), t0 + Duration::from_secs(8));
    let at = t0 + Duration::from_secs(9);
    assert_eq!(
        a.quiet_due(at, QUIET),
        None,
        "not quiet 1 s after a hand-over"
    );
    let at = t0 + Duration::from_secs(12);
    assert!(
        a.idle_due(at, IDLE).is_empty(),
        "idle counts from the hand-over"
    );
    assert_eq!(a.idle_due(t0 + Duration::from_secs(18), IDLE), vec![src(0)]);
    // An older hand-over moves nothing back.
    let mut b = Activity::new(t0);
    b.assign(src(0), t0 + Duration::from_secs(5));
    b.handed_over(src(0), t0 + Duration::from_secs(1));
    assert!(b.idle_due(t0 + Duration::from_secs(14), IDLE).is_empty());
    assert_eq!(b.idle_due(t0 + Duration::from_secs(15), IDLE), vec![src(0)]);
    // A hand-over of a source no longer assigned adds no source.
    b.handed_over(src(7), t0 + Duration::from_secs(16));
    assert_eq!(b.sources(), vec![src(0)]);
}

#[test]
fn a_quiet_stream_is_reported_every_second_until_a_message() {
    let t0 = Instant::now();
    let mut a = Activity::new(t0);
    assert_eq!(a.quiet_due(t0 + QUIET, QUIET), None, "nothing assigned");
    a.assign(src(0), t0);
    assert_eq!(a.quiet_due(t0 + Duration::from_millis(1_999), QUIET), None);
    assert_eq!(a.quiet_due(t0 + QUIET, QUIET), Some(QUIET));
    assert_eq!(a.quiet_due(t0 + Duration::from_millis(2_500), QUIET), None);
    assert_eq!(
        a.quiet_due(t0 + Duration::from_secs(3), QUIET),
        Some(Duration::from_secs(3))
    );
    a.handed_over(src(0), t0 + Duration::from_secs(4));
    assert_eq!(a.quiet_due(t0 + Duration::from_secs(5), QUIET), None);
    assert_eq!(
        a.quiet_due(t0 + Duration::from_secs(6), QUIET),
        Some(QUIET),
        "quiet again counts from the hand-over"
    );
}

/// A stretch the consumer did not confirm quiet (its broker silent) is not
/// quiet time: the owners' clocks do not move over it.
#[test]
fn a_stretch_cut_off_from_the_broker_is_not_quiet() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut a = Activity::new(t0);
    a.assign(src(0), t0);
    a.look(at(1), true);
    // Cut off from 1 s to 11 s.
    a.look(at(11), false);
    assert_eq!(a.quiet_due(at(11), QUIET), None, "1 s of confirmed quiet");
    a.look(at(12), true);
    assert_eq!(a.quiet_due(at(12), QUIET), Some(QUIET));
    // A message starts a new stretch: nothing unconfirmed in it.
    a.handed_over(src(0), at(20));
    a.look(at(22), true);
    assert_eq!(a.quiet_due(at(22), QUIET), Some(QUIET));
}

/// A stretch the stage could not watch — blocked for 20 s while its broker
/// was paused — is not idle time, even when the consumer confirms progress
/// at the first look after it: the sources go idle only after
/// `idle_partition_timeout` of watched silence. Before, both were reported
/// idle at the first tick after the pause, before their messages could be
/// fetched, and the owners' clocks moved on without them.
#[test]
fn a_stretch_the_stage_could_not_watch_is_not_idle_time() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut a = Activity::new(t0);
    a.assign(src(0), t0);
    a.assign(src(1), t0);
    a.look(at(500), true);
    // Blocked from 0.5 s to 20.5 s; confirmed again at the first look.
    a.look(at(20_500), true);
    assert!(a.idle_due(at(20_500), IDLE).is_empty(), "20 s unwatched");
    let mut t = 20_500;
    while t < 29_500 {
        t += 500;
        a.look(at(t), true);
        assert!(a.idle_due(at(t), IDLE).is_empty(), "{t} ms");
    }
    // 10 s of watched silence after the pause: idle, both.
    t += 500;
    a.look(at(t), true);
    assert_eq!(a.idle_due(at(t), IDLE), vec![src(0), src(1)]);
    // A message resets its source's unwatched time with its silence.
    a.handed_over(src(0), at(t));
    a.look(at(t + 2_000), false);
    a.look(at(t + 2_500), true);
    let mut u = t + 2_500;
    while u < t + 11_500 {
        u += 500;
        a.look(at(u), true);
        assert!(!a.idle_due(at(u), IDLE).contains(&src(0)), "{u} ms");
    }
    u += 500;
    a.look(at(u), true);
    assert!(a.idle_due(at(u), IDLE).contains(&src(0)));
}
