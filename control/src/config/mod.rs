//! The gateway's configuration file (TOML): parsing and validation.
//!
//! Two layers. `raw` reads the file key by key through `reader` (every
//! unknown key, wrong type and out-of-range number is reported, with a
//! did-you-mean for misspelt keys); `validate` turns it into a
//! [`GatewayConfig`] made of the data plane's own types ([`SaConfig`],
//! [`Policy`], [`SaKeys`], [`NextHop`]). Every problem is a [`ConfigError`]
//! naming the file, the line and column, the field path
//! (`tunnel[0].sa[0].key_in`) and what is wrong; [`GatewayConfig::check`]
//! returns all of them, errors and warnings.
//! Keys and pre-shared keys are held in `Zeroizing` buffers, redacted by
//! `Debug` and never quoted in messages.
//!
//! The schema is documented key by key in `examples/site-a.toml` and
//! `examples/ike-site-a.toml` at the repository root, and in
//! `docs/operations.md`.

mod algorithm;
mod certs;
mod error;
#[cfg(test)]
mod hw_tests;
mod raw;
mod reader;
mod secret;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use dataplane::crypto::{Algorithm, Backend, SaKeys};
use dataplane::esp::{
    DfPolicy, DscpPolicy, Lifetime, Mode, Policy, SaConfig, TunnelEndpoints, UdpEncap,
};
use dataplane::route::{NextHop, RouteTable};
use ipnet::IpNet;

pub use algorithm::{DhGroup, EspProposal, IkeProposal, Prf};
pub use error::{ConfigError, ErrorKind, Severity};
pub use secret::Secret;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `[dataplane]`.
    pub dataplane: DataplaneConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[[interface]]`, in file order; the index is the interface number
    /// used by [`NextHop::interface`], [`Neighbour::interface`] and
    /// [`Tunnel::interface`].
    pub interfaces: Vec<Interface>,
    /// `[[route]]`, static routes (connected routes come from the
    /// interfaces' addresses, see [`GatewayConfig::route_table`]).
    pub routes: Vec<Route>,
    /// `[[neighbour]]`, static ARP/ND entries.
    pub neighbours: Vec<Neighbour>,
    /// `[[tunnel]]`, in file order; the index is the [`SaRef`] of the
    /// tunnel's PROTECT policies.
    ///
    /// [`SaRef`]: dataplane::esp::SaRef
    pub tunnels: Vec<Tunnel>,
    /// `[[pool]]`: virtual IPs handed to remote-access clients.
    pub pools: Vec<PoolConfig>,
    /// `[[secret]]`: pre-shared keys by identity.
    pub secrets: Vec<SharedSecret>,
}

/// A pool of virtual IPs (`[[pool]]`), referenced by name from
/// `[tunnel.ike] pools`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// Prefixes (network and IPv4 broadcast addresses left out) and
    /// `a-b` ranges, IPv4 and IPv6.
    pub ranges: Vec<ike::pool::AddrRange>,
    /// DNS servers handed out with an address.
    pub dns: Vec<IpAddr>,
    /// Networks behind the gateway announced to clients.
    pub subnets: Vec<IpNet>,
}

/// Which crypto backend runs ESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoBackendChoice {
    /// The fastest available for each SA's algorithm
    /// ([`dataplane::crypto::default_backend`]).
    Auto,
    /// This one.
    Fixed(Backend),
}

/// `[dataplane]`: worker threads and DPDK's EAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Worker threads, one per lcore (1..=64).
    pub workers: u32,
    /// The EAL lcore list (`-l`): as configured, or `0-N` for `workers`
    /// workers plus the control thread.
    pub lcores: String,
    /// EAL memory in MiB (`-m`): reserved at start, in hugepages when
    /// they are used.
    pub memory_mb: u32,
    /// Mbuf pool size.
    pub mbufs: u32,
    /// Packets per RX/TX burst.
    pub burst: u32,
    /// Extra EAL arguments, appended last.
    pub eal_args: Vec<String>,
    /// Crypto backend.
    pub crypto_backend: CryptoBackendChoice,
    /// ICMP errors (time exceeded, fragmentation needed, packet too big)
    /// each worker sends per second at most; 0 sends none (RFC 4443
    /// §2.4(f), RFC 1812 §4.3.2.8).
    pub icmp_errors_per_second: u32,
    /// How many ICMP errors a worker may send at once (the token bucket's
    /// size).
    pub icmp_error_burst: u32,
    /// Whether EAL runs on hugepages.
    pub hugepages: HugepageMode,
    /// DPDK's telemetry socket, linked from `runtime_dir`.
    pub telemetry: bool,
    /// Where the gateway's runtime files (the telemetry socket's link)
    /// go: as configured, or the control socket's directory.
    pub runtime_dir: PathBuf,
}

/// `[dataplane] hugepages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugepageMode {
    /// Hugepages if enough are free for `memory_mb`, else none.
    Auto,
    /// Hugepages, or refuse to start.
    On,
    /// Never (`--no-huge`).
    Off,
}

