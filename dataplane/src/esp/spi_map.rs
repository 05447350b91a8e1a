//! A map keyed by SPI that grows without stopping the worker that owns it.
//!
//! A hash table grows by moving every entry into a table twice the size,
//! all at once. For the inbound SA table, whose entries are whole SAs,
//! that took 74 ms of worker CPU at 114,689 SAs (measured with
//! `espresso-lab bench`'s reconfiguration case): a forwarding stall far over
//! the 1 ms a worker may spend on control work. [`SpiMap`] grows
//! incrementally instead: when the current table is full it becomes the
//! *old* table, a fresh one of twice the capacity takes new entries, and
//! every insert plus every [`step`](SpiMap::step) (once per poll) moves a
//! few entries across; lookups try the current table, then the old one
//! while it still holds entries. Hash tables with incremental rehashing
//! (Redis's `dict`, for one) do the same.
//!
//! Each table is open addressing with linear probing and the key stored
//! next to its value (see `Table` for why not `std`'s `HashMap`). The
//! moves walk the old table's slots from a cursor, a few per call, so
//! nothing in a growth is proportional to the table's size but the new
//! table itself: its slots must be written (faulting in fresh pages),
//! which on the KVM guest this runs on cost 0.25-1.5 ms of worker CPU for
//! 2^18 buckets (`reconf::tests::message_costs` in the control crate). So
//! a big map asks for its next table early ([`SpiMap::wants_spare`], once
//! it is half full): the control thread builds it ([`SpareTable::new`])
//! and the worker hands it in ([`SpiMap::give_spare`]); the emptied old
//! table goes back the same way ([`SpiMap::take_retired`]) to be freed off
//! the data path. A map that got no spare allocates its own.

/// Entries moved per insert while a growth is in progress: more than one,
/// so the old table is empty long before the new one fills.
const MOVE_PER_INSERT: usize = 2;
/// Entries moved per [`SpiMap::step`]. Each move may be the first touch
/// of a page of the new table (a page fault, about a microsecond), so a
/// poll (64 control messages and a step) moves at most 256 entries.
const MOVE_PER_STEP: usize = 128;
/// Slots scanned per entry of a move budget while walking the old table
/// (an empty slot costs a load, a move costs a removal and an insert).
const SCAN_PER_MOVE: usize = 4;
/// Smallest table.
const MIN_SLOTS: usize = 16;
/// Tables with fewer slots allocate their successor themselves (64 KiB
/// at most).
const SPARE_FROM: usize = 4096;

/// An empty table for an [`SpiMap`]'s next growth, built where faulting in
/// its pages does not stall forwarding; also an emptied table on its way
/// back to be freed.
pub struct SpareTable<V>(Table<V>);

impl<V> SpareTable<V> {
    /// An empty table of `slots` slots (rounded up to a power of two), all
    /// written, so its pages are faulted in here.
    pub fn new(slots: usize) -> Self {
        Self(Table::with_slots(slots.next_power_of_two().max(MIN_SLOTS)))
    }

    /// Slots it has.
    pub fn capacity(&self) -> usize {
        self.0.slots.len()
    }
}

impl<V: Default> SpareTable<V> {
    /// [`new`](Self::new), which writes every slot and so faults in every
    /// page of the table where it is built. (With hashbrown, whose buckets
    /// stay unwritten until used, the entries' pages faulted in on the
    /// worker while a growth moved entries: polls of 64 installs then cost
    /// 0.3-0.9 ms of worker CPU on this VM.)
    pub fn prefaulted(slots: usize) -> Self {
        Self::new(slots)
    }
}

