//! One owned packet buffer (`struct rte_mbuf`).

use std::ptr::NonNull;

use super::Mempool;

/// Why an mbuf operation was refused. Never a panic: asking for more
/// headroom, tailroom or data than exists is an ordinary error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MbufError {
    /// The pool had no free mbuf.
    #[error("mempool is empty")]
    PoolEmpty,
    /// `prepend` wanted more headroom than the mbuf has.
    #[error("need {needed} bytes of headroom, have {available}")]
    NoHeadroom {
        /// Bytes asked for.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `append` wanted more tailroom than the mbuf has.
    #[error("need {needed} bytes of tailroom, have {available}")]
    NoTailroom {
        /// Bytes asked for.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// `adj` or `trim` wanted to remove more bytes than the data holds.
    #[error("cannot remove {needed} bytes from {available}")]
    TooShort {
        /// Bytes asked for.
        needed: usize,
        /// Bytes in the data.
        available: usize,
    },
}

/// An owned packet buffer. Exactly one owner: not `Clone`, freed on drop,
/// handed to the NIC by `TxQueue::tx_burst`.
///
/// `repr(transparent)` over the non-null pointer, so a `[Mbuf]` has the
/// layout of the `struct rte_mbuf *[]` that DPDK's burst calls take.
#[repr(transparent)]
pub struct Mbuf {
    ptr: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an mbuf has a single owner (this value); moving it to another
// thread moves that ownership. Freeing from any thread is allowed by DPDK.
unsafe impl Send for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chain); it is freed exactly once.
        unsafe { dpdk_sys::espresso_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

impl Mbuf {
    /// Takes one mbuf from `pool`, empty, with the default headroom.
    pub fn alloc(pool: &Mempool) -> Result<Mbuf, MbufError> {
        // SAFETY: `pool` is a live packet-mbuf pool.
        let ptr = unsafe { dpdk_sys::espresso_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(ptr)
            .map(|ptr| Mbuf { ptr })
            .ok_or(MbufError::PoolEmpty)
    }

    /// Takes `count` mbufs at once, all or none, appending them to `out`.
    pub fn alloc_bulk(pool: &Mempool, count: usize, out: &mut Vec<Mbuf>) -> Result<(), MbufError> {
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); super::BURST_SIZE];
        let mut left = count;
        let start = out.len();
        while left > 0 {
            let n = left.min(raw.len());
            // SAFETY: `raw` has room for `n` pointers; the pool is live.
            let rc = unsafe {
                dpdk_sys::espresso_pktmbuf_alloc_bulk(pool.as_ptr(), raw.as_mut_ptr(), n as u32)
            };
            if rc != 0 {
                out.truncate(start); // drops (frees) the ones taken so far
                return Err(MbufError::PoolEmpty);
            }
            for p in &raw[..n] {
                // SAFETY: on success DPDK filled `n` valid, owned mbufs.
                out.push(unsafe { Mbuf::from_raw(*p) });
            }
            left -= n;
        }
        Ok(())
    }

    /// Allocates an mbuf holding a copy of `data`.
    pub fn from_slice(pool: &Mempool, data: &[u8]) -> Result<Mbuf, MbufError> {
        let mut m = Mbuf::alloc(pool)?;
        m.append(data.len())?.copy_from_slice(data);
        Ok(m)
    }

    /// Wraps a raw mbuf pointer received from DPDK.
    ///
    /// # Safety
    /// `ptr` must be a valid mbuf that nobody else owns or will free.
    pub(crate) unsafe fn from_raw(ptr: *mut dpdk_sys::rte_mbuf) -> Mbuf {
        debug_assert!(!ptr.is_null());
        Mbuf {
            // SAFETY: the caller guarantees a valid (non-null) mbuf.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
        }
    }

    /// Gives up ownership, returning the raw pointer (for TX).
    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Bytes of data in the first segment.
    ///
    /// The plain fields of `struct rte_mbuf` (data_len, data_off, buf_addr)
    /// are read directly rather than through the C shim: these accessors
    /// run many times per packet, and a call across the FFI boundary cannot
    /// be inlined. bindgen lays the struct out from the same headers and
    /// cflags the C side uses.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: `ptr` is a valid mbuf we own; reading a plain field.
        usize::from(unsafe { (*self.ptr.as_ptr()).data_len })
    }

    /// Start of the first segment's data (DPDK's `rte_pktmbuf_mtod`).
    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: valid owned mbuf; plain field reads.
        let (addr, off) = unsafe {
            let m = &*self.ptr.as_ptr();
            (m.buf_addr as *mut u8, usize::from(m.data_off))
        };
        addr.wrapping_add(off)
    }

    /// True when the first segment holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of data in the whole chain.
    pub fn pkt_len(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::espresso_pktmbuf_pkt_len(self.ptr.as_ptr()) as usize }
    }

    /// True when the packet is in one segment (the data plane requires it).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        // SAFETY: valid owned mbuf; plain field read.
        unsafe { (*self.ptr.as_ptr()).nb_segs == 1 }
    }

    /// Free bytes in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        // SAFETY: valid owned mbuf; `rte_pktmbuf_headroom` is `data_off`.
        usize::from(unsafe { (*self.ptr.as_ptr()).data_off })
    }

    /// Free bytes after the data. Only a single-segment packet can grow at
    /// the end here (the data plane never builds chains), so a chain has
    /// none.
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid owned mbuf; plain field reads. For one segment this
        // is `rte_pktmbuf_tailroom`: buf_len - headroom - data_len, which
        // DPDK keeps non-negative.
        let (segs, buf, off, len) = unsafe {
            let m = &*self.ptr.as_ptr();
            (m.nb_segs, m.buf_len, m.data_off, m.data_len)
        };
        if segs != 1 {
            return 0;
        }
        usize::from(buf).saturating_sub(usize::from(off) + usize::from(len))
    }

    /// The input port the NIC recorded.
    pub fn port(&self) -> u16 {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::espresso_pktmbuf_port(self.ptr.as_ptr()) }
    }

    /// The RSS hash the NIC computed (0 when it computes none).
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::espresso_pktmbuf_rss_hash(self.ptr.as_ptr()) }
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let len = self.len();
        let p = self.data_ptr() as *const u8;
        // SAFETY: mtod points at `data_len` initialised bytes inside the
        // mbuf's buffer, which we own; the borrow of `self` keeps it alive
        // and unaliased by mutation.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// The first segment's data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        let p = self.data_ptr();
        // SAFETY: as in `data`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    /// Grows the data by `len` bytes at the front (into the headroom) and
    /// returns the new bytes (uninitialised contents: whatever was there).
    #[inline]
    pub fn prepend(&mut self, len: usize) -> Result<&mut [u8], MbufError> {
        let available = self.headroom();
        if len > available {
            return Err(MbufError::NoHeadroom {
                needed: len,
                available,
            });
        }
        // What `rte_pktmbuf_prepend` does, without the call: move the data
        // start back and grow both lengths.
        // SAFETY: we own the mbuf exclusively (`&mut self`); `len` is at
        // most the headroom (`data_off`), so the new start stays inside the
        // buffer, and the lengths cannot overflow (data_off + data_len
        // <= buf_len <= u16::MAX).
        unsafe {
            let m = &mut *self.ptr.as_ptr();
            m.data_off -= len as u16;
            m.data_len += len as u16;
            m.pkt_len += len as u32;
        }
        Ok(&mut self.data_mut()[..len])
    }

    /// Grows the data by `len` bytes at the end (into the tailroom of the
    /// last segment) and returns the new bytes.
    #[inline]
    pub fn append(&mut self, len: usize) -> Result<&mut [u8], MbufError> {
        let available = self.tailroom();
        if len > available {
            return Err(MbufError::NoTailroom {
                needed: len,
                available,
            });
        }
        let old = self.len();
        // What `rte_pktmbuf_append` does for one segment, without the call.
        // SAFETY: we own the mbuf exclusively; it is one segment (a chain
        // has no tailroom above) and `len` is at most its tailroom, so the
        // data stays inside the buffer and the lengths cannot overflow
        // (data_off + data_len <= buf_len <= u16::MAX).
        unsafe {
            let m = &mut *self.ptr.as_ptr();
            m.data_len += len as u16;
            m.pkt_len += len as u32;
        }
        Ok(&mut self.data_mut()[old..])
    }

    /// Removes `len` bytes from the front of the data.
    #[inline]
    pub fn adj(&mut self, len: usize) -> Result<(), MbufError> {
        let available = self.len();
        if len > available {
            return Err(MbufError::TooShort {
                needed: len,
                available,
            });
        }
        // What `rte_pktmbuf_adj` does, without the call.
        // SAFETY: we own the mbuf exclusively; `len` is at most the first
        // segment's data length, so the new start stays inside its data and
        // no length underflows (pkt_len >= data_len).
        unsafe {
            let m = &mut *self.ptr.as_ptr();
            m.data_off += len as u16;
            m.data_len -= len as u16;
            m.pkt_len -= len as u32;
        }
        Ok(())
    }

    /// Removes `len` bytes from the end of the data (single-segment
    /// packets only).
    #[inline]
    pub fn trim(&mut self, len: usize) -> Result<(), MbufError> {
        let available = self.len();
        if len > available || !self.is_contiguous() {
            return Err(MbufError::TooShort {
                needed: len,
                available,
            });
        }
        // What `rte_pktmbuf_trim` does for one segment, without the call.
        // SAFETY: we own the mbuf exclusively; one segment, so pkt_len ==
        // data_len >= len and neither length underflows.
        unsafe {
            let m = &mut *self.ptr.as_ptr();
            m.data_len -= len as u16;
            m.pkt_len -= len as u32;
        }
        Ok(())
    }
}

impl dataplane::buf::PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }

    #[inline]
    fn headroom(&self) -> usize {
        Mbuf::headroom(self)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        Mbuf::tailroom(self)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], dataplane::buf::BufError> {
        Mbuf::prepend(self, n).map_err(|_| dataplane::buf::BufError::NoHeadroom)
    }

    #[inline]
    fn append(&mut self, n: usize) -> Result<&mut [u8], dataplane::buf::BufError> {
        Mbuf::append(self, n).map_err(|_| dataplane::buf::BufError::NoTailroom)
    }

    #[inline]
    fn adj(&mut self, n: usize) -> Result<(), dataplane::buf::BufError> {
        Mbuf::adj(self, n).map_err(|_| dataplane::buf::BufError::TooShort)
    }

    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), dataplane::buf::BufError> {
        Mbuf::trim(self, n).map_err(|_| dataplane::buf::BufError::TooShort)
    }
}
