//! Ethernet II frames (IEEE 802.3 clause 3, EtherType framing per RFC 894)
//! and a single IEEE 802.1Q VLAN tag.
//!
//! The view covers the 14-byte header `dst(6) src(6) ethertype(2)`; the FCS is
//! not part of the buffer (NICs strip it).

use core::fmt;

use super::WireError;

/// A 48-bit IEEE MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`, if there are six.
    pub fn from_bytes(bytes: &[u8]) -> Option<EthernetAddress> {
        bytes.get(..6)?.try_into().ok().map(EthernetAddress)
    }

    /// The raw octets.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit (I/G) is set; broadcast is also multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is a unicast address (group bit clear).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An EtherType; unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: EtherType = EtherType(0x88a8);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IPV4 => f.write_str("IPv4"),
            Self::ARP => f.write_str("ARP"),
            Self::VLAN => f.write_str("802.1Q"),
            Self::IPV6 => f.write_str("IPv6"),
            Self::QINQ => f.write_str("802.1ad"),
            EtherType(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;

    // Within an 802.1Q tag, relative to the start of the tag.
    pub const TCI: Range<usize> = 0..2;
    pub const INNER_ETHERTYPE: Range<usize> = 2..4;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the Ethernet II header.
    pub const HEADER_LEN: usize = 14;

    /// Wraps a buffer without checking its length.
    ///
    /// Getters may then panic on short buffers; use [`Self::new_checked`] on
    /// untrusted input.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds a full header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds a full header.
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

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        let d = &self.buffer.as_ref()[field::DST];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        let d = &self.buffer.as_ref()[field::SRC];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// The EtherType field (may be [`EtherType::VLAN`]).
    pub fn ethertype(&self) -> EtherType {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([d[0], d[1]]))
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Parses a single 802.1Q tag if the EtherType says there is one.
    ///
    /// Returns `Ok(None)` for untagged frames and `Truncated` if the tag is
    /// cut short. Stacked tags are not unwrapped: the returned tag's
    /// `inner_ethertype` is then itself `VLAN` or `QINQ`.
    pub fn vlan_tag(&self) -> Result<Option<VlanTag>, WireError> {
        if self.ethertype() != EtherType::VLAN {
            return Ok(None);
        }
        VlanTag::parse(self.payload()).map(Some)
    }

    /// The network-layer EtherType and payload, looking through one optional
    /// 802.1Q tag.
    pub fn network_payload(&self) -> Result<(EtherType, &[u8]), WireError> {
        match self.vlan_tag()? {
            None => Ok((self.ethertype(), self.payload())),
            Some(tag) => Ok((tag.inner_ethertype, &self.payload()[VlanTag::LEN..])),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    /// Everything after the 14-byte header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A parsed IEEE 802.1Q tag: the 16-bit TCI and the EtherType that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
    /// The EtherType of the tagged payload.
    pub inner_ethertype: EtherType,
}

impl VlanTag {
    /// Length of the tag after the outer EtherType (TCI + inner EtherType).
    pub const LEN: usize = 4;

    /// Parses a tag from the bytes that follow the `0x8100` EtherType.
    pub fn parse(bytes: &[u8]) -> Result<VlanTag, WireError> {
        let b = bytes.get(..Self::LEN).ok_or(WireError::Truncated)?;
        let tci = u16::from_be_bytes([b[field::TCI.start], b[field::TCI.start + 1]]);
        let et = &b[field::INNER_ETHERTYPE];
        Ok(VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
            inner_ethertype: EtherType(u16::from_be_bytes([et[0], et[1]])),
        })
    }

    /// Writes the tag into the first four bytes of `out`.
    ///
    /// `pcp` and `vid` are masked to 3 and 12 bits.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let out = out.get_mut(..Self::LEN).ok_or(WireError::Truncated)?;
        let tci =
            (u16::from(self.pcp & 0x7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff);
        out[field::TCI].copy_from_slice(&tci.to_be_bytes());
        out[field::INNER_ETHERTYPE].copy_from_slice(&self.inner_ethertype.0.to_be_bytes());
        Ok(())
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length this repr emits.
    pub const fn buffer_len(&self) -> usize {
        EthernetFrame::<&[u8]>::HEADER_LEN
    }

    /// Writes the header into `frame`, which must be at least 14 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut EthernetFrame<T>,
    ) -> Result<(), WireError> {
        frame.check_len()?;
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An ARP request frame: broadcast dst, src 52:54:00:12:34:56, ethertype
    // ARP, followed by the 28-byte ARP body.
    const ARP_FRAME: &str =
        "ffffffffffff525400123456080600010800060400015254001234560a000001000000000000c0a80101";

    #[test]
    fn parse_arp_frame() {
        let bytes = hex::decode(ARP_FRAME).unwrap();
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert!(frame.dst_addr().is_broadcast() && frame.dst_addr().is_multicast());
        assert_eq!(
            frame.src_addr(),
            EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert!(frame.src_addr().is_unicast());
        assert_eq!(frame.src_addr().to_string(), "52:54:00:12:34:56");
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload().len(), 28);
        assert_eq!(frame.vlan_tag(), Ok(None));
        let (et, payload) = frame.network_payload().unwrap();
        assert_eq!((et, payload.len()), (EtherType::ARP, 28));
    }

    #[test]
    fn vlan_tagged() {
        // VLAN 100, PCP 5, DEI 0, carrying IPv4.
        let bytes = hex::decode("0200000000010200000000028100a0640800450000").unwrap();
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let tag = frame.vlan_tag().unwrap().unwrap();
        assert_eq!(
            tag,
            VlanTag {
                pcp: 5,
                dei: false,
                vid: 100,
                inner_ethertype: EtherType::IPV4
            }
        );
        let (et, payload) = frame.network_payload().unwrap();
        assert_eq!(et, EtherType::IPV4);
        assert_eq!(payload, &[0x45, 0, 0][..]);
        let mut out = [0u8; 4];
        tag.emit(&mut out).unwrap();
        assert_eq!(&out, &bytes[14..18]);
        // A tag cut short is an error.
        let frame = EthernetFrame::new_checked(&bytes[..17]).unwrap();
        assert_eq!(frame.vlan_tag(), Err(WireError::Truncated));
        assert_eq!(frame.network_payload(), Err(WireError::Truncated));
    }

    #[test]
    fn truncated() {
        let bytes = hex::decode(ARP_FRAME).unwrap();
        for len in 0..EthernetFrame::<&[u8]>::HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&bytes[..14]).is_ok());
    }

    #[test]
    fn emit_header() {
        let repr = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EtherType::IPV6,
        };
        let mut buf = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(hex::encode(buf), "02000000000202000000000186dd");
        assert_eq!(
            repr.emit(&mut EthernetFrame::new_unchecked(&mut [0u8; 13][..])),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
                let _ = frame.vlan_tag();
                let _ = frame.network_payload();
                let _ = EthernetRepr::parse(&frame).unwrap();
            }
        }

        #[test]
        fn repr_roundtrip(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), et in any::<u16>()) {
            let repr = EthernetRepr { src_addr: EthernetAddress(src), dst_addr: EthernetAddress(dst), ethertype: EtherType(et) };
            let mut buf = [0u8; 14];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..])).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn vlan_roundtrip(pcp in 0u8..8, dei in any::<bool>(), vid in 0u16..4096, et in any::<u16>()) {
            let tag = VlanTag { pcp, dei, vid, inner_ethertype: EtherType(et) };
            let mut buf = [0u8; 4];
            tag.emit(&mut buf).unwrap();
            prop_assert_eq!(VlanTag::parse(&buf), Ok(tag));
        }
    }
}
