//! ICMP for IPv4 (RFC 792) and IPv6 (RFC 4443), the messages a tunnel
//! gateway sends or answers: echo, destination unreachable with
//! fragmentation-needed (next-hop MTU per RFC 1191 §4), packet too big, time
//! exceeded, and IPv6 neighbor solicitation/advertisement with link-layer
//! address options (RFC 4861 §4.3, §4.4, §4.6.1).
//!
//! ```text
//! |     Type      |     Code      |          Checksum             |
//! |  type-specific 32 bits (identifier/sequence, MTU, flags, ...)  |
//! |  data (echo payload, quoted invoking packet, NDP target+opts)  |
//! ```
//!
//! ICMPv4 checksums cover the message only; ICMPv6 checksums also cover the
//! IPv6 pseudo-header (RFC 4443 §2.3). The message is the whole buffer given
//! to the view: slice it to the IP payload first.

use core::net::Ipv6Addr;

use super::ip::checksum;
use super::{EthernetAddress, IpProtocol, WireError};

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// ICMPv4 destination unreachable, code 4 (RFC 1191 §4).
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    /// ICMPv6 packet too big (RFC 4443 §3.2).
    pub const MTU: Range<usize> = 4..8;
    /// Neighbor advertisement R/S/O flags (RFC 4861 §4.4).
    pub const NA_FLAGS: usize = 4;
    pub const REST: Range<usize> = 4..8;
    pub const DATA: RangeFrom<usize> = 8..;
    pub const NDP_TARGET: Range<usize> = 8..24;
    pub const NDP_OPTIONS: RangeFrom<usize> = 24..;
}

/// Length of the ICMP header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// How much of an invoking IPv6 packet an ICMPv6 error may quote: "as much
/// of invoking packet as possible without the ICMPv6 packet exceeding the
/// minimum IPv6 MTU" (RFC 4443 §2.4(c)): 1280 − 40 − 8.
pub const ICMPV6_MAX_QUOTE: usize = 1232;

/// An ICMPv4 message type; unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv4Type(pub u8);

impl Icmpv4Type {
    /// Echo reply.
    pub const ECHO_REPLY: Icmpv4Type = Icmpv4Type(0);
    /// Destination unreachable.
    pub const DST_UNREACHABLE: Icmpv4Type = Icmpv4Type(3);
    /// Echo request.
    pub const ECHO_REQUEST: Icmpv4Type = Icmpv4Type(8);
    /// Time exceeded.
    pub const TIME_EXCEEDED: Icmpv4Type = Icmpv4Type(11);
}

/// Destination unreachable code "fragmentation needed and DF set" (RFC 792),
/// which carries the next-hop MTU (RFC 1191 §4).
pub const ICMPV4_FRAG_NEEDED: u8 = 4;

/// An ICMPv6 message type; unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv6Type(pub u8);

impl Icmpv6Type {
    /// Destination unreachable (RFC 4443 §3.1).
    pub const DST_UNREACHABLE: Icmpv6Type = Icmpv6Type(1);
    /// Packet too big (RFC 4443 §3.2).
    pub const PACKET_TOO_BIG: Icmpv6Type = Icmpv6Type(2);
    /// Time exceeded (RFC 4443 §3.3).
    pub const TIME_EXCEEDED: Icmpv6Type = Icmpv6Type(3);
    /// Echo request (RFC 4443 §4.1).
    pub const ECHO_REQUEST: Icmpv6Type = Icmpv6Type(128);
    /// Echo reply (RFC 4443 §4.2).
    pub const ECHO_REPLY: Icmpv6Type = Icmpv6Type(129);
    /// Neighbor solicitation (RFC 4861 §4.3).
    pub const NEIGHBOR_SOLICIT: Icmpv6Type = Icmpv6Type(135);
    /// Neighbor advertisement (RFC 4861 §4.4).
    pub const NEIGHBOR_ADVERT: Icmpv6Type = Icmpv6Type(136);
}

