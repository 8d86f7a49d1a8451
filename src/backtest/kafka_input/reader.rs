//! The read itself: one assign-only consumer per topic, partitions merged by
//! event time, each partition ended by its offset bound or by the broker's
//! end of partition (see the parent module for the rules and why).
//!
//! ```text
//!  consumer per topic ─► poll ─► Part (select by offset / timestamp, decode the
//!                                 │     event time with the topic's default type)
//!                                 ▼
//!                    pending per partition ─► heap of heads by event time ─► f(line, default type)
//! ```
//!
//! The merge hands out a line only when every unfinished partition has one
//! buffered (or has ended); a partition the merge waits on is polled, the
//! others are paused once they buffer [`MAX_PENDING`] messages.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::backtest::input::{InputStats, LineRef};
use crate::config::KafkaSourceConfig;
use crate::source::context::log_librdkafka;
use crate::source::kafka::consumer_config;

use super::{
    event_time, KafkaHistory, KafkaInputError, ReadRange, TypedLineFn, MAX_PENDING,
    MAX_PENDING_BYTES, PAST_END_GRACE, TAIL_SETTLE,
};

/// Ends reached (or settling waits) while the high watermark kept moving (a
/// topic written faster than it is read) before a partition stops anyway.
const MAX_TAIL_ROUNDS: u32 = 3;
/// Longest single wait for messages; stalls and settling are checked between waits.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Messages taken from one consumer per poll round before merging.
const POLL_BATCH: usize = 5_000;
/// How long the diagnosis of a stall may ask the broker.
const HINT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    // The template is a constant known to parse; fall back to the default style anyway.
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:40}] {human_pos}/{human_len} messages ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

// === librdkafka context ===

/// Routes librdkafka's logs to `tracing` and keeps its last error for messages.
#[derive(Default)]
struct HistoryContext {
    last_error: Mutex<Option<String>>,
}

impl HistoryContext {
    /// `; last client error: …`, or nothing.
    fn last(&self) -> String {
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

type HistoryConsumer = BaseConsumer<HistoryContext>;

/// The consumer settings of a history read: the live consumer's
/// ([`consumer_config`]: defaults, the pass-through properties, the brokers),
/// then what a bounded read needs, whatever the properties say.
fn create_consumer(source: &KafkaSourceConfig) -> Result<HistoryConsumer, KafkaInputError> {
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

// === The reader ===

/// One message waiting to be merged.
struct Pending {
    /// Merge key: the partition's newest event time including this message.
    key: i64,
    offset: i64,
    line: Vec<u8>,
}

/// One partition being read.
struct Part {
    /// Index of the topic (and its consumer).
    topic: usize,
    partition: i32,
    /// First offset read.
    start: i64,
    /// First offset not read, when bounded.
    to: Option<i64>,
    /// High watermark when the read started (the progress bar's end); a
    /// `start` above it may be past the end (see [`PAST_END_GRACE`]).
    high: i64,
    /// Offset after the last message consumed.
    next: i64,
    /// Newest event time delivered (the merge position).
    newest: i64,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    paused: bool,
    /// Where reading ended, once it has.
    end: Option<i64>,
    /// Reached the end while the high watermark was above the position.
    tail: Option<Tail>,
    tail_rounds: u32,
    last_activity: Instant,
    read: u64,
    skipped: u64,
    no_timestamp: u64,
}

#[derive(Debug, Clone, Copy)]
struct Tail {
    high: i64,
    since: Instant,
}

impl Part {
    /// Still to be read, with nothing buffered: the merge must wait for it.
    fn starved(&self) -> bool {
        self.end.is_none() && self.pending.is_empty()
    }

    fn finished(&self) -> bool {
        self.end.is_some() && self.pending.is_empty()
    }
}

struct TopicReader {
    name: String,
    default_type: Option<String>,
    /// Shared so a polled message (which borrows it) does not borrow the reader.
    consumer: Arc<HistoryConsumer>,
    /// Partition number → index in `Reader::parts`.
    index: HashMap<i32, usize>,
}

pub(super) struct Reader<'a> {
    history: &'a KafkaHistory,
    topics: Vec<TopicReader>,
    parts: Vec<Part>,
    /// Heads of the partitions with pending messages: (key, part index).
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    stats: InputStats,
}

impl<'a> Reader<'a> {
    /// Connects, resolves each partition's range (or takes `cached`), assigns.
    pub(super) fn open(
        history: &'a KafkaHistory,
        cached: Option<&[ReadRange]>,
    ) -> Result<Self, KafkaInputError> {
        let mut reader = Reader {
            history,
            topics: Vec::new(),
            parts: Vec::new(),
            heads: BinaryHeap::new(),
            stats: InputStats::default(),
        };
        for (t, (name, default_type)) in history.topics.iter().enumerate() {
            let consumer = create_consumer(&history.source)?;
            let ranges = match cached {
                Some(c) => c
                    .iter()
                    .filter(|r| r.topic == t)
                    .map(|r| (r.partition, r.start, Some(r.end), r.end))
                    .collect(),
                None => resolve(history, &consumer, name)?,
            };
            let mut tpl = TopicPartitionList::new();
            let mut index = HashMap::new();
            let now = Instant::now();
            for (partition, start, to, high) in ranges {
                let empty = to.is_some_and(|to| to <= start);
                if !empty {
                    tpl.add_partition_offset(name, partition, Offset::Offset(start))
                        .map_err(|source| KafkaInputError::Assign {
                            topic: name.clone(),
                            error: Box::new(source),
                        })?;
                }
                index.insert(partition, reader.parts.len());
                reader.parts.push(Part {
                    topic: t,
                    partition,
                    start,
                    to,
                    high,
                    next: start,
                    newest: i64::MIN,
                    pending: VecDeque::new(),
                    pending_bytes: 0,
                    paused: false,
                    end: empty.then_some(start),
                    tail: None,
                    tail_rounds: 0,
                    last_activity: now,
                    read: 0,
                    skipped: 0,
                    no_timestamp: 0,
                });
            }
            consumer
                .assign(&tpl)
                .map_err(|source| KafkaInputError::Assign {
                    topic: name.clone(),
                    error: Box::new(source),
                })?;
            reader.topics.push(TopicReader {
                name: name.clone(),
                default_type: default_type.clone(),
                consumer: Arc::new(consumer),
                index,
            });
        }
        reader.stats.files = reader.parts.len();
        Ok(reader)
    }

    /// Messages in the offset ranges, as far as known at the start.
    pub(super) fn total(&self) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.end.is_none())
            .map(|p| (p.to.unwrap_or(p.high) - p.start).max(0) as u64)
            .sum()
    }

