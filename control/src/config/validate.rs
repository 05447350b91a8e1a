//! From [`RawConfig`] to [`GatewayConfig`]: defaults, parsing of the values
//! kept as strings, and every cross-check. Problems are collected (see
//! [`check`]), each a [`ConfigError`] naming its line, column and field
//! path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::crypto::{Algorithm, Backend, Encryption, Integrity, SaKeys};
use dataplane::esp::{
    Action, DfPolicy, Direction, DscpPolicy, FlowKey, IpPrefix, Lifetime, Mode, Policy,
    ReplayWindow, SaConfig, SaRef, Selector, Spi, TunnelEndpoints, UdpEncap,
};
use dataplane::route::NextHop;
use ipnet::IpNet;
use zeroize::Zeroizing;

use super::algorithm::{
    enc_key_description, parse_esp_algorithm, parse_esp_proposal, parse_ike_proposal,
};
use super::error::{line_col, ConfigError, ErrorKind, FieldPath, Severity};
use super::raw::*;
use super::reader::{Diags, Tbl};
use super::secret::{decode_hex, read_secret_file, resolve, RawSecret, Secret};
use super::{
    ControlConfig, CryptoBackendChoice, DataplaneConfig, GatewayConfig, HugepageMode, IkeAuth,
    IkeConfig, IkeId, Interface, LogFormat, MacAddr, ManualSa, MetricsConfig, Neighbour,
    PoolConfig, Role, Route, SaPair, SocketGroup, StartAction, Tunnel,
};
use crate::host::{Device, PciAddr};

mod templates;

/// Facts about the machine the file is checked on (`espresso check` runs
/// on the gateway itself).
#[derive(Clone, Debug, Default)]
pub(super) struct Host {
    /// Online CPUs; `None` when unknown (then lcores are not checked).
    pub online_cpus: Option<Vec<u32>>,
}

impl Host {
    pub(super) fn current() -> Self {
        let online_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| parse_lcore_list(s.trim()).ok());
        Self { online_cpus }
    }
}

/// Reads and validates `text`: the configuration if nothing is wrong, and
/// every error and warning found either way, in file order.
///
/// Two passes. The first reads the file key by key and reports every
/// unknown key, wrong type, out-of-range number and unknown word. The
/// second, semantic one (addresses, references, keys, overlaps) checks
/// every item the first could read and reports the problems of each
/// independent one (each section, interface, route, neighbour, tunnel,
/// policy, SA pair and IKE section); items that depend on a broken one
/// (routes when an interface failed, SAs when a policy failed) are not
/// checked, so one mistake is not reported ten times.
pub(super) fn check(
    text: &str,
    file: &Path,
    host: &Host,
) -> (Option<GatewayConfig>, Vec<ConfigError>) {
    let d = Diags::new(text, file);
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            // The parser's excerpt of the line is left out: it could show
            // a key.
            let lc = e.span().map(|s| line_col(text, s.start));
            let reason = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            d.push(ConfigError::new(
                ErrorKind::Syntax,
                Severity::Error,
                file,
                lc,
                None,
                format!("not valid TOML: {reason}"),
            ));
            return (None, d.into_list());
        }
    };
    let raw = read(Tbl::root(&d, doc.as_table()));
    let cx = Ctx { d: &d, host };
    let config = validate(&cx, raw);
    let config = config.filter(|_| d.error_count() == 0);
    (config, d.into_list())
}

struct Ctx<'d, 'a> {
    d: &'d Diags<'a>,
    host: &'d Host,
}

impl<'a> Ctx<'_, 'a> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        self.d.invalid(&field.into(), reason.into())
    }

    fn warn(&self, field: impl Into<String>, reason: impl Into<String>) {
        self.d.warn(&field.into(), reason.into());
    }

    fn file(&self) -> &'a Path {
        self.d.file()
    }

    /// The value, or `None` with the error kept.
    fn keep<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.d.push(e)).ok()
    }

    fn errors(&self) -> usize {
        self.d.error_count()
    }
}

mod pools;

fn validate(cx: &Ctx, raw: RawConfig) -> Option<GatewayConfig> {
    let mut dataplane = raw.dataplane.and_then(|r| cx.keep(dataplane_config(cx, r)));
    let control = raw.control.and_then(|r| cx.keep(control_config(cx, r)));
    if let (Some(dataplane), Some(control)) = (dataplane.as_mut(), control.as_ref()) {
        if dataplane.runtime_dir.as_os_str().is_empty() {
            dataplane.runtime_dir = control
                .socket
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(
                    || PathBuf::from(DataplaneConfig::DEFAULT_RUNTIME_DIR),
                    Path::to_path_buf,
                );
        }
    }
    // The queue checks need the worker count; without a valid one they
    // take the default rather than report against a guess.
    let workers = dataplane
        .as_ref()
        .map_or(DataplaneConfig::DEFAULT_WORKERS, |d| d.workers);
    let metrics = raw.metrics.and_then(|r| cx.keep(metrics_config(cx, r)));
    if raw.interface.iter().any(Option::is_none) {
        // Everything below refers to interfaces.
        return None;
    }
    let before = cx.errors();
    let interfaces = interfaces(cx, raw.interface.into_iter().flatten().collect(), workers);
    if cx.errors() > before {
        return None;
    }
    let routes_read = raw.route.iter().all(Option::is_some);
    let before = cx.errors();
    let routes: Vec<Route> = raw
        .route
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| cx.keep(route(cx, &interfaces, FieldPath::indexed("route", i), r?)))
        .collect();
    let routes_ok = routes_read && cx.errors() == before;
    let neighbours = neighbours(cx, &interfaces, raw.neighbour);
    if !raw.tunnel.is_empty() {
        for (role, word) in [(Role::Wan, "wan"), (Role::Lan, "lan")] {
            if !interfaces.iter().any(|i| i.role == role) {
                cx.d.push(cx.err(
                    "interface",
                    format!("tunnels need at least one interface with role = \"{word}\""),
                ));
            }
        }
    }
    let tunnels_read = raw.tunnel.iter().all(Option::is_some);
    let before = cx.errors();
    let secrets = templates::secrets(cx, raw.secret);
    let tunnels = tunnels(cx, &interfaces, raw.tunnel);
    let pools_read = raw.pool.iter().all(Option::is_some);
    let pools = pools::pools(cx, raw.pool);
    if tunnels_read && pools_read && cx.errors() == before {
        pools::references(cx, &interfaces, &tunnels, &pools);
    }
    if tunnels_read && cx.errors() == before {
        if routes_ok {
            peer_routes(cx, &interfaces, &routes, &tunnels);
        }
        policy_overlaps(cx, &tunnels);
        templates::check(cx, &tunnels, &secrets);
    }
    Some(GatewayConfig {
        dataplane: dataplane?,
        control: control?,
        metrics: metrics?,
        interfaces,
        routes,
        neighbours,
        tunnels,
        pools,
        secrets,
    })
}

/// Every tunnel's peer must be reachable: on a network of an interface or
/// through a `[[route]]`. Without one the gateway could never send the
/// peer an ESP or IKE packet.
fn peer_routes(cx: &Ctx, interfaces: &[Interface], routes: &[Route], tunnels: &[Tunnel]) {
    let mut table = dataplane::route::RouteTable::new();
    for (i, iface) in interfaces.iter().enumerate() {
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
    for r in routes {
        table.insert(r.prefix, r.next_hop);
    }
    // A template's peers are wherever its prefixes say; a route to each
    // is looked up when it connects.
    for (i, t) in tunnels.iter().enumerate().filter(|(_, t)| !t.is_template()) {
        let peer = t.endpoints.remote;
        if table.lookup(peer).is_none() {
            cx.d.push(cx.err(
                FieldPath::indexed("tunnel", i).key("remote_addrs"),
                format!(
                    "no route to peer {peer} of tunnel \"{}\": no interface network contains it and no [[route]] reaches it (add a [[route]] whose prefix contains it, e.g. a default route \"{}\" via your next hop)",
                    t.name,
                    if peer.is_ipv4() { "0.0.0.0/0" } else { "::/0" }
                ),
            ));
        }
    }
}

/// Whether every packet `b` matches is also matched by `a`.
fn selector_covers(a: &Selector, b: &Selector) -> bool {
    let prefix_covers = |x: &IpPrefix, y: &IpPrefix| {
        x.is_ipv4() == y.is_ipv4() && x.prefix_len() <= y.prefix_len() && x.contains(&y.addr())
    };
    let ports_cover = |x: &std::ops::RangeInclusive<u16>, y: &std::ops::RangeInclusive<u16>| {
        x.start() <= y.start() && y.end() <= x.end()
    };
    prefix_covers(&a.src, &b.src)
        && prefix_covers(&a.dst, &b.dst)
        && (a.protocol.is_none() || a.protocol == b.protocol)
        && ports_cover(&a.src_ports, &b.src_ports)
        && ports_cover(&a.dst_ports, &b.dst_ports)
}

/// Policies (by their index in check order) by source and destination
/// prefix: which ones nest with a given selector in both, the only ones
/// whose selectors can overlap or cover.
#[derive(Default)]
struct SrcIndex {
    by_src: PrefixMap<PrefixMap<Vec<usize>>>,
}

impl SrcIndex {
    fn insert(&mut self, sel: &Selector, index: usize) {
        self.by_src.entry(&sel.src).entry(&sel.dst).push(index);
    }

    /// Indices of the policies whose source and destination prefixes
    /// each contain `sel`'s or lie inside them, ascending.
    fn nesting(&self, sel: &Selector) -> impl Iterator<Item = usize> {
        let mut out: Vec<usize> = Vec::new();
        for by_dst in self.by_src.nesting(&sel.src) {
            for v in by_dst.nesting(&sel.dst) {
                out.extend(v);
            }
        }
        out.sort_unstable();
        out.into_iter()
    }
}

/// Values by IP prefix, found by nesting.
struct PrefixMap<T> {
    /// (IPv4, network as a number, length) -> value.
    map: std::collections::BTreeMap<(bool, u128, u8), T>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        Self {
            map: std::collections::BTreeMap::new(),
        }
    }
}

impl<T: Default> PrefixMap<T> {
    /// Host bits of a prefix of `len` bits in an address of `width` bits.
    fn host_bits(width: u32, len: u8) -> u128 {
        let len = u32::from(len).min(width);
        let full = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        if len == 0 {
            full
        } else {
            (1u128 << (width - len)) - 1
        }
    }

