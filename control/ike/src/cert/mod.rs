//! Certificate authentication (RFC 7296 §2.15, §3.6–§3.8; RFC 7427;
//! RFC 4945 for what an identity in a certificate means).
//!
//! - [`LocalCredential`]: our certificate chain and private key, from PEM,
//!   signing AUTH.
//! - [`TrustStore`]: trust anchors and CRLs, from PEM (CRLs also DER);
//!   validates a peer's chain with `rustls-webpki` (path building, validity,
//!   basic constraints, CRLs), binds the peer's IKE identity to the leaf
//!   (`x509-parser` for the SAN and subject DN: RFC 4945 wants exact
//!   matches, not TLS's wildcards) and verifies its AUTH signature with
//!   aws-lc-rs.
//!
//! The engine hands bytes in; files and their permissions are the
//! caller's business (the gateway checks them as it does for secrets).

pub mod sig;
#[cfg(test)]
pub(crate) mod tests;

use std::net::IpAddr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as awssig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, TrustAnchor, UnixTime,
};
use webpki::{
    CertRevocationList, EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use self::sig::{KeyType, Scheme, SchemeError};
use super::crypto::Prf;
use super::message::{AuthPayload, IdType, Identification};

/// Most certificates one message may carry (leaf and intermediates);
/// further CERT payloads are refused (RFC 7296 §3.6 sets no bound; this
/// bounds path building and memory).
pub const MAX_CERTS: usize = 4;
/// Largest certificate accepted, in DER octets (an RSA-4096 certificate
/// is under 2 KiB).
pub const MAX_CERT_LEN: usize = 8192;
/// Most CERTREQ authorities (20-octet SHA-1 hashes) read from one message.
pub const MAX_CERTREQ_HASHES: usize = 64;

/// Why a peer's certificate authentication was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("no certificate from the peer")]
    NoCertificate,
    #[error("certificate not valid DER")]
    Malformed,
    #[error("more certificates, or larger ones, than accepted")]
    TooMany,
    #[error("chain longer than accepted")]
    ChainTooLong,
    #[error("no path to a trust anchor")]
    Untrusted,
    #[error("certificate expired or not yet valid")]
    Expired,
    #[error("certificate revoked")]
    Revoked,
    #[error("certificate not usable for IKE (extended key usage)")]
    Usage,
    #[error("IKE identity not in the certificate")]
    IdentityMismatch,
    #[error("AUTH signature did not verify")]
    BadSignature,
    #[error("AUTH method or signature algorithm not accepted")]
    UnsupportedAlgorithm,
    #[error("AUTH method does not match the configured authentication")]
    MethodMismatch,
}

/// Certificate authentication refusals, by reason (each also counted in
/// `Stats::auth_failures`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertCounts {
    pub no_certificate: u64,
    pub malformed: u64,
    pub too_many: u64,
    pub chain_too_long: u64,
    pub untrusted: u64,
    pub expired: u64,
    pub revoked: u64,
    pub usage: u64,
    pub identity_mismatch: u64,
    pub bad_signature: u64,
    pub unsupported_algorithm: u64,
    pub method_mismatch: u64,
    /// CERT payloads beyond `MAX_CERTS` or of an encoding other than
    /// X.509 Certificate - Signature (4), ignored.
    pub cert_payloads_ignored: u64,
    /// CERTREQ payloads (or hashes beyond `MAX_CERTREQ_HASHES`) ignored.
    pub certreq_ignored: u64,
}

impl CertCounts {
    pub fn count(&mut self, e: CertError) {
        let c = match e {
            CertError::NoCertificate => &mut self.no_certificate,
            CertError::Malformed => &mut self.malformed,
            CertError::TooMany => &mut self.too_many,
            CertError::ChainTooLong => &mut self.chain_too_long,
            CertError::Untrusted => &mut self.untrusted,
            CertError::Expired => &mut self.expired,
            CertError::Revoked => &mut self.revoked,
            CertError::Usage => &mut self.usage,
            CertError::IdentityMismatch => &mut self.identity_mismatch,
            CertError::BadSignature => &mut self.bad_signature,
            CertError::UnsupportedAlgorithm => &mut self.unsupported_algorithm,
            CertError::MethodMismatch => &mut self.method_mismatch,
        };
        *c += 1;
    }

