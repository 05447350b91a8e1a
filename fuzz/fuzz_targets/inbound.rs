//! Inbound ESP through the entry points the gateway's node calls: the
//! classify pass (`PacketMeta::of`, which locates the ESP header) and
//! `EspEngine::decapsulate`, on an engine holding eight SAs
//! (every cipher, tunnel and transport, both families, UDP encapsulation,
//! ESN, disabled and minimal replay windows, wide and narrow selectors).
//!
//! The input is a starting sequence point and then up to eight operations,
//! each feeding one packet:
//!
//! - raw: bytes as they are, optionally with the IP and UDP lengths and the
//!   IPv4 checksum fixed up and the SPI field set to one of the table's;
//! - valid: an inner packet encapsulated by the matching outbound SA, then
//!   optionally mutated (flipped bytes, truncation, trailing bytes);
//! - forged: an ESP packet built by the harness with a payload, padding
//!   and next header of the fuzzer's choice, sealed with the SA's keys (for
//!   the NULL-encryption SAs the ICV is an HMAC computed right here), so
//!   the code after authentication (trailer, padding, inner header, ECN,
//!   selectors, the transport-mode header rebuild) sees arbitrary bytes.
//!
//! Besides "never panics", the oracles are: an unmodified valid packet
//! decapsulates to exactly the inner packet; a well-formed forged packet
//! with the right ESN half is accepted unless it is a replay or outside
//! narrow selectors; anything accepted is a consistent IP packet within the
//! SA's selectors; the same bytes again are a replay (or, with anti-replay
//! off, give the same result); `Punt`/`NotEsp` leave the packet untouched.

#![no_main]

use std::net::IpAddr;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{EspTransform, Integrity};
use dataplane::esp::{
    flow_key, locate_esp, DropReason, EspEngine, EspLocation, InboundOutcome, InboundSaTable, Mode,
    OutboundSa, Spi,
};
use dataplane::gateway::PacketMeta;
use dataplane::wire::{IpProtocol, Ipv4Packet, Ipv6Packet};
use espresso_fuzz::{
    fix_ipv4_checksum, host_a, host_b, ip_packet, ipv4_header, ipv6_header, keys_for,
    predict_esn_high, spi_of, trailer, udp_header, udp_packet, Input, SaSpec, SAS,
};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

/// Where the SAs' sequence numbers start: fresh, just below the 2^32 wrap
/// (ESN SAs cross it), deep in a later ESN subspace, and mid-range.
const STARTS: [u64; 4] = [0, (1 << 32) - 3, (5 << 32) + 100, 0x7fff_fff0];

const MAX_OPS: usize = 8;

struct Harness {
    engine: EspEngine,
    outbound: Vec<OutboundSa>,
    sealers: Vec<Box<dyn EspTransform>>,
    /// A packet not produced by the outbound SA was accepted, so the
    /// window may have moved past what that SA sends next.
    window_moved: [bool; SAS.len()],
}

impl Harness {
    fn new(start: u64) -> Self {
        let mut engine = EspEngine::new();
        let mut outbound = Vec::new();
        let mut sealers = Vec::new();
        for (i, spec) in SAS.iter().enumerate() {
            let start = if spec.esn { start } else { start & 0xffff_ffff };
            let mut inb = spec.inbound(i);
            inb.resume_replay_after(start);
            engine.install_inbound(inb);
            let mut out = spec.outbound(i);
            out.resume_seq_after(start);
            outbound.push(out);
            sealers.push(spec.sealer(i));
        }
        Self {
            engine,
            outbound,
            sealers,
            window_moved: [false; SAS.len()],
        }
    }

    /// One packet as the node takes it: the classify pass, then the engine
    /// with the ESP header it located. A packet that does not classify
    /// (not IP, a bad IPv4 header checksum) the node drops as a bad frame;
    /// for the oracles that is a bad header.
    fn open(&mut self, pkt: &mut HeapBuf) -> Result<InboundOutcome, DropReason> {
        match PacketMeta::of(pkt.data()) {
            Some(m) => self.engine.decapsulate(pkt, m.esp, &mut |_| {}),
            None => Err(DropReason::BadHeader),
        }
    }

