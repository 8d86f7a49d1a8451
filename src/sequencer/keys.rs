//! The sequencer's queue of held keys `(ts, slot)`, earliest first.
//!
//! Events mostly arrive in time order, or as a few interleaved streams that
//! are each in order (Kafka partitions read a fetch at a time, producers
//! that reorder little). A binary heap pays `log n` dependent, cache-missing
//! moves for every event whatever the order; held sets of tens of thousands
//! of keys are common when one partition runs ahead of another. So keys go
//! into **lanes**, each a FIFO whose times never decrease (a key joins the
//! lane whose newest time is the latest not after its own: patience
//! sorting's best fit, so `k` interleaved ordered streams need about `k`
//! lanes); only a key that fits no lane while [`MAX_LANES`] are open goes
//! into a heap. The earliest key is the earliest of the lanes' fronts and
//! the heap's top. Which structure holds a key never changes which key comes
//! out first: [`Keys::pop`] gives the same sequence of times as a heap would
//! (keys of one time in some order; the sequencer sorts those itself).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Most lanes open at once; a key that fits none then goes into the heap.
const MAX_LANES: usize = 16;

/// A held key: event time, then the slot of its event.
pub(super) type Key = (i64, u32);

/// Held keys, earliest time first (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Keys {
    /// Non-empty FIFOs, each in non-decreasing time order.
    lanes: Vec<VecDeque<Key>>,
    /// Emptied lanes, kept for their buffers.
    spare: Vec<VecDeque<Key>>,
    /// Keys that fit no lane.
    heap: BinaryHeap<Reverse<Key>>,
    len: usize,
}

/// Where the earliest key is.
#[derive(Clone, Copy)]
enum At {
    Lane(usize),
    Heap,
}

