//! IKE_SA_INIT (RFC 7296 §1.2, §2.6 cookies, §2.23 NAT detection): the
//! initiator's request and its unauthenticated response, the responder's
//! admission and answer.

use super::*;

impl Endpoint {
    /// Starts an IKE SA with the configured peer (IKE_SA_INIT, §1.2).
    pub fn initiate(&mut self, now: Timestamp) -> IkeSaId {
        self.initiate_to(now, self.config.remote_addr, None)
    }

    /// Starts an IKE SA with the gateway at `remote`: the configured peer,
    /// or the one it redirected us to (RFC 5685), named in `from`.
    pub(super) fn initiate_to(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        from: Option<GatewayIdentity>,
    ) -> IkeSaId {
        let spi = self.random_u64();
        let id = IkeSaId(spi);
        let ni = self.nonce();
        let group = self.config.ike_proposals[0].groups[0];
        let local = self.config.local_addr;
        let request = self.init_request(spi, local, remote, None, from.as_ref(), &ni, group);
        let Some((dh, request)) = request else {
            // Our own failure (crypto library, encoding): nothing was sent.
            self.emit(IkeEvent::IkeSaDown {
                ike: id,
                reason: DownReason::Negotiation(NotifyType::TEMPORARY_FAILURE),
            });
            return id;
        };
        let init = InitSent {
            ni,
            dh,
            cookie: None,
            restarts: 0,
            error: None,
            request: request.clone(),
        };
        let mut sa = IkeSa::new(spi, true, local, remote, Phase::InitSent(init), now);
        sa.redirected_from = from;
        sa.announced_redirect = self.config.follow_redirects;
        self.send_init(&mut sa, request, now);
        self.sas.insert(spi, sa);
        id
    }

