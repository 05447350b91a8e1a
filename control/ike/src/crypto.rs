//! IKEv2 cryptography: PRFs and prf+ (RFC 7296 §2.13), SKEYSEED and the
//! IKE SA keys (§2.14, §2.18), Child SA KEYMAT (§2.17), SK payload
//! protection (§3.14, RFC 5282), D-H groups with public-value checks
//! (RFC 5903, RFC 7748/8031, RFC 3526 with RFC 6989) and PSK AUTH (§2.15).
//!
//! Everything secret lives in [`SecretBytes`], which is zeroized on drop and
//! never printed.

use aws_lc_rs::{aead, agreement, cipher, digest, hmac, iv::FixedLength};
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::message::{
    DhGroupId, EncodeError, EncrId, Header, IntegId, PayloadType, PrfId, Writer, HEADER_LEN,
    MAX_MESSAGE_LEN,
};

/// Randomness supplied by the driver (the engine never reads the system RNG).
pub trait RngSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Crypto failures. None of them carries secret data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The ICV / AEAD tag did not verify, or the padding was bad.
    #[error("integrity check failed")]
    IntegrityCheck,
    /// A peer's D-H public value failed validation (RFC 6989, RFC 5903).
    #[error("invalid key exchange public value")]
    InvalidPublicValue,
    /// An internal library failure.
    #[error("crypto library failure")]
    Internal,
    /// The sealed message would not fit its length fields.
    #[error("{0}")]
    TooLong(#[from] EncodeError),
}

/// Secret bytes: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(v: Vec<u8>) -> Self {
        Self(v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl core::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// Pseudo-random functions (RFC 4868 for the SHA-2 HMACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    pub fn id(self) -> PrfId {
        match self {
            Prf::HmacSha256 => PrfId::HMAC_SHA2_256,
            Prf::HmacSha384 => PrfId::HMAC_SHA2_384,
            Prf::HmacSha512 => PrfId::HMAC_SHA2_512,
        }
    }
    pub fn from_id(id: PrfId) -> Option<Self> {
        Some(match id {
            PrfId::HMAC_SHA2_256 => Prf::HmacSha256,
            PrfId::HMAC_SHA2_384 => Prf::HmacSha384,
            PrfId::HMAC_SHA2_512 => Prf::HmacSha512,
            _ => return None,
        })
    }
    fn alg(self) -> hmac::Algorithm {
        match self {
            Prf::HmacSha256 => hmac::HMAC_SHA256,
            Prf::HmacSha384 => hmac::HMAC_SHA384,
            Prf::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
    /// Output length, also the preferred key length (RFC 4868 §2.1.2).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// `prf(key, data[0] | data[1] | ...)`.
    pub fn compute(self, key: &[u8], data: &[&[u8]]) -> SecretBytes {
        let k = hmac::Key::new(self.alg(), key);
        let mut ctx = hmac::Context::with_key(&k);
        for d in data {
            ctx.update(d);
        }
        SecretBytes(ctx.sign().as_ref().to_vec())
    }

    /// prf+ of RFC 7296 §2.13:
    /// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`, output
    /// `T1 | T2 | ...` truncated to `len`. At most 255 blocks.
    pub fn plus(self, key: &[u8], seed: &[u8], len: usize) -> SecretBytes {
        assert!(
            len <= 255 * self.output_len(),
            "prf+ limited to 255 iterations"
        );
        let mut out = Vec::with_capacity(len + self.output_len());
        let mut t = SecretBytes(Vec::new());
        let mut n = 1u8;
        while out.len() < len {
            t = self.compute(key, &[&t, seed, &[n]]);
            out.extend_from_slice(&t);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        SecretBytes(out)
    }
}

/// Integrity algorithms for IKE (and ESP with CBC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// RFC 4868 HMAC-SHA-256-128.
    HmacSha256_128,
    /// RFC 4868 HMAC-SHA-384-192.
    HmacSha384_192,
    /// RFC 4868 HMAC-SHA-512-256.
    HmacSha512_256,
}

impl Integ {
    pub fn id(self) -> IntegId {
        match self {
            Integ::HmacSha256_128 => IntegId::HMAC_SHA2_256_128,
            Integ::HmacSha384_192 => IntegId::HMAC_SHA2_384_192,
            Integ::HmacSha512_256 => IntegId::HMAC_SHA2_512_256,
        }
    }
    pub fn from_id(id: IntegId) -> Option<Self> {
        Some(match id {
            IntegId::HMAC_SHA2_256_128 => Integ::HmacSha256_128,
            IntegId::HMAC_SHA2_384_192 => Integ::HmacSha384_192,
            IntegId::HMAC_SHA2_512_256 => Integ::HmacSha512_256,
            _ => return None,
        })
    }
    fn prf(self) -> Prf {
        match self {
            Integ::HmacSha256_128 => Prf::HmacSha256,
            Integ::HmacSha384_192 => Prf::HmacSha384,
            Integ::HmacSha512_256 => Prf::HmacSha512,
        }
    }
    /// Key length (RFC 4868 §2.1.1: the hash output length).
    pub fn key_len(self) -> usize {
        self.prf().output_len()
    }
    /// Truncated ICV length.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }
    /// The truncated MAC.
    pub fn compute(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = self.prf().compute(key, &[data]).0.clone();
        v.truncate(self.icv_len());
        v
    }
}

/// Encryption algorithms for the SK payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeCipher {
    /// AES-GCM with a 16-byte ICV, RFC 5282. `key_bits` is 128 or 256.
    AesGcm16 { key_bits: u16 },
    /// AES-CBC, RFC 3602; needs a separate integrity algorithm.
    AesCbc { key_bits: u16 },
}

