//! Secrets: values that must never appear in logs, `Debug` output or errors.
//!
//! Configuration never holds a secret itself; it names where to read it: an
//! environment variable (`*_env`) or a file (`*_file`, e.g. a mounted
//! Kubernetes secret). [`Secret`] prints as `**REDACTED**` everywhere, has no
//! `PartialEq` (an `==` would return early at the first differing byte), and
//! is compared with presented values only through [`Secret::matches`], in
//! constant time.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// URL path segments at least this long that mix letters and digits are
/// tokens (`/services/T0/B0/<token>`, `/api/webhooks/<id>/<token>`, a short
/// one such as `/hook/k3y9x2p1`), not route names (`/v2/enqueue`,
/// `/hooks/incident-webhook`). A route name with a digit in it
/// (`/alerts2024`) is hidden too: hiding more is the safe side.
pub(crate) const MIN_PATH_TOKEN: usize = 8;

/// Whether URL path segment `seg` is a token (see [`MIN_PATH_TOKEN`]): the
/// one rule that both the receivers' redaction of failure details and the
/// configuration errors' quoting of URLs apply.
pub(crate) fn is_path_token(seg: &str) -> bool {
    seg.chars().count() >= MIN_PATH_TOKEN
        && seg.bytes().any(|b| b.is_ascii_digit())
        && seg.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A secret string. `Debug` and `Display` print `**REDACTED**`; deliberately
/// not `PartialEq`: compare with [`Secret::matches`].
#[derive(Clone)]
pub struct Secret(String);

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The named environment variable is unset or empty.
    #[error("environment variable {0} is not set or empty")]
    EnvUnset(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("secret file {0} is empty")]
    EmptyFile(String),
}

impl Secret {
    /// Wraps a value (tests and generated tokens).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret from an environment variable.
    pub(crate) fn from_env(name: &str) -> Result<Self, SecretError> {
        Self::from_env_value(name, std::env::var(name).ok())
    }

    /// [`Secret::from_env`] of the value `v` the variable has: white space
    /// alone is no secret (a token of spaces matched no request, and the
    /// status said one was configured), whatever else it holds is kept as
    /// written.
    fn from_env_value(name: &str, v: Option<String>) -> Result<Self, SecretError> {
        match v {
            Some(v) if !v.trim().is_empty() => Ok(Secret(v)),
            _ => Err(SecretError::EnvUnset(name.to_string())),
        }
    }

    /// Reads a secret from a file; surrounding whitespace is trimmed.
    pub(crate) fn from_file(path: &Path) -> Result<Self, SecretError> {
        let v = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.display().to_string(),
            source,
        })?;
        let v = v.trim();
        if v.is_empty() {
            return Err(SecretError::EmptyFile(path.display().to_string()));
        }
        Ok(Secret(v.to_string()))
    }

    /// Reads from `env` if given, else from `file` if given; `Ok(None)` if neither.
    pub(crate) fn load(
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<Self>, SecretError> {
        match (env, file) {
            (Some(e), _) => Self::from_env(e).map(Some),
            (None, Some(f)) => Self::from_file(f).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The value, for the one place that must use it (signing, an auth header).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value (bearer tokens), through
    /// `subtle`. Both sides are hashed first, so neither the time nor an early
    /// length check tells an attacker how long the secret is.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        bool::from(a.as_slice().ct_eq(b.as_slice()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "**REDACTED** **REDACTED**");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter22"));
        assert!(!s.matches(""));
    }

    #[test]
    fn from_file_trims_and_rejects_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            Secret::from_file(&p),
            Err(SecretError::EmptyFile(_))
        ));
        assert!(Secret::from_env("CRISISWATCH_TEST_SURELY_UNSET_VAR").is_err());
        for blank in ["", " ", "\t\n"] {
            assert!(matches!(
                Secret::from_env_value("T", Some(blank.to_string())),
                Err(SecretError::EnvUnset(_))
            ));
        }
        let kept = Secret::from_env_value("T", Some(" a b ".to_string())).unwrap();
        assert_eq!(kept.expose(), " a b ");
    }
}
