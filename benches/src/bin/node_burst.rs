//! The worker's data path on heap buffers, for counting instructions: one
//! `Node` set up as the lab's 1-SA AES-128-GCM case (same interfaces,
//! addresses, SPD with its flow cache, SA and neighbours; see
//! `benches/lab/src/case.rs`) and driven as the DPDK worker's poll loop
//! drives it: a burst of 32 frames into `Node::rx_burst` on the input
//! port, an empty one on the other port, then `Node::take_output` and the
//! transmit lists emptied. Buffers are recycled (the transmitted ones are
//! reloaded with the pristine frame), so no allocation is in the loop.
//!
//! Not a timer: run it under `valgrind --tool=callgrind` (or
//! `perf stat -e instructions`) with two burst counts and divide the
//! difference by the extra packets; `scripts/node-instr.sh` does that and
//! prints instructions per packet. The count is repeatable to a few
//! instructions, so it shows a change of the data path's work on a shared
//! machine where cycle counts do not.
//!
//! Usage: `node_burst encrypt|decrypt|reload BURSTS [FRAME]` (`reload`:
//! only the buffer recycling, the driver's own share of the count; FRAME:
//! the frame size in bytes as the lab counts it, FCS included, 64 by
//! default, e.g. 1420 for the lab's large-packet case).

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{default_backend, new_transform, Algorithm, EspTransform, SaKeys};
use dataplane::esp::{
    Action, Direction, InboundSa, IpPrefix, Mode, OutboundSa, Policy, SaConfig, SaRef, Selector,
    Spd, Spi, TunnelEndpoints,
};
use dataplane::gateway::node::{Interface, Node, Output, PacketPool, Role};
use dataplane::route::RouteTable;
use ipnet::IpNet;

const BURST: usize = espresso_benches::BURST;
const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
const LOCAL_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE_HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// Bytes of a frame that are not IP: 14 of Ethernet header, 4 of FCS.
const FRAME_OVERHEAD: u16 = 18;
const SPI: u32 = 0x1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Encrypt,
    Decrypt,
    Reload,
}

/// The node allocates only for packets it generates (none here).
struct NoPool;

impl PacketPool<HeapBuf> for NoPool {
    fn alloc(&mut self) -> Option<HeapBuf> {
        None
    }
}

fn sa_config(dir: Direction, local: Ipv4Addr, remote: Ipv4Addr) -> SaConfig {
    SaConfig::new(
        Spi::new(SPI).expect("SPI"),
        dir,
        Mode::Tunnel,
        TunnelEndpoints {
            local: IpAddr::V4(local),
            remote: IpAddr::V4(remote),
        },
    )
}

fn transform() -> Box<dyn EspTransform> {
    let alg = Algorithm::AES_GCM_128;
    let key: Vec<u8> = (0..alg.encryption.key_len())
        .map(|k| (k as u8).wrapping_mul(31) ^ 0x5a)
        .collect();
    new_transform(default_backend(alg), alg, &SaKeys::new(&key, &[])).expect("transform")
}

/// A UDP/IPv4 packet of `ip_len` bytes from `src` to `dst`, as the lab's
/// pcaps carry.
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, ip_len: u16) -> Vec<u8> {
    let mut p = vec![0u8; usize::from(ip_len)];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&ip_len.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum: u32 = p[..20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let c = !((sum & 0xffff) + (sum >> 16)) as u16;
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&1024u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&(ip_len - 20).to_be_bytes());
    p
}

