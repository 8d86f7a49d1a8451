//! Indicators: what an event adds to a pane, and the value of a window.
//!
//! Sits between the windows and the rules. Each kind maps a matching event to
//! integer pane counters (see [`Counters`]) and computes the indicator value,
//! plus the *volume* that `min_volume` is checked against, from the window
//! totals:
//!
//! | kind | c[0] | c[1] | c[2] | value | volume |
//! | --- | --- | --- | --- | --- | --- |
//! | count | matches | | | c0 | c0 |
//! | rate | matches | | | c0 ÷ window in `per` units | c0 |
//! | ratio | numerator | denominator | | c0 ÷ c1, none below `min_denominator` | c1 |
//! | distinct_customers | matches with a customer | | | distinct customers | c0 |
//! | repeat_customers | matches with a customer | | | customers with ≥ `min_events` | c0 |
//! | repeat_share | matches with a customer | | | repeat ÷ distinct customers, none below `min_customers` | distinct customers |
//! | score_share | scores in [min, max] | scored | | c0 ÷ c1 | c1 |
//! | mean_score | Σ score × 1000 | scored | Σ score² × 1000 | c0 ÷ c1 ÷ 1000 | c1 |
//! | nps | promoters (≥ 9) | detractors (≤ 6) | scored | (c0 − c1) ÷ c2 × 100 | c2 |
//! | surge | matches | | | see [`surge_value`] | c0 |
//! | unanswered | complaints not yet answered | | | c0 over the panes past the SLA (the "baseline" region) | the same |
//! | response_time | complaints | first responses (at the response's pane) | | the `quantile` of the window's first-response times, from the group's samples (`engine/backlog.rs`) | c1 |
//!
//! A value of `None` means "no data": too little volume to say anything. The
//! rules treat it as "condition not met".
//!
//! With a rule's `confidence`, the value judged (and recorded, exported and
//! charted) is a one-sided confidence bound of the estimate instead of the
//! point value, so that a small slice needs stronger evidence than a large
//! one: see [`confidence`] for the intervals and why.

use std::hash::BuildHasher;

use crate::config::{Condition, IndicatorConfig, RateUnit, RuleConfig, SurgeMethod};
use crate::event::Event;
use crate::route::CompiledSelector;
use crate::window::Window;
use season::{Expectation, SeasonShape};

pub mod confidence;
mod contribution;
pub(crate) mod season;
mod surge;

pub(crate) use contribution::Contribution;
use surge::surge_of;
pub(crate) use surge::surge_value;

/// Seed of the customer-id hash; fixed so that replays are deterministic.
const CUSTOMER_HASH_SEED: u64 = 0x6375_7374_6f6d_6572;

/// A compiled indicator: what it measures and, with a rule's `confidence`,
/// which confidence bound of the estimate is judged.
#[derive(Debug, Clone)]
pub struct Indicator {
    kind: Kind,
    guard: Option<Guard>,
}

/// What an indicator measures.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Matching events.
    Count(CompiledSelector),
    /// Matching events per unit; the divisor converts the window to that unit.
    Rate(CompiledSelector, f64),
    /// numerator ÷ denominator.
    Ratio {
        /// Top.
        num: CompiledSelector,
        /// Bottom.
        den: CompiledSelector,
        /// Minimum denominator count.
        min_den: i64,
    },
    /// Distinct customers.
    Distinct(CompiledSelector),
    /// Customers with at least this many events.
    Repeat(CompiledSelector, u32),
    /// Share of the distinct customers with at least `min_events` events.
    RepeatShare {
        /// Events counted.
        select: CompiledSelector,
        /// Events per customer for a repeat.
        min_events: u32,
        /// Minimum distinct customers.
        min_customers: u64,
    },
    /// Share of scores within [min, max].
    ScoreShare(CompiledSelector, f64, f64),
    /// Mean score.
    MeanScore(CompiledSelector),
    /// Net promoter score.
    Nps(CompiledSelector),
    /// Window count against a trailing baseline.
    Surge {
        /// Events counted.
        select: CompiledSelector,
        /// Ratio or z-score.
        method: SurgeMethod,
        /// Expected-count floor.
        min_baseline: f64,
        /// Seasonal baseline (`seasonality`), instead of the trailing one.
        season: Option<SeasonShape>,
    },
    /// Complaints past the SLA without a first response (the engine keeps
    /// which complaint each response answers: `engine/backlog.rs`).
    Unanswered {
        /// The complaints.
        select: CompiledSelector,
        /// The responses (with a `ref_id`).
        responses: CompiledSelector,
    },
    /// A quantile of first-response times (the engine keeps the samples:
    /// `engine/backlog.rs`).
    ResponseTime {
        /// The complaints.
        select: CompiledSelector,
        /// The responses (with a `ref_id`).
        responses: CompiledSelector,
        /// Which quantile, in (0, 1].
        quantile: f64,
    },
}

