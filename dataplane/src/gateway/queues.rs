//! The queues from the workers to the control thread.
//!
//! Anyone on the WAN can send UDP to port 500, and every such datagram is
//! punted to the control thread. With one shared queue, a flood of
//! spoofed IKE_SA_INITs filled it and took the SA lifetime events (which
//! drive rekeys), learned neighbours and the established IKE SAs' own
//! exchanges down with it. So each kind has its own bounded queue:
//! - `events`: SA events and the workers' housekeeping (spare tables,
//!   retired objects, final statistics);
//! - `neighbours`: learned ARP/ND entries;
//! - `ike`: IKE datagrams whose SPI is one of our authenticated IKE SAs
//!   ([`KnownIkeSpis`], kept by the control thread);
//! - `ike_half_open`: IKE datagrams naming the responder SPI of one of our
//!   half-open IKE SAs (a second [`KnownIkeSpis`], sized by the half-open
//!   limit): in practice the initiator's IKE_AUTH;
//! - `ike_new`: every other IKE datagram (IKE_SA_INIT, unknown SPIs),
//!   which the control thread serves last and with a budget per poll.
//!
//! A full queue drops only its own kind, counted by reason in
//! [`QueueDrops`] (the unauthenticated IKE queue in
//! [`GwDrop::PuntFull`](super::GwDrop::PuntFull)).
//!
//! Why half-open SAs get a class of their own: a spoofed IKE_SA_INIT flood
//! keeps `ike_new` full, and a full queue refuses a legitimate datagram as
//! often as a spoofed one. An initiator that got through IKE_SA_INIT then
//! lost its IKE_AUTH there as well, and with it the Diffie-Hellman work
//! both sides had spent. Its IKE_AUTH names the responder SPI we chose at
//! random (RFC 7296 §2.6, §3.1) and sent only to the initiator's address,
//! which a spoofer never receives, so the flood cannot reach that queue.
//!
//! What an attacker can still do there:
//! - guessing: an off-path spoofer must hit one of at most `half_open_max`
//!   live 64-bit random SPIs, about `half_open_max / 2^64` per datagram;
//!   a miss goes to `ike_new` like the rest of the flood;
//! - its own SPIs: a host that answers from a routable address (or holds
//!   a cookie) gets half-open SAs of its own, at most
//!   `half_open_per_source` proven ones and `half_open_max` in all, and
//!   may then flood datagrams naming them. They fill only
//!   `ike_half_open` (bounded, [`IKE_HALF_OPEN_QUEUE`], served at most
//!   [`HALF_OPEN_IKE_PER_TURN`] per turn after events, neighbours and
//!   authenticated IKE), each costs the engine an SA lookup and an
//!   integrity check (no Diffie-Hellman), and its SPI leaves the table
//!   when the half-open SA completes or expires. Legitimate IKE_AUTH then
//!   competes with that attacker only, no worse than with one shared
//!   queue, and the attacker's address is exposed;
//! - observing: an on-path attacker that sees a peer's SPIs can do the
//!   same with them, but it could drop that peer's datagrams anyway.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver, Select, Sender, TryRecvError};

use crate::esp::EngineEvent;

use super::msg::WorkerMsg;

/// Capacity of each queue.
pub const EVENT_QUEUE: usize = 4096;
/// See [`EVENT_QUEUE`].
pub const NEIGHBOUR_QUEUE: usize = 1024;
/// See [`EVENT_QUEUE`].
pub const IKE_QUEUE: usize = 1024;
/// See [`EVENT_QUEUE`].
pub const IKE_NEW_QUEUE: usize = 1024;
/// See [`EVENT_QUEUE`]. Small: each entry is an initiator's next message
/// after IKE_SA_INIT, and there are few of those at a time.
pub const IKE_HALF_OPEN_QUEUE: usize = 256;

/// Datagrams of half-open IKE SAs the control thread takes per turn,
/// before any new IKE_SA_INIT: completing an IKE SA both sides already
/// paid a Diffie-Hellman for comes before starting new ones.
pub const HALF_OPEN_IKE_PER_TURN: usize = 16;

