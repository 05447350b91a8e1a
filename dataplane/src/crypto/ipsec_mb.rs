//! The Intel ipsec-mb (1.3) backend — the only file in `crypto` with
//! `unsafe`.
//!
//! - AES-GCM: the direct API (`gcm128_pre`/`gcm256_pre` expand the key and
//!   precompute the GHASH key powers once; `gcm*_enc`/`gcm*_dec` run one
//!   packet with a `gcm_context_data` on the stack).
//! - ChaCha20-Poly1305: the direct API (`chacha20_poly1305_init`,
//!   `*_update`, `*_finalize`), context on the stack.
//! - AES-CBC and HMAC-SHA-2: the job API, in batches ([`CryptoBatch`]).
//!   The AES round keys are expanded once (`keyexp_*`) and the HMAC
//!   inner/outer states are prepared once by hashing key⊕ipad and
//!   key⊕opad with `sha*_one_block`, exactly what the `IMB_AUTH_HMAC_SHA_*`
//!   jobs expect ([`BatchKeys`]). A batch submits one job per packet (to
//!   seal: CBC encryption chained with the HMAC; to open: the HMAC) and
//!   drains them, so the multi-buffer manager runs up to one packet per
//!   SIMD lane, as DPDK's crypto_aesni_mb does for ipsec-secgw; then each
//!   opened packet's ICV is compared and only those that verified are
//!   decrypted (a second round of jobs). The ICV input
//!   SPI‖seq‖IV‖ciphertext is contiguous in the packet and hashed in place;
//!   with ESN the high sequence bits are written where the ICV goes (see
//!   [`CryptoBatch`]). The trait's one-packet `seal`/`open` hand over
//!   separate slices, so they copy the packet into a per-thread scratch
//!   buffer and run a batch of one there.
//!
//! Managers. An `IMB_MGR` is large (hundreds of KiB of out-of-order
//! scheduler state), so there is one per thread, allocated lazily with
//! `alloc_mb_mgr(0)` + `init_mb_mgr_auto` in a `thread_local`, not one per
//! transform. Transforms hold only key data and the function pointers
//! copied from the manager that expanded their keys, so they stay `Send`
//! and can move between workers: the direct-API functions take no manager,
//! and a batch's jobs are all submitted and flushed within one call on the
//! calling thread's manager, which is therefore empty between calls. Every
//! thread's manager is initialised by `init_mb_mgr_auto` on the same CPU,
//! so all pick the same architecture and agree on the key-data layout.
//!
//! Key data (`gcm_key_data`, expanded AES keys, HMAC states, the ChaCha key)
//! is wiped with `zeroize` on drop; the per-call GCM/ChaCha contexts are
//! wiped after use.

use core::cell::RefCell;
use core::ffi::c_void;
use core::ptr::NonNull;

use ipsec_mb_sys as imb;
use zeroize::{Zeroize, Zeroizing};

use core::marker::PhantomData;

use super::cbc_iv::CbcIvGenerator;
use super::transform::{AeadPrimitive, AeadTransform};
use super::{
    Algorithm, Backend, BackendFailure, CryptoError, Encryption, EspTransform, Integrity, SaKeys,
};

const BACKEND: Backend = Backend::IpsecMb;

/// Largest ESP packet sealed or opened one at a time: ESP header, CBC IV,
/// a 64 KiB payload, the longest ICV.
const SCRATCH_LEN: usize = 8 + 16 + 65_536 + 32;

fn failure(code: i32) -> CryptoError {
    CryptoError::Backend(BackendFailure {
        backend: BACKEND,
        code,
    })
}

/// Function pointers copied out of an initialised manager.
#[derive(Clone, Copy)]
struct Fns {
    get_next_job: imb::get_next_job_t,
    submit_job: imb::submit_job_t,
    flush_job: imb::flush_job_t,
    keyexp_128: imb::keyexp_t,
    keyexp_256: imb::keyexp_t,
    sha256_one_block: imb::hash_one_block_t,
    sha384_one_block: imb::hash_one_block_t,
    sha512_one_block: imb::hash_one_block_t,
    gcm128_pre: imb::aes_gcm_pre_t,
    gcm256_pre: imb::aes_gcm_pre_t,
    gcm128_enc: imb::aes_gcm_enc_dec_t,
    gcm128_dec: imb::aes_gcm_enc_dec_t,
    gcm256_enc: imb::aes_gcm_enc_dec_t,
    gcm256_dec: imb::aes_gcm_enc_dec_t,
    chacha_init: imb::chacha_poly_init_t,
    chacha_enc_update: imb::chacha_poly_enc_dec_update_t,
    chacha_dec_update: imb::chacha_poly_enc_dec_update_t,
    chacha_finalize: imb::chacha_poly_finalize_t,
    /// The manager runs the VAES/AVX-512 AES-GCM code, whose key schedule
    /// layout [`AeadCipher::block_table`] describes.
    vaes_gcm: bool,
}

impl Fns {
    fn supports(&self, alg: Algorithm) -> bool {
        let aead = match alg.encryption {
            Encryption::AesGcm16_128 => {
                self.gcm128_pre.is_some() && self.gcm128_enc.is_some() && self.gcm128_dec.is_some()
            }
            Encryption::AesGcm16_256 => {
                self.gcm256_pre.is_some() && self.gcm256_enc.is_some() && self.gcm256_dec.is_some()
            }
            Encryption::ChaCha20Poly1305 => {
                self.chacha_init.is_some()
                    && self.chacha_enc_update.is_some()
                    && self.chacha_dec_update.is_some()
                    && self.chacha_finalize.is_some()
            }
            Encryption::AesCbc128 => self.keyexp_128.is_some(),
            Encryption::AesCbc256 => self.keyexp_256.is_some(),
            Encryption::Null => true,
        };
        let jobs =
            self.get_next_job.is_some() && self.submit_job.is_some() && self.flush_job.is_some();
        let mac = match alg.integrity {
            Integrity::None => true,
            Integrity::HmacSha256_128 => jobs && self.sha256_one_block.is_some(),
            Integrity::HmacSha384_192 => jobs && self.sha384_one_block.is_some(),
            Integrity::HmacSha512_256 => jobs && self.sha512_one_block.is_some(),
        };
        alg.validate().is_ok() && aead && mac
    }
}

