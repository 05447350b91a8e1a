//! The IKEv2 engine: one [`Endpoint`] per configured peer, holding its IKE
//! SAs. Sans-IO (quinn practice): the driver feeds datagrams and time, and
//! polls for datagrams, the next timeout and events.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::admission::{CookieSecret, HalfOpenBudget, Refusal};
use super::config::{Config, StartAction};
use super::crypto::{
    child_keymat, ct_eq, derive_ike_keys, nat_detection_hash, psk_auth, skeyseed, skeyseed_rekey,
    CryptoError, DhGroup, DhSecret, RngSource, SecretBytes,
};
use super::message::*;
use super::negotiate::{self, Choice, EspChoice};
use super::sa::*;

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
}

/// An error while processing a message, mapped to the wire (§2.21).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IkeError {
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("no proposal chosen")]
    NoProposalChosen,
    #[error("invalid KE payload, want group {0:?}")]
    InvalidKe(DhGroup),
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    #[error("child SA not found")]
    ChildSaNotFound,
    #[error("temporary failure")]
    TemporaryFailure,
    #[error("no additional SAs")]
    NoAdditionalSas,
    #[error("missing or invalid payload: {0}")]
    InvalidSyntax(&'static str),
    #[error("integrity check failed")]
    IntegrityCheckFailed,
}

impl IkeError {
    /// The Notify to answer with, or `None` to drop silently (§2.21.2:
    /// messages failing integrity are dropped without a response).
    pub fn notify(&self) -> Option<(NotifyType, Vec<u8>)> {
        Some(match self {
            IkeError::Decode(DecodeError::UnsupportedCriticalPayload(t)) => {
                (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*t])
            }
            IkeError::Decode(e) => (e.notify(), vec![]),
            IkeError::NoProposalChosen => (NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
            IkeError::InvalidKe(g) => (
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().0.to_be_bytes().to_vec(),
            ),
            IkeError::AuthenticationFailed => (NotifyType::AUTHENTICATION_FAILED, vec![]),
            IkeError::TsUnacceptable => (NotifyType::TS_UNACCEPTABLE, vec![]),
            IkeError::ChildSaNotFound => (NotifyType::CHILD_SA_NOT_FOUND, vec![]),
            IkeError::TemporaryFailure => (NotifyType::TEMPORARY_FAILURE, vec![]),
            IkeError::NoAdditionalSas => (NotifyType::NO_ADDITIONAL_SAS, vec![]),
            IkeError::InvalidSyntax(_) => (NotifyType::INVALID_SYNTAX, vec![]),
            IkeError::IntegrityCheckFailed => return None,
        })
    }
}

impl From<Choice> for IkeError {
    fn from(c: Choice) -> Self {
        match c {
            Choice::NoProposalChosen => IkeError::NoProposalChosen,
            Choice::InvalidKe(g) => IkeError::InvalidKe(g),
        }
    }
}

impl From<CryptoError> for IkeError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::IntegrityCheck => IkeError::IntegrityCheckFailed,
            _ => IkeError::InvalidSyntax("key exchange"),
        }
    }
}

