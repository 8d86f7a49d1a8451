//! Routing: which routes take an alert (by rule, severity and group labels),
//! which grouping labels make its incident, and which receivers hear of it.
//!
//! Sits at the entrance of the incident stage: the lifecycle asks the
//! [`Router`] for every alert that fires or escalates. Routes are tried in
//! order; the first that matches takes the alert, and so do the following ones
//! while the matching route says `continue = true` (Alertmanager's model,
//! flattened to a list).

use std::collections::BTreeSet;

use crate::alert::{Labels, State, Transition};
use crate::config::{Config, Severity, ValueMatch};

use crate::config::RouteConfig;

/// The implicit route when `[[incidents.routes]]` is empty.
pub(crate) const DEFAULT_ROUTE: &str = "default";

/// One compiled route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// Name, part of the incident key.
    pub(crate) name: String,
    /// Rules taken; empty = all.
    pub(crate) rules: Vec<String>,
    /// Lowest severity taken.
    pub(crate) min_severity: Option<Severity>,
    /// Label matchers, all of which must hold.
    pub(crate) matchers: Vec<(String, ValueMatch)>,
    /// Grouping labels; `None`: each alert is its own incident.
    pub(crate) group_by: Option<Vec<String>>,
    /// Event-time wait before the open, ms.
    pub(crate) group_window_ms: i64,
    /// Event time an open incident gathers changes into one update, ms.
    pub(crate) group_interval_ms: i64,
    /// Receiver names (already expanded: every receiver when the config lists none).
    pub(crate) receivers: Vec<String>,
    /// Keep matching after this route.
    pub(crate) continue_: bool,
}

/// An alert that fired or escalated and that no route takes
/// ([`Router::matching`] found none): it opens no incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unrouted {
    /// Its rule.
    pub(crate) rule: String,
    /// Its slice.
    pub(crate) group: Labels,
    /// `firing` or `escalated`.
    pub(crate) state: State,
    /// Its severity.
    pub(crate) severity: Severity,
}

impl Unrouted {
    /// The unrouted alert of transition `t`.
    pub(crate) fn of(t: &Transition) -> Unrouted {
        Unrouted {
            rule: t.rule.clone(),
            group: t.group.clone(),
            state: t.state,
            severity: t.severity,
        }
    }
}

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

// === impl Router ===

impl Router {
    /// Compiles `cfg.incidents.routes`, or the implicit default route (every
    /// alert its own incident, every receiver, no wait) when there are none.
    pub(crate) fn new(cfg: &Config) -> Router {
        let all: Vec<String> = cfg.receivers.iter().map(|r| r.name.clone()).collect();
        let compile = |r: &RouteConfig| Route {
            name: r.name.clone(),
            rules: r.rules.clone(),
            min_severity: r.min_severity,
            matchers: r
                .matchers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            group_by: r.group_by.clone(),
            group_window_ms: r.group_window.as_ms(),
            group_interval_ms: r.group_interval.as_ms(),
            receivers: if r.receivers.is_empty() {
                all.clone()
            } else {
                r.receivers.clone()
            },
            continue_: r.continue_,
        };
        let mut routes: Vec<Route> = cfg.incidents.routes.iter().map(compile).collect();
        if routes.is_empty() {
            routes.push(Route {
                name: DEFAULT_ROUTE.to_string(),
                rules: Vec::new(),
                min_severity: None,
                matchers: Vec::new(),
                group_by: None,
                group_window_ms: 0,
                group_interval_ms: 0,
                receivers: all,
                continue_: false,
            });
        }
        Router { routes }
    }

    /// Every route.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// A route by name.
    pub(crate) fn get(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Indices of the routes that take an alert of `rule` at `severity` on `group`.
    pub(crate) fn matching(&self, rule: &str, severity: Severity, group: &Labels) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if r.accepts(rule, severity, group) {
                out.push(i);
                if !r.continue_ {
                    break;
                }
            }
        }
        out
    }
}

// === impl Route ===

impl Route {
    /// Whether this route takes the alert. A matcher on a label the alert's
    /// group lacks sees it absent: an equality fails, a `{ not = … }` holds
    /// (`crisiswatch check` names a matcher on a label none of the route's
    /// rules carries: `config::advice`).
    pub(crate) fn accepts(&self, rule: &str, severity: Severity, group: &Labels) -> bool {
        if !self.rules.is_empty() && !self.rules.iter().any(|r| r == rule) {
            return false;
        }
        if self.min_severity.is_some_and(|m| severity < m) {
            return false;
        }
        self.matchers.iter().all(|(label, m)| {
            let v = if label == "rule" {
                Some(rule)
            } else {
                group
                    .iter()
                    .find(|(k, _)| k == label)
                    .map(|(_, v)| v.as_str())
            };
            m.admits(v)
        })
    }

