//! Checks of the `[[receivers]]`: unique names, URLs the HTTP client can
//! send to, no HTTP settings on a `console` receiver, TLS trust that can
//! work, and a body limit with room for one alert.

use super::super::settings::TlsRoots;
use super::super::{ConfigError, ReceiverConfig, ReceiverKind};

/// Checks every receiver, adding what is wrong to `errs`.
pub(super) fn validate(receivers: &[ReceiverConfig], errs: &mut Vec<ConfigError>) {
    let mut rnames = std::collections::HashSet::new();
    for (i, r) in receivers.iter().enumerate() {
        let p = format!("receivers[{i}]");
        if r.name.is_empty() || !rnames.insert(r.name.as_str()) {
            errs.push(ConfigError::new(
                format!("{p}.name"),
                &r.name,
                "receiver names must be non-empty and unique",
            ));
        }
        if r.kind != ReceiverKind::Console && !r.url.is_empty() {
            // Parsed as the HTTP client will: a URL it cannot send to (a
            // space in the host, a port past 65535) is refused here, not
            // retried for ever as if the receiver were down.
            let problem = match reqwest::Url::parse(&r.url) {
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    Some("must be an http:// or https:// URL".to_string())
                }
                Ok(u) if u.host().is_none() => Some("the URL has no host".to_string()),
                Ok(_) => None,
                Err(e) => Some(format!("not a valid http:// or https:// URL ({e})")),
            };
            if let Some(why) = problem {
                errs.push(ConfigError::new(format!("{p}.url"), &r.url, why));
            }
        }
        if r.kind == ReceiverKind::Console {
            // It prints: an address or secret set on it means another
            // kind was meant (and a secret would be read for nothing).
            for (key, set) in [
                ("url", !r.url.is_empty()),
                ("secret_env", r.secret_env.is_some()),
                ("secret_file", r.secret_file.is_some()),
                ("routing_key_env", r.routing_key_env.is_some()),
                ("routing_key_file", r.routing_key_file.is_some()),
                ("ca_file", r.ca_file.is_some()),
                ("tls_skip_verify", r.tls_skip_verify),
                (
                    "tls_roots",
                    r.tls_roots != crate::config::settings::TlsRoots::default(),
                ),
            ] {
                if set {
                    errs.push(ConfigError::new(
                        format!("{p}.{key}"),
                        "",
                        "a console receiver prints to standard output and takes no address, secret or TLS setting (another kind meant?)",
                    ));
                }
            }
        }
        if r.kind != ReceiverKind::Console {
            validate_receiver_tls(&p, r, errs);
        }
        validate_receiver_body(&p, r, errs);
    }
}

/// A receiver's body limit: room for the incident's fields and one alert.
fn validate_receiver_body(p: &str, r: &ReceiverConfig, errs: &mut Vec<ConfigError>) {
    if r.max_body_bytes < 16 * 1024 {
        errs.push(ConfigError::new(
            format!("{p}.max_body_bytes"),
            r.max_body_bytes.to_string(),
            "must be at least 16384 (one alert's evidence and the incident's fields)",
        ));
    }
}

/// TLS settings of a receiver: verification off excludes the trust settings,
/// and `tls_roots = "none"` needs a `ca_file`.
fn validate_receiver_tls(p: &str, r: &ReceiverConfig, errs: &mut Vec<ConfigError>) {
    let ca = r.ca_file.as_ref().map(|f| f.display().to_string());
    if r.tls_skip_verify && (ca.is_some() || r.tls_roots != TlsRoots::Bundled) {
        errs.push(ConfigError::new(
            format!("{p}.tls_skip_verify"),
            "true",
            "turns certificate verification off, so ca_file and tls_roots would be ignored: remove tls_skip_verify (a private CA only needs ca_file)",
        ));
    }
    if r.tls_roots == TlsRoots::None && ca.is_none() {
        errs.push(ConfigError::new(
            format!("{p}.tls_roots"),
            "none",
            "trusts nothing without a ca_file: set ca_file, or tls_roots = \"bundled\" or \"system\"",
        ));
    }
    if ca.as_deref() == Some("") {
        errs.push(ConfigError::new(
            format!("{p}.ca_file"),
            "",
            "must name a PEM file",
        ));
    }
}
