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
    "routing_key",
    "api_key",
    "apikey",
    "authorization",
];

/// Whether a configuration key (any table's, the last part of a path)
/// holds a credential: named like one ([`is_secret`]) and not the name of
/// where it is read from (`secret_env`, `admin_token_file`: a variable's
/// or a file's name, which an error must show).
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.trim_matches('"').to_ascii_lowercase();
    is_secret(&k) && !k.ends_with("_env") && !k.ends_with("_file")
}

/// The line of `text` holding byte `at` when it is inside a multi-line
/// string (`"""` or `'''`) whose key names a credential
/// ([`is_secret_key`]): a syntax error there must not quote it.
pub(crate) fn secret_continuation(text: &str, at: usize) -> Option<&str> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    // Where the multi-line string open at the line's start began, if one is.
    let mut open: Option<(usize, &str)> = None;
    let mut i = 0;
    let head = &text[..line_start];
    while i < head.len() {
        let rest = &head[i..];
        match open {
            Some((_, q)) if rest.starts_with(q) => {
                open = None;
                i += q.len();
            }
            Some(_) => i += rest.chars().next().map_or(1, char::len_utf8),
            None => {
                if let Some(q) = ["\"\"\"", "'''"].into_iter().find(|q| rest.starts_with(q)) {
                    open = Some((i, q));
                    i += q.len();
                } else if rest.starts_with('#') {
                    // A comment runs to the end of its line.
                    i += rest.find('\n').unwrap_or(rest.len());
                } else {
                    i += rest.chars().next().map_or(1, char::len_utf8);
                }
            }
        }
    }
    let (opened_at, _) = open?;
    let key_line_start = text[..opened_at].rfind('\n').map_or(0, |i| i + 1);
    let key = text[key_line_start..opened_at]
        .trim_end()
        .strip_suffix('=')?
        .trim();
    is_secret_key(key).then(|| &text[line_start..line_end])
}

/// `value` with every credential-named key's value ([`is_secret_key`])
/// replaced by [`REDACTED`] and every URL string as [`url_shown`] shows
/// it, at any depth: a table or array an error quotes whole.
pub(crate) fn redact_value(value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::String(s) if s.contains("://") => toml::Value::String(url_shown(s)),
        toml::Value::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        toml::Value::String(REDACTED.to_string())
                    } else {
                        redact_value(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        toml::Value::Array(a) => toml::Value::Array(a.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

/// Whether the property `key` holds a credential (case-insensitive).
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
}

/// Text that may quote configuration lines (a TOML parser's excerpt, a
/// table written back) as an error may show it: every URL in it as
/// [`url_shown`] shows it, and the value of every `key = value` whose key
/// names a credential ([`is_secret`]) replaced by [`REDACTED`].
pub(crate) fn redact_text(text: &str) -> String {
    redact_assignments(&redact_urls(text))
}

/// Every `scheme://…` in `text` as [`url_shown`] shows it.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |j| j + 1);
        let end = rest[i + 3..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |j| i + 3 + j);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&url_shown(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The value of every `key = value` in `text` whose key names a credential
/// ([`is_secret_key`]) replaced by [`REDACTED`]: a quoted string (escapes
/// and triple quotes understood; one not closed in `text` to its end), an
/// array or inline table (to its closing bracket), or a bare word.
fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let after = &after[1..];
        out.push_str(before);
        out.push('=');
        let key = before.trim_end();
        let key = match key.strip_suffix('"') {
            Some(k) => k.rsplit('"').next().unwrap_or(""),
            None => key
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .next()
                .unwrap_or(""),
        };
        if key.is_empty() || !is_secret_key(key) || after.starts_with('=') {
            rest = after;
            continue;
        }
        let value_start = after.len() - after.trim_start().len();
        out.push_str(&after[..value_start]);
        let value = &after[value_start..];
        let (quote, end) = value_extent(value);
        out.push_str(quote);
        out.push_str(REDACTED);
        out.push_str(quote);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// The length of the TOML value `value` starts with, and the quote it
/// opens with (`""` when none): a string (escapes and triple quotes
/// understood; one not closed runs to the end of its line, or of `value`
/// for a triple-quoted one), an array or inline table (to its closing
/// bracket), or a bare word.
fn value_extent(value: &str) -> (&'static str, usize) {
    const TRIPLE: [&str; 2] = ["\"\"\"", "'''"];
    for q in TRIPLE {
        if let Some(body) = value.strip_prefix(q) {
            let end = body.find(q).map_or(value.len(), |j| 2 * q.len() + j);
            return (q, end);
        }
    }
    let line_end = value.find('\n').unwrap_or(value.len());
    let mut chars = value.char_indices();
    match chars.next() {
        Some((_, '"')) => {
            let mut escaped = false;
            for (i, c) in chars {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => return ("\"", i + 1),
                    '\n' => return ("\"", i),
                    _ => {}
                }
            }
            ("\"", value.len())
        }
        Some((_, '\'')) => (
            "'",
            value[1..line_end].find('\'').map_or(line_end, |j| j + 2),
        ),
        Some((_, open @ ('[' | '{'))) => {
            let close = if open == '[' { ']' } else { '}' };
            let mut depth = 0i32;
            for (i, c) in value.char_indices() {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth -= 1;
                    if depth == 0 {
                        return ("", i + 1);
                    }
                }
            }
            ("", value.len())
        }
        _ => (
            "",
            value
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | '}' | ']'))
                .unwrap_or(value.len()),
        ),
    }
}

/// A URL as a message may quote it: its user information, query values and
/// token-like path segments (8 characters or more mixing letters and
/// digits, as a receiver's failure detail hides them) replaced by
/// [`REDACTED`]. Works on text that does not parse as a URL too.
pub(crate) fn url_shown(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (before_query, query) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let mut out = String::from(scheme);
    match authority.rfind('@') {
        Some(i) => {
            out.push_str(REDACTED);
            out.push_str(&authority[i..]);
        }
        None => out.push_str(authority),
    }
    let path: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if crate::secret::is_path_token(seg) {
                REDACTED
            } else {
                seg
            }
        })
        .collect();
    out.push_str(&path.join("/"));
    if let Some(sep) = query.chars().next() {
        out.push(sep);
        let pairs: Vec<String> = query[1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !v.is_empty() => format!("{k}={REDACTED}"),
                _ => kv.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
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
    fn a_quoted_url_hides_its_credentials_query_values_and_path_tokens() {
        assert_eq!(
            url_shown("ftp://user:PDPASSWORD777@127.0.0.1:19101/pd4?key=ANOTHERSECRET88&v=2"),
            "ftp://**REDACTED**@127.0.0.1:19101/pd4?key=**REDACTED**&v=**REDACTED**"
        );
        assert_eq!(
            url_shown("https://hooks.example.com/services/T0/B0/x9Kq2LmN8pQr4StU6vWx"),
            "https://hooks.example.com/services/T0/B0/**REDACTED**"
        );
        assert_eq!(url_shown("nowhere"), "nowhere");
        assert_eq!(url_shown("http://x/hook"), "http://x/hook");
        assert_eq!(
            url_shown("TOKEN@host/p#frag=1"),
            "**REDACTED**@host/p#frag=**REDACTED**"
        );
    }

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
