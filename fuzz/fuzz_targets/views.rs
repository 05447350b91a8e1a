//! Packet views: the same bytes go into every `new_checked` view and every
//! getter, every `Repr::parse`, and where a parse succeeds, `emit` then
//! `parse` again must give the same value (and for the ESP trailer, the
//! same bytes). Also the free parsers next to them: `UdpEncap::classify`,
//! `EspTrailer::parse`, `pad_len`, the ICMP quote helpers, and the ESP
//! engine's `locate_esp` and `flow_key`.

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use dataplane::esp::{flow_key, locate_esp};
use dataplane::wire::esp::{pad_len, EspTrailer};
use dataplane::wire::icmp::{icmpv4_quote, icmpv6_quote};
use dataplane::wire::{
    ip::checksum, ArpPacket, ArpRepr, EspPacket, EspRepr, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6ExtHeaders, Ipv6Packet, Ipv6Repr, TcpPacket, UdpEncap, UdpPacket, UdpRepr, VlanTag,
};
use libfuzzer_sys::fuzz_target;

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
    let _ = f.dst_addr().is_broadcast();
    if let Ok(Some(tag)) = f.vlan_tag() {
        let mut b = [0u8; VlanTag::LEN];
        tag.emit(&mut b).expect("VLAN tag emits into 4 bytes");
        let mut again = VlanTag::parse(&b).expect("emitted VLAN tag parses");
        // emit masks the fields to their widths; parse gives them back so.
        assert_eq!(again, tag, "VLAN tag round trip");
        again.vid |= 0xf000;
        again.emit(&mut b).expect("emit");
        assert_eq!(VlanTag::parse(&b).expect("parse").vid, tag.vid);
    }
    if let Ok((_, payload)) = f.network_payload() {
        assert!(payload.len() <= f.payload().len());
    }
    let repr = EthernetRepr::parse(&f).expect("checked frame parses");
    let mut buf = data.to_vec();
    let mut out = EthernetFrame::new_checked(&mut buf[..]).expect("same length");
    repr.emit(&mut out).expect("emit");
    let again = EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).expect("checked"))
        .expect("emitted frame parses");
    assert_eq!(again, repr, "Ethernet round trip");
    assert_eq!(buf, data, "Ethernet header re-emitted byte for byte");
}

fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.operation(),
        p.source_hardware_addr().len(),
        p.source_protocol_addr().len(),
        p.target_hardware_addr().len(),
        p.target_protocol_addr().len(),
    );
    if let Ok(repr) = ArpRepr::parse(&p) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).expect("emit");
        let again = ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).expect("emitted checks"))
            .expect("emitted ARP parses");
        assert_eq!(again, repr, "ARP round trip");
        assert_eq!(
            buf[..],
            data[..ArpRepr::LEN],
            "ARP re-emitted byte for byte"
        );
        let _ = repr.reply(dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 1]));
    }
}

fn ipv4(data: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.ttl(),
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
    );
    assert_eq!(
        p.header().len() + p.payload().len(),
        usize::from(p.total_len())
    );
    assert_eq!(p.options().len() + 20, usize::from(p.header_len()));
    if p.compute_checksum() == p.checksum() {
        assert!(p.verify_checksum(), "IPv4 checksum as computed verifies");
    }
    // The mutating helpers keep the checksum right.
    let mut buf = data.to_vec();
    {
        let mut m = Ipv4Packet::new_checked(&mut buf[..]).expect("same bytes");
        m.fill_checksum();
        assert!(m.verify_checksum(), "filled checksum verifies");
        let before = m.ttl();
        if let Some(ttl) = m.decrement_ttl() {
            assert_eq!(ttl, before - 1);
        }
        m.rewrite_ttl(7);
        m.rewrite_dscp_ecn(data[1] >> 2, data[1] & 3);
        assert!(m.verify_checksum(), "incremental updates keep the checksum");
    }
    let Ok(repr) = Ipv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
    let mut op = Ipv4Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut op).expect("emit");
    let again = Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).expect("emitted checks"))
        .expect("emitted IPv4 parses");
    assert_eq!(again, repr, "IPv4 round trip");
}

