//! The control API's protocol (version [`PROTOCOL_VERSION`]): JSON
//! requests and replies, one object per line, on the control socket
//! ([`crate::control_socket`] serves it; `docs/api.md` describes it with
//! examples).
//!
//! A request is `{"v":1,"id":ANY,"cmd":NAME,"args":{...}}` and is parsed
//! completely here, on the socket's thread: whatever is malformed, carries
//! an unknown field, names an unknown command or another protocol version
//! is answered with an error naming the problem and never reaches the
//! control thread. What does reach it is a [`Command`].
//!
//! The views ([`TunnelView`] and the rest) are the commands' results; they
//! deserialize as well, so that the `espresso` client reads them back
//! typed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::GatewayConfig;

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// Every command, as named in requests.
pub const COMMANDS: &[&str] = &[
    "version",
    "tunnels",
    "ike-sas",
    "child-sas",
    "policies",
    "routes",
    "neighbours",
    "stats",
    "rekey",
    "reload",
    "load",
    "unload",
    "initiate",
    "terminate",
    "subscribe",
    "log",
    "redirect",
];

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, an unknown or missing field, bad arguments.
    BadRequest,
    /// No such command.
    UnknownCommand,
    /// `v` is not a version this gateway speaks.
    UnsupportedVersion,
    /// The tunnel (or other object) named does not exist.
    NotFound,
    /// Too many clients, subscribers or waiting requests; try again.
    Busy,
    /// No complete request in time, or the gateway did not answer in time.
    Timeout,
    /// The command was understood but could not be carried out.
    Failed,
}

/// An error reply's `error` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// An error of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// [`ErrorCode::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// [`ErrorCode::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Failed, message)
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{} ({code})", self.message)
    }
}

impl std::error::Error for ApiError {}

/// A command's outcome: its `result`, or its `error`.
pub type Answer = Result<Value, ApiError>;

/// A well-formed request's command, with its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Program and protocol version.
    Version,
    /// Every tunnel with its IKE SA and Child SAs.
    Tunnels,
    /// The IKE SAs.
    IkeSas,
    /// The Child SAs (IKE and manual), with counters.
    ChildSas,
    /// The SPD as configured.
    Policies,
    /// The routing table as configured.
    Routes,
    /// Static and learned neighbours.
    Neighbours,
    /// Every counter.
    Stats,
    /// Rekey the Child SAs of an IKE tunnel now.
    Rekey { tunnel: String },
    /// RFC 5685 §5: send the established clients of an IKE tunnel to
    /// another gateway (an IP address or host name).
    Redirect { tunnel: String, gateway: String },
    /// Re-read the configuration file and apply every change.
    Reload,
    /// Add or update one tunnel from the configuration file.
    Load { tunnel: String },
    /// Remove one tunnel from the running gateway.
    Unload { tunnel: String },
    /// Start IKE for a tunnel now.
    Initiate { tunnel: String },
    /// Delete a tunnel's IKE SA and its Child SAs.
    Terminate { tunnel: String },
    /// Turn the connection into an event stream.
    Subscribe,
    /// Read (`None`) or set the log filter.
    Log { filter: Option<String> },
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Echoed in the reply.
    pub id: Value,
    /// What to do.
    pub command: Command,
}

/// Why a request was refused before reaching the control thread: the
/// counter it goes to (`control.socket.refused.<reason>`), and the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The request's `id` if it had one.
    pub id: Value,
    /// Counter name.
    pub reason: Refusal,
    /// What the client is told.
    pub error: ApiError,
}

/// Reasons a request is refused, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not JSON (or not UTF-8).
    Malformed,
    /// JSON but not an object.
    NotAnObject,
    /// A member besides `v`, `id`, `cmd`, `args`.
    UnknownField,
    /// `v` or `cmd` missing or of the wrong type.
    MissingField,
    /// `v` is not [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// `cmd` is not one of [`COMMANDS`].
    UnknownCommand,
    /// The command's `args` are wrong.
    BadArgs,
}

