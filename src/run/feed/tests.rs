//! Live equals replay, as a property: the same events, cut into random batches
//! and interleaved across partitions at random (each partition out of order by
//! less than `allowed_lateness`), through any number of engine workers, give
//! byte-identical transitions to `replay`.

use std::collections::HashMap;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::replay::OrderedFeed;

const CONFIG: &str = r#"
[engine]
allowed_lateness = "1m"
dedup_horizon = "10m"
[[rules]]
name = "complaints"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 4, critical = 7 }
clear = 2
for = "2m"
[[rules]]
name = "rate"
group_by = ["product", "region"]
window = "5m"
slide = "1m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 3 }
thresholds = { warning = 0.5 }
keep_firing_for = "1m"
[[rules]]
name = "surge"
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6m", min_baseline = 1 }
thresholds = { warning = 2.5 }
"#;

const T0: i64 = 1_795_132_800_000;
const LATENESS: i64 = 60_000;

#[derive(Debug, Clone)]
struct Ev {
    id: u32,
    ts: i64,
    kind: &'static str,
    product: u8,
    region: u8,
}

impl Ev {
    fn json(&self) -> String {
        format!(
            r#"{{"id":"e{}","type":"{}","ts":{},"attrs":{{"product":"p{}","region":"r{}"}}}}"#,
            self.id, self.kind, self.ts, self.product, self.region
        )
    }
}

fn config() -> Config {
    Config::from_toml_str(CONFIG, &HashMap::<String, String>::new()).expect("config")
}

fn engine() -> crate::engine::Engine {
    crate::engine::Engine::new(&config()).expect("engine")
}

fn lines(out: &[Transition]) -> Vec<String> {
    out.iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect()
}

/// A stream with a burst: complaints thicken in the middle, so alerts open,
/// escalate and resolve; a few ids repeat (redeliveries).
fn stream() -> impl Strategy<Value = Vec<Ev>> {
    (40usize..260, any::<u64>()).prop_map(|(n, seed)| {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut evs = Vec::with_capacity(n);
        let mut t = T0;
        for i in 0..n {
            let burst = i > n / 3 && i < n / 2;
            // Now and then a twin: the previous id at the very same time
            // (with other content, so the tie-break of the bytes decides).
            let twin = i > 0 && next() % 30 == 0;
            if !twin {
                t += (next() % if burst { 8_000 } else { 40_000 }) as i64;
            }
            let kind = match next() % 10 {
                0..=4 if burst => "complaint",
                0..=1 => "complaint",
                _ => "order",
            };
            let id = if twin || (next() % 25 == 0 && i > 0) {
                i as u32 - 1
            } else {
                i as u32
            };
            evs.push(Ev {
                id,
                ts: t,
                kind,
                product: (next() % 2) as u8,
                region: (next() % 2) as u8,
            });
        }
        evs
    })
}

