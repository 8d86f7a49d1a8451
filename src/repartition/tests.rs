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

mod silence;

/// Every kind of rule state: grouped counts with `for` and `keep_firing_for`,
/// ratios over two attributes, surges with a rule-wide warm-up origin
/// (global and grouped), repeat customers, two rules sharing a `group_by`.
const CFG: &str = r#"
[engine]
allowed_lateness = "2m"
silence_after = "10m"
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
[incidents]
update_interval = "0s"
[[incidents.routes]]
name = "regions"
rules = ["cancel_region", "ratio_region"]
group_by = ["region"]
group_window = "2m"
continue = true
[[incidents.routes]]
name = "critical"
min_severity = "critical"
group_by = ["rule"]
group_window = "0s"
continue = true
[[incidents.routes]]
name = "product"
group_by = ["product"]
group_window = "1m"
"#;

pub(super) const T0: i64 = 1_795_132_800_000;

pub(super) fn config() -> Config {
    Config::from_toml_str(CFG, &HashMap::<String, String>::new()).expect("test config")
}

/// (ms after T0 before jitter, jitter back, type, product, region, channel,
/// customer, input partition, redelivered).
pub(super) type Gen = (i64, i64, u8, u8, u8, u8, u8, u8, bool);

/// A stream over ~3 h with bursts and, every 97 events, 40 minutes of
/// silence (longer than `silence_after`: the surges leave it out of their
/// baselines, which owners learn of from the split stages), each event
/// jittered back by less than `allowed_lateness`, spread over input
/// partitions; now and then a message is delivered twice.
pub(super) fn stream() -> impl Strategy<Value = Vec<Gen>> {
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
            if i % 97 == 96 {
                t += 40 * 60_000;
            }
            g.0 = t;
        }
        v
    })
}

pub(super) fn line(i: usize, g: &Gen) -> String {
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

pub(super) fn json(out: &[Transition]) -> Vec<String> {
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
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A message on an incident partition.
#[derive(Clone)]
enum IncidentMsg {
    Transition(Vec<u32>, Box<Keyed>),
    Released(u32, i64),
}

/// Notifications by incident key, as text.
type ByIncident = BTreeMap<String, Vec<String>>;

fn by_incident(ch: &crate::incident::lifecycle::Changes, into: &mut ByIncident) {
    for n in &ch.notifications {
        into.entry(n.dedup_key.clone())
            .or_default()
            .push(format!("{n:?}"));
    }
}

/// One instance's incidents for `transitions` (in its order).
fn one_lifecycle(cfg: &Config, transitions: &[Transition]) -> ByIncident {
    use crate::incident::lifecycle::{Changes, Lifecycle, NoValues};
    let mut lc = Lifecycle::new(cfg);
    let mut ch = Changes::default();
    for t in transitions {
        lc.due(t.at, &mut NoValues, &mut ch);
        lc.apply(t, &mut ch);
    }
    lc.due(i64::MAX - 1, &mut NoValues, &mut ch);
    let mut out = ByIncident::new();
    by_incident(&ch, &mut out);
    out
}

struct Cluster {
    /// Per incident owner: its notifications by incident.
    incidents: Vec<ByIncident>,
    /// Per owner: its transitions.
    out: Vec<Vec<Keyed>>,
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
    incident_parts: u32,
    incident_owners: usize,
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
            )
            .expect("owner")
        })
        .collect();
    // The internal topic: one log per partition, and each owner's read position.
    let mut log: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions as usize];
    let mut read: Vec<Vec<usize>> = vec![vec![0; partitions as usize]; owners];
    let mut pos = vec![0usize; inputs as usize];
    let mut out: Vec<Vec<Keyed>> = vec![Vec::new(); owners];
    let mut applied = vec![0usize; owners];
    let limits = *Engine::new(cfg).expect("engine").limits();
    // The incident stage: its partitions, owners (partition i to owner
    // i mod incident_owners), logs and read positions.
    let tsplit = TransitionSplit::new(cfg, incident_parts);
    let mut inc: Vec<IncidentOwner> = (0..incident_owners)
        .map(|o| {
            IncidentOwner::new(
                cfg,
                partitions,
                incident_parts,
                (0..incident_parts).filter(|p| *p as usize % incident_owners == o),
            )
        })
        .collect();
    let mut ilog: Vec<Vec<IncidentMsg>> = vec![Vec::new(); incident_parts as usize];
    let mut iread: Vec<usize> = vec![0; incident_parts as usize];
    let mut ichanges: Vec<crate::incident::lifecycle::Changes> =
        (0..incident_owners).map(|_| Default::default()).collect();
    let mut sent = vec![0usize; owners];
    // Shard owners publish their new transitions and release points.
    let publish = |out: &[Vec<Keyed>],
                   sent: &mut [usize],
                   own: &[Owner],
                   ilog: &mut [Vec<IncidentMsg>],
                   end: bool| {
        for o in 0..out.len() {
            for k in &out[o][sent[o]..] {
                let targets = tsplit.partitions_of(&k.transition);
                for &p in &targets {
                    ilog[p as usize].push(IncidentMsg::Transition(
                        targets.clone(),
                        Box::new(k.clone()),
                    ));
                }
            }
            sent[o] = out[o].len();
            let below = if end {
                Some(i64::MAX)
            } else {
                own[o].released_below()
            };
            if let Some(b) = below {
                for &p in &owned[o] {
                    for l in ilog.iter_mut() {
                        l.push(IncidentMsg::Released(p, b));
                    }
                }
            }
        }
    };
    let consume_incidents = |inc: &mut [IncidentOwner],
                             iread: &mut [usize],
                             ilog: &[Vec<IncidentMsg>],
                             ichanges: &mut [crate::incident::lifecycle::Changes],
                             rng: &mut Rng,
                             all: bool| {
        for p in 0..ilog.len() {
            let o = p % inc.len();
            let end = if all {
                ilog[p].len()
            } else {
                (iread[p] + rng.next(10)).min(ilog[p].len())
            };
            while iread[p] < end {
                match &ilog[p][iread[p]] {
                    IncidentMsg::Transition(targets, k) => {
                        inc[o].offer(p as u32, targets, (**k).clone(), &mut ichanges[o])
                    }
                    IncidentMsg::Released(from, b) => inc[o].released(p as u32, *from, *b),
                }
                iread[p] += 1;
            }
            inc[o].release(&mut ichanges[o]);
        }
    };
    // Owners read what is there in random bites.
    let consume = |own: &mut [Owner],
                   read: &mut [Vec<usize>],
                   out: &mut [Vec<Keyed>],
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
            publish(&out, &mut sent, &own, &mut ilog, false);
        }
        if rng.next(4) == 0 {
            consume_incidents(&mut inc, &mut iread, &ilog, &mut ichanges, &mut rng, false);
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
    publish(&out, &mut sent, &own, &mut ilog, false);
    for (o, owner) in own.iter_mut().enumerate() {
        owner.finish(&mut out[o], |_, _, _| applied[o] += 1);
    }
    publish(&out, &mut sent, &own, &mut ilog, true);
    consume_incidents(&mut inc, &mut iread, &ilog, &mut ichanges, &mut rng, true);
    let incidents = ichanges
        .iter()
        .map(|ch| {
            let mut m = ByIncident::new();
            by_incident(ch, &mut m);
            m
        })
        .collect();
    let counts = own
        .iter()
        .map(|o| (o.engine().stats().events_in, o.engine().stats().duplicates))
        .collect();
    Cluster {
        incidents,
        out,
        counts,
        owned,
        applied,
    }
}

