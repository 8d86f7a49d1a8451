//! The total order of events with one time and id: the order key (a
//! SipHash of the input bytes under a fixed key) and the tie-break built on
//! it, shared by the owned event's ordering and the sequencer.

use std::cmp::Ordering;

/// Fixed SipHash keys of the order key ("crisiswatch-ordr").
const ORDER_KEY: [u8; 16] = *b"crisiswatch-ordr";

/// The third sort key of an event: SipHash-1-3 of its input bytes under a
/// fixed key — a specified function, the same on every build and machine.
/// It decides between events with one time and id (the first is the one
/// duplicate detection keeps), and a scaled group's split stage sends it
/// with each event instead of the input line (`crate::repartition`), so
/// that every owner releases events in one instance's order.
pub fn order_key(raw: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_key(&ORDER_KEY);
    h.write(raw);
    h.finish()
}

/// Two events with one time and id: by [`order_key`] of their input bytes,
/// then by the bytes (only a hash collision gets that far). Computed only
/// for such ties, which are rare (a redelivery, or a producer reusing an id).
pub(crate) fn tie_break(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    order_key(a).cmp(&order_key(b)).then_with(|| a.cmp(b))
}