impl Refusal {
    /// Every reason, for the counters.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::NotAnObject,
        Self::UnknownField,
        Self::MissingField,
        Self::UnsupportedVersion,
        Self::UnknownCommand,
        Self::BadArgs,
    ];

    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotAnObject => "not_an_object",
            Self::UnknownField => "unknown_field",
            Self::MissingField => "missing_field",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownCommand => "unknown_command",
            Self::BadArgs => "bad_args",
        }
    }

    /// Index into counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelArg {
    tunnel: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectArgs {
    tunnel: String,
    gateway: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogArgs {
    filter: Option<String>,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Envelope, Rejected> {
    let reject = |id: &Value, reason, code, message: String| Rejected {
        id: id.clone(),
        reason,
        error: ApiError::new(code, message),
    };
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        reject(
            &Value::Null,
            Refusal::Malformed,
            ErrorCode::BadRequest,
            format!("not a JSON object: {e}"),
        )
    })?;
    let Value::Object(mut map) = value else {
        return Err(reject(
            &Value::Null,
            Refusal::NotAnObject,
            ErrorCode::BadRequest,
            "a request is a JSON object {\"v\":1,\"id\":...,\"cmd\":...,\"args\":{...}}".into(),
        ));
    };
    let id = map.remove("id").unwrap_or(Value::Null);
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "v" | "cmd" | "args"))
    {
        return Err(reject(
            &id,
            Refusal::UnknownField,
            ErrorCode::BadRequest,
            format!("unknown field `{k}` (a request has v, id, cmd, args)"),
        ));
    }
    let v = match map.get("v") {
        None => {
            return Err(reject(
                &id,
                Refusal::MissingField,
                ErrorCode::BadRequest,
                "missing field `v` (the protocol version, 1)".into(),
            ))
        }
        Some(v) => v,
    };
    if v.as_u64() != Some(PROTOCOL_VERSION) {
        return Err(reject(
            &id,
            Refusal::UnsupportedVersion,
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {v} is not supported (this gateway speaks {PROTOCOL_VERSION})"
            ),
        ));
    }
    let Some(cmd) = map.get("cmd").and_then(Value::as_str) else {
        return Err(reject(
            &id,
            Refusal::MissingField,
            ErrorCode::BadRequest,
            "missing field `cmd` (a string: the command's name)".into(),
        ));
    };
    let args = match map.get("args") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => {
            return Err(reject(
                &id,
                Refusal::BadArgs,
                ErrorCode::BadRequest,
                "`args` must be an object".into(),
            ))
        }
    };
    let bad_args = |e: serde_json::Error| {
        reject(
            &id,
            Refusal::BadArgs,
            ErrorCode::BadRequest,
            format!("{cmd}: bad args: {e}"),
        )
    };
    let none = |c: Command| -> Result<Command, Rejected> {
        serde_json::from_value::<NoArgs>(args.clone()).map_err(bad_args)?;
        Ok(c)
    };
    let command = match cmd {
        "version" => none(Command::Version)?,
        "tunnels" => none(Command::Tunnels)?,
        "ike-sas" => none(Command::IkeSas)?,
        "child-sas" => none(Command::ChildSas)?,
        "policies" => none(Command::Policies)?,
        "routes" => none(Command::Routes)?,
        "neighbours" => none(Command::Neighbours)?,
        "stats" => none(Command::Stats)?,
        "reload" => none(Command::Reload)?,
        "subscribe" => none(Command::Subscribe)?,
        "rekey" => {
            let a: TunnelArg = serde_json::from_value(args.clone()).map_err(bad_args)?;
            Command::Rekey { tunnel: a.tunnel }
        }
        "redirect" => {
            let a: RedirectArgs = serde_json::from_value(args.clone()).map_err(bad_args)?;
            Command::Redirect {
                tunnel: a.tunnel,
                gateway: a.gateway,
            }
        }
        "load" | "unload" | "initiate" | "terminate" => {
            let a: TunnelArg = serde_json::from_value(args.clone()).map_err(bad_args)?;
            let tunnel = a.tunnel;
            match cmd {
                "load" => Command::Load { tunnel },
                "unload" => Command::Unload { tunnel },
                "initiate" => Command::Initiate { tunnel },
                _ => Command::Terminate { tunnel },
            }
        }
        "log" => {
            let a: LogArgs = serde_json::from_value(args.clone()).map_err(bad_args)?;
            Command::Log { filter: a.filter }
        }
        other => {
            return Err(reject(
                &id,
                Refusal::UnknownCommand,
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command `{other}` (commands: {})",
                    COMMANDS.join(", ")
                ),
            ))
        }
    };
    Ok(Envelope { id, command })
}

