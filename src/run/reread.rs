//! Partitions handed back to the same process: what its engine already
//! applied is skipped, not applied twice — but only where the broker hands
//! back the *same* messages.
//!
//! When the group session is lost (a broker that stalls longer than
//! `session.timeout.ms`), the commit at the revoke fails and the partition is
//! read again from its last successful commit, which trails what the engine
//! applied (commits wait for checkpoints). The id dedup drops such re-reads
//! only within `engine.dedup_horizon` of event time; a backlog read much
//! faster than real time spans more than that in seconds, and its events
//! would count twice (false pages).
//!
//! So the stage remembers, per partition, a 32-bit fingerprint of every
//! message it processed (taken on the consumer thread as the message is
//! copied) in the last `keep` of processing time (and at
//! most [`MAX_PER_PARTITION`] messages). At a revoke the partition's
//! fingerprints are set aside, with the offsets the engine has *not* done
//! (events the sequencer held, dropped at the revoke; dead letters in flight)
//! cleared. When the partition comes back, a message whose offset has a
//! fingerprint equal to its own is skipped (its effect is in the engine);
//! one without a fingerprint is processed. The first message whose
//! fingerprint *differs* ends the skipping for that partition: the broker is
//! handing out other messages at those offsets (a topic recreated after the
//! broker lost its storage), and every one of them is new. Skipping on offsets
//! alone cannot tell the two apart, and skipped the recreated topic's events.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[cfg(test)]
use crate::source::fingerprint;
use crate::source::Partition;

/// At most this many fingerprints per partition (4 bytes each: 8 MiB).
pub(crate) const MAX_PER_PARTITION: usize = 1 << 21;

/// Fingerprints are stamped with their processing time in blocks of this many.
const BLOCK: usize = 1024;

/// Not a fingerprint: an offset not done (or a gap in the offsets).
const NONE: u32 = 0;

/// The fingerprints of one partition's consecutive offsets.
#[derive(Debug, Default)]
struct Ring {
    /// Offset of `prints[0]`.
    base: i64,
    prints: VecDeque<u32>,
    /// (offset, processing time) of every [`BLOCK`]-th fingerprint.
    stamps: VecDeque<(i64, Instant)>,
    /// The last message pushed (offset, fingerprint), kept when the rest is
    /// forgotten: a checkpoint stores it (`state::Last`).
    last: Option<(i64, u32)>,
}

impl Ring {
    fn end(&self) -> i64 {
        self.base + self.prints.len() as i64
    }

    fn push(&mut self, offset: i64, print: u32, now: Instant) {
        if self.prints.is_empty() || offset < self.end() || offset - self.end() > BLOCK as i64 {
            // The first, a seek back, or a wide gap: start over here.
            *self = Ring {
                base: offset,
                ..Ring::default()
            };
        }
        while self.end() < offset {
            self.prints.push_back(NONE);
        }
        if ((offset - self.base) as usize).is_multiple_of(BLOCK) {
            self.stamps.push_back((offset, now));
        }
        self.prints.push_back(print);
        self.last = Some((offset, print));
        if self.prints.len() > MAX_PER_PARTITION {
            self.drop_before(self.end() - MAX_PER_PARTITION as i64);
        }
    }

    /// Forgets fingerprints stamped before `cutoff`.
    fn trim(&mut self, cutoff: Instant) {
        // Blocks are forgotten whole once a later block is stamped before
        // the cutoff too: what follows the last such stamp may be newer.
        let mut upto = None;
        while let Some(&(o, t)) = self.stamps.front() {
            if t >= cutoff {
                break;
            }
            self.stamps.pop_front();
            upto = Some(o);
        }
        if let Some(o) = upto {
            self.drop_before(o);
        }
    }

    fn drop_before(&mut self, offset: i64) {
        while self.base < offset && !self.prints.is_empty() {
            self.prints.pop_front();
            self.base += 1;
        }
        while self.stamps.front().is_some_and(|&(o, _)| o < self.base) {
            self.stamps.pop_front();
        }
    }

    fn get(&self, offset: i64) -> Option<u32> {
        if offset < self.base {
            return None;
        }
        self.prints.get((offset - self.base) as usize).copied()
    }

    fn clear(&mut self, offset: i64) {
        if offset >= self.base {
            if let Some(p) = self.prints.get_mut((offset - self.base) as usize) {
                *p = NONE;
            }
        }
    }
}

/// What the stage remembers of the messages it processed (see the module docs).
#[derive(Debug)]
pub(crate) struct Reread {
    keep: Duration,
    /// Looked up for every message: a fast hasher (partitions are not
    /// chosen by an adversary).
    live: HashMap<Partition, Ring, foldhash::fast::RandomState>,
    revoked: HashMap<Partition, Ring, foldhash::fast::RandomState>,
    /// Messages skipped so far (for the log and tests).
    skipped: u64,
}

