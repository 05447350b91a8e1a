//! Certificate authentication between two engines (RFC 7296 §2.15,
//! §3.6–§3.8, RFC 7427): every key type, both roles, and the refusals,
//! each answered with AUTHENTICATION_FAILED and counted by reason.

use std::sync::Arc;

use rcgen::SanType;

use super::util::*;
use super::{ESP, IKE};
use crate::cert::tests::{key_for, Ca, NOW};
use crate::cert::{sig::KeyType, LocalCredential, TrustStore};
use crate::config::{LocalAuth, RemoteAuth};
use crate::sim::config;
use crate::{Config, DownReason, IkeEvent};

/// A credential for `name` (its FQDN SAN) issued by `ca`, serial `serial`.
fn credential(ca: &Ca, name: &str, kt: KeyType, serial: u64) -> Arc<LocalCredential> {
    let k = key_for(kt);
    let pem = ca.leaf(
        name,
        vec![SanType::DnsName(name.try_into().unwrap())],
        &k,
        serial,
        None,
    );
    Arc::new(LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap())
}

fn trust(ca: &Ca, crls: &[&[u8]]) -> Arc<TrustStore> {
    Arc::new(TrustStore::new(&[ca.pem().as_bytes()], crls).unwrap())
}

/// A (initiator, gw-a.example) and B (gw-b.example) with certificates of
/// `ka` and `kb` from one CA, each trusting it.
fn configs(ca: &Ca, ka: KeyType, kb: KeyType) -> (Config, Config) {
    let mut a = config(true, &[IKE[0]], &[ESP[0]]);
    let mut b = config(false, &[IKE[0]], &[ESP[0]]);
    a.local_auth = LocalAuth::Pubkey(credential(ca, "gw-a.example", ka, 1));
    b.local_auth = LocalAuth::Pubkey(credential(ca, "gw-b.example", kb, 2));
    for c in [&mut a, &mut b] {
        c.remote_auth = RemoteAuth::Pubkey(trust(ca, &[]));
        c.unix_time_at_origin_ms = NOW * 1000;
    }
    (a, b)
}

