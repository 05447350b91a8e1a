//! The gateway pipeline: whole Ethernet frames into `Node::rx` of a gateway
//! (the receiving site of the shared SA set: LAN 10.2.0.1/24 and
//! fd02::1/64, WAN 192.0.2.2/24 and 2001:db8::2/64) with the eight SAs'
//! inbound halves installed, a protect policy towards host A's site, a
//! bypass route and a static neighbour, on heap buffers.
//!
//! The input is a sequence of up to `MAX_OPS` operations, each a frame on
//! either interface or a control-thread action:
//!
//! - raw: bytes as they are, as the whole frame;
//! - ARP: a request, reply or announcement with sender and target from a
//!   pool of addresses (ours, on-link on either side, off-subnet, group,
//!   unspecified) and a link-layer address of the fuzzer's choice;
//! - ND: a neighbour solicitation or advertisement with a valid checksum,
//!   flags, hop limit and options of the fuzzer's choice, addresses from
//!   the pool;
//! - IP: an IPv4 or IPv6 packet (any protocol and payload: ICMP echo,
//!   UDP, fragments) between pool addresses with a valid IPv4 header
//!   checksum, to our MAC or a group address;
//! - ESP: an inner packet sealed by one of the SAs' outbound halves (a
//!   valid packet the node decapsulates and delivers, so that it resolves
//!   LAN neighbours), optionally with a byte flipped;
//! - time: the clock moves forward (neighbour entries age, probes go out,
//!   waiting packets expire);
//! - control: another worker's confirmation (`learn_neighbour`) or a
//!   re-resolution (`reresolve`) for a pool address.
//!
//! Oracles: no panic; the neighbour table never holds more than
//! `MAX_LEARNED` learned entries; at most 256 packets wait for a
//! neighbour; every frame sent has an Ethernet header with our source MAC
//! and a unicast or group destination that is never the zero address; a
//! frame refused as a claim changes no static entry.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::esp::{Action, IpPrefix, OutboundSa, Policy, SaRef, Selector, Spd};
use dataplane::gateway::neigh::State;
use dataplane::gateway::{Interface, NeighbourTable, Node, Output, PacketPool, Role};
use dataplane::route::{NextHop, RouteTable};
use dataplane::wire::{EthernetAddress, Icmpv6Packet, Icmpv6Repr};
use espresso_fuzz::{fix_ipv4_checksum, host_a, host_b, ip_packet, Input, SAS};
use libfuzzer_sys::fuzz_target;

const MAX_OPS: usize = 48;
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 0xfe];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 0xff];
const STATIC_IP: &str = "10.2.0.9";
const STATIC_MAC: [u8; 6] = [2, 9, 9, 9, 9, 9];

struct Heap;

impl PacketPool<HeapBuf> for Heap {
    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::new(128, &[], 2048))
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn prefix(s: &str) -> IpPrefix {
    s.parse().expect("prefix literal")
}

fn node() -> (Node<HeapBuf>, Vec<OutboundSa>) {
    let ifaces = vec![
        Interface {
            name: "lan".into(),
            mac: LAN_MAC,
            role: Role::Lan,
            addrs: vec![
                "10.2.0.1/24".parse().expect("net"),
                "fd02::1/64".parse().expect("net"),
            ],
            mtu: 1500,
            mss_clamp: None,
        },
        Interface {
            name: "wan".into(),
            mac: WAN_MAC,
            role: Role::Wan,
            addrs: vec![
                "192.0.2.2/24".parse().expect("net"),
                "2001:db8::2/64".parse().expect("net"),
            ],
            mtu: 1400,
            mss_clamp: Some(1300),
        },
    ];
    let mut routes = RouteTable::new();
    for net in ["10.1.0.0/24", "fd01::/64"] {
        let via = if net.contains(':') {
            "2001:db8::1"
        } else {
            "192.0.2.1"
        };
        routes.insert(
            net.parse().expect("net"),
            NextHop {
                interface: 1,
                via: Some(ip(via)),
            },
        );
    }
    routes.insert(
        "198.18.0.0/15".parse().expect("net"),
        NextHop {
            interface: 1,
            via: Some(ip("192.0.2.254")),
        },
    );
    let mut n = Node::new(0, ifaces, routes);
    let mut spd = Spd::new();
    for (l, r) in [("10.2.0.0/24", "10.1.0.0/24"), ("fd02::/64", "fd01::/64")] {
        spd.insert(Policy {
            selector: Selector::new(prefix(l), prefix(r)),
            action: Action::Protect(SaRef(0)),
            priority: 10,
        })
        .expect("policy");
    }
    for any in ["0.0.0.0/0", "::/0"] {
        spd.insert(Policy {
            selector: Selector::new(prefix(any), prefix(any)),
            action: Action::Bypass,
            priority: 1,
        })
        .expect("policy");
    }
    n.set_spd(spd);
    let mut sealers = Vec::new();
    for (i, spec) in SAS.iter().enumerate() {
        n.install_inbound(spec.inbound(i));
        sealers.push(spec.outbound(i));
    }
    // Our own outbound SA towards site A (tunnel SA 0 the other way).
    let mut back = SAS[0].outbound(0);
    back.resume_seq_after(0);
    n.install_outbound(SaRef(0), back);
    n.add_static_neighbour(ip(STATIC_IP), STATIC_MAC, 0);
    (n, sealers)
}

