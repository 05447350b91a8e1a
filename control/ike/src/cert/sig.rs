//! Signature schemes for AUTH (RFC 7296 §2.15, §3.8; RFC 7427 Digital
//! Signature with its ASN.1 AlgorithmIdentifier prefix; RFC 8420 Ed25519;
//! RFC 4754 ECDSA methods 9 and 10). Every operation is aws-lc-rs's.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

/// The key type in a certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

/// One AUTH signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384 / SHA-512 (MGF1 with the same hash, salt
    /// the hash's length): verified, never produced. strongSwan signs with
    /// SHA-384 when its RSA key has 3072 bits or more.
    RsaPssSha384,
    RsaPssSha512,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    Ed25519,
    /// AUTH method 1 (RFC 7296 §3.8): RSA PKCS#1 v1.5 over SHA-1. Verified
    /// only when configured (`allow_sha1`), never produced.
    RsaPkcs1Sha1,
    /// AUTH method 9 (RFC 4754): ECDSA P-256 SHA-256, `r | s` fixed width.
    EcdsaP256Sha256Fixed,
    /// AUTH method 10 (RFC 4754): ECDSA P-384 SHA-384, `r | s` fixed width.
    EcdsaP384Sha384Fixed,
}

/// SIGNATURE_HASH_ALGORITHMS values (RFC 7427 §7, RFC 8420 §2).
pub mod hash {
    pub const SHA1: u16 = 1;
    pub const SHA2_256: u16 = 2;
    pub const SHA2_384: u16 = 3;
    pub const SHA2_512: u16 = 4;
    pub const IDENTITY: u16 = 5;
}

/// What we put in our SIGNATURE_HASH_ALGORITHMS notify: the hashes we
/// verify with (SHA-1 is never announced).
pub const OUR_HASHES: [u16; 4] = [
    hash::SHA2_256,
    hash::SHA2_384,
    hash::SHA2_512,
    hash::IDENTITY,
];

// AlgorithmIdentifier DER of RFC 7427 Appendix A, as strongSwan sends them.
const AI_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const AI_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const AI_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// RSASSA-PSS, SHA-256, MGF1 with SHA-256, salt length 32 (RFC 7427 A.4.3
/// pattern; strongSwan's default salt length is the hash length).
const AI_RSA_PSS_SHA256: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x20,
];

/// OIDs (content octets) recognised inside a method-14 AlgorithmIdentifier.
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];

impl Scheme {
    /// The scheme we sign with for a key, given the hashes the peer
    /// announced (`None`: no SIGNATURE_HASH_ALGORITHMS, so only the
    /// classic methods of RFC 7296/RFC 4754). Returns the AUTH method.
    pub fn for_signing(key: KeyType, peer_hashes: Option<&[u16]>) -> Option<(u8, Scheme)> {
        let has = |h| peer_hashes.is_some_and(|p| p.contains(&h));
        match (key, peer_hashes.is_some()) {
            (KeyType::EcdsaP256, true) if has(hash::SHA2_256) => {
                Some((14, Scheme::EcdsaP256Sha256))
            }
            (KeyType::EcdsaP384, true) if has(hash::SHA2_384) => {
                Some((14, Scheme::EcdsaP384Sha384))
            }
            (KeyType::Rsa, true) if has(hash::SHA2_256) => Some((14, Scheme::RsaPssSha256)),
            (KeyType::Ed25519, true) if has(hash::IDENTITY) => Some((14, Scheme::Ed25519)),
            // RFC 4754: the curve fixes the hash.
            (KeyType::EcdsaP256, _) => Some((9, Scheme::EcdsaP256Sha256Fixed)),
            (KeyType::EcdsaP384, _) => Some((10, Scheme::EcdsaP384Sha384Fixed)),
            // RSA method 1 means SHA-1, which we do not produce; Ed25519
            // exists only under method 14.
            _ => None,
        }
    }

