//! The packet buffer the ESP engine and the workers operate on.
//!
//! [`PacketBuf`] is what an mbuf offers (data with headroom in front and
//! tailroom behind); [`HeapBuf`] offers the same over a `Vec<u8>` so that
//! the engine is tested, fuzzed and benchmarked without DPDK, and
//! `dpdk::Mbuf` (crate `espresso-dpdk`) implements it for the real data path.

/// Why a buffer operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// Not enough headroom for a prepend.
    #[error("not enough headroom")]
    NoHeadroom,
    /// Not enough tailroom for an append.
    #[error("not enough tailroom")]
    NoTailroom,
    /// Removing more bytes than the data holds.
    #[error("buffer too short")]
    TooShort,
}

/// A contiguous packet with room to grow at both ends.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes in front of the data.
    fn headroom(&self) -> usize;
    /// Free bytes after the data.
    fn tailroom(&self) -> usize;
    /// Grows the data by `n` bytes in front; returns them.
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError>;
    /// Grows the data by `n` bytes at the end; returns them.
    fn append(&mut self, n: usize) -> Result<&mut [u8], BufError>;
    /// Removes `n` bytes from the front.
    fn adj(&mut self, n: usize) -> Result<(), BufError>;
    /// Removes `n` bytes from the end.
    fn trim(&mut self, n: usize) -> Result<(), BufError>;

    /// Length of the data.
    fn len(&self) -> usize {
        self.data().len()
    }

    /// True when there is no data.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap-allocated [`PacketBuf`], laid out like an mbuf.
#[derive(Clone, PartialEq, Eq)]
pub struct HeapBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for HeapBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapBuf")
            .field("len", &self.len())
            .field("headroom", &self.start)
            .field("tailroom", &(self.storage.len() - self.end))
            .finish()
    }
}

impl HeapBuf {
    /// Default headroom, as DPDK's `RTE_PKTMBUF_HEADROOM`.
    pub const HEADROOM: usize = 128;

    /// A copy of `data` with `headroom` bytes in front and `tailroom` behind.
    pub fn new(headroom: usize, data: &[u8], tailroom: usize) -> HeapBuf {
        let mut storage = vec![0u8; headroom + data.len() + tailroom];
        storage[headroom..headroom + data.len()].copy_from_slice(data);
        HeapBuf {
            storage,
            start: headroom,
            end: headroom + data.len(),
        }
    }

    /// A copy of `data` with mbuf-like room (128 in front, 2048 total).
    pub fn from_slice(data: &[u8]) -> HeapBuf {
        let tail = 2048usize.saturating_sub(data.len()).max(256);
        HeapBuf::new(Self::HEADROOM, data, tail)
    }
}

impl PacketBuf for HeapBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }

    fn headroom(&self) -> usize {
        self.start
    }

    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }

    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.start {
            return Err(BufError::NoHeadroom);
        }
        self.start -= n;
        Ok(&mut self.storage[self.start..self.start + n])
    }

    fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.tailroom() {
            return Err(BufError::NoTailroom);
        }
        let old = self.end;
        self.end += n;
        Ok(&mut self.storage[old..self.end])
    }

    fn adj(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort);
        }
        self.start += n;
        Ok(())
    }

    fn trim(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort);
        }
        self.end -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buf_behaves_like_an_mbuf() {
        let mut b = HeapBuf::new(4, b"abc", 2);
        assert_eq!(b.prepend(5), Err(BufError::NoHeadroom));
        b.prepend(2).unwrap().copy_from_slice(b"xy");
        assert_eq!(b.data(), b"xyabc");
        assert_eq!(b.append(3), Err(BufError::NoTailroom));
        b.append(2).unwrap().copy_from_slice(b"zz");
        assert_eq!(b.data(), b"xyabczz");
        assert_eq!((b.headroom(), b.tailroom()), (2, 0));
        assert_eq!(b.adj(8), Err(BufError::TooShort));
        assert_eq!(b.trim(8), Err(BufError::TooShort));
        b.adj(2).unwrap();
        b.trim(2).unwrap();
        assert_eq!(b.data(), b"abc");
        b.data_mut()[0] = b'A';
        assert_eq!(b.data(), b"Abc");
        assert_eq!(b.len(), 3);
    }
}
