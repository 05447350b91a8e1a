//! Engine tests on heap buffers: round trips over every algorithm, mode,
//! address family, encapsulation and ESN setting; tampering; replay;
//! selectors; sequence exhaustion; lifetimes; hostile input.

use std::net::IpAddr;

use proptest::prelude::*;

use crate::buf::{HeapBuf, PacketBuf};
use crate::crypto::{available_backends, new_transform, Algorithm, Backend, SaKeys};
use crate::gateway::PacketMeta;
use crate::wire::{ip::checksum, IpProtocol};

use super::*;

pub(crate) fn keys_for(alg: Algorithm, seed: u8) -> SaKeys {
    let enc: Vec<u8> = (0..alg.encryption.key_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let auth: Vec<u8> = (0..alg.integrity.key_len())
        .map(|i| seed.wrapping_mul(17).wrapping_add(3 * i as u8))
        .collect();
    SaKeys::new(&enc, &auth)
}

/// An IPv4 or IPv6 UDP packet from `src` to `dst` with `payload_len` bytes.
pub(crate) fn udp_packet(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload_len: usize,
    fill: u8,
) -> Vec<u8> {
    let udp_len = 8 + payload_len;
    let mut udp = vec![0u8; udp_len];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = fill.wrapping_add(i as u8);
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = checksum::transport_v4(s, d, IpProtocol::UDP, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[1] = 0x28 << 2 | 0b10; // DSCP AF11-ish, ECT(0)
            p[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum::data(&p[..20]);
            p[10..12].copy_from_slice(&(!c).to_be_bytes());
            p.extend_from_slice(&udp);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let c = checksum::transport_v6(s, d, IpProtocol::UDP, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(&udp);
            p
        }
        _ => unreachable!("mixed families"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Hosts and gateways for a v4 or v6 inner/outer combination.
pub(crate) struct Topo {
    pub host_a: IpAddr,
    pub host_b: IpAddr,
    pub gw_a: IpAddr,
    pub gw_b: IpAddr,
}

pub(crate) fn topo(inner_v4: bool, outer_v4: bool) -> Topo {
    Topo {
        host_a: if inner_v4 {
            ip("10.1.0.10")
        } else {
            ip("fd01::10")
        },
        host_b: if inner_v4 {
            ip("10.2.0.20")
        } else {
            ip("fd02::20")
        },
        gw_a: if outer_v4 {
            ip("192.0.2.1")
        } else {
            ip("2001:db8::1")
        },
        gw_b: if outer_v4 {
            ip("192.0.2.2")
        } else {
            ip("2001:db8::2")
        },
    }
}

fn prefix_of(a: IpAddr) -> IpPrefix {
    match a {
        IpAddr::V4(_) => IpPrefix::truncating(a, 24),
        IpAddr::V6(_) => IpPrefix::truncating(a, 64),
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Case {
    pub alg: Algorithm,
    pub backend: Backend,
    pub mode: Mode,
    pub inner_v4: bool,
    pub outer_v4: bool,
    pub udp: bool,
    pub esn: bool,
}

/// AES-128-GCM on the pure-Rust backend, tunnel mode, IPv4 in IPv4,
/// plain ESP without ESN: the case the single-purpose tests start from.
const GCM_V4: Case = Case {
    alg: Algorithm::AES_GCM_128,
    backend: Backend::RustCrypto,
    mode: Mode::Tunnel,
    inner_v4: true,
    outer_v4: true,
    udp: false,
    esn: false,
};

/// An outbound SA at A and the matching inbound SA at B.
pub(crate) fn sa_pair(c: Case, in_backend: Backend) -> (OutboundSa, InboundSa) {
    sa_pair_selecting(c, in_backend, |_| {})
}

/// [`sa_pair`] with the inbound SA's selector changed by `narrow`.
fn sa_pair_selecting(
    c: Case,
    in_backend: Backend,
    narrow: impl FnOnce(&mut Selector),
) -> (OutboundSa, InboundSa) {
    sa_pair_spi(c, in_backend, 0x1000_0001, narrow)
}

/// [`sa_pair_selecting`] with SPI `spi`.
pub(crate) fn sa_pair_spi(
    c: Case,
    in_backend: Backend,
    spi: u32,
    narrow: impl FnOnce(&mut Selector),
) -> (OutboundSa, InboundSa) {
    let t = topo(c.inner_v4, c.outer_v4);
    let (local, remote) = match c.mode {
        Mode::Tunnel => (t.gw_a, t.gw_b),
        Mode::Transport => (t.host_a, t.host_b),
    };
    let spi = Spi::new(spi).unwrap();
    let mut out_cfg = SaConfig::new(
        spi,
        Direction::Outbound,
        c.mode,
        TunnelEndpoints { local, remote },
    );
    out_cfg.esn = c.esn;
    out_cfg.udp_encap = c.udp.then(UdpEncap::nat_t);
    let mut in_cfg = SaConfig::new(
        spi,
        Direction::Inbound,
        c.mode,
        TunnelEndpoints {
            local: remote,
            remote: local,
        },
    );
    in_cfg.esn = c.esn;
    in_cfg.udp_encap = out_cfg.udp_encap;
    let mut sel = Selector::new(prefix_of(t.host_a), prefix_of(t.host_b));
    narrow(&mut sel);
    in_cfg.traffic_selectors = vec![sel];
    let keys = keys_for(c.alg, 7);
    let out = OutboundSa::new(out_cfg, new_transform(c.backend, c.alg, &keys).unwrap()).unwrap();
    let inb = InboundSa::new(in_cfg, new_transform(in_backend, c.alg, &keys).unwrap()).unwrap();
    (out, inb)
}

fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for alg in Algorithm::ALL {
        for backend in available_backends(alg) {
            for mode in [Mode::Tunnel, Mode::Transport] {
                for (inner_v4, outer_v4) in
                    [(true, true), (true, false), (false, true), (false, false)]
                {
                    if mode == Mode::Transport && inner_v4 != outer_v4 {
                        continue;
                    }
                    for udp in [false, true] {
                        for esn in [false, true] {
                            v.push(Case {
                                alg,
                                backend,
                                mode,
                                inner_v4,
                                outer_v4,
                                udp,
                                esn,
                            });
                        }
                    }
                }
            }
        }
    }
    v
}

fn no_events() -> impl FnMut(SaEvent) {
    |e| panic!("unexpected event {e:?}")
}

#[test]
fn round_trip_every_algorithm_backend_mode_family_encap_and_esn() {
    let cases = all_cases();
    assert!(cases.len() >= 12 * 2 * 6 * 2, "{} cases", cases.len());
    for c in cases {
        for in_backend in available_backends(c.alg) {
            let (mut out, inb) = sa_pair(c, in_backend);
            let mut table = InboundSaTable::new();
            table.insert(inb);
            let t = topo(c.inner_v4, c.outer_v4);
            for len in [0usize, 1, 13, 100, 1000, 1400] {
                let original = udp_packet(t.host_a, t.host_b, 5000, 53, len, len as u8);
                let mut pkt = HeapBuf::from_slice(&original);
                out.encapsulate(&mut pkt, &mut no_events())
                    .unwrap_or_else(|r| panic!("{c:?}: {r:?}"));
                assert_ne!(pkt.data(), &original[..]);
                let overhead = pkt.len() - original.len();
                assert!(overhead <= out.overhead(original.len()), "{c:?}");
                let outcome = table
                    .decapsulate(&mut pkt, &mut |_, e| panic!("event {e:?}"))
                    .unwrap_or_else(|r| panic!("{c:?} in {in_backend:?} len {len}: {r:?}"));
                assert!(matches!(outcome, InboundOutcome::Decrypted(_)), "{c:?}");
                if c.mode == Mode::Tunnel {
                    assert_eq!(pkt.data(), &original[..], "{c:?}");
                } else {
                    // Transport mode rebuilds the header: same bytes except
                    // for the (recomputed) IPv4 checksum, which must match.
                    assert_eq!(pkt.data(), &original[..], "{c:?}");
                }
            }
        }
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let c = Case {
        esn: true,
        ..GCM_V4
    };
    let (mut out, inb) = sa_pair(c, Backend::RustCrypto);
    let mut table = InboundSaTable::new();
    table.insert(inb);
    let t = topo(true, true);
    let mut pkt = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 40, 9));
    out.encapsulate(&mut pkt, &mut no_events()).unwrap();
    let good = pkt.data().to_vec();
    // Every bit from the ESP header on (bits of the outer IP header change
    // the header checksum or addresses, which is a different drop).
    for i in 20..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let mut b = HeapBuf::from_slice(&bad);
            let r = table.decapsulate(&mut b, &mut |_, _| {});
            assert!(r.is_err(), "flip at byte {i} bit {bit} accepted");
        }
    }
    // The original still decrypts: failures did not advance the window.
    let mut b = HeapBuf::from_slice(&good);
    assert!(matches!(
        table.decapsulate(&mut b, &mut |_, _| {}),
        Ok(InboundOutcome::Decrypted(_))
    ));
    assert!(
        table
            .get(Spi::new(0x1000_0001).unwrap())
            .unwrap()
            .counters
            .drops_for(DropReason::AuthFailed)
            > 0
    );
}

#[test]
fn replayed_and_unknown_packets_are_dropped_and_counted() {
    let c = Case {
        alg: Algorithm::AES_GCM_256,
        backend: Backend::RustCrypto,
        mode: Mode::Tunnel,
        inner_v4: true,
        outer_v4: true,
        udp: true,
        esn: false,
    };
    let (mut out, inb) = sa_pair(c, Backend::AwsLc);
    let mut table = InboundSaTable::new();
    table.insert(inb);
    let t = topo(true, true);
    let mut sent = Vec::new();
    for i in 0..10 {
        let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 64, i));
        out.encapsulate(&mut p, &mut no_events()).unwrap();
        sent.push(p.data().to_vec());
    }
    // Out of order within the window: accepted.
    for i in [3usize, 0, 9, 1, 2, 8, 4, 5, 7, 6] {
        let mut b = HeapBuf::from_slice(&sent[i]);
        assert!(
            table.decapsulate(&mut b, &mut |_, _| {}).is_ok(),
            "packet {i}"
        );
    }
    // Each again: replay.
    for s in &sent {
        let mut b = HeapBuf::from_slice(s);
        assert_eq!(
            table.decapsulate(&mut b, &mut |_, _| {}),
            Err(DropReason::Replay)
        );
    }
    // Unknown SPI: counted on the table.
    let mut unknown = sent[0].clone();
    unknown[28..32].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    let mut b = HeapBuf::from_slice(&unknown);
    assert_eq!(
        table.decapsulate(&mut b, &mut |_, _| {}),
        Err(DropReason::UnknownSpi)
    );
    assert_eq!(table.counters.drops_for(DropReason::UnknownSpi), 1);
    let sa = table.get(Spi::new(0x1000_0001).unwrap()).unwrap();
    assert_eq!(sa.counters.drops_for(DropReason::Replay), 10);
    assert_eq!(sa.counters.packets, 10);
}

#[test]
fn nat_keepalive_and_ike_on_4500_are_classified() {
    let t = topo(true, true);
    let mut keepalive = udp_packet(t.gw_b, t.gw_a, 4500, 4500, 1, 0);
    let n = keepalive.len();
    keepalive[n - 1] = 0xff;
    let mut table = InboundSaTable::new();
    let mut b = HeapBuf::from_slice(&keepalive);
    assert_eq!(
        table.decapsulate(&mut b, &mut |_, _| {}),
        Err(DropReason::NatKeepalive)
    );
    let mut ike = udp_packet(t.gw_b, t.gw_a, 4500, 4500, 40, 1);
    ike[28..32].fill(0);
    let mut b = HeapBuf::from_slice(&ike);
    assert_eq!(
        table.decapsulate(&mut b, &mut |_, _| {}),
        Ok(InboundOutcome::Punt)
    );
    let other = udp_packet(t.gw_b, t.gw_a, 4500, 53, 40, 1);
    let mut b = HeapBuf::from_slice(&other);
    assert_eq!(
        table.decapsulate(&mut b, &mut |_, _| {}),
        Ok(InboundOutcome::NotEsp)
    );
    assert_eq!(table.counters.drops_for(DropReason::NatKeepalive), 1);
}

#[test]
fn inner_packet_outside_the_selectors_is_dropped() {
    let c = Case {
        alg: Algorithm::CHACHA20_POLY1305,
        ..GCM_V4
    };
    let (mut out, inb) = sa_pair(c, Backend::RustCrypto);
    let mut table = InboundSaTable::new();
    table.insert(inb);
    // 10.9.0.1 is not in the SA's 10.1.0.0/24 -> 10.2.0.0/24 selector.
    let mut p = HeapBuf::from_slice(&udp_packet(ip("10.9.0.1"), ip("10.2.0.20"), 1, 2, 10, 0));
    out.encapsulate(&mut p, &mut no_events()).unwrap();
    assert_eq!(
        table.decapsulate(&mut p, &mut |_, _| {}),
        Err(DropReason::SelectorMismatch)
    );
}

/// A non-initial fragment carries no ports, so it may match only selectors
/// with ANY ports (RFC 4301 §7.1): a peer holding an SA negotiated for UDP
/// ports 0-1023 must not slip fragments of other ports through it as if
/// their zeros were ports. IPv4 takes
/// the fixed-offset path, IPv6 (Fragment header) the general one.
#[test]
fn fragments_match_only_selectors_with_any_ports() {
    fn later_fragment(first: &[u8]) -> Vec<u8> {
        let mut p = first.to_vec();
        if p[0] >> 4 == 4 {
            p[6] = 0; // offset 1480 / 8 = 185, no DF, no MF
            p[7] = 185;
            p[10] = 0;
            p[11] = 0;
            let c = checksum::data(&p[..20]);
            p[10..12].copy_from_slice(&(!c).to_be_bytes());
        } else {
            // A Fragment header (RFC 8200 §4.5) at offset 1480 before the
            // UDP bytes, which now read as the middle of the datagram.
            let mut frag = vec![17u8, 0, 0, 0, 0, 0, 0x12, 0x34];
            frag[2..4].copy_from_slice(&(185u16 << 3).to_be_bytes());
            p[6] = 44;
            p.splice(40..40, frag);
            let len = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&len.to_be_bytes());
        }
        p
    }
    for inner_v4 in [true, false] {
        let c = Case { inner_v4, ..GCM_V4 };
        let t = topo(c.inner_v4, c.outer_v4);
        let first = udp_packet(t.host_a, t.host_b, 1000, 53, 64, 3);
        let decap = |narrow: bool, pkt: &[u8]| {
            let (mut out, inb) = sa_pair_selecting(c, Backend::AwsLc, |s| {
                if narrow {
                    s.protocol = Some(17);
                    s.dst_ports = 0..=1023;
                }
            });
            let mut table = InboundSaTable::new();
            table.insert(inb);
            let mut p = HeapBuf::from_slice(pkt);
            out.encapsulate(&mut p, &mut no_events()).unwrap();
            table.decapsulate(&mut p, &mut |_, _| {}).map(|_| ())
        };
        assert_eq!(
            decap(true, &first),
            Ok(()),
            "inner IPv4 {inner_v4}: first fragment, port 53"
        );
        assert_eq!(
            decap(true, &later_fragment(&first)),
            Err(DropReason::SelectorMismatch),
            "inner IPv4 {inner_v4}: a later fragment under a ports 0-1023 selector"
        );
        assert_eq!(
            decap(false, &later_fragment(&first)),
            Ok(()),
            "inner IPv4 {inner_v4}: ANY ports"
        );
    }
}

