//! The ESP framing shared by every backend: AAD and nonce construction,
//! ICV input, length checks, verify-before-decrypt. Backends supply only
//! the primitives ([`AeadPrimitive`], [`CbcPrimitive`], [`MacPrimitive`]).

use zeroize::Zeroize;

use cpu::prefetch::{BlockTable, Lines};

use super::cbc_iv::CbcIvGenerator;
use super::{Algorithm, Backend, CryptoError, Encryption, EspTransform, SaKeys};

/// An AEAD with a 12-octet nonce and 16-octet tag, arbitrary AAD.
pub(super) trait AeadPrimitive: Send {
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), CryptoError>;
    /// See [`EspTransform::key_lines`].
    fn key_lines(&self) -> Lines {
        Lines::NONE
    }
    /// See [`EspTransform::block_table`].
    fn block_table(&self) -> Option<BlockTable> {
        None
    }
    /// Must verify `tag` in constant time.
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError>;
}

/// Unpadded AES-CBC in place; `data.len()` is a multiple of 16.
pub(super) trait CbcPrimitive: Send {
    fn encrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError>;
    fn decrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError>;
}

/// HMAC over the concatenation of `pieces`, truncated to `out.len()`.
pub(super) trait MacPrimitive: Send {
    fn sign(&self, pieces: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError>;
}

/// AES-GCM or ChaCha20-Poly1305 in ESP (RFC 4106, RFC 7634).
pub(super) struct AeadTransform<A> {
    alg: Algorithm,
    backend: Backend,
    cipher: A,
    salt: [u8; 4],
}

impl<A: AeadPrimitive> AeadTransform<A> {
    /// `build` gets the cipher key without the salt.
    pub(super) fn new(
        alg: Algorithm,
        backend: Backend,
        keys: &SaKeys,
        build: impl FnOnce(&[u8]) -> Result<A, CryptoError>,
    ) -> Result<Self, CryptoError> {
        let (key, salt) = keys.enc_key.split_at(keys.enc_key.len() - 4);
        let mut s = [0u8; 4];
        s.copy_from_slice(salt);
        Ok(Self {
            alg,
            backend,
            cipher: build(key)?,
            salt: s,
        })
    }

    fn nonce(&self, iv: &[u8]) -> Result<[u8; 12], CryptoError> {
        if iv.len() != 8 {
            return Err(CryptoError::BadLength);
        }
        // RFC 4106 §4 / RFC 7634 §2: nonce = salt || explicit IV.
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(iv);
        Ok(nonce)
    }
}

impl<A> Drop for AeadTransform<A> {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

/// The AEAD additional data: SPI || seq low (8 octets), or with ESN
/// SPI || seq high || seq low (12 octets). RFC 4106 §5: "Extended
/// Sequence Numbers ... the AAD is ... SPI, 64-bit Extended Sequence
/// Number"; RFC 7634 §2.1 is the same.
fn aad(esp_header: &[u8; 8], esn_high: Option<u32>, out: &mut [u8; 12]) -> usize {
    match esn_high {
        None => {
            out[..8].copy_from_slice(esp_header);
            8
        }
        Some(high) => {
            out[..4].copy_from_slice(&esp_header[..4]);
            out[4..8].copy_from_slice(&high.to_be_bytes());
            out[8..].copy_from_slice(&esp_header[4..]);
            12
        }
    }
}

impl<A: AeadPrimitive> EspTransform for AeadTransform<A> {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn fill_iv(&mut self, seq: u64, iv: &mut [u8]) {
        iv[..8].copy_from_slice(&seq.to_be_bytes());
    }

    fn key_lines(&self) -> Lines {
        self.cipher.key_lines()
    }

    fn block_table(&self) -> Option<BlockTable> {
        self.cipher.block_table()
    }

    fn seal(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        let nonce = self.nonce(iv)?;
        if icv.len() != 16 {
            return Err(CryptoError::BadLength);
        }
        let mut a = [0u8; 12];
        let n = aad(esp_header, esn_high, &mut a);
        self.cipher.seal(&nonce, &a[..n], payload, icv)
    }

