//! ARP (RFC 826) and what ARP and IPv6 neighbour discovery share: the
//! checks on a claim, learning, solicitations, and the packets that wait
//! for a neighbour.

use super::*;

impl<B: PacketBuf> Node<B> {
    pub(super) fn arp_input(&mut self, in_if: u16, mut pkt: B) {
        let repr =
            match ArpPacket::new_checked(&pkt.data()[ETH_LEN..]).and_then(|p| ArpRepr::parse(&p)) {
                Ok(r) => r,
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
        let iface = &self.ifaces[usize::from(in_if)];
        let mac = iface.mac;
        let (spa, tpa) = (repr.source_protocol_addr, repr.target_protocol_addr);
        let sha = repr.source_hardware_addr.0;
        let for_us = iface.owns(IpAddr::V4(tpa));
        let sender = IpAddr::V4(spa);
        let request = repr.operation == ArpOperation::REQUEST;
        if spa.is_unspecified() {
            // An address probe (RFC 5227 §2.1.1) claims nothing.
        } else if repr.operation == ArpOperation::REPLY || (request && spa == tpa) {
            // A reply, or an announcement (a request for the sender's own
            // address): an answer, which only our own requests ask for.
            let asked = !request && self.asked(in_if, sender);
            let claim = Claim::Answer {
                asked,
                solicited: true,
                override_flag: true,
            };
            self.learn(in_if, sender, sha, claim);
        } else if request && for_us {
            // RFC 826's merge, as RFC 4861 §7.2.3 for a solicitation.
            self.learn(in_if, sender, sha, Claim::Request);
        } else {
            // Between other hosts.
            return self.drop_gw(GwDrop::NotForUs);
        }
        if request && for_us && unicast_mac(sha) {
            let reply = repr.reply(EthernetAddress(mac));
            let data = pkt.data_mut();
            write_eth(data, sha, mac, EtherType::ARP);
            if reply.emit(&mut data[ETH_LEN..]).is_err() {
                return self.drop_gw(GwDrop::BadFrame);
            }
            self.counters.neighbour_replies += 1;
            self.queue_tx(in_if, pkt);
        }
    }

    /// Whether an answer about `ip` on `iface` answers a request of ours
    /// (this worker's, or another's).
    pub(super) fn asked(&self, iface: u16, ip: IpAddr) -> bool {
        self.neigh.awaiting(iface, ip) || self.solicits.asked(iface, ip, self.now_ms)
    }

    pub(super) fn refuse(&mut self, r: Refused) {
        self.counters.neighbour_refused[r.index()] += 1;
    }

    /// Whether a packet received on `in_if` may teach that `ip` is at
    /// `mac`: a unicast link-layer address not ours, an address a
    /// neighbour can have, on the subnets of that interface.
    pub(super) fn check_claim(&self, in_if: u16, ip: IpAddr, mac: [u8; 6]) -> Result<(), Refused> {
        let bad_ip = match ip {
            IpAddr::V4(a) => {
                a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback()
            }
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback(),
        };
        if bad_ip
            || !unicast_mac(mac)
            || self
                .ifaces
                .iter()
                .any(|i| i.mac == mac || i.owns(ip) || i.subnet_edge(ip))
        {
            return Err(Refused::BadAddress);
        }
        if self.ifaces[usize::from(in_if)].on_link(ip) {
            Ok(())
        } else if self.ifaces.iter().any(|i| i.on_link(ip)) {
            Err(Refused::WrongInterface)
        } else {
            Err(Refused::OffSubnet)
        }
    }

    /// Applies a claim received on `in_if`, counting a refusal. Answers to
    /// our requests that gave or confirmed an address are passed on to the
    /// other workers.
    pub(super) fn learn(&mut self, in_if: u16, ip: IpAddr, mac: [u8; 6], claim: Claim) {
        if let Err(r) = self.check_claim(in_if, ip, mac) {
            return self.refuse(r);
        }
        match self.neigh.claim(in_if, ip, mac, claim, self.now_ms) {
            Ok(c) => {
                if c.resolved() {
                    self.flush_pending(in_if, ip);
                }
                let confirmed = matches!(
                    claim,
                    Claim::Answer {
                        asked: true,
                        solicited: true,
                        ..
                    }
                );
                if confirmed && c != Claimed::Unchanged && self.out.learned.len() < LEARNED_MAX {
                    self.out.learned.push((ip, mac, in_if));
                }
            }
            Err(r) => self.refuse(r),
        }
    }

    /// A neighbour another worker confirmed (it answered a request of
    /// ours): taken like an answer to our own request, so a different
    /// address for a live entry is still probed first. Flushes packets
    /// that waited for it.
    pub fn learn_neighbour(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        if usize::from(iface) >= self.ifaces.len() || self.check_claim(iface, ip, mac).is_err() {
            return;
        }
        let claim = Claim::Answer {
            asked: true,
            solicited: true,
            override_flag: true,
        };
        if let Ok(c) = self.neigh.claim(iface, ip, mac, claim, self.now_ms) {
            if c.resolved() {
                self.flush_pending(iface, ip);
            }
        }
    }

    /// A static neighbour from the configuration.
    pub fn add_static_neighbour(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        self.neigh.insert_static(ip, mac, iface);
        self.flush_pending(iface, ip);
    }

    /// Makes the static neighbours exactly `statics` (a reload): entries
    /// no longer configured go, new and changed ones are set.
    pub fn set_static_neighbours(&mut self, statics: &[(IpAddr, [u8; 6], u16)]) {
        let old: Vec<(IpAddr, [u8; 6], u16)> = self.neigh.statics().collect();
        for (ip, _, iface) in old {
            if !statics.iter().any(|&(i, _, f)| i == ip && f == iface) {
                self.neigh.remove_static(iface, ip);
            }
        }
        for &(ip, mac, iface) in statics {
            if usize::from(iface) < self.ifaces.len() {
                self.add_static_neighbour(ip, mac, iface);
            }
        }
    }

    /// Resolves the next hop towards `ip` afresh (the control thread asks
    /// when a peer stopped answering: its neighbour entry may be wrong):
    /// the learned entry loses its address and a request goes out now.
    /// Static entries are kept.
    pub fn reresolve(&mut self, ip: IpAddr, pool: &mut impl PacketPool<B>) {
        let Some(&hop) = self.routes.next_hop(ip) else {
            return;
        };
        let nh = hop.neighbour(ip);
        self.counters.neighbour_flushes += 1;
        if self.neigh.flush(hop.interface, nh, self.now_ms) {
            self.solicit(hop.interface, nh, None, pool);
        }
    }

    /// Sends an ARP request or a neighbour solicitation for `ip`: to
    /// everyone (broadcast, solicited-node multicast), or a unicast probe
    /// to the address the entry has (RFC 1122 §2.3.2.1, RFC 4861 §7.2.2).
    pub(super) fn solicit(
        &mut self,
        out_if: u16,
        ip: IpAddr,
        unicast: Option<[u8; 6]>,
        pool: &mut impl PacketPool<B>,
    ) {
        self.solicits.note(out_if, ip, self.now_ms);
        let Some(mut pkt) = pool.alloc() else {
            return self.drop_gw(GwDrop::NoBuffer);
        };
        let iface = &self.ifaces[usize::from(out_if)];
        let mac = iface.mac;
        match ip {
            IpAddr::V4(target) => {
                let Some(src) = iface.addr_v4() else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                let Ok(buf) = pkt.append(ETH_LEN + ArpRepr::LEN) else {
                    return self.drop_gw(GwDrop::NoBuffer);
                };
                write_eth(buf, unicast.unwrap_or([0xff; 6]), mac, EtherType::ARP);
                if ArpRepr::request(EthernetAddress(mac), src, target)
                    .emit(&mut buf[ETH_LEN..])
                    .is_err()
                {
                    return self.drop_gw(GwDrop::NoBuffer);
                }
                self.counters.neighbour_requests += 1;
                self.queue_tx(out_if, pkt)
            }
            IpAddr::V6(target) => {
                let Some(src) = iface.addr_v6() else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                // Solicited-node multicast (RFC 4291 §2.7.1).
                let t = target.octets();
                let group = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | u16::from(t[13]),
                    u16::from_be_bytes([t[14], t[15]]),
                );
                let (group, dst_mac) = match unicast {
                    Some(m) => (target, m),
                    None => (group, [0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                };
                let ns = Icmpv6Repr::NeighborSolicit {
                    target_addr: target,
                    source_lladdr: Some(EthernetAddress(mac)),
                };
                if write_icmpv6(&mut pkt, src, group, 255, &ns).is_err() {
                    return self.drop_gw(GwDrop::NoBuffer);
                }
                self.counters.neighbour_requests += 1;
                self.send_eth(out_if, pkt, dst_mac, EtherType::IPV6)
            }
        }
    }

    pub(super) fn flush_pending(&mut self, iface: u16, ip: IpAddr) {
        let Some(mac) = self.neigh.lookup(iface, ip) else {
            return;
        };
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next_hop == ip && self.pending[i].iface == iface {
                let p = self.pending.swap_remove(i);
                let ethertype = if ip.is_ipv4() {
                    EtherType::IPV4
                } else {
                    EtherType::IPV6
                };
                self.send_eth(p.iface, p.packet, mac, ethertype);
            } else {
                i += 1;
            }
        }
    }
}
