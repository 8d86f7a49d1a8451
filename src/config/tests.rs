//! Tests of loading, interpolation and validation.

use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::from_toml_str(text, &env(&[])) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid(e)) => e,
        Err(e) => panic!("unexpected {e}"),
    }
}

const RULE: &str = r#"
[[rules]]
name = "complaint_rate"
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }
thresholds = { warning = 0.05 }
"#;

#[test]
fn example_config_is_valid() {
    let cfg = Config::from_toml_str(EXAMPLE_CONFIG, &env(&[])).unwrap();
    assert!(cfg.rules.len() >= 7);
    assert_eq!(cfg.server.listen, "127.0.0.1:9464");
    let kafka = cfg.sources.kafka.as_ref().unwrap();
    assert_eq!(kafka.brokers, "localhost:9092");
    let names: Vec<_> = kafka.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["complaints", "feedback", "orders", "cancellations"]);
    // The webhook receiver is disabled unless the variable is set.
    assert_eq!(
        cfg.receivers
            .iter()
            .find(|r| r.name == "webhook")
            .unwrap()
            .url,
        ""
    );
    let cfg = Config::from_toml_str(
        EXAMPLE_CONFIG,
        &env(&[
            ("CRISISWATCH_BROKERS", "k1:9092,k2:9092"),
            ("CRISISWATCH_WEBHOOK_URL", "https://hooks.example.com/x"),
            ("CRISISWATCH_LISTEN", "0.0.0.0:9000"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.sources.kafka.unwrap().brokers, "k1:9092,k2:9092");
    assert_eq!(cfg.server.listen, "0.0.0.0:9000");
    assert_eq!(
        cfg.receivers
            .iter()
            .find(|r| r.name == "webhook")
            .unwrap()
            .url,
        "https://hooks.example.com/x"
    );
}

#[test]
fn the_shipped_file_is_the_embedded_one() {
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/crisiswatch.toml"
    ))
    .unwrap();
    assert_eq!(on_disk, EXAMPLE_CONFIG);
}

#[test]
fn defaults_apply() {
    let cfg = Config::from_toml_str(RULE, &env(&[])).unwrap();
    assert_eq!(cfg.engine.dedup_horizon, Dur::mins(10));
    // The default dedup memory holds the whole horizon of a 5,000 events/s
    // stream (the rate the README sizes for), not only 1,667 as it did.
    let horizon_s = cfg.engine.dedup_horizon.as_ms() / 1000;
    assert!(cfg.engine.dedup_max_ids as i64 >= 5_000 * horizon_s);
    assert_eq!(cfg.engine.max_future_skew, Dur::mins(5));
    let r = &cfg.rules[0];
    assert_eq!(r.condition, Condition::Above);
    assert_eq!(r.clear_threshold(), Some(0.05));
    assert_eq!(r.for_, Dur::default());
    let mut no_slide = r.clone();
    no_slide.slide = None;
    assert_eq!(no_slide.slide(), Dur::mins(3));
}

#[test]
fn engine_workers_default_to_the_cores_but_one() {
    use crate::config::settings::workers_for;
    let cfg = Config::from_toml_str(RULE, &env(&[])).unwrap();
    assert_eq!(cfg.engine.workers, 0, "automatic by default");
    // The consumer thread and the routing keep one core.
    assert_eq!(workers_for(0, 1, 64), 1);
    assert_eq!(workers_for(0, 2, 64), 1);
    assert_eq!(workers_for(0, 8, 64), 7);
    // Never more workers than shards; an explicit number is kept.
    assert_eq!(workers_for(0, 128, 16), 16);
    assert_eq!(workers_for(3, 2, 64), 3);
    assert_eq!(workers_for(300, 2, 64), 64);
}

