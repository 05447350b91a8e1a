//! CREATE_CHILD_SA (RFC 7296 §1.3): Child SA negotiation (also used by
//! IKE_AUTH), Child SA rekey (§1.3.3) and IKE SA rekey (§1.3.2, §2.18),
//! with rekey collisions (§2.8.1).

use super::*;

impl Endpoint {
    pub(super) fn start_child_rekey(&mut self, sa: &mut IkeSa, old: u32, now: Timestamp) {
        let Some(child) = sa.children.iter().find(|c| c.keys.inbound_spi == old) else {
            return;
        };
        if child.state != ChildState::Installed {
            return;
        }
        let (local_ts, remote_ts) = (child.keys.local_ts.clone(), child.keys.remote_ts.clone());
        let new_spi = self.random_child_spi();
        let ni = self.nonce();
        let pfs_group = self.config.esp_proposals[0].pfs_groups.first().copied();
        let pfs = pfs_group.is_some();
        let mut payloads = vec![
            Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: old.to_be_bytes().to_vec(),
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }),
            Payload::Sa(negotiate::esp_offer(
                &self.config.esp_proposals,
                new_spi,
                pfs,
            )),
            Payload::Nonce(ni.clone()),
        ];
        let mut dh = None;
        if let Some(g) = pfs_group {
            let Ok((secret, public)) = DhSecret::generate(g, &mut *self.rng) else {
                return;
            };
            payloads.push(Payload::Ke(KePayload {
                group: g.id(),
                data: public,
            }));
            dh = Some(secret);
        }
        payloads.push(Payload::TsI(local_ts.clone()));
        payloads.push(Payload::TsR(remote_ts.clone()));
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyChild {
                old,
                new_spi,
                ni,
                dh,
                tsi: local_ts,
                tsr: remote_ts,
            },
            now,
        );
    }

    pub(super) fn start_ike_rekey(&mut self, sa: &mut IkeSa, now: Timestamp) {
        let new_spi = self.random_u64();
        let ni = self.nonce();
        let group = sa
            .sk()
            .map_or(self.config.ike_proposals[0].groups[0], |sk| sk.suite.dh);
        let Ok((dh, public)) = DhSecret::generate(group, &mut *self.rng) else {
            return;
        };
        let payloads = vec![
            Payload::Sa(negotiate::ike_offer(
                &self.config.ike_proposals,
                &new_spi.to_be_bytes(),
            )),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KePayload {
                group: group.id(),
                data: public,
            }),
        ];
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyIke { new_spi, ni, dh },
            now,
        );
    }

    /// §2.9: a responder's TSi/TSr must lie within what we offered; and
    /// within our limits. Counts a refusal.
    pub(super) fn reply_ts_ok(
        &mut self,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        offered_i: &[TrafficSelector],
        offered_r: &[TrafficSelector],
    ) -> bool {
        if !self.ts_within_limits(tsi, tsr) {
            return false;
        }
        let ok = negotiate::is_subset(tsi, offered_i) && negotiate::is_subset(tsr, offered_r);
        if !ok {
            self.stats.ts_unacceptable += 1;
        }
        ok
    }

    /// Whether a Child SA's selectors stay within the configured count and
    /// the number of data-plane selectors they expand to. Counts a refusal.
    pub(super) fn ts_within_limits(
        &mut self,
        local: &[TrafficSelector],
        remote: &[TrafficSelector],
    ) -> bool {
        let l = &self.config.limits;
        let ok = local.len() <= l.max_traffic_selectors
            && remote.len() <= l.max_traffic_selectors
            && negotiate::selector_count(local, remote) <= l.max_selectors;
        if !ok {
            self.stats.ts_over_limit += 1;
        }
        ok
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn make_child(
        &mut self,
        sa: &IkeSa,
        now: Timestamp,
        inbound_spi: u32,
        choice: &EspChoice,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        we_initiated: bool,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> Option<ChildSa> {
        let Sk { suite, keys, .. } = sa.sk()?;
        let (i2r, r2i) = child_keymat(suite.prf, &keys.sk_d, g_ir, ni, nr, &choice.algorithm);
        let (inbound, outbound) = if we_initiated { (r2i, i2r) } else { (i2r, r2i) };
        let lifetime = self.config.timers.child_lifetime_ms;
        let rekey_at = self.rekey_time(now, lifetime);
        Some(ChildSa {
            keys: ChildSaKeys {
                id: ChildSaId(inbound_spi),
                ike: sa.id,
                inbound_spi,
                outbound_spi: choice.peer_spi,
                algorithm: choice.algorithm,
                inbound,
                outbound,
                local_ts,
                remote_ts,
                local_addr: sa.local,
                remote_addr: sa.remote,
                udp_encap: sa.encap.then_some(UdpEncap {
                    local_port: sa.local.port(),
                    remote_port: sa.remote.port(),
                }),
                esn: false,
            },
            state: ChildState::Installed,
            rekey_at: Some(rekey_at),
            expire_at: now.plus(lifetime),
            replaced_by: None,
        })
    }

    /// Responder side of a Child SA (IKE_AUTH or CREATE_CHILD_SA): select,
    /// narrow, derive. Returns the child and the SA/Nr/KE/TS payloads.
    /// `auth_nonces` are IKE_AUTH's Ni and Nr (§2.17); a CREATE_CHILD_SA
    /// request carries its own Ni and gets a fresh Nr.
    pub(super) fn child_from_request(
        &mut self,
        sa: &IkeSa,
        now: Timestamp,
        ps: &[Payload],
        auth_nonces: Option<(&[u8], &[u8])>,
    ) -> Result<(ChildSa, Vec<Payload>), IkeError> {
        let create_child = auth_nonces.is_none();
        let offer = find_payload!(ps, Sa).ok_or(ProtocolError::MissingSa)?;
        let tsi = find_payload!(ps, TsI).ok_or(ProtocolError::MissingTsi)?;
        let tsr = find_payload!(ps, TsR).ok_or(ProtocolError::MissingTsr)?;
        let ke = find_payload!(ps, Ke);
        if create_child {
            let bad = match find_payload!(ps, Nonce) {
                None => Some(ProtocolError::MissingNonce),
                Some(n) if !nonce_ok(n) => Some(ProtocolError::BadNonceLength),
                Some(_) => None,
            };
            if let Some(e) = bad {
                self.stats.bad_nonce += 1;
                return Err(e.into());
            }
        }
        let our_spi = self.random_child_spi();
        let (reply, choice) = match negotiate::choose_esp(
            &self.config.esp_proposals,
            offer,
            create_child,
            ke.map(|k| k.group),
            our_spi,
        ) {
            Ok(x) => x,
            Err(c) => {
                match c {
                    Choice::NoProposalChosen => {
                        self.stats.child_no_proposal_chosen += 1;
                        self.log_refused(sa.remote, now, "Child SA", offer);
                    }
                    Choice::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                }
                return Err(c.into());
            }
        };
        let max = self.config.limits.max_traffic_selectors;
        if tsi.len() > max || tsr.len() > max {
            self.stats.ts_over_limit += 1;
            return Err(IkeError::TsUnacceptable);
        }
        // §2.9: TSi are the initiator's (our remote) selectors.
        let remote_ts = negotiate::narrow(tsi, &self.remote_ts_allowed(sa));
        let local_ts = negotiate::narrow(tsr, &self.config.local_ts);
        if remote_ts.is_empty() || local_ts.is_empty() {
            self.stats.ts_unacceptable += 1;
            return Err(IkeError::TsUnacceptable);
        }
        if !self.ts_within_limits(&local_ts, &remote_ts) {
            return Err(IkeError::TsUnacceptable);
        }
        let mut out = vec![Payload::Sa(reply)];
        let (ni, nr) = match auth_nonces {
            Some((ni, nr)) => (ni.to_vec(), nr.to_vec()),
            None => {
                let ni = find_payload!(ps, Nonce)
                    .ok_or(ProtocolError::MissingNonce)?
                    .clone();
                (ni, self.nonce())
            }
        };
        let mut g_ir = None;
        if create_child {
            out.push(Payload::Nonce(nr.clone()));
            if let (Some(g), Some(ke)) = (choice.pfs, ke) {
                let (dh, public) = DhSecret::generate(g, &mut *self.rng)?;
                g_ir = Some(dh.agree(&ke.data)?);
                out.push(Payload::Ke(KePayload {
                    group: g.id(),
                    data: public,
                }));
            }
        }
        out.push(Payload::TsI(remote_ts.clone()));
        out.push(Payload::TsR(local_ts.clone()));
        let child = self
            .make_child(
                sa,
                now,
                our_spi,
                &choice,
                g_ir.as_deref(),
                &ni,
                &nr,
                false,
                local_ts,
                remote_ts,
            )
            .ok_or(IkeError::Internal)?;
        Ok((child, out))
    }

    pub(super) fn on_child_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
        n: &Notify,
    ) -> Result<Vec<Payload>, IkeError> {
        let old_out = <[u8; 4]>::try_from(n.spi.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| ProtocolError::BadRekeySpi)?;
        let old = sa
            .children
            .iter()
            .find(|c| c.keys.outbound_spi == old_out)
            .ok_or(IkeError::ChildSaNotFound)?;
        if old.state != ChildState::Installed {
            // §2.25: rekeying an SA we are closing.
            return Err(IkeError::TemporaryFailure);
        }
        let old_in = old.keys.inbound_spi;
        let (mut child, out) = self.child_from_request(sa, now, ps, None)?;
        let ni = find_payload!(ps, Nonce).cloned().unwrap_or_default();
        let nr = find_payload!(out, Nonce).cloned().unwrap_or_default();
        let colliding = matches!(&sa.outstanding, Some(Outstanding { request: Request::RekeyChild { old, .. }, .. }) if *old == old_in);
        sa.tasks.retain(|t| *t != Task::RekeyChild(old_in));
        if colliding {
            sa.child_collisions.insert(
                old_in,
                Collision {
                    new: child.keys.inbound_spi,
                    ni,
                    nr,
                },
            );
        } else if let Some(c) = sa.child_by_inbound(old_in) {
            c.state = ChildState::Rekeyed;
            c.rekey_at = None;
            c.replaced_by = Some(child.keys.inbound_spi);
        }
        child.keys.ike = sa.id;
        self.stats.child_sa_established += 1;
        self.emit(IkeEvent::ChildSaRekeyed {
            old: ChildSaId(old_in),
            new: child.keys.clone(),
        });
        sa.children.push(child);
        Ok(out)
    }

    pub(super) fn on_ike_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        ps: &[Payload],
    ) -> Result<Vec<Payload>, IkeError> {
        let offer = find_payload!(ps, Sa).ok_or(ProtocolError::MissingSa)?;
        let ke = find_payload!(ps, Ke).ok_or(ProtocolError::MissingKe)?;
        let ni = find_payload!(ps, Nonce)
            .ok_or(ProtocolError::MissingNonce)?
            .clone();
        if !nonce_ok(&ni) {
            self.stats.bad_nonce += 1;
            return Err(ProtocolError::BadNonceLength.into());
        }
        let new_spi = self.random_u64();
        let (reply, suite) = match negotiate::choose_ike(
            &self.config.ike_proposals,
            offer,
            ke.group,
            &new_spi.to_be_bytes(),
        ) {
            Ok(x) => x,
            Err(c) => {
                match c {
                    Choice::NoProposalChosen => {
                        self.stats.no_proposal_chosen += 1;
                        self.log_refused(sa.remote, now, "IKE SA rekey", offer);
                    }
                    Choice::InvalidKe(_) => self.stats.invalid_ke_sent += 1,
                }
                return Err(c.into());
            }
        };
        let their_spi = offer
            .proposals
            .iter()
            .find(|p| p.number == reply.proposals[0].number)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
            .ok_or(ProtocolError::BadIkeSpi)?;
        let (dh, public) = DhSecret::generate(suite.dh, &mut *self.rng)?;
        let g_ir = dh.agree(&ke.data)?;
        let nr = self.nonce();
        let mut new = self
            .rekeyed_sa(sa, now, suite, &g_ir, &ni, &nr, their_spi, new_spi, false)
            .ok_or(IkeError::Internal)?;
        let colliding = matches!(
            &sa.outstanding,
            Some(Outstanding {
                request: Request::RekeyIke { .. },
                ..
            })
        );
        sa.tasks.retain(|t| *t != Task::RekeyIke);
        if colliding {
            sa.ike_collision = Some(Collision {
                new: new_spi,
                ni,
                nr: nr.clone(),
            });
        } else {
            self.move_children(sa, &mut new);
            sa.enter(Stage::Rekeyed);
            self.emit(IkeEvent::IkeSaRekeyed {
                old: sa.id,
                new: new.id,
            });
        }
        self.sas.insert(new_spi, new);
        Ok(vec![
            Payload::Sa(reply),
            Payload::Nonce(nr),
            Payload::Ke(KePayload {
                group: suite.dh.id(),
                data: public,
            }),
        ])
    }

    /// The IKE SA that replaces `old` (§2.18). The rekey initiator is the
    /// new SA's original initiator.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rekeyed_sa(
        &mut self,
        old: &IkeSa,
        now: Timestamp,
        suite: crate::crypto::IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        we_initiated: bool,
    ) -> Option<IkeSa> {
        let old_sk = old.sk()?;
        let seed = skeyseed_rekey(old_sk.suite.prf, &old_sk.keys.sk_d, g_ir, ni, nr);
        let keys = derive_ike_keys(&suite, &seed, ni, nr, spi_i, spi_r);
        let ours = if we_initiated { spi_i } else { spi_r };
        let l = self.config.timers.ike_lifetime_ms;
        let life = Lifetime {
            rekey_at: Some(self.rekey_time(now, l)),
            expire_at: now.plus(l),
        };
        let keyed = Keyed {
            sk: Sk::new(we_initiated, suite, keys),
            stage: Stage::Established(life),
        };
        let phase = Phase::Keyed(keyed);
        let mut new = IkeSa::new(ours, we_initiated, old.local, old.remote, phase, now);
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.encap = old.encap;
        // RFC 7383: what IKE_SA_INIT negotiated holds for its successors.
        new.frag.negotiated = old.frag.negotiated;
        // RFC 5685: what the peers said about redirect holds for the SA
        // that replaces this one.
        new.peer_redirect = old.peer_redirect;
        new.announced_redirect = old.announced_redirect;
        new.peer_id = old.peer_id.clone();
        Some(new)
    }

    pub(super) fn move_children(&mut self, from: &mut IkeSa, to: &mut IkeSa) {
        for mut c in from.children.drain(..) {
            c.keys.ike = to.id;
            to.children.push(c);
        }
        // Virtual IPs belong to the IKE SA, whichever keys it has (§2.18).
        to.virtual_ips.append(&mut from.virtual_ips);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_child_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        old: u32,
        new_spi: u32,
        ni: &[u8],
        dh: Option<DhSecret>,
        offered: (&[TrafficSelector], &[TrafficSelector]),
        ps: &[Payload],
    ) {
        let collision = sa.child_collisions.remove(&old);
        let parsed = (|| {
            let reply = find_payload!(ps, Sa)?;
            let nr = find_payload!(ps, Nonce)?;
            let tsi = find_payload!(ps, TsI)?;
            let tsr = find_payload!(ps, TsR)?;
            let choice = negotiate::accept_esp(&self.config.esp_proposals, reply, dh.is_some())?;
            let g_ir = match (&dh, choice.pfs) {
                (Some(d), Some(g)) if d.group() == g => {
                    let ke = find_payload!(ps, Ke)?;
                    Some(d.agree(&ke.data).ok()?)
                }
                (None, None) => None,
                _ => return None,
            };
            Some((choice, nr.clone(), g_ir, tsi.clone(), tsr.clone()))
        })();
        let accepted = match parsed {
            Some(x) if !nonce_ok(&x.1) => {
                self.stats.bad_nonce += 1;
                None
            }
            // §2.9: the responder may only narrow what we offered.
            Some(x) if !self.reply_ts_ok(&x.3, &x.4, offered.0, offered.1) => None,
            other => other,
        };
        let Some((choice, nr, g_ir, tsi, tsr)) = accepted else {
            if find_payload!(ps, Sa).is_some() {
                // The responder installed a Child SA we refuse: delete it
                // and keep the old one.
                sa.tasks.push_back(Task::DeleteRefused(new_spi));
            }
            // Refused (e.g. TEMPORARY_FAILURE after a collision, §2.25).
            if collision.is_none() {
                if let Some(c) = sa.child_by_inbound(old) {
                    if c.state == ChildState::Installed {
                        c.rekey_at = Some(now.plus(REKEY_RETRY_MS));
                    }
                }
            }
            return;
        };
        let Some(child) = self.make_child(
            sa,
            now,
            new_spi,
            &choice,
            g_ir.as_deref(),
            ni,
            &nr,
            true,
            tsi,
            tsr,
        ) else {
            return;
        };
        self.stats.child_sa_established += 1;
        let old_exists = sa.children.iter().any(|c| c.keys.inbound_spi == old);
        if old_exists {
            self.emit(IkeEvent::ChildSaRekeyed {
                old: ChildSaId(old),
                new: child.keys.clone(),
            });
        } else {
            self.emit(IkeEvent::ChildSaUp(child.keys.clone()));
        }
        sa.children.push(child);
        match collision {
            // §2.8.1: the exchange with the lowest nonce loses; its
            // initiator deletes the SA it created, the winner the old one.
            Some(col) if lowest_loses(ni, &nr, &col.ni, &col.nr) => {
                if let Some(c) = sa.child_by_inbound(new_spi) {
                    c.state = ChildState::Rekeyed;
                }
                if let Some(c) = sa.child_by_inbound(old) {
                    c.state = ChildState::Rekeyed;
                    c.rekey_at = None;
                }
                sa.tasks.push_back(Task::DeleteChildren(vec![new_spi]));
            }
            _ => {
                if let Some(c) = sa.child_by_inbound(old) {
                    c.state = ChildState::Rekeyed;
                    c.rekey_at = None;
                }
                if old_exists {
                    sa.tasks.push_back(Task::DeleteChildren(vec![old]));
                }
            }
        }
    }

    pub(super) fn on_ike_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Timestamp,
        new_spi: u64,
        ni: &[u8],
        dh: DhSecret,
        ps: &[Payload],
    ) {
        let collision = sa.ike_collision.take();
        let parsed = (|| {
            let reply = find_payload!(ps, Sa)?;
            let nr = find_payload!(ps, Nonce)?;
            let ke = find_payload!(ps, Ke)?;
            let (suite, spi) = negotiate::accept_ike(&self.config.ike_proposals, reply)?;
            if suite.dh != dh.group() {
                return None;
            }
            if !nonce_ok(nr) {
                return None;
            }
            let spi_r = u64::from_be_bytes(<[u8; 8]>::try_from(spi.as_slice()).ok()?);
            let g_ir = dh.agree(&ke.data).ok()?;
            Some((suite, nr.clone(), spi_r, g_ir))
        })();
        let Some((suite, nr, spi_r, g_ir)) = parsed else {
            match collision {
                // The peer's rekey won the race and ours was refused.
                Some(col) => {
                    if let Some(mut held) = self.sas.remove(&col.new) {
                        self.move_children(sa, &mut held);
                        self.emit(IkeEvent::IkeSaRekeyed {
                            old: sa.id,
                            new: held.id,
                        });
                        self.sas.insert(col.new, held);
                    }
                    sa.enter(Stage::Rekeyed);
                }
                None => {
                    if let Some(life) = sa.lifetime_mut() {
                        life.rekey_at = Some(now.plus(REKEY_RETRY_MS));
                    }
                }
            }
            return;
        };
        let Some(mut new) = self.rekeyed_sa(sa, now, suite, &g_ir, ni, &nr, new_spi, spi_r, true)
        else {
            return;
        };
        sa.enter(Stage::Rekeyed);
        match collision {
            Some(col) if lowest_loses(ni, &nr, &col.ni, &col.nr) => {
                // We lost: the peer's SA survives; delete ours.
                if let Some(mut held) = self.sas.remove(&col.new) {
                    self.move_children(sa, &mut held);
                    self.emit(IkeEvent::IkeSaRekeyed {
                        old: sa.id,
                        new: held.id,
                    });
                    self.sas.insert(col.new, held);
                }
                new.enter(Stage::Rekeyed);
                new.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                self.kick(&mut new, now);
            }
            Some(col) => {
                // We won: ours survives; delete the old SA (and, so nothing
                // lingers if the loser's delete is lost, the peer's one).
                self.move_children(sa, &mut new);
                self.emit(IkeEvent::IkeSaRekeyed {
                    old: sa.id,
                    new: new.id,
                });
                sa.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
                if let Some(mut held) = self.sas.remove(&col.new) {
                    held.enter(Stage::Rekeyed);
                    held.tasks
                        .push_back(Task::DeleteIke(DownReason::Terminated));
                    self.kick(&mut held, now);
                    if !held.removed {
                        self.sas.insert(col.new, held);
                    }
                }
            }
            None => {
                self.move_children(sa, &mut new);
                self.emit(IkeEvent::IkeSaRekeyed {
                    old: sa.id,
                    new: new.id,
                });
                sa.tasks.push_back(Task::DeleteIke(DownReason::Terminated));
            }
        }
        if !new.removed {
            self.sas.insert(new_spi, new);
        }
    }
}

/// §2.8.1: true if our exchange (nonces `ni`, `nr`) holds the lowest of
/// the four nonces and so created the redundant SA.
fn lowest_loses(ni: &[u8], nr: &[u8], peer_ni: &[u8], peer_nr: &[u8]) -> bool {
    let ours = ni.min(nr);
    let theirs = peer_ni.min(peer_nr);
    ours < theirs
}