/// Hashes a customer id for per-customer counting.
pub(crate) fn customer_hash(id: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(CUSTOMER_HASH_SEED).hash_one(id)
}

/// Scores are kept in thousandths so pane sums are exact integers. The cast
/// saturates (a score beyond ±9.2·10¹⁵ becomes `i64::MAX`/`MIN`); the decoder
/// keeps scores within `engine.score_range`, so that never happens to a
/// decoded event.
pub(crate) fn score_milli(score: f64) -> i64 {
    (score * 1000.0).round() as i64
}

impl Indicator {
    /// Compiles the indicator of rule `r` (window `window_ms`), with the
    /// confidence bound its `confidence` and `condition` ask for: the lower
    /// bound for `above` (a breach needs the estimate to be above the
    /// threshold with that confidence), the upper bound for `below`.
    /// `score_range` is `engine.score_range`, the scale a `mean_score`'s
    /// bound assumes before its sample shows its own spread.
    pub(crate) fn for_rule(r: &RuleConfig, window_ms: i64, score_range: [f64; 2]) -> Self {
        let mut ind = Self::compile(&r.indicator, window_ms);
        ind.guard = r.confidence.map(|level| Guard {
            z: confidence::z_one_sided(level),
            tail: 1.0 - level,
            scale: confidence::ScoreScale::new(score_range),
            side: match r.condition {
                Condition::Above => Side::Lower,
                Condition::Below => Side::Upper,
            },
        });
        ind
    }

    /// Takes a reloaded `engine.score_range` (see [`Indicator::for_rule`]).
    pub(crate) fn set_score_range(&mut self, score_range: [f64; 2]) {
        if let Some(g) = &mut self.guard {
            g.scale = confidence::ScoreScale::new(score_range);
        }
    }

    /// Compiles the configured indicator for a window of `window_ms`, judged
    /// on its point value (no `confidence`).
    pub fn compile(cfg: &IndicatorConfig, window_ms: i64) -> Self {
        Indicator {
            kind: Kind::compile(cfg, window_ms),
            guard: None,
        }
    }

    /// A seasonal surge's profile dimensions (see `engine::season`).
    pub(crate) fn season(&self) -> Option<SeasonShape> {
        match self.kind {
            Kind::Surge { season, .. } => season,
            _ => None,
        }
    }

    /// A seasonal surge's value for window `w` against the expectation of
    /// earlier seasons (`None` until there is one), on the confidence bound
    /// of the current count unless `estimate`. Volume: the current count.
    pub(crate) fn seasonal_value(
        &self,
        w: &Window,
        exp: Option<Expectation>,
        estimate: bool,
    ) -> (Option<f64>, i64) {
        let Kind::Surge {
            method,
            min_baseline,
            ..
        } = &self.kind
        else {
            return (None, 0);
        };
        let c = w.cur[0];
        let current = match &self.guard {
            Some(g) if !estimate => confidence::poisson(c, g.z, g.side == Side::Lower),
            _ => c as f64,
        };
        let value = exp.map(|e| {
            let expected = e.mean.max(*min_baseline);
            match method {
                SurgeMethod::Ratio => current / expected,
                SurgeMethod::Zscore => (current - expected) / e.var.max(expected).sqrt(),
            }
        });
        (value, c)
    }

    /// A `response_time` indicator's quantile: its value is computed from
    /// the group's first-response samples, not from the window's counts.
    pub(crate) fn response_quantile(&self) -> Option<f64> {
        match self.kind {
            Kind::ResponseTime { quantile, .. } => Some(quantile),
            _ => None,
        }
    }

    /// The selectors, for routing.
    pub(crate) fn selectors(&self) -> Vec<&CompiledSelector> {
        self.kind.selectors()
    }

    /// Whether the indicator counts customers.
    pub(crate) fn needs_customers(&self) -> bool {
        matches!(
            self.kind,
            Kind::Distinct(_) | Kind::Repeat(..) | Kind::RepeatShare { .. }
        )
    }

    /// `min_events` for repeat customers, 1 otherwise.
    pub(crate) fn min_events(&self) -> u32 {
        match self.kind {
            Kind::Repeat(_, n) | Kind::RepeatShare { min_events: n, .. } => n,
            _ => 1,
        }
    }

    /// What `ev` contributes, or `None` if it does not concern this indicator.
    #[inline]
    pub(crate) fn contribution(&self, ev: &Event<'_>) -> Option<Contribution> {
        self.kind.contribution(ev)
    }

