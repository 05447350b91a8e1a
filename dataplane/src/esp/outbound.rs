//! Outbound ESP processing: encapsulation (RFC 4303 §3.1, §3.3).
//!
//! The packet handed in starts at its IP header (the worker has removed the
//! link-layer header). On success it starts at the outer IP header and is
//! ready to route; on failure it is unchanged or half-built and must be
//! dropped with the returned reason.
//!
//! Tunnel mode builds a new outer IPv4 or IPv6 header (any mix of inner and
//! outer families). Transport mode inserts ESP after the IP header (and, for
//! IPv6, after the Hop-by-Hop, Routing, Fragment and Destination Options
//! headers, RFC 4303 §3.1.1). With UDP encapsulation (RFC 3948 §2.1) a UDP
//! header sits between the IP and ESP headers.

use std::net::{IpAddr, Ipv6Addr};

use crate::buf::PacketBuf;
#[cfg(doc)]
use crate::crypto::CryptoBatch;
use crate::crypto::{Algorithm, Backend, BatchKeys, CryptoError, EspTransform};
use crate::wire::ip::checksum;
use crate::wire::{IpProtocol, Ipv4Fixed, Ipv4Packet, Ipv6Packet, UdpPacket};
use cpu::prefetch::Lines;

use super::counters::{DropReason, SaCounters};
use super::ecn::{ecn_encapsulate, DfPolicy, DscpPolicy, Ecn};
use super::sa::{LifetimeState, Mode, SaConfig, SaConfigError, SaEvent, SaHint, SeqCounter, Spi};
use super::spd::FlowKey;

/// Size of an ESP header (SPI + sequence number).
pub const ESP_HEADER_LEN: usize = 8;
const UDP_HEADER_LEN: usize = 8;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// An outbound SA: configuration, transform, sequence counter, lifetime
/// and counters. Owned by one worker (one writer per sequence counter).
///
/// Laid out for the cache (`repr(C)`): everything encapsulation reads or
/// writes per packet (the transform pointer, the sequence counter, the
/// per-SA copies of the configuration it needs, the outer-header template,
/// the packet and byte counters and the lifetime's running totals) sits in
/// three cache lines ([`OutboundSa::hot_lines`]): the first two, and the
/// one where the counters' totals (after their drop counters) meet the
/// lifetime state (whose limits come last); the configuration follows.
/// With 100,000 SAs every packet's SA is a cache miss, and the burst
/// pipeline prefetches those three lines instead of the nine the SA spans.
#[repr(C, align(64))]
pub struct OutboundSa {
    transform: Box<dyn EspTransform>,
    seq: SeqCounter,
    /// IPv4 outer: the one's complement sum of the header words that never
    /// change (TTL/protocol and the addresses).
    v4_partial: u64,
    ident: u16,
    iv_len: u8,
    icv_len: u8,
    /// The transform has batch keys ([`OutboundSa::batch_keys`]): read
    /// per packet without calling the transform.
    batched: bool,
    block: u8,
    outer_header_len: u8,
    /// `config.spi`, `config.mode`, ...: the configuration the fast path
    /// reads, copied next to the rest of the hot fields.
    hot: HotConfig,
    /// Tunnel mode: the outer IP (and UDP) header with every per-SA field
    /// filled in, copied in front of each packet and patched (length, id,
    /// TOS, DF, checksum), as DPDK's lib/ipsec does.
    template: [u8; IPV6_HEADER_LEN + UDP_HEADER_LEN],
    /// Packets and bytes protected, and drops charged to this SA.
    pub counters: SaCounters,
    /// Its running totals first (see [`LifetimeState`]).
    lifetime: LifetimeState,
    config: SaConfig,
}

/// The fields of [`SaConfig`] that encapsulation reads per packet.
#[derive(Clone, Copy)]
struct HotConfig {
    spi: Spi,
    mode: Mode,
    outer_v4: bool,
    udp_encap: bool,
    esn: bool,
    dscp: DscpPolicy,
    df: DfPolicy,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &self.config.spi)
            .field("algorithm", &self.transform.algorithm())
            .field("backend", &self.transform.backend())
            .field("seq", &self.seq.last())
            .finish()
    }
}

impl OutboundSa {
    /// Builds the SA; the configuration is validated first.
    pub fn new(config: SaConfig, transform: Box<dyn EspTransform>) -> Result<Self, SaConfigError> {
        config.validate()?;
        let outer_header_len = match config.mode {
            Mode::Tunnel if config.endpoints.is_ipv4() => IPV4_HEADER_LEN,
            Mode::Tunnel => IPV6_HEADER_LEN,
            Mode::Transport => 0,
        } + if config.udp_encap.is_some() {
            UDP_HEADER_LEN
        } else {
            0
        };
        let (template, v4_partial) = outer_template(&config);
        let small = |n: usize| u8::try_from(n).expect("IV, ICV and outer header lengths are small");
        Ok(Self {
            seq: config.seq_counter(),
            lifetime: config.lifetime_state(),
            counters: SaCounters::default(),
            iv_len: small(transform.iv_len()),
            icv_len: small(transform.icv_len()),
            batched: transform.batch_keys().is_some(),
            // Alignment: 4 or the cipher's block size (a power of two).
            block: transform.block_size().max(4).next_power_of_two() as u8,
            outer_header_len: small(outer_header_len),
            hot: HotConfig {
                spi: config.spi,
                mode: config.mode,
                outer_v4: config.endpoints.is_ipv4(),
                udp_encap: config.udp_encap.is_some(),
                esn: config.esn,
                dscp: config.dscp,
                df: config.df,
            },
            ident: 0,
            template,
            v4_partial,
            transform,
            config,
        })
    }

    /// The cache lines of this SA that encapsulation touches per packet.
    pub fn hot_lines(&self) -> Lines {
        use std::mem::{offset_of, size_of};
        let p = std::ptr::from_ref(self).cast::<u8>();
        let totals = offset_of!(OutboundSa, counters) + offset_of!(SaCounters, packets);
        Lines::of_bytes(
            p,
            offset_of!(OutboundSa, template) + IPV6_HEADER_LEN + UDP_HEADER_LEN,
        )
        .with_byte(p, totals)
        .with_byte(p, totals + 2 * size_of::<u64>() - 1)
        .with_byte(p, offset_of!(OutboundSa, lifetime))
        .with_byte(
            p,
            offset_of!(OutboundSa, lifetime) + LifetimeState::HOT_BYTES - 1,
        )
    }

