//! IPv6 neighbour discovery (RFC 4861): solicitations and advertisements.

use super::*;

impl<B: PacketBuf> Node<B> {
    /// A neighbour solicitation for `target_addr` from `src` (RFC 4861
    /// §7.1.1, §7.2.3): learn the sender, answer with an advertisement.
    pub(super) fn neighbor_solicit(
        &mut self,
        in_if: u16,
        mut pkt: B,
        src: Ipv6Addr,
        hop_limit: u8,
        target_addr: Ipv6Addr,
        source_lladdr: Option<EthernetAddress>,
    ) {
        // RFC 4861 §7.1.1: hop limit 255.
        if hop_limit != 255 {
            return self.refuse(Refused::Invalid);
        }
        if !self.ifaces[usize::from(in_if)].owns(IpAddr::V6(target_addr)) {
            return self.drop_gw(GwDrop::NotForUs);
        }
        let Some(peer_mac) = source_lladdr else {
            // DAD probes (unspecified source) carry no address.
            return self.drop_gw(GwDrop::NotForUs);
        };
        if !unicast_mac(peer_mac.0) {
            return self.refuse(Refused::BadAddress);
        }
        if !src.is_unspecified() {
            self.learn(in_if, IpAddr::V6(src), peer_mac.0, Claim::Request);
        }
        let mac = self.ifaces[usize::from(in_if)].mac;
        let na = Icmpv6Repr::NeighborAdvert {
            router: true,
            solicited: true,
            override_flag: true,
            target_addr,
            target_lladdr: Some(EthernetAddress(mac)),
        };
        if write_icmpv6(&mut pkt, target_addr, src, 255, &na).is_err() {
            return self.drop_gw(GwDrop::BadFrame);
        }
        self.counters.neighbour_replies += 1;
        self.send_eth(in_if, pkt, peer_mac.0, EtherType::IPV6)
    }

    /// A neighbour advertisement sent to `dst` (RFC 4861 §7.1.2, §7.2.5);
    /// the pair is its solicited and override flags.
    pub(super) fn neighbor_advert(
        &mut self,
        in_if: u16,
        dst: Ipv6Addr,
        hop_limit: u8,
        (solicited, override_flag): (bool, bool),
        target_addr: Ipv6Addr,
        target_lladdr: Option<EthernetAddress>,
    ) {
        // RFC 4861 §7.1.2: hop limit 255; S clear when sent to a
        // group. Without a target link-layer option an
        // advertisement only confirms, which a gateway takes from
        // ones that carry it.
        let Some(mac) =
            target_lladdr.filter(|_| hop_limit == 255 && !(solicited && dst.is_multicast()))
        else {
            return self.refuse(Refused::Invalid);
        };
        let target = IpAddr::V6(target_addr);
        let claim = Claim::Answer {
            asked: self.asked(in_if, target),
            solicited,
            override_flag,
        };
        self.learn(in_if, target, mac.0, claim);
    }
}

/// Writes an IPv6 packet carrying `msg` into `pkt` (replacing its data).
pub(super) fn write_icmpv6<B: PacketBuf>(
    pkt: &mut B,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    msg: &Icmpv6Repr<'_>,
) -> Result<(), ()> {
    let len = msg.buffer_len();
    let cur = pkt.len();
    pkt.trim(cur).map_err(|_| ())?;
    let buf = pkt.append(40 + len).map_err(|_| ())?;
    buf[..40].fill(0);
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[..40]);
    ip.set_version(6);
    ip.set_payload_len(len as u16);
    ip.set_next_header(IpProtocol::ICMPV6);
    ip.set_hop_limit(hop_limit);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[40..]);
    msg.emit(src, dst, &mut icmp).map_err(|_| ())
}