/// NDP option types (RFC 4861 §4.6).
const NDP_OPT_SOURCE_LLADDR: u8 = 1;
const NDP_OPT_TARGET_LLADDR: u8 = 2;
/// Length of an Ethernet link-layer address option (RFC 4861 §4.6.1).
const NDP_LLADDR_OPT_LEN: usize = 8;

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// Getters shared by both ICMP views.
macro_rules! icmp_common {
    ($packet:ident, $ty:ident) => {
        impl<T: AsRef<[u8]>> $packet<T> {
            /// Wraps a buffer without any check.
            pub const fn new_unchecked(buffer: T) -> $packet<T> {
                $packet { buffer }
            }

            /// Wraps a buffer holding at least the 8-byte header.
            pub fn new_checked(buffer: T) -> Result<$packet<T>, WireError> {
                let packet = Self::new_unchecked(buffer);
                packet.check_len()?;
                Ok(packet)
            }

            /// Checks that the 8-byte header is present.
            pub fn check_len(&self) -> Result<(), WireError> {
                if self.buffer.as_ref().len() < HEADER_LEN {
                    Err(WireError::Truncated)
                } else {
                    Ok(())
                }
            }

            /// Returns the underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
                let d = &self.buffer.as_ref()[range];
                u16::from_be_bytes([d[0], d[1]])
            }

            /// Message type.
            pub fn msg_type(&self) -> $ty {
                $ty(self.buffer.as_ref()[field::TYPE])
            }

            /// Message code.
            pub fn msg_code(&self) -> u8 {
                self.buffer.as_ref()[field::CODE]
            }

            /// Checksum field.
            pub fn checksum(&self) -> u16 {
                self.read_u16(field::CHECKSUM)
            }

            /// Echo identifier (echo messages).
            pub fn echo_ident(&self) -> u16 {
                self.read_u16(field::ECHO_IDENT)
            }

            /// Echo sequence number (echo messages).
            pub fn echo_seq_no(&self) -> u16 {
                self.read_u16(field::ECHO_SEQNO)
            }

            /// Everything after the 8-byte header: echo data or the quoted
            /// invoking packet.
            pub fn data(&self) -> &[u8] {
                &self.buffer.as_ref()[field::DATA]
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $packet<T> {
            fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
                self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
            }

            /// Sets the message type.
            pub fn set_msg_type(&mut self, t: $ty) {
                self.buffer.as_mut()[field::TYPE] = t.0;
            }

            /// Sets the message code.
            pub fn set_msg_code(&mut self, code: u8) {
                self.buffer.as_mut()[field::CODE] = code;
            }

            /// Sets the checksum field.
            pub fn set_checksum(&mut self, value: u16) {
                self.write_u16(field::CHECKSUM, value)
            }

            /// Sets the echo identifier.
            pub fn set_echo_ident(&mut self, v: u16) {
                self.write_u16(field::ECHO_IDENT, v)
            }

            /// Sets the echo sequence number.
            pub fn set_echo_seq_no(&mut self, v: u16) {
                self.write_u16(field::ECHO_SEQNO, v)
            }

            /// Everything after the header, mutably.
            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[field::DATA]
            }
        }
    };
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

icmp_common!(Icmpv4Packet, Icmpv4Type);

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        self.read_u16(field::NEXT_HOP_MTU)
    }

    /// Computes the checksum over the message (checksum field as zero).
    pub fn compute_checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        !checksum::combine(&[checksum::data(&d[..2]), checksum::data(&d[4..])])
    }

    /// Whether the checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the next-hop MTU (and zeroes the unused bytes before it).
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        self.write_u16(field::ECHO_IDENT, 0);
        self.write_u16(field::NEXT_HOP_MTU, mtu)
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c)
    }
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

