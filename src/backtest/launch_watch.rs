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
//! baseline at the firing (the baseline panes after the rule's warm-up
//! origin, as the engine counts them) lies before the pane of its slice's
//! first event: the page may be the slice's launch, not a surge. An event
//! stamped too early (a typo) makes its slice older than it is, so the
//! watch may miss a launch; it never names a slice that was there.

use std::fmt::Write as _;

use crate::config::{Config, IndicatorConfig};
use crate::engine::pane_of;
#[cfg(test)]
use crate::event::Event;
use crate::event::{format_ts as fmt_ts, OwnedEvent};

use super::report::{fmt_dur, printable, Incident};

/// Distinct slices noted per `group_by`; past it, new ones are not (and
/// their incidents are not named).
const MAX_SLICES: usize = 200_000;

/// Incidents named one by one; the rest are counted.
const NAMED: usize = 5;

/// One distinct `group_by` of the surge rules.
#[derive(Debug)]
struct SliceSet {
    attrs: Vec<String>,
    /// Indices of `attrs` in [`LaunchWatch::attrs`].
    ids: Vec<usize>,
    /// Slice (the 64-bit hash of its values: [`slice_hash`]; two slices
    /// colliding would only share a first time) → the earliest time of a
    /// valid event with its values.
    first: hashbrown::HashMap<u64, i64, foldhash::fast::FixedState>,
}

/// The hash of a slice's values, in `group_by` order (each value followed
/// by a byte no UTF-8 text has, so `("ab", "")` and `("a", "b")` differ).
fn slice_hash<'v>(values: impl IntoIterator<Item = &'v str>) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x1a0c).build_hasher();
    for v in values {
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// A surge rule the watch names incidents of.
#[derive(Debug)]
struct SurgeRule {
    name: String,
    /// The rule's index in the configuration (the engine's order).
    index: usize,
    /// Index into [`LaunchWatch::sets`].
    set: usize,
    slide_ms: i64,
    window_ms: i64,
    baseline_ms: i64,
}

/// First times of the surge rules' slices (see the module docs).
#[derive(Debug)]
pub(crate) struct LaunchWatch {
    sets: Vec<SliceSet>,
    rules: Vec<SurgeRule>,
    /// The distinct attributes of all sets, and an event's values of them.
    attrs: Vec<String>,
    values: Vec<Option<std::ops::Range<usize>>>,
}

/// One incident named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    pub(crate) rule: String,
    pub(crate) slice: Vec<(String, String)>,
    pub(crate) fired_at: i64,
    /// The slice's first event (of any type) in the history.
    pub(crate) first_seen: i64,
    /// Until the slice's pre-launch zeros leave the baseline: window plus baseline.
    pub(crate) reach_ms: i64,
}

