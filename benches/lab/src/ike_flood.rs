//! The IKE flood case: spoofed IKE_SA_INITs at a rate the control thread
//! cannot keep up with, while legitimate peers set up tunnels, rekey them
//! and probe their liveness (`espresso-lab bench-ike-flood`, a child process
//! per case like [`reconf`](super::reconf), so that its memory is its own).
//!
//! It runs the real control-plane code, not a model of it:
//! - the responder is an [`IkeDriver`] built from a gateway configuration
//!   (one listening tunnel per legitimate peer, on 192.0.2.1, and one more
//!   listening tunnel alone on 192.0.2.2, as for a peer behind a NAT),
//!   served on its own thread by the gateway's control-loop step: wait on
//!   the workers' queues ([`FromWorkers::select`]), take one turn over
//!   them ([`FromWorkers::next_in_turn`]: everything else first, then at
//!   most [`HALF_OPEN_IKE_PER_TURN`](dataplane::gateway::HALF_OPEN_IKE_PER_TURN)
//!   datagrams of half-open IKE SAs, then at most
//!   [`UNAUTH_IKE_PER_TURN`](dataplane::gateway::UNAUTH_IKE_PER_TURN)
//!   unauthenticated IKE datagrams), then `tick`, exactly as
//!   `gateway::run` does;
//! - the datagrams reach it through the real bounded worker→control queues
//!   ([`dataplane::gateway::queues`]) put in by [`ToControl::pass_on`], the
//!   function a worker calls after each poll, so the split between
//!   authenticated, half-open and unauthenticated IKE is the workers' own
//!   (the driver's [`IkeSpiTables`]);
//! - a flood thread (worker 1) makes well-formed IKE_SA_INIT requests (a
//!   real initiator's message with a fresh SPI each) from `flood_sources`
//!   spoofed addresses to 192.0.2.2 — the costliest target: each one
//!   reaches an engine (an address with several listening tunnels drops
//!   them before any engine, `ike.init_no_tunnel`);
//! - `initiators` legitimate peers, each an [`IkeDriver`] of its own with
//!   one initiating tunnel, run on one thread (worker 0) that moves their
//!   datagrams through the same queues and gets the responder's answers
//!   back on a channel.
//!
//! A case first floods with no peer for `probe_s`, keeping the control
//! thread's unauthenticated queue full but generating no more than it
//! takes (an unpaced generator would spend a core on datagrams the full
//! queue refuses, a core the control thread then lacks on a small
//! machine): the flood datagrams the control thread handled per second
//! there are its saturation rate. Then the flood goes on at
//! `flood_factor` times that rate while the peers start together; each
//! sets up its tunnel (IKE_SA_INIT, a COOKIE round when asked,
//! IKE_AUTH), rekeys its Child SA, then waits for `dpd_samples` liveness
//! checks (empty INFORMATIONAL, `dpd_interval = 1s`). The flood stops when
//! every peer is done or after `window_s`.
//!
//! Figures, all on the wall clock of this process: setup (start →
//! the initiator installed its outbound SA), rekey (rekey requested → the
//! initiator's outbound SA moved to the new Child SA, i.e. CREATE_CHILD_SA
//! and the old SA's Delete both answered), DPD round trip (the request
//! handed to the queues → its response back); a legitimate setup succeeds
//! if its tunnel is up within the window (the engine retransmits 5 times
//! over 15.5 s before it gives up). Flood offered = IKE_SA_INITs the flood
//! thread generated per second; handled = those the control thread took
//! from its queue and gave to the driver. The process's RSS
//! (`/proc/self/status`) is read after the set-up, after the probe and at
//! the end, with the peak; it includes the peers and the generator, which
//! hold nothing per flood datagram.
//!
//! What limits the legitimate share: a peer's IKE_AUTH names the
//! responder SPI of its half-open SA, which the workers know
//! ([`IkeSpiTables`]) and which a spoofer never sees, so it has a queue of
//! its own that the flood cannot fill. Its IKE_SA_INITs (the first, and
//! the retry carrying the COOKIE) cannot be told from the flood's before
//! the control thread checks the cookie: at `flood_factor` 2 about half of
//! them (the flood's share over saturation) are refused by the full
//! unauthenticated queue. A peer needs both through; one that loses six in
//! a row gives up for 15.5 s plus 5 s before it starts again, so a few of
//! 50 peers miss a 24 s window and the slowest setups take 20 s or more,
//! mostly with the default threshold, whose probe also finds a higher
//! saturation rate and so a heavier flood. The way past that is to let the
//! workers verify cookies (the secret shared with them) and queue
//! IKE_SA_INITs with a valid one apart: a forged cookie costs nothing to
//! make, so a class for "carries a COOKIE" alone would just be flooded.
//!
//! Not modelled: the workers themselves (the datagrams are put on the
//! queues as a worker would after parsing them), and sending the
//! responder's answers: those to spoofed sources (cookies, IKE_SA_INIT
//! responses) are counted and dropped where a worker would send them.
//! Everything shares the machine's cores, so the flood generator and the
//! peers compete with the control thread for CPU, as the workers do on a
//! gateway with few cores.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cpu::clock::thread_cpu_time;
use crossbeam::channel::{unbounded, Receiver, Sender};
use dataplane::gateway::queues::IKE_NEW_QUEUE;
use dataplane::gateway::{
    control_queues, FromWorkers, IkeSpiTables, Next, QueueDrops, ToControl, Turn, WorkerMsg,
};
use serde::{Deserialize, Serialize};