    /// Where this SA's hot data is (for a boxed SA: the address must not
    /// change afterwards).
    pub fn prefetch_hint(&self) -> SaHint {
        let t: &dyn EspTransform = &*self.transform;
        SaHint::new(
            self.hot_lines(),
            Lines::of_bytes(std::ptr::from_ref(t).cast::<u8>(), std::mem::size_of_val(t)),
            t.key_lines(),
            t.block_table(),
        )
    }

    /// The cache lines of this SA's own state that encapsulating a packet
    /// of `len` bytes reads: what [`Self::prefetch_hint`] names for that
    /// length (hot lines, transform object, key schedule). For the lab's
    /// report; where the SA lies in memory changes it by a line or two.
    pub fn lines_per_packet(&self, len: usize) -> u32 {
        self.prefetch_hint().line_count(len)
    }

    /// The configuration.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The SPI, from the hot lines: the per-packet path names the SA in
    /// its events with it, and `config` is cold (at 100,000 SAs reading
    /// `config().spi` there was a cache miss on every packet, 19 % of the
    /// encrypting worker's samples).
    #[inline]
    pub fn spi(&self) -> Spi {
        self.hot.spi
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.transform.algorithm()
    }

    /// The crypto backend in use.
    pub fn backend(&self) -> Backend {
        self.transform.backend()
    }

    /// The last sequence number sent.
    pub fn last_seq(&self) -> u64 {
        self.seq.last()
    }

    /// Continues numbering after `last` (for an SA re-installed mid-life,
    /// and to test the end of the sequence space).
    pub fn resume_seq_after(&mut self, last: u64) {
        self.seq = self.config.seq_counter();
        self.seq.skip_to(last);
    }

    /// Whether the SA may still send (hard lifetime and sequence space).
    pub fn is_usable(&self) -> bool {
        !self.lifetime.is_expired() && !self.seq.is_exhausted()
    }

    /// Bytes and packets counted against the lifetime.
    pub fn lifetime(&self) -> &LifetimeState {
        &self.lifetime
    }

    /// The largest number of bytes encapsulation adds to a packet of
    /// `inner_len` bytes (for path-MTU checks). In transport mode the IP
    /// header is reused, so only ESP, IV, padding, trailer and ICV count.
    pub fn overhead(&self, inner_len: usize) -> usize {
        let pad = match self.hot.mode {
            // `block` is a power of two of at least 4 (see `new`), so the
            // padding is a mask, not the division of the general formula.
            Mode::Tunnel => {
                let align = usize::from(self.block);
                (align - ((inner_len + 2) & (align - 1))) & (align - 1)
            }
            // The IP header length is not known here: the most padding
            // can need.
            Mode::Transport => usize::from(self.block) - 1,
        };
        usize::from(self.outer_header_len)
            + ESP_HEADER_LEN
            + usize::from(self.iv_len)
            + pad
            + 2
            + usize::from(self.icv_len)
    }

