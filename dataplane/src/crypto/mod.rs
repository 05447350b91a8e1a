//! ESP cryptographic transforms behind one trait, with three backends.
//!
//! An [`EspTransform`] holds one SA's expanded keys and seals/opens ESP
//! payloads in place (RFC 4303 §2, §3.3.2, §3.4.4). The ESP engine owns the
//! packet layout; this module only sees the pieces it needs:
//!
//! ```text
//! | SPI | Seq# low |  IV  | payload (plaintext || padding || pad len || NH) | ICV |
//!  \__ esp_header __/ \_iv_/ \______________________ payload ______________/ \icv/
//! ```
//!
//! Algorithms (IKEv2 transform type 1/3 names, RFC 7296 §3.3.2 / IANA):
//!
//! | [`Encryption`]            | IKEv2 name                     | key        | IV | block | ICV |
//! |---------------------------|--------------------------------|------------|----|-------|-----|
//! | `AesGcm16_128`            | ENCR_AES_GCM_16 (20), 128 bits | 16+4 salt  | 8  | 4     | 16  |
//! | `AesGcm16_256`            | ENCR_AES_GCM_16 (20), 256 bits | 32+4 salt  | 8  | 4     | 16  |
//! | `ChaCha20Poly1305`        | ENCR_CHACHA20_POLY1305 (28)    | 32+4 salt  | 8  | 4     | 16  |
//! | `AesCbc128`, `AesCbc256`  | ENCR_AES_CBC (12)              | 16 / 32    | 16 | 16    | from HMAC |
//! | `Null`                    | ENCR_NULL (11)                 | 0          | 0  | 4     | from HMAC |
//!
//! | [`Integrity`]      | IKEv2 name                   | key | ICV |
//! |--------------------|------------------------------|-----|-----|
//! | `HmacSha256_128`   | AUTH_HMAC_SHA2_256_128 (12)  | 32  | 16  |
//! | `HmacSha384_192`   | AUTH_HMAC_SHA2_384_192 (13)  | 48  | 24  |
//! | `HmacSha512_256`   | AUTH_HMAC_SHA2_512_256 (14)  | 64  | 32  |
//!
//! Backends: [`Backend::IpsecMb`] (Intel ipsec-mb, `ipsec_mb.rs`, the only
//! file here with `unsafe`), [`Backend::AwsLc`] (aws-lc-rs) and
//! [`Backend::RustCrypto`] (pure Rust). All three produce byte-identical
//! output; `tests.rs` checks that with proptest and `vectors.rs` holds the
//! known answers, each with its source.
//!
//! Transforms that go faster many packets at a time (ipsec-mb's CBC/NULL
//! with HMAC) also offer [`EspTransform::batch_keys`], with which the
//! gateway seals or opens a whole burst in one [`CryptoBatch`].
//!
//! `seal` and `open` never allocate. Keys are expanded once in
//! [`new_transform`] and wiped when the transform is dropped (see each
//! backend for what "wiped" can mean for it).

use core::fmt;
use core::str::FromStr;
use cpu::prefetch::{BlockTable, Lines};

use zeroize::Zeroizing;

mod aws_lc;
mod cbc_iv;
#[cfg(have_ipsec_mb)]
#[allow(unsafe_code)]
mod ipsec_mb;
/// Built without Intel ipsec-mb (see `ffi/ipsec-mb-sys/build.rs`): the
/// backend supports nothing and [`default_backend`] picks aws-lc-rs; no
/// transform has [`BatchKeys`], so no batch ever holds a packet.
#[cfg(not(have_ipsec_mb))]
mod ipsec_mb {
    use core::marker::PhantomData;

    use super::{Algorithm, Backend, CryptoError, EspTransform, SaKeys};

    pub(super) fn supports(_: Algorithm) -> bool {
        false
    }

    pub(super) fn new_transform(
        algorithm: Algorithm,
        _: &SaKeys,
    ) -> Result<Box<dyn EspTransform>, CryptoError> {
        Err(CryptoError::Unsupported {
            backend: Backend::IpsecMb,
            algorithm,
        })
    }

