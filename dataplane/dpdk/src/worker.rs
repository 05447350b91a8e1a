//! A poll-mode worker: one thread, pinned to a core, that owns its RX and
//! TX queues (one of each per port), its SAs and its copy of the tables.
//!
//! Each poll: apply a bounded number of control messages (so a flood of
//! SA changes never stalls forwarding for more than a burst), receive a
//! burst from every port and hand it to [`Node::rx_burst`], take packets
//! other workers handed over, then take the node's [`Output`], transmit
//! per port, push hand-offs to their workers and pass punts, learned
//! neighbours and SA events to the control thread, each on its own queue
//! (`dataplane::gateway::queues`).

use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TryRecvError};
use crossbeam::queue::ArrayQueue;

use crate::{rdtsc, tsc_hz, Mbuf, Mempool, RxQueue, TxQueue, BURST_SIZE};
use cpu::clock::thread_cpu_time;
use dataplane::esp::{InboundSa, OutboundSa, SaRef};

use dataplane::gateway::msg::{
    ControlMsg, Handoff, MsgKind, PollProfile, Retired, SaStats, WorkerMsg, WorkerStats,
    POLL_GAP_BUCKETS,
};
use dataplane::gateway::node::{GwDrop, Node, Output, PacketPool};
use dataplane::gateway::queues::{QueueDrops, ToControl};

/// Control messages applied per poll at most.
const CONTROL_PER_POLL: usize = 64;
/// Wall-clock time a poll may spend on control messages before it goes
/// back to forwarding (the rest wait for the next poll). Counting messages
/// alone let one poll of 64 SA installs hold the worker for 1.7-2.2 ms
/// (`espresso-lab bench` reconfiguration case, whose target is no stall
/// over 1 ms); the bound is checked after each message, so a poll overshoots
/// it by at most one message.
const CONTROL_BUDGET: Duration = Duration::from_micros(250);
/// SAs whose counters a poll copies into a statistics snapshot at most
/// (see [`StatsWalk`]).
const STATS_PER_POLL: usize = 512;
/// Handed-off packets taken per poll at most.
const HANDOFF_PER_POLL: usize = 4 * BURST_SIZE;

/// A worker's queues: `rx[i]` and `tx[i]` belong to interface `i`.
#[derive(Debug)]
pub struct WorkerPorts {
    /// RX queues by interface index; `None` where the port has fewer RX
    /// queues than there are workers (another worker receives for it).
    pub rx: Vec<Option<RxQueue>>,
    /// TX queues by interface index.
    pub tx: Vec<TxQueue>,
}

/// Allocates from a DPDK mempool.
#[derive(Debug, Clone)]
pub struct MbufPool(pub Mempool);

impl PacketPool<Mbuf> for MbufPool {
    fn alloc(&mut self) -> Option<Mbuf> {
        Mbuf::alloc(&self.0).ok()
    }
}

/// A `CollectStats` snapshot in progress: a few hundred SAs per poll, so
/// that 100,000 SAs (20-50 ms of copying and formatting in one go) never
/// stall forwarding. SAs installed or removed while it runs may be missing
/// or (an inbound table that grows moves its SAs) listed twice; the
/// control thread keys SAs by SPI.
struct StatsWalk {
    /// Who asked (requests that arrive meanwhile get the same snapshot).
    replies: Vec<Sender<WorkerStats>>,
    stats: WorkerStats,
    /// Next outbound slot to look at.
    next_slot: usize,
    /// Inbound SAs taken so far.
    next_inbound: usize,
}

