//! Inbound ESP processing: decapsulation (RFC 4303 §3.4).
//!
//! Order, as RFC 4303 §3.4.3 and DPDK's lib/ipsec do it: locate ESP (IP
//! protocol 50, or UDP with RFC 3948 classification), look the SA up by SPI
//! in O(1), check the replay window (which changes nothing), verify the ICV
//! and decrypt, and only then advance the window. After that the trailer is
//! checked (padding, next header) and, in tunnel mode, the inner packet is
//! checked against the SA's traffic selectors (RFC 4301 §5.2 step 4).
//!
//! The packet handed in starts at its (outer) IP header. On success it
//! starts at the inner IP header (tunnel mode) or at the rebuilt IP header
//! (transport mode).

use std::hash::Hasher;
use std::net::IpAddr;

use crate::buf::PacketBuf;
#[cfg(doc)]
use crate::crypto::CryptoBatch;
use crate::crypto::{Algorithm, Backend, BatchKeys, CryptoError, EspTransform};
use crate::wire::esp::EspTrailer;
use crate::wire::{IpProtocol, Ipv4Fixed, Ipv4Packet, Ipv6Packet, UdpEncap, UdpPacket};
use cpu::prefetch::{prefetch, Lines};

use super::counters::{DropReason, SaCounters};
use super::ecn::decap_tos;
use super::outbound::{packet_key, ESP_HEADER_LEN};
use super::replay::ReplayWindow;
use super::sa::{LifetimeState, Mode, SaConfig, SaConfigError, SaEvent, SaHint, Spi};
use super::spi_map::{SpareTable, SpiMap};

const UDP_HEADER_LEN: usize = 8;
const IPV6_HEADER_LEN: usize = 40;

/// Where the ESP header is in a received packet, or what else it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspLocation {
    /// ESP at `esp_offset`; `ip_header_len` bytes of IP header (with IPv6
    /// extension headers) precede it, then a UDP header if `udp`.
    Esp {
        /// Length of the IP header and extension headers.
        ip_header_len: usize,
        /// Offset of the ESP header.
        esp_offset: usize,
        /// UDP-encapsulated (RFC 3948).
        udp: bool,
        /// Offset of the Next Header byte that names ESP or UDP (IPv4: 9).
        nh_field: usize,
        /// Length of the IP packet (trailing link-layer padding excluded).
        ip_len: usize,
    },
    /// An IKE message on the NAT-T port (zero non-ESP marker): punt it to
    /// the control plane.
    Ike,
    /// A NAT keepalive (RFC 3948 §2.3): count and drop.
    NatKeepalive,
    /// Neither ESP nor UDP on the NAT-T port.
    NotEsp,
}

/// Finds the ESP header in an IP packet. `nat_t_port` is the UDP port that
/// carries encapsulated ESP (4500).
pub fn locate_esp(data: &[u8], nat_t_port: u16) -> Result<EspLocation, DropReason> {
    locate(data, nat_t_port, true)
}

/// [`locate_esp`] for a caller that has already verified the IPv4 header
/// checksum (the gateway's `ip_input` does for every packet, before it
/// knows whether the packet is ESP): the same checks but that one, which
/// would otherwise be done twice per packet.
pub fn locate_esp_header_verified(data: &[u8], nat_t_port: u16) -> Result<EspLocation, DropReason> {
    locate(data, nat_t_port, false)
}

#[inline(always)]
fn locate(data: &[u8], nat_t_port: u16, verify: bool) -> Result<EspLocation, DropReason> {
    let (ip_header_len, proto, ip_len, nh_field) = match data.first().map(|b| b >> 4) {
        // The common case, an IPv4 header without options: fixed offsets
        // and a five-word checksum.
        Some(4) if data[0] == 0x45 => {
            let h = Ipv4Fixed::parse(data).ok_or(DropReason::BadHeader)?;
            if verify && !h.checksum_ok() {
                return Err(DropReason::BadHeader);
            }
            if h.is_fragment() {
                return Err(DropReason::Unsupported);
            }
            (20, h.protocol(), h.total_len(), 9)
        }
        Some(4) => {
            let ip = Ipv4Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
            if verify && !ip.verify_checksum() {
                return Err(DropReason::BadHeader);
            }
            if ip.is_fragment() {
                // Reassembly is not done here; ESP fragments are dropped.
                return Err(DropReason::Unsupported);
            }
            (
                usize::from(ip.header_len()),
                ip.protocol(),
                usize::from(ip.total_len()),
                9,
            )
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
            let ext = ip.ext_headers().map_err(|_| DropReason::BadHeader)?;
            if ext.fragment.is_some() {
                return Err(DropReason::Unsupported);
            }
            let nh_field = last_next_header_field(&ip, ext.upper_offset);
            (
                ext.upper_offset,
                ext.upper_protocol,
                IPV6_HEADER_LEN + usize::from(ip.payload_len()),
                nh_field,
            )
        }
        _ => return Err(DropReason::BadHeader),
    };
    let packet = data.get(..ip_len).ok_or(DropReason::BadLength)?;
    match proto {
        IpProtocol::ESP => Ok(EspLocation::Esp {
            ip_header_len,
            esp_offset: ip_header_len,
            udp: false,
            nh_field,
            ip_len,
        }),
        IpProtocol::UDP => {
            let udp = UdpPacket::new_checked(&packet[ip_header_len..])
                .map_err(|_| DropReason::BadLength)?;
            if udp.dst_port() != nat_t_port {
                return Ok(EspLocation::NotEsp);
            }
            match UdpEncap::classify(udp.payload()) {
                UdpEncap::NatKeepalive => Ok(EspLocation::NatKeepalive),
                UdpEncap::Ike(_) => Ok(EspLocation::Ike),
                UdpEncap::Esp(_) => Ok(EspLocation::Esp {
                    ip_header_len,
                    esp_offset: ip_header_len + UDP_HEADER_LEN,
                    udp: true,
                    nh_field,
                    ip_len: ip_header_len + usize::from(udp.len()),
                }),
                UdpEncap::Malformed => Err(DropReason::BadLength),
            }
        }
        _ => Ok(EspLocation::NotEsp),
    }
}