    /// No transform has batch keys without ipsec-mb.
    #[derive(Debug)]
    pub enum BatchKeys {}

    /// Packets a batch holds before it grows its storage.
    pub const BATCH_CAPACITY: usize = 128;

    /// Storage for batches (nothing to store without ipsec-mb).
    #[derive(Debug, Default)]
    pub struct BatchStore;

    impl BatchStore {
        /// An empty batch.
        pub fn batch(&mut self) -> CryptoBatch<'_> {
            CryptoBatch(PhantomData)
        }
    }

    /// A batch that can hold nothing: there are no [`BatchKeys`].
    #[derive(Debug)]
    pub struct CryptoBatch<'a>(PhantomData<&'a mut [u8]>);

    impl<'a> CryptoBatch<'a> {
        /// Unreachable: no [`BatchKeys`] exist.
        pub fn seal(
            &mut self,
            keys: &'a BatchKeys,
            _: &'a mut [u8],
            _: Option<u32>,
        ) -> Result<usize, CryptoError> {
            match *keys {}
        }
        /// Unreachable: no [`BatchKeys`] exist.
        pub fn open(
            &mut self,
            keys: &'a BatchKeys,
            _: &'a mut [u8],
            _: Option<u32>,
        ) -> Result<usize, CryptoError> {
            match *keys {}
        }
        /// Always 0.
        pub fn len(&self) -> usize {
            0
        }
        /// Always true.
        pub fn is_empty(&self) -> bool {
            true
        }
        /// Nothing to run.
        pub fn run(&mut self) {}
        /// No packet has a result.
        pub fn result(&self, _: usize) -> Result<(), CryptoError> {
            Err(CryptoError::BadLength)
        }
    }
}
pub use ipsec_mb::{BatchKeys, BatchStore, CryptoBatch, BATCH_CAPACITY};
mod rust_crypto;
#[cfg(test)]
mod tests;

/// The backends this build has: [`Backend::ALL`], less ipsec-mb when the
/// library was not found (the portable test tier).
#[cfg(test)]
pub(crate) fn built_backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| *b != Backend::IpsecMb || cfg!(have_ipsec_mb))
        .collect()
}
mod transform;
#[cfg(test)]
pub(crate) mod vectors;

/// ESP encryption transform (IKEv2 transform type 1).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// ENCR_AES_GCM_16 with a 128-bit key (RFC 4106): 16-octet ICV.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key (RFC 4106): 16-octet ICV.
    AesGcm16_256,
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
    /// ENCR_AES_CBC with a 128-bit key (RFC 3602).
    AesCbc128,
    /// ENCR_AES_CBC with a 256-bit key (RFC 3602).
    AesCbc256,
    /// ENCR_NULL (RFC 2410): integrity only.
    Null,
}

impl Encryption {
    /// Whether this is a combined-mode (AEAD) algorithm (RFC 4303 §3.2.3).
    pub const fn is_aead(self) -> bool {
        matches!(
            self,
            Self::AesGcm16_128 | Self::AesGcm16_256 | Self::ChaCha20Poly1305
        )
    }

    /// IKEv2 transform ID (IANA "Transform Type 1").
    pub const fn ikev2_id(self) -> u16 {
        match self {
            Self::AesGcm16_128 | Self::AesGcm16_256 => 20,
            Self::ChaCha20Poly1305 => 28,
            Self::AesCbc128 | Self::AesCbc256 => 12,
            Self::Null => 11,
        }
    }

    /// Length of `SaKeys::enc_key`: the cipher key plus, for AEADs, the
    /// 4-octet salt (RFC 4106 §8.1: "KEYMAT ... 20, 28, or 36 octets";
    /// RFC 7634 §4: "36 octets").
    pub const fn key_len(self) -> usize {
        match self {
            Self::AesGcm16_128 => 16 + 4,
            Self::AesGcm16_256 | Self::ChaCha20Poly1305 => 32 + 4,
            Self::AesCbc128 => 16,
            Self::AesCbc256 => 32,
            Self::Null => 0,
        }
    }

