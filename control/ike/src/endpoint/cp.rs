//! Remote access (RFC 7296 §2.19, §3.15): the responder leases a virtual
//! IP to the peer from the configured pools and answers its CFG_REQUEST
//! with CFG_REPLY; the peer's Child SAs are narrowed to that address. The
//! initiator side asks for one and records what it got.

use std::net::IpAddr;

use super::*;
use crate::pool::Family;

/// The key a peer's leases are kept under: its IKE identity, typed.
pub fn identity_key(id: &Identification) -> String {
    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
    match id {
        Identification::Ipv4(a) => format!("ipv4:{a}"),
        Identification::Ipv6(a) => format!("ipv6:{a}"),
        Identification::Fqdn(s) => format!("fqdn:{s}"),
        Identification::KeyId(d) => format!("keyid:{}", hex(d)),
        Identification::Other { ty, data } => format!("id{}:{}", ty.0, hex(data)),
    }
}

/// A selector for exactly `a`, all protocols and ports.
fn host_ts(a: IpAddr) -> TrafficSelector {
    TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: a,
        end_addr: a,
    }
}

fn lock(p: &crate::pool::SharedPool) -> std::sync::MutexGuard<'_, crate::pool::Pool> {
    // The pool holds plain data; a panic elsewhere leaves it consistent.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Endpoint {
    /// The selectors the peer's side of a Child SA must lie within (§2.9):
    /// its virtual IPs when we leased it some, else the configured ones.
    pub(super) fn remote_ts_allowed(&self, sa: &IkeSa) -> Vec<TrafficSelector> {
        let leased: Vec<TrafficSelector> = sa
            .virtual_ips
            .iter()
            .filter(|v| v.lease.is_some())
            .map(|v| host_ts(v.addr))
            .collect();
        if leased.is_empty() {
            self.config.remote_ts.clone()
        } else {
            leased
        }
    }

    /// Responder, IKE_AUTH: the CFG_REPLY for the peer's CFG_REQUEST, its
    /// addresses leased to the IKE SA. `Ok(None)` when the tunnel has no
    /// pools (a CP is then ignored, §3.15). An error means no Child SA.
    pub(super) fn answer_cfg_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        peer: &Identification,
        ps: &[Payload],
    ) -> Result<Option<Payload>, IkeError> {
        if self.config.pools.is_empty() {
            return Ok(None);
        }
        let req = ps.iter().find_map(|p| match p {
            Payload::Cp(c) if c.cfg_type == CfgType::CFG_REQUEST => Some(c),
            _ => None,
        });
        // §3.15.1: an address attribute (empty or with the address the
        // client would like) asks for an address of its family.
        let mut wanted: Vec<(Family, Option<IpAddr>)> = Vec::new();
        for a in req.map(|r| r.attributes.as_slice()).unwrap_or_default() {
            let w = match a {
                CfgAttribute::Ip4Address(x) => (Family::V4, x.map(IpAddr::V4)),
                CfgAttribute::Ip6Address(x) => (Family::V6, x.map(|(a, _)| IpAddr::V6(a))),
                _ => continue,
            };
            if !wanted.iter().any(|(f, _)| *f == w.0) {
                wanted.push(w);
            }
        }
        if wanted.is_empty() {
            self.stats.cp_required_missing += 1;
            return Err(IkeError::FailedCpRequired);
        }
        let identity = identity_key(peer);
        let mut attrs = Vec::new();
        let mut dns: Vec<IpAddr> = Vec::new();
        let mut subnets: Vec<ipnet::IpNet> = Vec::new();
        for (f, requested) in wanted {
            for pool in &self.config.pools {
                let mut p = lock(pool);
                if !p.has(f) {
                    continue;
                }
                let Some(addr) = p.allocate(&identity, f, requested, now) else {
                    continue;
                };
                attrs.push(match addr {
                    IpAddr::V4(a) => CfgAttribute::Ip4Address(Some(a)),
                    IpAddr::V6(a) => CfgAttribute::Ip6Address(Some((a, 128))),
                });
                for d in &p.attributes().dns {
                    if !dns.contains(d) {
                        dns.push(*d);
                    }
                }
                for s in &p.attributes().subnets {
                    if !subnets.contains(s) {
                        subnets.push(*s);
                    }
                }
                drop(p);
                sa.virtual_ips.push(crate::sa::VirtualIp {
                    addr,
                    lease: Some((pool.clone(), identity.clone())),
                });
                break;
            }
        }
        if attrs.is_empty() {
            self.stats.cp_address_failures += 1;
            return Err(IkeError::InternalAddressFailure);
        }
        attrs.extend(dns.into_iter().map(|d| match d {
            IpAddr::V4(a) => CfgAttribute::Ip4Dns(Some(a)),
            IpAddr::V6(a) => CfgAttribute::Ip6Dns(Some(a)),
        }));
        attrs.extend(subnets.into_iter().map(|n| match n {
            ipnet::IpNet::V4(n) => CfgAttribute::Ip4Subnet(Some((n.network(), n.netmask()))),
            ipnet::IpNet::V6(n) => CfgAttribute::Ip6Subnet(Some((n.network(), n.prefix_len()))),
        }));
        let addrs: Vec<IpAddr> = sa.virtual_ips.iter().map(|v| v.addr).collect();
        self.stats.virtual_ips_assigned += addrs.len() as u64;
        self.emit(IkeEvent::VirtualIps { ike: sa.id, addrs });
        Ok(Some(Payload::Cp(CpPayload::new(CfgType::CFG_REPLY, attrs))))
    }

    /// Initiator: the CFG_REQUEST of IKE_AUTH, if we want addresses.
    pub(super) fn cfg_request(&self) -> Option<Payload> {
        let f = &self.config.request_vips;
        if f.is_empty() {
            return None;
        }
        Some(Payload::Cp(CpPayload::request(
            f.contains(&Family::V4),
            f.contains(&Family::V6),
        )))
    }

    /// Initiator: the addresses of the responder's CFG_REPLY.
    pub(super) fn on_cfg_reply(&mut self, sa: &mut IkeSa, ps: &[Payload]) {
        let Some(reply) = ps.iter().find_map(|p| match p {
            Payload::Cp(c) if c.cfg_type == CfgType::CFG_REPLY => Some(c),
            _ => None,
        }) else {
            return;
        };
        for a in &reply.attributes {
            let addr = match a {
                CfgAttribute::Ip4Address(Some(a)) => IpAddr::V4(*a),
                CfgAttribute::Ip6Address(Some((a, _))) => IpAddr::V6(*a),
                _ => continue,
            };
            if !sa.virtual_ips.iter().any(|v| v.addr == addr) {
                sa.virtual_ips
                    .push(crate::sa::VirtualIp { addr, lease: None });
            }
        }
        if !sa.virtual_ips.is_empty() {
            let addrs = sa.virtual_ips.iter().map(|v| v.addr).collect();
            self.emit(IkeEvent::VirtualIps { ike: sa.id, addrs });
        }
    }

    /// The IKE SA goes: its leases go back to their pools.
    pub(super) fn release_virtual_ips(&mut self, sa: &mut IkeSa) {
        let mut addrs = Vec::new();
        for v in sa.virtual_ips.drain(..) {
            if let Some((pool, identity)) = v.lease {
                lock(&pool).release(&identity, v.addr);
                addrs.push(v.addr);
            }
        }
        if !addrs.is_empty() {
            self.emit(IkeEvent::VirtualIpsReleased { ike: sa.id, addrs });
        }
    }

    /// The virtual IPs of an IKE SA (leased to the peer, or given to us).
    pub fn virtual_ips(&self, id: IkeSaId) -> Vec<IpAddr> {
        self.sas
            .get(&id.0)
            .map(|s| s.virtual_ips.iter().map(|v| v.addr).collect())
            .unwrap_or_default()
    }
}
