//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use super::{DpdkError, Eal};

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
    pub fn new(_eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
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
