//! Tests of `--group` naming.

use super::*;

/// Every slice can be named: a value with `,`, `=`, `%` or blanks at an
/// end is written percent-encoded, as the error's list of slices shows it.
#[test]
fn group_values_with_separators_round_trip() {
    let cfg = crate::config::Config::from_toml_str(
        r#"
[[rules]]
name = "c"
group_by = ["product", "region"]
window = "10m"
indicator = { kind = "count" }
thresholds = { warning = 5 }
"#,
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    let rule = &cfg.rules[0];
    for value in ["x,region=y", " padded ", "50%", "plain", "ünï"] {
        let spec = format!(
            "region={},product={}",
            escape_group("eu"),
            escape_group(value)
        );
        let got = parse_group(rule, &spec).expect(&spec);
        assert_eq!(
            got,
            vec![
                ("product".to_string(), value.to_string()),
                ("region".to_string(), "eu".to_string())
            ],
            "{spec}"
        );
    }
    assert_eq!(escape_group("x,region=y"), "x%2Cregion%3Dy");
    assert_eq!(escape_group(" a b "), "%20a b%20");
    assert!(parse_group(rule, "product=%zz,region=eu").is_err());
    assert!(parse_group(rule, "product=%2,region=eu").is_err());
}
