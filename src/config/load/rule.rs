//! Validation of one rule (`[[rules]]`): every error with its key path.

use super::super::*;

pub(super) fn validate_rule(i: usize, r: &RuleConfig, errs: &mut Vec<ConfigError>) {
    let p = format!("rules[{i}]");
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        errs.push(ConfigError::new(
            format!("{p}.name"),
            &r.name,
            "use lowercase letters, digits and `_` only",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, g) in r.group_by.iter().enumerate() {
        if g.is_empty() || !seen.insert(g) {
            errs.push(ConfigError::new(
                format!("{p}.group_by[{j}]"),
                g,
                "group_by attributes must be non-empty and unique",
            ));
        }
    }
    validate_explain(&p, r, errs);
    // Links reach responders' tools (Alertmanager's `generatorURL`, a
    // webhook's `links`), which render them as links: web addresses only.
    for (key, link) in [("runbook", &r.runbook), ("dashboard", &r.dashboard)] {
        if let Some(l) = link {
            let web = reqwest::Url::parse(l)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !web {
                errs.push(ConfigError::new(
                    format!("{p}.{key}"),
                    l,
                    "must be an http:// or https:// address (responders' tools show it as a link)",
                ));
            } else if crate::config::stray_percent(l).is_some() {
                errs.push(ConfigError::new(
                    format!("{p}.{key}"),
                    l,
                    crate::config::STRAY_PERCENT,
                ));
            }
        }
    }
    if let Some(c) = r.confidence {
        let guarded = matches!(
            r.indicator,
            IndicatorConfig::Ratio { .. }
                | IndicatorConfig::RepeatShare { .. }
                | IndicatorConfig::ScoreShare { .. }
                | IndicatorConfig::Nps { .. }
                | IndicatorConfig::MeanScore { .. }
                | IndicatorConfig::Surge { .. }
        );
        if !(c > 0.5 && c < 1.0) {
            errs.push(ConfigError::new(
                format!("{p}.confidence"),
                c.to_string(),
                "must lie strictly between 0.5 and 1 (e.g. 0.9, 0.95, 0.99)",
            ));
        } else if !guarded {
            errs.push(ConfigError::new(
                format!("{p}.confidence"),
                c.to_string(),
                "only ratio, repeat_share, score_share, nps, mean_score and surge indicators have a confidence bound",
            ));
        }
    }
    let window = r.window.as_ms();
    let slide = r.slide().as_ms();
    if window <= 0 {
        errs.push(ConfigError::new(
            format!("{p}.window"),
            r.window.to_string(),
            "must be positive",
        ));
    } else if slide <= 0 || window % slide != 0 {
        errs.push(ConfigError::new(
            format!("{p}.slide"),
            r.slide().to_string(),
            format!("must be positive and divide the window ({})", r.window),
        ));
    } else if window / slide > 1000 {
        errs.push(ConfigError::new(
            format!("{p}.slide"),
            r.slide().to_string(),
            "window ÷ slide must be at most 1000 panes",
        ));
    }
    match &r.indicator {
        IndicatorConfig::Ratio {
            min_denominator, ..
        } if *min_denominator == 0 => {
            errs.push(ConfigError::new(
                format!("{p}.indicator.min_denominator"),
                "0",
                "must be at least 1",
            ));
        }
        IndicatorConfig::RepeatCustomers { min_events, .. }
        | IndicatorConfig::RepeatShare { min_events, .. }
            if *min_events == 0 =>
        {
            errs.push(ConfigError::new(
                format!("{p}.indicator.min_events"),
                "0",
                "must be at least 1",
            ));
        }
        IndicatorConfig::RepeatShare { min_customers, .. } if *min_customers == 0 => {
            errs.push(ConfigError::new(
                format!("{p}.indicator.min_customers"),
                "0",
                "must be at least 1",
            ));
        }
        IndicatorConfig::ScoreShare { min, max, .. }
            if !(min.is_finite() && max.is_finite() && min <= max) =>
        {
            errs.push(ConfigError::new(
                format!("{p}.indicator"),
                format!("min = {min}, max = {max}"),
                "min and max must be finite with min ≤ max",
            ));
        }
        IndicatorConfig::Surge {
            baseline,
            min_baseline,
            seasonality: Some(season),
            ..
        } => {
            let (b, s) = (baseline.as_ms(), season.as_ms());
            if s <= 0 || window <= 0 || s % window != 0 || s / window > 2016 {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.seasonality"),
                    season.to_string(),
                    format!(
                        "must be a positive multiple of the window ({}) and at most 2016 windows (e.g. \"1d\" or \"7d\")",
                        r.window
                    ),
                ));
            } else if b < s || b % s != 0 || b / s > 52 {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    format!("with seasonality = \"{season}\", the seasons averaged: a multiple of it, 1 to 52 seasons"),
                ));
            }
            if !(min_baseline.is_finite() && *min_baseline > 0.0) {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.min_baseline"),
                    min_baseline.to_string(),
                    "must be positive",
                ));
            }
        }
        IndicatorConfig::Surge {
            baseline,
            min_baseline,
            ..
        } => {
            let b = baseline.as_ms();
            if b <= 0 || (slide > 0 && b % slide != 0) {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    format!(
                        "must be positive and a multiple of the slide ({})",
                        r.slide()
                    ),
                ));
            } else if b < window {
                // The surge has a value once its baseline holds one window
                // of history: a shorter baseline never does.
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    format!(
                        "must be at least the window ({}): a surge has no value until its baseline holds one window",
                        r.window
                    ),
                ));
            } else if slide > 0 && (b + window) / slide > 10_000 {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.baseline"),
                    baseline.to_string(),
                    "(baseline + window) ÷ slide must be at most 10000 panes",
                ));
            }
            if !(min_baseline.is_finite() && *min_baseline > 0.0) {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.min_baseline"),
                    min_baseline.to_string(),
                    "must be positive",
                ));
            }
        }
        IndicatorConfig::Unanswered { sla, .. } => {
            let s = sla.as_ms();
            if s <= 0 || (slide > 0 && s % slide != 0) || s > window - 2 * slide {
                errs.push(ConfigError::new(
                    format!("{p}.indicator.sla"),
                    sla.to_string(),
                    format!(
                        "must be positive, a multiple of the slide ({}) and at least two slides shorter than the window ({})",
                        r.slide(),
                        r.window
                    ),
                ));
            }
        }
        IndicatorConfig::ResponseTime { quantile, .. }
            if !(*quantile > 0.0 && *quantile <= 1.0) =>
        {
            errs.push(ConfigError::new(
                format!("{p}.indicator.quantile"),
                quantile.to_string(),
                "must lie in (0, 1] (e.g. 0.5 for the median, 0.9)",
            ));
        }
        _ => {}
    }
    for (k, sel) in r.indicator.selectors().into_iter().enumerate() {
        let mut check = |path: String, m: &ValueMatch| {
            let vals = match m {
                ValueMatch::Is(v) | ValueMatch::Not(NotMatch { not: v }) => v.to_vec(),
            };
            if vals.is_empty() {
                errs.push(ConfigError::new(path, "[]", "needs at least one value"));
            }
        };
        if let Some(m) = &sel.kind {
            check(format!("{p}.indicator.selector[{k}].type"), m);
        }
        for (a, m) in &sel.attrs {
            check(format!("{p}.indicator.selector[{k}].attrs.{a}"), m);
        }
    }
    let levels = r.thresholds.levels();
    if levels.is_empty() {
        errs.push(ConfigError::new(
            format!("{p}.thresholds"),
            "{}",
            "set at least one of info, warning, error, critical",
        ));
    }
    for (s, v) in &levels {
        if !v.is_finite() {
            errs.push(ConfigError::new(
                format!("{p}.thresholds.{s}"),
                v.to_string(),
                "must be a finite number",
            ));
        }
    }
    for w in levels.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        let ordered = r.condition.past(v1, v0);
        if !ordered {
            errs.push(ConfigError::new(
                format!("{p}.thresholds.{s1}"),
                v1.to_string(),
                format!(
                    "must be {} the {s0} threshold ({v0}) for condition = \"{}\"",
                    if r.condition == Condition::Above {
                        "above"
                    } else {
                        "below"
                    },
                    r.condition
                ),
            ));
        }
    }
    if let (Some(c), Some((_, lowest))) = (r.clear, levels.first()) {
        let ok = c.is_finite() && !r.condition.past(c, *lowest);
        if !ok {
            errs.push(ConfigError::new(
                format!("{p}.clear"),
                c.to_string(),
                format!(
                    "must be on the healthy side of the lowest threshold ({lowest}): {} for condition = \"{}\"",
                    if r.condition == Condition::Above { "≤" } else { "≥" },
                    r.condition
                ),
            ));
        }
    }
}

