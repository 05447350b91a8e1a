//! The ESP engine's state: security associations, the anti-replay window,
//! the security policy database and drop counters (RFC 4301, RFC 4303).
//!
//! - [`replay`]: the inbound anti-replay window with ESN inference
//!   (RFC 4303 §3.4.3 and Appendix A2, RFC 6479).
//! - [`spd`]: the security policy database and traffic selectors
//!   (RFC 4301 §4.4.1, §5.2), looked up through [`classifier`], a compiled
//!   byte-wise automaton, and a per-worker [`flow_cache`].
//! - [`sa`]: SA configuration, lifetimes and the outbound sequence counter
//!   (RFC 4301 §4.4.2, RFC 4303 §3.3.3).
//! - [`ecn`]: ECN (RFC 6040), DSCP and DF handling for the outer header.
//! - [`counters`]: drop reasons and single-writer packet counters.
//! - [`outbound`] and [`inbound`]: encapsulation and decapsulation
//!   (RFC 4303 §3.3, §3.4; RFC 3948 UDP encapsulation).
//! - [`engine`]: the per-worker engine with burst entry points.
//! - [`spi_map`]: the SPI-keyed table that grows a little per poll.
#![forbid(unsafe_code)]

pub mod classifier;
pub mod counters;
pub mod ecn;
pub mod engine;
pub mod flow_cache;
pub mod inbound;
pub mod outbound;
pub mod replay;
pub mod sa;
pub mod slot_vec;
pub mod spd;
pub mod spi_map;

#[cfg(all(test, have_ipsec_mb))]
mod batch_tests;
#[cfg(test)]
mod kat;
#[cfg(test)]
mod tests;

pub use classifier::{Classifier, ClassifierStats};
pub use counters::{DropReason, SaCounters, WorkerCounters};
pub use ecn::{
    decap_tos, ecn_decapsulate, ecn_encapsulate, encap_tos, DfPolicy, DscpPolicy, Ecn, EcnDrop,
};
pub use engine::{EngineEvent, EspEngine};
pub use flow_cache::{FlowHint, SpdCache};
pub use inbound::{
    locate_esp, locate_esp_header_verified, Decapsulated, Deferral, EspLocation, InboundOutcome,
    InboundSa, InboundSaTable, Opening,
};
pub use outbound::{flow_key, packet_key, OutboundSa, PacketKey, Sealing, ESP_HEADER_LEN};
pub use replay::{ReplayError, ReplayWindow, ReplayWindowSizeError};
pub use sa::{
    Direction, Lifetime, LifetimeEvent, LifetimeEvents, LifetimeState, Mode, NextSeq, ReservedSpi,
    SaConfig, SaConfigError, SaEvent, SaHint, SeqCounter, SeqExhausted, Spi, TunnelEndpoints,
    UdpEncap,
};
pub use slot_vec::{Chunked, SlotVec};
pub use spd::{
    Action, FlowKey, IpPrefix, OpaqueMatch, Policy, PolicyId, PrefixError, SaRef, Selector,
    SelectorError, Spd,
};
pub use spi_map::SpiMap;
