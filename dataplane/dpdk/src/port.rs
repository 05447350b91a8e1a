//! Ethernet ports opened from a DPDK device string, and their queues.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{DpdkError, Eal, Mbuf, Mempool, BURST_SIZE};

/// How to set up a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX queues (one per worker that polls this port). At most 64.
    pub rx_queues: u16,
    /// TX queues (one per worker that sends on this port). At most 64.
    pub tx_queues: u16,
    /// RX ring size per queue.
    pub rx_desc: u16,
    /// TX ring size per queue.
    pub tx_desc: u16,
    /// The pool RX queues take mbufs from.
    pub mempool: Mempool,
    /// MTU to set, if any (the PMD's default otherwise).
    pub mtu: Option<u16>,
    /// Receive frames for any destination MAC.
    pub promiscuous: bool,
    /// RSS hash types (`RTE_ETH_RSS_*` bits) to spread packets over the
    /// RX queues with; 0, or a single RX queue, leaves RSS off. Bits the
    /// device does not offer are dropped (see [`DeviceInfo::rss_offloads`]).
    pub rss_hf: u64,
}

impl PortConfig {
    /// One RX and one TX queue with 1024 descriptors each.
    pub fn new(mempool: Mempool) -> Self {
        Self {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mempool,
            mtu: None,
            promiscuous: true,
            rss_hf: 0,
        }
    }
}

/// A device's descriptor ring limits (`rte_eth_desc_lim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescLimits {
    /// Most descriptors per queue.
    pub max: u16,
    /// Fewest descriptors per queue.
    pub min: u16,
    /// The count must be a multiple of this.
    pub align: u16,
}

/// What a device offers (`rte_eth_dev_info`), read before it is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// DPDK's port id.
    pub port_id: u16,
    /// The poll-mode driver (`net_ixgbe`, `net_af_packet`, ...).
    pub driver: String,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// RX ring limits.
    pub rx_desc: DescLimits,
    /// TX ring limits.
    pub tx_desc: DescLimits,
    /// The RSS hash types it can compute (`RTE_ETH_RSS_*` bits); 0: no RSS.
    pub rss_offloads: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// RX packets dropped by the hardware/PMD (ring full).
    pub imissed: u64,
    /// RX errors.
    pub ierrors: u64,
    /// TX errors.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

struct PortInner {
    id: u16,
    name: String,
    rx_taken: AtomicU64,
    tx_taken: AtomicU64,
    rx_queues: u16,
    tx_queues: u16,
    rx_desc: u16,
    tx_desc: u16,
    rss_hf: u64,
    // Keeps the pool alive while RX queues may allocate from it.
    _mempool: Mempool,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: the port was started by us; all queue handles are gone
        // (they hold this Arc), so no thread polls it any more. Stop/close
        // free the mbufs held in the PMD's rings.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
        }
        // SAFETY: as above; the port is stopped.
        unsafe {
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// An open, started Ethernet port. Dropping the port and all of its queue
/// handles stops and closes it.
#[derive(Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .finish()
    }
}

fn einval(op: &'static str) -> DpdkError {
    DpdkError::new(op, 22)
}