impl DataplaneConfig {
    /// Default number of workers.
    pub const DEFAULT_WORKERS: u32 = 1;

    /// The lcore list as core numbers, ascending: the first is the control
    /// thread's, the others the workers'.
    pub fn lcore_ids(&self) -> Vec<u32> {
        validate::parse_lcore_list(&self.lcores).unwrap_or_default()
    }
    /// Most workers.
    pub const MAX_WORKERS: u32 = 64;
    /// Default EAL memory.
    pub const DEFAULT_MEMORY_MB: u32 = 512;
    /// Default mbuf pool size (2^n - 1 is what DPDK's mempool sizes best).
    pub const DEFAULT_MBUFS: u32 = 8191;
    /// Default burst.
    pub const DEFAULT_BURST: u32 = 32;
    /// Default ICMP error rate per worker.
    pub const DEFAULT_ICMP_ERRORS_PER_SECOND: u32 = dataplane::gateway::ICMP_ERRORS_PER_SECOND;
    /// Default ICMP error burst per worker.
    pub const DEFAULT_ICMP_ERROR_BURST: u32 = dataplane::gateway::ICMP_ERROR_BURST;
    /// Largest ICMP error rate or burst.
    pub const MAX_ICMP_ERRORS: u32 = 1_000_000;
    /// Largest burst.
    pub const MAX_BURST: u32 = 512;
    /// Memory EAL and the rest of DPDK need besides the mbuf pool (which
    /// without hugepages lives outside EAL memory, see `dpdk::Mempool`).
    pub const EAL_HEADROOM_MB: u64 = 32;
    /// `runtime_dir` when neither it nor a control socket directory is
    /// given.
    pub const DEFAULT_RUNTIME_DIR: &'static str = "/run/espresso";
}

/// `[control]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// Unix socket for `espresso stats` and friends (mode 0600, or 0660
    /// with `socket_group`).
    pub socket: PathBuf,
    /// A group whose members may use the socket besides root and the
    /// gateway's user.
    pub socket_group: Option<SocketGroup>,
    /// Log filter (`tracing_subscriber::EnvFilter` syntax, e.g. `info` or
    /// `control=debug,info`).
    pub log: String,
    /// Where and how the gateway's log is written (`espresso run` only;
    /// the client commands always log text to stderr).
    pub log_format: LogFormat,
    /// Half-open IKE SAs (all tunnels) above which IKE_SA_INIT must carry
    /// a COOKIE (RFC 7296 §2.6).
    pub ike_cookie_threshold: usize,
    /// Half-open IKE SAs one source that returned a cookie may hold
    /// (RFC 8019 §4.2).
    pub ike_half_open_per_source: usize,
    /// Half-open IKE SAs at most (all tunnels).
    pub ike_half_open_max: usize,
    /// The COOKIE secret changes this often.
    pub ike_cookie_secret_lifetime: Duration,
    /// Where state that must survive a restart is kept (virtual IP
    /// leases); `None` keeps none.
    pub state_dir: Option<PathBuf>,
}

