//! Latencies a driver records per batch without touching shared state per
//! event ([`Recorder`]), and the rolling histograms the metrics render from
//! them (processing lag and event-to-incident time, quantiles over the last
//! one to two minutes).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Per-batch counts a driver keeps without touching shared state per event.
#[derive(Debug)]
pub struct Recorder {
    /// Event types counted by name; anything else is "other" (last slot).
    pub(super) types: Vec<String>,
    pub(super) received: Vec<u64>,
    processing: Histogram<u64>,
    event_to_incident: Histogram<u64>,
}

/// Highest latency tracked, ms (7 days); larger values are clamped.
const MAX_LATENCY_MS: u64 = 7 * 24 * 3600 * 1000;

fn histogram() -> Histogram<u64> {
    // The bounds are valid constants (low ≥ 1, high ≥ 2 × low, 3 significant
    // digits ≤ 5): the only inputs `new_with_bounds` rejects, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_MS, 3).expect("constant histogram bounds are valid")
}

impl Recorder {
    /// A recorder counting the types the configuration's rules name.
    pub(crate) fn new(cfg: &crate::config::Config) -> Self {
        let mut types: Vec<String> = ["complaint", "feedback", "order", "cancellation"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in &cfg.rules {
            for sel in r.indicator.selectors() {
                if let Some(crate::config::ValueMatch::Is(v)) = &sel.kind {
                    for t in v.to_vec() {
                        if !types.contains(&t) && types.len() < 32 {
                            types.push(t);
                        }
                    }
                }
            }
        }
        let n = types.len();
        types.push("other".to_string());
        Recorder {
            types,
            received: vec![0; n + 1],
            processing: histogram(),
            event_to_incident: histogram(),
        }
    }

    /// Counts a valid event of type `kind`, `lag_ms` behind the wall clock.
    #[inline]
    pub(crate) fn event(&mut self, kind: &str, lag_ms: i64) {
        let last = self.received.len() - 1;
        let i = self.types[..last]
            .iter()
            .position(|t| t == kind)
            .unwrap_or(last);
        self.received[i] += 1;
        let _ = self
            .processing
            .record((lag_ms.max(1) as u64).min(MAX_LATENCY_MS));
    }

    /// Records the latency from a firing transition's event time to now.
    pub(crate) fn incident(&mut self, event_time_ms: i64, now_ms: i64) {
        let lat = (now_ms - event_time_ms).max(1) as u64;
        let _ = self.event_to_incident.record(lat.min(MAX_LATENCY_MS));
    }
}

/// Rolling latency histograms: quantiles over the current and previous minute.
#[derive(Debug)]
pub(super) struct Latencies {
    processing: [Histogram<u64>; 2],
    event_to_incident: [Histogram<u64>; 2],
    sums: [(f64, u64); 2],
    rotated: std::time::Instant,
}

impl Latencies {
    pub(super) fn new() -> Self {
        Latencies {
            processing: [histogram(), histogram()],
            event_to_incident: [histogram(), histogram()],
            sums: [(0.0, 0); 2],
            rotated: std::time::Instant::now(),
        }
    }

    pub(super) fn absorb(&mut self, rec: &mut Recorder) {
        if self.rotated.elapsed() >= std::time::Duration::from_secs(60) {
            self.rotated = std::time::Instant::now();
            self.processing.swap(0, 1);
            self.processing[0].reset();
            self.event_to_incident.swap(0, 1);
            self.event_to_incident[0].reset();
        }
        for (k, (cur, h)) in [
            (&mut self.processing[0], &mut rec.processing),
            (&mut self.event_to_incident[0], &mut rec.event_to_incident),
        ]
        .into_iter()
        .enumerate()
        {
            if !h.is_empty() {
                self.sums[k].0 += h.mean() * h.len() as f64 / 1000.0;
                self.sums[k].1 += h.len();
                let _ = cur.add(&*h);
                h.reset();
            }
        }
    }

    pub(super) fn render(&self, out: &mut String) {
        for (k, (name, help, hs)) in [
            (
                "crisiswatch_processing_lag_seconds",
                "Wall-clock time minus event time when an event is applied (quantiles over the last 1-2 minutes).",
                &self.processing,
            ),
            (
                "crisiswatch_event_to_incident_seconds",
                "Wall-clock time from the event that crossed a threshold to the incident transition (quantiles over the last 1-2 minutes).",
                &self.event_to_incident,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut merged = hs[0].clone();
            let _ = merged.add(&hs[1]);
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} summary");
            for q in [0.5, 0.9, 0.99, 1.0] {
                let v = if merged.is_empty() {
                    f64::NAN
                } else {
                    merged.value_at_quantile(q) as f64 / 1000.0
                };
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
            }
            let _ = writeln!(out, "{name}_sum {}", self.sums[k].0);
            let _ = writeln!(out, "{name}_count {}", self.sums[k].1);
        }
    }
}
