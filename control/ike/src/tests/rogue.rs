//! A peer that knows its own PSK, and a man in the middle of the
//! unauthenticated IKE_SA_INIT: messages hand-crafted with the keys the
//! engines log, or an engine driven with a modified configuration.

use std::net::SocketAddr;

use super::util::*;
use super::{establish, ESP, IKE};
use crate::config::parse_traffic_selector;
use crate::message::*;
use crate::negotiate;
use crate::*;

fn ts(s: &str) -> TrafficSelector {
    parse_traffic_selector(s).unwrap()
}

/// (A's, B's) IKE SA.
fn ike_ids(p: &Pair) -> (IkeSaId, IkeSaId) {
    (p.a.established_ike_sas()[0], p.b.established_ike_sas()[0])
}

/// A CREATE_CHILD_SA request a rogue A seals with its own keys, with
/// message ID `msg_id`; returns B's decrypted response.
fn rogue_create_child(p: &mut Pair, msg_id: u32, payloads: &[Payload]) -> Vec<Payload> {
    let (ia, ib) = ike_ids(p);
    let s = p.a.ike_sa_secrets(ia).unwrap();
    let hdr = Header {
        spi_i: s.spi_i,
        spi_r: s.spi_r,
        exchange: ExchangeType::CREATE_CHILD_SA,
        flags: Flags::new(true, false),
        message_id: msg_id,
    };
    let t = Transmit {
        local: A_ADDR.parse().unwrap(),
        remote: B_ADDR.parse().unwrap(),
        non_esp_marker: false,
        payload: seal_sk(&mut sk_cipher(&p.a, ia, true), &hdr, payloads),
    };
    deliver_to(&mut p.b, p.now, &t);
    let r = p.b.poll_transmit().expect("B answers");
    let (rh, ps) = open_sk(&sk_cipher(&p.b, ib, true), &r.payload);
    assert_eq!(rh.message_id, msg_id);
    ps
}

/// A rekey of the Child SA whose SPI towards A is `old` (REKEY_SA, §1.3.3).
fn rekey_payloads(
    old: u32,
    new_spi: u32,
    nonce_len: usize,
    tsi: Vec<TrafficSelector>,
    tsr: Vec<TrafficSelector>,
) -> Vec<Payload> {
    vec![
        Payload::Notify(Notify {
            protocol: ProtocolId::ESP,
            spi: old.to_be_bytes().to_vec(),
            ty: NotifyType::REKEY_SA,
            data: vec![],
        }),
        Payload::Sa(negotiate::esp_offer(
            &[EspProposal::parse(ESP[0]).unwrap()],
            new_spi,
            false,
        )),
        Payload::Nonce(vec![7; nonce_len]),
        Payload::TsI(tsi),
        Payload::TsR(tsr),
    ]
}

fn has_notify(ps: &[Payload], ty: NotifyType) -> bool {
    find_notify(ps, ty).is_some()
}

/// An unprotected IKE_SA_INIT "response" to `req`, as anyone on the path
/// can send.
fn forged_init_reply(req: &Transmit, payloads: Vec<Payload>) -> Transmit {
    let m = Message::decode(&req.payload).unwrap();
    let header = Header {
        spi_r: 0x5eed_5eed_5eed_5eed,
        flags: Flags::new(false, true),
        ..m.header
    };
    Transmit {
        local: req.remote,
        remote: req.local,
        non_esp_marker: false,
        payload: Message { header, payloads }.encode().unwrap(),
    }
}

