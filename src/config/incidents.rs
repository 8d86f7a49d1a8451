//! Configuration of the incident stage: the `[incidents]` section (outbox
//! location, progress updates, routes) and the per-receiver `delivery` policy.
//! [`crate::incident`] only consumes these.
//!
//! Plain serde like the rest of [`crate::config`]: unknown keys are errors,
//! every default is a named function saying where its value comes from, and
//! [`validate`] (called from [`Config::validate`]) collects every problem with
//! its key path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Config, ConfigError, Dur, ReceiverKind, Severity, SignatureScheme, TlsRoots, ValueMatch,
};

/// One incident receiver.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name.
    pub(crate) name: String,
    /// Format and protocol.
    pub(crate) kind: ReceiverKind,
    /// Endpoint URL for the HTTP kinds. An empty URL (e.g. `"${CRISISWATCH_WEBHOOK_URL:-}"`
    /// with the variable unset) disables the receiver.
    #[serde(default)]
    pub url: String,
    /// Environment variable holding the signing secret: every request is then
    /// signed as `signature` says.
    #[serde(default)]
    pub(crate) secret_env: Option<String>,
    /// File holding the signing secret (instead of `secret_env`).
    #[serde(default)]
    pub(crate) secret_file: Option<std::path::PathBuf>,
    /// The signature headers of a signed request: `X-Crisiswatch-Signature`
    /// always (`docs/contract.md` §4), and the Standard Webhooks ones too
    /// with `"both"` (default; `"standard-webhooks"` means the same), not
    /// with `"crisiswatch"`.
    #[serde(default)]
    pub(crate) signature: SignatureScheme,
    /// PagerDuty: environment variable holding the integration (routing) key.
    #[serde(default)]
    pub(crate) routing_key_env: Option<String>,
    /// PagerDuty: file holding the integration (routing) key.
    #[serde(default)]
    pub(crate) routing_key_file: Option<std::path::PathBuf>,
    /// Accept any TLS certificate: no verification at all, so anyone on the path
    /// can read and forge the traffic. Only for test setups; logged as a WARN at
    /// start and shown in `/api/v1/status`. For a private CA use `ca_file`.
    #[serde(default)]
    pub(crate) tls_skip_verify: bool,
    /// PEM file with the CA certificate(s) that issue this receiver's server
    /// certificate (a company or private CA), trusted in addition to `tls_roots`.
    #[serde(default)]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// The built-in trust roots that verify this receiver's certificate:
    /// `"bundled"` (Mozilla's roots, compiled in), `"system"` (the operating
    /// system's store, e.g. `/etc/ssl/certs`, or `SSL_CERT_FILE`), or `"none"`
    /// (only `ca_file`).
    #[serde(default)]
    pub(crate) tls_roots: TlsRoots,
    /// Timeouts, retries, dead-lettering and the circuit breaker.
    #[serde(default)]
    pub(crate) delivery: DeliveryConfig,
    /// Whether a responder's acknowledgement (`crisiswatch incident ack`, the
    /// admin API, the console) is sent to this receiver as an `acknowledge`
    /// notification: PagerDuty's `event_action: "acknowledge"` (default on
    /// for `pagerduty`), the generic webhook's `action: "acknowledge"`
    /// (opt-in: off unless set, so existing webhook consumers see only the
    /// contract's open, update and resolve). Not for `alertmanager` and
    /// `console`.
    #[serde(default)]
    pub(crate) acknowledge: Option<bool>,
    /// Largest request body, bytes (at least 16384). `generic` and
    /// `pagerduty`: when every alert's evidence does not fit, the `alerts`
    /// list keeps the headline alert, then the active ones, then the rest,
    /// and `alerts_omitted` counts what was left out. `alertmanager`: a push
    /// is split into as many requests as it takes (an alert larger than
    /// this alone goes in a request of its own). For `pagerduty` at most
    /// 500,000 bytes whatever is set: PagerDuty refuses events over 512,000.
    #[serde(default = "default_max_body_bytes")]
    pub(crate) max_body_bytes: usize,
}