/// `[metrics]`: the OpenMetrics / Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (plain HTTP: meant for loopback or
    /// a management network); `None` (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[control] log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The journal's native protocol when stderr is the journal (a systemd
    /// service), text otherwise.
    #[default]
    Auto,
    /// One human-readable line per event on stderr.
    Text,
    /// One JSON object per event on stderr, for log shippers.
    Json,
    /// The journal's native protocol (fields and priorities kept), whether
    /// or not stderr is the journal.
    Journald,
}

impl LogFormat {
    /// The spellings `[control] log_format` takes.
    pub const NAMES: [&'static str; 4] = ["auto", "text", "json", "journald"];

    /// Parses one of [`LogFormat::NAMES`].
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "auto" => Some(LogFormat::Auto),
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            "journald" => Some(LogFormat::Journald),
            _ => None,
        }
    }
}

/// `[control] socket_group`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketGroup {
    /// The name as written.
    pub name: String,
    /// Its id.
    pub gid: u32,
}

/// Which side of the gateway an interface faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The protected network (plaintext).
    Lan,
    /// The untrusted network (ESP).
    Wan,
}

/// `[[interface]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Unique name.
    pub name: String,
    /// DPDK device string, e.g. `net_af_packet0,iface=lan0`, or a PCI
    /// address (`0000:03:00.0`, optionally `,devargs`) in its full form.
    pub device: String,
    /// LAN or WAN.
    pub role: Role,
    /// Own addresses with their prefix length: each is a local address and
    /// its network a connected route.
    pub addresses: Vec<IpNet>,
    /// IP MTU.
    pub mtu: u16,
    /// Clamp the MSS option of TCP SYNs sent out of this interface.
    pub mss_clamp: Option<u16>,
    /// RX queues (1..=workers); `None`: one per worker, or as many as the
    /// device has if fewer.
    pub rx_queues: Option<u16>,
    /// TX queues (workers..=64; each worker sends on one of its own);
    /// `None`: one per worker.
    pub tx_queues: Option<u16>,
    /// RX descriptors per queue (a power of two); `None`:
    /// [`Interface::DEFAULT_DESC`] fitted to the device's limits.
    pub rx_desc: Option<u16>,
    /// TX descriptors per queue, as `rx_desc`.
    pub tx_desc: Option<u16>,
}

impl Interface {
    /// Default MTU.
    pub const DEFAULT_MTU: u16 = 1500;
    /// Most RX or TX queues per port.
    pub const MAX_QUEUES: u16 = 64;
    /// Default descriptors per queue.
    pub const DEFAULT_DESC: u16 = 1024;
    /// Fewest and most descriptors per queue (devices narrow this).
    pub const MIN_DESC: u16 = 32;
    pub const MAX_DESC: u16 = 32768;

    /// The device string parsed: a PCI device or a virtual one (validated
    /// at load, so this does not fail for a loaded configuration).
    pub fn device_kind(&self) -> Result<crate::host::Device, String> {
        crate::host::Device::parse(&self.device)
    }
}

/// `[[route]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (host bits zero).
    pub prefix: IpNet,
    /// Interface and gateway.
    pub next_hop: NextHop,
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Six two-digit hex octets separated by `:` or `-`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a MAC address (expected six hex octets like 02:00:00:00:00:01)")
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

/// `[[neighbour]]`: a static ARP/ND entry, preferred over learned ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The neighbour's IP address.
    pub address: IpAddr,
    /// Its MAC address (unicast).
    pub mac: MacAddr,
    /// The interface it is reached on (index into
    /// [`GatewayConfig::interfaces`]).
    pub interface: u16,
}

/// One direction of a manually keyed SA: the data plane's configuration and
/// the keys.
#[derive(Clone, Debug)]
pub struct ManualSa {
    /// SPI, direction, mode, endpoints and the rest.
    pub config: SaConfig,
    /// Encryption and integrity keys (redacted by `Debug`).
    pub keys: SaKeys,
}

/// `[[tunnel.sa]]`: a manually keyed SA pair.
#[derive(Clone, Debug)]
pub struct SaPair {
    /// The ESP algorithm of both SAs.
    pub algorithm: Algorithm,
    /// What the peer sends to us (our SPI, `spi_in`).
    pub inbound: ManualSa,
    /// What we send to the peer (its SPI, `spi_out`).
    pub outbound: ManualSa,
}

