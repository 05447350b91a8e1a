//! Software prefetch, the `rte_prefetch0` of this crate (usable without
//! EAL: it is a CPU hint, not a DPDK call).
//!
//! The burst pipeline (`gateway::Node::prefetch_burst`) uses it to start
//! the cache misses of a whole burst (flow-cache sets, SAs, key schedules)
//! before processing its first packet, as DPDK's lib/ipsec and VPP do, so
//! that with many SAs the misses overlap instead of stalling one packet
//! after another.

/// Bytes per cache line.
pub const CACHE_LINE: usize = 64;

/// Asks the CPU to bring the cache line holding `p` into all cache levels.
/// A prefetch never faults and has no architectural effect, so any
/// address (dangling, null, unmapped) is sound; it is only a hint.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: PREFETCHT0 does not access memory architecturally: it
        // cannot fault, whatever the address, and changes no state but the
        // caches. SSE, which it needs, is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches every cache line of `len` bytes from `p`.
#[inline(always)]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        prefetch(p.wrapping_add(off));
        off += CACHE_LINE;
    }
    // The last byte, in case `p` is not line-aligned.
    if len > 0 {
        prefetch(p.wrapping_add(len - 1));
    }
}

/// Prefetches all of `*r` (its cache lines).
#[inline(always)]
pub fn prefetch_val<T>(r: *const T) {
    prefetch_bytes(r.cast::<u8>(), core::mem::size_of::<T>());
}

/// Up to 16 cache lines from a base address, as a mask: what one object
/// (an SA's hot part, a key schedule) needs in the cache. Built once when
/// the object is installed, from its address; then each packet prefetches
/// them without reading the object first. A plain address: stale or not,
/// prefetching it is sound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    base: usize,
    mask: u16,
}

impl Lines {
    /// Nothing to prefetch.
    pub const NONE: Self = Self { base: 0, mask: 0 };

    /// The lines holding `len` bytes from `p` (at most 16 lines).
    pub fn of_bytes(p: *const u8, len: usize) -> Self {
        if len == 0 {
            return Self::NONE;
        }
        let addr = p as usize;
        let base = addr & !(CACHE_LINE - 1);
        let n = (addr + len - base).div_ceil(CACHE_LINE).min(16);
        Self {
            base,
            mask: if n == 16 { u16::MAX } else { (1 << n) - 1 },
        }
    }

    /// These lines and the one holding `p + offset` (ignored unless within
    /// 16 lines of the base).
    pub fn with_byte(self, p: *const u8, offset: usize) -> Self {
        let addr = p as usize + offset;
        if self.mask == 0 {
            return Self::of_bytes(p.wrapping_add(offset), 1);
        }
        let line = addr.wrapping_sub(self.base) / CACHE_LINE;
        if addr < self.base || line >= 16 {
            return self;
        }
        Self {
            base: self.base,
            mask: self.mask | 1 << line,
        }
    }

    /// Number of lines.
    pub fn count(self) -> u32 {
        self.mask.count_ones()
    }

    /// True if the line holding `p` is one of them.
    pub fn contains<T: ?Sized>(self, p: *const T) -> bool {
        let addr = p.cast::<u8>() as usize;
        let line = addr.wrapping_sub(self.base) / CACHE_LINE;
        addr >= self.base && line < 16 && self.mask & (1 << line) != 0
    }

    /// The base address and the mask, to store compactly.
    pub fn parts(self) -> (usize, u16) {
        (self.base, self.mask)
    }

    /// From [`Self::parts`].
    pub fn from_parts(base: usize, mask: u16) -> Self {
        Self { base, mask }
    }

    /// Prefetches them.
    #[inline(always)]
    pub fn prefetch(self) {
        let mut m = self.mask;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            prefetch(self.base.wrapping_add(i * CACHE_LINE) as *const u8);
            m &= m - 1;
        }
    }
}

