//! Configuration: one TOML file with the engine settings, sources, rules,
//! receivers and the incident stage ([`IncidentsConfig`], [`DeliveryConfig`]).
//!
//! Loading is one pipeline: parse TOML → interpolate `${VAR}` in string values
//! ([`interpolate`]) → deserialize into these structs (unknown keys are
//! errors) → [`Config::validate`], which collects *every* problem with its key
//! path and bad value. `crisiswatch check` prints them all; every other command
//! refuses to start on any of them. Defaults are named `default_*` functions
//! with the reason for their value.

mod advice;
pub mod bounds;
mod incidents;
pub mod interpolate;
mod load;
pub(crate) use load::MORE_ERRORS;
pub mod properties;
mod rules;
mod scale_out;
mod server;
mod settings;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use advice::advice;
pub(crate) use advice::{did_you_mean, threshold_reach, unreachable_thresholds, value_range};
pub use incidents::{DeliveryConfig, IncidentsConfig, ReceiverConfig, RouteConfig};
pub use interpolate::{Env, ProcessEnv};
pub use properties::KafkaProperties;
pub use rules::*;
pub use scale_out::ScaleOutConfig;
pub use server::*;
pub use settings::*;

/// Shards when `engine.shards` is not set: 64, enough to spread over the
/// cores of a large machine.
pub const DEFAULT_SHARDS: u32 = 64;

/// The example configuration, embedded so `crisiswatch demo` runs anywhere.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/crisiswatch.toml");

// === errors ===

/// One configuration problem: where, what value, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `rules[2].window`.
    pub(crate) path: String,
    /// The offending value as written (after interpolation), or empty.
    pub(crate) value: String,
    /// What is wrong and how to fix it.
    pub(crate) message: String,
    /// `value` is not a string in the file (a number, a table): shown as
    /// written, without quotes.
    pub(crate) literal: bool,
}

impl ConfigError {
    /// A new error. The value of a librdkafka credential
    /// (`sources.kafka.properties."sasl.password"`, …) is shown as
    /// `**REDACTED**`, and a URL's (`….url`, `…_url`) credentials, query
    /// values and path tokens are ([`properties::url_shown`]).
    pub(crate) fn new(
        path: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let path = path.into();
        let raw: String = value.into();
        let value = Self::shown(&path, raw.clone());
        let mut message: String = message.into();
        // The parser's message may quote the value itself ("invalid type:
        // integer `31415926`"): hidden there as in `value`.
        if value != raw && !raw.is_empty() {
            message = message.replace(&raw, &value);
        }
        // A message or a value may quote lines of the file (a syntax
        // error's excerpt, an unknown table written back): URLs and
        // credential-named keys in them are hidden too.
        let message = properties::redact_text(&message);
        let value = properties::redact_text(&value);
        ConfigError {
            path,
            value,
            message,
            literal: false,
        }
    }

    /// Marks the value as written without quotes (not a string in the file).
    pub(crate) fn literal(mut self, literal: bool) -> Self {
        self.literal = literal;
        self
    }

    /// `value` as an error at `path` may show it: a librdkafka credential
    /// redacted, a URL's credentials, query values and path tokens hidden.
    pub(crate) fn shown(path: &str, value: String) -> String {
        if let Some(key) = path.strip_prefix("sources.kafka.properties") {
            if properties::is_secret(key) {
                return properties::REDACTED.to_string();
            }
        }
        // Any key named like a credential (`secret = "…"` written where
        // `secret_env` was meant, a `routing_key`), not a variable's or a
        // file's name.
        let last = path.rsplit('.').next().unwrap_or(path);
        let last = last.split('[').next().unwrap_or(last);
        if !value.is_empty() && properties::is_secret_key(last) {
            return properties::REDACTED.to_string();
        }
        // A URL may carry credentials (user, password, a token in its query
        // or path): the error goes to logs, so those parts are hidden.
        if path.ends_with(".url") || path.ends_with("_url") {
            return properties::url_shown(&value);
        }
        value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        if self.value.is_empty() {
            write!(f, "{path}: {}", self.message)
        } else if self.literal && !self.value.contains('\n') {
            write!(f, "{path} = {}: {}", self.value, self.message)
        } else {
            write!(f, "{path} = {:?}: {}", self.value, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not valid.
    #[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

// === durations ===

/// A duration written as a string such as `"30s"`, `"15m"`, `"1h 30m"`, `"500ms"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole milliseconds (saturating).
    pub(crate) fn as_ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    /// From milliseconds.
    pub(crate) const fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// From whole seconds.
    pub(crate) const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// From whole minutes.
    pub(crate) const fn mins(m: u64) -> Self {
        Dur(Duration::from_secs(m * 60))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Days, hours, minutes, seconds and milliseconds (`"31d"`, `"1h 30m"`,
/// `"500ms"`): never months or years, whose lengths humantime fixes at 30.44
/// and 365.25 days, so that a value comes back as a user would write it
/// (`"40d"`, not `"1month 9days 13h 26m 24s"`). Parses back to the same value.
impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let ms = self.0.subsec_millis();
        let sub_ms = self.0.subsec_nanos() % 1_000_000;
        if sub_ms != 0 {
            // Not a whole number of milliseconds: humantime says it exactly.
            return write!(f, "{}", humantime::format_duration(self.0));
        }
        let parts = [
            (secs / 86_400, "d"),
            (secs / 3600 % 24, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
            (u64::from(ms), "ms"),
        ];
        let mut first = true;
        for (n, unit) in parts {
            if n > 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{n}{unit}")?;
                first = false;
            }
        }
        if first {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl std::str::FromStr for Dur {
    type Err = String;

    /// A duration as the configuration writes it ("30s", "15m", "1h 30m",
    /// "0"), refusing `M` (a month, one shift key from a minute) and any part
    /// of a millisecond: the command line's durations parse the same way.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        if let Some(why) = ambiguous_unit(s) {
            return Err(format!("invalid duration {s:?}: {why}"));
        }
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            let e = e.to_string();
            // humantime lists every unit it knows, months and microseconds
            // too, which crisiswatch refuses: name only the ones it takes.
            let e = e.split("supported units").next().unwrap_or(&e).trim_end_matches([',', ' ', '(']).to_string();
            format!("invalid duration {s:?} ({e}); units: {UNITS}; write e.g. \"30s\", \"15m\", \"1h 30m\"")
        })?;
        // Whatever the unit ("0.5ms", "1.0005s", "nanos"): no part of a
        // millisecond, which would be cut without a word.
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!(
                "invalid duration {s:?}: crisiswatch counts time in whole milliseconds"
            ));
        }
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurVisitor)
    }
}

