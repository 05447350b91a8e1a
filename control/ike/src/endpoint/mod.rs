//! The IKEv2 engine: one [`Endpoint`] per configured peer, holding its IKE
//! SAs. Sans-IO (quinn practice): the driver feeds datagrams and time, and
//! polls for datagrams, the next timeout and events.
//!
//! This module holds the driver API, timers and the dispatch of received
//! messages; each exchange (RFC 7296 §1) is handled in its own submodule.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::admission::{CookieSecret, HalfOpenBudget, Refusal, Ticket};
use super::config::{Config, StartAction};
use super::crypto::{
    child_keymat, ct_eq, derive_ike_keys, nat_detection_hash, psk_auth, skeyseed, skeyseed_rekey,
    CryptoError, DhGroup, DhSecret, RngSource, SecretBytes,
};
use super::message::*;
use super::negotiate::{self, Choice, EspChoice};
use super::sa::*;
pub use crate::error::{IkeError, ProtocolError};
pub use cp::identity_key;

/// Nonce length we send (RFC 7296 §2.10: at least half the PRF key size).
const NONCE_LEN: usize = 32;
/// How long a rekeyed or deleting IKE SA may linger before it is dropped.
const LINGER_MS: u64 = 30_000;
/// Retry delay after a refused rekey.
const REKEY_RETRY_MS: u64 = 2_000;
/// IKE_SA_INIT restarts (COOKIE or INVALID_KE_PAYLOAD, §2.6, §1.2) one
/// attempt makes: both replies are unauthenticated, so anyone on the path
/// could otherwise keep the initiator restarting for ever.
const MAX_INIT_RESTARTS: u32 = 3;
/// §2.6: a COOKIE notify carries 1 to 64 octets.
const MAX_COOKIE_LEN: usize = 64;
/// At most one log line about a refused proposal per this many ms.
const REFUSAL_LOG_INTERVAL_MS: u64 = 1_000;

/// §2.10, §3.9: nonces are 16 to 256 octets.
fn nonce_ok(n: &[u8]) -> bool {
    (16..=256).contains(&n.len())
}

/// Errors from the driver-facing API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("no such IKE SA")]
    NoSuchIkeSa,
    #[error("no such Child SA")]
    NoSuchChildSa,
    #[error("configuration has no IKE or ESP proposals")]
    NoProposals,
    /// RFC 5685 §5: the peer did not announce REDIRECT_SUPPORTED, or the
    /// IKE SA is not established.
    #[error("the peer cannot be redirected")]
    CannotRedirect,
}

/// An IKE_SA_INIT request we answered and our answer, for its
/// retransmissions (§2.1).
#[derive(Debug)]
struct InitReplay {
    /// Our SPI of the IKE SA it made.
    spi: u64,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// The engine.
pub struct Endpoint {
    config: Config,
    rng: Box<dyn RngSource + Send>,
    sas: HashMap<u64, IkeSa>,
    /// (SPIi, peer address) of IKE_SA_INIT requests we answered, for
    /// retransmissions (§2.1).
    init_index: HashMap<(u64, SocketAddr), InitReplay>,
    cookies: CookieSecret,
    /// Half-open SA counts shared with the other tunnels' engines.
    budget: HalfOpenBudget,
    /// This engine's half-open responder SAs.
    half_open: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IkeEvent>,
    stats: Stats,
    /// When a refused proposal was last logged.
    refusal_logged_at: Option<Timestamp>,
    /// RFC 5685 (`redirect.rs`): the next redirect target to try.
    redirect_turn: usize,
    /// RFC 5685: the gateway's IKE SA count, as the driver last told it.
    gateway_load: Option<usize>,
    /// RFC 5685: redirects followed recently, as initiator.
    redirect_bound: crate::redirect::RedirectBound,
    /// RFC 5685 §5: (new, old) IKE SAs: `old`, whose gateway redirected
    /// us, is deleted once `new` is established.
    redirect_replaced: Vec<(IkeSaId, IkeSaId)>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("ike_sas", &self.sas.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for Endpoint {
    /// The budget may be shared with engines that live on: give back the
    /// places of this one's half-open SAs.
    fn drop(&mut self) {
        for sa in self.sas.values_mut() {
            if let Some(t) = sa.half_open_ticket() {
                self.budget.release(t);
            }
            // Pools may be shared too: the leases go back (still reserved
            // for their identities).
            for v in sa.virtual_ips.drain(..) {
                if let Some((pool, identity)) = v.lease {
                    pool.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .release(&identity, v.addr);
                }
            }
        }
    }
}

/// A half-open IKE SA on its way from one engine to another (opaque).
pub struct HandedOver(Box<IkeSa>);

impl core::fmt::Debug for HandedOver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("HandedOver").field(&self.0.id).finish()
    }
}

/// The first payload of one kind: `find_payload!(ps, Sa)` is the `SaPayload`
/// of the first `Payload::Sa` in `ps`, if any.
macro_rules! find_payload {
    ($ps:expr, $kind:ident) => {
        $ps.iter().find_map(|p| match p {
            Payload::$kind(x) => Some(x),
            _ => None,
        })
    };
}

fn first_error(ps: &[Payload]) -> Option<NotifyType> {
    ps.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty.is_error() => Some(n.ty),
        _ => None,
    })
}

