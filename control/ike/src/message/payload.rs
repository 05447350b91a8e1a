//! Payload bodies (RFC 7296 §3.3–§3.15). Each type has `decode` over
//! exactly its body (after the 4-byte generic header) and `encode`.
//!
//! Decoding is bounded by the bytes: no count read from the wire sizes an
//! allocation before the bytes for that many elements are known to be
//! there, and no element is smaller than a few bytes on the wire, so a
//! decoded payload holds at most a small constant times its length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{Reader, Writer};
use super::notify::NotifyType;
use super::types::*;
use super::{DecodeError, EncodeError};

/// One payload of a message. Unknown non-critical payloads are kept so the
/// message round-trips; the engine ignores them (RFC 7296 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(SaPayload),
    Ke(KePayload),
    IdI(Identification),
    IdR(Identification),
    Auth(AuthPayload),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    VendorId(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// Configuration payload (§3.15).
    Cp(super::cp::CpPayload),
    /// Certificate (§3.6).
    Cert(super::cert::CertPayload),
    /// Certificate Request (§3.7).
    CertReq(super::cert::CertPayload),
    /// Encrypted and Authenticated payload (§3.14): must be last.
    Encrypted(Encrypted),
    /// A payload type this implementation does not process.
    Unknown {
        ty: PayloadType,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    /// The Next Payload value that announces this payload.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::Unknown { ty, .. } => *ty,
        }
    }

    pub(crate) fn critical(&self) -> bool {
        matches!(self, Payload::Unknown { critical: true, .. })
    }

    /// Whether this implementation decodes payloads of type `ty` (others
    /// are kept as [`Payload::Unknown`], or refused when critical, §2.5).
    pub(crate) fn known(ty: PayloadType) -> bool {
        matches!(
            ty,
            PayloadType::SA
                | PayloadType::KE
                | PayloadType::IDI
                | PayloadType::IDR
                | PayloadType::AUTH
                | PayloadType::NONCE
                | PayloadType::NOTIFY
                | PayloadType::DELETE
                | PayloadType::VENDOR_ID
                | PayloadType::TSI
                | PayloadType::TSR
                | PayloadType::CP
                | PayloadType::CERT
                | PayloadType::CERTREQ
                | PayloadType::SK
        )
    }

    /// Decodes one payload body of type `ty`.
    pub(crate) fn decode_body(
        ty: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Payload, DecodeError> {
        let mut r = Reader::new(body);
        let p = match ty {
            PayloadType::SA => Payload::Sa(SaPayload::decode(&mut r)?),
            PayloadType::KE => Payload::Ke(KePayload::decode(&mut r)?),
            PayloadType::IDI => Payload::IdI(Identification::decode(&mut r)?),
            PayloadType::IDR => Payload::IdR(Identification::decode(&mut r)?),
            PayloadType::AUTH => Payload::Auth(AuthPayload::decode(&mut r)?),
            PayloadType::NONCE => Payload::Nonce(r.rest().to_vec()),
            PayloadType::NOTIFY => Payload::Notify(Notify::decode(&mut r)?),
            PayloadType::DELETE => Payload::Delete(Delete::decode(&mut r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(r.rest().to_vec()),
            PayloadType::TSI => Payload::TsI(TrafficSelector::decode_list(&mut r)?),
            PayloadType::TSR => Payload::TsR(TrafficSelector::decode_list(&mut r)?),
            PayloadType::CP => Payload::Cp(super::cp::CpPayload::decode(&mut r)?),
            PayloadType::CERT => Payload::Cert(super::cert::CertPayload::decode(&mut r)?),
            PayloadType::CERTREQ => Payload::CertReq(super::cert::CertPayload::decode(&mut r)?),
            PayloadType::SK => unreachable_sk()?,
            _ => {
                if critical {
                    return Err(DecodeError::UnsupportedCriticalPayload(ty.0));
                }
                Payload::Unknown {
                    ty,
                    critical,
                    body: r.rest().to_vec(),
                }
            }
        };
        r.expect_empty()?;
        Ok(p)
    }

    pub(crate) fn encode_body(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Payload::Sa(p) => return p.encode(w),
            Payload::Ke(p) => p.encode(w),
            Payload::IdI(p) | Payload::IdR(p) => p.encode(w),
            Payload::Auth(p) => p.encode(w),
            Payload::Nonce(b) | Payload::VendorId(b) => w.bytes(b),
            Payload::Cp(p) => return p.encode(w),
            Payload::Cert(p) | Payload::CertReq(p) => p.encode(w),
            Payload::Notify(p) => return p.encode(w),
            Payload::Delete(p) => return p.encode(w),
            Payload::TsI(t) | Payload::TsR(t) => return TrafficSelector::encode_list(t, w),
            Payload::Encrypted(e) => w.bytes(&e.data),
            Payload::Unknown { body, .. } => w.bytes(body),
        }
        Ok(())
    }
}

/// SK payloads are handled by the chain decoder, never here.
fn unreachable_sk() -> Result<Payload, DecodeError> {
    Err(DecodeError::Invalid("SK payload not last"))
}

/// The Encrypted payload body: IV, ciphertext (with padding) and ICV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first payload inside (the SK payload's Next Payload).
    pub first_payload: PayloadType,
    pub data: Vec<u8>,
}

