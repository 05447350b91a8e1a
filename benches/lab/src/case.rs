//! The measured runs of one case through the gateway's data path
//! (`espresso-lab bench-case`, a child process per case: DPDK's EAL starts
//! once per process; it measures its windows back to back).
//!
//! Port 0 is DPDK's `net_pcap` replaying the case's pcap in a loop, port 1
//! is `net_null` swallowing what leaves. The gateway's own [`Worker`] —
//! the poll loop `espresso run` uses, feeding every Ethernet frame to
//! `Node::rx` — runs on its own thread pinned to the worker core; this
//! thread plays the control thread: it installs the SPD and the SAs
//! through the worker's control queue, waits out the warm-up, then takes
//! the worker's counters and on-CPU time at the start and end of the
//! measurement window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use dataplane::esp::SaRef;
use dataplane::gateway::{ControlMsg, GwDrop, Interface, Node, Role, WorkerMsg, WorkerStats};
use dataplane::route::RouteTable;
use dpdk::{register_thread, unregister_thread, Eal, Mempool, MempoolConfig, Port};
use dpdk::{Worker, WorkerPorts};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::cpu::ThreadClock;
use super::spec::{CaseSpec, Direction};
use super::traffic;

/// Mbufs for the data path, as in the baseline (`--total-num-mbufs`
/// there); the pcap PMD additionally holds one mbuf per frame of the file
/// for the whole run, so both pools are this plus the frame count.
pub const WORKING_MBUFS: u32 = 8192;
/// Per-lcore mempool cache, as in the baseline (`--mbcache`).
pub const MBUF_CACHE: u32 = 256;
/// EAL memory (MiB, no hugepages).
pub const EAL_MEMORY_MB: u32 = 1024;

/// How to run one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseRequest {
    /// The case.
    pub spec: CaseSpec,
    /// Its pcap.
    pub pcap: std::path::PathBuf,
    /// Frames in the pcap.
    pub pcap_frames: usize,
    /// Seconds of traffic before measuring.
    pub warmup_s: f64,
    /// Seconds measured per window.
    pub duration_s: f64,
    /// Measurement windows, back to back after one warm-up (each one a
    /// [`RunSample`]).
    #[serde(default = "one")]
    pub windows: usize,
    /// The core the worker runs on.
    pub worker_core: usize,
    /// The latency lab ([`super::latency`]): open these two devices as
    /// ports 0 and 1 instead of the pcap and net_null, and report the
    /// worker's counters on request until stdin closes instead of
    /// measuring.
    #[serde(default)]
    pub serve_ports: Option<[String; 2]>,
}

/// What one run measured (printed as one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSample {
    /// Frames sent on the output port during the window.
    pub packets: u64,
    /// Frames received from the pcap during the window.
    pub received: u64,
    /// Frames dropped during the window (any reason).
    pub dropped: u64,
    /// Wall-clock length of the window.
    pub wall_s: f64,
    /// Time the worker thread ran during the window.
    pub cpu_s: f64,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// The crypto backend the SAs used.
    pub backend: String,
    /// Seconds from process start until every SA was installed.
    pub setup_s: f64,
    /// TSC cycles of the bare AEAD on one frame's ESP payload, measured on
    /// the worker core after the run ([`super::aead`]); `None` for the
    /// baseline and for IMIX.
    #[serde(default)]
    pub aead_cycles: Option<f64>,
    /// SPD lookups the worker's flow cache answered during the window.
    #[serde(default)]
    pub spd_cache_hits: u64,
    /// SPD lookups that missed the flow cache during the window.
    #[serde(default)]
    pub spd_cache_misses: u64,
    /// Cache lines of per-SA state a packet reads, averaged over the SAs
    /// and the frame sizes of the case: the SA's hot lines, its transform
    /// object and the key schedule's lines for the frame's length (what
    /// the burst pipeline prefetches), the inbound SA's selectors and
    /// replay block, and the table entries that lead to the SA (flow
    /// cache and tunnel slot, or SPI slot). With more SAs than the cache
    /// holds, each is a miss; `None` for the baselines.
    #[serde(default)]
    pub sa_lines: Option<f64>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn one() -> usize {
    1
}

fn interfaces(direction: Direction) -> Result<Vec<Interface>, Error> {
    let lan = Interface {
        name: "lan".into(),
        mac: traffic::LAN_MAC,
        role: Role::Lan,
        addrs: vec![IpNet::new(traffic::LAN_ADDR.into(), 16)?],
        mtu: traffic::MTU,
        mss_clamp: None,
    };
    let wan = Interface {
        name: "wan".into(),
        mac: traffic::WAN_MAC,
        role: Role::Wan,
        addrs: vec![IpNet::new(traffic::WAN_ADDR.into(), 24)?],
        mtu: traffic::MTU,
        mss_clamp: None,
    };
    // Port 0 (the pcap) is where traffic enters.
    Ok(match direction {
        Direction::Encrypt => vec![lan, wan],
        Direction::Decrypt => vec![wan, lan],
    })
}

