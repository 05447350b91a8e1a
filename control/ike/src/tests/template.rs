//! Responder templates: several peers from different addresses, with
//! different identities and secrets, on one template engine; siblings
//! sharing a local address told apart by identity.

use std::net::SocketAddr;
use std::sync::Arc;

use super::util::{deliver_to, rng};
use super::{ESP, IKE};
use crate::crypto::SecretBytes;
use crate::message::{ExchangeType, Header, IdType, Identification, TrafficSelector};
use crate::*;

fn email(s: &str) -> Identification {
    Identification::Other {
        ty: IdType::RFC822_ADDR,
        data: s.as_bytes().to_vec(),
    }
}

fn gw() -> Identification {
    Identification::Fqdn("gw.example".into())
}

fn secret(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

/// A road warrior at `198.51.100.<n>` with inner network `10.9.<n>.0/24`.
fn client(n: u8, id: Identification, psk: &str) -> Config {
    let addr: SocketAddr = format!("198.51.100.{n}:500").parse().unwrap();
    let mut c = Config::new(addr, RESPONDER, id, gw(), secret(psk))
        .with_proposals(&[IKE[0]], &[ESP[0]])
        .unwrap()
        .with_traffic_selectors(&[&format!("10.9.{n}.0/24")], &["10.2.0.0/24"])
        .unwrap();
    c.start = StartAction::Initiate;
    c
}

const RESPONDER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)),
    500,
);

/// A template at [`RESPONDER`] accepting `ids`, protecting 10.2.0.0/24
/// towards anything in 10.9.0.0/16.
fn template(ids: Vec<IdPattern>, secrets: &Arc<IdDirectory<SecretBytes>>) -> Config {
    let any: SocketAddr = "0.0.0.0:500".parse().unwrap();
    let mut c = Config::new(RESPONDER, any, gw(), gw(), SecretBytes::new(Vec::new()))
        .with_proposals(&[IKE[0]], &[ESP[0]])
        .unwrap()
        .with_traffic_selectors(&["10.2.0.0/24"], &["10.9.0.0/16"])
        .unwrap();
    c.template = Some(Template {
        remote_ids: ids,
        secrets: secrets.clone(),
        siblings: Arc::new(IdDirectory::new()),
    });
    c
}

fn secrets(entries: &[(&str, &str)]) -> Arc<IdDirectory<SecretBytes>> {
    let mut d = IdDirectory::new();
    for (id, psk) in entries {
        d.insert(IdPattern::Exact(email(id)), secret(psk)).unwrap();
    }
    Arc::new(d)
}

/// Clients and responder engines on one simulated network; the
/// responders' datagrams are routed as the driver does: a new
/// IKE_SA_INIT to the first, everything else by SPI, and
/// [`IkeEvent::Handoff`] honoured.
struct Net {
    now: Timestamp,
    clients: Vec<Endpoint>,
    responders: Vec<Endpoint>,
    /// Events of each responder.
    ev: Vec<Vec<IkeEvent>>,
}

impl Net {
    fn new(clients: Vec<Config>, responders: Vec<Config>) -> Self {
        let n = responders.len();
        Net {
            now: Timestamp(1_000),
            clients: clients
                .into_iter()
                .enumerate()
                .map(|(i, c)| Endpoint::new(c, rng(100 + i as u64)).unwrap())
                .collect(),
            responders: responders
                .into_iter()
                .enumerate()
                .map(|(i, c)| Endpoint::new(c, rng(200 + i as u64)).unwrap())
                .collect(),
            ev: vec![Vec::new(); n],
        }
    }

    fn responder_for(&self, t: &Transmit) -> Option<usize> {
        let wire = t.datagram();
        let bytes = if t.non_esp_marker {
            &wire[4..]
        } else {
            &wire[..]
        };
        let (h, _) = Header::decode(bytes).ok()?;
        if h.exchange == ExchangeType::IKE_SA_INIT && h.spi_r == 0 {
            return Some(0);
        }
        self.responders.iter().position(|r| r.has_ike_sa(h.spi_r))
    }

