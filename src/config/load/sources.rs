//! Validation of where events come from: `[demo]` (the embedded stream)
//! and `[sources]` (the Kafka source's topics, group, dead-letter topic,
//! tuning and scale-out section).

use super::super::*;

impl Config {
    /// `[demo]`: its start, duration, speed and order rate.
    pub(super) fn validate_demo(&self, errs: &mut Vec<ConfigError>) {
        let d = &self.demo;
        if crate::event::parse_rfc3339_ms(&d.start).is_none() {
            errs.push(ConfigError::new(
                "demo.start",
                &d.start,
                "not an RFC 3339 time",
            ));
        }
        if !(d.speed.is_finite() && d.speed > 0.0) {
            errs.push(ConfigError::new(
                "demo.speed",
                d.speed.to_string(),
                "must be positive",
            ));
        }
        if !(d.orders_per_minute.is_finite()
            && d.orders_per_minute > 0.0
            && d.orders_per_minute <= 1e6)
        {
            errs.push(ConfigError::new(
                "demo.orders_per_minute",
                d.orders_per_minute.to_string(),
                "must be in (0, 1000000]",
            ));
        }
        if d.duration.0.is_zero() {
            errs.push(ConfigError::new("demo.duration", "0", "must be positive"));
        }
    }

    pub(super) fn validate_sources(&self, errs: &mut Vec<ConfigError>) {
        if let Some(k) = &self.sources.kafka {
            if k.brokers.trim().is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.brokers",
                    "",
                    "must name at least one broker",
                ));
            }
            if k.group_id.is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.group_id",
                    "",
                    "must not be empty",
                ));
            }
            if k.topics.is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.topics",
                    "[]",
                    "must list at least one topic",
                ));
            }
            if let Some(why) = bad_topic_name(&k.dead_letter_topic) {
                errs.push(ConfigError::new(
                    "sources.kafka.dead_letter_topic",
                    &k.dead_letter_topic,
                    why,
                ));
            }
            for (i, t) in k.topics.iter().enumerate() {
                if t.name.is_empty() {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        "",
                        "must not be empty",
                    ));
                } else if let Some(why) =
                    bad_topic_name(&t.name).filter(|_| !t.name.starts_with('^'))
                {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        why,
                    ));
                }
                if !k.dead_letter_topic.is_empty() && t.name == k.dead_letter_topic {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "the dead-letter topic cannot also be consumed",
                    ));
                }
                if t.name.starts_with('^') {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "regex subscriptions are not supported: list each topic",
                    ));
                }
                if k.topics[..i].iter().any(|o| o.name == t.name) {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "duplicate topic",
                    ));
                }
                if t.default_type.as_deref() == Some("") {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].default_type"),
                        "",
                        "must not be empty (leave it out for no default)",
                    ));
                }
            }
            self.validate_kafka_tuning(k, errs);
            if let Some(so) = &k.scale_out {
                so.validate(self.engine.shards, errs);
            }
        }
    }

    fn validate_kafka_tuning(&self, k: &KafkaSourceConfig, errs: &mut Vec<ConfigError>) {
        for (key, d) in [
            ("commit_interval", k.commit_interval),
            ("idle_partition_timeout", k.idle_partition_timeout),
            ("stall_timeout", k.stall_timeout),
            ("shutdown_timeout", k.shutdown_timeout),
        ] {
            if d.0.is_zero() {
                errs.push(ConfigError::new(
                    format!("sources.kafka.{key}"),
                    "0",
                    "must be positive",
                ));
            }
        }
        for (key, n) in [
            ("max_batch_messages", k.max_batch_messages),
            ("channel_capacity", k.channel_capacity),
            ("dlq_max_in_flight", k.dlq_max_in_flight),
        ] {
            if n == 0 {
                errs.push(ConfigError::new(
                    format!("sources.kafka.{key}"),
                    "0",
                    "must be at least 1",
                ));
            }
        }
        // crisiswatch owns these: overriding them would break at-least-once delivery.
        for (key, why) in [
            ("bootstrap.servers", "set sources.kafka.brokers instead"),
            ("group.id", "set sources.kafka.group_id instead"),
            (
                "enable.auto.commit",
                "offsets are committed by crisiswatch after events are applied",
            ),
            (
                "enable.auto.offset.store",
                "offsets are committed by crisiswatch after events are applied",
            ),
        ] {
            if let Some(v) = k.properties.get(key) {
                errs.push(ConfigError::new(
                    format!("sources.kafka.properties.\"{key}\""),
                    v,
                    why,
                ));
            }
        }
    }
}

/// Why `name` cannot be a Kafka topic (its legal names: 1–249 of
/// `[a-zA-Z0-9._-]`, not `.` or `..`); `None` when it can, or is empty (not set).
fn bad_topic_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        None
    } else if name.len() > 249 {
        Some("a Kafka topic name is at most 249 characters")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are not Kafka topic names")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("a Kafka topic name has only letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}
