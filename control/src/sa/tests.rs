//! The planner alone, then two whole control planes (configuration, IKE
//! driver, planner) each driving a data-plane node on heap buffers, the
//! way the control thread drives its workers: no DPDK, no root.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::esp::Spd;
use dataplane::gateway::{ControlMsg, Interface, Node, PacketPool, Role};

use super::*;
use crate::config::GatewayConfig;
use crate::ike_driver::{build_udp, IkeAction, IkeDriver};

const KEY_A: &str = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
const KEY_B: &str = "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3";

/// Site `a` or `b`: tunnel `t` keyed by IKE (10.1.0.0/24 <-> 10.2.0.0/24)
/// and, with `manual`, tunnel `m` keyed by hand (10.1.1.0/24 <->
/// 10.2.1.0/24) with the pairs `(spi_a_to_b, spi_b_to_a)`.
fn site_text(site: char, manual: &[(u32, u32)]) -> String {
    let a = site == 'a';
    let (me, peer, n, p) = if a {
        ("192.0.2.1", "192.0.2.2", 1, 2)
    } else {
        ("192.0.2.2", "192.0.2.1", 2, 1)
    };
    let (start, lid, rid) = if a {
        ("initiate", "gw-a.example", "gw-b.example")
    } else {
        ("listen", "gw-b.example", "gw-a.example")
    };
    let mut text = format!(
        r#"
[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["10.{n}.0.1/16"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["{me}/24"]
[[route]]
prefix = "10.{p}.0.0/16"
via = "{peer}"
interface = "wan"
[[tunnel]]
name = "t"
local_addrs = "{me}"
remote_addrs = "{peer}"
  [[tunnel.policy]]
  local_ts = "10.{n}.0.0/24"
  remote_ts = "10.{p}.0.0/24"
  [tunnel.ike]
  local_id = "{lid}"
  remote_id = "{rid}"
  psk = "an example PSK for the planner test"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "{start}"
"#
    );
    if !manual.is_empty() {
        text.push_str(&format!(
            r#"
[[tunnel]]
name = "m"
local_addrs = "{me}"
remote_addrs = "{peer}"
  [[tunnel.policy]]
  local_ts = "10.{n}.1.0/24"
  remote_ts = "10.{p}.1.0/24"
"#
        ));
        for (ab, ba) in manual {
            let (spi_in, spi_out, key_in, key_out) = if a {
                (ba, ab, KEY_B, KEY_A)
            } else {
                (ab, ba, KEY_A, KEY_B)
            };
            text.push_str(&format!(
                "  [[tunnel.sa]]\n  spi_in = {spi_in:#x}\n  spi_out = {spi_out:#x}\n  algorithm = \"aes256gcm16\"\n  key_in = \"{key_in}\"\n  key_out = \"{key_out}\"\n"
            ));
        }
    }
    text
}

fn config(site: char, manual: &[(u32, u32)]) -> GatewayConfig {
    GatewayConfig::from_str(&site_text(site, manual), "test.toml").unwrap()
}

// ------------------------------------------------------------ the planner

fn kinds(msgs: &[(u16, ControlMsg)]) -> Vec<String> {
    msgs.iter()
        .map(|(w, m)| match m {
            ControlMsg::InstallInbound(sa) => format!("{w} +in {:x}", sa.config().spi.get()),
            ControlMsg::InstallOutbound { slot, sa } => {
                format!("{w} +out{} {:x}", slot.0, sa.config().spi.get())
            }
            ControlMsg::RemoveInbound(spi) => format!("{w} -in {:x}", spi.get()),
            ControlMsg::RemoveOutbound { slot } => format!("{w} -out{}", slot.0),
            ControlMsg::InboundOwner { spi, worker } => {
                format!("{w} own-in {:x} {worker:?}", spi.get())
            }
            ControlMsg::OutboundOwner { slot, worker } => {
                format!("{w} own-out{} {worker:?}", slot.0)
            }
            other => format!("{w} {other:?}"),
        })
        .collect()
}

fn plan_and_commit(p: &mut Planner, w: &Wanted) -> Vec<String> {
    let plan = p.plan(&[w]);
    assert!(plan.failed.is_empty(), "{:?}", plan.failed);
    kinds(&p.commit(plan))
}

/// The configuration's SAs go to the tunnel's owner, every worker learns
/// the owner, and a second plan of the same finds nothing to do.
#[test]
fn manual_sas_go_to_their_owner_and_every_worker_learns_it() {
    let c = config('a', &[(0x1001, 0x2001)]);
    let mut p = Planner::new(2, c.dataplane.crypto_backend, vec!["t".into(), "m".into()]);
    assert_eq!(p.owner_of(1), 1);
    let msgs = plan_and_commit(&mut p, &Wanted::from_config(&c));
    assert_eq!(
        msgs,
        [
            "1 +in 2001",
            "0 own-in 2001 Some(1)",
            "1 own-in 2001 Some(1)",
            "1 +out1 1001",
            "0 own-out1 Some(1)",
            "1 own-out1 Some(1)",
        ]
    );
    assert_eq!(p.installed().inbound_tunnel(0x2001), Some(1));
    assert_eq!(p.installed().outbound_spi(1), Some(0x1001));
    assert!(p.plan(&[&Wanted::from_config(&c)]).is_empty());
}

/// A manual rekey done in one step still makes before it breaks: the new
/// inbound SA first, then the outbound slot moves, then the old inbound
/// SA goes.
#[test]
fn a_replaced_pair_is_installed_before_the_old_one_goes() {
    let old = config('a', &[(0x1001, 0x2001)]);
    let new = config('a', &[(0x1002, 0x2002)]);
    let mut p = Planner::new(1, old.dataplane.crypto_backend, vec![]);
    plan_and_commit(&mut p, &Wanted::from_config(&old));
    let msgs = plan_and_commit(&mut p, &Wanted::from_config(&new));
    assert_eq!(
        msgs,
        [
            "0 +in 2002",
            "0 own-in 2002 Some(0)",
            "0 +out1 1002",
            "0 own-out1 Some(0)",
            "0 -in 2001",
            "0 own-in 2001 None",
        ]
    );
}

/// Of two sources, the second's outbound SA takes the slot (IKE over a
/// manual pair); when it goes, the first's comes back. Both sources'
/// inbound SAs stay.
#[test]
fn the_later_source_owns_the_outbound_slot() {
    let c = config('a', &[(0x1001, 0x2001)]);
    let manual = Wanted::from_config(&c);
    let mut ike = Wanted::new();
    let spec = |spi: u32| {
        let mut s = manual.tunnel(1).unwrap().outbound.clone().unwrap();
        s.config.spi = dataplane::esp::Spi::new(spi).unwrap();
        s
    };
    let mut inb = manual.tunnel(1).unwrap().inbound[0].clone();
    inb.config.spi = dataplane::esp::Spi::new(0x3001).unwrap();
    ike.tunnel_mut(1).inbound.push(inb);
    ike.tunnel_mut(1).outbound = Some(spec(0x4001));
    let mut p = Planner::new(1, c.dataplane.crypto_backend, vec![]);
    let plan = p.plan(&[&manual, &ike]);
    assert_eq!(
        kinds(&p.commit(plan)),
        [
            "0 +in 2001",
            "0 own-in 2001 Some(0)",
            "0 +in 3001",
            "0 own-in 3001 Some(0)",
            "0 +out1 4001",
            "0 own-out1 Some(0)",
        ]
    );
    let plan = p.plan(&[&manual, &Wanted::new()]);
    assert_eq!(
        kinds(&p.commit(plan)),
        [
            "0 +out1 1001",
            "0 own-out1 Some(0)",
            "0 -in 3001",
            "0 own-in 3001 None",
        ]
    );
}

/// An SA whose keys do not fit is left out and reported; the SA in the
/// slot stays and nothing about it is sent.
#[test]
fn an_sa_that_does_not_build_is_reported_and_left_out() {
    let c = config('a', &[(0x1001, 0x2001)]);
    let good = Wanted::from_config(&c);
    let mut p = Planner::new(1, c.dataplane.crypto_backend, vec![]);
    plan_and_commit(&mut p, &good);
    let mut bad = good.clone();
    let sas = bad.tunnel_mut(1);
    let mut out = sas.outbound.clone().unwrap();
    out.config.spi = dataplane::esp::Spi::new(0x1002).unwrap();
    out.keys = dataplane::crypto::SaKeys::new(&[1; 5], &[]);
    sas.outbound = Some(out);
    let plan = p.plan(&[&bad]);
    assert_eq!(plan.failed.len(), 1);
    assert!(
        plan.failed[0]
            .to_string()
            .contains("outbound SA 0x00001002 of tunnel 1"),
        "{}",
        plan.failed[0]
    );
    assert!(plan.is_empty());
    p.commit(plan);
    assert_eq!(p.installed().outbound_spi(1), Some(0x1001));
}

// ------------------------------------------- two control planes, two nodes

struct Pool;

impl PacketPool<HeapBuf> for Pool {
    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::new(128, &[], 2048))
    }
}

