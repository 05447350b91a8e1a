//! The pipeline on heap buffers: two gateway nodes joined by a simulated
//! WAN, hosts on each LAN.

use std::net::IpAddr;

use crate::buf::{HeapBuf, PacketBuf};
use crate::crypto::{default_backend, new_transform, Algorithm, Backend, SaKeys};
use crate::esp::{
    Action, Direction, DropReason, InboundSa, IpPrefix, Mode, OutboundSa, Policy, SaConfig, SaRef,
    Selector, Spd, Spi, TunnelEndpoints, UdpEncap,
};
use crate::route::{NextHop, RouteTable};
use crate::wire::{ip::checksum, EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol};

use super::msg::HandoffKind;
use super::neigh::{NeighbourTable, Refused, SolicitLog, State};
use super::node::{GwDrop, Interface, Node, PacketPool, Role};

mod leak;

struct HeapPool;

impl PacketPool<HeapBuf> for HeapPool {
    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::new(128, &[], 2048))
    }
}

const HOST_A_MAC: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
const HOST_B_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 1];
const GWA_LAN: [u8; 6] = [2, 0, 0, 0, 0xa, 0xfe];
const GWA_WAN: [u8; 6] = [2, 0, 0, 0, 0xa, 0xff];
const GWB_LAN: [u8; 6] = [2, 0, 0, 0, 0xb, 0xfe];
const GWB_WAN: [u8; 6] = [2, 0, 0, 0, 0xb, 0xff];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ifaces(site: char, wan_mtu: u16, mss: Option<u16>) -> Vec<Interface> {
    ifaces_mtu(site, 1500, wan_mtu, mss)
}

fn ifaces_mtu(site: char, lan_mtu: u16, wan_mtu: u16, mss: Option<u16>) -> Vec<Interface> {
    let (lan_mac, wan_mac, n) = if site == 'a' {
        (GWA_LAN, GWA_WAN, 1)
    } else {
        (GWB_LAN, GWB_WAN, 2)
    };
    vec![
        Interface {
            name: "lan".into(),
            mac: lan_mac,
            role: Role::Lan,
            addrs: vec![
                format!("10.{n}.0.1/24").parse().unwrap(),
                format!("fd0{n}::1/64").parse().unwrap(),
            ],
            mtu: lan_mtu,
            mss_clamp: None,
        },
        Interface {
            name: "wan".into(),
            mac: wan_mac,
            role: Role::Wan,
            addrs: vec![
                format!("192.0.2.{n}/24").parse().unwrap(),
                format!("2001:db8::{n}/64").parse().unwrap(),
            ],
            mtu: wan_mtu,
            mss_clamp: mss,
        },
    ]
}

fn keys() -> SaKeys {
    SaKeys::new(&[7u8; 36], &[])
}

fn sa_out(spi: u32, local: &str, remote: &str) -> OutboundSa {
    let mut c = SaConfig::new(
        Spi::new(spi).unwrap(),
        Direction::Outbound,
        Mode::Tunnel,
        TunnelEndpoints {
            local: ip(local),
            remote: ip(remote),
        },
    );
    c.udp_encap = Some(UdpEncap::nat_t());
    OutboundSa::new(
        c,
        new_transform(Backend::RustCrypto, Algorithm::AES_GCM_256, &keys()).unwrap(),
    )
    .unwrap()
}

fn sa_in(spi: u32, local: &str, remote: &str, sel: Vec<Selector>) -> InboundSa {
    let mut c = SaConfig::new(
        Spi::new(spi).unwrap(),
        Direction::Inbound,
        Mode::Tunnel,
        TunnelEndpoints {
            local: ip(local),
            remote: ip(remote),
        },
    );
    c.udp_encap = Some(UdpEncap::nat_t());
    c.traffic_selectors = sel;
    InboundSa::new(
        c,
        new_transform(Backend::AwsLc, Algorithm::AES_GCM_256, &keys()).unwrap(),
    )
    .unwrap()
}

fn sel(a: &str, b: &str) -> Selector {
    Selector::new(
        a.parse::<IpPrefix>().unwrap(),
        b.parse::<IpPrefix>().unwrap(),
    )
}

/// gwA and gwB with a tunnel 10.1/24 <-> 10.2/24 (and fd01::/64 <->
/// fd02::/64) over 192.0.2.0/24, static neighbours for the hosts and peers.
fn two_sites(wan_mtu: u16, mss: Option<u16>) -> (Node<HeapBuf>, Node<HeapBuf>) {
    two_sites_with(1500, wan_mtu, mss, true)
}

/// [`two_sites`] with this LAN MTU on both gateways.
fn two_sites_mtu(lan_mtu: u16, wan_mtu: u16, mss: Option<u16>) -> (Node<HeapBuf>, Node<HeapBuf>) {
    two_sites_with(lan_mtu, wan_mtu, mss, true)
}