/// IKE identities (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IkeId {
    /// ID_FQDN.
    Fqdn(String),
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_KEY_ID: opaque bytes (written `keyid:text` or `keyid:0x…`).
    KeyId(Vec<u8>),
    /// ID_RFC822_ADDR (written `user@domain`).
    Email(String),
    /// ID_DER_ASN1_DN: a certificate's subject (the default local identity
    /// with `local_auth = "pubkey"`); `text` is for display only.
    Dn { der: Vec<u8>, text: String },
}

impl fmt::Display for IkeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IkeId::Fqdn(s) => f.write_str(s),
            IkeId::Ipv4(a) => write!(f, "{a}"),
            IkeId::Ipv6(a) => write!(f, "{a}"),
            IkeId::Dn { text, .. } => write!(f, "dn:{text}"),
            IkeId::KeyId(k) => match std::str::from_utf8(k) {
                Ok(s) if !s.starts_with("0x") => write!(f, "keyid:{s}"),
                _ => write!(f, "keyid:0x{}", hex::encode(k)),
            },
            IkeId::Email(s) => f.write_str(s),
        }
    }
}

/// The identities a responder template accepts, or a `[[secret]]` is
/// for (swanctl's wildcard identities).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IkeIdPattern {
    /// `%any`.
    Any,
    /// One identity.
    Exact(IkeId),
    /// `*@domain`: e-mail identities of this domain.
    EmailDomain(String),
    /// `*.domain`: FQDNs strictly below this domain.
    FqdnSuffix(String),
    /// A distinguished name, values possibly `*`: `C=DE, O=Example, CN=*`
    /// (`text` as written, trimmed).
    Dn {
        text: String,
        pattern: crate::ike::identity::DnPattern,
    },
}

impl fmt::Display for IkeIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IkeIdPattern::Any => f.write_str("%any"),
            IkeIdPattern::Exact(id) => id.fmt(f),
            IkeIdPattern::EmailDomain(d) => write!(f, "*@{d}"),
            IkeIdPattern::FqdnSuffix(d) => write!(f, "*.{d}"),
            IkeIdPattern::Dn { text, .. } => f.write_str(text),
        }
    }
}

/// `[[secret]]`: a pre-shared key by peer identity, for responder
/// templates without a `psk` of their own.
#[derive(Clone, Debug)]
pub struct SharedSecret {
    /// The identities (or patterns) that prove this key.
    pub ids: Vec<IkeIdPattern>,
    /// The key.
    pub psk: Secret,
}

/// Who starts the IKE exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Initiate at start-up (and after the peer is lost).
    Initiate,
    /// Wait for the peer.
    Listen,
}

/// How one side proves its identity in IKE_AUTH (RFC 7296 §2.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeAuth {
    /// Pre-shared key (AUTH method 2).
    Psk,
    /// Certificate and signature (RFC 7427, RFC 7296 §3.6).
    Pubkey,
}

/// `certificate` and `private_key`, loaded (the key checked against the
/// certificate).
#[derive(Clone, Debug)]
pub struct IkeCredential {
    pub certificate: std::path::PathBuf,
    pub private_key: std::path::PathBuf,
    pub loaded: std::sync::Arc<ike::cert::LocalCredential>,
    /// SHA-256 of both files' contents: a reload notices a renewed
    /// certificate or key.
    pub digest: [u8; 32],
}

/// `ca_certificates` and `crls`, loaded.
#[derive(Clone, Debug)]
pub struct IkeTrust {
    pub ca_certificates: Vec<std::path::PathBuf>,
    pub crls: Vec<std::path::PathBuf>,
    pub store: std::sync::Arc<ike::cert::TrustStore>,
    /// SHA-256 of every file's contents, for reloads.
    pub digest: [u8; 32],
}

