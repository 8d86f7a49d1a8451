//! The engine, state, source and demo sections, and the receivers'
//! kinds (the `[server]` section: `server.rs`).

use serde::{Deserialize, Serialize};

use super::*;

/// Settings of the deterministic core.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// How far behind the newest event time an event may arrive and still count.
    /// The watermark is the newest event time minus this; an event older than
    /// watermark − window is late (counted, dropped).
    #[serde(default = "default_allowed_lateness")]
    pub(crate) allowed_lateness: Dur,
    /// A repeated event `id` within this much event time is counted once. `"0"` disables.
    #[serde(default = "default_dedup_horizon")]
    pub(crate) dedup_horizon: Dur,
    /// Upper bound on ids remembered for deduplication: at least events per
    /// second × `dedup_horizon` in seconds, else ids are forgotten early
    /// (`crisiswatch_dedup_evicted_total`).
    #[serde(default = "default_dedup_max_ids")]
    pub(crate) dedup_max_ids: usize,
    /// Events stamped further than this in the future of the wall clock are invalid.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: Dur,
    /// An event stamped further than this ahead of the stream's clock (the
    /// newest event time so far) does not move the clock by itself: it is held
    /// aside until `clock_jump_confirm` further events beyond the old clock,
    /// all within this of one another, confirm the jump (a real gap in the
    /// history), or as many events within it refute it (then it is invalid,
    /// `clock_jump`). "0" turns this off.
    #[serde(default = "default_max_clock_jump")]
    pub max_clock_jump: Dur,
    /// Events that confirm or refute a clock jump (1–1000).
    #[serde(default = "default_clock_jump_confirm")]
    pub clock_jump_confirm: u32,
    /// A stretch at least this long in which the whole stream had no valid
    /// event (a business closed for the night or the weekend, a feed
    /// outage) is not history for a surge: its panes are left out of the
    /// baseline instead of counting as zeros, which made ordinary traffic
    /// look like a surge when it came back. "0" turns this off.
    #[serde(default = "default_silence_after")]
    pub silence_after: Dur,
    /// Events larger than this many bytes are invalid (`oversized`); 64 bytes
    /// to 256 MiB.
    #[serde(default = "default_max_event_bytes")]
    pub(crate) max_event_bytes: usize,
    /// Live groups (slices) kept per rule; events of new groups beyond it are counted as overflow.
    #[serde(default = "default_max_groups_per_rule")]
    pub(crate) max_groups_per_rule: usize,
    /// Distinct customers tracked per group by customer-level indicators.
    #[serde(default = "default_max_customers_per_group")]
    pub(crate) max_customers_per_group: usize,
    /// Live mode: when no event arrives for this long, event time advances with the wall clock
    /// so quiet slices still resolve.
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout: Dur,
    /// Event ids kept per alert as evidence.
    #[serde(default = "default_sample_event_ids")]
    pub(crate) sample_event_ids: usize,
    /// Valid `score` values, `[min, max]` inclusive: an event with a score
    /// outside is invalid (`out_of_range`), so a stray value (a score of 1e16,
    /// a CSAT stream scored in percent) cannot distort every score indicator.
    #[serde(default = "default_score_range")]
    pub(crate) score_range: [f64; 2],
    /// Valid `sentiment` values, `[min, max]` inclusive; outside is `out_of_range`.
    #[serde(default = "default_sentiment_range")]
    pub(crate) sentiment_range: [f64; 2],
    /// `run`: worker threads of the engine (0–256). Default `0`, automatic:
    /// the cores available but one, at least 1 — the other core is the Kafka
    /// consumer thread's and the routing's (each event is decoded, deduplicated
    /// and routed once on the engine task's thread before the workers share
    /// the per-group work). On a 2-core machine that is 1 worker: 2 measured
    /// ×0.86–0.92 of 1 there (`kafka_throughput`), the consumer thread
    /// having no core of its own. The output is identical whatever the number.
    #[serde(default = "default_workers")]
    pub(crate) workers: usize,
    /// State shards (1–4096): (rule, group) pairs are split into this many
    /// shards by a stable hash, and the workers share them out.
    #[serde(default = "default_shards")]
    pub(crate) shards: u32,
}

/// Automatic: the cores available but one (see the field's docs).
fn default_workers() -> usize {
    0
}

/// `engine.shards`' default ([`DEFAULT_SHARDS`](crate::config::DEFAULT_SHARDS)).
fn default_shards() -> u32 {
    super::DEFAULT_SHARDS
}

