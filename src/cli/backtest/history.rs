//! Where the history of a backtest command comes from: `--input` files, or a
//! range of Kafka topics.

use std::path::PathBuf;

use crate::backtest::kafka_input::{KafkaHistory, KafkaRange, PartitionOffsets};
use crate::backtest::Inputs;
use crate::config::Config;
use crate::event::parse_rfc3339_ms;

use crate::cli::args::{ConfigArg, NowArg};

use super::CliError;

/// What `backtest`, `tune` and `chart` read: the configuration, and the history
/// (files, or Kafka) with the wall clock its future-skew check judges against.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// History: JSONL files (gzip accepted, by content), read in the order given; "-" reads stdin.
    #[arg(long, num_args = 1.., required_unless_present = "kafka_topics")]
    pub(crate) input: Vec<PathBuf>,
    /// Or history from Kafka.
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    /// The wall clock the history's future-skew check judges against.
    #[command(flatten)]
    pub(crate) now: NowArg,
}

impl HistoryArgs {
    /// The history to read.
    pub fn open(&self, cfg: &Config) -> Result<Inputs, CliError> {
        history(cfg, &self.input, &self.kafka)
    }
}

/// History from Kafka topics instead of files (every history command takes these).
/// Each of them needs `--kafka-topic` and none goes with `--input` (a group rule:
/// the defaulted `--kafka-timeout` does not count as given).
#[derive(clap::Args, Debug, Clone, Default)]
#[group(multiple = true, requires = "kafka_topics", conflicts_with = "input")]
pub(crate) struct KafkaArgs {
    /// Read the history from this Kafka topic instead of --input files (repeatable:
    /// topics and partitions are merged by event time). Brokers and librdkafka
    /// properties come from [sources.kafka], as does the topic's default_type.
    #[arg(long = "kafka-topic", value_name = "TOPIC")]
    pub(crate) kafka_topics: Vec<String>,
    /// Bootstrap servers, instead of sources.kafka.brokers.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) bootstrap: Option<String>,
    /// First offset read, per partition: earliest (default), N, or P:N for
    /// partition P (repeatable or comma-separated; a plain value is for the others).
    #[arg(long, value_name = "earliest|N|P:N", value_delimiter = ',')]
    pub(crate) from_offset: Vec<String>,
    /// First offset NOT read, per partition: latest (default: each partition's
    /// end when the read reaches it), N, or P:N.
    #[arg(long, value_name = "latest|N|P:N", value_delimiter = ',')]
    pub(crate) to_offset: Vec<String>,
    /// Only messages whose Kafka timestamp is at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub(crate) from_time: Option<String>,
    /// Only messages whose Kafka timestamp is before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub(crate) to_time: Option<String>,
    /// Fail when the broker answers nothing for this long (unreachable, stalled).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub(crate) kafka_timeout: crate::config::Dur,
}

/// The history of a command: the `--input` files, or the Kafka topics.
pub fn history(cfg: &Config, input: &[PathBuf], k: &KafkaArgs) -> Result<Inputs, CliError> {
    if k.kafka_topics.is_empty() {
        return Ok(Inputs::new(input.to_vec())?.cap_lines(cfg.engine.max_event_bytes));
    }
    let time = |flag: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(s) => parse_rfc3339_ms(s)
            .map(Some)
            .ok_or_else(|| CliError::Usage(format!("{flag} {s:?} is not an RFC 3339 time"))),
    };
    let range = KafkaRange {
        topics: k.kafka_topics.clone(),
        from: PartitionOffsets::parse("--from-offset", "earliest", &k.from_offset)?,
        to: PartitionOffsets::parse("--to-offset", "latest", &k.to_offset)?,
        from_ms: time("--from-time", &k.from_time)?,
        to_ms: time("--to-time", &k.to_time)?,
        timeout: k.kafka_timeout.into(),
    };
    let h = KafkaHistory::new(cfg.sources.kafka.as_ref(), k.bootstrap.as_deref(), range)?;
    Ok(Inputs::kafka(h))
}