    /// Delivers everything in flight until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for ci in 0..self.clients.len() {
                while let Some(t) = self.clients[ci].poll_transmit() {
                    moved = true;
                    if let Some(ri) = self.responder_for(&t) {
                        deliver_to(&mut self.responders[ri], self.now, &t);
                    }
                }
                while self.clients[ci].poll_event().is_some() {}
            }
            for ri in 0..self.responders.len() {
                while let Some(t) = self.responders[ri].poll_transmit() {
                    moved = true;
                    if let Some(c) = self
                        .clients
                        .iter_mut()
                        .find(|c| c.config().local_addr.ip() == t.remote.ip())
                    {
                        deliver_to(c, self.now, &t);
                    }
                }
                while let Some(e) = self.responders[ri].poll_event() {
                    moved = true;
                    if let IkeEvent::Handoff {
                        ike,
                        to,
                        local,
                        remote,
                        ref message,
                    } = e
                    {
                        let sa = self.responders[ri].take_half_open(ike).unwrap();
                        let to = to as usize;
                        assert!(self.responders[to].adopt(sa));
                        self.responders[to].handle_handed(self.now, local, remote, message.clone());
                    }
                    self.ev[ri].push(e);
                }
            }
            self.now = self.now.plus(5);
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }
}

/// The responder's Child SA of the IKE SA whose peer is `id`, if any.
fn child_of(ep: &Endpoint, id: &Identification) -> Option<ChildSaKeys> {
    ep.child_sas()
        .into_iter()
        .find(|k| ep.peer_id(k.ike).is_some_and(|p| p == id))
}

fn ts(s: &str) -> Vec<TrafficSelector> {
    vec![crate::config::parse_traffic_selector(s).unwrap()]
}

#[test]
fn ike_template_takes_several_peers_each_with_its_own_secret_and_selectors() {
    let ids = [
        "alice@branches.example",
        "bob@branches.example",
        "carol@branches.example",
    ];
    let s = secrets(&[
        (ids[0], "alice's secret"),
        (ids[1], "bob's secret"),
        (ids[2], "carol's secret"),
    ]);
    let clients = (0..3)
        .map(|i| {
            client(
                i as u8 + 1,
                email(ids[i]),
                ["alice's secret", "bob's secret", "carol's secret"][i],
            )
        })
        .collect();
    let t = template(vec![IdPattern::EmailDomain("branches.example".into())], &s);
    let mut net = Net::new(clients, vec![t]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let r = &net.responders[0];
    assert_eq!(r.established_ike_sas().len(), 3);
    assert_eq!(r.child_sas().len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let k = child_of(r, &email(id)).unwrap_or_else(|| panic!("no Child SA for {id}"));
        // The template's 10.9.0.0/16 narrowed to what this peer proposed.
        assert_eq!(k.remote_ts, ts(&format!("10.9.{}.0/24", i + 1)));
        assert_eq!(k.local_ts, ts("10.2.0.0/24"));
        assert_eq!(
            k.remote_addr.ip().to_string(),
            format!("198.51.100.{}", i + 1)
        );
        let c = net.clients[i].child_sas();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].inbound, k.outbound);
        assert_eq!(c[0].outbound_spi, k.inbound_spi);
    }
    assert_eq!(r.stats().auth_failures, 0);
}

