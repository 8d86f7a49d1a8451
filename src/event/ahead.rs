//! Decoding ahead: the offline tools (`replay`, `backtest`) decode the next
//! lines on a second thread while the caller's thread sequences and applies
//! the ones before them.
//!
//! Lines are pushed in input order with a tag (where they came from); the
//! decoded results ([`decode_held`]: an [`OwnedEvent`] or an [`Invalid`])
//! come back to the caller's sink in exactly that order, so everything
//! downstream — counts, invalid examples, the sequencer, the engine — sees
//! what it would see decoding each line itself, and the output is
//! byte-identical. Lines travel in batches of up to [`BATCH_LINES`] lines or
//! [`BATCH_BYTES`] bytes, at most [`DEPTH`] batches ahead of the sink, so
//! memory stays bounded whatever the input. On a machine with one core (or
//! when asked) nothing is threaded: each line is decoded as it is pushed.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::{decode_held, DecodeLimits, Event, Invalid, OwnedEvent};

/// Lines per batch handed to the decoding thread.
pub const BATCH_LINES: usize = 1024;
/// Input bytes per batch (a batch is sent once it holds this much).
pub const BATCH_BYTES: usize = 1 << 20;
/// Batches decoded or being decoded ahead of the sink.
pub const DEPTH: usize = 2;

/// One decoded line: its tag and the decode result.
pub type Decoded<T> = (T, Result<OwnedEvent, Invalid>);

/// Work on each batch of decoded lines where it was decoded — on the
/// decoding thread when there is one, off the caller's thread — before the
/// sink gets them, in input order ([`DecodeAhead::inspecting`]).
pub type Inspect<T> = Arc<Mutex<dyn FnMut(&[Decoded<T>]) + Send>>;

/// Runs `inspect` (if any) over `decoded`.
fn inspect_all<T>(inspect: Option<&Inspect<T>>, decoded: &[Decoded<T>]) {
    if let Some(f) = inspect {
        // A panic in an inspector is surfaced where it happened; the lock
        // itself carries no invariant.
        let mut f = f.lock().unwrap_or_else(PoisonError::into_inner);
        f(decoded);
    }
}

/// Lines waiting to be decoded, in input order.
struct Batch<T> {
    bytes: Vec<u8>,
    /// Per line: its end in `bytes`, its default type, its tag.
    lines: Vec<(usize, Option<Box<str>>, T)>,
}

impl<T> Batch<T> {
    fn new() -> Self {
        Batch {
            bytes: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.lines.len() >= BATCH_LINES || self.bytes.len() >= BATCH_BYTES
    }

    /// Decodes every line, in order.
    fn decode(&mut self, limits: &DecodeLimits, now_ms: Option<i64>) -> Vec<Decoded<T>> {
        let mut out = Vec::with_capacity(self.lines.len());
        let mut start = 0;
        for (end, default_type, tag) in self.lines.drain(..) {
            let line = &self.bytes[start..end];
            start = end;
            out.push((
                tag,
                decode_one(line, limits, now_ms, default_type.as_deref()),
            ));
        }
        self.bytes.clear();
        out
    }
}

/// Decodes one line into an event to hold.
fn decode_one(
    line: &[u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&str>,
) -> Result<OwnedEvent, Invalid> {
    // Decoded in place: the event is large, a returned one is moved.
    let mut slot = Event::default();
    decode_held(line, limits, now_ms, default_type, &mut slot)
}

/// The decoding thread and the channels to it.
struct Worker<T> {
    to: SyncSender<Batch<T>>,
    back: Receiver<(Batch<T>, Vec<Decoded<T>>)>,
    handle: JoinHandle<()>,
}

/// Decodes pushed lines ahead of the sink (see the module docs).
pub struct DecodeAhead<T: Send + 'static> {
    limits: DecodeLimits,
    now_ms: Option<i64>,
    worker: Option<Worker<T>>,
    batch: Batch<T>,
    /// Batches sent and not yet given to the sink.
    in_flight: usize,
    /// Emptied batches, for reuse.
    spare: Vec<Batch<T>>,
    inspect: Option<Inspect<T>>,
}

impl<T: Send + 'static> DecodeAhead<T> {
    /// Decodes with `limits`, checking future skew against `now_ms`; on a
    /// second thread when the machine has more than one core.
    pub fn new(limits: DecodeLimits, now_ms: Option<i64>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_thread(limits, now_ms, cores > 1)
    }

