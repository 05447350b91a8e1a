//! The classify pass: one look at each received frame, recorded in a
//! [`PacketMeta`] that the prefetch pass and the processing read instead of
//! parsing the headers again (DPDK's `rte_ipsec` keeps `l2_len`, `l3_len`
//! in the mbuf for the same reason).

use super::*;
use crate::wire::{Ipv4Fixed, UdpPacket};

/// What the classify pass found in an IP packet (offsets from the IP
/// header; the link-layer header is [`ETH_LEN`] bytes before it).
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
    /// The SPD selectors (RFC 4301 §4.4.1.1), for every packet that is
    /// not ESP or UDP on the NAT-T port; the others are looked up by SPI.
    pub key: Option<Result<PacketKey, DropReason>>,
}

impl PacketMeta {
    /// Classifies an IP packet (IP header first): `None` when the header
    /// is not a valid IPv4 header (its checksum included, RFC 1812
    /// §5.2.2) or IPv6 header (with its extension header chain).
    #[inline(always)]
    pub fn of(data: &[u8]) -> Option<PacketMeta> {
        let version = IpVersion::of(data)?;
        let (dst, proto, l4) = match version {
            IpVersion::V4 if data[0] == 0x45 => {
                let h = Ipv4Fixed::parse(data)?;
                if !h.checksum_ok() {
                    return None;
                }
                (IpAddr::V4(h.dst_addr()), h.protocol(), 20)
            }
            IpVersion::V4 => {
                let ip = Ipv4Packet::new_checked(data).ok()?;
                if !ip.verify_checksum() {
                    return None;
                }
                (
                    IpAddr::V4(ip.dst_addr()),
                    ip.protocol(),
                    usize::from(ip.header_len()),
                )
            }
            IpVersion::V6 => {
                let ip = Ipv6Packet::new_checked(data).ok()?;
                let ext = ip.ext_headers().ok()?;
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
        let key = (!esp_like).then(|| packet_key(data));
        Some(PacketMeta {
            version,
            dst,
            proto,
            l4,
            dport,
            esp,
            spi,
            key,
        })
    }

    /// The packet's SPD selectors: those of the classify pass, or parsed
    /// now for the ESP packets it did not give them to.
    #[inline]
    pub fn packet_key(&self, data: &[u8]) -> Result<PacketKey, DropReason> {
        match self.key {
            Some(k) => k,
            None => packet_key(data),
        }
    }
}

/// A received frame after the classify pass.
#[derive(Debug, Clone, Copy)]
pub(super) enum Frame {
    /// ARP (RFC 826).
    Arp,
    /// IP (the group-frame rule checked).
    Ip(PacketMeta),
}

impl<B: PacketBuf> Node<B> {
    /// The classify pass for one frame received on `in_if`: what it is, or
    /// why it is dropped (nothing is counted here).
    #[inline(always)]
    pub(super) fn classify(&self, in_if: u16, data: &[u8]) -> Result<Frame, GwDrop> {
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
                let meta = PacketMeta::of(ip).ok_or(GwDrop::BadFrame)?;
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
                Ok(Frame::Ip(meta))
            }
            _ => Err(GwDrop::Unsupported),
        }
    }
}
