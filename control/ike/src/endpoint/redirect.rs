//! IKEv2 redirect (RFC 5685) in the exchanges: the responder redirects in
//! IKE_SA_INIT (§4.3) or after IKE_AUTH (§6) by its policy; the initiator
//! announces support, follows a redirect with a new IKE_SA_INIT carrying
//! REDIRECTED_FROM, within a bound.
//!
//! Security (§9): a REDIRECT in an IKE_SA_INIT response is unauthenticated.
//! The nonce echo only proves the sender saw our request; anyone on the
//! path can still send us elsewhere, where we must authenticate the new
//! gateway as the configured peer identity, so the worst it achieves is a
//! failed attempt (as a forged error notify would). The bound on
//! redirects keeps two gateways, or an attacker, from keeping us going
//! round. A redirect in IKE_AUTH is followed only once the response's
//! AUTH is verified.
//!
//! Cookies and half-open SAs (RFC 7296 §2.6, RFC 8019): the responder
//! decides on a redirect in IKE_SA_INIT before demanding a cookie and
//! before admitting a half-open SA. The REDIRECT answer keeps no state
//! and costs no Diffie-Hellman work, as a COOKIE answer, and is of the
//! same size, so it adds nothing to what a spoofing flood gains; making a
//! client we will not serve return a cookie first would only cost it a
//! round trip.

use super::*;
use crate::message::redirect::{decode_redirected_from, encode_redirected_from};
use crate::redirect::{RedirectExchange, RedirectPolicy};

impl Endpoint {
    /// The number of IKE SAs the gateway holds, for a `load` policy: the
    /// driver passes the count of every engine of the gateway (see
    /// [`Endpoint::set_gateway_load`]); alone, an engine counts its own IKE
    /// SAs that are past the half-open stage.
    fn load(&self) -> usize {
        self.gateway_load
            .unwrap_or_else(|| self.sas.len().saturating_sub(self.half_open))
    }

    /// This engine's IKE SAs past the half-open stage (established, being
    /// set up by us, rekeyed or being deleted): what it adds to the
    /// gateway's load.
    pub fn load_count(&self) -> usize {
        self.sas.len().saturating_sub(self.half_open)
    }

    /// Tells the engine how many IKE SAs the whole gateway holds (the sum
    /// of [`Endpoint::load_count`] of its engines), for the `load` redirect
    /// policy.
    pub fn set_gateway_load(&mut self, n: usize) {
        self.gateway_load = Some(n);
    }

    /// Where to send a new client, if the policy says to redirect it in
    /// `exchange`: `supported` is whether it announced REDIRECT_SUPPORTED
    /// (or came with REDIRECTED_FROM, which implies it), `from` the gateway
    /// that sent it here. Targets are taken in turn, skipping our own
    /// address and the gateway it came from.
    fn redirect_target(
        &mut self,
        exchange: RedirectExchange,
        local: SocketAddr,
        supported: bool,
        from: Option<&GatewayIdentity>,
    ) -> Option<GatewayIdentity> {
        let rc = &self.config.redirect;
        if rc.exchange != exchange || rc.targets.is_empty() {
            return None;
        }
        match rc.policy {
            RedirectPolicy::Never => return None,
            RedirectPolicy::Always => {}
            // A client sent here by a loaded gateway is served rather than
            // bounced on: the farm's gateways would otherwise pass it
            // round while all are busy.
            RedirectPolicy::Load { above } => {
                if from.is_some() || self.load() < above {
                    return None;
                }
            }
        }
        if !supported {
            // §4.1: only a client that said it can follow is redirected.
            self.stats.redirect_not_supported += 1;
            return None;
        }
        let me = GatewayIdentity::Ip(local.ip());
        let n = rc.targets.len();
        for i in 0..n {
            let g = &rc.targets[(self.redirect_turn + i) % n];
            if *g != me && Some(g) != from {
                let g = g.clone();
                self.redirect_turn = (self.redirect_turn + i + 1) % n;
                return Some(g);
            }
        }
        None
    }

