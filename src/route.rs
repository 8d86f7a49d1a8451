//! Routing: which rules see an event, and which of a rule's selectors it matches.
//!
//! Sits between decoding and the windows. Selectors from the configuration are
//! compiled once into [`CompiledSelector`]s; the [`Router`] indexes rules by the
//! event types their selectors can match, so an event is only tested against
//! the rules that can possibly want it.

use crate::config::{OneOrMany, Selector, ValueMatch};
use crate::event::Event;

/// A compiled [`ValueMatch`].
#[derive(Debug, Clone)]
enum Matcher {
    /// Equals one value.
    Eq(Box<str>),
    /// Is one of several values.
    In(Box<[Box<str>]>),
    /// Is none of these values (or absent).
    NotIn(Box<[Box<str>]>),
}

impl Matcher {
    fn compile(m: &ValueMatch) -> Self {
        let boxed = |v: &OneOrMany| -> Box<[Box<str>]> {
            v.to_vec().into_iter().map(String::into_boxed_str).collect()
        };
        match m {
            ValueMatch::Is(OneOrMany::One(v)) => Matcher::Eq(v.clone().into_boxed_str()),
            ValueMatch::Is(many) => Matcher::In(boxed(many)),
            ValueMatch::Not(n) => Matcher::NotIn(boxed(&n.not)),
        }
    }

    #[inline]
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Matcher::Eq(want), Some(v)) => want.as_ref() == v,
            (Matcher::In(set), Some(v)) => set.iter().any(|s| s.as_ref() == v),
            (Matcher::NotIn(set), Some(v)) => !set.iter().any(|s| s.as_ref() == v),
            (Matcher::NotIn(_), None) => true,
            (_, None) => false,
        }
    }

    /// The types this matcher can accept, or `None` for "any".
    fn positive_values(&self) -> Option<Vec<&str>> {
        match self {
            Matcher::Eq(v) => Some(vec![v.as_ref()]),
            Matcher::In(set) => Some(set.iter().map(|s| s.as_ref()).collect()),
            Matcher::NotIn(_) => None,
        }
    }
}

/// A compiled [`Selector`]: a type match and attribute matches, all of which must hold.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSelector {
    kind: Option<Matcher>,
    attrs: Box<[(Box<str>, Matcher)]>,
}

impl CompiledSelector {
    /// Compiles a configured selector.
    pub(crate) fn compile(s: &Selector) -> Self {
        CompiledSelector {
            kind: s.kind.as_ref().map(Matcher::compile),
            attrs: s
                .attrs
                .iter()
                .map(|(k, m)| (k.clone().into_boxed_str(), Matcher::compile(m)))
                .collect(),
        }
    }

    /// Whether the event matches.
    #[inline]
    pub(crate) fn matches(&self, ev: &Event<'_>) -> bool {
        if let Some(k) = &self.kind {
            if !k.matches(Some(&ev.kind)) {
                return false;
            }
        }
        self.attrs.iter().all(|(name, m)| m.matches(ev.attr(name)))
    }

    /// The event types this selector can match, or `None` for any type.
    pub(crate) fn types(&self) -> Option<Vec<&str>> {
        self.kind.as_ref().and_then(Matcher::positive_values)
    }
}

/// Indexes rules by event type.
#[derive(Debug, Default)]
pub(crate) struct Router {
    /// type → rules whose selectors name that type.
    by_type: hashbrown::HashMap<Box<str>, Vec<u32>, foldhash::fast::FixedState>,
    /// Rules with a selector that accepts any type (or a negated type).
    any_type: Vec<u32>,
}

