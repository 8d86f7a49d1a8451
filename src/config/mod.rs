//! Configuration: one TOML file with the engine settings, sources, rules and
//! receivers.
//!
//! Loading is one pipeline: parse TOML → interpolate `${VAR}` in string values
//! ([`interpolate`]) → deserialize into these structs (unknown keys are
//! errors) → [`Config::validate`], which collects *every* problem with its key
//! path and bad value. `crisiswatch check` prints them all; every other command
//! refuses to start on any of them. Defaults are named `default_*` functions
//! with the reason for their value.

pub mod interpolate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use interpolate::{Env, ProcessEnv};

/// The example configuration, embedded so `crisiswatch demo` runs anywhere.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/crisiswatch.toml");

// === errors ===

/// One configuration problem: where, what value, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `rules[2].window`.
    pub path: String,
    /// The offending value as written (after interpolation), or empty.
    pub value: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A new error.
    pub fn new(
        path: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            path: path.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        if self.value.is_empty() {
            write!(f, "{path}: {}", self.message)
        } else {
            write!(f, "{path} = {:?}: {}", self.value, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not valid.
    #[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

// === durations ===

/// A duration written as a string such as `"30s"`, `"15m"`, `"1h 30m"`, `"500ms"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole milliseconds (saturating).
    pub fn as_ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    /// From milliseconds.
    pub const fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// From whole minutes.
    pub const fn mins(m: u64) -> Self {
        Dur(Duration::from_secs(m * 60))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write e.g. \"30s\", \"15m\", \"1h\""
            ))
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

// === top level ===

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Event-time, dedup and memory settings of the core.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The HTTP listener for `/metrics` and the admin API.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where events come from in `crisiswatch run`.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// The synthetic stream of `crisiswatch demo`.
    #[serde(default)]
    pub demo: DemoConfig,
    /// The alerting rules: an indicator over a sliding window per group, and thresholds.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Where incidents are sent.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// How alerts become incidents and reach the receivers: outbox, progress updates, routes.
    #[serde(default)]
    pub incidents: crate::incident::config::IncidentsConfig,
}

/// Settings of the deterministic core.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// How far behind the newest event time an event may arrive and still count.
    /// The watermark is the newest event time minus this; an event older than
    /// watermark − window is late (counted, dropped).
    #[serde(default = "default_allowed_lateness")]
    pub allowed_lateness: Dur,
    /// A repeated event `id` within this much event time is counted once. `"0"` disables.
    #[serde(default = "default_dedup_horizon")]
    pub dedup_horizon: Dur,
    /// Upper bound on ids remembered for deduplication.
    #[serde(default = "default_dedup_max_ids")]
    pub dedup_max_ids: usize,
    /// Events stamped further than this in the future of the wall clock are invalid.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: Dur,
    /// Events larger than this many bytes are invalid (`oversized`).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Live groups (slices) kept per rule; events of new groups beyond it are counted as overflow.
    #[serde(default = "default_max_groups_per_rule")]
    pub max_groups_per_rule: usize,
    /// Distinct customers tracked per group by customer-level indicators.
    #[serde(default = "default_max_customers_per_group")]
    pub max_customers_per_group: usize,
    /// Live mode: when no event arrives for this long, event time advances with the wall clock
    /// so quiet slices still resolve.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Event ids kept per alert as evidence.
    #[serde(default = "default_sample_event_ids")]
    pub sample_event_ids: usize,
}