    /// Encapsulates `pkt` (an IP packet) in place. Events (near sequence
    /// overflow, lifetimes) are passed to `on_event`.
    pub fn encapsulate<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        on_event: &mut impl FnMut(SaEvent),
    ) -> Result<(), DropReason> {
        let r = self.encapsulate_inner(pkt, on_event);
        if let Err(reason) = r {
            self.counters.record_drop(reason);
        }
        r
    }

    /// The keys to seal this SA's packets in a [`CryptoBatch`], when its
    /// transform is faster that way (see [`EspTransform::batch_keys`]).
    #[inline]
    pub fn batch_keys(&self) -> Option<&BatchKeys> {
        self.transform.batch_keys()
    }

    /// Whether [`Self::batch_keys`] is `Some`, without asking the
    /// transform (a field in the SA's hot lines).
    #[inline]
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    /// [`encapsulate`](Self::encapsulate) up to the crypto, for a packet
    /// to be sealed in a [`CryptoBatch`] with [`Self::batch_keys`]: the
    /// packet is laid out (ESP header, IV, padding, room for the ICV) and
    /// counted; seal [`Sealing::esp_range`] of it, then call
    /// [`finish_batched`](Self::finish_batched). Packets of one SA must be
    /// finished in the order they were prepared. A drop is counted.
    pub fn prepare_batched<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        on_event: &mut impl FnMut(SaEvent),
    ) -> Result<Sealing, DropReason> {
        let r = self.prepare(pkt, on_event);
        if let Err(reason) = r {
            self.counters.record_drop(reason);
        }
        r
    }

    /// The rest of [`encapsulate`](Self::encapsulate) once the batch has
    /// sealed the packet (`sealed` is its result): the outer headers. A
    /// drop is counted.
    pub fn finish_batched<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        sealing: &Sealing,
        sealed: Result<(), CryptoError>,
    ) -> Result<(), DropReason> {
        match sealed {
            Ok(()) => {
                self.finish(pkt, sealing);
                Ok(())
            }
            Err(e) => {
                let reason = seal_error(e);
                self.counters.record_drop(reason);
                Err(reason)
            }
        }
    }

    /// The one-packet path: [`Self::prepare`], the seal and
    /// [`Self::finish`] in one function, written out rather than composed
    /// of them (composed, the AEAD path ran 84 more instructions per
    /// packet, `scripts/node-instr.sh`); `tests.rs` and `batch_tests.rs`
    /// hold the two paths to the same bytes.
    fn encapsulate_inner<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        on_event: &mut impl FnMut(SaEvent),
    ) -> Result<(), DropReason> {
        if self.lifetime.is_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        let inner = InnerInfo::parse(pkt.data())?;
        // Ethernet padding of short frames and any other trailing bytes.
        if pkt.len() > inner.total_len {
            pkt.trim(pkt.len() - inner.total_len)
                .map_err(|_| DropReason::BadLength)?;
        }

        // What gets encrypted: the whole packet (tunnel) or what follows
        // the IP header and the extension headers before ESP (transport).
        let (keep, next_header) = match self.hot.mode {
            Mode::Tunnel => (
                0,
                if inner.v4 {
                    IpProtocol::IPV4
                } else {
                    IpProtocol::IPV6
                },
            ),
            Mode::Transport => {
                if inner.v4 != self.hot.outer_v4 {
                    return Err(DropReason::Unsupported);
                }
                // RFC 4303 §3.3.5: "transport mode ESP is applied only to
                // whole IP datagrams (not to IP fragments)".
                if inner.fragment {
                    return Err(DropReason::Unsupported);
                }
                (inner.esp_offset, inner.upper_protocol)
            }
        };
        let payload_len = inner.total_len - keep;
        // RFC 4303 §2.4: payload, padding, pad length and next header end on
        // a multiple of the (power-of-two) alignment.
        let align = usize::from(self.block);
        let pad = (align - ((payload_len + 2) & (align - 1))) & (align - 1);
        let esp_len = ESP_HEADER_LEN
            + usize::from(self.iv_len)
            + payload_len
            + pad
            + 2
            + usize::from(self.icv_len);
        let front = usize::from(self.outer_header_len) + ESP_HEADER_LEN + usize::from(self.iv_len);
        let udp_len = esp_len + UDP_HEADER_LEN;
        let outer_total = keep + usize::from(self.outer_header_len) + esp_len;
        let outer_v4 = match self.hot.mode {
            Mode::Tunnel => self.hot.outer_v4,
            Mode::Transport => inner.v4,
        };
        if outer_total > usize::from(u16::MAX) + if outer_v4 { 0 } else { IPV6_HEADER_LEN } {
            return Err(DropReason::BadLength);
        }
        if pkt.headroom() < front || pkt.tailroom() < pad + 2 + usize::from(self.icv_len) {
            return Err(DropReason::BadLength);
        }

        let next = match self.seq.allocate() {
            Ok(n) => n,
            Err(e) => {
                if let Some(ev) = e.event {
                    on_event(ev);
                }
                return Err(DropReason::SeqOverflow);
            }
        };
        if let Some(ev) = next.event {
            on_event(ev);
        }
        let seq = next.seq;

        // Trailer: padding 1, 2, 3, ... (RFC 4303 §2.4), pad length, next header.
        {
            let tail = pkt
                .append(pad + 2 + usize::from(self.icv_len))
                .map_err(|_| DropReason::BadLength)?;
            for (i, b) in tail[..pad].iter_mut().enumerate() {
                *b = (i + 1) as u8;
            }
            tail[pad] = pad as u8;
            tail[pad + 1] = next_header.0;
        }
        pkt.prepend(front).map_err(|_| DropReason::BadLength)?;
        let data = pkt.data_mut();
        if keep > 0 {
            // Transport mode: move the IP header (and extension headers) to
            // the new front; ESP goes where it was.
            data.copy_within(front..front + keep, 0);
        }

        // ESP header and IV.
        let esp_at = keep + usize::from(self.outer_header_len);
        let iv_at = esp_at + ESP_HEADER_LEN;
        let payload_at = iv_at + usize::from(self.iv_len);
        let icv_at = data.len() - usize::from(self.icv_len);
        // Built in a register and stored once: writing SPI and sequence
        // separately and reading the eight bytes back for the AAD stalled
        // store forwarding on every packet.
        let esp_header =
            ((u64::from(self.hot.spi.get()) << 32) | u64::from(seq as u32)).to_be_bytes();
        data[esp_at..esp_at + ESP_HEADER_LEN].copy_from_slice(&esp_header);
        self.transform.fill_iv(seq, &mut data[iv_at..payload_at]);
        let esn_high = self.hot.esn.then_some((seq >> 32) as u32);
        {
            let (head, rest) = data.split_at_mut(payload_at);
            let (payload, icv) = rest.split_at_mut(icv_at - payload_at);
            self.transform
                .seal(
                    &esp_header,
                    esn_high,
                    &head[iv_at..payload_at],
                    payload,
                    icv,
                )
                .map_err(seal_error)?;
        }

        // Outer headers.
        let proto = if self.hot.udp_encap {
            IpProtocol::UDP
        } else {
            IpProtocol::ESP
        };
        match self.hot.mode {
            Mode::Tunnel => {
                self.write_tunnel_header(data, &inner, udp_len);
                if self.hot.udp_encap && !self.hot.outer_v4 {
                    // IPv6 requires a UDP checksum (RFC 8200 §8.1).
                    let udp_at = IPV6_HEADER_LEN;
                    if let (IpAddr::V6(s), IpAddr::V6(d)) =
                        (self.config.endpoints.local, self.config.endpoints.remote)
                    {
                        let c = checksum::transport_v6(s, d, IpProtocol::UDP, &data[udp_at..]);
                        let c = if c == 0 { 0xffff } else { c };
                        data[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
                    }
                }
            }
            Mode::Transport => write_transport_header(data, &inner, keep, proto),
        }
        if let (Mode::Transport, Some(encap)) = (self.hot.mode, self.config.udp_encap) {
            let udp_at = keep + usize::from(self.outer_header_len) - UDP_HEADER_LEN;
            // The addresses are read back from the header just moved to
            // the front rather than carried in `InnerInfo`: copying two
            // `IpAddr`s around cost a store-forwarding stall per packet on
            // the tunnel-mode path, which never needs them.
            let v6_addrs = (!inner.v4).then(|| {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&data[8..24]);
                d.copy_from_slice(&data[24..40]);
                (Ipv6Addr::from(s), Ipv6Addr::from(d))
            });
            let mut udp = UdpPacket::new_unchecked(&mut data[udp_at..]);
            udp.set_src_port(encap.src_port);
            udp.set_dst_port(encap.dst_port);
            udp.set_len(udp_len as u16);
            udp.set_checksum(0);
            // RFC 3948 §2.1: over IPv4 the checksum SHOULD be zero. IPv6
            // requires one (RFC 8200 §8.1).
            if let Some((s, d)) = v6_addrs {
                let c = checksum::transport_v6(s, d, IpProtocol::UDP, &data[udp_at..]);
                let c = if c == 0 { 0xffff } else { c };
                UdpPacket::new_unchecked(&mut data[udp_at..]).set_checksum(c);
            }
        }

        self.counters.record_packet(inner.total_len);
        for ev in self.lifetime.record(inner.total_len as u64).iter() {
            on_event(ev.into());
        }
        Ok(())
    }

    /// Everything of encapsulation before the crypto: checks, sequence
    /// number, trailer, room for the headers, ESP header and IV; the
    /// packet and its bytes are counted here, against the lifetime too, so
    /// that a batch of this SA's packets prepared one after the other sees
    /// the lifetime exactly as one packet at a time does.
    fn prepare<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        on_event: &mut impl FnMut(SaEvent),
    ) -> Result<Sealing, DropReason> {
        if self.lifetime.is_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        let inner = InnerInfo::parse(pkt.data())?;
        // Ethernet padding of short frames and any other trailing bytes.
        if pkt.len() > inner.total_len {
            pkt.trim(pkt.len() - inner.total_len)
                .map_err(|_| DropReason::BadLength)?;
        }

        // What gets encrypted: the whole packet (tunnel) or what follows
        // the IP header and the extension headers before ESP (transport).
        let (keep, next_header) = match self.hot.mode {
            Mode::Tunnel => (
                0,
                if inner.v4 {
                    IpProtocol::IPV4
                } else {
                    IpProtocol::IPV6
                },
            ),
            Mode::Transport => {
                if inner.v4 != self.hot.outer_v4 {
                    return Err(DropReason::Unsupported);
                }
                // RFC 4303 §3.3.5: "transport mode ESP is applied only to
                // whole IP datagrams (not to IP fragments)".
                if inner.fragment {
                    return Err(DropReason::Unsupported);
                }
                (inner.esp_offset, inner.upper_protocol)
            }
        };
        let payload_len = inner.total_len - keep;
        // RFC 4303 §2.4: payload, padding, pad length and next header end on
        // a multiple of the (power-of-two) alignment.
        let align = usize::from(self.block);
        let pad = (align - ((payload_len + 2) & (align - 1))) & (align - 1);
        let esp_len = ESP_HEADER_LEN
            + usize::from(self.iv_len)
            + payload_len
            + pad
            + 2
            + usize::from(self.icv_len);
        let front = usize::from(self.outer_header_len) + ESP_HEADER_LEN + usize::from(self.iv_len);
        let udp_len = esp_len + UDP_HEADER_LEN;
        let outer_total = keep + usize::from(self.outer_header_len) + esp_len;
        let outer_v4 = match self.hot.mode {
            Mode::Tunnel => self.hot.outer_v4,
            Mode::Transport => inner.v4,
        };
        if outer_total > usize::from(u16::MAX) + if outer_v4 { 0 } else { IPV6_HEADER_LEN } {
            return Err(DropReason::BadLength);
        }
        if pkt.headroom() < front || pkt.tailroom() < pad + 2 + usize::from(self.icv_len) {
            return Err(DropReason::BadLength);
        }

        let next = match self.seq.allocate() {
            Ok(n) => n,
            Err(e) => {
                if let Some(ev) = e.event {
                    on_event(ev);
                }
                return Err(DropReason::SeqOverflow);
            }
        };
        if let Some(ev) = next.event {
            on_event(ev);
        }
        let seq = next.seq;

        // Trailer: padding 1, 2, 3, ... (RFC 4303 §2.4), pad length, next header.
        {
            let tail = pkt
                .append(pad + 2 + usize::from(self.icv_len))
                .map_err(|_| DropReason::BadLength)?;
            for (i, b) in tail[..pad].iter_mut().enumerate() {
                *b = (i + 1) as u8;
            }
            tail[pad] = pad as u8;
            tail[pad + 1] = next_header.0;
        }
        pkt.prepend(front).map_err(|_| DropReason::BadLength)?;
        let data = pkt.data_mut();
        if keep > 0 {
            // Transport mode: move the IP header (and extension headers) to
            // the new front; ESP goes where it was.
            data.copy_within(front..front + keep, 0);
        }

        // ESP header and IV.
        let esp_at = keep + usize::from(self.outer_header_len);
        let iv_at = esp_at + ESP_HEADER_LEN;
        let payload_at = iv_at + usize::from(self.iv_len);
        // Built in a register and stored once: writing SPI and sequence
        // separately and reading the eight bytes back for the AAD stalled
        // store forwarding on every packet.
        let esp_header =
            ((u64::from(self.hot.spi.get()) << 32) | u64::from(seq as u32)).to_be_bytes();
        data[esp_at..esp_at + ESP_HEADER_LEN].copy_from_slice(&esp_header);
        self.transform.fill_iv(seq, &mut data[iv_at..payload_at]);
        let esn_high = self.hot.esn.then_some((seq >> 32) as u32);
        self.counters.record_packet(inner.total_len);
        for ev in self.lifetime.record(inner.total_len as u64).iter() {
            on_event(ev.into());
        }
        Ok(Sealing {
            inner,
            keep,
            esp_at,
            udp_len,
            esn_high,
        })
    }

    /// What encapsulation does after the crypto: the outer headers.
    fn finish<B: PacketBuf>(&mut self, pkt: &mut B, sealing: &Sealing) {
        let (inner, keep, udp_len) = (&sealing.inner, sealing.keep, sealing.udp_len);
        let data = pkt.data_mut();
        // Outer headers.
        let proto = if self.hot.udp_encap {
            IpProtocol::UDP
        } else {
            IpProtocol::ESP
        };
        match self.hot.mode {
            Mode::Tunnel => {
                self.write_tunnel_header(data, inner, udp_len);
                if self.hot.udp_encap && !self.hot.outer_v4 {
                    // IPv6 requires a UDP checksum (RFC 8200 §8.1).
                    let udp_at = IPV6_HEADER_LEN;
                    if let (IpAddr::V6(s), IpAddr::V6(d)) =
                        (self.config.endpoints.local, self.config.endpoints.remote)
                    {
                        let c = checksum::transport_v6(s, d, IpProtocol::UDP, &data[udp_at..]);
                        let c = if c == 0 { 0xffff } else { c };
                        data[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
                    }
                }
            }
            Mode::Transport => write_transport_header(data, inner, keep, proto),
        }
        if let (Mode::Transport, Some(encap)) = (self.hot.mode, self.config.udp_encap) {
            let udp_at = keep + usize::from(self.outer_header_len) - UDP_HEADER_LEN;
            // The addresses are read back from the header just moved to
            // the front rather than carried in `InnerInfo`: copying two
            // `IpAddr`s around cost a store-forwarding stall per packet on
            // the tunnel-mode path, which never needs them.
            let v6_addrs = (!inner.v4).then(|| {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&data[8..24]);
                d.copy_from_slice(&data[24..40]);
                (Ipv6Addr::from(s), Ipv6Addr::from(d))
            });
            let mut udp = UdpPacket::new_unchecked(&mut data[udp_at..]);
            udp.set_src_port(encap.src_port);
            udp.set_dst_port(encap.dst_port);
            udp.set_len(udp_len as u16);
            udp.set_checksum(0);
            // RFC 3948 §2.1: over IPv4 the checksum SHOULD be zero. IPv6
            // requires one (RFC 8200 §8.1).
            if let Some((s, d)) = v6_addrs {
                let c = checksum::transport_v6(s, d, IpProtocol::UDP, &data[udp_at..]);
                let c = if c == 0 { 0xffff } else { c };
                UdpPacket::new_unchecked(&mut data[udp_at..]).set_checksum(c);
            }
        }
    }

    /// Copies the outer header template in front and patches what varies
    /// per packet.
    #[inline]
    fn write_tunnel_header(&mut self, data: &mut [u8], inner: &InnerInfo, udp_len: usize) {
        let total = data.len();
        let tos = (self.hot.dscp.outer_dscp(inner.tos >> 2) << 2)
            | ecn_encapsulate(Ecn::from_tos(inner.tos)).bits();
        let hl = usize::from(self.outer_header_len);
        // Fixed-size copies, so the compiler emits moves, not a memcpy call.
        match hl {
            20 => data[..20].copy_from_slice(&self.template[..20]),
            28 => data[..28].copy_from_slice(&self.template[..28]),
            40 => data[..40].copy_from_slice(&self.template[..40]),
            _ => data[..48].copy_from_slice(&self.template[..48]),
        }
        if self.hot.outer_v4 {
            self.ident = self.ident.wrapping_add(1);
            // An IPv6 inner packet has no DF bit; "copy" treats it as set
            // (it must not be fragmented on its path).
            let flags: u16 = if self.hot.df.outer_df(inner.df) {
                0x4000
            } else {
                0
            };
            data[1] = tos;
            data[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            data[4..6].copy_from_slice(&self.ident.to_be_bytes());
            data[6..8].copy_from_slice(&flags.to_be_bytes());
            let sum = self.v4_partial
                + u64::from(0x4500u16 | u16::from(tos))
                + total as u64
                + u64::from(self.ident)
                + u64::from(flags);
            data[10..12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        } else {
            data[0] = 0x60 | (tos >> 4);
            data[1] = tos << 4;
            data[4..6].copy_from_slice(&((total - IPV6_HEADER_LEN) as u16).to_be_bytes());
        }
        if self.hot.udp_encap {
            let at = hl - UDP_HEADER_LEN;
            data[at + 4..at + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        }
    }
}

/// An outbound packet between [`OutboundSa::prepare_batched`] and
/// [`OutboundSa::finish_batched`].
#[derive(Debug, Clone, Copy)]
pub struct Sealing {
    inner: InnerInfo,
    /// Transport mode: bytes of IP header kept in front of ESP.
    keep: usize,
    esp_at: usize,
    udp_len: usize,
    esn_high: Option<u32>,
}

impl Sealing {
    /// Where the ESP packet (SPI to the end of the ICV) is in the packet,
    /// `len` bytes long: what the batch seals.
    #[inline]
    pub fn esp_range(&self, len: usize) -> std::ops::Range<usize> {
        self.esp_at..len
    }

    /// The high 32 bits of the sequence number with ESN (RFC 4303 §2.2.1).
    #[inline]
    pub fn esn_high(&self) -> Option<u32> {
        self.esn_high
    }
}

fn seal_error(e: CryptoError) -> DropReason {
    match e {
        CryptoError::BadLength => DropReason::BadLength,
        _ => DropReason::Unsupported,
    }
}

/// The outer header template of a tunnel-mode SA and, for IPv4, the sum of
/// its constant words.
fn outer_template(config: &SaConfig) -> ([u8; IPV6_HEADER_LEN + UDP_HEADER_LEN], u64) {
    let mut t = [0u8; IPV6_HEADER_LEN + UDP_HEADER_LEN];
    let proto = if config.udp_encap.is_some() {
        IpProtocol::UDP
    } else {
        IpProtocol::ESP
    };
    let mut partial = 0u64;
    let ip_len = match (config.endpoints.local, config.endpoints.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            t[0] = 0x45;
            t[8] = config.outer_ttl;
            t[9] = proto.0;
            t[12..16].copy_from_slice(&src.octets());
            t[16..20].copy_from_slice(&dst.octets());
            for i in [8usize, 12, 14, 16, 18] {
                partial += u64::from(u16::from_be_bytes([t[i], t[i + 1]]));
            }
            IPV4_HEADER_LEN
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            t[0] = 0x60;
            t[6] = proto.0;
            t[7] = config.outer_ttl;
            t[8..24].copy_from_slice(&src.octets());
            t[24..40].copy_from_slice(&dst.octets());
            IPV6_HEADER_LEN
        }
        // Validated at construction: both endpoints share a family.
        _ => IPV4_HEADER_LEN,
    };
    if let Some(encap) = config.udp_encap {
        t[ip_len..ip_len + 2].copy_from_slice(&encap.src_port.to_be_bytes());
        t[ip_len + 2..ip_len + 4].copy_from_slice(&encap.dst_port.to_be_bytes());
    }
    (t, partial)
}

/// Transport mode: the IP header was moved to the front; point it at the
/// ESP (or UDP) header and fix its length (and, for IPv4, its checksum).
fn write_transport_header(data: &mut [u8], inner: &InnerInfo, keep: usize, proto: IpProtocol) {
    let total = data.len();
    if inner.v4 {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[..keep]);
        ip.set_protocol(proto);
        ip.set_total_len(total as u16);
        ip.fill_checksum();
    } else {
        data[inner.nh_field] = proto.0;
        Ipv6Packet::new_unchecked(&mut data[..IPV6_HEADER_LEN])
            .set_payload_len((total - IPV6_HEADER_LEN) as u16);
    }
}

