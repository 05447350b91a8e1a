//! The Configuration payload, RFC 7296 §3.15: a remote-access client asks
//! for an internal address (CFG_REQUEST) and the gateway answers with one,
//! its DNS servers and the subnets behind it (CFG_REPLY).
//!
//! Attributes this implementation does not interpret (APPLICATION_VERSION,
//! INTERNAL_IP4_DHCP, SUPPORTED_ATTRIBUTES, vendor ones...) are kept as
//! [`CfgAttribute::Unknown`] so the payload round-trips. Decoding is
//! bounded: at most [`MAX_CFG_ATTRIBUTES`] attributes, each of a length
//! its type allows (§3.15.1), and every count is checked against the bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::codec::{codepoint, Reader, Writer};
use super::{DecodeError, EncodeError};

codepoint! {
    /// CFG Type, RFC 7296 §3.15.
    CfgType(u8) {
        CFG_REQUEST = 1,
        CFG_REPLY = 2,
        CFG_SET = 3,
        CFG_ACK = 4,
    }
}

codepoint! {
    /// Configuration Attribute types, RFC 7296 §3.15.1 (and the IKEv2
    /// registry).
    CfgAttributeType(u16) {
        INTERNAL_IP4_ADDRESS = 1,
        INTERNAL_IP4_NETMASK = 2,
        INTERNAL_IP4_DNS = 3,
        INTERNAL_IP4_NBNS = 4,
        INTERNAL_IP4_DHCP = 6,
        APPLICATION_VERSION = 7,
        INTERNAL_IP6_ADDRESS = 8,
        INTERNAL_IP6_DNS = 10,
        INTERNAL_IP6_DHCP = 12,
        INTERNAL_IP4_SUBNET = 13,
        SUPPORTED_ATTRIBUTES = 14,
        INTERNAL_IP6_SUBNET = 15,
    }
}

/// Most attributes one CP payload may carry. A client asks for a handful
/// (strongSwan sends at most a dozen); a reply carries an address, a few
/// DNS servers and the subnets of one tunnel.
pub const MAX_CFG_ATTRIBUTES: usize = 64;

/// Longest value of an attribute kept as [`CfgAttribute::Unknown`]
/// (APPLICATION_VERSION is a short string).
pub const MAX_UNKNOWN_ATTRIBUTE_LEN: usize = 256;

/// One configuration attribute, §3.15.1. `None` is the empty value a
/// CFG_REQUEST sends to ask for one ("give me an address").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgAttribute {
    Ip4Address(Option<Ipv4Addr>),
    Ip4Netmask(Option<Ipv4Addr>),
    Ip4Dns(Option<Ipv4Addr>),
    /// Address and netmask of a network behind the gateway.
    Ip4Subnet(Option<(Ipv4Addr, Ipv4Addr)>),
    /// Address and prefix length (0..=128).
    Ip6Address(Option<(Ipv6Addr, u8)>),
    Ip6Dns(Option<Ipv6Addr>),
    /// Prefix and prefix length (0..=128) of a network behind the gateway.
    Ip6Subnet(Option<(Ipv6Addr, u8)>),
    /// Any other attribute, value kept as is.
    Unknown {
        ty: CfgAttributeType,
        value: Vec<u8>,
    },
}

impl CfgAttribute {
    pub fn attribute_type(&self) -> CfgAttributeType {
        use CfgAttributeType as T;
        match self {
            CfgAttribute::Ip4Address(_) => T::INTERNAL_IP4_ADDRESS,
            CfgAttribute::Ip4Netmask(_) => T::INTERNAL_IP4_NETMASK,
            CfgAttribute::Ip4Dns(_) => T::INTERNAL_IP4_DNS,
            CfgAttribute::Ip4Subnet(_) => T::INTERNAL_IP4_SUBNET,
            CfgAttribute::Ip6Address(_) => T::INTERNAL_IP6_ADDRESS,
            CfgAttribute::Ip6Dns(_) => T::INTERNAL_IP6_DNS,
            CfgAttribute::Ip6Subnet(_) => T::INTERNAL_IP6_SUBNET,
            CfgAttribute::Unknown { ty, .. } => *ty,
        }
    }