/// One thread's manager and HMAC scratch buffer.
struct ThreadMgr {
    mgr: NonNull<imb::IMB_MGR>,
    fns: Fns,
    scratch: Box<[u8]>,
}

impl ThreadMgr {
    fn new() -> Result<Self, i32> {
        // SAFETY: `alloc_mb_mgr` has no preconditions; 0 asks for defaults.
        let raw = unsafe { imb::alloc_mb_mgr(0) };
        let mgr = NonNull::new(raw).ok_or(-1)?;
        let mut arch: imb::IMB_ARCH = imb::IMB_ARCH_NONE;
        // SAFETY: `mgr` was just allocated by `alloc_mb_mgr` and is not
        // shared; `arch` is a valid out-pointer.
        unsafe { imb::init_mb_mgr_auto(mgr.as_ptr(), &mut arch) };
        // SAFETY: `mgr` is a valid, initialised manager.
        let errno = unsafe { imb::imb_get_errno(mgr.as_ptr()) };
        if errno != 0 || arch == imb::IMB_ARCH_NONE {
            // SAFETY: allocated above by `alloc_mb_mgr`, freed once.
            unsafe { imb::free_mb_mgr(mgr.as_ptr()) };
            return Err(if errno != 0 { errno } else { -1 });
        }
        // SAFETY: `mgr` points to an initialised `IMB_MGR` that nothing
        // else accesses during this read; the reference ends with the copy.
        let m = unsafe { mgr.as_ref() };
        let fns = Fns {
            get_next_job: m.get_next_job,
            submit_job: m.submit_job,
            flush_job: m.flush_job,
            keyexp_128: m.keyexp_128,
            keyexp_256: m.keyexp_256,
            sha256_one_block: m.sha256_one_block,
            sha384_one_block: m.sha384_one_block,
            sha512_one_block: m.sha512_one_block,
            gcm128_pre: m.gcm128_pre,
            gcm256_pre: m.gcm256_pre,
            gcm128_enc: m.gcm128_enc,
            gcm128_dec: m.gcm128_dec,
            gcm256_enc: m.gcm256_enc,
            gcm256_dec: m.gcm256_dec,
            chacha_init: m.chacha20_poly1305_init,
            chacha_enc_update: m.chacha20_poly1305_enc_update,
            chacha_dec_update: m.chacha20_poly1305_dec_update,
            chacha_finalize: m.chacha20_poly1305_finalize,
            vaes_gcm: arch == imb::IMB_ARCH_AVX512 && {
                let need = u64::from(
                    imb::IMB_FEATURE_VAES
                        | imb::IMB_FEATURE_VPCLMULQDQ
                        | imb::IMB_FEATURE_AVX512_SKX,
                );
                m.features & need == need
            },
        };
        Ok(Self {
            mgr,
            fns,
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
        })
    }
}

impl Drop for ThreadMgr {
    fn drop(&mut self) {
        self.scratch.zeroize();
        // SAFETY: allocated by `alloc_mb_mgr` in `new`, freed exactly once,
        // with no job in flight.
        unsafe { imb::free_mb_mgr(self.mgr.as_ptr()) };
    }
}

thread_local! {
    static MGR: RefCell<Option<Result<ThreadMgr, i32>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's manager, creating it on first use.
fn with_mgr<R>(f: impl FnOnce(&mut ThreadMgr) -> Result<R, CryptoError>) -> Result<R, CryptoError> {
    MGR.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| failure(-1))?;
        match slot.get_or_insert_with(ThreadMgr::new) {
            Ok(m) => f(m),
            Err(code) => Err(failure(*code)),
        }
    })
    .map_err(|_| failure(-1))?
}

/// Whether ipsec-mb initialises on this thread and implements `alg`.
pub(super) fn supports(alg: Algorithm) -> bool {
    with_mgr(|m| Ok(m.fns.supports(alg))).unwrap_or(false)
}

pub(super) fn new_transform(
    alg: Algorithm,
    keys: &SaKeys,
) -> Result<Box<dyn EspTransform>, CryptoError> {
    let fns = with_mgr(|m| Ok(m.fns))?;
    if !fns.supports(alg) {
        return Err(CryptoError::Unsupported {
            backend: BACKEND,
            algorithm: alg,
        });
    }
    if alg.is_aead() {
        let t = AeadTransform::new(alg, BACKEND, keys, |k| AeadCipher::new(alg.encryption, k))?;
        Ok(Box::new(t))
    } else {
        Ok(Box::new(MbHmacTransform::new(&fns, alg, keys)?))
    }
}

// ---------------------------------------------------------------------------
// AEADs (direct API)
// ---------------------------------------------------------------------------

/// `gcm_key_data` is declared 64-byte aligned in the C header (Linux).
#[repr(C, align(64))]
pub(super) struct GcmKey(imb::gcm_key_data);

#[repr(C, align(64))]
struct GcmCtx(imb::gcm_context_data);

#[repr(C, align(64))]
struct ChaChaCtx(imb::chacha20_poly1305_context_data);

