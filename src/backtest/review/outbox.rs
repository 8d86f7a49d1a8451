//! Reviews of the live service's incidents, rebuilt from its outbox
//! (`crisiswatch review --outbox`).
//!
//! The outbox ([`crate::incident::outbox`]) keeps every notification an
//! incident sent — open, updates, resolve, each with the evidence of all its
//! alerts — per receiver, the incidents still open, and a ledger of the alert
//! transitions it applied. [`load`] reads it read-only (the service may be
//! running) and rebuilds each incident:
//!
//! * its **notifications**, once per (incident, seq) however many receivers
//!   got them; muted ones count (the incident existed);
//! * per **alert**, the review's [`Incident`] model: rule, slice, breach
//!   start, firing, resolve, highest severity, and the transition timeline
//!   from the ledger (exact times and severities, pending included) — or, when
//!   the ledger was pruned, from the notifications;
//! * what the outbox does **not** keep is left out rather than estimated:
//!   indicator values appear only where a notification sent at that moment
//!   carried one, and the peak is the most extreme value the incident stage
//!   saw, with its time only when a notification pins it down.
//!
//! The event figures come from the history, as for any review:
//! [`super::collect_evidence`] over each alert's rule and slice.

use crate::backtest::report::{columns, printable, Cell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::alert::Labels;
use crate::backtest::report::{short_ts, Incident};
use crate::config::{Config, Severity};
use crate::incident::lifecycle;
use crate::incident::model::{Action, Reason};
use crate::incident::outbox::{OutboxReader, Status, StoredNotification};

use super::ReviewError;

mod build;
mod render;

use build::build;
pub use render::render;

/// Incidents listed in a "no match" error.
const LISTED_KEYS: usize = 20;

/// The incidents of one outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxReview {
    /// The database file read.
    pub(crate) path: PathBuf,
    /// Every incident, by breach start then key.
    pub(crate) incidents: Vec<OutboxIncident>,
    /// The latest event time the outbox knows (ledger and notifications),
    /// ms: the end for incidents still open.
    pub(crate) end_ms: i64,
}

/// One incident of the live service, as its outbox tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxIncident {
    /// `route/labels/start-ms`, the incident's dedup key.
    pub(crate) key: String,
    /// The route that grouped it.
    pub(crate) route: String,
    /// The grouping labels its alerts share.
    pub(crate) labels: Labels,
    /// When its first alert's breach began, ms.
    pub(crate) started_at: i64,
    /// Highest severity it was announced with.
    pub(crate) severity: Severity,
    /// When it resolved, if a resolve is stored.
    pub(crate) resolved_at: Option<i64>,
    /// Still among the outbox's open incidents.
    pub(crate) open: bool,
    /// Its stored notifications, by seq (pruned ones are missing).
    pub(crate) notifications: Vec<Sent>,
    /// Every alert that joined, in joining order.
    pub(crate) alerts: Vec<AlertReview>,
}

/// One notification of an incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sent {
    /// Number within the incident (1 = open).
    pub(crate) seq: u32,
    /// Event time, ms.
    pub(crate) at: i64,
    /// An update that gathered changes: its first change's event time, ms.
    pub(crate) since: Option<i64>,
    /// Open, update or resolve (as the lifecycle sent it).
    pub(crate) action: Action,
    /// Why.
    pub(crate) reason: Reason,
    /// The incident's severity then.
    pub(crate) severity: Severity,
    /// What changed since the previous stored notification, e.g.
    /// `complaint_rate escalated to critical`.
    pub(crate) change: String,
    /// The responder's sentence.
    pub(crate) summary: String,
    /// (receiver, status), by receiver.
    pub(crate) deliveries: Vec<(String, Status)>,
    /// Receivers that got this update as their `open`.
    pub(crate) sent_as_open: Vec<String>,
}

/// One alert of an outbox incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertReview {
    /// The alert in the review's model. Step values are `None` where no
    /// notification carried the value at that moment; `peak` is set only when
    /// its time is known (see [`AlertReview::peak`]).
    pub(crate) incident: Incident,
    /// What the rule catches (from the notification).
    pub(crate) description: String,
    /// The most extreme value the incident stage saw (transitions and
    /// progress updates).
    pub(crate) peak: Option<f64>,
    /// When that peak was seen, as far as the outbox tells.
    pub(crate) peak_at: PeakTime,
    /// Where the timeline comes from.
    pub(crate) timeline: TimelineSource,
    /// Signal event ids of the latest notification.
    pub(crate) sample_event_ids: Vec<String>,
    /// Root-cause hints the notifications carried: (time, hints) each time
    /// they changed.
    pub(crate) hints: Vec<(i64, Vec<crate::explain::Hint>)>,
}

/// When an alert's peak was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakTime {
    /// At this transition (a notification sent at that moment carried it).
    At(i64),
    /// Not stored; first carried by notification `seq` at `at`.
    ReportedBy {
        /// Event time of the notification, ms.
        at: i64,
        /// Its number.
        seq: u32,
    },
    /// Not stored.
    Unknown,
}

/// The source of an alert's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineSource {
    /// The outbox's ledger of applied transitions: every transition, exact.
    Ledger,
    /// The notifications (the ledger entries were pruned): no pending
    /// transitions, and escalations before the incident opened are folded
    /// into the open.
    Notifications,
}

