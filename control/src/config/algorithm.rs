//! strongSwan-style algorithm names (`aes256gcm16`, `aes128-sha256`,
//! `aes128gcm16-prfsha256-ecp256`) mapped to the crypto module's types.
//!
//! A name is a `-`-separated list of tokens; each token names one IKEv2
//! transform (RFC 7296 §3.3.2): an encryption algorithm, an integrity
//! algorithm, a PRF, a Diffie-Hellman group or an ESN choice.

use dataplane::crypto::{Algorithm, Encryption, Integrity};

/// An IKEv2 pseudo-random function (transform type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA2_256 (RFC 4868), IANA 5.
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (RFC 4868), IANA 6.
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (RFC 4868), IANA 7.
    HmacSha512,
}

impl Prf {
    /// IKEv2 transform ID (IANA "Transform Type 2").
    pub const fn ikev2_id(self) -> u16 {
        match self {
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// The PRF strongSwan pairs with an integrity algorithm when a
    /// non-AEAD IKE proposal names none.
    const fn for_integrity(i: Integrity) -> Option<Self> {
        match i {
            Integrity::HmacSha256_128 => Some(Self::HmacSha256),
            Integrity::HmacSha384_192 => Some(Self::HmacSha384),
            Integrity::HmacSha512_256 => Some(Self::HmacSha512),
            Integrity::None => None,
        }
    }
}

/// A Diffie-Hellman group (IKEv2 transform type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP (RFC 3526), IANA 14.
    Modp2048,
    /// 3072-bit MODP (RFC 3526), IANA 15.
    Modp3072,
    /// 4096-bit MODP (RFC 3526), IANA 16.
    Modp4096,
    /// NIST P-256 (RFC 5903), IANA 19.
    Ecp256,
    /// NIST P-384 (RFC 5903), IANA 20.
    Ecp384,
    /// Curve25519 (RFC 8031), IANA 31.
    Curve25519,
}

impl DhGroup {
    /// IKEv2 transform ID (IANA "Transform Type 4").
    pub const fn ikev2_id(self) -> u16 {
        match self {
            Self::Modp2048 => 14,
            Self::Modp3072 => 15,
            Self::Modp4096 => 16,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::Curve25519 => 31,
        }
    }
}

/// One token of a proposal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Encryption(Encryption),
    Integrity(Integrity),
    Prf(Prf),
    Dh(DhGroup),
    Esn(bool),
}

const SUPPORTED_ESP: &str = "aes128gcm16, aes256gcm16, chacha20poly1305, \
     aes128-sha256, aes256-sha256, aes128-sha384, aes256-sha384, aes128-sha512, \
     aes256-sha512, null-sha256, null-sha384, null-sha512";

/// Every token a proposal may contain, by kind, for messages.
const SUPPORTED_TOKENS: &str = "encryption aes128gcm16 aes256gcm16 chacha20poly1305 aes128 aes256 \
     null (ESP only); integrity sha256 sha384 sha512; PRF prfsha256 prfsha384 prfsha512; \
     DH group modp2048 modp3072 modp4096 ecp256 ecp384 curve25519; esn noesn (ESP only)";

const SUPPORTED_DH: &str = "modp2048, modp3072, modp4096, ecp256, ecp384, curve25519";

/// Every token name, for did-you-mean.
const TOKEN_NAMES: &[&str] = &[
    "aes128gcm16",
    "aes256gcm16",
    "chacha20poly1305",
    "aes128",
    "aes256",
    "null",
    "sha256",
    "sha384",
    "sha512",
    "prfsha256",
    "prfsha384",
    "prfsha512",
    "modp2048",
    "modp3072",
    "modp4096",
    "ecp256",
    "ecp384",
    "curve25519",
    "esn",
    "noesn",
];

