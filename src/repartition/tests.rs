//! Several instances against one: random streams over random input
//! partitions, split by any number of splitters, owned by any number of
//! owners over any assignment of internal partitions, delivered in any
//! interleaving and batching — each owner emits exactly one instance's
//! transitions for its (rule, group) pairs, and every pair has one owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::alert::Transition;
use crate::config::Config;
use crate::engine::{shard_of, Engine};
use crate::event::decode;
use crate::replay::OrderedFeed;

/// Every kind of rule state: grouped counts with `for` and `keep_firing_for`,
/// ratios over two attributes, surges with a rule-wide warm-up origin
/// (global and grouped), repeat customers, two rules sharing a `group_by`.
const CFG: &str = r#"
[engine]
allowed_lateness = "2m"
[[rules]]
name = "count_product"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 4, critical = 8 }
for = "2m"
keep_firing_for = "1m"
[[rules]]
name = "ratio_region"
group_by = ["region", "channel"]
window = "15m"
slide = "5m"
indicator = { kind = "ratio", numerator = { type = "complaint" }, denominator = { type = "order" }, min_denominator = 3 }
thresholds = { warning = 0.5 }
[[rules]]
name = "surge_all"
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6m", min_baseline = 1 }
thresholds = { warning = 2.0 }
[[rules]]
name = "surge_product"
group_by = ["product"]
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "30m", min_baseline = 1 }
thresholds = { warning = 1.5 }
[[rules]]
name = "repeat_product"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }
thresholds = { warning = 2 }
[[rules]]
name = "cancel_region"
group_by = ["region"]
window = "20m"
slide = "5m"
indicator = { kind = "count", select = { type = "cancellation" } }
thresholds = { warning = 3 }
"#;

const T0: i64 = 1_795_132_800_000;

fn config() -> Config {
    Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("test config")
}

/// (ms after T0 before jitter, jitter back, type, product, region, channel,
/// customer, input partition, redelivered).
type Gen = (i64, i64, u8, u8, u8, u8, u8, u8, bool);

/// A stream over ~3 h with bursts, each event jittered back by less than
/// `allowed_lateness`, spread over input partitions; now and then a message
/// is delivered twice.
fn stream() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(
        (
            Just(0i64),
            0i64..100_000,
            0u8..5,
            0u8..6,
            0u8..3,
            0u8..2,
            0u8..9,
            0u8..4,
            prop::bool::weighted(0.03),
        ),
        40..300,
    )
    .prop_map(|mut v| {
        let mut t = 0i64;
        for (i, g) in v.iter_mut().enumerate() {
            t += if (i / 40) % 3 == 1 { 3_000 } else { 25_000 };
            g.0 = t;
        }
        v
    })
}

fn line(i: usize, g: &Gen) -> String {
    let (t, jitter, ty, p, r, c, cust, ..) = *g;
    let ty = [
        "complaint",
        "order",
        "cancellation",
        "complaint",
        "feedback",
    ][ty as usize];
    format!(
        r#"{{"id":"e{i}","type":"{ty}","ts":{},"customer_id":"c{cust}","attrs":{{"product":"p{p}","region":"r{r}","channel":"ch{c}"}}}}"#,
        T0 + t - jitter
    )
}

fn json(out: &[Transition]) -> Vec<String> {
    out.iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect()
}

/// One instance: the events in arrival order through `replay`'s sequencer.
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

/// A small deterministic generator for the interleavings.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

struct Cluster {
    /// Per owner: its transitions.
    out: Vec<Vec<Transition>>,
    /// Per owner: (events its engine took in, duplicates it dropped).
    counts: Vec<(u64, u64)>,
    /// Per owner: the internal partitions it owns.
    owned: Vec<BTreeSet<u32>>,
    /// Events applied per owner.
    applied: Vec<usize>,
}

