//! History from Kafka topics: the `--kafka-topic` input of `backtest`, `tune`,
//! `chart` and `review`.
//!
//! The source stage of a backtest, beside the files of [`super::input`]: an
//! [`Inputs`](super::Inputs) built with [`Inputs::kafka`](super::Inputs::kafka)
//! hands out every message value of a range of each partition as one input
//! line, to the same decoder and engine as a file's lines (so invalid messages
//! are counted by reason exactly as invalid lines are).
//!
//! * **Connection.** Brokers and librdkafka properties (TLS, SASL, timeouts)
//!   come from the configuration's `[sources.kafka]` through the live
//!   consumer's [`consumer_config`](crate::source::kafka::consumer_config);
//!   `--bootstrap` overrides the brokers (and is enough without a
//!   `[sources.kafka]`). A topic listed there also brings its
//!   `default_type`: each value is handed out as received with that type
//!   beside it, and `backtest` decodes it with the type as `run` does
//!   ([`crate::event::decode_with_default`]: same size check, same invalid
//!   reasons); consumers that take plain lines (`tune`, `chart`, the review
//!   evidence) get the value with the type filled in instead
//!   ([`Inputs::for_each_line`](super::Inputs::for_each_line)). Partitions
//!   are **assigned** with explicit offsets under a throw-away `group.id`:
//!   nothing joins a group and nothing is ever committed
//!   (`enable.auto.commit=false`, no commit call).
//! * **Range.** Per partition, reading starts at `--from-offset` (`earliest`
//!   by default: the log start) and stops before `--to-offset` (exclusive).
//!   A `--from-offset` before the log start (retention deleted those
//!   messages) starts at the log start, with a WARN saying how many offsets
//!   were skipped. One beyond the partition's end is an error
//!   ([`KafkaInputError::PastEnd`]) once nothing has come from it for
//!   [`PAST_END_GRACE`] and the re-read high watermark is still below it (the
//!   watermark alone cannot tell: Tansu's lags; Apache Kafka answers "offset
//!   out of range" at once, [`KafkaInputError::OutOfRange`]). A
//!   `--from-offset` after the `--to-offset` it goes with is a usage error
//!   ([`PartitionOffsets::check_before`]), except an end given for one
//!   partition under a general start (`--to-offset latest,1:0`), which leaves
//!   that partition out. By default (`latest`) a partition ends where the
//!   broker reports its end:
//!   the fetch that reaches the end (librdkafka's partition EOF) and a
//!   re-queried high watermark not above the position — or, when the
//!   watermark stays above it (transaction markers, compacted offsets), not
//!   moving for [`TAIL_SETTLE`]. The high watermark from `ListOffsets` alone is
//!   not trusted: Tansu reports one that lags the last batch
//!   (`docs/broker.md`). Messages produced while the backtest catches up with
//!   the end are included (it stops at the first end it reaches).
//! * **Time range.** `--from-time` / `--to-time` select by the *Kafka message
//!   timestamp*, half-open `[from, to)`. Selection is client-side on every
//!   message, so it is right on any broker; `offsets_for_times` only moves the
//!   start forward (Apache Kafka answers the first offset at or after the
//!   time; Tansu answers 0, which costs a longer read, nothing else). Under
//!   `CreateTime` timestamps are not monotonic, so reading goes on to the end
//!   offset, skipping what is outside; under `LogAppendTime` a partition stops
//!   at its first message at or after `--to-time`. With a time range, messages
//!   without a timestamp are skipped (and counted).
//! * **Order.** Partitions (of every topic given) are merged by event time: the next line is the
//!   head of the partition that is furthest behind, where a partition's
//!   position is the newest event time it has delivered (so each partition
//!   keeps its own order and an out-of-order event stays where it was
//!   produced; undecodable messages go at their partition's position). The
//!   live service applies events at its watermark, the slowest partition, to
//!   the same effect; and a time-ordered stream spread over partitions comes
//!   back in the same order as its file. Reading one partition while another
//!   waits would make the waiting partition's events late.
//! * **Bounded.** Each partition buffers at most [`MAX_PENDING`] messages
//!   ([`MAX_PENDING_BYTES`]) while the merge waits on another; beyond it the
//!   partition is paused (librdkafka re-fetches from the position on resume).
//!   A partition the merge waits on that shows no progress for the timeout
//!   (`--kafka-timeout`) ends the read with an error naming it; so do
//!   unreachable brokers, a missing topic and a start beyond the end.
//! * **Twice the same.** The ranges read are kept, so a second pass (review
//!   evidence) reads exactly the same messages.
//!
//! A progress bar over messages read against the offset range is drawn when
//! standard error is a terminal.
//!
//! This file holds the arguments, the history and its errors, and the
//! `default_type` fill-in for plain lines; `reader` does the read
//! (consumers, selection, merge, ends, stalls).