/// Overwrites a plain-data FFI struct with zeros in a way the optimiser
/// keeps.
fn wipe<T: Copy>(value: &mut T) {
    // SAFETY: `T` is one of the bindgen structs of integers and byte
    // arrays used here, for which all-zero bytes are a valid value, and
    // `value` is a unique, aligned, live reference.
    unsafe { zeroize::zeroize_flat_type(value as *mut T) };
}

/// AES-GCM or ChaCha20-Poly1305 through ipsec-mb's direct API.
pub(super) enum AeadCipher {
    Gcm {
        key: Box<GcmKey>,
        /// Cache lines of round keys the key size uses (3 or 4).
        round_key_lines: u8,
        /// The key schedule has the VAES/AVX-512 layout ([`Fns::vaes_gcm`]).
        vaes: bool,
        enc: unsafe extern "C" fn(
            *const imb::gcm_key_data,
            *mut imb::gcm_context_data,
            *mut u8,
            *const u8,
            u64,
            *const u8,
            *const u8,
            u64,
            *mut u8,
            u64,
        ),
        dec: unsafe extern "C" fn(
            *const imb::gcm_key_data,
            *mut imb::gcm_context_data,
            *mut u8,
            *const u8,
            u64,
            *const u8,
            *const u8,
            u64,
            *mut u8,
            u64,
        ),
    },
    ChaCha {
        key: Zeroizing<[u8; 32]>,
        init: unsafe extern "C" fn(
            *const c_void,
            *mut imb::chacha20_poly1305_context_data,
            *const c_void,
            *const c_void,
            u64,
        ),
        enc_update: unsafe extern "C" fn(
            *const c_void,
            *mut imb::chacha20_poly1305_context_data,
            *mut c_void,
            *const c_void,
            u64,
        ),
        dec_update: unsafe extern "C" fn(
            *const c_void,
            *mut imb::chacha20_poly1305_context_data,
            *mut c_void,
            *const c_void,
            u64,
        ),
        finalize: unsafe extern "C" fn(*mut imb::chacha20_poly1305_context_data, *mut c_void, u64),
    },
}

// SAFETY: the key data is owned plain memory and the function pointers
// are stateless library entry points; nothing is tied to a thread.
unsafe impl Send for AeadCipher {}

impl AeadCipher {
    pub(super) fn new(enc: Encryption, key: &[u8]) -> Result<Self, CryptoError> {
        let fns = with_mgr(|m| Ok(m.fns))?;
        let unsupported = || failure(-1);
        match enc {
            Encryption::AesGcm16_128 | Encryption::AesGcm16_256 => {
                let (pre, enc_fn, dec_fn, len) = if enc == Encryption::AesGcm16_128 {
                    (fns.gcm128_pre, fns.gcm128_enc, fns.gcm128_dec, 16)
                } else {
                    (fns.gcm256_pre, fns.gcm256_enc, fns.gcm256_dec, 32)
                };
                let (Some(pre), Some(enc_fn), Some(dec_fn)) = (pre, enc_fn, dec_fn) else {
                    return Err(unsupported());
                };
                if key.len() != len {
                    return Err(CryptoError::BadKeyLength {
                        expected: len,
                        got: key.len(),
                    });
                }
                let mut data = Box::new(GcmKey(imb::gcm_key_data::default()));
                // SAFETY: `key` holds `len` bytes as `gcm*_pre` reads; `data`
                // is a writable, 64-byte aligned `gcm_key_data`.
                unsafe { pre(key.as_ptr().cast(), &mut data.0) };
                Ok(Self::Gcm {
                    key: data,
                    // (rounds + 1) 16-byte round keys.
                    round_key_lines: if len == 16 { 3 } else { 4 },
                    vaes: fns.vaes_gcm,
                    enc: enc_fn,
                    dec: dec_fn,
                })
            }
            Encryption::ChaCha20Poly1305 => {
                let (Some(init), Some(enc_update), Some(dec_update), Some(finalize)) = (
                    fns.chacha_init,
                    fns.chacha_enc_update,
                    fns.chacha_dec_update,
                    fns.chacha_finalize,
                ) else {
                    return Err(unsupported());
                };
                let mut k = Zeroizing::new([0u8; 32]);
                if key.len() != 32 {
                    return Err(CryptoError::BadKeyLength {
                        expected: 32,
                        got: key.len(),
                    });
                }
                k.copy_from_slice(key);
                Ok(Self::ChaCha {
                    key: k,
                    init,
                    enc_update,
                    dec_update,
                    finalize,
                })
            }
            _ => Err(unsupported()),
        }
    }

    /// Runs the AEAD over `payload` in place and writes the computed tag.
    fn run(
        &self,
        encrypt: bool,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &mut [u8; 16],
    ) {
        let len = payload.len() as u64;
        let p = payload.as_mut_ptr();
        match self {
            Self::Gcm { key, enc, dec, .. } => {
                let f = if encrypt { enc } else { dec };
                let mut ctx = GcmCtx(imb::gcm_context_data::default());
                // SAFETY: `key` was prepared by the matching `gcm*_pre`;
                // input and output are the same `len`-byte buffer (in-place
                // operation is supported); the IV is 12 bytes as the API
                // requires; `aad` and `tag` are valid for their lengths.
                unsafe {
                    f(
                        &key.0,
                        &mut ctx.0,
                        p,
                        p.cast_const(),
                        len,
                        nonce.as_ptr(),
                        aad.as_ptr(),
                        aad.len() as u64,
                        tag.as_mut_ptr(),
                        16,
                    )
                };
                wipe(&mut ctx.0);
            }
            Self::ChaCha {
                key,
                init,
                enc_update,
                dec_update,
                finalize,
            } => {
                let mut ctx = ChaChaCtx(imb::chacha20_poly1305_context_data::default());
                // SAFETY: 32-byte key, 12-byte IV, `aad` valid for its
                // length, `ctx` a writable context.
                unsafe {
                    init(
                        key.as_ptr().cast(),
                        &mut ctx.0,
                        nonce.as_ptr().cast(),
                        aad.as_ptr().cast(),
                        aad.len() as u64,
                    )
                };
                if len > 0 {
                    let update = if encrypt { enc_update } else { dec_update };
                    // SAFETY: `ctx` was initialised above with this key;
                    // source and destination are the same `len`-byte
                    // buffer (in place is supported).
                    unsafe {
                        update(
                            key.as_ptr().cast(),
                            &mut ctx.0,
                            p.cast(),
                            p.cast_const().cast(),
                            len,
                        )
                    };
                }
                // SAFETY: `ctx` is initialised; `tag` has room for 16 bytes.
                unsafe { finalize(&mut ctx.0, tag.as_mut_ptr().cast(), 16) };
                wipe(&mut ctx.0);
            }
        }
    }
}

