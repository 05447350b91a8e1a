//! Security association configuration and per-SA state that is not crypto:
//! identifiers, mode, encapsulation options, lifetimes and the outbound
//! sequence counter (RFC 4301 §4.4.2, RFC 4303).
//!
//! The algorithm and keys live in a separate `SaCrypto` (in `crate::crypto`)
//! so that this module has no dependency on a cipher implementation; an SA
//! in the worker's table pairs an [`SaConfig`] with one.
//!
//! Time-based lifetimes are not here: the data plane never reads the clock
//! (the control plane expires SAs by time and sends a delete message). Byte
//! and packet lifetimes are counted here because only the worker sees every
//! packet.

use core::fmt;
use std::net::IpAddr;

use thiserror::Error;

use cpu::prefetch::{block_table_mask, BlockTable, Lines, CACHE_LINE};

use super::ecn::{DfPolicy, DscpPolicy};
use super::replay::ReplayWindow;
use super::spd::Selector;

/// Security Parameters Index (RFC 4303 §2.1). Values 1..=255 are reserved
/// by IANA for future use and 0 for local use, so none of them may name an
/// SA negotiated or configured here.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spi(u32);

/// An SPI in the reserved range 0..=255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("SPI {0} is reserved (0..=255)")]
pub struct ReservedSpi(pub u32);

impl Spi {
    /// An SPI, refusing the reserved values 0..=255.
    pub const fn new(value: u32) -> Result<Self, ReservedSpi> {
        if value <= 255 {
            Err(ReservedSpi(value))
        } else {
            Ok(Self(value))
        }
    }

    /// The 32-bit value (host order).
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Spi {
    type Error = ReservedSpi;

    fn try_from(value: u32) -> Result<Self, ReservedSpi> {
        Self::new(value)
    }
}

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

impl fmt::Debug for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Spi(0x{:08x})", self.0)
    }
}

/// SAs are unidirectional (RFC 4301 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received ESP, decrypted here.
    Inbound,
    /// Plaintext encrypted here and sent.
    Outbound,
}

/// ESP mode (RFC 4303 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The whole inner IP packet is protected behind a new outer header.
    Tunnel,
    /// ESP is inserted after the packet's own IP header.
    Transport,
}

/// The outer addresses: this gateway and the peer. In tunnel mode they form
/// the outer header; in transport mode they are the hosts' own addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TunnelEndpoints {
    /// This side's address.
    pub local: IpAddr,
    /// The peer's address.
    pub remote: IpAddr,
}

impl TunnelEndpoints {
    /// Whether the outer header is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.local.is_ipv4()
    }
}

/// UDP encapsulation of ESP for NAT traversal (RFC 3948).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    /// Source port of sent packets (ours).
    pub src_port: u16,
    /// Destination port of sent packets (the peer's, possibly NAT-mapped).
    pub dst_port: u16,
}

impl UdpEncap {
    /// The IKE NAT-T port (RFC 3948 §1.1, RFC 7296 §2.23).
    pub const NAT_T_PORT: u16 = 4500;

    /// 4500 to 4500.
    pub const fn nat_t() -> Self {
        Self {
            src_port: Self::NAT_T_PORT,
            dst_port: Self::NAT_T_PORT,
        }
    }
}

/// Byte and packet lifetimes (RFC 4301 §4.4.2.1 "SA Lifetime"): reaching a
/// soft limit asks the control plane to rekey; reaching a hard limit ends
/// the SA. `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lifetime {
    /// Soft limit on bytes (inner packet lengths).
    pub soft_bytes: Option<u64>,
    /// Hard limit on bytes.
    pub hard_bytes: Option<u64>,
    /// Soft limit on packets.
    pub soft_packets: Option<u64>,
    /// Hard limit on packets.
    pub hard_packets: Option<u64>,
}

impl Lifetime {
    /// No limits.
    pub const UNLIMITED: Self = Self {
        soft_bytes: None,
        hard_bytes: None,
        soft_packets: None,
        hard_packets: None,
    };

    fn validate(&self) -> Result<(), SaConfigError> {
        for (field, soft, hard) in [
            ("lifetime.soft_bytes", self.soft_bytes, self.hard_bytes),
            (
                "lifetime.soft_packets",
                self.soft_packets,
                self.hard_packets,
            ),
        ] {
            if soft == Some(0) {
                return Err(SaConfigError::new(field, "must not be 0"));
            }
            if let (Some(s), Some(h)) = (soft, hard) {
                if s > h {
                    return Err(SaConfigError::new(
                        field,
                        format!("soft limit {s} exceeds hard limit {h}"),
                    ));
                }
            }
        }
        for (field, hard) in [
            ("lifetime.hard_bytes", self.hard_bytes),
            ("lifetime.hard_packets", self.hard_packets),
        ] {
            if hard == Some(0) {
                return Err(SaConfigError::new(field, "must not be 0"));
            }
        }
        Ok(())
    }
}

