//! No plaintext out of the WAN that policy does not allow: packets the
//! gateway originates (ICMP errors, echo replies) go through the SPD, ICMP
//! errors are rate-limited, and fragments, whose ports are unknown, are
//! never bypassed when they may belong to a protected flow.

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

/// Host A sends `inner` through gwA; gwB receives what gwA put on the WAN.
/// Returns gwB's WAN frames.
fn through_tunnel(
    a: &mut Node<HeapBuf>,
    b: &mut Node<HeapBuf>,
    inner: &[u8],
    ethertype: u16,
) -> Vec<HeapBuf> {
    a.rx(0, eth(GWA_LAN, HOST_A_MAC, ethertype, inner), &mut HeapPool);
    let wan = take_tx(a, 1);
    assert_eq!(wan.len(), 1, "{:?}", a.counters);
    assert!(is_esp(wan[0].data()));
    for f in wan {
        b.rx(1, f, &mut HeapPool);
    }
    take_tx(b, 1)
}

/// gwA decrypts `esp` (from gwB) and hands host A the inner packet.
fn decrypt_at_a(a: &mut Node<HeapBuf>, esp: HeapBuf) -> Vec<u8> {
    let mut d = esp.data().to_vec();
    d[0..6].copy_from_slice(&GWA_WAN);
    a.rx(1, HeapBuf::from_slice(&d), &mut HeapPool);
    let lan = take_tx(a, 0);
    assert_eq!(lan.len(), 1, "{:?}", a.counters);
    assert_eq!(&lan[0].data()[0..6], &HOST_A_MAC);
    lan[0].data()[14..].to_vec()
}