/// Reads the outbox at `path` (a data directory or `outbox.sqlite`), read-only.
pub fn load(cfg: &Config, path: &Path) -> Result<OutboxReview, ReviewError> {
    let reader = OutboxReader::open(path)?;
    // One snapshot: a resolve written between two reads would otherwise leave
    // an incident neither open nor resolved.
    let (stored, open, ledger) =
        reader.snapshot(|r| Ok((r.notifications()?, r.open_incidents()?, r.applied()?)))?;
    let mut end_ms = ledger
        .values()
        .flatten()
        .map(|t| t.at)
        .max()
        .unwrap_or(i64::MIN);
    let mut by_key: BTreeMap<String, Vec<StoredNotification>> = BTreeMap::new();
    for n in stored {
        end_ms = end_ms.max(n.notification.at);
        by_key
            .entry(n.notification.dedup_key.clone())
            .or_default()
            .push(n);
    }
    let open: HashMap<String, lifecycle::Incident> =
        open.into_iter().map(|i| (i.key.clone(), i)).collect();
    for k in open.keys() {
        by_key.entry(k.clone()).or_default();
    }
    let mut incidents: Vec<OutboxIncident> = by_key
        .iter()
        .filter_map(|(k, notes)| build(k, notes, open.get(k), &ledger, cfg))
        .collect();
    incidents.sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
    tracing::debug!(
        outbox = %reader.path().display(),
        incidents = incidents.len(),
        "Incidents rebuilt from the outbox."
    );
    Ok(OutboxReview {
        path: reader.path().to_path_buf(),
        incidents,
        end_ms: end_ms.max(0),
    })
}
/// Picks incidents: by incident key or an alert's dedup key — exact, or a
/// substring matching exactly one incident; all of them when `keys` is empty.
pub fn select<'a>(
    review: &'a OutboxReview,
    keys: &[String],
) -> Result<Vec<&'a OutboxIncident>, ReviewError> {
    let all = &review.incidents;
    if keys.is_empty() {
        return Ok(all.iter().collect());
    }
    let mut out: Vec<&OutboxIncident> = Vec::new();
    for k in keys {
        let has_alert = |i: &OutboxIncident, f: &dyn Fn(&str) -> bool| {
            i.alerts.iter().any(|a| f(&a.incident.dedup_key))
        };
        let exact: Vec<&OutboxIncident> = all
            .iter()
            .filter(|i| i.key == *k || has_alert(i, &|a| a == k))
            .collect();
        let mut hits: Vec<&OutboxIncident> =
            all.iter().filter(|i| i.key.contains(k.as_str())).collect();
        if hits.is_empty() {
            hits = all
                .iter()
                .filter(|i| has_alert(i, &|a| a.contains(k.as_str())))
                .collect();
        }
        let hits = if exact.len() == 1 { exact } else { hits };
        match hits.as_slice() {
            [one] => {
                if !out.iter().any(|o| o.key == one.key) {
                    out.push(one);
                }
            }
            [] => {
                return Err(ReviewError::Select(format!(
                    "no incident in {} matches {k:?}; incidents: {}",
                    review.path.display(),
                    list_keys(all.iter())
                )))
            }
            many => {
                return Err(ReviewError::Select(format!(
                    "{k:?} matches {} incidents in {}: {}; give more of the key",
                    many.len(),
                    review.path.display(),
                    list_keys(many.iter().copied())
                )))
            }
        }
    }
    Ok(out)
}

fn list_keys<'a>(incidents: impl ExactSizeIterator<Item = &'a OutboxIncident>) -> String {
    let n = incidents.len();
    if n == 0 {
        return "(none)".to_string();
    }
    let mut s: Vec<&str> = incidents
        .take(LISTED_KEYS)
        .map(|i| i.key.as_str())
        .collect();
    if n > LISTED_KEYS {
        s.push("…");
    }
    s.join(", ")
}

/// One line per incident: key, state, severity, breach start, resolve,
/// alerts and notifications (`review --outbox --list`).
pub fn list(review: &OutboxReview) -> String {
    let w = review
        .incidents
        .iter()
        .map(|i| columns(&printable(&i.key)))
        .max()
        .unwrap_or(0)
        .max("incident".len());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<8}  {:<8}  {:<20}  {:<20}  {:>6}  {:>13}",
        "incident", "state", "severity", "breach began", "resolved", "alerts", "notifications"
    );
    for i in &review.incidents {
        let _ = writeln!(
            s,
            "{:<w$}  {:<8}  {:<8}  {:<20}  {:<20}  {:>6}  {:>13}",
            Cell(&printable(&i.key)),
            state_word(i),
            i.severity.as_str(),
            short_ts(i.started_at),
            i.resolved_at.map_or_else(|| "-".to_string(), short_ts),
            i.alerts.len(),
            i.notifications.len()
        );
    }
    s
}

fn state_word(i: &OutboxIncident) -> &'static str {
    match (i.resolved_at, i.open, i.notifications.is_empty()) {
        (Some(_), _, _) => "resolved",
        (None, true, true) => "forming",
        (None, true, false) => "open",
        (None, false, _) => "unknown",
    }
}
