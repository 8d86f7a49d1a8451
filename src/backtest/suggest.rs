//! `crisiswatch suggest` (issue 11, item 5): thresholds from the user's own
//! history.
//!
//! For every rule, the lowest threshold is tried at [`FACTORS`] × its
//! configured value (the other levels and `clear` follow, as in `tune`), all
//! rules' candidates fed together in one pass over the history (each rule's
//! candidates share one engine: they differ only in their alert policy). A
//! candidate **meets the target** when its false incidents — incidents
//! matching no labelled crisis, or every incident without labels — are at most
//! `max_false_per_30d` per 30 days of history (whole days the events cover,
//! rounded down: a 30-day history allows one at the default, a 3-day one
//! none; a gap of more than a day without events is not history, so one stray
//! old stamp cannot stretch it — see `backtest::coverage`), **with a
//! margin**: the two next more sensitive candidates meet it too *without the
//! rule's `for`* (each threshold is also replayed with `for = 0`, so a breach
//! outside the crises counts even when it is too short to page). Noise then
//! does not come within two steps of the choice, however briefly: one month
//! of history with no false page at a threshold says little about the next
//! month (on two generated months at a tenth of the demo's volume,
//! `detractor_share` at 0.18 gave none on the first and three on the second;
//! without `for` the first already showed breaches at 0.15). The configured
//! threshold needs no margin to stay. Among those,
//!
//! * with labels: the ones that catch the most crises; of these the
//!   configured threshold if it is one, else the middle one by sensitivity —
//!   so that neither a false page nor a crisis sits on the edge of the
//!   choice, which a second stretch of history would move;
//! * without labels: the most sensitive.
//!
//! A rule no candidate meets the target for keeps its threshold and says so.
//! The report gives, per rule, the configured and suggested thresholds and
//! what each catches on the history (crises caught, false incidents, median
//! delay); [`snippet`] writes the suggested rules as TOML.

use std::fmt::Write as _;

use crate::config::{threshold_reach, Condition, Config, Dur};
use crate::event::ahead::Decoded;

use super::input::{Inputs, LineRef};
use super::report::fmt_dur;
use super::tune::{self, Row, TuneError, TuneOptions, TuneResult, Tuner};

/// Factors applied to a rule's lowest threshold (see [`thresholds`]): up
/// to four times less sensitive, for a threshold set for traffic unlike the
/// history's.
pub const FACTORS: [f64; 14] = [
    0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0,
];

const DAY_MS: f64 = 86_400_000.0;
/// The part of a day (about a quarter of an hour) that a history may fall
/// short of a whole day and still count it: the last event of a day comes
/// before the day ends.
const DAY_SLACK: f64 = 0.01;

/// Options of `suggest`.
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// Labels, grace and flap gap (as for `backtest`).
    pub summary: super::report::SummaryOptions,
    /// Wall clock for the future-skew check; `None` skips it.
    pub now_ms: Option<i64>,
    /// False incidents allowed per rule per 30 days of history.
    pub max_false_per_30d: f64,
    /// The rules to suggest for (empty: all).
    pub rules: Vec<String>,
}

/// What `suggest` found for one rule.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// The candidates' table (as `tune` prints it).
    pub result: TuneResult,
    /// The configured rule's row.
    pub current: Option<usize>,
    /// The suggested row (`None`: no candidate meets the target).
    pub chosen: Option<usize>,
    /// False incidents allowed on this history.
    pub allowed_false: usize,
}

impl Suggestion {
    /// Candidate thresholds tried (rows with the rule's own `for`).
    pub fn candidates(&self) -> usize {
        let f = self.result.base.for_;
        self.result
            .rows
            .iter()
            .filter(|r| r.candidate.rule.for_ == f)
            .count()
    }
}