/// Time exceeded about a decrypted packet (TTL / hop limit 1 after gwB's
/// decapsulation) leaves gwB through the SA of the reverse flow, from
/// gwB's LAN address; decrypted by gwA it is the error host A expects.
/// Before, gwB sent it in clear out of the WAN, quoting the decrypted
/// header.
#[test]
fn time_exceeded_about_a_decrypted_packet_goes_back_through_the_tunnel() {
    let (mut a, mut b) = two_sites(1500, None);
    // TTL 2: gwA makes it 1, gwB finds it expired after decapsulation.
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, b"secret", 2, false);
    let out = through_tunnel(&mut a, &mut b, &inner, 0x0800);
    assert_eq!(b.counters.drops[GwDrop::TtlExceeded.index()], 1);
    assert!(take_tx(&mut b, 0).is_empty());
    assert_eq!(out.len(), 1, "{:?}", b.counters);
    assert!(is_esp(out[0].data()), "cleartext ICMP on the WAN");
    let r = decrypt_at_a(&mut a, out.into_iter().next().unwrap());
    assert_eq!((r[9], r[20], r[21]), (1, 11, 0), "time exceeded");
    assert_eq!(&r[12..16], &[10, 2, 0, 1], "from gwB's LAN address");
    assert_eq!(&r[16..20], &[10, 1, 0, 10]);
    assert_eq!(&r[28 + 12..28 + 20], &inner[12..20], "quotes the packet");

    let inner6 = udp6("fd01::10", "fd02::20", 600, 2);
    let out = through_tunnel(&mut a, &mut b, &inner6, 0x86dd);
    assert_eq!(out.len(), 1, "{:?}", b.counters);
    assert!(is_esp(out[0].data()), "cleartext ICMPv6 on the WAN");
    let r = decrypt_at_a(&mut a, out.into_iter().next().unwrap());
    assert_eq!((r[6], r[40]), (58, 3), "ICMPv6 time exceeded");
    assert_eq!(r[8..24], ip6("fd02::1"));
    assert_eq!(&r[48 + 8..48 + 40], &inner6[8..40]);
    assert_eq!(b.counters.icmp_errors, 2);
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Fragmentation needed / packet too big about a decrypted packet over
/// the LAN MTU: through the tunnel as well, with the LAN MTU.
#[test]
fn too_big_about_a_decrypted_packet_goes_back_through_the_tunnel() {
    let (mut a, mut b) = two_sites_mtu(1280, 1500, None);
    let inner = udp4("10.1.0.10", "10.2.0.20", 1, 2, &[0x77; 1300], 64, true);
    let out = through_tunnel(&mut a, &mut b, &inner, 0x0800);
    assert_eq!(b.counters.drops[GwDrop::TooBig.index()], 1);
    assert_eq!(out.len(), 1, "{:?}", b.counters);
    assert!(is_esp(out[0].data()), "cleartext ICMP on the WAN");
    let r = decrypt_at_a(&mut a, out.into_iter().next().unwrap());
    assert_eq!((r[20], r[21]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([r[26], r[27]]), 1280);
    assert_eq!(&r[12..16], &[10, 2, 0, 1]);

    // IPv6: the error quotes 1,232 bytes of the decrypted packet.
    let inner6 = udp6("fd01::10", "fd02::20", 1300, 64);
    let out = through_tunnel(&mut a, &mut b, &inner6, 0x86dd);
    assert_eq!(out.len(), 1, "{:?}", b.counters);
    assert!(is_esp(out[0].data()), "cleartext ICMPv6 on the WAN");
    let frame = out[0].data().to_vec();
    assert!(
        !frame.windows(40).any(|w| w == &inner6[..40]),
        "the quoted header in clear"
    );
    let r = decrypt_at_a(&mut a, out.into_iter().next().unwrap());
    assert_eq!((r[6], r[40]), (58, 2), "packet too big");
    assert_eq!(u32::from_be_bytes([r[44], r[45], r[46], r[47]]), 1280);
    assert_eq!(r.len(), 1280);
}

/// With no SA for the reverse flow (or no policy for the error's own
/// addresses) the error is dropped and counted, never sent in clear.
#[test]
fn an_error_that_no_sa_can_carry_is_dropped_and_counted() {
    let (mut a, mut b) = two_sites(1500, None);
    b.remove_outbound(SaRef(0));
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, b"secret", 2, false);
    let out = through_tunnel(&mut a, &mut b, &inner, 0x0800);
    assert!(out.is_empty(), "sent without its SA");
    assert_eq!(b.counters.drops[GwDrop::LocalPolicy.index()], 1);

    // Policies for the hosts only: nothing covers gwB's LAN address.
    let (mut a, mut b) = two_sites(1500, None);
    let host = |l: &str, r: &str| Policy {
        selector: sel(l, r),
        action: Action::Protect(SaRef(0)),
        priority: 1,
    };
    b.set_spd(Spd::from_policies([host("10.2.0.20/32", "10.1.0.10/32")]).unwrap());
    let out = through_tunnel(&mut a, &mut b, &inner, 0x0800);
    assert!(out.is_empty(), "sent without a policy");
    assert_eq!(b.counters.drops[GwDrop::LocalPolicy.index()], 1);
}

/// The reverse flow's SA lives on another worker: the error is handed to
/// it as the gateway's own packet (sealed there without a TTL decrement).
#[test]
fn an_error_whose_sa_is_elsewhere_is_handed_to_its_worker() {
    let (mut a, mut b) = two_sites(1500, None);
    let sa = b.remove_outbound(SaRef(0)).unwrap();
    b.set_outbound_owner(SaRef(0), Some(1));
    let inner = udp4("10.1.0.10", "10.2.0.20", 1000, 2000, b"secret", 2, false);
    assert!(through_tunnel(&mut a, &mut b, &inner, 0x0800).is_empty());
    assert_eq!(b.out().handoffs.len(), 1);
    let (w, h) = b.out().handoffs.pop().unwrap();
    assert_eq!((w, h.kind), (1, HandoffKind::Local(SaRef(0))));
    let (_, mut owner) = two_sites(1500, None);
    owner.install_outbound(SaRef(0), sa);
    owner.handoff_in(h, &mut HeapPool);
    let out = take_tx(&mut owner, 1);
    assert_eq!(out.len(), 1, "{:?}", owner.counters);
    assert!(is_esp(out[0].data()));
    let r = decrypt_at_a(&mut a, out.into_iter().next().unwrap());
    assert_eq!(
        (r[20], r[8]),
        (11, 63),
        "time exceeded, TTL 64 less gwA's hop"
    );
}

