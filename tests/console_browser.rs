//! The web console in a real headless browser (Debian's chromium driven by
//! chromedriver), against a real `crisiswatch run` on a real Kafka-protocol
//! broker (Tansu) with a real webhook receiver:
//!
//! * the page shows the open incident of the running service, with its
//!   alerts, chart and timeline;
//! * hostile attribute values and event ids (`"><img onerror=…>`,
//!   `<script>…</script>`) render as text: no element is injected, no
//!   script runs;
//! * a silence made through the page needs the admin token (a wrong one
//!   changes nothing), and it mutes: the next incident it matches is recorded
//!   as muted and never reaches the receiver;
//! * acknowledge and label through the page land in the API.
//!
//! Screenshots go to `target/tmp/console-screenshots/` (not committed).

mod console_support;
mod kafka_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use console_support::Browser;
use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::Service;
use kafka_support::{base_config, wait_until};

const TOKEN: &str = "console-test-admin-token";
const HOSTILE: &str = r#""><img src=x onerror=alert(1)>"#;
const SCRIPT_ID: &str = "<script>document.title='pwned'</script>";

fn event(id: &str, kind: &str, ts: i64, product: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "type": kind, "ts": ts, "attrs": {"product": product, "channel": "\"'><svg onload=alert(2)>"}})
        .to_string()
        .into_bytes()
}

/// Twenty minutes of orders over three products ending half a minute ago,
/// with a burst of complaints on the hostile product in the last six minutes
/// (ids that are markup).
fn scenario() -> Vec<Out> {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 20 * 60_000 - 30_000;
    let mut out = Vec::new();
    for s in 0..1200i64 {
        let ts = start + s * 1000;
        let p = ["p1", HOSTILE, "p4"][(s % 3) as usize];
        out.push(Out::new(
            "c-events",
            (s % 2) as i32,
            event(&format!("o{s}"), "order", ts, p),
        ));
        if s >= 840 && s % 6 == 0 {
            out.push(Out::new(
                "c-events",
                (s % 2) as i32,
                event(&format!("{SCRIPT_ID}-{s}"), "complaint", ts, HOSTILE),
            ));
        }
    }
    out
}

/// A burst of complaints on p4 over the last three minutes.
fn p4_burst() -> Vec<Out> {
    let now = chrono::Utc::now().timestamp_millis();
    (0..60i64)
        .map(|i| {
            Out::new(
                "c-events",
                (i % 2) as i32,
                event(
                    &format!("p4-c{i}"),
                    "complaint",
                    now - 180_000 + i * 3000,
                    "p4",
                ),
            )
        })
        .collect()
}