    /// Explicit IV length on the wire: 8 for GCM (RFC 4106 §3.1) and
    /// ChaCha20-Poly1305 (RFC 7634 §2), 16 for CBC (RFC 3602 §3), 0 for NULL.
    pub const fn iv_len(self) -> usize {
        match self {
            Self::AesGcm16_128 | Self::AesGcm16_256 | Self::ChaCha20Poly1305 => 8,
            Self::AesCbc128 | Self::AesCbc256 => 16,
            Self::Null => 0,
        }
    }

    /// Alignment the padded payload must reach: the AES block for CBC
    /// (RFC 3602 §2.4), otherwise the 4 octets RFC 4303 §2.4 requires.
    pub const fn block_size(self) -> usize {
        match self {
            Self::AesCbc128 | Self::AesCbc256 => 16,
            _ => 4,
        }
    }
}

/// ESP integrity transform (IKEv2 transform type 3); `None` for AEADs.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// NONE: only valid with an AEAD.
    None,
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    HmacSha512_256,
}

impl Integrity {
    /// IKEv2 transform ID (IANA "Transform Type 3").
    pub const fn ikev2_id(self) -> u16 {
        match self {
            Self::None => 0,
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Key length: RFC 4868 §2.1.1, "the key length ... is 256, 384, or 512
    /// bits" (the hash output length).
    pub const fn key_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// ICV length: half the hash output (RFC 4868 §2.3).
    pub const fn icv_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }
}

/// An ESP algorithm suite: one encryption and one integrity transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Algorithm {
    /// The encryption transform.
    pub encryption: Encryption,
    /// The integrity transform (`None` for AEADs).
    pub integrity: Integrity,
}

impl Algorithm {
    /// AES-GCM-16 with a 128-bit key.
    pub const AES_GCM_128: Self = Self::aead(Encryption::AesGcm16_128);
    /// AES-GCM-16 with a 256-bit key.
    pub const AES_GCM_256: Self = Self::aead(Encryption::AesGcm16_256);
    /// ChaCha20-Poly1305.
    pub const CHACHA20_POLY1305: Self = Self::aead(Encryption::ChaCha20Poly1305);

    const fn aead(encryption: Encryption) -> Self {
        Self {
            encryption,
            integrity: Integrity::None,
        }
    }

    /// Every valid combination, for tests, benches and capability listings.
    pub const ALL: [Self; 12] = {
        use Encryption as E;
        use Integrity as I;
        const fn a(encryption: E, integrity: I) -> Algorithm {
            Algorithm {
                encryption,
                integrity,
            }
        }
        [
            a(E::AesGcm16_128, I::None),
            a(E::AesGcm16_256, I::None),
            a(E::ChaCha20Poly1305, I::None),
            a(E::AesCbc128, I::HmacSha256_128),
            a(E::AesCbc128, I::HmacSha384_192),
            a(E::AesCbc128, I::HmacSha512_256),
            a(E::AesCbc256, I::HmacSha256_128),
            a(E::AesCbc256, I::HmacSha384_192),
            a(E::AesCbc256, I::HmacSha512_256),
            a(E::Null, I::HmacSha256_128),
            a(E::Null, I::HmacSha384_192),
            a(E::Null, I::HmacSha512_256),
        ]
    };

    /// Rejects an AEAD with an HMAC (RFC 4303 §3.2: a combined-mode
    /// algorithm provides integrity itself) and a non-AEAD without one
    /// (this gateway never offers confidentiality without integrity, and
    /// RFC 4303 §3.2 forbids NULL encryption with no integrity).
    pub fn validate(self) -> Result<(), CryptoError> {
        let ok = self.encryption.is_aead() == (self.integrity == Integrity::None);
        if ok {
            Ok(())
        } else {
            Err(CryptoError::InvalidAlgorithm(self))
        }
    }

    /// Whether the encryption transform is an AEAD.
    pub const fn is_aead(self) -> bool {
        self.encryption.is_aead()
    }

