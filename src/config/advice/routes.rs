//! Advice on `[[incidents.routes]]`: routes and rules that cannot meet.
//!
//! An alert that no route takes opens no incident and pages no one (the
//! incident stage counts it in `crisiswatch_alerts_unrouted_total` and logs
//! it, but only once it happens). These checks find the usual causes before
//! that: a `match` on a label no rule of the route carries (a typo such as
//! `regoin`), a `group_by` label none of its rules carries (`produkt`: every
//! incident gets `produkt=""`, so different products merge), and a rule that
//! no route can take at all.
//!
//! An alert carries its rule's `group_by` labels (an event without the
//! attribute gives `""`, the label is still there) and `rule`, its rule's
//! name. A matcher on a label the alert lacks sees it absent
//! ([`ValueMatch::admits`]`(None)`, as `Route::accepts` does): an equality
//! never holds, a `{ not = … }` always does. A matcher on a label none of
//! the route's rules carries is named either way (a typo), each with what it
//! does; one on a label only some of them carry is not (it sorts them).

use std::collections::BTreeSet;

use super::super::{Config, RouteConfig, RuleConfig, ValueMatch};

/// Pushes every route warning of `cfg` to `out`. Nothing without routes (the
/// implicit default route takes every alert) or without rules (`check` says
/// so already).
pub(super) fn advise(cfg: &Config, out: &mut Vec<String>) {
    let routes = &cfg.incidents.routes;
    if routes.is_empty() || cfg.rules.is_empty() {
        return;
    }
    for (i, route) in routes.iter().enumerate() {
        let at = format!("incidents.routes[{i}]");
        // The rules the route's `rules` list lets in.
        let listed: Vec<&RuleConfig> = cfg.rules.iter().filter(|r| lists(route, r)).collect();
        matchers(&at, route, &listed, out);
        grouping(&at, route, &listed, out);
    }
    for rule in &cfg.rules {
        if !routes.iter().any(|route| can_take(route, rule)) {
            out.push(format!(
                "rules.{}: no [[incidents.routes]] can take its alerts (by their `rules`, `min_severity` and `match`): they fire and open no incident; add a last route without `rules` and `match` to catch them",
                rule.name
            ));
        }
    }
}

/// (a) Matchers on a label no alert the route's `rules` let in carries: an
/// equality never holds, a negation always does.
fn matchers(at: &str, route: &RouteConfig, listed: &[&RuleConfig], out: &mut Vec<String>) {
    for (label, m) in &route.matchers {
        if label == "rule" {
            // `match = { rule = … }`: a value naming no rule the route takes.
            let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
            let ValueMatch::Is(values) = m else {
                continue;
            };
            let values = values.to_vec();
            let never = !values.iter().any(|v| names.contains(&v.as_str()));
            for v in values.iter().filter(|v| !names.contains(&v.as_str())) {
                out.push(format!(
                    "{at}.match.rule: route \"{}\" takes no rule named \"{v}\", so this value never matches{}{}",
                    route.name,
                    if never {
                        " and the route takes no alert"
                    } else {
                        ""
                    },
                    did_you_mean(v, names.iter().copied()),
                ));
            }
            continue;
        }
        if listed.iter().any(|r| carries(r, label)) {
            continue;
        }
        out.push(format!(
            "{at}.match.{label}: no rule route \"{}\" takes groups by \"{label}\", so this matcher {}{}",
            route.name,
            if m.admits(None) {
                "always holds and keeps no alert out"
            } else {
                "never holds and the route takes no alert"
            },
            did_you_mean(label, known_labels(listed).iter().map(String::as_str)),
        ));
    }
}

/// (b) `group_by` labels that none of the rules the route can take carries.
fn grouping(at: &str, route: &RouteConfig, listed: &[&RuleConfig], out: &mut Vec<String>) {
    let Some(group_by) = &route.group_by else {
        return;
    };
    let takers: Vec<&RuleConfig> = listed
        .iter()
        .copied()
        .filter(|r| can_take(route, r))
        .collect();
    if takers.is_empty() {
        // The route takes nothing: a matcher above or the rule's own
        // warning says why; its grouping does not matter.
        return;
    }
    for (j, label) in group_by.iter().enumerate() {
        if takers.iter().any(|r| carries(r, label)) {
            continue;
        }
        out.push(format!(
            "{at}.group_by[{j}]: none of the rules route \"{}\" takes groups by \"{label}\", so every incident of the route has {label}=\"\" and different slices merge into one{}",
            route.name,
            did_you_mean(label, known_labels(&takers).iter().map(String::as_str)),
        ));
    }
}

/// Whether the route's `rules` list lets `rule` in (an empty list: every rule).
fn lists(route: &RouteConfig, rule: &RuleConfig) -> bool {
    route.rules.is_empty() || route.rules.contains(&rule.name)
}

/// Whether every alert of `rule` carries `label`.
fn carries(rule: &RuleConfig, label: &str) -> bool {
    label == "rule" || rule.group_by.iter().any(|g| g == label)
}

/// Whether some alert of `rule` can be taken by `route`: the route lists
/// the rule, the rule can fire at `min_severity` or above, and every
/// matcher can hold (on a label the rule carries some value may match; on
/// one it lacks the matcher sees it absent).
fn can_take(route: &RouteConfig, rule: &RuleConfig) -> bool {
    if !lists(route, rule) {
        return false;
    }
    let highest = rule.thresholds.levels().last().map(|(s, _)| *s);
    if let Some(min) = route.min_severity {
        if highest.is_none_or(|h| h < min) {
            return false;
        }
    }
    route.matchers.iter().all(|(label, m)| {
        if label == "rule" {
            m.admits(Some(&rule.name))
        } else if carries(rule, label) {
            true
        } else {
            m.admits(None)
        }
    })
}

/// The labels alerts of `rules` carry, `rule` included.
fn known_labels(rules: &[&RuleConfig]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = rules
        .iter()
        .flat_map(|r| r.group_by.iter().cloned())
        .collect();
    out.insert("rule".to_string());
    out
}

/// `" (did you mean \"x\"?)"` for the candidate closest to `word` within two
/// edits (the first in order among equally close ones), else `""`.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(word, c);
        if d > 0 && d <= 2 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

/// The edit distance (insertions, deletions, substitutions of characters)
/// between `a` and `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
