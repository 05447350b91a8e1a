//! Forwarding: policy for transit packets, TTL, MSS clamping, MTU and
//! fragmentation, routing, neighbour resolution and the transmit lists.

use super::*;

/// An IPv4 packet without DF, which a router may fragment.
pub(super) fn may_fragment(data: &[u8]) -> bool {
    data.len() >= 20
        && IpVersion::of(data) == Some(IpVersion::V4)
        && !Ipv4Packet::new_unchecked(data).dont_frag()
}

/// Splits an IPv4 packet into fragments of at most `max_len` bytes (RFC 791
/// §3.2), each in a new buffer from `pool`. RFC 791 copies only options with
/// the copy flag into later fragments; rather than parse options, a packet
/// that has any is refused (None, dropped as too big).
pub(super) fn fragment_v4<B: PacketBuf>(
    pkt: &B,
    max_len: usize,
    pool: &mut impl PacketPool<B>,
) -> Option<Vec<B>> {
    let data = pkt.data();
    let ip = Ipv4Packet::new_checked(data).ok()?;
    if ip.header_len() != 20 {
        return None;
    }
    let total = usize::from(ip.total_len());
    let chunk = (max_len.checked_sub(20)? / 8) * 8;
    if chunk == 0 {
        return None;
    }
    let base_offset = ip.frag_offset() as usize; // bytes
    let more = ip.more_frags();
    let payload = &data[20..total];
    let mut out = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let mut f = pool.alloc()?;
        let buf = f.append(20 + piece.len()).ok()?;
        buf[..20].copy_from_slice(&data[..20]);
        buf[20..].copy_from_slice(piece);
        let last = (i + 1) * chunk >= payload.len();
        let mut h = Ipv4Packet::new_unchecked(&mut buf[..20]);
        h.set_total_len((20 + piece.len()) as u16);
        h.set_frag_offset((base_offset + i * chunk) as u16);
        h.set_more_frags(more || !last);
        h.fill_checksum();
        out.push(f);
    }
    Some(out)
}

