//! The event-time sequencer: puts events into one canonical order before the
//! engine sees them, so that live runs equal replays (`docs/time.md`).
//!
//! ```text
//! sources ─► decode ─► sequencer ─► engine (deterministic core)
//!            (valid)   (hold until the watermark passes; release in (ts, id) order)
//! ```
//!
//! The engine's output depends on the order it sees events in: an alert fires
//! *on* the event that crosses, and its time (and so its `dedup_key`) is that
//! event's time. Kafka orders events only within a partition, and how
//! partitions interleave, how polls cut batches, and how far producers
//! reorder events are accidents of a run. The sequencer removes them: it holds
//! every valid event until the **watermark** — the caller's clock (the newest
//! event time, or in the live service the slowest active partition's) minus
//! `allowed_lateness` — has passed it, and releases held events in
//! `(ts, id, order key)` order, the order key a stable 64-bit hash of the
//! input bytes ([`order_key`]; the bytes themselves after a collision). Any two runs whose events arrive within
//! `allowed_lateness` of the watermark therefore feed the engine the very same
//! sequence, whatever the batching, the interleaving or the restarts.
//!
//! The price is detection latency: an event reaches the windows
//! `allowed_lateness` of event time after the newest event (in the live
//! service, after the slowest active partition has moved that far), and memory:
//! the held events of that stretch of time.
//!
//! An event that arrives behind the watermark (more out of order than
//! `allowed_lateness`) cannot be put in its place any more: [`SequencerOf::offer`]
//! hands it back, the caller applies it at once, and the engine counts it late
//! if it is older than its window.

pub use crate::event::order::order_key;
#[cfg(test)]
use crate::event::order::tie_break;
#[cfg(test)]
use std::cmp::Ordering;

mod jump;
mod keys;

use keys::Keys;

pub use jump::{JumpGuard, Verdict};

/// One held event as raw bytes: the sequencer's own tests hold
/// these (the tools hold decoded events, [`crate::event::OwnedEvent`]).
#[cfg(test)]
#[derive(Debug)]
pub struct Held {
    /// Event time (ms).
    pub(crate) ts: i64,
    /// The event's id (second sort key).
    pub(crate) id: Box<str>,
    /// The raw event, to decode again on release (third sort key, through
    /// [`order_key`]: two different events with one id and time still come
    /// out in one order).
    pub(crate) raw: Box<[u8]>,
}

#[cfg(test)]
impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

#[cfg(test)]
impl Eq for Held {}

#[cfg(test)]
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.id.cmp(&other.id))
            .then_with(|| tie_break(&self.raw, &other.raw))
    }
}

/// What a sequencer can hold: totally ordered by `(ts, id, order key)`
/// ([`order_key`]), with its
/// event time and its size.
pub trait Holdable: Ord {
    /// Event time (ms).
    fn ts(&self) -> i64;
    /// Bytes of the raw event (for the held-bytes gauge).
    fn raw_len(&self) -> usize;
}

#[cfg(test)]
impl Holdable for Held {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn raw_len(&self) -> usize {
        self.raw.len()
    }
}

impl Holdable for crate::event::OwnedEvent {
    fn ts(&self) -> i64 {
        crate::event::OwnedEvent::ts(self)
    }
    fn raw_len(&self) -> usize {
        self.raw().len()
    }
}

/// The sequencer of raw events (the sequencer's tests).
#[cfg(test)]
pub(crate) type Sequencer = SequencerOf<Held>;

/// Holds events until the watermark passes them (see the module docs).
///
/// Small keys — `(ts, slot)`, 16 bytes — are ordered, not the events
/// themselves, and by time only ([`keys`]: FIFO lanes of rising times, a
/// heap for what fits none). Events of one time come out together and are
/// put in `(ts, id, order key)` order among themselves before they are
/// handed over, so the release order is the one a heap of the events would
/// give.
#[derive(Debug)]
pub struct SequencerOf<H> {
    /// `(ts, slot)` of every held event, earliest first.
    heap: Keys,
    /// The held events; `None` marks a free slot (listed in `free`).
    slots: Vec<Option<H>>,
    free: Vec<u32>,
    /// Every event older than this has been released (`None`: nothing yet).
    released_below: Option<i64>,
    /// Bytes of raw events held.
    held_bytes: usize,
    /// Events of one time, popped and being put in order (kept for its buffer).
    run: Vec<H>,
}

