//! UDP encapsulation of ESP for NAT traversal (RFC 3948 §2): telling apart
//! ESP, IKE and NAT-keepalive datagrams that share UDP port 4500.
//!
//! - §2.1/§2.2: an ESP packet follows the UDP header directly; "the SPI
//!   field in the ESP header MUST NOT be a zero value".
//! - RFC 3948 §2.2 and RFC 7296 §2.23: IKE messages on port 4500 are
//!   prefixed by a four-byte Non-ESP Marker of zeros.
//! - §2.3: a NAT-keepalive packet is a single octet `0xFF`.

/// The UDP port for NAT-T (RFC 3948 §2).
pub const NAT_T_PORT: u16 = 4500;

/// The Non-ESP Marker that prefixes IKE messages on the NAT-T port.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What a UDP/4500 payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpEncap<'a> {
    /// A one-byte `0xFF` NAT-keepalive, to be dropped (§2.3).
    NatKeepalive,
    /// An IKE message; the slice starts after the Non-ESP Marker.
    Ike(&'a [u8]),
    /// An ESP packet, SPI first; the slice is at least 8 bytes with a
    /// non-zero SPI.
    Esp(&'a [u8]),
    /// None of the above (too short, or a lone byte other than `0xFF`).
    Malformed,
}

impl<'a> UdpEncap<'a> {
    /// Classifies the payload of a UDP datagram received on the NAT-T port.
    #[inline]
    pub fn classify(payload: &'a [u8]) -> UdpEncap<'a> {
        match payload {
            [0xff] => UdpEncap::NatKeepalive,
            [0, 0, 0, 0, ike @ ..] => UdpEncap::Ike(ike),
            esp if esp.len() >= 8 => UdpEncap::Esp(esp),
            _ => UdpEncap::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EspPacket, Ipv4Packet, UdpPacket};
    use proptest::prelude::*;

    /// IPv4/UDP 4500 -> 4500 carrying ESP SPI 0xc0ffee01, sequence 42; tshark
    /// dissects it as UDP-encapsulated ESP with good IP and UDP checksums.
    const NATT_ESP: &str = concat!(
        "450000541c4640004011b80ec6336407cb007109",
        "1194119400409990",
        "c0ffee010000002a000102030405060708090a0b0c0d0e0f",
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
    );

    #[test]
    fn full_packet_walk() {
        let bytes = hex::decode(NATT_ESP).unwrap();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (NAT_T_PORT, NAT_T_PORT));
        assert!(udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
        let UdpEncap::Esp(esp) = UdpEncap::classify(udp.payload()) else {
            panic!("not ESP");
        };
        let esp = EspPacket::new_checked(esp).unwrap();
        assert_eq!((esp.spi(), esp.sequence_number()), (0xc0ffee01, 42));
        assert_eq!(esp.payload().len(), 48);
    }

    #[test]
    fn classify_examples() {
        assert_eq!(UdpEncap::classify(&[0xff]), UdpEncap::NatKeepalive);
        assert_eq!(UdpEncap::classify(&[0x00]), UdpEncap::Malformed);
        assert_eq!(UdpEncap::classify(&[]), UdpEncap::Malformed);
        // IKE_SA_INIT header start after the marker.
        let ike = [0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        assert_eq!(UdpEncap::classify(&ike), UdpEncap::Ike(&ike[4..]));
        assert_eq!(UdpEncap::classify(&[0, 0, 0, 0]), UdpEncap::Ike(&[]));
        // ESP: SPI 0x00001234, seq 1.
        let esp = [0, 0, 0x12, 0x34, 0, 0, 0, 1, 0xaa];
        assert_eq!(UdpEncap::classify(&esp), UdpEncap::Esp(&esp));
        for len in 1..8 {
            assert_eq!(
                UdpEncap::classify(&esp[..len]),
                UdpEncap::Malformed,
                "len {len}"
            );
        }
        assert_eq!(UdpEncap::classify(&[0xff, 0xff]), UdpEncap::Malformed);
    }

    proptest! {
        #[test]
        fn classify_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            match UdpEncap::classify(&bytes) {
                UdpEncap::NatKeepalive => prop_assert_eq!(&bytes[..], &[0xff][..]),
                UdpEncap::Ike(rest) => {
                    prop_assert_eq!(&bytes[..4], &NON_ESP_MARKER[..]);
                    prop_assert_eq!(rest, &bytes[4..]);
                }
                UdpEncap::Esp(esp) => {
                    prop_assert!(esp.len() >= 8 && esp[..4] != NON_ESP_MARKER);
                }
                UdpEncap::Malformed => prop_assert!(bytes.len() < 8),
            }
        }
    }
}