#[test]
fn ike_rekey_reply_with_wider_selectors_is_refused_and_old_sa_kept() {
    let mut p = Pair::with(200, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let (_, ib) = ike_ids(&p);
    let old_a = p.a.child_sas()[0].clone();
    let old_b = p.b.child_sas()[0].clone();
    p.a.rekey_child(p.now, old_a.id).unwrap();
    let req = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &req);
    let resp = p.b.poll_transmit().unwrap();
    // B answers with all of IPv4 both ways instead of a subset of A's offer.
    let (hdr, mut ps) = open_sk(&sk_cipher(&p.b, ib, true), &resp.payload);
    for x in &mut ps {
        if let Payload::TsI(t) | Payload::TsR(t) = x {
            *t = vec![ts("0.0.0.0/0")];
        }
    }
    let forged = Transmit {
        payload: seal_sk(&mut sk_cipher(&p.b, ib, true), &hdr, &ps),
        ..resp
    };
    deliver_to(&mut p.a, p.now, &forged);
    assert_eq!(p.a.stats().ts_unacceptable, 1);
    let now_a = p.a.child_sas();
    assert_eq!(now_a.len(), 1);
    assert_eq!(now_a[0].id, old_a.id, "the old Child SA stays");
    assert_eq!(now_a[0].local_ts, old_a.local_ts);
    assert_eq!(now_a[0].remote_ts, old_a.remote_ts);
    // A deletes the SA B created; B goes back to the old one.
    p.run_for(1_000);
    assert_children_match(&p);
    assert_eq!(p.b.child_sas()[0].id, old_b.id);
    // The next rekey attempts converge as usual.
    p.run_for(20_000);
    assert_children_match(&p);
    assert_eq!(p.a.child_sas().len(), 1);
    assert_ne!(p.a.child_sas()[0].id, old_a.id);
    assert_eq!(p.a.child_sas()[0].local_ts, old_a.local_ts);
}

#[test]
fn ike_peer_child_requests_are_narrowed_to_config_or_ts_unacceptable() {
    let mut p = Pair::with(201, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let old_b = p.b.child_sas()[0].id;
    let a_in = p.a.child_sas()[0].inbound_spi;
    let r = rogue_create_child(
        &mut p,
        2,
        &rekey_payloads(
            a_in,
            0x1000,
            32,
            vec![ts("10.9.0.0/16")],
            vec![ts("10.8.0.0/16")],
        ),
    );
    assert!(has_notify(&r, NotifyType::TS_UNACCEPTABLE), "{r:?}");
    assert_eq!(p.b.stats().ts_unacceptable, 1);
    assert_eq!(p.b.child_sas().len(), 1);
    assert_eq!(p.b.child_sas()[0].id, old_b);
    // Wider than configured: narrowed to the configuration.
    let r = rogue_create_child(
        &mut p,
        3,
        &rekey_payloads(
            a_in,
            0x1001,
            32,
            vec![ts("10.0.0.0/8")],
            vec![ts("0.0.0.0/0")],
        ),
    );
    assert!(r
        .iter()
        .any(|x| matches!(x, Payload::TsI(t) if *t == vec![ts("10.1.0.0/24")])));
    assert!(r
        .iter()
        .any(|x| matches!(x, Payload::TsR(t) if *t == vec![ts("10.2.0.0/24")])));
}

#[test]
fn ike_forged_init_errors_do_not_end_the_attempt() {
    let a = config(true, &["aes128gcm16-prfsha256-ecp256-modp2048"], &[ESP[0]]);
    let mut p = Pair::new(210, a, config(false, &[IKE[0]], &[ESP[0]]));
    p.a.initiate(p.now);
    let req = p.a.poll_transmit().unwrap();
    for n in [
        Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
        // A group A never proposed (x25519).
        Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![0, 31]),
    ] {
        deliver_to(
            &mut p.a,
            p.now,
            &forged_init_reply(&req, vec![Payload::Notify(n)]),
        );
        assert!(p.a.poll_transmit().is_none(), "no restart");
    }
    assert_eq!(p.a.stats().init_errors_ignored, 2);
    // The genuine responder's answer still gets through.
    deliver_to(&mut p.b, p.now, &req);
    assert!(p.run_until(10_000, |p| p.up()), "{:?}", p.ev_a);
    assert!(!p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. })));
}