/// A lifetime threshold crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LifetimeEvent {
    /// A soft limit: rekey.
    Soft,
    /// A hard limit: the SA is dead.
    Hard,
}

/// The lifetime events raised by one [`LifetimeState::record`] call; a
/// single packet can cross both limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifetimeEvents {
    /// The soft limit was crossed by this packet.
    pub soft: bool,
    /// The hard limit was crossed by this packet.
    pub hard: bool,
}

impl LifetimeEvents {
    /// Nothing happened (the common case).
    #[inline]
    pub const fn is_empty(self) -> bool {
        !self.soft && !self.hard
    }

    /// The events in order (soft before hard).
    pub fn iter(self) -> impl Iterator<Item = LifetimeEvent> {
        [
            self.soft.then_some(LifetimeEvent::Soft),
            self.hard.then_some(LifetimeEvent::Hard),
        ]
        .into_iter()
        .flatten()
    }
}

/// Counts an SA's traffic against its [`Lifetime`]; each event is reported
/// exactly once.
///
/// Order of use on the hot path: drop the packet with
/// `DropReason::LifetimeExpired` if [`is_expired`](Self::is_expired);
/// otherwise process it and [`record`](Self::record) it. A hard limit of `N`
/// packets therefore lets exactly `N` packets through, and the packet that
/// reaches a byte limit is the last one sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LifetimeState {
    /// The smallest byte / packet limit not yet fired (`u64::MAX` for
    /// none): the per-packet test is two comparisons, and the limits are
    /// looked at only when one of these is reached.
    next_bytes: u64,
    next_packets: u64,
    bytes: u64,
    packets: u64,
    soft_fired: bool,
    hard_fired: bool,
    /// Read only when a limit is reached: last, so that an SA that embeds
    /// this state (`repr(C)`) keeps it out of its hot cache lines.
    limits: Lifetime,
}

impl LifetimeState {
    /// The leading bytes read and written per packet (everything but the
    /// limits).
    pub const HOT_BYTES: usize = std::mem::offset_of!(LifetimeState, hard_fired) + 1;
}

impl LifetimeState {
    /// Nothing counted yet.
    pub const fn new(limits: Lifetime) -> Self {
        let mut s = Self {
            limits,
            bytes: 0,
            packets: 0,
            soft_fired: false,
            hard_fired: false,
            next_bytes: u64::MAX,
            next_packets: u64::MAX,
        };
        s.rearm();
        s
    }

    /// Recomputes `next_bytes` and `next_packets` from the limits that
    /// have not fired.
    const fn rearm(&mut self) {
        const fn min(a: u64, b: Option<u64>) -> u64 {
            match b {
                Some(b) if b < a => b,
                _ => a,
            }
        }
        let (mut nb, mut np) = (u64::MAX, u64::MAX);
        if !self.soft_fired {
            nb = min(nb, self.limits.soft_bytes);
            np = min(np, self.limits.soft_packets);
        }
        if !self.hard_fired {
            nb = min(nb, self.limits.hard_bytes);
            np = min(np, self.limits.hard_packets);
        }
        self.next_bytes = nb;
        self.next_packets = np;
    }

    /// Whether the hard limit has been reached: the SA must not be used.
    #[inline]
    pub const fn is_expired(&self) -> bool {
        self.hard_fired
    }

    /// Bytes counted.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Packets counted.
    pub const fn packets(&self) -> u64 {
        self.packets
    }

    /// The limits.
    pub const fn limits(&self) -> &Lifetime {
        &self.limits
    }

    /// Count one packet of `bytes` bytes; returns the thresholds it made
    /// the SA cross for the first time.
    #[inline]
    pub fn record(&mut self, bytes: u64) -> LifetimeEvents {
        self.bytes = self.bytes.saturating_add(bytes);
        self.packets = self.packets.saturating_add(1);
        if self.bytes < self.next_bytes && self.packets < self.next_packets {
            return LifetimeEvents::default();
        }
        self.crossed()
    }