use super::report::{md_table, text_table};
use control::config::CryptoBackendChoice;
use control::config::GatewayConfig;
use control::ike_driver::{build_udp, engine_config, IkeAction, IkeDriver, SystemRng};
use control::sa::Planner;
use ike::{Endpoint, Timestamp};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The responder's address for the legitimate peers.
const RESPONDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Its address with a single listening tunnel: the flood's target.
const FLOOD_TARGET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Legitimate peer `i` is 198.18.0.0 + 1 + i.
const PEER_BASE: u32 = u32::from_be_bytes([198, 18, 0, 1]);
/// Spoofed source `i` is 10.0.0.0 + 1 + i.
const SPOOF_BASE: u32 = u32::from_be_bytes([10, 0, 0, 1]);
/// Punted datagrams per call of `pass_on` (a worker's burst).
const BURST: usize = 32;
/// IKE's exchange type INFORMATIONAL (RFC 7296 §3.1).
const INFORMATIONAL: u8 = 37;
/// IKE_AUTH (RFC 7296 §3.1).
const IKE_AUTH: u8 = 35;

/// One IKE flood case.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IkeFloodSpec {
    /// `[control] ike_cookie_threshold` (0: every IKE_SA_INIT must carry
    /// a cookie); `None`: the default.
    pub cookie_threshold: Option<usize>,
    /// Legitimate peers.
    pub initiators: u32,
    /// Spoofed source addresses the flood cycles through.
    pub flood_sources: u32,
    /// Seconds of unpaced flood to find the saturation rate.
    pub probe_s: f64,
    /// The flood's rate while the peers run, in saturation rates.
    pub flood_factor: f64,
    /// Longest the peers get (seconds).
    pub window_s: f64,
    /// Liveness checks each peer waits for after its rekey.
    pub dpd_samples: u32,
}

impl IkeFloodSpec {
    /// The cookie threshold in force.
    pub fn threshold(&self) -> usize {
        self.cookie_threshold
            .unwrap_or(ike::Config::DEFAULT_COOKIE_THRESHOLD)
    }

    /// E.g. `ike-flood cookies-forced 50 peers`.
    pub fn name(&self) -> String {
        format!(
            "ike-flood {} {} peers",
            match self.cookie_threshold {
                Some(0) => "cookies-forced".to_string(),
                None => "cookies-default".to_string(),
                Some(n) => format!("cookies-above-{n}"),
            },
            self.initiators
        )
    }
}

/// The standard cases: 50 peers under twice the saturating flood from
/// 16,384 sources, with the default cookie threshold and with cookies
/// forced.
pub fn standard() -> Vec<IkeFloodSpec> {
    [None, Some(0)]
        .into_iter()
        .map(|cookie_threshold| IkeFloodSpec {
            cookie_threshold,
            initiators: 50,
            flood_sources: 16_384,
            probe_s: 2.0,
            flood_factor: 2.0,
            window_s: 24.0,
            dpd_samples: 3,
        })
        .collect()
}

/// The quick ones (`--quick`): 10 peers, a short probe and window.
pub fn quick() -> Vec<IkeFloodSpec> {
    standard()
        .into_iter()
        .map(|s| IkeFloodSpec {
            initiators: 10,
            probe_s: 0.5,
            window_s: 4.0,
            dpd_samples: 1,
            ..s
        })
        .collect()
}

