//! What the host offers the data plane: hugepages and PCI devices.
//!
//! The readers of `/proc` and `/sys` are thin; what they read is parsed
//! and judged by pure functions ([`parse_meminfo`], [`parse_hugetlbfs_mounts`],
//! [`decide_hugepages`], [`PciAddr`], [`DriverFit::of`]) that the tests
//! drive with sample text. `espresso check` ([`check`]) and `espresso run`
//! use the same functions, so what `check` says is what `run` will do.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::config::{GatewayConfig, HugepageMode};

// ------------------------------------------------------------------ hugepages

/// One hugepage size and how many pages of it the kernel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugepagePool {
    /// Page size in KiB (2048, 1048576).
    pub size_kb: u64,
    /// Pages reserved (`nr_hugepages`, `HugePages_Total`).
    pub total: u64,
    /// Pages not in use (`free_hugepages`, `HugePages_Free`).
    pub free: u64,
}

impl HugepagePool {
    /// Free memory in MiB.
    pub fn free_mb(&self) -> u64 {
        self.free * self.size_kb / 1024
    }
}

/// A mounted hugetlbfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// Its `pagesize=` option in KiB, if given (else the default size).
    pub page_kb: Option<u64>,
}

/// The host's hugepages: the pools by size and the hugetlbfs mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hugepages {
    /// One entry per page size that has a pool, smallest first.
    pub pools: Vec<HugepagePool>,
    /// Mounted hugetlbfs file systems.
    pub mounts: Vec<HugetlbfsMount>,
}

impl Hugepages {
    /// Reads `/sys/kernel/mm/hugepages` (every page size), falling back to
    /// `/proc/meminfo` (the default size only), and `/proc/mounts`.
    pub fn read() -> Hugepages {
        let mut pools = read_sysfs_pools(Path::new("/sys/kernel/mm/hugepages"));
        if pools.is_empty() {
            if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
                pools.extend(parse_meminfo(&text));
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts")
            .map(|t| parse_hugetlbfs_mounts(&t))
            .unwrap_or_default();
        Hugepages { pools, mounts }
    }

    /// Free hugepage memory of every size, in MiB.
    pub fn free_mb(&self) -> u64 {
        self.pools.iter().map(HugepagePool::free_mb).sum()
    }
}

/// `/sys/kernel/mm/hugepages/hugepages-<size>kB/{nr,free}_hugepages`.
fn read_sysfs_pools(root: &Path) -> Vec<HugepagePool> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let read_u64 =
        |p: PathBuf| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let mut pools: Vec<HugepagePool> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size_kb = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(HugepagePool {
                size_kb,
                total: read_u64(e.path().join("nr_hugepages"))?,
                free: read_u64(e.path().join("free_hugepages"))?,
            })
        })
        .collect();
    pools.sort_by_key(|p| p.size_kb);
    pools
}

/// The default-size pool from `/proc/meminfo` (`HugePages_Total`,
/// `HugePages_Free`, `Hugepagesize`), or `None` if the kernel has no
/// hugepage support (the lines are missing).
pub fn parse_meminfo(text: &str) -> Option<HugepagePool> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.split_whitespace().next()?.parse().ok())?
        })
    };
    Some(HugepagePool {
        size_kb: field("Hugepagesize")?,
        total: field("HugePages_Total")?,
        free: field("HugePages_Free")?,
    })
}

/// The hugetlbfs entries of `/proc/mounts` (`device path type options
/// dump pass`; spaces in paths are written `\040`).
pub fn parse_hugetlbfs_mounts(text: &str) -> Vec<HugetlbfsMount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, path, fstype, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if fstype != "hugetlbfs" {
                return None;
            }
            let page_kb = opts
                .split(',')
                .find_map(|o| o.strip_prefix("pagesize="))
                .and_then(parse_size_kb);
            Some(HugetlbfsMount {
                path: PathBuf::from(path.replace("\\040", " ")),
                page_kb,
            })
        })
        .collect()
}

/// `2M`, `1G`, `2048k` (as in hugetlbfs's `pagesize=` option) in KiB.
fn parse_size_kb(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1),
        (i, 'm' | 'M') => (&s[..i], 1024),
        (i, 'g' | 'G') => (&s[..i], 1024 * 1024),
        _ => return s.parse::<u64>().ok().map(|b| b / 1024),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// What `espresso run` does about hugepages, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugepageDecision {
    /// Run EAL on hugepages (`--in-memory`), or without (`--no-huge`).
    pub use_hugepages: bool,
    /// The reason, for the log.
    pub why: String,
}