/// `[tunnel.ike]`: IKEv2 for this tunnel.
#[derive(Clone, Debug)]
pub struct IkeConfig {
    /// Our identity (default: the tunnel's local address).
    pub local_id: IkeId,
    /// The identity the peer must prove (default: its address); on a
    /// responder template see `remote_ids`.
    pub remote_id: IkeId,
    /// A responder template's identities (`remote_id` as a pattern such
    /// as `*@branches.example`); `Some` exactly when the tunnel is a
    /// template ([`Tunnel::remote_prefixes`]).
    pub remote_ids: Option<IkeIdPattern>,
    /// The pre-shared key (RFC 7296 §2.15); empty on a template that takes
    /// each peer's from `[[secret]]` by its identity, and when neither side
    /// authenticates by PSK.
    pub psk: Secret,
    /// How we authenticate: `psk`, or `pubkey` with [`IkeConfig::credential`].
    pub local_auth: IkeAuth,
    /// How the peer must: `psk`, or `pubkey` against [`IkeConfig::trust`].
    pub remote_auth: IkeAuth,
    /// Our certificate chain and key (`local_auth = "pubkey"`).
    pub credential: Option<IkeCredential>,
    /// Trust anchors and CRLs (`remote_auth = "pubkey"`).
    pub trust: Option<IkeTrust>,
    /// Accept AUTH method 1 (RSA PKCS#1 v1.5 with SHA-1) from a peer that
    /// does not speak RFC 7427.
    pub allow_rsa_sha1: bool,
    /// IKE SA proposals, most preferred first.
    pub proposals: Vec<IkeProposal>,
    /// Child SA (ESP) proposals, most preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// Initiate or listen.
    pub start_action: StartAction,
    /// Rekey the IKE SA after this long.
    pub ike_lifetime: Duration,
    /// Rekey Child SAs after this long.
    pub child_lifetime: Duration,
    /// Dead peer detection interval; `None` disables it (`"0s"`).
    pub dpd_interval: Option<Duration>,
    /// Send ESP in UDP even without a NAT (RFC 7296 §2.23 allows faking the
    /// NAT detection payloads).
    pub force_encap: bool,
    /// Write Wireshark `esp_sa` and `ikev2_decryption_table` files here.
    pub keylog_dir: Option<PathBuf>,
    /// Most traffic selectors the peer may put in one TSi or TSr payload.
    pub max_traffic_selectors: usize,
    /// Most data-plane selectors (source × destination address prefixes)
    /// one Child SA's traffic selectors may expand to.
    pub max_selectors: usize,
    /// Most Child SAs one IKE SA may hold when the peer asks for another.
    pub max_child_sas: usize,
    /// IKE fragmentation (RFC 7383): announce it, and split messages
    /// larger than `fragment_size` when the peer announced it too.
    pub fragmentation: bool,
    /// The largest IP datagram an IKE message may make before it is
    /// fragmented, IP and UDP headers included (strongSwan's
    /// `charon.fragment_size`).
    pub fragment_size: u16,
    /// RFC 5685 as responder (`redirect`, `redirect_to`, `redirect_above`,
    /// `redirect_in`): whether and where new clients are sent elsewhere.
    pub redirect: crate::ike::RedirectConfig,
    /// RFC 5685 as initiator: announce REDIRECT_SUPPORTED and follow a
    /// gateway's redirect (`follow_redirects`, default true).
    pub follow_redirects: bool,
    /// `[[pool]]` names to lease clients' virtual IPs from, in order
    /// (remote access, RFC 7296 §3.15; listening tunnels only).
    pub pools: Vec<String>,
}