/// The candidate thresholds of a rule whose lowest threshold is `t0`: from
/// more sensitive to less, the spread of [`FACTORS`] — for an `above` rule
/// `t0 × factor` (an offset of `(factor − 1) × max(|t0|, 1)` at or below
/// zero), for a `below` rule the same offsets the other way, so that its
/// less sensitive candidates lie below `t0` (an NPS or a mean far under a
/// threshold set for another company's traffic is reached; they used to
/// stop at half of `t0`, never below zero).
///
/// Candidates the indicator can never cross or is always past (outside
/// `range`, its values: a share above 1, a mean below the score range) are
/// left out — with the margin rule, three of them in a row would be
/// "suggested" at no incident — but `t0` itself stays.
fn thresholds(t0: f64, below: bool, (lo, hi): (f64, f64)) -> Vec<f64> {
    let condition = if below {
        Condition::Below
    } else {
        Condition::Above
    };
    let reachable = |t: f64| threshold_reach(condition, t, (lo, hi)) == (false, false);
    let mut out: Vec<f64> = FACTORS
        .iter()
        .map(|f| {
            let offset = if t0 > 0.0 {
                t0 * (f - 1.0)
            } else {
                (f - 1.0) * t0.abs().max(1.0)
            };
            let v = if below { t0 - offset } else { t0 + offset };
            // Four significant digits: the snippet reads like a hand-written rule.
            let mag = 10f64.powi(3 - v.abs().max(1e-12).log10().floor() as i32);
            (v * mag).round() / mag
        })
        .filter(|&t| t == t0 || reachable(t))
        .collect();
    out.dedup();
    out
}

/// The tuning of one rule: every candidate threshold, each with the rule's
/// `for` and (when that is not 0) with `for = 0` for the margin.
/// Candidates whose other levels, moved with the lowest as `tune` moves
/// them, fall out of `range` are left out too (a share's critical scaled
/// past 1 would never page), but for `t0`.
fn options(
    cfg: &Config,
    opts: &SuggestOptions,
    (rule, t0, for_, below, range): (&str, f64, Dur, bool, (f64, f64)),
) -> Result<TuneOptions, TuneError> {
    let base = cfg.rules.iter().find(|r| r.name == rule);
    let levels_reachable = |t: f64| {
        base.is_none_or(|b| {
            let moved = tune::apply(b, &[(tune::Dim::Threshold, tune::Val::Num(t))]);
            moved
                .thresholds
                .levels()
                .iter()
                .all(|&(_, v)| threshold_reach(moved.condition, v, range) == (false, false))
        })
    };
    let list: Vec<String> = thresholds(t0, below, range)
        .into_iter()
        .filter(|&t| t == t0 || levels_reachable(t))
        .map(|t| t.to_string())
        .collect();
    let mut varies = vec![format!("threshold={}", list.join(",")).parse()?];
    if !for_.0.is_zero() {
        varies.push(format!("for=0s,{}ms", for_.0.as_millis()).parse()?);
    }
    Ok(TuneOptions {
        rule: rule.to_string(),
        varies,
        summary: opts.summary.clone(),
        now_ms: opts.now_ms,
        pick: None,
    })
}

/// The rules to suggest for, with their lowest threshold, `for`, whether
/// they fire below their thresholds, and the values their indicator takes.
type Target = (String, f64, Dur, bool, (f64, f64));

/// The rules to suggest for (see [`Target`]).
fn targets(cfg: &Config, opts: &SuggestOptions) -> Result<Vec<Target>, TuneError> {
    for name in &opts.rules {
        if !cfg.rules.iter().any(|r| &r.name == name) {
            return Err(TuneError::UnknownRule {
                name: name.clone(),
                known: cfg.rule_names(),
            });
        }
    }
    Ok(cfg
        .rules
        .iter()
        .filter(|r| opts.rules.is_empty() || opts.rules.contains(&r.name))
        .filter_map(|r| {
            let t0 = r.thresholds.levels().first()?.1;
            let (lo, hi, _) = crate::config::value_range(r, &cfg.engine);
            let below = r.condition == Condition::Below;
            Some((r.name.clone(), t0, r.for_, below, (lo, hi)))
        })
        .collect())
}