/// A reply line, newline included.
pub fn reply_line(id: &Value, answer: &Answer) -> String {
    let v = match answer {
        Ok(result) => json!({"v": PROTOCOL_VERSION, "id": id, "ok": true, "result": result}),
        Err(e) => json!({"v": PROTOCOL_VERSION, "id": id, "ok": false, "error": e}),
    };
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// An event line for subscribers, newline included.
pub fn event_line(event: &Event) -> String {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut s = json!({"v": PROTOCOL_VERSION, "time": time, "event": event}).to_string();
    s.push('\n');
    s
}

/// Serializes a command's result.
pub fn to_result<T: Serialize>(v: &T) -> Answer {
    serde_json::to_value(v).map_err(|e| ApiError::failed(format!("cannot encode the result: {e}")))
}

// ---------------------------------------------------------------- events

/// What subscribers are told, as it happens on the control thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The tunnel has an established IKE SA.
    TunnelUp { tunnel: String },
    /// The tunnel lost its IKE SA.
    TunnelDown { tunnel: String, reason: String },
    /// IKE_SA_INIT and IKE_AUTH completed.
    IkeSaEstablished {
        tunnel: String,
        spi_i: String,
        spi_r: String,
        local: String,
        remote: String,
    },
    /// The IKE SA was replaced by a rekey.
    IkeSaRekeyed {
        tunnel: String,
        old: String,
        new: String,
    },
    /// An IKE SA went away (deleted, expired, failed, timed out).
    IkeSaDeleted {
        tunnel: String,
        spi: String,
        reason: String,
    },
    /// A Child SA's data-plane SAs were handed to the workers.
    ChildSaInstalled {
        tunnel: String,
        spi_in: String,
        spi_out: String,
        algorithm: String,
    },
    /// A Child SA was replaced by a rekey (the new one's SPIs).
    ChildSaRekeyed {
        tunnel: String,
        old: String,
        spi_in: String,
        spi_out: String,
    },
    /// A data-plane SA reached a lifetime or sequence number limit.
    ChildSaExpired {
        spi: String,
        direction: String,
        limit: String,
    },
    /// A Child SA was deleted.
    ChildSaDeleted {
        tunnel: String,
        spi_in: String,
        spi_out: String,
    },
    /// The peer stopped answering (RFC 7296 §2.4 liveness check).
    DpdTimeout { tunnel: String, remote: String },
    /// The peer's or our authentication failed.
    AuthenticationFailed { tunnel: String },
    /// A reload was attempted (`trigger`: `socket` or `sighup`).
    Reload {
        trigger: String,
        ok: bool,
        message: String,
    },
}

// ---------------------------------------------------------------- logging

/// The process's log filter, read and changed through `log`.
pub trait LogFilter: Send + Sync {
    /// The filter in effect (`tracing_subscriber::EnvFilter` syntax).
    fn get(&self) -> String;
    /// Replaces it; `Err` with a message when `filter` does not parse.
    fn set(&self, filter: &str) -> Result<(), String>;
}

// ---------------------------------------------------------------- views

/// `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub program: String,
    pub version: String,
    pub protocol: u64,
}

/// This program's [`VersionView`].
pub fn version() -> VersionView {
    VersionView {
        program: "espresso".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
    }
}

