//! Engine tests without a network: two engines back to back.

mod cert;
mod cp;
mod decode;
mod flood;
mod fragments;
mod redirect;
mod rogue;
mod template;
pub(crate) mod util;

use proptest::prelude::*;

use super::message::*;
use super::*;
use util::*;

pub(crate) const IKE: [&str; 4] = [
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha384-x25519",
    "aes256gcm16-prfsha384-modp2048",
    "aes128-sha256-modp2048",
];
pub(crate) const ESP: [&str; 4] = [
    "aes128gcm16",
    "aes256gcm16",
    "aes128-sha256",
    "chacha20poly1305",
];

fn establish(p: &mut Pair, a_initiates: bool) {
    if a_initiates {
        p.a.initiate(p.now);
    } else {
        p.b.initiate(p.now);
    }
    assert!(
        p.run_until(60_000, |p| p.up()),
        "no Child SA; A {:?} B {:?}",
        p.ev_a,
        p.ev_b
    );
    assert_children_match(p);
}

#[test]
fn ike_every_proposal_combination_establishes_both_ways() {
    let mut seed = 1;
    for ike in IKE {
        for esp in ESP {
            for a_initiates in [true, false] {
                seed += 1;
                let mut p = Pair::with(seed, &[ike], &[esp]);
                establish(&mut p, a_initiates);
                assert_eq!(p.a.established_ike_sas().len(), 1);
                assert_eq!(p.b.established_ike_sas().len(), 1);
                assert!(p.ev_a.iter().any(|e| matches!(e, IkeEvent::IkeSaUp { .. })));
                let k = &p.a.child_sas()[0];
                assert_eq!(k.algorithm, EspProposal::parse(esp).unwrap().algorithm);
                assert_eq!(k.udp_encap, None, "no NAT, not forced");
                assert_eq!(k.local_ts, config(true, &[ike], &[esp]).local_ts);
            }
        }
    }
}

#[test]
fn ike_establishes_under_loss_duplication_and_reordering() {
    for seed in 100..112 {
        let mut p = Pair::with(
            seed,
            &[IKE[(seed % 4) as usize]],
            &[ESP[(seed % 3) as usize]],
        );
        p.impair = Impair {
            loss: 20,
            dup: 20,
            jitter_ms: 300,
            b_silent: false,
        };
        establish(&mut p, seed % 2 == 0);
        // and a rekey of each kind still converges over the lossy network
        let id = p.a.child_sas()[0].id;
        p.a.rekey_child(p.now, id).unwrap();
        assert!(p.run_until(60_000, |p| p.up() && p.a.child_sas()[0].id != id));
        p.run_for(20_000);
        assert_children_match(&p);
    }
}

#[test]
fn ike_responder_replays_cached_response_without_reprocessing() {
    let mut p = Pair::with(7, &[IKE[0]], &[ESP[0]]);
    p.impair.dup = 100;
    establish(&mut p, true);
    p.run_for(1_000);
    assert!(p.b.stats().replayed_responses >= 2, "{:?}", p.b.stats());
    let ups = p
        .ev_b
        .iter()
        .filter(|e| matches!(e, IkeEvent::ChildSaUp(_)))
        .count();
    assert_eq!(
        ups, 1,
        "duplicate IKE_AUTH must not create a second Child SA"
    );
    assert_children_match(&p);
}

#[test]
fn ike_forced_encapsulation_floats_to_4500() {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    a.force_encap = true;
    let mut p = Pair::new(9, a, config(false, &[IKE[0]], &[ESP[0]]));
    establish(&mut p, true);
    for k in p.a.child_sas().iter().chain(p.b.child_sas().iter()) {
        assert_eq!(
            k.udp_encap,
            Some(UdpEncap {
                local_port: 4500,
                remote_port: 4500
            })
        );
    }
    // IKE_SA_INIT on 500 without marker, IKE_AUTH on 4500 with it.
    assert!(!p.sent[0].1.non_esp_marker && p.sent[0].1.local.port() == 500);
    let auth = p
        .sent
        .iter()
        .find(|(a, t)| *a && t.local.port() == 4500)
        .unwrap();
    assert!(auth.1.non_esp_marker);
    assert_eq!(&auth.1.datagram()[..4], &[0, 0, 0, 0]);
}

