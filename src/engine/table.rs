//! Group tables: one per distinct `group_by` list, shared by every rule that
//! slices that way, so an event's group is looked up once for all of them;
//! and [`attr_id`], the id of a grouping attribute's name.
//!
//! An entry is one slice: its flat key and hash and, per member rule, the
//! slot of that rule's group for the slice (or none). The first
//! [`INLINE_MEMBERS`] members' slots sit inside the entry, on the key's cache
//! line (an entry is one 64-byte line), so a hit touches the index, the
//! entry and the group; members past them (tables shared by more rules) keep
//! theirs in a side vector. Rules own their groups and slots (slot numbers
//! order timers, so they are allocated exactly as before); the table holds
//! the only copy of each slice's key, which groups reach through their entry
//! number. An entry lives while some member has a group in it. Tables are
//! not part of a snapshot: they are rebuilt from the keys a snapshot writes
//! beside each group ([`stash`], [`rebuild`]).

use super::key::{key_eq, GroupKey};
use super::RuleRt;

mod index;

use index::Index;

/// No group of this member rule in the entry.
pub(super) const NONE: u32 = u32::MAX;

/// Members whose slots sit inside the entry (the rest: [`GroupTable::overflow`]).
pub(super) const INLINE_MEMBERS: usize = 6;

/// One slice of a [`GroupTable`]: 64 bytes, one cache line.
#[derive(Debug)]
#[repr(C, align(64))]
struct Entry {
    hash: u64,
    key: GroupKey,
    /// The first members' slots ([`NONE`]: no group; all `NONE` in a free entry).
    slots: [u32; INLINE_MEMBERS],
}

/// The shared index of one `group_by` list (see the module docs).
#[derive(Debug, Default)]
pub(super) struct GroupTable {
    /// Ids of the list's attributes in the engine's attribute table.
    pub(super) attrs: Box<[u16]>,
    /// Number of member rules.
    width: usize,
    index: Index,
    entries: Vec<Entry>,
    /// Slots of members from [`INLINE_MEMBERS`] on, `width − INLINE_MEMBERS`
    /// per entry (empty when the table has no more members than that).
    overflow: Vec<u32>,
    free: Vec<u32>,
    /// Changes with every entry added or removed: a lookup made at the same
    /// version still holds.
    version: u64,
}

impl GroupTable {
    /// An empty table for `width` member rules.
    pub(super) fn new(attrs: Box<[u16]>, width: usize) -> Self {
        GroupTable {
            attrs,
            width,
            ..GroupTable::default()
        }
    }

    /// Member slots per entry kept in [`GroupTable::overflow`].
    #[inline]
    fn spill(&self) -> usize {
        self.width.saturating_sub(INLINE_MEMBERS)
    }

    /// The entry holding these grouping values (by attribute id), if any.
    #[inline]
    pub(super) fn find(&self, hash: u64, values: &[&str]) -> Option<u32> {
        let attrs = &self.attrs;
        self.find_by(hash, |key| {
            key_eq(key, attrs.iter().map(|&i| values[i as usize]))
        })
    }

    /// The entry with this hash whose flat key passes `same`, if any.
    #[inline]
    pub(super) fn find_by(&self, hash: u64, same: impl Fn(&[u8]) -> bool) -> Option<u32> {
        let entries = &self.entries;
        self.index.find(hash, |e| {
            let en = &entries[e as usize];
            en.hash == hash && same(&en.key)
        })
    }

    /// Asks the memory for the index line a lookup of `hash` reads first.
    #[inline]
    pub(super) fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Asks the memory for the entry a lookup of `hash` would most likely
    /// find (read from the index: call after [`GroupTable::prefetch_index`]
    /// had time to bring it), and returns its number.
    #[inline]
    pub(super) fn prefetch_entry(&self, hash: u64) -> Option<u32> {
        let e = self.index.first_candidate(hash)?;
        prefetch_index::prefetch_index(&self.entries, e as usize);
        Some(e)
    }

    /// The flat key of entry `e`.
    #[inline]
    pub(super) fn key(&self, e: u32) -> &GroupKey {
        &self.entries[e as usize].key
    }

    /// The hash of entry `e`'s key.
    pub(super) fn hash(&self, e: u32) -> u64 {
        self.entries[e as usize].hash
    }

    /// See [`GroupTable::version`](GroupTable#structfield.version).
    #[inline]
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// A new entry (no member has a group in it yet).
    pub(super) fn insert(&mut self, hash: u64, key: GroupKey) -> u32 {
        self.version += 1;
        let entry = Entry {
            hash,
            key,
            slots: [NONE; INLINE_MEMBERS],
        };
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = entry;
                e
            }
            None => {
                self.entries.push(entry);
                let spill = self.spill();
                if spill > 0 {
                    self.overflow.extend(std::iter::repeat_n(NONE, spill));
                }
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index.insert(hash, e, |x| entries[x as usize].hash);
        e
    }

