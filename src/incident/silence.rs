//! Silences: mute incidents whose alerts match label matchers, for a while.
//!
//! Applied where notifications enter the outbox: a notification whose every
//! alert (every active one, while any is active) matches an active silence is
//! recorded as `muted` and not delivered. Silences live in the outbox database
//! so the CLI (`crisiswatch silence add|list|expire`), the HTTP API and the
//! running service share them; they expire on their own at `ends_at`.
//!
//! A matcher is `name=value` or `name!=value`; `rule` is the rule name, any
//! other name a group label (an absent label is ""). Alertmanager's
//! regular-expression operators (`=~`, `!~`) are refused, not taken as `=`
//! with a value starting with `~`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::Labels;

use super::model::Notification;

/// Errors in silence input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SilenceError {
    /// A matcher is not `name=value` or `name!=value`.
    #[error(
        "bad matcher {0:?}: write name=value or name!=value (name is `rule` or a group label)"
    )]
    BadMatcher(String),
    /// A regular-expression matcher (`=~`, `!~`), as Alertmanager writes them.
    #[error(
        "bad matcher {matcher:?}: regular-expression matchers ({op}) are not supported; \
         write name=value (equal) or name!=value (not equal), and one silence per value to mute several"
    )]
    Regex {
        /// The matcher as given.
        matcher: String,
        /// `=~` or `!~`.
        op: &'static str,
    },
    /// No matcher given.
    #[error("a silence needs at least one matcher, e.g. rule=complaint_rate or product=router-x")]
    NoMatchers,
    /// Duration not positive.
    #[error("a silence must last a positive time (e.g. \"2h\")")]
    NotPositive,
    /// Longer than [`MAX_SILENCE_MS`].
    #[error(
        "a silence lasts at most a year (366d); to mute for good, take the slices off a route"
    )]
    TooLong,
}

/// The longest silence: a year (366 days). Past it `ends_at` would not be a
/// date any client reads (500000000y saturated to i64::MAX).
pub const MAX_SILENCE_MS: i64 = 366 * 86_400_000;

/// Equality or inequality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MatchOp {
    /// `name=value`.
    #[serde(rename = "=")]
    Eq,
    /// `name!=value`.
    #[serde(rename = "!=")]
    Ne,
}

/// One matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// `rule` or a group label.
    pub(crate) name: String,
    /// `=` or `!=`.
    #[serde(default = "default_op")]
    pub(crate) op: MatchOp,
    /// The value compared.
    pub(crate) value: String,
}

fn default_op() -> MatchOp {
    MatchOp::Eq
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Random id.
    pub(crate) id: String,
    /// All must match.
    pub(crate) matchers: Vec<Matcher>,
    /// Wall-clock start, ms.
    pub(crate) starts_at: i64,
    /// Wall-clock end, ms: the silence expires then.
    pub(crate) ends_at: i64,
    /// Who set it.
    pub(crate) created_by: String,
    /// Why.
    pub(crate) comment: String,
}

// === impl Matcher ===

impl Matcher {
    /// Parses `name=value` or `name!=value`; `name=~value` and `name!~value`
    /// (regular expressions) are refused.
    pub fn parse(s: &str) -> Result<Matcher, SilenceError> {
        let bad = || SilenceError::BadMatcher(s.to_string());
        for op in ["=~", "!~"] {
            if s.split_once(op).is_some_and(|(n, _)| valid_name(n.trim())) {
                return Err(SilenceError::Regex {
                    matcher: s.to_string(),
                    op,
                });
            }
        }
        let (name, op, value) = if let Some((n, v)) = s.split_once("!=") {
            (n, MatchOp::Ne, v)
        } else if let Some((n, v)) = s.split_once('=') {
            (n, MatchOp::Eq, v)
        } else {
            return Err(bad());
        };
        let name = name.trim();
        if !valid_name(name) {
            return Err(bad());
        }
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.trim().to_string(),
        })
    }

    /// Whether an alert of `rule` on `group` satisfies this matcher.
    pub(crate) fn matches(&self, rule: &str, group: &Labels) -> bool {
        let v = if self.name == "rule" {
            rule
        } else {
            group
                .iter()
                .find(|(k, _)| *k == self.name)
                .map_or("", |(_, v)| v.as_str())
        };
        (v == self.value) == (self.op == MatchOp::Eq)
    }
}