/// Unauthenticated IKE datagrams (IKE_SA_INIT, half-open SAs, unknown
/// SPIs) the control thread takes per turn, after everything else queued:
/// a flood of them slows only their own kind, never SA events, neighbours
/// or established IKE SAs' exchanges.
pub const UNAUTH_IKE_PER_TURN: usize = 16;

/// Slots probed for one SPI.
const PROBES: usize = 8;

/// A set of our IKE SPIs, for the workers to tell an established (or
/// half-open) IKE SA's datagrams from unauthenticated ones. A fixed
/// open-addressing table of atomics: the control thread writes, workers
/// read without locks. A reader that races a rewrite may miss an SPI for
/// that moment (the datagram then waits in the unauthenticated queue) or
/// see one just removed; neither changes what the IKE engine accepts.
/// A lookup reads all `PROBES` slots of an SPI's run, so a removal just
/// clears its slot.
#[derive(Debug)]
pub struct KnownIkeSpis {
    slots: Box<[AtomicU64]>,
}

impl KnownIkeSpis {
    /// A table for about `capacity` SPIs.
    pub fn new(capacity: usize) -> Self {
        let n = (capacity.max(16) * 2).next_power_of_two();
        Self {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn home(&self, spi: u64) -> usize {
        // Our SPIs come from the system RNG: their low bits are uniform.
        (spi as usize) & (self.slots.len() - 1)
    }

    /// Makes `spis` the known set (zero SPIs are ignored). Returns how many
    /// did not fit.
    pub fn replace(&self, spis: impl IntoIterator<Item = u64>) -> usize {
        let mut layout = vec![0u64; self.slots.len()];
        let mut missed = 0;
        for spi in spis {
            if spi == 0 {
                continue;
            }
            let home = self.home(spi);
            let free = (0..PROBES)
                .map(|i| (home + i) & (layout.len() - 1))
                .find(|&i| layout[i] == 0 || layout[i] == spi);
            match free {
                Some(i) => layout[i] = spi,
                None => missed += 1,
            }
        }
        for (slot, v) in self.slots.iter().zip(layout) {
            if slot.load(Ordering::Relaxed) != v {
                slot.store(v, Ordering::Relaxed);
            }
        }
        missed
    }

    /// Adds `spi` (one writer only). False when its slots are all taken:
    /// its datagrams then go with the unauthenticated ones.
    pub fn insert(&self, spi: u64) -> bool {
        if spi == 0 {
            return false;
        }
        let home = self.home(spi);
        let mask = self.slots.len() - 1;
        let mut free = None;
        for i in 0..PROBES {
            let slot = &self.slots[(home + i) & mask];
            match slot.load(Ordering::Relaxed) {
                v if v == spi => return true,
                0 if free.is_none() => free = Some(slot),
                _ => {}
            }
        }
        match free {
            Some(slot) => {
                slot.store(spi, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Removes `spi` (one writer only).
    pub fn remove(&self, spi: u64) {
        if spi == 0 {
            return;
        }
        let home = self.home(spi);
        let mask = self.slots.len() - 1;
        for i in 0..PROBES {
            let slot = &self.slots[(home + i) & mask];
            if slot.load(Ordering::Relaxed) == spi {
                slot.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Whether `spi` is one of ours.
    pub fn contains(&self, spi: u64) -> bool {
        if spi == 0 {
            return false;
        }
        let home = self.home(spi);
        (0..PROBES)
            .any(|i| self.slots[(home + i) & (self.slots.len() - 1)].load(Ordering::Relaxed) == spi)
    }
}

/// Our SPI in a punted IKE datagram (the whole IP packet): the responder's
/// SPI when the sender is the original initiator, else the initiator's
/// (RFC 7296 §3.1). `None` for anything that is not plainly an IKE header
/// on UDP 500 or on 4500 after the non-ESP marker (RFC 3948 §2.2).
pub fn our_ike_spi(packet: &[u8]) -> Option<u64> {
    let udp = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            // Protocol UDP, not a fragment.
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
            if *packet.get(9)? != 17 || frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            packet.get(ihl..)?
        }
        6 => {
            if *packet.get(6)? != 17 {
                return None;
            }
            packet.get(40..)?
        }
        _ => return None,
    };
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ike = match dport {
        500 => udp.get(8..)?,
        4500 => match udp.get(8..12)? {
            [0, 0, 0, 0] => udp.get(12..)?,
            _ => return None,
        },
        _ => return None,
    };
    let spi_i = u64::from_be_bytes(ike.get(0..8)?.try_into().ok()?);
    let spi_r = u64::from_be_bytes(ike.get(8..16)?.try_into().ok()?);
    let initiator = ike.get(19)? & 0x08 != 0;
    let ours = if initiator { spi_r } else { spi_i };
    (ours != 0).then_some(ours)
}

/// Messages a worker could not queue, by queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDrops {
    /// SA events (lifetime, sequence number): a rekey may start late.
    pub events: u64,
    /// Learned neighbours (other workers learn them on their own).
    pub neighbours: u64,
    /// Datagrams of authenticated IKE SAs.
    pub ike: u64,
    /// Datagrams of half-open IKE SAs (IKE_AUTH requests).
    pub ike_half_open: u64,
}

impl QueueDrops {
    /// `(name, value)` for statistics.
    pub fn fields(&self) -> [(&'static str, u64); 4] {
        [
            ("events_full", self.events),
            ("neighbours_full", self.neighbours),
            ("ike_full", self.ike),
            ("ike_half_open_full", self.ike_half_open),
        ]
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &QueueDrops) {
        self.events += other.events;
        self.neighbours += other.neighbours;
        self.ike += other.ike;
        self.ike_half_open += other.ike_half_open;
    }
}

/// A worker's ends of the queues.
#[derive(Debug, Clone)]
pub struct ToControl {
    /// SA events and housekeeping.
    pub events: Sender<WorkerMsg>,
    /// Learned neighbours.
    pub neighbours: Sender<WorkerMsg>,
    /// IKE datagrams of authenticated IKE SAs.
    pub ike: Sender<WorkerMsg>,
    /// IKE datagrams of half-open IKE SAs.
    pub ike_half_open: Sender<WorkerMsg>,
    /// Every other IKE datagram.
    pub ike_new: Sender<WorkerMsg>,
    /// Which IKE SPIs are authenticated.
    pub known: Arc<KnownIkeSpis>,
    /// Which are our responder SPIs of half-open IKE SAs.
    pub half_open: Arc<KnownIkeSpis>,
}

/// The control thread's ends.
#[derive(Debug)]
pub struct FromWorkers {
    /// See [`ToControl::events`].
    pub events: Receiver<WorkerMsg>,
    /// See [`ToControl::neighbours`].
    pub neighbours: Receiver<WorkerMsg>,
    /// See [`ToControl::ike`].
    pub ike: Receiver<WorkerMsg>,
    /// See [`ToControl::ike_half_open`].
    pub ike_half_open: Receiver<WorkerMsg>,
    /// See [`ToControl::ike_new`].
    pub ike_new: Receiver<WorkerMsg>,
}

/// Where a control thread's turn over the queues is (see
/// [`FromWorkers::next_in_turn`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Turn {
    /// 0 events, 1 neighbours, 2 authenticated IKE, 3 half-open IKE, 4
    /// the rest, 5 done.
    queue: u8,
    /// Taken from the current queue.
    taken: usize,
}

/// What [`FromWorkers::next_in_turn`] found.
#[derive(Debug)]
pub enum Next {
    /// The next message to handle.
    Msg(WorkerMsg),
    /// The turn is over.
    Done,
    /// Every worker is gone.
    Disconnected,
}

impl FromWorkers {
    /// A `Select` over the five queues (the caller may add its own and
    /// wait on all of them).
    pub fn select(&self) -> Select<'_> {
        let mut sel = Select::new();
        sel.recv(&self.events);
        sel.recv(&self.neighbours);
        sel.recv(&self.ike);
        sel.recv(&self.ike_half_open);
        sel.recv(&self.ike_new);
        sel
    }

    /// The next message of one turn of the control thread: every SA event,
    /// learned neighbour and datagram of an authenticated IKE SA (as many
    /// as the queues hold), then at most [`HALF_OPEN_IKE_PER_TURN`]
    /// datagrams of half-open IKE SAs, then at most
    /// [`UNAUTH_IKE_PER_TURN`] other IKE datagrams. One message at a time, so that the caller may handle it
    /// with `self` borrowed only for the call.
    pub fn next_in_turn(&self, turn: &mut Turn) -> Next {
        loop {
            let (rx, limit) = match turn.queue {
                0 => (&self.events, EVENT_QUEUE),
                1 => (&self.neighbours, NEIGHBOUR_QUEUE),
                2 => (&self.ike, IKE_QUEUE),
                3 => (&self.ike_half_open, HALF_OPEN_IKE_PER_TURN),
                4 => (&self.ike_new, UNAUTH_IKE_PER_TURN),
                _ => return Next::Done,
            };
            if turn.taken < limit {
                match rx.try_recv() {
                    Ok(m) => {
                        turn.taken += 1;
                        return Next::Msg(m);
                    }
                    // The events queue is the one every worker holds
                    // until it stops.
                    Err(TryRecvError::Disconnected) if turn.queue == 0 => {
                        return Next::Disconnected
                    }
                    Err(_) => {}
                }
            }
            turn.queue += 1;
            turn.taken = 0;
        }
    }
}

/// The control thread's SPI tables the workers classify IKE datagrams by.
#[derive(Debug, Clone)]
pub struct IkeSpiTables {
    /// Our SPIs of authenticated IKE SAs.
    pub known: Arc<KnownIkeSpis>,
    /// Our responder SPIs of half-open IKE SAs.
    pub half_open: Arc<KnownIkeSpis>,
}

impl IkeSpiTables {
    /// Empty tables (for a gateway without IKE).
    pub fn empty() -> Self {
        Self {
            known: Arc::new(KnownIkeSpis::new(0)),
            half_open: Arc::new(KnownIkeSpis::new(0)),
        }
    }
}

/// The queues, with the default capacities.
pub fn control_queues(spis: IkeSpiTables) -> (ToControl, FromWorkers) {
    control_queues_with(
        spis,
        [
            EVENT_QUEUE,
            NEIGHBOUR_QUEUE,
            IKE_QUEUE,
            IKE_HALF_OPEN_QUEUE,
            IKE_NEW_QUEUE,
        ],
    )
}

/// The queues with capacities `[events, neighbours, ike, ike_half_open,
/// ike_new]`.
pub fn control_queues_with(spis: IkeSpiTables, caps: [usize; 5]) -> (ToControl, FromWorkers) {
    let (e_tx, e_rx) = bounded(caps[0]);
    let (n_tx, n_rx) = bounded(caps[1]);
    let (i_tx, i_rx) = bounded(caps[2]);
    let (h_tx, h_rx) = bounded(caps[3]);
    let (u_tx, u_rx) = bounded(caps[4]);
    (
        ToControl {
            events: e_tx,
            neighbours: n_tx,
            ike: i_tx,
            ike_half_open: h_tx,
            ike_new: u_tx,
            known: spis.known,
            half_open: spis.half_open,
        },
        FromWorkers {
            events: e_rx,
            neighbours: n_rx,
            ike: i_rx,
            ike_half_open: h_rx,
            ike_new: u_rx,
        },
    )
}

impl ToControl {
    /// Passes on what one poll of worker `worker` produced: punted IKE
    /// datagrams (`(interface, IP packet)`), learned neighbours and SA
    /// events, each to its queue. Returns how many unauthenticated IKE
    /// datagrams found their queue full; the other kinds' drops (half-open
    /// IKE SAs' included) go to `drops`.
    pub fn pass_on(
        &self,
        worker: u16,
        punts: &mut Vec<(u16, Vec<u8>)>,
        learned: &mut Vec<(IpAddr, [u8; 6], u16)>,
        events: &mut Vec<EngineEvent>,
        drops: &mut QueueDrops,
    ) -> u64 {
        // Events first: they are what a full system must not lose.
        for event in events.drain(..) {
            if self
                .events
                .try_send(WorkerMsg::Event { worker, event })
                .is_err()
            {
                drops.events += 1;
            }
        }
        for (ip, mac, iface) in learned.drain(..) {
            let msg = WorkerMsg::NeighbourLearned { ip, mac, iface };
            if self.neighbours.try_send(msg).is_err() {
                drops.neighbours += 1;
            }
        }
        let mut new_full = 0;
        for (iface, packet) in punts.drain(..) {
            let ours = our_ike_spi(&packet);
            let known = ours.is_some_and(|s| self.known.contains(s));
            let half_open = !known && ours.is_some_and(|s| self.half_open.contains(s));
            let msg = WorkerMsg::Punt {
                worker,
                iface,
                packet,
            };
            if known {
                if self.ike.try_send(msg).is_err() {
                    drops.ike += 1;
                }
            } else if half_open {
                if self.ike_half_open.try_send(msg).is_err() {
                    drops.ike_half_open += 1;
                }
            } else if self.ike_new.try_send(msg).is_err() {
                new_full += 1;
            }
        }
        new_full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::{SaEvent, Spi};

    /// IPv4/UDP to port `dport` carrying an IKE header.
    fn ike_packet(dport: u16, spi_i: u64, spi_r: u64, initiator: bool) -> Vec<u8> {
        let mut ike = Vec::new();
        if dport == 4500 {
            ike.extend_from_slice(&[0; 4]);
        }
        ike.extend_from_slice(&spi_i.to_be_bytes());
        ike.extend_from_slice(&spi_r.to_be_bytes());
        ike.extend_from_slice(&[33, 0x20, 34, if initiator { 0x08 } else { 0x20 }]);
        ike.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 28]);
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[198, 51, 100, 1, 192, 0, 2, 1]);
        p.extend_from_slice(&500u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&ike);
        p
    }

    #[test]
    fn our_spi_by_role_and_port() {
        assert_eq!(our_ike_spi(&ike_packet(500, 7, 9, true)), Some(9));
        assert_eq!(our_ike_spi(&ike_packet(500, 7, 9, false)), Some(7));
        assert_eq!(our_ike_spi(&ike_packet(4500, 7, 9, true)), Some(9));
        // IKE_SA_INIT request: no SPI of ours yet.
        assert_eq!(our_ike_spi(&ike_packet(500, 7, 0, true)), None);
        assert_eq!(our_ike_spi(&[0x45; 10]), None);
    }

    #[test]
    fn known_spis_replace_and_lookup() {
        let k = KnownIkeSpis::new(4);
        assert_eq!(k.replace([1, 33, 65, 97]), 0);
        assert!(k.contains(33) && k.contains(97) && !k.contains(2));
        k.replace([2]);
        assert!(k.contains(2) && !k.contains(33));
    }

    /// A flood of unauthenticated IKE datagrams fills its own queue; the
    /// worker still delivers an SA lifetime event, a learned neighbour and
    /// a datagram of an established IKE SA, and counts the flood's drops.
    fn tables(known: &[u64], half_open: &[u64]) -> IkeSpiTables {
        let t = IkeSpiTables {
            known: Arc::new(KnownIkeSpis::new(4)),
            half_open: Arc::new(KnownIkeSpis::new(4)),
        };
        t.known.replace(known.iter().copied());
        for &spi in half_open {
            assert!(t.half_open.insert(spi));
        }
        t
    }

    #[test]
    fn known_spis_insert_and_remove_in_place() {
        let k = KnownIkeSpis::new(4);
        // All in one run of slots: removing the first must not hide the
        // others.
        let n = k.slots.len() as u64;
        let run: Vec<u64> = (1..=PROBES as u64).map(|i| 5 + i * n).collect();
        assert!(run.iter().all(|&s| k.insert(s)));
        assert!(!k.insert(5 + 100 * n), "a full run refuses");
        k.remove(run[0]);
        assert!(!k.contains(run[0]));
        assert!(run[1..].iter().all(|&s| k.contains(s)));
        assert!(k.insert(5 + 100 * n) && k.contains(5 + 100 * n));
        assert!(!k.insert(0) && !k.contains(0));
    }

    /// A spoofed IKE_SA_INIT flood keeps the unauthenticated queue full;
    /// an initiator's IKE_AUTH, which names the responder SPI of its
    /// half-open SA, still reaches the control thread, and a turn serves it
    /// before the flood.
    #[test]
    fn half_open_ike_auth_gets_through_a_full_init_queue() {
        let half_open_spi = 0x7777_0000_1234_5678;
        let (to, from) = control_queues_with(tables(&[], &[half_open_spi]), [8, 8, 8, 8, 8]);
        let mut drops = QueueDrops::default();
        let mut punts: Vec<(u16, Vec<u8>)> = (0..100)
            .map(|i| (1, ike_packet(500, 1000 + i, 0, true)))
            .collect();
        let full = to.pass_on(0, &mut punts, &mut Vec::new(), &mut Vec::new(), &mut drops);
        assert_eq!(full, 92);
        // IKE_AUTH amid the flood, and a datagram naming an SPI that is
        // not ours (a guess) that must stay with the flood.
        punts.extend((0..50).map(|i| (1, ike_packet(500, 2000 + i, 0, true))));
        punts.push((1, ike_packet(500, 0x5555, half_open_spi, true)));
        punts.push((1, ike_packet(500, 0x6666, half_open_spi ^ 1, true)));
        punts.extend((0..50).map(|i| (1, ike_packet(500, 3000 + i, 0, true))));
        let full = to.pass_on(0, &mut punts, &mut Vec::new(), &mut Vec::new(), &mut drops);
        assert_eq!(full, 101);
        assert_eq!(drops, QueueDrops::default());
        let mut turn = Turn::default();
        let Next::Msg(WorkerMsg::Punt { packet, .. }) = from.next_in_turn(&mut turn) else {
            panic!("IKE_AUTH of the half-open SA lost");
        };
        assert_eq!(our_ike_spi(&packet), Some(half_open_spi));
        // Once the SA is no longer half-open its SPI leaves the table.
        to.half_open.remove(half_open_spi);
        punts.push((1, ike_packet(500, 0x5555, half_open_spi, true)));
        to.pass_on(0, &mut punts, &mut Vec::new(), &mut Vec::new(), &mut drops);
        assert_eq!(from.ike_half_open.len(), 0);
        // The half-open queue is bounded and its overflow counted.
        assert!(to.half_open.insert(half_open_spi));
        punts.extend((0..10).map(|_| (1, ike_packet(500, 0x5555, half_open_spi, true))));
        to.pass_on(0, &mut punts, &mut Vec::new(), &mut Vec::new(), &mut drops);
        assert_eq!(from.ike_half_open.len(), 8);
        assert_eq!(drops.ike_half_open, 2);
    }

    #[test]
    fn full_ike_queue_does_not_starve_events() {
        let (to, from) = control_queues_with(tables(&[0xabcd], &[]), [8, 8, 8, 8, 8]);
        let mut drops = QueueDrops::default();
        let mut punts: Vec<(u16, Vec<u8>)> = (0..100)
            .map(|i| (1, ike_packet(500, 1000 + i, 0, true)))
            .collect();
        let spi = Spi::new(0x1234).unwrap();
        let mut events = vec![EngineEvent::Inbound(spi, SaEvent::SoftLifetime)];
        let mut learned = vec![("192.0.2.2".parse().unwrap(), [2, 0, 0, 0, 0, 1], 1)];
        let full = to.pass_on(0, &mut punts, &mut learned, &mut events, &mut drops);
        assert_eq!(full, 92);
        // The flood goes on; the established IKE SA's rekey and the next
        // lifetime event still get through.
        punts.extend((0..100).map(|i| (1, ike_packet(500, 2000 + i, 0, true))));
        punts.push((1, ike_packet(4500, 0x5555, 0xabcd, true)));
        events.push(EngineEvent::Inbound(spi, SaEvent::SoftLifetime));
        let full = to.pass_on(0, &mut punts, &mut learned, &mut events, &mut drops);
        assert_eq!(full, 100);
        assert_eq!(drops, QueueDrops::default());
        assert_eq!(from.events.len(), 2);
        assert!(matches!(
            from.events.try_recv(),
            Ok(WorkerMsg::Event {
                event: EngineEvent::Inbound(_, SaEvent::SoftLifetime),
                ..
            })
        ));
        assert!(matches!(
            from.neighbours.try_recv(),
            Ok(WorkerMsg::NeighbourLearned { .. })
        ));
        let Ok(WorkerMsg::Punt { packet, .. }) = from.ike.try_recv() else {
            panic!("established IKE SA's datagram lost");
        };
        assert_eq!(our_ike_spi(&packet), Some(0xabcd));
        assert_eq!(from.ike_new.len(), 8);
    }

    /// One turn takes every event and established IKE SA's datagram, then
    /// [`HALF_OPEN_IKE_PER_TURN`] half-open SAs' datagrams, and only
    /// [`UNAUTH_IKE_PER_TURN`] of the waiting unauthenticated ones, last.
    #[test]
    fn a_turn_serves_unauthenticated_ike_last_and_bounded() {
        let (to, from) = control_queues(tables(&[0xabcd], &[0xbeef]));
        let mut drops = QueueDrops::default();
        let mut punts: Vec<(u16, Vec<u8>)> = (0..100)
            .map(|i| (1, ike_packet(500, 1000 + i, 0, true)))
            .collect();
        punts.extend((0..20).map(|i| (1, ike_packet(500, 0x9000 + i, 0xbeef, true))));
        punts.push((1, ike_packet(4500, 0x5555, 0xabcd, true)));
        let spi = Spi::new(0x1234).unwrap();
        let mut events = vec![EngineEvent::Inbound(spi, SaEvent::SoftLifetime); 3];
        to.pass_on(0, &mut punts, &mut Vec::new(), &mut events, &mut drops);
        let mut turn = Turn::default();
        let mut kinds = Vec::new();
        loop {
            match from.next_in_turn(&mut turn) {
                Next::Msg(WorkerMsg::Event { .. }) => kinds.push('e'),
                Next::Msg(WorkerMsg::Punt { packet, .. }) => {
                    kinds.push(match our_ike_spi(&packet) {
                        Some(0xabcd) => 'a',
                        Some(0xbeef) => 'h',
                        _ => 'u',
                    })
                }
                Next::Msg(_) => kinds.push('?'),
                Next::Done => break,
                Next::Disconnected => panic!("workers are still there"),
            }
        }
        let want: String = "eeea"
            .chars()
            .chain(std::iter::repeat_n('h', HALF_OPEN_IKE_PER_TURN))
            .chain(std::iter::repeat_n('u', UNAUTH_IKE_PER_TURN))
            .collect();
        assert_eq!(kinds.into_iter().collect::<String>(), want);
        assert_eq!(from.ike_new.len(), 100 - UNAUTH_IKE_PER_TURN);
        assert_eq!(from.ike_half_open.len(), 20 - HALF_OPEN_IKE_PER_TURN);
        drop(to);
        let mut turn = Turn::default();
        assert!(matches!(from.next_in_turn(&mut turn), Next::Disconnected));
    }
}