    /// `(name, value)` pairs for export, named as the gateway's counters.
    pub fn fields(&self) -> [(&'static str, u64); 14] {
        [
            ("cert_no_certificate", self.no_certificate),
            ("cert_malformed", self.malformed),
            ("cert_too_many", self.too_many),
            ("cert_chain_too_long", self.chain_too_long),
            ("cert_untrusted", self.untrusted),
            ("cert_expired", self.expired),
            ("cert_revoked", self.revoked),
            ("cert_usage", self.usage),
            ("cert_identity_mismatch", self.identity_mismatch),
            ("cert_bad_signature", self.bad_signature),
            ("cert_unsupported_algorithm", self.unsupported_algorithm),
            ("cert_method_mismatch", self.method_mismatch),
            ("cert_payloads_ignored", self.cert_payloads_ignored),
            ("certreq_ignored", self.certreq_ignored),
        ]
    }
}

/// Why credentials could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("certificate {0} is not valid X.509 DER")]
    BadCertificate(usize),
    #[error("more than {MAX_CERTS} certificates in the chain")]
    TooManyCertificates,
    #[error("no PEM private key (PKCS#8, SEC1 or PKCS#1) found")]
    NoKey,
    #[error("private key unusable: {0}")]
    BadKey(&'static str),
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    #[error("unsupported public key type (ECDSA P-256/P-384, RSA 2048-8192, Ed25519)")]
    UnsupportedKey,
    #[error("trust anchor {0} unusable")]
    BadAnchor(usize),
    #[error("CRL {0} unusable")]
    BadCrl(usize),
}

/// Parses the certificates of a PEM file (leaf first).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, LoadError> {
    let mut out = Vec::new();
    for (i, c) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let c = c.map_err(|_| LoadError::BadCertificate(i))?;
        if X509Certificate::from_der(&c).is_err() || c.len() > MAX_CERT_LEN {
            return Err(LoadError::BadCertificate(i));
        }
        out.push(c.to_vec());
    }
    if out.is_empty() {
        return Err(LoadError::NoCertificate);
    }
    Ok(out)
}

/// The key type and raw subjectPublicKey of a certificate.
fn public_key(cert: &X509Certificate<'_>) -> Option<(KeyType, Vec<u8>)> {
    const EC: &str = "1.2.840.10045.2.1";
    const RSA: &str = "1.2.840.113549.1.1.1";
    const ED25519: &str = "1.3.101.112";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let ty = match alg.as_str() {
        EC => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            match curve.to_id_string().as_str() {
                P256 => KeyType::EcdsaP256,
                P384 => KeyType::EcdsaP384,
                _ => return None,
            }
        }
        RSA => KeyType::Rsa,
        ED25519 => KeyType::Ed25519,
        _ => return None,
    };
    Some((ty, spki.subject_public_key.data.to_vec()))
}

enum SigningKey {
    Ecdsa(EcdsaKeyPair, EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Our certificate chain and private key.
pub struct LocalCredential {
    chain: Vec<Vec<u8>>,
    key_type: KeyType,
    key: SigningKey,
    subject: Vec<u8>,
}

impl core::fmt::Debug for LocalCredential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalCredential")
            .field("certificates", &self.chain.len())
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl LocalCredential {
    /// Loads a chain (PEM, leaf then intermediates) and its private key
    /// (PEM: PKCS#8, SEC1 or PKCS#1), refusing a key that does not match
    /// the leaf's public key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, LoadError> {
        let chain = certificates_from_pem(chain_pem)?;
        if chain.len() > MAX_CERTS {
            return Err(LoadError::TooManyCertificates);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| LoadError::NoKey)?;
        Self::new(chain, &key)
    }

    fn new(chain: Vec<Vec<u8>>, key: &PrivateKeyDer<'_>) -> Result<Self, LoadError> {
        let first = chain.first().ok_or(LoadError::NoCertificate)?;
        let (_, leaf) =
            X509Certificate::from_der(first).map_err(|_| LoadError::BadCertificate(0))?;
        let (key_type, public) = public_key(&leaf).ok_or(LoadError::UnsupportedKey)?;
        let subject = leaf.subject().as_raw().to_vec();
        let der = key.secret_der();
        let bad = |_| LoadError::BadKey("not a key of the certificate's type");
        let (key, ours) = match key_type {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let (asn1, fixed) = if key_type == KeyType::EcdsaP256 {
                    (
                        &awssig::ECDSA_P256_SHA256_ASN1_SIGNING,
                        &awssig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    )
                } else {
                    (
                        &awssig::ECDSA_P384_SHA384_ASN1_SIGNING,
                        &awssig::ECDSA_P384_SHA384_FIXED_SIGNING,
                    )
                };
                let a = EcdsaKeyPair::from_private_key_der(asn1, der).map_err(bad)?;
                let f = EcdsaKeyPair::from_private_key_der(fixed, der).map_err(bad)?;
                let p = a.public_key().as_ref().to_vec();
                (SigningKey::Ecdsa(a, f), p)
            }
            KeyType::Rsa => {
                let k = match key {
                    PrivateKeyDer::Pkcs1(_) => RsaKeyPair::from_der(der),
                    _ => RsaKeyPair::from_pkcs8(der),
                }
                .map_err(bad)?;
                let p = k.public_key().as_ref().to_vec();
                (SigningKey::Rsa(k), p)
            }
            KeyType::Ed25519 => {
                let k = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?;
                let p = k.public_key().as_ref().to_vec();
                (SigningKey::Ed25519(k), p)
            }
        };
        if ours != public {
            return Err(LoadError::KeyMismatch);
        }
        Ok(Self {
            chain,
            key_type,
            key,
            subject,
        })
    }

