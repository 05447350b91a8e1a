//! ICMP and ICMPv6 for the gateway itself: echo, the errors it sends
//! (time exceeded, fragmentation needed / packet too big) and their rate
//! limit.

use super::*;

/// The token bucket that limits the ICMP errors one worker sends (RFC 4443
/// §2.4(f) requires limiting ICMPv6 errors and suggests a token bucket;
/// RFC 1812 §4.3.2.8 asks the same of IPv4 routers). Without it, anyone
/// who can make the gateway drop packets (TTL 1, DF over the MTU) makes it
/// send one error per packet, back through the tunnel or onto the LAN.
/// Credit is in thousandths of an error, so a millisecond adds
/// `per_second` of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct IcmpLimit {
    pub(super) per_second: u32,
    pub(super) burst: u32,
    pub(super) credit: u64,
    pub(super) last_ms: u64,
}

impl IcmpLimit {
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            credit: u64::from(burst) * 1000,
            last_ms: 0,
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(u64::from(self.per_second)))
            .min(u64::from(self.burst) * 1000);
        if self.credit >= 1000 {
            self.credit -= 1000;
            true
        } else {
            false
        }
    }
}

/// Which ICMP error to send.
#[derive(Debug, Clone, Copy)]
pub(super) enum IcmpError {
    TimeExceeded,
    TooBig(u16),
}
impl<B: PacketBuf> Node<B> {
    pub(super) fn icmpv4_local(
        &mut self,
        in_if: u16,
        mut pkt: B,
        l4: usize,
        pool: &mut impl PacketPool<B>,
    ) {
        let data = pkt.data_mut();
        let Ok(ip) = Ipv4Packet::new_checked(&data[..]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let total = usize::from(ip.total_len());
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(icmp) = Icmpv4Packet::new_checked(&data[l4..total]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        if icmp.msg_type() != Icmpv4Type::ECHO_REQUEST || !icmp.verify_checksum() {
            return self.drop_gw(GwDrop::NotForUs);
        }
        // Echo reply in place: swap addresses, type 0, fix checksums.
        {
            let mut icmp = Icmpv4Packet::new_unchecked(&mut data[l4..total]);
            icmp.set_msg_type(Icmpv4Type::ECHO_REPLY);
            icmp.fill_checksum();
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        self.counters.echo_replies += 1;
        self.send_local(in_if, pkt, pool)
    }

    pub(super) fn icmpv6_local(
        &mut self,
        in_if: u16,
        mut pkt: B,
        l4: usize,
        pool: &mut impl PacketPool<B>,
    ) {
        let data = pkt.data_mut();
        let Ok(ip) = Ipv6Packet::new_checked(&data[..]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let end = 40 + usize::from(ip.payload_len());
        let hop_limit = ip.hop_limit();
        let Ok(icmp) = Icmpv6Packet::new_checked(&data[l4..end]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Ok(repr) = Icmpv6Repr::parse(src, dst, &icmp) else {
            return self.drop_gw(GwDrop::NotForUs);
        };
        match repr {
            Icmpv6Repr::EchoRequest { .. } if self.is_local(IpAddr::V6(dst)) => {
                {
                    let mut icmp = Icmpv6Packet::new_unchecked(&mut data[l4..end]);
                    icmp.set_msg_type(Icmpv6Type::ECHO_REPLY);
                    icmp.fill_checksum(dst, src);
                }
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
                ip.set_src_addr(dst);
                ip.set_dst_addr(src);
                ip.set_hop_limit(64);
                self.counters.echo_replies += 1;
                self.send_local(in_if, pkt, pool)
            }
            Icmpv6Repr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => self.neighbor_solicit(in_if, pkt, src, hop_limit, target_addr, source_lladdr),
            Icmpv6Repr::NeighborAdvert {
                solicited,
                override_flag,
                target_addr,
                target_lladdr,
                ..
            } => self.neighbor_advert(
                in_if,
                dst,
                hop_limit,
                (solicited, override_flag),
                target_addr,
                target_lladdr,
            ),
            _ => self.drop_gw(GwDrop::NotForUs),
        }
    }

    pub(super) fn ttl_exceeded(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        self.drop_gw(GwDrop::TtlExceeded);
        self.icmp_error_packet(in_if, pkt, IcmpError::TimeExceeded, pool)
    }

    /// Turns the offending packet (IP header first) into an ICMP error to
    /// its source, in place, and sends it ([`Self::send_local`]) if the
    /// rate limit allows.
    pub(super) fn icmp_error_packet(
        &mut self,
        in_if: u16,
        mut pkt: B,
        kind: IcmpError,
        pool: &mut impl PacketPool<B>,
    ) {
        let data = pkt.data();
        match IpVersion::of(data) {
            Some(IpVersion::V4) => {
                let Ok(ip) = Ipv4Packet::new_checked(data) else {
                    return;
                };
                let src = ip.src_addr();
                // RFC 1812 §4.3.2.7: no errors about ICMP errors,
                // fragments or broadcast/multicast.
                if ip.frag_offset() != 0
                    || src.is_multicast()
                    || src.is_broadcast()
                    || src.is_unspecified()
                {
                    return;
                }
                if ip.protocol() == IpProtocol::ICMP {
                    let t = data.get(usize::from(ip.header_len())).copied().unwrap_or(0);
                    if t != 0 && t != 8 {
                        return;
                    }
                }
                let Some(our) = self.ifaces[usize::from(in_if)]
                    .addr_v4()
                    .or_else(|| self.any_v4())
                else {
                    return;
                };
                if !self.icmp_limit.take(self.now_ms) {
                    return self.drop_gw(GwDrop::IcmpRateLimited);
                }
                let quote_len = crate::wire::icmp::icmpv4_quote(data).len();
                let len = pkt.len();
                if pkt.trim(len - quote_len).is_err() {
                    return;
                }
                let Ok(hdr) = pkt.prepend(28) else { return };
                hdr.fill(0);
                let total = pkt.len();
                let (quote_start, data) = (28, pkt.data_mut());
                let (head, quote) = data.split_at_mut(quote_start);
                let repr = match kind {
                    IcmpError::TimeExceeded => Icmpv4Repr::ttl_exceeded(quote),
                    IcmpError::TooBig(mtu) => Icmpv4Repr::frag_needed(mtu, quote),
                };
                let mut icmp_buf = [0u8; 8];
                {
                    // Emit header + quote into a temporary view: the quote
                    // is already in place, so emit into a full-size buffer
                    // would overlap; compute the checksum over both parts.
                    let (t, code, rest) = match repr {
                        Icmpv4Repr::TimeExceeded { code, .. } => (11u8, code, [0u8; 4]),
                        Icmpv4Repr::DstUnreachable {
                            code, next_hop_mtu, ..
                        } => {
                            let m = next_hop_mtu.to_be_bytes();
                            (3u8, code, [0, 0, m[0], m[1]])
                        }
                        _ => return,
                    };
                    icmp_buf[0] = t;
                    icmp_buf[1] = code;
                    icmp_buf[4..8].copy_from_slice(&rest);
                    let sum = crate::wire::ip::checksum::combine(&[
                        crate::wire::ip::checksum::data(&icmp_buf),
                        crate::wire::ip::checksum::data(quote),
                    ]);
                    icmp_buf[2..4].copy_from_slice(&(!sum).to_be_bytes());
                }
                head[20..28].copy_from_slice(&icmp_buf);
                let mut ip = Ipv4Packet::new_unchecked(&mut head[..20]);
                ip.set_version(4);
                ip.set_header_len(20);
                ip.set_total_len(total as u16);
                ip.set_ttl(64);
                ip.set_protocol(IpProtocol::ICMP);
                ip.set_src_addr(our);
                ip.set_dst_addr(src);
                ip.fill_checksum();
            }
            _ => {
                let Ok(ip) = Ipv6Packet::new_checked(data) else {
                    return;
                };
                let src = ip.src_addr();
                if src.is_multicast() || src.is_unspecified() {
                    return;
                }
                if ip.next_header() == IpProtocol::ICMPV6 && data.get(40).is_some_and(|t| *t < 128)
                {
                    return;
                }
                let Some(our) = self.ifaces[usize::from(in_if)]
                    .addr_v6()
                    .or_else(|| self.any_v6())
                else {
                    return;
                };
                if !self.icmp_limit.take(self.now_ms) {
                    return self.drop_gw(GwDrop::IcmpRateLimited);
                }
                let quote_len = crate::wire::icmp::icmpv6_quote(data).len();
                let len = pkt.len();
                if pkt.trim(len - quote_len).is_err() {
                    return;
                }
                let Ok(hdr) = pkt.prepend(48) else { return };
                hdr.fill(0);
                let total = pkt.len();
                let data = pkt.data_mut();
                {
                    let mut icmp = Icmpv6Packet::new_unchecked(&mut data[40..total]);
                    match kind {
                        IcmpError::TimeExceeded => {
                            icmp.set_msg_type(Icmpv6Type::TIME_EXCEEDED);
                        }
                        IcmpError::TooBig(mtu) => {
                            icmp.set_msg_type(Icmpv6Type::PACKET_TOO_BIG);
                            icmp.set_mtu(u32::from(mtu));
                        }
                    }
                    icmp.set_msg_code(0);
                    icmp.fill_checksum(our, src);
                }
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..40]);
                ip.set_version(6);
                ip.set_payload_len((total - 40) as u16);
                ip.set_next_header(IpProtocol::ICMPV6);
                ip.set_hop_limit(64);
                ip.set_src_addr(our);
                ip.set_dst_addr(src);
            }
        }
        self.counters.icmp_errors += 1;
        self.send_local(in_if, pkt, pool)
    }

    pub(super) fn icmp_too_big(
        &mut self,
        in_if: u16,
        pkt: B,
        mtu: u16,
        pool: &mut impl PacketPool<B>,
    ) {
        // IPv4 without DF: no ICMP; the packet is dropped (counted).
        let data = pkt.data();
        if IpVersion::of(data) == Some(IpVersion::V4)
            && !Ipv4Packet::new_unchecked(data).dont_frag()
        {
            return;
        }
        self.icmp_error_packet(in_if, pkt, IcmpError::TooBig(mtu), pool)
    }

    pub(super) fn any_v4(&self) -> Option<Ipv4Addr> {
        self.ifaces.iter().find_map(Interface::addr_v4)
    }

    pub(super) fn any_v6(&self) -> Option<Ipv6Addr> {
        self.ifaces.iter().find_map(Interface::addr_v6)
    }
}
