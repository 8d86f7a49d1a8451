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

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::alert::{Phase, State};
use crate::engine::{EngineStats, EngineView, RuleStats};
use crate::event::InvalidReason;

mod latency;

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
    group_overflow: IntCounterVec,
    responses: IntCounterVec,
    backlog_overflow: IntCounterVec,
    evaluations: IntCounterVec,
    groups: IntGaugeVec,
    customers_uncounted: IntGaugeVec,
    series_dropped: IntGaugeVec,
    dedup_ids: IntGauge,
    watermark: Gauge,
    watermark_delay: Gauge,
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
            group_overflow,
            responses,
            backlog_overflow,
            evaluations,
            groups,
            customers_uncounted,
            series_dropped,
            dedup_ids,
            watermark,
            watermark_delay,
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
        if let Some(w) = engine.watermark() {
            self.watermark.set(w as f64 / 1000.0);
            self.watermark_delay.set((now_ms - w) as f64 / 1000.0);
        }
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snaps;
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

/// A label name from an attribute name: `[a-zA-Z_][a-zA-Z0-9_]*`, never a reserved one.
pub(crate) fn label_name(attr: &str) -> String {
    let mut s: String = attr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("__") {
        s.insert_str(0, "attr_");
    }
    if matches!(
        s.as_str(),
        "rule" | "severity" | "kind" | "le" | "quantile" | "job" | "instance"
    ) {
        s.insert_str(0, "attr_");
    }
    s
}

/// The label names of a group's attributes, in order: each attribute's
/// [`label_name`], with `attr_` put in front again while it equals an
/// earlier one (`group_by = ["a-b", "a_b"]` gives `a_b` and `attr_a_b`), so
/// a series never carries one label name twice, which would make
/// Prometheus refuse the whole scrape.
pub(crate) fn label_names<'a>(attrs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let attrs: Vec<&str> = attrs.into_iter().collect();
    let mut names: Vec<Option<String>> = vec![None; attrs.len()];
    let mut taken: Vec<String> = Vec::new();
    // An attribute whose name is a valid label name as it is keeps it,
    // whatever comes before it in `group_by` (as Alertmanager labels do):
    // `a_b` is labelled `a_b`, never `attr_a_b` because `a-b` came first.
    for (i, a) in attrs.iter().enumerate() {
        let name = label_name(a);
        if name == *a && !taken.contains(&name) {
            taken.push(name.clone());
            names[i] = Some(name);
        }
    }
    // The others (cleaned up, reserved, or taken) get `attr_` until free.
    for (i, a) in attrs.iter().enumerate() {
        if names[i].is_some() {
            continue;
        }
        let mut name = label_name(a);
        while taken.contains(&name) {
            name.insert_str(0, "attr_");
        }
        taken.push(name.clone());
        names[i] = Some(name);
    }
    names.into_iter().flatten().collect()
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(out: &mut String, rule: &str, extra: &[(String, String)]) {
    out.push_str("{rule=\"");
    escape_label(rule, out);
    out.push('"');
    for (k, v) in extra {
        out.push(',');
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
    out.push('}');
}

/// One gauge with a sample per exported group that has `pick`'s value.
fn render_group_gauge(
    snaps: &[RuleSnapshot],
    out: &mut String,
    name: &str,
    help: &str,
    pick: impl Fn(&Series) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for s in snaps {
        for series in &s.series {
            if let Some(v) = pick(series).filter(|v| v.is_finite()) {
                out.push_str(name);
                write_labels(out, &s.name, &series.labels);
                let _ = writeln!(out, " {v}");
            }
        }
    }
}

fn render_indicators(snaps: &[RuleSnapshot], out: &mut String) {
    render_group_gauge(
        snaps,
        out,
        "crisiswatch_indicator_value",
        "Indicator value per rule and group (the rule's group_by attributes are labels).",
        |s| s.value,
    );
    render_group_gauge(
        snaps,
        out,
        "crisiswatch_indicator_estimate",
        "Point estimate per rule and group for rules with a confidence (crisiswatch_indicator_value is then the confidence bound judged).",
        |s| s.estimate,
    );
    out.push_str("# HELP crisiswatch_indicator_threshold Threshold per rule and severity; severity=\"clear\" is the hysteresis threshold.\n");
    out.push_str("# TYPE crisiswatch_indicator_threshold gauge\n");
    for s in snaps {
        for (sev, v) in s
            .thresholds
            .iter()
            .map(|(a, b)| (a.as_str(), *b))
            .chain([("clear", s.clear)])
        {
            out.push_str("crisiswatch_indicator_threshold");
            write_labels(out, &s.name, &[("severity".to_string(), sev.to_string())]);
            let _ = writeln!(out, " {v}");
        }
    }
    out.push_str("# HELP crisiswatch_alert_state Alert state per rule and group: 0 inactive, 1 pending, 2 firing.\n");
    out.push_str("# TYPE crisiswatch_alert_state gauge\n");
    for s in snaps {
        for series in &s.series {
            out.push_str("crisiswatch_alert_state");
            write_labels(out, &s.name, &series.labels);
            let _ = writeln!(out, " {}", series.state);
        }
    }
    out.push_str("# HELP crisiswatch_rule_info Static information about each rule.\n");
    out.push_str("# TYPE crisiswatch_rule_info gauge\n");
    for s in snaps {
        out.push_str("crisiswatch_rule_info");
        write_labels(
            out,
            &s.name,
            &[
                ("kind".to_string(), s.kind.clone()),
                ("condition".to_string(), s.condition.to_string()),
            ],
        );
        out.push_str(" 1\n");
    }
}

/// Phase as a label-friendly string.
pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Inactive => "inactive",
        Phase::Pending { .. } => "pending",
        Phase::Firing { .. } => "firing",
    }
}