icmp_common!(Icmpv6Packet, Icmpv6Type);

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// MTU of a packet-too-big message.
    pub fn mtu(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::MTU];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Router, Solicited and Override flags of a neighbor advertisement, as
    /// `(router, solicited, override)`.
    pub fn na_flags(&self) -> (bool, bool, bool) {
        let f = self.buffer.as_ref()[field::NA_FLAGS];
        (
            f & NA_ROUTER != 0,
            f & NA_SOLICITED != 0,
            f & NA_OVERRIDE != 0,
        )
    }

    /// Target address of a neighbor solicitation or advertisement, or `None`
    /// if the message is shorter than 24 bytes.
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        let t: [u8; 16] = self
            .buffer
            .as_ref()
            .get(field::NDP_TARGET)?
            .try_into()
            .ok()?;
        Some(Ipv6Addr::from(t))
    }

    /// NDP options after the target address (empty if there are none or the
    /// message is too short to have them).
    pub fn ndp_options(&self) -> &[u8] {
        self.buffer.as_ref().get(field::NDP_OPTIONS).unwrap_or(&[])
    }

    /// Computes the checksum with the IPv6 pseudo-header (RFC 4443 §2.3).
    pub fn compute_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        let d = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, d.len() as u32);
        !checksum::combine(&[pseudo, checksum::data(&d[..2]), checksum::data(&d[4..])])
    }

    /// Whether the checksum verifies.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let d = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, d.len() as u32);
        checksum::combine(&[pseudo, checksum::data(d)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the packet-too-big MTU.
    pub fn set_mtu(&mut self, mtu: u32) {
        self.buffer.as_mut()[field::MTU].copy_from_slice(&mtu.to_be_bytes());
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let c = self.compute_checksum(src, dst);
        self.set_checksum(c)
    }
}

/// Finds a link-layer address option of `kind` among NDP `options`.
///
/// RFC 4861 §4.6: every option's length (in 8-byte units) must be non-zero
/// ("Nodes MUST silently discard an ND packet that contains an option with
/// length zero") and fit (`BadOption` otherwise); unknown options are
/// skipped.
fn find_lladdr(options: &[u8], kind: u8) -> Result<Option<EthernetAddress>, WireError> {
    let mut found = None;
    let mut rest = options;
    while !rest.is_empty() {
        let len = usize::from(*rest.get(1).ok_or(WireError::BadOption)?) * 8;
        let opt = rest
            .get(..len)
            .filter(|_| len > 0)
            .ok_or(WireError::BadOption)?;
        if opt[0] == kind && found.is_none() {
            found = EthernetAddress::from_bytes(&opt[2..]);
        }
        rest = &rest[len..];
    }
    Ok(found)
}

fn emit_lladdr(out: &mut [u8], kind: u8, addr: EthernetAddress) {
    out[0] = kind;
    out[1] = 1;
    out[2..8].copy_from_slice(&addr.0);
}

/// The first bytes of an invoking IPv4 packet to quote in an ICMPv4 error:
/// "the internet header plus the first 64 bits of the original datagram's
/// data" (RFC 792). Falls back to 28 bytes if the IHL is invalid.
pub fn icmpv4_quote(ip_packet: &[u8]) -> &[u8] {
    let ihl = ip_packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    let header_len = if ihl >= 20 { ihl } else { 20 };
    &ip_packet[..ip_packet.len().min(header_len + 8)]
}

/// The first bytes of an invoking IPv6 packet to quote in an ICMPv6 error
/// (at most [`ICMPV6_MAX_QUOTE`]).
pub fn icmpv6_quote(ip_packet: &[u8]) -> &[u8] {
    &ip_packet[..ip_packet.len().min(ICMPV6_MAX_QUOTE)]
}

/// An ICMPv4 message this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo request (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Code; [`ICMPV4_FRAG_NEEDED`] for PMTU discovery.
        code: u8,
        /// Next-hop MTU (meaningful for code 4, RFC 1191 §4; 0 otherwise).
        next_hop_mtu: u16,
        /// Quoted invoking packet (see [`icmpv4_quote`]).
        data: &'a [u8],
    },
    /// Time exceeded (type 11); code 0 is TTL exceeded in transit.
    TimeExceeded {
        /// Code.
        code: u8,
        /// Quoted invoking packet.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// A fragmentation-needed error announcing `mtu` for `invoking` (an IPv4
    /// packet, quoted per RFC 792).
    pub fn frag_needed(mtu: u16, invoking: &'a [u8]) -> Icmpv4Repr<'a> {
        Icmpv4Repr::DstUnreachable {
            code: ICMPV4_FRAG_NEEDED,
            next_hop_mtu: mtu,
            data: icmpv4_quote(invoking),
        }
    }

    /// A TTL-exceeded-in-transit error for `invoking`.
    pub fn ttl_exceeded(invoking: &'a [u8]) -> Icmpv4Repr<'a> {
        Icmpv4Repr::TimeExceeded {
            code: 0,
            data: icmpv4_quote(invoking),
        }
    }

    /// Parses a message after verifying its checksum; echo messages must
    /// have code 0, other types are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
    ) -> Result<Icmpv4Repr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let data = &T::as_ref(packet.buffer)[field::DATA];
        let code = packet.msg_code();
        match (packet.msg_type(), code) {
            (Icmpv4Type::ECHO_REQUEST, 0) => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (Icmpv4Type::ECHO_REPLY, 0) => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (Icmpv4Type::DST_UNREACHABLE, _) => Ok(Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: packet.next_hop_mtu(),
                data,
            }),
            (Icmpv4Type::TIME_EXCEEDED, _) => Ok(Icmpv4Repr::TimeExceeded { code, data }),
            _ => Err(WireError::Unsupported),
        }
    }

    /// Length of the message this repr emits.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DstUnreachable { data, .. }
            | Icmpv4Repr::TimeExceeded { data, .. } => data,
        }
    }

    /// Writes the message, checksum included, into `packet`, whose buffer
    /// must be exactly [`Self::buffer_len`] bytes (`BadLength` otherwise).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() != self.buffer_len() {
            return Err(WireError::BadLength);
        }
        packet.buffer.as_mut()[field::REST].fill(0);
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. }
            | Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                let request = matches!(self, Icmpv4Repr::EchoRequest { .. });
                packet.set_msg_type(if request {
                    Icmpv4Type::ECHO_REQUEST
                } else {
                    Icmpv4Type::ECHO_REPLY
                });
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Icmpv4Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => {
                packet.set_msg_type(Icmpv4Type::DST_UNREACHABLE);
                packet.set_msg_code(code);
                packet.set_next_hop_mtu(next_hop_mtu);
            }
            Icmpv4Repr::TimeExceeded { code, .. } => {
                packet.set_msg_type(Icmpv4Type::TIME_EXCEEDED);
                packet.set_msg_code(code);
            }
        }
        packet.data_mut().copy_from_slice(self.data());
        packet.fill_checksum();
        Ok(())
    }
}

