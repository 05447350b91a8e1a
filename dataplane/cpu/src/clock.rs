//! The time-stamp counter.

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

/// The calling thread's on-CPU time (`CLOCK_THREAD_CPUTIME_ID`; zero if
/// the clock cannot be read).
pub fn thread_cpu_time() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}