/// 512 KiB: well under the 1 MB many web servers (nginx's
/// `client_max_body_size`) accept by default. PagerDuty's own, smaller limit
/// applies to `pagerduty` receivers whatever is set.
fn default_max_body_bytes() -> usize {
    512 * 1024
}

impl ReceiverConfig {
    /// Whether acknowledgements go to this receiver (`acknowledge`, else the
    /// kind's default: on for PagerDuty, off for the others).
    pub(crate) fn acknowledges(&self) -> bool {
        self.acknowledge
            .unwrap_or(self.kind == ReceiverKind::Pagerduty)
    }
}

/// The `[incidents]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Directory of the durable outbox (`outbox.sqlite`): notifications, open
    /// incidents and silences. Created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// An open incident gets a progress `update` (current value, peak,
    /// duration) this often, in event time. `"0"` disables progress updates.
    #[serde(default = "default_update_interval")]
    pub(crate) update_interval: Dur,
    /// How long `replay`, `demo` and shutdown wait for pending notifications
    /// before leaving them in the outbox for the next start.
    #[serde(default = "default_drain_timeout")]
    pub(crate) drain_timeout: Dur,
    /// Delivered, failed and muted notifications, dead letters (counted as
    /// pruned in `crisiswatch_outbox_dead_letters_pruned_total`) and the ledger
    /// of applied transitions are kept this long, then pruned (at start, and
    /// while running every eighth of this, between 1 minute and 1 hour). A
    /// dead letter's age counts from when it was dead-lettered; until then
    /// `crisiswatch outbox retry` can re-queue it.
    #[serde(default = "default_retention")]
    pub(crate) retention: Dur,
    /// Routes, in order: the first route whose matchers accept an alert takes
    /// it (and the next ones too while `continue = true`). Without routes,
    /// every alert is its own incident and goes to every receiver. An alert
    /// no route takes opens no incident: it is counted in
    /// `crisiswatch_alerts_unrouted_total` and logged once per rule.
    #[serde(default)]
    pub(crate) routes: Vec<RouteConfig>,
}

/// "crisiswatch-data": beside the working directory, where an operator looks first.
fn default_data_dir() -> String {
    "crisiswatch-data".to_string()
}
/// 30 minutes: the playbooks ask for regular stakeholder updates; every half
/// hour keeps them informed without paging noise.
fn default_update_interval() -> Dur {
    Dur::mins(30)
}
/// 30 seconds: long enough for a healthy receiver to take a backlog, short
/// enough that a stop is not held up by a dead one (its notifications stay queued).
fn default_drain_timeout() -> Dur {
    Dur::secs(30)
}
/// 7 days: a week of delivery history for `outbox list` and post-incident reviews.
fn default_retention() -> Dur {
    Dur::secs(7 * 24 * 3600)
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            data_dir: default_data_dir(),
            update_interval: default_update_interval(),
            drain_timeout: default_drain_timeout(),
            retention: default_retention(),
            routes: Vec::new(),
        }
    }
}