/// One worker.
pub struct Worker {
    /// Worker index.
    pub id: u16,
    node: Node<Mbuf>,
    /// What the node produced this poll, sent and passed on by `flush`.
    out: Output<Mbuf>,
    ports: WorkerPorts,
    pool: MbufPool,
    control: Receiver<ControlMsg>,
    to_control: ToControl,
    queue_drops: QueueDrops,
    handoff_in: Arc<ArrayQueue<Handoff<Mbuf>>>,
    handoff_out: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>>,
    idle_sleep: Duration,
    max_poll_gap_us: u64,
    max_control_us: u64,
    max_control_cpu_us: u64,
    slowest_poll: PollProfile,
    costliest_control: PollProfile,
    max_msg_us: [u64; MsgKind::COUNT],
    poll_gaps: [u64; POLL_GAP_BUCKETS],
    /// TSC ticks per microsecond (the poll loop times itself with the TSC,
    /// a few nanoseconds a read).
    tsc_per_us: u64,
    stats_walk: Option<StatsWalk>,
    /// Whether the RX queues are polled (see [`Worker::hold_rx`]).
    receiving: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("node", &self.node)
            .finish()
    }
}

impl Worker {
    /// Builds a worker. `handoff_out[w]` is worker `w`'s hand-off queue
    /// (including our own, `handoff_in`). `idle_sleep`: how long to sleep
    /// after a poll that found nothing (zero: spin, as a dedicated core
    /// should; a short sleep when cores are shared).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u16,
        node: Node<Mbuf>,
        ports: WorkerPorts,
        pool: Mempool,
        control: Receiver<ControlMsg>,
        to_control: ToControl,
        handoff_in: Arc<ArrayQueue<Handoff<Mbuf>>>,
        handoff_out: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>>,
        idle_sleep: Duration,
    ) -> Self {
        Self {
            id,
            out: Output::new(node.interfaces().len()),
            node,
            ports,
            pool: MbufPool(pool),
            control,
            to_control,
            queue_drops: QueueDrops::default(),
            handoff_in,
            handoff_out,
            idle_sleep,
            max_poll_gap_us: 0,
            max_control_us: 0,
            max_control_cpu_us: 0,
            slowest_poll: PollProfile::default(),
            costliest_control: PollProfile::default(),
            max_msg_us: [0; MsgKind::COUNT],
            poll_gaps: [0; POLL_GAP_BUCKETS],
            tsc_per_us: (tsc_hz() / 1_000_000).max(1),
            stats_walk: None,
            receiving: true,
        }
    }

    /// Leaves the RX queues unpolled until [`ControlMsg::StartForwarding`]
    /// (control messages are applied meanwhile). `espresso run` starts its
    /// workers before it installs the SPD and SAs: without this, whatever
    /// arrives in between is dropped as having no policy (at a few Mpps,
    /// thousands of packets while a large configuration is applied).
    pub fn hold_rx(mut self) -> Self {
        self.receiving = false;
        self
    }

    /// Polls until told to stop (or the control thread goes away); returns
    /// the final statistics (to the thread that joins it: a message on the
    /// events queue could block a stopping worker behind a full queue).
    pub fn run(mut self) -> WorkerStats {
        let tsc0 = rdtsc();
        let per_ms = self.tsc_per_us * 1000;
        let tsc_per_us = self.tsc_per_us;
        let us = move |ticks: u64| ticks / tsc_per_us;
        let budget = CONTROL_BUDGET.as_micros() as u64 * tsc_per_us;
        let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST_SIZE);
        // The previous poll's marks: start, control done, forwarding done,
        // flush done (TSC), and its control work.
        let mut prev = [tsc0; 4];
        let mut prev_control = (0u32, None, 0u64);
        'poll: loop {
            let now = rdtsc();
            let gap = us(now.wrapping_sub(prev[0]));
            self.poll_gaps[gap_bucket(gap)] += 1;
            if gap > self.max_poll_gap_us {
                self.max_poll_gap_us = gap;
                self.slowest_poll = PollProfile {
                    gap_us: gap,
                    control_us: us(prev[1] - prev[0]),
                    messages: prev_control.0,
                    slowest: prev_control.1,
                    slowest_us: prev_control.2,
                    forward_us: us(prev[2] - prev[1]),
                    flush_us: us(prev[3] - prev[2]),
                    rest_us: us(now.wrapping_sub(prev[3])),
                };
            }
            self.node.set_now(now.wrapping_sub(tsc0) / per_ms);

            let mut cpu_start = None;
            let mut messages = 0u32;
            let mut slowest: Option<MsgKind> = None;
            let mut slowest_ticks = 0u64;
            let mut mark = now;
            for _ in 0..CONTROL_PER_POLL {
                match self.control.try_recv() {
                    Ok(ControlMsg::Stop) | Err(TryRecvError::Disconnected) => break 'poll,
                    Ok(msg) => {
                        if cpu_start.is_none() {
                            cpu_start = Some(thread_cpu_time());
                            mark = rdtsc();
                        }
                        let kind = msg.kind();
                        self.apply(msg);
                        let t = rdtsc();
                        let took = t - mark;
                        mark = t;
                        messages += 1;
                        self.note_msg(kind, took);
                        if took >= slowest_ticks {
                            (slowest, slowest_ticks) = (Some(kind), took);
                        }
                        if t - now >= budget {
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if self.node.is_stepping() {
                let t = rdtsc();
                self.node.step();
                let took = rdtsc() - t;
                self.note_msg(MsgKind::Step, took);
                if took >= slowest_ticks {
                    (slowest, slowest_ticks) = (Some(MsgKind::Step), took);
                }
                self.tables_to_control();
            } else if messages > 0 {
                self.tables_to_control();
            }
            if self.stats_walk.is_some() {
                let t = rdtsc();
                self.walk_stats();
                let took = rdtsc() - t;
                self.note_msg(MsgKind::CollectStats, took);
                if took >= slowest_ticks {
                    (slowest, slowest_ticks) = (Some(MsgKind::CollectStats), took);
                }
            }
            let control_done = rdtsc();
            if let Some(cpu0) = cpu_start {
                // What this poll's control messages cost: wall clock, and
                // on-CPU time (immune to the thread being preempted).
                let spent = us(control_done - now);
                self.max_control_us = self.max_control_us.max(spent);
                let cpu = thread_cpu_time().saturating_sub(cpu0).as_micros() as u64;
                if cpu > self.max_control_cpu_us {
                    self.max_control_cpu_us = cpu;
                    self.costliest_control = PollProfile {
                        control_us: spent,
                        messages,
                        slowest,
                        slowest_us: us(slowest_ticks),
                        ..PollProfile::default()
                    };
                }
            }
            prev_control = (messages, slowest, us(slowest_ticks));

            let mut work = 0usize;
            for (i, rx) in self.ports.rx.iter_mut().enumerate() {
                let Some(rx) = rx.as_mut().filter(|_| self.receiving) else {
                    continue;
                };
                let n = rx.rx_burst(&mut burst);
                work += n;
                self.node.rx_burst(i as u16, &mut burst, &mut self.pool);
            }
            // One batch for the poll's hand-offs (see `Node::handoffs_in`).
            let queue = &self.handoff_in;
            let handoffs = std::iter::from_fn(|| queue.pop())
                .take(HANDOFF_PER_POLL)
                .inspect(|_| work += 1);
            self.node.handoffs_in(handoffs, &mut self.pool);
            let forward_done = rdtsc();
            self.flush();
            prev = [now, control_done, forward_done, rdtsc()];
            if work == 0 {
                self.node.expire_pending();
                if !self.idle_sleep.is_zero() {
                    std::thread::sleep(self.idle_sleep);
                    // A deliberate sleep is not a stall.
                    prev = [rdtsc(); 4];
                }
            }
        }
        // Stop: free everything we hold.
        let mut freed = self.node.drain();
        while self.handoff_in.pop().is_some() {
            freed += 1;
        }
        let mut stats = self.stats();
        stats.freed_at_stop = freed;
        stats
    }

    fn flush(&mut self) {
        self.node.take_output(&mut self.out);
        let out = &mut self.out;
        for (tx, pkts) in self.ports.tx.iter_mut().zip(&mut out.tx) {
            if pkts.is_empty() {
                continue;
            }
            let (_, dropped) = tx.tx_burst_all(pkts, 16);
            self.node.count_drops(GwDrop::TxFull, dropped as u64);
        }
        for (w, h) in out.handoffs.drain(..) {
            let pushed = self
                .handoff_out
                .get(usize::from(w))
                .is_some_and(|q| q.push(h).is_ok());
            if !pushed {
                self.node.count_drops(GwDrop::HandoffFull, 1);
            }
        }
        let full = self.to_control.pass_on(
            self.id,
            &mut out.punts,
            &mut out.learned,
            &mut out.events,
            &mut self.queue_drops,
        );
        self.node.count_drops(GwDrop::PuntFull, full);
    }

    fn apply(&mut self, msg: ControlMsg) {
        let msg = match msg.apply_to(&mut self.node) {
            Ok(Some(old)) => return self.retire(old),
            Ok(None) => return,
            Err(msg) => msg,
        };
        match msg {
            ControlMsg::Reresolve { ip } => self.node.reresolve(ip, &mut self.pool),
            ControlMsg::Transmit(bytes) => match Mbuf::from_slice(&self.pool.0, &bytes) {
                Ok(m) => self.node.transmit(m, &mut self.pool),
                Err(_) => self.node.count_drops(GwDrop::NoBuffer, 1),
            },
            ControlMsg::CollectStats(reply) => match &mut self.stats_walk {
                Some(w) => w.replies.push(reply),
                None => {
                    self.stats_walk = Some(StatsWalk {
                        replies: vec![reply],
                        stats: self.counters(),
                        next_slot: 0,
                        next_inbound: 0,
                    })
                }
            },
            ControlMsg::CollectCounters(reply) => {
                let _ = reply.send(self.counters());
            }
            ControlMsg::ResetMaxPollGap => {
                self.max_poll_gap_us = 0;
                self.max_control_us = 0;
                self.max_control_cpu_us = 0;
                self.slowest_poll = PollProfile::default();
                self.costliest_control = PollProfile::default();
                self.max_msg_us = [0; MsgKind::COUNT];
                self.poll_gaps = [0; POLL_GAP_BUCKETS];
            }
            ControlMsg::StartForwarding => self.receiving = true,
            ControlMsg::Stop => {}
            // Applied to the node above.
            ControlMsg::InstallOutbound { .. }
            | ControlMsg::RemoveOutbound { .. }
            | ControlMsg::InstallInbound(_)
            | ControlMsg::RemoveInbound(_)
            | ControlMsg::OutboundOwner { .. }
            | ControlMsg::InboundOwner { .. }
            | ControlMsg::SetSpd(_)
            | ControlMsg::SetRoutes(_)
            | ControlMsg::SetStaticNeighbours(_)
            | ControlMsg::SetIcmpRateLimit { .. }
            | ControlMsg::Spares(_)
            | ControlMsg::Neighbour { .. } => {}
        }
    }

    fn note_msg(&mut self, kind: MsgKind, ticks: u64) {
        let us = ticks / self.tsc_per_us;
        let m = &mut self.max_msg_us[kind.index()];
        *m = (*m).max(us);
    }

    /// Asks the control thread for the tables the SPI maps' next growths
    /// need, and hands back the tables a growth emptied (both only after
    /// polls that changed the maps).
    fn tables_to_control(&mut self) {
        if let Some((inbound, owners)) = self.node.spares_wanted() {
            // If the queue is full the maps allocate their own.
            let _ = self.to_control.events.try_send(WorkerMsg::WantSpares {
                worker: self.id,
                inbound,
                owners,
            });
        }
        if let Some(t) = self.node.take_retired_tables() {
            self.retire(Retired::Tables(Box::new(t)));
        }
    }

    /// Hands something replaced back to the control thread to be freed
    /// there (if its queue is full, it is freed here after all).
    fn retire(&self, what: Retired) {
        let _ = self.to_control.events.try_send(WorkerMsg::Retired(what));
    }

    /// A snapshot of this worker's own counters, without the per-SA lists.
    pub fn counters(&self) -> WorkerStats {
        let engine = self.node.engine();
        WorkerStats {
            worker: self.id,
            node: self.node.counters,
            queue_drops: self.queue_drops,
            esp: Default::default(),
            inbound_unattributed: engine.inbound().counters.snapshot(),
            outbound_unattributed: engine.outbound_counters.snapshot(),
            outbound: Vec::new(),
            inbound: Vec::new(),
            max_poll_gap_us: self.max_poll_gap_us,
            max_control_us: self.max_control_us,
            max_control_cpu_us: self.max_control_cpu_us,
            slowest_poll: self.slowest_poll,
            costliest_control: self.costliest_control,
            max_msg_us: self.max_msg_us,
            poll_gaps: self.poll_gaps,
            spd_cache_hits: engine.spd_cache().hits,
            spd_cache_misses: engine.spd_cache().misses,
            freed_at_stop: 0,
        }
    }

    /// Copies the next few SAs' counters into the snapshot in progress;
    /// sends it when every SA is in.
    fn walk_stats(&mut self) {
        let Some(w) = self.stats_walk.as_mut() else {
            return;
        };
        let engine = self.node.engine();
        let mut budget = STATS_PER_POLL;
        let slots = engine.outbound_slots();
        while w.next_slot < slots && budget > 0 {
            let slot = SaRef(w.next_slot as u32);
            if let Some(sa) = engine.outbound(slot) {
                w.stats.outbound.push(outbound_stats(slot, sa));
                budget -= 1;
            }
            w.next_slot += 1;
        }
        if budget > 0 {
            // Skipping the SAs taken before scans the table's control
            // bytes, a nanosecond or two per SA.
            let before = w.stats.inbound.len();
            w.stats.inbound.extend(
                engine
                    .inbound()
                    .iter()
                    .skip(w.next_inbound)
                    .take(budget)
                    .map(inbound_stats),
            );
            let taken = w.stats.inbound.len() - before;
            w.next_inbound += taken;
            if taken < budget {
                let w = self.stats_walk.take().expect("walking");
                // The counters as of now (the SA lists are as of the walk).
                let now = self.counters();
                let stats = WorkerStats {
                    outbound: w.stats.outbound,
                    inbound: w.stats.inbound,
                    ..now
                };
                for r in w.replies {
                    let _ = r.send(stats.clone());
                }
            }
        }
    }

    /// A snapshot of this worker's counters and of every SA's.
    pub fn stats(&self) -> WorkerStats {
        let engine = self.node.engine();
        WorkerStats {
            outbound: engine
                .outbound_sas()
                .map(|(slot, sa)| outbound_stats(slot, sa))
                .collect(),
            inbound: engine.inbound().iter().map(inbound_stats).collect(),
            ..self.counters()
        }
    }
}

fn outbound_stats(slot: SaRef, sa: &OutboundSa) -> SaStats {
    SaStats {
        spi: sa.config().spi,
        slot: Some(slot),
        algorithm: format!("{:?}/{}", sa.algorithm(), sa.backend()),
        counters: sa.counters.snapshot(),
        seq: sa.last_seq(),
    }
}

fn inbound_stats(sa: &InboundSa) -> SaStats {
    SaStats {
        spi: sa.config().spi,
        slot: None,
        algorithm: format!("{:?}/{}", sa.algorithm(), sa.backend()),
        counters: sa.counters.snapshot(),
        seq: sa.replay_top(),
    }
}

/// The [`POLL_GAP_BUCKETS`] bucket of a gap of `us` microseconds.
fn gap_bucket(us: u64) -> usize {
    ((u64::BITS - us.leading_zeros()) as usize).min(POLL_GAP_BUCKETS - 1)
}
