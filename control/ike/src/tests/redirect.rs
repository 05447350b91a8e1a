//! RFC 5685 redirect between engines: a redirecting responder, the
//! gateways it sends clients to, and initiators that follow.

use std::net::SocketAddr;

use super::util::{config, deliver_to, rng, Pair};
use super::{ESP, IKE};
use crate::message::redirect::decode_redirected_from;
use crate::message::*;
use crate::*;

/// Engines on a lossless network, each at its own address: a datagram
/// goes to the engine whose local address has the destination's IP.
struct Net {
    nodes: Vec<Endpoint>,
    events: Vec<Vec<IkeEvent>>,
    now: Timestamp,
    /// Every datagram sent: (sender index, transmit).
    sent: Vec<(usize, Transmit)>,
}

impl Net {
    fn new(configs: Vec<Config>, seed: u64) -> Self {
        let n = configs.len();
        Net {
            nodes: configs
                .into_iter()
                .enumerate()
                .map(|(i, c)| Endpoint::new(c, rng(seed * 10 + i as u64)).unwrap())
                .collect(),
            events: vec![Vec::new(); n],
            now: Timestamp(1_000),
            sent: Vec::new(),
        }
    }

    fn node_at(&self, ip: std::net::IpAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|e| e.config().local_addr.ip() == ip)
    }

    /// Runs until `done` or `limit_ms` of simulated time.
    fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now.plus(limit_ms);
        loop {
            let mut moved = true;
            while moved {
                moved = false;
                for i in 0..self.nodes.len() {
                    while let Some(e) = self.nodes[i].poll_event() {
                        self.events[i].push(e);
                    }
                    while let Some(t) = self.nodes[i].poll_transmit() {
                        moved = true;
                        self.sent.push((i, t.clone()));
                        if let Some(j) = self.node_at(t.remote.ip()) {
                            deliver_to(&mut self.nodes[j], self.now.plus(5), &t);
                        }
                    }
                }
                self.now = self.now.plus(5);
            }
            if done(self) {
                return true;
            }
            let next = self.nodes.iter().filter_map(|e| e.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for e in &mut self.nodes {
                        if e.poll_timeout().is_some_and(|t| t <= now) {
                            e.handle_timeout(now);
                        }
                    }
                }
                _ => return done(self),
            }
        }
    }

    /// The IKE_SA_INIT requests sent by node `i`, decoded, with their
    /// destinations.
    fn init_requests(&self, i: usize) -> Vec<(SocketAddr, Message)> {
        self.sent
            .iter()
            .filter(|(from, t)| *from == i && t.remote.port() == 500)
            .filter_map(|(_, t)| {
                let m = Message::decode(&t.payload).ok()?;
                (m.header.exchange == ExchangeType::IKE_SA_INIT && !m.header.flags.response())
                    .then_some((t.remote, m))
            })
            .collect()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A client at `local` configured for the gateway at `gw`.
fn client(local: &str, gw: &str) -> Config {
    let mut c = config(true, &[IKE[0]], &[ESP[0]]);
    c.local_addr = addr(local);
    c.remote_addr = addr(gw);
    c
}

/// A gateway at `local` (any client with the test identity and PSK) with
/// `policy` towards `targets`.
fn gateway(local: &str, policy: RedirectPolicy, targets: &[&str], ex: RedirectExchange) -> Config {
    let mut c = config(false, &[IKE[0]], &[ESP[0]]);
    c.local_addr = addr(local);
    c.redirect = RedirectConfig {
        policy,
        targets: targets
            .iter()
            .map(|t| GatewayIdentity::parse(t).unwrap())
            .collect(),
        exchange: ex,
    };
    c
}

const A: &str = "192.0.2.1:500";
const GW1: &str = "192.0.2.2:500";
const GW2: &str = "192.0.2.3:500";
const GW3: &str = "192.0.2.4:500";

fn redirected_to_gw2(ex: RedirectExchange, seed: u64) -> Net {
    let mut net = Net::new(
        vec![
            client(A, GW1),
            gateway(GW1, RedirectPolicy::Always, &["192.0.2.3"], ex),
            gateway(GW2, RedirectPolicy::Never, &[], ex),
        ],
        seed,
    );
    net.nodes[0].initiate(net.now);
    assert!(
        net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1
            && n.nodes[2].child_sas().len() == 1),
        "client not up on GW2: {:?} / {:?} / {:?}",
        net.events[0],
        net.events[1],
        net.events[2]
    );
    let k = &net.nodes[0].child_sas()[0];
    assert_eq!(k.remote_addr.ip(), addr(GW2).ip(), "Child SA towards GW2");
    assert_eq!(net.nodes[0].stats().redirects_followed, 1);
    // The first request announced support, the one to GW2 named GW1.
    let reqs = net.init_requests(0);
    let first = &reqs[0];
    assert_eq!(first.0, addr(GW1));
    assert!(first.1.notify(NotifyType::REDIRECT_SUPPORTED).is_some());
    let to_gw2 = reqs.iter().find(|(to, _)| *to == addr(GW2)).unwrap();
    let from = to_gw2.1.notify(NotifyType::REDIRECTED_FROM).unwrap();
    assert_eq!(
        decode_redirected_from(&from.data).unwrap(),
        GatewayIdentity::Ip(addr(GW1).ip())
    );
    assert!(to_gw2.1.notify(NotifyType::REDIRECT_SUPPORTED).is_none());
    // The driver sees one attempt that was redirected, then came up.
    let ev = &net.events[0];
    assert!(ev
        .iter()
        .any(|e| matches!(e, IkeEvent::Redirected { to, .. } if *to == addr(GW2))));
    assert!(
        !ev.iter().any(|e| matches!(e, IkeEvent::IkeSaDown { .. })),
        "{ev:?}"
    );
    net
}

