//! Readiness of the consumer: stalls, brokers down, groups, stuck partitions.

use super::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn quiet_is_confirmed_only_while_progress_is_recent() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let h = Health::new(t0);
    h.on_assigned(t0);
    assert!(h.confirmed(at(3_000)));
    assert!(
        !h.confirmed(at(3_001)),
        "the broker has not answered for 3 s"
    );
    // Statistics every second, the broker answering, nothing behind.
    h.on_stats(at(3_500), 10, 0, 1, 1);
    h.on_stats(at(4_500), 11, 0, 1, 1);
    assert!(h.confirmed(at(5_000)));
    // Answering but behind: not confirmed.
    h.on_stats(at(9_000), 12, 500, 1, 1);
    assert!(!h.confirmed(at(9_000)));
    // Statistics every 5 s: confirmed within 15 s.
    let slow = Health::new(t0).with_statistics_interval(5_000);
    assert!(slow.confirmed(at(15_000)) && !slow.confirmed(at(15_001)));
    // Statistics off: nothing can confirm it, every stretch counts.
    let off = Health::new(t0).with_statistics_interval(0);
    assert!(off.confirmed(at(3_600_000)));
}

/// One partition whose fetch stays put with messages past it, nothing
/// of it fetched and waiting, while the other flows: not ready, named;
/// ready again once it moves. A partition at its end (a transaction
/// marker left behind the last message is past the fetch too), or one
/// whose messages wait for the application, is not stuck.
#[test]
fn one_partition_stuck_while_the_others_flow_is_named() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let h = Health::new(t0);
    h.on_assigned(t0);
    // Statistics every second: p0 moves on, p1 stays at 100 of 141;
    // p2 is at its end, p3's messages wait for the application.
    for i in 0..=12 {
        let now = at(i);
        h.on_messages(now);
        h.on_partition(now, "t", 0, 1_000 + i as i64 * 10, 2_000, 0);
        h.on_partition(now, "t", 1, 100, 141, 0);
        h.on_partition(now, "t", 2, 50, 50, 0);
        h.on_partition(now, "t", 3, 70, 90, 20);
        h.on_stats(now, 10 + i, 41, 4, 4);
        let s = h.check(now, T);
        if i <= 10 {
            assert!(s.ready, "{i}: {s:?}");
        } else {
            assert!(!s.ready && s.stalled, "{i}: {s:?}");
            let why = s.why.unwrap_or_default();
            assert!(
                why.contains("reads nothing more of t[1] (fetch at offset 100, 41 messages behind")
                    && !why.contains("more partitions"),
                "{why}"
            );
        }
    }
    // It moves again: ready.
    h.on_messages(at(13));
    h.on_partition(at(13), "t", 1, 120, 141, 0);
    h.on_stats(at(13), 30, 21, 4, 4);
    assert!(h.check(at(13), T).ready);
    // A partition the report no longer names (revoked) is forgotten.
    h.on_partition(at(30), "t", 0, 5_000, 6_000, 0);
    h.on_messages(at(30));
    h.on_stats(at(30), 40, 0, 1, 1);
    assert!(h.check(at(30), T).ready);
    // The whole consumer standing still is the stall, not one partition.
    h.on_partition(at(45), "t", 0, 5_000, 6_000, 0);
    h.on_stats(at(45), 40, 1_000, 1, 1);
    let s = h.check(at(45), T);
    assert!(
        !s.ready && s.why.as_deref().is_some_and(|w| w.contains("is stalled")),
        "{s:?}"
    );
}

#[test]
fn ready_after_joining_until_progress_stops() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let s = h.check(t0, T);
    assert!(!s.ready, "not joined yet");
    assert!(
        s.why.as_deref().is_some_and(|w| w.contains("not joined")),
        "{s:?}"
    );
    h.on_assigned(t0);
    assert!(h.check(t0, T).ready);
    assert_eq!(h.check(t0, T).why, None);
    h.on_messages(t0 + Duration::from_secs(8));
    assert!(h.check(t0 + Duration::from_secs(15), T).ready);
    let s = h.check(t0 + Duration::from_secs(19), T);
    assert!(!s.ready && s.stalled);
    assert!(
        s.why.as_deref().is_some_and(|w| w.contains("stalled")),
        "{s:?}"
    );
    h.on_messages(t0 + Duration::from_secs(20));
    assert!(h.check(t0 + Duration::from_secs(20), T).ready, "recovers");
}