    /// Explicit IV length (see [`Encryption::iv_len`]).
    pub const fn iv_len(self) -> usize {
        self.encryption.iv_len()
    }

    /// Padding alignment (see [`Encryption::block_size`]).
    pub const fn block_size(self) -> usize {
        self.encryption.block_size()
    }

    /// ICV length: 16 for the AEADs (RFC 4106 §6 "ICV ... 16 octets",
    /// RFC 7634 §2), else the truncated HMAC length.
    pub const fn icv_len(self) -> usize {
        if self.encryption.is_aead() {
            16
        } else {
            self.integrity.icv_len()
        }
    }
}

/// Which implementation runs the transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Intel Multi-Buffer Crypto for IPsec (ipsec-mb 1.3).
    IpsecMb,
    /// aws-lc-rs (AWS-LC).
    AwsLc,
    /// The pure-Rust RustCrypto crates.
    RustCrypto,
}

impl Backend {
    /// All backends, fastest first.
    pub const ALL: [Self; 3] = [Self::IpsecMb, Self::AwsLc, Self::RustCrypto];

    /// The name used in configuration files and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::IpsecMb => "ipsec-mb",
            Self::AwsLc => "aws-lc",
            Self::RustCrypto => "rust",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not one of `ipsec-mb`, `aws-lc`, `rust`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown crypto backend (expected \"ipsec-mb\", \"aws-lc\" or \"rust\")")]
pub struct UnknownBackend;

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or(UnknownBackend)
    }
}

/// An SA's keying material for one direction, as taken from KEYMAT
/// (RFC 7296 §2.17): encryption key first, then integrity key.
///
/// For AES-GCM and ChaCha20-Poly1305 `enc_key` is key || 4-octet salt
/// (RFC 4106 §8.1, RFC 7634 §4: 20, 36, 36 octets); for CBC it is the AES
/// key; for NULL it is empty. `auth_key` is the HMAC key (32/48/64 octets)
/// or empty for AEADs. Both are wiped on drop; `Debug` never shows them.
#[derive(Clone, Default)]
pub struct SaKeys {
    /// Encryption key (with the salt appended for AEADs).
    pub enc_key: Zeroizing<Vec<u8>>,
    /// HMAC key, or empty.
    pub auth_key: Zeroizing<Vec<u8>>,
}

impl SaKeys {
    /// Copies the two keys.
    pub fn new(enc_key: &[u8], auth_key: &[u8]) -> Self {
        Self {
            enc_key: Zeroizing::new(enc_key.to_vec()),
            auth_key: Zeroizing::new(auth_key.to_vec()),
        }
    }
}

impl fmt::Debug for SaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaKeys")
            .field(
                "enc_key",
                &format_args!("<{} bytes redacted>", self.enc_key.len()),
            )
            .field(
                "auth_key",
                &format_args!("<{} bytes redacted>", self.auth_key.len()),
            )
            .finish()
    }
}

/// A backend's own failure code (ipsec-mb's `imb_errno`, or 0 when the
/// library gives none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendFailure {
    /// Which backend failed.
    pub backend: Backend,
    /// The library's error number, or 0.
    pub code: i32,
}

impl fmt::Display for BackendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed (code {})", self.backend, self.code)
    }
}

/// Why a transform could not be built or a packet could not be processed.
/// Small and `Copy`, so it can index drop counters on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key had the wrong length for the algorithm.
    #[error("bad key length: expected {expected} bytes, got {got}")]
    BadKeyLength {
        /// Required length.
        expected: usize,
        /// Supplied length.
        got: usize,
    },
    /// The backend does not implement the algorithm (or is not available
    /// on this machine).
    #[error("{backend} does not support {algorithm:?}")]
    Unsupported {
        /// The backend asked.
        backend: Backend,
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// The encryption/integrity combination is not allowed.
    #[error("invalid algorithm combination {0:?}")]
    InvalidAlgorithm(Algorithm),
    /// The ICV did not verify. Nothing from the payload may be used.
    #[error("ICV verification failed")]
    AuthenticationFailed,
    /// IV, ICV or payload length is wrong (CBC payloads must be a multiple
    /// of 16 octets).
    #[error("bad IV, ICV or payload length")]
    BadLength,
    /// The backend library reported an error.
    #[error("crypto backend error: {0}")]
    Backend(BackendFailure),
}

