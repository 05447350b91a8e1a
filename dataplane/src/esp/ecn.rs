//! ECN propagation across the tunnel (RFC 6040, normal mode) and the outer
//! header's DSCP and DF (RFC 4301 §5.1.2.1, §8.1).
//!
//! RFC 6040 §4.1 defines two ingress modes; this module implements *normal
//! mode*, which every RFC 6040 ingress must support and which RFC 4301
//! IPsec tunnels already used: the outer ECN field is a copy of the inner
//! one, CE included (Figure 3 of RFC 6040):
//!
//! ```text
//! +-----------------+-------------------------------+
//! | Incoming Header |    Departing Outer Header     |
//! | (also equal to  +---------------+---------------+
//! | departing Inner | Compatibility |    Normal     |
//! |     Header)     |     Mode      |     Mode      |
//! +-----------------+---------------+---------------+
//! |    Not-ECT      |   Not-ECT     |   Not-ECT     |
//! |     ECT(0)      |   Not-ECT     |    ECT(0)     |
//! |     ECT(1)      |   Not-ECT     |    ECT(1)     |
//! |       CE        |   Not-ECT     |      CE       |
//! +-----------------+---------------+---------------+
//! ```
//!
//! (The RFC 3168 "full functionality" rule of resetting CE to ECT(0) on
//! encapsulation is what RFC 6040 replaced.)
//!
//! At the egress, RFC 6040 §4.2 sets the inner header's ECN field from the
//! combination of the arriving inner (row) and outer (column) fields
//! (Figure 4):
//!
//! ```text
//! +---------+------------------------------------------------+
//! |Arriving |            Arriving Outer Header               |
//! |   Inner +---------+------------+------------+------------+
//! |  Header | Not-ECT | ECT(0)     | ECT(1)     |     CE     |
//! +---------+---------+------------+------------+------------+
//! | Not-ECT | Not-ECT |Not-ECT(!!!)|Not-ECT(!!!)| <drop>(!!!)|
//! |  ECT(0) |  ECT(0) | ECT(0)     | ECT(1)     |     CE     |
//! |  ECT(1) |  ECT(1) | ECT(1) (!) | ECT(1)     |     CE     |
//! |    CE   |      CE |     CE     |     CE(!!!)|     CE     |
//! +---------+---------+------------+------------+------------+
//! ```
//!
//! The "(!!!)" combinations are currently unused ones that an egress should
//! log (see [`is_unexpected_combination`]); "(!)" is a combination that may
//! arise from some proposed uses of ECT(1).

use thiserror::Error;

/// The two-bit ECN field (RFC 3168 §5), the low bits of the IPv4 TOS /
/// IPv6 Traffic Class octet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Ecn {
    /// 0b00: not ECN-capable transport.
    NotEct = 0b00,
    /// 0b01: ECN-capable transport, ECT(1).
    Ect1 = 0b01,
    /// 0b10: ECN-capable transport, ECT(0).
    Ect0 = 0b10,
    /// 0b11: congestion experienced.
    Ce = 0b11,
}