/// The largest inner length `l` with `outer(l) <= mtu`.
pub(super) fn largest_fitting(mtu: usize, outer: impl Fn(usize) -> usize) -> usize {
    let mut l = mtu;
    while l > 0 && outer(l) > mtu {
        l -= 1;
    }
    l
}
impl<B: PacketBuf> Node<B> {
    /// A packet through us: the SPD decides (RFC 4301 §5.1, §5.2).
    #[inline(always)]
    pub(super) fn transit_input(
        &mut self,
        in_if: u16,
        pkt: B,
        meta: &PacketMeta,
        pool: &mut impl PacketPool<B>,
    ) {
        if self.ifaces[usize::from(in_if)].role == Role::Wan {
            // ESP between hosts (transport-mode SAs) passes through us.
            if meta.spi.is_some_and(|spi| self.spi_owner.contains_key(spi)) {
                return self.esp_input(in_if, pkt, meta.esp, meta.spi, pool);
            }
            let PacketKey { key, opaque } = match meta.packet_key(pkt.data()) {
                Ok(k) => k,
                Err(DropReason::OpaquePorts) => return self.drop_esp(DropReason::OpaquePorts),
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
            // RFC 4301 §5.2: look the packet up as the reverse flow; if
            // policy protects that flow, plaintext must not be accepted.
            let reverse = PacketKey {
                key: FlowKey {
                    src: key.dst,
                    dst: key.src,
                    proto: key.proto,
                    sport: key.dport,
                    dport: key.sport,
                },
                opaque,
            };
            match self.engine.packet_action(&reverse) {
                Ok(Action::Bypass) => self.forward(in_if, pkt, pool),
                Ok(Action::Protect(_)) => self.drop_gw(GwDrop::UnprotectedInbound),
                Ok(Action::Discard) => self.drop_esp(DropReason::PolicyDiscard),
                Err(r) => self.drop_esp(r),
            }
        } else {
            // Borrowed where it was built: moving the key out of the
            // `Result` copied it in eight-byte words over field-sized
            // stores, a store-forwarding stall per packet.
            let key = meta.packet_key(pkt.data());
            let key = match &key {
                Ok(k) => k,
                Err(DropReason::OpaquePorts) => {
                    return self.engine_outbound_drop(DropReason::OpaquePorts)
                }
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
            // A packet whose ports are unknown (a non-initial fragment) is
            // decided by the ANY-port policies alone and never from the
            // flow cache (see `Spd::lookup_opaque`).
            match self.engine.packet_action(key) {
                Ok(Action::Protect(slot)) => self.protect(in_if, slot, pkt, pool, false),
                Ok(Action::Bypass) => self.forward(in_if, pkt, pool),
                Ok(Action::Discard) => self.engine_outbound_drop(DropReason::PolicyDiscard),
                Err(r) => self.engine_outbound_drop(r),
            }
        }
    }

    /// Plain forwarding (bypass): TTL, MTU, MSS, route.
    pub(super) fn forward(&mut self, in_if: u16, mut pkt: B, pool: &mut impl PacketPool<B>) {
        if !self.ttl_ok(&mut pkt) {
            return self.ttl_exceeded(in_if, pkt, pool);
        }
        self.counters.bypassed += 1;
        self.route_out(pkt, pool, true)
    }

    /// Decrements the TTL / hop limit; false if it ran out (the packet
    /// is then unchanged).
    pub(super) fn ttl_ok(&mut self, pkt: &mut B) -> bool {
        let data = pkt.data_mut();
        let expired = match IpVersion::of(data) {
            Some(IpVersion::V4) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
                if ip.ttl() <= 1 {
                    true
                } else {
                    ip.decrement_ttl();
                    false
                }
            }
            _ => {
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
                if ip.hop_limit() <= 1 {
                    true
                } else {
                    let h = ip.hop_limit() - 1;
                    ip.set_hop_limit(h);
                    false
                }
            }
        };
        !expired
    }

    pub(super) fn clamp_mss(&mut self, pkt: &mut B, max: u16) {
        let data = pkt.data_mut();
        let (proto, l4, end) = match IpVersion::of(data) {
            Some(IpVersion::V4) => {
                let Ok(ip) = Ipv4Packet::new_checked(&data[..]) else {
                    return;
                };
                if ip.frag_offset() != 0 {
                    return;
                }
                (
                    ip.protocol(),
                    usize::from(ip.header_len()),
                    usize::from(ip.total_len()),
                )
            }
            _ => {
                let Ok(ip) = Ipv6Packet::new_checked(&data[..]) else {
                    return;
                };
                let Ok(ext) = ip.ext_headers() else { return };
                (
                    ext.upper_protocol,
                    ext.upper_offset,
                    40 + usize::from(ip.payload_len()),
                )
            }
        };
        if proto != IpProtocol::TCP || l4 >= end {
            return;
        }
        if let Ok(mut tcp) = TcpPacket::new_checked(&mut data[l4..end]) {
            if let Ok(Some(_)) = tcp.clamp_mss(max) {
                self.counters.mss_clamped += 1;
            }
        }
    }

    /// Routes an IP packet and queues it on the egress interface, resolving
    /// the next hop. `check_mtu`: forwarded traffic gets ICMP errors when it
    /// does not fit; our own packets do not.
    pub(super) fn route_out(&mut self, pkt: B, pool: &mut impl PacketPool<B>, check_mtu: bool) {
        let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Some(&hop) = self.routes.next_hop(dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        self.deliver(pkt, dst, hop, pool, check_mtu)
    }

    /// Sends an IP packet for `dst` through `hop`: MTU check (when asked),
    /// neighbour resolution, link-layer header, transmit list.
    pub(super) fn deliver(
        &mut self,
        pkt: B,
        dst: IpAddr,
        hop: crate::route::NextHop,
        pool: &mut impl PacketPool<B>,
        check_mtu: bool,
    ) {
        let out_if = hop.interface;
        let mtu = usize::from(self.ifaces[usize::from(out_if)].mtu);
        if check_mtu && pkt.len() > mtu {
            if may_fragment(pkt.data()) {
                match fragment_v4(&pkt, mtu, pool) {
                    Some(frags) => {
                        drop(pkt);
                        for f in frags {
                            self.route_out(f, pool, false);
                        }
                    }
                    None => self.drop_gw(GwDrop::TooBig),
                }
                return;
            }
            self.drop_gw(GwDrop::TooBig);
            return self.icmp_too_big(out_if, pkt, mtu as u16, pool);
        }
        let nh = hop.neighbour(dst);
        let ethertype = if dst.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        match self.neigh.resolve(out_if, nh, self.now_ms) {
            Resolve::Use { mac, probe, .. } => {
                if probe {
                    self.solicit(out_if, nh, Some(mac), pool);
                }
                self.send_eth(out_if, pkt, mac, ethertype)
            }
            Resolve::Wait { solicit } => {
                if solicit {
                    self.solicit(out_if, nh, None, pool);
                }
                self.expire_pending();
                if self.pending.len() >= PENDING_MAX {
                    return self.drop_gw(GwDrop::NoNeighbour);
                }
                self.pending.push(Pending {
                    next_hop: nh,
                    iface: out_if,
                    since_ms: self.now_ms,
                    packet: pkt,
                });
            }
            Resolve::Full => self.drop_gw(GwDrop::NoNeighbour),
        }
    }

    pub(super) fn send_eth(
        &mut self,
        out_if: u16,
        mut pkt: B,
        dst_mac: [u8; 6],
        ethertype: EtherType,
    ) {
        let src_mac = self.ifaces[usize::from(out_if)].mac;
        match pkt.prepend(ETH_LEN) {
            Ok(h) => write_eth(h, dst_mac, src_mac, ethertype),
            Err(_) => return self.drop_gw(GwDrop::TooBig),
        }
        self.queue_tx(out_if, pkt)
    }

    pub(super) fn queue_tx(&mut self, out_if: u16, pkt: B) {
        self.counters.tx += 1;
        self.out.tx[usize::from(out_if)].push(pkt);
    }

    /// Drops packets that waited too long for their neighbour.
    pub fn expire_pending(&mut self) {
        let now = self.now_ms;
        let before = self.pending.len();
        self.pending
            .retain(|p| now.saturating_sub(p.since_ms) < PENDING_TIMEOUT_MS);
        let expired = (before - self.pending.len()) as u64;
        self.counters.drops[GwDrop::NoNeighbour.index()] += expired;
    }

    /// Number of packets waiting for a neighbour.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}
