//! Espresso's control plane and the `espresso` gateway binary: the
//! configuration, the control thread ([`gateway`]: it starts the workers
//! and talks to them through queues), the driver between the sans-IO IKE
//! engine (`espresso-ike`, re-exported as [`ike`]) and the workers
//! ([`ike_driver`]), the one description of a data-plane SA and the
//! planner that brings the workers' SAs in line with the wanted ones
//! ([`sa`], used for manual and IKE SAs alike), the control socket, and a
//! two-port forwarder. No
//! `unsafe` here: everything below the data plane's safe API is out of
//! reach. Built without DPDK, the modules that run ports ([`gateway`],
//! [`forward`]) are left out; the rest builds and tests anywhere.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod control_socket;
pub mod eal_args;
#[cfg(have_dpdk)]
pub mod forward;
#[cfg(have_dpdk)]
pub mod gateway;
pub mod host;
pub mod port_plan;
pub use ike;
pub mod ike_driver;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod sa;
pub mod stats;
pub mod systemd;
