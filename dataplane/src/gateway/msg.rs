//! Messages between the control thread and the workers, carried on bounded
//! crossbeam queues. Workers drain theirs between bursts (a bounded number
//! per poll, so a flood of changes never stalls forwarding for more than a
//! burst); nothing here is exchanged per packet except punts.

use std::net::IpAddr;

use crossbeam::channel::Sender;

use crate::esp::spi_map::SpareTable;
use crate::esp::{
    EngineEvent, EspLocation, InboundSa, OutboundSa, SaCounters, SaRef, Spd, Spi, WorkerCounters,
};
use crate::route::RouteTable;

use super::node::NodeCounters;

/// Control thread → worker.
#[derive(Debug)]
pub enum ControlMsg {
    /// Install (or replace) the SA of outbound slot `slot` on this worker,
    /// which becomes its owner.
    InstallOutbound {
        /// The SPD slot.
        slot: SaRef,
        /// The SA.
        sa: Box<OutboundSa>,
    },
    /// Remove the SA of an outbound slot.
    RemoveOutbound {
        /// The SPD slot.
        slot: SaRef,
    },
    /// Install (or replace) an inbound SA on this worker (its owner).
    InstallInbound(Box<InboundSa>),
    /// Remove an inbound SA.
    RemoveInbound(Spi),
    /// Which worker owns outbound slot `slot` (None: nobody, drop).
    OutboundOwner {
        /// The SPD slot.
        slot: SaRef,
        /// The owning worker.
        worker: Option<u16>,
    },
    /// Which worker owns inbound SPI `spi` (None: nobody).
    InboundOwner {
        /// The SPI.
        spi: Spi,
        /// The owning worker.
        worker: Option<u16>,
    },
    /// Replace the SPD.
    SetSpd(Box<Spd>),
    /// Replace the routing table.
    SetRoutes(Box<RouteTable>),
    /// Replace the static neighbours (`(address, link-layer address,
    /// interface)`): those not listed go, the listed ones are set.
    SetStaticNeighbours(Vec<(IpAddr, [u8; 6], u16)>),
    /// Replace the ICMP error rate limit (per second, burst).
    SetIcmpRateLimit {
        /// Errors per second (0: none).
        per_second: u32,
        /// Bucket size.
        burst: u32,
    },
    /// Tables for the next growths of the worker's SPI maps, built here
    /// because faulting in their pages would stall forwarding (the answer
    /// to [`WorkerMsg::WantSpares`]).
    Spares(Box<Spares>),
    /// A worker's request for a neighbour was answered (on the worker
    /// that received the answer): taken as an answer to a request of ours.
    Neighbour {
        /// Address.
        ip: IpAddr,
        /// Link-layer address.
        mac: [u8; 6],
        /// Interface index.
        iface: u16,
    },
    /// Resolve the next hop towards `ip` afresh: the peer at `ip` stopped
    /// answering, and a wrong neighbour entry would be why.
    Reresolve {
        /// The unresponsive address.
        ip: IpAddr,
    },
    /// Send this IP packet (from the control plane, e.g. IKE): routed and
    /// resolved like forwarded traffic, without a TTL decrement.
    Transmit(Vec<u8>),
    /// Reply with a statistics snapshot.
    CollectStats(Sender<WorkerStats>),
    /// Reply with the worker's counters only: no per-SA lists, so the
    /// snapshot costs the same with a million SAs as with one (a full
    /// `CollectStats` walks and formats every SA on the worker).
    CollectCounters(Sender<WorkerStats>),
    /// Start measuring the longest gap between two polls and the longest
    /// control-message work of one poll afresh (the benchmark lab does at
    /// the start of a measurement window).
    ResetMaxPollGap,
    /// Start receiving: a worker built to hold its RX queues (`espresso
    /// run`'s, until its starting SPD and SAs are applied) polls them from
    /// now on.
    StartForwarding,
    /// Stop polling, free every mbuf, reply with final statistics.
    Stop,
}

