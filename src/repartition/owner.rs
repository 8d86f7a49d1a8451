//! The owning side: the internal partitions one instance is assigned, their
//! shards' engine, and the clock the reports give it.

use std::collections::{BTreeMap, BTreeSet};

use std::cmp::Ordering;

use super::wire_event::{self, BodyError};
use super::{partition_of_shard, Envelope, Keyed, Order, Source};
use crate::alert::Transition;
use crate::config::Config;
use crate::engine::{Engine, EngineError, Outcome};
use crate::sequencer::{watermark, Holdable, SequencerOf};

mod checkpoint;

pub use checkpoint::OwnerCheckpointError;

/// The idle reports of a woken pair that end its wake (see `Owner::woken`).
const WAKE_ENDS_AFTER: u8 = 2;

/// Where a held event came from: internal partition and offset.
#[derive(Debug, Clone, Copy)]
struct Tag {
    partition: u32,
    offset: i64,
}

/// A held event: its body as sent ([`wire_event`]), read back on release,
/// ordered as one instance orders the input lines — by time, id, then the
/// input line's order key (the body only after a hash collision).
#[derive(Debug)]
struct Pending {
    ts: i64,
    /// The id's place in `body`.
    id: (usize, usize),
    key: u64,
    body: Box<[u8]>,
    tag: Tag,
}

impl Pending {
    fn new(key: u64, body: Vec<u8>, tag: Tag) -> Result<Self, BodyError> {
        let (ts, id) = wire_event::head(&body)?;
        Ok(Pending {
            ts,
            id,
            key,
            body: body.into_boxed_slice(),
            tag,
        })
    }

    fn id(&self) -> &[u8] {
        self.body.get(self.id.0..self.id.1).unwrap_or_default()
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// `(ts, id, order key)` as [`crate::sequencer::Held`] (ids compare as
    /// their bytes, as `str` does), then the body.
    fn cmp(&self, other: &Self) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.id().cmp(other.id()))
            .then_with(|| self.key.cmp(&other.key))
            .then_with(|| self.body.cmp(&other.body))
    }
}

impl Holdable for Pending {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn raw_len(&self) -> usize {
        self.body.len()
    }
}

/// The engine of the shards of some internal partitions (see the module docs).
#[derive(Debug)]
pub struct Owner {
    engine: Engine,
    owned: BTreeSet<u32>,
    sources: Vec<Source>,
    /// (internal partition, source) → newest event time reported there.
    marks: BTreeMap<(u32, Source), i64>,
    /// (internal partition, source) reported idle since its last report.
    idle: BTreeSet<(u32, Source)>,
    /// (internal partition, source) reported quiet since its last report:
    /// for how long (ms). Not checkpointed: the clock it moved is.
    quiet: BTreeMap<(u32, Source), u64>,
    /// (internal partition, source) idle pairs woken when another pair
    /// delivered after every pair had gone idle (the whole stream paused):
    /// each holds the clock at its newest time again, as an active pair,
    /// until it reports, or its split stage reports it idle twice more (a
    /// split stage repeats an idle source's [`Envelope::Idle`] every
    /// `idle_partition_timeout`, judged by when the consumer handed its
    /// messages over: the first repeat may have been decided before the
    /// burst reached that stage, the second comes at least a timeout after
    /// it) — with the count of those reports so far. Without this, the first
    /// source of a burst after the pause (a backfill after an upstream
    /// outage) moved the clock alone and the other sources' events of the
    /// same burst came late — as one instance's partitions
    /// (`source::watermarks`). An owner timer would not do: an owner working
    /// through the burst's first source can read the next source's messages
    /// later than any timeout after the wake. Not checkpointed.
    woken: BTreeMap<(u32, Source), u8>,
    /// This configuration's [`fingerprint`](super::fingerprint).
    config: u64,
    /// (internal partition, source) whose last clock message came from an
    /// instance with another configuration: its fingerprint.
    foreign: BTreeMap<(u32, Source), u64>,
    /// Rule → earliest matching event time reported by any source.
    origins: BTreeMap<u32, i64>,
    seq: SequencerOf<Pending>,
    lateness_ms: i64,
    /// Newest event time reported by any source.
    newest: Option<i64>,
    /// Events not applied: another owned partition brings them.
    skipped: u64,
    /// (internal partition, source) → the input offset after the last event
    /// forwarded there: an event below it, behind the release point, is a
    /// second copy (a split stage that took a dead instance's input
    /// partition forwards again from the last commit) and is dropped. The
    /// id dedup caught those only within `engine.dedup_horizon` of event
    /// time, which a backlog read fast outruns.
    forwarded: BTreeMap<(u32, Source), i64>,
    /// Second copies dropped so.
    resent: u64,
    /// Internal messages that did not decode, or events that no longer do.
    unreadable: u64,
    /// Rule names, by index (the order key of transitions).
    rules: Vec<String>,
    /// Scratch buffer of the engine's transitions.
    buf: Vec<Transition>,
}