/// 1 minute: producers and brokers reorder events by seconds, rarely by minutes.
fn default_allowed_lateness() -> Dur {
    Dur::mins(1)
}
/// 10 minutes, from `contract.md` §1.
fn default_dedup_horizon() -> Dur {
    Dur::mins(10)
}
/// 1,000,000 ids ≈ 40 MB: ten minutes of a 1,500 events/s stream.
fn default_dedup_max_ids() -> usize {
    1_000_000
}
/// 5 minutes, from `contract.md` §2.
fn default_max_future_skew() -> Dur {
    Dur::mins(5)
}
/// 64 KiB: an event is a few hundred bytes; anything this large is a producer bug.
fn default_max_event_bytes() -> usize {
    64 * 1024
}
/// 100,000 groups per rule: the sizing target of the engine.
fn default_max_groups_per_rule() -> usize {
    100_000
}
/// 10,000 customers per group and window bounds memory of distinct-customer indicators.
fn default_max_customers_per_group() -> usize {
    10_000
}
/// 30 seconds: long enough for a normal lull, short enough that a quiet stream still resolves.
fn default_idle_timeout() -> Dur {
    Dur::secs(30)
}
/// 5 ids: enough for a responder to look up examples.
fn default_sample_event_ids() -> usize {
    5
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: default_allowed_lateness(),
            dedup_horizon: default_dedup_horizon(),
            dedup_max_ids: default_dedup_max_ids(),
            max_future_skew: default_max_future_skew(),
            max_event_bytes: default_max_event_bytes(),
            max_groups_per_rule: default_max_groups_per_rule(),
            max_customers_per_group: default_max_customers_per_group(),
            idle_timeout: default_idle_timeout(),
            sample_event_ids: default_sample_event_ids(),
        }
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for `/metrics`, `/healthz` and the admin API, e.g. `127.0.0.1:9464`. Empty disables.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Cap on exported indicator series per rule; groups beyond it are counted, not exported.
    #[serde(default = "default_max_series_per_rule")]
    pub max_series_per_rule: usize,
    /// Environment variable holding the bearer token for admin (state-changing)
    /// endpoints such as reload and silences. Without a token they are refused.
    #[serde(default)]
    pub admin_token_env: Option<String>,
    /// File holding the admin bearer token (used when `admin_token_env` is unset).
    #[serde(default)]
    pub admin_token_file: Option<std::path::PathBuf>,
}

/// 127.0.0.1:9464: loopback only by default; 9464 is the conventional exporter port of the project.
fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}
/// 1,000 series per rule keeps a dashboard and Prometheus responsive.
fn default_max_series_per_rule() -> usize {
    1000
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_series_per_rule: default_max_series_per_rule(),
            admin_token_env: None,
            admin_token_file: None,
        }
    }
}

/// Sources of `crisiswatch run`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// The Kafka consumer, if any.
    #[serde(default)]
    pub kafka: Option<KafkaSourceConfig>,
}

/// A Kafka consumer group reading the event topics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, e.g. `"${CRISISWATCH_BROKERS:-localhost:9092}"`.
    pub brokers: String,
    /// Consumer group id.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topics to consume, each with an optional default event type.
    pub topics: Vec<TopicConfig>,
    /// Topic that receives invalid messages unchanged, with reason headers. Empty disables.
    #[serde(default)]
    pub dead_letter_topic: String,
    /// librdkafka properties passed through unchanged (security.protocol, sasl.*, ssl.*, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How often the offsets of applied events are committed (also on revoke and shutdown).
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Dur,
    /// A partition with no message for this long stops holding back the service watermark.
    #[serde(default = "default_idle_partition_timeout")]
    pub idle_partition_timeout: Dur,
    /// No progress for this long while behind (or while the broker does not answer)
    /// marks the consumer stalled: `/readyz` answers 503 until it moves again.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Dur,
    /// Bound on a graceful shutdown (SIGINT/SIGTERM): stop fetching, drain, commit, exit.
    /// Also bounds how long a revoke waits for in-flight events.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Dur,
    /// Most messages handed from the consumer to the engine in one batch.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// Batches buffered between the consumer and the engine; when full the
    /// consumer waits (backpressure), so memory does not grow with lag.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Dead letters being produced at once; the engine waits beyond it.
    #[serde(default = "default_dlq_max_in_flight")]
    pub dlq_max_in_flight: usize,
}