impl<V> std::fmt::Debug for SpareTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpareTable")
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// An open-addressing table with linear probing, keys and values inline.
///
/// Why not `std`'s `HashMap` (hashbrown, which this replaced): a lookup
/// there hashes, reads a group of control bytes, matches it with SIMD,
/// then reads the bucket: two dependent cache lines and a chain of about
/// twenty cycles, a quarter of the ESP engine's own cost per packet at
/// 64 bytes. Here a lookup is one multiply for the home slot and a
/// compare of the key stored in it: SPIs are 32 random bits chosen by the
/// receiver (RFC 4303 §2.1; our IKE draws them at random), so clusters
/// stay short at the load kept here (at most 3/4), and the probe usually
/// ends in the home slot's cache line. Removal shifts the rest of the
/// cluster back (no tombstones), so lookups never slow down with churn.
#[derive(Clone)]
struct Table<V> {
    /// A power of two long, or empty.
    slots: Vec<Option<(u32, V)>>,
    len: usize,
    /// 64 − log2(slots.len()): the home slot is the top bits of a
    /// Fibonacci hash.
    shift: u32,
}

impl<V> Table<V> {
    const fn empty() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            shift: 63,
        }
    }

    /// An empty table of `n` slots, a power of two, every slot written.
    fn with_slots(n: usize) -> Self {
        debug_assert!(n.is_power_of_two());
        let mut slots = Vec::with_capacity(n);
        // One random slot per packet: 2^18 slots of 24 bytes for 100,000
        // SAs are 6 MB, a TLB miss on nearly every lookup in 4 KiB pages
        // (the single hottest instruction of the 100,000-SA decrypt
        // worker); advised before the writes below fault them in.
        cpu::huge::advise_huge_pages(slots.spare_capacity_mut());
        slots.resize_with(n, || None);
        Self {
            slots,
            len: 0,
            shift: 64 - n.trailing_zeros(),
        }
    }

    /// Entries this table takes before it must grow (a load of 3/4).
    fn limit(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    #[inline(always)]
    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Prefetches the home slot of `key` (no slot is read).
    #[inline(always)]
    fn prefetch(&self, key: u32) {
        if !self.slots.is_empty() {
            let i = self.home(key) & self.mask();
            cpu::prefetch::prefetch(self.slots.as_ptr().wrapping_add(i));
        }
    }

    /// The slot holding `key`.
    #[inline(always)]
    fn find(&self, key: u32) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key) & mask;
        // Terminates: the load stays below 1, so some slot is empty.
        loop {
            match self.slots.get(i)? {
                Some((k, _)) if *k == key => return Some(i),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }

    #[inline(always)]
    fn get(&self, key: u32) -> Option<&V> {
        let i = self.find(key)?;
        self.slots.get(i)?.as_ref().map(|(_, v)| v)
    }

    #[inline(always)]
    fn get_mut(&mut self, key: u32) -> Option<&mut V> {
        let i = self.find(key)?;
        self.slots.get_mut(i)?.as_mut().map(|(_, v)| v)
    }

    /// Inserts or replaces; the caller makes sure there is room.
    fn insert(&mut self, key: u32, value: V) -> Option<V> {
        debug_assert!(self.len < self.slots.len());
        let mask = self.mask();
        let mut i = self.home(key) & mask;
        loop {
            match &mut self.slots[i] {
                Some((k, v)) if *k == key => return Some(std::mem::replace(v, value)),
                Some(_) => i = (i + 1) & mask,
                slot @ None => {
                    *slot = Some((key, value));
                    self.len += 1;
                    return None;
                }
            }
        }
    }

    fn remove(&mut self, key: u32) -> Option<(u32, V)> {
        let i = self.find(key)?;
        self.remove_at(i)
    }

    /// Empties slot `i` and shifts the rest of its cluster back so every
    /// entry stays reachable from its home slot (Knuth's algorithm R).
    fn remove_at(&mut self, mut i: usize) -> Option<(u32, V)> {
        let taken = self.slots[i].take()?;
        self.len -= 1;
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.slots[j] else {
                break;
            };
            let h = self.home(*k) & mask;
            // The entry at j may fill the hole at i unless its home lies
            // cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.slots[i] = self.slots[j].take();
                i = j;
            }
        }
        Some(taken)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(_, v)| v))
    }
}

/// A `u32`-keyed map that grows a little at a time (see the module docs).
#[derive(Clone)]
pub struct SpiMap<V> {
    cur: Table<V>,
    old: Table<V>,
    /// Next slot of `old` to move; slots before it are empty.
    cursor: usize,
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
            .field("moving", &self.old.len)
            .finish()
    }
}