/// What encapsulation needs to know about the inner packet.
#[derive(Debug, Clone, Copy)]
struct InnerInfo {
    v4: bool,
    total_len: usize,
    tos: u8,
    df: bool,
    /// Transport mode: where ESP is inserted (end of the IP header and the
    /// extension headers that precede ESP).
    esp_offset: usize,
    /// The protocol that follows at `esp_offset`.
    upper_protocol: IpProtocol,
    /// IPv6: offset of the Next Header byte that names `upper_protocol`.
    nh_field: usize,
    /// A fragment (IPv4 MF or offset, or an IPv6 Fragment header).
    fragment: bool,
}

impl InnerInfo {
    #[inline]
    fn parse(data: &[u8]) -> Result<InnerInfo, DropReason> {
        match data.first().map(|b| b >> 4) {
            // IPv4 without options: fixed offsets, no view construction.
            Some(4) if data[0] == 0x45 => {
                let h = Ipv4Fixed::parse(data).ok_or(DropReason::BadHeader)?;
                Ok(InnerInfo {
                    v4: true,
                    total_len: h.total_len(),
                    tos: h.tos(),
                    df: h.dont_frag(),
                    esp_offset: 20,
                    upper_protocol: h.protocol(),
                    nh_field: 9,
                    fragment: h.is_fragment(),
                })
            }
            Some(4) => {
                let ip = Ipv4Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
                Ok(InnerInfo {
                    v4: true,
                    total_len: usize::from(ip.total_len()),
                    tos: (ip.dscp() << 2) | ip.ecn(),
                    df: ip.dont_frag(),
                    esp_offset: usize::from(ip.header_len()),
                    upper_protocol: ip.protocol(),
                    nh_field: 9,
                    fragment: ip.is_fragment(),
                })
            }
            Some(6) => {
                let ip = Ipv6Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
                let (esp_offset, upper_protocol, nh_field) = ipv6_esp_position(&ip)?;
                let fragment = ip.ext_headers().map_or(true, |e| e.fragment.is_some());
                Ok(InnerInfo {
                    v4: false,
                    total_len: IPV6_HEADER_LEN + usize::from(ip.payload_len()),
                    tos: ip.traffic_class(),
                    df: true,
                    esp_offset,
                    upper_protocol,
                    nh_field,
                    fragment,
                })
            }
            _ => Err(DropReason::BadHeader),
        }
    }
}

