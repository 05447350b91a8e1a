//! IKE fragmentation (RFC 7383) between two engines: a small fragment size
//! forces IKE_AUTH and CREATE_CHILD_SA into fragments both ways; loss,
//! duplication and reordering; hand-made fragments refused and counted.

use super::*;
use crate::crypto::SkCipher;
use crate::fragment::{FragmentRefusal, Fragmentation};
use crate::message::fragment::decode_skf;

/// Small enough that every PSK IKE_AUTH message of the simulated pair
/// (and a CREATE_CHILD_SA with traffic selectors) is split.
const SIZE: u16 = 200;

fn frag_config(initiator: bool, ike: &str, size: u16, enabled: bool) -> Config {
    let mut c = config(initiator, &[ike], &["aes128gcm16"]);
    c.fragmentation = Fragmentation {
        enabled,
        size,
        ..Fragmentation::default()
    };
    c
}

fn frag_pair(seed: u64, ike: &str, a: bool, b: bool) -> Pair {
    Pair::new(
        seed,
        frag_config(true, ike, SIZE, a),
        frag_config(false, ike, SIZE, b),
    )
}

/// The SKF fields of a sent datagram, if it is a fragment.
fn skf(t: &Transmit) -> Option<(Header, crate::message::fragment::Skf)> {
    decode_skf(&t.payload).ok().flatten()
}

/// Fragments sent by A (`from_a`) or B in `exchange`.
fn fragments_in(p: &Pair, from_a: bool, exchange: ExchangeType) -> usize {
    p.sent
        .iter()
        .filter(|(a, t)| *a == from_a && skf(t).is_some_and(|(h, _)| h.exchange == exchange))
        .count()
}

#[test]
fn ike_fragmented_ike_auth_and_create_child_sa_both_directions() {
    for (seed, ike) in [(1, IKE[0]), (2, IKE[3])] {
        for a_initiates in [true, false] {
            let mut p = frag_pair(seed, ike, true, true);
            establish(&mut p, a_initiates);
            // IKE_AUTH request and response both came in fragments.
            assert!(fragments_in(&p, true, ExchangeType::IKE_AUTH) >= 2, "{ike}");
            assert!(
                fragments_in(&p, false, ExchangeType::IKE_AUTH) >= 2,
                "{ike}"
            );
            for (_, t) in &p.sent {
                // RFC 7383 §2.5.1: every datagram within the size (IPv4
                // and UDP headers), never a fragmented IKE_SA_INIT.
                if let Some((h, f)) = skf(t) {
                    assert!(
                        t.datagram().len() + 28 <= usize::from(SIZE),
                        "{}",
                        t.payload.len()
                    );
                    assert_ne!(h.exchange, ExchangeType::IKE_SA_INIT);
                    assert!(f.number >= 1 && f.number <= f.total);
                }
            }
            // CREATE_CHILD_SA, fragmented, from the side that did not
            // initiate (so both roles send fragmented requests).
            let before = p.a.child_sas()[0].id;
            if a_initiates {
                p.b.rekey_child(p.now, p.b.child_sas()[0].id).unwrap();
            } else {
                p.a.rekey_child(p.now, before).unwrap();
            }
            assert!(p.run_until(10_000, |p| p.up() && p.a.child_sas()[0].id != before));
            p.run_for(2_000);
            assert_children_match(&p);
            assert!(fragments_in(&p, true, ExchangeType::CREATE_CHILD_SA) >= 2);
            assert!(fragments_in(&p, false, ExchangeType::CREATE_CHILD_SA) >= 2);
            for ep in [&p.a, &p.b] {
                let s = &ep.stats().fragments;
                assert!(s.messages_reassembled >= 2, "{s:?}");
                assert!(s.messages_fragmented >= 2, "{s:?}");
                assert_eq!(s.refused, Default::default(), "{s:?}");
                assert_eq!(ep.reassembly_bytes(), 0);
            }
            // Small messages (the Delete of the old Child SA) went whole.
            assert!(p.sent.iter().any(|(_, t)| {
                skf(t).is_none()
                    && Message::decode(&t.payload)
                        .is_ok_and(|m| m.header.exchange == ExchangeType::INFORMATIONAL)
            }));
        }
    }
}

