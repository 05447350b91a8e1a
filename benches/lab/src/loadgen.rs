//! The latency lab's generator and sink (`espresso-lab bench-loadgen`, one
//! DPDK process with its own `--file-prefix`, on the core the worker does
//! not use).
//!
//! It connects two `net_memif` client ports to the device under test (the
//! gateway's `bench-case` in serve mode, or `dpdk-testpmd` io): port 0
//! feeds the DUT's input, port 1 receives what the DUT sends on. It then
//! answers trial requests read one JSON line at a time on stdin with one
//! JSON result line on stdout: offer frames at a paced rate (or as fast as
//! it can) for some time, count exactly what comes back, and record each
//! returning frame's one-way latency (TSC at the sink minus TSC at the
//! generator's `tx_burst`) in an HDR histogram.
//!
//! Matching a frame at the sink to its send time ("tags"): every frame
//! carries a tag the sink can read, and the generator keeps the TSC of
//! each accepted tag in a ring of [`TAG_RING`] slots.
//! - Plaintext input (encrypt cases): the generator writes a counter of
//!   the frames the DUT accepted (1, 2, ...) into the UDP payload at send
//!   time. testpmd forwards it unchanged; the gateway encrypts the frames
//!   in the order it receives them with one SA whose ESP sequence numbers
//!   start at 1 (RFC 4303 §3.3.3), so the sink reads the same tag as the
//!   ESP sequence number. This holds while the gateway drops nothing
//!   before encrypting; the lab checks its drop counters per trial.
//! - ESP input (decrypt cases): [`TAG_RING`] ESP frames are built before
//!   the first trial by the peer's SA, frame `j` with sequence number
//!   `j + 1` and the tag `j + 1` in its plaintext UDP payload, and sent in
//!   a loop (the gateway's SA has anti-replay off, as in the loop-replay
//!   cases). The gateway decrypts and the sink reads the plaintext tag;
//!   through testpmd the sink reads the ESP sequence number.
//!
//! A tag's slot is reused [`TAG_RING`] frames later, so a latency longer
//! than that many frame times would be measured against the wrong send;
//! such a frame shows up as a negative or over-a-second latency and is
//! counted as `stale` instead of recorded.
//!
//! Loss: a frame the DUT's RX ring (the memif ring) did not take is lost
//! as on a wire whose receiver is full; `lost = offered - received`,
//! counted exactly because generator and sink are one process.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use dataplane::buf::{HeapBuf, PacketBuf};
use dpdk::{rdtsc, Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, BURST_SIZE};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::cpu::ThreadClock;
use super::spec::{CaseSpec, Direction};
use super::traffic::{self, ethernet};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Send-time slots (a power of two): how many frames may be in flight
/// before a tag's slot is reused, and how many ESP frames a decrypt case
/// cycles through.
pub const TAG_RING: usize = 65536;
/// EAL memory of the generator (MiB, no hugepages).
pub const LOADGEN_MEMORY_MB: u32 = 512;
/// How long the sink keeps receiving after the last frame is offered: far
/// longer than the DUT's rings take to empty.
pub const DRAIN: Duration = Duration::from_millis(30);
/// Byte offset of the tag in a plaintext frame's UDP payload.
const TAG_OFFSET: usize = 0;

/// How to start the generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadgenRequest {
    /// The case whose frames to send (one SA).
    pub spec: CaseSpec,
    /// The generator's two ports as `--vdev` arguments: the one facing the
    /// DUT's input port (frames go out here), then the one facing its
    /// output port (the sink): memif clients, or `net_af_packet` on veths.
    pub ports: [String; 2],
    /// The core to run on.
    pub core: usize,
}

/// One trial.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Trial {
    /// Frames per second to offer; `None`: as fast as the generator can.
    pub rate_pps: Option<f64>,
    /// Seconds of offered traffic (the sink then drains for [`DRAIN`]).
    pub duration_s: f64,
    /// Record latencies.
    pub latency: bool,
}

