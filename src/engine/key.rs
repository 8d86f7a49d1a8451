//! Group keys: a slice's attribute values as one flat byte string (each
//! value a little-endian u32 length and its bytes), and their hash.

use std::hash::{BuildHasher, Hasher};

use smallvec::SmallVec;

/// The hash of a group's values (each followed by 0xff), under `hasher`.
pub(super) fn group_hash<'a>(
    hasher: &foldhash::fast::FixedState,
    values: impl Iterator<Item = &'a str>,
) -> u64 {
    let mut h = hasher.build_hasher();
    for v in values {
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// A group key, flat: each value as a little-endian u32 length and its bytes.
/// Short keys (the common case) live inside the group, so comparing a key on
/// lookup does not touch another cache line.
pub(super) type GroupKey = SmallVec<[u8; 24]>;

/// Encodes a group key (see [`GroupKey`]).
pub(super) fn encode_key<'a>(values: impl Iterator<Item = &'a str>) -> GroupKey {
    let mut out = GroupKey::new();
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Whether a flat key holds exactly these values.
#[inline]
pub(super) fn key_eq<'a>(key: &[u8], values: impl Iterator<Item = &'a str>) -> bool {
    let mut rest = key;
    for v in values {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len != v.len() || tail.get(..len) != Some(v.as_bytes()) {
            return false;
        }
        rest = &tail[len..];
    }
    rest.is_empty()
}

/// The values of a flat key.
pub(super) fn decode_key(key: &[u8]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = key;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        out.push(std::str::from_utf8(&tail[..len]).unwrap_or(""));
        rest = &tail[len..];
    }
    out
}
