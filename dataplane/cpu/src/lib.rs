//! The CPU-level helpers of the data path that are not DPDK: software
//! prefetch ([`prefetch`]), transparent huge pages for large tables
//! ([`huge`]) and the time-stamp counter ([`clock`]).
//!
//! With `ffi/`, `espresso-dpdk` and the ipsec-mb backend, this is one of
//! the few places with `unsafe`: each use is a CPU instruction or a
//! system call with no memory effect on Rust objects, and says why it is
//! sound.

pub mod clock;
pub mod huge;
pub mod prefetch;