impl IkeCipher {
    pub fn id(self) -> EncrId {
        match self {
            IkeCipher::AesGcm16 { .. } => EncrId::AES_GCM_16,
            IkeCipher::AesCbc { .. } => EncrId::AES_CBC,
        }
    }
    pub fn key_bits(self) -> u16 {
        match self {
            IkeCipher::AesGcm16 { key_bits } | IkeCipher::AesCbc { key_bits } => key_bits,
        }
    }
    pub fn from_id(id: EncrId, key_bits: Option<u16>) -> Option<Self> {
        let key_bits = key_bits?;
        if key_bits != 128 && key_bits != 256 {
            return None;
        }
        Some(match id {
            EncrId::AES_GCM_16 => IkeCipher::AesGcm16 { key_bits },
            EncrId::AES_CBC => IkeCipher::AesCbc { key_bits },
            _ => return None,
        })
    }
    pub fn is_aead(self) -> bool {
        matches!(self, IkeCipher::AesGcm16 { .. })
    }
    /// SK_e length: for GCM the key plus a 4-byte salt (RFC 5282 §7.1).
    pub fn key_len(self) -> usize {
        match self {
            IkeCipher::AesGcm16 { key_bits } => key_bits as usize / 8 + 4,
            IkeCipher::AesCbc { key_bits } => key_bits as usize / 8,
        }
    }
    fn iv_len(self) -> usize {
        match self {
            IkeCipher::AesGcm16 { .. } => 8,
            IkeCipher::AesCbc { .. } => 16,
        }
    }
}

/// The algorithms of an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub cipher: IkeCipher,
    pub prf: Prf,
    /// `None` for AEAD ciphers.
    pub integ: Option<Integ>,
    pub dh: DhGroup,
}

/// The seven IKE SA secrets of §2.14.
#[derive(Debug, Clone)]
pub struct IkeKeys {
    pub sk_d: SecretBytes,
    pub sk_ai: SecretBytes,
    pub sk_ar: SecretBytes,
    pub sk_ei: SecretBytes,
    pub sk_er: SecretBytes,
    pub sk_pi: SecretBytes,
    pub sk_pr: SecretBytes,
}

/// SKEYSEED = prf(Ni | Nr, g^ir), RFC 7296 §2.14.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> SecretBytes {
    let mut key = Vec::with_capacity(ni.len() + nr.len());
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    let key = SecretBytes(key);
    prf.compute(&key, &[g_ir])
}

