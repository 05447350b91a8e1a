//! Live configuration changes: what differs between the running
//! configuration and a new one, which of it the running gateway can take,
//! and the report the operator gets.
//!
//! [`diff`] compares two validated [`GatewayConfig`]s field by field.
//! Tunnels are matched by name; for a changed tunnel it names every field
//! class that differs and how its IKE takes the change ([`IkeChange`]).
//! What the gateway fixes at start-up (interfaces, workers, lcores,
//! memory, mbufs, burst, EAL arguments, the crypto backend, the control
//! socket, the size of the workers' half-open SPI table, the cookie
//! secret's period) is refused, each field with its reason; a reload with
//! any refusal applies nothing.
//!
//! A running tunnel keeps its SPD slot (the [`SaRef`] of its PROTECT
//! policies and the planner's tunnel index) across reloads whatever its
//! place in the file ([`Slots`]): removing the first tunnel of the file
//! must not move, and so reinstall, the SAs of every tunnel after it.
//!
//! Nothing here does I/O or needs DPDK: the control thread
//! (`gateway::Control`) applies the result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dataplane::esp::{Action, Policy, SaRef};
use serde::Serialize;

use crate::config::{GatewayConfig, IkeConfig, Tunnel};
use crate::sa::{SaSpec, Wanted};

/// How a changed tunnel's IKE takes the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IkeChange {
    /// The IKE SA (and with it the Child SAs) is deleted and negotiated
    /// again: the peer, our address, an identity, the PSK or the traffic
    /// selectors changed, which an established IKE SA cannot take.
    Reestablish,
    /// Used from the next exchange: proposals at the next rekey or new
    /// IKE SA, lifetimes at the next rekey, DPD from the next check, the
    /// start action and encapsulation from the next IKE SA, SA parameters
    /// from the next Child SA.
    NextExchange,
    /// `[tunnel.ike]` was added: IKE starts (initiates if
    /// `start_action = "start"`).
    Added,
    /// `[tunnel.ike]` was removed: the IKE SA is deleted (its Child SAs
    /// with it).
    Removed,
}

impl IkeChange {
    fn describe(self) -> &'static str {
        match self {
            Self::Reestablish => "IKE SA re-established",
            Self::NextExchange => "IKE settings used from the next exchange",
            Self::Added => "IKE started",
            Self::Removed => "IKE SA deleted",
        }
    }
}

/// One changed tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelChange {
    /// Its name.
    pub name: String,
    /// The fields that differ, named as in the file (`policy`, `sa`,
    /// `ike.psk`, ...).
    pub fields: Vec<&'static str>,
    /// What its IKE does about it (`None`: a manually keyed tunnel).
    pub ike: Option<IkeChange>,
}

/// A field the running gateway cannot change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The field, as in the file (`dataplane.workers`, `interface[1].device`).
    pub field: String,
    /// Why it needs a restart.
    pub reason: String,
}

/// The differences between two configurations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Tunnels only the new configuration has.
    pub added: Vec<String>,
    /// Tunnels only the old one has.
    pub removed: Vec<String>,
    /// Tunnels both have, with differences.
    pub changed: Vec<TunnelChange>,
    /// Tunnels both have, the same.
    pub unchanged: usize,
    /// The static routes differ (the workers' routing table is replaced).
    pub routes: bool,
    /// The static neighbours differ (the workers' static entries are
    /// replaced).
    pub neighbours: bool,
    /// `[control] log` differs.
    pub log: bool,
    /// Live IKE admission bounds of `[control]` that differ.
    pub control: Vec<&'static str>,
    /// Live settings of `[dataplane]` that differ.
    pub dataplane: Vec<&'static str>,
    /// Differences that need a restart.
    pub refused: Vec<Refusal>,
}

impl Diff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.routes
            && !self.neighbours
            && !self.log
            && self.control.is_empty()
            && self.dataplane.is_empty()
            && self.refused.is_empty()
    }

    /// One line per difference (for the report of what was left out).
    pub fn lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        for n in &self.added {
            v.push(format!("tunnel {n} added"));
        }
        for n in &self.removed {
            v.push(format!("tunnel {n} removed"));
        }
        for c in &self.changed {
            v.push(format!(
                "tunnel {} changed: {}",
                c.name,
                c.fields.join(", ")
            ));
        }
        if self.routes {
            v.push("routes changed".into());
        }
        if self.neighbours {
            v.push("static neighbours changed".into());
        }
        if self.log {
            v.push("control.log changed".into());
        }
        for f in self.control.iter().chain(&self.dataplane) {
            v.push(format!("{f} changed"));
        }
        for r in &self.refused {
            v.push(format!("{} changed (needs a restart)", r.field));
        }
        v
    }
}