/// [`two_sites_mtu`]; without `static_peers` each gateway learns its
/// peer's link-layer address by ARP / neighbour discovery.
fn two_sites_with(
    lan_mtu: u16,
    wan_mtu: u16,
    mss: Option<u16>,
    static_peers: bool,
) -> (Node<HeapBuf>, Node<HeapBuf>) {
    let mut nodes = Vec::new();
    for site in ['a', 'b'] {
        let (me, peer, my_net, peer_net, my6, peer6) = if site == 'a' {
            (
                "192.0.2.1",
                "192.0.2.2",
                "10.1.0.0/24",
                "10.2.0.0/24",
                "fd01::/64",
                "fd02::/64",
            )
        } else {
            (
                "192.0.2.2",
                "192.0.2.1",
                "10.2.0.0/24",
                "10.1.0.0/24",
                "fd02::/64",
                "fd01::/64",
            )
        };
        let mut routes = RouteTable::new();
        routes.insert(
            peer_net.parse().unwrap(),
            NextHop {
                interface: 1,
                via: Some(ip(peer)),
            },
        );
        routes.insert(
            peer6.parse().unwrap(),
            NextHop {
                interface: 1,
                via: Some(ip(peer)),
            },
        );
        routes.insert(
            "10.9.0.0/24".parse().unwrap(),
            NextHop {
                interface: 1,
                via: None,
            },
        );
        let mut n = Node::new(0, ifaces_mtu(site, lan_mtu, wan_mtu, mss), routes);
        let mut spd = Spd::new();
        for (l, r) in [(my_net, peer_net), (my6, peer6)] {
            spd.insert(Policy {
                selector: sel(l, r),
                action: Action::Protect(SaRef(0)),
                priority: 10,
            })
            .unwrap();
        }
        spd.insert(Policy {
            selector: sel(my_net, "10.9.0.0/24"),
            action: Action::Bypass,
            priority: 5,
        })
        .unwrap();
        n.set_spd(spd);
        let (out_spi, in_spi) = if site == 'a' {
            (0x2001, 0x1001)
        } else {
            (0x1001, 0x2001)
        };
        n.install_outbound(SaRef(0), sa_out(out_spi, me, peer));
        n.install_inbound(sa_in(
            in_spi,
            me,
            peer,
            vec![sel(peer_net, my_net), sel(peer6, my6)],
        ));
        let (host, host_mac, host6) = if site == 'a' {
            ("10.1.0.10", HOST_A_MAC, "fd01::10")
        } else {
            ("10.2.0.20", HOST_B_MAC, "fd02::20")
        };
        n.add_static_neighbour(ip(host), host_mac, 0);
        n.add_static_neighbour(ip(host6), host_mac, 0);
        if static_peers {
            n.add_static_neighbour(ip(peer), if site == 'a' { GWB_WAN } else { GWA_WAN }, 1);
        }
        n.add_static_neighbour(ip("10.9.0.9"), [2, 9, 9, 9, 9, 9], 1);
        nodes.push(n);
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    (a, b)
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> HeapBuf {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    HeapBuf::from_slice(&f)
}

/// An ICMP echo request from `src` to `dst`.
fn echo4(src: &str, dst: &str) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"echo data that must not leak");
    let c = !checksum::data(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = udp4(src, dst, 0, 0, &[], 64, false);
    p.truncate(20);
    p[9] = 1;
    p[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    p[10..12].fill(0);
    let c = !checksum::data(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

fn udp4(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ttl: u8,
    df: bool,
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        panic!()
    };
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(payload);
    let c = checksum::transport_v4(s, d, IpProtocol::UDP, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    p[6] = if df { 0x40 } else { 0 };
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    let c = !checksum::data(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

fn udp6(src: &str, dst: &str, payload_len: usize, hop: u8) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!()
    };
    let mut udp = vec![0u8; 8 + payload_len];
    udp[0..2].copy_from_slice(&1234u16.to_be_bytes());
    udp[2..4].copy_from_slice(&80u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    let c = checksum::transport_v6(s, d, IpProtocol::UDP, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(udp.len() as u16).to_be_bytes());
    p[6] = 17;
    p[7] = hop;
    p[8..24].copy_from_slice(&s.octets());
    p[24..40].copy_from_slice(&d.octets());
    p.extend_from_slice(&udp);
    p
}

fn take_tx(n: &mut Node<HeapBuf>, iface: usize) -> Vec<HeapBuf> {
    std::mem::take(&mut n.out().tx[iface])
}

#[test]
fn host_to_host_through_two_gateways_v4_and_v6() {
    let (mut a, mut b) = two_sites(1500, None);
    for (inner, ethertype) in [
        (
            udp4("10.1.0.10", "10.2.0.20", 1000, 2000, &[0x5a; 300], 64, true),
            0x0800u16,
        ),
        (udp6("fd01::10", "fd02::20", 700, 64), 0x86dd),
    ] {
        a.rx(
            0,
            eth(GWA_LAN, HOST_A_MAC, ethertype, &inner),
            &mut HeapPool,
        );
        let wan = take_tx(&mut a, 1);
        assert_eq!(wan.len(), 1, "{:?}", a.counters);
        let frame = wan[0].data();
        assert_eq!(&frame[0..6], &GWB_WAN);
        assert!(
            !frame.windows(32).any(|w| w == &inner[inner.len() - 32..]),
            "plaintext on the WAN"
        );
        b.rx(1, wan.into_iter().next().unwrap(), &mut HeapPool);
        let lan = take_tx(&mut b, 0);
        assert_eq!(lan.len(), 1, "{:?}", b.counters);
        let out = lan[0].data();
        assert_eq!(&out[0..6], &HOST_B_MAC);
        assert_eq!(&out[6..12], &GWB_LAN);
        // The inner packet arrives with its TTL lowered by two routers.
        let mut expected = inner.clone();
        if ethertype == 0x0800 {
            expected[8] -= 2;
            expected[10..12].fill(0);
            let c = !checksum::data(&expected[..20]);
            expected[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            expected[7] -= 2;
        }
        assert_eq!(&out[14..], &expected[..]);
    }
    assert_eq!(a.counters.encapsulated, 2);
    assert_eq!(b.counters.decapsulated, 2);
    assert_eq!(b.counters.total_drops(), 0);
}

#[test]
fn arp_and_echo_for_the_gateway_and_pending_until_resolved() {
    let (mut a, _) = two_sites(1500, None);
    // ARP request for 10.1.0.1 from a new host.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&[2, 0, 0, 0, 0xa, 7]);
    arp.extend_from_slice(&[10, 1, 0, 7]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 1, 0, 1]);
    a.rx(
        0,
        eth([0xff; 6], [2, 0, 0, 0, 0xa, 7], 0x0806, &arp),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 0);
    assert_eq!(out.len(), 1);
    let r = out[0].data();
    assert_eq!(&r[0..6], &[2, 0, 0, 0, 0xa, 7]);
    assert_eq!(&r[20..22], &[0, 2], "ARP reply");
    assert_eq!(&r[22..28], &GWA_LAN);
    assert_eq!(
        a.neighbours().lookup(0, ip("10.1.0.7")),
        Some([2, 0, 0, 0, 0xa, 7])
    );
    // A request is no confirmation: nothing for the other workers.
    assert!(a.out().learned.is_empty());

    // Echo request to the gateway.
    let p = echo4("10.1.0.10", "10.1.0.1");
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    let out = take_tx(&mut a, 0);
    assert_eq!(out.len(), 1);
    let r = &out[0].data()[14..];
    assert_eq!(r[20], 0, "echo reply");
    assert_eq!(&r[12..16], &[10, 1, 0, 1]);
    assert_eq!(&r[16..20], &[10, 1, 0, 10]);
    assert_eq!(a.counters.echo_replies, 1);

    // A packet to an unknown LAN host waits for ARP, then leaves.
    let (_, mut b) = two_sites(1500, None);
    let (mut a2, _) = two_sites(1500, None);
    a2.rx(
        0,
        eth(
            GWA_LAN,
            HOST_A_MAC,
            0x0800,
            &udp4("10.1.0.10", "10.2.0.99", 1, 2, b"x", 64, false),
        ),
        &mut HeapPool,
    );
    let wan = take_tx(&mut a2, 1);
    b.rx(1, wan.into_iter().next().unwrap(), &mut HeapPool);
    let arp_req = take_tx(&mut b, 0);
    assert_eq!(arp_req.len(), 1);
    assert_eq!(&arp_req[0].data()[0..6], &[0xff; 6]);
    assert_eq!(&arp_req[0].data()[38..42], &[10, 2, 0, 99]);
    assert_eq!(b.pending_len(), 1);
    b.learn_neighbour(ip("10.2.0.99"), [2, 0, 0, 0, 0xb, 99], 0);
    let sent = take_tx(&mut b, 0);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].data()[0..6], &[2, 0, 0, 0, 0xb, 99]);
}

#[test]
fn ttl_expiry_and_path_mtu_produce_icmp_errors() {
    let (mut a, _) = two_sites(1400, None);
    // TTL 1: time exceeded back to the host.
    let p = udp4("10.1.0.10", "10.2.0.20", 1, 2, b"hello", 1, false);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    let back = take_tx(&mut a, 0);
    assert_eq!(back.len(), 1);
    let r = &back[0].data()[14..];
    assert_eq!((r[9], r[20], r[21]), (1, 11, 0));
    assert_eq!(&r[16..20], &[10, 1, 0, 10]);
    assert_eq!(&r[28..48], &p[..20], "quotes the header");
    assert_eq!(a.counters.drops[GwDrop::TtlExceeded.index()], 1);

    // DF set and too big for the tunnel: fragmentation needed with the MTU
    // that fits once ESP is added; a packet of exactly that size passes.
    let big = udp4("10.1.0.10", "10.2.0.20", 1, 2, &vec![1u8; 1400], 64, true);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &big), &mut HeapPool);
    let back = take_tx(&mut a, 0);
    assert_eq!(back.len(), 1, "{:?}", a.counters);
    let r = &back[0].data()[14..];
    assert_eq!((r[20], r[21]), (3, 4), "fragmentation needed");
    let mtu = usize::from(u16::from_be_bytes([r[26], r[27]]));
    assert!(mtu < 1400 && mtu > 1300, "mtu {mtu}");
    assert_eq!(checksum::data(&r[20..]), 0xffff, "ICMP checksum");
    let fits = udp4(
        "10.1.0.10",
        "10.2.0.20",
        1,
        2,
        &vec![1u8; mtu - 28],
        64,
        true,
    );
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &fits), &mut HeapPool);
    let wan = take_tx(&mut a, 1);
    assert_eq!(wan.len(), 1);
    assert_eq!(wan[0].len() - 14, 1400, "exactly the WAN MTU");
    let too = udp4(
        "10.1.0.10",
        "10.2.0.20",
        1,
        2,
        &vec![1u8; mtu - 27],
        64,
        true,
    );
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &too), &mut HeapPool);
    assert_eq!(take_tx(&mut a, 1).len(), 0);
    assert_eq!(take_tx(&mut a, 0).len(), 1);

    // IPv6: packet too big.
    let big6 = udp6("fd01::10", "fd02::20", 1400, 64);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x86dd, &big6), &mut HeapPool);
    let back = take_tx(&mut a, 0);
    assert_eq!(back.len(), 1);
    let r = &back[0].data()[14..];
    assert_eq!((r[6], r[40]), (58, 2), "ICMPv6 packet too big");
    let mtu6 = u32::from_be_bytes([r[44], r[45], r[46], r[47]]);
    assert!(mtu6 < 1400 && mtu6 > 1280, "{mtu6}");
}