/// `splitters` instances read the input partitions (partition `i` goes to
/// splitter `i mod splitters`), `owners` instances own the internal
/// partitions (`assign[p] mod owners`); messages move in random steps.
#[allow(clippy::too_many_arguments)]
fn cluster(
    cfg: &Config,
    gens: &[Gen],
    lines: &[String],
    inputs: u8,
    splitters: usize,
    owners: usize,
    shards: u32,
    partitions: u32,
    assign: &[usize],
    seed: u64,
) -> Cluster {
    let mut rng = Rng(seed | 1);
    let sources: Vec<Source> = (0..inputs)
        .map(|p| Source {
            topic: 0,
            partition: i32::from(p),
        })
        .collect();
    // Input partitions: (line, redelivered) in arrival order.
    let mut input: Vec<Vec<usize>> = vec![Vec::new(); inputs as usize];
    for (i, g) in gens.iter().enumerate() {
        let p = (g.7 % inputs) as usize;
        input[p].push(i);
        if g.8 {
            input[p].push(i);
        }
    }
    let mut split: Vec<Splitter> = (0..splitters)
        .map(|_| Splitter::new(cfg, shards, partitions).expect("splitter"))
        .collect();
    let owned: Vec<BTreeSet<u32>> = (0..owners)
        .map(|o| {
            (0..partitions)
                .filter(|&p| assign[p as usize % assign.len()] % owners == o)
                .collect()
        })
        .collect();
    let mut own: Vec<Owner> = owned
        .iter()
        .map(|set| {
            Owner::new(
                cfg,
                shards,
                partitions,
                set.iter().copied(),
                sources.clone(),
                vec![None],
            )
            .expect("owner")
        })
        .collect();
    // The internal topic: one log per partition, and each owner's read position.
    let mut log: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions as usize];
    let mut read: Vec<Vec<usize>> = vec![vec![0; partitions as usize]; owners];
    let mut pos = vec![0usize; inputs as usize];
    let mut out: Vec<Vec<Transition>> = vec![Vec::new(); owners];
    let mut applied = vec![0usize; owners];
    let limits = *Engine::new(cfg).expect("engine").limits();
    // Owners read what is there in random bites.
    let consume = |own: &mut [Owner],
                   read: &mut [Vec<usize>],
                   out: &mut [Vec<Transition>],
                   applied: &mut [usize],
                   log: &[Vec<Vec<u8>>],
                   rng: &mut Rng,
                   all: bool| {
        for o in 0..own.len() {
            for &p in &owned[o] {
                let p = p as usize;
                let end = if all {
                    log[p].len()
                } else {
                    (read[o][p] + rng.next(12)).min(log[p].len())
                };
                while read[o][p] < end {
                    let env = Envelope::decode(&log[p][read[o][p]]).expect("wire");
                    if own[o]
                        .offer(p as u32, read[o][p] as i64, env, &mut out[o])
                        .is_some()
                    {
                        applied[o] += 1;
                    }
                    read[o][p] += 1;
                }
                own[o].release(&mut out[o], |_, _, _| applied[o] += 1);
            }
        }
    };
    loop {
        let open: Vec<usize> = (0..inputs as usize)
            .filter(|&p| pos[p] < input[p].len())
            .collect();
        if open.is_empty() {
            break;
        }
        // One splitter reads a bite of one of its partitions...
        let p = open[rng.next(open.len())];
        let s = p % splitters;
        let bite = 1 + rng.next(8);
        for _ in 0..bite {
            if pos[p] >= input[p].len() {
                break;
            }
            let i = input[p][pos[p]];
            let ev = decode(lines[i].as_bytes(), &limits, None).expect("valid");
            if let Some((targets, env)) =
                split[s].split(sources[p], pos[p] as i64, &ev, lines[i].as_bytes())
            {
                let bytes = env.encode();
                for t in targets {
                    log[t as usize].push(bytes.clone());
                }
            }
            pos[p] += 1;
        }
        // ...then reports its progress to every internal partition.
        for r in split[s].reports() {
            let bytes = r.encode();
            for l in log.iter_mut() {
                l.push(bytes.clone());
            }
        }
        if rng.next(3) == 0 {
            consume(
                &mut own,
                &mut read,
                &mut out,
                &mut applied,
                &log,
                &mut rng,
                false,
            );
        }
    }
    consume(
        &mut own,
        &mut read,
        &mut out,
        &mut applied,
        &log,
        &mut rng,
        true,
    );
    for (o, owner) in own.iter_mut().enumerate() {
        owner.finish(&mut out[o], |_, _, _| applied[o] += 1);
    }
    let counts = own
        .iter()
        .map(|o| (o.engine().stats().events_in, o.engine().stats().duplicates))
        .collect();
    Cluster {
        out,
        counts,
        owned,
        applied,
    }
}

