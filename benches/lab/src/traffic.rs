//! The lab's addressing plan, its SAs and the pcaps a case replays.
//!
//! Addresses come from the ranges set aside for benchmarking (RFC 2544
//! Appendix C.2.2, 198.18.0.0/15) and documentation (RFC 5737): they only
//! ever exist inside DPDK's `net_pcap` and `net_null` devices.
//!
//! Flow `i` (one per SA) runs between local host `L(i)` = 198.18.0.(1 +
//! i / 65536) and remote host `R(i)` = 198.19.(i / 256 % 256).(i % 256);
//! SA `i` has SPI `0x1000 + i` and its policy selects exactly that /32
//! pair, so with N SAs the SPD picks a different SA for each flow. The
//! tunnel runs between our WAN address 192.0.2.1 and the peer 192.0.2.2.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{default_backend, new_transform, SaKeys};
use dataplane::esp::{
    Action, Direction as SaDirection, InboundSa, IpPrefix, Mode, OutboundSa, Policy, SaConfig,
    SaRef, Selector, Spd, Spi, TunnelEndpoints, UdpEncap,
};

use super::pcap::PcapWriter;
use super::spec::{CaseSpec, Direction};

/// Our MAC on the LAN interface.
pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Our MAC on the WAN interface.
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The MAC of every host and of the peer.
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// Our WAN address (/24).
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The peer gateway.
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Our LAN address (/16: the local hosts are on link).
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
/// MTU of both interfaces: large enough that a 1518-byte frame plus ESP
/// overhead leaves without PMTU errors (the lab measures crypto and
/// forwarding, not fragmentation).
pub const MTU: u16 = 9000;
/// The smallest number of frames in a pcap (more when there are more SAs:
/// one frame per SA at least).
pub const MIN_FRAMES: usize = 1200;
/// First SPI.
pub const SPI_BASE: u32 = 0x1000;

/// Local host of flow `i`.
pub fn local_host(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1 + (i >> 16) as u8)
}

/// Remote host of flow `i`.
pub fn remote_host(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)
}

/// Distinct local hosts for `sa_count` flows.
pub fn local_hosts(sa_count: u32) -> u32 {
    sa_count.saturating_sub(1) / 65536 + 1
}

/// Frames in the pcap of a case: at least one per SA and at least the
/// SA-count series' `scale_frames`, a whole number of IMIX periods.
pub fn frame_count(spec: &CaseSpec) -> usize {
    let n = (spec.sa_count as usize)
        .max(MIN_FRAMES)
        .max(spec.scale_frames as usize);
    let p = spec.frame.period();
    n.div_ceil(p) * p
}

/// Keys of SA `i` (fixed, derived from the index: a benchmark, not a
/// secret).
pub(crate) fn keys(spec: &CaseSpec, i: u32) -> SaKeys {
    let alg = spec.algorithm.algorithm();
    let bytes = |len: usize, salt: u32| -> Vec<u8> {
        (0..len)
            .map(|k| {
                (k as u32)
                    .wrapping_mul(31)
                    .wrapping_add(i.wrapping_mul(7) ^ salt) as u8
            })
            .collect()
    };
    SaKeys::new(
        &bytes(alg.encryption.key_len(), 0x5a),
        &bytes(alg.integrity.key_len(), 0xa5),
    )
}

fn endpoints(local: Ipv4Addr, remote: Ipv4Addr) -> TunnelEndpoints {
    TunnelEndpoints {
        local: IpAddr::V4(local),
        remote: IpAddr::V4(remote),
    }
}

/// SPI of SA `i` (both directions).
pub fn spi(i: u32) -> Result<Spi, Box<dyn std::error::Error + Send + Sync>> {
    Spi::new(SPI_BASE + i).map_err(|e| format!("SPI: {e:?}").into())
}