fn ipv6(data: &[u8]) {
    let _ = Ipv6ExtHeaders::walk(IpProtocol(data.first().copied().unwrap_or(0)), data);
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.dscp(),
        p.ecn(),
        p.flow_label(),
        p.next_header(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
    );
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    assert_eq!(p.traffic_class(), p.dscp() << 2 | p.ecn());
    if let Ok(e) = p.ext_headers() {
        assert!(e.upper_offset >= 40 && e.upper_offset <= 40 + p.payload().len());
    }
    let repr = Ipv6Repr::parse(&p).expect("checked packet parses");
    let mut out = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
    let mut op = Ipv6Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut op).expect("emit");
    let again = Ipv6Repr::parse(&Ipv6Packet::new_checked(&out[..]).expect("emitted checks"))
        .expect("emitted IPv6 parses");
    assert_eq!(again, repr, "IPv6 round trip");
    assert_eq!(
        out[..40],
        data[..40],
        "IPv6 header re-emitted byte for byte"
    );
}

fn udp(data: &[u8]) {
    let Ok(p) = UdpPacket::new_checked(data) else {
        return;
    };
    let _ = (p.src_port(), p.dst_port(), p.checksum(), p.is_empty());
    assert_eq!(p.datagram().len(), usize::from(p.len()));
    assert_eq!(p.payload().len() + 8, usize::from(p.len()));
    let _ = p.verify_checksum_v4(SRC4, DST4) == (p.compute_checksum_v4(SRC4, DST4) == p.checksum());
    let _ = p.verify_checksum_v6(SRC6, DST6);
    let _ = UdpEncap::classify(p.payload());
    let repr = UdpRepr::parse(&p).expect("checked datagram parses");
    let mut out = vec![0u8; repr.buffer_len() + usize::from(repr.payload_len)];
    out[8..].copy_from_slice(p.payload());
    let mut op = UdpPacket::new_unchecked(&mut out[..]);
    repr.emit(&mut op).expect("emit");
    op.fill_checksum_v6(SRC6, DST6);
    let checked = UdpPacket::new_checked(&out[..]).expect("emitted checks");
    assert!(
        checked.verify_checksum_v6(SRC6, DST6),
        "filled checksum verifies"
    );
    assert_eq!(UdpRepr::parse(&checked), Ok(repr), "UDP round trip");
    let mut op = UdpPacket::new_unchecked(&mut out[..]);
    op.fill_checksum_v4(SRC4, DST4);
    assert!(
        UdpPacket::new_checked(&out[..])
            .expect("checked")
            .verify_checksum_v4(SRC4, DST4),
        "filled IPv4 checksum verifies"
    );
}

fn tcp(data: &[u8]) {
    let Ok(p) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
        p.flags().syn(),
        p.window(),
        p.checksum(),
        p.urgent(),
    );
    assert_eq!(
        p.options().len() + p.payload().len() + 20,
        data.len(),
        "TCP options and payload cover the segment"
    );
    let mss = p.mss();
    if let Ok(Some((at, v))) = p.find_mss() {
        assert_eq!(u16::from_be_bytes([data[at], data[at + 1]]), v);
    }
    let was_ok = p.verify_checksum_v4(SRC4, DST4);
    let was_ok6 = p.verify_checksum_v6(SRC6, DST6);
    let _ = p.compute_checksum_v6(SRC6, DST6);
    // Clamping rewrites the MSS and fixes the checksum incrementally.
    let max = u16::from_be_bytes([data[0], data[data.len() - 1]]);
    let mut buf = data.to_vec();
    let mut m = TcpPacket::new_checked(&mut buf[..]).expect("same bytes");
    let clamped = m.clamp_mss(max);
    match clamped {
        Ok(Some(old)) => {
            assert_eq!(mss, Ok(Some(old)));
            assert!(old > max);
            assert_eq!(m.mss(), Ok(Some(max)), "MSS clamped");
            assert_eq!(m.verify_checksum_v4(SRC4, DST4), was_ok, "v4 checksum kept");
            assert_eq!(
                m.verify_checksum_v6(SRC6, DST6),
                was_ok6,
                "v6 checksum kept"
            );
        }
        Ok(None) => assert_eq!(buf, data, "unclamped segment unchanged"),
        Err(_) => assert!(mss.is_err(), "clamp fails only on bad options"),
    }
    let mut m = TcpPacket::new_checked(&mut buf[..]).expect("same bytes");
    m.fill_checksum_v4(SRC4, DST4);
    assert!(m.verify_checksum_v4(SRC4, DST4));
    m.fill_checksum_v6(SRC6, DST6);
    assert!(m.verify_checksum_v6(SRC6, DST6));
}

