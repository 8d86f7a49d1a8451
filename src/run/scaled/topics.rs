//! The internal topics of a scaled group: their names, created on start
//! when missing, refused when they exist with another partition count; and
//! the input partitions every owner waits to hear from.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::ScaledError;
use crate::config::{KafkaSourceConfig, ScaleOutConfig};
use crate::repartition::Source;

/// How long metadata and topic creation wait for the broker.
const ADMIN_WAIT: Duration = Duration::from_secs(30);

/// The internal topics' names and partition counts.
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    /// Events by shard partition (`<prefix>.shards`).
    pub(crate) shards: String,
    /// Latest checkpoint per shard partition (compacted).
    pub(crate) shards_changelog: String,
    /// Alert transitions by incident partition.
    pub(crate) transitions: String,
    /// Latest checkpoint per incident partition (compacted).
    pub(crate) incidents_changelog: String,
    /// Shard partitions.
    pub(crate) shard_partitions: u32,
    /// Operator actions shared by every instance (one partition, compacted;
    /// `controls.rs`).
    pub(crate) controls: String,
    /// Incident partitions.
    pub(crate) incident_partitions: u32,
    /// Consumer group of the shard owners.
    pub(crate) owners_group: String,
    /// Consumer group of the incident owners.
    pub(crate) incidents_group: String,
}

impl Topics {
    /// The names for the source's group.
    pub(crate) fn new(k: &KafkaSourceConfig, so: &ScaleOutConfig) -> Self {
        let prefix = so.prefix(&k.group_id);
        Topics {
            shards: format!("{prefix}.shards"),
            shards_changelog: format!("{prefix}.shards-changelog"),
            transitions: format!("{prefix}.transitions"),
            incidents_changelog: format!("{prefix}.incidents-changelog"),
            controls: format!("{prefix}.controls"),
            shard_partitions: so.shard_partitions,
            incident_partitions: so.incident_partitions,
            owners_group: format!("{}.owners", k.group_id),
            incidents_group: format!("{}.incidents", k.group_id),
        }
    }

    /// Creates the topics that do not exist; refuses existing ones with
    /// another partition count.
    pub(crate) async fn ensure(
        &self,
        k: &KafkaSourceConfig,
        so: &ScaleOutConfig,
    ) -> Result<(), ScaledError> {
        let mut c = ClientConfig::new();
        for (key, value) in k.producer_properties() {
            c.set(key, value);
        }
        c.set("bootstrap.servers", &k.brokers);
        let admin: AdminClient<DefaultClientContext> = c
            .create()
            .map_err(|e| ScaledError::Client("admin client", e))?;
        let wanted = [
            (&self.shards, self.shard_partitions, false),
            (&self.shards_changelog, self.shard_partitions, true),
            (&self.transitions, self.incident_partitions, false),
            (&self.incidents_changelog, self.incident_partitions, true),
            (&self.controls, 1, true),
        ];
        let new: Vec<NewTopic<'_>> = wanted
            .iter()
            .map(|(name, n, compact)| {
                let rf = TopicReplication::Fixed(so.replication_factor);
                let t = NewTopic::new(name, *n as i32, rf);
                if *compact {
                    t.set("cleanup.policy", "compact")
                } else {
                    t
                }
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_WAIT));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| ScaledError::Client("topic creation", e))?;
        for r in results {
            match r {
                Ok(name) => tracing::info!(topic = %name, "Internal topic created."),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(ScaledError::Topic(format!(
                        "cannot create internal topic {name}: {code}"
                    )))
                }
            }
        }
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| ScaledError::Client("metadata client", e))?;
        for (name, n, _) in wanted {
            let found = partitions_of(&consumer, name)?;
            if found != n {
                return Err(ScaledError::Topic(format!(
                    "internal topic {name} has {found} partitions, the configuration says {n} \
                     (sources.kafka.scale_out): the shards of a running group cannot be re-split; \
                     keep the old count or use a new topic_prefix and group"
                )));
            }
        }
        Ok(())
    }
}

/// Every partition of the input topics (in configuration order): an owner's
/// clock waits for each of them.
pub(crate) fn input_sources(k: &KafkaSourceConfig) -> Result<Vec<Source>, ScaledError> {
    let mut c = ClientConfig::new();
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &k.brokers);
    let consumer: BaseConsumer = c
        .create()
        .map_err(|e| ScaledError::Client("metadata client", e))?;
    let mut out = Vec::new();
    for (i, t) in k.topics.iter().enumerate() {
        let n = partitions_of(&consumer, &t.name)?;
        if n == 0 {
            return Err(ScaledError::Topic(format!(
                "input topic {} does not exist (scale-out needs its partitions at start)",
                t.name
            )));
        }
        for p in 0..n {
            out.push(Source {
                topic: i as u16,
                partition: p as i32,
            });
        }
    }
    Ok(out)
}

/// The partition count of `topic` (0: it does not exist).
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<u32, ScaledError> {
    let md = consumer
        .fetch_metadata(Some(topic), ADMIN_WAIT)
        .map_err(|e| ScaledError::Client("metadata", e))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len() as u32))
}
