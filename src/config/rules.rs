//! The `[[rules]]` section: indicators, selectors, thresholds and alerts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

// === rules ===

/// Alert severity, lowest first. Maps to PagerDuty's info/warning/error/critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// A crisis may be starting.
    Warning,
    /// A crisis is under way.
    Error,
    /// A major crisis: start the emergency plan.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Info, Self::Warning, Self::Error, Self::Critical];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Fire when the value is strictly above the threshold.
    #[default]
    Above,
    /// Fire when the value is strictly below the threshold.
    Below,
}

impl Condition {
    /// Whether `value` is past `threshold` on the bad side (strictly): the
    /// one comparison that alert states, incident summaries, review and
    /// config validation share.
    pub fn past(self, value: f64, threshold: f64) -> bool {
        match self {
            Condition::Above => value > threshold,
            Condition::Below => value < threshold,
        }
    }
}

/// As the configuration writes it: `above`, `below`.
impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Condition::Above => "above",
            Condition::Below => "below",
        })
    }
}

/// Thresholds per severity; at least one. For `above`, higher severities need higher values.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Threshold of the `info` severity.
    pub(crate) info: Option<f64>,
    /// Threshold of the `warning` severity.
    pub warning: Option<f64>,
    /// Threshold of the `error` severity.
    pub(crate) error: Option<f64>,
    /// Threshold of the `critical` severity.
    pub(crate) critical: Option<f64>,
}

impl Thresholds {
    /// The configured (severity, threshold) pairs, lowest severity first.
    pub fn levels(&self) -> Vec<(Severity, f64)> {
        [
            (Severity::Info, self.info),
            (Severity::Warning, self.warning),
            (Severity::Error, self.error),
            (Severity::Critical, self.critical),
        ]
        .into_iter()
        .filter_map(|(s, v)| v.map(|v| (s, v)))
        .collect()
    }
}

/// One value or a list of values.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// A single value.
    One(String),
    /// Any of several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A match on one field: `"x"` (equals), `["x", "y"]` (one of), `{ not = "x" }` or
/// `{ not = ["x", "y"] }` (none of; also true when the attribute is absent).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum ValueMatch {
    /// Equality or set membership.
    Is(OneOrMany),
    /// Negation.
    Not(NotMatch),
}

impl ValueMatch {
    /// Whether `value` (`None`: the label or attribute is absent) satisfies
    /// the match; a negation also holds for an absent one. Incident routes
    /// match with it, and `check`'s advice reasons with it.
    pub(crate) fn admits(&self, value: Option<&str>) -> bool {
        match self {
            ValueMatch::Is(vals) => value.is_some_and(|v| vals.to_vec().iter().any(|x| x == v)),
            ValueMatch::Not(n) => value.is_none_or(|v| !n.not.to_vec().iter().any(|x| x == v)),
        }
    }

    /// Whether every value (or absence) this match admits, `other` admits too.
    fn within(&self, other: &ValueMatch) -> bool {
        match (self, other) {
            (ValueMatch::Is(a), ValueMatch::Is(b)) => {
                let b = b.to_vec();
                a.to_vec().iter().all(|v| b.contains(v))
            }
            (ValueMatch::Is(a), ValueMatch::Not(n)) => {
                let n = n.not.to_vec();
                a.to_vec().iter().all(|v| !n.contains(v))
            }
            (ValueMatch::Not(a), ValueMatch::Not(n)) => {
                let a = a.not.to_vec();
                n.not.to_vec().iter().all(|v| a.contains(v))
            }
            // A negation admits values (and absence) no list names.
            (ValueMatch::Not(_), ValueMatch::Is(_)) => false,
        }
    }
}

/// The negated form of [`ValueMatch`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotMatch {
    /// Values that must not match.
    pub(crate) not: OneOrMany,
}

/// Which events an indicator counts: by `type` and by attributes (all must match).
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Event type match; absent matches every type.
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<ValueMatch>,
    /// Attribute matches, all of which must hold.
    #[serde(default)]
    pub(crate) attrs: BTreeMap<String, ValueMatch>,
}

impl Selector {
    /// Whether every event this selector takes, `other` takes too (judged
    /// from the matches alone: `false` when that cannot be told).
    pub(crate) fn within(&self, other: &Selector) -> bool {
        let kind = match (&self.kind, &other.kind) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.within(b),
        };
        kind && other
            .attrs
            .iter()
            .all(|(k, m)| self.attrs.get(k).is_some_and(|s| s.within(m)))
    }
}

/// Time unit of a `rate` indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    /// Events per second.
    Second,
    /// Events per minute.
    #[default]
    Minute,
    /// Events per hour.
    Hour,
}

/// How a surge compares the current window with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SurgeMethod {
    /// current ÷ baseline expectation for one window (2.0 = twice the usual volume).
    #[default]
    Ratio,
    /// (current − expectation) ÷ standard deviation of the baseline, in window units.
    Zscore,
}

