//! IKE SA and Child SA state, the public event and key types.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::crypto::{DhSecret, DirectionKeys, EspAlgorithm, IkeKeys, IkeSuite, SkCipher};
use super::message::{DecodeError, ExchangeType, Identification, NotifyType, TrafficSelector};

/// Engine time in milliseconds from an arbitrary origin chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// An IKE SA, named by our own SPI for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// A Child SA, named by our inbound SPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildSaId(pub u32);

/// UDP encapsulation of ESP (RFC 3948) with the ports to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    pub local_port: u16,
    pub remote_port: u16,
}

/// Everything the data plane needs to install a Child SA's inbound and
/// outbound ESP SAs. Keys are zeroized on drop and redacted in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaKeys {
    pub id: ChildSaId,
    pub ike: IkeSaId,
    /// SPI the peer puts on packets to us.
    pub inbound_spi: u32,
    /// SPI we put on packets to the peer.
    pub outbound_spi: u32,
    pub algorithm: EspAlgorithm,
    pub inbound: DirectionKeys,
    pub outbound: DirectionKeys,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub local_addr: SocketAddr,
    pub remote_addr: SocketAddr,
    /// `Some` when ESP goes in UDP (NAT detected or forced).
    pub udp_encap: Option<UdpEncap>,
    /// Always false: extended sequence numbers are not negotiated.
    pub esn: bool,
}

/// An IKE SA's SPIs, algorithms and SK payload keys (§2.14), for key
/// logging. Keys are zeroized on drop and redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct IkeSaSecrets {
    pub spi_i: u64,
    pub spi_r: u64,
    /// Whether we are the (original or rekey) initiator of this IKE SA.
    pub initiator: bool,
    pub suite: super::crypto::IkeSuite,
    pub sk_ei: super::crypto::SecretBytes,
    pub sk_er: super::crypto::SecretBytes,
    pub sk_ai: super::crypto::SecretBytes,
    pub sk_ar: super::crypto::SecretBytes,
}

/// Why an IKE SA went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    DeletedByPeer,
    Terminated,
    /// Retransmissions were exhausted.
    PeerDead,
    AuthenticationFailed,
    /// The peer refused the exchange with this notify, or we did.
    Negotiation(NotifyType),
    Expired,
    /// Replaced after an INITIAL_CONTACT from the same peer.
    Replaced,
    /// A responder's half-open SA timed out.
    HalfOpenTimeout,
}

