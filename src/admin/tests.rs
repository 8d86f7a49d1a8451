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
