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
//! Each table is open addressing with linear probing and the key stored
//! next to its value (see [`Table`] for why not `std`'s `HashMap`), and
//! the next table's slots are written a few pages at a time while the
//! current one fills from half to three quarters, so that neither the
//! growth nor the moves fault in megabytes at once.

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
/// Empty slots of the next table written per insert, and per
/// [`SpiMap::step`], once the current table is half full (see
/// [`SpiMap::prepare`]). From half full to the growth at 3/4 there are
/// `slots / 4` inserts, and the next table has `2 × slots`: eight per
/// insert would do; sixteen leave room for inserts that replace.
const PREPARE_PER_INSERT: usize = 16;
/// 64 KiB, sixteen pages to fault in, per poll.
const PREPARE_PER_STEP: usize = 4096;

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

    /// A table over `slots`, all empty; their number a power of two.
    fn from_slots(slots: Vec<Option<(u32, V)>>) -> Self {
        let n = slots.len();
        debug_assert!(n.is_power_of_two() && slots.iter().all(Option::is_none));
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
    /// The next table's slots, written a few at a time before it is
    /// needed (see [`prepare`](Self::prepare)).
    next: Vec<Option<(u32, V)>>,
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
            next: Vec::new(),
        }
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
        } else {
            self.prepare(PREPARE_PER_INSERT);
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
        } else {
            self.prepare(PREPARE_PER_STEP);
        }
    }

    /// Slots of the table that will follow the current one.
    fn next_size(&self) -> usize {
        (self.cur.slots.len() * 2).max(MIN_SLOTS)
    }

    /// Writes up to `n` more empty slots of the next table once the
    /// current one is half full. A table of 2^19 slots is 8 MiB: written
    /// at once, when the growth starts, its page faults alone stalled the
    /// worker for milliseconds; a few pages per insert and per poll do
    /// not. The allocation itself touches nothing (large blocks are
    /// fresh mappings).
    fn prepare(&mut self, n: usize) {
        if self.cur.len < self.cur.slots.len() / 2 {
            return;
        }
        let want = self.next_size();
        if self.next.capacity() < want {
            self.next = Vec::with_capacity(want);
        }
        let add = n.min(want - self.next.len().min(want));
        self.next.extend(std::iter::repeat_with(|| None).take(add));
    }

    fn start_growth(&mut self) {
        // Finish a growth still in progress (it cannot be: each insert
        // moves several entries and the new table has room for as many
        // inserts as the old one held).
        self.move_some(usize::MAX / SCAN_PER_MOVE);
        let want = self.next_size();
        let mut slots = std::mem::take(&mut self.next);
        // Normally complete already (see `prepare`); not for small tables
        // or a burst of inserts faster than the preparation.
        slots.truncate(want);
        slots.resize_with(want, || None);
        self.old = std::mem::replace(&mut self.cur, Table::from_slots(slots));
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
            self.old = Table::empty();
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
        assert_eq!(m.len(), k as usize);
        assert_eq!(m.remove(3), Some(3));
        assert_eq!(m.get(3), None);
    }
    #[test]
    fn the_next_table_is_written_before_it_is_needed() {
        // Inserts with a poll (step) every 64, as a worker applies them:
        // whenever a growth is due, the next table's slots are already
        // written, so no insert writes a whole table at once.
        let mut m = SpiMap::new();
        let mut due = 0;
        for i in 1..=200_000u32 {
            if m.cur.len >= m.cur.limit() && m.cur.slots.len() >= 1024 {
                assert_eq!(m.next.len(), m.next_size(), "at {i} entries");
                due += 1;
            }
            m.insert(i.wrapping_mul(0x0808_8405), i);
            if i % 64 == 0 {
                m.step();
            }
        }
        assert!(due >= 5, "{due} growths checked");
        assert_eq!(m.len(), 200_000);
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