#[test]
fn caught_up_with_an_answering_broker_is_progress() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    h.on_assigned(t0);
    let at = |s| t0 + Duration::from_secs(s);
    h.on_stats(at(1), 100, 0, 2, 2);
    h.on_stats(at(9), 120, 0, 2, 2);
    assert!(
        h.check(at(18), T).ready,
        "the broker answered at 9 s, no lag"
    );
    // Behind: broker answers but nothing is consumed.
    h.on_stats(at(19), 140, 500, 2, 2);
    assert!(!h.check(at(20), T).ready);
    // Caught up but the broker went silent (paused): still stalled.
    h.on_stats(at(21), 140, 0, 2, 2);
    assert!(!h.check(at(21), T).ready);
    h.on_stats(at(22), 141, 0, 2, 2);
    assert!(h.check(at(22), T).ready);
    // Rejoining the group after the session was lost is not progress.
    h.on_revoked();
    h.on_stats(at(30), 150, 0, 2, 2);
    assert!(!h.check(at(33), T).ready);
    h.on_assigned(at(34));
    assert!(h.check(at(34), T).ready);
}

/// A stall while librdkafka reports every broker down says so, not
/// "another member holds the partitions"; progress clears it.
#[test]
fn a_stall_with_every_broker_down_names_the_brokers() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let h = Health::new(t0).expecting_partitions();
    h.on_assigned(t0);
    h.on_stats(at(1), 100, 0, 4, 4);
    h.on_brokers_down(at(2));
    // The group lost the partitions meanwhile: none held.
    h.on_revoked();
    h.on_assigned(at(2));
    h.on_brokers_down(at(3));
    h.on_stats(at(3), 100, 0, 0, 4);
    let s = h.check(at(20), T);
    assert!(!s.ready && s.stalled, "{s:?}");
    assert!(
        s.why
            .as_deref()
            .is_some_and(|w| w.contains("reaches none of its brokers")),
        "{s:?}"
    );
    h.on_messages(at(21));
    h.on_stats(at(21), 120, 0, 4, 4);
    let s = h.check(at(21), T);
    assert!(s.ready && s.why.is_none(), "{s:?}");
    // Down again, then back on a quiet stream (answers, no message),
    // then stalled for another reason: not named as brokers down.
    h.on_brokers_down(at(22));
    h.on_stats(at(23), 130, 0, 4, 4);
    h.on_stats(at(24), 131, 500, 4, 4);
    let s = h.check(at(40), T);
    assert!(s.stalled, "{s:?}");
    assert!(
        s.why.as_deref().is_some_and(|w| !w.contains("brokers")),
        "{s:?}"
    );
}

/// One instance holding part of its topics' partitions (a second
/// replica in its group, without `scale_out`) is said to be split, and
/// stays ready; a scaled-out member with part of them is fine.
#[test]
fn holding_part_of_the_partitions_without_scale_out_is_a_split() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let alone = Health::new(t0).expecting_partitions();
    let member = Health::new(t0);
    for h in [&alone, &member] {
        h.on_assigned(t0);
        h.on_stats(at(1), 100, 0, 4, 4);
        assert!(!h.split());
        h.on_stats(at(2), 101, 0, 2, 4);
    }
    assert!(alone.split() && alone.check(at(2), T).ready);
    assert!(!member.split());
    // While a rebalance runs, nothing is said; all four back: no split.
    alone.on_revoked();
    alone.on_assigned(at(3));
    alone.on_stats(at(4), 102, 0, 4, 4);
    assert!(!alone.split());
}

/// One instance holding none of its topics' partitions (a group stuck
/// after a broker restart) is stalled, not caught up; a scaled-out
/// member with none (more instances than partitions) is fine.
#[test]
fn holding_no_partition_of_existing_topics_is_no_progress_for_one_instance() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let alone = Health::new(t0).expecting_partitions();
    let member = Health::new(t0);
    for h in [&alone, &member] {
        h.on_assigned(t0);
        for s in 1..=20 {
            h.on_stats(at(s), 100 + s, 0, 0, 4);
        }
    }
    let s = alone.check(at(20), T);
    assert!(!s.ready && s.stalled, "{s:?}");
    assert!(
        s.why.as_deref().is_some_and(|w| w.contains("holds none")),
        "{s:?}"
    );
    assert!(member.check(at(20), T).ready);
    // Topics without partitions (not created yet): nothing to hold.
    let empty = Health::new(t0).expecting_partitions();
    empty.on_assigned(t0);
    for s in 1..=20 {
        empty.on_stats(at(s), 100 + s, 0, 0, 0);
    }
    assert!(empty.check(at(20), T).ready);
    // Assigned again: progress.
    alone.on_assigned(at(21));
    alone.on_stats(at(22), 200, 0, 4, 4);
    assert!(alone.check(at(22), T).ready);
}