/// What a reload, load or unload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// `reload`, `load TUNNEL` or `unload TUNNEL`.
    pub action: String,
    /// The configuration file.
    pub file: String,
    /// Whether the changes were applied (false: something was refused
    /// and nothing changed).
    pub applied: bool,
    /// What changed (or would have).
    #[serde(flatten)]
    pub diff: Diff,
    /// Differences between the file and the running configuration left
    /// as they are (`load` and `unload` change one tunnel only).
    pub not_applied: Vec<String>,
    /// Data-plane SAs installed afterwards.
    pub inbound_sas: usize,
    /// See `inbound_sas`.
    pub outbound_sas: usize,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.diff;
        if !self.applied {
            writeln!(
                f,
                "{} {}: refused, nothing applied (restart espresso to change these):",
                self.action, self.file
            )?;
            for r in &d.refused {
                writeln!(f, "  refused {}: {}", r.field, r.reason)?;
            }
            return Ok(());
        }
        if d.is_empty() {
            writeln!(f, "{} {}: no change", self.action, self.file)?;
        } else {
            writeln!(f, "{} {}: applied", self.action, self.file)?;
        }
        for n in &d.added {
            writeln!(f, "  added tunnel {n}")?;
        }
        for n in &d.removed {
            writeln!(f, "  removed tunnel {n}")?;
        }
        for c in &d.changed {
            write!(f, "  changed tunnel {}: {}", c.name, c.fields.join(", "))?;
            match c.ike {
                Some(i) => writeln!(f, " ({})", i.describe())?,
                None => writeln!(f)?,
            }
        }
        if d.routes {
            writeln!(f, "  routes replaced")?;
        }
        if d.neighbours {
            writeln!(f, "  static neighbours replaced")?;
        }
        if d.log {
            writeln!(f, "  log filter and format applied")?;
        }
        for c in d.control.iter().chain(&d.dataplane) {
            writeln!(f, "  {c} changed")?;
        }
        writeln!(f, "  {} tunnels unchanged", d.unchanged)?;
        for n in &self.not_applied {
            writeln!(f, "  not applied: {n}")?;
        }
        writeln!(
            f,
            "  SAs installed: {} inbound, {} outbound",
            self.inbound_sas, self.outbound_sas
        )
    }
}

fn refuse(refused: &mut Vec<Refusal>, field: impl Into<String>, reason: &str) {
    refused.push(Refusal {
        field: field.into(),
        reason: reason.into(),
    });
}

/// The policies of `t` with their PROTECT actions on slot 0: a tunnel's
/// place in the file is not a change of its policies.
fn policies_unslotted(t: &Tunnel) -> Vec<Policy> {
    slotted(t, 0).policies
}

/// The manual SA pairs, comparable (keys included).
fn same_sas(a: &Tunnel, b: &Tunnel) -> bool {
    a.sas.len() == b.sas.len()
        && a.sas.iter().zip(&b.sas).all(|(x, y)| {
            x.algorithm == y.algorithm
                && same_spec(
                    &SaSpec::manual(x.algorithm, &x.inbound),
                    &SaSpec::manual(y.algorithm, &y.inbound),
                )
                && same_spec(
                    &SaSpec::manual(x.algorithm, &x.outbound),
                    &SaSpec::manual(y.algorithm, &y.outbound),
                )
        })
}

/// Whether two SA specs build the same SA.
pub fn same_spec(a: &SaSpec, b: &SaSpec) -> bool {
    a.algorithm == b.algorithm
        && a.config == b.config
        && *a.keys.enc_key == *b.keys.enc_key
        && *a.keys.auth_key == *b.keys.auth_key
}