/// 1 minute: producers and brokers reorder events by seconds, rarely by minutes.
fn default_allowed_lateness() -> Dur {
    Dur::mins(1)
}
/// 10 minutes, from `docs/contract.md` §1.
fn default_dedup_horizon() -> Dur {
    Dur::mins(10)
}
/// 4,000,000 ids: ten minutes of a 6,667 events/s stream. The memory grows
/// with the ids a stream brings (27–53 bytes each: the flat set between 3/8
/// and 3/4 full and the expiry queue), so a slower stream pays only for its
/// own: about 135 MB when full.
fn default_dedup_max_ids() -> usize {
    4_000_000
}
/// 5 minutes, from `docs/contract.md` §2.
fn default_max_future_skew() -> Dur {
    Dur::mins(5)
}
/// One day: far beyond producer clock skew and the disorder of a stream, well
/// within the span of a history file; a longer real gap is confirmed by the
/// events after it.
fn default_max_clock_jump() -> Dur {
    Dur::mins(24 * 60)
}
/// Three events: one stray stamp (or two) cannot move the clock; a real gap is
/// followed by the whole rest of the stream.
fn default_clock_jump_confirm() -> u32 {
    3
}
/// Six hours: longer than a quiet night of a busy stream, shorter than a
/// weekend closure or an outage worth the name; a stream so sparse that it
/// often has no event at all for six hours has too few for a surge anyway.
fn default_silence_after() -> Dur {
    Dur::mins(6 * 60)
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
/// NPS's 0–10, from `docs/contract.md` §1 (a CSAT 1–5 stream fits inside it; set
/// `[1, 5]` to reject anything else).
fn default_score_range() -> [f64; 2] {
    [0.0, 10.0]
}
/// [-1, 1], from `docs/contract.md` §1.
fn default_sentiment_range() -> [f64; 2] {
    [-1.0, 1.0]
}
/// `engine.workers` resolved on a machine with `cores` cores: `0` is the
/// cores but the one the consumer thread and the routing use (at least 1);
/// never more workers than shards.
pub(crate) fn workers_for(configured: usize, cores: usize, shards: u32) -> usize {
    let n = if configured == 0 {
        cores.saturating_sub(1)
    } else {
        configured
    };
    n.clamp(1, shards.max(1) as usize)
}

/// Largest magnitude of a `score_range` bound: scores are summed in
/// thousandths in 64-bit pane counters, so ±10⁶ leaves room for 9·10⁹ events
/// at the bound before a counter saturates.
pub(crate) const MAX_SCORE_BOUND: f64 = 1e6;

impl EngineConfig {
    /// Worker threads for `run`: `workers`, or when 0 the cores available
    /// but one (at least 1); never more than the shards.
    pub(crate) fn worker_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        workers_for(self.workers, cores, self.shards)
    }

    /// The limits the decoder applies to every input under these settings:
    /// the one place the engine, the live pipeline and the history tools get
    /// them from, so they validate events alike.
    pub(crate) fn decode_limits(&self) -> crate::event::DecodeLimits {
        crate::event::DecodeLimits {
            max_event_bytes: self.max_event_bytes,
            max_future_skew_ms: self.max_future_skew.as_ms(),
            max_clock_jump_ms: self.max_clock_jump.as_ms(),
            clock_jump_confirm: self.clock_jump_confirm.max(1),
            score_range: (self.score_range[0], self.score_range[1]),
            sentiment_range: (self.sentiment_range[0], self.sentiment_range[1]),
        }
    }
}

/// Durable engine state of `crisiswatch run` (checkpoints, see `src/state.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// How often the live service writes a checkpoint of the engine (also on
    /// a partition revoke and a graceful stop). `"0"` turns durable state off:
    /// a restart then starts empty from the committed offsets.
    #[serde(default = "default_checkpoint_interval")]
    pub(crate) checkpoint_interval: Dur,
    /// Directory of `state.sqlite`; empty (the default) means `incidents.data_dir`.
    #[serde(default)]
    pub(crate) dir: String,
}

/// 10 seconds: a restart re-reads at most ten seconds of the stream, and a
/// checkpoint of 100,000 groups takes a fraction of that (see benches).
fn default_checkpoint_interval() -> Dur {
    Dur::secs(10)
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            checkpoint_interval: default_checkpoint_interval(),
            dir: String::new(),
        }
    }
}

