//! The aws-lc-rs backend.
//!
//! - AES-GCM and ChaCha20-Poly1305: `aead::LessSafeKey` (key schedule and
//!   GHASH table built once in `UnboundKey::new`), with
//!   `seal_in_place_separate_tag` / `open_in_place_separate_tag`.
//! - AES-CBC: `cipher::EncryptingKey::cbc` / `DecryptingKey::cbc`, unpadded
//!   CBC in place (aws-lc-rs 1.19 has it; lengths must be block multiples).
//! - HMAC: `hmac::Key` holds the prepared inner/outer hash states; each
//!   packet copies them into an `hmac::Context` (an `HMAC_CTX` copy, no heap).
//!
//! Key material lives in AWS-LC structures: aws-lc-rs zeroizes the AES key
//! schedules on drop, and AWS-LC cleans up its AEAD and HMAC contexts when
//! they are freed.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::transform::{AeadPrimitive, AeadTransform, CbcPrimitive, HmacTransform, MacPrimitive};
use super::{
    Algorithm, Backend, BackendFailure, CryptoError, Encryption, EspTransform, Integrity, SaKeys,
};

const BACKEND: Backend = Backend::AwsLc;

fn failure() -> CryptoError {
    CryptoError::Backend(BackendFailure {
        backend: BACKEND,
        code: 0,
    })
}

pub(super) fn new_transform(
    alg: Algorithm,
    keys: &SaKeys,
) -> Result<Box<dyn EspTransform>, CryptoError> {
    if alg.is_aead() {
        let t = AeadTransform::new(alg, BACKEND, keys, |k| AeadCipher::new(alg.encryption, k))?;
        Ok(Box::new(t))
    } else {
        let t = HmacTransform::new(alg, BACKEND, keys, CbcCipher::new, |k| {
            Hmac::new(alg.integrity, k)
        })?;
        Ok(Box::new(t))
    }
}

/// AES-GCM or ChaCha20-Poly1305.
pub(super) struct AeadCipher {
    key: LessSafeKey,
}

impl AeadCipher {
    pub(super) fn new(enc: Encryption, key: &[u8]) -> Result<Self, CryptoError> {
        let alg = match enc {
            Encryption::AesGcm16_128 => &aead::AES_128_GCM,
            Encryption::AesGcm16_256 => &aead::AES_256_GCM,
            Encryption::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            _ => return Err(failure()),
        };
        let unbound = UnboundKey::new(alg, key).map_err(|_| failure())?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }
}

impl AeadPrimitive for AeadCipher {
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), CryptoError> {
        let t = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                payload,
            )
            .map_err(|_| failure())?;
        tag.copy_from_slice(t.as_ref());
        Ok(())
    }

    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                tag,
                payload,
            )
            .map(|_| ())
            .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

/// Unpadded AES-CBC in place.
pub(super) struct CbcCipher {
    enc: EncryptingKey,
    dec: DecryptingKey,
}

impl CbcCipher {
    pub(super) fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let alg = match key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(failure()),
        };
        let unbound = || UnboundCipherKey::new(alg, key).map_err(|_| failure());
        Ok(Self {
            enc: EncryptingKey::cbc(unbound()?).map_err(|_| failure())?,
            dec: DecryptingKey::cbc(unbound()?).map_err(|_| failure())?,
        })
    }
}

impl CbcPrimitive for CbcCipher {
    fn encrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        let ctx = EncryptionContext::Iv128(FixedLength::from(iv));
        self.enc
            .less_safe_encrypt(data, ctx)
            .map(|_| ())
            .map_err(|_| CryptoError::BadLength)
    }

    fn decrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        let ctx = DecryptionContext::Iv128(FixedLength::from(iv));
        self.dec
            .decrypt(data, ctx)
            .map(|_| ())
            .map_err(|_| CryptoError::BadLength)
    }
}

/// HMAC-SHA-2 with prepared inner/outer states.
pub(super) struct Hmac {
    key: hmac::Key,
}

impl Hmac {
    pub(super) fn new(integrity: Integrity, key: &[u8]) -> Result<Self, CryptoError> {
        let alg = match integrity {
            Integrity::HmacSha256_128 => hmac::HMAC_SHA256,
            Integrity::HmacSha384_192 => hmac::HMAC_SHA384,
            Integrity::HmacSha512_256 => hmac::HMAC_SHA512,
            Integrity::None => return Err(failure()),
        };
        Ok(Self {
            key: hmac::Key::new(alg, key),
        })
    }
}

impl MacPrimitive for Hmac {
    fn sign(&self, pieces: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for piece in pieces {
            ctx.update(piece);
        }
        let tag = ctx.sign();
        let tag = tag.as_ref();
        if out.len() > tag.len() {
            return Err(CryptoError::BadLength);
        }
        out.copy_from_slice(&tag[..out.len()]);
        Ok(())
    }
}
