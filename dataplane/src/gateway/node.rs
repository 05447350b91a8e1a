//! The forwarding pipeline of one worker.
//!
//! A frame enters with [`Node::rx`] and leaves through the per-interface
//! transmit lists ([`Node::tx`]), the hand-off list (to the worker that
//! owns the packet's SA), the punt list (IKE for the control thread), or is
//! dropped and counted by reason. Generic over the buffer so the same code
//! runs on mbufs and in tests on heap buffers.
//!
//! Classification of a frame arriving on an interface:
//! 1. ARP (RFC 826) and IPv6 neighbour discovery (RFC 4861) for our
//!    addresses are answered; requests addressed to us and answers to our
//!    own requests teach the neighbour table, for addresses on the
//!    receiving interface's subnets only (see [`super::neigh`]).
//!    IP in a frame sent to a group link-layer address must be for a group
//!    (RFC 1812 §5.3.4, RFC 1122 §3.3.6).
//! 2. IP addressed to us: ICMP/ICMPv6 echo is answered; UDP 500 and UDP
//!    4500 with the zero non-ESP marker are punted (RFC 3948 §2.2); ESP and
//!    UDP-4500 ESP are decapsulated; the rest is dropped.
//! 3. Transit from a LAN interface: the SPD decides protect (encapsulate
//!    and route the outer packet), bypass (route) or discard.
//! 4. Transit from a WAN interface: ESP for a known SPI (transport-mode
//!    SAs between hosts) is decapsulated; plaintext that an SPD entry says
//!    must arrive protected is dropped (RFC 4301 §5.2); bypass is routed.
//!
//! Forwarded packets have their TTL / hop limit decremented (ICMP time
//! exceeded at zero), are checked against the egress MTU (ICMP
//! fragmentation-needed / packet-too-big when DF is set or for IPv6, with
//! the MTU that fits including ESP overhead: PMTU discovery through the
//! tunnel, RFC 1191 / RFC 8201), have the MSS of TCP SYNs clamped where the
//! egress interface asks for it, and are resolved to a link-layer address.
//!
//! IP packets the gateway originates (echo replies, ICMP errors) cross the
//! boundary like any other when they leave through a WAN interface: the
//! SPD decides them (`Node::send_local`), so an error about a decrypted
//! packet goes back through the tunnel or not at all (RFC 4301 §6.2).
//! ICMP errors are rate-limited per worker (RFC 4443 §2.4(f), RFC 1812
//! §4.3.2.8). Only IKE from the control plane ([`Node::transmit`]) and
//! link-local neighbour discovery leave without the SPD.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::buf::PacketBuf;
use crate::esp::SpiMap;
use crate::esp::{
    locate_esp_header_verified, packet_key, Action, DropReason, EngineEvent, EspEngine,
    EspLocation, FlowKey, InboundOutcome, InboundSa, OutboundSa, PacketKey, SaHint, SaRef, Spd,
    Spi,
};
use crate::esp::{Chunked, SlotVec};
use crate::route::RouteTable;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, Icmpv4Packet,
    Icmpv4Repr, Icmpv4Type, Icmpv6Packet, Icmpv6Repr, Icmpv6Type, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpPacket,
};

use super::msg::{Handoff, HandoffKind, Spares};
use super::neigh::{Claim, Claimed, NeighbourTable, Refused, Resolve, SolicitLog};

const ETH_LEN: usize = 14;
const IKE_PORT: u16 = 500;
const NAT_T_PORT: u16 = 4500;
/// At most this many SAs (outbound slots plus inbound SAs), the node does
/// not prefetch ahead ([`Node::prefetch_burst`]): 256 SAs with their key
/// schedules (about 1.7 KB each) fit in the core's 2 MB L2. Measured with
/// the `scale_probe` test, the passes cost 64-byte packets 12-20 ns at one
/// SA and save 250-330 ns at 100,000.
pub const PREFETCH_MIN_SAS: usize = 256;
/// Packets waiting for a neighbour, per worker.
const PENDING_MAX: usize = 256;
/// How long a packet waits for its neighbour.
const PENDING_TIMEOUT_MS: u64 = 3000;
/// Neighbours confirmed per poll that are passed on to the other workers
/// at most (the list is allocated once; the rest resolve on their own).
const LEARNED_MAX: usize = 64;
/// ICMP errors a worker sends per second by default (see
/// [`Node::set_icmp_rate_limit`]).
pub const ICMP_ERRORS_PER_SECOND: u32 = 100;
/// ICMP errors a worker may send at once by default.
pub const ICMP_ERROR_BURST: u32 = 20;

/// The token bucket that limits the ICMP errors one worker sends (RFC 4443
/// §2.4(f) requires limiting ICMPv6 errors and suggests a token bucket;
/// RFC 1812 §4.3.2.8 asks the same of IPv4 routers). Without it, anyone
/// who can make the gateway drop packets (TTL 1, DF over the MTU) makes it
/// send one error per packet, back through the tunnel or onto the LAN.
/// Credit is in thousandths of an error, so a millisecond adds
/// `per_second` of them.
#[derive(Debug, Clone, Copy)]
struct IcmpLimit {
    per_second: u32,
    burst: u32,
    credit: u64,
    last_ms: u64,
}

impl IcmpLimit {
    fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            credit: u64::from(burst) * 1000,
            last_ms: 0,
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(u64::from(self.per_second)))
            .min(u64::from(self.burst) * 1000);
        if self.credit >= 1000 {
            self.credit -= 1000;
            true
        } else {
            false
        }
    }
}

/// What an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The protected side: plaintext in, to protect.
    Lan,
    /// The unprotected side: ESP and IKE.
    Wan,
}

/// An interface as the data path sees it.
#[derive(Debug, Clone)]
pub struct Interface {
    /// Name from the configuration.
    pub name: String,
    /// Our link-layer address on it.
    pub mac: [u8; 6],
    /// LAN or WAN.
    pub role: Role,
    /// Our addresses with their prefixes (connected routes).
    pub addrs: Vec<IpNet>,
    /// IP MTU.
    pub mtu: u16,
    /// Clamp the MSS of TCP SYNs leaving through this interface (for a WAN
    /// interface: of SYNs entering a tunnel over it).
    pub mss_clamp: Option<u16>,
}

impl Interface {
    fn owns(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|n| n.addr() == ip)
    }

    /// Whether a neighbour with address `ip` belongs on this interface:
    /// inside one of its prefixes, or IPv6 link-local (on every link, RFC
    /// 4291 §2.5.6).
    fn on_link(&self, ip: IpAddr) -> bool {
        let link_local = matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        link_local || self.addrs.iter().any(|n| n.contains(&ip))
    }

    /// Whether `ip` is the network or broadcast address of one of its
    /// IPv4 subnets (no host has those; RFC 1812 §4.2.3.1, RFC 3021 for
    /// /31).
    fn subnet_edge(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|n| match n {
            IpNet::V4(n) => {
                n.prefix_len() < 31
                    && (ip == IpAddr::V4(n.network()) || ip == IpAddr::V4(n.broadcast()))
            }
            IpNet::V6(_) => false,
        })
    }

    fn addr_v4(&self) -> Option<Ipv4Addr> {
        self.addrs.iter().find_map(|n| match n.addr() {
            IpAddr::V4(a) => Some(a),
            _ => None,
        })
    }

    fn addr_v6(&self) -> Option<Ipv6Addr> {
        self.addrs.iter().find_map(|n| match n.addr() {
            IpAddr::V6(a) => Some(a),
            _ => None,
        })
    }
}

/// A source of fresh packet buffers (an mbuf pool, or the heap in tests).
pub trait PacketPool<B> {
    /// An empty buffer with headroom, or None when exhausted.
    fn alloc(&mut self) -> Option<B>;
}

/// Gateway-level drop reasons (ESP-level ones are [`DropReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GwDrop {
    /// Not a valid Ethernet frame or IP header.
    BadFrame,
    /// Not addressed to us (link layer) or an unhandled local protocol.
    NotForUs,
    /// A protocol or feature the gateway does not handle (VLAN, fragments
    /// of ESP, other ethertypes).
    Unsupported,
    /// No route to the destination.
    NoRoute,
    /// The neighbour could not be resolved in time, or too many packets
    /// were waiting.
    NoNeighbour,
    /// TTL / hop limit reached zero (ICMP time exceeded sent, within the
    /// rate limit and as the SPD allows).
    TtlExceeded,
    /// Larger than the path MTU with DF set or IPv6 (ICMP sent), or larger
    /// than we can fragment.
    TooBig,
    /// Plaintext from the WAN that policy says must arrive protected.
    UnprotectedInbound,
    /// The owning worker's hand-off queue was full.
    HandoffFull,
    /// The control thread's punt queue was full.
    PuntFull,
    /// The NIC's TX queue stayed full.
    TxFull,
    /// No buffer for a generated packet (ARP request).
    NoBuffer,
    /// An ICMP error not sent: over the worker's rate limit (the packet
    /// it was about is counted under its own reason as well).
    IcmpRateLimited,
    /// A packet the gateway originated (ICMP error, echo reply) that the
    /// SPD does not let out of a WAN interface: no policy, DISCARD, or
    /// PROTECT without an SA.
    LocalPolicy,
    /// IP for a unicast address in a frame sent to a broadcast or
    /// multicast link-layer address (RFC 1812 §5.3.4: not forwarded).
    GroupFrame,
}

