//! IPv6 headers (RFC 8200 §3) and a bounded walk over extension headers
//! (RFC 8200 §4), with DSCP/ECN in the traffic class (RFC 2474, RFC 3168).
//!
//! ```text
//! |Version| Traffic Class |           Flow Label                  |
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! |                Source Address (128 bits)                      |
//! |             Destination Address (128 bits)                    |
//! ```

use core::net::Ipv6Addr;

use super::{IpProtocol, WireError};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The most extension headers [`Ipv6Packet::ext_headers`] will step over
/// before giving up with `TooManyExtHeaders`.
///
/// RFC 8200 §4.1 recommends at most one of each kind (destination options
/// twice), so a legitimate chain has at most six.
pub const MAX_EXT_HEADERS: usize = 8;

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;

    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header is present (`Truncated`), version is 6
    /// (`BadVersion`) and the payload length fits (`Truncated`).
    ///
    /// Jumbograms (payload length 0 with a Jumbo Payload option, RFC 2675)
    /// are not supported: their payload reads as empty.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion);
        }
        if Self::HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Version field (6 for a checked packet).
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic class (8 bits: DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// DSCP (upper 6 bits of the traffic class).
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// ECN (lower 2 bits of the traffic class).
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label (20 bits, RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header, extension headers
    /// included).
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Next Header of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The payload after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..Self::HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension header chain; see [`Ipv6ExtHeaders::walk`].
    ///
    /// The returned offsets are relative to the start of the packet.
    pub fn ext_headers(&self) -> Result<Ipv6ExtHeaders, WireError> {
        let mut walk = Ipv6ExtHeaders::walk(self.next_header(), self.payload())?;
        walk.upper_offset += Self::HEADER_LEN;
        Ok(walk)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_first_word(&mut self, w: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let w = self.first_word() & 0x0fff_ffff;
        self.set_first_word(w | (u32::from(version & 0x0f) << 28));
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = self.first_word() & 0xf00f_ffff;
        self.set_first_word(w | (u32::from(tc) << 20));
    }

    /// Sets the DSCP (masked to 6 bits), keeping ECN.
    pub fn set_dscp(&mut self, dscp: u8) {
        self.set_traffic_class((dscp << 2) | self.ecn());
    }

    /// Sets the ECN bits (masked to 2 bits), keeping DSCP.
    pub fn set_ecn(&mut self, ecn: u8) {
        self.set_traffic_class((self.traffic_class() & 0xfc) | (ecn & 0x03));
    }

    /// Sets the flow label (masked to 20 bits).
    pub fn set_flow_label(&mut self, label: u32) {
        let w = self.first_word() & 0xfff0_0000;
        self.set_first_word(w | (label & 0x000f_ffff));
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the Next Header of the fixed header.
    pub fn set_next_header(&mut self, nh: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = nh.0;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload up to the payload length, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = Self::HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }
}

/// What a Fragment header (RFC 8200 §4.5) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentInfo {
    /// Fragment offset in bytes.
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

/// Result of walking an IPv6 extension header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6ExtHeaders {
    /// The first header that is not Hop-by-Hop, Routing, Fragment or
    /// Destination Options: an upper-layer protocol, `ESP`, `AH` or
    /// `IPV6_NO_NXT`.
    pub upper_protocol: IpProtocol,
    /// Offset of that header (from the start of the walked bytes, or of the
    /// packet for [`Ipv6Packet::ext_headers`]).
    pub upper_offset: usize,
    /// The Fragment header, if one was crossed. If its offset is non-zero the
    /// bytes at `upper_offset` are the middle of a fragmented payload, not a
    /// header.
    pub fragment: Option<Ipv6FragmentInfo>,
}

impl Ipv6ExtHeaders {
    /// Walks the extension headers in `payload` starting with `next_header`.
    ///
    /// Steps over Hop-by-Hop (only as the first header, RFC 8200 §4.1),
    /// Routing, Destination Options (length `(Hdr Ext Len + 1) × 8`) and
    /// Fragment headers (8 bytes). It stops at anything else, including AH
    /// and ESP, and after a Fragment header with a non-zero offset. A chain
    /// of more than [`MAX_EXT_HEADERS`] is rejected (`TooManyExtHeaders`), a
    /// header that runs past `payload` is `Truncated` and a misplaced
    /// Hop-by-Hop header is `BadOption`.
    pub fn walk(next_header: IpProtocol, payload: &[u8]) -> Result<Ipv6ExtHeaders, WireError> {
        let mut nh = next_header;
        let mut offset = 0usize;
        let mut fragment = None;
        for count in 0..=MAX_EXT_HEADERS {
            let len = match nh {
                IpProtocol::HOP_BY_HOP if count > 0 => return Err(WireError::BadOption),
                IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                    let hdr = payload
                        .get(offset..offset + 2)
                        .ok_or(WireError::Truncated)?;
                    (usize::from(hdr[1]) + 1) * 8
                }
                IpProtocol::IPV6_FRAG => 8,
                _ => {
                    return Ok(Ipv6ExtHeaders {
                        upper_protocol: nh,
                        upper_offset: offset,
                        fragment,
                    });
                }
            };
            if count == MAX_EXT_HEADERS {
                break;
            }
            let hdr = payload
                .get(offset..offset + len)
                .ok_or(WireError::Truncated)?;
            let this = nh;
            nh = IpProtocol(hdr[0]);
            offset += len;
            if this == IpProtocol::IPV6_FRAG {
                let off_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                let info = Ipv6FragmentInfo {
                    offset: off_flags & 0xfff8,
                    more_frags: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                };
                fragment = Some(info);
                if info.offset != 0 {
                    return Ok(Ipv6ExtHeaders {
                        upper_protocol: nh,
                        upper_offset: offset,
                        fragment,
                    });
                }
            }
        }
        Err(WireError::TooManyExtHeaders)
    }
}

/// The fields of a fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP << 2 | ECN).
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn buffer_len(&self) -> usize {
        Ipv6Packet::<&[u8]>::HEADER_LEN
    }

    /// Writes the fixed header into the front of `packet` (at least 40
    /// bytes, else `Truncated`). The flow label is masked to 20 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv6Packet<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() < Ipv6Packet::<&[u8]>::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        packet.set_first_word(0);
        packet.set_version(6);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ICMPv6 echo request fe80::1 -> ff02::1, traffic class 0xb8 (EF),
    /// flow label 0x12345, hop limit 64, 8-byte payload.
    const PACKET: &str = concat!(
        "6b812345",
        "0008",
        "3a",
        "40",
        "fe800000000000000000000000000001",
        "ff020000000000000000000000000001",
        "8000000000010001",
    );

    #[test]
    fn parse_fixed_header() {
        let bytes = hex::decode(PACKET).unwrap();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), IpProtocol::ICMPV6);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 8);
        let eh = p.ext_headers().unwrap();
        assert_eq!(
            eh,
            Ipv6ExtHeaders {
                upper_protocol: IpProtocol::ICMPV6,
                upper_offset: 40,
                fragment: None
            }
        );
        let repr = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(&out[..], &bytes[..40]);
    }

    #[test]
    fn length_errors() {
        let bytes = hex::decode(PACKET).unwrap();
        for len in 0..bytes.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut b = bytes.clone();
        b[0] = 0x4b;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(WireError::BadVersion));
    }

    #[test]
    fn setters() {
        let mut p = Ipv6Packet::new_unchecked([0u8; 40]);
        p.set_version(6);
        p.set_flow_label(0xfffff);
        p.set_dscp(10);
        p.set_ecn(1);
        assert_eq!(
            (p.version(), p.dscp(), p.ecn(), p.flow_label()),
            (6, 10, 1, 0xfffff)
        );
        p.set_ecn(3);
        p.set_flow_label(7);
        assert_eq!(
            (p.version(), p.dscp(), p.ecn(), p.flow_label()),
            (6, 10, 3, 7)
        );
    }

    #[test]
    fn walk_chain() {
        // Hop-by-hop (8 bytes) -> Destination options (16 bytes) -> Fragment
        // (offset 0, M=1) -> Routing (8) -> UDP.
        let mut chain = Vec::new();
        chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        chain.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[43, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        chain.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[0x12, 0x34, 0x12, 0x34, 0, 8, 0, 0]);
        let w = Ipv6ExtHeaders::walk(IpProtocol::HOP_BY_HOP, &chain).unwrap();
        assert_eq!(w.upper_protocol, IpProtocol::UDP);
        assert_eq!(w.upper_offset, 40);
        assert_eq!(
            w.fragment,
            Some(Ipv6FragmentInfo {
                offset: 0,
                more_frags: true,
                ident: 0xdeadbeef
            })
        );

        // A non-first fragment stops the walk at the fragment data.
        let frag = [6, 0, 0x05, 0xc8, 0, 0, 0, 9, 0xff, 0xff];
        let w = Ipv6ExtHeaders::walk(IpProtocol::IPV6_FRAG, &frag).unwrap();
        assert_eq!(
            w,
            Ipv6ExtHeaders {
                upper_protocol: IpProtocol::TCP,
                upper_offset: 8,
                fragment: Some(Ipv6FragmentInfo {
                    offset: 1480,
                    more_frags: false,
                    ident: 9
                }),
            }
        );

        // ESP stops the walk even if more bytes follow.
        let w =
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &[50, 0, 1, 4, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((w.upper_protocol, w.upper_offset), (IpProtocol::ESP, 8));
    }

    #[test]
    fn walk_errors() {
        // Truncated headers at each length.
        let chain = [60u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for len in 0..chain.len() {
            assert_eq!(
                Ipv6ExtHeaders::walk(IpProtocol::IPV6_ROUTE, &chain[..len]),
                Err(WireError::Truncated)
            );
        }
        // Hop-by-hop after the first position.
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &[0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadOption)
        );
        // A long chain of destination options is cut off.
        let long: Vec<u8> = [60u8, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_EXT_HEADERS + 1);
        assert_eq!(
            Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &long),
            Err(WireError::TooManyExtHeaders)
        );
        // Exactly MAX_EXT_HEADERS is fine.
        let mut ok: Vec<u8> = [60u8, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_EXT_HEADERS - 1);
        ok.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        let w = Ipv6ExtHeaders::walk(IpProtocol::IPV6_OPTS, &ok).unwrap();
        assert_eq!(
            (w.upper_protocol, w.upper_offset),
            (IpProtocol::TCP, MAX_EXT_HEADERS * 8)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), v6 in any::<bool>()) {
            if v6 && !bytes.is_empty() {
                bytes[0] = 0x60 | (bytes[0] & 0x0f);
            }
            if bytes.len() >= 6 && v6 {
                let pl = (bytes.len().saturating_sub(40)) as u16;
                bytes[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.traffic_class(), p.dscp(), p.ecn(), p.flow_label());
                let _ = (p.payload_len(), p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
                let _ = (p.payload(), p.ext_headers(), Ipv6Repr::parse(&p));
            }
        }

        #[test]
        fn walk_never_panics(nh in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(w) = Ipv6ExtHeaders::walk(IpProtocol(nh), &bytes) {
                prop_assert!(w.upper_offset <= bytes.len());
            }
        }

        #[test]
        fn repr_roundtrip(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
                          payload_len in 0u16..300, hop_limit in any::<u8>(), tc in any::<u8>(), fl in 0u32..0x100000) {
            let repr = Ipv6Repr { src_addr: src.into(), dst_addr: dst.into(), next_header: IpProtocol(nh),
                                  payload_len, hop_limit, traffic_class: tc, flow_label: fl };
            let mut buf = vec![0u8; 40 + usize::from(payload_len)];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..])).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
        }
    }
}