/// One tunnel in `tunnels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelView {
    pub name: String,
    /// `manual` or `ike`.
    pub kind: String,
    pub local: String,
    pub peer: String,
    /// IKE: `up`, `connecting` or `down`; manual: `installed`.
    pub state: String,
    /// Why the IKE SA last went down, while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_down: Option<String>,
    /// Failed attempts since last up, while a new one is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_sa: Option<IkeSaView>,
    /// Every Child SA (a responder template's of all its peers).
    pub child_sas: Vec<ChildSaView>,
    /// A responder template's peers, one per IKE SA (absent for a
    /// site-to-site tunnel, whose IKE SA is `ike_sa`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerView>,
}

/// One peer of a responder template: its IKE SA and Child SAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The identity it authenticated with (`alice@branches.example`,
    /// `r1.branches.example`, an address or `keyid:…`).
    pub identity: String,
    /// How it authenticated: `psk` or `pubkey` (a certificate).
    pub auth: String,
    /// Its IKE SA: address and port (`remote`), suite, age.
    pub ike_sa: IkeSaView,
    /// Its Child SAs (also in the tunnel's `child_sas`).
    pub child_sas: Vec<ChildSaView>,
}

/// One IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaView {
    pub tunnel: String,
    /// 16 hex digits.
    pub spi_i: String,
    pub spi_r: String,
    /// `initiator` or `responder` (of this IKE SA).
    pub role: String,
    pub suite: String,
    pub local: String,
    pub remote: String,
    pub age_s: u64,
    /// Virtual IPs of the IKE SA (leased to the peer as responder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<String>,
}

/// One Child SA (an inbound and an outbound data-plane SA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaView {
    pub tunnel: String,
    /// `manual` or `ike`.
    pub kind: String,
    /// 8 hex digits.
    pub spi_in: String,
    pub spi_out: String,
    pub algorithm: String,
    /// `esp` or `udp-encap`.
    pub encap: String,
    /// `active` (carries outbound traffic), `rekeyed` (replaced, still
    /// receiving), `retiring` (deleted, inbound kept for a grace period),
    /// `standby`, or `installed` (manual).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<SaCountersView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<SaCountersView>,
}

/// A data-plane SA's counters, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaCountersView {
    pub packets: u64,
    pub bytes: u64,
}

/// One SPD entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub tunnel: String,
    pub src: String,
    pub dst: String,
    /// IP protocol number; absent for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// `lo-hi`, inclusive.
    pub src_ports: String,
    pub dst_ports: String,
    /// `protect`, `bypass` or `discard`.
    pub action: String,
    pub priority: u32,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub prefix: String,
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// `connected` or `static`.
    pub kind: String,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourView {
    pub address: String,
    pub mac: String,
    pub interface: String,
    /// `static` or `learned`.
    pub kind: String,
}

/// `stats`: every counter of the `key value` report by name, and the
/// report's few non-numeric entries (SA algorithms) as labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub counters: BTreeMap<String, u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The same counters structured: per port, worker, tunnel (by name)
    /// and SA, IKE and the sockets (`control::stats::StatsSnapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Value>,
}

impl StatsView {
    /// From `key value` lines; a value that is not a number is a label.
    pub fn from_lines(text: &str) -> Self {
        let mut s = Self::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            match v.trim().parse::<u64>() {
                Ok(n) => {
                    s.counters.insert(k.to_string(), n);
                }
                Err(_) => {
                    s.labels.insert(k.to_string(), v.trim().to_string());
                }
            }
        }
        s
    }
}

/// A message result (`rekey`, `reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub message: String,
}

/// `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogView {
    pub filter: String,
}

/// An ESP SPI as shown by the API.
pub fn spi_hex(spi: u32) -> String {
    format!("{spi:08x}")
}

