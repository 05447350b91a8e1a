//! Errors while processing a received message, and how each is answered
//! on the wire (RFC 7296 §2.21, error notifies of §3.10.1).

use super::crypto::{CryptoError, DhGroup};
use super::message::{DecodeError, NotifyType};
use super::negotiate::Choice;

/// A rule of RFC 7296 the peer broke in a message that decoded: each
/// distinct violation is its own variant, counted by name in
/// [`crate::Stats::protocol_errors`] and answered as [`ProtocolError::notify`]
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// No SA payload where the exchange needs one (§1.2, §1.3).
    MissingSa,
    /// No KE payload where the exchange needs one (§1.2, §1.3.2).
    MissingKe,
    /// No Nonce payload where the exchange needs one (§1.2, §1.3).
    MissingNonce,
    /// IKE_AUTH request without IDi (§1.2).
    MissingIdi,
    /// IKE_AUTH request without AUTH (§1.2).
    MissingAuth,
    /// A Child SA request without TSi (§1.2, §1.3.1).
    MissingTsi,
    /// A Child SA request without TSr (§1.2, §1.3.1).
    MissingTsr,
    /// A CREATE_CHILD_SA nonce outside 16..=256 octets (§2.10, §3.9).
    BadNonceLength,
    /// An IKE_SA_INIT request's nonce outside 16..=256 octets (§2.10,
    /// §3.9): unauthenticated and before any state exists, so dropped
    /// without an answer.
    InitNonceLength,
    /// A REKEY_SA notify whose SPI is not a 4-octet ESP SPI (§1.3.3).
    BadRekeySpi,
    /// An IKE SA rekey proposal whose SPI is not 8 octets (§1.3.2, §3.3.1).
    BadIkeSpi,
    /// A Diffie-Hellman public value that failed validation (RFC 6989,
    /// RFC 5903).
    InvalidKePublicValue,
    /// A request of an exchange type the IKE SA's state does not allow
    /// (e.g. IKE_AUTH on an established SA, §1.2).
    UnexpectedExchange,
    /// A response that matches our request but not the IKE SA's state:
    /// dropped (responses are never answered, §2.21).
    UnexpectedResponse,
}

impl ProtocolError {
    /// Every variant, in declaration order.
    pub const ALL: [ProtocolError; 14] = [
        ProtocolError::MissingSa,
        ProtocolError::MissingKe,
        ProtocolError::MissingNonce,
        ProtocolError::MissingIdi,
        ProtocolError::MissingAuth,
        ProtocolError::MissingTsi,
        ProtocolError::MissingTsr,
        ProtocolError::BadNonceLength,
        ProtocolError::InitNonceLength,
        ProtocolError::BadRekeySpi,
        ProtocolError::BadIkeSpi,
        ProtocolError::InvalidKePublicValue,
        ProtocolError::UnexpectedExchange,
        ProtocolError::UnexpectedResponse,
    ];

    /// The counter name (the variant's name in snake case).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolError::MissingSa => "missing_sa",
            ProtocolError::MissingKe => "missing_ke",
            ProtocolError::MissingNonce => "missing_nonce",
            ProtocolError::MissingIdi => "missing_idi",
            ProtocolError::MissingAuth => "missing_auth",
            ProtocolError::MissingTsi => "missing_tsi",
            ProtocolError::MissingTsr => "missing_tsr",
            ProtocolError::BadNonceLength => "bad_nonce_length",
            ProtocolError::InitNonceLength => "init_nonce_length",
            ProtocolError::BadRekeySpi => "bad_rekey_spi",
            ProtocolError::BadIkeSpi => "bad_ike_spi",
            ProtocolError::InvalidKePublicValue => "invalid_ke_public_value",
            ProtocolError::UnexpectedExchange => "unexpected_exchange",
            ProtocolError::UnexpectedResponse => "unexpected_response",
        }
    }

    /// The error notify answering a request that broke this rule, or
    /// `None` to drop it without an answer. Malformed or missing payloads
    /// are INVALID_SYNTAX (§3.10.1); responses are never answered (§2.21).
    pub fn notify(self) -> Option<NotifyType> {
        match self {
            ProtocolError::MissingSa
            | ProtocolError::MissingKe
            | ProtocolError::MissingNonce
            | ProtocolError::MissingIdi
            | ProtocolError::MissingAuth
            | ProtocolError::MissingTsi
            | ProtocolError::MissingTsr
            | ProtocolError::BadNonceLength
            | ProtocolError::BadRekeySpi
            | ProtocolError::BadIkeSpi
            | ProtocolError::InvalidKePublicValue
            | ProtocolError::UnexpectedExchange => Some(NotifyType::INVALID_SYNTAX),
            ProtocolError::InitNonceLength | ProtocolError::UnexpectedResponse => None,
        }
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ProtocolError {}

/// Received messages refused, by [`ProtocolError`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolErrorCounts([u64; ProtocolError::ALL.len()]);

impl ProtocolErrorCounts {
    pub fn get(&self, e: ProtocolError) -> u64 {
        self.0[e as usize]
    }

    pub(crate) fn count(&mut self, e: ProtocolError) {
        self.0[e as usize] += 1;
    }

    /// `(counter name, count)` for every variant.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ProtocolError::ALL.iter().map(|e| (e.name(), self.get(*e)))
    }
}