impl ControlMsg {
    /// What kind of message this is (for the worker's timing of each).
    pub fn kind(&self) -> MsgKind {
        match self {
            Self::InstallOutbound { .. } => MsgKind::InstallOutbound,
            Self::RemoveOutbound { .. } => MsgKind::RemoveOutbound,
            Self::InstallInbound(_) => MsgKind::InstallInbound,
            Self::RemoveInbound(_) => MsgKind::RemoveInbound,
            Self::OutboundOwner { .. } => MsgKind::OutboundOwner,
            Self::InboundOwner { .. } => MsgKind::InboundOwner,
            Self::SetSpd(_) => MsgKind::SetSpd,
            Self::SetRoutes(_) => MsgKind::SetRoutes,
            Self::SetStaticNeighbours(_) => MsgKind::SetStaticNeighbours,
            Self::SetIcmpRateLimit { .. } => MsgKind::SetIcmpRateLimit,
            Self::Spares(_) => MsgKind::Spares,
            Self::Neighbour { .. } => MsgKind::Neighbour,
            Self::Reresolve { .. } => MsgKind::Reresolve,
            Self::Transmit(_) => MsgKind::Transmit,
            Self::CollectStats(_) => MsgKind::CollectStats,
            Self::CollectCounters(_) => MsgKind::CollectCounters,
            Self::ResetMaxPollGap => MsgKind::ResetMaxPollGap,
            Self::StartForwarding => MsgKind::StartForwarding,
            Self::Stop => MsgKind::Stop,
        }
    }
}

/// The kinds of [`ControlMsg`], plus the worker's own table maintenance
/// between bursts (`Step`), as indices of [`WorkerStats::max_msg_us`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgKind {
    /// [`ControlMsg::InstallOutbound`].
    InstallOutbound,
    /// [`ControlMsg::RemoveOutbound`].
    RemoveOutbound,
    /// [`ControlMsg::InstallInbound`].
    InstallInbound,
    /// [`ControlMsg::RemoveInbound`].
    RemoveInbound,
    /// [`ControlMsg::OutboundOwner`].
    OutboundOwner,
    /// [`ControlMsg::InboundOwner`].
    InboundOwner,
    /// [`ControlMsg::SetSpd`].
    SetSpd,
    /// [`ControlMsg::SetRoutes`].
    SetRoutes,
    /// [`ControlMsg::SetStaticNeighbours`].
    SetStaticNeighbours,
    /// [`ControlMsg::SetIcmpRateLimit`].
    SetIcmpRateLimit,
    /// [`ControlMsg::Spares`].
    Spares,
    /// [`ControlMsg::Neighbour`].
    Neighbour,
    /// [`ControlMsg::Reresolve`].
    Reresolve,
    /// [`ControlMsg::Transmit`].
    Transmit,
    /// [`ControlMsg::CollectStats`].
    CollectStats,
    /// [`ControlMsg::CollectCounters`].
    CollectCounters,
    /// [`ControlMsg::ResetMaxPollGap`].
    ResetMaxPollGap,
    /// [`ControlMsg::StartForwarding`].
    StartForwarding,
    /// [`ControlMsg::Stop`].
    Stop,
    /// Not a message: the bounded table maintenance of each poll
    /// (`Node::step`).
    Step,
}

impl MsgKind {
    /// Number of kinds.
    pub const COUNT: usize = 20;
    /// Every kind, in index order.
    pub const ALL: [MsgKind; Self::COUNT] = [
        Self::InstallOutbound,
        Self::RemoveOutbound,
        Self::InstallInbound,
        Self::RemoveInbound,
        Self::OutboundOwner,
        Self::InboundOwner,
        Self::SetSpd,
        Self::SetRoutes,
        Self::SetStaticNeighbours,
        Self::SetIcmpRateLimit,
        Self::Spares,
        Self::Neighbour,
        Self::Reresolve,
        Self::Transmit,
        Self::CollectStats,
        Self::CollectCounters,
        Self::ResetMaxPollGap,
        Self::StartForwarding,
        Self::Stop,
        Self::Step,
    ];