    fn width(v4: bool) -> u32 {
        if v4 {
            32
        } else {
            128
        }
    }

    /// The network of `p`'s address at length `len`.
    fn key(p: &IpPrefix, len: u8) -> (bool, u128, u8) {
        let (v4, bits) = match p.addr() {
            IpAddr::V4(a) => (true, u128::from(u32::from(a))),
            IpAddr::V6(a) => (false, u128::from(a)),
        };
        (v4, bits & !Self::host_bits(Self::width(v4), len), len)
    }

    fn entry(&mut self, p: &IpPrefix) -> &mut T {
        self.map.entry(Self::key(p, p.prefix_len())).or_default()
    }

    /// The values of the prefixes that contain `p` (or equal it) and of
    /// those inside it.
    fn nesting(&self, p: &IpPrefix) -> Vec<&T> {
        let len = p.prefix_len();
        let mut out = Vec::new();
        // Containing it: one network per length up to its own.
        for l in 0..=len {
            if let Some(v) = self.map.get(&Self::key(p, l)) {
                out.push(v);
            }
        }
        // Inside it: networks in its range with a longer length.
        let (v4, net, _) = Self::key(p, len);
        let span = Self::host_bits(Self::width(v4), len);
        for ((_, _, l), v) in self.map.range((v4, net, 0)..=(v4, net | span, u8::MAX)) {
            if *l > len {
                out.push(v);
            }
        }
        out
    }
}

/// Whether some packet matches both.
fn selectors_overlap(a: &Selector, b: &Selector) -> bool {
    // Prefixes either nest or are disjoint.
    let prefixes = |x: &IpPrefix, y: &IpPrefix| {
        x.is_ipv4() == y.is_ipv4()
            && (x.contains(&y.addr()) && x.prefix_len() <= y.prefix_len()
                || y.contains(&x.addr()) && y.prefix_len() <= x.prefix_len())
    };
    let ports = |x: &std::ops::RangeInclusive<u16>, y: &std::ops::RangeInclusive<u16>| {
        x.start() <= y.end() && y.start() <= x.end()
    };
    prefixes(&a.src, &b.src)
        && prefixes(&a.dst, &b.dst)
        && (a.protocol.is_none() || b.protocol.is_none() || a.protocol == b.protocol)
        && ports(&a.src_ports, &b.src_ports)
        && ports(&a.dst_ports, &b.dst_ports)
}

fn action_name(a: Action, tunnels: &[Tunnel]) -> String {
    match a {
        Action::Protect(SaRef(i)) => match tunnels.get(i as usize) {
            Some(t) => format!("protect through tunnel \"{}\"", t.name),
            None => "protect".into(),
        },
        Action::Bypass => "bypass".into(),
        Action::Discard => "discard".into(),
    }
}