/// Where ESP goes in an IPv6 packet in transport mode (RFC 4303 §3.1.1):
/// after Hop-by-Hop, Routing and Fragment headers (and Destination Options
/// before a Routing header; we keep all of them in front, which RFC 4303
/// allows). Returns (offset, protocol there, offset of its Next Header byte).
///
/// A Hop-by-Hop header anywhere but first is malformed (RFC 8200 §4.1: it
/// "MUST immediately follow the IPv6 header"), as [`Ipv6ExtHeaders::walk`]
/// on the receiving side says too: refusing it here keeps us from sending
/// ESP that the peer must drop.
///
/// [`Ipv6ExtHeaders::walk`]: crate::wire::Ipv6ExtHeaders::walk
fn ipv6_esp_position<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
) -> Result<(usize, IpProtocol, usize), DropReason> {
    ipv6_walk(ip, false).map(|(off, proto, nh_field, _)| (off, proto, nh_field))
}

/// The walk of [`ipv6_esp_position`]; with `stop_at_later_fragment`, it
/// stops after a Fragment header whose offset is not 0 (what follows is
/// the middle of the fragmented payload, not headers: RFC 8200 §4.5) and
/// says so in the last field.
fn ipv6_walk<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    stop_at_later_fragment: bool,
) -> Result<(usize, IpProtocol, usize, bool), DropReason> {
    let payload = ip.payload();
    let mut nh = ip.next_header();
    let mut nh_field = 6usize;
    let mut offset = 0usize;
    for _ in 0..=crate::wire::ipv6::MAX_EXT_HEADERS {
        let len = match nh {
            IpProtocol::HOP_BY_HOP if offset > 0 => return Err(DropReason::BadHeader),
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                let h = payload
                    .get(offset..offset + 2)
                    .ok_or(DropReason::BadHeader)?;
                (usize::from(h[1]) + 1) * 8
            }
            IpProtocol::IPV6_FRAG => 8,
            _ => return Ok((IPV6_HEADER_LEN + offset, nh, nh_field, false)),
        };
        let h = payload
            .get(offset..offset + len)
            .ok_or(DropReason::BadHeader)?;
        let later_fragment =
            nh == IpProtocol::IPV6_FRAG && u16::from_be_bytes([h[2], h[3]]) & !7 != 0;
        nh = IpProtocol(h[0]);
        nh_field = IPV6_HEADER_LEN + offset;
        offset += len;
        if later_fragment && stop_at_later_fragment {
            return Ok((IPV6_HEADER_LEN + offset, nh, nh_field, true));
        }
    }
    Err(DropReason::BadHeader)
}