/// Runs `suggest` over `inputs` (read once; again only for a rule whose
/// shared engine hit the group cap, as `tune` does).
pub fn run(
    cfg: &Config,
    inputs: &Inputs,
    opts: &SuggestOptions,
) -> Result<Vec<Suggestion>, TuneError> {
    let rules = targets(cfg, opts)?;
    let mut tuners = Vec::with_capacity(rules.len());
    for (name, t0, for_, below, range) in &rules {
        let o = options(cfg, opts, (name, *t0, *for_, *below, *range))?;
        tuners.push((Tuner::new(cfg, &o)?, o));
    }
    // Each line is decoded once (ahead, on a second thread) for every
    // tuner: they share the configuration's limits and clock.
    let mut labels = opts
        .summary
        .labels
        .as_deref()
        .map(super::label_watch::LabelWatch::new);
    if let Some((first, _)) = tuners.first() {
        let mut ahead = first.decode_ahead();
        let mut sink = |(at, decoded): Decoded<LineRef>| {
            if let Some(l) = &mut labels {
                l.observe_held(&decoded);
            }
            if let Some(((last, _), rest)) = tuners.split_last_mut() {
                for (t, _) in rest {
                    t.feed_decoded(decoded.clone(), Some(at));
                }
                last.feed_decoded(decoded, Some(at));
            }
        };
        inputs.for_each_line(|line, at| ahead.push(line, None, at, &mut sink))?;
        ahead.finish(&mut sink);
        // The events still held (the last `allowed_lateness`, jumps not
        // yet settled) are applied before anything is judged, as `tune`
        // does: the history's end, whether it was fed, the group cap.
        for (t, _) in &mut tuners {
            t.end_input();
        }
        if let Some((first, _)) = tuners.first() {
            // One warning for the history, not one per rule.
            first.warn_input("suggest", inputs);
            if let Some(l) = &labels {
                l.warn("suggest");
            }
            first.warn_gaps("suggest", tuners.iter().map(|(t, _)| t.base()));
            first.check_fed()?;
        }
    }
    // Rules whose shared engine reached the group cap are tuned again,
    // exactly, once every shared engine is gone: their memory is not held
    // beside the fallback's.
    let mut results = Vec::with_capacity(tuners.len());
    let mut again = Vec::new();
    let inexact = tuners.iter().filter(|(t, _)| !t.exact()).count();
    if inexact > 0 && inputs.read_once() {
        // Read once (stdin, a pipe): the shared figures stand, said so.
        tracing::warn!(
            rules = inexact,
            "engine.max_groups_per_rule was reached: candidates sharing one engine may differ \
             slightly from separate backtests (pass files instead of stdin or a pipe for exact figures)"
        );
    }
    for (i, (t, o)) in tuners.into_iter().enumerate() {
        if t.exact() || inputs.read_once() {
            results.push(Some(t.finish(&o)?));
        } else {
            drop(t);
            results.push(None);
            again.push((i, o));
        }
    }
    if !again.is_empty() {
        tracing::warn!(
            rules = again.len(),
            "engine.max_groups_per_rule was reached: reading the history again with one engine \
             per candidate for exact figures ({} candidates per reading)",
            tune::SEPARATE_PER_PASS
        );
    }
    for (i, o) in again {
        results[i] = Some(tune::run_separate(cfg, inputs, &o)?);
    }
    Ok(results
        .into_iter()
        .flatten()
        .map(|r| choose(cfg, r, opts))
        .collect())
}

/// [`run`] over lines in memory (tests).
pub fn run_lines<'a>(
    cfg: &Config,
    lines: impl IntoIterator<Item = &'a [u8]> + Clone,
    opts: &SuggestOptions,
) -> Result<Vec<Suggestion>, TuneError> {
    let mut out = Vec::new();
    for (name, t0, for_, below, range) in targets(cfg, opts)? {
        let o = options(cfg, opts, (&name, t0, for_, below, range))?;
        out.push(choose(cfg, tune::run_lines(cfg, lines.clone(), &o)?, opts));
    }
    Ok(out)
}

fn lowest(r: &Row) -> f64 {
    r.candidate
        .rule
        .thresholds
        .levels()
        .first()
        .map_or(f64::NAN, |l| l.1)
}

/// The whole days `covered_ms` holds, rounded down but for [`DAY_SLACK`].
fn whole_days(covered_ms: Option<i64>) -> f64 {
    covered_ms.map_or(0.0, |c| (c.max(0) as f64 / DAY_MS + DAY_SLACK).floor())
}

