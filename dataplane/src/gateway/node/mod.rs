//! The forwarding pipeline of one worker.
//!
//! A burst enters with [`Node::rx_burst`] (a single frame with
//! [`Node::rx`]); each frame is classified once ([`PacketMeta`]) and then
//! processed. It leaves through the [`Output`] the caller takes with
//! [`Node::take_output`]: the per-interface transmit lists, the hand-off
//! list (to the worker that owns the packet's SA), the punts (IKE for the
//! control thread); or it is dropped and counted by reason. Generic over
//! the buffer so the same code runs on mbufs and in tests on heap buffers.
//!
//! The code is split by protocol: `classify` (the one parse of each
//! frame), `arp` and `nd` (neighbours), `icmp` (echo, errors and their
//! rate limit), `forward` (SPD for transit, TTL, MTU, fragmentation, MSS,
//! routing, transmit), `esp` (protect, decapsulate, hand-off) and `local`
//! (IKE punt, packets the gateway originates).
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
    Icmpv4Repr, Icmpv4Type, Icmpv6Packet, Icmpv6Repr, Icmpv6Type, IpProtocol, IpVersion,
    Ipv4Packet, Ipv6Packet, TcpPacket,
};

use super::msg::{Handoff, HandoffKind, Spares};
use super::neigh::{Claim, Claimed, NeighbourTable, Refused, Resolve, SolicitLog};

mod arp;
mod classify;
mod esp;
mod forward;
mod icmp;
mod local;
mod nd;

use classify::Frame;
pub use classify::PacketMeta;
use esp::{Adjacency, SlotLine, ADJACENCY_SETS};
use forward::{fragment_v4, largest_fitting, may_fragment};
use icmp::IcmpLimit;
use nd::write_icmpv6;

const ETH_LEN: usize = 14;
const IKE_PORT: u16 = 500;
const NAT_T_PORT: u16 = 4500;
/// At most this many SAs (outbound slots plus inbound SAs), the node does
/// not prefetch ahead (the prefetch pass of [`Node::rx_burst`]): 256 SAs
/// with their key schedules (about 1.7 KB each) fit in the core's 2 MB L2. Measured with
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

/// What a node produced for the world outside it: frames to send, packets
/// for other workers, and what the control thread wants to hear. The
/// caller owns one and passes it to [`Node::take_output`] after each poll;
/// its buffers go back and forth, so nothing is allocated per poll.
#[derive(Debug)]
pub struct Output<B> {
    /// Frames to send, per interface index (Ethernet header included).
    pub tx: Vec<Vec<B>>,
    /// Packets for other workers: (worker, packet).
    pub handoffs: Vec<(u16, Handoff<B>)>,
    /// IKE packets for the control thread: (interface, IP packet).
    pub punts: Vec<(u16, Vec<u8>)>,
    /// Neighbours confirmed since the last poll (at most `LEARNED_MAX`),
    /// for the other workers.
    pub learned: Vec<(IpAddr, [u8; 6], u16)>,
    /// SA events since the last poll.
    pub events: Vec<EngineEvent>,
}

impl<B> Output<B> {
    /// Empty output for a node with `interfaces` interfaces.
    pub fn new(interfaces: usize) -> Self {
        Self {
            tx: (0..interfaces).map(|_| Vec::with_capacity(256)).collect(),
            handoffs: Vec::with_capacity(64),
            punts: Vec::new(),
            learned: Vec::with_capacity(LEARNED_MAX),
            events: Vec::with_capacity(16),
        }
    }

    /// Nothing to send or pass on.
    pub fn is_empty(&self) -> bool {
        self.tx.iter().all(Vec::is_empty)
            && self.handoffs.is_empty()
            && self.punts.is_empty()
            && self.learned.is_empty()
            && self.events.is_empty()
    }

