//! The gateway's statistics as one structured value, [`StatsSnapshot`],
//! taken on the control thread: what `espresso stats` prints (as
//! [`StatsSnapshot::to_text`]), what the control socket serializes, and
//! what the metrics endpoint ([`crate::metrics`]) encodes.
//!
//! Built from plain data (the workers' [`WorkerStats`], the ports'
//! counters copied out, the IKE driver's and the sockets' counters), so
//! everything here builds and tests without DPDK.

use std::fmt::Write as _;
use std::time::Duration;

use dataplane::esp::DropReason;
use dataplane::gateway::neigh::Refused;
use dataplane::gateway::{GwDrop, NodeCounters, QueueDrops, WorkerStats};
use serde::{Serialize, Serializer};

use crate::sa::Installed;

/// Counters by name, in a fixed order (the order of the reasons' `ALL`
/// lists): a JSON object when serialized, `key value` lines as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<(&'static str, u64)>);

impl Counts {
    /// The value of `name`, 0 if absent.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Adds `other` into `self`, name by name.
    fn merge(&mut self, other: &Counts) {
        for &(k, v) in &other.0 {
            match self.0.iter_mut().find(|(n, _)| *n == k) {
                Some((_, total)) => *total = total.wrapping_add(v),
                None => self.0.push((k, v)),
            }
        }
    }
}

/// Counters whose names are made at run time (the control socket's
/// refusals by reason), in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedCounts(pub Vec<(String, u64)>);

impl Serialize for NamedCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Everything `espresso stats` reports, at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    /// Seconds since the gateway started.
    pub uptime_s: u64,
    /// Per port, in configuration order.
    pub ports: Vec<PortStats>,
    /// Per worker, by index. Workers that did not answer in time are
    /// missing (see [`StatsSnapshot::workers_missing`]).
    pub workers: Vec<WorkerSnapshot>,
    /// Workers asked for counters that did not answer in time.
    pub workers_missing: u64,
    /// Every worker's pipeline counters added up.
    pub totals: NodeStats,
    /// Drops of all workers by layer and reason.
    pub drops: DropStats,
    /// Tunnels in the configuration.
    pub tunnels_configured: u64,
    /// Tunnels that are up: an IKE tunnel whose IKE SA is established, a
    /// manually keyed one with an SA in its outbound slot.
    pub tunnels_up: u64,
    /// Per tunnel, in configuration order.
    pub tunnels: Vec<TunnelSnapshot>,
    /// Per SA on the workers, by direction and SPI.
    pub sas: Vec<SaSnapshot>,
    /// The IKE driver's counters.
    pub ike: IkeSnapshot,
    /// The control thread's and the control socket's counters.
    pub control: ControlSnapshot,
    /// The metrics endpoint's counters (absent when it is off).
    pub metrics: Option<Counts>,
}

/// One port's counters (the NIC's or the PMD's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// The interface's configured name.
    pub name: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Frames the NIC had no room for (RX ring full).
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

impl PortStats {
    /// `(name, value)` of every counter, in text order.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("rx_packets", self.rx_packets),
            ("tx_packets", self.tx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_bytes", self.tx_bytes),
            ("rx_missed", self.rx_missed),
            ("rx_errors", self.rx_errors),
            ("tx_errors", self.tx_errors),
            ("rx_nombuf", self.rx_nombuf),
        ]
    }
}

/// A worker's pipeline counters (or their sum).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    pub rx: u64,
    pub tx: u64,
    pub encapsulated: u64,
    pub decapsulated: u64,
    pub bypassed: u64,
    pub neighbour_replies: u64,
    pub neighbour_requests: u64,
    pub neighbour_flushes: u64,
    pub echo_replies: u64,
    pub icmp_errors: u64,
    pub mss_clamped: u64,
    pub punted: u64,
    pub handoffs_out: u64,
    pub handoffs_in: u64,
    /// Gateway-level drops, all reasons.
    pub drops: u64,
}

