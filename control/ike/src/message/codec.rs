//! Byte-level reading and writing for IKEv2 messages.
//!
//! Following rustls's `msgs/codec.rs`: a [`Reader`] hands out exact-length
//! slices and the caller must call [`Reader::expect_empty`] at the end of
//! every structure, so trailing bytes are rejected rather than ignored.

use super::{DecodeError, EncodeError};

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Takes exactly `n` bytes or fails with [`DecodeError::Truncated`].
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// A sub-reader over the next `n` bytes.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        Ok(Reader::new(self.take(n)?))
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes already consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read.
    pub fn expect_empty(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// Appends big-endian fields to a `Vec<u8>`; lengths are patched afterwards.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Patches the 16-bit length field at `start + 2` of the structure that
    /// begins at `start` and ends here; fails if it does not fit.
    pub fn patch_len_u16(&mut self, field: &'static str, start: usize) -> Result<(), EncodeError> {
        let len = EncodeError::check(field, self.len() - start, u16::MAX.into())?;
        self.patch_u16(start + 2, len as u16);
        Ok(())
    }
    /// Writes a count or size as one byte; fails if it does not fit.
    pub fn len_u8(&mut self, field: &'static str, n: usize) -> Result<(), EncodeError> {
        self.u8(EncodeError::check(field, n, u8::MAX.into())? as u8);
        Ok(())
    }
    /// Writes a count or size as two bytes; fails if it does not fit.
    pub fn len_u16(&mut self, field: &'static str, n: usize) -> Result<(), EncodeError> {
        self.u16(EncodeError::check(field, n, u16::MAX.into())? as u16);
        Ok(())
    }
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Declares a code-point newtype with named constants; unknown values
/// round-trip unchanged (rustls practice).
macro_rules! codepoint {
    ($(#[$m:meta])* $name:ident($ty:ty) { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);
        #[allow(missing_docs)]
        impl $name {
            $($(#[$cm])* pub const $c: Self = Self($v);)*
            /// The registered name, if this value has one here.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some(stringify!($c)),)*
                    _ => None,
                }
            }
        }
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}
pub(crate) use codepoint;
