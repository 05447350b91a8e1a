//! The SAs the data plane should have, whichever way they were keyed, and
//! the one component that brings the workers in line with them.
//!
//! - [`SaSpec`] describes one data-plane SA completely (algorithm, keys,
//!   SPI, direction, endpoints, selectors, UDP encapsulation, lifetimes).
//!   Manual pairs of the configuration become specs in
//!   [`Wanted::from_config`]; IKE Child SAs in
//!   [`crate::ike_driver::child_specs`].
//! - [`Wanted`] is every tunnel's set of inbound SAs, its one outbound
//!   SA (the tunnel's SPD slot) and, on a responder template or a tunnel
//!   with address pools, one [`PeerRoute`] per peer: that peer's outbound
//!   SA with the SPD entries (its Child SA's negotiated selectors) that
//!   send to it. The planner gives each route its own outbound slot; a
//!   rekey puts the successor's SA in the same slot.
//! - [`Planner`] remembers what the workers have and diffs it against
//!   what is wanted: the [`Plan`] is the list of control messages, per
//!   worker, that gets there make before break (new inbound SAs, then
//!   the outbound switch, then removals). Only the SAs that change are
//!   built: key expansion is the control thread's main cost in a large
//!   reload.
//!
//! Nothing here does I/O: the control thread sends the planned messages,
//! and the tests apply them to nodes on heap buffers.

mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use dataplane::crypto::{default_backend, new_transform, Algorithm, Backend, SaKeys};
use dataplane::esp::{Direction, InboundSa, OutboundSa, SaConfig, Selector, Spi};

use crate::config::{CryptoBackendChoice, GatewayConfig, ManualSa, Tunnel};

pub use plan::{Failure, Installed, PeerPolicy, Plan, Planner};

/// A failed SA build.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The crypto backend an SA of `alg` runs on.
pub fn backend_for(choice: CryptoBackendChoice, alg: Algorithm) -> Backend {
    match choice {
        CryptoBackendChoice::Auto => default_backend(alg),
        CryptoBackendChoice::Fixed(b) => b,
    }
}

/// One data-plane SA, complete enough to build: its SPI, direction,
/// mode, endpoints, selectors, UDP encapsulation and lifetimes are in
/// `config`.
#[derive(Clone, Debug)]
pub struct SaSpec {
    /// The ESP algorithm.
    pub algorithm: Algorithm,
    /// Everything but the keys.
    pub config: SaConfig,
    /// Encryption and integrity keys (wiped on drop, redacted by `Debug`).
    pub keys: SaKeys,
}

impl SaSpec {
    /// A manually keyed SA of the configuration.
    pub fn manual(algorithm: Algorithm, sa: &ManualSa) -> Self {
        Self {
            algorithm,
            config: sa.config.clone(),
            keys: sa.keys.clone(),
        }
    }

    /// The SPI.
    pub fn spi(&self) -> Spi {
        self.config.spi
    }

    /// Expands the keys into an inbound SA.
    pub fn build_inbound(&self, choice: CryptoBackendChoice) -> Result<Box<InboundSa>, Error> {
        if self.config.direction != Direction::Inbound {
            return Err(format!("SA {} is not inbound", self.config.spi).into());
        }
        let t = new_transform(
            backend_for(choice, self.algorithm),
            self.algorithm,
            &self.keys,
        )?;
        Ok(Box::new(InboundSa::new(self.config.clone(), t)?))
    }

    /// Expands the keys into an outbound SA.
    pub fn build_outbound(&self, choice: CryptoBackendChoice) -> Result<Box<OutboundSa>, Error> {
        if self.config.direction != Direction::Outbound {
            return Err(format!("SA {} is not outbound", self.config.spi).into());
        }
        let t = new_transform(
            backend_for(choice, self.algorithm),
            self.algorithm,
            &self.keys,
        )?;
        Ok(Box::new(OutboundSa::new(self.config.clone(), t)?))
    }
}

/// One tunnel's wanted SAs.
#[derive(Clone, Debug, Default)]
pub struct TunnelSas {
    /// Every SA the peer may send on (a rekeyed one stays until the peer
    /// can no longer use it).
    pub inbound: Vec<SaSpec>,
    /// The SA the tunnel's SPD slot sends on, if any.
    pub outbound: Option<SaSpec>,
    /// Per-peer return routes (templates and tunnels with pools).
    pub peers: Vec<PeerRoute>,
}

/// One peer's return route: the outbound SA of its Child SA and the SPD
/// entries (local TS to remote TS, RFC 7296 §2.9) that select it, ahead of
/// the tunnel's configured policy.
#[derive(Clone, Debug)]
pub struct PeerRoute {
    /// What the route covers (its destination prefixes): the same key
    /// across a rekey, so the successor's SA replaces its predecessor's in
    /// the same slot, with no change to the SPD.
    pub key: String,
    /// The SPD selectors, outbound direction.
    pub selectors: Vec<Selector>,
    /// The SA.
    pub outbound: SaSpec,
}

/// The SAs wanted per tunnel (by the tunnel's index in the
/// configuration, which is also its SPD slot).
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    tunnels: BTreeMap<usize, TunnelSas>,
}

impl Wanted {
    /// Nothing wanted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration's manual SAs: the inbound SA of every pair of a
    /// tunnel, and the outbound SA of its first pair. With both gateways
    /// reloaded at each step (add the new pair second; move it first; drop
    /// the old one), a manual rekey loses no packet.
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self::from_tunnels(config.tunnels.iter().enumerate())
    }

    /// [`Wanted::from_config`] for tunnels at the given SPD slots (a
    /// running gateway keeps each tunnel's slot across reloads).
    pub fn from_tunnels<'a>(tunnels: impl IntoIterator<Item = (usize, &'a Tunnel)>) -> Self {
        let mut w = Self::new();
        for (t, tunnel) in tunnels {
            if tunnel.sas.is_empty() {
                continue;
            }
            let sas = w.tunnel_mut(t);
            for (i, pair) in tunnel.sas.iter().enumerate() {
                sas.inbound
                    .push(SaSpec::manual(pair.algorithm, &pair.inbound));
                if i == 0 {
                    sas.outbound = Some(SaSpec::manual(pair.algorithm, &pair.outbound));
                }
            }
        }
        w
    }

    /// Tunnel `t`'s entry, made empty if it has none.
    pub fn tunnel_mut(&mut self, t: usize) -> &mut TunnelSas {
        self.tunnels.entry(t).or_default()
    }

    /// Tunnel `t`'s entry.
    pub fn tunnel(&self, t: usize) -> Option<&TunnelSas> {
        self.tunnels.get(&t)
    }

    /// Every tunnel with an entry, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &TunnelSas)> {
        self.tunnels.iter().map(|(t, s)| (*t, s))
    }
}
