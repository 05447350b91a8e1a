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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ExchangeType, Flags, Writer};

    /// A message whose only payload is SKF; `trailing` appends a payload
    /// header after it (SKF must be last, §2.5).
    fn datagram(exchange: ExchangeType, trailing: bool) -> Vec<u8> {
        let hdr = Header {
            spi_i: 1,
            spi_r: 2,
            exchange,
            flags: Flags::new(true, false),
            message_id: 3,
        };
        let mut w = Writer::new();
        hdr.encode(PayloadType::SKF, 0, &mut w);
        // SKF: next = IDi (fragment 1), 2 of 5, then 20 octets sealed.
        w.u8(PayloadType::IDI.0);
        w.u8(0);
        w.u16(4 + 4 + 20);
        w.u16(2);
        w.u16(5);
        w.bytes(&[0xaa; 20]);
        if trailing {
            w.u8(0);
            w.u8(0);
            w.u16(4);
        }
        let len = w.len() as u32;
        w.patch_u32(24, len);
        w.buf
    }

    #[test]
    fn ike_skf_fields_and_sealed_part() {
        let d = datagram(ExchangeType::IKE_AUTH, false);
        let (h, f) = decode_skf(&d).unwrap().unwrap();
        assert_eq!(h.message_id, 3);
        assert_eq!(
            f,
            Skf {
                first_payload: PayloadType::IDI,
                number: 2,
                total: 5,
                sealed_len: 20,
            }
        );
    }

    #[test]
    fn ike_skf_refused_in_ike_sa_init_and_when_not_last() {
        let d = datagram(ExchangeType::IKE_SA_INIT, false);
        assert_eq!(
            decode_skf(&d),
            Err(DecodeError::PayloadNotAllowed(PayloadType::SKF.0))
        );
        let d = datagram(ExchangeType::IKE_AUTH, true);
        assert_eq!(
            decode_skf(&d),
            Err(DecodeError::Invalid("SK payload not last"))
        );
        // Too short for its two fields.
        let mut d = datagram(ExchangeType::IKE_AUTH, false);
        d.truncate(28 + 4 + 2);
        d[30..32].copy_from_slice(&6u16.to_be_bytes());
        let len = d.len() as u32;
        d[24..28].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode_skf(&d), Err(DecodeError::Truncated));
    }
}