/// Offset of the Next Header byte that names the protocol at `upper`.
fn last_next_header_field<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>, upper: usize) -> usize {
    let payload = ip.payload();
    let mut field = 6;
    let mut off = 0usize;
    let mut nh = ip.next_header();
    while IPV6_HEADER_LEN + off < upper {
        let len = match nh {
            IpProtocol::IPV6_FRAG => 8,
            _ => match payload.get(off + 1) {
                Some(l) => (usize::from(*l) + 1) * 8,
                None => break,
            },
        };
        field = IPV6_HEADER_LEN + off;
        nh = IpProtocol(payload[off]);
        off += len;
    }
    field
}

/// An inbound SA: configuration, transform, replay window, lifetime and
/// counters. Owned by one worker.
///
/// Laid out for the cache (`repr(C)`, as [`OutboundSa`](super::OutboundSa)):
/// what decapsulation reads or writes per packet is in three cache lines
/// ([`InboundSa::hot_lines`]): the first two, and the one where the
/// counters' totals meet the lifetime's running totals; the configuration
/// follows.
#[repr(C, align(64))]
pub struct InboundSa {
    transform: Box<dyn EspTransform>,
    /// Where the transform and key schedule are, for the burst pipeline.
    hint: SaHint,
    /// `config.spi`, `config.esn` and `config.mode`, next to the rest.
    spi: Spi,
    esn: bool,
    mode: Mode,
    iv_len: u8,
    icv_len: u8,
    /// The transform has batch keys (see
    /// [`InboundSaTable::decapsulate_or_defer`]).
    batched: bool,
    /// The cipher's block size minus one (block sizes are powers of two):
    /// the ciphertext length check is a mask, not a division, which cost a
    /// `div` stall on every packet.
    block_mask: u8,
    replay: ReplayWindow,
    /// The IPv4 traffic selectors as masks and ranges, for the per-packet
    /// check of decrypted IPv4 packets.
    v4_selectors: Vec<V4Selector>,
    /// Packets and bytes decrypted, and drops charged to this SA.
    pub counters: SaCounters,
    /// Its running totals first (see [`LifetimeState`]).
    lifetime: LifetimeState,
    config: SaConfig,
}

/// An IPv4 traffic selector reduced to integers.
#[derive(Debug, Clone, Copy)]
struct V4Selector {
    src: u32,
    src_mask: u32,
    dst: u32,
    dst_mask: u32,
    proto: Option<u8>,
    sport: (u16, u16),
    dport: (u16, u16),
    /// Both port ranges are ANY: the only kind of selector a packet that
    /// does not show its ports may match.
    any_ports: bool,
}

impl V4Selector {
    fn compile(sel: &super::spd::Selector) -> Option<V4Selector> {
        let v4 = |p: &super::spd::IpPrefix| match p.addr() {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(p.prefix_len()))
                    .unwrap_or(0);
                Some((u32::from(a) & mask, mask))
            }
            IpAddr::V6(_) => None,
        };
        let (src, src_mask) = v4(&sel.src)?;
        let (dst, dst_mask) = v4(&sel.dst)?;
        Some(V4Selector {
            src,
            src_mask,
            dst,
            dst_mask,
            proto: sel.protocol,
            sport: (*sel.src_ports.start(), *sel.src_ports.end()),
            dport: (*sel.dst_ports.start(), *sel.dst_ports.end()),
            any_ports: super::spd::any_ports(sel),
        })
    }

    #[inline]
    fn matches(&self, src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> bool {
        src & self.src_mask == self.src
            && dst & self.dst_mask == self.dst
            && self.proto.is_none_or(|p| p == proto)
            && (self.sport.0..=self.sport.1).contains(&sport)
            && (self.dport.0..=self.dport.1).contains(&dport)
    }
}

/// RFC 4301 §5.2 step 4 for a decrypted IPv4 packet without options, from
/// fixed offsets; `None` when the packet is not of that shape. A packet of
/// a protocol with ports that does not show them (a non-initial fragment,
/// or one too short) matches only selectors with ANY ports (§7.1): its
/// zeros are not its ports, and matching them would let a peer slip
/// fragments of any port through an SA negotiated for some.
#[inline]
fn v4_selectors_match(sels: &[V4Selector], p: &[u8]) -> Option<bool> {
    let h = Ipv4Fixed::parse(p)?;
    let (src, dst, proto) = (h.src_u32(), h.dst_u32(), h.protocol().0);
    let has_ports = super::spd::FlowKey::proto_has_ports(proto);
    let shown = h.is_first_fragment() && p.len() >= 24;
    let (sport, dport) = if has_ports && shown {
        (
            u16::from_be_bytes([p[20], p[21]]),
            u16::from_be_bytes([p[22], p[23]]),
        )
    } else {
        (0, 0)
    };
    let opaque = has_ports && !shown;
    Some(
        sels.iter()
            .any(|s| (!opaque || s.any_ports) && s.matches(src, dst, proto, sport, dport)),
    )
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &self.config.spi)
            .field("algorithm", &self.transform.algorithm())
            .field("backend", &self.transform.backend())
            .field("replay_top", &self.replay.top())
            .finish()
    }
}