    /// The slow half of [`record`](Self::record): some limit was reached.
    #[cold]
    #[inline(never)]
    fn crossed(&mut self) -> LifetimeEvents {
        let reached = |limit: Option<u64>, count: u64| limit.is_some_and(|l| count >= l);
        let mut ev = LifetimeEvents::default();
        if !self.soft_fired
            && (reached(self.limits.soft_bytes, self.bytes)
                || reached(self.limits.soft_packets, self.packets))
        {
            self.soft_fired = true;
            ev.soft = true;
        }
        if !self.hard_fired
            && (reached(self.limits.hard_bytes, self.bytes)
                || reached(self.limits.hard_packets, self.packets))
        {
            self.hard_fired = true;
            ev.hard = true;
            // Reaching the hard limit implies the soft one: report it too
            // if it has not been, so the control plane sees both once.
            if !self.soft_fired {
                self.soft_fired = true;
                ev.soft = true;
            }
        }
        self.rearm();
        ev
    }
}

/// Something the worker reports about an SA to the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaEvent {
    /// A soft byte/packet lifetime was reached: rekey.
    SoftLifetime,
    /// A hard byte/packet lifetime was reached: the SA no longer passes
    /// traffic.
    HardLifetime,
    /// The outbound sequence number is exhausted: the SA no longer sends
    /// (RFC 4303 §3.3.3).
    SeqOverflow,
    /// The outbound sequence number passed the rekey threshold.
    SeqNearOverflow,
}

impl From<LifetimeEvent> for SaEvent {
    fn from(e: LifetimeEvent) -> Self {
        match e {
            LifetimeEvent::Soft => SaEvent::SoftLifetime,
            LifetimeEvent::Hard => SaEvent::HardLifetime,
        }
    }
}

/// A sequence number handed out by [`SeqCounter::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextSeq {
    /// The full sequence number (the low 32 bits go on the wire; with ESN
    /// the high 32 bits are authenticated too).
    pub seq: u64,
    /// [`SaEvent::SeqNearOverflow`] the first time the threshold is
    /// reached.
    pub event: Option<SaEvent>,
}

/// The counter is exhausted; the packet must not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("sequence number space exhausted")]
pub struct SeqExhausted {
    /// [`SaEvent::SeqOverflow`] on the first refusal only.
    pub event: Option<SaEvent>,
}

/// The outbound sequence counter (RFC 4303 §3.3.3).
///
/// > The sender's counter is initialized to 0 when an SA is established.
/// > The sender increments the sequence number (or ESN) counter for this
/// > SA and inserts the low-order 32 bits of the value into the Sequence
/// > Number field. Thus, the first packet sent using a given SA will
/// > contain a sequence number value of 1.
///
/// > [...] the sender MUST NOT send a packet on an SA if doing so would
/// > cause the sequence number to cycle.
///
/// So the last number sent is 2^32 - 1 without ESN and 2^64 - 1 with it;
/// after that [`allocate`](Self::allocate) refuses. One writer: the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqCounter {
    /// The last number handed out; 0 before the first.
    last: u64,
    max: u64,
    rekey_at: u64,
    near_reported: bool,
    overflow_reported: bool,
}

impl SeqCounter {
    /// Default rekey threshold without ESN: 2^24 packets before the end.
    pub const DEFAULT_REKEY_32: u64 = (1 << 32) - (1 << 24);
    /// Default rekey threshold with ESN: 2^32 packets before the end.
    pub const DEFAULT_REKEY_64: u64 = u64::MAX - (1 << 32) + 1;

