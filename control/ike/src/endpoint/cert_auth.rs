//! What IKE_AUTH proves and checks, by PSK (AUTH method 2) or by
//! certificate (RFC 7296 §2.15, §3.6–§3.8; RFC 7427 signatures; CERTREQ
//! and SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT as strongSwan expects:
//! it sends its certificate only when asked, and uses RFC 7427 only when
//! the peer announced hashes).

use super::*;
use crate::cert::{self, sig, CertError};
use crate::config::{LocalAuth, RemoteAuth};

impl Endpoint {
    /// Whether either direction of IKE_AUTH is by PSK, which then must
    /// be known for the peer's identity.
    pub(super) fn uses_psk(&self) -> bool {
        matches!(self.config.local_auth, LocalAuth::Psk)
            || matches!(self.config.remote_auth, RemoteAuth::Psk)
    }

    fn uses_certificates(&self) -> bool {
        matches!(self.config.local_auth, LocalAuth::Pubkey(_))
            || matches!(self.config.remote_auth, RemoteAuth::Pubkey(_))
    }

    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) for our IKE_SA_INIT
    /// message, in either role, when certificates are in use.
    pub(super) fn init_auth_notifies(&self) -> Vec<Payload> {
        if !self.uses_certificates() {
            return Vec::new();
        }
        vec![Payload::Notify(Notify::new(
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            sig::hash_algorithms_data(),
        ))]
    }

    /// CERTREQ naming our trust anchors (§3.7): in the IKE_SA_INIT
    /// response and the IKE_AUTH request, when the peer must show a
    /// certificate.
    pub(super) fn certreq_payloads(&self) -> Vec<Payload> {
        match &self.config.remote_auth {
            RemoteAuth::Pubkey(t) => vec![Payload::CertReq(CertPayload::x509(t.certreq_data()))],
            RemoteAuth::Psk => Vec::new(),
        }
    }

    /// The §2.15 octets signed by one side: `ours` or the peer's, on an
    /// IKE SA of which we are the `initiator`.
    fn signed_octets(
        initiator: bool,
        sk: &Sk,
        init: &InitExchange,
        id: &Identification,
        ours: bool,
    ) -> Vec<u8> {
        let signer_is_initiator = ours == initiator;
        let (msg, nonce, sk_p) = if signer_is_initiator {
            (&init.request, &init.nr, &sk.keys.sk_pi)
        } else {
            (&init.response, &init.ni, &sk.keys.sk_pr)
        };
        cert::signed_octets(sk.suite.prf, msg, nonce, sk_p, &id.body())
    }

    /// Our CERT payloads (leaf first, §3.6) and AUTH for identity `id`;
    /// `None` when our key cannot sign in a way the peer accepts.
    pub(super) fn our_auth(
        &mut self,
        initiator: bool,
        sk: &Sk,
        init: &InitExchange,
        id: &Identification,
        psk: &SecretBytes,
    ) -> Option<Vec<Payload>> {
        let cred = match &self.config.local_auth {
            LocalAuth::Psk => {
                let auth = self.auth_value(initiator, sk, init, id, true, psk);
                return Some(vec![Payload::Auth(AuthPayload {
                    method: AuthMethod::SHARED_KEY_MIC,
                    data: auth.to_vec(),
                })]);
            }
            LocalAuth::Pubkey(c) => c.clone(),
        };
        let peer_init = if initiator {
            &init.response
        } else {
            &init.request
        };
        let hashes = peer_hash_algorithms(peer_init);
        let octets = Self::signed_octets(initiator, sk, init, id, true);
        let Some(auth) = cred.sign(&octets, hashes.as_deref()) else {
            // E.g. an RSA or Ed25519 key and a peer without RFC 7427.
            self.stats.cert.unsupported_algorithm += 1;
            return None;
        };
        let mut out: Vec<Payload> = cred
            .certificates()
            .iter()
            .map(|c| Payload::Cert(CertPayload::x509(c.clone())))
            .collect();
        out.push(Payload::Auth(auth));
        Some(out)
    }

    /// Whether the peer's AUTH (with its certificates, when configured)
    /// proves `id`, an identity already judged acceptable for this tunnel
    /// (`psk`: the secret for it). Refusals are counted in
    /// `auth_failures` and by reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn peer_authenticated(
        &mut self,
        initiator: bool,
        sk: &Sk,
        init: &InitExchange,
        id: &Identification,
        auth: &AuthPayload,
        ps: &[Payload],
        now: Timestamp,
        psk: &SecretBytes,
    ) -> bool {
        let result = match &self.config.remote_auth {
            RemoteAuth::Psk if auth.method != AuthMethod::SHARED_KEY_MIC => {
                self.stats.auth_refused_method += 1;
                false
            }
            RemoteAuth::Psk => {
                let expected = self.auth_value(initiator, sk, init, id, false, psk);
                let good = ct_eq(&auth.data, &expected);
                if !good {
                    self.stats.auth_refused_bad_auth += 1;
                }
                good
            }
            RemoteAuth::Pubkey(trust) => {
                let trust = trust.clone();
                let r = self.check_certificate(&trust, initiator, sk, init, id, auth, ps, now);
                if let Err(e) = r {
                    self.stats.cert.count(e);
                }
                r.is_ok()
            }
        };
        if !result {
            self.stats.auth_failures += 1;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn check_certificate(
        &mut self,
        trust: &cert::TrustStore,
        initiator: bool,
        sk: &Sk,
        init: &InitExchange,
        id: &Identification,
        auth: &AuthPayload,
        ps: &[Payload],
        now: Timestamp,
    ) -> Result<(), CertError> {
        if auth.method == AuthMethod::SHARED_KEY_MIC {
            return Err(CertError::MethodMismatch);
        }
        let mut certs = Vec::new();
        for p in ps {
            match p {
                Payload::Cert(c) if c.encoding == CertEncoding::X509_SIGNATURE => {
                    certs.push(c.data.as_slice())
                }
                Payload::Cert(_) => self.stats.cert.cert_payloads_ignored += 1,
                Payload::CertReq(r) if r.authorities().is_none() => {
                    self.stats.cert.certreq_ignored += 1
                }
                _ => {}
            }
        }
        let octets = Self::signed_octets(initiator, sk, init, id, false);
        let unix_s = self.config.unix_time_at_origin_ms.saturating_add(now.0) / 1000;
        trust.verify(&certs, unix_s, id, &octets, auth)
    }
}

/// The hashes a peer announced in its IKE_SA_INIT message (RFC 7427 §4),
/// or `None` when it sent no SIGNATURE_HASH_ALGORITHMS.
fn peer_hash_algorithms(msg: &[u8]) -> Option<Vec<u16>> {
    let m = Message::decode(msg).ok()?;
    let n = m.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)?;
    sig::parse_hash_algorithms(&n.data)
}
