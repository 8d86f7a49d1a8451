//! Two different events under one time and id: the first released is the
//! one duplicate detection keeps, so which one it is decides what fires.
//! One instance releases them by the order key of their input lines
//! ([`crate::sequencer::order_key`]); an owner, which never sees the lines,
//! by the key the splitter sent — the same choice, whatever the arrival order.

use std::collections::HashMap;

use super::*;
use crate::alert::Transition;
use crate::engine::Engine;
use crate::event::decode;
use crate::replay::OrderedFeed;
use crate::sequencer::order_key;

const T0: i64 = 1_795_132_800_000;

const CFG: &str = r#"
[engine]
allowed_lateness = "1m"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "5m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 2 }
"#;

const S0: Source = Source {
    topic: 0,
    partition: 0,
};

fn complaint(id: &str, at: i64, product: &str, customer: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"complaint","ts":{},"customer_id":"{customer}","attrs":{{"product":"{product}"}}}}"#,
        T0 + at
    )
}

/// Two complaints each on p1 and p2, then `pair` (one id and time, p1 and
/// p2: whichever counts makes its product fire), then an order ten minutes
/// later that moves the clock.
fn stream(pair: [&str; 2]) -> Vec<String> {
    let mut lines = vec![
        complaint("a1", 1_000, "p1", "x"),
        complaint("a2", 2_000, "p1", "x"),
        complaint("b1", 1_000, "p2", "x"),
        complaint("b2", 2_000, "p2", "x"),
    ];
    lines.extend(pair.iter().map(|l| l.to_string()));
    lines.push(format!(
        r#"{{"id":"o","type":"order","ts":{},"attrs":{{"product":"p3"}}}}"#,
        T0 + 600_000
    ));
    lines
}

fn one_instance(cfg: &Config, lines: &[String]) -> Vec<Transition> {
    let mut engine = Engine::new(cfg).expect("engine");
    let mut feed = OrderedFeed::new(&mut engine);
    let mut out = Vec::new();
    for l in lines {
        let _ = feed.push(&mut engine, l.as_bytes(), None, &mut out);
    }
    feed.finish(&mut engine, &mut out);
    out
}

/// Split, sent through the wire, owned by one owner of both partitions.
fn owned(cfg: &Config, lines: &[String]) -> Vec<Transition> {
    let mut split = Splitter::new(cfg, 4, 2).expect("splitter");
    let mut owner = Owner::new(cfg, 4, 2, [0, 1], vec![S0]).expect("owner");
    let limits = *split.limits();
    let mut out = Vec::new();
    let mut offsets = [0i64; 2];
    for (n, l) in lines.iter().enumerate() {
        let ev = decode(l.as_bytes(), &limits, None).expect("valid");
        let Some((targets, env)) = split.split(S0, n as i64, &ev, l.as_bytes()) else {
            continue;
        };
        let bytes = env.encode();
        for t in targets {
            let env = Envelope::decode(&bytes).expect("wire");
            owner.offer(t, offsets[t as usize], env, &mut out);
            offsets[t as usize] += 1;
        }
    }
    for r in split.reports() {
        for t in 0..2u32 {
            owner.offer(t, offsets[t as usize], r.clone(), &mut out);
        }
    }
    owner.finish(&mut out, |_, _, _| {});
    out.sort_by(|a, b| a.order.cmp(&b.order));
    out.into_iter().map(|k| k.transition).collect()
}

fn text(out: &[Transition]) -> Vec<String> {
    out.iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect()
}

#[test]
fn the_event_one_instance_keeps_is_the_one_the_owner_keeps() {
    let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("config");
    let mut fired = [0, 0];
    for n in 0..16 {
        let a = complaint("dup", 5_000, "p1", &format!("c{n}"));
        let b = complaint("dup", 5_000, "p2", "d");
        // The line with the lower order key is released first and counts.
        let winner = if order_key(a.as_bytes()) < order_key(b.as_bytes()) {
            "p1"
        } else {
            "p2"
        };
        for pair in [[a.as_str(), b.as_str()], [b.as_str(), a.as_str()]] {
            let lines = stream(pair);
            let one = one_instance(&cfg, &lines);
            let groups: Vec<&str> = one
                .iter()
                .flat_map(|t| t.group.iter().map(|(_, v)| v.as_str()))
                .collect();
            assert!(
                !groups.is_empty() && groups.iter().all(|g| *g == winner),
                "pair {n}: {groups:?}, expected {winner}"
            );
            assert_eq!(text(&owned(&cfg, &lines)), text(&one), "pair {n}");
        }
        fired[usize::from(winner == "p2")] += 1;
    }
    // Both outcomes occur: the byte order alone would always pick p1.
    assert!(fired[0] > 0 && fired[1] > 0, "{fired:?}");
}