/// What a trial measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrialResult {
    /// Frames offered to the DUT.
    pub offered: u64,
    /// Frames the DUT's RX ring took.
    pub accepted: u64,
    /// Test frames that came back at the sink.
    pub received: u64,
    /// Frames at the sink that were not test frames (counted, dropped).
    pub foreign: u64,
    /// Frames not offered because the generator's pool was empty.
    pub no_mbuf: u64,
    /// Seconds frames were offered for.
    pub wall_s: f64,
    /// Latencies recorded.
    pub samples: u64,
    /// Test frames whose send time was no longer known (see the module).
    pub stale: u64,
    /// Latency percentiles and maximum in microseconds (0 without
    /// samples).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Share of the trial (offering and draining) the generator's thread
    /// was on a CPU: below 1 when the shared core was taken from it.
    pub gen_cpu_share: f64,
    /// Times the scheduler took the CPU from the generator's thread
    /// during the trial.
    #[serde(default)]
    pub gen_preempted: u64,
}

impl TrialResult {
    /// Offered frames that never came back (RFC 2544 §26.3 frame loss).
    pub fn lost(&self) -> u64 {
        self.offered.saturating_sub(self.received)
    }

    /// Frames offered per second.
    pub fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.wall_s
    }

    /// Frames received per second of the offered window.
    pub fn received_pps(&self) -> f64 {
        self.received as f64 / self.wall_s
    }
}

/// The tag a frame at the sink carries: the ESP sequence number of an ESP
/// (or ESP-in-UDP, RFC 3948) frame, else the counter in the payload of a
/// plaintext UDP frame. `None` for anything else.
pub fn tag_of(frame: &[u8]) -> Option<u64> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let esp_seq = |esp: &[u8]| -> Option<u64> {
        let b = esp.get(4..8)?;
        Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    };
    match ip[9] {
        50 => esp_seq(&ip[ihl..]),
        17 => {
            let udp = &ip[ihl..];
            if udp.len() < 8 {
                return None;
            }
            if udp[2..4] == 4500u16.to_be_bytes() {
                let esp = &udp[8..];
                // RFC 3948 §2.2: a zero SPI marks a non-ESP packet.
                if esp.get(..4)? == [0, 0, 0, 0] {
                    return None;
                }
                esp_seq(esp)
            } else {
                let b = udp.get(8 + TAG_OFFSET..8 + TAG_OFFSET + 8)?;
                Some(u64::from_le_bytes(b.try_into().ok()?))
            }
        }
        _ => None,
    }
}

/// Writes `tag` into a plaintext UDP/IPv4 frame built by [`traffic`].
fn stamp(frame: &mut [u8], tag: u64) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let at = 14 + ihl + 8 + TAG_OFFSET;
    if let Some(b) = frame.get_mut(at..at + 8) {
        b.copy_from_slice(&tag.to_le_bytes());
    }
}

/// How the frames carry their tags.
enum Frames {
    /// Plaintext: the tag is the accepted-frame counter, written at send.
    Counted(Vec<Vec<u8>>),
    /// ESP built in advance: frame `j` carries tag `j + 1`.
    Prebuilt(Vec<Vec<u8>>),
}

