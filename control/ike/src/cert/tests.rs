//! Certificate path tests against a CA generated here with `rcgen` (no key
//! is checked in).

use std::net::Ipv4Addr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber, SignatureAlgorithm,
};

use super::sig::{self, hash, Scheme};
use super::*;
use crate::message::AuthMethod;

/// 2026-12-08, inside every generated validity period.
pub(crate) const NOW: u64 = 1_796_688_000;

/// A test CA (its certificate and key) that issues leaves.
pub(crate) struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str, alg: &'static SignatureAlgorithm) -> Self {
        let key = KeyPair::generate_for(alg).unwrap();
        Self::with_key(name, key, None)
    }

    fn with_key(name: &str, key: KeyPair, issuer: Option<&Ca>) -> Self {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Espresso test");
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let cert = match issuer {
            None => p.self_signed(&key).unwrap(),
            Some(i) => p.signed_by(&key, &i.cert, &i.key).unwrap(),
        };
        Self { cert, key }
    }

    /// An intermediate CA issued by this one.
    pub(crate) fn sub(&self, name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Ca::with_key(name, key, Some(self))
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `cn` with `sans`, key of `alg`, valid 2025-2035 unless
    /// `validity` says otherwise; returns the certificate PEM and the
    /// PKCS#8 key PEM.
    pub(crate) fn leaf(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        key: &KeyPair,
        serial: u64,
        validity: Option<(i32, i32)>,
    ) -> String {
        self.leaf_with_eku(cn, sans, key, serial, validity, Vec::new())
    }

    /// [`Ca::leaf`] with extended key usages.
    pub(crate) fn leaf_with_eku(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        key: &KeyPair,
        serial: u64,
        validity: Option<(i32, i32)>,
        eku: Vec<rcgen::ExtendedKeyUsagePurpose>,
    ) -> String {
        let mut p = CertificateParams::default();
        p.extended_key_usages = eku;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Espresso test");
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.subject_alt_names = sans;
        p.serial_number = Some(SerialNumber::from(serial));
        let (a, b) = validity.unwrap_or((2025, 2035));
        p.not_before = rcgen::date_time_ymd(a, 1, 1);
        p.not_after = rcgen::date_time_ymd(b, 1, 1);
        p.signed_by(key, &self.cert, &self.key).unwrap().pem()
    }

    /// A CRL revoking `serials`.
    pub(crate) fn crl(&self, serials: &[u64]) -> Vec<u8> {
        let p = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2034, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2026, 6, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.cert, &self.key).unwrap().der().to_vec()
    }
}

/// A key pair of the kind the tests use for `kt`.
pub(crate) fn key_for(kt: KeyType) -> KeyPair {
    match kt {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        KeyType::Rsa => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        }
    }
}

fn fqdn(s: &str) -> Identification {
    Identification::Fqdn(s.into())
}

fn setup(kt: KeyType) -> (Ca, LocalCredential, TrustStore) {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let k = key_for(kt);
    let pem = ca.leaf(
        "gw.example",
        vec![SanType::DnsName("gw.example".try_into().unwrap())],
        &k,
        7,
        None,
    );
    let cred = LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    (ca, cred, store)
}

fn certs(c: &LocalCredential) -> Vec<&[u8]> {
    c.certificates().iter().map(Vec::as_slice).collect()
}

const PEER_HASHES: &[u16] = &sig::OUR_HASHES;

#[test]
fn cert_good_chain_every_algorithm() {
    for (kt, scheme) in [
        (KeyType::EcdsaP256, Scheme::EcdsaP256Sha256),
        (KeyType::EcdsaP384, Scheme::EcdsaP384Sha384),
        (KeyType::Rsa, Scheme::RsaPssSha256),
        (KeyType::Ed25519, Scheme::Ed25519),
    ] {
        let (_ca, cred, store) = setup(kt);
        let auth = cred.sign(b"signed octets", Some(PEER_HASHES)).unwrap();
        assert_eq!(auth.method, AuthMethod::DIGITAL_SIGNATURE, "{kt:?}");
        let (s, _) = sig::parse_auth(14, &auth.data, false).unwrap();
        assert_eq!(s, scheme);
        store
            .verify(
                &certs(&cred),
                NOW,
                &fqdn("gw.example"),
                b"signed octets",
                &auth,
            )
            .unwrap_or_else(|e| panic!("{kt:?}: {e}"));
        // And by the subject DN, the default identity.
        store
            .verify(
                &certs(&cred),
                NOW,
                &cred.subject_id(),
                b"signed octets",
                &auth,
            )
            .unwrap();
    }
}

