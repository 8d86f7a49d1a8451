//! Labels whose slice no event of the history has. A crisis is matched to
//! incidents by its slice's values, exactly; a labels file that writes
//! `"Router-X"` where the events have `"router-x"` (or a product the
//! history never mentions) matches no incident, and the backtest reports
//! the crisis missed and the incidents of the real slice false — with no
//! other sign. The history tools run with `--labels` watch the attribute
//! values the labels name and warn, after the pass, of each that no event
//! had, with the form the events wrote it in when they differ only in
//! letter case, surrounding white space or word separators.

use crate::engine::case_watch::loosely_equal;
use crate::event::{Event, OwnedEvent};

use super::labels::Crisis;

/// One (attribute, value) a crisis slice names.
#[derive(Debug)]
struct Wanted {
    attr: String,
    value: String,
    /// The crises naming it.
    crises: Vec<String>,
    /// Whether an event had it exactly.
    found: bool,
    /// A value in another form that events had, and how many.
    variant: Option<(String, u64)>,
}

/// The slice values of the labels, and whether the history has them.
#[derive(Debug, Default)]
pub(crate) struct LabelWatch {
    wanted: Vec<Wanted>,
    /// Entries of `wanted` not found yet.
    missing: usize,
}

impl LabelWatch {
    /// Watches the slice values of `crises`.
    pub(crate) fn new(crises: &[Crisis]) -> Self {
        let mut w = LabelWatch::default();
        for c in crises {
            for (attr, value) in &c.slice {
                match w
                    .wanted
                    .iter_mut()
                    .find(|x| &x.attr == attr && &x.value == value)
                {
                    Some(x) if !x.crises.contains(&c.name) => x.crises.push(c.name.clone()),
                    Some(_) => {}
                    None => w.wanted.push(Wanted {
                        attr: attr.clone(),
                        value: value.clone(),
                        crises: vec![c.name.clone()],
                        found: false,
                        variant: None,
                    }),
                }
            }
        }
        w.missing = w.wanted.len();
        w
    }

    /// Notes the values of a decoded line (nothing once every value was found).
    pub(crate) fn observe_held(&mut self, held: &Result<OwnedEvent, crate::event::Invalid>) {
        if self.missing == 0 {
            return;
        }
        if let Some(ev) = held.as_ref().ok().and_then(OwnedEvent::event) {
            self.observe(&ev);
        }
    }

    /// Notes `ev`'s values.
    pub(crate) fn observe(&mut self, ev: &Event<'_>) {
        if self.missing == 0 {
            return;
        }
        for w in self.wanted.iter_mut().filter(|w| !w.found) {
            let Some((_, v)) = ev.attrs.iter().find(|(k, _)| k.as_ref() == w.attr) else {
                continue;
            };
            if v.as_ref() == w.value {
                w.found = true;
                self.missing -= 1;
            } else if loosely_equal(v.trim(), &w.value) {
                match &mut w.variant {
                    Some((_, n)) => *n += 1,
                    None => w.variant = Some((v.to_string(), 1)),
                }
            }
        }
    }

    /// One warning per slice value no event had.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.wanted
            .iter()
            .filter(|w| !w.found)
            .map(|w| {
                let crises = w
                    .crises
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let seen = match &w.variant {
                    Some((v, n)) => format!(
                        "{n} events have {} = {:?}: crises match incidents exactly — write the labels' value as the events do",
                        w.attr,
                        super::report::printable(v)
                    ),
                    None => "crises match incidents by it exactly — check the value against the events".to_string(),
                };
                format!(
                    "the labels' crisis(es) {crises} name {} = {:?}, which no event of the history has, so no incident can match them; {seen}",
                    w.attr,
                    super::report::printable(&w.value)
                )
            })
            .collect()
    }

    /// Logs [`LabelWatch::warnings`] for `tool`.
    pub(crate) fn warn(&self, tool: &str) {
        for w in self.warnings() {
            tracing::warn!(tool, "{w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crisis(name: &str, slice: &[(&str, &str)]) -> Crisis {
        Crisis {
            name: name.into(),
            kind: String::new(),
            slice: slice
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start_ms: 0,
            end_ms: 1,
        }
    }

    fn event(attrs: &[(&'static str, &'static str)]) -> Event<'static> {
        Event {
            attrs: attrs.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
            ..Event::default()
        }
    }

    #[test]
    fn names_slice_values_no_event_has_with_the_events_form() {
        let mut w = LabelWatch::new(&[
            crisis("quality", &[("product", "Router-X"), ("region", "eu")]),
            crisis("churn", &[("region", "eu")]),
            crisis("ghost", &[("product", "toaster")]),
        ]);
        for _ in 0..3 {
            w.observe(&event(&[("product", "router-x"), ("region", "eu")]));
        }
        let got = w.warnings();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].contains(r#"crisis(es) "quality" name product = "Router-X""#)
                && got[0].contains(r#"3 events have product = "router-x""#),
            "{}",
            got[0]
        );
        assert!(
            got[1].contains(r#""ghost" name product = "toaster""#)
                && got[1].contains("check the value against the events"),
            "{}",
            got[1]
        );
        // Once every value is found, nothing is said (and nothing is looked at).
        w.observe(&event(&[("product", "Router-X")]));
        w.observe(&event(&[("product", "toaster")]));
        assert!(w.warnings().is_empty());
        assert_eq!(w.missing, 0);
    }
}
