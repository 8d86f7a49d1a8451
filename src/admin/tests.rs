//! Unit tests of `admin`.

use super::*;

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer abc "), Some("abc"));
    assert_eq!(bearer("BEARER  abc"), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearerabc"), None);
}

#[test]
fn status_names_the_receivers_that_skip_tls_verification() {
    let a = AdminState::default();
    a.set_config(
        None,
        r#"
[[receivers]]
name = "lab"
kind = "generic"
url = "https://lab.internal/hook"
tls_skip_verify = true
[[receivers]]
name = "prod"
kind = "generic"
url = "https://hooks.example.com/x"
"#,
    );
    assert_eq!(
        a.status()["tls_skip_verify_receivers"],
        serde_json::json!(["lab"])
    );
    a.set_config(None, "");
    assert_eq!(
        a.status()["tls_skip_verify_receivers"],
        serde_json::json!([])
    );
}

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