    /// Decapsulates `bytes` and checks what every result must satisfy.
    /// Returns the result and the output packet.
    fn decapsulate(&mut self, bytes: &[u8]) -> (Result<InboundOutcome, DropReason>, Vec<u8>) {
        let mut pkt = HeapBuf::from_slice(bytes);
        let r = self.open(&mut pkt);
        match r {
            Ok(InboundOutcome::Decrypted(d)) => {
                assert_eq!(d.len, pkt.len(), "reported length");
                let i = (d.spi.get() - spi_of(0)) as usize;
                check_accepted(&SAS[i], self.engine.inbound(), d.spi, pkt.data());
                // The same bytes again: a replay, or with anti-replay off
                // the same packet once more.
                let mut again = HeapBuf::from_slice(bytes);
                let r2 = self.open(&mut again);
                if SAS[i].replay_window == 0 {
                    assert_eq!(r2, r, "anti-replay off: same result");
                    assert_eq!(again.data(), pkt.data(), "anti-replay off: same packet");
                } else {
                    assert_eq!(r2, Err(DropReason::Replay), "second copy accepted");
                }
            }
            Ok(InboundOutcome::Punt | InboundOutcome::NotEsp) => {
                assert_eq!(pkt.data(), bytes, "punted packet changed");
            }
            Err(_) => {}
        }
        (r, pkt.data().to_vec())
    }
}

/// What an accepted packet must look like: a whole IP packet of the length
/// its header says, with a good IPv4 header checksum, inside the SA's
/// selectors.
fn check_accepted(spec: &SaSpec, table: &InboundSaTable, spi: Spi, out: &[u8]) {
    match out.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(out).expect("accepted IPv4 packet parses");
            assert!(ip.verify_checksum(), "accepted IPv4 checksum");
            assert_eq!(usize::from(ip.total_len()), out.len(), "IPv4 total length");
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(out).expect("accepted IPv6 packet parses");
            assert_eq!(
                usize::from(ip.payload_len()) + 40,
                out.len(),
                "IPv6 payload length"
            );
        }
        v => panic!("accepted packet of IP version {v:?}"),
    }
    let key = flow_key(out).expect("accepted packet has a flow key");
    let sa = table.get(spi).expect("SA still installed");
    assert!(
        sa.config().selectors_match(&key),
        "{:?} SA accepted a packet outside its selectors",
        spec.mode
    );
}

/// Where the transport header starts in a generated inner packet (after
/// the IPv4 options or IPv6 extension headers).
fn upper_offset(p: &[u8]) -> usize {
    if p[0] >> 4 == 4 {
        usize::from(p[0] & 0x0f) * 4
    } else {
        Ipv6Packet::new_checked(p)
            .and_then(|ip| ip.ext_headers())
            .map_or(40, |e| e.upper_offset)
    }
}

/// Offset of the ESP header where the bytes would have it.
fn esp_offset(p: &[u8]) -> Option<usize> {
    if let Ok(EspLocation::Esp { esp_offset, .. }) = locate_esp(p, 4500) {
        return Some(esp_offset);
    }
    let (hl, proto) = match p.first()? >> 4 {
        4 => (usize::from(p[0] & 0x0f) * 4, *p.get(9)?),
        6 => (40, *p.get(6)?),
        _ => return None,
    };
    Some(hl + if proto == IpProtocol::UDP.0 { 8 } else { 0 })
}

/// Sets the IP (and UDP) length fields from the buffer length.
fn fix_lengths(p: &mut [u8]) {
    let len = p.len();
    let (hl, proto) = match p.first().map(|b| b >> 4) {
        Some(4) if len >= 20 => {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            (usize::from(p[0] & 0x0f) * 4, p[9])
        }
        Some(6) if len >= 40 => {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            (40, p[6])
        }
        _ => return,
    };
    if proto == IpProtocol::UDP.0 && len >= hl + 8 {
        p[hl + 4..hl + 6].copy_from_slice(&((len - hl) as u16).to_be_bytes());
    }
}

