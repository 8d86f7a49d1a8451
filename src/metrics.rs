//! Prometheus metrics (`docs/contract.md` §5): the service's own health and every
//! indicator against its thresholds.
//!
//! A sink at the edge of the data flow. The engine keeps plain counters; the
//! driver (demo, live service) calls [`Metrics::publish`] once per batch, which
//! copies them into the registry and snapshots every rule's groups. Indicator
//! series carry the rule's `group_by` attributes as labels, so their label set
//! differs per rule; they are rendered from the snapshot at scrape time.
//! Series per rule are capped by `server.max_series_per_rule`: alerting groups
//! first, then the highest values; the rest are counted in
//! `crisiswatch_indicator_series_dropped`.

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alert::State;
use crate::engine::{EngineStats, EngineView, RuleStats};
use crate::event::InvalidReason;

mod exposition;
mod latency;

pub use exposition::phase_name;
use exposition::render_indicators;
pub(crate) use exposition::{label_name, label_names};

use latency::Latencies;
pub use latency::Recorder;

/// Errors creating the metrics registry.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered.
    #[error("cannot register metric: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// One exported indicator series.
#[derive(Debug, Clone)]
struct Series {
    labels: Vec<(String, String)>,
    value: Option<f64>,
    /// The point estimate when the rule judges a confidence bound.
    estimate: Option<f64>,
    state: i64,
}

/// Per-rule data rendered at scrape time.
#[derive(Debug, Clone, Default)]
struct RuleSnapshot {
    name: String,
    kind: String,
    /// `above` or `below`: which side of the thresholds pages (dashboards
    /// rank a `below` rule's slices lowest first).
    condition: &'static str,
    thresholds: Vec<(String, f64)>,
    clear: f64,
    series: Vec<Series>,
}

/// The registry and every metric of the process.
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    invalid: IntCounterVec,
    transitions: IntCounterVec,
    rule_late: IntCounterVec,
    rule_selected: IntCounterVec,
    group_overflow: IntCounterVec,
    responses: IntCounterVec,
    backlog_overflow: IntCounterVec,
    evaluations: IntCounterVec,
    groups: IntGaugeVec,
    customers_uncounted: IntGaugeVec,
    series_dropped: IntGaugeVec,
    dedup_ids: IntGauge,
    dedup_evicted: IntCounter,
    /// The engine's early-eviction count at the last publish.
    dedup_evicted_seen: Mutex<u64>,
    watermark: Gauge,
    watermark_delay: Gauge,
    /// Valid events received and not applied yet (see [`Metrics::set_held`]).
    events_held: IntGauge,
    /// Incremented by the driver for each batch published.
    pub(crate) batches: IntCounter,
    max_series: usize,
    received: IntCounterVec,
    latency: Mutex<Latencies>,
    last: Mutex<(EngineStats, Vec<RuleStats>)>,
    snapshot: Mutex<Vec<RuleSnapshot>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Creates and registers a labelled counter.
