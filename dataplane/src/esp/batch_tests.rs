//! The batched crypto path (ipsec-mb's multi-buffer job API) against the
//! one-packet path: a burst's packets are prepared in turn, sealed or
//! opened in one [`CryptoBatch`](crate::crypto::CryptoBatch) and finished
//! in order, as the gateway's node does it, and every packet must come out
//! exactly as it does one at a time: the same bytes, the same drop reason,
//! the same replay window.

use proptest::prelude::*;

use crate::buf::{HeapBuf, PacketBuf};
use crate::crypto::{Algorithm, Backend, BatchStore, Encryption, Integrity};
use crate::wire::udp_encap::NAT_T_PORT;

use super::tests::{sa_pair_spi, topo, udp_packet, Case};
use super::*;

fn alg(encryption: Encryption, integrity: Integrity) -> Algorithm {
    Algorithm {
        encryption,
        integrity,
    }
}

/// SAs of every kind the batch handles, and one it does not (AES-GCM,
/// one packet at a time), all on ipsec-mb.
fn cases() -> Vec<Case> {
    let case = |a, mode, inner_v4, outer_v4, udp, esn| Case {
        alg: a,
        backend: Backend::IpsecMb,
        mode,
        inner_v4,
        outer_v4,
        udp,
        esn,
    };
    use Encryption as E;
    use Integrity as I;
    vec![
        case(
            alg(E::AesCbc128, I::HmacSha256_128),
            Mode::Tunnel,
            true,
            true,
            false,
            false,
        ),
        case(
            alg(E::AesCbc256, I::HmacSha512_256),
            Mode::Transport,
            false,
            false,
            false,
            true,
        ),
        case(
            alg(E::Null, I::HmacSha384_192),
            Mode::Tunnel,
            false,
            true,
            true,
            false,
        ),
        case(
            Algorithm::AES_GCM_128,
            Mode::Tunnel,
            true,
            true,
            false,
            false,
        ),
        case(
            alg(E::AesCbc128, I::HmacSha384_192),
            Mode::Tunnel,
            true,
            false,
            true,
            true,
        ),
    ]
}

const SPI0: u32 = 0x2000;

/// An engine with the outbound SAs of `cases` (slot `i`, SPI `SPI0 + i`)
/// and two engines with the same inbound SAs.
fn engines(cases: &[Case]) -> (EspEngine, EspEngine, EspEngine) {
    let mut out = EspEngine::new();
    let mut in1 = EspEngine::new();
    let mut in2 = EspEngine::new();
    for (i, c) in cases.iter().enumerate() {
        let spi = SPI0 + i as u32;
        let (o, a) = sa_pair_spi(*c, c.backend, spi, |_| {});
        let (_, b) = sa_pair_spi(*c, c.backend, spi, |_| {});
        assert_eq!(o.is_batched(), !c.alg.is_aead(), "{c:?}");
        out.install_outbound(SaRef(i as u32), o);
        in1.install_inbound(a);
        in2.install_inbound(b);
    }
    (out, in1, in2)
}

fn inner(c: &Case, len: usize, fill: u8) -> Vec<u8> {
    let t = topo(c.inner_v4, c.outer_v4);
    udp_packet(t.host_a, t.host_b, 4000, 53, len, fill)
}

type Outcome = Result<Vec<u8>, DropReason>;

/// Outbound one packet at a time ([`EspEngine::encapsulate`]).
fn seal_each(e: &mut EspEngine, pkts: &[(SaRef, Vec<u8>)]) -> Vec<Outcome> {
    pkts.iter()
        .map(|(slot, p)| {
            let mut b = HeapBuf::from_slice(p);
            e.encapsulate(*slot, &mut b, &mut |_| {})
                .map(|()| b.data().to_vec())
        })
        .collect()
}