/// One route: which alerts, how they group into incidents, and where they go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name; part of every incident's `dedup_key`.
    pub(crate) name: String,
    /// Rules this route takes; empty takes every rule.
    #[serde(default)]
    pub(crate) rules: Vec<String>,
    /// Lowest alert severity this route takes; unset takes every severity.
    /// Checked when an alert fires and again when it escalates.
    #[serde(default)]
    pub(crate) min_severity: Option<Severity>,
    /// Matchers on the alert's group labels (its rule's `group_by`, and
    /// `rule`), all of which must hold: `{ region = "eu-west" }`,
    /// `{ product = ["a", "b"] }`, `{ segment = { not = "internal" } }`. On a
    /// label the alert lacks an equality fails and a `not` holds.
    #[serde(default, rename = "match")]
    pub(crate) matchers: BTreeMap<String, ValueMatch>,
    /// Alerts whose groups agree on these labels join one incident (like
    /// Alertmanager's `group_by`); `rule` names the alert's rule. A label an
    /// alert lacks counts as "". Unset: every alert is its own incident.
    #[serde(default)]
    pub(crate) group_by: Option<Vec<String>>,
    /// How long (event time) a new incident waits for more alerts of its group
    /// before the `open` goes out, so one crisis that trips several rules pages
    /// once with all their evidence. Alerts arriving later join with an `update`.
    #[serde(default = "default_group_window")]
    pub(crate) group_window: Dur,
    /// How long (event time) an open incident gathers changes — alerts
    /// joining, escalating, resolving — into one `update` (like
    /// Alertmanager's `group_interval`): a crisis that trips a rule on 60
    /// slices seconds apart sends one or two updates, not 60. An escalation
    /// that raises the incident's severity goes out at once (with what was
    /// gathered); the last alert resolving sends the `resolve` instead. "0s":
    /// only the changes of one instant are gathered.
    #[serde(default = "default_group_interval")]
    pub(crate) group_interval: Dur,
    /// Receivers (by name) that get this route's incidents; empty: every receiver.
    #[serde(default)]
    pub(crate) receivers: Vec<String>,
    /// Keep matching the routes after this one.
    #[serde(default, rename = "continue")]
    pub(crate) continue_: bool,
}

/// 2 minutes: rules watching one slice cross within a minute or two of each
/// other in a crisis; a longer wait delays the page more than it saves.
fn default_group_window() -> Dur {
    Dur::mins(2)
}

/// 1 minute: a crisis spreading over the slices of one incident trips them
/// seconds apart; one update a minute tells the responder as much as one per
/// slice, and an escalation does not wait.
fn default_group_interval() -> Dur {
    Dur::mins(1)
}

/// How one receiver is delivered to (`docs/contract.md` §4): the `delivery` table of a receiver.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one HTTP request (connect + response).
    #[serde(default = "default_timeout")]
    pub(crate) timeout: Dur,
    /// First retry delay; doubles with every failed attempt.
    #[serde(default = "default_backoff_initial")]
    pub(crate) backoff_initial: Dur,
    /// Longest retry delay.
    #[serde(default = "default_backoff_max")]
    pub(crate) backoff_max: Dur,
    /// Random spread of each delay, as a fraction: 0.2 = ±20 %.
    #[serde(default = "default_jitter")]
    pub(crate) jitter: f64,
    /// A notification not delivered this long after it was queued is dead-lettered:
    /// kept in the outbox, logged at ERROR, counted; `crisiswatch outbox retry` redelivers it.
    #[serde(default = "default_max_age")]
    pub(crate) max_age: Dur,
    /// Consecutive failed attempts that open the circuit breaker; 0 disables it.
    #[serde(default = "default_breaker_failures")]
    pub(crate) breaker_failures: u32,
    /// How long an open breaker waits before one trial request.
    #[serde(default = "default_breaker_cooldown")]
    pub(crate) breaker_cooldown: Dur,
    /// Alertmanager receivers: firing alerts are re-pushed this often (as
    /// Prometheus does), with `endsAt` four intervals ahead.
    #[serde(default = "default_resend_interval")]
    pub(crate) resend_interval: Dur,
}

/// 10 seconds: a webhook answers in milliseconds; 10 s is clearly dead, not slow.
fn default_timeout() -> Dur {
    Dur::secs(10)
}
/// 1 second, doubling: 1, 2, 4, … s.
fn default_backoff_initial() -> Dur {
    Dur::secs(1)
}
/// 5 minutes: a recovered receiver gets its backlog within 5 minutes.
fn default_backoff_max() -> Dur {
    Dur::mins(5)
}
/// ±20 %: enough to spread retries of many notifications apart.
fn default_jitter() -> f64 {
    0.2
}
/// 24 hours: after a day an incident notification is history, not news; an
/// operator decides whether to redeliver it.
fn default_max_age() -> Dur {
    Dur::secs(24 * 3600)
}
/// 5 consecutive failures: one blip does not trip it, a dead receiver does at once.
fn default_breaker_failures() -> u32 {
    5
}
/// 30 seconds between trial requests to a receiver that keeps failing.
fn default_breaker_cooldown() -> Dur {
    Dur::secs(30)
}
/// 1 minute: Prometheus' default `resend_delay`.
fn default_resend_interval() -> Dur {
    Dur::mins(1)
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: default_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            jitter: default_jitter(),
            max_age: default_max_age(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown(),
            resend_interval: default_resend_interval(),
        }
    }
}