fn raw(h: &mut Harness, input: &mut Input) {
    let flags = input.u8();
    let len = usize::from(input.u16() % 2048);
    let mut p = input.bytes(len).to_vec();
    if flags & 1 != 0 {
        fix_lengths(&mut p);
    }
    if flags & 2 != 0 {
        fix_ipv4_checksum(&mut p);
    }
    if flags & 4 != 0 {
        let i = usize::from(flags >> 4) % SAS.len();
        if let Some(at) = esp_offset(&p) {
            if let Some(f) = p.get_mut(at..at + 4) {
                f.copy_from_slice(&spi_of(i).to_be_bytes());
            }
        }
    }
    let (r, _) = h.decapsulate(&p);
    if let Ok(InboundOutcome::Decrypted(d)) = r {
        h.window_moved[(d.spi.get() - spi_of(0)) as usize] = true;
    } else if passed_replay_check(r) {
        // It may have authenticated (a seed can hold a real packet) and
        // been dropped later; the window moves all the same.
        if let Some(i) = esp_offset(&p)
            .and_then(|at| p.get(at..at + 4))
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .and_then(|spi| spi.checked_sub(spi_of(0)))
            .filter(|&i| (i as usize) < SAS.len())
        {
            h.window_moved[i as usize] = true;
        }
    }
}

/// Whether a drop may have come after authentication, which advances the
/// replay window (RFC 4303 §3.4.3) even though the packet is then dropped
/// for its contents.
fn passed_replay_check(r: Result<InboundOutcome, DropReason>) -> bool {
    !matches!(
        r,
        Err(DropReason::AuthFailed
            | DropReason::Replay
            | DropReason::TooOld
            | DropReason::UnknownSpi)
    )
}

/// An inner packet of the fuzzer's choosing from host A to host B.
fn inner_packet(spec: &SaSpec, input: &mut Input) -> Vec<u8> {
    let v4 = spec.payload_v4();
    let kind = input.u8();
    let tos = input.u8();
    let len = usize::from(input.u16() % 1400);
    let body = input.bytes(len);
    let (src, dst) = (host_a(v4), host_b(v4));
    let mut p = if kind & 1 == 0 {
        let sport = input.u16();
        let dport = if kind & 2 == 0 { 53 } else { input.u16() };
        udp_packet(src, dst, sport, dport, tos, body)
    } else {
        ip_packet(src, dst, input.u8(), tos, body)
    };
    // Optionally an IPv4 option or an IPv6 Destination Options header in
    // front of the transport header (where transport-mode ESP must go
    // after it).
    if kind & 4 != 0 {
        if v4 {
            let mut q = ipv4_header(
                match src {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!(),
                },
                match dst {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!(),
                },
                p[9],
                tos,
                &[1, 1, 1, 0],
                p.len() - 20,
            );
            q.extend_from_slice(&p[20..]);
            p = q;
        } else {
            let nh = p[6];
            let mut q = p[..40].to_vec();
            q[6] = IpProtocol::IPV6_OPTS.0;
            q[4..6].copy_from_slice(&((p.len() - 40 + 8) as u16).to_be_bytes());
            q.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
            q.extend_from_slice(&p[40..]);
            p = q;
        }
    }
    p
}