/// Security Association payload, §3.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    pub proposals: Vec<Proposal>,
}

/// One proposal substructure, §3.3.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform substructure, §3.3.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub ty: TransformType,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

/// A transform attribute, §3.3.5: TV (AF=1, 2-byte value) or TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Tv(AttributeType, u16),
    Tlv(AttributeType, Vec<u8>),
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Self {
            ty,
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute.
    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Self {
            ty,
            id,
            attributes: vec![Attribute::Tv(AttributeType::KEY_LENGTH, bits)],
        }
    }

    /// The Key Length attribute, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv(AttributeType::KEY_LENGTH, v) => Some(*v),
            _ => None,
        })
    }
}

impl SaPayload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut proposals = Vec::new();
        loop {
            let last = r.u8()?;
            r.u8()?; // reserved
            let len = r.u16()? as usize;
            let mut p = r.sub(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
            let number = p.u8()?;
            let protocol = ProtocolId(p.u8()?);
            let spi_size = p.u8()? as usize;
            let ntrans = p.u8()?;
            let spi = p.take(spi_size)?.to_vec();
            // §3.3.2: a transform is at least its 8-byte header.
            if usize::from(ntrans) * 8 > p.remaining() {
                return Err(DecodeError::CountMismatch("transforms"));
            }
            let mut transforms = Vec::with_capacity(ntrans.into());
            for i in 0..ntrans {
                let tlast = p.u8()?;
                let expect = if i + 1 == ntrans { 0 } else { 3 };
                if tlast != expect {
                    return Err(DecodeError::Invalid("transform last-substruc"));
                }
                p.u8()?;
                let tlen = p.u16()? as usize;
                let mut t = p.sub(tlen.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
                let ty = TransformType(t.u8()?);
                t.u8()?;
                let id = t.u16()?;
                let mut attributes = Vec::new();
                while !t.is_empty() {
                    let at = t.u16()?;
                    let aty = AttributeType(at & 0x7fff);
                    if at & 0x8000 != 0 {
                        attributes.push(Attribute::Tv(aty, t.u16()?));
                    } else {
                        let alen = t.u16()? as usize;
                        attributes.push(Attribute::Tlv(aty, t.take(alen)?.to_vec()));
                    }
                }
                transforms.push(Transform { ty, id, attributes });
            }
            p.expect_empty()?;
            proposals.push(Proposal {
                number,
                protocol,
                spi,
                transforms,
            });
            match last {
                0 => break,
                2 => continue,
                _ => return Err(DecodeError::Invalid("proposal last-substruc")),
            }
        }
        Ok(Self { proposals })
    }

    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        for (pi, p) in self.proposals.iter().enumerate() {
            let start = w.len();
            w.u8(if pi + 1 == self.proposals.len() { 0 } else { 2 });
            w.u8(0);
            w.u16(0);
            w.u8(p.number);
            w.u8(p.protocol.0);
            w.len_u8("proposal SPI size", p.spi.len())?;
            w.len_u8("number of transforms", p.transforms.len())?;
            w.bytes(&p.spi);
            for (ti, t) in p.transforms.iter().enumerate() {
                let tstart = w.len();
                w.u8(if ti + 1 == p.transforms.len() { 0 } else { 3 });
                w.u8(0);
                w.u16(0);
                w.u8(t.ty.0);
                w.u8(0);
                w.u16(t.id);
                for a in &t.attributes {
                    match a {
                        Attribute::Tv(ty, v) => {
                            w.u16(ty.0 | 0x8000);
                            w.u16(*v);
                        }
                        Attribute::Tlv(ty, v) => {
                            w.u16(ty.0 & 0x7fff);
                            w.len_u16("attribute length", v.len())?;
                            w.bytes(v);
                        }
                    }
                }
                w.patch_len_u16("transform length", tstart)?;
            }
            w.patch_len_u16("proposal length", start)?;
        }
        Ok(())
    }
}