/// Checks `[incidents]` and the receivers' incident settings; pushes every problem.
pub(super) fn validate(cfg: &Config, errs: &mut Vec<ConfigError>) {
    let inc = &cfg.incidents;
    if inc.data_dir.trim().is_empty() {
        errs.push(ConfigError::new(
            "incidents.data_dir",
            "",
            "must name a directory for the outbox",
        ));
    }
    let receiver_names: Vec<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
    let rule_names: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    for (i, r) in inc.routes.iter().enumerate() {
        let p = format!("incidents.routes[{i}]");
        let name_ok = !r.name.is_empty()
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok || !seen.insert(r.name.as_str()) {
            errs.push(ConfigError::new(
                format!("{p}.name"),
                &r.name,
                "route names must be unique and use letters, digits, `_` and `-`",
            ));
        }
        for (j, rule) in r.rules.iter().enumerate() {
            if !rule_names.contains(&rule.as_str()) {
                errs.push(ConfigError::new(
                    format!("{p}.rules[{j}]"),
                    rule,
                    "no rule has this name",
                ));
            }
        }
        for (j, rec) in r.receivers.iter().enumerate() {
            if !receiver_names.contains(&rec.as_str()) {
                errs.push(ConfigError::new(
                    format!("{p}.receivers[{j}]"),
                    rec,
                    "no receiver has this name",
                ));
            }
        }
        if let Some(g) = &r.group_by {
            let mut labels = std::collections::HashSet::new();
            for (j, l) in g.iter().enumerate() {
                if l.is_empty() || !labels.insert(l) {
                    errs.push(ConfigError::new(
                        format!("{p}.group_by[{j}]"),
                        l,
                        "grouping labels must be non-empty and unique",
                    ));
                }
            }
        }
        for (label, m) in &r.matchers {
            let empty = match m {
                ValueMatch::Is(v) => v.to_vec().is_empty(),
                ValueMatch::Not(n) => n.not.to_vec().is_empty(),
            };
            if empty {
                errs.push(ConfigError::new(
                    format!("{p}.match.{label}"),
                    "[]",
                    "needs at least one value",
                ));
            }
        }
    }
    for (i, r) in cfg.receivers.iter().enumerate() {
        let p = format!("receivers[{i}]");
        validate_delivery(&p, &r.delivery, errs);
        if r.secret_env.is_some() && r.secret_file.is_some() {
            errs.push(ConfigError::new(
                format!("{p}.secret_file"),
                r.secret_file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default(),
                "set either secret_env or secret_file, not both",
            ));
        }
        let signed = r.secret_env.is_some() || r.secret_file.is_some();
        if r.signature != super::SignatureScheme::Both && !signed {
            errs.push(ConfigError::new(
                format!("{p}.signature"),
                "",
                "chooses signature headers but nothing signs: set secret_env or secret_file",
            ));
        }
        if r.routing_key_env.is_some() && r.routing_key_file.is_some() {
            errs.push(ConfigError::new(
                format!("{p}.routing_key_file"),
                r.routing_key_file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default(),
                "set either routing_key_env or routing_key_file, not both",
            ));
        }
        let has_key = r.routing_key_env.is_some() || r.routing_key_file.is_some();
        if r.kind == ReceiverKind::Pagerduty && !r.url.is_empty() && !has_key {
            errs.push(ConfigError::new(
                format!("{p}.routing_key_env"),
                "",
                "a PagerDuty receiver needs its integration key: set routing_key_env or routing_key_file",
            ));
        }
        if r.kind != ReceiverKind::Pagerduty && has_key {
            errs.push(ConfigError::new(
                format!("{p}.routing_key_env"),
                "",
                "routing keys are for `kind = \"pagerduty\"` receivers only",
            ));
        }
        if r.acknowledge == Some(true)
            && matches!(r.kind, ReceiverKind::Alertmanager | ReceiverKind::Console)
        {
            errs.push(ConfigError::new(
                format!("{p}.acknowledge"),
                "true",
                "acknowledgements are sent to `pagerduty` (default) and `generic` (opt-in) receivers only",
            ));
        }
    }
}

