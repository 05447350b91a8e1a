//! IPv4 headers (RFC 791 §3.1), with DSCP/ECN per RFC 2474 §3 and RFC 3168
//! §5, and incremental checksum updates per RFC 1624.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options                    |    Padding    |
//! ```

use core::net::Ipv4Addr;

use super::ip::{checksum, IpProtocol};
use super::WireError;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps a buffer without any check (for emitting into fresh buffers).
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: a 20-byte header is present (`Truncated`), version
    /// is 4 (`BadVersion`), IHL ≥ 5 (`BadHeaderLen`), the header with options
    /// fits (`Truncated`), total length ≥ header length (`BadLength`) and
    /// total length fits in the buffer (`Truncated`).
    ///
    /// The buffer may be longer than the total length (Ethernet padding);
    /// [`Self::payload`] stops at the total length.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < Self::MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(self.header_len());
        if header_len < Self::MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::BadLength);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Version field (4 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services Code Point (6 bits, RFC 2474 §3).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (2 bits, RFC 3168 §5).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length of header plus payload.
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// The whole header including options.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.header_len())]
    }

    /// The options bytes (empty when IHL = 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::MIN_HEADER_LEN..usize::from(self.header_len())]
    }

    /// The payload, up to the total length (excludes link-layer padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }

    /// Computes the header checksum (with the checksum field taken as zero).
    pub fn compute_checksum(&self) -> u16 {
        let h = self.header();
        !checksum::combine(&[
            checksum::data(&h[..field::CHECKSUM.start]),
            checksum::data(&h[field::CHECKSUM.end..]),
        ])
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP (masked to 6 bits), keeping ECN.
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    /// Sets the ECN bits (masked to 2 bits), keeping DSCP.
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH, len)
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        self.write_u16(field::IDENT, ident)
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.read_u16(field::FLG_OFF) & !FLAG_DF;
        self.write_u16(field::FLG_OFF, v | if value { FLAG_DF } else { 0 });
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.read_u16(field::FLG_OFF) & !FLAG_MF;
        self.write_u16(field::FLG_OFF, v | if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8; the low
    /// three bits are dropped).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.read_u16(field::FLG_OFF) & !OFFSET_MASK;
        self.write_u16(field::FLG_OFF, v | (offset >> 3));
    }

    /// Sets the time to live (checksum not updated).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.0;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c);
    }

    /// The options bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[Self::MIN_HEADER_LEN..end]
    }

    /// The payload up to the total length, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (
            usize::from(self.header_len()),
            usize::from(self.total_len()),
        );
        &mut self.buffer.as_mut()[start..end]
    }

    /// Decrements the TTL and updates the checksum incrementally (RFC 1624).
    ///
    /// Returns the new TTL, or `None` (and changes nothing) if the TTL is
    /// already zero. A forwarder drops and answers with ICMP Time Exceeded
    /// when this returns `Some(0)` or `None` (RFC 1812 §5.3.1).
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl().checked_sub(1)?;
        self.rewrite_ttl(ttl);
        Some(ttl)
    }

    /// Sets the TTL and updates the checksum incrementally (RFC 1624).
    pub fn rewrite_ttl(&mut self, ttl: u8) {
        let old = u16::from_be_bytes([self.ttl(), self.protocol().0]);
        self.set_ttl(ttl);
        let new = u16::from_be_bytes([ttl, self.protocol().0]);
        let c = checksum::update(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Sets the DSCP and ECN bits and updates the checksum incrementally
    /// (RFC 1624); for DSCP rewriting and ECN marking on decapsulation.
    pub fn rewrite_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        let first = self.buffer.as_ref()[field::VER_IHL];
        let old = u16::from_be_bytes([first, self.buffer.as_ref()[field::DSCP_ECN]]);
        self.set_dscp(dscp);
        self.set_ecn(ecn);
        let new = u16::from_be_bytes([first, self.buffer.as_ref()[field::DSCP_ECN]]);
        let c = checksum::update(self.checksum(), old, new);
        self.set_checksum(c);
    }
}

/// The fields of an IPv4 header, without options.
///
/// `parse` accepts headers with options and skips them (their length is not
/// part of `payload_len`); `emit` always writes a 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length (total length minus header length).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses a packet, verifying lengths and the header checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - u16::from(packet.header_len()),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn buffer_len(&self) -> usize {
        Ipv4Packet::<&[u8]>::MIN_HEADER_LEN
    }

    /// Writes a 20-byte header with checksum into the front of `packet`.
    ///
    /// Fails with `Truncated` if the buffer is shorter than 20 bytes or
    /// `BadLength` if the payload length would overflow the total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let total_len = self
            .payload_len
            .checked_add(20)
            .ok_or(WireError::BadLength)?;
        packet.buffer.as_mut()[field::DSCP_ECN] = 0;
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.write_u16(field::FLG_OFF, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

/// An IPv4 header without options (IHL 5), read at fixed offsets: the hot
/// path's view of the common case, with no per-field bounds checks.
/// [`Ipv4Packet`] handles every other header.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Fixed<'a> {
    h: &'a [u8; 20],
    total: usize,
}

