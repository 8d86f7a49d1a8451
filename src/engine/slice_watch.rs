//! History tools: slices that messy values split. A rule keeps one slice
//! per combination of its `group_by` values, compared exactly, so two forms
//! of one value are two slices, and an event without a `group_by`
//! attribute joins the slice where it is `""` whatever its other values. A
//! field trial: with 60 % of the orders missing `region`, `complaint_rate`
//! paged 36 times on an ordinary stream (complaints in real slices, their
//! orders in the `region = ""` ones); with complaints writing `"KETTLE-A"`
//! and orders `"kettle-a"`, it never saw a tenfold complaint crisis. Nothing
//! said why. When a history tool turns it on ([`Engine::watch_cases`]),
//! every event applied (not a duplicate) is counted, from the engine's own
//! routing (its hits and grouping values), per rule: the events it
//! selected without one of its `group_by` attributes or with it empty (but
//! a response, which answers by `ref_id`), and the
//! values of each `group_by` attribute; at the end the tool warns of rules
//! with such events (1 % of those they selected, at least 10) and of
//! values that differ only in letter case, surrounding white space or word
//! separators.
//!
//! [`Engine::watch_cases`]: super::Engine::watch_cases

use crate::config::RuleConfig;

use super::apply::Hit;
use super::case_watch::loosely_equal;

/// A value's count per form, hashed as the engine hashes group keys.
type Forms = hashbrown::HashMap<Box<str>, u64, foldhash::fast::FixedState>;

/// Distinct values kept per attribute; past it, new ones are not.
const MAX_VALUES: usize = 20_000;

/// Events without a `group_by` attribute a rule may select unnamed: fewer
/// than this share of the events it selected, or than [`MIN_MISSING`].
const MISSING_SHARE: f64 = 0.01;
const MIN_MISSING: u64 = 10;

/// Per rule and per `group_by` attribute: what the events brought.
#[derive(Debug, Default)]
pub(crate) struct SliceWatch {
    /// The distinct `group_by` attributes of all rules, and each one's id
    /// among the engine's grouping values (`None`: the engine has none).
    attrs: Vec<String>,
    ids: Vec<Option<usize>>,
    /// Per rule: its name and `group_by` attributes (indices into `attrs`).
    rules: Vec<(String, Vec<usize>)>,
    /// Per rule: events it selected.
    hits: Vec<u64>,
    /// Per rule, per `group_by` attribute: selected events without it.
    missing: Vec<Vec<u64>>,
    /// Per attribute: the values events of a rule grouping by it had.
    values: Vec<Forms>,
}

