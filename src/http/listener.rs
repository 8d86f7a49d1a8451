//! The accept loop of the HTTP listener, with the bounds that keep a slow or
//! hostile client from holding it: a connection cap, a deadline for request
//! headers, a largest request head and body, and a deadline for the answer.
//!
//! Each connection is served by hyper on its own task, so one slow client
//! never delays another's `/metrics`. A client that opens connections and
//! trickles its headers (slow loris) is cut off after `header_read_timeout`;
//! beyond `max_connections` new clients wait in the kernel's accept queue
//! instead of taking file descriptors. Every bound is counted.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::HttpError;
use crate::config::ServerConfig;

/// The listener's bounds (`[server]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Deadline for a request's headers.
    pub(crate) header_read_timeout: Duration,
    /// Deadline for the answer.
    pub(crate) request_timeout: Duration,
    /// Largest request head, bytes.
    pub(crate) max_header_bytes: usize,
    /// Largest request body, bytes.
    pub(crate) max_body_bytes: usize,
}

impl From<&ServerConfig> for Limits {
    fn from(c: &ServerConfig) -> Self {
        Limits {
            max_connections: c.max_connections.max(1),
            header_read_timeout: c.header_read_timeout.0,
            request_timeout: c.request_timeout.0,
            // hyper's smallest read buffer is 8 KiB.
            max_header_bytes: c.max_header_bytes.max(8192),
            max_body_bytes: c.max_body_bytes,
        }
    }
}

/// What the bounds did.
#[derive(Clone)]
pub(crate) struct ListenerMetrics {
    /// Connections open now.
    open: IntGauge,
    /// Times a connection had to wait for a free slot.
    limited: IntCounter,
    /// Connections closed for not sending their headers in time.
    header_timeouts: IntCounter,
}

impl ListenerMetrics {
    /// Registers the metrics in `r`; a second listener in one process (tests)
    /// keeps its own unregistered copies.
    pub(crate) fn new(r: &Registry) -> Result<ListenerMetrics, prometheus::Error> {
        let m = ListenerMetrics {
            open: IntGauge::new(
                "crisiswatch_http_connections",
                "HTTP connections open on the listener.",
            )?,
            limited: IntCounter::new(
                "crisiswatch_http_connections_limited_total",
                "Times a new HTTP connection waited because server.max_connections were open.",
            )?,
            header_timeouts: IntCounter::new(
                "crisiswatch_http_header_timeouts_total",
                "HTTP connections closed for not sending request headers within server.header_read_timeout.",
            )?,
        };
        for c in [
            Box::new(m.open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.limited.clone()),
            Box::new(m.header_timeouts.clone()),
        ] {
            if let Err(e) = r.register(c) {
                tracing::debug!(error = %e, "HTTP listener metrics already registered.");
            }
        }
        Ok(m)
    }
}

/// Answers 408 when a handler takes longer than the deadline.
pub(crate) async fn request_timeout(
    State(deadline): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request took longer than server.request_timeout\n",
        )
            .into_response(),
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ListenerMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HttpError> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    loop {
        // A slot first: beyond the cap, clients wait in the accept queue.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                metrics.limited.inc();
                tokio::select! {
                    s = Arc::clone(&slots).acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => return Ok(()),
                    },
                    _ = stopped(&mut shutdown) => return Ok(()),
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "Cannot accept an HTTP connection; retrying shortly.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let m = metrics.clone();
        m.open.inc();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    m.header_timeouts.inc();
                }
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
            m.open.dec();
        });
    }
}