impl Ecn {
    /// The ECN field of a TOS / Traffic Class octet.
    #[inline]
    pub const fn from_tos(tos: u8) -> Self {
        match tos & 0b11 {
            0b00 => Ecn::NotEct,
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two bits.
    #[inline]
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

/// RFC 6040 §4.2: an outer CE on a packet whose inner header is Not-ECT
/// cannot be propagated; the egress drops the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("outer header CE on a Not-ECT inner packet (RFC 6040 §4.2: drop)")]
pub struct EcnDrop;

/// The outer header's ECN field at the tunnel ingress (RFC 6040 §4.1,
/// normal mode): a copy of the inner field.
#[inline]
pub const fn ecn_encapsulate(inner: Ecn) -> Ecn {
    inner
}

/// The ECN field to give the inner header at the tunnel egress
/// (RFC 6040 §4.2, Figure 4), or [`EcnDrop`] for outer CE over inner
/// Not-ECT.
#[inline]
pub const fn ecn_decapsulate(inner: Ecn, outer: Ecn) -> Result<Ecn, EcnDrop> {
    match (inner, outer) {
        (Ecn::NotEct, Ecn::Ce) => Err(EcnDrop),
        (Ecn::NotEct, _) => Ok(Ecn::NotEct),
        (_, Ecn::Ce) => Ok(Ecn::Ce),
        (Ecn::Ect0, Ecn::Ect1) => Ok(Ecn::Ect1),
        (inner, _) => Ok(inner),
    }
}

/// Whether RFC 6040 Figure 4 marks the combination "(!!!)": currently
/// unused, worth logging (or counting) at the egress.
pub const fn is_unexpected_combination(inner: Ecn, outer: Ecn) -> bool {
    matches!(
        (inner, outer),
        (Ecn::NotEct, Ecn::Ect0 | Ecn::Ect1 | Ecn::Ce) | (Ecn::Ce, Ecn::Ect1)
    )
}

/// The outer header's DSCP (RFC 4301 §5.1.2.1: copied from the inner header
/// by default, or set by configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DscpPolicy {
    /// Copy the inner DSCP.
    #[default]
    Copy,
    /// Use this DSCP (0..=63).
    Set(u8),
}

impl DscpPolicy {
    /// The outer DSCP for an inner DSCP.
    #[inline]
    pub const fn outer_dscp(self, inner_dscp: u8) -> u8 {
        match self {
            DscpPolicy::Copy => inner_dscp & 0x3f,
            DscpPolicy::Set(d) => d & 0x3f,
        }
    }
}

/// The outer IPv4 header's DF bit (RFC 4301 §8.1: copy, set or clear,
/// configured per SA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DfPolicy {
    /// Copy the inner header's DF bit.
    #[default]
    Copy,
    /// Always set DF.
    Set,
    /// Always clear DF.
    Clear,
}

impl DfPolicy {
    /// The outer DF for an inner DF. An IPv6 inner packet has no DF bit;
    /// since IPv6 routers never fragment, pass `true` for it.
    #[inline]
    pub const fn outer_df(self, inner_df: bool) -> bool {
        match self {
            DfPolicy::Copy => inner_df,
            DfPolicy::Set => true,
            DfPolicy::Clear => false,
        }
    }
}

/// The outer TOS / Traffic Class octet at encapsulation: DSCP per
/// `dscp`, ECN per RFC 6040 normal mode.
#[inline]
pub const fn encap_tos(inner_tos: u8, dscp: DscpPolicy) -> u8 {
    dscp.outer_dscp(inner_tos >> 2) << 2 | ecn_encapsulate(Ecn::from_tos(inner_tos)).bits()
}

/// The inner TOS / Traffic Class octet after decapsulation: the inner DSCP
/// is kept (RFC 4301 §5.1.2.1 does not copy DSCP outward-in), the ECN field
/// follows RFC 6040 §4.2.
#[inline]
pub const fn decap_tos(inner_tos: u8, outer_tos: u8) -> Result<u8, EcnDrop> {
    match ecn_decapsulate(Ecn::from_tos(inner_tos), Ecn::from_tos(outer_tos)) {
        Ok(ecn) => Ok(inner_tos & !0b11 | ecn.bits()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ecn::*;

    #[test]
    fn encapsulation_copies_including_ce() {
        for e in [NotEct, Ect0, Ect1, Ce] {
            assert_eq!(ecn_encapsulate(e), e);
        }
    }

    #[test]
    fn decapsulation_table_rfc6040_figure4() {
        let outer = [NotEct, Ect0, Ect1, Ce];
        let table: [(Ecn, [Result<Ecn, EcnDrop>; 4]); 4] = [
            (NotEct, [Ok(NotEct), Ok(NotEct), Ok(NotEct), Err(EcnDrop)]),
            (Ect0, [Ok(Ect0), Ok(Ect0), Ok(Ect1), Ok(Ce)]),
            (Ect1, [Ok(Ect1), Ok(Ect1), Ok(Ect1), Ok(Ce)]),
            (Ce, [Ok(Ce), Ok(Ce), Ok(Ce), Ok(Ce)]),
        ];
        for (inner, row) in table {
            for (o, expect) in outer.iter().zip(row) {
                assert_eq!(
                    ecn_decapsulate(inner, *o),
                    expect,
                    "inner {inner:?} outer {o:?}"
                );
            }
        }
        let unexpected: Vec<_> = table
            .iter()
            .flat_map(|(i, _)| outer.iter().map(move |o| (*i, *o)))
            .filter(|(i, o)| is_unexpected_combination(*i, *o))
            .collect();
        assert_eq!(
            unexpected,
            vec![(NotEct, Ect0), (NotEct, Ect1), (NotEct, Ce), (Ce, Ect1)]
        );
    }

    #[test]
    fn tos_octets() {
        for tos in 0..=u8::MAX {
            assert_eq!(Ecn::from_tos(tos).bits(), tos & 3);
            assert_eq!(encap_tos(tos, DscpPolicy::Copy), tos);
            assert_eq!(encap_tos(tos, DscpPolicy::Set(46)), 46 << 2 | (tos & 3));
        }
        // Inner AF11 ECT(0), outer CE: inner DSCP kept, CE propagated.
        assert_eq!(decap_tos(10 << 2 | 0b10, 0b11), Ok(10 << 2 | 0b11));
        // Inner Not-ECT, outer CE: drop.
        assert_eq!(decap_tos(10 << 2, 46 << 2 | 0b11), Err(EcnDrop));
        // Outer DSCP never leaks inward.
        assert_eq!(decap_tos(0, 46 << 2), Ok(0));
    }

    #[test]
    fn df_policy() {
        for inner in [false, true] {
            assert_eq!(DfPolicy::Copy.outer_df(inner), inner);
            assert!(DfPolicy::Set.outer_df(inner));
            assert!(!DfPolicy::Clear.outer_df(inner));
        }
    }
}