/// Replay of the events in the given order.
fn replay_of(evs: &[&Ev]) -> Vec<String> {
    let mut engine = engine();
    let mut feed = OrderedFeed::new(&mut engine);
    let mut out = Vec::new();
    for e in evs {
        feed.push(&mut engine, e.json().as_bytes(), None, &mut out)
            .expect("valid");
    }
    feed.finish(&mut engine, &mut out);
    lines(&out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn live_equals_replay_whatever_the_batches_and_interleaving(
        evs in stream(),
        partitions in 1usize..5,
        seed in any::<u64>(),
        max_batch in 1usize..120,
        workers in 1usize..4,
    ) {
        let mut x = seed | 1;
        let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        // Each event goes to a partition; within a partition, events are out
        // of order by less than the allowed lateness (jittered arrival key).
        let mut parts: Vec<Vec<(i64, &Ev)>> = vec![Vec::new(); partitions];
        for e in &evs {
            let jitter = (next() % (LATENESS as u64 - 1)) as i64;
            parts[next() as usize % partitions].push((e.ts + jitter, e));
        }
        for p in &mut parts {
            p.sort_by_key(|(k, e)| (*k, e.id));
        }
        // A random interleaving of the partitions, cut into random batches.
        let mut cursors = vec![0usize; partitions];
        let mut arrival: Vec<(usize, i64, &Ev)> = Vec::new();
        while arrival.len() < evs.len() {
            let p = next() as usize % partitions;
            let run = 1 + next() as usize % 6;
            for _ in 0..run {
                if let Some((_, e)) = parts[p].get(cursors[p]) {
                    arrival.push((p, cursors[p] as i64, e));
                    cursors[p] += 1;
                }
            }
        }
        // The live service's engine: any number of workers over the shards.
        let mut engine = ShardedEngine::new(&config(), workers, 16).expect("engine");
        let mut feed = LiveFeed::new(
            &mut engine,
            Watermarks::new(std::time::Duration::from_secs(3600)),
            vec![None],
        );
        let now = Instant::now();
        for p in 0..partitions {
            feed.assign(Partition { topic: 0, partition: p as i32 }, now);
        }
        let mut out = Vec::new();
        let mut order = Vec::new();
        let mut i = 0;
        while i < arrival.len() {
            let n = 1 + next() as usize % max_batch;
            for &(p, offset, e) in &arrival[i..(i + n).min(arrival.len())] {
                let raw = e.json();
                let ev = crate::event::decode(raw.as_bytes(), engine.limits(), None).expect("valid");
                let origin = Origin { at: Partition { topic: 0, partition: p as i32 }, offset };
                prop_assert!(feed.offer(&mut engine, origin, &ev, raw.as_bytes(), now, &mut out).is_none(),
                    "within the lateness bound nothing is applied out of order");
            }
            i += n;
            feed.release(&mut engine, now, None, &mut out, |o, oc| order.push((o.at.partition, o.offset, oc)));
        }
        feed.finish(&mut engine, &mut out, |o, oc| order.push((o.at.partition, o.offset, oc)));
        // Every event reached the engine once, in (ts, id, bytes) order.
        let live_seq: Vec<String> = order
            .iter()
            .map(|&(p, off, _)| parts[p as usize][off as usize].1.json())
            .collect();
        // Ties of time and id go by the order key of the bytes, as in the product.
        let mut want: Vec<(i64, String, String)> =
            evs.iter().map(|e| (e.ts, format!("e{}", e.id), e.json())).collect();
        want.sort_by(|a, b| {
            (a.0, &a.1)
                .cmp(&(b.0, &b.1))
                .then_with(|| crate::event::order::tie_break(a.2.as_bytes(), b.2.as_bytes()))
        });
        let want: Vec<String> = want.into_iter().map(|(_, _, j)| j).collect();
        prop_assert_eq!(&live_seq, &want);
        let live = lines(&out);

        // Replay of the same events in time order, and in the live arrival order.
        let mut sorted: Vec<&Ev> = evs.iter().collect();
        sorted.sort_by_key(|e| e.ts);
        prop_assert_eq!(&live, &replay_of(&sorted));
        // A file whose lines are out of order by less than the lateness.
        let mut jittered: Vec<(i64, &Ev)> = evs
            .iter()
            .map(|e| (e.ts + (next() % (LATENESS as u64 - 1)) as i64, e))
            .collect();
        jittered.sort_by_key(|(k, e)| (*k, e.id));
        let jittered: Vec<&Ev> = jittered.into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(&live, &replay_of(&jittered));
    }
}

#[test]
fn the_stream_fires_and_resolves() {
    // The generator above produces real alerts (so the property compares
    // something): one fixed stream fires and resolves.
    let evs = proptest::strategy::ValueTree::current(
        &stream()
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .expect("tree"),
    );
    let sorted: Vec<&Ev> = evs.iter().collect();
    let out = replay_of(&sorted);
    assert!(out.iter().any(|l| l.contains("\"firing\"")), "{out:?}");
    assert!(out.iter().any(|l| l.contains("\"resolved\"")), "{out:?}");
}

#[test]
fn one_id_and_time_with_two_contents_gives_one_outcome_whatever_arrives_first() {
    // A producer reuses an id at one time with different content, on two
    // partitions: whichever partition is polled first, the engine keeps the
    // same one of the two (the order key of the bytes decides), as replay does.
    let mut evs: Vec<Ev> = (0..30)
        .map(|i| Ev {
            id: i,
            ts: T0 + i64::from(i) * 10_000,
            kind: if i % 2 == 0 { "complaint" } else { "order" },
            product: 0,
            region: 0,
        })
        .collect();
    let twin = Ev {
        id: 7,
        ts: evs[7].ts,
        kind: "complaint",
        product: 1,
        region: 1,
    };
    evs.push(twin);
    let run = |first: usize| {
        let mut engine = ShardedEngine::new(&config(), 2, 16).expect("engine");
        let mut feed = LiveFeed::new(
            &mut engine,
            Watermarks::new(std::time::Duration::from_secs(3600)),
            vec![None],
        );
        let now = Instant::now();
        for p in 0..2 {
            feed.assign(
                Partition {
                    topic: 0,
                    partition: p,
                },
                now,
            );
        }
        let mut out = Vec::new();
        let mut applied = Vec::new();
        // Partition `first` delivers the twin before the other delivers event 7.
        let order: Vec<(i32, &Ev)> = if first == 0 {
            std::iter::once((0, &evs[30]))
                .chain(evs[..30].iter().map(|e| (1, e)))
                .collect()
        } else {
            evs[..30]
                .iter()
                .map(|e| (1, e))
                .chain(std::iter::once((0, &evs[30])))
                .collect()
        };
        for (offset, (p, e)) in order.iter().enumerate() {
            let raw = e.json();
            let ev = crate::event::decode(raw.as_bytes(), engine.limits(), None).expect("valid");
            let origin = Origin {
                at: Partition {
                    topic: 0,
                    partition: *p,
                },
                offset: offset as i64,
            };
            assert!(feed
                .offer(&mut engine, origin, &ev, raw.as_bytes(), now, &mut out)
                .is_none());
        }
        feed.finish(&mut engine, &mut out, |o, oc| applied.push((o, oc)));
        // Which of the twins the engine kept: the one not dropped as a repeat.
        let twins: Vec<(i32, crate::engine::Outcome)> = applied
            .iter()
            .filter(|(o, _)| order[o.offset as usize].1.ts == evs[7].ts)
            .map(|(o, oc)| (order[o.offset as usize].0, *oc))
            .collect();
        assert_eq!(twins.len(), 2, "{twins:?}");
        let kept: Vec<i32> = twins
            .iter()
            .filter(|(_, oc)| *oc != crate::engine::Outcome::Duplicate)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(kept.len(), 1, "{twins:?}");
        (lines(&out), kept[0])
    };
    let (a, kept_a) = run(0);
    let (b, kept_b) = run(1);
    assert_eq!(
        kept_a, kept_b,
        "the same twin is kept whichever arrives first"
    );
    assert_eq!(a, b);
    assert!(!a.is_empty(), "the stream fires");
    let sorted: Vec<&Ev> = {
        let mut v: Vec<&Ev> = evs.iter().collect();
        v.sort_by_key(|e| e.ts);
        v
    };
    // Replay agrees, whichever of the twins comes first in the file.
    assert_eq!(replay_of(&sorted), a);
    let mut twin_first = sorted.clone();
    twin_first.swap(7, 8);
    // The twin (product 1), not event 7 (product 0), now comes first.
    assert_eq!((twin_first[7].id, twin_first[7].product), (7, 1));
    assert_eq!(replay_of(&twin_first), a);
}
