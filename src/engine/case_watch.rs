//! History tools: values that a selector names in another letter case.
//! Selectors compare exactly, so a producer writing `"Social"` where a rule
//! selects `"social"` leaves the rule unfed without a word (a field trial's
//! social crisis never reached `social_spike`). When a history tool turns it
//! on ([`Engine::watch_cases`]), every processed event's `type` and selected
//! attributes are compared with the values the selectors name; the ones
//! that differ only in case are counted and named at the end.

use std::collections::BTreeMap;

use crate::config::{RuleConfig, Selector, ValueMatch};
use crate::event::Event;

/// Distinct (field, seen, named) variants kept; past it, new ones are not.
const MAX_VARIANTS: usize = 64;

/// The field a selector matches: the event type or an attribute.
const TYPE: &str = "type";

/// What the selectors name, and the variants seen.
#[derive(Debug, Default)]
pub(crate) struct CaseWatch {
    /// Field → the values selectors name in it (a few: scanned, not hashed).
    named: Vec<(String, Vec<String>)>,
    /// (field, value seen, value named) → events.
    seen: BTreeMap<(String, String, String), u64>,
}

/// A value seen in another case than a selector names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaseVariant {
    /// `type` or the attribute's name.
    pub(crate) field: String,
    /// The value the events had.
    pub(crate) seen: String,
    /// The value the selectors name.
    pub(crate) named: String,
    /// Events with it.
    pub(crate) events: u64,
    /// The rules whose selectors name it.
    pub(crate) rules: Vec<String>,
}

impl CaseWatch {
    /// Watches the values `rules`' selectors name.
    pub(crate) fn new<'a>(rules: impl IntoIterator<Item = &'a RuleConfig>) -> Self {
        let mut w = CaseWatch::default();
        for r in rules {
            for s in r.indicator.selectors() {
                for (field, m) in fields(s) {
                    let at = match w.named.iter().position(|(f, _)| f == field) {
                        Some(i) => i,
                        None => {
                            w.named.push((field.to_string(), Vec::new()));
                            w.named.len() - 1
                        }
                    };
                    let list = &mut w.named[at].1;
                    for v in values(m) {
                        if !list.contains(&v) {
                            list.push(v);
                        }
                    }
                }
            }
        }
        w
    }

    /// Counts `ev`'s values that a selector names in another case.
    #[inline]
    pub(crate) fn observe(&mut self, ev: &Event<'_>) {
        if self.named.is_empty() {
            return;
        }
        self.check(TYPE, &ev.kind);
        for (k, v) in &ev.attrs {
            self.check(k, v);
        }
    }

    #[inline]
    fn check(&mut self, field: &str, value: &str) {
        let Some((_, named)) = self.named.iter().find(|(f, _)| f == field) else {
            return;
        };
        // Most values are named exactly or differ in length from every name.
        let mut variant = None;
        for n in named {
            if n.len() != value.len() {
                continue;
            }
            if n == value {
                return;
            }
            if variant.is_none() && n.eq_ignore_ascii_case(value) {
                variant = Some(n);
            }
        }
        let Some(n) = variant else {
            return;
        };
        let key = (field.to_string(), value.to_string(), n.clone());
        if let Some(c) = self.seen.get_mut(&key) {
            *c += 1;
        } else if self.seen.len() < MAX_VARIANTS {
            self.seen.insert(key, 1);
        }
    }

    /// The variants seen, with the rules (of `rules`) naming each value.
    pub(crate) fn variants<'a>(
        &self,
        rules: impl IntoIterator<Item = &'a RuleConfig> + Clone,
    ) -> Vec<CaseVariant> {
        self.seen
            .iter()
            .map(|((field, seen, named), &events)| CaseVariant {
                field: field.clone(),
                seen: seen.clone(),
                named: named.clone(),
                events,
                rules: rules
                    .clone()
                    .into_iter()
                    .filter(|r| {
                        r.indicator.selectors().into_iter().any(|s| {
                            fields(s).any(|(f, m)| f == field && values(m).contains(named))
                        })
                    })
                    .map(|r| r.name.clone())
                    .collect(),
            })
            .collect()
    }
}

/// The fields a selector matches, with their matches.
fn fields(s: &Selector) -> impl Iterator<Item = (&str, &ValueMatch)> {
    s.kind
        .iter()
        .map(|m| (TYPE, m))
        .chain(s.attrs.iter().map(|(k, m)| (k.as_str(), m)))
}

/// The values a match names (whether it selects or excludes them).
fn values(m: &ValueMatch) -> Vec<String> {
    match m {
        ValueMatch::Is(v) => v.to_vec(),
        ValueMatch::Not(n) => n.not.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::{decode, DecodeLimits};

    #[test]
    fn values_in_another_case_are_counted_with_their_rules() {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "social"
group_by = ["product"]
window = "30m"
indicator = { kind = "count", select = { type = "complaint", attrs = { channel = "social" } } }
thresholds = { warning = 5.0 }
"#,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let mut w = CaseWatch::new(&cfg.rules);
        for (i, (kind, channel)) in [
            ("complaint", "social"),
            ("complaint", "Social"),
            ("complaint", "SOCIAL"),
            ("Complaint", "social"),
            ("complaint", "web"),
            ("complaint", "Social"),
        ]
        .iter()
        .enumerate()
        {
            let line = format!(
                r#"{{"id":"e{i}","type":"{kind}","ts":1000,"attrs":{{"channel":"{channel}"}}}}"#
            );
            w.observe(&decode(line.as_bytes(), &DecodeLimits::default(), None).unwrap());
        }
        let v = w.variants(&cfg.rules);
        let got: Vec<(&str, &str, u64)> = v
            .iter()
            .map(|c| (c.field.as_str(), c.seen.as_str(), c.events))
            .collect();
        assert_eq!(
            got,
            vec![
                ("channel", "SOCIAL", 1),
                ("channel", "Social", 2),
                ("type", "Complaint", 1)
            ]
        );
        assert!(v.iter().all(|c| c.rules == vec!["social".to_string()]));
    }
}
