//! The pure-Rust backend: RustCrypto's `aes-gcm`, `chacha20poly1305`,
//! `cbc` + `aes` and `hmac` + `sha2`.
//!
//! Keys are expanded once: the AEAD structs hold the AES round keys and
//! the GHASH key, the CBC ciphers hold encryption and decryption round
//! keys (each packet clones them into a `cbc::Encryptor`, a copy rather
//! than a re-expansion), and the `Hmac` structs hold the inner and outer
//! hash states after the padded key block.
//!
//! Wiping: `chacha20poly1305` zeroizes its key on drop. The AES, GHASH and
//! HMAC state types only zeroize with crate features this workspace does
//! not enable (`aes/zeroize`, `aes-gcm/zeroize`; `hmac` has none), so on
//! drop each one is overwritten in place by an instance keyed with zeros
//! and the result passed through `core::hint::black_box` to keep the
//! stores. That is best effort, not a guarantee; enabling the crate
//! features would make it one for AES/GHASH.

use aes::{Aes128Dec, Aes128Enc, Aes256Dec, Aes256Enc};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac as RcHmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use super::transform::{AeadPrimitive, AeadTransform, CbcPrimitive, HmacTransform, MacPrimitive};
use super::{
    Algorithm, Backend, BackendFailure, CryptoError, Encryption, EspTransform, Integrity, SaKeys,
};

const BACKEND: Backend = Backend::RustCrypto;

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

/// AES-GCM or ChaCha20-Poly1305 with arbitrary AAD.
pub(super) enum AeadCipher {
    Gcm128(Box<Aes128Gcm>),
    Gcm256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl AeadCipher {
    pub(super) fn new(enc: Encryption, key: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| failure();
        Ok(match enc {
            Encryption::AesGcm16_128 => {
                Self::Gcm128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?))
            }
            Encryption::AesGcm16_256 => {
                Self::Gcm256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?))
            }
            Encryption::ChaCha20Poly1305 => Self::ChaCha(Box::new(
                ChaCha20Poly1305::new_from_slice(key).map_err(bad)?,
            )),
            _ => return Err(failure()),
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
        let nonce = nonce.into();
        let t = match self {
            Self::Gcm128(c) => c.encrypt_in_place_detached(nonce, aad, payload),
            Self::Gcm256(c) => c.encrypt_in_place_detached(nonce, aad, payload),
            Self::ChaCha(c) => c.encrypt_in_place_detached(nonce, aad, payload),
        }
        .map_err(|_| CryptoError::BadLength)?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let nonce = nonce.into();
        let tag: [u8; 16] = tag.try_into().map_err(|_| CryptoError::BadLength)?;
        let tag = (&tag).into();
        match self {
            Self::Gcm128(c) => c.decrypt_in_place_detached(nonce, aad, payload, tag),
            Self::Gcm256(c) => c.decrypt_in_place_detached(nonce, aad, payload, tag),
            Self::ChaCha(c) => c.decrypt_in_place_detached(nonce, aad, payload, tag),
        }
        .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

impl Drop for AeadCipher {
    fn drop(&mut self) {
        match self {
            Self::Gcm128(c) => {
                **c = Aes128Gcm::new(&Default::default());
                core::hint::black_box(&**c);
            }
            Self::Gcm256(c) => {
                **c = Aes256Gcm::new(&Default::default());
                core::hint::black_box(&**c);
            }
            // ChaCha20Poly1305 zeroizes its own key on drop.
            Self::ChaCha(_) => {}
        }
    }
}

/// Unpadded AES-CBC in place with pre-expanded round keys.
pub(super) enum CbcCipher {
    Aes128(Box<(Aes128Enc, Aes128Dec)>),
    Aes256(Box<(Aes256Enc, Aes256Dec)>),
}

impl CbcCipher {
    pub(super) fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| failure();
        Ok(match key.len() {
            16 => Self::Aes128(Box::new((
                Aes128Enc::new_from_slice(key).map_err(bad)?,
                Aes128Dec::new_from_slice(key).map_err(bad)?,
            ))),
            32 => Self::Aes256(Box::new((
                Aes256Enc::new_from_slice(key).map_err(bad)?,
                Aes256Dec::new_from_slice(key).map_err(bad)?,
            ))),
            _ => return Err(failure()),
        })
    }
}

