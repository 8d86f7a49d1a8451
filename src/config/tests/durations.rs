//! Durations as the command line, the console and the API take them.

/// The command line's durations parse as the configuration's: a capital
/// `M` (a month) and parts of a millisecond are refused with what to
/// write, `"0"` is zero.
#[test]
fn command_line_durations_refuse_what_the_configuration_refuses() {
    use crate::config::Dur;
    assert_eq!("90s".parse::<Dur>().map(Dur::as_ms), Ok(90_000));
    assert_eq!(" 1h 30m ".parse::<Dur>().map(Dur::as_ms), Ok(5_400_000));
    assert_eq!("0".parse::<Dur>().map(Dur::as_ms), Ok(0));
    let month = "1M".parse::<Dur>().unwrap_err();
    assert!(month.contains("is a month"), "{month}");
    for sub in ["0.5ms", "1500us", "1.0005s"] {
        let e = sub.parse::<Dur>().unwrap_err();
        assert!(e.contains("whole milliseconds"), "{sub}: {e}");
    }
    assert!("soon"
        .parse::<Dur>()
        .unwrap_err()
        .contains("invalid duration"));
    // An unknown unit names the units crisiswatch takes, not the parser's
    // whole list (which has the refused microseconds).
    let unknown = "3x".parse::<Dur>().unwrap_err();
    assert!(unknown.contains("units: ms, s, m, h, d, w"), "{unknown}");
    assert!(!unknown.contains("us/"), "{unknown}");
}