#[test]
fn ike_initial_contact_replaces_old_sas_of_the_peer() {
    let mut p = Pair::with(16, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let old = p.b.established_ike_sas()[0];
    // A restarts (loses its state) and connects again with INITIAL_CONTACT.
    p.a = Endpoint::new(config(true, &[IKE[0]], &[ESP[0]]), rng(99)).unwrap();
    p.a.initiate(p.now);
    assert!(p.run_until(10_000, |p| p.a.child_sas().len() == 1));
    assert!(p.ev_b.iter().any(
        |e| matches!(e, IkeEvent::IkeSaDown { ike, reason: DownReason::Replaced } if *ike == old)
    ));
    assert_eq!(p.b.established_ike_sas().len(), 1);
    assert_children_match(&p);
}

#[test]
fn ike_invalid_ke_payload_retry_with_requested_group() {
    let a = config(true, &["aes128gcm16-prfsha256-ecp256-modp2048"], &[ESP[0]]);
    let b = config(false, &["aes128gcm16-prfsha256-modp2048"], &[ESP[0]]);
    let mut p = Pair::new(11, a, b);
    establish(&mut p, true);
    assert_eq!(p.b.stats().invalid_ke_sent, 1);
}

#[test]
fn ike_no_common_proposal_fails_cleanly() {
    let a = config(true, &[IKE[0]], &[ESP[0]]);
    let b = config(false, &[IKE[1]], &[ESP[0]]);
    let mut p = Pair::new(12, a, b);
    p.a.initiate(p.now);
    let start = p.now;
    let down = |p: &Pair| {
        p.ev_a
            .iter()
            .any(|e| matches!(e, IkeEvent::IkeSaDown { .. }))
    };
    assert!(p.run_until(30_000, down));
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::Negotiation(NotifyType::NO_PROPOSAL_CHOSEN),
            ..
        }
    )));
    // §2.21.1: the unprotected error ends the attempt only once the
    // retransmissions (0.5+1+2+4+8 s) found no genuine response.
    assert!(p.now.0 - start.0 >= 15_000, "{}", p.now.0 - start.0);
    assert_eq!(p.b.stats().no_proposal_chosen, 5);
    assert_eq!(p.a.stats().init_errors_ignored, 5);
}

#[test]
fn ike_wrong_psk_is_authentication_failed() {
    let a = config(true, &[IKE[0]], &[ESP[0]]);
    let mut b = config(false, &[IKE[0]], &[ESP[0]]);
    b.psk = crate::crypto::SecretBytes::new(b"another secret".to_vec());
    let mut p = Pair::new(13, a, b);
    p.a.initiate(p.now);
    p.run_for(5_000);
    let failed = |ev: &[IkeEvent]| {
        ev.iter().any(|e| {
            matches!(
                e,
                IkeEvent::IkeSaDown {
                    reason: DownReason::AuthenticationFailed,
                    ..
                }
            )
        })
    };
    assert!(
        failed(&p.ev_a) && failed(&p.ev_b),
        "{:?} {:?}",
        p.ev_a,
        p.ev_b
    );
    assert!(p.a.child_sas().is_empty() && p.b.child_sas().is_empty());
    assert_eq!(p.b.stats().auth_failures, 1);
}

#[test]
fn ike_ts_narrowing_and_unacceptable() {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    a.local_ts = vec![crate::config::parse_traffic_selector("10.1.0.0/16").unwrap()];
    let mut p = Pair::new(14, a, config(false, &[IKE[0]], &[ESP[0]]));
    establish(&mut p, true);
    let want = crate::config::parse_traffic_selector("10.1.0.0/24").unwrap();
    assert_eq!(
        p.a.child_sas()[0].local_ts,
        vec![want],
        "narrowed by the responder"
    );

    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    a.remote_ts = vec![crate::config::parse_traffic_selector("172.16.0.0/12").unwrap()];
    let mut p = Pair::new(15, a, config(false, &[IKE[0]], &[ESP[0]]));
    p.a.initiate(p.now);
    p.run_for(5_000);
    assert_eq!(p.a.established_ike_sas().len(), 1, "IKE SA stays up");
    assert!(p.a.child_sas().is_empty());
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::ChildSaFailed {
            notify: NotifyType::TS_UNACCEPTABLE,
            ..
        }
    )));
}

