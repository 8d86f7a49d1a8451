//! librdkafka properties of `[sources.kafka.properties]`, passed through
//! unchanged to the consumer and the dead-letter producer, and printed or
//! serialised only with their secrets redacted.
//!
//! Credentials (`sasl.password`, `ssl.key.password`, `ssl.key.pem`,
//! `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, …) belong in
//! the environment (`"${KAFKA_SASL_PASSWORD}"`, interpolated at load) and
//! never appear in `Debug` output, logs, configuration errors or a serialised
//! configuration: [`is_secret`] decides by the property's name.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize, Serializer};

/// What a redacted value prints as.
pub(crate) const REDACTED: &str = "**REDACTED**";

/// Name fragments of librdkafka properties that hold credentials: every
/// `*.password`, `sasl.oauthbearer.client.secret`, private keys
/// (`ssl.key.pem`, `ssl_key`), `sasl.oauthbearer.config` (may embed a secret)
/// and `sasl.jaas.config`, and anything named like a token or a secret.
const SECRET_FRAGMENTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "credential",
    "ssl.key.pem",
    "ssl_key",
    "private",
    "sasl.oauthbearer.config",
    "sasl.jaas.config",
];

/// Whether the property `key` holds a credential (case-insensitive).
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
}

/// `value`, or [`REDACTED`] when `key` names a credential.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

/// The pass-through librdkafka properties. Reads like the map it wraps;
/// `Debug` and `Serialize` redact the credentials.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// The properties with credentials replaced by [`REDACTED`].
    pub(crate) fn redacted(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| (k.as_str(), shown(k, v)))
            .collect()
    }
}

impl Deref for KafkaProperties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for KafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for KafkaProperties {
    fn from(m: BTreeMap<String, String>) -> Self {
        KafkaProperties(m)
    }
}

impl<'a> IntoIterator for &'a KafkaProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_or_serialise() {
        let p: KafkaProperties = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "svc-crisiswatch"),
            ("sasl.password", "pw-1"),
            ("ssl.key.password", "pw-2"),
            ("ssl.keystore.password", "pw-3"),
            ("sasl.oauthbearer.client.secret", "pw-4"),
            ("ssl.key.pem", "pw-5"),
            ("sasl.oauthbearer.config", "pw-6"),
            ("SASL.PASSWORD", "pw-7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>()
        .into();
        let printed = format!(
            "{p:?} {} {}",
            serde_json::to_string(&p).unwrap(),
            toml::to_string(&p).unwrap()
        );
        for i in 1..=7 {
            assert!(!printed.contains(&format!("pw-{i}")), "{printed}");
        }
        assert!(printed.contains("SCRAM-SHA-512") && printed.contains("svc-crisiswatch"));
        // What the clients get is unchanged.
        assert_eq!(p.get("sasl.password").map(String::as_str), Some("pw-1"));
        assert_eq!((&p).into_iter().count(), 10);
    }
}