#[test]
fn cert_classic_ecdsa_methods_without_hash_notify() {
    for (kt, m) in [(KeyType::EcdsaP256, 9), (KeyType::EcdsaP384, 10)] {
        let (_ca, cred, store) = setup(kt);
        let auth = cred.sign(b"octets", None).unwrap();
        assert_eq!(auth.method.0, m);
        store
            .verify(&certs(&cred), NOW, &fqdn("gw.example"), b"octets", &auth)
            .unwrap();
    }
    // RSA without RFC 7427 would need SHA-1 (method 1), which we never
    // produce; Ed25519 has no classic method.
    let (_ca, cred, _) = setup(KeyType::Ed25519);
    assert!(cred.sign(b"o", None).is_none());
    assert!(cred.sign(b"o", Some(&[hash::SHA2_256])).is_none());
}

#[test]
fn cert_rsa_pkcs1_v15_verified_under_14_and_method_1_only_if_allowed() {
    let (_ca, cred, mut store) = setup(KeyType::Rsa);
    let SigningKey::Rsa(k) = &cred.key else {
        unreachable!()
    };
    let rng = SystemRandom::new();
    let mut s = vec![0; k.public_modulus_len()];
    // sha256WithRSAEncryption under method 14, as strongSwan sends by default.
    k.sign(&awssig::RSA_PKCS1_SHA256, &rng, b"m", &mut s)
        .unwrap();
    let ai = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    let mut data = vec![ai.len() as u8];
    data.extend_from_slice(&ai);
    data.extend_from_slice(&s);
    let auth = AuthPayload {
        method: AuthMethod::DIGITAL_SIGNATURE,
        data,
    };
    store
        .verify(&certs(&cred), NOW, &fqdn("gw.example"), b"m", &auth)
        .unwrap();
    // Method 1: PKCS#1 v1.5 over SHA-1.
    let m1 = AuthPayload {
        method: AuthMethod::RSA_SIG,
        data: s.clone(),
    };
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"m", &m1),
        Err(CertError::UnsupportedAlgorithm)
    );
    store.allow_sha1 = true;
    // A SHA-256 signature is not a valid method-1 (SHA-1) signature.
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"m", &m1),
        Err(CertError::BadSignature)
    );
}

#[test]
fn cert_wrong_ca_refused() {
    let (_ca, cred, _) = setup(KeyType::EcdsaP256);
    let other = Ca::new("Other Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::new(&[other.pem().as_bytes()], &[]).unwrap();
    let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::Untrusted)
    );
}

#[test]
fn cert_expired_and_not_yet_valid_refused() {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    for validity in [(2020, 2025), (2030, 2035)] {
        let k = key_for(KeyType::EcdsaP256);
        let pem = ca.leaf(
            "gw.example",
            vec![SanType::DnsName("gw.example".try_into().unwrap())],
            &k,
            9,
            Some(validity),
        );
        let cred = LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
        let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
        assert_eq!(
            store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth),
            Err(CertError::Expired)
        );
    }
}

#[test]
fn cert_revoked_by_crl_refused_and_others_pass() {
    let (ca, cred, _) = setup(KeyType::EcdsaP256);
    let crl = ca.crl(&[7]);
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[&crl]).unwrap();
    let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::Revoked)
    );
    let crl = ca.crl(&[8]);
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[&crl]).unwrap();
    store
        .verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth)
        .unwrap();
    // A PEM CRL loads as well; garbage does not.
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        b64(&ca.crl(&[7]))
    );
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[pem.as_bytes()]).unwrap();
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::Revoked)
    );
    assert!(matches!(
        TrustStore::new(&[ca.pem().as_bytes()], &[b"\x30\x03\x02\x01\x01"]),
        Err(LoadError::BadCrl(0))
    ));
}

