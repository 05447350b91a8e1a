//! IKE_AUTH (RFC 7296 §1.2, §2.15): authentication of both peers and the
//! first Child SA.

use super::*;

impl Endpoint {
    /// AUTH over our signed octets (`ours`) or the value expected from the
    /// peer, §2.15, for an IKE SA of which we are the `initiator`.
    pub(super) fn auth_value(
        &self,
        initiator: bool,
        sk: &Sk,
        init: &InitExchange,
        id: &Identification,
        ours: bool,
        psk: &SecretBytes,
    ) -> SecretBytes {
        let signer_is_initiator = ours == initiator;
        let (msg, nonce, sk_p) = if signer_is_initiator {
            (&init.request, &init.nr, &sk.keys.sk_pi)
        } else {
            (&init.response, &init.ni, &sk.keys.sk_pr)
        };
        psk_auth(sk.suite.prf, psk, msg, nonce, sk_p, &id.body())
    }

    /// The peer authenticated: the SA leaves AuthSent or HalfOpen (and
    /// the half-open budget) for Established. Returns the IKE_SA_INIT
    /// exchange it no longer keeps, whose nonces key the first Child SA.
    pub(super) fn established(&mut self, sa: &mut IkeSa, now: Timestamp) -> Option<InitExchange> {
        let l = self.config.timers.ike_lifetime_ms;
        let life = Lifetime {
            rekey_at: Some(self.rekey_time(now, l)),
            expire_at: now.plus(l),
        };
        let init = match sa.enter(Stage::Established(life))? {
            Stage::AuthSent(init) => init,
            Stage::HalfOpen { init, ticket } => {
                self.release_half_open(ticket);
                init
            }
            other => {
                sa.enter(other);
                return None;
            }
        };
        self.stats.ike_sa_established += 1;
        self.emit(IkeEvent::IkeSaUp {
            ike: sa.id,
            local: sa.local,
            remote: sa.remote,
        });
        // RFC 5685 §5: the IKE SA it replaces goes (redirect.rs).
        self.redirect_established_replacement(sa.id, now);
        Some(init)
    }

    /// Where an IKE_AUTH request presenting `id_i` belongs (§2.15): here
    /// with the secret the peer must prove, or with a sibling template on
    /// our local address (by its tag), or nowhere (counted by reason).
    pub(super) fn judge_identity(&mut self, id_i: &Identification) -> Judgement {
        let Some(t) = &self.config.template else {
            if *id_i != self.config.remote_id {
                self.stats.auth_refused_identity += 1;
                return Judgement::Refused;
            }
            return Judgement::Here(self.config.psk.clone());
        };
        if !t.remote_ids.iter().any(|p| p.matches(id_i)) {
            if t.siblings.lookup(id_i).is_some() {
                return Judgement::Sibling;
            }
            self.stats.auth_refused_identity += 1;
            return Judgement::Refused;
        }
        if !self.config.psk.is_empty() {
            return Judgement::Here(self.config.psk.clone());
        }
        match t.secrets.lookup(id_i) {
            Some(psk) => Judgement::Here(psk.clone()),
            // Certificates both ways: the identity is proven by the
            // peer's certificate, no secret is involved.
            None if !self.uses_psk() => Judgement::Here(SecretBytes::new(Vec::new())),
            None => {
                self.stats.auth_refused_unknown_identity += 1;
                Judgement::Refused
            }
        }
    }

    /// The sibling template an IKE_AUTH request presenting `id_i` belongs
    /// to, if not to us (counts nothing: the sibling judges it).
    pub(super) fn sibling_for(&self, id_i: &Identification) -> Option<u32> {
        let t = self.config.template.as_ref()?;
        if t.remote_ids.iter().any(|p| p.matches(id_i)) {
            return None;
        }
        t.siblings.lookup(id_i).copied()
    }

