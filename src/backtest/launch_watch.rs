//! History tools: surge pages on slices first seen mid-history. A surge's
//! warm-up is the rule's (its history starts after the pane of its first
//! event), not each slice's, so a slice that appears later — a product
//! launched, a new market — is judged against a baseline of zeros from
//! before it existed, floored at `min_baseline`, and its ordinary traffic
//! can page like a surge (a field trial: a product launched at ordinary
//! rates paged `complaint_surge` 23 minutes after its first events). The
//! engine cannot tell a new slice from a sparse one by the rule's own
//! events; a backtest can name the case from all of them.
//!
//! [`LaunchWatch`] notes, for each distinct `group_by` of the surge rules
//! (without `seasonality`), the first time any valid event of the history
//! had each slice's values, whatever its type. After the pass, an incident
//! of such a rule is named when at least half of the history in its
//! baseline at the firing (the baseline after the rule's warm-up origin)
//! lies before its slice's first event: the page may be the slice's
//! launch, not a surge.

use std::fmt::Write as _;

use crate::config::{Config, IndicatorConfig};
#[cfg(test)]
use crate::event::Event;
use crate::event::{format_ts as fmt_ts, OwnedEvent};

use super::report::{fmt_dur, printable, Incident};

/// Distinct slices noted per `group_by`; past it, new ones are not (and
/// their incidents are not named).
const MAX_SLICES: usize = 200_000;

/// Incidents named one by one; the rest are counted.
const NAMED: usize = 5;

/// Separates the values of a slice key (not in attribute values a
/// producer writes in practice; a collision only merges two slices' first
/// times).
const SEP: char = '\u{1f}';

/// One distinct `group_by` of the surge rules.
#[derive(Debug)]
struct SliceSet {
    attrs: Vec<String>,
    /// Slice key → the earliest time of a valid event with its values.
    first: hashbrown::HashMap<Box<str>, i64, foldhash::fast::FixedState>,
}

/// A surge rule the watch names incidents of.
#[derive(Debug)]
struct SurgeRule {
    name: String,
    /// The rule's index in the configuration (the engine's order).
    index: usize,
    /// Index into [`LaunchWatch::sets`].
    set: usize,
    window_ms: i64,
    baseline_ms: i64,
}

/// First times of the surge rules' slices (see the module docs).
#[derive(Debug)]
pub(crate) struct LaunchWatch {
    sets: Vec<SliceSet>,
    rules: Vec<SurgeRule>,
    key: String,
}

/// One incident named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    pub(crate) rule: String,
    pub(crate) slice: Vec<(String, String)>,
    pub(crate) fired_at: i64,
    /// The slice's first event (of any type) in the history.
    pub(crate) first_seen: i64,
    pub(crate) baseline_ms: i64,
}

impl LaunchWatch {
    /// A watch over `cfg`'s surge rules that slice (`None` when there are none).
    pub(crate) fn new(cfg: &Config) -> Option<Self> {
        let mut w = LaunchWatch {
            sets: Vec::new(),
            rules: Vec::new(),
            key: String::new(),
        };
        for (index, r) in cfg.rules.iter().enumerate() {
            let IndicatorConfig::Surge {
                baseline,
                seasonality: None,
                ..
            } = &r.indicator
            else {
                continue;
            };
            if r.group_by.is_empty() {
                continue;
            }
            let set = match w.sets.iter().position(|s| s.attrs == r.group_by) {
                Some(i) => i,
                None => {
                    w.sets.push(SliceSet {
                        attrs: r.group_by.clone(),
                        first: hashbrown::HashMap::with_hasher(
                            foldhash::fast::FixedState::with_seed(0x1a0c),
                        ),
                    });
                    w.sets.len() - 1
                }
            };
            w.rules.push(SurgeRule {
                name: r.name.clone(),
                index,
                set,
                window_ms: r.window.as_ms(),
                baseline_ms: baseline.as_ms(),
            });
        }
        (!w.rules.is_empty()).then_some(w)
    }

