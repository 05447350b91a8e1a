//! Packet-buffer pools.
//!
//! With hugepages the pool is `rte_pktmbuf_pool_create`'s, in EAL memory.
//! Without them (`--no-huge`, this project's usual way to run) EAL's memory
//! is a memfd mapped with 4 KiB pages, and a pool of 8,192 mbufs spreads
//! over 8,192 of them (an object may not cross a page that need not be
//! IOVA-contiguous, so each 2.4 KiB mbuf takes a page of its own). On a
//! virtual machine that is expensive: in the
//! benchmark lab the worker's `rx_burst` from net_pcap,
//! which copies out of stored mbufs, stalled for about 120 µs some 600
//! times a second (a bare spin loop on the same core: about 10 gaps over
//! 100 µs a second), 7 % of the worker's time. So without hugepages the
//! pool is built the way `rte_pktmbuf_pool_create` builds one
//! (`rte_mempool_create_empty`, the mbuf pool ops and private area,
//! `rte_pktmbuf_init` on every object) but populated on anonymous memory
//! advised for transparent huge pages (2 MiB), which the kernel's default
//! `madvise` THP mode honours, with the objects packed as in a hugepage
//! pool. That memory is outside EAL's memsegs and
//! its IOVA is its virtual address, which is what the IOVA-as-VA mode EAL
//! picks without hugepages means; no device in that mode does DMA (the
//! virtual devices copy), and with hugepages the EAL pool is used.

use std::ffi::CString;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::{DpdkError, Eal};
use cpu::huge::{advise_range, HUGE_PAGE};

/// How to size a pool. The defaults fit `-m` budgets without hugepages.
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    /// Unique name (DPDK pools are named process-wide).
    pub name: String,
    /// Number of mbufs.
    pub size: u32,
    /// Per-lcore cache size.
    pub cache_size: u32,
    /// Data room per mbuf, including `RTE_PKTMBUF_HEADROOM`.
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            name: "espresso_pool".into(),
            size: 8191,
            cache_size: 256,
            data_room: dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        }
    }
}

pub(crate) struct MempoolInner {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    size: u32,
    /// The anonymous mapping the objects live in, if not EAL memory.
    mapping: Option<Mapping>,
}

/// Where a pool's objects live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMemory {
    /// EAL memory (`rte_pktmbuf_pool_create`).
    Eal,
    /// An anonymous mapping advised for transparent huge pages.
    AnonThp,
}

