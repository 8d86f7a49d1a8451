//! The `[server]` section: the HTTP listener of `/metrics`, the console and
//! the admin API, its limits and tokens, and the address responders reach
//! the console at.

use serde::{Deserialize, Serialize};

use super::*;

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for `/metrics`, `/healthz` and the admin API, e.g. `127.0.0.1:9464`. Empty disables.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Cap on exported indicator series per rule; groups beyond it are counted, not exported.
    #[serde(default = "default_max_series_per_rule")]
    pub max_series_per_rule: usize,
    /// Environment variable holding the bearer token for admin (state-changing)
    /// endpoints such as reload and silences. Without a token they are refused.
    #[serde(default)]
    pub(crate) admin_token_env: Option<String>,
    /// File holding the admin bearer token (instead of `admin_token_env`; not both).
    #[serde(default)]
    pub(crate) admin_token_file: Option<std::path::PathBuf>,
    /// Environment variable holding the bearer token of the read endpoints that
    /// expose customer data (`/api/v1/alerts` with sample event ids and slices,
    /// `/api/v1/rules`, `GET /api/v1/silences`); the admin token is accepted too.
    /// Without a read token they are open on a loopback `listen` address and
    /// refused (401) on any other.
    #[serde(default)]
    pub(crate) read_token_env: Option<String>,
    /// File holding the read token (instead of `read_token_env`; not both).
    #[serde(default)]
    pub(crate) read_token_file: Option<std::path::PathBuf>,
    /// Connections served at once; further clients wait in the accept queue
    /// until one closes (counted in `crisiswatch_http_connections_limited_total`).
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// A client must send a request's headers within this, or its connection
    /// is closed: a slow-loris client cannot hold a connection slot.
    #[serde(default = "default_header_read_timeout")]
    pub(crate) header_read_timeout: Dur,
    /// Longest time to answer one request; beyond it the answer is 408.
    #[serde(default = "default_request_timeout")]
    pub(crate) request_timeout: Dur,
    /// Largest request head (request line and headers), bytes (at least 8192).
    #[serde(default = "default_max_header_bytes")]
    pub(crate) max_header_bytes: usize,
    /// Largest request body, bytes (a silence is a few hundred); larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub(crate) max_body_bytes: usize,
    /// The console's address as responders reach it (`http://` or
    /// `https://`, e.g. behind a proxy), like Prometheus'
    /// `--web.external-url`: Alertmanager alerts link to it as their
    /// `generatorURL` when the rule has no dashboard or runbook. Default:
    /// `http://` and `listen` (an unspecified IP replaced by this host's
    /// name).
    #[serde(default)]
    pub(crate) external_url: Option<String>,
}

impl ServerConfig {
    /// Where Alertmanager alerts link as their `generatorURL` (with a
    /// trailing `/`): `external_url` when set (the operator says where the
    /// console is), else the console this process serves, if it serves one.
    pub(crate) fn generator_url(&self, serves_console: bool) -> Option<String> {
        if self.external_url.is_none() && !serves_console {
            return None;
        }
        self.console_url().map(|u| format!("{u}/"))
    }

    /// The console's base URL ([`ServerConfig::external_url`], else one
    /// made from `listen`; `None` when neither is set, or `listen` takes any
    /// free port — port 0 names no address anyone can open), with no
    /// trailing `/`.
    pub(crate) fn console_url(&self) -> Option<String> {
        if let Some(u) = &self.external_url {
            return Some(u.trim_end_matches('/').to_string());
        }
        let addr: std::net::SocketAddr = self.listen.parse().ok()?;
        if addr.port() == 0 {
            return None;
        }
        let host = if addr.ip().is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string())
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        Some(format!("http://{host}:{}", addr.port()))
    }
}

/// 127.0.0.1:9464: loopback only by default; 9464 is the conventional exporter port of the project.
fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}
/// 1,000 series per rule keeps a dashboard and Prometheus responsive.
fn default_max_series_per_rule() -> usize {
    1000
}
/// 256 connections: a handful of scrapers and operators need a few; the rest
/// is headroom well below the default limit of 1,024 open files.
fn default_max_connections() -> usize {
    256
}
/// 10 seconds: Prometheus' default scrape timeout; a real client sends its
/// headers in milliseconds.
fn default_header_read_timeout() -> Dur {
    Dur::secs(10)
}
/// 30 seconds: every endpoint answers from memory in milliseconds, a reload in seconds.
fn default_request_timeout() -> Dur {
    Dur::secs(30)
}
/// 16 KiB: browsers and Prometheus send well under 8 KiB of headers.
fn default_max_header_bytes() -> usize {
    16 * 1024
}
/// 64 KiB: the largest request body is a silence, a few hundred bytes.
fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_series_per_rule: default_max_series_per_rule(),
            admin_token_env: None,
            admin_token_file: None,
            read_token_env: None,
            read_token_file: None,
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            request_timeout: default_request_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body_bytes(),
            external_url: None,
        }
    }
}
