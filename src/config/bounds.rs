//! Upper bounds of every duration setting: a value past its bound is a
//! configuration error naming the key, never an overflow or a panic later
//! (`shutdown_timeout = "1000000000y"` once panicked at start).
//!
//! The bounds are generous — far beyond any sensible setting — and the same
//! table feeds validation and the README's list, so they cannot drift apart.

use std::time::Duration;

use super::{Config, ConfigError, Dur};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// A year, leap or not: the bound prints as `366d`.
const YEAR: u64 = 366 * DAY;

/// One bounded setting: its key (`[]` where an index goes) and its maximum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    /// Key path, e.g. `sources.kafka.shutdown_timeout`.
    pub(crate) key: &'static str,
    /// The largest accepted value.
    pub(crate) max: Duration,
}

const fn b(key: &'static str, secs: u64) -> Bound {
    Bound {
        key,
        max: Duration::from_secs(secs),
    }
}

/// Every duration setting and its maximum.
pub(crate) const BOUNDS: &[Bound] = &[
    b("engine.allowed_lateness", 7 * DAY),
    b("engine.dedup_horizon", 7 * DAY),
    b("engine.max_future_skew", 7 * DAY),
    b("engine.max_clock_jump", 366 * DAY),
    b("engine.silence_after", 366 * DAY),
    b("engine.idle_timeout", DAY),
    b("server.header_read_timeout", 5 * MINUTE),
    b("server.request_timeout", 10 * MINUTE),
    b("sources.kafka.commit_interval", HOUR),
    b("state.checkpoint_interval", DAY),
    b("sources.kafka.idle_partition_timeout", DAY),
    b("sources.kafka.stall_timeout", DAY),
    b("sources.kafka.shutdown_timeout", HOUR),
    b("demo.duration", YEAR),
    b("incidents.update_interval", 7 * DAY),
    b("incidents.drain_timeout", HOUR),
    b("incidents.retention", YEAR),
    b("incidents.routes[].group_window", DAY),
    b("incidents.routes[].group_interval", DAY),
    b("receivers[].delivery.timeout", 10 * MINUTE),
    b("receivers[].delivery.backoff_initial", HOUR),
    b("receivers[].delivery.backoff_max", DAY),
    b("receivers[].delivery.max_age", 30 * DAY),
    b("receivers[].delivery.breaker_cooldown", DAY),
    b("receivers[].delivery.resend_interval", DAY),
    b("rules[].window", 31 * DAY),
    b("rules[].slide", 31 * DAY),
    b("rules[].for", 31 * DAY),
    b("rules[].keep_firing_for", 31 * DAY),
];

/// The maximum of `key` (written with `[]` for indexes).
fn max_of(key: &str) -> Duration {
    BOUNDS
        .iter()
        .find(|b| b.key == key)
        .map_or(Duration::MAX, |b| b.max)
}

/// Pushes an error for every duration past its bound.
pub(crate) fn validate(cfg: &Config, errs: &mut Vec<ConfigError>) {
    let mut check = |key: String, generic: &str, v: Dur| {
        let max = max_of(generic);
        if v.0 > max {
            errs.push(ConfigError::new(
                key,
                v.to_string(),
                format!("must be at most {}", Dur(max)),
            ));
        }
    };
    let e = &cfg.engine;
    for (k, v) in [
        ("engine.allowed_lateness", e.allowed_lateness),
        ("engine.dedup_horizon", e.dedup_horizon),
        ("engine.max_future_skew", e.max_future_skew),
        ("engine.max_clock_jump", e.max_clock_jump),
        ("engine.silence_after", e.silence_after),
        ("engine.idle_timeout", e.idle_timeout),
        ("server.header_read_timeout", cfg.server.header_read_timeout),
        ("server.request_timeout", cfg.server.request_timeout),
        ("state.checkpoint_interval", cfg.state.checkpoint_interval),
        ("demo.duration", cfg.demo.duration),
        ("incidents.update_interval", cfg.incidents.update_interval),
        ("incidents.drain_timeout", cfg.incidents.drain_timeout),
        ("incidents.retention", cfg.incidents.retention),
    ] {
        check(k.to_string(), k, v);
    }
    if let Some(k) = &cfg.sources.kafka {
        for (key, v) in [
            ("sources.kafka.commit_interval", k.commit_interval),
            (
                "sources.kafka.idle_partition_timeout",
                k.idle_partition_timeout,
            ),
            ("sources.kafka.stall_timeout", k.stall_timeout),
            ("sources.kafka.shutdown_timeout", k.shutdown_timeout),
        ] {
            check(key.to_string(), key, v);
        }
    }
    for (i, r) in cfg.incidents.routes.iter().enumerate() {
        check(
            format!("incidents.routes[{i}].group_window"),
            "incidents.routes[].group_window",
            r.group_window,
        );
        check(
            format!("incidents.routes[{i}].group_interval"),
            "incidents.routes[].group_interval",
            r.group_interval,
        );
    }
    for (i, r) in cfg.receivers.iter().enumerate() {
        let d = &r.delivery;
        for (name, v) in [
            ("timeout", d.timeout),
            ("backoff_initial", d.backoff_initial),
            ("backoff_max", d.backoff_max),
            ("max_age", d.max_age),
            ("breaker_cooldown", d.breaker_cooldown),
            ("resend_interval", d.resend_interval),
        ] {
            check(
                format!("receivers[{i}].delivery.{name}"),
                &format!("receivers[].delivery.{name}"),
                v,
            );
        }
    }
    for (i, r) in cfg.rules.iter().enumerate() {
        let mut fields = vec![
            ("window", r.window),
            ("for", r.for_),
            ("keep_firing_for", r.keep_firing_for),
        ];
        if let Some(s) = r.slide {
            fields.push(("slide", s));
        }
        for (name, v) in fields {
            check(format!("rules[{i}].{name}"), &format!("rules[].{name}"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadError;

    fn errors(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, &std::collections::HashMap::new()) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(e)) => e.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn absurd_durations_are_errors_naming_their_key_and_bound() {
        let errs = errors(
            r#"
[sources.kafka]
brokers = "localhost:9092"
topics = [{ name = "events" }]
shutdown_timeout = "1000000000y"
[incidents]
retention = "400d"
[[receivers]]
name = "hook"
kind = "generic"
url = "http://localhost/h"
delivery = { timeout = "1h" }
"#,
        );
        for want in [
            // As written, not normalised ("365250000000d").
            "sources.kafka.shutdown_timeout = \"1000000000y\": must be at most 1h",
            "incidents.retention = \"400d\": must be at most 366d",
            "receivers[0].delivery.timeout = \"1h\": must be at most 10m",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want}: {errs:#?}"
            );
        }
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn every_default_and_the_example_are_within_bounds() {
        assert!(errors("").is_empty());
        assert!(Config::from_toml_str(
            crate::config::EXAMPLE_CONFIG,
            &std::collections::HashMap::new()
        )
        .is_ok());
        // Every bound is reachable from validate (no typo in a key).
        for b in BOUNDS {
            assert_ne!(max_of(b.key), Duration::MAX);
        }
    }
}
