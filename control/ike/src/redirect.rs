//! IKEv2 redirect (RFC 5685): the responder's policy (whether and where
//! to send new clients) and the initiator's bound on redirects followed.
//! The exchanges themselves are in `endpoint/redirect.rs`, the notify data
//! in [`crate::message::redirect`].

use std::collections::VecDeque;

use crate::message::GatewayIdentity;
use crate::sa::Timestamp;

/// When a responder redirects a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectPolicy {
    /// Serve every client here.
    #[default]
    Never,
    /// Redirect every client that supports it (maintenance: draining a
    /// gateway before taking it down).
    Always,
    /// Redirect while this gateway holds at least `above` IKE SAs.
    Load { above: usize },
}

/// In which exchange the responder redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectExchange {
    /// §4.3: in the IKE_SA_INIT response, before any state or Diffie-
    /// Hellman work; unauthenticated, so the client checks the nonce echo.
    #[default]
    IkeSaInit,
    /// §6: in the IKE_AUTH response, once the client has authenticated
    /// (the client knows the redirect comes from its gateway).
    IkeAuth,
}

/// A responder's redirect configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedirectConfig {
    pub policy: RedirectPolicy,
    /// The other gateways of the farm, taken in turn.
    pub targets: Vec<GatewayIdentity>,
    pub exchange: RedirectExchange,
}

impl RedirectConfig {
    /// Whether the decision needs the gateway's IKE SA count.
    pub fn wants_load(&self) -> bool {
        matches!(self.policy, RedirectPolicy::Load { .. }) && !self.targets.is_empty()
    }
}

/// Redirects an initiator follows at most within [`REDIRECT_PERIOD_MS`]
/// (strongSwan's defaults): two gateways that redirect to each other
/// cannot keep it going round.
pub const MAX_REDIRECTS: usize = 5;
/// The period of [`MAX_REDIRECTS`].
pub const REDIRECT_PERIOD_MS: u64 = 300_000;

/// When the initiator last followed redirects (at most [`MAX_REDIRECTS`]
/// entries).
#[derive(Debug, Default)]
pub(crate) struct RedirectBound {
    followed: VecDeque<Timestamp>,
}

impl RedirectBound {
    /// Records a redirect followed at `now`, or refuses it if
    /// [`MAX_REDIRECTS`] were followed in the last [`REDIRECT_PERIOD_MS`].
    pub fn admit(&mut self, now: Timestamp) -> bool {
        while self
            .followed
            .front()
            .is_some_and(|t| t.plus(REDIRECT_PERIOD_MS) <= now)
        {
            self.followed.pop_front();
        }
        if self.followed.len() >= MAX_REDIRECTS {
            return false;
        }
        self.followed.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_redirect_bound_is_five_within_300_s() {
        let mut b = RedirectBound::default();
        for i in 0..5 {
            assert!(b.admit(Timestamp(1_000 + i * 10_000)));
        }
        assert!(!b.admit(Timestamp(60_000)));
        assert!(!b.admit(Timestamp(300_999)));
        // The first one ages out at 301 s.
        assert!(b.admit(Timestamp(301_000)));
        assert!(!b.admit(Timestamp(301_001)));
        assert_eq!(b.followed.len(), MAX_REDIRECTS);
    }
}
