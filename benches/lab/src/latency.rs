//! Latency percentiles and the zero-loss rate (`espresso-lab bench`, after the
//! throughput cases).
//!
//! Topology, per case and per device under test (DUT), both on this
//! machine's two cores:
//!
//! ```text
//!   loadgen (core 0)                      DUT (worker core 1)
//!   generator --memif "in"  (client) --> port 0 (server)
//!   sink      <-memif "out" (client) --  port 1 (server)
//! ```
//!
//! The DUT is the gateway's own data path (`espresso-lab bench-case` with its
//! ports given as `net_memif` servers, serving its counters on stdin), then
//! `dpdk-testpmd --forward-mode=io` on the same two memif ports as the
//! baseline. The generator and sink ([`super::loadgen`]) are one DPDK
//! process sharing core 0 with everything else on the machine.
//!
//! For each DUT: a warm-up, then one trial offering frames as fast as the
//! generator can, whose received rate is that DUT's maximum in this
//! topology; then latency trials at 10 %, 50 % and 90 % of the gateway's
//! maximum (the baseline is measured at the same offered rates, so the two
//! are compared at equal load), each frame's one-way latency going into an
//! HDR histogram; then a binary search for the highest offered rate with
//! no loss (RFC 2544 §26.1 throughput; trials of `trial_s` seconds instead
//! of the RFC's 60, loss counted exactly as offered minus received, and
//! for the gateway its drop counters read before and after every trial).
//!
//! Then, per case, the maximum and the zero-loss search once more over
//! veth pairs ([`run_veth_zero_loss`]): the DUT's ports and the
//! generator's are `net_af_packet` sockets on the two ends of two veth
//! pairs between two namespaces of the lab's own, so every frame crosses
//! the kernel as it does between the namespaces of the two-site topology.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::gateway::{GwDrop, WorkerStats, POLL_GAP_BUCKETS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use testkit::netns::{self, Netns};

use super::case::{CaseRequest, RunSample, EAL_MEMORY_MB, MBUF_CACHE, WORKING_MBUFS};
use super::cpu::{threads, ThreadClock};
use super::loadgen::{LoadgenRequest, Trial, TrialResult};
use super::report::CaseRecord;
use super::report::{md_table, text_table};
use super::spec::{BenchAlgorithm, CaseSpec, Direction, FrameSize};
use super::testpmd::{wait_for, EmptyDirGuard, Reaper};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Loads at which latency is measured, in percent of the gateway's
/// maximum rate in this topology.
pub const LOAD_POINTS: [u32; 3] = [10, 50, 90];
/// The share of a search trial's target frames the generator must offer
/// for the trial to count as loss-free.
pub const MIN_OFFERED: f64 = 0.95;
/// The DUT names in the records.
pub const GATEWAY: &str = "espresso";
/// See [`GATEWAY`].
pub const BASELINE: &str = "testpmd io";
/// testpmd io at [`LOAD_POINTS`] of its own maximum, where the baseline is
/// as loaded as the gateway is at the same points of its maximum (at the
/// gateway's rates it runs at about half the utilisation, and queues
/// after a stall of the host drain several times faster).
pub const BASELINE_OWN_LOAD: &str = "testpmd io, own load";

/// How to run the latency lab.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// The cases (one SA each).
    pub cases: Vec<CaseSpec>,
    /// Seconds of unpaced traffic before the first measurement.
    pub warmup_s: f64,
    /// Seconds per trial.
    pub trial_s: f64,
    /// Latency trials per load point; the one with the median p99 is
    /// reported. One trial's p99 on this VM is a sample of the host's
    /// stalls: testpmd io at the same load gave 29 and 144 µs in two
    /// cases whose traffic it forwards identically.
    pub trials_per_point: usize,
    /// Halvings of the zero-loss search interval.
    pub search_steps: usize,
}

impl LatencyOptions {
    /// `make bench`: 64-byte AES-128-GCM both ways, trials of one second,
    /// six halvings (a resolution of 1/64 of the maximum).
    pub fn standard() -> Self {
        Self {
            cases: matrix(),
            warmup_s: 0.5,
            trial_s: 1.0,
            trials_per_point: 3,
            search_steps: 6,
        }
    }

    /// `--quick`: the same cases, short trials, three halvings.
    pub fn quick() -> Self {
        Self {
            cases: matrix(),
            warmup_s: 0.1,
            trial_s: 0.15,
            trials_per_point: 1,
            search_steps: 3,
        }
    }
}

/// The latency cases: AES-128-GCM, 64-byte frames, one SA, both ways.
pub fn matrix() -> Vec<CaseSpec> {
    Direction::ALL
        .iter()
        .map(|&direction| CaseSpec {
            direction,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Fixed(64),
            udp_encap: false,
            sa_count: 1,
            scale_frames: 0,
        })
        .collect()
}

/// The gateway's counters, one JSON line per request in serve mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DutCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames sent.
    pub sent: u64,
    /// Frames dropped, any reason.
    pub dropped: u64,
    /// Nanoseconds the worker thread has been on a CPU.
    pub cpu_ns: u64,
    /// Times the scheduler took the worker thread's CPU (so far).
    #[serde(default)]
    pub preempted: u64,
    /// The worker's polls since the previous request, by gap to the next
    /// poll (buckets as `WorkerStats::poll_gaps`: under 1 µs, 1, 2-3,
    /// 4-7, ... µs).
    #[serde(default)]
    pub poll_gaps: Vec<u64>,
    /// The longest poll gap since the previous request (µs).
    #[serde(default)]
    pub max_poll_gap_us: u64,
    /// That gap taken apart: control work, forwarding, flush, the rest
    /// until the next poll (µs).
    #[serde(default)]
    pub slowest_poll_us: [u64; 4],
}

impl DutCounters {
    fn of(s: &WorkerStats, clock: &ThreadClock) -> Result<Self, Error> {
        Ok(Self {
            rx: s.node.rx,
            sent: s.node.tx - s.node.drops[GwDrop::TxFull.index()],
            dropped: s.node.total_drops(),
            cpu_ns: clock.on_cpu()?.as_nanos() as u64,
            preempted: clock.preemptions()?,
            poll_gaps: s.poll_gaps.to_vec(),
            max_poll_gap_us: s.max_poll_gap_us,
            slowest_poll_us: {
                let p = &s.slowest_poll;
                [p.control_us, p.forward_us, p.flush_us, p.rest_us]
            },
        })
    }
}