/// Policies are tried in (priority, file order) across all tunnels, the
/// first match wins (RFC 4301 §4.4.1: the SPD is ordered).
///
/// - A policy that an earlier one covers entirely can never match. With a
///   different outcome that is an error: the file says traffic is
///   handled one way and it is handled another, and nothing at run time
///   would show it. With the same outcome it is a warning (redundant,
///   harmless).
/// - Two policies with different outcomes that overlap, where the winner
///   is not an exception carved out of the other (the winner lies
///   entirely inside the loser, like a "discard telnet" inside a broad
///   "protect"), get a warning: which packets go where depends on the
///   priorities, easy to misread.
fn policy_overlaps(cx: &Ctx, tunnels: &[Tunnel]) {
    let mut all: Vec<(FieldPath, &Policy, usize)> = Vec::new();
    for (i, t) in tunnels.iter().enumerate() {
        for (j, pol) in t.policies.iter().enumerate() {
            let order = all.len();
            all.push((
                FieldPath::indexed("tunnel", i).item("policy", j),
                pol,
                order,
            ));
        }
    }
    all.sort_by_key(|(_, pol, order)| (pol.priority, *order));
    // Only policies whose source and destination prefixes both nest can
    // overlap: the earlier ones are found through an index of prefixes,
    // not by trying every pair (100,000 policies made that 5 * 10^9
    // pairs, minutes).
    let mut by_src = SrcIndex::default();
    for (k, (path, pol, _)) in all.iter().enumerate() {
        let earlier: Vec<&(FieldPath, &Policy, usize)> =
            by_src.nesting(&pol.selector).map(|i| &all[i]).collect();
        by_src.insert(&pol.selector, k);
        if let Some((wpath, winner, _)) = earlier
            .iter()
            .copied()
            .find(|(_, w, _)| selector_covers(&w.selector, &pol.selector))
        {
            let what = format!(
                "can never match: {wpath} (priority {}) comes first and covers all of its traffic",
                winner.priority
            );
            if winner.action == pol.action {
                cx.warn(path, format!("{what} with the same action (redundant)"));
            } else {
                cx.d.push(cx.err(
                    path,
                    format!(
                        "{what}, so its traffic gets \"{}\" instead of \"{}\"; give it a lower priority number than {wpath}, or remove it",
                        action_name(winner.action, tunnels),
                        action_name(pol.action, tunnels)
                    ),
                ));
            }
            continue;
        }
        for &(wpath, winner, _) in &earlier {
            if winner.action != pol.action
                && selectors_overlap(&winner.selector, &pol.selector)
                && !selector_covers(&pol.selector, &winner.selector)
            {
                cx.warn(
                    path,
                    format!(
                        "overlaps {wpath} (priority {}), which comes first: their common traffic gets \"{}\", not \"{}\"",
                        winner.priority,
                        action_name(winner.action, tunnels),
                        action_name(pol.action, tunnels)
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------- [dataplane]

fn dataplane_config(cx: &Ctx, raw: RawDataplane) -> Result<DataplaneConfig, ConfigError> {
    let workers = raw.workers.unwrap_or(DataplaneConfig::DEFAULT_WORKERS);
    if !(1..=DataplaneConfig::MAX_WORKERS).contains(&workers) {
        return Err(cx.err(
            "dataplane.workers",
            format!(
                "{workers} is out of range 1..={}",
                DataplaneConfig::MAX_WORKERS
            ),
        ));
    }
    let lcores_given = raw.lcores.is_some();
    let lcores = match raw.lcores {
        None => format!("0-{workers}"),
        Some(list) => {
            let n = parse_lcore_list(&list)
                .map_err(|e| cx.err("dataplane.lcores", e))?
                .len();
            let need = workers as usize + 1;
            if n < need {
                return Err(cx.err(
                    "dataplane.lcores",
                    format!(
                        "\"{list}\" names {n} lcore(s) but {workers} worker(s) and the control thread need {need}"
                    ),
                ));
            }
            list
        }
    };
    if let Some(online) = &cx.host.online_cpus {
        let missing: Vec<String> = parse_lcore_list(&lcores)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !online.contains(c))
            .map(|c| c.to_string())
            .collect();
        if !missing.is_empty() {
            if lcores_given {
                // EAL cannot start on a CPU that is not there.
                return Err(cx.err(
                    "dataplane.lcores",
                    format!(
                        "\"{lcores}\" names CPU(s) {} that this host does not have online (online: {}); list online CPUs in `lcores` or lower `workers`",
                        missing.join(", "),
                        cpu_list(online)
                    ),
                ));
            }
            // Without `lcores` the workers take the online CPUs after the
            // control thread's in turn: more workers than CPUs share them,
            // which runs (a test machine, a shared host) but halves what
            // each poll-mode worker can do.
            cx.warn(
                "dataplane.workers",
                format!(
                    "{workers} worker(s) and the control thread on {} online CPU(s) ({}): workers will share CPUs; set `lcores` to place them, or lower `workers`",
                    online.len(),
                    cpu_list(online)
                ),
            );
        }
    }
    let memory_mb = raw.memory_mb.unwrap_or(DataplaneConfig::DEFAULT_MEMORY_MB);
    if memory_mb == 0 {
        return Err(cx.err("dataplane.memory_mb", "must not be 0"));
    }
    let mbufs = raw.mbufs.unwrap_or(DataplaneConfig::DEFAULT_MBUFS);
    let burst = raw.burst.unwrap_or(DataplaneConfig::DEFAULT_BURST);
    if !(1..=DataplaneConfig::MAX_BURST).contains(&burst) {
        return Err(cx.err(
            "dataplane.burst",
            format!("{burst} is out of range 1..={}", DataplaneConfig::MAX_BURST),
        ));
    }
    if mbufs < burst * 2 {
        return Err(cx.err(
            "dataplane.mbufs",
            format!("{mbufs} mbufs cannot fill even two bursts of {burst}"),
        ));
    }
    // The mbuf pool is not in EAL memory: EAL runs without hugepages, and
    // then `dpdk::Mempool` puts the pool in a mapping of its own (in
    // transparent huge pages). EAL's memory holds the rest of DPDK's
    // allocations (rings, queues, the pool's header).
    if u64::from(memory_mb) < DataplaneConfig::EAL_HEADROOM_MB {
        return Err(cx.err(
            "dataplane.memory_mb",
            format!(
                "{memory_mb} MiB is below the {} MiB EAL needs besides the mbuf pool",
                DataplaneConfig::EAL_HEADROOM_MB
            ),
        ));
    }
    let eal_args = raw.eal_args.unwrap_or_default();
    for (i, a) in eal_args.iter().enumerate() {
        let name = a.split('=').next().unwrap_or(a);
        let owner = match name {
            "-l" | "-c" | "--lcores" => Some("dataplane.lcores"),
            "-m" | "--socket-mem" => Some("dataplane.memory_mb"),
            "--no-huge" | "--in-memory" => Some("dataplane.hugepages"),
            "--telemetry" | "--no-telemetry" => Some("dataplane.telemetry"),
            "-a" | "--allow" | "--no-pci" => Some("interface.device (a PCI address)"),
            _ => None,
        };
        if let Some(owner) = owner {
            return Err(cx.err(
                format!("dataplane.eal_args[{i}]"),
                format!("`{name}` is set by {owner}; do not repeat it here"),
            ));
        }
    }
    let crypto_backend = match raw.crypto_backend.as_deref() {
        None | Some("auto") => CryptoBackendChoice::Auto,
        Some(name) => CryptoBackendChoice::Fixed(name.parse::<Backend>().map_err(|_| {
            cx.err(
                "dataplane.crypto_backend",
                format!("unknown backend \"{name}\" (expected \"auto\", \"ipsec-mb\", \"aws-lc\" or \"rust\")"),
            )
        })?),
    };
    let icmp_errors_per_second = raw
        .icmp_errors_per_second
        .unwrap_or(DataplaneConfig::DEFAULT_ICMP_ERRORS_PER_SECOND);
    let icmp_error_burst = raw
        .icmp_error_burst
        .unwrap_or(DataplaneConfig::DEFAULT_ICMP_ERROR_BURST);
    for (field, v) in [
        ("dataplane.icmp_errors_per_second", icmp_errors_per_second),
        ("dataplane.icmp_error_burst", icmp_error_burst),
    ] {
        if v > DataplaneConfig::MAX_ICMP_ERRORS {
            return Err(cx.err(
                field,
                format!(
                    "{v} is out of range 0..={}",
                    DataplaneConfig::MAX_ICMP_ERRORS
                ),
            ));
        }
    }
    if icmp_errors_per_second > 0 && icmp_error_burst == 0 {
        return Err(cx.err(
            "dataplane.icmp_error_burst",
            "0 would send no ICMP error at all; set icmp_errors_per_second = 0 for that",
        ));
    }
    // An unknown word was reported by the reader, with the valid ones.
    let hugepages = match raw.hugepages.as_deref() {
        Some("on") => HugepageMode::On,
        Some("off") => HugepageMode::Off,
        _ => HugepageMode::Auto,
    };
    let runtime_dir = match raw.runtime_dir {
        // Filled in from the control socket's directory by `validate`.
        None => PathBuf::new(),
        Some(d) if !d.is_absolute() => {
            return Err(cx.err(
                "dataplane.runtime_dir",
                format!("\"{}\" is not an absolute path", d.display()),
            ))
        }
        Some(d) => d,
    };
    Ok(DataplaneConfig {
        workers,
        lcores,
        memory_mb,
        mbufs,
        burst,
        eal_args,
        crypto_backend,
        icmp_errors_per_second,
        icmp_error_burst,
        hugepages,
        telemetry: raw.telemetry.unwrap_or(true),
        runtime_dir,
    })
}

/// `0-3,6` for [0, 1, 2, 3, 6] (ascending input).
pub(super) fn cpu_list(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The distinct lcores of an EAL list like `0-3,6,8-9`, ascending.
pub(crate) fn parse_lcore_list(list: &str) -> Result<Vec<u32>, String> {
    let bad =
        || format!("\"{list}\" is not an lcore list (expected numbers and ranges like \"0-3,6\")");
    let mut cores = std::collections::BTreeSet::new();
    for part in list.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b || b >= 1024 {
            return Err(bad());
        }
        cores.extend(a..=b);
    }
    Ok(cores.into_iter().collect())
}

// ------------------------------------------------------------------ [control]

fn control_config(cx: &Ctx, raw: RawControl) -> Result<ControlConfig, ConfigError> {
    let socket = raw
        .socket
        .unwrap_or_else(|| PathBuf::from(crate::client::DEFAULT_SOCKET));
    if socket.as_os_str().is_empty() {
        return Err(cx.err("control.socket", "must not be empty"));
    }
    let log = raw.log.unwrap_or_else(|| "info".to_string());
    tracing_subscriber::EnvFilter::try_new(&log)
        .map_err(|e| cx.err("control.log", format!("\"{log}\" is not a log filter: {e}")))?;
    // An unknown name was reported by the reader, with the valid ones.
    let log_format = raw
        .log_format
        .as_deref()
        .and_then(LogFormat::from_name)
        .unwrap_or_default();
    let socket_group = match raw.socket_group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(&name) {
            Ok(Some(g)) => Some(SocketGroup {
                name,
                gid: g.gid.as_raw(),
            }),
            _ => {
                return Err(cx.err(
                    "control.socket_group",
                    format!("no group \"{name}\" on this system"),
                ))
            }
        },
    };
    let ike_cookie_threshold = raw
        .ike_cookie_threshold
        .unwrap_or(crate::ike::Config::DEFAULT_COOKIE_THRESHOLD);
    let ike_half_open_per_source = raw
        .ike_half_open_per_source
        .unwrap_or(crate::ike::Config::DEFAULT_HALF_OPEN_PER_SOURCE);
    let ike_half_open_max = raw
        .ike_half_open_max
        .unwrap_or(crate::ike::Config::DEFAULT_HALF_OPEN_MAX);
    if ike_half_open_per_source == 0 || ike_half_open_max == 0 {
        return Err(cx.err(
            "control.ike_half_open_max",
            "half-open limits must be at least 1 (or no IKE peer could ever connect)",
        ));
    }
    // The workers' table of half-open SPIs and the engines' state are sized
    // from it: a few KB per half-open SA, so this is a few hundred MB.
    const HALF_OPEN_MAX_LIMIT: usize = 65_536;
    if ike_half_open_max > HALF_OPEN_MAX_LIMIT {
        return Err(cx.err(
            "control.ike_half_open_max",
            format!("{ike_half_open_max} is over {HALF_OPEN_MAX_LIMIT} (each half-open IKE SA holds a few KB, and the workers' SPI table is sized from this)"),
        ));
    }
    let ike_cookie_secret_lifetime = match raw.ike_cookie_secret_lifetime {
        None => Duration::from_millis(crate::ike::Config::DEFAULT_COOKIE_SECRET_LIFETIME_MS),
        Some(s) => {
            parse_duration(&s).map_err(|e| cx.err("control.ike_cookie_secret_lifetime", e))?
        }
    };
    if ike_cookie_secret_lifetime < Duration::from_secs(1) {
        return Err(cx.err(
            "control.ike_cookie_secret_lifetime",
            "must be at least 1s (an initiator needs a round trip to return its cookie)",
        ));
    }
    Ok(ControlConfig {
        socket,
        socket_group,
        log,
        log_format,
        ike_cookie_threshold,
        ike_half_open_per_source,
        ike_half_open_max,
        ike_cookie_secret_lifetime,
        state_dir: match raw.state_dir {
            Some(d) if d.as_os_str().is_empty() => {
                return Err(cx.err(
                    "control.state_dir",
                    "must not be empty (leave it out to keep no state)",
                ))
            }
            d => d.map(|d| resolve(cx.file(), &d)),
        },
    })
}

// ------------------------------------------------------------------ [metrics]

fn metrics_config(cx: &Ctx, raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let Some(listen) = raw.listen else {
        return Ok(MetricsConfig::default());
    };
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        cx.err(
            "metrics.listen",
            format!("\"{listen}\" is not an address and port (e.g. \"127.0.0.1:9469\" or \"[::1]:9469\")"),
        )
    })?;
    if addr.port() == 0 {
        return Err(cx.err(
            "metrics.listen",
            "needs a port (a scrape configuration names a fixed one)",
        ));
    }
    if addr.ip().is_multicast() {
        return Err(cx.err(
            "metrics.listen",
            format!("{} is a multicast address", addr.ip()),
        ));
    }
    Ok(MetricsConfig { listen: Some(addr) })
}

// -------------------------------------------------------------- [[interface]]

/// Every interface that is valid; the errors of the others are kept.
fn interfaces(cx: &Ctx, raw: Vec<RawInterface>, workers: u32) -> Vec<Interface> {
    if raw.is_empty() {
        cx.d.push(cx.err("interface", "at least one [[interface]] is needed"));
        return Vec::new();
    }
    if raw.len() > usize::from(u16::MAX) {
        cx.d.push(cx.err("interface", "too many interfaces"));
        return Vec::new();
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut addrs: HashMap<IpAddr, String> = HashMap::new();
    let mut pci_seen: HashMap<PciAddr, usize> = HashMap::new();
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            cx.keep(interface(
                cx,
                &mut names,
                &mut addrs,
                &mut pci_seen,
                workers,
                i,
                r,
            ))
        })
        .collect()
}

fn interface(
    cx: &Ctx,
    names: &mut HashMap<String, usize>,
    addrs: &mut HashMap<IpAddr, String>,
    pci_seen: &mut HashMap<PciAddr, usize>,
    workers: u32,
    i: usize,
    r: RawInterface,
) -> Result<Interface, ConfigError> {
    {
        let p = FieldPath::indexed("interface", i);
        if r.name.trim().is_empty() {
            return Err(cx.err(p.key("name"), "must not be empty"));
        }
        if let Some(first) = names.insert(r.name.clone(), i) {
            return Err(cx.err(
                p.key("name"),
                format!("\"{}\" is already the name of interface[{first}]", r.name),
            ));
        }
        if r.device.trim().is_empty() {
            return Err(cx.err(
                p.key("device"),
                "must not be empty (a DPDK device string such as \"net_af_packet0,iface=eth0\" or a PCI address such as \"0000:03:00.0\")",
            ));
        }
        let device = Device::parse(&r.device).map_err(|e| cx.err(p.key("device"), e))?;
        if let Device::Pci { addr, .. } = device {
            if let Some(j) = pci_seen.insert(addr, i) {
                return Err(cx.err(
                    p.key("device"),
                    format!("PCI device {addr} is already interface[{j}]"),
                ));
            }
        }
        let queues = port_queues(cx, &p, &r, workers)?;
        let mut addresses = Vec::with_capacity(r.addresses.len());
        for (j, a) in r.addresses.iter().enumerate() {
            let ap = p.item("addresses", j);
            let net: IpNet = a.parse().map_err(|_| {
                cx.err(
                    &ap,
                    format!("\"{a}\" is not an address with a prefix length (e.g. \"10.1.0.1/24\" or \"fd01::1/64\")"),
                )
            })?;
            let addr = net.addr();
            if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
                return Err(cx.err(&ap, format!("{addr} cannot be an interface address")));
            }
            if let IpNet::V4(v4) = net {
                if v4.prefix_len() < 31
                    && (addr == IpAddr::V4(v4.network()) || addr == IpAddr::V4(v4.broadcast()))
                {
                    return Err(cx.err(
                        &ap,
                        format!(
                            "{addr} is the network or broadcast address of {}",
                            net.trunc()
                        ),
                    ));
                }
            }
            if let Some(other) = addrs.insert(addr, ap.to_string()) {
                return Err(cx.err(&ap, format!("{addr} is already assigned at {other}")));
            }
            addresses.push(net);
        }
        let mtu = r.mtu.unwrap_or(Interface::DEFAULT_MTU);
        let min_mtu = if addresses.iter().any(|a| matches!(a, IpNet::V6(_))) {
            1280 // RFC 8200 §5.
        } else {
            576
        };
        if !(min_mtu..=9600).contains(&mtu) {
            return Err(cx.err(
                p.key("mtu"),
                format!("{mtu} is out of range {min_mtu}..=9600"),
            ));
        }
        if let Some(mss) = r.mss_clamp {
            let max = mtu - 40;
            if !(536..=max).contains(&mss) {
                return Err(cx.err(
                    p.key("mss_clamp"),
                    format!("{mss} is out of range 536..={max} (MTU {mtu} minus 40 bytes of IP and TCP headers)"),
                ));
            }
        }
        Ok(Interface {
            name: r.name,
            device: device.eal_string(),
            rx_queues: queues.rx_queues,
            tx_queues: queues.tx_queues,
            rx_desc: queues.rx_desc,
            tx_desc: queues.tx_desc,
            role: match r.role {
                RawRole::Lan => Role::Lan,
                RawRole::Wan => Role::Wan,
            },
            addresses,
            mtu,
            mss_clamp: r.mss_clamp,
        })
    }
}

