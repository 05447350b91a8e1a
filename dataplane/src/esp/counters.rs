//! Packet, byte and drop counters.
//!
//! Each counter set has one writer, the worker that owns it, so the fields
//! are plain `u64`s: no atomics, no locks. For reporting, the worker sends a
//! [`snapshot`](SaCounters::snapshot) to the control plane, which sums them
//! with [`merge`](SaCounters::merge).

use super::ecn::EcnDrop;
use super::replay::ReplayError;

/// Why a packet was dropped. Small and `Copy`: it indexes the drop arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than its headers or trailer say, or not a multiple of the
    /// cipher's block size.
    BadLength,
    /// A malformed header (IP, UDP, ESP).
    BadHeader,
    /// No inbound SA for this SPI (RFC 4303 §3.4.2).
    UnknownSpi,
    /// Replay window: a duplicate or invalid sequence number.
    Replay,
    /// Replay window: left of the window.
    TooOld,
    /// ICV verification failed (RFC 4303 §3.4.4).
    AuthFailed,
    /// Padding or pad length invalid after decryption (RFC 4303 §2.4).
    BadPadding,
    /// The decrypted packet does not match the SA's traffic selectors
    /// (RFC 4301 §5.2, step 4).
    SelectorMismatch,
    /// The SA reached its hard lifetime.
    LifetimeExpired,
    /// The outbound sequence number would cycle (RFC 4303 §3.3.3).
    SeqOverflow,
    /// No SPD entry matched (RFC 4301 §5.1: discard).
    NoPolicy,
    /// The matching SPD entry says DISCARD.
    PolicyDiscard,
    /// Outer CE over a Not-ECT inner packet at decapsulation
    /// (RFC 6040 §4.2 says drop).
    EcnCeOnNotEct,
    /// A NAT-keepalive (RFC 3948 §2.3): counted and dropped.
    NatKeepalive,
    /// A packet not addressed to this gateway.
    NotForUs,
    /// A feature this engine does not implement (e.g. IP options it cannot
    /// carry, a next header it does not handle).
    Unsupported,
    /// A packet whose ports are unknown (a non-initial fragment, or one
    /// too short to show them) that a PROTECT or DISCARD policy with
    /// specific ports may cover (RFC 4301 §7.1; see `Spd::lookup_opaque`).
    OpaquePorts,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 17] = [
        DropReason::BadLength,
        DropReason::BadHeader,
        DropReason::UnknownSpi,
        DropReason::Replay,
        DropReason::TooOld,
        DropReason::AuthFailed,
        DropReason::BadPadding,
        DropReason::SelectorMismatch,
        DropReason::LifetimeExpired,
        DropReason::SeqOverflow,
        DropReason::NoPolicy,
        DropReason::PolicyDiscard,
        DropReason::EcnCeOnNotEct,
        DropReason::NatKeepalive,
        DropReason::NotForUs,
        DropReason::Unsupported,
        DropReason::OpaquePorts,
    ];

    /// Number of reasons: the length of drop arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// Index into a `[u64; DropReason::COUNT]` array.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// snake_case name for stats output.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::BadLength => "bad_length",
            DropReason::BadHeader => "bad_header",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too_old",
            DropReason::AuthFailed => "auth_failed",
            DropReason::BadPadding => "bad_padding",
            DropReason::SelectorMismatch => "selector_mismatch",
            DropReason::LifetimeExpired => "lifetime_expired",
            DropReason::SeqOverflow => "seq_overflow",
            DropReason::NoPolicy => "no_policy",
            DropReason::PolicyDiscard => "policy_discard",
            DropReason::EcnCeOnNotEct => "ecn_ce_on_not_ect",
            DropReason::NatKeepalive => "nat_keepalive",
            DropReason::NotForUs => "not_for_us",
            DropReason::Unsupported => "unsupported",
            DropReason::OpaquePorts => "opaque_ports",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ReplayError> for DropReason {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::TooOld => DropReason::TooOld,
            ReplayError::Duplicate | ReplayError::Invalid => DropReason::Replay,
        }
    }
}

impl From<EcnDrop> for DropReason {
    fn from(_: EcnDrop) -> Self {
        DropReason::EcnCeOnNotEct
    }
}