impl InboundSa {
    /// Builds the SA; the configuration is validated first.
    pub fn new(config: SaConfig, transform: Box<dyn EspTransform>) -> Result<Self, SaConfigError> {
        config.validate()?;
        let replay = config.replay()?;
        let v4_selectors = config
            .traffic_selectors
            .iter()
            .filter_map(V4Selector::compile)
            .collect();
        let small = |n: usize| u8::try_from(n).expect("IV, ICV and block lengths are small");
        Ok(Self {
            v4_selectors,
            lifetime: config.lifetime_state(),
            counters: SaCounters::default(),
            iv_len: small(transform.iv_len()),
            icv_len: small(transform.icv_len()),
            batched: transform.batch_keys().is_some(),
            block_mask: {
                let b = transform.block_size().max(1);
                debug_assert!(b.is_power_of_two());
                small(b.next_power_of_two() - 1)
            },
            replay,
            transform,
            hint: SaHint::default(),
            spi: config.spi,
            esn: config.esn,
            mode: config.mode,
            config,
        })
    }

    /// The cache lines of this SA that decapsulation touches per packet.
    pub fn hot_lines(&self) -> Lines {
        use std::mem::{offset_of, size_of};
        let p = std::ptr::from_ref(self).cast::<u8>();
        let totals = offset_of!(InboundSa, counters) + offset_of!(SaCounters, packets);
        Lines::of_bytes(
            p,
            offset_of!(InboundSa, v4_selectors) + size_of::<Vec<V4Selector>>(),
        )
        .with_byte(p, totals)
        .with_byte(p, totals + 2 * size_of::<u64>() - 1)
        .with_byte(p, offset_of!(InboundSa, lifetime))
        .with_byte(
            p,
            offset_of!(InboundSa, lifetime) + LifetimeState::HOT_BYTES - 1,
        )
    }

    /// Burst pipeline: prefetches the hot part of this SA (no field is
    /// read).
    #[inline]
    pub fn prefetch(&self) {
        self.hot_lines().prefetch();
    }

    /// Burst pipeline, once [`Self::prefetch`] has landed: prefetches the
    /// transform object and its key schedule for a packet of `len` bytes
    /// (from the addresses recorded when the SA was put in its table), the
    /// IPv4 selectors and the replay window's current block.
    #[inline]
    pub fn prefetch_rest(&self, len: usize) {
        self.hint.prefetch_crypto(len);
        prefetch(self.v4_selectors.as_ptr());
        self.replay.prefetch();
    }

    /// The cache lines of this SA's own state that decapsulating a packet
    /// of `len` bytes reads ([`Self::prefetch`] and
    /// [`Self::prefetch_rest`]): the hot lines, the transform object, the
    /// key schedule's lines for that length, the first line of the IPv4
    /// selectors and the replay window's current block. For the lab's
    /// report; where the SA lies in memory changes it by a line or two.
    pub fn lines_per_packet(&self, len: usize) -> u32 {
        let t: &dyn EspTransform = &*self.transform;
        let crypto = SaHint::new(
            Lines::NONE,
            Lines::of_bytes(std::ptr::from_ref(t).cast::<u8>(), std::mem::size_of_val(t)),
            t.key_lines(),
            t.block_table(),
        );
        self.hot_lines().count()
            + crypto.line_count(len)
            + u32::from(!self.v4_selectors.is_empty())
            + u32::from(self.replay.is_enabled())
    }

    /// Records where the transform and its key schedule are (see
    /// [`SaHint`]).
    fn record_hint(&mut self) {
        let t: &dyn EspTransform = &*self.transform;
        self.hint = SaHint::new(
            Lines::NONE,
            Lines::of_bytes(std::ptr::from_ref(t).cast::<u8>(), std::mem::size_of_val(t)),
            t.key_lines(),
            t.block_table(),
        );
    }

    /// The configuration.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.transform.algorithm()
    }

    /// The crypto backend in use.
    pub fn backend(&self) -> Backend {
        self.transform.backend()
    }

    /// The highest sequence number accepted so far.
    pub fn replay_top(&self) -> u64 {
        self.replay.top()
    }

    /// Bytes and packets counted against the lifetime.
    pub fn lifetime(&self) -> &LifetimeState {
        &self.lifetime
    }

    /// Marks every sequence number up to `top` as seen: for an SA that is
    /// re-installed mid-life (its window state carried over), so that ESN
    /// inference (RFC 4303 Appendix A2) starts from the right subspace.
    pub fn resume_replay_after(&mut self, top: u64) {
        if top > 0 {
            let _ = self.replay.update(top);
        }
    }
}

/// A hasher for SPIs. SPIs are chosen by us at random (or by an operator),
/// so mixing the 32 bits once is enough; an attacker only looks up, never
/// inserts, so it cannot lengthen probe sequences.
#[derive(Default, Clone, Copy, Debug)]
pub struct SpiHasher(u64);

impl Hasher for SpiHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u8(*b);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, v: u32) {
        // Fibonacci hashing: the high bits are well mixed; fold them down.
        let h = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// The result of a successful decapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated {
    /// The SA that accepted the packet.
    pub spi: Spi,
    /// Length of the resulting IP packet.
    pub len: usize,
}

/// What happened to an inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Decrypted; the buffer now holds the inner (or rebuilt) IP packet.
    Decrypted(Decapsulated),
    /// An IKE message on the NAT-T port: give it to the control plane.
    Punt,
    /// Not ESP at all: the caller handles it (e.g. ordinary traffic).
    NotEsp,
}