/// An interface's queue and descriptor keys, checked against the number
/// of workers: every worker sends on a TX queue of its own (DPDK TX queues
/// are not shared between threads), and an RX queue no worker polls would
/// hold the packets the device spreads to it.
struct PortQueues {
    rx_queues: Option<u16>,
    tx_queues: Option<u16>,
    rx_desc: Option<u16>,
    tx_desc: Option<u16>,
}

fn port_queues(
    cx: &Ctx,
    p: &FieldPath,
    r: &RawInterface,
    workers: u32,
) -> Result<PortQueues, ConfigError> {
    let max = u32::from(Interface::MAX_QUEUES);
    let rx_queues = match r.rx_queues {
        None => None,
        Some(n) if !(1..=max).contains(&n) => {
            return Err(cx.err(p.key("rx_queues"), format!("{n} is out of range 1..={max}")))
        }
        Some(n) if n > workers => {
            return Err(cx.err(
                p.key("rx_queues"),
                format!(
                "{n} RX queues but {workers} worker(s): each RX queue needs a worker to poll it"
            ),
            ))
        }
        Some(n) => Some(n as u16),
    };
    let tx_queues = match r.tx_queues {
        None => None,
        Some(n) if !(1..=max).contains(&n) => {
            return Err(cx.err(p.key("tx_queues"), format!("{n} is out of range 1..={max}")))
        }
        Some(n) if n < workers => {
            return Err(cx.err(
                p.key("tx_queues"),
                format!(
                "{n} TX queues but {workers} worker(s): each worker sends on a TX queue of its own"
            ),
            ))
        }
        Some(n) => Some(n as u16),
    };
    let desc = |key: &str, v: Option<u32>| -> Result<Option<u16>, ConfigError> {
        let (lo, hi) = (
            u32::from(Interface::MIN_DESC),
            u32::from(Interface::MAX_DESC),
        );
        match v {
            None => Ok(None),
            Some(n) if !(lo..=hi).contains(&n) || !n.is_power_of_two() => Err(cx.err(
                p.key(key),
                format!("{n} is not a power of two in {lo}..={hi}"),
            )),
            Some(n) => Ok(Some(n as u16)),
        }
    };
    Ok(PortQueues {
        rx_queues,
        tx_queues,
        rx_desc: desc("rx_desc", r.rx_desc)?,
        tx_desc: desc("tx_desc", r.tx_desc)?,
    })
}

fn interface_by_name(
    cx: &Ctx,
    interfaces: &[Interface],
    field: FieldPath,
    name: &str,
) -> Result<u16, ConfigError> {
    interfaces
        .iter()
        .position(|i| i.name == name)
        .map(|i| i as u16)
        .ok_or_else(|| {
            let known: Vec<_> = interfaces
                .iter()
                .map(|i| format!("\"{}\"", i.name))
                .collect();
            cx.err(
                field,
                format!(
                    "no interface is called \"{name}\" (interfaces: {})",
                    known.join(", ")
                ),
            )
        })
}

fn parse_addr(cx: &Ctx, field: &FieldPath, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| cx.err(field, format!("\"{s}\" is not an IPv4 or IPv6 address")))
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_own_address(interfaces: &[Interface], a: IpAddr) -> bool {
    interfaces
        .iter()
        .any(|i| i.addresses.iter().any(|n| n.addr() == a))
}