fn outbound_sa(
    spec: &CaseSpec,
    i: u32,
    local: Ipv4Addr,
    remote: Ipv4Addr,
) -> Result<OutboundSa, Box<dyn std::error::Error + Send + Sync>> {
    let alg = spec.algorithm.algorithm();
    let mut config = SaConfig::new(
        spi(i)?,
        SaDirection::Outbound,
        Mode::Tunnel,
        endpoints(local, remote),
    );
    config.udp_encap = spec.udp_encap.then(UdpEncap::nat_t);
    let t = new_transform(default_backend(alg), alg, &keys(spec, i))?;
    Ok(OutboundSa::new(config, t)?)
}

/// The gateway's outbound SA `i` (encrypt cases).
pub fn gateway_outbound(
    spec: &CaseSpec,
    i: u32,
) -> Result<OutboundSa, Box<dyn std::error::Error + Send + Sync>> {
    outbound_sa(spec, i, WAN_ADDR, PEER_ADDR)
}

/// The peer's outbound SA `i`: what encrypts the decrypt cases' input.
pub fn peer_outbound(
    spec: &CaseSpec,
    i: u32,
) -> Result<OutboundSa, Box<dyn std::error::Error + Send + Sync>> {
    outbound_sa(spec, i, PEER_ADDR, WAN_ADDR)
}

/// The gateway's inbound SA `i` (decrypt cases). The anti-replay window is
/// off: the pcap replays the same sequence numbers in a loop.
pub fn gateway_inbound(
    spec: &CaseSpec,
    i: u32,
) -> Result<InboundSa, Box<dyn std::error::Error + Send + Sync>> {
    let alg = spec.algorithm.algorithm();
    let mut config = SaConfig::new(
        spi(i)?,
        SaDirection::Inbound,
        Mode::Tunnel,
        endpoints(WAN_ADDR, PEER_ADDR),
    );
    config.udp_encap = spec.udp_encap.then(UdpEncap::nat_t);
    config.replay_window = 0;
    config.traffic_selectors = vec![Selector::new(
        IpPrefix::host(IpAddr::V4(remote_host(i))),
        IpPrefix::host(IpAddr::V4(local_host(i))),
    )];
    let t = new_transform(default_backend(alg), alg, &keys(spec, i))?;
    Ok(InboundSa::new(config, t)?)
}

/// The outbound SPD: policy `i` protects L(i) → R(i) with SA slot `i`.
pub fn outbound_spd(sa_count: u32) -> Result<Spd, Box<dyn std::error::Error + Send + Sync>> {
    let mut spd = Spd::new();
    for i in 0..sa_count {
        spd.insert(Policy {
            selector: Selector::new(
                IpPrefix::host(IpAddr::V4(local_host(i))),
                IpPrefix::host(IpAddr::V4(remote_host(i))),
            ),
            action: Action::Protect(SaRef(i)),
            priority: 100,
        })?;
    }
    spd.compile();
    Ok(spd)
}

/// The RFC 1071 Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP/IPv4 packet of `ip_len` bytes from `src` to `dst`.
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, ip_len: u16, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; usize::from(ip_len)];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&ip_len.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    // UDP 1024 -> 9 (discard), no checksum.
    p[20..22].copy_from_slice(&1024u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&(ip_len - 20).to_be_bytes());
    for (k, b) in p[28..].iter_mut().enumerate() {
        *b = k as u8;
    }
    p
}

/// An Ethernet II frame carrying IPv4 `ip`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// What a generated pcap holds.
#[derive(Debug, Clone, Copy)]
pub struct PcapInfo {
    /// Frames in the file.
    pub frames: usize,
    /// Sum of the plaintext IP packet lengths of all frames.
    pub inner_ip_bytes: u64,
}

