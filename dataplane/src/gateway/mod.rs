//! The gateway's data path: what a worker does with each frame.
//!
//! - [`node`]: the forwarding pipeline, generic over the packet buffer so
//!   it runs on mbufs in workers and on heap buffers in tests: classify
//!   (ARP, neighbour discovery, ICMP echo, IKE punt, ESP inbound, plaintext
//!   to protect, bypass, discard), the ESP engine, routing, neighbour
//!   resolution, ICMP errors (TTL, PMTU) and TCP MSS clamping.
//! - [`neigh`]: the neighbour table (ARP / IPv6 ND cache).
//! - [`msg`]: the messages between the control thread and the workers.
//! - [`queues`]: the separate queues from the workers to the control
//!   thread.
//!
//! The poll-mode worker that runs the node over DPDK queues is
//! `espresso-dpdk`'s `Worker`.
#![forbid(unsafe_code)]

mod apply;
pub mod msg;
pub mod neigh;
pub mod node;
pub mod queues;

#[cfg(test)]
mod tests;

pub use msg::{
    ControlMsg, Handoff, MsgKind, PollProfile, Retired, Spares, WorkerMsg, WorkerStats,
    POLL_GAP_BUCKETS,
};
pub use neigh::{NeighbourTable, SolicitLog};
pub use node::{
    GwDrop, Interface, Node, NodeCounters, Output, PacketMeta, PacketPool, Role,
    ICMP_ERRORS_PER_SECOND, ICMP_ERROR_BURST,
};
pub use queues::{
    control_queues, FromWorkers, IkeSpiTables, KnownIkeSpis, Next, QueueDrops, ToControl, Turn,
    HALF_OPEN_IKE_PER_TURN, UNAUTH_IKE_PER_TURN,
};