fn icmpv4(data: &[u8]) {
    let _ = icmpv4_quote(data);
    let Ok(p) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.next_hop_mtu(),
        p.data().len(),
    );
    if p.compute_checksum() == p.checksum() {
        assert!(p.verify_checksum(), "ICMPv4 checksum as computed verifies");
    }
    let Ok(repr) = Icmpv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]))
        .expect("emit");
    let again = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&out[..]).expect("checked"))
        .expect("emitted ICMPv4 parses");
    assert_eq!(again, repr, "ICMPv4 round trip");
}

fn icmpv6(data: &[u8]) {
    let _ = icmpv6_quote(data);
    let Ok(p) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.mtu(),
        p.na_flags(),
        p.target_addr(),
        p.ndp_options().len(),
        p.data().len(),
        p.compute_checksum(SRC6, DST6),
    );
    // Try the checksum as sent, then with it filled in, so the fuzzer
    // reaches the message parsers without forging checksums.
    let mut filled = data.to_vec();
    Icmpv6Packet::new_unchecked(&mut filled[..]).fill_checksum(SRC6, DST6);
    for bytes in [data, &filled[..]] {
        let p = Icmpv6Packet::new_checked(bytes).expect("same length");
        let Ok(repr) = Icmpv6Repr::parse(SRC6, DST6, &p) else {
            continue;
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(SRC6, DST6, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .expect("emit");
        let again = Icmpv6Repr::parse(
            SRC6,
            DST6,
            &Icmpv6Packet::new_checked(&out[..]).expect("checked"),
        )
        .expect("emitted ICMPv6 parses");
        assert_eq!(again, repr, "ICMPv6 round trip");
    }
}

fn esp(data: &[u8]) {
    let _ = UdpEncap::classify(data);
    if let Ok(p) = EspPacket::new_checked(data) {
        let _ = (p.spi(), p.sequence_number(), p.header().len());
        assert_eq!(p.payload().len() + 8, data.len());
        let repr = EspRepr::parse(&p).expect("checked ESP parses");
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut EspPacket::new_checked(&mut out[..]).expect("8 bytes"))
            .expect("emit");
        assert_eq!(out[..], data[..8], "ESP header re-emitted byte for byte");
        let again = EspRepr::parse(&EspPacket::new_checked(&out[..]).expect("checked"));
        assert_eq!(again, Ok(repr), "ESP round trip");
    }
    for check_padding in [false, true] {
        let Ok(t) = EspTrailer::parse(data, check_padding) else {
            continue;
        };
        assert_eq!(
            t.payload_len + usize::from(t.pad_len) + 2,
            data.len(),
            "trailer accounts for every byte"
        );
        if check_padding {
            // Default padding: emitting the trailer again gives the bytes.
            let mut out = data.to_vec();
            EspTrailer::emit(&mut out[t.payload_len..], t.next_header).expect("emit");
            assert_eq!(out, data, "trailer re-emitted byte for byte");
            assert_eq!(EspTrailer::parse(&out, true), Ok(t), "trailer round trip");
        }
    }
    if let [a, b, c, ..] = data {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let block = *c;
        let pad = usize::from(pad_len(len, block));
        assert_eq!((len + pad + 2) % 4, 0, "pad_len aligns to 4");
        if block.is_power_of_two() {
            assert_eq!((len + pad + 2) % usize::from(block), 0, "pad_len aligns");
        }
    }
}

fn checksums(data: &[u8]) {
    let sum = checksum::data(data);
    // Appending the complement makes the sum verify (for even lengths).
    if data.len().is_multiple_of(2) {
        let mut with = data.to_vec();
        with.extend_from_slice(&(!sum).to_be_bytes());
        assert_eq!(
            checksum::data(&with),
            0xffff,
            "checksum of data plus complement"
        );
    }
    if let [a, b, c, d, e, f, ..] = data {
        let c0 = u16::from_be_bytes([*a, *b]);
        let old = u16::from_be_bytes([*c, *d]);
        let new = u16::from_be_bytes([*e, *f]);
        let _ = checksum::update(c0, old, new);
        let _ = checksum::update_at(c0, usize::from(*a), old, new);
    }
}

fuzz_target!(|data: &[u8]| {
    ethernet(data);
    arp(data);
    ipv4(data);
    ipv6(data);
    udp(data);
    tcp(data);
    icmpv4(data);
    icmpv6(data);
    esp(data);
    checksums(data);
    let _ = locate_esp(data, 4500);
    let _ = flow_key(data);
    // Views over an Ethernet payload too, as the worker sees them.
    if let Ok(f) = EthernetFrame::new_checked(data) {
        if let Ok((_, payload)) = f.network_payload() {
            ipv4(payload);
            ipv6(payload);
            arp(payload);
        }
    }
});
