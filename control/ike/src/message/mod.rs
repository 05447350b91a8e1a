//! IKEv2 messages: the header (RFC 7296 §3.1), the generic payload header
//! (§3.2) and the payload chain, plus helpers for port 4500 (RFC 3948 §2.2).
//!
//! Messages are decoded into owned values: this is control-plane code where
//! clarity matters more than avoiding a copy.

pub mod cert;
pub mod codec;
pub mod cp;
pub mod fragment;
pub mod notify;
pub mod payload;
pub mod redirect;
pub mod types;

pub use cert::{CertEncoding, CertPayload};
pub use codec::{Reader, Writer};
pub use cp::{CfgAttribute, CfgAttributeType, CfgType, CpPayload};
pub use notify::NotifyType;
pub use payload::*;
pub use redirect::{GatewayIdentity, Redirect};
pub use types::*;

/// Why bytes could not be decoded as an IKEv2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message truncated")]
    Truncated,
    #[error("trailing bytes after a structure")]
    TrailingBytes,
    #[error("length field inconsistent")]
    BadLength,
    #[error("unsupported major version {0}")]
    InvalidMajorVersion(u8),
    /// §3.1: the initiator's SPI is never zero.
    #[error("initiator SPI is zero")]
    ZeroInitiatorSpi,
    #[error("unsupported critical payload type {0}")]
    UnsupportedCriticalPayload(u8),
    /// A payload type this exchange may only carry inside SK, or not at
    /// all, found in the clear (§1.2, §3.14).
    #[error("payload type {0} not allowed in the clear")]
    PayloadNotAllowed(u8),
    /// A count field that the bytes following it do not carry exactly.
    #[error("count does not match the bytes: {0}")]
    CountMismatch(&'static str),
    /// An SPI Size the protocol does not have (§3.3.1, §3.11).
    #[error("SPI size not allowed: {0}")]
    BadSpiSize(&'static str),
    /// A Configuration attribute whose length its type does not allow,
    /// or an unknown one over the length kept (§3.15.1).
    #[error("malformed configuration attribute {0}")]
    BadCfgAttribute(u16),
    #[error("invalid: {0}")]
    Invalid(&'static str),
}

impl DecodeError {
    /// The Notify type §3.10.1 assigns to this error.
    pub fn notify(&self) -> NotifyType {
        match self {
            DecodeError::InvalidMajorVersion(_) => NotifyType::INVALID_MAJOR_VERSION,
            DecodeError::UnsupportedCriticalPayload(_) => NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            _ => NotifyType::INVALID_SYNTAX,
        }
    }
}

/// A length or count too large for its field on the wire. The message is
/// not sent: a wrapped length would put a different message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} of {len} exceeds its wire field (at most {max})")]
pub struct EncodeError {
    pub field: &'static str,
    pub len: usize,
    pub max: usize,
}

impl EncodeError {
    /// `len` as a field of at most `max`, or the error naming `field`.
    pub fn check(field: &'static str, len: usize, max: usize) -> Result<usize, EncodeError> {
        if len <= max {
            Ok(len)
        } else {
            Err(EncodeError { field, len, max })
        }
    }
}

/// The largest IKE message sent: what one UDP datagram carries over IPv4
/// (65,535 less the 20-byte IP and 8-byte UDP headers) on port 4500, after
/// the 4-byte non-ESP marker. IKE messages are never split across
/// datagrams by [`Message::encode`]; an SK payload that does not fit the
/// configured size is split into SKF payloads (RFC 7383, see [`fragment`]).
pub const MAX_MESSAGE_LEN: usize = 65_535 - 20 - 8 - 4;

/// Length of the fixed IKE header, §3.1.
pub const HEADER_LEN: usize = 28;

/// The four zero bytes that precede IKE messages on UDP port 4500
/// (RFC 3948 §2.2, "Non-ESP Marker").
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What a datagram received on port 4500 carries (RFC 3948 §2.2–§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port4500<'a> {
    /// An IKE message (the marker has been removed).
    Ike(&'a [u8]),
    /// An ESP packet (non-zero SPI in the first four bytes).
    Esp(&'a [u8]),
    /// A NAT-keepalive (a single 0xFF byte, RFC 3948 §2.3).
    Keepalive,
    /// Too short to be anything.
    Invalid,
}

/// Classifies a datagram received on port 4500.
pub fn classify_port_4500(datagram: &[u8]) -> Port4500<'_> {
    match datagram {
        [0xff] => Port4500::Keepalive,
        [0, 0, 0, 0, rest @ ..] => Port4500::Ike(rest),
        d if d.len() >= 8 => Port4500::Esp(d),
        _ => Port4500::Invalid,
    }
}

/// Prepends the non-ESP marker to an IKE message for port 4500.
pub fn add_non_esp_marker(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 4);
    v.extend_from_slice(&NON_ESP_MARKER);
    v.extend_from_slice(msg);
    v
}

/// Header flags, §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Set in messages sent by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Version bit: we never set it.
    pub const VERSION: u8 = 0x10;
    /// Set in responses.
    pub const RESPONSE: u8 = 0x20;

    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Self(f)
    }
    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }
}