    /// Index into per-kind arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name, as in the message enum.
    pub fn name(self) -> &'static str {
        match self {
            Self::InstallOutbound => "InstallOutbound",
            Self::RemoveOutbound => "RemoveOutbound",
            Self::InstallInbound => "InstallInbound",
            Self::RemoveInbound => "RemoveInbound",
            Self::OutboundOwner => "OutboundOwner",
            Self::InboundOwner => "InboundOwner",
            Self::SetSpd => "SetSpd",
            Self::SetRoutes => "SetRoutes",
            Self::SetStaticNeighbours => "SetStaticNeighbours",
            Self::SetIcmpRateLimit => "SetIcmpRateLimit",
            Self::Spares => "Spares",
            Self::Neighbour => "Neighbour",
            Self::Reresolve => "Reresolve",
            Self::Transmit => "Transmit",
            Self::CollectStats => "CollectStats",
            Self::CollectCounters => "CollectCounters",
            Self::ResetMaxPollGap => "ResetMaxPollGap",
            Self::StartForwarding => "StartForwarding",
            Self::Stop => "Stop",
            Self::Step => "Step",
        }
    }
}

/// Buckets of [`WorkerStats::poll_gaps`]: bucket 0 counts gaps under
/// 1 µs, bucket `i` gaps of `2^(i-1)` to `2^i - 1` µs, the last everything
/// longer.
pub const POLL_GAP_BUCKETS: usize = 16;

/// Where the time went in the poll that preceded the longest poll gap
/// (wall clock, µs; the parts add up to the gap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollProfile {
    /// The gap: from the start of that poll to the start of the next.
    pub gap_us: u64,
    /// Applying control messages and the table maintenance step.
    pub control_us: u64,
    /// Control messages applied in that poll.
    pub messages: u32,
    /// The most expensive of them (or `Step`), if any.
    pub slowest: Option<MsgKind>,
    /// What it took (µs).
    pub slowest_us: u64,
    /// Receiving and processing frames (and handed-off packets).
    pub forward_us: u64,
    /// Transmitting and passing punts and events on.
    pub flush_us: u64,
    /// The rest: the end of the loop (idle work, a sleep) until the next
    /// poll started.
    pub rest_us: u64,
}

/// Worker → control thread.
#[derive(Debug)]
pub enum WorkerMsg {
    /// An IKE datagram (UDP 500, or 4500 with the zero non-ESP marker),
    /// as the whole IP packet.
    Punt {
        /// Worker that received it.
        worker: u16,
        /// Interface index it arrived on.
        iface: u16,
        /// The IP packet.
        packet: Vec<u8>,
    },
    /// A neighbour answered a request of ours (to be spread to every
    /// worker: the one that asked may not be the one that got the answer).
    NeighbourLearned {
        /// Address.
        ip: IpAddr,
        /// Link-layer address.
        mac: [u8; 6],
        /// Interface index.
        iface: u16,
    },
    /// An SA event (lifetime, sequence overflow).
    Event {
        /// The worker.
        worker: u16,
        /// The event.
        event: EngineEvent,
    },
    /// Something the worker replaced and no longer uses, for the control
    /// thread to free: freeing it on the worker would stall forwarding.
    Retired(Retired),
    /// An SPI map of this worker is half full: build tables of these
    /// capacities (with [`Spares::build`]) and send them back as
    /// [`ControlMsg::Spares`].
    WantSpares {
        /// The worker.
        worker: u16,
        /// For the inbound SA table.
        inbound: Option<usize>,
        /// For the inbound SPI owner table.
        owners: Option<usize>,
    },
}

/// Empty tables for a worker's SPI maps (see [`crate::esp::SpiMap::wants_spare`]):
/// on their way to the worker for its next growths, or emptied by a
/// growth on their way back to be freed.
#[derive(Debug, Default)]
pub struct Spares {
    /// For the inbound SA table.
    pub inbound: Option<SpareTable<Option<Box<InboundSa>>>>,
    /// For the inbound SPI owner table.
    pub owners: Option<SpareTable<u16>>,
}

impl Spares {
    /// Builds what a [`WorkerMsg::WantSpares`] asks for (on the control
    /// thread).
    pub fn build(inbound: Option<usize>, owners: Option<usize>) -> Self {
        Self {
            inbound: inbound.map(SpareTable::prefaulted),
            owners: owners.map(SpareTable::prefaulted),
        }
    }

    /// True when it holds no table.
    pub fn is_empty(&self) -> bool {
        self.inbound.is_none() && self.owners.is_none()
    }
}

