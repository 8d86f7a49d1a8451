//! The alert state machine of one (rule, group), and the transitions it emits
//! (`docs/contract.md` §3).
//!
//! Sits after the indicators: every evaluation feeds `(at, value)` to
//! [`AlertPolicy::step`], which moves the [`Phase`] and returns at most one
//! transition plus the next time the alert needs a look even if nothing
//! changes (`for` and `keep_firing_for` expiries).
//!
//! ```text
//!             breach                   held for `for`
//! inactive ─────────► pending ───────────────────────► firing ──► (escalated)*
//!    ▲                   │ breach ends (silent)          │ back past `clear` for
//!    └───────────────────┴───────────────────────────────┘ `keep_firing_for` → resolved
//! ```
//!
//! * *breach*: the value is past a severity threshold (strictly above for
//!   `condition = "above"`, strictly below for `"below"`); the severity is the
//!   highest one crossed.
//! * While firing the alert holds as long as the value stays past the `clear`
//!   threshold (hysteresis); severity only rises (`escalated`), never falls,
//!   until the alert resolves.
//! * No data (`None`, below `min_volume`) never breaches and never holds.
//! * With `for = 0` an alert fires at once, without a pending transition. A
//!   pending alert whose breach ends returns to inactive without a transition.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::config::{Condition, Severity};
use crate::event::format_ts;

/// A group's (attribute, value) pairs in `group_by` order.
pub(crate) type Labels = Vec<(String, String)>;

/// The published states of an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Breaching, waiting for `for`.
    Pending,
    /// Firing: an incident is open.
    Firing,
    /// Still firing, at a higher severity.
    Escalated,
    /// Recovered: the incident closes.
    Resolved,
}

impl State {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Escalated => "escalated",
            State::Resolved => "resolved",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an alert instance is.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Nothing going on.
    #[default]
    Inactive,
    /// Breaching since `since`, not yet for long enough.
    Pending {
        /// When the breach began (also the dedup key's time).
        since: i64,
        /// The severity the breach has at its latest evaluation.
        severity: Severity,
    },
    /// Firing.
    Firing {
        /// When the breach began (pending start, or firing start with `for = 0`).
        since: i64,
        /// Current (highest) severity.
        severity: Severity,
        /// When the value went back past `clear`, if it has.
        clear_since: Option<i64>,
    },
}

impl Phase {
    /// Numeric code for the `crisiswatch_alert_state` gauge: 0 inactive, 1 pending, 2 firing.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Phase::Inactive => 0,
            Phase::Pending { .. } => 1,
            Phase::Firing { .. } => 2,
        }
    }
}

/// The thresholds and timings of one rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct AlertPolicy {
    /// (severity, threshold), lowest severity first.
    pub(crate) levels: Vec<(Severity, f64)>,
    /// Hysteresis threshold.
    pub(crate) clear: f64,
    /// Above or below.
    pub(crate) condition: Condition,
    /// Pending duration in ms.
    pub(crate) for_ms: i64,
    /// Keep-firing duration in ms.
    pub(crate) keep_firing_for_ms: i64,
}

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// The transition, if any: state and severity.
    pub(crate) transition: Option<(State, Severity)>,
    /// The dedup-key time of the alert instance the transition belongs to.
    pub(crate) since: i64,
    /// When to look again even without new events.
    pub(crate) wake_at: Option<i64>,
}

impl AlertPolicy {
    /// The threshold of a severity.
    pub(crate) fn threshold(&self, severity: Severity) -> f64 {
        self.levels
            .iter()
            .find(|(s, _)| *s == severity)
            .map_or(self.clear, |(_, v)| *v)
    }

    fn past(&self, value: f64, threshold: f64) -> bool {
        self.condition.past(value, threshold)
    }

    /// The highest severity whose threshold `value` crosses.
    pub(crate) fn breach(&self, value: Option<f64>) -> Option<Severity> {
        let v = value?;
        self.levels
            .iter()
            .rev()
            .find(|(_, t)| self.past(v, *t))
            .map(|(s, _)| *s)
    }