/// A value as a shell word: as it is when plain, else single-quoted.
fn shell_word(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/@%+=,-".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

impl LaunchWatch {
    /// A watch over `cfg`'s surge rules that slice (`None` when there are none).
    pub(crate) fn new(cfg: &Config) -> Option<Self> {
        let mut w = LaunchWatch {
            sets: Vec::new(),
            rules: Vec::new(),
            attrs: Vec::new(),
            values: Vec::new(),
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
                    let ids = r
                        .group_by
                        .iter()
                        .map(|a| match w.attrs.iter().position(|x| x == a) {
                            Some(i) => i,
                            None => {
                                w.attrs.push(a.clone());
                                w.attrs.len() - 1
                            }
                        })
                        .collect();
                    w.sets.push(SliceSet {
                        attrs: r.group_by.clone(),
                        ids,
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
                slide_ms: r.slide().as_ms().max(1),
                window_ms: r.window.as_ms(),
                baseline_ms: baseline.as_ms(),
            });
        }
        w.values = vec![None; w.attrs.len()];
        (!w.rules.is_empty()).then_some(w)
    }

    /// Notes a decoded line (a valid event; invalid lines are not a slice's).
    pub(crate) fn observe_held(&mut self, held: &Result<OwnedEvent, crate::event::Invalid>) {
        if let Ok(ev) = held {
            self.note(ev.ts(), ev.text(), ev.attr_ranges());
        }
    }

    /// Notes `ev`'s slices.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, ev: &Event<'_>) {
        let mut text = String::new();
        let mut ranges = Vec::new();
        for (k, v) in &ev.attrs {
            let k0 = text.len();
            text.push_str(k);
            let v0 = text.len();
            text.push_str(v);
            ranges.push((k0..v0, v0..text.len()));
        }
        self.note(ev.ts, &text, ranges);
    }

    /// Notes the slices of an event at `ts` whose attributes are the
    /// (key, value) ranges `attrs` of `text` (the decoder keeps one value
    /// per key; were there two, the first would count here).
    fn note(
        &mut self,
        ts: i64,
        text: &str,
        attrs: impl IntoIterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)>,
    ) {
        self.values.fill(None);
        let mut missing = self.attrs.len();
        for (k, v) in attrs {
            let key = text.as_bytes().get(k).unwrap_or_default();
            // Length and first byte first: most keys differ there, and a
            // call to compare the rest costs more than the rest of the loop.
            let same = |a: &String| {
                let a = a.as_bytes();
                a.len() == key.len() && a.first() == key.first() && a == key
            };
            if let Some(i) = self.attrs.iter().position(same) {
                if self.values[i].is_none() {
                    self.values[i] = Some(v);
                    missing -= 1;
                    if missing == 0 {
                        break;
                    }
                }
            }
        }
        for set in &mut self.sets {
            let values = set.ids.iter().map(|&i| {
                self.values[i]
                    .clone()
                    .and_then(|r| text.get(r))
                    .unwrap_or_default()
            });
            let h = slice_hash(values);
            if let Some(t) = set.first.get_mut(&h) {
                *t = (*t).min(ts);
            } else if set.first.len() < MAX_SLICES {
                set.first.insert(h, ts);
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
            let slice: Vec<(String, String)> = set
                .attrs
                .iter()
                .map(|a| {
                    let v = inc.group.iter().find(|(k, _)| k == a);
                    (a.clone(), v.map_or("", |(_, v)| v.as_str()).to_string())
                })
                .collect();
            let h = slice_hash(slice.iter().map(|(_, v)| v.as_str()));
            let Some(&first_seen) = set.first.get(&h) else {
                continue;
            };
            // In panes, as the engine's baseline: the window is the panes up
            // to the firing's, the baseline the panes before them, history
            // only after the origin pane; the slice's own first pane is not
            // before it.
            let s = rule.slide_ms;
            let window_end = pane_of(inc.fired_at, s).saturating_mul(s);
            let base_end = window_end.saturating_sub(rule.window_ms);
            let base_start = base_end.saturating_sub(rule.baseline_ms).max(origin);
            let history = base_end.saturating_sub(base_start);
            let launch = pane_of(first_seen, s).saturating_sub(1).saturating_mul(s);
            let before = launch.min(base_end).saturating_sub(base_start);
            if history > 0 && before > 0 && before.saturating_mul(2) >= history {
                out.push(Launch {
                    rule: rule.name.clone(),
                    slice,
                    fired_at: inc.fired_at,
                    first_seen,
                    reach_ms: rule.window_ms.saturating_add(rule.baseline_ms),
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
         baseline that was mostly history from before the slice's first event, in which it had \
         no events (the surge warm-up is the rule's, not the slice's: a product launched or a new \
         market pages like a surge):",
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
        " if these are launches, not surges, silence the rule on a new slice until its window \
         and baseline have passed the launch (`crisiswatch silence add rule={} {} --for {}`) or \
         raise the rule's `min_baseline`",
        first.rule,
        first
            .slice
            .iter()
            .map(|(k, v)| shell_word(&format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" "),
        fmt_dur(first.reach_ms).replace(' ', ""),
    );
    Some(s)
}

#[cfg(test)]
mod tests;