fn ethernet(dst: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// The node of the lab's case and the frame it receives on port 0.
fn setup(mode: Case, ip_len: u16) -> (Node<HeapBuf>, Vec<u8>) {
    let lan = Interface {
        name: "lan".into(),
        mac: LAN_MAC,
        role: Role::Lan,
        addrs: vec![IpNet::new(LAN_ADDR.into(), 16).expect("prefix")],
        mtu: 9000,
        mss_clamp: None,
    };
    let wan = Interface {
        name: "wan".into(),
        mac: WAN_MAC,
        role: Role::Wan,
        addrs: vec![IpNet::new(WAN_ADDR.into(), 24).expect("prefix")],
        mtu: 9000,
        mss_clamp: None,
    };
    let decrypt = mode == Case::Decrypt;
    let (ifaces, lan_if, wan_if) = if decrypt {
        (vec![wan, lan], 1, 0)
    } else {
        (vec![lan, wan], 0, 1)
    };
    let mut node = Node::new(0, ifaces, RouteTable::new());
    node.add_static_neighbour(PEER_ADDR.into(), HOST_MAC, wan_if);
    node.add_static_neighbour(LOCAL_HOST.into(), HOST_MAC, lan_if);
    let frame = if decrypt {
        let mut c = sa_config(Direction::Inbound, WAN_ADDR, PEER_ADDR);
        c.replay_window = 0;
        c.traffic_selectors = vec![Selector::new(
            IpPrefix::host(REMOTE_HOST.into()),
            IpPrefix::host(LOCAL_HOST.into()),
        )];
        node.install_inbound(InboundSa::new(c, transform()).expect("inbound SA"));
        let mut peer = OutboundSa::new(
            sa_config(Direction::Outbound, PEER_ADDR, WAN_ADDR),
            transform(),
        )
        .expect("peer SA");
        let mut buf = HeapBuf::new(128, &udp_packet(REMOTE_HOST, LOCAL_HOST, ip_len), 128);
        peer.encapsulate(&mut buf, &mut |_| {})
            .expect("encapsulate");
        ethernet(WAN_MAC, buf.data())
    } else {
        let mut spd = Spd::new();
        spd.insert(Policy {
            selector: Selector::new(
                IpPrefix::host(LOCAL_HOST.into()),
                IpPrefix::host(REMOTE_HOST.into()),
            ),
            action: Action::Protect(SaRef(0)),
            priority: 100,
        })
        .expect("policy");
        spd.compile();
        node.set_spd(spd.with_flow_cache());
        node.install_outbound(
            SaRef(0),
            OutboundSa::new(
                sa_config(Direction::Outbound, WAN_ADDR, PEER_ADDR),
                transform(),
            )
            .expect("outbound SA"),
        );
        ethernet(LAN_MAC, &udp_packet(LOCAL_HOST, REMOTE_HOST, ip_len))
    };
    (node, frame)
}

/// Puts `frame` into `b` at the default headroom, as a NIC leaves it.
#[inline(never)]
fn reload(b: &mut HeapBuf, frame: &[u8]) {
    let len = b.len();
    let _ = b.trim(len);
    let h = b.headroom();
    if h > HeapBuf::HEADROOM {
        let d = h - HeapBuf::HEADROOM;
        let _ = b.prepend(d);
        let _ = b.trim(d);
    } else if h < HeapBuf::HEADROOM {
        let d = HeapBuf::HEADROOM - h;
        let _ = b.append(d);
        let _ = b.adj(d);
    }
    if let Ok(d) = b.append(frame.len()) {
        d.copy_from_slice(frame);
    }
}

/// One poll of the worker: both ports' bursts, then the output taken and
/// transmitted (here: the buffers return to `free`).
#[inline(never)]
fn poll(
    node: &mut Node<HeapBuf>,
    burst: &mut Vec<HeapBuf>,
    idle: &mut Vec<HeapBuf>,
    out: &mut Output<HeapBuf>,
    free: &mut Vec<HeapBuf>,
) {
    node.rx_burst(0, burst, &mut NoPool);
    node.rx_burst(1, idle, &mut NoPool);
    node.take_output(out);
    for tx in &mut out.tx {
        free.append(tx);
    }
    out.handoffs.clear();
    out.punts.clear();
    out.learned.clear();
    out.events.clear();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some("encrypt") => Case::Encrypt,
        Some("decrypt") => Case::Decrypt,
        Some("reload") => Case::Reload,
        _ => {
            eprintln!("usage: node_burst encrypt|decrypt|reload BURSTS [FRAME]");
            return ExitCode::FAILURE;
        }
    };
    let Some(bursts) = args.get(2).and_then(|n| n.parse::<usize>().ok()) else {
        eprintln!("usage: node_burst encrypt|decrypt|reload BURSTS [FRAME]");
        return ExitCode::FAILURE;
    };
    // 64 up to what the 2048-byte buffers hold with the ESP overhead.
    let frame_len = match args.get(3).map(|n| n.parse::<u16>()) {
        None => 64,
        Some(Ok(n)) if (64..=1800).contains(&n) => n,
        Some(_) => {
            eprintln!("node_burst: FRAME must be 64 to 1800 bytes");
            return ExitCode::FAILURE;
        }
    };
    let (mut node, frame) = setup(mode, frame_len - FRAME_OVERHEAD);
    let mut free: Vec<HeapBuf> = (0..2 * BURST)
        .map(|_| HeapBuf::new(HeapBuf::HEADROOM, &[], 2048 - HeapBuf::HEADROOM))
        .collect();
    let mut burst = Vec::with_capacity(BURST);
    let mut idle = Vec::with_capacity(BURST);
    let mut out = Output::new(node.interfaces().len());
    for _ in 0..bursts {
        for _ in 0..BURST {
            let Some(mut b) = free.pop() else { break };
            reload(&mut b, &frame);
            burst.push(b);
        }
        if mode == Case::Reload {
            free.append(&mut burst);
            continue;
        }
        poll(&mut node, &mut burst, &mut idle, &mut out, &mut free);
    }
    let c = &node.counters;
    let done = c.encapsulated + c.decapsulated;
    println!(
        "{} packets, {} sent, {} encapsulated, {} decapsulated, {} dropped",
        c.rx,
        c.tx,
        c.encapsulated,
        c.decapsulated,
        c.total_drops()
    );
    if mode != Case::Reload && (done != (bursts * BURST) as u64 || c.total_drops() != 0) {
        eprintln!("not every packet went through: {c:?}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
