//! Limits, errors reported all at once, and tokens read from one place.

use super::*;

/// Every limit has a ceiling: a number past what a machine can give is a
/// configuration error naming the key, never a panic at start.
#[test]
fn limits_past_what_a_machine_can_give_are_refused() {
    let text = r#"
[server]
max_connections = 4611686018427387904
max_body_bytes = 1099511627776

[engine]
sample_event_ids = 9223372036854775807
max_groups_per_rule = 10000000000
"#;
    let e = Config::from_toml_str(text, &env(&[]))
        .unwrap_err()
        .to_string();
    for (key, max) in [
        ("server.max_connections", "65536"),
        ("server.max_body_bytes", "67108864"),
        ("engine.sample_event_ids", "1000"),
        ("engine.max_groups_per_rule", "1000000000"),
    ] {
        assert!(
            e.contains(key) && e.contains(&format!("must be at most {max}")),
            "{key}: {e}"
        );
    }
    let ok = "[server]\nmax_connections = 65536\n[engine]\nsample_event_ids = 1000\n";
    Config::from_toml_str(ok, &env(&[])).unwrap();
}

/// Every error at once, also inside indicators (a tagged table whose `kind`
/// is wrong, or whose fields are) and beside an interpolation error; a short
/// value from the environment is shown as written, never as its value.
#[test]
fn errors_inside_indicators_and_beside_interpolation_are_all_reported() {
    let text = r#"
[server]
admin_token_env = "${NOPE_UNSET_VAR}"
max_series_per_rule = "${SHORT}"

[[rules]]
name = "a"
window = "10m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "1h", method = "zzz" }
thresholds = { warning = 2 }

[[rules]]
name = "b"
window = "10m"
indicator = { kind = "countt" }
thresholds = { warnng = 10 }

[[rules]]
name = "c"
window = "10m"
indicator = { kind = "count", select = { typo = "complaint" } }
thresholds = { warning = 1 }
"#;
    let e = Config::from_toml_str(text, &env(&[("SHORT", "ab")]))
        .unwrap_err()
        .to_string();
    for part in [
        "server.admin_token_env",
        "NOPE_UNSET_VAR is not set",
        "server.max_series_per_rule",
        "rules[0].indicator",
        "unknown variant `zzz`",
        "rules[1].indicator.kind",
        "unknown variant `countt`",
        "rules[1].thresholds.warnng",
        "rules[2].indicator",
        "unknown field `typo`",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    assert!(!e.contains("\"ab\""), "the environment's value shows: {e}");
    assert!(e.contains("${SHORT}"), "{e}");
}

/// A token named two ways (the file would be ignored) or by an empty
/// variable name is an error naming the key.
#[test]
fn a_token_is_read_from_one_place() {
    let both = "[server]\nadmin_token_env = \"A\"\nadmin_token_file = \"/tmp/t\"\n";
    let e = Config::from_toml_str(both, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.admin_token_env") && e.contains("not both"),
        "{e}"
    );
    let empty = "[server]\nread_token_env = \"${EMPTY:-}\"\n";
    let e = Config::from_toml_str(empty, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.read_token_env") && e.contains("names no environment variable"),
        "{e}"
    );
}

/// A receiver `kind` serde does not know gets the first kind it names as
/// a stand-in, so the errors after it are still found.
#[test]
fn a_bad_receiver_kind_does_not_hide_the_errors_after_it() {
    let text = r#"
[[receivers]]
name = "chat"
kind = "slack"
url = "https://hooks.example.com/x"

[[rules]]
name = "a"
window = "30q"
indicator = { kind = "count" }
thresholds = { warning = 2 }

[[rules]]
name = "b"
window = "10m"
indicator = { kind = "count" }
thresholds = { warnng = 10 }
"#;
    let e = Config::from_toml_str(text, &env(&[]))
        .unwrap_err()
        .to_string();
    for part in [
        "receivers[0].kind",
        "unknown variant `slack`",
        "rules[0].window",
        "rules[1].thresholds.warnng",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
}

/// A surge whose baseline is shorter than its window never has a value (it
/// waits for one window of baseline history): refused, naming both. The
/// same baseline beside a window it covers is accepted.
#[test]
fn a_surge_baseline_shorter_than_its_window_is_refused() {
    let rule = |window: &str| {
        format!(
            r#"
[[rules]]
name = "s"
window = "{window}"
slide = "10m"
indicator = {{ kind = "surge", select = {{ type = "complaint" }}, baseline = "1h", min_baseline = 1 }}
thresholds = {{ warning = 2 }}
"#
        )
    };
    let e = Config::from_toml_str(&rule("2h"), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rules[0].indicator.baseline") && e.contains("at least the window (2h)"),
        "{e}"
    );
    Config::from_toml_str(&rule("1h"), &env(&[])).unwrap();
}