    /// As [`DecodeAhead::new`], threaded or not as asked (tests compare both).
    pub fn with_thread(limits: DecodeLimits, now_ms: Option<i64>, threaded: bool) -> Self {
        Self::build(limits, now_ms, threaded, None)
    }

    /// As [`DecodeAhead::new`], with `inspect` run over every batch of
    /// decoded lines where it was decoded, before the sink gets them.
    pub fn inspecting(limits: DecodeLimits, now_ms: Option<i64>, inspect: Inspect<T>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::build(limits, now_ms, cores > 1, Some(inspect))
    }

    fn build(
        limits: DecodeLimits,
        now_ms: Option<i64>,
        threaded: bool,
        inspect: Option<Inspect<T>>,
    ) -> Self {
        let worker = if threaded {
            Self::spawn(limits, now_ms, inspect.clone())
        } else {
            None
        };
        DecodeAhead {
            limits,
            now_ms,
            worker,
            batch: Batch::new(),
            in_flight: 0,
            spare: Vec::new(),
            inspect,
        }
    }

    /// Starts the decoding thread (`None` if the system refuses a thread:
    /// then lines are decoded inline).
    fn spawn(
        limits: DecodeLimits,
        now_ms: Option<i64>,
        inspect: Option<Inspect<T>>,
    ) -> Option<Worker<T>> {
        let (to, from_caller) = sync_channel::<Batch<T>>(DEPTH);
        let (to_caller, back) = sync_channel(DEPTH);
        let spawned = std::thread::Builder::new()
            .name("crisiswatch-decode".into())
            .spawn(move || {
                for mut batch in from_caller {
                    let decoded = batch.decode(&limits, now_ms);
                    inspect_all(inspect.as_ref(), &decoded);
                    if to_caller.send((batch, decoded)).is_err() {
                        break;
                    }
                }
            });
        match spawned {
            Ok(handle) => Some(Worker { to, back, handle }),
            Err(e) => {
                tracing::debug!(error = %e, "no decoding thread: decoding inline");
                None
            }
        }
    }

    /// Whether lines are decoded on a second thread.
    pub fn threaded(&self) -> bool {
        self.worker.is_some()
    }

    /// Pushes the next line (`default_type`: the type to assume when it has
    /// none); `sink` receives every line decoded so far that is due, in order.
    pub fn push(
        &mut self,
        line: &[u8],
        default_type: Option<&str>,
        tag: T,
        sink: &mut impl FnMut(Decoded<T>),
    ) {
        if self.worker.is_none() {
            let decoded = (
                tag,
                decode_one(line, &self.limits, self.now_ms, default_type),
            );
            inspect_all(self.inspect.as_ref(), std::slice::from_ref(&decoded));
            sink(decoded);
            return;
        }
        self.batch.bytes.extend_from_slice(line);
        self.batch
            .lines
            .push((self.batch.bytes.len(), default_type.map(Box::from), tag));
        if self.batch.full() {
            self.send(sink);
        }
        while self.in_flight > DEPTH {
            self.receive(sink);
        }
    }