/// "crisiswatch": one group per deployment.
fn default_group_id() -> String {
    "crisiswatch".to_string()
}
/// 5 seconds: librdkafka's own `auto.commit.interval.ms`; a restart re-reads at most this much.
fn default_commit_interval() -> Dur {
    Dur::secs(5)
}
/// 10 seconds: a third of `engine.idle_timeout`, so one quiet partition is
/// released before the whole stream counts as idle.
fn default_idle_partition_timeout() -> Dur {
    Dur::secs(10)
}
/// 60 seconds: longer than a rebalance or a broker failover (session timeouts
/// are 6–45 s), short enough to page before alerts go stale.
fn default_stall_timeout() -> Dur {
    Dur::secs(60)
}
/// 30 seconds: Kubernetes' default termination grace period.
fn default_shutdown_timeout() -> Dur {
    Dur::secs(30)
}
/// 1,000 messages: amortises the hand-off; with the default capacity at most
/// 8,000 messages (≈ 4 MB of typical events) wait between the stages.
fn default_max_batch_messages() -> usize {
    1000
}
/// 8 batches: enough to keep the engine busy while the consumer fetches.
fn default_channel_capacity() -> usize {
    8
}
/// 1,024 dead letters in flight: invalid input is rare; a flood of it waits on the broker.
fn default_dlq_max_in_flight() -> usize {
    1024
}

/// One consumed topic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// Event `type` for messages that carry none.
    #[serde(default)]
    pub default_type: Option<String>,
}

/// The synthetic stream of `crisiswatch demo`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Seed of the generator: the same seed gives the same stream.
    #[serde(default = "default_demo_seed")]
    pub seed: u64,
    /// Simulated start (RFC 3339).
    #[serde(default = "default_demo_start")]
    pub start: String,
    /// Simulated period.
    #[serde(default = "default_demo_duration")]
    pub duration: Dur,
    /// Simulated seconds per wall-clock second.
    #[serde(default = "default_demo_speed")]
    pub speed: f64,
    /// Orders per minute across all slices at the daily peak.
    #[serde(default = "default_demo_orders_per_minute")]
    pub orders_per_minute: f64,
    /// Inject the playbook crises.
    #[serde(default = "default_true")]
    pub crises: bool,
    /// Inject malformed lines, duplicate ids and out-of-order events.
    #[serde(default = "default_true")]
    pub noise: bool,
}

/// 42: any fixed seed; this one gives the documented demo run.
fn default_demo_seed() -> u64 {
    42
}
/// A fixed day so demo output is reproducible.
fn default_demo_start() -> String {
    "2026-11-20T00:00:00Z".to_string()
}
/// One simulated day: the daily rhythm and all three playbook crises.
fn default_demo_duration() -> Dur {
    Dur::secs(24 * 3600)
}
/// 2,880× real time: a simulated day in 30 seconds.
fn default_demo_speed() -> f64 {
    2880.0
}
/// 300 orders/minute at peak: a mid-sized shop, ≈ 300k orders a day.
fn default_demo_orders_per_minute() -> f64 {
    300.0
}
fn default_true() -> bool {
    true
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: default_demo_seed(),
            start: default_demo_start(),
            duration: default_demo_duration(),
            speed: default_demo_speed(),
            orders_per_minute: default_demo_orders_per_minute(),
            crises: true,
            noise: true,
        }
    }
}

// === rules ===

/// Alert severity, lowest first. Maps to PagerDuty's info/warning/error/critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// A crisis may be starting.
    Warning,
    /// A crisis is under way.
    Error,
    /// A major crisis: start the emergency plan.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Info, Self::Warning, Self::Error, Self::Critical];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Fire when the value is strictly above the threshold.
    #[default]
    Above,
    /// Fire when the value is strictly below the threshold.
    Below,
}

/// Thresholds per severity; at least one. For `above`, higher severities need higher values.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Threshold of the `info` severity.
    pub info: Option<f64>,
    /// Threshold of the `warning` severity.
    pub warning: Option<f64>,
    /// Threshold of the `error` severity.
    pub error: Option<f64>,
    /// Threshold of the `critical` severity.
    pub critical: Option<f64>,
}

impl Thresholds {
    /// The configured (severity, threshold) pairs, lowest severity first.
    pub fn levels(&self) -> Vec<(Severity, f64)> {
        [
            (Severity::Info, self.info),
            (Severity::Warning, self.warning),
            (Severity::Error, self.error),
            (Severity::Critical, self.critical),
        ]
        .into_iter()
        .filter_map(|(s, v)| v.map(|v| (s, v)))
        .collect()
    }
}

