//! Delivery metrics per receiver, registered in the process registry
//! ([`crate::metrics::Metrics::registry`]) so `/metrics` shows them.
//!
//! Names follow `docs/contract.md` §5 (`crisiswatch_<name>_<unit>`, `_total` on
//! counters); label values come from small fixed sets (receiver names from
//! the config, failure reasons, outcomes). Delivery latency — enqueue to 2xx,
//! retries included — is a summary per receiver, like the engine's latencies
//! ([`crate::metrics`]): quantiles 0.5/0.9/0.99/1 (max) from HdrHistograms
//! over the last one to two minutes, and `_sum`/`_count` since start, so
//! `rate(_sum) / rate(_count)` gives the mean over any range.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};
use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::policy::FailureReason;

/// Quantiles exported for delivery latency (`1` is the maximum).
pub(crate) const QUANTILES: [(f64, &str); 4] =
    [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// Every incident metric.
pub struct IncidentMetrics {
    /// Delivery attempts per receiver.
    pub(crate) attempts: IntCounterVec,
    /// Failed attempts per receiver and reason.
    pub(crate) failures: IntCounterVec,
    /// Notifications per receiver by final outcome (delivered, failed, dead_lettered, muted).
    pub(crate) notifications: IntCounterVec,
    /// `crisiswatch_notifications_taken_over_total{receiver}`.
    pub(crate) taken_over: IntCounterVec,
    /// Pending notifications per receiver.
    pub(crate) depth: IntGaugeVec,
    /// Age of the oldest pending notification per receiver, seconds.
    pub(crate) oldest_age: GaugeVec,
    /// Dead letters kept per receiver.
    pub(crate) dead_letters: IntGaugeVec,
    /// 1 while a receiver's circuit breaker is open.
    pub(crate) breaker_open: IntGaugeVec,
    /// Dead letters removed by retention (`incidents.retention`), per receiver.
    pub(crate) dead_letters_pruned: IntCounterVec,
    /// Delivery latency per receiver (a summary).
    latency: LatencySummary,
    /// Receiver answers whose body was longer than the delivery worker reads
    /// ([`super::delivery::RESPONSE_BODY_LIMIT`]), per receiver.
    pub(crate) response_truncated: IntCounterVec,
    /// Incident notifications produced, by route and action.
    pub(crate) incidents: IntCounterVec,
    /// Batches the outbox could not store (disk full, read-only, I/O error).
    pub(crate) write_failures: prometheus::IntCounter,
    /// Open incidents.
    pub(crate) open_incidents: prometheus::IntGauge,
    /// Alerts that fired or escalated and that no route takes, per rule.
    pub(crate) unrouted: IntCounterVec,
}

impl std::fmt::Debug for IncidentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncidentMetrics").finish_non_exhaustive()
    }
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> Result<T, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

// === impl IncidentMetrics ===

