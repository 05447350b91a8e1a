//! Signature authentication cost per IKE SA, per algorithm: one side
//! signs its AUTH and verifies the peer's. `cert-path` is what the engine
//! runs (`LocalCredential::sign`, then `TrustStore::verify`: DER parsing,
//! identity binding, the AUTH signature and webpki's chain validation to
//! the anchor); `bare` is aws-lc-rs signing and verifying the same octets
//! with the same key; `bare+ca` adds one bare ECDSA P-256 verification,
//! the CA's signature on the leaf that any chain validation must check.
//! The test CA (ECDSA P-256) and leaves are generated at start (rcgen).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ike::cert::{sig::OUR_HASHES, LocalCredential, TrustStore};
use ike::message::Identification;
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair as RcKey, SanType};

/// 2026-12-08, inside the generated validity.
const NOW: u64 = 1_796_688_000;

enum Bare {
    Ecdsa(EcdsaKeyPair, &'static sig::EcdsaVerificationAlgorithm),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Bare {
    fn sign_verify(&self, msg: &[u8]) {
        let rng = SystemRandom::new();
        match self {
            Bare::Ecdsa(k, v) => {
                let s = k.sign(&rng, msg).unwrap();
                sig::UnparsedPublicKey::new(*v, k.public_key().as_ref())
                    .verify(msg, s.as_ref())
                    .unwrap();
            }
            Bare::Rsa(k) => {
                let mut s = vec![0; k.public_modulus_len()];
                k.sign(&sig::RSA_PSS_SHA256, &rng, msg, &mut s).unwrap();
                sig::UnparsedPublicKey::new(
                    &sig::RSA_PSS_2048_8192_SHA256,
                    k.public_key().as_ref(),
                )
                .verify(msg, &s)
                .unwrap();
            }
            Bare::Ed(k) => {
                let s = k.sign(msg);
                sig::UnparsedPublicKey::new(&sig::ED25519, k.public_key().as_ref())
                    .verify(msg, s.as_ref())
                    .unwrap();
            }
        }
    }
}

fn auth(c: &mut Criterion) {
    let ca_key = RcKey::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "Bench CA");
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca = p.self_signed(&ca_key).unwrap();
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    // A CA signature to verify bare, as chain validation must.
    let ca_pair = EcdsaKeyPair::from_pkcs8(
        &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ca_key.serialize_der(),
    )
    .unwrap();
    let tbs = vec![0x5a; 400];
    let ca_sig = ca_pair.sign(&SystemRandom::new(), &tbs).unwrap();
    let ca_verify = || {
        sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, ca_pair.public_key().as_ref())
            .verify(&tbs, ca_sig.as_ref())
            .unwrap()
    };
    // Signed octets of a typical IKE_SA_INIT (about 500 bytes).
    let octets = vec![0xa5; 512];
    let id = Identification::Fqdn("gw.example".into());

    let mut g = c.benchmark_group("ike-auth");
    g.throughput(Throughput::Elements(1));
    for (name, alg) in [
        ("ecdsa-p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ecdsa-p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ("rsa2048-pss", &rcgen::PKCS_RSA_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let key = if name.starts_with("rsa") {
            RcKey::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            RcKey::generate_for(alg).unwrap()
        };
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gw.example");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::DnsName("gw.example".try_into().unwrap())];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let leaf = p.signed_by(&key, &ca, &ca_key).unwrap();
        let cred = LocalCredential::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap();
        let certs: Vec<&[u8]> = cred.certificates().iter().map(Vec::as_slice).collect();
        let der = key.serialize_der();
        let bare = match name {
            "ecdsa-p256" => Bare::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &der).unwrap(),
                &sig::ECDSA_P256_SHA256_ASN1,
            ),
            "ecdsa-p384" => Bare::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_ASN1_SIGNING, &der).unwrap(),
                &sig::ECDSA_P384_SHA384_ASN1,
            ),
            "ed25519" => Bare::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap()),
            _ => Bare::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap()),
        };
        g.bench_function(format!("{name}/cert-path"), |b| {
            b.iter(|| {
                let a = cred.sign(&octets, Some(&OUR_HASHES)).unwrap();
                store.verify(&certs, NOW, &id, &octets, &a).unwrap();
            })
        });
        g.bench_function(format!("{name}/bare"), |b| {
            b.iter(|| bare.sign_verify(&octets))
        });
        g.bench_function(format!("{name}/bare+ca"), |b| {
            b.iter(|| {
                bare.sign_verify(&octets);
                ca_verify();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