/// What the engine tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IkeEvent {
    IkeSaUp {
        ike: IkeSaId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// The IKE SA was rekeyed; its Child SAs now belong to `new`.
    IkeSaRekeyed {
        old: IkeSaId,
        new: IkeSaId,
    },
    IkeSaDown {
        ike: IkeSaId,
        reason: DownReason,
    },
    ChildSaUp(ChildSaKeys),
    /// Install `new` now; `old` is deleted by a later `ChildSaDeleted`.
    ChildSaRekeyed {
        old: ChildSaId,
        new: ChildSaKeys,
    },
    ChildSaDeleted {
        ike: IkeSaId,
        id: ChildSaId,
        outbound_spi: u32,
    },
    /// The peer's address or port changed (NAT, RFC 7296 §2.23): the IKE
    /// SA now uses these addresses; its Child SAs are rekeyed onto them.
    PeerMoved {
        ike: IkeSaId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A Child SA could not be set up (the IKE SA stays).
    ChildSaFailed {
        ike: IkeSaId,
        notify: NotifyType,
    },
    /// RFC 5685: the gateway redirected us. IKE SA `old` (towards `from`)
    /// is gone quietly, `new` is the IKE_SA_INIT sent to `to`.
    Redirected {
        old: IkeSaId,
        new: IkeSaId,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// Virtual IPs (RFC 7296 §3.15) of an IKE SA: as responder, the
    /// addresses leased to the peer from a pool (its Child SAs' remote
    /// selectors are narrowed to them); as initiator, those the peer gave
    /// us. Persist the pools' leases when this or
    /// [`IkeEvent::VirtualIpsReleased`] comes.
    VirtualIps {
        ike: IkeSaId,
        addrs: Vec<std::net::IpAddr>,
    },
    /// The IKE SA went: its leased virtual IPs went back to their pools
    /// (still reserved for the peer's identity).
    VirtualIpsReleased {
        ike: IkeSaId,
        addrs: Vec<std::net::IpAddr>,
    },
    /// A request went unanswered through every retransmission: resolve
    /// the link-layer next hop towards `remote` afresh; the request gets
    /// one more round before the peer is declared dead.
    PeerUnresponsive {
        ike: IkeSaId,
        remote: SocketAddr,
    },
    /// A half-open responder SA whose IKE_AUTH request presents an
    /// identity of the sibling template `to` (see
    /// [`crate::config::Template::siblings`]): the driver moves the SA
    /// there ([`crate::Endpoint::take_half_open`],
    /// [`crate::Endpoint::adopt`]) and hands it `datagram` again. Nothing
    /// was answered and the Message ID is not consumed.
    Handoff {
        ike: IkeSaId,
        to: u32,
        local: SocketAddr,
        remote: SocketAddr,
        message: HandedMessage,
    },
}

/// The IKE_AUTH request of a handed-over SA, decrypted (and reassembled,
/// RFC 7383), for the sibling to process with
/// [`crate::Endpoint::handle_handed`]: the datagram alone would not do
/// when the request came in fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedMessage {
    pub(crate) hdr: crate::message::Header,
    pub(crate) first: crate::message::PayloadType,
    pub(crate) plain: Vec<u8>,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address (selects the socket: port 500 or 4500).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Prepend the 4-byte non-ESP marker (RFC 3948 §2.2) when sending.
    pub non_esp_marker: bool,
    /// The IKE message.
    pub payload: Vec<u8>,
}

impl Transmit {
    /// The bytes to put in the UDP datagram.
    pub fn datagram(&self) -> Vec<u8> {
        if self.non_esp_marker {
            super::message::add_non_esp_marker(&self.payload)
        } else {
            self.payload.clone()
        }
    }
}

/// Counters for everything received and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
    /// Could not be decoded (truncated, bad lengths, trailing bytes...).
    pub malformed: u64,
    pub unsupported_critical: u64,
    /// No IKE SA with that SPI.
    pub unknown_spi: u64,
    /// SK payload failed its ICV / AEAD check (dropped silently, §2.21.2).
    pub integrity_failures: u64,
    /// Message ID outside the window.
    pub invalid_message_id: u64,
    pub retransmits: u64,
    /// A retransmitted request answered from the response cache.
    pub replayed_responses: u64,
    pub cookies_sent: u64,
    /// IKE_SA_INITs with a COOKIE we did not make, or made with a secret
    /// older than the previous one (answered with a fresh cookie when one
    /// is needed).
    pub cookies_invalid: u64,
    pub cookie_secret_rotations: u64,
    /// IKE_SA_INITs dropped: their (proven) source held
    /// `half_open_per_source` half-open SAs (RFC 8019 §4.2).
    pub half_open_refused_per_source: u64,
    /// IKE_SA_INITs dropped: `half_open_max` half-open SAs existed.
    pub half_open_refused_max: u64,
    pub invalid_ke_sent: u64,
    pub no_proposal_chosen: u64,
    /// Peers that failed IKE_AUTH (the sum of the `auth_refused_*`
    /// reasons below, plus AUTHENTICATION_FAILED received as initiator).
    pub auth_failures: u64,
    /// IKE_AUTH refused: the identity is not the configured one, or
    /// matches none of the template's patterns.
    pub auth_refused_identity: u64,
    /// IKE_AUTH refused: a template has no secret for the identity.
    pub auth_refused_unknown_identity: u64,
    /// IKE_AUTH refused: an authentication method other than the shared
    /// key MIC.
    pub auth_refused_method: u64,
    /// IKE_AUTH refused: the AUTH value is wrong (wrong secret).
    pub auth_refused_bad_auth: u64,
    /// Half-open SAs handed to a sibling template by identity.
    pub handoffs: u64,
    pub ike_sa_established: u64,
    pub child_sa_established: u64,
    pub peers_dead: u64,
    /// Child SA proposals refused with NO_PROPOSAL_CHOSEN (IKE_AUTH or
    /// CREATE_CHILD_SA).
    pub child_no_proposal_chosen: u64,
    /// Traffic selectors refused: nothing left after narrowing, or a
    /// response not within what we offered (§2.9).
    pub ts_unacceptable: u64,
    /// Traffic selectors refused for exceeding the configured count or
    /// data-plane selector limits.
    pub ts_over_limit: u64,
    /// Child SA requests refused with NO_ADDITIONAL_SAS (per-IKE-SA limit).
    pub child_sa_limit: u64,
    /// Error notifies, COOKIEs and INVALID_KE_PAYLOADs in unprotected
    /// IKE_SA_INIT responses not acted upon (§2.21.1).
    pub init_errors_ignored: u64,
    /// Nonces outside 16..=256 bytes (§2.10, §3.9).
    pub bad_nonce: u64,
    /// Requests other than IKE_AUTH on an IKE SA that is not yet
    /// authenticated, dropped.
    pub not_established: u64,
    /// Responses whose exchange type is not that of our request.
    pub exchange_mismatch: u64,
    /// The peer's address changed (NAT, §2.23); its Child SAs are moved.
    pub peer_moved: u64,
    /// Requests that went unanswered, whose peer's next hop was resolved
    /// afresh before one more round ([`IkeEvent::PeerUnresponsive`]).
    pub peer_reresolves: u64,
    /// A major version other than 2 (§2.5); requests above 2 are answered
    /// with INVALID_MAJOR_VERSION (§1.5). Also counted in `malformed`.
    pub invalid_major_version: u64,
    /// The initiator's SPI was zero (§3.1). Also counted in `malformed`.
    pub zero_spi_i: u64,
    /// A payload the exchange may only carry inside SK found in the clear,
    /// e.g. Delete in IKE_SA_INIT (§1.2, §3.14). Also counted in `malformed`.
    pub payload_not_allowed: u64,
    /// A count field the bytes after it do not match (Delete SPIs, traffic
    /// selectors, transforms). Also counted in `malformed`.
    pub count_mismatch: u64,
    /// An SPI Size the protocol does not have (§3.11). Also in `malformed`.
    pub bad_spi_size: u64,
    /// A Configuration payload attribute of a length its type does not
    /// allow (§3.15.1). Also counted in `malformed`.
    pub bad_cfg_attribute: u64,
    /// IKE_AUTH requests refused a virtual IP because the pools had none
    /// left (INTERNAL_ADDRESS_FAILURE, RFC 7296 §3.15.4): no Child SA.
    pub cp_address_failures: u64,
    /// IKE_AUTH requests without an address request on a tunnel that
    /// hands out virtual IPs (FAILED_CP_REQUIRED): no Child SA.
    pub cp_required_missing: u64,
    /// Virtual IPs leased to peers.
    pub virtual_ips_assigned: u64,
    /// Messages not sent because a length or count would not fit its wire
    /// field (more than 255 traffic selectors, a payload over 64 KiB).
    pub encode_errors: u64,
    /// RFC 5685 (redirect), as responder: IKE_SA_INIT requests answered
    /// with REDIRECT (no state kept, §4.3).
    pub redirects_sent_init: u64,
    /// RFC 5685 §6: authenticated clients sent REDIRECT in the IKE_AUTH
    /// response (their IKE SA then deleted).
    pub redirects_sent_auth: u64,
    /// RFC 5685 §5: established clients redirected with an INFORMATIONAL
    /// (acknowledged).
    pub redirects_sent_informational: u64,
    /// Clients the redirect policy would have sent elsewhere but that did
    /// not announce REDIRECT_SUPPORTED: served here.
    pub redirect_not_supported: u64,
    /// As initiator: redirects followed to another gateway.
    pub redirects_followed: u64,
    /// REDIRECT or REDIRECTED_FROM data refused (identity type or length,
    /// not a host name, nonce echo length, trailing bytes).
    pub redirect_malformed: u64,
    /// REDIRECTs in IKE_SA_INIT responses whose nonce echo was not our Ni
    /// (§4.3: ignored, as anyone on the path could send them).
    pub redirect_nonce_mismatch: u64,
    /// REDIRECTs not asked for (we did not announce support) or where the
    /// exchange cannot carry one: ignored.
    pub redirect_unsolicited: u64,
    /// REDIRECTs refused: more than the bound within its period (two
    /// gateways redirecting to each other), or to our own address.
    pub redirect_loop_refused: u64,
    /// REDIRECTs naming a gateway by FQDN: the engine has no resolver, so
    /// they are not followed.
    pub redirect_unresolved: u64,
    /// Requests refused for breaking a protocol rule, by rule (some are
    /// also counted above, e.g. in `bad_nonce`).
    pub protocol_errors: crate::error::ProtocolErrorCounts,
    /// IKE fragmentation (RFC 7383): sent, reassembled, refused by reason.
    pub fragments: crate::fragment::FragmentStats,
    /// Certificate authentication refusals by reason (each also in
    /// `auth_failures`), and CERT/CERTREQ payloads ignored.
    pub cert: crate::cert::CertCounts,
}

