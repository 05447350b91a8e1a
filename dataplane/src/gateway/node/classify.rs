//! The classify pass: one look at each received frame, recorded in a
//! [`PacketMeta`] that the prefetch pass and the processing read instead of
//! parsing the headers again (DPDK's `rte_ipsec` keeps `l2_len`, `l3_len`
//! in the mbuf for the same reason).

use super::*;
use crate::wire::{Ipv4Fixed, UdpPacket};

/// What the classify pass found in an IP packet (offsets from the IP
/// header; the link-layer header is `ETH_LEN` bytes before it).
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta {
    /// IP version.
    pub version: IpVersion,
    /// Destination address (see [`dst`](Self::dst)).
    dst: Addr,
    /// Upper-layer protocol (after any IPv6 extension headers).
    pub proto: IpProtocol,
    /// Offset of the upper-layer header.
    pub l4: usize,
    /// UDP: the destination port, if the datagram shows it.
    pub dport: Option<u16>,
    /// ESP and UDP to the NAT-T port: where the ESP header is (RFC 4303
    /// §2; RFC 3948 §2.2), or that the datagram is IKE or a NAT keepalive.
    /// Everything else: `NotEsp`.
    pub esp: Result<EspLocation, DropReason>,
    /// The SPI when `esp` located an ESP header.
    pub spi: Option<u32>,
    /// The SPD selectors (RFC 4301 §4.4.1.1) of a packet that is not ESP
    /// or UDP on the NAT-T port (those are looked up by SPI); see
    /// [`packet_key`](Self::packet_key). Kept field by field: a
    /// `Result<PacketKey, _>` built and then moved in was copied in wider
    /// words than it was written in, a store-forwarding stall per packet.
    /// Their destination is `dst`.
    selectors: Selectors,
    key_src: Addr,
    key_proto: u8,
    /// Source port in the high half, destination port in the low: one
    /// word, because the two ports written as two halves were then read
    /// back as one word when the key was built (a store-forwarding stall).
    key_ports: u32,
    key_opaque: bool,
}

/// An address of [`PacketMeta`], kept in one 16-byte word that is written
/// whole (IPv4 in its low 32 bits). Kept as an `IpAddr`, an IPv4 address
/// was written as a tag byte and four bytes, and every later copy of the
/// `IpAddr` (the SPD key, the is-it-ours check) read it with wider loads,
/// which cannot be served from the store buffer: a store-forwarding stall
/// of the order of ten cycles each, three of them per 64-byte packet on
/// the encrypting path in `perf` samples of the lab (2026-12-07). Loads of
/// a word stored whole, or of part of it, are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addr {
    bits: u128,
    v6: bool,
}

impl Addr {
    const V4_UNSPECIFIED: Addr = Addr { bits: 0, v6: false };

    #[inline(always)]
    fn get(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        }
    }
}

impl From<IpAddr> for Addr {
    #[inline(always)]
    fn from(a: IpAddr) -> Addr {
        match a {
            IpAddr::V4(a) => Addr {
                bits: u128::from(u32::from(a)),
                v6: false,
            },
            IpAddr::V6(a) => Addr {
                bits: u128::from(a),
                v6: true,
            },
        }
    }
}

/// Whether [`PacketMeta`] holds the selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selectors {
    /// Not parsed (ESP, or UDP on the NAT-T port).
    Absent,
    /// In the `key_*` fields.
    Parsed,
    /// The packet has none: why.
    Failed(DropReason),
}

impl PacketMeta {
    /// Nothing found yet: the value [`fill`](Self::fill) overwrites.
    pub const EMPTY: PacketMeta = PacketMeta {
        version: IpVersion::V4,
        dst: Addr::V4_UNSPECIFIED,
        proto: IpProtocol(0),
        l4: 0,
        dport: None,
        esp: Ok(EspLocation::NotEsp),
        spi: None,
        selectors: Selectors::Absent,
        key_src: Addr::V4_UNSPECIFIED,
        key_proto: 0,
        key_ports: 0,
        key_opaque: false,
    };

    /// Destination address.
    #[inline(always)]
    pub fn dst(&self) -> IpAddr {
        self.dst.get()
    }

    /// Classifies an IP packet (IP header first): `None` when the header
    /// is not a valid IPv4 header (its checksum included, RFC 1812
    /// §5.2.2) or IPv6 header (with its extension header chain).
    pub fn of(data: &[u8]) -> Option<PacketMeta> {
        let mut m = PacketMeta::EMPTY;
        m.fill(data).then_some(m)
    }

