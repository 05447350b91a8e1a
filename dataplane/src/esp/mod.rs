//! The ESP engine's state: security associations, the anti-replay window,
//! the security policy database and drop counters (RFC 4301, RFC 4303).
#![forbid(unsafe_code)]

pub mod replay;

pub use replay::{ReplayError, ReplayWindow, ReplayWindowSizeError};