/// The internal partition a transition's (rule, group) lives in.
fn partition_of(cfg: &Config, t: &Transition, shards: u32, partitions: u32) -> u32 {
    let rule = cfg.rules.iter().find(|r| r.name == t.rule).expect("rule");
    let values: Vec<&str> = if matches!(
        rule.indicator,
        crate::config::IndicatorConfig::Unanswered { .. }
    ) {
        Vec::new()
    } else {
        t.group.iter().map(|(_, v)| v.as_str()).collect()
    };
    partition_of_shard(shard_of(&t.rule, &values, shards), partitions)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_owner_fires_exactly_what_one_instance_fires_for_its_shards(
        gens in stream(),
        inputs in 1u8..5,
        splitters in 1usize..4,
        owners in 1usize..4,
        shards in prop_oneof![Just(7u32), Just(16), Just(64)],
        partitions in 1u32..9,
        assign in prop::collection::vec(0usize..3, 1..9),
        seed in any::<u64>(),
    ) {
        let cfg = config();
        let lines: Vec<String> = gens.iter().enumerate().map(|(i, g)| line(i, g)).collect();
        // Arrival order of one instance reading every input partition.
        let mut arrival = Vec::new();
        for g in gens.iter().enumerate() {
            arrival.push(lines[g.0].clone());
            if g.1.8 {
                arrival.push(lines[g.0].clone());
            }
        }
        let want = one_instance(&cfg, &arrival);
        prop_assert!(!want.is_empty() || gens.len() < 100, "the stream fires something");
        let c = cluster(&cfg, &gens, &lines, inputs, splitters, owners, shards, partitions, &assign, seed);
        let mut owner_of: BTreeMap<u32, usize> = BTreeMap::new();
        for (o, set) in c.owned.iter().enumerate() {
            for &p in set {
                prop_assert!(owner_of.insert(p, o).is_none(), "partition {} has one owner", p);
            }
        }
        for (o, got) in c.out.iter().enumerate() {
            let mine: Vec<Transition> = want
                .iter()
                .filter(|t| owner_of.get(&partition_of(&cfg, t, shards, partitions)) == Some(&o))
                .cloned()
                .collect();
            prop_assert_eq!(json(got), json(&mine), "owner {} of {:?}", o, c.owned[o]);
        }
        let total: usize = c.out.iter().map(Vec::len).sum();
        prop_assert_eq!(total, want.len(), "every transition has one owner");
        // Each owner's engine takes each delivery for its partitions once,
        // however many of them the event was sent to.
        let limits = *Engine::new(&cfg).expect("engine").limits();
        let mut probe = Splitter::new(&cfg, shards, partitions).expect("splitter");
        let src = Source { topic: 0, partition: 0 };
        for (o, set) in c.owned.iter().enumerate() {
            let (mut events, mut dups) = (0u64, 0u64);
            for (i, g) in gens.iter().enumerate() {
                let ev = decode(lines[i].as_bytes(), &limits, None).expect("valid");
                let mine = probe
                    .split(src, 0, &ev, lines[i].as_bytes())
                    .is_some_and(|(t, _)| t.iter().any(|p| set.contains(p)));
                if mine {
                    events += 1 + u64::from(g.8);
                    dups += u64::from(g.8);
                }
            }
            prop_assert_eq!(c.counts[o], (events, dups), "owner {} took each event once", o);
            prop_assert_eq!(c.applied[o] as u64, events);
        }
    }
}

#[test]
fn an_envelope_round_trips_and_another_version_is_refused() {
    let env = Envelope::Report {
        source: Source {
            topic: 1,
            partition: 3,
        },
        newest: T0,
        origins: vec![(2, T0 - 5)],
    };
    let bytes = env.encode();
    assert_eq!(bytes[0], WIRE_VERSION);
    assert_eq!(Envelope::decode(&bytes).expect("decodes"), env);
    let mut other = bytes.clone();
    other[0] = WIRE_VERSION + 1;
    assert!(matches!(
        Envelope::decode(&other),
        Err(WireError::Version { found: Some(_) })
    ));
    assert!(matches!(
        Envelope::decode(&[]),
        Err(WireError::Version { found: None })
    ));
    assert!(matches!(
        Envelope::decode(&[WIRE_VERSION, 7]),
        Err(WireError::Decode(_))
    ));
}