impl NodeStats {
    fn of(n: &NodeCounters) -> Self {
        Self {
            rx: n.rx,
            tx: n.tx,
            encapsulated: n.encapsulated,
            decapsulated: n.decapsulated,
            bypassed: n.bypassed,
            neighbour_replies: n.neighbour_replies,
            neighbour_requests: n.neighbour_requests,
            neighbour_flushes: n.neighbour_flushes,
            echo_replies: n.echo_replies,
            icmp_errors: n.icmp_errors,
            mss_clamped: n.mss_clamped,
            punted: n.punted,
            handoffs_out: n.handoffs_out,
            handoffs_in: n.handoffs_in,
            drops: n.total_drops(),
        }
    }

    /// `(name, value)` of every counter, in text order.
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("rx", self.rx),
            ("tx", self.tx),
            ("encapsulated", self.encapsulated),
            ("decapsulated", self.decapsulated),
            ("bypassed", self.bypassed),
            ("neighbour_replies", self.neighbour_replies),
            ("neighbour_requests", self.neighbour_requests),
            ("neighbour_flushes", self.neighbour_flushes),
            ("echo_replies", self.echo_replies),
            ("icmp_errors", self.icmp_errors),
            ("mss_clamped", self.mss_clamped),
            ("punted", self.punted),
            ("handoffs_out", self.handoffs_out),
            ("handoffs_in", self.handoffs_in),
            ("drops", self.drops),
        ]
    }
}

/// Drops by layer, each by reason (every reason listed, zeros included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DropStats {
    /// The gateway's pipeline ([`GwDrop`]).
    pub gateway: Counts,
    /// ESP processing ([`DropReason`]; also counted on the SAs).
    pub esp: Counts,
    /// Messages to the control thread its queues had no room for.
    pub queue: Counts,
    /// ARP / neighbour discovery packets that taught the table nothing.
    pub neighbour_refused: Counts,
}

impl DropStats {
    fn of(n: &NodeCounters, q: &QueueDrops) -> Self {
        Self {
            gateway: Counts(
                GwDrop::ALL
                    .iter()
                    .map(|r| (r.name(), n.drops[r.index()]))
                    .collect(),
            ),
            esp: Counts(
                DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), n.esp_drops[r.index()]))
                    .collect(),
            ),
            queue: Counts(q.fields().to_vec()),
            neighbour_refused: Counts(
                Refused::ALL
                    .iter()
                    .map(|r| (r.name(), n.neighbour_refused[r.index()]))
                    .collect(),
            ),
        }
    }

    fn merge(&mut self, other: &DropStats) {
        self.gateway.merge(&other.gateway);
        self.esp.merge(&other.esp);
        self.queue.merge(&other.queue);
        self.neighbour_refused.merge(&other.neighbour_refused);
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerSnapshot {
    pub worker: u16,
    pub node: NodeStats,
    pub drops: DropStats,
    /// Poll-loop iterations, and those that received nothing.
    pub polls: u64,
    pub idle_polls: u64,
    pub max_poll_gap_us: u64,
    pub max_control_us: u64,
    pub max_control_cpu_us: u64,
    pub spd_cache_hits: u64,
    pub spd_cache_misses: u64,
}

/// An SA's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by us (the `out` lines, listed first).
    Out,
    /// Received.
    In,
}

impl Direction {
    /// `in` or `out`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One SA on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaSnapshot {
    /// Its tunnel's name; `None` for an SA the control thread no longer
    /// counts as installed (an inbound SA in its grace period after a
    /// delete).
    pub tunnel: Option<String>,
    pub direction: Direction,
    pub spi: u32,
    /// The worker that owns it (its only writer).
    pub worker: u16,
    /// Algorithm and crypto backend.
    pub algorithm: String,
    pub packets: u64,
    pub bytes: u64,
    /// Last sequence number sent (out) or highest accepted (in).
    pub seq: u64,
    /// Drops on this SA by reason, the non-zero ones.
    pub drops: Counts,
}

impl SaSnapshot {
    /// `0x0000abcd`, the SPI as the text and the labels show it.
    pub fn spi_hex(&self) -> String {
        format!("{:#010x}", self.spi)
    }
}

/// One configured tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelSnapshot {
    pub name: String,
    /// Keyed by IKE (`[tunnel.ike]`) rather than by hand.
    pub ike: bool,
    /// See [`StatsSnapshot::tunnels_up`].
    pub up: bool,
    /// SAs on the workers, by direction.
    pub sas_in: u64,
    pub sas_out: u64,
}

