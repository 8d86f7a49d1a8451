//! Keeps a receiver's secrets out of what a failed delivery reports.
//!
//! A failure's detail quotes the receiver's answer, and some receivers and
//! gateways echo the request in an error: the PagerDuty routing key would
//! then reach the WARN log line, the outbox's stored `last_error` and
//! `crisiswatch outbox list`. Every secret value the receiver holds — the
//! routing key, the signing secret (and the key inside a `whsec_` one), the
//! credentials of its URL (user, password and the Basic header they make,
//! long query values, token-like path segments) — is replaced by `**REDACTED**` in the detail
//! before it is logged or stored, the way a `Secret` prints.

use super::{ReceiverRt, Sink};
use crate::secret::is_path_token;

/// What a secret becomes, as `Secret` prints.
const MARK: &str = "**REDACTED**";
/// URL query values shorter than this are parameters (`v=2`, `format=json`),
/// not credentials: replacing them everywhere would garble the detail.
const MIN_QUERY_SECRET: usize = 8;

/// The secret values of one receiver, longest first.
#[derive(Debug)]
pub(super) struct Redactor {
    values: Vec<String>,
}

// === impl Redactor ===

impl Redactor {
    /// The secrets of `rt`: routing key, signing secret, and its URL's
    /// password (else its user name, `https://TOKEN@host`), query values
    /// of at least [`MIN_QUERY_SECRET`] characters and path segments that
    /// look like tokens ([`is_path_token`]) — each as written, and
    /// percent-decoded and JSON-escaped where that differs.
    pub(super) fn new(rt: &ReceiverRt) -> Redactor {
        let mut values = Vec::new();
        for secret in [&rt.secret, &rt.routing_key].into_iter().flatten() {
            let v = secret.expose();
            add(&mut values, v);
            if let Some(key) = v.strip_prefix("whsec_") {
                add(&mut values, key);
            }
        }
        if let Sink::Http { url, .. } = &rt.sink {
            if let Ok(u) = reqwest::Url::parse(url) {
                add(&mut values, u.password().unwrap_or(u.username()));
                // The HTTP client sends the URL's credentials as a Basic
                // `Authorization` header: a receiver that echoes the request
                // echoes them base64-encoded.
                if !u.username().is_empty() || u.password().is_some() {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let (user, pass) = (u.username(), u.password().unwrap_or(""));
                    for (a, b) in [
                        (user.to_string(), pass.to_string()),
                        (percent_decoded(user), percent_decoded(pass)),
                    ] {
                        let encoded = b64.encode(format!("{a}:{b}"));
                        if !values.contains(&encoded) {
                            values.push(encoded);
                        }
                    }
                }
                for (_, v) in u.query_pairs() {
                    if v.chars().count() >= MIN_QUERY_SECRET {
                        add(&mut values, &v);
                    }
                }
                for seg in u.path_segments().into_iter().flatten() {
                    if is_path_token(seg) {
                        add(&mut values, seg);
                    }
                }
            }
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    /// `text` with every secret replaced. `cut`: the text was cut short (the
    /// answer's read limit), so the beginning of a secret that ends it is
    /// replaced too.
    pub(super) fn apply(&self, text: &str, cut: bool) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MARK);
            }
        }
        if cut {
            let partial = self.values.iter().find_map(|v| {
                (1..v.len())
                    .rev()
                    .filter(|&n| v.is_char_boundary(n))
                    .find(|&n| out.ends_with(&v[..n]))
            });
            if let Some(n) = partial {
                out.truncate(out.len() - n);
                out.push_str(MARK);
            }
        }
        out
    }
}

/// Adds `v`, its percent-decoded and its JSON-escaped forms (not empty).
fn add(values: &mut Vec<String>, v: &str) {
    if v.is_empty() {
        return;
    }
    let decoded = percent_decoded(v);
    for form in [v.to_string(), decoded] {
        if let Ok(quoted) = serde_json::to_string(&form) {
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != form {
                values.push(escaped.to_string());
            }
        }
        values.push(form);
    }
}

