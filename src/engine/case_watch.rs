//! History tools: values that a selector names in another form — another
//! letter case, with spaces around it, or with other word separators.
//! Selectors compare exactly, so a producer writing `"Social"` where a rule
//! selects `"social"` leaves the rule unfed without a word (a field trial's
//! social crisis never reached `social_spike`); so does `"complaint "` (a
//! padded export) or `"Product Quality"` where the rule names
//! `"product_quality"`. When a history tool turns it on
//! ([`Engine::watch_cases`]), every processed event's `type` and selected
//! attributes are compared with the values the selectors name; the ones
//! that differ only in case, surrounding white space or separators (`-`,
//! `_` and a space are one) are counted and named at the end.

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
    /// Events counted in `seen`, all variants.
    total: u64,
}

/// A value seen in another form than a selector names it (see the module docs).
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

    /// Counts `ev`'s values that a selector names in another form.
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
        // Most values are named exactly or differ in length from every
        // name (after trimming, which is free for a value without spaces).
        let trimmed = value.trim();
        let mut variant = None;
        for n in named {
            if n.len() == value.len() && n == value {
                return;
            }
            if variant.is_none() && n.len() == trimmed.len() && loosely_equal(n, trimmed) {
                variant = Some(n);
            }
        }
        let Some(n) = variant else {
            return;
        };
        // A few entries at most, scanned: no key is built for a known one
        // (the live consumer sees every event of a producer's variant).
        let known = self
            .seen
            .iter_mut()
            .find(|((f, v, m), _)| f == field && v == value && m == n);
        if let Some((_, c)) = known {
            *c += 1;
            self.total += 1;
        } else if self.seen.len() < MAX_VARIANTS {
            self.seen
                .insert((field.to_string(), value.to_string(), n.clone()), 1);
            self.total += 1;
        }
    }

    /// Events counted so far, all variants together.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Events counted so far per (field, value seen, value named).
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&(String, String, String), u64)> {
        self.seen.iter().map(|(k, &n)| (k, n))
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

/// Whether `a` and `b` (of equal length) differ only in ASCII letter case
/// and in which of `-`, `_` and a space separates their words.
pub(crate) fn loosely_equal(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'-' | b' ' => b'_',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

impl CaseVariant {
    /// Its rules' names, quoted and comma-separated (for a warning).
    pub(crate) fn rules_listed(&self) -> String {
        self.rules
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
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

    /// A padded value, or one with other word separators, is a variant too;
    /// a value that merely shares letters, or is named exactly, is not.
    #[test]
    fn padded_values_and_other_separators_are_counted() {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "quality"
group_by = ["product"]
window = "30m"
indicator = { kind = "count", select = { type = "complaint", attrs = { category = ["product_quality", "safety"] } } }
thresholds = { warning = 5.0 }
"#,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let mut w = CaseWatch::new(&cfg.rules);
        for (i, (kind, category)) in [
            ("complaint", "product_quality"),
            ("complaint ", "product_quality"),
            ("\\tcomplaint", "safety"),
            ("complaint", "Product Quality"),
            ("complaint", "product-quality"),
            ("complaint", " safety "),
            ("complaint", "productquality"),
            ("complaint", "product_quality_x"),
            ("complaints", "safety"),
            ("complaint", "saf ety"),
        ]
        .iter()
        .enumerate()
        {
            let line = format!(
                r#"{{"id":"e{i}","type":"{kind}","ts":1000,"attrs":{{"category":"{category}"}}}}"#
            );
            w.observe(&decode(line.as_bytes(), &DecodeLimits::default(), None).unwrap());
        }
        let got: Vec<(String, String, String, u64)> = w
            .variants(&cfg.rules)
            .into_iter()
            .map(|c| (c.field, c.seen, c.named, c.events))
            .collect();
        let row = |f: &str, seen: &str, named: &str| (f.into(), seen.into(), named.into(), 1);
        assert_eq!(
            got,
            vec![
                row("category", " safety ", "safety"),
                row("category", "Product Quality", "product_quality"),
                row("category", "product-quality", "product_quality"),
                row("type", "\tcomplaint", "complaint"),
                row("type", "complaint ", "complaint"),
            ]
        );
        assert!(loosely_equal("a-b c", "A_B_C"));
        assert!(!loosely_equal("ab", "abc"));
        assert!(!loosely_equal("a.b", "a_b"));
    }
}