    /// The leaf's subject as an ID_DER_ASN1_DN identity (the default
    /// local identity with a certificate, RFC 4945 §3.1.5).
    pub fn subject_id(&self) -> Identification {
        Identification::Other {
            ty: IdType::DER_ASN1_DN,
            data: self.subject.clone(),
        }
    }

    /// The leaf's subject DN as text (`C=CH, O=…, CN=…`), for display.
    pub fn subject_text(&self) -> String {
        self.chain
            .first()
            .and_then(|c| X509Certificate::from_der(c).ok())
            .map(|(_, x)| x.subject().to_string())
            .unwrap_or_default()
    }

    /// DER certificates, leaf first.
    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.chain
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// AUTH over `octets` (§2.15 signed octets) with the best scheme the
    /// peer's SIGNATURE_HASH_ALGORITHMS allow (`None`: it sent none).
    pub fn sign(&self, octets: &[u8], peer_hashes: Option<&[u16]>) -> Option<AuthPayload> {
        let (method, scheme) = Scheme::for_signing(self.key_type, peer_hashes)?;
        let signature = self.sign_scheme(scheme, octets)?;
        let mut data = Vec::new();
        if let Some(ai) = scheme.algorithm_identifier() {
            data.push(u8::try_from(ai.len()).ok()?);
            data.extend_from_slice(ai);
        }
        data.extend_from_slice(&signature);
        Some(AuthPayload {
            method: super::message::AuthMethod(method),
            data,
        })
    }

    fn sign_scheme(&self, scheme: Scheme, msg: &[u8]) -> Option<Vec<u8>> {
        // aws-lc-rs draws ECDSA nonces and PSS salts from its own DRBG; the
        // `SecureRandom` argument is only a type-level witness.
        let rng = SystemRandom::new();
        match (&self.key, scheme) {
            (SigningKey::Ecdsa(a, _), Scheme::EcdsaP256Sha256 | Scheme::EcdsaP384Sha384) => {
                Some(a.sign(&rng, msg).ok()?.as_ref().to_vec())
            }
            (
                SigningKey::Ecdsa(_, f),
                Scheme::EcdsaP256Sha256Fixed | Scheme::EcdsaP384Sha384Fixed,
            ) => Some(f.sign(&rng, msg).ok()?.as_ref().to_vec()),
            (SigningKey::Rsa(k), Scheme::RsaPssSha256) => {
                let mut s = vec![0; k.public_modulus_len()];
                k.sign(&awssig::RSA_PSS_SHA256, &rng, msg, &mut s).ok()?;
                Some(s)
            }
            (SigningKey::Ed25519(k), Scheme::Ed25519) => Some(k.sign(msg).as_ref().to_vec()),
            _ => None,
        }
    }
}

/// Accepts a certificate without extended key usage, or with one naming
/// a purpose IKE peers use (RFC 4945 §5.1.3.12: IKE must not require EKU).
#[derive(Debug)]
struct IkeUsage;