/// Picks the suggested row (see the module docs).
fn choose(cfg: &Config, result: TuneResult, opts: &SuggestOptions) -> Suggestion {
    // The time the history's events cover in whole days, rounded down but
    // for [`DAY_SLACK`] (a generated month of 30 days ends a second before
    // its 30th day does). Not the span: one stray old stamp, or a week
    // without data, would stretch it (see `backtest::coverage`).
    let days = whole_days(result.covered_ms);
    let allowed_false = (opts.max_false_per_30d.max(0.0) * days / 30.0 + 1e-9).floor() as usize;
    let labelled = result.labelled;
    let below = cfg
        .rules
        .iter()
        .find(|r| r.name == result.base.name)
        .is_some_and(|r| r.condition == Condition::Below);
    let false_of = |r: &Row| {
        if labelled {
            r.false_incidents().unwrap_or(usize::MAX)
        } else {
            r.summary.incidents
        }
    };
    let base_for = result.base.for_;
    // The rows with the rule's own `for` (the candidates), most sensitive
    // first; the `for = 0` rows only give the margin.
    let mut order: Vec<usize> = (0..result.rows.len())
        .filter(|&i| result.rows[i].candidate.rule.for_ == base_for)
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (lowest(&result.rows[a]), lowest(&result.rows[b]));
        let o = x.total_cmp(&y);
        if below {
            o.reverse()
        } else {
            o
        }
    });
    let meets = |i: usize| false_of(&result.rows[i]) <= allowed_false;
    // The same threshold without `for` (the row itself when `for` is 0).
    let strict = |i: usize| {
        let t = lowest(&result.rows[i]);
        (0..result.rows.len()).find(|&j| {
            let r = &result.rows[j];
            r.candidate.rule.for_.0.is_zero() && lowest(r).total_cmp(&t).is_eq()
        })
    };
    let strict_meets = |i: usize| strict(i).is_some_and(meets);
    // Meeting the target with a margin: the two next more sensitive
    // candidates meet it without `for` (the two most sensitive ones tried
    // have no known margin). The configured threshold needs none to stay.
    let ok: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|&(k, &i)| {
            meets(i)
                && (result.rows[i].current
                    || (k >= 2 && strict_meets(order[k - 1]) && strict_meets(order[k - 2])))
        })
        .map(|(_, &i)| i)
        .collect();
    let chosen = if labelled {
        // (`ok` is most sensitive first.)
        let best = ok
            .iter()
            .map(|&i| result.rows[i].missed().unwrap_or(usize::MAX))
            .min();
        let top: Vec<usize> = ok
            .into_iter()
            .filter(|&i| result.rows[i].missed() == best)
            .collect();
        // The configured threshold stays when it is as good as any.
        match top.iter().find(|&&i| result.rows[i].current) {
            Some(&i) => Some(i),
            None => top.get(top.len().saturating_sub(1) / 2).copied(),
        }
    } else {
        ok.first().copied()
    };
    let current = result.rows.iter().position(|r| r.current);
    Suggestion {
        result,
        current,
        chosen,
        allowed_false,
    }
}

fn describe(s: &Suggestion, row: usize) -> String {
    let r = &s.result.rows[row];
    let thr = lowest(r);
    match &r.summary.truth {
        Some(t) => format!(
            "{thr}: {} incident(s), {} false, caught {} of {} crises{}",
            r.summary.incidents,
            t.false_incidents,
            t.detected,
            t.crises,
            r.median_delay_ms()
                .map_or_else(String::new, |d| format!(", median delay {}", fmt_dur(d)))
        ),
        None => format!("{thr}: {} incident(s)", r.summary.incidents),
    }
}

/// The report, for a terminal.
pub fn render(all: &[Suggestion], opts: &SuggestOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Suggested thresholds: at most {} false incident(s) per rule per 30 days{}",
        opts.max_false_per_30d,
        if opts.summary.labels.is_some() {
            " outside the labelled crises"
        } else {
            " (no labels: every incident counts)"
        }
    );
    for sg in all {
        let _ = writeln!(
            s,
            "\n{} ({} candidates, {} false allowed on this history)",
            sg.result.base.name,
            sg.candidates(),
            sg.allowed_false
        );
        if let Some(c) = sg.current {
            let _ = writeln!(s, "  configured {}", describe(sg, c));
        }
        match sg.chosen {
            Some(i) => {
                let _ = writeln!(s, "  suggested  {}", describe(sg, i));
            }
            None => {
                let _ = writeln!(
                    s,
                    "  no candidate meets the target: the threshold stays (try tune --vary)"
                );
            }
        }
    }
    s
}

