//! Which offsets a history read covers: the `--from/--to` bounds against the
//! broker's watermarks, and the start of a time range.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::*;

/// Per partition of `topic`: (partition, first offset, bound, high watermark).
pub(super) type Resolved = Vec<(i32, i64, Option<i64>, i64)>;

/// Finds the partitions of `topic` and where to start and stop in each.
pub(super) fn resolve(
    history: &KafkaHistory,
    consumer: &HistoryConsumer,
    topic: &str,
) -> Result<Resolved, KafkaInputError> {
    let range = &history.range;
    let brokers = &history.source.brokers;
    let md = consumer
        .fetch_metadata(Some(topic), range.timeout)
        .map_err(|source| KafkaInputError::Metadata {
            topic: topic.to_string(),
            at: format!("{brokers} within {}", human(range.timeout)),
            error: Box::new(source),
            last: consumer.context().last(),
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaInputError::UnknownTopic {
            topic: topic.to_string(),
            brokers: brokers.clone(),
            why: "not in the metadata".into(),
        });
    };
    if let Some(err) = t.error() {
        return Err(KafkaInputError::UnknownTopic {
            topic: topic.to_string(),
            brokers: brokers.clone(),
            why: RDKafkaErrorCode::from(err).to_string(),
        });
    }
    let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        return Err(KafkaInputError::UnknownTopic {
            topic: topic.to_string(),
            brokers: brokers.clone(),
            why: "no partitions".into(),
        });
    }
    for &p in range
        .from
        .by_partition
        .keys()
        .chain(range.to.by_partition.keys())
    {
        if !partitions.contains(&p) {
            return Err(KafkaInputError::Usage(format!(
                "topic {topic} has no partition {p} (it has {})",
                partitions.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, range.timeout)
            .map_err(|source| KafkaInputError::Watermarks {
                topic: topic.to_string(),
                partition: p,
                timeout: human(range.timeout),
                error: Box::new(source),
                last: consumer.context().last(),
            })?;
        let to = range.to.get(p);
        let start = start_offset(topic, p, range.from.get(p), to, low);
        out.push((p, start, to, high));
    }
    if let Some(from_ms) = range.from_ms {
        skip_to_time(consumer, topic, from_ms, range.timeout, &mut out);
    }
    tracing::debug!(topic, ranges = ?out, "Resolved the Kafka range (partition, start, to, high watermark).");
    Ok(out)
}

/// Where partition `p` starts: `--from-offset` (`from`; `None`: the log start
/// `low`), moved up to the log start when it is before it (retention deleted
/// those messages), with a WARN saying how many offsets that skips. (A start
/// after its `--to-offset` was refused with the arguments; a start beyond the
/// end is found while reading: the high watermark may lag.)
pub(super) fn start_offset(
    topic: &str,
    p: i32,
    from: Option<i64>,
    to: Option<i64>,
    low: i64,
) -> i64 {
    match from {
        None => low,
        Some(o) if o < low => {
            let skipped = low - o;
            tracing::warn!(
                topic,
                partition = p,
                from = o,
                log_start = low,
                skipped,
                "--from-offset is before the log start (deleted by retention?): reading from the log start, {skipped} offsets skipped."
            );
            if to.is_some_and(|to| to <= low) {
                tracing::warn!(
                    topic,
                    partition = p,
                    to,
                    log_start = low,
                    "The whole offset range was deleted: nothing to read in this partition."
                );
            }
            low
        }
        Some(o) => o,
    }
}

/// The speed-up for `--from-time`: start each partition at the broker's first
/// offset at or after the time when the answer is plausible: ahead of the
/// start (itself at or after the log start) and not beyond the high
/// watermark. Any other answer is ignored: the partition is scanned from its
/// start. Correctness does not depend on it: every message is still checked.
pub(super) fn skip_to_time(
    consumer: &HistoryConsumer,
    topic: &str,
    from_ms: i64,
    timeout: Duration,
    out: &mut Resolved,
) {
    let mut tpl = TopicPartitionList::new();
    for (p, ..) in out.iter() {
        if tpl
            .add_partition_offset(topic, *p, Offset::Offset(from_ms))
            .is_err()
        {
            return;
        }
    }
    let answer = match consumer.offsets_for_times(tpl, timeout) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(topic, error = %e, "The broker did not look up offsets by time; reading from the start offsets.");
            return;
        }
    };
    for e in answer.elements() {
        let Some(r) = out.iter_mut().find(|r| r.0 == e.partition()) else {
            continue;
        };
        let Some(found) = e
            .error()
            .ok()
            .and_then(|()| time_start(e.offset(), r.1, r.3))
        else {
            tracing::debug!(
                topic,
                partition = r.0,
                answer = ?e.offset(),
                start = r.1,
                high = r.3,
                "The broker's offset for --from-time is not ahead of the start inside the log; scanning from the start."
            );
            continue;
        };
        tracing::debug!(
            topic,
            partition = r.0,
            from = r.1,
            to = found,
            "Skipping to the offset of --from-time."
        );
        r.1 = found;
    }
}

/// A broker's answer to an offset lookup by time, when it is plausible: an
/// offset after `start` and not beyond the high watermark `high` (`End`: no
/// message at or after the time, so only what arrives later can qualify).
pub(super) fn time_start(answer: Offset, start: i64, high: i64) -> Option<i64> {
    let o = match answer {
        Offset::Offset(o) => o,
        Offset::End => high,
        _ => return None,
    };
    (o > start && o <= high).then_some(o)
}