/// Sends a control message (the queue is sized for every message at once).
fn send(to_worker: &Sender<ControlMsg>, msg: ControlMsg) -> Result<(), Error> {
    to_worker.send(msg).map_err(|_| "the worker stopped".into())
}

/// The worker's counters (not the per-SA lists, whose snapshot would cost
/// the worker milliseconds with many SAs, inside the window).
fn collect(to_worker: &Sender<ControlMsg>, timeout: Duration) -> Result<WorkerStats, Error> {
    let (tx, rx) = bounded(1);
    send(to_worker, ControlMsg::CollectCounters(tx))?;
    Ok(rx.recv_timeout(timeout)?)
}

fn sent(s: &WorkerStats) -> u64 {
    s.node.tx - s.node.drops[GwDrop::TxFull.index()]
}

/// A gateway data path running in this process: EAL, the two ports and
/// the worker thread, with nothing installed yet.
pub(crate) struct Running {
    /// The worker's control queue.
    pub to_worker: Sender<ControlMsg>,
    /// What the worker sends back (its events queue).
    pub from_worker: Receiver<WorkerMsg>,
    /// The worker's other queues, kept open.
    _queues: dataplane::gateway::FromWorkers,
    /// The worker thread's on-CPU clock.
    pub clock: ThreadClock,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// When the process began setting up.
    pub started: Instant,
    handle: std::thread::JoinHandle<WorkerStats>,
    ports: (Port, Port),
}

impl Running {
    /// A counters snapshot (after every message sent before it); frees
    /// what the worker handed back meanwhile, as the gateway's control
    /// thread does.
    pub fn collect(&self, timeout: Duration) -> Result<WorkerStats, Error> {
        let s = collect(&self.to_worker, timeout);
        while self.from_worker.try_recv().is_ok() {}
        s
    }

    /// Stops the worker and closes the ports.
    pub fn stop(self) {
        let _ = self.to_worker.send(ControlMsg::Stop);
        let _ = self.handle.join();
        while self.from_worker.try_recv().is_ok() {}
        drop(self.ports);
    }
}

/// Frames the worker sent on the output port.
pub(crate) fn sent_frames(s: &WorkerStats) -> u64 {
    sent(s)
}

/// Starts EAL, the pcap and null ports and the worker (on
/// `req.worker_core`) for `req.spec`'s direction; `control_queue` is the
/// control queue's capacity.
pub(crate) fn start(req: &CaseRequest, control_queue: usize) -> Result<Running, Error> {
    let started = Instant::now();
    let spec = req.spec;
    control::eal_args::pin_before_eal(0);
    let eal = Eal::init(control::eal_args::eal_args(
        "espresso-bench",
        "0",
        EAL_MEMORY_MB,
        &["--log-level=pmd.net.pcap:warning".to_string()],
    ))?;
    let tsc_hz = eal.tsc_hz();
    let pool = Mempool::new(
        &eal,
        &MempoolConfig {
            name: "bench_pool".into(),
            size: WORKING_MBUFS + req.pcap_frames as u32,
            cache_size: MBUF_CACHE,
            data_room: 2048 + 128,
        },
    )?;
    let pcap = req
        .pcap
        .to_str()
        .ok_or("pcap path is not UTF-8")?
        .to_string();
    let cfg = dpdk::PortConfig::new(pool.clone());
    let [in_dev, out_dev] = req.serve_ports.clone().unwrap_or([
        format!("net_pcap0,rx_pcap={pcap},infinite_rx=1"),
        "net_null0,no-rx=1".to_string(),
    ]);
    let input = Port::open(&eal, &in_dev, &cfg)?;
    let output = Port::open(&eal, &out_dev, &cfg)?;

    let mut node: Node<dpdk::Mbuf> = Node::new(0, interfaces(spec.direction)?, RouteTable::new());
    let (lan_if, wan_if) = match spec.direction {
        Direction::Encrypt => (0, 1),
        Direction::Decrypt => (1, 0),
    };
    node.add_static_neighbour(traffic::PEER_ADDR.into(), traffic::HOST_MAC, wan_if);
    for h in 0..traffic::local_hosts(spec.sa_count) {
        node.add_static_neighbour(
            traffic::local_host(h << 16).into(),
            traffic::HOST_MAC,
            lan_if,
        );
    }
    let ports = WorkerPorts {
        rx: vec![
            Some(input.rx_queue(0).ok_or("rx queue")?),
            Some(output.rx_queue(0).ok_or("rx queue")?),
        ],
        tx: vec![
            input.tx_queue(0).ok_or("tx queue")?,
            output.tx_queue(0).ok_or("tx queue")?,
        ],
    };
    let (to_worker, control_rx) = bounded::<ControlMsg>(control_queue);
    let (to_control, queues) =
        dataplane::gateway::control_queues(dataplane::gateway::IkeSpiTables::empty());
    let from_worker = queues.events.clone();
    let handoff = Arc::new(ArrayQueue::new(2048));
    let worker = Worker::new(
        0,
        node,
        ports,
        pool.clone(),
        control_rx,
        to_control,
        handoff.clone(),
        vec![handoff],
        Duration::ZERO,
    );
    let eal: &'static Eal = Box::leak(Box::new(eal));
    let core = core_affinity::CoreId {
        id: req.worker_core,
    };
    let (clock_tx, clock_rx) = bounded(1);
    let handle = std::thread::Builder::new()
        .name("espresso-w0".into())
        .spawn(move || {
            core_affinity::set_for_current(core);
            let _ = register_thread(eal);
            for alg in dataplane::crypto::Algorithm::ALL {
                let _ = dataplane::crypto::available_backends(alg);
            }
            let _ = clock_tx.send(ThreadClock::current());
            let stats = worker.run();
            unregister_thread();
            stats
        })?;
    let clock = clock_rx.recv()??;

    Ok(Running {
        to_worker,
        from_worker,
        _queues: queues,
        clock,
        tsc_hz,
        started,
        handle,
        ports: (input, output),
    })
}