    /// §4.3: the responder's part in IKE_SA_INIT. Returns true if the
    /// request was answered with REDIRECT (no IKE SA made). Otherwise
    /// returns false and leaves in `peer` whether the client supports
    /// redirect and where it came from, for the IKE SA.
    pub(super) fn redirect_in_init(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        hdr: &Header,
        msg: &Message,
        ni: &[u8],
        peer: &mut (bool, Option<GatewayIdentity>),
    ) -> bool {
        let from = match msg.notify(NotifyType::REDIRECTED_FROM) {
            None => None,
            Some(n) => match decode_redirected_from(&n.data) {
                Ok(g) => Some(g),
                Err(_) => {
                    self.stats.redirect_malformed += 1;
                    None
                }
            },
        };
        let supported = msg.notify(NotifyType::REDIRECT_SUPPORTED).is_some() || from.is_some();
        *peer = (supported, from);
        let Some(gateway) = self.redirect_target(
            RedirectExchange::IkeSaInit,
            local,
            supported,
            peer.1.as_ref(),
        ) else {
            return false;
        };
        let data = Redirect {
            gateway: gateway.clone(),
            nonce: Some(ni.to_vec()),
        }
        .encode();
        let Ok(data) = data else {
            self.stats.encode_errors += 1;
            return false;
        };
        self.stats.redirects_sent_init += 1;
        tracing::debug!(%remote, to = %gateway, "IKE: client redirected in IKE_SA_INIT (RFC 5685 §4.3)");
        let r = Self::plain_response(
            hdr,
            vec![Payload::Notify(Notify::new(NotifyType::REDIRECT, data))],
        );
        self.send_plain(local, remote, r);
        true
    }

    /// §6: the responder's part in IKE_AUTH, once the client's AUTH is
    /// verified. If the policy redirects it, the response carries our ID
    /// and AUTH (the client must know who redirects it) and REDIRECT, and
    /// no Child SA; the IKE SA leaves the half-open budget and only
    /// lingers for the client's Delete. `None`: serve the client here.
    pub(super) fn redirect_after_auth(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ours: &[Payload],
    ) -> Option<Vec<Payload>> {
        let from = sa.redirected_from.clone();
        let gateway = self.redirect_target(
            RedirectExchange::IkeAuth,
            sa.local,
            sa.peer_redirect,
            from.as_ref(),
        )?;
        let Ok(data) = (Redirect {
            gateway: gateway.clone(),
            nonce: None,
        })
        .encode() else {
            self.stats.encode_errors += 1;
            return None;
        };
        let Some(Stage::HalfOpen { ticket, .. }) = sa.enter(Stage::Deleting) else {
            return None;
        };
        self.release_half_open(ticket);
        sa.redirected = true;
        sa.last_heard = now;
        self.stats.redirects_sent_auth += 1;
        tracing::info!(remote = %sa.remote, to = %gateway, "IKE: authenticated client redirected in IKE_AUTH (RFC 5685 §6)");
        let mut out = vec![Payload::IdR(self.config.local_id.clone())];
        out.extend_from_slice(ours);
        out.push(Payload::Notify(Notify::new(NotifyType::REDIRECT, data)));
        Some(out)
    }

    /// The new gateway of a REDIRECT we may follow, or `None` (counted).
    fn redirect_destination(
        &mut self,
        sa: &IkeSa,
        now: Timestamp,
        redirect: &Redirect,
    ) -> Option<SocketAddr> {
        let GatewayIdentity::Ip(ip) = redirect.gateway else {
            self.stats.redirect_unresolved += 1;
            return None;
        };
        if ip == sa.remote.ip() || ip.is_unspecified() || ip.is_multicast() {
            self.stats.redirect_loop_refused += 1;
            return None;
        }
        if !self.redirect_bound.admit(now) {
            self.stats.redirect_loop_refused += 1;
            tracing::warn!(from = %sa.remote, to = %ip, "IKE: redirect refused: {} redirects within {} s already", crate::redirect::MAX_REDIRECTS, crate::redirect::REDIRECT_PERIOD_MS / 1000);
            return None;
        }
        Some(SocketAddr::new(ip, self.config.remote_addr.port()))
    }