    /// Our IKE_SA_INIT request (§1.2) with a fresh D-H value of `group`,
    /// and that value's private half. `from`: the gateway that redirected
    /// us here (RFC 5685).
    #[allow(clippy::too_many_arguments)]
    fn init_request(
        &mut self,
        spi_i: u64,
        local: SocketAddr,
        remote: SocketAddr,
        cookie: Option<&[u8]>,
        from: Option<&GatewayIdentity>,
        ni: &[u8],
        group: DhGroup,
    ) -> Option<(DhSecret, Vec<u8>)> {
        let (dh, public) = DhSecret::generate(group, &mut *self.rng).ok()?;
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())));
        }
        payloads.push(Payload::Sa(negotiate::ike_offer(
            &self.config.ike_proposals,
            &[],
        )));
        payloads.push(Payload::Ke(KePayload {
            group: group.id(),
            data: public,
        }));
        payloads.push(Payload::Nonce(ni.to_vec()));
        payloads.extend(self.nat_notifies(spi_i, 0, local, remote));
        // RFC 7383 §2.3.
        payloads.extend(self.fragmentation_offer());
        payloads.extend(self.redirect_notifies(from));
        payloads.extend(self.init_auth_notifies());
        let msg = Message {
            header: Header {
                spi_i,
                spi_r: 0,
                exchange: ExchangeType::IKE_SA_INIT,
                flags: Flags::new(true, false),
                message_id: 0,
            },
            payloads,
        };
        let Ok(bytes) = msg.encode() else {
            self.stats.encode_errors += 1;
            return None;
        };
        Some((dh, bytes))
    }

    /// Sends an IKE_SA_INIT request, replacing any in flight.
    fn send_init(&mut self, sa: &mut IkeSa, bytes: Vec<u8>, now: Timestamp) {
        sa.next_msg_id = 1;
        self.send(sa, bytes.clone());
        let timeout_ms = self.config.timers.retransmit_base_ms;
        sa.outstanding = Some(Outstanding {
            msg_id: 0,
            bytes: vec![bytes],
            request: Request::Init,
            sent: 1,
            next_retransmit: now.plus(timeout_ms),
            timeout_ms,
        });
    }

    /// Starts the IKE_SA_INIT exchange again (after COOKIE or
    /// INVALID_KE_PAYLOAD) with a D-H value of `group`, same nonce.
    fn restart_init(&mut self, sa: &mut IkeSa, group: DhGroup, now: Timestamp) {
        let Phase::InitSent(init) = &sa.phase else {
            return;
        };
        let (cookie, ni) = (init.cookie.clone(), init.ni.clone());
        let from = sa.redirected_from.clone();
        let (l, r) = (sa.local, sa.remote);
        let request =
            self.init_request(sa.spi_i, l, r, cookie.as_deref(), from.as_ref(), &ni, group);
        let Some((dh, bytes)) = request else {
            return;
        };
        if let Phase::InitSent(init) = &mut sa.phase {
            init.dh = dh;
            init.request = bytes.clone();
        }
        self.send_init(sa, bytes, now);
    }

    /// NAT_DETECTION_SOURCE_IP and _DESTINATION_IP (§2.23). With forced
    /// encapsulation the source hash is random so the peer sees a NAT.
    pub(super) fn nat_notifies(
        &mut self,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Vec<Payload> {
        let src = if self.config.force_encap {
            let mut b = vec![0u8; 20];
            self.rng.fill(&mut b);
            b
        } else {
            nat_detection_hash(spi_i, spi_r, local)
        };
        vec![
            Payload::Notify(Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, src)),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_detection_hash(spi_i, spi_r, remote),
            )),
        ]
    }

    /// True if the received NAT-D notifies show a NAT (or none were sent).
    pub(super) fn nat_detected(
        ps: &[Payload],
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let src_ok = ps.iter().any(|p| {
            matches!(p, Payload::Notify(n) if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP
                && n.data == nat_detection_hash(spi_i, spi_r, remote))
        });
        let dst = find_notify(ps, NotifyType::NAT_DETECTION_DESTINATION_IP);
        let Some(dst) = dst else { return false };
        let dst_ok = dst.data == nat_detection_hash(spi_i, spi_r, local);
        !(src_ok && dst_ok)
    }

    /// Counts an IKE_SA_INIT request that broke `e` and answers it, outside
    /// any IKE SA, if `e` calls for an answer.
    fn refuse_init(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        hdr: &Header,
        e: ProtocolError,
    ) {
        self.stats.protocol_errors.count(e);
        if let Some(ty) = e.notify() {
            let r = Self::plain_response(hdr, vec![Payload::Notify(Notify::new(ty, vec![]))]);
            self.send_plain(local, remote, r);
        }
    }

    pub(super) fn on_init_request(
        &mut self,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        hdr: &Header,
    ) {
        // A retransmitted IKE_SA_INIT gets the same answer (§2.1).
        if let Some(r) = self.init_index.get(&(hdr.spi_i, remote)) {
            if self.sas.contains_key(&r.spi) {
                if r.request == data {
                    let bytes = r.response.clone();
                    self.stats.replayed_responses += 1;
                    self.send_plain(local, remote, Ok(bytes));
                } else {
                    self.stats.invalid_message_id += 1;
                }
                return;
            }
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_refused(&e);
                if let DecodeError::UnsupportedCriticalPayload(t) = e {
                    let r = Self::plain_response(
                        hdr,
                        vec![Payload::Notify(Notify::new(
                            NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                            vec![t],
                        ))],
                    );
                    self.send_plain(local, remote, r);
                }
                return;
            }
        };
        let ps = &msg.payloads;
        let payloads = (|| {
            let sa_p = find_payload!(ps, Sa).ok_or(ProtocolError::MissingSa)?;
            let ke = find_payload!(ps, Ke).ok_or(ProtocolError::MissingKe)?;
            let ni = find_payload!(ps, Nonce).ok_or(ProtocolError::MissingNonce)?;
            if !nonce_ok(ni) {
                return Err(ProtocolError::InitNonceLength);
            }
            Ok((sa_p, ke, ni))
        })();
        let (sa_p, ke, ni) = match payloads {
            Ok(x) => x,
            Err(e) => {
                self.stats.malformed += 1;
                self.refuse_init(local, remote, hdr, e);
                return;
            }
        };
        // RFC 5685 §4.3: redirected before cookies and admission (see
        // redirect.rs for why).
        let mut peer_redirect = (false, None);
        if self.redirect_in_init(local, remote, hdr, &msg, ni, &mut peer_redirect) {
            return;
        }
        // §2.6: above the threshold (all tunnels' half-open SAs together),
        // demand a cookie first; a valid one proves the source address.
        if self.cookies.rotate(&mut *self.rng, now) {
            self.stats.cookie_secret_rotations += 1;
        }
        let got = msg.notify(NotifyType::COOKIE).map(|n| n.data.as_slice());
        let proven = got.is_some_and(|c| self.cookies.check(c, ni, remote.ip(), hdr.spi_i));
        if got.is_some() && !proven {
            self.stats.cookies_invalid += 1;
        }
        if !proven && self.budget.total() >= self.config.cookie_threshold {
            let want = self.cookies.make(ni, remote.ip(), hdr.spi_i);
            self.stats.cookies_sent += 1;
            let r = Self::plain_response(
                hdr,
                vec![Payload::Notify(Notify::new(NotifyType::COOKIE, want))],
            );
            self.send_plain(local, remote, r);
            return;
        }
        // RFC 8019 §4.2: a bounded number of half-open SAs per proven
        // source and in all; beyond them the request is dropped (answering
        // would cost as much as the attacker spends), before any
        // Diffie-Hellman work.
        let (per_source, max) = (self.config.half_open_per_source, self.config.half_open_max);
        let admitted = self.budget.acquire(remote.ip(), proven, per_source, max);
        let ticket = match admitted {
            Ok(t) => t,
            Err(Refusal::PerSource) => {
                self.stats.half_open_refused_per_source += 1;
                return;
            }
            Err(Refusal::Global) => {
                self.stats.half_open_refused_max += 1;
                return;
            }
        };
        // Released again below unless the SA is made.
        let mut ticket = ticket;
        let (reply_sa, suite) =
            match negotiate::choose_ike(&self.config.ike_proposals, sa_p, ke.group, &[]) {
                Ok(x) => x,
                Err(c) => {
                    self.budget.release(ticket);
                    let e = IkeError::from(c);
                    match e {
                        IkeError::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                        _ => {
                            self.stats.no_proposal_chosen += 1;
                            self.log_refused(remote, now, "IKE SA", sa_p);
                        }
                    }
                    if let Some((ty, d)) = e.notify() {
                        let r =
                            Self::plain_response(hdr, vec![Payload::Notify(Notify::new(ty, d))]);
                        self.send_plain(local, remote, r);
                    }
                    return;
                }
            };
        let Ok((dh, public)) = DhSecret::generate(suite.dh, &mut *self.rng) else {
            self.budget.release(ticket);
            return;
        };
        let Ok(g_ir) = dh.agree(&ke.data) else {
            self.budget.release(ticket);
            self.stats.malformed += 1;
            self.refuse_init(local, remote, hdr, ProtocolError::InvalidKePublicValue);
            return;
        };
        let spi_r = self.random_u64();
        let nr = self.nonce();
        let nat = Self::nat_detected(ps, hdr.spi_i, 0, local, remote);
        let seed = skeyseed(suite.prf, ni, &nr, &g_ir);
        let keys = derive_ike_keys(&suite, &seed, ni, &nr, hdr.spi_i, spi_r);
        let mut payloads = vec![
            Payload::Sa(reply_sa),
            Payload::Ke(KePayload {
                group: suite.dh.id(),
                data: public,
            }),
            Payload::Nonce(nr.clone()),
        ];
        payloads.extend(self.nat_notifies(hdr.spi_i, spi_r, local, remote));
        // RFC 7383 §2.3: answered only when offered.
        let fragmentation = self.fragmentation_agreed(ps);
        payloads.extend(self.fragmentation_offer().filter(|_| fragmentation));
        payloads.extend(self.init_auth_notifies());
        payloads.extend(self.certreq_payloads());
        let header = Header {
            spi_i: hdr.spi_i,
            spi_r,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(false, true),
            message_id: 0,
        };
        let Ok(resp) = (Message { header, payloads }).encode() else {
            self.budget.release(ticket);
            self.stats.encode_errors += 1;
            return;
        };
        self.budget.bind(&mut ticket, spi_r);
        self.half_open += 1;
        let init = InitExchange {
            ni: ni.clone(),
            nr,
            request: data.to_vec(),
            response: resp.clone(),
        };
        let keyed = Keyed {
            sk: Sk::new(false, suite, keys),
            stage: Stage::HalfOpen { init, ticket },
        };
        let mut sa = IkeSa::new(spi_r, false, local, remote, Phase::Keyed(keyed), now);
        sa.init_key = Some((hdr.spi_i, remote));
        (sa.peer_redirect, sa.redirected_from) = peer_redirect;
        sa.spi_i = hdr.spi_i;
        sa.encap = nat || self.config.force_encap;
        sa.frag.negotiated = fragmentation;
        sa.peer_msg_id = 1;
        sa.last_response = Some((0, ExchangeType::IKE_SA_INIT, vec![resp.clone()]));
        self.send(&sa, resp.clone());
        let replay = InitReplay {
            spi: spi_r,
            request: data.to_vec(),
            response: resp,
        };
        self.init_index.insert((hdr.spi_i, remote), replay);
        self.sas.insert(spi_r, sa);
    }

    pub(super) fn on_init_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        data: &[u8],
        hdr: &Header,
    ) {
        if !matches!(sa.phase, Phase::InitSent(_)) {
            self.stats
                .protocol_errors
                .count(ProtocolError::UnexpectedResponse);
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_refused(&e);
                return;
            }
        };
        let ps = &msg.payloads;
        // Nothing in this response is authenticated (§2.21.1): COOKIE and
        // INVALID_KE_PAYLOAD restart the attempt a bounded number of times,
        // other errors are remembered while we keep waiting (and
        // retransmitting) for a genuine response until the usual timeout.
        if let Some(n) = msg.notify(NotifyType::REDIRECT) {
            // RFC 5685 §4.3, checked in redirect.rs.
            let data = n.data.clone();
            self.on_init_redirect(sa, now, &data);
            return;
        }
        let Phase::InitSent(init) = &mut sa.phase else {
            return;
        };
        let restarts_left = init.restarts < MAX_INIT_RESTARTS;
        let current = init.dh.group();
        if let Some(c) = msg.notify(NotifyType::COOKIE) {
            if restarts_left && (1..=MAX_COOKIE_LEN).contains(&c.data.len()) {
                // §2.6: retry with the cookie first, everything else unchanged.
                init.restarts += 1;
                init.cookie = Some(c.data.clone());
                self.restart_init(sa, current, now);
            } else {
                self.stats.init_errors_ignored += 1;
            }
            return;
        }
        if let Some(n) = msg.notify(NotifyType::INVALID_KE_PAYLOAD) {
            // §1.2: retry with the group the responder asked for, if it is
            // one we proposed and not the one we just used.
            let wanted = (n.data.len() == 2)
                .then(|| DhGroupId(u16::from_be_bytes([n.data[0], n.data[1]])))
                .and_then(DhGroup::from_id);
            let ours = self
                .config
                .ike_proposals
                .iter()
                .any(|p| wanted.is_some_and(|w| p.groups.contains(&w)));
            match wanted {
                Some(g) if ours && g != current && restarts_left => {
                    init.restarts += 1;
                    self.restart_init(sa, g, now);
                }
                _ => {
                    self.stats.init_errors_ignored += 1;
                    init.error = Some(NotifyType::INVALID_KE_PAYLOAD);
                }
            }
            return;
        }
        if let Some(err) = first_error(ps) {
            self.stats.init_errors_ignored += 1;
            init.error = Some(err);
            return;
        }
        let parsed = (|| {
            let sa_p = find_payload!(ps, Sa)?;
            let ke = find_payload!(ps, Ke)?;
            let nr = find_payload!(ps, Nonce)?;
            let (suite, _) = negotiate::accept_ike(&self.config.ike_proposals, sa_p)?;
            (suite.dh == current && ke.group == suite.dh.id())
                .then(|| (suite, ke.data.clone(), nr.clone()))
        })();
        let Some((suite, ke, nr)) = parsed else {
            self.stats.malformed += 1;
            return;
        };
        if !nonce_ok(&nr) {
            self.stats.bad_nonce += 1;
            return;
        }
        let Ok(g_ir) = init.dh.agree(&ke) else {
            self.stats.malformed += 1;
            return;
        };
        // The D-H private value goes with the InitSent state.
        let init = InitExchange {
            ni: std::mem::take(&mut init.ni),
            nr,
            request: std::mem::take(&mut init.request),
            response: data.to_vec(),
        };
        sa.outstanding = None;
        sa.spi_r = hdr.spi_r;
        let nat = Self::nat_detected(ps, sa.spi_i, sa.spi_r, sa.local, sa.remote);
        sa.encap = nat || self.config.force_encap;
        sa.frag.negotiated = self.fragmentation_agreed(ps);
        if sa.encap {
            // §2.23: float to port 4500 for IKE_AUTH.
            sa.local.set_port(self.config.nat_t_port);
            sa.remote.set_port(self.config.nat_t_port);
        }
        let seed = skeyseed(suite.prf, &init.ni, &init.nr, &g_ir);
        let keys = derive_ike_keys(&suite, &seed, &init.ni, &init.nr, sa.spi_i, sa.spi_r);
        let sk = Sk::new(true, suite, keys);
        sa.last_heard = now;
        // IKE_AUTH (§1.2).
        let child_spi = self.random_child_spi();
        let id_i = self.config.local_id.clone();
        // CERT and AUTH by PSK or signature, CERTREQ: cert_auth.rs.
        let psk = self.config.psk.clone();
        let Some(auth) = self.our_auth(true, &sk, &init, &id_i, &psk) else {
            self.stats.auth_failures += 1;
            self.remove_sa(sa, Some(DownReason::AuthenticationFailed));
            return;
        };
        let mut payloads = vec![Payload::IdI(id_i)];
        payloads.extend(self.certreq_payloads());
        payloads.push(Payload::IdR(self.config.remote_id.clone()));
        payloads.extend(auth);
        payloads.extend([
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::Sa(negotiate::esp_offer(
                &self.config.esp_proposals,
                child_spi,
                false,
            )),
            Payload::TsI(self.config.local_ts.clone()),
            Payload::TsR(self.config.remote_ts.clone()),
        ]);
        payloads.extend(self.cfg_request());
        sa.phase = Phase::Keyed(Keyed {
            sk,
            stage: Stage::AuthSent(init),
        });
        self.send_request(
            sa,
            ExchangeType::IKE_AUTH,
            &payloads,
            Request::Auth { child_spi },
            now,
        );
    }
}