/// One value or a list of values.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Any of several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A match on one field: `"x"` (equals), `["x", "y"]` (one of), `{ not = "x" }` or
/// `{ not = ["x", "y"] }` (none of; also true when the attribute is absent).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ValueMatch {
    /// Equality or set membership.
    Is(OneOrMany),
    /// Negation.
    Not(NotMatch),
}

/// The negated form of [`ValueMatch`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotMatch {
    /// Values that must not match.
    pub not: OneOrMany,
}

/// Which events an indicator counts: by `type` and by attributes (all must match).
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Event type match; absent matches every type.
    #[serde(rename = "type", default)]
    pub kind: Option<ValueMatch>,
    /// Attribute matches, all of which must hold.
    #[serde(default)]
    pub attrs: BTreeMap<String, ValueMatch>,
}

/// Time unit of a `rate` indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    /// Events per second.
    Second,
    /// Events per minute.
    #[default]
    Minute,
    /// Events per hour.
    Hour,
}

/// How a surge compares the current window with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SurgeMethod {
    /// current ÷ baseline expectation for one window (2.0 = twice the usual volume).
    #[default]
    Ratio,
    /// (current − expectation) ÷ standard deviation of the baseline, in window units.
    Zscore,
}

/// What is measured over the window, per group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IndicatorConfig {
    /// Number of matching events. Volume: the count.
    Count {
        /// Events counted.
        #[serde(default)]
        select: Selector,
    },
    /// Matching events per unit of time over the window length. Volume: the count.
    Rate {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Time unit.
        #[serde(default)]
        per: RateUnit,
    },
    /// numerator count ÷ denominator count (e.g. complaints ÷ orders). Volume: the denominator.
    Ratio {
        /// Events on top.
        numerator: Selector,
        /// Events below.
        denominator: Selector,
        /// Below this many denominator events the ratio is not computed (no data).
        #[serde(default = "default_min_denominator")]
        min_denominator: u64,
    },
    /// Distinct `customer_id`s among matching events. Volume: matching events with a customer.
    DistinctCustomers {
        /// Events counted.
        #[serde(default)]
        select: Selector,
    },
    /// Customers with at least `min_events` matching events (repeat complainers, at-risk customers).
    RepeatCustomers {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Events per customer needed to count the customer.
        min_events: u32,
    },
    /// Share of scored matching events whose `score` is in [min, max] (e.g. detractors: 0..=6).
    ScoreShare {
        /// Events considered (those without a score are ignored).
        #[serde(default)]
        select: Selector,
        /// Lowest score counted (inclusive).
        min: f64,
        /// Highest score counted (inclusive).
        max: f64,
    },
    /// Mean `score` of matching events. Volume: scored events.
    MeanScore {
        /// Events considered.
        #[serde(default)]
        select: Selector,
    },
    /// Net Promoter Score: (promoters 9–10 − detractors 0–6) ÷ responses × 100. Volume: responses.
    Nps {
        /// Events considered.
        #[serde(default)]
        select: Selector,
    },
    /// Current window count against the trailing `baseline` before it. Volume: the current count.
    Surge {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Length of the trailing baseline (a multiple of the slide).
        baseline: Dur,
        /// Ratio or z-score.
        #[serde(default)]
        method: SurgeMethod,
        /// Floor of the expected count per window, so that a near-empty baseline
        /// does not turn two events into a "surge".
        #[serde(default = "default_min_baseline")]
        min_baseline: f64,
    },
}

/// 1 denominator event: a ratio needs at least one.
fn default_min_denominator() -> u64 {
    1
}
/// 1 expected event per window.
fn default_min_baseline() -> f64 {
    1.0
}

impl IndicatorConfig {
    /// The selectors of this indicator.
    pub fn selectors(&self) -> Vec<&Selector> {
        match self {
            IndicatorConfig::Ratio {
                numerator,
                denominator,
                ..
            } => vec![numerator, denominator],
            IndicatorConfig::Count { select }
            | IndicatorConfig::Rate { select, .. }
            | IndicatorConfig::DistinctCustomers { select }
            | IndicatorConfig::RepeatCustomers { select, .. }
            | IndicatorConfig::ScoreShare { select, .. }
            | IndicatorConfig::MeanScore { select }
            | IndicatorConfig::Nps { select }
            | IndicatorConfig::Surge { select, .. } => vec![select],
        }
    }