fn config(bs: &str, data: &str, url: &str, token_file: &str) -> String {
    let cfg = base_config(bs, "gc", &[("c-events", None)], "", data).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nadmin_token_file = \"{token_file}\""),
    );
    format!(
        r#"{cfg}
[[rules]]
name = "complaints"
description = "Complaints per product over 30 minutes."
group_by = ["product"]
window = "30m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = 20, critical = 50 }}
clear = 8

[[incidents.routes]]
name = "product"
group_by = ["product"]
group_window = "0s"

[[receivers]]
name = "hook"
kind = "generic"
url = "{url}"
"#
    )
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn incidents(svc: &Service) -> Vec<serde_json::Value> {
    let (status, body) = svc.request("GET", "/api/v1/incidents", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["incidents"].as_array().unwrap().clone()
}

fn opened_for(r: &Receiver, product: &str) -> bool {
    r.bodies()
        .iter()
        .any(|b| b["action"] == "open" && b["group"]["product"] == product)
}

/// The incident article whose text names `product`.
fn article(b: &Browser, product: &str) -> String {
    b.find_all("article.incident", None)
        .into_iter()
        .find(|a| b.text(a).contains(product))
        .unwrap_or_else(|| panic!("no incident on {product} in the page:\n{}", b.source()))
}

/// Submits a form by clicking `button` and waits for the redirect's page.
///
/// The page before the click is marked; the wait ends only once a page without
/// that mark (the answer) has loaded. Looking at the URL alone is not enough: after
/// an earlier form the old page's URL already holds `done=`, and its elements go
/// stale while the answer loads.
fn submit(b: &Browser, button: &str) {
    b.script("window.__crisiswatchOldPage = true; return null;");
    b.click(button);
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = |b: &Browser| {
        b.script(
            "return window.__crisiswatchOldPage === undefined \
             && document.readyState === 'complete';",
        ) == serde_json::Value::Bool(true)
    };
    while !(answered(b) && (b.url().contains("done=") || !b.find_all("p.bad", None).is_empty())) {
        assert!(
            Instant::now() < deadline,
            "no answer to the form: {}",
            b.url()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_console_shows_incidents_mutes_through_silences_and_renders_hostile_values_as_text() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("c-events", 2)]);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let cfg = config(
        &bs,
        &data.display().to_string(),
        &receiver.url,
        &token_file.display().to_string(),
    );
    let svc = Service::start(dir.path(), "c", &cfg);
    produce(&bs, &scenario(), Duration::from_secs(30));
    wait_until(
        Duration::from_secs(90),
        "the incident on the hostile product opens",
        || opened_for(&receiver, HOSTILE),
    );

    let b = Browser::start();
    let home = format!("http://{}/", svc.addr());
    // The console samples the worst slices on the engine's ticks: the
    // incident can open before its slice's first sample is taken.
    wait_until(
        Duration::from_secs(20),
        "the incident's chart has its first sample",
        || {
            b.goto(&home);
            let inc = article(&b, HOSTILE);
            b.find_all("svg.chart", Some(&inc)).len() == 1
        },
    );
    b.goto(&home);
    // The open incident, its alerts and timeline are there.
    let inc = article(&b, HOSTILE);
    let text = b.text(&inc);
    assert!(text.contains("complaints"), "{text}");
    assert!(text.contains("Timeline"), "{text}");
    assert!(text.contains("hook: delivered"), "{text}");
    // Hostile values are text: shown literally, nothing injected, nothing run.
    assert!(text.contains(&format!("product={HOSTILE}")), "{text}");
    assert!(text.contains(SCRIPT_ID), "{text}");
    assert!(b.find_all("img", None).is_empty(), "an <img> was injected");
    assert!(
        b.find_all("script", None).is_empty(),
        "a <script> was injected"
    );
    assert!(b.find_all("svg [onload], [onerror]", None).is_empty());
    assert_eq!(b.script("return document.title"), "crisiswatch console");
    assert_eq!(
        b.find_all("svg.chart", Some(&inc)).len(),
        1,
        "the indicator chart"
    );
    assert!(b.text(&b.find("#rules", None)).contains("complaints"));
    assert!(b.text(&b.find("#health", None)).contains("hook"));
    b.screenshot(&shots().join("1-open-incident.png"));

    // A silence with a wrong token changes nothing.
    let form = b.find("form.new-silence", None);
    let fill = |name: &str, value: &str| {
        b.type_into(&b.find(&format!("input[name={name}]"), Some(&form)), value)
    };
    fill("matchers", "rule=complaints product=p4");
    fill("by", "ana");
    fill("comment", "<b>known</b> p4 issue");
    fill("token", "not-the-token");
    submit(&b, &b.find("button", Some(&form)));
    assert!(b
        .text(&b.find("p.bad", None))
        .contains("Wrong or missing admin token"));
    let (_, silences) = svc.request("GET", "/api/v1/silences", Some(TOKEN), "");
    assert!(silences.contains("\"silences\":[]"), "{silences}");

    // With the token it is made, and listed.
    b.goto(&home);
    let form = b.find("form.new-silence", None);
    let fill = |name: &str, value: &str| {
        b.type_into(&b.find(&format!("input[name={name}]"), Some(&form)), value)
    };
    fill("matchers", "rule=complaints product=p4");
    fill("by", "ana");
    fill("comment", "<b>known</b> p4 issue");
    fill("token", TOKEN);
    submit(&b, &b.find("button", Some(&form)));
    assert!(b.text(&b.find("p.flash", None)).contains("created"));
    // A crafted link cannot put its own words in the console's status line:
    // only a message the console signed is shown.
    let (_, spoofed) = svc.request(
        "GET",
        "/?done=Session%20expired%3A%20mail%20your%20admin%20token",
        Some(TOKEN),
        "",
    );
    assert!(!spoofed.contains("Session expired"), "{spoofed}");
    b.goto(&home);
    let row = b.find("tr.silence.active", None);
    let row_text = b.text(&row);
    assert!(
        row_text.contains("product=p4") && row_text.contains("<b>known</b> p4 issue"),
        "{row_text}"
    );

    // It mutes: the p4 crisis opens an incident that nobody is paged for.
    produce(&bs, &p4_burst(), Duration::from_secs(30));
    wait_until(
        Duration::from_secs(90),
        "the p4 incident opens (muted)",
        || {
            incidents(&svc)
                .iter()
                .any(|i| i["labels"]["product"] == "p4" && i["opened"] == true)
        },
    );
    assert!(
        !opened_for(&receiver, "p4"),
        "a muted incident reached the receiver"
    );
    b.goto(&home);
    let p4 = article(&b, "product=p4");
    let p4_text = b.text(&p4);
    assert!(p4_text.contains("muted by silence"), "{p4_text}");
    assert!(p4_text.contains("hook: muted"), "{p4_text}");
    assert!(!b.text(&article(&b, HOSTILE)).contains("muted by silence"));

    // Acknowledge and label the hostile incident through the page.
    let inc = article(&b, HOSTILE);
    let ack = b.find("form.ack", Some(&inc));
    b.type_into(&b.find("input[name=by]", Some(&ack)), "ana");
    b.type_into(&b.find("input[name=token]", Some(&ack)), TOKEN);
    submit(&b, &b.find("button", Some(&ack)));
    assert!(b.text(&b.find("p.flash", None)).contains("acknowledged"));
    let inc = article(&b, HOSTILE);
    let label = b.find("form.label", Some(&inc));
    b.type_into(&b.find("input[name=by]", Some(&label)), "bo");
    b.type_into(&b.find("input[name=token]", Some(&label)), TOKEN);
    submit(&b, &b.find("button[value=noise]", Some(&label)));
    assert!(b.text(&b.find("p.flash", None)).contains("noise"));
    let hostile = incidents(&svc)
        .into_iter()
        .find(|i| i["labels"]["product"] == HOSTILE)
        .unwrap();
    assert_eq!(hostile["acknowledged"]["by"], "ana", "{hostile}");
    assert_eq!(hostile["label"]["label"], "noise", "{hostile}");
    let inc_text = b.text(&article(&b, HOSTILE));
    assert!(
        inc_text.contains("acknowledged by ana") && inc_text.contains("noise (by bo)"),
        "{inc_text}"
    );
    b.screenshot(&shots().join("2-silenced-acknowledged.png"));

    // Forms without the token are refused by the server, not only by the page.
    let (status, _) = svc.request("POST", "/console/silences/expire", None, "id=x");
    assert_eq!(status, 415, "a JSON content type is not a form");
    let addr = svc.addr().to_string();
    let raw = |body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "POST /console/silences HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(raw("matchers=rule%3Dcomplaints&duration=1h&by=x").starts_with("HTTP/1.0 401"));
    assert!(
        raw("matchers=rule%3Dcomplaints&duration=1h&by=x&token=nope").starts_with("HTTP/1.0 401")
    );
    let (_, silences) = svc.request("GET", "/api/v1/silences", Some(TOKEN), "");
    assert_eq!(silences.matches("\"id\"").count(), 1, "{silences}");
}