/// The inbound SA database of one worker: SAs by SPI, O(1) lookup.
#[derive(Default)]
pub struct InboundSaTable {
    /// Boxed, so that the table grows by moving pointers and an SA
    /// installed or removed by the control thread is never copied or
    /// freed by the worker.
    /// Always `Some` in the map: the `Option` (free, a null niche) gives
    /// the value type a `Default`, so that the control thread can fault in
    /// a spare table's pages by filling it with `None` and clearing it
    /// (see [`SpareTable::prefaulted`]).
    by_spi: SpiMap<Option<Box<InboundSa>>>,
    /// Drops that belong to no SA (unknown SPI, malformed outer headers,
    /// keepalives).
    pub counters: SaCounters,
    /// UDP port of encapsulated ESP.
    nat_t_port: u16,
    /// How many of the SAs batch ([`Self::has_batched`]).
    batched: usize,
}

impl std::fmt::Debug for InboundSaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSaTable")
            .field("sas", &self.by_spi.len())
            .finish()
    }
}

impl InboundSaTable {
    /// An empty table; encapsulated ESP on UDP port 4500.
    pub fn new() -> Self {
        Self {
            by_spi: SpiMap::new(),
            counters: SaCounters::default(),
            nat_t_port: crate::wire::udp_encap::NAT_T_PORT,
            batched: 0,
        }
    }

    /// Installs an SA; replaces (and returns) one with the same SPI.
    pub fn insert(&mut self, sa: impl Into<Box<InboundSa>>) -> Option<Box<InboundSa>> {
        let mut sa = sa.into();
        sa.record_hint();
        self.batched += usize::from(sa.batched);
        let old = self.by_spi.insert(sa.config.spi.get(), Some(sa)).flatten();
        self.batched -= old.as_ref().map_or(0, |o| usize::from(o.batched));
        old
    }

    /// Removes the SA with this SPI.
    pub fn remove(&mut self, spi: Spi) -> Option<Box<InboundSa>> {
        let old = self.by_spi.remove(spi.get()).flatten();
        self.batched -= old.as_ref().map_or(0, |o| usize::from(o.batched));
        old
    }

    /// Whether any SA batches its crypto: while none does, a caller that
    /// batches can decapsulate everything one packet at a time.
    #[inline]
    pub fn has_batched(&self) -> bool {
        self.batched > 0
    }

    /// The SA with this SPI.
    pub fn get(&self, spi: Spi) -> Option<&InboundSa> {
        self.by_spi.get(spi.get())?.as_deref()
    }

    /// Burst pipeline: prefetches the SPI table slot where the lookup of
    /// `spi` starts (see [`SpiMap::prefetch`]).
    #[inline]
    pub fn prefetch_spi(&self, spi: u32) {
        self.by_spi.prefetch(spi);
    }

    /// The SA with this SPI, mutable.
    pub fn get_mut(&mut self, spi: Spi) -> Option<&mut InboundSa> {
        self.by_spi.get_mut(spi.get())?.as_deref_mut()
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.by_spi.len()
    }

    /// Moves a few SAs along while the table grows (once per poll; see
    /// [`SpiMap`]).
    #[inline]
    pub fn step(&mut self) {
        self.by_spi.step();
    }

    /// See [`SpiMap::wants_spare`].
    pub fn wants_spare(&mut self) -> Option<usize> {
        self.by_spi.wants_spare()
    }

    /// See [`SpiMap::give_spare`].
    pub fn give_spare(
        &mut self,
        t: SpareTable<Option<Box<InboundSa>>>,
    ) -> Option<SpareTable<Option<Box<InboundSa>>>> {
        self.by_spi.give_spare(t)
    }

    /// See [`SpiMap::take_retired`].
    pub fn take_retired(&mut self) -> Option<SpareTable<Option<Box<InboundSa>>>> {
        self.by_spi.take_retired()
    }

    /// True while the table still has background work for [`step`](Self::step).
    #[inline]
    pub fn is_stepping(&self) -> bool {
        self.by_spi.is_growing()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_spi.is_empty()
    }

    /// All SAs.
    pub fn iter(&self) -> impl Iterator<Item = &InboundSa> {
        self.by_spi.values().filter_map(|b| b.as_deref())
    }

