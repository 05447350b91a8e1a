//! The baseline: `dpdk-testpmd --forward-mode=io` on the same pcap, the
//! same vdevs, the same pool and burst sizes and the same worker core —
//! the cost of the I/O alone, measured in the same run as the gateway.
//!
//! testpmd runs interactively with its standard input a pipe: `start`,
//! then `show port stats 1` at the start and end of the window (the
//! output port's `TX-packets`), while this process reads the forwarding
//! lcore's on-CPU time from procfs at the same instants.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::case::{RunSample, EAL_MEMORY_MB, MBUF_CACHE, WORKING_MBUFS};
use super::cpu::{threads, ThreadClock};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Kills and reaps testpmd if the run ends early.
pub(super) struct Reaper(pub(super) Child);

impl Reaper {
    /// Waits up to `within` for the child to exit on its own (after
    /// `quit`), then kills it if it has not.
    pub(super) fn finish(mut self, within: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.0.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// How to run the baseline.
#[derive(Debug, Clone)]
pub struct Baseline<'a> {
    /// The testpmd binary.
    pub testpmd: &'a Path,
    /// The pcap.
    pub pcap: &'a Path,
    /// Frames in it.
    pub pcap_frames: usize,
    /// Seconds of traffic before measuring.
    pub warmup_s: f64,
    /// Seconds measured per window.
    pub duration_s: f64,
    /// Measurement windows, back to back after one warm-up.
    pub windows: usize,
    /// The forwarding core (testpmd's main lcore is core 0).
    pub worker_core: usize,
    /// TSC frequency (from a gateway run; the same machine).
    pub tsc_hz: u64,
    /// Distinguishes concurrent DPDK processes' runtime files.
    pub run_id: u64,
}

pub(super) fn wait_for(
    out: &Mutex<Vec<u8>>,
    needle: &str,
    count: usize,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        {
            let o = out.lock().unwrap_or_else(|e| e.into_inner());
            if String::from_utf8_lossy(&o).matches(needle).count() >= count {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The `TX-packets` counters of each `show port stats` block, in order.
pub fn parse_tx_packets(output: &str) -> Vec<u64> {
    output
        .split("NIC statistics for port")
        .skip(1)
        .filter_map(|block| {
            let i = block.find("TX-packets:")?;
            block[i + "TX-packets:".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// One baseline run: a sample per window (at least one).
pub fn run(b: &Baseline) -> Result<Vec<RunSample>, Error> {
    let pcap = b.pcap.to_str().ok_or("pcap path is not UTF-8")?;
    let prefix = format!("espresso-testpmd-{}-{}", std::process::id(), b.run_id);
    // With --no-shconf testpmd still creates its (empty) runtime directory
    // and never removes it; do that when this run ends, however it ends.
    let _runtime_dir = EmptyDirGuard(std::path::PathBuf::from(format!("/var/run/dpdk/{prefix}")));
    let child = Command::new(b.testpmd)
        .args(["-l", &format!("0,{}", b.worker_core)])
        .args(["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry"])
        .arg(format!("--file-prefix={prefix}"))
        .args(["-m", &EAL_MEMORY_MB.to_string()])
        .arg("--log-level=lib.eal:warning")
        .args([
            "--vdev",
            &format!("net_pcap0,rx_pcap={pcap},infinite_rx=1"),
            "--vdev",
            "net_null0,no-rx=1",
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
        .arg(format!(
            "--total-num-mbufs={}",
            WORKING_MBUFS + b.pcap_frames as u32
        ))
        .arg(format!("--mbcache={MBUF_CACHE}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", b.testpmd.display()))?;
    let mut child = Reaper(child);
    let pid = child.0.id();
    let mut stdin = child.0.stdin.take().ok_or("testpmd stdin")?;
    let stdout = child.0.stdout.take().ok_or("testpmd stdout")?;
    let (out, reader) = spawn_reader(stdout);
    // The prompt is written unbuffered once the ports are up.
    if !wait_for(&out, "testpmd> ", 1, Duration::from_secs(60)) {
        return Err("testpmd did not come up".into());
    }
    stdin.write_all(b"start\n")?;
    std::thread::sleep(Duration::from_secs_f64(b.warmup_s));
    // The forwarding lcore is the EAL worker thread of the worker core
    // (`rte-worker-N` in DPDK 22.11, `lcore-worker-N` in older releases,
    // `dpdk-worker-N` in newer ones).
    let wanted: Vec<String> = ["rte-worker", "lcore-worker", "dpdk-worker"]
        .iter()
        .map(|p| format!("{p}-{}", b.worker_core))
        .collect();
    let clock: ThreadClock = threads(pid)?
        .into_iter()
        .find(|t| t.name().is_ok_and(|n| wanted.contains(&n)))
        .ok_or_else(|| format!("testpmd has no thread {}", wanted.join(" or ")))?;
    let windows = b.windows.max(1);
    // (on-CPU, wall) where each window ends and the next begins, each
    // with a `show port stats` at the same instant.
    let mut marks = Vec::with_capacity(windows + 1);
    for w in 0..=windows {
        if w > 0 {
            std::thread::sleep(Duration::from_secs_f64(b.duration_s));
        }
        marks.push((clock.on_cpu()?, Instant::now()));
        stdin.write_all(b"show port stats 1\n")?;
    }
    stdin.write_all(b"stop\nquit\n")?;
    drop(stdin);
    child.finish(Duration::from_secs(30))?;
    let _ = reader.join();
    let text = String::from_utf8_lossy(&out.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    let tx = parse_tx_packets(&text);
    if tx.len() != marks.len() {
        return Err(format!(
            "testpmd printed {} stats blocks, not {}",
            tx.len(),
            marks.len()
        )
        .into());
    }
    Ok(tx
        .windows(2)
        .zip(marks.windows(2))
        .map(|(tx, m)| RunSample {
            packets: tx[1].saturating_sub(tx[0]),
            received: tx[1].saturating_sub(tx[0]),
            dropped: 0,
            wall_s: (m[1].1 - m[0].1).as_secs_f64(),
            cpu_s: (m[1].0 - m[0].0).as_secs_f64(),
            tsc_hz: b.tsc_hz,
            backend: "testpmd io".into(),
            setup_s: 0.0,
            aead_cycles: None,
            spd_cache_hits: 0,
            spd_cache_misses: 0,
            sa_lines: None,
        })
        .collect())
}

/// Removes a directory on drop if it is empty (never anything else).
pub(super) struct EmptyDirGuard(pub(super) std::path::PathBuf);

impl Drop for EmptyDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Collects all that `stdout` produces on a thread of its own (testpmd
/// prints its prompt and statistics there): the bytes so far, and the
/// thread, which ends at end of file.
pub(super) fn spawn_reader(
    mut stdout: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    (out, reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_packets_from_show_port_stats() {
        let out = "testpmd> show port stats 1\n  ######## NIC statistics for port 1  ####\n  RX-packets: 0          RX-missed: 0          RX-bytes:  0\n  TX-packets: 38285984   TX-errors: 0          TX-bytes:  0\ntestpmd> show port stats 1\n  ######## NIC statistics for port 1  ####\n  TX-packets: 58609920   TX-errors: 0\n";
        assert_eq!(parse_tx_packets(out), vec![38285984, 58609920]);
    }
}
