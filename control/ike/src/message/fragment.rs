//! The Encrypted Fragment payload, SKF (RFC 7383 §2.5): the generic
//! payload header, Fragment Number and Total Fragments, then IV, encrypted
//! content and ICV exactly as in SK (RFC 7296 §3.14). Fragment Number and
//! Total Fragments lie before the IV, so they are covered by the ICV (and
//! are part of the AEAD associated data, RFC 5282 §5.1).

use super::{allowed_in_clear, frame_chain, DecodeError, Header, PayloadType, Reader, HEADER_LEN};

/// Fragment Number and Total Fragments: the 4 octets between the SKF
/// generic header and the IV.
pub const SKF_FIELDS_LEN: usize = 4;

/// An SKF payload as received: its fields, and where its sealed part (IV,
/// ciphertext, ICV) lies. The sealed part is the datagram's tail, so the
/// SK cipher opens it with everything before it as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skf {
    /// Next Payload: in fragment 1 the type of the first payload inside the
    /// original SK payload; 0 in the others (§2.5).
    pub first_payload: PayloadType,
    pub number: u16,
    pub total: u16,
    /// Length of IV, ciphertext and ICV (the last bytes of the datagram).
    pub sealed_len: usize,
}

/// The header and SKF payload of a datagram (no non-ESP marker), or
/// `None` when its last payload is not SKF. The chain is walked as
/// [`super::Message::decode`] walks it: lengths checked, SKF last, only
/// payloads the exchange may carry in the clear (never SKF in
/// IKE_SA_INIT, §2.5: "MUST NOT be used with IKE_SA_INIT").
pub fn decode_skf(datagram: &[u8]) -> Result<Option<(Header, Skf)>, DecodeError> {
    let (header, next) = Header::decode(datagram)?;
    let mut last = None;
    frame_chain(
        next,
        &datagram[HEADER_LEN..],
        |ty| allowed_in_clear(header.exchange, ty),
        |f| {
            last = (f.ty == PayloadType::SKF).then_some((f.next, f.body));
            Ok(())
        },
    )?;
    let Some((first_payload, body)) = last else {
        return Ok(None);
    };
    let mut r = Reader::new(body);
    let number = r.u16()?;
    let total = r.u16()?;
    Ok(Some((
        header,
        Skf {
            first_payload,
            number,
            total,
            sealed_len: r.remaining(),
        },
    )))
}
