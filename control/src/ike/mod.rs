//! A sans-IO IKEv2 engine (RFC 7296).
//!
//! The engine never reads a socket, the clock or the system RNG: the driver
//! passes in datagrams, the current [`Timestamp`] and a [`RngSource`], and
//! polls for datagrams to send, the next timeout and events.

pub mod config;
pub mod crypto;
pub mod message;
pub mod negotiate;