/// Decides from `mode`, the EAL memory wanted (`memory_mb`, which EAL
/// reserves at start with `-m`) and what the host has.
///
/// EAL runs with `--in-memory` on hugepages: it maps them anonymously
/// (`MAP_HUGETLB`), so no hugetlbfs mount is needed and no hugepage file
/// outlives the process; a mount is reported but not required. `On`
/// without enough free pages is an error, `Auto` falls back to
/// `--no-huge`.
pub fn decide_hugepages(
    mode: HugepageMode,
    memory_mb: u32,
    host: &Hugepages,
) -> Result<HugepageDecision, String> {
    let free = host.free_mb();
    let sizes = if host.pools.is_empty() {
        "the kernel offers no hugepages".to_string()
    } else {
        host.pools
            .iter()
            .map(|p| format!("{} of {} {} KiB pages free", p.free, p.total, p.size_kb))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mounts = if host.mounts.is_empty() {
        "no hugetlbfs mounted (not needed: EAL maps them anonymously)".to_string()
    } else {
        let m: Vec<String> = host
            .mounts
            .iter()
            .map(|m| m.path.display().to_string())
            .collect();
        format!("hugetlbfs at {}", m.join(", "))
    };
    let enough = free >= u64::from(memory_mb);
    match mode {
        HugepageMode::Off => Ok(HugepageDecision {
            use_hugepages: false,
            why: "hugepages = \"off\"".into(),
        }),
        HugepageMode::On | HugepageMode::Auto if enough => Ok(HugepageDecision {
            use_hugepages: true,
            why: format!("{free} MiB of hugepages free for memory_mb = {memory_mb} ({sizes}; {mounts})"),
        }),
        HugepageMode::On => Err(format!(
            "hugepages = \"on\" but only {free} MiB of hugepages are free and memory_mb = {memory_mb} needs {memory_mb} MiB ({sizes}); reserve more, e.g. echo {} > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            u64::from(memory_mb).div_ceil(2)
        )),
        HugepageMode::Auto => Ok(HugepageDecision {
            use_hugepages: false,
            why: format!(
                "hugepages = \"auto\": {free} MiB of hugepages free, memory_mb = {memory_mb} needs {memory_mb} ({sizes}); running with --no-huge"
            ),
        }),
    }
}

// ---------------------------------------------------------------------- PCI

/// A PCI address, `domain:bus:device.function` (`0000:03:00.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device (0..=31).
    pub device: u8,
    /// Function (0..=7).
    pub function: u8,
}

impl fmt::Display for PciAddr {
    /// The form sysfs and DPDK name devices by: `0000:03:00.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddr {
    type Err = String;

    /// `DDDD:BB:DD.F` (domain of 4 to 8 hex digits) or `BB:DD.F` (domain 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a PCI address (expected domain:bus:device.function like 0000:03:00.0)")
        };
        let hex = |t: &str, len: std::ops::RangeInclusive<usize>| -> Result<u32, String> {
            if !len.contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(t, 16).map_err(|_| bad())
        };
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (hex(d, 4..=8)?, hex(b, 2..=2)?, hex(v, 2..=2)?),
            [b, v] => (0, hex(b, 2..=2)?, hex(v, 2..=2)?),
            _ => return Err(bad()),
        };
        let function = hex(function, 1..=1)?;
        if device > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(PciAddr {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

/// An `[[interface]] device` string: a PCI device (given to EAL with
/// `-a`, probed at EAL start) or a virtual device (probed when its port
/// opens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// `0000:03:00.0` or `0000:03:00.0,devargs`.
    Pci {
        /// The address.
        addr: PciAddr,
        /// Driver arguments after the first comma, if any.
        devargs: Option<String>,
    },
    /// A vdev string such as `net_af_packet0,iface=eth0`.
    Virtual(String),
}

impl Device {
    /// Classifies a device string: the part before the first comma is a
    /// PCI address if it holds a `:` (vdev names never do), and then it
    /// must be a valid one.
    pub fn parse(s: &str) -> Result<Device, String> {
        let s = s.trim();
        let (name, devargs) = match s.split_once(',') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s, None),
        };
        if !name.contains(':') {
            return Ok(Device::Virtual(s.to_string()));
        }
        let addr: PciAddr = name.parse()?;
        if devargs.is_some_and(str::is_empty) {
            return Err(format!(
                "`{s}` has a comma but no device arguments after it"
            ));
        }
        Ok(Device::Pci {
            addr,
            devargs: devargs.map(str::to_string),
        })
    }

    /// The string EAL and `Port::open` get: a PCI address in its full form.
    pub fn eal_string(&self) -> String {
        match self {
            Device::Pci {
                addr,
                devargs: Some(a),
            } => format!("{addr},{a}"),
            Device::Pci {
                addr,
                devargs: None,
            } => addr.to_string(),
            Device::Virtual(s) => s.clone(),
        }
    }
}

