//! The IKEv2 driver: the I/O half of the sans-IO engine in [`crate::ike`]
//! (quinn's split: the engine decides, the driver owns clocks, randomness
//! and packets).
//!
//! One [`Endpoint`] per tunnel with a `[tunnel.ike]` section (the engine is
//! built around one configured peer). The driver
//! - feeds IKE datagrams the workers punted (whole IP packets of UDP 500,
//!   or UDP 4500 with the non-ESP marker, RFC 3948 §2.2) to their tunnel:
//!   by our SPI when they name an IKE SA, an IKE_SA_INIT request by its
//!   addresses (see [`IkeDriver::handle_punt`]);
//! - shares one half-open SA budget between the tunnels' engines and
//!   tells the workers which IKE SPIs are authenticated and which are
//!   half-open ([`IkeSpiTables`]);
//! - turns the engine's datagrams into IP/UDP packets for the workers to
//!   route and send;
//! - drives the engine's timers from a monotonic clock;
//! - keeps, from the engine's Child SA events, the SAs each tunnel wants
//!   ([`IkeDriver::sas`]): a rekeyed Child SA's inbound half stays until
//!   its Delete plus a grace period, its successor takes the outbound
//!   slot once the old one's Delete is exchanged; the control thread's
//!   [`crate::sa::Planner`] turns that into worker messages, make before
//!   break;
//! - sends NAT keepalives (RFC 3948 §2.3) when ESP is UDP-encapsulated;
//! - writes Wireshark key logs when the operator asks for them.
//!
//! Secrets (PSK, SK_*, ESP keys) are never logged; they only leave the
//! process through the key log files (mode 0600, in a directory of mode
//! 0700, never through a symbolic link) when `keylog_dir` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use dataplane::crypto::{Algorithm, Encryption, Integrity, SaKeys};
use dataplane::esp::{
    Action, Direction, EngineEvent, IpPrefix, SaConfig, SaEvent, Selector, Spi, TunnelEndpoints,
    UdpEncap,
};
use dataplane::gateway::{IkeSpiTables, KnownIkeSpis};
use dataplane::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr};
use zeroize::Zeroizing;

use crate::api::Event;
use crate::config::{self, GatewayConfig, IkeId, IkeIdPattern, Tunnel};
use crate::ike::crypto::{EspCipher, IkeCipher, Integ, Prf, SecretBytes};
use crate::ike::message::{
    classify_port_4500, ExchangeType, Header, Identification, Port4500, TrafficSelector,
};
use crate::ike::{
    self, ChildSaId, ChildSaKeys, DownReason, Endpoint, HalfOpenBudget, HalfOpenSpis, IdDirectory,
    IdPattern, IkeEvent, IkeSaId, IkeSaSecrets, RngSource, StartAction, Timestamp,
};
use crate::sa::{SaSpec, Wanted};

/// Everything that can go wrong building the driver.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// IKE's port (RFC 7296 §2) and the NAT-T port (RFC 3948 §1.1).
const IKE_PORT: u16 = 500;
const NAT_T_PORT: u16 = 4500;
/// NAT keepalive interval: strongSwan's `keep_alive` default, and RFC
/// 3948 §4's "20 seconds" suggestion.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// How long the inbound half of a rekeyed Child SA stays installed after
/// its Delete: packets the peer sent on it may still be in flight
/// (strongSwan's `delete_rekeyed_delay` is 5 s too).
const REKEYED_GRACE: Duration = Duration::from_secs(5);
/// Wait this long before initiating again after the peer was lost or an
/// attempt failed; each further failure in a row doubles the wait up to
/// [`REINITIATE_MAX_DELAY`].
const REINITIATE_DELAY: Duration = Duration::from_secs(5);
/// The workers' table of authenticated IKE SPIs is rebuilt after every
/// IKE SA change and at least this often (SAs that linger after a rekey
/// leave quietly).
const KNOWN_SPIS_REFRESH: Duration = Duration::from_secs(5);

/// The longest wait between two attempts (strongSwan retries failed
/// connections too; a wrong PSK or a man in the middle must not make the
/// gateway give up, nor hammer the peer).
const REINITIATE_MAX_DELAY: Duration = Duration::from_secs(300);

/// A tunnel removed from the running configuration keeps its engine this
/// long at most, so that its DELETE (RFC 7296 §1.4.1) is retransmitted
/// and answered; it goes as soon as the engine holds no IKE SA.
const LEAVING_MAX: Duration = Duration::from_secs(30);

/// Room in the workers' table of authenticated IKE SPIs for tunnels
/// added by reloads.
const KNOWN_SPIS_HEADROOM: usize = 64;

/// The wait before the next attempt after `failures` failed ones in a row.
fn reinitiate_delay(failures: u32) -> Duration {
    REINITIATE_DELAY
        .saturating_mul(1u32 << failures.min(16))
        .min(REINITIATE_MAX_DELAY)
}

/// The system RNG (aws-lc-rs) for the engine.
#[derive(Debug)]
pub struct SystemRng(SystemRandom);

