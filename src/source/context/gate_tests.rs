//! Repeated-warning gate and the lag rules of [`Shared::backlogged`].

use super::*;

/// The consumer's shared state for one topic, its lag hold 60 s.
fn shared() -> Shared {
    let registry = prometheus::Registry::new();
    let topics = vec!["t".to_string()];
    Shared {
        metrics: SourceMetrics::register(&registry, &topics).expect("metrics"),
        topics,
        tracker: Mutex::new(OffsetTracker::new()),
        health: Health::new(Instant::now()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        arrival: ArrivalDecode::new(DecodeLimits::default(), vec![None], &[]),
        delivered: Mutex::new(BTreeMap::new()),
        backlog: Mutex::new(BTreeMap::new()),
        backlog_hold: Duration::from_secs(60),
    }
}

#[test]
fn a_repeated_warning_is_held_back_within_the_window() {
    let key = "test/a_repeated_warning_is_held_back";
    assert_eq!(repeat_gate(key), Some(0));
    assert_eq!(repeat_gate(key), None);
    assert_eq!(repeat_gate(key), None);
    // Another kind is reported at once.
    assert_eq!(repeat_gate("test/another kind"), Some(0));
}

/// A partition with messages left to read counts as delivering while
/// its last hand-over is recent (the consumer starves it); without a
/// recent hand-over, or once its lag is 0, it does not.
#[test]
fn a_lagging_partition_counts_as_delivering_for_a_while() {
    let shared = shared();
    let at = |partition| Partition {
        topic: 0,
        partition,
    };
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    // Never handed over anything: a lag alone does not count.
    shared.lag_seen(at(0), 500, s(1));
    assert!(shared.backlogged().is_empty());
    shared.delivered.lock().expect("lock").insert(at(0), s(2));
    shared.lag_seen(at(0), 500, s(20));
    assert_eq!(shared.backlogged(), vec![(at(0), s(20))]);
    // Caught up: no backlog.
    shared.lag_seen(at(0), 0, s(21));
    assert!(shared.backlogged().is_empty());
    // A lag that never drops counts only up to the hold.
    shared.lag_seen(at(0), 1, s(61));
    assert_eq!(shared.backlogged(), vec![(at(0), s(61))]);
    shared.lag_seen(at(0), 1, s(62));
    assert!(shared.backlogged().is_empty());
}

/// A partition assigned to this process counts as starved — handed over
/// at each look — from its assignment until it hands something over,
/// the statistics show it caught up, or the hold runs out; its lag
/// unknown (not fetched yet) or above 0 does not end that (the scaled
/// soak's seed 502: a restarted instance's partition 0, behind the other
/// partitions' prefetched messages, handed nothing over for more than
/// the idle timeout after the assignment).
#[test]
fn an_assigned_partition_is_starved_until_it_delivers_or_is_caught_up() {
    let shared = shared();
    let at = |partition| Partition {
        topic: 0,
        partition,
    };
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    shared.assigned(&[at(0), at(1), at(2)], s(0));
    // No statistics yet: each counts as handed over now.
    assert_eq!(
        shared.backlogged_at(s(5)),
        vec![(at(0), s(5)), (at(1), s(5)), (at(2), s(5))]
    );
    // Partition 0 not fetched yet (lag unknown), 1 with a known lag, 2
    // with nothing to read: 2 is no longer starved.
    shared.lag_seen(at(0), -1, s(6));
    shared.lag_seen(at(1), 80_000, s(6));
    shared.lag_seen(at(2), 0, s(6));
    assert_eq!(
        shared.backlogged_at(s(25)),
        vec![(at(0), s(25)), (at(1), s(25))]
    );
    // Partition 1 hands over at 30 s: from then on, the lag as seen
    // (within the hold of its last hand-over).
    shared.note_delivered([at(1)].into_iter(), s(30));
    assert_eq!(shared.backlogged_at(s(31)), vec![(at(0), s(31))]);
    shared.lag_seen(at(1), 40_000, s(32));
    assert_eq!(
        shared.backlogged_at(s(33)),
        vec![(at(0), s(33)), (at(1), s(32))]
    );
    // Partition 0 never hands over: starved up to the hold after its
    // assignment, not after.
    shared.lag_seen(at(0), 500, s(59));
    assert_eq!(
        shared.backlogged_at(s(59)),
        vec![(at(0), s(59)), (at(1), s(32))]
    );
    assert_eq!(shared.backlogged_at(s(60)), vec![(at(1), s(32))]);
    // Assigned again (a rebalance): a hand-over before the new
    // assignment does not count.
    shared.assigned(&[at(1)], s(70));
    assert_eq!(shared.backlogged_at(s(71)), vec![(at(1), s(71))]);
    shared.lag_seen(at(1), 0, s(72));
    assert!(shared.backlogged_at(s(73)).is_empty());
}