/// An algorithm as shown by the API: the strongSwan-style name the
/// configuration takes (`aes256gcm16`, `aes128-sha256`), as IKE's Child
/// SAs are shown.
pub fn algorithm_name(a: &dataplane::crypto::Algorithm) -> String {
    use dataplane::crypto::{Encryption as E, Integrity as I};
    let e = match a.encryption {
        E::AesGcm16_128 => "aes128gcm16",
        E::AesGcm16_256 => "aes256gcm16",
        E::ChaCha20Poly1305 => "chacha20poly1305",
        E::AesCbc128 => "aes128",
        E::AesCbc256 => "aes256",
        E::Null => "null",
    };
    let i = match a.integrity {
        I::None => return e.to_string(),
        I::HmacSha256_128 => "sha256",
        I::HmacSha384_192 => "sha384",
        I::HmacSha512_256 => "sha512",
    };
    format!("{e}-{i}")
}

/// The manually keyed tunnels and their SA pairs (IKE tunnels come from
/// the IKE driver).
pub fn manual_tunnels(config: &GatewayConfig) -> Vec<TunnelView> {
    config
        .tunnels
        .iter()
        .filter(|t| t.ike.is_none())
        .map(|t| TunnelView {
            name: t.name.clone(),
            kind: "manual".into(),
            local: t.endpoints.local.to_string(),
            peer: t.endpoints.remote.to_string(),
            state: "installed".into(),
            last_down: None,
            failures: None,
            retry_in_s: None,
            ike_sa: None,
            peers: Vec::new(),
            child_sas: t
                .sas
                .iter()
                .map(|p| ChildSaView {
                    tunnel: t.name.clone(),
                    kind: "manual".into(),
                    spi_in: spi_hex(p.inbound.config.spi.get()),
                    spi_out: spi_hex(p.outbound.config.spi.get()),
                    algorithm: algorithm_name(&p.algorithm),
                    encap: if t.udp_encap.is_some() {
                        "udp-encap"
                    } else {
                        "esp"
                    }
                    .into(),
                    state: "installed".into(),
                    age_s: None,
                    inbound: None,
                    outbound: None,
                })
                .collect(),
        })
        .collect()
}

/// The SPD as configured, tunnel by tunnel.
pub fn policies(config: &GatewayConfig) -> Vec<PolicyView> {
    use dataplane::esp::Action;
    let ports = |r: &std::ops::RangeInclusive<u16>| format!("{}-{}", r.start(), r.end());
    config
        .tunnels
        .iter()
        .flat_map(|t| t.policies.iter().map(move |p| (t, p)))
        .map(|(t, p)| PolicyView {
            tunnel: t.name.clone(),
            src: p.selector.src.to_string(),
            dst: p.selector.dst.to_string(),
            protocol: p.selector.protocol,
            src_ports: ports(&p.selector.src_ports),
            dst_ports: ports(&p.selector.dst_ports),
            action: match p.action {
                Action::Protect(_) => "protect",
                Action::Bypass => "bypass",
                Action::Discard => "discard",
            }
            .into(),
            priority: p.priority,
        })
        .collect()
}

fn interface_name(config: &GatewayConfig, i: u16) -> String {
    config
        .interfaces
        .get(usize::from(i))
        .map_or_else(|| i.to_string(), |x| x.name.clone())
}

/// The routes as configured: connected ones from the interfaces'
/// addresses, then the static ones (as [`GatewayConfig::route_table`]
/// builds the workers' table).
pub fn routes(config: &GatewayConfig) -> Vec<RouteView> {
    let mut out = Vec::new();
    for iface in &config.interfaces {
        for net in &iface.addresses {
            out.push(RouteView {
                prefix: net.trunc().to_string(),
                interface: iface.name.clone(),
                via: None,
                kind: "connected".into(),
            });
        }
    }
    for r in &config.routes {
        out.push(RouteView {
            prefix: r.prefix.to_string(),
            interface: interface_name(config, r.next_hop.interface),
            via: r.next_hop.via.map(|v| v.to_string()),
            kind: "static".into(),
        });
    }
    out
}