    /// Moves everything in `self` to the end of `into`; an empty list of
    /// `into` trades buffers instead of copying.
    fn move_into(&mut self, into: &mut Output<B>) {
        fn give<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
            if to.is_empty() {
                std::mem::swap(from, to);
            } else {
                to.append(from);
            }
        }
        if into.tx.len() < self.tx.len() {
            into.tx.resize_with(self.tx.len(), Vec::new);
        }
        for (from, to) in self.tx.iter_mut().zip(&mut into.tx) {
            give(from, to);
        }
        give(&mut self.handoffs, &mut into.handoffs);
        give(&mut self.punts, &mut into.punts);
        give(&mut self.learned, &mut into.learned);
        give(&mut self.events, &mut into.events);
    }
}

/// One worker's forwarding state and pipeline.
pub struct Node<B> {
    /// Worker index.
    pub id: u16,
    ifaces: Vec<Interface>,
    /// Every interface's addresses in one list: whether a packet is for
    /// us is asked of every packet, and one flat scan is cheaper than
    /// the walk of each interface's list.
    local_addrs: Vec<IpAddr>,
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
    /// Where decapsulated packets leave, by inner destination (see
    /// [`Adjacency`]); validated like `slots`' egress.
    adjacency: Box<[Option<Adjacency>; ADJACENCY_SETS]>,
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
    /// What the node produced since the caller last took it.
    out: Output<B>,
    /// The classify pass's results for the burst in hand, filled in place
    /// (kept to reuse the allocation).
    frames: Vec<(Frame, PacketMeta)>,
    /// While a burst is processed ([`Node::rx_burst`],
    /// [`Node::handoffs_in`]): the packets of SAs whose transform batches
    /// (ipsec-mb's CBC/NULL with HMAC) are prepared and deferred, and their
    /// crypto runs in one batch at the end of the burst.
    batching: bool,
    /// The deferred packets, in arrival order.
    deferred: Vec<esp::Deferred<B>>,
    /// `deferred` reached the batch's capacity: run it before the next
    /// packet.
    batch_full: bool,
    /// The batch's storage and its results (reused).
    batch: crate::crypto::BatchStore,
    batch_results: Vec<Result<(), crate::crypto::CryptoError>>,
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
        let local_addrs = ifaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(IpNet::addr))
            .collect();
        Self {
            id,
            ifaces,
            local_addrs,
            routes,
            neigh: NeighbourTable::new(),
            solicits: Arc::new(SolicitLog::new()),
            engine: EspEngine::new(),
            slot_owner: SlotVec::new(),
            slots: Chunked::new(),
            egress_epoch: 0,
            adjacency: Box::new([None; ADJACENCY_SETS]),
            spi_owner: SpiMap::new(),
            foreign_spis: 0,
            pending: Vec::with_capacity(PENDING_MAX),
            now_ms: 0,
            icmp_limit: IcmpLimit::new(ICMP_ERRORS_PER_SECOND, ICMP_ERROR_BURST),
            counters: NodeCounters::default(),
            out: Output::new(n),
            frames: vec![(Frame::Arp, PacketMeta::EMPTY); crate::BURST_SIZE],
            batching: false,
            deferred: Vec::with_capacity(crate::crypto::BATCH_CAPACITY),
            batch_full: false,
            batch: crate::crypto::BatchStore::default(),
            batch_results: Vec::with_capacity(crate::crypto::BATCH_CAPACITY),
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

    // ---- the pipeline ----

    fn drop_gw(&mut self, reason: GwDrop) {
        self.counters.drops[reason.index()] += 1;
    }

    fn drop_esp(&mut self, reason: DropReason) {
        self.counters.esp_drops[reason.index()] += 1;
    }

    /// A burst of frames received on interface `in_if` (`pkts` is left
    /// empty). Each frame is classified once ([`PacketMeta`]) and then
    /// processed with what the classify pass found. With many SAs the
    /// burst goes in three passes, as DPDK's lib/ipsec and VPP run a burst:
    /// classify every frame, dropping the ones that fail there so that the
    /// later passes see only the good ones; start the cache misses of the
    /// SAs they need (`Node::prefetch`); then process each. Below
    /// [`PREFETCH_MIN_SAS`] nothing needs the whole burst's metadata at
    /// once, so each frame is classified and processed in turn, its
    /// [`PacketMeta`] on the stack: staging the burst's metadata in an
    /// array cost more instructions than it saved (written for every frame
    /// and read back a pass later).
    ///
    /// The crypto of SAs whose transform batches (ipsec-mb's CBC/NULL with
    /// HMAC, [`EspTransform::batch_keys`](crate::crypto::EspTransform::batch_keys))
    /// is deferred: each such packet is prepared in turn (headers, padding,
    /// IV, sequence number; or the checks before the ICV), then the whole
    /// burst's crypto runs in one batch, and each packet is finished in the
    /// order it came (outer headers and send; or the replay window, the
    /// rest of decapsulation and the delivery). The AEADs are processed
    /// one packet at a time, as they come.
    pub fn rx_burst(&mut self, in_if: u16, pkts: &mut Vec<B>, pool: &mut impl PacketPool<B>) {
        self.counters.rx += pkts.len() as u64;
        self.batching = true;
        if self.engine.sa_count() > PREFETCH_MIN_SAS {
            self.rx_burst_prefetched(in_if, pkts, pool);
        } else {
            // One `PacketMeta` for the whole burst: the classify pass
            // writes every field a later step reads (the selectors with
            // the tag that says they are there), so nothing of the
            // previous frame shows.
            let mut meta = PacketMeta::EMPTY;
            for pkt in pkts.drain(..) {
                self.rx_frame(in_if, pkt, &mut meta, pool);
                if self.batch_full {
                    self.run_deferred(pool);
                }
            }
        }
        self.run_deferred(pool);
        self.batching = false;
    }

    /// [`Self::rx_burst`] with the prefetch pass between classifying and
    /// processing.
    #[inline(never)]
    fn rx_burst_prefetched(
        &mut self,
        in_if: u16,
        pkts: &mut Vec<B>,
        pool: &mut impl PacketPool<B>,
    ) {
        let mut frames = std::mem::take(&mut self.frames);
        if frames.len() < pkts.len() {
            frames.resize(pkts.len(), (Frame::Arp, PacketMeta::EMPTY));
        }
        let mut drops = [0u64; GwDrop::COUNT];
        let mut n = 0;
        pkts.retain(|p| {
            let (kind, meta) = &mut frames[n];
            match self.classify(in_if, p.data(), meta) {
                Ok(k) => {
                    *kind = k;
                    n += 1;
                    true
                }
                Err(r) => {
                    drops[r.index()] += 1;
                    false
                }
            }
        });
        for (c, d) in self.counters.drops.iter_mut().zip(drops) {
            *c += d;
        }
        self.prefetch(in_if, pkts, &frames[..n]);
        for (pkt, (kind, meta)) in pkts.drain(..).zip(&frames) {
            self.input(in_if, pkt, *kind, meta, pool);
            if self.batch_full {
                self.run_deferred(pool);
            }
        }
        self.frames = frames;
    }

    /// A frame received on interface `in_if`: [`Self::rx_burst`] for a
    /// burst of one, without the prefetch pass.
    pub fn rx(&mut self, in_if: u16, pkt: B, pool: &mut impl PacketPool<B>) {
        self.counters.rx += 1;
        let mut meta = PacketMeta::EMPTY;
        self.rx_frame(in_if, pkt, &mut meta, pool)
    }

    /// Classifies one frame into `meta` and processes it (not counted in
    /// `rx` here).
    #[inline(always)]
    fn rx_frame(
        &mut self,
        in_if: u16,
        pkt: B,
        meta: &mut PacketMeta,
        pool: &mut impl PacketPool<B>,
    ) {
        match self.classify(in_if, pkt.data(), meta) {
            Ok(kind) => self.input(in_if, pkt, kind, meta, pool),
            Err(r) => self.drop_gw(r),
        }
    }

    /// Starts the cache misses of a classified burst before it is
    /// processed, so that with many SAs they overlap instead of stalling
    /// each packet in turn. Each pass over the burst issues the prefetches
    /// whose addresses the previous pass brought in. Plaintext from a LAN:
    /// the flow-cache set; then the cached decision's SA table entry and
    /// the node's line for the slot (egress and [`SaHint`]); then from the
    /// hint the SA's hot lines, its transform and key schedule. ESP from
    /// the WAN: the SA found by SPI; then from the hint recorded in it, its
    /// transform and key schedule. Only hints: nothing changes, so a wrong
    /// guess (a signature that matches another flow) costs a useless
    /// prefetch, never a wrong packet.
    ///
    /// Run only while the node has more than [`PREFETCH_MIN_SAS`] SAs:
    /// below, their data stays in the core's caches and the passes would
    /// cost more than they save.
    fn prefetch(&self, in_if: u16, pkts: &[B], frames: &[(Frame, PacketMeta)]) {
        const N: usize = crate::BURST_SIZE;
        let Some(iface) = self.ifaces.get(usize::from(in_if)) else {
            return;
        };
        let n = pkts.len().min(frames.len()).min(N);
        fn meta(f: &(Frame, PacketMeta)) -> Option<&PacketMeta> {
            (f.0 == Frame::Ip).then_some(&f.1)
        }
        if iface.role == Role::Wan {
            // Three rounds, each starting the misses the next one reads:
            // SPI table slots, then the SAs' hot lines, then their key
            // schedules and replay blocks.
            let inbound = self.engine.inbound();
            let mut spis: [Option<Spi>; N] = [None; N];
            for (s, f) in spis.iter_mut().zip(&frames[..n]) {
                *s = meta(f)
                    .and_then(|m| m.spi)
                    .and_then(|spi| Spi::new(spi).ok());
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
            for (h, f) in hints.iter_mut().zip(&frames[..n]) {
                if let Some(k) = meta(f).and_then(PacketMeta::selectors) {
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

    /// Processes a classified frame.
    #[inline(always)]
    fn input(
        &mut self,
        in_if: u16,
        mut pkt: B,
        kind: Frame,
        meta: &PacketMeta,
        pool: &mut impl PacketPool<B>,
    ) {
        match kind {
            Frame::Arp => self.arp_input(in_if, pkt),
            Frame::Ip => {
                if pkt.adj(ETH_LEN).is_err() {
                    return self.drop_gw(GwDrop::BadFrame);
                }
                self.ip_input(in_if, pkt, meta, pool)
            }
        }
    }

    /// An IP packet (link-layer header removed) received on `in_if`.
    #[inline(always)]
    fn ip_input(&mut self, in_if: u16, pkt: B, meta: &PacketMeta, pool: &mut impl PacketPool<B>) {
        let dst = meta.dst();
        let ndp_multicast = matches!(dst, IpAddr::V6(a) if a.segments()[0] == 0xff02);
        if self.is_local(dst) || (ndp_multicast && meta.proto == IpProtocol::ICMPV6) {
            self.local_input(in_if, pkt, meta, pool)
        } else {
            self.transit_input(in_if, pkt, meta, pool)
        }
    }

    /// Moves what the node produced since the last call into `out`, which
    /// the caller then sends and passes on (emptying it, so that its
    /// buffers come back for the next poll).
    pub fn take_output(&mut self, out: &mut Output<B>) {
        self.out.move_into(out);
    }

    /// Counts `n` packets the caller dropped for `reason` after
    /// [`take_output`](Self::take_output) (a full transmit or hand-off
    /// queue).
    pub fn count_drops(&mut self, reason: GwDrop, n: u64) {
        self.counters.drops[reason.index()] += n;
    }

    /// What the node produced since the last
    /// [`take_output`](Self::take_output), for tests to look at in place.
    #[cfg(test)]
    pub(crate) fn out(&mut self) -> &mut Output<B> {
        &mut self.out
    }

    /// Frees everything queued (at stop); returns how many.
    pub fn drain(&mut self) -> u64 {
        let n = self.pending.len()
            + self.out.tx.iter().map(Vec::len).sum::<usize>()
            + self.out.handoffs.len();
        self.pending.clear();
        self.deferred.clear();
        self.out.tx.iter_mut().for_each(Vec::clear);
        self.out.handoffs.clear();
        n as u64
    }
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