    /// The AlgorithmIdentifier of a method-14 scheme.
    pub fn algorithm_identifier(self) -> Option<&'static [u8]> {
        Some(match self {
            Scheme::EcdsaP256Sha256 => AI_ECDSA_SHA256,
            Scheme::EcdsaP384Sha384 => AI_ECDSA_SHA384,
            Scheme::Ed25519 => AI_ED25519,
            Scheme::RsaPssSha256 => AI_RSA_PSS_SHA256,
            _ => return None,
        })
    }

    /// Whether a key of type `key` may verify this scheme.
    pub fn fits(self, key: KeyType) -> bool {
        use Scheme::*;
        match self {
            EcdsaP256Sha256 | EcdsaP256Sha256Fixed => key == KeyType::EcdsaP256,
            EcdsaP384Sha384 | EcdsaP384Sha384Fixed => key == KeyType::EcdsaP384,
            RsaPssSha256 | RsaPssSha384 | RsaPssSha512 | RsaPkcs1Sha256 | RsaPkcs1Sha384
            | RsaPkcs1Sha512 | RsaPkcs1Sha1 => key == KeyType::Rsa,
            Ed25519 => key == KeyType::Ed25519,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        use Scheme::*;
        match self {
            EcdsaP256Sha256 => &sig::ECDSA_P256_SHA256_ASN1,
            EcdsaP384Sha384 => &sig::ECDSA_P384_SHA384_ASN1,
            EcdsaP256Sha256Fixed => &sig::ECDSA_P256_SHA256_FIXED,
            EcdsaP384Sha384Fixed => &sig::ECDSA_P384_SHA384_FIXED,
            RsaPssSha256 => &sig::RSA_PSS_2048_8192_SHA256,
            RsaPssSha384 => &sig::RSA_PSS_2048_8192_SHA384,
            RsaPssSha512 => &sig::RSA_PSS_2048_8192_SHA512,
            RsaPkcs1Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            RsaPkcs1Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            RsaPkcs1Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            RsaPkcs1Sha1 => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Ed25519 => &sig::ED25519,
        }
    }

    /// Verifies `signature` over `msg` with the raw subjectPublicKey of a
    /// certificate (EC point, PKCS#1 RSAPublicKey or Ed25519 key).
    pub fn verify(self, public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.verification(), public_key)
            .verify(msg, signature)
            .is_ok()
    }
}

/// Why an AUTH payload's data could not be turned into a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeError {
    /// Not DER we understand, or the length byte overruns the data.
    Malformed,
    /// Well-formed but not a scheme we verify (or SHA-1 not allowed).
    Unsupported,
}

/// Splits AUTH data of `method` into the scheme and the signature
/// (RFC 7427 §3: one length octet, the AlgorithmIdentifier, the signature).
pub fn parse_auth(
    method: u8,
    data: &[u8],
    allow_sha1: bool,
) -> Result<(Scheme, &[u8]), SchemeError> {
    match method {
        1 if allow_sha1 => Ok((Scheme::RsaPkcs1Sha1, data)),
        9 => Ok((Scheme::EcdsaP256Sha256Fixed, data)),
        10 => Ok((Scheme::EcdsaP384Sha384Fixed, data)),
        14 => {
            let (&len, rest) = data.split_first().ok_or(SchemeError::Malformed)?;
            let len = usize::from(len);
            if rest.len() < len {
                return Err(SchemeError::Malformed);
            }
            let (ai, signature) = rest.split_at(len);
            Ok((scheme_of(ai)?, signature))
        }
        _ => Err(SchemeError::Unsupported),
    }
}

/// Reads one DER TLV with a short or one/two-octet long length.
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), SchemeError> {
    let (&tag, b) = b.split_first().ok_or(SchemeError::Malformed)?;
    let (&l0, b) = b.split_first().ok_or(SchemeError::Malformed)?;
    let (len, b) = match l0 {
        0..=0x7f => (usize::from(l0), b),
        0x81 => {
            let (&l, b) = b.split_first().ok_or(SchemeError::Malformed)?;
            (usize::from(l), b)
        }
        _ => return Err(SchemeError::Malformed),
    };
    if b.len() < len {
        return Err(SchemeError::Malformed);
    }
    let (v, rest) = b.split_at(len);
    Ok((tag, v, rest))
}