/// The differing fields of two `[tunnel.ike]` sections, and whether the
/// IKE SA must be negotiated again for them.
fn ike_fields(a: &IkeConfig, b: &IkeConfig, fields: &mut Vec<&'static str>) -> bool {
    let mut again = false;
    let mut note = |differs: bool, name: &'static str, reestablish: bool| {
        if differs {
            fields.push(name);
            again |= reestablish;
        }
    };
    note(a.local_id != b.local_id, "ike.local_id", true);
    note(a.remote_id != b.remote_id, "ike.remote_id", true);
    // A template's peers were admitted by its patterns.
    note(a.remote_ids != b.remote_ids, "ike.remote_id", true);
    note(a.psk != b.psk, "ike.psk", true);
    note(a.local_auth != b.local_auth, "ike.local_auth", true);
    note(a.remote_auth != b.remote_auth, "ike.remote_auth", true);
    note(
        a.credential.as_ref().map(|c| c.digest) != b.credential.as_ref().map(|c| c.digest),
        "ike.certificate",
        true,
    );
    note(
        a.trust.as_ref().map(|t| t.digest) != b.trust.as_ref().map(|t| t.digest),
        "ike.ca_certificates",
        true,
    );
    note(a.proposals != b.proposals, "ike.proposals", false);
    note(
        a.esp_proposals != b.esp_proposals,
        "ike.esp_proposals",
        false,
    );
    note(a.start_action != b.start_action, "ike.start_action", false);
    note(a.ike_lifetime != b.ike_lifetime, "ike.ike_lifetime", false);
    note(
        a.child_lifetime != b.child_lifetime,
        "ike.child_lifetime",
        false,
    );
    note(a.dpd_interval != b.dpd_interval, "ike.dpd_interval", false);
    note(a.force_encap != b.force_encap, "ike.force_encap", false);
    note(a.keylog_dir != b.keylog_dir, "ike.keylog_dir", false);
    note(
        a.max_traffic_selectors != b.max_traffic_selectors,
        "ike.max_traffic_selectors",
        false,
    );
    note(
        a.max_selectors != b.max_selectors,
        "ike.max_selectors",
        false,
    );
    note(
        a.max_child_sas != b.max_child_sas,
        "ike.max_child_sas",
        false,
    );
    note(
        a.fragmentation != b.fragmentation,
        "ike.fragmentation",
        false,
    );
    note(
        a.fragment_size != b.fragment_size,
        "ike.fragment_size",
        false,
    );
    // RFC 5685: decided per new client, so a reload can start or stop
    // draining a gateway without touching the SAs up now.
    note(a.redirect != b.redirect, "ike.redirect", false);
    note(
        a.follow_redirects != b.follow_redirects,
        "ike.follow_redirects",
        false,
    );
    // IKE SAs keep the addresses they leased; new clients use the new list.
    note(a.pools != b.pools, "ike.pools", false);
    again
}

/// How tunnel `a` became `b`; `None` when nothing differs.
pub fn tunnel_change(a: &Tunnel, b: &Tunnel) -> Option<TunnelChange> {
    let mut fields = Vec::new();
    // The peer, our address or the traffic selectors: an IKE SA and its
    // Child SAs were negotiated for these and cannot move.
    let mut again = false;
    let mut note = |differs: bool, name: &'static str, reestablish: bool| {
        if differs {
            fields.push(name);
            again |= reestablish;
        }
    };
    note(a.endpoints.local != b.endpoints.local, "local", true);
    note(a.endpoints.remote != b.endpoints.remote, "remote", true);
    note(a.remote_prefixes != b.remote_prefixes, "remote", true);
    note(a.interface != b.interface, "interface", false);
    note(a.mode != b.mode, "mode", false);
    note(a.udp_encap != b.udp_encap, "udp_encap", false);
    note(a.esn != b.esn, "esn", false);
    note(a.replay_window != b.replay_window, "replay_window", false);
    note(a.dscp != b.dscp, "dscp", false);
    note(a.df != b.df, "df", false);
    note(a.outer_ttl != b.outer_ttl, "outer_ttl", false);
    note(a.lifetime != b.lifetime, "lifetime", false);
    note(
        policies_unslotted(a) != policies_unslotted(b),
        "policy",
        true,
    );
    note(!same_sas(a, b), "sa", false);
    let ike = match (&a.ike, &b.ike) {
        (None, None) => None,
        (Some(_), None) => {
            fields.push("ike");
            Some(IkeChange::Removed)
        }
        (None, Some(_)) => {
            fields.push("ike");
            Some(IkeChange::Added)
        }
        (Some(x), Some(y)) => {
            again |= ike_fields(x, y, &mut fields);
            Some(if again {
                IkeChange::Reestablish
            } else {
                IkeChange::NextExchange
            })
        }
    };
    if fields.is_empty() {
        return None;
    }
    Some(TunnelChange {
        name: b.name.clone(),
        fields,
        ike,
    })
}