#[test]
fn ike_fragmentation_needs_both_sides() {
    for (a, b) in [(true, false), (false, true)] {
        let mut p = frag_pair(3, IKE[0], a, b);
        establish(&mut p, true);
        assert!(p.sent.iter().all(|(_, t)| skf(t).is_none()), "{a} {b}");
        for ep in [&p.a, &p.b] {
            assert_eq!(ep.stats().fragments.messages_fragmented, 0);
        }
    }
}

#[test]
fn ike_fragments_survive_loss_duplication_and_reordering() {
    for seed in 10..22 {
        let ike = IKE[(seed % 4) as usize];
        let mut p = frag_pair(seed, ike, true, true);
        p.impair = Impair {
            loss: 15,
            dup: 20,
            jitter_ms: 40,
            b_silent: false,
        };
        establish(&mut p, seed % 2 == 0);
        let reassembled: u64 = [&p.a, &p.b]
            .iter()
            .map(|e| e.stats().fragments.messages_reassembled)
            .sum();
        assert!(reassembled >= 2, "seed {seed}");
        for ep in [&p.a, &p.b] {
            assert_eq!(ep.reassembly_bytes(), 0, "seed {seed}");
        }
    }
}

/// The IKE_AUTH request's fragments: A's first attempt loses fragment 2;
/// the retransmission (all fragments again) completes it; B answers a
/// retransmission after that with its cached fragments.
#[test]
fn ike_lost_fragment_is_recovered_by_retransmission_and_response_fragments_are_replayed() {
    let mut p = frag_pair(4, IKE[0], true, true);
    p.a.initiate(p.now);
    // IKE_SA_INIT both ways.
    let init = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &init);
    let resp = p.b.poll_transmit().unwrap();
    deliver_to(&mut p.a, p.now, &resp);
    let first: Vec<Transmit> = std::iter::from_fn(|| p.a.poll_transmit()).collect();
    assert!(first.len() >= 2, "IKE_AUTH fragmented: {}", first.len());
    for (i, t) in first.iter().enumerate() {
        if i != 1 {
            deliver_to(&mut p.b, p.now, t);
        }
    }
    assert!(p.b.poll_transmit().is_none(), "incomplete: no answer");
    assert!(p.b.reassembly_bytes() > 0);
    // A retransmits every fragment, identical.
    p.now = p.now.plus(10_000);
    p.a.handle_timeout(p.now);
    let again: Vec<Transmit> = std::iter::from_fn(|| p.a.poll_transmit()).collect();
    assert_eq!(again, first, "a retransmission resends the same fragments");
    for t in &again {
        deliver_to(&mut p.b, p.now, t);
    }
    let dup =
        p.b.stats()
            .fragments
            .refused
            .get(FragmentRefusal::Duplicate);
    assert_eq!(dup, 1, "fragment 1 was held already");
    let answer: Vec<Transmit> = std::iter::from_fn(|| p.b.poll_transmit()).collect();
    assert!(answer.len() >= 2, "response fragmented: {}", answer.len());
    assert_eq!(p.b.reassembly_bytes(), 0);
    assert_eq!(p.b.child_sas().len(), 1);
    // The request once more: B replays its cached fragments, once.
    for t in &again {
        deliver_to(&mut p.b, p.now, t);
    }
    let replay: Vec<Transmit> = std::iter::from_fn(|| p.b.poll_transmit()).collect();
    assert_eq!(replay, answer);
    assert_eq!(p.b.stats().replayed_responses, 1);
    // A gets the response out of order.
    for t in answer.iter().rev() {
        deliver_to(&mut p.a, p.now, t);
    }
    assert_eq!(p.a.child_sas().len(), 1);
    assert_children_match(&p);
}

/// A's keys for hand-made fragments to B on the established pair.
struct Forger {
    tx: SkCipher,
    spi_i: u64,
    spi_r: u64,
}

