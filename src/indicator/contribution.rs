//! What one event contributes to one rule: the counter deltas its
//! indicator kind takes from it, whether it is part of the signal, and
//! whether it feeds per-customer counts or answers a complaint.

use super::{score_milli, Kind};
use crate::event::Event;
use crate::window::Counters;

/// What one event contributes to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Contribution {
    /// Counter deltas.
    pub(crate) delta: Counters,
    /// Whether the event is part of the signal (numerator / counted events),
    /// not only the denominator: such events are kept as alert evidence.
    pub(crate) signal: bool,
    /// Whether the event feeds per-customer counts.
    pub(crate) customer: bool,
    /// A response naming a complaint (`ref_id`): it adds nothing itself,
    /// the engine takes its complaint out of the backlog.
    pub(crate) response: bool,
    /// The event feeds the rule's second selector: a ratio's denominator,
    /// or a backlog rule's `responses` (so history tools can name a rule
    /// whose second selector nothing fed).
    pub(crate) second: bool,
}

impl Kind {
    #[inline]
    pub(super) fn contribution(&self, ev: &Event<'_>) -> Option<Contribution> {
        let plain = |delta| {
            Some(Contribution {
                delta,
                signal: true,
                customer: false,
                response: false,
                second: false,
            })
        };
        match self {
            Kind::Count(s) | Kind::Rate(s, _) | Kind::Surge { select: s, .. } => {
                if s.matches(ev) {
                    plain([1, 0, 0])
                } else {
                    None
                }
            }
            Kind::Ratio { num, den, .. } => {
                let n = num.matches(ev);
                let d = den.matches(ev);
                if !(n || d) {
                    return None;
                }
                Some(Contribution {
                    delta: [i64::from(n), i64::from(d), 0],
                    signal: n,
                    customer: false,
                    response: false,
                    second: d,
                })
            }
            Kind::Distinct(s) | Kind::Repeat(s, _) | Kind::RepeatShare { select: s, .. } => {
                if ev.customer_id.is_some() && s.matches(ev) {
                    Some(Contribution {
                        delta: [1, 0, 0],
                        signal: true,
                        customer: true,
                        response: false,
                        second: false,
                    })
                } else {
                    None
                }
            }
            Kind::ScoreShare(s, lo, hi) => {
                let score = ev.score?;
                if !s.matches(ev) {
                    return None;
                }
                let hit = score >= *lo && score <= *hi;
                Some(Contribution {
                    delta: [i64::from(hit), 1, 0],
                    signal: hit,
                    customer: false,
                    response: false,
                    second: false,
                })
            }
            Kind::MeanScore(s) => {
                let score = ev.score?;
                if s.matches(ev) {
                    // c2: squares (thousandths), for the spread a confidence bound needs.
                    plain([score_milli(score), 1, score_milli(score * score)])
                } else {
                    None
                }
            }
            Kind::Nps(s) => {
                let score = ev.score?;
                if !s.matches(ev) {
                    return None;
                }
                let promoter = score >= 9.0;
                let detractor = score <= 6.0;
                Some(Contribution {
                    delta: [i64::from(promoter), i64::from(detractor), 1],
                    signal: detractor,
                    customer: false,
                    response: false,
                    second: false,
                })
            }
            Kind::Unanswered { select, responses }
            | Kind::ResponseTime {
                select, responses, ..
            } => {
                if select.matches(ev) {
                    plain([1, 0, 0])
                } else if ev.ref_id.is_some() && responses.matches(ev) {
                    Some(Contribution {
                        delta: [0, 0, 0],
                        signal: false,
                        customer: false,
                        response: true,
                        second: true,
                    })
                } else {
                    None
                }
            }
        }
    }
}
