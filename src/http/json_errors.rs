//! Every error the API answers is JSON (`{"error": "…"}`), as its own
//! handlers write them: the router's own refusals — no such endpoint (404),
//! a method the endpoint does not take (405, with `Allow`), a path value of
//! the wrong form (400), a body over the limit (413) — came as plain text or
//! with no body at all. Other paths (the console, `/metrics`) are left as
//! they are.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The longest plain-text error body kept as the message.
const MAX_MESSAGE: usize = 4096;

/// The fallback for paths no route takes.
pub(super) async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
        .into_response()
}

/// Rewrites an error response under `/api/` that is not JSON into
/// `{"error": …}`: its text, or the status's reason when it had none;
/// headers such as `Allow` and `WWW-Authenticate` kept.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    let status = res.status();
    if !api || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, MAX_MESSAGE).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let mut out = (status, Json(json!({ "error": message }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}