#[test]
fn ike_is_punted_keepalives_and_hostile_packets_are_counted() {
    let (_, mut b) = two_sites(1500, None);
    let ike = udp4("192.0.2.1", "192.0.2.2", 500, 500, &[0x11; 40], 64, false);
    b.rx(1, eth(GWB_WAN, GWA_WAN, 0x0800, &ike), &mut HeapPool);
    let mut marker = vec![0u8; 4];
    marker.extend_from_slice(&[0x22; 40]);
    let ike4500 = udp4("192.0.2.1", "192.0.2.2", 4500, 4500, &marker, 64, false);
    b.rx(1, eth(GWB_WAN, GWA_WAN, 0x0800, &ike4500), &mut HeapPool);
    assert_eq!(b.out().punts.len(), 2);
    let keepalive = udp4("192.0.2.1", "192.0.2.2", 4500, 4500, &[0xff], 64, false);
    b.rx(1, eth(GWB_WAN, GWA_WAN, 0x0800, &keepalive), &mut HeapPool);
    // Unknown SPI, garbage, truncated, not for us, plaintext that should
    // have been protected.
    let unknown = udp4(
        "192.0.2.1",
        "192.0.2.2",
        4500,
        4500,
        &[0xde, 0xad, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9],
        64,
        false,
    );
    b.rx(1, eth(GWB_WAN, GWA_WAN, 0x0800, &unknown), &mut HeapPool);
    b.rx(
        1,
        eth(GWB_WAN, GWA_WAN, 0x0800, &[0x45, 0, 0]),
        &mut HeapPool,
    );
    b.rx(1, HeapBuf::from_slice(&[1, 2, 3]), &mut HeapPool);
    b.rx(
        1,
        eth([2, 7, 7, 7, 7, 7], GWA_WAN, 0x0800, &ike),
        &mut HeapPool,
    );
    let plain = udp4("10.1.0.10", "10.2.0.20", 1, 2, b"sneaky", 64, false);
    b.rx(1, eth(GWB_WAN, GWA_WAN, 0x0800, &plain), &mut HeapPool);
    let c = &b.counters;
    assert_eq!(c.esp_drops[DropReason::NatKeepalive.index()], 1);
    assert_eq!(c.esp_drops[DropReason::UnknownSpi.index()], 1);
    assert_eq!(c.drops[GwDrop::BadFrame.index()], 2);
    assert_eq!(c.drops[GwDrop::NotForUs.index()], 1);
    assert_eq!(c.drops[GwDrop::UnprotectedInbound.index()], 1);
    assert!(take_tx(&mut b, 0).is_empty());
    assert!(take_tx(&mut b, 1).is_empty());
}

#[test]
fn bypass_policy_forwards_in_the_clear_and_mss_is_clamped() {
    let (mut a, mut b) = two_sites(1500, Some(1300));
    let p = udp4("10.1.0.10", "10.9.0.9", 1, 2, b"clear", 64, false);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[14 + 28..], b"clear");
    assert_eq!(a.counters.bypassed, 1);

    // A TCP SYN with MSS 1460 entering the tunnel is clamped to 1300.
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip("10.1.0.10"), ip("10.2.0.20")) else {
        panic!()
    };
    let mut tcp = vec![0u8; 24];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 6 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    let c = checksum::transport_v4(s, d, IpProtocol::TCP, &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut p = udp4("10.1.0.10", "10.2.0.20", 0, 0, &[], 64, true);
    p.truncate(20);
    p[9] = 6;
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[10..12].fill(0);
    let c = !checksum::data(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&tcp);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    let wan = take_tx(&mut a, 1);
    assert_eq!(a.counters.mss_clamped, 1, "{:?}", a.counters);
    b.rx(1, wan.into_iter().next().unwrap(), &mut HeapPool);
    let lan = take_tx(&mut b, 0);
    let seg = &lan[0].data()[14 + 20..];
    assert_eq!(&seg[20..24], &[2, 4, 0x05, 0x14], "MSS 1300");
    assert_eq!(
        checksum::transport_v4(s, d, IpProtocol::TCP, seg),
        0,
        "TCP checksum still valid"
    );
}

#[test]
fn packets_for_an_sa_owned_elsewhere_are_handed_off() {
    let (mut a, _) = two_sites(1500, None);
    // Worker 0 gives its SA to worker 1.
    let sa = a.remove_outbound(SaRef(0)).unwrap();
    a.set_outbound_owner(SaRef(0), Some(1));
    let p = udp4("10.1.0.10", "10.2.0.20", 1, 2, b"x", 64, false);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    assert_eq!(a.out().handoffs.len(), 1);
    let (w, h) = a.out().handoffs.pop().unwrap();
    assert_eq!(w, 1);
    assert_eq!(h.kind, HandoffKind::Outbound(SaRef(0)));
    // The owner encapsulates it (TTL is decremented there, once).
    let (mut owner, _) = two_sites(1500, None);
    owner.install_outbound(SaRef(0), sa);
    owner.handoff_in(h, &mut HeapPool);
    assert_eq!(owner.counters.encapsulated, 1);
    assert_eq!(take_tx(&mut owner, 1).len(), 1);
}