/// An ICMPv6 message this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
    /// Echo request (type 128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo reply (type 129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Destination unreachable (type 1).
    DstUnreachable {
        /// Code.
        code: u8,
        /// Quoted invoking packet (see [`icmpv6_quote`]).
        data: &'a [u8],
    },
    /// Packet too big (type 2, code 0).
    PacketTooBig {
        /// MTU of the next-hop link.
        mtu: u32,
        /// Quoted invoking packet.
        data: &'a [u8],
    },
    /// Time exceeded (type 3); code 0 is hop limit exceeded in transit.
    TimeExceeded {
        /// Code.
        code: u8,
        /// Quoted invoking packet.
        data: &'a [u8],
    },
    /// Neighbor solicitation (type 135, RFC 4861 §4.3).
    NeighborSolicit {
        /// The address whose link-layer address is wanted.
        target_addr: Ipv6Addr,
        /// Source link-layer address option.
        source_lladdr: Option<EthernetAddress>,
    },
    /// Neighbor advertisement (type 136, RFC 4861 §4.4).
    NeighborAdvert {
        /// R flag: the sender is a router.
        router: bool,
        /// S flag: sent in response to a solicitation.
        solicited: bool,
        /// O flag: override an existing cache entry.
        override_flag: bool,
        /// The advertised address.
        target_addr: Ipv6Addr,
        /// Target link-layer address option.
        target_lladdr: Option<EthernetAddress>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// A packet-too-big error announcing `mtu` for `invoking` (an IPv6
    /// packet, quoted up to [`ICMPV6_MAX_QUOTE`]).
    pub fn packet_too_big(mtu: u32, invoking: &'a [u8]) -> Icmpv6Repr<'a> {
        Icmpv6Repr::PacketTooBig {
            mtu,
            data: icmpv6_quote(invoking),
        }
    }

    /// A hop-limit-exceeded-in-transit error for `invoking`.
    pub fn hop_limit_exceeded(invoking: &'a [u8]) -> Icmpv6Repr<'a> {
        Icmpv6Repr::TimeExceeded {
            code: 0,
            data: icmpv6_quote(invoking),
        }
    }

    /// Parses a message after verifying its checksum against the IPv6
    /// pseudo-header. Echo, packet-too-big and NDP messages must have code 0
    /// (RFC 4861 §7.1.1 for NDP); NDP messages need 24 bytes (`Truncated`)
    /// and well-formed options (`BadOption`); other types are `Unsupported`.
    /// The IPv6 hop limit of 255 that NDP also requires is the caller's to
    /// check.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        packet: &Icmpv6Packet<&'a T>,
    ) -> Result<Icmpv6Repr<'a>, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let data = &T::as_ref(packet.buffer)[field::DATA];
        let code = packet.msg_code();
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        match (packet.msg_type(), code) {
            (Icmpv6Type::ECHO_REQUEST, 0) => Ok(Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }),
            (Icmpv6Type::ECHO_REPLY, 0) => Ok(Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            (Icmpv6Type::DST_UNREACHABLE, _) => Ok(Icmpv6Repr::DstUnreachable { code, data }),
            (Icmpv6Type::PACKET_TOO_BIG, 0) => Ok(Icmpv6Repr::PacketTooBig {
                mtu: packet.mtu(),
                data,
            }),
            (Icmpv6Type::TIME_EXCEEDED, _) => Ok(Icmpv6Repr::TimeExceeded { code, data }),
            (Icmpv6Type::NEIGHBOR_SOLICIT, 0) => Ok(Icmpv6Repr::NeighborSolicit {
                target_addr: packet.target_addr().ok_or(WireError::Truncated)?,
                source_lladdr: find_lladdr(packet.ndp_options(), NDP_OPT_SOURCE_LLADDR)?,
            }),
            (Icmpv6Type::NEIGHBOR_ADVERT, 0) => {
                let (router, solicited, override_flag) = packet.na_flags();
                Ok(Icmpv6Repr::NeighborAdvert {
                    router,
                    solicited,
                    override_flag,
                    target_addr: packet.target_addr().ok_or(WireError::Truncated)?,
                    target_lladdr: find_lladdr(packet.ndp_options(), NDP_OPT_TARGET_LLADDR)?,
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// Length of the message this repr emits.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Icmpv6Repr::EchoRequest { data, .. }
            | Icmpv6Repr::EchoReply { data, .. }
            | Icmpv6Repr::DstUnreachable { data, .. }
            | Icmpv6Repr::PacketTooBig { data, .. }
            | Icmpv6Repr::TimeExceeded { data, .. } => HEADER_LEN + data.len(),
            Icmpv6Repr::NeighborSolicit {
                source_lladdr: ll, ..
            }
            | Icmpv6Repr::NeighborAdvert {
                target_lladdr: ll, ..
            } => 24 + if ll.is_some() { NDP_LLADDR_OPT_LEN } else { 0 },
        }
    }

    /// Writes the message, checksum included, into `packet`, whose buffer
    /// must be exactly [`Self::buffer_len`] bytes (`BadLength` otherwise).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        packet: &mut Icmpv6Packet<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() != self.buffer_len() {
            return Err(WireError::BadLength);
        }
        packet.buffer.as_mut()[field::REST].fill(0);
        packet.set_msg_code(0);
        let (msg_type, data): (Icmpv6Type, &[u8]) = match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                let request = matches!(self, Icmpv6Repr::EchoRequest { .. });
                (
                    if request {
                        Icmpv6Type::ECHO_REQUEST
                    } else {
                        Icmpv6Type::ECHO_REPLY
                    },
                    data,
                )
            }
            Icmpv6Repr::DstUnreachable { code, data } => {
                packet.set_msg_code(code);
                (Icmpv6Type::DST_UNREACHABLE, data)
            }
            Icmpv6Repr::PacketTooBig { mtu, data } => {
                packet.set_mtu(mtu);
                (Icmpv6Type::PACKET_TOO_BIG, data)
            }
            Icmpv6Repr::TimeExceeded { code, data } => {
                packet.set_msg_code(code);
                (Icmpv6Type::TIME_EXCEEDED, data)
            }
            Icmpv6Repr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => {
                let buf = packet.buffer.as_mut();
                buf[field::NDP_TARGET].copy_from_slice(&target_addr.octets());
                if let Some(ll) = source_lladdr {
                    emit_lladdr(&mut buf[field::NDP_OPTIONS], NDP_OPT_SOURCE_LLADDR, ll);
                }
                (Icmpv6Type::NEIGHBOR_SOLICIT, &[])
            }
            Icmpv6Repr::NeighborAdvert {
                router,
                solicited,
                override_flag,
                target_addr,
                target_lladdr,
            } => {
                let buf = packet.buffer.as_mut();
                let flag = |set: bool, bit: u8| if set { bit } else { 0 };
                buf[field::NA_FLAGS] = flag(router, NA_ROUTER)
                    | flag(solicited, NA_SOLICITED)
                    | flag(override_flag, NA_OVERRIDE);
                buf[field::NDP_TARGET].copy_from_slice(&target_addr.octets());
                if let Some(ll) = target_lladdr {
                    emit_lladdr(&mut buf[field::NDP_OPTIONS], NDP_OPT_TARGET_LLADDR, ll);
                }
                (Icmpv6Type::NEIGHBOR_ADVERT, &[])
            }
        };
        packet.set_msg_type(msg_type);
        if !data.is_empty() {
            packet.data_mut().copy_from_slice(data);
        }
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // All vectors below were built by hand and checked with tshark, which
    // dissects them as named and reports "[Checksum Status: Good]".

    /// ICMPv4 echo request 10.0.0.1 -> 10.0.0.2, id 0x1234, seq 1, "abcdefgh".
    const V4_ECHO: &str = "08005435123400016162636465666768";
    /// ICMPv4 fragmentation needed, next-hop MTU 1400, quoting a UDP/4500
    /// packet's IPv4 header plus 8 bytes.
    const V4_FRAG_NEEDED: &str =
        "0304ce9300000578450005dc000040004011690e0a000002c00002011194119405c80000";
    /// ICMPv6 echo request fe80::1 -> fe80::2, id 0x1234, seq 1, "abcdefgh".
    const V6_ECHO: &str = "8000dee5123400016162636465666768";
    /// NS fe80::1 -> ff02::1:ff00:2 for fe80::2, SLLA 52:54:00:12:34:56.
    const V6_NS: &str = "8700f5db00000000fe8000000000000000000000000000020101525400123456";
    /// NA fe80::2 -> fe80::1 (S, O) for fe80::2, TLLA 02:00:00:00:00:02.
    const V6_NA: &str = "8800181a60000000fe8000000000000000000000000000020201020000000002";
    /// Packet too big 2001:db8::1 -> 2001:db8::2, MTU 1280, 10 quoted bytes.
    const V6_PTB: &str = "02000bf50000050060000000000811402001";

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_echo() {
        let bytes = hex::decode(V4_ECHO).unwrap();
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (Icmpv4Type::ECHO_REQUEST, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert_eq!(p.checksum(), 0x5435);
        assert_eq!(p.compute_checksum(), 0x5435);
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcdefgh"
            }
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn v4_frag_needed() {
        let bytes = hex::decode(V4_FRAG_NEEDED).unwrap();
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.next_hop_mtu(), 1400);
        let repr = Icmpv4Repr::parse(&p).unwrap();
        let Icmpv4Repr::DstUnreachable {
            code: ICMPV4_FRAG_NEEDED,
            next_hop_mtu: 1400,
            data,
        } = repr
        else {
            panic!("{repr:?}");
        };
        assert_eq!(data.len(), 28);
        // Building it again from the full invoking packet quotes 28 bytes.
        let mut invoking = data.to_vec();
        invoking.resize(1500, 0);
        let built = Icmpv4Repr::frag_needed(1400, &invoking);
        assert_eq!(built, repr);
        let mut out = vec![0u8; built.buffer_len()];
        built
            .emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);
        let te = Icmpv4Repr::ttl_exceeded(&invoking);
        assert_eq!(te.buffer_len(), 36);
    }

    #[test]
    fn v4_errors() {
        let bytes = hex::decode(V4_ECHO).unwrap();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
        let mut b = bytes.clone();
        b[9] ^= 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::BadChecksum)
        );
        let mut b = bytes.clone();
        b[0] = 13; // timestamp request
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::Unsupported)
        );
        let repr = Icmpv4Repr::EchoReply {
            ident: 1,
            seq_no: 2,
            data: b"x",
        };
        assert_eq!(
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut [0u8; 10][..])),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn v4_quote() {
        assert_eq!(icmpv4_quote(&[0x46; 100]).len(), 32);
        assert_eq!(icmpv4_quote(&[0x45; 10]).len(), 10);
        assert_eq!(icmpv4_quote(&[0x41; 100]).len(), 28);
        assert!(icmpv4_quote(&[]).is_empty());
        assert_eq!(icmpv6_quote(&[0; 2000]).len(), ICMPV6_MAX_QUOTE);
    }

    #[test]
    fn v6_echo() {
        let bytes = hex::decode(V6_ECHO).unwrap();
        let (s, d) = (a6("fe80::1"), a6("fe80::2"));
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::ECHO_REQUEST);
        assert_eq!(p.compute_checksum(s, d), 0xdee5);
        assert!(p.verify_checksum(s, d));
        let repr = Icmpv6Repr::parse(s, d, &p).unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcdefgh"
            }
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);
        assert_eq!(
            Icmpv6Repr::parse(s, a6("fe80::3"), &p),
            Err(WireError::BadChecksum)
        );
    }

    #[test]
    fn v6_neighbor_discovery() {
        let (s, d) = (a6("fe80::1"), a6("ff02::1:ff00:2"));
        let bytes = hex::decode(V6_NS).unwrap();
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.target_addr(), Some(a6("fe80::2")));
        assert_eq!(p.ndp_options().len(), 8);
        let ns = Icmpv6Repr::parse(s, d, &p).unwrap();
        let mac = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(
            ns,
            Icmpv6Repr::NeighborSolicit {
                target_addr: a6("fe80::2"),
                source_lladdr: Some(mac)
            }
        );
        let mut out = vec![0u8; ns.buffer_len()];
        ns.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);

        let (s, d) = (a6("fe80::2"), a6("fe80::1"));
        let bytes = hex::decode(V6_NA).unwrap();
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.na_flags(), (false, true, true));
        let na = Icmpv6Repr::parse(s, d, &p).unwrap();
        let expect = Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited: true,
            override_flag: true,
            target_addr: a6("fe80::2"),
            target_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 2])),
        };
        assert_eq!(na, expect);
        let mut out = vec![0u8; na.buffer_len()];
        na.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn v6_ndp_errors() {
        let (s, d) = (a6("fe80::1"), a6("ff02::1:ff00:2"));
        // Option with length zero.
        let mut b = hex::decode(V6_NS).unwrap();
        b[25] = 0;
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(
            Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::BadOption)
        );
        // Option running past the end.
        b[25] = 2;
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(
            Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::BadOption)
        );
        // Too short for the target address.
        let mut b = hex::decode(V6_NS).unwrap();
        b.truncate(20);
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.target_addr(), None);
        assert!(p.ndp_options().is_empty());
        assert_eq!(Icmpv6Repr::parse(s, d, &p), Err(WireError::Truncated));
        // Non-zero code.
        let mut b = hex::decode(V6_NS).unwrap();
        b[1] = 1;
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(
            Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()),
            Err(WireError::Unsupported)
        );
        // Without options.
        let ns = Icmpv6Repr::NeighborSolicit {
            target_addr: a6("fe80::2"),
            source_lladdr: None,
        };
        let mut out = [0u8; 24];
        ns.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(
            Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&out[..]).unwrap()),
            Ok(ns)
        );
    }

    #[test]
    fn v6_packet_too_big() {
        let (s, d) = (a6("2001:db8::1"), a6("2001:db8::2"));
        let bytes = hex::decode(V6_PTB).unwrap();
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.mtu(), 1280);
        let repr = Icmpv6Repr::parse(s, d, &p).unwrap();
        assert_eq!(repr, Icmpv6Repr::packet_too_big(1280, &bytes[8..]));
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, bytes);
        let big = [0u8; 1500];
        assert_eq!(Icmpv6Repr::hop_limit_exceeded(&big).buffer_len(), 1240);
    }

    proptest! {
        #[test]
        fn v4_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
                let _ = (p.next_hop_mtu(), p.data(), p.compute_checksum(), p.verify_checksum());
                let _ = Icmpv4Repr::parse(&p);
            }
        }

        #[test]
        fn v6_arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..64), fix in any::<bool>()) {
            let (s, d) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            if fix && bytes.len() >= HEADER_LEN {
                // Make the checksum right so parse gets past it.
                Icmpv6Packet::new_unchecked(&mut bytes[..]).fill_checksum(s, d);
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no(), p.mtu());
                let _ = (p.na_flags(), p.target_addr(), p.ndp_options(), p.data(), p.verify_checksum(s, d));
                let _ = Icmpv6Repr::parse(s, d, &p);
            }
        }

        #[test]
        fn v4_repr_roundtrip(kind in 0u8..4, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(),
                             data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let repr = match kind {
                0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
                1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
                2 => Icmpv4Repr::DstUnreachable { code, next_hop_mtu: a, data: &data },
                _ => Icmpv4Repr::TimeExceeded { code, data: &data },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..])).unwrap();
            let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
        }

        #[test]
        fn v6_repr_roundtrip(kind in 0u8..7, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(), mtu in any::<u32>(),
                             target in any::<[u8; 16]>(), ll in proptest::option::of(any::<[u8; 6]>()), f in any::<[bool; 3]>(),
                             data in proptest::collection::vec(any::<u8>(), 0..40),
                             s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
            let (s, d, target_addr) = (Ipv6Addr::from(s), Ipv6Addr::from(d), Ipv6Addr::from(target));
            let ll = ll.map(EthernetAddress);
            let repr = match kind {
                0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b, data: &data },
                1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b, data: &data },
                2 => Icmpv6Repr::DstUnreachable { code, data: &data },
                3 => Icmpv6Repr::PacketTooBig { mtu, data: &data },
                4 => Icmpv6Repr::TimeExceeded { code, data: &data },
                5 => Icmpv6Repr::NeighborSolicit { target_addr, source_lladdr: ll },
                _ => Icmpv6Repr::NeighborAdvert {
                    router: f[0], solicited: f[1], override_flag: f[2], target_addr, target_lladdr: ll,
                },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(s, d, &mut Icmpv6Packet::new_unchecked(&mut buf[..])).unwrap();
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(s, d, &p), Ok(repr));
        }
    }
}
