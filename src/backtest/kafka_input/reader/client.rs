//! The librdkafka client of a history read: its context (logs, last error) and the consumer.

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::config::KafkaSourceConfig;
use crate::source::context::log_librdkafka;
use crate::source::kafka::consumer_config;

use super::*;

/// Routes librdkafka's logs to `tracing` and keeps its last error for messages.
#[derive(Default)]
pub(super) struct HistoryContext {
    pub(super) last_error: Mutex<Option<String>>,
}

impl HistoryContext {
    /// `; last client error: …`, or nothing.
    pub(super) fn last(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| format!("; last client error: {e}"))
            .unwrap_or_default()
    }
}

impl ClientContext for HistoryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // rdkafka passes every consumer error event here, partition EOF
        // included: an end reached is the read's progress, not an error to
        // quote when another partition stalls.
        if matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
        ) {
            return;
        }
        tracing::debug!(error = %error, reason, "Kafka client error.");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }
}

impl ConsumerContext for HistoryContext {}

pub(super) type HistoryConsumer = BaseConsumer<HistoryContext>;

/// The consumer settings of a history read: the live consumer's
/// ([`consumer_config`]: defaults, the pass-through properties, the brokers),
/// then what a bounded read needs, whatever the properties say.
pub(super) fn create_consumer(
    source: &KafkaSourceConfig,
) -> Result<HistoryConsumer, KafkaInputError> {
    let mut k = source.clone();
    // A group nobody else uses: required by librdkafka's consumer, never joined
    // (partitions are assigned) and never committed to.
    k.group_id = format!(
        "crisiswatch-backtest-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let mut c = consumer_config(&k);
    c.set("enable.partition.eof", "true")
        // An offset outside the log is an error, not a silent jump.
        .set("auto.offset.reset", "error")
        .set("statistics.interval.ms", "0");
    c.create_with_context(HistoryContext::default())
        .map_err(|e| KafkaInputError::Client(Box::new(e)))
}