/// SKEYSEED for a rekeyed IKE SA, RFC 7296 §2.18:
/// `prf(SK_d (old), g^ir (new) | Ni | Nr)`, using the old SA's PRF.
pub fn skeyseed_rekey(
    old_prf: Prf,
    old_sk_d: &[u8],
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> SecretBytes {
    old_prf.compute(old_sk_d, &[g_ir, ni, nr])
}

/// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
/// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`, RFC 7296 §2.14.
pub fn derive_ike_keys(
    suite: &IkeSuite,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let p = suite.prf.output_len();
    let a = suite.integ.map_or(0, Integ::key_len);
    let e = suite.cipher.key_len();
    let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    seed.extend_from_slice(&spi_i.to_be_bytes());
    seed.extend_from_slice(&spi_r.to_be_bytes());
    let km = suite.prf.plus(skeyseed, &seed, 3 * p + 2 * a + 2 * e);
    let mut off = 0;
    let mut take = |n: usize| {
        let s = SecretBytes(km[off..off + n].to_vec());
        off += n;
        s
    };
    IkeKeys {
        sk_d: take(p),
        sk_ai: take(a),
        sk_ar: take(a),
        sk_ei: take(e),
        sk_er: take(e),
        sk_pi: take(p),
        sk_pr: take(p),
    }
}

/// ESP encryption algorithms the data plane implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspCipher {
    /// AES-GCM-16 (RFC 4106), 128-bit key (+4 byte salt).
    AesGcm16_128,
    /// AES-GCM-16 (RFC 4106), 256-bit key (+4 byte salt).
    AesGcm16_256,
    /// AES-CBC-128 (RFC 3602).
    AesCbc128,
    /// AES-CBC-256 (RFC 3602).
    AesCbc256,
    /// ChaCha20-Poly1305 (RFC 7634), 256-bit key (+4 byte salt).
    ChaCha20Poly1305,
}

impl EspCipher {
    /// Encryption key length including any salt (RFC 4106 §8.1, RFC 7634 §4).
    pub fn key_len(self) -> usize {
        match self {
            EspCipher::AesGcm16_128 => 20,
            EspCipher::AesGcm16_256 | EspCipher::ChaCha20Poly1305 => 36,
            EspCipher::AesCbc128 => 16,
            EspCipher::AesCbc256 => 32,
        }
    }
    pub fn is_aead(self) -> bool {
        !matches!(self, EspCipher::AesCbc128 | EspCipher::AesCbc256)
    }
    /// Transform ID and key-length attribute.
    pub fn wire(self) -> (EncrId, Option<u16>) {
        match self {
            EspCipher::AesGcm16_128 => (EncrId::AES_GCM_16, Some(128)),
            EspCipher::AesGcm16_256 => (EncrId::AES_GCM_16, Some(256)),
            EspCipher::AesCbc128 => (EncrId::AES_CBC, Some(128)),
            EspCipher::AesCbc256 => (EncrId::AES_CBC, Some(256)),
            EspCipher::ChaCha20Poly1305 => (EncrId::CHACHA20_POLY1305, None),
        }
    }
    pub fn from_wire(id: EncrId, bits: Option<u16>) -> Option<Self> {
        Some(match (id, bits) {
            (EncrId::AES_GCM_16, Some(128)) => EspCipher::AesGcm16_128,
            (EncrId::AES_GCM_16, Some(256)) => EspCipher::AesGcm16_256,
            (EncrId::AES_CBC, Some(128)) => EspCipher::AesCbc128,
            (EncrId::AES_CBC, Some(256)) => EspCipher::AesCbc256,
            (EncrId::CHACHA20_POLY1305, None) => EspCipher::ChaCha20Poly1305,
            _ => return None,
        })
    }
}

/// An ESP algorithm pair: AEAD ciphers have no separate integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspAlgorithm {
    pub cipher: EspCipher,
    pub integ: Option<Integ>,
}

impl EspAlgorithm {
    fn integ_key_len(&self) -> usize {
        self.integ.map_or(0, Integ::key_len)
    }
}

/// Keys for one direction of a Child SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionKeys {
    /// Encryption key, including the 4-byte salt for AEADs.
    pub encryption: SecretBytes,
    /// Integrity key (empty for AEADs).
    pub integrity: SecretBytes,
}

