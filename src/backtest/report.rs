//! Backtest results: incidents from transitions, per rule and slice figures,
//! and the scoring against ground truth.
//!
//! Sits at the end of a backtest. A [`Tracker`] turns the engine's transitions
//! into [`Incident`]s (alert instances that reached `firing`, from their dedup
//! key to `resolved` or the end of the data), with a timeline and the peak
//! value. [`summarize`] then derives, per rule and slice: incidents, total
//! time firing, flaps (a resolve followed by a re-fire of the same rule and
//! slice within `flap_gap`), peak values; and with labels ([`super::labels`]):
//! detection delay (first matching firing − crisis start: median, p90, max),
//! missed crises, false incidents, precision and recall.
//!
//! Percentiles are nearest-rank: the p-th of n sorted delays is the
//! ⌈p·n⌉-th, so the median of two delays is the smaller one, and every figure
//! is a delay that actually happened.

use std::collections::HashMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::alert::{Labels, State};
use crate::config::{Condition, Severity};
use crate::engine::EngineStats;
use crate::event::{format_ts, InvalidReason};

use super::labels::{self, Crisis};

mod text;
pub(crate) use text::{columns, printable, Cell};
mod tracker;

pub use text::{fmt_dur, fmt_value, short_ts};
use tracker::update_peak;
pub use tracker::Tracker;

/// 15 minutes: a re-fire within a quarter of an hour of a resolve is the same
/// trouble paging twice; later than that, responders treat it as a new incident.
pub(crate) const DEFAULT_FLAP_GAP_MS: i64 = 15 * 60 * 1000;

/// One transition of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Event time, ms.
    #[serde(serialize_with = "ser_ts")]
    pub(crate) at: i64,
    /// The state entered.
    #[serde(serialize_with = "ser_state")]
    pub(crate) state: State,
    /// Severity after the transition.
    pub(crate) severity: Severity,
    /// Indicator value then.
    pub(crate) value: Option<f64>,
    /// Threshold of that severity.
    pub(crate) threshold: f64,
    /// Root-cause hints the transition carried (rules with `explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) hints: Vec<crate::explain::Hint>,
}

/// The most extreme indicator value of an incident (highest for
/// `condition = "above"`, lowest for `"below"`) and when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Peak {
    /// The value.
    pub value: f64,
    /// Event time, ms.
    #[serde(serialize_with = "ser_ts")]
    pub(crate) at: i64,
}

/// One alert instance that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Rule name.
    pub rule: String,
    /// Slice, in `group_by` order.
    #[serde(serialize_with = "ser_group")]
    pub group: Labels,
    /// The instance's dedup key.
    pub dedup_key: String,
    /// When the breach began (pending start; the dedup key's time).
    #[serde(serialize_with = "ser_ts")]
    pub(crate) started_at: i64,
    /// When it fired.
    #[serde(serialize_with = "ser_ts")]
    pub fired_at: i64,
    /// When it resolved; `None`: still firing at the end of the data.
    #[serde(serialize_with = "ser_opt_ts")]
    pub resolved_at: Option<i64>,
    /// Highest severity reached.
    pub(crate) severity: Severity,
    /// Peak value: at transitions and at slide boundaries while open.
    pub(crate) peak: Option<Peak>,
    /// Every transition, in order.
    pub timeline: Vec<Step>,
    /// The rule's window, ms (the default matching grace).
    pub(crate) window_ms: i64,
    /// Which side of the thresholds is bad (the direction of the peak).
    pub(crate) condition: Condition,
}

impl Incident {
    /// `k=v k=v`, or `(all)`.
    pub fn group_label(&self) -> String {
        group_label(&self.group)
    }

    /// Time firing, up to `end_ms` when still open.
    pub(crate) fn firing_ms(&self, end_ms: i64) -> i64 {
        // Saturating: the times may come from a corrupt outbox.
        self.resolved_at
            .unwrap_or(end_ms)
            .saturating_sub(self.fired_at)
            .max(0)
    }
}