/// Static neighbours, then the learned ones given (address, MAC,
/// interface index).
pub fn neighbours(
    config: &GatewayConfig,
    learned: impl IntoIterator<Item = (std::net::IpAddr, [u8; 6], u16)>,
) -> Vec<NeighbourView> {
    let mut out: Vec<NeighbourView> = config
        .neighbours
        .iter()
        .map(|n| NeighbourView {
            address: n.address.to_string(),
            mac: n.mac.to_string(),
            interface: interface_name(config, n.interface),
            kind: "static".into(),
        })
        .collect();
    for (ip, mac, iface) in learned {
        out.push(NeighbourView {
            address: ip.to_string(),
            mac: crate::config::MacAddr(mac).to_string(),
            interface: interface_name(config, iface),
            kind: "learned".into(),
        });
    }
    out
}

// ---------------------------------------------------------------- client

/// Why a call failed: the socket, or the gateway's answer.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, writing or reading, or a reply that is not the protocol.
    Io(String),
    /// The gateway answered with an error.
    Api(ApiError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(s) => f.write_str(s),
            Self::Api(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The longest reply line the client reads (a `stats` of a gateway with
/// many SAs is the largest).
pub const MAX_REPLY: usize = 64 << 20;
/// How long the client waits for a reply (the server gives up on the
/// control thread after [`crate::control_socket::REPLY_TIMEOUT`]).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// A connection to a gateway's control socket.
#[derive(Debug)]
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|e| {
            ClientError::Io(format!("{}: {e} (is espresso running?)", path.display()))
        })?;
        let io = |e: std::io::Error| ClientError::Io(e.to_string());
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
        let reader = BufReader::new(s.try_clone().map_err(io)?);
        Ok(Self {
            writer: s,
            reader,
            next_id: 1,
        })
    }

    /// Sends `cmd` with `args` and returns its `result`.
    pub fn call(&mut self, cmd: &str, args: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line =
            json!({"v": PROTOCOL_VERSION, "id": id, "cmd": cmd, "args": args}).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| ClientError::Io(format!("sending the request: {e}")))?;
        let reply = self
            .read_line()?
            .ok_or_else(|| ClientError::Io("the gateway closed the connection".into()))?;
        if reply.get("id") != Some(&json!(id)) {
            return Err(ClientError::Io(format!(
                "a reply to another request: {reply}"
            )));
        }
        reply_result(reply)
    }

    /// Waits without a deadline for the next line (events after
    /// `subscribe`); `None` at the end of the stream.
    pub fn next_event(&mut self) -> Result<Option<Value>, ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| ClientError::Io(e.to_string()))?;
        self.read_line()
    }

    fn read_line(&mut self) -> Result<Option<Value>, ClientError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ClientError::Io(format!("reading the reply: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.len() > MAX_REPLY {
            return Err(ClientError::Io(format!(
                "a reply longer than {MAX_REPLY} bytes"
            )));
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| ClientError::Io(format!("a reply that is not JSON: {e}")))
    }
}

/// A reply's `result`, or its `error`.
pub fn reply_result(reply: Value) -> Result<Value, ClientError> {
    match reply.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => {
            let e = reply
                .get("error")
                .cloned()
                .and_then(|e| serde_json::from_value::<ApiError>(e).ok())
                .unwrap_or_else(|| ApiError::failed(format!("unreadable error reply: {reply}")));
            Err(ClientError::Api(e))
        }
        None => Err(ClientError::Io(format!("not a reply: {reply}"))),
    }
}