impl IncidentMetrics {
    /// Creates and registers every metric, with series for each receiver.
    pub(crate) fn new(
        r: &Registry,
        receivers: &[String],
    ) -> Result<IncidentMetrics, prometheus::Error> {
        let m = IncidentMetrics {
            attempts: reg(r, IntCounterVec::new(
                Opts::new("crisiswatch_notification_attempts_total", "Delivery attempts per receiver."),
                &["receiver"],
            )?)?,
            failures: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_notification_failures_total",
                    "Failed delivery attempts per receiver and reason (timeout, connect, rate_limited, server_error, rejected, other).",
                ),
                &["receiver", "reason"],
            )?)?,
            notifications: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_notifications_total",
                    "Notifications per receiver by outcome (delivered, failed, dead_lettered, muted; handed: queued here and handed with its incident to the next owner of its incident partition, sources.kafka.scale_out).",
                ),
                &["receiver", "outcome"],
            )?)?,
            taken_over: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_notifications_taken_over_total",
                    "Queued notifications taken over with their incidents from the previous owner of an incident partition (sources.kafka.scale_out), per receiver.",
                ),
                &["receiver"],
            )?)?,
            depth: reg(r, IntGaugeVec::new(
                Opts::new("crisiswatch_outbox_depth", "Notifications waiting for delivery per receiver."),
                &["receiver"],
            )?)?,
            oldest_age: reg(r, GaugeVec::new(
                Opts::new(
                    "crisiswatch_outbox_oldest_age_seconds",
                    "Age of the oldest undelivered notification per receiver (0 when none).",
                ),
                &["receiver"],
            )?)?,
            dead_letters: reg(r, IntGaugeVec::new(
                Opts::new(
                    "crisiswatch_outbox_dead_letters",
                    "Dead-lettered notifications kept per receiver (see `crisiswatch outbox list`).",
                ),
                &["receiver"],
            )?)?,
            breaker_open: reg(r, IntGaugeVec::new(
                Opts::new("crisiswatch_receiver_circuit_open", "1 while the receiver's circuit breaker is open."),
                &["receiver"],
            )?)?,
            dead_letters_pruned: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_outbox_dead_letters_pruned_total",
                    "Dead letters deleted because they were older than incidents.retention, per receiver.",
                ),
                &["receiver"],
            )?)?,
            latency: reg(r, LatencySummary::new()?)?,
            response_truncated: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_notification_response_truncated_total",
                    "Receiver answers longer than the 4 KiB crisiswatch reads (the rest is dropped unread), per receiver.",
                ),
                &["receiver"],
            )?)?,
            incidents: reg(r, IntCounterVec::new(
                Opts::new("crisiswatch_incident_notifications_total", "Incident notifications produced, by route and action."),
                &["route", "action"],
            )?)?,
            write_failures: reg(r, prometheus::IntCounter::new(
                "crisiswatch_outbox_write_failures_total",
                "Batches of incident changes the outbox could not store (disk full, read-only data directory, I/O error); they are retried.",
            )?)?,
            open_incidents: reg(r, prometheus::IntGauge::new(
                "crisiswatch_incidents_open", "Incidents open (or waiting for their group window).",
            )?)?,
            unrouted: reg(r, IntCounterVec::new(
                Opts::new(
                    "crisiswatch_alerts_unrouted_total",
                    "Alerts that fired or escalated and that no [[incidents.routes]] takes (they open no incident), per rule.",
                ),
                &["rule"],
            )?)?,
        };
        for rec in receivers {
            m.add_receiver(rec);
        }
        Ok(m)
    }

    /// Starts the series of a receiver at zero (at start, and for a receiver
    /// a reload added).
    pub(crate) fn add_receiver(&self, rec: &str) {
        self.attempts.with_label_values(&[rec]);
        for reason in FailureReason::ALL {
            self.failures.with_label_values(&[rec, reason.as_str()]);
        }
        for o in ["delivered", "failed", "dead_lettered", "muted", "handed"] {
            self.notifications.with_label_values(&[rec, o]);
        }
        self.taken_over.with_label_values(&[rec]);
        self.depth.with_label_values(&[rec]);
        self.oldest_age.with_label_values(&[rec]);
        self.dead_letters.with_label_values(&[rec]);
        self.breaker_open.with_label_values(&[rec]);
        self.response_truncated.with_label_values(&[rec]);
        self.dead_letters_pruned.with_label_values(&[rec]);
    }

    /// Starts the incident-notification series of the routes of `cfg` at
    /// zero, one per action (at start, and for the routes of a reload): a
    /// series born at its first increment hides that increment from
    /// `increase()`, so a dashboard's "incidents opened" missed the first
    /// open of every route.
    pub(crate) fn add_routes(&self, cfg: &crate::config::Config) {
        let routes = &cfg.incidents.routes;
        let names: Vec<&str> = if routes.is_empty() {
            vec![super::routing::DEFAULT_ROUTE]
        } else {
            routes.iter().map(|r| r.name.as_str()).collect()
        };
        for route in names {
            for action in ["open", "update", "resolve", "acknowledge"] {
                self.incidents.with_label_values(&[route, action]);
            }
        }
    }

    /// Starts a rule's unrouted-alert series at zero (at start, and for the
    /// rules of a reload), so a rate over it exists before the first one.
    pub(crate) fn add_rule(&self, rule: &str) {
        self.unrouted.with_label_values(&[rule]);
    }

    /// Counts notifications handed away with their incidents.
    pub(crate) fn record_handed(&self, handed: &super::outbox::Moved) {
        for (rec, n) in handed.per_receiver() {
            self.notifications
                .with_label_values(&[rec, "handed"])
                .inc_by(n as u64);
        }
    }

    /// Counts notifications taken over with their incidents.
    pub(crate) fn record_taken_over(&self, taken: &super::outbox::Moved) {
        for (rec, n) in taken.per_receiver() {
            self.taken_over.with_label_values(&[rec]).inc_by(n as u64);
        }
    }

    /// Records one delivery latency.
    pub(crate) fn record_latency(&self, receiver: &str, ms: i64) {
        self.latency.record(receiver, ms, Instant::now());
    }

    /// A receiver's latency quantiles over the current window, ms (p50, p90,
    /// p99, max), if it delivered anything in it.
    pub fn latency_ms(&self, receiver: &str) -> Option<[u64; 4]> {
        self.latency.quantiles_ms(receiver, Instant::now())
    }

    /// Counts what a prune removed.
    pub(crate) fn record_pruned(&self, pruned: &super::outbox::Pruned) {
        for (rec, n) in &pruned.dead_letters {
            self.dead_letters_pruned
                .with_label_values(&[rec])
                .inc_by(*n);
        }
    }

    /// A gauge handle, for tests.
    pub fn oldest_age_gauge(&self, receiver: &str) -> Gauge {
        self.oldest_age.with_label_values(&[receiver])
    }
}

