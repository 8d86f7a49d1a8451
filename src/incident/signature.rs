//! Request signatures of the incident webhooks (`docs/contract.md` §4): the
//! [Standard Webhooks](https://www.standardwebhooks.com/) headers, which a
//! receiver can check against replays, and the older `X-Crisiswatch-Signature`.
//!
//! The step between rendering and the network: the delivery worker signs the
//! exact bytes it sends. Standard Webhooks signs `{webhook-id}.{webhook-timestamp}.{body}`
//! with HMAC-SHA256 and sends
//!
//! ```text
//! webhook-id: msg_3f2a…            (the same on every retry of one notification)
//! webhook-timestamp: 1795168800    (Unix seconds of this attempt)
//! webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=
//! ```
//!
//! A receiver recomputes the HMAC, compares it in constant time, refuses a
//! timestamp further than its tolerance (5 minutes by default) from its own
//! clock, and can use `webhook-id` as an idempotency key. [`verify`] is that
//! check, for receivers written in Rust and for the tests.
//!
//! The key is the configured secret's bytes, or — for a secret written as
//! `whsec_<base64>`, the form Standard Webhooks libraries hand out — the
//! decoded bytes, so the same string configures crisiswatch and a stock
//! verifier. The legacy header keeps using the secret's bytes as they are.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The legacy signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub(crate) const LEGACY_HEADER: &str = "X-Crisiswatch-Signature";
/// Standard Webhooks: the message id, stable across retries.
pub(crate) const ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: Unix seconds of the attempt.
pub(crate) const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub(crate) const SIGNATURE_HEADER: &str = "webhook-signature";
/// The tolerance the Standard Webhooks libraries use: 5 minutes either side.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The prefix of secrets serialised the Standard Webhooks way.
const WHSEC: &str = "whsec_";

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp {0:?} is not Unix seconds")]
    BadTimestamp(String),
    /// The timestamp is too far from now: a replay, or clocks apart.
    #[error("webhook-timestamp is {skew_secs} s away from now, beyond the tolerance of {tolerance_secs} s (a replayed request?)")]
    OutsideTolerance {
        /// |now − timestamp|, seconds.
        skew_secs: u64,
        /// The tolerance, seconds.
        tolerance_secs: u64,
    },
    /// No `v1` signature in the header matches.
    #[error("no v1 signature matches the body (wrong secret, or the body was changed)")]
    NoMatch,
}

/// The HMAC key of the Standard Webhooks signature (see the module docs).
fn standard_key(secret: &Secret) -> Vec<u8> {
    let s = secret.expose();
    s.strip_prefix(WHSEC)
        .and_then(|b| B64.decode(b).ok())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| s.as_bytes().to_vec())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-Crisiswatch-Signature` value.
pub fn legacy(secret: &Secret, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac(secret.expose().as_bytes(), &[body]))
    )
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub(crate) fn standard(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac(
        &standard_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", B64.encode(mac))
}

/// The `webhook-id` of notification `seq` of `incident` to `receiver`:
/// `msg_` and 32 hex digits of a hash of the three, so it is the same on every
/// retry, after a restart and after `outbox retry`, and never contains a `.`.
pub(crate) fn message_id(receiver: &str, incident: &str, seq: u32) -> String {
    let mut h = Sha256::new();
    for part in [receiver.as_bytes(), incident.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(seq.to_be_bytes());
    format!("msg_{}", hex::encode(&h.finalize()[..16]))
}

/// The three Standard Webhooks headers of a request, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Checks a request the way a receiver should: every header present, the
/// timestamp within `tolerance_secs` of `now_secs` (either side), and one of
/// the `v1` signatures equal — compared in constant time — to the HMAC of
/// `id.timestamp.body` under `secret`. `body` must be the raw bytes received.
pub fn verify(
    secret: &Secret,
    headers: Signed<'_>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let id = headers.id.ok_or(VerifyError::MissingHeader(ID_HEADER))?;
    let ts_text = headers
        .timestamp
        .ok_or(VerifyError::MissingHeader(TIMESTAMP_HEADER))?;
    let sigs = headers
        .signature
        .ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(ts_text.to_string()))?;
    let skew_secs = now_secs.abs_diff(ts);
    if skew_secs > tolerance_secs {
        return Err(VerifyError::OutsideTolerance {
            skew_secs,
            tolerance_secs,
        });
    }
    let ts = ts.to_string();
    let expected = hmac(
        &standard_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    let mut ok = subtle::Choice::from(0);
    for sig in sigs.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        if let Ok(given) = B64.decode(b64) {
            ok |= given.as_slice().ct_eq(&expected);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = Secret::new("Jefe");
        assert_eq!(
            legacy(&s, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_matches_the_reference_libraries() {
        // The test vector of the Standard Webhooks reference libraries.
        let s = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = standard(
            &s,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verify_accepts_within_tolerance_and_refuses_replays_and_tampering() {
        let s = Secret::new("a-signing-secret-of-some-length");
        let body = br#"{"action":"open"}"#;
        let id = message_id("hook", "route/p=1/1000", 1);
        let sig = format!("v1,bm90IGl0 {}", standard(&s, &id, 1_000_000, body));
        let h = Signed {
            id: Some(&id),
            timestamp: Some("1000000"),
            signature: Some(&sig),
        };
        assert_eq!(verify(&s, h, body, 1_000_299, 300), Ok(()));
        assert_eq!(verify(&s, h, body, 999_701, 300), Ok(()));
        assert!(matches!(
            verify(&s, h, body, 1_000_301, 300),
            Err(VerifyError::OutsideTolerance { skew_secs: 301, .. })
        ));
        assert_eq!(
            verify(&s, h, b"{\"action\":\"resolve\"}", 1_000_000, 300),
            Err(VerifyError::NoMatch)
        );
        let other = Signed {
            id: Some("msg_other"),
            ..h
        };
        assert_eq!(
            verify(&s, other, body, 1_000_000, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&Secret::new("another"), h, body, 1_000_000, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&s, Signed { id: None, ..h }, body, 1_000_000, 300),
            Err(VerifyError::MissingHeader(ID_HEADER))
        );
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = message_id("hook", "r/p=1/1", 2);
        assert_eq!(a, message_id("hook", "r/p=1/1", 2));
        assert_ne!(a, message_id("hook", "r/p=1/1", 3));
        assert_ne!(a, message_id("hook2", "r/p=1/1", 2));
        assert_ne!(message_id("ab", "c", 1), message_id("a", "bc", 1));
        assert!(a.starts_with("msg_") && a.len() == 36 && !a.contains('.'));
    }
}
