//! A group's checkpoint bytes are those snapshot version 7 wrote when a
//! group held its own copy of its key: the key now lives in the group table
//! only, and checkpoints write it beside the group (`GroupOut`, `GroupIn`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::super::backlog::Book;
use super::super::key::GroupKey;
use super::super::rule::{GroupIn, GroupOut, Instance};
use super::super::Engine;
use crate::alert::Phase;
use crate::config::Config;
use crate::event::{decode, DecodeLimits};
use crate::explain::Explain;
use crate::indicator::season::Seasonal;
use crate::window::Window;

/// The group as version 7 declared it (less the skipped table entry).
#[derive(Serialize, Deserialize)]
struct LegacyGroup {
    key: GroupKey,
    hash: u64,
    window: Window,
    phase: Phase,
    value: Option<f64>,
    evaluated_at: i64,
    deadline: i64,
    warm_tick: i64,
    instance: Option<Box<Instance>>,
    key_id: u32,
    season: Option<Box<Seasonal>>,
    explain: Option<Box<Explain>>,
    book: Option<Box<Book>>,
}

#[test]
fn a_group_is_written_as_version_7_wrote_it() {
    let cfg = Config::from_toml_str(
        r#"
[engine]
sample_event_ids = 3

[[rules]]
name = "complaints"
group_by = ["product", "region"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }
for = "5m"
explain = ["channel"]
"#,
        &HashMap::<String, String>::new(),
    )
    .unwrap();
    let mut e = Engine::new(&cfg).unwrap();
    let mut out = Vec::new();
    let t0 = 1_795_132_800_000i64;
    for (i, p) in ["p1", "p1", "p1", "p2"].iter().enumerate() {
        let line = format!(
            r#"{{"id":"e{i}","type":"complaint","ts":{},"attrs":{{"product":"{p}","region":"north","channel":"web"}}}}"#,
            t0 + i as i64 * 1000
        );
        let ev = decode(line.as_bytes(), &DecodeLimits::default(), None).unwrap();
        e.process(&ev, &mut out);
    }
    let rule = &e.rules[0];
    let table = &e.tables[rule.group_by_id];
    let mut seen = 0;
    for g in rule.slots.iter().filter_map(|s| s.group.as_ref()) {
        let (key, hash) = (table.key(g.entry), table.hash(g.entry));
        let bytes = bincode::serialize(&GroupOut::new(g, key, hash)).unwrap();
        let old: LegacyGroup = bincode::deserialize(&bytes).unwrap();
        assert_eq!(
            bincode::serialize(&old).unwrap(),
            bytes,
            "nothing left over"
        );
        assert_eq!((&old.key[..], old.hash), (&key[..], hash));
        assert_eq!(old.phase, g.phase);
        assert_eq!(old.value, g.value);
        assert_eq!(
            (old.evaluated_at, old.deadline, old.warm_tick, old.key_id),
            (g.evaluated_at, g.deadline, g.warm_tick, g.key_id)
        );
        assert_eq!(old.instance.is_some(), g.instance.is_some());
        assert_eq!(old.explain.is_some(), g.explain.is_some());
        // And back: the same group, key and hash.
        let (back, k, h) = bincode::deserialize::<GroupIn>(&bytes)
            .unwrap()
            .into_parts();
        assert_eq!((&k[..], h), (&key[..], hash));
        assert_eq!(
            bincode::serialize(&GroupOut::new(&back, &k, h)).unwrap(),
            bytes
        );
        seen += 1;
    }
    assert_eq!(seen, 2);
    // The p1 group is pending (three complaints > 2, `for` 5m) with samples.
    let pending = rule
        .slots
        .iter()
        .filter_map(|s| s.group.as_ref())
        .filter(|g| g.phase != Phase::Inactive && g.instance.is_some() && g.deadline > t0)
        .count();
    assert_eq!(pending, 1);
}
