//! The Intel ipsec-mb (1.3) backend — the only file in `crypto` with
//! `unsafe`.
//!
//! - AES-GCM: the direct API (`gcm128_pre`/`gcm256_pre` expand the key and
//!   precompute the GHASH key powers once; `gcm*_enc`/`gcm*_dec` run one
//!   packet with a `gcm_context_data` on the stack).
//! - ChaCha20-Poly1305: the direct API (`chacha20_poly1305_init`,
//!   `*_update`, `*_finalize`), context on the stack.
//! - AES-CBC and HMAC-SHA-2: the job API. The AES round keys are expanded
//!   once (`keyexp_*`) and the HMAC inner/outer states are prepared once
//!   by hashing key⊕ipad and key⊕opad with `sha*_one_block`, exactly what
//!   the `IMB_AUTH_HMAC_SHA_*` jobs expect. The ICV covers
//!   SPI‖seq‖IV‖ciphertext‖seq-high, which the trait hands over as separate
//!   slices while a job hashes one contiguous buffer, so the hash input is
//!   copied into a per-thread scratch buffer first (a `memcpy`, cheap next
//!   to the hash). Open verifies the ICV before it submits the decryption.
//!
//! Managers. An `IMB_MGR` is large (hundreds of KiB of out-of-order
//! scheduler state), so there is one per thread, allocated lazily with
//! `alloc_mb_mgr(0)` + `init_mb_mgr_auto` in a `thread_local`, not one per
//! transform. Transforms hold only key data and the function pointers
//! copied from the manager that expanded their keys, so they stay `Send`
//! and can move between workers: the direct-API functions take no manager,
//! and a job is always submitted and flushed within one call on the
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

use super::transform::{AeadPrimitive, AeadTransform, CbcPrimitive, HmacTransform, MacPrimitive};
use super::{
    Algorithm, Backend, BackendFailure, CryptoError, Encryption, EspTransform, Integrity, SaKeys,
};

const BACKEND: Backend = Backend::IpsecMb;

/// Largest HMAC input: ESP header, CBC IV, a 64 KiB payload, ESN high bits.
const SCRATCH_LEN: usize = 8 + 16 + 65_536 + 4;

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

    /// Submits one job filled by `fill` and waits for it: submit, then
    /// flush if the manager held it back. The manager is empty before and
    /// after, so the job that comes back is ours.
    fn run_job(&mut self, fill: impl FnOnce(&mut imb::IMB_JOB)) -> Result<(), CryptoError> {
        let (Some(get_next), Some(submit), Some(flush)) = (
            self.fns.get_next_job,
            self.fns.submit_job,
            self.fns.flush_job,
        ) else {
            return Err(failure(-1));
        };
        let mgr = self.mgr.as_ptr();
        // SAFETY: `mgr` is this thread's initialised manager; no job is in
        // flight (every call drains its job before returning).
        let job = unsafe { get_next(mgr) };
        let Some(mut job) = NonNull::new(job) else {
            return Err(failure(-1));
        };
        {
            // SAFETY: `get_next_job` returns a pointer to a job slot inside
            // the manager that the application owns until `submit_job`;
            // nothing else touches it while this reference lives.
            let j = unsafe { job.as_mut() };
            *j = imb::IMB_JOB::default();
            fill(j);
        }
        // SAFETY: the job returned by `get_next_job` has been filled in and
        // every pointer in it refers to memory that outlives this call.
        let mut done = unsafe { submit(mgr) };
        if done.is_null() {
            // SAFETY: as above; flushing completes the queued job.
            done = unsafe { flush(mgr) };
        }
        if done != job.as_ptr() {
            return Err(failure(-1));
        }
        // SAFETY: `done` is our job slot, completed and returned to us.
        let status = unsafe { (*done).status };
        if status == imb::IMB_STATUS_COMPLETED {
            Ok(())
        } else {
            // SAFETY: `mgr` is this thread's initialised manager.
            let errno = unsafe { imb::imb_get_errno(mgr) };
            Err(failure(errno))
        }
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
        let t = HmacTransform::new(alg, BACKEND, keys, CbcCipher::new, |k| {
            Hmac::new(alg.integrity, k)
        })?;
        Ok(Box::new(t))
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
// AES-CBC and HMAC (job API)
// ---------------------------------------------------------------------------

/// Expanded AES encryption and decryption round keys (up to 15 × 16 bytes
/// each), 16-byte aligned as the job API requires.
#[repr(C, align(64))]
struct AesKeys {
    enc: [u8; 256],
    dec: [u8; 256],
}

/// Unpadded AES-CBC in place through `IMB_CIPHER_CBC` jobs.
pub(super) struct CbcCipher {
    keys: Box<AesKeys>,
    key_len: u64,
}

impl CbcCipher {
    pub(super) fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let fns = with_mgr(|m| Ok(m.fns))?;
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
        Ok(Self {
            keys,
            key_len: key.len() as u64,
        })
    }

    fn run(&self, encrypt: bool, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        let p = data.as_mut_ptr();
        let keys = &*self.keys;
        with_mgr(|m| {
            m.run_job(|job| {
                job.cipher_mode = imb::IMB_CIPHER_CBC;
                job.hash_alg = imb::IMB_AUTH_NULL;
                if encrypt {
                    job.cipher_direction = imb::IMB_DIR_ENCRYPT;
                    job.chain_order = imb::IMB_ORDER_CIPHER_HASH;
                } else {
                    job.cipher_direction = imb::IMB_DIR_DECRYPT;
                    job.chain_order = imb::IMB_ORDER_HASH_CIPHER;
                }
                job.enc_keys = keys.enc.as_ptr().cast();
                job.dec_keys = keys.dec.as_ptr().cast();
                job.key_len_in_bytes = self.key_len;
                job.__bindgen_anon_1.src = p.cast_const();
                job.__bindgen_anon_2.dst = p;
                job.__bindgen_anon_3.cipher_start_src_offset_in_bytes = 0;
                job.__bindgen_anon_4.msg_len_to_cipher_in_bytes = len;
                job.iv = iv.as_ptr();
                job.iv_len_in_bytes = 16;
            })
        })
    }
}

