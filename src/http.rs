//! The HTTP listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! An edge of the data flow, served by axum on `server.listen`. It only reads
//! shared state ([`AppState`]) that the drivers update, so a slow scrape never
//! holds up event processing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

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
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// State shared between the drivers and the HTTP handlers.
#[derive(Debug)]
pub struct AppState {
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// Whether the service is ready (sources healthy, config loaded).
    pub ready: AtomicBool,
}

impl AppState {
    /// New state, not yet ready.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(AppState {
            metrics,
            ready: AtomicBool::new(false),
        })
    }
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and returns the bound address and the serving future, which
/// ends when `shutdown` turns true.
pub async fn bind(
    addr: &str,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
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
    let app = router(state);
    let fut = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await
            .map_err(HttpError::Serve)
    };
    Ok((local, fut))
}
