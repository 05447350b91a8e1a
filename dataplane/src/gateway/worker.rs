//! A poll-mode worker: one thread, pinned to a core, that owns its RX and
//! TX queues (one of each per port), its SAs and its copy of the tables.
//!
//! Each poll: apply a bounded number of control messages (so a flood of
//! SA changes never stalls forwarding for more than a burst), receive a
//! burst from every port and run each frame through the [`Node`], take
//! packets other workers handed over, then transmit per port and pass
//! punts, learned neighbours and SA events to the control thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TryRecvError};
use crossbeam::queue::ArrayQueue;

use crate::dpdk::{Mbuf, Mempool, RxQueue, TxQueue, BURST_SIZE};

use super::msg::{ControlMsg, Handoff, Retired, SaStats, WorkerMsg, WorkerStats};
use super::node::{GwDrop, Node, PacketPool};

/// Control messages applied per poll at most.
const CONTROL_PER_POLL: usize = 64;
/// Wall-clock time a poll may spend on control messages before it goes
/// back to forwarding (the rest wait for the next poll). Counting messages
/// alone let one poll of 64 SA installs hold the worker for 1.7-2.2 ms
/// (`espresso bench` reconfiguration case, issue #6 asks for no stall over
/// 1 ms); the bound is checked after each message, so a poll overshoots
/// it by at most one message.
const CONTROL_BUDGET: Duration = Duration::from_micros(250);
/// Handed-off packets taken per poll at most.
const HANDOFF_PER_POLL: usize = 4 * BURST_SIZE;

/// A worker's queues: `rx[i]` and `tx[i]` belong to interface `i`.
#[derive(Debug)]
pub struct WorkerPorts {
    /// RX queues by interface index.
    pub rx: Vec<RxQueue>,
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

/// One worker.
pub struct Worker {
    /// Worker index.
    pub id: u16,
    node: Node<Mbuf>,
    ports: WorkerPorts,
    pool: MbufPool,
    control: Receiver<ControlMsg>,
    to_control: Sender<WorkerMsg>,
    handoff_in: Arc<ArrayQueue<Handoff<Mbuf>>>,
    handoff_out: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>>,
    idle_sleep: Duration,
    max_poll_gap_us: u64,
    max_control_us: u64,
    max_control_cpu_us: u64,
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
        to_control: Sender<WorkerMsg>,
        handoff_in: Arc<ArrayQueue<Handoff<Mbuf>>>,
        handoff_out: Vec<Arc<ArrayQueue<Handoff<Mbuf>>>>,
        idle_sleep: Duration,
    ) -> Self {
        Self {
            id,
            node,
            ports,
            pool: MbufPool(pool),
            control,
            to_control,
            handoff_in,
            handoff_out,
            idle_sleep,
            max_poll_gap_us: 0,
            max_control_us: 0,
            max_control_cpu_us: 0,
        }
    }

    /// Polls until told to stop (or the control thread goes away); returns
    /// the final statistics, which it also sends as `WorkerMsg::Stopped`.
    pub fn run(mut self) -> WorkerStats {
        let start = Instant::now();
        let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST_SIZE);
        let mut last_poll = Instant::now();
        'poll: loop {
            let now = Instant::now();
            let gap = now.duration_since(last_poll).as_micros() as u64;
            last_poll = now;
            self.max_poll_gap_us = self.max_poll_gap_us.max(gap);
            self.node
                .set_now(now.duration_since(start).as_millis() as u64);

