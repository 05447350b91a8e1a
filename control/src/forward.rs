//! `espresso forward`: a two-port forwarder (port 0 <-> port 1) on one
//! lcore. It is the smallest end-to-end use of the DPDK layer: it proves
//! ports, queues, bursts and mbuf ownership on real devices, and it is the
//! baseline a user can compare the IPsec data path against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::{
    Eal, Mempool, MempoolConfig, Port, PortConfig, PortStats, RxQueue, TxQueue, BURST_SIZE,
};

/// What the forwarder did, for printing.
#[derive(Debug, Clone)]
pub struct ForwardReport {
    /// Per port: name and final counters.
    pub ports: Vec<(String, PortStats)>,
    /// Packets forwarded in each direction (0->1, 1->0).
    pub forwarded: [u64; 2],
    /// Packets freed because the TX queue stayed full.
    pub tx_dropped: [u64; 2],
    /// Free mbufs before opening the ports and after closing them.
    pub pool_free_before: u32,
    /// Free mbufs after the ports closed (equal to `pool_free_before`
    /// unless an mbuf leaked).
    pub pool_free_after: u32,
    /// How long it ran.
    pub elapsed: Duration,
}

impl std::fmt::Display for ForwardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "forwarded in {:.1} s:", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  port 0 -> port 1: {:>10} packets ({} dropped on TX)",
            self.forwarded[0], self.tx_dropped[0]
        )?;
        writeln!(
            f,
            "  port 1 -> port 0: {:>10} packets ({} dropped on TX)",
            self.forwarded[1], self.tx_dropped[1]
        )?;
        writeln!(
            f,
            "{:<18} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8} {:>8} {:>10}",
            "port",
            "rx_pkts",
            "rx_bytes",
            "tx_pkts",
            "tx_bytes",
            "missed",
            "rx_err",
            "tx_err",
            "rx_nombuf"
        )?;
        for (name, s) in &self.ports {
            writeln!(
                f,
                "{:<18} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8} {:>8} {:>10}",
                name,
                s.ipackets,
                s.ibytes,
                s.opackets,
                s.obytes,
                s.imissed,
                s.ierrors,
                s.oerrors,
                s.rx_nombuf
            )?;
        }
        write!(
            f,
            "mempool: {} free before, {} free after{}",
            self.pool_free_before,
            self.pool_free_after,
            if self.pool_free_before == self.pool_free_after {
                " (no mbuf leaked)"
            } else {
                " (MBUFS LEAKED)"
            }
        )
    }
}

/// Runs the forwarder until `stop` is set or `duration` passes. Prints the
/// counters every `report_every` if given.
pub fn run(
    eal: &Eal,
    devices: [&str; 2],
    duration: Option<Duration>,
    report_every: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> Result<ForwardReport, Box<dyn std::error::Error>> {
    let pool = Mempool::new(
        eal,
        &MempoolConfig {
            name: "fwd_pool".into(),
            size: 4095,
            cache_size: 256,
            data_room: 2048 + 128,
        },
    )?;
    let pool_free_before = pool.available();
    let start = Instant::now();
    let (ports, forwarded, tx_dropped) = {
        let cfg = PortConfig::new(pool.clone());
        let p0 = Port::open(eal, devices[0], &cfg)?;
        let p1 = Port::open(eal, devices[1], &cfg)?;
        let mut rx = [
            p0.rx_queue(0).ok_or("rx queue 0")?,
            p1.rx_queue(0).ok_or("rx queue 1")?,
        ];
        let mut tx = [
            p1.tx_queue(0).ok_or("tx queue 1")?,
            p0.tx_queue(0).ok_or("tx queue 0")?,
        ];
        let mut forwarded = [0u64; 2];
        let mut tx_dropped = [0u64; 2];
        let mut burst = Vec::with_capacity(BURST_SIZE);
        let mut last_report = Instant::now();
        while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
            let mut idle = true;
            for dir in 0..2 {
                if forward_burst(
                    &mut rx[dir],
                    &mut tx[dir],
                    &mut burst,
                    &mut forwarded[dir],
                    &mut tx_dropped[dir],
                ) {
                    idle = false;
                }
            }
            if idle {
                // Nothing arrived: yield briefly (a demo shares its cores).
                std::thread::sleep(Duration::from_micros(20));
            }
            if let Some(every) = report_every {
                if last_report.elapsed() >= every {
                    last_report = Instant::now();
                    println!(
                        "  [{:>5.1}s] forwarded 0->1 {} 1->0 {}",
                        start.elapsed().as_secs_f64(),
                        forwarded[0],
                        forwarded[1]
                    );
                }
            }
        }
        let ports = vec![
            (p0.name().to_string(), p0.stats()?),
            (p1.name().to_string(), p1.stats()?),
        ];
        (ports, forwarded, tx_dropped)
    };
    Ok(ForwardReport {
        ports,
        forwarded,
        tx_dropped,
        pool_free_before,
        pool_free_after: pool.available(),
        elapsed: start.elapsed(),
    })
}

fn forward_burst(
    rx: &mut RxQueue,
    tx: &mut TxQueue,
    burst: &mut Vec<dpdk::Mbuf>,
    forwarded: &mut u64,
    dropped: &mut u64,
) -> bool {
    if rx.rx_burst(burst) == 0 {
        return false;
    }
    let (sent, lost) = tx.tx_burst_all(burst, 8);
    *forwarded += sent as u64;
    *dropped += lost as u64;
    true
}