/// The IKE driver's counters ([`crate::ike_driver::IkeDriver::stats_snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IkeSnapshot {
    /// Monotonic counters of the driver (packets, keepalives, refusals).
    pub counters: Counts,
    /// Values that go up and down (half-open SAs now, SPIs that did not
    /// fit the workers' table at its last rebuild).
    pub gauges: Counts,
    /// Messages refused for the rule the peer broke, all tunnels together
    /// (RFC 7296 §2.21).
    pub protocol_errors: Counts,
    /// IKE fragments refused, by reason, all tunnels together (RFC 7383
    /// §2.6; see `espresso_ike::FragmentRefusal`).
    pub fragment_refusals: Counts,
    /// Per IKE tunnel.
    pub tunnels: Vec<IkeTunnelSnapshot>,
}

/// One IKE tunnel's engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IkeTunnelSnapshot {
    pub name: String,
    /// The tunnel's index in the configuration.
    pub index: usize,
    /// An IKE SA is established.
    pub up: bool,
    /// IKE SAs (0 or 1) and Child SAs installed now.
    pub ike_sas: u64,
    pub child_sas: u64,
    /// Half-open responder SAs now.
    pub half_open: u64,
    /// The engine's monotonic counters (datagrams, exchanges, cookies,
    /// authentication failures, refusals).
    pub counters: Counts,
}

/// The control thread's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ControlSnapshot {
    /// Packets the workers punted to the control thread (IKE).
    pub punted: u64,
    /// SA events from the workers (lifetimes, sequence numbers).
    pub events: u64,
    /// IKE datagrams waiting in the queues from the workers.
    pub ike_unauth_waiting: u64,
    pub ike_half_open_waiting: u64,
    /// IKE datagrams dropped because worker 0's control queue was full.
    pub transmit_full: u64,
    /// The control socket's counters.
    pub socket: NamedCounts,
}

/// Everything [`build`] needs besides the workers' counters.
#[derive(Debug)]
pub struct Sources<'a> {
    pub uptime: Duration,
    /// The workers' answers (sorted by worker or not).
    pub workers: &'a [WorkerStats],
    /// How many workers were asked.
    pub workers_asked: usize,
    pub ports: Vec<PortStats>,
    /// The configured tunnels: name and whether IKE keys it.
    pub tunnels: Vec<(String, bool)>,
    /// Which tunnel each installed SA belongs to.
    pub installed: &'a Installed,
    pub ike: IkeSnapshot,
    pub control: ControlSnapshot,
    pub metrics: Option<Counts>,
}