    /// [`of`](Self::of) written in place (false: not a valid IP header).
    #[inline(always)]
    pub fn fill(&mut self, data: &[u8]) -> bool {
        if data.first() != Some(&0x45) {
            return self.fill_general(data);
        }
        // IPv4 without options, as nearly every packet is: every field at a
        // fixed offset, and the SPD selectors read from the same view rather
        // than by parsing the header a second time (`packet_key`'s first
        // case, which this must agree with).
        let Some(h) = Ipv4Fixed::parse(data) else {
            return false;
        };
        if !h.checksum_ok() {
            return false;
        }
        let proto = h.protocol();
        if self.fill_upper(data, IpVersion::V4, IpAddr::V4(h.dst_addr()), proto, 20) {
            return true;
        }
        let (mut sport, mut dport, mut opaque) = (0, 0, false);
        if FlowKey::proto_has_ports(proto.0) {
            match data.get(20..24) {
                Some(p) if h.is_first_fragment() && h.total_len() >= 24 => {
                    sport = u16::from_be_bytes([p[0], p[1]]);
                    dport = u16::from_be_bytes([p[2], p[3]]);
                }
                _ => opaque = true,
            }
        }
        self.key_src = Addr::from(IpAddr::V4(h.src_addr()));
        self.key_proto = proto.0;
        self.key_ports = u32::from(sport) << 16 | u32::from(dport);
        self.key_opaque = opaque;
        self.selectors = Selectors::Parsed;
        true
    }

    /// [`fill`](Self::fill) for IPv4 with options and IPv6, whose offsets
    /// vary: kept out of line so that the common case stays small.
    #[inline(never)]
    fn fill_general(&mut self, data: &[u8]) -> bool {
        let Some(version) = IpVersion::of(data) else {
            return false;
        };
        let (dst, proto, l4) = match version {
            IpVersion::V4 => {
                let Ok(ip) = Ipv4Packet::new_checked(data) else {
                    return false;
                };
                if !ip.verify_checksum() {
                    return false;
                }
                (
                    IpAddr::V4(ip.dst_addr()),
                    ip.protocol(),
                    usize::from(ip.header_len()),
                )
            }
            IpVersion::V6 => {
                let Ok(ip) = Ipv6Packet::new_checked(data) else {
                    return false;
                };
                let Ok(ext) = ip.ext_headers() else {
                    return false;
                };
                (
                    IpAddr::V6(ip.dst_addr()),
                    ext.upper_protocol,
                    ext.upper_offset,
                )
            }
        };
        if self.fill_upper(data, version, dst, proto, l4) {
            return true;
        }
        self.selectors = match packet_key(data) {
            Ok(PacketKey {
                key:
                    FlowKey {
                        src,
                        dst: _,
                        proto,
                        sport,
                        dport,
                    },
                opaque,
            }) => {
                self.key_src = Addr::from(src);
                self.key_proto = proto;
                self.key_ports = u32::from(sport) << 16 | u32::from(dport);
                self.key_opaque = opaque;
                Selectors::Parsed
            }
            Err(r) => Selectors::Failed(r),
        };
        true
    }

    /// Records the IP header's fields and what follows it: the UDP
    /// destination port, where the ESP header is. True for ESP and UDP to
    /// the NAT-T port, which are looked up by SPI and need no selectors
    /// (then recorded as absent); false when the caller is to fill them.
    #[inline(always)]
    fn fill_upper(
        &mut self,
        data: &[u8],
        version: IpVersion,
        dst: IpAddr,
        proto: IpProtocol,
        l4: usize,
    ) -> bool {
        let dport = match proto {
            IpProtocol::UDP => data
                .get(l4..l4 + 4)
                .map(|h| UdpPacket::new_unchecked(h).dst_port()),
            _ => None,
        };
        let esp_like = matches!(
            (proto, dport),
            (IpProtocol::ESP, _) | (IpProtocol::UDP, Some(NAT_T_PORT))
        );
        self.version = version;
        self.dst = Addr::from(dst);
        self.proto = proto;
        self.l4 = l4;
        self.dport = dport;
        if !esp_like {
            self.esp = Ok(EspLocation::NotEsp);
            self.spi = None;
            return false;
        }
        let esp = locate_esp_header_verified(data, NAT_T_PORT);
        self.spi = match esp {
            Ok(EspLocation::Esp { esp_offset, .. }) => data
                .get(esp_offset..esp_offset + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            _ => None,
        };
        self.esp = esp;
        self.selectors = Selectors::Absent;
        true
    }

    /// The packet's SPD selectors: those of the classify pass, or parsed
    /// from `data` (the packet) for the ESP packets it did not give them to.
    #[inline(always)]
    pub fn packet_key(&self, data: &[u8]) -> Result<PacketKey, DropReason> {
        match self.selectors {
            Selectors::Parsed => Ok(self.parsed_key()),
            Selectors::Failed(r) => Err(r),
            Selectors::Absent => packet_key(data),
        }
    }

    /// The selectors the classify pass parsed, if it did and they are
    /// valid.
    #[inline(always)]
    pub fn selectors(&self) -> Option<PacketKey> {
        (self.selectors == Selectors::Parsed).then(|| self.parsed_key())
    }

    #[inline(always)]
    fn parsed_key(&self) -> PacketKey {
        PacketKey {
            key: FlowKey {
                src: self.key_src.get(),
                dst: self.dst.get(),
                proto: self.key_proto,
                sport: (self.key_ports >> 16) as u16,
                dport: self.key_ports as u16,
            },
            opaque: self.key_opaque,
        }
    }
}

/// What a received frame is, after the classify pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// ARP (RFC 826).
    Arp,
    /// IP (the group-frame rule checked); its [`PacketMeta`] is filled.
    Ip,
}

