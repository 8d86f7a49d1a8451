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
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

mod client;
mod ends;
mod range;

use client::*;
use range::*;

use crate::backtest::line::{InputStats, LineRef};

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

#[cfg(test)]
mod tests;