#[test]
fn ike_child_rekey_is_make_before_break() {
    for pfs in [false, true] {
        let esp = if pfs {
            "aes128gcm16-ecp256"
        } else {
            "aes128gcm16"
        };
        let mut p = Pair::with(20 + pfs as u64, &[IKE[0]], &[esp]);
        establish(&mut p, true);
        let old = p.a.child_sas()[0].clone();
        p.a.rekey_child(p.now, old.id).unwrap();
        assert!(p.run_until(10_000, |p| p.up() && p.a.child_sas()[0].id != old.id));
        p.run_for(2_000);
        assert_children_match(&p);
        let new = &p.a.child_sas()[0];
        assert_ne!(new.inbound, old.inbound);
        // Event order on A: Rekeyed (install new) before Deleted (old).
        let r = p
            .ev_a
            .iter()
            .position(|e| matches!(e, IkeEvent::ChildSaRekeyed { old: o, .. } if *o == old.id));
        let d = p
            .ev_a
            .iter()
            .position(|e| matches!(e, IkeEvent::ChildSaDeleted { id, .. } if *id == old.id));
        assert!(r.unwrap() < d.unwrap());
        let rb = p
            .ev_b
            .iter()
            .position(|e| matches!(e, IkeEvent::ChildSaRekeyed { .. }));
        let db = p
            .ev_b
            .iter()
            .position(|e| matches!(e, IkeEvent::ChildSaDeleted { .. }));
        assert!(rb.unwrap() < db.unwrap());
    }
}

#[test]
fn ike_simultaneous_child_rekey_converges_to_one_sa() {
    for seed in 30..40 {
        let mut p = Pair::with(seed, &[IKE[(seed % 4) as usize]], &["aes256gcm16"]);
        establish(&mut p, seed % 2 == 0);
        let (ia, ib) = (p.a.child_sas()[0].id, p.b.child_sas()[0].id);
        p.a.rekey_child(p.now, ia).unwrap();
        p.b.rekey_child(p.now, ib).unwrap();
        p.run_for(10_000);
        assert_eq!(p.a.child_sas().len(), 1, "seed {seed}: {:?}", p.ev_a);
        assert_children_match(&p);
        assert_ne!(p.a.child_sas()[0].id, ia);
        assert_ne!(p.b.child_sas()[0].id, ib);
        // It really was a collision: each side installed two new SAs
        // (its own and the peer's) and deleted the old and the redundant one.
        let rekeyed = |ev: &[IkeEvent]| {
            ev.iter()
                .filter(|e| matches!(e, IkeEvent::ChildSaRekeyed { .. }))
                .count()
        };
        let deleted = |ev: &[IkeEvent]| {
            ev.iter()
                .filter(|e| matches!(e, IkeEvent::ChildSaDeleted { .. }))
                .count()
        };
        assert_eq!((rekeyed(&p.ev_a), deleted(&p.ev_a)), (2, 2), "seed {seed}");
        assert_eq!((rekeyed(&p.ev_b), deleted(&p.ev_b)), (2, 2), "seed {seed}");
    }
}

#[test]
fn ike_sa_rekey_moves_children() {
    let mut p = Pair::with(40, &[IKE[1]], &[ESP[0]]);
    establish(&mut p, true);
    let old = p.a.established_ike_sas()[0];
    let child = p.a.child_sas()[0].id;
    p.a.rekey_ike(p.now, old).unwrap();
    p.run_for(5_000);
    let ike_a = p.a.established_ike_sas();
    assert_eq!(ike_a.len(), 1);
    assert_ne!(ike_a[0], old);
    assert_eq!(p.b.established_ike_sas().len(), 1);
    assert_eq!(p.a.child_sas()[0].id, child, "child survives the IKE rekey");
    assert_eq!(p.a.child_sas()[0].ike, ike_a[0]);
    assert!(!p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown { .. } | IkeEvent::ChildSaDeleted { .. }
    )));
    // The new IKE SA works: rekey the child over it.
    p.b.rekey_child(p.now, p.b.child_sas()[0].id).unwrap();
    p.run_for(5_000);
    assert_children_match(&p);
    assert_ne!(p.a.child_sas()[0].id, child);
}