#[test]
fn packets_without_df_are_fragmented_before_encapsulation() {
    let (mut a, mut b) = two_sites(1400, None);
    let payload: Vec<u8> = (0..1400u32).map(|i| (i * 7) as u8).collect();
    let p = udp4("10.1.0.10", "10.2.0.20", 7, 9, &payload, 64, false);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
    let wan = take_tx(&mut a, 1);
    assert_eq!(wan.len(), 2, "{:?}", a.counters);
    assert!(
        wan.iter().all(|f| f.len() - 14 <= 1400),
        "each ESP packet fits the WAN MTU"
    );
    assert_eq!(a.counters.encapsulated, 2);
    for f in wan {
        b.rx(1, f, &mut HeapPool);
    }
    let lan = take_tx(&mut b, 0);
    assert_eq!(lan.len(), 2);
    // Reassemble the two fragments and compare with the original datagram.
    let mut whole = vec![0u8; p.len() - 20];
    let mut more_flags = Vec::new();
    for f in &lan {
        let ip = &f.data()[14..];
        assert_eq!(
            checksum::data(&ip[..20]),
            0xffff,
            "fragment header checksum"
        );
        let off = usize::from(u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff) * 8;
        more_flags.push(ip[6] & 0x20 != 0);
        let body = &ip[20..usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
        whole[off..off + body.len()].copy_from_slice(body);
    }
    assert_eq!(more_flags, vec![true, false]);
    assert_eq!(&whole[..], &p[20..], "reassembled payload");
    assert_eq!(a.counters.drops[GwDrop::TooBig.index()], 0);
}

#[test]
fn the_cached_tunnel_egress_follows_neighbour_route_and_sa_changes() {
    let (mut a, _) = two_sites(1500, None);
    let send = |a: &mut Node<HeapBuf>, len: usize| {
        let inner = udp4(
            "10.1.0.10",
            "10.2.0.20",
            1000,
            2000,
            &vec![7; len],
            64,
            true,
        );
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
        let wan = take_tx(a, 1);
        let lan = take_tx(a, 0);
        (wan.first().map(|f| f.data().to_vec()), lan.len())
    };
    // First packet resolves and caches the egress, the second uses it.
    for _ in 0..2 {
        let (f, _) = send(&mut a, 100);
        assert_eq!(&f.expect("sent")[0..6], &GWB_WAN);
    }
    // A new MAC address for the peer is used by the very next packet.
    let moved = [2, 0xbb, 0, 0, 0, 0x99];
    a.add_static_neighbour(ip("192.0.2.2"), moved, 1);
    assert_eq!(&send(&mut a, 100).0.expect("sent")[0..6], &moved);
    // So is a new route: the peer is now reached through a router.
    let mut routes = RouteTable::new();
    routes.insert(
        "192.0.2.2/32".parse().unwrap(),
        NextHop {
            interface: 1,
            via: Some(ip("192.0.2.254")),
        },
    );
    let router = [2, 0xfe, 0, 0, 0, 0xfe];
    a.add_static_neighbour(ip("192.0.2.254"), router, 1);
    a.set_routes(routes);
    assert_eq!(&send(&mut a, 100).0.expect("sent")[0..6], &router);
    // Too big for the WAN with DF: still answered with an ICMP error while
    // the egress is cached.
    let before = a.counters.encapsulated;
    let (f, icmp) = send(&mut a, 1480);
    assert!(f.is_none());
    assert_eq!(icmp, 1, "frag-needed back to the host");
    assert_eq!(a.counters.encapsulated, before);
    // A new SA in the slot (new outer endpoints) is resolved afresh.
    a.add_static_neighbour(ip("192.0.2.7"), [2, 7, 7, 7, 7, 7], 1);
    a.install_outbound(SaRef(0), sa_out(0x3001, "192.0.2.1", "192.0.2.7"));
    let f = send(&mut a, 100).0.expect("sent");
    assert_eq!(&f[0..6], &[2, 7, 7, 7, 7, 7]);
    assert_eq!(&f[14 + 16..14 + 20], &[192, 0, 2, 7]);
}

#[test]
fn the_cached_delivery_of_decapsulated_packets_follows_neighbour_and_route_changes() {
    let (mut a, mut b) = two_sites_mtu(600, 1500, None);
    // Through both gateways: what b puts on its LAN, and b's counters.
    let send = |a: &mut Node<HeapBuf>, b: &mut Node<HeapBuf>, dst: &str, len, ttl, df| {
        let inner = udp4("10.1.0.10", dst, 1000, 2000, &vec![7; len], ttl, df);
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
        for f in take_tx(a, 1) {
            b.rx(1, f, &mut HeapPool);
        }
        take_tx(b, 0)
            .iter()
            .map(|f| f.data().to_vec())
            .collect::<Vec<_>>()
    };
    let to = |frames: &[Vec<u8>]| -> Vec<[u8; 6]> {
        frames.iter().map(|f| f[0..6].try_into().unwrap()).collect()
    };
    // First packet resolves and caches the adjacency, the second uses it.
    for _ in 0..2 {
        let lan = send(&mut a, &mut b, "10.2.0.20", 100, 64, true);
        assert_eq!(to(&lan), vec![HOST_B_MAC]);
        assert_eq!(lan[0][14 + 8], 62, "TTL decremented by each gateway");
        assert_eq!(checksum::data(&lan[0][14..34]), 0xffff, "header checksum");
    }
    // Another host of the same subnet is not sent to the first one's MAC.
    let other = [2, 0x21, 0, 0, 0, 0x21];
    b.add_static_neighbour(ip("10.2.0.21"), other, 0);
    for _ in 0..2 {
        assert_eq!(
            to(&send(&mut a, &mut b, "10.2.0.21", 100, 64, true)),
            vec![other]
        );
    }
    assert_eq!(
        to(&send(&mut a, &mut b, "10.2.0.20", 100, 64, true)),
        vec![HOST_B_MAC]
    );
    // A new MAC address for the host is used by the very next packet.
    let moved = [2, 0x20, 0, 0, 0, 0x99];
    b.add_static_neighbour(ip("10.2.0.20"), moved, 0);
    assert_eq!(
        to(&send(&mut a, &mut b, "10.2.0.20", 100, 64, true)),
        vec![moved]
    );
    // So is a new route: the host is now reached through a router.
    let mut routes = RouteTable::new();
    routes.insert(
        "10.2.0.20/32".parse().unwrap(),
        NextHop {
            interface: 0,
            via: Some(ip("10.2.0.254")),
        },
    );
    let router = [2, 0xfe, 0, 0, 0, 0x20];
    b.add_static_neighbour(ip("10.2.0.254"), router, 0);
    b.set_routes(routes);
    assert_eq!(
        to(&send(&mut a, &mut b, "10.2.0.20", 100, 64, true)),
        vec![router]
    );
    // With the adjacency cached: TTL expiry and the LAN's MTU still apply.
    let expired = b.counters.drops[GwDrop::TtlExceeded.index()];
    // (TTL 2: gateway a takes one.)
    assert!(send(&mut a, &mut b, "10.2.0.20", 100, 2, true).is_empty());
    assert_eq!(b.counters.drops[GwDrop::TtlExceeded.index()], expired + 1);
    let too_big = b.counters.drops[GwDrop::TooBig.index()];
    assert!(send(&mut a, &mut b, "10.2.0.20", 800, 64, true).is_empty());
    assert_eq!(b.counters.drops[GwDrop::TooBig.index()], too_big + 1);
    let frags = send(&mut a, &mut b, "10.2.0.20", 800, 64, false);
    assert_eq!(to(&frags), vec![router, router], "fragmented for the LAN");
    assert!(frags.iter().all(|f| f.len() - 14 <= 600));
    assert_eq!(b.counters.decapsulated, 10);
    // IPv6 inside: cached by its own address, sent as IPv6.
    for _ in 0..2 {
        let p = udp6("fd01::10", "fd02::20", 100, 64);
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x86dd, &p), &mut HeapPool);
        for f in take_tx(&mut a, 1) {
            b.rx(1, f, &mut HeapPool);
        }
        let lan = take_tx(&mut b, 0);
        assert_eq!(lan.len(), 1, "{:?}", b.counters);
        let f = lan[0].data();
        assert_eq!((&f[0..6], &f[12..14]), (&HOST_B_MAC[..], &[0x86, 0xdd][..]));
        assert_eq!(&f[14 + 24..14 + 40], &p[24..40], "the inner packet");
    }
}

/// Site `site` ('a' encrypts, 'b' decrypts) with `n` tunnels between
/// 192.0.2.1 and 192.0.2.2, one per host 10.128.0.0 + i, SPIs 0x1000 + i,
/// AES-128-GCM on ipsec-mb, anti-replay off (frames are replayed).
fn scale_gw(site: char, n: u32) -> Node<HeapBuf> {
    scale_gw_with(site, n, Algorithm::AES_GCM_128, 0)
}

/// [`scale_gw`] with algorithm `alg` (keys from the tunnel's index) and
/// replay window `window`.
fn scale_gw_with(site: char, n: u32, alg: Algorithm, window: u32) -> Node<HeapBuf> {
    use std::net::Ipv4Addr;
    let mut routes = RouteTable::new();
    routes.insert(
        "10.128.0.0/9".parse().unwrap(),
        NextHop {
            interface: 0,
            via: Some(ip("10.1.0.20")),
        },
    );
    let mut node = Node::new(0, ifaces(site, 1500, None), routes);
    let (me, peer) = if site == 'a' {
        ("192.0.2.1", "192.0.2.2")
    } else {
        ("192.0.2.2", "192.0.2.1")
    };
    let mut spd = Spd::new();
    for i in 0..n {
        let dst = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i));
        spd.insert(Policy {
            selector: Selector::new(
                IpPrefix::new(ip("10.1.0.10"), 32).unwrap(),
                IpPrefix::new(dst, 32).unwrap(),
            ),
            action: Action::Protect(SaRef(i)),
            priority: 10,
        })
        .unwrap();
        let cfg = |dir| {
            let mut c = SaConfig::new(
                Spi::new(0x1000 + i).unwrap(),
                dir,
                Mode::Tunnel,
                TunnelEndpoints {
                    local: ip(me),
                    remote: ip(peer),
                },
            );
            c.replay_window = window;
            c
        };
        let t = || {
            let key = |len: usize| -> Vec<u8> {
                i.to_be_bytes().iter().copied().cycle().take(len).collect()
            };
            new_transform(
                default_backend(alg),
                alg,
                &SaKeys::new(
                    &key(alg.encryption.key_len()),
                    &key(alg.integrity.key_len()),
                ),
            )
            .unwrap()
        };
        if site == 'a' {
            node.install_outbound(
                SaRef(i),
                OutboundSa::new(cfg(Direction::Outbound), t()).unwrap(),
            );
        } else {
            let mut c = cfg(Direction::Inbound);
            c.traffic_selectors = vec![sel("10.1.0.10/32", "10.128.0.0/9")];
            node.install_inbound(InboundSa::new(c, t()).unwrap());
        }
    }
    node.set_spd(spd);
    node.add_static_neighbour(ip(peer), if site == 'a' { GWB_WAN } else { GWA_WAN }, 1);
    node.add_static_neighbour(ip("10.1.0.20"), HOST_A_MAC, 0);
    for _ in 0..1000 {
        node.step();
    }
    node
}