impl<B: PacketBuf> Node<B> {
    /// The classify pass for one frame received on `in_if`: what it is
    /// (for IP, `meta` is filled), or why it is dropped (nothing is counted
    /// here).
    #[inline(always)]
    pub(super) fn classify(
        &self,
        in_if: u16,
        data: &[u8],
        meta: &mut PacketMeta,
    ) -> Result<Frame, GwDrop> {
        let iface = self
            .ifaces
            .get(usize::from(in_if))
            .ok_or(GwDrop::BadFrame)?;
        let frame = EthernetFrame::new_checked(data).map_err(|_| GwDrop::BadFrame)?;
        let dst = frame.dst_addr();
        let group = dst.is_multicast();
        if dst.0 != iface.mac && !group {
            return Err(GwDrop::NotForUs);
        }
        match frame.ethertype() {
            EtherType::ARP => Ok(Frame::Arp),
            EtherType::IPV4 | EtherType::IPV6 => {
                let ip = data.get(ETH_LEN..).ok_or(GwDrop::BadFrame)?;
                if !meta.fill(ip) {
                    return Err(GwDrop::BadFrame);
                }
                // RFC 1812 §5.3.4 (and RFC 1122 §3.3.6 for us as a host): a
                // unicast packet in a group frame is neither forwarded nor
                // taken.
                let group_ip = match meta.dst() {
                    IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
                    IpAddr::V6(a) => a.is_multicast(),
                };
                if group && !group_ip {
                    return Err(GwDrop::GroupFrame);
                }
                Ok(Frame::Ip)
            }
            _ => Err(GwDrop::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 header of 20 bytes or with options, then `rest`: the fields
    /// the selectors depend on (protocol, fragment bits, total length)
    /// drawn so that both the fixed-offset case and every branch of the
    /// general parse are reached; the checksum valid.
    fn v4(ihl: u8, proto: u8, frag: u16, total: u16, rest: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut p = vec![0u8; hl.max(20)];
        p[0] = 0x40 | ihl;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 1, 0, 10]);
        p[16..20].copy_from_slice(&[10, 2, 0, 20]);
        p.extend_from_slice(rest);
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.fill_checksum();
        p
    }

    proptest! {
        /// The classify pass reads the selectors of a plaintext packet
        /// from its own parse of the header; they must be what
        /// `packet_key` finds in the packet, or the refusal it gives.
        #[test]
        fn selectors_agree_with_packet_key(
            ihl in prop_oneof![Just(5u8), 6u8..=15],
            proto in prop_oneof![Just(6u8), Just(17), Just(132), Just(1), Just(50), any::<u8>()],
            frag in prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), 1u16..0x2000, any::<u16>()],
            rest in proptest::collection::vec(any::<u8>(), 0..40),
            total_delta in -30i32..30,
        ) {
            let len = usize::from(ihl) * 4 + rest.len();
            let total = (len as i32 + total_delta).clamp(0, 0xffff) as u16;
            let p = v4(ihl, proto, frag, total, &rest);
            if let Some(m) = PacketMeta::of(&p) {
                prop_assert_eq!(m.packet_key(&p), packet_key(&p));
                let parsed = m.selectors();
                prop_assert!(parsed.is_none() || parsed.map(Ok) == Some(packet_key(&p)));
            }
        }

        /// IPv6 takes the general parse: the same agreement.
        #[test]
        fn v6_selectors_agree_with_packet_key(
            nh in prop_oneof![Just(6u8), Just(17), Just(44), Just(0), Just(60), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..64),
            payload_delta in -8i32..8,
        ) {
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            let plen = (rest.len() as i32 + payload_delta).clamp(0, 0xffff) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            p[6] = nh;
            p[7] = 64;
            p[8] = 0xfd;
            p[24] = 0xfd;
            p[39] = 1;
            p.extend_from_slice(&rest);
            if let Some(m) = PacketMeta::of(&p) {
                prop_assert_eq!(m.packet_key(&p), packet_key(&p));
            }
        }
    }

    /// A UDP datagram of the lab's kind classifies with its selectors, so
    /// the SPD lookup needs no second parse.
    #[test]
    fn plain_udp_has_selectors() {
        let mut udp = vec![0u8; 26];
        udp[0..2].copy_from_slice(&1024u16.to_be_bytes());
        udp[2..4].copy_from_slice(&9u16.to_be_bytes());
        let p = v4(5, 17, 0, 46, &udp);
        let m = PacketMeta::of(&p).expect("valid header");
        let k = m.selectors().expect("selectors parsed");
        assert_eq!(Ok(k), packet_key(&p));
        assert_eq!((k.key.sport, k.key.dport, k.opaque), (1024, 9, false));
        assert_eq!(m.dport, Some(9));
        assert!(matches!(m.esp, Ok(EspLocation::NotEsp)));
    }
}
