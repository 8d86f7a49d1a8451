//! Engine checkpoints: the whole state of the core as bytes, and back.
//!
//! A snapshot holds, per rule, every group's window panes, alert instance
//! (phase, severity, since, dedup key, deadlines, keep-firing timer) and the
//! rule's timers, plus the engine clock, the timer heap, the counters and the
//! dedup memory. Restoring it into an engine built from the same rules gives an
//! engine that continues exactly as the one that wrote it: the same
//! transitions, times and `dedup_key`s (tested against an uninterrupted run).
//!
//! Rules are matched by name and by their configuration: a rule whose
//! definition changed since the snapshot starts empty (its alerts are gone; the
//! incident stage closes what they had open), the others keep their state —
//! and so does a rule only retuned (its `thresholds`, `clear`, `for` or
//! `keep_firing_for` changed), matched by its computation id as a reload
//! retunes it in place.
//!
//! The encoding is bincode of the structs below, behind a versioned header
//! with a SHA-256 checksum (`crate::state` writes and checks it).

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::rule::{GroupOut, Slot, SlotIn, SlotOut};
use super::table::GroupTable;
use super::{Engine, EngineStats, RuleStats};
use crate::engine::wheel::Wheel;

pub(super) mod dirty;
pub(super) mod incremental;
#[cfg(test)]
mod tests_incremental;
#[cfg(test)]
mod tests_layout;
#[cfg(test)]
mod tests_retuned;

/// Version of the snapshot layout; bump on any change to the structs below
/// (3: `EngineStats::invalid` counts `clock_jump` too; 4: a group keeps a
/// seasonal surge's profile, `engine::season`; 5: a group's per-value
/// counts for root-cause hints, `explain`; 6: the response-SLA backlog —
/// groups' books, rules' early responses and response counters; 7: a
/// group's book keeps first-response times, `response_time`). Not bumped
/// for `computations`: a trailing field, which an older crisiswatch reads
/// past and this one does without (`EngineSnapshotBefore`).
pub const SNAPSHOT_VERSION: u32 = 7;

/// Errors decoding a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not decode.
    #[error("engine snapshot does not decode: {0}")]
    Decode(String),
    /// Encoding failed (out of memory, or a bug).
    #[error("engine snapshot does not encode: {0}")]
    Encode(String),
}

#[derive(Deserialize)]
struct EngineSnapshot {
    clock: Option<i64>,
    timers: Vec<(i64, u32, u32, u32)>,
    stats: EngineStats,
    dedup_order: Vec<(i64, u64)>,
    dedup_evicted_early: u64,
    rules: Vec<RuleSnapshot>,
    /// Per rule, its computation id (`incremental::computation_id`): a rule
    /// only retuned since the snapshot restores by it. Last, so that an
    /// older crisiswatch still reads the snapshot; empty in one it wrote.
    computations: Vec<[u8; 16]>,
}

/// [`EngineSnapshot`] as written before `computations`.
#[derive(Deserialize)]
struct EngineSnapshotBefore {
    clock: Option<i64>,
    timers: Vec<(i64, u32, u32, u32)>,
    stats: EngineStats,
    dedup_order: Vec<(i64, u64)>,
    dedup_evicted_early: u64,
    rules: Vec<RuleSnapshot>,
}

impl EngineSnapshot {
    fn decode(bytes: &[u8]) -> Result<EngineSnapshot, SnapshotError> {
        bincode::deserialize(bytes).or_else(|e| {
            let s: EngineSnapshotBefore =
                bincode::deserialize(bytes).map_err(|_| SnapshotError::Decode(e.to_string()))?;
            Ok(EngineSnapshot {
                clock: s.clock,
                timers: s.timers,
                stats: s.stats,
                dedup_order: s.dedup_order,
                dedup_evicted_early: s.dedup_evicted_early,
                rules: s.rules,
                computations: Vec::new(),
            })
        })
    }
}

#[derive(Deserialize)]
struct RuleSnapshot {
    name: String,
    /// The rule's configuration as text: a changed rule does not restore.
    definition: String,
    origin: Option<i64>,
    wheel: Wheel,
    slots: Vec<SlotIn>,
    free: Vec<u32>,
    live: usize,
    stats: RuleStats,
    /// `unanswered` rules: responses that came before their complaint.
    backlog_early: Vec<(i64, Box<str>)>,
}