    /// Member `m`'s slot in entry `e` ([`NONE`] if it has no group there).
    #[inline]
    pub(super) fn slot(&self, e: u32, m: u32) -> u32 {
        let m = m as usize;
        match self.entries[e as usize].slots.get(m) {
            Some(&s) => s,
            None => self.overflow[e as usize * self.spill() + (m - INLINE_MEMBERS)],
        }
    }

    /// Member `m`'s slot in entry `e`, to write.
    #[inline]
    fn slot_mut(&mut self, e: u32, m: u32) -> &mut u32 {
        let m = m as usize;
        let spill = self.spill();
        match self.entries[e as usize].slots.get_mut(m) {
            Some(s) => s,
            None => &mut self.overflow[e as usize * spill + (m - INLINE_MEMBERS)],
        }
    }

    /// Records member `m`'s new group in entry `e`.
    #[inline]
    pub(super) fn set(&mut self, e: u32, m: u32, slot: u32) {
        *self.slot_mut(e, m) = slot;
    }

    /// Whether no member has a group in entry `e`.
    fn unused(&self, e: u32) -> bool {
        let spill = self.spill();
        self.entries[e as usize].slots.iter().all(|&s| s == NONE)
            && (spill == 0
                || self.overflow[e as usize * spill..(e as usize + 1) * spill]
                    .iter()
                    .all(|&s| s == NONE))
    }

    /// Member `m` forgot its group in entry `e`; the entry goes when no member
    /// has one left.
    pub(super) fn unset(&mut self, e: u32, m: u32) {
        let s = self.slot_mut(e, m);
        if *s == NONE {
            return;
        }
        *s = NONE;
        if self.unused(e) {
            self.version += 1;
            let hash = self.entries[e as usize].hash;
            let entries = &self.entries;
            self.index.remove(hash, e, |x| entries[x as usize].hash);
            self.entries[e as usize].key = GroupKey::new();
            self.free.push(e);
        }
    }

    /// Forgets every entry.
    fn clear(&mut self) {
        self.version += 1;
        self.index.clear();
        self.entries.clear();
        self.overflow.clear();
        self.free.clear();
    }
}

/// Moves the key of every live group out of the tables into its rule's
/// [`RuleRt::keys`] (before the tables are rebuilt: a reload renumbers them;
/// a restore replaces some rules' groups and their keys).
pub(super) fn stash(tables: &[GroupTable], rules: &mut [RuleRt]) {
    for rule in rules.iter_mut() {
        let Some(table) = tables.get(rule.group_by_id) else {
            continue;
        };
        rule.keys.clear();
        for (s, slot) in rule.slots.iter().enumerate() {
            let Some(g) = slot.group.as_ref() else {
                continue;
            };
            if (g.entry as usize) < table.entries.len()
                && table.slot(g.entry, rule.member) == s as u32
            {
                rule.keys
                    .push((s as u32, table.hash(g.entry), table.key(g.entry).clone()));
            }
        }
    }
}

/// Rebuilds every table from the rules' live groups and the keys in their
/// [`RuleRt::keys`] (which it empties), and points each group at its entry.
pub(super) fn rebuild(tables: &mut [GroupTable], rules: &mut [RuleRt]) {
    for t in tables.iter_mut() {
        t.clear();
    }
    for rule in rules.iter_mut() {
        let table = &mut tables[rule.group_by_id];
        for (s, hash, key) in std::mem::take(&mut rule.keys) {
            let Some(g) = rule
                .slots
                .get_mut(s as usize)
                .and_then(|x| x.group.as_mut())
            else {
                continue;
            };
            let found = table.find_by(hash, |k| k == key.as_slice());
            let e = match found {
                Some(e) => e,
                None => table.insert(hash, key),
            };
            table.set(e, rule.member, s);
            g.entry = e;
        }
    }
}

/// The id of a grouping attribute name: a scan of `names` (by id) when they
/// are few, else the hash map.
#[inline]
pub(super) fn attr_id(
    names: &[Box<str>],
    ids: &hashbrown::HashMap<Box<str>, u16, foldhash::fast::FixedState>,
    name: &str,
) -> Option<usize> {
    const SCAN_UP_TO: usize = 12;
    if names.len() > SCAN_UP_TO {
        return ids.get(name).map(|&id| id as usize);
    }
    let first = name.as_bytes().first();
    names
        .iter()
        .position(|n| n.len() == name.len() && n.as_bytes().first() == first && n.as_ref() == name)
}
