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
