//! Loading (parse, interpolate, deserialize) and validation of a config file.

use std::path::Path;

use super::*;

/// Largest `engine.max_event_bytes`: a held event addresses its strings with
/// 32-bit offsets (`event::OwnedEvent`), and no producer's event is this big.
const MAX_EVENT_BYTES_LIMIT: usize = 256 * 1024 * 1024;

mod deserialize;
mod receivers;
mod rule;
mod sources;
pub(crate) use deserialize::MORE_ERRORS;
use deserialize::{deserialize_all, lookup, node};
use rule::validate_rule;

// === loading and validation ===

impl Config {
    /// The rule names, comma-separated (for "unknown rule" errors).
    pub(crate) fn rule_names(&self) -> String {
        self.rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads, interpolates, deserializes and validates a config file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text, env)
    }

    /// Parses, interpolates, deserializes and validates config text.
    pub fn from_toml_str(text: &str, env: &dyn Env) -> Result<Config, LoadError> {
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
            let mut message = format!("not valid TOML: {}", e.to_string().trim());
            // The excerpt quotes the line the error is on: a line inside a
            // multi-line string whose key names a credential (a PEM key)
            // is not shown.
            if let Some(span) = e.span() {
                if let Some(line) = properties::secret_continuation(text, span.start) {
                    if !line.trim().is_empty() {
                        message = message.replace(line, properties::REDACTED);
                    }
                }
            }
            LoadError::Invalid(vec![ConfigError::new("", "", message)])
        })?;
        // The tree as written: an error shows a value that held `$` as it was
        // written (`${PD_URL}`), never what the environment put there (a
        // token in a URL, a secret in a description).
        let written = tree.clone();
        let as_written = |errors: Vec<ConfigError>| {
            LoadError::Invalid(
                errors
                    .into_iter()
                    .map(|mut e| {
                        // An error about the whole file (a closing note)
                        // quotes no value: `lookup` would give the file.
                        if e.path.is_empty() {
                            return e;
                        }
                        // A number or a boolean is shown as written, unquoted
                        // (`min_baseline = -3`, not `"-3"`).
                        if matches!(
                            node(&written, &e.path),
                            Some(
                                toml::Value::Integer(_)
                                    | toml::Value::Float(_)
                                    | toml::Value::Boolean(_)
                            )
                        ) {
                            e.literal = true;
                            // As written (`3.0`, not `3`) when it is the same number.
                            if let Some(w) = lookup(&written, &e.path).filter(|w| {
                                w.parse::<f64>()
                                    .ok()
                                    .is_some_and(|x| e.value.parse::<f64>() == Ok(x))
                            }) {
                                e.value = w;
                            }
                        }
                        if let Some(w) = lookup(&written, &e.path).filter(|w| w.contains('$')) {
                            // The message may quote the expanded value too
                            // (`invalid duration "…"`): put it back as written,
                            // whole, then each variable's part of it.
                            // A short value is put back only where the
                            // message quotes it (replacing "5" everywhere
                            // would mangle "at least 50"); a long one
                            // wherever it appears.
                            let put_back = |message: &mut String, v: &str, w: &str| {
                                if v.is_empty() {
                                    return;
                                }
                                if v.len() >= 3 {
                                    *message = message.replace(v, w);
                                } else {
                                    for (open, close) in [("\"", "\""), ("`", "`"), ("'", "'")] {
                                        *message = message.replace(
                                            &format!("{open}{v}{close}"),
                                            &format!("{open}{w}{close}"),
                                        );
                                    }
                                }
                            };
                            if e.value != properties::REDACTED {
                                put_back(&mut e.message, &e.value.clone(), &w);
                            }
                            for (reference, v) in interpolate::references(&w, env) {
                                put_back(&mut e.message, &v, &reference);
                            }
                            if e.value != properties::REDACTED {
                                // Redacted as any value there is (a URL's
                                // password written beside a `${HOST}`).
                                e.value = properties::redact_text(&ConfigError::shown(&e.path, w));
                            }
                            // What was put back is as written: hidden as
                            // the rest of the message is.
                            e.message = properties::redact_text(&e.message);
                        } else if let Some(w) = lookup(&written, &e.path).filter(|w| {
                            // A duration is shown as written ("1y"), not as
                            // the checks normalised it ("365d 6h").
                            *w != e.value
                                && humantime::parse_duration(w).is_ok()
                                && (e.value == "0" || humantime::parse_duration(&e.value).is_ok())
                        }) {
                            e.value = w;
                        }
                        e
                    })
                    .collect(),
            )
        };
        let mut errors = Vec::new();
        interpolate::interpolate_tree(&mut tree, env, &mut errors);
        // An interpolation error does not hide the others: the rest is
        // deserialized too (errors at the same key left out: they are the
        // interpolation's).
        let config = match deserialize_all(&tree) {
            Ok(config) if errors.is_empty() => config,
            Ok(config) => {
                // Only variables left unexpanded: the checks of the tables
                // they do not touch run as well (an unset `${PD_URL}` does
                // not hide an inverted threshold).
                let taken = deserialize::Refused::taken(errors.iter().map(|e| e.path.clone()));
                let checked: Vec<ConfigError> = config
                    .validate()
                    .into_iter()
                    .filter(|e| taken.untouched(&e.path))
                    .collect();
                if let LoadError::Invalid(checked) = as_written(checked) {
                    errors.extend(checked);
                }
                return Err(LoadError::Invalid(errors));
            }
            Err(refused) => {
                // The checks across keys of the tables the refused values
                // do not touch (an inverted threshold in another rule): a
                // type error does not hide them. The others are checked
                // once the type errors are fixed.
                // Unset variables stay as written: what they touch waits too.
                let taken = deserialize::Refused::taken(errors.iter().map(|e| e.path.clone()));
                let checked: Vec<ConfigError> = refused
                    .config
                    .as_ref()
                    .map(|c| c.validate())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| refused.untouched(&e.path) && taken.untouched(&e.path))
                    .collect();
                let found: Vec<ConfigError> = refused
                    .errors
                    .into_iter()
                    .chain(checked)
                    .filter(|d| !errors.iter().any(|i| i.path == d.path))
                    .collect();
                let LoadError::Invalid(found) = as_written(found) else {
                    return Err(LoadError::Invalid(errors));
                };
                errors.extend(found);
                return Err(LoadError::Invalid(errors));
            }
        };
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(as_written(errors))
        }
    }

    /// Checks everything serde cannot: names, time arithmetic, threshold order.
    /// Returns every problem found (empty when valid).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let e = &self.engine;
        if e.dedup_max_ids == 0 {
            errs.push(ConfigError::new(
                "engine.dedup_max_ids",
                "0",
                "must be at least 1",
            ));
        }
        if !(1..=1000).contains(&e.clock_jump_confirm) {
            errs.push(ConfigError::new(
                "engine.clock_jump_confirm",
                e.clock_jump_confirm.to_string(),
                "must lie in [1, 1000]",
            ));
        }
        if e.max_groups_per_rule == 0 {
            errs.push(ConfigError::new(
                "engine.max_groups_per_rule",
                "0",
                "must be at least 1",
            ));
        }
        if e.max_customers_per_group == 0 {
            errs.push(ConfigError::new(
                "engine.max_customers_per_group",
                "0",
                "must be at least 1",
            ));
        }
        if !(64..=MAX_EVENT_BYTES_LIMIT).contains(&e.max_event_bytes) {
            errs.push(ConfigError::new(
                "engine.max_event_bytes",
                e.max_event_bytes.to_string(),
                "must be between 64 and 268435456 (256 MiB)",
            ));
        }
        validate_range(
            "engine.score_range",
            e.score_range,
            MAX_SCORE_BOUND,
            &mut errs,
        );
        validate_range("engine.sentiment_range", e.sentiment_range, 1.0, &mut errs);
        if e.workers > 256 {
            errs.push(ConfigError::new(
                "engine.workers",
                e.workers.to_string(),
                "must be at most 256 (0: the cores available)",
            ));
        }
        if !(1..=4096).contains(&e.shards) {
            errs.push(ConfigError::new(
                "engine.shards",
                e.shards.to_string(),
                "must be between 1 and 4096",
            ));
        }
        if e.idle_timeout.0.is_zero() {
            errs.push(ConfigError::new(
                "engine.idle_timeout",
                "0",
                "must be positive",
            ));
        }
        if !self.server.listen.is_empty()
            && self.server.listen.parse::<std::net::SocketAddr>().is_err()
        {
            errs.push(ConfigError::new(
                "server.listen",
                &self.server.listen,
                "not a socket address (host:port with an IP, e.g. 127.0.0.1:9464)",
            ));
        }
        if let Some(u) = &self.server.external_url {
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
            if !ok {
                errs.push(ConfigError::new(
                    "server.external_url",
                    u,
                    "not an http:// or https:// URL with a host",
                ));
            } else if stray_percent(u).is_some() {
                errs.push(ConfigError::new("server.external_url", u, STRAY_PERCENT));
            }
        }
        let sv = &self.server;
        for (what, env, file) in [
            ("admin", &sv.admin_token_env, &sv.admin_token_file),
            ("read", &sv.read_token_env, &sv.read_token_file),
        ] {
            let key = format!("server.{what}_token_env");
            match (env.as_deref(), file.as_deref()) {
                (Some(_), Some(_)) => errs.push(ConfigError::new(
                    key,
                    env.clone().unwrap_or_default(),
                    format!("set either {what}_token_env or {what}_token_file, not both"),
                )),
                (Some(""), None) => errs.push(ConfigError::new(
                    key,
                    "",
                    "names no environment variable (an empty ${VAR}?)",
                )),
                _ => {}
            }
        }
        let e = &self.engine;
        // Every limit has a ceiling: a number past what the machine can give
        // (2^62 connections made the HTTP listener panic at start, leaving
        // no metrics, readiness or admin API while the pipeline ran on).
        for (key, v, min, max) in [
            ("server.max_connections", sv.max_connections, 1, 65_536),
            (
                "server.max_header_bytes",
                sv.max_header_bytes,
                8192,
                1 << 20,
            ),
            ("server.max_body_bytes", sv.max_body_bytes, 1024, 64 << 20),
            (
                "server.max_series_per_rule",
                sv.max_series_per_rule,
                0,
                10_000_000,
            ),
            ("engine.sample_event_ids", e.sample_event_ids, 0, 1000),
            ("engine.dedup_max_ids", e.dedup_max_ids, 0, 1_000_000_000),
            (
                "engine.max_groups_per_rule",
                e.max_groups_per_rule,
                0,
                1_000_000_000,
            ),
            (
                "engine.max_customers_per_group",
                e.max_customers_per_group,
                0,
                100_000_000,
            ),
        ] {
            if v < min {
                errs.push(ConfigError::new(
                    key,
                    v.to_string(),
                    format!("must be at least {min}"),
                ));
            } else if v > max {
                errs.push(ConfigError::new(
                    key,
                    v.to_string(),
                    format!("must be at most {max}"),
                ));
            }
        }
        // Shorter, dead letters would go before anyone could retry them, and
        // the applied ledger that keeps a re-read from paging twice with them.
        if self.incidents.retention.0 < std::time::Duration::from_secs(3600) {
            errs.push(ConfigError::new(
                "incidents.retention",
                self.incidents.retention.to_string(),
                "must be at least 1h: dead letters and the applied ledger (which keeps a restart from paging twice) are kept this long",
            ));
        }
        for (key, v) in [
            ("server.header_read_timeout", sv.header_read_timeout),
            ("server.request_timeout", sv.request_timeout),
        ] {
            if v.0.is_zero() {
                errs.push(ConfigError::new(key, "0", "must be positive"));
            }
        }
        if self.server.max_series_per_rule == 0 {
            errs.push(ConfigError::new(
                "server.max_series_per_rule",
                "0",
                "must be at least 1",
            ));
        }
        self.validate_demo(&mut errs);
        super::incidents::validate(self, &mut errs);
        self.validate_sources(&mut errs);
        super::bounds::validate(self, &mut errs);
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("rules[{i}].name"),
                    &r.name,
                    "duplicate rule name",
                ));
            }
            validate_rule(i, r, &mut errs);
        }
        receivers::validate(&self.receivers, &mut errs);
        errs
    }
}

/// A `[min, max]` value range: finite, ordered and within `±limit`.
fn validate_range(key: &str, [min, max]: [f64; 2], limit: f64, errs: &mut Vec<ConfigError>) {
    let shown = format!("[{min}, {max}]");
    if !(min.is_finite() && max.is_finite()) {
        errs.push(ConfigError::new(
            key,
            shown,
            "bounds must be finite numbers",
        ));
    } else if min > max {
        errs.push(ConfigError::new(key, shown, "min must not exceed max"));
    } else if min < -limit || max > limit {
        errs.push(ConfigError::new(
            key,
            shown,
            format!("bounds must lie within [-{limit}, {limit}]"),
        ));
    }
}