/// Not a test: the pipeline's cost per packet with 1 and with 100,000
/// tunnels, the traffic spread over all of them, frame by frame
/// (`Node::rx`) and by bursts (`Node::rx_burst`, with the prefetch pass
/// above `PREFETCH_MIN_SAS`) (`cargo test -p espresso-dataplane --profile ci
/// scale_probe -- --ignored --nocapture`). Medians of bursts of 32 frames
/// of 60 bytes (`PROBE_PAYLOAD` sets the UDP payload, 18 bytes), in ns per
/// packet.
#[test]
#[ignore = "a measurement that prints ns per packet, run by hand"]
fn scale_probe() {
    use std::net::Ipv4Addr;
    use std::time::Instant;

    let mut rows = Vec::new();
    let only = std::env::var("PROBE").unwrap_or_default();
    let rounds: usize = std::env::var("PROBE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    // UDP payload bytes of the inner packets (18: 60-byte frames).
    let payload: usize = std::env::var("PROBE_PAYLOAD")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(18);
    for n in [1u32, 100_000] {
        let flows = 100_000u32;
        let mut a = scale_gw('a', n);
        let mut b = scale_gw('b', n);
        let plain: Vec<Vec<u8>> = (0..flows)
            .map(|f| {
                let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + f % n);
                let inner = udp4(
                    "10.1.0.10",
                    &dst.to_string(),
                    1000,
                    2000,
                    &vec![0x5a; payload],
                    64,
                    true,
                );
                let mut fr = vec![];
                fr.extend_from_slice(&GWA_LAN);
                fr.extend_from_slice(&HOST_A_MAC);
                fr.extend_from_slice(&0x0800u16.to_be_bytes());
                fr.extend_from_slice(&inner);
                fr
            })
            .collect();
        let mut esp = Vec::new();
        for fr in &plain {
            a.rx(0, HeapBuf::from_slice(fr), &mut HeapPool);
            esp.extend(take_tx(&mut a, 1).into_iter().map(|b| {
                let mut d = b.data().to_vec();
                d[0..6].copy_from_slice(&GWB_WAN);
                d
            }));
        }
        assert_eq!(esp.len(), flows as usize, "{:?}", a.counters);
        for (dir, frames, node, iface) in [
            ("encrypt", &plain, &mut a, 0u16),
            ("decrypt", &esp, &mut b, 1),
        ] {
            for burst_pass in [false, true] {
                let name = format!("{dir} {n} {burst_pass}");
                if !name.contains(&only) {
                    continue;
                }
                let mut per_burst = Vec::new();
                let mut next = 0usize;
                for _round in 0..(rounds * flows as usize / 32) {
                    let mut burst: Vec<HeapBuf> = (0..32)
                        .map(|_| {
                            let f = &frames[next];
                            next = (next + 1) % frames.len();
                            HeapBuf::from_slice(f)
                        })
                        .collect();
                    let t0 = Instant::now();
                    if burst_pass {
                        node.rx_burst(iface, &mut burst, &mut HeapPool);
                    } else {
                        for p in burst {
                            node.rx(iface, p, &mut HeapPool);
                        }
                    }
                    per_burst.push(t0.elapsed().as_nanos() as f64 / 32.0);
                    node.out().tx[0].clear();
                    node.out().tx[1].clear();
                }
                per_burst.sort_by(f64::total_cmp);
                let med = per_burst[per_burst.len() / 2];
                assert_eq!(node.counters.total_drops(), 0, "{:?}", node.counters);
                rows.push(format!(
                    "{dir} {n:>6} SAs rx_burst={burst_pass:<5} {med:7.1} ns/pkt"
                ));
                eprintln!("{}", rows.last().unwrap());
            }
        }
    }
}

/// Above [`PREFETCH_MIN_SAS`](super::node::PREFETCH_MIN_SAS) tunnels the worker runs the prefetch pass
/// pipeline (flow cache, SA slots, SPI table slots, SAs, key schedules)
/// before each burst: traffic over every tunnel must come through both
/// gateways byte for byte, each tunnel's SA counting its own packet.
#[test]
fn burst_pipeline_carries_every_tunnel() {
    use std::net::Ipv4Addr;
    let n = super::node::PREFETCH_MIN_SAS as u32 + 100;
    let mut a = scale_gw('a', n);
    let mut b = scale_gw('b', n);
    let inner: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i);
            udp4(
                "10.1.0.10",
                &dst.to_string(),
                1000,
                2000,
                &i.to_be_bytes(),
                64,
                true,
            )
        })
        .collect();
    let mut delivered = Vec::new();
    for chunk in inner.chunks(32) {
        let burst: Vec<HeapBuf> = chunk
            .iter()
            .map(|p| {
                let mut fr = GWA_LAN.to_vec();
                fr.extend_from_slice(&HOST_A_MAC);
                fr.extend_from_slice(&0x0800u16.to_be_bytes());
                fr.extend_from_slice(p);
                HeapBuf::from_slice(&fr)
            })
            .collect();
        let mut burst = burst;
        a.rx_burst(0, &mut burst, &mut HeapPool);
        let mut esp: Vec<HeapBuf> = take_tx(&mut a, 1)
            .into_iter()
            .map(|f| {
                let mut d = f.data().to_vec();
                d[0..6].copy_from_slice(&GWB_WAN);
                HeapBuf::from_slice(&d)
            })
            .collect();
        assert_eq!(esp.len(), chunk.len(), "{:?}", a.counters);
        b.rx_burst(1, &mut esp, &mut HeapPool);
        delivered.extend(
            take_tx(&mut b, 0)
                .into_iter()
                .map(|f| f.data()[14..].to_vec()),
        );
    }
    assert_eq!(a.counters.total_drops(), 0, "{:?}", a.counters);
    assert_eq!(b.counters.total_drops(), 0, "{:?}", b.counters);
    assert_eq!(delivered.len(), inner.len());
    for (got, sent) in delivered.iter().zip(&inner) {
        // Both gateways forwarded it: TTL two lower, checksum updated,
        // every other byte as sent.
        assert_eq!(got[8], sent[8] - 2);
        assert_eq!((&got[..8], got[9]), (&sent[..8], sent[9]));
        assert_eq!(got[12..], sent[12..]);
        assert_eq!(checksum::data(&got[..20]), 0xffff);
    }
    for i in 0..n {
        let spi = Spi::new(0x1000 + i).unwrap();
        let sa = b.engine().inbound().get(spi).expect("installed");
        assert_eq!(sa.counters.packets, 1, "SPI {spi:?}");
    }
}