    pub(super) fn on_auth_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let id_i = find_payload!(ps, IdI).ok_or(ProtocolError::MissingIdi)?;
        let auth = find_payload!(ps, Auth).ok_or(ProtocolError::MissingAuth)?;
        if sa.awaiting_auth().is_none() {
            return Err(ProtocolError::UnexpectedExchange.into());
        }
        // A sibling's identity was handed over before we got here (see
        // `on_message`): this one is ours or refused.
        let psk = match self.judge_identity(id_i) {
            Judgement::Here(psk) => Some(psk),
            Judgement::Sibling => {
                self.stats.auth_refused_identity += 1;
                None
            }
            Judgement::Refused => None,
        };
        let Some((sk, init)) = sa.awaiting_auth() else {
            return Err(ProtocolError::UnexpectedExchange.into());
        };
        // Authentication, PSK or certificate: cert_auth.rs. The identity
        // was judged above; a refusal there is counted there.
        let Some(psk) = psk else {
            self.stats.auth_failures += 1;
            return Err(IkeError::AuthenticationFailed);
        };
        if !self.peer_authenticated(sa.initiator, sk, init, id_i, auth, ps, now, &psk) {
            return Err(IkeError::AuthenticationFailed);
        }
        let id_r = self.config.local_id.clone();
        let Some(ours) = self.our_auth(sa.initiator, sk, init, &id_r, &psk) else {
            return Err(IkeError::AuthenticationFailed);
        };
        // End of authentication.
        sa.peer_id = Some(id_i.clone());
        // RFC 5685 §6: an authenticated client may be sent elsewhere.
        if let Some(out) = self.redirect_after_auth(sa, now, &ours) {
            return Ok(out);
        }
        let Some(init) = self.established(sa, now) else {
            return Err(ProtocolError::UnexpectedExchange.into());
        };
        if find_notify(ps, NotifyType::INITIAL_CONTACT).is_some() {
            // §2.4: the peer has no other SAs with us any more. "The
            // peer" is the identity it authenticated as: on a template
            // other peers' SAs stay.
            let others: Vec<u64> = self.sas.keys().copied().collect();
            for spi in others {
                // Only authenticated SAs with this peer; half-open ones are not.
                self.with_sa(spi, now, |ep, o| {
                    if o.authenticated() && o.peer_id.as_ref() == Some(id_i) {
                        ep.remove_sa(o, Some(DownReason::Replaced));
                    }
                });
            }
        }
        let mut out = vec![Payload::IdR(id_r)];
        out.extend(ours);
        // Remote access (§3.15): a virtual IP for the peer, or no Child SA.
        let child = self.answer_cfg_request(sa, now, id_i, ps).and_then(|cp| {
            out.extend(cp);
            self.child_from_request(sa, now, ps, Some((&init.ni, &init.nr)))
        });
        match child {
            Ok((child, mut extra)) => {
                self.stats.child_sa_established += 1;
                self.emit(IkeEvent::ChildSaUp(child.keys.clone()));
                sa.children.push(child);
                out.append(&mut extra);
            }
            Err(e) => {
                self.count_error(&e);
                if let Some((ty, d)) = e.notify() {
                    out.push(Payload::Notify(Notify::new(ty, d)));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn on_auth_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        child_spi: u32,
        ps: &[Payload],
    ) {
        let Some((sk, init)) = sa.awaiting_auth() else {
            self.stats
                .protocol_errors
                .count(ProtocolError::UnexpectedResponse);
            return;
        };
        let id_r = find_payload!(ps, IdR);
        let auth = find_payload!(ps, Auth);
        let (Some(id_r), Some(auth)) = (id_r, auth) else {
            let reason = first_error(ps).map_or(DownReason::AuthenticationFailed, |n| {
                if n == NotifyType::AUTHENTICATION_FAILED {
                    DownReason::AuthenticationFailed
                } else {
                    DownReason::Negotiation(n)
                }
            });
            self.stats.auth_failures += 1;
            self.remove_sa(sa, Some(reason));
            return;
        };
        // Authentication, PSK or certificate: cert_auth.rs.
        if *id_r != self.config.remote_id {
            self.stats.auth_refused_identity += 1;
            self.stats.auth_failures += 1;
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
            return;
        }
        let psk = self.config.psk.clone();
        if !self.peer_authenticated(sa.initiator, sk, init, id_r, auth, ps, now, &psk) {
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
            return;
        }
        sa.peer_id = Some(id_r.clone());
        // RFC 5685 §6: the authenticated gateway redirects us.
        if self.auth_redirect(sa, now, ps) {
            return;
        }
        let Some(init) = self.established(sa, now) else {
            return;
        };
        self.on_cfg_reply(sa, ps);
        let reply = find_payload!(ps, Sa);
        let mut ts_refused = false;
        let child = match (reply, find_payload!(ps, TsI), find_payload!(ps, TsR)) {
            (Some(reply), Some(tsi), Some(tsr)) => {
                let choice = negotiate::accept_esp(&self.config.esp_proposals, reply, false);
                let offered = (self.config.local_ts.clone(), self.config.remote_ts.clone());
                match choice {
                    Some(c) if self.reply_ts_ok(tsi, tsr, &offered.0, &offered.1) => {
                        Some((c, tsi.clone(), tsr.clone()))
                    }
                    Some(_) => {
                        ts_refused = true;
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if child.is_none() && reply.is_some() {
            // §2.9: the responder installed a Child SA we refuse; delete it.
            sa.tasks.push_back(Task::DeleteRefused(child_spi));
        }
        match child {
            Some((choice, tsi, tsr)) => {
                let (ni, nr) = (&init.ni, &init.nr);
                if let Some(c) =
                    self.make_child(sa, now, child_spi, &choice, None, ni, nr, true, tsi, tsr)
                {
                    self.stats.child_sa_established += 1;
                    self.emit(IkeEvent::ChildSaUp(c.keys.clone()));
                    sa.children.push(c);
                }
            }
            None => {
                let notify = if ts_refused {
                    NotifyType::TS_UNACCEPTABLE
                } else {
                    first_error(ps).unwrap_or(NotifyType::NO_PROPOSAL_CHOSEN)
                };
                self.emit(IkeEvent::ChildSaFailed { ike: sa.id, notify });
            }
        }
    }
}

/// What [`Endpoint::judge_identity`] decided.
pub(super) enum Judgement {
    /// Ours: the peer must prove this secret.
    Here(SecretBytes),
    /// A sibling template takes it.
    Sibling,
    /// Nobody's (counted).
    Refused,
}