    /// The value the rule judges and its volume for a window: the point
    /// estimate ([`Indicator::estimate`]), or with `confidence` its confidence
    /// bound (see [`confidence`]), which is "no data" where the estimate has
    /// no spread to bound (a mean of one score).
    /// `n` is the panes per window and `base` the baseline with history
    /// (surge only; see [`Baseline`] and [`surge_value`]).
    pub fn value(&self, w: &Window, n: i64, base: Baseline) -> (Option<f64>, i64) {
        let (point, volume) = self.kind.value(w, n, base);
        match (&self.guard, point) {
            (Some(g), Some(_)) => (self.kind.bound(w, n, base, g), volume),
            _ => (point, volume),
        }
    }

    /// Whether the rule judges a confidence bound (`confidence` is set), so
    /// that [`Indicator::value`] differs from [`Indicator::estimate`].
    pub(crate) fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// The point estimate and its volume, whatever the rule's `confidence`.
    pub(crate) fn estimate(&self, w: &Window, n: i64, base: Baseline) -> (Option<f64>, i64) {
        self.kind.value(w, n, base)
    }
}

/// What a surge is judged against: the baseline panes with history and
/// their event counts' sum and sum of squares. While the stream is younger
/// than the baseline, the panes with history are those after the rule's
/// origin (the pane of its first event, which the stream covers only in
/// part), and the sums leave the origin pane and any before it out too
/// ([`Window::baseline_after`]). Not a surge: all zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    /// Baseline panes with history.
    pub panes: i64,
    /// Events in them (the counter a surge counts).
    pub sum: i64,
    /// Sum of the squares of the per-pane counts.
    pub sumsq: i128,
}

impl Baseline {
    /// The whole baseline region of `w`, `panes` of it with history.
    pub fn of(w: &Window, panes: i64) -> Baseline {
        Baseline {
            panes,
            sum: w.base_sum,
            sumsq: w.base_sumsq,
        }
    }
}

/// Which confidence bound a guarded rule judges.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Guard {
    /// One-sided standard normal quantile of the confidence level.
    z: f64,
    /// One minus the confidence level (for Student quantiles).
    tail: f64,
    /// The score range a mean's variance is pooled with.
    scale: confidence::ScoreScale,
    /// Lower bound (`above` rules) or upper bound (`below` rules).
    side: Side,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Lower,
    Upper,
}

impl Kind {
    fn compile(cfg: &IndicatorConfig, window_ms: i64) -> Self {
        match cfg {
            IndicatorConfig::Count { select } => Kind::Count(CompiledSelector::compile(select)),
            IndicatorConfig::Rate { select, per } => {
                let unit_ms = match per {
                    RateUnit::Second => 1_000.0,
                    RateUnit::Minute => 60_000.0,
                    RateUnit::Hour => 3_600_000.0,
                };
                Kind::Rate(
                    CompiledSelector::compile(select),
                    window_ms as f64 / unit_ms,
                )
            }
            IndicatorConfig::Ratio {
                numerator,
                denominator,
                min_denominator,
            } => Kind::Ratio {
                num: CompiledSelector::compile(numerator),
                den: CompiledSelector::compile(denominator),
                min_den: i64::try_from(*min_denominator).unwrap_or(i64::MAX).max(1),
            },
            IndicatorConfig::DistinctCustomers { select } => {
                Kind::Distinct(CompiledSelector::compile(select))
            }
            IndicatorConfig::RepeatCustomers { select, min_events } => {
                Kind::Repeat(CompiledSelector::compile(select), (*min_events).max(1))
            }
            IndicatorConfig::RepeatShare {
                select,
                min_events,
                min_customers,
            } => Kind::RepeatShare {
                select: CompiledSelector::compile(select),
                min_events: (*min_events).max(1),
                min_customers: (*min_customers).max(1),
            },
            IndicatorConfig::ScoreShare { select, min, max } => {
                Kind::ScoreShare(CompiledSelector::compile(select), *min, *max)
            }
            IndicatorConfig::MeanScore { select } => {
                Kind::MeanScore(CompiledSelector::compile(select))
            }
            IndicatorConfig::Nps { select } => Kind::Nps(CompiledSelector::compile(select)),
            IndicatorConfig::Surge {
                select,
                method,
                min_baseline,
                seasonality,
                baseline,
            } => Kind::Surge {
                select: CompiledSelector::compile(select),
                method: *method,
                min_baseline: *min_baseline,
                season: seasonality.map(|s| SeasonShape {
                    buckets: (s.as_ms() / window_ms.max(1)).max(1),
                    seasons: u32::try_from(baseline.as_ms() / s.as_ms().max(1))
                        .unwrap_or(1)
                        .max(1),
                }),
            },
            IndicatorConfig::Unanswered {
                select, responses, ..
            } => Kind::Unanswered {
                select: CompiledSelector::compile(select),
                responses: CompiledSelector::compile(responses),
            },
            IndicatorConfig::ResponseTime {
                select,
                responses,
                quantile,
            } => Kind::ResponseTime {
                select: CompiledSelector::compile(select),
                responses: CompiledSelector::compile(responses),
                quantile: *quantile,
            },
        }
    }