impl SystemRng {
    pub fn new() -> Self {
        Self(SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl RngSource for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        // aws-lc's RNG only fails if the OS entropy source is gone; running
        // IKE on predictable bytes would be far worse than stopping.
        self.0
            .fill(buf)
            .expect("system random number generator failed");
    }
}

/// What the driver asks of the workers besides SAs (those are in
/// [`IkeDriver::sas`]).
#[derive(Debug)]
pub enum IkeAction {
    /// Send this IP packet.
    Transmit(Vec<u8>),
    /// Resolve the link-layer next hop towards this peer afresh (it
    /// stopped answering).
    Reresolve(std::net::IpAddr),
}

impl std::fmt::Debug for IkeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeDriver")
            .field("tunnels", &self.tunnels.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Driver counters (`ike.*` in `espresso stats`).
#[derive(Debug, Default, Clone)]
pub struct DriverStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub keepalives_sent: u64,
    pub keepalives_received: u64,
    /// Punted packets that are not IKE.
    pub unmatched: u64,
    /// IKE messages naming an IKE SA that no tunnel has.
    pub unknown_spi: u64,
    /// IKE_SA_INIT requests from an address no tunnel names, to a local
    /// address and port where no single listening tunnel takes them.
    pub init_no_tunnel: u64,
    /// Child SAs whose data-plane SAs could not be described or built.
    pub sa_install_errors: u64,
    /// Child SAs of a template (or a tunnel with pools) whose remote
    /// traffic selectors overlap another peer's: the first peer keeps
    /// the return route, the later one gets none until the first leaves.
    pub peer_route_conflicts: u64,
    /// Authenticated IKE SPIs that did not fit the workers' table at its
    /// last rebuild (their datagrams wait with the unauthenticated ones).
    /// A gauge: every rebuild offers every SPI again.
    pub known_spis_missed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Down,
    Connecting,
    Up,
}

#[derive(Debug)]
struct IkeInfo {
    id: IkeSaId,
    local: SocketAddr,
    remote: SocketAddr,
    since: Instant,
}

#[derive(Debug)]
struct ChildInfo {
    keys: ChildSaKeys,
    /// Its data-plane SAs.
    inbound: SaSpec,
    outbound: SaSpec,
    since: Instant,
    /// Establishment order across the driver (clock readings can tie):
    /// the older Child SA keeps a contested return route.
    order: u64,
    /// Replaced by a rekey (its successor takes the outbound slot once the
    /// old one's Delete is exchanged).
    rekeyed: bool,
}

/// One tunnel's engine and what is installed for it.
struct TunnelIke {
    index: usize,
    tunnel: Tunnel,
    endpoint: Endpoint,
    keylog_dir: Option<PathBuf>,
    state: LinkState,
    last_down: Option<DownReason>,
    ike: Option<IkeInfo>,
    /// Installed Child SAs by inbound SPI.
    children: BTreeMap<u32, ChildInfo>,
    /// The Child SA (by inbound SPI) whose outbound half is in the slot.
    active_out: Option<u32>,
    /// Deleted Child SAs whose inbound SA stays until the given time.
    retiring: Vec<(Instant, ChildInfo)>,
    next_keepalive: Instant,
    reinitiate_at: Option<Instant>,
    /// Attempts that failed since the tunnel was last up.
    failures: u32,
    /// Every established IKE SA (one per peer on a responder template) by
    /// our SPI.
    peers: BTreeMap<u64, IkeInfo>,
    /// A template's siblings on its local address, by the tags its engine
    /// names them with in [`IkeEvent::Handoff`].
    siblings: Vec<String>,
    /// Removed from the configuration: only its DELETE exchange goes on,
    /// until the engine has no IKE SA or this time has come. It wants no
    /// SA, takes no new IKE SA and never initiates.
    leaving: Option<Instant>,
}

/// The IKE driver for every IKE tunnel of the gateway.
pub struct IkeDriver {
    origin: Instant,
    tunnels: Vec<TunnelIke>,
    actions: Vec<IkeAction>,
    /// Whether [`IkeDriver::sas`] changed since the last
    /// [`IkeDriver::take_sas_changed`].
    sas_changed: bool,
    stats: DriverStats,
    ident: u16,
    /// Key log directories whose files this run has started (truncated);
    /// later lines are appended, so no key stays in memory once written.
    keylog_started: BTreeSet<PathBuf>,
    /// The next [`ChildInfo::order`].
    child_order: u64,
    /// Half-open SAs of every tunnel's engine.
    budget: HalfOpenBudget,
    /// Our authenticated IKE SPIs, for the workers.
    known: Arc<KnownIkeSpis>,
    /// Our responder SPIs of half-open IKE SAs, for the workers: kept by
    /// `budget` as half-open SAs come and go.
    half_open: Arc<KnownIkeSpis>,
    known_dirty: bool,
    known_refreshed: Instant,
    /// Half-open SAs that time out are mostly spoofed IKE_SA_INITs: their
    /// warnings are rate-limited.
    half_open_log: LogBudget,
    /// For the control API's subscribers, since the last
    /// [`IkeDriver::take_events`].
    events: Vec<crate::api::Event>,
    /// Virtual IP pools shared by the tunnels' engines, persisted.
    pools: pools::Pools,
}

mod pools;

/// At most one log line per interval for events an unauthenticated sender
/// can cause at will; the lines left out are counted into the next one.
#[derive(Debug, Default)]
struct LogBudget {
    next: Option<Instant>,
    suppressed: u64,
}

impl LogBudget {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// `Some(lines left out since the last one)` when a line may be logged.
    fn take(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|n| now < n) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + Self::INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The workers' table of half-open SPIs, written by the budget on the
/// control thread only.
#[derive(Debug)]
struct WorkersHalfOpen(Arc<KnownIkeSpis>);

impl HalfOpenSpis for WorkersHalfOpen {
    fn opened(&self, spi: u64) -> bool {
        self.0.insert(spi)
    }
    fn closed(&self, spi: u64) {
        self.0.remove(spi)
    }
}

fn ike_id(id: &IkeId) -> Identification {
    match id {
        IkeId::Fqdn(s) => Identification::Fqdn(s.clone()),
        IkeId::Ipv4(a) => Identification::Ipv4(*a),
        IkeId::Ipv6(a) => Identification::Ipv6(*a),
        IkeId::KeyId(k) => Identification::KeyId(k.clone()),
        IkeId::Email(s) => Identification::Other {
            ty: ike::message::IdType::RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        },
        IkeId::Dn { der, .. } => Identification::Other {
            ty: ike::message::IdType::DER_ASN1_DN,
            data: der.clone(),
        },
    }
}

/// An identity as the operator writes it (`alice@branches.example`,
/// `gw.example`, `192.0.2.1`, `keyid:…`).
fn identity_text(id: &Identification) -> String {
    match id {
        Identification::Fqdn(s) => s.clone(),
        Identification::Ipv4(a) => a.to_string(),
        Identification::Ipv6(a) => a.to_string(),
        Identification::KeyId(k) => IkeId::KeyId(k.clone()).to_string(),
        Identification::Other { ty, data } if *ty == ike::message::IdType::RFC822_ADDR => {
            String::from_utf8_lossy(data).into_owned()
        }
        Identification::Other { ty, data } if *ty == ike::message::IdType::DER_ASN1_DN => {
            match ike::identity::parse_dn(data) {
                Some(attrs) => dn_text(&attrs),
                None => format!("dn:0x{}", hex::encode(data)),
            }
        }
        Identification::Other { ty, data } => format!("id{}:0x{}", ty.0, hex::encode(data)),
    }
}

/// A DN's attributes as `C=DE, O=Example, CN=alice` (dotted OIDs for
/// attributes without a short name).
fn dn_text(attrs: &[(Vec<u8>, String)]) -> String {
    attrs
        .iter()
        .map(|(oid, v)| {
            let name = match oid.as_slice() {
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "E".to_string(),
                other => format!("oid:0x{}", hex::encode(other)),
            };
            format!("{name}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The engine's form of an identity pattern.
fn id_pattern(p: &IkeIdPattern) -> IdPattern {
    match p {
        IkeIdPattern::Any => IdPattern::Any,
        IkeIdPattern::Exact(id) => IdPattern::Exact(ike_id(id)),
        IkeIdPattern::EmailDomain(d) => IdPattern::EmailDomain(d.clone()),
        IkeIdPattern::FqdnSuffix(d) => IdPattern::FqdnSuffix(d.clone()),
        IkeIdPattern::Dn { pattern, .. } => IdPattern::Dn(pattern.clone()),
    }
}

/// `[[secret]]` as the engine's directory (built once per configuration,
/// shared by every template).
fn secret_directory(config: &GatewayConfig) -> IdDirectory<SecretBytes> {
    let mut d = IdDirectory::new();
    for s in &config.secrets {
        for id in &s.ids {
            // Validation refused duplicates; a second one could only be
            // a pattern that normalizes to the same key: the first wins.
            let _ = d.insert(id_pattern(id), SecretBytes::new(s.psk.expose().to_vec()));
        }
    }
    d
}

/// Unix time in milliseconds at `origin` (the engines' `Timestamp(0)`):
/// certificates are checked for validity against the wall clock.
fn unix_ms_at(origin: Instant) -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    unix.saturating_sub(Instant::now().saturating_duration_since(origin))
        .as_millis() as u64
}

fn engine_prf(p: config::Prf) -> Prf {
    match p {
        config::Prf::HmacSha256 => Prf::HmacSha256,
        config::Prf::HmacSha384 => Prf::HmacSha384,
        config::Prf::HmacSha512 => Prf::HmacSha512,
    }
}

fn engine_integ(i: Integrity) -> Option<Option<Integ>> {
    match i {
        Integrity::None => Some(None),
        Integrity::HmacSha256_128 => Some(Some(Integ::HmacSha256_128)),
        Integrity::HmacSha384_192 => Some(Some(Integ::HmacSha384_192)),
        Integrity::HmacSha512_256 => Some(Some(Integ::HmacSha512_256)),
    }
}

fn engine_group(g: config::DhGroup) -> Option<ike::crypto::DhGroup> {
    use ike::crypto::DhGroup as G;
    match g {
        config::DhGroup::Modp2048 => Some(G::Modp2048),
        config::DhGroup::Ecp256 => Some(G::Ecp256),
        config::DhGroup::Ecp384 => Some(G::Ecp384),
        config::DhGroup::Curve25519 => Some(G::Curve25519),
        // Not implemented by the engine.
        config::DhGroup::Modp3072 | config::DhGroup::Modp4096 => None,
    }
}

fn engine_esp_cipher(e: Encryption) -> Option<EspCipher> {
    match e {
        Encryption::AesGcm16_128 => Some(EspCipher::AesGcm16_128),
        Encryption::AesGcm16_256 => Some(EspCipher::AesGcm16_256),
        Encryption::ChaCha20Poly1305 => Some(EspCipher::ChaCha20Poly1305),
        Encryption::AesCbc128 => Some(EspCipher::AesCbc128),
        Encryption::AesCbc256 => Some(EspCipher::AesCbc256),
        Encryption::Null => None,
    }
}

/// The engine's proposals for the file's: each file proposal may list
/// several transforms of a type; the engine takes one cipher, PRF and
/// integrity per proposal, so the cross product is offered in order.
/// Transforms the engine does not implement are left out.
fn ike_proposals(list: &[config::IkeProposal]) -> Vec<ike::IkeProposal> {
    let mut out = Vec::new();
    for p in list {
        let groups: Vec<_> = p.dh.iter().filter_map(|g| engine_group(*g)).collect();
        if groups.is_empty() {
            continue;
        }
        let integs: Vec<Option<Integ>> = if p.integrity.is_empty() {
            vec![None]
        } else {
            p.integrity
                .iter()
                .filter_map(|i| engine_integ(*i))
                .collect()
        };
        for e in &p.encryption {
            let cipher = match e {
                Encryption::AesGcm16_128 => IkeCipher::AesGcm16 { key_bits: 128 },
                Encryption::AesGcm16_256 => IkeCipher::AesGcm16 { key_bits: 256 },
                Encryption::AesCbc128 => IkeCipher::AesCbc { key_bits: 128 },
                Encryption::AesCbc256 => IkeCipher::AesCbc { key_bits: 256 },
                _ => continue,
            };
            for prf in &p.prf {
                for integ in &integs {
                    out.push(ike::IkeProposal {
                        cipher,
                        prf: engine_prf(*prf),
                        integ: *integ,
                        groups: groups.clone(),
                    });
                }
            }
        }
    }
    out
}

fn esp_proposals(list: &[config::EspProposal]) -> Vec<ike::EspProposal> {
    let mut out = Vec::new();
    for p in list {
        // The engine negotiates no ESN; a proposal that requires it is out.
        if !p.esn.contains(&false) {
            continue;
        }
        let pfs_groups: Vec<_> = p.dh.iter().filter_map(|g| engine_group(*g)).collect();
        if !p.dh.is_empty() && pfs_groups.is_empty() {
            continue;
        }
        let integs: Vec<Option<Integ>> = if p.integrity.is_empty() {
            vec![None]
        } else {
            p.integrity
                .iter()
                .filter_map(|i| engine_integ(*i))
                .collect()
        };
        for e in &p.encryption {
            let Some(cipher) = engine_esp_cipher(*e) else {
                continue;
            };
            for integ in &integs {
                out.push(ike::EspProposal {
                    algorithm: ike::EspAlgorithm {
                        cipher,
                        integ: *integ,
                    },
                    pfs_groups: pfs_groups.clone(),
                });
            }
        }
    }
    out
}

fn prefix_range(p: &IpPrefix) -> (IpAddr, IpAddr) {
    match p.addr() {
        IpAddr::V4(a) => {
            let len = u32::from(p.prefix_len());
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let a = u32::from(a);
            (
                IpAddr::V4((a & mask).into()),
                IpAddr::V4((a | !mask).into()),
            )
        }
        IpAddr::V6(a) => {
            let len = u32::from(p.prefix_len());
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let a = u128::from(a);
            (
                IpAddr::V6((a & mask).into()),
                IpAddr::V6((a | !mask).into()),
            )
        }
    }
}

fn ts_of(
    p: &IpPrefix,
    protocol: Option<u8>,
    ports: &std::ops::RangeInclusive<u16>,
) -> TrafficSelector {
    let (start, end) = prefix_range(p);
    TrafficSelector {
        ip_protocol: protocol.unwrap_or(0),
        start_port: *ports.start(),
        end_port: *ports.end(),
        start_addr: start,
        end_addr: end,
    }
}

/// The largest prefixes covering `start..=end` (a traffic selector is a
/// range, the data plane's selectors are prefixes).
fn range_prefixes(start: IpAddr, end: IpAddr) -> Vec<IpPrefix> {
    ike::negotiate::range_prefixes(start, end)
        .filter_map(|(a, len)| IpPrefix::new(a, len).ok())
        .collect()
}

/// Data-plane selectors for negotiated traffic selectors: every pair of
/// a source and a destination of the same family.
fn selectors(src: &[TrafficSelector], dst: &[TrafficSelector]) -> Vec<Selector> {
    let mut out = Vec::new();
    for s in src {
        for d in dst {
            if s.start_addr.is_ipv4() != d.start_addr.is_ipv4() {
                continue;
            }
            let protocol = match (s.ip_protocol, d.ip_protocol) {
                (0, 0) => None,
                (0, p) | (p, 0) => Some(p),
                (a, b) if a == b => Some(a),
                _ => continue,
            };
            for sp in range_prefixes(s.start_addr, s.end_addr) {
                for dp in range_prefixes(d.start_addr, d.end_addr) {
                    out.push(Selector {
                        src: sp,
                        dst: dp,
                        protocol,
                        src_ports: s.start_port..=s.end_port,
                        dst_ports: d.start_port..=d.end_port,
                    });
                }
            }
        }
    }
    out
}

fn dataplane_algorithm(a: &ike::EspAlgorithm) -> Algorithm {
    Algorithm {
        encryption: match a.cipher {
            EspCipher::AesGcm16_128 => Encryption::AesGcm16_128,
            EspCipher::AesGcm16_256 => Encryption::AesGcm16_256,
            EspCipher::AesCbc128 => Encryption::AesCbc128,
            EspCipher::AesCbc256 => Encryption::AesCbc256,
            EspCipher::ChaCha20Poly1305 => Encryption::ChaCha20Poly1305,
        },
        integrity: match a.integ {
            None => Integrity::None,
            Some(Integ::HmacSha256_128) => Integrity::HmacSha256_128,
            Some(Integ::HmacSha384_192) => Integrity::HmacSha384_192,
            Some(Integ::HmacSha512_256) => Integrity::HmacSha512_256,
        },
    }
}

/// strongSwan-style names, for logs and `espresso tunnels`.
pub fn esp_algorithm_name(a: &ike::EspAlgorithm) -> String {
    let c = match a.cipher {
        EspCipher::AesGcm16_128 => "aes128gcm16",
        EspCipher::AesGcm16_256 => "aes256gcm16",
        EspCipher::AesCbc128 => "aes128",
        EspCipher::AesCbc256 => "aes256",
        EspCipher::ChaCha20Poly1305 => "chacha20poly1305",
    };
    match a.integ {
        None => c.to_string(),
        Some(i) => format!("{c}-{}", integ_name(i)),
    }
}

fn integ_name(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha256_128 => "sha256",
        Integ::HmacSha384_192 => "sha384",
        Integ::HmacSha512_256 => "sha512",
    }
}

fn group_name(g: ike::crypto::DhGroup) -> &'static str {
    use ike::crypto::DhGroup as G;
    match g {
        G::Modp2048 => "modp2048",
        G::Ecp256 => "ecp256",
        G::Ecp384 => "ecp384",
        G::Curve25519 => "x25519",
    }
}

/// e.g. `aes256gcm16-prfsha384-x25519`.
pub fn ike_suite_name(s: &ike::crypto::IkeSuite) -> String {
    let c = match s.cipher {
        IkeCipher::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
        IkeCipher::AesCbc { key_bits } => format!("aes{key_bits}"),
    };
    let prf = match s.prf {
        Prf::HmacSha256 => "prfsha256",
        Prf::HmacSha384 => "prfsha384",
        Prf::HmacSha512 => "prfsha512",
    };
    match s.integ {
        Some(i) => format!("{c}-{}-{prf}-{}", integ_name(i), group_name(s.dh)),
        None => format!("{c}-{prf}-{}", group_name(s.dh)),
    }
}

/// Wireshark's `esp_sa` UAT names (epan/dissectors/packet-ipsec.c).
fn wireshark_esp(a: &ike::EspAlgorithm) -> (&'static str, &'static str) {
    let enc = match a.cipher {
        EspCipher::AesGcm16_128 | EspCipher::AesGcm16_256 => "AES-GCM with 16 octet ICV [RFC4106]",
        EspCipher::AesCbc128 | EspCipher::AesCbc256 => "AES-CBC [RFC3602]",
        EspCipher::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
    };
    let auth = match a.integ {
        None => "NULL",
        Some(Integ::HmacSha256_128) => "HMAC-SHA-256-128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC-SHA-384-192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC-SHA-512-256 [RFC4868]",
    };
    (enc, auth)
}

/// Wireshark's `ikev2_decryption_table` names (packet-isakmp.c).
fn wireshark_ike(s: &ike::crypto::IkeSuite) -> (&'static str, &'static str) {
    let enc = match s.cipher {
        IkeCipher::AesGcm16 { key_bits: 128 } => "AES-GCM-128 with 16 octet ICV [RFC5282]",
        IkeCipher::AesGcm16 { .. } => "AES-GCM-256 with 16 octet ICV [RFC5282]",
        IkeCipher::AesCbc { key_bits: 128 } => "AES-CBC-128 [RFC3602]",
        IkeCipher::AesCbc { .. } => "AES-CBC-256 [RFC3602]",
    };
    let integ = match s.integ {
        None => "NONE [RFC4306]",
        Some(Integ::HmacSha256_128) => "HMAC_SHA2_256_128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC_SHA2_384_192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC_SHA2_512_256 [RFC4868]",
    };
    (enc, integ)
}

/// The engine configuration for a tunnel's `[tunnel.ike]`.
pub fn engine_config(t: &Tunnel) -> Result<ike::Config, Error> {
    let ic = t
        .ike
        .as_ref()
        .ok_or_else(|| format!("tunnel {}: no [tunnel.ike]", t.name))?;
    let mut c = ike::Config::new(
        SocketAddr::new(t.endpoints.local, IKE_PORT),
        SocketAddr::new(t.endpoints.remote, IKE_PORT),
        ike_id(&ic.local_id),
        ike_id(&ic.remote_id),
        SecretBytes::new(ic.psk.expose().to_vec()),
    );
    c.nat_t_port = NAT_T_PORT;
    c.ike_proposals = ike_proposals(&ic.proposals);
    c.esp_proposals = esp_proposals(&ic.esp_proposals);
    if c.ike_proposals.is_empty() || c.esp_proposals.is_empty() {
        return Err(format!(
            "tunnel {}: none of the configured IKE or ESP proposals is implemented by the IKE engine (it has aes-gcm/aes-cbc, sha256/384/512, modp2048/ecp256/ecp384/x25519, no ESN)",
            t.name
        )
        .into());
    }
    for p in &t.policies {
        if matches!(p.action, Action::Protect(_)) {
            let s = &p.selector;
            c.local_ts.push(ts_of(&s.src, s.protocol, &s.src_ports));
            c.remote_ts.push(ts_of(&s.dst, s.protocol, &s.dst_ports));
        }
    }
    c.start = match ic.start_action {
        config::StartAction::Initiate => StartAction::Initiate,
        config::StartAction::Listen => StartAction::Listen,
    };
    c.timers.ike_lifetime_ms = ic.ike_lifetime.as_millis() as u64;
    c.timers.child_lifetime_ms = ic.child_lifetime.as_millis() as u64;
    c.timers.dpd_interval_ms = ic.dpd_interval.map_or(0, |d| d.as_millis() as u64);
    c.force_encap = ic.force_encap;
    c.limits = ike::Limits {
        max_traffic_selectors: ic.max_traffic_selectors,
        max_selectors: ic.max_selectors,
        max_child_sas: ic.max_child_sas,
    };
    c.fragmentation.enabled = ic.fragmentation;
    c.fragmentation.size = ic.fragment_size;
    c.redirect = ic.redirect.clone();
    c.follow_redirects = ic.follow_redirects;
    // Certificate authentication (validated and loaded by the config).
    c.local_auth = match (&ic.local_auth, &ic.credential) {
        (config::IkeAuth::Pubkey, Some(cr)) => ike::LocalAuth::Pubkey(cr.loaded.clone()),
        (config::IkeAuth::Pubkey, None) => {
            return Err(format!("tunnel {}: local_auth pubkey without certificate", t.name).into())
        }
        (config::IkeAuth::Psk, _) => ike::LocalAuth::Psk,
    };
    c.remote_auth = match (&ic.remote_auth, &ic.trust) {
        (config::IkeAuth::Pubkey, Some(tr)) => ike::RemoteAuth::Pubkey(tr.store.clone()),
        (config::IkeAuth::Pubkey, None) => {
            return Err(format!(
                "tunnel {}: remote_auth pubkey without ca_certificates",
                t.name
            )
            .into())
        }
        (config::IkeAuth::Psk, _) => ike::RemoteAuth::Psk,
    };
    Ok(c)
}

/// [`engine_config`] with the gateway-wide admission limits of `[control]`.
fn engine_config_in(config: &GatewayConfig, t: &Tunnel) -> Result<ike::Config, Error> {
    engine_config_with_siblings(config, t).map(|(c, _)| c)
}

/// A responder template's part of the engine configuration: its
/// identities, `[[secret]]` by identity, and the other templates on its
/// local address by theirs (tags are indexes into the names returned).
fn template_config(config: &GatewayConfig, t: &Tunnel) -> Option<(ike::Template, Vec<String>)> {
    let pattern = t.ike.as_ref()?.remote_ids.as_ref()?;
    let mut siblings = IdDirectory::new();
    let mut names = Vec::new();
    for o in &config.tunnels {
        let Some(op) = o.ike.as_ref().and_then(|i| i.remote_ids.as_ref()) else {
            continue;
        };
        if o.name == t.name || o.endpoints.local != t.endpoints.local {
            continue;
        }
        // Validation refused two templates with one pattern on an address.
        if siblings.insert(id_pattern(op), names.len() as u32).is_ok() {
            names.push(o.name.clone());
        }
    }
    Some((
        ike::Template {
            remote_ids: vec![id_pattern(pattern)],
            secrets: Arc::new(secret_directory(config)),
            siblings: Arc::new(siblings),
        },
        names,
    ))
}

/// [`engine_config_in`] and, for a template, the names of its siblings.
fn engine_config_with_siblings(
    config: &GatewayConfig,
    t: &Tunnel,
) -> Result<(ike::Config, Vec<String>), Error> {
    let mut c = engine_config(t)?;
    let mut names = Vec::new();
    if let Some((template, n)) = template_config(config, t) {
        c.template = Some(template);
        names = n;
    }
    let ctl = &config.control;
    c.cookie_threshold = ctl.ike_cookie_threshold;
    c.half_open_per_source = ctl.ike_half_open_per_source;
    c.half_open_max = ctl.ike_half_open_max;
    c.cookie_secret_lifetime_ms = ctl.ike_cookie_secret_lifetime.as_millis() as u64;
    Ok((c, names))
}

/// Parses a punted IP packet into (source, destination, UDP payload).
fn parse_udp(packet: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.protocol() != IpProtocol::UDP || ip.is_fragment() {
                return None;
            }
            let hl = usize::from(ip.header_len());
            let total = usize::from(ip.total_len());
            let udp = UdpPacket::new_checked(packet.get(hl..total)?).ok()?;
            let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            let (sp, dp) = (udp.src_port(), udp.dst_port());
            let len = usize::from(udp.len());
            Some((
                SocketAddr::new(src, sp),
                SocketAddr::new(dst, dp),
                packet.get(hl + 8..hl + len)?,
            ))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let ext = ip.ext_headers().ok()?;
            if ext.upper_protocol != IpProtocol::UDP || ext.fragment.is_some() {
                return None;
            }
            // `upper_offset` counts from the start of the packet.
            let off = ext.upper_offset;
            let end = 40 + usize::from(ip.payload_len());
            let udp = UdpPacket::new_checked(packet.get(off..end)?).ok()?;
            let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            let (sp, dp) = (udp.src_port(), udp.dst_port());
            let len = usize::from(udp.len());
            Some((
                SocketAddr::new(src, sp),
                SocketAddr::new(dst, dp),
                packet.get(off + 8..off + len)?,
            ))
        }
        _ => None,
    }
}

/// An IPv4 or IPv6 packet carrying one UDP datagram, checksums filled.
pub fn build_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8], ident: u16) -> Option<Vec<u8>> {
    let udp_len = 8 + payload.len();
    let udp_repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len: u16::try_from(payload.len()).ok()?,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut buf = vec![0u8; 20 + udp_len];
            let repr = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: IpProtocol::UDP,
                payload_len: u16::try_from(udp_len).ok()?,
                ttl: 64,
                dscp: 0,
                ecn: 0,
                ident,
                dont_frag: false,
                more_frags: false,
                frag_offset: 0,
            };
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]))
                .ok()?;
            let mut udp = UdpPacket::new_unchecked(&mut buf[20..]);
            udp_repr.emit(&mut udp).ok()?;
            udp.payload_mut()[..payload.len()].copy_from_slice(payload);
            udp.fill_checksum_v4(s, d);
            Some(buf)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut buf = vec![0u8; 40 + udp_len];
            let repr = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::UDP,
                payload_len: u16::try_from(udp_len).ok()?,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]))
                .ok()?;
            let mut udp = UdpPacket::new_unchecked(&mut buf[40..]);
            udp_repr.emit(&mut udp).ok()?;
            udp.payload_mut()[..payload.len()].copy_from_slice(payload);
            udp.fill_checksum_v6(s, d);
            Some(buf)
        }
        _ => None,
    }
}

/// Key bytes as hex, wiped when dropped.
fn secret_hex(b: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(hex::encode(b))
}