impl Port {
    /// Opens the device `devargs` (e.g. `net_af_packet0,iface=veth0`,
    /// `net_tap0,iface=tap0`, `net_pcap0,rx_pcap=in.pcap`, `net_null0`,
    /// `net_ring0`), probing it if EAL has not already (from `--vdev`),
    /// then configures its queues and starts it.
    ///
    /// A PCI device (`0000:03:00.0`) must have been probed by EAL (`-a`);
    /// its port has the address as its name.
    ///
    /// Queue counts and ring sizes outside the device's limits
    /// ([`Port::probe`]) are refused with `EINVAL`; callers that want a
    /// clear message check them first.
    pub fn open(eal: &Eal, devargs: &str, config: &PortConfig) -> Result<Port, DpdkError> {
        if config.rx_queues == 0
            || config.rx_queues > 64
            || config.tx_queues == 0
            || config.tx_queues > 64
        {
            return Err(einval("rte_eth_dev_configure"));
        }
        let name = device_name(devargs);
        let (id, info) = probe(eal, devargs)?;
        let fits = |n: u16, lim: &dpdk_sys::rte_eth_desc_lim| {
            n >= lim.nb_min && n <= lim.nb_max && n.is_multiple_of(lim.nb_align.max(1))
        };
        if config.rx_queues > info.max_rx_queues
            || config.tx_queues > info.max_tx_queues
            || !fits(config.rx_desc, &info.rx_desc_lim)
            || !fits(config.tx_desc, &info.tx_desc_lim)
        {
            return Err(einval("rte_eth_dev_configure"));
        }

        let mut conf = dpdk_sys::rte_eth_conf::default();
        // RSS (receive side scaling) spreads flows over the RX queues in
        // the device; asking for a hash type it cannot compute fails
        // rte_eth_dev_configure, so only the offered ones are kept.
        let rss_hf = config.rss_hf & info.flow_type_rss_offloads;
        if config.rx_queues > 1 && rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            // A null key: the PMD's default.
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: valid port id; `conf` is a zeroed default configuration.
        let rc = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, config.rx_queues, config.tx_queues, &conf)
        };
        DpdkError::check("rte_eth_dev_configure", rc)?;

        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        // SOCKET_ID_ANY (-1) reinterpreted as unsigned is what DPDK expects.
        let socket = socket as u32;
        for q in 0..config.rx_queues {
            // SAFETY: configured port, queue index in range, null rxconf means
            // the PMD's defaults, live mempool (kept alive by PortInner).
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    config.rx_desc,
                    socket,
                    std::ptr::null(),
                    config.mempool.as_ptr(),
                )
            };
            DpdkError::check("rte_eth_rx_queue_setup", rc)?;
        }
        for q in 0..config.tx_queues {
            // SAFETY: configured port, queue index in range, default txconf.
            let rc = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, config.tx_desc, socket, std::ptr::null())
            };
            DpdkError::check("rte_eth_tx_queue_setup", rc)?;
        }
        if let Some(mtu) = config.mtu {
            // SAFETY: valid port id.
            let rc = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            DpdkError::check("rte_eth_dev_set_mtu", rc)?;
        }
        // SAFETY: configured port with all queues set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        DpdkError::check("rte_eth_dev_start", rc)?;
        if config.promiscuous {
            // SAFETY: started port. Some PMDs do not support it (-ENOTSUP);
            // that is not an error for us.
            unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        let rss_hf = if conf.rxmode.mq_mode == dpdk_sys::RTE_ETH_MQ_RX_RSS {
            // What the device reports in effect; PMDs that cannot report it
            // (-ENOTSUP) run what was configured.
            let mut rss = dpdk_sys::rte_eth_rss_conf::default();
            // SAFETY: started port; a null key pointer asks for the hash
            // types only.
            let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(id, &mut rss) };
            if rc == 0 {
                rss.rss_hf
            } else {
                rss_hf
            }
        } else {
            0
        };
        Ok(Port {
            inner: Arc::new(PortInner {
                id,
                name: name.to_owned(),
                rx_taken: AtomicU64::new(0),
                tx_taken: AtomicU64::new(0),
                rx_queues: config.rx_queues,
                tx_queues: config.tx_queues,
                rx_desc: config.rx_desc,
                tx_desc: config.tx_desc,
                rss_hf,
                _mempool: config.mempool.clone(),
            }),
        })
    }

    /// Probes the device `devargs` if EAL has not (as [`Port::open`] does)
    /// and reports what it offers, before it is configured.
    pub fn probe(eal: &Eal, devargs: &str) -> Result<DeviceInfo, DpdkError> {
        let (port_id, info) = probe(eal, devargs)?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: non-null NUL-terminated driver name, static in the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let lim = |l: &dpdk_sys::rte_eth_desc_lim| DescLimits {
            max: l.nb_max,
            min: l.nb_min,
            align: l.nb_align,
        };
        Ok(DeviceInfo {
            port_id,
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rx_desc: lim(&info.rx_desc_lim),
            tx_desc: lim(&info.tx_desc_lim),
            rss_offloads: info.flow_type_rss_offloads,
        })
    }

    /// Number of RX queues.
    pub fn rx_queue_count(&self) -> u16 {
        self.inner.rx_queues
    }

    /// Number of TX queues.
    pub fn tx_queue_count(&self) -> u16 {
        self.inner.tx_queues
    }

    /// RX and TX descriptors per queue.
    pub fn desc(&self) -> (u16, u16) {
        (self.inner.rx_desc, self.inner.tx_desc)
    }

    /// The RSS hash types in effect (`RTE_ETH_RSS_*` bits); 0: RSS off,
    /// every packet arrives on RX queue 0.
    pub fn rss_hf(&self) -> u64 {
        self.inner.rss_hf
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// The device name (`net_af_packet0`, ...).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Takes the handle of RX queue `q`; each queue can be taken once, so
    /// exactly one thread polls it.
    pub fn rx_queue(&self, q: u16) -> Option<RxQueue> {
        take_bit(&self.inner.rx_taken, q, self.inner.rx_queues).then(|| RxQueue {
            port: self.inner.clone(),
            queue: q,
        })
    }

    /// Takes the handle of TX queue `q`; each queue can be taken once.
    pub fn tx_queue(&self, q: u16) -> Option<TxQueue> {
        take_bit(&self.inner.tx_taken, q, self.inner.tx_queues).then(|| TxQueue {
            port: self.inner.clone(),
            queue: q,
        })
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> [u8; 6] {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id, writable address struct.
        unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id, &mut addr) };
        addr.addr_bytes
    }

    /// Link state, without waiting.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id, writable link struct.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.inner.id, &mut link) };
        DpdkError::check("rte_eth_link_get_nowait", rc)?;
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
        })
    }

    /// Basic counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id, writable stats struct.
        let rc = unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut s) };
        DpdkError::check("rte_eth_stats_get", rc)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Extended counters, by name (control path: allocates).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let id = self.inner.id;
        // SAFETY: null buffer with size 0 asks for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        let n = DpdkError::check("rte_eth_xstats_get_names", n)? as usize;
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); n];
        // SAFETY: `names` has room for `n` entries.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n as u32) };
        let got_names = DpdkError::check("rte_eth_xstats_get_names", got)? as usize;
        // SAFETY: `values` has room for `n` entries.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get(id, values.as_mut_ptr(), n as u32) };
        let got_values = DpdkError::check("rte_eth_xstats_get", got)? as usize;
        let count = n.min(got_names).min(got_values);
        Ok(values[..count]
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: DPDK NUL-terminates xstat names within the array;
                // a name filling the array is cut by from_bytes_until_nul.
                let bytes: &[u8] = unsafe {
                    std::slice::from_raw_parts(name.name.as_ptr() as *const u8, name.name.len())
                };
                let s = CStr::from_bytes_until_nul(bytes)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                Some((s, v.value))
            })
            .collect())
    }

    /// Resets the basic counters.
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        let rc = unsafe { dpdk_sys::rte_eth_stats_reset(self.inner.id) };
        DpdkError::check("rte_eth_stats_reset", rc).map(|_| ())
    }
}