/// Percentiles of a list of delays (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Delays {
    /// How many.
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Delays {
    /// Nearest-rank percentiles; NaN for none.
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        Self {
            n: v.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What one run measured (one JSON line on stdout).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IkeFloodSample {
    /// Flood datagrams per second generated in the probe (as many as the
    /// queue had room for).
    pub probe_offered_dps: f64,
    /// Flood datagrams per second the control thread handled in the
    /// probe: its saturation rate.
    pub saturation_dps: f64,
    /// Share of the probe's samples (one per 10 ms) that found the
    /// queue holding at least half its capacity: near 1, the control
    /// thread never waited for work.
    pub probe_queue_busy: f64,
    /// The flood rate asked for while the peers ran.
    pub target_dps: f64,
    /// Flood datagrams per second generated while the peers ran.
    pub offered_dps: f64,
    /// Flood datagrams per second the control thread handled meanwhile.
    pub handled_dps: f64,
    /// Flood datagrams a full queue refused meanwhile.
    pub flood_queue_full: u64,
    /// The control thread's on-CPU share of the window (1.0: a full core).
    pub control_cpu_share: f64,
    /// Seconds the peers ran.
    pub window_s: f64,
    /// Peers.
    pub initiators: u32,
    /// Peers whose tunnel came up in the window.
    pub setups_ok: u32,
    /// Peers whose Child SA rekey completed.
    pub rekeys_ok: u32,
    /// Setup delays (ms), one per peer that came up.
    pub setup_ms: Vec<f64>,
    /// Rekey delays (ms).
    pub rekey_ms: Vec<f64>,
    /// Liveness check round trips (ms).
    pub dpd_ms: Vec<f64>,
    /// Legitimate IKE_SA_INIT requests (first or with a cookie) a full
    /// unauthenticated queue refused.
    pub legit_queue_full: u64,
    /// Legitimate IKE_AUTH requests it refused (those naming a half-open
    /// SA the workers' table knows go to their own queue instead).
    #[serde(default)]
    pub legit_queue_full_auth: u64,
    /// Legitimate datagrams dropped on the other queues.
    pub legit_queue_drops: u64,
    /// Of those, dropped on the half-open IKE SAs' queue.
    #[serde(default)]
    pub legit_half_open_full: u64,
    /// The peers' retransmissions.
    pub legit_retransmits: u64,
    /// Times a peer gave up (no answer after its last retransmission;
    /// it starts again 5 s later).
    #[serde(default)]
    pub legit_gave_up: u64,
    /// Answers the responder sent to spoofed sources (dropped here).
    pub replies_to_spoofed: u64,
    /// The responder's counters summed over its tunnels (`ike.*` and
    /// `ike.<tunnel>.*` of `espresso stats`, without the tunnel name).
    pub responder: BTreeMap<String, u64>,
    /// RSS (kB) after the set-up, before any flood.
    pub rss_kb_before: u64,
    /// RSS (kB) after the probe.
    pub rss_kb_after_probe: u64,
    /// RSS (kB) at the end, with the flood still queued.
    pub rss_kb_after: u64,
    /// Peak RSS (kB, VmHWM).
    pub rss_kb_peak: u64,
}

/// `VmRSS` and `VmHWM` of this process (kB).
fn rss_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn peer_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(PEER_BASE + i)
}

const PSK: &str = "the IKE flood bench's pre-shared key";

fn ike_section(local_id: &str, remote_id: &str, start: &str, dpd: &str) -> String {
    format!(
        r#"  [tunnel.ike]
  local_id = "{local_id}"
  remote_id = "{remote_id}"
  psk = "{PSK}"
  proposals = ["aes128gcm16-prfsha256-ecp256"]
  esp_proposals = ["aes128gcm16"]
  start_action = "{start}"
  dpd_interval = "{dpd}"
"#
    )
}

/// The responder: a listening tunnel per peer on `RESPONDER` and one
/// on `FLOOD_TARGET`.
pub fn responder_config(spec: &IkeFloodSpec) -> Result<GatewayConfig, Error> {
    let mut t = format!(
        r#"[control]
ike_cookie_threshold = {}

[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["10.1.0.1/16"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["{RESPONDER}/24", "{FLOOD_TARGET}/24"]
# The peers are off-link (a gateway must have a route to each; the driver
# here sends through the lab's queues, not this route).
[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.254"
interface = "wan"
"#,
        spec.threshold()
    );
    for i in 0..spec.initiators {
        t.push_str(&format!(
            "[[tunnel]]\nname = \"peer{i}\"\nlocal_addrs = \"{RESPONDER}\"\nremote_addrs = \"{}\"\n  [[tunnel.policy]]\n  local_ts = \"10.1.0.0/16\"\n  remote_ts = \"10.100.{i}.0/24\"\n",
            peer_addr(i)
        ));
        t.push_str(&ike_section(
            "gw.example",
            &format!("peer{i}.example"),
            "listen",
            "30s",
        ));
    }
    t.push_str("[[tunnel]]\nname = \"nat\"\nlocal_addrs = \"192.0.2.2\"\nremote_addrs = \"203.0.113.1\"\n  [[tunnel.policy]]\n  local_ts = \"10.1.0.0/16\"\n  remote_ts = \"10.200.0.0/24\"\n");
    t.push_str(&ike_section("gw.example", "nat.example", "listen", "30s"));
    Ok(GatewayConfig::from_str(&t, "ike-flood-responder.toml")?)
}

/// Peer `i`: one tunnel to the responder, initiated at start, a liveness
/// check after 1 s of silence.
pub fn peer_config(i: u32) -> Result<GatewayConfig, Error> {
    let addr = peer_addr(i);
    let mut t = format!(
        r#"[[interface]]
name = "lan"
device = "net_null1"
role = "lan"
addresses = ["10.100.{i}.1/24"]
[[interface]]
name = "wan"
device = "net_null0"
role = "wan"
addresses = ["{addr}/16"]
[[route]]
prefix = "0.0.0.0/0"
via = "198.18.255.254"
interface = "wan"
[[tunnel]]
name = "t"
local_addrs = "{addr}"
remote_addrs = "{RESPONDER}"
  [[tunnel.policy]]
  local_ts = "10.100.{i}.0/24"
  remote_ts = "10.1.0.0/16"
"#
    );
    t.push_str(&ike_section(
        &format!("peer{i}.example"),
        "gw.example",
        "initiate",
        "1s",
    ));
    Ok(GatewayConfig::from_str(&t, "ike-flood-peer.toml")?)
}

/// IKE header fields of an IP/UDP packet: (exchange type, response flag,
/// message ID).
fn ike_header(packet: &[u8]) -> Option<(u8, bool, u32)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let udp = packet.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ike = match dport {
        4500 => udp.get(12..)?,
        _ => udp.get(8..)?,
    };
    let flags = *ike.get(19)?;
    let id = u32::from_be_bytes(ike.get(20..24)?.try_into().ok()?);
    Some((*ike.get(18)?, flags & 0x20 != 0, id))
}

fn ipv4_at(packet: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        packet.get(off..off + 4)?.try_into().ok()?,
    ))
}

/// Counters the threads share with the orchestrating one.
#[derive(Debug, Default)]
struct Shared {
    stop_flood: AtomicBool,
    stop_responder: AtomicBool,
    /// Flood datagrams generated.
    offered: AtomicU64,
    /// Refused by a full queue.
    flood_full: AtomicU64,
    /// Peers' datagrams other than IKE_AUTH (IKE_SA_INIT, with or
    /// without a cookie) refused by a full unauthenticated queue.
    legit_full: AtomicU64,
    /// Their IKE_AUTH requests refused so.
    legit_full_auth: AtomicU64,
    /// Peers' datagrams refused by the other queues.
    legit_drops: AtomicU64,
    /// Of those, by the half-open IKE SAs' queue.
    legit_half_open_full: AtomicU64,
    /// Flood datagrams the control thread handled.
    handled: AtomicU64,
    /// Its thread's CPU time (µs), updated each turn.
    control_cpu_us: AtomicU64,
    replies_to_spoofed: AtomicU64,
}

/// The control thread: the gateway's loop step over the queues, the
/// driver's answers to the peers on `wire`.
fn responder(
    mut driver: IkeDriver,
    from: FromWorkers,
    wire: Sender<Vec<u8>>,
    peers: u32,
    shared: Arc<Shared>,
) -> IkeDriver {
    let is_peer = |a: u32| (PEER_BASE..PEER_BASE + peers).contains(&a);
    // The SAs are built as the control thread builds them (their key
    // expansion is part of its cost); no worker takes them here.
    let mut planner = Planner::new(1, CryptoBackendChoice::Auto, Vec::new());
    let route = |driver: &mut IkeDriver, planner: &mut Planner| {
        if driver.take_sas_changed() {
            let plan = planner.plan(&[&driver.sas()]);
            drop(planner.commit(plan));
        }
        for a in driver.take_actions() {
            if let IkeAction::Transmit(p) = a {
                match ipv4_at(&p, 16) {
                    Some(dst) if is_peer(dst) => {
                        let _ = wire.send(p);
                    }
                    _ => {
                        shared.replies_to_spoofed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    driver.start(Instant::now());
    route(&mut driver, &mut planner);
    while !shared.stop_responder.load(Ordering::Relaxed) {
        let _ = from.select().ready_timeout(Duration::from_millis(20));
        let mut turn = Turn::default();
        loop {
            match from.next_in_turn(&mut turn) {
                Next::Msg(WorkerMsg::Punt { packet, .. }) => {
                    if ipv4_at(&packet, 12).is_some_and(|s| s >= SPOOF_BASE && !is_peer(s)) {
                        shared.handled.fetch_add(1, Ordering::Relaxed);
                    }
                    driver.handle_punt(Instant::now(), &packet);
                    route(&mut driver, &mut planner);
                }
                Next::Msg(_) => {}
                Next::Done | Next::Disconnected => break,
            }
        }
        driver.tick(Instant::now());
        route(&mut driver, &mut planner);
        shared
            .control_cpu_us
            .store(thread_cpu_time().as_micros() as u64, Ordering::Relaxed);
    }
    driver
}

/// The worker: puts the flood — `rate` IKE_SA_INITs per second (`None`:
/// as fast as the control thread takes them, keeping its queue full) —
/// and the peers' datagrams (`legit`) on the control thread's queues until
/// told to stop. The peers' datagrams that arrived since the last look
/// land at random places among the flood datagrams due meanwhile, as they
/// would among the frames a worker receives, so a full queue refuses them
/// as often as it refuses the flood.
fn worker(
    to: ToControl,
    template: Vec<u8>,
    sources: u32,
    rate: Option<f64>,
    legit: Option<Receiver<Vec<u8>>>,
    shared: &Shared,
) {
    let target = SocketAddr::new(IpAddr::V4(FLOOD_TARGET), 500);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut burst: Vec<(u16, Vec<u8>)> = Vec::with_capacity(BURST);
    let mut one: Vec<(u16, Vec<u8>)> = Vec::with_capacity(1);
    let mut drops = QueueDrops::default();
    let mut message = template;
    // Fresh SPIs and sources from where the previous flood stopped.
    let base = shared.offered.load(Ordering::Relaxed);
    let mut place = base | 1;
    let pass = |punts: &mut Vec<(u16, Vec<u8>)>, drops: &mut QueueDrops| {
        to.pass_on(1, punts, &mut Vec::new(), &mut Vec::new(), drops)
    };
    while !shared.stop_flood.load(Ordering::Relaxed) {
        // What arrived since the last look: the flood due by now (at most
        // a queue's worth) and the peers' datagrams, in random order.
        let n = match rate {
            Some(r) => {
                let due = (r * start.elapsed().as_secs_f64()) as u64;
                due.saturating_sub(sent).min(IKE_NEW_QUEUE as u64)
            }
            // Only what the queue has room for, so that the generator
            // does not take CPU from the control thread to be refused.
            None => (to.ike_new.capacity().unwrap_or(0) - to.ike_new.len()).min(BURST) as u64,
        };
        let mut peers: Vec<Vec<u8>> = legit
            .as_ref()
            .map_or(Vec::new(), |l| l.try_iter().collect());
        if n == 0 && peers.is_empty() {
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        // Where each peer's datagram falls among the flood's (xorshift).
        let mut at: Vec<u64> = peers
            .iter()
            .map(|_| {
                place ^= place << 13;
                place ^= place >> 7;
                place ^= place << 17;
                place % (n + 1)
            })
            .collect();
        at.sort_unstable();
        let mut next_peer = 0;
        let mut full = 0;
        for i in 0..=n {
            while next_peer < at.len() && at[next_peer] == i {
                full += pass(&mut burst, &mut drops);
                let p = std::mem::take(&mut peers[next_peer]);
                let auth = ike_header(&p).is_some_and(|(x, _, _)| x == IKE_AUTH);
                one.push((0, p));
                if pass(&mut one, &mut drops) > 0 {
                    let c = if auth {
                        &shared.legit_full_auth
                    } else {
                        &shared.legit_full
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                next_peer += 1;
            }
            if i == n {
                break;
            }
            let k = base + sent;
            let src = Ipv4Addr::from(SPOOF_BASE + (k % u64::from(sources)) as u32);
            // A fresh initiator SPI each: every request is a new IKE SA.
            let spi = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            message[..8].copy_from_slice(&spi.to_be_bytes());
            let src = SocketAddr::new(IpAddr::V4(src), 500);
            if let Some(p) = build_udp(src, target, &message, k as u16) {
                burst.push((1, p));
            }
            sent += 1;
            if burst.len() == BURST {
                full += pass(&mut burst, &mut drops);
            }
        }
        full += pass(&mut burst, &mut drops);
        shared.flood_full.fetch_add(full, Ordering::Relaxed);
        shared.offered.fetch_add(n, Ordering::Relaxed);
    }
    shared.legit_drops.fetch_add(
        drops.events + drops.neighbours + drops.ike + drops.ike_half_open,
        Ordering::Relaxed,
    );
    shared
        .legit_half_open_full
        .fetch_add(drops.ike_half_open, Ordering::Relaxed);
}

/// What a peer has done so far.
struct Peer {
    driver: IkeDriver,
    up_at: Option<Instant>,
    first_out: Option<u32>,
    rekey_at: Option<Instant>,
    rekeyed_at: Option<Instant>,
    /// The liveness check in flight: message ID and when it left.
    dpd: Option<(u32, Instant)>,
    dpd_ms: Vec<f64>,
}

/// What the peers' thread measured.
#[derive(Debug, Default)]
struct PeersResult {
    setup_ms: Vec<f64>,
    rekey_ms: Vec<f64>,
    dpd_ms: Vec<f64>,
    setups_ok: u32,
    rekeys_ok: u32,
    retransmits: u64,
    gave_up: u64,
}

/// The peers: start together, set up, rekey, wait for liveness checks.
fn peers(
    spec: &IkeFloodSpec,
    mut list: Vec<IkeDriver>,
    out: Sender<Vec<u8>>,
    wire: Receiver<Vec<u8>>,
) -> PeersResult {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.window_s);
    let mut punts: Vec<Vec<u8>> = Vec::new();
    let mut res = PeersResult::default();
    let mut peers: Vec<Peer> = Vec::with_capacity(list.len());
    for d in list.drain(..) {
        peers.push(Peer {
            driver: d,
            up_at: None,
            first_out: None,
            rekey_at: None,
            rekeyed_at: None,
            dpd: None,
            dpd_ms: Vec::new(),
        });
    }
    // Carries out peer `i`'s actions: datagrams to the queues; a new
    // outbound SA marks progress.
    let act = |p: &mut Peer, punts: &mut Vec<Vec<u8>>| {
        let now = Instant::now();
        let mut rekey = false;
        if p.driver.take_sas_changed() {
            let sas = p.driver.sas();
            let out = sas.iter().find_map(|(_, t)| t.outbound.as_ref());
            if let Some(spi) = out.map(|o| o.spi().get()) {
                match p.first_out {
                    None => {
                        p.first_out = Some(spi);
                        p.up_at = Some(now);
                        rekey = true;
                    }
                    Some(first) if first != spi && p.rekeyed_at.is_none() => {
                        p.rekeyed_at = Some(now);
                    }
                    _ => {}
                }
            }
        }
        for a in p.driver.take_actions() {
            if let IkeAction::Transmit(packet) = a {
                if p.rekeyed_at.is_some() && p.dpd.is_none() {
                    if let Some((INFORMATIONAL, false, id)) = ike_header(&packet) {
                        p.dpd = Some((id, now));
                    }
                }
                punts.push(packet);
            }
        }
        if rekey && p.driver.rekey(now, "t").is_ok() {
            p.rekey_at = Some(now);
        }
    };
    for p in &mut peers {
        p.driver.start(Instant::now());
        act(p, &mut punts);
    }
    let mut last_tick = Instant::now();
    loop {
        for p in punts.drain(..) {
            let _ = out.send(p);
        }
        let done = peers
            .iter()
            .all(|p| p.rekeyed_at.is_some() && p.dpd_ms.len() >= spec.dpd_samples as usize);
        if done || Instant::now() >= deadline {
            break;
        }
        let first = wire.recv_timeout(Duration::from_millis(1)).ok();
        for packet in first.into_iter().chain(wire.try_iter()) {
            let Some(i) = ipv4_at(&packet, 16).and_then(|d| d.checked_sub(PEER_BASE)) else {
                continue;
            };
            let Some(p) = peers.get_mut(i as usize) else {
                continue;
            };
            if let (Some((id, at)), Some((INFORMATIONAL, true, rid))) = (p.dpd, ike_header(&packet))
            {
                if rid == id {
                    p.dpd_ms.push(at.elapsed().as_secs_f64() * 1e3);
                    p.dpd = None;
                }
            }
            p.driver.handle_punt(Instant::now(), &packet);
            act(p, &mut punts);
        }
        if last_tick.elapsed() >= Duration::from_millis(5) {
            last_tick = Instant::now();
            for p in &mut peers {
                p.driver.tick(Instant::now());
                act(p, &mut punts);
            }
        }
    }
    for p in &peers {
        if let Some(up) = p.up_at {
            res.setups_ok += 1;
            res.setup_ms.push((up - start).as_secs_f64() * 1e3);
        }
        if let (Some(a), Some(b)) = (p.rekey_at, p.rekeyed_at) {
            res.rekeys_ok += 1;
            res.rekey_ms.push((b - a).as_secs_f64() * 1e3);
        }
        res.dpd_ms.extend(&p.dpd_ms);
        let c = counters(&p.driver.stats_lines());
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        res.retransmits += get("engine.retransmits");
        res.gave_up += get("engine.peers_dead");
    }
    res
}

/// The driver's `ike.*` counters, and its engines' (`ike.<tunnel>.*`)
/// summed over tunnels as `engine.*`.
fn counters(stats: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in stats.lines() {
        let Some((k, v)) = l.split_once(' ') else {
            continue;
        };
        let (Some(k), Ok(v)) = (k.strip_prefix("ike."), v.trim().parse::<u64>()) else {
            continue;
        };
        let k = match k.rsplit_once('.') {
            Some((_, last)) => format!("engine.{last}"),
            None => k.to_string(),
        };
        *m.entry(k).or_insert(0) += v;
    }
    m
}

/// An IKE_SA_INIT request a real initiator would send the flood target,
/// to replay with fresh SPIs.
fn init_template() -> Result<Vec<u8>, Error> {
    let cfg = peer_config(0)?;
    let mut e = Endpoint::new(engine_config(&cfg.tunnels[0])?, Box::new(SystemRng::new()))
        .map_err(|e| format!("{e:?}"))?;
    e.initiate(Timestamp(0));
    let t = e.poll_transmit().ok_or("the initiator sent nothing")?;
    Ok(t.datagram())
}

/// The engines' RNG in the lab: the system's, as in the gateway.
fn system_rng() -> Box<dyn control::ike::RngSource + Send> {
    Box::new(SystemRng::new())
}

/// Runs one case in this process.
pub fn run(spec: &IkeFloodSpec) -> Result<IkeFloodSample, Error> {
    if spec.initiators == 0 || spec.initiators > 250 || spec.flood_sources == 0 {
        return Err("ike-flood: 1 to 250 peers and at least one flood source".into());
    }
    let driver = IkeDriver::new(&responder_config(spec)?, Instant::now(), &mut system_rng)?;
    let peer_drivers = (0..spec.initiators)
        .map(|i| IkeDriver::new(&peer_config(i)?, Instant::now(), &mut system_rng))
        .collect::<Result<Vec<_>, Error>>()?;
    let template = init_template()?;
    let tables: IkeSpiTables = driver.spi_tables();
    let (to_control, from_workers) = control_queues(tables);
    let (wire_tx, wire_rx) = unbounded();
    let shared = Arc::new(Shared::default());
    let responder_thread = {
        let shared = shared.clone();
        let n = spec.initiators;
        thread::Builder::new()
            .name("ike-control".into())
            .spawn(move || responder(driver, from_workers, wire_tx, n, shared))?
    };
    let rss_before = rss_kb().0;

    // The probe: as fast as the flood thread goes, no peer.
    let start_flood = |rate: Option<f64>, legit: Option<Receiver<Vec<u8>>>| {
        shared.stop_flood.store(false, Ordering::Relaxed);
        let (to, template, shared) = (to_control.clone(), template.clone(), shared.clone());
        let sources = spec.flood_sources;
        thread::Builder::new()
            .name("ike-worker".into())
            .spawn(move || worker(to, template, sources, rate, legit, &shared))
    };
    let snap = |s: &Shared| {
        (
            Instant::now(),
            s.offered.load(Ordering::Relaxed),
            s.handled.load(Ordering::Relaxed),
            s.flood_full.load(Ordering::Relaxed),
            s.control_cpu_us.load(Ordering::Relaxed),
        )
    };
    let probe = start_flood(None, None)?;
    // The first moments fill the queue; measure after them.
    thread::sleep(Duration::from_secs_f64(spec.probe_s / 4.0));
    let p0 = snap(&shared);
    let probe_end = p0.0 + Duration::from_secs_f64(spec.probe_s * 3.0 / 4.0);
    let (mut busy, mut looks) = (0u32, 0u32);
    while Instant::now() < probe_end {
        thread::sleep(Duration::from_millis(10));
        looks += 1;
        busy += u32::from(to_control.ike_new.len() * 2 >= IKE_NEW_QUEUE);
    }
    let p1 = snap(&shared);
    shared.stop_flood.store(true, Ordering::Relaxed);
    let _ = probe.join();
    let rss_after_probe = rss_kb().0;
    let probe_s = (p1.0 - p0.0).as_secs_f64();
    let saturation = (p1.2 - p0.2) as f64 / probe_s;
    let target = saturation * spec.flood_factor;

    // The peers under the flood.
    let (out_tx, out_rx) = unbounded();
    let fl = start_flood(Some(target), Some(out_rx))?;
    thread::sleep(Duration::from_millis(100));
    let m0 = snap(&shared);
    let res = {
        let spec = *spec;
        thread::Builder::new()
            .name("ike-peers".into())
            .spawn(move || peers(&spec, peer_drivers, out_tx, wire_rx))?
            .join()
            .map_err(|_| "the peers' thread panicked")?
    };
    let m1 = snap(&shared);
    let (rss_after, rss_peak) = rss_kb();
    shared.stop_flood.store(true, Ordering::Relaxed);
    let _ = fl.join();
    shared.stop_responder.store(true, Ordering::Relaxed);
    let driver = responder_thread
        .join()
        .map_err(|_| "the control thread panicked")?;
    drop(to_control);
    let window = (m1.0 - m0.0).as_secs_f64();
    Ok(IkeFloodSample {
        probe_offered_dps: (p1.1 - p0.1) as f64 / probe_s,
        saturation_dps: saturation,
        probe_queue_busy: f64::from(busy) / f64::from(looks.max(1)),
        target_dps: target,
        offered_dps: (m1.1 - m0.1) as f64 / window,
        handled_dps: (m1.2 - m0.2) as f64 / window,
        flood_queue_full: m1.3 - m0.3,
        control_cpu_share: (m1.4.saturating_sub(m0.4)) as f64 / 1e6 / window,
        window_s: window,
        initiators: spec.initiators,
        setups_ok: res.setups_ok,
        rekeys_ok: res.rekeys_ok,
        setup_ms: res.setup_ms,
        rekey_ms: res.rekey_ms,
        dpd_ms: res.dpd_ms,
        legit_queue_full: shared.legit_full.load(Ordering::Relaxed),
        legit_queue_full_auth: shared.legit_full_auth.load(Ordering::Relaxed),
        legit_gave_up: res.gave_up,
        legit_queue_drops: shared.legit_drops.load(Ordering::Relaxed),
        legit_half_open_full: shared.legit_half_open_full.load(Ordering::Relaxed),
        legit_retransmits: res.retransmits,
        replies_to_spoofed: shared.replies_to_spoofed.load(Ordering::Relaxed),
        responder: counters(&driver.stats_lines()),
        rss_kb_before: rss_before,
        rss_kb_after_probe: rss_after_probe,
        rss_kb_after: rss_after,
        rss_kb_peak: rss_peak,
    })
}

/// One case's record in `latest.json` (`ike_flood`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkeFloodRecord {
    /// Always `ike-flood`.
    pub kind: String,
    /// The case's name.
    pub name: String,
    /// `[control] ike_cookie_threshold`.
    pub cookie_threshold: usize,
    /// Legitimate peers.
    pub initiators: u32,
    /// Spoofed source addresses.
    pub flood_sources: u32,
    /// Flood datagrams/s the control thread handled at saturation.
    pub saturation_dps: f64,
    /// Flood datagrams/s offered while the peers ran.
    pub offered_dps: f64,
    /// Flood datagrams/s handled meanwhile.
    pub handled_dps: f64,
    /// Share of the peers whose tunnel came up (%).
    pub legit_success_pct: f64,
    /// Share of the peers whose rekey completed (%).
    pub rekey_success_pct: f64,
    /// Setup delays.
    pub setup: Delays,
    /// Child SA rekey delays (request → new outbound SA in use).
    pub rekey: Delays,
    /// Liveness check round trips.
    pub dpd: Delays,
    /// RSS before the flood (MB).
    pub rss_mb_before: f64,
    /// RSS at the end (MB).
    pub rss_mb_after: f64,
    /// Peak RSS (MB).
    pub rss_mb_peak: f64,
    /// The run.
    pub run: IkeFloodSample,
}

impl IkeFloodRecord {
    /// The record of a run.
    pub fn new(spec: &IkeFloodSpec, s: IkeFloodSample) -> Self {
        let pct = |n: u32| 100.0 * f64::from(n) / f64::from(s.initiators.max(1));
        let mb = |kb: u64| kb as f64 / 1024.0;
        Self {
            kind: "ike-flood".into(),
            name: spec.name(),
            cookie_threshold: spec.threshold(),
            initiators: spec.initiators,
            flood_sources: spec.flood_sources,
            saturation_dps: s.saturation_dps,
            offered_dps: s.offered_dps,
            handled_dps: s.handled_dps,
            legit_success_pct: pct(s.setups_ok),
            rekey_success_pct: pct(s.rekeys_ok),
            setup: Delays::of(&s.setup_ms),
            rekey: Delays::of(&s.rekey_ms),
            dpd: Delays::of(&s.dpd_ms),
            rss_mb_before: mb(s.rss_kb_before),
            rss_mb_after: mb(s.rss_kb_after),
            rss_mb_peak: mb(s.rss_kb_peak),
            run: s,
        }
    }
}

fn ms3(d: &Delays) -> String {
    format!("{:.1}/{:.1}/{:.1}", d.p50_ms, d.p99_ms, d.max_ms)
}

/// Column heads of the plain-text table.
const TEXT_HEAD: [&str; 14] = [
    "case",
    "cookie",
    "sat dg/s",
    "offered",
    "handled",
    "ctl %",
    "up %",
    "rekey %",
    "setup ms p50/p99/max",
    "rekey ms p50/p99/max",
    "DPD ms p50/p99/max",
    "RSS MB",
    "after",
    "peak",
];

/// Column heads of the Markdown table.
const MD_HEAD: [&str; 14] = [
    "case",
    "cookie threshold",
    "saturation (datagrams/s)",
    "flood offered (datagrams/s)",
    "flood handled (datagrams/s)",
    "control thread on CPU (%)",
    "legitimate setups up (%)",
    "rekeys done (%)",
    "setup ms p50/p99/max",
    "rekey ms p50/p99/max",
    "DPD round trip ms p50/p99/max",
    "RSS MB before",
    "RSS MB after",
    "RSS MB peak",
];

/// One row per record, the cells of both tables.
fn rows(records: &[IkeFloodRecord]) -> Vec<[String; 14]> {
    records
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.cookie_threshold.to_string(),
                format!("{:.0}", r.saturation_dps),
                format!("{:.0}", r.offered_dps),
                format!("{:.0}", r.handled_dps),
                format!("{:.0}", r.run.control_cpu_share * 100.0),
                format!("{:.1}", r.legit_success_pct),
                format!("{:.1}", r.rekey_success_pct),
                ms3(&r.setup),
                ms3(&r.rekey),
                ms3(&r.dpd),
                format!("{:.1}", r.rss_mb_before),
                format!("{:.1}", r.rss_mb_after),
                format!("{:.1}", r.rss_mb_peak),
            ]
        })
        .collect()
}

/// The flood table (plain text).
pub fn table(records: &[IkeFloodRecord]) -> String {
    text_table(&TEXT_HEAD, &rows(records))
}

/// The same in Markdown.
pub fn markdown_table(records: &[IkeFloodRecord]) -> String {
    md_table(&MD_HEAD, &rows(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_nearest_rank() {
        let d = Delays::of(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            (d.n, d.p50_ms, d.p99_ms, d.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert!(Delays::of(&[]).p50_ms.is_nan());
    }

    #[test]
    fn configurations_parse_and_counters_sum() {
        let spec = quick()[1];
        let r = responder_config(&spec).unwrap();
        assert_eq!(r.tunnels.len(), spec.initiators as usize + 1);
        assert_eq!(r.control.ike_cookie_threshold, 0);
        assert_eq!(peer_config(3).unwrap().tunnels.len(), 1);
        let c = counters("ike.rx_packets 3\nike.a.cookies_sent 2\nike.b.cookies_sent 5\n");
        assert_eq!(c["engine.cookies_sent"], 7);
        assert_eq!(c["rx_packets"], 3);
    }

    /// A short run with no flood worth the name still brings every peer
    /// up, rekeys and answers the liveness check: the bench's plumbing
    /// works end to end.
    #[test]
    fn a_short_run_brings_peers_up() {
        let spec = IkeFloodSpec {
            cookie_threshold: Some(0),
            initiators: 3,
            flood_sources: 16,
            probe_s: 0.2,
            flood_factor: 0.01,
            window_s: 8.0,
            dpd_samples: 1,
        };
        let s = run(&spec).unwrap();
        assert_eq!((s.setups_ok, s.rekeys_ok), (3, 3), "{s:?}");
        assert_eq!(s.dpd_ms.len(), 3, "{s:?}");
        assert!(s.saturation_dps > 0.0 && s.rss_kb_before > 0, "{s:?}");
        assert!(s.responder["engine.cookies_sent"] >= 3, "{s:?}");
    }
}