impl Owner {
    /// The owner of internal partitions `owned` (of `partitions`, holding
    /// `shards` shards) fed from the input partitions `sources`.
    pub fn new(
        cfg: &Config,
        shards: u32,
        partitions: u32,
        owned: impl IntoIterator<Item = u32>,
        sources: Vec<Source>,
    ) -> Result<Self, EngineError> {
        let owned: BTreeSet<u32> = owned.into_iter().collect();
        let parts = partitions.max(1);
        let mut engine = Engine::owning(cfg, shards, |s| {
            owned.contains(&partition_of_shard(s, parts))
        })?;
        engine.set_sequenced(true);
        let lateness_ms = engine.lateness_ms();
        let rules = cfg.rules.iter().map(|r| r.name.clone()).collect();
        Ok(Owner {
            rules,
            buf: Vec::new(),
            engine,
            owned,
            sources,
            marks: BTreeMap::new(),
            idle: BTreeSet::new(),
            quiet: BTreeMap::new(),
            woken: BTreeMap::new(),
            config: super::fingerprint(cfg),
            foreign: BTreeMap::new(),
            origins: BTreeMap::new(),
            seq: SequencerOf::new(),
            lateness_ms,
            newest: None,
            skipped: 0,
            forwarded: BTreeMap::new(),
            resent: 0,
            unreadable: 0,
        })
    }

    /// Takes message `env` read at `offset` of internal partition
    /// `partition`. An event behind the release point (more out of order
    /// than `allowed_lateness`) is applied at once; others wait for
    /// [`Owner::release`].
    pub fn offer(
        &mut self,
        partition: u32,
        offset: i64,
        env: Envelope,
        out: &mut Vec<Keyed>,
    ) -> Option<Outcome> {
        if !self.owned.contains(&partition) {
            return None;
        }
        if let Some(config) = env.config() {
            let pair = (partition, env_source(&env));
            if config != self.config {
                // Another configuration's clock: the pair waits (see `foreign`).
                self.foreign.insert(pair, config);
                return None;
            }
            self.foreign.remove(&pair);
        }
        match env {
            Envelope::Report {
                source,
                newest,
                origins,
                ..
            } => {
                self.delivers((partition, source));
                let m = self.marks.entry((partition, source)).or_insert(newest);
                *m = (*m).max(newest);
                self.newest = Some(self.newest.map_or(newest, |n| n.max(newest)));
                for (r, t) in origins {
                    let o = self.origins.entry(r).or_insert(t);
                    *o = (*o).min(t);
                }
                None
            }
            Envelope::Occupied { panes, .. } => {
                // Rule-wide, like the origins; a set: repeats change nothing.
                for (r, pane) in panes {
                    self.engine.note_occupied(r as usize, pane);
                }
                None
            }
            Envelope::Idle { source, .. } => {
                let pair = (partition, source);
                match self.woken.get_mut(&pair) {
                    Some(n) if *n + 1 < WAKE_ENDS_AFTER => *n += 1,
                    Some(_) => {
                        self.woken.remove(&pair);
                        self.idle.insert(pair);
                    }
                    None => {
                        self.idle.insert(pair);
                    }
                }
                None
            }
            Envelope::Quiet {
                source, quiet_ms, ..
            } => {
                // A woken pair stays woken: its stage sends these every
                // second while all it reads is quiet (another stage's
                // sources may be what delivers).
                let pair = (partition, source);
                if !self.woken.contains_key(&pair) {
                    self.idle.insert(pair);
                }
                self.quiet.insert(pair, quiet_ms);
                None
            }
            Envelope::Event {
                source,
                offset: input,
                targets,
                key,
                event,
            } => {
                self.delivers((partition, source));
                let next = self
                    .forwarded
                    .entry((partition, source))
                    .or_insert(i64::MIN);
                let again = input < *next;
                *next = (*next).max(input.saturating_add(1));
                // Sent to several partitions this owner holds: the lowest applies it.
                if targets.iter().find(|t| self.owned.contains(t)) != Some(&partition) {
                    self.skipped += 1;
                    return None;
                }
                let Ok(held) = Pending::new(key, event, Tag { partition, offset }) else {
                    self.unreadable += 1;
                    return None;
                };
                // A second copy behind the release point: its first was
                // applied (one ahead of it waits in the sequencer, where the
                // id dedup meets both). Input offsets only go back when a
                // split stage forwards again, or the input topic was
                // recreated: then its new events lie ahead, and are kept.
                if again && self.seq.released_below().is_some_and(|b| held.ts < b) {
                    self.resent += 1;
                    return None;
                }
                let late = self.seq.offer(held)?;
                self.note_origins(Some(late.ts.saturating_add(1)));
                self.apply(&late, out)
            }
        }
    }