    /// Every line pushed reaches the sink; the thread ends.
    pub fn finish(mut self, sink: &mut impl FnMut(Decoded<T>)) {
        if !self.batch.lines.is_empty() {
            self.send(sink);
        }
        while self.in_flight > 0 {
            self.receive(sink);
        }
        if let Some(w) = self.worker.take() {
            drop(w.to);
            if let Err(panic) = w.handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Sends the current batch to the thread (or decodes it here if the
    /// thread is gone).
    fn send(&mut self, sink: &mut impl FnMut(Decoded<T>)) {
        let next = self.spare.pop().unwrap_or_else(Batch::new);
        let batch = std::mem::replace(&mut self.batch, next);
        let Some(w) = &self.worker else {
            self.decode_here(batch, sink);
            return;
        };
        match w.to.send(batch) {
            Ok(()) => self.in_flight += 1,
            Err(e) => {
                // The thread ended early: only a panic ends it; surface it.
                self.rethrow();
                self.decode_here(e.0, sink);
            }
        }
    }

    /// Gives the oldest batch in flight to the sink.
    fn receive(&mut self, sink: &mut impl FnMut(Decoded<T>)) {
        let Some(w) = &self.worker else {
            self.in_flight = 0;
            return;
        };
        match w.back.recv() {
            Ok((batch, decoded)) => {
                self.in_flight -= 1;
                decoded.into_iter().for_each(&mut *sink);
                self.spare.push(batch);
            }
            Err(_) => {
                self.in_flight = 0;
                self.rethrow();
            }
        }
    }

    /// Decodes a batch on this thread.
    fn decode_here(&mut self, mut batch: Batch<T>, sink: &mut impl FnMut(Decoded<T>)) {
        let decoded = batch.decode(&self.limits, self.now_ms);
        inspect_all(self.inspect.as_ref(), &decoded);
        decoded.into_iter().for_each(&mut *sink);
        self.spare.push(batch);
    }

    /// The thread is gone: joins it and resumes its panic here.
    fn rethrow(&mut self) {
        if let Some(w) = self.worker.take() {
            drop(w.to);
            if let Err(panic) = w.handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl<T: Send + 'static> Drop for DecodeAhead<T> {
    fn drop(&mut self) {
        // Dropped without `finish` (an early return): let the thread end.
        if let Some(w) = self.worker.take() {
            drop(w.to);
            drop(w.back);
            let _ = w.handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..5000)
            .map(|i| {
                format!(
                    r#"{{"id":"e{i}","type":"order","ts":{},"attrs":{{"product":"p{}"}}}}"#,
                    1_700_000_000_000i64 + i * 1000,
                    i % 7
                )
                .into_bytes()
            })
            .collect();
        v[17] = b"not json".to_vec();
        v[2000] = br#"{"id":"x","ts":1}"#.to_vec();
        v[3000] = vec![b'{'; 3 * BATCH_BYTES];
        v
    }

    /// Per line: its tag, and its time and length or its invalid reason.
    type Seen = Vec<(usize, Result<(i64, String), String>)>;

    fn run(threaded: bool, limits: DecodeLimits) -> Seen {
        let mut got = Vec::new();
        let mut sink = |(tag, r): Decoded<usize>| {
            got.push((
                tag,
                r.map(|e| (e.ts(), e.raw().len().to_string()))
                    .map_err(|i| format!("{}: {}", i.reason, i.detail)),
            ));
        };
        // The inspector sees every line once, in order, with its result.
        let inspected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&inspected);
        let inspect: Inspect<usize> = Arc::new(Mutex::new(move |d: &[Decoded<usize>]| {
            let mut seen = seen.lock().unwrap();
            seen.extend(d.iter().map(|(tag, r)| (*tag, r.is_ok())));
        }));
        let mut ahead = DecodeAhead::build(limits, None, threaded, Some(inspect));
        assert_eq!(ahead.threaded(), threaded);
        for (i, l) in lines().iter().enumerate() {
            let default = (i % 3 == 0).then_some("complaint");
            ahead.push(l, default, i, &mut sink);
        }
        ahead.finish(&mut sink);
        let inspected = std::mem::take(&mut *inspected.lock().unwrap());
        let expected: Vec<(usize, bool)> = got.iter().map(|(t, r)| (*t, r.is_ok())).collect();
        assert_eq!(inspected, expected);
        got
    }

    #[test]
    fn threaded_gives_what_inline_gives_in_order() {
        let limits = DecodeLimits {
            max_event_bytes: 8 * BATCH_BYTES,
            ..DecodeLimits::default()
        };
        let inline = run(false, limits);
        let threaded = run(true, limits);
        assert_eq!(inline.len(), 5000);
        assert_eq!(inline, threaded);
        assert!(inline.iter().enumerate().all(|(i, (tag, _))| *tag == i));
        assert!(inline[17].1.is_err() && inline[3000].1.is_err());
        // The default type applies to the line it came with only.
        assert!(inline[2000].1.is_err(), "{:?}", inline[2000]);
        assert_eq!(inline.iter().filter(|(_, r)| r.is_err()).count(), 3);
    }

    #[test]
    fn a_default_type_fills_a_missing_type() {
        let mut got = Vec::new();
        let mut ahead = DecodeAhead::with_thread(DecodeLimits::default(), None, true);
        let line = br#"{"id":"x","ts":1700000000000}"#;
        ahead.push(line, Some("order"), 0u8, &mut |d| got.push(d));
        ahead.push(line, None, 1u8, &mut |d| got.push(d));
        ahead.finish(&mut |d| got.push(d));
        assert_eq!(got.len(), 2);
        let mut slot = Event::default();
        assert!(got[0]
            .1
            .as_ref()
            .is_ok_and(|h| h.event_into(&mut slot) && slot.kind == "order"));
        assert!(got[1].1.is_err());
    }

    #[test]
    fn dropped_early_the_thread_ends() {
        let mut ahead = DecodeAhead::with_thread(DecodeLimits::default(), None, true);
        for i in 0..3 * BATCH_LINES {
            ahead.push(b"{}", None, i, &mut |_| {});
        }
        drop(ahead);
    }
}