#[test]
fn sequence_space_end_stops_the_sa_and_raises_events_once() {
    let c = GCM_V4;
    let (mut out, _) = sa_pair(c, Backend::RustCrypto);
    out.resume_seq_after(u64::from(u32::MAX) - 2);
    let t = topo(true, true);
    let mut events = Vec::new();
    for _ in 0..2 {
        let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 10, 0));
        out.encapsulate(&mut p, &mut |e| events.push(e)).unwrap();
    }
    assert_eq!(out.last_seq(), u64::from(u32::MAX));
    for _ in 0..3 {
        let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 10, 0));
        assert_eq!(
            out.encapsulate(&mut p, &mut |e| events.push(e)),
            Err(DropReason::SeqOverflow)
        );
    }
    assert_eq!(events, vec![SaEvent::SeqOverflow]);
    assert_eq!(out.counters.drops_for(DropReason::SeqOverflow), 3);
    assert!(!out.is_usable());
}

#[test]
fn lifetimes_raise_soft_then_hard_and_hard_stops_traffic() {
    let c = GCM_V4;
    let t = topo(true, true);
    let spi = Spi::new(0x2222).unwrap();
    let mut cfg = SaConfig::new(
        spi,
        Direction::Outbound,
        Mode::Tunnel,
        TunnelEndpoints {
            local: t.gw_a,
            remote: t.gw_b,
        },
    );
    cfg.lifetime = Lifetime {
        soft_packets: Some(3),
        hard_packets: Some(5),
        ..Lifetime::UNLIMITED
    };
    let mut out = OutboundSa::new(
        cfg,
        new_transform(c.backend, c.alg, &keys_for(c.alg, 1)).unwrap(),
    )
    .unwrap();
    let mut events = Vec::new();
    let mut ok = 0;
    for _ in 0..8 {
        let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 10, 0));
        if out.encapsulate(&mut p, &mut |e| events.push(e)).is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(events, vec![SaEvent::SoftLifetime, SaEvent::HardLifetime]);
    assert_eq!(out.counters.drops_for(DropReason::LifetimeExpired), 3);
}