fn valid(h: &mut Harness, input: &mut Input) {
    let i = usize::from(input.u8()) % SAS.len();
    let spec = SAS[i];
    let inner = inner_packet(&spec, input);
    let mut pkt = HeapBuf::from_slice(&inner);
    if h.outbound[i].encapsulate(&mut pkt, &mut |_| {}).is_err() {
        return;
    }
    let mut wire = pkt.data().to_vec();
    let mutations = input.u8();
    let mut changed = false;
    for _ in 0..mutations % 4 {
        let at = usize::from(input.u16()) % wire.len().max(1);
        let v = input.u8();
        match input.u8() % 4 {
            0 => {
                if let Some(b) = wire.get_mut(at) {
                    changed |= v != 0;
                    *b ^= v;
                }
            }
            1 => {
                changed = true;
                wire.truncate(at);
            }
            // Link-layer padding after the IP packet: must not matter.
            2 => wire.extend(std::iter::repeat_n(v, usize::from(v % 64))),
            _ => {
                if let Some(b) = wire.get_mut(at) {
                    changed |= *b != v;
                    *b = v;
                }
            }
        }
    }
    if mutations & 0x80 != 0 {
        fix_ipv4_checksum(&mut wire);
    }
    let (r, out) = h.decapsulate(&wire);
    if changed {
        if let Ok(InboundOutcome::Decrypted(_)) = r {
            // Only unauthenticated outer bytes can have changed: what ESP
            // carried must come out as it went in.
            assert_eq!(out.len(), inner.len(), "SA {i}: mutated packet length");
            match spec.mode {
                Mode::Tunnel => {
                    // The outer ECN may have been folded in (RFC 6040), and
                    // with it the IPv4 checksum.
                    let mask = |p: &[u8]| {
                        let mut p = p.to_vec();
                        p[1] &= if p[0] >> 4 == 4 { 0xfc } else { 0xcf };
                        if p[0] >> 4 == 4 {
                            p[10..12].fill(0);
                        }
                        p
                    };
                    assert_eq!(mask(&out), mask(&inner), "SA {i}: mutated tunnel packet");
                }
                Mode::Transport => {
                    let upper = upper_offset(&inner);
                    assert_eq!(
                        out[upper..],
                        inner[upper..],
                        "SA {i}: mutated transport payload"
                    );
                }
            }
        }
        return;
    }
    if h.window_moved[i] {
        return;
    }
    let key = flow_key(&inner).expect("generated packet has a flow key");
    let sa = h
        .engine
        .inbound()
        .get(Spi::new(spi_of(i)).expect("SPI"))
        .expect("SA");
    if spec.mode == Mode::Transport && key.proto == IpProtocol::IPV6_NO_NXT.0 {
        // Next Header 59 in the trailer marks a dummy packet (RFC 4303
        // §2.6), which the receiver discards: in transport mode a real
        // payload of protocol 59 looks the same.
        assert_eq!(r, Err(DropReason::Unsupported), "SA {i}: protocol 59");
    } else if sa.config().selectors_match(&key) {
        assert!(
            matches!(r, Ok(InboundOutcome::Decrypted(_))),
            "SA {i}: valid packet dropped: {r:?}"
        );
        assert_eq!(out, inner, "SA {i}: round trip of {wire:02x?}");
    } else {
        assert_eq!(r, Err(DropReason::SelectorMismatch), "SA {i}");
    }
}

fn hmac_icv(integrity: Integrity, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! mac {
        ($hash:ty, $len:expr) => {{
            let mut m = <Hmac<$hash> as Mac>::new_from_slice(key).expect("HMAC key");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes()[..$len].to_vec()
        }};
    }
    match integrity {
        Integrity::HmacSha256_128 => mac!(sha2::Sha256, 16),
        Integrity::HmacSha384_192 => mac!(sha2::Sha384, 24),
        Integrity::HmacSha512_256 => mac!(sha2::Sha512, 32),
        Integrity::None => Vec::new(),
    }
}