/// Polls in `poll_gaps` buckets that took at least 16 µs to come round
/// again: at 64 B and line rate on memif, 16 µs is a full burst of 32
/// frames waiting twice over.
pub fn slow_polls(poll_gaps: &[u64]) -> u64 {
    poll_gaps.iter().skip(SLOW_POLL_BUCKET).sum()
}

/// The first [`POLL_GAP_BUCKETS`] bucket counted by [`slow_polls`] (16 µs
/// and longer).
const SLOW_POLL_BUCKET: usize = 5;
const _: () = assert!(SLOW_POLL_BUCKET < POLL_GAP_BUCKETS);

/// The gateway's side of the lab (`bench-case` in serve mode): prints its
/// counters once now and once per line read on stdin, until stdin closes;
/// returns the totals over that time. `collect` returns the worker's
/// statistics and starts its poll-gap figures afresh, so that each line's
/// poll gaps cover the time since the previous line.
pub fn serve_counters(
    clock: &ThreadClock,
    tsc_hz: u64,
    backend: &str,
    setup_s: f64,
    mut collect: impl FnMut() -> Result<WorkerStats, Error>,
) -> Result<RunSample, Error> {
    let c0 = clock.on_cpu()?;
    let t0 = Instant::now();
    let first = DutCounters::of(&collect()?, clock)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&first)?)?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line?;
        let c = DutCounters::of(&collect()?, clock)?;
        writeln!(out, "{}", serde_json::to_string(&c)?)?;
        out.flush()?;
    }
    let last = DutCounters::of(&collect()?, clock)?;
    Ok(RunSample {
        packets: last.sent - first.sent,
        received: last.rx - first.rx,
        dropped: last.dropped - first.dropped,
        wall_s: t0.elapsed().as_secs_f64(),
        cpu_s: (clock.on_cpu()? - c0).as_secs_f64(),
        tsc_hz,
        backend: backend.to_string(),
        setup_s,
        aead_cycles: None,
        spd_cache_hits: 0,
        spd_cache_misses: 0,
        sa_lines: None,
    })
}

/// One load point of one DUT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRecord {
    /// `encrypt` or `decrypt`.
    pub direction: String,
    /// strongSwan-style suite name.
    pub algorithm: String,
    /// Frame size (FCS included).
    pub frame_size: String,
    /// ESP in UDP.
    pub udp_encap: bool,
    /// SAs.
    pub sa_count: u32,
    /// `espresso` or `testpmd io`.
    pub dut: String,
    /// Percent of the gateway's maximum rate in this topology.
    pub load_pct: u32,
    /// The offered rate asked for (Mpps).
    pub target_mpps: f64,
    /// The rate the generator offered (Mpps).
    pub offered_mpps: f64,
    /// The rate that came back (Mpps).
    pub received_mpps: f64,
    /// Frames offered and not received.
    pub lost: u64,
    /// Latencies recorded.
    pub samples: u64,
    /// One-way latency, median (µs).
    pub p50_us: f64,
    /// 99th percentile (µs), of the trial with the median p99.
    pub p99_us: f64,
    /// Every trial's p99 at this point (µs), in the order run.
    #[serde(default)]
    pub p99_trials_us: Vec<f64>,
    /// 99.9th percentile (µs).
    pub p999_us: f64,
    /// Maximum (µs).
    pub max_us: f64,
    /// The gateway's own drop counters over the trial (none for testpmd).
    pub dut_drops: Option<u64>,
    /// Share of the trial the DUT's forwarding thread was on a CPU.
    pub dut_cpu_share: f64,
    /// Share of the trial the generator's thread was on a CPU.
    pub gen_cpu_share: f64,
    /// Times the scheduler took the CPU from the DUT's forwarding thread
    /// during the trial.
    #[serde(default)]
    pub dut_preempted: u64,
    /// The same for the generator's thread.
    #[serde(default)]
    pub gen_preempted: u64,
    /// The gateway worker's longest gap between two polls in the trial
    /// (µs; testpmd does not report it).
    #[serde(default)]
    pub dut_max_poll_gap_us: Option<u64>,
    /// That gap taken apart: control work, forwarding, flush, the rest
    /// until the next poll (µs).
    #[serde(default)]
    pub dut_slowest_poll_us: Option<[u64; 4]>,
    /// The gateway worker's polls in the trial by gap to the next poll
    /// (buckets: under 1 µs, 1, 2-3, 4-7, ... µs).
    #[serde(default)]
    pub dut_poll_gaps: Option<Vec<u64>>,
}

/// One trial of the zero-loss search.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SearchStep {
    /// The rate tried (Mpps).
    pub target_mpps: f64,
    /// The rate the generator managed to offer (Mpps). A trial that
    /// offered less than [`MIN_OFFERED`] of the target (the generator
    /// lost its shared core) does not count as loss-free.
    pub offered_mpps: f64,
    /// Frames lost.
    pub lost: u64,
    /// The gateway's drop counters over the trial.
    pub dut_drops: Option<u64>,
    /// Share of the trial the DUT's forwarding thread was on a CPU.
    pub dut_cpu_share: f64,
    /// Share of the trial the generator's thread was on a CPU.
    pub gen_cpu_share: f64,
}

/// One DUT's maximum and zero-loss rates for a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroLossRecord {
    /// `encrypt` or `decrypt`.
    pub direction: String,
    /// strongSwan-style suite name.
    pub algorithm: String,
    /// Frame size (FCS included).
    pub frame_size: String,
    /// ESP in UDP.
    pub udp_encap: bool,
    /// SAs.
    pub sa_count: u32,
    /// `espresso` or `testpmd io`.
    pub dut: String,
    /// How the generator reached the DUT: `memif` (two memif pairs) or
    /// `veth` (`net_af_packet` on two veth pairs, through the kernel).
    #[serde(default = "memif_topology")]
    pub topology: String,
    /// Received Mpps while the generator offered all it could.
    pub max_mpps: f64,
    /// Highest offered Mpps with no loss found by the search (0 if even
    /// the lowest rate tried lost frames).
    pub zero_loss_mpps: f64,
    /// The same DUT's loop-replay rate (net_pcap to net_null) for this
    /// case, from the throughput cases of the same run, if they ran.
    pub loop_replay_mpps: Option<f64>,
    /// Seconds per trial.
    pub trial_s: f64,
    /// The search's trials in order.
    pub steps: Vec<SearchStep>,
}