/// Counters of one SA. SAs are unidirectional (RFC 4301 §4.1), so each SA's
/// counters are for one direction; [`WorkerCounters`] holds one set per
/// direction for what is not attributable to an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SaCounters {
    /// Drops, indexed by [`DropReason::index`]. First (`repr(C)`): an SA
    /// lays its counters out so that the totals, written per packet, share
    /// a cache line with its lifetime state and these rarely written ones
    /// stay out of the way.
    pub drops: [u64; DropReason::COUNT],
    /// Packets processed successfully.
    pub packets: u64,
    /// Bytes of those packets (the plaintext inner packet's length).
    pub bytes: u64,
}

impl Default for SaCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl SaCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            packets: 0,
            bytes: 0,
            drops: [0; DropReason::COUNT],
        }
    }

    /// Count one packet of `bytes` bytes processed.
    #[inline]
    pub fn record_packet(&mut self, bytes: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes as u64);
    }

    /// Count one drop.
    #[inline]
    pub fn record_drop(&mut self, reason: DropReason) {
        self.record_drops(reason, 1);
    }

    /// Count `n` drops for one reason (a burst stage's failures).
    #[inline]
    pub fn record_drops(&mut self, reason: DropReason, n: u64) {
        let slot = &mut self.drops[reason.index()];
        *slot = slot.wrapping_add(n);
    }

    /// Drops for one reason.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().fold(0, |a, &d| a.wrapping_add(d))
    }

    /// A copy to send off for reporting.
    pub fn snapshot(&self) -> Self {
        *self
    }

    /// Add another set (e.g. the same SA's counters from another worker, or
    /// the sum over SAs).
    pub fn merge(&mut self, other: &Self) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// `(name, count)` for every reason with a non-zero count, for stats
    /// output.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops[r.index()]))
            .filter(|&(_, n)| n != 0)
    }
}

/// Counters of one worker: what it processed in each direction, including
/// drops that belong to no SA (unknown SPI, no policy, NAT keepalives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Packets received from the protected side's peer (ESP in).
    pub inbound: SaCounters,
    /// Packets to protect (plaintext in, ESP out).
    pub outbound: SaCounters,
    /// Packets passed through by a BYPASS policy.
    pub bypass_packets: u64,
    /// Poll-loop iterations (for load estimation).
    pub polls: u64,
    /// Poll-loop iterations that received nothing.
    pub idle_polls: u64,
}

impl WorkerCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            inbound: SaCounters::new(),
            outbound: SaCounters::new(),
            bypass_packets: 0,
            polls: 0,
            idle_polls: 0,
        }
    }

    /// A copy to send off for reporting.
    pub fn snapshot(&self) -> Self {
        *self
    }

    /// Add another worker's counters.
    pub fn merge(&mut self, other: &Self) {
        self.inbound.merge(&other.inbound);
        self.outbound.merge(&other.outbound);
        self.bypass_packets = self.bypass_packets.wrapping_add(other.bypass_packets);
        self.polls = self.polls.wrapping_add(other.polls);
        self.idle_polls = self.idle_polls.wrapping_add(other.idle_polls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::AuthFailed.to_string(), "auth_failed");
    }

    #[test]
    fn record_and_merge() {
        let mut a = SaCounters::new();
        a.record_packet(100);
        a.record_packet(50);
        a.record_drop(DropReason::AuthFailed);
        a.record_drops(DropReason::Replay, 3);
        assert_eq!((a.packets, a.bytes), (2, 150));
        assert_eq!(a.drops_for(DropReason::Replay), 3);
        assert_eq!(a.total_drops(), 4);

        let mut b = a.snapshot();
        b.merge(&a);
        assert_eq!((b.packets, b.bytes, b.total_drops()), (4, 300, 8));
        assert_eq!(
            b.nonzero_drops().collect::<Vec<_>>(),
            vec![("replay", 6), ("auth_failed", 2)]
        );

        let mut w = WorkerCounters::new();
        w.inbound = a;
        w.polls = 10;
        let mut total = WorkerCounters::default();
        total.merge(&w);
        total.merge(&w.snapshot());
        assert_eq!(total.inbound.packets, 4);
        assert_eq!(total.polls, 20);
    }

    #[test]
    fn replay_errors_map_to_reasons() {
        assert_eq!(DropReason::from(ReplayError::TooOld), DropReason::TooOld);
        assert_eq!(DropReason::from(ReplayError::Duplicate), DropReason::Replay);
        assert_eq!(DropReason::from(ReplayError::Invalid), DropReason::Replay);
        assert_eq!(DropReason::from(EcnDrop), DropReason::EcnCeOnNotEct);
    }
}