mod cert_auth;
mod cp;
mod create_child_sa;
mod fragment;
mod ike_auth;
mod ike_sa_init;
mod informational;
mod redirect;
#[cfg(test)]
mod tests;

impl Endpoint {
    /// A new engine. With [`StartAction::Initiate`] the driver still calls
    /// [`Endpoint::initiate`] to start.
    pub fn new(config: Config, rng: Box<dyn RngSource + Send>) -> Result<Self, ApiError> {
        Self::with_budget(config, rng, HalfOpenBudget::new())
    }

    /// A new engine whose half-open SAs count against `budget`, shared
    /// with other engines (see [`super::admission`]).
    pub fn with_budget(
        config: Config,
        mut rng: Box<dyn RngSource + Send>,
        budget: HalfOpenBudget,
    ) -> Result<Self, ApiError> {
        if config.ike_proposals.is_empty() || config.esp_proposals.is_empty() {
            return Err(ApiError::NoProposals);
        }
        let cookies = CookieSecret::new(&mut *rng, Timestamp(0), config.cookie_secret_lifetime_ms);
        Ok(Self {
            config,
            rng,
            sas: HashMap::new(),
            init_index: HashMap::new(),
            cookies,
            budget,
            half_open: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            refusal_logged_at: None,
            redirect_turn: 0,
            gateway_load: None,
            redirect_bound: Default::default(),
            redirect_replaced: Vec::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration. IKE SAs and Child SAs keep what they
    /// negotiated (keys, addresses, selectors); everything decided from
    /// now on uses the new one: proposals of the next rekey or new IKE
    /// SA, lifetimes and DPD at the next timer, identities and the PSK of
    /// the next IKE_AUTH. The cookie secret keeps its period.
    pub fn set_config(&mut self, config: Config) -> Result<(), ApiError> {
        if config.ike_proposals.is_empty() || config.esp_proposals.is_empty() {
            return Err(ApiError::NoProposals);
        }
        self.config = config;
        Ok(())
    }

    /// Every IKE SA of this engine, half-open ones included.
    pub fn ike_sa_ids(&self) -> Vec<IkeSaId> {
        let mut v: Vec<IkeSaId> = self.sas.values().map(|s| s.id).collect();
        v.sort();
        v
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes a half-open responder SA out of this engine, to be
    /// [`Endpoint::adopt`]ed by a sibling template after an
    /// [`IkeEvent::Handoff`]. Its place in the shared half-open budget
    /// goes with it; its IKE_SA_INIT retransmission entry stays behind
    /// and is dropped.
    pub fn take_half_open(&mut self, id: IkeSaId) -> Option<HandedOver> {
        let sa = self.sas.get(&id.0)?;
        sa.half_open_ticket()?;
        let mut sa = self.sas.remove(&id.0)?;
        self.half_open = self.half_open.saturating_sub(1);
        if let Some(key) = sa.init_key.take() {
            if self.init_index.get(&key).map(|r| r.spi) == Some(sa.id.0) {
                self.init_index.remove(&key);
            }
        }
        Some(HandedOver(Box::new(sa)))
    }

    /// Takes over a half-open SA from [`Endpoint::take_half_open`]. The
    /// IKE proposals of the two must be the same (the driver checks it
    /// in the configuration): the SA was negotiated with the other's.
    /// Refused (the SA dropped, its budget place released) if its SPI is
    /// already one of ours.
    pub fn adopt(&mut self, sa: HandedOver) -> bool {
        let sa = *sa.0;
        if self.sas.contains_key(&sa.id.0) {
            if let Some(t) = sa.half_open_ticket() {
                self.budget.release(t);
            }
            return false;
        }
        self.half_open += 1;
        self.sas.insert(sa.id.0, sa);
        true
    }

    /// The identity the peer of an IKE SA authenticated with.
    pub fn peer_id(&self, id: IkeSaId) -> Option<&Identification> {
        self.sas.get(&id.0)?.peer_id.as_ref()
    }

    /// Whether an IKE SA of this engine has our SPI `spi`.
    pub fn has_ike_sa(&self, spi: u64) -> bool {
        self.sas.contains_key(&spi)
    }

    /// Half-open responder SAs of this engine.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// Our SPIs of the IKE SAs whose peer has authenticated (established,
    /// rekeyed or being deleted): datagrams naming one of them are worth
    /// more than anything unauthenticated.
    pub fn authenticated_spis(&self) -> impl Iterator<Item = u64> + '_ {
        self.sas
            .values()
            .filter(|s| s.authenticated())
            .map(|s| s.id.0)
    }

    /// Whether the configuration asks this side to initiate.
    pub fn should_initiate(&self) -> bool {
        self.config.start == StartAction::Initiate
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IkeEvent> {
        self.events.pop_front()
    }

    /// Established IKE SAs.
    pub fn established_ike_sas(&self) -> Vec<IkeSaId> {
        let mut v: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.state() == State::Established)
            .map(|s| s.id)
            .collect();
        v.sort();
        v
    }

    /// IKE SAs held in any state, half-open ones included.
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Installed (not rekeyed) Child SAs of all IKE SAs.
    pub fn child_sas(&self) -> Vec<ChildSaKeys> {
        let mut v: Vec<ChildSaKeys> = self
            .sas
            .values()
            .flat_map(|s| s.children.iter())
            .filter(|c| c.state == ChildState::Installed)
            .map(|c| c.keys.clone())
            .collect();
        v.sort_by_key(|k| k.id);
        v
    }

    /// The SPIs, algorithms and SK_e/SK_a keys of an established IKE SA,
    /// for key logging (Wireshark's `ikev2_decryption_table`) only: the
    /// driver writes them when the operator asked for a key log.
    pub fn ike_sa_secrets(&self, id: IkeSaId) -> Option<IkeSaSecrets> {
        let sa = self.sas.get(&id.0)?;
        let Sk { suite, keys, .. } = sa.sk()?;
        let suite = *suite;
        Some(IkeSaSecrets {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            initiator: sa.initiator,
            suite,
            sk_ei: keys.sk_ei.clone(),
            sk_er: keys.sk_er.clone(),
            sk_ai: keys.sk_ai.clone(),
            sk_ar: keys.sk_ar.clone(),
        })
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let t = &self.config.timers;
        let mut next: Option<Timestamp> = None;
        let mut at = |x: Timestamp| next = Some(next.map_or(x, |n| n.min(x)));
        for sa in self.sas.values() {
            if let Some(o) = &sa.outstanding {
                at(o.next_retransmit);
            }
            if let Some(d) = sa.frag.deadline() {
                at(d);
            }
            let Phase::Keyed(k) = &sa.phase else {
                continue;
            };
            match &k.stage {
                Stage::HalfOpen { .. } => at(sa.created.plus(t.half_open_timeout_ms)),
                Stage::Rekeyed | Stage::Deleting => at(sa.last_heard.plus(LINGER_MS)),
                Stage::Established(life) => {
                    if let Some(r) = life.rekey_at {
                        at(r);
                    }
                    at(life.expire_at);
                    if t.dpd_interval_ms > 0 && sa.outstanding.is_none() {
                        at(sa.last_heard.plus(t.dpd_interval_ms));
                    }
                    for c in &sa.children {
                        if let Some(r) = c.rekey_at {
                            at(r);
                        }
                        at(c.expire_at);
                    }
                }
                _ => {}
            }
        }
        next
    }

    fn random_u64(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let v = u64::from_be_bytes(b);
            if v != 0 && !self.sas.contains_key(&v) {
                return v;
            }
        }
    }

    fn random_child_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let v = u32::from_be_bytes(b);
            // SPIs 1-255 are reserved (RFC 4303 §2.1).
            let used = self
                .sas
                .values()
                .any(|s| s.children.iter().any(|c| c.keys.inbound_spi == v));
            if v > 255 && !used {
                return v;
            }
        }
    }

    fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut n);
        n
    }

    /// Lifetime with jitter: rekey at 90% minus up to 10% (random).
    fn rekey_time(&mut self, now: Timestamp, lifetime: u64) -> Timestamp {
        let mut b = [0u8; 4];
        self.rng.fill(&mut b);
        let jitter = if lifetime >= 10 {
            u64::from(u32::from_be_bytes(b)) % (lifetime / 10)
        } else {
            0
        };
        now.plus(lifetime - lifetime / 10 - jitter)
    }

    fn send(&mut self, sa: &IkeSa, bytes: Vec<u8>) {
        self.stats.tx_datagrams += 1;
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            non_esp_marker: sa.local.port() == self.config.nat_t_port,
            payload: bytes,
        });
    }

    fn header(sa: &IkeSa, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            exchange,
            flags: Flags::new(sa.initiator, response),
            message_id,
        }
    }

    /// Sends a new request and arms retransmission (window size 1).
    fn send_request(
        &mut self,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        payloads: &[Payload],
        request: Request,
        now: Timestamp,
    ) {
        let msg_id = sa.next_msg_id;
        sa.next_msg_id += 1;
        let hdr = Self::header(sa, exchange, false, msg_id);
        let Some(bytes) = self.seal(sa, &hdr, payloads) else {
            return;
        };
        self.send_all(sa, &bytes);
        let timeout_ms = self.config.timers.retransmit_base_ms;
        sa.outstanding = Some(Outstanding {
            msg_id,
            bytes,
            request,
            sent: 1,
            next_retransmit: now.plus(timeout_ms),
            timeout_ms,
        });
    }

    fn emit(&mut self, e: IkeEvent) {
        self.events.push_back(e);
    }

    /// Starts a Child SA rekey (e.g. on a data-plane soft lifetime or
    /// sequence-number event).
    pub fn rekey_child(&mut self, now: Timestamp, id: ChildSaId) -> Result<(), ApiError> {
        let spi = self
            .sas
            .iter()
            .find(|(_, s)| s.children.iter().any(|c| c.keys.id == id))
            .map(|(k, _)| *k)
            .ok_or(ApiError::NoSuchChildSa)?;
        self.with_sa(spi, now, |ep, sa| {
            if !sa.tasks.contains(&Task::RekeyChild(id.0)) {
                sa.tasks.push_back(Task::RekeyChild(id.0));
            }
            ep.kick(sa, now);
        });
        Ok(())
    }

    /// Starts an IKE SA rekey (§1.3.2).
    pub fn rekey_ike(&mut self, now: Timestamp, id: IkeSaId) -> Result<(), ApiError> {
        if !self.sas.contains_key(&id.0) {
            return Err(ApiError::NoSuchIkeSa);
        }
        self.with_sa(id.0, now, |ep, sa| {
            if !sa.tasks.contains(&Task::RekeyIke) {
                sa.tasks.push_back(Task::RekeyIke);
            }
            ep.kick(sa, now);
        });
        Ok(())
    }

    /// Deletes one Child SA (INFORMATIONAL with Delete, §1.4.1).
    pub fn delete_child(&mut self, now: Timestamp, id: ChildSaId) -> Result<(), ApiError> {
        let spi = self
            .sas
            .iter()
            .find(|(_, s)| s.children.iter().any(|c| c.keys.id == id))
            .map(|(k, _)| *k)
            .ok_or(ApiError::NoSuchChildSa)?;
        self.with_sa(spi, now, |ep, sa| {
            sa.tasks.push_back(Task::DeleteChildren(vec![id.0]));
            ep.kick(sa, now);
        });
        Ok(())
    }

    /// Deletes an IKE SA and its Child SAs.
    pub fn terminate(&mut self, now: Timestamp, id: IkeSaId) -> Result<(), ApiError> {
        if !self.sas.contains_key(&id.0) {
            return Err(ApiError::NoSuchIkeSa);
        }
        self.with_sa(id.0, now, |ep, sa| {
            if sa.state() == State::Established {
                sa.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                ep.kick(sa, now);
            } else {
                ep.remove_sa(sa, Some(DownReason::Terminated));
            }
        });
        Ok(())
    }

    fn with_sa(&mut self, spi: u64, now: Timestamp, f: impl FnOnce(&mut Self, &mut IkeSa)) {
        let _ = now;
        if let Some(mut sa) = self.sas.remove(&spi) {
            f(self, &mut sa);
            if !sa.removed {
                self.sas.insert(spi, sa);
            }
        }
    }

    fn remove_sa(&mut self, sa: &mut IkeSa, reason: Option<DownReason>) {
        if sa.removed {
            return;
        }
        for c in sa.children.drain(..) {
            self.events.push_back(IkeEvent::ChildSaDeleted {
                ike: sa.id,
                id: c.keys.id,
                outbound_spi: c.keys.outbound_spi,
            });
        }
        self.release_virtual_ips(sa);
        if let Some(reason) = reason {
            self.events
                .push_back(IkeEvent::IkeSaDown { ike: sa.id, reason });
        }
        sa.removed = true;
        self.leave_half_open(sa);
        if let Some(key) = sa.init_key.take() {
            if self.init_index.get(&key).map(|r| r.spi) == Some(sa.id.0) {
                self.init_index.remove(&key);
            }
        }
    }

    /// A responder SA stops being half-open: its place in the budget goes
    /// back.
    fn leave_half_open(&mut self, sa: &IkeSa) {
        if let Some(t) = sa.half_open_ticket() {
            self.release_half_open(t);
        }
    }

    fn release_half_open(&mut self, t: Ticket) {
        self.budget.release(t);
        self.half_open = self.half_open.saturating_sub(1);
    }

    /// Advances timers: retransmissions, DPD, rekeys, expiries.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        for spi in spis {
            self.with_sa(spi, now, |ep, sa| ep.sa_timeout(sa, now));
        }
    }

    fn sa_timeout(&mut self, sa: &mut IkeSa, now: Timestamp) {
        let t = self.config.timers.clone();
        let state = sa.state();
        self.fragment_timeouts(sa, now);
        if let Some(o) = &mut sa.outstanding {
            if now >= o.next_retransmit {
                // RFC 7296 §2.4 leaves how long to try to us. A wrong
                // neighbour entry for the peer's next hop looks just like a
                // dead peer, so an established SA first has the next hop
                // resolved afresh and tries one more round; once per
                // silence (until the peer is heard again).
                if o.sent >= t.retransmit_tries
                    && state == State::Established
                    && sa.reresolved_at != Some(sa.last_heard)
                {
                    sa.reresolved_at = Some(sa.last_heard);
                    self.stats.peer_reresolves += 1;
                    self.events.push_back(IkeEvent::PeerUnresponsive {
                        ike: sa.id,
                        remote: sa.remote,
                    });
                    o.sent = 1;
                    o.timeout_ms = t.retransmit_base_ms;
                    o.next_retransmit = now.plus(o.timeout_ms);
                } else if o.sent >= t.retransmit_tries {
                    // §2.21.1: an unprotected error seen while waiting is
                    // the outcome only if nothing genuine came instead.
                    let init_error = match &sa.phase {
                        Phase::InitSent(i) => i.error,
                        Phase::Keyed(_) => None,
                    };
                    let reason = match init_error {
                        Some(e) => DownReason::Negotiation(e),
                        _ => {
                            self.stats.peers_dead += 1;
                            DownReason::PeerDead
                        }
                    };
                    let quiet = sa.goes_quietly();
                    self.remove_sa(sa, (!quiet).then_some(reason));
                    return;
                } else {
                    o.sent += 1;
                    o.timeout_ms *= 2;
                    o.next_retransmit = now.plus(o.timeout_ms);
                    let bytes = o.bytes.clone();
                    self.stats.retransmits += 1;
                    self.send_all(sa, &bytes);
                }
            }
        }
        match sa.state() {
            State::HalfOpen if now >= sa.created.plus(t.half_open_timeout_ms) => {
                self.remove_sa(sa, Some(DownReason::HalfOpenTimeout));
                return;
            }
            State::Rekeyed | State::Deleting if now >= sa.last_heard.plus(LINGER_MS) => {
                self.remove_sa(sa, None);
                return;
            }
            State::Established => {}
            _ => return,
        }
        let Some(life) = sa.lifetime_mut() else {
            return;
        };
        if now >= life.expire_at {
            self.remove_sa(sa, Some(DownReason::Expired));
            return;
        }
        if life.rekey_at.is_some_and(|r| now >= r) {
            life.rekey_at = None;
            if !sa.tasks.contains(&Task::RekeyIke) {
                sa.tasks.push_back(Task::RekeyIke);
            }
        }
        let mut expired = Vec::new();
        for c in &mut sa.children {
            if now >= c.expire_at {
                expired.push(c.keys.inbound_spi);
            } else if c.rekey_at.is_some_and(|r| now >= r) && c.state == ChildState::Installed {
                c.rekey_at = None;
                sa.tasks.push_back(Task::RekeyChild(c.keys.inbound_spi));
            }
        }
        if !expired.is_empty() {
            sa.tasks.push_back(Task::DeleteChildren(expired));
        }
        if t.dpd_interval_ms > 0
            && sa.outstanding.is_none()
            && sa.tasks.is_empty()
            && now >= sa.last_heard.plus(t.dpd_interval_ms)
        {
            sa.tasks.push_back(Task::Dpd);
        }
        self.kick(sa, now);
    }

    /// Sends the next queued request if the window is free.
    fn kick(&mut self, sa: &mut IkeSa, now: Timestamp) {
        while sa.outstanding.is_none() && !sa.removed {
            if !matches!(sa.state(), State::Established | State::Rekeyed) {
                return;
            }
            let Some(task) = sa.tasks.pop_front() else {
                return;
            };
            if sa.state() == State::Rekeyed && !matches!(task, Task::DeleteIke(_)) {
                continue;
            }
            match task {
                Task::Dpd => {
                    self.send_request(sa, ExchangeType::INFORMATIONAL, &[], Request::Dpd, now)
                }
                Task::Redirect(gateway) => self.send_redirect(sa, gateway, now),
                Task::DeleteIke(reason) => {
                    if sa.state() == State::Established {
                        sa.enter(Stage::Deleting);
                    }
                    self.send_request(
                        sa,
                        ExchangeType::INFORMATIONAL,
                        &[Payload::Delete(Delete::ike())],
                        Request::DeleteIke(reason),
                        now,
                    );
                }
                Task::DeleteChildren(spis) => {
                    let mut gone = Vec::new();
                    for spi in spis {
                        if let Some(pos) =
                            sa.children.iter().position(|c| c.keys.inbound_spi == spi)
                        {
                            let c = sa.children.remove(pos);
                            self.emit(IkeEvent::ChildSaDeleted {
                                ike: sa.id,
                                id: c.keys.id,
                                outbound_spi: c.keys.outbound_spi,
                            });
                            gone.push(spi);
                        }
                    }
                    if !gone.is_empty() {
                        self.send_request(
                            sa,
                            ExchangeType::INFORMATIONAL,
                            &[Payload::Delete(Delete::esp(&gone))],
                            Request::DeleteChildren,
                            now,
                        );
                    }
                }
                Task::DeleteRefused(spi) => self.send_request(
                    sa,
                    ExchangeType::INFORMATIONAL,
                    &[Payload::Delete(Delete::esp(&[spi]))],
                    Request::DeleteChildren,
                    now,
                ),
                Task::RekeyChild(old) => self.start_child_rekey(sa, old, now),
                Task::RekeyIke => self.start_ike_rekey(sa, now),
            }
        }
    }

    /// Processes one received IKE datagram (non-ESP marker already removed;
    /// see [`classify_port_4500`]). `local` is the address it arrived on.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.stats.rx_datagrams += 1;
        let hdr = match Header::decode(data) {
            Ok((h, _)) => h,
            Err(e) => {
                self.stats.decode_refused(&e);
                if matches!(e, DecodeError::InvalidMajorVersion(v) if v > 2) {
                    self.answer_major_version(local, remote, data);
                }
                return;
            }
        };
        if hdr.exchange == ExchangeType::IKE_SA_INIT && !hdr.flags.response() {
            if hdr.spi_r == 0 && hdr.message_id == 0 && hdr.flags.initiator() {
                self.on_init_request(now, local, remote, data, &hdr);
            } else {
                self.stats.malformed += 1;
            }
            return;
        }
        let ours = if hdr.flags.initiator() {
            hdr.spi_r
        } else {
            hdr.spi_i
        };
        let Some(sa) = self.sas.get(&ours) else {
            self.stats.unknown_spi += 1;
            return;
        };
        let spis_ok =
            sa.spi_i == hdr.spi_i && (sa.spi_r == hdr.spi_r || sa.state() == State::InitSent);
        if !spis_ok || hdr.flags.initiator() == sa.initiator {
            self.stats.unknown_spi += 1;
            return;
        }
        self.with_sa(ours, now, |ep, sa| {
            ep.on_message(sa, now, local, remote, data, &hdr)
        });
    }

    /// Processes the IKE_AUTH request a sibling template handed over with
    /// its half-open SA (see [`Endpoint::adopt`]).
    pub fn handle_handed(
        &mut self,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        message: HandedMessage,
    ) {
        let ours = message.hdr.spi_r;
        if !self.sas.contains_key(&ours) {
            self.stats.unknown_spi += 1;
            return;
        }
        let HandedMessage { hdr, first, plain } = message;
        self.with_sa(ours, now, |ep, sa| {
            ep.on_plain(sa, now, local, remote, &hdr, first, plain)
        });
    }

    fn plain_response(hdr: &Header, payloads: Vec<Payload>) -> Result<Vec<u8>, EncodeError> {
        Message {
            header: Header {
                spi_r: 0,
                flags: Flags::new(false, true),
                ..*hdr
            },
            payloads,
        }
        .encode()
    }

    /// §2.5, §1.5: a request of a higher major version is answered, outside
    /// any IKE SA, with INVALID_MAJOR_VERSION and no data, our version in
    /// the header, the SPIs, exchange type and Message ID copied, and the
    /// Response flag set. Responses are never answered.
    fn answer_major_version(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Ok((hdr, _, _)) = Header::peek(data) else {
            return;
        };
        if hdr.flags.response() {
            return;
        }
        let answer = Message {
            header: Header {
                flags: Flags::new(false, true),
                ..hdr
            },
            payloads: vec![Payload::Notify(Notify::new(
                NotifyType::INVALID_MAJOR_VERSION,
                vec![],
            ))],
        };
        self.send_plain(local, remote, answer.encode());
    }

    /// Sends an unprotected message, or counts why it could not be encoded.
    fn send_plain(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Result<Vec<u8>, EncodeError>,
    ) {
        let Ok(bytes) = bytes else {
            self.stats.encode_errors += 1;
            return;
        };
        self.stats.tx_datagrams += 1;
        self.transmits.push_back(Transmit {
            local,
            remote,
            non_esp_marker: local.port() == self.config.nat_t_port,
            payload: bytes,
        });
    }

    fn on_message(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        hdr: &Header,
    ) {
        // RFC 7383: an Encrypted Fragment goes to the reassembly; the
        // message it completes comes back through `on_plain`.
        if hdr.exchange != ExchangeType::IKE_SA_INIT {
            if let Ok(Some((_, f))) = crate::message::fragment::decode_skf(data) {
                self.on_fragment(sa, now, local, remote, data, hdr, f);
                return;
            }
        }
        if hdr.flags.response() {
            let Some(o) = &sa.outstanding else {
                self.stats.invalid_message_id += 1;
                return;
            };
            if o.msg_id != hdr.message_id {
                self.stats.invalid_message_id += 1;
                return;
            }
            // §3.1: a response belongs to the exchange of its request.
            if o.request.exchange() != hdr.exchange {
                self.stats.exchange_mismatch += 1;
                return;
            }
            if hdr.exchange == ExchangeType::IKE_SA_INIT {
                self.on_init_response(sa, now, data, hdr);
                return;
            }
        }
        // Everything else is protected by SK (§3.14).
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_refused(&e);
                return;
            }
        };
        let Some(Payload::Encrypted(enc)) = msg.payloads.last() else {
            self.stats.malformed += 1;
            return;
        };
        let Some(Sk { rx, .. }) = sa.sk() else {
            self.stats.malformed += 1;
            return;
        };
        let plain = match rx.open(data, enc.data.len()) {
            Ok(p) => p,
            Err(_) => {
                // §2.21.2: drop silently, only count.
                self.stats.integrity_failures += 1;
                return;
            }
        };
        sa.last_heard = now;
        let first = enc.first_payload;
        self.on_plain(sa, now, local, remote, hdr, first, plain);
    }

    /// An authenticated message's decrypted content (§3.14), from one SK
    /// payload or reassembled from SKF payloads (RFC 7383 §2.6); `first`
    /// is the type of its first payload.
    #[allow(clippy::too_many_arguments)]
    fn on_plain(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        hdr: &Header,
        first: PayloadType,
        plain: Vec<u8>,
    ) {
        // A message that arrived whole replaces any reassembly of itself.
        let slot = sa.frag.slot(hdr.flags.response());
        if slot
            .as_ref()
            .is_some_and(|r| r.message_id == hdr.message_id)
        {
            *slot = None;
        }
        let inner = decode_chain(first, &plain, false);
        if hdr.flags.response() {
            let Some(o) = sa.outstanding.take() else {
                return;
            };
            let ps = match inner {
                Ok(ps) => ps,
                Err(e) => {
                    self.stats.decode_refused(&e);
                    Vec::new()
                }
            };
            self.on_response(sa, now, local, remote, o.request, ps);
            self.kick(sa, now);
            return;
        }
        // A request: window size 1 (§2.3).
        if hdr.message_id != sa.peer_msg_id {
            match &sa.last_response {
                Some((id, _, bytes)) if *id == hdr.message_id => {
                    let bytes = bytes.clone();
                    self.stats.replayed_responses += 1;
                    self.send_all(sa, &bytes);
                }
                _ => self.stats.invalid_message_id += 1,
            }
            return;
        }
        // Before IKE_AUTH completes only IKE_AUTH itself may be processed
        // (§1.2, §2.21.2: errors then travel in the IKE_AUTH response).
        // Dropped without consuming the message ID.
        let authenticated = sa.authenticated();
        if !authenticated && hdr.exchange != ExchangeType::IKE_AUTH {
            self.stats.not_established += 1;
            return;
        }
        // NAT: follow the peer's address once authenticated (§2.23).
        if sa.encap && (sa.remote != remote || sa.local != local) {
            if authenticated {
                self.peer_moved(sa, local, remote);
            } else {
                // The float to port 4500 for IKE_AUTH; no Child SA yet.
                sa.remote = remote;
                sa.local = local;
            }
        }
        // A responder template shares its local address with others and
        // IKE_SA_INIT named no identity: the first IKE_AUTH does. One of a
        // sibling's goes there, unanswered here (see `Template::siblings`).
        if let (false, ExchangeType::IKE_AUTH, Ok(ps)) = (authenticated, hdr.exchange, &inner) {
            if let Some(to) = find_payload!(ps, IdI).and_then(|id| self.sibling_for(id)) {
                self.stats.handoffs += 1;
                self.emit(IkeEvent::Handoff {
                    ike: sa.id,
                    to,
                    local,
                    remote,
                    message: HandedMessage {
                        hdr: *hdr,
                        first,
                        plain: plain.clone(),
                    },
                });
                return;
            }
        }
        let reply = match inner {
            Ok(ps) => self.on_request(sa, now, hdr.exchange, ps),
            Err(e) => {
                self.stats.decode_refused(&e);
                let (ty, d) = IkeError::Decode(e)
                    .notify()
                    .unwrap_or((NotifyType::INVALID_SYNTAX, vec![]));
                Err(vec![Payload::Notify(Notify::new(ty, d))])
            }
        };
        let (payloads, close) = match reply {
            Ok(p) => (p, false),
            Err(p) => (p, sa.state() == State::HalfOpen),
        };
        let rh = Self::header(sa, hdr.exchange, true, hdr.message_id);
        if let Some(bytes) = self.seal(sa, &rh, &payloads) {
            sa.last_response = Some((hdr.message_id, hdr.exchange, bytes.clone()));
            sa.peer_msg_id += 1;
            self.send_all(sa, &bytes);
        }
        if close && !sa.removed {
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
        }
        self.kick(sa, now);
    }

    /// §2.23, RFC 3948: the peer's address or port changed behind a NAT.
    /// The IKE SA follows at once; each Child SA is rekeyed onto the new
    /// addresses (make before break: the old one carries traffic until its
    /// successor is installed). Its outer addresses cannot be changed in
    /// place: a new outbound SA with the same keys would restart the
    /// sequence numbers, and with them the IVs.
    fn peer_moved(&mut self, sa: &mut IkeSa, local: SocketAddr, remote: SocketAddr) {
        sa.remote = remote;
        sa.local = local;
        self.stats.peer_moved += 1;
        self.emit(IkeEvent::PeerMoved {
            ike: sa.id,
            local,
            remote,
        });
        let moved: Vec<u32> = sa
            .children
            .iter()
            .filter(|c| {
                c.state == ChildState::Installed
                    && (c.keys.local_addr, c.keys.remote_addr) != (local, remote)
            })
            .map(|c| c.keys.inbound_spi)
            .collect();
        for spi in moved {
            if !sa.tasks.contains(&Task::RekeyChild(spi)) {
                sa.tasks.push_back(Task::RekeyChild(spi));
            }
        }
    }

    /// A warning naming what the peer offered when nothing was acceptable,
    /// at most one per [`REFUSAL_LOG_INTERVAL_MS`].
    fn log_refused(&mut self, peer: SocketAddr, now: Timestamp, what: &str, offer: &SaPayload) {
        if self
            .refusal_logged_at
            .is_some_and(|t| now < t.plus(REFUSAL_LOG_INTERVAL_MS))
        {
            return;
        }
        self.refusal_logged_at = Some(now);
        tracing::warn!(
            %peer,
            offered = %negotiate::describe_offer(offer),
            "IKE: no acceptable {what} proposal (NO_PROPOSAL_CHOSEN)"
        );
    }

    fn on_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ex: ExchangeType,
        ps: Vec<Payload>,
    ) -> Result<Vec<Payload>, Vec<Payload>> {
        let result = match (ex, sa.state()) {
            (ExchangeType::IKE_AUTH, State::HalfOpen) => self.on_auth_request(sa, now, &ps),
            (ExchangeType::INFORMATIONAL, _) => return Ok(self.on_informational(sa, now, &ps)),
            (ExchangeType::CREATE_CHILD_SA, State::Established) => {
                let ike = ps.iter().any(|p| matches!(p, Payload::Sa(s) if s.proposals.first().is_some_and(|p| p.protocol == ProtocolId::IKE)));
                if ike {
                    self.on_ike_rekey_request(sa, now, &ps)
                } else if let Some(n) = find_notify(&ps, NotifyType::REKEY_SA) {
                    if sa.children.len() >= self.config.limits.max_child_sas {
                        self.stats.child_sa_limit += 1;
                        Err(IkeError::NoAdditionalSas)
                    } else {
                        let n = n.clone();
                        self.on_child_rekey_request(sa, now, &ps, &n)
                    }
                } else {
                    // One Child SA per IKE SA, plus those replacing it.
                    self.stats.child_sa_limit += 1;
                    Err(IkeError::NoAdditionalSas)
                }
            }
            (ExchangeType::CREATE_CHILD_SA, _) => Err(IkeError::TemporaryFailure),
            _ => Err(ProtocolError::UnexpectedExchange.into()),
        };
        result.map_err(|e| {
            self.count_error(&e);
            let (ty, d) = e.notify().unwrap_or((NotifyType::INVALID_SYNTAX, vec![]));
            vec![Payload::Notify(Notify::new(ty, d))]
        })
    }

    /// Counts a refused message by its [`ProtocolError`], if it is one.
    fn count_error(&mut self, e: &IkeError) {
        if let IkeError::Protocol(p) = e {
            self.stats.protocol_errors.count(*p);
        }
    }

    fn on_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        req: Request,
        ps: Vec<Payload>,
    ) {
        let _ = (local, remote);
        match req {
            Request::Init => {}
            Request::Auth { child_spi } => self.on_auth_response(sa, now, child_spi, &ps),
            Request::RekeyChild {
                old,
                new_spi,
                ni,
                dh,
                tsi,
                tsr,
            } => self.on_child_rekey_response(sa, now, old, new_spi, &ni, dh, (&tsi, &tsr), &ps),
            Request::RekeyIke { new_spi, ni, dh } => {
                self.on_ike_rekey_response(sa, now, new_spi, &ni, dh, &ps)
            }
            Request::DeleteChildren | Request::Dpd => {}
            Request::Redirect => self.on_redirect_answered(sa, now),
            Request::DeleteIke(reason) => {
                let quiet = sa.goes_quietly();
                self.remove_sa(sa, (!quiet).then_some(reason));
            }
        }
    }
}