impl Drop for CbcCipher {
    fn drop(&mut self) {
        self.keys.enc.zeroize();
        self.keys.dec.zeroize();
    }
}

impl CbcPrimitive for CbcCipher {
    fn encrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        self.run(true, iv, data)
    }

    fn decrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
        self.run(false, iv, data)
    }
}

/// HMAC inner and outer hash states (H(K⊕ipad), H(K⊕opad) after one block),
/// up to SHA-512's 64-byte state.
#[repr(C, align(64))]
struct HmacPads {
    ipad: [u8; 64],
    opad: [u8; 64],
}

/// Truncated HMAC-SHA-2 through `IMB_AUTH_HMAC_SHA_*` jobs.
pub(super) struct Hmac {
    pads: Box<HmacPads>,
    hash_alg: imb::IMB_HASH_ALG,
    /// Full digest length; the job writes `out.len()` (the RFC 4868
    /// truncation) or this.
    digest_len: usize,
}

impl Hmac {
    pub(super) fn new(integrity: Integrity, key: &[u8]) -> Result<Self, CryptoError> {
        let fns = with_mgr(|m| Ok(m.fns))?;
        let (one_block, block_len, hash_alg, digest_len) = match integrity {
            Integrity::HmacSha256_128 => (fns.sha256_one_block, 64, imb::IMB_AUTH_HMAC_SHA_256, 32),
            Integrity::HmacSha384_192 => {
                (fns.sha384_one_block, 128, imb::IMB_AUTH_HMAC_SHA_384, 48)
            }
            Integrity::HmacSha512_256 => {
                (fns.sha512_one_block, 128, imb::IMB_AUTH_HMAC_SHA_512, 64)
            }
            Integrity::None => return Err(failure(-1)),
        };
        let one_block = one_block.ok_or_else(|| failure(-1))?;
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
            pads,
            hash_alg,
            digest_len,
        })
    }
}

impl Drop for Hmac {
    fn drop(&mut self) {
        self.pads.ipad.zeroize();
        self.pads.opad.zeroize();
    }
}

impl MacPrimitive for Hmac {
    fn sign(&self, pieces: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
        // ipsec-mb accepts the full digest or the RFC 4868 half.
        if out.len() != self.digest_len && out.len() != self.digest_len / 2 {
            return Err(CryptoError::BadLength);
        }
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let pads = &*self.pads;
        with_mgr(|m| {
            if total > m.scratch.len() {
                return Err(CryptoError::BadLength);
            }
            let mut at = 0;
            for piece in pieces {
                m.scratch[at..at + piece.len()].copy_from_slice(piece);
                at += piece.len();
            }
            let src = m.scratch.as_mut_ptr();
            m.run_job(|job| {
                job.cipher_mode = imb::IMB_CIPHER_NULL;
                job.cipher_direction = imb::IMB_DIR_ENCRYPT;
                job.chain_order = imb::IMB_ORDER_CIPHER_HASH;
                job.hash_alg = self.hash_alg;
                job.__bindgen_anon_1.src = src.cast_const();
                job.__bindgen_anon_2.dst = src;
                job.__bindgen_anon_3.cipher_start_src_offset_in_bytes = 0;
                job.__bindgen_anon_4.msg_len_to_cipher_in_bytes = 0;
                job.hash_start_src_offset_in_bytes = 0;
                job.__bindgen_anon_5.msg_len_to_hash_in_bytes = total as u64;
                job.iv = src.cast_const();
                job.iv_len_in_bytes = 0;
                job.auth_tag_output = out.as_mut_ptr();
                job.auth_tag_output_len_in_bytes = out.len() as u64;
                job.u.HMAC = imb::IMB_JOB__bindgen_ty_6__HMAC_specific_fields {
                    _hashed_auth_key_xor_ipad: pads.ipad.as_ptr(),
                    _hashed_auth_key_xor_opad: pads.opad.as_ptr(),
                };
            })
        })
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
    fn oversized_hmac_input_is_rejected_not_truncated() {
        let mac = Hmac::new(Integrity::HmacSha256_128, &[7; 32]).unwrap();
        let big = vec![0u8; SCRATCH_LEN + 1];
        let mut out = [0u8; 16];
        assert_eq!(mac.sign(&[&big], &mut out), Err(CryptoError::BadLength));
    }
}