/// How well a PCI device's kernel driver suits DPDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverFit {
    /// vfio-pci, uio_pci_generic or igb_uio: DPDK's PMD drives it.
    Userspace(String),
    /// A bifurcated driver (mlx5_core, mlx4_core): the kernel keeps the
    /// device and DPDK's PMD works alongside it.
    Bifurcated(String),
    /// A kernel network driver: DPDK cannot use the device until it is
    /// bound to vfio-pci.
    Kernel(String),
    /// No driver bound.
    Unbound,
}

impl DriverFit {
    /// Judges a driver name (the last component of the device's `driver`
    /// link), or `None` for an unbound device.
    pub fn of(driver: Option<&str>) -> DriverFit {
        match driver {
            None => DriverFit::Unbound,
            Some(d @ ("vfio-pci" | "uio_pci_generic" | "igb_uio")) => {
                DriverFit::Userspace(d.into())
            }
            Some(d @ ("mlx5_core" | "mlx4_core")) => DriverFit::Bifurcated(d.into()),
            Some(d) => DriverFit::Kernel(d.into()),
        }
    }

    /// Whether DPDK can open the device as it is bound now.
    pub fn usable(&self) -> bool {
        matches!(self, DriverFit::Userspace(_) | DriverFit::Bifurcated(_))
    }
}

/// What sysfs says about a PCI device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// The address.
    pub addr: PciAddr,
    /// `vendor:device` ids as sysfs writes them (`0x8086:0x1572`).
    pub ids: String,
    /// The bound driver.
    pub driver: DriverFit,
}

/// Where Linux lists PCI devices.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Looks `addr` up under `devices` (normally [`SYSFS_PCI_DEVICES`]).
pub fn pci_device(devices: &Path, addr: PciAddr) -> Result<PciDevice, String> {
    let dir = devices.join(addr.to_string());
    if !dir.is_dir() {
        return Err(format!(
            "no PCI device {addr} on this host ({} has no such entry; `lspci -D` lists them)",
            devices.display()
        ));
    }
    let id = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let driver = std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok(PciDevice {
        addr,
        ids: format!("{}:{}", id("vendor"), id("device")),
        driver: DriverFit::of(driver.as_deref()),
    })
}

// -------------------------------------------------------------------- check

/// One thing `espresso check` found about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Fine, for information.
    Ok(String),
    /// `run` may work but likely not as meant.
    Warning(String),
    /// `run` will fail.
    Error(String),
}

/// Checks the configuration against this host: every PCI interface
/// exists and has a driver DPDK can use, and hugepages are there when
/// `hugepages = "on"` (what `auto` will pick is reported).
pub fn check(config: &GatewayConfig) -> Vec<Finding> {
    check_with(config, Path::new(SYSFS_PCI_DEVICES), &Hugepages::read())
}

/// [`check`] as `espresso check` prints it: the errors (each naming its
/// field), then the rest, warnings first marked `warning:`.
pub fn check_report(config: &GatewayConfig) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    for f in check(config) {
        match f {
            Finding::Error(e) => errors.push(e),
            Finding::Warning(w) => notes.push(format!("warning: {w}")),
            Finding::Ok(s) => notes.push(s),
        }
    }
    (errors, notes)
}