/// `a` must be on a network connected to `iface` (IPv6 link-local always
/// is) and not our own address.
fn check_on_link(
    cx: &Ctx,
    interfaces: &[Interface],
    field: &FieldPath,
    iface: u16,
    a: IpAddr,
) -> Result<(), ConfigError> {
    let i = &interfaces[usize::from(iface)];
    if is_own_address(interfaces, a) {
        return Err(cx.err(field, format!("{a} is one of this gateway's own addresses")));
    }
    if !is_link_local(a) && !i.addresses.iter().any(|n| n.contains(&a)) {
        let nets: Vec<_> = i.addresses.iter().map(|n| n.trunc().to_string()).collect();
        return Err(cx.err(
            field,
            format!(
                "{a} is not on a network of interface \"{}\" ({})",
                i.name,
                if nets.is_empty() {
                    "it has no addresses".to_string()
                } else {
                    nets.join(", ")
                }
            ),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ [[route]]

fn route(
    cx: &Ctx,
    interfaces: &[Interface],
    p: FieldPath,
    r: RawRoute,
) -> Result<Route, ConfigError> {
    let prefix: IpNet = r.prefix.parse().map_err(|_| {
        cx.err(
            p.key("prefix"),
            format!(
                "\"{}\" is not a prefix (e.g. \"10.2.0.0/24\" or \"fd02::/64\")",
                r.prefix
            ),
        )
    })?;
    if prefix.trunc() != prefix {
        return Err(cx.err(
            p.key("prefix"),
            format!(
                "{prefix} has bits set past the prefix length (did you mean {}?)",
                prefix.trunc()
            ),
        ));
    }
    let interface = interface_by_name(cx, interfaces, p.key("interface"), &r.interface)?;
    let via = match r.via {
        None => None,
        Some(v) => {
            let vp = p.key("via");
            let a = parse_addr(cx, &vp, &v)?;
            if a.is_ipv4() != matches!(prefix, IpNet::V4(_)) {
                return Err(cx.err(
                    &vp,
                    format!("{a} is not of the same address family as prefix {prefix}"),
                ));
            }
            check_on_link(cx, interfaces, &vp, interface, a)?;
            Some(a)
        }
    };
    Ok(Route {
        prefix,
        next_hop: NextHop { interface, via },
    })
}

// -------------------------------------------------------------- [[neighbour]]

fn neighbours(
    cx: &Ctx,
    interfaces: &[Interface],
    raw: Vec<Option<RawNeighbour>>,
) -> Vec<Neighbour> {
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| cx.keep(neighbour(cx, interfaces, &mut seen, i, r?)))
        .collect()
}

fn neighbour(
    cx: &Ctx,
    interfaces: &[Interface],
    seen: &mut HashMap<(IpAddr, u16), usize>,
    i: usize,
    r: RawNeighbour,
) -> Result<Neighbour, ConfigError> {
    {
        let p = FieldPath::indexed("neighbour", i);
        let interface = interface_by_name(cx, interfaces, p.key("interface"), &r.interface)?;
        let address = parse_addr(cx, &p.key("address"), &r.address)?;
        check_on_link(cx, interfaces, &p.key("address"), interface, address)?;
        let mac: MacAddr = r.mac.parse().map_err(|e| cx.err(p.key("mac"), e))?;
        if mac.0[0] & 1 != 0 || mac.0 == [0; 6] {
            return Err(cx.err(p.key("mac"), format!("{mac} is not a unicast MAC address")));
        }
        if let Some(first) = seen.insert((address, interface), i) {
            return Err(cx.err(
                p.key("address"),
                format!(
                    "{address} on \"{}\" is already neighbour[{first}]",
                    r.interface
                ),
            ));
        }
        Ok(Neighbour {
            address,
            mac,
            interface,
        })
    }
}

// ----------------------------------------------------------------- [[tunnel]]

/// Where an SPI was first seen, for the uniqueness check.
#[derive(Default)]
struct SpiRegistry {
    inbound: HashMap<u32, String>,
    outbound: HashMap<u32, String>,
}

fn tunnels(cx: &Ctx, interfaces: &[Interface], raw: Vec<Option<RawTunnel>>) -> Vec<Tunnel> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut spis = SpiRegistry::default();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let p = FieldPath::indexed("tunnel", i);
        if r.name.trim().is_empty() {
            cx.d.push(cx.err(p.key("name"), "must not be empty"));
        } else if let Some(first) = names.insert(r.name.clone(), i) {
            cx.d.push(cx.err(
                p.key("name"),
                format!("\"{}\" is already the name of tunnel[{first}]", r.name),
            ));
        }
        if let Some(t) = tunnel(cx, interfaces, &mut spis, i, p, r) {
            out.push(t);
        }
    }
    out
}

/// The tunnel-wide settings, before its policies and SAs.
struct TunnelHead {
    endpoints: TunnelEndpoints,
    remote_prefixes: Option<Vec<IpNet>>,
    interface: u16,
    mode: Mode,
    udp_encap: Option<UdpEncap>,
    esn: bool,
    replay_window: u32,
    dscp: DscpPolicy,
    df: DfPolicy,
    outer_ttl: u8,
    lifetime: Lifetime,
}

fn tunnel_head(
    cx: &Ctx,
    interfaces: &[Interface],
    p: &FieldPath,
    r: &mut RawTunnel,
) -> Result<TunnelHead, ConfigError> {
    let local = parse_addr(cx, &p.key("local_addrs"), &r.local_addrs)?;
    let transport = matches!(r.mode, Some(RawMode::Transport));
    // Tunnel mode: the outer source is one of our addresses. Transport
    // mode may also protect a host on a LAN network on its behalf (a
    // bump-in-the-wire, RFC 4301 §3.3): then `local` is that host.
    let interface = interfaces
        .iter()
        .position(|i| i.addresses.iter().any(|n| n.addr() == local))
        .or_else(|| {
            transport
                .then(|| {
                    interfaces.iter().position(|i| {
                        i.role == Role::Lan && i.addresses.iter().any(|n| n.contains(&local))
                    })
                })
                .flatten()
        })
        .ok_or_else(|| {
            cx.err(
                p.key("local_addrs"),
                if transport {
                    format!("{local} is neither one of this gateway's interface addresses nor a host on a LAN network")
                } else {
                    format!("{local} is not one of this gateway's interface addresses")
                },
            )
        })? as u16;
    if templates::is_template(&r.remote_addrs) {
        let prefixes = templates::remote_prefixes(cx, p, &r.remote_addrs, local, interfaces)?;
        if transport {
            return Err(cx.err(
                p.key("mode"),
                "a responder template (remote_addrs %any or prefixes) runs in tunnel mode",
            ));
        }
        let remote = match local {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        return tunnel_rest(
            cx,
            p,
            r,
            TunnelEndpoints { local, remote },
            Some(prefixes),
            interface,
        );
    }
    let remote = parse_addr(cx, &p.key("remote_addrs"), &r.remote_addrs[0])?;
    if remote.is_ipv4() != local.is_ipv4() {
        return Err(cx.err(
            p.key("remote_addrs"),
            format!("{remote} is not of the same address family as local {local}"),
        ));
    }
    if remote.is_unspecified() || remote.is_multicast() || remote.is_loopback() {
        return Err(cx.err(
            p.key("remote_addrs"),
            format!("{remote} is not a unicast address"),
        ));
    }
    if is_own_address(interfaces, remote) {
        return Err(cx.err(
            p.key("remote_addrs"),
            format!("{remote} is one of this gateway's own addresses"),
        ));
    }
    let endpoints = TunnelEndpoints { local, remote };
    tunnel_rest(cx, p, r, endpoints, None, interface)
}

/// The rest of [`tunnel_head`], once the addresses are known.
fn tunnel_rest(
    cx: &Ctx,
    p: &FieldPath,
    r: &mut RawTunnel,
    endpoints: TunnelEndpoints,
    remote_prefixes: Option<Vec<IpNet>>,
    interface: u16,
) -> Result<TunnelHead, ConfigError> {
    let mode = match r.mode.unwrap_or(RawMode::Tunnel) {
        RawMode::Tunnel => Mode::Tunnel,
        RawMode::Transport => Mode::Transport,
    };
    let udp_encap = match r.udp_encap.take() {
        None | Some(RawUdpEncap::Enabled(false)) => None,
        Some(RawUdpEncap::Enabled(true)) => Some(UdpEncap::nat_t()),
        Some(RawUdpEncap::Ports(ports)) => {
            let src_port = ports.src_port.unwrap_or(UdpEncap::NAT_T_PORT);
            let dst_port = ports.dst_port.unwrap_or(UdpEncap::NAT_T_PORT);
            for (name, port) in [("src_port", src_port), ("dst_port", dst_port)] {
                if port == 0 {
                    return Err(cx.err(p.key("udp_encap").key(name), "must not be 0"));
                }
            }
            Some(UdpEncap { src_port, dst_port })
        }
    };
    let esn = r.esn.unwrap_or(false);
    let replay_window = r.replay_window.unwrap_or(ReplayWindow::DEFAULT_SIZE);
    if replay_window != 0
        && !(ReplayWindow::MIN_SIZE..=ReplayWindow::MAX_SIZE).contains(&replay_window)
    {
        return Err(cx.err(
            p.key("replay_window"),
            format!(
                "{replay_window} is neither 0 (disabled) nor in {}..={}",
                ReplayWindow::MIN_SIZE,
                ReplayWindow::MAX_SIZE
            ),
        ));
    }
    let dscp = match r.dscp.take() {
        None => DscpPolicy::Copy,
        Some(RawDscp::Word(w)) if w == "copy" => DscpPolicy::Copy,
        Some(RawDscp::Word(w)) => {
            return Err(cx.err(
                p.key("dscp"),
                format!("\"{w}\" is neither \"copy\" nor a number 0..=63"),
            ))
        }
        Some(RawDscp::Number(n)) => match u8::try_from(n) {
            Ok(d) if d <= 63 => DscpPolicy::Set(d),
            _ => return Err(cx.err(p.key("dscp"), format!("{n} is out of range 0..=63"))),
        },
    };
    let df = match r.df.unwrap_or(RawDf::Copy) {
        RawDf::Copy => DfPolicy::Copy,
        RawDf::Set => DfPolicy::Set,
        RawDf::Clear => DfPolicy::Clear,
    };
    let outer_ttl = r.outer_ttl.unwrap_or(SaConfig::DEFAULT_TTL);
    if outer_ttl == 0 {
        return Err(cx.err(p.key("outer_ttl"), "must not be 0"));
    }
    let lifetime = lifetime(
        cx,
        &p.key("lifetime"),
        r.lifetime.take().unwrap_or_default(),
    )?;

    Ok(TunnelHead {
        endpoints,
        remote_prefixes,
        interface,
        mode,
        udp_encap,
        esn,
        replay_window,
        dscp,
        df,
        outer_ttl,
        lifetime,
    })
}

fn tunnel(
    cx: &Ctx,
    interfaces: &[Interface],
    spis: &mut SpiRegistry,
    index: usize,
    p: FieldPath,
    mut r: RawTunnel,
) -> Option<Tunnel> {
    let TunnelHead {
        endpoints,
        remote_prefixes,
        interface,
        mode,
        udp_encap,
        esn,
        replay_window,
        dscp,
        df,
        outer_ttl,
        lifetime,
    } = cx.keep(tunnel_head(cx, interfaces, &p, &mut r))?;
    let before = cx.errors();
    let sa_ref = cx.keep(
        u32::try_from(index)
            .map(SaRef)
            .map_err(|_| cx.err(&p, "too many tunnels")),
    )?;
    let policies: Vec<Policy> = r
        .policy
        .iter()
        .enumerate()
        .filter_map(|(j, rp)| {
            cx.keep(policy(
                cx,
                &p.item("policy", j),
                rp,
                sa_ref,
                mode,
                endpoints,
            ))
        })
        .collect();
    if remote_prefixes.is_some() && (!r.sa.is_empty() || r.ike.is_none()) {
        cx.d.push(cx.err(
            &p,
            "a responder template (remote_addrs %any or prefixes) is keyed by IKE: it needs [tunnel.ike] and takes no [[tunnel.sa]]",
        ));
    }
    if r.sa.is_empty() && r.ike.is_none() {
        cx.d.push(cx.err(
            &p,
            "has neither [[tunnel.sa]] entries nor a [tunnel.ike] section; give one or both",
        ));
    }
    if cx.errors() > before {
        // The SAs' selectors come from the policies.
        return None;
    }

    // Inbound selectors: the PROTECT policies seen from the peer's side.
    let inbound_selectors: Vec<Selector> = policies
        .iter()
        .filter(|pol| matches!(pol.action, Action::Protect(_)))
        .map(|pol| Selector {
            src: pol.selector.dst,
            dst: pol.selector.src,
            protocol: pol.selector.protocol,
            src_ports: pol.selector.dst_ports.clone(),
            dst_ports: pol.selector.src_ports.clone(),
        })
        .collect();
    if inbound_selectors.is_empty() {
        cx.d.push(cx.err(
            p.key("policy"),
            "a tunnel needs at least one [[tunnel.policy]] with action = \"protect\"",
        ));
        return None;
    }

    let template = SaTemplate {
        mode,
        endpoints,
        udp_encap,
        esn,
        replay_window,
        lifetime,
        dscp,
        df,
        outer_ttl,
        inbound_selectors,
        outbound_selectors: policies
            .iter()
            .filter(|pol| matches!(pol.action, Action::Protect(_)))
            .map(|pol| pol.selector.clone())
            .collect(),
    };
    let before = cx.errors();
    let sas: Vec<SaPair> =
        r.sa.into_iter()
            .enumerate()
            .filter_map(|(j, rs)| cx.keep(sa_pair(cx, spis, &p, &p.item("sa", j), rs, &template)))
            .collect();
    let ike = match r.ike {
        None => None,
        Some(ri) => Some(cx.keep(ike(
            cx,
            &p.key("ike"),
            ri,
            endpoints,
            remote_prefixes.is_some(),
        ))?),
    };
    if cx.errors() > before {
        return None;
    }
    if let Some(ic) = &ike {
        // IKE offers the protect policies as traffic selectors and holds
        // the peer's reply to these limits (RFC 7296 §2.9): our own offer
        // must fit them. Each policy is one prefix; the data plane pairs
        // every local with every remote one of its family.
        let sel = &template.outbound_selectors;
        let n = sel.len();
        let n4 = sel.iter().filter(|s| s.src.addr().is_ipv4()).count();
        let pairs = n4 * n4 + (n - n4) * (n - n4);
        let ike_p = p.key("ike");
        if n > ic.max_traffic_selectors {
            cx.d.push(cx.err(
                ike_p.key("max_traffic_selectors"),
                format!("the tunnel has {n} protect policies; raise it to at least {n}"),
            ));
            return None;
        }
        if pairs > ic.max_selectors {
            cx.d.push(cx.err(
                ike_p.key("max_selectors"),
                format!("the tunnel's protect policies make {pairs} selectors; raise it to at least {pairs}"),
            ));
            return None;
        }
    }
    Some(Tunnel {
        name: r.name,
        endpoints,
        remote_prefixes,
        interface,
        mode,
        udp_encap,
        esn,
        replay_window,
        dscp,
        df,
        outer_ttl,
        lifetime,
        policies,
        sas,
        ike,
    })
}

fn lifetime(cx: &Ctx, p: &FieldPath, r: RawLifetime) -> Result<Lifetime, ConfigError> {
    let l = Lifetime {
        soft_bytes: r.soft_bytes,
        hard_bytes: r.hard_bytes,
        soft_packets: r.soft_packets,
        hard_packets: r.hard_packets,
    };
    for (name, v) in [
        ("soft_bytes", l.soft_bytes),
        ("hard_bytes", l.hard_bytes),
        ("soft_packets", l.soft_packets),
        ("hard_packets", l.hard_packets),
    ] {
        if v == Some(0) {
            return Err(cx.err(p.key(name), "must not be 0 (leave it out for no limit)"));
        }
    }
    for (name, soft, hard) in [
        ("soft_bytes", l.soft_bytes, l.hard_bytes),
        ("soft_packets", l.soft_packets, l.hard_packets),
    ] {
        if let (Some(s), Some(h)) = (soft, hard) {
            if s > h {
                return Err(cx.err(
                    p.key(name),
                    format!("soft limit {s} exceeds the hard limit {h}"),
                ));
            }
        }
    }
    Ok(l)
}

fn protocol_number(
    cx: &Ctx,
    p: &FieldPath,
    r: Option<&RawNameOrNumber>,
) -> Result<Option<u8>, ConfigError> {
    let field = p.key("protocol");
    match r {
        None => Ok(None),
        Some(RawNameOrNumber::Number(n)) => u8::try_from(*n)
            .map(Some)
            .map_err(|_| cx.err(field, format!("{n} is out of range 0..=255"))),
        Some(RawNameOrNumber::Word(w)) => match w.as_str() {
            "any" => Ok(None),
            "icmp" => Ok(Some(1)),
            "tcp" => Ok(Some(6)),
            "udp" => Ok(Some(17)),
            "icmpv6" => Ok(Some(58)),
            "sctp" => Ok(Some(132)),
            _ => match w.parse::<u8>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(cx.err(
                    field,
                    format!("\"{w}\" is not a protocol (any, tcp, udp, icmp, icmpv6, sctp or a number 0..=255)"),
                )),
            },
        },
    }
}

fn port_range(
    cx: &Ctx,
    field: FieldPath,
    r: Option<&RawNameOrNumber>,
    protocol: Option<u8>,
) -> Result<std::ops::RangeInclusive<u16>, ConfigError> {
    let any = 0..=u16::MAX;
    let range = match r {
        None => return Ok(any),
        Some(RawNameOrNumber::Word(w)) if w == "any" => return Ok(any),
        Some(RawNameOrNumber::Number(n)) => {
            let port = u16::try_from(*n)
                .map_err(|_| cx.err(&field, format!("{n} is out of range 0..=65535")))?;
            port..=port
        }
        Some(RawNameOrNumber::Word(w)) => {
            let bad = || {
                cx.err(
                    &field,
                    format!("\"{w}\" is not a port range (\"any\", \"443\" or \"1000-2000\")"),
                )
            };
            let (a, b) = w.split_once('-').unwrap_or((w, w));
            let a: u16 = a.trim().parse().map_err(|_| bad())?;
            let b: u16 = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(cx.err(
                    &field,
                    format!("\"{w}\": the range's start is past its end"),
                ));
            }
            a..=b
        }
    };
    if !protocol.is_some_and(FlowKey::proto_has_ports) {
        return Err(cx.err(
            &field,
            "ports can only be given with protocol = \"tcp\", \"udp\" or \"sctp\"",
        ));
    }
    Ok(range)
}

