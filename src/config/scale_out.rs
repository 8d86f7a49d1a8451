//! `[sources.kafka.scale_out]`: several `crisiswatch run` instances (and the
//! cores of one) share the engine's state shards through internal Kafka
//! topics, and still fire exactly the incidents one instance fires (see
//! `src/run/scaled.rs` and README "Running several instances").

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur};

/// Scale-out across instances. Absent (the default): one instance holds
/// every window, no internal topic is used.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOutConfig {
    /// Partitions of the shard topic: the most instances that share the
    /// windows. Fixed once the internal topics exist (a different value is
    /// refused at start).
    #[serde(default = "default_shard_partitions")]
    pub shard_partitions: u32,
    /// Partitions of the transition topic: the most instances that share
    /// the incident lifecycle. Fixed once the topics exist.
    #[serde(default = "default_incident_partitions")]
    pub incident_partitions: u32,
    /// Prefix of the internal topics' names; empty (the default):
    /// `crisiswatch-<group_id>`. The topics are `<prefix>.shards`,
    /// `<prefix>.shards-changelog`, `<prefix>.transitions` and
    /// `<prefix>.incidents-changelog`.
    #[serde(default)]
    pub topic_prefix: String,
    /// Replication factor of the internal topics crisiswatch creates; `-1`
    /// (the default) takes the broker's `default.replication.factor`.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// How often each owned internal partition's state is written to its
    /// changelog topic (also when the partition is revoked and at a stop).
    /// A moved partition re-reads at most this much of the shard topic.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Dur,
    /// How long a close request published for an incident that no running
    /// instance holds waits for a holder before the instance that received
    /// it answers `not_open` (the incident resolved meanwhile, or only a
    /// stopped instance held it).
    #[serde(default = "default_close_wait")]
    pub close_wait: Dur,
}

/// 8: up to 8 instances share the windows; more partitions cost more
/// messages per event (an event goes once to each partition its slices
/// live in).
fn default_shard_partitions() -> u32 {
    8
}
/// 4: incidents are few; 4 instances share them.
fn default_incident_partitions() -> u32 {
    4
}
fn default_replication_factor() -> i32 {
    -1
}
/// 10 seconds, as `state.checkpoint_interval`.
fn default_checkpoint_interval() -> Dur {
    Dur::secs(10)
}

/// A minute: a running instance publishes what it holds within a second
/// of a change, and a moved incident partition's new owner lists it within
/// a group rebalance.
fn default_close_wait() -> Dur {
    Dur::secs(60)
}

impl Default for ScaleOutConfig {
    fn default() -> Self {
        ScaleOutConfig {
            shard_partitions: default_shard_partitions(),
            incident_partitions: default_incident_partitions(),
            topic_prefix: String::new(),
            replication_factor: default_replication_factor(),
            checkpoint_interval: default_checkpoint_interval(),
            close_wait: default_close_wait(),
        }
    }
}

/// The most internal partitions of either kind.
const MAX_PARTITIONS: u32 = 1024;

impl ScaleOutConfig {
    /// The internal topics' prefix for consumer group `group_id`.
    pub fn prefix(&self, group_id: &str) -> String {
        if self.topic_prefix.is_empty() {
            format!("crisiswatch-{group_id}")
        } else {
            self.topic_prefix.clone()
        }
    }

    /// Checks the section (`shards`: `engine.shards`).
    pub(crate) fn validate(&self, shards: u32, errs: &mut Vec<ConfigError>) {
        let path = "sources.kafka.scale_out";
        for (key, n) in [
            ("shard_partitions", self.shard_partitions),
            ("incident_partitions", self.incident_partitions),
        ] {
            if n == 0 || n > MAX_PARTITIONS {
                errs.push(ConfigError::new(
                    format!("{path}.{key}"),
                    n.to_string(),
                    format!("must be between 1 and {MAX_PARTITIONS}"),
                ));
            }
        }
        if self.shard_partitions > shards {
            errs.push(ConfigError::new(
                format!("{path}.shard_partitions"),
                self.shard_partitions.to_string(),
                format!("must not exceed engine.shards ({shards}): a partition without a shard holds no window"),
            ));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            errs.push(ConfigError::new(
                format!("{path}.replication_factor"),
                self.replication_factor.to_string(),
                "must be at least 1, or -1 for the broker's default",
            ));
        }
        if self.checkpoint_interval.0.is_zero() {
            errs.push(ConfigError::new(
                format!("{path}.checkpoint_interval"),
                "0",
                "must be positive: a moved partition restores from its last checkpoint",
            ));
        }
        if self.close_wait.0.is_zero() || self.close_wait.0 > std::time::Duration::from_secs(3600) {
            errs.push(ConfigError::new(
                format!("{path}.close_wait"),
                self.close_wait.to_string(),
                "must be between 1ms and 1h: a close request nobody holds is answered not_open after this long",
            ));
        }
        let bad = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if self.topic_prefix.len() > 200 || self.topic_prefix.contains(bad) {
            errs.push(ConfigError::new(
                format!("{path}.topic_prefix"),
                self.topic_prefix.clone(),
                "a Kafka topic name prefix: at most 200 of [a-zA-Z0-9._-]",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(section: &str) -> String {
        let text = format!(
            "[sources.kafka]\nbrokers = \"b:9092\"\ntopics = [{{ name = \"t\" }}]\n[sources.kafka.scale_out]\n{section}\n"
        );
        match Config::from_toml_str(&text, &std::collections::HashMap::new()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_hold_and_bad_values_are_named() {
        assert_eq!(errors(""), "");
        let text = "[sources.kafka]\nbrokers = \"b\"\ntopics = [{ name = \"t\" }]\ngroup_id = \"g\"\n[sources.kafka.scale_out]\n";
        let cfg = Config::from_toml_str(text, &std::collections::HashMap::new()).unwrap();
        let so = cfg.sources.kafka.unwrap().scale_out.unwrap();
        assert_eq!((so.shard_partitions, so.incident_partitions), (8, 4));
        assert_eq!(so.prefix("g"), "crisiswatch-g");
        for (section, path) in [
            (
                "shard_partitions = 0",
                "sources.kafka.scale_out.shard_partitions",
            ),
            ("shard_partitions = 65", "must not exceed engine.shards"),
            (
                "incident_partitions = 5000",
                "sources.kafka.scale_out.incident_partitions",
            ),
            (
                "replication_factor = 0",
                "sources.kafka.scale_out.replication_factor",
            ),
            (
                "checkpoint_interval = \"0\"",
                "sources.kafka.scale_out.checkpoint_interval",
            ),
            (
                "topic_prefix = \"a b\"",
                "sources.kafka.scale_out.topic_prefix",
            ),
            ("shards = 3", "shards"),
        ] {
            let e = errors(section);
            assert!(e.contains(path), "{section}: {e}");
        }
    }
}