/// Key Exchange payload, §3.4.
#[derive(Clone, PartialEq, Eq)]
pub struct KePayload {
    pub group: DhGroupId,
    pub data: Vec<u8>,
}

impl core::fmt::Debug for KePayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KePayload")
            .field("group", &self.group)
            .field("len", &self.data.len())
            .finish()
    }
}

impl KePayload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let group = DhGroupId(r.u16()?);
        r.u16()?;
        Ok(Self {
            group,
            data: r.rest().to_vec(),
        })
    }
    fn encode(&self, w: &mut Writer) {
        w.u16(self.group.0);
        w.u16(0);
        w.bytes(&self.data);
    }
}

/// An identity, §3.5. FQDN, IPv4, IPv6 and KEY_ID are typed; other ID
/// types are carried as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identification {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    KeyId(Vec<u8>),
    Other { ty: IdType, data: Vec<u8> },
}

impl Identification {
    pub fn id_type(&self) -> IdType {
        match self {
            Identification::Ipv4(_) => IdType::IPV4_ADDR,
            Identification::Ipv6(_) => IdType::IPV6_ADDR,
            Identification::Fqdn(_) => IdType::FQDN,
            Identification::KeyId(_) => IdType::KEY_ID,
            Identification::Other { ty, .. } => *ty,
        }
    }

    /// Builds a typed identity from a wire type and data.
    pub fn from_wire(ty: IdType, data: &[u8]) -> Result<Self, DecodeError> {
        Ok(match ty {
            IdType::IPV4_ADDR => {
                let a: [u8; 4] = data.try_into().map_err(|_| DecodeError::BadLength)?;
                Identification::Ipv4(a.into())
            }
            IdType::IPV6_ADDR => {
                let a: [u8; 16] = data.try_into().map_err(|_| DecodeError::BadLength)?;
                Identification::Ipv6(a.into())
            }
            IdType::FQDN => match std::str::from_utf8(data) {
                Ok(s) => Identification::Fqdn(s.to_owned()),
                Err(_) => return Err(DecodeError::Invalid("FQDN not text")),
            },
            IdType::KEY_ID => Identification::KeyId(data.to_vec()),
            _ => Identification::Other {
                ty,
                data: data.to_vec(),
            },
        })
    }

    /// The identification data (after type and reserved bytes).
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identification::Ipv4(a) => a.octets().to_vec(),
            Identification::Ipv6(a) => a.octets().to_vec(),
            Identification::Fqdn(s) => s.as_bytes().to_vec(),
            Identification::KeyId(d) | Identification::Other { data: d, .. } => d.clone(),
        }
    }

    /// The payload body: ID type, three reserved bytes and data. This is
    /// `RestOfInitIDPayload` / `RestOfRespIDPayload` of §2.15.
    pub fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.buf
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = IdType(r.u8()?);
        r.take(3)?;
        Self::from_wire(ty, r.rest())
    }
    fn encode(&self, w: &mut Writer) {
        w.u8(self.id_type().0);
        w.bytes(&[0, 0, 0]);
        w.bytes(&self.data());
    }
}

/// Authentication payload, §3.8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPayload {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

impl AuthPayload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let method = AuthMethod(r.u8()?);
        r.take(3)?;
        Ok(Self {
            method,
            data: r.rest().to_vec(),
        })
    }
    fn encode(&self, w: &mut Writer) {
        w.u8(self.method.0);
        w.bytes(&[0, 0, 0]);
        w.bytes(&self.data);
    }
}

/// Notify payload, §3.10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub ty: NotifyType,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without SPI.
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()? as usize;
        let ty = NotifyType(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        Ok(Self {
            protocol,
            spi,
            ty,
            data: r.rest().to_vec(),
        })
    }
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u8(self.protocol.0);
        w.len_u8("notify SPI size", self.spi.len())?;
        w.u16(self.ty.0);
        w.bytes(&self.spi);
        w.bytes(&self.data);
        Ok(())
    }
}

