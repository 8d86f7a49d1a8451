//! What the web console draws: each rule's worst slices now, and a bounded
//! recent history of their indicator values and alert states.
//!
//! The driver publishes a snapshot once per batch ([`super::AdminState::publish`]);
//! with it comes [`sample`]: per rule its [`SLICES`] worst groups — alerting
//! ones first, then the worst values (highest for `above`, lowest for
//! `below`). [`History::record`] keeps, per (rule, slice) it has seen there,
//! one point per slide of event time (and one at every change of state) for
//! the last [`HORIZON_MS`] of event time, at most [`MAX_POINTS`] points per
//! series and [`MAX_SERIES`] series (the least recently seen go first). So
//! memory is bounded whatever the number of groups, and a slice's history is
//! exact for the times it was among its rule's worst: a crisis slice climbs
//! there before it breaches, a quiet slice among thousands may have gaps.

use std::collections::{HashMap, VecDeque};

use crate::alert::Labels;
use crate::config::{Condition, Severity};
use crate::engine::EngineView;

/// Slices per rule sampled at each batch (alerting first, then the worst).
pub(crate) const SLICES: usize = 50;
/// How much event time a series keeps.
pub(crate) const HORIZON_MS: i64 = 6 * 3_600_000;
/// Points per series.
const MAX_POINTS: usize = 720;
/// Series kept, all rules together.
const MAX_SERIES: usize = 2_000;

/// One rule's thresholds and its worst slices at the latest batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleSample {
    /// Rule name.
    pub(crate) rule: String,
    /// Indicator kind.
    pub(crate) kind: String,
    /// Above or below.
    pub(crate) condition: Condition,
    /// Thresholds, lowest severity first.
    pub(crate) thresholds: Vec<(Severity, f64)>,
    /// Clear (hysteresis) threshold.
    pub(crate) clear: Option<f64>,
    /// The rule's slide, ms.
    pub(crate) slide_ms: i64,
    /// Live groups.
    pub(crate) live_groups: usize,
    /// Worst slices, alerting first.
    pub(crate) slices: Vec<SliceSample>,
}

/// One slice's value and state at a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SliceSample {
    /// (attribute, value) in `group_by` order.
    pub(crate) group: Labels,
    /// Latest value.
    pub(crate) value: Option<f64>,
    /// 0 inactive, 1 pending, 2 firing.
    pub(crate) state: i64,
}

/// One recorded point: event time, value, state.
pub(crate) type Point = (i64, Option<f64>, i64);

/// The samples of one batch, from the engine.
pub(crate) fn sample(engine: &impl EngineView) -> Vec<RuleSample> {
    (0..engine.rule_count())
        .map(|i| {
            let cfg = engine.rule_config(i);
            let (top, live) = engine.worst_groups(i, SLICES);
            RuleSample {
                rule: cfg.name.clone(),
                kind: cfg.indicator.kind_name().to_string(),
                condition: cfg.condition,
                thresholds: cfg.thresholds.levels(),
                clear: cfg.clear_threshold(),
                slide_ms: cfg.slide().as_ms().max(1),
                live_groups: live,
                slices: top
                    .into_iter()
                    .map(|g| SliceSample {
                        group: g.group,
                        value: g.value.filter(|v| v.is_finite()),
                        state: g.phase.code(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The bounded history of the sampled slices.
#[derive(Debug, Default)]
pub(crate) struct History {
    series: HashMap<(String, Labels), VecDeque<Point>>,
    /// The latest batch's samples.
    latest: Vec<RuleSample>,
}

impl History {
    /// Adds a batch's samples taken at event time `clock`.
    pub(crate) fn record(&mut self, clock: Option<i64>, samples: Vec<RuleSample>) {
        let Some(now) = clock else {
            self.latest = samples;
            return;
        };
        for r in &samples {
            for s in &r.slices {
                let points = self
                    .series
                    .entry((r.rule.clone(), s.group.clone()))
                    .or_default();
                let due = points.back().is_none_or(|&(at, _, state)| {
                    state != s.state || now >= at.saturating_add(r.slide_ms)
                });
                if due && points.back().is_none_or(|p| p.0 <= now) {
                    points.push_back((now, s.value, s.state));
                    if points.len() > MAX_POINTS {
                        points.pop_front();
                    }
                }
            }
        }
        let cutoff = now.saturating_sub(HORIZON_MS);
        self.series.retain(|_, p| {
            while p.front().is_some_and(|x| x.0 < cutoff) {
                p.pop_front();
            }
            !p.is_empty()
        });
        if self.series.len() > MAX_SERIES {
            let mut last: Vec<(i64, (String, Labels))> = self
                .series
                .iter()
                .map(|(k, p)| (p.back().map_or(i64::MIN, |x| x.0), k.clone()))
                .collect();
            last.sort();
            for (_, k) in last.into_iter().take(self.series.len() - MAX_SERIES) {
                self.series.remove(&k);
            }
        }
        self.latest = samples;
    }

    /// The recorded points of `rule` on `group`, oldest first.
    pub(crate) fn points(&self, rule: &str, group: &Labels) -> Vec<Point> {
        self.series
            .get(&(rule.to_string(), group.clone()))
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The latest batch's samples, per rule.
    pub(crate) fn latest(&self) -> &[RuleSample] {
        &self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(slices: Vec<SliceSample>) -> RuleSample {
        RuleSample {
            rule: "r".into(),
            kind: "count".into(),
            condition: Condition::Above,
            thresholds: vec![(Severity::Warning, 5.0)],
            clear: Some(3.0),
            slide_ms: 60_000,
            live_groups: slices.len(),
            slices,
        }
    }

    fn slice(p: &str, value: f64, state: i64) -> SliceSample {
        SliceSample {
            group: vec![("product".into(), p.into())],
            value: Some(value),
            state,
        }
    }

    #[test]
    fn one_point_per_slide_and_at_each_change_within_the_horizon() {
        let mut h = History::default();
        let g: Labels = vec![("product".into(), "a".into())];
        for s in 0..600i64 {
            let state = i64::from((300..320).contains(&s)) * 2;
            h.record(
                Some(s * 20_000),
                vec![rule(vec![slice("a", s as f64, state)])],
            );
        }
        let p = h.points("r", &g);
        // 600 batches 20 s apart = 200 minutes: one point per minute, plus
        // the points where the state changed (into and out of firing).
        assert!((200..=205).contains(&p.len()), "{}", p.len());
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(p.iter().filter(|x| x.2 == 2).count(), 7);
        // Past the horizon, old points go; a series not seen again goes too.
        h.record(
            Some(599 * 20_000 + HORIZON_MS + 1),
            vec![rule(vec![slice("b", 1.0, 0)])],
        );
        assert!(h.points("r", &g).is_empty());
        assert_eq!(
            h.points("r", &vec![("product".into(), "b".into())]).len(),
            1
        );
        assert_eq!(h.latest()[0].slices[0].group[0].1, "b");
    }

    #[test]
    fn the_number_of_series_is_bounded() {
        let mut h = History::default();
        for b in 0..50i64 {
            let slices = (0..SLICES)
                .map(|i| slice(&format!("p{b}-{i}"), 1.0, 0))
                .collect();
            h.record(Some(b * 1000), vec![rule(slices)]);
        }
        assert!(h.series.len() <= MAX_SERIES);
        assert_eq!(
            h.points("r", &vec![("product".into(), "p49-0".into())])
                .len(),
            1
        );
    }
}
