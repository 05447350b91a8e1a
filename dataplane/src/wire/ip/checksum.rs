//! The Internet checksum (RFC 1071) and incremental updates (RFC 1624).
//!
//! All sums here are one's complement sums in host integers holding the
//! big-endian (network order) 16-bit words; [`data`] returns the folded,
//! *uncomplemented* sum, and callers complement once at the end (`!sum`).
//! RFC 1071 §2(B): the sum is independent of byte order up to a byte swap, and
//! §2(C): it can be computed over wider words with end-around carry, which
//! [`data`] does with 64-bit words.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Folds a 64-bit one's complement accumulator to 16 bits.
#[inline]
pub const fn fold(mut sum: u64) -> u16 {
    // Each step adds the high half to the low half (end-around carry).
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds two 64-bit words with end-around carry.
#[inline]
fn add64(acc: u64, word: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(word);
    s + u64::from(carry)
}

/// The folded one's complement sum of `bytes` (not complemented).
///
/// An odd trailing byte is padded with a zero byte on the right (RFC 1071
/// §4.1). Works on 16 bytes per step with two 64-bit accumulators.
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc0: u64 = 0;
    let mut acc1: u64 = 0;
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        let (a, b) = c.split_at(8);
        acc0 = add64(acc0, u64::from_be_bytes(a.try_into().unwrap_or([0; 8])));
        acc1 = add64(acc1, u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
    }
    let mut acc = add64(acc0, acc1);
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        acc = add64(acc, u64::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        acc = add64(acc, u64::from(*last) << 8);
    }
    fold(acc)
}

/// The folded sum of a 20-byte IPv4 header (no options): five 32-bit
/// words, no loop. The hot path verifies and builds such headers on every
/// ESP packet; [`data`] gives the same result for any length.
#[inline]
pub fn header20(h: &[u8; 20]) -> u16 {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    fold(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// Combines partial (uncomplemented) sums into one.
///
/// Each partial sum must cover an even number of bytes, except the last.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, len: u16) -> u16 {
    let s = u64::from(u32::from(src));
    let d = u64::from(u32::from(dst));
    fold(s + d + u64::from(protocol.0) + u64::from(len))
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, len: u32) -> u16 {
    let s = u128::from(src);
    let d = u128::from(dst);
    let acc = [s >> 64, s, d >> 64, d]
        .iter()
        .fold(0u64, |acc, &w| add64(acc, w as u64));
    let acc = add64(acc, u64::from(next_header.0));
    fold(add64(acc, u64::from(len)))
}

/// The checksum to store for a transport segment over IPv4: the complement
/// of pseudo-header plus segment, with the checksum field in `segment`
/// treated as whatever it currently holds (zero it first).
pub fn transport_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, segment: &[u8]) -> u16 {
    // Callers have checked that the segment fits in the IPv4 length field.
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    !combine(&[pseudo_header_v4(src, dst, protocol, len), data(segment)])
}

/// As [`transport_v4`], with the IPv6 pseudo-header.
pub fn transport_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    !combine(&[pseudo_header_v6(src, dst, next_header, len), data(segment)])
}

/// Incrementally updates a stored checksum when one 16-bit word changes from
/// `old` to `new` (RFC 1624 §3, eqn. 3: `HC' = ~(~HC + ~m + m')`).
#[inline]
pub const fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !fold((!checksum) as u64 + (!old) as u64 + new as u64)
}

/// As [`update`] for a 16-bit value that starts at byte `offset` of the
/// checksummed data, which may be odd: then the value straddles two words and
/// contributes byte-swapped (RFC 1071 §2(B)).
#[inline]
pub const fn update_at(checksum: u16, offset: usize, old: u16, new: u16) -> u16 {
    if offset & 1 == 0 {
        update(checksum, old, new)
    } else {
        update(checksum, old.swap_bytes(), new.swap_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn header20_equals_data(h in proptest::array::uniform20(proptest::prelude::any::<u8>())) {
            proptest::prop_assert_eq!(header20(&h), data(&h));
        }
    }
    use proptest::prelude::*;

    /// A plain 16-bit-at-a-time reference implementation.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u32::from);
            sum += hi | lo;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn ipv4_header_known_answer() {
        // Header with checksum 0xb861 (a widely used worked example).
        let hdr = hex::decode("450000730000400040110000c0a80001c0a800c7").unwrap();
        assert_eq!(!data(&hdr), 0xb861);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0xff; 33]), reference(&[0xff; 33]));
    }

    #[test]
    fn update_matches_recompute() {
        let mut hdr = hex::decode("45000073000040004011b861c0a80001c0a800c7").unwrap();
        // Decrement TTL 0x40 -> 0x3f: word 8..10 goes 0x4011 -> 0x3f11.
        let new = update(0xb861, 0x4011, 0x3f11);
        hdr[8] = 0x3f;
        hdr[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(new, !data(&hdr));
    }

    proptest! {
        #[test]
        fn data_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data(&bytes), reference(&bytes));
        }

        #[test]
        fn combine_of_split(bytes in proptest::collection::vec(any::<u8>(), 0..200), at in 0usize..100) {
            let at = (at.min(bytes.len())) & !1;
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(combine(&[data(a), data(b)]), reference(&bytes));
        }

        #[test]
        fn update_at_any_offset(mut bytes in proptest::collection::vec(any::<u8>(), 4..64), off in 0usize..60, new in any::<u16>()) {
            let off = off.min(bytes.len() - 2);
            let ck = !data(&bytes);
            let old = u16::from_be_bytes([bytes[off], bytes[off + 1]]);
            bytes[off..off + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update_at(ck, off, old, new);
            // Compare as one's complement values: 0x0000 and 0xffff are both zero.
            let full = !data(&bytes);
            prop_assert!(updated == full || (updated | full) == 0xffff && (updated & full) == 0);
        }
    }
}