/// [`ZeroLossRecord::topology`] of the memif pairs (and of records
/// written before the field existed).
pub const TOPOLOGY_MEMIF: &str = "memif";
/// [`ZeroLossRecord::topology`] of the veth pairs.
pub const TOPOLOGY_VETH: &str = "veth";

fn memif_topology() -> String {
    TOPOLOGY_MEMIF.into()
}

/// RFC 2544 §26.1-style binary search: the highest rate in `(0, max]`
/// at which `no_loss` holds, to within `max / 2^steps`. Tries `max`
/// first; returns 0 if no rate tried was loss-free.
pub fn zero_loss_search<E>(
    max: f64,
    steps: usize,
    mut no_loss: impl FnMut(f64) -> Result<bool, E>,
) -> Result<f64, E> {
    if no_loss(max)? {
        return Ok(max);
    }
    let (mut lo, mut hi) = (0.0, max);
    for _ in 0..steps {
        let mid = (lo + hi) / 2.0;
        if no_loss(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A child process spoken to in JSON lines; killed and reaped on drop.
struct LineChild {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
    what: String,
}

impl LineChild {
    fn spawn(mut cmd: Command, log: PathBuf, what: String) -> Result<Self, Error> {
        let err = std::fs::File::create(&log)?;
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("stdout")?);
        Ok(Self {
            child: Some(child),
            stdin,
            stdout,
            log,
            what,
        })
    }

    fn failed(&self, why: &str) -> Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = log
            .chars()
            .rev()
            .take(1500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{}: {why}: {}", self.what, tail.trim()).into()
    }

    /// The next JSON line (other output, e.g. DPDK's, is skipped).
    fn read<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                return Err(self.failed("exited"));
            }
            if line.starts_with('{') {
                return serde_json::from_str(line.trim()).map_err(|e| self.failed(&e.to_string()));
            }
        }
    }

    fn request<Q: Serialize, T: DeserializeOwned>(&mut self, q: &Q) -> Result<T, Error> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{}", serde_json::to_string(q)?)?;
        stdin.flush()?;
        self.read()
    }

    /// Closes stdin and waits for a clean exit.
    fn finish(mut self) -> Result<(), Error> {
        drop(self.stdin.take());
        let mut child = self.child.take().ok_or("no child")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(self.failed(&format!("exited with {status}")))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.failed("did not exit"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a DUT says at one moment.
struct DutSample {
    /// Its drop counters, where it has them (the gateway; testpmd's are
    /// not read).
    drops: Option<u64>,
    /// Its forwarding thread's on-CPU time.
    cpu: Duration,
    /// Times that thread was preempted.
    preempted: u64,
    /// The gateway's poll gaps since the previous sample.
    polls: Option<DutCounters>,
}

/// A device under test.
trait Dut {
    fn sample(&mut self) -> Result<DutSample, Error>;
}

struct GatewayDut(LineChild);

impl Dut for GatewayDut {
    fn sample(&mut self) -> Result<DutSample, Error> {
        let c: DutCounters = self.0.request(&"counters")?;
        Ok(DutSample {
            drops: Some(c.dropped),
            cpu: Duration::from_nanos(c.cpu_ns),
            preempted: c.preempted,
            polls: Some(c),
        })
    }
}

/// testpmd io between the DUT's two ports, interactive over a pipe.
struct TestpmdDut {
    child: Reaper,
    stdin: ChildStdin,
    reader: std::thread::JoinHandle<()>,
    clock: ThreadClock,
    _runtime_dir: EmptyDirGuard,
}

impl Dut for TestpmdDut {
    fn sample(&mut self) -> Result<DutSample, Error> {
        Ok(DutSample {
            drops: None,
            cpu: self.clock.on_cpu()?,
            preempted: self.clock.preemptions()?,
            polls: None,
        })
    }
}

impl TestpmdDut {
    fn start(ctx: &LatencyContext, links: &Links, run_id: usize) -> Result<Self, Error> {
        let prefix = format!(
            "espresso-lat-testpmd-{}-{}-{run_id}",
            std::process::id(),
            links.name
        );
        let runtime_dir = EmptyDirGuard(PathBuf::from(format!("/var/run/dpdk/{prefix}")));
        let child = links
            .command(false, ctx.testpmd)
            .args(["-l", &format!("{},{}", ctx.loadgen_core, ctx.worker_core)])
            .arg(format!("--main-lcore={}", ctx.loadgen_core))
            .args(["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry"])
            .arg(format!("--file-prefix={prefix}"))
            .args(["-m", &EAL_MEMORY_MB.to_string()])
            .args([
                "--log-level=lib.eal:warning",
                "--log-level=pmd.net.memif:error",
            ])
            .args(["--vdev", &links.dut[0]])
            .args(["--vdev", &links.dut[1]])
            .args([
                "--",
                "-i",
                "--forward-mode=io",
                "--nb-cores=1",
                "--rxq=1",
                "--txq=1",
                "--rxd=1024",
                "--txd=1024",
                "--burst=32",
            ])
            .arg(format!("--total-num-mbufs={WORKING_MBUFS}"))
            .arg(format!("--mbcache={MBUF_CACHE}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", ctx.testpmd.display()))?;
        let mut child = Reaper(child);
        let mut stdin = child.0.stdin.take().ok_or("testpmd stdin")?;
        let stdout = child.0.stdout.take().ok_or("testpmd stdout")?;
        let (out, reader) = super::testpmd::spawn_reader(stdout);
        if !wait_for(&out, "testpmd> ", 1, Duration::from_secs(60)) {
            return Err(format!("testpmd ({}) did not come up", links.name).into());
        }
        stdin.write_all(b"start\n")?;
        stdin.flush()?;
        // The forwarding lcore's thread (named as in testpmd.rs).
        let wanted: Vec<String> = ["rte-worker", "lcore-worker", "dpdk-worker"]
            .iter()
            .map(|p| format!("{p}-{}", ctx.worker_core))
            .collect();
        let clock = threads(child.0.id())?
            .into_iter()
            .find(|t| t.name().is_ok_and(|n| wanted.contains(&n)))
            .ok_or_else(|| format!("testpmd has no thread {}", wanted.join(" or ")))?;
        Ok(Self {
            child,
            stdin,
            reader,
            clock,
            _runtime_dir: runtime_dir,
        })
    }

    fn finish(self) -> Result<(), Error> {
        let Self {
            child,
            mut stdin,
            reader,
            clock: _,
            _runtime_dir,
        } = self;
        stdin.write_all(b"stop\nquit\n")?;
        stdin.flush()?;
        drop(stdin);
        // Kills testpmd if it is still up, which ends the reader.
        child.finish(Duration::from_secs(30))?;
        let _ = reader.join();
        Ok(())
    }
}

/// Where and how the lab runs.
#[derive(Debug)]
pub struct LatencyContext<'a> {
    /// The options.
    pub opts: &'a LatencyOptions,
    /// The `espresso` binary.
    pub espresso: &'a Path,
    /// The testpmd binary.
    pub testpmd: &'a Path,
    /// A directory for the memif sockets and the children's logs.
    pub tmp: &'a Path,
    /// The DUT's forwarding core.
    pub worker_core: usize,
    /// The generator's core (and every DPDK main lcore).
    pub loadgen_core: usize,
}

/// A trial as the DUT saw it.
#[derive(Debug, Clone)]
struct DutView {
    /// Its drop counters over the trial, where it has them.
    drops: Option<u64>,
    /// Share of the trial its forwarding thread was on a CPU.
    cpu_share: f64,
    /// Times its forwarding thread was preempted in the trial.
    preempted: u64,
    /// The gateway's poll gaps over the trial.
    polls: Option<DutCounters>,
}

/// A load point: percent, rate (pps), the trial with the median p99 and
/// what the DUT saw in it, and every trial's p99 (µs).
type Point = (u32, f64, TrialResult, DutView, Vec<f64>);

/// What one DUT measured.
struct DutRun {
    max: TrialResult,
    points: Vec<Point>,
    /// With given rates, the same loads of this DUT's own maximum too.
    own_points: Vec<Point>,
    zero_loss_pps: f64,
    steps: Vec<SearchStep>,
}

fn trial(
    gen: &mut LineChild,
    dut: &mut dyn Dut,
    t: Trial,
) -> Result<(TrialResult, DutView), Error> {
    let a = dut.sample()?;
    let t0 = Instant::now();
    let r: TrialResult = gen.request(&t)?;
    let wall = t0.elapsed();
    let b = dut.sample()?;
    Ok((
        r,
        DutView {
            drops: a.drops.zip(b.drops).map(|(a, b)| b - a),
            cpu_share: b.cpu.saturating_sub(a.cpu).as_secs_f64() / wall.as_secs_f64(),
            preempted: b.preempted.saturating_sub(a.preempted),
            polls: b.polls,
        },
    ))
}

/// Warm-up, maximum, latency at `LOAD_POINTS` of this DUT's own maximum
/// and, if given, at other rates too (with `latency`), zero-loss search.
fn measure(
    ctx: &LatencyContext,
    gen: &mut LineChild,
    dut: &mut dyn Dut,
    rates: Option<&[(u32, f64)]>,
    latency: bool,
) -> Result<DutRun, Error> {
    let o = ctx.opts;
    let unpaced = |s| Trial {
        rate_pps: None,
        duration_s: s,
        latency: false,
    };
    // A trial of the usual length at `rate` packets per second.
    let paced = |rate, latency| Trial {
        rate_pps: Some(rate),
        duration_s: o.trial_s,
        latency,
    };
    trial(gen, dut, unpaced(o.warmup_s))?;
    let (max, _) = trial(gen, dut, unpaced(o.trial_s))?;
    let max_pps = max.received_pps();
    if max.received == 0 || !max_pps.is_finite() {
        return Err(format!("nothing came back through the DUT ({max:?})").into());
    }
    let own: Vec<(u32, f64)> = LOAD_POINTS
        .iter()
        .map(|&p| (p, max_pps * f64::from(p) / 100.0))
        .collect();
    let mut at = |rates: &[(u32, f64)]| -> Result<Vec<Point>, Error> {
        let mut points = Vec::new();
        for &(pct, rate) in rates {
            let mut runs = Vec::new();
            for _ in 0..o.trials_per_point.max(1) {
                runs.push(trial(gen, dut, paced(rate, true))?);
            }
            let p99s: Vec<f64> = runs.iter().map(|(r, _)| r.p99_us).collect();
            runs.sort_by(|a, b| a.0.p99_us.total_cmp(&b.0.p99_us));
            let (r, view) = runs.swap_remove(runs.len() / 2);
            points.push((pct, rate, r, view, p99s));
        }
        Ok(points)
    };
    let (points, own_points) = match rates {
        _ if !latency => (Vec::new(), Vec::new()),
        Some(given) => (at(given)?, at(&own)?),
        None => (at(&own)?, Vec::new()),
    };
    let mut steps = Vec::new();
    let zero_loss_pps = zero_loss_search(max_pps, o.search_steps, |rate| -> Result<bool, Error> {
        let (r, view) = trial(gen, dut, paced(rate, false))?;
        let full = r.offered as f64 >= MIN_OFFERED * rate * o.trial_s;
        steps.push(SearchStep {
            target_mpps: rate / 1e6,
            offered_mpps: r.offered_pps() / 1e6,
            lost: r.lost(),
            dut_drops: view.drops,
            dut_cpu_share: view.cpu_share,
            gen_cpu_share: r.gen_cpu_share,
        });
        Ok(full && r.lost() == 0 && view.drops.unwrap_or(0) == 0)
    })?;
    Ok(DutRun {
        max,
        points,
        own_points,
        zero_loss_pps,
        steps,
    })
}

fn start_loadgen(
    ctx: &LatencyContext,
    spec: &CaseSpec,
    links: &Links,
    tag: &str,
) -> Result<LineChild, Error> {
    let req = LoadgenRequest {
        spec: *spec,
        ports: links.gen.clone(),
        core: ctx.loadgen_core,
    };
    let mut cmd = links.command(true, ctx.espresso);
    cmd.arg("bench-loadgen")
        .arg("--request")
        .arg(serde_json::to_string(&req)?);
    let mut gen = LineChild::spawn(
        cmd,
        ctx.tmp.join(format!("{tag}-loadgen.log")),
        format!("loadgen for {}", spec.name()),
    )?;
    let _ready: serde_json::Value = gen.read()?;
    Ok(gen)
}

/// The gateway's data path as the DUT (`bench-case` serving `links.dut`).
fn start_gateway(
    ctx: &LatencyContext,
    spec: &CaseSpec,
    links: &Links,
    tag: &str,
) -> Result<GatewayDut, Error> {
    let req = CaseRequest {
        spec: *spec,
        pcap: PathBuf::new(),
        pcap_frames: 0,
        warmup_s: 0.0,
        duration_s: 0.0,
        windows: 1,
        worker_core: ctx.worker_core,
        serve_ports: Some(links.dut.clone()),
    };
    let mut cmd = links.command(false, ctx.espresso);
    cmd.arg("bench-case")
        .arg("--request")
        .arg(serde_json::to_string(&req)?);
    let gw_child = LineChild::spawn(
        cmd,
        ctx.tmp.join(format!("{tag}-dut.log")),
        format!("gateway for {}", spec.name()),
    )?;
    let mut gw = GatewayDut(gw_child);
    let _ready: DutCounters = gw.0.read()?;
    Ok(gw)
}

/// How the generator reaches a DUT: the `--vdev` arguments of the DUT's
/// two ports and of the generator's, and the network namespaces each side
/// runs in (if any).
#[derive(Debug, Clone)]
struct Links {
    /// `memif` or `veth`, as the records name it.
    name: &'static str,
    dut: [String; 2],
    gen: [String; 2],
    /// The DUT's namespace, then the generator's.
    netns: [Option<String>; 2],
}

impl Links {
    /// Two memif pairs: the DUT's ports are the servers.
    fn memif(ctx: &LatencyContext, tag: &str) -> Result<Self, Error> {
        let socks = [
            ctx.tmp.join(format!("{tag}-in.sock")),
            ctx.tmp.join(format!("{tag}-out.sock")),
        ];
        let s = |i: usize| socks[i].to_str().ok_or("socket path");
        let dev = |i: usize, role: &str| -> Result<String, Error> {
            Ok(format!(
                "net_memif{i},role={role},socket={},socket-abstract=no",
                s(i)?
            ))
        };
        Ok(Self {
            name: TOPOLOGY_MEMIF,
            dut: [dev(0, "server")?, dev(1, "server")?],
            gen: [dev(0, "client")?, dev(1, "client")?],
            netns: [None, None],
        })
    }

    /// `net_af_packet` on the two veth pairs of `ns`.
    fn veth(ns: &VethPairs) -> Self {
        let dev = |i: usize, iface: &str| format!("net_af_packet{i},iface={iface},framecnt=2048");
        Self {
            name: TOPOLOGY_VETH,
            dut: [dev(0, VethPairs::DUT[0]), dev(1, VethPairs::DUT[1])],
            gen: [dev(0, VethPairs::GEN[0]), dev(1, VethPairs::GEN[1])],
            netns: [Some(ns.dut()), Some(ns.gen())],
        }
    }

    /// `program` for the DUT's side (`gen` false) or the generator's, run
    /// in that side's namespace if it has one (`ip netns exec` execs it:
    /// the child's PID is the program's).
    fn command(&self, gen: bool, program: &Path) -> Command {
        match &self.netns[usize::from(gen)] {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// Two network namespaces of the lab's own, one for the generator and one
/// for the DUT, joined by two veth pairs: `zg0`-`zd0` into the DUT,
/// `zd1`-`zg1` out of it. No addresses and IPv6 off, so the kernel sends
/// nothing of its own on them. Two namespaces rather than one because
/// DPDK's `net_af_packet` names its `PACKET_FANOUT` group after its PID
/// and the interface index, and packet fanout groups are per namespace:
/// the DUT's and the generator's groups could collide in one (the socket
/// then fails with EINVAL). Deleted (with the veths) on drop.
#[derive(Debug)]
pub struct VethPairs {
    dut: Netns,
    gen: Netns,
}

impl VethPairs {
    /// The generator's ends: input side, sink side.
    const GEN: [&'static str; 2] = ["zg0", "zg1"];
    /// The DUT's ends: its input port, its output port.
    const DUT: [&'static str; 2] = ["zd0", "zd1"];

    /// Namespaces of their own, `esp-zd-<pid>-<n>` and `esp-zg-<pid>-<n>`
    /// (testkit's naming); those of a run that did not get to delete its
    /// own (killed) go first. Needs root: the error says why not.
    pub fn for_case(n: usize) -> Result<Self, Error> {
        netns::remove_stale();
        let dut = Netns::create(netns::name_for("zd", Some(n)))?;
        let gen = Netns::create(netns::name_for("zg", Some(n)))?;
        for (ge, de) in Self::GEN.iter().zip(Self::DUT) {
            gen.veth_to(ge, &dut, de)?;
        }
        Ok(Self { dut, gen })
    }

    fn dut(&self) -> String {
        self.dut.name().to_string()
    }

    fn gen(&self) -> String {
        self.gen.name().to_string()
    }
}

/// Runs one case through the gateway and then testpmd over memif; returns
/// the latency records (both DUTs, every load point) and the two
/// zero-loss records. `loop_replay` is the (gateway, testpmd) Mpps of the
/// same case from the throughput lab, if it ran.
pub fn run_case(
    ctx: &LatencyContext,
    spec: &CaseSpec,
    n: usize,
    loop_replay: Option<(f64, f64)>,
) -> Result<(Vec<LatencyRecord>, Vec<ZeroLossRecord>), Error> {
    let (gw_run, tp_run, links) =
        gateway_then_testpmd(ctx, spec, &format!("lat{n}"), n, true, |tag| {
            Links::memif(ctx, tag)
        })?;

    let mut lat = Vec::new();
    let mut zl = Vec::new();
    for (dut, run, replay) in [
        (GATEWAY, &gw_run, loop_replay.map(|l| l.0)),
        (BASELINE, &tp_run, loop_replay.map(|l| l.1)),
    ] {
        let own = tp_run.own_points.iter().map(|p| (BASELINE_OWN_LOAD, p));
        let points = run.points.iter().map(|p| (dut, p));
        let points: Vec<_> = if dut == BASELINE {
            points.chain(own).collect()
        } else {
            points.collect()
        };
        for (dut, (pct, rate, r, view, p99s)) in points {
            let (pct, rate) = (*pct, *rate);
            lat.push(LatencyRecord {
                direction: spec.direction.name().into(),
                algorithm: spec.algorithm.name().into(),
                frame_size: spec.frame.label(),
                udp_encap: spec.udp_encap,
                sa_count: spec.sa_count,
                dut: dut.into(),
                load_pct: pct,
                target_mpps: rate / 1e6,
                offered_mpps: r.offered_pps() / 1e6,
                received_mpps: r.received_pps() / 1e6,
                lost: r.lost(),
                samples: r.samples,
                p50_us: r.p50_us,
                p99_us: r.p99_us,
                p99_trials_us: p99s.clone(),
                p999_us: r.p999_us,
                max_us: r.max_us,
                dut_drops: view.drops,
                dut_cpu_share: view.cpu_share,
                gen_cpu_share: r.gen_cpu_share,
                dut_preempted: view.preempted,
                gen_preempted: r.gen_preempted,
                dut_max_poll_gap_us: view.polls.as_ref().map(|p| p.max_poll_gap_us),
                dut_slowest_poll_us: view.polls.as_ref().map(|p| p.slowest_poll_us),
                dut_poll_gaps: view.polls.as_ref().map(|p| p.poll_gaps.clone()),
            });
        }
        zl.push(zero_loss_record(ctx, spec, dut, run, replay, &links));
    }
    Ok((lat, zl))
}

/// The zero-loss search (and the maximum) of one case once more, with the
/// generator reaching the DUT through `net_af_packet` on two veth pairs in
/// a namespace of its own ([`VethPairs`]): every frame crosses the
/// kernel (the sender's `sendto` delivers it into the receiver's packet
/// ring), as between namespaces on this machine. The gateway, then
/// testpmd io; the two records are marked `veth`.
pub fn run_veth_zero_loss(
    ctx: &LatencyContext,
    ns: &VethPairs,
    spec: &CaseSpec,
    n: usize,
    loop_replay: Option<(f64, f64)>,
) -> Result<Vec<ZeroLossRecord>, Error> {
    let (gw_run, tp_run, links) =
        gateway_then_testpmd(ctx, spec, &format!("zl{n}"), n, false, |_| {
            Ok(Links::veth(ns))
        })?;
    Ok(vec![
        zero_loss_record(
            ctx,
            spec,
            GATEWAY,
            &gw_run,
            loop_replay.map(|l| l.0),
            &links,
        ),
        zero_loss_record(
            ctx,
            spec,
            BASELINE,
            &tp_run,
            loop_replay.map(|l| l.1),
            &links,
        ),
    ])
}

/// The gateway, then testpmd io, each with a generator of its own over
/// `links(tag)`: warm-up, maximum, with `latency` the load points (testpmd
/// at the gateway's rates and at its own), and the zero-loss search.
fn gateway_then_testpmd(
    ctx: &LatencyContext,
    spec: &CaseSpec,
    name: &str,
    n: usize,
    latency: bool,
    links: impl Fn(&str) -> Result<Links, Error>,
) -> Result<(DutRun, DutRun, Links), Error> {
    let tag = format!("{name}-gw");
    let l = links(&tag)?;
    let mut gw = start_gateway(ctx, spec, &l, &tag)?;
    let mut gen = start_loadgen(ctx, spec, &l, &tag)?;
    let gw_run = measure(ctx, &mut gen, &mut gw, None, latency)?;
    // The DUT stops first: a memif peer that disconnects unmaps the rings
    // under a data path still polling them. The generator polls only
    // during a trial, so it may see the DUT go.
    gw.0.finish()?;
    gen.finish()?;

    // The baseline, at the gateway's rates.
    let tag = format!("{name}-tp");
    let l = links(&tag)?;
    let mut tp = TestpmdDut::start(ctx, &l, n)?;
    let mut gen = start_loadgen(ctx, spec, &l, &tag)?;
    let rates: Vec<(u32, f64)> = gw_run.points.iter().map(|p| (p.0, p.1)).collect();
    let tp_run = measure(ctx, &mut gen, &mut tp, Some(&rates), latency)?;
    tp.finish()?;
    gen.finish()?;
    Ok((gw_run, tp_run, l))
}

fn zero_loss_record(
    ctx: &LatencyContext,
    spec: &CaseSpec,
    dut: &str,
    run: &DutRun,
    loop_replay: Option<f64>,
    links: &Links,
) -> ZeroLossRecord {
    ZeroLossRecord {
        direction: spec.direction.name().into(),
        algorithm: spec.algorithm.name().into(),
        frame_size: spec.frame.label(),
        udp_encap: spec.udp_encap,
        sa_count: spec.sa_count,
        dut: dut.into(),
        topology: links.name.into(),
        max_mpps: run.max.received_pps() / 1e6,
        zero_loss_mpps: run.zero_loss_pps / 1e6,
        loop_replay_mpps: loop_replay,
        trial_s: ctx.opts.trial_s,
        steps: run.steps.clone(),
    }
}

/// The loop-replay (gateway, testpmd) Mpps of `spec` among the
/// throughput records.
pub fn loop_replay_of(spec: &CaseSpec, cases: &[CaseRecord]) -> Option<(f64, f64)> {
    cases
        .iter()
        .find(|c| {
            c.direction == spec.direction.name()
                && c.algorithm == spec.algorithm.name()
                && c.frame_size == spec.frame.label()
                && c.udp_encap == spec.udp_encap
                && c.sa_count == spec.sa_count
        })
        .map(|c| (c.mpps, c.baseline_mpps))
}

/// The method paragraph for the report.
pub fn method(o: &LatencyOptions, worker_core: usize, loadgen_core: usize) -> String {
    format!(
        "Latency and zero-loss: a generator/sink DPDK process (espresso-lab bench-loadgen, core \
         {loadgen_core}, shared with the rest of the machine) connected to the DUT (worker core \
         {worker_core}) by two net_memif pairs (copy mode, 1024-slot rings, --no-huge). DUTs: \
         the gateway's Worker/Node data path, then dpdk-testpmd --forward-mode=io, same pool \
         ({WORKING_MBUFS} mbufs, cache {MBUF_CACHE}, bursts of 32). Per DUT: {w} s warm-up, a \
         {t} s trial offering all the generator can (maximum = received rate), {n} latency \
         trial(s) of {t} s at each of {loads:?} % of the gateway's maximum (testpmd at the same \
         offered rates, and at the same shares of its own maximum), the one with the median \
         p99 reported, \
         one-way latency per frame (TSC at the sink minus TSC at tx_burst; HDR histogram, 3 \
         significant digits), then a binary search ({s} halvings, {t} s trials) for the highest \
         offered rate with no loss (offered minus received, exact; RFC 2544 26.1 with short \
         trials). Frames the DUT's memif RX ring refuses count as lost. Then the maximum and \
         the zero-loss search again with both DUTs' ports and the generator's on net_af_packet \
         over two veth pairs in a namespace of their own (path veth: each frame crosses the \
         kernel; frames the DUT's packet ring has no room for are lost there).",
        w = o.warmup_s,
        t = o.trial_s,
        n = o.trials_per_point,
        loads = LOAD_POINTS,
        s = o.search_steps
    )
}

fn find<'a>(
    lat: &'a [LatencyRecord],
    dir: &str,
    alg: &str,
    frame: &str,
    dut: &str,
    pct: u32,
) -> Option<&'a LatencyRecord> {
    lat.iter().find(|r| {
        r.direction == dir
            && r.algorithm == alg
            && r.frame_size == frame
            && r.dut == dut
            && r.load_pct == pct
    })
}

/// Rows of the latency table: one per case and load, gateway next to
/// baseline.
fn latency_rows(lat: &[LatencyRecord]) -> Vec<[String; 19]> {
    let mut rows = Vec::new();
    for g in lat.iter().filter(|r| r.dut == GATEWAY) {
        let Some(b) = find(
            lat,
            &g.direction,
            &g.algorithm,
            &g.frame_size,
            BASELINE,
            g.load_pct,
        ) else {
            continue;
        };
        // testpmd at the same share of its own maximum (older records
        // have none).
        let own = find(
            lat,
            &g.direction,
            &g.algorithm,
            &g.frame_size,
            BASELINE_OWN_LOAD,
            g.load_pct,
        );
        rows.push([
            g.direction.clone(),
            g.algorithm.clone(),
            g.frame_size.clone(),
            format!("{} %", g.load_pct),
            format!("{:.3}", g.offered_mpps),
            format!("{:.1}", g.p50_us),
            format!("{:.1}", g.p99_us),
            format!("{:.1}", g.p999_us),
            format!("{:.1}", b.p50_us),
            format!("{:.1}", b.p99_us),
            format!("{:.1}", b.p999_us),
            format!("{:.2}", g.p99_us / b.p99_us),
            own.map_or("-".to_string(), |o| format!("{:.1}", o.p99_us)),
            own.map_or("-".to_string(), |o| format!("{:.2}", g.p99_us / o.p99_us)),
            format!("{:.2}/{:.2}", g.dut_cpu_share, g.gen_cpu_share),
            format!("{:.2}/{:.2}", b.dut_cpu_share, b.gen_cpu_share),
            g.dut_max_poll_gap_us
                .map_or("-".to_string(), |v| v.to_string()),
            g.dut_poll_gaps
                .as_deref()
                .map_or("-".to_string(), |v| slow_polls(v).to_string()),
            format!(
                "{}/{} {}/{}",
                g.dut_preempted, g.gen_preempted, b.dut_preempted, b.gen_preempted
            ),
        ]);
    }
    rows
}

const LAT_HEAD: [&str; 19] = [
    "dir",
    "algorithm",
    "frame",
    "load",
    "Mpps",
    "p50",
    "p99",
    "p99.9",
    "tp p50",
    "tp p99",
    "tp p99.9",
    "p99 x tp",
    "tp own-load p99",
    "p99 x tp own",
    "on-CPU gw/gen",
    "on-CPU tp/gen",
    "gw max gap",
    "gw gaps>=16us",
    "preempted gw/gen tp/gen",
];

fn zl_rows(zl: &[ZeroLossRecord]) -> Vec<[String; 10]> {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    zl.iter()
        .map(|z| {
            [
                z.direction.clone(),
                z.algorithm.clone(),
                z.frame_size.clone(),
                z.dut.clone(),
                z.topology.clone(),
                format!("{:.3}", z.max_mpps),
                format!("{:.3}", z.zero_loss_mpps),
                opt(z.loop_replay_mpps),
                z.steps
                    .iter()
                    .map(|s| {
                        let short = s.offered_mpps < MIN_OFFERED * s.target_mpps;
                        format!(
                            "{:.2}{}{}",
                            s.target_mpps,
                            if s.lost == 0 { "" } else { "x" },
                            if short { "s" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                {
                    let min =
                        |f: fn(&SearchStep) -> f64| z.steps.iter().map(f).fold(f64::NAN, f64::min);
                    format!(
                        "{:.2}/{:.2}",
                        min(|s| s.dut_cpu_share),
                        min(|s| s.gen_cpu_share)
                    )
                },
            ]
        })
        .collect()
}

const ZL_HEAD: [&str; 10] = [
    "dir",
    "algorithm",
    "frame",
    "DUT",
    "path",
    "max Mpps",
    "0-loss Mpps",
    "loop Mpps",
    "search (Mpps; x loss, s short)",
    "min on-CPU dut/gen",
];

/// The latency and zero-loss tables as text (empty without records).
pub fn table(lat: &[LatencyRecord], zl: &[ZeroLossRecord]) -> String {
    let mut s = String::new();
    if !lat.is_empty() {
        s.push_str("\nOne-way latency (µs) through memif; tp = testpmd io at the same offered rate; tp own-load = testpmd io at the same share of its own maximum; on-CPU = share of each trial the DUT / generator thread ran; gw max gap = the gateway worker's longest gap between two polls (µs), gaps>=16us = its polls that long; preempted = involuntary context switches of the DUT / generator thread in the trial:\n");
        s.push_str(&text_table(&LAT_HEAD, &latency_rows(lat)));
    }
    if !zl.is_empty() {
        s.push_str("\nZero-loss rate (binary search) next to the maximum through the same path (memif pairs, or net_af_packet on veth pairs through the kernel) and the loop-replay rate:\n");
        s.push_str(&text_table(&ZL_HEAD, &zl_rows(zl)));
    }
    s
}

/// The same tables in Markdown (empty without records).
pub fn markdown(lat: &[LatencyRecord], zl: &[ZeroLossRecord]) -> String {
    let mut s = String::new();
    if !lat.is_empty() {
        s.push_str(
            "\nOne-way latency (µs) through memif; `tp` = testpmd io at the same offered rate, `tp own-load` at the same share of its own maximum:\n\n",
        );
        s.push_str(&md_table(&LAT_HEAD, &latency_rows(lat)));
    }
    if !zl.is_empty() {
        s.push_str(
            "\nZero-loss rate next to the maximum through the same path (`memif` pairs, or `net_af_packet` on `veth` pairs through the kernel) and the loop-replay rate:\n\n",
        );
        s.push_str(&md_table(&ZL_HEAD, &zl_rows(zl)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_converges_on_the_threshold() {
        let mut tried = Vec::new();
        let r = zero_loss_search(10.0, 6, |x| -> Result<bool, ()> {
            tried.push(x);
            Ok(x <= 3.3)
        })
        .unwrap();
        assert_eq!(tried[0], 10.0);
        assert_eq!(tried.len(), 7);
        assert!(r <= 3.3 && r > 3.3 - 10.0 / 64.0, "{r}");
    }

    #[test]
    fn search_stops_at_max_without_loss_and_reports_zero_when_all_lose() {
        let mut n = 0;
        assert_eq!(
            zero_loss_search(5.0, 6, |_| -> Result<bool, ()> {
                n += 1;
                Ok(true)
            }),
            Ok(5.0)
        );
        assert_eq!(n, 1);
        assert_eq!(zero_loss_search(5.0, 4, |_| Ok::<_, ()>(false)), Ok(0.0));
    }

    #[test]
    fn tables_pair_gateway_and_baseline_rows() {
        let rec = |dut: &str, pct, p99| LatencyRecord {
            direction: "encrypt".into(),
            algorithm: "aes128gcm16".into(),
            frame_size: "64".into(),
            udp_encap: false,
            sa_count: 1,
            dut: dut.into(),
            load_pct: pct,
            target_mpps: 1.0,
            offered_mpps: 1.0,
            received_mpps: 1.0,
            lost: 0,
            samples: 10,
            p50_us: 1.0,
            p99_us: p99,
            p99_trials_us: vec![p99],
            p999_us: 3.0,
            max_us: 4.0,
            dut_drops: None,
            dut_cpu_share: 1.0,
            gen_cpu_share: 1.0,
            dut_preempted: 0,
            gen_preempted: 0,
            dut_max_poll_gap_us: None,
            dut_slowest_poll_us: None,
            dut_poll_gaps: None,
        };
        let lat = vec![
            rec(GATEWAY, 10, 4.0),
            rec(GATEWAY, 90, 6.0),
            rec(BASELINE, 10, 2.0),
            rec(BASELINE, 90, 4.0),
            rec(BASELINE_OWN_LOAD, 90, 12.0),
        ];
        let rows = latency_rows(&lat);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][11], "2.00");
        assert_eq!(rows[1][11], "1.50");
        // testpmd at its own load: none measured at 10 %, 12 µs at 90 %.
        assert_eq!((rows[0][12].as_str(), rows[0][13].as_str()), ("-", "-"));
        assert_eq!(
            (rows[1][12].as_str(), rows[1][13].as_str()),
            ("12.0", "0.50")
        );
        let md = markdown(&lat, &[]);
        assert_eq!(md.lines().filter(|l| l.starts_with("| encrypt")).count(), 2);
    }

    /// Zero-loss records name their path; records from before the veth
    /// run (no `topology`) were through memif.
    #[test]
    fn zero_loss_rows_name_the_path() {
        let old = r#"{"direction":"encrypt","algorithm":"aes128gcm16","frame_size":"64",
            "udp_encap":false,"sa_count":1,"dut":"espresso","max_mpps":5.0,
            "zero_loss_mpps":0.2,"loop_replay_mpps":11.0,"trial_s":1.0,"steps":[]}"#;
        let mut z: ZeroLossRecord = serde_json::from_str(old).unwrap();
        assert_eq!(z.topology, TOPOLOGY_MEMIF);
        let mut v = z.clone();
        v.topology = TOPOLOGY_VETH.into();
        v.max_mpps = 1.05;
        z.steps.push(SearchStep {
            target_mpps: 5.0,
            offered_mpps: 4.0,
            lost: 3,
            dut_drops: Some(0),
            dut_cpu_share: 1.0,
            gen_cpu_share: 0.9,
        });
        let rows = zl_rows(&[z, v]);
        assert_eq!(rows[0][4], "memif");
        assert_eq!(
            (rows[1][4].as_str(), rows[1][5].as_str()),
            ("veth", "1.050")
        );
        // Lost and short of its target.
        assert_eq!(rows[0][8], "5.00xs");
    }

    #[test]
    fn matrix_is_one_sa() {
        assert!(matrix().iter().all(|c| c.sa_count == 1));
        assert_eq!(matrix().len(), 2);
    }
}