#[test]
fn ike_redirect_in_ike_sa_init_lands_on_the_target_without_state() {
    let net = redirected_to_gw2(RedirectExchange::IkeSaInit, 1);
    let gw1 = &net.nodes[1];
    assert_eq!(gw1.stats().redirects_sent_init, 1);
    assert_eq!(gw1.ike_sa_count(), 0, "no IKE SA state for a redirect");
    assert_eq!(gw1.half_open(), 0);
    assert!(net.events[1].is_empty(), "{:?}", net.events[1]);
    // The REDIRECT echoed the client's nonce.
    let reqs = net.init_requests(0);
    let ni = reqs[0].1.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.clone()),
        _ => None,
    });
    let answer = net
        .sent
        .iter()
        .find(|(from, _)| *from == 1)
        .map(|(_, t)| Message::decode(&t.payload).unwrap())
        .unwrap();
    assert_eq!(answer.header.spi_r, 0);
    let r = answer.notify(NotifyType::REDIRECT).unwrap();
    let r = Redirect::decode(&r.data, true).unwrap();
    assert_eq!(r.nonce, ni);
    assert_eq!(r.gateway, GatewayIdentity::Ip(addr(GW2).ip()));
}

#[test]
fn ike_redirect_after_ike_auth_deletes_the_first_sa_and_lands_on_the_target() {
    let mut net = redirected_to_gw2(RedirectExchange::IkeAuth, 2);
    let gw1 = &net.nodes[1];
    assert_eq!(gw1.stats().redirects_sent_auth, 1);
    assert_eq!(gw1.stats().redirects_sent_init, 0);
    assert_eq!(gw1.half_open(), 0, "left the half-open budget");
    assert_eq!(gw1.stats().child_sa_established, 0);
    // The client deletes its IKE SA with GW1; nothing of it is news for
    // either driver.
    assert!(net.run_until(60_000, |n| n.nodes[1].ike_sa_count() == 0));
    assert!(net.events[1].is_empty(), "{:?}", net.events[1]);
    assert_eq!(net.nodes[0].established_ike_sas().len(), 1);
    assert_eq!(net.nodes[0].ike_sa_count(), 1);
}

