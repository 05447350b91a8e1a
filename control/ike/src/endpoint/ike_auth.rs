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
    ) -> SecretBytes {
        let signer_is_initiator = ours == initiator;
        let (msg, nonce, sk_p) = if signer_is_initiator {
            (&init.request, &init.nr, &sk.keys.sk_pi)
        } else {
            (&init.response, &init.ni, &sk.keys.sk_pr)
        };
        psk_auth(sk.suite.prf, &self.config.psk, msg, nonce, sk_p, &id.body())
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
        Some(init)
    }

    pub(super) fn on_auth_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let id_i = find_payload!(ps, IdI).ok_or(ProtocolError::MissingIdi)?;
        let auth = find_payload!(ps, Auth).ok_or(ProtocolError::MissingAuth)?;
        let Some((sk, init)) = sa.awaiting_auth() else {
            return Err(ProtocolError::UnexpectedExchange.into());
        };
        // Authentication, PSK or certificate: cert_auth.rs.
        if !self.peer_authenticated(sa.initiator, sk, init, id_i, auth, ps, now) {
            return Err(IkeError::AuthenticationFailed);
        }
        let id_r = self.config.local_id.clone();
        let Some(ours) = self.our_auth(sa.initiator, sk, init, &id_r) else {
            return Err(IkeError::AuthenticationFailed);
        };
        // End of authentication.
        let Some(init) = self.established(sa, now) else {
            return Err(ProtocolError::UnexpectedExchange.into());
        };
        if find_notify(ps, NotifyType::INITIAL_CONTACT).is_some() {
            // §2.4: the peer has no other SAs with us any more.
            let others: Vec<u64> = self.sas.keys().copied().collect();
            for spi in others {
                // Only authenticated SAs with this peer; half-open ones are not.
                self.with_sa(spi, now, |ep, o| {
                    if o.authenticated() {
                        ep.remove_sa(o, Some(DownReason::Replaced));
                    }
                });
            }
        }
        let mut out = vec![Payload::IdR(id_r)];
        out.extend(ours);
        match self.child_from_request(sa, now, ps, Some((&init.ni, &init.nr))) {
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
        if !self.peer_authenticated(sa.initiator, sk, init, id_r, auth, ps, now) {
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
            return;
        }
        let Some(init) = self.established(sa, now) else {
            return;
        };
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