#[test]
fn engine_bursts_apply_policies_and_give_verdicts() {
    let c = Case {
        udp: true,
        ..GCM_V4
    };
    let (out, inb) = sa_pair(c, Backend::RustCrypto);
    let t = topo(true, true);
    let mut a = EspEngine::new();
    let mut spd = Spd::new();
    spd.insert(Policy {
        selector: Selector::new(prefix_of(t.host_a), prefix_of(t.host_b)),
        action: Action::Protect(SaRef(0)),
        priority: 10,
    })
    .unwrap();
    spd.insert(Policy {
        selector: Selector::new(prefix_of(t.host_a), "10.3.0.0/24".parse().unwrap()),
        action: Action::Bypass,
        priority: 10,
    })
    .unwrap();
    spd.insert(Policy {
        selector: Selector::new(prefix_of(t.host_a), "10.4.0.0/24".parse().unwrap()),
        action: Action::Discard,
        priority: 10,
    })
    .unwrap();
    assert!(!spd.is_compiled());
    a.set_spd(spd);
    // Compiled on installation, not on the first packet.
    assert!(a.spd().is_compiled());
    assert_eq!(a.sa_count(), 0);
    a.install_outbound(SaRef(0), out);
    // SAs, not slots: the slot table grows in chunks of many slots (the
    // burst prefetch turns on by this count).
    assert_eq!(a.sa_count(), 1);
    let mut b = EspEngine::new();
    b.install_inbound(inb);
    assert_eq!(b.sa_count(), 1);

    let originals = [
        udp_packet(t.host_a, t.host_b, 1, 2, 100, 1),
        udp_packet(t.host_a, ip("10.3.0.5"), 1, 2, 100, 2),
        udp_packet(t.host_a, ip("10.4.0.5"), 1, 2, 100, 3),
        udp_packet(t.host_a, ip("10.5.0.5"), 1, 2, 100, 4),
        vec![0x45, 0, 0],
    ];
    let mut burst: Vec<HeapBuf> = originals.iter().map(|p| HeapBuf::from_slice(p)).collect();
    let verdicts: Vec<_> = burst.iter_mut().map(|p| protect(&mut a, p)).collect();
    assert_eq!(
        verdicts,
        [
            Ok(Action::Protect(SaRef(0))),
            Ok(Action::Bypass),
            Ok(Action::Discard),
            Err(DropReason::NoPolicy),
            Err(DropReason::BadHeader),
        ]
    );
    assert_eq!(a.outbound_counters.drops_for(DropReason::NoPolicy), 1);
    let mut inbound = [burst.remove(0), HeapBuf::from_slice(&originals[1])];
    let v2: Vec<_> = inbound.iter_mut().map(|p| open(&mut b, p)).collect();
    assert!(matches!(v2[0], Ok(InboundOutcome::Decrypted(_))), "{v2:?}");
    assert_eq!(v2[1], Ok(InboundOutcome::NotEsp));
    assert_eq!(inbound[0].data(), &originals[0][..]);
    // Two packets with the same sequence number in one burst: the second
    // is a replay even though both passed the check before decryption.
    let mut a_out = a.remove_outbound(SaRef(0)).unwrap();
    let mut p = HeapBuf::from_slice(&originals[0]);
    a_out.encapsulate(&mut p, &mut no_events()).unwrap();
    let mut dup = [p.clone(), p];
    let v2: Vec<_> = dup.iter_mut().map(|p| open(&mut b, p)).collect();
    assert!(matches!(v2[0], Ok(InboundOutcome::Decrypted(_))), "{v2:?}");
    assert_eq!(v2[1], Err(DropReason::Replay));
}

