//! Another DPDK program measured on a case's traffic: DPDK's
//! `ipsec-secgw` ([`super::secgw`]) and Espresso's own product binary,
//! `espresso run` with a generated config file ([`super::product`]).
//!
//! Both run on the same `net_pcap` (infinite_rx) → program → `net_null`
//! path, vdevs, pool size and core as the lab's in-process gateway and
//! testpmd. Neither has a prompt to ask for counters at a given instant, so
//! each window is bracketed by reads of the output port's `opackets` from
//! DPDK's telemetry socket ([`super::telemetry`]) and the polling thread's
//! on-CPU time from procfs, taken back to back.

use std::path::Path;
use std::time::{Duration, Instant};

use super::case::RunSample;
use super::cpu::{threads, ThreadClock};
use super::telemetry::Telemetry;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How to measure a running program.
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    /// The program's process id.
    pub pid: u32,
    /// Names the polling thread may have (the first thread found with one
    /// of them is measured).
    pub thread_names: &'a [String],
    /// The program's telemetry socket (`dpdk_telemetry.v2`).
    pub telemetry: &'a Path,
    /// The output port whose transmitted packets count.
    pub out_port: u16,
    /// The input port (its received packets and misses are reported).
    pub in_port: u16,
    /// Seconds of traffic before the first window.
    pub warmup_s: f64,
    /// Seconds per window.
    pub duration_s: f64,
    /// Windows, back to back.
    pub windows: usize,
    /// TSC frequency (from a gateway run on the same machine).
    pub tsc_hz: u64,
    /// What the samples name as the backend.
    pub backend: &'a str,
}

/// The thread of `pid` named one of `names`, waiting up to `within` for
/// it to appear (a program names its threads while it starts).
pub fn find_thread(pid: u32, names: &[String], within: Duration) -> Result<ThreadClock, Error> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = threads(pid)?
            .into_iter()
            .find(|t| t.name().is_ok_and(|n| names.contains(&n)))
        {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            return Err(format!("process {pid} has no thread {}", names.join(" or ")).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Warms up, then measures `windows` windows: a sample each.
pub fn measure(w: &Windows) -> Result<Vec<RunSample>, Error> {
    let clock = find_thread(w.pid, w.thread_names, Duration::from_secs(60))?;
    let mut tel = Telemetry::connect_within(w.telemetry, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs_f64(w.warmup_s));
    let windows = w.windows.max(1);
    let mut marks = Vec::with_capacity(windows + 1);
    for k in 0..=windows {
        if k > 0 {
            std::thread::sleep(Duration::from_secs_f64(w.duration_s));
        }
        let cpu = clock.on_cpu()?;
        let at = Instant::now();
        let out = tel.port_stats(w.out_port)?;
        let inp = tel.port_stats(w.in_port)?;
        marks.push((cpu, at, out, inp));
    }
    Ok(marks
        .windows(2)
        .map(|m| {
            let (c0, t0, o0, i0) = &m[0];
            let (c1, t1, o1, i1) = &m[1];
            let sent = o1.opackets.saturating_sub(o0.opackets);
            let received = i1.ipackets.saturating_sub(i0.ipackets);
            RunSample {
                packets: sent,
                received,
                // What came in and did not go out, plus what the output
                // port could not send.
                dropped: received.saturating_sub(sent) + o1.oerrors.saturating_sub(o0.oerrors),
                wall_s: (*t1 - *t0).as_secs_f64(),
                cpu_s: (*c1 - *c0).as_secs_f64(),
                tsc_hz: w.tsc_hz,
                backend: w.backend.to_string(),
                setup_s: 0.0,
                aead_cycles: None,
                spd_cache_hits: 0,
                spd_cache_misses: 0,
                sa_lines: None,
            }
        })
        .collect())
}
