//! Unit tests of `admin::reload`.

use super::*;

/// A reload that would switch the service off is refused: no rules, or no
/// Kafka source where the service started with one.
#[test]
fn a_reload_that_would_stop_watching_is_refused() {
    const RULE: &str = "[[rules]]\nname = \"n\"\nwindow = \"10m\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 5 }\n";
    const KAFKA: &str =
        "[sources.kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{ name = \"events\" }]\n";
    let parse = |t: &str| Config::from_toml_str(t, &crate::config::ProcessEnv).unwrap();
    let a = AdminState::default();
    a.set_config(None, &format!("{KAFKA}{RULE}"));
    assert!(refuse_to_stop_watching(&a, &parse(&format!("{KAFKA}{RULE}"))).is_ok());
    let e = refuse_to_stop_watching(&a, &parse(KAFKA)).unwrap_err();
    assert!(e.contains("has no rules"), "{e}");
    let e = refuse_to_stop_watching(&a, &parse("")).unwrap_err();
    assert!(e.contains("has no rules"), "{e}");
    let e = refuse_to_stop_watching(&a, &parse(RULE)).unwrap_err();
    assert!(e.contains("has no [sources.kafka]"), "{e}");
    // Started without Kafka (the demo): rules alone are enough.
    let demo = AdminState::default();
    demo.set_config(None, RULE);
    assert!(refuse_to_stop_watching(&demo, &parse(RULE)).is_ok());
}