// === impl LatencySummary ===

/// Highest latency tracked, ms (7 days, beyond any `max_age`); larger values
/// are clamped.
const MAX_LATENCY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Quantiles cover the current and the previous window: one to two minutes.
const WINDOW: Duration = Duration::from_secs(60);
/// The summary's name.
const LATENCY_NAME: &str = "crisiswatch_notification_latency_seconds";

/// One receiver's latencies: two rotating histograms and the running totals.
#[derive(Debug)]
struct Window {
    /// Current and previous window.
    hist: [Histogram<u64>; 2],
    rotated: Instant,
    sum_secs: f64,
    count: u64,
}

impl Window {
    fn new(now: Instant) -> Option<Window> {
        // Valid constant bounds (low ≥ 1, high ≥ 2 × low, 3 digits): cannot fail.
        let h = || Histogram::new_with_bounds(1, MAX_LATENCY_MS, 3).ok();
        Some(Window {
            hist: [h()?, h()?],
            rotated: now,
            sum_secs: 0.0,
            count: 0,
        })
    }

    /// Starts a new window when the current one is a minute old (both when two are).
    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.rotated);
        if age >= WINDOW {
            self.hist.swap(0, 1);
            self.hist[0].reset();
            if age >= 2 * WINDOW {
                self.hist[1].reset();
            }
            self.rotated = now;
        }
    }

    fn quantiles_ms(&self) -> Option<[u64; 4]> {
        let mut merged = self.hist[0].clone();
        merged.add(&self.hist[1]).ok()?;
        if merged.is_empty() {
            return None;
        }
        Some([
            merged.value_at_quantile(0.5),
            merged.value_at_quantile(0.9),
            merged.value_at_quantile(0.99),
            merged.max(),
        ])
    }
}

/// `crisiswatch_notification_latency_seconds{receiver, quantile}` with
/// `_sum` and `_count`: a Prometheus summary whose quantiles are windowed.
/// A receiver appears once it has delivered something.
#[derive(Clone)]
struct LatencySummary {
    desc: Desc,
    receivers: Arc<Mutex<BTreeMap<String, Window>>>,
}

