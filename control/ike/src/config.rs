//! Engine configuration (a plain struct; the TOML file is parsed elsewhere)
//! and strongSwan-notation proposal parsing (`aes128gcm16-prfsha256-ecp256`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::crypto::{DhGroup, EspAlgorithm, EspCipher, IkeCipher, Integ, Prf, SecretBytes};
use super::identity::{IdDirectory, IdPattern};
use super::message::{Identification, TrafficSelector};

/// Whether this gateway starts the IKE SA or waits for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    Initiate,
    Listen,
}

/// An IKE proposal: one cipher, PRF, optional integrity, and D-H groups
/// in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    pub cipher: IkeCipher,
    pub prf: Prf,
    pub integ: Option<Integ>,
    pub groups: Vec<DhGroup>,
}

/// An ESP proposal; `pfs_groups` non-empty means CREATE_CHILD_SA carries a
/// KE payload (RFC 7296 §1.3.1). ESN is always off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub algorithm: EspAlgorithm,
    pub pfs_groups: Vec<DhGroup>,
}

/// Proposal strings that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    #[error("unknown algorithm token `{token}` in proposal `{proposal}`")]
    UnknownToken { proposal: String, token: String },
    #[error("proposal `{proposal}` has no {what}")]
    Missing {
        proposal: String,
        what: &'static str,
    },
    #[error("proposal `{proposal}`: {why}")]
    Invalid { proposal: String, why: &'static str },
    #[error("invalid traffic selector `{0}`")]
    TrafficSelector(String),
}

enum Token {
    Ike(IkeCipher),
    Esp(EspCipher),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    Esn(bool),
}