const LAN_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0xa, 0xfe], [2, 0, 0, 0, 0xb, 0xfe]];
const WAN_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0xa, 0xff], [2, 0, 0, 0, 0xb, 0xff]];
const HOST_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0xa, 1], [2, 0, 0, 0, 0xb, 1]];

/// One gateway: what the control thread holds (configuration, IKE
/// driver, planner, manual SAs) and one worker's node.
struct Site {
    i: usize,
    config: GatewayConfig,
    ike: IkeDriver,
    planner: Planner,
    manual: Wanted,
    node: Node<HeapBuf>,
}

fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

impl Site {
    fn new(site: char, manual: &[(u32, u32)]) -> Self {
        let i = usize::from(site == 'b');
        let config = config(site, manual);
        let mut seed = (i as u64 + 1) << 40;
        let ike = IkeDriver::new(&config, t0(), &mut || {
            seed += 1;
            Box::new(crate::ike::sim::SplitMix(seed))
        })
        .unwrap();
        let ifaces = config
            .interfaces
            .iter()
            .map(|c| Interface {
                name: c.name.clone(),
                mac: if c.role == crate::config::Role::Lan {
                    LAN_MAC[i]
                } else {
                    WAN_MAC[i]
                },
                role: match c.role {
                    crate::config::Role::Lan => Role::Lan,
                    crate::config::Role::Wan => Role::Wan,
                },
                addrs: c.addresses.clone(),
                mtu: c.mtu,
                mss_clamp: c.mss_clamp,
            })
            .collect();
        let mut node = Node::new(0, ifaces, config.route_table());
        let peer: IpAddr = if i == 0 { "192.0.2.2" } else { "192.0.2.1" }
            .parse()
            .unwrap();
        node.add_static_neighbour(peer, WAN_MAC[1 - i], 1);
        for host in [0, 1] {
            let ip: IpAddr = format!("10.{}.{host}.10", i + 1).parse().unwrap();
            node.add_static_neighbour(ip, HOST_MAC[i], 0);
        }
        let planner = Planner::new(
            1,
            config.dataplane.crypto_backend,
            config.tunnels.iter().map(|t| t.name.clone()).collect(),
        );
        let mut s = Self {
            i,
            config,
            ike,
            planner,
            manual: Wanted::new(),
            node,
        };
        s.reload(self::config(site, manual));
        s
    }

