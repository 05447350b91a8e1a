//! The file as written: one struct per table, read key by key through
//! [`Tbl`] (which reports unknown keys, wrong types and out-of-range
//! integers, all of them, each at its line). Values whose syntax needs a
//! better message (addresses, prefixes, port ranges, durations) stay
//! strings here and are parsed by [`validate`](super::validate), which
//! knows the field path. Optional keys are `Option`s; defaults are applied
//! there too.
//!
//! To add a key: a field here and one getter call in the table's `read`
//! function (`memory_mb: t.opt_int("memory_mb", 0..=MAX)`). Its type and
//! range errors, its line and column, and the unknown-key check with its
//! did-you-mean come with the call.

use std::path::PathBuf;

use toml_edit::Item;

use super::reader::{one_string, Tbl};
use super::secret::RawSecret;
use super::LogFormat;

#[derive(Debug)]
pub(super) struct RawConfig {
    // `None`: the section or item could not be read (already reported);
    // items keep their place so that field paths stay `tunnel[2]`.
    pub dataplane: Option<RawDataplane>,
    pub control: Option<RawControl>,
    pub metrics: Option<RawMetrics>,
    pub interface: Vec<Option<RawInterface>>,
    pub route: Vec<Option<RawRoute>>,
    pub neighbour: Vec<Option<RawNeighbour>>,
    pub tunnel: Vec<Option<RawTunnel>>,
    pub pool: Vec<Option<RawPool>>,
    pub secret: Vec<Option<RawSharedSecret>>,
}

/// `[[pool]]`: virtual IPs for remote-access clients.
#[derive(Debug)]
pub(super) struct RawPool {
    pub name: String,
    pub addrs: Vec<String>,
    pub dns: Option<Vec<String>>,
    pub subnets: Option<Vec<String>>,
}