    /// `pair` delivers (a report or an event): it is active again. If every
    /// pair was idle, the other idle pairs wake (see `woken`).
    fn delivers(&mut self, pair: (u32, Source)) {
        if self.idle.remove(&pair) {
            self.quiet.remove(&pair);
            let all_idle = self.owned.iter().all(|&p| {
                self.sources
                    .iter()
                    .all(|&s| (p, s) == pair || self.idle.contains(&(p, s)))
            });
            if all_idle {
                for q in std::mem::take(&mut self.idle) {
                    self.quiet.remove(&q);
                    self.woken.insert(q, 0);
                }
            }
        }
        self.woken.remove(&pair);
    }

    /// Pairs woken after a pause of the whole stream that have not
    /// delivered or been reported idle twice since (see `woken`).
    pub fn woken(&self) -> usize {
        self.woken.len()
    }

    /// Releases what the clock (the slowest owned partition and source,
    /// minus `allowed_lateness`) has passed, in `(ts, id)` order.
    /// `applied` sees the internal partition, offset and outcome of each.
    pub fn release(&mut self, out: &mut Vec<Keyed>, mut applied: impl FnMut(u32, i64, Outcome)) {
        let Some(target) = self.target() else {
            return;
        };
        let wm = watermark(target, self.lateness_ms);
        if self.seq.released_below().is_some_and(|b| wm <= b) {
            return;
        }
        self.note_origins(Some(wm));
        let mut released = Vec::new();
        self.seq.release(wm, |h| released.push(h));
        for h in &released {
            if let Some(o) = self.apply(h, out) {
                applied(h.tag.partition, h.tag.offset, o);
            }
        }
        self.advance(wm.saturating_sub(1), out);
    }

    /// Releases everything held and moves the clock to the newest event
    /// time reported (the end of a finite stream).
    pub fn finish(&mut self, out: &mut Vec<Keyed>, mut applied: impl FnMut(u32, i64, Outcome)) {
        self.note_origins(None);
        let mut released = Vec::new();
        self.seq.release_all(|h| released.push(h));
        for h in &released {
            if let Some(o) = self.apply(h, out) {
                applied(h.tag.partition, h.tag.offset, o);
            }
        }
        if let Some(n) = self.newest {
            self.advance(n, out);
        }
    }