/// AES-CBC with HMAC-SHA-256 on ipsec-mb, whose crypto the node runs in
/// one batch per burst, below and above `PREFETCH_MIN_SAS` tunnels: bursts
/// mixing tunnels come through both gateways; at the decrypting one a
/// forged copy and a replayed copy in the same burst as their originals
/// are dropped for their own reasons, and the result is what the same
/// frames give one at a time (`Node::rx`), byte for byte.
#[test]
fn batched_cbc_bursts_through_both_gateways() {
    use crate::crypto::{Encryption, Integrity};
    use std::net::Ipv4Addr;
    if !crate::crypto::available_backends(Algorithm::AES_GCM_128).contains(&Backend::IpsecMb) {
        eprintln!("skipped: built without ipsec-mb, nothing is batched");
        return;
    }
    let alg = Algorithm {
        encryption: Encryption::AesCbc128,
        integrity: Integrity::HmacSha256_128,
    };
    for n in [5, super::node::PREFETCH_MIN_SAS as u32 + 20] {
        let mut a = scale_gw_with('a', n, alg, 64);
        let mut b = scale_gw_with('b', n, alg, 64);
        let mut b1 = scale_gw_with('b', n, alg, 64);
        let inner: Vec<Vec<u8>> = (0..3 * n.min(40))
            .map(|k| {
                let i = k % n;
                let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i);
                let payload = vec![k as u8; 1 + (k as usize * 97) % 1300];
                udp4(
                    "10.1.0.10",
                    &dst.to_string(),
                    1000,
                    2000,
                    &payload,
                    64,
                    true,
                )
            })
            .collect();
        let mut esp = Vec::new();
        for chunk in inner.chunks(32) {
            let mut burst: Vec<HeapBuf> = chunk
                .iter()
                .map(|p| eth(GWA_LAN, HOST_A_MAC, 0x0800, p))
                .collect();
            a.rx_burst(0, &mut burst, &mut HeapPool);
            esp.extend(take_tx(&mut a, 1).into_iter().map(|f| {
                let mut d = f.data().to_vec();
                d[0..6].copy_from_slice(&GWB_WAN);
                d
            }));
        }
        assert_eq!(a.counters.total_drops(), 0, "{:?}", a.counters);
        assert_eq!(esp.len(), inner.len());
        // The burst at B: frame 3 again after frame 4 (a replay), a forged
        // copy of frame 6 right before it (its ICV fails, and the window
        // must not move for it: frame 6 itself is accepted after it).
        let mut frames = esp.clone();
        frames.insert(5, esp[3].clone());
        let mut forged = esp[6].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        frames.insert(7, forged);
        let mut delivered = Vec::new();
        for chunk in frames.chunks(32) {
            let mut burst: Vec<HeapBuf> = chunk.iter().map(|f| HeapBuf::from_slice(f)).collect();
            b.rx_burst(1, &mut burst, &mut HeapPool);
            delivered.extend(take_tx(&mut b, 0).into_iter().map(|f| f.data().to_vec()));
        }
        let mut one_by_one = Vec::new();
        for f in &frames {
            b1.rx(1, HeapBuf::from_slice(f), &mut HeapPool);
            one_by_one.extend(take_tx(&mut b1, 0).into_iter().map(|f| f.data().to_vec()));
        }
        assert_eq!(delivered, one_by_one, "{n} tunnels");
        assert_eq!(b.counters, b1.counters, "{n} tunnels");
        assert_eq!(delivered.len(), inner.len(), "{:?}", b.counters);
        assert_eq!(b.counters.esp_drops[DropReason::AuthFailed.index()], 1);
        assert_eq!(b.counters.esp_drops[DropReason::Replay.index()], 1);
        assert_eq!(b.counters.total_drops(), 2, "{:?}", b.counters);
        for (got, sent) in delivered.iter().zip(&inner) {
            assert_eq!(got[14 + 20..], sent[20..], "{n} tunnels");
        }
    }
}

/// The outer IPv4 checksum of ESP for us is checked once, in `ip_input`:
/// a tunnel packet whose outer header was damaged on the way is dropped
/// there as a bad frame, reaches no SA, and the next good one still
/// passes.
#[test]
fn esp_with_a_bad_outer_checksum_is_dropped_once() {
    let (mut a, mut b) = two_sites(1500, None);
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, &[0x5a; 40], 64, true);
    let mut frames = Vec::new();
    for _ in 0..2 {
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
        frames.extend(take_tx(&mut a, 1).into_iter().map(|f| f.data().to_vec()));
    }
    assert_eq!(frames.len(), 2);
    let mut bad = frames[0].clone();
    bad[14 + 10] ^= 0x01;
    b.rx(1, HeapBuf::from_slice(&bad), &mut HeapPool);
    assert_eq!(b.counters.drops[GwDrop::BadFrame.index()], 1);
    assert_eq!(b.counters.decapsulated, 0);
    assert!(take_tx(&mut b, 0).is_empty());
    b.rx(1, HeapBuf::from_slice(&frames[1]), &mut HeapPool);
    assert_eq!(b.counters.decapsulated, 1, "{:?}", b.counters);
    assert_eq!(take_tx(&mut b, 0).len(), 1);
    assert_eq!(b.counters.total_drops(), 1);
}

// ---- the neighbour table under attack ----

const EVIL_MAC: [u8; 6] = [2, 0xee, 0xee, 0xee, 0xee, 0xee];

/// An ARP frame (`op` 1 request, 2 reply) to `eth_dst`.
fn arp(op: u16, eth_dst: [u8; 6], sha: [u8; 6], spa: &str, tha: [u8; 6], tpa: &str) -> HeapBuf {
    let (IpAddr::V4(spa), IpAddr::V4(tpa)) = (ip(spa), ip(tpa)) else {
        panic!()
    };
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    eth(eth_dst, sha, 0x0806, &a)
}

/// An ICMPv6 neighbour-discovery frame from `src` (link-layer `src_mac`)
/// to `dst`, hop limit 255.
fn nd(eth_dst: [u8; 6], src_mac: [u8; 6], src: &str, dst: &str, msg: Icmpv6Repr) -> HeapBuf {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!()
    };
    let mut icmp = vec![0u8; msg.buffer_len()];
    msg.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut icmp[..]))
        .unwrap();
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
    p[6] = 58;
    p[7] = 255;
    p[8..24].copy_from_slice(&s.octets());
    p[24..40].copy_from_slice(&d.octets());
    p.extend_from_slice(&icmp);
    eth(eth_dst, src_mac, 0x86dd, &p)
}

fn na(target: &str, mac: [u8; 6], solicited: bool) -> Icmpv6Repr<'static> {
    let IpAddr::V6(target_addr) = ip(target) else {
        panic!()
    };
    Icmpv6Repr::NeighborAdvert {
        router: false,
        solicited,
        override_flag: true,
        target_addr,
        target_lladdr: Some(EthernetAddress(mac)),
    }
}

fn refused(n: &Node<HeapBuf>, r: Refused) -> u64 {
    n.counters.neighbour_refused[r.index()]
}

/// Host A's packet to host B through gateway `a`: the frames `a` sends on
/// the WAN.
fn a_to_b(a: &mut Node<HeapBuf>) -> Vec<HeapBuf> {
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, b"hi", 64, true);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
    take_tx(a, 1)
}

/// `a`, with the peer 192.0.2.2 (no static entry) resolved by an ARP
/// exchange on the WAN.
fn a_with_learned_peer() -> Node<HeapBuf> {
    let (mut a, _) = two_sites_with(1500, 1500, None, false);
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 1, "the ARP request");
    assert_eq!(&out[0].data()[0..6], &[0xff; 6]);
    assert_eq!(&out[0].data()[38..42], &[192, 0, 2, 2]);
    a.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1, "the waiting ESP packet");
    assert_eq!(&out[0].data()[0..6], &GWB_WAN);
    assert_eq!(a.out().learned, vec![(ip("192.0.2.2"), GWB_WAN, 1)]);
    a.out().learned.clear();
    a
}

#[test]
fn claims_for_the_wan_peer_from_the_lan_are_ignored_and_counted() {
    let mut a = a_with_learned_peer();
    let peer = ip("192.0.2.2");
    // A LAN host's unsolicited ARP reply, its announcement and an
    // advertisement for the peer's IPv6 address.
    a.rx(
        0,
        arp(2, GWA_LAN, EVIL_MAC, "192.0.2.2", GWA_LAN, "10.1.0.1"),
        &mut HeapPool,
    );
    a.rx(
        0,
        arp(1, [0xff; 6], EVIL_MAC, "192.0.2.2", [0; 6], "192.0.2.2"),
        &mut HeapPool,
    );
    a.rx(
        0,
        nd(
            GWA_LAN,
            EVIL_MAC,
            "fd01::66",
            "fd01::1",
            na("2001:db8::2", EVIL_MAC, true),
        ),
        &mut HeapPool,
    );
    assert_eq!(refused(&a, Refused::WrongInterface), 3);
    // And one claiming an address on no subnet of ours.
    a.rx(
        0,
        arp(2, GWA_LAN, EVIL_MAC, "198.51.100.1", GWA_LAN, "10.1.0.1"),
        &mut HeapPool,
    );
    assert_eq!(refused(&a, Refused::OffSubnet), 1);
    assert_eq!(a.neighbours().lookup(0, peer), None);
    assert_eq!(a.neighbours().lookup(1, peer), Some(GWB_WAN));
    assert!(a.out().learned.is_empty());
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &GWB_WAN, "ESP still to the peer");
}

