//! Responders' feedback through the admin API: acknowledge an incident, label
//! it `useful` or `noise` (see [`crate::incident::outbox::feedback`]).
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `POST /api/v1/incidents/ack` | bearer (admin) | `{"key": "...", "by": "...", "note": "..."}` → 200 `{"feedback": id}`; 404 no such incident; 409 not open |
//! | `POST /api/v1/incidents/label` | bearer (admin) | `{"key": "...", "label": "useful"\|"noise", "by": "...", "note": "..."}` → 200; 404 no such incident (open or in the outbox) |
//! | `GET /api/v1/feedback` | read | every feedback entry, oldest first |
//!
//! Resolving by hand is the operator's close (`POST /api/v1/incidents/close`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::event::format_ts;
use crate::incident::delivery::Clock;
use crate::incident::outbox::feedback::{Feedback, Label, Recorded};
use crate::incident::outbox::Outbox;
use crate::incident::peers::Peers;

use super::incidents::{live_store, store};
use super::state::{require_admin, require_read, AppState};

/// The routes, merged into [`super::router`].
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/incidents/ack", post(ack))
        .route("/api/v1/incidents/label", post(label))
        .route("/api/v1/feedback", get(list))
}

/// A feedback entry as the API and the CLI show it.
pub(crate) fn feedback_json(f: &Feedback) -> serde_json::Value {
    json!({
        "id": f.id,
        "key": f.incident,
        "kind": f.kind,
        "label": f.label.map(Label::as_str),
        "note": f.note,
        "by": f.by,
        "at": format_ts(f.at_ms),
        "alerts": f.alerts.iter().map(|a| json!({
            "rule": a.rule,
            "group": a.group.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "started_at": format_ts(a.started_at),
            "fired_at": format_ts(a.fired_at),
            "end": format_ts(a.end),
        })).collect::<Vec<_>>(),
    })
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// Records feedback and answers as the API does (also used by the console).
/// With `sources.kafka.scale_out`, `peers` knows the open incidents of the
/// other instances: one held elsewhere is recorded here with its labels
/// (its holder adds its alerts) and reaches the holder through the
/// controls topic.
pub(crate) async fn record(
    ob: Arc<Outbox>,
    peers: Option<Arc<Peers>>,
    key: String,
    label: Option<Label>,
    note: String,
    by: String,
) -> Result<i64, (StatusCode, String)> {
    let now = Clock::new().now_ms();
    let k = key.clone();
    let done = tokio::task::spawn_blocking(move || {
        ob.record_shared_feedback(peers.as_deref(), &k, label, &note, &by, now)
    })
    .await;
    match done {
        Ok(Ok(Recorded::Entry(id))) => {
            tracing::info!(incident = %key, label = label.map(Label::as_str).unwrap_or("ack"), "Responder feedback recorded.");
            Ok(id)
        }
        Ok(Ok(Recorded::Unknown)) => Err((
            StatusCode::NOT_FOUND,
            format!("no incident {key:?} in the outbox (see GET /api/v1/incidents)"),
        )),
        Ok(Ok(Recorded::NotOpen)) => Err((
            StatusCode::CONFLICT,
            format!("incident {key:?} is no longer open: nothing to acknowledge"),
        )),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    key: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    by: String,
}

async fn submit(s: Arc<AppState>, headers: HeaderMap, body: String, labelled: bool) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return *r;
    }
    // An acknowledgement goes to the receivers: refused while the incident
    // stage has stopped. A label is only stored (for tuning).
    let ob = match if labelled { store(&s) } else { live_store(&s) } {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let req: Body = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    let label = match (labelled, req.label.as_deref()) {
        (false, None) => None,
        (false, Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "an acknowledgement takes no label (POST /api/v1/incidents/label)",
            )
        }
        (true, l) => match l.and_then(Label::parse) {
            Some(l) => Some(l),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "\"label\" must be \"useful\" or \"noise\"",
                )
            }
        },
    };
    let by = if req.by.trim().is_empty() {
        "admin API".to_string()
    } else {
        req.by
    };
    let peers = s.peers.get().cloned();
    match record(ob, peers, req.key.clone(), label, req.note, by).await {
        Ok(id) => Json(json!({ "feedback": id, "key": req.key })).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

async fn ack(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    submit(s, headers, body, false).await
}

async fn label(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    submit(s, headers, body, true).await
}

async fn list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = require_read(&s, &headers) {
        return *r;
    }
    let ob = match store(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match tokio::task::spawn_blocking(move || ob.feedback()).await {
        Ok(Ok(all)) => {
            Json(json!({ "feedback": all.iter().map(feedback_json).collect::<Vec<_>>() }))
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
