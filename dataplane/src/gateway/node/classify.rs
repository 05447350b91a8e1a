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
    /// Destination address.
    pub dst: IpAddr,
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
    selectors: Selectors,
    key_src: IpAddr,
    key_dst: IpAddr,
    key_proto: u8,
    key_sport: u16,
    key_dport: u16,
    key_opaque: bool,
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
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        proto: IpProtocol(0),
        l4: 0,
        dport: None,
        esp: Ok(EspLocation::NotEsp),
        spi: None,
        selectors: Selectors::Absent,
        key_src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        key_dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        key_proto: 0,
        key_sport: 0,
        key_dport: 0,
        key_opaque: false,
    };

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
        let Some(version) = IpVersion::of(data) else {
            return false;
        };
        let (dst, proto, l4) = match version {
            IpVersion::V4 if data[0] == 0x45 => {
                let Some(h) = Ipv4Fixed::parse(data) else {
                    return false;
                };
                if !h.checksum_ok() {
                    return false;
                }
                (IpAddr::V4(h.dst_addr()), h.protocol(), 20)
            }
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
        let esp = if esp_like {
            locate_esp_header_verified(data, NAT_T_PORT)
        } else {
            Ok(EspLocation::NotEsp)
        };
        let spi = match esp {
            Ok(EspLocation::Esp { esp_offset, .. }) => data
                .get(esp_offset..esp_offset + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            _ => None,
        };
        self.version = version;
        self.dst = dst;
        self.proto = proto;
        self.l4 = l4;
        self.dport = dport;
        self.esp = esp;
        self.spi = spi;
        self.selectors = if esp_like {
            Selectors::Absent
        } else {
            match packet_key(data) {
                Ok(PacketKey {
                    key:
                        FlowKey {
                            src,
                            dst,
                            proto,
                            sport,
                            dport,
                        },
                    opaque,
                }) => {
                    self.key_src = src;
                    self.key_dst = dst;
                    self.key_proto = proto;
                    self.key_sport = sport;
                    self.key_dport = dport;
                    self.key_opaque = opaque;
                    Selectors::Parsed
                }
                Err(r) => Selectors::Failed(r),
            }
        };
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
                src: self.key_src,
                dst: self.key_dst,
                proto: self.key_proto,
                sport: self.key_sport,
                dport: self.key_dport,
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
                let group_ip = match meta.dst {
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