/// `k=v k=v`, or `(all)` for a rule without `group_by`; control
/// characters in a value are written escaped ([`printable`]).
pub(crate) fn group_label(group: &[(String, String)]) -> String {
    if group.is_empty() {
        return "(all)".to_string();
    }
    group
        .iter()
        .map(|(k, v)| format!("{k}={}", printable(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

// === summaries ===

/// Options of the summary.
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    /// Resolve → re-fire gaps up to this count as a flap.
    pub flap_gap_ms: i64,
    /// Matching grace after a crisis ends; `None`: each rule's window.
    pub grace_ms: Option<i64>,
    /// Known crises, if any.
    pub labels: Option<Vec<Crisis>>,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            flap_gap_ms: DEFAULT_FLAP_GAP_MS,
            grace_ms: None,
            labels: None,
        }
    }
}

/// Detection delays: nearest-rank median and p90, and the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Delays {
    /// Median, ms.
    pub median_ms: i64,
    /// 90th percentile, ms.
    pub p90_ms: i64,
    /// Maximum, ms.
    pub max_ms: i64,
}

impl Delays {
    /// Of a list of delays; `None` if empty.
    pub(crate) fn of(delays: &[i64]) -> Option<Delays> {
        if delays.is_empty() {
            return None;
        }
        let mut d = delays.to_vec();
        d.sort_unstable();
        let rank = |p: f64| {
            let k = (p * d.len() as f64).ceil() as usize;
            d[k.clamp(1, d.len()) - 1]
        };
        Some(Delays {
            median_ms: rank(0.5),
            p90_ms: rank(0.9),
            max_ms: d[d.len() - 1],
        })
    }
}

/// How one known crisis was detected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrisisOutcome {
    /// The crisis.
    pub name: String,
    /// Its kind.
    pub(crate) kind: String,
    /// Its slice.
    #[serde(serialize_with = "ser_group")]
    pub(crate) slice: Labels,
    /// Start, ms (JSON: `start`, RFC 3339, as in the labels file).
    #[serde(rename = "start", serialize_with = "ser_ts")]
    pub(crate) start_ms: i64,
    /// End, ms (JSON: `end`, RFC 3339).
    #[serde(rename = "end", serialize_with = "ser_ts")]
    pub(crate) end_ms: i64,
    /// First matching firing, ms.
    #[serde(serialize_with = "ser_opt_ts")]
    pub detected_at: Option<i64>,
    /// `detected_at − start`, ms.
    pub delay_ms: Option<i64>,
    /// Rules with a matching incident, the first to fire first.
    pub(crate) rules: Vec<String>,
    /// Dedup keys of the matching incidents.
    pub(crate) incidents: Vec<String>,
}

/// Ground-truth figures for a set of incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// Known crises.
    pub crises: usize,
    /// Crises with at least one matching incident.
    pub detected: usize,
    /// Crises with none.
    pub missed: usize,
    /// Incidents considered.
    pub incidents: usize,
    /// Incidents that match no crisis.
    pub false_incidents: usize,
    /// (incidents − false) ÷ incidents; `None` without incidents.
    pub precision: Option<f64>,
    /// detected ÷ crises; `None` without crises.
    pub recall: Option<f64>,
    /// Detection delays of the detected crises.
    pub delay: Option<Delays>,
    /// Per crisis.
    pub outcomes: Vec<CrisisOutcome>,
    /// Dedup keys of the false incidents.
    pub false_keys: Vec<String>,
    /// Labelled crises that start after the history ends: nothing could
    /// have caught them, so they are not scored (neither detected nor missed).
    pub after_history: usize,
    /// Labelled crises that end before the history starts: not scored either.
    pub before_history: usize,
}

