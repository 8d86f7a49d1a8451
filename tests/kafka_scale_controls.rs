//! Operator actions across scaled instances (`[sources.kafka.scale_out]`,
//! the controls topic of `src/run/scaled/controls.rs`), against a real
//! Kafka-protocol broker (Tansu), two real `crisiswatch run` processes in
//! one group and a real HTTP receiver:
//!
//! * a reload request is refused with why (one configuration per group),
//!   and a SIGHUP is refused with a log line, not the end of the process;
//! * a silence created through one instance's admin API mutes an incident
//!   the other instance holds (its `open` is recorded `muted` there and
//!   never reaches the receiver);
//! * a close request posted to the instance that does not hold an incident
//!   closes it at the receiver (`resolve` with reason `closed`), and its
//!   outcome is readable from the instance that received it;
//! * an acknowledgement posted to the instance that does not hold an
//!   incident reaches the receiver (`acknowledge`, sent by the holder), and
//!   the incident is then resolved by hand through that instance's console;
//! * expiring the silence on the holder ends it on the instance that made it;
//! * each instance's `GET /api/v1/incidents` names the other's incidents
//!   (`elsewhere`) with the other's bound admin address, and its console
//!   lists them read-only with the holding instance;
//! * `crisiswatch incident close --wait` run against the instance that does
//!   not hold an incident closes it (through that instance's service and
//!   the controls topic) and prints the outcome;
//! * a close request for an incident nobody holds any more (one that
//!   resolved between the check and the publish) is answered `not_open`
//!   after `scale_out.close_wait`;
//! * an instance stopped gracefully drops out of the other's `elsewhere`
//!   at once (a tombstone for its holding), not after three minutes;
//! * an instance restarted reads the whole topic again and applies nothing
//!   twice; it writes a tombstone for the silence that ended, and every
//!   instance reads it back as a tombstone (nothing unreadable, nothing
//!   brought back).
//!
//! Which instance holds which incident is up to the consumer group: the
//! test finds out through the admin API from a first crisis and picks its
//! roles from that; a product's incidents stay on their partition's
//! instance, so the second crisis's incident of the silenced product opens
//! on the same holder.

mod kafka_support;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_support::broker::Broker;
use kafka_support::client::{create_topics, produce, Out};
use kafka_support::receiver::Receiver;
use kafka_support::service::{Service, BIN};
use kafka_support::{base_config, hour_t0, wait_until};

const TOKEN: &str = "controls-test-admin-token";
const PRODUCTS: [&str; 4] = ["p1", "p2", "p3", "p4"];

const RULES: &str = r#"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 10 }
clear = 4

[[incidents.routes]]
name = "by_product"
group_by = ["product"]
receivers = ["hook"]
"#;

