//! CERT (RFC 7296 §3.6) and CERTREQ (§3.7) payload bodies: a one-octet
//! Cert Encoding and the data. Only encoding 4 (X.509 Certificate -
//! Signature) is used; others are kept so the message round-trips and
//! are ignored by the engine (counted).

use super::codec::{codepoint, Reader, Writer};
use super::DecodeError;

codepoint! {
    /// Certificate Encoding, RFC 7296 §3.6.
    CertEncoding(u8) {
        X509_SIGNATURE = 4,
        CRL = 7,
        HASH_AND_URL_X509 = 12,
    }
}

/// A CERT or CERTREQ body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPayload {
    pub encoding: CertEncoding,
    /// CERT: one DER certificate. CERTREQ with X.509: concatenated SHA-1
    /// hashes of trusted CAs' SubjectPublicKeyInfo (§3.7).
    pub data: Vec<u8>,
}

impl CertPayload {
    /// An X.509 Certificate - Signature CERT, or a CERTREQ for X.509.
    pub fn x509(data: Vec<u8>) -> Self {
        Self {
            encoding: CertEncoding::X509_SIGNATURE,
            data,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let encoding = CertEncoding(r.u8()?);
        Ok(Self {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.encoding.0);
        w.bytes(&self.data);
    }

    /// CERTREQ authorities: the 20-octet hashes (§3.7). `None` when the
    /// data is not a whole number of them.
    pub fn authorities(&self) -> Option<impl Iterator<Item = &[u8]>> {
        self.data
            .len()
            .is_multiple_of(20)
            .then(|| self.data.chunks_exact(20))
    }
}