/// KEYMAT for a Child SA, RFC 7296 §2.17:
/// `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)`. The initiator-to-responder
/// keys come first, and within each direction the encryption key precedes
/// the integrity key. Returns `(initiator→responder, responder→initiator)`.
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    alg: &EspAlgorithm,
) -> (DirectionKeys, DirectionKeys) {
    let e = alg.cipher.key_len();
    let a = alg.integ_key_len();
    let mut seed = Vec::new();
    if let Some(g) = g_ir {
        seed.extend_from_slice(g);
    }
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    let seed = SecretBytes(seed);
    let km = prf.plus(sk_d, &seed, 2 * (e + a));
    let part = |o: usize, n: usize| SecretBytes(km[o..o + n].to_vec());
    (
        DirectionKeys {
            encryption: part(0, e),
            integrity: part(e, a),
        },
        DirectionKeys {
            encryption: part(e + a, e),
            integrity: part(2 * e + a, a),
        },
    )
}

/// AUTH for a pre-shared key, RFC 7296 §2.15:
/// `prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)` where
/// `SignedOctets = RealMessage | Nonce(peer) | prf(SK_p, RestOfIDPayload)`.
pub fn psk_auth(
    prf: Prf,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> SecretBytes {
    let maced_id = prf.compute(sk_p, &[id_body]);
    let pad = prf.compute(psk, &[b"Key Pad for IKEv2"]);
    prf.compute(&pad, &[real_message, peer_nonce, &maced_id])
}

/// NAT_DETECTION_*_IP data, RFC 7296 §2.23: `SHA-1(SPIi | SPIr | IP | Port)`.
pub fn nat_detection_hash(spi_i: u64, spi_r: u64, addr: std::net::SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Constant-time comparison.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// One direction of SK payload protection (§3.14; RFC 5282 for GCM).
#[derive(Debug)]
pub struct SkCipher {
    cipher: IkeCipher,
    key_e: SecretBytes,
    integ: Option<(Integ, SecretBytes)>,
    /// GCM explicit IV counter: unique per key (RFC 5282 §3.1).
    counter: u64,
}

impl SkCipher {
    pub fn new(suite: &IkeSuite, key_e: &SecretBytes, key_a: &SecretBytes) -> Self {
        Self {
            cipher: suite.cipher,
            key_e: key_e.clone(),
            integ: suite.integ.map(|i| (i, key_a.clone())),
            counter: 0,
        }
    }

    fn icv_len(&self) -> usize {
        match (&self.integ, self.cipher) {
            (_, IkeCipher::AesGcm16 { .. }) => 16,
            (Some((i, _)), _) => i.icv_len(),
            (None, _) => 0,
        }
    }

    fn gcm_key(&self) -> Result<(aead::LessSafeKey, [u8; 4]), CryptoError> {
        let n = self.key_e.len() - 4;
        let alg = if n == 16 {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let k = aead::UnboundKey::new(alg, &self.key_e[..n]).map_err(|_| CryptoError::Internal)?;
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&self.key_e[n..]);
        Ok((aead::LessSafeKey::new(k), salt))
    }

    fn cbc_alg(&self) -> &'static cipher::Algorithm {
        if self.key_e.len() == 16 {
            &cipher::AES_128
        } else {
            &cipher::AES_256
        }
    }

    /// Builds a complete protected message: header, then an SK payload
    /// carrying `inner` (an encoded payload chain starting with `first`).
    pub fn seal(
        &mut self,
        header: &Header,
        first: PayloadType,
        inner: &[u8],
        rng: &mut dyn RngSource,
    ) -> Result<Vec<u8>, CryptoError> {
        self.seal_payload(header, PayloadType::SK, first, &[], inner, rng)
    }

    /// One Encrypted Fragment message (RFC 7383 §2.5): header, then an SKF
    /// payload with Fragment Number `number` of `total` carrying `chunk`,
    /// a piece of an encoded payload chain, padded and sealed on its own.
    /// `first` is the chain's first payload type in fragment 1, else NONE.
    pub fn seal_fragment(
        &mut self,
        header: &Header,
        first: PayloadType,
        number: u16,
        total: u16,
        chunk: &[u8],
        rng: &mut dyn RngSource,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut fields = [0u8; 4];
        fields[..2].copy_from_slice(&number.to_be_bytes());
        fields[2..].copy_from_slice(&total.to_be_bytes());
        self.seal_payload(header, PayloadType::SKF, first, &fields, chunk, rng)
    }

    /// The length of the sealed part (IV, padded ciphertext, ICV) of
    /// `content` octets.
    pub fn sealed_len(&self, content: usize) -> usize {
        let block = if self.cipher.is_aead() { 1 } else { 16 };
        let padded = (content + 1).div_ceil(block) * block;
        self.cipher.iv_len() + padded + self.icv_len()
    }

    /// The most content octets whose sealed part fits in `room` octets:
    /// sealing adds the IV, the ICV, padding to the cipher's block and the
    /// Pad Length octet (§3.14; RFC 7383 §2.5.1).
    pub fn content_room(&self, room: usize) -> usize {
        let block = if self.cipher.is_aead() { 1 } else { 16 };
        let fixed = self.cipher.iv_len() + self.icv_len();
        (room.saturating_sub(fixed) / block * block).saturating_sub(1)
    }

    /// Seals `inner` into a payload of type `ty` (SK or SKF) whose generic
    /// header is followed by `fields` (SKF's Fragment Number and Total
    /// Fragments), which are authenticated with the header (RFC 7383 §2.5).
    fn seal_payload(
        &mut self,
        header: &Header,
        ty: PayloadType,
        first: PayloadType,
        fields: &[u8],
        inner: &[u8],
        rng: &mut dyn RngSource,
    ) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.cipher.iv_len();
        let icv_len = self.icv_len();
        // Padding (§3.14): AES-CBC needs whole blocks; GCM needs none.
        let block = if self.cipher.is_aead() { 1 } else { 16 };
        let pad_len = (block - (inner.len() + 1) % block) % block;
        let mut plain = Vec::with_capacity(inner.len() + pad_len + 1);
        plain.extend_from_slice(inner);
        plain.resize(inner.len() + pad_len, 0);
        plain.push(pad_len as u8);
        let sk_len = EncodeError::check(
            "SK payload length",
            4 + fields.len() + iv_len + plain.len() + icv_len,
            u16::MAX.into(),
        )?;
        let total = EncodeError::check("message length", HEADER_LEN + sk_len, MAX_MESSAGE_LEN)?;
        let mut w = Writer::new();
        header.encode(ty, total as u32, &mut w);
        w.u8(first.0);
        w.u8(0);
        w.u16(sk_len as u16);
        w.bytes(fields);
        let mut iv = vec![0u8; iv_len];
        match self.cipher {
            IkeCipher::AesGcm16 { .. } => {
                iv.copy_from_slice(&self.counter.to_be_bytes());
                self.counter += 1;
                let (key, salt) = self.gcm_key()?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt);
                nonce[4..].copy_from_slice(&iv);
                let aad = w.buf.clone();
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(&aad),
                        &mut plain,
                    )
                    .map_err(|_| CryptoError::Internal)?;
                w.bytes(&iv);
                w.bytes(&plain);
                w.bytes(tag.as_ref());
            }
            IkeCipher::AesCbc { .. } => {
                rng.fill(&mut iv);
                let key = cipher::UnboundCipherKey::new(self.cbc_alg(), &self.key_e)
                    .map_err(|_| CryptoError::Internal)?;
                let enc = cipher::EncryptingKey::cbc(key).map_err(|_| CryptoError::Internal)?;
                let ivb: [u8; 16] = iv
                    .as_slice()
                    .try_into()
                    .map_err(|_| CryptoError::Internal)?;
                enc.less_safe_encrypt(
                    &mut plain,
                    cipher::EncryptionContext::Iv128(FixedLength::from(ivb)),
                )
                .map_err(|_| CryptoError::Internal)?;
                w.bytes(&iv);
                w.bytes(&plain);
                let (integ, key_a) = self.integ.as_ref().ok_or(CryptoError::Internal)?;
                let icv = integ.compute(key_a, &w.buf);
                w.bytes(&icv);
            }
        }
        Ok(w.buf)
    }

    /// Verifies and decrypts the SK payload of `datagram`, whose last
    /// `sk_data_len` bytes are the SK payload body. Returns the inner
    /// payload chain bytes (padding removed).
    pub fn open(&self, datagram: &[u8], sk_data_len: usize) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.cipher.iv_len();
        let icv_len = self.icv_len();
        if sk_data_len < iv_len + icv_len + 1 || sk_data_len > datagram.len() {
            return Err(CryptoError::IntegrityCheck);
        }
        let aad_end = datagram.len() - sk_data_len;
        let body = &datagram[aad_end..];
        let iv = &body[..iv_len];
        let mut plain = match self.cipher {
            IkeCipher::AesGcm16 { .. } => {
                let (key, salt) = self.gcm_key()?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt);
                nonce[4..].copy_from_slice(iv);
                let mut in_out = body[iv_len..].to_vec();
                let n = key
                    .open_in_place(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(&datagram[..aad_end]),
                        &mut in_out,
                    )
                    .map_err(|_| CryptoError::IntegrityCheck)?
                    .len();
                in_out.truncate(n);
                in_out
            }
            IkeCipher::AesCbc { .. } => {
                let (integ, key_a) = self.integ.as_ref().ok_or(CryptoError::Internal)?;
                let icv_at = datagram.len() - icv_len;
                let icv = integ.compute(key_a, &datagram[..icv_at]);
                if !ct_eq(&icv, &datagram[icv_at..]) {
                    return Err(CryptoError::IntegrityCheck);
                }
                let mut ct = body[iv_len..sk_data_len - icv_len].to_vec();
                if ct.is_empty() || ct.len() & 15 != 0 {
                    return Err(CryptoError::IntegrityCheck);
                }
                let key = cipher::UnboundCipherKey::new(self.cbc_alg(), &self.key_e)
                    .map_err(|_| CryptoError::Internal)?;
                let dec = cipher::DecryptingKey::cbc(key).map_err(|_| CryptoError::Internal)?;
                let ivb: [u8; 16] = iv.try_into().map_err(|_| CryptoError::Internal)?;
                let n = dec
                    .decrypt(
                        &mut ct,
                        cipher::DecryptionContext::Iv128(FixedLength::from(ivb)),
                    )
                    .map_err(|_| CryptoError::IntegrityCheck)?
                    .len();
                ct.truncate(n);
                ct
            }
        };
        let pad = *plain.last().ok_or(CryptoError::IntegrityCheck)? as usize;
        if pad + 1 > plain.len() {
            return Err(CryptoError::IntegrityCheck);
        }
        plain.truncate(plain.len() - pad - 1);
        Ok(plain)
    }
}