/// Echo replies out of the WAN go through the SPD too: with no policy
/// for them they are dropped; a BYPASS policy lets them out in clear; a
/// reply into a protected network leaves as ESP.
#[test]
fn echo_replies_out_of_the_wan_follow_the_spd() {
    let (mut a, _) = two_sites(1500, None);
    let ping = echo4("10.9.0.9", "192.0.2.1");
    a.rx(
        1,
        eth(GWA_WAN, [2, 9, 9, 9, 9, 9], 0x0800, &ping),
        &mut HeapPool,
    );
    assert!(take_tx(&mut a, 1).is_empty());
    assert_eq!(a.counters.drops[GwDrop::LocalPolicy.index()], 1);

    let mut spd = Spd::new();
    for p in a.engine().spd().iter().map(|(_, p)| p.clone()) {
        spd.insert(p).unwrap();
    }
    spd.insert(Policy {
        selector: sel("192.0.2.1/32", "10.9.0.0/24"),
        action: Action::Bypass,
        priority: 1,
    })
    .unwrap();
    a.set_spd(spd);
    a.rx(
        1,
        eth(GWA_WAN, [2, 9, 9, 9, 9, 9], 0x0800, &ping),
        &mut HeapPool,
    );
    let out = take_tx(&mut a, 1);
    assert_eq!(out.len(), 1, "{:?}", a.counters);
    assert_eq!(out[0].data()[14 + 20], 0, "echo reply");

    // A request in clear claiming a source behind the tunnel: whatever
    // happens to it, no reply leaves in clear.
    let spoofed = echo4("10.2.0.20", "10.1.0.1");
    a.rx(1, eth(GWA_WAN, GWB_WAN, 0x0800, &spoofed), &mut HeapPool);
    assert!(take_tx(&mut a, 1).iter().all(|f| is_esp(f.data())));
}

/// ICMP errors are limited by a token bucket per worker; suppressed ones
/// are counted.
#[test]
fn icmp_errors_are_rate_limited() {
    let (mut a, _) = two_sites(1500, None);
    a.set_icmp_rate_limit(10, 3);
    let expired = udp4("10.1.0.10", "10.2.0.20", 1, 2, b"x", 1, false);
    let send = |a: &mut Node<HeapBuf>, n: usize| {
        for i in 0..n {
            let p = if i % 2 == 0 {
                eth(GWA_LAN, HOST_A_MAC, 0x0800, &expired)
            } else {
                eth(
                    GWA_LAN,
                    HOST_A_MAC,
                    0x86dd,
                    &udp6("fd01::10", "fd02::20", 8, 1),
                )
            };
            a.rx(0, p, &mut HeapPool);
        }
        take_tx(a, 0).len()
    };
    assert_eq!(send(&mut a, 5), 3, "the burst");
    assert_eq!(a.counters.drops[GwDrop::IcmpRateLimited.index()], 2);
    // 100 ms at 10 per second: one more.
    a.set_now(100);
    assert_eq!(send(&mut a, 3), 1);
    // A long pause refills the bucket to its burst only.
    a.set_now(60_000);
    assert_eq!(send(&mut a, 6), 3);
    assert_eq!(a.counters.drops[GwDrop::IcmpRateLimited.index()], 7);
    assert_eq!(a.counters.drops[GwDrop::TtlExceeded.index()], 14);
    assert_eq!(a.counters.icmp_errors, 7);
    // None at all.
    a.set_icmp_rate_limit(0, 0);
    assert_eq!(send(&mut a, 2), 0);
    // The default allows a traceroute's bursts.
    let (mut a, _) = two_sites(1500, None);
    assert_eq!(send(&mut a, 10), 10);
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
/// dropped, even under a port-specific BYPASS or DISCARD ranked first
/// (the example configuration discards telnet before protecting the
/// rest).
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
                selector: sel("10.1.0.0/24", "10.2.0.0/24")
                    .with_protocol(6)
                    .with_dst_ports(23..=23),
                action: Action::Discard,
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
    for proto in [17, 6] {
        let f = frag4("10.1.0.10", "10.2.0.20", proto, 100, false, &[0x13; 40]);
        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &f), &mut HeapPool);
        let out = take_tx(&mut a, 1);
        assert_eq!(out.len(), 1, "{:?}", a.counters);
        assert!(is_esp(out[0].data()));
    }
}