fn token(t: &str) -> Option<Token> {
    use Token::*;
    Some(match t {
        "aes128" => Ike(IkeCipher::AesCbc { key_bits: 128 }),
        "aes256" => Ike(IkeCipher::AesCbc { key_bits: 256 }),
        "aes128gcm16" | "aes128gcm128" => Ike(IkeCipher::AesGcm16 { key_bits: 128 }),
        "aes256gcm16" | "aes256gcm128" => Ike(IkeCipher::AesGcm16 { key_bits: 256 }),
        "chacha20poly1305" => Esp(EspCipher::ChaCha20Poly1305),
        "sha256" | "sha2_256" => Integ(crate::crypto::Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Integ(crate::crypto::Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Integ(crate::crypto::Integ::HmacSha512_256),
        "prfsha256" => Prf(crate::crypto::Prf::HmacSha256),
        "prfsha384" => Prf(crate::crypto::Prf::HmacSha384),
        "prfsha512" => Prf(crate::crypto::Prf::HmacSha512),
        "modp2048" => Dh(DhGroup::Modp2048),
        "ecp256" => Dh(DhGroup::Ecp256),
        "ecp384" => Dh(DhGroup::Ecp384),
        "x25519" | "curve25519" => Dh(DhGroup::Curve25519),
        "esn" => Esn(true),
        "noesn" => Esn(false),
        _ => return None,
    })
}

fn prf_for(i: Integ) -> Prf {
    match i {
        Integ::HmacSha256_128 => Prf::HmacSha256,
        Integ::HmacSha384_192 => Prf::HmacSha384,
        Integ::HmacSha512_256 => Prf::HmacSha512,
    }
}

fn unknown(p: &str, t: &str) -> ProposalError {
    ProposalError::UnknownToken {
        proposal: p.to_owned(),
        token: t.to_owned(),
    }
}

impl IkeProposal {
    /// Parses strongSwan IKE notation, e.g. `aes128gcm16-prfsha256-ecp256`
    /// or `aes128-sha256-modp2048` (integrity `sha256` implies
    /// `prfsha256` when no PRF is named, as in strongSwan).
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let mut cipher = None;
        let mut prf = None;
        let mut integ = None;
        let mut groups = Vec::new();
        for t in s.split('-') {
            match token(t).ok_or_else(|| unknown(s, t))? {
                Token::Ike(c) if cipher.is_none() => cipher = Some(c),
                Token::Integ(i) if integ.is_none() => integ = Some(i),
                Token::Prf(p) if prf.is_none() => prf = Some(p),
                Token::Dh(g) if !groups.contains(&g) => groups.push(g),
                _ => return Err(unknown(s, t)),
            }
        }
        let cipher = cipher.ok_or(ProposalError::Missing {
            proposal: s.to_owned(),
            what: "encryption algorithm",
        })?;
        if groups.is_empty() {
            return Err(ProposalError::Missing {
                proposal: s.to_owned(),
                what: "key exchange group",
            });
        }
        if cipher.is_aead() {
            if integ.is_some() {
                return Err(ProposalError::Invalid {
                    proposal: s.to_owned(),
                    why: "AEAD cipher with an integrity algorithm",
                });
            }
            let prf = prf.ok_or(ProposalError::Missing {
                proposal: s.to_owned(),
                what: "PRF (e.g. prfsha256) for an AEAD cipher",
            })?;
            Ok(Self {
                cipher,
                prf,
                integ: None,
                groups,
            })
        } else {
            let integ = integ.ok_or(ProposalError::Missing {
                proposal: s.to_owned(),
                what: "integrity algorithm",
            })?;
            Ok(Self {
                cipher,
                prf: prf.unwrap_or(prf_for(integ)),
                integ: Some(integ),
                groups,
            })
        }
    }
}

impl EspProposal {
    /// Parses strongSwan ESP notation: `aes128gcm16`, `aes256gcm16`,
    /// `aes128-sha256`, `chacha20poly1305`, optionally with D-H groups for
    /// PFS (`aes128gcm16-ecp256`) and `noesn`. `esn` is refused: the data
    /// plane runs without extended sequence numbers.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let mut cipher = None;
        let mut integ = None;
        let mut pfs_groups = Vec::new();
        for t in s.split('-') {
            match token(t).ok_or_else(|| unknown(s, t))? {
                Token::Ike(c) if cipher.is_none() => {
                    cipher = Some(match c {
                        IkeCipher::AesGcm16 { key_bits: 128 } => EspCipher::AesGcm16_128,
                        IkeCipher::AesGcm16 { .. } => EspCipher::AesGcm16_256,
                        IkeCipher::AesCbc { key_bits: 128 } => EspCipher::AesCbc128,
                        IkeCipher::AesCbc { .. } => EspCipher::AesCbc256,
                    })
                }
                Token::Esp(c) if cipher.is_none() => cipher = Some(c),
                Token::Integ(i) if integ.is_none() => integ = Some(i),
                Token::Dh(g) if !pfs_groups.contains(&g) => pfs_groups.push(g),
                Token::Esn(false) => {}
                Token::Esn(true) => {
                    return Err(ProposalError::Invalid {
                        proposal: s.to_owned(),
                        why: "extended sequence numbers are not supported",
                    })
                }
                _ => return Err(unknown(s, t)),
            }
        }
        let cipher = cipher.ok_or(ProposalError::Missing {
            proposal: s.to_owned(),
            what: "encryption algorithm",
        })?;
        if cipher.is_aead() && integ.is_some() {
            return Err(ProposalError::Invalid {
                proposal: s.to_owned(),
                why: "AEAD cipher with an integrity algorithm",
            });
        }
        if !cipher.is_aead() && integ.is_none() {
            return Err(ProposalError::Missing {
                proposal: s.to_owned(),
                what: "integrity algorithm",
            });
        }
        Ok(Self {
            algorithm: EspAlgorithm { cipher, integ },
            pfs_groups,
        })
    }
}

/// Parses `10.1.0.0/24`, `2001:db8::/32` or a bare address into a
/// traffic selector covering all protocols and ports.
pub fn parse_traffic_selector(s: &str) -> Result<TrafficSelector, ProposalError> {
    let err = || ProposalError::TrafficSelector(s.to_owned());
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| err())?)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| err())?;
    let (start, end) = match addr {
        IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(err());
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let a = u32::from(a);
            (
                IpAddr::V4(Ipv4Addr::from(a & mask)),
                IpAddr::V4(Ipv4Addr::from(a | !mask)),
            )
        }
        IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(err());
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let a = u128::from(a);
            (
                IpAddr::V6(Ipv6Addr::from(a & mask)),
                IpAddr::V6(Ipv6Addr::from(a | !mask)),
            )
        }
    };
    Ok(TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: start,
        end_addr: end,
    })
}