/// Puts the snapshot together.
pub fn build(src: Sources<'_>) -> StatsSnapshot {
    let mut workers: Vec<&WorkerStats> = src.workers.iter().collect();
    workers.sort_by_key(|w| w.worker);
    let mut total = NodeCounters::default();
    let mut drops = DropStats::default();
    let mut per_worker = Vec::with_capacity(workers.len());
    for w in &workers {
        total.merge(&w.node);
        let d = DropStats::of(&w.node, &w.queue_drops);
        drops.merge(&d);
        per_worker.push(WorkerSnapshot {
            worker: w.worker,
            node: NodeStats::of(&w.node),
            drops: d,
            polls: w.esp.polls,
            idle_polls: w.esp.idle_polls,
            max_poll_gap_us: w.max_poll_gap_us,
            max_control_us: w.max_control_us,
            max_control_cpu_us: w.max_control_cpu_us,
            spd_cache_hits: w.spd_cache_hits,
            spd_cache_misses: w.spd_cache_misses,
        });
    }
    if workers.is_empty() {
        drops = DropStats::of(&total, &QueueDrops::default());
    }
    let name_of = |t: usize| src.tunnels.get(t).map(|(n, _)| n.clone());
    let mut sas = Vec::new();
    for w in &workers {
        for (direction, list) in [(Direction::Out, &w.outbound), (Direction::In, &w.inbound)] {
            for sa in list {
                let spi = sa.spi.get();
                let tunnel = match direction {
                    Direction::Out => sa.slot.and_then(|s| name_of(s.0 as usize)),
                    Direction::In => src.installed.inbound_tunnel(spi).and_then(name_of),
                };
                sas.push(SaSnapshot {
                    tunnel,
                    direction,
                    spi,
                    worker: w.worker,
                    algorithm: sa.algorithm.clone(),
                    packets: sa.counters.packets,
                    bytes: sa.counters.bytes,
                    seq: sa.seq,
                    drops: Counts(
                        DropReason::ALL
                            .iter()
                            .map(|&r| (r.name(), sa.counters.drops_for(r)))
                            .filter(|&(_, v)| v > 0)
                            .collect(),
                    ),
                });
            }
        }
    }
    // One line per (direction, SPI): an SA that moved between workers
    // during the snapshot is reported once, by its new owner.
    sas.sort_by_key(|s| (s.direction, s.spi));
    sas.dedup_by_key(|s| (s.direction, s.spi));
    // SAs per tunnel name and direction, counted in one pass (asking every
    // tunnel to scan every SA took minutes with 100,000 tunnels).
    let mut per_tunnel: std::collections::HashMap<(&str, Direction), u64> =
        std::collections::HashMap::new();
    for sa in &sas {
        if let Some(t) = sa.tunnel.as_deref() {
            *per_tunnel.entry((t, sa.direction)).or_default() += 1;
        }
    }
    let tunnels: Vec<TunnelSnapshot> = src
        .tunnels
        .iter()
        .enumerate()
        .map(|(t, (name, ike))| {
            let count = |d: Direction| per_tunnel.get(&(name.as_str(), d)).copied().unwrap_or(0);
            let up = if *ike {
                src.ike.tunnels.iter().any(|i| i.index == t && i.up)
            } else {
                src.installed.outbound_spi(t).is_some()
            };
            TunnelSnapshot {
                name: name.clone(),
                ike: *ike,
                up,
                sas_in: count(Direction::In),
                sas_out: count(Direction::Out),
            }
        })
        .collect();
    StatsSnapshot {
        uptime_s: src.uptime.as_secs(),
        ports: src.ports,
        workers_missing: src.workers_asked.saturating_sub(per_worker.len()) as u64,
        workers: per_worker,
        totals: NodeStats::of(&total),
        drops,
        tunnels_configured: tunnels.len() as u64,
        tunnels_up: tunnels.iter().filter(|t| t.up).count() as u64,
        tunnels,
        sas,
        ike: src.ike,
        control: src.control,
        metrics: src.metrics,
    }
}

impl StatsSnapshot {
    /// The `espresso stats` text: one `key value` line per counter, every
    /// value a number, so `awk '$1 == k {print $2}'` reads any of them.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &dyn std::fmt::Display, v: u64| {
            let _ = writeln!(s, "{k} {v}");
        };
        line(&"uptime_s", self.uptime_s);
        for p in &self.ports {
            for (k, v) in p.fields() {
                line(&format_args!("port.{}.{k}", p.name), v);
            }
        }
        for w in &self.workers {
            let id = w.worker;
            for (k, v) in w.node.fields() {
                line(&format_args!("worker.{id}.{k}"), v);
            }
            for (k, v) in &w.drops.queue.0 {
                line(&format_args!("worker.{id}.queue.{k}"), *v);
            }
            for (k, v) in [
                ("polls", w.polls),
                ("idle_polls", w.idle_polls),
                ("max_poll_gap_us", w.max_poll_gap_us),
                ("max_control_us", w.max_control_us),
                ("max_control_cpu_us", w.max_control_cpu_us),
                ("spd_cache_hits", w.spd_cache_hits),
                ("spd_cache_misses", w.spd_cache_misses),
            ] {
                line(&format_args!("worker.{id}.{k}"), v);
            }
        }
        line(&"workers_missing", self.workers_missing);
        for (k, v) in self.totals.fields() {
            line(&format_args!("total.{k}"), v);
        }
        for (k, v) in &self.drops.gateway.0 {
            line(&format_args!("drop.{k}"), *v);
        }
        for (k, v) in &self.drops.esp.0 {
            line(&format_args!("drop.esp.{k}"), *v);
        }
        for (k, v) in &self.drops.queue.0 {
            line(&format_args!("drop.queue.{k}"), *v);
        }
        for (k, v) in &self.drops.neighbour_refused.0 {
            line(&format_args!("neighbour.refused.{k}"), *v);
        }
        let c = &self.control;
        line(&"control.punted", c.punted);
        line(&"control.events", c.events);
        for sa in &self.sas {
            let k = format!("sa.{}.{}", sa.direction.name(), sa.spi_hex());
            // The algorithm is text: it is in the JSON and the metrics'
            // `espresso_sa_info`, not here.
            line(&format_args!("{k}.worker"), u64::from(sa.worker));
            line(&format_args!("{k}.packets"), sa.packets);
            line(&format_args!("{k}.bytes"), sa.bytes);
            line(&format_args!("{k}.seq"), sa.seq);
            for (r, v) in &sa.drops.0 {
                line(&format_args!("{k}.drop.{r}"), *v);
            }
        }
        line(&"tunnels.configured", self.tunnels_configured);
        line(&"tunnels.up", self.tunnels_up);
        for t in &self.tunnels {
            line(&format_args!("tunnel.{}.up", t.name), u64::from(t.up));
            line(&format_args!("tunnel.{}.sas_in", t.name), t.sas_in);
            line(&format_args!("tunnel.{}.sas_out", t.name), t.sas_out);
        }
        line(&"control.ike_unauth_waiting", c.ike_unauth_waiting);
        line(&"control.ike_half_open_waiting", c.ike_half_open_waiting);
        line(&"drop.control.transmit_full", c.transmit_full);
        for (k, v) in &c.socket.0 {
            line(&format_args!("control.socket.{k}"), *v);
        }
        if let Some(m) = &self.metrics {
            for (k, v) in &m.0 {
                line(&format_args!("metrics.{k}"), *v);
            }
        }
        s.push_str(&self.ike.to_text());
        s
    }
}