impl Stats {
    /// Counts a message refused by the decoder: in `malformed`, and by
    /// reason where there is a counter for it.
    pub(crate) fn decode_refused(&mut self, e: &DecodeError) {
        self.malformed += 1;
        match e {
            DecodeError::UnsupportedCriticalPayload(_) => self.unsupported_critical += 1,
            DecodeError::InvalidMajorVersion(_) => self.invalid_major_version += 1,
            DecodeError::ZeroInitiatorSpi => self.zero_spi_i += 1,
            DecodeError::PayloadNotAllowed(_) => self.payload_not_allowed += 1,
            DecodeError::CountMismatch(_) => self.count_mismatch += 1,
            DecodeError::BadSpiSize(_) => self.bad_spi_size += 1,
            DecodeError::BadCfgAttribute(_) => self.bad_cfg_attribute += 1,
            _ => {}
        }
    }
}

/// The state of an IKE SA, as a tag: what [`Phase`] and [`Stage`] hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    Established,
    /// Rekeyed: children moved, waiting for the Delete exchange.
    Rekeyed,
    /// Being deleted by us.
    Deleting,
}

/// What an IKE SA holds in each state: keys exist only once IKE_SA_INIT
/// is done, the D-H private value and our IKE_SA_INIT only before, the
/// octets IKE_AUTH signs (§2.15) only until it is done, and lifetimes only
/// once established. Moving on consumes the previous state's data.
// Nearly every IKE SA is keyed, so boxing the larger variant would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Phase {
    /// Initiator: IKE_SA_INIT sent, no keys yet.
    InitSent(InitSent),
    /// SKEYSEED computed (§2.14): SK payloads can be sealed and opened.
    Keyed(Keyed),
}