    /// Whether a firing alert still holds at `value` (past the clear threshold).
    pub(crate) fn holds(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| self.past(v, self.clear))
    }

    /// Advances `phase` for an evaluation at event time `at`.
    pub(crate) fn step(&self, phase: &mut Phase, at: i64, value: Option<f64>) -> Step {
        let breach = self.breach(value);
        let mut out = Step {
            transition: None,
            since: at,
            wake_at: None,
        };
        match *phase {
            Phase::Inactive => {
                if let Some(sev) = breach {
                    if self.for_ms <= 0 {
                        *phase = Phase::Firing {
                            since: at,
                            severity: sev,
                            clear_since: None,
                        };
                        out.transition = Some((State::Firing, sev));
                    } else {
                        *phase = Phase::Pending {
                            since: at,
                            severity: sev,
                        };
                        out.transition = Some((State::Pending, sev));
                        out.wake_at = Some(at.saturating_add(self.for_ms));
                    }
                }
            }
            Phase::Pending { since, .. } => {
                out.since = since;
                match breach {
                    None => *phase = Phase::Inactive,
                    Some(sev) => {
                        // The severity is the breach's now: a higher level
                        // touched for a moment while `for` ran has not held,
                        // and the firing transition's value is always past
                        // the threshold it reports.
                        if at - since >= self.for_ms {
                            *phase = Phase::Firing {
                                since,
                                severity: sev,
                                clear_since: None,
                            };
                            out.transition = Some((State::Firing, sev));
                        } else {
                            *phase = Phase::Pending {
                                since,
                                severity: sev,
                            };
                            out.wake_at = Some(since.saturating_add(self.for_ms));
                        }
                    }
                }
            }
            Phase::Firing {
                since,
                severity,
                clear_since,
            } => {
                out.since = since;
                let mut severity = severity;
                if let Some(sev) = breach {
                    if sev > severity {
                        severity = sev;
                        out.transition = Some((State::Escalated, sev));
                    }
                }
                if self.holds(value) {
                    *phase = Phase::Firing {
                        since,
                        severity,
                        clear_since: None,
                    };
                } else {
                    let cleared = clear_since.unwrap_or(at);
                    if at - cleared >= self.keep_firing_for_ms {
                        *phase = Phase::Inactive;
                        out.transition = Some((State::Resolved, severity));
                    } else {
                        *phase = Phase::Firing {
                            since,
                            severity,
                            clear_since: Some(cleared),
                        };
                        out.wake_at = Some(cleared.saturating_add(self.keep_firing_for_ms));
                    }
                }
            }
        }
        out
    }
}

/// One alert transition: a line of `replay` output and the input of incidents.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Rule name.
    pub rule: String,
    /// The group: (attribute, value) in `group_by` order.
    pub group: Vec<(String, String)>,
    /// New state.
    pub state: State,
    /// Severity after the transition.
    pub severity: Severity,
    /// Event time of the transition, ms.
    pub at: i64,
    /// Indicator value then (`None`: too little volume).
    pub value: Option<f64>,
    /// Threshold of `severity`.
    pub threshold: f64,
    /// Clear (hysteresis) threshold.
    pub clear: f64,
    /// Identifies the alert instance from pending/firing to resolved.
    pub dedup_key: String,
    /// When the alert instance began, ms.
    pub started_at: i64,
    /// Window length, ms.
    pub window_ms: i64,
    /// Ids of signal events seen while the alert was active (most recent last).
    pub sample_event_ids: Vec<String>,
    /// Root-cause hints (rules with `explain`; pending, firing and escalated
    /// transitions): the values over-represented in the window, best first.
    pub hints: Vec<crate::explain::Hint>,
}

impl Transition {
    /// The deterministic key `rule/attr=value,.../start_ms`. Characters of
    /// values that would make it ambiguous (`% , = /`) are percent-encoded;
    /// a rule without `group_by` uses `all` for the group part.
    pub fn make_dedup_key(rule: &str, group: &[(String, String)], since: i64) -> String {
        let mut key = String::with_capacity(rule.len() + 32);
        key.push_str(rule);
        key.push('/');
        if group.is_empty() {
            key.push_str("all");
        }
        for (i, (k, v)) in group.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            escape_into(&mut key, k);
            key.push('=');
            escape_into(&mut key, v);
        }
        key.push('/');
        key.push_str(&since.to_string());
        key
    }

    /// The group as `k=v k=v`, for people.
    pub fn group_label(&self) -> String {
        if self.group.is_empty() {
            return "(all)".to_string();
        }
        self.group
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | ',' | '=' | '/' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
}

/// A group as a JSON object in `group_by` order.
struct GroupMap<'a>(&'a [(String, String)]);

impl Serialize for GroupMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Transition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(12 + usize::from(!self.hints.is_empty())))?;
        m.serialize_entry("rule", &self.rule)?;
        m.serialize_entry("group", &GroupMap(&self.group))?;
        m.serialize_entry("state", self.state.as_str())?;
        m.serialize_entry("severity", self.severity.as_str())?;
        m.serialize_entry("at", &format_ts(self.at))?;
        m.serialize_entry("value", &self.value.filter(|v| v.is_finite()))?;
        m.serialize_entry("threshold", &self.threshold)?;
        m.serialize_entry("clear", &self.clear)?;
        m.serialize_entry("dedup_key", &self.dedup_key)?;
        m.serialize_entry("started_at", &format_ts(self.started_at))?;
        m.serialize_entry(
            "window",
            &crate::config::Dur::from_ms(self.window_ms.max(0) as u64).to_string(),
        )?;
        m.serialize_entry("sample_event_ids", &self.sample_event_ids)?;
        if !self.hints.is_empty() {
            m.serialize_entry("hints", &self.hints)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests;
