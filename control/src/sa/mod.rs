//! Building data-plane SAs from their description.

use dataplane::crypto::{default_backend, new_transform, Backend};
use dataplane::esp::{InboundSa, OutboundSa};

use crate::config::{CryptoBackendChoice, SaPair};

/// A failed SA build.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The crypto backend an SA of `alg` runs on.
pub fn backend_for(choice: CryptoBackendChoice, alg: dataplane::crypto::Algorithm) -> Backend {
    match choice {
        CryptoBackendChoice::Auto => default_backend(alg),
        CryptoBackendChoice::Fixed(b) => b,
    }
}

/// A manual (configured) pair's outbound SA.
pub fn build_outbound(
    pair: &SaPair,
    choice: CryptoBackendChoice,
) -> Result<Box<OutboundSa>, Error> {
    let backend = backend_for(choice, pair.algorithm);
    let t = new_transform(backend, pair.algorithm, &pair.outbound.keys)?;
    Ok(Box::new(OutboundSa::new(pair.outbound.config.clone(), t)?))
}

/// A manual (configured) pair's inbound SA.
pub fn build_inbound(pair: &SaPair, choice: CryptoBackendChoice) -> Result<Box<InboundSa>, Error> {
    let backend = backend_for(choice, pair.algorithm);
    let t = new_transform(backend, pair.algorithm, &pair.inbound.keys)?;
    Ok(Box::new(InboundSa::new(pair.inbound.config.clone(), t)?))
}