impl StateConfig {
    /// The state directory: `dir`, or `incidents.data_dir` when empty.
    pub(crate) fn dir_or<'a>(&'a self, data_dir: &'a str) -> &'a str {
        if self.dir.is_empty() {
            data_dir
        } else {
            &self.dir
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: default_allowed_lateness(),
            dedup_horizon: default_dedup_horizon(),
            dedup_max_ids: default_dedup_max_ids(),
            max_future_skew: default_max_future_skew(),
            max_clock_jump: default_max_clock_jump(),
            clock_jump_confirm: default_clock_jump_confirm(),
            silence_after: default_silence_after(),
            max_event_bytes: default_max_event_bytes(),
            max_groups_per_rule: default_max_groups_per_rule(),
            max_customers_per_group: default_max_customers_per_group(),
            idle_timeout: default_idle_timeout(),
            sample_event_ids: default_sample_event_ids(),
            score_range: default_score_range(),
            sentiment_range: default_sentiment_range(),
            workers: default_workers(),
            shards: default_shards(),
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
    /// Credentials (`sasl.password`, `ssl.key.password`, …) should come from the
    /// environment (`"${KAFKA_SASL_PASSWORD}"`); they print and serialise as `**REDACTED**`.
    #[serde(default)]
    pub properties: KafkaProperties,
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
    /// Several instances share the state shards through internal topics (absent: off).
    #[serde(default)]
    pub scale_out: Option<ScaleOutConfig>,
}

impl KafkaSourceConfig {
    /// The consumer session timeout in ms: `session.timeout.ms` of
    /// `properties`, else librdkafka's default (45 s).
    pub fn session_timeout_ms(&self) -> u64 {
        self.properties
            .get("session.timeout.ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(45_000)
    }

    /// The pass-through `properties` a producer or an admin client takes:
    /// all but librdkafka's consumer-only ones (`session.timeout.ms`,
    /// `group.id`, `fetch.*` …), which such a client logs a `CONFWARN` for
    /// at every start.
    pub(crate) fn producer_properties(&self) -> impl Iterator<Item = (&String, &String)> {
        self.properties
            .iter()
            .filter(|(k, _)| !CONSUMER_ONLY.contains(&k.as_str()))
    }
}

/// librdkafka's consumer-only properties (`C` in its CONFIGURATION.md, 2.12).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// "crisiswatch": one group per deployment.
fn default_group_id() -> String {
    "crisiswatch".to_string()
}
/// 5 seconds: librdkafka's own `auto.commit.interval.ms`; a restart re-reads at most this much.
fn default_commit_interval() -> Dur {
    Dur::secs(5)
}
/// 10 s: a third of `engine.idle_timeout` (one quiet partition is released first).
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
/// 1,000 messages: amortises the hand-off; at most 8,000 (≈ 4 MB) wait between stages.
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
    pub(crate) seed: u64,
    /// Simulated start (RFC 3339).
    #[serde(default = "default_demo_start")]
    pub(crate) start: String,
    /// Simulated period.
    #[serde(default = "default_demo_duration")]
    pub(crate) duration: Dur,
    /// Simulated seconds per wall-clock second.
    #[serde(default = "default_demo_speed")]
    pub(crate) speed: f64,
    /// Orders per minute across all slices at the daily peak.
    #[serde(default = "default_demo_orders_per_minute")]
    pub(crate) orders_per_minute: f64,
    /// Inject the playbook crises.
    #[serde(default = "default_true")]
    pub(crate) crises: bool,
    /// Inject malformed lines, duplicate ids and out-of-order events.
    #[serde(default = "default_true")]
    pub(crate) noise: bool,
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

// === receivers ===

/// The kinds of incident receivers (`docs/contract.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReceiverKind {
    /// Human-readable lines on standard output.
    Console,
    /// The generic JSON webhook.
    Generic,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Alertmanager `POST /api/v2/alerts`.
    Alertmanager,
}

/// Built-in trust roots of a receiver's TLS connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TlsRoots {
    /// Mozilla's root certificates, compiled in (webpki-roots): the same on
    /// every host, which is why it is the default.
    #[default]
    Bundled,
    /// The operating system's store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`),
    /// where a company CA is usually installed.
    System,
    /// None: only the certificates of `ca_file`.
    None,
}

/// Which signature headers a receiver with a secret gets (`docs/contract.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SignatureScheme {
    /// Both: the Standard Webhooks headers and `X-Crisiswatch-Signature`, so
    /// receivers written for either verify (the default).
    #[default]
    Both,
    /// Once only the Standard Webhooks headers; the contract has
    /// `X-Crisiswatch-Signature` on every signed request, so it now means
    /// [`SignatureScheme::Both`] (accepted, so a configuration that names it
    /// still loads; the receiver logs a warning).
    StandardWebhooks,
    /// Only the older `X-Crisiswatch-Signature` (HMAC of the body alone).
    Crisiswatch,
}

impl SignatureScheme {
    /// Whether the Standard Webhooks headers are sent.
    pub(crate) fn standard(self) -> bool {
        self != SignatureScheme::Crisiswatch
    }

    /// Whether `X-Crisiswatch-Signature` is sent: always, the contract's
    /// header (`docs/contract.md` §4: every request carries it when a
    /// signing secret is configured).
    pub(crate) fn legacy(self) -> bool {
        true
    }
}