/// Scores incidents against known crises. `grace` gives each incident's grace.
pub(crate) fn score(
    incidents: &[&Incident],
    crises: &[Crisis],
    grace: impl Fn(&Incident) -> i64,
) -> Truth {
    let mut outcomes = Vec::with_capacity(crises.len());
    let mut matched = vec![false; incidents.len()];
    for c in crises {
        let mut first: Option<i64> = None;
        // Each rule with its first matching firing.
        let mut by: Vec<(i64, &str)> = Vec::new();
        let mut keys = Vec::new();
        for (k, i) in incidents.iter().enumerate() {
            if labels::matches(&i.group, i.fired_at, c, grace(i)) {
                matched[k] = true;
                first = Some(first.map_or(i.fired_at, |f| f.min(i.fired_at)));
                match by.iter_mut().find(|(_, r)| *r == i.rule) {
                    Some((at, _)) => *at = (*at).min(i.fired_at),
                    None => by.push((i.fired_at, &i.rule)),
                }
                keys.push(i.dedup_key.clone());
            }
        }
        // The first to fire first (the one `detected_at` is of), then by
        // name: a field trial read the table's "by" as all firing at once.
        by.sort();
        let rules: Vec<String> = by.into_iter().map(|(_, r)| r.to_string()).collect();
        outcomes.push(CrisisOutcome {
            name: c.name.clone(),
            kind: c.kind.clone(),
            slice: c.slice.clone(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            detected_at: first,
            delay_ms: first.map(|f| f - c.start_ms),
            rules,
            incidents: keys,
        });
    }
    let delays: Vec<i64> = outcomes.iter().filter_map(|o| o.delay_ms).collect();
    let detected = delays.len();
    let false_keys: Vec<String> = incidents
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(i, _)| i.dedup_key.clone())
        .collect();
    let n = incidents.len();
    Truth {
        crises: crises.len(),
        detected,
        missed: crises.len() - detected,
        incidents: n,
        false_incidents: false_keys.len(),
        precision: (n > 0).then(|| (n - false_keys.len()) as f64 / n as f64),
        recall: (!crises.is_empty()).then(|| detected as f64 / crises.len() as f64),
        delay: Delays::of(&delays),
        outcomes,
        false_keys,
        after_history: 0,
        before_history: 0,
    }
}

/// Figures of one rule and slice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceSummary {
    /// Rule.
    pub rule: String,
    /// Slice.
    #[serde(serialize_with = "ser_group")]
    pub group: Labels,
    /// Incidents.
    pub incidents: usize,
    /// Total time firing, ms.
    pub firing_ms: i64,
    /// Resolve → re-fire within the flap gap.
    pub flaps: usize,
    /// Highest severity.
    pub(crate) severity: Severity,
    /// Peak value over its incidents.
    pub peak: Option<Peak>,
}

/// Figures of one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSummary {
    /// Rule.
    pub rule: String,
    /// Incidents.
    pub incidents: usize,
    /// Slices with at least one incident.
    pub slices: usize,
    /// Total time firing, ms.
    pub firing_ms: i64,
    /// Flaps.
    pub flaps: usize,
    /// Ground truth for this rule's incidents alone (with labels).
    pub truth: Option<Truth>,
}

/// One of the first invalid input lines a report names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidLine {
    /// 1-based count among the non-blank lines of all inputs.
    pub line: u64,
    /// Where it came from: `file:line` (the file's own line number, blank
    /// lines counted), `stdin:line` or `topic[partition]@offset`; `None`
    /// for lines handed over in memory.
    pub at: Option<String>,
    /// Why it was refused.
    #[serde(serialize_with = "ser_reason")]
    pub reason: crate::event::InvalidReason,
    /// The decoder's detail.
    pub detail: String,
}

