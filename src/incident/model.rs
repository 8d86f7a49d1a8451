//! What an incident notification says: the receiver-independent
//! [`Notification`] that the lifecycle produces, the outbox stores, and the
//! receivers render (`docs/contract.md` §4), with the evidence of every alert and a
//! sentence a responder understands.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::{Labels, Transition};
use crate::config::{Condition, Dur, Severity};
use crate::event::format_ts;
use crate::explain::{hints_text, Hint};

/// What a notification does to the incident at the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// The incident opens (first notification of an incident).
    Open,
    /// Something changed, or a periodic progress update.
    Update,
    /// The incident is over (last notification).
    Resolve,
    /// A responder acknowledged the incident ("someone is on it"): sent only
    /// to receivers that take acknowledgements (PagerDuty by default, a
    /// generic webhook with `acknowledge = true`), never to Alertmanager.
    Acknowledge,
}

impl Action {
    /// Lowercase name, as in the generic webhook and the outbox.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Update => "update",
            Action::Resolve => "resolve",
            Action::Acknowledge => "acknowledge",
        }
    }
}

/// Why a notification was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    /// The incident opened.
    Opened,
    /// Another alert of the same group joined.
    AlertJoined,
    /// An alert's severity rose.
    Escalated,
    /// One alert resolved; others still fire.
    AlertResolved,
    /// Periodic progress update.
    Progress,
    /// The last alert resolved.
    Resolved,
    /// An operator closed the incident (`crisiswatch incident close`, or the
    /// admin API); the summary carries the operator's reason.
    Closed,
    /// Its alerts no longer exist in the engine (their rule was removed or
    /// changed by a configuration change, or the engine state was reset):
    /// nothing would ever resolve them, so they leave the incident.
    AlertGone,
    /// A responder acknowledged the incident (`crisiswatch incident ack`,
    /// the admin API or the console).
    Acknowledged,
}

/// Who acknowledged an incident, carried by its `acknowledge` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Acknowledgement {
    /// The responder.
    pub(crate) by: String,
    /// Their note (may be empty).
    pub(crate) note: String,
    /// When (wall clock, ms).
    pub(crate) at: i64,
}

/// The evidence of one alert of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlertEvidence {
    /// Rule name.
    pub(crate) rule: String,
    /// What the rule catches, from its configuration.
    pub(crate) description: String,
    /// The slice: (attribute, value) in `group_by` order.
    pub(crate) group: Labels,
    /// Current (highest) severity.
    pub(crate) severity: Severity,
    /// The severities it had before an escalation, oldest first: the
    /// Alertmanager receiver ends their label sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) superseded: Vec<Severity>,
    /// When each of `superseded` ended (the escalation's event time), in
    /// the same order; empty in incidents stored before it was kept (their
    /// label sets end at the notification's time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) superseded_at: Vec<i64>,
    /// Whether it still fires.
    pub(crate) active: bool,
    /// Above or below.
    pub(crate) condition: Condition,
    /// Latest indicator value known.
    pub(crate) value: Option<f64>,
    /// Threshold of `severity`.
    pub(crate) threshold: f64,
    /// Clear (hysteresis) threshold.
    pub(crate) clear: f64,
    /// Worst value seen (highest for `above`, lowest for `below`).
    pub(crate) peak: Option<f64>,
    /// Window length, ms.
    pub(crate) window_ms: i64,
    /// When the breach began (event time, ms).
    pub(crate) started_at: i64,
    /// When it fired (event time, ms).
    pub(crate) fired_at: i64,
    /// When it resolved, if it has.
    pub(crate) resolved_at: Option<i64>,
    /// The alert instance's own dedup key (`docs/contract.md` §3).
    pub(crate) dedup_key: String,
    /// Ids of signal events seen while the alert was active.
    pub(crate) sample_event_ids: Vec<String>,
    /// Runbook link of the rule.
    pub(crate) runbook: Option<String>,
    /// Dashboard link of the rule.
    pub(crate) dashboard: Option<String>,
    /// Root-cause hints of the latest transition or progress update (rules
    /// with `explain`): over-represented attribute values, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) hints: Vec<Hint>,
}

