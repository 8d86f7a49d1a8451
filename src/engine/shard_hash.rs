//! The shard of a (rule, group) pair: SipHash-1-3 under fixed keys of the
//! rule's name and the group's values, reduced to `0..shards` — a specified
//! function, the same on every build and machine, so checkpoints and
//! instances agree on it. A leaf: the engine's rules and
//! [`ShardedEngine`](super::ShardedEngine) both use it.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// Fixed SipHash keys of the shard hash ("crisiswatch-shrd").
const SHARD_KEY: [u8; 16] = *b"crisiswatch-shrd";

/// Stable hash of a rule's name.
pub(crate) fn stable_rule_hash(name: &str) -> u64 {
    let mut h = SipHasher13::new_with_key(&SHARD_KEY);
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

/// Stable hash of a group's values, in `group_by` order.
pub(crate) fn stable_group_hash<'a>(values: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = SipHasher13::new_with_key(&SHARD_KEY);
    for v in values {
        h.write(v.as_bytes());
        // 0xff never occurs in UTF-8: values cannot run into each other.
        h.write_u8(0xff);
    }
    h.finish()
}

/// The shard (`0..shards`) of a (rule, group) from the two stable hashes.
#[inline]
pub(super) fn shard_index(rule_hash: u64, group_hash: u64, shards: u32) -> u32 {
    let x = (rule_hash ^ group_hash.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (((x >> 32) * u64::from(shards)) >> 32) as u32
}

/// The shard of rule `rule`'s group with `values` (in `group_by` order),
/// among `shards` (at least 1).
pub fn shard_of(rule: &str, values: &[&str], shards: u32) -> u32 {
    shard_index(
        stable_rule_hash(rule),
        stable_group_hash(values.iter().copied()),
        shards.max(1),
    )
}

/// The shards one worker engine keeps.
#[derive(Debug, Clone)]
pub(crate) struct ShardFilter {
    owned: Box<[bool]>,
}

impl ShardFilter {
    /// Shards `worker`, `worker + workers`, … of `shards`.
    pub(super) fn round_robin(worker: usize, workers: usize, shards: u32) -> Self {
        ShardFilter {
            owned: (0..shards as usize)
                .map(|s| s % workers == worker)
                .collect(),
        }
    }

    /// The shards (`0..shards`) for which `owned` is true.
    pub(super) fn from_fn(shards: u32, owned: impl Fn(u32) -> bool) -> Self {
        ShardFilter {
            owned: (0..shards).map(owned).collect(),
        }
    }

    /// Whether the pair with these stable hashes is kept.
    #[inline]
    pub(crate) fn owns(&self, rule_hash: u64, group_hash: u64) -> bool {
        let s = shard_index(rule_hash, group_hash, self.owned.len() as u32);
        self.owned[s as usize]
    }
}