impl Router {
    /// Builds the index from each rule's selectors.
    pub(crate) fn new<'a>(rules: impl IntoIterator<Item = Vec<&'a CompiledSelector>>) -> Self {
        let mut r = Router::default();
        for (idx, selectors) in rules.into_iter().enumerate() {
            let idx = idx as u32;
            let mut types: Vec<&str> = Vec::new();
            let mut any = false;
            for s in selectors {
                match s.types() {
                    Some(ts) => types.extend(ts),
                    None => any = true,
                }
            }
            if any {
                r.any_type.push(idx);
                continue;
            }
            types.sort_unstable();
            types.dedup();
            for t in types {
                r.by_type.entry(t.into()).or_default().push(idx);
            }
        }
        r
    }

    /// Calls `f` with each rule that may want an event of type `kind`, in rule order.
    #[inline]
    pub(crate) fn for_each_candidate(&self, kind: &str, mut f: impl FnMut(u32)) {
        let typed = self.by_type.get(kind).map(Vec::as_slice).unwrap_or(&[]);
        if self.any_type.is_empty() {
            typed.iter().for_each(|&r| f(r));
            return;
        }
        // Merge the two sorted lists so rules are visited in configuration order.
        let (mut i, mut j) = (0, 0);
        while i < typed.len() || j < self.any_type.len() {
            let take_typed =
                j >= self.any_type.len() || (i < typed.len() && typed[i] < self.any_type[j]);
            if take_typed {
                f(typed[i]);
                i += 1;
            } else {
                f(self.any_type[j]);
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotMatch;
    use crate::event::{decode, DecodeLimits};

    fn ev(s: &str) -> Event<'_> {
        decode(s.as_bytes(), &DecodeLimits::default(), None).unwrap()
    }

    #[test]
    fn equality_membership_and_negation() {
        let mut sel = Selector {
            kind: Some(ValueMatch::Is(OneOrMany::One("complaint".into()))),
            ..Default::default()
        };
        sel.attrs.insert(
            "category".into(),
            ValueMatch::Is(OneOrMany::Many(vec![
                "safety".into(),
                "product_quality".into(),
            ])),
        );
        sel.attrs.insert(
            "segment".into(),
            ValueMatch::Not(NotMatch {
                not: OneOrMany::One("internal".into()),
            }),
        );
        let c = CompiledSelector::compile(&sel);
        assert!(c.matches(&ev(
            r#"{"id":"1","type":"complaint","ts":1,"attrs":{"category":"safety"}}"#
        )));
        assert!(!c.matches(&ev(
            r#"{"id":"1","type":"order","ts":1,"attrs":{"category":"safety"}}"#
        )));
        assert!(!c.matches(&ev(
            r#"{"id":"1","type":"complaint","ts":1,"attrs":{"category":"billing"}}"#
        )));
        assert!(!c.matches(&ev(r#"{"id":"1","type":"complaint","ts":1}"#)));
        assert!(!c.matches(&ev(
            r#"{"id":"1","type":"complaint","ts":1,"attrs":{"category":"safety","segment":"internal"}}"#
        )));
        assert_eq!(c.types(), Some(vec!["complaint"]));
    }

    #[test]
    fn router_visits_rules_in_order() {
        let a = CompiledSelector::compile(&Selector {
            kind: Some(ValueMatch::Is(OneOrMany::One("order".into()))),
            ..Default::default()
        });
        let any = CompiledSelector::compile(&Selector::default());
        let b = CompiledSelector::compile(&Selector {
            kind: Some(ValueMatch::Is(OneOrMany::Many(vec![
                "order".into(),
                "complaint".into(),
            ]))),
            ..Default::default()
        });
        let router = Router::new(vec![vec![&a], vec![&any], vec![&b], vec![&a, &b]]);
        let mut seen = Vec::new();
        router.for_each_candidate("order", |r| seen.push(r));
        assert_eq!(seen, vec![0, 1, 2, 3]);
        seen.clear();
        router.for_each_candidate("complaint", |r| seen.push(r));
        assert_eq!(seen, vec![1, 2, 3]);
        seen.clear();
        router.for_each_candidate("feedback", |r| seen.push(r));
        assert_eq!(seen, vec![1]);
    }
}