/// The frames of a one-SA case (flow 0 of [`traffic`]'s plan).
fn frames(spec: &CaseSpec) -> Result<Frames, Error> {
    if spec.sa_count != 1 {
        return Err("the latency lab sends one flow over one SA".into());
    }
    let (local, remote) = (traffic::local_host(0), traffic::remote_host(0));
    Ok(match spec.direction {
        Direction::Encrypt => Frames::Counted(
            (0..spec.frame.period())
                .map(|j| {
                    let ip = traffic::udp_packet(local, remote, spec.frame.size_of(j) - 18, 0);
                    ethernet(traffic::LAN_MAC, traffic::HOST_MAC, &ip)
                })
                .collect(),
        ),
        Direction::Decrypt => {
            let mut peer = traffic::peer_outbound(spec, 0)?;
            let mut out = Vec::with_capacity(TAG_RING);
            for j in 0..TAG_RING {
                let mut inner =
                    traffic::udp_packet(remote, local, spec.frame.size_of(j) - 18, j as u16);
                let at = 20 + 8 + TAG_OFFSET;
                inner[at..at + 8].copy_from_slice(&(j as u64 + 1).to_le_bytes());
                let mut buf = HeapBuf::new(128, &inner, 128);
                peer.encapsulate(&mut buf, &mut |_| {})
                    .map_err(|r| format!("encapsulating: {r:?}"))?;
                out.push(ethernet(traffic::WAN_MAC, traffic::HOST_MAC, buf.data()));
            }
            Frames::Prebuilt(out)
        }
    })
}

/// The generator and sink.
struct Loadgen {
    pool: Mempool,
    tx: dpdk::TxQueue,
    rx_out: dpdk::RxQueue,
    rx_in: dpdk::RxQueue,
    frames: Frames,
    /// Frames taken from `frames` so far.
    next: u64,
    /// Frames the DUT accepted so far (the counter tag of the last one).
    accepted: u64,
    /// TSC at send, by tag modulo `TAG_RING`.
    sent_at: Vec<u64>,
    tsc_hz: u64,
    burst: Vec<Mbuf>,
    rx: Vec<Mbuf>,
    clock: ThreadClock,
}

impl Loadgen {
    /// Builds and offers up to `n` frames; returns how many were offered.
    fn send(&mut self, n: usize, r: &mut TrialResult) -> usize {
        let mut tags = [0u64; BURST_SIZE];
        let (list, counted) = match &self.frames {
            Frames::Counted(f) => (f, true),
            Frames::Prebuilt(f) => (f, false),
        };
        for (k, tag) in tags.iter_mut().enumerate().take(n) {
            let j = (self.next % list.len() as u64) as usize;
            let Ok(mut m) = Mbuf::from_slice(&self.pool, &list[j]) else {
                r.no_mbuf += (n - k) as u64;
                break;
            };
            self.next += 1;
            *tag = if counted {
                let t = self.accepted + 1 + k as u64;
                stamp(m.data_mut(), t);
                t
            } else {
                j as u64 + 1
            };
            self.burst.push(m);
        }
        let built = self.burst.len();
        let now = rdtsc();
        let sent = self.tx.tx_burst(&mut self.burst);
        // What the ring did not take is lost, as on a wire.
        self.burst.clear();
        let mask = TAG_RING as u64 - 1;
        for &tag in &tags[..sent] {
            self.sent_at[(tag & mask) as usize] = now;
        }
        self.accepted += sent as u64;
        r.offered += built as u64;
        r.accepted += sent as u64;
        built
    }

    /// Takes what arrived at the sink (and anything the DUT sent back on
    /// the input side).
    fn receive(&mut self, r: &mut TrialResult, hist: Option<&mut Histogram<u64>>) {
        let n = self.rx_out.rx_burst(&mut self.rx);
        let now = rdtsc();
        let mask = TAG_RING as u64 - 1;
        let mut hist = hist;
        for m in self.rx.drain(..n) {
            match tag_of(m.data()) {
                Some(tag) => {
                    r.received += 1;
                    if let Some(h) = hist.as_deref_mut() {
                        let at = self.sent_at[(tag & mask) as usize];
                        let cycles = now.wrapping_sub(at);
                        if at != 0 && now >= at && cycles < self.tsc_hz {
                            let ns =
                                (cycles as u128 * 1_000_000_000 / u128::from(self.tsc_hz)) as u64;
                            h.saturating_record(ns.max(1));
                            r.samples += 1;
                        } else {
                            r.stale += 1;
                        }
                    }
                }
                None => r.foreign += 1,
            }
        }
        let back = self.rx_in.rx_burst(&mut self.rx);
        r.foreign += back as u64;
        self.rx.clear();
    }

