//! A map keyed by SPI that grows without stopping the worker that owns it.
//!
//! A hash table grows by moving every entry into a table twice the size,
//! all at once. For the inbound SA table, whose entries are whole SAs,
//! that took 74 ms of worker CPU at 114,689 SAs (measured with
//! `espresso bench`'s reconfiguration case): a forwarding stall far over
//! the 1 ms a worker may spend on control work. [`SpiMap`] grows
//! incrementally instead: when the current table is full it becomes the
//! *old* table, a fresh one of twice the capacity takes new entries, and
//! every insert plus every [`step`](SpiMap::step) (once per poll) moves a
//! few entries across; lookups try the current table, then the old one
//! while it still holds entries. Hash tables with incremental rehashing
//! (Redis's `dict`, for one) do the same.
//!
//! Nothing in a growth is proportional to the table's size except the
//! new table's allocation (its control bytes are set, one byte per
//! bucket): the entries to move are taken straight out of the old table
//! with hashbrown's `extract_if`, a few per call. (An earlier version
//! listed the old table's keys when a growth started: at 114,688 SAs that
//! alone held the worker for 0.4-1.4 ms.) Each call scans the old table
//! from its first bucket, skipping the emptied ones a group of 16 control
//! bytes at a time: a few microseconds at 2^17 buckets.
//!
//! The new table's allocation is the one step left that grows with the
//! table: writing its control bytes faults in fresh pages, which on the
//! KVM guest this runs on cost 0.25-1.5 ms of worker CPU for 2^18
//! buckets (`reconf::tests::message_costs` in the control crate). So a
//! big map asks for its next table early ([`SpiMap::wants_spare`], once it
//! is half full): the control thread builds it ([`SpareTable::new`]) and
//! the worker hands it in ([`SpiMap::give_spare`]); the emptied old table
//! goes back the same way ([`SpiMap::take_retired`]) to be freed off the
//! data path. A map that got no spare allocates its own as before.

use std::hash::BuildHasherDefault;

use hashbrown::HashMap;

use super::inbound::SpiHasher;

type Table<V> = HashMap<u32, V, BuildHasherDefault<SpiHasher>>;

/// Entries moved per insert while a growth is in progress: more than one,
/// so the old table is empty long before the new one fills.
const MOVE_PER_INSERT: usize = 2;
/// Entries moved per [`SpiMap::step`]. Each move may be the first touch
/// of a page of the new table (a page fault, about a microsecond), so a
/// poll (64 control messages and a step) moves at most 256 entries.
const MOVE_PER_STEP: usize = 128;

/// Maps smaller than this allocate their next table themselves (a few
/// pages at most).
const SPARE_FROM: usize = 4096;

/// An empty table for an [`SpiMap`]'s next growth, built where faulting in
/// its pages does not stall forwarding; also an emptied table on its way
/// back to be freed.
pub struct SpareTable<V>(Table<V>);

impl<V> SpareTable<V> {
    /// An empty table with room for `capacity` entries, its control bytes
    /// written (so its first pages are faulted in here).
    pub fn new(capacity: usize) -> Self {
        Self(Table::with_capacity_and_hasher(
            capacity,
            Default::default(),
        ))
    }

    /// Entries it has room for.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<V: Default> SpareTable<V> {
    /// [`new`](Self::new), with every page of the table faulted in: it is
    /// filled with default values and cleared (which keeps the memory).
    /// Writing the control bytes alone left the entries' pages to fault in
    /// on the worker, one or two per insert while the growth moves
    /// entries: polls of 64 installs then cost 0.3-0.9 ms of worker CPU
    /// on this VM.
    pub fn prefaulted(capacity: usize) -> Self {
        let mut t = Self::new(capacity);
        let room = t.0.capacity();
        for k in 0..room as u32 {
            t.0.insert(k, V::default());
        }
        t.0.clear();
        debug_assert!(t.0.capacity() >= room);
        t
    }
}

impl<V> std::fmt::Debug for SpareTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpareTable")
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A `u32`-keyed map that grows a little at a time (see the module docs).
#[derive(Clone)]
pub struct SpiMap<V> {
    cur: Table<V>,
    /// Entries still to move to `cur` while a growth is in progress.
    old: Table<V>,
    /// The table for the next growth, if one was handed in.
    spare: Option<Table<V>>,
    /// A spare was asked for since the last growth.
    asked: bool,
    /// The emptied table of the last growth, to be freed elsewhere.
    retired: Option<Table<V>>,
}

