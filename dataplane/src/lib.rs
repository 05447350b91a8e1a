//! Espresso's data path without I/O: everything a worker does with a
//! packet, on any buffer that implements [`buf::PacketBuf`] (DPDK mbufs in
//! `espresso-dpdk`, heap buffers in tests, fuzzers and benches). Builds and
//! tests on any machine with Rust: no DPDK, no root.
//!
//! - [`wire`]: zero-copy packet views over byte slices (Ethernet, ARP,
//!   IPv4, IPv6, ICMP, UDP, TCP, ESP).
//! - [`crypto`]: ESP transforms behind one trait, with Intel ipsec-mb (when
//!   the build found it), aws-lc-rs and pure-Rust backends.
//! - [`esp`]: security associations, the replay window, the security
//!   policy database and burst encapsulation/decapsulation (RFC 4303).
//! - [`gateway`]: the forwarding node and the messages and queues between
//!   the workers and the control thread.
//! - [`route`]: the routing table.
//!
//! `unsafe` appears only in the ipsec-mb backend (`crypto::ipsec_mb`).
#![deny(unsafe_code)]

pub mod buf;
pub mod crypto;
pub mod esp;
pub mod gateway;
pub mod route;
pub mod wire;

/// Packets per burst throughout the data path (DPDK's customary 32).
pub const BURST_SIZE: usize = 32;
