//! How each port is set up: RX and TX queues, ring sizes and RSS, decided
//! from the interface's configuration, the number of workers and what the
//! device offers (its `rte_eth_dev_info`, as plain numbers here so that
//! this builds and tests without DPDK).
//!
//! Explicit values that the device cannot take are refused with a message
//! naming the interface and the key; defaults are fitted to the device and
//! the fit is reported.

use crate::config::Interface;

/// `RTE_ETH_RSS_*` hash types of DPDK 22.11's `rte_ethdev.h` (bits of
/// `rte_eth_rss_conf.rss_hf` and `rte_eth_dev_info.flow_type_rss_offloads`).
pub mod rss {
    /// Source and destination IPv4 address (any IPv4 packet, ESP included).
    pub const IPV4: u64 = 1 << 2;
    /// IPv4 TCP: addresses and ports.
    pub const NONFRAG_IPV4_TCP: u64 = 1 << 4;
    /// IPv4 UDP: addresses and ports (ESP in UDP, RFC 3948).
    pub const NONFRAG_IPV4_UDP: u64 = 1 << 5;
    /// Source and destination IPv6 address.
    pub const IPV6: u64 = 1 << 8;
    /// IPv6 TCP: addresses and ports.
    pub const NONFRAG_IPV6_TCP: u64 = 1 << 10;
    /// IPv6 UDP: addresses and ports.
    pub const NONFRAG_IPV6_UDP: u64 = 1 << 11;
    /// ESP: the SPI (RFC 4303 §2.1), so the SAs between one pair of
    /// gateways spread too.
    pub const ESP: u64 = 1 << 27;

    /// Names for logs, in bit order.
    pub const NAMES: [(u64, &str); 7] = [
        (IPV4, "ipv4"),
        (NONFRAG_IPV4_TCP, "ipv4-tcp"),
        (NONFRAG_IPV4_UDP, "ipv4-udp"),
        (IPV6, "ipv6"),
        (NONFRAG_IPV6_TCP, "ipv6-tcp"),
        (NONFRAG_IPV6_UDP, "ipv6-udp"),
        (ESP, "esp"),
    ];

    /// What the gateway asks for: ESP by SPI, ESP in UDP by UDP ports,
    /// plaintext by its IP/TCP/UDP flow.
    pub const WANTED: u64 = IPV4
        | NONFRAG_IPV4_TCP
        | NONFRAG_IPV4_UDP
        | IPV6
        | NONFRAG_IPV6_TCP
        | NONFRAG_IPV6_UDP
        | ESP;

    /// `ipv4,ipv4-udp,esp`, `none`, with `0x…` for bits not named here.
    pub fn names(bits: u64) -> String {
        let mut out: Vec<String> = NAMES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| (*n).to_string())
            .collect();
        let rest = bits & !NAMES.iter().fold(0, |a, (b, _)| a | b);
        if rest != 0 {
            out.push(format!("{rest:#x}"));
        }
        if out.is_empty() {
            "none".into()
        } else {
            out.join(",")
        }
    }
}

/// A descriptor ring's limits (`rte_eth_desc_lim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescRange {
    /// Fewest descriptors.
    pub min: u16,
    /// Most descriptors (0: no limit given).
    pub max: u16,
    /// The count must be a multiple of this (0 or 1: any).
    pub align: u16,
}

impl DescRange {
    fn max(&self) -> u16 {
        if self.max == 0 {
            u16::MAX
        } else {
            self.max
        }
    }

    fn fits(&self, n: u16) -> bool {
        n >= self.min && n <= self.max() && n.is_multiple_of(self.align.max(1))
    }

    /// The nearest count the device takes: clamped to the range, then
    /// rounded up (or, at the top, down) to the alignment.
    fn fit(&self, n: u16) -> u16 {
        let align = self.align.max(1);
        let n = n.clamp(self.min, self.max());
        let up = n.div_ceil(align).saturating_mul(align);
        if up <= self.max() {
            up
        } else {
            n / align * align
        }
    }
}

/// What the device offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// The PMD's name, for messages.
    pub driver: String,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// RX ring limits.
    pub rx_desc: DescRange,
    /// TX ring limits.
    pub tx_desc: DescRange,
    /// RSS hash types it computes ([`rss`] bits); 0: no RSS.
    pub rss_offloads: u64,
}