impl Drop for AeadCipher {
    fn drop(&mut self) {
        if let Self::Gcm { key, .. } = self {
            wipe(&mut key.0);
        }
        // The ChaCha key is `Zeroizing`.
    }
}

impl AeadCipher {
    /// A GCM key schedule's address, the end of its GHASH powers (bytes
    /// from that address), how many lines its round keys take, and
    /// whether it has the VAES/AVX-512 layout.
    fn gcm_key_bytes(&self) -> Option<(*const u8, usize, u8, bool)> {
        let Self::Gcm {
            key,
            round_key_lines,
            vaes,
            ..
        } = self
        else {
            return None;
        };
        let end = std::mem::offset_of!(imb::gcm_key_data, ghash_keys)
            + std::mem::size_of_val(&key.0.ghash_keys);
        Some((
            std::ptr::from_ref::<GcmKey>(key).cast::<u8>(),
            end,
            *round_key_lines,
            *vaes,
        ))
    }
}

impl AeadPrimitive for AeadCipher {
    /// The round keys: in the VAES/AVX-512 layout of `gcm_key_data` the
    /// 15 round-key slots come first (AES-128 uses 11: three lines; AES-256
    /// all 15: four), then the GHASH powers ([`Self::block_table`]). With
    /// another layout (another CPU), the whole key schedule.
    fn key_lines(&self) -> cpu::prefetch::Lines {
        use cpu::prefetch::{Lines, CACHE_LINE};
        match self.gcm_key_bytes() {
            Some((p, _, round_key_lines, true)) => {
                Lines::of_bytes(p, usize::from(round_key_lines) * CACHE_LINE)
            }
            Some((p, end, _, false)) => Lines::of_bytes(p, end),
            None => Lines::NONE,
        }
    }

    /// The GHASH powers `HashKey_48` (byte 240) down to `HashKey_1` (byte
    /// 992): ipsec-mb 1.3's VAES/AVX-512 GCM (`gcm_vaes_avx512.inc`)
    /// reads `HashKey_min(B, 48)` .. `HashKey_1` for a message of `B`
    /// blocks, on every path from one block to the 48-block loop, and the
    /// AAD and the tag only `HashKey_1`.
    fn block_table(&self) -> Option<cpu::prefetch::BlockTable> {
        const POWERS: u8 = 48;
        match self.gcm_key_bytes() {
            Some((p, end, _, true)) => {
                debug_assert!(end >= usize::from(POWERS) * 16);
                Some(cpu::prefetch::BlockTable {
                    end: p.wrapping_add(end),
                    cap: POWERS,
                })
            }
            _ => None,
        }
    }

    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), CryptoError> {
        let tag: &mut [u8; 16] = tag.try_into().map_err(|_| CryptoError::BadLength)?;
        self.run(true, nonce, aad, payload, tag);
        Ok(())
    }

    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        if tag.len() != 16 {
            return Err(CryptoError::BadLength);
        }
        let mut computed = [0u8; 16];
        self.run(false, nonce, aad, payload, &mut computed);
        if super::icv_eq(&computed, tag) {
            Ok(())
        } else {
            Err(CryptoError::AuthenticationFailed)
        }
    }
}

// ---------------------------------------------------------------------------
// AES-CBC and HMAC (job API, in batches)
// ---------------------------------------------------------------------------

/// Expanded AES encryption and decryption round keys (up to 15 × 16 bytes
/// each), 16-byte aligned as the job API requires.
#[repr(C, align(64))]
struct AesKeys {
    enc: [u8; 256],
    dec: [u8; 256],
}

/// HMAC inner and outer hash states (H(K⊕ipad), H(K⊕opad) after one block),
/// up to SHA-512's 64-byte state.
#[repr(C, align(64))]
struct HmacPads {
    ipad: [u8; 64],
    opad: [u8; 64],
}

/// An SA's key material in the form ipsec-mb's CBC and HMAC jobs read:
/// the AES round keys expanded once (`keyexp_*`; none for ENCR_NULL) and
/// the HMAC inner and outer states, prepared once by hashing key⊕ipad and
/// key⊕opad with `sha*_one_block` (what the `IMB_AUTH_HMAC_SHA_*` jobs
/// expect). Wiped on drop.
pub struct BatchKeys {
    aes: Option<Box<AesKeys>>,
    key_len: u64,
    pads: Box<HmacPads>,
    hash_alg: imb::IMB_HASH_ALG,
    iv_len: usize,
    icv_len: usize,
}