/// Seconds `from..to` of traffic: an order every two seconds on each of the
/// two partitions, and a complaint every 20 s for every product in minutes
/// 3–8 and 33–38 (each product's incident opens, twice).
fn traffic(from: i64, to: i64) -> Vec<Out> {
    let t0 = hour_t0();
    let mut out = Vec::new();
    for s in from..to {
        let ts = t0 + s * 1000;
        let mut push = |id: String, kind: &str, p: &str, partition: i32| {
            let json =
                format!(r#"{{"id":"{id}","type":"{kind}","ts":{ts},"attrs":{{"product":"{p}"}}}}"#);
            out.push(Out::new("events", partition, json.into_bytes()));
        };
        if s % 2 == 0 {
            push(format!("o{s}"), "order", PRODUCTS[(s / 2 % 4) as usize], 0);
            push(format!("q{s}"), "order", PRODUCTS[(s / 2 % 4) as usize], 1);
        }
        if ((180..480).contains(&s) || (1980..2280).contains(&s)) && s % 20 == 0 {
            for (i, p) in PRODUCTS.iter().enumerate() {
                push(format!("c{s}-{p}"), "complaint", p, (i % 2) as i32);
            }
        }
    }
    out
}

fn config(bs: &str, data: &str, url: &str, token_file: &str) -> String {
    let mut cfg = base_config(bs, "ctl", &[("events", None)], "", data).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nadmin_token_file = \"{token_file}\""),
    );
    // No wall-clock time for a quiet stream: what fires comes from the data.
    // Nor idle input partitions: the test pauses between its phases, and a
    // partition reported idle would let the other one's events move the
    // owners' clocks past its own when the traffic comes back.
    cfg = cfg.replacen("idle_timeout = \"2s\"", "idle_timeout = \"1h\"", 1);
    cfg = cfg.replacen(
        "idle_partition_timeout = \"2s\"",
        "idle_partition_timeout = \"1h\"",
        1,
    );
    cfg = cfg.replacen("[incidents]\n", "[incidents]\nupdate_interval = \"0\"\n", 1);
    cfg.push_str(
        "\n[sources.kafka.scale_out]\nshard_partitions = 2\nincident_partitions = 4\ncheckpoint_interval = \"500ms\"\ntopic_prefix = \"ctl\"\nclose_wait = \"2s\"\n",
    );
    cfg.push_str(RULES);
    cfg.push_str(&format!(
        "\n[[receivers]]\nname = \"hook\"\nkind = \"generic\"\nacknowledge = true\nurl = \"{url}\"\n"
    ));
    cfg
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// The notifications of incident `key`: (action, reason).
fn notes(r: &Receiver, key: &str) -> Vec<(String, String)> {
    r.bodies()
        .iter()
        .filter(|b| b["dedup_key"] == key)
        .map(|b| {
            (
                b["action"].as_str().unwrap_or_default().to_string(),
                b["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The open incidents an instance holds: key → product.
fn held(s: &Service) -> BTreeMap<String, String> {
    let v = json(&s.get("/api/v1/incidents").1);
    v["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["key"].as_str().unwrap_or_default().to_string(),
                i["labels"]["product"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The holding in which `s` lists incident `key` as held by another
/// instance, if it does.
fn elsewhere(s: &Service, key: &str) -> Option<serde_json::Value> {
    let v = json(&s.get("/api/v1/incidents").1);
    v["elsewhere"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| {
            h["incidents"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["key"] == key)
        })
        .cloned()
}

fn sees_elsewhere(s: &Service, key: &str) -> bool {
    elsewhere(s, key).is_some()
}

/// The instance id `s` reports.
fn instance(s: &Service) -> String {
    json(&s.get("/api/v1/incidents").1)["instance"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether `s` lists any holding of instance `id`.
fn lists_instance(s: &Service, id: &str) -> bool {
    json(&s.get("/api/v1/incidents").1)["elsewhere"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["instance"] == id)
}

/// A console form POST (`application/x-www-form-urlencoded`) to `s`: the
/// status.
fn form(s: &Service, path: &str, fields: &[(&str, &str)]) -> u16 {
    use std::io::{Read, Write};
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr(),
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `crisiswatch incident --config <s's config> ARGS`: (success, stdout).
fn cli(s: &Service, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .arg("incident")
        .arg("--config")
        .arg(s.dir.join(format!("{}.toml", s.name)))
        .args(args)
        .output()
        .expect("run crisiswatch incident");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn operator_actions_made_on_one_instance_act_on_the_other_s_incidents() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topics(&bs, &[("events", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let r = Receiver::start();
    let start = |name: &str| {
        let data = dir
            .path()
            .join(format!("data-{name}"))
            .display()
            .to_string();
        Service::start(
            dir.path(),
            name,
            &config(&bs, &data, &r.url, &token_file.display().to_string()),
        )
    };
    let mut services = [start("a"), start("b")];

    // Minutes 0–14: every product's incident opens and stays open.
    produce(&bs, &traffic(0, 840), Duration::from_secs(30));
    let mut holder: BTreeMap<String, (usize, String)> = BTreeMap::new();
    wait_until(
        Duration::from_secs(90),
        "the four incidents opened, each held by one instance",
        || {
            holder.clear();
            for (i, s) in services.iter().enumerate() {
                for (key, product) in held(s) {
                    holder.insert(key, (i, product));
                }
            }
            holder.len() == 4
                && holder
                    .keys()
                    .all(|k| notes(&r, k).iter().any(|n| n.0 == "open"))
        },
    );
    let keys: Vec<String> = holder.keys().cloned().collect();
    let (silenced, closed) = (&keys[0], &keys[1]);

    // A scaled instance does not reload (one configuration per group): the
    // API says why, and a SIGHUP is refused with a log line — its default
    // action ended the process, as a `kill -9` does.
    let (status, reply) = services[0].request("POST", "/api/v1/reload", Some(TOKEN), "");
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply.contains("scale_out") && reply.contains("stop every instance"),
        "{reply}"
    );
    for s in &services {
        s.signal("HUP");
    }
    wait_until(
        Duration::from_secs(10),
        "both SIGHUPs refused in the logs",
        || {
            services
                .iter()
                .all(|s| s.stderr_text().contains("Configuration not reloaded"))
        },
    );
    for s in &mut services {
        assert!(
            s.running(),
            "{} ended on SIGHUP:\n{}",
            s.name,
            s.stderr_text()
        );
    }
    // Each applied the other's list of the incidents it holds.
    wait_until(
        Duration::from_secs(30),
        "each instance applied the other's holding",
        || {
            services.iter().all(|s| {
                s.metric("crisiswatch_scale_controls_applied_total{kind=\"holding\"}")
                    .is_some_and(|n| n > 0.0)
            })
        },
    );

    // A close posted to the instance that does not hold `closed`.
    let (hc, _) = holder[closed].clone();
    let oc = &services[1 - hc];
    wait_until(
        Duration::from_secs(20),
        "the other instance lists the incident as held elsewhere",
        || sees_elsewhere(oc, closed),
    );
    // The holding names the holder's bound admin address (its
    // `server.listen` says port 0) and its instance id.
    let h = elsewhere(oc, closed).unwrap_or_default();
    assert_eq!(h["listen"], services[hc].addr(), "{h}");
    let holder_id = instance(&services[hc]);
    assert_eq!(h["instance"], holder_id.as_str());
    // The console lists it read-only, with the holding instance.
    let (status, page) = oc.get("/");
    assert_eq!(status, 200);
    let row = format!(r#"<tr class="elsewhere" data-key="{closed}" data-instance="{holder_id}">"#);
    assert!(
        page.contains(&row),
        "the console shows {closed} held by {holder_id}:\n{page}"
    );
    let body = format!(r#"{{"key":"{closed}","reason":"known outage","by":"test"}}"#);
    let (status, reply) = oc.request("POST", "/api/v1/incidents/close", Some(TOKEN), &body);
    assert_eq!(status, 202, "{reply}");
    let id = json(&reply)["request"].as_i64().expect("request id");
    wait_until(
        Duration::from_secs(30),
        "the holder closed the incident at the receiver",
        || notes(&r, closed).contains(&("resolve".into(), "closed".into())),
    );
    wait_until(
        Duration::from_secs(20),
        "the outcome is readable where the close was requested",
        || json(&oc.get(&format!("/api/v1/incidents/close/{id}")).1)["outcome"] == "closed",
    );
    assert!(!held(&services[hc]).contains_key(closed.as_str()));

    // An acknowledgement posted to the instance that does not hold `acked`.
    let acked = &keys[2];
    let (ha, _) = holder[acked].clone();
    let oa = &services[1 - ha];
    wait_until(
        Duration::from_secs(20),
        "the other instance lists the acknowledged incident as held elsewhere",
        || sees_elsewhere(oa, acked),
    );
    let body = format!(r#"{{"key":"{acked}","by":"ana","note":"on it"}}"#);
    let (status, reply) = oa.request("POST", "/api/v1/incidents/ack", Some(TOKEN), &body);
    assert_eq!(status, 200, "{reply}");
    wait_until(
        Duration::from_secs(30),
        "the holder sent the acknowledgement to the receiver",
        || notes(&r, acked).iter().any(|n| n.0 == "acknowledge"),
    );
    assert!(
        services[ha].get("/api/v1/feedback").1.contains("on it"),
        "the holder's feedback log has the acknowledgement"
    );
    // Resolved by hand through the console of the instance that does not
    // hold it.
    let status = form(
        oa,
        "/console/incidents/close",
        &[
            ("key", acked),
            ("reason", "seen"),
            ("by", "con"),
            ("token", TOKEN),
        ],
    );
    assert_eq!(status, 303, "the console took the close");
    wait_until(
        Duration::from_secs(30),
        "the holder closed the incident closed through the console",
        || notes(&r, acked).contains(&("resolve".into(), "closed".into())),
    );

    // The CLI, run against the instance that does not hold `cli_closed`.
    let cli_closed = &keys[3];
    let (hl, _) = holder[cli_closed].clone();
    let ol = &services[1 - hl];
    wait_until(
        Duration::from_secs(20),
        "the other instance lists the incident to close by CLI as held elsewhere",
        || sees_elsewhere(ol, cli_closed),
    );
    let (ok, out) = cli(ol, &["list"]);
    let holder_l = instance(&services[hl]);
    assert!(
        ok && out.contains(&format!("{cli_closed}\n"))
            && out.contains(&format!("held by instance {holder_l}")),
        "incident list shows the incident held elsewhere:\n{out}"
    );
    let (ok, out) = cli(
        ol,
        &[
            "close", cli_closed, "--reason", "by hand", "--by", "cli", "--wait", "30s",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains(": closed."), "{out}");
    wait_until(
        Duration::from_secs(30),
        "the holder closed the incident closed by CLI at the receiver",
        || notes(&r, cli_closed).contains(&("resolve".into(), "closed".into())),
    );
    let (ok, out) = cli(ol, &["close", "no-such-incident", "--reason", "x"]);
    assert!(
        !ok && out.contains("no running instance of the group holds it"),
        "{out}"
    );

    // Minutes 14–30: the other incidents resolve.
    produce(&bs, &traffic(840, 1800), Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "every incident resolved", || {
        keys.iter()
            .all(|k| notes(&r, k).iter().any(|n| n.0 == "resolve"))
            && services.iter().all(|s| held(s).is_empty())
    });

    // A close request for an incident that resolved between the API's (or
    // the CLI's) check and the publish: nobody holds it, so nobody applies
    // it. The race cannot be timed from outside, so the request is written
    // into the outbox the way the API and the CLI write it.
    let late = &keys[2];
    wait_until(
        Duration::from_secs(20),
        "no instance lists the resolved incident as held elsewhere",
        || !sees_elsewhere(&services[1 - ha], late),
    );
    let db = dir
        .path()
        .join(format!("data-{}", services[1 - ha].name))
        .join("outbox.sqlite");
    let late_id = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute(
            "INSERT INTO close_requests (incident, reason, requested_by, requested_ms) VALUES (?1, 'late', 'test', ?2)",
            rusqlite::params![late, chrono::Utc::now().timestamp_millis()],
        )
        .unwrap();
        conn.last_insert_rowid()
    };
    wait_until(
        Duration::from_secs(20),
        "the close request nobody holds is answered not_open",
        || {
            json(
                &services[1 - ha]
                    .get(&format!("/api/v1/incidents/close/{late_id}"))
                    .1,
            )["outcome"]
                == "not_open"
        },
    );
    assert_eq!(
        notes(&r, late).iter().filter(|n| n.0 == "resolve").count(),
        1
    );

    // A silence made on the instance that does not hold `silenced`'s product.
    let (h, product) = holder[silenced].clone();
    let (hs, os) = (&services[h], &services[1 - h]);
    let body = format!(
        r#"{{"matchers":["product={product}"],"duration":"1h","created_by":"test","comment":"known"}}"#
    );
    let (status, reply) = os.request("POST", "/api/v1/silences", Some(TOKEN), &body);
    assert_eq!(status, 201, "{reply}");
    let silence = json(&reply)["id"].as_str().unwrap_or_default().to_string();
    wait_until(
        Duration::from_secs(20),
        "the silence reached the holder",
        || hs.get("/api/v1/silences").1.contains(&silence),
    );

    // Minutes 30–44: the second crisis opens every product's incident
    // again; the silenced product's is muted on its holder.
    produce(&bs, &traffic(1800, 2640), Duration::from_secs(30));
    let opened = |p: &str| {
        r.bodies()
            .iter()
            .filter(|b| b["action"] == "open" && b["labels"]["product"] == p)
            .count()
    };
    wait_until(
        Duration::from_secs(60),
        "the second crisis opened the incidents not silenced, and the silenced one on its holder",
        || {
            PRODUCTS
                .iter()
                .filter(|p| **p != product)
                .all(|p| opened(p) == 2)
                && held(hs).values().any(|p| *p == product)
        },
    );
    let muted = hs
        .metric("crisiswatch_notifications_total{outcome=\"muted\",receiver=\"hook\"}")
        .unwrap_or(0.0);
    assert!(
        muted >= 1.0,
        "the holder muted the silenced incident's open: {muted}\n{}",
        hs.stderr_text()
    );
    assert_eq!(opened(&product), 1, "the silenced product paged again");

    // Expired on the holder, the silence ends on the instance that made it.
    let (status, reply) = hs.request(
        "DELETE",
        &format!("/api/v1/silences/{silence}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{reply}");
    wait_until(
        Duration::from_secs(20),
        "the expiry reached the instance that made the silence",
        || {
            json(&os.get("/api/v1/silences").1)["silences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["id"] == silence.as_str() && x["state"] == "expired")
        },
    );
    // The instance that requested the close restarts and reads the whole
    // topic again: nothing is applied twice there (silence, outcome,
    // feedback), the outcome stays readable, and no second resolve or
    // acknowledgement goes out.
    let count = |key: &str, action: &str| notes(&r, key).iter().filter(|n| n.0 == action).count();
    assert_eq!(
        (count(closed, "resolve"), count(acked, "acknowledge")),
        (1, 1)
    );
    let name = ["a", "b"][1 - hc];
    let stopped = instance(&services[1 - hc]);
    assert!(lists_instance(&services[hc], &stopped));
    services[1 - hc].sigterm();
    assert!(services[1 - hc]
        .wait_exit(Duration::from_secs(30))
        .is_some());
    // Stopped gracefully, it left a tombstone for its holding: the other
    // instance no longer lists it (a crashed one's list ages out in 3 min).
    wait_until(
        Duration::from_secs(10),
        "the stopped instance dropped out of the other's elsewhere",
        || !lists_instance(&services[hc], &stopped),
    );
    services[1 - hc] = start(name);
    let oc = &services[1 - hc];
    wait_until(
        Duration::from_secs(30),
        "the restarted instance read the controls topic to its end",
        || oc.stderr_text().contains("Controls topic read to its end"),
    );
    // A record applied twice would show by now.
    std::thread::sleep(Duration::from_secs(1));
    for kind in ["silence", "close", "outcome", "feedback"] {
        let series = format!("crisiswatch_scale_controls_applied_total{{kind=\"{kind}\"}}");
        assert_eq!(oc.metric(&series), Some(0.0), "{kind} applied again");
    }
    assert_eq!(
        json(&oc.get(&format!("/api/v1/incidents/close/{id}")).1)["outcome"],
        "closed"
    );
    assert_eq!(
        (count(closed, "resolve"), count(acked, "acknowledge")),
        (1, 1)
    );
    // The restarted instance wrote a tombstone for the silence that ended;
    // both instances read it back as a tombstone: nothing unreadable, and
    // the silence stays ended.
    wait_until(
        Duration::from_secs(10),
        "the restarted instance tombstoned the ended silence",
        || {
            oc.metric("crisiswatch_scale_controls_published_total{kind=\"tombstone\"}")
                .unwrap_or(0.0)
                >= 1.0
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    for s in &services {
        assert_eq!(
            s.metric("crisiswatch_scale_unreadable_messages_total{topic=\"controls\"}"),
            Some(0.0),
            "{}",
            s.stderr_text()
        );
        assert!(json(&s.get("/api/v1/silences").1)["silences"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|x| x["id"] != silence.as_str() || x["state"] == "expired"));
    }
    assert_eq!(
        oc.metric("crisiswatch_scale_controls_applied_total{kind=\"silence\"}"),
        Some(0.0)
    );
    for s in &services {
        s.sigterm();
    }
}