/// Timers, all in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// IKE SA lifetime; rekeyed at 90% minus up to 10% jitter.
    pub ike_lifetime_ms: u64,
    /// Child SA lifetime; rekeyed at 90% minus up to 10% jitter.
    pub child_lifetime_ms: u64,
    /// Send an empty INFORMATIONAL after this much silence (0 = off).
    pub dpd_interval_ms: u64,
    /// First retransmission timeout; doubles on each retry.
    pub retransmit_base_ms: u64,
    /// Transmissions of one request before the peer is declared dead.
    pub retransmit_tries: u32,
    /// A responder's half-open IKE SA is dropped after this long.
    pub half_open_timeout_ms: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            ike_lifetime_ms: 4 * 3600 * 1000,
            child_lifetime_ms: 3600 * 1000,
            dpd_interval_ms: 30_000,
            retransmit_base_ms: 500,
            retransmit_tries: 5,
            half_open_timeout_ms: 30_000,
        }
    }
}

/// Bounds on what an authenticated peer may make this gateway hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most traffic selectors in one TSi or TSr payload (before and after
    /// narrowing).
    pub max_traffic_selectors: usize,
    /// Most data-plane selectors (pairs of a source and a destination
    /// address prefix) one Child SA's traffic selectors may expand to: an
    /// odd address range needs up to 254 prefixes, and every packet is
    /// matched against them.
    pub max_selectors: usize,
    /// Most Child SAs (installed or being replaced) one IKE SA may hold
    /// when the peer asks for another.
    pub max_child_sas: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_traffic_selectors: 16,
            max_selectors: 256,
            max_child_sas: 8,
        }
    }
}

/// A responder template: the engine takes IKE SAs from any peer whose
/// identity matches, each peer its own IKE SA (swanctl's `remote_addrs =
/// %any` with a wildcard `id`). The driver decides which addresses may
/// reach it; the engine only judges identities and secrets, from the
/// directories passed in here (no I/O).
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Identities this template accepts (a handful per template, tried in
    /// turn).
    pub remote_ids: Vec<IdPattern>,
    /// Secrets by identity: a peer proves the one of the identity it
    /// presents when [`Config::psk`] is empty.
    pub secrets: Arc<IdDirectory<SecretBytes>>,
    /// The other templates sharing our local address, by the identities
    /// they accept, as tags of the driver's choosing: IKE_SA_INIT carries
    /// no identity, so an IKE_AUTH presenting one of theirs is handed over
    /// ([`crate::IkeEvent::Handoff`]) rather than refused.
    pub siblings: Arc<IdDirectory<u32>>,
}

/// How we prove our identity in IKE_AUTH (RFC 7296 §2.15).
#[derive(Debug, Clone, Default)]
pub enum LocalAuth {
    /// AUTH method 2 with [`Config::psk`].
    #[default]
    Psk,
    /// A signature with our certificate's key; CERT payloads carry the
    /// chain (§3.6, RFC 7427).
    Pubkey(Arc<crate::cert::LocalCredential>),
}

/// How the peer must prove its identity in IKE_AUTH.
#[derive(Debug, Clone, Default)]
pub enum RemoteAuth {
    /// AUTH method 2 with [`Config::psk`].
    #[default]
    Psk,
    /// A signature by a certificate that chains to these anchors and
    /// certifies the peer's identity; we send CERTREQ for them (§3.7).
    Pubkey(Arc<crate::cert::TrustStore>),
}