/// Outbound as a burst: prepare each, seal the batch, finish each.
fn seal_batched(
    e: &mut EspEngine,
    store: &mut BatchStore,
    pkts: &[(SaRef, Vec<u8>)],
) -> Vec<Outcome> {
    let mut ready: Vec<_> = pkts
        .iter()
        .map(|(slot, p)| {
            let mut b = HeapBuf::from_slice(p);
            let r = e.encapsulate_or_defer(*slot, &mut b, &mut |_| {});
            (*slot, b, r)
        })
        .collect();
    let mut idx = vec![None; ready.len()];
    let results: Vec<_> = {
        let mut batch = store.batch();
        for (i, (slot, b, r)) in ready.iter_mut().enumerate() {
            if let Ok(Some(s)) = r {
                let keys = e.outbound(*slot).unwrap().batch_keys().unwrap();
                let len = b.len();
                let esp = &mut b.data_mut()[s.esp_range(len)];
                idx[i] = Some(batch.seal(keys, esp, s.esn_high()).unwrap());
            }
        }
        batch.run();
        (0..batch.len()).map(|i| batch.result(i)).collect()
    };
    ready
        .into_iter()
        .zip(idx)
        .map(|((slot, mut b, r), i)| match r {
            Err(d) => Err(d),
            Ok(None) => Ok(b.data().to_vec()),
            Ok(Some(s)) => e
                .finish_sealed(slot, &mut b, &s, results[i.unwrap()])
                .map(|()| b.data().to_vec()),
        })
        .collect()
}

fn decrypted(r: Result<InboundOutcome, DropReason>, b: &HeapBuf) -> Outcome {
    match r? {
        InboundOutcome::Decrypted(_) => Ok(b.data().to_vec()),
        other => panic!("not ESP: {other:?}"),
    }
}

/// Inbound one packet at a time ([`EspEngine::decapsulate`]).
fn open_each(e: &mut EspEngine, pkts: &[Vec<u8>]) -> Vec<Outcome> {
    pkts.iter()
        .map(|p| {
            let mut b = HeapBuf::from_slice(p);
            let loc = locate_esp(b.data(), NAT_T_PORT);
            let r = e.decapsulate(&mut b, loc, &mut |_| {});
            decrypted(r, &b)
        })
        .collect()
}

/// Inbound as a burst: check each, open the batch, finish each in order.
fn open_batched(e: &mut EspEngine, store: &mut BatchStore, pkts: &[Vec<u8>]) -> Vec<Outcome> {
    let mut ready: Vec<_> = pkts
        .iter()
        .map(|p| {
            let mut b = HeapBuf::from_slice(p);
            let loc = locate_esp(b.data(), NAT_T_PORT);
            let d = e.decapsulate_or_defer(&mut b, loc, &mut |_| {});
            (b, d)
        })
        .collect();
    let mut idx = vec![None; ready.len()];
    let results: Vec<_> = {
        let mut batch = store.batch();
        for (i, (b, d)) in ready.iter_mut().enumerate() {
            if let Deferral::Deferred(o) = d {
                if let Some(range) = o.esp_range() {
                    let keys = e.inbound().batch_keys(o.spi()).unwrap();
                    let esp = &mut b.data_mut()[range];
                    idx[i] = Some(batch.open(keys, esp, o.esn_high()).unwrap());
                }
            }
        }
        batch.run();
        (0..batch.len()).map(|i| batch.result(i)).collect()
    };
    ready
        .into_iter()
        .zip(idx)
        .map(|((mut b, d), i)| match d {
            Deferral::Done(r) => decrypted(r, &b),
            Deferral::Deferred(o) => {
                let crypto = i.map_or(Err(crate::crypto::CryptoError::BadLength), |i| results[i]);
                let r = e.finish_opened(&mut b, &o, crypto, &mut |_| {});
                decrypted(r, &b)
            }
        })
        .collect()
}

/// Seals `pkts` one at a time and again as a batch from the same
/// sequence numbers (each SA's counter wound back in between), checks that
/// both give the same bytes but for the outer IPv4 identification and
/// header checksum (an SA's counter of its own, which is not wound back),
/// and returns the batch's.
fn seal_both(
    e: &mut EspEngine,
    store: &mut BatchStore,
    cases: &[Case],
    pkts: &[(SaRef, Vec<u8>)],
) -> Vec<Outcome> {
    let last: Vec<u64> = (0..cases.len())
        .map(|i| e.outbound(SaRef(i as u32)).unwrap().last_seq())
        .collect();
    let each = seal_each(e, pkts);
    for (i, l) in last.iter().enumerate() {
        e.outbound_mut(SaRef(i as u32))
            .unwrap()
            .resume_seq_after(*l);
    }
    let batched = seal_batched(e, store, pkts);
    let mask = |slot: SaRef, r: &Outcome| {
        let c = cases[slot.0 as usize];
        r.clone().map(|mut p| {
            if c.mode == Mode::Tunnel && c.outer_v4 {
                p[4..6].fill(0);
                p[10..12].fill(0);
            }
            p
        })
    };
    for (k, ((slot, _), (a, b))) in pkts.iter().zip(each.iter().zip(&batched)).enumerate() {
        assert_eq!(
            mask(*slot, a),
            mask(*slot, b),
            "packet {k} on {:?}",
            cases[slot.0 as usize]
        );
    }
    batched
}

