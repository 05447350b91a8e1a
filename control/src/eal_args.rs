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