fn ser_reason<S: Serializer>(r: &crate::event::InvalidReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// The whole backtest report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Non-blank input lines.
    pub lines: u64,
    /// Engine counters.
    #[serde(serialize_with = "ser_stats")]
    pub stats: EngineStats,
    /// Ids the dedup memory forgot before `dedup_horizon` because it was
    /// full (`engine.dedup_max_ids`): a repeat of one counted again.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) dedup_evicted: u64,
    /// First event time (the start of the data span), ms (JSON:
    /// `first_at`, RFC 3339).
    #[serde(rename = "first_at", serialize_with = "ser_opt_ts")]
    pub(crate) first_ms: Option<i64>,
    /// Last event time (the engine clock at the end), ms (JSON: `end_at`,
    /// RFC 3339).
    #[serde(rename = "end_at", serialize_with = "ser_opt_ts")]
    pub end_ms: Option<i64>,
    /// Time the events cover, ms: the span without gaps of more than a day
    /// between consecutive event times (see `backtest::coverage`).
    pub(crate) covered_ms: Option<i64>,
    /// Gaps of more than a day left out of `covered_ms`.
    pub(crate) gaps: u64,
    /// Flap gap used, ms.
    pub(crate) flap_gap_ms: i64,
    /// Grace used (`None`: each rule's window), ms.
    pub(crate) grace_ms: Option<i64>,
    /// Per rule, in configuration order.
    pub rules: Vec<RuleSummary>,
    /// Per rule and slice with incidents.
    pub slices: Vec<SliceSummary>,
    /// All rules together, with labels.
    pub truth: Option<Truth>,
    /// Every incident.
    pub incidents: Vec<Incident>,
    /// The first few invalid inputs: (input line count, reason, detail);
    /// the text report names the refuted clock jumps (`clock_jump`) among them.
    #[serde(skip)]
    pub invalid_examples: Vec<(u64, crate::event::InvalidReason, String)>,
    /// The same lines with where each came from (`file:line`, or
    /// `topic[partition]@offset`). JSON: `invalid_lines`, a list of
    /// `{line, at, reason, detail}` (`line`: the count among the non-blank
    /// lines of all inputs; `at`: the file and its physical line).
    #[serde(rename = "invalid_lines")]
    pub invalid_lines: Vec<InvalidLine>,
    /// Rules whose `engine.max_groups_per_rule` refused events: (rule,
    /// events refused). Such an event can still count as applied (another
    /// rule took it), so the `overflow` total does not show them.
    /// JSON: `{rule: events refused}`.
    #[serde(serialize_with = "ser_per_rule")]
    pub capped: Vec<(String, u64)>,
    /// Rules that dropped more events as late than the report's `late`
    /// (events late for *every* rule that selected them): (rule, events too
    /// old for its window). An event late for a short rule but taken by a
    /// longer one is not in `late`, and the short rule never counted it.
    /// JSON: `late_for_rule`, `{rule: events}`.
    #[serde(rename = "late_for_rule", serialize_with = "ser_per_rule")]
    pub late_for: Vec<(String, u64)>,
}