    /// What the worker does with its control queue.
    fn apply(&mut self, msgs: Vec<(u16, ControlMsg)>) {
        for (w, m) in msgs {
            assert_eq!(w, 0);
            if let Err(m) = m.apply_to(&mut self.node) {
                panic!("not a table message: {m:?}");
            }
        }
    }

    /// The control thread's reload: the new SPD, then the SAs.
    fn reload(&mut self, config: GatewayConfig) -> Vec<String> {
        let mut spd = Spd::new();
        for p in config.policies() {
            spd.insert(p.clone()).unwrap();
        }
        spd.compile();
        self.apply(vec![(0, ControlMsg::SetSpd(Box::new(spd)))]);
        let manual = Wanted::from_config(&config);
        let plan = self.planner.plan(&[&manual, &self.ike.sas()]);
        assert!(plan.failed.is_empty());
        self.manual = manual;
        self.config = config;
        let msgs = self.planner.commit(plan);
        let k = kinds(&msgs);
        self.apply(msgs);
        k
    }

    /// The control thread after the IKE driver ran: SA changes first,
    /// then the datagrams (returned, for the test to carry to the peer).
    fn after_ike(&mut self) -> Vec<Vec<u8>> {
        if self.ike.take_sas_changed() {
            let plan = self.planner.plan(&[&self.manual, &self.ike.sas()]);
            assert!(plan.failed.is_empty());
            let msgs = self.planner.commit(plan);
            self.apply(msgs);
        }
        self.ike
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                IkeAction::Transmit(p) => Some(p),
                IkeAction::Reresolve(_) => None,
            })
            .collect()
    }

    /// A host on LAN subnet `net` sends a UDP datagram to the peer's; the
    /// frames this node puts on the WAN.
    fn send(&mut self, net: u8, payload: &[u8]) -> Vec<HeapBuf> {
        let (me, peer) = (self.i + 1, 2 - self.i);
        let src: SocketAddr = format!("10.{me}.{net}.10:1000").parse().unwrap();
        let dst: SocketAddr = format!("10.{peer}.{net}.10:2000").parse().unwrap();
        let ip = build_udp(src, dst, payload, 7).unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&LAN_MAC[self.i]);
        f.extend_from_slice(&HOST_MAC[self.i]);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&ip);
        self.node.rx(0, HeapBuf::from_slice(&f), &mut Pool);
        self.take_tx(1)
    }

    /// The frames the node sent on interface `i` since the last call.
    fn take_tx(&mut self, i: usize) -> Vec<HeapBuf> {
        let mut out = dataplane::gateway::node::Output::new(2);
        self.node.take_output(&mut out);
        std::mem::take(&mut out.tx[i])
    }

    /// WAN frames arrive; the payloads this node hands to its LAN hosts.
    fn receive(&mut self, frames: Vec<HeapBuf>) -> Vec<Vec<u8>> {
        for f in frames {
            self.node.rx(1, f, &mut Pool);
        }
        self.take_tx(0)
            .into_iter()
            .map(|f| f.data()[14 + 28..].to_vec())
            .collect()
    }
}