mod property {
    use super::*;
    use crate::esp::{packet_key, FlowKey};
    use proptest::prelude::*;

    fn policy() -> impl Strategy<Value = Policy> {
        (
            prop::sample::select(vec![
                "10.1.0.0/24",
                "10.1.0.10/32",
                "10.1.0.1/32",
                "192.0.2.1/32",
                "0.0.0.0/0",
            ]),
            prop::sample::select(vec![
                "10.2.0.0/24",
                "10.2.0.20/32",
                "10.9.0.0/24",
                "0.0.0.0/0",
            ]),
            prop::option::of(prop::sample::select(vec![1u8, 6, 17])),
            prop::sample::select(vec![(0u16, u16::MAX), (5000, 5000), (0, 100)]),
            0u8..3,
            0u32..3,
        )
            .prop_map(|(src, dst, proto, (lo, hi), action, priority)| {
                let mut selector = sel(src, dst).with_dst_ports(lo..=hi);
                selector.protocol = proto;
                Policy {
                    selector,
                    action: match action {
                        0 => Action::Protect(SaRef(0)),
                        1 => Action::Bypass,
                        _ => Action::Discard,
                    },
                    priority,
                }
            })
    }

    /// Something that makes gwA forward or originate a packet.
    #[derive(Debug, Clone)]
    enum Event {
        /// From host A: to host B or 10.9.0.9, UDP to this port, TTL,
        /// DF, payload length; or a non-initial / short first fragment.
        Lan {
            far: bool,
            dport: u16,
            ttl: u8,
            df: bool,
            len: usize,
            frag: u8,
        },
        /// Plaintext from the WAN with TTL 1 (time exceeded to its
        /// source), or an echo request to gwA (an echo reply).
        Wan {
            from_tunnel_net: bool,
            echo: bool,
            to_lan_addr: bool,
        },
        /// Through the tunnel from host B: TTL 1 after decapsulation, or
        /// over gwA's LAN MTU with DF.
        Decrypted { too_big: bool },
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (
                any::<bool>(),
                prop::sample::select(vec![0u16, 53, 5000]),
                prop::sample::select(vec![1u8, 2, 64]),
                any::<bool>(),
                prop::sample::select(vec![10usize, 1440]),
                0u8..3,
            )
                .prop_map(|(far, dport, ttl, df, len, frag)| Event::Lan {
                    far,
                    dport,
                    ttl,
                    df,
                    len,
                    frag
                }),
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(from_tunnel_net, echo, to_lan_addr)| Event::Wan {
                    from_tunnel_net,
                    echo,
                    to_lan_addr
                }
            ),
            any::<bool>().prop_map(|too_big| Event::Decrypted { too_big }),
        ]
    }

    /// A cleartext packet on the WAN is allowed if the SPD bypasses it
    /// whatever ports it has (they are unknown for a fragment).
    fn bypassed_whatever_the_ports(spd: &Spd, ip: &[u8]) -> bool {
        let Ok(k) = packet_key(ip) else { return false };
        let ports: &[(u16, u16)] = if k.opaque {
            &[(0, 0), (1, 53), (7, 5000), (9, 100), (u16::MAX, u16::MAX)]
        } else {
            &[(k.key.sport, k.key.dport)]
        };
        ports.iter().all(|&(sport, dport)| {
            let key = FlowKey {
                sport,
                dport,
                ..k.key
            };
            spd.lookup(&key).map(|p| p.action) == Some(Action::Bypass)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Whatever the SPD and whatever gwA forwards or originates, a
        /// frame it puts on the WAN is ESP or a packet a BYPASS policy
        /// covers regardless of its unknown ports.
        #[test]
        fn the_wan_sees_esp_or_bypassed_packets_only(
            policies in prop::collection::vec(policy(), 0..6),
            events in prop::collection::vec(event(), 1..8),
        ) {
            let (mut a, mut b) = two_sites_mtu(1400, 1500, None);
            let spd = Spd::from_policies(policies).unwrap();
            a.set_spd(spd.clone());
            for e in events {
                match e {
                    Event::Lan { far, dport, ttl, df, len, frag } => {
                        let dst = if far { "10.9.0.9" } else { "10.2.0.20" };
                        let mut p = udp4("10.1.0.10", dst, 7, dport, &vec![5; len], ttl, df);
                        if frag > 0 {
                            let body = if frag == 1 { &p[20..] } else { &p[20..22] };
                            let (off, mf) = if frag == 1 { (100, false) } else { (0, true) };
                            let mut f = frag4("10.1.0.10", dst, 17, off, mf, body);
                            f[8] = ttl;
                            f[10..12].fill(0);
                            let c = !checksum::data(&f[..20]);
                            f[10..12].copy_from_slice(&c.to_be_bytes());
                            p = f;
                        }
                        a.rx(0, eth(GWA_LAN, HOST_A_MAC, 0x0800, &p), &mut HeapPool);
                    }
                    Event::Wan { from_tunnel_net, echo, to_lan_addr } => {
                        let (src, mac) = if from_tunnel_net {
                            ("10.2.0.20", GWB_WAN)
                        } else {
                            ("10.9.0.9", [2, 9, 9, 9, 9, 9])
                        };
                        let p = if echo {
                            echo4(src, if to_lan_addr { "10.1.0.1" } else { "192.0.2.1" })
                        } else {
                            udp4(src, "10.1.0.10", 7, 53, b"x", 1, false)
                        };
                        a.rx(1, eth(GWA_WAN, mac, 0x0800, &p), &mut HeapPool);
                    }
                    Event::Decrypted { too_big } => {
                        let p = if too_big {
                            udp4("10.2.0.20", "10.1.0.10", 7, 53, &[6; 1420], 64, true)
                        } else {
                            udp4("10.2.0.20", "10.1.0.10", 7, 53, b"x", 2, false)
                        };
                        b.rx(0, eth(GWB_LAN, HOST_B_MAC, 0x0800, &p), &mut HeapPool);
                        for f in take_tx(&mut b, 1) {
                            let mut d = f.data().to_vec();
                            d[0..6].copy_from_slice(&GWA_WAN);
                            a.rx(1, HeapBuf::from_slice(&d), &mut HeapPool);
                        }
                        take_tx(&mut b, 0);
                    }
                }
                take_tx(&mut a, 0);
                for f in take_tx(&mut a, 1) {
                    let d = f.data();
                    prop_assert_eq!(&d[12..14], &[0x08, 0x00]);
                    prop_assert!(
                        is_esp(d) || bypassed_whatever_the_ports(&spd, &d[14..]),
                        "cleartext on the WAN: {:02x?}",
                        &d[14..d.len().min(14 + 48)]
                    );
                }
            }
        }
    }
}
