//! Outbound ESP: arbitrary bytes as an inner IP packet through the entry
//! points the gateway's node calls: the classify pass (`PacketMeta::of`),
//! the SPD (`EspEngine::packet_action`, a PROTECT policy for all traffic of
//! both families) and `EspEngine::encapsulate`; then the result through the
//! classify pass and `EspEngine::decapsulate` of an engine holding the
//! matching inbound SA.
//!
//! The first byte picks the SA (any of the shared set) and where its
//! sequence numbers start. Oracle: when encapsulation succeeds,
//! decapsulation gives back the input trimmed to its IP length (in
//! transport mode with a recomputed IPv4 header checksum), unless the input
//! is one the receiver must refuse for a reason visible in the input
//! itself: a bad inner IPv4 checksum (tunnel), protocol 59 (transport), an
//! IPv6 extension header chain the receiver does not accept, or a packet
//! outside the SA's selectors. In transport mode the sender must refuse
//! fragments itself (RFC 4303 §3.3.5).

#![no_main]

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::esp::{
    flow_key, Action, DropReason, EspEngine, InboundOutcome, IpPrefix, Mode, Policy, SaRef,
    Selector, Spd,
};
use dataplane::gateway::PacketMeta;
use dataplane::wire::{IpProtocol, Ipv4Packet, Ipv6Packet};
use espresso_fuzz::{fix_ipv4_checksum, Input, SAS};
use libfuzzer_sys::fuzz_target;

const STARTS: [u64; 4] = [0, (1 << 32) - 3, (5 << 32) + 100, 0x7fff_fff0];

fn protect_everything() -> Spd {
    let mut spd = Spd::new();
    for any in ["0.0.0.0/0", "::/0"] {
        let any: IpPrefix = any.parse().expect("prefix literal");
        spd.insert(Policy {
            selector: Selector::new(any, any),
            action: Action::Protect(SaRef(0)),
            priority: 1,
        })
        .expect("policy");
    }
    spd
}

/// Whether the receiver must accept the packet that `input` (already
/// accepted by the sender) became, judged from the input alone. In
/// transport mode a payload of protocol 59 (No Next Header) is taken for a
/// dummy packet (RFC 4303 §2.6) and discarded.
fn must_accept(mode: Mode, input: &[u8]) -> bool {
    if mode == Mode::Transport
        && flow_key(input).is_ok_and(|k| k.proto == IpProtocol::IPV6_NO_NXT.0)
    {
        return false;
    }
    match (mode, input[0] >> 4) {
        (Mode::Tunnel, 4) => Ipv4Packet::new_checked(input).is_ok_and(|p| p.verify_checksum()),
        (Mode::Tunnel, _) => true,
        (Mode::Transport, 4) => Ipv4Packet::new_checked(input).is_ok_and(|p| !p.is_fragment()),
        (Mode::Transport, _) => Ipv6Packet::new_checked(input)
            .and_then(|p| p.ext_headers())
            .is_ok_and(|e| e.fragment.is_none()),
    }
}

/// An IPv4 fragment or an IPv6 packet with a Fragment header.
fn is_fragment(p: &[u8]) -> bool {
    match p.first().map(|b| b >> 4) {
        Some(4) => Ipv4Packet::new_checked(p).is_ok_and(|ip| ip.is_fragment()),
        Some(6) => Ipv6Packet::new_checked(p)
            .and_then(|ip| ip.ext_headers())
            .is_ok_and(|e| e.fragment.is_some()),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let choice = input.u8();
    let i = usize::from(choice & 0x0f) % SAS.len();
    let spec = SAS[i];
    let start = STARTS[usize::from(choice >> 4) % 4];
    let start = if spec.esn { start } else { start & 0xffff_ffff };
    let packet = input.rest();

    let mut engine = EspEngine::new();
    engine.set_spd(protect_everything());
    let mut out = spec.outbound(i);
    out.resume_seq_after(start);
    engine.install_outbound(SaRef(0), out);
    let mut receiver = EspEngine::new();
    let mut inb = spec.inbound(i);
    inb.resume_replay_after(start);
    receiver.install_inbound(inb);

    // What does not classify (not IP, a bad IPv4 header checksum) the node
    // drops before the engine.
    let Some(meta) = PacketMeta::of(packet) else {
        return;
    };
    let slot = match meta
        .packet_key(packet)
        .and_then(|k| engine.packet_action(&k))
    {
        Ok(Action::Protect(slot)) => slot,
        Err(_) => return,
        Ok(a) => panic!("protect-everything SPD gave {a:?}"),
    };
    let mut pkt = HeapBuf::from_slice(packet);
    let sealed = engine.encapsulate(slot, &mut pkt, &mut |_| {});
    if spec.mode == Mode::Transport && is_fragment(packet) {
        assert!(sealed.is_err(), "SA {i}: transport mode took a fragment");
    }
    if sealed.is_err() {
        return;
    }
    // The sender accepted it, so it is an IP packet with a flow key.
    let key = flow_key(packet).expect("encapsulated packet has a flow key");
    let in_selectors = receiver
        .inbound()
        .iter()
        .next()
        .expect("one SA")
        .config()
        .selectors_match(&key);
    let total = match packet[0] >> 4 {
        4 => usize::from(Ipv4Packet::new_checked(packet).expect("v4").total_len()),
        _ => 40 + usize::from(Ipv6Packet::new_checked(packet).expect("v6").payload_len()),
    };
    let mut expected = packet[..total].to_vec();
    if spec.mode == Mode::Transport && expected[0] >> 4 == 4 {
        fix_ipv4_checksum(&mut expected);
    }

    // The node drops an outer packet that does not classify as a bad
    // frame; for the oracle that is a bad header.
    let r = match PacketMeta::of(pkt.data()) {
        Some(m) => receiver.decapsulate(&mut pkt, m.esp, &mut |_| {}),
        None => Err(DropReason::BadHeader),
    };
    if !must_accept(spec.mode, packet) {
        assert!(
            matches!(
                r,
                Err(DropReason::BadHeader | DropReason::Unsupported | DropReason::SelectorMismatch)
            ),
            "SA {i}: refusable input: {r:?}"
        );
        return;
    }
    if !in_selectors {
        assert_eq!(r, Err(DropReason::SelectorMismatch), "SA {i}");
        return;
    }
    match r {
        Ok(InboundOutcome::Decrypted(d)) => {
            assert_eq!(d.len, pkt.len());
            assert_eq!(pkt.data(), &expected[..], "SA {i}: round trip");
        }
        other => panic!("SA {i}: encapsulated packet not decapsulated: {other:?}"),
    }
});