    /// The largest sequence number an SA may send.
    pub const fn max_for(esn: bool) -> u64 {
        if esn {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// The default rekey threshold.
    pub const fn default_rekey_for(esn: bool) -> u64 {
        if esn {
            Self::DEFAULT_REKEY_64
        } else {
            Self::DEFAULT_REKEY_32
        }
    }

    /// A counter for an SA with or without ESN; `rekey_at` is the first
    /// sequence number whose allocation raises [`SaEvent::SeqNearOverflow`]
    /// (clamped to the maximum).
    pub fn new(esn: bool, rekey_at: u64) -> Self {
        let max = Self::max_for(esn);
        Self {
            last: 0,
            max,
            rekey_at: rekey_at.clamp(1, max),
            near_reported: false,
            overflow_reported: false,
        }
    }

    /// The last number handed out (0 before the first).
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// Continues after `last` (an SA re-installed mid-life keeps its
    /// numbering; tests use it to reach the end of the space). Never moves
    /// backwards.
    pub fn skip_to(&mut self, last: u64) {
        self.last = self.last.max(last.min(self.max));
        if self.last >= self.rekey_at {
            self.near_reported = true;
        }
    }

    /// Whether no number is left.
    pub const fn is_exhausted(&self) -> bool {
        self.last >= self.max
    }

    /// Allocate the next sequence number.
    #[inline]
    pub fn allocate(&mut self) -> Result<NextSeq, SeqExhausted> {
        if self.last >= self.max {
            let first = !self.overflow_reported;
            self.overflow_reported = true;
            return Err(SeqExhausted {
                event: first.then_some(SaEvent::SeqOverflow),
            });
        }
        self.last += 1;
        let near = self.last >= self.rekey_at && !self.near_reported;
        if near {
            self.near_reported = true;
        }
        Ok(NextSeq {
            seq: self.last,
            event: near.then_some(SaEvent::SeqNearOverflow),
        })
    }
}

/// A configuration field that is invalid, named as in [`SaConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid SA configuration: `{field}`: {reason}")]
pub struct SaConfigError {
    /// The field, e.g. `"replay_window"` or `"traffic_selectors[2]"`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SaConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything about an SA except its algorithm and keys (RFC 4301 §4.4.2.1
/// lists the SAD fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaConfig {
    /// The SPI: ours for inbound SAs, the peer's for outbound.
    pub spi: Spi,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Outer addresses, same family.
    pub endpoints: TunnelEndpoints,
    /// UDP encapsulation (RFC 3948), if NAT traversal is in use.
    pub udp_encap: Option<UdpEncap>,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets, inbound only: 0 disables it, else
    /// `ReplayWindow::MIN_SIZE..=ReplayWindow::MAX_SIZE`.
    pub replay_window: u32,
    /// Byte/packet lifetimes.
    pub lifetime: Lifetime,
    /// Outer DSCP (tunnel mode, outbound).
    pub dscp: DscpPolicy,
    /// Outer DF bit (tunnel mode, outbound, IPv4 outer).
    pub df: DfPolicy,
    /// Outer TTL / hop limit (tunnel mode, outbound).
    pub outer_ttl: u8,
    /// Outbound: the sequence number at which to ask for a rekey; `None`
    /// for [`SeqCounter::default_rekey_for`].
    pub seq_rekey_threshold: Option<u64>,
    /// Inbound: the decrypted packet must match one of these
    /// (RFC 4301 §5.2 step 4). Outbound: informational.
    pub traffic_selectors: Vec<Selector>,
}

impl SaConfig {
    /// Default outer TTL.
    pub const DEFAULT_TTL: u8 = 64;

    /// A configuration with defaults: no NAT-T, no ESN, a
    /// [`ReplayWindow::DEFAULT_SIZE`] window, unlimited lifetime, DSCP and
    /// DF copied, TTL 64, default rekey threshold, and no traffic selectors
    /// (which inbound SAs must be given before [`validate`](Self::validate)
    /// passes).
    pub fn new(spi: Spi, direction: Direction, mode: Mode, endpoints: TunnelEndpoints) -> Self {
        Self {
            spi,
            direction,
            mode,
            endpoints,
            udp_encap: None,
            esn: false,
            replay_window: ReplayWindow::DEFAULT_SIZE,
            lifetime: Lifetime::UNLIMITED,
            dscp: DscpPolicy::Copy,
            df: DfPolicy::Copy,
            outer_ttl: Self::DEFAULT_TTL,
            seq_rekey_threshold: None,
            traffic_selectors: Vec::new(),
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SaConfigError> {
        // `spi` is valid by construction.
        let TunnelEndpoints { local, remote } = self.endpoints;
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(SaConfigError::new(
                "endpoints",
                format!("local {local} and remote {remote} are of different address families"),
            ));
        }
        for (field, addr) in [("endpoints.local", local), ("endpoints.remote", remote)] {
            if addr.is_unspecified() || addr.is_multicast() {
                return Err(SaConfigError::new(
                    field,
                    format!("{addr} is not a unicast address"),
                ));
            }
        }
        if let Some(u) = self.udp_encap {
            if u.src_port == 0 {
                return Err(SaConfigError::new("udp_encap.src_port", "must not be 0"));
            }
            if u.dst_port == 0 {
                return Err(SaConfigError::new("udp_encap.dst_port", "must not be 0"));
            }
        }
        if self.direction == Direction::Inbound {
            ReplayWindow::new(self.replay_window)
                .map_err(|e| SaConfigError::new("replay_window", e.to_string()))?;
        }
        self.lifetime.validate()?;
        if let DscpPolicy::Set(d) = self.dscp {
            if d > 63 {
                return Err(SaConfigError::new(
                    "dscp",
                    format!("DSCP {d} does not fit in 6 bits"),
                ));
            }
        }
        if self.outer_ttl == 0 {
            return Err(SaConfigError::new("outer_ttl", "must not be 0"));
        }
        if let Some(t) = self.seq_rekey_threshold {
            let max = SeqCounter::max_for(self.esn);
            if t == 0 || t > max {
                return Err(SaConfigError::new(
                    "seq_rekey_threshold",
                    format!("{t} outside 1..={max}"),
                ));
            }
        }
        if self.direction == Direction::Inbound && self.traffic_selectors.is_empty() {
            return Err(SaConfigError::new(
                "traffic_selectors",
                "an inbound SA needs at least one selector to check decrypted packets against",
            ));
        }
        for (i, sel) in self.traffic_selectors.iter().enumerate() {
            sel.validate().map_err(|e| {
                SaConfigError::new(format!("traffic_selectors[{i}]"), e.to_string())
            })?;
        }
        Ok(())
    }

    /// The rekey threshold in force.
    pub fn seq_rekey_threshold_or_default(&self) -> u64 {
        self.seq_rekey_threshold
            .unwrap_or(SeqCounter::default_rekey_for(self.esn))
    }

    /// A fresh outbound sequence counter for this SA.
    pub fn seq_counter(&self) -> SeqCounter {
        SeqCounter::new(self.esn, self.seq_rekey_threshold_or_default())
    }

    /// A fresh replay window for this SA (allocates; control path).
    pub fn replay(&self) -> Result<ReplayWindow, SaConfigError> {
        ReplayWindow::new(self.replay_window)
            .map_err(|e| SaConfigError::new("replay_window", e.to_string()))
    }

    /// A fresh lifetime counter for this SA.
    pub fn lifetime_state(&self) -> LifetimeState {
        LifetimeState::new(self.lifetime)
    }

    /// Whether a decrypted inbound packet is allowed by the SA's traffic
    /// selectors (RFC 4301 §5.2 step 4).
    #[inline]
    pub fn selectors_match(&self, key: &super::spd::FlowKey) -> bool {
        self.traffic_selectors.iter().any(|s| s.matches(key))
    }

    /// [`SaConfig::selectors_match`] for a packet whose ports may be
    /// unknown: then only selectors with ANY ports match (RFC 4301 §7.1).
    pub fn selectors_match_packet(&self, key: &super::outbound::PacketKey) -> bool {
        self.traffic_selectors
            .iter()
            .any(|s| (!key.opaque || super::spd::any_ports(s)) && s.matches(&key.key))
    }
}

#[cfg(test)]
mod tests {
    use super::super::spd::{FlowKey, IpPrefix};
    use super::*;

    /// The key schedule's lines the burst pipeline prefetches depend on the
    /// payload's length: the fixed lines, and of a per-block table as many
    /// entries from its end as the payload has blocks.
    #[test]
    fn hint_picks_key_lines_by_payload_length() {
        use cpu::prefetch::Lines;
        let at = |base: usize, mask: u16| Lines::from_parts(base, mask);
        let rounds = at(4096, 0b111);
        // ipsec-mb's layout: 48 powers ending at byte 1008.
        let powers = BlockTable {
            end: (4096 + 1008) as *const u8,
            cap: 48,
        };
        let h = SaHint::new(at(64, 0b111), at(1024, 1), rounds, Some(powers));
        assert_eq!(h.keys(64), at(4096, 0b111 | 0b11 << 14));
        assert_eq!(h.keys(570), at(4096, 0b111 | 0xffff << 6));
        assert_eq!(h.keys(1400), at(4096, u16::MAX));
        // Counted for the lab: 3 SA lines, 1 transform line, then 3 round
        // key lines and 2, 10 or 13 lines of powers.
        assert_eq!(h.line_count(64), 3 + 1 + 5);
        assert_eq!(h.line_count(570), 3 + 1 + 13);
        assert_eq!(h.line_count(1400), 3 + 1 + 16);
        // No table: the fixed lines whatever the length.
        let h = SaHint::new(at(64, 0b111), at(1024, 1), rounds, None);
        assert_eq!(h.keys(1400), rounds);
        // A table beyond the base's 16 lines fits neither the compact form
        // nor the mask: left out (a hint, not needed for correctness).
        let far = BlockTable {
            end: (4096 + 2048) as *const u8,
            cap: 8,
        };
        let h = SaHint::new(at(64, 0b111), at(1024, 1), rounds, Some(far));
        assert_eq!(h.keys(16), rounds);
        // Only a table: based on its own lines.
        let h = SaHint::new(at(64, 0b111), at(1024, 1), Lines::NONE, Some(powers));
        assert_eq!(h.keys(64), at(4096 + 192, 0b11 << 11));
        assert_eq!(h.keys(1400), at(4096 + 192, 0xfff << 1 | 1));
        h.prefetch(1400);
        h.prefetch_crypto(64);
    }

    fn inbound() -> SaConfig {
        let mut c = SaConfig::new(
            Spi::new(0x1000).unwrap(),
            Direction::Inbound,
            Mode::Tunnel,
            TunnelEndpoints {
                local: "192.0.2.1".parse().unwrap(),
                remote: "198.51.100.1".parse().unwrap(),
            },
        );
        c.traffic_selectors.push(Selector::new(
            "10.2.0.0/16".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ));
        c
    }

    #[test]
    fn spi_reserved_values() {
        for v in [0, 1, 255] {
            assert_eq!(Spi::new(v), Err(ReservedSpi(v)));
        }
        assert_eq!(Spi::new(256).map(Spi::get), Ok(256));
        assert_eq!(Spi::try_from(u32::MAX).map(Spi::get), Ok(u32::MAX));
        assert_eq!(Spi::new(0xdead_beef).unwrap().to_string(), "0xdeadbeef");
        assert_eq!(format!("{:?}", Spi::new(256).unwrap()), "Spi(0x00000100)");
    }

    #[test]
    fn valid_config_passes() {
        assert_eq!(inbound().validate(), Ok(()));
        let mut out = inbound();
        out.direction = Direction::Outbound;
        out.traffic_selectors.clear();
        out.replay_window = 1; // ignored outbound
        out.udp_encap = Some(UdpEncap::nat_t());
        out.esn = true;
        out.seq_rekey_threshold = Some(u64::MAX);
        assert_eq!(out.validate(), Ok(()));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        type Edit = fn(&mut SaConfig);
        let cases: &[(Edit, &str)] = &[
            (
                |c| c.endpoints.remote = "2001:db8::1".parse().unwrap(),
                "endpoints",
            ),
            (
                |c| c.endpoints.local = "0.0.0.0".parse().unwrap(),
                "endpoints.local",
            ),
            (
                |c| c.endpoints.remote = "224.0.0.1".parse().unwrap(),
                "endpoints.remote",
            ),
            (
                |c| {
                    c.udp_encap = Some(UdpEncap {
                        src_port: 0,
                        dst_port: 4500,
                    })
                },
                "udp_encap.src_port",
            ),
            (
                |c| {
                    c.udp_encap = Some(UdpEncap {
                        src_port: 4500,
                        dst_port: 0,
                    })
                },
                "udp_encap.dst_port",
            ),
            (|c| c.replay_window = 32, "replay_window"),
            (|c| c.replay_window = 65_537, "replay_window"),
            (
                |c| {
                    c.lifetime.soft_bytes = Some(10);
                    c.lifetime.hard_bytes = Some(5);
                },
                "lifetime.soft_bytes",
            ),
            (
                |c| c.lifetime.soft_packets = Some(0),
                "lifetime.soft_packets",
            ),
            (
                |c| c.lifetime.hard_packets = Some(0),
                "lifetime.hard_packets",
            ),
            (|c| c.dscp = DscpPolicy::Set(64), "dscp"),
            (|c| c.outer_ttl = 0, "outer_ttl"),
            (
                |c| c.seq_rekey_threshold = Some(1 << 32),
                "seq_rekey_threshold",
            ),
            (|c| c.seq_rekey_threshold = Some(0), "seq_rekey_threshold"),
            (|c| c.traffic_selectors.clear(), "traffic_selectors"),
            (
                |c| {
                    c.traffic_selectors
                        .push(Selector::new(IpPrefix::ANY_V4, IpPrefix::ANY_V6))
                },
                "traffic_selectors[1]",
            ),
        ];
        for (edit, field) in cases {
            let mut c = inbound();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.field, *field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn derived_state() {
        let c = inbound();
        assert_eq!(c.replay().unwrap().size(), ReplayWindow::DEFAULT_SIZE);
        assert_eq!(
            c.seq_rekey_threshold_or_default(),
            SeqCounter::DEFAULT_REKEY_32
        );
        assert!(!c.lifetime_state().is_expired());
        let key = |src: &str| FlowKey {
            src: src.parse().unwrap(),
            dst: "10.1.0.9".parse().unwrap(),
            proto: 6,
            sport: 1,
            dport: 2,
        };
        assert!(c.selectors_match(&key("10.2.3.4")));
        assert!(!c.selectors_match(&key("10.3.3.4")));
    }

    #[test]
    fn lifetime_events_fire_once() {
        let mut s = LifetimeState::new(Lifetime {
            soft_packets: Some(3),
            hard_packets: Some(5),
            ..Lifetime::UNLIMITED
        });
        let mut events = Vec::new();
        for _ in 0..5 {
            assert!(!s.is_expired());
            events.push(s.record(100));
        }
        assert!(s.is_expired());
        // Later records (which the engine should not make) stay quiet.
        assert!(s.record(100).is_empty());
        let fired: Vec<_> = events.iter().flat_map(|e| e.iter()).collect();
        assert_eq!(fired, vec![LifetimeEvent::Soft, LifetimeEvent::Hard]);
        assert!(events[2].soft && events[4].hard);
        assert_eq!((s.packets(), s.bytes()), (6, 600));
    }

    #[test]
    fn lifetime_bytes_and_both_at_once() {
        let mut s = LifetimeState::new(Lifetime {
            soft_bytes: Some(1000),
            hard_bytes: Some(1500),
            ..Lifetime::UNLIMITED
        });
        assert!(s.record(999).is_empty());
        assert_eq!(
            s.record(1).iter().collect::<Vec<_>>(),
            vec![LifetimeEvent::Soft]
        );
        assert!(s.record(499).is_empty());
        assert!(s.record(1).hard);
        assert!(s.is_expired());

        // One big packet crossing both limits reports both, once.
        let mut s = LifetimeState::new(Lifetime {
            soft_bytes: Some(10),
            hard_packets: Some(1),
            ..Lifetime::UNLIMITED
        });
        let ev = s.record(9000);
        assert_eq!(
            ev.iter().map(SaEvent::from).collect::<Vec<_>>(),
            vec![SaEvent::SoftLifetime, SaEvent::HardLifetime]
        );
        assert!(s.record(1).is_empty());

        // Hard only: soft is implied and reported with it.
        let mut s = LifetimeState::new(Lifetime {
            hard_packets: Some(2),
            ..Lifetime::UNLIMITED
        });
        assert!(s.record(1).is_empty());
        assert_eq!(
            s.record(1),
            LifetimeEvents {
                soft: true,
                hard: true
            }
        );

        let mut s = LifetimeState::new(Lifetime::UNLIMITED);
        for _ in 0..1000 {
            assert!(s.record(u64::MAX / 100).is_empty());
        }
        assert!(!s.is_expired());
    }

    #[test]
    fn seq_counter_32_bit() {
        let mut c = SeqCounter::new(false, SeqCounter::DEFAULT_REKEY_32);
        assert_eq!(
            c.allocate(),
            Ok(NextSeq {
                seq: 1,
                event: None
            })
        );
        assert_eq!(c.allocate().map(|n| n.seq), Ok(2));

        // Jump to just before the rekey threshold.
        c.last = SeqCounter::DEFAULT_REKEY_32 - 2;
        assert_eq!(c.allocate().map(|n| n.event), Ok(None));
        assert_eq!(
            c.allocate(),
            Ok(NextSeq {
                seq: SeqCounter::DEFAULT_REKEY_32,
                event: Some(SaEvent::SeqNearOverflow)
            })
        );
        assert_eq!(c.allocate().map(|n| n.event), Ok(None));

        // The last value is sent, then the counter refuses.
        c.last = u64::from(u32::MAX) - 1;
        assert_eq!(c.allocate().map(|n| n.seq), Ok(u64::from(u32::MAX)));
        assert!(c.is_exhausted());
        assert_eq!(
            c.allocate(),
            Err(SeqExhausted {
                event: Some(SaEvent::SeqOverflow)
            })
        );
        assert_eq!(c.allocate(), Err(SeqExhausted { event: None }));
        assert_eq!(c.last(), u64::from(u32::MAX));
    }

    #[test]
    fn seq_counter_esn() {
        let mut c = SeqCounter::new(true, u64::MAX - 1);
        c.last = u64::from(u32::MAX);
        // No cap at 2^32 with ESN.
        assert_eq!(c.allocate().map(|n| n.seq), Ok(1 << 32));
        c.last = u64::MAX - 2;
        assert_eq!(
            c.allocate().map(|n| n.event),
            Ok(Some(SaEvent::SeqNearOverflow))
        );
        assert_eq!(
            c.allocate(),
            Ok(NextSeq {
                seq: u64::MAX,
                event: None
            })
        );
        assert_eq!(
            c.allocate(),
            Err(SeqExhausted {
                event: Some(SaEvent::SeqOverflow)
            })
        );
        assert_eq!(c.allocate(), Err(SeqExhausted { event: None }));
    }

    #[test]
    fn seq_threshold_clamped() {
        let mut c = SeqCounter::new(false, u64::MAX);
        c.last = u64::from(u32::MAX) - 1;
        assert_eq!(
            c.allocate().map(|n| n.event),
            Ok(Some(SaEvent::SeqNearOverflow))
        );
        let mut c = SeqCounter::new(false, 0);
        assert_eq!(
            c.allocate().map(|n| n.event),
            Ok(Some(SaEvent::SeqNearOverflow))
        );
    }
}

/// Where an installed SA's hot data lives, recorded once (when the SA is
/// boxed into its table) so that the burst pipeline can prefetch all of it
/// from one load instead of walking SA, transform and key schedule one
/// dependent miss after another. Plain addresses: prefetching them is
/// sound even if the SA has since gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaHint {
    /// The SA's hot cache lines, the transform object's and the key
    /// schedule's: base addresses and line masks (32 bytes, so that a hint
    /// and a tunnel's egress share a cache line).
    bases: [usize; 3],
    masks: [u16; 3],
    /// The key schedule's per-block table
    /// ([`EspTransform::block_table`](crate::crypto::EspTransform::block_table)),
    /// from the same base: where it ends, in 16-byte entries from the
    /// base, and how many entries it has (0: none).
    table: [u8; 2],
}

impl SaHint {
    /// From the lines of the SA, its transform object and key schedule,
    /// and the key schedule's per-block table.
    pub fn new(sa: Lines, transform: Lines, keys: Lines, table: Option<BlockTable>) -> Self {
        let (a, x) = sa.parts();
        let (b, y) = transform.parts();
        let (mut c, mut z) = keys.parts();
        let mut t = [0, 0];
        if let Some(table) = table {
            if z == 0 {
                // No other key lines: the table's own lines are the base.
                c = table.all_lines().parts().0;
            }
            // Only a table within the 16 lines of the same base fits the
            // compact form; otherwise all of its lines, if they start at
            // the base, for every length; else none.
            let rel = (table.end as usize).wrapping_sub(c);
            match u8::try_from(rel / BlockTable::ENTRY) {
                Ok(end) if rel % BlockTable::ENTRY == 0 && rel <= 16 * CACHE_LINE => {
                    t = [end, table.cap];
                }
                _ => {
                    let (tb, tm) = table.all_lines().parts();
                    if tb == c {
                        z |= tm;
                    }
                }
            }
        }
        Self {
            bases: [a, b, c],
            masks: [x, y, z],
            table: t,
        }
    }

    /// The key schedule's lines for a payload of `len` bytes.
    #[inline(always)]
    fn keys(&self, len: usize) -> Lines {
        let [end, cap] = self.table;
        Lines::from_parts(
            self.bases[2],
            self.masks[2] | block_table_mask(end, cap, len),
        )
    }

    /// Prefetches everything a payload of `len` bytes needs.
    #[inline(always)]
    pub fn prefetch(&self, len: usize) {
        Lines::from_parts(self.bases[0], self.masks[0]).prefetch();
        self.prefetch_crypto(len);
    }

    /// How many cache lines [`Self::prefetch`] fetches for a payload of
    /// `len` bytes (the SA's, the transform's and the key schedule's; a
    /// line shared by two of them counts twice): the per-SA state a packet
    /// needs from memory when the SAs do not fit in the cache, which the
    /// lab reports next to the rate of its SA-count series.
    pub fn line_count(&self, len: usize) -> u32 {
        Lines::from_parts(self.bases[0], self.masks[0]).count()
            + Lines::from_parts(self.bases[1], self.masks[1]).count()
            + self.keys(len).count()
    }

    /// Prefetches all but the SA itself, for a payload of `len` bytes.
    #[inline(always)]
    pub fn prefetch_crypto(&self, len: usize) {
        Lines::from_parts(self.bases[1], self.masks[1]).prefetch();
        self.keys(len).prefetch();
    }
}