impl BatchKeys {
    fn new(fns: &Fns, alg: Algorithm, keys: &SaKeys) -> Result<Self, CryptoError> {
        let aes = match alg.encryption {
            Encryption::AesCbc128 | Encryption::AesCbc256 => Some(expand_aes(fns, &keys.enc_key)?),
            Encryption::Null => None,
            _ => return Err(failure(-1)),
        };
        let (one_block, block_len, hash_alg) = match alg.integrity {
            Integrity::HmacSha256_128 => (fns.sha256_one_block, 64, imb::IMB_AUTH_HMAC_SHA_256),
            Integrity::HmacSha384_192 => (fns.sha384_one_block, 128, imb::IMB_AUTH_HMAC_SHA_384),
            Integrity::HmacSha512_256 => (fns.sha512_one_block, 128, imb::IMB_AUTH_HMAC_SHA_512),
            Integrity::None => return Err(failure(-1)),
        };
        let one_block = one_block.ok_or_else(|| failure(-1))?;
        let key = &keys.auth_key[..];
        // RFC 2104 §2: keys longer than the block would be hashed first;
        // ESP keys (RFC 4868 §2.1.1) are never longer than the block.
        if key.len() > block_len {
            return Err(CryptoError::BadKeyLength {
                expected: block_len,
                got: key.len(),
            });
        }
        let mut pads = Box::new(HmacPads {
            ipad: [0; 64],
            opad: [0; 64],
        });
        let mut block = Zeroizing::new([0u8; 128]);
        for (pad, byte) in [(&mut pads.ipad, 0x36u8), (&mut pads.opad, 0x5c)] {
            block.fill(byte);
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            // SAFETY: `block` holds one full hash block (64 or 128 bytes)
            // and `pad` has room for the 32- or 64-byte state written.
            unsafe { one_block(block.as_ptr().cast(), pad.as_mut_ptr().cast()) };
        }
        Ok(Self {
            aes,
            key_len: keys.enc_key.len() as u64,
            pads,
            hash_alg,
            iv_len: alg.iv_len(),
            icv_len: alg.icv_len(),
        })
    }
}

fn expand_aes(fns: &Fns, key: &[u8]) -> Result<Box<AesKeys>, CryptoError> {
    let keyexp = match key.len() {
        16 => fns.keyexp_128,
        32 => fns.keyexp_256,
        _ => return Err(failure(-1)),
    }
    .ok_or_else(|| failure(-1))?;
    let mut keys = Box::new(AesKeys {
        enc: [0; 256],
        dec: [0; 256],
    });
    let k = &mut *keys;
    // SAFETY: `key` has the 16 or 32 bytes this `keyexp_*` reads; each
    // output buffer has room for the 15 round keys of AES-256.
    unsafe {
        keyexp(
            key.as_ptr().cast(),
            k.enc.as_mut_ptr().cast(),
            k.dec.as_mut_ptr().cast(),
        )
    };
    Ok(keys)
}

impl core::fmt::Debug for BatchKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchKeys").finish_non_exhaustive()
    }
}

impl Drop for BatchKeys {
    fn drop(&mut self) {
        if let Some(aes) = &mut self.aes {
            aes.enc.zeroize();
            aes.dec.zeroize();
        }
        self.pads.ipad.zeroize();
        self.pads.opad.zeroize();
    }
}

/// One packet of a batch: where its ESP packet is, which SA's keys, and
/// (to open) the received ICV and the computed one.
struct RawOp {
    keys: *const BatchKeys,
    /// SPI ‖ seq ‖ IV ‖ payload ‖ ICV, contiguous.
    esp: *mut u8,
    len: usize,
    esn_high: Option<u32>,
    seal: bool,
    /// Open: the ICV received (saved before ESN's high bits take the
    /// place of its first four octets).
    received: [u8; 32],
    /// Open: the ICV computed.
    computed: [u8; 32],
    result: Result<(), CryptoError>,
}

/// Packets a [`CryptoBatch`] holds before it grows its storage
/// (`IMB_MAX_BURST_SIZE`; the gateway runs a batch per received burst).
pub const BATCH_CAPACITY: usize = 128;

/// Storage for [`CryptoBatch`]es, allocated once (per worker) and reused:
/// no batch allocates unless it outgrows [`BATCH_CAPACITY`].
pub struct BatchStore {
    /// Empty except while a batch is open.
    ops: Vec<RawOp>,
}

// SAFETY: the raw pointers in `ops` are only dereferenced while a
// `CryptoBatch` borrows the store (and, through its lifetime, the packets
// and keys they point to); the batch empties `ops` when it ends, so a
// store that moves between threads holds none.
unsafe impl Send for BatchStore {}

impl Default for BatchStore {
    fn default() -> Self {
        Self {
            ops: Vec::with_capacity(BATCH_CAPACITY),
        }
    }
}

impl core::fmt::Debug for BatchStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchStore").finish_non_exhaustive()
    }
}

impl BatchStore {
    /// An empty batch using this storage.
    pub fn batch(&mut self) -> CryptoBatch<'_> {
        self.ops.clear();
        CryptoBatch {
            ops: &mut self.ops,
            _data: PhantomData,
        }
    }
}

/// ESP packets sealed or opened together: each is queued with
/// [`seal`](Self::seal) or [`open`](Self::open) (with its SA's
/// [`EspTransform::batch_keys`]) and [`run`](Self::run) hands them all to
/// ipsec-mb's multi-buffer manager at once, which interleaves up to one
/// packet per SIMD lane (CBC encryption and HMAC are serial within a
/// packet, not across packets); [`result`](Self::result) then gives each
/// packet's own outcome. The packets and keys stay borrowed until the
/// batch is dropped.
///
/// Each packet is its ESP packet from the SPI to the end of the ICV,
/// contiguous, so the ICV input (SPI ‖ seq ‖ IV ‖ ciphertext, RFC 4303
/// §2.8) is hashed where it lies, without a copy. With ESN the high 32
/// bits of the sequence number follow the ciphertext in the ICV input
/// (RFC 4303 §2.2.1, Appendix A2.2), as DPDK's lib/ipsec does it: they are
/// written where the ICV goes and hashed there; sealing writes the ICV
/// over them, opening puts the received ICV back.
pub struct CryptoBatch<'a> {
    ops: &'a mut Vec<RawOp>,
    _data: PhantomData<&'a mut [u8]>,
}

