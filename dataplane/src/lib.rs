//! Espresso's data plane.
//!
//! - [`dpdk`]: the safe layer over DPDK (EAL, mempools, ports, mbufs). With
//!   `crypto::ipsec_mb`, the only modules that call into `dpdk-sys`.
//! - [`wire`]: zero-copy packet views over byte slices (Ethernet, IPv4, IPv6,
//!   UDP, ESP), usable without EAL in tests, fuzzers and benches.
//! - [`crypto`]: ESP transforms behind one trait, with ipsec-mb, aws-lc-rs
//!   and pure-Rust backends.
//! - [`esp`]: security associations, the replay window, the security policy
//!   database and burst encapsulation/decapsulation (RFC 4303).

pub mod buf;
pub mod crypto;
pub mod dpdk;
pub mod esp;
pub mod gateway;
pub mod route;
pub mod wire;
