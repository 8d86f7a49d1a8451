//! The admin API's state: what `/api/v1/*` shows, and hot reload.
//!
//! An edge of the data flow next to `metrics`. The driver that owns the
//! [`Engine`] (demo, live service) publishes an [`ApiSnapshot`] once per batch;
//! the HTTP handlers in `http` only read it, so a request never touches the
//! engine. Reload requests (SIGHUP or `POST /api/v1/reload` with the admin
//! bearer token) travel to the driver through a channel; the driver re-reads
//! and validates the file and, only if it is valid, switches the engine to it
//! ([`Engine::reconfigure`]: unchanged rules keep their windows). A failed
//! reload keeps the running configuration and is reported in the log, the
//! `crisiswatch_config_*` metrics and `/api/v1/status`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Env};
use crate::engine::{Reconfigure, ReloadSummary};
use crate::event::format_ts;
use crate::incident::IncidentManager;
use crate::secret::Secret;
mod access;
pub(crate) mod history;
pub(crate) use access::set_access;
mod reload;
pub(crate) use reload::reload;
mod views;
pub(crate) use views::{snapshot, ApiSnapshot};

/// Errors setting up the admin state.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A metric could not be registered.
    #[error("cannot register admin metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The credentials of an `Authorization: Bearer <token>` header value; the
/// scheme is case-insensitive (RFC 7235), the token trimmed.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The outcome of the last reload, for `/api/v1/status`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub(crate) struct ReloadStatus {
    /// When it happened (wall clock, RFC 3339).
    pub(crate) at: Option<String>,
    /// Whether it succeeded.
    pub(crate) ok: bool,
    /// The error, if it failed (the previous configuration kept running).
    pub(crate) error: Option<String>,
    /// What changed, if it succeeded.
    pub(crate) summary: Option<ReloadSummary>,
    /// What changed among the incident receivers, if the process delivers incidents.
    pub(crate) receivers: Option<crate::incident::ReceiverChanges>,
    /// Settings the file changed that keep their startup values until a
    /// restart (`sources.kafka`, `server.listen`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) restart_needed: Vec<String>,
}

/// The settings a reload leaves as they were at the start, each as a JSON
/// value to compare: the Kafka source, the listener, the incident data
/// directory and retention, and durable state.
fn restart_only(cfg: &Config) -> Vec<(&'static str, serde_json::Value)> {
    let v = |x: serde_json::Result<serde_json::Value>| x.unwrap_or(serde_json::Value::Null);
    vec![
        ("sources.kafka", v(serde_json::to_value(&cfg.sources.kafka))),
        (
            "server.listen",
            serde_json::Value::from(cfg.server.listen.clone()),
        ),
        // The listener's limits and the metrics' series cap are set when
        // they start.
        (
            "server.max_connections",
            serde_json::Value::from(cfg.server.max_connections),
        ),
        (
            "server.max_header_bytes",
            serde_json::Value::from(cfg.server.max_header_bytes),
        ),
        (
            "server.max_body_bytes",
            serde_json::Value::from(cfg.server.max_body_bytes),
        ),
        (
            "server.header_read_timeout",
            v(serde_json::to_value(cfg.server.header_read_timeout)),
        ),
        (
            "server.request_timeout",
            v(serde_json::to_value(cfg.server.request_timeout)),
        ),
        (
            "server.max_series_per_rule",
            serde_json::Value::from(cfg.server.max_series_per_rule),
        ),
        (
            "incidents.data_dir",
            serde_json::Value::from(cfg.incidents.data_dir.clone()),
        ),
        (
            "incidents.retention",
            v(serde_json::to_value(cfg.incidents.retention)),
        ),
        ("state", v(serde_json::to_value(&cfg.state))),
        // The live engine's worker threads and state shards are laid out
        // when it starts (and checkpoints are cut by shard).
        (
            "engine.workers",
            serde_json::Value::from(cfg.engine.workers),
        ),
        ("engine.shards", serde_json::Value::from(cfg.engine.shards)),
    ]
}

/// A request to reload; the reply carries the outcome.
#[derive(Debug)]
pub(crate) struct ReloadRequest {
    /// Where to send the outcome (absent for SIGHUP).
    pub(crate) reply: Option<oneshot::Sender<Result<ReloadSummary, String>>>,
}