/// Connects to `path`, sends one command and returns its `result`.
pub fn call(path: &Path, cmd: &str, args: Value) -> Result<Value, ClientError> {
    Client::connect(path)?.call(cmd, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(line: &str) -> Rejected {
        parse_request(line.as_bytes()).expect_err(line)
    }

    /// RFC 5685 §5: `redirect` names the tunnel and the gateway, both
    /// required, nothing else.
    #[test]
    fn redirect_takes_a_tunnel_and_a_gateway() {
        let e = parse_request(
            br#"{"v":1,"id":1,"cmd":"redirect","args":{"tunnel":"t","gateway":"192.0.2.3"}}"#,
        )
        .unwrap();
        assert_eq!(
            e.command,
            Command::Redirect {
                tunnel: "t".into(),
                gateway: "192.0.2.3".into()
            }
        );
        for args in [
            r#"{"tunnel":"t"}"#,
            r#"{"tunnel":"t","gateway":"g","now":1}"#,
        ] {
            let line = format!(r#"{{"v":1,"id":1,"cmd":"redirect","args":{args}}}"#);
            assert!(parse_request(line.as_bytes()).is_err(), "{line}");
        }
    }

    #[test]
    fn requests_parse_with_their_arguments() {
        let e = parse_request(br#"{"v":1,"id":"a","cmd":"rekey","args":{"tunnel":"t1"}}"#).unwrap();
        assert_eq!(e.id, json!("a"));
        assert_eq!(
            e.command,
            Command::Rekey {
                tunnel: "t1".into()
            }
        );
        let e = parse_request(br#"{"v":1,"cmd":"log"}"#).unwrap();
        assert_eq!(e.id, Value::Null);
        assert_eq!(e.command, Command::Log { filter: None });
        let e =
            parse_request(br#"{"v":1,"id":[1,2],"cmd":"log","args":{"filter":"debug"}}"#).unwrap();
        assert_eq!(e.id, json!([1, 2]));
        assert_eq!(
            e.command,
            Command::Log {
                filter: Some("debug".into())
            }
        );
        for c in COMMANDS.iter().filter(|c| {
            !matches!(
                **c,
                "rekey" | "load" | "unload" | "initiate" | "terminate" | "redirect"
            )
        }) {
            let line = format!(r#"{{"v":1,"id":7,"cmd":"{c}","args":{{}}}}"#);
            assert!(parse_request(line.as_bytes()).is_ok(), "{c}");
        }
    }

    #[test]
    fn each_malformation_is_named_and_classified() {
        let r = rejected("{\"v\":1,");
        assert_eq!(r.reason, Refusal::Malformed);
        assert_eq!(r.error.code, ErrorCode::BadRequest);
        assert_eq!(rejected("[1]").reason, Refusal::NotAnObject);
        assert_eq!(rejected("\"stats\"").reason, Refusal::NotAnObject);
        let r = rejected(r#"{"v":1,"id":3,"cmd":"stats","verbose":true}"#);
        assert_eq!(r.reason, Refusal::UnknownField);
        assert_eq!(r.id, json!(3));
        assert!(r.error.message.contains("`verbose`"), "{}", r.error.message);
        let r = rejected(r#"{"id":3,"cmd":"stats"}"#);
        assert_eq!(r.reason, Refusal::MissingField);
        let r = rejected(r#"{"v":2,"id":3,"cmd":"stats"}"#);
        assert_eq!(r.reason, Refusal::UnsupportedVersion);
        assert_eq!(r.error.code, ErrorCode::UnsupportedVersion);
        assert!(r.error.message.contains("version 2"), "{}", r.error.message);
        assert_eq!(
            rejected(r#"{"v":"1","cmd":"stats"}"#).reason,
            Refusal::UnsupportedVersion
        );
        let r = rejected(r#"{"v":1,"id":3,"cmd":"shutdown"}"#);
        assert_eq!(r.reason, Refusal::UnknownCommand);
        assert_eq!(r.error.code, ErrorCode::UnknownCommand);
        assert!(r.error.message.contains("`shutdown`"));
        let r = rejected(r#"{"v":1,"cmd":"rekey","args":{}}"#);
        assert_eq!(r.reason, Refusal::BadArgs);
        assert!(r.error.message.contains("tunnel"), "{}", r.error.message);
        let r = rejected(r#"{"v":1,"cmd":"rekey","args":{"tunnel":"a","now":1}}"#);
        assert_eq!(r.reason, Refusal::BadArgs);
        let r = rejected(r#"{"v":1,"cmd":"stats","args":{"x":1}}"#);
        assert_eq!(r.reason, Refusal::BadArgs);
        assert_eq!(
            rejected(r#"{"v":1,"cmd":"stats","args":[1]}"#).reason,
            Refusal::BadArgs
        );
        assert_eq!(rejected("\u{0}\u{ff}").reason, Refusal::Malformed);
    }

    #[test]
    fn replies_carry_version_id_and_outcome() {
        let ok: Value = serde_json::from_str(&reply_line(&json!(9), &Ok(json!({"a": 1})))).unwrap();
        assert_eq!(ok, json!({"v":1,"id":9,"ok":true,"result":{"a":1}}));
        let line = reply_line(&json!("x"), &Err(ApiError::not_found("no tunnel b")));
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let err: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            err,
            json!({"v":1,"id":"x","ok":false,"error":{"code":"not_found","message":"no tunnel b"}})
        );
        match reply_result(err) {
            Err(ClientError::Api(e)) => assert_eq!(e.code, ErrorCode::NotFound),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stats_lines_become_counters_and_labels() {
        let s = StatsView::from_lines(
            "uptime_s 5\nsa.in.0x00001000.algorithm AesGcm16_128 worker 0\nsa.in.0x00001000.packets 12\n",
        );
        assert_eq!(s.counters.get("uptime_s"), Some(&5));
        assert_eq!(s.counters.get("sa.in.0x00001000.packets"), Some(&12));
        assert_eq!(
            s.labels
                .get("sa.in.0x00001000.algorithm")
                .map(String::as_str),
            Some("AesGcm16_128 worker 0")
        );
    }

    /// The configuration's views, on the documented example.
    #[test]
    fn views_of_the_example_configuration() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/site-a.toml");
        let config = GatewayConfig::load(path).unwrap();
        let t = manual_tunnels(&config);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].name.as_str(), t[0].kind.as_str(), t[0].peer.as_str()),
            ("site-b", "manual", "192.0.2.2")
        );
        let c = &t[0].child_sas[0];
        assert_eq!(
            (c.spi_in.as_str(), c.spi_out.as_str()),
            ("00001001", "00002001")
        );
        assert_eq!(
            (c.algorithm.as_str(), c.encap.as_str()),
            ("aes256gcm16", "udp-encap")
        );
        let p = policies(&config);
        let telnet = p.iter().find(|p| p.action == "discard").unwrap();
        assert_eq!(telnet.protocol, Some(6));
        assert_eq!(telnet.dst_ports, "23-23");
        assert_eq!(telnet.priority, 10);
        assert_eq!(telnet.src, "10.1.0.0/24");
        assert!(p
            .iter()
            .any(|p| p.action == "protect" && p.dst == "fd02::/64"));
        let r = routes(&config);
        assert!(r
            .iter()
            .any(|r| r.kind == "connected" && r.prefix == "10.1.0.0/24" && r.interface == "lan"));
        let st = r.iter().find(|r| r.prefix == "10.2.0.0/24").unwrap();
        assert_eq!(
            (st.kind.as_str(), st.via.as_deref()),
            ("static", Some("192.0.2.2"))
        );
        let learned = [("192.0.2.9".parse().unwrap(), [2, 0, 0, 0, 0, 9], 1)];
        let n = neighbours(&config, learned);
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].kind.as_str(), n[0].mac.as_str()),
            ("static", "02:00:00:00:b0:02")
        );
        assert_eq!(
            (
                n[1].kind.as_str(),
                n[1].interface.as_str(),
                n[1].address.as_str()
            ),
            ("learned", "wan", "192.0.2.9")
        );
    }

    #[test]
    fn algorithms_have_their_configuration_names() {
        use dataplane::crypto::{Algorithm, Encryption, Integrity};
        assert_eq!(algorithm_name(&Algorithm::AES_GCM_256), "aes256gcm16");
        let cbc = Algorithm {
            encryption: Encryption::AesCbc128,
            integrity: Integrity::HmacSha256_128,
        };
        assert_eq!(algorithm_name(&cbc), "aes128-sha256");
    }

    #[test]
    fn events_are_tagged_by_type() {
        let line = event_line(&Event::TunnelUp { tunnel: "t".into() });
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["event"], json!({"type": "tunnel_up", "tunnel": "t"}));
        assert!(v["time"].as_f64().is_some_and(|t| t > 0.0));
    }
}