    fn decode(ty: CfgAttributeType, v: &[u8]) -> Result<Self, DecodeError> {
        use CfgAttributeType as T;
        // §3.15.1: each typed attribute is empty (a request) or exactly
        // its length; anything else is malformed.
        let bad = || DecodeError::BadCfgAttribute(ty.0);
        let v4 = |b: &[u8]| -> Ipv4Addr { Ipv4Addr::new(b[0], b[1], b[2], b[3]) };
        let v6 = |b: &[u8]| -> Ipv6Addr {
            let a: [u8; 16] = b[..16].try_into().unwrap_or([0; 16]);
            Ipv6Addr::from(a)
        };
        let prefix = |b: &[u8]| -> Result<(Ipv6Addr, u8), DecodeError> {
            if b[16] > 128 {
                return Err(bad());
            }
            Ok((v6(b), b[16]))
        };
        Ok(match ty {
            T::INTERNAL_IP4_ADDRESS | T::INTERNAL_IP4_NETMASK | T::INTERNAL_IP4_DNS => {
                let a = match v.len() {
                    0 => None,
                    4 => Some(v4(v)),
                    _ => return Err(bad()),
                };
                match ty {
                    T::INTERNAL_IP4_ADDRESS => CfgAttribute::Ip4Address(a),
                    T::INTERNAL_IP4_NETMASK => CfgAttribute::Ip4Netmask(a),
                    _ => CfgAttribute::Ip4Dns(a),
                }
            }
            T::INTERNAL_IP4_SUBNET => match v.len() {
                0 => CfgAttribute::Ip4Subnet(None),
                8 => CfgAttribute::Ip4Subnet(Some((v4(v), v4(&v[4..])))),
                _ => return Err(bad()),
            },
            T::INTERNAL_IP6_ADDRESS | T::INTERNAL_IP6_SUBNET => {
                let a = match v.len() {
                    0 => None,
                    17 => Some(prefix(v)?),
                    _ => return Err(bad()),
                };
                if ty == T::INTERNAL_IP6_ADDRESS {
                    CfgAttribute::Ip6Address(a)
                } else {
                    CfgAttribute::Ip6Subnet(a)
                }
            }
            T::INTERNAL_IP6_DNS => match v.len() {
                0 => CfgAttribute::Ip6Dns(None),
                16 => CfgAttribute::Ip6Dns(Some(v6(v))),
                _ => return Err(bad()),
            },
            _ => {
                if v.len() > MAX_UNKNOWN_ATTRIBUTE_LEN {
                    return Err(bad());
                }
                CfgAttribute::Unknown {
                    ty,
                    value: v.to_vec(),
                }
            }
        })
    }

    fn encode_value(&self, w: &mut Writer) {
        let mut v4 = |a: &Option<Ipv4Addr>| {
            if let Some(a) = a {
                w.bytes(&a.octets());
            }
        };
        match self {
            CfgAttribute::Ip4Address(a) | CfgAttribute::Ip4Netmask(a) | CfgAttribute::Ip4Dns(a) => {
                v4(a)
            }
            CfgAttribute::Ip4Subnet(s) => {
                if let Some((a, m)) = s {
                    w.bytes(&a.octets());
                    w.bytes(&m.octets());
                }
            }
            CfgAttribute::Ip6Address(s) | CfgAttribute::Ip6Subnet(s) => {
                if let Some((a, len)) = s {
                    w.bytes(&a.octets());
                    w.u8(*len);
                }
            }
            CfgAttribute::Ip6Dns(a) => {
                if let Some(a) = a {
                    w.bytes(&a.octets());
                }
            }
            CfgAttribute::Unknown { value, .. } => w.bytes(value),
        }
    }
}

/// Configuration payload, §3.15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpPayload {
    pub cfg_type: CfgType,
    pub attributes: Vec<CfgAttribute>,
}

