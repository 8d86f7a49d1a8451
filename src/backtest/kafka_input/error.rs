//! The errors of a Kafka history read, each saying what to check.

use rdkafka::error::KafkaError;

/// Errors reading history from Kafka, each saying what to check.
#[derive(Debug, thiserror::Error)]
pub enum KafkaInputError {
    /// Neither `[sources.kafka]` nor `--bootstrap` names brokers.
    #[error("--kafka-topic needs brokers: add a [sources.kafka] section to the configuration or pass --bootstrap HOST:PORT")]
    NoBrokers,
    /// An offset argument does not parse.
    #[error("{flag} {value:?}: {why}")]
    BadOffset {
        /// `--from-offset` or `--to-offset`.
        flag: &'static str,
        /// The argument.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// Other arguments that do not go together.
    #[error("{0}")]
    Usage(String),
    // librdkafka's errors are in the messages, not chained as sources: the
    // messages put advice after them, and `main` prints the chain too.
    /// librdkafka refused the configuration.
    #[error("cannot create the Kafka consumer: {0} (check [sources.kafka.properties])")]
    Client(Box<KafkaError>),
    /// The brokers did not answer a metadata request in time.
    #[error("cannot read the metadata of topic {topic} from {at}: {error}{last} (check --bootstrap / sources.kafka.brokers and the connection properties)")]
    Metadata {
        /// The topic.
        topic: String,
        /// The bootstrap servers and the bound waited: `B within 5s`.
        at: String,
        /// librdkafka's error.
        error: Box<KafkaError>,
        /// The last client error seen, if any (`; last client error: …`).
        last: String,
    },
    /// The topic does not exist (or has no partitions).
    #[error("topic {topic} does not exist on {brokers}: {why}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
        /// What the broker said.
        why: String,
    },
    /// A high watermark could not be read.
    #[error("cannot read the offsets of {topic}[{partition}] within {timeout}: {error}{last}")]
    Watermarks {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The bound waited.
        timeout: String,
        /// librdkafka's error.
        error: Box<KafkaError>,
        /// The last client error seen, if any.
        last: String,
    },
    /// Assigning the partitions failed.
    #[error("cannot assign the partitions of {topic}: {error}")]
    Assign {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        error: Box<KafkaError>,
    },
    /// A partition the merge waits on made no progress within the timeout.
    #[error("Kafka stalled: {topic}[{partition}] delivered nothing for {timeout} at offset {offset}{hint}{last}; raise --kafka-timeout if the broker is just slow")]
    Stalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset waited for.
        offset: i64,
        /// The bound waited.
        timeout: String,
        /// The likely cause: ` (past the end: …)` or ` (the broker …)`.
        hint: String,
        /// The last client error seen, if any.
        last: String,
    },
    /// `--from-offset` is beyond a partition's end.
    #[error("--from-offset {offset} is past the end of {topic}[{partition}]: nothing came from there within {waited}, and the broker reports the partition's high watermark (the next offset to be written) as {high}")]
    PastEnd {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The start asked for.
        offset: i64,
        /// The partition's high watermark, as the broker reports it.
        high: i64,
        /// How long nothing came.
        waited: String,
    },
    /// The broker refused an offset as outside the log.
    #[error("an offset of {topic} is out of range ({error}): check --from-offset against the partition's log (beyond its end, or deleted by retention during the read)")]
    OutOfRange {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        error: Box<KafkaError>,
    },
    /// Any other consumer error the read cannot continue after.
    #[error("Kafka consumer error on {topic}: {error}")]
    Consume {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        error: Box<KafkaError>,
    },
}