    /// The ranges read, for later passes.
    pub(super) fn ranges(&self) -> Vec<ReadRange> {
        self.parts
            .iter()
            .map(|p| ReadRange {
                topic: p.topic,
                partition: p.partition,
                start: p.start,
                end: p.end.unwrap_or(p.next),
            })
            .collect()
    }

    pub(super) fn log_summary(&self, took: Duration) {
        for p in &self.parts {
            tracing::info!(
                topic = %self.topics[p.topic].name,
                partition = p.partition,
                from = p.start,
                to = p.end.unwrap_or(p.next),
                read = p.read,
                outside_time_range = p.skipped,
                without_timestamp = p.no_timestamp,
                "Read a Kafka partition."
            );
            if p.no_timestamp > 0 {
                tracing::warn!(
                    topic = %self.topics[p.topic].name,
                    partition = p.partition,
                    messages = p.no_timestamp,
                    "Messages without a Kafka timestamp were skipped: a time range cannot place them."
                );
            }
        }
        tracing::info!(
            partitions = self.parts.len(),
            lines = self.stats.lines,
            bytes = self.stats.bytes,
            seconds = took.as_secs_f64(),
            "Kafka history read."
        );
    }

    /// Reads every partition to its end, handing lines to `f` in merge order.
    pub(super) fn run(
        &mut self,
        bar: &ProgressBar,
        f: &mut TypedLineFn<'_>,
    ) -> Result<InputStats, KafkaInputError> {
        if let [only] = self.history.range.topics.as_slice() {
            bar.set_message(only.clone());
        }
        loop {
            // Merge: emit while no unfinished partition is starved.
            let mut starved = self.parts.iter().any(Part::starved);
            while !starved {
                let Some(Reverse((_, i))) = self.heads.pop() else {
                    break;
                };
                let part = &mut self.parts[i];
                let Some(msg) = part.pending.pop_front() else {
                    continue;
                };
                part.pending_bytes -= msg.line.len();
                self.stats.lines += 1;
                self.stats.bytes += msg.line.len() as u64;
                f(
                    &msg.line,
                    self.topics[part.topic].default_type.as_deref(),
                    LineRef {
                        file: i,
                        line: msg.offset.max(0) as u64,
                    },
                );
                if let Some(head) = part.pending.front() {
                    self.heads.push(Reverse((head.key, i)));
                }
                starved = part.starved();
                if starved {
                    // The wait for it starts now (it may have been paused long).
                    part.last_activity = Instant::now();
                }
                if part.paused
                    && part.end.is_none()
                    && part.pending.len() < MAX_PENDING / 2
                    && part.pending_bytes < MAX_PENDING_BYTES / 2
                {
                    self.resume(i);
                }
            }
            if self.parts.iter().all(Part::finished) {
                return Ok(self.stats);
            }
            self.poll_round(bar)?;
            self.check_parts()?;
            if bar.length().is_some_and(|l| bar.position() > l) {
                bar.set_length(bar.position());
            }
        }
    }