/// Everything that differs from `old` (running) to `new`.
pub fn diff(old: &GatewayConfig, new: &GatewayConfig) -> Diff {
    let mut d = Diff::default();
    let r = &mut d.refused;
    let (a, b) = (&old.dataplane, &new.dataplane);
    if a.workers != b.workers {
        refuse(
            r,
            "dataplane.workers",
            "the worker threads and their queues are made at start-up",
        );
    }
    if a.lcores != b.lcores {
        refuse(
            r,
            "dataplane.lcores",
            "EAL pins its threads to the lcores at start-up",
        );
    }
    if a.memory_mb != b.memory_mb {
        refuse(
            r,
            "dataplane.memory_mb",
            "EAL's memory is reserved at start-up",
        );
    }
    if a.mbufs != b.mbufs {
        refuse(
            r,
            "dataplane.mbufs",
            "the mbuf pool is allocated at start-up",
        );
    }
    if a.burst != b.burst {
        refuse(
            r,
            "dataplane.burst",
            "the workers' burst arrays are sized at start-up",
        );
    }
    if a.eal_args != b.eal_args {
        refuse(r, "dataplane.eal_args", "EAL is initialised once");
    }
    if a.crypto_backend != b.crypto_backend {
        refuse(
            r,
            "dataplane.crypto_backend",
            "installed SAs keep the backend they were built with",
        );
    }
    if a.hugepages != b.hugepages {
        refuse(
            r,
            "dataplane.hugepages",
            "EAL's memory is reserved at start-up",
        );
    }
    if a.telemetry != b.telemetry {
        refuse(r, "dataplane.telemetry", "EAL is initialised once");
    }
    if a.runtime_dir != b.runtime_dir {
        refuse(
            r,
            "dataplane.runtime_dir",
            "the telemetry link is made at start-up",
        );
    }
    if old.metrics != new.metrics {
        refuse(
            r,
            "metrics.listen",
            "the metrics endpoint is bound at start-up",
        );
    }
    if a.icmp_errors_per_second != b.icmp_errors_per_second {
        d.dataplane.push("dataplane.icmp_errors_per_second");
    }
    if a.icmp_error_burst != b.icmp_error_burst {
        d.dataplane.push("dataplane.icmp_error_burst");
    }

    let (a, b) = (&old.control, &new.control);
    if a.socket != b.socket {
        refuse(
            r,
            "control.socket",
            "the socket is bound at start-up and serves this very request",
        );
    }
    if a.socket_group != b.socket_group {
        refuse(
            r,
            "control.socket_group",
            "the socket's owner and mode are set when it is bound",
        );
    }
    if a.ike_half_open_max != b.ike_half_open_max {
        refuse(
            r,
            "control.ike_half_open_max",
            "the workers' table of half-open IKE SPIs is sized from it at start-up",
        );
    }
    if a.state_dir != b.state_dir {
        refuse(
            r,
            "control.state_dir",
            "the virtual IP leases were read from it at start-up",
        );
    }
    if a.ike_cookie_secret_lifetime != b.ike_cookie_secret_lifetime {
        refuse(
            r,
            "control.ike_cookie_secret_lifetime",
            "the cookie secrets are made with their period at start-up",
        );
    }
    if a.ike_cookie_threshold != b.ike_cookie_threshold {
        d.control.push("control.ike_cookie_threshold");
    }
    if a.ike_half_open_per_source != b.ike_half_open_per_source {
        d.control.push("control.ike_half_open_per_source");
    }
    // Both are applied by `logging::Logging::apply_config`.
    d.log = a.log != b.log || a.log_format != b.log_format;

    if old.interfaces.len() != new.interfaces.len() {
        refuse(
            r,
            "interface",
            &format!(
                "{} interfaces running, {} in the file: ports are opened at start-up",
                old.interfaces.len(),
                new.interfaces.len()
            ),
        );
    } else {
        for (i, (x, y)) in old.interfaces.iter().zip(&new.interfaces).enumerate() {
            let mut f = |differs: bool, name: &str, why: &str| {
                if differs {
                    refuse(r, format!("interface[{i}].{name}"), why);
                }
            };
            f(
                x.name != y.name,
                "name",
                "routes, neighbours and tunnels of the running configuration refer to it",
            );
            f(
                x.device != y.device,
                "device",
                "ports are opened at start-up",
            );
            f(
                x.role != y.role,
                "role",
                "the workers' interfaces are set at start-up",
            );
            f(
                x.addresses != y.addresses,
                "addresses",
                "the workers' own addresses are set at start-up",
            );
            f(
                x.mtu != y.mtu,
                "mtu",
                "the workers' interfaces are set at start-up",
            );
            f(
                x.mss_clamp != y.mss_clamp,
                "mss_clamp",
                "the workers' interfaces are set at start-up",
            );
            for (name, differs) in [
                ("rx_queues", x.rx_queues != y.rx_queues),
                ("tx_queues", x.tx_queues != y.tx_queues),
                ("rx_desc", x.rx_desc != y.rx_desc),
                ("tx_desc", x.tx_desc != y.tx_desc),
            ] {
                f(differs, name, "the port's queues are set up at start-up");
            }
        }
    }

    d.routes = old.routes != new.routes;
    d.neighbours = old.neighbours != new.neighbours;

    let old_by: BTreeMap<&str, &Tunnel> =
        old.tunnels.iter().map(|t| (t.name.as_str(), t)).collect();
    let new_names: BTreeSet<&str> = new.tunnels.iter().map(|t| t.name.as_str()).collect();
    for t in &old.tunnels {
        if !new_names.contains(t.name.as_str()) {
            d.removed.push(t.name.clone());
        }
    }
    // `[[secret]]` feeds the templates: changed, each template takes the
    // new ones for its next IKE_AUTH; its established peers stay (as
    // swanctl --load-creds).
    let secrets_changed = old.secrets.len() != new.secrets.len()
        || old
            .secrets
            .iter()
            .zip(&new.secrets)
            .any(|(x, y)| x.ids != y.ids || x.psk != y.psk);
    // The templates sharing each local address, with the identities they
    // take: each template's engine hands peers to its siblings by them.
    let siblings = |c: &GatewayConfig| -> BTreeMap<std::net::IpAddr, Vec<(String, String)>> {
        let mut m: BTreeMap<std::net::IpAddr, Vec<(String, String)>> = BTreeMap::new();
        for t in c.tunnels.iter().filter(|t| t.is_template()) {
            let ids = t
                .ike
                .as_ref()
                .and_then(|i| i.remote_ids.as_ref())
                .map_or(String::new(), |p| p.to_string());
            m.entry(t.endpoints.local)
                .or_default()
                .push((t.name.clone(), ids));
        }
        m
    };
    let (old_sib, new_sib) = (siblings(old), siblings(new));
    let siblings_changed =
        |t: &Tunnel| old_sib.get(&t.endpoints.local) != new_sib.get(&t.endpoints.local);
    for t in &new.tunnels {
        let templates_changed =
            t.is_template() && t.ike.is_some() && (secrets_changed || siblings_changed(t));
        let what = if secrets_changed {
            "secret"
        } else {
            "siblings"
        };
        match old_by.get(t.name.as_str()) {
            None => d.added.push(t.name.clone()),
            Some(o) => match tunnel_change(o, t) {
                Some(mut c) => {
                    if templates_changed {
                        c.fields.push(what);
                    }
                    d.changed.push(c)
                }
                None if templates_changed => d.changed.push(TunnelChange {
                    name: t.name.clone(),
                    fields: vec![what],
                    ike: Some(IkeChange::NextExchange),
                }),
                None => d.unchanged += 1,
            },
        }
    }
    d
}

