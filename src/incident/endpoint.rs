//! A receiver made ready to deliver: its secrets, its URL, and its own HTTP
//! client — timeouts and whom it trusts for TLS.
//!
//! Built once per receiver when the incident manager opens, before the
//! delivery worker ([`super::delivery`]) starts. TLS is always verified unless
//! the operator turns it off (`tls_skip_verify`, logged as a WARN): against
//! Mozilla's roots compiled in (`tls_roots = "bundled"`), the operating
//! system's store (`"system"`), and/or the PEM certificates of `ca_file`, for
//! receivers behind a private or company CA.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{ReceiverConfig, ReceiverKind, TlsRoots};
use crate::secret::Secret;

use super::delivery::{ReceiverRt, Sink};
use super::{policy, receivers, IncidentError};

// === impl ReceiverRt ===

impl ReceiverRt {
    /// The runtime form of a configured receiver: secrets read, client built;
    /// `console` is where console receivers write.
    pub(crate) fn from_config(
        r: &ReceiverConfig,
        console: Option<&Arc<Mutex<Box<dyn Write + Send>>>>,
    ) -> Result<ReceiverRt, IncidentError> {
        let secret = load_secret(&r.name, r.secret_env.as_deref(), r.secret_file.as_deref())?;
        let routing_key = load_secret(
            &r.name,
            r.routing_key_env.as_deref(),
            r.routing_key_file.as_deref(),
        )?;
        if r.signature == crate::config::SignatureScheme::StandardWebhooks {
            tracing::warn!(
                receiver = %r.name,
                "signature = \"standard-webhooks\" now sends X-Crisiswatch-Signature too (the contract has it on every signed request): the same as \"both\""
            );
        }
        let d = &r.delivery;
        let sink = match (r.kind, console) {
            (ReceiverKind::Console, Some(c)) => Sink::Console(Arc::clone(c)),
            _ => {
                let url = if r.kind == ReceiverKind::Alertmanager {
                    receivers::alertmanager_url(&r.url)
                } else {
                    r.url.clone()
                };
                Sink::Http {
                    client: http_client(r)?,
                    url,
                }
            }
        };
        Ok(ReceiverRt {
            name: r.name.clone(),
            kind: r.kind,
            sink,
            secret,
            signature: r.signature,
            routing_key,
            backoff: policy::Backoff::new(d),
            max_age_ms: d.max_age.as_ms(),
            breaker_failures: d.breaker_failures,
            breaker_cooldown_ms: d.breaker_cooldown.as_ms(),
            resend_ms: d.resend_interval.as_ms(),
            generator_url: None,
            max_body: r.max_body_bytes,
        })
    }
}

fn load_secret(
    receiver: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, IncidentError> {
    Secret::load(env, file).map_err(|source| IncidentError::Secret {
        receiver: receiver.to_string(),
        source,
    })
}

/// The receiver's own HTTP client: its timeout for connect and response, and
/// its TLS trust (`tls_roots`, `ca_file`) — or none with `tls_skip_verify`,
/// which is logged as a WARN. Redirects are not followed.
pub fn http_client(r: &ReceiverConfig) -> Result<reqwest::Client, IncidentError> {
    let timeout = r.delivery.timeout.0;
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A redirect is never followed: reqwest would turn the POST into a
        // bodiless GET on 301/302/303 (and a 2xx there would count as
        // delivered), or carry the routing key and signatures to another
        // host on 307/308. A 3xx is a failure that names where it points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crisiswatch/", env!("CARGO_PKG_VERSION")));
    if r.tls_skip_verify {
        tracing::warn!(
            receiver = %r.name,
            "TLS certificate verification is OFF for this receiver (tls_skip_verify): anyone on the path can read and forge its notifications. For a private CA set ca_file instead."
        );
        b = b.danger_accept_invalid_certs(true);
    } else {
        b = match r.tls_roots {
            TlsRoots::Bundled => b.tls_built_in_native_certs(false),
            TlsRoots::System => b.tls_built_in_webpki_certs(false),
            TlsRoots::None => b.tls_built_in_root_certs(false),
        };
        if let Some(path) = &r.ca_file {
            for cert in ca_certificates(&r.name, path)? {
                b = b.add_root_certificate(cert);
            }
        }
    }
    b.build().map_err(|source| IncidentError::Client {
        receiver: r.name.clone(),
        source,
    })
}

/// The certificates of a PEM file; at least one.
fn ca_certificates(
    receiver: &str,
    path: &Path,
) -> Result<Vec<reqwest::Certificate>, IncidentError> {
    let err = |reason: String| IncidentError::CaFile {
        receiver: receiver.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}