#[test]
fn value_ranges_default_and_validate() {
    let cfg = Config::from_toml_str(RULE, &env(&[])).unwrap();
    assert_eq!(cfg.engine.score_range, [0.0, 10.0]);
    assert_eq!(cfg.engine.sentiment_range, [-1.0, 1.0]);
    let limits = cfg.engine.decode_limits();
    assert_eq!(limits.score_range, (0.0, 10.0));
    let csat = format!("[engine]\nscore_range = [1, 5]\n{RULE}");
    let cfg = Config::from_toml_str(&csat, &env(&[])).unwrap();
    assert_eq!(cfg.engine.decode_limits().score_range, (1.0, 5.0));
    for (text, path, value) in [
        ("score_range = [10, 0]", "engine.score_range", "[10, 0]"),
        (
            "score_range = [0, 1e7]",
            "engine.score_range",
            "[0, 10000000]",
        ),
        ("score_range = [0, nan]", "engine.score_range", "[0, NaN]"),
        (
            "sentiment_range = [-2, 1]",
            "engine.sentiment_range",
            "[-2, 1]",
        ),
    ] {
        let e = errors(&format!("[engine]\n{text}\n{RULE}"));
        assert_eq!(e.len(), 1, "{text}: {e:?}");
        assert_eq!((e[0].path.as_str(), e[0].value.as_str()), (path, value));
    }
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let e = errors(&format!("{RULE}\nwindwo = \"5m\""));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "rules[0].windwo");
    assert_eq!(e[0].value, "5m");
    assert!(
        e[0].message.contains("unknown field `windwo`"),
        "{}",
        e[0].message
    );

    let e = errors("[engine]\nlateness = \"1m\"");
    assert!(e[0].message.contains("unknown field `lateness`"));
    assert_eq!(e[0].path, "engine.lateness");
}

#[test]
fn type_errors_name_the_key_and_value() {
    let e = errors(&RULE.replace("window = \"30m\"", "window = \"thirty minutes\""));
    assert_eq!(e[0].path, "rules[0].window");
    assert_eq!(e[0].value, "thirty minutes");
    assert!(e[0].message.contains("invalid duration"));

    let e = errors(&RULE.replace("kind = \"ratio\"", "kind = \"ration\""));
    assert!(e[0].path.starts_with("rules[0].indicator"), "{:?}", e[0]);
    assert!(e[0].message.contains("ration"));
}

#[test]
fn validation_reports_every_error() {
    let text = r#"
[server]
listen = "localhost"

[[rules]]
name = "Bad Name"
window = "30m"
slide = "7m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 10, critical = 5 }
clear = 20

[[rules]]
name = "dup"
window = "30m"
indicator = { kind = "surge", baseline = "10m 30s", min_baseline = 0 }
thresholds = {}

[[rules]]
name = "dup"
window = "1h"
group_by = ["a", "a"]
indicator = { kind = "ratio", numerator = {}, denominator = {}, min_denominator = 0 }
thresholds = { info = 1 }
"#;
    let e = errors(text);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "server.listen",
        "rules[0].name",
        "rules[0].slide",
        "rules[0].thresholds.critical",
        "rules[0].clear",
        "rules[1].indicator.baseline",
        "rules[1].indicator.min_baseline",
        "rules[1].thresholds",
        "rules[2].name",
        "rules[2].group_by[1]",
        "rules[2].indicator.min_denominator",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let listen = e.iter().find(|e| e.path == "server.listen").unwrap();
    assert_eq!(listen.value, "localhost");
    assert!(listen
        .to_string()
        .starts_with("server.listen = \"localhost\": "));
}