/// `t` with its PROTECT policies on SPD slot `slot`.
pub fn slotted(t: &Tunnel, slot: usize) -> Tunnel {
    let mut t = t.clone();
    for p in &mut t.policies {
        if let Action::Protect(_) = p.action {
            p.action = Action::Protect(SaRef(slot as u32));
        }
    }
    t
}

/// Each running tunnel's SPD slot, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    by_name: BTreeMap<String, usize>,
}

impl Slots {
    /// The slots of a configuration the gateway starts with: each
    /// tunnel's index in the file (the configuration's own `SaRef`s).
    pub fn of(config: &GatewayConfig) -> Self {
        Self {
            by_name: config
                .tunnels
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
        }
    }

    /// Tunnel `name`'s slot.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The slots for `next`'s tunnels: a tunnel this map has keeps its
    /// slot; a new one takes the lowest slot none of this map's tunnels
    /// holds, so that in one reload the SAs of a removed tunnel and of a
    /// new one never share a slot (the removed one's go after the new
    /// one's are in, make before break).
    pub fn next(&self, next: &GatewayConfig) -> Slots {
        self.next_avoiding(next, std::iter::empty())
    }

    /// [`Slots::next`], new tunnels also avoiding the slots of `held`
    /// (the outbound slots of per-peer return routes).
    pub fn next_avoiding(
        &self,
        next: &GatewayConfig,
        held: impl IntoIterator<Item = usize>,
    ) -> Slots {
        let mut taken: BTreeSet<usize> = self.by_name.values().copied().collect();
        taken.extend(held);
        let mut by_name = BTreeMap::new();
        for t in &next.tunnels {
            if let Some(s) = self.get(&t.name) {
                by_name.insert(t.name.clone(), s);
            }
        }
        let mut free = 0usize;
        for t in &next.tunnels {
            if by_name.contains_key(&t.name) {
                continue;
            }
            while taken.contains(&free) {
                free += 1;
            }
            taken.insert(free);
            by_name.insert(t.name.clone(), free);
        }
        Slots { by_name }
    }

