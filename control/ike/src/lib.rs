//! A sans-IO IKEv2 engine (RFC 7296).
//!
//! The engine never reads a socket, the clock or the system RNG: the driver
//! passes in datagrams, the current [`Timestamp`] and a [`RngSource`], and
//! polls for datagrams to send, the next timeout and events.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cert;
pub mod config;
pub mod crypto;
pub mod endpoint;
pub mod error;
pub mod fragment;
pub mod identity;
pub mod message;
pub mod negotiate;
pub mod pool;
pub mod redirect;
pub mod sa;
pub mod sim;

pub use admission::{HalfOpenBudget, HalfOpenSpis};
pub use config::{
    Config, EspProposal, IkeProposal, Limits, LocalAuth, RemoteAuth, StartAction, Template, Timers,
};
pub use crypto::{EspAlgorithm, EspCipher, Integ, RngSource};
pub use endpoint::{ApiError, Endpoint, HandedOver};
pub use error::{IkeError, ProtocolError, ProtocolErrorCounts};
pub use fragment::{FragmentRefusal, FragmentRefusalCounts, FragmentStats, Fragmentation};
pub use identity::{IdDirectory, IdPattern};
pub use redirect::{RedirectConfig, RedirectExchange, RedirectPolicy};
pub use sa::{
    ChildSaId, ChildSaKeys, DownReason, HandedMessage, IkeEvent, IkeSaId, IkeSaSecrets, Stats,
    Timestamp, Transmit, UdpEncap,
};

#[cfg(test)]
mod tests;