impl Forger {
    fn new(p: &Pair) -> Self {
        let id = p.a.established_ike_sas()[0];
        let s = p.a.ike_sa_secrets(id).unwrap();
        Forger {
            tx: util::sk_cipher(&p.a, id, true),
            spi_i: s.spi_i,
            spi_r: s.spi_r,
        }
    }

    fn fragment(&mut self, id: u32, number: u16, total: u16, chunk: &[u8]) -> Vec<u8> {
        self.fragment_of(ExchangeType::INFORMATIONAL, id, number, total, chunk)
    }

    fn fragment_of(
        &mut self,
        exchange: ExchangeType,
        id: u32,
        number: u16,
        total: u16,
        chunk: &[u8],
    ) -> Vec<u8> {
        let hdr = Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange,
            flags: Flags::new(true, false),
            message_id: id,
        };
        let first = if number == 1 {
            PayloadType::NOTIFY
        } else {
            PayloadType::NONE
        };
        let mut r = rng(9);
        self.tx
            .seal_fragment(&hdr, first, number, total, chunk, &mut *r)
            .unwrap()
    }
}

#[test]
fn ike_hand_made_fragments_are_refused_by_reason_and_forged_ones_never_stored() {
    let mut p = frag_pair(5, IKE[0], true, true);
    establish(&mut p, true);
    let mut f = Forger::new(&p);
    let (local, remote): (std::net::SocketAddr, std::net::SocketAddr) =
        (B_ADDR.parse().unwrap(), A_ADDR.parse().unwrap());
    let now = p.now;
    let feed = |p: &mut Pair, d: &[u8]| p.b.handle_datagram(now, local, remote, d);
    let refused = |p: &Pair, r| p.b.stats().fragments.refused.get(r);
    // An INFORMATIONAL request with one status notify, in three pieces.
    let (first, inner) = encode_chain(&[Payload::Notify(Notify::new(
        NotifyType(40_000),
        vec![7; 30],
    ))])
    .unwrap();
    assert_eq!(first, PayloadType::NOTIFY);
    let pieces: Vec<&[u8]> = inner.chunks(inner.len().div_ceil(3)).collect();
    assert_eq!(pieces.len(), 3);
    let next = 2; // A's next request ID after IKE_AUTH (1).
                  // Field checks, before anything else.
    let d = f.fragment(next, 0, 3, pieces[0]);
    feed(&mut p, &d);
    let d = f.fragment(next, 4, 3, pieces[0]);
    feed(&mut p, &d);
    assert_eq!(refused(&p, FragmentRefusal::BadNumber), 2);
    let d = f.fragment(next, 1, 256, pieces[0]);
    feed(&mut p, &d);
    assert_eq!(refused(&p, FragmentRefusal::TooMany), 1);
    let d = f.fragment(next + 5, 1, 3, pieces[0]);
    feed(&mut p, &d);
    assert_eq!(refused(&p, FragmentRefusal::UnknownMessageId), 1);
    assert_eq!(p.b.reassembly_bytes(), 0);
    // Forged: a bit flipped in the ciphertext. Counted, nothing kept.
    let mut d = f.fragment(next, 1, 3, pieces[0]);
    let n = d.len();
    d[n - 20] ^= 1;
    let integrity = p.b.stats().integrity_failures;
    feed(&mut p, &d);
    assert_eq!(refused(&p, FragmentRefusal::Forged), 1);
    assert_eq!(p.b.stats().integrity_failures, integrity + 1);
    assert_eq!(p.b.reassembly_bytes(), 0);
    // A genuine first fragment is kept; its copy is a duplicate; a lower
    // total is dropped; a higher one restarts.
    let d = f.fragment(next, 1, 3, pieces[0]);
    feed(&mut p, &d);
    assert_eq!(p.b.reassembly_bytes(), pieces[0].len());
    feed(&mut p, &d);
    assert_eq!(refused(&p, FragmentRefusal::Duplicate), 1);
    let d2 = f.fragment(next, 2, 2, pieces[1]);
    feed(&mut p, &d2);
    assert_eq!(refused(&p, FragmentRefusal::TotalChanged), 1);
    // Forged fragments of the message being reassembled change nothing.
    let mut d3 = f.fragment(next, 3, 3, pieces[2]);
    d3[40] ^= 0x80;
    feed(&mut p, &d3);
    assert_eq!(refused(&p, FragmentRefusal::Forged), 2);
    assert_eq!(p.b.reassembly_bytes(), pieces[0].len());
    // The timeout drops the half-reassembled message.
    let later = now.plus(Fragmentation::DEFAULT_REASSEMBLY_TIMEOUT_MS);
    assert!(p.b.poll_timeout().is_some_and(|t| t <= later));
    p.b.handle_timeout(later);
    assert_eq!(refused(&p, FragmentRefusal::TimedOut), 1);
    assert_eq!(p.b.reassembly_bytes(), 0);
    // All three, out of order: B answers the reassembled request.
    let s0 = p.b.stats().fragments.clone();
    for (i, piece) in pieces.iter().enumerate().rev() {
        let d = f.fragment(next, i as u16 + 1, 3, piece);
        p.b.handle_datagram(later, local, remote, &d);
    }
    assert_eq!(
        p.b.stats().fragments.messages_reassembled,
        s0.messages_reassembled + 1
    );
    let rx = util::sk_cipher(&p.a, p.a.established_ike_sas()[0], false);
    let answered = std::iter::from_fn(|| p.b.poll_transmit()).any(|t| {
        let (h, _) = util::open_sk(&rx, &t.payload);
        (h.message_id, h.flags.response()) == (next, true)
    });
    assert!(answered, "the reassembled request is answered");
    assert_eq!(p.b.reassembly_bytes(), 0);
}