fn policy(
    cx: &Ctx,
    p: &FieldPath,
    r: &RawPolicy,
    sa_ref: SaRef,
    mode: Mode,
    endpoints: TunnelEndpoints,
) -> Result<Policy, ConfigError> {
    let prefix = |name: &str, s: &str| -> Result<IpPrefix, ConfigError> {
        s.parse::<IpPrefix>()
            .map_err(|e| cx.err(p.key(name), format!("\"{s}\": {e}")))
    };
    let local = prefix("local_ts", &r.local_ts)?;
    let remote = prefix("remote_ts", &r.remote_ts)?;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(cx.err(
            p.key("remote_ts"),
            format!("{remote} is not of the same address family as local {local}"),
        ));
    }
    let protocol = protocol_number(cx, p, r.protocol.as_ref())?;
    match (protocol, local.is_ipv4()) {
        (Some(1), false) => {
            return Err(cx.err(
                p.key("protocol"),
                "\"icmp\" with IPv6 prefixes: use \"icmpv6\"",
            ))
        }
        (Some(58), true) => {
            return Err(cx.err(
                p.key("protocol"),
                "\"icmpv6\" with IPv4 prefixes: use \"icmp\"",
            ))
        }
        _ => {}
    }
    let local_ports = port_range(cx, p.key("local_ports"), r.local_ports.as_ref(), protocol)?;
    let remote_ports = port_range(cx, p.key("remote_ports"), r.remote_ports.as_ref(), protocol)?;
    let action = match r.action.unwrap_or(RawAction::Protect) {
        RawAction::Protect => Action::Protect(sa_ref),
        RawAction::Bypass => Action::Bypass,
        RawAction::Discard => Action::Discard,
    };
    if mode == Mode::Transport && matches!(action, Action::Protect(_)) {
        // Transport mode protects the endpoints' own traffic only.
        if !local.contains(&endpoints.local) {
            return Err(cx.err(
                p.key("local_ts"),
                format!(
                    "transport mode: {local} does not contain the tunnel's local address {}",
                    endpoints.local
                ),
            ));
        }
        if !remote.contains(&endpoints.remote) {
            return Err(cx.err(
                p.key("remote_ts"),
                format!(
                    "transport mode: {remote} does not contain the tunnel's remote address {}",
                    endpoints.remote
                ),
            ));
        }
    }
    Ok(Policy {
        selector: Selector {
            src: local,
            dst: remote,
            protocol,
            src_ports: local_ports,
            dst_ports: remote_ports,
        },
        action,
        priority: r.priority.unwrap_or(100),
    })
}

// ------------------------------------------------------------ [[tunnel.sa]]

/// The tunnel-wide settings every SA of the tunnel shares.
struct SaTemplate {
    mode: Mode,
    endpoints: TunnelEndpoints,
    udp_encap: Option<UdpEncap>,
    esn: bool,
    replay_window: u32,
    lifetime: Lifetime,
    dscp: DscpPolicy,
    df: DfPolicy,
    outer_ttl: u8,
    inbound_selectors: Vec<Selector>,
    outbound_selectors: Vec<Selector>,
}

impl SaTemplate {
    fn config(&self, spi: Spi, direction: Direction) -> SaConfig {
        let mut c = SaConfig::new(spi, direction, self.mode, self.endpoints);
        c.udp_encap = self.udp_encap;
        c.esn = self.esn;
        c.replay_window = self.replay_window;
        c.lifetime = self.lifetime;
        c.dscp = self.dscp;
        c.df = self.df;
        c.outer_ttl = self.outer_ttl;
        c.traffic_selectors = match direction {
            Direction::Inbound => self.inbound_selectors.clone(),
            Direction::Outbound => self.outbound_selectors.clone(),
        };
        c
    }
}

fn spi(
    cx: &Ctx,
    registry: &mut HashMap<u32, String>,
    field: FieldPath,
    value: u32,
) -> Result<Spi, ConfigError> {
    let spi = Spi::new(value).map_err(|_| {
        cx.err(
            &field,
            format!("SPI {value} is reserved (0 and 1..=255, RFC 4303 §2.1); use 256 or more"),
        )
    })?;
    if let Some(first) = registry.get(&value) {
        return Err(cx.err(&field, format!("SPI {spi} is already used by {first}")));
    }
    registry.insert(value, field.to_string());
    Ok(spi)
}

/// One secret given inline (`name`) or as a file (`name_file`); the text is
/// hex. `Ok(None)` when neither is given.
fn hex_secret(
    cx: &Ctx,
    p: &FieldPath,
    name: &str,
    inline: Option<RawSecret>,
    file: Option<PathBuf>,
) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
    let file_name = format!("{name}_file");
    match (inline, file) {
        (Some(_), Some(_)) => Err(cx.err(
            p.key(name),
            format!("give either `{name}` or `{file_name}`, not both"),
        )),
        (None, None) => Ok(None),
        (Some(s), None) => decode_hex(&s.0)
            .map(Some)
            .map_err(|e| cx.err(p.key(name), e)),
        (None, Some(path)) => {
            let (resolved, text) =
                read_secret_file(cx.file(), &path).map_err(|e| cx.err(p.key(&file_name), e))?;
            decode_hex(&text).map(Some).map_err(|e| {
                cx.err(
                    p.key(&file_name),
                    format!("the contents of {} {e}", resolved.display()),
                )
            })
        }
    }
}

fn hmac_name(i: Integrity) -> &'static str {
    match i {
        Integrity::None => "none",
        Integrity::HmacSha256_128 => "HMAC-SHA-256",
        Integrity::HmacSha384_192 => "HMAC-SHA-384",
        Integrity::HmacSha512_256 => "HMAC-SHA-512",
    }
}

/// Checks the keys of one direction against the algorithm.
#[allow(clippy::too_many_arguments)]
fn sa_keys(
    cx: &Ctx,
    p: &FieldPath,
    alg_name: &str,
    alg: Algorithm,
    key_name: &str,
    key: Option<Zeroizing<Vec<u8>>>,
    auth_name: &str,
    auth: Option<Zeroizing<Vec<u8>>>,
) -> Result<SaKeys, ConfigError> {
    let enc_len = alg.encryption.key_len();
    let key = match (alg.encryption, key) {
        (Encryption::Null, None) => Zeroizing::new(Vec::new()),
        (Encryption::Null, Some(_)) => {
            return Err(cx.err(
                p.key(key_name),
                format!("{alg_name} uses null encryption and takes no `{key_name}`"),
            ))
        }
        (enc, None) => {
            return Err(cx.err(
                p.key(key_name),
                format!(
                    "missing: {alg_name} needs a {} (give `{key_name}` or `{key_name}_file`)",
                    enc_key_description(enc)
                ),
            ))
        }
        (enc, Some(k)) => {
            if k.len() != enc_len {
                return Err(cx.err(
                    p.key(key_name),
                    format!(
                        "{alg_name} needs a {}, got {} bytes",
                        enc_key_description(enc),
                        k.len()
                    ),
                ));
            }
            k
        }
    };
    let auth = match (alg.integrity, auth) {
        (Integrity::None, None) => Zeroizing::new(Vec::new()),
        (Integrity::None, Some(_)) => {
            return Err(cx.err(
                p.key(auth_name),
                format!("{alg_name} is an AEAD and takes no `{auth_name}`"),
            ))
        }
        (i, None) => {
            return Err(cx.err(
                p.key(auth_name),
                format!(
                    "missing: {alg_name} needs a {}-byte {} key (give `{auth_name}` or `{auth_name}_file`)",
                    i.key_len(),
                    hmac_name(i)
                ),
            ))
        }
        (i, Some(k)) => {
            if k.len() != i.key_len() {
                return Err(cx.err(
                    p.key(auth_name),
                    format!(
                        "{alg_name} needs a {}-byte {} key, got {} bytes",
                        i.key_len(),
                        hmac_name(i),
                        k.len()
                    ),
                ));
            }
            k
        }
    };
    Ok(SaKeys {
        enc_key: key,
        auth_key: auth,
    })
}

