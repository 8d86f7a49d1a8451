//! Prometheus metrics of the Kafka consumer, registered into the shared registry.
//!
//! Names follow `crisiswatch_<name>_<unit>` with `_total` on counters. Label
//! values come from small fixed sets: configured topic names, partition
//! numbers of those topics, invalid reasons, rebalance kinds. The hot loops
//! update them once per batch, not per message.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::event::InvalidReason;
use crate::metrics::{counter_vec, MetricsError};

/// Every consumer metric.
#[derive(Debug, Clone)]
pub(crate) struct SourceMetrics {
    /// Messages received, by topic.
    pub(crate) messages: IntCounterVec,
    /// Payload bytes received, by topic.
    pub(crate) bytes: IntCounterVec,
    /// Messages through the engine stage (applied or dead-lettered), by topic.
    pub(crate) processed: IntCounterVec,
    /// Invalid messages by topic and reason.
    pub(crate) invalid: IntCounterVec,
    /// Valid events late for every rule that selected them, by topic.
    pub(crate) late: IntCounterVec,
    /// Dead letters acknowledged by the broker, by reason.
    pub(crate) dlq_produced: IntCounterVec,
    /// Failed attempts to produce a dead letter (each is retried).
    pub(crate) dlq_failures: IntCounter,
    /// Approximate lag per partition (high watermark − next offset to consume).
    pub(crate) lag: IntGaugeVec,
    /// Offset commits that succeeded.
    pub(crate) commits: IntCounter,
    /// Offset commits that failed.
    pub(crate) commit_failures: IntCounter,
    /// Rebalances, by kind (`assign`, `revoke`).
    pub(crate) rebalances: IntCounterVec,
    /// Partitions currently assigned to this instance.
    pub(crate) assigned: IntGauge,
    /// Assigned partitions idle (not holding the watermark back).
    pub(crate) idle_partitions: IntGauge,
    /// 1 while the consumer is stalled.
    pub(crate) stalled: IntGauge,
    /// Valid messages with a value in another form than a selector names it.
    pub(crate) value_variants: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl SourceMetrics {
    /// Registers the consumer metrics, with a zero series for every topic and reason.
    pub(crate) fn register(r: &Registry, topics: &[String]) -> Result<Self, MetricsError> {
        let lag = IntGaugeVec::new(
            Opts::new(
                "crisiswatch_kafka_consumer_lag_messages",
                "Messages behind the partition's high watermark (approximate), per assigned partition.",
            ),
            &["topic", "partition"],
        )?;
        r.register(Box::new(lag.clone()))?;
        let m = SourceMetrics {
            messages: counter_vec(r, "crisiswatch_kafka_messages_total", "Kafka messages received, by topic.", &["topic"])?,
            bytes: counter_vec(r, "crisiswatch_kafka_message_bytes_total", "Kafka message payload bytes received, by topic.", &["topic"])?,
            processed: counter_vec(r, "crisiswatch_kafka_processed_messages_total", "Kafka messages through the engine stage (applied, or invalid and counted), by topic.", &["topic"])?,
            invalid: counter_vec(r, "crisiswatch_kafka_invalid_messages_total", "Invalid Kafka messages, by topic and reason.", &["topic", "reason"])?,
            late: counter_vec(r, "crisiswatch_kafka_late_messages_total", "Valid events from Kafka that were late for every rule that selected them, by topic.", &["topic"])?,
            dlq_produced: counter_vec(r, "crisiswatch_kafka_dlq_produced_total", "Invalid messages written to the dead-letter topic and acknowledged, by reason.", &["reason"])?,
            dlq_failures: counter(r, "crisiswatch_kafka_dlq_failures_total", "Failed attempts to produce a dead letter (each is retried; one too large for the topic, written cut, is no failure).")?,
            lag,
            commits: counter(r, "crisiswatch_kafka_commits_total", "Offset commits that succeeded.")?,
            commit_failures: counter(r, "crisiswatch_kafka_commit_failures_total", "Offset commits that failed (retried at the next commit).")?,
            rebalances: counter_vec(r, "crisiswatch_kafka_rebalances_total", "Consumer group rebalances seen by this instance, by kind (assign, revoke).", &["kind"])?,
            assigned: gauge(r, "crisiswatch_kafka_assigned_partitions", "Partitions assigned to this instance.")?,
            idle_partitions: gauge(r, "crisiswatch_kafka_idle_partitions", "Assigned partitions idle for longer than idle_partition_timeout (not holding the watermark back).")?,
            stalled: gauge(r, "crisiswatch_kafka_consumer_stalled", "1 while the consumer is stalled (behind or cut off, without progress for stall_timeout).")?,
            value_variants: counter_vec(r, "crisiswatch_kafka_value_variant_messages_total", "Valid messages whose type or a selected attribute is written in another form than a rule's selector names it (letter case, spaces around it, word separators), so that rule does not select them; by field and the value the selector names (the form seen is logged).", &["field", "named"])?,
        };
        for t in topics {
            for c in [&m.messages, &m.bytes, &m.processed, &m.late] {
                c.with_label_values(&[t.as_str()]);
            }
            for reason in InvalidReason::ALL {
                m.invalid.with_label_values(&[t.as_str(), reason.as_str()]);
            }
        }
        for reason in InvalidReason::ALL {
            m.dlq_produced.with_label_values(&[reason.as_str()]);
        }
        for kind in ["assign", "revoke"] {
            m.rebalances.with_label_values(&[kind]);
        }
        Ok(m)
    }
}