    /// The grouping labels of an alert in this route: the `group_by` labels
    /// (`rule` is the rule name; a missing label is ""), or, without
    /// `group_by`, the rule and the whole group.
    pub(crate) fn grouping(&self, rule: &str, group: &Labels) -> Labels {
        let lookup = |label: &str| -> String {
            if label == "rule" {
                return rule.to_string();
            }
            group
                .iter()
                .find(|(k, _)| k == label)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        match &self.group_by {
            Some(labels) => labels.iter().map(|l| (l.clone(), lookup(l))).collect(),
            None => {
                let mut out = vec![("rule".to_string(), rule.to_string())];
                for (k, v) in group {
                    // An attribute named like a label already there (`rule`)
                    // gets `attr_` in front: a JSON object of the labels kept
                    // the last of two `rule`s, the attribute's value, and
                    // lost the rule's name.
                    let mut name = k.clone();
                    while out.iter().any(|(n, _)| *n == name) {
                        name.insert_str(0, "attr_");
                    }
                    out.push((name, v.clone()));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_routes: &str) -> Config {
        let text = format!(
            r#"
[[receivers]]
name = "a"
kind = "console"
[[receivers]]
name = "b"
kind = "console"
{toml_routes}
"#
        );
        Config::from_toml_str(&text, &std::collections::HashMap::new()).unwrap()
    }

    fn g(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_route_takes_everything_to_every_receiver() {
        let r = Router::new(&cfg(""));
        assert_eq!(r.matching("x", Severity::Info, &g(&[])), vec![0]);
        let route = &r.routes()[0];
        assert_eq!(route.receivers, vec!["a", "b"]);
        assert_eq!(
            route.grouping("x", &g(&[("product", "p")])),
            g(&[("rule", "x"), ("product", "p")])
        );
        // An attribute named `rule` does not shadow the rule's name.
        assert_eq!(
            route.grouping("x", &g(&[("rule", "shadow"), ("attr_rule", "y")])),
            g(&[
                ("rule", "x"),
                ("attr_rule", "shadow"),
                ("attr_attr_rule", "y")
            ])
        );
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let r = Router::new(&cfg(r#"
[[incidents.routes]]
name = "pager"
min_severity = "critical"
match = { region = "eu" }
receivers = ["b"]
continue = true
[[incidents.routes]]
name = "churn"
rules = []
match = { rule = "churn_rate" }
group_by = ["region"]
[[incidents.routes]]
name = "rest"
group_by = ["product", "region"]
receivers = ["a"]
"#));
        let eu = g(&[("product", "p"), ("region", "eu")]);
        assert_eq!(
            r.matching("complaint_rate", Severity::Critical, &eu),
            vec![0, 2]
        );
        assert_eq!(
            r.matching("complaint_rate", Severity::Warning, &eu),
            vec![2]
        );
        assert_eq!(r.matching("churn_rate", Severity::Warning, &eu), vec![1]);
        let us = g(&[("region", "us")]);
        assert_eq!(
            r.matching("complaint_rate", Severity::Critical, &us),
            vec![2]
        );
        assert_eq!(
            r.routes()[2].grouping("social_spike", &g(&[("product", "p")])),
            g(&[("product", "p"), ("region", "")])
        );
    }
}

/// The internal partition (`0..partitions`) of the incident group of route
/// `route` with grouping `labels`: a stable hash (SipHash-1-3 under fixed
/// keys), the same on every instance and build.
pub fn incident_partition(route: &str, labels: &Labels, partitions: u32) -> u32 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_key(b"crisiswatch-incd");
    h.write(route.as_bytes());
    h.write_u8(0xff);
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write_u8(0xfe);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    ((h.finish() >> 32).wrapping_mul(u64::from(partitions.max(1))) >> 32) as u32
}

/// The incident groups one instance keeps: those whose
/// [`incident_partition`] it owns.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    partitions: u32,
    owned: BTreeSet<u32>,
}

impl Ownership {
    /// The groups of partitions `owned` among `partitions`.
    pub(crate) fn new(partitions: u32, owned: impl IntoIterator<Item = u32>) -> Self {
        Ownership {
            partitions: partitions.max(1),
            owned: owned.into_iter().collect(),
        }
    }

    /// Whether incident partition `p` is kept here.
    pub(crate) fn owns_partition(&self, p: u32) -> bool {
        self.owned.contains(&p)
    }

    /// Whether the incident group of `route` with `labels` is kept here.
    pub(crate) fn owns(&self, route: &str, labels: &Labels) -> bool {
        self.owned.contains(&self.partition_of(route, labels))
    }

    /// The incident partition of the group of `route` with `labels`.
    pub(crate) fn partition_of(&self, route: &str, labels: &Labels) -> u32 {
        incident_partition(route, labels, self.partitions)
    }
}