/// Runs one case in this process (which must not have started EAL): one
/// warm-up, then `req.windows` measurement windows back to back, a sample
/// each (at least one).
pub fn run(req: &CaseRequest) -> Result<Vec<RunSample>, Error> {
    let spec = req.spec;
    // Room for every install message at once.
    let gw = start(req, 2 * spec.sa_count as usize + 64)?;
    let Running {
        ref to_worker,
        ref from_worker,
        ref clock,
        tsc_hz,
        started,
        ..
    } = gw;
    // SAs and policies, through the control queue as `espresso run` does.
    let backend;
    let mut lines = SaLines::new(&spec);
    match spec.direction {
        Direction::Encrypt => {
            send(
                to_worker,
                ControlMsg::SetSpd(Box::new(
                    traffic::outbound_spd(spec.sa_count)?.with_flow_cache(),
                )),
            )?;
            let mut name = String::new();
            for i in 0..spec.sa_count {
                let sa = Box::new(traffic::gateway_outbound(&spec, i)?);
                if i == 0 {
                    name = sa.backend().name().to_string();
                }
                lines.add(|len| sa.lines_per_packet(len));
                send(
                    to_worker,
                    ControlMsg::InstallOutbound { slot: SaRef(i), sa },
                )?;
            }
            backend = name;
        }
        Direction::Decrypt => {
            let mut name = String::new();
            for i in 0..spec.sa_count {
                let sa = Box::new(traffic::gateway_inbound(&spec, i)?);
                if i == 0 {
                    name = sa.backend().name().to_string();
                }
                lines.add(|len| sa.lines_per_packet(len));
                send(to_worker, ControlMsg::InstallInbound(sa))?;
            }
            backend = name;
        }
    }
    // The reply comes after every message before it was applied.
    collect(to_worker, Duration::from_secs(300))?;
    let setup_s = started.elapsed().as_secs_f64();
    if req.serve_ports.is_some() {
        let sample = super::latency::serve_counters(clock, tsc_hz, &backend, setup_s, || {
            while from_worker.try_recv().is_ok() {}
            let s = collect(to_worker, Duration::from_secs(5))?;
            send(to_worker, ControlMsg::ResetMaxPollGap)?;
            Ok(s)
        });
        gw.stop();
        return sample.map(|s| vec![s]);
    }

    std::thread::sleep(Duration::from_secs_f64(req.warmup_s));
    let drain = |rx: &Receiver<WorkerMsg>| while rx.try_recv().is_ok() {};
    drain(from_worker);
    // Each window ends where the next begins: (on-CPU, wall, counters).
    let mut marks = vec![(
        clock.on_cpu()?,
        Instant::now(),
        collect(to_worker, Duration::from_secs(5))?,
    )];
    for _ in 0..req.windows.max(1) {
        std::thread::sleep(Duration::from_secs_f64(req.duration_s));
        marks.push((
            clock.on_cpu()?,
            Instant::now(),
            collect(to_worker, Duration::from_secs(5))?,
        ));
    }
    gw.stop();
    // The worker has stopped: its core is free for the bare AEAD figure.
    core_affinity::set_for_current(core_affinity::CoreId {
        id: req.worker_core,
    });
    let aead_cycles = super::aead::measure(&spec);

    Ok(marks
        .windows(2)
        .map(|w| {
            let ((c0, t0, s0), (c1, t1, s1)) = (&w[0], &w[1]);
            RunSample {
                packets: sent(s1) - sent(s0),
                received: s1.node.rx - s0.node.rx,
                dropped: s1.node.total_drops() - s0.node.total_drops(),
                wall_s: (*t1 - *t0).as_secs_f64(),
                cpu_s: (*c1 - *c0).as_secs_f64(),
                tsc_hz,
                backend: backend.clone(),
                setup_s,
                aead_cycles,
                spd_cache_hits: s1.spd_cache_hits - s0.spd_cache_hits,
                spd_cache_misses: s1.spd_cache_misses - s0.spd_cache_misses,
                sa_lines: lines.mean(),
            }
        })
        .collect())
}