    /// Decapsulates `pkt` in place. Drops are counted (on the SA when one
    /// was found, on the table otherwise) and returned; events (lifetimes)
    /// go to `on_event` with the SA's SPI.
    pub fn decapsulate<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        on_event: &mut impl FnMut(Spi, SaEvent),
    ) -> Result<InboundOutcome, DropReason> {
        let loc = locate_esp(pkt.data(), self.nat_t_port);
        self.decapsulate_located(pkt, loc, on_event)
    }

    /// [`decapsulate`](Self::decapsulate) for a caller that already ran
    /// [`locate_esp`] on `pkt` (with this table's NAT-T port, 4500), so
    /// the headers are not parsed twice.
    pub fn decapsulate_located<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        loc: Result<EspLocation, DropReason>,
        on_event: &mut impl FnMut(Spi, SaEvent),
    ) -> Result<InboundOutcome, DropReason> {
        let loc = match loc {
            Ok(l) => l,
            Err(r) => {
                self.counters.record_drop(r);
                return Err(r);
            }
        };
        let (ip_header_len, esp_offset, nh_field, ip_len) = match loc {
            EspLocation::Esp {
                ip_header_len,
                esp_offset,
                nh_field,
                ip_len,
                ..
            } => (ip_header_len, esp_offset, nh_field, ip_len),
            EspLocation::Ike => return Ok(InboundOutcome::Punt),
            EspLocation::NotEsp => return Ok(InboundOutcome::NotEsp),
            EspLocation::NatKeepalive => {
                self.counters.record_drop(DropReason::NatKeepalive);
                return Err(DropReason::NatKeepalive);
            }
        };
        let data = pkt.data();
        let Some(esp) = data
            .get(esp_offset..ip_len)
            .filter(|e| e.len() >= ESP_HEADER_LEN)
        else {
            self.counters.record_drop(DropReason::BadLength);
            return Err(DropReason::BadLength);
        };
        let spi = u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]);
        let Some(Some(sa)) = self.by_spi.get_mut(spi) else {
            self.counters.record_drop(DropReason::UnknownSpi);
            return Err(DropReason::UnknownSpi);
        };
        let spi = sa.spi;
        let r = decapsulate_sa(
            sa,
            pkt,
            ip_header_len,
            esp_offset,
            nh_field,
            ip_len,
            &mut |e| on_event(spi, e),
        );
        match r {
            Ok(len) => Ok(InboundOutcome::Decrypted(Decapsulated { spi, len })),
            Err(reason) => {
                sa.counters.record_drop(reason);
                Err(reason)
            }
        }
    }

    /// [`decapsulate_located`](Self::decapsulate_located) for a caller
    /// that batches the crypto of SAs whose transform offers
    /// [`BatchKeys`]: for the packet of such an SA, only the checks that
    /// change nothing are done (lifetime, lengths, replay check) and
    /// [`Deferral::Deferred`] says what to open in the [`CryptoBatch`]
    /// ([`Opening::esp_range`], with [`Self::batch_keys`]); everything
    /// else is decapsulated now, as `decapsulate_located` does. Finish
    /// the deferred packets with [`finish_deferred`](Self::finish_deferred)
    /// in the order they came.
    pub fn decapsulate_or_defer<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        loc: Result<EspLocation, DropReason>,
        on_event: &mut impl FnMut(Spi, SaEvent),
    ) -> Deferral {
        let (spi, at) = match self.esp_of(pkt.data(), loc) {
            Ok(Ok(found)) => found,
            Ok(Err(outcome)) => return Deferral::Done(Ok(outcome)),
            Err(r) => return Deferral::Done(Err(r)),
        };
        let Some(Some(sa)) = self.by_spi.get_mut(spi) else {
            self.counters.record_drop(DropReason::UnknownSpi);
            return Deferral::Done(Err(DropReason::UnknownSpi));
        };
        if !sa.batched {
            return Deferral::Done(decapsulate_counted(sa, pkt, &at, on_event));
        }
        Deferral::Deferred(Opening {
            spi: sa.spi,
            at,
            seq: check_sa(sa, pkt.data(), &at).ok(),
            esn: sa.esn,
        })
    }

    /// The batch keys of the SA with this SPI (see
    /// [`decapsulate_or_defer`](Self::decapsulate_or_defer)).
    #[inline]
    pub fn batch_keys(&self, spi: Spi) -> Option<&BatchKeys> {
        self.get(spi)?.transform.batch_keys()
    }

    /// Finishes a packet that [`decapsulate_or_defer`](Self::decapsulate_or_defer)
    /// deferred, once the batch ran: `opened` is the batch's result for it
    /// (ignored when [`Opening::esp_range`] was `None` and nothing was
    /// queued). The outcome is exactly what
    /// [`decapsulate_located`](Self::decapsulate_located) would have given
    /// at this point, one packet at a time. RFC 4303 §3.4.3 orders the
    /// replay check before the ICV and the window update after it; in a
    /// batch every packet was checked against the window as the previous
    /// burst left it, so the check is done again here, against the window
    /// as the packets finished before this one left it: a second copy of
    /// a sequence number in the same batch is refused as a duplicate
    /// here, as it would have been there. When that second check infers
    /// other ESN high bits than the ones the ICV was computed with, or the
    /// first check refused the packet (the window has moved since, and a
    /// refusal's reason may change with it), the packet, untouched unless
    /// its ICV verified, takes the one-packet path.
    pub fn finish_deferred<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        o: &Opening,
        opened: Result<(), CryptoError>,
        on_event: &mut impl FnMut(Spi, SaEvent),
    ) -> Result<InboundOutcome, DropReason> {
        let Some(Some(sa)) = self.by_spi.get_mut(o.spi.get()) else {
            self.counters.record_drop(DropReason::UnknownSpi);
            return Err(DropReason::UnknownSpi);
        };
        let Some(seq) = o.seq else {
            return decapsulate_counted(sa, pkt, &o.at, on_event);
        };
        let spi = sa.spi;
        let r = match check_sa(sa, pkt.data(), &o.at) {
            Err(reason) => Err(reason),
            Ok(now) if now != seq => {
                if opened.is_ok() {
                    // Verified with other high bits than these: with
                    // these it would not have.
                    Err(DropReason::AuthFailed)
                } else {
                    return decapsulate_counted(sa, pkt, &o.at, on_event);
                }
            }
            Ok(_) => match opened {
                Ok(()) => finish_sa(sa, pkt, &o.at, seq, &mut |e| on_event(spi, e)),
                Err(_) => Err(DropReason::AuthFailed),
            },
        };
        match r {
            Ok(len) => Ok(InboundOutcome::Decrypted(Decapsulated { spi, len })),
            Err(reason) => {
                sa.counters.record_drop(reason);
                Err(reason)
            }
        }
    }

    /// The SPI and offsets of the ESP packet `loc` locates in `data`, or
    /// what the packet is instead (`Ok(Err(..))`), or why it is dropped
    /// (counted on the table).
    #[inline(always)]
    fn esp_of(
        &mut self,
        data: &[u8],
        loc: Result<EspLocation, DropReason>,
    ) -> Result<Result<(u32, Offsets), InboundOutcome>, DropReason> {
        let loc = match loc {
            Ok(l) => l,
            Err(r) => {
                self.counters.record_drop(r);
                return Err(r);
            }
        };
        let (ip_header_len, esp_offset, nh_field, ip_len) = match loc {
            EspLocation::Esp {
                ip_header_len,
                esp_offset,
                nh_field,
                ip_len,
                ..
            } => (ip_header_len, esp_offset, nh_field, ip_len),
            EspLocation::Ike => return Ok(Err(InboundOutcome::Punt)),
            EspLocation::NotEsp => return Ok(Err(InboundOutcome::NotEsp)),
            EspLocation::NatKeepalive => {
                self.counters.record_drop(DropReason::NatKeepalive);
                return Err(DropReason::NatKeepalive);
            }
        };
        let Some(esp) = data
            .get(esp_offset..ip_len)
            .filter(|e| e.len() >= ESP_HEADER_LEN)
        else {
            self.counters.record_drop(DropReason::BadLength);
            return Err(DropReason::BadLength);
        };
        let spi = u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]);
        Ok(Ok((
            spi,
            Offsets {
                ip_header_len,
                esp_offset,
                nh_field,
                ip_len,
            },
        )))
    }
}

