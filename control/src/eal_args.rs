//! EAL arguments that work on a machine without hugepages or NICs.

/// Builds an EAL argument vector: `--no-huge --no-pci` with `memory_mb` of
/// memory, one lcore list, a unique `--file-prefix` (so instances running
/// side by side never share DPDK runtime state) and `--no-shconf` (no
/// shared-memory config files left behind), followed by `extra`.
pub fn eal_args(program: &str, lcores: &str, memory_mb: u32, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        program.to_string(),
        "-l".to_string(),
        lcores.to_string(),
        "--no-huge".to_string(),
        "--no-pci".to_string(),
        "--no-shconf".to_string(),
        "--no-telemetry".to_string(),
        format!("--file-prefix=espresso-{}", std::process::id()),
        "-m".to_string(),
        memory_mb.to_string(),
        "--log-level=lib.eal:warning".to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// Pins the calling thread to `core`, the EAL main lcore, just before
/// `Eal::init`. DPDK 22.11 runs its control threads (the interrupt thread,
/// which serves memif's sockets and link events) on the CPUs the calling
/// thread may use minus the lcores: with `-l 0` on two cores that was the
/// worker's core (seen with `Cpus_allowed_list` of `eal-intr-thread` in the
/// latency lab's gateway and generator, while testpmd's, whose `-l` lists
/// both cores, ran on core 0). With nothing else allowed, they run on the
/// main lcore.
pub fn pin_before_eal(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_arguments_come_last_and_prefix_is_unique_per_process() {
        let a = eal_args("espresso", "0", 256, &["--vdev".into(), "net_null0".into()]);
        assert_eq!(&a[a.len() - 2..], ["--vdev", "net_null0"]);
        assert!(a.contains(&format!("--file-prefix=espresso-{}", std::process::id())));
        assert!(a.contains(&"--no-huge".to_string()));
        assert_eq!(a[a.iter().position(|x| x == "-m").unwrap() + 1], "256");
    }
}