    /// §4.3: the initiator got REDIRECT in the IKE_SA_INIT response. It is
    /// followed if we announced support, its nonce echo is our Ni and the
    /// bound allows; otherwise ignored (counted) while we keep waiting for
    /// a genuine response, as for other unprotected errors (RFC 7296
    /// §2.21.1).
    pub(super) fn on_init_redirect(&mut self, sa: &mut IkeSa, now: Timestamp, data: &[u8]) {
        if !self.config.follow_redirects {
            self.stats.redirect_unsolicited += 1;
            return;
        }
        let r = match Redirect::decode(data, true) {
            Ok(r) => r,
            Err(_) => {
                self.stats.redirect_malformed += 1;
                return;
            }
        };
        let Phase::InitSent(init) = &sa.phase else {
            return;
        };
        if !r.nonce.as_deref().is_some_and(|n| ct_eq(n, &init.ni)) {
            self.stats.redirect_nonce_mismatch += 1;
            return;
        }
        let Some(to) = self.redirect_destination(sa, now, &r) else {
            if let Phase::InitSent(init) = &mut sa.phase {
                init.error = Some(NotifyType::REDIRECT);
            }
            return;
        };
        self.follow_redirect(sa, now, to);
    }

    /// §6: the IKE_AUTH response carried REDIRECT and its AUTH is
    /// verified. Returns true if we follow it: the IKE SA is deleted
    /// (quietly: for the driver the tunnel is still connecting) and a new
    /// IKE_SA_INIT goes to the new gateway.
    pub(super) fn auth_redirect(&mut self, sa: &mut IkeSa, now: Timestamp, ps: &[Payload]) -> bool {
        let Some(n) = find_notify(ps, NotifyType::REDIRECT) else {
            return false;
        };
        if !self.config.follow_redirects {
            self.stats.redirect_unsolicited += 1;
            return false;
        }
        let r = match Redirect::decode(&n.data, false) {
            Ok(r) => r,
            Err(_) => {
                self.stats.redirect_malformed += 1;
                return false;
            }
        };
        let Some(to) = self.redirect_destination(sa, now, &r) else {
            return false;
        };
        sa.enter(Stage::Deleting);
        sa.redirected = true;
        self.send_request(
            sa,
            ExchangeType::INFORMATIONAL,
            &[Payload::Delete(Delete::ike())],
            Request::DeleteIke(DownReason::Terminated),
            now,
        );
        self.follow_redirect(sa, now, to);
        true
    }

    /// Starts a new IKE SA towards `to` with REDIRECTED_FROM naming the
    /// gateway of `sa`, which goes quietly (at once if it never got keys).
    fn follow_redirect(&mut self, sa: &mut IkeSa, now: Timestamp, to: SocketAddr) -> IkeSaId {
        let from = sa.remote;
        if !sa.redirected {
            sa.redirected = true;
            self.remove_sa(sa, None);
        }
        self.stats.redirects_followed += 1;
        let gw = GatewayIdentity::Ip(from.ip());
        let new = self.initiate_to(now, to, Some(gw));
        tracing::info!(%from, %to, "IKE: redirected by the gateway (RFC 5685), IKE_SA_INIT to the new one");
        self.emit(IkeEvent::Redirected {
            old: sa.id,
            new,
            from,
            to,
        });
        new
    }

    /// IKE SA `id` is established: if it replaces one whose gateway
    /// redirected us (§5), that one is deleted now, make before break: its
    /// Child SAs carried the traffic until the new ones were up.
    pub(super) fn redirect_established_replacement(&mut self, id: IkeSaId, now: Timestamp) {
        let Some(pos) = self
            .redirect_replaced
            .iter()
            .position(|(new, _)| *new == id)
        else {
            return;
        };
        let (_, old) = self.redirect_replaced.swap_remove(pos);
        self.with_sa(old.0, now, |ep, o| {
            if o.state() == State::Established {
                o.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                ep.kick(o, now);
            }
        });
    }

    /// The notifies our IKE_SA_INIT request carries for redirect:
    /// REDIRECTED_FROM after a redirect, else REDIRECT_SUPPORTED if we
    /// follow redirects (§4.1, §4.3).
    pub(super) fn redirect_notifies(&mut self, from: Option<&GatewayIdentity>) -> Vec<Payload> {
        if !self.config.follow_redirects {
            return Vec::new();
        }
        match from {
            Some(g) => match encode_redirected_from(g) {
                Ok(d) => vec![Payload::Notify(Notify::new(NotifyType::REDIRECTED_FROM, d))],
                Err(_) => {
                    self.stats.encode_errors += 1;
                    Vec::new()
                }
            },
            None => vec![Payload::Notify(Notify::new(
                NotifyType::REDIRECT_SUPPORTED,
                vec![],
            ))],
        }
    }
}