/// Initiator, IKE_SA_INIT sent (§1.2).
#[derive(Debug)]
pub(crate) struct InitSent {
    pub ni: Vec<u8>,
    /// Our D-H private value of the request in flight.
    pub dh: DhSecret,
    /// The COOKIE to send first in the request (§2.6).
    pub cookie: Option<Vec<u8>>,
    /// IKE_SA_INIT restarts (COOKIE, INVALID_KE_PAYLOAD) of this attempt.
    pub restarts: u32,
    /// An error notify from an unprotected IKE_SA_INIT response, reported
    /// if no genuine response arrives before the retransmissions end.
    pub error: Option<NotifyType>,
    /// Our IKE_SA_INIT request as sent (signed in IKE_AUTH, §2.15).
    pub request: Vec<u8>,
}

/// An IKE SA with keys, and where it is in its life.
#[derive(Debug)]
pub(crate) struct Keyed {
    pub sk: Sk,
    pub stage: Stage,
}

/// The IKE SA's suite, keys (§2.14) and the two SK payload directions.
#[derive(Debug)]
pub(crate) struct Sk {
    pub suite: IkeSuite,
    pub keys: IkeKeys,
    pub tx: SkCipher,
    pub rx: SkCipher,
}

impl Sk {
    pub fn new(initiator: bool, suite: IkeSuite, keys: IkeKeys) -> Self {
        let (tx_e, tx_a, rx_e, rx_a) = if initiator {
            (&keys.sk_ei, &keys.sk_ai, &keys.sk_er, &keys.sk_ar)
        } else {
            (&keys.sk_er, &keys.sk_ar, &keys.sk_ei, &keys.sk_ai)
        };
        let tx = SkCipher::new(&suite, tx_e, tx_a);
        let rx = SkCipher::new(&suite, rx_e, rx_a);
        Self {
            suite,
            keys,
            tx,
            rx,
        }
    }
}