/// The engine.
pub struct Endpoint {
    config: Config,
    rng: Box<dyn RngSource + Send>,
    sas: HashMap<u64, IkeSa>,
    /// (SPIi, peer address) of IKE_SA_INIT requests we answered, for
    /// retransmissions (§2.1).
    init_index: HashMap<(u64, SocketAddr), u64>,
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
            if let Some(t) = sa.half_open.take() {
                self.budget.release(t);
            }
        }
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
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
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
            .filter(|s| {
                matches!(
                    s.state,
                    State::Established | State::Rekeyed | State::Deleting
                )
            })
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
            .filter(|s| s.state == State::Established)
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
        let (suite, keys) = (sa.suite?, sa.keys.as_ref()?);
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
            match sa.state {
                State::HalfOpen => at(sa.created.plus(t.half_open_timeout_ms)),
                State::Rekeyed | State::Deleting => at(sa.last_heard.plus(LINGER_MS)),
                State::Established => {
                    if let Some(r) = sa.rekey_at {
                        at(r);
                    }
                    if let Some(e) = sa.expire_at {
                        at(e);
                    }
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

    fn seal(&mut self, sa: &mut IkeSa, hdr: &Header, payloads: &[Payload]) -> Option<Vec<u8>> {
        let Ok((first, inner)) = encode_chain(payloads) else {
            self.stats.encode_errors += 1;
            return None;
        };
        let tx = sa.tx.as_mut()?;
        match tx.seal(hdr, first, &inner, &mut *self.rng) {
            Ok(b) => Some(b),
            Err(e) => {
                if matches!(e, CryptoError::TooLong(_)) {
                    self.stats.encode_errors += 1;
                }
                None
            }
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
        self.send(sa, bytes.clone());
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

    // ----------------------------------------------------------------------
    // Driver API

    /// Starts an IKE SA with the configured peer (IKE_SA_INIT, §1.2).
    pub fn initiate(&mut self, now: Timestamp) -> IkeSaId {
        let spi = self.random_u64();
        let mut sa = IkeSa::new(
            spi,
            true,
            self.config.local_addr,
            self.config.remote_addr,
            State::InitSent,
            now,
        );
        sa.ni = self.nonce();
        let group = self.config.ike_proposals[0].groups[0];
        self.start_init(&mut sa, group, now);
        let id = sa.id;
        self.sas.insert(spi, sa);
        id
    }

    fn start_init(&mut self, sa: &mut IkeSa, group: DhGroup, now: Timestamp) {
        let Ok((dh, public)) = DhSecret::generate(group, &mut *self.rng) else {
            return;
        };
        sa.dh = Some(dh);
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        payloads.push(Payload::Sa(negotiate::ike_offer(
            &self.config.ike_proposals,
            &[],
        )));
        payloads.push(Payload::Ke(KePayload {
            group: group.id(),
            data: public,
        }));
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(self.nat_notifies(sa.spi_i, 0, sa.local, sa.remote));
        let msg = Message {
            header: Self::header(sa, ExchangeType::IKE_SA_INIT, false, 0),
            payloads,
        };
        let Ok(bytes) = msg.encode() else {
            self.stats.encode_errors += 1;
            return;
        };
        sa.init_request = bytes.clone();
        sa.next_msg_id = 1;
        self.send(sa, bytes.clone());
        let timeout_ms = self.config.timers.retransmit_base_ms;
        sa.outstanding = Some(Outstanding {
            msg_id: 0,
            bytes,
            request: Request::Init,
            sent: 1,
            next_retransmit: now.plus(timeout_ms),
            timeout_ms,
        });
    }

    /// NAT_DETECTION_SOURCE_IP and _DESTINATION_IP (§2.23). With forced
    /// encapsulation the source hash is random so the peer sees a NAT.
    fn nat_notifies(
        &mut self,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Vec<Payload> {
        let src = if self.config.force_encap {
            let mut b = vec![0u8; 20];
            self.rng.fill(&mut b);
            b
        } else {
            nat_detection_hash(spi_i, spi_r, local)
        };
        vec![
            Payload::Notify(Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, src)),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_detection_hash(spi_i, spi_r, remote),
            )),
        ]
    }

    /// True if the received NAT-D notifies show a NAT (or none were sent).
    fn nat_detected(
        ps: &[Payload],
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let src_ok = ps.iter().any(|p| {
            matches!(p, Payload::Notify(n) if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP
                && n.data == nat_detection_hash(spi_i, spi_r, remote))
        });
        let dst = find_notify(ps, NotifyType::NAT_DETECTION_DESTINATION_IP);
        let Some(dst) = dst else { return false };
        let dst_ok = dst.data == nat_detection_hash(spi_i, spi_r, local);
        !(src_ok && dst_ok)
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
            if sa.state == State::Established {
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
        for c in sa.children.drain(..) {
            self.events.push_back(IkeEvent::ChildSaDeleted {
                ike: sa.id,
                id: c.keys.id,
                outbound_spi: c.keys.outbound_spi,
            });
        }
        if let Some(reason) = reason {
            self.events
                .push_back(IkeEvent::IkeSaDown { ike: sa.id, reason });
        }
        sa.removed = true;
        self.leave_half_open(sa);
        if let Some(key) = sa.init_key.take() {
            if self.init_index.get(&key) == Some(&sa.id.0) {
                self.init_index.remove(&key);
            }
        }
    }

    /// A responder SA stops being half-open: its place in the budget goes
    /// back.
    fn leave_half_open(&mut self, sa: &mut IkeSa) {
        if let Some(t) = sa.half_open.take() {
            self.budget.release(t);
            self.half_open = self.half_open.saturating_sub(1);
        }
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
        if let Some(o) = &mut sa.outstanding {
            if now >= o.next_retransmit {
                // RFC 7296 §2.4 leaves how long to try to us. A wrong
                // neighbour entry for the peer's next hop looks just like a
                // dead peer, so an established SA first has the next hop
                // resolved afresh and tries one more round; once per
                // silence (until the peer is heard again).
                if o.sent >= t.retransmit_tries
                    && sa.state == State::Established
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
                    let reason = match (sa.state, sa.init_error) {
                        (State::InitSent, Some(e)) => DownReason::Negotiation(e),
                        _ => {
                            self.stats.peers_dead += 1;
                            DownReason::PeerDead
                        }
                    };
                    let quiet = matches!(sa.state, State::Rekeyed);
                    self.remove_sa(sa, (!quiet).then_some(reason));
                    return;
                } else {
                    o.sent += 1;
                    o.timeout_ms *= 2;
                    o.next_retransmit = now.plus(o.timeout_ms);
                    let bytes = o.bytes.clone();
                    self.stats.retransmits += 1;
                    self.send(sa, bytes);
                }
            }
        }
        match sa.state {
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
        if sa.state != State::Established {
            return;
        }
        if sa.expire_at.is_some_and(|e| now >= e) {
            self.remove_sa(sa, Some(DownReason::Expired));
            return;
        }
        if sa.rekey_at.is_some_and(|r| now >= r) {
            sa.rekey_at = None;
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
            if !matches!(sa.state, State::Established | State::Rekeyed) {
                return;
            }
            let Some(task) = sa.tasks.pop_front() else {
                return;
            };
            if sa.state == State::Rekeyed && !matches!(task, Task::DeleteIke(_)) {
                continue;
            }
            match task {
                Task::Dpd => {
                    self.send_request(sa, ExchangeType::INFORMATIONAL, &[], Request::Dpd, now)
                }
                Task::DeleteIke(reason) => {
                    if sa.state == State::Established {
                        sa.state = State::Deleting;
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

    fn start_child_rekey(&mut self, sa: &mut IkeSa, old: u32, now: Timestamp) {
        let Some(child) = sa.children.iter().find(|c| c.keys.inbound_spi == old) else {
            return;
        };
        if child.state != ChildState::Installed {
            return;
        }
        let (local_ts, remote_ts) = (child.keys.local_ts.clone(), child.keys.remote_ts.clone());
        let new_spi = self.random_child_spi();
        let ni = self.nonce();
        let pfs_group = self.config.esp_proposals[0].pfs_groups.first().copied();
        let pfs = pfs_group.is_some();
        let mut payloads = vec![
            Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: old.to_be_bytes().to_vec(),
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }),
            Payload::Sa(negotiate::esp_offer(
                &self.config.esp_proposals,
                new_spi,
                pfs,
            )),
            Payload::Nonce(ni.clone()),
        ];
        let mut dh = None;
        if let Some(g) = pfs_group {
            let Ok((secret, public)) = DhSecret::generate(g, &mut *self.rng) else {
                return;
            };
            payloads.push(Payload::Ke(KePayload {
                group: g.id(),
                data: public,
            }));
            dh = Some(secret);
        }
        payloads.push(Payload::TsI(local_ts.clone()));
        payloads.push(Payload::TsR(remote_ts.clone()));
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyChild {
                old,
                new_spi,
                ni,
                dh,
                tsi: local_ts,
                tsr: remote_ts,
            },
            now,
        );
    }

    fn start_ike_rekey(&mut self, sa: &mut IkeSa, now: Timestamp) {
        let new_spi = self.random_u64();
        let ni = self.nonce();
        let group = sa
            .suite
            .map_or(self.config.ike_proposals[0].groups[0], |s| s.dh);
        let Ok((dh, public)) = DhSecret::generate(group, &mut *self.rng) else {
            return;
        };
        let payloads = vec![
            Payload::Sa(negotiate::ike_offer(
                &self.config.ike_proposals,
                &new_spi.to_be_bytes(),
            )),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KePayload {
                group: group.id(),
                data: public,
            }),
        ];
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyIke { new_spi, ni, dh },
            now,
        );
    }

    // ----------------------------------------------------------------------
    // Input

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
            sa.spi_i == hdr.spi_i && (sa.spi_r == hdr.spi_r || sa.state == State::InitSent);
        if !spis_ok || hdr.flags.initiator() == sa.initiator {
            self.stats.unknown_spi += 1;
            return;
        }
        self.with_sa(ours, now, |ep, sa| {
            ep.on_message(sa, now, local, remote, data, &hdr)
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

    fn on_init_request(
        &mut self,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        hdr: &Header,
    ) {
        // A retransmitted IKE_SA_INIT gets the same answer (§2.1).
        if let Some(spi) = self.init_index.get(&(hdr.spi_i, remote)).copied() {
            if let Some(sa) = self.sas.get(&spi) {
                if sa.init_request == data {
                    let bytes = sa.init_response.clone();
                    self.stats.replayed_responses += 1;
                    self.send_plain(local, remote, Ok(bytes));
                } else {
                    self.stats.invalid_message_id += 1;
                }
                return;
            }
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_refused(&e);
                if let DecodeError::UnsupportedCriticalPayload(t) = e {
                    let r = Self::plain_response(
                        hdr,
                        vec![Payload::Notify(Notify::new(
                            NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                            vec![t],
                        ))],
                    );
                    self.send_plain(local, remote, r);
                }
                return;
            }
        };
        let ps = &msg.payloads;
        let (Some(sa_p), Some(ke), Some(ni)) = (
            find_payload!(ps, Sa),
            find_payload!(ps, Ke),
            find_payload!(ps, Nonce),
        ) else {
            self.stats.malformed += 1;
            let r = Self::plain_response(
                hdr,
                vec![Payload::Notify(Notify::new(
                    NotifyType::INVALID_SYNTAX,
                    vec![],
                ))],
            );
            self.send_plain(local, remote, r);
            return;
        };
        if ni.len() < 16 || ni.len() > 256 {
            self.stats.malformed += 1;
            return;
        }
        // §2.6: above the threshold (all tunnels' half-open SAs together),
        // demand a cookie first; a valid one proves the source address.
        if self.cookies.rotate(&mut *self.rng, now) {
            self.stats.cookie_secret_rotations += 1;
        }
        let got = msg.notify(NotifyType::COOKIE).map(|n| n.data.as_slice());
        let proven = got.is_some_and(|c| self.cookies.check(c, ni, remote.ip(), hdr.spi_i));
        if got.is_some() && !proven {
            self.stats.cookies_invalid += 1;
        }
        if !proven && self.budget.total() >= self.config.cookie_threshold {
            let want = self.cookies.make(ni, remote.ip(), hdr.spi_i);
            self.stats.cookies_sent += 1;
            let r = Self::plain_response(
                hdr,
                vec![Payload::Notify(Notify::new(NotifyType::COOKIE, want))],
            );
            self.send_plain(local, remote, r);
            return;
        }
        // RFC 8019 §4.2: a bounded number of half-open SAs per proven
        // source and in all; beyond them the request is dropped (answering
        // would cost as much as the attacker spends), before any
        // Diffie-Hellman work.
        let (per_source, max) = (self.config.half_open_per_source, self.config.half_open_max);
        let admitted = self.budget.acquire(remote.ip(), proven, per_source, max);
        let ticket = match admitted {
            Ok(t) => t,
            Err(Refusal::PerSource) => {
                self.stats.half_open_refused_per_source += 1;
                return;
            }
            Err(Refusal::Global) => {
                self.stats.half_open_refused_max += 1;
                return;
            }
        };
        // Released again below unless the SA is made.
        let mut ticket = Some(ticket);
        let mut give_back = |ep: &mut Self| {
            if let Some(t) = ticket.take() {
                ep.budget.release(t);
            }
        };
        let (reply_sa, suite) =
            match negotiate::choose_ike(&self.config.ike_proposals, sa_p, ke.group, &[]) {
                Ok(x) => x,
                Err(c) => {
                    give_back(self);
                    let e = IkeError::from(c);
                    match e {
                        IkeError::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                        _ => {
                            self.stats.no_proposal_chosen += 1;
                            self.log_refused(remote, now, "IKE SA", sa_p);
                        }
                    }
                    if let Some((ty, d)) = e.notify() {
                        let r =
                            Self::plain_response(hdr, vec![Payload::Notify(Notify::new(ty, d))]);
                        self.send_plain(local, remote, r);
                    }
                    return;
                }
            };
        let Ok((dh, public)) = DhSecret::generate(suite.dh, &mut *self.rng) else {
            give_back(self);
            return;
        };
        let Ok(g_ir) = dh.agree(&ke.data) else {
            give_back(self);
            self.stats.malformed += 1;
            let r = Self::plain_response(
                hdr,
                vec![Payload::Notify(Notify::new(
                    NotifyType::INVALID_SYNTAX,
                    vec![],
                ))],
            );
            self.send_plain(local, remote, r);
            return;
        };
        let spi_r = self.random_u64();
        let mut sa = IkeSa::new(spi_r, false, local, remote, State::HalfOpen, now);
        sa.half_open = ticket.take().map(|mut t| {
            self.budget.bind(&mut t, spi_r);
            t
        });
        self.half_open += 1;
        sa.init_key = Some((hdr.spi_i, remote));
        sa.spi_i = hdr.spi_i;
        sa.ni = ni.clone();
        sa.nr = self.nonce();
        let nat = Self::nat_detected(ps, hdr.spi_i, 0, local, remote);
        sa.encap = nat || self.config.force_encap;
        let seed = skeyseed(suite.prf, &sa.ni, &sa.nr, &g_ir);
        let keys = derive_ike_keys(&suite, &seed, &sa.ni, &sa.nr, sa.spi_i, sa.spi_r);
        sa.set_keys(suite, keys);
        let mut payloads = vec![
            Payload::Sa(reply_sa),
            Payload::Ke(KePayload {
                group: suite.dh.id(),
                data: public,
            }),
            Payload::Nonce(sa.nr.clone()),
        ];
        payloads.extend(self.nat_notifies(sa.spi_i, sa.spi_r, local, remote));
        let Ok(resp) = (Message {
            header: Self::header(&sa, ExchangeType::IKE_SA_INIT, true, 0),
            payloads,
        })
        .encode() else {
            self.stats.encode_errors += 1;
            return;
        };
        sa.init_request = data.to_vec();
        sa.init_response = resp.clone();
        sa.peer_msg_id = 1;
        sa.last_response = Some((0, ExchangeType::IKE_SA_INIT, resp.clone()));
        self.send(&sa, resp);
        self.init_index.insert((hdr.spi_i, remote), spi_r);
        self.sas.insert(spi_r, sa);
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
        let Some(rx) = sa.rx.as_ref() else {
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
        let inner = decode_chain(enc.first_payload, &plain, false);
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
                    self.send(sa, bytes);
                }
                _ => self.stats.invalid_message_id += 1,
            }
            return;
        }
        // Before IKE_AUTH completes only IKE_AUTH itself may be processed
        // (§1.2, §2.21.2: errors then travel in the IKE_AUTH response).
        // Dropped without consuming the message ID.
        let authenticated = matches!(
            sa.state,
            State::Established | State::Rekeyed | State::Deleting
        );
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
            Err(p) => (p, sa.state == State::HalfOpen),
        };
        let rh = Self::header(sa, hdr.exchange, true, hdr.message_id);
        if let Some(bytes) = self.seal(sa, &rh, &payloads) {
            sa.last_response = Some((hdr.message_id, hdr.exchange, bytes.clone()));
            sa.peer_msg_id += 1;
            self.send(sa, bytes);
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

    fn on_init_response(&mut self, sa: &mut IkeSa, now: Timestamp, data: &[u8], hdr: &Header) {
        if sa.state != State::InitSent {
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_refused(&e);
                return;
            }
        };
        let ps = &msg.payloads;
        // Nothing in this response is authenticated (§2.21.1): COOKIE and
        // INVALID_KE_PAYLOAD restart the attempt a bounded number of times,
        // other errors are remembered while we keep waiting (and
        // retransmitting) for a genuine response until the usual timeout.
        let restarts_left = sa.init_restarts < MAX_INIT_RESTARTS;
        if let Some(c) = msg.notify(NotifyType::COOKIE) {
            if restarts_left && (1..=MAX_COOKIE_LEN).contains(&c.data.len()) {
                // §2.6: retry with the cookie first, everything else unchanged.
                sa.init_restarts += 1;
                sa.cookie = Some(c.data.clone());
                let group = sa
                    .dh
                    .as_ref()
                    .map_or(self.config.ike_proposals[0].groups[0], |d| d.group());
                self.start_init(sa, group, now);
            } else {
                self.stats.init_errors_ignored += 1;
            }
            return;
        }
        if let Some(n) = msg.notify(NotifyType::INVALID_KE_PAYLOAD) {
            // §1.2: retry with the group the responder asked for, if it is
            // one we proposed and not the one we just used.
            let wanted = (n.data.len() == 2)
                .then(|| DhGroupId(u16::from_be_bytes([n.data[0], n.data[1]])))
                .and_then(DhGroup::from_id);
            let current = sa.dh.as_ref().map(|d| d.group());
            let ours = self
                .config
                .ike_proposals
                .iter()
                .any(|p| wanted.is_some_and(|w| p.groups.contains(&w)));
            match wanted {
                Some(g) if ours && wanted != current && restarts_left => {
                    sa.init_restarts += 1;
                    self.start_init(sa, g, now);
                }
                _ => {
                    self.stats.init_errors_ignored += 1;
                    sa.init_error = Some(NotifyType::INVALID_KE_PAYLOAD);
                }
            }
            return;
        }
        if let Some(err) = first_error(ps) {
            self.stats.init_errors_ignored += 1;
            sa.init_error = Some(err);
            return;
        }
        let parsed = (|| {
            let sa_p = find_payload!(ps, Sa)?;
            let ke = find_payload!(ps, Ke)?;
            let nr = find_payload!(ps, Nonce)?;
            let (suite, _) = negotiate::accept_ike(&self.config.ike_proposals, sa_p)?;
            (Some(suite.dh) == sa.dh.as_ref().map(|d| d.group()) && ke.group == suite.dh.id())
                .then(|| (suite, ke.data.clone(), nr.clone()))
        })();
        let Some((suite, ke, nr)) = parsed else {
            self.stats.malformed += 1;
            return;
        };
        if !nonce_ok(&nr) {
            self.stats.bad_nonce += 1;
            return;
        }
        let Some(Ok(g_ir)) = sa.dh.as_ref().map(|d| d.agree(&ke)) else {
            self.stats.malformed += 1;
            return;
        };
        sa.outstanding = None;
        sa.dh = None;
        sa.spi_r = hdr.spi_r;
        sa.nr = nr;
        sa.init_response = data.to_vec();
        let nat = Self::nat_detected(ps, sa.spi_i, sa.spi_r, sa.local, sa.remote);
        sa.encap = nat || self.config.force_encap;
        if sa.encap {
            // §2.23: float to port 4500 for IKE_AUTH.
            sa.local.set_port(self.config.nat_t_port);
            sa.remote.set_port(self.config.nat_t_port);
        }
        let seed = skeyseed(suite.prf, &sa.ni, &sa.nr, &g_ir);
        let keys = derive_ike_keys(&suite, &seed, &sa.ni, &sa.nr, sa.spi_i, sa.spi_r);
        sa.set_keys(suite, keys);
        sa.last_heard = now;
        // IKE_AUTH (§1.2).
        let child_spi = self.random_child_spi();
        let id_i = self.config.local_id.clone();
        let auth = self.auth_value(sa, &id_i, true);
        let payloads = vec![
            Payload::IdI(id_i),
            Payload::IdR(self.config.remote_id.clone()),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: auth.to_vec(),
            }),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::Sa(negotiate::esp_offer(
                &self.config.esp_proposals,
                child_spi,
                false,
            )),
            Payload::TsI(self.config.local_ts.clone()),
            Payload::TsR(self.config.remote_ts.clone()),
        ];
        sa.state = State::AuthSent;
        self.send_request(
            sa,
            ExchangeType::IKE_AUTH,
            &payloads,
            Request::Auth { child_spi },
            now,
        );
    }

    /// AUTH over our signed octets (`ours`) or the value expected from the
    /// peer, §2.15.
    fn auth_value(&self, sa: &IkeSa, id: &Identification, ours: bool) -> SecretBytes {
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return SecretBytes::new(Vec::new());
        };
        // The signer is the initiator if (ours == sa.initiator).
        let signer_is_initiator = ours == sa.initiator;
        let (msg, nonce, sk_p) = if signer_is_initiator {
            (&sa.init_request, &sa.nr, &keys.sk_pi)
        } else {
            (&sa.init_response, &sa.ni, &keys.sk_pr)
        };
        psk_auth(suite.prf, &self.config.psk, msg, nonce, sk_p, &id.body())
    }

    /// §2.9: a responder's TSi/TSr must lie within what we offered; and
    /// within our limits. Counts a refusal.
    fn reply_ts_ok(
        &mut self,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        offered_i: &[TrafficSelector],
        offered_r: &[TrafficSelector],
    ) -> bool {
        if !self.ts_within_limits(tsi, tsr) {
            return false;
        }
        let ok = negotiate::is_subset(tsi, offered_i) && negotiate::is_subset(tsr, offered_r);
        if !ok {
            self.stats.ts_unacceptable += 1;
        }
        ok
    }

    /// Whether a Child SA's selectors stay within the configured count and
    /// the number of data-plane selectors they expand to. Counts a refusal.
    fn ts_within_limits(&mut self, local: &[TrafficSelector], remote: &[TrafficSelector]) -> bool {
        let l = &self.config.limits;
        let ok = local.len() <= l.max_traffic_selectors
            && remote.len() <= l.max_traffic_selectors
            && negotiate::selector_count(local, remote) <= l.max_selectors;
        if !ok {
            self.stats.ts_over_limit += 1;
        }
        ok
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

    #[allow(clippy::too_many_arguments)]
    fn make_child(
        &mut self,
        sa: &IkeSa,
        now: Timestamp,
        inbound_spi: u32,
        choice: &EspChoice,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        we_initiated: bool,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> Option<ChildSa> {
        let (suite, keys) = (sa.suite?, sa.keys.as_ref()?);
        let (i2r, r2i) = child_keymat(suite.prf, &keys.sk_d, g_ir, ni, nr, &choice.algorithm);
        let (inbound, outbound) = if we_initiated { (r2i, i2r) } else { (i2r, r2i) };
        let lifetime = self.config.timers.child_lifetime_ms;
        let rekey_at = self.rekey_time(now, lifetime);
        Some(ChildSa {
            keys: ChildSaKeys {
                id: ChildSaId(inbound_spi),
                ike: sa.id,
                inbound_spi,
                outbound_spi: choice.peer_spi,
                algorithm: choice.algorithm,
                inbound,
                outbound,
                local_ts,
                remote_ts,
                local_addr: sa.local,
                remote_addr: sa.remote,
                udp_encap: sa.encap.then_some(UdpEncap {
                    local_port: sa.local.port(),
                    remote_port: sa.remote.port(),
                }),
                esn: false,
            },
            state: ChildState::Installed,
            rekey_at: Some(rekey_at),
            expire_at: now.plus(lifetime),
            replaced_by: None,
        })
    }

    fn established(&mut self, sa: &mut IkeSa, now: Timestamp) {
        sa.state = State::Established;
        self.leave_half_open(sa);
        let l = self.config.timers.ike_lifetime_ms;
        sa.rekey_at = Some(self.rekey_time(now, l));
        sa.expire_at = Some(now.plus(l));
        self.stats.ike_sa_established += 1;
        self.emit(IkeEvent::IkeSaUp {
            ike: sa.id,
            local: sa.local,
            remote: sa.remote,
        });
    }

    // ----------------------------------------------------------------------
    // Requests from the peer

    fn on_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ex: ExchangeType,
        ps: Vec<Payload>,
    ) -> Result<Vec<Payload>, Vec<Payload>> {
        let err = |e: IkeError| {
            let (ty, d) = e.notify().unwrap_or((NotifyType::INVALID_SYNTAX, vec![]));
            vec![Payload::Notify(Notify::new(ty, d))]
        };
        match (ex, sa.state) {
            (ExchangeType::IKE_AUTH, State::HalfOpen) => {
                self.on_auth_request(sa, now, &ps).map_err(err)
            }
            (ExchangeType::INFORMATIONAL, _) => Ok(self.on_informational(sa, now, &ps)),
            (ExchangeType::CREATE_CHILD_SA, State::Established) => {
                let ike = ps.iter().any(|p| matches!(p, Payload::Sa(s) if s.proposals.first().is_some_and(|p| p.protocol == ProtocolId::IKE)));
                if ike {
                    self.on_ike_rekey_request(sa, now, &ps).map_err(err)
                } else if let Some(n) = find_notify(&ps, NotifyType::REKEY_SA) {
                    if sa.children.len() >= self.config.limits.max_child_sas {
                        self.stats.child_sa_limit += 1;
                        return Err(err(IkeError::NoAdditionalSas));
                    }
                    let n = n.clone();
                    self.on_child_rekey_request(sa, now, &ps, &n).map_err(err)
                } else {
                    // One Child SA per IKE SA, plus those replacing it.
                    self.stats.child_sa_limit += 1;
                    Err(err(IkeError::NoAdditionalSas))
                }
            }
            (ExchangeType::CREATE_CHILD_SA, _) => Err(err(IkeError::TemporaryFailure)),
            _ => Err(err(IkeError::InvalidSyntax("unexpected exchange"))),
        }
    }

    fn on_auth_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let id_i = find_payload!(ps, IdI).ok_or(IkeError::InvalidSyntax("IDi"))?;
        let auth = find_payload!(ps, Auth).ok_or(IkeError::InvalidSyntax("AUTH"))?;
        let expected = self.auth_value(sa, id_i, false);
        if *id_i != self.config.remote_id
            || auth.method != AuthMethod::SHARED_KEY_MIC
            || !ct_eq(&auth.data, &expected)
        {
            self.stats.auth_failures += 1;
            return Err(IkeError::AuthenticationFailed);
        }
        self.established(sa, now);
        if find_notify(ps, NotifyType::INITIAL_CONTACT).is_some() {
            // §2.4: the peer has no other SAs with us any more.
            let others: Vec<u64> = self.sas.keys().copied().collect();
            for spi in others {
                // Only authenticated SAs with this peer; half-open ones are not.
                self.with_sa(spi, now, |ep, o| {
                    if matches!(
                        o.state,
                        State::Established | State::Rekeyed | State::Deleting
                    ) {
                        ep.remove_sa(o, Some(DownReason::Replaced));
                    }
                });
            }
        }
        let id_r = self.config.local_id.clone();
        let auth = self.auth_value(sa, &id_r, true);
        let mut out = vec![
            Payload::IdR(id_r),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: auth.to_vec(),
            }),
        ];
        match self.child_from_request(sa, now, ps, false) {
            Ok((child, mut extra)) => {
                self.stats.child_sa_established += 1;
                self.emit(IkeEvent::ChildSaUp(child.keys.clone()));
                sa.children.push(child);
                out.append(&mut extra);
            }
            Err(e) => {
                if let Some((ty, d)) = e.notify() {
                    out.push(Payload::Notify(Notify::new(ty, d)));
                }
            }
        }
        Ok(out)
    }

    /// Responder side of a Child SA (IKE_AUTH or CREATE_CHILD_SA): select,
    /// narrow, derive. Returns the child and the SA/Nr/KE/TS payloads.
    fn child_from_request(
        &mut self,
        sa: &IkeSa,
        now: Timestamp,
        ps: &[Payload],
        create_child: bool,
    ) -> Result<(ChildSa, Vec<Payload>), IkeError> {
        let offer = find_payload!(ps, Sa).ok_or(IkeError::InvalidSyntax("SA"))?;
        let tsi = find_payload!(ps, TsI).ok_or(IkeError::InvalidSyntax("TSi"))?;
        let tsr = find_payload!(ps, TsR).ok_or(IkeError::InvalidSyntax("TSr"))?;
        let ke = find_payload!(ps, Ke);
        if create_child && !find_payload!(ps, Nonce).is_some_and(|n| nonce_ok(n)) {
            self.stats.bad_nonce += 1;
            return Err(IkeError::InvalidSyntax("Ni"));
        }
        let our_spi = self.random_child_spi();
        let (reply, choice) = match negotiate::choose_esp(
            &self.config.esp_proposals,
            offer,
            create_child,
            ke.map(|k| k.group),
            our_spi,
        ) {
            Ok(x) => x,
            Err(c) => {
                match c {
                    Choice::NoProposalChosen => {
                        self.stats.child_no_proposal_chosen += 1;
                        self.log_refused(sa.remote, now, "Child SA", offer);
                    }
                    Choice::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                }
                return Err(c.into());
            }
        };
        let max = self.config.limits.max_traffic_selectors;
        if tsi.len() > max || tsr.len() > max {
            self.stats.ts_over_limit += 1;
            return Err(IkeError::TsUnacceptable);
        }
        // §2.9: TSi are the initiator's (our remote) selectors.
        let remote_ts = negotiate::narrow(tsi, &self.config.remote_ts);
        let local_ts = negotiate::narrow(tsr, &self.config.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            self.stats.ts_unacceptable += 1;
            return Err(IkeError::TsUnacceptable);
        }
        if !self.ts_within_limits(&local_ts, &remote_ts) {
            return Err(IkeError::TsUnacceptable);
        }
        let mut out = vec![Payload::Sa(reply)];
        let (ni, nr) = if create_child {
            let ni = find_payload!(ps, Nonce)
                .ok_or(IkeError::InvalidSyntax("Ni"))?
                .clone();
            (ni, self.nonce())
        } else {
            (sa.ni.clone(), sa.nr.clone())
        };
        let mut g_ir = None;
        if create_child {
            out.push(Payload::Nonce(nr.clone()));
            if let (Some(g), Some(ke)) = (choice.pfs, ke) {
                let (dh, public) = DhSecret::generate(g, &mut *self.rng)?;
                g_ir = Some(dh.agree(&ke.data)?);
                out.push(Payload::Ke(KePayload {
                    group: g.id(),
                    data: public,
                }));
            }
        }
        out.push(Payload::TsI(remote_ts.clone()));
        out.push(Payload::TsR(local_ts.clone()));
        let child = self
            .make_child(
                sa,
                now,
                our_spi,
                &choice,
                g_ir.as_deref(),
                &ni,
                &nr,
                false,
                local_ts,
                remote_ts,
            )
            .ok_or(IkeError::InvalidSyntax("keys"))?;
        Ok((child, out))
    }

    fn on_child_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
        n: &Notify,
    ) -> Result<Vec<Payload>, IkeError> {
        let old_out = <[u8; 4]>::try_from(n.spi.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| IkeError::InvalidSyntax("REKEY_SA SPI"))?;
        let old = sa
            .children
            .iter()
            .find(|c| c.keys.outbound_spi == old_out)
            .ok_or(IkeError::ChildSaNotFound)?;
        if old.state != ChildState::Installed {
            // §2.25: rekeying an SA we are closing.
            return Err(IkeError::TemporaryFailure);
        }
        let old_in = old.keys.inbound_spi;
        let (mut child, out) = self.child_from_request(sa, now, ps, true)?;
        let ni = find_payload!(ps, Nonce).cloned().unwrap_or_default();
        let nr = find_payload!(out, Nonce).cloned().unwrap_or_default();
        let colliding = matches!(&sa.outstanding, Some(Outstanding { request: Request::RekeyChild { old, .. }, .. }) if *old == old_in);
        sa.tasks.retain(|t| *t != Task::RekeyChild(old_in));
        if colliding {
            sa.child_collisions.insert(
                old_in,
                Collision {
                    new: child.keys.inbound_spi,
                    ni,
                    nr,
                },
            );
        } else if let Some(c) = sa.child_by_inbound(old_in) {
            c.state = ChildState::Rekeyed;
            c.rekey_at = None;
            c.replaced_by = Some(child.keys.inbound_spi);
        }
        child.keys.ike = sa.id;
        self.stats.child_sa_established += 1;
        self.emit(IkeEvent::ChildSaRekeyed {
            old: ChildSaId(old_in),
            new: child.keys.clone(),
        });
        sa.children.push(child);
        Ok(out)
    }

    fn on_ike_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let offer = find_payload!(ps, Sa).ok_or(IkeError::InvalidSyntax("SA"))?;
        let ke = find_payload!(ps, Ke).ok_or(IkeError::InvalidSyntax("KE"))?;
        let ni = find_payload!(ps, Nonce)
            .ok_or(IkeError::InvalidSyntax("Ni"))?
            .clone();
        if !nonce_ok(&ni) {
            self.stats.bad_nonce += 1;
            return Err(IkeError::InvalidSyntax("Ni"));
        }
        let new_spi = self.random_u64();
        let (reply, suite) = match negotiate::choose_ike(
            &self.config.ike_proposals,
            offer,
            ke.group,
            &new_spi.to_be_bytes(),
        ) {
            Ok(x) => x,
            Err(c) => {
                match c {
                    Choice::NoProposalChosen => {
                        self.stats.no_proposal_chosen += 1;
                        self.log_refused(sa.remote, now, "IKE SA rekey", offer);
                    }
                    Choice::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                }
                return Err(c.into());
            }
        };
        let their_spi = offer
            .proposals
            .iter()
            .find(|p| p.number == reply.proposals[0].number)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
            .ok_or(IkeError::InvalidSyntax("IKE SPI"))?;
        let (dh, public) = DhSecret::generate(suite.dh, &mut *self.rng)?;
        let g_ir = dh.agree(&ke.data)?;
        let nr = self.nonce();
        let mut new = self.rekeyed_sa(sa, now, suite, &g_ir, &ni, &nr, their_spi, new_spi, false);
        let colliding = matches!(
            &sa.outstanding,
            Some(Outstanding {
                request: Request::RekeyIke { .. },
                ..
            })
        );
        sa.tasks.retain(|t| *t != Task::RekeyIke);
        if colliding {
            sa.ike_collision = Some(Collision {
                new: new_spi,
                ni,
                nr: nr.clone(),
            });
        } else {
            self.move_children(sa, &mut new);
            sa.state = State::Rekeyed;
            self.emit(IkeEvent::IkeSaRekeyed {
                old: sa.id,
                new: new.id,
            });
        }
        self.sas.insert(new_spi, new);
        Ok(vec![
            Payload::Sa(reply),
            Payload::Nonce(nr),
            Payload::Ke(KePayload {
                group: suite.dh.id(),
                data: public,
            }),
        ])
    }

    /// The IKE SA that replaces `old` (§2.18). The rekey initiator is the
    /// new SA's original initiator.
    #[allow(clippy::too_many_arguments)]
    fn rekeyed_sa(
        &mut self,
        old: &IkeSa,
        now: Timestamp,
        suite: crate::crypto::IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        we_initiated: bool,
    ) -> IkeSa {
        let (old_prf, old_sk_d) = match (old.suite, old.keys.as_ref()) {
            (Some(s), Some(k)) => (s.prf, k.sk_d.clone()),
            _ => (suite.prf, SecretBytes::new(Vec::new())),
        };
        let seed = skeyseed_rekey(old_prf, &old_sk_d, g_ir, ni, nr);
        let keys = derive_ike_keys(&suite, &seed, ni, nr, spi_i, spi_r);
        let ours = if we_initiated { spi_i } else { spi_r };
        let mut new = IkeSa::new(
            ours,
            we_initiated,
            old.local,
            old.remote,
            State::Established,
            now,
        );
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.ni = ni.to_vec();
        new.nr = nr.to_vec();
        new.encap = old.encap;
        new.set_keys(suite, keys);
        let l = self.config.timers.ike_lifetime_ms;
        new.rekey_at = Some(self.rekey_time(now, l));
        new.expire_at = Some(now.plus(l));
        new
    }

    fn move_children(&mut self, from: &mut IkeSa, to: &mut IkeSa) {
        for mut c in from.children.drain(..) {
            c.keys.ike = to.id;
            to.children.push(c);
        }
    }

    fn on_informational(&mut self, sa: &mut IkeSa, now: Timestamp, ps: &[Payload]) -> Vec<Payload> {
        let mut ours = Vec::new();
        for p in ps {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                ProtocolId::IKE => {
                    // Deleting an IKE SA that has been rekeyed with a
                    // collision: the children belong to the surviving SA.
                    if let Some(col) = sa.ike_collision.take() {
                        if let Some(mut held) = self.sas.remove(&col.new) {
                            self.move_children(sa, &mut held);
                            self.emit(IkeEvent::IkeSaRekeyed {
                                old: sa.id,
                                new: held.id,
                            });
                            self.sas.insert(col.new, held);
                        }
                    }
                    let quiet = sa.state == State::Rekeyed;
                    let reason = (!quiet).then_some(DownReason::DeletedByPeer);
                    self.remove_sa(sa, reason);
                    return Vec::new();
                }
                ProtocolId::ESP | ProtocolId::AH => {
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                            continue;
                        };
                        let out_spi = u32::from_be_bytes(b);
                        if let Some(pos) = sa
                            .children
                            .iter()
                            .position(|c| c.keys.outbound_spi == out_spi)
                        {
                            let c = sa.children.remove(pos);
                            // The peer deleted the Child SA that replaced
                            // one of ours in its rekey (refusing our reply):
                            // the old one carries on and is rekeyed again.
                            let gone = c.keys.inbound_spi;
                            if let Some(o) = sa.children.iter_mut().find(|o| {
                                o.state == ChildState::Rekeyed && o.replaced_by == Some(gone)
                            }) {
                                o.state = ChildState::Installed;
                                o.replaced_by = None;
                                o.rekey_at = Some(now.plus(2 * REKEY_RETRY_MS));
                            }
                            // §1.4.1: answer with our half unless we are
                            // already deleting it ourselves.
                            let ours_pending = sa.tasks.iter().any(|t| matches!(t, Task::DeleteChildren(v) if v.contains(&c.keys.inbound_spi)));
                            if !ours_pending {
                                ours.push(c.keys.inbound_spi);
                            }
                            sa.tasks
                                .retain(|t| *t != Task::RekeyChild(c.keys.inbound_spi));
                            self.emit(IkeEvent::ChildSaDeleted {
                                ike: sa.id,
                                id: c.keys.id,
                                outbound_spi: c.keys.outbound_spi,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete::esp(&ours))]
        }
    }

    // ----------------------------------------------------------------------
    // Responses to our requests

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
            Request::DeleteIke(reason) => {
                let quiet = sa.state == State::Rekeyed;
                self.remove_sa(sa, (!quiet).then_some(reason));
            }
        }
    }

    fn on_auth_response(&mut self, sa: &mut IkeSa, now: Timestamp, child_spi: u32, ps: &[Payload]) {
        let id_r = find_payload!(ps, IdR);
        let auth = find_payload!(ps, Auth);
        let (Some(id_r), Some(auth)) = (id_r, auth) else {
            let reason = first_error(ps).map_or(DownReason::AuthenticationFailed, |n| {
                if n == NotifyType::AUTHENTICATION_FAILED {
                    DownReason::AuthenticationFailed
                } else {
                    DownReason::Negotiation(n)
                }
            });
            self.stats.auth_failures += 1;
            self.remove_sa(sa, Some(reason));
            return;
        };
        let expected = self.auth_value(sa, id_r, false);
        if *id_r != self.config.remote_id
            || auth.method != AuthMethod::SHARED_KEY_MIC
            || !ct_eq(&auth.data, &expected)
        {
            self.stats.auth_failures += 1;
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
            return;
        }
        self.established(sa, now);
        let reply = find_payload!(ps, Sa);
        let mut ts_refused = false;
        let child = match (reply, find_payload!(ps, TsI), find_payload!(ps, TsR)) {
            (Some(reply), Some(tsi), Some(tsr)) => {
                let choice = negotiate::accept_esp(&self.config.esp_proposals, reply, false);
                let offered = (self.config.local_ts.clone(), self.config.remote_ts.clone());
                match choice {
                    Some(c) if self.reply_ts_ok(tsi, tsr, &offered.0, &offered.1) => {
                        Some((c, tsi.clone(), tsr.clone()))
                    }
                    Some(_) => {
                        ts_refused = true;
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if child.is_none() && reply.is_some() {
            // §2.9: the responder installed a Child SA we refuse; delete it.
            sa.tasks.push_back(Task::DeleteRefused(child_spi));
        }
        match child {
            Some((choice, tsi, tsr)) => {
                let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
                if let Some(c) =
                    self.make_child(sa, now, child_spi, &choice, None, &ni, &nr, true, tsi, tsr)
                {
                    self.stats.child_sa_established += 1;
                    self.emit(IkeEvent::ChildSaUp(c.keys.clone()));
                    sa.children.push(c);
                }
            }
            None => {
                let notify = if ts_refused {
                    NotifyType::TS_UNACCEPTABLE
                } else {
                    first_error(ps).unwrap_or(NotifyType::NO_PROPOSAL_CHOSEN)
                };
                self.emit(IkeEvent::ChildSaFailed { ike: sa.id, notify });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_child_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        old: u32,
        new_spi: u32,
        ni: &[u8],
        dh: Option<DhSecret>,
        offered: (&[TrafficSelector], &[TrafficSelector]),
        ps: &[Payload],
    ) {
        let collision = sa.child_collisions.remove(&old);
        let parsed = (|| {
            let reply = find_payload!(ps, Sa)?;
            let nr = find_payload!(ps, Nonce)?;
            let tsi = find_payload!(ps, TsI)?;
            let tsr = find_payload!(ps, TsR)?;
            let choice = negotiate::accept_esp(&self.config.esp_proposals, reply, dh.is_some())?;
            let g_ir = match (&dh, choice.pfs) {
                (Some(d), Some(g)) if d.group() == g => {
                    let ke = find_payload!(ps, Ke)?;
                    Some(d.agree(&ke.data).ok()?)
                }
                (None, None) => None,
                _ => return None,
            };
            Some((choice, nr.clone(), g_ir, tsi.clone(), tsr.clone()))
        })();
        let accepted = match parsed {
            Some(x) if !nonce_ok(&x.1) => {
                self.stats.bad_nonce += 1;
                None
            }
            // §2.9: the responder may only narrow what we offered.
            Some(x) if !self.reply_ts_ok(&x.3, &x.4, offered.0, offered.1) => None,
            other => other,
        };
        let Some((choice, nr, g_ir, tsi, tsr)) = accepted else {
            if find_payload!(ps, Sa).is_some() {
                // The responder installed a Child SA we refuse: delete it
                // and keep the old one.
                sa.tasks.push_back(Task::DeleteRefused(new_spi));
            }
            // Refused (e.g. TEMPORARY_FAILURE after a collision, §2.25).
            if collision.is_none() {
                if let Some(c) = sa.child_by_inbound(old) {
                    if c.state == ChildState::Installed {
                        c.rekey_at = Some(now.plus(REKEY_RETRY_MS));
                    }
                }
            }
            return;
        };
        let Some(child) = self.make_child(
            sa,
            now,
            new_spi,
            &choice,
            g_ir.as_deref(),
            ni,
            &nr,
            true,
            tsi,
            tsr,
        ) else {
            return;
        };
        self.stats.child_sa_established += 1;
        let old_exists = sa.children.iter().any(|c| c.keys.inbound_spi == old);
        if old_exists {
            self.emit(IkeEvent::ChildSaRekeyed {
                old: ChildSaId(old),
                new: child.keys.clone(),
            });
        } else {
            self.emit(IkeEvent::ChildSaUp(child.keys.clone()));
        }
        sa.children.push(child);
        match collision {
            // §2.8.1: the exchange with the lowest nonce loses; its
            // initiator deletes the SA it created, the winner the old one.
            Some(col) if lowest_loses(ni, &nr, &col.ni, &col.nr) => {
                if let Some(c) = sa.child_by_inbound(new_spi) {
                    c.state = ChildState::Rekeyed;
                }
                if let Some(c) = sa.child_by_inbound(old) {
                    c.state = ChildState::Rekeyed;
                    c.rekey_at = None;
                }
                sa.tasks.push_back(Task::DeleteChildren(vec![new_spi]));
            }
            _ => {
                if let Some(c) = sa.child_by_inbound(old) {
                    c.state = ChildState::Rekeyed;
                    c.rekey_at = None;
                }
                if old_exists {
                    sa.tasks.push_back(Task::DeleteChildren(vec![old]));
                }
            }
        }
    }

    fn on_ike_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        new_spi: u64,
        ni: &[u8],
        dh: DhSecret,
        ps: &[Payload],
    ) {
        let collision = sa.ike_collision.take();
        let parsed = (|| {
            let reply = find_payload!(ps, Sa)?;
            let nr = find_payload!(ps, Nonce)?;
            let ke = find_payload!(ps, Ke)?;
            let (suite, spi) = negotiate::accept_ike(&self.config.ike_proposals, reply)?;
            if suite.dh != dh.group() {
                return None;
            }
            if !nonce_ok(nr) {
                return None;
            }
            let spi_r = u64::from_be_bytes(<[u8; 8]>::try_from(spi.as_slice()).ok()?);
            let g_ir = dh.agree(&ke.data).ok()?;
            Some((suite, nr.clone(), spi_r, g_ir))
        })();
        let Some((suite, nr, spi_r, g_ir)) = parsed else {
            match collision {
                // The peer's rekey won the race and ours was refused.
                Some(col) => {
                    if let Some(mut held) = self.sas.remove(&col.new) {
                        self.move_children(sa, &mut held);
                        self.emit(IkeEvent::IkeSaRekeyed {
                            old: sa.id,
                            new: held.id,
                        });
                        self.sas.insert(col.new, held);
                    }
                    sa.state = State::Rekeyed;
                }
                None => sa.rekey_at = Some(now.plus(REKEY_RETRY_MS)),
            }
            return;
        };
        let mut new = self.rekeyed_sa(sa, now, suite, &g_ir, ni, &nr, new_spi, spi_r, true);
        sa.state = State::Rekeyed;
        match collision {
            Some(col) if lowest_loses(ni, &nr, &col.ni, &col.nr) => {
                // We lost: the peer's SA survives; delete ours.
                if let Some(mut held) = self.sas.remove(&col.new) {
                    self.move_children(sa, &mut held);
                    self.emit(IkeEvent::IkeSaRekeyed {
                        old: sa.id,
                        new: held.id,
                    });
                    self.sas.insert(col.new, held);
                }
                new.state = State::Rekeyed;
                new.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                self.kick(&mut new, now);
            }
            Some(col) => {
                // We won: ours survives; delete the old SA (and, so nothing
                // lingers if the loser's delete is lost, the peer's one).
                self.move_children(sa, &mut new);
                self.emit(IkeEvent::IkeSaRekeyed {
                    old: sa.id,
                    new: new.id,
                });
                sa.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                if let Some(mut held) = self.sas.remove(&col.new) {
                    held.state = State::Rekeyed;
                    held.tasks
                        .push_back(Task::DeleteIke(DownReason::Terminated));
                    self.kick(&mut held, now);
                    if !held.removed {
                        self.sas.insert(col.new, held);
                    }
                }
            }
            None => {
                self.move_children(sa, &mut new);
                self.emit(IkeEvent::IkeSaRekeyed {
                    old: sa.id,
                    new: new.id,
                });
                sa.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
            }
        }
        if !new.removed {
            self.sas.insert(new_spi, new);
        }
    }
}

/// §2.8.1: true if our exchange (nonces `ni`, `nr`) holds the lowest of
/// the four nonces and so created the redundant SA.
fn lowest_loses(ni: &[u8], nr: &[u8], peer_ni: &[u8], peer_nr: &[u8]) -> bool {
    let ours = ni.min(nr);
    let theirs = peer_ni.min(peer_nr);
    ours < theirs
}