/// Everything the engine needs to know about one peer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our IKE address (port 500 normally).
    pub local_addr: SocketAddr,
    /// The peer's IKE address (port 500 normally).
    pub remote_addr: SocketAddr,
    /// Port to float to when NAT is detected or encapsulation is forced.
    pub nat_t_port: u16,
    pub local_id: Identification,
    /// The peer's identity (ignored with a [`Template`]).
    pub remote_id: Identification,
    /// The pre-shared key (zeroized on drop, never printed); empty with a
    /// [`Template`] means the peer's secret by identity.
    pub psk: SecretBytes,
    /// Responder template: peers judged by identity pattern instead of
    /// `remote_id`.
    pub template: Option<Template>,
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub start: StartAction,
    pub timers: Timers,
    /// Pretend a NAT exists so ESP is UDP-encapsulated (as strongSwan's
    /// `encap = yes`, by sending a NAT_DETECTION_SOURCE_IP that cannot match).
    pub force_encap: bool,
    /// Above this many half-open responder SAs (of every engine sharing
    /// the budget), demand COOKIEs (§2.6).
    pub cookie_threshold: usize,
    /// Half-open SAs one source that returned a cookie may hold (RFC 8019
    /// §4.2).
    pub half_open_per_source: usize,
    /// Half-open SAs at most (of every engine sharing the budget).
    pub half_open_max: usize,
    /// The cookie secret changes this often; a cookie stays valid for one
    /// to two periods.
    pub cookie_secret_lifetime_ms: u64,
    /// Bounds on what an authenticated peer may ask for.
    pub limits: Limits,
    /// IKE fragmentation (RFC 7383).
    pub fragmentation: crate::fragment::Fragmentation,
    /// RFC 5685: whether and where this responder redirects new clients.
    pub redirect: crate::redirect::RedirectConfig,
    /// RFC 5685: as initiator, announce REDIRECT_SUPPORTED and follow a
    /// gateway's redirect.
    pub follow_redirects: bool,
    /// Remote access, responder: pools to lease the peer's virtual IPs
    /// from (in order), shared with other engines handing out the same
    /// pool. Non-empty means every IKE_AUTH must carry a CFG_REQUEST
    /// (RFC 7296 §3.15) and the peer's Child SAs are narrowed to its
    /// addresses.
    pub pools: Vec<crate::pool::SharedPool>,
    /// Remote access, initiator: ask the responder for a virtual IP of
    /// these families in IKE_AUTH.
    pub request_vips: Vec<crate::pool::Family>,
    pub local_auth: LocalAuth,
    pub remote_auth: RemoteAuth,
    /// Unix time in milliseconds at `Timestamp(0)`: certificates are
    /// checked for validity at this plus the engine's `now` (the engine
    /// reads no clock).
    pub unix_time_at_origin_ms: u64,
}

impl Config {
    /// Default `cookie_threshold`.
    pub const DEFAULT_COOKIE_THRESHOLD: usize = 10;
    /// Default `half_open_per_source`.
    pub const DEFAULT_HALF_OPEN_PER_SOURCE: usize = 5;
    /// Default `half_open_max`: a few MB of state with its messages.
    pub const DEFAULT_HALF_OPEN_MAX: usize = 1024;
    /// Default `cookie_secret_lifetime_ms`.
    pub const DEFAULT_COOKIE_SECRET_LIFETIME_MS: u64 = 120_000;
}