fn corrupt_icv(p: &mut [u8]) {
    let n = p.len();
    p[n - 1] ^= 0x80;
}

/// A burst mixing SAs of every batched kind (and an AEAD SA that is not
/// batched), sizes from 0 to 1400 bytes, a forged packet in the middle:
/// sealed as a batch it is what one packet at a time gives; opened as a
/// batch every packet comes out as sent but the forged one, dropped for
/// its ICV alone.
#[test]
fn mixed_burst_with_a_forged_packet_in_the_middle() {
    let cases = cases();
    let (mut out, mut in1, mut in2) = engines(&cases);
    let mut store = BatchStore::default();
    let plain: Vec<(SaRef, Vec<u8>)> = (0..48)
        .map(|i| {
            let slot = i % cases.len();
            let len = (i * 211) % 1401;
            (SaRef(slot as u32), inner(&cases[slot], len, i as u8))
        })
        .collect();
    let sealed = seal_both(&mut out, &mut store, &cases, &plain);
    let mut wire: Vec<Vec<u8>> = sealed.into_iter().map(Result::unwrap).collect();
    const FORGED: usize = 17;
    corrupt_icv(&mut wire[FORGED]);
    let batched = open_batched(&mut in1, &mut store, &wire);
    let each = open_each(&mut in2, &wire);
    assert_eq!(batched, each);
    for (k, (r, (_, p))) in batched.iter().zip(&plain).enumerate() {
        if k == FORGED {
            assert_eq!(r, &Err(DropReason::AuthFailed));
        } else {
            assert_eq!(r.as_ref(), Ok(p), "packet {k}");
        }
    }
    for (i, _) in cases.iter().enumerate() {
        let spi = Spi::new(SPI0 + i as u32).unwrap();
        let (a, b) = (
            in1.inbound().get(spi).unwrap(),
            in2.inbound().get(spi).unwrap(),
        );
        assert_eq!(a.replay_top(), b.replay_top());
        assert_eq!(a.counters.packets, b.counters.packets);
        assert_eq!(a.counters.drops, b.counters.drops);
    }
}

/// RFC 4303 §3.4.3 with many packets of one SA in one batch: copies of a
/// sequence number after the first are replays (even one whose ICV is
/// wrong), and a forged packet with a far higher number, whose ICV fails,
/// moves the window nowhere.
#[test]
fn duplicates_in_one_burst_only_the_first_is_accepted() {
    for slot in [0usize, 1, 4] {
        let cases = cases();
        let c = cases[slot];
        let (mut out, mut in1, mut in2) = engines(&cases);
        let plain: Vec<(SaRef, Vec<u8>)> = (0..6)
            .map(|i| (SaRef(slot as u32), inner(&c, 100 + i * 50, i as u8)))
            .collect();
        let p: Vec<Vec<u8>> = seal_each(&mut out, &plain)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let mut forged_dup = p[1].clone();
        corrupt_icv(&mut forged_dup);
        // p[0] with its sequence number raised to 1000: the ICV fails.
        let mut forged_far = p[0].clone();
        let esp = match locate_esp(&forged_far, NAT_T_PORT).unwrap() {
            EspLocation::Esp { esp_offset, .. } => esp_offset,
            other => panic!("{other:?}"),
        };
        forged_far[esp + 4..esp + 8].copy_from_slice(&1000u32.to_be_bytes());
        let burst = vec![
            forged_far,
            p[0].clone(),
            p[1].clone(),
            p[1].clone(),
            p[2].clone(),
            forged_dup,
            p[3].clone(),
            p[0].clone(),
            p[5].clone(),
            p[4].clone(),
            p[5].clone(),
        ];
        let mut store = BatchStore::default();
        let batched = open_batched(&mut in1, &mut store, &burst);
        let each = open_each(&mut in2, &burst);
        assert_eq!(batched, each, "{c:?}");
        let verdicts: Vec<_> = batched.iter().map(|r| r.as_ref().err().copied()).collect();
        use DropReason::{AuthFailed, Replay};
        assert_eq!(
            verdicts,
            [
                Some(AuthFailed),
                None,
                None,
                Some(Replay),
                None,
                Some(Replay),
                None,
                Some(Replay),
                None,
                None,
                Some(Replay)
            ],
            "{c:?}"
        );
        let spi = Spi::new(SPI0 + slot as u32).unwrap();
        assert_eq!(in1.inbound().get(spi).unwrap().replay_top(), 6, "{c:?}");
        assert_eq!(in1.inbound().get(spi).unwrap().counters.packets, 6);
    }
}

