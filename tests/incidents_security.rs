//! Webhook security against real receivers on loopback: Standard Webhooks
//! signatures checked by the documented verifier (replays refused).

mod incidents_support;

use std::time::Duration;

use crisiswatch::alert::State;
use crisiswatch::config::Severity;
use crisiswatch::incident::signature::{self, Signed, VerifyError};
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use crisiswatch::secret::Secret;
use incidents_support::*;
use prometheus::Registry;

fn signed(r: &Request) -> Signed<'_> {
    Signed {
        id: r.headers.get("webhook-id").map(String::as_str),
        timestamp: r.headers.get("webhook-timestamp").map(String::as_str),
        signature: r.headers.get("webhook-signature").map(String::as_str),
    }
}

fn timestamp(r: &Request) -> i64 {
    r.headers["webhook-timestamp"].parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_keep_their_webhook_id_and_a_replay_outside_the_tolerance_is_refused() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(503), Reply::status(202)]);
    let dir = tempfile::tempdir().unwrap();
    // The form Standard Webhooks libraries generate: `whsec_` + base64 of the key.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let text = format!(
        "{}secret_env = \"CW_TEST_WEBHOOK_SECRET\"\n",
        generic_receiver(
            "hook",
            &rx.url(),
            r#"backoff_initial = "6m", backoff_max = "6m", jitter = 0"#
        )
    );
    let cfg = config_env(&text, &[]);
    std::env::set_var("CW_TEST_WEBHOOK_SECRET", secret);
    let reg = Registry::new();
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    let reqs = rx.wait_for(2, Duration::from_secs(900)).await;
    m.shutdown(Duration::from_secs(1)).await;
    let key = Secret::new(secret);
    let (first, second) = (&reqs[0], &reqs[1]);
    // One notification, one id, on every attempt; each attempt has its own time.
    assert_eq!(first.headers["webhook-id"], second.headers["webhook-id"]);
    assert!(first.headers["webhook-id"].starts_with("msg_"));
    assert!(timestamp(second) - timestamp(first) >= 360);
    // Each attempt verifies at its own arrival…
    for r in [first, second] {
        assert_eq!(
            signature::verify(&key, signed(r), &r.body, timestamp(r), 300),
            Ok(())
        );
        // …and still carries the legacy header for existing receivers.
        assert_eq!(
            r.headers["x-crisiswatch-signature"],
            signature::legacy(&key, &r.body)
        );
    }
    // The first request replayed when the second arrived is refused.
    assert!(matches!(
        signature::verify(&key, signed(first), &first.body, timestamp(second), 300),
        Err(VerifyError::OutsideTolerance { .. })
    ));
    // A fresh timestamp on old headers breaks the signature.
    let now = timestamp(second).to_string();
    let forged = Signed {
        timestamp: Some(&now),
        ..signed(first)
    };
    assert_eq!(
        signature::verify(&key, forged, &first.body, timestamp(second), 300),
        Err(VerifyError::NoMatch)
    );
    // Another key does not verify.
    assert_eq!(
        signature::verify(
            &Secret::new("whsec_b3RoZXIta2V5LW9mLXNvbWUtbGVuZ3Ro"),
            signed(second),
            &second.body,
            timestamp(second),
            300
        ),
        Err(VerifyError::NoMatch)
    );
}
