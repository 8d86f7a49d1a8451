//! Group tables: one per distinct `group_by` list, shared by every rule that
//! slices that way, so an event's group is looked up once for all of them;
//! and [`attr_id`], the id of a grouping attribute's name.
//!
//! An entry is one slice (its flat key and hash) and, per member rule, the
//! slot of that rule's group for the slice (or none). Rules still own their
//! groups and slots (slot numbers order timers, so they are allocated exactly
//! as before); the table only replaces each rule's own hash index. An entry
//! lives while some member has a group in it. Tables are not part of a
//! snapshot: they are rebuilt from the rules' groups.

use hashbrown::HashTable;

use super::rule::{key_eq, GroupKey};
use super::RuleRt;

/// No group of this member rule in the entry.
pub(super) const NONE: u32 = u32::MAX;

/// One slice of a [`GroupTable`].
#[derive(Debug)]
struct Entry {
    hash: u64,
    key: GroupKey,
    /// Member rules with a group in this entry (0: the entry is free).
    live: u32,
}

/// The shared index of one `group_by` list (see the module docs).
#[derive(Debug, Default)]
pub(super) struct GroupTable {
    /// Ids of the list's attributes in the engine's attribute table.
    pub(super) attrs: Box<[u16]>,
    /// Number of member rules.
    width: usize,
    index: HashTable<u32>,
    entries: Vec<Entry>,
    /// The member rules' slots, `width` per entry.
    slots: Vec<u32>,
    free: Vec<u32>,
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
        self.index
            .find(hash, |&e| {
                let en = &entries[e as usize];
                en.hash == hash && same(&en.key)
            })
            .copied()
    }

    /// The flat key of entry `e`.
    pub(super) fn key(&self, e: u32) -> &GroupKey {
        &self.entries[e as usize].key
    }

    /// A new entry (no member has a group in it yet).
    pub(super) fn insert(&mut self, hash: u64, key: GroupKey) -> u32 {
        let entry = Entry { hash, key, live: 0 };
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = entry;
                e
            }
            None => {
                self.entries.push(entry);
                self.slots.extend(std::iter::repeat_n(NONE, self.width));
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(hash, e, |&x| entries[x as usize].hash);
        e
    }

    /// Member `m`'s slot in entry `e` ([`NONE`] if it has no group there).
    #[inline]
    pub(super) fn slot(&self, e: u32, m: u32) -> u32 {
        self.slots[e as usize * self.width + m as usize]
    }

    /// Records member `m`'s new group in entry `e`.
    pub(super) fn set(&mut self, e: u32, m: u32, slot: u32) {
        let s = &mut self.slots[e as usize * self.width + m as usize];
        if *s == NONE {
            self.entries[e as usize].live += 1;
        }
        *s = slot;
    }

    /// Member `m` forgot its group in entry `e`; the entry goes when no member
    /// has one left.
    pub(super) fn unset(&mut self, e: u32, m: u32) {
        let s = &mut self.slots[e as usize * self.width + m as usize];
        if *s == NONE {
            return;
        }
        *s = NONE;
        let en = &mut self.entries[e as usize];
        en.live -= 1;
        if en.live == 0 {
            let hash = en.hash;
            if let Ok(found) = self.index.find_entry(hash, |&x| x == e) {
                found.remove();
            }
            en.key = GroupKey::new();
            self.free.push(e);
        }
    }

    /// Forgets every entry.
    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.slots.clear();
        self.free.clear();
    }
}

/// Rebuilds every table from the rules' live groups (after a restore or a
/// reload), and points each group at its entry.
pub(super) fn rebuild(tables: &mut [GroupTable], rules: &mut [RuleRt]) {
    for t in tables.iter_mut() {
        t.clear();
    }
    for rule in rules.iter_mut() {
        let table = &mut tables[rule.group_by_id];
        for (s, slot) in rule.slots.iter_mut().enumerate() {
            let Some(g) = slot.group.as_mut() else {
                continue;
            };
            let found = table.index.find(g.hash, |&e| {
                let en = &table.entries[e as usize];
                en.hash == g.hash && en.key == g.key
            });
            let e = match found {
                Some(&e) => e,
                None => table.insert(g.hash, g.key.clone()),
            };
            table.set(e, rule.member, s as u32);
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
