//! Delivery metrics per receiver, registered in the process registry
//! ([`crate::metrics::Metrics::registry`]) so `/metrics` shows them.
//!
//! Names follow `contract.md` §5 (`crisiswatch_<name>_<unit>`, `_total` on
//! counters); label values come from small fixed sets (receiver names from
//! the config, failure reasons, outcomes). Delivery latency — enqueue to 2xx,
//! retries included — is kept in an HdrHistogram per receiver and exported as
//! p50/p90/p99/max gauges.

use std::collections::HashMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::policy::FailureReason;

/// Quantiles exported for delivery latency (`1` is the maximum).
pub const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (1.0, "1")];

/// Every incident metric.
pub struct IncidentMetrics {
    /// Delivery attempts per receiver.
    pub attempts: IntCounterVec,
    /// Failed attempts per receiver and reason.
    pub failures: IntCounterVec,
    /// Notifications per receiver by final outcome (delivered, failed, dead_lettered, muted).
    pub notifications: IntCounterVec,
    /// Pending notifications per receiver.
    pub depth: IntGaugeVec,
    /// Age of the oldest pending notification per receiver, seconds.
    pub oldest_age: GaugeVec,
    /// Dead letters kept per receiver.
    pub dead_letters: IntGaugeVec,
    /// 1 while a receiver's circuit breaker is open.
    pub breaker_open: IntGaugeVec,
    /// Latency quantiles per receiver, seconds.
    latency: GaugeVec,
    /// Incident notifications produced, by route and action.
    pub incidents: IntCounterVec,
    /// Open incidents.
    pub open_incidents: prometheus::IntGauge,
    histograms: Mutex<HashMap<String, Histogram<u64>>>,
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
    pub fn new(r: &Registry, receivers: &[String]) -> Result<IncidentMetrics, prometheus::Error> {
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
                    "Notifications per receiver by outcome (delivered, failed, dead_lettered, muted).",
                ),
                &["receiver", "outcome"],
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
            latency: reg(r, GaugeVec::new(
                Opts::new(
                    "crisiswatch_notification_latency_seconds",
                    "Delivery latency (queued to 2xx, retries included) per receiver: quantiles 0.5, 0.9, 0.99 and 1 (max).",
                ),
                &["receiver", "quantile"],
            )?)?,
            incidents: reg(r, IntCounterVec::new(
                Opts::new("crisiswatch_incident_notifications_total", "Incident notifications produced, by route and action."),
                &["route", "action"],
            )?)?,
            open_incidents: reg(r, prometheus::IntGauge::new(
                "crisiswatch_incidents_open", "Incidents open (or waiting for their group window).",
            )?)?,
            histograms: Mutex::new(HashMap::new()),
        };
        for rec in receivers {
            m.attempts.with_label_values(&[rec]);
            for reason in FailureReason::ALL {
                m.failures.with_label_values(&[rec, reason.as_str()]);
            }
            for o in ["delivered", "failed", "dead_lettered", "muted"] {
                m.notifications.with_label_values(&[rec, o]);
            }
            m.depth.with_label_values(&[rec]);
            m.oldest_age.with_label_values(&[rec]);
            m.dead_letters.with_label_values(&[rec]);
            m.breaker_open.with_label_values(&[rec]);
        }
        Ok(m)
    }

    /// Records one delivery latency and refreshes the receiver's quantiles.
    pub fn record_latency(&self, receiver: &str, ms: i64) {
        let Ok(mut h) = self.histograms.lock() else {
            return;
        };
        if !h.contains_key(receiver) {
            // 3 significant digits, auto-resizing; creation only fails for sigfig > 5.
            let Ok(new) = Histogram::new(3) else {
                return;
            };
            h.insert(receiver.to_string(), new);
        }
        let Some(hist) = h.get_mut(receiver) else {
            return;
        };
        let _ = hist.record(ms.max(0) as u64);
        for (q, label) in QUANTILES {
            let v = if q >= 1.0 {
                hist.max()
            } else {
                hist.value_at_quantile(q)
            };
            self.latency
                .with_label_values(&[receiver, label])
                .set(v as f64 / 1000.0);
        }
    }

    /// The latency quantiles of a receiver in ms (p50, p90, p99, max), if any.
    pub fn latency_ms(&self, receiver: &str) -> Option<[u64; 4]> {
        let h = self.histograms.lock().ok()?;
        let hist = h.get(receiver)?;
        Some([
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.9),
            hist.value_at_quantile(0.99),
            hist.max(),
        ])
    }

    /// A gauge handle, for tests.
    pub fn oldest_age_gauge(&self, receiver: &str) -> Gauge {
        self.oldest_age.with_label_values(&[receiver])
    }
}