/// An anonymous mapping, 2 MiB aligned.
struct Mapping {
    addr: NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapping {
    /// Maps at least `len` bytes (rounded up to 2 MiB) at a 2 MiB boundary
    /// and advises them for transparent huge pages.
    fn huge(len: usize) -> Result<Mapping, DpdkError> {
        let err = |what: &'static str, e: nix::Error| DpdkError::new(what, e as i32);
        let len = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let span = NonZeroUsize::new(len + HUGE_PAGE).ok_or_else(|| DpdkError::new("mmap", 22))?;
        // SAFETY: a fresh private anonymous mapping at an address the
        // kernel picks; nothing else refers to it.
        let base = unsafe {
            mmap_anonymous(
                None,
                span,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|e| err("mmap", e))?;
        let start = base.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE);
        let head = aligned - start;
        let tail = span.get() - head - len;
        let addr = NonNull::new(aligned as *mut std::ffi::c_void)
            .ok_or_else(|| DpdkError::new("mmap", 22))?;
        // What stays mapped is [aligned, aligned + len); the slack before
        // and after it goes back.
        if head > 0 {
            // SAFETY: [start, aligned) lies inside the mapping just made
            // and nothing uses it.
            unsafe { munmap(base, head) }.map_err(|e| err("munmap", e))?;
        }
        if let Some(t) = NonNull::new((aligned + len) as *mut std::ffi::c_void).filter(|_| tail > 0)
        {
            // SAFETY: [aligned + len, start + span) lies inside the
            // mapping just made and nothing uses it.
            unsafe { munmap(t, tail) }.map_err(|e| err("munmap", e))?;
        }
        // SAFETY: the range is our mapping. Advice only: with THP off the
        // pages stay 4 KiB, which is not an error.
        let _ = unsafe { advise_range(addr, len) };
        Ok(Mapping { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our mapping; its pool has been freed (or never made).
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}

// SAFETY: DPDK mempools are designed for concurrent get/put from many
// threads (lock-free ring plus per-lcore caches); the pointer is only used
// through those thread-safe calls.
unsafe impl Send for MempoolInner {}
// SAFETY: as above.
unsafe impl Sync for MempoolInner {}

impl Drop for MempoolInner {
    fn drop(&mut self) {
        // A pool may only be freed when every mbuf is back; an mbuf that
        // outlived its pool would point into freed memory. If some are still
        // out, the pool is left allocated (leaked) instead.
        // SAFETY: the pointer is a live pool created by us.
        let avail = unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) };
        if avail == self.size {
            // SAFETY: no mbuf of this pool is alive and no port references it
            // (ports hold a `Mempool` clone, so they are gone too).
            unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
            // The mapping (if any) goes with `self` after this.
        } else if let Some(m) = self.mapping.take() {
            // Mbufs still out point into the mapping: keep it.
            std::mem::forget(m);
        }
    }
}

/// A shared handle to a packet-buffer pool.
#[derive(Clone)]
pub struct Mempool {
    pub(crate) inner: Arc<MempoolInner>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("size", &self.inner.size)
            .field("available", &self.available())
            .finish()
    }
}

impl Mempool {
    /// Creates a pool of packet mbufs on the caller's NUMA socket.
    /// Without hugepages (and with IOVA as VA) its objects live in an
    /// anonymous mapping advised for transparent huge pages (see the
    /// module docs); otherwise in EAL memory.
    pub fn new(eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
        // SAFETY: EAL is initialised (`eal`); this only reads its config.
        let huge = unsafe { dpdk_sys::rte_eal_has_hugepages() };
        // SAFETY: as above.
        let iova = unsafe { dpdk_sys::rte_eal_iova_mode() };
        if huge == 0 && iova == dpdk_sys::RTE_IOVA_VA {
            Self::new_anon_thp(eal, config)
        } else {
            Self::new_eal(eal, config)
        }
    }

    /// Where this pool's objects live.
    pub fn memory(&self) -> PoolMemory {
        match self.inner.mapping {
            Some(_) => PoolMemory::AnonThp,
            None => PoolMemory::Eal,
        }
    }

