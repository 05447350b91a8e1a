//! Remote access (RFC 7296 §3.15): a responder leasing virtual IPs from a
//! pool to an initiator that asks for them.

use std::net::IpAddr;

use super::*;
use crate::pool::{Family, Pool, PoolAttributes, SharedPool};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(ranges: &[&str]) -> SharedPool {
    let attrs = PoolAttributes {
        dns: vec![ip("10.2.0.53"), ip("fd00:2::53")],
        subnets: vec!["10.2.0.0/24".parse().unwrap()],
    };
    Pool::parse("ra", ranges, attrs).unwrap().shared()
}

/// A (road warrior) asks for an IPv4 and an IPv6 address and offers any
/// source; B hands them out of `pool`.
fn pair(seed: u64, pool: &SharedPool) -> Pair {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    a.request_vips = vec![Family::V4, Family::V6];
    a.local_ts = vec![
        crate::config::parse_traffic_selector("0.0.0.0/0").unwrap(),
        crate::config::parse_traffic_selector("::/0").unwrap(),
    ];
    let mut b = config(false, &[IKE[0]], &[ESP[0]]);
    b.pools = vec![pool.clone()];
    Pair::new(seed, a, b)
}

fn host(a: &str) -> TrafficSelector {
    crate::config::parse_traffic_selector(a).unwrap()
}

/// (online, offline) leases of the pool.
fn counts(p: &SharedPool) -> (usize, usize) {
    let p = locked(p);
    (p.online(), p.offline())
}

fn locked(p: &SharedPool) -> std::sync::MutexGuard<'_, Pool> {
    p.lock().unwrap()
}

/// B's IKE_AUTH response, decrypted.
fn auth_response(p: &Pair) -> Vec<Payload> {
    let id = p.b.established_ike_sas()[0];
    let rx = sk_cipher(&p.b, id, true);
    let (_, t) = p
        .sent
        .iter()
        .find(|(from_a, t)| {
            !from_a
                && Header::decode(&t.payload)
                    .is_ok_and(|(h, _)| h.exchange == ExchangeType::IKE_AUTH)
        })
        .expect("an IKE_AUTH response");
    open_sk(&rx, &t.payload).1
}

#[test]
fn ike_cp_responder_leases_addresses_and_narrows_tsi() {
    let pl = pool(&["10.3.0.0/24", "fd00:3::/120"]);
    let mut p = pair(70, &pl);
    establish(&mut p, true);
    let vips = vec![ip("10.3.0.1"), ip("fd00:3::1")];
    let ike_a = p.a.established_ike_sas()[0];
    let ike_b = p.b.established_ike_sas()[0];
    assert!(p.ev_a.contains(&IkeEvent::VirtualIps {
        ike: ike_a,
        addrs: vips.clone()
    }));
    assert!(p.ev_b.contains(&IkeEvent::VirtualIps {
        ike: ike_b,
        addrs: vips.clone()
    }));
    assert_eq!(p.a.virtual_ips(ike_a), vips);
    assert_eq!(p.b.virtual_ips(ike_b), vips);
    // The client's side of the Child SA is exactly its addresses.
    let want = vec![host("10.3.0.1/32"), host("fd00:3::1/128")];
    assert_eq!(p.b.child_sas()[0].remote_ts, want);
    assert_eq!(p.a.child_sas()[0].local_ts, want);
    // The CFG_REPLY carries the pool's DNS servers and subnets.
    let reply = auth_response(&p)
        .into_iter()
        .find_map(|x| match x {
            Payload::Cp(c) => Some(c),
            _ => None,
        })
        .expect("CFG_REPLY");
    assert_eq!(reply.cfg_type, CfgType::CFG_REPLY);
    assert_eq!(
        reply.attributes,
        vec![
            CfgAttribute::Ip4Address(Some("10.3.0.1".parse().unwrap())),
            CfgAttribute::Ip6Address(Some(("fd00:3::1".parse().unwrap(), 128))),
            CfgAttribute::Ip4Dns(Some("10.2.0.53".parse().unwrap())),
            CfgAttribute::Ip6Dns(Some("fd00:2::53".parse().unwrap())),
            CfgAttribute::Ip4Subnet(Some((
                "10.2.0.0".parse().unwrap(),
                "255.255.255.0".parse().unwrap()
            ))),
        ]
    );
    assert_eq!(locked(&pl).online(), 2);
    assert_eq!(p.b.stats().virtual_ips_assigned, 2);
    // A rekey of the Child SA by the client keeps to its addresses.
    p.a.rekey_child(p.now, p.a.child_sas()[0].id).unwrap();
    p.run_for(5_000);
    assert_children_match(&p);
    assert_eq!(p.b.child_sas()[0].remote_ts, want);
    // So does the IKE SA's rekey: the lease follows it.
    p.b.rekey_ike(p.now, ike_b).unwrap();
    p.run_for(5_000);
    let ike_b2 = p.b.established_ike_sas()[0];
    assert_ne!(ike_b2, ike_b);
    assert_eq!(p.b.virtual_ips(ike_b2), vips);
    assert!(!p
        .ev_b
        .iter()
        .any(|e| matches!(e, IkeEvent::VirtualIpsReleased { .. })));
    assert_eq!(locked(&pl).online(), 2);
}

