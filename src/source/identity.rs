//! Whether the broker still holds the messages a checkpoint was built from.
//!
//! A restored checkpoint makes `run` skip, when a partition is read again,
//! every offset whose effect is already in the restored engine
//! (`state::PartitionState::covers`). That is right only if the offsets
//! still name the same messages. A broker that lost its storage while
//! crisiswatch was down (its topics recreated, the group's offsets gone)
//! hands out *other* messages at those offsets, from 0: skipping them would
//! drop the first events of the new topic without a trace.
//!
//! So before consuming, the stage asks the broker, for each restored
//! partition, for the last message the checkpoint read (its offset and
//! fingerprint, `state::Last`), on a client of its own that joins no group
//! and commits nothing:
//!
//! * the topic is gone, or the partition ends before that offset (its high
//!   watermark, an end of partition or an offset out of range says so, and
//!   the message does not come within [`END_GRACE`]: some brokers report
//!   their end behind their last batch): **other** (its log was lost);
//! * the message there has another fingerprint: **other** (recreated);
//! * the same fingerprint: **same**;
//! * the offset was already deleted by retention (below the log start):
//!   **deleted** — nothing at or below it can be read again, so the skipping
//!   changes nothing;
//! * the broker does not show the message within the budget (counted from
//!   its first answer: a broker down or restarting is waited for, up to a
//!   bound, since nothing can be consumed meanwhile anyway), answers with
//!   another error, or the offset is a gap (compaction): **unknown** — the
//!   covered offsets are skipped as before (WARN, counted).
//!
//! Topics are checked at once, each on a client of its own; a topic the
//! broker calls unknown for [`MISSING_FOR`] is judged gone as a whole.
//!
//! A partition judged **other** skips nothing: every message it hands out is
//! processed as new (`run::durable`). Checkpoints written before the last
//! message was stored in them are not checked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::context::log_librdkafka;
use super::kafka::consumer_config;
use super::{fingerprint, Partition};
use crate::config::KafkaSourceConfig;

/// A restored partition's last message, to look for on the broker.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The partition (topic index).
    pub(crate) at: Partition,
    /// Its topic's name.
    pub(crate) topic: String,
    /// The message's offset.
    pub(crate) offset: i64,
    /// Its fingerprint ([`fingerprint`]).
    pub(crate) print: u32,
}

/// What the broker holds at a probe's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The same message: the checkpoint's offsets are this partition's.
    Same,
    /// Other messages (or none) at those offsets: why.
    Other(String),
    /// The offset was deleted by retention: nothing at or below it can be
    /// read again, so nothing the checkpoint covers is met again.
    Deleted(String),
    /// Cannot tell (no answer in time, a broker error): why.
    Unknown(String),
}

/// Routes the client's logs to `tracing`.
struct ProbeContext;

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "Kafka client error while checking the checkpoint's partitions.");
    }
}

impl ConsumerContext for ProbeContext {}

/// After an end of partition before the offset is reported (a high
/// watermark, an end of partition, an offset out of range), how long its
/// message may still come before the partition is judged to end before it:
/// some brokers report their end behind their last batch.
const END_GRACE: Duration = Duration::from_secs(3);

/// How long a partition the broker calls unknown is asked for again before
/// it is judged gone (a broker that has just started).
const MISSING_FOR: Duration = Duration::from_secs(3);

