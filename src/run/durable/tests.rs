//! Unit tests of `run::durable`: the restored clock, and what a restore skipped over.

use super::{restored_clock, unread_after_restore};
use crate::state::PartitionState;

/// The first message after a restore tells whether the checkpoint's
/// messages were all read: from the committed offset (at or before
/// the resume point) nothing is missed; past it, the held events and
/// the messages after the last one read are named.
#[test]
fn messages_skipped_over_after_a_restore_are_counted() {
    let p = PartitionState {
        topic: "events".into(),
        partition: 0,
        max_ts: None,
        resume: 100,
        next: 120,
        pending: vec![105, 110],
        last: None,
    };
    let (unread, log) =
        crate::testlog::logged(|| [90, 100, 106, 121, 5_000].map(|f| unread_after_restore(&p, f)));
    // Behind or at the resume point, and one past the last read (a
    // transaction marker): nothing missed.
    assert_eq!(unread, [0, 0, 1, 2, 2 + 4_879]);
    assert!(log.contains("never read"), "{log}");
    let (quiet, log) = crate::testlog::logged(|| unread_after_restore(&p, 100));
    assert_eq!(quiet, 0);
    assert!(!log.contains("never read"), "{log}");
}

#[test]
fn a_partition_restarts_where_the_release_point_left_it() {
    // It had read up to 23:59 but only events before 15:44 were applied.
    let (read, released, late) = (86_000_000, 56_000_000, 60_000);
    assert_eq!(
        restored_clock(Some(read), Some(released), late),
        Some(released + late)
    );
    // A partition whose reads were all applied keeps its own clock.
    assert_eq!(
        restored_clock(Some(1_000), Some(released), late),
        Some(1_000)
    );
    // Nothing released: nothing applied, its clock starts afresh.
    assert_eq!(restored_clock(Some(read), None, late), None);
    assert_eq!(restored_clock(None, Some(released), late), None);
}