impl<V> SpiMap<V> {
    /// An empty map (allocates on the first insert).
    pub fn new() -> Self {
        Self {
            cur: Table::empty(),
            old: Table::empty(),
            cursor: 0,
            spare: None,
            asked: false,
            retired: None,
        }
    }

    /// The size of the table the next growth needs, once per growth and
    /// only for big maps that are at least half full and hold no spare
    /// yet: build it with [`SpareTable::new`] and hand it to
    /// [`give_spare`](Self::give_spare).
    pub fn wants_spare(&mut self) -> Option<usize> {
        let slots = self.cur.slots.len();
        if self.asked || self.spare.is_some() || slots < SPARE_FROM || self.cur.len * 2 < slots {
            return None;
        }
        self.asked = true;
        Some(self.next_size())
    }

    /// Takes a table for the next growth; gives back one of the wrong size
    /// (or a spare it already had).
    pub fn give_spare(&mut self, spare: SpareTable<V>) -> Option<SpareTable<V>> {
        if spare.0.slots.len() != self.next_size() || spare.0.len != 0 {
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
        self.cur.len + self.old.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while entries are still being moved to the bigger table.
    pub fn is_growing(&self) -> bool {
        self.old.len != 0
    }

    /// Inserts, returning the value `key` had.
    pub fn insert(&mut self, key: u32, value: V) -> Option<V> {
        let before = if self.old.len == 0 {
            None
        } else {
            self.old.remove(key).map(|(_, v)| v)
        };
        if self.cur.len >= self.cur.limit() && self.cur.find(key).is_none() {
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
        match self.cur.remove(key) {
            Some((_, v)) => Some(v),
            None if self.old.len != 0 => self.old.remove(key).map(|(_, v)| v),
            None => None,
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u32) -> Option<&V> {
        match self.cur.get(key) {
            Some(v) => Some(v),
            None if self.old.len != 0 => self.old.get(key),
            None => None,
        }
    }

    /// Burst pipeline: prefetches the slot where a lookup of `key`
    /// starts (in both tables while growing), so that the lookups of a
    /// burst miss the cache together rather than one after another.
    #[inline]
    pub fn prefetch(&self, key: u32) {
        self.cur.prefetch(key);
        if self.old.len != 0 {
            self.old.prefetch(key);
        }
    }

    /// The value of `key`, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: u32) -> Option<&mut V> {
        if self.old.len != 0 && self.cur.find(key).is_none() {
            return self.old.get_mut(key);
        }
        self.cur.get_mut(key)
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

    /// Slots of the table that will follow the current one.
    fn next_size(&self) -> usize {
        (self.cur.slots.len() * 2).max(MIN_SLOTS)
    }

    fn start_growth(&mut self) {
        // Finish a growth still in progress (it cannot be: each insert
        // moves several entries and the new table has room for as many
        // inserts as the old one held).
        self.move_some(usize::MAX / SCAN_PER_MOVE);
        let want = self.next_size();
        let fresh = match self.spare.take() {
            Some(t) if t.slots.len() == want => t,
            _ => Table::with_slots(want),
        };
        self.asked = false;
        self.old = std::mem::replace(&mut self.cur, fresh);
        self.cursor = 0;
    }

    /// Moves up to `n` entries, walking the old table's slots in order.
    /// Removing the entry at the cursor shifts the rest of its cluster
    /// back onto the cursor, never before it, and the slots before the
    /// cursor are all empty, so a walk in slot order sees every entry
    /// once (removals by [`remove`](Self::remove) meanwhile included).
    fn move_some(&mut self, n: usize) {
        let mut budget = n.saturating_mul(SCAN_PER_MOVE);
        while budget > 0 && self.old.len != 0 {
            let Some(slot) = self.old.slots.get(self.cursor) else {
                break;
            };
            if slot.is_some() {
                if let Some((k, v)) = self.old.remove_at(self.cursor) {
                    self.cur.insert(k, v);
                }
                budget = budget.saturating_sub(SCAN_PER_MOVE);
            } else {
                self.cursor += 1;
                budget -= 1;
            }
        }
        if self.old.len == 0 && !self.old.slots.is_empty() {
            // Freed by whoever takes it (a second one, not taken yet, here).
            self.retired = Some(std::mem::replace(&mut self.old, Table::empty()));
            self.cursor = 0;
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
        // A prefetch reads and changes nothing, even of an empty map.
        m.prefetch(7);
        for i in 0..20_000u32 {
            let k = i.wrapping_mul(2_654_435_761);
            m.prefetch(k);
            m.prefetch(k ^ 1);
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
    fn lookups_find_entries_not_yet_moved() {
        let mut m = SpiMap::new();
        let mut k = 0;
        // Fill until a growth starts, then check every key at once.
        while !m.is_growing() {
            m.insert(k, k);
            k += 1;
        }
        assert!(m.old.len != 0, "entries wait in the old table");
        for i in 0..k {
            assert_eq!(m.get(i), Some(&i));
            assert_eq!(m.get_mut(i).copied(), Some(i));
            assert!(m.contains_key(i));
        }
        while m.is_growing() {
            m.step();
        }
        assert!(m.old.len == 0 && m.old.slots.is_empty());
        assert!(m.take_retired().is_some());
        assert_eq!(m.len(), k as usize);
        assert_eq!(m.remove(3), Some(3));
        assert_eq!(m.get(3), None);
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
        assert!(m.give_spare(small).is_some(), "wrong size, given back");
        assert!(m.give_spare(SpareTable::prefaulted(want)).is_none());
        // Finish the growth before (moves go on while the map fills).
        while m.is_growing() {
            m.step();
        }
        while !m.is_growing() {
            m.insert(k, k);
            k += 1;
        }
        assert!(m.spare.is_none(), "the spare became the table");
        assert_eq!(m.cur.slots.len(), want);
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
    fn replacing_a_key_in_a_full_table_does_not_grow_it() {
        let mut m = SpiMap::new();
        let mut k = 0u32;
        while m.cur.len < m.cur.limit() || m.cur.len < 1000 {
            m.insert(k, k);
            k += 1;
            while m.is_growing() {
                m.step();
            }
        }
        let slots = m.cur.slots.len();
        assert_eq!(m.insert(0, 7), Some(0));
        assert_eq!(
            m.cur.slots.len(),
            slots,
            "no growth for a key already there"
        );
        assert!(!m.is_growing());
        assert_eq!(m.get(0), Some(&7));
    }

    #[test]
    fn clusters_survive_removals_that_wrap_around() {
        // A tiny table where every key shares few home slots: long
        // clusters that wrap past the end, then removals in every order.
        let mut m: SpiMap<u32> = SpiMap::new();
        let keys: Vec<u32> = (0..12u32).map(|i| i << 28).collect();
        for &k in &keys {
            m.insert(k, k);
        }
        for (n, &k) in keys.iter().enumerate().rev() {
            assert_eq!(m.remove(k), Some(k));
            for &other in &keys[..n] {
                assert_eq!(
                    m.get(other),
                    Some(&other),
                    "{other:#x} lost after removing {k:#x}"
                );
            }
        }
        assert!(m.is_empty());
    }

    proptest::proptest! {
        /// Any sequence of inserts, removals and polls behaves like a map,
        /// through growths, on keys crowded into few home slots or not.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..4, 0u32..3000, proptest::bool::ANY), 1..3000)) {
            let mut m = SpiMap::new();
            let mut model = std::collections::HashMap::new();
            for (op, k, crowd) in ops {
                let key = if crowd { k << 20 } else { k.wrapping_mul(2_654_435_761) };
                match op {
                    0 | 1 => proptest::prop_assert_eq!(m.insert(key, k), model.insert(key, k)),
                    2 => proptest::prop_assert_eq!(m.remove(key), model.remove(&key)),
                    _ => m.step(),
                }
                proptest::prop_assert_eq!(m.len(), model.len());
                proptest::prop_assert_eq!(m.get(key), model.get(&key));
            }
            for (k, v) in &model {
                proptest::prop_assert_eq!(m.get(*k), Some(v));
            }
            proptest::prop_assert_eq!(m.values().count(), model.len());
        }
    }
}
