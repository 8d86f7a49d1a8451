use super::*;

/// Runs `f` and returns what it logged.
fn logged(f: impl FnOnce()) -> String {
    crate::testlog::logged(f).1
}

#[test]
fn a_start_before_the_log_start_moves_up_to_it() {
    let log = logged(|| {
        assert_eq!(start_offset("t", 0, None, None, 40), 40);
        assert_eq!(start_offset("t", 0, Some(50), Some(50), 40), 50);
        // Beyond the end is found while reading (the watermark may lag).
        assert_eq!(start_offset("t", 0, Some(900), None, 40), 900);
    });
    assert!(log.is_empty(), "{log}");
    let log = logged(|| assert_eq!(start_offset("t", 2, Some(10), None, 40), 40));
    assert!(
        log.contains("WARN") && log.contains("reading from the log start, 30 offsets skipped"),
        "{log}"
    );
    assert!(
        log.contains("skipped=30") && log.contains("partition=2"),
        "{log}"
    );
    let log = logged(|| assert_eq!(start_offset("t", 0, Some(10), Some(20), 40), 40));
    assert!(log.contains("The whole offset range was deleted"), "{log}");
}

#[test]
fn a_time_lookup_is_used_only_inside_the_log_and_ahead_of_the_start() {
    assert_eq!(time_start(Offset::Offset(30), 10, 100), Some(30));
    assert_eq!(time_start(Offset::Offset(100), 10, 100), Some(100));
    assert_eq!(time_start(Offset::End, 10, 100), Some(100));
    // Behind the start (Tansu answers 0), beyond the log, or no answer.
    assert_eq!(time_start(Offset::Offset(0), 10, 100), None);
    assert_eq!(time_start(Offset::Offset(10), 10, 100), None);
    assert_eq!(time_start(Offset::Offset(101), 10, 100), None);
    assert_eq!(time_start(Offset::Offset(-1), 10, 100), None);
    assert_eq!(time_start(Offset::Invalid, 10, 100), None);
    assert_eq!(time_start(Offset::End, 100, 100), None);
}
