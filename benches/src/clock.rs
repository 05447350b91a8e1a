//! The benchmark clock: the CPU's time-stamp counter where it is invariant,
//! else [`std::time::Instant`].
//!
//! An invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`)
//! ticks at a fixed reference rate whatever the core's frequency, and
//! reading it costs a few dozen cycles, far less than `Instant::now()` in a
//! VM; DPDK's `dpdk-test-crypto-perf` reports the same "cycles" (TSC ticks
//! from `rte_rdtsc`). Its rate is calibrated against `Instant` once.
//! "Cycles" in every report are TSC reference cycles, not core cycles.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which clock the measurements use.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    tsc: bool,
    /// Ticks per nanosecond (1.0 for `Instant`).
    ticks_per_ns: f64,
}

static CLOCK: OnceLock<Clock> = OnceLock::new();
static BASE: OnceLock<Instant> = OnceLock::new();

impl Clock {
    /// The process-wide clock (calibrated on first use, ~100 ms).
    pub fn get() -> Clock {
        *CLOCK.get_or_init(Clock::calibrate)
    }

    fn calibrate() -> Clock {
        if !tsc_is_invariant() {
            return Clock {
                tsc: false,
                ticks_per_ns: 1.0,
            };
        }
        // Take the best of three 30 ms windows (least disturbed).
        let mut rates = Vec::new();
        for _ in 0..3 {
            let (t0, c0) = (Instant::now(), tsc::read());
            while t0.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            let (c1, t1) = (tsc::read(), Instant::now());
            let ns = (t1 - t0).as_nanos() as f64;
            rates.push(c1.wrapping_sub(c0) as f64 / ns);
        }
        rates.sort_by(f64::total_cmp);
        Clock {
            tsc: true,
            ticks_per_ns: rates[1],
        }
    }

    /// Whether the clock is the TSC (so cycles can be reported).
    pub fn is_tsc(&self) -> bool {
        self.tsc
    }

    /// TSC frequency in GHz, if the clock is the TSC.
    pub fn tsc_ghz(&self) -> Option<f64> {
        self.tsc.then_some(self.ticks_per_ns)
    }

    /// Reads the clock.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        if self.tsc {
            tsc::read()
        } else {
            BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }

    /// Converts ticks to nanoseconds.
    pub fn ticks_to_ns(&self, ticks: f64) -> f64 {
        ticks / self.ticks_per_ns
    }
}

fn tsc_is_invariant() -> bool {
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

/// The CPU model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

#[allow(unsafe_code)]
mod tsc {
    /// Reads the time-stamp counter.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn read() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU, reads a counter and
        // touches no memory; the intrinsic is `unsafe` only by convention.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Never called: the TSC is only used on x86_64.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub fn read() -> u64 {
        0
    }
}