    /// Polls the consumers of starved partitions: without waiting while
    /// messages come, else one short wait.
    fn poll_round(&mut self, bar: &ProgressBar) -> Result<(), KafkaInputError> {
        let mut wanted: Vec<usize> = self
            .parts
            .iter()
            .filter(|p| p.starved())
            .map(|p| p.topic)
            .collect();
        wanted.dedup();
        let mut got = false;
        for &t in &wanted {
            let consumer = Arc::clone(&self.topics[t].consumer);
            for _ in 0..POLL_BATCH {
                match consumer.poll(Duration::ZERO) {
                    Some(r) => {
                        got = true;
                        self.handle(t, r, bar)?;
                    }
                    None => break,
                }
            }
        }
        if !got {
            if let Some(&t) = wanted.first() {
                let consumer = Arc::clone(&self.topics[t].consumer);
                if let Some(r) = consumer.poll(POLL_WAIT) {
                    self.handle(t, r, bar)?;
                }
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        t: usize,
        r: Result<BorrowedMessage<'_>, KafkaError>,
        bar: &ProgressBar,
    ) -> Result<(), KafkaInputError> {
        match r {
            Ok(m) => {
                let Some(&i) = self.topics[t].index.get(&m.partition()) else {
                    return Ok(());
                };
                let (offset, ts, payload) = (m.offset(), m.timestamp(), m.payload());
                self.message(i, offset, ts, payload.unwrap_or_default(), bar);
                Ok(())
            }
            Err(KafkaError::PartitionEOF(p)) => {
                if let Some(&i) = self.topics[t].index.get(&p) {
                    self.end_of_partition(i)?;
                }
                Ok(())
            }
            Err(e) => self.consumer_error(t, e),
        }
    }

    /// A message of partition `i`: select it, buffer it for the merge.
    fn message(&mut self, i: usize, offset: i64, ts: Timestamp, payload: &[u8], bar: &ProgressBar) {
        let history: &'a KafkaHistory = self.history;
        let range = &history.range;
        let merging = self.parts.len() > 1;
        let part = &mut self.parts[i];
        part.last_activity = Instant::now();
        if part.end.is_some() || offset < part.next {
            return; // after the end, or already seen
        }
        if part.to.is_some_and(|to| offset >= to) {
            let end = part.to.unwrap_or(offset);
            self.finish(i, end, "reached --to-offset");
            return;
        }
        part.next = offset + 1;
        part.tail = None;
        part.read += 1;
        bar.inc(1);
        if range.from_ms.is_some() || range.to_ms.is_some() {
            let (ms, log_append) = match ts {
                Timestamp::CreateTime(ms) => (ms, false),
                Timestamp::LogAppendTime(ms) => (ms, true),
                Timestamp::NotAvailable => {
                    part.no_timestamp += 1;
                    return self.check_to(i);
                }
            };
            if log_append && range.to_ms.is_some_and(|to| ms >= to) {
                // Broker time only grows along a partition: nothing later is in range.
                part.read -= 1;
                part.next = offset;
                self.finish(i, offset, "reached --to-time (log append time)");
                return;
            }
            if range.from_ms.is_some_and(|from| ms < from) || range.to_ms.is_some_and(|to| ms >= to)
            {
                part.skipped += 1;
                return self.check_to(i);
            }
        }
        // One partition needs no merge key.
        if merging {
            let default_type = self.topics[part.topic].default_type.as_deref();
            if let Some(ms) = event_time(payload, default_type) {
                part.newest = part.newest.max(ms);
            }
        }
        let line = payload.to_vec();
        if part.pending.is_empty() {
            self.heads.push(Reverse((part.newest, i)));
        }
        part.pending_bytes += line.len();
        part.pending.push_back(Pending {
            key: part.newest,
            offset,
            line,
        });
        if !part.paused
            && (part.pending.len() >= MAX_PENDING || part.pending_bytes >= MAX_PENDING_BYTES)
        {
            self.pause(i);
        }
        self.check_to(i);
    }

    /// Ends partition `i` once its `--to-offset` is consumed.
    fn check_to(&mut self, i: usize) {
        let part = &self.parts[i];
        if let Some(to) = part.to.filter(|&to| part.next >= to) {
            self.finish(i, to, "reached --to-offset");
        }
    }

    /// The broker reported the end of partition `i` at the current position.
    fn end_of_partition(&mut self, i: usize) -> Result<(), KafkaInputError> {
        let now = Instant::now();
        let part = &mut self.parts[i];
        part.last_activity = now;
        if part.end.is_some() {
            return Ok(());
        }
        let high = self.high_watermark(i)?;
        let part = &mut self.parts[i];
        let next = part.next;
        if high <= next {
            let why = if part.to.is_some() {
                "partition ended before --to-offset"
            } else {
                "end of partition"
            };
            self.finish(i, next, why);
            return Ok(());
        }
        // The watermark says there is more: new messages, or offsets that
        // carry none (transaction markers, compaction). Settle before deciding.
        part.tail_rounds += 1;
        part.tail = Some(Tail { high, since: now });
        if part.tail_rounds > MAX_TAIL_ROUNDS {
            self.finish(i, next, "still growing; stopping");
        }
        Ok(())
    }

    /// Stalls and settling partitions.
    fn check_parts(&mut self) -> Result<(), KafkaInputError> {
        let now = Instant::now();
        let timeout = self.history.range.timeout;
        for i in 0..self.parts.len() {
            let part = &self.parts[i];
            if !part.starved() {
                continue;
            }
            if let Some(tail) = part.tail {
                if now.saturating_duration_since(tail.since) >= TAIL_SETTLE {
                    let high = self.high_watermark(i)?;
                    let next = self.parts[i].next;
                    if high <= next || high == tail.high {
                        self.finish(i, next, "end of partition (high watermark settled)");
                    } else {
                        // The watermark moved but nothing came (e.g. only
                        // aborted transactions): a round like an end reached
                        // while growing, so this cannot go on for ever.
                        let part = &mut self.parts[i];
                        part.tail_rounds += 1;
                        part.tail = Some(Tail { high, since: now });
                        if part.tail_rounds > MAX_TAIL_ROUNDS {
                            self.finish(i, next, "still growing; stopping");
                        }
                    }
                }
                continue;
            }
            let idle = now.saturating_duration_since(part.last_activity);
            let grace = PAST_END_GRACE.min(timeout);
            if part.start > part.high && part.next == part.start && idle >= grace {
                // Started beyond the watermark and nothing came, not even the
                // end of the partition: past the end, unless the watermark
                // merely lagged (then wait as for any partition).
                let high = self.high_watermark(i)?;
                let part = &mut self.parts[i];
                if high < part.next {
                    return Err(KafkaInputError::PastEnd {
                        topic: self.topics[part.topic].name.clone(),
                        partition: part.partition,
                        offset: part.next,
                        high,
                        waited: human(grace),
                    });
                }
                part.high = high;
                continue;
            }
            if idle > timeout {
                let topic = &self.topics[part.topic];
                // A broker that answers but has nothing at the offset (Tansu,
                // for an offset past the end; Apache Kafka says out of range).
                let hint = match topic.consumer.fetch_watermarks(
                    &topic.name,
                    part.partition,
                    HINT_TIMEOUT,
                ) {
                    Ok((_, high)) if high < part.next => format!(
                        " (past the partition's end: its high watermark is {high}; check --from-offset)"
                    ),
                    Ok(_) => " (the broker answers but sends nothing)".to_string(),
                    Err(_) => " (the broker is unreachable or does not answer)".to_string(),
                };
                return Err(KafkaInputError::Stalled {
                    topic: topic.name.clone(),
                    partition: part.partition,
                    offset: part.next,
                    timeout: human(timeout),
                    hint,
                    last: topic.consumer.context().last(),
                });
            }
        }
        Ok(())
    }

    fn high_watermark(&self, i: usize) -> Result<i64, KafkaInputError> {
        let part = &self.parts[i];
        let topic = &self.topics[part.topic];
        let timeout = self.history.range.timeout;
        topic
            .consumer
            .fetch_watermarks(&topic.name, part.partition, timeout)
            .map(|(_, high)| high)
            .map_err(|source| KafkaInputError::Watermarks {
                topic: topic.name.clone(),
                partition: part.partition,
                timeout: human(timeout),
                error: Box::new(source),
                last: topic.consumer.context().last(),
            })
    }

    fn consumer_error(&self, t: usize, e: KafkaError) -> Result<(), KafkaInputError> {
        let topic = self.topics[t].name.clone();
        match &e {
            KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
            ) => Err(KafkaInputError::OutOfRange {
                topic,
                error: Box::new(e),
            }),
            KafkaError::MessageConsumptionFatal(_)
            | KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownPartition,
            ) => Err(KafkaInputError::Consume {
                topic,
                error: Box::new(e),
            }),
            _ => {
                // Transient (a broker reconnecting): a lasting one is a stall.
                tracing::debug!(topic = %topic, error = %e, "Kafka consumer error.");
                *self.topics[t]
                    .consumer
                    .context()
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Ok(())
            }
        }
    }