#[derive(Debug)]
pub(super) struct RawSharedSecret {
    pub id: Option<String>,
    pub ids: Option<Vec<String>>,
    pub psk: Option<RawSecret>,
    pub psk_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
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
    pub hugepages: Option<String>,
    pub telemetry: Option<bool>,
    pub runtime_dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub(super) struct RawControl {
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub ike_cookie_threshold: Option<usize>,
    pub ike_half_open_per_source: Option<usize>,
    pub ike_half_open_max: Option<usize>,
    pub ike_cookie_secret_lifetime: Option<String>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RawRole {
    Lan,
    Wan,
}

#[derive(Debug)]
pub(super) struct RawInterface {
    pub name: String,
    pub device: String,
    pub role: RawRole,
    pub addresses: Vec<String>,
    pub mtu: Option<u16>,
    pub mss_clamp: Option<u16>,
    pub rx_queues: Option<u32>,
    pub tx_queues: Option<u32>,
    pub rx_desc: Option<u32>,
    pub tx_desc: Option<u32>,
}

#[derive(Debug)]
pub(super) struct RawRoute {
    pub prefix: String,
    pub via: Option<String>,
    pub interface: String,
}

#[derive(Debug)]
pub(super) struct RawNeighbour {
    pub address: String,
    pub mac: String,
    pub interface: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RawMode {
    Tunnel,
    Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RawDf {
    Copy,
    Set,
    Clear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RawAction {
    Protect,
    Bypass,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RawStartAction {
    Initiate,
    Listen,
}

/// `redirect` (RFC 5685).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawRedirect {
    Never,
    Always,
    Load,
}

/// `redirect_in` (RFC 5685 §4.3 or §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawRedirectIn {
    IkeSaInit,
    IkeAuth,
}

#[derive(Debug)]
pub(super) struct RawUdpEncapPorts {
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// `udp_encap = true` or `udp_encap = { src_port = …, dst_port = … }`.
#[derive(Debug)]
pub(super) enum RawUdpEncap {
    Enabled(bool),
    Ports(RawUdpEncapPorts),
}

/// `dscp = "copy"` or a number.
#[derive(Debug)]
pub(super) enum RawDscp {
    Number(i64),
    Word(String),
}

/// `protocol = "tcp"` or a number; ports `"80"`, `"1000-2000"` or `80`.
#[derive(Debug)]
pub(super) enum RawNameOrNumber {
    Number(i64),
    Word(String),
}

#[derive(Debug, Default)]
pub(super) struct RawLifetime {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_packets: Option<u64>,
    pub hard_packets: Option<u64>,
}

#[derive(Debug)]
pub(super) struct RawTunnel {
    pub name: String,
    pub local_addrs: String,
    /// One address, or `%any`, or prefixes (a responder template).
    pub remote_addrs: Vec<String>,
    pub mode: Option<RawMode>,
    pub udp_encap: Option<RawUdpEncap>,
    pub esn: Option<bool>,
    pub replay_window: Option<u32>,
    pub dscp: Option<RawDscp>,
    pub df: Option<RawDf>,
    pub outer_ttl: Option<u8>,
    pub lifetime: Option<RawLifetime>,
    pub policy: Vec<RawPolicy>,
    pub sa: Vec<RawSa>,
    pub ike: Option<RawIke>,
}

#[derive(Debug)]
pub(super) struct RawPolicy {
    pub local_ts: String,
    pub remote_ts: String,
    pub protocol: Option<RawNameOrNumber>,
    pub local_ports: Option<RawNameOrNumber>,
    pub remote_ports: Option<RawNameOrNumber>,
    pub action: Option<RawAction>,
    pub priority: Option<u32>,
}

#[derive(Debug)]
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

#[derive(Debug, Clone, Copy)]
pub(super) enum RawIkeAuth {
    Psk,
    Pubkey,
}

#[derive(Debug)]
pub(super) struct RawIke {
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub psk: Option<RawSecret>,
    pub psk_file: Option<PathBuf>,
    pub local_auth: Option<RawIkeAuth>,
    pub remote_auth: Option<RawIkeAuth>,
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub ca_certificates: Option<Vec<String>>,
    pub crls: Option<Vec<String>>,
    pub allow_rsa_sha1: Option<bool>,
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
    pub fragmentation: Option<bool>,
    pub fragment_size: Option<u64>,
    pub redirect: Option<RawRedirect>,
    pub redirect_to: Option<Vec<String>>,
    pub redirect_above: Option<u64>,
    pub redirect_in: Option<RawRedirectIn>,
    pub follow_redirects: Option<bool>,
    pub pools: Option<Vec<String>>,
}

// ------------------------------------------------------------------ reading

const U32: std::ops::RangeInclusive<i64> = 0..=u32::MAX as i64;
const U64: std::ops::RangeInclusive<i64> = 0..=i64::MAX;
const U16: std::ops::RangeInclusive<i64> = 0..=u16::MAX as i64;
/// A UDP port a packet can be sent to or from (RFC 768: 0 is not one).
const PORT: std::ops::RangeInclusive<i64> = 1..=u16::MAX as i64;

/// A word from `words` mapped to `values` (same order).
const HUGEPAGES: &[&str] = &["auto", "on", "off"];

fn word<T: Copy>(t: &Tbl, key: &'static str, words: &[&'static str], values: &[T]) -> Option<T> {
    t.opt_word(key, words).and_then(|i| values.get(i).copied())
}

/// The whole file, with `None` for what could not be read (the reasons
/// are in the diagnostics).
pub(super) fn read(t: Tbl) -> RawConfig {
    let dataplane = t.opt_table("dataplane", "[dataplane]").map(read_dataplane);
    let control = t.opt_table("control", "[control]").map(read_control);
    let metrics = t.opt_table("metrics", "[metrics]").map(read_metrics);
    let interface: Vec<_> = t
        .tables("interface", "[[interface]]")
        .into_iter()
        .map(read_interface)
        .collect();
    let route: Vec<_> = t
        .tables("route", "[[route]]")
        .into_iter()
        .map(read_route)
        .collect();
    let neighbour: Vec<_> = t
        .tables("neighbour", "[[neighbour]]")
        .into_iter()
        .map(read_neighbour)
        .collect();
    let tunnel: Vec<_> = t
        .tables("tunnel", "[[tunnel]]")
        .into_iter()
        .map(read_tunnel)
        .collect();
    let pool: Vec<_> = t
        .tables("pool", "[[pool]]")
        .into_iter()
        .map(read_pool)
        .collect();
    let secret: Vec<_> = t
        .tables("secret", "[[secret]]")
        .into_iter()
        .map(read_shared_secret)
        .collect();
    let dataplane = match t.field_present("dataplane") {
        false => Some(RawDataplane::default()),
        true => dataplane.flatten(),
    };
    let control = match t.field_present("control") {
        false => Some(RawControl::default()),
        true => control.flatten(),
    };
    let metrics = match t.field_present("metrics") {
        false => Some(RawMetrics::default()),
        true => metrics.flatten(),
    };
    t.finish();
    RawConfig {
        dataplane,
        control,
        metrics,
        interface,
        route,
        neighbour,
        tunnel,
        pool,
        secret,
    }
}

fn read_pool(t: Tbl) -> Option<RawPool> {
    let name = t.req_str("name");
    let addrs = t.opt_str_list("addrs");
    let addrs = t.required("addrs", addrs);
    let dns = t.opt_str_list("dns");
    let subnets = t.opt_str_list("subnets");
    t.finish();
    Some(RawPool {
        name: name?,
        addrs: addrs?,
        dns,
        subnets,
    })
}

fn read_shared_secret(t: Tbl) -> Option<RawSharedSecret> {
    let r = RawSharedSecret {
        id: t.opt_str("id"),
        ids: t.opt_str_list("ids"),
        psk: t.opt_secret("psk"),
        psk_file: t.opt_path("psk_file"),
    };
    t.finish();
    Some(r)
}

/// `remote_addrs`: a string or an array of strings (a template's
/// prefixes), also read under its old name `remote`.
fn remote_addrs(t: &Tbl) -> Option<Vec<String>> {
    let key = "remote_addrs";
    let Some(item) = t.renamed(key, "remote") else {
        t.required(key, None::<String>);
        return None;
    };
    if let Some(s) = item.as_str() {
        return Some(vec![s.to_string()]);
    }
    let Some(a) = item.as_array() else {
        t.type_error(
            key,
            item,
            "a string or an array of strings (address, %any or prefixes)",
        );
        return None;
    };
    let v: Option<Vec<String>> = a.iter().map(|v| v.as_str().map(str::to_string)).collect();
    if v.is_none() || a.is_empty() {
        t.type_error(key, item, "a non-empty array of strings (prefixes)");
    }
    v.filter(|v| !v.is_empty())
}

fn read_dataplane(t: Tbl) -> Option<RawDataplane> {
    let r = RawDataplane {
        workers: t.opt_int("workers", U32),
        lcores: t.opt_str("lcores"),
        memory_mb: t.opt_int("memory_mb", U32),
        mbufs: t.opt_int("mbufs", U32),
        burst: t.opt_int("burst", U32),
        eal_args: t.opt_str_list("eal_args"),
        crypto_backend: t.opt_str("crypto_backend"),
        icmp_errors_per_second: t.opt_int("icmp_errors_per_second", U32),
        icmp_error_burst: t.opt_int("icmp_error_burst", U32),
        hugepages: word(&t, "hugepages", HUGEPAGES, HUGEPAGES).map(str::to_string),
        telemetry: t.opt_bool("telemetry"),
        runtime_dir: t.opt_path("runtime_dir"),
    };
    t.finish();
    Some(r)
}

fn read_control(t: Tbl) -> Option<RawControl> {
    let r = RawControl {
        socket: t.opt_path("socket"),
        socket_group: t.opt_str("socket_group"),
        log: t.opt_str("log"),
        log_format: word(&t, "log_format", &LogFormat::NAMES, &LogFormat::NAMES)
            .map(str::to_string),
        ike_cookie_threshold: t.opt_int("ike_cookie_threshold", U32),
        ike_half_open_per_source: t.opt_int("ike_half_open_per_source", U32),
        ike_half_open_max: t.opt_int("ike_half_open_max", U32),
        ike_cookie_secret_lifetime: t.opt_str("ike_cookie_secret_lifetime"),
        state_dir: t.opt_path("state_dir"),
    };
    t.finish();
    Some(r)
}

fn read_metrics(t: Tbl) -> Option<RawMetrics> {
    let r = RawMetrics {
        listen: t.opt_str("listen"),
    };
    t.finish();
    Some(r)
}

fn read_interface(t: Tbl) -> Option<RawInterface> {
    let name = t.req_str("name");
    let device = t.req_str("device");
    let role = word(&t, "role", &["lan", "wan"], &[RawRole::Lan, RawRole::Wan]);
    let role = t.required("role", role);
    let addresses = t.opt_str_list("addresses");
    let mtu = t.opt_int("mtu", U16);
    let mss_clamp = t.opt_int("mss_clamp", U16);
    let rx_queues = t.opt_int("rx_queues", U32);
    let tx_queues = t.opt_int("tx_queues", U32);
    let rx_desc = t.opt_int("rx_desc", U32);
    let tx_desc = t.opt_int("tx_desc", U32);
    t.finish();
    Some(RawInterface {
        name: name?,
        device: device?,
        role: role?,
        addresses: addresses.unwrap_or_default(),
        mtu,
        mss_clamp,
        rx_queues,
        tx_queues,
        rx_desc,
        tx_desc,
    })
}

fn read_route(t: Tbl) -> Option<RawRoute> {
    let prefix = t.req_str("prefix");
    let via = t.opt_str("via");
    let interface = t.req_str("interface");
    t.finish();
    Some(RawRoute {
        prefix: prefix?,
        via,
        interface: interface?,
    })
}

fn read_neighbour(t: Tbl) -> Option<RawNeighbour> {
    let address = t.req_str("address");
    let mac = t.req_str("mac");
    let interface = t.req_str("interface");
    t.finish();
    Some(RawNeighbour {
        address: address?,
        mac: mac?,
        interface: interface?,
    })
}

/// A string under `key`, also read under its old name `old`.
fn renamed_string(t: &Tbl, key: &'static str, old: &'static str, what: &str) -> Option<String> {
    let item = t.renamed(key, old);
    let v = item.and_then(|i| one_string(t, key, i, what));
    if item.is_none() {
        t.required(key, None::<String>);
    }
    v
}

fn read_tunnel(t: Tbl) -> Option<RawTunnel> {
    let name = t.req_str("name");
    let local_addrs = renamed_string(&t, "local_addrs", "local", "address");
    let remote_addrs = remote_addrs(&t);
    let mode = word(
        &t,
        "mode",
        &["tunnel", "transport"],
        &[RawMode::Tunnel, RawMode::Transport],
    );
    let udp_encap = t.opt_item("udp_encap").and_then(|i| read_udp_encap(&t, i));
    let esn = t.opt_bool("esn");
    let replay_window = t.opt_int("replay_window", U32);
    let dscp = t.opt_item("dscp").and_then(|i| read_dscp(&t, i));
    let df = word(
        &t,
        "df",
        &["copy", "set", "clear"],
        &[RawDf::Copy, RawDf::Set, RawDf::Clear],
    );
    let outer_ttl = t.opt_int("outer_ttl", 1..=255);
    let lifetime = t
        .opt_table("lifetime", "lifetime = { … }")
        .map(read_lifetime);
    let policy: Vec<_> = t
        .tables("policy", "[[tunnel.policy]]")
        .into_iter()
        .map(read_policy)
        .collect();
    let sa: Vec<_> = t
        .tables("sa", "[[tunnel.sa]]")
        .into_iter()
        .map(read_sa)
        .collect();
    let ike = t.opt_table("ike", "[tunnel.ike]").map(read_ike);
    t.finish();
    Some(RawTunnel {
        name: name?,
        local_addrs: local_addrs?,
        remote_addrs: remote_addrs?,
        mode,
        udp_encap: match udp_encap {
            None => None,
            Some(u) => Some(u?),
        },
        esn,
        replay_window,
        dscp,
        df,
        outer_ttl,
        lifetime: match lifetime {
            None => None,
            Some(l) => Some(l?),
        },
        policy: policy.into_iter().collect::<Option<_>>()?,
        sa: sa.into_iter().collect::<Option<_>>()?,
        ike: match ike {
            None => None,
            Some(i) => Some(i?),
        },
    })
}

/// `Some(None)`: present but wrong (reported).
fn read_udp_encap(t: &Tbl, item: &Item) -> Option<Option<RawUdpEncap>> {
    if let Some(b) = item.as_bool() {
        return Some(Some(RawUdpEncap::Enabled(b)));
    }
    let ports = match item.as_table_like() {
        Some(_) => t.opt_table("udp_encap", "udp_encap = { src_port, dst_port }"),
        None => None,
    };
    let Some(ports) = ports else {
        t.error(
            "udp_encap",
            "expected true, false or a table { src_port = 4500, dst_port = 4500 }".into(),
        );
        return Some(None);
    };
    let src_port = ports.opt_int("src_port", PORT);
    let dst_port = ports.opt_int("dst_port", PORT);
    ports.finish();
    Some(Some(RawUdpEncap::Ports(RawUdpEncapPorts {
        src_port,
        dst_port,
    })))
}

fn read_dscp(t: &Tbl, item: &Item) -> Option<RawDscp> {
    if let Some(n) = item.as_integer() {
        return Some(RawDscp::Number(n));
    }
    if let Some(s) = item.as_str() {
        return Some(RawDscp::Word(s.to_string()));
    }
    t.error("dscp", "expected \"copy\" or a DSCP value 0..=63".into());
    None
}

fn name_or_number(t: &Tbl, key: &'static str, expected: &str) -> Option<RawNameOrNumber> {
    let item = t.opt_item(key)?;
    if let Some(n) = item.as_integer() {
        return Some(RawNameOrNumber::Number(n));
    }
    if let Some(s) = item.as_str() {
        return Some(RawNameOrNumber::Word(s.to_string()));
    }
    t.error(key, format!("expected {expected}"));
    None
}

fn read_lifetime(t: Tbl) -> Option<RawLifetime> {
    let r = RawLifetime {
        soft_bytes: t.opt_int("soft_bytes", U64),
        hard_bytes: t.opt_int("hard_bytes", U64),
        soft_packets: t.opt_int("soft_packets", U64),
        hard_packets: t.opt_int("hard_packets", U64),
    };
    t.finish();
    Some(r)
}

fn read_policy(t: Tbl) -> Option<RawPolicy> {
    let local_ts = renamed_string(&t, "local_ts", "local", "prefix");
    let remote_ts = renamed_string(&t, "remote_ts", "remote", "prefix");
    let protocol = name_or_number(
        &t,
        "protocol",
        "\"any\", \"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"sctp\" or a number 0..=255",
    );
    let ports = "\"any\", a port 0..=65535 or a range \"1000-2000\"";
    let local_ports = name_or_number(&t, "local_ports", ports);
    let remote_ports = name_or_number(&t, "remote_ports", ports);
    let action = word(
        &t,
        "action",
        &["protect", "bypass", "discard"],
        &[RawAction::Protect, RawAction::Bypass, RawAction::Discard],
    );
    let priority = t.opt_int("priority", U32);
    t.finish();
    Some(RawPolicy {
        local_ts: local_ts?,
        remote_ts: remote_ts?,
        protocol,
        local_ports,
        remote_ports,
        action,
        priority,
    })
}

fn read_sa(t: Tbl) -> Option<RawSa> {
    let spi_in = t.req_int("spi_in", U32);
    let spi_out = t.req_int("spi_out", U32);
    let algorithm = t.req_str("algorithm");
    let r = (
        t.opt_secret("key_in"),
        t.opt_path("key_in_file"),
        t.opt_secret("key_out"),
        t.opt_path("key_out_file"),
        t.opt_secret("auth_key_in"),
        t.opt_path("auth_key_in_file"),
        t.opt_secret("auth_key_out"),
        t.opt_path("auth_key_out_file"),
    );
    t.finish();
    Some(RawSa {
        spi_in: spi_in?,
        spi_out: spi_out?,
        algorithm: algorithm?,
        key_in: r.0,
        key_in_file: r.1,
        key_out: r.2,
        key_out_file: r.3,
        auth_key_in: r.4,
        auth_key_in_file: r.5,
        auth_key_out: r.6,
        auth_key_out_file: r.7,
    })
}

fn read_ike(t: Tbl) -> Option<RawIke> {
    let r = RawIke {
        local_id: t.opt_str("local_id"),
        remote_id: t.opt_str("remote_id"),
        psk: t.opt_secret("psk"),
        psk_file: t.opt_path("psk_file"),
        local_auth: word(
            &t,
            "local_auth",
            &["psk", "pubkey"],
            &[RawIkeAuth::Psk, RawIkeAuth::Pubkey],
        ),
        remote_auth: word(
            &t,
            "remote_auth",
            &["psk", "pubkey"],
            &[RawIkeAuth::Psk, RawIkeAuth::Pubkey],
        ),
        certificate: t.opt_path("certificate"),
        private_key: t.opt_path("private_key"),
        ca_certificates: t.opt_str_list("ca_certificates"),
        crls: t.opt_str_list("crls"),
        allow_rsa_sha1: t.opt_bool("allow_rsa_sha1"),
        proposals: t.opt_str_list("proposals"),
        esp_proposals: t.opt_str_list("esp_proposals"),
        start_action: word(
            &t,
            "start_action",
            &["initiate", "listen"],
            &[RawStartAction::Initiate, RawStartAction::Listen],
        ),
        ike_lifetime: t.opt_str("ike_lifetime"),
        child_lifetime: t.opt_str("child_lifetime"),
        dpd_interval: t.opt_str("dpd_interval"),
        force_encap: t.opt_bool("force_encap"),
        keylog_dir: t.opt_path("keylog_dir"),
        max_traffic_selectors: t.opt_int("max_traffic_selectors", U64),
        max_selectors: t.opt_int("max_selectors", U64),
        max_child_sas: t.opt_int("max_child_sas", U64),
        fragmentation: t.opt_bool("fragmentation"),
        fragment_size: t.opt_int("fragment_size", U64),
        redirect: word(
            &t,
            "redirect",
            &["never", "always", "load"],
            &[RawRedirect::Never, RawRedirect::Always, RawRedirect::Load],
        ),
        redirect_to: t.opt_str_list("redirect_to"),
        redirect_above: t.opt_int("redirect_above", U64),
        redirect_in: word(
            &t,
            "redirect_in",
            &["ike_sa_init", "ike_auth"],
            &[RawRedirectIn::IkeSaInit, RawRedirectIn::IkeAuth],
        ),
        follow_redirects: t.opt_bool("follow_redirects"),
        pools: t.opt_str_list("pools"),
    };
    t.finish();
    Some(r)
}