impl ExtendedKeyUsageValidator for IkeUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        const OK: [&[u8]; 5] = [
            &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01], // serverAuth
            &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02], // clientAuth
            &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11], // id-kp-ipsecIKE
            &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x08, 0x02, 0x02], // iKEIntermediate
            &[0x55, 0x1d, 0x25, 0x00],                         // anyExtendedKeyUsage
        ];
        let mut present = Vec::new();
        for p in iter {
            let p = p?;
            if OK.iter().any(|o| KeyPurposeId::new(o) == p) {
                return Ok(());
            }
            present.push(p.to_decoded_oid());
        }
        // webpki hands an empty iterator for a certificate without the
        // extension (an empty extension is refused before this).
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(OK[2]),
                present,
            },
        ))
    }
}

/// Signature algorithms accepted on certificates and CRLs of a chain.
static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Trust anchors, CRLs and the verification policy for peers.
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// SHA-1 of each anchor's SubjectPublicKeyInfo: our CERTREQ (§3.7).
    keyids: Vec<[u8; 20]>,
    /// Accept AUTH method 1 (RSA PKCS#1 v1.5 with SHA-1) from peers that
    /// do not speak RFC 7427.
    pub allow_sha1: bool,
}

impl core::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TrustStore")
            .field("anchors", &self.anchors.len())
            .field("crls", &self.crls.len())
            .field("allow_sha1", &self.allow_sha1)
            .finish()
    }
}

impl TrustStore {
    /// Trust anchors from PEM files' contents, CRLs in PEM or DER.
    pub fn new(ca_pems: &[&[u8]], crls: &[&[u8]]) -> Result<Self, LoadError> {
        let mut anchors = Vec::new();
        let mut keyids = Vec::new();
        let mut n = 0;
        for pem in ca_pems {
            for der in certificates_from_pem(pem)? {
                let cd = CertificateDer::from(der.as_slice());
                let a = webpki::anchor_from_trusted_cert(&cd)
                    .map_err(|_| LoadError::BadAnchor(n))?
                    .to_owned();
                let (_, x) =
                    X509Certificate::from_der(&der).map_err(|_| LoadError::BadAnchor(n))?;
                keyids.push(sha1(x.public_key().raw));
                anchors.push(a);
                n += 1;
            }
        }
        let mut out = Vec::new();
        for (i, c) in crls.iter().enumerate() {
            let ders: Vec<Vec<u8>> = if c.starts_with(b"-----BEGIN") {
                CertificateRevocationListDer::pem_slice_iter(c)
                    .map(|r| r.map(|d| d.to_vec()))
                    .collect::<Result<_, _>>()
                    .map_err(|_| LoadError::BadCrl(i))?
            } else {
                vec![c.to_vec()]
            };
            for d in ders {
                let crl =
                    OwnedCertRevocationList::from_der(&d).map_err(|_| LoadError::BadCrl(i))?;
                out.push(CertRevocationList::from(crl));
            }
        }
        Ok(Self {
            anchors,
            crls: out,
            keyids,
            allow_sha1: false,
        })
    }

    /// CERTREQ data: the concatenated SHA-1 hashes of our anchors' public
    /// keys (§3.7).
    pub fn certreq_data(&self) -> Vec<u8> {
        self.keyids.concat()
    }

    /// Validates the peer's certificates (leaf first), binds `id` to the
    /// leaf and verifies `auth` over `octets`. `now` is Unix seconds.
    pub fn verify(
        &self,
        certs: &[&[u8]],
        now: u64,
        id: &Identification,
        octets: &[u8],
        auth: &AuthPayload,
    ) -> Result<(), CertError> {
        let (leaf, intermediates) = certs.split_first().ok_or(CertError::NoCertificate)?;
        if certs.len() > MAX_CERTS {
            return Err(CertError::ChainTooLong);
        }
        if certs.iter().any(|c| c.len() > MAX_CERT_LEN) {
            return Err(CertError::TooMany);
        }
        // Cheap checks first: the signature over the octets costs one
        // public-key operation, the chain one per certificate.
        let (_, x) = X509Certificate::from_der(leaf).map_err(|_| CertError::Malformed)?;
        let (key_type, public) = public_key(&x).ok_or(CertError::UnsupportedAlgorithm)?;
        identity_matches(&x, id)?;
        let (scheme, signature) = sig::parse_auth(auth.method.0, &auth.data, self.allow_sha1)
            .map_err(|e| match e {
                SchemeError::Malformed => CertError::Malformed,
                SchemeError::Unsupported => CertError::UnsupportedAlgorithm,
            })?;
        if !scheme.fits(key_type) {
            return Err(CertError::UnsupportedAlgorithm);
        }
        if !scheme.verify(&public, octets, signature) {
            return Err(CertError::BadSignature);
        }
        self.verify_chain(leaf, intermediates, now)
    }

