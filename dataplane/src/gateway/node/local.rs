//! Packets for the gateway itself (IKE punted to the control thread) and
//! packets it originates (`send_local`, `transmit`).

use super::*;

impl<B: PacketBuf> Node<B> {
    #[inline]
    pub(super) fn is_local(&self, ip: IpAddr) -> bool {
        self.local_addrs.contains(&ip)
    }

    #[inline(always)]
    pub(super) fn local_input(
        &mut self,
        in_if: u16,
        pkt: B,
        meta: &PacketMeta,
        pool: &mut impl PacketPool<B>,
    ) {
        match meta.proto {
            IpProtocol::ICMP => self.icmpv4_local(in_if, pkt, meta.l4, pool),
            IpProtocol::ICMPV6 => self.icmpv6_local(in_if, pkt, meta.l4, pool),
            IpProtocol::UDP => match meta.dport {
                Some(IKE_PORT) => self.punt(in_if, pkt),
                Some(NAT_T_PORT) => self.esp_input(in_if, pkt, meta.esp, meta.spi, pool),
                _ => self.drop_gw(GwDrop::NotForUs),
            },
            IpProtocol::ESP => self.esp_input(in_if, pkt, meta.esp, meta.spi, pool),
            _ => self.drop_gw(GwDrop::NotForUs),
        }
    }

    pub(super) fn punt(&mut self, in_if: u16, pkt: B) {
        self.counters.punted += 1;
        self.out.punts.push((in_if, pkt.data().to_vec()));
    }

    /// An IP packet from the control plane: route and send it. These are
    /// IKE messages and NAT keepalives between the gateway's WAN address
    /// and its peers, the traffic that sets up the SAs, so they do not go
    /// through the SPD (an SPD that protected or discarded them would
    /// leave the tunnels unable to form).
    pub fn transmit(&mut self, pkt: B, pool: &mut impl PacketPool<B>) {
        self.counters.transmitted_for_control += 1;
        self.route_out(pkt, pool, false)
    }

    /// An IP packet the gateway originated (echo reply, ICMP error), `in_if`
    /// the interface of the packet that caused it. Out of a LAN interface
    /// it stays on the protected side and is sent. Out of a WAN interface
    /// it crosses the IPsec boundary, so its own addresses, protocol and
    /// ports go through the SPD like any outbound packet (RFC 4301 §5.1;
    /// for ICMP errors about decrypted packets, §6.2): PROTECT seals it
    /// with the policy's SA, BYPASS sends it, and DISCARD, no policy or a
    /// PROTECT whose SA is missing drop it (counted as
    /// [`GwDrop::LocalPolicy`]). It is never sent in clear otherwise: an
    /// error quoting a decrypted packet would put its plaintext on the
    /// WAN.
    pub(super) fn send_local(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Some(&hop) = self.routes.next_hop(dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        if self.ifaces[usize::from(hop.interface)].role == Role::Lan {
            return self.deliver(pkt, dst, hop, pool, false);
        }
        match packet_key(pkt.data()).and_then(|k| self.engine.packet_action(&k)) {
            Ok(Action::Bypass) => self.deliver(pkt, dst, hop, pool, false),
            Ok(Action::Protect(slot)) => self.protect(in_if, slot, pkt, pool, true),
            Ok(Action::Discard) | Err(_) => self.drop_gw(GwDrop::LocalPolicy),
        }
    }
}