    fn selectors(&self) -> Vec<&CompiledSelector> {
        match self {
            Kind::Ratio { num, den, .. } => vec![num, den],
            Kind::Unanswered { select, responses }
            | Kind::ResponseTime {
                select, responses, ..
            } => vec![select, responses],
            Kind::Count(s)
            | Kind::Rate(s, _)
            | Kind::Distinct(s)
            | Kind::Repeat(s, _)
            | Kind::RepeatShare { select: s, .. }
            | Kind::ScoreShare(s, ..)
            | Kind::MeanScore(s)
            | Kind::Nps(s)
            | Kind::Surge { select: s, .. } => vec![s],
        }
    }

    /// The one-sided confidence bound `g` asks for (see [`confidence`]).
    /// Kinds without one (counts, rates, customers: validation keeps
    /// `confidence` off them) give their point value.
    fn bound(&self, w: &Window, n: i64, base: Baseline, g: &Guard) -> Option<f64> {
        let c = w.cur;
        let lower = g.side == Side::Lower;
        match self {
            Kind::Ratio { .. } | Kind::ScoreShare(..) => {
                Some(confidence::proportion(c[0], c[1], g.z, lower))
            }
            Kind::RepeatShare { .. } => {
                let (repeat, distinct) = repeat_and_distinct(w);
                Some(confidence::proportion(repeat, distinct, g.z, lower))
            }
            Kind::Nps(_) => Some(confidence::nps(c[0], c[1], c[2], g.z, lower)),
            Kind::MeanScore(_) => confidence::mean(c[0], c[1], c[2], g.z, g.tail, g.scale, lower),
            Kind::Surge {
                method,
                min_baseline,
                ..
            } => surge_of(
                confidence::poisson(c[0], g.z, lower),
                base.sum,
                base.sumsq,
                n,
                base.panes,
                *method,
                *min_baseline,
            ),
            _ => self.value(w, n, base).0,
        }
    }

    /// The point value and its volume for a window.
    fn value(&self, w: &Window, n: i64, base: Baseline) -> (Option<f64>, i64) {
        let c = w.cur;
        match self {
            Kind::Count(_) => (Some(c[0] as f64), c[0]),
            Kind::Rate(_, units) => (Some(c[0] as f64 / units), c[0]),
            Kind::Ratio { min_den, .. } => {
                let v = (c[1] >= *min_den).then(|| c[0] as f64 / c[1] as f64);
                (v, c[1])
            }
            Kind::Distinct(_) => {
                let d = w.customers.as_ref().map_or(0, |cc| cc.distinct());
                (Some(d as f64), c[0])
            }
            Kind::Repeat(..) => {
                let r = w.customers.as_ref().map_or(0, |cc| cc.repeat());
                (Some(r as f64), c[0])
            }
            Kind::RepeatShare { min_customers, .. } => {
                let (repeat, distinct) = repeat_and_distinct(w);
                let enough = u64::try_from(distinct).is_ok_and(|d| d >= *min_customers);
                (enough.then(|| repeat as f64 / distinct as f64), distinct)
            }
            Kind::ScoreShare(..) => ((c[1] > 0).then(|| c[0] as f64 / c[1] as f64), c[1]),
            Kind::MeanScore(_) => ((c[1] > 0).then(|| c[0] as f64 / c[1] as f64 / 1000.0), c[1]),
            Kind::Nps(_) => (
                (c[2] > 0).then(|| (c[0] as f64 - c[1] as f64) / c[2] as f64 * 100.0),
                c[2],
            ),
            Kind::Surge {
                method,
                min_baseline,
                ..
            } => (
                surge_value(
                    c[0],
                    base.sum,
                    base.sumsq,
                    n,
                    base.panes,
                    *method,
                    *min_baseline,
                ),
                c[0],
            ),
            // Panes past the SLA are the window's "baseline" region.
            Kind::Unanswered { .. } => (Some(w.base_sum as f64), w.base_sum),
            // The quantile needs the samples, which the engine keeps beside
            // the window (`Indicator::response_quantile`): none from counts.
            Kind::ResponseTime { .. } => (None, c[1]),
        }
    }
}

/// Repeat and distinct customers of a window (per-customer counts kept by
/// the window for customer indicators), as counters.
fn repeat_and_distinct(w: &Window) -> (i64, i64) {
    w.customers.as_ref().map_or((0, 0), |cc| {
        (
            i64::try_from(cc.repeat()).unwrap_or(i64::MAX),
            i64::try_from(cc.distinct()).unwrap_or(i64::MAX),
        )
    })
}

#[cfg(test)]
mod tests;