#[test]
fn ike_simultaneous_ike_rekey_converges_to_one_sa() {
    for seed in 50..58 {
        let mut p = Pair::with(seed, &[IKE[(seed % 4) as usize]], &[ESP[0]]);
        establish(&mut p, seed % 2 == 0);
        let (oa, ob) = (p.a.established_ike_sas()[0], p.b.established_ike_sas()[0]);
        p.a.rekey_ike(p.now, oa).unwrap();
        p.b.rekey_ike(p.now, ob).unwrap();
        p.run_for(10_000);
        let (ia, ib) = (p.a.established_ike_sas(), p.b.established_ike_sas());
        assert_eq!(ia.len(), 1, "seed {seed}: {:?}", p.ev_a);
        assert_eq!(ib.len(), 1, "seed {seed}: {:?}", p.ev_b);
        assert!(ia[0] != oa && ib[0] != ob);
        assert_eq!(p.a.child_sas().len(), 1);
        assert_eq!(p.a.child_sas()[0].ike, ia[0]);
        assert_eq!(p.b.child_sas()[0].ike, ib[0]);
        // Both sides agree on which new IKE SA survived (same SPI pair).
        assert!(
            p.a.established_ike_sas().len() == 1
                && !p
                    .ev_a
                    .iter()
                    .any(|e| matches!(e, IkeEvent::IkeSaDown { .. }))
        );
        assert_children_match(&p);
        // still usable afterwards
        p.a.rekey_child(p.now, p.a.child_sas()[0].id).unwrap();
        p.run_for(5_000);
        assert_children_match(&p);
    }
}

#[test]
fn ike_lifetimes_trigger_rekeys_before_expiry() {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    let mut b = config(false, &[IKE[0]], &[ESP[0]]);
    for c in [&mut a, &mut b] {
        c.timers.child_lifetime_ms = 60_000;
        c.timers.ike_lifetime_ms = 150_000;
    }
    let mut p = Pair::new(60, a, b);
    establish(&mut p, true);
    p.run_for(600_000);
    assert_children_match(&p);
    assert_eq!(p.a.child_sas().len(), 1);
    assert_eq!(p.a.established_ike_sas().len(), 1);
    let rekeys = p
        .ev_a
        .iter()
        .filter(|e| matches!(e, IkeEvent::ChildSaRekeyed { .. }))
        .count();
    assert!(
        rekeys >= 9,
        "{rekeys} child rekeys in 600 s with 60 s lifetime"
    );
    assert!(
        p.ev_a
            .iter()
            .filter(|e| matches!(e, IkeEvent::IkeSaRekeyed { .. }))
            .count()
            >= 4
    );
    assert!(!p
        .ev_a
        .iter()
        .chain(&p.ev_b)
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. })));
}

#[test]
fn ike_silent_peer_is_declared_dead() {
    let mut p = Pair::with(70, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    p.impair.b_silent = true;
    let start = p.now;
    let dead = p.run_until(120_000, |p| {
        p.ev_a.iter().any(|e| {
            matches!(
                e,
                IkeEvent::IkeSaDown {
                    reason: DownReason::PeerDead,
                    ..
                }
            )
        })
    });
    assert!(dead);
    // DPD after 30 s of silence, then 0.5+1+2+4+8 s of retransmissions,
    // the next hop resolved afresh, and as many again.
    let waited = p.now.0 - start.0;
    assert!((60_500..=62_500).contains(&waited), "{waited}");
    assert!(p.a.child_sas().is_empty());
    assert!(p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::ChildSaDeleted { .. })));
    assert_eq!(p.a.stats().retransmits, 8);
    assert_eq!(p.a.stats().peer_reresolves, 1);
}

#[test]
fn ike_an_unanswered_dpd_reresolves_the_peer_before_declaring_it_dead() {
    let mut p = Pair::with(71, &[IKE[0]], &[ESP[0]]);
    establish(&mut p, true);
    let remote = p.sent.iter().find(|(a, _)| *a).unwrap().1.remote;
    // The peer is unreachable (its neighbour entry points elsewhere).
    p.impair.b_silent = true;
    let unresponsive = |p: &Pair| {
        p.ev_a
            .iter()
            .filter(|e| matches!(e, IkeEvent::PeerUnresponsive { .. }))
            .count()
    };
    assert!(p.run_until(120_000, |p| unresponsive(p) == 1));
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::PeerUnresponsive { remote: r, .. } if *r == remote
    )));
    assert!(!p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. })));
    assert_eq!(p.a.child_sas().len(), 1, "nothing deleted yet");
    // The re-resolution fixes the path: the next retransmission is
    // answered and the tunnel stays.
    p.impair.b_silent = false;
    p.run_for(120_000);
    assert!(!p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown { .. } | IkeEvent::ChildSaDeleted { .. }
    )));
    assert!(p.up());
    assert_eq!(p.a.stats().peers_dead, 0);
    // A later silence gets its own re-resolution, then the peer is dead.
    p.impair.b_silent = true;
    assert!(p.run_until(120_000, |p| p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. }))));
    assert_eq!(unresponsive(&p), 2);
    assert_eq!(p.a.stats().peers_dead, 1);
}