/// The scheme an AlgorithmIdentifier names. RSASSA-PSS parameters are
/// checked (SHA-256/384/512, MGF1 with the same hash, salt the hash's
/// length: what aws-lc-rs verifies);
/// absent or NULL parameters are accepted for the PKCS#1 OIDs.
fn scheme_of(ai: &[u8]) -> Result<Scheme, SchemeError> {
    let (tag, seq, rest) = tlv(ai)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(SchemeError::Malformed);
    }
    let (tag, oid, params) = tlv(seq)?;
    if tag != 0x06 {
        return Err(SchemeError::Malformed);
    }
    let none_or_null = params.is_empty() || params == [0x05, 0x00];
    let s = match oid {
        OID_ECDSA_SHA256 if params.is_empty() => Scheme::EcdsaP256Sha256,
        OID_ECDSA_SHA384 if params.is_empty() => Scheme::EcdsaP384Sha384,
        OID_ED25519 if params.is_empty() => Scheme::Ed25519,
        OID_SHA256_RSA if none_or_null => Scheme::RsaPkcs1Sha256,
        OID_SHA384_RSA if none_or_null => Scheme::RsaPkcs1Sha384,
        OID_SHA512_RSA if none_or_null => Scheme::RsaPkcs1Sha512,
        OID_RSA_PSS => pss_scheme(params)?.ok_or(SchemeError::Unsupported)?,
        _ => return Err(SchemeError::Unsupported),
    };
    Ok(s)
}

/// The OID of a hash AlgorithmIdentifier with absent or NULL parameters.
fn hash_oid(ai: &[u8]) -> Result<Option<&[u8]>, SchemeError> {
    let (tag, seq, rest) = tlv(ai)?;
    let (otag, oid, params) = tlv(seq)?;
    Ok((tag == 0x30
        && rest.is_empty()
        && otag == 0x06
        && (params.is_empty() || params == [0x05, 0x00]))
    .then_some(oid))
}

/// The PSS scheme RSASSA-PSS-params (RFC 4055 §3.1) name: SHA-256,
/// SHA-384 or SHA-512, MGF1 with the same hash and a salt as long as the
/// hash (trailer field default), the combinations aws-lc-rs verifies and
/// strongSwan sends (RFC 7427 A.4.3 pattern). `None`: well-formed but
/// another combination.
fn pss_scheme(params: &[u8]) -> Result<Option<Scheme>, SchemeError> {
    let (tag, mut p, rest) = tlv(params)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(SchemeError::Malformed);
    }
    let (mut hash, mut mgf_hash, mut salt) = (None, None, None);
    while !p.is_empty() {
        let (tag, v, rest) = tlv(p)?;
        match tag {
            0xa0 => hash = hash_oid(v)?,
            0xa1 => {
                let (t, seq, r) = tlv(v)?;
                let (ot, oid, inner) = tlv(seq)?;
                mgf_hash = if t == 0x30 && r.is_empty() && ot == 0x06 && oid == OID_MGF1 {
                    hash_oid(inner)?
                } else {
                    None
                };
            }
            0xa2 => {
                let (t, n, r) = tlv(v)?;
                salt = match (t, n, r.is_empty()) {
                    (0x02, [len], true) => Some(*len),
                    _ => None,
                };
            }
            // trailerField: only the default (1) exists.
            0xa3 => {
                let (t, n, r) = tlv(v)?;
                if t != 0x02 || !r.is_empty() || n != [0x01] {
                    return Ok(None);
                }
            }
            _ => return Err(SchemeError::Malformed),
        }
        p = rest;
    }
    // Absent hash/MGF/salt fields mean SHA-1 / salt 20 (RFC 4055
    // defaults), which we do not verify: `None` below.
    let (Some(hash), Some(mgf_hash), Some(salt)) = (hash, mgf_hash, salt) else {
        return Ok(None);
    };
    if hash != mgf_hash {
        return Ok(None);
    }
    Ok(match (hash, salt) {
        (OID_SHA256, 32) => Some(Scheme::RsaPssSha256),
        (OID_SHA384, 48) => Some(Scheme::RsaPssSha384),
        (OID_SHA512, 64) => Some(Scheme::RsaPssSha512),
        _ => None,
    })
}

/// Parses SIGNATURE_HASH_ALGORITHMS notify data: 16-bit values (RFC 7427
/// §4). At most 32 are kept; an odd length is malformed.
pub fn parse_hash_algorithms(data: &[u8]) -> Option<Vec<u16>> {
    if !data.len().is_multiple_of(2) {
        return None;
    }
    Some(
        data.chunks_exact(2)
            .take(32)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Encodes our SIGNATURE_HASH_ALGORITHMS notify data.
pub fn hash_algorithms_data() -> Vec<u8> {
    OUR_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect()
}