/// The flow key (RFC 4301 selectors) of an IP packet starting at `data[0]`:
/// addresses, protocol, and ports for TCP, UDP and SCTP (0 otherwise, and
/// 0 when the packet does not carry them: see [`PacketKey`]).
#[inline(always)]
pub fn flow_key(data: &[u8]) -> Result<FlowKey, DropReason> {
    packet_key(data).map(|k| k.key)
}

/// A packet's selectors as the SPD classifies it: the [`FlowKey`] and
/// whether its ports are unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketKey {
    /// Addresses, protocol and ports (0 when `opaque`).
    pub key: FlowKey,
    /// The protocol has ports but the packet does not show them: a
    /// non-initial fragment (IPv4 offset not 0, IPv6 Fragment header with
    /// offset not 0), or a first fragment or packet too short to hold
    /// them. Its ports are OPAQUE (RFC 4301 §4.4.1.1, §7.1): the key's 0s
    /// must not be matched as if they were the flow's ports, which would
    /// let a fragment of a flow that a port-specific policy protects fall
    /// to a broader BYPASS; classify it with
    /// [`Spd::lookup_opaque`](super::spd::Spd::lookup_opaque).
    pub opaque: bool,
}

/// IPv6 extension headers (RFC 8200 §4, and those of RFC 6275, RFC 7401,
/// RFC 5533 that follow its format): a next header that is not the
/// upper-layer protocol.
fn hides_protocol(nh: IpProtocol) -> bool {
    matches!(nh.0, 0 | 43 | 44 | 60 | 135 | 139 | 140)
}

