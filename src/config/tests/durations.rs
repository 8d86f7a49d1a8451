//! Durations as the command line, the console and the API take them.

use super::*;

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

/// A bare number where a duration goes (`window = 60`) is refused with
/// what to write (a string with its unit), not serde's "expected a string".
#[test]
fn a_bare_number_for_a_duration_says_to_write_its_unit() {
    for (written, hint) in [("60", "\"60s\" or \"60m\""), ("0.5", "\"0.5s\"")] {
        let e = errors(&RULE.replace("window = \"30m\"", &format!("window = {written}")));
        let shown = e[0].to_string();
        assert!(
            shown.starts_with(&format!(
                "rules[0].window = {written}: a duration is a string with its unit"
            )) && shown.contains(hint),
            "{shown}"
        );
    }
    let e = errors(&RULE.replace("window = \"30m\"", "window = true"));
    assert!(
        e[0].to_string()
            .contains("expected a duration string such as \"30s\""),
        "{e:?}"
    );
}
