//! A deterministic two-engine harness (after quinn-proto's tests/util.rs):
//! a simulated clock, a seeded RNG for each engine and a seeded network
//! that can lose, duplicate and reorder datagrams.

use std::net::SocketAddr;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::crypto::SkCipher;
use crate::message::{
    classify_port_4500, decode_chain, encode_chain, Header, Message, Payload, Port4500,
};
use crate::*;

pub struct SeededRng(pub ChaCha20Rng);

impl RngSource for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }
}

pub fn rng(seed: u64) -> Box<dyn RngSource + Send> {
    Box::new(SeededRng(ChaCha20Rng::seed_from_u64(seed)))
}

pub use crate::sim::{config, INITIATOR as A_ADDR, RESPONDER as B_ADDR};

struct InFlight {
    at: Timestamp,
    to_b: bool,
    t: Transmit,
}

/// Network impairments, each a probability in percent.
#[derive(Clone, Copy, Default)]
pub struct Impair {
    pub loss: u32,
    pub dup: u32,
    /// Extra random delay up to this many ms (reorders).
    pub jitter_ms: u64,
    /// Drop everything B sends (a silent peer).
    pub b_silent: bool,
}

pub struct Pair {
    pub a: Endpoint,
    pub b: Endpoint,
    pub now: Timestamp,
    pub ev_a: Vec<IkeEvent>,
    pub ev_b: Vec<IkeEvent>,
    pub impair: Impair,
    net: ChaCha20Rng,
    flight: Vec<InFlight>,
    /// Every datagram sent, as (from A?, transmit).
    pub sent: Vec<(bool, Transmit)>,
    /// A NAT in front of B: (B's own address, the address A sees).
    pub nat_b: Option<(SocketAddr, SocketAddr)>,
}

impl Pair {
    pub fn new(seed: u64, a: Config, b: Config) -> Self {
        Pair {
            a: Endpoint::new(a, rng(seed * 3 + 1)).unwrap(),
            b: Endpoint::new(b, rng(seed * 3 + 2)).unwrap(),
            now: Timestamp(1_000),
            ev_a: Vec::new(),
            ev_b: Vec::new(),
            impair: Impair::default(),
            net: ChaCha20Rng::seed_from_u64(seed * 3 + 3),
            flight: Vec::new(),
            sent: Vec::new(),
            nat_b: None,
        }
    }

    pub fn with(seed: u64, ike: &[&str], esp: &[&str]) -> Self {
        Self::new(seed, config(true, ike, esp), config(false, ike, esp))
    }

    fn pct(&mut self, p: u32) -> bool {
        p > 0 && self.net.next_u32() % 100 < p
    }

    fn collect(&mut self) {
        for from_a in [true, false] {
            loop {
                let t = if from_a {
                    self.a.poll_transmit()
                } else {
                    self.b.poll_transmit()
                };
                let Some(mut t) = t else { break };
                if let Some((inside, outside)) = self.nat_b {
                    if !from_a && t.local == inside {
                        t.local = outside;
                    }
                }
                self.sent.push((from_a, t.clone()));
                if !from_a && self.impair.b_silent {
                    continue;
                }
                if self.pct(self.impair.loss) {
                    continue;
                }
                let copies = if self.pct(self.impair.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let extra = if self.impair.jitter_ms > 0 {
                        self.net.next_u64() % self.impair.jitter_ms
                    } else {
                        0
                    };
                    self.flight.push(InFlight {
                        at: self.now.plus(5 + extra),
                        to_b: from_a,
                        t: t.clone(),
                    });
                }
            }
            loop {
                let e = if from_a {
                    self.a.poll_event()
                } else {
                    self.b.poll_event()
                };
                let Some(e) = e else { break };
                if from_a {
                    self.ev_a.push(e);
                } else {
                    self.ev_b.push(e);
                }
            }
        }
    }

    fn deliver(&mut self, mut f: InFlight) {
        if let Some((inside, outside)) = self.nat_b {
            if f.to_b && f.t.remote == outside {
                f.t.remote = inside;
            }
        }
        let ep = if f.to_b { &mut self.b } else { &mut self.a };
        deliver_to(ep, self.now, &f.t);
    }