/// `explain` and `explain_baseline` (root-cause hints, `src/explain.rs`).
fn validate_explain(p: &str, r: &RuleConfig, errs: &mut Vec<ConfigError>) {
    if r.explain.len() > crate::explain::MAX_ATTRS {
        errs.push(ConfigError::new(
            format!("{p}.explain"),
            format!("{} attributes", r.explain.len()),
            format!("at most {} attributes", crate::explain::MAX_ATTRS),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, a) in r.explain.iter().enumerate() {
        let why = if a.is_empty() {
            Some("must be a non-empty attribute name")
        } else if !seen.insert(a) {
            Some("is listed twice")
        } else if r.group_by.contains(a) {
            Some("is in group_by: every event of a slice has the same value")
        } else {
            None
        };
        if let Some(why) = why {
            errs.push(ConfigError::new(format!("{p}.explain[{j}]"), a, why));
        }
    }
    if let Some(b) = r.explain_baseline {
        let (b, w) = (b.as_ms(), r.window.as_ms());
        if w > 0 && (b < w || b > w.saturating_mul(crate::explain::MAX_BASELINE_WINDOWS)) {
            errs.push(ConfigError::new(
                format!("{p}.explain_baseline"),
                Dur::from_ms(b.max(0) as u64).to_string(),
                format!(
                    "must be 1 to {} windows ({} to {})",
                    crate::explain::MAX_BASELINE_WINDOWS,
                    r.window,
                    Dur::from_ms(w.saturating_mul(crate::explain::MAX_BASELINE_WINDOWS) as u64)
                ),
            ));
        } else if r.explain.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.explain_baseline"),
                Dur::from_ms(b.max(0) as u64).to_string(),
                "set only with `explain`",
            ));
        }
    }
}