#[test]
fn ike_cookie_under_half_open_flood_and_legit_initiator_succeeds() {
    let mut b_cfg = config(false, &[IKE[0]], &[ESP[0]]);
    b_cfg.cookie_threshold = 5;
    let mut b = Endpoint::new(b_cfg, rng(81)).unwrap();
    let now = Timestamp(1_000);
    // 20 spoofed initiators that never complete.
    for i in 0..20u64 {
        let mut cfg = config(true, &[IKE[0]], &[ESP[0]]);
        cfg.local_addr = format!("198.51.100.{}:500", i + 1).parse().unwrap();
        let mut flood = Endpoint::new(cfg, rng(1000 + i)).unwrap();
        flood.initiate(now);
        let t = flood.poll_transmit().unwrap();
        b.handle_datagram(now, t.remote, t.local, &t.payload);
    }
    assert_eq!(b.stats().cookies_sent, 15, "{:?}", b.stats());
    let mut p = Pair::new(
        80,
        config(true, &[IKE[0]], &[ESP[0]]),
        config(false, &[IKE[0]], &[ESP[0]]),
    );
    p.b = b;
    establish(&mut p, true);
    assert_eq!(
        p.b.stats().cookies_sent,
        16,
        "the legitimate one was asked too"
    );
    // The COOKIE retry carries the cookie as the first payload (§2.6).
    let retry = p.sent.iter().filter(|(a, _)| *a).nth(1).unwrap();
    let m = Message::decode(&retry.1.payload).unwrap();
    assert!(matches!(&m.payloads[0], Payload::Notify(n) if n.ty == NotifyType::COOKIE));
}

/// A captured IKE_AUTH request from A and the established pair.
fn established_with_auth() -> (Pair, Transmit) {
    let mut p = Pair::with(90, &[IKE[3]], &[ESP[2]]);
    establish(&mut p, true);
    let auth = p
        .sent
        .iter()
        .find(|(a, t)| {
            *a && Message::decode(&t.payload).unwrap().header.exchange == ExchangeType::IKE_AUTH
        })
        .unwrap()
        .1
        .clone();
    (p, auth)
}

fn feed_b(p: &mut Pair, t: &Transmit, bytes: &[u8]) {
    p.b.handle_datagram(p.now, t.remote, t.local, bytes);
}

#[test]
fn ike_malformed_messages_are_rejected_and_counted() {
    let (mut p, auth) = established_with_auth();
    let s0 = p.b.stats().clone();
    let b = &auth.payload;
    // truncated
    feed_b(&mut p, &auth, &b[..b.len() - 1]);
    feed_b(&mut p, &auth, &b[..10]);
    assert_eq!(p.b.stats().malformed, s0.malformed + 2);
    // bad length field
    let mut bad = b.clone();
    bad[27] ^= 0x40;
    feed_b(&mut p, &auth, &bad);
    assert_eq!(p.b.stats().malformed, s0.malformed + 3);
    // bad ICV: dropped silently, counted
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    feed_b(&mut p, &auth, &bad);
    assert_eq!(p.b.stats().integrity_failures, s0.integrity_failures + 1);
    // wrong SPIs
    let mut bad = b.clone();
    bad[8] ^= 0xff;
    feed_b(&mut p, &auth, &bad);
    let mut bad = b.clone();
    bad[0] ^= 0xff;
    feed_b(&mut p, &auth, &bad);
    assert_eq!(p.b.stats().unknown_spi, s0.unknown_spi + 2);
    // none of this produced a response
    assert!(p.b.poll_transmit().is_none());

    // An unknown critical payload in IKE_SA_INIT: UNSUPPORTED_CRITICAL_PAYLOAD.
    let init = p.sent[0].1.clone();
    let mut m = Message::decode(&init.payload).unwrap();
    m.header.spi_i ^= 1;
    m.payloads.push(Payload::Unknown {
        ty: PayloadType(200),
        critical: false,
        body: vec![1],
    });
    let mut bytes = m.encode().unwrap();
    // set the critical bit of the last payload's generic header
    let last = bytes.len() - 5;
    bytes[last + 1] = 0x80;
    feed_b(&mut p, &init, &bytes);
    assert_eq!(
        p.b.stats().unsupported_critical,
        s0.unsupported_critical + 1
    );
    let r = p.b.poll_transmit().unwrap();
    let rm = Message::decode(&r.payload).unwrap();
    assert!(matches!(&rm.payloads[0], Payload::Notify(n)
        if n.ty == NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD && n.data == [200]));
    // the established SA is unharmed
    p.run_for(1_000);
    assert_children_match(&p);
}