/// RFC 5685 §5: how long a gateway keeps an IKE SA whose client it
/// redirected, waiting for the client to delete it once it is set up with
/// the new gateway.
const REDIRECT_GRACE_MS: u64 = 30_000;

impl Endpoint {
    /// RFC 5685 §5: sends the client of established IKE SA `id` to
    /// `gateway` (e.g. to take this gateway down for maintenance) with an
    /// INFORMATIONAL carrying REDIRECT. The client sets up an IKE SA with
    /// the new gateway and deletes this one; if it has not after
    /// `REDIRECT_GRACE_MS`, the IKE SA expires here. Only a client that
    /// announced REDIRECT_SUPPORTED in its IKE_SA_INIT can be redirected.
    pub fn redirect_established(
        &mut self,
        now: Timestamp,
        id: IkeSaId,
        gateway: GatewayIdentity,
    ) -> Result<(), ApiError> {
        let sa = self.sas.get(&id.0).ok_or(ApiError::NoSuchIkeSa)?;
        if !sa.peer_redirect || sa.state() != State::Established {
            return Err(ApiError::CannotRedirect);
        }
        self.with_sa(id.0, now, |ep, sa| {
            sa.tasks.push_back(Task::Redirect(gateway));
            ep.kick(sa, now);
        });
        Ok(())
    }

    pub(super) fn send_redirect(
        &mut self,
        sa: &mut IkeSa,
        gateway: GatewayIdentity,
        now: Timestamp,
    ) {
        let Ok(data) = (Redirect {
            gateway: gateway.clone(),
            nonce: None,
        })
        .encode() else {
            self.stats.encode_errors += 1;
            return;
        };
        tracing::info!(remote = %sa.remote, to = %gateway, "IKE: redirecting an established client (RFC 5685 §5)");
        let payloads = [Payload::Notify(Notify::new(NotifyType::REDIRECT, data))];
        self.send_request(
            sa,
            ExchangeType::INFORMATIONAL,
            &payloads,
            Request::Redirect,
            now,
        );
    }

    /// The client acknowledged the REDIRECT: it has `REDIRECT_GRACE_MS`
    /// to delete the IKE SA before it expires here.
    pub(super) fn on_redirect_answered(&mut self, sa: &mut IkeSa, now: Timestamp) {
        self.stats.redirects_sent_informational += 1;
        if let Some(life) = sa.lifetime_mut() {
            life.rekey_at = None;
            life.expire_at = life.expire_at.min(now.plus(REDIRECT_GRACE_MS));
        }
    }

    /// RFC 5685 §5: the gateway of an IKE SA we initiated sends us
    /// elsewhere (authenticated: it came inside SK). We answer, start an
    /// IKE SA with the new gateway and delete this one (quietly: for the
    /// driver the tunnel moves) once the new one is up. Ignored (counted)
    /// unless we announced support and the SA is established.
    pub(super) fn on_informational_redirect(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        data: &[u8],
    ) {
        if !self.config.follow_redirects
            || !sa.announced_redirect
            || sa.state() != State::Established
            || sa.redirected
        {
            self.stats.redirect_unsolicited += 1;
            return;
        }
        let r = match Redirect::decode(data, false) {
            Ok(r) => r,
            Err(_) => {
                self.stats.redirect_malformed += 1;
                return;
            }
        };
        let Some(to) = self.redirect_destination(sa, now, &r) else {
            return;
        };
        // Kept until the new IKE SA is up (make before break); if that
        // fails, the gateway drops it after its grace period and DPD
        // ends it here, quietly: the driver saw the tunnel move.
        sa.redirected = true;
        let new = self.follow_redirect(sa, now, to);
        self.redirect_replaced
            .retain(|(_, old)| self.sas.contains_key(&old.0));
        self.redirect_replaced.push((new, sa.id));
    }
}