/// An address from the pool: ours, on either link, off-subnet, group or
/// unspecified, in either family.
fn addr(input: &mut Input) -> IpAddr {
    let k = input.u8();
    let x = input.u8();
    let v4 = |a, b, c| IpAddr::V4(Ipv4Addr::new(a, b, c, x));
    let v6 = |p: u16| {
        IpAddr::V6(Ipv6Addr::new(
            p,
            0xdb8 * u16::from(p == 0x2001),
            0,
            0,
            0,
            0,
            0,
            u16::from(x),
        ))
    };
    match k % 16 {
        0 => ip("10.2.0.1"),
        1 => ip("192.0.2.2"),
        2 | 3 => v4(10, 2, 0),
        4 => v4(192, 0, 2),
        5 => v4(10, 1, 0),
        6 => v4(198, 51, 100),
        7 => IpAddr::V4(Ipv4Addr::new(224, 0, 0, x)),
        8 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        9 => ip(STATIC_IP),
        10 | 11 => v6(0xfd02),
        12 => v6(0x2001),
        13 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(x))),
        14 => v6(0xfd01),
        _ => IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, u16::from(x))),
    }
}

fn v4_of(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::new(10, 2, 0, 7)),
    }
}

fn v6_of(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

fn mac(input: &mut Input) -> [u8; 6] {
    match input.u8() % 4 {
        0 => [2, 0, 0, 0, 0xa, input.u8()],
        1 => [0xff; 6],
        2 => LAN_MAC,
        _ => {
            let b = input.bytes(6);
            let mut m = [0u8; 6];
            m[..b.len()].copy_from_slice(b);
            m
        }
    }
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> HeapBuf {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    HeapBuf::from_slice(&f)
}

/// Destination MAC: ours on that interface, broadcast or a group.
fn dst_mac(input: &mut Input, iface: u16) -> [u8; 6] {
    match input.u8() % 4 {
        0 => [0xff; 6],
        1 => [0x33, 0x33, 0xff, 0, 0, 1],
        _ if iface == 0 => LAN_MAC,
        _ => WAN_MAC,
    }
}

fn arp(input: &mut Input, iface: u16) -> HeapBuf {
    let op = match input.u8() % 4 {
        0 | 1 => 1u16,
        2 => 2,
        _ => u16::from(input.u8()),
    };
    let sha = mac(input);
    let spa = v4_of(addr(input));
    let tpa = if input.u8() % 4 == 0 {
        spa
    } else {
        v4_of(addr(input))
    };
    let tha = mac(input);
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    let dst = dst_mac(input, iface);
    eth(dst, sha, 0x0806, &a)
}

fn nd(input: &mut Input, iface: u16) -> HeapBuf {
    let flags = input.u8();
    let src = v6_of(addr(input));
    let dst = v6_of(addr(input));
    let target = v6_of(addr(input));
    let ll = mac(input);
    let lladdr = (flags & 0x08 != 0).then_some(EthernetAddress(ll));
    let msg = if flags & 1 == 0 {
        Icmpv6Repr::NeighborSolicit {
            target_addr: target,
            source_lladdr: lladdr,
        }
    } else {
        Icmpv6Repr::NeighborAdvert {
            router: flags & 0x10 != 0,
            solicited: flags & 2 != 0,
            override_flag: flags & 4 != 0,
            target_addr: target,
            target_lladdr: lladdr,
        }
    };
    let mut icmp = vec![0u8; msg.buffer_len()];
    msg.emit(src, dst, &mut Icmpv6Packet::new_unchecked(&mut icmp[..]))
        .expect("emit into a buffer of its length");
    let mut p = ip_packet(IpAddr::V6(src), IpAddr::V6(dst), 58, 0, &icmp);
    p[7] = if flags & 0x20 != 0 { input.u8() } else { 255 };
    let dst_mac = dst_mac(input, iface);
    eth(dst_mac, ll, 0x86dd, &p)
}

fn ip_frame(input: &mut Input, iface: u16) -> HeapBuf {
    let src = addr(input);
    let mut dst = addr(input);
    if src.is_ipv4() != dst.is_ipv4() {
        dst = if src.is_ipv4() {
            IpAddr::V4(v4_of(dst))
        } else {
            IpAddr::V6(v6_of(dst))
        };
    }
    let proto = input.u8();
    let tweak = input.u8();
    let len = usize::from(input.u8());
    let payload = input.bytes(len);
    let mut p = ip_packet(src, dst, proto, 0, payload);
    if src.is_ipv4() {
        // TTL, DF / fragment offset and MF from the input.
        p[8] = tweak;
        p[6] = input.u8() & 0xbf | if tweak & 1 != 0 { 0x40 } else { 0 };
        p[7] = input.u8();
        fix_ipv4_checksum(&mut p);
    } else {
        p[7] = tweak;
    }
    let ethertype = if src.is_ipv4() { 0x0800 } else { 0x86dd };
    let dst_mac = dst_mac(input, iface);
    eth(dst_mac, [2, 0, 0, 0, 0xa, 1], ethertype, &p)
}

fn esp(input: &mut Input, sealers: &mut [OutboundSa]) -> HeapBuf {
    let i = usize::from(input.u8()) % sealers.len();
    let spec = SAS[i];
    let v4 = spec.payload_v4();
    let (src, dst) = if input.u8() % 4 == 0 {
        (host_a(v4), addr(input))
    } else {
        (host_a(v4), host_b(v4))
    };
    let dst = if v4 {
        IpAddr::V4(v4_of(dst))
    } else {
        IpAddr::V6(v6_of(dst))
    };
    let len = usize::from(input.u8());
    let inner = ip_packet(src, dst, 17, 0, input.bytes(len));
    let mut pkt = HeapBuf::new(128, &inner, 2048);
    if sealers[i].encapsulate(&mut pkt, &mut |_| {}).is_err() {
        return HeapBuf::from_slice(&[0u8; 13]);
    }
    let flip = usize::from(input.u8());
    let data = pkt.data_mut();
    if flip < data.len() && input.u8() % 4 == 0 {
        data[flip] ^= 0x40;
    }
    let ethertype = if spec.outer_v4 { 0x0800 } else { 0x86dd };
    eth(WAN_MAC, [2, 0, 0, 0, 0xa, 0xff], ethertype, pkt.data())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (mut node, mut sealers) = node();
    let mut now = 0u64;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let iface = u16::from(op >> 7);
        let frame = match op & 0x0f {
            0 => {
                let len = usize::from(input.u16() % 1600);
                Some(HeapBuf::from_slice(input.bytes(len)))
            }
            1..=3 => Some(arp(&mut input, iface)),
            4..=6 => Some(nd(&mut input, iface)),
            7..=9 => Some(ip_frame(&mut input, iface)),
            10 | 11 => Some(esp(&mut input, &mut sealers)),
            12 => {
                now += u64::from(input.u16()) * 8;
                node.set_now(now);
                node.expire_pending();
                None
            }
            13 => {
                let a = addr(&mut input);
                let m = mac(&mut input);
                node.learn_neighbour(a, m, iface);
                None
            }
            14 => {
                let a = addr(&mut input);
                node.reresolve(a, &mut Heap);
                None
            }
            _ => {
                // A burst of announcements from made-up neighbours.
                for k in 0..u16::from(input.u8()) * 4 {
                    let x = k.to_be_bytes();
                    let sender = [2, 0xee, 0, op, x[0], x[1]];
                    let a = Ipv4Addr::new(10, 2, x[0] & 0x7f, x[1]);
                    let mut b = vec![0, 1, 8, 0, 6, 4, 0, 2];
                    b.extend_from_slice(&sender);
                    b.extend_from_slice(&a.octets());
                    b.extend_from_slice(&LAN_MAC);
                    b.extend_from_slice(&[10, 2, 0, 1]);
                    node.rx(0, eth(LAN_MAC, sender, 0x0806, &b), &mut Heap);
                }
                None
            }
        };
        if let Some(f) = frame {
            node.rx(iface, f, &mut Heap);
        }
        check(&mut node);
    }
});

fn check(node: &mut Node<HeapBuf>) {
    let t = node.neighbours();
    assert!(t.learned_len() <= NeighbourTable::MAX_LEARNED);
    assert!(t.len() <= NeighbourTable::MAX_LEARNED + 1);
    let st = t.get(0, ip(STATIC_IP)).expect("static entry");
    assert_eq!((st.state, st.mac), (State::Static, STATIC_MAC));
    assert!(node.pending_len() <= 256);
    let mut out = Output::new(node.interfaces().len());
    node.take_output(&mut out);
    for (i, q) in out.tx.iter_mut().enumerate() {
        let ours = if i == 0 { LAN_MAC } else { WAN_MAC };
        for f in q.drain(..) {
            let d = f.data();
            assert!(d.len() >= 14, "frame without an Ethernet header");
            assert_eq!(&d[6..12], &ours, "source MAC");
            assert_ne!(&d[0..6], &[0; 6], "zero destination MAC");
        }
    }
}