/// The device name in a devargs string: what comes before the first comma.
fn device_name(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or(devargs).trim()
}

/// Finds the port of `devargs`, probing the device if EAL has not, and
/// reads its info.
fn probe(_eal: &Eal, devargs: &str) -> Result<(u16, dpdk_sys::rte_eth_dev_info), DpdkError> {
    let name = device_name(devargs);
    let c_name = CString::new(name).map_err(|_| einval("rte_dev_probe"))?;
    let id = match port_by_name(&c_name) {
        Some(id) => id,
        None => {
            let c_args = CString::new(devargs).map_err(|_| einval("rte_dev_probe"))?;
            // SAFETY: EAL is up; `c_args` is a valid C string DPDK copies.
            let rc = unsafe { dpdk_sys::rte_dev_probe(c_args.as_ptr()) };
            DpdkError::check("rte_dev_probe", rc)?;
            port_by_name(&c_name)
                .ok_or_else(|| DpdkError::new("rte_eth_dev_get_port_by_name", 19))?
        }
    };
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: valid port id; `info` is a writable struct of the right type.
    let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    DpdkError::check("rte_eth_dev_info_get", rc)?;
    Ok((id, info))
}

fn port_by_name(name: &CStr) -> Option<u16> {
    let mut id = 0u16;
    // SAFETY: valid C string; `id` is writable.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

fn take_bit(bits: &AtomicU64, q: u16, count: u16) -> bool {
    if q >= count {
        return false;
    }
    let bit = 1u64 << q;
    bits.fetch_or(bit, Ordering::AcqRel) & bit == 0
}

/// The one handle to a port's RX queue: `Send`, not `Clone`.
pub struct RxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl std::fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RxQueue(port {}, queue {})", self.port.id, self.queue)
    }
}

