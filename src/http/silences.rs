//! The silences HTTP endpoint of the incident stage, served beside `/metrics`.
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /api/v1/silences` | open | every silence, with `state` active / pending / expired |
//! | `POST /api/v1/silences` | bearer | add: `{"matchers": ["rule=complaint_rate", "product=router-x"], "duration": "2h", "created_by": "...", "comment": "..."}` → 201 `{"id": ...}` |
//! | `DELETE /api/v1/silences/{id}` | bearer | expire now → 200, or 404 |
//!
//! Silences are stored in the outbox database, so the running service, the
//! CLI and this endpoint see the same ones; with several instances
//! (`sources.kafka.scale_out`) every instance gets them through the
//! controls topic (`src/run/scaled/controls.rs`). The store is handed to the HTTP
//! state by the driver once the incident manager is open ([`attach`]); before
//! that the endpoint answers 503.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::event::format_ts;
use crate::incident::delivery::Clock;
use crate::incident::outbox::Outbox;
use crate::incident::silence::{Matcher, Silence};

use super::state::{require_admin, AppState};

/// Makes the silences of `outbox` available to the HTTP endpoint.
pub fn attach(state: &AppState, outbox: Arc<Outbox>) {
    let _ = state.incidents.set(outbox);
}

/// The routes, merged into [`super::router`].
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/silences", get(list).post(add))
        .route("/api/v1/silences/:id", delete(expire))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MatcherIn {
    Text(String),
    Object(Matcher),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<MatcherIn>,
    duration: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn store(s: &AppState) -> Option<Arc<Outbox>> {
    s.incidents.get().cloned()
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "incidents are not enabled in this process (no incident manager)",
    )
}

/// A silence as the API shows it.
pub(crate) fn silence_json(s: &Silence, now: i64) -> serde_json::Value {
    let state = if s.active(now) {
        "active"
    } else if now < s.starts_at {
        "pending"
    } else {
        "expired"
    };
    json!({
        "id": s.id,
        "matchers": s.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "starts_at": format_ts(s.starts_at),
        "ends_at": format_ts(s.ends_at),
        "created_by": s.created_by,
        "comment": s.comment,
        "state": state,
    })
}

async fn list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = super::state::require_read(&s, &headers) {
        return *r;
    }
    let Some(ob) = store(&s) else {
        return unavailable();
    };
    let now = Clock::new().now_ms();
    match tokio::task::spawn_blocking(move || ob.silences()).await {
        Ok(Ok(list)) => Json(json!({
            "silences": list.iter().map(|x| silence_json(x, now)).collect::<Vec<_>>()
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn add(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return *r;
    }
    let Some(ob) = store(&s) else {
        return unavailable();
    };
    let req: NewSilence = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let mut matchers = Vec::new();
    for m in req.matchers {
        match m {
            MatcherIn::Object(m) => matchers.push(m),
            MatcherIn::Text(t) => match Matcher::parse(&t) {
                Ok(m) => matchers.push(m),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            },
        }
    }
    let duration = match req.duration.parse::<crate::config::Dur>() {
        Ok(d) => d.as_ms(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = Clock::new().now_ms();
    // Someone is always named, as by the CLI and the other endpoints.
    let created_by = if req.created_by.trim().is_empty() {
        "admin API".to_string()
    } else {
        req.created_by
    };
    let silence = match Silence::new(matchers, now, duration, created_by, req.comment) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let stored = silence.clone();
    match tokio::task::spawn_blocking(move || ob.add_silence(&stored)).await {
        Ok(Ok(())) => {
            tracing::info!(id = %silence.id, matchers = ?silence.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(), ends_at = %format_ts(silence.ends_at), "Silence added through the API.");
            (
                StatusCode::CREATED,
                Json(json!({ "id": silence.id, "silence": silence_json(&silence, now) })),
            )
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn expire(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return *r;
    }
    let Some(ob) = store(&s) else {
        return unavailable();
    };
    let now = Clock::new().now_ms();
    let key = id.clone();
    match tokio::task::spawn_blocking(move || ob.expire_silence(&key, now)).await {
        Ok(Ok(true)) => {
            tracing::info!(id = %id, "Silence expired through the API.");
            Json(json!({ "id": id, "expired": true })).into_response()
        }
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, format!("no silence {id:?}")),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