impl AlertEvidence {
    /// Folds a new value into `value` and `peak`.
    pub(crate) fn observe(&mut self, value: Option<f64>) {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return;
        };
        self.value = Some(v);
        self.peak = Some(match (self.peak, self.condition) {
            (None, _) => v,
            (Some(p), Condition::Above) => p.max(v),
            (Some(p), Condition::Below) => p.min(v),
        });
    }

    /// The group as `k=v, k=v` (or `all`).
    pub(crate) fn group_text(&self) -> String {
        labels_text(&self.group)
    }
}

/// One notification of one incident, before it is rendered for a receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Notification {
    /// The incident's key, the same from open to resolve: `route/labels/start-ms`.
    pub(crate) dedup_key: String,
    /// Open, update or resolve.
    pub(crate) action: Action,
    /// Number of this notification within the incident (1 = open).
    pub(crate) seq: u32,
    /// Why it was sent.
    pub(crate) reason: Reason,
    /// The route that grouped the incident.
    pub(crate) route: String,
    /// The grouping labels the incident's alerts share.
    pub(crate) labels: Labels,
    /// Highest severity among the active alerts (among all when resolved).
    pub(crate) severity: Severity,
    /// Event time of the change, ms.
    pub(crate) at: i64,
    /// When the incident's first alert began, ms.
    pub(crate) started_at: i64,
    /// When the incident resolved, ms.
    pub(crate) resolved_at: Option<i64>,
    /// Every alert that joined the incident, active or not, in joining order.
    pub(crate) alerts: Vec<AlertEvidence>,
    /// Index in `alerts` of the headline alert.
    pub(crate) primary: usize,
    /// A sentence for responders.
    pub(crate) summary: String,
    /// Who acknowledged the incident (`acknowledge` notifications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ack: Option<Acknowledgement>,
    /// An update that gathers changes (a route's `group_interval`): event
    /// time of the first of them, ms; `at` is the last one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<i64>,
}

impl Notification {
    /// The headline alert: the highest-severity active alert (the first to
    /// fire among equals), or the highest-severity one once all resolved.
    pub(crate) fn primary(&self) -> Option<&AlertEvidence> {
        self.alerts.get(self.primary)
    }

    /// How long the incident has lasted at `at`, ms.
    pub(crate) fn duration_ms(&self) -> i64 {
        (self.resolved_at.unwrap_or(self.at) - self.started_at).max(0)
    }

    /// Dashboard and runbook links of the headline alert — the rule a body
    /// names (`rule`, PagerDuty's `class`) — and only of it: another rule's
    /// runbook next to the headline would send the responder to the wrong
    /// page. Each alert's own links travel with its evidence (`alerts`).
    pub(crate) fn links(&self) -> (Option<&str>, Option<&str>) {
        let p = self.primary();
        (
            p.and_then(|a| a.dashboard.as_deref()),
            p.and_then(|a| a.runbook.as_deref()),
        )
    }
}

/// Longest incident key: PagerDuty refuses a `dedup_key` over 255 characters,
/// and the same key goes to every receiver and into the outbox.
pub(crate) const MAX_INCIDENT_KEY: usize = 255;

/// Room [`incident_key`] leaves below [`MAX_INCIDENT_KEY`] for the `-N`
/// suffix of an incident that starts in the same millisecond as another.
const KEY_SUFFIX_ROOM: usize = 8;

/// The key of a new incident: `route/labels/start-ms`
/// ([`Transition::make_dedup_key`]), or, when that would be longer than
/// `MAX_INCIDENT_KEY − 8` bytes (long attribute values), a readable prefix
/// of it, `~`, 16 hex digits of its SHA-256 and `/start-ms`. Deterministic,
/// so replays and restarts give the same key; computed once when the
/// incident is made, so every receiver and the outbox see the same key.
pub(crate) fn incident_key(route: &str, labels: &Labels, started_at: i64) -> String {
    bounded_key(
        &Transition::make_dedup_key(route, labels, started_at),
        started_at,
        MAX_INCIDENT_KEY - KEY_SUFFIX_ROOM,
    )
}