/// The IKE_SA_INIT exchange as IKE_AUTH signs it (§2.15), and the nonces
/// the first Child SA's keys come from (§2.17).
#[derive(Debug)]
pub(crate) struct InitExchange {
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

#[derive(Debug)]
pub(crate) enum Stage {
    /// Initiator: IKE_AUTH sent.
    AuthSent(InitExchange),
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen {
        init: InitExchange,
        /// Our place in the half-open budget.
        ticket: super::admission::Ticket,
    },
    Established(Lifetime),
    /// Rekeyed: children moved, waiting for the Delete exchange.
    Rekeyed,
    /// Being deleted by us.
    Deleting,
}

/// When an established IKE SA is rekeyed and when it expires.
#[derive(Debug)]
pub(crate) struct Lifetime {
    pub rekey_at: Option<Timestamp>,
    pub expire_at: Timestamp,
}

/// Work that needs a request; sent when the window (size 1) is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    RekeyChild(u32),
    RekeyIke,
    DeleteChildren(Vec<u32>),
    /// Delete a Child SA the peer created but we refused (by our inbound
    /// SPI); it was never installed here.
    DeleteRefused(u32),
    DeleteIke(DownReason),
    Dpd,
    /// RFC 5685 §5: send the peer (a client) to this gateway.
    Redirect(super::message::GatewayIdentity),
}

/// The request in flight and what to do with its response.
#[derive(Debug)]
pub(crate) enum Request {
    Init,
    Auth {
        child_spi: u32,
    },
    RekeyChild {
        old: u32,
        new_spi: u32,
        ni: Vec<u8>,
        dh: Option<DhSecret>,
        /// The TSi and TSr we offered: the reply must lie within them.
        tsi: Vec<TrafficSelector>,
        tsr: Vec<TrafficSelector>,
    },
    RekeyIke {
        new_spi: u64,
        ni: Vec<u8>,
        dh: DhSecret,
    },
    DeleteChildren,
    DeleteIke(DownReason),
    Dpd,
    /// RFC 5685 §5: an INFORMATIONAL with REDIRECT.
    Redirect,
}

