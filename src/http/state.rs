//! State shared between the drivers and the HTTP handlers, and the one admin
//! check of every state-changing endpoint (here and in
//! [`super::silences`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::admin::AdminState;
use crate::metrics::Metrics;

/// State shared between the drivers and the HTTP handlers.
#[derive(Debug)]
pub struct AppState {
    /// Every metric.
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the service is ready (sources healthy, config loaded).
    pub(crate) ready: AtomicBool,
    /// Admin API state: snapshot, token, reload channel, status.
    pub admin: AdminState,
    /// The incident outbox, for the silences endpoint; set by the driver once
    /// its incident manager is open ([`super::silences::attach`]).
    pub(crate) incidents: std::sync::OnceLock<Arc<crate::incident::outbox::Outbox>>,
    /// What the other instances of a scaled group hold; set by the scaled
    /// service's controls stage, unset in one embedded instance.
    pub(crate) peers: std::sync::OnceLock<Arc<crate::incident::peers::Peers>>,
    /// The incident stage has stopped while HTTP is still served (the demo's
    /// `--linger`): acknowledgements and closes would be stored but not
    /// carried out, so they are refused ([`AppState::incidents_stop`]).
    pub(crate) incidents_stopped: AtomicBool,
}

impl AppState {
    /// New state, not yet ready.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(AppState {
            metrics,
            ready: AtomicBool::new(false),
            admin: AdminState::default(),
            incidents: std::sync::OnceLock::new(),
            peers: std::sync::OnceLock::new(),
            incidents_stopped: AtomicBool::new(false),
        })
    }

    /// Marks the incident stage stopped: from now on acknowledgements and
    /// closes are answered 503 instead of accepted and never carried out.
    pub fn incidents_stop(&self) {
        self.incidents_stopped.store(true, Ordering::Relaxed);
    }

    /// Why an acknowledgement or close cannot be carried out now, if so.
    pub(crate) fn incidents_stopped_reason(&self) -> Option<&'static str> {
        self.incidents_stopped.load(Ordering::Relaxed).then_some(
            "the incident stage has stopped (the demo's simulated run has ended): \
             an acknowledgement or close would not reach the receivers; start the \
             service again to act on its incidents",
        )
    }
}

/// Refuses a state-changing request without the admin bearer token.
pub(crate) fn require_admin(s: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if s.admin.authorized(presented) {
        return Ok(());
    }
    let msg = if s.admin.has_token() {
        "missing or wrong bearer token"
    } else {
        "admin endpoints are disabled: no admin token configured (server.admin_token_env or server.admin_token_file)"
    };
    Err(Box::new(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": msg })),
        )
            .into_response(),
    ))
}

/// Refuses a read of customer data (alerts with sample event ids, rules,
/// silences) unless `server.read_token_env` allows it ([`AdminState::read_allowed`]).
pub(crate) fn require_read(s: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    s.admin.read_allowed(presented).map_err(|msg| {
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({ "error": msg })),
            )
                .into_response(),
        )
    })
}