impl<H: Holdable> Default for SequencerOf<H> {
    fn default() -> Self {
        SequencerOf {
            heap: Keys::default(),
            slots: Vec::new(),
            free: Vec::new(),
            released_below: None,
            held_bytes: 0,
            run: Vec::new(),
        }
    }
}

impl<H: Holdable> SequencerOf<H> {
    /// An empty sequencer.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Offers a valid event. Returns it back when it is behind what was
    /// already released (the caller applies it at once); otherwise holds it.
    pub(crate) fn offer(&mut self, held: H) -> Option<H> {
        if self.released_below.is_some_and(|b| held.ts() < b) {
            return Some(held);
        }
        self.held_bytes += held.raw_len();
        let ts = held.ts();
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(held);
                s
            }
            None => {
                self.slots.push(Some(held));
                // More than 2^32 events held at once cannot fit in memory.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push((ts, slot));
        None
    }

    /// Takes the held event of `slot` out.
    fn take(&mut self, slot: u32) -> Option<H> {
        let h = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.held_bytes -= h.raw_len();
        Some(h)
    }

    /// Pops every held event older than `below` (all with `None`) and hands
    /// them to `f` in `(ts, id, order key)` order; returns the last one's time.
    fn pop_below(&mut self, below: Option<i64>, f: &mut impl FnMut(H)) -> Option<i64> {
        let mut last = None;
        while let Some((ts, slot)) = self.heap.pop_if(|t| below.is_none_or(|b| t < b)) {
            // Every held event of this time, then their order among themselves.
            let mut run = std::mem::take(&mut self.run);
            run.extend(self.take(slot));
            while let Some((_, slot)) = self.heap.pop_if(|t| t == ts) {
                run.extend(self.take(slot));
            }
            if run.len() > 1 {
                run.sort();
            }
            for h in run.drain(..) {
                f(h);
            }
            self.run = run;
            last = Some(ts);
        }
        if self.heap.is_empty() {
            // Nothing held: the slots' memory goes back.
            self.slots.clear();
            self.free.clear();
        }
        last
    }

    /// Releases, in order, every held event older than `watermark` (exclusive),
    /// and remembers that everything before it has been released.
    pub(crate) fn release(&mut self, watermark: i64, mut f: impl FnMut(H)) {
        if self.released_below.is_some_and(|b| watermark <= b) {
            return;
        }
        self.pop_below(Some(watermark), &mut f);
        self.released_below = Some(watermark);
    }

    /// Releases everything held, in order (end of input, or a shutdown that
    /// will not resume from a checkpoint).
    pub(crate) fn release_all(&mut self, mut f: impl FnMut(H)) {
        if let Some(t) = self.pop_below(None, &mut f) {
            let b = t.saturating_add(1);
            self.released_below = Some(self.released_below.map_or(b, |x| x.max(b)));
        }
    }

    /// Drops the held events `keep` refuses (a revoked partition's); returns
    /// how many were dropped.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&H) -> bool) -> usize {
        let before = self.heap.len();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.as_ref().is_some_and(|h| !keep(h)) {
                *s = None;
                self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let slots = &self.slots;
        self.heap
            .retain(|(_, slot)| slots.get(*slot as usize).is_some_and(Option::is_some));
        self.held_bytes = self.iter().map(Holdable::raw_len).sum();
        before - self.heap.len()
    }

    /// The held events, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &H> {
        self.slots.iter().flatten()
    }

    /// Every event older than this has been released.
    pub(crate) fn released_below(&self) -> Option<i64> {
        self.released_below
    }

    /// Restores the release point (after a checkpoint restore).
    pub(crate) fn set_released_below(&mut self, below: Option<i64>) {
        self.released_below = below;
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes of raw events held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The earliest held event time.
    pub fn earliest(&self) -> Option<i64> {
        self.heap.earliest()
    }
}