/// An outbound packet through the engine's entry points as the gateway's
/// node calls them: selectors, SPD, then the PROTECT policy's SA. Drops
/// before an SA are counted as the node counts them.
fn protect(e: &mut EspEngine, p: &mut HeapBuf) -> Result<Action, DropReason> {
    match packet_key(p.data()).and_then(|k| e.packet_action(&k)) {
        Ok(Action::Protect(slot)) => e
            .encapsulate(slot, p, &mut |_| {})
            .map(|()| Action::Protect(slot)),
        Ok(Action::Discard) => {
            e.count_outbound_drop(DropReason::PolicyDiscard);
            Ok(Action::Discard)
        }
        Err(r) => {
            e.count_outbound_drop(r);
            Err(r)
        }
        ok => ok,
    }
}

/// An inbound packet as the gateway's node takes it: the classify pass,
/// then the engine with the ESP header it located.
fn open(e: &mut EspEngine, p: &mut HeapBuf) -> Result<InboundOutcome, DropReason> {
    let loc = PacketMeta::of(p.data()).ok_or(DropReason::BadHeader)?.esp;
    e.decapsulate(p, loc, &mut |_| {})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// decapsulate(encapsulate(p)) == p for random packets, SAs and
    /// algorithms.
    #[test]
    fn decap_of_encap_is_identity(
        case_idx in 0usize..10_000,
        len in 0usize..1500,
        fill in any::<u8>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        start_seq in prop_oneof![Just(0u64), 0u64..(1 << 40)],
    ) {
        let cases = all_cases();
        let c = cases[case_idx % cases.len()];
        let (mut out, mut inb) = sa_pair(c, Backend::RustCrypto);
        let start = if c.esn { start_seq } else { start_seq & 0x7fff_ffff };
        out.resume_seq_after(start);
        inb.resume_replay_after(start);
        let mut table = InboundSaTable::new();
        table.insert(inb);
        let t = topo(c.inner_v4, c.outer_v4);
        let original = udp_packet(t.host_a, t.host_b, sport, dport, len, fill);
        let mut p = HeapBuf::from_slice(&original);
        let enc = out.encapsulate(&mut p, &mut |_| {});
        prop_assert!(enc.is_ok());
        let r = table.decapsulate(&mut p, &mut |_, _| {});
        prop_assert!(matches!(r, Ok(InboundOutcome::Decrypted(_))), "{:?} {:?}", c, r);
        prop_assert_eq!(p.data(), &original[..]);
    }

    /// Any single flipped bit in an ESP packet (from the ESP header on) is
    /// rejected.
    #[test]
    fn flipped_bit_is_rejected(case_idx in 0usize..10_000, len in 0usize..300, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let cases = all_cases();
        let c = cases[case_idx % cases.len()];
        let (mut out, inb) = sa_pair(c, Backend::RustCrypto);
        let mut table = InboundSaTable::new();
        table.insert(inb);
        let t = topo(c.inner_v4, c.outer_v4);
        let original = udp_packet(t.host_a, t.host_b, 1, 2, len, 0);
        let mut p = HeapBuf::from_slice(&original);
        out.encapsulate(&mut p, &mut |_| {}).unwrap();
        let loc = locate_esp(p.data(), 4500).unwrap();
        let EspLocation::Esp { esp_offset, .. } = loc else { panic!("{loc:?}") };
        let data = p.data_mut();
        let i = esp_offset + pos.index(data.len() - esp_offset);
        data[i] ^= 1 << bit;
        let dec = table.decapsulate(&mut p, &mut |_, _| {});
        prop_assert!(dec.is_err());
    }

    /// Arbitrary bytes never panic the inbound path.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), v6 in any::<bool>()) {
        let c = Case { alg: Algorithm::AES_GCM_128, backend: Backend::RustCrypto, mode: Mode::Tunnel, inner_v4: true, outer_v4: !v6, udp: true, esn: true };
        let (_, inb) = sa_pair(c, Backend::RustCrypto);
        let mut table = InboundSaTable::new();
        table.insert(inb);
        let mut p = HeapBuf::from_slice(&bytes);
        let _ = table.decapsulate(&mut p, &mut |_, _| {});
        let mut e = EspEngine::new();
        e.install_inbound(sa_pair(c, Backend::RustCrypto).1);
        let mut p = HeapBuf::from_slice(&bytes);
        let _ = open(&mut e, &mut p);
        let mut p = HeapBuf::from_slice(&bytes);
        let _ = protect(&mut e, &mut p);
    }
}