/// A duration is a string with its unit; a bare number (`window = 60`) is
/// refused with what to write instead of serde's "expected a string".
struct DurVisitor;

impl DurVisitor {
    fn bare<E: serde::de::Error>(n: &dyn fmt::Display) -> E {
        E::custom(format!(
            "a duration is a string with its unit: write e.g. \"{n}s\" or \"{n}m\" (a bare number has none)"
        ))
    }
}

impl serde::de::Visitor<'_> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"30s\", \"15m\" or \"1h 30m\"")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Dur, E> {
        Err(Self::bare(&n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Dur, E> {
        Err(Self::bare(&n))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Dur, E> {
        Err(Self::bare(&n))
    }
}

/// The byte offset of the first `%` in `url` that two hex digits do not
/// follow: the URL parser takes it, but Alertmanager refuses an alert whose
/// `generatorURL` has one (422: "must be of type uri"), and with it the page.
pub(crate) fn stray_percent(url: &str) -> Option<usize> {
    let b = url.as_bytes();
    (0..b.len()).find(|&i| {
        b[i] == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// `url` with every stray `%` ([`stray_percent`]) written `%25`.
pub(crate) fn escape_stray_percent(url: &str) -> std::borrow::Cow<'_, str> {
    if stray_percent(url).is_none() {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 4);
    for (i, c) in url.char_indices() {
        if c == '%' && stray_percent(&url[i..]) == Some(0) {
            out.push_str("%25");
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What `check` says of a link with a stray `%`.
pub(crate) const STRAY_PERCENT: &str = "has a `%` that two hex digits do not follow: write `%25` for a percent sign (Alertmanager refuses an alert whose link is not a valid URI, and the page with it)";

/// Units the duration parser takes that a configuration almost never means:
/// `M` is a month there, one shift key away from `m` (a minute), and units
/// below a millisecond would be cut to whole milliseconds (crisiswatch's
/// clock) without a word.
fn ambiguous_unit(s: &str) -> Option<&'static str> {
    let units = s
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace() || c == '.')
        .filter(|u| !u.is_empty());
    for u in units {
        match u {
            "M" => {
                return Some(
                    "\"M\" is a month; write \"m\" for minutes (or \"30d\", \"months\" for months)",
                )
            }
            "ns" | "nsec" | "us" | "usec" | "µs" => {
                return Some("crisiswatch counts time in whole milliseconds; write \"ms\" or more")
            }
            _ => {}
        }
    }
    None
}

/// The units a duration takes (what a parse error names).
const UNITS: &str =
    "ms, s, m, h, d, w (written out: msec, sec, min, hours, days, weeks; months of 30.44 and years of 365.25 days)";

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

// === top level ===

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Event-time, dedup and memory settings of the core.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The HTTP listener for `/metrics` and the admin API.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where events come from in `crisiswatch run`.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// The synthetic stream of `crisiswatch demo`.
    #[serde(default)]
    pub demo: DemoConfig,
    /// The alerting rules: an indicator over a sliding window per group, and thresholds.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Where incidents are sent.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// How alerts become incidents and reach the receivers: outbox, progress updates, routes.
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// Durable engine state of the live service (checkpoints).
    #[serde(default)]
    pub state: StateConfig,
}

#[cfg(test)]
mod tests;