/// An inbound packet of a batched SA between
/// [`InboundSaTable::decapsulate_or_defer`] and
/// [`InboundSaTable::finish_deferred`].
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    spi: Spi,
    at: Offsets,
    /// The full sequence number the ICV is verified with; `None` when the
    /// checks before the crypto refused the packet (nothing is queued).
    seq: Option<u64>,
    esn: bool,
}

impl Opening {
    /// The SA's SPI.
    #[inline]
    pub fn spi(&self) -> Spi {
        self.spi
    }

    /// Where the ESP packet (SPI to the end of the ICV) is in the packet:
    /// what the batch opens; `None` when nothing is to be queued.
    #[inline]
    pub fn esp_range(&self) -> Option<std::ops::Range<usize>> {
        self.seq.map(|_| self.at.esp_offset..self.at.ip_len)
    }

    /// With ESN, the high 32 bits of the sequence number the ICV covers
    /// (RFC 4303 §2.2.1).
    #[inline]
    pub fn esn_high(&self) -> Option<u32> {
        self.seq.filter(|_| self.esn).map(|seq| (seq >> 32) as u32)
    }
}

/// What [`InboundSaTable::decapsulate_or_defer`] did with a packet.
#[derive(Debug, Clone, Copy)]
pub enum Deferral {
    /// Decapsulated (or refused, or not ESP) now.
    Done(Result<InboundOutcome, DropReason>),
    /// Its crypto waits for the batch.
    Deferred(Opening),
}

/// One packet through one SA, its drop counted on the SA.
#[inline(always)]
fn decapsulate_counted<B: PacketBuf>(
    sa: &mut InboundSa,
    pkt: &mut B,
    at: &Offsets,
    on_event: &mut impl FnMut(Spi, SaEvent),
) -> Result<InboundOutcome, DropReason> {
    let spi = sa.spi;
    let r = decapsulate_sa(
        sa,
        pkt,
        at.ip_header_len,
        at.esp_offset,
        at.nh_field,
        at.ip_len,
        &mut |e| on_event(spi, e),
    );
    match r {
        Ok(len) => Ok(InboundOutcome::Decrypted(Decapsulated { spi, len })),
        Err(reason) => {
            sa.counters.record_drop(reason);
            Err(reason)
        }
    }
}