    /// Tunnel names by slot (empty for a free slot), for the planner's log.
    pub fn names(&self) -> Vec<String> {
        let len = self.by_name.values().max().map_or(0, |m| m + 1);
        let mut v = vec![String::new(); len];
        for (n, &s) in &self.by_name {
            v[s] = n.clone();
        }
        v
    }
}

/// `config`'s tunnels at their slots (tunnels `slots` lacks are left
/// out).
pub fn slotted_tunnels<'a>(
    config: &'a GatewayConfig,
    slots: &'a Slots,
) -> impl Iterator<Item = (usize, &'a Tunnel)> + 'a {
    config
        .tunnels
        .iter()
        .filter_map(move |t| slots.get(&t.name).map(|s| (s, t)))
}

/// The SPD entries of `config` in file order, each tunnel's PROTECT ones
/// on its slot.
pub fn policies(config: &GatewayConfig, slots: &Slots) -> Vec<Policy> {
    slotted_tunnels(config, slots)
        .flat_map(|(s, t)| slotted(t, s).policies)
        .collect()
}

/// The manual SAs of `config` at the tunnels' slots.
pub fn manual_sas(config: &GatewayConfig, slots: &Slots) -> Wanted {
    Wanted::from_tunnels(slotted_tunnels(config, slots))
}

/// SAs wanted in both `old` and `new` under the same SPI (inbound) or in
/// the same slot with the same SPI (outbound) whose keys or parameters
/// differ: the planner keys installed SAs by SPI and must be told to
/// build these again.
pub fn respecified(old: &Wanted, new: &Wanted) -> (Vec<u32>, Vec<usize>) {
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    for (t, n) in new.iter() {
        let Some(o) = old.tunnel(t) else { continue };
        for spec in &n.inbound {
            if let Some(prev) = o.inbound.iter().find(|p| p.spi() == spec.spi()) {
                if !same_spec(prev, spec) {
                    inbound.push(spec.spi().get());
                }
            }
        }
        if let (Some(a), Some(b)) = (&o.outbound, &n.outbound) {
            if a.spi() == b.spi() && !same_spec(a, b) {
                outbound.push(t);
            }
        }
    }
    (inbound, outbound)
}

/// `running` with tunnel `tunnel` (from the file) added, or put in place
/// of the running tunnel of that name; everything else as it runs.
pub fn with_tunnel(running: &GatewayConfig, tunnel: &Tunnel) -> GatewayConfig {
    let mut c = running.clone();
    match c.tunnels.iter_mut().find(|t| t.name == tunnel.name) {
        Some(t) => *t = tunnel.clone(),
        None => c.tunnels.push(tunnel.clone()),
    }
    c
}

/// `running` without tunnel `name`.
pub fn without_tunnel(running: &GatewayConfig, name: &str) -> GatewayConfig {
    let mut c = running.clone();
    c.tunnels.retain(|t| t.name != name);
    c
}

#[cfg(test)]
mod tests;