fn token(t: &str) -> Result<Token, String> {
    use Encryption as E;
    use Integrity as I;
    Ok(match t {
        "aes128gcm16" | "aes128gcm128" | "aes128gcm" => Token::Encryption(E::AesGcm16_128),
        "aes256gcm16" | "aes256gcm128" | "aes256gcm" => Token::Encryption(E::AesGcm16_256),
        "chacha20poly1305" => Token::Encryption(E::ChaCha20Poly1305),
        "aes128" | "aes128cbc" => Token::Encryption(E::AesCbc128),
        "aes256" | "aes256cbc" => Token::Encryption(E::AesCbc256),
        "null" => Token::Encryption(E::Null),
        "sha256" | "sha2_256" => Token::Integrity(I::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integrity(I::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integrity(I::HmacSha512_256),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "modp2048" => Token::Dh(DhGroup::Modp2048),
        "modp3072" => Token::Dh(DhGroup::Modp3072),
        "modp4096" => Token::Dh(DhGroup::Modp4096),
        "ecp256" => Token::Dh(DhGroup::Ecp256),
        "ecp384" => Token::Dh(DhGroup::Ecp384),
        "curve25519" | "x25519" => Token::Dh(DhGroup::Curve25519),
        "esn" => Token::Esn(true),
        "noesn" => Token::Esn(false),
        _ if t.starts_with("aes192") => {
            return Err(format!("`{t}`: 192-bit AES is not supported"));
        }
        "sha1" | "sha" | "md5" | "3des" | "des" | "prfsha1" | "prfmd5" | "aesxcbc" | "modp1024"
        | "modp1536" | "modp768" => {
            return Err(format!("`{t}` is a legacy algorithm and not supported"));
        }
        _ => {
            let hint = super::reader::did_you_mean(t, TOKEN_NAMES)
                .map(|w| format!(" (did you mean `{w}`?)"))
                .unwrap_or_default();
            return Err(format!("unknown algorithm `{t}`{hint}"));
        }
    })
}

fn tokens(name: &str) -> Result<Vec<Token>, String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err("is empty".into());
    }
    lower.split('-').map(token).collect()
}

/// The algorithm of a manually keyed SA: exactly one encryption and (for
/// non-AEADs) one integrity algorithm.
pub(super) fn parse_esp_algorithm(name: &str) -> Result<Algorithm, String> {
    let toks = tokens(name).map_err(|e| format!("{e} (supported: {SUPPORTED_ESP})"))?;
    let mut enc = None;
    let mut integ = None;
    for t in toks {
        match t {
            Token::Encryption(e) if enc.is_none() => enc = Some(e),
            Token::Integrity(i) if integ.is_none() => integ = Some(i),
            Token::Encryption(_) | Token::Integrity(_) => {
                return Err(format!(
                    "`{name}` names more than one algorithm of a kind; a manual SA uses exactly one"
                ))
            }
            Token::Prf(_) | Token::Dh(_) | Token::Esn(_) => {
                return Err(format!(
                    "`{name}`: PRFs, DH groups and esn/noesn belong in IKE proposals, not in a manual SA's algorithm"
                ))
            }
        }
    }
    let Some(encryption) = enc else {
        return Err(format!(
            "`{name}` names no encryption algorithm (supported: {SUPPORTED_ESP})"
        ));
    };
    let integrity = match (encryption.is_aead(), integ) {
        (true, None) => Integrity::None,
        (true, Some(_)) => {
            return Err(format!(
                "`{name}`: {encryption:?} is an AEAD and takes no separate integrity algorithm"
            ))
        }
        (false, Some(i)) => i,
        (false, None) => {
            return Err(format!(
                "`{name}` needs an integrity algorithm, e.g. `{}-sha256`",
                name.trim()
            ))
        }
    };
    Ok(Algorithm {
        encryption,
        integrity,
    })
}