/// A datagram from `from`'s subnet `net` reaches `to`'s host intact, and
/// nothing on the WAN carries it in clear.
fn passes(from: &mut Site, to: &mut Site, net: u8, payload: &[u8]) -> bool {
    let wan = from.send(net, payload);
    assert!(wan
        .iter()
        .all(|f| !f.data().windows(payload.len()).any(|w| w == payload)));
    to.receive(wan) == [payload.to_vec()]
}

/// Carries the IKE datagrams between the two driver until none is left,
/// one at a time, applying each side's SA changes as the control thread
/// does; after every datagram, `check` runs (on traffic both ways).
fn converse(a: &mut Site, b: &mut Site, mut check: impl FnMut(&mut Site, &mut Site)) {
    let mut to_b: std::collections::VecDeque<Vec<u8>> = a.after_ike().into();
    let mut to_a: std::collections::VecDeque<Vec<u8>> = b.after_ike().into();
    for _ in 0..100 {
        if let Some(p) = to_b.pop_front() {
            b.ike.handle_punt(t0(), &p);
            to_a.extend(b.after_ike());
        } else if let Some(p) = to_a.pop_front() {
            a.ike.handle_punt(t0(), &p);
            to_b.extend(a.after_ike());
        } else {
            return;
        }
        check(a, b);
    }
    panic!("the exchange does not end");
}