/// Looks for every probe's message on the broker, within `budget` from
/// when the broker first answers; a broker that does not answer is waited
/// for up to `unreachable_for` (nothing can be consumed meanwhile anyway).
pub(crate) fn check(
    k: &KafkaSourceConfig,
    probes: &[Probe],
    (budget, unreachable_for): (Duration, Duration),
) -> HashMap<Partition, Identity> {
    let limits = (budget, Instant::now() + unreachable_for);
    let mut topics: Vec<&str> = probes.iter().map(|p| p.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    // One client per topic (the ends of partition it reports name the
    // partition but not the topic), all topics at once.
    std::thread::scope(|scope| {
        let handles: Vec<_> = topics
            .iter()
            .map(|&topic| {
                let mine: Vec<&Probe> = probes.iter().filter(|p| p.topic == topic).collect();
                scope.spawn(move || {
                    let mut out = HashMap::new();
                    check_topic(k, topic, &mine, limits, &mut out);
                    out
                })
            })
            .collect();
        let mut out = HashMap::new();
        for (h, topic) in handles.into_iter().zip(&topics) {
            match h.join() {
                Ok(found) => out.extend(found),
                Err(_) => {
                    tracing::error!(topic, "The check of a restored topic's partitions failed.");
                    for p in probes.iter().filter(|p| p.topic == *topic) {
                        out.insert(p.at, Identity::Unknown("the check failed".to_string()));
                    }
                }
            }
        }
        out
    })
}

/// [`check`] for the probes of one topic.
fn check_topic(
    k: &KafkaSourceConfig,
    topic: &str,
    probes: &[&Probe],
    (budget, unreachable_until): (Duration, Instant),
    out: &mut HashMap<Partition, Identity>,
) {
    let mut cfg = k.clone();
    // librdkafka's consumer needs a group id; this one is never joined
    // (partitions are assigned) and never committed to.
    cfg.group_id = format!("{}.checkpoint-check", k.group_id);
    let mut c = consumer_config(&cfg);
    c.set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "0");
    let consumer: BaseConsumer<ProbeContext> = match c.create_with_context(ProbeContext) {
        Ok(c) => c,
        Err(e) => {
            for p in probes {
                out.insert(p.at, Identity::Unknown(format!("no Kafka client: {e}")));
            }
            return;
        }
    };
    // A broker down or restarting: waited for (its metadata asked every
    // half second), and the budget starts when it answers.
    loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(_) => break,
            Err(e) if Instant::now() < unreachable_until => {
                tracing::debug!(error = %e, topic, "Waiting for the broker to check the restored partitions.");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                for p in probes {
                    out.insert(
                        p.at,
                        Identity::Unknown(format!("the broker did not answer: {e}")),
                    );
                }
                return;
            }
        }
    }
    let deadline = Instant::now() + budget;
    let watermarks = |p: &Probe| {
        let left = deadline.saturating_duration_since(Instant::now());
        consumer.fetch_watermarks(topic, p.at.partition, left)
    };
    let missing = |e: &KafkaError| {
        matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::UnknownPartition
            )
        )
    };
    // A broker that has just started can answer "unknown" for a while:
    // asked again for MISSING_FOR before the partition is judged gone.
    let watermarks_settled = |p: &Probe| {
        let since = Instant::now();
        loop {
            match watermarks(p) {
                Err(e)
                    if missing(&e)
                        && since.elapsed() < MISSING_FOR
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                r => return r,
            }
        }
    };
    let mut assign = TopicPartitionList::new();
    // Partition → (probe, when an end before its offset was reported).
    let mut wanted: HashMap<i32, (&Probe, Option<Instant>)> = HashMap::new();
    // Set once the broker has said, for MISSING_FOR, that the topic is unknown.
    let mut topic_gone = false;
    for &p in probes {
        if topic_gone {
            out.insert(
                p.at,
                Identity::Other("the broker no longer has this topic".to_string()),
            );
            continue;
        }
        match watermarks_settled(p) {
            Ok((low, _)) if low > p.offset => {
                // Nothing at or below it can be read again: nothing to skip.
                out.insert(
                    p.at,
                    Identity::Deleted(format!(
                        "offset {} was deleted (the log starts at {low})",
                        p.offset
                    )),
                );
            }
            Ok((_, high)) => {
                // A high watermark at or before the offset says the partition
                // ends before it; but some brokers report it behind their
                // last batch, so the message still has `END_GRACE` to come.
                let end = (high <= p.offset).then(Instant::now);
                if assign
                    .add_partition_offset(topic, p.at.partition, Offset::Offset(p.offset))
                    .is_ok()
                {
                    wanted.insert(p.at.partition, (p, end));
                }
            }
            Err(e) if missing(&e) => {
                topic_gone = e.rdkafka_error_code() != Some(RDKafkaErrorCode::UnknownPartition);
                out.insert(
                    p.at,
                    Identity::Other("the broker no longer has this partition".to_string()),
                );
            }
            Err(e) => {
                out.insert(p.at, Identity::Unknown(format!("no watermarks: {e}")));
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    if let Err(e) = consumer.assign(&assign) {
        for (p, _) in wanted.values() {
            out.insert(p.at, Identity::Unknown(format!("cannot read it: {e}")));
        }
        return;
    }
    while !wanted.is_empty() {
        let now = Instant::now();
        // Ends reported long enough ago, and their message never came.
        wanted.retain(|_, (p, end)| match end {
            Some(t) if now.saturating_duration_since(*t) >= END_GRACE => {
                out.insert(
                    p.at,
                    Identity::Other(format!(
                        "the partition now ends before offset {}, which the checkpoint read",
                        p.offset
                    )),
                );
                false
            }
            _ => true,
        });
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() || wanted.is_empty() {
            break;
        }
        let Some(r) = consumer.poll(left.min(Duration::from_millis(100))) else {
            continue;
        };
        match r {
            Ok(m) => {
                let Some((p, _)) = wanted.remove(&m.partition()) else {
                    continue;
                };
                let id = if m.offset() != p.offset {
                    Identity::Unknown(format!(
                        "offset {} is not in the log (read {} instead)",
                        p.offset,
                        m.offset()
                    ))
                } else if fingerprint(m.payload().unwrap_or_default(), m.key()) == p.print {
                    Identity::Same
                } else {
                    Identity::Other(format!(
                        "the message at offset {} is not the one the checkpoint read",
                        p.offset
                    ))
                };
                out.insert(p.at, id);
            }
            Err(KafkaError::PartitionEOF(part)) => {
                if let Some((_, end)) = wanted.get_mut(&part) {
                    end.get_or_insert(now);
                }
            }
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
                ) =>
            {
                // The error does not name its partition: those whose offset
                // is past the end they report now.
                for (p, end) in wanted.values_mut() {
                    if matches!(watermarks(p), Ok((_, high)) if high <= p.offset) {
                        end.get_or_insert(now);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, topic, "Reading a checkpoint's last message."),
        }
    }
    for (p, _) in wanted.values() {
        out.insert(
            p.at,
            Identity::Unknown(format!("offset {} not read in time", p.offset)),
        );
    }
}
