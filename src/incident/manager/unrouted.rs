//! Alerts no route takes ([`Changes::unrouted`](super::super::lifecycle::Changes::unrouted)):
//! counted per rule in `crisiswatch_alerts_unrouted_total` and logged at
//! WARN the first time per rule, so an alert that opens no incident is not
//! lost without a word (`crisiswatch check` names the usual causes before
//! that: `config::advice`).

use std::collections::BTreeMap;

use super::super::model;
use super::super::routing::Unrouted;
use super::IncidentManager;

impl IncidentManager {
    /// Counts unrouted alerts (those of one stored batch, or those a scaled
    /// instance's shard owners found no route for at any severity and sent
    /// nowhere), and logs the first of each rule this process sees.
    pub(crate) fn note_unrouted(&self, unrouted: &[Unrouted]) {
        let mut by_rule: BTreeMap<&str, (u64, &Unrouted)> = BTreeMap::new();
        for u in unrouted {
            by_rule.entry(&u.rule).or_insert((0, u)).0 += 1;
        }
        for (rule, (n, first)) in by_rule {
            self.metrics.unrouted.with_label_values(&[rule]).inc_by(n);
            // A poisoned set logs again rather than never.
            let new = self
                .unrouted_logged
                .lock()
                .map_or(true, |mut seen| seen.insert(rule.to_string()));
            if new {
                tracing::warn!(
                    rule,
                    slice = %model::labels_text(&first.group),
                    state = first.state.as_str(),
                    severity = first.severity.as_str(),
                    "Rule {rule} has an alert {} on {} that no [[incidents.routes]] takes: it opens no incident and pages no one. Such alerts are counted in crisiswatch_alerts_unrouted_total; this is logged once per rule (`crisiswatch check` names routes and rules that cannot meet).",
                    first.state.as_str(),
                    model::labels_text(&first.group),
                );
            }
        }
    }
}