/// What is measured over the window, per group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IndicatorConfig {
    /// Number of matching events. Volume: the count.
    Count {
        /// Events counted.
        #[serde(default)]
        select: Selector,
    },
    /// Matching events per unit of time over the window length. Volume: the count.
    Rate {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Time unit.
        #[serde(default)]
        per: RateUnit,
    },
    /// numerator count ÷ denominator count (e.g. complaints ÷ orders). Volume: the denominator.
    Ratio {
        /// Events on top.
        numerator: Selector,
        /// Events below.
        denominator: Selector,
        /// Below this many denominator events the ratio is not computed (no data).
        #[serde(default = "default_min_denominator")]
        min_denominator: u64,
    },
    /// Distinct `customer_id`s among matching events. Volume: matching events with a customer.
    DistinctCustomers {
        /// Events counted.
        #[serde(default)]
        select: Selector,
    },
    /// Customers with at least `min_events` matching events (repeat complainers, at-risk customers).
    RepeatCustomers {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Events per customer needed to count the customer.
        min_events: u32,
    },
    /// Share of the customers with matching events that have at least
    /// `min_events` of them (repeat ÷ distinct customers): a relative measure
    /// of repeated dissatisfaction, whatever the slice's volume. Volume: the
    /// distinct customers.
    RepeatShare {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Events per customer needed to count the customer as a repeat.
        min_events: u32,
        /// Below this many distinct customers the share is not computed (no data).
        #[serde(default = "default_min_denominator")]
        min_customers: u64,
    },
    /// Share of scored matching events whose `score` is in [min, max] (e.g. detractors: 0..=6).
    ScoreShare {
        /// Events considered (those without a score are ignored).
        #[serde(default)]
        select: Selector,
        /// Lowest score counted (inclusive).
        min: f64,
        /// Highest score counted (inclusive).
        max: f64,
    },
    /// Mean `score` of matching events. Volume: scored events.
    MeanScore {
        /// Events considered.
        #[serde(default)]
        select: Selector,
    },
    /// Net Promoter Score: (promoters 9–10 − detractors 0–6) ÷ responses × 100. Volume: responses.
    Nps {
        /// Events considered.
        #[serde(default)]
        select: Selector,
    },
    /// Current window count against the trailing `baseline` before it. Volume: the current count.
    Surge {
        /// Events counted.
        #[serde(default)]
        select: Selector,
        /// Length of the trailing baseline (a multiple of the slide).
        baseline: Dur,
        /// Ratio or z-score.
        #[serde(default)]
        method: SurgeMethod,
        /// Floor of the expected count per window, so that a near-empty baseline
        /// does not turn two events into a "surge".
        #[serde(default = "default_min_baseline")]
        min_baseline: f64,
        /// Seasonal baseline: compare with the same time of earlier seasons
        /// (`"1d"`: previous days, `"7d"`: previous weeks) instead of the
        /// trailing `baseline`, which then says how many seasons to average
        /// (`baseline ÷ seasonality`, e.g. "7d" with "1d": about a week of
        /// days). A multiple of the window, at most 2016 windows.
        #[serde(default)]
        seasonality: Option<Dur>,
    },
    /// The response-SLA backlog: complaints (`select`) older than `sla` that
    /// no response (`responses`, naming the complaint's `id` in `ref_id`) has
    /// answered yet, counted in the slice of the complaint. The rule's
    /// `window` is how long an unanswered complaint keeps counting (longer
    /// than `sla`). Volume: the same count.
    Unanswered {
        /// The complaints.
        #[serde(default)]
        select: Selector,
        /// The events that answer them (`ref_id` = the complaint's `id`).
        #[serde(default = "default_responses")]
        responses: Selector,
        /// The first-response deadline (a multiple of the slide, shorter than the window).
        sla: Dur,
    },
    /// First-response times: the `quantile` (e.g. 0.9) of the time from a
    /// complaint (`select`) to its first response (`responses`, naming the
    /// complaint's `id` in `ref_id`), in seconds, over the first responses
    /// of the window, in the slice of the complaint. A response counts if
    /// its complaint is at most one `window` older. Volume: the first
    /// responses of the window.
    ResponseTime {
        /// The complaints.
        #[serde(default)]
        select: Selector,
        /// The events that answer them (`ref_id` = the complaint's `id`).
        #[serde(default = "default_responses")]
        responses: Selector,
        /// Which quantile, in (0, 1]: 0.5 the median, 1 the slowest.
        quantile: f64,
    },
}

/// `{ type = "response" }`.
fn default_responses() -> Selector {
    Selector {
        kind: Some(ValueMatch::Is(OneOrMany::One("response".into()))),
        attrs: BTreeMap::new(),
    }
}

/// 1 denominator event: a ratio needs at least one.
fn default_min_denominator() -> u64 {
    1
}
/// 1 expected event per window.
fn default_min_baseline() -> f64 {
    1.0
}