    fn finish(&mut self, i: usize, end: i64, why: &str) {
        let part = &mut self.parts[i];
        part.end = Some(end);
        part.tail = None;
        let topic = &self.topics[part.topic];
        tracing::debug!(topic = %topic.name, partition = part.partition, end, why, "Kafka partition read to its end.");
        if part.to.is_some_and(|to| end < to) {
            tracing::warn!(topic = %topic.name, partition = part.partition, end, to = part.to, "The partition ends before --to-offset.");
        }
        // Stop fetching what will not be read.
        if !part.paused {
            let _ = self.set_paused(i, true);
        }
    }

    fn pause(&mut self, i: usize) {
        if let Err(e) = self.set_paused(i, true) {
            tracing::debug!(error = %e, "Cannot pause a Kafka partition; buffering on.");
        }
    }

    fn resume(&mut self, i: usize) {
        if let Err(e) = self.set_paused(i, false) {
            tracing::debug!(error = %e, "Cannot resume a Kafka partition.");
        }
    }

    fn set_paused(&mut self, i: usize, pause: bool) -> Result<(), KafkaError> {
        let part = &mut self.parts[i];
        let topic = &self.topics[part.topic];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic.name, part.partition);
        if pause {
            topic.consumer.pause(&tpl)?;
        } else {
            topic.consumer.resume(&tpl)?;
        }
        part.paused = pause;
        tracing::debug!(
            topic = %topic.name,
            partition = part.partition,
            pause,
            buffered = part.pending.len(),
            "Kafka partition paused or resumed for the merge."
        );
        Ok(())
    }
}