impl Keys {
    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Holds `key`.
    #[inline]
    pub(super) fn push(&mut self, key: Key) {
        self.len += 1;
        // The lane whose newest time is the latest not after this key's.
        let mut best: Option<(usize, i64)> = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(&(t, _)) = lane.back() {
                if t <= key.0 && best.is_none_or(|(_, b)| t > b) {
                    best = Some((i, t));
                }
            }
        }
        if let Some((i, _)) = best {
            self.lanes[i].push_back(key);
        } else if self.lanes.len() < MAX_LANES {
            let mut lane = self.spare.pop().unwrap_or_default();
            lane.push_back(key);
            self.lanes.push(lane);
        } else {
            self.heap.push(Reverse(key));
        }
    }

    /// Where the earliest key is, and its time.
    #[inline]
    fn earliest_at(&self) -> Option<(At, i64)> {
        let mut best = self.heap.peek().map(|&Reverse((t, _))| (At::Heap, t));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(&(t, _)) = lane.front() {
                if best.is_none_or(|(_, b)| t < b) {
                    best = Some((At::Lane(i), t));
                }
            }
        }
        best
    }

    /// The earliest time held.
    pub(super) fn earliest(&self) -> Option<i64> {
        self.earliest_at().map(|(_, t)| t)
    }

    /// Takes out a key of the earliest time.
    #[cfg(test)]
    pub(super) fn pop(&mut self) -> Option<Key> {
        self.pop_if(|_| true)
    }

    /// Takes out a key of the earliest time if `take` accepts that time.
    #[inline]
    pub(super) fn pop_if(&mut self, take: impl FnOnce(i64) -> bool) -> Option<Key> {
        let (at, t) = self.earliest_at()?;
        if !take(t) {
            return None;
        }
        let key = match at {
            At::Heap => self.heap.pop().map(|Reverse(k)| k),
            At::Lane(i) => {
                let key = self.lanes[i].pop_front();
                if self.lanes[i].is_empty() {
                    let lane = self.lanes.swap_remove(i);
                    self.spare.push(lane);
                }
                key
            }
        };
        if key.is_some() {
            self.len -= 1;
        }
        key
    }

    /// Keeps the keys `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        for lane in &mut self.lanes {
            lane.retain(&mut keep);
        }
        let mut i = 0;
        while i < self.lanes.len() {
            if self.lanes[i].is_empty() {
                let lane = self.lanes.swap_remove(i);
                self.spare.push(lane);
            } else {
                i += 1;
            }
        }
        self.heap.retain(|Reverse(k)| keep(k));
        self.len = self.heap.len() + self.lanes.iter().map(VecDeque::len).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(i64),
        Pop,
        /// Drops the keys whose slot is divisible by this.
        Retain(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0i64..60).prop_map(Op::Push),
            3 => Just(Op::Pop),
            1 => (2u32..5).prop_map(Op::Retain),
        ]
    }

    /// Streams shaped like the sequencer's input: `streams` interleaved runs
    /// of rising times, with some keys out of order.
    fn interleaved() -> impl Strategy<Value = Vec<Op>> {
        (
            1usize..24,
            proptest::collection::vec((0usize..24, 0i64..4, 0u8..10), 0..400),
        )
            .prop_map(|(streams, steps)| {
                let mut now = vec![0i64; streams];
                let mut ops = Vec::new();
                for (s, dt, roll) in steps {
                    let s = s % streams;
                    now[s] += dt;
                    match roll {
                        0 => ops.push(Op::Push(now[s] - 7)),
                        1 | 2 => ops.push(Op::Pop),
                        _ => ops.push(Op::Push(now[s])),
                    }
                }
                ops
            })
    }

    /// Runs `ops` on [`Keys`] and on a plain heap: the same times come out,
    /// in the same order, and the same keys are held at the end.
    fn same_as_a_heap(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut keys = Keys::default();
        let mut model: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
        let mut slot = 0u32;
        for op in ops {
            match *op {
                Op::Push(t) => {
                    keys.push((t, slot));
                    model.push(Reverse((t, slot)));
                    slot += 1;
                }
                Op::Pop => {
                    let got = keys.pop();
                    let want = model.pop().map(|Reverse(k)| k);
                    prop_assert_eq!(got.map(|k| k.0), want.map(|k| k.0));
                    // Keys of one time may come out in another order: put
                    // the one the model gave back and take the one we got.
                    if let (Some(g), Some(w)) = (got, want) {
                        if g != w {
                            let mut rest: Vec<Key> = model.drain().map(|Reverse(k)| k).collect();
                            let i = rest.iter().position(|k| *k == g);
                            prop_assert!(i.is_some(), "{:?} was not held", g);
                            if let Some(i) = i {
                                rest.swap_remove(i);
                            }
                            rest.push(w);
                            model = rest.into_iter().map(Reverse).collect();
                        }
                    }
                }
                Op::Retain(d) => {
                    keys.retain(|k| k.1 % d != 0);
                    model.retain(|Reverse(k)| k.1 % d != 0);
                }
            }
            prop_assert_eq!(keys.len(), model.len());
            prop_assert_eq!(keys.is_empty(), model.is_empty());
            prop_assert_eq!(keys.earliest(), model.peek().map(|Reverse(k)| k.0));
        }
        let mut rest = Vec::new();
        while let Some(k) = keys.pop() {
            rest.push(k);
        }
        prop_assert!(rest.windows(2).all(|w| w[0].0 <= w[1].0), "{:?}", rest);
        let mut want: Vec<Key> = model.into_iter().map(|Reverse(k)| k).collect();
        rest.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(rest, want);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn gives_the_times_a_heap_gives(ops in proptest::collection::vec(op(), 0..300)) {
            same_as_a_heap(&ops)?;
        }

        /// More streams than lanes: keys overflow into the heap.
        #[test]
        fn gives_the_times_a_heap_gives_on_interleaved_streams(ops in interleaved()) {
            same_as_a_heap(&ops)?;
        }
    }

    #[test]
    fn interleaved_ordered_streams_need_one_lane_each() {
        let mut keys = Keys::default();
        let mut slot = 0;
        for chunk in 0..10i64 {
            for stream in 0..4i64 {
                for i in 0..50 {
                    keys.push((chunk * 100 + i * 2 + stream, slot));
                    slot += 1;
                }
            }
        }
        assert!(keys.lanes.len() <= 4, "{} lanes", keys.lanes.len());
        assert!(keys.heap.is_empty());
        let mut last = i64::MIN;
        while let Some((t, _)) = keys.pop() {
            assert!(t >= last);
            last = t;
        }
        assert!(keys.lanes.is_empty() && keys.spare.len() <= 4);
    }
}
