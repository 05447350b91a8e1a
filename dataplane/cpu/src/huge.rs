//! Transparent huge pages for large tables the data path reads at random
//! (usable without EAL, like [`crate::prefetch`]).
//!
//! On this project's machines every 4 KiB page a packet touches for the
//! first time in a while costs a TLB miss and a page walk, which a VM makes
//! dear (see `mempool`'s module docs for what that did to the mbuf pool).
//! A table of tens of megabytes read at one random line per packet (the
//! flow cache for 100,000 tunnels) misses on nearly every packet; in 2 MiB
//! pages it takes a dozen TLB entries.

use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// Bytes in a huge page (x86-64 PMD).
pub const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back the whole 2 MiB pages inside `s` with
/// transparent huge pages (`MADV_HUGEPAGE`), at their first fault or later
/// by `khugepaged`. Call it before the table is first written, so that
/// the first writes fault in huge pages. Does nothing for a table smaller
/// than one aligned huge page, and never fails: advice the kernel does not
/// take (THP off) leaves 4 KiB pages, as without the call. Returns the
/// bytes advised.
pub fn advise_huge_pages<T>(s: &[T]) -> usize {
    let start = s.as_ptr() as usize;
    let end = start + std::mem::size_of_val(s);
    let a = start.next_multiple_of(HUGE_PAGE);
    let b = end / HUGE_PAGE * HUGE_PAGE;
    if b <= a {
        return 0;
    }
    let Some(addr) = NonNull::new(a as *mut std::ffi::c_void) else {
        return 0;
    };
    // SAFETY: [a, b) lies inside `s`, which is mapped for as long as the
    // borrow lasts.
    if unsafe { advise_range(addr, b - a) } {
        b - a
    } else {
        0
    }
}

/// `madvise(MADV_HUGEPAGE)` on `[addr, addr + len)`; whether the kernel
/// took it.
///
/// # Safety
///
/// The range must be mapped for the duration of the call. The advice
/// changes neither the contents nor the mapping, only how later faults
/// (and `khugepaged`) serve it.
pub unsafe fn advise_range(addr: NonNull<std::ffi::c_void>, len: usize) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe { madvise(addr, len, MmapAdvise::MADV_HUGEPAGE) }.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advises_only_whole_aligned_pages_and_keeps_contents() {
        let small = vec![7u8; 4096];
        assert_eq!(advise_huge_pages(&small), 0);
        let big = vec![3u32; (3 * HUGE_PAGE) / 4];
        let n = advise_huge_pages(&big);
        assert!(n == HUGE_PAGE || n == 2 * HUGE_PAGE, "{n}");
        assert!(big.iter().all(|&w| w == 3));
    }
}
