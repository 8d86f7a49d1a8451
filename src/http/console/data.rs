//! What the console page shows, gathered from the shared state: the outbox
//! (open incidents, feedback, timelines, silences), the admin snapshot and
//! its history (rules, worst slices, charts) and the metrics registry (lag,
//! receivers, checkpoints).

use crate::incident::delivery::Clock;
use crate::incident::model::labels_text;
use crate::incident::outbox::OutboxError;

use super::super::state::AppState;
use super::chart;
use super::page::{Health, IncidentView, ReceiverRow, RuleRow, View};

/// Notifications shown per incident (the latest).
const TIMELINE: usize = 50;
/// Charts per incident (its first active alerts).
const CHARTS: usize = 4;

/// Builds the page's view (blocking: reads the outbox).
pub(crate) fn gather(s: &AppState) -> Result<View, OutboxError> {
    let now = Clock::new().now_ms();
    let snap = s.admin.snapshot();
    let mut v = View {
        now_ms: now,
        event_now_ms: snap
            .clock
            .as_deref()
            .and_then(crate::event::parse_rfc3339_ms),
        token_configured: s.admin.has_token(),
        ..View::default()
    };
    {
        let history = s.admin.history();
        v.rules = history
            .latest()
            .iter()
            .map(|r| RuleRow {
                description: snap
                    .rules
                    .iter()
                    .find(|x| x.name == r.rule)
                    .map(|x| x.config.description.clone())
                    .unwrap_or_default(),
                sample: r.clone(),
            })
            .collect();
    }
    if let Some(ob) = s.incidents.get() {
        let incidents = ob.load_incidents()?;
        let feedback = super::folded(ob)?;
        v.silences = ob.silences()?;
        let active: Vec<_> = v.silences.iter().filter(|x| x.active(now)).collect();
        let history = s.admin.history();
        let mut list = Vec::with_capacity(incidents.len());
        for inc in incidents {
            let live: Vec<_> = inc.alerts.iter().filter(|a| a.active).collect();
            let muted_by: Vec<String> = active
                .iter()
                .filter(|x| !live.is_empty() && live.iter().all(|a| x.covers(&a.rule, &a.group)))
                .map(|x| x.id.clone())
                .collect();
            let charts = live
                .iter()
                .take(CHARTS)
                .map(|a| {
                    let title = format!(
                        "{} on {}: value {} against {} {}",
                        a.rule,
                        labels_text(&a.group),
                        crate::incident::model::fmt_value(a.value),
                        a.severity.as_str(),
                        crate::incident::model::fmt_value(Some(a.threshold)),
                    );
                    let rule = history.latest().iter().find(|r| r.rule == a.rule);
                    let svg = chart::svg(
                        &title,
                        &history.points(&a.rule, &a.group),
                        rule.map_or(&[][..], |r| &r.thresholds[..]),
                        rule.and_then(|r| r.clear).or(Some(a.clear)),
                    );
                    (title, svg)
                })
                .collect();
            list.push(IncidentView {
                feedback: feedback.get(&inc.key).cloned(),
                timeline: ob.timeline(&inc.key, TIMELINE)?,
                muted_by,
                charts,
                incident: inc,
            });
        }
        // The most severe first, then the oldest.
        list.sort_by(|a, b| {
            let sev = |i: &IncidentView| {
                i.incident
                    .alerts
                    .iter()
                    .filter(|x| x.active)
                    .map(|x| x.severity)
                    .max()
            };
            sev(b)
                .cmp(&sev(a))
                .then(a.incident.started_at.cmp(&b.incident.started_at))
        });
        v.incidents = Some(list);
    }
    v.elsewhere = s.peers.get().map(|p| p.elsewhere());
    v.health = health(s, snap.clock);
    Ok(v)
}

fn health(s: &AppState, clock: Option<String>) -> Health {
    let families = s.metrics.registry().gather();
    let find = |name: &str| families.iter().find(|f| f.get_name() == name);
    // A metric is a gauge or a counter; the other part reads 0.
    let value =
        |m: &prometheus::proto::Metric| m.get_gauge().get_value() + m.get_counter().get_value();
    let sum = |name: &str| find(name).map(|f| f.get_metric().iter().map(value).sum::<f64>());
    let labelled = |name: &str, label: &str, want: &str| {
        find(name).and_then(|f| {
            f.get_metric()
                .iter()
                .find(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.get_name() == label && l.get_value() == want)
                })
                .map(value)
        })
    };
    let mut receivers: Vec<String> = find("crisiswatch_outbox_depth")
        .map(|f| {
            f.get_metric()
                .iter()
                .filter_map(|m| {
                    m.get_label()
                        .iter()
                        .find(|l| l.get_name() == "receiver")
                        .map(|l| l.get_value().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    receivers.sort();
    receivers.dedup();
    let not_ready = if super::super::is_ready(s) {
        None
    } else if let Some(e) = s.admin.storage_error() {
        Some(e)
    } else if let Some(e) = s.admin.reload_error() {
        Some(format!("the last configuration reload failed: {e}"))
    } else {
        Some("the sources are not ready (see /readyz and the log)".to_string())
    };
    Health {
        not_ready,
        clock,
        watermark_delay_s: sum("crisiswatch_watermark_delay_seconds"),
        kafka_lag: sum("crisiswatch_kafka_consumer_lag_messages"),
        // Before the first checkpoint the gauge holds the process's start
        // (for the age): none written yet.
        last_checkpoint: sum("crisiswatch_checkpoint_last_success_timestamp_seconds")
            .filter(|t| *t > 0.0)
            .filter(|_| sum("crisiswatch_checkpoints_total").is_some_and(|n| n > 0.0)),
        applied: labelled("crisiswatch_events_total", "outcome", "applied"),
        invalid: sum("crisiswatch_events_invalid_total"),
        receivers: receivers
            .into_iter()
            .map(|r| ReceiverRow {
                depth: labelled("crisiswatch_outbox_depth", "receiver", &r),
                oldest_s: labelled("crisiswatch_outbox_oldest_age_seconds", "receiver", &r),
                dead: labelled("crisiswatch_outbox_dead_letters", "receiver", &r),
                circuit_open: labelled("crisiswatch_receiver_circuit_open", "receiver", &r),
                name: r,
            })
            .collect(),
        uptime_s: s.admin.status()["uptime_seconds"].as_f64().unwrap_or(0.0),
    }
}