/// Delete payload, §3.11.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub protocol: ProtocolId,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Deletes the IKE SA the message is protected by (no SPIs, §3.11).
    pub fn ike() -> Self {
        Self {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }
    /// Deletes ESP SAs by the sender's inbound SPIs.
    pub fn esp(spis: &[u32]) -> Self {
        Self {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }
    /// §3.11: deleting the IKE SA names no SPI (it is in the header), so
    /// IKE takes SPI Size 0 and no SPIs; ESP and AH take 4-byte SPIs; and
    /// the SPIs fill the rest of the payload exactly.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let n = usize::from(r.u16()?);
        match (protocol, spi_size) {
            (ProtocolId::IKE, 0) if n == 0 => {}
            (ProtocolId::IKE, 0) => return Err(DecodeError::CountMismatch("Delete of IKE SPIs")),
            (ProtocolId::ESP | ProtocolId::AH, 4) => {}
            (ProtocolId::IKE | ProtocolId::ESP | ProtocolId::AH, _) => {
                return Err(DecodeError::BadSpiSize("Delete"))
            }
            _ => return Err(DecodeError::Invalid("Delete protocol")),
        }
        if n * usize::from(spi_size) != r.remaining() {
            return Err(DecodeError::CountMismatch("Delete SPIs"));
        }
        let mut spis = Vec::with_capacity(n);
        for _ in 0..n {
            spis.push(r.take(spi_size.into())?.to_vec());
        }
        Ok(Self {
            protocol,
            spi_size,
            spis,
        })
    }
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u8(self.protocol.0);
        w.u8(self.spi_size);
        w.len_u16("number of SPIs", self.spis.len())?;
        for s in &self.spis {
            // Each SPI is SPI Size bytes; another length would misframe the rest.
            if s.len() != usize::from(self.spi_size) {
                return Err(EncodeError {
                    field: "Delete SPI (must be SPI Size)",
                    len: s.len(),
                    max: self.spi_size.into(),
                });
            }
            w.bytes(s);
        }
        Ok(())
    }
}

/// One traffic selector, §3.13.1: an address range, a port range and an
/// IP protocol (0 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Self>, DecodeError> {
        let n = r.u8()?;
        r.take(3)?;
        // §3.13.1: a selector is at least 16 bytes (an IPv4 range).
        if usize::from(n) * 16 > r.remaining() {
            return Err(DecodeError::CountMismatch("traffic selectors"));
        }
        let mut v = Vec::with_capacity(n.into());
        for _ in 0..n {
            let ty = TsType(r.u8()?);
            let ip_protocol = r.u8()?;
            let len = r.u16()? as usize;
            let mut t = r.sub(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
            let start_port = t.u16()?;
            let end_port = t.u16()?;
            let (start_addr, end_addr) = match ty {
                TsType::IPV4_ADDR_RANGE => {
                    let a: [u8; 4] = t.take(4)?.try_into().map_err(|_| DecodeError::BadLength)?;
                    let b: [u8; 4] = t.take(4)?.try_into().map_err(|_| DecodeError::BadLength)?;
                    (IpAddr::from(a), IpAddr::from(b))
                }
                TsType::IPV6_ADDR_RANGE => {
                    let a: [u8; 16] = t.take(16)?.try_into().map_err(|_| DecodeError::BadLength)?;
                    let b: [u8; 16] = t.take(16)?.try_into().map_err(|_| DecodeError::BadLength)?;
                    (IpAddr::from(a), IpAddr::from(b))
                }
                _ => return Err(DecodeError::Invalid("unknown traffic selector type")),
            };
            t.expect_empty()?;
            v.push(Self {
                ip_protocol,
                start_port,
                end_port,
                start_addr,
                end_addr,
            });
        }
        Ok(v)
    }

    fn encode_list(list: &[Self], w: &mut Writer) -> Result<(), EncodeError> {
        w.len_u8("number of TSs", list.len())?;
        w.bytes(&[0, 0, 0]);
        for t in list {
            match (t.start_addr, t.end_addr) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    w.u8(TsType::IPV4_ADDR_RANGE.0);
                    w.u8(t.ip_protocol);
                    w.u16(16);
                    w.u16(t.start_port);
                    w.u16(t.end_port);
                    w.bytes(&a.octets());
                    w.bytes(&b.octets());
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    w.u8(TsType::IPV6_ADDR_RANGE.0);
                    w.u8(t.ip_protocol);
                    w.u16(40);
                    w.u16(t.start_port);
                    w.u16(t.end_port);
                    w.bytes(&a.octets());
                    w.bytes(&b.octets());
                }
                // Mixed families cannot be expressed; constructors prevent
                // them (see `TrafficSelector::new`), encode as empty range.
                _ => {
                    w.u8(TsType::IPV4_ADDR_RANGE.0);
                    w.u8(t.ip_protocol);
                    w.u16(16);
                    w.u16(1);
                    w.u16(0);
                    w.bytes(&[255, 255, 255, 255, 0, 0, 0, 0]);
                }
            }
        }
        Ok(())
    }
}
