//! The benchmark clock: the CPU's time-stamp counter where it is invariant,
//! else [`std::time::Instant`].
//!
//! An invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`)
//! ticks at a fixed reference rate whatever the core's frequency, and
//! reading it costs a few dozen cycles, far less than `Instant::now()` in a
//! VM; DPDK's `dpdk-test-crypto-perf` reports the same "cycles" (TSC ticks
//! from `rte_rdtsc`). The counter and its rate are `cpu::clock`'s, the
//! workspace's one TSC clock. "Cycles" in every report are TSC reference
//! cycles, not core cycles.

use std::sync::OnceLock;
use std::time::Instant;

use cpu::clock::{rdtsc, tsc_hz, tsc_is_invariant};

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
    /// The process-wide clock, chosen on first use: the TSC at
    /// `cpu::clock::tsc_hz` (calibrated once, ~100 ms, unless DPDK's EAL
    /// measured it) if it is invariant, else `Instant`.
    pub fn get() -> Clock {
        *CLOCK.get_or_init(Clock::choose)
    }

    fn choose() -> Clock {
        if tsc_is_invariant() {
            Clock {
                tsc: true,
                ticks_per_ns: tsc_hz() as f64 / 1e9,
            }
        } else {
            Clock {
                tsc: false,
                ticks_per_ns: 1.0,
            }
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
            rdtsc()
        } else {
            BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }

    /// Converts ticks to nanoseconds.
    pub fn ticks_to_ns(&self, ticks: f64) -> f64 {
        ticks / self.ticks_per_ns
    }
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