    fn trial(&mut self, t: &Trial) -> Result<TrialResult, Error> {
        let mut r = TrialResult::default();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        let hz = self.tsc_hz as f64;
        let cpu0 = self.clock.on_cpu()?;
        let preempted0 = self.clock.preemptions()?;
        let start = rdtsc();
        let send_end = start + (t.duration_s.max(0.0) * hz) as u64;
        let drain_end = send_end + (DRAIN.as_secs_f64() * hz) as u64;
        let mut offered = 0u64;
        loop {
            let now = rdtsc();
            if now >= drain_end {
                break;
            }
            if now < send_end {
                let due = match t.rate_pps {
                    Some(rate) => {
                        let total = ((now - start) as f64 * rate / hz) as u64;
                        total.saturating_sub(offered)
                    }
                    None => BURST_SIZE as u64,
                };
                let n = due.min(BURST_SIZE as u64) as usize;
                if n > 0 {
                    // Frames an empty pool kept back stay due.
                    offered += self.send(n, &mut r) as u64;
                }
            }
            self.receive(&mut r, t.latency.then_some(&mut hist));
        }
        r.wall_s = (send_end - start) as f64 / hz;
        let cpu = (self.clock.on_cpu()? - cpu0).as_secs_f64();
        r.gen_cpu_share = cpu * hz / (rdtsc() - start) as f64;
        r.gen_preempted = self.clock.preemptions()?.saturating_sub(preempted0);
        if !hist.is_empty() {
            let us = |ns: u64| ns as f64 / 1000.0;
            r.p50_us = us(hist.value_at_quantile(0.5));
            r.p99_us = us(hist.value_at_quantile(0.99));
            r.p999_us = us(hist.value_at_quantile(0.999));
            r.max_us = us(hist.max());
        }
        Ok(r)
    }
}