#[test]
fn ike_redirect_targets_are_taken_in_turn() {
    let mut net = Net::new(
        vec![
            client(A, GW1),
            client("192.0.2.5:500", GW1),
            gateway(
                GW1,
                RedirectPolicy::Always,
                &["192.0.2.3", "192.0.2.4"],
                RedirectExchange::IkeSaInit,
            ),
            gateway(GW2, RedirectPolicy::Never, &[], RedirectExchange::IkeSaInit),
            gateway(GW3, RedirectPolicy::Never, &[], RedirectExchange::IkeSaInit),
        ],
        3,
    );
    net.nodes[0].initiate(net.now);
    net.nodes[1].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1
        && n.nodes[1].child_sas().len() == 1));
    let a = net.nodes[0].child_sas()[0].remote_addr.ip();
    let b = net.nodes[1].child_sas()[0].remote_addr.ip();
    assert_eq!(a, addr(GW2).ip());
    assert_eq!(b, addr(GW3).ip());
    assert_eq!(net.nodes[2].stats().redirects_sent_init, 2);
}

#[test]
fn ike_load_policy_redirects_above_the_threshold_only() {
    let mut net = Net::new(
        vec![
            client(A, GW1),
            client("192.0.2.5:500", GW1),
            gateway(
                GW1,
                RedirectPolicy::Load { above: 1 },
                &["192.0.2.3"],
                RedirectExchange::IkeSaInit,
            ),
            gateway(GW2, RedirectPolicy::Never, &[], RedirectExchange::IkeSaInit),
        ],
        4,
    );
    net.nodes[0].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1));
    assert_eq!(net.nodes[0].child_sas()[0].remote_addr.ip(), addr(GW1).ip());
    net.nodes[1].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[1].child_sas().len() == 1));
    assert_eq!(net.nodes[1].child_sas()[0].remote_addr.ip(), addr(GW2).ip());
    assert_eq!(net.nodes[2].stats().redirects_sent_init, 1);
    // Told by the driver that the gateway is below the threshold, it
    // serves the next client again.
    net.nodes[2].set_gateway_load(0);
    let id = net.nodes[1].established_ike_sas()[0];
    net.nodes[1].terminate(net.now, id).unwrap();
    assert!(net.run_until(60_000, |n| n.nodes[1].ike_sa_count() == 0));
    net.nodes[1].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[1].child_sas().len() == 1));
    assert_eq!(net.nodes[1].child_sas()[0].remote_addr.ip(), addr(GW1).ip());
}

#[test]
fn ike_client_that_did_not_announce_support_is_not_redirected() {
    let mut c = client(A, GW1);
    c.follow_redirects = false;
    let mut net = Net::new(
        vec![
            c,
            gateway(
                GW1,
                RedirectPolicy::Always,
                &["192.0.2.3"],
                RedirectExchange::IkeSaInit,
            ),
            gateway(GW2, RedirectPolicy::Never, &[], RedirectExchange::IkeSaInit),
        ],
        5,
    );
    net.nodes[0].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1));
    assert_eq!(net.nodes[0].child_sas()[0].remote_addr.ip(), addr(GW1).ip());
    assert!(net.init_requests(0)[0]
        .1
        .notify(NotifyType::REDIRECT_SUPPORTED)
        .is_none());
    assert_eq!(net.nodes[1].stats().redirect_not_supported, 1);
    assert_eq!(net.nodes[1].stats().redirects_sent_init, 0);
}