fn down_reason(ev: &[IkeEvent]) -> Option<DownReason> {
    ev.iter().find_map(|e| match e {
        IkeEvent::IkeSaDown { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn cert_auth_every_algorithm_both_roles() {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let kinds = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa,
        KeyType::Ed25519,
    ];
    for (i, &ka) in kinds.iter().enumerate() {
        // Each key type against a different one, so every scheme is both
        // produced and verified in each role.
        let kb = kinds[(i + 1) % kinds.len()];
        let (a, b) = configs(&ca, ka, kb);
        let mut p = Pair::new(600 + i as u64, a, b);
        p.a.initiate(p.now);
        assert!(p.run_until(10_000, |p| p.up()), "{ka:?} vs {kb:?}");
        assert_children_match(&p);
        for s in [p.a.stats(), p.b.stats()] {
            assert_eq!(s.auth_failures, 0);
            assert_eq!(s.cert, Default::default());
        }
    }
}

#[test]
fn cert_auth_mixed_with_psk() {
    // A signs, B proves itself by PSK: each side's method is its own.
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let (mut a, mut b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    a.remote_auth = RemoteAuth::Psk;
    b.local_auth = LocalAuth::Psk;
    let mut p = Pair::new(610, a, b);
    p.a.initiate(p.now);
    assert!(p.run_until(10_000, |p| p.up()));
}

/// Runs one refusal: the side named by `b_refuses` refuses the other's
/// certificate, counts `reason`, and A's IKE SA goes down with
/// AUTHENTICATION_FAILED.
fn refused(seed: u64, a: Config, b: Config, b_refuses: bool, reason: &str) {
    let mut p = Pair::new(seed, a, b);
    p.a.initiate(p.now);
    p.run_for(5_000);
    assert!(!p.up(), "{reason}");
    let refuser = if b_refuses { p.b.stats() } else { p.a.stats() };
    assert_eq!(refuser.auth_failures, 1, "{reason}");
    let counted = refuser.cert.fields();
    assert_eq!(
        counted.iter().find(|(k, _)| *k == reason).unwrap().1,
        1,
        "{reason}: {counted:?}"
    );
    assert_eq!(counted.iter().map(|c| c.1).sum::<u64>(), 1, "{counted:?}");
    assert_eq!(
        down_reason(&p.ev_a),
        Some(DownReason::AuthenticationFailed),
        "{reason}"
    );
    assert!(p.a.child_sas().is_empty());
    if b_refuses {
        assert!(p.b.child_sas().is_empty());
    }
}

#[test]
fn cert_auth_refusals_counted_by_reason() {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let other = Ca::new("Other Root", &rcgen::PKCS_ECDSA_P256_SHA256);

    // B trusts another CA: A's chain is untrusted.
    let (a, mut b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    b.remote_auth = RemoteAuth::Pubkey(trust(&other, &[]));
    refused(620, a, b, true, "cert_untrusted");

    // A (initiator) trusts another CA: B's chain is untrusted, A gives up.
    let (mut a, b) = configs(&ca, KeyType::Ed25519, KeyType::Rsa);
    a.remote_auth = RemoteAuth::Pubkey(trust(&other, &[]));
    refused(621, a, b, false, "cert_untrusted");

    // A's certificate is revoked in B's CRL (serial 1).
    let (a, mut b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    b.remote_auth = RemoteAuth::Pubkey(trust(&ca, &[&ca.crl(&[1])]));
    refused(622, a, b, true, "cert_revoked");

    // A's certificate names another host than the identity it claims.
    let (mut a, b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    a.local_auth = LocalAuth::Pubkey(credential(&ca, "intruder.example", KeyType::EcdsaP256, 3));
    refused(623, a, b, true, "cert_identity_mismatch");

    // B's clock says 2040: A's certificate expired.
    let (a, mut b) = configs(&ca, KeyType::EcdsaP384, KeyType::EcdsaP256);
    b.unix_time_at_origin_ms = 2_208_988_800_000;
    refused(624, a, b, true, "cert_expired");

    // B wants a certificate, A authenticates by PSK.
    let (mut a, b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    a.local_auth = LocalAuth::Psk;
    refused(625, a, b, true, "cert_method_mismatch");

    // A's key signs, but with a certificate of another key: the AUTH
    // signature does not verify with the certificate's public key.
    let (mut a, b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
    let signer = credential(&ca, "gw-a.example", KeyType::EcdsaP256, 4);
    let shown = credential(&ca, "gw-a.example", KeyType::EcdsaP256, 5);
    a.local_auth = LocalAuth::Pubkey(Arc::new(signer.with_chain_for_test(&shown)));
    refused(626, a, b, true, "cert_bad_signature");
}

/// A rogue initiator with a good certificate rewrites the CERT and CERTREQ
/// payloads of its own IKE_AUTH request: B refuses with
/// AUTHENTICATION_FAILED and counts each kind of damage.
#[test]
fn cert_auth_hostile_cert_payloads_refused_and_counted() {
    use crate::message::*;
    use crate::Transmit;

    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    // Each case turns A's inner IKE_AUTH payloads into hostile ones and
    // names the counters B must show.
    type Tamper = fn(&mut Vec<Payload>);
    let cases: [(Tamper, &[&str]); 4] = [
        (
            // The leaf repeated: more certificates than accepted.
            |ps| {
                let leaf = ps
                    .iter()
                    .find(|p| matches!(p, Payload::Cert(_)))
                    .unwrap()
                    .clone();
                for _ in 0..crate::cert::MAX_CERTS {
                    ps.insert(1, leaf.clone());
                }
            },
            &["cert_chain_too_long"],
        ),
        (
            // The leaf's DER cut short.
            |ps| {
                for p in ps.iter_mut() {
                    if let Payload::Cert(c) = p {
                        c.data.truncate(c.data.len() / 2);
                    }
                }
            },
            &["cert_malformed"],
        ),
        (
            // Only a CRL-encoded CERT and a CERTREQ that is not SHA-1 hashes.
            |ps| {
                for p in ps.iter_mut() {
                    if let Payload::Cert(c) = p {
                        c.encoding = CertEncoding::CRL;
                    }
                    if let Payload::CertReq(r) = p {
                        r.data.push(0);
                    }
                }
            },
            &[
                "cert_no_certificate",
                "cert_payloads_ignored",
                "certreq_ignored",
            ],
        ),
        (
            // The AUTH signature altered.
            |ps| {
                for p in ps.iter_mut() {
                    if let Payload::Auth(a) = p {
                        let n = a.data.len() - 5;
                        a.data[n] ^= 0x40;
                    }
                }
            },
            &["cert_bad_signature"],
        ),
    ];
    for (i, (tamper, counters)) in cases.into_iter().enumerate() {
        let (a, b) = configs(&ca, KeyType::EcdsaP256, KeyType::EcdsaP256);
        let mut p = Pair::new(630 + i as u64, a, b);
        let id = p.a.initiate(p.now);
        let init = p.a.poll_transmit().unwrap();
        deliver_to(&mut p.b, p.now, &init);
        let resp = p.b.poll_transmit().unwrap();
        deliver_to(&mut p.a, p.now, &resp);
        let auth = p.a.poll_transmit().unwrap();
        let (hdr, mut ps) = open_sk(&sk_cipher(&p.a, id, true), &auth.payload);
        assert!(
            ps.iter().any(|p| matches!(p, Payload::CertReq(_))),
            "{ps:?}"
        );
        tamper(&mut ps);
        let forged = Transmit {
            payload: seal_sk(&mut sk_cipher(&p.a, id, true), &hdr, &ps),
            ..auth.clone()
        };
        deliver_to(&mut p.b, p.now, &forged);
        let reply = p.b.poll_transmit().expect("B answers");
        let (_, rps) = open_sk(&sk_cipher(&p.a, id, false), &reply.payload);
        assert!(
            find_notify(&rps, NotifyType::AUTHENTICATION_FAILED).is_some(),
            "case {i}: {rps:?}"
        );
        let s = p.b.stats();
        assert_eq!(s.auth_failures, 1, "case {i}");
        let fields = s.cert.fields();
        for (k, v) in fields {
            let want = u64::from(counters.contains(&k));
            assert_eq!(v, want, "case {i}: {k} in {fields:?}");
        }
        assert!(p.b.child_sas().is_empty());
    }
}

/// The AlgorithmIdentifier strongSwan puts in a method-14 AUTH for
/// RSASSA-PSS with `hash` (SHA-2 OID last octet: 1, 2 or 3), MGF1 with the
/// same hash and a salt of `salt` octets (RFC 7427 A.4.3 pattern).
fn pss_ai(hash: u8, salt: u8) -> Vec<u8> {
    let h = [
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, hash, 0x05, 0x00,
    ];
    let mut params = vec![0xa0, 0x0f];
    params.extend_from_slice(&h);
    params.extend_from_slice(&[0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09]);
    params.extend_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08]);
    params.extend_from_slice(&h);
    params.extend_from_slice(&[0xa2, 0x03, 0x02, 0x01, salt]);
    let mut ai = vec![0x30, 0x41, 0x06, 0x09];
    ai.extend_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]);
    ai.extend_from_slice(&[0x30, params.len() as u8]);
    ai.extend_from_slice(&params);
    ai
}

/// strongSwan signs with RSASSA-PSS over SHA-384 (salt 48) when its RSA
/// key has 3072 bits or more, as in the `fragcerts` interop scenario with
/// RSA-4096 certificates: such an AUTH must verify (it was refused as an
/// unsupported scheme, so every strongSwan peer with an RSA-4096
/// certificate got AUTHENTICATION_FAILED). SHA-512 likewise; a salt that
/// does not match the hash is still refused.
#[test]
fn cert_rsa4096_pss_sha384_and_sha512_auth_verified() {
    use crate::message::{AuthMethod, AuthPayload};
    use aws_lc_rs::{rand::SystemRandom, signature as awssig};
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let k = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        .unwrap();
    let name = "gw-b.example";
    let pem = ca.leaf(
        name,
        vec![SanType::DnsName(name.try_into().unwrap())],
        &k,
        9,
        None,
    );
    let cred = LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
    let leaf = cred.certificates()[0].clone();
    let store = trust(&ca, &[]);
    let rsa = awssig::RsaKeyPair::from_pkcs8(&k.serialize_der()).unwrap();
    let octets = b"the InitiatorSignedOctets of RFC 7296 section 2.15";
    let id = crate::message::Identification::Fqdn(name.into());
    // (last octet of the hash OID, salt, how it is really signed, verifies)
    for (hash, salt, alg, good) in [
        (1, 32, &awssig::RSA_PSS_SHA256, true),
        (2, 48, &awssig::RSA_PSS_SHA384, true),
        (3, 64, &awssig::RSA_PSS_SHA512, true),
        // The AI says SHA-384, the signature is SHA-512's.
        (2, 48, &awssig::RSA_PSS_SHA512, false),
        // A salt that is not the hash's length: not a scheme we verify.
        (2, 32, &awssig::RSA_PSS_SHA384, false),
    ] {
        let mut s = vec![0; rsa.public_modulus_len()];
        assert_eq!(s.len(), 512, "a 4096-bit key");
        rsa.sign(alg, &SystemRandom::new(), octets, &mut s).unwrap();
        let ai = pss_ai(hash, salt);
        let mut data = vec![ai.len() as u8];
        data.extend_from_slice(&ai);
        data.extend_from_slice(&s);
        let auth = AuthPayload {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data,
        };
        let r = store.verify(&[&leaf], NOW, &id, octets, &auth);
        assert_eq!(r.is_ok(), good, "hash {hash} salt {salt}: {r:?}");
    }
}