/// An SA's ESP transform: expanded keys plus the code to use them.
///
/// Transforms are `Send`, owned by one worker at a time. `seal` and `open`
/// do not allocate.
pub trait EspTransform: Send {
    /// The algorithm suite.
    fn algorithm(&self) -> Algorithm;
    /// The implementation in use.
    fn backend(&self) -> Backend;
    /// Explicit IV length: 8 for GCM/ChaCha, 16 for CBC, 0 for NULL.
    fn iv_len(&self) -> usize {
        self.algorithm().iv_len()
    }
    /// Padding alignment: 4 for AEAD/NULL, 16 for CBC.
    fn block_size(&self) -> usize {
        self.algorithm().block_size()
    }
    /// ICV length: 16 for AEADs, 16/24/32 for the HMACs.
    fn icv_len(&self) -> usize {
        self.algorithm().icv_len()
    }
    /// The cache lines of key material `seal`/`open` read first (expanded
    /// round keys, GHASH powers): the SA records them once, and the burst
    /// pipeline prefetches them for the packets behind the one it works
    /// on, so that with many SAs the key schedules' cache misses overlap.
    /// The default names none.
    fn key_lines(&self) -> Lines {
        Lines::NONE
    }
    /// Key material read per block of the payload, from the end, besides
    /// [`key_lines`](Self::key_lines) (ipsec-mb's GHASH powers): the burst
    /// pipeline prefetches as much of it as a packet's length needs. The
    /// default: none.
    fn block_table(&self) -> Option<BlockTable> {
        None
    }
    /// The keys to seal or open this SA's packets in a [`CryptoBatch`],
    /// for a transform that is faster that way: ipsec-mb's CBC/NULL with
    /// HMAC, whose multi-buffer manager interleaves the packets of a
    /// batch across SIMD lanes. `None` (the default, and the AEADs, whose
    /// direct API is fast one packet at a time): use `seal`/`open`.
    fn batch_keys(&self) -> Option<&BatchKeys> {
        None
    }
    /// Writes the explicit IV for outbound packet number `seq` (the full
    /// 64-bit sequence number) into `iv[..iv_len()]`.
    ///
    /// GCM and ChaCha20-Poly1305: `seq` big-endian. RFC 4106 §3.1: "The
    /// IV MUST be chosen by the encryptor in a manner that ensures that the
    /// same IV value is used only once for a given key ... implementations
    /// can use a counter"; the sequence number never repeats under one SA.
    ///
    /// CBC: AES-128 of `seq` under a random per-SA IV key drawn from the OS
    /// RNG when the transform is built (RFC 3602 §2.3: "The IV MUST be
    /// chosen at random, and MUST be unpredictable"; this is NIST SP
    /// 800-38A Appendix C's "apply the forward cipher function ... to a
    /// nonce", with an independent key). Unique because AES is a
    /// permutation and `seq` is unique, unpredictable without the IV key.
    ///
    /// # Panics
    /// If `iv` is shorter than `iv_len()`.
    fn fill_iv(&mut self, seq: u64, iv: &mut [u8]);
    /// Encrypts `payload` in place (it already holds
    /// plaintext || padding || pad length || next header) and writes the
    /// ICV into `icv` (exactly `icv_len()` bytes).
    ///
    /// `esp_header` is SPI || low 32 bits of the sequence number, as on the
    /// wire; `esn_high` is the high 32 bits when ESN is on (RFC 4303 §2.2.1).
    /// AEAD: AAD = SPI || seq low, or SPI || seq high || seq low with ESN
    /// (RFC 4106 §5, RFC 7634 §2.1); nonce = salt || iv. CBC/NULL: ICV =
    /// trunc(HMAC(esp_header || iv || ciphertext || seq high if ESN))
    /// (RFC 4303 §2.8, §3.3.2.1 and Appendix A; RFC 4868 §2.3).
    fn seal(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError>;
    /// Verifies the ICV in constant time and decrypts `payload` in place.
    /// On error the contents of `payload` are unspecified and must not be
    /// released (RFC 4303 §3.4.4).
    fn open(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError>;
}

impl fmt::Debug for dyn EspTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspTransform")
            .field("algorithm", &self.algorithm())
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Builds a transform: checks the algorithm and key lengths, then expands
/// the keys once.
pub fn new_transform(
    backend: Backend,
    alg: Algorithm,
    keys: &SaKeys,
) -> Result<Box<dyn EspTransform>, CryptoError> {
    alg.validate()?;
    check_key_len(alg.encryption.key_len(), keys.enc_key.len())?;
    check_key_len(alg.integrity.key_len(), keys.auth_key.len())?;
    match backend {
        Backend::IpsecMb => ipsec_mb::new_transform(alg, keys),
        Backend::AwsLc => aws_lc::new_transform(alg, keys),
        Backend::RustCrypto => rust_crypto::new_transform(alg, keys),
    }
}

/// The backends that can run `alg` on this machine, fastest first. Empty
/// for an invalid combination.
pub fn available_backends(alg: Algorithm) -> Vec<Backend> {
    if alg.validate().is_err() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(3);
    if ipsec_mb::supports(alg) {
        out.push(Backend::IpsecMb);
    }
    // aws-lc-rs and RustCrypto implement every valid combination.
    out.push(Backend::AwsLc);
    out.push(Backend::RustCrypto);
    out
}

/// The fastest backend for `alg` on this CPU: ipsec-mb whenever it
/// initialises and supports `alg`, else aws-lc.
///
/// For the AEADs ipsec-mb's direct API is the fastest one packet at a time
/// (`esp_report` on this machine: AES-GCM 40 ns against aws-lc's 77 ns at
/// 64 bytes; ChaCha20-Poly1305 539 ns against 722 ns at 1400 bytes). For
/// CBC/NULL with HMAC ipsec-mb has only its job API, which costs about four
/// times what aws-lc-rs does for one packet (978 against 267 ns at 64
/// bytes, 10.5 against 2.5 us at 1400), but the gateway hands it whole
/// bursts ([`CryptoBatch`]), and across a burst its multi-buffer manager
/// runs one packet per SIMD lane, the way ipsec-secgw runs crypto_aesni_mb.
pub fn default_backend(alg: Algorithm) -> Backend {
    if ipsec_mb::supports(alg) {
        Backend::IpsecMb
    } else {
        Backend::AwsLc
    }
}

fn check_key_len(expected: usize, got: usize) -> Result<(), CryptoError> {
    if expected == got {
        Ok(())
    } else {
        Err(CryptoError::BadKeyLength { expected, got })
    }
}

/// Compares two ICVs without data-dependent branches or early exit: the
/// XOR of every 8-byte word is OR-ed together and only the final result
/// is tested (behind an optimisation barrier). `subtle`'s byte-wise
/// `ct_eq` does the same with a barrier per byte, which cost more than a
/// whole 64-byte AES-GCM operation here; this keeps its guarantee at a
/// fraction of the cost. Lengths are public (the ICV length of the SA).
#[inline]
pub(crate) fn icv_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut acc = 0u64;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        acc |= x ^ y;
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        acc |= u64::from(x ^ y);
    }
    core::hint::black_box(acc) == 0
}

#[cfg(test)]
mod icv_eq_tests {
    use super::icv_eq;

    #[test]
    fn equal_and_every_single_difference() {
        for len in [0usize, 1, 8, 12, 16, 24, 32] {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(icv_eq(&a, &a.clone()));
            for i in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[i] ^= 1 << bit;
                    assert!(!icv_eq(&a, &b), "len {len} byte {i} bit {bit}");
                }
            }
        }
        assert!(!icv_eq(&[1, 2], &[1, 2, 3]));
    }
}