    /// Notes a decoded line (a valid event; invalid lines are not a slice's).
    pub(crate) fn observe_held(&mut self, held: &Result<OwnedEvent, crate::event::Invalid>) {
        if let Ok(ev) = held {
            self.note(ev.ts(), |a| ev.attr(a));
        }
    }

    /// Notes `ev`'s slices.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, ev: &Event<'_>) {
        self.note(ev.ts, |a| ev.attr(a));
    }

    /// Notes the slices of an event at `ts` whose attributes `attr` gives.
    fn note<'e>(&mut self, ts: i64, attr: impl Fn(&str) -> Option<&'e str>) {
        for set in &mut self.sets {
            self.key.clear();
            for (i, a) in set.attrs.iter().enumerate() {
                if i > 0 {
                    self.key.push(SEP);
                }
                self.key.push_str(attr(a).unwrap_or(""));
            }
            if let Some(t) = set.first.get_mut(self.key.as_str()) {
                *t = (*t).min(ts);
            } else if set.first.len() < MAX_SLICES {
                set.first.insert(self.key.as_str().into(), ts);
            }
        }
    }

    /// The incidents whose baseline history at the firing lay mostly before
    /// their slice's first event; `origin(rule index)` is the end of the
    /// rule's warm-up origin pane (its history starts there), `None` when
    /// the rule had no event.
    pub(crate) fn launches(
        &self,
        incidents: &[Incident],
        origin: impl Fn(usize) -> Option<i64>,
    ) -> Vec<Launch> {
        let mut out = Vec::new();
        for inc in incidents {
            let Some(rule) = self.rules.iter().find(|r| r.name == inc.rule) else {
                continue;
            };
            let Some(origin) = origin(rule.index) else {
                continue;
            };
            let set = &self.sets[rule.set];
            let mut key = String::new();
            let mut slice = Vec::new();
            for (i, a) in set.attrs.iter().enumerate() {
                let v = inc
                    .group
                    .iter()
                    .find(|(k, _)| k == a)
                    .map_or("", |(_, v)| v.as_str());
                if i > 0 {
                    key.push(SEP);
                }
                key.push_str(v);
                slice.push((a.clone(), v.to_string()));
            }
            let Some(&first_seen) = set.first.get(key.as_str()) else {
                continue;
            };
            let base_end = inc.fired_at.saturating_sub(rule.window_ms);
            let base_start = base_end.saturating_sub(rule.baseline_ms).max(origin);
            let history = base_end.saturating_sub(base_start);
            let before = first_seen.min(base_end).saturating_sub(base_start);
            if history > 0 && before > 0 && before.saturating_mul(2) >= history {
                out.push(Launch {
                    rule: rule.name.clone(),
                    slice,
                    fired_at: inc.fired_at,
                    first_seen,
                    baseline_ms: rule.baseline_ms,
                });
            }
        }
        out
    }
}

/// The warning naming `launches` (none when there are none).
pub(crate) fn warning(launches: &[Launch]) -> Option<String> {
    let first = launches.first()?;
    let slice = |l: &Launch| {
        l.slice
            .iter()
            .map(|(k, v)| format!("{k}={:?}", printable(v)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut s = format!(
        "{} incident(s) of surge rules fired on a slice first seen mid-history, judged against a \
         baseline that was mostly zeros from before the slice's first event (the surge warm-up \
         is the rule's, not the slice's: a product launched or a new market pages like a surge):",
        launches.len()
    );
    for l in launches.iter().take(NAMED) {
        let _ = write!(
            s,
            " {} on {} fired at {}, {} after the slice's first event of any type ({});",
            l.rule,
            slice(l),
            fmt_ts(l.fired_at),
            fmt_dur(l.fired_at.saturating_sub(l.first_seen).max(0)),
            fmt_ts(l.first_seen),
        );
    }
    if launches.len() > NAMED {
        let _ = write!(s, " and {} more;", launches.len() - NAMED);
    }
    let _ = write!(
        s,
        " if these are launches, not surges, silence a new slice for its baseline at launch \
         (`crisiswatch silence add {} --for {}`) or raise the rule's `min_baseline`",
        first
            .slice
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        fmt_dur(first.baseline_ms),
    );
    Some(s)
}

#[cfg(test)]
mod tests;