#[test]
fn ike_error_kinds_map_to_one_notify_each() {
    use crate::crypto::DhGroup;
    let cases = [
        (IkeError::NoProposalChosen, NotifyType::NO_PROPOSAL_CHOSEN),
        (
            IkeError::InvalidKe(DhGroup::Ecp256),
            NotifyType::INVALID_KE_PAYLOAD,
        ),
        (
            IkeError::AuthenticationFailed,
            NotifyType::AUTHENTICATION_FAILED,
        ),
        (IkeError::TsUnacceptable, NotifyType::TS_UNACCEPTABLE),
        (IkeError::ChildSaNotFound, NotifyType::CHILD_SA_NOT_FOUND),
        (IkeError::TemporaryFailure, NotifyType::TEMPORARY_FAILURE),
        (IkeError::NoAdditionalSas, NotifyType::NO_ADDITIONAL_SAS),
        (
            IkeError::Protocol(ProtocolError::MissingNonce),
            NotifyType::INVALID_SYNTAX,
        ),
        (IkeError::Internal, NotifyType::INVALID_SYNTAX),
        (
            IkeError::Decode(DecodeError::Truncated),
            NotifyType::INVALID_SYNTAX,
        ),
        (
            IkeError::Decode(DecodeError::UnsupportedCriticalPayload(9)),
            NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
        ),
    ];
    for (e, n) in cases {
        assert_eq!(e.notify().unwrap().0, n, "{e:?}");
    }
    assert_eq!(
        IkeError::InvalidKe(DhGroup::Ecp256).notify().unwrap().1,
        vec![0, 19]
    );
    assert_eq!(
        IkeError::IntegrityCheckFailed.notify(),
        None,
        "dropped silently"
    );
    // Every protocol violation maps to exactly one answer (or a silent
    // drop), the same through IkeError, and has its own counter name.
    let mut names = std::collections::HashSet::new();
    for e in ProtocolError::ALL {
        let want = match e {
            ProtocolError::InitNonceLength | ProtocolError::UnexpectedResponse => None,
            _ => Some(NotifyType::INVALID_SYNTAX),
        };
        assert_eq!(e.notify(), want, "{e:?}");
        assert_eq!(
            IkeError::Protocol(e).notify().map(|(n, _)| n),
            want,
            "{e:?}"
        );
        assert!(
            names.insert(e.name()),
            "duplicate counter name {}",
            e.name()
        );
        let lower = e.name().chars().all(|c| c.is_ascii_lowercase() || c == '_');
        assert!(lower, "{}", e.name());
    }
    assert_eq!(
        IkeError::from(crate::crypto::CryptoError::InvalidPublicValue),
        IkeError::Protocol(ProtocolError::InvalidKePublicValue)
    );
    let mut counts = crate::ProtocolErrorCounts::default();
    counts.count(ProtocolError::MissingKe);
    counts.count(ProtocolError::MissingKe);
    assert_eq!(counts.get(ProtocolError::MissingKe), 2);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert_eq!(counts.iter().count(), ProtocolError::ALL.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ike_arbitrary_bytes_never_panic_the_responder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = Endpoint::new(config(false, &[IKE[0]], &[ESP[0]]), rng(5)).unwrap();
        let t = Timestamp(0);
        b.handle_datagram(t, B_ADDR.parse().unwrap(), A_ADDR.parse().unwrap(), &bytes);
        b.handle_timeout(Timestamp(100_000));
        prop_assert_eq!(b.stats().rx_datagrams, 1);
    }

    #[test]
    fn ike_mutated_messages_never_panic_an_established_responder(
        which in 0usize..4, pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in 0usize..40
    ) {
        let (mut p, auth) = established_with_auth();
        let pick = p.sent.iter().filter(|(a, _)| *a).map(|(_, t)| t.clone()).nth(which).unwrap_or(auth);
        let mut bytes = pick.payload.clone();
        let i = pos.index(bytes.len());
        bytes[i] ^= val | 1;
        bytes.truncate(bytes.len().saturating_sub(cut));
        feed_b(&mut p, &pick, &bytes);
        p.run_for(2_000);
        prop_assert_eq!(p.b.child_sas().len(), 1);
    }
}
