//! No plaintext out of the WAN that policy does not allow: fragments,
//! whose ports are unknown, are never bypassed when they may belong to a
//! protected flow.

use super::*;
use crate::esp::Spd;

/// UDP-encapsulated ESP between the two gateways' WAN addresses (every SA
/// of the harness uses NAT-T).
fn is_esp(frame: &[u8]) -> bool {
    frame.len() > 14 + 28 + 8
        && frame[12..14] == [0x08, 0x00]
        && frame[14 + 9] == 17
        && frame[14 + 12..14 + 15] == [192, 0, 2]
        && frame[14 + 16..14 + 19] == [192, 0, 2]
        && frame[14 + 22..14 + 24] == 4500u16.to_be_bytes()
        && frame[14 + 28..14 + 32] != [0; 4]
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// An IPv4 fragment: `offset` in 8-byte units, `more` the MF flag.
fn frag4(src: &str, dst: &str, proto: u8, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = udp4(src, dst, 0, 0, &[], 64, false);
    p.truncate(20);
    p[9] = proto;
    p[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    p[6..8].copy_from_slice(&(offset | if more { 0x2000 } else { 0 }).to_be_bytes());
    p[10..12].fill(0);
    let c = !checksum::data(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// An IPv6 fragment (Fragment header, `next` after it).
fn frag6(src: &str, dst: &str, next: u8, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p[6] = 44;
    p[7] = 64;
    p[8..24].copy_from_slice(&ip6(src));
    p[24..40].copy_from_slice(&ip6(dst));
    p.push(next);
    p.push(0);
    p.extend_from_slice(&(offset << 3 | u16::from(more)).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x12, 0x34]);
    p.extend_from_slice(data);
    p
}

/// A port-specific PROTECT policy (UDP to port 5000) under a broader
/// BYPASS one: the protected flow's fragments must not leave in clear.
/// Non-initial fragments and a first fragment too short for the ports
/// are dropped and counted; first fragments with their ports and other
/// protocols' fragments are classified as before.
#[test]
fn fragments_of_a_port_specific_protected_flow_never_leave_in_clear() {
    let (mut a, _) = two_sites(1500, None);
    let mut policies = Vec::new();
    for (l, r) in [("10.1.0.0/24", "10.2.0.0/24"), ("fd01::/64", "fd02::/64")] {
        policies.push(Policy {
            selector: sel(l, r).with_protocol(17).with_dst_ports(5000..=5000),
            action: Action::Protect(SaRef(0)),
            priority: 1,
        });
        policies.push(Policy {
            selector: sel(l, r),
            action: Action::Bypass,
            priority: 5,
        });
    }
    a.set_spd(Spd::from_policies(policies).unwrap());
    let mut send = |p: &[u8], ethertype: u16| {
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, ethertype, p), &mut HeapPool);
        let out = take_tx(&mut a, 1);
        assert!(out.len() <= 1);
        (out.first().map(|f| is_esp(f.data())), a.counters)
    };
    // Whole packets: port 5000 protected, others bypassed; the bypass of
    // a packet with ports 0 is remembered in the flow cache.
    let udp = |sport, dport| udp4("10.1.0.10", "10.2.0.20", sport, dport, &[9; 64], 64, false);
    assert_eq!(send(&udp(7, 5000), 0x0800).0, Some(true));
    assert_eq!(send(&udp(7, 53), 0x0800).0, Some(false));
    assert_eq!(send(&udp(0, 0), 0x0800).0, Some(false));

    // A non-initial fragment: its ports are not in it. Before, they were
    // taken as 0 and the bypass matched (and the cached ports-0 flow
    // would answer the same).
    let (out, c) = send(
        &frag4("10.1.0.10", "10.2.0.20", 17, 100, false, &[0x13; 40]),
        0x0800,
    );
    assert_eq!(out, None, "non-initial fragment in clear");
    assert_eq!(c.esp_drops[DropReason::OpaquePorts.index()], 1);
    // A first fragment with 2 bytes of UDP header.
    let (out, c) = send(
        &frag4("10.1.0.10", "10.2.0.20", 17, 0, true, &[0x13, 0x88]),
        0x0800,
    );
    assert_eq!(out, None, "short first fragment in clear");
    assert_eq!(c.esp_drops[DropReason::OpaquePorts.index()], 2);
    // A first fragment with its ports is classified by them.
    let mut head = udp(7, 5000)[20..20 + 48].to_vec();
    head[4..6].copy_from_slice(&72u16.to_be_bytes());
    assert_eq!(
        send(&frag4("10.1.0.10", "10.2.0.20", 17, 0, true, &head), 0x0800).0,
        Some(true)
    );
    // TCP: no port-specific policy, so its fragments are bypassed.
    assert_eq!(
        send(
            &frag4("10.1.0.10", "10.2.0.20", 6, 100, false, &[1; 40]),
            0x0800
        )
        .0,
        Some(false)
    );

    // IPv6: a non-initial fragment whose data would read as ports 1234 and
    // 53 (before, they were read from the middle of the payload).
    let mut data = vec![0x04, 0xd2, 0x00, 0x35];
    data.extend_from_slice(&[0x13; 36]);
    let (out, c) = send(
        &frag6("fd01::10", "fd02::20", 17, 100, false, &data),
        0x86dd,
    );
    assert_eq!(out, None, "non-initial IPv6 fragment in clear");
    assert_eq!(c.esp_drops[DropReason::OpaquePorts.index()], 3);
    // A first fragment too short for the ports.
    let (out, c) = send(&frag6("fd01::10", "fd02::20", 17, 0, true, &[0x04]), 0x86dd);
    assert_eq!(out, None);
    assert_eq!(c.esp_drops[DropReason::OpaquePorts.index()], 4);
    // A non-initial fragment naming a Destination Options header: its
    // protocol is hidden too (before, "protocol 60" met the bypass).
    let (out, c) = send(
        &frag6("fd01::10", "fd02::20", 60, 100, false, &data),
        0x86dd,
    );
    assert_eq!(out, None);
    assert_eq!(c.esp_drops[DropReason::OpaquePorts.index()], 5);
    // First fragment with the UDP header: protected by its port.
    let mut first = vec![0x04, 0xd2, 0x13, 0x88, 0, 48, 0, 0];
    first.extend_from_slice(&[0x13; 40]);
    assert_eq!(
        send(&frag6("fd01::10", "fd02::20", 17, 0, true, &first), 0x86dd).0,
        Some(true)
    );
    assert_eq!(a.counters.bypassed, 3);
}

/// An ANY-port PROTECT policy covers fragments: they are protected, not
/// dropped, even under a port-specific BYPASS ranked first.
#[test]
fn fragments_under_an_any_port_protect_policy_are_protected() {
    let (mut a, _) = two_sites(1500, None);
    a.set_spd(
        Spd::from_policies([
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24")
                    .with_protocol(17)
                    .with_dst_ports(53..=53),
                action: Action::Bypass,
                priority: 1,
            },
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24"),
                action: Action::Protect(SaRef(0)),
                priority: 5,
            },
        ])
        .unwrap(),
    );
    let f = frag4("10.1.0.10", "10.2.0.20", 17, 100, false, &[0x13; 40]);
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &f), &mut HeapPool);
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1, "{:?}", a.counters);
    assert!(is_esp(out[0].data()));
}