impl core::fmt::Debug for CryptoBatch<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CryptoBatch")
            .field("len", &self.ops.len())
            .finish()
    }
}

impl Drop for CryptoBatch<'_> {
    fn drop(&mut self) {
        self.ops.clear();
    }
}

impl<'a> CryptoBatch<'a> {
    /// Queues `esp` (SPI ‖ seq ‖ IV ‖ payload ‖ room for the ICV; the
    /// payload already padded, the IV filled in) to be encrypted and its
    /// ICV written; returns its index. `Err(BadLength)` (not queued) when
    /// the lengths do not fit the SA's algorithm.
    pub fn seal(
        &mut self,
        keys: &'a BatchKeys,
        esp: &'a mut [u8],
        esn_high: Option<u32>,
    ) -> Result<usize, CryptoError> {
        self.push(keys, esp, esn_high, true)
    }

    /// Queues `esp` (SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV) to be verified
    /// and, if its ICV is right, decrypted in place; returns its index. A
    /// packet whose ICV is wrong is never decrypted. On any error its
    /// contents are unspecified and must not be used (RFC 4303 §3.4.4).
    pub fn open(
        &mut self,
        keys: &'a BatchKeys,
        esp: &'a mut [u8],
        esn_high: Option<u32>,
    ) -> Result<usize, CryptoError> {
        self.push(keys, esp, esn_high, false)
    }

    fn push(
        &mut self,
        keys: &'a BatchKeys,
        esp: &'a mut [u8],
        esn_high: Option<u32>,
        seal: bool,
    ) -> Result<usize, CryptoError> {
        let fixed = ESP_HEADER + keys.iv_len + keys.icv_len;
        let ct = esp.len().checked_sub(fixed).ok_or(CryptoError::BadLength)?;
        #[allow(clippy::manual_is_multiple_of)]
        if keys.aes.is_some() && ct % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        self.ops.push(RawOp {
            keys,
            esp: esp.as_mut_ptr(),
            len: esp.len(),
            esn_high,
            seal,
            received: [0; 32],
            computed: [0; 32],
            result: Ok(()),
        });
        Ok(self.ops.len() - 1)
    }

    /// Packets queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Seals and opens every queued packet on this thread's manager.
    pub fn run(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let ops = &mut self.ops[..];
        let r = with_mgr(|m| {
            // SAFETY: every op points at a packet and keys borrowed for
            // `'a`, which outlives this call (see `push`).
            unsafe { run_ops(m.mgr, &m.fns, ops) };
            Ok(())
        });
        if let Err(e) = r {
            for op in ops {
                op.result = Err(e);
            }
        }
    }

    /// The outcome of packet `i` after [`run`](Self::run).
    pub fn result(&self, i: usize) -> Result<(), CryptoError> {
        self.ops
            .get(i)
            .map_or(Err(CryptoError::BadLength), |o| o.result)
    }
}

const ESP_HEADER: usize = 8;