/// The IKE header without Next Payload and Length (which follow from the
/// payloads), §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub exchange: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
}

impl Header {
    /// Encodes the 28-byte header with the given next payload and length.
    pub fn encode(&self, next: PayloadType, length: u32, w: &mut Writer) {
        w.u64(self.spi_i);
        w.u64(self.spi_r);
        w.u8(next.0);
        w.u8(0x20);
        w.u8(self.exchange.0);
        w.u8(self.flags.0);
        w.u32(self.message_id);
        w.u32(length);
    }

    /// The fixed header fields and the version byte, whatever the version
    /// and Length say. The header keeps its layout across major versions
    /// (§2.5), so this is what an answer to another version copies (§1.5).
    pub fn peek(datagram: &[u8]) -> Result<(Header, PayloadType, u8), DecodeError> {
        let mut r = Reader::new(datagram);
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next = PayloadType(r.u8()?);
        let version = r.u8()?;
        let exchange = ExchangeType(r.u8()?);
        let flags = Flags(r.u8()?);
        let message_id = r.u32()?;
        let header = Header {
            spi_i,
            spi_r,
            exchange,
            flags,
            message_id,
        };
        Ok((header, next, version))
    }

    /// Decodes the header, returning it with the first payload type.
    /// Checks the major version (§2.5), that the initiator's SPI is not
    /// zero (§3.1) and that Length equals the datagram length.
    pub fn decode(datagram: &[u8]) -> Result<(Header, PayloadType), DecodeError> {
        let (header, next, version) = Self::peek(datagram)?;
        if version >> 4 != 2 {
            return Err(DecodeError::InvalidMajorVersion(version >> 4));
        }
        if header.spi_i == 0 {
            return Err(DecodeError::ZeroInitiatorSpi);
        }
        let length = Reader::new(&datagram[24..]).u32()? as usize;
        if length != datagram.len() {
            return Err(DecodeError::BadLength);
        }
        Ok((header, next))
    }
}

/// A whole IKEv2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decodes a datagram (without non-ESP marker). An SK payload, if any,
    /// stays encrypted as [`Payload::Encrypted`]. Payloads the exchange
    /// may not carry in the clear are refused (see [`allowed_in_clear`])
    /// before any payload body is decoded.
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let (header, next) = Header::decode(datagram)?;
        let payloads = decode_chain_where(next, &datagram[HEADER_LEN..], |ty| {
            allowed_in_clear(header.exchange, ty)
        })?;
        Ok(Message { header, payloads })
    }

    /// Encodes the message; fails rather than wrap a length field.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        let next = self
            .payloads
            .first()
            .map(Payload::payload_type)
            .unwrap_or(PayloadType::NONE);
        self.header.encode(next, 0, &mut w);
        encode_chain_into(&self.payloads, &mut w)?;
        let len = EncodeError::check("message length", w.len(), MAX_MESSAGE_LEN)?;
        w.patch_u32(24, len as u32);
        Ok(w.buf)
    }

    /// The first Notify of type `ty`.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        find_notify(&self.payloads, ty)
    }
}

/// Whether a message of `exchange` may carry a payload of type `ty` outside
/// SK. IKE_SA_INIT travels in the clear with SA, KE, Ni/Nr, N, V and
/// CERTREQ (§1.2, §2.6, §3.7); every later exchange puts its payloads
/// inside SK (§1.2–§1.4, §3.14), so the clear part holds only SK there.
/// Delete, IDi/IDr, AUTH, TSi/TSr, CERT, CP and EAP are never in the clear;
/// neither is SK in IKE_SA_INIT. Types this implementation does not know
/// pass, to be ignored, or refused when critical (§2.5).
pub fn allowed_in_clear(exchange: ExchangeType, ty: PayloadType) -> bool {
    let init = exchange == ExchangeType::IKE_SA_INIT;
    match ty {
        PayloadType::SA
        | PayloadType::KE
        | PayloadType::NONCE
        | PayloadType::NOTIFY
        | PayloadType::VENDOR_ID
        | PayloadType::CERTREQ => init,
        PayloadType::SK | PayloadType::SKF => !init,
        PayloadType::IDI
        | PayloadType::IDR
        | PayloadType::CERT
        | PayloadType::AUTH
        | PayloadType::DELETE
        | PayloadType::TSI
        | PayloadType::TSR
        | PayloadType::CP
        | PayloadType::EAP => false,
        _ => true,
    }
}

