//! The HTTP listener: `/metrics`, health, and the admin API.
//!
//! An edge of the data flow, served by axum on `server.listen`. It only reads
//! shared state ([`AppState`]) that the drivers update, so a slow scrape never
//! holds up event processing.
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /` | read | the web console ([`console`]): incidents, silences, rules, health |
//! | `GET /metrics` | open | Prometheus text exposition |
//! | `GET /healthz` | open | the process is up |
//! | `GET /readyz` | open | 200 when ready (sources healthy, config loaded), else 503 |
//! | `GET /api/v1/alerts` | read | pending and firing alerts with their evidence |
//! | `GET /api/v1/rules` | read | every rule, its configuration and live state |
//! | `GET /api/v1/status` | open | version, config hash, uptime, last reload |
//! | `POST /api/v1/reload` | bearer | re-read and apply the configuration file |
//! | `GET /api/v1/silences` | read | incident silences ([`silences`]) |
//! | `POST /api/v1/silences`, `DELETE /api/v1/silences/{id}` | bearer | add / expire a silence |
//! | `GET /api/v1/incidents`, `POST /api/v1/incidents/close` | read / bearer | open incidents; an operator's close ([`incidents`]) |
//! | `POST /api/v1/incidents/ack\|label`, `GET /api/v1/feedback` | bearer / read | responders' feedback ([`feedback`]) |
//!
//! State-changing endpoints need `Authorization: Bearer <token>` with the token
//! from `server.admin_token_env` / `server.admin_token_file`; without a
//! configured token they are refused (401). "read" endpoints expose customer
//! data (sample event ids, slices): with `server.read_token_env` they need that
//! token (or the admin token); without one they are open on a loopback listener
//! and refused on any other.
//!
//! The listener itself ([`listener`]) bounds what a client can hold: connections
//! (`server.max_connections`), the time to send headers (`header_read_timeout`,
//! so a slow-loris client is dropped), the head and body sizes, and the time to
//! answer (`request_timeout`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::ReloadRequest;

mod console;
pub(crate) mod feedback;
mod guard;
pub mod incidents;
mod json_errors;
mod listener;
pub mod silences;
pub(crate) mod state;

pub use state::AppState;
use state::{require_admin, require_read};

/// Errors of the HTTP listener.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listener's metrics could not be created.
    #[error("cannot create the HTTP listener metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limits = listener::Limits::from(&state.admin.server_config());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/status", get(status))
        .route("/api/v1/reload", post(reload))
        .merge(silences::routes())
        .merge(incidents::routes())
        .merge(feedback::routes())
        .merge(console::routes())
        .fallback(json_errors::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            listener::request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            guard::Guard {
                app: Arc::clone(&state),
                max_body_bytes: limits.max_body_bytes,
                body_timeout: limits.header_read_timeout,
            },
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(json_errors::json_errors))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut body = s.metrics.render();
    body.push_str("# HELP crisiswatch_ready Whether the service is ready (1) or not (0), as /readyz reports.\n");
    body.push_str("# TYPE crisiswatch_ready gauge\n");
    body.push_str(if is_ready(&s) {
        "crisiswatch_ready 1\n"
    } else {
        "crisiswatch_ready 0\n"
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Ready: the driver says so and the last configuration reload did not fail.
pub(crate) fn is_ready(s: &AppState) -> bool {
    s.ready.load(Ordering::Relaxed)
        && s.admin.reload_error().is_none()
        && s.admin.storage_error().is_none()
        && s.admin.scale_error().is_none()
}

/// A failed reload's error may quote the file's values (a receiver URL with
/// a token in it): open endpoints show it only to a request that may read
/// (the read or admin token, or any request on a loopback listener without
/// a read token), others are told where to find it.
fn reload_error_for(s: &AppState, headers: &HeaderMap, e: String) -> String {
    if require_read(s, headers).is_ok() {
        e
    } else {
        RELOAD_ERROR_HIDDEN.to_string()
    }
}

/// What an open endpoint says of a failed reload to a request that may not read.
const RELOAD_ERROR_HIDDEN: &str = "the configuration file is invalid (the error quotes its values: see the service log, `crisiswatch check`, or ask with the read token)";

async fn readyz(State(s): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    if is_ready(&s) {
        (StatusCode::OK, "ready\n".to_string())
    } else if let Some(e) = s.admin.storage_error() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
    } else if let Some(e) = s.admin.scale_error() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
    } else if let Some(e) = s.admin.reload_error() {
        let e = reload_error_for(&s, &headers, e);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the last configuration reload failed: {e}\n"),
        )
    } else if let Some(why) = s.admin.consumer_wait() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
    }
}

async fn alerts(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = require_read(&s, &headers) {
        return *r;
    }
    let snap = s.admin.snapshot();
    Json(serde_json::json!({ "clock": snap.clock, "alerts": snap.alerts })).into_response()
}

async fn rules(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = require_read(&s, &headers) {
        return *r;
    }
    let snap = s.admin.snapshot();
    Json(serde_json::json!({ "clock": snap.clock, "rules": snap.rules })).into_response()
}

async fn status(State(s): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let mut v = s.admin.status();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ready".into(), is_ready(&s).into());
    }
    if let Some(e) = v
        .pointer_mut("/last_reload/error")
        .filter(|e| e.is_string())
    {
        let text = e.as_str().unwrap_or_default().to_string();
        *e = reload_error_for(&s, &headers, text).into();
    }
    Json(v)
}

async fn reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return *r;
    }
    let Some(tx) = s.admin.reload_sender() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "this process does not support reload" })),
        )
            .into_response();
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx.send(ReloadRequest { reply: Some(reply) }).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "the engine is shutting down" })),
        )
            .into_response();
    }
    match rx.await {
        Ok(Ok(summary)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ok": true, "summary": summary })),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "ok": false, "error": e })),
        )
            .into_response(),
        // The driver dropped the request unanswered.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "error": "the engine is not running (shutting down, or a demo whose simulated run has ended): nothing to reload"
            })),
        )
            .into_response(),
    }
}

/// Binds `addr` and returns the bound address and the serving future, which
/// ends when `shutdown` turns true.
pub async fn bind(
    addr: &str,
    state: Arc<AppState>,
    shutdown: watch::Receiver<bool>,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<(), HttpError>>,
    ),
    HttpError,
> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    state.admin.set_loopback(local.ip().is_loopback());
    state.admin.set_listen(local);
    let limits = listener::Limits::from(&state.admin.server_config());
    let metrics =
        listener::ListenerMetrics::new(state.metrics.registry()).map_err(HttpError::Metrics)?;
    let app = router(state);
    let fut = listener::serve(listener, app, limits, metrics, shutdown);
    Ok((local, fut))
}