#[test]
fn ike_cp_lease_released_on_delete_and_returned_on_reconnect() {
    let pl = pool(&["10.3.0.10-10.3.0.20"]);
    // Another client (another engine sharing the pool) holds .10.
    assert_eq!(
        locked(&pl).allocate("fqdn:other", Family::V4, None, Timestamp(0)),
        Some(ip("10.3.0.10"))
    );
    let mut p = pair(71, &pl);
    establish(&mut p, true);
    let ike_b = p.b.established_ike_sas()[0];
    assert_eq!(p.b.virtual_ips(ike_b), vec![ip("10.3.0.11")]);
    // No IPv6 in this pool: only the IPv4 address is narrowed to.
    assert_eq!(p.b.child_sas()[0].remote_ts, vec![host("10.3.0.11/32")]);
    p.a.terminate(p.now, p.a.established_ike_sas()[0]).unwrap();
    p.run_for(2_000);
    assert!(p.ev_b.contains(&IkeEvent::VirtualIpsReleased {
        ike: ike_b,
        addrs: vec![ip("10.3.0.11")]
    }));
    assert_eq!(counts(&pl), (1, 1));
    // Reconnecting, the same identity gets the same address.
    p.a = Endpoint::new(p.a.config().clone(), rng(171)).unwrap();
    establish(&mut p, true);
    let ike_b = p.b.established_ike_sas()[0];
    assert_eq!(p.b.virtual_ips(ike_b), vec![ip("10.3.0.11")]);
    // The client restarts without deleting: INITIAL_CONTACT replaces the
    // old IKE SA, and the new one takes its lease over.
    p.a = Endpoint::new(p.a.config().clone(), rng(172)).unwrap();
    p.a.initiate(p.now);
    assert!(p.run_until(10_000, |p| p.a.child_sas().len() == 1));
    assert!(p.ev_b.iter().any(
        |e| matches!(e, IkeEvent::IkeSaDown { ike, reason: DownReason::Replaced } if *ike == ike_b)
    ));
    let ike_b3 = p.b.established_ike_sas()[0];
    assert_ne!(ike_b3, ike_b);
    assert_eq!(p.b.virtual_ips(ike_b3), vec![ip("10.3.0.11")]);
    assert_eq!(counts(&pl), (2, 0));
    // The engine going away gives its leases back.
    drop(p);
    assert_eq!(counts(&pl), (1, 1));
}

#[test]
fn ike_cp_exhausted_pool_is_internal_address_failure() {
    let pl = pool(&["10.3.0.5-10.3.0.5"]);
    locked(&pl).allocate("fqdn:other", Family::V4, None, Timestamp(0));
    let mut p = pair(72, &pl);
    p.a.initiate(p.now);
    p.run_for(5_000);
    assert_eq!(p.b.established_ike_sas().len(), 1, "the IKE SA stays");
    assert!(p.b.child_sas().is_empty() && p.a.child_sas().is_empty());
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::ChildSaFailed {
            notify: NotifyType::INTERNAL_ADDRESS_FAILURE,
            ..
        }
    )));
    assert_eq!(p.b.stats().cp_address_failures, 1);
    assert_eq!(locked(&pl).stats().exhausted, 1);
    let ike_b = p.b.established_ike_sas()[0];
    assert!(p.b.virtual_ips(ike_b).is_empty());
}

#[test]
fn ike_cp_tunnel_with_pool_requires_a_cfg_request() {
    let pl = pool(&["10.3.0.0/24"]);
    let mut p = pair(73, &pl);
    let mut a = p.a.config().clone();
    a.request_vips.clear();
    p.a.set_config(a).unwrap();
    p.a.initiate(p.now);
    p.run_for(5_000);
    assert!(p.b.child_sas().is_empty());
    assert!(p.ev_a.iter().any(|e| matches!(
        e,
        IkeEvent::ChildSaFailed {
            notify: NotifyType::FAILED_CP_REQUIRED,
            ..
        }
    )));
    assert_eq!(p.b.stats().cp_required_missing, 1);
    assert_eq!(locked(&pl).online(), 0);
}

#[test]
fn ike_cp_ignored_without_pools() {
    // A client asking for an address from a tunnel without pools gets a
    // Child SA on the configured selectors and no CFG_REPLY (§3.15).
    let mut p = Pair::with(74, &[IKE[0]], &[ESP[0]]);
    let mut a = p.a.config().clone();
    a.request_vips = vec![Family::V4];
    p.a.set_config(a).unwrap();
    establish(&mut p, true);
    assert!(!auth_response(&p)
        .iter()
        .any(|x| matches!(x, Payload::Cp(_))));
    assert!(p.a.virtual_ips(p.a.established_ike_sas()[0]).is_empty());
}

/// A client that knows its own secret tries to lease many addresses by
/// opening several IKE SAs under one identity, each asking for a virtual
/// IP (the address of another IKE SA included): every IKE SA of the
/// identity shares its one address per family (counted as reused in the
/// pool), and the pool's other addresses stay free.
#[test]
fn ike_cp_many_ike_sas_of_one_identity_hold_one_address_per_family() {
    let pl = pool(&["10.3.0.0/24", "fd00:3::/120"]);
    let mut p = pair(75, &pl);
    establish(&mut p, true);
    let vips = vec![ip("10.3.0.1"), ip("fd00:3::1")];
    for _ in 0..4 {
        p.a.initiate(p.now);
        p.run_for(3_000);
    }
    // Five IKE SAs were made (the tunnel keeps one per peer: each new
    // one replaces the last); every one got the same two addresses.
    assert_eq!(p.b.stats().ike_sa_established, 5);
    assert_eq!(p.b.stats().virtual_ips_assigned, 10);
    let sas = p.b.established_ike_sas();
    assert!(!sas.is_empty());
    for id in &sas {
        assert_eq!(p.b.virtual_ips(*id), vips);
    }
    let pool = locked(&pl);
    assert_eq!(pool.online(), 2);
    assert_eq!(pool.stats().allocated, 2);
    assert_eq!(pool.stats().reused, 8, "{:?}", pool.stats());
    assert_eq!(pool.stats().exhausted, 0);
}