#[test]
fn unsolicited_answers_on_the_right_link_create_nothing() {
    let (mut a, _) = two_sites_with(1500, 1500, None, false);
    // Nobody asked for the peer yet: its "reply" and advertisement are
    // unsolicited (RFC 4861 §7.2.5), even on the WAN.
    a.rx(
        1,
        arp(2, GWA_WAN, EVIL_MAC, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    a.rx(
        1,
        nd(
            GWA_WAN,
            EVIL_MAC,
            "2001:db8::66",
            "2001:db8::1",
            na("2001:db8::2", EVIL_MAC, true),
        ),
        &mut HeapPool,
    );
    assert_eq!(refused(&a, Refused::Unsolicited), 2);
    assert!(a.neighbours().get(1, ip("192.0.2.2")).is_none());
    assert!(a.neighbours().get(1, ip("2001:db8::2")).is_none());
    // The first packet for the peer asks; the answer counts.
    let out = a_to_b(&mut a);
    assert_eq!(&out[0].data()[0..6], &[0xff; 6]);
    a.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(&take_tx(&mut a, 1)[0].data()[0..6], &GWB_WAN);
}

#[test]
fn an_arp_reply_on_the_wan_for_a_lan_host_is_ignored() {
    let (mut a, mut b) = two_sites(1500, None);
    // Decrypted traffic for a LAN host gateway A has to resolve.
    let inner = udp4("10.2.0.20", "10.1.0.7", 2000, 1000, b"secret", 64, true);
    b.rx(0, eth(GWB_LAN, HOST_B_MAC, 0x0800, &inner), &mut HeapPool);
    let wan = take_tx(&mut b, 1);
    a.rx(1, wan.into_iter().next().unwrap(), &mut HeapPool);
    let req = take_tx(&mut a, 0);
    assert_eq!(req.len(), 1);
    assert_eq!(&req[0].data()[38..42], &[10, 1, 0, 7]);
    assert_eq!(a.pending_len(), 1);
    // A WAN host answers the LAN's request first.
    a.rx(
        1,
        arp(2, GWA_WAN, EVIL_MAC, "10.1.0.7", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(refused(&a, Refused::WrongInterface), 1);
    assert!(take_tx(&mut a, 1).is_empty(), "nothing out of the WAN port");
    assert_eq!(a.pending_len(), 1);
    assert_eq!(a.neighbours().lookup(1, ip("10.1.0.7")), None);
    // The host itself answers on the LAN.
    let host = [2, 0, 0, 0, 0xa, 7];
    a.rx(
        0,
        arp(2, GWA_LAN, host, "10.1.0.7", GWA_LAN, "10.1.0.1"),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &host);
    assert!(out[0].data().ends_with(b"secret"));
}

#[test]
fn a_flood_of_claims_leaves_room_for_a_new_lan_host() {
    let (mut a, mut b) = two_sites(1500, None);
    let mut x = 0x1234_5678u32;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    // 5,000 unsolicited answers, between 5,000 solicitations.
    for i in 0..10_000 {
        let r = rnd();
        let mac = [
            2,
            0xee,
            (r >> 24) as u8,
            (r >> 16) as u8,
            (r >> 8) as u8,
            r as u8,
        ];
        let v4 = format!("10.1.0.{}", 2 + r % 250);
        let v6 = format!("fd01::{:x}:{:x}", r >> 16, r & 0xffff);
        let frame = match (i % 2, i / 2 % 3) {
            // Unsolicited ARP replies and announcements.
            (0, 0) => arp(2, GWA_LAN, mac, &v4, GWA_LAN, "10.1.0.1"),
            (0, 1) => arp(1, [0xff; 6], mac, &v4, [0; 6], &v4),
            // Unsolicited advertisements.
            (0, _) => nd(GWA_LAN, mac, &v6, "fd01::1", na(&v6, mac, true)),
            // Solicitations for our address from made-up neighbours: these
            // may create (STALE) entries, and fill the table.
            _ => {
                let IpAddr::V6(target_addr) = ip("fd01::1") else {
                    panic!()
                };
                let ns = Icmpv6Repr::NeighborSolicit {
                    target_addr,
                    source_lladdr: Some(EthernetAddress(mac)),
                };
                nd([0x33, 0x33, 0xff, 0, 0, 1], mac, &v6, "ff02::1:ff00:1", ns)
            }
        };
        a.rx(0, frame, &mut HeapPool);
        take_tx(&mut a, 0);
        assert!(a.neighbours().learned_len() <= NeighbourTable::MAX_LEARNED);
    }
    assert!(
        a.out().learned.is_empty(),
        "nothing confirmed, nothing spread"
    );
    // Every answer was refused (unsolicited, or against the static entry
    // of host A); only solicitations taught anything.
    let answers: u64 = [Refused::Unsolicited, Refused::StaticEntry]
        .iter()
        .map(|r| refused(&a, *r))
        .sum();
    assert_eq!(answers, 5000);
    assert_eq!(a.neighbours().learned_len(), NeighbourTable::MAX_LEARNED);
    assert!(a
        .neighbours()
        .iter()
        .all(|(ip, n)| n.state == State::Static || (ip.is_ipv6() && n.state == State::Stale)));
    // A new LAN host is resolved and reached.
    let inner = udp4("10.2.0.20", "10.1.0.77", 2000, 1000, b"hello", 64, true);
    b.rx(0, eth(GWB_LAN, HOST_B_MAC, 0x0800, &inner), &mut HeapPool);
    a.rx(1, take_tx(&mut b, 1).remove(0), &mut HeapPool);
    let req = take_tx(&mut a, 0);
    assert_eq!(req.len(), 1, "{:?}", a.counters);
    assert_eq!(&req[0].data()[38..42], &[10, 1, 0, 77]);
    let host = [2, 0, 0, 0, 0xa, 77];
    a.rx(
        0,
        arp(2, GWA_LAN, host, "10.1.0.77", GWA_LAN, "10.1.0.1"),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &host);
    // Its IPv6 twin too, with the table full of made-up neighbours.
    let inner = udp6("fd02::20", "fd01::77", 10, 64);
    b.rx(0, eth(GWB_LAN, HOST_B_MAC, 0x86dd, &inner), &mut HeapPool);
    a.rx(1, take_tx(&mut b, 1).remove(0), &mut HeapPool);
    assert_eq!(take_tx(&mut a, 0).len(), 1, "the solicitation");
    a.rx(
        0,
        nd(
            GWA_LAN,
            host,
            "fd01::77",
            "fd01::1",
            na("fd01::77", host, true),
        ),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &host);
    assert!(a.neighbours().learned_len() <= NeighbourTable::MAX_LEARNED);
    assert_eq!(refused(&a, Refused::TableFull), 0);
}

#[test]
fn a_learned_entry_ages_to_stale_and_is_probed() {
    let mut a = a_with_learned_peer();
    let peer = ip("192.0.2.2");
    let timers = a.neighbours().timers();
    assert_eq!(a.neighbours().get(1, peer).unwrap().state, State::Reachable);
    // Confirmed long ago: the next packet still leaves, with a unicast
    // ARP request to the address in the entry.
    let mut now = timers.reachable_ms + 1;
    a.set_now(now);
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 2, "probe and ESP");
    assert_eq!(&out[0].data()[0..6], &GWB_WAN, "unicast probe");
    assert_eq!(&out[0].data()[12..14], &[8, 6]);
    assert_eq!(&out[1].data()[0..6], &GWB_WAN);
    assert_eq!(a.neighbours().get(1, peer).unwrap().state, State::Probe);
    // The peer answers: reachable again, no more probes.
    a.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(a.neighbours().get(1, peer).unwrap().state, State::Reachable);
    assert_eq!(a.out().learned.len(), 1, "the confirmation is passed on");
    now += timers.retrans_ms;
    a.set_now(now);
    assert_eq!(a_to_b(&mut a).len(), 1);
    // Stale again, and silent this time: after its probes the peer is
    // asked for by broadcast, and packets wait.
    now += timers.reachable_ms;
    for _ in 0..timers.unicast_probes {
        a.set_now(now);
        assert_eq!(a_to_b(&mut a).len(), 2);
        now += timers.retrans_ms;
    }
    a.set_now(now);
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &[0xff; 6], "broadcast request");
    assert_eq!(a.pending_len(), 1);
    assert_eq!(a.neighbours().lookup(1, peer), None);
}

#[test]
fn a_changed_mac_is_probed_before_it_is_used() {
    let mut a = a_with_learned_peer();
    let peer = ip("192.0.2.2");
    let timers = a.neighbours().timers();
    // Someone on the WAN claims the peer's address.
    a.rx(
        1,
        arp(2, GWA_WAN, EVIL_MAC, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(refused(&a, Refused::MacChange), 1);
    assert!(a.out().learned.is_empty());
    // Traffic still goes to the address the entry had, which is probed.
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0].data()[0..6], &GWB_WAN, "probe to the old address");
    assert_eq!(&out[1].data()[0..6], &GWB_WAN);
    // The real peer answers: the claim is forgotten.
    a.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(a.neighbours().get(1, peer).unwrap().state, State::Reachable);
    assert_eq!(a.neighbours().lookup(1, peer), Some(GWB_WAN));
    // A peer that really moved: the old address stays silent, the new one
    // answers the broadcast request that follows.
    let moved = [2, 0xbb, 0, 0, 0, 0x77];
    a.rx(
        1,
        arp(1, [0xff; 6], moved, "192.0.2.2", [0; 6], "192.0.2.2"),
        &mut HeapPool,
    );
    let mut now = 0;
    for _ in 0..timers.unicast_probes {
        let out = a_to_b(&mut a);
        assert!(out.iter().all(|f| f.data()[0..6] == GWB_WAN));
        now += timers.retrans_ms;
        a.set_now(now);
    }
    let out = a_to_b(&mut a);
    assert_eq!(&out[0].data()[0..6], &[0xff; 6]);
    a.rx(
        1,
        arp(2, GWA_WAN, moved, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &moved);
}

#[test]
fn static_entries_are_never_overridden() {
    let (mut a, _) = two_sites(1500, None);
    let peer = ip("192.0.2.2");
    a.rx(
        1,
        arp(2, GWA_WAN, EVIL_MAC, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    a.rx(
        1,
        arp(1, GWA_WAN, EVIL_MAC, "192.0.2.2", [0; 6], "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(take_tx(&mut a, 1).len(), 1, "the request is answered");
    assert_eq!(refused(&a, Refused::StaticEntry), 2);
    // Nor by another worker's word, nor by a re-resolution.
    a.learn_neighbour(peer, EVIL_MAC, 1);
    a.reresolve(peer, &mut HeapPool);
    assert!(
        take_tx(&mut a, 1).is_empty(),
        "no request for a static entry"
    );
    assert_eq!(a.neighbours().get(1, peer).unwrap().state, State::Static);
    let out = a_to_b(&mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &GWB_WAN);
}

#[test]
fn unicast_ip_in_group_frames_is_dropped_and_counted() {
    let (mut a, _) = two_sites(1500, None);
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, b"x", 64, true);
    for dst in [
        [0xff; 6],
        [0x01, 0x00, 0x5e, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
    ] {
        a.rx(0, eth(dst, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
    }
    // To the gateway itself, and from the WAN.
    let echo = udp4("10.1.0.10", "10.1.0.1", 1, 7, b"x", 64, false);
    a.rx(0, eth([0xff; 6], HOST_A_MAC, 0x0800, &echo), &mut HeapPool);
    let v6 = udp6("2001:db8::9", "fd01::10", 8, 64);
    a.rx(1, eth([0xff; 6], GWB_WAN, 0x86dd, &v6), &mut HeapPool);
    assert!(take_tx(&mut a, 0).is_empty());
    assert!(take_tx(&mut a, 1).is_empty());
    assert_eq!(a.counters.drops[GwDrop::GroupFrame.index()], 5);
    assert_eq!(a.counters.encapsulated, 0);
    // The same packet to our address is forwarded.
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &inner), &mut HeapPool);
    assert_eq!(take_tx(&mut a, 1).len(), 1);
}

#[test]
fn reresolving_the_peer_replaces_a_wrong_entry() {
    let (mut a, _) = two_sites_with(1500, 1500, None, false);
    let peer = ip("192.0.2.2");
    // The attacker wins the race to answer our request.
    a_to_b(&mut a);
    a.rx(
        1,
        arp(2, GWA_WAN, EVIL_MAC, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(&take_tx(&mut a, 1)[0].data()[0..6], &EVIL_MAC);
    // The control thread, its DPD unanswered, asks for a re-resolution.
    a.set_now(10);
    a.reresolve(peer, &mut HeapPool);
    assert_eq!(a.counters.neighbour_flushes, 1);
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &[0xff; 6], "broadcast request");
    assert_eq!(&out[0].data()[38..42], &[192, 0, 2, 2]);
    a.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(a.neighbours().lookup(1, peer), Some(GWB_WAN));
    let out = a_to_b(&mut a);
    assert_eq!(&out[0].data()[0..6], &GWB_WAN);
}

#[test]
fn an_answer_landing_on_another_worker_resolves_the_one_that_asked() {
    let (mut w0, _) = two_sites_with(1500, 1500, None, false);
    let (mut w1, _) = two_sites_with(1500, 1500, None, false);
    let log = std::sync::Arc::new(SolicitLog::new());
    w0.share_solicit_log(log.clone());
    w1.share_solicit_log(log);
    // Worker 1 asks; the NIC gives the ARP reply to worker 0.
    assert_eq!(&a_to_b(&mut w1)[0].data()[0..6], &[0xff; 6]);
    w0.rx(
        1,
        arp(2, GWA_WAN, GWB_WAN, "192.0.2.2", GWA_WAN, "192.0.2.1"),
        &mut HeapPool,
    );
    assert_eq!(refused(&w0, Refused::Unsolicited), 0);
    assert_eq!(w0.out().learned, vec![(ip("192.0.2.2"), GWB_WAN, 1)]);
    // Passed on through the control thread.
    let (peer, mac, iface) = w0.out().learned[0];
    w1.learn_neighbour(peer, mac, iface);
    let out = take_tx(&mut w1, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data()[0..6], &GWB_WAN);
}

#[test]
fn group_or_zero_link_addresses_are_neither_answered_nor_learned() {
    let (mut a, _) = two_sites(1500, None);
    for sha in [[0; 6], [0xff; 6], [0x01, 0x00, 0x5e, 0, 0, 7]] {
        a.rx(
            0,
            arp(1, [0xff; 6], sha, "10.1.0.7", [0; 6], "10.1.0.1"),
            &mut HeapPool,
        );
        let IpAddr::V6(target_addr) = ip("fd01::1") else {
            panic!()
        };
        let ns = Icmpv6Repr::NeighborSolicit {
            target_addr,
            source_lladdr: Some(EthernetAddress(sha)),
        };
        a.rx(
            0,
            nd(
                [0x33, 0x33, 0xff, 0, 0, 1],
                HOST_A_MAC,
                "fd01::7",
                "ff02::1:ff00:1",
                ns,
            ),
            &mut HeapPool,
        );
        // Another worker's word is checked the same way.
        a.learn_neighbour(ip("10.1.0.8"), sha, 0);
    }
    assert!(
        take_tx(&mut a, 0).is_empty(),
        "no reply to a group or zero MAC"
    );
    assert_eq!(refused(&a, Refused::BadAddress), 6);
    // Nor does a host get the subnet's network or broadcast address.
    for edge in ["10.1.0.0", "10.1.0.255"] {
        a.rx(
            0,
            arp(1, [0xff; 6], EVIL_MAC, edge, [0; 6], "10.1.0.1"),
            &mut HeapPool,
        );
    }
    assert_eq!(refused(&a, Refused::BadAddress), 8);
    assert_eq!(a.neighbours().learned_len(), 0);
}