#[test]
fn ike_forged_cookies_and_invalid_ke_restart_a_bounded_number_of_times() {
    let a = config(true, &["aes128gcm16-prfsha256-ecp256-modp2048"], &[ESP[0]]);
    let mut p = Pair::new(211, a, config(false, &[IKE[0]], &[ESP[0]]));
    p.a.initiate(p.now);
    let mut req = p.a.poll_transmit().unwrap();
    let mut restarts = 0;
    for i in 0..12u8 {
        let n = match i % 3 {
            0 => Notify::new(NotifyType::COOKIE, vec![i; 16]),
            1 => Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![0, 14]),
            _ => Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![0, 19]),
        };
        deliver_to(
            &mut p.a,
            p.now,
            &forged_init_reply(&req, vec![Payload::Notify(n)]),
        );
        if let Some(t) = p.a.poll_transmit() {
            restarts += 1;
            req = t;
        }
    }
    assert_eq!(restarts, 3);
    assert_eq!(p.a.stats().init_errors_ignored, 9);
    // Back on ecp256 after the last restart: the genuine responder answers.
    deliver_to(&mut p.b, p.now, &req);
    assert!(p.run_until(10_000, |p| p.up()), "{:?}", p.ev_a);
}

fn odd_v6(i: u16) -> TrafficSelector {
    // All of 2001:db8:i::/48 but its first and last address: ~2 × 79
    // prefixes.
    let start: std::net::Ipv6Addr = format!("2001:db8:{i:x}::1").parse().unwrap();
    let end: std::net::Ipv6Addr = format!("2001:db8:{i:x}:ffff:ffff:ffff:ffff:fffe")
        .parse()
        .unwrap();
    TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: start.into(),
        end_addr: end.into(),
    }
}

#[test]
fn ike_selector_explosion_is_refused() {
    // 4 × 4 odd ranges (within the count, ~400 000 prefix pairs) and 17 × 17
    // (over the count), against a responder that allows all of IPv6.
    for (n, seed) in [(4u16, 220), (17, 221)] {
        let mut a = config(true, &[IKE[0]], &[ESP[0]]);
        a.local_ts = (0..n).map(odd_v6).collect();
        a.remote_ts = (100..100 + n).map(odd_v6).collect();
        assert!(negotiate::selector_count(&a.local_ts, &a.remote_ts) > 100_000);
        let mut b = config(false, &[IKE[0]], &[ESP[0]]);
        b.local_ts = vec![ts("::/0")];
        b.remote_ts = vec![ts("::/0")];
        let mut p = Pair::new(seed, a, b);
        p.a.initiate(p.now);
        p.run_for(5_000);
        assert_eq!(p.b.established_ike_sas().len(), 1, "IKE SA stays up");
        assert!(p.b.child_sas().is_empty(), "n = {n}");
        assert_eq!(p.b.stats().ts_over_limit, 1);
        assert!(p.ev_a.iter().any(|e| matches!(
            e,
            IkeEvent::ChildSaFailed {
                notify: NotifyType::TS_UNACCEPTABLE,
                ..
            }
        )));
    }
}