/// Per partition of `topic`: (partition, first offset, bound, high watermark).
type Resolved = Vec<(i32, i64, Option<i64>, i64)>;

/// Finds the partitions of `topic` and where to start and stop in each.
fn resolve(
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
fn start_offset(topic: &str, p: i32, from: Option<i64>, to: Option<i64>, low: i64) -> i64 {
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
fn skip_to_time(
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
fn time_start(answer: Offset, start: i64, high: i64) -> Option<i64> {
    let o = match answer {
        Offset::Offset(o) => o,
        Offset::End => high,
        _ => return None,
    };
    (o > start && o <= high).then_some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` and returns what it logged.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_start_before_the_log_start_moves_up_to_it() {
        let log = logged(|| {
            assert_eq!(start_offset("t", 0, None, None, 40), 40);
            assert_eq!(start_offset("t", 0, Some(50), Some(50), 40), 50);
            // Beyond the end is found while reading (the watermark may lag).
            assert_eq!(start_offset("t", 0, Some(900), None, 40), 900);
        });
        assert!(log.is_empty(), "{log}");
        let log = logged(|| assert_eq!(start_offset("t", 2, Some(10), None, 40), 40));
        assert!(
            log.contains("WARN") && log.contains("reading from the log start, 30 offsets skipped"),
            "{log}"
        );
        assert!(
            log.contains("skipped=30") && log.contains("partition=2"),
            "{log}"
        );
        let log = logged(|| assert_eq!(start_offset("t", 0, Some(10), Some(20), 40), 40));
        assert!(log.contains("The whole offset range was deleted"), "{log}");
    }

    #[test]
    fn a_time_lookup_is_used_only_inside_the_log_and_ahead_of_the_start() {
        assert_eq!(time_start(Offset::Offset(30), 10, 100), Some(30));
        assert_eq!(time_start(Offset::Offset(100), 10, 100), Some(100));
        assert_eq!(time_start(Offset::End, 10, 100), Some(100));
        // Behind the start (Tansu answers 0), beyond the log, or no answer.
        assert_eq!(time_start(Offset::Offset(0), 10, 100), None);
        assert_eq!(time_start(Offset::Offset(10), 10, 100), None);
        assert_eq!(time_start(Offset::Offset(101), 10, 100), None);
        assert_eq!(time_start(Offset::Offset(-1), 10, 100), None);
        assert_eq!(time_start(Offset::Invalid, 10, 100), None);
        assert_eq!(time_start(Offset::End, 100, 100), None);
    }
}