    fn open(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        let nonce = self.nonce(iv)?;
        if icv.len() != 16 {
            return Err(CryptoError::BadLength);
        }
        let mut a = [0u8; 12];
        let n = aad(esp_header, esn_high, &mut a);
        self.cipher.open(&nonce, &a[..n], payload, icv)
    }
}

/// AES-CBC or NULL encryption with a truncated HMAC (RFC 3602, RFC 2410,
/// RFC 4868).
pub(super) struct HmacTransform<C, M> {
    alg: Algorithm,
    backend: Backend,
    cbc: Option<C>,
    iv_gen: Option<CbcIvGenerator>,
    mac: M,
}

impl<C: CbcPrimitive, M: MacPrimitive> HmacTransform<C, M> {
    /// `build_cbc` gets the AES key (not called for NULL); `build_mac` the
    /// HMAC key.
    pub(super) fn new(
        alg: Algorithm,
        backend: Backend,
        keys: &SaKeys,
        build_cbc: impl FnOnce(&[u8]) -> Result<C, CryptoError>,
        build_mac: impl FnOnce(&[u8]) -> Result<M, CryptoError>,
    ) -> Result<Self, CryptoError> {
        let (cbc, iv_gen) = match alg.encryption {
            Encryption::Null => (None, None),
            _ => (
                Some(build_cbc(&keys.enc_key)?),
                Some(CbcIvGenerator::new(backend)?),
            ),
        };
        Ok(Self {
            alg,
            backend,
            cbc,
            iv_gen,
            mac: build_mac(&keys.auth_key)?,
        })
    }

    fn check(&self, iv: &[u8], payload: &[u8], icv_len: usize) -> Result<(), CryptoError> {
        // `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.80.
        #[allow(clippy::manual_is_multiple_of)]
        let aligned = self.cbc.is_none() || payload.len() % 16 == 0;
        if iv.len() == self.alg.iv_len() && icv_len == self.alg.icv_len() && aligned {
            Ok(())
        } else {
            Err(CryptoError::BadLength)
        }
    }

    /// ICV = trunc(HMAC(SPI || seq low || IV || ciphertext [|| seq high])):
    /// RFC 4303 §2.8 ("The ICV is computed over the ESP header, Payload,
    /// and ESP trailer fields") and Appendix A2.2 (the high-order 32 bits
    /// are appended after the trailer for the ICV computation only).
    fn icv(
        &self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        ct: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let high = esn_high.map(u32::to_be_bytes);
        let high: &[u8] = match &high {
            Some(h) => h,
            None => &[],
        };
        self.mac.sign(&[esp_header, iv, ct, high], out)
    }
}

fn iv16(iv: &[u8]) -> Result<&[u8; 16], CryptoError> {
    iv.try_into().map_err(|_| CryptoError::BadLength)
}

impl<C: CbcPrimitive, M: MacPrimitive> EspTransform for HmacTransform<C, M> {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn fill_iv(&mut self, seq: u64, iv: &mut [u8]) {
        if let Some(gen) = &self.iv_gen {
            gen.fill(seq, iv);
        }
    }

    fn seal(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.check(iv, payload, icv.len())?;
        if let Some(cbc) = &self.cbc {
            cbc.encrypt(iv16(iv)?, payload)?;
        }
        self.icv(esp_header, esn_high, iv, payload, icv)
    }

    fn open(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        self.check(iv, payload, icv.len())?;
        // Verify before decrypting, so a forged packet is never decrypted.
        let mut expected = [0u8; 32];
        let expected = &mut expected[..icv.len()];
        self.icv(esp_header, esn_high, iv, payload, expected)?;
        if !super::icv_eq(expected, icv) {
            return Err(CryptoError::AuthenticationFailed);
        }
        if let Some(cbc) = &self.cbc {
            cbc.decrypt(iv16(iv)?, payload)?;
        }
        Ok(())
    }
}