/// Runs `ops` on `mgr`: every op's first job (seal: CBC encryption then
/// HMAC, chained; open: HMAC only) is submitted, completed jobs are taken
/// as they come and the rest flushed; then each open's ICV is compared and
/// only the packets that verified get their decryption job, submitted and
/// flushed likewise. The manager is empty before and after.
///
/// # Safety
/// `mgr` is this thread's initialised manager (no job in flight) and
/// every op's `esp` (for `len` bytes) and `keys` are valid and not
/// otherwise accessed during the call.
unsafe fn run_ops(mgr: NonNull<imb::IMB_MGR>, fns: &Fns, ops: &mut [RawOp]) {
    let (Some(get_next), Some(submit), Some(flush)) =
        (fns.get_next_job, fns.submit_job, fns.flush_job)
    else {
        for op in ops.iter_mut() {
            op.result = Err(failure(-1));
        }
        return;
    };
    let mgr = mgr.as_ptr();
    let n = ops.len();
    // Completed jobs write into the ops through this pointer (by index),
    // so no reference into `ops` is held across a submission.
    let base = ops.as_mut_ptr();
    let complete = |job: *mut imb::IMB_JOB| {
        // SAFETY: a job the manager returns is one of ours, complete and
        // back in our hands until the next `get_next_job`.
        let job = unsafe { &*job };
        let result = if job.status == imb::IMB_STATUS_COMPLETED {
            Ok(())
        } else {
            // SAFETY: `mgr` is this thread's initialised manager.
            Err(failure(unsafe { imb::imb_get_errno(mgr) }))
        };
        // Tagged with its op's index in `user_data`.
        let op = base.wrapping_add(job.user_data as usize);
        // SAFETY: the index is below `n`, and the op outlives the call.
        unsafe { (*op).result = result };
    };
    let drain = || loop {
        // SAFETY: `mgr` is valid; flushing completes the earliest job.
        let done = unsafe { flush(mgr) };
        if done.is_null() {
            break;
        }
        complete(done);
    };
    // Phase 1: seal (encrypt + HMAC), or the HMAC of an open.
    for i in 0..n {
        let op = base.wrapping_add(i);
        // SAFETY: `i < n`; the op is valid (see the function's contract).
        let op = unsafe { &mut *op };
        // SAFETY: the contract: `keys` is valid for the call.
        let keys = unsafe { &*op.keys };
        let (iv_len, icv_len) = (keys.iv_len, keys.icv_len);
        let ct = op.len - ESP_HEADER - iv_len - icv_len;
        let p = op.esp;
        let icv_at = p.wrapping_add(op.len - icv_len);
        let mut hash_len = ESP_HEADER + iv_len + ct;
        if !op.seal {
            // SAFETY: `icv_len` (at most 32) bytes at `icv_at`.
            unsafe {
                core::ptr::copy_nonoverlapping(icv_at, op.received.as_mut_ptr(), icv_len);
            }
        }
        if let Some(high) = op.esn_high {
            // RFC 4303 Appendix A2.2: the high bits follow the payload in
            // the ICV input; the ICV (at least 16 octets) has room.
            // SAFETY: 4 of the ICV's bytes.
            unsafe { core::ptr::copy_nonoverlapping(high.to_be_bytes().as_ptr(), icv_at, 4) };
            hash_len += 4;
        }
        let cbc = op.seal && ct > 0 && keys.aes.is_some();
        // SAFETY: `mgr` is valid; `get_next_job` returns a job slot the
        // application owns until `submit_job`.
        let job = unsafe { get_next(mgr) };
        // SAFETY: as just said; nothing else refers to the slot.
        let Some(job) = (unsafe { job.as_mut() }) else {
            op.result = Err(failure(-1));
            continue;
        };
        *job = imb::IMB_JOB::default();
        job.cipher_direction = imb::IMB_DIR_ENCRYPT;
        job.chain_order = imb::IMB_ORDER_CIPHER_HASH;
        if let (true, Some(aes)) = (cbc, &keys.aes) {
            job.cipher_mode = imb::IMB_CIPHER_CBC;
            job.enc_keys = aes.enc.as_ptr().cast();
            job.dec_keys = aes.dec.as_ptr().cast();
            job.key_len_in_bytes = keys.key_len;
            job.iv_len_in_bytes = 16;
        } else {
            job.cipher_mode = imb::IMB_CIPHER_NULL;
        }
        job.__bindgen_anon_1.src = p.cast_const();
        // In place: the cipher's output starts where its input does.
        job.__bindgen_anon_2.dst = p.wrapping_add(ESP_HEADER + iv_len);
        job.__bindgen_anon_3.cipher_start_src_offset_in_bytes = (ESP_HEADER + iv_len) as u64;
        job.__bindgen_anon_4.msg_len_to_cipher_in_bytes = if cbc { ct as u64 } else { 0 };
        job.iv = p.wrapping_add(ESP_HEADER);
        job.hash_alg = keys.hash_alg;
        job.hash_start_src_offset_in_bytes = 0;
        job.__bindgen_anon_5.msg_len_to_hash_in_bytes = hash_len as u64;
        job.auth_tag_output = if op.seal {
            icv_at
        } else {
            op.computed.as_mut_ptr()
        };
        job.auth_tag_output_len_in_bytes = icv_len as u64;
        job.u.HMAC = imb::IMB_JOB__bindgen_ty_6__HMAC_specific_fields {
            _hashed_auth_key_xor_ipad: keys.pads.ipad.as_ptr(),
            _hashed_auth_key_xor_opad: keys.pads.opad.as_ptr(),
        };
        job.user_data = i as *mut c_void;
        // SAFETY: the job is filled in; every pointer in it is valid
        // until the job completes (before this function returns).
        let done = unsafe { submit(mgr) };
        if !done.is_null() {
            complete(done);
        }
    }
    drain();
    // Phase 2: verify each open's ICV, then decrypt the ones that passed.
    let mut decrypting = false;
    for i in 0..n {
        let op = base.wrapping_add(i);
        // SAFETY: as above; no job is in flight.
        let op = unsafe { &mut *op };
        if op.seal {
            continue;
        }
        // SAFETY: as above.
        let keys = unsafe { &*op.keys };
        let (iv_len, icv_len) = (keys.iv_len, keys.icv_len);
        let ct = op.len - ESP_HEADER - iv_len - icv_len;
        let p = op.esp;
        if op.esn_high.is_some() {
            let icv_at = p.wrapping_add(op.len - icv_len);
            // SAFETY: the ICV's first 4 bytes, saved above.
            unsafe { core::ptr::copy_nonoverlapping(op.received.as_ptr(), icv_at, 4) };
        }
        if op.result.is_err() {
            continue;
        }
        if !super::icv_eq(&op.computed[..icv_len], &op.received[..icv_len]) {
            op.result = Err(CryptoError::AuthenticationFailed);
            continue;
        }
        let Some(aes) = keys.aes.as_ref().filter(|_| ct > 0) else {
            continue;
        };
        // SAFETY: as above.
        let job = unsafe { get_next(mgr) };
        // SAFETY: as above.
        let Some(job) = (unsafe { job.as_mut() }) else {
            op.result = Err(failure(-1));
            continue;
        };
        *job = imb::IMB_JOB::default();
        job.cipher_mode = imb::IMB_CIPHER_CBC;
        job.cipher_direction = imb::IMB_DIR_DECRYPT;
        job.chain_order = imb::IMB_ORDER_HASH_CIPHER;
        job.hash_alg = imb::IMB_AUTH_NULL;
        job.enc_keys = aes.enc.as_ptr().cast();
        job.dec_keys = aes.dec.as_ptr().cast();
        job.key_len_in_bytes = keys.key_len;
        let c = p.wrapping_add(ESP_HEADER + iv_len);
        job.__bindgen_anon_1.src = c.cast_const();
        job.__bindgen_anon_2.dst = c;
        job.__bindgen_anon_3.cipher_start_src_offset_in_bytes = 0;
        job.__bindgen_anon_4.msg_len_to_cipher_in_bytes = ct as u64;
        job.iv = p.wrapping_add(ESP_HEADER);
        job.iv_len_in_bytes = 16;
        job.user_data = i as *mut c_void;
        // SAFETY: as above.
        let done = unsafe { submit(mgr) };
        if !done.is_null() {
            complete(done);
        }
        decrypting = true;
    }
    if decrypting {
        drain();
    }
}