pub(crate) fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Creates and registers a labelled gauge.
pub(crate) fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Creates the registry with every static metric registered.
    pub fn new(max_series_per_rule: usize) -> Result<Arc<Self>, MetricsError> {
        let r = Registry::new();
        let events = counter_vec(
            &r,
            "crisiswatch_events_total",
            "Valid events by what the engine did with them (applied, duplicate, late, unmatched, overflow).",
            &["outcome"],
        )?;
        let invalid = counter_vec(
            &r,
            "crisiswatch_events_invalid_total",
            "Inputs rejected by the decoder, by reason.",
            &["reason"],
        )?;
        for reason in InvalidReason::ALL {
            invalid.with_label_values(&[reason.as_str()]);
        }
        for o in ["applied", "duplicate", "late", "unmatched", "overflow"] {
            events.with_label_values(&[o]);
        }
        let transitions = counter_vec(
            &r,
            "crisiswatch_alert_transitions_total",
            "Alert transitions by rule and new state.",
            &["rule", "state"],
        )?;
        let rule_late = counter_vec(
            &r,
            "crisiswatch_rule_events_late_total",
            "Events older than watermark minus the rule's window, dropped for that rule.",
            &["rule"],
        )?;
        let rule_selected = counter_vec(
            &r,
            "crisiswatch_rule_events_selected_total",
            "Events a rule's selectors took, late ones included: crisiswatch_rule_events_late_total over this is the share the rule drops as late.",
            &["rule"],
        )?;
        let group_overflow = counter_vec(
            &r,
            "crisiswatch_window_group_overflow_total",
            "Events of new groups dropped because the rule's group cap was reached.",
            &["rule"],
        )?;
        let responses = counter_vec(
            &r,
            "crisiswatch_responses_total",
            "Responses of an unanswered rule: received (all with a ref_id), first (each complaint once; early included), early (before their complaint), repeat. Unknown so far: received - first - repeat.",
            &["rule", "outcome"],
        )?;
        let backlog_overflow = counter_vec(
            &r,
            "crisiswatch_backlog_overflow_total",
            "Complaints or early responses an unanswered rule did not track: its book was full (engine.dedup_max_ids).",
            &["rule"],
        )?;
        let evaluations = counter_vec(
            &r,
            "crisiswatch_rule_evaluations_total",
            "Window evaluations per rule.",
            &["rule"],
        )?;
        let groups = gauge_vec(
            &r,
            "crisiswatch_window_groups",
            "Live window groups per rule.",
            &["rule"],
        )?;
        let customers_uncounted = gauge_vec(
            &r,
            "crisiswatch_window_customers_uncounted",
            "Events not counted per customer since the start because a slice reached engine.max_customers_per_group: the rule's distinct and repeat figures are capped there.",
            &["rule"],
        )?;
        let series_dropped = gauge_vec(
            &r,
            "crisiswatch_indicator_series_dropped",
            "Groups not exported as indicator series because of server.max_series_per_rule.",
            &["rule"],
        )?;
        let dedup_ids = IntGauge::new(
            "crisiswatch_dedup_ids",
            "Event ids remembered for deduplication.",
        )?;
        r.register(Box::new(dedup_ids.clone()))?;
        let dedup_evicted = IntCounter::new(
            "crisiswatch_dedup_evicted_total",
            "Event ids forgotten before engine.dedup_horizon because the dedup memory held engine.dedup_max_ids: a redelivery of one counts again. Raise dedup_max_ids (about events per second x horizon in seconds).",
        )?;
        r.register(Box::new(dedup_evicted.clone()))?;
        let watermark = Gauge::new(
            "crisiswatch_watermark_timestamp_seconds",
            "The engine watermark (event time), Unix seconds.",
        )?;
        r.register(Box::new(watermark.clone()))?;
        let watermark_delay = Gauge::new(
            "crisiswatch_watermark_delay_seconds",
            "Wall-clock time minus the watermark (meaningful in live mode).",
        )?;
        r.register(Box::new(watermark_delay.clone()))?;
        let events_held = IntGauge::new(
            "crisiswatch_events_held",
            "Valid events received and not yet applied: waiting for the watermark (behind a slower partition, allowed_lateness) or held as an unconfirmed clock jump. Received = sum of crisiswatch_events_total + this.",
        )?;
        r.register(Box::new(events_held.clone()))?;
        let batches = IntCounter::new("crisiswatch_batches_total", "Batches of events processed.")?;
        r.register(Box::new(batches.clone()))?;
        let received = counter_vec(
            &r,
            "crisiswatch_events_received_total",
            "Valid events received, by source (topic, file, demo) and event type (types named by rules, else \"other\").",
            &["source", "type"],
        )?;
        Ok(Arc::new(Metrics {
            registry: r,
            events,
            invalid,
            transitions,
            rule_late,
            rule_selected,
            group_overflow,
            responses,
            backlog_overflow,
            evaluations,
            groups,
            customers_uncounted,
            series_dropped,
            dedup_ids,
            dedup_evicted,
            dedup_evicted_seen: Mutex::new(0),
            watermark,
            watermark_delay,
            events_held,
            batches,
            max_series: max_series_per_rule.max(1),
            received,
            latency: Mutex::new(Latencies::new()),
            last: Mutex::new((EngineStats::default(), Vec::new())),
            snapshot: Mutex::new(Vec::new()),
        }))
    }

    /// The registry, for other modules to add their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts transitions (call with each batch's transitions).
    pub(crate) fn record_transitions<'a>(
        &self,
        ts: impl IntoIterator<Item = &'a crate::alert::Transition>,
    ) {
        for t in ts {
            self.transitions
                .with_label_values(&[t.rule.as_str(), t.state.as_str()])
                .inc();
        }
    }

    /// Copies the engine's counters and groups into the metrics. `now_ms` is the wall clock.
    pub fn publish(&self, engine: &impl EngineView, now_ms: i64) {
        let stats = engine.counters();
        let rules: Vec<RuleStats> = (0..engine.rule_count())
            .map(|i| engine.rule_counters(i))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (prev, prev_rules) = &mut *last;
        self.add_counts(engine, (&stats, &rules), (prev, prev_rules));
        *prev = stats;
        *prev_rules = rules;
        drop(last);
        self.publish_groups(engine, now_ms);
    }

    /// Counts from `engine`'s counters as they stand: what a restored
    /// checkpoint brought is not added to the counters. A process's
    /// Prometheus counters start at zero; restored totals added at the first
    /// publish made them jump, and after a crash (a checkpoint older than the
    /// last scrape) go *down*: a counter reset to Prometheus, whose `rate()`
    /// and `increase()` then counted the whole restored total again.
    pub(crate) fn count_from(&self, engine: &impl EngineView) {
        let stats = engine.counters();
        let rules: Vec<RuleStats> = (0..engine.rule_count())
            .map(|i| engine.rule_counters(i))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (stats, rules);
    }

    /// The engine-wide outcome counts published so far
    /// (`crisiswatch_events_total`): a scaled instance's stop summary.
    pub(crate) fn published_outcomes(&self) -> EngineStats {
        let get = |o: &str| self.events.with_label_values(&[o]).get();
        EngineStats {
            applied: get("applied"),
            duplicates: get("duplicate"),
            late: get("late"),
            unmatched: get("unmatched"),
            overflow: get("overflow"),
            ..EngineStats::default()
        }
    }

    /// Adds to the counters what `now` counts beyond `before` (engine-wide,
    /// then per rule of `engine`; a rule missing from `before` counts from
    /// zero). [`Metrics::publish`] keeps `before` itself; the shard owners
    /// of a scaled instance keep it per owned partition, whose engines come
    /// and go with rebalances.
    pub(crate) fn add_counts(
        &self,
        engine: &impl EngineView,
        (stats, rules): (&EngineStats, &[RuleStats]),
        (prev, prev_rules): (&EngineStats, &[RuleStats]),
    ) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        for (o, now, before) in [
            ("applied", stats.applied, prev.applied),
            ("duplicate", stats.duplicates, prev.duplicates),
            ("late", stats.late, prev.late),
            ("unmatched", stats.unmatched, prev.unmatched),
            ("overflow", stats.overflow, prev.overflow),
        ] {
            self.events.with_label_values(&[o]).inc_by(d(now, before));
        }
        for r in InvalidReason::ALL {
            let i = r.index();
            self.invalid
                .with_label_values(&[r.as_str()])
                .inc_by(d(stats.invalid[i], prev.invalid[i]));
        }
        let zero = RuleStats::default();
        for (i, rs) in rules.iter().enumerate().take(engine.rule_count()) {
            let pr = prev_rules.get(i).unwrap_or(&zero);
            let cfg = engine.rule_config(i);
            let name = cfg.name.as_str();
            self.rule_late
                .with_label_values(&[name])
                .inc_by(d(rs.late, pr.late));
            self.rule_selected
                .with_label_values(&[name])
                .inc_by(d(rs.selected, pr.selected));
            self.group_overflow
                .with_label_values(&[name])
                .inc_by(d(rs.group_overflow, pr.group_overflow));
            if matches!(
                cfg.indicator,
                crate::config::IndicatorConfig::Unanswered { .. }
                    | crate::config::IndicatorConfig::ResponseTime { .. }
            ) {
                for (o, now, before) in [
                    ("first", rs.responses_first, pr.responses_first),
                    ("early", rs.responses_early, pr.responses_early),
                    ("repeat", rs.responses_repeat, pr.responses_repeat),
                    ("received", rs.responses, pr.responses),
                ] {
                    self.responses
                        .with_label_values(&[name, o])
                        .inc_by(d(now, before));
                }
                self.backlog_overflow
                    .with_label_values(&[name])
                    .inc_by(d(rs.backlog_overflow, pr.backlog_overflow));
            }
            self.evaluations
                .with_label_values(&[name])
                .inc_by(d(rs.evaluations, pr.evaluations));
        }
    }

    /// Copies the engine's groups (live groups, indicator series), dedup
    /// size and watermark into the metrics. `now_ms` is the wall clock.
    pub(crate) fn publish_groups(&self, engine: &impl EngineView, now_ms: i64) {
        let mut snaps = Vec::with_capacity(engine.rule_count());
        for i in 0..engine.rule_count() {
            let cfg = engine.rule_config(i);
            let name = cfg.name.as_str();
            for s in [
                State::Pending,
                State::Firing,
                State::Escalated,
                State::Resolved,
            ] {
                self.transitions.with_label_values(&[name, s.as_str()]);
            }
            self.groups
                .with_label_values(&[name])
                .set(engine.live_groups(i) as i64);
            self.customers_uncounted
                .with_label_values(&[name])
                .set(i64::try_from(engine.customers_uncounted(i)).unwrap_or(i64::MAX));
            let (top, total) = engine.worst_groups(i, self.max_series);
            let series: Vec<Series> = top
                .into_iter()
                .map(|g| Series {
                    labels: label_names(g.group.iter().map(|(k, _)| k.as_str()))
                        .into_iter()
                        .zip(g.group.into_iter().map(|(_, v)| v))
                        .collect(),
                    value: g.value,
                    estimate: g.estimate,
                    state: g.phase.code(),
                })
                .collect();
            // Alerting groups first, then the highest values (see `Engine::top_groups`).
            let dropped = total.saturating_sub(series.len());
            self.series_dropped
                .with_label_values(&[name])
                .set(dropped as i64);
            snaps.push(RuleSnapshot {
                name: cfg.name.clone(),
                kind: cfg.indicator.kind_name().to_string(),
                condition: match cfg.condition {
                    crate::config::Condition::Above => "above",
                    crate::config::Condition::Below => "below",
                },
                thresholds: cfg
                    .thresholds
                    .levels()
                    .into_iter()
                    .map(|(s, v)| (s.as_str().to_string(), v))
                    .collect(),
                clear: cfg.clear_threshold().unwrap_or(0.0),
                series,
            });
        }
        self.dedup_ids.set(engine.dedup_len() as i64);
        let evicted = engine.dedup_evicted();
        let mut seen = self
            .dedup_evicted_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if evicted > *seen {
            if self.dedup_evicted.get() == 0 {
                tracing::warn!(
                    held = engine.dedup_len(),
                    "The dedup memory is full (engine.dedup_max_ids): event ids are forgotten before \
                     engine.dedup_horizon, so a redelivery of one would count twice. Raise \
                     engine.dedup_max_ids to about events per second x the horizon in seconds \
                     (crisiswatch_dedup_evicted_total counts them)."
                );
            }
            self.dedup_evicted.inc_by(evicted - *seen);
        }
        // Lower after a restore or a rebalance (engines come and go).
        *seen = evicted;
        if let Some(w) = engine.watermark() {
            self.watermark.set(w as f64 / 1000.0);
            self.watermark_delay.set((now_ms - w) as f64 / 1000.0);
        }
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snaps;
    }

    /// Valid events `run` received and has not applied yet (its sequencer
    /// and clock-jump guards hold them), so that received events reconcile
    /// with their outcomes at any moment.
    pub(crate) fn set_held(&self, n: usize) {
        self.events_held.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Moves a driver's per-batch counts and latencies into the metrics.
    pub(crate) fn absorb(&self, source: &str, rec: &mut Recorder) {
        for (i, n) in rec.received.iter_mut().enumerate() {
            if *n > 0 {
                let kind = rec.types.get(i).map_or("other", String::as_str);
                self.received.with_label_values(&[source, kind]).inc_by(*n);
                *n = 0;
            }
        }
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        l.absorb(rec);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "Failed to encode metrics.");
        }
        let mut out = String::from_utf8(buf).unwrap_or_default();
        let snaps = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        render_indicators(&snaps, &mut out);
        drop(snaps);
        let l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        l.render(&mut out);
        out
    }
}
