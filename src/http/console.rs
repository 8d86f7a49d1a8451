//! The web console at `/` of the admin listener: open incidents with their
//! alerts, charts and timelines (and, in a scaled group, the other
//! instances' open incidents, read-only), silences, rules with their worst
//! slices, and the service's health — server-rendered HTML compiled into the binary
//! (no script, no CDN: it works offline and without JavaScript).
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /` | read | the page ([`page`]) |
//! | `GET /console.css` | open | its style sheet |
//! | `POST /console/silences` | admin token in the form | create a silence (`matchers`, `duration`, `by`, `comment`) |
//! | `POST /console/silences/expire` | admin token in the form | expire silence `id` |
//! | `POST /console/incidents/ack` | admin token in the form | acknowledge `key` |
//! | `POST /console/incidents/label` | admin token in the form | label `key` `useful` or `noise` |
//! | `POST /console/incidents/close` | admin token in the form | resolve `key` by hand with a `reason` |
//!
//! **Reading** follows the read endpoints' rule (`server.read_token_env`):
//! open on a loopback listener without a read token; otherwise the browser
//! asks for it (HTTP Basic, any user name, the read or admin token as the
//! password; `Authorization: Bearer` works too).
//!
//! **Changing** needs the admin token typed into each form: every POST
//! carries it in its body and is refused (401) without the right one. The
//! browser never stores it and never sends it by itself (no cookie, and the
//! Basic credentials of reading are not accepted for changes), so another
//! site cannot make a logged-in browser change anything (no CSRF). After a
//! change the answer redirects (303) to the page, which says what was done.
//!
//! Every response carries a Content-Security-Policy that allows no script,
//! no frame and no resource from elsewhere, as a second line behind the
//! escaping of every value ([`page::esc`]).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::incident::delivery::Clock;
use crate::incident::outbox::feedback::{fold, Label};
use crate::incident::silence::{Matcher, Silence};

use super::state::AppState;

mod chart;
mod data;
pub(crate) mod page;

/// The routes, merged into [`super::router`].
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/console.css", get(css))
        .route("/console/silences", post(add_silence))
        .route("/console/silences/expire", post(expire_silence))
        .route("/console/incidents/ack", post(ack))
        .route("/console/incidents/label", post(label))
        .route("/console/incidents/close", post(close))
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, body: String) -> Response {
    secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

/// A short page saying why a request was refused, with a way back.
fn refusal(status: StatusCode, why: &str) -> Response {
    html(
        status,
        format!(
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>crisiswatch console</title><link rel="stylesheet" href="/console.css"></head><body><main><p class="bad" role="alert">{}</p><p><a href="/">back to the console</a></p></main></body></html>"#,
            page::esc(why)
        ),
    )
}

/// The `Authorization` header as the read check takes it: a Basic
/// password (the browser's prompt) becomes a bearer token.
fn read_credential(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b) = h.strip_prefix("Basic ") {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(format!("Bearer {password}"));
    }
    Some(h.to_string())
}

#[derive(Debug, Deserialize)]
struct IndexQuery {
    #[serde(default)]
    done: Option<String>,
    /// [`flash_sig`] of `done`: only a message this process wrote is shown
    /// (a crafted link cannot put words in the console's mouth).
    #[serde(default)]
    sig: Option<String>,
}

/// The signature of a status message the console redirects with: HMAC-SHA256
/// under a key drawn at the process's start, hex, first 16 bytes.
fn flash_sig(text: &str) -> String {
    use hmac::{Hmac, Mac};
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            hex::encode(&mac.finalize().into_bytes()[..16])
        }
        Err(_) => String::new(),
    }
}

async fn index(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<IndexQuery>,
) -> Response {
    let cred = read_credential(&headers);
    if let Err(why) = s.admin.read_allowed(cred.as_deref()) {
        let mut r = refusal(StatusCode::UNAUTHORIZED, why);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"crisiswatch console\", charset=\"UTF-8\""),
        );
        return r;
    }
    let st = s.clone();
    let view = tokio::task::spawn_blocking(move || data::gather(&st)).await;
    match view {
        Ok(Ok(mut v)) => {
            v.flash = q
                .done
                .filter(|d| {
                    q.sig
                        .as_deref()
                        .is_some_and(|sig| !sig.is_empty() && sig == flash_sig(d))
                })
                .map(|d| d.chars().take(300).collect());
            html(StatusCode::OK, page::render(&v))
        }
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn css() -> Response {
    secured(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            include_str!("console/console.css"),
        )
            .into_response(),
    )
}

/// Checks the admin token of a form; the refusal otherwise.
fn check_token(s: &AppState, token: &str) -> Result<(), Box<Response>> {
    if !s.admin.has_token() {
        return Err(Box::new(refusal(
            StatusCode::UNAUTHORIZED,
            "Changes are disabled: no admin token is configured (server.admin_token_env or server.admin_token_file).",
        )));
    }
    if token.is_empty() || !s.admin.authorized(Some(&format!("Bearer {token}"))) {
        return Err(Box::new(refusal(
            StatusCode::UNAUTHORIZED,
            "Wrong or missing admin token: nothing was changed.",
        )));
    }
    Ok(())
}

fn done(what: &str) -> Response {
    let mut target = String::from("/?done=");
    for b in what.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            target.push(b as char);
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    target.push_str("&sig=");
    target.push_str(&flash_sig(what));
    let mut r = secured(StatusCode::SEE_OTHER.into_response());
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn outbox(s: &AppState) -> Result<Arc<crate::incident::outbox::Outbox>, Box<Response>> {
    s.incidents.get().cloned().ok_or_else(|| {
        Box::new(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "This process keeps no incidents (no incident manager).",
        ))
    })
}

#[derive(Debug, Deserialize)]
struct SilenceForm {
    matchers: String,
    duration: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    token: String,
}

async fn add_silence(State(s): State<Arc<AppState>>, Form(f): Form<SilenceForm>) -> Response {
    if let Err(r) = check_token(&s, &f.token) {
        return *r;
    }
    let ob = match outbox(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let matchers: Result<Vec<Matcher>, _> =
        f.matchers.split_whitespace().map(Matcher::parse).collect();
    let matchers = match matchers {
        Ok(m) => m,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let duration = match f.duration.trim().parse::<crate::config::Dur>() {
        Ok(d) => d.as_ms(),
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e),
    };
    let now = Clock::new().now_ms();
    let silence = match Silence::new(matchers, now, duration, f.by, f.comment) {
        Ok(x) => x,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let stored = silence.clone();
    match tokio::task::spawn_blocking(move || ob.add_silence(&stored)).await {
        Ok(Ok(())) => {
            tracing::info!(id = %silence.id, "Silence added through the console.");
            done(&format!("silence {} created", silence.id))
        }
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ExpireForm {
    id: String,
    #[serde(default)]
    token: String,
}

async fn expire_silence(State(s): State<Arc<AppState>>, Form(f): Form<ExpireForm>) -> Response {
    if let Err(r) = check_token(&s, &f.token) {
        return *r;
    }
    let ob = match outbox(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let now = Clock::new().now_ms();
    let id = f.id.clone();
    match tokio::task::spawn_blocking(move || ob.expire_silence(&id, now)).await {
        Ok(Ok(true)) => done(&format!("silence {} expired", f.id)),
        Ok(Ok(false)) => refusal(StatusCode::NOT_FOUND, &format!("no silence {:?}", f.id)),
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct FeedbackForm {
    key: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    by: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    token: String,
}

async fn feedback(s: Arc<AppState>, f: FeedbackForm, label: Option<Label>) -> Response {
    if let Err(r) = check_token(&s, &f.token) {
        return *r;
    }
    // An acknowledgement goes to the receivers: refused while the incident
    // stage has stopped. A label is only stored.
    if let (None, Some(why)) = (label, s.incidents_stopped_reason()) {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let ob = match outbox(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let by = if f.by.trim().is_empty() {
        "console".to_string()
    } else {
        f.by
    };
    let what = label.map_or("acknowledged".to_string(), |l| {
        format!("labelled {}", l.as_str())
    });
    let peers = s.peers.get().cloned();
    match super::feedback::record(ob, peers, f.key.clone(), label, f.note, by).await {
        Ok(_) => done(&format!("{} {what}", f.key)),
        Err((status, msg)) => refusal(status, &msg),
    }
}

async fn ack(State(s): State<Arc<AppState>>, Form(f): Form<FeedbackForm>) -> Response {
    feedback(s, f, None).await
}

async fn label(State(s): State<Arc<AppState>>, Form(f): Form<FeedbackForm>) -> Response {
    let Some(l) = f.label.as_deref().and_then(Label::parse) else {
        return refusal(StatusCode::BAD_REQUEST, "the label must be useful or noise");
    };
    feedback(s, f, Some(l)).await
}

#[derive(Debug, Deserialize)]
struct CloseForm {
    key: String,
    reason: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    token: String,
}

async fn close(State(s): State<Arc<AppState>>, Form(f): Form<CloseForm>) -> Response {
    if let Err(r) = check_token(&s, &f.token) {
        return *r;
    }
    if let Some(why) = s.incidents_stopped_reason() {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let ob = match outbox(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if f.reason.trim().is_empty() {
        return refusal(StatusCode::BAD_REQUEST, "a close needs a reason");
    }
    let by = if f.by.trim().is_empty() {
        "console".to_string()
    } else {
        f.by.clone()
    };
    let now = Clock::new().now_ms();
    let (key, reason) = (f.key.clone(), f.reason.clone());
    // Open here, or (scaled) held by another running instance.
    let peers = s.peers.get().cloned();
    let queued = tokio::task::spawn_blocking(move || {
        if !ob.closable(peers.as_deref(), &key)? {
            return Ok(None);
        }
        ob.request_close(&key, &reason, &by, now).map(Some)
    })
    .await;
    match queued {
        Ok(Ok(Some(id))) => done(&format!(
            "close of {} requested (#{id}): its resolve goes out within a second",
            f.key
        )),
        Ok(Ok(None)) => refusal(
            StatusCode::NOT_FOUND,
            &format!("no open incident {:?}", f.key),
        ),
        Ok(Err(e)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Feedback of the open incidents, folded (used by [`data`]).
pub(crate) fn folded(
    ob: &crate::incident::outbox::Outbox,
) -> Result<
    std::collections::BTreeMap<String, crate::incident::outbox::feedback::FeedbackState>,
    crate::incident::outbox::OutboxError,
> {
    Ok(fold(&ob.feedback()?))
}