mod error;
mod reader;

pub use error::KafkaInputError;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::KafkaSourceConfig;
use crate::event::{decode_with_default, DecodeLimits};

use super::line::{InputStats, LineRef};
use reader::{progress_bar, Reader};

/// Messages a partition may buffer while the merge waits on another one.
pub(crate) const MAX_PENDING: usize = 20_000;
/// Bytes a partition may buffer while the merge waits on another one.
pub(crate) const MAX_PENDING_BYTES: usize = 16 << 20;
/// How long a partition whose high watermark stays above its end-of-partition
/// position must see nothing new before it counts as finished.
pub(crate) const TAIL_SETTLE: Duration = Duration::from_millis(500);
/// How long a partition started beyond the high watermark reported at the
/// start may deliver nothing (no message, no end of partition) before the
/// re-read watermark decides it is past the end: long enough for a broker
/// whose watermark lags its log (Tansu) to deliver what is there. Capped by
/// `--kafka-timeout`.
pub(crate) const PAST_END_GRACE: Duration = Duration::from_secs(2);
/// Decoding for the merge order and the type fill-in only: no size limit, no
/// clock (the engine's own decoder applies the configured limits to the line
/// afterwards).
const OPEN_LIMITS: DecodeLimits = DecodeLimits::OPEN;

// === Arguments ===

/// Per-partition offsets: one for every partition, and overrides for some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionOffsets {
    /// For partitions not named: `None` is the keyword (`earliest` / `latest`).
    pub(crate) default: Option<i64>,
    /// Overrides by partition number (of every topic read).
    pub(crate) by_partition: BTreeMap<i32, Option<i64>>,
}

