//! Espresso's control plane: the command line, the forwarder and (as it
//! grows) configuration, the control thread and IKEv2. No `unsafe` here:
//! everything below the data plane's safe API is out of reach.
#![forbid(unsafe_code)]

pub mod bench;
pub mod config;
pub mod control_socket;
pub mod eal_args;
pub mod forward;
pub mod gateway;
pub use ike;
pub mod ike_driver;