impl GwDrop {
    /// Every reason in index order.
    pub const ALL: [GwDrop; 15] = [
        GwDrop::BadFrame,
        GwDrop::NotForUs,
        GwDrop::Unsupported,
        GwDrop::NoRoute,
        GwDrop::NoNeighbour,
        GwDrop::TtlExceeded,
        GwDrop::TooBig,
        GwDrop::UnprotectedInbound,
        GwDrop::HandoffFull,
        GwDrop::PuntFull,
        GwDrop::TxFull,
        GwDrop::NoBuffer,
        GwDrop::IcmpRateLimited,
        GwDrop::LocalPolicy,
        GwDrop::GroupFrame,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Name for statistics.
    pub const fn name(self) -> &'static str {
        match self {
            GwDrop::BadFrame => "bad_frame",
            GwDrop::NotForUs => "not_for_us",
            GwDrop::Unsupported => "unsupported",
            GwDrop::NoRoute => "no_route",
            GwDrop::NoNeighbour => "no_neighbour",
            GwDrop::TtlExceeded => "ttl_exceeded",
            GwDrop::TooBig => "too_big",
            GwDrop::UnprotectedInbound => "unprotected_inbound",
            GwDrop::HandoffFull => "handoff_full",
            GwDrop::PuntFull => "punt_full",
            GwDrop::TxFull => "tx_full",
            GwDrop::NoBuffer => "no_buffer",
            GwDrop::IcmpRateLimited => "icmp_rate_limited",
            GwDrop::LocalPolicy => "local_policy",
            GwDrop::GroupFrame => "group_frame_unicast_ip",
        }
    }
}

/// Counters of one worker's pipeline. Single writer: the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames queued for transmission.
    pub tx: u64,
    /// Packets encapsulated.
    pub encapsulated: u64,
    /// Packets decapsulated.
    pub decapsulated: u64,
    /// Packets forwarded without ESP (bypass).
    pub bypassed: u64,
    /// ARP and neighbour advertisement replies sent.
    pub neighbour_replies: u64,
    /// ARP requests and neighbour solicitations sent (unicast probes
    /// included).
    pub neighbour_requests: u64,
    /// ARP packets and neighbour solicitations / advertisements that
    /// taught the neighbour table nothing, by reason.
    pub neighbour_refused: [u64; Refused::COUNT],
    /// Neighbours resolved afresh on the control thread's request (a peer
    /// stopped answering).
    pub neighbour_flushes: u64,
    /// ICMP echo replies built; like [`Self::icmp_errors`], those the SPD
    /// then refuses count under [`GwDrop::LocalPolicy`] too.
    pub echo_replies: u64,
    /// ICMP errors built (time exceeded, fragmentation needed, too big);
    /// those the SPD then refuses count under [`GwDrop::LocalPolicy`] too.
    pub icmp_errors: u64,
    /// TCP SYNs whose MSS was lowered.
    pub mss_clamped: u64,
    /// Packets punted to the control thread.
    pub punted: u64,
    /// Packets sent for the control thread.
    pub transmitted_for_control: u64,
    /// Packets handed to another worker.
    pub handoffs_out: u64,
    /// Packets received from another worker.
    pub handoffs_in: u64,
    /// Gateway-level drops by reason.
    pub drops: [u64; GwDrop::COUNT],
    /// ESP-level drops seen by this worker, by reason (also on the SAs).
    pub esp_drops: [u64; DropReason::COUNT],
}

impl NodeCounters {
    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.esp_drops.iter().sum::<u64>()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &NodeCounters) {
        self.rx += other.rx;
        self.tx += other.tx;
        self.encapsulated += other.encapsulated;
        self.decapsulated += other.decapsulated;
        self.bypassed += other.bypassed;
        self.neighbour_replies += other.neighbour_replies;
        self.neighbour_requests += other.neighbour_requests;
        for (a, b) in self
            .neighbour_refused
            .iter_mut()
            .zip(other.neighbour_refused)
        {
            *a += b;
        }
        self.neighbour_flushes += other.neighbour_flushes;
        self.echo_replies += other.echo_replies;
        self.icmp_errors += other.icmp_errors;
        self.mss_clamped += other.mss_clamped;
        self.punted += other.punted;
        self.transmitted_for_control += other.transmitted_for_control;
        self.handoffs_out += other.handoffs_out;
        self.handoffs_in += other.handoffs_in;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        for (a, b) in self.esp_drops.iter_mut().zip(other.esp_drops) {
            *a += b;
        }
    }
}

struct Pending<B> {
    next_hop: IpAddr,
    iface: u16,
    since_ms: u64,
    packet: B,
}

/// Where a tunnel-mode SA's packets leave, resolved once: in tunnel mode
/// every packet of an SA has the same outer destination, so the route and
/// neighbour lookups (a fifth of a 64-byte packet's cost before this cache)
/// are done for its first packet and reused until a route, neighbour or
/// SA change makes them stale (`epoch`, `neigh_gen`). ipsec-secgw and VPP
/// likewise resolve a tunnel's adjacency once rather than per packet.
#[derive(Debug, Clone, Copy)]
struct Egress {
    /// `egress_epoch` and the neighbour table's generation, truncated so
    /// that the line stays one cache line (a stale egress would be taken
    /// for current only after exactly a multiple of 2^32 changes).
    epoch: u32,
    neigh_gen: u32,
    /// When the neighbour entry needs looking at again (it ages).
    until: u64,
    out_if: u16,
    mac: [u8; 6],
    mtu: u16,
    mss: Option<u16>,
    outer_v4: bool,
}

/// What the node keeps per outbound slot, in one cache line (with many
/// tunnels the burst pipeline prefetches it per packet): the tunnel's
/// egress and where its SA's hot data is.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct SlotLine {
    egress: Option<Egress>,
    hint: SaHint,
}

const _: () = assert!(std::mem::size_of::<SlotLine>() == 64);

/// One worker's forwarding state and pipeline.
pub struct Node<B> {
    /// Worker index.
    pub id: u16,
    ifaces: Vec<Interface>,
    routes: RouteTable,
    neigh: NeighbourTable,
    /// Requests of every worker (an answer may land on another worker).
    solicits: Arc<SolicitLog>,
    engine: EspEngine,
    slot_owner: SlotVec<u16>,
    /// Per outbound slot: where its tunnel-mode packets go (see [`Egress`])
    /// and its SA's [`SaHint`], in chunks that never move (a growth adds
    /// one instead of copying every line: with 100,000 tunnels, 8 MB
    /// copied and 16 MB faulted in during one install message).
    slots: Chunked<SlotLine>,
    /// Bumped by every change that can move a tunnel's egress (routes,
    /// SAs); with the neighbour table's generation it validates `egress`.
    egress_epoch: u64,
    spi_owner: SpiMap<u16>,
    /// How many `spi_owner` entries name another worker: while there are
    /// none (one worker, or SAs all here) inbound ESP skips the owner
    /// lookup, a second hash probe per packet next to the engine's.
    foreign_spis: usize,
    pending: Vec<Pending<B>>,
    now_ms: u64,
    icmp_limit: IcmpLimit,
    /// Counters.
    pub counters: NodeCounters,
    /// Frames to send, per interface index (Ethernet header included).
    pub tx: Vec<Vec<B>>,
    /// Packets for other workers: (worker, packet).
    pub handoffs: Vec<(u16, Handoff<B>)>,
    /// IKE packets for the control thread: (interface, IP packet).
    pub punts: Vec<(u16, Vec<u8>)>,
    /// Neighbours confirmed since the worker last looked (at most
    /// `LEARNED_MAX`), for the other workers.
    pub learned: Vec<(IpAddr, [u8; 6], u16)>,
    /// SA events since the worker last looked.
    pub events: Vec<EngineEvent>,
}

impl<B> std::fmt::Debug for Node<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("ifaces", &self.ifaces.len())
            .field("routes", &self.routes.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<B: PacketBuf> Node<B> {
    /// A node for worker `id` with these interfaces and routes. Connected
    /// routes for the interfaces' prefixes are added.
    pub fn new(id: u16, ifaces: Vec<Interface>, routes: RouteTable) -> Self {
        let routes = with_connected(&ifaces, routes);
        let n = ifaces.len();
        Self {
            id,
            ifaces,
            routes,
            neigh: NeighbourTable::new(),
            solicits: Arc::new(SolicitLog::new()),
            engine: EspEngine::new(),
            slot_owner: SlotVec::new(),
            slots: Chunked::new(),
            egress_epoch: 0,
            spi_owner: SpiMap::new(),
            foreign_spis: 0,
            pending: Vec::with_capacity(PENDING_MAX),
            now_ms: 0,
            icmp_limit: IcmpLimit::new(ICMP_ERRORS_PER_SECOND, ICMP_ERROR_BURST),
            counters: NodeCounters::default(),
            tx: (0..n).map(|_| Vec::with_capacity(256)).collect(),
            handoffs: Vec::with_capacity(64),
            punts: Vec::new(),
            learned: Vec::with_capacity(LEARNED_MAX),
            events: Vec::with_capacity(16),
        }
    }

    /// Shares one log of neighbour requests between the workers of a
    /// gateway, so that an answer is recognised whichever worker receives
    /// it.
    pub fn share_solicit_log(&mut self, log: Arc<SolicitLog>) {
        self.solicits = log;
    }

    /// The interfaces.
    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }
}