#[test]
fn ike_fragment_on_an_sa_without_fragmentation_is_refused() {
    let mut p = frag_pair(6, IKE[0], true, false);
    establish(&mut p, true);
    let mut f = Forger::new(&p);
    let d = f.fragment(2, 1, 1, &[0; 8]);
    p.b.handle_datagram(p.now, B_ADDR.parse().unwrap(), A_ADDR.parse().unwrap(), &d);
    let s = &p.b.stats().fragments;
    assert_eq!(s.refused.get(FragmentRefusal::NotNegotiated), 1);
    assert_eq!(s.fragments_received, 0);
}

/// Whoever completes IKE_SA_INIT holds keys: before IKE_AUTH a message may
/// reassemble to at most 16 KiB, however large `max_message_len` is.
#[test]
fn ike_fragments_before_authentication_are_capped_lower() {
    let mut p = frag_pair(7, IKE[0], true, true);
    p.a.initiate(p.now);
    let init = p.a.poll_transmit().unwrap();
    deliver_to(&mut p.b, p.now, &init);
    let resp = p.b.poll_transmit().unwrap();
    deliver_to(&mut p.a, p.now, &resp);
    while p.a.poll_transmit().is_some() {}
    // A holds the keys of the half-open SA B made.
    let id = p.a.ike_sa_ids()[0];
    let s = p.a.ike_sa_secrets(id).unwrap();
    let mut f = Forger {
        tx: util::sk_cipher(&p.a, id, true),
        spi_i: s.spi_i,
        spi_r: s.spi_r,
    };
    let (local, remote) = (resp.local, resp.remote);
    let chunk = [0u8; 200];
    let cap = Fragmentation::UNAUTHENTICATED_MAX_MESSAGE_LEN;
    let total = 100; // 20,000 octets: within max_message_len, over the cap.
    for n in 1..=total {
        let d = f.fragment_of(ExchangeType::IKE_AUTH, 1, n, total, &chunk);
        p.b.handle_datagram(p.now, local, remote, &d);
        assert!(p.b.reassembly_bytes() <= cap);
    }
    let s = &p.b.stats().fragments;
    // The fragment that would pass the cap drops the message; the rest of
    // it is refused at once.
    let kept = (cap / chunk.len()) as u16;
    let refused = u64::from(total - kept);
    assert_eq!(s.refused.get(FragmentRefusal::TooLarge), refused, "{s:?}");
    assert_eq!(s.fragments_received, u64::from(kept));
    assert_eq!(p.b.reassembly_bytes(), 0);
}