fn sa_pair(
    cx: &Ctx,
    spis: &mut SpiRegistry,
    tunnel_path: &FieldPath,
    p: &FieldPath,
    r: RawSa,
    template: &SaTemplate,
) -> Result<SaPair, ConfigError> {
    let spi_in = spi(cx, &mut spis.inbound, p.key("spi_in"), r.spi_in)?;
    let spi_out = spi(cx, &mut spis.outbound, p.key("spi_out"), r.spi_out)?;
    let alg_name = r.algorithm.trim().to_ascii_lowercase();
    let algorithm = parse_esp_algorithm(&r.algorithm).map_err(|e| cx.err(p.key("algorithm"), e))?;
    let key_in = hex_secret(cx, p, "key_in", r.key_in, r.key_in_file)?;
    let key_out = hex_secret(cx, p, "key_out", r.key_out, r.key_out_file)?;
    let auth_in = hex_secret(cx, p, "auth_key_in", r.auth_key_in, r.auth_key_in_file)?;
    let auth_out = hex_secret(cx, p, "auth_key_out", r.auth_key_out, r.auth_key_out_file)?;
    let keys_in = sa_keys(
        cx,
        p,
        &alg_name,
        algorithm,
        "key_in",
        key_in,
        "auth_key_in",
        auth_in,
    )?;
    let keys_out = sa_keys(
        cx,
        p,
        &alg_name,
        algorithm,
        "key_out",
        key_out,
        "auth_key_out",
        auth_out,
    )?;
    // RFC 4106 §8.1 / RFC 7634 §4: the salt and key must differ per SA; with
    // one key for both directions, both would send the same nonces (the IV
    // is the sequence number), which breaks GCM and ChaCha20-Poly1305.
    if algorithm.is_aead() && keys_in.enc_key[..] == keys_out.enc_key[..] {
        return Err(cx.err(
            p.key("key_out"),
            "is the same as key_in; an AEAD key must not be used in both directions (nonce reuse)",
        ));
    }
    let sa = |spi: Spi, direction: Direction, keys: SaKeys| -> Result<ManualSa, ConfigError> {
        let config = template.config(spi, direction);
        config
            .validate()
            .map_err(|e| cx.err(tunnel_path.key(&e.field), e.reason))?;
        Ok(ManualSa { config, keys })
    };
    Ok(SaPair {
        algorithm,
        inbound: sa(spi_in, Direction::Inbound, keys_in)?,
        outbound: sa(spi_out, Direction::Outbound, keys_out)?,
    })
}

// ------------------------------------------------------------ [tunnel.ike]

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("\"{s}\" is not a duration (e.g. \"90s\", \"30m\", \"4h\", \"1d\")");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

fn ike_id(s: &str) -> Result<IkeId, String> {
    let s = s.trim();
    if let Some(k) = s.strip_prefix("keyid:") {
        if k.starts_with("0x") {
            let bytes = decode_hex(k).map_err(|e| format!("key ID {e}"))?;
            return Ok(IkeId::KeyId(bytes.to_vec()));
        }
        if k.is_empty() {
            return Err("the key ID after `keyid:` is empty".into());
        }
        return Ok(IkeId::KeyId(k.as_bytes().to_vec()));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(match a {
            IpAddr::V4(v4) => IkeId::Ipv4(v4),
            IpAddr::V6(v6) => IkeId::Ipv6(v6),
        });
    }
    if let Some((user, domain)) = s.rsplit_once('@') {
        // ID_RFC822_ADDR (RFC 7296 §3.5): user@domain, compared as given
        // (the domain without regard to case).
        if user.is_empty() || domain.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!("\"{s}\" is not an e-mail identity (user@domain)"));
        }
        if s.contains('*') {
            return Err(format!(
                "\"{s}\": wildcards (*@domain) are for responder templates (remote_addrs %any or prefixes)"
            ));
        }
        return Ok(IkeId::Email(s.to_string()));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "\"{s}\" is not an FQDN, an IPv4/IPv6 address or keyid:…"
        ));
    }
    Ok(IkeId::Fqdn(name.to_string()))
}

/// RFC 7296 §2.15 leaves PSK strength to the operator; an active attacker
/// can test guesses offline against one AUTH payload, so refuse the
/// obviously guessable.
const MIN_PSK_LEN: usize = 16;

fn ike(
    cx: &Ctx,
    p: &FieldPath,
    r: RawIke,
    endpoints: TunnelEndpoints,
    template: bool,
) -> Result<IkeConfig, ConfigError> {
    let id = |name: &str, v: Option<&str>, default: IpAddr| -> Result<IkeId, ConfigError> {
        match v {
            None => Ok(match default {
                IpAddr::V4(a) => IkeId::Ipv4(a),
                IpAddr::V6(a) => IkeId::Ipv6(a),
            }),
            Some(s) => ike_id(s).map_err(|e| cx.err(p.key(name), e)),
        }
    };
    // Certificates (certs.rs): `local_auth`/`remote_auth` default to
    // "pubkey" when `certificate`/`ca_certificates` are given.
    let auth = |v: Option<RawIkeAuth>, given: bool| match v {
        Some(RawIkeAuth::Psk) => IkeAuth::Psk,
        Some(RawIkeAuth::Pubkey) => IkeAuth::Pubkey,
        None if given => IkeAuth::Pubkey,
        None => IkeAuth::Psk,
    };
    let local_auth = auth(r.local_auth, r.certificate.is_some());
    let remote_auth = auth(r.remote_auth, r.ca_certificates.is_some());
    let field_err = |(f, e): (&'static str, String)| cx.err(p.key(f), e);
    let credential = match (local_auth, r.certificate, r.private_key) {
        (IkeAuth::Pubkey, Some(c), Some(k)) => {
            Some(super::certs::credential(cx.file(), &c, &k).map_err(field_err)?)
        }
        (IkeAuth::Pubkey, None, _) => {
            return Err(cx.err(
                p.key("certificate"),
                "missing: `local_auth = \"pubkey\"` needs `certificate` and `private_key`",
            ))
        }
        (IkeAuth::Pubkey, Some(_), None) => {
            return Err(cx.err(
                p.key("private_key"),
                "missing: `certificate` needs its `private_key`",
            ))
        }
        (IkeAuth::Psk, c, k) => {
            if c.is_some() || k.is_some() {
                return Err(cx.err(
                    p.key("certificate"),
                    "`certificate`/`private_key` given with `local_auth = \"psk\"`",
                ));
            }
            None
        }
    };
    let trust = match (remote_auth, r.ca_certificates) {
        (IkeAuth::Pubkey, Some(cas)) => Some(
            super::certs::trust(
                cx.file(),
                &cas,
                r.crls.as_deref().unwrap_or_default(),
                r.allow_rsa_sha1.unwrap_or(false),
            )
            .map_err(field_err)?,
        ),
        (IkeAuth::Pubkey, None) => {
            return Err(cx.err(
                p.key("ca_certificates"),
                "missing: `remote_auth = \"pubkey\"` needs `ca_certificates`",
            ))
        }
        (IkeAuth::Psk, cas) => {
            if cas.is_some() || r.crls.is_some() {
                return Err(cx.err(
                    p.key("ca_certificates"),
                    "`ca_certificates`/`crls` given with `remote_auth = \"psk\"`",
                ));
            }
            None
        }
    };
    let local_id = match (&credential, r.local_id.as_deref()) {
        // RFC 4945 §3.1.5: the subject DN, as strongSwan defaults to.
        (Some(c), None) => IkeId::Dn {
            der: match c.loaded.subject_id() {
                ike::message::Identification::Other { data, .. } => data,
                _ => Vec::new(),
            },
            text: c.loaded.subject_text(),
        },
        (_, v) => id("local_id", v, endpoints.local)?,
    };
    let (remote_id, remote_ids) = if template {
        // A template's peers are told by the identity they present.
        let Some(text) = r.remote_id.as_deref() else {
            return Err(cx.err(
                p.key("remote_id"),
                "missing: a responder template (remote_addrs %any or prefixes) names the identities it takes (e.g. \"*@branches.example\", \"*.branches.example\" or \"%any\")",
            ));
        };
        let pattern = templates::id_pattern(text).map_err(|e| cx.err(p.key("remote_id"), e))?;
        (id("remote_id", None, endpoints.remote)?, Some(pattern))
    } else {
        (
            id("remote_id", r.remote_id.as_deref(), endpoints.remote)?,
            None,
        )
    };
    let psk_needed = local_auth == IkeAuth::Psk || remote_auth == IkeAuth::Psk;
    let psk_bytes = match (r.psk, r.psk_file) {
        (Some(_), Some(_)) => {
            return Err(cx.err(p.key("psk"), "give either `psk` or `psk_file`, not both"))
        }
        // A template without its own key takes the peer's [[secret]].
        (None, None) if template || !psk_needed => Zeroizing::new(Vec::new()),
        (None, None) => return Err(cx.err(p.key("psk"), "missing: give `psk` or `psk_file`")),
        (Some(s), None) => psk_from_text(&s.0).map_err(|e| cx.err(p.key("psk"), e))?,
        (None, Some(path)) => {
            let (resolved, text) =
                read_secret_file(cx.file(), &path).map_err(|e| cx.err(p.key("psk_file"), e))?;
            let text = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string());
            psk_from_text(&text).map_err(|e| {
                cx.err(
                    p.key("psk_file"),
                    format!("the contents of {}: {e}", resolved.display()),
                )
            })?
        }
    };
    let psk = Secret::new(psk_bytes);
    let proposals = parse_proposals(
        cx,
        p,
        "proposals",
        r.proposals,
        IkeConfig::DEFAULT_PROPOSAL,
        parse_ike_proposal,
    )?;
    let esp_proposals = parse_proposals(
        cx,
        p,
        "esp_proposals",
        r.esp_proposals,
        IkeConfig::DEFAULT_ESP_PROPOSAL,
        parse_esp_proposal,
    )?;
    let duration =
        |name: &str, v: Option<&str>, default: Duration| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => parse_duration(s).map_err(|e| cx.err(p.key(name), e)),
            }
        };
    let ike_lifetime = duration(
        "ike_lifetime",
        r.ike_lifetime.as_deref(),
        IkeConfig::DEFAULT_IKE_LIFETIME,
    )?;
    let child_lifetime = duration(
        "child_lifetime",
        r.child_lifetime.as_deref(),
        IkeConfig::DEFAULT_CHILD_LIFETIME,
    )?;
    for (name, d) in [
        ("ike_lifetime", ike_lifetime),
        ("child_lifetime", child_lifetime),
    ] {
        if d < Duration::from_secs(60) {
            return Err(cx.err(
                p.key(name),
                format!("{}s is too short (at least 60s)", d.as_secs()),
            ));
        }
    }
    let dpd = duration(
        "dpd_interval",
        r.dpd_interval.as_deref(),
        IkeConfig::DEFAULT_DPD_INTERVAL,
    )?;
    let keylog_dir = match r.keylog_dir {
        None => None,
        Some(d) if d.as_os_str().is_empty() => {
            return Err(cx.err(
                p.key("keylog_dir"),
                "must not be empty (leave it out to disable)",
            ))
        }
        Some(d) => {
            let d = resolve(cx.file(), &d);
            check_keylog_dir(&d).map_err(|e| cx.err(p.key("keylog_dir"), e))?;
            Some(d)
        }
    };
    let limit = |name: &str, v: Option<u64>, default: usize, min: usize, max: usize| {
        let n = v.map_or(default as u64, |n| n);
        if n < min as u64 || n > max as u64 {
            return Err(cx.err(p.key(name), format!("{n} is out of range ({min} to {max})")));
        }
        Ok(n as usize)
    };
    let max_traffic_selectors = limit(
        "max_traffic_selectors",
        r.max_traffic_selectors,
        IkeConfig::DEFAULT_MAX_TRAFFIC_SELECTORS,
        1,
        IkeConfig::MAX_MAX_TRAFFIC_SELECTORS,
    )?;
    let max_selectors = limit(
        "max_selectors",
        r.max_selectors,
        IkeConfig::DEFAULT_MAX_SELECTORS,
        1,
        IkeConfig::MAX_MAX_SELECTORS,
    )?;
    let max_child_sas = limit(
        "max_child_sas",
        r.max_child_sas,
        IkeConfig::DEFAULT_MAX_CHILD_SAS,
        IkeConfig::MIN_MAX_CHILD_SAS,
        IkeConfig::MAX_MAX_CHILD_SAS,
    )?;
    let fragment_size = limit(
        "fragment_size",
        r.fragment_size,
        IkeConfig::DEFAULT_FRAGMENT_SIZE.into(),
        IkeConfig::MIN_FRAGMENT_SIZE.into(),
        u16::MAX.into(),
    )? as u16;
    let redirect = ike_redirect(
        cx,
        p,
        (r.redirect, r.redirect_to, r.redirect_above, r.redirect_in),
        endpoints,
    )?;
    Ok(IkeConfig {
        local_id,
        remote_id,
        remote_ids,
        psk,
        local_auth,
        remote_auth,
        credential,
        trust,
        allow_rsa_sha1: r.allow_rsa_sha1.unwrap_or(false),
        proposals,
        esp_proposals,
        // A template has nobody to initiate to: it listens unless told
        // otherwise (which `templates::check` refuses).
        start_action: match r.start_action.unwrap_or(if template {
            RawStartAction::Listen
        } else {
            RawStartAction::Initiate
        }) {
            RawStartAction::Initiate => StartAction::Initiate,
            RawStartAction::Listen => StartAction::Listen,
        },
        ike_lifetime,
        child_lifetime,
        dpd_interval: (!dpd.is_zero()).then_some(dpd),
        force_encap: r.force_encap.unwrap_or(false),
        keylog_dir,
        max_traffic_selectors,
        max_selectors,
        max_child_sas,
        fragmentation: r.fragmentation.unwrap_or(true),
        fragment_size,
        redirect,
        follow_redirects: r.follow_redirects.unwrap_or(true),
        pools: r.pools.unwrap_or_default(),
    })
}