impl IndicatorConfig {
    /// The selectors of this indicator.
    pub(crate) fn selectors(&self) -> Vec<&Selector> {
        match self {
            IndicatorConfig::Ratio {
                numerator,
                denominator,
                ..
            } => vec![numerator, denominator],
            IndicatorConfig::Count { select }
            | IndicatorConfig::Rate { select, .. }
            | IndicatorConfig::DistinctCustomers { select }
            | IndicatorConfig::RepeatCustomers { select, .. }
            | IndicatorConfig::RepeatShare { select, .. }
            | IndicatorConfig::ScoreShare { select, .. }
            | IndicatorConfig::MeanScore { select }
            | IndicatorConfig::Nps { select }
            | IndicatorConfig::Surge { select, .. } => vec![select],
            IndicatorConfig::Unanswered {
                select, responses, ..
            }
            | IndicatorConfig::ResponseTime {
                select, responses, ..
            } => vec![select, responses],
        }
    }

    /// The `kind` name.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            IndicatorConfig::Count { .. } => "count",
            IndicatorConfig::Rate { .. } => "rate",
            IndicatorConfig::Ratio { .. } => "ratio",
            IndicatorConfig::DistinctCustomers { .. } => "distinct_customers",
            IndicatorConfig::RepeatCustomers { .. } => "repeat_customers",
            IndicatorConfig::RepeatShare { .. } => "repeat_share",
            IndicatorConfig::ScoreShare { .. } => "score_share",
            IndicatorConfig::MeanScore { .. } => "mean_score",
            IndicatorConfig::Nps { .. } => "nps",
            IndicatorConfig::Surge { .. } => "surge",
            IndicatorConfig::Unanswered { .. } => "unanswered",
            IndicatorConfig::ResponseTime { .. } => "response_time",
        }
    }
}

/// One alerting rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: lowercase letters, digits and `_`. Appears in metrics and dedup keys.
    pub name: String,
    /// What crisis this rule catches, for responders.
    #[serde(default)]
    pub(crate) description: String,
    /// Attributes that define a slice (group), e.g. `["product", "region"]`. Empty: one global group.
    /// An event without one of these attributes is grouped under the empty value.
    #[serde(default)]
    pub(crate) group_by: Vec<String>,
    /// Sliding window length.
    pub(crate) window: Dur,
    /// How far the window moves at a time; must divide `window`. Default: window ÷ 10.
    #[serde(default)]
    pub(crate) slide: Option<Dur>,
    /// The measured indicator.
    pub(crate) indicator: IndicatorConfig,
    /// Fire above (default) or below the thresholds.
    #[serde(default)]
    pub condition: Condition,
    /// Thresholds per severity.
    pub thresholds: Thresholds,
    /// A firing alert resolves only once the value is back past this (hysteresis).
    /// Default: the lowest severity's threshold.
    #[serde(default)]
    pub clear: Option<f64>,
    /// How long the condition must hold before the alert fires (pending meanwhile).
    #[serde(rename = "for", default)]
    pub(crate) for_: Dur,
    /// How long a firing alert keeps firing after the condition clears.
    #[serde(default)]
    pub(crate) keep_firing_for: Dur,
    /// Below this volume in the window the indicator is not evaluated (no data).
    #[serde(default)]
    pub(crate) min_volume: u64,
    /// Judge the breach on the one-sided confidence bound of the estimate at
    /// this level (e.g. 0.95) instead of its point value: the lower bound for
    /// `above`, the upper for `below`, so a small slice needs stronger
    /// evidence than a large one. For `ratio`, `score_share`, `nps`,
    /// `mean_score` and `surge`; in (0.5, 1). Default: off (point value).
    #[serde(default)]
    pub(crate) confidence: Option<f64>,
    /// Runbook link for responders.
    #[serde(default)]
    pub(crate) runbook: Option<String>,
    /// Dashboard link for responders.
    #[serde(default)]
    pub(crate) dashboard: Option<String>,
    /// Root-cause hints: event attributes (e.g. `["category", "channel"]`)
    /// whose values over-represented in a breaching slice's window, against
    /// the slice's own baseline, are named in its transitions and incidents
    /// (`src/explain.rs`). At most 8, unique, not in `group_by`. Default: `[]`
    /// (off: the rule keeps no extra state and costs nothing more).
    #[serde(default)]
    pub(crate) explain: Vec<String>,
    /// What the hints compare the window with: the slice's signal events of
    /// this long before it (1 to 100 windows). Default: 24 windows (a day for
    /// a 1h window).
    #[serde(default)]
    pub(crate) explain_baseline: Option<Dur>,
}

impl RuleConfig {
    /// The slide, with its default applied.
    pub(crate) fn slide(&self) -> Dur {
        self.slide
            .unwrap_or_else(|| Dur::from_ms((self.window.as_ms() / 10).max(1) as u64))
    }

    /// The clear threshold, with its default applied.
    pub(crate) fn clear_threshold(&self) -> Option<f64> {
        let levels = self.thresholds.levels();
        self.clear.or_else(|| levels.first().map(|l| l.1))
    }
}
