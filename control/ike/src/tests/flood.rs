//! IKE_SA_INIT floods against a responder (RFC 7296 §2.6, RFC 8019).

use std::net::SocketAddr;

use super::util::*;
use super::{ESP, IKE};
use crate::message::*;
use crate::*;

/// An IKE_SA_INIT request from a throwaway initiator, to replay from
/// spoofed sources with fresh SPIs.
fn init_template() -> Vec<u8> {
    let mut e = Endpoint::new(config(true, &[IKE[0]], &[ESP[0]]), rng(7)).unwrap();
    e.initiate(Timestamp(0));
    e.poll_transmit().unwrap().payload
}

/// Sends `n` spoofed IKE_SA_INITs (sources 10.x.y.z, random SPIs) to B.
fn spoof(p: &mut Pair, template: &[u8], first: u32, n: u32) {
    let local: SocketAddr = B_ADDR.parse().unwrap();
    for i in first..first + n {
        let [_, x, y, z] = (i + 1).to_be_bytes();
        let src = SocketAddr::from(([10, x, y, z], 500));
        let mut m = template.to_vec();
        m[..8].copy_from_slice(&(u64::from(i) * 0x9e37_79b9 + 1).to_be_bytes());
        p.b.handle_datagram(p.now, local, src, &m);
    }
}

/// An initiator at `addr` that answers B's cookie (so its address is
/// proven) and then never finishes: returns whether B made it an SA.
fn proven_half_open(b: &mut Endpoint, addr: &str, seed: u64, now: Timestamp) -> bool {
    let mut cfg = config(true, &[IKE[0]], &[ESP[0]]);
    cfg.local_addr = addr.parse().unwrap();
    let mut att = Endpoint::new(cfg, rng(seed)).unwrap();
    att.initiate(now);
    let before = b.half_open();
    for _ in 0..2 {
        let Some(t) = att.poll_transmit() else { break };
        b.handle_datagram(now, t.remote, t.local, &t.payload);
        // Only B's answer to this initiator (B may have queued others').
        while let Some(r) = b.poll_transmit() {
            if r.remote == t.local {
                att.handle_datagram(now, r.remote, r.local, &r.payload);
            }
        }
    }
    b.half_open() > before
}

/// 2,000 spoofed sources flood B while A sets up a tunnel with it and then
/// rekeys both the Child SA and the IKE SA; sources that answer cookies are
/// held to the per-source limit and everyone to the global one. The
/// half-open count never exceeds the limits.
#[test]
fn ike_spoofed_init_flood_legit_peer_sets_up_and_rekeys() {
    let mut b_cfg = config(false, &[IKE[0]], &[ESP[0]]);
    b_cfg.cookie_threshold = 10;
    b_cfg.half_open_per_source = 3;
    b_cfg.half_open_max = 20;
    let mut p = Pair::new(110, config(true, &[IKE[0]], &[ESP[0]]), b_cfg);
    let template = init_template();
    p.a.initiate(p.now);
    let mut sent = 0;
    for _ in 0..10 {
        spoof(&mut p, &template, sent, 100);
        sent += 100;
        assert!(p.b.half_open() <= 11, "{}", p.b.half_open());
        p.run_for(200);
    }
    assert!(
        p.run_until(30_000, |p| p.up()),
        "{:?} {:?}",
        p.ev_a,
        p.b.stats()
    );
    assert_children_match(&p);
    let st = p.b.stats().clone();
    assert!(st.cookies_sent >= 990, "{st:?}");
    assert_eq!(st.ike_sa_established, 1);

    // A source that proves its address: three half-open SAs, no more.
    let admitted: Vec<bool> = (0..6)
        .map(|i| proven_half_open(&mut p.b, "203.0.113.9:500", 500 + i, p.now))
        .collect();
    assert_eq!(admitted, [true, true, true, false, false, false]);
    assert_eq!(p.b.stats().half_open_refused_per_source, 3);
    // Other proven sources until the global limit.
    for i in 0..4u64 {
        let addr = format!("203.0.113.{}:500", 20 + i);
        for j in 0..3 {
            proven_half_open(&mut p.b, &addr, 600 + i * 10 + j, p.now);
        }
    }
    assert_eq!(p.b.half_open(), 20);
    assert!(p.b.stats().half_open_refused_max > 0, "{:?}", p.b.stats());

    // The established tunnel rekeys through all of it.
    let (child, ike) = (p.a.child_sas()[0].id, p.a.established_ike_sas()[0]);
    p.a.rekey_child(p.now, child).unwrap();
    for _ in 0..10 {
        spoof(&mut p, &template, sent, 100);
        sent += 100;
        assert!(p.b.half_open() <= 20);
        p.run_for(200);
    }
    p.a.rekey_ike(p.now, p.a.established_ike_sas()[0]).unwrap();
    p.run_for(2_000);
    assert_children_match(&p);
    assert_eq!(p.a.child_sas().len(), 1);
    assert_ne!(p.a.child_sas()[0].id, child, "Child SA rekeyed");
    assert_ne!(p.a.established_ike_sas(), [ike], "IKE SA rekeyed");
    assert_eq!(p.a.established_ike_sas().len(), 1);
    assert!(p.b.half_open() <= 20);
    // Spoofed half-open SAs time out; the count goes back to zero.
    p.run_for(40_000);
    assert_eq!(p.b.half_open(), 0);
}

/// B always demands a cookie; A's retry (with the cookie) reaches B
/// `delay_ms` after the cookie was issued. Returns whether B accepted it.
fn cookie_accepted_after(delay_ms: u64) -> (bool, Stats) {
    let mut b_cfg = config(false, &[IKE[0]], &[ESP[0]]);
    b_cfg.cookie_threshold = 0;
    b_cfg.cookie_secret_lifetime_ms = 10_000;
    let mut b = Endpoint::new(b_cfg, rng(120)).unwrap();
    let mut a = Endpoint::new(config(true, &[IKE[0]], &[ESP[0]]), rng(121)).unwrap();
    let t0 = Timestamp(1_000);
    a.initiate(t0);
    let init = a.poll_transmit().unwrap();
    b.handle_datagram(t0, init.remote, init.local, &init.payload);
    let cookie = b.poll_transmit().unwrap();
    let m = Message::decode(&cookie.payload).unwrap();
    assert!(m.notify(NotifyType::COOKIE).is_some());
    a.handle_datagram(t0, cookie.remote, cookie.local, &cookie.payload);
    let retry = a.poll_transmit().unwrap();
    let later = t0.plus(delay_ms);
    b.handle_datagram(later, retry.remote, retry.local, &retry.payload);
    (b.half_open() == 1, b.stats().clone())
}

/// RFC 7296 §2.6: the secret changes every period; a cookie made with the
/// previous secret is still good, one made two secrets ago is not.
#[test]
fn ike_cookie_secret_rotates_previous_accepted_older_refused() {
    let (ok, st) = cookie_accepted_after(2_000);
    assert!(ok, "{st:?}");
    let (ok, st) = cookie_accepted_after(15_000);
    assert!(ok, "one rotation later: {st:?}");
    assert_eq!(st.cookie_secret_rotations, 1);
    let (ok, st) = cookie_accepted_after(25_000);
    assert!(!ok, "two rotations later: {st:?}");
    assert_eq!((st.cookies_invalid, st.cookies_sent), (1, 2));
}