/// Runs the generator in this process (which must not have started EAL):
/// connects, prints `{"ready":true}` and then answers trials until stdin
/// closes.
pub fn serve(req: &LoadgenRequest) -> Result<(), Error> {
    let frames = frames(&req.spec)?;
    control::eal_args::pin_before_eal(req.core);
    let eal = Eal::init(control::eal_args::eal_args(
        "espresso-loadgen",
        &req.core.to_string(),
        LOADGEN_MEMORY_MB,
        &["--log-level=pmd.net.memif:error".to_string()],
    ))?;
    let tsc_hz = eal.tsc_hz();
    let pool = Mempool::new(
        &eal,
        &MempoolConfig {
            name: "loadgen_pool".into(),
            size: super::case::WORKING_MBUFS,
            cache_size: super::case::MBUF_CACHE,
            data_room: 2048 + 128,
        },
    )?;
    let cfg = PortConfig::new(pool.clone());
    let input = Port::open(&eal, &req.ports[0], &cfg)?;
    let output = Port::open(&eal, &req.ports[1], &cfg)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(input.link()?.up && output.link()?.up) {
        if Instant::now() > deadline {
            return Err(format!("links did not come up: {:?}", req.ports).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut gen = Loadgen {
        pool,
        tx: input.tx_queue(0).ok_or("tx queue")?,
        rx_out: output.rx_queue(0).ok_or("rx queue")?,
        rx_in: input.rx_queue(0).ok_or("rx queue")?,
        frames,
        next: 0,
        accepted: 0,
        sent_at: vec![0; TAG_RING],
        tsc_hz,
        burst: Vec::with_capacity(BURST_SIZE),
        rx: Vec::with_capacity(BURST_SIZE),
        clock: ThreadClock::current()?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{{\"ready\":true,\"tsc_hz\":{tsc_hz}}}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let t: Trial = serde_json::from_str(&line)?;
        let r = gen.trial(&t)?;
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        out.flush()?;
    }
    drop(gen);
    drop(input);
    drop(output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BenchAlgorithm, FrameSize};

    fn spec(direction: Direction, udp_encap: bool) -> CaseSpec {
        CaseSpec {
            direction,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Fixed(64),
            udp_encap,
            sa_count: 1,
            scale_frames: 0,
        }
    }

    #[test]
    fn plaintext_tag_is_written_and_read_back() {
        let Frames::Counted(f) = frames(&spec(Direction::Encrypt, false)).unwrap() else {
            panic!("encrypt frames are stamped at send");
        };
        let mut frame = f[0].clone();
        assert_eq!(frame.len(), 60);
        stamp(&mut frame, 0x0123_4567_89ab);
        assert_eq!(tag_of(&frame), Some(0x0123_4567_89ab));
    }

    /// The gateway encrypts the stamped frames with one SA: the sink reads
    /// the ESP sequence number, which counts the frames 1, 2, ... as the
    /// generator's tags do.
    #[test]
    fn esp_sequence_numbers_match_the_counter_tags() {
        for udp in [false, true] {
            let s = spec(Direction::Encrypt, udp);
            let Frames::Counted(f) = frames(&s).unwrap() else {
                panic!("counted");
            };
            let mut sa = traffic::gateway_outbound(&s, 0).unwrap();
            for tag in 1..=3u64 {
                let mut frame = f[0].clone();
                stamp(&mut frame, tag);
                let mut buf = HeapBuf::new(128, &frame[14..], 128);
                sa.encapsulate(&mut buf, &mut |_| {}).unwrap();
                let esp = ethernet(traffic::HOST_MAC, traffic::WAN_MAC, buf.data());
                assert_eq!(tag_of(&esp), Some(tag), "udp {udp}");
            }
        }
    }

    /// Decrypt frames: the ESP sequence number (what testpmd passes on)
    /// and the plaintext tag (what the gateway passes on) agree.
    #[test]
    fn prebuilt_esp_frames_carry_the_same_tag_inside_and_out() {
        let s = spec(Direction::Decrypt, true);
        let Frames::Prebuilt(f) = frames(&s).unwrap() else {
            panic!("prebuilt");
        };
        assert_eq!(f.len(), TAG_RING);
        let mut engine = dataplane::esp::EspEngine::new();
        engine.install_inbound(traffic::gateway_inbound(&s, 0).unwrap());
        for j in [0usize, 1, 777, TAG_RING - 1] {
            assert_eq!(tag_of(&f[j]), Some(j as u64 + 1));
            let mut buf = HeapBuf::new(0, &f[j][14..], 0);
            let loc = dataplane::esp::locate_esp(dataplane::buf::PacketBuf::data(&buf), 4500);
            let r = engine.decapsulate(&mut buf, loc, &mut |_| {});
            assert!(matches!(
                r,
                Ok(dataplane::esp::InboundOutcome::Decrypted(_))
            ));
            let plain = ethernet(traffic::HOST_MAC, traffic::LAN_MAC, buf.data());
            assert_eq!(tag_of(&plain), Some(j as u64 + 1));
        }
    }

    #[test]
    fn other_frames_have_no_tag() {
        assert_eq!(tag_of(&[0u8; 10]), None);
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(tag_of(&arp), None);
        let ip = traffic::udp_packet(traffic::local_host(0), traffic::remote_host(0), 46, 0);
        let mut icmp = ethernet(traffic::LAN_MAC, traffic::HOST_MAC, &ip);
        icmp[14 + 9] = 1;
        assert_eq!(tag_of(&icmp), None);
    }

    #[test]
    fn loss_and_rates() {
        let r = TrialResult {
            offered: 1000,
            received: 990,
            wall_s: 0.5,
            ..Default::default()
        };
        assert_eq!(r.lost(), 10);
        assert_eq!(r.offered_pps(), 2000.0);
        assert_eq!(r.received_pps(), 1980.0);
    }
}