impl Config {
    /// A configuration with default timers and no proposals yet.
    pub fn new(
        local_addr: SocketAddr,
        remote_addr: SocketAddr,
        local_id: Identification,
        remote_id: Identification,
        psk: SecretBytes,
    ) -> Self {
        Self {
            local_addr,
            remote_addr,
            nat_t_port: 4500,
            local_id,
            remote_id,
            psk,
            template: None,
            ike_proposals: Vec::new(),
            esp_proposals: Vec::new(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            start: StartAction::Listen,
            timers: Timers::default(),
            force_encap: false,
            cookie_threshold: Self::DEFAULT_COOKIE_THRESHOLD,
            half_open_per_source: Self::DEFAULT_HALF_OPEN_PER_SOURCE,
            half_open_max: Self::DEFAULT_HALF_OPEN_MAX,
            cookie_secret_lifetime_ms: Self::DEFAULT_COOKIE_SECRET_LIFETIME_MS,
            limits: Limits::default(),
            fragmentation: Default::default(),
            redirect: Default::default(),
            follow_redirects: true,
            pools: Vec::new(),
            request_vips: Vec::new(),
            local_auth: LocalAuth::Psk,
            remote_auth: RemoteAuth::Psk,
            unix_time_at_origin_ms: 0,
        }
    }

    /// Sets proposals from strongSwan notation.
    pub fn with_proposals(mut self, ike: &[&str], esp: &[&str]) -> Result<Self, ProposalError> {
        self.ike_proposals = ike
            .iter()
            .map(|s| IkeProposal::parse(s))
            .collect::<Result<_, _>>()?;
        self.esp_proposals = esp
            .iter()
            .map(|s| EspProposal::parse(s))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Sets traffic selectors from CIDR strings.
    pub fn with_traffic_selectors(
        mut self,
        local: &[&str],
        remote: &[&str],
    ) -> Result<Self, ProposalError> {
        self.local_ts = local
            .iter()
            .map(|s| parse_traffic_selector(s))
            .collect::<Result<_, _>>()?;
        self.remote_ts = remote
            .iter()
            .map(|s| parse_traffic_selector(s))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_parse_strongswan_proposals() {
        let p = IkeProposal::parse("aes128gcm16-prfsha256-ecp256").unwrap();
        assert_eq!(p.cipher, IkeCipher::AesGcm16 { key_bits: 128 });
        assert_eq!(p.prf, Prf::HmacSha256);
        assert_eq!(p.integ, None);
        assert_eq!(p.groups, vec![DhGroup::Ecp256]);
        let p = IkeProposal::parse("aes256gcm16-prfsha384-x25519").unwrap();
        assert_eq!(p.groups, vec![DhGroup::Curve25519]);
        let p = IkeProposal::parse("aes256gcm16-prfsha384-modp2048").unwrap();
        assert_eq!(p.groups, vec![DhGroup::Modp2048]);
        let p = IkeProposal::parse("aes128-sha256-modp2048").unwrap();
        assert_eq!(p.cipher, IkeCipher::AesCbc { key_bits: 128 });
        assert_eq!(p.integ, Some(Integ::HmacSha256_128));
        assert_eq!(p.prf, Prf::HmacSha256);
        let p = IkeProposal::parse("aes256-sha512-prfsha384-ecp384-ecp256").unwrap();
        assert_eq!(p.prf, Prf::HmacSha384);
        assert_eq!(p.groups, vec![DhGroup::Ecp384, DhGroup::Ecp256]);

        let e = EspProposal::parse("aes128gcm16").unwrap();
        assert_eq!(e.algorithm.cipher, EspCipher::AesGcm16_128);
        assert!(e.pfs_groups.is_empty());
        let e = EspProposal::parse("aes256gcm16-noesn").unwrap();
        assert_eq!(e.algorithm.cipher, EspCipher::AesGcm16_256);
        let e = EspProposal::parse("aes128-sha256-ecp256").unwrap();
        assert_eq!(e.algorithm.integ, Some(Integ::HmacSha256_128));
        assert_eq!(e.pfs_groups, vec![DhGroup::Ecp256]);
        assert_eq!(
            EspProposal::parse("chacha20poly1305")
                .unwrap()
                .algorithm
                .cipher,
            EspCipher::ChaCha20Poly1305
        );
    }

    #[test]
    fn ike_parse_rejects_bad_proposals_clearly() {
        let e = IkeProposal::parse("aes128gcm16-prfsha256-ecp999").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown algorithm token `ecp999` in proposal `aes128gcm16-prfsha256-ecp999`"
        );
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-ecp256"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            IkeProposal::parse("aes128-ecp256"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            IkeProposal::parse("aes128-sha256"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-sha256-prfsha256-ecp256"),
            Err(ProposalError::Invalid { .. })
        ));
        assert!(matches!(
            IkeProposal::parse("chacha20poly1305-prfsha256-ecp256"),
            Err(ProposalError::UnknownToken { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128gcm16-esn"),
            Err(ProposalError::Invalid { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128gcm16-aes256gcm16"),
            Err(ProposalError::UnknownToken { .. })
        ));
        assert!(matches!(
            EspProposal::parse(""),
            Err(ProposalError::UnknownToken { .. })
        ));
    }

    #[test]
    fn ike_parse_traffic_selectors() {
        let t = parse_traffic_selector("10.1.0.0/24").unwrap();
        assert_eq!(t.start_addr, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(t.end_addr, "10.1.0.255".parse::<IpAddr>().unwrap());
        assert_eq!((t.start_port, t.end_port), (0, 65535));
        let t = parse_traffic_selector("0.0.0.0/0").unwrap();
        assert_eq!(t.end_addr, "255.255.255.255".parse::<IpAddr>().unwrap());
        let t = parse_traffic_selector("2001:db8::/32").unwrap();
        assert_eq!(
            t.end_addr,
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert!(parse_traffic_selector("10.1.0.0/33").is_err());
        assert!(parse_traffic_selector("nonsense").is_err());
    }
}
