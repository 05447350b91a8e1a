//! IKEv2 messages: the header (RFC 7296 §3.1), the generic payload header
//! (§3.2) and the payload chain, plus helpers for port 4500 (RFC 3948 §2.2).
//!
//! Messages are decoded into owned values: this is control-plane code where
//! clarity matters more than avoiding a copy.

pub mod codec;
pub mod notify;
pub mod payload;
pub mod types;

pub use codec::{Reader, Writer};
pub use notify::NotifyType;
pub use payload::*;
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
    #[error("unsupported critical payload type {0}")]
    UnsupportedCriticalPayload(u8),
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

    /// Decodes the header, returning it with the first payload type.
    /// Checks the major version and that Length equals the datagram length.
    pub fn decode(datagram: &[u8]) -> Result<(Header, PayloadType), DecodeError> {
        let mut r = Reader::new(datagram);
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next = PayloadType(r.u8()?);
        let version = r.u8()?;
        if version >> 4 != 2 {
            return Err(DecodeError::InvalidMajorVersion(version >> 4));
        }
        let exchange = ExchangeType(r.u8()?);
        let flags = Flags(r.u8()?);
        let message_id = r.u32()?;
        let length = r.u32()? as usize;
        if length != datagram.len() {
            return Err(DecodeError::BadLength);
        }
        Ok((
            Header {
                spi_i,
                spi_r,
                exchange,
                flags,
                message_id,
            },
            next,
        ))
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
    /// stays encrypted as [`Payload::Encrypted`].
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let (header, next) = Header::decode(datagram)?;
        let payloads = decode_chain(next, &datagram[HEADER_LEN..], true)?;
        Ok(Message { header, payloads })
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let next = self
            .payloads
            .first()
            .map(Payload::payload_type)
            .unwrap_or(PayloadType::NONE);
        self.header.encode(next, 0, &mut w);
        encode_chain_into(&self.payloads, &mut w);
        let len = w.len() as u32;
        w.patch_u32(24, len);
        w.buf
    }

    /// The first Notify of type `ty`.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        find_notify(&self.payloads, ty)
    }
}

/// The first Notify of type `ty` in a payload list.
pub fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

/// Decodes a chain of payloads starting with type `first`. When
/// `allow_sk`, an SK payload may appear and must be the last (§3.14).
pub fn decode_chain(
    first: PayloadType,
    bytes: &[u8],
    allow_sk: bool,
) -> Result<Vec<Payload>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        let this = next;
        next = PayloadType(r.u8()?);
        let flags = r.u8()?;
        let critical = flags & 0x80 != 0;
        let len = r.u16()? as usize;
        let body = r.take(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
        if this == PayloadType::SK {
            if !allow_sk || !r.is_empty() {
                return Err(DecodeError::Invalid("SK payload not last"));
            }
            out.push(Payload::Encrypted(Encrypted {
                first_payload: next,
                data: body.to_vec(),
            }));
            return Ok(out);
        }
        out.push(Payload::decode_body(this, critical, body)?);
    }
    r.expect_empty()?;
    Ok(out)
}

/// Encodes a chain of payloads, returning the first payload type (for the
/// preceding header) and the bytes.
pub fn encode_chain(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut w = Writer::new();
    encode_chain_into(payloads, &mut w);
    let first = payloads
        .first()
        .map(Payload::payload_type)
        .unwrap_or(PayloadType::NONE);
    (first, w.buf)
}

fn encode_chain_into(payloads: &[Payload], w: &mut Writer) {
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
        p.encode_body(w);
        let len = (w.len() - start) as u16;
        w.patch_u16(start + 2, len);
    }
}

#[cfg(test)]
mod tests;
