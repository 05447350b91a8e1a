//! A careful measurement loop, independent of criterion.
//!
//! The routine under test is a closure that handles one burst and marks
//! its timed part with [`Timer::start`]/[`Timer::stop`]; whatever it does
//! outside (loading packets) is not counted. The loop warms up, then takes
//! several samples of a fixed duration each and reports the median time
//! per operation with the spread of the samples, because the machine this
//! runs on is shared and noisy. Within a sample, every timed region (one
//! burst) is recorded and the sample's figure is the median region, so a
//! burst that was preempted by another process does not count; the median
//! of the samples' figures is reported. The cost of an empty `start`/`stop`
//! pair is measured once and subtracted.

use std::time::{Duration, Instant};

use crate::clock::Clock;

/// Accumulates timed ticks.
#[derive(Debug)]
pub struct Timer {
    clock: Clock,
    t0: u64,
    acc: u64,
    /// Number of start/stop pairs, for overhead subtraction.
    laps: u64,
    /// Each region's ticks, when recording.
    regions: Option<Vec<u64>>,
}

impl Timer {
    /// A timer at zero.
    pub fn new() -> Timer {
        Timer {
            clock: Clock::get(),
            t0: 0,
            acc: 0,
            laps: 0,
            regions: None,
        }
    }

    /// A timer that also records every region.
    pub fn recording() -> Timer {
        Timer {
            regions: Some(Vec::with_capacity(1 << 16)),
            ..Timer::new()
        }
    }

    /// Median ticks of the recorded regions, net of the start/stop cost.
    pub fn median_region_ticks(&mut self) -> f64 {
        let Some(v) = self.regions.as_mut().filter(|v| !v.is_empty()) else {
            return 0.0;
        };
        v.sort_unstable();
        (v[v.len() / 2] as f64 - overhead_ticks()).max(0.0)
    }

    /// Starts a timed region.
    #[inline(always)]
    pub fn start(&mut self) {
        self.t0 = self.clock.now();
    }

    /// Ends a timed region.
    #[inline(always)]
    pub fn stop(&mut self) {
        let d = self.clock.now().wrapping_sub(self.t0);
        self.acc += d;
        self.laps += 1;
        if let Some(v) = self.regions.as_mut() {
            v.push(d);
        }
    }

    /// Ticks accumulated, less the measured cost of the start/stop pairs.
    pub fn net_ticks(&self) -> f64 {
        (self.acc as f64 - self.laps as f64 * overhead_ticks()).max(0.0)
    }

    /// Nanoseconds accumulated (net).
    pub fn net_ns(&self) -> f64 {
        self.clock.ticks_to_ns(self.net_ticks())
    }
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}

/// Median ticks of an empty timed region.
pub fn overhead_ticks() -> f64 {
    use std::sync::OnceLock;
    static OVERHEAD: OnceLock<f64> = OnceLock::new();
    *OVERHEAD.get_or_init(|| {
        let clock = Clock::get();
        let mut v: Vec<u64> = (0..10_001)
            .map(|_| {
                let t0 = clock.now();
                let t1 = clock.now();
                t1.wrapping_sub(t0)
            })
            .collect();
        v.sort_unstable();
        v[v.len() / 2] as f64
    })
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Warm-up before the first sample.
    pub warmup: Duration,
    /// Number of samples; the median is reported.
    pub samples: usize,
    /// Wall time of one sample.
    pub sample_time: Duration,
}

impl Config {
    /// The default: 50 ms warm-up, 15 samples of 20 ms.
    pub const NORMAL: Config = Config {
        warmup: Duration::from_millis(50),
        samples: 15,
        sample_time: Duration::from_millis(20),
    };
    /// For a quick look: 10 ms warm-up, 7 samples of 5 ms.
    pub const QUICK: Config = Config {
        warmup: Duration::from_millis(10),
        samples: 7,
        sample_time: Duration::from_millis(5),
    };
}

/// The result of one measurement, per operation.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Median over the samples, nanoseconds per operation.
    pub ns: f64,
    /// TSC cycles per operation, when the clock is the TSC.
    pub cycles: Option<f64>,
    /// Interquartile range of the samples relative to the median (0.02 =
    /// the middle half of the samples lie within 2 %).
    pub spread: f64,
}

impl Stats {
    /// `self` relative to `base`.
    pub fn ratio_to(&self, base: &Stats) -> f64 {
        self.ns / base.ns
    }
}

/// Measures `routine`, which processes `ops_per_call` operations per call
/// and times them with the timer it is given.
pub fn measure(cfg: Config, ops_per_call: usize, mut routine: impl FnMut(&mut Timer)) -> Stats {
    measure_interleaved(cfg, ops_per_call, &mut [Box::new(&mut routine)])[0]
}

/// A routine under measurement: handles one call's operations and marks
/// the timed part on the timer.
pub type Routine<'a> = Box<dyn FnMut(&mut Timer) + 'a>;

/// Measures several routines with their samples interleaved (A, B, C, A,
/// B, C, ...), so that a burst of noise from other processes lands on all
/// of them alike and their ratios stay meaningful. Each routine processes
/// `ops_per_call` operations per call.
pub fn measure_interleaved(
    cfg: Config,
    ops_per_call: usize,
    routines: &mut [Routine<'_>],
) -> Vec<Stats> {
    let clock = Clock::get();
    let run_for = |d: Duration, routine: &mut dyn FnMut(&mut Timer)| -> f64 {
        let mut timer = Timer::recording();
        let mut calls = 0u64;
        let t0 = Instant::now();
        while calls < 4 || t0.elapsed() < d {
            // Check the wall clock every few calls only.
            for _ in 0..4 {
                routine(&mut timer);
            }
            calls += 4;
        }
        timer.median_region_ticks() / ops_per_call as f64
    };
    for r in routines.iter_mut() {
        run_for(cfg.warmup, &mut **r);
    }
    let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.samples); routines.len()];
    for _ in 0..cfg.samples.max(1) {
        for (i, r) in routines.iter_mut().enumerate() {
            per_op[i].push(run_for(cfg.sample_time, &mut **r));
        }
    }
    per_op
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            let median = v[v.len() / 2];
            let q1 = v[v.len() / 4];
            let q3 = v[(v.len() * 3) / 4];
            Stats {
                ns: clock.ticks_to_ns(median),
                cycles: clock.is_tsc().then_some(median),
                spread: if median > 0.0 {
                    (q3 - q1) / median
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Runs `routine` for criterion's `iter_custom`: enough calls for `iters`
/// operations, returning the timed duration scaled to exactly `iters`.
pub fn criterion_iters(
    iters: u64,
    ops_per_call: usize,
    mut routine: impl FnMut(&mut Timer),
) -> Duration {
    let calls = iters.div_ceil(ops_per_call as u64).max(1);
    let mut timer = Timer::new();
    for _ in 0..calls {
        routine(&mut timer);
    }
    let ns = timer.net_ns() * iters as f64 / (calls as f64 * ops_per_call as f64);
    Duration::from_nanos(ns.round() as u64)
}