/// `routes` plus the connected routes of the interfaces' prefixes.
fn with_connected(ifaces: &[Interface], mut routes: RouteTable) -> RouteTable {
    for (i, iface) in ifaces.iter().enumerate() {
        for net in &iface.addrs {
            if routes
                .lookup(net.addr())
                .is_none_or(|(p, _)| p.prefix_len() < net.prefix_len())
            {
                routes.insert(
                    net.trunc(),
                    crate::route::NextHop {
                        interface: i as u16,
                        via: None,
                    },
                );
            }
        }
    }
    routes.compile();
    routes
}

impl<B: PacketBuf> Node<B> {
    /// The ESP engine (SAs owned by this worker).
    pub fn engine(&self) -> &EspEngine {
        &self.engine
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &NeighbourTable {
        &self.neigh
    }

    /// Sets the clock (milliseconds, any epoch) for this burst.
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Limits the ICMP errors this worker sends to `per_second`, at most
    /// `burst` at once (0 per second: none). The bucket starts full.
    pub fn set_icmp_rate_limit(&mut self, per_second: u32, burst: u32) {
        self.icmp_limit = IcmpLimit::new(per_second, burst);
        self.icmp_limit.last_ms = self.now_ms;
    }

    // ---- control-plane changes (between bursts) ----

    /// Replaces the SPD, returning the old one.
    pub fn set_spd(&mut self, spd: Spd) -> Spd {
        self.engine.set_spd(spd)
    }

    /// Replaces the routing table (connected routes are re-added).
    pub fn set_routes(&mut self, routes: RouteTable) {
        self.routes = with_connected(&self.ifaces, routes);
        self.egress_epoch += 1;
    }

    /// Installs an outbound SA this worker owns.
    pub fn install_outbound(
        &mut self,
        slot: SaRef,
        sa: impl Into<Box<OutboundSa>>,
    ) -> Option<Box<OutboundSa>> {
        self.set_outbound_owner(slot, Some(self.id));
        self.egress_epoch += 1;
        let sa = sa.into();
        let i = slot.0 as usize;
        // The box keeps its address in the engine.
        self.slots.grow_to(i).hint = sa.prefetch_hint();
        self.engine.install_outbound(slot, sa)
    }

    /// Removes an outbound SA.
    pub fn remove_outbound(&mut self, slot: SaRef) -> Option<Box<OutboundSa>> {
        self.egress_epoch += 1;
        if let Some(l) = self.slots.get_mut(slot.0 as usize) {
            l.hint = SaHint::default();
        }
        self.engine.remove_outbound(slot)
    }

    /// Records which worker owns outbound slot `slot`.
    pub fn set_outbound_owner(&mut self, slot: SaRef, worker: Option<u16>) {
        *self.slot_owner.slot_mut(slot.0 as usize) = worker;
    }

    /// Installs an inbound SA this worker owns.
    pub fn install_inbound(&mut self, sa: impl Into<Box<InboundSa>>) -> Option<Box<InboundSa>> {
        let sa = sa.into();
        self.set_spi_owner(sa.config().spi.get(), Some(self.id));
        self.engine.install_inbound(sa)
    }

    /// Removes an inbound SA.
    pub fn remove_inbound(&mut self, spi: Spi) -> Option<Box<InboundSa>> {
        self.engine.remove_inbound(spi)
    }

    /// Bounded table maintenance between bursts (tables that grow move a
    /// few entries per call; see [`SpiMap`]).
    #[inline]
    pub fn step(&mut self) {
        self.spi_owner.step();
        self.engine.step();
    }

    /// True while [`step`](Self::step) has work to do.
    #[inline]
    pub fn is_stepping(&self) -> bool {
        self.spi_owner.is_growing() || self.engine.is_stepping()
    }

    /// Capacities of the spare tables the SPI maps want for their next
    /// growth (inbound SAs, SPI owners), if either wants one now.
    pub fn spares_wanted(&mut self) -> Option<(Option<usize>, Option<usize>)> {
        let inbound = self.engine.inbound_mut().wants_spare();
        let owners = self.spi_owner.wants_spare();
        (inbound.is_some() || owners.is_some()).then_some((inbound, owners))
    }

    /// Hands spare tables to the SPI maps; returns those they could not use.
    pub fn give_spares(&mut self, s: Spares) -> Spares {
        Spares {
            inbound: s
                .inbound
                .and_then(|t| self.engine.inbound_mut().give_spare(t)),
            owners: s.owners.and_then(|t| self.spi_owner.give_spare(t)),
        }
    }

    /// Tables the SPI maps emptied by growing, to be freed elsewhere.
    pub fn take_retired_tables(&mut self) -> Option<Spares> {
        let s = Spares {
            inbound: self.engine.inbound_mut().take_retired(),
            owners: self.spi_owner.take_retired(),
        };
        (!s.is_empty()).then_some(s)
    }

    /// Records which worker owns inbound SPI `spi`.
    pub fn set_inbound_owner(&mut self, spi: Spi, worker: Option<u16>) {
        self.set_spi_owner(spi.get(), worker);
    }

    fn set_spi_owner(&mut self, spi: u32, worker: Option<u16>) {
        let old = match worker {
            Some(w) => self.spi_owner.insert(spi, w),
            None => self.spi_owner.remove(spi),
        };
        if old.is_some_and(|o| o != self.id) {
            self.foreign_spis -= 1;
        }
        if worker.is_some_and(|o| o != self.id) {
            self.foreign_spis += 1;
        }
    }

    /// A neighbour another worker confirmed (it answered a request of
    /// ours): taken like an answer to our own request, so a different
    /// address for a live entry is still probed first. Flushes packets
    /// that waited for it.
    pub fn learn_neighbour(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        if usize::from(iface) >= self.ifaces.len() || self.check_claim(iface, ip, mac).is_err() {
            return;
        }
        let claim = Claim::Answer {
            asked: true,
            solicited: true,
            override_flag: true,
        };
        if let Ok(c) = self.neigh.claim(iface, ip, mac, claim, self.now_ms) {
            if c.resolved() {
                self.flush_pending(iface, ip);
            }
        }
    }

    /// A static neighbour from the configuration.
    pub fn add_static_neighbour(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        self.neigh.insert_static(ip, mac, iface);
        self.flush_pending(iface, ip);
    }

    /// Resolves the next hop towards `ip` afresh (the control thread asks
    /// when a peer stopped answering: its neighbour entry may be wrong):
    /// the learned entry loses its address and a request goes out now.
    /// Static entries are kept.
    pub fn reresolve(&mut self, ip: IpAddr, pool: &mut impl PacketPool<B>) {
        let Some(&hop) = self.routes.next_hop(ip) else {
            return;
        };
        let nh = hop.neighbour(ip);
        self.counters.neighbour_flushes += 1;
        if self.neigh.flush(hop.interface, nh, self.now_ms) {
            self.solicit(hop.interface, nh, None, pool);
        }
    }

    // ---- the pipeline ----

    fn drop_gw(&mut self, reason: GwDrop) {
        self.counters.drops[reason.index()] += 1;
    }

    fn drop_esp(&mut self, reason: DropReason) {
        self.counters.esp_drops[reason.index()] += 1;
    }

    /// Starts the cache misses of a received burst before [`Self::rx`]
    /// processes it, so that with many SAs they overlap instead of
    /// stalling each packet in turn (the two-pass burst of DPDK's
    /// lib/ipsec and VPP). Each pass over the burst issues the prefetches
    /// whose addresses the previous pass brought in. Plaintext from a LAN:
    /// the flow-cache set; then the cached decision's SA table entry and
    /// the node's line for the slot (egress and [`SaHint`]); then from the hint the
    /// SA's hot lines, its transform and key schedule. ESP from the WAN:
    /// the SA found by SPI; then from the hint recorded in it, its
    /// transform and key schedule. Only hints: nothing changes, so a wrong
    /// guess (a signature that matches another flow) costs a useless
    /// prefetch, never a wrong packet.
    ///
    /// Skipped while the node has at most [`PREFETCH_MIN_SAS`] SAs: their
    /// data then stays in the core's caches and the passes would cost
    /// more than they save.
    pub fn prefetch_burst(&self, in_if: u16, pkts: &[B]) {
        const N: usize = crate::BURST_SIZE;
        if self.engine.sa_count() <= PREFETCH_MIN_SAS {
            return;
        }
        let Some(iface) = self.ifaces.get(usize::from(in_if)) else {
            return;
        };
        let n = pkts.len().min(N);
        fn ip(d: &[u8]) -> Option<&[u8]> {
            match d.get(12..14)? {
                [0x08, 0x00] | [0x86, 0xdd] => d.get(ETH_LEN..),
                _ => None,
            }
        }
        if iface.role == Role::Wan {
            // Three rounds, each starting the misses the next one reads:
            // SPI table slots, then the SAs' hot lines, then their key
            // schedules and replay blocks.
            let inbound = self.engine.inbound();
            let mut spis: [Option<Spi>; N] = [None; N];
            for (s, p) in spis.iter_mut().zip(&pkts[..n]) {
                let Some(d) = ip(p.data()) else { continue };
                // A hint only: the header checksum is checked on the way in.
                let loc = locate_esp_header_verified(d, NAT_T_PORT);
                *s = esp_spi(d, &loc).and_then(|spi| Spi::new(spi).ok());
                if let Some(spi) = s {
                    inbound.prefetch_spi(spi.get());
                }
            }
            let mut sas: [Option<&InboundSa>; N] = [None; N];
            for (sa, spi) in sas.iter_mut().zip(&spis[..n]) {
                *sa = spi.and_then(|spi| inbound.get(spi));
                if let Some(sa) = sa {
                    sa.prefetch();
                }
            }
            // The frame's length stands for the payload's: it only picks
            // between the key lines of short and of long payloads.
            for (sa, p) in sas[..n].iter().zip(pkts) {
                if let Some(sa) = sa {
                    sa.prefetch_rest(p.len());
                }
            }
        } else {
            let mut hints = [None; N];
            for (h, p) in hints.iter_mut().zip(&pkts[..n]) {
                if let Some(Ok(k)) = ip(p.data()).map(packet_key) {
                    if !k.opaque {
                        *h = Some(self.engine.flow_hint(&k.key));
                    }
                }
            }
            let mut slots: [Option<SaRef>; N] = [None; N];
            for (s, h) in slots.iter_mut().zip(&hints[..n]) {
                *s = h.and_then(|h| self.engine.peek_flow(h));
                if let Some(slot) = s {
                    self.slots.prefetch(slot.0 as usize);
                }
            }
            for (slot, p) in slots[..n].iter().zip(pkts) {
                if let Some(l) = slot.and_then(|s| self.slots.get(s.0 as usize)) {
                    l.hint.prefetch(p.len());
                }
            }
        }
    }

    /// A frame received on interface `in_if`.
    pub fn rx(&mut self, in_if: u16, mut pkt: B, pool: &mut impl PacketPool<B>) {
        self.counters.rx += 1;
        let Some(iface) = self.ifaces.get(usize::from(in_if)) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Ok(frame) = EthernetFrame::new_checked(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let dst = frame.dst_addr();
        let group = dst.is_multicast();
        if dst.0 != iface.mac && !group {
            return self.drop_gw(GwDrop::NotForUs);
        }
        match frame.ethertype() {
            EtherType::ARP => self.arp_input(in_if, pkt),
            EtherType::IPV4 | EtherType::IPV6 => {
                if pkt.adj(ETH_LEN).is_err() {
                    return self.drop_gw(GwDrop::BadFrame);
                }
                self.ip_input(in_if, pkt, pool, group)
            }
            _ => self.drop_gw(GwDrop::Unsupported),
        }
    }

    fn arp_input(&mut self, in_if: u16, mut pkt: B) {
        let repr =
            match ArpPacket::new_checked(&pkt.data()[ETH_LEN..]).and_then(|p| ArpRepr::parse(&p)) {
                Ok(r) => r,
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
        let iface = &self.ifaces[usize::from(in_if)];
        let mac = iface.mac;
        let (spa, tpa) = (repr.source_protocol_addr, repr.target_protocol_addr);
        let sha = repr.source_hardware_addr.0;
        let for_us = iface.owns(IpAddr::V4(tpa));
        let sender = IpAddr::V4(spa);
        let request = repr.operation == ArpOperation::REQUEST;
        if spa.is_unspecified() {
            // An address probe (RFC 5227 §2.1.1) claims nothing.
        } else if repr.operation == ArpOperation::REPLY || (request && spa == tpa) {
            // A reply, or an announcement (a request for the sender's own
            // address): an answer, which only our own requests ask for.
            let asked = !request && self.asked(in_if, sender);
            let claim = Claim::Answer {
                asked,
                solicited: true,
                override_flag: true,
            };
            self.learn(in_if, sender, sha, claim);
        } else if request && for_us {
            // RFC 826's merge, as RFC 4861 §7.2.3 for a solicitation.
            self.learn(in_if, sender, sha, Claim::Request);
        } else {
            // Between other hosts.
            return self.drop_gw(GwDrop::NotForUs);
        }
        if request && for_us && unicast_mac(sha) {
            let reply = repr.reply(EthernetAddress(mac));
            let data = pkt.data_mut();
            write_eth(data, sha, mac, EtherType::ARP);
            if reply.emit(&mut data[ETH_LEN..]).is_err() {
                return self.drop_gw(GwDrop::BadFrame);
            }
            self.counters.neighbour_replies += 1;
            self.queue_tx(in_if, pkt);
        }
    }

    /// Whether an answer about `ip` on `iface` answers a request of ours
    /// (this worker's, or another's).
    fn asked(&self, iface: u16, ip: IpAddr) -> bool {
        self.neigh.awaiting(iface, ip) || self.solicits.asked(iface, ip, self.now_ms)
    }

    fn refuse(&mut self, r: Refused) {
        self.counters.neighbour_refused[r.index()] += 1;
    }

    /// Whether a packet received on `in_if` may teach that `ip` is at
    /// `mac`: a unicast link-layer address not ours, an address a
    /// neighbour can have, on the subnets of that interface.
    fn check_claim(&self, in_if: u16, ip: IpAddr, mac: [u8; 6]) -> Result<(), Refused> {
        let bad_ip = match ip {
            IpAddr::V4(a) => {
                a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback()
            }
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback(),
        };
        if bad_ip
            || !unicast_mac(mac)
            || self
                .ifaces
                .iter()
                .any(|i| i.mac == mac || i.owns(ip) || i.subnet_edge(ip))
        {
            return Err(Refused::BadAddress);
        }
        if self.ifaces[usize::from(in_if)].on_link(ip) {
            Ok(())
        } else if self.ifaces.iter().any(|i| i.on_link(ip)) {
            Err(Refused::WrongInterface)
        } else {
            Err(Refused::OffSubnet)
        }
    }

    /// Applies a claim received on `in_if`, counting a refusal. Answers to
    /// our requests that gave or confirmed an address are passed on to the
    /// other workers.
    fn learn(&mut self, in_if: u16, ip: IpAddr, mac: [u8; 6], claim: Claim) {
        if let Err(r) = self.check_claim(in_if, ip, mac) {
            return self.refuse(r);
        }
        match self.neigh.claim(in_if, ip, mac, claim, self.now_ms) {
            Ok(c) => {
                if c.resolved() {
                    self.flush_pending(in_if, ip);
                }
                let confirmed = matches!(
                    claim,
                    Claim::Answer {
                        asked: true,
                        solicited: true,
                        ..
                    }
                );
                if confirmed && c != Claimed::Unchanged && self.learned.len() < LEARNED_MAX {
                    self.learned.push((ip, mac, in_if));
                }
            }
            Err(r) => self.refuse(r),
        }
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        self.ifaces.iter().any(|i| i.owns(ip))
    }

    /// An IP packet (link-layer header removed) received on `in_if`.
    /// `group`: the frame was sent to a broadcast or multicast link-layer
    /// address.
    fn ip_input(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>, group: bool) {
        let Some((dst, proto, l4)) = ip_summary(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        // RFC 1812 §5.3.4 (and RFC 1122 §3.3.6 for us as a host): a
        // unicast packet in a group frame is neither forwarded nor taken.
        let group_ip = match dst {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast(),
        };
        if group && !group_ip {
            return self.drop_gw(GwDrop::GroupFrame);
        }
        let ndp_multicast = matches!(dst, IpAddr::V6(a) if a.segments()[0] == 0xff02);
        if self.is_local(dst) || (ndp_multicast && proto == IpProtocol::ICMPV6) {
            self.local_input(in_if, pkt, proto, l4, pool)
        } else {
            self.transit_input(in_if, pkt, pool)
        }
    }

    fn local_input(
        &mut self,
        in_if: u16,
        pkt: B,
        proto: IpProtocol,
        l4: usize,
        pool: &mut impl PacketPool<B>,
    ) {
        match proto {
            IpProtocol::ICMP => self.icmpv4_local(in_if, pkt, l4, pool),
            IpProtocol::ICMPV6 => self.icmpv6_local(in_if, pkt, l4, pool),
            IpProtocol::UDP => {
                let dport = pkt
                    .data()
                    .get(l4 + 2..l4 + 4)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]));
                match dport {
                    Some(IKE_PORT) => self.punt(in_if, pkt),
                    Some(NAT_T_PORT) => self.esp_input(in_if, pkt, pool),
                    _ => self.drop_gw(GwDrop::NotForUs),
                }
            }
            IpProtocol::ESP => self.esp_input(in_if, pkt, pool),
            _ => self.drop_gw(GwDrop::NotForUs),
        }
    }

    fn punt(&mut self, in_if: u16, pkt: B) {
        self.counters.punted += 1;
        self.punts.push((in_if, pkt.data().to_vec()));
    }

    fn icmpv4_local(&mut self, in_if: u16, mut pkt: B, l4: usize, pool: &mut impl PacketPool<B>) {
        let data = pkt.data_mut();
        let Ok(ip) = Ipv4Packet::new_checked(&data[..]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let total = usize::from(ip.total_len());
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(icmp) = Icmpv4Packet::new_checked(&data[l4..total]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        if icmp.msg_type() != Icmpv4Type::ECHO_REQUEST || !icmp.verify_checksum() {
            return self.drop_gw(GwDrop::NotForUs);
        }
        // Echo reply in place: swap addresses, type 0, fix checksums.
        {
            let mut icmp = Icmpv4Packet::new_unchecked(&mut data[l4..total]);
            icmp.set_msg_type(Icmpv4Type::ECHO_REPLY);
            icmp.fill_checksum();
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        self.counters.echo_replies += 1;
        self.send_local(in_if, pkt, pool)
    }

    fn icmpv6_local(&mut self, in_if: u16, mut pkt: B, l4: usize, pool: &mut impl PacketPool<B>) {
        let data = pkt.data_mut();
        let Ok(ip) = Ipv6Packet::new_checked(&data[..]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let end = 40 + usize::from(ip.payload_len());
        let hop_limit = ip.hop_limit();
        let Ok(icmp) = Icmpv6Packet::new_checked(&data[l4..end]) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Ok(repr) = Icmpv6Repr::parse(src, dst, &icmp) else {
            return self.drop_gw(GwDrop::NotForUs);
        };
        match repr {
            Icmpv6Repr::EchoRequest { .. } if self.is_local(IpAddr::V6(dst)) => {
                {
                    let mut icmp = Icmpv6Packet::new_unchecked(&mut data[l4..end]);
                    icmp.set_msg_type(Icmpv6Type::ECHO_REPLY);
                    icmp.fill_checksum(dst, src);
                }
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
                ip.set_src_addr(dst);
                ip.set_dst_addr(src);
                ip.set_hop_limit(64);
                self.counters.echo_replies += 1;
                self.send_local(in_if, pkt, pool)
            }
            Icmpv6Repr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => {
                // RFC 4861 §7.1.1: hop limit 255.
                if hop_limit != 255 {
                    return self.refuse(Refused::Invalid);
                }
                if !self.ifaces[usize::from(in_if)].owns(IpAddr::V6(target_addr)) {
                    return self.drop_gw(GwDrop::NotForUs);
                }
                let Some(peer_mac) = source_lladdr else {
                    // DAD probes (unspecified source) carry no address.
                    return self.drop_gw(GwDrop::NotForUs);
                };
                if !unicast_mac(peer_mac.0) {
                    return self.refuse(Refused::BadAddress);
                }
                if !src.is_unspecified() {
                    self.learn(in_if, IpAddr::V6(src), peer_mac.0, Claim::Request);
                }
                let mac = self.ifaces[usize::from(in_if)].mac;
                let na = Icmpv6Repr::NeighborAdvert {
                    router: true,
                    solicited: true,
                    override_flag: true,
                    target_addr,
                    target_lladdr: Some(EthernetAddress(mac)),
                };
                if write_icmpv6(&mut pkt, target_addr, src, 255, &na).is_err() {
                    return self.drop_gw(GwDrop::BadFrame);
                }
                self.counters.neighbour_replies += 1;
                self.send_eth(in_if, pkt, peer_mac.0, EtherType::IPV6)
            }
            Icmpv6Repr::NeighborAdvert {
                solicited,
                override_flag,
                target_addr,
                target_lladdr,
                ..
            } => {
                // RFC 4861 §7.1.2: hop limit 255; S clear when sent to a
                // group. Without a target link-layer option an
                // advertisement only confirms, which a gateway takes from
                // ones that carry it.
                let Some(mac) = target_lladdr
                    .filter(|_| hop_limit == 255 && !(solicited && dst.is_multicast()))
                else {
                    return self.refuse(Refused::Invalid);
                };
                let target = IpAddr::V6(target_addr);
                let claim = Claim::Answer {
                    asked: self.asked(in_if, target),
                    solicited,
                    override_flag,
                };
                self.learn(in_if, target, mac.0, claim);
            }
            _ => self.drop_gw(GwDrop::NotForUs),
        }
    }

    fn transit_input(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        if self.ifaces[usize::from(in_if)].role == Role::Wan {
            // ESP between hosts (transport-mode SAs) passes through us.
            // `ip_input` has verified the header checksum.
            let loc = locate_esp_header_verified(pkt.data(), NAT_T_PORT);
            if esp_spi(pkt.data(), &loc).is_some_and(|spi| self.spi_owner.contains_key(spi)) {
                return self.esp_input_located(in_if, pkt, loc, pool);
            }
            let PacketKey { key, opaque } = match packet_key(pkt.data()) {
                Ok(k) => k,
                Err(DropReason::OpaquePorts) => return self.drop_esp(DropReason::OpaquePorts),
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
            // RFC 4301 §5.2: look the packet up as the reverse flow; if
            // policy protects that flow, plaintext must not be accepted.
            let reverse = PacketKey {
                key: FlowKey {
                    src: key.dst,
                    dst: key.src,
                    proto: key.proto,
                    sport: key.dport,
                    dport: key.sport,
                },
                opaque,
            };
            match self.engine.packet_action(&reverse) {
                Ok(Action::Bypass) => self.forward(in_if, pkt, pool),
                Ok(Action::Protect(_)) => self.drop_gw(GwDrop::UnprotectedInbound),
                Ok(Action::Discard) => self.drop_esp(DropReason::PolicyDiscard),
                Err(r) => self.drop_esp(r),
            }
        } else {
            // Borrowed where it was built: moving the key out of the
            // `Result` copied it in eight-byte words over field-sized
            // stores, a store-forwarding stall per packet.
            let key = packet_key(pkt.data());
            let key = match &key {
                Ok(k) => k,
                Err(DropReason::OpaquePorts) => {
                    return self.engine_outbound_drop(DropReason::OpaquePorts)
                }
                Err(_) => return self.drop_gw(GwDrop::BadFrame),
            };
            // A packet whose ports are unknown (a non-initial fragment) is
            // decided by the ANY-port policies alone and never from the
            // flow cache (see `Spd::lookup_opaque`).
            match self.engine.packet_action(key) {
                Ok(Action::Protect(slot)) => self.protect(in_if, slot, pkt, pool, false),
                Ok(Action::Bypass) => self.forward(in_if, pkt, pool),
                Ok(Action::Discard) => self.engine_outbound_drop(DropReason::PolicyDiscard),
                Err(r) => self.engine_outbound_drop(r),
            }
        }
    }

    fn engine_outbound_drop(&mut self, r: DropReason) {
        self.drop_esp(r);
        self.engine.count_outbound_drop(r);
    }

    /// Plain forwarding (bypass): TTL, MTU, MSS, route.
    fn forward(&mut self, in_if: u16, mut pkt: B, pool: &mut impl PacketPool<B>) {
        if !self.ttl_ok(&mut pkt) {
            return self.ttl_exceeded(in_if, pkt, pool);
        }
        self.counters.bypassed += 1;
        self.route_out(pkt, pool, true)
    }

    /// Decrements the TTL / hop limit; false if it ran out (the packet
    /// is then unchanged).
    fn ttl_ok(&mut self, pkt: &mut B) -> bool {
        let data = pkt.data_mut();
        let expired = match data[0] >> 4 {
            4 => {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
                if ip.ttl() <= 1 {
                    true
                } else {
                    ip.decrement_ttl();
                    false
                }
            }
            _ => {
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
                if ip.hop_limit() <= 1 {
                    true
                } else {
                    let h = ip.hop_limit() - 1;
                    ip.set_hop_limit(h);
                    false
                }
            }
        };
        !expired
    }

    fn ttl_exceeded(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        self.drop_gw(GwDrop::TtlExceeded);
        self.icmp_error_packet(in_if, pkt, IcmpError::TimeExceeded, pool)
    }

    /// Outbound through a tunnel: hand off to the owner, or encapsulate.
    /// `local`: a packet the gateway originated ([`Self::send_local`]),
    /// whose TTL is not decremented and about which no ICMP error is sent
    /// (too big and not fragmentable, it is dropped).
    fn protect(
        &mut self,
        in_if: u16,
        slot: SaRef,
        mut pkt: B,
        pool: &mut impl PacketPool<B>,
        local: bool,
    ) {
        if self.engine.outbound(slot).is_none() {
            // The owner only matters for a slot whose SA is elsewhere.
            match self.slot_owner.get(slot.0 as usize).copied() {
                Some(w) if w != self.id => {
                    self.counters.handoffs_out += 1;
                    self.handoffs.push((
                        w,
                        Handoff {
                            packet: pkt,
                            in_iface: in_if,
                            kind: if local {
                                HandoffKind::Local(slot)
                            } else {
                                HandoffKind::Outbound(slot)
                            },
                        },
                    ));
                }
                // A policy whose SA is not installed (RFC 4301 would
                // trigger IKE): drop.
                _ if local => self.drop_gw(GwDrop::LocalPolicy),
                _ => self.drop_esp(DropReason::NoPolicy),
            }
            return;
        }
        if !local && !self.ttl_ok(&mut pkt) {
            return self.ttl_exceeded(in_if, pkt, pool);
        }
        if let Some(e) = self.cached_egress(slot) {
            if let Some(m) = e.mss {
                self.clamp_mss(&mut pkt, m);
            }
            let sa = self.engine.outbound(slot).expect("checked above");
            if pkt.len() + sa.overhead(pkt.len()) <= usize::from(e.mtu) {
                return self.seal_and_send(slot, pkt, &e);
            }
            // Too big: the slow path below sends the ICMP or fragments.
        }
        let (remote, mode_transport) = {
            let sa = self.engine.outbound(slot).expect("checked above");
            (
                sa.config().endpoints.remote,
                sa.config().mode == crate::esp::Mode::Transport,
            )
        };
        // The egress interface of the outer packet decides MTU and MSS.
        let outer_dst = if mode_transport {
            crate::esp::inbound::packet_dst(pkt.data()).unwrap_or(remote)
        } else {
            remote
        };
        let Some(&hop) = self.routes.next_hop(outer_dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        let egress = &self.ifaces[usize::from(hop.interface)];
        let (mtu, mss) = (usize::from(egress.mtu), egress.mss_clamp);
        if !mode_transport {
            let nh = hop.neighbour(outer_dst);
            if let Some((mac, until)) = self.neigh.usable(hop.interface, nh, self.now_ms) {
                let i = slot.0 as usize;
                self.slots.grow_to(i).egress = Some(Egress {
                    epoch: self.egress_epoch as u32,
                    neigh_gen: self.neigh.generation() as u32,
                    until,
                    outer_v4: outer_dst.is_ipv4(),
                    out_if: hop.interface,
                    mac,
                    mtu: egress.mtu,
                    mss,
                });
            }
        }
        if let Some(m) = mss {
            self.clamp_mss(&mut pkt, m);
        }
        let len = pkt.len();
        let overhead = self.engine.outbound(slot).expect("checked").overhead(len);
        if len + overhead > mtu {
            // PMTU discovery through the tunnel: tell the sender the inner
            // MTU that fits (RFC 4301 §8.2, RFC 1191, RFC 8201).
            let sa = self.engine.outbound(slot).expect("checked");
            let fits = largest_fitting(mtu, |l| l + sa.overhead(l));
            if may_fragment(pkt.data()) {
                // IPv4 without DF: fragment the inner packet, then protect
                // each fragment (RFC 4301 §8.1 allows fragmenting before
                // encapsulation; the destination host reassembles, so the
                // peer gateway needs no reassembly state).
                match fragment_v4(&pkt, fits, pool) {
                    Some(frags) => {
                        drop(pkt);
                        for f in frags {
                            self.seal_and_route(slot, f, outer_dst, hop, pool);
                        }
                    }
                    None => self.drop_gw(GwDrop::TooBig),
                }
                return;
            }
            self.drop_gw(GwDrop::TooBig);
            if local {
                return;
            }
            return self.icmp_too_big(in_if, pkt, fits as u16, pool);
        }
        self.seal_and_route(slot, pkt, outer_dst, hop, pool)
    }

    /// The still-valid egress of tunnel-mode slot `slot`.
    #[inline]
    fn cached_egress(&self, slot: SaRef) -> Option<Egress> {
        let e = self.slots.get(slot.0 as usize)?.egress?;
        (e.epoch == self.egress_epoch as u32
            && e.neigh_gen == self.neigh.generation() as u32
            && self.now_ms < e.until)
            .then_some(e)
    }

    /// Encapsulates `pkt` with the slot's SA: the ESP packet, or `None`
    /// after counting the drop.
    #[inline]
    fn seal(&mut self, slot: SaRef, mut pkt: B) -> Option<B> {
        let Some(sa) = self.engine.outbound_mut(slot) else {
            self.drop_esp(DropReason::NoPolicy);
            return None;
        };
        let events = &mut self.events;
        let spi = sa.spi();
        match sa.encapsulate(&mut pkt, &mut |e| {
            events.push(EngineEvent::Outbound(slot, spi, e))
        }) {
            Ok(()) => {
                self.counters.encapsulated += 1;
                Some(pkt)
            }
            Err(r) => {
                self.drop_esp(r);
                None
            }
        }
    }

    /// Encapsulates with the slot's SA and sends the frame out of the
    /// cached egress.
    fn seal_and_send(&mut self, slot: SaRef, pkt: B, e: &Egress) {
        if let Some(pkt) = self.seal(slot, pkt) {
            let ethertype = if e.outer_v4 {
                EtherType::IPV4
            } else {
                EtherType::IPV6
            };
            self.send_eth(e.out_if, pkt, e.mac, ethertype)
        }
    }

    /// Encapsulates with the slot's SA and sends the result towards
    /// `outer_dst` through `hop` (looked up once by the caller).
    fn seal_and_route(
        &mut self,
        slot: SaRef,
        pkt: B,
        outer_dst: IpAddr,
        hop: crate::route::NextHop,
        pool: &mut impl PacketPool<B>,
    ) {
        if let Some(pkt) = self.seal(slot, pkt) {
            self.deliver(pkt, outer_dst, hop, pool, false)
        }
    }

    /// ESP arriving for us, from `local_input` (`ip_input` has verified
    /// the header checksum).
    fn esp_input(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        let loc = locate_esp_header_verified(pkt.data(), NAT_T_PORT);
        self.esp_input_located(in_if, pkt, loc, pool)
    }

    /// `esp_input` with the ESP header already located (parsed once per
    /// packet on this worker).
    fn esp_input_located(
        &mut self,
        in_if: u16,
        mut pkt: B,
        loc: Result<EspLocation, DropReason>,
        pool: &mut impl PacketPool<B>,
    ) {
        // Hand off to the SA's owner, so its replay window has one writer.
        if let Some(&w) = esp_spi(pkt.data(), &loc)
            .filter(|_| self.foreign_spis > 0)
            .and_then(|spi| self.spi_owner.get(spi))
        {
            if w != self.id {
                self.counters.handoffs_out += 1;
                self.handoffs.push((
                    w,
                    Handoff {
                        packet: pkt,
                        in_iface: in_if,
                        kind: HandoffKind::Inbound,
                    },
                ));
                return;
            }
        }
        let events = &mut self.events;
        let r = self
            .engine
            .decapsulate_located(&mut pkt, loc, &mut |spi, e| {
                events.push(EngineEvent::Inbound(spi, e))
            });
        self.after_decap(in_if, pkt, r, pool)
    }

    fn decapsulate(&mut self, pkt: &mut B) -> Result<InboundOutcome, DropReason> {
        let events = &mut self.events;
        self.engine
            .decapsulate(pkt, &mut |spi, e| events.push(EngineEvent::Inbound(spi, e)))
    }

    fn after_decap(
        &mut self,
        in_if: u16,
        mut pkt: B,
        r: Result<InboundOutcome, DropReason>,
        pool: &mut impl PacketPool<B>,
    ) {
        match r {
            Ok(InboundOutcome::Decrypted(_)) => {
                self.counters.decapsulated += 1;
                // Routed once, for the MSS clamp of the egress interface
                // and the delivery (this was `route_out`'s second lookup).
                let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
                    return self.drop_gw(GwDrop::BadFrame);
                };
                let Some(&hop) = self.routes.next_hop(dst) else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                if !self.ttl_ok(&mut pkt) {
                    // The error goes back into the tunnel: from the
                    // protected side's address (the interface the packet
                    // was headed for), which the reverse flow's policy can
                    // cover, rather than from the WAN address, which only
                    // a policy for the gateway itself would (RFC 4301
                    // §6.2; `send_local` refuses it if none matches).
                    return self.ttl_exceeded(hop.interface, pkt, pool);
                }
                if let Some(m) = self.ifaces[usize::from(hop.interface)].mss_clamp {
                    self.clamp_mss(&mut pkt, m);
                }
                self.deliver(pkt, dst, hop, pool, true)
            }
            Ok(InboundOutcome::Punt) => self.punt(in_if, pkt),
            Ok(InboundOutcome::NotEsp) => self.drop_gw(GwDrop::NotForUs),
            Err(r) => self.drop_esp(r),
        }
    }

    /// A packet another worker handed to us (we own its SA).
    pub fn handoff_in(&mut self, h: Handoff<B>, pool: &mut impl PacketPool<B>) {
        self.counters.handoffs_in += 1;
        match h.kind {
            HandoffKind::Outbound(slot) => {
                if self.engine.outbound(slot).is_none() {
                    // Ownership moved meanwhile; do not bounce it around.
                    return self.drop_esp(DropReason::NoPolicy);
                }
                self.protect(h.in_iface, slot, h.packet, pool, false)
            }
            HandoffKind::Local(slot) => {
                if self.engine.outbound(slot).is_none() {
                    return self.drop_gw(GwDrop::LocalPolicy);
                }
                self.protect(h.in_iface, slot, h.packet, pool, true)
            }
            HandoffKind::Inbound => {
                let mut pkt = h.packet;
                let r = self.decapsulate(&mut pkt);
                self.after_decap(h.in_iface, pkt, r, pool)
            }
        }
    }

    /// An IP packet from the control plane: route and send it. These are
    /// IKE messages and NAT keepalives between the gateway's WAN address
    /// and its peers, the traffic that sets up the SAs, so they do not go
    /// through the SPD (an SPD that protected or discarded them would
    /// leave the tunnels unable to form).
    pub fn transmit(&mut self, pkt: B, pool: &mut impl PacketPool<B>) {
        self.counters.transmitted_for_control += 1;
        self.route_out(pkt, pool, false)
    }

    /// An IP packet the gateway originated (echo reply, ICMP error), `in_if`
    /// the interface of the packet that caused it. Out of a LAN interface
    /// it stays on the protected side and is sent. Out of a WAN interface
    /// it crosses the IPsec boundary, so its own addresses, protocol and
    /// ports go through the SPD like any outbound packet (RFC 4301 §5.1;
    /// for ICMP errors about decrypted packets, §6.2): PROTECT seals it
    /// with the policy's SA, BYPASS sends it, and DISCARD, no policy or a
    /// PROTECT whose SA is missing drop it (counted as
    /// [`GwDrop::LocalPolicy`]). It is never sent in clear otherwise: an
    /// error quoting a decrypted packet would put its plaintext on the
    /// WAN.
    fn send_local(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Some(&hop) = self.routes.next_hop(dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        if self.ifaces[usize::from(hop.interface)].role == Role::Lan {
            return self.deliver(pkt, dst, hop, pool, false);
        }
        match packet_key(pkt.data()).and_then(|k| self.engine.packet_action(&k)) {
            Ok(Action::Bypass) => self.deliver(pkt, dst, hop, pool, false),
            Ok(Action::Protect(slot)) => self.protect(in_if, slot, pkt, pool, true),
            Ok(Action::Discard) | Err(_) => self.drop_gw(GwDrop::LocalPolicy),
        }
    }

    fn clamp_mss(&mut self, pkt: &mut B, max: u16) {
        let data = pkt.data_mut();
        let (proto, l4, end) = match data[0] >> 4 {
            4 => {
                let Ok(ip) = Ipv4Packet::new_checked(&data[..]) else {
                    return;
                };
                if ip.frag_offset() != 0 {
                    return;
                }
                (
                    ip.protocol(),
                    usize::from(ip.header_len()),
                    usize::from(ip.total_len()),
                )
            }
            _ => {
                let Ok(ip) = Ipv6Packet::new_checked(&data[..]) else {
                    return;
                };
                let Ok(ext) = ip.ext_headers() else { return };
                (
                    ext.upper_protocol,
                    ext.upper_offset,
                    40 + usize::from(ip.payload_len()),
                )
            }
        };
        if proto != IpProtocol::TCP || l4 >= end {
            return;
        }
        if let Ok(mut tcp) = TcpPacket::new_checked(&mut data[l4..end]) {
            if let Ok(Some(_)) = tcp.clamp_mss(max) {
                self.counters.mss_clamped += 1;
            }
        }
    }

    /// Routes an IP packet and queues it on the egress interface, resolving
    /// the next hop. `check_mtu`: forwarded traffic gets ICMP errors when it
    /// does not fit; our own packets do not.
    fn route_out(&mut self, pkt: B, pool: &mut impl PacketPool<B>, check_mtu: bool) {
        let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
            return self.drop_gw(GwDrop::BadFrame);
        };
        let Some(&hop) = self.routes.next_hop(dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        self.deliver(pkt, dst, hop, pool, check_mtu)
    }

    /// Sends an IP packet for `dst` through `hop`: MTU check (when asked),
    /// neighbour resolution, link-layer header, transmit list.
    fn deliver(
        &mut self,
        pkt: B,
        dst: IpAddr,
        hop: crate::route::NextHop,
        pool: &mut impl PacketPool<B>,
        check_mtu: bool,
    ) {
        let out_if = hop.interface;
        let mtu = usize::from(self.ifaces[usize::from(out_if)].mtu);
        if check_mtu && pkt.len() > mtu {
            if may_fragment(pkt.data()) {
                match fragment_v4(&pkt, mtu, pool) {
                    Some(frags) => {
                        drop(pkt);
                        for f in frags {
                            self.route_out(f, pool, false);
                        }
                    }
                    None => self.drop_gw(GwDrop::TooBig),
                }
                return;
            }
            self.drop_gw(GwDrop::TooBig);
            return self.icmp_too_big(out_if, pkt, mtu as u16, pool);
        }
        let nh = hop.neighbour(dst);
        let ethertype = if dst.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        match self.neigh.resolve(out_if, nh, self.now_ms) {
            Resolve::Use { mac, probe, .. } => {
                if probe {
                    self.solicit(out_if, nh, Some(mac), pool);
                }
                self.send_eth(out_if, pkt, mac, ethertype)
            }
            Resolve::Wait { solicit } => {
                if solicit {
                    self.solicit(out_if, nh, None, pool);
                }
                self.expire_pending();
                if self.pending.len() >= PENDING_MAX {
                    return self.drop_gw(GwDrop::NoNeighbour);
                }
                self.pending.push(Pending {
                    next_hop: nh,
                    iface: out_if,
                    since_ms: self.now_ms,
                    packet: pkt,
                });
            }
            Resolve::Full => self.drop_gw(GwDrop::NoNeighbour),
        }
    }

    fn send_eth(&mut self, out_if: u16, mut pkt: B, dst_mac: [u8; 6], ethertype: EtherType) {
        let src_mac = self.ifaces[usize::from(out_if)].mac;
        match pkt.prepend(ETH_LEN) {
            Ok(h) => write_eth(h, dst_mac, src_mac, ethertype),
            Err(_) => return self.drop_gw(GwDrop::TooBig),
        }
        self.queue_tx(out_if, pkt)
    }

    fn queue_tx(&mut self, out_if: u16, pkt: B) {
        self.counters.tx += 1;
        self.tx[usize::from(out_if)].push(pkt);
    }

    fn flush_pending(&mut self, iface: u16, ip: IpAddr) {
        let Some(mac) = self.neigh.lookup(iface, ip) else {
            return;
        };
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next_hop == ip && self.pending[i].iface == iface {
                let p = self.pending.swap_remove(i);
                let ethertype = if ip.is_ipv4() {
                    EtherType::IPV4
                } else {
                    EtherType::IPV6
                };
                self.send_eth(p.iface, p.packet, mac, ethertype);
            } else {
                i += 1;
            }
        }
    }

    /// Drops packets that waited too long for their neighbour.
    pub fn expire_pending(&mut self) {
        let now = self.now_ms;
        let before = self.pending.len();
        self.pending
            .retain(|p| now.saturating_sub(p.since_ms) < PENDING_TIMEOUT_MS);
        let expired = (before - self.pending.len()) as u64;
        self.counters.drops[GwDrop::NoNeighbour.index()] += expired;
    }

    /// Number of packets waiting for a neighbour.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Frees everything queued (at stop); returns how many.
    pub fn drain(&mut self) -> u64 {
        let n =
            self.pending.len() + self.tx.iter().map(Vec::len).sum::<usize>() + self.handoffs.len();
        self.pending.clear();
        self.tx.iter_mut().for_each(Vec::clear);
        self.handoffs.clear();
        n as u64
    }

    /// Sends an ARP request or a neighbour solicitation for `ip`: to
    /// everyone (broadcast, solicited-node multicast), or a unicast probe
    /// to the address the entry has (RFC 1122 §2.3.2.1, RFC 4861 §7.2.2).
    fn solicit(
        &mut self,
        out_if: u16,
        ip: IpAddr,
        unicast: Option<[u8; 6]>,
        pool: &mut impl PacketPool<B>,
    ) {
        self.solicits.note(out_if, ip, self.now_ms);
        let Some(mut pkt) = pool.alloc() else {
            return self.drop_gw(GwDrop::NoBuffer);
        };
        let iface = &self.ifaces[usize::from(out_if)];
        let mac = iface.mac;
        match ip {
            IpAddr::V4(target) => {
                let Some(src) = iface.addr_v4() else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                let Ok(buf) = pkt.append(ETH_LEN + ArpRepr::LEN) else {
                    return self.drop_gw(GwDrop::NoBuffer);
                };
                write_eth(buf, unicast.unwrap_or([0xff; 6]), mac, EtherType::ARP);
                if ArpRepr::request(EthernetAddress(mac), src, target)
                    .emit(&mut buf[ETH_LEN..])
                    .is_err()
                {
                    return self.drop_gw(GwDrop::NoBuffer);
                }
                self.counters.neighbour_requests += 1;
                self.queue_tx(out_if, pkt)
            }
            IpAddr::V6(target) => {
                let Some(src) = iface.addr_v6() else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                // Solicited-node multicast (RFC 4291 §2.7.1).
                let t = target.octets();
                let group = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | u16::from(t[13]),
                    u16::from_be_bytes([t[14], t[15]]),
                );
                let (group, dst_mac) = match unicast {
                    Some(m) => (target, m),
                    None => (group, [0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                };
                let ns = Icmpv6Repr::NeighborSolicit {
                    target_addr: target,
                    source_lladdr: Some(EthernetAddress(mac)),
                };
                if write_icmpv6(&mut pkt, src, group, 255, &ns).is_err() {
                    return self.drop_gw(GwDrop::NoBuffer);
                }
                self.counters.neighbour_requests += 1;
                self.send_eth(out_if, pkt, dst_mac, EtherType::IPV6)
            }
        }
    }

    /// Turns the offending packet (IP header first) into an ICMP error to
    /// its source, in place, and sends it ([`Self::send_local`]) if the
    /// rate limit allows.
    fn icmp_error_packet(
        &mut self,
        in_if: u16,
        mut pkt: B,
        kind: IcmpError,
        pool: &mut impl PacketPool<B>,
    ) {
        let data = pkt.data();
        match data[0] >> 4 {
            4 => {
                let Ok(ip) = Ipv4Packet::new_checked(data) else {
                    return;
                };
                let src = ip.src_addr();
                // RFC 1812 §4.3.2.7: no errors about ICMP errors,
                // fragments or broadcast/multicast.
                if ip.frag_offset() != 0
                    || src.is_multicast()
                    || src.is_broadcast()
                    || src.is_unspecified()
                {
                    return;
                }
                if ip.protocol() == IpProtocol::ICMP {
                    let t = data.get(usize::from(ip.header_len())).copied().unwrap_or(0);
                    if t != 0 && t != 8 {
                        return;
                    }
                }
                let Some(our) = self.ifaces[usize::from(in_if)]
                    .addr_v4()
                    .or_else(|| self.any_v4())
                else {
                    return;
                };
                if !self.icmp_limit.take(self.now_ms) {
                    return self.drop_gw(GwDrop::IcmpRateLimited);
                }
                let quote_len = crate::wire::icmp::icmpv4_quote(data).len();
                let len = pkt.len();
                if pkt.trim(len - quote_len).is_err() {
                    return;
                }
                let Ok(hdr) = pkt.prepend(28) else { return };
                hdr.fill(0);
                let total = pkt.len();
                let (quote_start, data) = (28, pkt.data_mut());
                let (head, quote) = data.split_at_mut(quote_start);
                let repr = match kind {
                    IcmpError::TimeExceeded => Icmpv4Repr::ttl_exceeded(quote),
                    IcmpError::TooBig(mtu) => Icmpv4Repr::frag_needed(mtu, quote),
                };
                let mut icmp_buf = [0u8; 8];
                {
                    // Emit header + quote into a temporary view: the quote
                    // is already in place, so emit into a full-size buffer
                    // would overlap; compute the checksum over both parts.
                    let (t, code, rest) = match repr {
                        Icmpv4Repr::TimeExceeded { code, .. } => (11u8, code, [0u8; 4]),
                        Icmpv4Repr::DstUnreachable {
                            code, next_hop_mtu, ..
                        } => {
                            let m = next_hop_mtu.to_be_bytes();
                            (3u8, code, [0, 0, m[0], m[1]])
                        }
                        _ => return,
                    };
                    icmp_buf[0] = t;
                    icmp_buf[1] = code;
                    icmp_buf[4..8].copy_from_slice(&rest);
                    let sum = crate::wire::checksum::combine(&[
                        crate::wire::checksum::data(&icmp_buf),
                        crate::wire::checksum::data(quote),
                    ]);
                    icmp_buf[2..4].copy_from_slice(&(!sum).to_be_bytes());
                }
                head[20..28].copy_from_slice(&icmp_buf);
                let mut ip = Ipv4Packet::new_unchecked(&mut head[..20]);
                ip.set_version(4);
                ip.set_header_len(20);
                ip.set_total_len(total as u16);
                ip.set_ttl(64);
                ip.set_protocol(IpProtocol::ICMP);
                ip.set_src_addr(our);
                ip.set_dst_addr(src);
                ip.fill_checksum();
            }
            _ => {
                let Ok(ip) = Ipv6Packet::new_checked(data) else {
                    return;
                };
                let src = ip.src_addr();
                if src.is_multicast() || src.is_unspecified() {
                    return;
                }
                if ip.next_header() == IpProtocol::ICMPV6 && data.get(40).is_some_and(|t| *t < 128)
                {
                    return;
                }
                let Some(our) = self.ifaces[usize::from(in_if)]
                    .addr_v6()
                    .or_else(|| self.any_v6())
                else {
                    return;
                };
                if !self.icmp_limit.take(self.now_ms) {
                    return self.drop_gw(GwDrop::IcmpRateLimited);
                }
                let quote_len = crate::wire::icmp::icmpv6_quote(data).len();
                let len = pkt.len();
                if pkt.trim(len - quote_len).is_err() {
                    return;
                }
                let Ok(hdr) = pkt.prepend(48) else { return };
                hdr.fill(0);
                let total = pkt.len();
                let data = pkt.data_mut();
                {
                    let mut icmp = Icmpv6Packet::new_unchecked(&mut data[40..total]);
                    match kind {
                        IcmpError::TimeExceeded => {
                            icmp.set_msg_type(Icmpv6Type::TIME_EXCEEDED);
                        }
                        IcmpError::TooBig(mtu) => {
                            icmp.set_msg_type(Icmpv6Type::PACKET_TOO_BIG);
                            icmp.set_mtu(u32::from(mtu));
                        }
                    }
                    icmp.set_msg_code(0);
                    icmp.fill_checksum(our, src);
                }
                let mut ip = Ipv6Packet::new_unchecked(&mut data[..40]);
                ip.set_version(6);
                ip.set_payload_len((total - 40) as u16);
                ip.set_next_header(IpProtocol::ICMPV6);
                ip.set_hop_limit(64);
                ip.set_src_addr(our);
                ip.set_dst_addr(src);
            }
        }
        self.counters.icmp_errors += 1;
        self.send_local(in_if, pkt, pool)
    }

    fn icmp_too_big(&mut self, in_if: u16, pkt: B, mtu: u16, pool: &mut impl PacketPool<B>) {
        // IPv4 without DF: no ICMP; the packet is dropped (counted).
        let data = pkt.data();
        if data[0] >> 4 == 4 && !Ipv4Packet::new_unchecked(data).dont_frag() {
            return;
        }
        self.icmp_error_packet(in_if, pkt, IcmpError::TooBig(mtu), pool)
    }

    fn any_v4(&self) -> Option<Ipv4Addr> {
        self.ifaces.iter().find_map(Interface::addr_v4)
    }

    fn any_v6(&self) -> Option<Ipv6Addr> {
        self.ifaces.iter().find_map(Interface::addr_v6)
    }
}

/// Which ICMP error to send.
#[derive(Debug, Clone, Copy)]
enum IcmpError {
    TimeExceeded,
    TooBig(u16),
}

/// The SPI of a located ESP packet.
fn esp_spi(data: &[u8], loc: &Result<EspLocation, DropReason>) -> Option<u32> {
    let Ok(EspLocation::Esp { esp_offset, .. }) = loc else {
        return None;
    };
    let b = data.get(*esp_offset..*esp_offset + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An IPv4 packet without DF, which a router may fragment.
fn may_fragment(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] >> 4 == 4 && data[6] & 0x40 == 0
}

/// Splits an IPv4 packet into fragments of at most `max_len` bytes (RFC 791
/// §3.2), each in a new buffer from `pool`. RFC 791 copies only options with
/// the copy flag into later fragments; rather than parse options, a packet
/// that has any is refused (None, dropped as too big).
fn fragment_v4<B: PacketBuf>(
    pkt: &B,
    max_len: usize,
    pool: &mut impl PacketPool<B>,
) -> Option<Vec<B>> {
    let data = pkt.data();
    let ip = Ipv4Packet::new_checked(data).ok()?;
    if ip.header_len() != 20 {
        return None;
    }
    let total = usize::from(ip.total_len());
    let chunk = (max_len.checked_sub(20)? / 8) * 8;
    if chunk == 0 {
        return None;
    }
    let base_offset = ip.frag_offset() as usize; // bytes
    let more = ip.more_frags();
    let payload = &data[20..total];
    let mut out = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let mut f = pool.alloc()?;
        let buf = f.append(20 + piece.len()).ok()?;
        buf[..20].copy_from_slice(&data[..20]);
        buf[20..].copy_from_slice(piece);
        let last = (i + 1) * chunk >= payload.len();
        let mut h = Ipv4Packet::new_unchecked(&mut buf[..20]);
        h.set_total_len((20 + piece.len()) as u16);
        h.set_frag_offset((base_offset + i * chunk) as u16);
        h.set_more_frags(more || !last);
        h.fill_checksum();
        out.push(f);
    }
    Some(out)
}

/// The largest inner length `l` with `outer(l) <= mtu`.
fn largest_fitting(mtu: usize, outer: impl Fn(usize) -> usize) -> usize {
    let mut l = mtu;
    while l > 0 && outer(l) > mtu {
        l -= 1;
    }
    l
}

/// A link-layer address one station has: not a group, not zero.
fn unicast_mac(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != [0; 6]
}

fn write_eth(h: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: EtherType) {
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
}

/// Writes an IPv6 packet carrying `msg` into `pkt` (replacing its data).
fn write_icmpv6<B: PacketBuf>(
    pkt: &mut B,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    msg: &Icmpv6Repr<'_>,
) -> Result<(), ()> {
    let len = msg.buffer_len();
    let cur = pkt.len();
    pkt.trim(cur).map_err(|_| ())?;
    let buf = pkt.append(40 + len).map_err(|_| ())?;
    buf[..40].fill(0);
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[..40]);
    ip.set_version(6);
    ip.set_payload_len(len as u16);
    ip.set_next_header(IpProtocol::ICMPV6);
    ip.set_hop_limit(hop_limit);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[40..]);
    msg.emit(src, dst, &mut icmp).map_err(|_| ())
}

/// Destination, upper-layer protocol and its offset of an IP packet.
fn ip_summary(data: &[u8]) -> Option<(IpAddr, IpProtocol, usize)> {
    match data.first()? >> 4 {
        4 if data[0] == 0x45 => {
            let h = crate::wire::Ipv4Fixed::parse(data)?;
            h.checksum_ok()
                .then(|| (IpAddr::V4(h.dst_addr()), h.protocol(), 20))
        }
        4 => {
            let ip = Ipv4Packet::new_checked(data).ok()?;
            if !ip.verify_checksum() {
                return None;
            }
            Some((
                IpAddr::V4(ip.dst_addr()),
                ip.protocol(),
                usize::from(ip.header_len()),
            ))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(data).ok()?;
            let ext = ip.ext_headers().ok()?;
            Some((
                IpAddr::V6(ip.dst_addr()),
                ext.upper_protocol,
                ext.upper_offset,
            ))
        }
        _ => None,
    }
}
