//! A vector indexed by outbound slot that grows without copying what it
//! holds.
//!
//! A `Vec` that outgrows its buffer moves every element into one twice the
//! size. The worker's per-slot tables (outbound SAs, slot owners, cached
//! egress) grow while it forwards, one message or packet at a time; at
//! 131,072 slots one such move took 0.4-1 ms (2 MB copied into fresh,
//! not yet faulted-in pages), a forwarding stall far over what a worker
//! may spend on one control message. [`SlotVec`] keeps its elements in
//! fixed chunks of [`CHUNK`] instead: growing allocates one chunk and
//! pushes its pointer, so no element ever moves and a growth costs the
//! same at any size. A lookup reads the chunk pointer first (the list of
//! chunks is small and stays in cache).

/// Slots per chunk (a power of two).
pub const CHUNK: usize = 1024;
const SHIFT: u32 = CHUNK.trailing_zeros();

/// A growable `index -> T` table in chunks of [`CHUNK`] values that never
/// move; slots not yet written hold `T::default()`. [`SlotVec`] is this
/// over `Option<T>`; the gateway keeps its per-slot cache lines in one
/// directly.
#[derive(Clone)]
pub struct Chunked<T> {
    chunks: Vec<Box<[T]>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Chunked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunked")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> Chunked<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Self { chunks: Vec::new() }
    }

    /// Slots allocated so far (a multiple of [`CHUNK`]).
    pub fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// Slot `i`, if its chunk exists.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        Some(&self.chunks.get(i >> SHIFT)?[i & (CHUNK - 1)])
    }

    /// Slot `i`, mutable, if its chunk exists.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        Some(&mut self.chunks.get_mut(i >> SHIFT)?[i & (CHUNK - 1)])
    }

    /// Prefetches slot `i` (reading its chunk's pointer), for the burst
    /// pipeline.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if let Some(c) = self.chunks.get(i >> SHIFT) {
            cpu::prefetch::prefetch(c.as_ptr().wrapping_add(i & (CHUNK - 1)));
        }
    }

    /// Every allocated slot, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<T: Default> Chunked<T> {
    /// Slot `i`, allocating its chunk (and the ones before it) if needed.
    pub fn grow_to(&mut self, i: usize) -> &mut T {
        let c = i >> SHIFT;
        while self.chunks.len() <= c {
            self.chunks
                .push(std::iter::repeat_with(T::default).take(CHUNK).collect());
        }
        &mut self.chunks[c][i & (CHUNK - 1)]
    }
}

/// A growable `index -> Option<T>` table in chunks of [`CHUNK`] slots.
#[derive(Clone)]
pub struct SlotVec<T>(Chunked<Option<T>>);

impl<T> Default for SlotVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for SlotVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotVec")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> SlotVec<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Self(Chunked::new())
    }

    /// Slots allocated so far (a multiple of [`CHUNK`]).
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// The value at `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i)?.as_ref()
    }

    /// The value at `i`, mutable.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.0.get_mut(i)?.as_mut()
    }

    /// The slot `i` itself, allocating its chunk (and the ones before it)
    /// if needed.
    pub fn slot_mut(&mut self, i: usize) -> &mut Option<T> {
        self.0.grow_to(i)
    }

    /// Prefetches slot `i` (reading its chunk's pointer), for the burst
    /// pipeline.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        self.0.prefetch(i)
    }

    /// Puts `value` at `i`, returning what was there.
    pub fn insert(&mut self, i: usize, value: T) -> Option<T> {
        self.slot_mut(i).replace(value)
    }

    /// Empties slot `i`, returning what was there.
    pub fn take(&mut self, i: usize) -> Option<T> {
        self.0.get_mut(i)?.take()
    }

    /// Every occupied slot with its index, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_slots_start_as_default_and_grow_whole_chunks() {
        let mut c: Chunked<u8> = Chunked::new();
        assert_eq!((c.get(5), c.capacity()), (None, 0));
        *c.grow_to(5) = 3;
        assert_eq!((c.get(5), c.get(6)), (Some(&3), Some(&0)));
        assert_eq!((c.capacity(), c.get(CHUNK)), (CHUNK, None));
        *c.grow_to(CHUNK + 1) = 9;
        assert_eq!(c.capacity(), 2 * CHUNK);
        assert_eq!(c.iter().filter(|&&v| v != 0).count(), 2);
        *c.get_mut(5).unwrap() = 4;
        assert_eq!(c.get(5), Some(&4));
    }

    #[test]
    fn behaves_like_a_vec_of_options() {
        let mut s = SlotVec::new();
        let mut model: Vec<Option<u32>> = Vec::new();
        for k in 0..5000u32 {
            let i = (k.wrapping_mul(2_654_435_761) % 3000) as usize;
            if model.len() <= i {
                model.resize(i + 1, None);
            }
            if k % 3 == 0 {
                assert_eq!(s.take(i), model[i].take());
            } else {
                assert_eq!(s.insert(i, k), model[i].replace(k));
            }
        }
        for (i, m) in model.iter().enumerate() {
            assert_eq!(s.get(i), m.as_ref());
        }
        assert_eq!(s.get(1 << 20), None);
        assert_eq!(s.take(1 << 20), None);
        let got: Vec<(usize, u32)> = s.iter().map(|(i, v)| (i, *v)).collect();
        let want: Vec<(usize, u32)> = model
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(s.capacity() % CHUNK, 0);
        *s.get_mut(want[0].0).unwrap() = 7;
        assert_eq!(s.get(want[0].0), Some(&7));
    }
}