    /// The clock: the minimum over owned partitions and sources of the
    /// newest time reported; none until every pair has reported. A pair
    /// reported idle does not count; when every pair is idle, the clock is
    /// the newest time reported (as on one instance, `source::watermarks`),
    /// and when every pair that has reported is also quiet, that time plus
    /// the shortest quiet spell (as one instance's quiet stream,
    /// `crate::clock`).
    fn target(&self) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut newest: Option<i64> = None;
        let mut any_active = false;
        let mut quiet: Option<u64> = None;
        let mut all_quiet = true;
        for &p in &self.owned {
            for &s in &self.sources {
                let mark = self.marks.get(&(p, s)).copied();
                newest = newest.max(mark);
                if self.idle.contains(&(p, s)) {
                    if mark.is_some() {
                        match self.quiet.get(&(p, s)) {
                            Some(&q) => quiet = Some(quiet.map_or(q, |x| x.min(q))),
                            None => all_quiet = false,
                        }
                    }
                    continue;
                }
                any_active = true;
                let m = mark?;
                min = Some(min.map_or(m, |x| x.min(m)));
            }
        }
        if any_active {
            return min;
        }
        match (newest, quiet) {
            (Some(n), Some(q)) if all_quiet => {
                Some(n.saturating_add(i64::try_from(q).unwrap_or(i64::MAX)))
            }
            _ => newest,
        }
    }

    /// A (owned partition, source) pair whose last clock message came from
    /// an instance running another configuration, and that configuration's
    /// fingerprint (the pair holds this owner's clock until they agree).
    pub fn foreign(&self) -> Option<(u32, Source, u64)> {
        self.foreign.iter().next().map(|(&(p, s), &c)| (p, s, c))
    }

    /// This configuration's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.config
    }

    /// The (owned partition, source) pairs the clock waits for: never
    /// reported there, and not idle.
    pub fn waiting_for(&self) -> Vec<(u32, Source)> {
        let mut out = Vec::new();
        for &p in &self.owned {
            for &s in &self.sources {
                if !self.idle.contains(&(p, s)) && !self.marks.contains_key(&(p, s)) {
                    out.push((p, s));
                }
            }
        }
        out
    }

    /// Notes each rule's origin that lies before `below` (all: `None`).
    fn note_origins(&mut self, below: Option<i64>) {
        for (&r, &t) in &self.origins {
            let r = r as usize;
            if below.is_none_or(|b| t < b) && !self.engine.has_origin(r) {
                self.engine.note_origin(r, t);
            }
        }
    }

    /// Applies a released event: the timers due up to its time first (as
    /// one engine runs them), then the event; each transition keyed by its
    /// place in one engine's output order.
    fn apply(&mut self, h: &Pending, out: &mut Vec<Keyed>) -> Option<Outcome> {
        let Ok(ev) = wire_event::decode(&h.body) else {
            self.unreadable += 1;
            return None;
        };
        let t = self.engine.clock().map_or(ev.ts, |c| c.max(ev.ts));
        self.advance(t, out);
        let outcome = self.engine.apply(&ev, &mut self.buf);
        let id: Box<str> = ev.id.as_ref().into();
        for tr in self.buf.drain(..) {
            out.push(keyed(&self.rules, Some(id.clone()), tr));
        }
        Some(outcome)
    }

    /// Moves the clock to `t`: the timers' transitions.
    fn advance(&mut self, t: i64, out: &mut Vec<Keyed>) {
        self.engine.advance_clock(t, &mut self.buf);
        for tr in self.buf.drain(..) {
            out.push(keyed(&self.rules, None, tr));
        }
    }

    /// The owned shards' engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The current values of the owned shards' active alerts, as of the
    /// owner's clock (for the incident owners' progress updates).
    pub fn active_values(&mut self) -> Vec<crate::engine::CurrentValue> {
        self.engine.active_values()
    }

    /// Every transition before this time has been emitted (the release
    /// point), once the clock has moved.
    pub fn released_below(&self) -> Option<i64> {
        self.seq.released_below()
    }

    /// Events held, waiting for the clock.
    pub fn held(&self) -> usize {
        self.seq.len()
    }

    /// Events skipped because another owned partition applies them, and
    /// messages that could not be read.
    pub fn counts(&self) -> (u64, u64) {
        (self.skipped, self.unreadable)
    }

    /// Second copies of events dropped (forwarded again after a split
    /// stage's crash).
    pub fn resent(&self) -> u64 {
        self.resent
    }
}

/// The source of a message.
fn env_source(env: &Envelope) -> Source {
    match env {
        Envelope::Event { source, .. }
        | Envelope::Report { source, .. }
        | Envelope::Idle { source, .. }
        | Envelope::Quiet { source, .. }
        | Envelope::Occupied { source, .. } => *source,
    }
}

/// A transition with its order key: time, then what caused it (timers
/// before events, events by id), then rule and group.
fn keyed(rules: &[String], event: Option<Box<str>>, transition: Transition) -> Keyed {
    let rule = rules
        .iter()
        .position(|r| *r == transition.rule)
        .unwrap_or(rules.len()) as u32;
    Keyed {
        order: Order {
            at: transition.at,
            event,
            rule,
            group: transition.group.clone(),
        },
        transition,
    }
}