impl CbcPrimitive for CbcCipher {
    fn encrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        let len = data.len();
        match self {
            Self::Aes128(k) => cbc::Encryptor::<Aes128Enc>::inner_iv_init(k.0.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(data, len)
                .map(|_| ()),
            Self::Aes256(k) => cbc::Encryptor::<Aes256Enc>::inner_iv_init(k.0.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(data, len)
                .map(|_| ()),
        }
        .map_err(|_| CryptoError::BadLength)
    }

    fn decrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        match self {
            Self::Aes128(k) => cbc::Decryptor::<Aes128Dec>::inner_iv_init(k.1.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(data)
                .map(|_| ()),
            Self::Aes256(k) => cbc::Decryptor::<Aes256Dec>::inner_iv_init(k.1.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(data)
                .map(|_| ()),
        }
        .map_err(|_| CryptoError::BadLength)
    }
}

impl Drop for CbcCipher {
    fn drop(&mut self) {
        let zero = [0u8; 32];
        match self {
            Self::Aes128(k) => {
                **k = (
                    Aes128Enc::new((&zero[..16]).into()),
                    Aes128Dec::new((&zero[..16]).into()),
                );
                core::hint::black_box(&**k);
            }
            Self::Aes256(k) => {
                **k = (
                    Aes256Enc::new((&zero).into()),
                    Aes256Dec::new((&zero).into()),
                );
                core::hint::black_box(&**k);
            }
        }
    }
}

/// HMAC-SHA-2 with prepared inner/outer states, over a list of pieces.
pub(super) enum Hmac {
    Sha256(Box<RcHmac<Sha256>>),
    Sha384(Box<RcHmac<Sha384>>),
    Sha512(Box<RcHmac<Sha512>>),
}

fn mac_pieces<M: Mac + Clone>(
    mac: &M,
    pieces: &[&[u8]],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let mut m = mac.clone();
    for piece in pieces {
        m.update(piece);
    }
    let tag = m.finalize().into_bytes();
    if out.len() > tag.len() {
        return Err(CryptoError::BadLength);
    }
    out.copy_from_slice(&tag[..out.len()]);
    Ok(())
}

impl Hmac {
    pub(super) fn new(integrity: Integrity, key: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| failure();
        Ok(match integrity {
            Integrity::HmacSha256_128 => Self::Sha256(Box::new(
                <RcHmac<Sha256> as Mac>::new_from_slice(key).map_err(bad)?,
            )),
            Integrity::HmacSha384_192 => Self::Sha384(Box::new(
                <RcHmac<Sha384> as Mac>::new_from_slice(key).map_err(bad)?,
            )),
            Integrity::HmacSha512_256 => Self::Sha512(Box::new(
                <RcHmac<Sha512> as Mac>::new_from_slice(key).map_err(bad)?,
            )),
            Integrity::None => return Err(failure()),
        })
    }
}

impl MacPrimitive for Hmac {
    fn sign(&self, pieces: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        match self {
            Self::Sha256(m) => mac_pieces(&**m, pieces, out),
            Self::Sha384(m) => mac_pieces(&**m, pieces, out),
            Self::Sha512(m) => mac_pieces(&**m, pieces, out),
        }
    }
}

impl Drop for Hmac {
    fn drop(&mut self) {
        // A zero key of any length gives a valid HMAC key.
        match self {
            Self::Sha256(m) => {
                if let Ok(z) = <RcHmac<Sha256> as Mac>::new_from_slice(&[]) {
                    **m = z;
                }
                core::hint::black_box(&**m);
            }
            Self::Sha384(m) => {
                if let Ok(z) = <RcHmac<Sha384> as Mac>::new_from_slice(&[]) {
                    **m = z;
                }
                core::hint::black_box(&**m);
            }
            Self::Sha512(m) => {
                if let Ok(z) = <RcHmac<Sha512> as Mac>::new_from_slice(&[]) {
                    **m = z;
                }
                core::hint::black_box(&**m);
            }
        }
    }
}