/// AES-CBC or NULL encryption with a truncated HMAC through ipsec-mb's job
/// API: a batch of packets at once ([`CryptoBatch`]), which is how the
/// gateway runs it; `seal`/`open` of one packet copy it into the thread's
/// scratch buffer and run a batch of one (the trait's pieces are not
/// contiguous, a job's ICV input must be).
pub(super) struct MbHmacTransform {
    alg: Algorithm,
    keys: BatchKeys,
    iv_gen: Option<CbcIvGenerator>,
}

impl MbHmacTransform {
    fn new(fns: &Fns, alg: Algorithm, keys: &SaKeys) -> Result<Self, CryptoError> {
        Ok(Self {
            alg,
            keys: BatchKeys::new(fns, alg, keys)?,
            iv_gen: match alg.encryption {
                Encryption::Null => None,
                _ => Some(CbcIvGenerator::new(BACKEND)?),
            },
        })
    }

    /// Seals or opens one packet given in pieces: copies them into the
    /// scratch buffer, runs a batch of one there and copies the result
    /// back (the payload, and to seal the ICV).
    #[allow(clippy::too_many_arguments)]
    fn one(
        &self,
        seal: bool,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv_in: &[u8],
        icv_out: Option<&mut [u8]>,
    ) -> Result<(), CryptoError> {
        #[allow(clippy::manual_is_multiple_of)]
        let aligned = self.keys.aes.is_none() || payload.len() % 16 == 0;
        if iv.len() != self.keys.iv_len || icv_in.len() != self.keys.icv_len || !aligned {
            return Err(CryptoError::BadLength);
        }
        let icv_len = self.keys.icv_len;
        let total = ESP_HEADER + iv.len() + payload.len() + icv_len;
        with_mgr(|m| {
            if total > m.scratch.len() {
                return Err(CryptoError::BadLength);
            }
            let s = &mut m.scratch[..total];
            let (hdr, rest) = s.split_at_mut(ESP_HEADER);
            let (ivs, rest) = rest.split_at_mut(iv.len());
            let (pl, icv) = rest.split_at_mut(payload.len());
            hdr.copy_from_slice(esp_header);
            ivs.copy_from_slice(iv);
            pl.copy_from_slice(payload);
            icv.copy_from_slice(icv_in);
            let mut op = RawOp {
                keys: &self.keys,
                esp: s.as_mut_ptr(),
                len: total,
                esn_high,
                seal,
                received: [0; 32],
                computed: [0; 32],
                result: Ok(()),
            };
            // SAFETY: the op points at the scratch buffer (`total` bytes,
            // not otherwise accessed until this returns) and at our keys.
            unsafe { run_ops(m.mgr, &m.fns, core::slice::from_mut(&mut op)) };
            op.result?;
            let s = &m.scratch[..total];
            let at = ESP_HEADER + iv.len();
            payload.copy_from_slice(&s[at..at + payload.len()]);
            if let Some(out) = icv_out {
                out.copy_from_slice(&s[total - icv_len..]);
            }
            Ok(())
        })
    }
}

impl EspTransform for MbHmacTransform {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn backend(&self) -> Backend {
        BACKEND
    }

    fn fill_iv(&mut self, seq: u64, iv: &mut [u8]) {
        if let Some(gen) = &self.iv_gen {
            gen.fill(seq, iv);
        }
    }

    fn batch_keys(&self) -> Option<&BatchKeys> {
        Some(&self.keys)
    }

    fn seal(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        let zeros = [0u8; 32];
        let room = zeros.get(..icv.len()).ok_or(CryptoError::BadLength)?;
        self.one(true, esp_header, esn_high, iv, payload, room, Some(icv))
    }

    fn open(
        &mut self,
        esp_header: &[u8; 8],
        esn_high: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        self.one(false, esp_header, esn_high, iv, payload, icv, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_initialises_and_offers_every_algorithm() {
        // Debian 12's ipsec-mb 1.3 on an x86-64 CPU implements them all;
        // if this fails, `available_backends` is silently dropping ipsec-mb.
        for alg in Algorithm::ALL {
            assert!(supports(alg), "{alg:?}");
        }
    }

    #[test]
    fn managers_are_per_thread() {
        let here = with_mgr(|m| Ok(m.mgr.as_ptr() as usize)).unwrap();
        let there = std::thread::spawn(|| with_mgr(|m| Ok(m.mgr.as_ptr() as usize)).unwrap())
            .join()
            .unwrap();
        assert_ne!(here, there);
        assert_eq!(here, with_mgr(|m| Ok(m.mgr.as_ptr() as usize)).unwrap());
    }

    #[test]
    fn oversized_packet_is_rejected_not_truncated() {
        let alg = Algorithm {
            encryption: Encryption::Null,
            integrity: Integrity::HmacSha256_128,
        };
        let mut t = new_transform(alg, &SaKeys::new(&[], &[7; 32])).unwrap();
        let mut big = vec![0u8; SCRATCH_LEN];
        let mut out = [0u8; 16];
        assert_eq!(
            t.seal(&[0; 8], None, &[], &mut big, &mut out),
            Err(CryptoError::BadLength)
        );
    }
}