impl Request {
    /// The exchange the request was sent in; its response must carry the
    /// same one (§3.1).
    pub fn exchange(&self) -> ExchangeType {
        match self {
            Request::Init => ExchangeType::IKE_SA_INIT,
            Request::Auth { .. } => ExchangeType::IKE_AUTH,
            Request::RekeyChild { .. } | Request::RekeyIke { .. } => ExchangeType::CREATE_CHILD_SA,
            Request::DeleteChildren | Request::DeleteIke(_) | Request::Dpd | Request::Redirect => {
                ExchangeType::INFORMATIONAL
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outstanding {
    pub msg_id: u32,
    /// The request's datagrams: one, or its fragments (RFC 7383 §2.5:
    /// a retransmission resends them all).
    pub bytes: Vec<Vec<u8>>,
    pub request: Request,
    pub sent: u32,
    pub next_retransmit: Timestamp,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    Installed,
    /// Replaced by a rekey; waiting for (or sending) its Delete.
    Rekeyed,
}

#[derive(Debug)]
pub(crate) struct ChildSa {
    pub keys: ChildSaKeys,
    pub state: ChildState,
    pub rekey_at: Option<Timestamp>,
    pub expire_at: Timestamp,
    /// For a Child SA the peer rekeyed: the inbound SPI of its successor,
    /// so it can be reinstated if the peer deletes the successor instead.
    pub replaced_by: Option<u32>,
}

/// A recorded peer-initiated rekey that crossed our own (§2.8.1).
#[derive(Debug, Clone)]
pub(crate) struct Collision<T> {
    pub new: T,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct IkeSa {
    pub id: IkeSaId,
    /// Original initiator (or initiator of the rekey that made this SA).
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub phase: Phase,
    pub encap: bool,
    pub next_msg_id: u32,
    pub outstanding: Option<Outstanding>,
    pub peer_msg_id: u32,
    /// Our last response's datagrams (one, or its fragments), resent when
    /// its request is retransmitted (§2.1; RFC 7383 §2.6.1).
    pub last_response: Option<(u32, ExchangeType, Vec<Vec<u8>>)>,
    /// IKE fragmentation (RFC 7383): negotiated or not, reassemblies.
    pub frag: crate::fragment::SaFragments,
    pub tasks: VecDeque<Task>,
    pub children: Vec<ChildSa>,
    pub child_collisions: HashMap<u32, Collision<u32>>,
    pub ike_collision: Option<Collision<u64>>,
    pub created: Timestamp,
    pub last_heard: Timestamp,
    /// `last_heard` when the peer's next hop was last re-resolved.
    pub reresolved_at: Option<Timestamp>,
    pub removed: bool,
    /// Responders only: (SPIi, peer address) of the IKE_SA_INIT that made
    /// this SA, its key in the retransmission index.
    pub init_key: Option<(u64, SocketAddr)>,
    /// RFC 5685 (see `endpoint/redirect.rs`): the peer announced
    /// REDIRECT_SUPPORTED or REDIRECTED_FROM in its IKE_SA_INIT.
    pub peer_redirect: bool,
    /// RFC 5685: the gateway that redirected the initiator: ours as
    /// initiator (sent in REDIRECTED_FROM), the peer's as responder.
    pub redirected_from: Option<super::message::GatewayIdentity>,
    /// RFC 5685: we initiated it announcing REDIRECT_SUPPORTED (or
    /// REDIRECTED_FROM), so the peer may redirect us (§5).
    pub announced_redirect: bool,
    /// RFC 5685 §6: redirected after IKE_AUTH; the SA only lingers for
    /// the Delete exchange and goes quietly (no `IkeSaDown`).
    pub redirected: bool,
    /// Virtual IPs of this IKE SA (§3.15); they follow it through rekeys.
    pub virtual_ips: Vec<VirtualIp>,
    /// The identity the peer authenticated with (kept across IKE SA
    /// rekeys): INITIAL_CONTACT (§2.4) replaces only its SAs.
    pub peer_id: Option<Identification>,
}

/// A virtual IP of an IKE SA. As responder it is leased from `pool` to
/// the peer `identity` and given back when the IKE SA goes.
#[derive(Debug)]
pub(crate) struct VirtualIp {
    pub addr: std::net::IpAddr,
    pub lease: Option<(crate::pool::SharedPool, String)>,
}

impl IkeSa {
    pub fn new(
        id: u64,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        phase: Phase,
        now: Timestamp,
    ) -> Self {
        Self {
            id: IkeSaId(id),
            initiator,
            spi_i: if initiator { id } else { 0 },
            spi_r: if initiator { 0 } else { id },
            local,
            remote,
            phase,
            encap: false,
            next_msg_id: 0,
            outstanding: None,
            peer_msg_id: 0,
            last_response: None,
            frag: Default::default(),
            tasks: VecDeque::new(),
            children: Vec::new(),
            child_collisions: HashMap::new(),
            ike_collision: None,
            created: now,
            last_heard: now,
            reresolved_at: None,
            removed: false,
            init_key: None,
            peer_redirect: false,
            redirected_from: None,
            announced_redirect: false,
            redirected: false,
            virtual_ips: Vec::new(),
            peer_id: None,
        }
    }

    pub fn state(&self) -> State {
        match &self.phase {
            Phase::InitSent(_) => State::InitSent,
            Phase::Keyed(k) => match k.stage {
                Stage::AuthSent(_) => State::AuthSent,
                Stage::HalfOpen { .. } => State::HalfOpen,
                Stage::Established(_) => State::Established,
                Stage::Rekeyed => State::Rekeyed,
                Stage::Deleting => State::Deleting,
            },
        }
    }

    /// Whether its removal is no news for the driver: a rekeyed SA (its
    /// successor carries on) or one redirected elsewhere (RFC 5685 §6).
    pub fn goes_quietly(&self) -> bool {
        self.state() == State::Rekeyed || self.redirected
    }

    /// Whether the peer has authenticated (§2.15).
    pub fn authenticated(&self) -> bool {
        matches!(
            self.state(),
            State::Established | State::Rekeyed | State::Deleting
        )
    }

    /// The keys: none before IKE_SA_INIT completes.
    pub fn sk(&self) -> Option<&Sk> {
        match &self.phase {
            Phase::Keyed(k) => Some(&k.sk),
            Phase::InitSent(_) => None,
        }
    }

    pub fn sk_mut(&mut self) -> Option<&mut Sk> {
        match &mut self.phase {
            Phase::Keyed(k) => Some(&mut k.sk),
            Phase::InitSent(_) => None,
        }
    }

    /// The lifetimes, while established.
    pub fn lifetime_mut(&mut self) -> Option<&mut Lifetime> {
        match &mut self.phase {
            Phase::Keyed(Keyed {
                stage: Stage::Established(l),
                ..
            }) => Some(l),
            _ => None,
        }
    }

    /// Moves a keyed SA to `stage`, returning the stage it leaves (`None`
    /// for an SA without keys, which stays as it is).
    pub fn enter(&mut self, stage: Stage) -> Option<Stage> {
        match &mut self.phase {
            Phase::Keyed(k) => Some(std::mem::replace(&mut k.stage, stage)),
            Phase::InitSent(_) => None,
        }
    }

    /// The keys and the IKE_SA_INIT exchange to authenticate, while IKE_AUTH
    /// is under way (AuthSent or HalfOpen).
    pub fn awaiting_auth(&self) -> Option<(&Sk, &InitExchange)> {
        match &self.phase {
            Phase::Keyed(Keyed {
                sk,
                stage: Stage::AuthSent(init) | Stage::HalfOpen { init, .. },
            }) => Some((sk, init)),
            _ => None,
        }
    }

    /// A responder's place in the half-open budget, while half-open.
    pub fn half_open_ticket(&self) -> Option<super::admission::Ticket> {
        match &self.phase {
            Phase::Keyed(Keyed {
                stage: Stage::HalfOpen { ticket, .. },
                ..
            }) => Some(*ticket),
            _ => None,
        }
    }

    pub fn child_by_inbound(&mut self, spi: u32) -> Option<&mut ChildSa> {
        self.children.iter_mut().find(|c| c.keys.inbound_spi == spi)
    }
}