/// Whether and how packets are spread over the RX queues in the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssPlan {
    /// The hash types to configure ([`rss`] bits); 0: RSS off.
    pub hash: u64,
    /// Why, for the log.
    pub why: String,
}

/// Decides RSS for a port with `rx_queues` RX queues on a device that
/// offers the `offered` hash types: the [`rss::WANTED`] ones it offers, or
/// none. Without RSS every packet arrives on queue 0 and the worker that
/// polls it hands each to its SA's owner in software, as with one queue.
pub fn rss_plan(rx_queues: u16, offered: u64) -> RssPlan {
    let off = |why: String| RssPlan { hash: 0, why };
    if rx_queues <= 1 {
        return off("one RX queue: RSS off, the worker hands packets to their SA's owner".into());
    }
    if offered == 0 {
        return off("the device offers no RSS to configure: packets arrive on the queues it picks itself (queue 0 for most; AF_PACKET's fanout spreads flows) and workers hand them to their SA's owner".into());
    }
    let hash = offered & rss::WANTED;
    if hash == 0 {
        return off(format!(
            "the device's RSS hash types ({}) include none of {}: RSS off",
            rss::names(offered),
            rss::names(rss::WANTED)
        ));
    }
    let mut why = format!("RSS over {rx_queues} RX queues by {}", rss::names(hash));
    if hash & rss::ESP == 0 {
        why.push_str(
            "; no ESP (SPI) hash: ESP between one pair of addresses lands on one queue, and its worker hands packets to their SA's owner",
        );
    }
    RssPlan { hash, why }
}

/// A port's set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// RX queues (1..=workers): worker `w` polls queue `w` if it exists.
    pub rx_queues: u16,
    /// TX queues (workers..): worker `w` sends on queue `w`.
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// RSS.
    pub rss: RssPlan,
    /// Defaults that were fitted to the device, for the log.
    pub notes: Vec<String>,
}