/// A Child SA negotiated by the two IKE drivers carries traffic between
/// the two nodes; a rekey moves both sides to new SAs without losing a
/// packet at any point of the exchange; the old inbound SAs go after the
/// grace period; a reload that removes the manual tunnel takes its SAs
/// from the node and leaves IKE's alone.
#[test]
fn two_control_planes_drive_two_nodes_through_rekey_and_reload() {
    let manual = [(0x1001, 0x2001)];
    let (mut a, mut b) = (Site::new('a', &manual), Site::new('b', &manual));
    assert!(passes(&mut a, &mut b, 1, b"manual a to b"));
    assert!(passes(&mut b, &mut a, 1, b"manual b to a"));
    // No Child SA yet: tunnel t has no SA to send on.
    assert!(a.send(0, b"too early").is_empty());

    a.ike.start(t0());
    converse(&mut a, &mut b, |_, _| {});
    assert!(passes(&mut a, &mut b, 0, b"ike a to b"));
    assert!(passes(&mut b, &mut a, 0, b"ike b to a"));
    let first = (
        a.planner.installed().outbound_spi(0).unwrap(),
        b.planner.installed().outbound_spi(0).unwrap(),
    );

    b.ike.rekey(t0(), "t").unwrap();
    let mut n = 0;
    converse(&mut a, &mut b, |a, b| {
        n += 1;
        let msg = format!("rekey step {n}");
        assert!(passes(a, b, 0, msg.as_bytes()), "a to b lost at {msg}");
        assert!(passes(b, a, 0, msg.as_bytes()), "b to a lost at {msg}");
    });
    assert!(n >= 4, "CREATE_CHILD_SA and INFORMATIONAL, both ways: {n}");
    let second = (
        a.planner.installed().outbound_spi(0).unwrap(),
        b.planner.installed().outbound_spi(0).unwrap(),
    );
    assert!(second.0 != first.0 && second.1 != first.1);
    // The old inbound SAs stay for packets still in flight ...
    assert_eq!(b.planner.installed().inbound_tunnel(first.0), Some(0));
    assert_eq!(a.planner.installed().inbound_tunnel(first.1), Some(0));
    // ... until the grace period is over.
    let later = t0() + Duration::from_secs(6);
    for s in [&mut a, &mut b] {
        s.ike.tick(later);
    }
    converse(&mut a, &mut b, |_, _| {});
    assert_eq!(b.planner.installed().inbound_tunnel(first.0), None);
    assert_eq!(a.planner.installed().inbound_tunnel(first.1), None);
    assert_eq!(b.planner.installed().inbound(), 2);
    assert!(passes(&mut a, &mut b, 0, b"after the grace period"));
    assert!(passes(&mut b, &mut a, 0, b"after the grace period"));

    // B drops the manual tunnel: a packet A sent on it before does not
    // get through any more; IKE's tunnel carries on.
    let in_flight = a.send(1, b"sent before the reload");
    assert_eq!(in_flight.len(), 1);
    let msgs = b.reload(config('b', &[]));
    assert_eq!(
        msgs,
        [
            "0 -out1",
            "0 own-out1 None",
            "0 -in 1001",
            "0 own-in 1001 None"
        ]
    );
    assert!(b.receive(in_flight).is_empty());
    let msgs = a.reload(config('a', &[]));
    assert_eq!(msgs.len(), 4);
    assert_eq!(a.planner.installed().inbound(), 1);
    assert!(passes(&mut a, &mut b, 0, b"ike after the reload"));
    assert!(passes(&mut b, &mut a, 0, b"ike after the reload"));
}