    /// The `kind` name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            IndicatorConfig::Count { .. } => "count",
            IndicatorConfig::Rate { .. } => "rate",
            IndicatorConfig::Ratio { .. } => "ratio",
            IndicatorConfig::DistinctCustomers { .. } => "distinct_customers",
            IndicatorConfig::RepeatCustomers { .. } => "repeat_customers",
            IndicatorConfig::ScoreShare { .. } => "score_share",
            IndicatorConfig::MeanScore { .. } => "mean_score",
            IndicatorConfig::Nps { .. } => "nps",
            IndicatorConfig::Surge { .. } => "surge",
        }
    }
}

/// One alerting rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: lowercase letters, digits and `_`. Appears in metrics and dedup keys.
    pub name: String,
    /// What crisis this rule catches, for responders.
    #[serde(default)]
    pub description: String,
    /// Attributes that define a slice (group), e.g. `["product", "region"]`. Empty: one global group.
    /// An event without one of these attributes is grouped under the empty value.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Sliding window length.
    pub window: Dur,
    /// How far the window moves at a time; must divide `window`. Default: window ÷ 10.
    #[serde(default)]
    pub slide: Option<Dur>,
    /// The measured indicator.
    pub indicator: IndicatorConfig,
    /// Fire above (default) or below the thresholds.
    #[serde(default)]
    pub condition: Condition,
    /// Thresholds per severity.
    pub thresholds: Thresholds,
    /// A firing alert resolves only once the value is back past this (hysteresis).
    /// Default: the lowest severity's threshold.
    #[serde(default)]
    pub clear: Option<f64>,
    /// How long the condition must hold before the alert fires (pending meanwhile).
    #[serde(rename = "for", default)]
    pub for_: Dur,
    /// How long a firing alert keeps firing after the condition clears.
    #[serde(default)]
    pub keep_firing_for: Dur,
    /// Below this volume in the window the indicator is not evaluated (no data).
    #[serde(default)]
    pub min_volume: u64,
    /// Runbook link for responders.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Dashboard link for responders.
    #[serde(default)]
    pub dashboard: Option<String>,
}

impl RuleConfig {
    /// The slide, with its default applied.
    pub fn slide(&self) -> Dur {
        self.slide
            .unwrap_or_else(|| Dur::from_ms((self.window.as_ms() / 10).max(1) as u64))
    }

    /// The clear threshold, with its default applied.
    pub fn clear_threshold(&self) -> Option<f64> {
        let levels = self.thresholds.levels();
        self.clear.or_else(|| levels.first().map(|l| l.1))
    }
}

// === receivers ===

/// The kinds of incident receivers (`contract.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Human-readable lines on standard output.
    Console,
    /// The generic JSON webhook.
    Generic,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Alertmanager `POST /api/v2/alerts`.
    Alertmanager,
}

/// One incident receiver.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name.
    pub name: String,
    /// Format and protocol.
    pub kind: ReceiverKind,
    /// Endpoint URL for the HTTP kinds. An empty URL (e.g. `"${CRISISWATCH_WEBHOOK_URL:-}"`
    /// with the variable unset) disables the receiver.
    #[serde(default)]
    pub url: String,
    /// Environment variable holding the signing secret: every request then carries
    /// `X-Crisiswatch-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing secret (instead of `secret_env`).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// PagerDuty: environment variable holding the integration (routing) key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// PagerDuty: file holding the integration (routing) key.
    #[serde(default)]
    pub routing_key_file: Option<std::path::PathBuf>,
    /// Accept any TLS certificate. Off: certificates are verified; only for test setups.
    #[serde(default)]
    pub tls_skip_verify: bool,
    /// Timeouts, retries, dead-lettering and the circuit breaker.
    #[serde(default)]
    pub delivery: crate::incident::config::DeliveryConfig,
}

// === loading and validation ===