/// Plans interface `iface` for `workers` workers on a device with `limits`.
pub fn plan_port(
    iface: &Interface,
    workers: u16,
    limits: &DeviceLimits,
) -> Result<PortPlan, String> {
    let name = &iface.name;
    let drv = &limits.driver;
    let mut notes = Vec::new();
    if limits.max_rx_queues == 0 || limits.max_tx_queues == 0 {
        return Err(format!(
            "interface \"{name}\": the device ({drv}) offers {} RX and {} TX queues",
            limits.max_rx_queues, limits.max_tx_queues
        ));
    }
    let rx_queues = match iface.rx_queues {
        Some(n) if n > limits.max_rx_queues => {
            return Err(format!(
                "interface \"{name}\": rx_queues = {n} but the device ({drv}) has at most {} RX queue(s)",
                limits.max_rx_queues
            ))
        }
        Some(n) => n,
        None if workers > limits.max_rx_queues => {
            notes.push(format!(
                "{} RX queue(s), the device's most ({drv}), for {workers} workers: the others receive this port's packets by hand-off",
                limits.max_rx_queues
            ));
            limits.max_rx_queues
        }
        None => workers,
    };
    let tx_queues = iface.tx_queues.unwrap_or(workers).max(workers);
    if tx_queues > limits.max_tx_queues {
        return Err(format!(
            "interface \"{name}\": {tx_queues} TX queues wanted ({}) but the device ({drv}) has at most {}",
            if iface.tx_queues.is_some() {
                "tx_queues"
            } else {
                "one per worker: each worker sends on a queue of its own"
            },
            limits.max_tx_queues
        ));
    }
    let mut desc = |key: &str, v: Option<u16>, lim: &DescRange| -> Result<u16, String> {
        let range = format!(
            "{}..={}{}",
            lim.min,
            lim.max(),
            if lim.align > 1 {
                format!(", a multiple of {}", lim.align)
            } else {
                String::new()
            }
        );
        match v {
            Some(n) if lim.fits(n) => Ok(n),
            Some(n) => Err(format!(
                "interface \"{name}\": {key} = {n} is outside what the device ({drv}) takes: {range}"
            )),
            None if lim.fits(Interface::DEFAULT_DESC) => Ok(Interface::DEFAULT_DESC),
            None => {
                let n = lim.fit(Interface::DEFAULT_DESC);
                notes.push(format!(
                    "{key} {n} instead of {} (the device takes {range})",
                    Interface::DEFAULT_DESC
                ));
                Ok(n)
            }
        }
    };
    let rx_desc = desc("rx_desc", iface.rx_desc, &limits.rx_desc)?;
    let tx_desc = desc("tx_desc", iface.tx_desc, &limits.tx_desc)?;
    Ok(PortPlan {
        rx_queues,
        tx_queues,
        rx_desc,
        tx_desc,
        rss: rss_plan(rx_queues, limits.rss_offloads),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn iface() -> Interface {
        Interface {
            name: "wan".into(),
            device: "0000:03:00.0".into(),
            role: Role::Wan,
            addresses: vec![],
            mtu: 1500,
            mss_clamp: None,
            rx_queues: None,
            tx_queues: None,
            rx_desc: None,
            tx_desc: None,
        }
    }

    fn nic(queues: u16, rss_offloads: u64) -> DeviceLimits {
        DeviceLimits {
            driver: "net_test".into(),
            max_rx_queues: queues,
            max_tx_queues: queues,
            rx_desc: DescRange {
                min: 64,
                max: 4096,
                align: 32,
            },
            tx_desc: DescRange {
                min: 64,
                max: 4096,
                align: 32,
            },
            rss_offloads,
        }
    }

    /// RTE_ETH_RSS_FRAG_IPV4, which the gateway does not ask for.
    const FRAG_IPV4: u64 = 1 << 3;

    /// An i40e-like device: IP, TCP, UDP, SCTP and other hashes, no ESP.
    const IP_TCP_UDP: u64 = rss::IPV4
        | rss::NONFRAG_IPV4_TCP
        | rss::NONFRAG_IPV4_UDP
        | rss::IPV6
        | rss::NONFRAG_IPV6_TCP
        | rss::NONFRAG_IPV6_UDP
        | (1 << 6)
        | (1 << 12);

    #[test]
    fn rss_takes_the_wanted_types_the_device_offers() {
        let p = rss_plan(4, IP_TCP_UDP);
        assert_eq!(p.hash, IP_TCP_UDP & !((1 << 6) | (1 << 12)));
        assert!(p.why.contains("no ESP (SPI) hash"), "{}", p.why);
        let p = rss_plan(2, IP_TCP_UDP | rss::ESP | FRAG_IPV4);
        assert_eq!(p.hash & rss::ESP, rss::ESP);
        assert_eq!(p.hash & FRAG_IPV4, 0);
        assert!(!p.why.contains("no ESP"), "{}", p.why);
        assert!(p.why.contains("esp"), "{}", p.why);
    }

    #[test]
    fn rss_is_off_with_one_queue_or_nothing_in_common() {
        assert_eq!(rss_plan(1, IP_TCP_UDP | rss::ESP).hash, 0);
        let p = rss_plan(2, 0);
        assert_eq!(p.hash, 0);
        assert!(p.why.contains("no RSS"), "{}", p.why);
        let p = rss_plan(2, 1 << 14);
        assert_eq!(p.hash, 0);
        assert!(p.why.contains("none of"), "{}", p.why);
    }

    #[test]
    fn rss_names_are_readable() {
        assert_eq!(rss::names(0), "none");
        assert_eq!(rss::names(rss::IPV4 | rss::ESP), "ipv4,esp");
        assert_eq!(
            rss::names(rss::NONFRAG_IPV6_UDP | (1 << 14)),
            "ipv6-udp,0x4000"
        );
    }

    #[test]
    fn defaults_are_one_queue_per_worker_and_1024_descriptors() {
        let p = plan_port(&iface(), 4, &nic(8, IP_TCP_UDP)).unwrap();
        assert_eq!(
            (p.rx_queues, p.tx_queues, p.rx_desc, p.tx_desc),
            (4, 4, 1024, 1024)
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_ne!(p.rss.hash, 0);
    }

    #[test]
    fn default_rx_queues_shrink_to_the_device_and_explicit_ones_are_refused() {
        let p = plan_port(&iface(), 2, &{
            let mut n = nic(2, 0);
            n.max_rx_queues = 1;
            n
        })
        .unwrap();
        assert_eq!(p.rx_queues, 1);
        assert_eq!(p.rss.hash, 0);
        assert!(p.notes[0].contains("hand-off"), "{:?}", p.notes);
        let mut i = iface();
        i.rx_queues = Some(4);
        let e = plan_port(&i, 4, &nic(2, IP_TCP_UDP)).unwrap_err();
        assert!(e.contains("interface \"wan\": rx_queues = 4"), "{e}");
        assert!(e.contains("net_test"), "{e}");
    }

    #[test]
    fn every_worker_needs_a_tx_queue() {
        let e = plan_port(&iface(), 4, &nic(2, 0)).unwrap_err();
        assert!(e.contains("interface \"wan\": 4 TX queues"), "{e}");
        assert!(e.contains("each worker"), "{e}");
        let mut i = iface();
        i.tx_queues = Some(8);
        let e = plan_port(&i, 2, &nic(4, 0)).unwrap_err();
        assert!(e.contains("tx_queues"), "{e}");
        assert_eq!(plan_port(&i, 2, &nic(8, 0)).unwrap().tx_queues, 8);
    }

    #[test]
    fn descriptors_explicit_are_checked_defaults_are_fitted() {
        let mut i = iface();
        i.rx_desc = Some(8192);
        let e = plan_port(&i, 1, &nic(1, 0)).unwrap_err();
        assert!(e.contains("interface \"wan\": rx_desc = 8192"), "{e}");
        assert!(e.contains("64..=4096, a multiple of 32"), "{e}");
        let mut small = nic(1, 0);
        small.tx_desc = DescRange {
            min: 32,
            max: 512,
            align: 8,
        };
        let p = plan_port(&iface(), 1, &small).unwrap();
        assert_eq!(p.tx_desc, 512);
        assert!(
            p.notes[0].contains("tx_desc 512 instead of 1024"),
            "{:?}",
            p.notes
        );
        // No limits given (max 0): anything goes.
        let mut open = nic(1, 0);
        open.rx_desc = DescRange {
            min: 0,
            max: 0,
            align: 0,
        };
        i.rx_desc = Some(32768);
        assert_eq!(plan_port(&i, 1, &open).unwrap().rx_desc, 32768);
    }

    #[test]
    fn fit_rounds_to_the_alignment_inside_the_range() {
        let r = DescRange {
            min: 100,
            max: 1000,
            align: 64,
        };
        assert_eq!(r.fit(1024), 960);
        assert_eq!(r.fit(10), 128);
        assert!(r.fits(r.fit(500)));
    }

    /// The bits above are DPDK's: checked against the installed header.
    #[cfg(have_dpdk)]
    #[test]
    fn bits_match_rte_ethdev_h() {
        let out = std::process::Command::new("pkg-config")
            .args(["--variable=includedir", "libdpdk"])
            .output()
            .expect("pkg-config");
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let header = ["dpdk/rte_ethdev.h", "rte_ethdev.h"]
            .iter()
            .map(|f| std::path::Path::new(&dir).join(f))
            .find(|p| p.exists())
            .expect("rte_ethdev.h");
        let text = std::fs::read_to_string(header).unwrap();
        for (bits, macro_name) in [
            (rss::IPV4, "IPV4"),
            (rss::NONFRAG_IPV4_TCP, "NONFRAG_IPV4_TCP"),
            (rss::NONFRAG_IPV4_UDP, "NONFRAG_IPV4_UDP"),
            (rss::IPV6, "IPV6"),
            (rss::NONFRAG_IPV6_TCP, "NONFRAG_IPV6_TCP"),
            (rss::NONFRAG_IPV6_UDP, "NONFRAG_IPV6_UDP"),
            (rss::ESP, "ESP"),
        ] {
            let want = format!("RTE_BIT64({})", bits.trailing_zeros());
            let line = text
                .lines()
                .find(|l| {
                    l.split_whitespace().nth(1) == Some(&format!("RTE_ETH_RSS_{macro_name}"))
                        && l.starts_with("#define")
                })
                .unwrap_or_else(|| panic!("RTE_ETH_RSS_{macro_name} not in the header"));
            assert!(line.contains(&want), "{line} vs {want}");
        }
    }
}
