//! UDP datagrams (RFC 768), with checksums over the IPv4 pseudo-header
//! (RFC 768) and the IPv6 pseudo-header (RFC 8200 §8.1).
//!
//! RFC 768: "If the computed checksum is zero, it is transmitted as all ones
//! ... An all zero transmitted checksum value means that the transmitter
//! generated no checksum". Over IPv6 a zero checksum is invalid (RFC 8200
//! §8.1).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::ip::checksum;
use super::{IpProtocol, WireError};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps a buffer without any check.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header is present (`Truncated`), the length field is
    /// at least 8 (`BadLength`) and fits in the buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < Self::HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if field_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Length field: header plus payload.
    #[inline]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= Self::HEADER_LEN
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The datagram (header and payload) up to the length field.
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The payload up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..usize::from(self.len())]
    }

    fn compute_with(&self, pseudo: u16) -> u16 {
        let d = self.datagram();
        let sum = checksum::combine(&[pseudo, checksum::data(&d[..6]), checksum::data(&d[8..])]);
        match !sum {
            0 => 0xffff,
            c => c,
        }
    }

    /// The checksum over the IPv4 pseudo-header (never 0: a computed zero is
    /// sent as `0xffff`).
    pub fn compute_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        self.compute_with(checksum::pseudo_header_v4(
            src,
            dst,
            IpProtocol::UDP,
            self.len(),
        ))
    }

    /// The checksum over the IPv6 pseudo-header (never 0).
    pub fn compute_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        self.compute_with(checksum::pseudo_header_v6(
            src,
            dst,
            IpProtocol::UDP,
            u32::from(self.len()),
        ))
    }

    /// Whether the checksum verifies over IPv4; a zero checksum ("none
    /// computed") is accepted.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, self.len());
        checksum::combine(&[pseudo, checksum::data(self.datagram())]) == 0xffff
    }

    /// Whether the checksum verifies over IPv6; zero is rejected.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, u32::from(self.len()));
        checksum::combine(&[pseudo, checksum::data(self.datagram())]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.write_u16(field::SRC_PORT, port)
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.write_u16(field::DST_PORT, port)
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH, len)
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value)
    }

    /// The payload up to the length field, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }

    /// Computes and stores the IPv4 checksum.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum_v4(src, dst);
        self.set_checksum(c)
    }

    /// Computes and stores the IPv6 checksum.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let c = self.compute_checksum_v6(src, dst);
        self.set_checksum(c)
    }
}

/// The fields of a UDP header other than the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (length field minus 8).
    pub payload_len: u16,
}

impl UdpRepr {
    /// Reads the header of a checked datagram. The checksum is not verified
    /// here since it needs the IP addresses: use `verify_checksum_v4/v6`.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr, WireError> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len() - UdpPacket::<&[u8]>::HEADER_LEN as u16,
        })
    }

    /// Length of the header this repr emits.
    pub const fn buffer_len(&self) -> usize {
        UdpPacket::<&[u8]>::HEADER_LEN
    }

    /// Writes the header with a zero checksum; fill it afterwards with
    /// `fill_checksum_v4/v6` once the payload is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() < UdpPacket::<&[u8]>::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = self
            .payload_len
            .checked_add(8)
            .ok_or(WireError::BadLength)?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// DNS query for example.com, 10.0.0.1:53000 -> 10.0.0.2:53, checksum
    /// 0xa128 (checked with tshark's UDP checksum validation).
    const UDP4: &str = "cf0800350025a128abcd01000001000000000000076578616d706c6503636f6d0000010001";
    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn parse_v4_known() {
        let bytes = hex::decode(UDP4).unwrap();
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53000, 53, 37));
        assert_eq!(p.payload().len(), 29);
        assert!(!p.is_empty());
        assert_eq!(p.compute_checksum_v4(SRC4, DST4), p.checksum());
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v4(SRC4, Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            UdpRepr::parse(&p),
            Ok(UdpRepr {
                src_port: 53000,
                dst_port: 53,
                payload_len: 29
            })
        );
    }

    #[test]
    fn zero_checksum() {
        let mut bytes = hex::decode(UDP4).unwrap();
        bytes[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum_v4(SRC4, DST4));
        let (s6, d6) = (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        assert!(!p.verify_checksum_v6(s6, d6));
    }

    #[test]
    fn v6_fill_and_verify() {
        // IKE_SA_INIT-sized placeholder over IPv6: fill then verify, and a
        // single bit flip is detected.
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let mut buf = [0u8; 8 + 13];
        let repr = UdpRepr {
            src_port: 500,
            dst_port: 500,
            payload_len: 13,
        };
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(b"hello, world!");
        p.fill_checksum_v6(src, dst);
        assert!(p.verify_checksum_v6(src, dst));
        assert_eq!(
            checksum::transport_v6(src, dst, IpProtocol::UDP, p.datagram()),
            0
        );
        p.payload_mut()[3] ^= 0x10;
        assert!(!p.verify_checksum_v6(src, dst));
    }

    #[test]
    fn length_errors() {
        let bytes = hex::decode(UDP4).unwrap();
        for len in 0..bytes.len() {
            assert_eq!(
                UdpPacket::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut b = bytes.clone();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(WireError::BadLength));
        // A buffer longer than the length field is fine; payload stops early.
        b[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap().payload(),
            &bytes[8..10]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), a in any::<u32>(), b in any::<u128>()) {
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.is_empty(), p.checksum(), p.payload());
                let _ = (p.compute_checksum_v4(a.into(), a.into()), p.verify_checksum_v4(a.into(), a.into()));
                let _ = (p.compute_checksum_v6(b.into(), b.into()), p.verify_checksum_v6(b.into(), b.into()));
                let _ = UdpRepr::parse(&p).unwrap();
            }
        }

        #[test]
        fn repr_roundtrip_and_checksum(src_port in any::<u16>(), dst_port in any::<u16>(),
                                       payload in proptest::collection::vec(any::<u8>(), 0..100),
                                       a in any::<[u32; 2]>(), b in any::<[u128; 2]>()) {
            let repr = UdpRepr { src_port, dst_port, payload_len: payload.len() as u16 };
            let mut buf = vec![0u8; 8 + payload.len()];
            let mut p = UdpPacket::new_unchecked(&mut buf[..]);
            repr.emit(&mut p).unwrap();
            p.payload_mut().copy_from_slice(&payload);
            p.fill_checksum_v4(a[0].into(), a[1].into());
            prop_assert!(p.verify_checksum_v4(a[0].into(), a[1].into()));
            p.fill_checksum_v6(b[0].into(), b[1].into());
            prop_assert!(p.verify_checksum_v6(b[0].into(), b[1].into()));
            prop_assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
        }
    }
}