/// Makes the key log directory (mode 0700) unless it exists; refuses a
/// symbolic link, whoever made it (the configuration check ran before).
fn keylog_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let refuse = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} {why}", dir.display()),
        ))
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => return refuse("is a symbolic link"),
        Ok(m) if !m.is_dir() => return refuse("is not a directory"),
        Ok(_) => {}
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?,
    }
    let m = std::fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() || !m.is_dir() {
        return refuse("changed while being made");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Tunnels with IKE.
fn tunnels_len_hint(config: &GatewayConfig) -> usize {
    config.tunnels.iter().filter(|t| t.ike.is_some()).count()
}

/// The data-plane SA of one direction of a Child SA of tunnel `t`.
fn sa_config(t: &Tunnel, keys: &ChildSaKeys, dir: Direction) -> Result<SaConfig, Error> {
    let spi = match dir {
        Direction::Inbound => keys.inbound_spi,
        Direction::Outbound => keys.outbound_spi,
    };
    let spi = Spi::new(spi).map_err(|e| e.to_string())?;
    let endpoints = TunnelEndpoints {
        local: keys.local_addr.ip(),
        remote: keys.remote_addr.ip(),
    };
    let mut c = SaConfig::new(spi, dir, t.mode, endpoints);
    c.udp_encap = keys.udp_encap.map(|u| UdpEncap {
        src_port: u.local_port,
        dst_port: u.remote_port,
    });
    c.esn = keys.esn;
    c.replay_window = t.replay_window;
    c.lifetime = t.lifetime;
    c.dscp = t.dscp;
    c.df = t.df;
    c.outer_ttl = t.outer_ttl;
    c.traffic_selectors = match dir {
        Direction::Inbound => selectors(&keys.remote_ts, &keys.local_ts),
        Direction::Outbound => selectors(&keys.local_ts, &keys.remote_ts),
    };
    Ok(c)
}

/// Whether tunnel `t` routes return traffic per peer: a responder
/// template (many peers on one configuration) or a tunnel handing out
/// virtual IPs. Its configured policies stay in the SPD as the upper
/// bound the peers' selectors were narrowed from, but its own outbound
/// slot stays empty: traffic inside that bound that no peer claimed is
/// dropped (counted by the workers as having no SA) instead of going to
/// whichever peer came last.
pub fn routes_per_peer(t: &Tunnel) -> bool {
    t.is_template() || t.ike.as_ref().is_some_and(|i| !i.pools.is_empty())
}

/// `(IPv6, first, last)` address range of each distinct destination
/// prefix of `selectors`.
fn dst_ranges(selectors: &[Selector]) -> Vec<(bool, u128, u128)> {
    let mut v: Vec<(bool, u128, u128)> = selectors
        .iter()
        .map(|s| {
            let (v6, width, bits) = match s.dst.addr() {
                IpAddr::V4(a) => (false, 32u32, u128::from(u32::from(a))),
                IpAddr::V6(a) => (true, 128, u128::from(a)),
            };
            let host = width - u32::from(s.dst.prefix_len()).min(width);
            let span = if host >= 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
            (v6, bits, bits | span)
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn overlaps(a: &(bool, u128, u128), b: &(bool, u128, u128)) -> bool {
    a.0 == b.0 && a.1 <= b.2 && b.1 <= a.2
}

/// One return route per peer: each Child SA's outbound SA behind SPD
/// entries from its negotiated selectors (local TS to remote TS: the
/// peer's inner subnet or virtual IP). The oldest Child SA claiming a
/// destination wins it: so a rekeyed Child SA keeps its route until its
/// Delete is exchanged and the successor (same selectors, same key) then
/// takes the same slot, make before break; and of two peers claiming
/// overlapping subnets the first keeps its route and the later gets none
/// (counted in `peer_route_conflicts` when it arrives), so that a peer
/// can not pull another's traffic to itself by claiming its addresses.
/// Each check is O(log n) in a map of the claimed, disjoint ranges.
fn peer_routes<'a>(children: impl Iterator<Item = &'a ChildInfo>) -> Vec<crate::sa::PeerRoute> {
    let mut order: Vec<&ChildInfo> = children.collect();
    order.sort_by_key(|c| c.order);
    // (IPv6, first) -> last: disjoint by construction.
    let mut claimed: BTreeMap<(bool, u128), u128> = BTreeMap::new();
    let mut routes = Vec::new();
    for c in order {
        let sels = &c.outbound.config.traffic_selectors;
        let ranges = dst_ranges(sels);
        if ranges.is_empty() {
            continue;
        }
        if ranges.iter().any(|r| clash(&claimed, r)) {
            continue;
        }
        // A Child SA's own ranges may nest (several selectors): the widest
        // of each nest comes first and is the one kept.
        let mut widest = ranges.clone();
        widest.sort_unstable_by_key(|r| (r.0, r.1, std::cmp::Reverse(r.2)));
        let mut key = String::new();
        for r in &widest {
            if !clash(&claimed, r) {
                claimed.insert((r.0, r.1), r.2);
            }
            let _ = write!(key, "{}:{:x}-{:x} ", u8::from(r.0), r.1, r.2);
        }
        routes.push(crate::sa::PeerRoute {
            key,
            selectors: sels.clone(),
            outbound: c.outbound.clone(),
        });
    }
    routes
}

/// Whether range `r` overlaps one of `claimed` (disjoint ranges by
/// first address): only its predecessor and successor can.
fn clash(claimed: &BTreeMap<(bool, u128), u128>, r: &(bool, u128, u128)) -> bool {
    let before = claimed
        .range(..=(r.0, r.1))
        .next_back()
        .is_some_and(|(&(v6, _), &last)| v6 == r.0 && last >= r.1);
    let after = claimed
        .range((r.0, r.1)..)
        .next()
        .is_some_and(|(&(v6, first), _)| v6 == r.0 && first <= r.2);
    before || after
}

/// A Child SA's data-plane SAs, `(inbound, outbound)`: the SPIs,
/// addresses, UDP encapsulation and selectors IKE negotiated, the
/// tunnel's mode, replay window, lifetimes and outer header settings.
pub fn child_specs(t: &Tunnel, keys: &ChildSaKeys) -> Result<(SaSpec, SaSpec), Error> {
    let algorithm = dataplane_algorithm(&keys.algorithm);
    let spec = |dir, k: &ike::crypto::DirectionKeys| -> Result<SaSpec, Error> {
        Ok(SaSpec {
            algorithm,
            config: sa_config(t, keys, dir)?,
            keys: SaKeys::new(&k.encryption, &k.integrity),
        })
    };
    Ok((
        spec(Direction::Inbound, &keys.inbound)?,
        spec(Direction::Outbound, &keys.outbound)?,
    ))
}

impl IkeDriver {
    /// An engine for every tunnel with `[tunnel.ike]`, started at `now`
    /// (the origin of the engines' clock), each drawing its SPIs, nonces
    /// and D-H private values from an RNG that `rng` makes.
    pub fn new(
        config: &GatewayConfig,
        now: Instant,
        rng: &mut dyn FnMut() -> Box<dyn RngSource + Send>,
    ) -> Result<Self, Error> {
        let mut tunnels = Vec::new();
        // The budget holds at most `ike_half_open_max` SAs, so their SPIs
        // fit (the table has twice the room).
        let half_open = Arc::new(KnownIkeSpis::new(config.control.ike_half_open_max));
        let budget = HalfOpenBudget::with_spis(Arc::new(WorkersHalfOpen(half_open.clone())));
        let mut pools = pools::Pools::new(config.control.state_dir.clone());
        for (index, t) in config.tunnels.iter().enumerate() {
            if t.ike.is_none() {
                continue;
            }
            let shared = (&budget, &mut pools, Timestamp(0));
            tunnels.push(Self::tunnel_ike(config, index, t, now, rng(), shared)?);
        }
        Ok(Self {
            origin: now,
            tunnels,
            actions: Vec::new(),
            sas_changed: false,
            stats: DriverStats::default(),
            ident: 1,
            keylog_started: BTreeSet::new(),
            child_order: 0,
            budget,
            // Room for an IKE SA, its rekeyed successor and one being
            // deleted per tunnel.
            known: Arc::new(KnownIkeSpis::new(
                (tunnels_len_hint(config) + KNOWN_SPIS_HEADROOM) * 3,
            )),
            half_open,
            known_dirty: false,
            known_refreshed: now,
            half_open_log: LogBudget::default(),
            events: Vec::new(),
            pools,
        })
    }

    /// The engine and state of IKE tunnel `t` at SPD slot `index`.
    fn tunnel_ike(
        config: &GatewayConfig,
        index: usize,
        t: &Tunnel,
        now: Instant,
        rng: Box<dyn RngSource + Send>,
        (budget, pools, at): (&HalfOpenBudget, &mut pools::Pools, Timestamp),
    ) -> Result<TunnelIke, Error> {
        let ic = t
            .ike
            .as_ref()
            .ok_or_else(|| format!("tunnel {}: no [tunnel.ike]", t.name))?;
        let (mut engine, siblings) = engine_config_with_siblings(config, t)?;
        engine.pools = pools
            .shared(&config.pools, &ic.pools, at)
            .map_err(|e| format!("tunnel {}: {e}", t.name))?;
        engine.unix_time_at_origin_ms = unix_ms_at(now);
        let endpoint = Endpoint::with_budget(engine, rng, budget.clone())
            .map_err(|e| format!("tunnel {}: {e}", t.name))?;
        if let Some(d) = &ic.keylog_dir {
            tracing::warn!(tunnel = %t.name, dir = %d.display(), "IKE: keylog_dir is set: every IKE and ESP key of this tunnel is written to disk in clear (debugging only; remove keylog_dir in production)");
        }
        Ok(TunnelIke {
            index,
            tunnel: t.clone(),
            endpoint,
            keylog_dir: ic.keylog_dir.clone(),
            state: LinkState::Down,
            last_down: None,
            ike: None,
            children: BTreeMap::new(),
            active_out: None,
            retiring: Vec::new(),
            next_keepalive: now + KEEPALIVE,
            reinitiate_at: None,
            failures: 0,
            peers: BTreeMap::new(),
            siblings,
            leaving: None,
        })
    }

    /// Checks that tunnel `t`'s `[tunnel.ike]` makes an engine, without
    /// changing anything (a reload checks every tunnel before it applies
    /// any).
    pub fn check_tunnel(config: &GatewayConfig, t: &Tunnel) -> Result<(), Error> {
        engine_config_in(config, t).map(|_| ())
    }

    /// The running (not leaving) IKE tunnel called `name`.
    fn find(&self, name: &str) -> Option<usize> {
        self.tunnels
            .iter()
            .position(|t| t.leaving.is_none() && t.tunnel.name == name)
    }

    /// Whether IKE tunnel `name` runs.
    pub fn has_tunnel(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Adds IKE tunnel `t` at SPD slot `slot` (a reload added it, or
    /// `[tunnel.ike]` to it): initiates at once if its start action says
    /// so.
    pub fn add_tunnel(
        &mut self,
        config: &GatewayConfig,
        slot: usize,
        t: &Tunnel,
        now: Instant,
        rng: Box<dyn RngSource + Send>,
    ) -> Result<(), Error> {
        if self.find(&t.name).is_some() {
            return Err(format!("IKE tunnel {} runs already", t.name).into());
        }
        let at = self.engine_time(now);
        let shared = (&self.budget, &mut self.pools, at);
        let mut ti = Self::tunnel_ike(config, slot, t, now, rng, shared)?;
        let at = self.engine_time(now);
        if ti.endpoint.should_initiate() {
            let id = ti.endpoint.initiate(at);
            ti.state = LinkState::Connecting;
            tracing::info!(tunnel = %t.name, spi_i = %format!("{:016x}", id.0), remote = %t.endpoints.remote, "IKE: tunnel added, initiating IKE_SA_INIT");
        } else {
            tracing::info!(tunnel = %t.name, "IKE: tunnel added, waiting for the peer");
        }
        self.tunnels.push(ti);
        self.pump(now);
        Ok(())
    }

    /// Deletes every IKE SA of tunnel `ti` (an INFORMATIONAL exchange with
    /// a Delete payload, RFC 7296 §1.4.1, for an established one; a
    /// half-open one just goes) and forgets its Child SAs' data-plane
    /// SAs. No re-initiation follows.
    fn delete_ike_sas(&mut self, ti: usize, now: Instant) -> usize {
        let at = self.engine_time(now);
        let t = &mut self.tunnels[ti];
        let ids = t.endpoint.ike_sa_ids();
        for id in &ids {
            let _ = t.endpoint.terminate(at, *id);
        }
        if !t.children.is_empty() || !t.retiring.is_empty() || t.active_out.is_some() {
            self.sas_changed = true;
        }
        t.children.clear();
        t.retiring.clear();
        t.active_out = None;
        t.reinitiate_at = None;
        t.failures = 0;
        t.ike = None;
        t.peers.clear();
        t.state = LinkState::Down;
        t.last_down = Some(DownReason::Terminated);
        ids.len()
    }

    /// Removes IKE tunnel `name`: its IKE SA is deleted with the peer
    /// (the engine stays until the DELETE is answered or
    /// `LEAVING_MAX`), its Child SAs' data-plane SAs are no longer
    /// wanted. False: no such IKE tunnel.
    pub fn remove_tunnel(&mut self, now: Instant, name: &str) -> bool {
        let Some(ti) = self.find(name) else {
            return false;
        };
        let n = self.delete_ike_sas(ti, now);
        self.tunnels[ti].leaving = Some(now + LEAVING_MAX);
        tracing::info!(tunnel = %name, ike_sas = n, "IKE: tunnel removed, its IKE SA deleted");
        self.pump(now);
        true
    }

    /// Takes tunnel `name`'s new configuration `t` at slot `slot`. With
    /// `reestablish` (its peer, address, identities, PSK or traffic
    /// selectors changed) the IKE SA is deleted and, for an initiator,
    /// negotiated again at once; otherwise the established SAs stay and
    /// the new settings are used from the next exchange. A tunnel that
    /// now initiates and is down initiates.
    pub fn update_tunnel(
        &mut self,
        config: &GatewayConfig,
        slot: usize,
        t: &Tunnel,
        reestablish: bool,
        now: Instant,
    ) -> Result<(), Error> {
        let ti = self
            .find(&t.name)
            .ok_or_else(|| format!("no IKE tunnel {:?}", t.name))?;
        let (mut engine, siblings) = engine_config_with_siblings(config, t)?;
        let names = t.ike.as_ref().map(|i| i.pools.clone()).unwrap_or_default();
        let at = self.engine_time(now);
        engine.pools = self
            .pools
            .shared(&config.pools, &names, at)
            .map_err(|e| format!("tunnel {}: {e}", t.name))?;
        engine.unix_time_at_origin_ms = unix_ms_at(self.origin);
        if reestablish {
            let n = self.delete_ike_sas(ti, now);
            tracing::info!(tunnel = %t.name, ike_sas = n, "IKE: configuration changed what the IKE SA was negotiated for; deleting it");
        }
        let tk = &mut self.tunnels[ti];
        tk.endpoint
            .set_config(engine)
            .map_err(|e| format!("tunnel {}: {e}", t.name))?;
        tk.tunnel = t.clone();
        tk.siblings = siblings;
        tk.index = slot;
        tk.keylog_dir = t.ike.as_ref().and_then(|i| i.keylog_dir.clone());
        if tk.endpoint.should_initiate() && tk.state == LinkState::Down {
            let at = self.engine_time(now);
            let tk = &mut self.tunnels[ti];
            let id = tk.endpoint.initiate(at);
            tk.state = LinkState::Connecting;
            tk.reinitiate_at = None;
            tracing::info!(tunnel = %t.name, spi_i = %format!("{:016x}", id.0), "IKE: initiating with the new configuration");
        }
        self.pump(now);
        Ok(())
    }

    /// Takes the gateway-wide IKE admission bounds of `[control]` that can
    /// change while running (the cookie threshold and the half-open SAs
    /// per source) into every engine.
    pub fn set_admission(&mut self, control: &config::ControlConfig) {
        for t in &mut self.tunnels {
            let mut c = t.endpoint.config().clone();
            c.cookie_threshold = control.ike_cookie_threshold;
            c.half_open_per_source = control.ike_half_open_per_source;
            let _ = t.endpoint.set_config(c);
        }
    }

    /// Starts IKE for tunnel `name` now (socket command `initiate`): for
    /// a tunnel that waits for its peer, or one that was terminated.
    pub fn initiate(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let ti = self
            .find(name)
            .ok_or_else(|| format!("no IKE tunnel {name:?}"))?;
        let t = &self.tunnels[ti];
        if t.state != LinkState::Down {
            let state = if t.state == LinkState::Up {
                "up"
            } else {
                "connecting"
            };
            return Err(format!("tunnel {name} is {state} already"));
        }
        let at = self.engine_time(now);
        let t = &mut self.tunnels[ti];
        let id = t.endpoint.initiate(at);
        t.state = LinkState::Connecting;
        t.reinitiate_at = None;
        tracing::info!(tunnel = %name, spi_i = %format!("{:016x}", id.0), "IKE: initiating on request");
        self.pump(now);
        Ok(format!(
            "initiating tunnel {name}: IKE_SA_INIT spi_i {:016x} sent\n",
            id.0
        ))
    }

    /// Deletes tunnel `name`'s IKE SA with the peer (socket command
    /// `terminate`; RFC 7296 §1.4.1: the Delete payload takes its Child
    /// SAs along) and its Child SAs' data-plane SAs. The tunnel stays
    /// configured and does not initiate again until asked to (or a
    /// reload re-establishes it); a listening tunnel still answers its
    /// peer.
    pub fn terminate(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let ti = self
            .find(name)
            .ok_or_else(|| format!("no IKE tunnel {name:?}"))?;
        let n = self.delete_ike_sas(ti, now);
        tracing::info!(tunnel = %name, ike_sas = n, "IKE: tunnel terminated on request");
        self.pump(now);
        if n == 0 {
            return Ok(format!("tunnel {name} had no IKE SA\n"));
        }
        Ok(format!(
            "terminated tunnel {name}: {n} IKE SA(s) deleted, Child SAs removed\n"
        ))
    }

    /// Drops the removed tunnels whose DELETE is done (or that waited
    /// long enough).
    fn purge_leaving(&mut self, now: Instant) {
        self.tunnels.retain(|t| {
            let done = t
                .leaving
                .is_some_and(|until| now >= until || t.endpoint.ike_sa_count() == 0);
            if done {
                tracing::debug!(tunnel = %t.tunnel.name, "IKE: removed tunnel's engine dropped");
            }
            !done
        });
    }

    /// The table of authenticated IKE SPIs the workers read.
    pub fn known_spis(&self) -> Arc<KnownIkeSpis> {
        self.known.clone()
    }

    /// The tables of authenticated and half-open IKE SPIs the workers
    /// classify IKE datagrams by.
    pub fn spi_tables(&self) -> IkeSpiTables {
        IkeSpiTables {
            known: self.known.clone(),
            half_open: self.half_open.clone(),
        }
    }

    fn refresh_known_spis(&mut self, now: Instant) {
        let spis: Vec<u64> = self
            .tunnels
            .iter()
            .flat_map(|t| t.endpoint.authenticated_spis())
            .collect();
        self.stats.known_spis_missed = self.known.replace(spis) as u64;
        self.known_dirty = false;
        self.known_refreshed = now;
    }

    /// Whether any tunnel uses IKE.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    /// The engines' clock at `now`.
    fn engine_time(&self, now: Instant) -> Timestamp {
        Timestamp(now.saturating_duration_since(self.origin).as_millis() as u64)
    }

    /// Starts the tunnels whose start action is `initiate`.
    pub fn start(&mut self, now: Instant) {
        let at = self.engine_time(now);
        for t in &mut self.tunnels {
            if t.endpoint.should_initiate() {
                let id = t.endpoint.initiate(at);
                t.state = LinkState::Connecting;
                tracing::info!(tunnel = %t.tunnel.name, spi_i = %format!("{:016x}", id.0), remote = %t.tunnel.endpoints.remote, "IKE: initiating IKE_SA_INIT");
            }
        }
        self.pump(now);
    }

    /// The actions accumulated since the last call.
    pub fn take_actions(&mut self) -> Vec<IkeAction> {
        std::mem::take(&mut self.actions)
    }

    /// The events for the control API's subscribers since the last call.
    pub fn take_events(&mut self) -> Vec<crate::api::Event> {
        std::mem::take(&mut self.events)
    }

    /// The data-plane SAs every IKE tunnel wants now: the inbound SA of
    /// each Child SA (a rekeyed one's until its grace period ends) and
    /// the outbound SA of the one in service; on a template or a tunnel
    /// with pools, one return route per peer instead of the tunnel's
    /// slot (see [`routes_per_peer`]).
    pub fn sas(&self) -> Wanted {
        let mut w = Wanted::new();
        for t in self.tunnels.iter().filter(|t| t.leaving.is_none()) {
            let sas = w.tunnel_mut(t.index);
            sas.inbound.extend(
                t.children
                    .values()
                    .chain(t.retiring.iter().map(|(_, c)| c))
                    .map(|c| c.inbound.clone()),
            );
            if routes_per_peer(&t.tunnel) {
                sas.peers = peer_routes(t.children.values());
            } else {
                sas.outbound = t
                    .active_out
                    .and_then(|id| t.children.get(&id))
                    .map(|c| c.outbound.clone());
            }
        }
        w
    }

    /// Whether [`IkeDriver::sas`] changed since the last call.
    pub fn take_sas_changed(&mut self) -> bool {
        std::mem::take(&mut self.sas_changed)
    }

    /// Counts data-plane SAs of IKE tunnels that failed to build.
    pub fn count_install_errors(&mut self, n: usize) {
        self.stats.sa_install_errors += n as u64;
    }

    /// A packet a worker punted, received at `now`.
    pub fn handle_punt(&mut self, now: Instant, packet: &[u8]) {
        let Some((remote, local, payload)) = parse_udp(packet) else {
            self.stats.unmatched += 1;
            return;
        };
        let msg = match local.port() {
            IKE_PORT => payload,
            NAT_T_PORT => match classify_port_4500(payload) {
                Port4500::Ike(m) => m,
                Port4500::Keepalive => {
                    self.stats.keepalives_received += 1;
                    return;
                }
                _ => {
                    self.stats.unmatched += 1;
                    return;
                }
            },
            _ => {
                self.stats.unmatched += 1;
                return;
            }
        };
        let Ok((hdr, _)) = Header::decode(msg) else {
            self.stats.unmatched += 1;
            return;
        };
        let new_sa =
            hdr.exchange == ExchangeType::IKE_SA_INIT && !hdr.flags.response() && hdr.spi_r == 0;
        let pos = if new_sa {
            self.tunnel_for_init(local, remote)
        } else {
            // RFC 7296 §2.23: an IKE SA is named by its SPIs, not by the
            // addresses, which a NAT may change.
            let ours = if hdr.flags.initiator() {
                hdr.spi_r
            } else {
                hdr.spi_i
            };
            let pos = self
                .tunnels
                .iter()
                .position(|t| t.endpoint.has_ike_sa(ours));
            if pos.is_none() {
                self.stats.unknown_spi += 1;
                return;
            }
            pos
        };
        let Some(pos) = pos else {
            self.stats.init_no_tunnel += 1;
            return;
        };
        self.stats.rx_packets += 1;
        let at = self.engine_time(now);
        self.update_redirect_load(pos);
        self.tunnels[pos]
            .endpoint
            .handle_datagram(at, local, remote, msg);
        self.pump(now);
    }

    /// RFC 5685 `redirect = "load"`: tells tunnel `pos`'s engine how many
    /// IKE SAs the whole gateway holds, summed over the engines only when
    /// its policy needs it.
    fn update_redirect_load(&mut self, pos: usize) {
        if !self.tunnels[pos].endpoint.config().redirect.wants_load() {
            return;
        }
        let load = self.tunnels.iter().map(|t| t.endpoint.load_count()).sum();
        self.tunnels[pos].endpoint.set_gateway_load(load);
    }

    /// The tunnel a new IKE_SA_INIT request goes to: the one whose
    /// addresses it carries; else (a peer behind a NAT) the only listening
    /// tunnel on the local address it was sent to. With several listening
    /// tunnels there the peer's identity, which only IKE_AUTH carries,
    /// would decide: such requests are dropped rather than handed to an
    /// arbitrary tunnel.
    ///
    /// Responder templates come after the tunnels naming the peer: the
    /// first template on the local address whose prefixes hold the peer
    /// takes the request; its siblings there (same IKE proposals and
    /// prefixes, checked by the configuration) get the SA at IKE_AUTH if
    /// the identity is theirs ([`IkeEvent::Handoff`]).
    fn tunnel_for_init(&self, local: SocketAddr, remote: SocketAddr) -> Option<usize> {
        let exact = self.tunnels.iter().position(|t| {
            t.leaving.is_none()
                && !t.tunnel.is_template()
                && t.tunnel.endpoints.local == local.ip()
                && t.tunnel.endpoints.remote == remote.ip()
        });
        if exact.is_some() {
            return exact;
        }
        let template = self.tunnels.iter().position(|t| {
            t.leaving.is_none()
                && t.tunnel.endpoints.local == local.ip()
                && t.tunnel
                    .remote_prefixes
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| p.contains(&remote.ip())))
        });
        if template.is_some() {
            return template;
        }
        let mut listening = self
            .tunnels
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.leaving.is_none()
                    && !t.tunnel.is_template()
                    && t.tunnel.endpoints.local == local.ip()
                    && !t.endpoint.should_initiate()
            })
            .map(|(i, _)| i);
        match (listening.next(), listening.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    }

    /// Timers: the engines', grace periods, keepalives, re-initiation.
    pub fn tick(&mut self, wall: Instant) {
        let now = self.engine_time(wall);
        for t in &mut self.tunnels {
            if t.endpoint.poll_timeout().is_some_and(|at| at <= now) {
                t.endpoint.handle_timeout(now);
            }
            if t.reinitiate_at.is_some_and(|at| at <= wall) {
                t.reinitiate_at = None;
                if t.state == LinkState::Down && t.leaving.is_none() {
                    let id = t.endpoint.initiate(now);
                    t.state = LinkState::Connecting;
                    tracing::info!(tunnel = %t.tunnel.name, spi_i = %format!("{:016x}", id.0), "IKE: initiating again");
                }
            }
        }
        self.pump(wall);
        self.purge_leaving(wall);
        if self.known_dirty || wall >= self.known_refreshed + KNOWN_SPIS_REFRESH {
            self.refresh_known_spis(wall);
        }
        for ti in 0..self.tunnels.len() {
            let t = &mut self.tunnels[ti];
            let before = t.retiring.len();
            t.retiring.retain(|(at, c)| {
                let keep = *at > wall;
                if !keep {
                    tracing::info!(tunnel = %t.tunnel.name, spi = %c.inbound.spi(), "remove rekeyed inbound SA after grace period");
                }
                keep
            });
            if t.retiring.len() != before {
                self.sas_changed = true;
            }
            let t = &mut self.tunnels[ti];
            if wall >= t.next_keepalive {
                t.next_keepalive = wall + KEEPALIVE;
                let encap = t.children.values().any(|c| c.keys.udp_encap.is_some());
                if let (true, Some(ike)) = (encap, &t.ike) {
                    let (l, r) = (ike.local, ike.remote);
                    if let Some(p) = build_udp(l, r, &[0xff], self.ident) {
                        self.ident = self.ident.wrapping_add(1);
                        self.stats.keepalives_sent += 1;
                        self.actions.push(IkeAction::Transmit(p));
                    }
                }
            }
        }
    }

    /// A data-plane SA event: lifetimes and sequence numbers ask for a
    /// rekey (a hard limit means the SA already stopped: rekeying replaces
    /// it).
    pub fn handle_sa_event(&mut self, now: Instant, event: EngineEvent) -> bool {
        // Outbound events name the peer's SPI, inbound ones ours.
        let (outbound, spi, ev): (bool, u32, SaEvent) = match event {
            EngineEvent::Outbound(_, spi, ev) => (true, spi.get(), ev),
            EngineEvent::Inbound(spi, ev) => (false, spi.get(), ev),
        };
        let find = |k: &ChildSaKeys| {
            if outbound {
                k.outbound_spi == spi
            } else {
                k.inbound_spi == spi
            }
        };
        let at = self.engine_time(now);
        for t in self.tunnels.iter_mut().filter(|t| t.leaving.is_none()) {
            let hit = t
                .children
                .values()
                .find(|c| !c.rekeyed && find(&c.keys))
                .map(|c| c.keys.id);
            if let Some(id) = hit {
                tracing::info!(tunnel = %t.tunnel.name, child = %format!("{:08x}", id.0), ?ev, "IKE: data-plane event, rekeying the Child SA");
                let _ = t.endpoint.rekey_child(at, id);
                self.pump(now);
                return true;
            }
        }
        false
    }

    /// Rekeys every Child SA of tunnel `name` (socket command `rekey`).
    pub fn rekey(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let at = self.engine_time(now);
        let ti = self
            .find(name)
            .ok_or_else(|| format!("no IKE tunnel {name:?}"))?;
        let t = &mut self.tunnels[ti];
        let ids: Vec<ChildSaId> = t
            .children
            .values()
            .filter(|c| !c.rekeyed)
            .map(|c| c.keys.id)
            .collect();
        if ids.is_empty() {
            return Err(format!("tunnel {name} has no Child SA to rekey"));
        }
        for id in &ids {
            t.endpoint.rekey_child(at, *id).map_err(|e| e.to_string())?;
        }
        tracing::info!(tunnel = %name, children = ids.len(), "IKE: Child SA rekey requested");
        self.pump(now);
        Ok(format!("rekeying {} Child SA(s) of {name}\n", ids.len()))
    }

    /// RFC 5685 §5 (socket command `redirect`): sends the clients of
    /// tunnel `name`'s established IKE SAs to `gateway`; those that did
    /// not announce REDIRECT_SUPPORTED stay.
    pub fn redirect(&mut self, now: Instant, name: &str, gateway: &str) -> Result<String, String> {
        let g = ike::message::GatewayIdentity::parse(gateway)
            .ok_or_else(|| format!("{gateway:?} is neither an IP address nor a host name"))?;
        let ti = self
            .find(name)
            .ok_or_else(|| format!("no IKE tunnel {name:?}"))?;
        if g == ike::message::GatewayIdentity::Ip(self.tunnels[ti].tunnel.endpoints.local) {
            return Err(format!("{gateway} is tunnel {name}'s own address"));
        }
        let at = self.engine_time(now);
        let e = &mut self.tunnels[ti].endpoint;
        let (mut sent, mut refused) = (0, 0);
        for id in e.established_ike_sas() {
            match e.redirect_established(at, id, g.clone()) {
                Ok(()) => sent += 1,
                Err(_) => refused += 1,
            }
        }
        if sent + refused == 0 {
            return Err(format!("tunnel {name} has no established IKE SA"));
        }
        tracing::info!(tunnel = %name, to = %g, sent, refused, "IKE: redirecting established clients (RFC 5685)");
        self.pump(now);
        Ok(format!(
            "redirecting {sent} client(s) of {name} to {g}; {refused} did not announce REDIRECT_SUPPORTED\n"
        ))
    }

    /// Drains every engine's datagrams and events.
    fn pump(&mut self, now: Instant) {
        // A hand-over feeds another engine, maybe one already drained:
        // go round again (a hand-over never hands over again, so at
        // most twice more).
        for _ in 0..3 {
            if !self.pump_once(now) {
                break;
            }
        }
        if self.known_dirty {
            self.refresh_known_spis(now);
        }
        // Leases the engines handed out or gave back (remote access).
        self.pools.persist();
    }

    /// One round of [`IkeDriver::pump`]; whether a half-open SA was handed
    /// to another engine.
    fn pump_once(&mut self, now: Instant) -> bool {
        let mut handed = false;
        for ti in 0..self.tunnels.len() {
            while let Some(tx) = self.tunnels[ti].endpoint.poll_transmit() {
                let dgram = tx.datagram();
                if let Some(p) = build_udp(tx.local, tx.remote, &dgram, self.ident) {
                    self.ident = self.ident.wrapping_add(1);
                    self.stats.tx_packets += 1;
                    self.actions.push(IkeAction::Transmit(p));
                }
            }
            while let Some(ev) = self.tunnels[ti].endpoint.poll_event() {
                if matches!(
                    ev,
                    IkeEvent::IkeSaUp { .. }
                        | IkeEvent::IkeSaRekeyed { .. }
                        | IkeEvent::IkeSaDown { .. }
                ) {
                    self.known_dirty = true;
                }
                handed |= matches!(ev, IkeEvent::Handoff { .. });
                self.on_event(ti, ev, now);
            }
        }
        handed
    }

    /// Moves half-open IKE SA `ike` of template `ti` to its sibling with
    /// tag `to`, which processes the IKE_AUTH request again.
    fn hand_over(
        &mut self,
        ti: usize,
        ike: IkeSaId,
        to: u32,
        (local, remote): (SocketAddr, SocketAddr),
        message: ike::HandedMessage,
        wall: Instant,
    ) {
        let target = self.tunnels[ti]
            .siblings
            .get(to as usize)
            .and_then(|name| self.find(name));
        // Found first: a taken SA must land somewhere (its half-open
        // place goes with it).
        let Some(tj) = target else {
            tracing::warn!(tunnel = %self.tunnels[ti].tunnel.name, "IKE: the template for the peer's identity is gone; the half-open SA times out");
            return;
        };
        let Some(sa) = self.tunnels[ti].endpoint.take_half_open(ike) else {
            return;
        };
        tracing::debug!(from = %self.tunnels[ti].tunnel.name, to = %self.tunnels[tj].tunnel.name, %remote, "IKE: IKE_AUTH identity belongs to a sibling template; SA handed over");
        if self.tunnels[tj].endpoint.adopt(sa) {
            let at = self.engine_time(wall);
            self.tunnels[tj]
                .endpoint
                .handle_handed(at, local, remote, message);
        }
    }

    fn on_event(&mut self, ti: usize, ev: IkeEvent, wall: Instant) {
        match ev {
            IkeEvent::Handoff {
                ike,
                to,
                local,
                remote,
                message,
            } => self.hand_over(ti, ike, to, (local, remote), message, wall),
            IkeEvent::IkeSaUp { ike, local, remote } => {
                let t = &mut self.tunnels[ti];
                t.state = LinkState::Up;
                t.last_down = None;
                t.failures = 0;
                t.ike = Some(IkeInfo {
                    id: ike,
                    local,
                    remote,
                    since: wall,
                });
                t.peers.insert(
                    ike.0,
                    IkeInfo {
                        id: ike,
                        local,
                        remote,
                        since: wall,
                    },
                );
                let secrets = t.endpoint.ike_sa_secrets(ike);
                let suite = secrets
                    .as_ref()
                    .map(|s| ike_suite_name(&s.suite))
                    .unwrap_or_default();
                let spis = secrets
                    .as_ref()
                    .map(|s| format!("{:016x}_i {:016x}_r", s.spi_i, s.spi_r))
                    .unwrap_or_default();
                let identity = t
                    .endpoint
                    .peer_id(ike)
                    .map_or_else(String::new, identity_text);
                tracing::info!(tunnel = %t.tunnel.name, %local, %remote, %identity, ike_spis = %spis, %suite, "IKE: IKE SA established (IKE_SA_INIT + IKE_AUTH, PSK authenticated)");
                let (spi_i, spi_r) = secrets.as_ref().map_or_else(
                    || (format!("{:016x}", ike.0), String::new()),
                    |s| (format!("{:016x}", s.spi_i), format!("{:016x}", s.spi_r)),
                );
                let tunnel = t.tunnel.name.clone();
                self.events.push(Event::TunnelUp {
                    tunnel: tunnel.clone(),
                });
                self.events.push(Event::IkeSaEstablished {
                    tunnel,
                    spi_i,
                    spi_r,
                    local: local.to_string(),
                    remote: remote.to_string(),
                });
                if let Some(s) = secrets {
                    self.keylog_ike(ti, &s);
                }
            }
            IkeEvent::IkeSaRekeyed { old, new } => {
                let t = &mut self.tunnels[ti];
                if let Some(info) = &mut t.ike {
                    if info.id == old {
                        info.id = new;
                        info.since = wall;
                    }
                }
                if let Some(mut info) = t.peers.remove(&old.0) {
                    info.id = new;
                    t.peers.insert(new.0, info);
                }
                let secrets = t.endpoint.ike_sa_secrets(new);
                tracing::info!(tunnel = %t.tunnel.name, old = %format!("{:016x}", old.0), new = %format!("{:016x}", new.0), "IKE: IKE SA rekeyed");
                self.events.push(Event::IkeSaRekeyed {
                    tunnel: t.tunnel.name.clone(),
                    old: format!("{:016x}", old.0),
                    new: format!("{:016x}", new.0),
                });
                if let Some(s) = secrets {
                    self.keylog_ike(ti, &s);
                }
            }
            IkeEvent::IkeSaDown { ike, reason } => {
                let t = &mut self.tunnels[ti];
                if reason != DownReason::HalfOpenTimeout {
                    tracing::warn!(tunnel = %t.tunnel.name, spi = %format!("{:016x}", ike.0), ?reason, "IKE: IKE SA down");
                } else if let Some(left_out) = self.half_open_log.take(wall) {
                    tracing::warn!(tunnel = %t.tunnel.name, spi = %format!("{:016x}", ike.0), left_out, "IKE: half-open IKE SA timed out (lines left out since the last)");
                }
                // With no IKE SA recorded, a Terminated one is the end of
                // a delete this side asked for, whose state was set then:
                // a new attempt may be under way.
                let current = match &t.ike {
                    Some(i) => i.id == ike,
                    None => reason != DownReason::Terminated,
                };
                let gone_peer = t.peers.remove(&ike.0);
                let gone = gone_peer.is_some();
                // A template's peer is where its IKE SA was.
                let peer_addr = gone_peer
                    .map_or(t.tunnel.endpoints.remote, |p| p.remote.ip())
                    .to_string();
                // A template is up while any peer is.
                let current = if t.tunnel.is_template() {
                    gone && t.peers.is_empty()
                } else {
                    current
                };
                // Half-open timeouts are mostly spoofed IKE_SA_INITs: not
                // worth an event each.
                if reason != DownReason::HalfOpenTimeout {
                    let tunnel = t.tunnel.name.clone();
                    self.events.push(Event::IkeSaDeleted {
                        tunnel: tunnel.clone(),
                        spi: format!("{:016x}", ike.0),
                        reason: format!("{reason:?}"),
                    });
                    match reason {
                        DownReason::PeerDead => self.events.push(Event::DpdTimeout {
                            tunnel,
                            remote: peer_addr,
                        }),
                        DownReason::AuthenticationFailed => {
                            self.events.push(Event::AuthenticationFailed { tunnel })
                        }
                        _ => {}
                    }
                }
                if current && t.state != LinkState::Down {
                    self.events.push(Event::TunnelDown {
                        tunnel: t.tunnel.name.clone(),
                        reason: format!("{reason:?}"),
                    });
                }
                if current {
                    t.ike = None;
                    t.state = LinkState::Down;
                    t.last_down = Some(reason);
                    // The peer went away, the SA ran out or an attempt failed
                    // (possibly forged by someone on the path): an initiator
                    // tries again, backing off; a deliberate delete is
                    // respected.
                    let retry = !matches!(
                        reason,
                        DownReason::DeletedByPeer | DownReason::Terminated | DownReason::Replaced
                    );
                    if t.endpoint.should_initiate() && retry && t.leaving.is_none() {
                        let delay = reinitiate_delay(t.failures);
                        t.failures = t.failures.saturating_add(1);
                        t.reinitiate_at = Some(wall + delay);
                        tracing::info!(tunnel = %t.tunnel.name, delay_s = delay.as_secs(), "IKE: will initiate again");
                    }
                }
            }
            IkeEvent::ChildSaUp(keys) => {
                let t = &self.tunnels[ti];
                tracing::info!(tunnel = %t.tunnel.name, spi_in = %format!("{:08x}", keys.inbound_spi), spi_out = %format!("{:08x}", keys.outbound_spi), alg = %esp_algorithm_name(&keys.algorithm), encap = keys.udp_encap.is_some(), "IKE: Child SA established");
                self.events.push(Event::ChildSaInstalled {
                    tunnel: t.tunnel.name.clone(),
                    spi_in: format!("{:08x}", keys.inbound_spi),
                    spi_out: format!("{:08x}", keys.outbound_spi),
                    algorithm: esp_algorithm_name(&keys.algorithm),
                });
                self.keylog_esp(ti, &keys);
                if let Some(id) = self.add_child(ti, keys, wall) {
                    self.switch_outbound(ti, id);
                }
            }
            IkeEvent::ChildSaRekeyed { old, new } => {
                let t = &mut self.tunnels[ti];
                tracing::info!(tunnel = %t.tunnel.name, old = %format!("{:08x}", old.0), spi_in = %format!("{:08x}", new.inbound_spi), spi_out = %format!("{:08x}", new.outbound_spi), alg = %esp_algorithm_name(&new.algorithm), "IKE: Child SA rekeyed (new inbound SA installed; outbound moves when the old SA is deleted)");
                if let Some(c) = t.children.get_mut(&old.0) {
                    c.rekeyed = true;
                }
                self.events.push(Event::ChildSaRekeyed {
                    tunnel: t.tunnel.name.clone(),
                    old: format!("{:08x}", old.0),
                    spi_in: format!("{:08x}", new.inbound_spi),
                    spi_out: format!("{:08x}", new.outbound_spi),
                });
                self.keylog_esp(ti, &new);
                if let Some(id) = self.add_child(ti, new, wall) {
                    // No outbound Child SA at all (e.g. it failed to
                    // install): use the new one right away.
                    if self.tunnels[ti].active_out.is_none() {
                        self.switch_outbound(ti, id);
                    }
                }
            }
            IkeEvent::ChildSaDeleted { id, .. } => {
                let t = &mut self.tunnels[ti];
                let Some(c) = t.children.remove(&id.0) else {
                    return;
                };
                self.sas_changed = true;
                tracing::info!(tunnel = %t.tunnel.name, spi_in = %format!("{:08x}", c.keys.inbound_spi), spi_out = %format!("{:08x}", c.keys.outbound_spi), rekeyed = c.rekeyed, "IKE: Child SA deleted");
                self.events.push(Event::ChildSaDeleted {
                    tunnel: t.tunnel.name.clone(),
                    spi_in: format!("{:08x}", c.keys.inbound_spi),
                    spi_out: format!("{:08x}", c.keys.outbound_spi),
                });
                let successor = t
                    .children
                    .iter()
                    .filter(|(_, n)| !n.rekeyed)
                    .max_by_key(|(_, n)| n.since)
                    .map(|(k, _)| *k);
                if t.active_out == Some(id.0) {
                    match successor {
                        Some(n) => self.switch_outbound(ti, n),
                        None => {
                            tracing::info!(tunnel = %self.tunnels[ti].tunnel.name, "no Child SA left to send on");
                            self.tunnels[ti].active_out = None;
                        }
                    }
                }
                let t = &mut self.tunnels[ti];
                // A successor deleted before its predecessor (a rekey the
                // initiator refused, RFC 7296 §2.9): the predecessor is in
                // service again, and lifetime-driven rekeys must find it.
                if !c.rekeyed && successor.is_none() {
                    if let Some(back) = t.children.values_mut().max_by_key(|n| n.since) {
                        back.rekeyed = false;
                    }
                }
                // A rekeyed Child SA's inbound half stays a while: packets
                // the peer sent on it may still be in flight. Otherwise it
                // goes with the Child SA.
                if c.rekeyed && successor.is_some() {
                    t.retiring.push((wall + REKEYED_GRACE, c));
                }
            }
            IkeEvent::PeerMoved { ike, local, remote } => {
                let t = &mut self.tunnels[ti];
                tracing::info!(tunnel = %t.tunnel.name, %local, %remote, "IKE: the peer's address changed (NAT); rekeying its Child SAs onto it");
                if let Some(info) = t.ike.as_mut().filter(|i| i.id == ike) {
                    info.local = local;
                    info.remote = remote;
                }
                if let Some(info) = t.peers.get_mut(&ike.0) {
                    info.local = local;
                    info.remote = remote;
                }
            }
            IkeEvent::ChildSaFailed { notify, .. } => {
                tracing::warn!(tunnel = %self.tunnels[ti].tunnel.name, ?notify, "IKE: Child SA not established");
            }
            IkeEvent::Redirected { old, from, to, .. } => {
                // RFC 5685: the attempt goes on with the new gateway; the
                // tunnel is connecting (an established IKE SA that was
                // redirected goes quietly), and its Child SAs will name
                // the new gateway's address as their outer destination.
                let t = &mut self.tunnels[ti];
                if t.ike.as_ref().is_some_and(|i| i.id == old) {
                    t.ike = None;
                    t.state = LinkState::Connecting;
                }
                tracing::info!(tunnel = %t.tunnel.name, %from, %to, "IKE: redirected by the gateway (RFC 5685); IKE_SA_INIT to the new one");
            }
            IkeEvent::VirtualIps { ike, addrs } => {
                tracing::info!(tunnel = %self.tunnels[ti].tunnel.name, spi = %format!("{:016x}", ike.0), ?addrs, "IKE: virtual IP");
            }
            IkeEvent::VirtualIpsReleased { ike, addrs } => {
                tracing::info!(tunnel = %self.tunnels[ti].tunnel.name, spi = %format!("{:016x}", ike.0), ?addrs, "IKE: virtual IP released to its pool");
            }
            IkeEvent::PeerUnresponsive { remote, .. } => {
                tracing::warn!(tunnel = %self.tunnels[ti].tunnel.name, %remote, "IKE: peer not answering; resolving its next hop afresh before giving up");
                self.actions.push(IkeAction::Reresolve(remote.ip()));
            }
        }
    }

    /// Records a new Child SA of tunnel `ti` with its data-plane SAs;
    /// `None` (counted) when they cannot be described.
    fn add_child(&mut self, ti: usize, keys: ChildSaKeys, wall: Instant) -> Option<u32> {
        let t = &mut self.tunnels[ti];
        match child_specs(&t.tunnel, &keys) {
            Ok((inbound, outbound)) => {
                if routes_per_peer(&t.tunnel) {
                    let mine = dst_ranges(&outbound.config.traffic_selectors);
                    let taken = t.children.values().find(|c| {
                        !c.rekeyed
                            && c.keys.ike != keys.ike
                            && dst_ranges(&c.outbound.config.traffic_selectors)
                                .iter()
                                .any(|r| mine.iter().any(|m| overlaps(r, m)))
                    });
                    if let Some(first) = taken {
                        tracing::warn!(tunnel = %t.tunnel.name, spi_in = %format!("{:08x}", keys.inbound_spi), first = %format!("{:08x}", first.keys.inbound_spi), "IKE: the Child SA's remote traffic selectors overlap another peer's; the first keeps the return route");
                        self.stats.peer_route_conflicts += 1;
                    }
                }
                let id = keys.inbound_spi;
                self.child_order += 1;
                t.children.insert(
                    id,
                    ChildInfo {
                        keys,
                        inbound,
                        outbound,
                        since: wall,
                        order: self.child_order,
                        rekeyed: false,
                    },
                );
                self.sas_changed = true;
                Some(id)
            }
            Err(e) => {
                tracing::error!(tunnel = %t.tunnel.name, error = %e, "cannot describe the Child SA's data-plane SAs");
                self.stats.sa_install_errors += 1;
                None
            }
        }
    }

    /// Outbound traffic of tunnel `ti` moves to Child SA `child`.
    fn switch_outbound(&mut self, ti: usize, child: u32) {
        let t = &mut self.tunnels[ti];
        let Some(c) = t.children.get(&child) else {
            return;
        };
        tracing::info!(tunnel = %t.tunnel.name, spi_out = %format!("{:08x}", c.keys.outbound_spi), "outbound traffic moves to this Child SA");
        t.active_out = Some(child);
        self.sas_changed = true;
    }

    // ------------------------------------------------------------------
    // Key log (Wireshark UAT files)

    fn keylog_esp(&mut self, ti: usize, k: &ChildSaKeys) {
        let Some(dir) = self.tunnels[ti].keylog_dir.clone() else {
            return;
        };
        let fam = if k.local_addr.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        };
        let (enc, auth) = wireshark_esp(&k.algorithm);
        let line = |src: IpAddr, dst: IpAddr, spi: u32, keys: &ike::crypto::DirectionKeys| {
            let mut l = Zeroizing::new(String::with_capacity(512));
            let _ = write!(
                l,
                "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{enc}\",\"0x{}\",\"{auth}\",\"",
                *secret_hex(&keys.encryption)
            );
            if !keys.integrity.is_empty() {
                let _ = write!(l, "0x{}", *secret_hex(&keys.integrity));
            }
            l.push_str("\"\n");
            l
        };
        let (l, r) = (k.local_addr.ip(), k.remote_addr.ip());
        let lines = [
            line(l, r, k.outbound_spi, &k.outbound),
            line(r, l, k.inbound_spi, &k.inbound),
        ];
        self.write_keylog(&dir, "esp_sa", &lines);
    }

    fn keylog_ike(&mut self, ti: usize, s: &IkeSaSecrets) {
        let Some(dir) = self.tunnels[ti].keylog_dir.clone() else {
            return;
        };
        let (enc, integ) = wireshark_ike(&s.suite);
        let mut line = Zeroizing::new(String::with_capacity(512));
        let _ = writeln!(
            line,
            "{:016x},{:016x},{},{},\"{enc}\",{},{},\"{integ}\"",
            s.spi_i,
            s.spi_r,
            *secret_hex(&s.sk_ei),
            *secret_hex(&s.sk_er),
            *secret_hex(&s.sk_ai),
            *secret_hex(&s.sk_ar)
        );
        self.write_keylog(&dir, "ikev2_decryption_table", &[line]);
    }

    /// Appends key log lines to `dir/name` (the files are started afresh
    /// by each run). The directory is made with mode 0700 and must not be
    /// a symbolic link; the files are opened with `O_NOFOLLOW` and kept at
    /// mode 0600. The lines are wiped from memory once written.
    fn write_keylog(&mut self, dir: &Path, name: &str, lines: &[Zeroizing<String>]) {
        let first = !self.keylog_started.contains(dir);
        if first {
            if let Err(e) = keylog_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "key log not written");
                return;
            }
        }
        let write =
            |name: &str, truncate: bool, lines: &[Zeroizing<String>]| -> std::io::Result<()> {
                use std::io::Write;
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(truncate)
                    .append(!truncate)
                    .mode(0o600)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(dir.join(name))?;
                // An existing file keeps its mode on open: enforce 0600.
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                for l in lines {
                    f.write_all(l.as_bytes())?;
                }
                Ok(())
            };
        if first {
            // Both files start empty, so a capture is never decrypted
            // with a previous run's keys.
            for n in ["esp_sa", "ikev2_decryption_table"] {
                if let Err(e) = write(n, true, &[]) {
                    tracing::warn!(dir = %dir.display(), file = n, error = %e, "cannot start the key log");
                    return;
                }
            }
            self.keylog_started.insert(dir.to_path_buf());
        }
        if let Err(e) = write(name, false, lines) {
            tracing::warn!(dir = %dir.display(), file = name, error = %e, "cannot write the key log");
        }
    }

    // ------------------------------------------------------------------
    // Reports

    /// The IKE tunnels for the control API's `tunnels`, `ike-sas` and
    /// `child-sas` (without SA counters, which the workers have).
    pub fn tunnel_views(&self, now: Instant) -> Vec<crate::api::TunnelView> {
        use crate::api::{ChildSaView, IkeSaView, PeerView, TunnelView};
        let secs = |since: Instant| now.saturating_duration_since(since).as_secs();
        self.tunnels
            .iter()
            .map(|t| {
                let name = &t.tunnel.name;
                let ike_view = |ike: &IkeInfo| {
                    let sec = t.endpoint.ike_sa_secrets(ike.id)?;
                    Some(IkeSaView {
                        tunnel: name.clone(),
                        spi_i: format!("{:016x}", sec.spi_i),
                        spi_r: format!("{:016x}", sec.spi_r),
                        role: if sec.initiator {
                            "initiator"
                        } else {
                            "responder"
                        }
                        .into(),
                        suite: ike_suite_name(&sec.suite),
                        local: ike.local.to_string(),
                        remote: ike.remote.to_string(),
                        age_s: secs(ike.since),
                        virtual_ips: t
                            .endpoint
                            .virtual_ips(ike.id)
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    })
                };
                let template = t.tunnel.is_template();
                let ike_sa = t.ike.as_ref().filter(|_| !template).and_then(ike_view);
                let child = |c: &ChildInfo, state: &str| ChildSaView {
                    tunnel: name.clone(),
                    kind: "ike".into(),
                    spi_in: format!("{:08x}", c.keys.inbound_spi),
                    spi_out: format!("{:08x}", c.keys.outbound_spi),
                    algorithm: esp_algorithm_name(&c.keys.algorithm),
                    encap: if c.keys.udp_encap.is_some() {
                        "udp-encap"
                    } else {
                        "esp"
                    }
                    .into(),
                    state: state.into(),
                    age_s: Some(secs(c.since)),
                    inbound: None,
                    outbound: None,
                };
                // Per-peer routing: each Child SA holding a return route
                // is active.
                let routed: BTreeSet<u32> = if routes_per_peer(&t.tunnel) {
                    peer_routes(t.children.values())
                        .iter()
                        .map(|r| r.outbound.spi().get())
                        .collect()
                } else {
                    BTreeSet::new()
                };
                let mut child_sas: Vec<ChildSaView> = t
                    .children
                    .values()
                    .map(|c| {
                        let state = if t.active_out == Some(c.keys.inbound_spi)
                            && !routes_per_peer(&t.tunnel)
                            || routed.contains(&c.keys.outbound_spi)
                        {
                            "active"
                        } else if c.rekeyed {
                            "rekeyed"
                        } else {
                            "standby"
                        };
                        child(c, state)
                    })
                    .collect();
                child_sas.extend(t.retiring.iter().map(|(_, c)| child(c, "retiring")));
                // How the template's peers authenticate (RFC 7296 §2.15).
                let peer_auth = match t.tunnel.ike.as_ref().map(|i| i.remote_auth) {
                    Some(config::IkeAuth::Pubkey) => "pubkey",
                    _ => "psk",
                };
                let peers: Vec<PeerView> = if template {
                    t.peers
                        .values()
                        .filter_map(|p| {
                            let mine = |c: &&ChildInfo| c.keys.ike == p.id;
                            let spis: BTreeSet<u32> = t
                                .children
                                .values()
                                .chain(t.retiring.iter().map(|(_, c)| c))
                                .filter(mine)
                                .map(|c| c.keys.inbound_spi)
                                .collect();
                            Some(PeerView {
                                identity: t
                                    .endpoint
                                    .peer_id(p.id)
                                    .map_or_else(|| "?".into(), identity_text),
                                auth: peer_auth.into(),
                                ike_sa: ike_view(p)?,
                                child_sas: child_sas
                                    .iter()
                                    .filter(|c| {
                                        u32::from_str_radix(&c.spi_in, 16)
                                            .is_ok_and(|s| spis.contains(&s))
                                    })
                                    .cloned()
                                    .collect(),
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let peer = match &t.tunnel.remote_prefixes {
                    Some(ps) if ps.len() == 1 && ps[0].prefix_len() == 0 => "%any".to_string(),
                    Some(ps) => ps
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    None => t.tunnel.endpoints.remote.to_string(),
                };
                TunnelView {
                    name: name.clone(),
                    kind: "ike".into(),
                    local: t.tunnel.endpoints.local.to_string(),
                    peer,
                    peers,
                    state: match t.state {
                        // Removed by a reload, its DELETE not yet answered.
                        _ if t.leaving.is_some() => "removed-deleting",
                        LinkState::Up => "up",
                        LinkState::Connecting => "connecting",
                        LinkState::Down => "down",
                    }
                    .into(),
                    last_down: match (t.state, t.last_down) {
                        (LinkState::Down | LinkState::Connecting, Some(r)) => {
                            Some(format!("{r:?}"))
                        }
                        _ => None,
                    },
                    failures: t.reinitiate_at.map(|_| t.failures),
                    retry_in_s: t
                        .reinitiate_at
                        .map(|at| at.saturating_duration_since(now).as_secs()),
                    ike_sa,
                    child_sas,
                }
            })
            .collect()
    }

    /// `ike.*` lines for `espresso stats`.
    pub fn stats_lines(&self) -> String {
        self.stats_snapshot().to_text()
    }

    /// The counters as [`crate::stats`] reports them.
    pub fn stats_snapshot(&self) -> crate::stats::IkeSnapshot {
        use crate::stats::{Counts, IkeSnapshot, IkeTunnelSnapshot};
        let st = &self.stats;
        let pool = self.pools.stats_total();
        let counters = Counts(vec![
            ("rx_packets", st.rx_packets),
            ("tx_packets", st.tx_packets),
            ("keepalives_sent", st.keepalives_sent),
            ("keepalives_received", st.keepalives_received),
            ("unmatched", st.unmatched),
            ("unknown_spi", st.unknown_spi),
            ("init_no_tunnel", st.init_no_tunnel),
            ("sa_install_errors", st.sa_install_errors),
            ("peer_route_conflicts", st.peer_route_conflicts),
            ("half_open_spis_missed", self.budget.spis_missed()),
            ("pool_write_errors", self.pools.write_errors),
            // Virtual IP pools, all together: addresses refused for want
            // of one (`exhausted`) and requests for an address outside the
            // pool or held by another identity (`requested_replaced`).
            ("pool_allocated", pool.allocated),
            ("pool_reused", pool.reused),
            ("pool_requested_honoured", pool.requested_honoured),
            ("pool_requested_replaced", pool.requested_replaced),
            ("pool_reclaimed", pool.reclaimed),
            ("pool_exhausted", pool.exhausted),
            ("pool_released", pool.released),
            ("pool_restore_dropped", pool.restore_dropped),
        ]);
        let gauges = Counts(vec![
            ("known_spis_missed", st.known_spis_missed),
            ("half_open", self.budget.total() as u64),
            // Virtual IPs held by IKE SAs, and reserved for clients gone.
            (
                "pool_leases_online",
                self.pools.usage().iter().map(|u| u.1 as u64).sum(),
            ),
            (
                "pool_leases_offline",
                self.pools.usage().iter().map(|u| u.2 as u64).sum(),
            ),
        ]);
        // Messages refused for the rule the peer broke, all tunnels
        // together (RFC 7296 §2.21 maps each to a notify or a silent drop).
        let protocol_errors = Counts(
            ike::ProtocolError::ALL
                .iter()
                .map(|&e| {
                    let v: u64 = self
                        .tunnels
                        .iter()
                        .map(|t| t.endpoint.stats().protocol_errors.get(e))
                        .sum();
                    (e.name(), v)
                })
                .collect(),
        );
        // IKE fragments refused (RFC 7383 §2.6), all tunnels together.
        let fragment_refusals = Counts(
            ike::FragmentRefusal::ALL
                .iter()
                .map(|&r| {
                    let v: u64 = self
                        .tunnels
                        .iter()
                        .map(|t| t.endpoint.stats().fragments.refused.get(r))
                        .sum();
                    (r.name(), v)
                })
                .collect(),
        );
        let tunnels = self
            .tunnels
            .iter()
            .map(|t| {
                let e = t.endpoint.stats();
                IkeTunnelSnapshot {
                    name: t.tunnel.name.clone(),
                    index: t.index,
                    up: t.state == LinkState::Up,
                    ike_sas: u64::from(t.ike.is_some()),
                    child_sas: t.children.len() as u64,
                    half_open: t.endpoint.half_open() as u64,
                    counters: Counts(
                        vec![
                            ("rx_datagrams", e.rx_datagrams),
                            ("tx_datagrams", e.tx_datagrams),
                            ("malformed", e.malformed),
                            ("unsupported_critical", e.unsupported_critical),
                            ("unknown_spi", e.unknown_spi),
                            ("integrity_failures", e.integrity_failures),
                            ("invalid_message_id", e.invalid_message_id),
                            ("retransmits", e.retransmits),
                            ("replayed_responses", e.replayed_responses),
                            ("cookies_sent", e.cookies_sent),
                            ("cookies_invalid", e.cookies_invalid),
                            ("cookie_secret_rotations", e.cookie_secret_rotations),
                            (
                                "half_open_refused_per_source",
                                e.half_open_refused_per_source,
                            ),
                            ("half_open_refused_max", e.half_open_refused_max),
                            ("invalid_ke_sent", e.invalid_ke_sent),
                            ("no_proposal_chosen", e.no_proposal_chosen),
                            ("auth_failures", e.auth_failures),
                            ("auth_refused_identity", e.auth_refused_identity),
                            (
                                "auth_refused_unknown_identity",
                                e.auth_refused_unknown_identity,
                            ),
                            ("auth_refused_method", e.auth_refused_method),
                            ("auth_refused_bad_auth", e.auth_refused_bad_auth),
                            ("handoffs", e.handoffs),
                            ("ike_sa_established", e.ike_sa_established),
                            ("child_sa_established", e.child_sa_established),
                            ("peers_dead", e.peers_dead),
                            ("child_no_proposal_chosen", e.child_no_proposal_chosen),
                            ("ts_unacceptable", e.ts_unacceptable),
                            ("ts_over_limit", e.ts_over_limit),
                            ("child_sa_limit", e.child_sa_limit),
                            ("init_errors_ignored", e.init_errors_ignored),
                            ("bad_nonce", e.bad_nonce),
                            ("not_established", e.not_established),
                            ("exchange_mismatch", e.exchange_mismatch),
                            ("peer_moved", e.peer_moved),
                            ("peer_reresolves", e.peer_reresolves),
                            ("invalid_major_version", e.invalid_major_version),
                            ("zero_spi_i", e.zero_spi_i),
                            ("payload_not_allowed", e.payload_not_allowed),
                            ("count_mismatch", e.count_mismatch),
                            ("bad_spi_size", e.bad_spi_size),
                            ("bad_cfg_attribute", e.bad_cfg_attribute),
                            ("cp_address_failures", e.cp_address_failures),
                            ("cp_required_missing", e.cp_required_missing),
                            ("virtual_ips_assigned", e.virtual_ips_assigned),
                            ("encode_errors", e.encode_errors),
                            ("fragmented_messages", e.fragments.messages_fragmented),
                            ("fragments_sent", e.fragments.fragments_sent),
                            ("fragments_received", e.fragments.fragments_received),
                            ("reassembled_messages", e.fragments.messages_reassembled),
                            ("reassembly_restarts", e.fragments.restarted),
                            // RFC 5685 redirect.
                            ("redirects_sent_init", e.redirects_sent_init),
                            ("redirects_sent_auth", e.redirects_sent_auth),
                            (
                                "redirects_sent_informational",
                                e.redirects_sent_informational,
                            ),
                            ("redirect_not_supported", e.redirect_not_supported),
                            ("redirects_followed", e.redirects_followed),
                            ("redirect_malformed", e.redirect_malformed),
                            ("redirect_nonce_mismatch", e.redirect_nonce_mismatch),
                            ("redirect_unsolicited", e.redirect_unsolicited),
                            ("redirect_loop_refused", e.redirect_loop_refused),
                            ("redirect_unresolved", e.redirect_unresolved),
                        ]
                        .into_iter()
                        // Certificate refusals by reason (cert_ prefixed).
                        .chain(e.cert.fields())
                        .collect(),
                    ),
                }
            })
            .collect();
        IkeSnapshot {
            counters,
            gauges,
            protocol_errors,
            fragment_refusals,
            tunnels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `espresso tunnels` prints for the driver's tunnels.
    fn tunnels_text(d: &IkeDriver) -> String {
        d.tunnel_views(t0())
            .iter()
            .map(crate::client::tunnel_text)
            .collect()
    }
    use dataplane::gateway::ControlMsg;

    /// The tests' clock: one fixed instant (time moves only where a test
    /// moves it).
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// A driver for `config` at [`t0`] whose engines draw from seeded
    /// generators (`seed`, `seed + 1`, … one per tunnel).
    fn driver(config: &GatewayConfig, seed: u64) -> IkeDriver {
        let mut next = seed << 32;
        IkeDriver::new(config, t0(), &mut || {
            next += 1;
            Box::new(ike::sim::SplitMix(next))
        })
        .unwrap()
    }

    fn gateway(site: char, start: &str, keylog: &std::path::Path) -> GatewayConfig {
        GatewayConfig::from_str(&gateway_text(site, start, keylog), "test.toml").unwrap()
    }

    fn gateway_text(site: char, start: &str, keylog: &std::path::Path) -> String {
        let (me, peer, mine, theirs, lid, rid) = if site == 'a' {
            (
                "192.0.2.1",
                "192.0.2.2",
                "10.1.0.0/24",
                "10.2.0.0/24",
                "gw-a.example",
                "gw-b.example",
            )
        } else {
            (
                "192.0.2.2",
                "192.0.2.1",
                "10.2.0.0/24",
                "10.1.0.0/24",
                "gw-b.example",
                "gw-a.example",
            )
        };
        let text = format!(
            r#"
[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["{lan}"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["{me}/24"]
[[tunnel]]
name = "t"
local_addrs = "{me}"
remote_addrs = "{peer}"
  [[tunnel.policy]]
  local_ts = "{mine}"
  remote_ts = "{theirs}"
  [tunnel.ike]
  local_id = "{lid}"
  remote_id = "{rid}"
  psk = "an example PSK for the driver test"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "{start}"
  force_encap = true
  keylog_dir = "{}"
"#,
            keylog.display(),
            lan = if site == 'a' {
                "10.1.0.1/24"
            } else {
                "10.2.0.1/24"
            },
        );
        text
    }

    /// A planner for a one-worker gateway with the tests' configuration.
    fn planner() -> crate::sa::Planner {
        let c = gateway('a', "listen", Path::new("/nonexistent"));
        crate::sa::Planner::new(1, c.dataplane.crypto_backend, vec!["t".into()])
    }

    /// Moves every packet one driver sends into the other, carrying out
    /// each driver's SA changes first as the control thread does; returns
    /// the worker messages each side's planner sent.
    fn exchange_planned(
        a: &mut IkeDriver,
        pa: &mut crate::sa::Planner,
        b: &mut IkeDriver,
        pb: &mut crate::sa::Planner,
    ) -> (Vec<ControlMsg>, Vec<ControlMsg>) {
        let (mut sa_a, mut sa_b) = (Vec::new(), Vec::new());
        fn step(
            from: &mut IkeDriver,
            planner: &mut crate::sa::Planner,
            to: &mut IkeDriver,
            keep: &mut Vec<ControlMsg>,
        ) -> bool {
            if from.take_sas_changed() {
                let plan = planner.plan(&[&from.sas()]);
                assert!(plan.failed.is_empty(), "{:?}", plan.failed);
                keep.extend(planner.commit(plan).into_iter().map(|(_, m)| m));
            }
            let mut moved = false;
            for act in from.take_actions() {
                if let IkeAction::Transmit(p) = act {
                    moved = true;
                    to.handle_punt(t0(), &p);
                }
            }
            moved
        }
        for _ in 0..10 {
            let moved = step(a, pa, b, &mut sa_a) | step(b, pb, a, &mut sa_b);
            if !moved {
                break;
            }
        }
        step(a, pa, b, &mut sa_a);
        step(b, pb, a, &mut sa_b);
        (sa_a, sa_b)
    }

    /// [`exchange_planned`] with planners of its own.
    fn exchange(a: &mut IkeDriver, b: &mut IkeDriver) -> (Vec<ControlMsg>, Vec<ControlMsg>) {
        exchange_planned(a, &mut planner(), b, &mut planner())
    }

    fn installed(msgs: &[ControlMsg]) -> (Vec<u32>, Vec<u32>) {
        let mut inb = Vec::new();
        let mut out = Vec::new();
        for m in msgs {
            match m {
                ControlMsg::InstallInbound(sa) => inb.push(sa.config().spi.get()),
                ControlMsg::InstallOutbound { sa, .. } => out.push(sa.config().spi.get()),
                _ => {}
            }
        }
        (inb, out)
    }

    /// Two drivers wired back to back through the IP/UDP packets they
    /// build: the tunnel comes up with forced UDP encapsulation, each side
    /// installs the SA the other sends on, a rekey moves both to new SAs,
    /// and the key logs name the same SPIs with mode 0600.
    /// Warnings a spoofer can cause come at most once a second, and the
    /// next one says how many were left out.
    #[test]
    fn half_open_warnings_are_rate_limited() {
        let mut b = LogBudget::default();
        let t0 = Instant::now();
        assert_eq!(b.take(t0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(b.take(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(b.take(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(b.take(t0 + Duration::from_millis(1500)), None);
        assert_eq!(b.take(t0 + Duration::from_secs(60)), Some(1));
    }

    /// A rekey whose new Child SA is deleted before the old one (the
    /// initiator refused the response's selectors, RFC 7296 §2.9) leaves
    /// the old Child SA in service: a data-plane lifetime event on it still
    /// starts a rekey.
    #[test]
    fn a_refused_rekey_puts_the_old_child_sa_back_in_service() {
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-back-{}", std::process::id()));
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 11);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 12);
        a.start(t0());
        exchange(&mut a, &mut b);
        let old = b.tunnels[0].children.values().next().unwrap().keys.clone();
        let mut new = old.clone();
        new.id = ChildSaId(old.id.0 ^ 0x5a5a);
        new.inbound_spi ^= 0x5a5a;
        new.outbound_spi ^= 0x5a5a;
        b.on_event(
            0,
            IkeEvent::ChildSaRekeyed {
                old: old.id,
                new: new.clone(),
            },
            t0(),
        );
        assert!(b.tunnels[0].children[&old.id.0].rekeyed);
        b.on_event(
            0,
            IkeEvent::ChildSaDeleted {
                ike: new.ike,
                id: new.id,
                outbound_spi: new.outbound_spi,
            },
            t0(),
        );
        assert!(!b.tunnels[0].children[&old.id.0].rekeyed);
        let spi = Spi::new(old.inbound_spi).unwrap();
        assert!(b.handle_sa_event(t0(), EngineEvent::Inbound(spi, SaEvent::SoftLifetime)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Delivers what each of `ds` (at `addrs`) sends to the one whose
    /// address it is for, until nothing moves.
    fn route(ds: &mut [IkeDriver], addrs: &[IpAddr]) {
        for _ in 0..20 {
            let mut moved = false;
            for i in 0..ds.len() {
                for act in ds[i].take_actions() {
                    let IkeAction::Transmit(p) = act else {
                        continue;
                    };
                    let (_, dst, _) = parse_udp(&p).unwrap();
                    if let Some(j) = addrs.iter().position(|a| *a == dst.ip()) {
                        moved = true;
                        ds[j].handle_punt(t0(), &p);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// A client configured for gateway A (192.0.2.2) and gateways A and C
    /// (192.0.2.3, the same identity and network), A's `[tunnel.ike]`
    /// with `a_extra`.
    fn farm(dir: &Path, a_extra: &str) -> ([IkeDriver; 3], [IpAddr; 3]) {
        let client = gateway('a', "initiate", &dir.join("c"));
        let a_text = gateway_text('b', "listen", &dir.join("a")).replace(
            "force_encap = true",
            &format!("force_encap = true\n{a_extra}"),
        );
        let b_text = gateway_text('b', "listen", &dir.join("b")).replace("192.0.2.2", "192.0.2.3");
        let gw_a = GatewayConfig::from_str(&a_text, "a.toml").unwrap();
        let gw_b = GatewayConfig::from_str(&b_text, "b.toml").unwrap();
        let ds = [driver(&client, 41), driver(&gw_a, 42), driver(&gw_b, 43)];
        let addrs = ["192.0.2.1", "192.0.2.2", "192.0.2.3"].map(|a| a.parse().unwrap());
        (ds, addrs)
    }

    /// The client is up with C: its IKE SA and its Child SA's outer
    /// destination are C's.
    fn assert_on_c(ds: &[IkeDriver; 3], addrs: &[IpAddr; 3]) {
        let views = ds[0].tunnel_views(t0());
        assert_eq!(views[0].state, "up", "{}", tunnels_text(&ds[0]));
        let ike_sa = views[0].ike_sa.as_ref().unwrap();
        assert_eq!(ike_sa.remote.split(':').next(), Some("192.0.2.3"));
        let w = ds[0].sas();
        let out = w.tunnel(0).and_then(|s| s.outbound.clone()).unwrap();
        assert_eq!(out.config.endpoints.remote, addrs[2]);
        assert_eq!(ds[2].tunnel_views(t0())[0].state, "up");
        assert_ne!(ds[1].tunnel_views(t0())[0].state, "up");
        assert!(ds[0].stats_lines().contains("ike.t.redirects_followed 1\n"));
    }

    /// RFC 5685 through the drivers: A redirects every client to C in
    /// IKE_SA_INIT; the client comes up with C.
    #[test]
    fn a_client_redirected_by_one_gateway_comes_up_on_the_other() {
        let dir = std::env::temp_dir().join(format!("espresso-ikeredir-{}", std::process::id()));
        let (mut ds, addrs) = farm(
            &dir,
            "  redirect = \"always\"\n  redirect_to = [\"192.0.2.3\"]",
        );
        ds[0].start(t0());
        route(&mut ds, &addrs);
        assert_on_c(&ds, &addrs);
        assert!(ds[1]
            .stats_lines()
            .contains("ike.t.redirects_sent_init 1\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// RFC 5685 §5 (`espresso redirect`): the client is up with A, which
    /// then sends it to C; it moves, and A's IKE SA is deleted.
    #[test]
    fn an_established_client_is_redirected_on_request() {
        let dir = std::env::temp_dir().join(format!("espresso-ikeredir5-{}", std::process::id()));
        let (mut ds, addrs) = farm(&dir, "");
        ds[0].start(t0());
        route(&mut ds, &addrs);
        assert_eq!(ds[1].tunnel_views(t0())[0].state, "up");
        assert!(
            ds[1].redirect(t0(), "t", "192.0.2.2").is_err(),
            "its own address"
        );
        assert!(ds[1].redirect(t0(), "nope", "192.0.2.3").is_err());
        let msg = ds[1].redirect(t0(), "t", "192.0.2.3").unwrap();
        assert!(
            msg.starts_with("redirecting 1 client(s) of t to 192.0.2.3"),
            "{msg}"
        );
        route(&mut ds, &addrs);
        assert_on_c(&ds, &addrs);
        assert!(ds[1]
            .stats_lines()
            .contains("ike.t.redirects_sent_informational 1\n"));
        assert!(
            ds[1].redirect(t0(), "t", "192.0.2.3").is_err(),
            "no client left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_drivers_negotiate_install_and_rekey() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-{}", std::process::id()));
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 13);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 14);
        let (mut pa, mut pb) = (planner(), planner());
        a.start(t0());
        let (acts_a, acts_b) = exchange_planned(&mut a, &mut pa, &mut b, &mut pb);
        let (in_a, out_a) = installed(&acts_a);
        let (in_b, out_b) = installed(&acts_b);
        assert_eq!(
            (in_a.len(), out_a.len(), in_b.len(), out_b.len()),
            (1, 1, 1, 1)
        );
        assert_eq!(out_a, in_b);
        assert_eq!(out_b, in_a);
        for acts in [&acts_a, &acts_b] {
            for act in acts.iter() {
                if let ControlMsg::InstallInbound(sa) = act {
                    let c = sa.config();
                    assert_eq!(c.udp_encap, Some(UdpEncap::nat_t()));
                    assert_eq!(c.traffic_selectors.len(), 1);
                }
            }
        }
        assert!(tunnels_text(&a).contains("tunnel t up"));
        assert!(tunnels_text(&b).contains("responder aes128gcm16-prfsha256-ecp256"));
        let stats = a.stats_lines();
        assert!(stats.contains("ike.t.child_sa_established 1\n"), "{stats}");
        // Every rule has its line, zero when no peer broke it.
        for e in ike::ProtocolError::ALL {
            assert!(
                stats.contains(&format!("ike.protocol_errors.{} 0\n", e.name())),
                "{stats}"
            );
        }

        // The API's view and events of the same.
        let views = a.tunnel_views(t0());
        let v = &views[0];
        assert_eq!(
            (v.name.as_str(), v.kind.as_str(), v.state.as_str()),
            ("t", "ike", "up")
        );
        let ike_sa = v.ike_sa.as_ref().expect("an IKE SA");
        assert_eq!(ike_sa.role, "initiator");
        assert_eq!(v.child_sas.len(), 1);
        assert_eq!(v.child_sas[0].state, "active");
        assert_eq!(v.child_sas[0].spi_out, format!("{:08x}", out_a[0]));
        let types = |evs: Vec<Event>| -> Vec<String> {
            evs.iter()
                .map(|e| {
                    serde_json::to_value(e).unwrap()["type"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(
            types(a.take_events()),
            ["tunnel_up", "ike_sa_established", "child_sa_installed"]
        );
        let _ = b.take_events();

        // A rekey started by the responder: new inbound SAs first, then the
        // outbound moves, then the old inbound goes after the grace period.
        b.rekey(t0(), "t").unwrap();
        let (acts_a, acts_b) = exchange_planned(&mut a, &mut pa, &mut b, &mut pb);
        let evs = types(a.take_events());
        assert!(evs.contains(&"child_sa_rekeyed".to_string()), "{evs:?}");
        assert!(evs.contains(&"child_sa_deleted".to_string()), "{evs:?}");
        let (in2_a, out2_a) = installed(&acts_a);
        let (in2_b, out2_b) = installed(&acts_b);
        assert_eq!(
            (in2_a.len(), out2_a.len(), in2_b.len(), out2_b.len()),
            (1, 1, 1, 1)
        );
        assert_eq!(out2_a, in2_b);
        assert_eq!(out2_b, in2_a);
        assert_ne!(in2_a, in_a);
        for acts in [&acts_a, &acts_b] {
            let first_in = acts
                .iter()
                .position(|x| matches!(x, ControlMsg::InstallInbound(_)));
            let first_out = acts
                .iter()
                .position(|x| matches!(x, ControlMsg::InstallOutbound { .. }));
            assert!(first_in < first_out, "inbound before outbound");
            assert!(
                !acts
                    .iter()
                    .any(|x| matches!(x, ControlMsg::RemoveInbound(_))),
                "old inbound kept for the grace period"
            );
        }

        for (d, spi) in [(dir.join("a"), out_a[0]), (dir.join("b"), in_a[0])] {
            let esp = std::fs::read_to_string(d.join("esp_sa")).unwrap();
            assert!(
                esp.contains(&format!(
                    "\"0x{spi:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\""
                )),
                "{esp}"
            );
            assert_eq!(esp.lines().count(), 4);
            let ikev2 = std::fs::read_to_string(d.join("ikev2_decryption_table")).unwrap();
            assert_eq!(ikev2.lines().count(), 1);
            assert!(ikev2.contains("\"AES-GCM-128 with 16 octet ICV [RFC5282]\""));
            let mode = std::fs::metadata(d.join("esp_sa"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The directory the driver made is private.
        let mode = std::fs::metadata(dir.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // Both sides logged the same IKE keys.
        assert_eq!(
            std::fs::read_to_string(dir.join("a/ikev2_decryption_table")).unwrap(),
            std::fs::read_to_string(dir.join("b/ikev2_decryption_table")).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An IKE_SA_INIT request as a punted IP packet from `src`.
    fn init_packet(src: &str, dst: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join("espresso-ikedrv-unused");
        let cfg = gateway('a', "initiate", &dir);
        let mut e = Endpoint::new(
            engine_config(&cfg.tunnels[0]).unwrap(),
            Box::new(SystemRng::new()),
        )
        .unwrap();
        e.initiate(Timestamp(0));
        let t = e.poll_transmit().unwrap();
        build_udp(src.parse().unwrap(), dst.parse().unwrap(), &t.datagram(), 1).unwrap()
    }

    /// A new IKE_SA_INIT from an address no tunnel names goes to the one
    /// listening tunnel on the address it was sent to; with two such
    /// tunnels it is dropped and counted rather than given to the first.
    #[test]
    fn unknown_sources_go_to_the_only_listening_tunnel() {
        let dir =
            std::env::temp_dir().join(format!("espresso-ikedrv-route-{}", std::process::id()));
        let nat = "198.51.100.7:500";
        let mut one = driver(&gateway('b', "listen", &dir), 1);
        one.handle_punt(t0(), &init_packet(nat, "192.0.2.2:500"));
        assert_eq!(one.tunnels[0].endpoint.half_open(), 1);
        assert_eq!(one.stats.init_no_tunnel, 0);
        // Not to a local address of the tunnel: no taker.
        one.handle_punt(t0(), &init_packet(nat, "192.0.2.9:500"));
        assert_eq!(one.stats.init_no_tunnel, 1);

        let text = gateway_text('b', "listen", &dir);
        let second = text[text.find("[[tunnel]]").unwrap()..]
            .replace("name = \"t\"", "name = \"t2\"")
            .replace(
                "remote_addrs = \"192.0.2.1\"",
                "remote_addrs = \"192.0.2.3\"",
            )
            .replace("remote_ts = \"10.1.0.0/24\"", "remote_ts = \"10.3.0.0/24\"");
        let cfg = GatewayConfig::from_str(&format!("{text}\n{second}"), "test.toml").unwrap();
        let mut two = driver(&cfg, 2);
        two.handle_punt(t0(), &init_packet(nat, "192.0.2.2:500"));
        assert_eq!(two.stats.init_no_tunnel, 1);
        assert!(two.tunnels.iter().all(|t| t.endpoint.half_open() == 0));
        // Each peer's own address still finds its tunnel.
        two.handle_punt(t0(), &init_packet("192.0.2.3:500", "192.0.2.2:500"));
        assert_eq!(two.tunnels[1].endpoint.half_open(), 1);
        assert_eq!(two.tunnels[0].endpoint.half_open(), 0);
        // Their half-open SAs come from one budget.
        assert!(two.stats_lines().contains("ike.half_open 1\n"));
    }

    /// The responder publishes its SPI of a half-open IKE SA while it is
    /// half-open: the initiator's IKE_AUTH then goes to the workers'
    /// half-open queue, not the one a spoofed IKE_SA_INIT flood fills;
    /// once the SA is up the SPI moves to the authenticated table.
    #[test]
    fn half_open_spis_are_published_until_authenticated() {
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-ho-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 15);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 16);
        let tables = b.spi_tables();
        let (to, from) = dataplane::gateway::control_queues(tables.clone());
        a.start(t0());
        let transmits = |d: &mut IkeDriver| -> Vec<Vec<u8>> {
            d.take_actions()
                .into_iter()
                .filter_map(|x| match x {
                    IkeAction::Transmit(p) => Some(p),
                    _ => None,
                })
                .collect()
        };
        for p in transmits(&mut a) {
            b.handle_punt(t0(), &p);
        }
        let reply = transmits(&mut b).pop().unwrap();
        let (_, _, ike) = parse_udp(&reply).unwrap();
        let spi_r = Header::decode(ike).unwrap().0.spi_r;
        assert!(tables.half_open.contains(spi_r) && !tables.known.contains(spi_r));
        a.handle_punt(t0(), &reply);
        let mut auth: Vec<(u16, Vec<u8>)> = transmits(&mut a).into_iter().map(|p| (1, p)).collect();
        assert_eq!(auth.len(), 1);
        let mut drops = dataplane::gateway::QueueDrops::default();
        let new_full = to.pass_on(
            0,
            &mut auth.clone(),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut drops,
        );
        assert_eq!(
            (new_full, from.ike_half_open.len(), from.ike_new.len()),
            (0, 1, 0)
        );
        for (_, p) in auth.drain(..) {
            b.handle_punt(t0(), &p);
        }
        exchange(&mut b, &mut a);
        assert_eq!(b.tunnels[0].state, LinkState::Up);
        assert!(!tables.half_open.contains(spi_r) && tables.known.contains(spi_r));
        assert_eq!(b.budget.total(), 0);
        assert!(b.stats_lines().contains("ike.half_open_spis_missed 0\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// After the tunnel is up, the workers' table knows both sides' IKE
    /// SPIs; a key log directory that became a symbolic link after the
    /// configuration was read gets nothing.
    #[test]
    fn known_spis_follow_the_ike_sa_and_keylog_refuses_links() {
        let dir =
            std::env::temp_dir().join(format!("espresso-ikedrv-known-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 17);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 18);
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("b")).unwrap();
        a.start(t0());
        exchange(&mut a, &mut b);
        let ike_a = a.tunnels[0].ike.as_ref().unwrap().id.0;
        let ike_b = b.tunnels[0].ike.as_ref().unwrap().id.0;
        assert!(a.known_spis().contains(ike_a) && b.known_spis().contains(ike_b));
        assert!(!a.known_spis().contains(ike_b));
        assert!(dir.join("a/esp_sa").exists());
        assert_eq!(std::fs::read_dir(dir.join("elsewhere")).unwrap().count(), 0);
    }

    /// Failed attempts (a wrong PSK, or forged by a man in the middle) are
    /// retried, each wait twice the previous up to a ceiling; success
    /// resets it; a deliberate delete is respected.
    #[test]
    fn failed_attempts_are_retried_with_back_off() {
        let dir = std::env::temp_dir().join(format!("espresso-backoff-{}", std::process::id()));
        let mut a = driver(&gateway('a', "initiate", &dir), 3);
        let down = |a: &mut IkeDriver, ike: u64, reason: DownReason| {
            a.tunnels[0].reinitiate_at = None;
            let before = t0();
            a.on_event(
                0,
                IkeEvent::IkeSaDown {
                    ike: IkeSaId(ike),
                    reason,
                },
                t0(),
            );
            a.tunnels[0]
                .reinitiate_at
                .map(|at| at.saturating_duration_since(before).as_secs())
        };
        let mut waits = Vec::new();
        for i in 0..8 {
            waits.push(down(&mut a, i, DownReason::AuthenticationFailed));
        }
        let want = [5, 10, 20, 40, 80, 160, 300, 300].map(Some);
        assert_eq!(waits, want);
        let report = tunnels_text(&a);
        assert!(
            report.contains("last_down AuthenticationFailed failures 8 retry_in 300"),
            "{report}"
        );
        let peer = "192.0.2.2:500".parse().unwrap();
        a.on_event(
            0,
            IkeEvent::IkeSaUp {
                ike: IkeSaId(9),
                local: "192.0.2.1:500".parse().unwrap(),
                remote: peer,
            },
            t0(),
        );
        assert_eq!(down(&mut a, 9, DownReason::PeerDead), Some(5));
        assert_eq!(
            down(
                &mut a,
                10,
                DownReason::Negotiation(crate::ike::message::NotifyType::NO_PROPOSAL_CHOSEN)
            ),
            Some(10)
        );
        assert_eq!(down(&mut a, 11, DownReason::DeletedByPeer), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn range_to_prefixes() {
        let p = |s: &str| s.parse::<IpAddr>().unwrap();
        let v = range_prefixes(p("10.1.0.0"), p("10.1.0.255"));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to_string(), "10.1.0.0/24");
        let v = range_prefixes(p("0.0.0.0"), p("255.255.255.255"));
        assert_eq!(
            v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["0.0.0.0/0"]
        );
        let v = range_prefixes(p("10.0.0.1"), p("10.0.0.6"));
        assert_eq!(
            v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let v = range_prefixes(p("fd02::"), p("fd02::ffff:ffff:ffff:ffff"));
        assert_eq!(
            v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["fd02::/64"]
        );
        let v = range_prefixes(p("::"), p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(
            v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ["::/0"]
        );
    }

    #[test]
    fn udp_packets_round_trip_with_valid_checksums() {
        for (s, d) in [
            ("192.0.2.1:4500", "192.0.2.2:4500"),
            ("[2001:db8::1]:500", "[2001:db8::2]:500"),
        ] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let pkt = build_udp(s, d, b"\0\0\0\0hello ike", 7).unwrap();
            let (src, dst, payload) = parse_udp(&pkt).unwrap();
            assert_eq!((src, dst, payload), (s, d, &b"\0\0\0\0hello ike"[..]));
            let off = if s.is_ipv4() { 20 } else { 40 };
            let udp = UdpPacket::new_checked(&pkt[off..]).unwrap();
            match (s.ip(), d.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    assert!(udp.verify_checksum_v4(a, b));
                    assert!(Ipv4Packet::new_checked(&pkt[..]).unwrap().verify_checksum());
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => assert!(udp.verify_checksum_v6(a, b)),
                _ => unreachable!(),
            }
        }
    }

    /// The two drivers' Child SAs of tunnel `t` (inbound SPIs).
    fn children(d: &IkeDriver) -> Vec<u32> {
        d.find("t")
            .map(|i| d.tunnels[i].children.keys().copied().collect())
            .unwrap_or_default()
    }

    fn state(d: &IkeDriver) -> Option<LinkState> {
        d.find("t").map(|i| d.tunnels[i].state)
    }

    /// `terminate` deletes the IKE SA with the peer (which drops its Child
    /// SAs too) and nothing initiates again on its own; `initiate` brings
    /// the tunnel back.
    #[test]
    fn terminate_deletes_with_the_peer_and_initiate_brings_it_back() {
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-term-{}", std::process::id()));
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 21);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 22);
        a.start(t0());
        exchange(&mut a, &mut b);
        assert_eq!((children(&a).len(), children(&b).len()), (1, 1));
        assert!(a.initiate(t0(), "t").unwrap_err().contains("up already"));

        let said = a.terminate(t0(), "t").unwrap();
        assert!(said.contains("1 IKE SA(s) deleted"), "{said}");
        assert!(a.take_sas_changed());
        assert!(a
            .sas()
            .tunnel(0)
            .is_none_or(|s| s.inbound.is_empty() && s.outbound.is_none()));
        exchange(&mut a, &mut b);
        // The peer got the DELETE: its Child SA is gone too.
        assert!(children(&b).is_empty());
        assert_eq!(state(&b), Some(LinkState::Down));
        assert_eq!(b.tunnels[0].last_down, Some(DownReason::DeletedByPeer));
        assert_eq!(a.tunnels[0].endpoint.ike_sa_count(), 0);
        // No retry after a deliberate delete.
        a.tick(t0() + Duration::from_secs(600));
        assert_eq!(state(&a), Some(LinkState::Down));
        assert!(a.take_actions().is_empty());

        let said = a.initiate(t0(), "t").unwrap();
        assert!(said.contains("IKE_SA_INIT"), "{said}");
        exchange(&mut a, &mut b);
        assert_eq!(state(&a), Some(LinkState::Up));
        assert_eq!((children(&a).len(), children(&b).len()), (1, 1));
        assert!(a.terminate(t0(), "nope").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A removed tunnel deletes its IKE SA with the peer, wants no SA at
    /// once, and its engine goes when the DELETE is answered; added again,
    /// it initiates at once.
    #[test]
    fn a_removed_tunnel_deletes_its_ike_sa_and_an_added_one_initiates() {
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-rm-{}", std::process::id()));
        let ca = gateway('a', "initiate", &dir.join("a"));
        let mut a = driver(&ca, 23);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 24);
        a.start(t0());
        exchange(&mut a, &mut b);
        assert_eq!(children(&b).len(), 1);

        assert!(a.remove_tunnel(t0(), "t"));
        assert!(!a.remove_tunnel(t0(), "t"), "removed already");
        assert!(a
            .sas()
            .iter()
            .next()
            .is_none_or(|(_, s)| s.inbound.is_empty()));
        assert!(!a.has_tunnel("t"));
        assert!(tunnels_text(&a).contains("removed-deleting"));
        exchange(&mut a, &mut b);
        assert!(children(&b).is_empty());
        assert_eq!(b.tunnels[0].last_down, Some(DownReason::DeletedByPeer));
        a.tick(t0());
        assert!(
            a.tunnels.is_empty(),
            "the engine goes once its DELETE is answered"
        );

        a.add_tunnel(
            &ca,
            5,
            &ca.tunnels[0],
            t0(),
            Box::new(ike::sim::SplitMix(99)),
        )
        .unwrap();
        assert!(a
            .add_tunnel(
                &ca,
                5,
                &ca.tunnels[0],
                t0(),
                Box::new(ike::sim::SplitMix(98))
            )
            .is_err());
        let mut pa = planner();
        let (sent_a, _) = exchange_planned(&mut a, &mut pa, &mut b, &mut planner());
        assert_eq!(state(&a), Some(LinkState::Up));
        // Its SAs go to its (new) slot.
        assert!(sent_a.iter().any(|m| matches!(
            m,
            ControlMsg::InstallOutbound { slot, .. } if slot.0 == 5
        )));
        assert_eq!(children(&b).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// New lifetimes and DPD go into the running engine without touching
    /// the IKE SA; a new PSK on the initiator re-establishes it (DELETE,
    /// then a new IKE_SA_INIT), which the responder, given the same PSK
    /// without re-establishing, authenticates.
    #[test]
    fn settings_apply_in_place_and_a_new_psk_reestablishes() {
        let dir = std::env::temp_dir().join(format!("espresso-ikedrv-upd-{}", std::process::id()));
        let mut a = driver(&gateway('a', "initiate", &dir.join("a")), 25);
        let mut b = driver(&gateway('b', "listen", &dir.join("b")), 26);
        a.start(t0());
        exchange(&mut a, &mut b);
        let ike_before = a.tunnels[0].ike.as_ref().unwrap().id;
        let child_before = children(&a);

        let edit = |site: char, start: &str, from: &str, to: &str| {
            let text = gateway_text(site, start, &dir.join(site.to_string()));
            assert!(text.contains(from));
            GatewayConfig::from_str(&text.replace(from, to), "test.toml").unwrap()
        };
        let lifetimes = edit(
            'a',
            "initiate",
            "  force_encap = true\n",
            "  force_encap = true\n  child_lifetime = \"20m\"\n  dpd_interval = \"7s\"\n",
        );
        a.update_tunnel(&lifetimes, 0, &lifetimes.tunnels[0], false, t0())
            .unwrap();
        let timers = &a.tunnels[0].endpoint.config().timers;
        assert_eq!(
            (timers.child_lifetime_ms, timers.dpd_interval_ms),
            (1_200_000, 7_000)
        );
        assert!(a.take_actions().is_empty(), "nothing sent");
        assert_eq!(a.tunnels[0].ike.as_ref().unwrap().id, ike_before);
        assert_eq!(children(&a), child_before);

        let psk = "psk = \"a new PSK for the driver test\"";
        let old_psk = "psk = \"an example PSK for the driver test\"";
        let na = edit('a', "initiate", old_psk, psk);
        let nb = edit('b', "listen", old_psk, psk);
        b.update_tunnel(&nb, 0, &nb.tunnels[0], false, t0())
            .unwrap();
        a.update_tunnel(&na, 0, &na.tunnels[0], true, t0()).unwrap();
        assert_eq!(state(&a), Some(LinkState::Connecting));
        assert!(
            a.take_sas_changed(),
            "the old Child SA's data-plane SAs went"
        );
        exchange(&mut a, &mut b);
        assert_eq!(state(&a), Some(LinkState::Up));
        assert_ne!(a.tunnels[0].ike.as_ref().unwrap().id, ike_before);
        assert_eq!((children(&a).len(), children(&b).len()), (1, 1));
        assert_ne!(children(&a), child_before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A road warrior at 192.0.2.`n` with inner network `inner`,
    /// identity `id` and `psk`, initiating to 192.0.2.2.
    fn client(n: u8, inner: &str, id: &str, psk: &str) -> GatewayConfig {
        let lan = inner.replace(".0/24", ".1/24");
        let text = format!(
            r#"
[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["{lan}"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["192.0.2.{n}/24"]
[[tunnel]]
name = "gw"
local_addrs = "192.0.2.{n}"
remote_addrs = "192.0.2.2"
  [[tunnel.policy]]
  local_ts = "{inner}"
  remote_ts = "10.2.0.0/24"
  [tunnel.ike]
  local_id = "{id}"
  remote_id = "gw-b.example"
  psk = "{psk}"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "initiate"
"#
        );
        GatewayConfig::from_str(&text, "client.toml").unwrap()
    }

    const ALICE_PSK: &str = "alice's pre-shared key";
    const R1_PSK: &str = "router one's pre-shared key";

    /// A concentrator at 192.0.2.2 with two templates on that address:
    /// e-mail identities of branches.example, FQDNs below
    /// routers.example; secrets by identity.
    fn concentrator() -> GatewayConfig {
        GatewayConfig::from_str(&concentrator_text(), "concentrator.toml").unwrap()
    }

    fn concentrator_text() -> String {
        let template = |name: &str, id: &str, remote_ts: &str| {
            format!(
                r#"
[[tunnel]]
name = "{name}"
local_addrs = "192.0.2.2"
remote_addrs = "%any"
  [[tunnel.policy]]
  local_ts = "10.2.0.0/24"
  remote_ts = "{remote_ts}"
  [tunnel.ike]
  local_id = "gw-b.example"
  remote_id = "{id}"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
"#
            )
        };
        format!(
            r#"
[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["10.2.0.1/24"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["192.0.2.2/24"]
{}{}
[[secret]]
ids = ["alice@branches.example", "bob@branches.example"]
psk = "{ALICE_PSK}"
[[secret]]
id = "r1.routers.example"
psk = "{R1_PSK}"
"#,
            template("branches", "*@branches.example", "10.9.0.0/16"),
            template("routers", "*.routers.example", "10.8.0.0/16"),
        )
    }

    /// Peers of one template each get their own IKE SA and narrowed
    /// Child SA; a peer whose identity is the other template's is handed
    /// over at IKE_AUTH; a wrong secret and an unknown identity are
    /// refused and counted, and get nothing.
    #[test]
    fn a_concentrator_takes_peers_by_identity_on_two_templates() {
        let mut gw = driver(&concentrator(), 50);
        gw.start(t0());
        let peers = [
            (11, "10.9.1.0/24", "alice@branches.example", ALICE_PSK),
            (12, "10.9.2.0/24", "bob@branches.example", ALICE_PSK),
            (13, "10.8.1.0/24", "r1.routers.example", R1_PSK),
            // Claims Alice's identity without her secret.
            (14, "10.9.3.0/24", "alice@branches.example", R1_PSK),
            // Nobody's identity.
            (15, "10.9.4.0/24", "eve@elsewhere.example", ALICE_PSK),
            // A routers identity without a secret.
            (16, "10.8.2.0/24", "r2.routers.example", R1_PSK),
        ];
        let mut clients = Vec::new();
        for (i, (n, inner, id, psk)) in peers.iter().enumerate() {
            let mut c = driver(&client(*n, inner, id, psk), 60 + i as u64);
            c.start(t0());
            exchange(&mut c, &mut gw);
            clients.push(c);
        }
        let up: Vec<bool> = clients
            .iter()
            .map(|c| c.tunnels[0].state == LinkState::Up)
            .collect();
        assert_eq!(up, [true, true, true, false, false, false]);
        let (branches, routers) = (&gw.tunnels[0], &gw.tunnels[1]);
        assert_eq!(branches.peers.len(), 2);
        assert_eq!(routers.peers.len(), 1);
        let ids = |t: &TunnelIke| -> Vec<String> {
            let mut v: Vec<String> = t
                .peers
                .values()
                .filter_map(|p| t.endpoint.peer_id(p.id))
                .map(|id| format!("{id:?}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(routers), [r#"Fqdn("r1.routers.example")"#]);
        assert_eq!(ids(branches).len(), 2);
        // Each peer's Child SA is narrowed to its own inner network.
        let remote_ts: BTreeSet<String> = branches
            .children
            .values()
            .map(|c| {
                format!(
                    "{}",
                    range_prefixes(c.keys.remote_ts[0].start_addr, c.keys.remote_ts[0].end_addr)[0]
                )
            })
            .collect();
        assert_eq!(
            remote_ts,
            BTreeSet::from(["10.9.1.0/24".to_string(), "10.9.2.0/24".to_string()])
        );
        let st = branches.endpoint.stats();
        assert_eq!(st.handoffs, 2, "r1 and r2 handed to routers");
        assert_eq!(st.auth_refused_bad_auth, 1, "mallory");
        assert_eq!(st.auth_refused_identity, 1, "eve");
        let rt = routers.endpoint.stats();
        assert_eq!(rt.auth_refused_unknown_identity, 1, "r2");
        assert!(branches.endpoint.half_open() + routers.endpoint.half_open() == 0);
        let lines = gw.stats_lines();
        assert!(
            lines.contains("ike.branches.auth_refused_bad_auth 1\n"),
            "{lines}"
        );
        assert!(
            lines.contains("ike.routers.auth_refused_unknown_identity 1\n"),
            "{lines}"
        );

        // The API shows each peer: identity, address, auth, algorithms,
        // age and its own Child SA.
        let views = gw.tunnel_views(t0());
        let v = &views[0];
        assert_eq!((v.peer.as_str(), v.state.as_str()), ("%any", "up"));
        assert!(v.ike_sa.is_none());
        assert_eq!(v.child_sas.len(), 2);
        let mut who: Vec<(&str, &str)> = v
            .peers
            .iter()
            .map(|p| (p.identity.as_str(), p.ike_sa.remote.as_str()))
            .collect();
        who.sort();
        assert_eq!(
            who,
            [
                ("alice@branches.example", "192.0.2.11:500"),
                ("bob@branches.example", "192.0.2.12:500")
            ]
        );
        for p in &v.peers {
            assert_eq!(p.auth, "psk");
            assert_eq!(p.ike_sa.role, "responder");
            assert_eq!(p.ike_sa.suite, "aes128gcm16-prfsha256-ecp256");
            assert_eq!(p.child_sas[0].algorithm, "aes128gcm16");
            assert_eq!(p.child_sas.len(), 1);
            assert!(v.child_sas.contains(&p.child_sas[0]));
        }
        let text = crate::client::tunnel_text(v);
        assert!(
            text.starts_with("tunnel branches up local 192.0.2.2 remote %any\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  peer alice@branches.example 192.0.2.11:500 auth psk\n    ike spi_i "
            ),
            "{text}"
        );
        assert_eq!(text.matches("\n    child spi_in ").count(), 2, "{text}");
    }

    /// Three peers on one template: one return route each (the tunnel's
    /// own slot stays empty), each on that peer's outbound SA; a fourth
    /// claiming the first's subnet is counted and gets no route; a rekey
    /// keeps the route (same key, the successor's SA); a peer that leaves
    /// takes its route with it, and the overlapping peer then gets it.
    #[test]
    fn every_peer_of_a_template_gets_its_own_return_route() {
        let text = concentrator_text().replace(
            r#"ids = ["alice@branches.example", "bob@branches.example"]"#,
            r#"ids = ["alice@branches.example", "bob@branches.example", "carol@branches.example", "dave@branches.example"]"#,
        );
        let mut gw = driver(&GatewayConfig::from_str(&text, "c.toml").unwrap(), 70);
        gw.start(t0());
        let peers = [
            (11, "10.9.1.0/24", "alice@branches.example"),
            (12, "10.9.2.0/24", "bob@branches.example"),
            (13, "10.9.3.0/24", "carol@branches.example"),
            // Claims Alice's subnet.
            (14, "10.9.1.0/24", "dave@branches.example"),
        ];
        let routes = |gw: &IkeDriver| -> BTreeMap<String, u32> {
            let w = gw.sas();
            let t = w.tunnel(0).unwrap();
            assert!(t.outbound.is_none(), "the template's own slot stays empty");
            t.peers
                .iter()
                .map(|r| (r.selectors[0].dst.to_string(), r.outbound.spi().get()))
                .collect()
        };
        // A client's inbound SPIs: our outbound SPIs to it.
        let spis = |c: &IkeDriver| -> Vec<u32> { c.tunnels[0].children.keys().copied().collect() };
        let mut clients = Vec::new();
        for (i, (n, inner, id)) in peers.iter().enumerate() {
            let mut c = driver(&client(*n, inner, id, ALICE_PSK), 80 + i as u64);
            c.start(t0());
            exchange(&mut c, &mut gw);
            assert_eq!(c.tunnels[0].state, LinkState::Up, "{id}");
            clients.push(c);
            if i == 2 {
                // Three peers, three routes, each to its own peer's SA
                // (the peer's inbound SPI is our outbound SPI).
                let r = routes(&gw);
                let want: BTreeMap<String, u32> = clients
                    .iter()
                    .zip(["10.9.1.0/24", "10.9.2.0/24", "10.9.3.0/24"])
                    .map(|(c, p)| (p.to_string(), spis(c)[0]))
                    .collect();
                assert_eq!(r, want);
            }
        }
        assert_eq!(gw.stats.peer_route_conflicts, 1, "dave");
        let r = routes(&gw);
        assert_eq!(r.len(), 3);
        assert_eq!(r["10.9.1.0/24"], spis(&clients[0])[0], "alice keeps hers");
        let mut p = crate::sa::Planner::new(
            2,
            crate::config::CryptoBackendChoice::Auto,
            vec!["branches".into(), "routers".into()],
        );
        let plan = p.plan(&[&gw.sas()]);
        assert_eq!(plan.next().peer_policies().len(), 3);
        p.commit(plan);

        // Bob rekeys: the same route, now on the successor's SA.
        let bob_before = spis(&clients[1]);
        clients[1].rekey(t0(), "gw").unwrap();
        exchange(&mut clients[1], &mut gw);
        let bob_after = spis(&clients[1]);
        assert_eq!(bob_after.len(), 1);
        assert_ne!(bob_after, bob_before);
        let r = routes(&gw);
        assert_eq!(r["10.9.2.0/24"], bob_after[0]);
        let plan = p.plan(&[&gw.sas()]);
        assert!(!plan.peer_policies_changed(), "a rekey keeps the SPD");
        let key = &gw
            .sas()
            .tunnel(0)
            .unwrap()
            .peers
            .iter()
            .find(|x| x.selectors[0].dst.to_string() == "10.9.2.0/24")
            .unwrap()
            .key
            .clone();
        let slot = p.installed().peer_route(0, key).unwrap().0;
        p.commit(plan);
        assert_eq!(p.installed().peer_route(0, key), Some((slot, bob_after[0])));

        // Carol leaves: her route goes. Alice leaves: Dave's Child SA,
        // refused a route while Alice held it, takes it.
        clients[2].terminate(t0(), "gw").unwrap();
        exchange(&mut clients[2], &mut gw);
        clients[0].terminate(t0(), "gw").unwrap();
        exchange(&mut clients[0], &mut gw);
        let r = routes(&gw);
        assert_eq!(
            r,
            BTreeMap::from([
                ("10.9.1.0/24".to_string(), spis(&clients[3])[0]),
                ("10.9.2.0/24".to_string(), bob_after[0]),
            ])
        );
        let plan = p.plan(&[&gw.sas()]);
        assert!(plan.peer_policies_changed());
        assert_eq!(plan.next().peer_policies().len(), 2);
    }
}