impl IkeSnapshot {
    /// The `ike.*` lines of `espresso stats`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in self.counters.0.iter().chain(&self.gauges.0) {
            let _ = writeln!(s, "ike.{k} {v}");
        }
        for (k, v) in &self.protocol_errors.0 {
            let _ = writeln!(s, "ike.protocol_errors.{k} {v}");
        }
        for (k, v) in &self.fragment_refusals.0 {
            let _ = writeln!(s, "ike.fragment_refusals.{k} {v}");
        }
        for t in &self.tunnels {
            let n = &t.name;
            let _ = writeln!(s, "ike.{n}.up {}", u64::from(t.up));
            let _ = writeln!(s, "ike.{n}.child_sas {}", t.child_sas);
            let _ = writeln!(s, "ike.{n}.half_open {}", t.half_open);
            for (k, v) in &t.counters.0 {
                let _ = writeln!(s, "ike.{n}.{k} {v}");
            }
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dataplane::esp::{SaCounters, SaRef, Spi};
    use dataplane::gateway::msg::SaStats;

    fn sa(spi: u32, slot: Option<u32>, packets: u64) -> SaStats {
        let mut counters = SaCounters::new();
        for _ in 0..packets {
            counters.record_packet(100);
        }
        SaStats {
            spi: Spi::new(spi).unwrap(),
            slot: slot.map(SaRef),
            algorithm: "aes256gcm16 (ipsec-mb)".into(),
            counters,
            seq: packets,
        }
    }

    /// Two workers, two tunnels (`site-b` by IKE and up, `manual` by hand
    /// with no SA in its slot), a replayed packet on one SA, an SA left
    /// over from a deleted tunnel.
    pub(crate) fn sample() -> StatsSnapshot {
        let mut w0 = WorkerStats {
            worker: 0,
            ..Default::default()
        };
        w0.node.rx = 10;
        w0.node.drops[GwDrop::NoRoute.index()] = 2;
        w0.node.esp_drops[DropReason::Replay.index()] = 1;
        w0.esp.polls = 1000;
        w0.outbound.push(sa(0x2001, Some(0), 5));
        let mut inbound = sa(0x1001, None, 7);
        inbound.counters.record_drop(DropReason::Replay);
        w0.inbound.push(inbound);
        let mut w1 = WorkerStats {
            worker: 1,
            ..Default::default()
        };
        w1.node.rx = 5;
        w1.node.esp_drops[DropReason::Replay.index()] = 3;
        w1.queue_drops.events = 4;
        w1.inbound.push(sa(0x3001, None, 1));
        let installed = Installed::for_tests(&[(0, 0x2001)], &[(0x1001, 0)]);
        build(Sources {
            uptime: Duration::from_secs(42),
            workers: &[w1, w0],
            workers_asked: 3,
            ports: vec![PortStats {
                name: "wan".into(),
                rx_packets: 12,
                ..Default::default()
            }],
            tunnels: vec![("site-b".into(), true), ("manual".into(), false)],
            installed: &installed,
            ike: IkeSnapshot {
                counters: Counts(vec![("rx_packets", 3)]),
                gauges: Counts(vec![("half_open", 1)]),
                protocol_errors: Counts(vec![("missing_sa", 2)]),
                fragment_refusals: Counts(vec![("forged", 3)]),
                tunnels: vec![IkeTunnelSnapshot {
                    name: "site-b".into(),
                    index: 0,
                    up: true,
                    ike_sas: 1,
                    child_sas: 1,
                    half_open: 0,
                    counters: Counts(vec![("auth_failures", 1), ("cookies_sent", 4)]),
                }],
            },
            control: ControlSnapshot {
                punted: 3,
                socket: NamedCounts(vec![("served".into(), 9)]),
                ..Default::default()
            },
            metrics: Some(Counts(vec![("served", 2), ("not_found", 1)])),
        })
    }

    #[test]
    fn snapshot_adds_up_and_names_tunnels() {
        let s = sample();
        assert_eq!(s.workers.len(), 2);
        assert_eq!(s.workers[0].worker, 0);
        assert_eq!(s.workers_missing, 1);
        assert_eq!(s.totals.rx, 15);
        assert_eq!(s.drops.esp.get("replay"), 4);
        assert_eq!(s.drops.gateway.get("no_route"), 2);
        assert_eq!(s.drops.queue.get("events_full"), 4);
        assert_eq!(s.workers[1].drops.esp.get("replay"), 3);
        let by_spi = |spi: u32| s.sas.iter().find(|x| x.spi == spi).unwrap();
        assert_eq!(by_spi(0x2001).tunnel.as_deref(), Some("site-b"));
        assert_eq!(by_spi(0x2001).direction, Direction::Out);
        assert_eq!(by_spi(0x1001).tunnel.as_deref(), Some("site-b"));
        assert_eq!(by_spi(0x1001).drops, Counts(vec![("replay", 1)]));
        assert_eq!(by_spi(0x3001).tunnel, None);
        assert_eq!((s.tunnels_configured, s.tunnels_up), (2, 1));
        assert_eq!((s.tunnels[0].sas_in, s.tunnels[0].sas_out), (1, 1));
        assert!(!s.tunnels[1].up);
    }

    /// Every line is `key value` with a numeric value and no key twice.
    #[test]
    fn text_lines_are_numeric_and_unique() {
        let text = sample().to_text();
        let mut keys = std::collections::BTreeSet::new();
        for l in text.lines() {
            let mut it = l.split(' ');
            let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
                panic!("not `key value`: {l:?}");
            };
            assert!(v.parse::<u64>().is_ok(), "not a number: {l:?}");
            assert!(keys.insert(k.to_string()), "twice: {k}");
        }
        for (k, v) in [
            ("sa.out.0x00002001.packets", "5"),
            ("sa.in.0x00001001.drop.replay", "1"),
            ("sa.in.0x00001001.worker", "0"),
            ("sa.in.0x00003001.worker", "1"),
            ("drop.esp.replay", "4"),
            ("port.wan.rx_packets", "12"),
            ("tunnels.up", "1"),
            ("tunnel.site-b.sas_out", "1"),
            ("ike.site-b.cookies_sent", "4"),
            ("ike.protocol_errors.missing_sa", "2"),
            ("ike.fragment_refusals.forged", "3"),
            ("control.socket.served", "9"),
            ("metrics.not_found", "1"),
        ] {
            assert!(text.contains(&format!("\n{k} {v}\n")), "{k} {v} in\n{text}");
        }
    }

    #[test]
    fn json_has_counts_as_objects() {
        let j = serde_json::to_value(sample()).unwrap();
        assert_eq!(j["drops"]["esp"]["replay"], 4);
        assert_eq!(j["sas"][0]["direction"], "out");
        assert_eq!(j["sas"][0]["tunnel"], "site-b");
        assert_eq!(j["ike"]["tunnels"][0]["counters"]["auth_failures"], 1);
        assert_eq!(j["workers"][1]["drops"]["queue"]["events_full"], 4);
    }
}