#[test]
fn ike_redirect_loop_is_bounded() {
    // Three gateways sending clients round (a client never goes back to
    // the one it came from, so two would not loop).
    let ex = RedirectExchange::IkeSaInit;
    let mut net = Net::new(
        vec![
            client(A, GW1),
            gateway(GW1, RedirectPolicy::Always, &["192.0.2.3"], ex),
            gateway(GW2, RedirectPolicy::Always, &["192.0.2.4"], ex),
            gateway(GW3, RedirectPolicy::Always, &["192.0.2.2"], ex),
        ],
        6,
    );
    net.nodes[0].initiate(net.now);
    assert!(net.run_until(120_000, |n| n.events[0]
        .iter()
        .any(|e| matches!(e, IkeEvent::IkeSaDown { .. }))));
    let st = net.nodes[0].stats();
    assert_eq!(st.redirects_followed, crate::redirect::MAX_REDIRECTS as u64);
    assert!(st.redirect_loop_refused >= 1);
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::Negotiation(NotifyType::REDIRECT),
            ..
        }
    )));
    let sent: u64 = (1..4)
        .map(|i| net.nodes[i].stats().redirects_sent_init)
        .sum();
    assert!(sent > crate::redirect::MAX_REDIRECTS as u64);
    assert!((1..4).all(|i| net.nodes[i].ike_sa_count() == 0));
}

/// A REDIRECT whose nonce echo is not our Ni, or that is malformed, is
/// ignored: the attempt goes on with the configured gateway.
#[test]
fn ike_forged_redirects_are_ignored_and_counted() {
    let mut p = Pair::with(7, &[IKE[0]], &[ESP[0]]);
    p.a.initiate(p.now);
    let req = p.a.poll_transmit().unwrap();
    let forge = |data: Vec<u8>| {
        let m = Message::decode(&req.payload).unwrap();
        let header = Header {
            flags: Flags::new(false, true),
            ..m.header
        };
        Transmit {
            local: req.remote,
            remote: req.local,
            non_esp_marker: false,
            payload: Message {
                header,
                payloads: vec![Payload::Notify(Notify::new(NotifyType::REDIRECT, data))],
            }
            .encode()
            .unwrap(),
        }
    };
    let wrong_nonce = Redirect {
        gateway: GatewayIdentity::parse("198.51.100.7").unwrap(),
        nonce: Some(vec![0x42; 32]),
    };
    deliver_to(&mut p.a, p.now, &forge(wrong_nonce.encode().unwrap()));
    deliver_to(&mut p.a, p.now, &forge(vec![1, 4, 198, 51, 100]));
    deliver_to(&mut p.a, p.now, &forge(vec![9, 4, 198, 51, 100, 7]));
    let st = p.a.stats();
    assert_eq!(st.redirect_nonce_mismatch, 1);
    assert_eq!(st.redirect_malformed, 2);
    assert_eq!(st.redirects_followed, 0);
    assert!(p.a.poll_event().is_none());
    deliver_to(&mut p.b, p.now, &req);
    assert!(p.run_until(10_000, |p| p.up()));
    assert_eq!(p.a.child_sas()[0].remote_addr, addr(GW1));
}