    /// Runs the simulation until `done` holds or `limit_ms` of simulated
    /// time passes. Returns whether `done` held.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now.plus(limit_ms);
        loop {
            self.collect();
            if done(self) {
                return true;
            }
            let next_net = self.flight.iter().map(|f| f.at).min();
            let next = [next_net, self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { return false };
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = self.now.max(next);
            let (due, rest): (Vec<_>, Vec<_>) =
                self.flight.drain(..).partition(|f| f.at <= self.now);
            self.flight = rest;
            for f in due {
                self.deliver(f);
            }
            if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
                self.a.handle_timeout(self.now);
            }
            if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
                self.b.handle_timeout(self.now);
            }
        }
    }

    pub fn up(&self) -> bool {
        self.a.child_sas().len() == 1 && self.b.child_sas().len() == 1
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }
}

/// Asserts that A's and B's installed Child SAs pair up exactly: A's
/// inbound is B's outbound and vice versa, SPIs and keys alike.
pub fn assert_children_match(p: &Pair) {
    let a = p.a.child_sas();
    let b = p.b.child_sas();
    assert_eq!(a.len(), b.len(), "child counts differ: {a:?} vs {b:?}");
    for ka in &a {
        let kb = b
            .iter()
            .find(|kb| kb.inbound_spi == ka.outbound_spi)
            .unwrap_or_else(|| panic!("no peer for {:?}", ka.id));
        assert_eq!(kb.outbound_spi, ka.inbound_spi);
        assert_eq!(ka.algorithm, kb.algorithm);
        assert_eq!(ka.inbound, kb.outbound, "A inbound == B outbound");
        assert_eq!(ka.outbound, kb.inbound, "A outbound == B inbound");
        assert_eq!(ka.local_ts, kb.remote_ts);
        assert_eq!(ka.remote_ts, kb.local_ts);
        assert_eq!(ka.inbound.encryption.len(), ka.algorithm.cipher.key_len());
        assert!(!ka.esn);
    }
}

/// Hands `t` to `ep` as the network would: on the port it was sent to,
/// the non-ESP marker removed on 4500.
pub fn deliver_to(ep: &mut Endpoint, now: Timestamp, t: &Transmit) {
    let local: SocketAddr = t.remote;
    let remote: SocketAddr = t.local;
    let wire = t.datagram();
    if local.port() == 4500 {
        match classify_port_4500(&wire) {
            Port4500::Ike(m) => ep.handle_datagram(now, local, remote, m),
            other => panic!("non-IKE on 4500: {other:?}"),
        }
    } else {
        ep.handle_datagram(now, local, remote, &wire);
    }
}

/// The SK payload protection `ep` sends (`tx`) or receives with on its IKE
/// SA `id`, from the keys it logs: what a peer that knows its own PSK
/// holds, to hand-craft protected messages.
pub fn sk_cipher(ep: &Endpoint, id: IkeSaId, tx: bool) -> SkCipher {
    let s = ep.ike_sa_secrets(id).expect("IKE SA with keys");
    // The original initiator sends with SK_ei/SK_ai.
    let (e, a) = if tx == s.initiator {
        (&s.sk_ei, &s.sk_ai)
    } else {
        (&s.sk_er, &s.sk_ar)
    };
    SkCipher::new(&s.suite, e, a)
}

/// Decrypts a protected message into its header and inner payloads.
pub fn open_sk(rx: &SkCipher, bytes: &[u8]) -> (Header, Vec<Payload>) {
    let m = Message::decode(bytes).unwrap();
    let Some(Payload::Encrypted(enc)) = m.payloads.last() else {
        panic!("no SK payload")
    };
    let plain = rx.open(bytes, enc.data.len()).unwrap();
    (
        m.header,
        decode_chain(enc.first_payload, &plain, false).unwrap(),
    )
}

/// Builds a protected message.
pub fn seal_sk(tx: &mut SkCipher, hdr: &Header, payloads: &[Payload]) -> Vec<u8> {
    let (first, inner) = encode_chain(payloads).unwrap();
    let mut r = rng(0);
    tx.seal(hdr, first, &inner, &mut *r).unwrap()
}