/// Admin state shared with the HTTP handlers.
#[derive(Debug)]
pub struct AdminState {
    started: Instant,
    /// Bearer token for state-changing endpoints; `None` refuses them all.
    token: Mutex<Option<Secret>>,
    snapshot: Mutex<ApiSnapshot>,
    reload_tx: Mutex<Option<mpsc::Sender<ReloadRequest>>>,
    config_hash: Mutex<String>,
    config_path: Mutex<Option<PathBuf>>,
    /// Receivers of the loaded configuration that skip TLS verification, so
    /// `/api/v1/status` shows what the start-up WARN said.
    tls_unverified: Mutex<Vec<String>>,
    /// The `[server]` section of the loaded configuration: the listener's limits.
    server: Mutex<crate::config::ServerConfig>,
    /// Who may read the endpoints that expose customer data.
    read_access: Mutex<ReadAccess>,
    /// Whether the listener is bound to a loopback address (set by `http::bind`).
    loopback: std::sync::atomic::AtomicBool,
    /// The address the listener is bound to (set by `http::bind`).
    listen: Mutex<Option<std::net::SocketAddr>>,
    last_reload: Mutex<ReloadStatus>,
    /// The settings a reload cannot change, as the service started with
    /// them ([`restart_only`]): a reload that changes them says so.
    startup: Mutex<Option<Vec<(&'static str, serde_json::Value)>>>,
    /// Why the data directory cannot be written (the outbox or the state
    /// store failed), while it cannot: the service is not ready then.
    storage_error: Mutex<Option<String>>,
    /// Why the consumer is not ready (not joined yet, stalled), while so.
    consumer_wait: Mutex<Option<String>>,
    /// Why a scaled instance cannot go on (instances disagree), while so.
    scale_error: Mutex<Option<String>>,
    history: Mutex<history::History>,
}

/// Access to the read endpoints that expose customer data (`server.read_token_env`).
#[derive(Debug, Clone, Default)]
pub enum ReadAccess {
    /// No read token: open on a loopback listener, refused on any other.
    #[default]
    NoToken,
    /// A bearer token (or the admin token) is required.
    Token(Secret),
    /// A read token is configured but could not be read: refused, fail closed.
    Unreadable(String),
}

impl Default for AdminState {
    fn default() -> Self {
        AdminState {
            started: Instant::now(),
            token: Mutex::new(None),
            snapshot: Mutex::new(ApiSnapshot::default()),
            reload_tx: Mutex::new(None),
            config_hash: Mutex::new(String::new()),
            config_path: Mutex::new(None),
            tls_unverified: Mutex::new(Vec::new()),
            server: Mutex::new(crate::config::ServerConfig::default()),
            read_access: Mutex::new(ReadAccess::default()),
            loopback: std::sync::atomic::AtomicBool::new(true),
            listen: Mutex::new(None),
            last_reload: Mutex::new(ReloadStatus::default()),
            startup: Mutex::new(None),
            storage_error: Mutex::new(None),
            consumer_wait: Mutex::new(None),
            scale_error: Mutex::new(None),
            history: Mutex::new(history::History::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sha256 of a configuration text, hex.
pub(crate) fn config_hash(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl AdminState {
    /// Sets the admin bearer token.
    pub fn set_token(&self, token: Option<Secret>) {
        *lock(&self.token) = token;
    }

    /// Checks a presented `Authorization` header value (`Bearer <token>`).
    pub(crate) fn authorized(&self, header: Option<&str>) -> bool {
        let token = lock(&self.token);
        match (token.as_ref(), header.and_then(bearer)) {
            (Some(t), Some(presented)) => t.matches(presented),
            _ => false,
        }
    }

    /// Whether a token is configured at all.
    pub(crate) fn has_token(&self) -> bool {
        lock(&self.token).is_some()
    }

    /// Replaces the snapshot.
    pub(crate) fn publish(&self, mut snap: ApiSnapshot) {
        if let Some((clock, samples)) = snap.samples.take() {
            lock(&self.history).record(clock, samples);
        }
        *lock(&self.snapshot) = snap;
    }

    /// The console's history of the worst slices.
    pub(crate) fn history(&self) -> std::sync::MutexGuard<'_, history::History> {
        lock(&self.history)
    }

    /// A copy of the snapshot.
    pub(crate) fn snapshot(&self) -> ApiSnapshot {
        lock(&self.snapshot).clone()
    }

    /// The settings of `cfg` a reload cannot apply that differ from the
    /// start's (see [`restart_only`]).
    pub(crate) fn restart_needed(&self, cfg: &Config) -> Vec<String> {
        let start = lock(&self.startup);
        let Some(start) = start.as_ref() else {
            return Vec::new();
        };
        restart_only(cfg)
            .into_iter()
            .zip(start)
            .filter(|((_, new), (_, old))| new != old)
            .map(|((k, _), _)| k.to_string())
            .collect()
    }

    /// Whether the configuration the service started with has a Kafka source.
    fn started_with_kafka(&self) -> bool {
        lock(&self.startup).as_ref().is_some_and(|start| {
            start
                .iter()
                .any(|(k, v)| *k == "sources.kafka" && !v.is_null())
        })
    }

    /// Records the loaded configuration (path and text) for status and reload.
    pub fn set_config(&self, path: Option<PathBuf>, text: &str) {
        *lock(&self.config_path) = path;
        *lock(&self.config_hash) = config_hash(text);
        let Ok(cfg) = Config::from_toml_str(text, &crate::config::ProcessEnv) else {
            return;
        };
        *lock(&self.tls_unverified) = tls_unverified(&cfg);
        lock(&self.startup).get_or_insert_with(|| restart_only(&cfg));
        let sv = &cfg.server;
        let access = match Secret::load(sv.read_token_env.as_deref(), sv.read_token_file.as_deref())
        {
            Ok(Some(t)) => ReadAccess::Token(t),
            Ok(None) => ReadAccess::NoToken,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the read token (server.read_token_env / read_token_file); the data endpoints refuse every request.");
                ReadAccess::Unreadable(e.to_string())
            }
        };
        *lock(&self.read_access) = access;
        *lock(&self.server) = cfg.server;
    }

    /// The `[server]` settings of the loaded configuration (defaults before one is set).
    pub(crate) fn server_config(&self) -> crate::config::ServerConfig {
        lock(&self.server).clone()
    }

    /// Replaces the read access (tests, drivers without a configuration text).
    pub fn set_read_access(&self, access: ReadAccess) {
        *lock(&self.read_access) = access;
    }

    /// Whether the listener is bound to a loopback address.
    pub(crate) fn is_loopback(&self) -> bool {
        self.loopback.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records whether the listener is bound to a loopback address.
    pub fn set_loopback(&self, loopback: bool) {
        self.loopback
            .store(loopback, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records the address the listener is bound to.
    pub(crate) fn set_listen(&self, addr: std::net::SocketAddr) {
        *lock(&self.listen) = Some(addr);
    }

    /// The address the listener is bound to (`server.listen` may say port
    /// 0), once it is.
    pub(crate) fn listen(&self) -> Option<String> {
        lock(&self.listen).map(|a| a.to_string())
    }

    /// Whether a request presenting `header` (`Authorization`) may read
    /// customer data. `Err` says why not.
    pub(crate) fn read_allowed(&self, header: Option<&str>) -> Result<(), &'static str> {
        let loopback = self.loopback.load(std::sync::atomic::Ordering::Relaxed);
        let presented = header.and_then(bearer);
        match &*lock(&self.read_access) {
            ReadAccess::Token(t) => match presented {
                Some(p) if t.matches(p) || self.authorized(header) => Ok(()),
                _ => Err("missing or wrong bearer token (the read or the admin token)"),
            },
            ReadAccess::Unreadable(_) => {
                Err("the read token is configured but cannot be read; see the service log")
            }
            ReadAccess::NoToken if loopback || self.authorized(header) => Ok(()),
            ReadAccess::NoToken => Err("this endpoint exposes customer data and the listener is not on loopback: configure server.read_token_env (or read_token_file) and send it as a bearer token"),
        }
    }

    /// The file reloads read from.
    pub(crate) fn config_path(&self) -> Option<PathBuf> {
        lock(&self.config_path).clone()
    }

    /// Connects reload requests to the driver.
    pub(crate) fn set_reload_sender(&self, tx: mpsc::Sender<ReloadRequest>) {
        *lock(&self.reload_tx) = Some(tx);
    }

    /// The sender reload requests go to, if a driver listens.
    pub(crate) fn reload_sender(&self) -> Option<mpsc::Sender<ReloadRequest>> {
        lock(&self.reload_tx).clone()
    }

    /// The error of the last reload, if it failed (the service reports not
    /// ready until a reload succeeds).
    pub(crate) fn reload_error(&self) -> Option<String> {
        let r = lock(&self.last_reload);
        if r.at.is_some() && !r.ok {
            r.error.clone()
        } else {
            None
        }
    }

    /// Records that the data directory cannot be written (`Some(why)`), or
    /// can again (`None`).
    pub(crate) fn set_storage_error(&self, error: Option<String>) {
        *lock(&self.storage_error) = error;
    }

    /// Records why the consumer is not ready (`Some(why)`), or that it is
    /// (`None`): `/readyz` says it.
    pub fn set_consumer_wait(&self, why: Option<String>) {
        *lock(&self.consumer_wait) = why;
    }

    /// Why the consumer is not ready, while so.
    pub(crate) fn consumer_wait(&self) -> Option<String> {
        lock(&self.consumer_wait).clone()
    }

    /// Why the data directory cannot be written, while it cannot.
    pub(crate) fn storage_error(&self) -> Option<String> {
        lock(&self.storage_error).clone()
    }

    /// Records why the instances of a scaled group cannot work together
    /// (`None` once they can).
    pub(crate) fn set_scale_error(&self, error: Option<String>) {
        *lock(&self.scale_error) = error;
    }

    /// Why the instances of a scaled group cannot work together, while so.
    pub(crate) fn scale_error(&self) -> Option<String> {
        lock(&self.scale_error).clone()
    }

    /// `/api/v1/status`.
    pub(crate) fn status(&self) -> serde_json::Value {
        // No reload yet: nothing to report (not a failed one).
        let last_reload = {
            let r = lock(&self.last_reload);
            if r.at.is_some() {
                serde_json::json!(*r)
            } else {
                serde_json::Value::Null
            }
        };
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_hash": *lock(&self.config_hash),
            "config_path": lock(&self.config_path).as_ref().map(|p| p.display().to_string()),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "clock": lock(&self.snapshot).clock.clone(),
            "last_reload": last_reload,
            "storage_error": self.storage_error(),
            "scale_error": self.scale_error(),
            "admin_token_configured": self.has_token(),
            "tls_skip_verify_receivers": lock(&self.tls_unverified).clone(),
            "read_token_configured": !matches!(*lock(&self.read_access), ReadAccess::NoToken),
        })
    }
}

/// The enabled HTTP receivers of a configuration that set `tls_skip_verify`.
fn tls_unverified(cfg: &Config) -> Vec<String> {
    cfg.receivers
        .iter()
        .filter(|r| r.tls_skip_verify && !r.url.is_empty())
        .map(|r| r.name.clone())
        .collect()
}

/// The admin side that `run` and `demo` set up alike: the loaded
/// configuration (for `/api/v1/status` and reloads), the admin token, and
/// reload requests from `POST /api/v1/reload` and SIGHUP. Returns where the
/// requests arrive and the reload metrics.
pub(crate) fn set_up(
    admin: &AdminState,
    registry: &prometheus::Registry,
    cfg: &Config,
    config_path: Option<PathBuf>,
    config_text: &str,
) -> Result<(mpsc::Receiver<ReloadRequest>, ReloadMetrics), AdminError> {
    set_access(admin, cfg, config_path, config_text);
    let metrics = ReloadMetrics::new(registry)?;
    let (tx, rx) = mpsc::channel(4);
    admin.set_reload_sender(tx.clone());
    crate::signal::spawn_sighup(tx, || ReloadRequest { reply: None });
    Ok((rx, metrics))
}

/// Answers every reload request (SIGHUP, `POST /api/v1/reload`) of a
/// process that cannot reload with `why` (422, logged): a SIGHUP is then
/// refused with a log line instead of ending the process, its default
/// action (a `systemctl reload` or a configuration tool's HUP did what a
/// `kill -9` does).
pub(crate) fn refuse_reloads(admin: &AdminState, why: &'static str) {
    let (tx, mut rx) = mpsc::channel::<ReloadRequest>(4);
    admin.set_reload_sender(tx.clone());
    crate::signal::spawn_sighup(tx, || ReloadRequest { reply: None });
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            tracing::warn!("Configuration not reloaded: {why}");
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(why.to_string()));
            }
        }
    });
}

/// Metrics of configuration reloads.
#[derive(Debug, Clone)]
pub(crate) struct ReloadMetrics {
    reloads: IntCounterVec,
    last_ok: IntGauge,
    last_success_ts: IntGauge,
}

impl ReloadMetrics {
    /// Registers the reload metrics.
    pub(crate) fn new(registry: &Registry) -> Result<Self, AdminError> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "crisiswatch_config_reloads_total",
                "Configuration reloads by result (success, failure).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for r in ["success", "failure"] {
            reloads.with_label_values(&[r]);
        }
        let last_ok = IntGauge::new(
            "crisiswatch_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or failed (0).",
        )?;
        registry.register(Box::new(last_ok.clone()))?;
        last_ok.set(1);
        let last_success_ts = IntGauge::new(
            "crisiswatch_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
        )?;
        registry.register(Box::new(last_success_ts.clone()))?;
        last_success_ts.set(unix_now());
        Ok(ReloadMetrics {
            reloads,
            last_ok,
            last_success_ts,
        })
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