/// The per-SA cache lines a packet of the case reads (see
/// [`RunSample::sa_lines`]), summed over the SAs as they are built.
struct SaLines {
    /// The length the burst pipeline picks key lines by (the frame as
    /// received, without FCS) for each frame of the size pattern.
    lens: Vec<usize>,
    /// Lines of the worker's tables per packet besides the SA's own.
    tables: u32,
    sum: u64,
    count: u64,
}

impl SaLines {
    fn new(spec: &CaseSpec) -> Self {
        let alg = spec.algorithm.algorithm();
        let lens = (0..spec.frame.period())
            .map(|j| {
                let frame = usize::from(spec.frame.size_of(j)) - 4;
                match spec.direction {
                    Direction::Encrypt => frame,
                    // Tunnel mode adds an outer IPv4 header (UDP when
                    // encapsulated), the ESP header, IV, trailer and ICV
                    // (RFC 4303 §2).
                    Direction::Decrypt => {
                        let inner = frame - 14;
                        let padded =
                            (inner + 2).div_ceil(alg.block_size().max(4)) * alg.block_size().max(4);
                        14 + 20
                            + if spec.udp_encap { 8 } else { 0 }
                            + 8
                            + alg.iv_len()
                            + padded
                            + alg.icv_len()
                    }
                }
            })
            .collect();
        Self {
            lens,
            // Encrypt: the flow cache's signature line and the flow's key
            // line, and the tunnel slot's line (egress and SA hint);
            // decrypt: the SPI table's slot.
            tables: match spec.direction {
                Direction::Encrypt => 3,
                Direction::Decrypt => 1,
            },
            sum: 0,
            count: 0,
        }
    }

    /// Adds one SA, given its lines for a frame length.
    fn add(&mut self, per_len: impl Fn(usize) -> u32) {
        for &len in &self.lens {
            self.sum += u64::from(per_len(len) + self.tables);
            self.count += 1;
        }
    }

    /// The mean over SAs and frames, if any SA was added.
    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BenchAlgorithm, FrameSize};

    /// The lengths the estimate picks key lines by: the frame as received
    /// (no FCS), for decrypt the ESP frame of the plaintext size, and the
    /// mean adds the table lines once per packet.
    #[test]
    fn sa_lines_follow_the_frames_and_add_the_tables() {
        let spec = |direction| CaseSpec {
            direction,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Imix,
            udp_encap: false,
            sa_count: 2,
            scale_frames: 0,
        };
        let mut enc = SaLines::new(&spec(Direction::Encrypt));
        assert_eq!(&enc.lens[..4], &[60, 566, 60, 1514]);
        assert_eq!(enc.mean(), None);
        enc.add(|len| if len < 100 { 10 } else { 20 });
        enc.add(|len| if len < 100 { 10 } else { 20 });
        // 7 of 12 frames short: 3 + (7 × 10 + 5 × 20) / 12.
        let mean = enc.mean().unwrap_or(0.0);
        assert!((mean - (3.0 + 170.0 / 12.0)).abs() < 1e-9, "{mean}");
        // 64 bytes: 46 of IP, padded with its trailer to 48; then outer
        // IPv4, ESP header, IV and ICV around it.
        let dec = SaLines::new(&spec(Direction::Decrypt));
        assert_eq!(dec.lens[0], 14 + 20 + 8 + 8 + 48 + 16);
        assert_eq!(dec.tables, 1);
    }
}