impl CpPayload {
    pub fn new(cfg_type: CfgType, attributes: Vec<CfgAttribute>) -> Self {
        Self {
            cfg_type,
            attributes,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let cfg_type = CfgType(r.u8()?);
        r.take(3)?;
        // §3.15: an attribute is at least its 4-byte header, so the count
        // check below sizes nothing by a number read from the wire.
        let mut attributes = Vec::new();
        while !r.is_empty() {
            if attributes.len() == MAX_CFG_ATTRIBUTES {
                return Err(DecodeError::CountMismatch("CP attributes over limit"));
            }
            // §3.15.1: the top bit is reserved, ignored on receipt.
            let ty = CfgAttributeType(r.u16()? & 0x7fff);
            let len = usize::from(r.u16()?);
            let v = r.take(len)?;
            attributes.push(CfgAttribute::decode(ty, v)?);
        }
        Ok(Self {
            cfg_type,
            attributes,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        EncodeError::check(
            "number of CP attributes",
            self.attributes.len(),
            MAX_CFG_ATTRIBUTES,
        )?;
        w.u8(self.cfg_type.0);
        w.bytes(&[0, 0, 0]);
        for a in &self.attributes {
            w.u16(a.attribute_type().0 & 0x7fff);
            let at = w.len();
            w.u16(0);
            a.encode_value(w);
            let len = w.len() - at - 2;
            EncodeError::check("CP attribute length", len, usize::from(u16::MAX))?;
            w.patch_u16(at, len as u16);
        }
        Ok(())
    }

    /// The attributes of a CFG_REQUEST asking for an address of each
    /// family in `v4`/`v6`, with DNS servers, as a client sends it.
    pub fn request(v4: bool, v6: bool) -> Self {
        let mut attributes = Vec::new();
        if v4 {
            attributes.push(CfgAttribute::Ip4Address(None));
            attributes.push(CfgAttribute::Ip4Dns(None));
        }
        if v6 {
            attributes.push(CfgAttribute::Ip6Address(None));
            attributes.push(CfgAttribute::Ip6Dns(None));
        }
        Self::new(CfgType::CFG_REQUEST, attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Result<CpPayload, DecodeError> {
        let mut r = Reader::new(b);
        let p = CpPayload::decode(&mut r)?;
        r.expect_empty()?;
        Ok(p)
    }

    fn encode(p: &CpPayload) -> Vec<u8> {
        let mut w = Writer::new();
        p.encode(&mut w).unwrap();
        w.buf
    }

    #[test]
    fn ike_cp_strongswan_request_decodes() {
        // A strongSwan 5.9 CFG_REQUEST for `vips = 0.0.0.0,::`: empty
        // address and DNS attributes of both families.
        let b = [
            1, 0, 0, 0, // CFG_REQUEST
            0, 1, 0, 0, // INTERNAL_IP4_ADDRESS, empty
            0, 8, 0, 0, // INTERNAL_IP6_ADDRESS, empty
            0, 3, 0, 0, // INTERNAL_IP4_DNS
            0, 10, 0, 0, // INTERNAL_IP6_DNS
            0x80, 7, 0, 3, b'x', b'y', b'z', // APPLICATION_VERSION, R bit set
        ];
        let p = decode(&b).unwrap();
        assert_eq!(p.cfg_type, CfgType::CFG_REQUEST);
        assert_eq!(
            p.attributes,
            vec![
                CfgAttribute::Ip4Address(None),
                CfgAttribute::Ip6Address(None),
                CfgAttribute::Ip4Dns(None),
                CfgAttribute::Ip6Dns(None),
                CfgAttribute::Unknown {
                    ty: CfgAttributeType::APPLICATION_VERSION,
                    value: b"xyz".to_vec()
                },
            ]
        );
        // Re-encoded with the reserved bit cleared, as §3.15.1 asks.
        let mut want = b.to_vec();
        want[20] = 0;
        assert_eq!(encode(&p), want);
    }

    #[test]
    fn ike_cp_reply_round_trips() {
        let p = CpPayload::new(
            CfgType::CFG_REPLY,
            vec![
                CfgAttribute::Ip4Address(Some("10.3.0.1".parse().unwrap())),
                CfgAttribute::Ip4Netmask(Some("255.255.255.0".parse().unwrap())),
                CfgAttribute::Ip4Dns(Some("10.2.0.53".parse().unwrap())),
                CfgAttribute::Ip4Subnet(Some((
                    "10.2.0.0".parse().unwrap(),
                    "255.255.255.0".parse().unwrap(),
                ))),
                CfgAttribute::Ip6Address(Some(("fd00:3::1".parse().unwrap(), 128))),
                CfgAttribute::Ip6Dns(Some("fd00:2::53".parse().unwrap())),
                CfgAttribute::Ip6Subnet(Some(("fd00:2::".parse().unwrap(), 64))),
            ],
        );
        let b = encode(&p);
        assert_eq!(b.len(), 4 + 8 + 8 + 8 + 12 + 21 + 20 + 21);
        assert_eq!(decode(&b).unwrap(), p);
    }

    #[test]
    fn ike_cp_refuses_malformed() {
        // Wrong lengths for typed attributes.
        assert_eq!(
            decode(&[2, 0, 0, 0, 0, 1, 0, 3, 1, 2, 3]),
            Err(DecodeError::BadCfgAttribute(1))
        );
        assert_eq!(
            decode(&[2, 0, 0, 0, 0, 13, 0, 4, 1, 2, 3, 4]),
            Err(DecodeError::BadCfgAttribute(13))
        );
        // Prefix length over 128.
        let mut b = vec![2, 0, 0, 0, 0, 8, 0, 17];
        b.extend_from_slice(&[0; 16]);
        b.push(129);
        assert_eq!(decode(&b), Err(DecodeError::BadCfgAttribute(8)));
        // Length past the end, truncated header.
        assert_eq!(
            decode(&[1, 0, 0, 0, 0, 1, 0, 4, 1]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode(&[1, 0, 0, 0, 0, 1, 0]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Truncated));
        // Oversized unknown attribute.
        let mut b = vec![1, 0, 0, 0, 0x40, 0, 1, 1];
        b.extend_from_slice(&[0; 257]);
        assert_eq!(decode(&b), Err(DecodeError::BadCfgAttribute(0x4000)));
        // Too many attributes.
        let mut b = vec![1, 0, 0, 0];
        for _ in 0..=MAX_CFG_ATTRIBUTES {
            b.extend_from_slice(&[0, 3, 0, 0]);
        }
        assert_eq!(
            decode(&b),
            Err(DecodeError::CountMismatch("CP attributes over limit"))
        );
        b.truncate(b.len() - 4);
        assert_eq!(decode(&b).unwrap().attributes.len(), MAX_CFG_ATTRIBUTES);
    }

    #[test]
    fn ike_cp_encode_refuses_over_limit() {
        let p = CpPayload::new(
            CfgType::CFG_REPLY,
            vec![CfgAttribute::Ip4Dns(None); MAX_CFG_ATTRIBUTES + 1],
        );
        let mut w = Writer::new();
        assert!(p.encode(&mut w).is_err());
    }
}