impl<'a> Ipv4Fixed<'a> {
    /// The header of `data` if it is IPv4 with IHL 5 and a total length
    /// between 20 and `data.len()`; None otherwise (use [`Ipv4Packet`]).
    #[inline]
    pub fn parse(data: &'a [u8]) -> Option<Ipv4Fixed<'a>> {
        let h: &[u8; 20] = data.get(..20)?.try_into().ok()?;
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        (h[0] == 0x45 && (20..=data.len()).contains(&total)).then_some(Ipv4Fixed { h, total })
    }

    /// Total length (header and payload).
    #[inline]
    pub fn total_len(&self) -> usize {
        self.total
    }

    /// The header checksum verifies.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        checksum::header20(self.h) == 0xffff
    }

    /// MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.h[6], self.h[7]]) & 0x3fff != 0
    }

    /// Offset zero: the first (or only) fragment, which carries the ports.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        u16::from_be_bytes([self.h[6], self.h[7]]) & 0x1fff == 0
    }

    /// DF set.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.h[6] & 0x40 != 0
    }

    /// DSCP and ECN as one byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.h[1]
    }

    /// Protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.h[9])
    }

    /// Source address as a host integer.
    #[inline]
    pub fn src_u32(&self) -> u32 {
        u32::from_be_bytes([self.h[12], self.h[13], self.h[14], self.h[15]])
    }

    /// Destination address as a host integer.
    #[inline]
    pub fn dst_u32(&self) -> u32 {
        u32::from_be_bytes([self.h[16], self.h[17], self.h[18], self.h[19]])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// UDP/IPv4 192.168.0.1 -> 192.168.0.199, DF, TTL 64, total length 0x73;
    /// header checksum 0xb861 (checked with tshark).
    const HEADER: &str = "45000073000040004011b861c0a80001c0a800c7";

    fn packet_bytes() -> Vec<u8> {
        let mut b = hex::decode(HEADER).unwrap();
        b.resize(0x73, 0xaa);
        b
    }

    #[test]
    fn parse_known_header() {
        let bytes = packet_bytes();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.compute_checksum(), 0xb861);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 0x73 - 20);
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 0x73 - 20);
        let mut out = [0u8; 20];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(hex::encode(out), HEADER);
    }

    #[test]
    fn options_and_padding() {
        // IHL 6 with a Router Alert option (RFC 2113), 4 bytes of payload,
        // then 2 bytes of Ethernet padding beyond the total length.
        let mut p = Ipv4Packet::new_unchecked(vec![0u8; 30]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_total_len(28);
        p.set_ttl(1);
        p.set_protocol(IpProtocol(2));
        p.options_mut().copy_from_slice(&[0x94, 0x04, 0, 0]);
        p.payload_mut().copy_from_slice(b"igmp");
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(p.into_inner()).unwrap();
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload(), b"igmp");
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 4);
    }

    #[test]
    fn fragments() {
        let mut bytes = packet_bytes();
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        assert!(p.is_fragment());
        p.set_more_frags(false);
        p.set_frag_offset(1480);
        assert!(p.is_fragment() && !p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
    }

    #[test]
    fn length_errors() {
        let bytes = packet_bytes();
        for len in 0..bytes.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut b = bytes.clone();
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::BadVersion));
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::BadHeaderLen)
        );
        b[0] = 0x4f; // 60-byte header, fits in the buffer but not in total_len
        b[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::BadLength));
        assert_eq!(Ipv4Packet::new_checked(&b[..50]), Err(WireError::Truncated));
    }

    #[test]
    fn bad_checksum() {
        let mut bytes = packet_bytes();
        bytes[11] ^= 1;
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::BadChecksum));
    }

    #[test]
    fn ttl_and_dscp_rewrite() {
        let mut bytes = packet_bytes();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.decrement_ttl(), Some(63));
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), p.compute_checksum());
        p.rewrite_dscp_ecn(46, 3);
        assert_eq!((p.dscp(), p.ecn()), (46, 3));
        assert!(p.verify_checksum());
        p.rewrite_ttl(0);
        assert_eq!(p.decrement_ttl(), None);
        assert!(p.verify_checksum());
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0u16..2000,
            any::<u8>(),
            (0u8..64, 0u8..4),
            any::<u16>(),
            (any::<bool>(), any::<bool>(), 0u16..0x2000),
        )
            .prop_map(
                |(s, d, proto, payload_len, ttl, (dscp, ecn), ident, (df, mf, off))| Ipv4Repr {
                    src_addr: s.into(),
                    dst_addr: d.into(),
                    protocol: IpProtocol(proto),
                    payload_len,
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off << 3,
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len(), p.ident());
                let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment(), p.ttl());
                let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr(), p.options(), p.payload());
                let _ = (p.compute_checksum(), p.verify_checksum(), Ipv4Repr::parse(&p));
            }
        }

        #[test]
        fn arbitrary_v4_headers_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 20..80)) {
            bytes[0] = 0x40 | (bytes[0] & 0x0f);
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut bytes[..]) {
                let _ = (p.options(), p.payload(), p.verify_checksum());
                let _ = p.decrement_ttl();
                let _ = p.payload_mut();
            }
        }

        #[test]
        fn repr_roundtrip(repr in arb_repr()) {
            let mut buf = vec![0u8; 20 + usize::from(repr.payload_len)];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..])).unwrap();
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
        }

        #[test]
        fn incremental_matches_full(repr in arb_repr(), ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4) {
            let mut buf = vec![0u8; 20 + usize::from(repr.payload_len)];
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p).unwrap();
            p.rewrite_ttl(ttl);
            p.rewrite_dscp_ecn(dscp, ecn);
            prop_assert!(p.verify_checksum());
        }
    }
}