/// `%XX` sequences decoded (lossy UTF-8); anything else as it is.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReceiverKind, SignatureScheme};
    use crate::secret::Secret;

    fn rt(url: &str, secret: Option<&str>, routing_key: Option<&str>) -> ReceiverRt {
        ReceiverRt {
            name: "r".into(),
            kind: ReceiverKind::Generic,
            sink: Sink::Http {
                client: reqwest::Client::new(),
                url: url.into(),
            },
            secret: secret.map(Secret::new),
            signature: SignatureScheme::default(),
            routing_key: routing_key.map(Secret::new),
            backoff: crate::incident::policy::Backoff::new(&Default::default()),
            max_age_ms: 1,
            breaker_failures: 1,
            breaker_cooldown_ms: 1,
            resend_ms: 1,
            generator_url: None,
            max_body: 1,
        }
    }

    #[test]
    fn every_secret_of_the_receiver_is_replaced() {
        let r = Redactor::new(&rt(
            "https://bot:p%40ss-w0rd@hooks.example.com/h?token=QUERYTOKEN123&v=2",
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Some("R0UTINGKEYSECRET0123456789abcdef"),
        ));
        let echo = r#"400: {"routing_key":"R0UTINGKEYSECRET0123456789abcdef","k":"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","full":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","url":"https://bot:p@ss-w0rd@x/?token=QUERYTOKEN123&v=2"}"#;
        let out = r.apply(echo, false);
        for secret in [
            "R0UTINGKEY",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "p@ss-w0rd",
            "QUERYTOKEN123",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert_eq!(out.matches(MARK).count(), 5, "{out}");
        // Short query values and the user name beside a password stay.
        assert!(out.contains("v=2") && out.contains("https://bot:"), "{out}");
    }

    #[test]
    fn the_basic_credentials_the_client_sends_are_replaced() {
        let r = Redactor::new(&rt("http://user:PASSWORDxyz@127.0.0.1:1/h", None, None));
        // What reqwest sends for that URL: `Basic base64(user:PASSWORDxyz)`.
        let echo = "500: authorization: Basic dXNlcjpQQVNTV09SRHh5eg==";
        assert_eq!(
            r.apply(echo, false),
            "500: authorization: Basic **REDACTED**"
        );
        let r = Redactor::new(&rt("http://bot:p%40ss@127.0.0.1:1/h", None, None));
        let decoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode("bot:p@ss")
        };
        assert!(!r.apply(&decoded, false).contains(&decoded));
    }

    #[test]
    fn a_token_in_the_url_path_is_replaced_and_route_names_stay() {
        let r = Redactor::new(&rt(
            "https://hooks.example.com/services/T0AAA1/B0BBB2/x9Kq2LmN8pQr4StU6vWx/v2/incident-webhook",
            None,
            None,
        ));
        let echo = "404: no route /services/T0AAA1/B0BBB2/x9Kq2LmN8pQr4StU6vWx/v2/incident-webhook";
        assert_eq!(
            r.apply(echo, false),
            "404: no route /services/T0AAA1/B0BBB2/**REDACTED**/v2/incident-webhook"
        );
        assert!(!is_path_token("incident-webhook-receiver"));
        assert!(!is_path_token("enqueue"));
        assert!(is_path_token("3f2c9a7e-1b4d-4c8e-9f00-123456789abc"));
        // A short token (8 characters) is one too; short route names are not.
        assert!(is_path_token("k3y9x2p1"));
        for route in ["v2", "api", "alerts", "hooks", "enqueue", "T0AAA1"] {
            assert!(!is_path_token(route), "{route}");
        }
    }

    #[test]
    fn a_token_in_the_user_name_and_a_secret_cut_short_are_replaced() {
        let r = Redactor::new(&rt("https://T0KEN-in-user@x.example/", None, None));
        assert_eq!(r.apply("bad T0KEN-in-user", false), "bad **REDACTED**");
        let r = Redactor::new(&rt("http://x/", None, Some("R0UTINGKEYSECRET")));
        // The answer's read limit cut the key: its beginning goes too.
        assert_eq!(
            r.apply("…\"routing_key\":\"R0UTING", true),
            "…\"routing_key\":\"**REDACTED**"
        );
        assert_eq!(
            r.apply("…\"routing_key\":\"R0UTING", false),
            "…\"routing_key\":\"R0UTING"
        );
        // Nothing to hide: the text as it is.
        let r = Redactor::new(&rt("http://x/", None, None));
        assert_eq!(r.apply("HTTP 400: nope", true), "HTTP 400: nope");
    }
}
