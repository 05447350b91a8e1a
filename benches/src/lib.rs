//! Espresso's benchmarks: fixtures and the measurement loop shared by the
//! criterion benches (`benches/esp.rs`, `benches/tables.rs`) and the
//! summary printer (`src/bin/esp_report.rs`).
//!
//! Everything runs on plain heap buffers ([`dataplane::buf::HeapBuf`]), no
//! EAL. Packets are processed in bursts of [`BURST`]: the burst is loaded
//! outside the timed region (a copy of a pristine packet into preallocated
//! buffers, as a NIC's DMA would leave it), then the burst is timed. So no
//! allocation and no reset copy is ever inside a figure; the cost of the
//! copy is measured on its own and reported beside them.
//!
//! Practice 13 of `STYLE.md`: every figure is printed as a ratio to a
//! baseline measured in the same run (the bare crypto transform for the
//! ESP engine, the smallest table for lookups, DPDK's own
//! `dpdk-test-crypto-perf` for the crypto backends).
#![deny(unsafe_code)]

pub mod clock;
pub mod cperf;
pub mod fixtures;
pub mod measure;
pub mod tables;

/// Packets per burst: DPDK's usual RX/TX burst size.
pub const BURST: usize = 32;