/// Writes the pcap a case replays: plaintext frames to our LAN MAC for
/// encrypt cases; for decrypt cases the same flows encrypted by Espresso's
/// own ESP engine, as the peer would send them, to our WAN MAC.
pub fn write_pcap(
    spec: &CaseSpec,
    path: &Path,
) -> Result<PcapInfo, Box<dyn std::error::Error + Send + Sync>> {
    let frames = frame_count(spec);
    let mut w = PcapWriter::create(path)?;
    let mut inner_ip_bytes = 0u64;
    // The peer's outbound SAs, built lazily per flow (decrypt only).
    let mut peer: Vec<Option<OutboundSa>> = Vec::new();
    if spec.direction == Direction::Decrypt {
        peer.resize_with(spec.sa_count as usize, || None);
    }
    for j in 0..frames {
        let i = (j % spec.sa_count as usize) as u32;
        let ip_len = spec.frame.size_of(j) - 18;
        inner_ip_bytes += u64::from(ip_len);
        let frame = match spec.direction {
            Direction::Encrypt => ethernet(
                LAN_MAC,
                HOST_MAC,
                &udp_packet(local_host(i), remote_host(i), ip_len, j as u16),
            ),
            Direction::Decrypt => {
                let slot = &mut peer[i as usize];
                if slot.is_none() {
                    *slot = Some(outbound_sa(spec, i, PEER_ADDR, WAN_ADDR)?);
                }
                let sa = slot.as_mut().expect("just set");
                let inner = udp_packet(remote_host(i), local_host(i), ip_len, j as u16);
                let mut buf = HeapBuf::new(128, &inner, 128);
                sa.encapsulate(&mut buf, &mut |_| {})
                    .map_err(|r| format!("encapsulating the decrypt pcap: {r:?}"))?;
                ethernet(WAN_MAC, HOST_MAC, buf.data())
            }
        };
        w.write(&frame)?;
    }
    w.finish()?;
    Ok(PcapInfo {
        frames,
        inner_ip_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BenchAlgorithm, FrameSize};

    #[test]
    fn flows_are_distinct_per_sa() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            assert!(seen.insert((local_host(i), remote_host(i))));
        }
        assert_eq!(local_hosts(100_000), 2);
        assert_eq!(local_hosts(65_536), 1);
    }

    #[test]
    fn udp_packet_has_a_valid_header_checksum() {
        let p = udp_packet(local_host(0), remote_host(5), 46, 7);
        assert_eq!(p.len(), 46);
        assert_eq!(checksum(&p[..20]), 0);
    }

    #[test]
    fn decrypt_pcap_decapsulates_with_the_gateway_sa() {
        let spec = CaseSpec {
            direction: Direction::Decrypt,
            algorithm: BenchAlgorithm::ChaCha20Poly1305,
            frame: FrameSize::Imix,
            udp_encap: true,
            sa_count: 3,
            scale_frames: 0,
        };
        let dir = std::env::temp_dir().join(format!("espresso-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let info = write_pcap(&spec, &path).unwrap();
        assert_eq!(info.frames, MIN_FRAMES);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Decapsulate the first three frames (one per SA) with the
        // gateway's inbound SAs.
        let mut engine = dataplane::esp::EspEngine::new();
        for i in 0..3 {
            engine.install_inbound(gateway_inbound(&spec, i).unwrap());
        }
        let mut off = 24;
        for j in 0..3 {
            let len = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
            let frame = &bytes[off + 16..off + 16 + len];
            assert_eq!(&frame[..6], &WAN_MAC);
            let mut buf = HeapBuf::new(0, &frame[14..], 0);
            let loc = dataplane::esp::locate_esp(dataplane::buf::PacketBuf::data(&buf), 4500);
            let r = engine.decapsulate(&mut buf, loc, &mut |_| {});
            assert!(
                matches!(r, Ok(dataplane::esp::InboundOutcome::Decrypted(_))),
                "{r:?}"
            );
            assert_eq!(
                usize::from(spec.frame.size_of(j)) - 18,
                buf.data().len(),
                "inner length"
            );
            off += 16 + len;
        }
    }
}