impl RxQueue {
    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// Receives up to `BURST_SIZE` packets, appending them to `out`.
    /// Returns how many arrived. Reserve `out`'s capacity once up front to
    /// keep this allocation-free.
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>) -> usize {
        let mut raw = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST_SIZE];
        // SAFETY: `&mut self` makes this the only poller of the queue;
        // `raw` has room for BURST_SIZE pointers.
        let n = unsafe {
            dpdk_sys::espresso_eth_rx_burst(
                self.port.id,
                self.queue,
                raw.as_mut_ptr(),
                BURST_SIZE as u16,
            )
        } as usize;
        for &p in &raw[..n] {
            // SAFETY: DPDK hands us `n` valid mbufs, now owned by us.
            out.push(unsafe { Mbuf::from_raw(p) });
        }
        n
    }
}

/// The one handle to a port's TX queue: `Send`, not `Clone`.
pub struct TxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxQueue(port {}, queue {})", self.port.id, self.queue)
    }
}

impl TxQueue {
    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// Offers the packets at the front of `pkts` to the NIC. The ones it
    /// took are removed from `pkts` (the NIC owns them now); the ones it did
    /// not take stay in `pkts`, still owned by the caller, to retry or drop.
    /// Returns how many were sent.
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let count = pkts.len().min(u16::MAX as usize) as u16;
        if count == 0 {
            return 0;
        }
        // SAFETY: `Mbuf` is repr(transparent) over a non-null `rte_mbuf *`,
        // so the vector's buffer is a valid `rte_mbuf *[count]`; `&mut self`
        // makes us the only sender on this queue.
        let sent = unsafe {
            dpdk_sys::espresso_eth_tx_burst(
                self.port.id,
                self.queue,
                pkts.as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf,
                count,
            )
        } as usize;
        // The first `sent` now belong to the NIC: remove them without
        // running their destructors.
        for m in pkts.drain(..sent) {
            let _ = m.into_raw();
        }
        sent
    }

    /// Sends all of `pkts`, retrying up to `retries` times while the NIC
    /// makes progress, then frees whatever is left. Returns (sent, dropped).
    pub fn tx_burst_all(&mut self, pkts: &mut Vec<Mbuf>, retries: u32) -> (usize, usize) {
        let mut sent = 0;
        let mut tries = 0;
        while !pkts.is_empty() && tries <= retries {
            let n = self.tx_burst(pkts);
            sent += n;
            if n == 0 {
                tries += 1;
            }
        }
        let dropped = pkts.len();
        pkts.clear();
        (sent, dropped)
    }
}
