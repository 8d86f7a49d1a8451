//! What a delivery attempt sends: the notification rendered for the
//! receiver's kind (one body, or several for an Alertmanager push split to
//! fit `max_body_bytes`), signed when the receiver has a secret, and POSTed
//! (or written to the console); the answer classified into an [`Outcome`].
//!
//! The worker ([`super::Worker`]) decides what to send and what an outcome
//! means for the row, the breaker and the re-pushes; [`super::answer`] reads
//! the refusing answer and [`super::redact`] keeps the receiver's secrets out
//! of the failure detail.

use std::io::Write;

use crate::config::ReceiverKind;
use crate::incident::model::Notification;
use crate::incident::policy::{classify, parse_retry_after, FailureReason, Outcome};
use crate::incident::{receivers, signature};

use super::answer::{connection_lost, error_chain, read_limited};
use super::redact::Redactor;
use super::{Sink, Worker, RESPONSE_BODY_LIMIT};

// === impl Worker ===

impl Worker {
    /// Renders, signs and sends notifications (several only for an Alertmanager
    /// re-push, `repush`); `msg_id` is the Standard Webhooks `webhook-id`.
    pub(super) async fn send(&self, ns: &[&Notification], msg_id: &str, repush: bool) -> Outcome {
        let (client, url) = match &self.rt.sink {
            Sink::Console(out) => {
                let Ok(mut w) = out.lock() else {
                    return failed(FailureReason::Other, "console writer poisoned".into());
                };
                for n in ns {
                    if let Err(e) = writeln!(w, "{}", receivers::console_line(n)) {
                        return failed(FailureReason::Other, e.to_string());
                    }
                }
                let _ = w.flush();
                return Outcome::Delivered;
            }
            Sink::Http { client, url } => (client, url),
        };
        let now = self.clock.now_ms();
        let bodies = match self.rt.kind {
            ReceiverKind::Alertmanager => receivers::alertmanager_bodies(
                ns,
                now,
                self.rt.resend_ms,
                self.rt.generator_url.as_deref(),
                repush.then(|| now.saturating_sub(receivers::RESOLVED_RETENTION_MS)),
                self.rt.max_body,
            ),
            ReceiverKind::Pagerduty => match (&self.rt.routing_key, ns.first()) {
                (Some(key), Some(n)) => {
                    serde_json::to_vec(&receivers::pagerduty(n, key, self.rt.max_body))
                        .map(|b| vec![b])
                }
                _ => return failed(FailureReason::Rejected, "no PagerDuty routing key".into()),
            },
            _ => match ns.first() {
                Some(n) => {
                    serde_json::to_vec(&receivers::generic(n, self.rt.max_body)).map(|b| vec![b])
                }
                None => return Outcome::Delivered,
            },
        };
        let bodies = match bodies {
            Ok(b) => b,
            Err(e) => return failed(FailureReason::Other, e.to_string()),
        };
        // Several bodies only for an Alertmanager push split to stay within
        // `max_body_bytes`: each is its own message (`webhook-id` suffixed
        // from the second on). The push is delivered when all are; a refused
        // one does not hold back the others, a retryable failure stops it (the
        // retry sends every part again, the same alerts to Alertmanager).
        let mut outcome = Outcome::Delivered;
        for (i, body) in bodies.into_iter().enumerate() {
            let id = match i {
                0 => msg_id.to_string(),
                i => format!("{msg_id}_{i}"),
            };
            match self.post(client, url, &id, body).await {
                Outcome::Delivered => {}
                failure if retryable(&failure) => return failure,
                failure => {
                    if outcome == Outcome::Delivered {
                        outcome = failure;
                    }
                }
            }
        }
        outcome
    }

    /// POSTs one body, signed when the receiver has a secret; `msg_id` is
    /// its Standard Webhooks `webhook-id`.
    async fn post(
        &self,
        client: &reqwest::Client,
        url: &str,
        msg_id: &str,
        body: Vec<u8>,
    ) -> Outcome {
        let mut req = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(s) = &self.rt.secret {
            if self.rt.signature.standard() {
                let ts = self.clock.now_ms().div_euclid(1000);
                req = req
                    .header(signature::ID_HEADER, msg_id)
                    .header(signature::TIMESTAMP_HEADER, ts)
                    .header(
                        signature::SIGNATURE_HEADER,
                        signature::standard(s, msg_id, ts, &body),
                    );
            }
            if self.rt.signature.legacy() {
                req = req.header(signature::LEGACY_HEADER, signature::legacy(s, &body));
            }
        }
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let Some(reason) = classify(status) else {
                    return Outcome::Delivered;
                };
                // The answer may echo the request: no secret of the
                // receiver goes into the detail (logged and stored).
                let redactor = Redactor::new(&self.rt);
                let retry_after_ms = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, self.clock.now_ms()));
                let moved = (300..=399).contains(&status).then(|| {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The query can carry a token: keep it out of logs.
                    let to = redactor.apply(to.split(['?', '#']).next().unwrap_or(""), false);
                    format!(
                        "redirect to {to:?} not followed: set the receiver's url to the final address"
                    )
                });
                let (text, truncated) = read_limited(resp, RESPONSE_BODY_LIMIT).await;
                // Before the cut to 200 characters, which could leave a
                // secret's beginning.
                let text = redactor.apply(&text, truncated);
                if truncated {
                    self.metrics
                        .response_truncated
                        .with_label_values(&[&self.rt.name])
                        .inc();
                }
                Outcome::Failed {
                    reason,
                    detail: match moved {
                        Some(m) => format!("HTTP {status}: {m}"),
                        None => format!(
                            "HTTP {status}: {}",
                            receivers::truncate_chars(text.trim(), 200)
                        ),
                    },
                    retry_after_ms,
                }
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    FailureReason::Timeout
                } else if e.is_connect() || connection_lost(&e) {
                    FailureReason::Connect
                } else {
                    FailureReason::Other
                };
                // The URL can carry a token (e.g. chat webhooks): keep it out of logs.
                let e = e.without_url();
                failed(
                    reason,
                    Redactor::new(&self.rt).apply(&error_chain(&e), false),
                )
            }
        }
    }
}

/// Whether `o` failed in a way that is retried.
fn retryable(o: &Outcome) -> bool {
    matches!(o, Outcome::Failed { reason, .. } if reason.retryable())
}

fn failed(reason: FailureReason, detail: String) -> Outcome {
    Outcome::Failed {
        reason,
        detail,
        retry_after_ms: None,
    }
}
