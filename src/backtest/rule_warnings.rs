//! Warnings of the history tools about rules the history cannot exercise
//! as configured: rules no event selected or whose signal nothing fed,
//! selector values written in another form, `group_by` values missing or
//! written in several forms, and customers beyond the per-slice cap. They
//! come after the pass, from what the engine's watches counted
//! ([`Engine::watch_cases`](crate::engine::Engine::watch_cases)).

/// Warns, for `tool`, of rules that no valid event of the history selected
/// (a mistyped `type`, an attribute value that never occurs) or whose
/// signal (numerator, counted events) none fed: they cannot fire on this
/// history, and a report of no incident for them says nothing about their
/// thresholds.
pub(crate) fn warn_silent_rules(tool: &str, engine: &crate::engine::Engine) {
    for w in engine.slice_warnings() {
        tracing::warn!(tool, "{w}");
    }
    for v in engine.case_variants() {
        let rules = v.rules_listed();
        tracing::warn!(
            tool,
            field = %v.field,
            "{} events have {} = {:?}, which the selectors of rule(s) {rules} write {:?}: selectors compare exactly, so those events are not selected (excluded ones, by a `not`, are selected) — make the producers write one form, or list both values",
            v.events,
            v.field,
            crate::backtest::report::printable(&v.seen),
            v.named,
        );
    }
    if engine.stats().applied == 0 {
        return;
    }
    for i in 0..engine.rule_count() {
        let rule = &engine.rule_config(i).name;
        match engine.rule_selected(i) {
            [0, _, _] => tracing::warn!(
                tool,
                rule = %rule,
                "no event of the history matched rule {rule:?}'s selector: it cannot fire on this history — check the selector's type and attrs against the events"
            ),
            [n, 0, _] => tracing::warn!(
                tool,
                rule = %rule,
                "rule {rule:?} saw {n} events, none of them counted toward its signal (numerator, or the events it counts): it cannot fire on this history — check that selector's type and attrs"
            ),
            [n, _, 0] if second_selector(&engine.rule_config(i).indicator).is_some() => {
                let (what, effect) =
                    second_selector(&engine.rule_config(i).indicator).unwrap_or_default();
                tracing::warn!(
                    tool,
                    rule = %rule,
                    "rule {rule:?} saw {n} events, none of them matched its {what}: {effect} — check that selector's type and attrs against the events"
                );
            }
            _ => {
                // A `group_by` attribute no event had: every event falls in
                // the slice where it is "" (judged on the groups still live
                // at the end of the history).
                let groups = engine.groups(i);
                for a in &engine.rule_config(i).group_by {
                    let absent = !groups.is_empty()
                        && groups
                            .iter()
                            .all(|g| g.group.iter().all(|(k, v)| k != a || v.is_empty()));
                    if absent {
                        tracing::warn!(
                            tool,
                            rule = %rule,
                            "rule {rule:?} groups by {a:?}, which none of its events had: they all fall in one slice with an empty {a:?} — check the attribute's name against the events"
                        );
                    }
                }
            }
        }
        let uncounted = engine.rule_customers_uncounted(i);
        if uncounted > 0 {
            tracing::warn!(
                tool,
                rule = %rule,
                uncounted,
                "rule {rule:?}: {uncounted} events of customers beyond engine.max_customers_per_group ({}) per slice were not counted per customer — its distinct and repeat figures are capped there (raise the cap, or slice finer)",
                engine.max_customers_per_group()
            );
        }
    }
}

/// A rule's second selector, what it is and what nothing matching it
/// means: a ratio's denominator, a backlog rule's `responses`.
fn second_selector(ind: &crate::config::IndicatorConfig) -> Option<(&'static str, &'static str)> {
    use crate::config::IndicatorConfig as I;
    match ind {
        I::Ratio { .. } => Some((
            "`denominator` selector",
            "the ratio has no denominator, so it is never computed and the rule cannot fire on this history",
        )),
        I::Unanswered { .. } | I::ResponseTime { .. } => Some((
            "`responses` selector (a response with a `ref_id` naming a complaint)",
            "no complaint is ever answered on this history, so every one counts as unanswered past its SLA and the rule reads the missing responses as a backlog",
        )),
        _ => None,
    }
}