impl Config {
    /// Reads, interpolates, deserializes and validates a config file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text, env)
    }

    /// Parses, interpolates, deserializes and validates config text.
    pub fn from_toml_str(text: &str, env: &dyn Env) -> Result<Config, LoadError> {
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
            LoadError::Invalid(vec![ConfigError::new(
                "",
                "",
                format!("not valid TOML: {}", e.to_string().trim()),
            )])
        })?;
        let mut errors = Vec::new();
        interpolate::interpolate_tree(&mut tree, env, &mut errors);
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }
        let config: Config = serde_path_to_error::deserialize(tree.clone()).map_err(|e| {
            let path = e.path().to_string();
            let value = lookup(&tree, &path).unwrap_or_default();
            let path = if path == "." { String::new() } else { path };
            LoadError::Invalid(vec![ConfigError::new(path, value, e.inner().to_string())])
        })?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(LoadError::Invalid(errors))
        }
    }

    /// Checks everything serde cannot: names, time arithmetic, threshold order.
    /// Returns every problem found (empty when valid).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let e = &self.engine;
        if e.dedup_max_ids == 0 {
            errs.push(ConfigError::new(
                "engine.dedup_max_ids",
                "0",
                "must be at least 1",
            ));
        }
        if e.max_groups_per_rule == 0 {
            errs.push(ConfigError::new(
                "engine.max_groups_per_rule",
                "0",
                "must be at least 1",
            ));
        }
        if e.max_customers_per_group == 0 {
            errs.push(ConfigError::new(
                "engine.max_customers_per_group",
                "0",
                "must be at least 1",
            ));
        }
        if e.max_event_bytes < 64 {
            errs.push(ConfigError::new(
                "engine.max_event_bytes",
                e.max_event_bytes.to_string(),
                "must be at least 64",
            ));
        }
        if e.idle_timeout.0.is_zero() {
            errs.push(ConfigError::new(
                "engine.idle_timeout",
                "0",
                "must be positive",
            ));
        }
        if !self.server.listen.is_empty()
            && self.server.listen.parse::<std::net::SocketAddr>().is_err()
        {
            errs.push(ConfigError::new(
                "server.listen",
                &self.server.listen,
                "not a socket address (host:port with an IP, e.g. 127.0.0.1:9464)",
            ));
        }
        if self.server.max_series_per_rule == 0 {
            errs.push(ConfigError::new(
                "server.max_series_per_rule",
                "0",
                "must be at least 1",
            ));
        }
        self.validate_demo(&mut errs);
        crate::incident::config::validate(self, &mut errs);
        self.validate_sources(&mut errs);
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("rules[{i}].name"),
                    &r.name,
                    "duplicate rule name",
                ));
            }
            validate_rule(i, r, &mut errs);
        }
        let mut rnames = std::collections::HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let p = format!("receivers[{i}]");
            if r.name.is_empty() || !rnames.insert(r.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("{p}.name"),
                    &r.name,
                    "receiver names must be non-empty and unique",
                ));
            }
            if r.kind != ReceiverKind::Console && !r.url.is_empty() {
                let ok = r.url.starts_with("http://") || r.url.starts_with("https://");
                if !ok {
                    errs.push(ConfigError::new(
                        format!("{p}.url"),
                        &r.url,
                        "must be an http:// or https:// URL",
                    ));
                }
            }
        }
        errs
    }

    fn validate_demo(&self, errs: &mut Vec<ConfigError>) {
        let d = &self.demo;
        if crate::event::parse_rfc3339_ms(&d.start).is_none() {
            errs.push(ConfigError::new(
                "demo.start",
                &d.start,
                "not an RFC 3339 time",
            ));
        }
        if !(d.speed.is_finite() && d.speed > 0.0) {
            errs.push(ConfigError::new(
                "demo.speed",
                d.speed.to_string(),
                "must be positive",
            ));
        }
        if !(d.orders_per_minute.is_finite()
            && d.orders_per_minute > 0.0
            && d.orders_per_minute <= 1e6)
        {
            errs.push(ConfigError::new(
                "demo.orders_per_minute",
                d.orders_per_minute.to_string(),
                "must be in (0, 1000000]",
            ));
        }
        if d.duration.0.is_zero() {
            errs.push(ConfigError::new("demo.duration", "0", "must be positive"));
        }
    }

    fn validate_sources(&self, errs: &mut Vec<ConfigError>) {
        if let Some(k) = &self.sources.kafka {
            if k.brokers.trim().is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.brokers",
                    "",
                    "must name at least one broker",
                ));
            }
            if k.group_id.is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.group_id",
                    "",
                    "must not be empty",
                ));
            }
            if k.topics.is_empty() {
                errs.push(ConfigError::new(
                    "sources.kafka.topics",
                    "[]",
                    "must list at least one topic",
                ));
            }
            for (i, t) in k.topics.iter().enumerate() {
                if t.name.is_empty() {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        "",
                        "must not be empty",
                    ));
                }
                if !k.dead_letter_topic.is_empty() && t.name == k.dead_letter_topic {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "the dead-letter topic cannot also be consumed",
                    ));
                }
                if t.name.starts_with('^') {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "regex subscriptions are not supported: list each topic",
                    ));
                }
                if k.topics[..i].iter().any(|o| o.name == t.name) {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].name"),
                        &t.name,
                        "duplicate topic",
                    ));
                }
                if t.default_type.as_deref() == Some("") {
                    errs.push(ConfigError::new(
                        format!("sources.kafka.topics[{i}].default_type"),
                        "",
                        "must not be empty (leave it out for no default)",
                    ));
                }
            }
            self.validate_kafka_tuning(k, errs);
        }
    }

    fn validate_kafka_tuning(&self, k: &KafkaSourceConfig, errs: &mut Vec<ConfigError>) {
        for (key, d) in [
            ("commit_interval", k.commit_interval),
            ("idle_partition_timeout", k.idle_partition_timeout),
            ("stall_timeout", k.stall_timeout),
            ("shutdown_timeout", k.shutdown_timeout),
        ] {
            if d.0.is_zero() {
                errs.push(ConfigError::new(
                    format!("sources.kafka.{key}"),
                    "0",
                    "must be positive",
                ));
            }
        }
        for (key, n) in [
            ("max_batch_messages", k.max_batch_messages),
            ("channel_capacity", k.channel_capacity),
            ("dlq_max_in_flight", k.dlq_max_in_flight),
        ] {
            if n == 0 {
                errs.push(ConfigError::new(
                    format!("sources.kafka.{key}"),
                    "0",
                    "must be at least 1",
                ));
            }
        }
        // crisiswatch owns these: overriding them would break at-least-once delivery.
        for (key, why) in [
            ("bootstrap.servers", "set sources.kafka.brokers instead"),
            ("group.id", "set sources.kafka.group_id instead"),
            (
                "enable.auto.commit",
                "offsets are committed by crisiswatch after events are applied",
            ),
            (
                "enable.auto.offset.store",
                "offsets are committed by crisiswatch after events are applied",
            ),
        ] {
            if let Some(v) = k.properties.get(key) {
                errs.push(ConfigError::new(
                    format!("sources.kafka.properties.\"{key}\""),
                    v,
                    why,
                ));
            }
        }
    }
}