/// The [`PacketKey`] of an IP packet starting at `data[0]`. A non-initial
/// IPv6 fragment whose upper-layer protocol is hidden behind an extension
/// header is refused (`OpaquePorts`).
///
/// The IPv4-without-options case is inlined into the caller so the key is
/// built where it is used: returned from a call, the key (two `IpAddr`s
/// written field by field) was copied back in eight-byte words, a
/// store-forwarding stall of about 13 cycles per packet (perf annotate of
/// the worker on `espresso-lab bench`).
#[inline(always)]
pub fn packet_key(data: &[u8]) -> Result<PacketKey, DropReason> {
    if data.first() == Some(&0x45) {
        if let Some(h) = Ipv4Fixed::parse(data) {
            let proto = h.protocol().0;
            let (mut sport, mut dport, mut opaque) = (0, 0, false);
            if FlowKey::proto_has_ports(proto) {
                match data.get(20..24) {
                    Some(p) if h.is_first_fragment() && h.total_len() >= 24 => {
                        sport = u16::from_be_bytes([p[0], p[1]]);
                        dport = u16::from_be_bytes([p[2], p[3]]);
                    }
                    _ => opaque = true,
                }
            }
            return Ok(PacketKey {
                key: FlowKey {
                    src: IpAddr::V4(h.src_addr()),
                    dst: IpAddr::V4(h.dst_addr()),
                    proto,
                    sport,
                    dport,
                },
                opaque,
            });
        }
    }
    packet_key_general(data)
}