/// The one-packet path: [`check_sa`], the open and [`finish_sa`] in one
/// function, written out rather than composed of them (composed, the AEAD
/// path ran 90 more instructions per packet, `scripts/node-instr.sh`);
/// `batch_tests.rs` holds the two paths to the same results.
fn decapsulate_sa<B: PacketBuf>(
    sa: &mut InboundSa,
    pkt: &mut B,
    ip_header_len: usize,
    esp_offset: usize,
    nh_field: usize,
    ip_len: usize,
    on_event: &mut impl FnMut(SaEvent),
) -> Result<usize, DropReason> {
    if sa.lifetime.is_expired() {
        return Err(DropReason::LifetimeExpired);
    }
    let data = pkt.data_mut();
    let esp_len = ip_len - esp_offset;
    let (iv_len, icv_len) = (usize::from(sa.iv_len), usize::from(sa.icv_len));
    let min = ESP_HEADER_LEN + iv_len + 2 + icv_len;
    if esp_len < min {
        return Err(DropReason::BadLength);
    }
    let ct_len = esp_len - ESP_HEADER_LEN - iv_len - icv_len;
    if ct_len & usize::from(sa.block_mask) != 0 {
        return Err(DropReason::BadLength);
    }

    // Replay check first: it changes nothing (RFC 4303 §3.4.3).
    let seq_low = u32::from_be_bytes([
        data[esp_offset + 4],
        data[esp_offset + 5],
        data[esp_offset + 6],
        data[esp_offset + 7],
    ]);
    let seq = if sa.esn {
        sa.replay.check_esn(seq_low)
    } else {
        sa.replay.check(seq_low)
    }
    .map_err(DropReason::from)?;

    // Authenticate and decrypt (RFC 4303 §3.4.4).
    let iv_at = esp_offset + ESP_HEADER_LEN;
    let ct_at = iv_at + iv_len;
    let icv_at = ct_at + ct_len;
    {
        let mut esp_header = [0u8; ESP_HEADER_LEN];
        esp_header.copy_from_slice(&data[esp_offset..iv_at]);
        let (head, rest) = data.split_at_mut(ct_at);
        let (ct, tail) = rest.split_at_mut(ct_len);
        let icv = &tail[..icv_len];
        let esn_high = sa.esn.then_some((seq >> 32) as u32);
        sa.transform
            .open(&esp_header, esn_high, &head[iv_at..ct_at], ct, icv)
            .map_err(|_| DropReason::AuthFailed)?;
    }
    // Only now advance the window; a packet with the same number earlier
    // in this burst makes this one a replay.
    sa.replay.update(seq).map_err(DropReason::from)?;

    let trailer =
        EspTrailer::parse(&data[ct_at..icv_at], true).map_err(|_| DropReason::BadPadding)?;
    let inner_len = trailer.payload_len;
    // Dummy packets (next header 59, RFC 4303 §2.6) are discarded.
    if trailer.next_header == IpProtocol::IPV6_NO_NXT {
        return Err(DropReason::Unsupported);
    }
    let outer_tos = match data[0] >> 4 {
        4 => {
            (Ipv4Packet::new_unchecked(&data[..]).dscp() << 2)
                | Ipv4Packet::new_unchecked(&data[..]).ecn()
        }
        _ => Ipv6Packet::new_unchecked(&data[..]).traffic_class(),
    };
    // Bytes to drop at the end: padding, trailer, ICV and any bytes after
    // the IP packet (link-layer padding).
    let tail_drop = pkt.len() - (ct_at + inner_len);

    let len = match sa.mode {
        Mode::Tunnel => {
            if trailer.next_header != IpProtocol::IPV4 && trailer.next_header != IpProtocol::IPV6 {
                return Err(DropReason::BadHeader);
            }
            pkt.trim(tail_drop).map_err(|_| DropReason::BadLength)?;
            pkt.adj(ct_at).map_err(|_| DropReason::BadLength)?;
            let inner = pkt.data_mut();
            let total = check_inner(inner, trailer.next_header)?;
            if total < inner.len() {
                // Inner packet shorter than the ESP payload (TFC padding).
                let extra = inner.len() - total;
                pkt.trim(extra).map_err(|_| DropReason::BadLength)?;
            }
            // RFC 6040 §4.2: combine the outer ECN into the inner header.
            apply_decap_ecn(pkt.data_mut(), outer_tos)?;
            pkt.len()
        }
        Mode::Transport => {
            pkt.trim(tail_drop).map_err(|_| DropReason::BadLength)?;
            let data = pkt.data_mut();
            let gap = ct_at - ip_header_len;
            data[nh_field] = trailer.next_header.0;
            // Move the IP header (and extension headers) up against the
            // payload, then drop the ESP (and UDP) header and IV in front.
            data.copy_within(0..ip_header_len, gap);
            pkt.adj(gap).map_err(|_| DropReason::BadLength)?;
            let data = pkt.data_mut();
            let total = data.len();
            if data[0] >> 4 == 4 {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
                ip.set_total_len(total as u16);
                ip.fill_checksum();
            } else {
                Ipv6Packet::new_unchecked(&mut data[..])
                    .set_payload_len((total - IPV6_HEADER_LEN) as u16);
            }
            total
        }
    };

    // RFC 4301 §5.2 step 4: the decrypted packet must match the SA's
    // selectors.
    let allowed = match v4_selectors_match(&sa.v4_selectors, pkt.data()) {
        Some(ok) => ok,
        None => sa.config.selectors_match_packet(&packet_key(pkt.data())?),
    };
    if !allowed {
        return Err(DropReason::SelectorMismatch);
    }
    sa.counters.record_packet(len);
    for ev in sa.lifetime.record(len as u64).iter() {
        on_event(ev.into());
    }
    Ok(len)
}

/// Where a packet's headers are (from its [`EspLocation`]).
#[derive(Debug, Clone, Copy)]
struct Offsets {
    ip_header_len: usize,
    esp_offset: usize,
    nh_field: usize,
    ip_len: usize,
}

/// Decapsulation before the crypto, which changes nothing: the lifetime,
/// the lengths, and the replay check (RFC 4303 §3.4.3). Returns the full
/// sequence number (with ESN, the inferred high bits).
#[inline(always)]
fn check_sa(sa: &InboundSa, data: &[u8], at: &Offsets) -> Result<u64, DropReason> {
    let esp_offset = at.esp_offset;
    if sa.lifetime.is_expired() {
        return Err(DropReason::LifetimeExpired);
    }
    let esp_len = at.ip_len - esp_offset;
    let (iv_len, icv_len) = (usize::from(sa.iv_len), usize::from(sa.icv_len));
    let min = ESP_HEADER_LEN + iv_len + 2 + icv_len;
    if esp_len < min {
        return Err(DropReason::BadLength);
    }
    let ct_len = esp_len - ESP_HEADER_LEN - iv_len - icv_len;
    if ct_len & usize::from(sa.block_mask) != 0 {
        return Err(DropReason::BadLength);
    }

    // Replay check first: it changes nothing (RFC 4303 §3.4.3).
    let seq_low = u32::from_be_bytes([
        data[esp_offset + 4],
        data[esp_offset + 5],
        data[esp_offset + 6],
        data[esp_offset + 7],
    ]);
    let seq = if sa.esn {
        sa.replay.check_esn(seq_low)
    } else {
        sa.replay.check(seq_low)
    }
    .map_err(DropReason::from)?;
    Ok(seq)
}