/// An error while processing a message, mapped to the wire (§2.21).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IkeError {
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("no proposal chosen")]
    NoProposalChosen,
    #[error("invalid KE payload, want group {0:?}")]
    InvalidKe(DhGroup),
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    #[error("child SA not found")]
    ChildSaNotFound,
    #[error("temporary failure")]
    TemporaryFailure,
    #[error("no additional SAs")]
    NoAdditionalSas,
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// No internal address could be assigned (pool exhausted, §3.10.1):
    /// no Child SA is made in IKE_AUTH.
    #[error("internal address failure")]
    InternalAddressFailure,
    /// The tunnel hands out addresses but the peer asked for none
    /// (§3.10.1, §3.15).
    #[error("configuration payload required")]
    FailedCpRequired,
    /// Our own failure (the crypto library), not the peer's: the request
    /// is answered INVALID_SYNTAX, which tells it nothing more.
    #[error("internal failure")]
    Internal,
}

impl IkeError {
    /// The Notify to answer with, or `None` to drop silently (§2.21.2:
    /// messages failing integrity are dropped without a response).
    pub fn notify(&self) -> Option<(NotifyType, Vec<u8>)> {
        Some(match self {
            IkeError::Decode(DecodeError::UnsupportedCriticalPayload(t)) => {
                (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*t])
            }
            IkeError::Decode(e) => (e.notify(), vec![]),
            IkeError::Protocol(p) => (p.notify()?, vec![]),
            IkeError::NoProposalChosen => (NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
            IkeError::InvalidKe(g) => (
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().0.to_be_bytes().to_vec(),
            ),
            IkeError::AuthenticationFailed => (NotifyType::AUTHENTICATION_FAILED, vec![]),
            IkeError::TsUnacceptable => (NotifyType::TS_UNACCEPTABLE, vec![]),
            IkeError::ChildSaNotFound => (NotifyType::CHILD_SA_NOT_FOUND, vec![]),
            IkeError::TemporaryFailure => (NotifyType::TEMPORARY_FAILURE, vec![]),
            IkeError::NoAdditionalSas => (NotifyType::NO_ADDITIONAL_SAS, vec![]),
            IkeError::Internal => (NotifyType::INVALID_SYNTAX, vec![]),
            IkeError::InternalAddressFailure => (NotifyType::INTERNAL_ADDRESS_FAILURE, vec![]),
            IkeError::FailedCpRequired => (NotifyType::FAILED_CP_REQUIRED, vec![]),
            IkeError::IntegrityCheckFailed => return None,
        })
    }
}

impl From<Choice> for IkeError {
    fn from(c: Choice) -> Self {
        match c {
            Choice::NoProposalChosen => IkeError::NoProposalChosen,
            Choice::InvalidKe(g) => IkeError::InvalidKe(g),
        }
    }
}

impl From<CryptoError> for IkeError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::IntegrityCheck => IkeError::IntegrityCheckFailed,
            CryptoError::InvalidPublicValue => ProtocolError::InvalidKePublicValue.into(),
            CryptoError::Internal | CryptoError::TooLong(_) => IkeError::Internal,
        }
    }
}