/// The internal partition a transition's (rule, group) lives in.
fn partition_of(cfg: &Config, t: &Transition, shards: u32, partitions: u32) -> u32 {
    let rule = cfg.rules.iter().find(|r| r.name == t.rule).expect("rule");
    // Response-SLA rules keep all their groups in the shard of the empty group.
    let values: Vec<&str> = if matches!(
        rule.indicator,
        crate::config::IndicatorConfig::Unanswered { .. }
            | crate::config::IndicatorConfig::ResponseTime { .. }
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
        incident_parts in 1u32..6,
        incident_owners in 1usize..4,
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
        let c = cluster(incident_parts, incident_owners, &cfg, &gens, &lines, inputs, splitters, owners, shards, partitions, &assign, seed);
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
            let got: Vec<Transition> = got.iter().map(|k| k.transition.clone()).collect();
            prop_assert_eq!(json(&got), json(&mine), "owner {} of {:?}", o, c.owned[o]);
        }
        let total: usize = c.out.iter().map(Vec::len).sum();
        prop_assert_eq!(total, want.len(), "every transition has one owner");
        // Merged by their order keys, the owners' transitions are one
        // instance's, in its order.
        let mut merged: Vec<&Keyed> = c.out.iter().flatten().collect();
        merged.sort_by(|a, b| a.order.cmp(&b.order));
        let merged: Vec<Transition> = merged.into_iter().map(|k| k.transition.clone()).collect();
        prop_assert_eq!(json(&merged), json(&want), "merged in one instance's order");
        // Every incident on exactly one instance, with one instance's
        // notifications (keys, actions, alerts, times).
        let one = one_lifecycle(&cfg, &want);
        let fired = want.iter().any(|t| t.state == crate::alert::State::Firing);
        prop_assert_eq!(fired, !one.is_empty(), "a firing alert opens an incident");
        let mut all = ByIncident::new();
        for m in &c.incidents {
            for (k, v) in m {
                prop_assert!(all.insert(k.clone(), v.clone()).is_none(), "incident {} on one instance", k);
            }
        }
        prop_assert_eq!(&all, &one);
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
                    .split(src, i as i64, &ev, lines[i].as_bytes())
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