#[test]
fn ike_template_refuses_a_peer_claiming_another_identity_and_unknown_ones() {
    let s = secrets(&[
        ("alice@branches.example", "alice's secret"),
        ("bob@branches.example", "bob's secret"),
    ]);
    let clients = vec![
        // Mallory claims Alice's identity but knows only her own secret.
        client(1, email("alice@branches.example"), "mallory's secret"),
        // Eve's identity matches the template but has no secret.
        client(2, email("eve@branches.example"), "eve's secret"),
        // Oscar's identity is not the template's at all.
        client(3, email("oscar@elsewhere.example"), "bob's secret"),
        client(4, email("bob@branches.example"), "bob's secret"),
    ];
    let t = template(vec![IdPattern::EmailDomain("branches.example".into())], &s);
    let mut net = Net::new(clients, vec![t]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let r = &net.responders[0];
    let st = r.stats();
    assert_eq!(st.auth_refused_bad_auth, 1);
    assert_eq!(st.auth_refused_unknown_identity, 1);
    assert_eq!(st.auth_refused_identity, 1);
    assert_eq!(st.auth_failures, 3);
    // Only Bob got in, with his own selectors; nobody else has anything.
    assert_eq!(r.established_ike_sas().len(), 1);
    assert_eq!(r.child_sas().len(), 1);
    let k = child_of(r, &email("bob@branches.example")).unwrap();
    assert_eq!(k.remote_ts, ts("10.9.4.0/24"));
    for c in &net.clients[..3] {
        assert!(c.child_sas().is_empty());
        assert!(c.established_ike_sas().is_empty());
    }
}

#[test]
fn ike_initial_contact_on_a_template_replaces_only_that_identitys_sas() {
    let s = secrets(&[
        ("alice@branches.example", "a"),
        ("bob@branches.example", "b"),
    ]);
    let clients = vec![
        client(1, email("alice@branches.example"), "a"),
        client(2, email("bob@branches.example"), "b"),
    ];
    let t = template(vec![IdPattern::EmailDomain("branches.example".into())], &s);
    let mut net = Net::new(clients, vec![t]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let before = net.responders[0].established_ike_sas();
    assert_eq!(before.len(), 2);
    let bob_old = child_of(&net.responders[0], &email("bob@branches.example")).unwrap();
    // Alice restarts and comes back with INITIAL_CONTACT.
    net.clients[0] =
        Endpoint::new(client(1, email("alice@branches.example"), "a"), rng(7)).unwrap();
    net.clients[0].initiate(net.now);
    net.settle();
    let r = &net.responders[0];
    let replaced: Vec<IkeSaId> = net.ev[0]
        .iter()
        .filter_map(|e| match e {
            IkeEvent::IkeSaDown {
                ike,
                reason: DownReason::Replaced,
            } => Some(*ike),
            _ => None,
        })
        .collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(r.established_ike_sas().len(), 2);
    // Bob's IKE SA and Child SA are untouched.
    assert!(r.established_ike_sas().contains(&bob_old.ike));
    assert_ne!(replaced[0], bob_old.ike);
    assert_eq!(
        child_of(r, &email("bob@branches.example"))
            .unwrap()
            .inbound_spi,
        bob_old.inbound_spi
    );
}

#[test]
fn ike_sibling_templates_on_one_address_are_told_apart_by_identity() {
    // E-mail and FQDN identities in one directory.
    let mut d = IdDirectory::new();
    d.insert(
        IdPattern::Exact(email("alice@branches.example")),
        secret("a"),
    )
    .unwrap();
    d.insert(
        IdPattern::Exact(Identification::Fqdn("r1.routers.example".into())),
        secret("r"),
    )
    .unwrap();
    let s2 = Arc::new(d);
    let mut t0 = template(vec![IdPattern::EmailDomain("branches.example".into())], &s2);
    let mut t1 = template(vec![IdPattern::FqdnSuffix("routers.example".into())], &s2);
    let mut sib0 = IdDirectory::new();
    sib0.insert(IdPattern::FqdnSuffix("routers.example".into()), 1)
        .unwrap();
    let mut sib1 = IdDirectory::new();
    sib1.insert(IdPattern::EmailDomain("branches.example".into()), 0)
        .unwrap();
    t0.template.as_mut().unwrap().siblings = Arc::new(sib0);
    t1.template.as_mut().unwrap().siblings = Arc::new(sib1);
    // The routers' template narrows to its own selectors.
    t1.remote_ts = ts("10.9.0.0/16");
    let clients = vec![
        client(1, email("alice@branches.example"), "a"),
        client(2, Identification::Fqdn("r1.routers.example".into()), "r"),
        client(3, Identification::Fqdn("nobody.example".into()), "r"),
    ];
    let mut net = Net::new(clients, vec![t0, t1]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let (r0, r1) = (&net.responders[0], &net.responders[1]);
    assert!(child_of(r0, &email("alice@branches.example")).is_some());
    let router = Identification::Fqdn("r1.routers.example".into());
    assert!(child_of(r1, &router).is_some());
    assert!(child_of(r0, &router).is_none());
    assert_eq!(r0.established_ike_sas().len(), 1);
    assert_eq!(r1.established_ike_sas().len(), 1);
    assert_eq!(r0.stats().handoffs, 1);
    // Its half-open place moved with it and was given back on success.
    assert_eq!(r0.half_open() + r1.half_open(), 0);
    // nobody.example matches neither: refused by the first, counted.
    assert_eq!(r0.stats().auth_refused_identity, 1);
    assert!(net.clients[2].child_sas().is_empty());
    assert_eq!(net.clients[1].child_sas().len(), 1);
}

#[test]
fn ike_template_takes_peers_by_distinguished_name_pattern() {
    use crate::identity::tests::{dn, C, CN, O};
    use crate::identity::DnPattern;
    let alice = dn(&[(C, "DE"), (O, "Example"), (CN, "alice")]);
    let bob = dn(&[(C, "DE"), (O, "Example"), (CN, "bob")]);
    let other = dn(&[(C, "DE"), (O, "Other"), (CN, "alice")]);
    let mut d = IdDirectory::new();
    d.insert(IdPattern::Exact(alice.clone()), secret("alice's secret"))
        .unwrap();
    // A DN pattern in the secrets too: every CN of O=Example shares one.
    d.insert(
        IdPattern::Dn(DnPattern::parse("C=DE, O=Example, CN=*").unwrap()),
        secret("the Example secret"),
    )
    .unwrap();
    d.insert(IdPattern::Exact(other.clone()), secret("other's secret"))
        .unwrap();
    let t = template(
        vec![IdPattern::Dn(
            DnPattern::parse("C=DE, O=Example, CN=*").unwrap(),
        )],
        &Arc::new(d),
    );
    let clients = vec![
        client(1, alice.clone(), "alice's secret"),
        client(2, bob.clone(), "the Example secret"),
        // Has a secret, but O=Other is not the template's.
        client(3, other, "other's secret"),
    ];
    let mut net = Net::new(clients, vec![t]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let r = &net.responders[0];
    assert!(child_of(r, &alice).is_some());
    assert!(child_of(r, &bob).is_some());
    assert_eq!(r.established_ike_sas().len(), 2);
    assert_eq!(r.stats().auth_refused_identity, 1);
    assert!(net.clients[2].child_sas().is_empty());
}

#[test]
fn ike_a_rekeyed_ike_sa_keeps_its_peers_identity() {
    let s = secrets(&[
        ("alice@branches.example", "a"),
        ("bob@branches.example", "b"),
    ]);
    let clients = vec![
        client(1, email("alice@branches.example"), "a"),
        client(2, email("bob@branches.example"), "b"),
    ];
    let t = template(vec![IdPattern::EmailDomain("branches.example".into())], &s);
    let mut net = Net::new(clients, vec![t]);
    for c in &mut net.clients {
        c.initiate(net.now);
    }
    net.settle();
    let old = child_of(&net.responders[0], &email("alice@branches.example"))
        .unwrap()
        .ike;
    let alice_sa = net.clients[0].established_ike_sas()[0];
    net.clients[0].rekey_ike(net.now, alice_sa).unwrap();
    net.settle();
    let r = &net.responders[0];
    let new = child_of(r, &email("alice@branches.example")).unwrap().ike;
    assert_ne!(new, old, "the Child SA moved to the new IKE SA");
    assert_eq!(r.peer_id(new), Some(&email("alice@branches.example")));
    // INITIAL_CONTACT scoping still finds Alice's SA by identity after
    // the rekey: Bob's is untouched when she reconnects.
    let bob = child_of(r, &email("bob@branches.example")).unwrap().ike;
    net.clients[0] =
        Endpoint::new(client(1, email("alice@branches.example"), "a"), rng(8)).unwrap();
    net.clients[0].initiate(net.now);
    net.settle();
    let r = &net.responders[0];
    assert!(r.established_ike_sas().contains(&bob));
    assert!(!r.established_ike_sas().contains(&new));
    assert_eq!(r.established_ike_sas().len(), 2);
}
