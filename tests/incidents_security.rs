//! Webhook security against real receivers on loopback: Standard Webhooks
//! signatures checked by the documented verifier (replays refused), and TLS
//! to a receiver behind a private CA.

mod incidents_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crisiswatch::alert::State;
use crisiswatch::config::{ReceiverConfig, Severity};
use crisiswatch::incident::endpoint;
use crisiswatch::incident::signature::{self, Signed, VerifyError};
use crisiswatch::incident::{IncidentManager, ManagerOptions};
use crisiswatch::secret::Secret;
use incidents_support::tls::{PrivateCa, TlsReceiver};
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

/// The first receiver of `generic_receiver("hook", url)` plus `extra` TOML lines.
fn receiver(url: &str, extra: &str) -> ReceiverConfig {
    let text = format!(
        "{}{extra}\n",
        generic_receiver("hook", url, r#"timeout = "10s""#)
    );
    config(&text).receivers[0].clone()
}

async fn post(r: &ReceiverConfig) -> Result<u16, reqwest::Error> {
    let client = endpoint::http_client(r).expect("client builds");
    let resp = client.post(&r.url).body("{}").send().await?;
    Ok(resp.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_behind_a_private_ca_verifies_with_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = PrivateCa::create(dir.path());
    let rx = TlsReceiver::start(&ca).await;
    let url = rx.url();
    let ca_file = format!("ca_file = \"{}\"", ca.ca.display());
    // Mozilla's roots alone do not know the private CA: the handshake is refused.
    let err = post(&receiver(&url, "")).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(rx.requests.load(Ordering::SeqCst), 0);
    // With its ca_file, beside the bundled roots or alone, it verifies.
    assert_eq!(post(&receiver(&url, &ca_file)).await.unwrap(), 202);
    let only = format!("{ca_file}\ntls_roots = \"none\"");
    assert_eq!(post(&receiver(&url, &only)).await.unwrap(), 202);
    assert_eq!(rx.requests.load(Ordering::SeqCst), 2);
    // Another CA's file does not make a certificate trusted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = PrivateCa::create(other_dir.path());
    let wrong = format!("ca_file = \"{}\"\ntls_roots = \"none\"", other.ca.display());
    assert!(post(&receiver(&url, &wrong))
        .await
        .unwrap_err()
        .is_connect());
    // A file without certificates is an error that names it.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let r = receiver(&url, &format!("ca_file = \"{}\"", empty.display()));
    let e = endpoint::http_client(&r).unwrap_err().to_string();
    assert!(
        e.contains("empty.pem") && e.contains("receiver hook"),
        "{e}"
    );
}

/// The live incident stage (the manager's delivery worker, as `run` uses it)
/// delivers to a receiver behind a private CA with its `ca_file`, and is
/// refused at the handshake without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_manager_delivers_through_a_private_ca_only_with_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = PrivateCa::create(dir.path());
    let rx = TlsReceiver::start(&ca).await;
    let open = |extra: &str, data: &std::path::Path, reg: &Registry| {
        let text = format!(
            "{}{extra}\n",
            generic_receiver(
                "hook",
                &rx.url(),
                r#"timeout = "10s", backoff_initial = "1h", backoff_max = "1h""#
            )
        );
        IncidentManager::open(&config(&text), reg, data, ManagerOptions::default()).unwrap()
    };
    let transition = [tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)];

    // Without ca_file: the handshake fails, counted as a connection failure,
    // and the receiver reads nothing.
    let (data, reg) = (tempfile::tempdir().unwrap(), Registry::new());
    let m = open("", data.path(), &reg);
    m.submit(&transition, 1000).unwrap();
    let failures = || {
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "connect")],
        )
    };
    eventually(Duration::from_secs(30), "a connect failure", || {
        failures() >= 1.0
    })
    .await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 0);
    m.shutdown(Duration::from_millis(10)).await;

    // With ca_file: delivered.
    let (data, reg) = (tempfile::tempdir().unwrap(), Registry::new());
    let m = open(
        &format!("ca_file = \"{}\"", ca.ca.display()),
        data.path(),
        &reg,
    );
    m.submit(&transition, 1000).unwrap();
    let delivered = || {
        metric(
            &reg,
            "crisiswatch_notifications_total",
            &[("receiver", "hook"), ("outcome", "delivered")],
        )
    };
    eventually(Duration::from_secs(30), "the delivery", || {
        delivered() == 1.0
    })
    .await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "connect")],
        ),
        0.0
    );
    assert_eq!(m.shutdown(Duration::from_secs(5)).await.pending, 0);
}

/// The failure detail of a delivery to a TLS receiver serving a
/// self-signed certificate made with `ext` (openssl `-addext` values),
/// pinned as the receiver's `ca_file`.
async fn refused_with(ext: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        "self.key",
        "-out",
        "self.pem",
        "-subj",
        "/CN=localhost",
    ];
    for e in ext {
        args.extend(["-addext", e]);
    }
    let out = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args(&args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = PrivateCa {
        ca: dir.path().join("self.pem"),
        cert: dir.path().join("self.pem"),
        key: dir.path().join("self.key"),
    };
    let rx = TlsReceiver::start(&own).await;
    let text = format!(
        "{}ca_file = \"{}\"\ntls_roots = \"none\"\n",
        generic_receiver(
            "hook",
            &rx.url(),
            r#"timeout = "10s", backoff_initial = "1h", backoff_max = "1h""#
        ),
        own.ca.display()
    );
    let (data, reg) = (tempfile::tempdir().unwrap(), Registry::new());
    let m = IncidentManager::open(&config(&text), &reg, data.path(), ManagerOptions::default())
        .unwrap();
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    eventually(Duration::from_secs(30), "a connect failure", || {
        metric(
            &reg,
            "crisiswatch_notification_failures_total",
            &[("receiver", "hook"), ("reason", "connect")],
        ) >= 1.0
    })
    .await;
    m.shutdown(Duration::from_millis(10)).await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 0);
    let rows = crisiswatch::incident::outbox::Outbox::open(data.path())
        .unwrap()
        .list(None, None, 10)
        .unwrap();
    rows[0].last_error.clone().unwrap_or_default()
}