impl Reread {
    /// Remembers `keep` of processing time: more than the time between two
    /// successful commits (commits wait for checkpoints).
    pub(crate) fn new(keep: Duration) -> Self {
        Reread {
            keep,
            live: HashMap::default(),
            revoked: HashMap::default(),
            skipped: 0,
        }
    }

    /// Message `offset` of `at`, with fingerprint `print`, was processed now
    /// (applied, held, counted invalid, or skipped as covered).
    pub(crate) fn processed(&mut self, at: Partition, offset: i64, print: u32, now: Instant) {
        self.live.entry(at).or_default().push(offset, print, now);
    }

    /// Forgets what is older than [`Reread::keep`] (call now and then).
    pub(crate) fn trim(&mut self, now: Instant) {
        if let Some(cutoff) = now.checked_sub(self.keep) {
            for r in self.live.values_mut() {
                r.trim(cutoff);
                if r.prints.capacity() > 4 * r.prints.len().max(BLOCK) {
                    // Quiet after a burst: give the memory back.
                    r.prints.shrink_to(2 * r.prints.len().max(BLOCK));
                    r.stamps.shrink_to(2 * r.stamps.len().max(4));
                }
            }
        }
    }

    /// The last message of `at` processed (offset, fingerprint), revoked or not.
    pub(crate) fn last(&self, at: Partition) -> Option<(i64, u32)> {
        self.live
            .get(&at)
            .or_else(|| self.revoked.get(&at))
            .and_then(|r| r.last)
    }

    /// `at` was revoked; `not_done` are its offsets the engine has not done
    /// (held events dropped at the revoke, dead letters in flight).
    pub(crate) fn revoke(&mut self, at: Partition, not_done: &[i64]) {
        if let Some(mut r) = self.live.remove(&at) {
            for &o in not_done {
                r.clear(o);
            }
            self.revoked.insert(at, r);
        }
    }

    /// Partitions `parts` were assigned: fingerprints set aside for any other
    /// revoked partition are dropped (it went to another member).
    pub(crate) fn assigned(&mut self, parts: &[Partition]) {
        self.revoked.retain(|at, _| parts.contains(at));
    }

    /// Whether message `offset` of `at` (fingerprint `print`) was done before
    /// its partition was revoked: skip it.
    pub(crate) fn done_before(&mut self, at: Partition, offset: i64, print: u32) -> bool {
        let Some(r) = self.revoked.get(&at) else {
            return false;
        };
        if offset >= r.end() {
            // Past what was done: nothing more to skip.
            self.revoked.remove(&at);
            return false;
        }
        match r.get(offset) {
            Some(p) if p == print => {
                self.skipped += 1;
                true
            }
            Some(NONE) | None => false,
            Some(_) => {
                // Another message at this offset: the partition was recreated.
                tracing::warn!(
                    partition = at.partition,
                    offset,
                    "A partition handed back holds other messages than those applied before its revoke (recreated?): its messages are all processed as new."
                );
                self.revoked.remove(&at);
                false
            }
        }
    }

