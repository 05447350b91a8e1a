//! The notify data of IKEv2 redirect (RFC 5685 §8): REDIRECT_SUPPORTED
//! (empty), REDIRECT (a gateway identity and, in an IKE_SA_INIT response
//! only, the initiator's nonce) and REDIRECTED_FROM (a gateway identity).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{Reader, Writer};
use super::{DecodeError, EncodeError};

/// Gateway Identity Type, RFC 5685 §10 (IANA "Gateway Identity Type").
const GW_IPV4: u8 = 1;
const GW_IPV6: u8 = 2;
const GW_FQDN: u8 = 3;

/// The longest FQDN (RFC 1035 §2.3.4, presentation form without the
/// trailing dot).
pub const MAX_FQDN_LEN: usize = 253;

/// A gateway named by a REDIRECT or REDIRECTED_FROM notify (RFC 5685 §8.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GatewayIdentity {
    Ip(IpAddr),
    /// A domain name, checked to be letters, digits, hyphens and dots
    /// (RFC 1123 §2.1) in labels of 1 to 63 octets.
    Fqdn(String),
}

impl core::fmt::Display for GatewayIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GatewayIdentity::Ip(a) => a.fmt(f),
            GatewayIdentity::Fqdn(n) => f.write_str(n),
        }
    }
}

/// Whether `s` is a host name the resolver may be given: LDH labels of 1
/// to 63 octets, not starting or ending with a hyphen, at most
/// [`MAX_FQDN_LEN`] octets in all.
pub fn fqdn_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_FQDN_LEN
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl GatewayIdentity {
    /// Parses an address or a host name (configuration, tests).
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Some(GatewayIdentity::Ip(a));
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        fqdn_ok(s).then(|| GatewayIdentity::Fqdn(s.to_ascii_lowercase()))
    }

    /// Type, length and identity (§8.1).
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = r.u8()?;
        let len = usize::from(r.u8()?);
        let body = r.take(len)?;
        match ty {
            GW_IPV4 => {
                let b: [u8; 4] = body
                    .try_into()
                    .map_err(|_| DecodeError::Invalid("redirect IPv4 identity length"))?;
                Ok(GatewayIdentity::Ip(IpAddr::V4(Ipv4Addr::from(b))))
            }
            GW_IPV6 => {
                let b: [u8; 16] = body
                    .try_into()
                    .map_err(|_| DecodeError::Invalid("redirect IPv6 identity length"))?;
                Ok(GatewayIdentity::Ip(IpAddr::V6(Ipv6Addr::from(b))))
            }
            GW_FQDN => {
                let s = std::str::from_utf8(body)
                    .ok()
                    .filter(|s| fqdn_ok(s))
                    .ok_or(DecodeError::Invalid("redirect FQDN identity"))?;
                Ok(GatewayIdentity::Fqdn(s.to_ascii_lowercase()))
            }
            _ => Err(DecodeError::Invalid("redirect gateway identity type")),
        }
    }

    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            GatewayIdentity::Ip(IpAddr::V4(a)) => {
                w.u8(GW_IPV4);
                w.u8(4);
                w.bytes(&a.octets());
            }
            GatewayIdentity::Ip(IpAddr::V6(a)) => {
                w.u8(GW_IPV6);
                w.u8(16);
                w.bytes(&a.octets());
            }
            GatewayIdentity::Fqdn(n) => {
                EncodeError::check("redirect FQDN", n.len(), MAX_FQDN_LEN)?;
                w.u8(GW_FQDN);
                w.len_u8("redirect FQDN", n.len())?;
                w.bytes(n.as_bytes());
            }
        }
        Ok(())
    }
}

/// The data of a REDIRECT notify (§8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub gateway: GatewayIdentity,
    /// The initiator's Ni, echoed in an IKE_SA_INIT response (§4.3); absent
    /// in IKE_AUTH and INFORMATIONAL (§6, §5).
    pub nonce: Option<Vec<u8>>,
}

impl Redirect {
    /// Decodes the notify data. `with_nonce`: whether the exchange carries
    /// the nonce echo (IKE_SA_INIT); it is then 16 to 256 octets (RFC 7296
    /// §3.9), and elsewhere nothing may follow the identity.
    pub fn decode(data: &[u8], with_nonce: bool) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let gateway = GatewayIdentity::decode(&mut r)?;
        let nonce = if with_nonce {
            let n = r.rest();
            if !(16..=256).contains(&n.len()) {
                return Err(DecodeError::Invalid("redirect nonce data length"));
            }
            Some(n.to_vec())
        } else {
            None
        };
        r.expect_empty()?;
        Ok(Self { gateway, nonce })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.gateway.encode(&mut w)?;
        if let Some(n) = &self.nonce {
            w.bytes(n);
        }
        Ok(w.buf)
    }
}

