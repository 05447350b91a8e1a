//! EAL arguments: without hugepages or NICs (the default of the tools and
//! tests), or for a gateway's configuration (PCI devices, hugepages,
//! telemetry).

use crate::config::GatewayConfig;
use crate::host::Device;

/// What an EAL runs with besides its lcores and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EalOptions {
    /// Hugepages (`--in-memory`: mapped anonymously, no hugetlbfs file
    /// outlives the process) or none (`--no-huge --no-shconf`).
    pub hugepages: bool,
    /// PCI devices to probe, as `-a` allow-list entries (`addr[,devargs]`);
    /// none: `--no-pci`, EAL does not scan the bus.
    pub pci: Vec<String>,
    /// DPDK's telemetry socket in EAL's runtime directory; off:
    /// `--no-telemetry`.
    pub telemetry: bool,
}

/// Builds an EAL argument vector with `memory_mb` of memory, one lcore
/// list, a unique `--file-prefix` (so instances running side by side never
/// share DPDK runtime state) and no shared-memory config files (`--no-shconf`,
/// implied by `--in-memory`), followed by `extra`.
pub fn build(
    program: &str,
    lcores: &str,
    memory_mb: u32,
    options: &EalOptions,
    extra: &[String],
) -> Vec<String> {
    let mut args = vec![program.to_string(), "-l".to_string(), lcores.to_string()];
    if options.hugepages {
        args.push("--in-memory".into());
    } else {
        args.extend(["--no-huge".into(), "--no-shconf".into()]);
    }
    if options.pci.is_empty() {
        args.push("--no-pci".into());
    } else {
        for dev in &options.pci {
            args.extend(["-a".into(), dev.clone()]);
        }
    }
    if !options.telemetry {
        args.push("--no-telemetry".into());
    }
    args.extend([
        format!("--file-prefix=espresso-{}", std::process::id()),
        "-m".to_string(),
        memory_mb.to_string(),
        "--log-level=lib.eal:warning".to_string(),
    ]);
    args.extend(extra.iter().cloned());
    args
}

/// Builds an EAL argument vector for a machine without hugepages or NICs:
/// `--no-huge --no-pci --no-telemetry` (see [`build`]).
pub fn eal_args(program: &str, lcores: &str, memory_mb: u32, extra: &[String]) -> Vec<String> {
    build(program, lcores, memory_mb, &EalOptions::default(), extra)
}

/// The EAL options of a gateway's configuration, once the hugepage
/// question is settled (`crate::host::decide_hugepages`): its PCI
/// interfaces go on the allow-list; virtual devices are probed when their
/// port opens (`dpdk::Port::open`), so they need no argument here.
pub fn gateway_options(config: &GatewayConfig, hugepages: bool) -> EalOptions {
    EalOptions {
        hugepages,
        pci: config
            .interfaces
            .iter()
            .filter_map(|i| match i.device_kind() {
                Ok(d @ Device::Pci { .. }) => Some(d.eal_string()),
                _ => None,
            })
            .collect(),
        telemetry: config.dataplane.telemetry,
    }
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

    fn value_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn extra_arguments_come_last_and_prefix_is_unique_per_process() {
        let a = eal_args("espresso", "0", 256, &["--vdev".into(), "net_null0".into()]);
        assert_eq!(&a[a.len() - 2..], ["--vdev", "net_null0"]);
        assert!(a.contains(&format!("--file-prefix=espresso-{}", std::process::id())));
        for flag in ["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry"] {
            assert!(a.iter().any(|x| x == flag), "{flag} in {a:?}");
        }
        assert_eq!(value_after(&a, "-m"), ["256"]);
    }

    fn config(dataplane: &str, devices: &[&str]) -> GatewayConfig {
        let mut text = format!(
            "[dataplane]\n{dataplane}\n[control]\nsocket = \"/tmp/espresso-eal-test/e.sock\"\n"
        );
        for (i, d) in devices.iter().enumerate() {
            text.push_str(&format!(
                "[[interface]]\nname = \"if{i}\"\ndevice = \"{d}\"\nrole = \"lan\"\n"
            ));
        }
        GatewayConfig::from_str(&text, "test.toml").expect("valid config")
    }

    #[test]
    fn pci_interfaces_go_on_the_allow_list_and_enable_the_bus() {
        let c = config(
            "",
            &[
                "0000:03:00.0",
                "04:00.1,rxq_cqe_comp_en=0",
                "net_tap0,iface=t0",
            ],
        );
        let a = build("espresso", "0-1", 512, &gateway_options(&c, false), &[]);
        assert_eq!(
            value_after(&a, "-a"),
            ["0000:03:00.0", "0000:04:00.1,rxq_cqe_comp_en=0"]
        );
        assert!(!a.iter().any(|x| x == "--no-pci"), "{a:?}");
        assert!(!a.iter().any(|x| x.starts_with("net_tap")), "{a:?}");
    }

    #[test]
    fn vdev_only_config_keeps_the_pci_bus_off() {
        let c = config("", &["net_af_packet0,iface=veth0", "net_tap0,iface=tap0"]);
        let a = build("espresso", "0-1", 512, &gateway_options(&c, false), &[]);
        assert!(a.iter().any(|x| x == "--no-pci"), "{a:?}");
        assert!(value_after(&a, "-a").is_empty(), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("af_packet")), "{a:?}");
    }

    #[test]
    fn hugepages_run_in_memory_and_their_absence_without_huge() {
        let c = config("memory_mb = 64", &["net_null0"]);
        let with = build("espresso", "0-1", 64, &gateway_options(&c, true), &[]);
        assert!(with.iter().any(|x| x == "--in-memory"), "{with:?}");
        assert!(
            !with.iter().any(|x| x == "--no-huge" || x == "--no-shconf"),
            "{with:?}"
        );
        assert_eq!(value_after(&with, "-m"), ["64"]);
        let without = build("espresso", "0-1", 64, &gateway_options(&c, false), &[]);
        assert!(without.iter().any(|x| x == "--no-huge"), "{without:?}");
        assert!(without.iter().any(|x| x == "--no-shconf"), "{without:?}");
        assert!(!without.iter().any(|x| x == "--in-memory"), "{without:?}");
    }

    #[test]
    fn hugepages_auto_follows_the_host() {
        use crate::host::{decide_hugepages, HugepagePool, Hugepages};
        let c = config("memory_mb = 64", &["net_null0"]);
        let host = |free| Hugepages {
            pools: vec![HugepagePool {
                size_kb: 2048,
                total: free,
                free,
            }],
            mounts: vec![],
        };
        for (free, huge) in [(32, true), (8, false), (0, false)] {
            let d = decide_hugepages(c.dataplane.hugepages, c.dataplane.memory_mb, &host(free))
                .unwrap();
            let a = build(
                "espresso",
                "0",
                64,
                &gateway_options(&c, d.use_hugepages),
                &[],
            );
            assert_eq!(a.iter().any(|x| x == "--in-memory"), huge, "{free}: {a:?}");
            assert_eq!(a.iter().any(|x| x == "--no-huge"), !huge, "{free}: {a:?}");
        }
    }

    #[test]
    fn telemetry_is_on_unless_turned_off() {
        let on = config("", &["net_null0"]);
        let a = build("espresso", "0", 64, &gateway_options(&on, false), &[]);
        assert!(!a.iter().any(|x| x == "--no-telemetry"), "{a:?}");
        let off = config("telemetry = false", &["net_null0"]);
        let a = build("espresso", "0", 64, &gateway_options(&off, false), &[]);
        assert!(a.iter().any(|x| x == "--no-telemetry"), "{a:?}");
    }
}