/// What a worker hands back to be freed off the data path. Besides the
/// time, freeing memory the control thread allocated takes glibc's lock of
/// the control thread's malloc arena, which the control thread holds while
/// it builds SAs: measured with `perf record -e sched:sched_switch`, a
/// worker freeing installed and removed SAs blocked in
/// `__lll_lock_wait_private` for up to 160 ms at a time.
#[derive(Debug)]
pub enum Retired {
    /// The SPD a `SetSpd` replaced (one heap block per selector pair:
    /// with 100,000 policies, freeing it takes milliseconds).
    Spd(Box<Spd>),
    /// An outbound SA removed or replaced.
    Outbound(Box<OutboundSa>),
    /// An inbound SA removed or replaced.
    Inbound(Box<InboundSa>),
    /// Tables emptied by a growth (or spares that came too late).
    Tables(Box<Spares>),
}

/// A packet handed from one worker to the owner of its SA, so that every
/// sequence counter and replay window has exactly one writer.
#[derive(Debug)]
pub struct Handoff<B> {
    /// The packet (IP header first).
    pub packet: B,
    /// The interface it arrived on.
    pub in_iface: u16,
    /// Outbound (to encapsulate with `slot`) or inbound (to decapsulate).
    pub kind: HandoffKind,
}

/// What the owner should do with a handed-off packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffKind {
    /// Encapsulate with the SA of this slot.
    Outbound(SaRef),
    /// Encapsulate a packet the sending worker originated (an ICMP error,
    /// an echo reply) with the SA of this slot: no TTL decrement, no ICMP
    /// error about it.
    Local(SaRef),
    /// Decapsulate; the ESP header is where the sending worker's classify
    /// pass found it.
    Inbound(EspLocation),
}

/// Per-SA counters in a statistics snapshot.
#[derive(Debug, Clone)]
pub struct SaStats {
    /// SPI.
    pub spi: Spi,
    /// Outbound slot, for outbound SAs.
    pub slot: Option<SaRef>,
    /// Algorithm and backend, for display.
    pub algorithm: String,
    /// Counters.
    pub counters: SaCounters,
    /// Last sequence number sent (outbound) or highest accepted (inbound).
    pub seq: u64,
}

/// A worker's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: u16,
    /// Gateway-level counters (forwarding, host, drops by reason).
    pub node: NodeCounters,
    /// Messages the queues to the control thread had no room for.
    pub queue_drops: super::queues::QueueDrops,
    /// ESP counters of the worker as a whole.
    pub esp: WorkerCounters,
    /// Drops not attributable to an SA, inbound (unknown SPI, ...).
    pub inbound_unattributed: SaCounters,
    /// Drops not attributable to an SA, outbound (no policy, ...).
    pub outbound_unattributed: SaCounters,
    /// Outbound SAs owned by this worker.
    pub outbound: Vec<SaStats>,
    /// Inbound SAs owned by this worker.
    pub inbound: Vec<SaStats>,
    /// Longest time between two polls, in microseconds.
    pub max_poll_gap_us: u64,
    /// Longest time one poll spent applying control messages (at most
    /// 64), in microseconds (wall clock): the part of a poll gap that
    /// reconfiguration causes.
    pub max_control_us: u64,
    /// The same in on-CPU time of the worker thread: what the messages
    /// cost, whatever else the machine runs.
    pub max_control_cpu_us: u64,
    /// The longest poll gap taken apart (see [`PollProfile`]).
    pub slowest_poll: PollProfile,
    /// The poll whose control work took the most CPU
    /// (`max_control_cpu_us`): its messages and the slowest of them on
    /// the wall clock (`gap_us` and the rest unset).
    pub costliest_control: PollProfile,
    /// Longest time one message of each kind took to apply (µs, wall
    /// clock), by [`MsgKind::index`].
    pub max_msg_us: [u64; MsgKind::COUNT],
    /// Poll gaps by length (see [`POLL_GAP_BUCKETS`]).
    pub poll_gaps: [u64; POLL_GAP_BUCKETS],
    /// SPD lookups answered by the flow cache / by the SPD itself.
    pub spd_cache_hits: u64,
    /// See `spd_cache_hits`.
    pub spd_cache_misses: u64,
    /// Mbufs freed at stop (pending and handoff queues drained).
    pub freed_at_stop: u64,
}