/// `key` if it has at most `max` bytes, else its bounded form (see
/// [`incident_key`]); `tail_ms` is kept readable at the end.
pub(crate) fn bounded_key(key: &str, tail_ms: i64, max: usize) -> String {
    if key.len() <= max {
        return key.to_string();
    }
    let digest = Sha256::digest(key.as_bytes());
    let hash = hex::encode(&digest[..8]);
    let tail = format!("/{tail_ms}");
    let budget = max.saturating_sub(tail.len() + 1 + hash.len());
    let mut end = budget.min(key.len());
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{hash}{tail}", &key[..end])
}

/// An incident's severity: the highest of its active alerts, or of all of
/// them once none is active (`Info` without alerts).
pub(crate) fn incident_severity(alerts: &[AlertEvidence]) -> Severity {
    let any_active = alerts.iter().any(|a| a.active);
    alerts
        .iter()
        .filter(|a| a.active || !any_active)
        .map(|a| a.severity)
        .max()
        .unwrap_or(Severity::Info)
}

/// Index of the headline alert of `alerts`.
pub(crate) fn primary_index(alerts: &[AlertEvidence]) -> usize {
    let any_active = alerts.iter().any(|a| a.active);
    let mut best: Option<usize> = None;
    for (i, a) in alerts.iter().enumerate() {
        if any_active && !a.active {
            continue;
        }
        if best.is_none_or(|b| a.severity > alerts[b].severity) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

/// Labels as `k=v, k=v`; `all` when empty.
pub(crate) fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "all".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value for people: integers plainly, small numbers to three decimals.
pub fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_string(),
        Some(v) if v.abs() >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// `v` as [`fmt_value`] shows it (`d` 0), or with `d` decimals where that
/// would not do.
pub(crate) fn fmt_prec(v: f64, d: usize) -> String {
    if d == 0 {
        fmt_value(Some(v))
    } else {
        format!("{v:.d$}")
    }
}

/// The decimals that show `v` apart from each of `refs` it differs from (a
/// value of 0.10034 is not "0.100, above the threshold 0.100"; 150.4 is not
/// "150" beside a threshold of 150): 0 for [`fmt_value`]'s own form, else
/// the fewest, up to eight, that tell them apart.
pub(crate) fn precision(v: Option<f64>, refs: &[f64]) -> usize {
    let Some(v) = v else { return 0 };
    let alike = |d: usize| {
        refs.iter()
            .any(|&r| r != v && fmt_prec(v, d) == fmt_prec(r, d))
    };
    if !alike(0) {
        return 0;
    }
    (1..8).find(|&d| !alike(d)).unwrap_or(8)
}

fn fmt_duration(ms: i64) -> String {
    let mins = (ms.max(0) / 60_000) as u64;
    if mins == 0 {
        return "under a minute".to_string();
    }
    // "2d 3h 5m" (humantime says "2days 3h 5m", and counts months).
    let (d, h, m) = (mins / 1440, mins / 60 % 24, mins % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// The responder's sentence for a notification that closes an incident
/// without its alerts resolving (`Reason::Closed`, `Reason::AlertGone`) or
/// drops vanished alerts from it: `note` says why.
pub(crate) fn closing_summary(n: &Notification, note: &str) -> String {
    let dur = fmt_duration(n.duration_ms());
    let who = match n.reason {
        Reason::Closed => "Closed by an operator",
        _ => "Closed: its alerts no longer exist",
    };
    match n.action {
        Action::Resolve => format!("{who} after {dur}: {note}"),
        _ => {
            let still = n.primary().map(|p| p.rule.as_str()).unwrap_or("none");
            format!("Alerts that no longer exist left the incident after {dur}: {note}; still firing: {still}.")
        }
    }
}

/// The changes an update gathered (alerts that joined, escalated or
/// resolved from its first change to its last, `since`..=`at`), named: `2
/// alerts joined (store_burst on store=s01; store_burst on store=s02);
/// complaint_rate on product=router-x escalated to CRITICAL`. Empty when no
/// alert shows a change in that span.
fn changes_text(n: &Notification) -> String {
    let (from, to) = (n.since.unwrap_or(n.at).min(n.at), n.at);
    let within = |t: i64| t >= from && t <= to;
    let name = |a: &AlertEvidence| format!("{} on {}", a.rule, a.group_text());
    let mut joined = Vec::new();
    let mut escalated = Vec::new();
    let mut resolved = Vec::new();
    for a in &n.alerts {
        if a.resolved_at.is_some_and(within) {
            resolved.push(name(a));
        } else if within(a.fired_at) && a.fired_at > n.started_at {
            joined.push(format!("{} ({})", name(a), a.severity.as_str()));
        } else if a.superseded_at.last().is_some_and(|&t| within(t)) {
            escalated.push(format!(
                "{} to {}",
                name(a),
                a.severity.as_str().to_uppercase()
            ));
        }
    }
    let list = |v: &[String]| {
        const SHOWN: usize = 3;
        let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
        if v.len() > SHOWN {
            s.push_str(&format!("; and {} more", v.len() - SHOWN));
        }
        s
    };
    let mut parts = Vec::new();
    for (v, one, many) in [
        (&escalated, "Escalated", "alerts escalated"),
        (&joined, "Joined", "alerts joined"),
        (&resolved, "Resolved", "alerts resolved"),
    ] {
        match v.len() {
            0 => {}
            1 => parts.push(format!("{one}: {}", v[0])),
            k => parts.push(format!("{k} {many} ({})", list(v))),
        }
    }
    parts.join("; ")
}

/// The responder's sentence for a notification.
/// Where the alert's value stands, truthfully: past its severity's
/// threshold, back inside it but not yet past `clear` (it still fires), or
/// past `clear` (it resolves once `keep_firing_for` has passed there).
fn position(p: &AlertEvidence) -> String {
    let (side, back) = match p.condition {
        Condition::Above => ("above", "below"),
        Condition::Below => ("below", "above"),
    };
    let past = |v: f64, t: f64| p.condition.past(v, t);
    let d = precision(p.value, &[p.threshold, p.clear]);
    let threshold = fmt_prec(p.threshold, d);
    let clear = fmt_prec(p.clear, d);
    match p.value {
        Some(v) if past(v, p.threshold) => {
            format!("{side} the {} threshold {threshold}", p.severity)
        }
        Some(v) if past(v, p.clear) => format!(
            "{back} the {} threshold {threshold} but not back to {clear} yet",
            p.severity,
        ),
        Some(_) => format!(
            "at or {back} its clear level {clear} (the {} threshold is {threshold}; it resolves if it stays there)",
            p.severity
        ),
        None => format!(
            "without a value (too little volume; the {} threshold is {threshold})",
            p.severity
        ),
    }
}

pub(crate) fn summary(n: &Notification) -> String {
    let Some(p) = n.primary() else {
        return format!("Incident {} ({})", n.dedup_key, n.action.as_str());
    };
    let window = Dur::from_ms(p.window_ms.max(0) as u64);
    // The other alerts by rule, in joining order: `severe_share ×3`.
    let mut others: Vec<(&str, usize)> = Vec::new();
    for (_, a) in n
        .alerts
        .iter()
        .enumerate()
        .filter(|(i, a)| *i != n.primary && (a.active || n.action == Action::Resolve))
    {
        match others.iter_mut().find(|(r, _)| *r == a.rule) {
            Some((_, k)) => *k += 1,
            None => others.push((a.rule.as_str(), 1)),
        }
    }
    let others: Vec<String> = others
        .into_iter()
        .map(|(r, k)| {
            if k > 1 {
                format!("{r} ×{k}")
            } else {
                r.to_string()
            }
        })
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else if n.action == Action::Resolve {
        format!(" Also resolved: {}.", others.join(", "))
    } else {
        format!(" Also firing: {}.", others.join(", "))
    };
    let head = format!(
        "{} on {} is {}, {} over the last {window}",
        p.rule,
        p.group_text(),
        p.value.map_or_else(
            || fmt_value(None),
            |v| fmt_prec(v, precision(p.value, &[p.threshold, p.clear]))
        ),
        position(p),
    );
    let also = if p.hints.is_empty() || n.action == Action::Resolve {
        also
    } else {
        format!(" Over-represented: {}.{also}", hints_text(&p.hints))
    };
    let dur = fmt_duration(n.duration_ms());
    match (n.action, n.reason) {
        (Action::Open, _) => format!(
            "[{}] {head}, since {}.{also}",
            n.severity.as_str().to_uppercase(),
            format_ts(p.started_at)
        ),
        (Action::Resolve, _) => match p.value {
            Some(v) => format!(
                "Resolved after {dur}: {} on {} is back to {} (peak {}, clears at {}).{also}",
                p.rule,
                p.group_text(),
                fmt_value(Some(v)),
                fmt_value(p.peak),
                fmt_value(Some(p.clear)),
            ),
            // The window's volume fell below the rule's minimum.
            None => format!(
                "Resolved after {dur}: {} on {} has too little data to judge (no value; peak {}, \
                 clears at {}).{also}",
                p.rule,
                p.group_text(),
                fmt_value(p.peak),
                fmt_value(Some(p.clear)),
            ),
        },
        (Action::Update, Reason::Escalated | Reason::AlertJoined | Reason::AlertResolved) => {
            // What changed since the update's first change, by alert.
            let changes = changes_text(n);
            let changes = if changes.is_empty() {
                match n.reason {
                    Reason::Escalated => {
                        format!("Escalated to {}", n.severity.as_str().to_uppercase())
                    }
                    Reason::AlertJoined => "Another alert joined".to_string(),
                    _ => "One alert resolved".to_string(),
                }
            } else {
                changes
            };
            let now = if n.alerts.iter().any(|a| a.active) {
                format!("{}: ", n.severity.as_str().to_uppercase())
            } else {
                String::new()
            };
            format!("{changes} after {dur}. {now}{head}.{also}")
        }
        (Action::Update, _) => format!(
            "Still firing after {dur}: {head} (peak {}).{also}",
            fmt_value(p.peak)
        ),
        (Action::Acknowledge, _) => {
            let (by, note) = n
                .ack
                .as_ref()
                .map_or(("a responder", ""), |a| (a.by.as_str(), a.note.as_str()));
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            };
            format!("Acknowledged by {by}{note} after {dur}; still firing: {head}.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_keys_are_bounded_readable_and_deterministic() {
        let short = vec![("product".to_string(), "router-x".to_string())];
        assert_eq!(
            incident_key("default", &short, 1000),
            "default/product=router-x/1000"
        );
        let long = vec![("product".to_string(), "é".repeat(300))];
        let k = incident_key("default", &long, 1_795_165_111_560);
        assert!(k.len() <= MAX_INCIDENT_KEY - 8, "{} bytes", k.len());
        assert!(k.starts_with("default/product=éé"), "{k}");
        assert!(k.ends_with("/1795165111560"), "{k}");
        assert_eq!(k, incident_key("default", &long, 1_795_165_111_560));
        let other = vec![("product".to_string(), format!("{}x", "é".repeat(299)))];
        assert_ne!(k, incident_key("default", &other, 1_795_165_111_560));
        // Bounding a bounded key changes nothing.
        assert_eq!(bounded_key(&k, 1_795_165_111_560, MAX_INCIDENT_KEY), k);
    }
}