/// What a restore kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Rules whose state was restored.
    pub(crate) rules_restored: Vec<String>,
    /// Rules in the snapshot that are gone or changed (their state dropped).
    pub(crate) rules_dropped: Vec<String>,
    /// Restored rules whose thresholds, `clear`, `for` or `keep_firing_for`
    /// changed since the checkpoint: kept with their windows and alerts,
    /// judged by the new settings (also in `rules_restored`).
    pub(crate) rules_retuned: Vec<String>,
    /// Live groups restored.
    pub groups: usize,
}

/// What a rule computes, for matching a snapshot's rules with the current
/// ones: its configuration less what only people read (description, runbook,
/// dashboard), as a configuration reload compares them — a runbook edit keeps
/// the rule's restored state.
fn definition(rule: &super::RuleRt) -> String {
    let computed = crate::config::RuleConfig {
        description: String::new(),
        runbook: None,
        dashboard: None,
        ..rule.cfg.clone()
    };
    format!("{computed:?}")
}

impl Engine {
    /// The engine's whole state as bytes (see the module docs).
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        encode(std::slice::from_ref(self), &self.stats)
    }

    /// Replaces the engine's state by a snapshot's. Rules are matched by name
    /// and definition; the others start empty.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<RestoreSummary, SnapshotError> {
        let snap = EngineSnapshot::decode(bytes)?;
        let mut summary = RestoreSummary::default();
        // Old rule index → new rule index: the same rule, else (by name) the
        // same computation judged by other settings.
        let mut targets: Vec<Option<usize>> = snap
            .rules
            .iter()
            .map(|rs| {
                self.rules
                    .iter()
                    .position(|r| *r.name == *rs.name && definition(r) == rs.definition)
            })
            .collect();
        let mut retuned = vec![false; targets.len()];
        if snap.computations.len() == snap.rules.len() {
            for (si, rs) in snap.rules.iter().enumerate() {
                if targets[si].is_some() {
                    continue;
                }
                let found = self.rules.iter().enumerate().position(|(i, r)| {
                    *r.name == *rs.name
                        && !targets.contains(&Some(i))
                        && incremental::computation_id(r) == snap.computations[si]
                });
                targets[si] = found;
                retuned[si] = found.is_some();
            }
        }
        let mut map: Vec<Option<u32>> = Vec::with_capacity(snap.rules.len());
        // The keys of the groups the rules keep (those not in the snapshot).
        super::table::stash(&self.tables, &mut self.rules);
        for ((rs, target), retuned) in snap.rules.into_iter().zip(targets).zip(retuned) {
            if retuned {
                summary.rules_retuned.push(rs.name.clone());
            }
            let Some(i) = target else {
                summary.rules_dropped.push(rs.name);
                map.push(None);
                continue;
            };
            let rule = &mut self.rules[i];
            rule.origin = rs.origin;
            rule.wheel = rs.wheel;
            rule.keys.clear();
            rule.slots = Vec::with_capacity(rs.slots.len());
            for (s, slot) in rs.slots.into_iter().enumerate() {
                let group = slot.group.map(|g| {
                    let (g, key, hash) = g.into_parts();
                    rule.keys.push((s as u32, hash, key));
                    g
                });
                rule.slots.push(Slot {
                    gen: slot.gen,
                    group,
                });
            }
            rule.free = rs.free;
            rule.live = rs.live;
            rule.stats = rs.stats;
            rule.reindex(rs.backlog_early);
            summary.groups += rule.live;
            summary.rules_restored.push(rs.name);
            map.push(Some(i as u32));
        }
        // The shared group tables, from the restored groups.
        super::table::rebuild(&mut self.tables, &mut self.rules);
        self.wheel_floor = i64::MIN;
        self.clock = snap.clock;
        self.stats = snap.stats;
        self.dedup
            .restore(snap.dedup_order, snap.dedup_evicted_early);
        self.timers.clear();
        for (t, r, slot, gen) in snap.timers {
            if let Some(Some(nr)) = map.get(r as usize) {
                self.timers.push(Reverse((t, *nr, slot, gen)));
            }
        }
        Ok(summary)
    }

    /// Dedup keys of every active alert instance (pending or firing).
    pub(crate) fn active_alert_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for rule in &self.rules {
            for slot in &rule.slots {
                if let Some(k) = slot
                    .group
                    .as_ref()
                    .and_then(|g| g.instance.as_deref())
                    .and_then(|i| i.key.as_deref())
                {
                    keys.push(k.to_string());
                }
            }
        }
        keys.sort_unstable();
        keys
    }

    /// Live groups per rule: (rule name, groups).
    pub fn groups_per_rule(&self) -> Vec<(String, usize)> {
        self.rules
            .iter()
            .map(|r| (r.name.to_string(), r.live))
            .collect()
    }
}