/// A label name (or `rule`): letters, digits, `_`, `-` and `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

// === impl Silence ===

impl Silence {
    /// A new silence from `now` for `duration_ms`, with a random id.
    pub fn new(
        matchers: Vec<Matcher>,
        now: i64,
        duration_ms: i64,
        created_by: String,
        comment: String,
    ) -> Result<Silence, SilenceError> {
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if duration_ms <= 0 {
            return Err(SilenceError::NotPositive);
        }
        if duration_ms > MAX_SILENCE_MS {
            return Err(SilenceError::TooLong);
        }
        Ok(Silence {
            id: new_id(),
            matchers,
            starts_at: now,
            ends_at: now.saturating_add(duration_ms),
            created_by,
            comment,
        })
    }

    /// Whether it is in force at wall-clock `now`.
    pub(crate) fn active(&self, now: i64) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether it covers an alert of `rule` on `group`.
    pub(crate) fn covers(&self, rule: &str, group: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(rule, group))
    }
}

/// Whether `n` is muted by one of the `silences` at wall-clock `now`: every
/// alert it reports (the active ones while any is) is covered by an active silence.
pub(crate) fn mutes(silences: &[Silence], n: &Notification, now: i64) -> bool {
    let active: Vec<&Silence> = silences.iter().filter(|s| s.active(now)).collect();
    if active.is_empty() || n.alerts.is_empty() {
        return false;
    }
    let any_active = n.alerts.iter().any(|a| a.active);
    n.alerts
        .iter()
        .filter(|a| a.active || !any_active)
        .all(|a| active.iter().any(|s| s.covers(&a.rule, &a.group)))
}

/// 16 random hex digits.
fn new_id() -> String {
    let v: u64 = rand::random();
    format!("{v:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match() {
        let m = Matcher::parse("product=router-x").unwrap();
        assert!(m.matches("r", &g(&[("product", "router-x")])));
        assert!(!m.matches("r", &g(&[("product", "other")])));
        let ne = Matcher::parse("rule!=churn_rate").unwrap();
        assert!(ne.matches("complaint_rate", &g(&[])));
        assert!(!ne.matches("churn_rate", &g(&[])));
        assert_eq!(ne.to_string(), "rule!=churn_rate");
        assert!(Matcher::parse("nothing").is_err());
        assert!(Matcher::parse("=x").is_err());
        let absent = Matcher::parse("region=").unwrap();
        assert!(absent.matches("r", &g(&[("product", "p")])));
    }

    #[test]
    fn regex_matchers_are_refused_not_taken_literally() {
        for (m, op) in [
            ("product=~zz(z", "=~"),
            ("product!~router-.*", "!~"),
            (" rule =~ churn.*", "=~"),
        ] {
            let err = Matcher::parse(m).unwrap_err();
            assert_eq!(
                err,
                SilenceError::Regex {
                    matcher: m.to_string(),
                    op
                }
            );
            let msg = err.to_string();
            assert!(
                msg.contains("regular-expression matchers") && msg.contains("name!=value"),
                "{msg}"
            );
        }
        // `=~` inside a value is a value.
        let m = Matcher::parse("comment=a=~b").unwrap();
        assert_eq!((m.op, m.value.as_str()), (MatchOp::Eq, "a=~b"));
    }

    #[test]
    fn silences_expire() {
        let m = vec![Matcher::parse("rule=a").unwrap()];
        let s = Silence::new(m, 1000, 500, "me".into(), String::new()).unwrap();
        assert!(s.active(1000) && s.active(1499));
        assert!(!s.active(1500) && !s.active(999));
        assert_eq!(
            Silence::new(vec![], 0, 1, String::new(), String::new()),
            Err(SilenceError::NoMatchers)
        );
        // At most a year: "500000000y" saturated ends_at to i64::MAX.
        let m = vec![Matcher::parse("rule=a").unwrap()];
        assert!(Silence::new(m.clone(), 0, MAX_SILENCE_MS, String::new(), String::new()).is_ok());
        assert_eq!(
            Silence::new(m, 0, i64::MAX, String::new(), String::new()),
            Err(SilenceError::TooLong)
        );
    }
}
