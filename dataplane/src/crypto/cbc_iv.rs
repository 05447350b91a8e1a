//! Unpredictable CBC IVs from the packet counter (RFC 3602 §2.3).
//!
//! IV = AES-128-Encrypt(iv_key, 0^64 || seq), with `iv_key` drawn from the
//! OS RNG when the transform is built and independent of the SA's keys.
//! This is NIST SP 800-38A Appendix C's first method (encrypt a nonce)
//! with a separate key: unique because AES is a permutation and `seq`
//! never repeats within an SA, unpredictable to anyone without `iv_key`.
//! Shared by all backends so the IV policy lives in one place; aws-lc-rs
//! wipes the expanded key when dropped.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use zeroize::Zeroizing;

use super::{Backend, BackendFailure, CryptoError};

pub(super) struct CbcIvGenerator {
    key: EncryptingKey,
}

impl CbcIvGenerator {
    /// A generator with a fresh random IV key.
    pub(super) fn new(backend: Backend) -> Result<Self, CryptoError> {
        let fail = CryptoError::Backend(BackendFailure { backend, code: 0 });
        let mut raw = Zeroizing::new([0u8; 16]);
        aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| fail)?;
        let unbound = UnboundCipherKey::new(&AES_128, &raw[..]).map_err(|_| fail)?;
        let key = EncryptingKey::ecb(unbound).map_err(|_| fail)?;
        Ok(Self { key })
    }

    /// Writes the 16-octet IV for packet `seq`.
    pub(super) fn fill(&self, seq: u64, iv: &mut [u8]) {
        let block = &mut iv[..16];
        block[..8].fill(0);
        block[8..].copy_from_slice(&seq.to_be_bytes());
        // ECB on exactly one block cannot fail: the length is a multiple
        // of the block size and ECB takes no context. A failure would mean
        // a predictable IV, so it must not be ignored.
        self.key
            .less_safe_encrypt(block, EncryptionContext::None)
            .expect("AES-ECB of one block");
    }
}