/// Per rule (in `rule_names` order) and per slice figures of `incidents`.
pub(crate) fn summarize(
    rule_names: &[String],
    incidents: &[Incident],
    start_ms: Option<i64>,
    end_ms: i64,
    opts: &SummaryOptions,
) -> (Vec<RuleSummary>, Vec<SliceSummary>, Option<Truth>) {
    let grace = |i: &Incident| opts.grace_ms.unwrap_or(i.window_ms);
    let mut slices: Vec<SliceSummary> = Vec::new();
    let mut index: HashMap<(&str, &Labels), usize> = HashMap::new();
    let mut last_resolve: Vec<Option<i64>> = Vec::new();
    for i in incidents {
        let k = *index.entry((&i.rule, &i.group)).or_insert_with(|| {
            slices.push(SliceSummary {
                rule: i.rule.clone(),
                group: i.group.clone(),
                incidents: 0,
                firing_ms: 0,
                flaps: 0,
                severity: i.severity,
                peak: None,
            });
            last_resolve.push(None);
            slices.len() - 1
        });
        let s = &mut slices[k];
        // Incidents arrive by firing time, so the previous one of this slice is known.
        if let Some(r) = last_resolve[k] {
            if i.fired_at - r <= opts.flap_gap_ms {
                s.flaps += 1;
            }
        }
        last_resolve[k] = i.resolved_at;
        s.incidents += 1;
        s.firing_ms += i.firing_ms(end_ms);
        s.severity = s.severity.max(i.severity);
        if let Some(p) = i.peak {
            update_peak(&mut s.peak, p.value, p.at, i.condition);
        }
    }
    slices.sort_by(|a, b| {
        let ra = rule_names.iter().position(|n| *n == a.rule);
        let rb = rule_names.iter().position(|n| *n == b.rule);
        (ra, &a.group).cmp(&(rb, &b.group))
    });
    // A crisis that starts after the history ends, or ends before it
    // starts, cannot be caught in it.
    let before = |c: &Crisis| start_ms.is_some_and(|s| c.end_ms < s);
    let labels: Option<(Vec<Crisis>, usize, usize)> = opts.labels.as_ref().map(|l| {
        let within: Vec<Crisis> = l
            .iter()
            .filter(|c| c.start_ms <= end_ms && !before(c))
            .cloned()
            .collect();
        let after = l.iter().filter(|c| c.start_ms > end_ms).count();
        let earlier = l
            .iter()
            .filter(|c| c.start_ms <= end_ms && before(c))
            .count();
        (within, after, earlier)
    });
    let score_within = |inc: &[&Incident]| {
        labels.as_ref().map(|(l, after, earlier)| Truth {
            after_history: *after,
            before_history: *earlier,
            ..score(inc, l, grace)
        })
    };
    let rules = rule_names
        .iter()
        .map(|name| {
            let mine: Vec<&SliceSummary> = slices.iter().filter(|s| &s.rule == name).collect();
            let inc: Vec<&Incident> = incidents.iter().filter(|i| &i.rule == name).collect();
            let truth = score_within(&inc);
            RuleSummary {
                rule: name.clone(),
                incidents: mine.iter().map(|s| s.incidents).sum(),
                slices: mine.len(),
                firing_ms: mine.iter().map(|s| s.firing_ms).sum(),
                flaps: mine.iter().map(|s| s.flaps).sum(),
                truth,
            }
        })
        .collect();
    let all: Vec<&Incident> = incidents.iter().collect();
    let truth = score_within(&all);
    (rules, slices, truth)
}

// === serde helpers ===

fn ser_ts<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ms))
}

fn ser_opt_ts<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_ts(*ms)),
        None => s.serialize_none(),
    }
}

/// `(rule, n)` pairs as one JSON object.
fn ser_per_rule<S: Serializer>(v: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (rule, n) in v {
        m.serialize_entry(rule, n)?;
    }
    m.end()
}

fn ser_state<S: Serializer>(st: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.as_str())
}

/// A group as a JSON object in `group_by` order.
pub(crate) fn ser_group<S: Serializer>(g: &Labels, s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(g.len()))?;
    for (k, v) in g {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

fn ser_stats<S: Serializer>(st: &EngineStats, s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("events_in", &st.events_in)?;
    m.serialize_entry("applied", &st.applied)?;
    m.serialize_entry("invalid", &st.invalid_total())?;
    let by_reason: std::collections::BTreeMap<&str, u64> = InvalidReason::ALL
        .iter()
        .filter(|r| st.invalid[r.index()] > 0)
        .map(|r| (r.as_str(), st.invalid[r.index()]))
        .collect();
    m.serialize_entry("invalid_by_reason", &by_reason)?;
    m.serialize_entry("duplicates", &st.duplicates)?;
    m.serialize_entry("late", &st.late)?;
    m.serialize_entry("unmatched", &st.unmatched)?;
    m.serialize_entry("overflow", &st.overflow)?;
    m.serialize_entry("transitions", &st.transitions)?;
    m.end()
}

/// Serde: a count left out of the JSON when zero.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests;
