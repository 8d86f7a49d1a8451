//! The incidents HTTP endpoint, served beside `/metrics`: what is open, and
//! an operator's close.
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /api/v1/incidents` | read | open incidents (key, route, labels, severity, active alerts, `acknowledged`, `label`) and queued close requests |
//! | `POST /api/v1/incidents/close` | bearer (admin) | `{"key": "<dedup_key>", "reason": "...", "by": "..."}` → 202 `{"request": id}`; 404 when no such incident is open; 400 without a reason |
//! | `GET /api/v1/incidents/close/{id}` | read | a close request and its outcome (`closed`, `not_open`, or still queued) |
//!
//! A close is queued in the outbox database ([`crate::incident::outbox::CloseRequest`])
//! and applied by the running service's incident manager on its next tick
//! (well within a second): the incident's `resolve` goes out with reason
//! `closed` and the operator's reason in its summary. The CLI (`crisiswatch
//! incident list|close`) uses the same store.
//!
//! With `sources.kafka.scale_out`, an incident may be held by another
//! instance: the list adds `instance` (this one's id) and `elsewhere` (every
//! other instance's open incidents, from the controls topic), a close is
//! accepted for an incident held elsewhere, and the request goes to the
//! incident's owner through the controls topic (`src/run/scaled/controls.rs`);
//! its outcome shows here once the owner has applied it, or `not_open` once
//! no running instance has held the incident for `scale_out.close_wait`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::event::format_ts;
use crate::incident::delivery::Clock;
use crate::incident::lifecycle::Incident;
use crate::incident::outbox::{CloseRequest, Outbox};

use super::state::{require_admin, require_read, AppState};

/// The routes, merged into [`super::router`].
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/close", post(close))
        .route("/api/v1/incidents/close/:id", get(request))
}

/// An open incident as the API and `crisiswatch incident list --json` show it.
pub(crate) fn incident_json(inc: &Incident) -> serde_json::Value {
    let active: Vec<_> = inc.alerts.iter().filter(|a| a.active).collect();
    let severity = active.iter().map(|a| a.severity).max();
    json!({
        "key": inc.key,
        "route": inc.route,
        "labels": inc.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "started_at": format_ts(inc.started_at),
        "opened": inc.opened,
        "notifications": inc.seq,
        "severity": severity.map(|s| s.as_str()),
        "active_alerts": active.iter().map(|a| json!({
            "rule": a.rule,
            "dedup_key": a.dedup_key,
            "severity": a.severity.as_str(),
            "fired_at": format_ts(a.fired_at),
            "value": a.value,
        })).collect::<Vec<_>>(),
        "alerts": inc.alerts.len(),
    })
}

/// Adds an incident's feedback to its JSON: `acknowledged` (by, at, note of
/// the first acknowledgement) and `label` (the latest), `null` without.
pub(crate) fn with_feedback(
    mut v: serde_json::Value,
    fb: Option<&crate::incident::outbox::feedback::FeedbackState>,
) -> serde_json::Value {
    let entry = |f: &crate::incident::outbox::feedback::Feedback| {
        json!({
            "label": f.label.map(|l| l.as_str()),
            "by": f.by,
            "at": format_ts(f.at_ms),
            "note": f.note,
        })
    };
    if let Some(obj) = v.as_object_mut() {
        let ack = fb.and_then(|f| f.ack.as_ref()).map(entry);
        let label = fb.and_then(|f| f.label.as_ref()).map(entry);
        obj.insert(
            "acknowledged".into(),
            ack.unwrap_or(serde_json::Value::Null),
        );
        obj.insert("label".into(), label.unwrap_or(serde_json::Value::Null));
    }
    v
}

/// A close request as the API and the CLI show it.
pub(crate) fn request_json(r: &CloseRequest) -> serde_json::Value {
    json!({
        "id": r.id,
        "key": r.incident,
        "reason": r.reason,
        "by": r.requested_by,
        "requested_at": format_ts(r.requested_ms),
        "done_at": r.done_ms.map(format_ts),
        "outcome": r.outcome,
    })
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// [`store`], for an acknowledgement or close: refused while the incident
/// stage has stopped (the demo lingering), which would not carry it out.
pub(crate) fn live_store(s: &AppState) -> Result<Arc<Outbox>, Box<Response>> {
    let ob = store(s)?;
    match s.incidents_stopped_reason() {
        Some(why) => Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, why))),
        None => Ok(ob),
    }
}

pub(crate) fn store(s: &AppState) -> Result<Arc<Outbox>, Box<Response>> {
    s.incidents.get().cloned().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "incidents are not enabled in this process (no incident manager)",
        ))
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::incident::outbox::OutboxError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = require_read(&s, &headers) {
        return *r;
    }
    let ob = match store(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let read = blocking(move || {
        Ok((
            ob.load_incidents()?,
            ob.pending_close_requests()?,
            crate::incident::outbox::feedback::fold(&ob.feedback()?),
        ))
    })
    .await;
    match read {
        Ok((incidents, requests, fb)) => {
            let mut v = json!({
                "incidents": incidents.iter().map(|i| with_feedback(incident_json(i), fb.get(&i.key))).collect::<Vec<_>>(),
                "close_requests": requests.iter().map(request_json).collect::<Vec<_>>(),
            });
            if let (Some(p), Some(obj)) = (s.peers.get(), v.as_object_mut()) {
                obj.insert("instance".into(), p.me().into());
                obj.insert("elsewhere".into(), json!(p.elsewhere()));
            }
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    key: String,
    reason: String,
    #[serde(default)]
    by: String,
}

async fn close(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return *r;
    }
    let ob = match live_store(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let req: CloseBody = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid close request: {e}"),
            )
        }
    };
    if req.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a close needs a reason (it goes to the responders in the resolve)",
        );
    }
    let by = if req.by.trim().is_empty() {
        "admin API".to_string()
    } else {
        req.by.clone()
    };
    let now = Clock::new().now_ms();
    let key = req.key.clone();
    let reason = req.reason.clone();
    let peers = s.peers.get().cloned();
    let queued = blocking(move || {
        if !ob.closable(peers.as_deref(), &key)? {
            return Ok(None);
        }
        ob.request_close(&key, &reason, &by, now).map(Some)
    })
    .await;
    match queued {
        Ok(Some(id)) => {
            tracing::info!(incident = %req.key, request = id, "Incident close requested through the API.");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "request": id, "key": req.key })),
            )
                .into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no open incident {:?} (see GET /api/v1/incidents)", req.key),
        ),
        Err(r) => r,
    }
}

async fn request(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = require_read(&s, &headers) {
        return *r;
    }
    // Parsed here, after the token check: the router's own refusal named
    // Rust types ("Cannot parse ... to a `i64`").
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "close request ids are numbers (the \"id\" that POST /api/v1/incidents/close answered), not {id:?}"
            ),
        );
    };
    let ob = match store(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match blocking(move || ob.close_request(id)).await {
        Ok(Some(r)) => Json(request_json(&r)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no close request {id}")),
        Err(r) => r,
    }
}