/// The watermark a clock gives: `clock − allowed_lateness`.
pub(crate) fn watermark(clock: i64, lateness_ms: i64) -> i64 {
    clock.saturating_sub(lateness_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ts: i64, id: &str) -> Held {
        Held {
            ts,
            id: id.into(),
            raw: id.as_bytes().into(),
        }
    }

    #[test]
    fn releases_in_time_then_id_order_below_the_watermark() {
        let mut s = Sequencer::new();
        for (ts, id) in [(30, "c"), (10, "b"), (20, "a"), (10, "a")] {
            assert!(s.offer(h(ts, id)).is_none());
        }
        let mut got = Vec::new();
        s.release(20, |h| got.push((h.ts, h.id.to_string())));
        assert_eq!(got, vec![(10, "a".to_string()), (10, "b".to_string())]);
        assert_eq!(s.len(), 2);
        // Behind what was released: handed back.
        assert!(s.offer(h(19, "z")).is_some());
        // At the watermark exactly: still in time.
        assert!(s.offer(h(20, "0")).is_none());
        got.clear();
        s.release_all(|h| got.push((h.ts, h.id.to_string())));
        assert_eq!(
            got,
            vec![
                (20, "0".to_string()),
                (20, "a".to_string()),
                (30, "c".to_string())
            ]
        );
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.released_below(), Some(31));
    }

    #[test]
    fn releases_in_the_order_of_a_naive_model() {
        // Many events share a time, some an id too: ids, then bytes decide.
        let mut x: u64 = 7;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        type Key = (i64, String, Vec<u8>);
        let key = |h: &Held| -> Key { (h.ts, h.id.to_string(), h.raw.to_vec()) };
        let mut s = Sequencer::new();
        // The model: what is held, sorted at each release (by time, id,
        // then the bytes' order key).
        let mut model: Vec<Key> = Vec::new();
        let order = |a: &Key, b: &Key| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| tie_break(&a.2, &b.2))
        };
        for round in 0..60i64 {
            for _ in 0..40 {
                let ts = round * 10 + (next() % 30) as i64 - 5;
                let id = format!("{}", next() % 4);
                let raw = format!("{id}-{}", next() % 3).into_bytes();
                let h = Held {
                    ts,
                    id: id.as_str().into(),
                    raw: raw.clone().into(),
                };
                match s.offer(h) {
                    Some(back) => assert!(back.ts < s.released_below().unwrap_or(i64::MAX)),
                    None => model.push((ts, id, raw)),
                }
            }
            if round % 7 == 3 {
                let gone = s.retain(|h| h.raw.last() != Some(&b'2'));
                let before = model.len();
                model.retain(|k| k.2.last() != Some(&b'2'));
                assert_eq!(gone, before - model.len());
            }
            let mut got = Vec::new();
            s.release(round * 10, |h| got.push(key(&h)));
            model.sort_by(order);
            let cut = model.partition_point(|k| k.0 < round * 10);
            let want: Vec<Key> = model.drain(..cut).collect();
            assert_eq!(got, want, "round {round}");
            assert_eq!(s.len(), model.len());
            assert_eq!(
                s.held_bytes(),
                model.iter().map(|k| k.2.len()).sum::<usize>()
            );
            assert_eq!(s.earliest(), model.iter().map(|k| k.0).min());
        }
        let mut got = Vec::new();
        s.release_all(|h| got.push(key(&h)));
        model.sort_by(order);
        assert_eq!(got, model);
        assert!(s.is_empty() && s.held_bytes() == 0);
    }

    #[test]
    fn the_watermark_never_moves_back() {
        let mut s = Sequencer::new();
        s.release(100, |_: Held| {});
        s.release(50, |_| {});
        assert_eq!(s.released_below(), Some(100));
        assert!(s.offer(h(60, "x")).is_some());
    }
}
