//! Shared pieces of the fuzz targets: a reader over the fuzzer's bytes, the
//! fixed set of SAs the targets run against, and packet builders.
//!
//! Everything here is deterministic: the same input builds the same SAs and
//! packets, so a crash reproduces from its artifact alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::crypto::{available_backends, new_transform, Algorithm, Backend, EspTransform};
use dataplane::crypto::{Encryption, Integrity, SaKeys};
use dataplane::esp::{
    Direction, InboundSa, IpPrefix, Mode, OutboundSa, SaConfig, Selector, Spi, TunnelEndpoints,
    UdpEncap,
};
use dataplane::wire::{ip::checksum, IpProtocol};

pub use dataplane;

/// Reads fields off the fuzzer's bytes; once they run out every read gives
/// zeros (or an empty slice), so no input is "too short".
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// One SA of the fixed set the targets use.
#[derive(Debug, Clone, Copy)]
pub struct SaSpec {
    /// Algorithm suite.
    pub alg: Algorithm,
    /// Backend wanted; aws-lc when ipsec-mb cannot run it here.
    pub backend: Backend,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Address family of the outer header (and of the packet, in
    /// transport mode).
    pub outer_v4: bool,
    /// Family of the inner packets the valid-packet generators make
    /// (tunnel mode; transport mode uses `outer_v4`).
    pub inner_v4: bool,
    /// UDP encapsulation (RFC 3948) on port 4500.
    pub udp: bool,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Anti-replay window (0 disables it).
    pub replay_window: u32,
    /// Selectors only for host A's /24 (/64) to host B's, UDP to port 53;
    /// otherwise everything of both families.
    pub narrow: bool,
}

const fn alg(encryption: Encryption, integrity: Integrity) -> Algorithm {
    Algorithm {
        encryption,
        integrity,
    }
}

/// The SAs: every encryption transform, tunnel and transport, both
/// families, with and without UDP encapsulation and ESN, a disabled and a
/// minimal replay window, wide and narrow selectors. The NULL ones let the
/// harness forge authenticated packets with its own HMAC.
pub const SAS: [SaSpec; 8] = [
    SaSpec {
        alg: Algorithm::AES_GCM_128,
        backend: Backend::IpsecMb,
        mode: Mode::Tunnel,
        outer_v4: true,
        inner_v4: true,
        udp: true,
        esn: true,
        replay_window: 64,
        narrow: false,
    },
    SaSpec {
        alg: Algorithm::CHACHA20_POLY1305,
        backend: Backend::AwsLc,
        mode: Mode::Tunnel,
        outer_v4: false,
        inner_v4: false,
        udp: false,
        esn: false,
        replay_window: 4096,
        narrow: false,
    },
    SaSpec {
        alg: alg(Encryption::AesCbc128, Integrity::HmacSha256_128),
        backend: Backend::RustCrypto,
        mode: Mode::Transport,
        outer_v4: true,
        inner_v4: true,
        udp: false,
        esn: false,
        replay_window: 64,
        narrow: true,
    },
    SaSpec {
        alg: alg(Encryption::Null, Integrity::HmacSha256_128),
        backend: Backend::AwsLc,
        mode: Mode::Transport,
        outer_v4: false,
        inner_v4: false,
        udp: true,
        esn: true,
        replay_window: 128,
        narrow: false,
    },
    SaSpec {
        alg: alg(Encryption::Null, Integrity::HmacSha512_256),
        backend: Backend::IpsecMb,
        mode: Mode::Tunnel,
        outer_v4: true,
        inner_v4: false,
        udp: false,
        esn: false,
        replay_window: 0,
        narrow: false,
    },
    SaSpec {
        alg: alg(Encryption::Null, Integrity::HmacSha384_192),
        backend: Backend::RustCrypto,
        mode: Mode::Transport,
        outer_v4: true,
        inner_v4: true,
        udp: true,
        esn: false,
        replay_window: 64,
        narrow: false,
    },
    SaSpec {
        alg: alg(Encryption::AesCbc256, Integrity::HmacSha384_192),
        backend: Backend::IpsecMb,
        mode: Mode::Tunnel,
        outer_v4: false,
        inner_v4: true,
        udp: true,
        esn: true,
        replay_window: 0,
        narrow: true,
    },
    SaSpec {
        alg: Algorithm::AES_GCM_256,
        backend: Backend::RustCrypto,
        mode: Mode::Transport,
        outer_v4: false,
        inner_v4: false,
        udp: false,
        esn: true,
        replay_window: 64,
        narrow: false,
    },
];

/// The SPI of `SAS[i]`.
pub fn spi_of(i: usize) -> u32 {
    0x0100_0000 + i as u32
}

/// Keys derived from `seed`, as the unit tests make them.
pub fn keys_for(alg: Algorithm, seed: u8) -> SaKeys {
    let enc: Vec<u8> = (0..alg.encryption.key_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let auth: Vec<u8> = (0..alg.integrity.key_len())
        .map(|i| seed.wrapping_mul(17).wrapping_add(3 * i as u8))
        .collect();
    SaKeys::new(&enc, &auth)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

/// Host A (the sender's side) in the family asked for.
pub fn host_a(v4: bool) -> IpAddr {
    if v4 {
        ip("10.1.0.10")
    } else {
        ip("fd01::10")
    }
}

/// Host B (the receiver's side).
pub fn host_b(v4: bool) -> IpAddr {
    if v4 {
        ip("10.2.0.20")
    } else {
        ip("fd02::20")
    }
}

/// Gateway A (sends).
pub fn gw_a(v4: bool) -> IpAddr {
    if v4 {
        ip("192.0.2.1")
    } else {
        ip("2001:db8::1")
    }
}

/// Gateway B (receives).
pub fn gw_b(v4: bool) -> IpAddr {
    if v4 {
        ip("192.0.2.2")
    } else {
        ip("2001:db8::2")
    }
}

impl SaSpec {
    /// Sender and receiver addresses on the outer header.
    pub fn outer_addrs(&self) -> (IpAddr, IpAddr) {
        match self.mode {
            Mode::Tunnel => (gw_a(self.outer_v4), gw_b(self.outer_v4)),
            Mode::Transport => (host_a(self.outer_v4), host_b(self.outer_v4)),
        }
    }

    /// Family of the packets the SA carries.
    pub fn payload_v4(&self) -> bool {
        match self.mode {
            Mode::Tunnel => self.inner_v4,
            Mode::Transport => self.outer_v4,
        }
    }

    /// The backend actually used on this machine.
    pub fn backend(&self) -> Backend {
        if available_backends(self.alg).contains(&self.backend) {
            self.backend
        } else {
            Backend::AwsLc
        }
    }

    fn selectors(&self) -> Vec<Selector> {
        if self.narrow {
            let v4 = self.payload_v4();
            let len = if v4 { 24 } else { 64 };
            vec![Selector::new(
                IpPrefix::truncating(host_a(v4), len),
                IpPrefix::truncating(host_b(v4), len),
            )
            .with_protocol(IpProtocol::UDP.0)
            .with_dst_ports(53..=53)]
        } else {
            let any4: IpPrefix = "0.0.0.0/0".parse().expect("prefix literal");
            let any6: IpPrefix = "::/0".parse().expect("prefix literal");
            vec![Selector::new(any4, any4), Selector::new(any6, any6)]
        }
    }

    fn config(&self, i: usize, direction: Direction) -> SaConfig {
        let (a, b) = self.outer_addrs();
        let endpoints = match direction {
            Direction::Outbound => TunnelEndpoints {
                local: a,
                remote: b,
            },
            Direction::Inbound => TunnelEndpoints {
                local: b,
                remote: a,
            },
        };
        let spi = Spi::new(spi_of(i)).expect("SPI above the reserved range");
        let mut c = SaConfig::new(spi, direction, self.mode, endpoints);
        c.esn = self.esn;
        c.udp_encap = self.udp.then(UdpEncap::nat_t);
        c.replay_window = self.replay_window;
        c.traffic_selectors = self.selectors();
        c
    }

    /// The sender's SA.
    pub fn outbound(&self, i: usize) -> OutboundSa {
        let t = new_transform(self.backend(), self.alg, &keys_for(self.alg, i as u8))
            .expect("transform");
        OutboundSa::new(self.config(i, Direction::Outbound), t).expect("outbound SA")
    }

    /// The receiver's SA.
    pub fn inbound(&self, i: usize) -> InboundSa {
        let t = new_transform(self.backend(), self.alg, &keys_for(self.alg, i as u8))
            .expect("transform");
        InboundSa::new(self.config(i, Direction::Inbound), t).expect("inbound SA")
    }

    /// A transform with the SA's keys for the harness to seal crafted
    /// payloads with (pure Rust, so independent of the receiver's backend).
    pub fn sealer(&self, i: usize) -> Box<dyn EspTransform> {
        new_transform(Backend::RustCrypto, self.alg, &keys_for(self.alg, i as u8))
            .expect("transform")
    }
}

/// The high half of the sequence number the receiver will infer for
/// `seq_low` (RFC 4303 Appendix A2.2), given its window top and size (a
/// disabled window infers with W = 2^31). `None` where it infers nothing.
pub fn predict_esn_high(top: u64, window: u32, seq_low: u32) -> Option<u32> {
    let w = if window == 0 { 1u32 << 31 } else { window };
    let th = (top >> 32) as u32;
    let tl = top as u32;
    let bl = tl.wrapping_sub(w - 1);
    if tl >= w - 1 {
        if seq_low >= bl {
            Some(th)
        } else {
            th.checked_add(1)
        }
    } else if seq_low >= bl {
        th.checked_sub(1)
    } else {
        Some(th)
    }
}

/// RFC 4303 §2.4 default padding for `payload_len` bytes at `block`
/// alignment (at least 4), then pad length and next header.
pub fn trailer(payload_len: usize, block: usize, next_header: u8) -> Vec<u8> {
    let align = block.max(4);
    let pad = (align - (payload_len + 2) % align) % align;
    let mut t: Vec<u8> = (1..=pad as u8).collect();
    t.push(pad as u8);
    t.push(next_header);
    t
}

/// An IPv4 header (20 bytes plus `options`, a multiple of 4) for a payload
/// of `payload_len` bytes, checksum filled.
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    tos: u8,
    options: &[u8],
    payload_len: usize,
) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | (hl / 4) as u8;
    h[1] = tos;
    h[2..4].copy_from_slice(&((hl + payload_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    h[6] = 0x40;
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h.extend_from_slice(options);
    fix_ipv4_checksum(&mut h);
    h
}

/// Recomputes the header checksum of the IPv4 header at the front of `p`
/// (when it is IPv4 and the IHL fits).
pub fn fix_ipv4_checksum(p: &mut [u8]) {
    let Some(&b0) = p.first() else { return };
    let hl = usize::from(b0 & 0x0f) * 4;
    if b0 >> 4 != 4 || hl < 20 || p.len() < hl {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let c = !checksum::data(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv6 header whose payload (extension headers included) is
/// `payload_len` bytes.
pub fn ipv6_header(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    tclass: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60 | (tclass >> 4);
    h[1] = tclass << 4;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next_header;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

/// An IP packet (either family) carrying `segment` as `protocol`, with a
/// filled IPv4 header checksum.
pub fn ip_packet(src: IpAddr, dst: IpAddr, protocol: u8, tos: u8, segment: &[u8]) -> Vec<u8> {
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_header(s, d, protocol, tos, &[], segment.len()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_header(s, d, protocol, tos, segment.len()),
        _ => panic!("mixed address families"),
    };
    p.extend_from_slice(segment);
    p
}

/// A UDP datagram from `src`:`sport` to `dst`:`dport` with its checksum.
pub fn udp_packet(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut udp = udp_header(sport, dport, payload.len());
    udp.extend_from_slice(payload);
    let c = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::transport_v4(s, d, IpProtocol::UDP, &udp),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::transport_v6(s, d, IpProtocol::UDP, &udp),
        _ => panic!("mixed address families"),
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    ip_packet(src, dst, IpProtocol::UDP.0, tos, &udp)
}

/// A UDP header (checksum zero) for `payload_len` bytes.
pub fn udp_header(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    h
}

/// A global allocator that counts the bytes live and their peak, for the
/// targets that check memory stays bounded. A target installs it with
/// `#[global_allocator] static A: Counting = Counting;`.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

    static LIVE: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);

    /// Forwards to `System`, counting.
    #[derive(Debug)]
    pub struct Counting;

    fn note(delta: isize) {
        let v = LIVE.fetch_add(delta, Relaxed) + delta;
        PEAK.fetch_max(v, Relaxed);
    }

    // SAFETY: every call is forwarded to `System` unchanged; counting
    // touches two atomics and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note(l.size() as isize);
            // SAFETY: the caller's contract for `alloc` is passed on as is.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            note(l.size() as isize);
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            note(-(l.size() as isize));
            // SAFETY: `p` was allocated by `System` with layout `l`.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            note(new as isize - l.size() as isize);
            // SAFETY: `p` was allocated by `System` with layout `l`.
            unsafe { System.realloc(p, l, new) }
        }
    }

    /// Bytes live now.
    pub fn live() -> usize {
        LIVE.load(Relaxed).max(0) as usize
    }

    /// Runs `f`, returning its result and the most bytes it had allocated
    /// at once over what was live before (the targets are single-threaded).
    pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let r = f();
        (r, (PEAK.load(Relaxed) - base).max(0) as usize)
    }
}
