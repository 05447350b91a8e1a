//! The ESP engine's state: security associations, the anti-replay window,
//! the security policy database and drop counters (RFC 4301, RFC 4303).
#![forbid(unsafe_code)]

pub mod counters;
pub mod replay;
pub mod spd;

pub use counters::{DropReason, SaCounters, WorkerCounters};
pub use replay::{ReplayError, ReplayWindow, ReplayWindowSizeError};
pub use spd::{
    Action, FlowKey, IpPrefix, Policy, PolicyId, PrefixError, SaRef, Selector, SelectorError, Spd,
};