/// The state of `engines` — one engine, or the workers of a
/// [`ShardedEngine`](super::ShardedEngine), whose groups are disjoint — as the
/// snapshot of one engine holding all their groups: each worker's slots follow
/// the previous workers' (timers and wheel entries moved with them), counters
/// are summed, and what is rule-wide (clock, dedup memory, origins) is the
/// first worker's, identical in all. `stats` are the engine-wide counters.
pub(super) fn encode(engines: &[Engine], stats: &EngineStats) -> Result<Vec<u8>, SnapshotError> {
    /// The slots of one rule over every worker, as one sequence (each
    /// worker's with the group table holding its keys).
    struct Slots<'a>(Vec<(&'a [Slot], &'a GroupTable)>);
    impl Serialize for Slots<'_> {
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let total = self.0.iter().map(|p| p.0.len()).sum();
            let mut seq = ser.serialize_seq(Some(total))?;
            for (slots, table) in &self.0 {
                for s in slots.iter() {
                    seq.serialize_element(&SlotOut {
                        gen: s.gen,
                        group: s
                            .group
                            .as_ref()
                            .map(|g| GroupOut::new(g, table.key(g.entry), table.hash(g.entry))),
                    })?;
                }
            }
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct Ref<'a> {
        clock: Option<i64>,
        timers: Vec<(i64, u32, u32, u32)>,
        stats: &'a EngineStats,
        dedup_order: Vec<(i64, u64)>,
        dedup_evicted_early: u64,
        rules: Vec<RuleRef<'a>>,
        computations: Vec<[u8; 16]>,
    }
    #[derive(Serialize)]
    struct RuleRef<'a> {
        name: &'a str,
        definition: String,
        origin: Option<i64>,
        wheel: std::borrow::Cow<'a, Wheel>,
        slots: Slots<'a>,
        free: std::borrow::Cow<'a, [u32]>,
        live: usize,
        stats: std::borrow::Cow<'a, RuleStats>,
        backlog_early: Vec<(i64, Box<str>)>,
    }
    let first = &engines[0];
    // offsets[r][w]: where worker w's slots of rule r start.
    let offsets: Vec<Vec<u32>> = (0..first.rules.len())
        .map(|r| {
            let mut off = 0u32;
            engines
                .iter()
                .map(|e| {
                    let o = off;
                    off += e.rules[r].slots.len() as u32;
                    o
                })
                .collect()
        })
        .collect();
    let mut timers: Vec<(i64, u32, u32, u32)> = Vec::new();
    for (w, e) in engines.iter().enumerate() {
        timers.extend(e.timers.iter().map(|Reverse((t, r, slot, gen))| {
            let off = offsets.get(*r as usize).map_or(0, |o| o[w]);
            (*t, *r, slot + off, *gen)
        }));
    }
    let mut rules = Vec::with_capacity(first.rules.len());
    for (r, rule) in first.rules.iter().enumerate() {
        let offsets = &offsets[r];
        let single = engines.len() == 1;
        let wheel = if single {
            std::borrow::Cow::Borrowed(&rule.wheel)
        } else {
            let parts = engines
                .iter()
                .zip(offsets.iter())
                .map(|(e, &o)| (&e.rules[r].wheel, o));
            let slide = rule.slide;
            std::borrow::Cow::Owned(Wheel::merged(parts, |q, slot, gen| {
                timers.push((super::pane::boundary_time(q, slide), r as u32, slot, gen));
            }))
        };
        let (free, stats) = if single {
            (
                std::borrow::Cow::Borrowed(&rule.free[..]),
                std::borrow::Cow::Borrowed(&rule.stats),
            )
        } else {
            let mut free = Vec::new();
            let mut st = RuleStats::default();
            for (e, &o) in engines.iter().zip(offsets.iter()) {
                let er = &e.rules[r];
                free.extend(er.free.iter().map(|s| s + o));
                st.add(&er.stats);
            }
            (std::borrow::Cow::Owned(free), std::borrow::Cow::Owned(st))
        };
        rules.push(RuleRef {
            name: &rule.name,
            definition: definition(rule),
            // The same in every worker (a response-SLA rule's: its one owner's).
            origin: engines.iter().filter_map(|e| e.rules[r].origin).min(),
            wheel,
            slots: Slots(
                engines
                    .iter()
                    .map(|e| {
                        let rule = &e.rules[r];
                        (&rule.slots[..], &e.tables[rule.group_by_id])
                    })
                    .collect(),
            ),
            free,
            live: engines.iter().map(|e| e.rules[r].live).sum(),
            stats,
            // Held by the one worker that owns a response-SLA rule.
            backlog_early: engines
                .iter()
                .flat_map(|e| {
                    e.rules[r]
                        .backlog
                        .as_ref()
                        .map(|b| b.early())
                        .unwrap_or_default()
                })
                .collect(),
        });
    }
    timers.sort_unstable();
    let (dedup_order, dedup_evicted_early) = first.dedup.export();
    let r = Ref {
        clock: first.clock,
        timers,
        stats,
        dedup_order,
        dedup_evicted_early,
        rules,
        computations: first
            .rules
            .iter()
            .map(incremental::computation_id)
            .collect(),
    };
    bincode::serialize(&r).map_err(|e| SnapshotError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;
    use crate::engine::Engine;
    use crate::replay::OrderedFeed;

    const CFG: &str = r#"
[[rules]]
name = "c"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3 }
for = "2m"
keep_firing_for = "1m"
[[rules]]
name = "d"
window = "10m"
slide = "1m"
indicator = { kind = "repeat_customers", select = { type = "complaint" }, min_events = 2 }
thresholds = { warning = 1 }
[[rules]]
name = "s"
window = "2m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "6m", min_baseline = 1 }
thresholds = { warning = 2.5 }
"#;

    fn lines() -> Vec<String> {
        let t0 = 1_795_132_800_000i64;
        (0..400)
            .map(|i| {
                let burst = (150..230).contains(&i);
                let ts = t0 + i * if burst { 5_000 } else { 20_000 } + (i % 7) * 900;
                format!(
                    r#"{{"id":"e{}","type":"complaint","ts":{ts},"customer_id":"c{}","attrs":{{"product":"p{}"}}}}"#,
                    i % 397,
                    i % 13,
                    i % 3
                )
            })
            .collect()
    }

    fn run(cut: Option<usize>, cfg: &Config) -> Vec<String> {
        run_lines(cut, cfg, &lines(), 3)
    }

    fn run_lines(cut: Option<usize>, cfg: &Config, all: &[String], rules: usize) -> Vec<String> {
        let mut engine = Engine::new(cfg).unwrap();
        let mut feed = OrderedFeed::new(&mut engine);
        let mut out = Vec::new();
        for (i, l) in all.iter().enumerate() {
            if Some(i) == cut {
                // Restart: a new engine from the snapshot (the feed's held
                // events are what the live service re-reads from Kafka).
                let bytes = engine.snapshot().unwrap();
                let mut fresh = Engine::new(cfg).unwrap();
                fresh.set_sequenced(true);
                let summary = fresh.restore(&bytes).unwrap();
                assert_eq!(summary.rules_restored.len(), rules);
                assert_eq!(fresh.snapshot().unwrap(), bytes, "restore is exact");
                engine = fresh;
            }
            feed.push(&mut engine, l.as_bytes(), None, &mut out)
                .unwrap();
        }
        feed.finish(&mut engine, &mut out);
        out.iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect()
    }

    #[test]
    fn a_restored_engine_continues_exactly() {
        let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).unwrap();
        let whole = run(None, &cfg);
        assert!(whole.iter().any(|l| l.contains("\"firing\"")));
        assert!(whole.iter().any(|l| l.contains("\"resolved\"")));
        for cut in [1, 57, 160, 199, 231, 399] {
            assert_eq!(run(Some(cut), &cfg), whole, "cut at {cut}");
        }
    }

    #[test]
    fn root_cause_counts_survive_a_restore() {
        let cfg = Config::from_toml_str(
            r#"
[[rules]]
name = "s"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "surge", select = { type = "complaint" }, baseline = "1h", min_baseline = 5 }
thresholds = { warning = 2.0 }
explain = ["channel"]
"#,
            &HashMap::<String, String>::new(),
        )
        .unwrap();
        // Three hours of two complaints a minute (a quarter social), then
        // twenty minutes of six a minute, mostly social.
        let t0 = 1_795_132_800_000i64;
        let mut all = Vec::new();
        for m in 0..200i64 {
            let k = if m >= 180 { 6 } else { 2 };
            for j in 0..k {
                let social = if m >= 180 { j != 0 } else { (m + j) % 4 == 0 };
                let channel = if social { "social" } else { "web" };
                all.push(format!(
                    r#"{{"id":"e{m}-{j}","type":"complaint","ts":{},"attrs":{{"product":"p","channel":"{channel}"}}}}"#,
                    t0 + m * 60_000 + j * 7_000
                ));
            }
        }
        let whole = run_lines(None, &cfg, &all, 1);
        assert!(
            whole
                .iter()
                .any(|l| l.contains(r#""hints":[{"attribute":"channel","value":"social""#)),
            "{whole:?}"
        );
        for cut in [100, 361, 370, 390] {
            assert_eq!(run_lines(Some(cut), &cfg, &all, 1), whole, "cut at {cut}");
        }
    }

    /// An engine of `CFG` after the first 200 lines, and its snapshot.
    fn after_200_lines() -> (Engine, Vec<u8>) {
        let cfg = Config::from_toml_str(CFG, &HashMap::<String, String>::new()).unwrap();
        let mut engine = Engine::new(&cfg).unwrap();
        let mut out = Vec::new();
        for l in lines().iter().take(200) {
            engine.process_bytes(l.as_bytes(), None, &mut out).unwrap();
        }
        let bytes = engine.snapshot().unwrap();
        (engine, bytes)
    }

    #[test]
    fn a_changed_rule_starts_empty_and_the_others_keep_their_state() {
        let (engine, bytes) = after_200_lines();
        let changed = CFG.replace(
            "group_by = [\"product\"]\nwindow = \"10m\"",
            "group_by = [\"product\"]\nwindow = \"20m\"",
        );
        assert_ne!(changed, CFG);
        let cfg2 = Config::from_toml_str(&changed, &HashMap::<String, String>::new()).unwrap();
        let mut e2 = Engine::new(&cfg2).unwrap();
        let s = e2.restore(&bytes).unwrap();
        assert_eq!(s.rules_dropped, vec!["c".to_string()]);
        assert_eq!(s.rules_restored, vec!["d".to_string(), "s".to_string()]);
        assert_eq!(e2.live_groups(0), 0);
        assert_eq!(e2.live_groups(1), engine.live_groups(1));
        assert!(e2.restore(b"garbage").is_err());
        // Only retuned (its thresholds): it keeps its state.
        let retuned = CFG.replace(
            "thresholds = { warning = 3 }",
            "thresholds = { warning = 4 }",
        );
        let cfg3 = Config::from_toml_str(&retuned, &HashMap::<String, String>::new()).unwrap();
        let mut e3 = Engine::new(&cfg3).unwrap();
        let s = e3.restore(&bytes).unwrap();
        assert!(s.rules_dropped.is_empty());
        assert_eq!(s.rules_retuned, vec!["c".to_string()]);
        assert_eq!(e3.live_groups(0), engine.live_groups(0));
    }

    #[test]
    fn a_rule_whose_runbook_changed_keeps_its_state() {
        let (engine, bytes) = after_200_lines();
        let edited = CFG.replace(
            "thresholds = { warning = 3 }",
            "thresholds = { warning = 3 }\nrunbook = \"https://wiki.example/runbooks/c\"\ndescription = \"edited\"",
        );
        assert_ne!(edited, CFG);
        let cfg2 = Config::from_toml_str(&edited, &HashMap::<String, String>::new()).unwrap();
        let mut e2 = Engine::new(&cfg2).unwrap();
        let s = e2.restore(&bytes).unwrap();
        assert!(s.rules_dropped.is_empty(), "{:?}", s.rules_dropped);
        assert_eq!(e2.live_groups(0), engine.live_groups(0));
    }
}
