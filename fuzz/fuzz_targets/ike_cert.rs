//! The certificate path of IKE_AUTH: arbitrary bytes as the inner payload
//! chain of an SK payload (first byte: the first payload type), whose
//! CERT payloads, identity and AUTH go through chain validation against
//! a fixed trust anchor, identity binding and signature verification
//! (RFC 7296 §3.6, §3.8, RFC 7427), as the engine runs them.
//!
//! The seeds (fuzz/seeds/ike_cert) are real chains under that anchor
//! (an ECDSA, an Ed25519 and an RSA leaf below an intermediate), so the
//! fuzzer starts from certificates webpki accepts; the anchor's private
//! key was discarded when they were made, and nothing signed the octets
//! below.
//!
//! Oracles: no panic; bounded time (libFuzzer's timeout); a refusal is
//! one of the counted reasons; no input is ever accepted, since nobody
//! holds a key for the octets the AUTH must sign (an Ok would be a
//! forgery or a check skipped).

#![no_main]

use std::sync::OnceLock;

use ike::cert::{CertCounts, TrustStore, MAX_CERTS};
use ike::message::{decode_chain, AuthPayload, CertEncoding, Payload, PayloadType};
use libfuzzer_sys::fuzz_target;

/// The fuzz CA's certificate (public; DER).
static CA: &[u8] = include_bytes!("../src/cert_fuzz_ca.der");
/// 2026-12-08, inside the seeds' validity.
const NOW: u64 = 1_796_688_000;

fn store() -> &'static TrustStore {
    static S: OnceLock<TrustStore> = OnceLock::new();
    S.get_or_init(|| {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64(CA)
        );
        TrustStore::new(&[pem.as_bytes()], &[]).expect("the fuzz CA loads")
    })
}

fn b64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            s.push(if i <= c.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    let Ok(ps) = decode_chain(PayloadType(first), chain, false) else {
        return;
    };
    let certs: Vec<&[u8]> = ps
        .iter()
        .filter_map(|p| match p {
            Payload::Cert(c) if c.encoding == CertEncoding::X509_SIGNATURE => {
                Some(c.data.as_slice())
            }
            _ => None,
        })
        .collect();
    let id = ps.iter().find_map(|p| match p {
        Payload::IdI(i) | Payload::IdR(i) => Some(i.clone()),
        _ => None,
    });
    let auth = ps
        .iter()
        .find_map(|p| match p {
            Payload::Auth(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or(AuthPayload {
            method: ike::message::AuthMethod::DIGITAL_SIGNATURE,
            data: Vec::new(),
        });
    let Some(id) = id else { return };
    let trust = store();
    // The full check, as the engine runs it.
    let octets = [b"octets nobody signed".as_slice(), data].concat();
    let r = trust.verify(&certs, NOW, &id, &octets, &auth);
    let Err(e) = r else {
        panic!("accepted an AUTH nobody could sign: {certs:?}");
    };
    let mut counts = CertCounts::default();
    counts.count(e);
    assert_eq!(counts.fields().iter().map(|f| f.1).sum::<u64>(), 1);
    // Chain validation alone, so mutated chains reach webpki whatever the
    // signature (bounded like the engine's: at most MAX_CERTS).
    if let Some((leaf, rest)) = certs.split_first() {
        if certs.len() <= MAX_CERTS {
            let _ = trust.verify_chain(leaf, rest, NOW);
        }
    }
});