/// Decapsulation after the ICV verified and the payload was decrypted:
/// the replay window moves, then the trailer, the inner packet and the
/// selectors are checked.
#[inline(always)]
fn finish_sa<B: PacketBuf>(
    sa: &mut InboundSa,
    pkt: &mut B,
    at: &Offsets,
    seq: u64,
    on_event: &mut impl FnMut(SaEvent),
) -> Result<usize, DropReason> {
    let Offsets {
        ip_header_len,
        esp_offset,
        nh_field,
        ip_len,
    } = *at;
    let (iv_len, icv_len) = (usize::from(sa.iv_len), usize::from(sa.icv_len));
    let ct_at = esp_offset + ESP_HEADER_LEN + iv_len;
    let icv_at = ip_len - icv_len;
    let data = pkt.data_mut();
    // Only now advance the window; a packet with the same number earlier
    // in this burst makes this one a replay.
    sa.replay.update(seq).map_err(DropReason::from)?;

    let trailer =
        EspTrailer::parse(&data[ct_at..icv_at], true).map_err(|_| DropReason::BadPadding)?;
    let inner_len = trailer.payload_len;
    // Dummy packets (next header 59, RFC 4303 §2.6) are discarded.
    if trailer.next_header == IpProtocol::IPV6_NO_NXT {
        return Err(DropReason::Unsupported);
    }
    let outer_tos = match data[0] >> 4 {
        4 => {
            (Ipv4Packet::new_unchecked(&data[..]).dscp() << 2)
                | Ipv4Packet::new_unchecked(&data[..]).ecn()
        }
        _ => Ipv6Packet::new_unchecked(&data[..]).traffic_class(),
    };
    // Bytes to drop at the end: padding, trailer, ICV and any bytes after
    // the IP packet (link-layer padding).
    let tail_drop = pkt.len() - (ct_at + inner_len);

    let len = match sa.mode {
        Mode::Tunnel => {
            if trailer.next_header != IpProtocol::IPV4 && trailer.next_header != IpProtocol::IPV6 {
                return Err(DropReason::BadHeader);
            }
            pkt.trim(tail_drop).map_err(|_| DropReason::BadLength)?;
            pkt.adj(ct_at).map_err(|_| DropReason::BadLength)?;
            let inner = pkt.data_mut();
            let total = check_inner(inner, trailer.next_header)?;
            if total < inner.len() {
                // Inner packet shorter than the ESP payload (TFC padding).
                let extra = inner.len() - total;
                pkt.trim(extra).map_err(|_| DropReason::BadLength)?;
            }
            // RFC 6040 §4.2: combine the outer ECN into the inner header.
            apply_decap_ecn(pkt.data_mut(), outer_tos)?;
            pkt.len()
        }
        Mode::Transport => {
            pkt.trim(tail_drop).map_err(|_| DropReason::BadLength)?;
            let data = pkt.data_mut();
            let gap = ct_at - ip_header_len;
            data[nh_field] = trailer.next_header.0;
            // Move the IP header (and extension headers) up against the
            // payload, then drop the ESP (and UDP) header and IV in front.
            data.copy_within(0..ip_header_len, gap);
            pkt.adj(gap).map_err(|_| DropReason::BadLength)?;
            let data = pkt.data_mut();
            let total = data.len();
            if data[0] >> 4 == 4 {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
                ip.set_total_len(total as u16);
                ip.fill_checksum();
            } else {
                Ipv6Packet::new_unchecked(&mut data[..])
                    .set_payload_len((total - IPV6_HEADER_LEN) as u16);
            }
            total
        }
    };

    // RFC 4301 §5.2 step 4: the decrypted packet must match the SA's
    // selectors.
    let allowed = match v4_selectors_match(&sa.v4_selectors, pkt.data()) {
        Some(ok) => ok,
        None => sa.config.selectors_match_packet(&packet_key(pkt.data())?),
    };
    if !allowed {
        return Err(DropReason::SelectorMismatch);
    }
    sa.counters.record_packet(len);
    for ev in sa.lifetime.record(len as u64).iter() {
        on_event(ev.into());
    }
    Ok(len)
}

/// Checks the inner IP header after tunnel-mode decapsulation; returns its
/// total length.
fn check_inner(inner: &[u8], next_header: IpProtocol) -> Result<usize, DropReason> {
    match next_header {
        IpProtocol::IPV4 if inner.first() == Some(&0x45) => match Ipv4Fixed::parse(inner) {
            Some(h) if h.checksum_ok() => Ok(h.total_len()),
            _ => Err(DropReason::BadHeader),
        },
        IpProtocol::IPV4 => {
            let ip = Ipv4Packet::new_checked(inner).map_err(|_| DropReason::BadHeader)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadHeader);
            }
            Ok(usize::from(ip.total_len()))
        }
        _ => {
            let ip = Ipv6Packet::new_checked(inner).map_err(|_| DropReason::BadHeader)?;
            Ok(IPV6_HEADER_LEN + usize::from(ip.payload_len()))
        }
    }
}

fn apply_decap_ecn(inner: &mut [u8], outer_tos: u8) -> Result<(), DropReason> {
    match inner[0] >> 4 {
        4 => {
            let mut ip = Ipv4Packet::new_unchecked(inner);
            let tos = (ip.dscp() << 2) | ip.ecn();
            let new = decap_tos(tos, outer_tos).map_err(DropReason::from)?;
            if new != tos {
                ip.rewrite_dscp_ecn(new >> 2, new & 3);
            }
        }
        _ => {
            let mut ip = Ipv6Packet::new_unchecked(inner);
            let tos = ip.traffic_class();
            let new = decap_tos(tos, outer_tos).map_err(DropReason::from)?;
            ip.set_traffic_class(new);
        }
    }
    Ok(())
}

/// The IP address family of a packet, for callers that route the result.
pub fn packet_dst(data: &[u8]) -> Option<IpAddr> {
    match data.first()? >> 4 {
        4 => Ipv4Packet::new_checked(data)
            .ok()
            .map(|p| IpAddr::V4(p.dst_addr())),
        6 => Ipv6Packet::new_checked(data)
            .ok()
            .map(|p| IpAddr::V6(p.dst_addr())),
        _ => None,
    }
}
