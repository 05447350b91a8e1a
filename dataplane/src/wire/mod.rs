//! Zero-copy packet views over byte slices, in the style of smoltcp.
//!
//! Each protocol has a view type (`EthernetFrame`, `Ipv4Packet`, ...) that
//! wraps any `T: AsRef<[u8]>` and reads header fields in place; setters are
//! available when `T: AsMut<[u8]>`. `new_checked` validates lengths once, so
//! every getter afterwards is infallible and never panics. Where a header has
//! a compact meaning, a `*Repr` type offers `parse` (view to value) and
//! `emit` (value to bytes).
//!
//! Nothing here allocates or uses `unsafe`; the same code runs on mbuf data,
//! in unit tests, fuzzers and benches.

#![forbid(unsafe_code)]

pub mod arp;
pub mod esp;
pub mod ethernet;
pub mod icmp;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod udp_encap;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use esp::{EspPacket, EspRepr, EspTrailer};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};
pub use icmp::{Icmpv4Packet, Icmpv4Repr, Icmpv4Type, Icmpv6Packet, Icmpv6Repr, Icmpv6Type};
pub use ip::{IpProtocol, IpVersion};
pub use ipv4::{Ipv4Fixed, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtHeaders, Ipv6FragmentInfo, Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::{UdpPacket, UdpRepr};
pub use udp_encap::UdpEncap;

/// Why a buffer was rejected by a packet view.
///
/// Small and `Copy` so that it can index per-worker drop counters
/// (see [`WireError::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header or the length it announces.
    #[error("truncated packet")]
    Truncated,
    /// The IP version field does not match the view.
    #[error("bad IP version")]
    BadVersion,
    /// A header length field is below the protocol minimum.
    #[error("bad header length")]
    BadHeaderLen,
    /// A length field is inconsistent (e.g. shorter than the header).
    #[error("bad length field")]
    BadLength,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// ESP padding is out of range or not the default 1, 2, 3, ... sequence.
    #[error("bad ESP padding")]
    BadPadding,
    /// An option or extension header is malformed or misplaced.
    #[error("malformed option or extension header")]
    BadOption,
    /// The IPv6 extension header chain is longer than we are willing to walk.
    #[error("too many IPv6 extension headers")]
    TooManyExtHeaders,
    /// Well-formed, but a type or code this module does not represent.
    #[error("unsupported type or code")]
    Unsupported,
}

impl WireError {
    /// Number of variants, for sizing counter arrays.
    pub const COUNT: usize = 9;

    /// A dense index in `0..COUNT`, for drop counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::WireError;

    #[test]
    fn error_indices_are_dense() {
        let all = [
            WireError::Truncated,
            WireError::BadVersion,
            WireError::BadHeaderLen,
            WireError::BadLength,
            WireError::BadChecksum,
            WireError::BadPadding,
            WireError::BadOption,
            WireError::TooManyExtHeaders,
            WireError::Unsupported,
        ];
        assert_eq!(all.len(), WireError::COUNT);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        assert_eq!(WireError::Truncated.to_string(), "truncated packet");
    }
}
