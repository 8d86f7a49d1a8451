//! What `/api/v1/alerts` and `/api/v1/rules` show: the views of the
//! engine's active alerts and rules that the driver publishes once per
//! batch ([`snapshot`]), so that a request never touches the engine.

use serde::Serialize;

use super::history;
use crate::alert::Phase;
use crate::config::RuleConfig;
use crate::engine::EngineView;
use crate::event::format_ts;

/// One active alert with its evidence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct AlertView {
    /// Rule name.
    pub(crate) rule: String,
    /// Group labels, in `group_by` order.
    pub(crate) group: serde_json::Map<String, serde_json::Value>,
    /// `pending` or `firing`.
    pub(crate) state: &'static str,
    /// Current severity.
    pub(crate) severity: String,
    /// Latest indicator value.
    pub(crate) value: Option<f64>,
    /// Threshold of the severity.
    pub(crate) threshold: Option<f64>,
    /// When the alert instance started (event time).
    pub(crate) since: String,
    /// When the value was computed (event time).
    pub(crate) evaluated_at: String,
    /// Dedup key of the instance.
    pub(crate) dedup_key: Option<String>,
    /// Sample signal event ids.
    pub(crate) sample_event_ids: Vec<String>,
    /// What the rule catches.
    pub(crate) description: String,
    /// Runbook link.
    pub(crate) runbook: Option<String>,
}

/// One rule, its configuration and live state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RuleView {
    /// Rule name.
    pub(crate) name: String,
    /// The rule's configuration as loaded.
    pub(crate) config: RuleConfig,
    /// Live groups.
    pub(crate) live_groups: usize,
    /// Groups pending.
    pub(crate) pending: usize,
    /// Groups firing.
    pub(crate) firing: usize,
    /// Events late for this rule.
    pub(crate) late_events: u64,
    /// Events dropped by the group cap.
    pub(crate) group_overflow: u64,
    /// Transitions emitted.
    pub(crate) transitions: u64,
}

/// What the read-only endpoints serve, refreshed by the driver.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ApiSnapshot {
    /// Pending and firing alerts.
    pub(crate) alerts: Vec<AlertView>,
    /// Every rule.
    pub(crate) rules: Vec<RuleView>,
    /// Engine clock (event time), if any event was seen.
    pub(crate) clock: Option<String>,
    /// Worst slices per rule, for the console ([`history`]).
    #[serde(skip)]
    pub(crate) samples: Option<(Option<i64>, Vec<history::RuleSample>)>,
}

/// Builds the snapshot from the engine.
pub(crate) fn snapshot(engine: &impl EngineView) -> ApiSnapshot {
    let mut out = ApiSnapshot {
        clock: engine.clock().map(format_ts),
        samples: Some((engine.clock(), history::sample(engine))),
        ..ApiSnapshot::default()
    };
    for i in 0..engine.rule_count() {
        let cfg = engine.rule_config(i);
        let active = engine.active_groups(i);
        let mut pending = 0;
        let mut firing = 0;
        for g in &active {
            let (state, severity, since) = match g.phase {
                Phase::Pending { since, severity } => {
                    pending += 1;
                    ("pending", severity, since)
                }
                Phase::Firing {
                    since, severity, ..
                } => {
                    firing += 1;
                    ("firing", severity, since)
                }
                Phase::Inactive => continue,
            };
            let threshold = cfg
                .thresholds
                .levels()
                .into_iter()
                .find(|(s, _)| *s == severity)
                .map(|(_, v)| v);
            out.alerts.push(AlertView {
                rule: cfg.name.clone(),
                group: g
                    .group
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
                state,
                severity: severity.as_str().to_string(),
                value: g.value.filter(|v| v.is_finite()),
                threshold,
                since: format_ts(since),
                evaluated_at: format_ts(g.evaluated_at),
                dedup_key: g.dedup_key.clone(),
                sample_event_ids: g.sample_event_ids.clone(),
                description: cfg.description.clone(),
                runbook: cfg.runbook.clone(),
            });
        }
        let stats = engine.rule_counters(i);
        out.rules.push(RuleView {
            name: cfg.name.clone(),
            config: cfg.clone(),
            live_groups: engine.live_groups(i),
            pending,
            firing,
            late_events: stats.late,
            group_overflow: stats.group_overflow,
            transitions: stats.transitions,
        });
    }
    out
}