fn b64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn cert_identity_mismatch_refused_and_each_id_type_bound() {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    let k = key_for(KeyType::EcdsaP256);
    let pem = ca.leaf(
        "gw.example",
        vec![
            SanType::DnsName("gw.example".try_into().unwrap()),
            SanType::Rfc822Name("vpn@example.org".try_into().unwrap()),
            SanType::IpAddress(Ipv4Addr::new(192, 0, 2, 1).into()),
            SanType::IpAddress("2001:db8::1".parse().unwrap()),
        ],
        &k,
        3,
        None,
    );
    let cred = LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
    let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
    let ok = [
        fqdn("GW.example"),
        Identification::Other {
            ty: IdType::RFC822_ADDR,
            data: b"vpn@example.org".to_vec(),
        },
        Identification::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
        Identification::Ipv6("2001:db8::1".parse().unwrap()),
        cred.subject_id(),
    ];
    for id in &ok {
        store
            .verify(&certs(&cred), NOW, id, b"x", &auth)
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
    }
    let bad = [
        fqdn("other.example"),
        // No wildcard or suffix matching (RFC 4945 §3.1).
        fqdn("example"),
        Identification::Other {
            ty: IdType::RFC822_ADDR,
            data: b"root@example.org".to_vec(),
        },
        Identification::Ipv4(Ipv4Addr::new(192, 0, 2, 2)),
        Identification::Other {
            ty: IdType::DER_ASN1_DN,
            data: X509Certificate::from_der(ca.cert.der())
                .unwrap()
                .1
                .subject()
                .as_raw()
                .to_vec(),
        },
        Identification::KeyId(b"gw.example".to_vec()),
    ];
    for id in &bad {
        assert_eq!(
            store.verify(&certs(&cred), NOW, id, b"x", &auth),
            Err(CertError::IdentityMismatch),
            "{id:?}"
        );
    }
}

#[test]
fn cert_signature_over_wrong_octets_refused() {
    for kt in [KeyType::EcdsaP256, KeyType::Rsa, KeyType::Ed25519] {
        let (_ca, cred, store) = setup(kt);
        let auth = cred.sign(b"the real octets", Some(PEER_HASHES)).unwrap();
        assert_eq!(
            store.verify(
                &certs(&cred),
                NOW,
                &fqdn("gw.example"),
                b"other octets",
                &auth
            ),
            Err(CertError::BadSignature)
        );
        // A signature by another key of the same type.
        let (_ca2, other, _) = setup(kt);
        let forged = other.sign(b"the real octets", Some(PEER_HASHES)).unwrap();
        assert_eq!(
            store.verify(
                &certs(&cred),
                NOW,
                &fqdn("gw.example"),
                b"the real octets",
                &forged
            ),
            Err(CertError::BadSignature)
        );
    }
}

#[test]
fn cert_scheme_must_fit_the_key() {
    let (_ca, cred, store) = setup(KeyType::EcdsaP256);
    let (_ca2, ed, _) = setup(KeyType::Ed25519);
    let auth = ed.sign(b"x", Some(PEER_HASHES)).unwrap();
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::UnsupportedAlgorithm)
    );
    // Unknown methods and algorithm identifiers.
    for (m, d) in [
        (3u8, vec![0u8; 64]),
        (14, vec![5, 0x30, 0x03, 0x06, 0x01, 0x00, 1, 2]),
    ] {
        let a = AuthPayload {
            method: AuthMethod(m),
            data: d,
        };
        assert_eq!(
            store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &a),
            Err(CertError::UnsupportedAlgorithm)
        );
    }
}