/// The data of a REDIRECTED_FROM notify (§8.2): the gateway that
/// redirected the initiator.
pub fn decode_redirected_from(data: &[u8]) -> Result<GatewayIdentity, DecodeError> {
    let mut r = Reader::new(data);
    let g = GatewayIdentity::decode(&mut r)?;
    r.expect_empty()?;
    Ok(g)
}

/// Encodes REDIRECTED_FROM's data.
pub fn encode_redirected_from(g: &GatewayIdentity) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    g.encode(&mut w)?;
    Ok(w.buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_redirect_round_trips_every_identity_type() {
        for g in ["192.0.2.9", "2001:db8::9", "gw2.example"] {
            let gateway = GatewayIdentity::parse(g).unwrap();
            for nonce in [None, Some(vec![7u8; 32])] {
                let r = Redirect {
                    gateway: gateway.clone(),
                    nonce: nonce.clone(),
                };
                let bytes = r.encode().unwrap();
                assert_eq!(Redirect::decode(&bytes, nonce.is_some()).unwrap(), r);
            }
            let bytes = encode_redirected_from(&gateway).unwrap();
            assert_eq!(decode_redirected_from(&bytes).unwrap(), gateway);
        }
        // The wire form of §8.1: type 1, length 4, the address, the nonce.
        let r = Redirect {
            gateway: GatewayIdentity::parse("192.0.2.9").unwrap(),
            nonce: Some(vec![0xaa; 16]),
        };
        let b = r.encode().unwrap();
        assert_eq!(&b[..6], &[1, 4, 192, 0, 2, 9]);
        assert_eq!(b.len(), 6 + 16);
    }

    #[test]
    fn ike_redirect_malformed_data_is_refused() {
        let bad: &[(&[u8], bool)] = &[
            (&[], false),
            (&[1], false),
            (&[1, 4, 1, 2, 3], false),       // truncated address
            (&[1, 5, 1, 2, 3, 4, 5], false), // IPv4 of 5 octets
            (&[2, 4, 1, 2, 3, 4], false),    // IPv6 of 4 octets
            (&[3, 0], false),                // empty FQDN
            (&[3, 3, b'a', b' ', b'b'], false),
            (&[3, 2, 0xc3, 0x28], false),         // not UTF-8
            (&[4, 4, 1, 2, 3, 4], false),         // unknown type
            (&[1, 4, 1, 2, 3, 4, 9], false),      // trailing bytes without a nonce
            (&[1, 4, 1, 2, 3, 4], true),          // nonce echo missing
            (&[1, 4, 1, 2, 3, 4, 1, 2, 3], true), // nonce echo too short
        ];
        for (data, with_nonce) in bad {
            assert!(
                Redirect::decode(data, *with_nonce).is_err(),
                "{data:?} {with_nonce}"
            );
        }
        let mut long = vec![1, 4, 1, 2, 3, 4];
        long.extend_from_slice(&[0; 257]);
        assert!(Redirect::decode(&long, true).is_err());
        assert!(decode_redirected_from(&[1, 4, 1, 2, 3, 4, 0]).is_err());
        assert!(GatewayIdentity::parse("-bad.example").is_none());
        assert!(GatewayIdentity::parse(&"a".repeat(64)).is_none());
        let over = vec!["a".repeat(63); 4].join(".");
        assert!(over.len() > MAX_FQDN_LEN && GatewayIdentity::parse(&over).is_none());
    }

    proptest::proptest! {
        /// Any bytes decode or are refused, never panic; what decodes
        /// encodes back to the same bytes.
        #[test]
        fn ike_redirect_decoder_total(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), n in proptest::prelude::any::<bool>()) {
            if let Ok(r) = Redirect::decode(&data, n) {
                let again = r.encode().unwrap();
                // FQDNs are lowercased on decode.
                if !matches!(r.gateway, GatewayIdentity::Fqdn(_)) {
                    proptest::prop_assert_eq!(again, data);
                }
            }
        }
    }
}