/// Supported key exchange groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group, RFC 3526 §3.
    Modp2048,
    /// 256-bit random ECP group, RFC 5903.
    Ecp256,
    /// 384-bit random ECP group, RFC 5903.
    Ecp384,
    /// Curve25519, RFC 8031.
    Curve25519,
}

impl DhGroup {
    pub fn id(self) -> DhGroupId {
        match self {
            DhGroup::Modp2048 => DhGroupId::MODP_2048,
            DhGroup::Ecp256 => DhGroupId::ECP_256,
            DhGroup::Ecp384 => DhGroupId::ECP_384,
            DhGroup::Curve25519 => DhGroupId::CURVE25519,
        }
    }
    pub fn from_id(id: DhGroupId) -> Option<Self> {
        Some(match id {
            DhGroupId::MODP_2048 => DhGroup::Modp2048,
            DhGroupId::ECP_256 => DhGroup::Ecp256,
            DhGroupId::ECP_384 => DhGroup::Ecp384,
            DhGroupId::CURVE25519 => DhGroup::Curve25519,
            _ => return None,
        })
    }
    /// Length of the KE payload data for this group.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Curve25519 => 32,
        }
    }
}

/// RFC 3526 §3, the 2048-bit MODP group prime; the generator is 2.
const MODP2048_P: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF"
);

