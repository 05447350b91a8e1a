//! The time-stamp counter: [`rdtsc`] and its frequency, [`tsc_hz`]. The
//! one TSC clock of the workspace: the DPDK layer, the worker, the
//! benchmarks and the lab all read these.
//!
//! An invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`)
//! ticks at a fixed reference rate whatever the core's frequency; "cycles"
//! in every report are those reference cycles, as DPDK's
//! `dpdk-test-crypto-perf` reports them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The time-stamp counter, for cycle measurements: the `rdtsc`
/// instruction inline on x86-64 (what DPDK's `rte_rdtsc` is; the worker
/// reads it four times per poll, and the call into the C shim cost about
/// 1 % of a 64-byte packet), monotonic nanoseconds elsewhere.
#[inline]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86-64 CPU and touches no
        // memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // No TSC to read here: monotonic nanoseconds stand in for cycles.
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
}

/// Ticks per second set by [`set_tsc_hz`] (zero: not set).
static KNOWN_HZ: AtomicU64 = AtomicU64::new(0);
/// Ticks per second measured against [`Instant`], once.
static CALIBRATED_HZ: OnceLock<u64> = OnceLock::new();

/// The frequency of [`rdtsc`] in ticks per second: the value given to
/// [`set_tsc_hz`] (DPDK's EAL measures it at start-up and the DPDK layer
/// passes it on), else a calibration against [`Instant`] made on the
/// first call (~100 ms) and cached. Without a TSC (not x86-64),
/// 1,000,000,000: [`rdtsc`] counts nanoseconds there.
pub fn tsc_hz() -> u64 {
    match KNOWN_HZ.load(Ordering::Relaxed) {
        0 => *CALIBRATED_HZ.get_or_init(calibrate),
        hz => hz,
    }
}

/// Records the TSC frequency measured elsewhere (by DPDK's EAL, which
/// reads it from the CPU or calibrates it at start-up), so [`tsc_hz`]
/// returns it rather than its own calibration. Zero is ignored.
pub fn set_tsc_hz(hz: u64) {
    if hz != 0 {
        KNOWN_HZ.store(hz, Ordering::Relaxed);
    }
}

/// The best of three 30 ms windows of [`rdtsc`] against [`Instant`] (the
/// middle rate: one disturbed window does not count).
fn calibrate() -> u64 {
    if !cfg!(target_arch = "x86_64") {
        return 1_000_000_000;
    }
    let mut rates = [0f64; 3];
    for r in &mut rates {
        let (t0, c0) = (Instant::now(), rdtsc());
        while t0.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let (c1, t1) = (rdtsc(), Instant::now());
        *r = c1.wrapping_sub(c0) as f64 / (t1 - t0).as_secs_f64();
    }
    rates.sort_by(f64::total_cmp);
    (rates[1] as u64).max(1)
}

/// Whether the TSC ticks at a fixed rate through frequency changes and
/// sleep states (`constant_tsc` and `nonstop_tsc`), so ticks measure
/// time. False off x86-64.
pub fn tsc_is_invariant() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    info.lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| {
            let flags: Vec<&str> = l.split_whitespace().collect();
            flags.contains(&"constant_tsc") && flags.contains(&"nonstop_tsc")
        })
}

/// The calling thread's on-CPU time (`CLOCK_THREAD_CPUTIME_ID`; zero if
/// the clock cannot be read).
pub fn thread_cpu_time() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibrated_rate_measures_time() {
        let hz = tsc_hz();
        assert!(hz > 0);
        if !tsc_is_invariant() {
            return;
        }
        // 50 ms of ticks at the calibrated rate is 50 ms of Instant,
        // within what a shared machine's scheduling disturbs.
        let (t0, c0) = (Instant::now(), rdtsc());
        std::thread::sleep(Duration::from_millis(50));
        let (c1, t1) = (rdtsc(), Instant::now());
        let by_tsc = (c1 - c0) as f64 / hz as f64;
        let by_instant = (t1 - t0).as_secs_f64();
        assert!(
            (by_tsc / by_instant - 1.0).abs() < 0.05,
            "{by_tsc} s by the TSC, {by_instant} s by Instant"
        );
    }

    #[test]
    fn a_known_rate_wins_over_the_calibration() {
        let calibrated = tsc_hz();
        set_tsc_hz(0);
        assert_eq!(tsc_hz(), calibrated, "zero is ignored");
        set_tsc_hz(calibrated + 1);
        assert_eq!(tsc_hz(), calibrated + 1);
    }
}