/// An FQDN target is not followed (no resolver in the engine); a
/// redirect to the gateway itself is refused.
#[test]
fn ike_unfollowable_redirects_are_counted() {
    for (target, unresolved) in [("gw2.example", true), ("192.0.2.2", false)] {
        let mut p = Pair::with(8, &[IKE[0]], &[ESP[0]]);
        p.a.initiate(p.now);
        let req = p.a.poll_transmit().unwrap();
        let m = Message::decode(&req.payload).unwrap();
        let ni = m
            .payloads
            .iter()
            .find_map(|p| match p {
                Payload::Nonce(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap();
        let data = Redirect {
            gateway: GatewayIdentity::parse(target).unwrap(),
            nonce: Some(ni),
        }
        .encode()
        .unwrap();
        let header = Header {
            flags: Flags::new(false, true),
            ..m.header
        };
        let t = Transmit {
            local: req.remote,
            remote: req.local,
            non_esp_marker: false,
            payload: Message {
                header,
                payloads: vec![Payload::Notify(Notify::new(NotifyType::REDIRECT, data))],
            }
            .encode()
            .unwrap(),
        };
        deliver_to(&mut p.a, p.now, &t);
        let st = p.a.stats();
        assert_eq!(st.redirect_unresolved, u64::from(unresolved), "{target}");
        assert_eq!(st.redirect_loop_refused, u64::from(!unresolved), "{target}");
        assert_eq!(st.redirects_followed, 0);
    }
}

/// RFC 5685 §5: a gateway redirects an established client (maintenance);
/// the client sets up its IKE SA and Child SA with the new gateway and
/// then deletes the old one (make before break).
#[test]
fn ike_established_client_redirected_by_informational_moves() {
    let ex = RedirectExchange::IkeSaInit;
    let mut net = Net::new(
        vec![
            client(A, GW1),
            gateway(GW1, RedirectPolicy::Never, &[], ex),
            gateway(GW2, RedirectPolicy::Never, &[], ex),
        ],
        9,
    );
    net.nodes[0].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1));
    let id = net.nodes[1].established_ike_sas()[0];
    let to = GatewayIdentity::parse("192.0.2.3").unwrap();
    net.nodes[1].redirect_established(net.now, id, to).unwrap();
    assert!(
        net.run_until(60_000, |n| n.nodes[2].child_sas().len() == 1
            && n.nodes[1].ike_sa_count() == 0
            && n.nodes[0].ike_sa_count() == 1),
        "{:?} / {:?}",
        net.events[0],
        net.events[1]
    );
    let k = &net.nodes[0].child_sas()[0];
    assert_eq!(k.remote_addr.ip(), addr(GW2).ip());
    assert_eq!(net.nodes[1].stats().redirects_sent_informational, 1);
    assert_eq!(net.nodes[0].stats().redirects_followed, 1);
    let ev = &net.events[0];
    assert!(ev.iter().any(|e| matches!(e, IkeEvent::Redirected { .. })));
    assert!(
        !ev.iter().any(|e| matches!(e, IkeEvent::IkeSaDown { .. })),
        "{ev:?}"
    );
    let up = ev
        .iter()
        .rposition(|e| matches!(e, IkeEvent::ChildSaUp(k) if k.remote_addr.ip() == addr(GW2).ip()))
        .unwrap();
    let gone = ev
        .iter()
        .position(|e| matches!(e, IkeEvent::ChildSaDeleted { .. }))
        .unwrap();
    assert!(
        up < gone,
        "the old Child SA went before the new one was up: {ev:?}"
    );
    assert!(net.events[1].iter().any(|e| matches!(
        e,
        IkeEvent::IkeSaDown {
            reason: DownReason::DeletedByPeer,
            ..
        }
    )));
    // The request to GW2 named GW1.
    let to_gw2 = net
        .init_requests(0)
        .into_iter()
        .find(|(t, _)| *t == addr(GW2))
        .unwrap();
    assert!(to_gw2.1.notify(NotifyType::REDIRECTED_FROM).is_some());
}

/// A client that did not announce support cannot be redirected once
/// established; nor can an unknown IKE SA.
#[test]
fn ike_established_client_without_support_is_not_redirected() {
    let mut c = client(A, GW1);
    c.follow_redirects = false;
    let ex = RedirectExchange::IkeSaInit;
    let mut net = Net::new(vec![c, gateway(GW1, RedirectPolicy::Never, &[], ex)], 10);
    net.nodes[0].initiate(net.now);
    assert!(net.run_until(60_000, |n| n.nodes[0].child_sas().len() == 1));
    let id = net.nodes[1].established_ike_sas()[0];
    let to = GatewayIdentity::parse("192.0.2.3").unwrap();
    assert_eq!(
        net.nodes[1].redirect_established(net.now, id, to.clone()),
        Err(ApiError::CannotRedirect)
    );
    assert_eq!(
        net.nodes[1].redirect_established(net.now, IkeSaId(1), to),
        Err(ApiError::NoSuchIkeSa)
    );
}
