//! Settings that are valid but almost certainly not what was meant: a
//! score rule whose bands or threshold cannot work on the configured
//! `engine.score_range` (a CSAT 1–5 stream with the NPS rules of the
//! example), a clock-jump limit below the allowed lateness, incident routes
//! and rules that cannot meet ([`routes`]). `check` prints them as warnings
//! and the history tools before their report; nothing refuses them (a file
//! may be checked long before its traffic changes).

use super::{Condition, Config, EngineConfig, IndicatorConfig, RuleConfig, SurgeMethod};

mod routes;
mod transport;
pub(crate) use routes::did_you_mean;

/// Every warning for `cfg`, one sentence each, naming the setting.
pub fn advice(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let [lo, hi] = cfg.engine.score_range;
    for r in &cfg.rules {
        let at = format!("rules.{}", r.name);
        match &r.indicator {
            IndicatorConfig::ScoreShare { min, max, .. } => {
                if *max < lo || *min > hi {
                    out.push(format!(
                        "{at}: its band [{min}, {max}] lies outside engine.score_range [{lo}, {hi}]: the share is always 0"
                    ));
                } else if *min <= lo && *max >= hi {
                    out.push(format!(
                        "{at}: its band [{min}, {max}] covers all of engine.score_range [{lo}, {hi}]: the share is always 1 (a band set for NPS 0–10 on a CSAT 1–5 stream?)"
                    ));
                }
            }
            // Detractors score 0–6, promoters 9–10 (NPS's own bands).
            IndicatorConfig::Nps { .. } if hi < 9.0 || lo > 6.0 => {
                out.push(format!(
                    "{at}: NPS counts promoters at 9–10 and detractors at 0–6, but engine.score_range is [{lo}, {hi}]: {}",
                    if hi <= 6.0 {
                        "every score is a detractor's, the NPS is always -100 (nps is for a 0–10 scale: a CSAT 1–5 stream wants score_share or mean_score)"
                    } else if hi < 9.0 {
                        "no promoter is possible, the NPS never rises above 0"
                    } else {
                        "no detractor is possible"
                    }
                ));
            }
            _ => {}
        }
        out.extend(unreachable_thresholds(r, &cfg.engine));
    }
    let (jump, late) = (
        cfg.engine.max_clock_jump.as_ms(),
        cfg.engine.allowed_lateness.as_ms(),
    );
    if jump > 0 && jump < late {
        out.push(format!(
            "engine.max_clock_jump ({}) is below engine.allowed_lateness ({}): events that are merely out of order by more than the jump limit are held as clock jumps",
            cfg.engine.max_clock_jump, cfg.engine.allowed_lateness
        ));
    }
    routes::advise(cfg, &mut out);
    transport::advise(cfg, &mut out);
    out
}

/// The values `rule`'s indicator can take: `[lo, hi]` of the engine's
/// `score_range` for a mean score (a confidence bound stays within them
/// too), the window in seconds for a response time (a response counts only
/// while its complaint is in the window), `engine.max_customers_per_group`
/// for the customer counts (the customers past it are not counted), 1 for
/// a ratio whose numerator's events are among its denominator's; and
/// why the upper bound is what it is, when it is not the indicator's own.
pub(crate) fn value_range(rule: &RuleConfig, engine: &EngineConfig) -> (f64, f64, Option<String>) {
    let [lo, hi] = engine.score_range;
    let cap = engine.max_customers_per_group as f64;
    match &rule.indicator {
        IndicatorConfig::ScoreShare { .. } | IndicatorConfig::RepeatShare { .. } => (0.0, 1.0, None),
        IndicatorConfig::MeanScore { .. } => (lo, hi, None),
        IndicatorConfig::Nps { .. } => (-100.0, 100.0, None),
        IndicatorConfig::Ratio {
            numerator,
            denominator,
            ..
        } if numerator.within(denominator) => (
            0.0,
            1.0,
            Some(
                "every event its numerator counts, its denominator counts too: a share".to_string(),
            ),
        ),
        IndicatorConfig::Surge {
            method: SurgeMethod::Zscore,
            ..
        } => (f64::NEG_INFINITY, f64::INFINITY, None),
        IndicatorConfig::ResponseTime { .. } => (
            0.0,
            rule.window.as_ms() as f64 / 1000.0,
            Some(format!(
                "its window {} in seconds: a response counts only while its complaint is in the window",
                rule.window
            )),
        ),
        IndicatorConfig::DistinctCustomers { .. } | IndicatorConfig::RepeatCustomers { .. } => (
            0.0,
            cap,
            Some(format!(
                "engine.max_customers_per_group ({cap}): the customers of a slice past it are not counted"
            )),
        ),
        // Counts, rates, ratios, a surge's ratio.
        _ => (0.0, f64::INFINITY, None),
    }
}