#[test]
fn esn_crosses_the_low_32_bit_wrap_without_loss() {
    for alg in [Algorithm::AES_GCM_128, Algorithm::CHACHA20_POLY1305] {
        let c = Case {
            alg,
            backend: Backend::RustCrypto,
            mode: Mode::Tunnel,
            inner_v4: true,
            outer_v4: true,
            udp: true,
            esn: true,
        };
        let (mut out, mut inb) = sa_pair(c, Backend::AwsLc);
        let start = (3u64 << 32) - 4;
        out.resume_seq_after(start);
        inb.resume_replay_after(start);
        let mut table = InboundSaTable::new();
        table.insert(inb);
        let t = topo(true, true);
        let mut wire = Vec::new();
        for i in 0..8u8 {
            let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 50, i));
            out.encapsulate(&mut p, &mut no_events()).unwrap();
            wire.push(p.data().to_vec());
        }
        assert_eq!(out.last_seq(), (3u64 << 32) + 4);
        // Deliver with a reordering across the wrap: 0xfffffffe after 0x1.
        for i in [0usize, 1, 4, 2, 3, 5, 7, 6] {
            let mut b = HeapBuf::from_slice(&wire[i]);
            let r = table.decapsulate(&mut b, &mut |_, _| {});
            assert!(
                matches!(r, Ok(InboundOutcome::Decrypted(_))),
                "{alg:?} packet {i}: {r:?}"
            );
        }
        let sa = table.get(Spi::new(0x1000_0001).unwrap()).unwrap();
        assert_eq!(sa.replay_top(), (3u64 << 32) + 4);
    }
}