/// A short description of the encryption key `enc` expects, for messages.
pub(super) fn enc_key_description(enc: Encryption) -> String {
    match enc {
        Encryption::AesGcm16_128 => "20-byte key (16-byte AES key + 4-byte salt)".into(),
        Encryption::AesGcm16_256 => "36-byte key (32-byte AES key + 4-byte salt)".into(),
        Encryption::ChaCha20Poly1305 => "36-byte key (32-byte ChaCha20 key + 4-byte salt)".into(),
        Encryption::AesCbc128 => "16-byte AES key".into(),
        Encryption::AesCbc256 => "32-byte AES key".into(),
        Encryption::Null => "no key".into(),
    }
}

/// An IKE SA proposal (RFC 7296 §3.3): the transforms offered together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption algorithms (all AEADs or all not).
    pub encryption: Vec<Encryption>,
    /// Integrity algorithms; empty for AEADs.
    pub integrity: Vec<Integrity>,
    /// PRFs (at least one).
    pub prf: Vec<Prf>,
    /// Diffie-Hellman groups (at least one).
    pub dh: Vec<DhGroup>,
}

/// A Child SA (ESP) proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption algorithms (all AEADs or all not).
    pub encryption: Vec<Encryption>,
    /// Integrity algorithms; empty for AEADs.
    pub integrity: Vec<Integrity>,
    /// DH groups for PFS on rekey; empty for none.
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers offered: `[false]` unless `esn` is named
    /// (`esn-noesn` offers both).
    pub esn: Vec<bool>,
}

struct Parts {
    encryption: Vec<Encryption>,
    integrity: Vec<Integrity>,
    prf: Vec<Prf>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
}

fn split(name: &str) -> Result<Parts, String> {
    let mut p = Parts {
        encryption: Vec::new(),
        integrity: Vec::new(),
        prf: Vec::new(),
        dh: Vec::new(),
        esn: Vec::new(),
    };
    fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    for t in tokens(name).map_err(|e| format!("{e}; supported: {SUPPORTED_TOKENS}"))? {
        match t {
            Token::Encryption(e) => push(&mut p.encryption, e),
            Token::Integrity(i) => push(&mut p.integrity, i),
            Token::Prf(f) => push(&mut p.prf, f),
            Token::Dh(d) => push(&mut p.dh, d),
            Token::Esn(e) => push(&mut p.esn, e),
        }
    }
    if p.encryption.is_empty() {
        return Err(format!(
            "`{name}` names no encryption algorithm (supported: {SUPPORTED_TOKENS})"
        ));
    }
    let aead = p.encryption.iter().filter(|e| e.is_aead()).count();
    if aead != 0 && aead != p.encryption.len() {
        return Err(format!(
            "`{name}` mixes AEAD and non-AEAD encryption; put them in separate proposals"
        ));
    }
    if aead != 0 && !p.integrity.is_empty() {
        return Err(format!(
            "`{name}`: AEAD encryption takes no integrity algorithm"
        ));
    }
    if aead == 0 && p.integrity.is_empty() {
        return Err(format!(
            "`{name}` needs an integrity algorithm (e.g. sha256)"
        ));
    }
    Ok(p)
}

/// An IKE proposal such as `aes128gcm16-prfsha256-ecp256` or
/// `aes256-sha256-modp3072` (the PRF follows the integrity algorithm when
/// not named).
pub(super) fn parse_ike_proposal(name: &str) -> Result<IkeProposal, String> {
    let mut p = split(name)?;
    if p.encryption.contains(&Encryption::Null) {
        return Err(format!("`{name}`: IKE SAs cannot use null encryption"));
    }
    if !p.esn.is_empty() {
        return Err(format!(
            "`{name}`: esn/noesn apply to ESP, not to the IKE SA"
        ));
    }
    if p.prf.is_empty() {
        p.prf = p
            .integrity
            .iter()
            .filter_map(|i| Prf::for_integrity(*i))
            .collect();
        if p.prf.is_empty() {
            return Err(format!(
                "`{name}`: an AEAD IKE proposal needs a PRF (e.g. prfsha256)"
            ));
        }
    }
    if p.dh.is_empty() {
        return Err(format!(
            "`{name}` needs a Diffie-Hellman group (supported: {SUPPORTED_DH})"
        ));
    }
    Ok(IkeProposal {
        encryption: p.encryption,
        integrity: p.integrity,
        prf: p.prf,
        dh: p.dh,
    })
}