/// ESN (RFC 4303 §2.2.1, Appendix A): a batch whose sequence numbers
/// cross 2^32 seals as one packet at a time does (the high bits in the
/// ICV, not on the wire), and opens with the high bits inferred, the
/// window ending past 2^32.
#[test]
fn esn_batch_across_the_32_bit_boundary() {
    let cases = cases();
    let (mut out, mut in1, mut in2) = engines(&cases);
    let start = (1u64 << 32) - 3;
    let slots = [1usize, 4];
    for &s in &slots {
        out.outbound_mut(SaRef(s as u32))
            .unwrap()
            .resume_seq_after(start);
        let spi = Spi::new(SPI0 + s as u32).unwrap();
        for e in [&mut in1, &mut in2] {
            e.inbound_mut()
                .get_mut(spi)
                .unwrap()
                .resume_replay_after(start - 7);
        }
    }
    let plain: Vec<(SaRef, Vec<u8>)> = (0..16)
        .map(|i| {
            let s = slots[i % 2];
            (SaRef(s as u32), inner(&cases[s], 64 + 90 * i, i as u8))
        })
        .collect();
    let mut store = BatchStore::default();
    let wire: Vec<Vec<u8>> = seal_both(&mut out, &mut store, &cases, &plain)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let batched = open_batched(&mut in1, &mut store, &wire);
    assert_eq!(batched, open_each(&mut in2, &wire));
    for (r, (_, p)) in batched.iter().zip(&plain) {
        assert_eq!(r.as_ref(), Ok(p));
    }
    for &s in &slots {
        let spi = Spi::new(SPI0 + s as u32).unwrap();
        assert_eq!(in1.inbound().get(spi).unwrap().replay_top(), start + 8);
    }
}