/// An SPD shipped with a flow cache sized for it gives the engine that
/// cache (keeping the hit and miss counts), and the old SPD carries the
/// replaced cache back to be freed by the control thread.
#[test]
fn set_spd_swaps_in_a_shipped_flow_cache() {
    let mut spd = Spd::new();
    for i in 0..40_000u32 {
        let dst = IpAddr::V4(std::net::Ipv4Addr::from(0x0a80_0000 + i));
        spd.insert(Policy {
            selector: Selector::new(
                "10.1.0.0/24".parse().unwrap(),
                IpPrefix::new(dst, 32).unwrap(),
            ),
            action: Action::Protect(SaRef(i)),
            priority: 1,
        })
        .unwrap();
    }
    let mut e = EspEngine::new();
    assert_eq!(e.spd_cache().capacity(), SpdCache::DEFAULT_SLOTS);
    let key = FlowKey {
        src: "10.1.0.9".parse().unwrap(),
        dst: "10.128.0.7".parse().unwrap(),
        proto: 17,
        sport: 1,
        dport: 2,
    };
    assert_eq!(e.policy_action(&key), None);
    let mut old = e.set_spd(spd.clone().with_flow_cache());
    assert_eq!(e.spd_cache().capacity(), 1 << 17);
    assert_eq!(e.spd_cache().misses, 1);
    let back = old.take_flow_cache().expect("the replaced cache goes back");
    assert_eq!(back.capacity(), SpdCache::DEFAULT_SLOTS);
    assert_eq!(e.policy_action(&key), Some(Action::Protect(SaRef(7))));
    assert_eq!(e.policy_action(&key), Some(Action::Protect(SaRef(7))));
    assert_eq!((e.spd_cache().hits, e.spd_cache().misses), (1, 2));
    // Not shipped: the engine sizes (and clears) its own.
    let mut old = e.set_spd(spd);
    assert!(old.take_flow_cache().is_none());
    assert_eq!(e.spd_cache().capacity(), 1 << 17);
    assert_eq!(e.policy_action(&key), Some(Action::Protect(SaRef(7))));
    assert_eq!(e.spd_cache().misses, 3);
}

/// `locate_esp_header_verified` is `locate_esp` without the outer IPv4
/// checksum (for a caller that has checked it): the same location for a
/// good packet, and only the checksum is skipped for a damaged one.
#[test]
fn locating_with_a_verified_header_skips_only_the_checksum() {
    for udp in [true, false] {
        let (mut out, _) = sa_pair(Case { udp, ..GCM_V4 }, Backend::RustCrypto);
        let t = topo(true, true);
        let mut p = HeapBuf::from_slice(&udp_packet(t.host_a, t.host_b, 1, 2, 40, 0));
        out.encapsulate(&mut p, &mut |_| {}).unwrap();
        let good = locate_esp(p.data(), 4500);
        assert!(matches!(good, Ok(EspLocation::Esp { .. })), "{good:?}");
        assert_eq!(locate_esp_header_verified(p.data(), 4500), good);
        let mut bad = p.data().to_vec();
        bad[10] ^= 1;
        assert_eq!(locate_esp(&bad, 4500), Err(DropReason::BadHeader));
        assert_eq!(locate_esp_header_verified(&bad, 4500), good);
        // Anything else wrong with the header is still refused.
        bad[0] = 0x44;
        assert!(locate_esp_header_verified(&bad, 4500).is_err());
    }
}
