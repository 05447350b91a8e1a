//! ESP packets (RFC 4303 §2): the SPI and sequence number header, the
//! opaque payload after it, and the trailer found after decryption.
//!
//! ```text
//! |               Security Parameters Index (SPI)                 |
//! |                      Sequence Number                          |
//! |                    Payload Data* (variable)                   |
//! |               |     Padding (0-255 bytes)                     |
//! |                               |  Pad Length   | Next Header   |
//! |         Integrity Check Value-ICV   (variable)                |
//! ```
//!
//! The view only separates the 8-byte header from the rest (IV, ciphertext
//! and ICV, whose sizes depend on the SA's transform). The trailer helpers
//! work on the decrypted plaintext.

use super::{IpProtocol, WireError};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// A view of an ESP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Length of the SPI and sequence number header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> EspPacket<T> {
        EspPacket { buffer }
    }

    /// Wraps a buffer holding at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<EspPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 8-byte header is present.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Security Parameters Index. Zero is reserved and never sent on the wire
    /// (RFC 4303 §2.1).
    pub fn spi(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Sequence number: the low 32 bits when ESN is in use (RFC 4303 §2.2.1).
    pub fn sequence_number(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// The 8-byte header (the AAD for AEAD transforms without ESN, RFC 4106
    /// §5).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..Self::HEADER_LEN]
    }

    /// Everything after the header: IV, ciphertext and ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    /// Sets the (low 32 bits of the) sequence number.
    pub fn set_sequence_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The ESP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspRepr {
    /// Security Parameters Index.
    pub spi: u32,
    /// Sequence number (low 32 bits).
    pub sequence_number: u32,
}

impl EspRepr {
    /// Reads the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &EspPacket<T>) -> Result<EspRepr, WireError> {
        packet.check_len()?;
        Ok(EspRepr {
            spi: packet.spi(),
            sequence_number: packet.sequence_number(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn buffer_len(&self) -> usize {
        EspPacket::<&[u8]>::HEADER_LEN
    }

    /// Writes the header into the front of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut EspPacket<T>,
    ) -> Result<(), WireError> {
        packet.check_len()?;
        packet.set_spi(self.spi);
        packet.set_sequence_number(self.sequence_number);
        Ok(())
    }
}

/// The decoded ESP trailer (RFC 4303 §2.4, §2.5, §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspTrailer {
    /// Length of the inner payload (plaintext minus padding and the 2 bytes).
    pub payload_len: usize,
    /// The Pad Length field.
    pub pad_len: u8,
    /// Next Header: `IPV4`/`IPV6` in tunnel mode, the transport protocol in
    /// transport mode, or `IPV6_NO_NXT` (59) for a dummy packet (§2.6).
    pub next_header: IpProtocol,
}

/// Length of the fixed part of the trailer: Pad Length and Next Header.
pub const TRAILER_LEN: usize = 2;

impl EspTrailer {
    /// Decodes the trailer at the end of decrypted `plaintext`
    /// (`payload | padding | pad_len | next_header`).
    ///
    /// Fails with `Truncated` if `plaintext` is shorter than 2 bytes and with
    /// `BadPadding` if the pad length does not fit. With `check_padding`, the
    /// padding bytes must be the default 1, 2, 3, ... (RFC 4303 §2.4: "the
    /// receiver SHOULD inspect the Padding field" when the default was used).
    pub fn parse(plaintext: &[u8], check_padding: bool) -> Result<EspTrailer, WireError> {
        let n = plaintext.len();
        let tail = plaintext
            .get(n.wrapping_sub(TRAILER_LEN)..)
            .filter(|t| t.len() == TRAILER_LEN);
        let tail = tail.ok_or(WireError::Truncated)?;
        let (pad_len, next_header) = (tail[0], IpProtocol(tail[1]));
        let payload_len = (n - TRAILER_LEN)
            .checked_sub(usize::from(pad_len))
            .ok_or(WireError::BadPadding)?;
        if check_padding {
            let padding = &plaintext[payload_len..n - TRAILER_LEN];
            // Default padding is 1, 2, 3, ...: byte i holds i + 1 (pad_len ≤
            // 255). AEAD padding is 0 to 3 bytes: a plain loop, inlined; a
            // zip over a `RangeInclusive` (the first version) and a slice
            // comparison (a call to memcmp) both showed in the
            // decapsulation profile.
            if padding
                .iter()
                .enumerate()
                .any(|(i, &b)| usize::from(b) != i + 1)
            {
                return Err(WireError::BadPadding);
            }
        }
        Ok(EspTrailer {
            payload_len,
            pad_len,
            next_header,
        })
    }

    /// Writes default padding (1, 2, 3, ...), the pad length and the next
    /// header into `out`, which must be exactly `pad_len + 2` bytes long
    /// (`BadLength` otherwise, including when that would exceed 257).
    pub fn emit(out: &mut [u8], next_header: IpProtocol) -> Result<(), WireError> {
        let pad = out
            .len()
            .checked_sub(TRAILER_LEN)
            .ok_or(WireError::BadLength)?;
        let pad_len = u8::try_from(pad).map_err(|_| WireError::BadLength)?;
        for (b, v) in out[..pad].iter_mut().zip(1u8..=255) {
            *b = v;
        }
        out[pad] = pad_len;
        out[pad + 1] = next_header.0;
        Ok(())
    }
}

/// The pad length for `payload_len` bytes of inner payload and a cipher
/// block size (RFC 4303 §2.4): payload + padding + 2 must be a multiple of
/// the block size and of 4 ("the Padding field is used to ensure that the
/// resulting ciphertext terminates on a 4-byte boundary"). Stream and AEAD
/// ciphers pass a block size of 1 (alignment 4).
///
/// Block sizes that are not powers of two are handled by rounding the
/// alignment up to a multiple of 4; the result is always below 256.
pub const fn pad_len(payload_len: usize, block_size: u8) -> u8 {
    // Alignment: lcm(4, block size), which for the usual powers of two is
    // max(4, block size).
    let b = if block_size == 0 {
        1
    } else {
        block_size as usize
    };
    // gcd(b, 4) from the number of trailing zero bits, capped at two.
    let gcd = 1
        << if b.trailing_zeros() > 2 {
            2
        } else {
            b.trailing_zeros()
        };
    let align = b * 4 / gcd;
    // Reduce first so that no input can overflow.
    let rem = (payload_len % align + TRAILER_LEN) % align;
    let pad = if rem == 0 { 0 } else { align - rem };
    // For align > 256 (odd block sizes over 64) fall back to the 4-byte rule,
    // which the pad length field can always express.
    if pad > 255 {
        ((4 - (payload_len % 4 + TRAILER_LEN) % 4) % 4) as u8
    } else {
        pad as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_fields() {
        let bytes = hex::decode("0000123400000007aabbccddeeff").unwrap();
        let p = EspPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.spi(), 0x1234);
        assert_eq!(p.sequence_number(), 7);
        assert_eq!(p.header(), &bytes[..8]);
        assert_eq!(p.payload(), &bytes[8..]);
        assert_eq!(
            EspRepr::parse(&p),
            Ok(EspRepr {
                spi: 0x1234,
                sequence_number: 7
            })
        );
        for len in 0..8 {
            assert_eq!(
                EspPacket::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        assert!(EspPacket::new_checked(&bytes[..8])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn trailer_known() {
        // Tunnel-mode IPv4 inner packet of 5 bytes, 4 bytes of default
        // padding, pad length 4, next header 4 (IPv4): total 11 — as an
        // example only, alignment is the encryptor's business.
        let pt = [0x45, 1, 2, 3, 4, 1, 2, 3, 4, 4, 4];
        let t = EspTrailer::parse(&pt, true).unwrap();
        assert_eq!(
            t,
            EspTrailer {
                payload_len: 5,
                pad_len: 4,
                next_header: IpProtocol::IPV4
            }
        );
        // Non-default padding is rejected only when asked.
        let bad = [0x45, 1, 2, 3, 4, 1, 2, 9, 4, 4, 4];
        assert_eq!(EspTrailer::parse(&bad, true), Err(WireError::BadPadding));
        assert!(EspTrailer::parse(&bad, false).is_ok());
        // Pad length larger than the plaintext.
        assert_eq!(
            EspTrailer::parse(&[1, 2, 3, 4, 59], false),
            Err(WireError::BadPadding)
        );
        assert_eq!(EspTrailer::parse(&[0, 59], true).unwrap().payload_len, 0);
        assert_eq!(EspTrailer::parse(&[59], true), Err(WireError::Truncated));
        assert_eq!(EspTrailer::parse(&[], true), Err(WireError::Truncated));
    }

    #[test]
    fn pad_lengths() {
        // AES-CBC (block 16): 100 + 2 -> 112, pad 10.
        assert_eq!(pad_len(100, 16), 10);
        assert_eq!(pad_len(14, 16), 0);
        // AES-GCM (block 1, 4-byte alignment).
        assert_eq!(pad_len(100, 1), 2);
        assert_eq!(pad_len(102, 1), 0);
        assert_eq!(pad_len(0, 0), 2);
        // 3DES (block 8).
        assert_eq!(pad_len(1, 8), 5);
        // Odd block sizes align to a multiple of 4 and of the block size.
        assert_eq!(pad_len(10, 3), 0);
        assert_eq!(pad_len(11, 3), 11);
        assert_eq!(pad_len(usize::MAX, 16), 15);
    }

    #[test]
    fn longest_padding() {
        // 255 bytes of default padding: the largest the field can express.
        let mut pt = vec![0x60u8; 3 + 255 + 2];
        EspTrailer::emit(&mut pt[3..], IpProtocol::IPV6).unwrap();
        assert_eq!(pt[3 + 254], 255);
        let t = EspTrailer::parse(&pt, true).unwrap();
        assert_eq!((t.payload_len, t.pad_len), (3, 255));
    }

    #[test]
    fn trailer_emit() {
        let mut out = [0u8; 12];
        EspTrailer::emit(&mut out, IpProtocol::IPV6).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 41]);
        assert_eq!(
            EspTrailer::emit(&mut [0u8; 1], IpProtocol::IPV6),
            Err(WireError::BadLength)
        );
        assert_eq!(
            EspTrailer::emit(&mut [0u8; 258], IpProtocol::IPV6),
            Err(WireError::BadLength)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), check in any::<bool>()) {
            if let Ok(p) = EspPacket::new_checked(&bytes[..]) {
                let _ = (p.spi(), p.sequence_number(), p.header(), p.payload(), EspRepr::parse(&p).unwrap());
            }
            if let Ok(t) = EspTrailer::parse(&bytes, check) {
                prop_assert_eq!(t.payload_len + usize::from(t.pad_len) + 2, bytes.len());
            }
        }

        #[test]
        fn repr_roundtrip(spi in any::<u32>(), seq in any::<u32>()) {
            let repr = EspRepr { spi, sequence_number: seq };
            let mut buf = [0u8; 8];
            repr.emit(&mut EspPacket::new_unchecked(&mut buf[..])).unwrap();
            prop_assert_eq!(EspRepr::parse(&EspPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn pad_then_trailer_roundtrip(payload_len in 0usize..2000, block in any::<u8>(), nh in any::<u8>()) {
            let pad = pad_len(payload_len, block);
            let total = payload_len + usize::from(pad) + TRAILER_LEN;
            prop_assert_eq!(total % 4, 0);
            if block.is_power_of_two() {
                prop_assert_eq!(total % usize::from(block), 0);
            }
            let mut pt = vec![0xeeu8; total];
            EspTrailer::emit(&mut pt[payload_len..], IpProtocol(nh)).unwrap();
            prop_assert_eq!(
                EspTrailer::parse(&pt, true),
                Ok(EspTrailer { payload_len, pad_len: pad, next_header: IpProtocol(nh) })
            );
        }
    }
}