/// [`check`] with the sysfs PCI directory and the hugepage state given.
pub fn check_with(config: &GatewayConfig, pci_root: &Path, huge: &Hugepages) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, iface) in config.interfaces.iter().enumerate() {
        let Ok(Device::Pci { addr, .. }) = Device::parse(&iface.device) else {
            continue;
        };
        let field = format!("interface[{i}].device ({})", iface.name);
        match pci_device(pci_root, addr) {
            Err(e) => out.push(Finding::Error(format!("{field}: {e}"))),
            Ok(d) => out.push(match &d.driver {
                DriverFit::Userspace(drv) => {
                    Finding::Ok(format!("{field}: PCI {addr} [{}] bound to {drv}", d.ids))
                }
                DriverFit::Bifurcated(drv) => Finding::Ok(format!(
                    "{field}: PCI {addr} [{}] bound to {drv} (bifurcated: DPDK works alongside the kernel driver)",
                    d.ids
                )),
                DriverFit::Kernel(drv) => Finding::Warning(format!(
                    "{field}: PCI {addr} [{}] is bound to the kernel driver {drv}; DPDK will not see it until it is bound to vfio-pci (dpdk-devbind.py -b vfio-pci {addr})",
                    d.ids
                )),
                DriverFit::Unbound => Finding::Warning(format!(
                    "{field}: PCI {addr} [{}] has no driver bound; bind it to vfio-pci (dpdk-devbind.py -b vfio-pci {addr})",
                    d.ids
                )),
            }),
        }
    }
    let dp = &config.dataplane;
    match decide_hugepages(dp.hugepages, dp.memory_mb, huge) {
        Ok(d) if d.use_hugepages => out.push(Finding::Ok(format!("hugepages: used ({})", d.why))),
        Ok(d) => out.push(Finding::Ok(format!("hugepages: not used ({})", d.why))),
        Err(e) => out.push(Finding::Error(format!("dataplane.hugepages: {e}"))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24684000 kB
MemFree:        11422000 kB
AnonHugePages:         0 kB
HugePages_Total:      64
HugePages_Free:       48
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:          131072 kB
";

    #[test]
    fn meminfo_gives_the_default_pool() {
        assert_eq!(
            parse_meminfo(MEMINFO),
            Some(HugepagePool {
                size_kb: 2048,
                total: 64,
                free: 48
            })
        );
        assert_eq!(parse_meminfo("MemTotal: 1000 kB\n"), None);
        assert_eq!(parse_meminfo(MEMINFO).map(|p| p.free_mb()), Some(96));
    }

    #[test]
    fn mounts_keep_hugetlbfs_only_with_page_size() {
        let text = "proc /proc proc rw,nosuid 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
none /mnt/huge\\0401g hugetlbfs rw,pagesize=1024M 0 0
nodev /mnt/plain hugetlbfs rw 0 0
tmpfs /run tmpfs rw 0 0
";
        let m = parse_hugetlbfs_mounts(text);
        assert_eq!(
            m,
            vec![
                HugetlbfsMount {
                    path: "/dev/hugepages".into(),
                    page_kb: Some(2048)
                },
                HugetlbfsMount {
                    path: "/mnt/huge 1g".into(),
                    page_kb: Some(1024 * 1024)
                },
                HugetlbfsMount {
                    path: "/mnt/plain".into(),
                    page_kb: None
                },
            ]
        );
        assert!(parse_hugetlbfs_mounts("").is_empty());
    }

    fn host(free_2m: u64, mounted: bool) -> Hugepages {
        Hugepages {
            pools: vec![HugepagePool {
                size_kb: 2048,
                total: free_2m + 4,
                free: free_2m,
            }],
            mounts: if mounted {
                vec![HugetlbfsMount {
                    path: "/dev/hugepages".into(),
                    page_kb: Some(2048),
                }]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn auto_uses_hugepages_only_when_enough_are_free() {
        let d = decide_hugepages(HugepageMode::Auto, 64, &host(32, true)).unwrap();
        assert!(d.use_hugepages, "{d:?}");
        assert!(d.why.contains("64 MiB of hugepages free"), "{}", d.why);
        // No mount needed: EAL maps them anonymously.
        assert!(
            decide_hugepages(HugepageMode::Auto, 64, &host(32, false))
                .unwrap()
                .use_hugepages
        );
        let d = decide_hugepages(HugepageMode::Auto, 64, &host(31, true)).unwrap();
        assert!(!d.use_hugepages);
        assert!(d.why.contains("--no-huge"), "{}", d.why);
        let d = decide_hugepages(HugepageMode::Auto, 512, &Hugepages::default()).unwrap();
        assert!(!d.use_hugepages);
        assert!(d.why.contains("no hugepages"), "{}", d.why);
    }

    #[test]
    fn on_without_pages_is_an_error_and_off_never_uses_them() {
        let e = decide_hugepages(HugepageMode::On, 512, &host(10, true)).unwrap_err();
        assert!(e.contains("only 20 MiB"), "{e}");
        assert!(e.contains("nr_hugepages"), "{e}");
        assert!(
            decide_hugepages(HugepageMode::On, 16, &host(10, true))
                .unwrap()
                .use_hugepages
        );
        assert!(
            !decide_hugepages(HugepageMode::Off, 16, &host(1000, true))
                .unwrap()
                .use_hugepages
        );
    }

    #[test]
    fn pools_of_every_size_count() {
        let h = Hugepages {
            pools: vec![
                HugepagePool {
                    size_kb: 2048,
                    total: 8,
                    free: 8,
                },
                HugepagePool {
                    size_kb: 1048576,
                    total: 1,
                    free: 1,
                },
            ],
            mounts: vec![],
        };
        assert_eq!(h.free_mb(), 16 + 1024);
    }

    #[test]
    fn sysfs_pools_are_read_by_size() {
        let root = std::env::temp_dir().join(format!("espresso-hp-{}", std::process::id()));
        for (size, nr, free) in [("2048", "10\n", "7\n"), ("1048576", "0\n", "0\n")] {
            let d = root.join(format!("hugepages-{size}kB"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("nr_hugepages"), nr).unwrap();
            std::fs::write(d.join("free_hugepages"), free).unwrap();
        }
        std::fs::create_dir_all(root.join("not-a-pool")).unwrap();
        let pools = read_sysfs_pools(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            pools,
            vec![
                HugepagePool {
                    size_kb: 2048,
                    total: 10,
                    free: 7
                },
                HugepagePool {
                    size_kb: 1048576,
                    total: 0,
                    free: 0
                },
            ]
        );
    }

    #[test]
    fn pci_addresses_parse_strictly_and_print_in_full() {
        let a: PciAddr = "0000:03:00.0".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 3, 0, 0));
        assert_eq!(
            "03:00.1".parse::<PciAddr>().unwrap().to_string(),
            "0000:03:00.1"
        );
        assert_eq!(
            "10000:AF:1f.7".parse::<PciAddr>().unwrap().to_string(),
            "10000:af:1f.7"
        );
        for bad in [
            "0000:03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "000:03:00.0",
            "0000:3:00.0",
            "0000:03:00.0.1",
            "x000:03:00.0",
            "",
            ":",
            "0000:03:00.",
            "+000:03:00.0",
        ] {
            assert!(bad.parse::<PciAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn device_strings_are_pci_or_virtual() {
        assert_eq!(
            Device::parse("0000:03:00.0").unwrap(),
            Device::Pci {
                addr: "0000:03:00.0".parse().unwrap(),
                devargs: None
            }
        );
        let d = Device::parse("03:00.1,rxq_cqe_comp_en=0").unwrap();
        assert_eq!(d.eal_string(), "0000:03:00.1,rxq_cqe_comp_en=0");
        assert_eq!(
            Device::parse("net_af_packet0,iface=veth0").unwrap(),
            Device::Virtual("net_af_packet0,iface=veth0".into())
        );
        assert_eq!(
            Device::parse("net_tap0,iface=tap0").unwrap().eal_string(),
            "net_tap0,iface=tap0"
        );
        assert!(Device::parse("0000:03:00").is_err());
        assert!(Device::parse("0000:03:00.0,").is_err());
    }

    #[test]
    fn drivers_are_judged() {
        assert!(DriverFit::of(Some("vfio-pci")).usable());
        assert!(DriverFit::of(Some("uio_pci_generic")).usable());
        assert!(DriverFit::of(Some("mlx5_core")).usable());
        assert_eq!(
            DriverFit::of(Some("ixgbe")),
            DriverFit::Kernel("ixgbe".into())
        );
        assert!(!DriverFit::of(Some("virtio-pci")).usable());
        assert_eq!(DriverFit::of(None), DriverFit::Unbound);
    }

    #[test]
    fn sysfs_pci_lookup_reports_driver_and_absence() {
        let root = std::env::temp_dir().join(format!("espresso-pci-{}", std::process::id()));
        let drivers = root.join("drivers");
        let devices = root.join("devices");
        std::fs::create_dir_all(drivers.join("vfio-pci")).unwrap();
        for (addr, driver) in [("0000:03:00.0", Some("vfio-pci")), ("0000:03:00.1", None)] {
            let d = devices.join(addr);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), "0x8086\n").unwrap();
            std::fs::write(d.join("device"), "0x1572\n").unwrap();
            if let Some(drv) = driver {
                std::os::unix::fs::symlink(drivers.join(drv), d.join("driver")).unwrap();
            }
        }
        let bound = pci_device(&devices, "0000:03:00.0".parse().unwrap());
        let unbound = pci_device(&devices, "0000:03:00.1".parse().unwrap());
        let missing = pci_device(&devices, "0000:04:00.0".parse().unwrap());
        std::fs::remove_dir_all(&root).unwrap();
        let bound = bound.unwrap();
        assert_eq!(bound.ids, "0x8086:0x1572");
        assert_eq!(bound.driver, DriverFit::Userspace("vfio-pci".into()));
        assert_eq!(unbound.unwrap().driver, DriverFit::Unbound);
        assert!(missing.unwrap_err().contains("no PCI device 0000:04:00.0"));
    }
}