impl LatencySummary {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(LatencySummary {
            desc: Desc::new(
                LATENCY_NAME.to_string(),
                "Delivery latency per receiver, queued to 2xx with retries: quantiles 0.5, 0.9, 0.99 and 1 (max) over the last 1-2 minutes; _sum and _count since start.".to_string(),
                vec!["receiver".to_string()],
                HashMap::new(),
            )?,
            receivers: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    fn record(&self, receiver: &str, ms: i64, now: Instant) {
        let mut map = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(receiver) {
            let Some(w) = Window::new(now) else {
                return;
            };
            map.insert(receiver.to_string(), w);
        }
        let Some(w) = map.get_mut(receiver) else {
            return;
        };
        w.rotate(now);
        let ms = u64::try_from(ms).unwrap_or(0);
        let _ = w.hist[0].record(ms.clamp(1, MAX_LATENCY_MS));
        w.sum_secs += ms as f64 / 1000.0;
        w.count += 1;
    }

    fn quantiles_ms(&self, receiver: &str, now: Instant) -> Option<[u64; 4]> {
        let mut map = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        let w = map.get_mut(receiver)?;
        w.rotate(now);
        w.quantiles_ms()
    }
}

impl Collector for LatencySummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let mut map = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        let mut metrics = Vec::with_capacity(map.len());
        for (receiver, w) in map.iter_mut() {
            w.rotate(now);
            let q = w.quantiles_ms();
            let mut summary = Summary::default();
            summary.set_sample_sum(w.sum_secs);
            summary.set_sample_count(w.count);
            summary.set_quantile(
                QUANTILES
                    .iter()
                    .enumerate()
                    .map(|(i, (quantile, _))| {
                        let mut x = Quantile::default();
                        x.set_quantile(*quantile);
                        x.set_value(q.map_or(f64::NAN, |q| q[i] as f64 / 1000.0));
                        x
                    })
                    .collect(),
            );
            let mut label = LabelPair::default();
            label.set_name("receiver".to_string());
            label.set_value(receiver.clone());
            let mut m = Metric::default();
            m.set_label(vec![label]);
            m.set_summary(summary);
            metrics.push(m);
        }
        let mut family = MetricFamily::default();
        family.set_name(LATENCY_NAME.to_string());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_a_windowed_summary_with_sum_and_count() {
        use prometheus::Encoder;
        let r = Registry::new();
        let m = IncidentMetrics::new(&r, &["hook".to_string(), "idle".to_string()]).unwrap();
        let t0 = Instant::now();
        for ms in [100, 200, 300, 400] {
            m.latency.record("hook", ms, t0);
        }
        assert_eq!(m.latency.quantiles_ms("hook", t0).unwrap()[3], 400);
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("# TYPE crisiswatch_notification_latency_seconds summary"));
        assert!(
            text.contains(
                "crisiswatch_notification_latency_seconds{receiver=\"hook\",quantile=\"0.99\"} 0.4"
            ),
            "{text}"
        );
        assert!(text.contains("crisiswatch_notification_latency_seconds_sum{receiver=\"hook\"} 1"));
        assert!(
            text.contains("crisiswatch_notification_latency_seconds_count{receiver=\"hook\"} 4")
        );
        assert!(
            !text.contains("receiver=\"idle\",quantile"),
            "no series before a delivery"
        );
        // A minute later the old values still count; two minutes later they are gone,
        // while the totals keep growing.
        m.latency.record("hook", 1000, t0 + WINDOW);
        assert_eq!(m.latency.quantiles_ms("hook", t0 + WINDOW).unwrap()[0], 300);
        m.latency.record("hook", 2000, t0 + 2 * WINDOW);
        assert_eq!(
            m.latency.quantiles_ms("hook", t0 + 2 * WINDOW).unwrap(),
            [1000, 2000, 2000, 2000]
        );
        assert_eq!(m.latency.quantiles_ms("hook", t0 + 5 * WINDOW), None);
        let map = m.latency.receivers.lock().unwrap();
        assert_eq!((map["hook"].count, map["hook"].sum_secs), (6, 4.0));
    }
}