/// The suggested rules as TOML `[[rules]]` entries (rules without a
/// suggestion as configured), each with a comment of its figures.
pub fn snippet(all: &[Suggestion], written: &tune::WrittenRules) -> Result<String, TuneError> {
    let mut s =
        String::from("# crisiswatch suggest: replace the [[rules]] entries of the same names.\n");
    for sg in all {
        let Some(row) = sg.chosen.or(sg.current) else {
            continue;
        };
        s.push('\n');
        s.push_str(&tune::snippet_as_written(&sg.result, row, written)?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_thresholds_scale_and_round() {
        let any = (f64::NEG_INFINITY, f64::INFINITY);
        let t = thresholds(0.022, false, any);
        assert_eq!(t[0], 0.011);
        assert!(t.contains(&0.022));
        assert_eq!(t.len(), FACTORS.len());
        let neg = thresholds(-20.0, false, any);
        assert_eq!(neg[0], -30.0);
        assert_eq!(neg[5], -20.0);
        // A `below` rule: more sensitive above t0, less sensitive below it,
        // past zero (an NPS threshold of 15 on traffic whose NPS sits at 12).
        let nps = thresholds(15.0, true, (-100.0, 100.0));
        assert_eq!(
            (nps[0], nps[5], nps[11], nps[13]),
            (22.5, 15.0, -7.5, -30.0)
        );
        let low = thresholds(-20.0, true, any);
        assert_eq!((low[0], low[5], low[11]), (-10.0, -20.0, -50.0));
        assert_eq!(thresholds(0.3, false, any)[13], 1.2);
        // Only what the indicator can cross: a share never passes 1, a
        // ratio below 0 never fires.
        let share = thresholds(0.55, false, (0.0, 1.0));
        assert!(share.iter().all(|&t| t < 1.0), "{share:?}");
        assert_eq!(share.last(), Some(&0.9625));
        let ratio = thresholds(0.8, true, (0.0, f64::INFINITY));
        assert!(ratio.iter().all(|&t| t > 0.0), "{ratio:?}");
        // The configured threshold stays, even out of range.
        assert!(thresholds(1.5, false, (0.0, 1.0)).contains(&1.5));
    }

    /// A share (numerator among the denominator's events) never passes 1:
    /// no candidate is tried whose threshold, or whose critical moved in
    /// proportion, is at or above 1 — they could never page and would be
    /// "suggested" at no incident.
    #[test]
    fn share_candidates_stay_below_one_at_every_level() {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "social"
window = "10m"
indicator = { kind = "ratio", numerator = { type = "complaint", attrs = { channel = "social" } }, denominator = { type = "complaint" } }
thresholds = { warning = 0.5, critical = 0.7 }
"#,
            &std::collections::HashMap::new(),
        )
        .unwrap();
        let lines: Vec<String> = (0..50)
            .map(|i| {
                let channel = if i % 3 == 0 { "social" } else { "web" };
                format!(
                    "{{\"id\":\"e{i}\",\"type\":\"complaint\",\"ts\":{},\"attrs\":{{\"channel\":\"{channel}\"}}}}",
                    1_795_132_800_000i64 + i * 30_000
                )
            })
            .collect();
        let opts = SuggestOptions {
            summary: super::super::report::SummaryOptions::default(),
            now_ms: None,
            max_false_per_30d: 1.0,
            rules: Vec::new(),
        };
        let s = run_lines(&cfg, lines.iter().map(|l| l.as_bytes()), &opts).unwrap();
        let levels: Vec<Vec<f64>> = s[0]
            .result
            .rows
            .iter()
            .map(|r| {
                r.candidate
                    .rule
                    .thresholds
                    .levels()
                    .iter()
                    .map(|l| l.1)
                    .collect()
            })
            .collect();
        // 0.25 … 0.65 by the factors; 0.75 would move the critical to 1.05.
        assert_eq!(levels.len(), 8, "{levels:?}");
        assert!(
            levels.iter().all(|l| l.iter().all(|&v| v < 1.0)),
            "{levels:?}"
        );
        assert!(levels.contains(&vec![0.5, 0.7]), "{levels:?}");
    }

    #[test]
    fn history_days_round_down_but_for_the_last_moments_of_a_day() {
        let day = 86_400_000_i64;
        // A generated month ends a second before its 30th day does.
        assert_eq!(whole_days(Some(30 * day - 1_000)), 30.0);
        // 29 days and an hour are 29 days (one false incident needs 30).
        assert_eq!(whole_days(Some(29 * day + 3_600_000)), 29.0);
        assert_eq!(whole_days(Some(3_600_000)), 0.0);
        assert_eq!(whole_days(None), 0.0);
        assert_eq!(whole_days(Some(-5)), 0.0);
    }
}