/// Refused receiver certificates are explained, not only named by the TLS
/// stack: a self-signed CA certificate (`CA:TRUE`, what a bare `openssl req
/// -x509` often makes) served as the receiver's own is refused even with
/// that certificate as its `ca_file`, and the failure says what to make
/// instead; a certificate for another name says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_receiver_certificates_are_explained() {
    let why = refused_with(&[
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "basicConstraints=critical,CA:TRUE",
    ])
    .await;
    assert!(
        why.contains("CaUsedAsEndEntity") && why.contains("basicConstraints=critical,CA:FALSE"),
        "{why}"
    );
    let why = refused_with(&[
        "subjectAltName=DNS:other.example",
        "basicConstraints=critical,CA:FALSE",
    ])
    .await;
    assert!(why.contains("does not name the host of its url"), "{why}");
}

/// `signature` chooses the headers of a signed request beside the
/// contract's `X-Crisiswatch-Signature`, which every one carries.
#[tokio::test(start_paused = true)]
async fn the_signature_option_chooses_the_headers() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (name, scheme) in [
        ("both", ""),
        ("standard", "signature = \"standard-webhooks\""),
        ("legacy", "signature = \"crisiswatch\""),
    ] {
        text.push_str(&generic_receiver(name, &rx.url(), ""));
        text.push_str(&format!(
            "secret_env = \"CW_TEST_SCHEME_SECRET\"\n{scheme}\n"
        ));
    }
    let cfg = config_env(&text, &[]);
    std::env::set_var("CW_TEST_SCHEME_SECRET", "s3cret");
    let reg = Registry::new();
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    let reqs = rx.wait_for(3, Duration::from_secs(60)).await;
    m.shutdown(Duration::from_secs(1)).await;
    let key = Secret::new("s3cret");
    let mut seen = Vec::new();
    for r in &reqs {
        let standard = r.headers.contains_key("webhook-signature");
        let legacy = r.headers.contains_key("x-crisiswatch-signature");
        if standard {
            assert_eq!(
                signature::verify(&key, signed(r), &r.body, timestamp(r), 300),
                Ok(())
            );
        }
        if legacy {
            assert_eq!(
                r.headers["x-crisiswatch-signature"],
                signature::legacy(&key, &r.body)
            );
        }
        seen.push((standard, legacy));
    }
    seen.sort();
    assert_eq!(seen, [(false, true), (true, true), (true, true)]);
    // A scheme without a secret signs nothing: a configuration error.
    let text = format!(
        "{}signature = \"crisiswatch\"\n",
        generic_receiver("hook", &rx.url(), "")
    );
    let err = crisiswatch::config::Config::from_toml_str(&text, &std::collections::HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("receivers[0].signature"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_trust_store_is_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let ca = PrivateCa::create(dir.path());
    let rx = TlsReceiver::start(&ca).await;
    // The system store as rustls-native-certs reads it, pointed at the private CA
    // the way an operator installs a company CA (only this test reads it).
    std::env::set_var("SSL_CERT_FILE", &ca.ca);
    assert_eq!(
        post(&receiver(&rx.url(), "tls_roots = \"system\""))
            .await
            .unwrap(),
        202
    );
}

#[test]
fn tls_settings_are_validated() {
    let errs = |extra: &str| {
        let text = format!(
            "{}{extra}\n",
            generic_receiver("hook", "https://x.example/h", "")
        );
        match crisiswatch::config::Config::from_toml_str(&text, &std::collections::HashMap::new()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    assert!(errs("tls_skip_verify = true\nca_file = \"/ca.pem\"")
        .contains("receivers[0].tls_skip_verify"));
    assert!(errs("tls_roots = \"none\"").contains("receivers[0].tls_roots"));
    assert!(errs("tls_roots = \"mozilla\"").contains("tls_roots"));
    assert_eq!(errs("tls_roots = \"system\"\nca_file = \"/ca.pem\""), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_receiver_answer_is_read_only_up_to_the_limit_and_counted() {
    let rx = Receiver::start().await;
    // A refusal with a 16 MiB body: crisiswatch reads 4 KiB of it.
    rx.script([Reply::with_body(400, 16 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new();
    let cfg = config(&generic_receiver("hook", &rx.url(), ""));
    let m = IncidentManager::open(&cfg, &reg, dir.path(), ManagerOptions::default()).unwrap();
    m.submit(
        &[tr("a", "p", State::Firing, Severity::Warning, 1000, 1000)],
        1000,
    )
    .unwrap();
    let failed = |m: &IncidentManager| {
        m.outbox()
            .list(
                Some(crisiswatch::incident::outbox::Status::Failed),
                None,
                10,
            )
            .unwrap()
    };
    eventually(Duration::from_secs(30), "the notification failed", || {
        !failed(&m).is_empty()
    })
    .await;
    let row = &failed(&m)[0];
    let detail = row.last_error.as_deref().unwrap_or_default();
    assert!(detail.starts_with("HTTP 400: xxx"), "{detail}");
    assert!(detail.chars().count() <= 220, "{} characters", detail.len());
    assert_eq!(
        metric(
            &reg,
            "crisiswatch_notification_response_truncated_total",
            &[("receiver", "hook")]
        ),
        1.0
    );
    m.shutdown(Duration::from_secs(1)).await;
}