#[test]
fn ike_child_sa_limit_refuses_endless_rekeys() {
    let mut p = Pair::with(230, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let k = p.a.child_sas()[0].clone();
    let mut prev = k.inbound_spi;
    let (mut accepted, mut refused) = (0, 0);
    // Each rekey replaces the previous new SA and never deletes anything.
    for i in 0..20u32 {
        let new_spi = 0x2000 + i;
        let r = rogue_create_child(
            &mut p,
            2 + i,
            &rekey_payloads(prev, new_spi, 32, k.local_ts.clone(), k.remote_ts.clone()),
        );
        if r.iter().any(|x| matches!(x, Payload::Sa(_))) {
            accepted += 1;
            prev = new_spi;
        } else {
            assert!(has_notify(&r, NotifyType::NO_ADDITIONAL_SAS), "{r:?}");
            refused += 1;
        }
    }
    let max = p.b.config().limits.max_child_sas;
    assert_eq!(accepted, max - 1);
    assert_eq!(refused, 20 - accepted);
    assert_eq!(p.b.stats().child_sa_limit, refused as u64);
}

#[test]
fn ike_out_of_range_nonces_are_refused() {
    // CREATE_CHILD_SA with an 8-byte Ni.
    let mut p = Pair::with(240, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let k = p.a.child_sas()[0].clone();
    let old_b = p.b.child_sas()[0].id;
    let r = rogue_create_child(
        &mut p,
        2,
        &rekey_payloads(k.inbound_spi, 0x3000, 8, k.local_ts, k.remote_ts),
    );
    assert!(has_notify(&r, NotifyType::INVALID_SYNTAX), "{r:?}");
    assert_eq!(p.b.stats().bad_nonce, 1);
    let by_rule = &p.b.stats().protocol_errors;
    assert_eq!(by_rule.get(ProtocolError::BadNonceLength), 1);
    assert_eq!(by_rule.iter().map(|(_, n)| n).sum::<u64>(), 1);
    assert_eq!(p.b.child_sas()[0].id, old_b);

    // An IKE_SA_INIT response with a 257-byte Nr.
    let mut p = Pair::with(241, &[IKE[0]], &[ESP[0]]);
    p.a.initiate(p.now);
    let req = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &req);
    let resp = p.b.poll_transmit().unwrap();
    let mut m = Message::decode(&resp.payload).unwrap();
    for x in &mut m.payloads {
        if let Payload::Nonce(n) = x {
            *n = vec![1; 257];
        }
    }
    let bad = Transmit {
        payload: m.encode().unwrap(),
        ..resp.clone()
    };
    deliver_to(&mut p.a, p.now, &bad);
    assert_eq!(p.a.stats().bad_nonce, 1);
    assert!(p.a.poll_transmit().is_none(), "no IKE_AUTH on it");
    deliver_to(&mut p.a, p.now, &resp);
    assert!(p.run_until(10_000, |p| p.up()));
}

#[test]
fn ike_informational_before_ike_auth_is_ignored() {
    let mut p = Pair::with(250, &[IKE[0]], &[ESP[0]]);
    p.a.initiate(p.now);
    let req = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &req);
    let resp = p.b.poll_transmit().unwrap();
    deliver_to(&mut p.a, p.now, &resp);
    let auth = p.a.poll_transmit().unwrap();
    let h = Message::decode(&resp.payload).unwrap().header;
    // Whoever answered IKE_SA_INIT (not yet authenticated) asks A to
    // delete the IKE SA.
    let hdr = Header {
        exchange: ExchangeType::INFORMATIONAL,
        flags: Flags::new(false, false),
        message_id: 0,
        ..h
    };
    let bytes = seal_sk(
        &mut sk_cipher(&p.b, IkeSaId(h.spi_r), true),
        &hdr,
        &[Payload::Delete(Delete::ike())],
    );
    let info = Transmit {
        payload: bytes,
        ..resp
    };
    deliver_to(&mut p.a, p.now, &info);
    assert_eq!(p.a.stats().not_established, 1);
    assert!(p.a.poll_transmit().is_none(), "dropped, not answered");
    deliver_to(&mut p.b, p.now, &auth);
    assert!(p.run_until(10_000, |p| p.up()), "{:?}", p.ev_a);
}

#[test]
fn ike_response_with_another_exchange_type_is_dropped() {
    let mut p = Pair::with(260, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let (_, ib) = ike_ids(&p);
    let old = p.a.child_sas()[0].id;
    p.a.rekey_child(p.now, old).unwrap();
    let req = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &req);
    let resp = p.b.poll_transmit().unwrap();
    let (mut hdr, ps) = open_sk(&sk_cipher(&p.b, ib, true), &resp.payload);
    hdr.exchange = ExchangeType::INFORMATIONAL;
    let wrong = Transmit {
        payload: seal_sk(&mut sk_cipher(&p.b, ib, true), &hdr, &ps),
        ..resp
    };
    deliver_to(&mut p.a, p.now, &wrong);
    assert_eq!(p.a.stats().exchange_mismatch, 1);
    assert_eq!(
        p.a.child_sas()[0].id,
        old,
        "not taken as the rekey's answer"
    );
    // A retransmits; B replays its genuine response.
    assert!(p.run_until(10_000, |p| p.up() && p.a.child_sas()[0].id != old));
    p.run_for(2_000);
    assert_children_match(&p);
}