/// Private exponent size for MODP-2048: 256 bits (RFC 3526 §8 estimates
/// 110-160 bits of strength; twice that is ample).
const MODP_EXP_BITS: usize = 256;

enum DhInner {
    Ec(agreement::PrivateKey),
    Modp(Box<U2048>),
}

/// Our ephemeral D-H private value.
pub struct DhSecret {
    group: DhGroup,
    inner: DhInner,
}

impl core::fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhSecret({:?}, <redacted>)", self.group)
    }
}

impl Drop for DhSecret {
    fn drop(&mut self) {
        if let DhInner::Modp(x) = &mut self.inner {
            x.zeroize();
        }
    }
}

fn modp_params() -> DynResidueParams<{ U2048::LIMBS }> {
    DynResidueParams::new(&U2048::from_be_hex(MODP2048_P))
}

impl DhSecret {
    /// Generates a key pair from the driver's randomness; returns the
    /// secret and the KE payload data (ECP: `x | y` without the 0x04
    /// prefix, RFC 5903 §7; MODP: big-endian, padded to 256 bytes).
    pub fn generate(
        group: DhGroup,
        rng: &mut dyn RngSource,
    ) -> Result<(Self, Vec<u8>), CryptoError> {
        match group {
            DhGroup::Ecp256 | DhGroup::Ecp384 | DhGroup::Curve25519 => {
                let (alg, len) = match group {
                    DhGroup::Ecp256 => (&agreement::ECDH_P256, 32),
                    DhGroup::Ecp384 => (&agreement::ECDH_P384, 48),
                    _ => (&agreement::X25519, 32),
                };
                // A random scalar can (with negligible probability) be out
                // of range for the NIST curves; draw again then.
                for _ in 0..64 {
                    let mut seed = SecretBytes(vec![0u8; len]);
                    rng.fill(&mut seed.0);
                    let Ok(key) = agreement::PrivateKey::from_private_key(alg, &seed) else {
                        continue;
                    };
                    let public = key
                        .compute_public_key()
                        .map_err(|_| CryptoError::Internal)?;
                    let public = match group {
                        DhGroup::Curve25519 => public.as_ref().to_vec(),
                        _ => public.as_ref()[1..].to_vec(),
                    };
                    return Ok((
                        Self {
                            group,
                            inner: DhInner::Ec(key),
                        },
                        public,
                    ));
                }
                Err(CryptoError::Internal)
            }
            DhGroup::Modp2048 => {
                let mut bytes = SecretBytes(vec![0u8; 256]);
                rng.fill(&mut bytes.0[256 - MODP_EXP_BITS / 8..]);
                bytes.0[256 - MODP_EXP_BITS / 8] |= 0x80; // full-size exponent
                let x = Box::new(U2048::from_be_slice(&bytes));
                let params = modp_params();
                let g = DynResidue::new(&U2048::from_u8(2), params);
                let y = g.pow_bounded_exp(&x, MODP_EXP_BITS).retrieve();
                Ok((
                    Self {
                        group,
                        inner: DhInner::Modp(x),
                    },
                    y.to_be_bytes().to_vec(),
                ))
            }
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Computes g^ir from the peer's KE data, validating it first:
    /// MODP values must satisfy 1 < y < p-1 (RFC 6989 §2.1); ECP points
    /// are checked to be on the curve by aws-lc (RFC 6989 §2.3) and the
    /// shared secret is the x coordinate (RFC 5903 §7); X25519 rejects an
    /// all-zero result (RFC 8031 §2.1).
    pub fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        if peer.len() != self.group.public_len() {
            return Err(CryptoError::InvalidPublicValue);
        }
        match &self.inner {
            DhInner::Ec(key) => {
                let (alg, bytes) = match self.group {
                    DhGroup::Curve25519 => (&agreement::X25519, peer.to_vec()),
                    g => {
                        let alg = if g == DhGroup::Ecp256 {
                            &agreement::ECDH_P256
                        } else {
                            &agreement::ECDH_P384
                        };
                        let mut v = Vec::with_capacity(peer.len() + 1);
                        v.push(4);
                        v.extend_from_slice(peer);
                        (alg, v)
                    }
                };
                agreement::agree(
                    key,
                    agreement::UnparsedPublicKey::new(alg, &bytes),
                    CryptoError::InvalidPublicValue,
                    |s| {
                        if s.iter().all(|b| *b == 0) {
                            Err(CryptoError::InvalidPublicValue)
                        } else {
                            Ok(SecretBytes(s.to_vec()))
                        }
                    },
                )
            }
            DhInner::Modp(x) => {
                let p = U2048::from_be_hex(MODP2048_P);
                let y = U2048::from_be_slice(peer);
                let p_minus_1 = p.wrapping_sub(&U2048::ONE);
                if y <= U2048::ONE || y >= p_minus_1 {
                    return Err(CryptoError::InvalidPublicValue);
                }
                let params = modp_params();
                let s = DynResidue::new(&y, params)
                    .pow_bounded_exp(x, MODP_EXP_BITS)
                    .retrieve();
                if s == U2048::ONE {
                    return Err(CryptoError::InvalidPublicValue);
                }
                Ok(SecretBytes(s.to_be_bytes().to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