fn validate_rule(i: usize, r: &RuleConfig, errs: &mut Vec<ConfigError>) {
    let p = format!("rules[{i}]");
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        errs.push(ConfigError::new(
            format!("{p}.name"),
            &r.name,
            "use lowercase letters, digits and `_` only",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, g) in r.group_by.iter().enumerate() {
        if g.is_empty() || !seen.insert(g) {
            errs.push(ConfigError::new(
                format!("{p}.group_by[{j}]"),
                g,
                "group_by attributes must be non-empty and unique",
            ));
        }
    }
    let window = r.window.as_ms();
    let slide = r.slide().as_ms();
    if window <= 0 {
        errs.push(ConfigError::new(
            format!("{p}.window"),
            r.window.to_string(),
            "must be positive",
        ));
    } else if slide <= 0 || window % slide != 0 {
        errs.push(ConfigError::new(
            format!("{p}.slide"),
            r.slide().to_string(),
            format!("must be positive and divide the window ({})", r.window),
        ));
    } else if window / slide > 1000 {
        errs.push(ConfigError::new(
            format!("{p}.slide"),
            r.slide().to_string(),
            "window ÷ slide must be at most 1000 panes",
        ));
    }
    match &r.indicator {
        IndicatorConfig::Ratio {
            min_denominator, ..
        } if *min_denominator == 0 => {
            errs.push(ConfigError::new(
                format!("{p}.indicator.min_denominator"),
                "0",
                "must be at least 1",
            ));
        }
        IndicatorConfig::RepeatCustomers { min_events, .. } if *min_events == 0 => {
            errs.push(ConfigError::new(
                format!("{p}.indicator.min_events"),
                "0",
                "must be at least 1",
            ));
        }
        IndicatorConfig::ScoreShare { min, max, .. }
            if !(min.is_finite() && max.is_finite() && min <= max) =>
        {
            errs.push(ConfigError::new(
                format!("{p}.indicator"),
                format!("min = {min}, max = {max}"),
                "min and max must be finite with min ≤ max",
            ));
        }
        IndicatorConfig::Surge {
            baseline,
            min_baseline,
            ..
        } => {
            let b = baseline.as_ms();
            if b <= 0 || (slide > 0 && b % slide != 0) {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    format!(
                        "must be positive and a multiple of the slide ({})",
                        r.slide()
                    ),
                ));
            } else if slide > 0 && (b + window) / slide > 10_000 {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    "(baseline + window) ÷ slide must be at most 10000 panes",
                ));
            }
            if !(min_baseline.is_finite() && *min_baseline > 0.0) {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.min_baseline"),
                    min_baseline.to_string(),
                    "must be positive",
                ));
            }
        }
        _ => {}
    }
    for (k, sel) in r.indicator.selectors().into_iter().enumerate() {
        let mut check = |path: String, m: &ValueMatch| {
            let vals = match m {
                ValueMatch::Is(v) | ValueMatch::Not(NotMatch { not: v }) => v.to_vec(),
            };
            if vals.is_empty() {
                errs.push(ConfigError::new(path, "[]", "needs at least one value"));
            }
        };
        if let Some(m) = &sel.kind {
            check(format!("{p}.indicator.selector[{k}].type"), m);
        }
        for (a, m) in &sel.attrs {
            check(format!("{p}.indicator.selector[{k}].attrs.{a}"), m);
        }
    }
    let levels = r.thresholds.levels();
    if levels.is_empty() {
        errs.push(ConfigError::new(
            format!("{p}.thresholds"),
            "{}",
            "set at least one of info, warning, error, critical",
        ));
    }
    for (s, v) in &levels {
        if !v.is_finite() {
            errs.push(ConfigError::new(
                format!("{p}.thresholds.{s}"),
                v.to_string(),
                "must be a finite number",
            ));
        }
    }
    for w in levels.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        let ordered = match r.condition {
            Condition::Above => v1 > v0,
            Condition::Below => v1 < v0,
        };
        if !ordered {
            errs.push(ConfigError::new(
                format!("{p}.thresholds.{s1}"),
                v1.to_string(),
                format!(
                    "must be {} the {s0} threshold ({v0}) for condition = {:?}",
                    if r.condition == Condition::Above {
                        "above"
                    } else {
                        "below"
                    },
                    r.condition
                ),
            ));
        }
    }
    if let (Some(c), Some((_, lowest))) = (r.clear, levels.first()) {
        let ok = c.is_finite()
            && match r.condition {
                Condition::Above => c <= *lowest,
                Condition::Below => c >= *lowest,
            };
        if !ok {
            errs.push(ConfigError::new(
                format!("{p}.clear"),
                c.to_string(),
                format!(
                    "must be on the healthy side of the lowest threshold ({lowest}): {} for condition = {:?}",
                    if r.condition == Condition::Above { "≤" } else { "≥" },
                    r.condition
                ),
            ));
        }
    }
}

/// Renders the value at a serde_path_to_error path (`rules[0].window`) for error messages.
fn lookup(tree: &toml::Value, path: &str) -> Option<String> {
    let mut cur = tree;
    for part in path.split('.') {
        if part.is_empty() {
            continue;
        }
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(match cur {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