// ------------------------------------------------ per-peer return routes

/// Peer route `key` of tunnel 1 (10.1.1.0/24 to `remote`) on the manual
/// pair's outbound SA with SPI `spi`.
fn peer_route(manual: &Wanted, remote: &str, spi: u32) -> PeerRoute {
    let mut outbound = manual.tunnel(1).unwrap().outbound.clone().unwrap();
    outbound.config.spi = dataplane::esp::Spi::new(spi).unwrap();
    let sel =
        dataplane::esp::Selector::new("10.1.1.0/24".parse().unwrap(), remote.parse().unwrap());
    outbound.config.traffic_selectors = vec![sel.clone()];
    PeerRoute {
        key: remote.to_owned(),
        selectors: vec![sel],
        outbound,
    }
}

/// Three peers on one template: three routes, each in its own slot past
/// the tunnels' (the tunnel's own slot stays empty), the SPD entries
/// change; a rekey puts the successor's SA in the same slot with no SPD
/// change; a peer that leaves takes its slot and SPD entries with it.
#[test]
fn each_peer_gets_its_own_outbound_slot_kept_across_rekey() {
    let c = config('a', &[(0x1001, 0x2001)]);
    let manual = Wanted::from_config(&c);
    let mut p = Planner::new(2, c.dataplane.crypto_backend, vec!["t".into(), "m".into()]);
    let mut w = Wanted::new();
    for (i, remote) in ["10.9.0.1/32", "10.9.0.2/32", "10.9.0.3/32"]
        .iter()
        .enumerate()
    {
        w.tunnel_mut(1)
            .peers
            .push(peer_route(&manual, remote, 0x5001 + i as u32));
    }
    let plan = p.plan(&[&w]);
    assert!(plan.peer_policies_changed());
    assert_eq!(
        kinds(&p.commit(plan)),
        [
            "1 +out2 5001",
            "0 own-out2 Some(1)",
            "1 own-out2 Some(1)",
            "1 +out3 5002",
            "0 own-out3 Some(1)",
            "1 own-out3 Some(1)",
            "1 +out4 5003",
            "0 own-out4 Some(1)",
            "1 own-out4 Some(1)",
        ]
    );
    let pols = p.installed().peer_policies();
    assert_eq!(pols.len(), 3);
    assert_eq!(p.installed().outbound_spi(1), None);
    assert_eq!(
        p.installed().peer_route(1, "10.9.0.2/32"),
        Some((3, 0x5002))
    );
    assert!(p.plan(&[&w]).is_empty());

    // Rekey of the second peer: same route, new SA in the same slot.
    w.tunnel_mut(1).peers[1] = peer_route(&manual, "10.9.0.2/32", 0x6002);
    let plan = p.plan(&[&w]);
    assert!(!plan.peer_policies_changed());
    assert_eq!(
        kinds(&p.commit(plan)),
        ["1 +out3 6002", "0 own-out3 Some(1)", "1 own-out3 Some(1)"]
    );
    assert_eq!(
        p.installed().peer_route(1, "10.9.0.2/32"),
        Some((3, 0x6002))
    );

    // The first peer leaves.
    w.tunnel_mut(1).peers.remove(0);
    let plan = p.plan(&[&w]);
    assert!(plan.peer_policies_changed());
    assert_eq!(
        kinds(&p.commit(plan)),
        ["1 -out2", "0 own-out2 None", "1 own-out2 None"]
    );
    assert_eq!(p.installed().peer_route(1, "10.9.0.1/32"), None);
    assert_eq!(p.installed().peer_policies().len(), 2);

    // A new peer takes the lowest free slot again.
    w.tunnel_mut(1)
        .peers
        .push(peer_route(&manual, "10.9.0.4/32", 0x5004));
    let plan = p.plan(&[&w]);
    assert_eq!(plan.next().peer_route(1, "10.9.0.4/32"), Some((2, 0x5004)));
}