            let mut cpu_start = None;
            for _ in 0..CONTROL_PER_POLL {
                match self.control.try_recv() {
                    Ok(ControlMsg::Stop) | Err(TryRecvError::Disconnected) => break 'poll,
                    Ok(msg) => {
                        if cpu_start.is_none() {
                            cpu_start = Some(thread_cpu_time());
                        }
                        self.apply(msg);
                        if now.elapsed() >= CONTROL_BUDGET {
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.node.step();
            if let Some(cpu0) = cpu_start {
                // What this poll's control messages cost: wall clock, and
                // on-CPU time (immune to the thread being preempted).
                let spent = now.elapsed().as_micros() as u64;
                self.max_control_us = self.max_control_us.max(spent);
                let cpu = thread_cpu_time().saturating_sub(cpu0).as_micros() as u64;
                self.max_control_cpu_us = self.max_control_cpu_us.max(cpu);
            }

            let mut work = 0usize;
            for (i, rx) in self.ports.rx.iter_mut().enumerate() {
                let n = rx.rx_burst(&mut burst);
                work += n;
                self.node.prefetch_burst(i as u16, &burst);
                for m in burst.drain(..) {
                    self.node.rx(i as u16, m, &mut self.pool);
                }
            }
            for _ in 0..HANDOFF_PER_POLL {
                let Some(h) = self.handoff_in.pop() else {
                    break;
                };
                work += 1;
                self.node.handoff_in(h, &mut self.pool);
            }
            self.flush();
            if work == 0 {
                self.node.expire_pending();
                if !self.idle_sleep.is_zero() {
                    std::thread::sleep(self.idle_sleep);
                    // A deliberate sleep is not a stall.
                    last_poll = Instant::now();
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
        let _ = self
            .to_control
            .send(WorkerMsg::Stopped(Box::new(stats.clone())));
        stats
    }

    fn flush(&mut self) {
        for (i, tx) in self.ports.tx.iter_mut().enumerate() {
            let pkts = &mut self.node.tx[i];
            if pkts.is_empty() {
                continue;
            }
            let (_, dropped) = tx.tx_burst_all(pkts, 16);
            self.node.counters.drops[GwDrop::TxFull.index()] += dropped as u64;
        }
        for (w, h) in self.node.handoffs.drain(..) {
            if let Some(q) = self.handoff_out.get(usize::from(w)) {
                if q.push(h).is_err() {
                    self.node.counters.drops[GwDrop::HandoffFull.index()] += 1;
                }
            } else {
                self.node.counters.drops[GwDrop::HandoffFull.index()] += 1;
            }
        }
        for (iface, packet) in self.node.punts.drain(..) {
            let msg = WorkerMsg::Punt {
                worker: self.id,
                iface,
                packet,
            };
            if self.to_control.try_send(msg).is_err() {
                self.node.counters.drops[GwDrop::PuntFull.index()] += 1;
            }
        }
        for (ip, mac, iface) in self.node.learned.drain(..) {
            let _ = self
                .to_control
                .try_send(WorkerMsg::NeighbourLearned { ip, mac, iface });
        }
        for event in self.node.events.drain(..) {
            let _ = self.to_control.try_send(WorkerMsg::Event {
                worker: self.id,
                event,
            });
        }
    }

    fn apply(&mut self, msg: ControlMsg) {
        match msg {
            ControlMsg::InstallOutbound { slot, sa } => {
                if let Some(old) = self.node.install_outbound(slot, sa) {
                    self.retire(Retired::Outbound(old));
                }
            }
            ControlMsg::RemoveOutbound { slot } => {
                if let Some(old) = self.node.remove_outbound(slot) {
                    self.retire(Retired::Outbound(old));
                }
            }
            ControlMsg::InstallInbound(sa) => {
                if let Some(old) = self.node.install_inbound(sa) {
                    self.retire(Retired::Inbound(old));
                }
            }
            ControlMsg::RemoveInbound(spi) => {
                if let Some(old) = self.node.remove_inbound(spi) {
                    self.retire(Retired::Inbound(old));
                }
            }
            ControlMsg::OutboundOwner { slot, worker } => {
                self.node.set_outbound_owner(slot, worker)
            }
            ControlMsg::InboundOwner { spi, worker } => self.node.set_inbound_owner(spi, worker),
            ControlMsg::SetSpd(mut spd) => {
                *spd = self.node.set_spd(*spd);
                self.retire(Retired::Spd(spd));
            }
            ControlMsg::SetRoutes(routes) => self.node.set_routes(*routes),
            ControlMsg::Neighbour { ip, mac, iface } => self.node.learn_neighbour(ip, mac, iface),
            ControlMsg::Transmit(bytes) => match Mbuf::from_slice(&self.pool.0, &bytes) {
                Ok(m) => self.node.transmit(m, &mut self.pool),
                Err(_) => self.node.counters.drops[GwDrop::NoBuffer.index()] += 1,
            },
            ControlMsg::CollectStats(reply) => {
                let _ = reply.send(self.stats());
            }
            ControlMsg::CollectCounters(reply) => {
                let _ = reply.send(self.counters());
            }
            ControlMsg::ResetMaxPollGap => {
                self.max_poll_gap_us = 0;
                self.max_control_us = 0;
                self.max_control_cpu_us = 0;
            }
            ControlMsg::Stop => {}
        }
    }

    /// Hands something replaced back to the control thread to be freed
    /// there (if its queue is full, it is freed here after all).
    fn retire(&self, what: Retired) {
        let _ = self.to_control.try_send(WorkerMsg::Retired(what));
    }

    /// A snapshot of this worker's own counters, without the per-SA lists.
    pub fn counters(&self) -> WorkerStats {
        let engine = self.node.engine();
        WorkerStats {
            worker: self.id,
            node: self.node.counters,
            esp: Default::default(),
            inbound_unattributed: engine.inbound().counters.snapshot(),
            outbound_unattributed: engine.outbound_counters.snapshot(),
            outbound: Vec::new(),
            inbound: Vec::new(),
            max_poll_gap_us: self.max_poll_gap_us,
            max_control_us: self.max_control_us,
            max_control_cpu_us: self.max_control_cpu_us,
            spd_cache_hits: engine.spd_cache().hits,
            spd_cache_misses: engine.spd_cache().misses,
            freed_at_stop: 0,
        }
    }

    /// A snapshot of this worker's counters and of every SA's.
    pub fn stats(&self) -> WorkerStats {
        let engine = self.node.engine();
        WorkerStats {
            outbound: engine
                .outbound_sas()
                .map(|(slot, sa)| SaStats {
                    spi: sa.config().spi,
                    slot: Some(slot),
                    algorithm: format!("{:?}/{}", sa.algorithm(), sa.backend()),
                    counters: sa.counters.snapshot(),
                    seq: sa.last_seq(),
                })
                .collect(),
            inbound: engine
                .inbound()
                .iter()
                .map(|sa| SaStats {
                    spi: sa.config().spi,
                    slot: None,
                    algorithm: format!("{:?}/{}", sa.algorithm(), sa.backend()),
                    counters: sa.counters.snapshot(),
                    seq: sa.replay_top(),
                })
                .collect(),
            ..self.counters()
        }
    }
}

/// The calling thread's on-CPU time (`CLOCK_THREAD_CPUTIME_ID`; zero if
/// the clock cannot be read).
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}