#[test]
fn below_condition_needs_descending_thresholds() {
    let ok = RULE.replace(
        "thresholds = { warning = 0.05 }",
        "condition = \"below\"\nthresholds = { warning = 15.0, critical = 0.0 }\nclear = 25.0",
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let bad = RULE.replace(
        "thresholds = { warning = 0.05 }",
        "condition = \"below\"\nthresholds = { warning = 0.0, critical = 15.0 }",
    );
    assert_eq!(errors(&bad)[0].path, "rules[0].thresholds.critical");
}

#[test]
fn interpolation_errors_are_reported_with_paths() {
    let text = RULE.replace("name = \"complaint_rate\"", "name = \"${RULE_NAME}\"");
    let e = errors(&text);
    assert_eq!(e[0].path, "rules[0].name");
    assert!(e[0].message.contains("RULE_NAME"));
    let cfg = Config::from_toml_str(&text, &env(&[("RULE_NAME", "from_env")])).unwrap();
    assert_eq!(cfg.rules[0].name, "from_env");
}

/// An error shows a value that held `$` as written, not what the
/// environment put in it (a token in a URL, a secret in a text).
#[test]
fn errors_show_environment_references_not_their_values() {
    let text = format!(
        "{RULE}\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"${{HOOK_URL}}\"\n"
    );
    let bad = env(&[("HOOK_URL", "not a url s3cr3t-token")]);
    let e = match Config::from_toml_str(&text, &bad) {
        Err(LoadError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert!(shown.iter().any(|m| m.contains("${HOOK_URL}")), "{shown:?}");
    assert!(!shown.iter().any(|m| m.contains("s3cr3t")), "{shown:?}");
    // A serde error (unknown field) too.
    let text = RULE.replace(
        "name = \"complaint_rate\"",
        "name = \"complaint_rate\"\nsummary = \"${SECRET_TEXT}\"",
    );
    let e = match Config::from_toml_str(&text, &env(&[("SECRET_TEXT", "s3cr3t")])) {
        Err(LoadError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|m| m.contains("${SECRET_TEXT}")),
        "{shown:?}"
    );
    assert!(!shown.iter().any(|m| m.contains("s3cr3t")), "{shown:?}");
    // A serde message that quotes the value (`invalid duration "…"`), whole
    // or as part of a longer string.
    for (written, value) in [("${TMO}", "ENVSECRET3"), ("${TMO}s and more", "ENVSECRET3")] {
        let text = format!(
            "{RULE}\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"https://h.example\"\ndelivery = {{ timeout = \"{written}\" }}\n"
        );
        let e = match Config::from_toml_str(&text, &env(&[("TMO", value)])) {
            Err(LoadError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(shown.iter().any(|m| m.contains("${TMO}")), "{shown:?}");
        assert!(!shown.iter().any(|m| m.contains("ENVSECRET")), "{shown:?}");
    }
}

#[test]
fn toml_syntax_errors_are_reported() {
    let e = errors("[[rules]\nname = ");
    assert!(
        e[0].message.starts_with("not valid TOML"),
        "{}",
        e[0].message
    );
}

#[test]
fn selectors_accept_eq_in_and_not() {
    let text = RULE.replace(
        "numerator = { type = \"complaint\" }",
        "numerator = { type = \"complaint\", attrs = { channel = \"social\", category = [\"safety\", \"outage\"], segment = { not = \"internal\" } } }",
    );
    let cfg = Config::from_toml_str(&text, &env(&[])).unwrap();
    let IndicatorConfig::Ratio { numerator, .. } = &cfg.rules[0].indicator else {
        panic!("not a ratio")
    };
    assert_eq!(numerator.attrs.len(), 3);
    assert!(matches!(numerator.attrs["segment"], ValueMatch::Not(_)));
}

#[test]
fn kafka_source_settings_are_validated() {
    let ok = r#"
[sources.kafka]
brokers = "127.0.0.1:9092"
topics = [{ name = "complaints", default_type = "complaint" }]
commit_interval = "1s"
"#;
    let cfg = Config::from_toml_str(ok, &env(&[])).unwrap();
    let k = cfg.sources.kafka.unwrap();
    assert_eq!(k.commit_interval, Dur::secs(1));
    assert_eq!(k.shutdown_timeout, Dur::secs(30));
    assert_eq!(k.channel_capacity, 8);
    let bad = r#"
[sources.kafka]
brokers = "127.0.0.1:9092"
topics = [{ name = "a" }, { name = "a", default_type = "" }]
stall_timeout = "0"
channel_capacity = 0
[sources.kafka.properties]
"enable.auto.commit" = "true"
"#;
    let paths: Vec<String> = errors(bad).into_iter().map(|e| e.path).collect();
    for p in [
        "sources.kafka.topics[1].name",
        "sources.kafka.topics[1].default_type",
        "sources.kafka.stall_timeout",
        "sources.kafka.channel_capacity",
        "sources.kafka.properties.\"enable.auto.commit\"",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not in {paths:?}");
    }
}

#[test]
fn kafka_credentials_are_redacted_in_errors_and_debug_output() {
    let e = ConfigError::new(
        "sources.kafka.properties.\"sasl.password\"",
        "hunter2",
        "bad",
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = ConfigError::new("sources.kafka.properties.\"sasl.username\"", "svc", "bad");
    assert!(e.to_string().contains("svc"), "{e}");
    let text = r#"
[sources.kafka]
brokers = "localhost:9092"
topics = [{ name = "events" }]
[sources.kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.password" = "${CW_TEST_SASL_PASSWORD}"
"ssl.key.password" = "key-pass-2"
"#;
    let env: std::collections::HashMap<String, String> = [(
        "CW_TEST_SASL_PASSWORD".to_string(),
        "sasl-pass-1".to_string(),
    )]
    .into();
    let cfg = Config::from_toml_str(text, &env).unwrap();
    let k = cfg.sources.kafka.as_ref().unwrap();
    assert_eq!(k.properties["sasl.password"], "sasl-pass-1");
    let printed = format!("{cfg:?} {}", toml::to_string(&cfg).unwrap());
    assert!(
        !printed.contains("sasl-pass-1") && !printed.contains("key-pass-2"),
        "{printed}"
    );
    assert!(printed.contains("SASL_SSL"));
}

#[test]
fn an_unanswered_rule_needs_an_sla_two_slides_inside_its_window() {
    let rule = |sla: &str| {
        format!(
            "[[rules]]\nname = \"backlog\"\nwindow = \"3h\"\nslide = \"30m\"\n\
             indicator = {{ kind = \"unanswered\", select = {{ type = \"complaint\" }}, sla = \"{sla}\" }}\n\
             thresholds = {{ warning = 0 }}\n"
        )
    };
    assert!(errors(&rule("2h")).is_empty(), "{:?}", errors(&rule("2h")));
    for bad in ["0s", "45m", "150m", "3h", "4h"] {
        let e = errors(&rule(bad));
        assert!(
            e.iter().any(|e| e.path == "rules[0].indicator.sla"),
            "sla = {bad}: {e:?}"
        );
    }
    // The responses default to events of type "response".
    let cfg = Config::from_toml_str(&rule("2h"), &HashMap::<String, String>::new()).unwrap();
    assert_eq!(
        format!("{:?}", cfg.rules[0].indicator.selectors()[1]),
        r#"Selector { kind: Some(Is(One("response"))), attrs: {} }"#
    );
}

#[test]
fn a_response_time_rule_needs_a_quantile_in_0_1() {
    let rule = |q: &str| {
        format!(
            "[[rules]]\nname = \"first_response\"\nwindow = \"3h\"\nslide = \"30m\"\n\
             indicator = {{ kind = \"response_time\", select = {{ type = \"complaint\" }}, quantile = {q} }}\n\
             thresholds = {{ warning = 3600 }}\n"
        )
    };
    for good in ["0.5", "0.9", "1.0"] {
        assert!(
            errors(&rule(good)).is_empty(),
            "{good}: {:?}",
            errors(&rule(good))
        );
    }
    for bad in ["0.0", "-0.5", "1.5", "nan"] {
        let e = errors(&rule(bad));
        assert!(
            e.iter().any(|e| e.path == "rules[0].indicator.quantile"),
            "quantile = {bad}: {e:?}"
        );
    }
    // No confidence bound for it, and the responses default to "response".
    let guarded = format!("{}confidence = 0.9\n", rule("0.9"));
    assert!(errors(&guarded)
        .iter()
        .any(|e| e.path == "rules[0].confidence"));
    let cfg = Config::from_toml_str(&rule("0.9"), &HashMap::<String, String>::new()).unwrap();
    assert_eq!(cfg.rules[0].indicator.kind_name(), "response_time");
    assert_eq!(
        format!("{:?}", cfg.rules[0].indicator.selectors()[1]),
        r#"Selector { kind: Some(Is(One("response"))), attrs: {} }"#
    );
}

#[test]
fn max_event_bytes_is_bounded_both_ways() {
    let with = |n: &str| errors(&format!("[engine]\nmax_event_bytes = {n}\n{RULE}"));
    for bad in ["63", "268435457", "4294967296"] {
        let errs = with(bad);
        assert!(
            errs.iter()
                .any(|e| e.to_string().contains("engine.max_event_bytes")),
            "{bad}: {errs:?}"
        );
    }
    for good in ["64", "65536", "268435456"] {
        assert!(with(good).is_empty(), "{good}");
    }
}

#[test]
fn kafka_topic_names_must_be_legal() {
    let with = |topic: &str, dead: &str| {
        errors(&format!(
            "[sources.kafka]\nbrokers = \"127.0.0.1:9092\"\ntopics = [{{ name = \"{topic}\" }}]\ndead_letter_topic = \"{dead}\"\n"
        ))
        .into_iter()
        .map(|e| e.path)
        .collect::<Vec<_>>()
    };
    assert!(with("complaints", "crisiswatch.dead-letters_1").is_empty());
    assert!(with("complaints", "").is_empty());
    assert_eq!(
        with("complaints", "bad topic!"),
        ["sources.kafka.dead_letter_topic"]
    );
    assert_eq!(
        with("complaints", ".."),
        ["sources.kafka.dead_letter_topic"]
    );
    assert_eq!(
        with(&"x".repeat(250), "dead"),
        ["sources.kafka.topics[0].name"]
    );
    assert_eq!(with("a/b", "dead"), ["sources.kafka.topics[0].name"]);
}

#[test]
fn durations_come_back_in_days_not_months_and_parse_back() {
    for (typed, shown) in [
        ("40d", "40d"),
        ("24h", "1d"),
        ("90m", "1h 30m"),
        ("1500ms", "1s 500ms"),
        ("0", "0s"),
        ("2d 3h 4m 5s 6ms", "2d 3h 4m 5s 6ms"),
        ("1month", "30d 10h 33m 36s"),
    ] {
        let d: Dur = serde_json::from_value(serde_json::json!(typed)).unwrap();
        assert_eq!(d.to_string(), shown, "{typed}");
        let back: Dur = serde_json::from_value(serde_json::json!(shown)).unwrap();
        assert_eq!(back, d, "{shown} parses back");
    }
}

#[test]
fn every_value_serde_refuses_is_reported_at_once() {
    let text = format!(
        "[incidents]\nupdate_interval = \"30x\"\nupdate_intervall = \"1m\"\n{}\n[[rules]]\nname = \"second\"\nwindow = 5\nindicator = {{ kind = \"count\" }}\nthresholds = {{ warning = 1 }}\n",
        RULE.replace("slide = \"1m\"", "slide = \"1q\"")
    );
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "incidents.update_interval",
        "incidents.update_intervall",
        "rules[0].slide",
        "rules[1].window",
    ] {
        assert!(paths.contains(&want), "{want} in {errs:?}");
    }
    assert_eq!(errs.len(), 4, "{errs:?}");
    let slide = errs.iter().find(|e| e.path == "rules[0].slide").unwrap();
    assert_eq!(slide.value, "1q");
    // A required field missing is reported (then it stops), one that was
    // only taken out to look further is not.
    let errs = errors("[[rules]]\nwindow = \"1x\"\nindicator = { kind = \"count\" }\nthresholds = { warning = 1 }\n");
    let shown: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(shown[0].contains("invalid duration"), "{shown:?}");
    assert!(shown[1].contains("missing field `name`"), "{shown:?}");
    // One error: as before.
    let errs = errors("[incidents]\nupdate_interval = \"30x\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
}

mod console_url;
mod durations;
mod limits;
mod refusals;
