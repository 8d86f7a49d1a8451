//! The splitting side: which internal partitions a valid event goes to, and
//! the per-source reports that carry event time and rule origins to them.

use std::collections::{BTreeMap, BTreeSet};

use super::{partition_of_shard, Envelope, Source};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::event::Event;

/// Per source: the newest event time and, per rule with a baseline, the
/// earliest matching event time.
#[derive(Debug, Default, Clone)]
struct Progress {
    newest: Option<i64>,
    origins: BTreeMap<u32, i64>,
    /// (rule, pane) of the surge rules' panes with events since the last
    /// report (`Envelope::Occupied`).
    occupied: BTreeSet<(u32, i64)>,
    /// The last (rule, pane) noted per rule: most events fall in the pane
    /// of the one before.
    last_pane: BTreeMap<u32, i64>,
}

/// Routes valid events to internal partitions (see the module docs).
#[derive(Debug)]
pub struct Splitter {
    /// Rules and selectors only: it never holds a window.
    router: Engine,
    shards: u32,
    partitions: u32,
    origin_rules: Vec<bool>,
    progress: BTreeMap<Source, Progress>,
    /// Sources read since the last [`Splitter::reports`].
    moved: BTreeSet<Source>,
    /// This configuration's [`fingerprint`](super::fingerprint).
    config: u64,
}

impl Splitter {
    /// A splitter for the rules of `cfg`, `shards` shards over `partitions`
    /// internal partitions.
    pub fn new(cfg: &Config, shards: u32, partitions: u32) -> Result<Self, EngineError> {
        let router = Engine::new(cfg)?;
        let mut origin_rules = vec![false; router.rule_count()];
        for r in router.origin_rules() {
            origin_rules[r] = true;
        }
        Ok(Splitter {
            router,
            shards: shards.max(1),
            partitions: partitions.max(1),
            origin_rules,
            progress: BTreeMap::new(),
            moved: BTreeSet::new(),
            config: super::fingerprint(cfg),
        })
    }

    /// A valid event read at `offset` of `source` (decoded from `raw`, the
    /// topic's default type applied): the internal partitions to send it to
    /// (ascending; none when no rule's selectors match it) and the message.
    /// The source's progress moves either way.
    pub fn split(
        &mut self,
        source: Source,
        offset: i64,
        ev: &Event<'_>,
        raw: &[u8],
    ) -> Option<(Vec<u32>, Envelope)> {
        let p = self.progress.entry(source).or_default();
        p.newest = Some(p.newest.map_or(ev.ts, |n| n.max(ev.ts)));
        self.router.occupied_panes(ev.ts, |r, pane| {
            if p.last_pane.insert(r, pane) != Some(pane) {
                p.occupied.insert((r, pane));
            }
        });
        self.moved.insert(source);
        let mut targets: Vec<u32> = Vec::new();
        let (shards, partitions, origin_rules) = (self.shards, self.partitions, &self.origin_rules);
        self.router.shards_of(ev, shards, |r, shard| {
            if origin_rules[r] {
                let o = p.origins.entry(r as u32).or_insert(ev.ts);
                *o = (*o).min(ev.ts);
            }
            let t = partition_of_shard(shard, partitions);
            if let Err(i) = targets.binary_search(&t) {
                targets.insert(i, t);
            }
        });
        if targets.is_empty() {
            return None;
        }
        let mut event = Vec::with_capacity(raw.len());
        super::wire_event::encode(ev, &mut event);
        let env = Envelope::Event {
            source,
            offset,
            targets: targets.clone(),
            key: crate::sequencer::order_key(raw),
            event,
        };
        Some((targets, env))
    }

    /// Reports of the sources read since the last call, for every internal
    /// partition (send them after the events they cover).
    pub fn reports(&mut self) -> Vec<Envelope> {
        let moved = std::mem::take(&mut self.moved);
        let mut out = Vec::with_capacity(moved.len() * 2);
        for s in moved {
            if let Some(p) = self.progress.get_mut(&s) {
                let panes = std::mem::take(&mut p.occupied);
                if !panes.is_empty() {
                    out.push(Envelope::Occupied {
                        source: s,
                        panes: panes.into_iter().collect(),
                        config: self.config,
                    });
                }
            }
            out.extend(self.report(s));
        }
        out
    }

    /// Reports of every source read so far (a heartbeat).
    pub fn all_reports(&self) -> Vec<Envelope> {
        self.progress
            .keys()
            .filter_map(|&s| self.report(s))
            .collect()
    }

    fn report(&self, source: Source) -> Option<Envelope> {
        let p = self.progress.get(&source)?;
        Some(Envelope::Report {
            source,
            newest: p.newest?,
            origins: p.origins.iter().map(|(&r, &t)| (r, t)).collect(),
            config: self.config,
        })
    }

    /// That `source` is idle, for every internal partition (see
    /// [`Envelope::Idle`]).
    pub fn idle(&self, source: Source) -> Envelope {
        Envelope::Idle {
            source,
            config: self.config,
        }
    }

    /// That every source this splitter reads has had nothing new for
    /// `quiet` (at least `engine.idle_timeout`), for every internal
    /// partition (see [`Envelope::Quiet`]).
    pub fn quiet(&self, source: Source, quiet: std::time::Duration) -> Envelope {
        Envelope::Quiet {
            source,
            quiet_ms: u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX),
            config: self.config,
        }
    }

    /// This configuration's [`fingerprint`](super::fingerprint).
    pub fn fingerprint(&self) -> u64 {
        self.config
    }

    /// The limits events are decoded with (the configuration's).
    pub fn limits(&self) -> &crate::event::DecodeLimits {
        self.router.limits()
    }

    /// Internal partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }
}