    fn new_eal(_eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
        let name = CString::new(config.name.as_str())
            .map_err(|_| DpdkError::new("rte_pktmbuf_pool_create", libc_einval()))?;
        // SAFETY: EAL is initialised (`_eal`); no other precondition.
        let socket = unsafe { dpdk_sys::rte_socket_id() } as i32;
        // SAFETY: EAL is initialised (`_eal`); `name` is a valid C string
        // that DPDK copies; numeric arguments are plain values.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                name.as_ptr(),
                config.size,
                config.cache_size,
                0,
                config.data_room,
                socket,
            )
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| DpdkError::from_rte_errno("rte_pktmbuf_pool_create"))?;
        Ok(Mempool {
            inner: Arc::new(MempoolInner {
                ptr,
                size: config.size,
                mapping: None,
            }),
        })
    }

    /// `rte_pktmbuf_pool_create` (lib/mbuf/rte_mbuf.c) step by step, with
    /// the objects in a [`Mapping`].
    fn new_anon_thp(_eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
        let name = CString::new(config.name.as_str())
            .map_err(|_| DpdkError::new("rte_mempool_create_empty", libc_einval()))?;
        let elt_size =
            std::mem::size_of::<dpdk_sys::rte_mbuf>() as u32 + u32::from(config.data_room);
        let mut objsz = dpdk_sys::rte_mempool_objsz::default();
        // SAFETY: plain arithmetic on sizes; `objsz` is ours to fill.
        let total = unsafe { dpdk_sys::rte_mempool_calc_obj_size(elt_size, 0, &mut objsz) };
        let total = total.max(1) as usize;
        // Packed objects, plus one for the first one's cache-line alignment.
        let mapping = Mapping::huge((config.size as usize + 1) * total)?;
        // SAFETY: EAL is initialised (`_eal`).
        let socket = unsafe { dpdk_sys::rte_socket_id() } as i32;
        // SAFETY: `name` is a valid C string DPDK copies; sizes as
        // rte_pktmbuf_pool_create passes them.
        let ptr = unsafe {
            dpdk_sys::rte_mempool_create_empty(
                name.as_ptr(),
                config.size,
                elt_size,
                config.cache_size,
                std::mem::size_of::<dpdk_sys::rte_pktmbuf_pool_private>() as u32,
                socket,
                // Objects may cross 4 KiB boundaries: they are packed as
                // in a hugepage pool instead of one per 4 KiB page (which
                // is what DPDK does without hugepages, since 4 KiB pages
                // need not be IOVA-contiguous; here they are).
                dpdk_sys::RTE_MEMPOOL_F_NO_IOVA_CONTIG,
            )
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| DpdkError::from_rte_errno("rte_mempool_create_empty"))?;
        // From here on a failure frees the empty pool.
        let fail = |what: &'static str, rc: i32| {
            // SAFETY: our pool, with no object handed out.
            unsafe { dpdk_sys::rte_mempool_free(ptr.as_ptr()) };
            DpdkError::new(what, -rc)
        };
        let mut private = dpdk_sys::rte_pktmbuf_pool_private {
            mbuf_data_room_size: config.data_room,
            mbuf_priv_size: 0,
            flags: 0,
        };
        // SAFETY: no precondition; a static string owned by DPDK.
        let ops = unsafe { dpdk_sys::rte_mbuf_best_mempool_ops() };
        // SAFETY: a live empty pool and a valid C string.
        let rc = unsafe {
            dpdk_sys::rte_mempool_set_ops_byname(ptr.as_ptr(), ops, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(fail("rte_mempool_set_ops_byname", rc));
        }
        // SAFETY: a live empty pool created with the private area of a
        // pktmbuf pool; `private` is read during the call only.
        unsafe {
            dpdk_sys::rte_pktmbuf_pool_init(
                ptr.as_ptr(),
                (&mut private as *mut dpdk_sys::rte_pktmbuf_pool_private).cast(),
            )
        };
        // SAFETY: the mapping is ours, long enough for `config.size`
        // packed objects, and outlives the pool (it is unmapped after
        // rte_mempool_free, see `MempoolInner`). Its IOVA is its address
        // (IOVA-as-VA mode, checked by the caller), and it is one
        // virtually contiguous range.
        let n = unsafe {
            dpdk_sys::rte_mempool_populate_iova(
                ptr.as_ptr(),
                mapping.addr.as_ptr().cast(),
                mapping.addr.as_ptr() as u64,
                mapping.len,
                None,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(fail("rte_mempool_populate_iova", n));
        }
        if n as u32 != config.size {
            return Err(fail("rte_mempool_populate_iova", -12));
        }
        // SAFETY: a fully populated pktmbuf pool; rte_pktmbuf_init takes
        // no argument.
        unsafe {
            dpdk_sys::rte_mempool_obj_iter(
                ptr.as_ptr(),
                Some(dpdk_sys::rte_pktmbuf_init),
                std::ptr::null_mut(),
            )
        };
        Ok(Mempool {
            inner: Arc::new(MempoolInner {
                ptr,
                size: config.size,
                mapping: Some(mapping),
            }),
        })
    }

    /// Number of mbufs in the pool (free or not).
    pub fn size(&self) -> u32 {
        self.inner.size
    }

    /// Number of free mbufs, including those in per-lcore caches.
    pub fn available(&self) -> u32 {
        // SAFETY: live pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.inner.ptr.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.inner.ptr.as_ptr()
    }
}

fn libc_einval() -> i32 {
    22
}