impl IkeConfig {
    /// Default IKE proposal.
    pub const DEFAULT_PROPOSAL: &'static str = "aes256gcm16-prfsha256-ecp256";
    /// Default ESP proposal.
    pub const DEFAULT_ESP_PROPOSAL: &'static str = "aes256gcm16";
    /// Default IKE SA lifetime: 4 hours.
    pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(4 * 3600);
    /// Default Child SA lifetime: 1 hour.
    pub const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(3600);
    /// Default DPD interval: 30 s.
    pub const DEFAULT_DPD_INTERVAL: Duration = Duration::from_secs(30);
    /// Default and ceiling of `max_traffic_selectors`.
    pub const DEFAULT_MAX_TRAFFIC_SELECTORS: usize = 16;
    pub const MAX_MAX_TRAFFIC_SELECTORS: usize = 256;
    /// Default and ceiling of `max_selectors`: every packet is matched
    /// against them.
    pub const DEFAULT_MAX_SELECTORS: usize = 256;
    pub const MAX_MAX_SELECTORS: usize = 4096;
    /// Default and bounds of `max_child_sas` (a rekey needs two).
    pub const DEFAULT_MAX_CHILD_SAS: usize = 8;
    pub const MIN_MAX_CHILD_SAS: usize = 2;
    pub const MAX_MAX_CHILD_SAS: usize = 1024;
    /// Default and lower bound of `fragment_size` (see
    /// `espresso_ike::Fragmentation`).
    pub const DEFAULT_FRAGMENT_SIZE: u16 = crate::ike::Fragmentation::DEFAULT_SIZE;
    pub const MIN_FRAGMENT_SIZE: u16 = crate::ike::Fragmentation::MIN_SIZE;
    /// Most gateways in `redirect_to`.
    pub const MAX_REDIRECT_TARGETS: usize = 64;
}

/// `[[tunnel]]`.
#[derive(Clone, Debug)]
pub struct Tunnel {
    /// Unique name.
    pub name: String,
    /// Our address and the peer's (on a responder template the peer's is
    /// unspecified: each peer's comes from its IKE SA).
    pub endpoints: TunnelEndpoints,
    /// A responder template (`remote_addrs = "%any"` or a list of
    /// prefixes): the addresses peers may come from, each peer its own
    /// IKE SA. `None` for a site-to-site tunnel.
    pub remote_prefixes: Option<Vec<IpNet>>,
    /// The interface that owns `endpoints.local`.
    pub interface: u16,
    /// Tunnel or transport.
    pub mode: Mode,
    /// RFC 3948 UDP encapsulation.
    pub udp_encap: Option<UdpEncap>,
    /// Extended sequence numbers for manual SAs.
    pub esn: bool,
    /// Inbound anti-replay window (0 disables).
    pub replay_window: u32,
    /// Outer DSCP.
    pub dscp: DscpPolicy,
    /// Outer DF bit.
    pub df: DfPolicy,
    /// Outer TTL / hop limit.
    pub outer_ttl: u8,
    /// Byte and packet lifetimes of each SA.
    pub lifetime: Lifetime,
    /// This tunnel's SPD entries (outbound view: `src` is the local side),
    /// PROTECT ones with `SaRef(index of this tunnel)`.
    pub policies: Vec<Policy>,
    /// Manually keyed SA pairs.
    pub sas: Vec<SaPair>,
    /// IKEv2, if configured.
    pub ike: Option<IkeConfig>,
}

impl Tunnel {
    /// Whether this is a responder template.
    pub fn is_template(&self) -> bool {
        self.remote_prefixes.is_some()
    }
}

/// Counts for `espresso check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Interfaces.
    pub interfaces: usize,
    /// Static routes.
    pub routes: usize,
    /// Static neighbours.
    pub neighbours: usize,
    /// Tunnels.
    pub tunnels: usize,
    /// Tunnels with IKE.
    pub ike_tunnels: usize,
    /// Manually keyed SA pairs.
    pub sa_pairs: usize,
    /// SPD entries.
    pub policies: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn n(count: usize, one: &str, many: &str) -> String {
            format!("{count} {}", if count == 1 { one } else { many })
        }
        write!(
            f,
            "{}, {}, {}, {} ({} with IKE), {} ({} SAs), {}",
            n(self.interfaces, "interface", "interfaces"),
            n(self.routes, "route", "routes"),
            n(self.neighbours, "neighbour", "neighbours"),
            n(self.tunnels, "tunnel", "tunnels"),
            self.ike_tunnels,
            n(self.sa_pairs, "manual SA pair", "manual SA pairs"),
            self.sa_pairs * 2,
            n(self.policies, "policy", "policies"),
        )
    }
}

/// What [`GatewayConfig::check`] found.
#[derive(Debug)]
pub struct Checked {
    /// The configuration, when there is no error.
    pub config: Option<GatewayConfig>,
    /// Every error and warning, in file order.
    pub problems: Vec<ConfigError>,
}

