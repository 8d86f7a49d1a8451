//! What every request passes before its handler: the checks that need no
//! body, made before a byte of it is read, so a client without a token
//! cannot hold a connection slot by trickling a large body.
//!
//! * **Host** on a loopback listener: only a local name (`localhost`,
//!   `127.0.0.1`, `[::1]`, `*.localhost`) or the host of
//!   `server.external_url`. A loopback listener without a read token serves
//!   customer data to any local client; a web page whose name a hostile DNS
//!   server re-points at 127.0.0.1 (DNS rebinding) would otherwise read it
//!   through the user's browser. Answered 421. (A request without `Host`,
//!   which no browser sends, passes.)
//! * **Body size**: a `Content-Length` over `server.max_body_bytes` is
//!   answered 413 at once, not after the body was read.
//! * **Admin token** for the API's state-changing requests (`POST`,
//!   `DELETE` under `/api/`): checked from the headers before the body.
//! * **Body deadline**: the body must arrive within
//!   `server.header_read_timeout`, as the headers must (408 otherwise).
//! * Every answer carries `X-Content-Type-Options: nosniff`, and
//!   `Cache-Control: no-store` unless the handler set one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::{require_admin, AppState};

/// The guard's state: the application and the listener's bounds.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) app: Arc<AppState>,
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: Duration,
}

/// The middleware (see the module documentation).
pub(crate) async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let mut resp = check(&g, req, next).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn check(g: &Guard, req: Request, next: Next) -> Response {
    if g.app.admin.is_loopback() {
        // No Host at all is no browser's request (HTTP/1.0 tools).
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("?"))
            .filter(|h| !h.is_empty());
        let external = g.app.admin.server_config().external_url;
        if host.is_some_and(|h| !local_host(h, external.as_deref())) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this listener is on loopback and answers local names only (localhost, 127.0.0.1, [::1]) \
                 or the host of server.external_url\n",
            )
                .into_response();
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body_bytes as u64) {
        return too_large(g.max_body_bytes);
    }
    let changes = matches!(*req.method(), Method::POST | Method::DELETE | Method::PUT)
        && req.uri().path().starts_with("/api/");
    if changes {
        if let Err(refused) = require_admin(&g.app, req.headers()) {
            return *refused;
        }
    }
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // One byte over the limit is enough to tell it is over.
    let read = axum::body::to_bytes(body, g.max_body_bytes.saturating_add(1));
    let bytes = match tokio::time::timeout(g.body_timeout, read).await {
        Ok(Ok(b)) if b.len() <= g.max_body_bytes => b,
        Ok(Ok(_)) => return too_large(g.max_body_bytes),
        Ok(Err(e)) if over_limit(&e) => return too_large(g.max_body_bytes),
        Ok(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read (cut off or malformed)\n",
            )
                .into_response()
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within server.header_read_timeout\n",
            )
                .into_response()
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to a body over `server.max_body_bytes` (`max`).
fn too_large(max: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than server.max_body_bytes ({max} bytes)\n"),
    )
        .into_response()
}

/// Whether reading a body failed because it ran past the limit (a chunked
/// body, whose length is not announced).
fn over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether `host` (a `Host` header: name or address, maybe a port) names
/// this machine, or the host of `external` (`server.external_url`).
pub(crate) fn local_host(host: &str, external: Option<&str>) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:9464`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") || name == "::1" {
        return true;
    }
    if name
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
    {
        return true;
    }
    // The address the operator says the service is reached at (a proxy
    // that keeps the client's Host), a name or an IP.
    external
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        })
        .is_some_and(|h| h == name)
}

#[cfg(test)]
mod tests {
    use super::local_host;

    #[test]
    fn only_local_names_and_the_external_host_pass() {
        for h in [
            "127.0.0.1:9464",
            "127.0.0.1",
            "localhost:9464",
            "LOCALHOST",
            "app.localhost:80",
            "[::1]:9464",
            "127.1.2.3",
        ] {
            assert!(local_host(h, None), "{h}");
        }
        for h in [
            "attacker.example",
            "attacker.example:9464",
            "10.0.0.1:9464",
            "",
            "[::2]:80",
        ] {
            assert!(!local_host(h, None), "{h}");
        }
        let ext = Some("https://crisiswatch.example.com/console");
        assert!(local_host("crisiswatch.example.com", ext));
        assert!(local_host("crisiswatch.example.com:443", ext));
        assert!(!local_host("other.example.com", ext));
        // An IP address as external_url (v4 and v6).
        assert!(local_host(
            "192.0.2.10:8080",
            Some("http://192.0.2.10:8080/")
        ));
        assert!(!local_host(
            "192.0.2.11:8080",
            Some("http://192.0.2.10:8080/")
        ));
        assert!(local_host(
            "[2001:db8::1]:8080",
            Some("http://[2001:db8::1]:8080/")
        ));
    }
}