#[test]
fn cert_chain_through_intermediate_and_too_long_refused() {
    let root = Ca::new("Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::new(&[root.pem().as_bytes()], &[]).unwrap();
    let mut cas = vec![root.sub("Sub 1")];
    for i in 2..=MAX_CERTS {
        let next = cas.last().unwrap().sub(&format!("Sub {i}"));
        cas.push(next);
    }
    let k = key_for(KeyType::EcdsaP256);
    let san = || vec![SanType::DnsName("gw.example".try_into().unwrap())];
    // Leaf under Sub 1: two certificates sent.
    let leaf = cas[0].leaf("gw.example", san(), &k, 1, None);
    let chain = format!("{leaf}{}", cas[0].pem());
    let cred = LocalCredential::from_pem(chain.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
    let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
    store
        .verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth)
        .unwrap();
    // Without the intermediate there is no path.
    assert_eq!(
        store.verify(&certs(&cred)[..1], NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::Untrusted)
    );
    // Leaf under Sub MAX_CERTS: one certificate more than accepted.
    let leaf = cas[MAX_CERTS - 1].leaf("gw.example", san(), &k, 2, None);
    let mut ders: Vec<Vec<u8>> = vec![certificates_from_pem(leaf.as_bytes()).unwrap().remove(0)];
    for ca in cas.iter().rev() {
        ders.push(ca.cert.der().to_vec());
    }
    assert_eq!(ders.len(), MAX_CERTS + 1);
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let cred1 = LocalCredential::new(
        vec![ders[0].clone()],
        &PrivateKeyDer::from_pem_slice(k.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let auth = cred1.sign(b"x", Some(PEER_HASHES)).unwrap();
    assert_eq!(
        store.verify(&refs, NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::ChainTooLong)
    );
    // Loading refuses such a chain too.
    let mut pem = leaf.clone();
    for ca in cas.iter().rev() {
        pem.push_str(&ca.pem());
    }
    assert_eq!(
        LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap_err(),
        LoadError::TooManyCertificates
    );
}

#[test]
fn cert_malformed_der_refused() {
    let (_ca, cred, store) = setup(KeyType::EcdsaP256);
    let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
    let good = &cred.certificates()[0];
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30],
        vec![0x30, 0x82, 0xff, 0xff, 0x00],
        good[..good.len() / 2].to_vec(),
    ];
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push(trailing);
    for c in &cases {
        let r = store.verify(&[c], NOW, &fqdn("gw.example"), b"x", &auth);
        assert_eq!(r, Err(CertError::Malformed), "{} bytes", c.len());
    }
    // A flipped bit in the leaf's signature: still DER, no longer issued
    // by the CA.
    let mut flipped = good.clone();
    let n = flipped.len() - 3;
    flipped[n] ^= 1;
    assert_eq!(
        store.verify(&[&flipped], NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::Untrusted)
    );
    // Oversized.
    let big = vec![0x30; MAX_CERT_LEN + 1];
    assert_eq!(
        store.verify(&[&big], NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::TooMany)
    );
    assert_eq!(
        store.verify(&[], NOW, &fqdn("gw.example"), b"x", &auth),
        Err(CertError::NoCertificate)
    );
    // AUTH data whose AlgorithmIdentifier length overruns it.
    let bad = AuthPayload {
        method: AuthMethod::DIGITAL_SIGNATURE,
        data: vec![200, 0x30],
    };
    assert_eq!(
        store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &bad),
        Err(CertError::Malformed)
    );
}

#[test]
fn cert_loading_refuses_mismatched_and_bad_keys() {
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let k = key_for(KeyType::EcdsaP256);
    let pem = ca.leaf("a", vec![], &k, 1, None);
    let other = key_for(KeyType::EcdsaP256);
    assert_eq!(
        LocalCredential::from_pem(pem.as_bytes(), other.serialize_pem().as_bytes()).unwrap_err(),
        LoadError::KeyMismatch
    );
    let ed = key_for(KeyType::Ed25519);
    assert!(matches!(
        LocalCredential::from_pem(pem.as_bytes(), ed.serialize_pem().as_bytes()),
        Err(LoadError::BadKey(_))
    ));
    assert_eq!(
        LocalCredential::from_pem(pem.as_bytes(), b"no key").unwrap_err(),
        LoadError::NoKey
    );
    assert_eq!(
        LocalCredential::from_pem(b"", k.serialize_pem().as_bytes()).unwrap_err(),
        LoadError::NoCertificate
    );
    // The CERTREQ hash is SHA-1 of the anchor's SubjectPublicKeyInfo.
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    let spki = X509Certificate::from_der(ca.cert.der())
        .unwrap()
        .1
        .public_key()
        .raw
        .to_vec();
    assert_eq!(store.certreq_data(), sha1(&spki).to_vec());
}

#[test]
fn cert_extended_key_usage_for_ike_only() {
    use rcgen::ExtendedKeyUsagePurpose as Eku;
    let ca = Ca::new("Test Root", &rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::new(&[ca.pem().as_bytes()], &[]).unwrap();
    let san = || vec![SanType::DnsName("gw.example".try_into().unwrap())];
    // RFC 4945 §5.1.3.12: none, serverAuth/clientAuth, ipsecIKE or any.
    for (eku, ok) in [
        (vec![], true),
        (vec![Eku::ServerAuth], true),
        (vec![Eku::ClientAuth, Eku::EmailProtection], true),
        (vec![Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17])], true),
        (vec![Eku::Any], true),
        (vec![Eku::CodeSigning], false),
        (vec![Eku::EmailProtection, Eku::TimeStamping], false),
    ] {
        let k = key_for(KeyType::EcdsaP256);
        let pem = ca.leaf_with_eku("gw.example", san(), &k, 11, None, eku.clone());
        let cred = LocalCredential::from_pem(pem.as_bytes(), k.serialize_pem().as_bytes()).unwrap();
        let auth = cred.sign(b"x", Some(PEER_HASHES)).unwrap();
        let r = store.verify(&certs(&cred), NOW, &fqdn("gw.example"), b"x", &auth);
        if ok {
            assert_eq!(r, Ok(()), "{eku:?}");
        } else {
            assert_eq!(r, Err(CertError::Usage), "{eku:?}");
        }
    }
}