    /// Chain validation alone (webpki): path to an anchor, validity at
    /// `now`, CA constraints, EKU, CRLs when configured.
    pub fn verify_chain(
        &self,
        leaf: &[u8],
        intermediates: &[&[u8]],
        now: u64,
    ) -> Result<(), CertError> {
        let leaf = CertificateDer::from(leaf);
        let ee = EndEntityCert::try_from(&leaf).map_err(|_| CertError::Malformed)?;
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                // A CA without a configured CRL is not a failure, as
                // strongSwan's default.
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        });
        ee.verify_for_usage(
            CHAIN_ALGS,
            &self.anchors,
            &inter,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            IkeUsage,
            revocation,
            None,
        )
        .map(|_| ())
        .map_err(chain_error)
    }
}

fn chain_error(e: webpki::Error) -> CertError {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            CertError::Expired
        }
        E::CertRevoked => CertError::Revoked,
        E::RequiredEkuNotFoundContext(_) => CertError::Usage,
        E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded => CertError::ChainTooLong,
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::MalformedExtensions => {
            CertError::Malformed
        }
        _ => CertError::Untrusted,
    }
}

/// Whether the leaf certifies `id` (RFC 4945 §3.1): addresses, FQDNs and
/// email addresses must be a subjectAltName of that type (FQDN and email
/// case-insensitively, no wildcards); a DN must equal the subject.
fn identity_matches(x: &X509Certificate<'_>, id: &Identification) -> Result<(), CertError> {
    if let Identification::Other {
        ty: IdType::DER_ASN1_DN,
        data,
    } = id
    {
        return if x.subject().as_raw() == data.as_slice() {
            Ok(())
        } else {
            Err(CertError::IdentityMismatch)
        };
    }
    let san = x
        .subject_alternative_name()
        .map_err(|_| CertError::Malformed)?;
    let names = san.map(|s| s.value.general_names.as_slice()).unwrap_or(&[]);
    let found = names.iter().any(|n| match (n, id) {
        (GeneralName::DNSName(d), Identification::Fqdn(f)) => d.eq_ignore_ascii_case(f),
        (GeneralName::RFC822Name(m), Identification::Other { ty, data })
            if *ty == IdType::RFC822_ADDR =>
        {
            m.as_bytes().eq_ignore_ascii_case(data)
        }
        (GeneralName::IPAddress(a), Identification::Ipv4(v)) => ip_of(a) == Some(IpAddr::V4(*v)),
        (GeneralName::IPAddress(a), Identification::Ipv6(v)) => ip_of(a) == Some(IpAddr::V6(*v)),
        _ => false,
    });
    if found {
        Ok(())
    } else {
        Err(CertError::IdentityMismatch)
    }
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn sha1(b: &[u8]) -> [u8; 20] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b);
    let mut out = [0; 20];
    out.copy_from_slice(d.as_ref());
    out
}

/// The octets a signature AUTH covers, RFC 7296 §2.15:
/// `RealMessage | Nonce(peer) | prf(SK_p, RestOfIDPayload)`.
pub fn signed_octets(
    prf: Prf,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let maced = prf.compute(sk_p, &[id_body]);
    let mut v = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced.len());
    v.extend_from_slice(real_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&maced);
    v
}

#[cfg(test)]
impl LocalCredential {
    /// This key with another credential's certificates: a signer whose
    /// AUTH cannot verify with the certificate it shows.
    pub(crate) fn with_chain_for_test(&self, other: &LocalCredential) -> LocalCredential {
        let SigningKey::Ecdsa(a, f) = &self.key else {
            unreachable!("test helper for ECDSA keys")
        };
        let der = |k: &EcdsaKeyPair| {
            use aws_lc_rs::encoding::AsDer;
            k.private_key().as_der().unwrap().as_ref().to_vec()
        };
        let alg = |k: &EcdsaKeyPair| k.algorithm();
        LocalCredential {
            chain: other.chain.clone(),
            key_type: self.key_type,
            key: SigningKey::Ecdsa(
                EcdsaKeyPair::from_private_key_der(alg(a), &der(a)).unwrap(),
                EcdsaKeyPair::from_private_key_der(alg(f), &der(f)).unwrap(),
            ),
            subject: other.subject.clone(),
        }
    }
}