#[inline(never)]
fn packet_key_general(data: &[u8]) -> Result<PacketKey, DropReason> {
    // `l4`: the bytes after the IP headers, `None` for a non-initial
    // fragment.
    let (src, dst, proto, l4) = match data.first().map(|b| b >> 4) {
        // IPv4 without options, as almost every packet is: fixed offsets.
        Some(4) if data[0] == 0x45 => {
            let h = Ipv4Fixed::parse(data).ok_or(DropReason::BadHeader)?;
            let l4 = h.is_first_fragment().then(|| &data[20..h.total_len()]);
            (
                IpAddr::V4(h.src_addr()),
                IpAddr::V4(h.dst_addr()),
                h.protocol(),
                l4,
            )
        }
        Some(4) => {
            let ip = Ipv4Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
            let hl = usize::from(ip.header_len());
            let end = usize::from(ip.total_len());
            let l4 = (ip.frag_offset() == 0).then(|| data.get(hl..end).unwrap_or(&[]));
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.protocol(),
                l4,
            )
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(data).map_err(|_| DropReason::BadHeader)?;
            let (off, proto, _, later_fragment) = ipv6_walk(&ip, true)?;
            // A later fragment names the first header of the fragmentable
            // part; if that is an extension header, the upper-layer
            // protocol is in the first fragment only (RFC 8200 §4.5) and
            // a policy for "any protocol" would match what is really, say,
            // a protected UDP flow. Neither protocol nor ports are known:
            // the packet cannot be classified.
            if later_fragment && hides_protocol(proto) {
                return Err(DropReason::OpaquePorts);
            }
            let end = IPV6_HEADER_LEN + usize::from(ip.payload_len());
            let l4 = (!later_fragment).then(|| data.get(off..end).unwrap_or(&[]));
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                proto,
                l4,
            )
        }
        _ => return Err(DropReason::BadHeader),
    };
    let (mut sport, mut dport, mut opaque) = (0, 0, false);
    if FlowKey::proto_has_ports(proto.0) {
        match l4 {
            Some(l4) if l4.len() >= 4 => {
                sport = u16::from_be_bytes([l4[0], l4[1]]);
                dport = u16::from_be_bytes([l4[2], l4[3]]);
            }
            _ => opaque = true,
        }
    }
    Ok(PacketKey {
        key: FlowKey {
            src,
            dst,
            proto: proto.0,
            sport,
            dport,
        },
        opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `inbound` fuzz target: a Hop-by-Hop header after a
    /// Destination Options header was accepted here (and ESP placed after
    /// it in transport mode) while the receiver's walk refuses it.
    #[test]
    fn hop_by_hop_header_not_first_is_refused() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = IpProtocol::IPV6_OPTS.0;
        p[7] = 64;
        p[8] = 0xfd;
        p[24] = 0xfd;
        // Destination Options -> Hop-by-Hop -> UDP, 8 bytes each.
        p.extend_from_slice(&[IpProtocol::HOP_BY_HOP.0, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[IpProtocol::UDP.0, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let len = (p.len() - IPV6_HEADER_LEN) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(flow_key(&p), Err(DropReason::BadHeader));
        assert_eq!(InnerInfo::parse(&p).map(|_| ()), Err(DropReason::BadHeader));
        assert!(crate::wire::Ipv6Packet::new_checked(&p[..])
            .unwrap()
            .ext_headers()
            .is_err());

        // First, it is fine: ESP goes after it.
        p[6] = IpProtocol::HOP_BY_HOP.0;
        p[40] = IpProtocol::IPV6_OPTS.0;
        p[48] = IpProtocol::UDP.0;
        let info = InnerInfo::parse(&p).unwrap();
        assert_eq!(
            (info.esp_offset, info.upper_protocol, info.nh_field),
            (56, IpProtocol::UDP, 48)
        );
        assert_eq!(flow_key(&p).unwrap().dport, 2);
    }

    /// Ports are read only where they are: a non-initial fragment, or a
    /// first fragment or packet too short for them, has OPAQUE ports (RFC
    /// 4301 §7.1), for IPv4 with and without options and for IPv6, where
    /// the bytes after a non-initial Fragment header are payload.
    #[test]
    fn ports_of_fragments_are_opaque() {
        let v4 = |ihl: usize, proto: u8, frag: u16, l4: &[u8]| {
            let mut p = vec![0u8; ihl];
            p[0] = 0x40 | (ihl / 4) as u8;
            p[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            p[8] = 64;
            p[9] = proto;
            p[12..16].copy_from_slice(&[10, 1, 0, 10]);
            p[16..20].copy_from_slice(&[10, 2, 0, 20]);
            let c = !crate::wire::ip::checksum::data(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(l4);
            p
        };
        let udp = [0x04, 0xd2, 0x13, 0x88, 0, 12, 0, 0, 1, 2, 3, 4];
        for ihl in [20, 24] {
            // Whole, and first fragment with the header: ports read.
            for frag in [0u16, 0x2000, 0x4000] {
                let k = packet_key(&v4(ihl, 17, frag, &udp)).unwrap();
                assert!(!k.opaque);
                assert_eq!((k.key.sport, k.key.dport), (1234, 5000));
            }
            // Non-initial fragment: whatever its data looks like.
            for frag in [1u16, 0x2001, 185] {
                let k = packet_key(&v4(ihl, 17, frag, &udp)).unwrap();
                assert!(k.opaque, "ihl {ihl} frag {frag:#x}");
                assert_eq!((k.key.sport, k.key.dport, k.key.proto), (0, 0, 17));
            }
            // Too short for the ports.
            assert!(packet_key(&v4(ihl, 6, 0x2000, &udp[..3])).unwrap().opaque);
            assert!(packet_key(&v4(ihl, 132, 0, &[])).unwrap().opaque);
            // Protocols without ports have nothing to hide.
            assert!(!packet_key(&v4(ihl, 1, 0x2001, &udp)).unwrap().opaque);
            assert_eq!(flow_key(&v4(ihl, 17, 1, &udp)).unwrap().dport, 0);
        }

        let v6 = |frag: Option<(u16, bool)>, l4: &[u8]| {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
            p.extend_from_slice(&[0xfd, 1].repeat(8));
            p.extend_from_slice(&[0xfd, 2].repeat(8));
            if let Some((off, more)) = frag {
                p[6] = IpProtocol::IPV6_FRAG.0;
                // After the Fragment header, a Destination Options header
                // in the first fragment; in later ones, just data.
                p.extend_from_slice(&[17, 0]);
                p.extend_from_slice(&(off << 3 | u16::from(more)).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, 9]);
            }
            p.extend_from_slice(l4);
            let len = (p.len() - IPV6_HEADER_LEN) as u16;
            p[4..6].copy_from_slice(&len.to_be_bytes());
            p
        };
        for frag in [None, Some((0, true)), Some((0, false))] {
            let k = packet_key(&v6(frag, &udp)).unwrap();
            assert!(!k.opaque, "{frag:?}");
            assert_eq!((k.key.sport, k.key.dport), (1234, 5000));
        }
        // A later fragment whose data starts like a Destination Options
        // header: not walked into.
        let mut later = vec![IpProtocol::UDP.0, 0, 0, 0, 0, 0, 0, 0];
        later.extend_from_slice(&udp);
        for (off, more) in [(1, true), (100, false)] {
            let k = packet_key(&v6(Some((off, more)), &udp)).unwrap();
            assert!(k.opaque);
            assert_eq!((k.key.proto, k.key.sport, k.key.dport), (17, 0, 0));
        }
        // Whose protocol is behind an extension header: unknown, refused.
        let mut p = v6(Some((100, false)), &later);
        p[40] = IpProtocol::IPV6_OPTS.0;
        assert_eq!(packet_key(&p), Err(DropReason::OpaquePorts));
        p[40] = IpProtocol::ICMPV6.0;
        assert!(!packet_key(&p).unwrap().opaque);
        assert!(packet_key(&v6(Some((0, true)), &udp[..2])).unwrap().opaque);
    }

    fn transport_sa(local: &str, remote: &str) -> OutboundSa {
        use crate::crypto::{new_transform, Backend, SaKeys};
        use crate::esp::sa::{Direction, Spi, TunnelEndpoints};
        let alg = Algorithm::AES_GCM_128;
        let keys = SaKeys::new(&[7; 20], &[]);
        let cfg = SaConfig::new(
            Spi::new(0x1234).unwrap(),
            Direction::Outbound,
            Mode::Transport,
            TunnelEndpoints {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            },
        );
        OutboundSa::new(cfg, new_transform(Backend::RustCrypto, alg, &keys).unwrap()).unwrap()
    }

    /// The SPI the per-packet path reads is the configured one, and on a
    /// line the burst pipeline prefetches (reading it from the cold
    /// `config` cost a miss per packet with 100,000 SAs).
    #[test]
    fn spi_is_read_from_a_hot_line() {
        let sa = transport_sa("10.1.0.10", "10.2.0.20");
        assert_eq!(sa.spi(), sa.config().spi);
        assert!(sa.hot_lines().contains(std::ptr::from_ref(&sa.hot.spi)));
        assert!(!sa.hot_lines().contains(std::ptr::from_ref(&sa.config.spi)));
    }

    /// Found by the `inbound` fuzz target: an IPv6 packet with a Fragment
    /// header was encapsulated in transport mode (ESP after the Fragment
    /// header), which our receiver, rightly, refuses. Fragments are
    /// refused here instead, IPv4 ones too (RFC 4303 §3.3.5).
    #[test]
    fn transport_mode_refuses_fragments() {
        use crate::buf::HeapBuf;
        // IPv6 fd01::10 -> fd02::20, Fragment header (offset 8, M=0, TCP
        // follows), 8 bytes of fragment data.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, IpProtocol::IPV6_FRAG.0, 64];
        v6.extend_from_slice(&"fd01::10".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fd02::20".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[IpProtocol::TCP.0, 0, 0, 8, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0xab; 8]);
        let mut sa = transport_sa("fd01::10", "fd02::20");
        let mut p = HeapBuf::from_slice(&v6);
        assert_eq!(
            sa.encapsulate(&mut p, &mut |_| {}),
            Err(DropReason::Unsupported)
        );
        // A whole datagram with an atomic Fragment header (offset 0, M=0)
        // is a fragment too for the receiver's walk: refused as well.
        v6[42..44].fill(0);
        let mut p = HeapBuf::from_slice(&v6);
        assert_eq!(
            sa.encapsulate(&mut p, &mut |_| {}),
            Err(DropReason::Unsupported)
        );

        // IPv4 with More Fragments set.
        let mut v4 = vec![0x45, 0, 0, 28, 0, 1, 0x20, 0, 64, IpProtocol::UDP.0, 0, 0];
        v4.extend_from_slice(&[10, 1, 0, 10, 10, 2, 0, 20]);
        v4.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let c = !crate::wire::ip::checksum::data(&v4[..20]);
        v4[10..12].copy_from_slice(&c.to_be_bytes());
        let mut sa = transport_sa("10.1.0.10", "10.2.0.20");
        let mut p = HeapBuf::from_slice(&v4);
        assert_eq!(
            sa.encapsulate(&mut p, &mut |_| {}),
            Err(DropReason::Unsupported)
        );
        // The same datagram whole goes through.
        v4[6] = 0x40;
        let c = {
            v4[10..12].fill(0);
            !crate::wire::ip::checksum::data(&v4[..20])
        };
        v4[10..12].copy_from_slice(&c.to_be_bytes());
        let mut p = HeapBuf::from_slice(&v4);
        assert_eq!(sa.encapsulate(&mut p, &mut |_| {}), Ok(()));
    }
}
