//! The stage against a real outbox and incident manager (no broker: what
//! it sends stays queued in the producer): tombstones read back forget
//! their key and bring nothing back, old records are tombstoned once, and
//! this instance's close request that nobody holds is answered `not_open`.

use super::*;
use crate::config::{Config, ProcessEnv};
use crate::incident::peers::Held;
use crate::incident::silence::{Matcher, Silence};
use crate::incident::ManagerOptions;

const CONFIG: &str = r#"
[sources.kafka]
brokers = "127.0.0.1:1"
topics = [{ name = "events" }]
[sources.kafka.scale_out]
"#;

fn json(c: Control) -> Vec<u8> {
    encode(c)
}

fn count(v: &prometheus::IntCounterVec, label: &str) -> u64 {
    v.with_label_values(&[label]).get()
}

struct Fixture {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    st: Controls,
    me: String,
}

fn fixture(close_wait: Duration) -> Fixture {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml_str(CONFIG, &ProcessEnv).unwrap();
    let registry = prometheus::Registry::new();
    let manager =
        IncidentManager::open(&cfg, &registry, dir.path(), ManagerOptions::default()).unwrap();
    let outbox = Arc::clone(manager.outbox());
    let me = outbox.instance_id().unwrap();
    let k = cfg.sources.kafka.clone().unwrap();
    let st = Controls::new(Parts {
        topic: "t.controls".into(),
        listen: "127.0.0.1:9464".into(),
        partitions: 4,
        manager,
        outbox,
        peers: Arc::new(Peers::new(me.clone())),
        producer: Arc::new(Ordered::new(&k).unwrap()),
        scaled: Arc::new(crate::run::scaled::ScaledMetrics::register(&registry).unwrap()),
        metrics: ControlsMetrics::register(&registry).unwrap(),
        retention: Duration::from_secs(3600),
        close_wait,
    });
    Fixture {
        _rt: rt,
        _dir: dir,
        st,
        me,
    }
}

#[test]
fn a_tombstone_read_forgets_its_key_and_brings_nothing_back() {
    let mut f = fixture(Duration::from_secs(60));
    let st = &mut f.st;
    let now = now_ms();

    // A silence this instance still has active, tombstoned elsewhere (it
    // was expired early while this instance was away): it ends here.
    let s = Silence::new(
        vec![Matcher::parse("product=p1").unwrap()],
        now,
        3_600_000,
        "ann".into(),
        String::new(),
    )
    .unwrap();
    st.p.outbox.add_silence(&s).unwrap();
    let key = format!("silence/{}", s.id);
    st.read(&key, &json(Control::Silence { silence: s.clone() }));
    st.read_tombstone(&key);
    assert!(!st.seen.contains_key(&key));
    let ended = st.p.outbox.silences().unwrap();
    assert!(!ended[0].active(now_ms() + 1), "the silence ended here");
    assert_eq!(count(&st.p.metrics.applied, "silence"), 1);
    // Ended, and not on the topic any more: never sent again; nor is a
    // silence that ended before this instance (re)started reading.
    let before = Silence::new(
        vec![Matcher::parse("product=p2").unwrap()],
        now - 7_200_000,
        3_600_000,
        "ann".into(),
        String::new(),
    )
    .unwrap();
    st.p.outbox.add_silence(&before).unwrap();
    st.publish().unwrap();
    assert_eq!(count(&st.p.metrics.published, "silence"), 0);

    // Another instance's holding, then its tombstone (it stopped).
    let held = Holding {
        instance: "b".into(),
        listen: "127.0.0.1:1".into(),
        at_ms: now,
        incidents: vec![Held {
            key: "k".into(),
            route: "r".into(),
            labels: Vec::new(),
            partition: 1,
            started_at: 0,
            severity: None,
            opened: true,
        }],
    };
    st.read(
        "holding/b",
        &json(Control::Holding {
            holding: held.clone(),
        }),
    );
    assert!(st.p.peers.holder("k").is_some());
    assert_eq!(st.p.outbox.holdings().unwrap().len(), 1);
    st.read_tombstone("holding/b");
    assert!(st.p.peers.holder("k").is_none());
    assert!(st.p.outbox.holdings().unwrap().is_empty());
    assert!(st.gone.contains("holding/b"));
    // It restarts and publishes again: on the topic again, its key can be
    // tombstoned again once it is old.
    st.read(
        "holding/b",
        &json(Control::Holding {
            holding: held.clone(),
        }),
    );
    assert!(st.p.peers.holder("k").is_some());
    assert!(!st.gone.contains("holding/b"));

    // Another instance's close request, then its tombstone.
    let close = Control::Close {
        origin: "b".into(),
        id: 1,
        incident: "k".into(),
        reason: "r".into(),
        by: "x".into(),
        requested_ms: now,
        partition: Some(1),
    };
    st.read("close/b/1", &json(close.clone()));
    assert!(st.requests.contains_key("close/b/1"));
    st.read_tombstone("close/b/1");
    assert!(st.requests.is_empty());

    // A tombstone is no unreadable record; garbage is.
    let unreadable = |st: &Controls| {
        st.p.scaled
            .unreadable
            .with_label_values(&["controls"])
            .get()
    };
    assert_eq!(unreadable(st), 0);
    st.read("x", b"not json");
    assert_eq!(unreadable(st), 1);
}

#[test]
fn records_past_the_retention_are_tombstoned_once() {
    let mut f = fixture(Duration::from_secs(60));
    let st = &mut f.st;
    let old = Control::Closed {
        origin: "b".into(),
        id: 1,
        outcome: "closed".into(),
        done_ms: now_ms() - 2 * 3_600_000,
        by_instance: "c".into(),
    };
    let recent = Control::Closed {
        origin: "b".into(),
        id: 2,
        outcome: "closed".into(),
        done_ms: now_ms(),
        by_instance: "c".into(),
    };
    st.read("closed/b/1", &json(old));
    st.read("closed/b/2", &json(recent));
    st.tidy();
    st.tidy();
    assert_eq!(count(&st.p.metrics.published, "tombstone"), 1);
    assert!(st.gone.contains("closed/b/1"));
    assert!(!st.gone.contains("closed/b/2"));
}

#[test]
fn a_close_request_nobody_holds_is_answered_not_open_by_its_requester() {
    let mut f = fixture(Duration::ZERO);
    let me = f.me.clone();
    let st = &mut f.st;
    let now = now_ms();
    let request = |st: &mut Controls, incident: &str| {
        let id = st.p.outbox.request_close(incident, "r", "x", now).unwrap();
        let c = Control::Close {
            origin: me.clone(),
            id,
            incident: incident.into(),
            reason: "r".into(),
            by: "x".into(),
            requested_ms: now,
            partition: None,
        };
        st.read(&format!("close/{me}/{id}"), &json(c));
        id
    };
    // One incident another running instance holds, one nobody holds.
    st.p.peers.set(Holding {
        instance: "b".into(),
        listen: String::new(),
        at_ms: now,
        incidents: vec![Held {
            key: "held".into(),
            route: "r".into(),
            labels: Vec::new(),
            partition: 1,
            started_at: 0,
            severity: None,
            opened: true,
        }],
    });
    let held = request(st, "held");
    let gone = request(st, "gone");
    st.answer_unheld().unwrap();
    let outcome = |st: &Controls, id| st.p.outbox.close_request(id).unwrap().unwrap().outcome;
    assert_eq!(outcome(st, gone).as_deref(), Some("not_open"));
    assert_eq!(outcome(st, held), None, "its holder applies it");
    let outcomes = st.p.outbox.control_outcomes().unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, format!("closed/{me}/{gone}"));
}