/// A table of 16-byte entries inside a key schedule that a payload reads
/// from its end, one entry per 16-byte block of the payload up to `cap`
/// entries: the GHASH powers of ipsec-mb's VAES/AVX-512 AES-GCM
/// (`HashKey_48` .. `HashKey_1`, of which a payload of `B` blocks reads
/// `HashKey_min(B, 48)` .. `HashKey_1`). Lets the burst pipeline prefetch
/// the lines a packet's length needs rather than all or a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTable {
    /// One past the table's last byte.
    pub end: *const u8,
    /// Entries in the table.
    pub cap: u8,
}

impl BlockTable {
    /// Bytes per entry (one AES block).
    pub const ENTRY: usize = 16;

    /// The lines of the whole table.
    pub fn all_lines(self) -> Lines {
        let len = usize::from(self.cap) * Self::ENTRY;
        Lines::of_bytes(self.end.wrapping_sub(len), len)
    }
}

/// The lines, within 16 of a line-aligned base, of the entries a payload
/// of `payload_len` bytes reads from a table of `cap` entries ending
/// `end_entries` entries after the base ([`BlockTable`] stored compactly):
/// one per block, and at least the last one (GCM hashes the AAD and the
/// tag with `HashKey_1`).
#[inline(always)]
pub fn block_table_mask(end_entries: u8, cap: u8, payload_len: usize) -> u16 {
    const PER_LINE: usize = CACHE_LINE / BlockTable::ENTRY;
    let end = usize::from(end_entries);
    let last = (end * BlockTable::ENTRY).saturating_sub(1) / CACHE_LINE;
    if cap == 0 || end == 0 || last >= 16 {
        return 0;
    }
    let read = payload_len
        .div_ceil(BlockTable::ENTRY)
        .clamp(1, usize::from(cap))
        .min(end);
    let first = (end - read) / PER_LINE;
    ((2u32 << last) - (1u32 << first)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ipsec-mb's GHASH powers (63 entries from a 64-byte aligned key
    /// schedule, the last 48 of them the table): a 64-byte payload reads
    /// HashKey_4..1 (bytes 944..1007, lines 14 and 15), 570 bytes
    /// HashKey_36..1 (from byte 432, line 6), 768 bytes or more all 48
    /// (from byte 240, line 3).
    #[test]
    fn block_table_lines_follow_the_payload_length() {
        let m = |len| block_table_mask(63, 48, len);
        assert_eq!(m(1), 1 << 15);
        assert_eq!(m(48), 1 << 15);
        assert_eq!(m(64), 0b11 << 14);
        assert_eq!(m(570), 0xffff << 6);
        assert_eq!(m(767), 0xffff << 3);
        assert_eq!(m(1400), 0xffff << 3);
        assert_eq!(m(0), 1 << 15);
        assert_eq!(block_table_mask(63, 0, 64), 0);
        // A table that would end beyond 16 lines names nothing.
        assert_eq!(block_table_mask(65, 48, 64), 0);
    }

    #[test]
    fn lines_cover_the_bytes() {
        let l = Lines::of_bytes(130 as *const u8, 100);
        assert_eq!((l.base, l.mask), (128, 0b11));
        let l = Lines::of_bytes(128 as *const u8, 64);
        assert_eq!((l.base, l.mask), (128, 0b1));
        let l = l.with_byte(128 as *const u8, 1000);
        assert_eq!(l.mask, 0b1 | 1 << 15);
        assert_eq!(l.count(), 2);
        assert!(l.contains(191 as *const u8) && l.contains(1128 as *const u8));
        assert!(!l.contains(192 as *const u8) && !l.contains(127 as *const u8));
        assert!(!l.contains((128 + 16 * 64) as *const u8));
        assert_eq!(Lines::of_bytes(64 as *const u8, 0), Lines::NONE);
        Lines::NONE.prefetch();
        l.prefetch();
    }
}