impl Checked {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &ConfigError> {
        self.problems
            .iter()
            .filter(|p| p.severity() == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &ConfigError> {
        self.problems
            .iter()
            .filter(|p| p.severity() == Severity::Warning)
    }

    /// The configuration, or the first error.
    fn into_result(mut self) -> Result<GatewayConfig, ConfigError> {
        match self.config {
            Some(c) => Ok(c),
            None => {
                let first = self
                    .problems
                    .iter()
                    .position(|p| p.severity() == Severity::Error)
                    .unwrap_or(0);
                Err(self.problems.swap_remove(first))
            }
        }
    }
}

impl GatewayConfig {
    /// Reads and validates the file at `path`, on this host: all errors
    /// and warnings.
    pub fn check(path: impl AsRef<Path>) -> Checked {
        let path = path.as_ref();
        match read_bounded(path) {
            Ok(text) => Self::check_str(&text, path),
            Err(e) => Checked {
                config: None,
                problems: vec![ConfigError::read(path, e)],
            },
        }
    }

    /// Largest configuration file read: far above any real one (the
    /// examples are a few KB; 10,000 tunnels with manual keys take about
    /// 3.4 MB, 100,000 about 34 MB), so that a wrong path (a disk image,
    /// /dev/zero) fails at once instead of filling memory.
    pub const MAX_FILE_BYTES: u64 = 64 << 20;

    /// Validates `text` on this host; `path` names the file in messages
    /// and is the base for relative key file paths.
    pub fn check_str(text: &str, path: impl AsRef<Path>) -> Checked {
        let (config, problems) = validate::check(text, path.as_ref(), &validate::Host::current());
        Checked { config, problems }
    }

    /// Reads and validates the file at `path`: the configuration, or the
    /// first error. Warnings are logged.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let checked = Self::check(path);
        for w in checked.warnings() {
            tracing::warn!("{w}");
        }
        checked.into_result()
    }

    /// Parses and validates `text` (see [`GatewayConfig::check_str`]): the
    /// configuration, or the first error.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::check_str(text, path).into_result()
    }

    /// [`GatewayConfig::from_str`] without the checks against this host's
    /// CPUs, for tests whose configurations describe a bigger machine.
    #[cfg(test)]
    pub(crate) fn from_str_any_host(
        text: &str,
        path: impl AsRef<Path>,
    ) -> Result<Self, ConfigError> {
        let (config, problems) = validate::check(text, path.as_ref(), &validate::Host::default());
        Checked { config, problems }.into_result()
    }

    /// Every SPD entry, tunnel by tunnel in file order.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.tunnels.iter().flat_map(|t| t.policies.iter())
    }

    /// The routing table: a connected route per interface address, then the
    /// static routes (a static route for the same prefix wins).
    pub fn route_table(&self) -> RouteTable {
        let mut table = RouteTable::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            for net in &iface.addresses {
                table.insert(
                    net.trunc(),
                    NextHop {
                        interface: i as u16,
                        via: None,
                    },
                );
            }
        }
        for r in &self.routes {
            table.insert(r.prefix, r.next_hop);
        }
        table
    }

    /// Index of the interface called `name`.
    pub fn interface_index(&self, name: &str) -> Option<u16> {
        self.interfaces
            .iter()
            .position(|i| i.name == name)
            .map(|i| i as u16)
    }

    /// Counts for a one-line summary.
    pub fn summary(&self) -> Summary {
        Summary {
            interfaces: self.interfaces.len(),
            routes: self.routes.len(),
            neighbours: self.neighbours.len(),
            tunnels: self.tunnels.len(),
            ike_tunnels: self.tunnels.iter().filter(|t| t.ike.is_some()).count(),
            sa_pairs: self.tunnels.iter().map(|t| t.sas.len()).sum(),
            policies: self.policies().count(),
        }
    }
}

/// The file's text, refused past [`GatewayConfig::MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(GatewayConfig::MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > GatewayConfig::MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "larger than {} MiB: not a configuration file",
                GatewayConfig::MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(text)
}