fn validate_delivery(p: &str, d: &DeliveryConfig, errs: &mut Vec<ConfigError>) {
    for (key, v) in [
        ("timeout", d.timeout),
        ("backoff_initial", d.backoff_initial),
        ("backoff_max", d.backoff_max),
        ("max_age", d.max_age),
        ("breaker_cooldown", d.breaker_cooldown),
        ("resend_interval", d.resend_interval),
    ] {
        if v.0.is_zero() {
            errs.push(ConfigError::new(
                format!("{p}.delivery.{key}"),
                "0",
                "must be positive",
            ));
        }
    }
    // An Alertmanager alert ends four intervals after its last push: an
    // interval under a second let an open incident's alerts end before the
    // next re-push (a false all-clear, then a second page).
    if !d.resend_interval.0.is_zero() && d.resend_interval.as_ms() < 1000 {
        errs.push(ConfigError::new(
            format!("{p}.delivery.resend_interval"),
            d.resend_interval.to_string(),
            "must be at least 1s (an Alertmanager alert ends four intervals after its last push; Prometheus re-sends every minute)",
        ));
    }
    if d.backoff_max < d.backoff_initial {
        errs.push(ConfigError::new(
            format!("{p}.delivery.backoff_max"),
            d.backoff_max.to_string(),
            format!("must be at least backoff_initial ({})", d.backoff_initial),
        ));
    }
    if !(d.jitter.is_finite() && (0.0..1.0).contains(&d.jitter)) {
        errs.push(ConfigError::new(
            format!("{p}.delivery.jitter"),
            d.jitter.to_string(),
            "must be in [0, 1): a fraction such as 0.2 for ±20 %",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LoadError};

    fn errors(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, &std::collections::HashMap::new()) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(e)) => e.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_incident_setting_is_checked_with_its_path() {
        let errs = errors(
            r#"
[incidents]
data_dir = ""
[[incidents.routes]]
name = "a b"
rules = ["nope"]
receivers = ["ghost"]
group_by = ["product", "product"]
[[receivers]]
name = "pd"
kind = "pagerduty"
url = "https://events.pagerduty.com/v2/enqueue"
secret_env = "A"
secret_file = "/b"
delivery = { jitter = 1.5, timeout = "0", backoff_initial = "10s", backoff_max = "1s" }
[[receivers]]
name = "hook"
kind = "generic"
routing_key_env = "K"
[[receivers]]
name = "am"
kind = "alertmanager"
acknowledge = true
"#,
        );
        for want in [
            "incidents.data_dir",
            "incidents.routes[0].name = \"a b\"",
            "incidents.routes[0].rules[0] = \"nope\"",
            "incidents.routes[0].receivers[0] = \"ghost\"",
            "incidents.routes[0].group_by[1] = \"product\"",
            "receivers[0].secret_file = \"/b\"",
            "receivers[0].routing_key_env",
            "receivers[0].delivery.jitter = 1.5:",
            "receivers[0].delivery.timeout = \"0\"",
            "receivers[0].delivery.backoff_max = \"1s\"",
            "receivers[1].routing_key_env",
            "receivers[2].acknowledge = true:",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want}: {errs:#?}"
            );
        }
        assert_eq!(errs.len(), 12, "{errs:#?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let errs = errors("[incidents]\nupdate_intervall = \"1m\"\n");
        assert!(errs[0].contains("unknown field"), "{errs:?}");
    }
}