impl SliceWatch {
    /// Watches the `group_by` attributes of `rules`; `id` gives an
    /// attribute's index among the engine's grouping values.
    pub(crate) fn new<'a>(
        rules: impl IntoIterator<Item = &'a RuleConfig>,
        id: impl Fn(&str) -> Option<usize>,
    ) -> Self {
        let mut w = SliceWatch::default();
        for r in rules {
            let mut idx = Vec::new();
            for a in &r.group_by {
                let i = match w.attrs.iter().position(|x| x == a) {
                    Some(i) => i,
                    None => {
                        w.attrs.push(a.clone());
                        w.attrs.len() - 1
                    }
                };
                idx.push(i);
            }
            w.missing.push(vec![0; idx.len()]);
            w.rules.push((r.name.clone(), idx));
            w.hits.push(0);
        }
        w.ids = w.attrs.iter().map(|a| id(a)).collect();
        w.values = vec![Forms::default(); w.attrs.len()];
        w
    }

    /// Counts an event the rules of `hits` selected, whose grouping values
    /// by engine id are `values` ("" where it has none); `answer`: it
    /// answers by `ref_id` (a response), so its slice is its complaint's.
    pub(crate) fn observe(&mut self, answer: bool, hits: &[Hit], values: &[&str]) {
        let mut done = 0u64;
        for h in hits {
            let r = h.rule as usize;
            let Some((_, idx)) = self.rules.get(r) else {
                continue;
            };
            self.hits[r] += 1;
            for (k, &a) in idx.iter().enumerate() {
                let v = self.ids[a]
                    .and_then(|i| values.get(i))
                    .copied()
                    .unwrap_or("");
                if v.is_empty() {
                    if !answer {
                        self.missing[r][k] += 1;
                    }
                } else if a >= 64 || done & (1 << a) == 0 {
                    if a < 64 {
                        done |= 1 << a;
                    }
                    let forms = &mut self.values[a];
                    if let Some(n) = forms.get_mut(v) {
                        *n += 1;
                    } else if forms.len() < MAX_VALUES {
                        forms.insert(v.into(), 1);
                    }
                }
            }
        }
    }

    /// What a history tool warns of (see the module docs), one line each.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (r, (name, idx)) in self.rules.iter().enumerate() {
            let hits = self.hits[r];
            for (k, &a) in idx.iter().enumerate() {
                let n = self.missing[r][k];
                if n >= MIN_MISSING && n as f64 >= MISSING_SHARE * hits as f64 {
                    out.push(format!(
                        "{n} of the {hits} events rule \"{name}\" selected ({:.1} %) have no `{attr}` (or an empty one): they all count in the slices where {attr} = \"\", whatever their other values (a slice no real one is, and the real slices miss them) — make the producers write `{attr}` on every event, or leave it out of the rule's group_by",
                        100.0 * n as f64 / hits.max(1) as f64,
                        attr = self.attrs[a],
                    ));
                }
            }
        }
        for (a, values) in self.values.iter().enumerate() {
            let mut forms: Vec<(&str, u64)> = values.iter().map(|(v, &n)| (&**v, n)).collect();
            forms.sort_unstable();
            let mut seen = vec![false; forms.len()];
            for i in 0..forms.len() {
                if seen[i] {
                    continue;
                }
                let mut same = vec![forms[i]];
                for j in i + 1..forms.len() {
                    if !seen[j] && loosely_equal(forms[i].0.trim(), forms[j].0.trim()) {
                        seen[j] = true;
                        same.push(forms[j]);
                    }
                }
                if same.len() < 2 || out.len() >= 20 {
                    continue;
                }
                let attr = &self.attrs[a];
                let rules: Vec<String> = self
                    .rules
                    .iter()
                    .filter(|(_, idx)| idx.contains(&a))
                    .map(|(n, _)| format!("\"{n}\""))
                    .collect();
                let listed: Vec<String> = same
                    .iter()
                    .map(|(v, n)| format!("{v:?} ({n} events)"))
                    .collect();
                out.push(format!(
                    "events write {attr} = {}: group_by compares exactly, so rule(s) {} keep them apart as different slices — make the producers write one form",
                    listed.join(" and "),
                    rules.join(", "),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;
    use crate::engine::Engine;
    use crate::event::{decode, DecodeLimits};

    /// Orders without `region` and complaints writing the product in
    /// capitals are named; a clean stream gives no warning.
    #[test]
    fn missing_and_variant_group_values_are_named() {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "complaint_rate"
group_by = ["product", "region"]
window = "10m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }
thresholds = { warning = 0.5 }
"#,
            &HashMap::new(),
        )
        .expect("config");
        let run = |lines: &[String]| {
            let mut e = Engine::new(&cfg).expect("engine");
            e.watch_cases();
            let mut out = Vec::new();
            for l in lines {
                let ev = decode(l.as_bytes(), &DecodeLimits::default(), None).expect("event");
                e.process(&ev, &mut out);
            }
            e.slice_warnings()
        };
        let line = |i: usize, kind: &str, attrs: &str| {
            format!(
                r#"{{"id":"e{i}","type":"{kind}","ts":{},"attrs":{{{attrs}}}}}"#,
                1_795_132_800_000 + i as i64 * 1000
            )
        };
        let mut clean = Vec::new();
        for i in 0..200 {
            let kind = if i % 5 == 0 { "complaint" } else { "order" };
            clean.push(line(i, kind, r#""product":"kettle-a","region":"eu""#));
        }
        assert!(run(&clean).is_empty(), "{:?}", run(&clean));
        let mut messy = Vec::new();
        for i in 0..200 {
            let (kind, attrs) = match i % 5 {
                0 => ("complaint", r#""product":"KETTLE-A","region":"eu""#),
                1 | 2 => ("order", r#""product":"kettle-a""#),
                _ => ("order", r#""product":"kettle-a","region":"eu""#),
            };
            messy.push(line(i, kind, attrs));
        }
        let w = run(&messy);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "80 of the 200 events rule \"complaint_rate\" selected (40.0 %) have no `region`"
            ),
            "{w:?}"
        );
        assert!(
            w[1].contains(r#"product = "KETTLE-A" (40 events) and "kettle-a" (160 events)"#),
            "{w:?}"
        );
        // The engine's batches count alike; a duplicate is not counted
        // again; an empty region counts as none.
        let mut e = Engine::new(&cfg).expect("engine");
        e.watch_cases();
        let mut again = messy.clone();
        again.extend(messy.iter().take(50).cloned());
        again.push(line(900, "order", r#""product":"kettle-a","region":"""#));
        let events: Vec<_> = again
            .iter()
            .map(|l| decode(l.as_bytes(), &DecodeLimits::default(), None).expect("event"))
            .collect();
        let mut out = Vec::new();
        e.process_batch(&events, &mut out, |_, _, _| {});
        let w = e.slice_warnings();
        assert!(
            w[0].starts_with(
                "81 of the 201 events rule \"complaint_rate\" selected (40.3 %) have no `region` (or an empty one)"
            ),
            "{w:?}"
        );
    }
}