/// `redirect`, `redirect_to`, `redirect_above`, `redirect_in` (RFC 5685):
/// a policy other than `never` needs gateways to send clients to (IP
/// addresses or host names, never this gateway's own address, no
/// repeats); `load` needs its threshold and only it takes one.
fn ike_redirect(
    cx: &Ctx,
    p: &FieldPath,
    (policy, to, above, exchange): (
        Option<RawRedirect>,
        Option<Vec<String>>,
        Option<u64>,
        Option<RawRedirectIn>,
    ),
    endpoints: TunnelEndpoints,
) -> Result<crate::ike::RedirectConfig, ConfigError> {
    use crate::ike::message::GatewayIdentity;
    use crate::ike::{RedirectConfig, RedirectExchange, RedirectPolicy};
    let policy = policy.unwrap_or(RawRedirect::Never);
    let mut targets: Vec<GatewayIdentity> = Vec::new();
    for s in to.unwrap_or_default() {
        let g = GatewayIdentity::parse(&s).ok_or_else(|| {
            cx.err(
                p.key("redirect_to"),
                format!("`{s}` is neither an IP address nor a host name"),
            )
        })?;
        if g == GatewayIdentity::Ip(endpoints.local) {
            return Err(cx.err(
                p.key("redirect_to"),
                format!("`{s}` is this tunnel's own local address"),
            ));
        }
        if targets.contains(&g) {
            return Err(cx.err(p.key("redirect_to"), format!("`{s}` is listed twice")));
        }
        targets.push(g);
    }
    if targets.len() > IkeConfig::MAX_REDIRECT_TARGETS {
        return Err(cx.err(
            p.key("redirect_to"),
            format!(
                "{} gateways, at most {}",
                targets.len(),
                IkeConfig::MAX_REDIRECT_TARGETS
            ),
        ));
    }
    if policy != RawRedirect::Never && targets.is_empty() {
        return Err(cx.err(
            p.key("redirect_to"),
            "missing: `redirect` other than \"never\" needs the gateways to send clients to",
        ));
    }
    let policy = match (policy, above) {
        (RawRedirect::Load, Some(n)) if n >= 1 => RedirectPolicy::Load {
            above: usize::try_from(n).unwrap_or(usize::MAX),
        },
        (RawRedirect::Load, Some(_)) => {
            return Err(cx.err(p.key("redirect_above"), "must be at least 1"))
        }
        (RawRedirect::Load, None) => {
            return Err(cx.err(
                p.key("redirect_above"),
                "missing: `redirect = \"load\"` redirects above this many IKE SAs",
            ))
        }
        (_, Some(_)) => {
            return Err(cx.err(
                p.key("redirect_above"),
                "only `redirect = \"load\"` takes a threshold",
            ))
        }
        (RawRedirect::Never, None) => RedirectPolicy::Never,
        (RawRedirect::Always, None) => RedirectPolicy::Always,
    };
    Ok(RedirectConfig {
        policy,
        targets,
        exchange: match exchange.unwrap_or(RawRedirectIn::IkeSaInit) {
            RawRedirectIn::IkeSaInit => RedirectExchange::IkeSaInit,
            RawRedirectIn::IkeAuth => RedirectExchange::IkeAuth,
        },
    })
}

/// The key log directory must not be a symbolic link (whoever controls
/// the link would choose where the session keys go) and, if it exists,
/// must be a directory.
fn check_keylog_dir(d: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(d) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symbolic link: give the real directory (keys are never written through links)",
            d.display()
        )),
        Ok(m) if !m.is_dir() => Err(format!("{} exists and is not a directory", d.display())),
        _ => Ok(()),
    }
}

/// A PSK: `0x…` is hex, anything else the UTF-8 bytes of the text.
fn psk_from_text(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = if text.starts_with("0x") || text.starts_with("0X") {
        decode_hex(text)?
    } else {
        Zeroizing::new(text.as_bytes().to_vec())
    };
    if bytes.len() < MIN_PSK_LEN {
        return Err(format!(
            "is {} bytes long; a pre-shared key needs at least {MIN_PSK_LEN} (offline guessing)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn parse_proposals<T>(
    cx: &Ctx,
    p: &FieldPath,
    name: &str,
    raw: Option<Vec<String>>,
    default: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let list = raw.unwrap_or_else(|| vec![default.to_string()]);
    if list.is_empty() {
        return Err(cx.err(
            p.key(name),
            format!("must not be empty (leave it out for [\"{default}\"])"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| parse(s).map_err(|e| cx.err(p.key(name).at(i), e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("4x").unwrap_err().contains("not a duration"));
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn lcore_lists() {
        assert_eq!(parse_lcore_list("0-1"), Ok(vec![0, 1]));
        assert_eq!(parse_lcore_list("0,2,4-6"), Ok(vec![0, 2, 4, 5, 6]));
        assert_eq!(parse_lcore_list("1,1"), Ok(vec![1]));
        assert!(parse_lcore_list("3-1").is_err());
        assert!(parse_lcore_list("(0-1)@2").is_err());
    }

    #[test]
    fn ike_ids() {
        assert_eq!(
            ike_id("gw-a.example"),
            Ok(IkeId::Fqdn("gw-a.example".into()))
        );
        assert_eq!(
            ike_id("192.0.2.1"),
            Ok(IkeId::Ipv4("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            ike_id("2001:db8::1"),
            Ok(IkeId::Ipv6("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(ike_id("keyid:gw-a"), Ok(IkeId::KeyId(b"gw-a".to_vec())));
        assert_eq!(ike_id("keyid:0x0102"), Ok(IkeId::KeyId(vec![1, 2])));
        assert_eq!(
            ike_id("bob@example.com"),
            Ok(IkeId::Email("bob@example.com".into()))
        );
        assert!(ike_id("@example.com").unwrap_err().contains("e-mail"));
        assert!(ike_id("*@example.com").unwrap_err().contains("templates"));
        assert!(ike_id("bad name").is_err());
        assert!(ike_id("-bad.example").is_err());
    }
}