impl<V> Default for SpiMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> std::fmt::Debug for SpiMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiMap")
            .field("len", &self.len())
            .field("moving", &self.old.len())
            .finish()
    }
}

impl<V> SpiMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            cur: Table::default(),
            old: Table::default(),
            spare: None,
            asked: false,
            retired: None,
        }
    }

    /// The capacity of the table the next growth needs, once per growth
    /// and only for big maps that are at least half full and hold no
    /// spare yet: build it with [`SpareTable::new`] and hand it to
    /// [`give_spare`](Self::give_spare).
    pub fn wants_spare(&mut self) -> Option<usize> {
        let cap = self.cur.capacity();
        if self.asked || self.spare.is_some() || cap < SPARE_FROM || self.cur.len() * 2 < cap {
            return None;
        }
        self.asked = true;
        Some(cap * 2)
    }

    /// Takes a table for the next growth; gives back one too small to use
    /// (or a spare it already had).
    pub fn give_spare(&mut self, spare: SpareTable<V>) -> Option<SpareTable<V>> {
        if spare.0.capacity() < self.cur.capacity() * 2 || !spare.0.is_empty() {
            return Some(spare);
        }
        self.spare.replace(spare.0).map(SpareTable)
    }

    /// The emptied table of the last growth, for the caller to free off
    /// the data path.
    pub fn take_retired(&mut self) -> Option<SpareTable<V>> {
        self.retired.take().map(SpareTable)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while entries are still being moved to the bigger table.
    pub fn is_growing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Inserts, returning the value `key` had.
    pub fn insert(&mut self, key: u32, value: V) -> Option<V> {
        // A key already here is replaced in place: hashbrown's `insert`
        // reserves room for one more entry first, even for a key it holds,
        // so on a full table it would rehash every entry at once (1.5 ms at
        // 114,688 entries, when `InboundOwner` followed the
        // `InstallInbound` that filled the table).
        if let Some(v) = self.cur.get_mut(&key) {
            return Some(std::mem::replace(v, value));
        }
        let before = if self.old.is_empty() {
            None
        } else {
            self.old.remove(&key)
        };
        // `capacity()` is entries plus room left (tombstones use room), so
        // a full table is exactly one whose next new key would rehash it.
        if self.cur.len() >= self.cur.capacity() {
            self.start_growth();
        }
        let replaced = self.cur.insert(key, value).or(before);
        if self.is_growing() {
            self.move_some(MOVE_PER_INSERT);
        }
        replaced
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: u32) -> Option<V> {
        match self.cur.remove(&key) {
            Some(v) => Some(v),
            None if !self.old.is_empty() => self.old.remove(&key),
            None => None,
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u32) -> Option<&V> {
        match self.cur.get(&key) {
            Some(v) => Some(v),
            None if !self.old.is_empty() => self.old.get(&key),
            None => None,
        }
    }

    /// The value of `key`, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: u32) -> Option<&mut V> {
        if !self.old.is_empty() && !self.cur.contains_key(&key) {
            return self.old.get_mut(&key);
        }
        self.cur.get_mut(&key)
    }

    /// True if `key` is present.
    #[inline]
    pub fn contains_key(&self, key: u32) -> bool {
        self.get(key).is_some()
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.cur.values().chain(self.old.values())
    }

    /// Moves a bounded number of entries to the bigger table if a growth
    /// is in progress (a worker calls this once per poll).
    #[inline]
    pub fn step(&mut self) {
        if self.is_growing() {
            self.move_some(MOVE_PER_STEP);
        }
    }

    fn start_growth(&mut self) {
        // Finish a growth still in progress (it cannot be: each insert
        // moves several entries and the new table has room for as many
        // inserts as the old one held).
        self.move_some(usize::MAX);
        let capacity = (self.cur.capacity() * 2).max(16);
        let fresh = match self.spare.take() {
            Some(t) if t.capacity() >= capacity => t,
            _ => Table::with_capacity_and_hasher(capacity, Default::default()),
        };
        self.asked = false;
        self.old = std::mem::replace(&mut self.cur, fresh);
    }

    fn move_some(&mut self, n: usize) {
        for (k, v) in self.old.extract_if(|_, _| true).take(n) {
            self.cur.insert(k, v);
        }
        if self.old.is_empty() && self.old.capacity() > 0 {
            // Freed by whoever takes it (a second one, not taken yet, here).
            self.retired = Some(std::mem::take(&mut self.old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_through_growths_and_removals() {
        let mut m = SpiMap::new();
        let mut model = std::collections::HashMap::new();
        let mut grew = false;
        for i in 0..20_000u32 {
            let k = i.wrapping_mul(2_654_435_761);
            assert_eq!(m.insert(k, i), model.insert(k, i));
            grew |= m.is_growing();
            if i % 3 == 0 {
                let r = (i / 2).wrapping_mul(2_654_435_761);
                assert_eq!(m.remove(r), model.remove(&r));
            }
            if i % 7 == 0 {
                // Replace an existing key, wherever it lives.
                let r = (i / 3).wrapping_mul(2_654_435_761);
                if let Some(old) = model.get_mut(&r) {
                    assert_eq!(m.insert(r, i), Some(*old));
                    *old = i;
                }
            }
            if i % 1000 == 0 {
                m.step();
            }
            assert_eq!(m.len(), model.len());
        }
        assert!(grew, "the map grew incrementally at least once");
        for (k, v) in &model {
            assert_eq!(m.get(*k), Some(v));
        }
        let mut values: Vec<u32> = m.values().copied().collect();
        let mut expected: Vec<u32> = model.values().copied().collect();
        values.sort_unstable();
        expected.sort_unstable();
        assert_eq!(values, expected);
        assert_eq!(m.get(7), model.get(&7));
    }

    #[test]
    fn grows_into_a_spare_table_and_hands_the_old_one_back() {
        let mut m = SpiMap::new();
        let mut asked = None;
        let mut k = 0u32;
        while asked.is_none() {
            m.insert(k, k);
            k += 1;
            asked = m.wants_spare();
        }
        let want = asked.unwrap();
        assert!(want >= 2 * SPARE_FROM);
        assert_eq!(m.wants_spare(), None, "asked once per growth");
        let small = SpareTable::new(16);
        assert!(m.give_spare(small).is_some(), "too small, given back");
        assert!(m.give_spare(SpareTable::prefaulted(want)).is_none());
        let spare_cap = m.spare.as_ref().unwrap().capacity();
        while m.is_growing() {
            m.step();
        }
        let _ = m.take_retired();
        while !m.is_growing() {
            m.insert(k, k);
            k += 1;
        }
        assert!(m.spare.is_none(), "the spare became the table");
        assert_eq!(m.cur.capacity(), spare_cap);
        while m.is_growing() {
            m.step();
        }
        let old = m.take_retired().expect("the emptied table comes back");
        assert!(old.capacity() > 0);
        for i in 0..k {
            assert_eq!(m.get(i), Some(&i));
        }
    }

    #[test]
    fn replacing_a_key_in_a_full_table_does_not_rehash_it() {
        let mut m = SpiMap::new();
        let mut k = 0u32;
        while m.cur.len() < m.cur.capacity() || m.cur.len() < 1000 {
            m.insert(k, k);
            k += 1;
            while m.is_growing() {
                m.step();
            }
        }
        let cap = m.cur.capacity();
        assert_eq!(m.insert(0, 7), Some(0));
        assert_eq!(m.cur.capacity(), cap, "no growth for a key already there");
        assert!(!m.is_growing());
        assert_eq!(m.get(0), Some(&7));
    }

    #[test]
    fn lookups_find_entries_not_yet_moved() {
        let mut m = SpiMap::new();
        let mut k = 0;
        // Fill until a growth starts, then check every key at once.
        while !m.is_growing() {
            m.insert(k, k);
            k += 1;
        }
        assert!(!m.old.is_empty(), "entries wait in the old table");
        for i in 0..k {
            assert_eq!(m.get(i), Some(&i));
            assert_eq!(m.get_mut(i).copied(), Some(i));
            assert!(m.contains_key(i));
        }
        while m.is_growing() {
            m.step();
        }
        assert!(m.old.is_empty() && m.old.capacity() == 0);
        assert!(m.take_retired().is_some());
        assert_eq!(m.len(), k as usize);
        assert_eq!(m.remove(3), Some(3));
        assert_eq!(m.get(3), None);
    }
}