fn forged(h: &mut Harness, input: &mut Input) {
    let i = usize::from(input.u8()) % SAS.len();
    let spec = SAS[i];
    let spi = spi_of(i);
    let seq_low = input.u32();
    let esn_choice = input.u8() % 4;
    let flags = input.u8();
    let body_kind = flags % 3;
    let flip_udp = flags & 0x04 != 0;
    let flip_family = flags & 0x08 != 0;
    let ext_header = flags & 0x10 != 0;
    let hop_by_hop = flags & 0x20 != 0;
    let link_padding = flags & 0x40 != 0;
    let override_nh = flags & 0x80 != 0;
    let nh_byte = input.u8();
    let tos = input.u8();
    let iv = input.bytes(spec.alg.iv_len()).to_vec();
    let mut iv = iv;
    iv.resize(spec.alg.iv_len(), 0);
    let len = usize::from(input.u16() % 1500);
    let body = input.bytes(len);

    // The plaintext: verbatim, verbatim with a correct trailer, or a
    // well-formed inner packet (tunnel) or UDP segment (transport) around
    // the fuzzer's bytes with a correct trailer.
    let block = spec.alg.block_size();
    let mut inner_has_key = false;
    let mut plaintext = match body_kind {
        0 => body.to_vec(),
        1 => {
            let mut p = body.to_vec();
            p.extend(trailer(p.len(), block, nh_byte));
            p
        }
        _ => {
            let (mut p, nh): (Vec<u8>, u8) = match spec.mode {
                Mode::Tunnel => {
                    let v4 = spec.inner_v4 ^ flip_family;
                    let p = ip_packet(host_a(v4), host_b(v4), nh_byte, tos, body);
                    (p, if v4 { 4 } else { 41 })
                }
                Mode::Transport => {
                    let mut p = udp_header(1000, 53, body.len());
                    p.extend_from_slice(body);
                    (p, IpProtocol::UDP.0)
                }
            };
            let nh = if override_nh { nh_byte } else { nh };
            inner_has_key = spec.mode == Mode::Transport || flow_key(&p).is_ok();
            p.extend(trailer(p.len(), block, nh));
            p
        }
    };
    if block > 4 {
        // CBC needs whole blocks; what the zeros decode to is the point.
        plaintext.resize(plaintext.len().div_ceil(block) * block, 0);
    }

    let top = h
        .engine
        .inbound()
        .get(Spi::new(spi).expect("SPI"))
        .expect("SA")
        .replay_top();
    let predicted = predict_esn_high(top, spec.replay_window, seq_low);
    let esn_high = spec.esn.then(|| match esn_choice {
        0 => predicted.unwrap_or(0),
        1 => predicted.unwrap_or(0).wrapping_add(1),
        2 => predicted.unwrap_or(0).wrapping_sub(1),
        _ => input.u32(),
    });

    let mut esp_header = [0u8; 8];
    esp_header[..4].copy_from_slice(&spi.to_be_bytes());
    esp_header[4..].copy_from_slice(&seq_low.to_be_bytes());
    let mut icv = vec![0u8; spec.alg.icv_len()];
    if spec.alg.encryption == dataplane::crypto::Encryption::Null {
        let keys = keys_for(spec.alg, i as u8);
        let high = esn_high.map(u32::to_be_bytes);
        let high: &[u8] = high.as_ref().map_or(&[], |h| &h[..]);
        icv = hmac_icv(
            spec.alg.integrity,
            &keys.auth_key,
            &[&esp_header, &plaintext, high],
        );
    } else if h.sealers[i]
        .seal(&esp_header, esn_high, &iv, &mut plaintext, &mut icv)
        .is_err()
    {
        return;
    }
    let mut esp = esp_header.to_vec();
    esp.extend_from_slice(&iv);
    esp.extend_from_slice(&plaintext);
    esp.extend_from_slice(&icv);

    // Outer headers.
    let udp = spec.udp ^ flip_udp;
    let mut l4 = Vec::new();
    if udp {
        l4 = udp_header(4500, 4500, esp.len());
    }
    l4.extend_from_slice(&esp);
    let proto = if udp {
        IpProtocol::UDP.0
    } else {
        IpProtocol::ESP.0
    };
    let outer_v4 = spec.outer_v4 ^ (flip_family && spec.mode == Mode::Transport);
    let (src, dst) = if outer_v4 == spec.outer_v4 {
        spec.outer_addrs()
    } else {
        (host_a(outer_v4), host_b(outer_v4))
    };
    let mut wire = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let options: &[u8] = if ext_header { &[1, 1, 1, 0] } else { &[] };
            ipv4_header(s, d, proto, 0, options, l4.len())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if ext_header {
                let first = if hop_by_hop {
                    IpProtocol::HOP_BY_HOP.0
                } else {
                    IpProtocol::IPV6_OPTS.0
                };
                let mut p = ipv6_header(s, d, first, 0, l4.len() + 8);
                p.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
                p
            } else {
                ipv6_header(s, d, proto, 0, l4.len())
            }
        }
        _ => unreachable!("one family"),
    };
    wire.extend_from_slice(&l4);
    if link_padding {
        wire.extend_from_slice(&[0u8; 6]);
    }

    let (r, _) = h.decapsulate(&wire);
    if passed_replay_check(r) {
        h.window_moved[i] = true;
    }
    // A well-formed packet sealed with the right keys and ESN half must be
    // accepted, unless its number was seen or it is outside narrow
    // selectors.
    let esn_right = !spec.esn || (esn_choice == 0 && predicted.is_some());
    if body_kind == 2 && inner_has_key && !override_nh && !flip_udp && esn_right {
        let ok = matches!(r, Ok(InboundOutcome::Decrypted(_)))
            || r == Err(DropReason::Replay)
            || r == Err(DropReason::TooOld)
            || (spec.narrow && r == Err(DropReason::SelectorMismatch));
        assert!(ok, "SA {i}: well-formed forged packet: {r:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let start = STARTS[usize::from(input.u8() % 4)];
    let mut h = Harness::new(start);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 3 {
            0 => raw(&mut h, &mut input),
            1 => valid(&mut h, &mut input),
            _ => forged(&mut h, &mut input),
        }
    }
});