#[derive(Debug, Clone, Copy)]
enum Twist {
    None,
    CorruptIcv,
    /// Again, a copy of the packet this many before it.
    Repeat(usize),
    /// Truncated by this many bytes (a length the SA refuses).
    Truncate(usize),
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        6 => Just(Twist::None),
        1 => Just(Twist::CorruptIcv),
        2 => (1usize..8).prop_map(Twist::Repeat),
        1 => (1usize..20).prop_map(Twist::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any burst of any mix of SAs, sizes, forgeries, copies and
    /// truncations: the batch gives what one packet at a time gives, byte
    /// for byte and reason for reason, and leaves the same windows and
    /// counters.
    #[test]
    fn batch_equals_one_packet_at_a_time(
        pkts in proptest::collection::vec((0usize..5, 0usize..1500, twist()), 1..80),
        reorder in any::<bool>(),
    ) {
        let cases = cases();
        let (mut out, mut in1, mut in2) = engines(&cases);
        let mut store = BatchStore::default();
        let plain: Vec<(SaRef, Vec<u8>)> = pkts
            .iter()
            .enumerate()
            .map(|(i, &(s, len, _))| (SaRef(s as u32), inner(&cases[s], len, i as u8)))
            .collect();
        let sealed = seal_both(&mut out, &mut store, &cases, &plain);
        let mut wire: Vec<Vec<u8>> = Vec::new();
        for (k, (r, &(_, _, t))) in sealed.iter().zip(&pkts).enumerate() {
            let mut p = r.clone().unwrap();
            match t {
                Twist::None => {}
                Twist::CorruptIcv => corrupt_icv(&mut p),
                Twist::Repeat(back) => {
                    if let Some(prev) = k.checked_sub(back).and_then(|j| sealed[j].clone().ok()) {
                        wire.push(prev);
                    }
                }
                Twist::Truncate(n) => {
                    let keep = p.len().saturating_sub(n);
                    p.truncate(keep);
                    // The outer length fields still claim the old length:
                    // the packet is refused before any SA sees it, or by
                    // the SA's length checks.
                }
            }
            wire.push(p);
        }
        if reorder {
            // Late packets: the second half first.
            let half = wire.len() / 2;
            wire.rotate_left(half);
        }
        let batched = open_batched(&mut in1, &mut store, &wire);
        let each = open_each(&mut in2, &wire);
        prop_assert_eq!(&batched, &each);
        for (i, _) in cases.iter().enumerate() {
            let spi = Spi::new(SPI0 + i as u32).unwrap();
            let (a, b) = (in1.inbound().get(spi).unwrap(), in2.inbound().get(spi).unwrap());
            prop_assert_eq!(a.replay_top(), b.replay_top());
            prop_assert_eq!(a.counters.packets, b.counters.packets);
            prop_assert_eq!(a.counters.drops, b.counters.drops);
        }
    }
}

/// Not a test: the crypto alone, in ns per packet, of every CBC/NULL+HMAC
/// suite at 64, 512 and 1420 bytes of payload: ipsec-mb in batches of 32
/// (as the node runs a burst) against aws-lc-rs one packet at a time (the
/// default before batching) (`cargo test -p espresso-dataplane --profile
/// ci batch_crypto_probe -- --ignored --nocapture`). Medians of 15 rounds.
#[test]
#[ignore = "a measurement that prints ns per packet, run by hand"]
fn batch_crypto_probe() {
    use crate::crypto::{new_transform, SaKeys};
    use std::time::Instant;
    const N: usize = 32;
    const ROUNDS: usize = 15;
    const REPS: usize = 64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for a in Algorithm::ALL.into_iter().filter(|a| !a.is_aead()) {
        let keys = SaKeys::new(
            &vec![7; a.encryption.key_len()],
            &vec![9; a.integrity.key_len()],
        );
        let mb = new_transform(Backend::IpsecMb, a, &keys).unwrap();
        let mut lc = new_transform(Backend::AwsLc, a, &keys).unwrap();
        let k = mb.batch_keys().unwrap();
        for size in [64usize, 512, 1420] {
            let pay = size.div_ceil(16) * 16;
            let (iv, icv) = (a.iv_len(), a.icv_len());
            let len = 8 + iv + pay + icv;
            let mut bufs = vec![vec![0x5au8; len]; N];
            let mut store = BatchStore::default();
            let mut t_batch = Vec::new();
            let mut t_one = Vec::new();
            for _ in 0..ROUNDS {
                let t = Instant::now();
                for _ in 0..REPS {
                    let mut batch = store.batch();
                    for b in bufs.iter_mut() {
                        batch.seal(k, b, None).unwrap();
                    }
                    batch.run();
                }
                t_batch.push(t.elapsed().as_nanos() as f64 / (REPS * N) as f64);
                let t = Instant::now();
                for _ in 0..REPS {
                    for b in bufs.iter_mut() {
                        let (hdr, rest) = b.split_at_mut(8);
                        let (ivs, rest) = rest.split_at_mut(iv);
                        let (p, c) = rest.split_at_mut(pay);
                        let hdr: &[u8; 8] = (&*hdr).try_into().unwrap();
                        lc.seal(hdr, None, ivs, p, c).unwrap();
                    }
                }
                t_one.push(t.elapsed().as_nanos() as f64 / (REPS * N) as f64);
            }
            eprintln!(
                "{:?}/{:?} {size:>5} B seal: ipsec-mb batch {:>7.0} ns, aws-lc one by one {:>7.0} ns",
                a.encryption,
                a.integrity,
                median(t_batch),
                median(t_one)
            );
        }
    }
}
