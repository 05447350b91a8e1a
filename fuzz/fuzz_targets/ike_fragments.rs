//! IKE fragment reassembly (RFC 7383 §2.6) fed arbitrary fragment
//! sequences, in two modes picked by bit 7 of the first byte (bits 0-6
//! choose the limits: `max_fragments` 1 + (bits 0-3) * 8, `max_message_len`
//! 64 << (bits 4-6)).
//!
//! Reassembly mode (bit 7 clear): records of message ID (1 byte, mod 4),
//! Fragment Number and Total Fragments (2 bytes each), a length byte and
//! that many content bytes go through `fragment::accept`, checked against
//! a model of §2.6 (a new message ID or a higher total starts over, a
//! lower total or a duplicate is dropped, content beyond the limit drops
//! the message): a completed message is exactly its fragments in order.
//!
//! Engine mode (bit 7 set): an established pair of `ike::sim` engines
//! with those limits; each record is a fragment A seals with its real
//! keys to B: control byte (bit 0: flip a ciphertext bit, a forgery; bit
//! 1: CREATE_CHILD_SA rather than INFORMATIONAL; bit 2: first advance
//! the clock by 4 s and run the timers), message ID offset (mod 4: 2 is
//! the one B expects, 1 the one it answered), Fragment Number, Total
//! Fragments, a length byte and the content.
//!
//! Oracles: no panic; what is held never exceeds `max_message_len` per
//! IKE SA and direction nor `max_fragments` parts; forged fragments never
//! change what is held; a completed message matches the model.

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use espresso_fuzz::Input;
use ike::crypto::SkCipher;
use ike::fragment::{accept, FragmentRefusal, Fragmentation, Reassembly};
use ike::message::{ExchangeType, Flags, Header, PayloadType};
use ike::sim::{config, SplitMix, INITIATOR, RESPONDER, START};
use ike::{Endpoint, Timestamp};
use libfuzzer_sys::fuzz_target;

const IKE: &[&str] = &["aes128gcm16-prfsha256-x25519"];
const ESP: &[&str] = &["aes128gcm16"];

fn limits(b: u8) -> Fragmentation {
    Fragmentation {
        max_fragments: 1 + u16::from(b & 15) * 8,
        max_message_len: 64 << ((b >> 4) & 7),
        ..Fragmentation::default()
    }
}

/// The model: the message being reassembled, its total and its pieces.
type Model = Option<(u32, u16, BTreeMap<u16, Vec<u8>>)>;

fn reassembly(inp: &mut Input, cfg: &Fragmentation) {
    let mut slot: Option<Reassembly> = None;
    let mut model: Model = None;
    while !inp.is_empty() {
        let id = u32::from(inp.u8() & 3);
        let number = inp.u16();
        let total = inp.u16();
        let len = usize::from(inp.u8());
        let content = inp.bytes(len).to_vec();
        let next = PayloadType(if number == 1 { 41 } else { 0 });
        let now = Timestamp(0);
        let got = accept(&mut slot, id, 37, number, total, next, content.clone(), now, cfg);
        match got {
            Ok(a) => {
                let fresh = match &model {
                    Some((mid, mtotal, _)) => *mid != id || total > *mtotal,
                    None => true,
                };
                assert_eq!(a.restarted, fresh && model.as_ref().is_some_and(|m| m.0 == id));
                if fresh {
                    model = Some((id, total, BTreeMap::new()));
                }
                let m = model.as_mut().unwrap();
                assert!(m.2.insert(number, content).is_none(), "stored twice");
                if let Some((first, msg)) = a.complete {
                    assert_eq!(m.2.len(), usize::from(total));
                    let want: Vec<u8> = m.2.values().flatten().copied().collect();
                    assert_eq!(msg, want, "reassembled out of order");
                    assert_eq!(first, PayloadType(41));
                    assert!(slot.is_none());
                    model = None;
                }
            }
            Err(FragmentRefusal::TooLarge) => {
                assert!(slot.is_none(), "a message too large is dropped whole");
                model = None;
            }
            Err(_) => {}
        }
        if let Some(r) = &slot {
            assert!(r.bytes() <= cfg.max_message_len, "{} bytes held", r.bytes());
            assert!(r.held() <= r.total() && r.total() <= cfg.max_fragments);
            let m = model.as_ref().expect("model follows the slot");
            assert_eq!((r.message_id, usize::from(r.held())), (m.0, m.2.len()));
        }
    }
}

/// A and B established with `cfg`'s limits, and A's sending keys.
fn pair(cfg: &Fragmentation) -> Option<(Endpoint, Endpoint, SkCipher, u64, u64)> {
    let with = |initiator| {
        let mut c = config(initiator, IKE, ESP);
        c.fragmentation = cfg.clone();
        c
    };
    let mut a = Endpoint::new(with(true), Box::new(SplitMix(1))).ok()?;
    let mut b = Endpoint::new(with(false), Box::new(SplitMix(2))).ok()?;
    a.initiate(START);
    for _ in 0..4 {
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(START, t.remote, t.local, &t.payload);
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(START, t.remote, t.local, &t.payload);
        }
    }
    let id = *a.established_ike_sas().first()?;
    let s = a.ike_sa_secrets(id)?;
    let tx = SkCipher::new(&s.suite, &s.sk_ei, &s.sk_ai);
    Some((a, b, tx, s.spi_i, s.spi_r))
}

fn engine(inp: &mut Input, cfg: &Fragmentation) {
    let Some((_a, mut b, mut tx, spi_i, spi_r)) = pair(cfg) else {
        panic!("the simulated pair does not establish");
    };
    let local: SocketAddr = RESPONDER.parse().unwrap();
    let remote: SocketAddr = INITIATOR.parse().unwrap();
    let mut rng = SplitMix(3);
    let mut now = START;
    while !inp.is_empty() {
        let ctl = inp.u8();
        let id = 1 + u32::from(inp.u8() & 3);
        let number = inp.u16();
        let total = inp.u16();
        let len = usize::from(inp.u8());
        let chunk = inp.bytes(len);
        if ctl & 4 != 0 {
            now = now.plus(4_000);
            b.handle_timeout(now);
        }
        let exchange = if ctl & 2 != 0 {
            ExchangeType::CREATE_CHILD_SA
        } else {
            ExchangeType::INFORMATIONAL
        };
        let hdr = Header {
            spi_i,
            spi_r,
            exchange,
            flags: Flags::new(true, false),
            message_id: id,
        };
        let next = PayloadType(if number == 1 { 41 } else { 0 });
        let Ok(mut d) = tx.seal_fragment(&hdr, next, number, total, chunk, &mut rng) else {
            continue;
        };
        let forged = ctl & 1 != 0;
        if forged {
            let n = d.len();
            d[n - 1] ^= 1;
        }
        let held = b.reassembly_bytes();
        let stats = b.stats().fragments.clone();
        b.handle_datagram(now, local, remote, &d);
        while b.poll_transmit().is_some() {}
        while b.poll_event().is_some() {}
        if forged {
            assert_eq!(b.reassembly_bytes(), held, "a forged fragment changed what is held");
            let after = &b.stats().fragments;
            assert_eq!(after.fragments_received, stats.fragments_received);
        }
        assert!(
            b.reassembly_bytes() <= 2 * cfg.max_message_len,
            "{} bytes held",
            b.reassembly_bytes()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let cfg = limits(mode);
    if mode & 0x80 == 0 {
        reassembly(&mut inp, &cfg);
    } else {
        engine(&mut inp, &cfg);
    }
});