    /// Messages skipped so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        Partition {
            topic: 0,
            partition: n,
        }
    }

    fn msg(offset: i64, run: &str) -> u32 {
        fingerprint(format!("{run}-{offset}").as_bytes(), None)
    }

    #[test]
    fn the_same_messages_read_again_are_skipped_except_those_not_done() {
        let now = Instant::now();
        let mut r = Reread::new(Duration::from_secs(60));
        for o in 100..200 {
            r.processed(p(0), o, msg(o, "a"), now);
        }
        // 150 was held by the sequencer at the revoke: not done.
        r.revoke(p(0), &[150]);
        // Read again from a commit at 120.
        let skipped: Vec<i64> = (120..210)
            .filter(|&o| r.done_before(p(0), o, msg(o, "a")))
            .collect();
        let want: Vec<i64> = (120..200).filter(|&o| o != 150).collect();
        assert_eq!(skipped, want);
        assert_eq!(r.skipped(), 79);
        // Caught up: nothing more is skipped.
        assert!(!r.done_before(p(0), 130, msg(130, "a")));
    }

    #[test]
    fn other_messages_at_the_same_offsets_end_the_skipping() {
        let now = Instant::now();
        let mut r = Reread::new(Duration::from_secs(60));
        for o in 100..200 {
            r.processed(p(0), o, msg(o, "old"), now);
        }
        r.revoke(p(0), &[]);
        // A recreated topic starts again at 0: below what was remembered,
        // processed; then at 100 another message: skipping ends.
        assert!(!r.done_before(p(0), 0, msg(0, "new")));
        assert!(!r.done_before(p(0), 100, msg(100, "new")));
        // Even a message equal to an old one is processed from then on.
        assert!(!r.done_before(p(0), 101, msg(101, "old")));
        assert_eq!(r.skipped(), 0);
    }

    #[test]
    fn fingerprints_older_than_keep_are_forgotten_and_partitions_are_separate() {
        let t0 = Instant::now();
        let mut r = Reread::new(Duration::from_secs(10));
        for o in 0..(3 * BLOCK as i64) {
            r.processed(p(0), o, msg(o, "a"), t0);
        }
        let t1 = t0 + Duration::from_secs(20);
        for o in (3 * BLOCK as i64)..(4 * BLOCK as i64) {
            r.processed(p(0), o, msg(o, "a"), t1);
        }
        r.processed(p(1), 5, msg(5, "b"), t1);
        r.trim(t1);
        // Long idle: old fingerprints forgotten, the last message kept.
        let mut idle = Reread::new(Duration::from_secs(10));
        for o in 0..(5 * BLOCK as i64 + 1) {
            idle.processed(p(2), o, msg(o, "c"), t0);
        }
        idle.trim(t1);
        assert_eq!(idle.live[&p(2)].prints.len(), 1);
        assert!(
            idle.live[&p(2)].prints.capacity() < 4 * BLOCK,
            "memory given back"
        );
        let o = 5 * BLOCK as i64;
        assert_eq!(idle.last(p(2)), Some((o, msg(o, "c"))));
        assert_eq!(
            r.last(p(0)),
            Some((4 * BLOCK as i64 - 1, msg(4 * BLOCK as i64 - 1, "a")))
        );
        r.revoke(p(0), &[]);
        r.revoke(p(1), &[]);
        assert!(!r.done_before(p(0), 10, msg(10, "a")), "forgotten");
        let o = 3 * BLOCK as i64 + 1;
        assert!(r.done_before(p(0), o, msg(o, "a")), "kept");
        assert!(r.done_before(p(1), 5, msg(5, "b")));
    }

    #[test]
    fn a_partition_is_capped() {
        let now = Instant::now();
        let mut r = Reread::new(Duration::from_secs(600));
        let n = MAX_PER_PARTITION as i64 + 10;
        for o in 0..n {
            r.processed(p(0), o, (o as u32) | 1, now);
        }
        let ring = &r.live[&p(0)];
        assert_eq!(ring.prints.len(), MAX_PER_PARTITION);
        assert_eq!(ring.base, 10);
        assert_eq!(ring.get(n - 1), Some(((n - 1) as u32) | 1));
    }
}

/// The cost per message: the fingerprint (taken on the consumer thread, as
/// the message is copied) and remembering it (on the engine's thread),
/// printed beside decoding the same lines: `cargo test --release --lib
/// reread::cost -- --ignored --nocapture`.
#[cfg(test)]
mod cost {
    use super::*;

    #[test]
    #[ignore = "prints a figure; run in a release build"]
    fn cost_per_message_beside_decoding() {
        let lines: Vec<Vec<u8>> = (0..1_000_000)
            .map(|i| {
                format!(
                    r#"{{"id":"evt-{i}","type":"complaint","ts":{},"customer_id":"c-{}","attrs":{{"product":"router-x","region":"eu-west","channel":"social","segment":"smb"}},"score":3,"sentiment":-0.4}}"#,
                    1_795_000_000_000i64 + i,
                    i % 9973
                )
                .into_bytes()
            })
            .collect();
        let at = Partition {
            topic: 0,
            partition: 0,
        };
        let now = Instant::now();
        let mut r = Reread::new(Duration::from_secs(3600));
        let t = Instant::now();
        for (o, l) in lines.iter().enumerate() {
            r.processed(at, o as i64, fingerprint(l, None), now);
        }
        let remember = t.elapsed();
        let t = Instant::now();
        for l in &lines {
            std::hint::black_box(fingerprint(std::hint::black_box(l), None));
        }
        let print_only = t.elapsed();
        let limits = crate::event::DecodeLimits::default();
        let t = Instant::now();
        let mut valid = 0usize;
        for l in &lines {
            valid += usize::from(crate::event::decode(l, &limits, None).is_ok());
        }
        let decode = t.elapsed();
        r.revoke(at, &[]);
        let skipped = lines
            .iter()
            .enumerate()
            .filter(|(o, l)| r.done_before(at, *o as i64, fingerprint(l, None)))
            .count();
        assert_eq!((valid, skipped), (lines.len(), lines.len()));
        println!(
            "REREAD fingerprint {:.1} ns/message; fingerprint+remember {:.1} ns/message, decode {:.1} ns/message (x{:.3} of decoding)",
            print_only.as_nanos() as f64 / lines.len() as f64,
            remember.as_nanos() as f64 / lines.len() as f64,
            decode.as_nanos() as f64 / lines.len() as f64,
            remember.as_secs_f64() / decode.as_secs_f64()
        );
    }
}