/// Whether a threshold `t` of a rule firing by `condition` is never crossed
/// by values in `[lo, hi]`, and whether it is always past (thresholds are
/// strict: above fires at value > t, below at value < t).
pub(crate) fn threshold_reach(condition: Condition, t: f64, (lo, hi): (f64, f64)) -> (bool, bool) {
    match condition {
        Condition::Above => (t >= hi, t < lo),
        Condition::Below => (t <= lo, t > hi),
    }
}

/// A warning for each of `rule`'s thresholds that its indicator can never
/// cross (it never fires) or is always past (it fires whenever the slice
/// has enough volume): a threshold set for another scale — `check` and the
/// history tools print them, `tune` for every candidate.
pub(crate) fn unreachable_thresholds(rule: &RuleConfig, engine: &EngineConfig) -> Vec<String> {
    let (lo, hi, why) = value_range(rule, engine);
    let mut out = Vec::new();
    for (sev, t) in rule.thresholds.levels() {
        let (never, always) = threshold_reach(rule.condition, t, (lo, hi));
        if !(never || always) {
            continue;
        }
        let scale = match &rule.indicator {
            _ if why.is_some() => format!(
                "the values a {} can take [{lo}, {hi}] ({})",
                rule.indicator.kind_name(),
                why.as_deref().unwrap_or_default()
            ),
            IndicatorConfig::MeanScore { .. } => {
                format!("engine.score_range [{lo}, {hi}]")
            }
            ind if hi.is_infinite() => {
                format!("the values a {} can take (0 or more)", ind.kind_name())
            }
            ind => format!("the values a {} can take [{lo}, {hi}]", ind.kind_name()),
        };
        out.push(format!(
            "rules.{}: threshold {} = {t} with condition {} lies outside {scale}: it {} fires",
            rule.name,
            sev.as_str(),
            match rule.condition {
                Condition::Above => "above",
                Condition::Below => "below",
            },
            if never {
                "never"
            } else {
                "always (with enough volume)"
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml_str(text, &HashMap::<String, String>::new()).expect("valid")
    }

    const RULES: &str = r#"
[[rules]]
name = "detractors"
window = "1h"
indicator = { kind = "score_share", min = 0, max = 6 }
thresholds = { warning = 0.3 }

[[rules]]
name = "nps"
window = "1h"
condition = "below"
indicator = { kind = "nps" }
thresholds = { warning = 0 }

[[rules]]
name = "mean"
window = "1h"
condition = "below"
indicator = { kind = "mean_score" }
thresholds = { warning = 6 }
"#;

    #[test]
    fn score_rules_that_do_not_fit_the_score_range_are_named() {
        assert_eq!(advice(&cfg(RULES)), Vec::<String>::new());
        let csat = cfg(&format!("[engine]\nscore_range = [1, 5]\n{RULES}"));
        let w = advice(&csat);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].starts_with("rules.detractors:") && w[0].contains("always 1"));
        assert!(w[1].starts_with("rules.nps:") && w[1].contains("always -100"));
        assert!(w[2].starts_with("rules.mean:") && w[2].contains("always"));
        // 0–8: detractors and passives, no promoter.
        let eight = cfg(&format!("[engine]\nscore_range = [0, 8]\n{RULES}"));
        let w = advice(&eight);
        assert!(
            w.iter()
                .any(|w| w.starts_with("rules.nps:") && w.contains("no promoter")),
            "{w:#?}"
        );
    }

    #[test]
    fn thresholds_an_indicator_cannot_cross_are_named() {
        let rule = |ind: &str, cond: &str, t: &str| {
            format!("[[rules]]\nname = \"x\"\nwindow = \"1h\"\nindicator = {ind}\ncondition = \"{cond}\"\nthresholds = {t}\n")
        };
        let share = r#"{ kind = "score_share", min = 0, max = 6 }"#;
        let count = r#"{ kind = "count" }"#;
        let nps = r#"{ kind = "nps" }"#;
        let z = r#"{ kind = "surge", baseline = "2h", method = "zscore" }"#;
        let rt = r#"{ kind = "response_time", quantile = 1 }"#;
        let dc = r#"{ kind = "distinct_customers" }"#;
        // Ratios whose numerator's events are all among the denominator's
        // (a share) never pass 1; others may.
        let social = r#"{ kind = "ratio", numerator = { type = "complaint", attrs = { channel = "social" } }, denominator = { type = "complaint" } }"#;
        let severe = r#"{ kind = "ratio", numerator = { type = "complaint", attrs = { category = ["a", "b"] } }, denominator = { type = ["complaint", "x"], attrs = { category = { not = "c" } } } }"#;
        let per_order = r#"{ kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" } }"#;
        let wider = r#"{ kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "complaint", attrs = { channel = "social" } } }"#;
        let negated = r#"{ kind = "ratio", numerator = { attrs = { channel = { not = "web" } } }, denominator = { attrs = { channel = { not = ["web", "app"] } } } }"#;
        let cases = [
            (social, "above", "{ warning = 1.5 }", Some("never")),
            (
                social,
                "above",
                "{ warning = 0.5, critical = 1 }",
                Some("never"),
            ),
            (social, "above", "{ warning = 0.99 }", None),
            (severe, "above", "{ warning = 1.2 }", Some("never")),
            (per_order, "above", "{ warning = 1.5 }", None),
            (wider, "above", "{ warning = 1.5 }", None),
            (negated, "above", "{ warning = 1.5 }", None),
            // A response counts only while its complaint is in the 1h
            // window: no response time above 3,600 s is ever recorded.
            (rt, "above", "{ warning = 3600 }", Some("never")),
            (rt, "above", "{ warning = 3599 }", None),
            // Customers past engine.max_customers_per_group are not counted.
            (dc, "above", "{ warning = 1000000 }", Some("never")),
            (dc, "above", "{ warning = 50 }", None),
            // A share set in percent never fires; one below 0 always does.
            (share, "above", "{ warning = 30 }", Some("never")),
            (share, "above", "{ warning = -0.1 }", Some("always")),
            (
                share,
                "above",
                "{ warning = 0.3, critical = 1 }",
                Some("never"),
            ),
            (share, "below", "{ warning = 0 }", Some("never")),
            (share, "below", "{ warning = 1.5 }", Some("always")),
            (share, "above", "{ warning = 0.999 }", None),
            (count, "below", "{ warning = 0 }", Some("never")),
            (count, "above", "{ warning = -1 }", Some("always")),
            (count, "above", "{ warning = 1e12 }", None),
            (nps, "below", "{ warning = -100 }", Some("never")),
            (nps, "below", "{ warning = -99 }", None),
            (z, "below", "{ warning = -50 }", None),
        ];
        for (ind, cond, t, want) in cases {
            let w = advice(&cfg(&rule(ind, cond, t)));
            match want {
                None => assert!(w.is_empty(), "{ind} {cond} {t}: {w:#?}"),
                Some(word) => {
                    assert_eq!(w.len(), 1, "{ind} {cond} {t}: {w:#?}");
                    assert!(w[0].starts_with("rules.x: threshold "), "{}", w[0]);
                    assert!(w[0].contains(&format!("it {word}")), "{}", w[0]);
                }
            }
        }
        let w = advice(&cfg(&rule(share, "above", "{ warning = 30 }")));
        assert!(
            w[0].contains("the values a score_share can take [0, 1]"),
            "{}",
            w[0]
        );
        let w = advice(&cfg(&rule(social, "above", "{ warning = 1.5 }")));
        assert!(
            w[0].contains("a ratio can take [0, 1] (every event its numerator counts"),
            "{}",
            w[0]
        );
        let w = advice(&cfg(&rule(count, "below", "{ warning = 0 }")));
        assert!(w[0].contains("a count can take (0 or more)"), "{}", w[0]);
        let w = advice(&cfg(&rule(rt, "above", "{ warning = 7200 }")));
        assert!(
            w[0].contains("a response_time can take [0, 3600] (its window 1h in seconds"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn a_clock_jump_limit_below_the_lateness_is_named() {
        let c = cfg("[engine]\nallowed_lateness = \"2m\"\nmax_clock_jump = \"1s\"\n");
        let w = advice(&c);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].starts_with("engine.max_clock_jump (1s)"), "{w:#?}");
    }
}