#[test]
fn ike_nat_rebinding_moves_the_child_sas() {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    a.force_encap = true;
    a.timers.dpd_interval_ms = 0;
    let mut p = Pair::new(270, a, config(false, &[IKE[0]], &[ESP[0]]));
    establish(&mut p, true);
    let old = p.a.child_sas()[0].clone();
    let inside: SocketAddr = "192.0.2.2:4500".parse().unwrap();
    let outside: SocketAddr = "198.51.100.9:31000".parse().unwrap();
    assert_eq!(old.remote_addr, inside);
    // B's NAT mapping changes; its next request (DPD) comes from elsewhere.
    p.nat_b = Some((inside, outside));
    p.run_for(40_000);
    assert_eq!(p.a.stats().peer_moved, 1);
    assert!(p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::PeerMoved { remote, .. } if *remote == outside)));
    let k = &p.a.child_sas()[0];
    assert_ne!(k.id, old.id, "rekeyed onto the new address");
    assert_eq!(k.remote_addr, outside);
    assert_eq!(
        k.udp_encap,
        Some(UdpEncap {
            local_port: 4500,
            remote_port: 31000
        })
    );
    assert_children_match(&p);
}

#[test]
fn ike_child_no_proposal_chosen_in_ike_auth_is_counted() {
    let a = config(true, &[IKE[0]], &["aes128gcm16"]);
    let b = config(false, &[IKE[0]], &["aes256gcm16"]);
    let mut p = Pair::new(280, a, b);
    p.a.initiate(p.now);
    p.run_for(5_000);
    assert_eq!(p.b.established_ike_sas().len(), 1);
    assert_eq!(p.b.stats().child_no_proposal_chosen, 1);
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::ChildSaFailed {
            notify: NotifyType::NO_PROPOSAL_CHOSEN,
            ..
        }
    )));
}

/// A refused IKE_SA_INIT proposal leaves one log line naming what the peer
/// offered (IANA transform IDs), so an operator can tell a misconfigured
/// peer from noise; a burst of refusals leaves one line a second.
#[test]
fn ike_refused_ike_proposal_is_logged_with_the_offer() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Captured::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let a = config(true, &[IKE[0]], &["aes128gcm16"]);
        let b = config(false, &[IKE[1]], &["aes128gcm16"]);
        let mut p = Pair::new(281, a, b);
        p.a.initiate(p.now);
        p.run_for(1_000);
        assert!(p.b.stats().no_proposal_chosen >= 1);
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no acceptable IKE SA proposal"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("#1 IKE ENCR="), "{}", lines[0]);
}

/// IKE_SA_INIT requests breaking a rule are counted by rule: a missing
/// Nonce is answered INVALID_SYNTAX, an out-of-range one dropped (§2.10).
#[test]
fn ike_init_request_violations_are_counted_by_rule() {
    let mut p = Pair::with(242, &[IKE[0]], &[ESP[0]]);
    p.a.initiate(p.now);
    let req = p.a.poll_transmit().unwrap();
    let m = Message::decode(&req.payload).unwrap();
    let variant = |spi_i: u64, f: &dyn Fn(&mut Vec<u8>) -> bool| {
        let mut m = m.clone();
        m.header.spi_i = spi_i;
        m.payloads.retain_mut(|x| match x {
            Payload::Nonce(n) => f(n),
            _ => true,
        });
        Transmit {
            payload: m.encode().unwrap(),
            ..req.clone()
        }
    };
    let no_nonce = variant(0x1111, &|_| false);
    deliver_to(&mut p.b, p.now, &no_nonce);
    let r = p.b.poll_transmit().expect("answered");
    let rm = Message::decode(&r.payload).unwrap();
    assert!(
        has_notify(&rm.payloads, NotifyType::INVALID_SYNTAX),
        "{rm:?}"
    );
    let short = variant(0x2222, &|n| {
        n.truncate(8);
        true
    });
    deliver_to(&mut p.b, p.now, &short);
    assert!(p.b.poll_transmit().is_none(), "dropped without an answer");
    let by_rule = &p.b.stats().protocol_errors;
    assert_eq!(by_rule.get(ProtocolError::MissingNonce), 1);
    assert_eq!(by_rule.get(ProtocolError::InitNonceLength), 1);
    assert_eq!(p.b.stats().malformed, 2);
    assert_eq!(p.b.ike_sa_count(), 0);
}