impl PartitionOffsets {
    /// Parses `--from-offset` (`keyword` = `earliest`) or `--to-offset`
    /// (`latest`) values: the keyword, `N`, or `P:N` / `P:keyword` for partition P.
    pub fn parse(
        flag: &'static str,
        keyword: &str,
        values: &[String],
    ) -> Result<Self, KafkaInputError> {
        let bad = |value: &str, why: String| KafkaInputError::BadOffset {
            flag,
            value: value.to_string(),
            why,
        };
        let offset = |value: &str, s: &str| -> Result<Option<i64>, KafkaInputError> {
            let s = s.trim();
            if s.eq_ignore_ascii_case(keyword) {
                return Ok(None);
            }
            match s.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(bad(
                    value,
                    format!("expected {keyword}, an offset N ≥ 0, or PARTITION:N"),
                )),
            }
        };
        let mut out = PartitionOffsets::default();
        let mut default_set = false;
        for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            match value.split_once(':') {
                Some((p, o)) => {
                    let p: i32 = p
                        .trim()
                        .parse()
                        .ok()
                        .filter(|p: &i32| *p >= 0)
                        .ok_or_else(|| bad(value, "the partition must be a number ≥ 0".into()))?;
                    if out.by_partition.insert(p, offset(value, o)?).is_some() {
                        return Err(bad(value, format!("partition {p} is given twice")));
                    }
                }
                None => {
                    if default_set {
                        return Err(bad(
                            value,
                            "only one value without PARTITION: is allowed".into(),
                        ));
                    }
                    out.default = offset(value, value)?;
                    default_set = true;
                }
            }
        }
        Ok(out)
    }

    /// The offset for partition `p` (`None`: the keyword).
    pub(crate) fn get(&self, p: i32) -> Option<i64> {
        self.by_partition.get(&p).copied().unwrap_or(self.default)
    }

    /// Checks these start offsets (`--from-offset`) against the end offsets
    /// `to`: a start after the end it goes with is a mistake, not an empty
    /// read. The exception is an end given for one partition under a
    /// general start (`--from-offset 90 --to-offset latest,1:0`): that leaves
    /// the partition out on purpose.
    pub fn check_before(&self, to: &PartitionOffsets) -> Result<(), KafkaInputError> {
        let pairs = std::iter::once((None, self.default, to.default)).chain(
            self.by_partition
                .iter()
                .map(|(&p, &from)| (Some(p), from, to.get(p))),
        );
        for (p, from, end) in pairs {
            if let (Some(from), Some(end)) = (from, end) {
                if from > end {
                    let which = p.map(|p| format!(" of partition {p}")).unwrap_or_default();
                    return Err(KafkaInputError::Usage(format!(
                        "--from-offset {from} is after the --to-offset {end}{which}: the range [from, to) would be empty"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What to read: the topics and the range in each partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaRange {
    /// Topics, read together (merged by event time).
    pub(crate) topics: Vec<String>,
    /// First offset read (`None`: the log start).
    pub(crate) from: PartitionOffsets,
    /// First offset not read (`None`: the end when the read reaches it).
    pub(crate) to: PartitionOffsets,
    /// Only messages with a Kafka timestamp at or after this (ms).
    pub(crate) from_ms: Option<i64>,
    /// Only messages with a Kafka timestamp before this (ms).
    pub(crate) to_ms: Option<i64>,
    /// A partition the read waits on may show no progress this long.
    pub(crate) timeout: Duration,
}

// === The history ===

/// What receives each message value: the value as received, its topic's
/// `default_type`, and where it came from.
pub(crate) type TypedLineFn<'a> = dyn FnMut(&[u8], Option<&str>, LineRef) + 'a;

/// One partition's range as read by the first pass: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadRange {
    topic: usize,
    partition: i32,
    start: i64,
    end: i64,
}

/// History from Kafka topics. Clones share what the first read resolved.
#[derive(Clone)]
pub struct KafkaHistory {
    /// Brokers and librdkafka properties (the configuration's, `--bootstrap` applied).
    source: KafkaSourceConfig,
    /// Topic names and their `default_type`.
    topics: Vec<(String, Option<String>)>,
    range: KafkaRange,
    /// The ranges the first read covered: later reads repeat them exactly.
    resolved: Arc<Mutex<Option<Vec<ReadRange>>>>,
}

impl fmt::Debug for KafkaHistory {
    // Not derived: the properties may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaHistory")
            .field("brokers", &self.source.brokers)
            .field("topics", &self.topics)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl KafkaHistory {
    /// History from `range.topics` on the brokers of `source` (the
    /// configuration's `[sources.kafka]`), or on `bootstrap` when given.
    pub fn new(
        source: Option<&KafkaSourceConfig>,
        bootstrap: Option<&str>,
        range: KafkaRange,
    ) -> Result<Self, KafkaInputError> {
        let mut source = match (source, bootstrap) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => bare_source(b)?,
            (None, None) => return Err(KafkaInputError::NoBrokers),
        };
        if let Some(b) = bootstrap {
            source.brokers = b.to_string();
        }
        if source.brokers.trim().is_empty() {
            return Err(KafkaInputError::NoBrokers);
        }
        if range.topics.is_empty() {
            return Err(KafkaInputError::Usage(
                "give at least one --kafka-topic".into(),
            ));
        }
        for (i, t) in range.topics.iter().enumerate() {
            if t.trim().is_empty() || range.topics[..i].contains(t) {
                return Err(KafkaInputError::Usage(format!(
                    "--kafka-topic {t:?}: empty or given twice"
                )));
            }
        }
        range.from.check_before(&range.to)?;
        if let (Some(a), Some(b)) = (range.from_ms, range.to_ms) {
            if a >= b {
                return Err(KafkaInputError::Usage(
                    "--from-time must be before --to-time".into(),
                ));
            }
        }
        if range.timeout.is_zero() {
            return Err(KafkaInputError::Usage(
                "--kafka-timeout must be positive".into(),
            ));
        }
        let topics = range
            .topics
            .iter()
            .map(|name| {
                let default_type = source
                    .topics
                    .iter()
                    .find(|t| &t.name == name)
                    .and_then(|t| t.default_type.clone());
                (name.clone(), default_type)
            })
            .collect();
        Ok(KafkaHistory {
            source,
            topics,
            range,
            resolved: Arc::new(Mutex::new(None)),
        })
    }

    /// A message for people: `topic[partition]@offset` (once the range is
    /// resolved, i.e. after the first read; `partition #i` before).
    pub(crate) fn describe(&self, at: LineRef) -> String {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let part = resolved.as_ref().and_then(|r| r.get(at.file));
        match part.and_then(|p| Some((self.range.topics.get(p.topic)?, p.partition))) {
            Some((topic, partition)) => format!("{topic}[{partition}]@{}", at.line),
            None => format!("partition #{} offset {}", at.file, at.line),
        }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.source.brokers
    }

    /// Calls `f` with every selected message value as received, with its
    /// topic's `default_type`, partitions merged by event time. The first
    /// call resolves the range; later calls read the same.
    pub(crate) fn for_each_line(
        &self,
        progress: bool,
        f: &mut TypedLineFn<'_>,
    ) -> Result<InputStats, KafkaInputError> {
        let cached = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let started = Instant::now();
        let mut reader = Reader::open(self, cached.as_deref())?;
        let bar = progress_bar(progress, reader.total());
        let result = reader.run(&bar, f);
        bar.finish_and_clear();
        let stats = result?;
        reader.log_summary(started.elapsed());
        if cached.is_none() {
            *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader.ranges());
        }
        Ok(stats)
    }
}

/// A `[sources.kafka]` with only brokers: every other setting at its default.
fn bare_source(brokers: &str) -> Result<KafkaSourceConfig, KafkaInputError> {
    serde_json::from_value(serde_json::json!({ "brokers": brokers, "topics": [] }))
        .map_err(|e| KafkaInputError::Usage(format!("--bootstrap {brokers:?}: {e}")))
}

/// The merge key of a message: its event time, when it decodes (with its
/// topic's `default_type`, as `run` decodes it).
fn event_time(payload: &[u8], default_type: Option<&str>) -> Option<i64> {
    decode_with_default(payload, &OPEN_LIMITS, None, default_type)
        .ok()
        .map(|ev| ev.ts)
}

/// For consumers that decode plain lines: the value with the topic's
/// `default_type` filled in, when it is valid only with it (the type is
/// absent or null); `None` leaves the value as it is. The value is
/// re-serialised, so its size and key order change: a value near
/// `engine.max_event_bytes` may cross it, and duplicate keys collapse
/// ([`Driver::feed_with_default`](super::Driver::feed_with_default) decodes
/// the value as received instead).
pub(super) fn fill_type(payload: &[u8], default_type: &str) -> Option<Vec<u8>> {
    if decode_with_default(payload, &OPEN_LIMITS, None, None).is_ok()
        || decode_with_default(payload, &OPEN_LIMITS, None, Some(default_type)).is_err()
    {
        return None;
    }
    let mut m =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload).ok()?;
    m.insert(
        "type".into(),
        serde_json::Value::String(default_type.to_string()),
    );
    serde_json::to_vec(&m).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(keyword: &str, v: &[&str]) -> Result<PartitionOffsets, KafkaInputError> {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        PartitionOffsets::parse("--from-offset", keyword, &v)
    }

    #[test]
    fn offsets_parse_keyword_number_and_partition_pairs() {
        let o = parse("earliest", &["100", "2:7", "3:earliest"]).unwrap();
        assert_eq!(o.get(0), Some(100));
        assert_eq!(o.get(2), Some(7));
        assert_eq!(o.get(3), None);
        let o = parse("latest", &["LATEST", "1:5"]).unwrap();
        assert_eq!(o.get(0), None);
        assert_eq!(o.get(1), Some(5));
        assert_eq!(parse("earliest", &[]).unwrap(), PartitionOffsets::default());
        for bad in [
            &["x"][..],
            &["-1"],
            &["a:1"],
            &["1:2", "1:3"],
            &["1", "2"],
            &["-2:4"],
        ] {
            let err = parse("earliest", bad).unwrap_err();
            assert!(err.to_string().contains("--from-offset"), "{err}");
        }
    }

    #[test]
    fn a_start_after_its_end_offset_is_a_usage_error() {
        let check = |from: &[&str], to: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let from = PartitionOffsets::parse("--from-offset", "earliest", &v(from)).unwrap();
            let to = PartitionOffsets::parse("--to-offset", "latest", &v(to)).unwrap();
            from.check_before(&to).map_err(|e| e.to_string())
        };
        let e = check(&["7"], &["3"]).unwrap_err();
        assert!(
            e.contains("--from-offset 7 is after the --to-offset 3:"),
            "{e}"
        );
        let e = check(&["2:50"], &["20"]).unwrap_err();
        assert!(
            e.contains("--from-offset 50 is after the --to-offset 20 of partition 2"),
            "{e}"
        );
        assert!(check(&["2:50"], &["2:49"]).is_err());
        // Empty on purpose: an end for one partition under a general start.
        assert!(check(&["90"], &["latest", "1:0"]).is_ok());
        // Equal is an empty range, not reversed; keywords are the broker's.
        assert!(check(&["5"], &["5"]).is_ok());
        assert!(check(&[], &["0"]).is_ok());
        assert!(check(&["5"], &[]).is_ok());
        assert!(check(&["1:9"], &["0:3"]).is_ok());
    }

    #[test]
    fn a_missing_type_is_filled_from_the_topic_default_only_when_needed() {
        let filled = fill_type(br#"{"id":"a","ts":1000}"#, "complaint").expect("filled in");
        let ev = decode_with_default(&filled, &OPEN_LIMITS, None, None).unwrap();
        assert_eq!(ev.kind.as_ref(), "complaint");
        let filled = fill_type(br#"{"id":"a","type":null,"ts":1000}"#, "order").unwrap();
        let ev = decode_with_default(&filled, &OPEN_LIMITS, None, None).unwrap();
        assert_eq!(ev.kind.as_ref(), "order");
        // Already typed: untouched. Invalid anyway: untouched.
        assert_eq!(fill_type(br#"{"id":"a","type":"x","ts":5}"#, "c"), None);
        assert_eq!(fill_type(b"not json", "c"), None);
        assert_eq!(fill_type(br#"{"id":"a"}"#, "c"), None);
    }

    #[test]
    fn the_merge_key_is_the_event_time_with_the_default_type() {
        assert_eq!(
            event_time(br#"{"id":"a","type":"x","ts":5}"#, None),
            Some(5)
        );
        assert_eq!(event_time(br#"{"id":"a","ts":5}"#, Some("c")), Some(5));
        assert_eq!(event_time(br#"{"id":"a","ts":5}"#, None), None);
        assert_eq!(event_time(b"not json", Some("c")), None);
    }

    #[test]
    fn history_arguments_are_checked() {
        let range = |topics: &[&str]| KafkaRange {
            topics: topics.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(5),
            ..KafkaRange::default()
        };
        assert!(matches!(
            KafkaHistory::new(None, None, range(&["t"])),
            Err(KafkaInputError::NoBrokers)
        ));
        let h = KafkaHistory::new(None, Some("127.0.0.1:9"), range(&["t"])).unwrap();
        assert_eq!(h.brokers(), "127.0.0.1:9");
        assert!(KafkaHistory::new(None, Some("b:1"), range(&["t", "t"])).is_err());
        let mut r = range(&["t"]);
        r.from_ms = Some(10);
        r.to_ms = Some(10);
        assert!(KafkaHistory::new(None, Some("b:1"), r).is_err());
    }
}
