//! The file as written: serde structs mirroring the TOML, every table with
//! `deny_unknown_fields`. Values whose syntax needs a better message than
//! serde gives (addresses, prefixes, port ranges, durations) stay strings
//! here and are parsed by [`validate`](super::validate), which knows the
//! field path. Optional keys are `Option`s; defaults are applied there too.

use std::path::PathBuf;

use serde::Deserialize;

use super::secret::RawSecret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub dataplane: RawDataplane,
    #[serde(default)]
    pub control: RawControl,
    #[serde(default)]
    pub interface: Vec<RawInterface>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub neighbour: Vec<RawNeighbour>,
    #[serde(default)]
    pub tunnel: Vec<RawTunnel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    pub workers: Option<u32>,
    pub lcores: Option<String>,
    pub memory_mb: Option<u32>,
    pub mbufs: Option<u32>,
    pub burst: Option<u32>,
    pub eal_args: Option<Vec<String>>,
    pub crypto_backend: Option<String>,
    pub icmp_errors_per_second: Option<u32>,
    pub icmp_error_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub ike_cookie_threshold: Option<usize>,
    pub ike_half_open_per_source: Option<usize>,
    pub ike_half_open_max: Option<usize>,
    pub ike_cookie_secret_lifetime: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRole {
    Lan,
    Wan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: String,
    pub device: String,
    pub role: RawRole,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub mtu: Option<u16>,
    pub mss_clamp: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: String,
    pub via: Option<String>,
    pub interface: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbour {
    pub address: String,
    pub mac: String,
    pub interface: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawMode {
    Tunnel,
    Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawDf {
    Copy,
    Set,
    Clear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawAction {
    Protect,
    Bypass,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawStartAction {
    Initiate,
    Listen,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUdpEncapPorts {
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// `udp_encap = true` or `udp_encap = { src_port = …, dst_port = … }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected true, false or a table { src_port = 4500, dst_port = 4500 } (no other keys)"
)]
pub(super) enum RawUdpEncap {
    Enabled(bool),
    Ports(RawUdpEncapPorts),
}

/// `dscp = "copy"` or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected \"copy\" or a DSCP value 0..=63")]
pub(super) enum RawDscp {
    Number(i64),
    Word(String),
}

/// `protocol = "tcp"` or a number; ports `"80"`, `"1000-2000"` or `80`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a name or a number")]
pub(super) enum RawNameOrNumber {
    Number(i64),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifetime {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_packets: Option<u64>,
    pub hard_packets: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub mode: Option<RawMode>,
    pub udp_encap: Option<RawUdpEncap>,
    pub esn: Option<bool>,
    pub replay_window: Option<u32>,
    pub dscp: Option<RawDscp>,
    pub df: Option<RawDf>,
    pub outer_ttl: Option<u8>,
    pub lifetime: Option<RawLifetime>,
    #[serde(default)]
    pub policy: Vec<RawPolicy>,
    #[serde(default)]
    pub sa: Vec<RawSa>,
    pub ike: Option<RawIke>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub local: String,
    pub remote: String,
    pub protocol: Option<RawNameOrNumber>,
    pub local_ports: Option<RawNameOrNumber>,
    pub remote_ports: Option<RawNameOrNumber>,
    pub action: Option<RawAction>,
    pub priority: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSa {
    pub spi_in: u32,
    pub spi_out: u32,
    pub algorithm: String,
    pub key_in: Option<RawSecret>,
    pub key_in_file: Option<PathBuf>,
    pub key_out: Option<RawSecret>,
    pub key_out_file: Option<PathBuf>,
    pub auth_key_in: Option<RawSecret>,
    pub auth_key_in_file: Option<PathBuf>,
    pub auth_key_out: Option<RawSecret>,
    pub auth_key_out_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIke {
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub psk: Option<RawSecret>,
    pub psk_file: Option<PathBuf>,
    pub proposals: Option<Vec<String>>,
    pub esp_proposals: Option<Vec<String>>,
    pub start_action: Option<RawStartAction>,
    pub ike_lifetime: Option<String>,
    pub child_lifetime: Option<String>,
    pub dpd_interval: Option<String>,
    pub force_encap: Option<bool>,
    pub keylog_dir: Option<PathBuf>,
    pub max_traffic_selectors: Option<u64>,
    pub max_selectors: Option<u64>,
    pub max_child_sas: Option<u64>,
}