/// An ESP proposal such as `aes128gcm16`, `aes256-sha256-ecp256` or
/// `aes256gcm16-esn`.
pub(super) fn parse_esp_proposal(name: &str) -> Result<EspProposal, String> {
    let p = split(name)?;
    if !p.prf.is_empty() {
        return Err(format!(
            "`{name}`: a PRF belongs in an IKE proposal, not an ESP one"
        ));
    }
    Ok(EspProposal {
        encryption: p.encryption,
        integrity: p.integrity,
        dh: p.dh,
        esn: if p.esn.is_empty() { vec![false] } else { p.esn },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_names() {
        let ok = [
            ("aes128gcm16", Algorithm::AES_GCM_128),
            ("AES256GCM16", Algorithm::AES_GCM_256),
            ("aes256gcm128", Algorithm::AES_GCM_256),
            ("chacha20poly1305", Algorithm::CHACHA20_POLY1305),
            (
                "aes128-sha256",
                Algorithm {
                    encryption: Encryption::AesCbc128,
                    integrity: Integrity::HmacSha256_128,
                },
            ),
            (
                "aes256-sha512",
                Algorithm {
                    encryption: Encryption::AesCbc256,
                    integrity: Integrity::HmacSha512_256,
                },
            ),
            (
                "null-sha384",
                Algorithm {
                    encryption: Encryption::Null,
                    integrity: Integrity::HmacSha384_192,
                },
            ),
        ];
        for (name, alg) in ok {
            assert_eq!(parse_esp_algorithm(name), Ok(alg), "{name}");
        }
        for (name, want) in [
            ("aes128", "needs an integrity"),
            ("aes128gcm16-sha256", "takes no separate integrity"),
            ("aes192gcm16", "192-bit"),
            ("3des-sha1", "legacy"),
            ("aes128-sha256-ecp256", "IKE proposals"),
            ("blowfish", "unknown algorithm `blowfish`"),
            ("sha256", "no encryption"),
        ] {
            let e = parse_esp_algorithm(name).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn ike_proposals() {
        let p = parse_ike_proposal("aes128gcm16-prfsha256-ecp256").unwrap();
        assert_eq!(p.encryption, [Encryption::AesGcm16_128]);
        assert!(p.integrity.is_empty());
        assert_eq!(p.prf, [Prf::HmacSha256]);
        assert_eq!(p.dh, [DhGroup::Ecp256]);
        let p = parse_ike_proposal("aes256-sha384-modp3072-curve25519").unwrap();
        assert_eq!(p.prf, [Prf::HmacSha384], "PRF follows the integrity");
        assert_eq!(p.dh, [DhGroup::Modp3072, DhGroup::Curve25519]);
        for (name, want) in [
            ("aes128gcm16-ecp256", "needs a PRF"),
            ("aes128gcm16-prfsha256", "Diffie-Hellman"),
            ("null-sha256-prfsha256-ecp256", "null"),
            ("aes128gcm16-aes128-sha256-prfsha256-ecp256", "mixes"),
        ] {
            let e = parse_ike_proposal(name).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn esp_proposals() {
        let p = parse_esp_proposal("aes128gcm16").unwrap();
        assert_eq!(p.esn, [false]);
        assert!(p.dh.is_empty());
        let p = parse_esp_proposal("aes256-sha256-ecp256-esn-noesn").unwrap();
        assert_eq!(p.esn, [true, false]);
        assert_eq!(p.dh, [DhGroup::Ecp256]);
        assert!(parse_esp_proposal("aes128gcm16-prfsha256")
            .unwrap_err()
            .contains("PRF"));
    }
}
