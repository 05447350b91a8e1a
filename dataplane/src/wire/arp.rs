//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ```text
//! | hardware type (2) | protocol type (2) | hlen (1) | plen (1) | op (2) |
//! | sender hw addr (hlen) | sender proto addr (plen)                     |
//! | target hw addr (hlen) | target proto addr (plen)                     |
//! ```
//!
//! The view reads any hardware/protocol sizes; [`ArpRepr`] represents only
//! Ethernet (hardware type 1, hlen 6) with IPv4 (0x0800, plen 4).

use core::net::Ipv4Addr;

use super::{EtherType, EthernetAddress, WireError};

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const FIXED_LEN: usize = 8;
}

/// Hardware type for Ethernet (RFC 826, IANA ARP parameters).
pub const HARDWARE_ETHERNET: u16 = 1;

/// An ARP operation code; unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// Request (1).
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// Reply (2).
    pub const REPLY: ArpOperation = ArpOperation(2);
}

/// A view of an ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed part and the four addresses it announces fit.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::FIXED_LEN || len < self.packet_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Length of the ARP packet implied by hlen and plen (needs 8 bytes).
    fn packet_len(&self) -> usize {
        field::FIXED_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE)
    }

    /// Protocol type (an EtherType, 0x0800 for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(self.read_u16(field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(self.read_u16(field::OPER))
    }

    /// The four variable-length addresses, in packet order.
    fn addr(&self, index: usize) -> &[u8] {
        let (h, p) = (
            usize::from(self.hardware_len()),
            usize::from(self.protocol_len()),
        );
        let (start, len) = match index {
            0 => (field::FIXED_LEN, h),
            1 => (field::FIXED_LEN + h, p),
            2 => (field::FIXED_LEN + h + p, h),
            _ => (field::FIXED_LEN + 2 * h + p, p),
        };
        &self.buffer.as_ref()[start..start + len]
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> &[u8] {
        self.addr(0)
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> &[u8] {
        self.addr(1)
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.addr(2)
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.addr(3)
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply or another code.
    pub operation: ArpOperation,
    /// Sender MAC address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC address (zero in requests).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = 28;

    /// Parses an Ethernet/IPv4 ARP packet; other hardware or protocol types
    /// and sizes are `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let mac = |b: &[u8]| EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]]);
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr()),
            source_protocol_addr: ip(packet.source_protocol_addr()),
            target_hardware_addr: mac(packet.target_hardware_addr()),
            target_protocol_addr: ip(packet.target_protocol_addr()),
        })
    }

    /// A request for `target`'s hardware address (target MAC zero).
    pub const fn request(
        source_mac: EthernetAddress,
        source_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::REQUEST,
            source_hardware_addr: source_mac,
            source_protocol_addr: source_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target_ip,
        }
    }

    /// The reply to `self` (a request) from `our_mac`, which owns the
    /// requested address: sender and target swap (RFC 826, "Packet
    /// Reception").
    pub const fn reply(&self, our_mac: EthernetAddress) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::REPLY,
            source_hardware_addr: our_mac,
            source_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.source_hardware_addr,
            target_protocol_addr: self.source_protocol_addr,
        }
    }

    /// Length of the packet this repr emits.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the 28-byte packet into the front of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), WireError> {
        let b = buffer.get_mut(..Self::LEN).ok_or(WireError::Truncated)?;
        b[field::HTYPE].copy_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        b[field::OPER].copy_from_slice(&self.operation.0.to_be_bytes());
        b[8..14].copy_from_slice(&self.source_hardware_addr.0);
        b[14..18].copy_from_slice(&self.source_protocol_addr.octets());
        b[18..24].copy_from_slice(&self.target_hardware_addr.0);
        b[24..28].copy_from_slice(&self.target_protocol_addr.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Who has 192.168.1.1? Tell 10.0.0.1 (52:54:00:12:34:56); dissected by
    /// tshark as an ARP request.
    const REQUEST: &str = "00010800060400015254001234560a000001000000000000c0a80101";

    #[test]
    fn parse_request_and_reply() {
        let bytes = hex::decode(REQUEST).unwrap();
        let p = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::IPV4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOperation::REQUEST);
        assert_eq!(p.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(p.target_protocol_addr(), &[192, 168, 1, 1]);
        let mac = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let repr = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            ArpRepr::request(
                mac,
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(192, 168, 1, 1)
            )
        );
        let ours = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let reply = repr.reply(ours);
        let mut out = [0u8; 28];
        reply.emit(&mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "0001080006040002020000000009c0a801015254001234560a000001"
        );
    }

    #[test]
    fn length_and_type_errors() {
        let bytes = hex::decode(REQUEST).unwrap();
        for len in 0..bytes.len() {
            assert_eq!(
                ArpPacket::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut b = bytes.clone();
        b[5] = 16; // plen 16: now too short
        assert_eq!(ArpPacket::new_checked(&b[..]), Err(WireError::Truncated));
        b[5] = 2; // plen 2: fits, but not IPv4-sized
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError::Unsupported)
        );
        assert_eq!(
            ArpRepr::request(
                EthernetAddress::BROADCAST,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST
            )
            .emit(&mut [0; 27]),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr(), p.target_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
        }

        #[test]
        fn repr_roundtrip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(), tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
            let repr = ArpRepr {
                operation: ArpOperation(op),
                source_hardware_addr: EthernetAddress(sha),
                source_protocol_addr: spa.into(),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: tpa.into(),
            };
            let mut buf = [0u8; 28];
            repr.emit(&mut buf).unwrap();
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
        }
    }
}