/// The first Notify of type `ty` in a payload list.
pub fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

/// One payload of a chain as its generic header (§3.2) frames it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framed<'a> {
    ty: PayloadType,
    /// The Next Payload field: for SK, the type of the first payload inside.
    next: PayloadType,
    critical: bool,
    body: &'a [u8],
}

/// Walks a chain's generic headers without decoding or copying a body,
/// checking the lengths, that SK comes last and that each type is allowed
/// by `allowed`. Calls `each` on every payload; returns how many there are.
fn frame_chain<'a>(
    first: PayloadType,
    bytes: &'a [u8],
    allowed: impl Fn(PayloadType) -> bool,
    mut each: impl FnMut(Framed<'a>) -> Result<(), DecodeError>,
) -> Result<usize, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut ty = first;
    let mut n = 0;
    while ty != PayloadType::NONE {
        if !allowed(ty) {
            return Err(DecodeError::PayloadNotAllowed(ty.0));
        }
        let next = PayloadType(r.u8()?);
        let critical = r.u8()? & 0x80 != 0;
        let len = r.u16()? as usize;
        let body = r.take(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
        if critical && !Payload::known(ty) {
            return Err(DecodeError::UnsupportedCriticalPayload(ty.0));
        }
        each(Framed {
            ty,
            next,
            critical,
            body,
        })?;
        n += 1;
        // SKF too is last (RFC 7383 §2.5).
        if ty == PayloadType::SK || ty == PayloadType::SKF {
            if !r.is_empty() {
                return Err(DecodeError::Invalid("SK payload not last"));
            }
            return Ok(n);
        }
        ty = next;
    }
    r.expect_empty()?;
    Ok(n)
}

/// Decodes a chain of payloads starting with type `first`. When
/// `allow_sk`, an SK payload may appear and must be the last (§3.14).
pub fn decode_chain(
    first: PayloadType,
    bytes: &[u8],
    allow_sk: bool,
) -> Result<Vec<Payload>, DecodeError> {
    decode_chain_where(first, bytes, |ty| allow_sk || ty != PayloadType::SK)
}

/// Decodes a chain whose payload types must satisfy `allowed`. The whole
/// chain is framed first, so a bad length or type anywhere costs no
/// allocation, and the payload list is allocated once, at most one entry
/// per four bytes.
fn decode_chain_where(
    first: PayloadType,
    bytes: &[u8],
    allowed: impl Fn(PayloadType) -> bool,
) -> Result<Vec<Payload>, DecodeError> {
    let n = frame_chain(first, bytes, &allowed, |_| Ok(()))?;
    let mut out = Vec::with_capacity(n);
    frame_chain(first, bytes, &allowed, |f| {
        out.push(if f.ty == PayloadType::SK {
            Payload::Encrypted(Encrypted {
                first_payload: f.next,
                data: f.body.to_vec(),
            })
        } else {
            Payload::decode_body(f.ty, f.critical, f.body)?
        });
        Ok(())
    })?;
    Ok(out)
}

/// Encodes a chain of payloads, returning the first payload type (for the
/// preceding header) and the bytes.
pub fn encode_chain(payloads: &[Payload]) -> Result<(PayloadType, Vec<u8>), EncodeError> {
    let mut w = Writer::new();
    encode_chain_into(payloads, &mut w)?;
    let first = payloads
        .first()
        .map(Payload::payload_type)
        .unwrap_or(PayloadType::NONE);
    Ok((first, w.buf))
}

fn encode_chain_into(payloads: &[Payload], w: &mut Writer) -> Result<(), EncodeError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Encrypted(e) => e.first_payload,
            _ => payloads
                .get(i + 1)
                .map(Payload::payload_type)
                .unwrap_or(PayloadType::NONE),
        };
        let start = w.len();
        w.u8(next.0);
        w.u8(if p.critical() { 0x80 } else { 0 });
        w.u16(0);
        p.encode_body(w)?;
        w.patch_len_u16("payload length", start)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
