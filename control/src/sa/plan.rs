//! What the workers have, and the messages that bring them to what is
//! wanted.

use std::collections::BTreeMap;

use std::collections::BTreeSet;

use dataplane::esp::{Direction, InboundSa, OutboundSa, SaRef, Selector, Spi};
use dataplane::gateway::ControlMsg;

use super::{Error, PeerRoute, SaSpec, Wanted};
use crate::config::CryptoBackendChoice;

/// The SAs the workers have, as far as the control thread sent them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Per tunnel: the SPI of the SA in its outbound slot.
    outbound: BTreeMap<usize, u32>,
    /// Inbound SPIs with their tunnel.
    inbound: BTreeMap<u32, usize>,
    /// Per-peer return routes by `(tunnel, route key)`.
    peers: BTreeMap<(usize, String), PeerSlot>,
}

/// A peer route's outbound slot, the SPI in it and its selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerSlot {
    slot: u32,
    spi: u32,
    selectors: Vec<Selector>,
}

/// An SPD entry of a per-peer return route: the tunnel it belongs to, the
/// outbound slot of the peer's SA and the selectors that choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The tunnel's slot.
    pub tunnel: usize,
    /// The peer's outbound slot.
    pub slot: SaRef,
    /// Outbound selectors (local TS to remote TS).
    pub selectors: Vec<Selector>,
}

impl Installed {
    /// Inbound SAs.
    pub fn inbound(&self) -> usize {
        self.inbound.len()
    }

    /// Outbound SAs (tunnels with a filled slot, and per-peer routes).
    pub fn outbound(&self) -> usize {
        self.outbound.len() + self.peers.len()
    }

    /// Whether inbound SPI `spi` is installed, and for which tunnel.
    pub fn inbound_tunnel(&self, spi: u32) -> Option<usize> {
        self.inbound.get(&spi).copied()
    }

    /// The SPI in tunnel `t`'s outbound slot.
    pub fn outbound_spi(&self, t: usize) -> Option<u32> {
        self.outbound.get(&t).copied()
    }

    /// Per-peer return routes installed.
    pub fn peer_routes(&self) -> usize {
        self.peers.len()
    }

    /// The SPD entries of the per-peer return routes, by tunnel then key.
    pub fn peer_policies(&self) -> Vec<PeerPolicy> {
        self.peers
            .iter()
            .map(|((t, _), p)| PeerPolicy {
                tunnel: *t,
                slot: SaRef(p.slot),
                selectors: p.selectors.clone(),
            })
            .collect()
    }

    /// The `(slot, SPI)` of tunnel `t`'s peer route `key`.
    pub fn peer_route(&self, t: usize, key: &str) -> Option<(u32, u32)> {
        self.peers
            .get(&(t, key.to_owned()))
            .map(|p| (p.slot, p.spi))
    }

    /// Outbound slots the peer routes hold (a reload must not give them
    /// to new tunnels).
    pub fn peer_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.peers.values().map(|p| p.slot as usize)
    }

    /// `(tunnel, SPI)` outbound slots and `(SPI, tunnel)` inbound SAs.
    #[cfg(test)]
    pub(crate) fn for_tests(outbound: &[(usize, u32)], inbound: &[(u32, usize)]) -> Self {
        Self {
            outbound: outbound.iter().copied().collect(),
            inbound: inbound.iter().copied().collect(),
            peers: BTreeMap::new(),
        }
    }
}

/// An SA that could not be built (its keys do not fit its algorithm, or
/// the backend lacks the algorithm): it is left out of the plan.
#[derive(Debug)]
pub struct Failure {
    /// The tunnel.
    pub tunnel: usize,
    /// The SA's SPI.
    pub spi: Spi,
    /// Its direction.
    pub direction: Direction,
    /// Why.
    pub error: Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = match self.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        write!(
            f,
            "{d} SA {} of tunnel {}: {}",
            self.spi, self.tunnel, self.error
        )
    }
}

/// The messages that take the workers from what they have to what is
/// wanted, in the order they must be sent, and what they will have then.
#[derive(Debug)]
pub struct Plan {
    /// `(worker, message)`: each worker's messages in order (a worker
    /// applies its queue in order; different workers' queues are
    /// independent).
    msgs: Vec<(u16, ControlMsg)>,
    /// SAs left out because they did not build.
    pub failed: Vec<Failure>,
    /// For the log: `(tunnel, what, SPI, worker)`.
    notes: Vec<(usize, &'static str, Spi, Option<u16>)>,
    next: Installed,
    peer_policies_changed: bool,
}

impl Plan {
    /// The planned messages.
    pub fn msgs(&self) -> &[(u16, ControlMsg)] {
        &self.msgs
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Whether the per-peer routes' SPD entries change (a route came or
    /// went): the SPD must be sent again after the messages.
    pub fn peer_policies_changed(&self) -> bool {
        self.peer_policies_changed
    }

    /// What the workers will have once the messages are applied.
    pub fn next(&self) -> &Installed {
        &self.next
    }
}

/// Diffs the installed SAs against the wanted ones (see the module
/// documentation of [`crate::sa`]).
#[derive(Clone, Debug)]
pub struct Planner {
    workers: usize,
    backend: CryptoBackendChoice,
    /// Tunnel names, for the log.
    names: Vec<String>,
    installed: Installed,
}

impl Planner {
    /// A planner for `workers` workers with nothing installed yet.
    pub fn new(workers: usize, backend: CryptoBackendChoice, names: Vec<String>) -> Self {
        Self {
            workers: workers.max(1),
            backend,
            names,
            installed: Installed::default(),
        }
    }

    /// Which worker owns tunnel `t`'s SAs (one writer per SA: its
    /// sequence counter or replay window).
    pub fn owner_of(&self, t: usize) -> u16 {
        (t % self.workers) as u16
    }

    /// What the workers have.
    pub fn installed(&self) -> &Installed {
        &self.installed
    }

    /// Tunnel names by slot, for the log (after a reload moved them).
    pub fn set_names(&mut self, names: Vec<String>) {
        self.names = names;
    }

    /// Forgets that inbound SA `spi` and tunnel `outbound`'s outbound SA
    /// are installed, so that the next plan builds them again from their
    /// specs: a reload that keeps an SPI but changes its keys or
    /// parameters. The install replaces the SA in place (same SPI, same
    /// slot); a forgotten SA no longer wanted stays until its slot or SPI
    /// is reused, so only SAs still wanted may be forgotten.
    pub fn forget(&mut self, inbound: &[u32], outbound: &[usize]) {
        for spi in inbound {
            self.installed.inbound.remove(spi);
        }
        for t in outbound {
            self.installed.outbound.remove(t);
        }
    }

    /// The messages that make the workers' SAs those of `sources`. An SPI
    /// wanted by two sources is taken from the first; a tunnel's outbound
    /// SA from the last source that has one (IKE's Child SA over a
    /// manual pair, when `sources` is `[manual, ike]`). The order is make
    /// before break: every new inbound SA first, then the outbound slots
    /// that change, then the slots emptied, then the inbound SAs no longer
    /// wanted. Nothing is sent and nothing recorded until [`Planner::commit`].
    pub fn plan(&self, sources: &[&Wanted]) -> Plan {
        let mut next = Installed::default();
        let mut failed = Vec::new();
        let mut new_in: Vec<(usize, Box<InboundSa>)> = Vec::new();
        let mut out_specs: BTreeMap<usize, &SaSpec> = BTreeMap::new();
        let mut peer_specs: BTreeMap<(usize, &str), &PeerRoute> = BTreeMap::new();
        for w in sources {
            for (t, sas) in w.iter() {
                for spec in &sas.inbound {
                    let spi = spec.spi().get();
                    if let Some(&first) = next.inbound.get(&spi) {
                        // One SPI names one SA (RFC 4301 §4.1): a
                        // configured SPI that IKE also chose keeps its
                        // first holder.
                        if first != t {
                            tracing::warn!(spi = %spec.spi(), tunnel = t, first, "inbound SPI wanted by two tunnels; the second is left out");
                        }
                        continue;
                    }
                    if self.installed.inbound.get(&spi) == Some(&t) {
                        next.inbound.insert(spi, t);
                        continue;
                    }
                    match spec.build_inbound(self.backend) {
                        Ok(sa) => {
                            next.inbound.insert(spi, t);
                            new_in.push((t, sa));
                        }
                        Err(error) => failed.push(Failure {
                            tunnel: t,
                            spi: spec.spi(),
                            direction: Direction::Inbound,
                            error,
                        }),
                    }
                }
                if let Some(o) = &sas.outbound {
                    out_specs.insert(t, o);
                }
                for r in &sas.peers {
                    peer_specs.insert((t, r.key.as_str()), r);
                }
            }
        }
        let mut new_out: Vec<(usize, Box<OutboundSa>)> = Vec::new();
        for (t, spec) in out_specs {
            let spi = spec.spi().get();
            let old = self.installed.outbound.get(&t).copied();
            if old == Some(spi) {
                next.outbound.insert(t, spi);
                continue;
            }
            match spec.build_outbound(self.backend) {
                Ok(sa) => {
                    next.outbound.insert(t, spi);
                    new_out.push((t, sa));
                }
                Err(error) => {
                    // Nothing replaces the SA in the slot: it stays.
                    if let Some(old) = old {
                        next.outbound.insert(t, old);
                    }
                    failed.push(Failure {
                        tunnel: t,
                        spi: spec.spi(),
                        direction: Direction::Outbound,
                        error,
                    });
                }
            }
        }

        // Per-peer routes: a route kept (same key) keeps its slot, and a
        // new SPI there (a rekey) replaces the SA in place, so the SPD does
        // not change and no packet finds the slot empty. A new route takes
        // the lowest slot that no tunnel and no other route holds.
        let mut reserved: BTreeSet<usize> = (0..self.names.len()).collect();
        reserved.extend(self.installed.outbound.keys().copied());
        reserved.extend(self.installed.peers.values().map(|p| p.slot as usize));
        for w in sources {
            reserved.extend(w.iter().map(|(t, _)| t));
        }
        let mut cursor = 0usize;
        let mut new_peer_out: Vec<(usize, u32, Box<OutboundSa>)> = Vec::new();
        for ((t, key), route) in peer_specs {
            let spi = route.outbound.spi().get();
            let old = self.installed.peers.get(&(t, key.to_owned()));
            if let Some(same) = old.filter(|o| o.spi == spi && o.selectors == route.selectors) {
                next.peers.insert((t, key.to_owned()), same.clone());
                continue;
            }
            let slot = match old {
                Some(o) => o.slot,
                None => {
                    while reserved.contains(&cursor) {
                        cursor += 1;
                    }
                    reserved.insert(cursor);
                    cursor as u32
                }
            };
            match route.outbound.build_outbound(self.backend) {
                Ok(sa) => {
                    next.peers.insert(
                        (t, key.to_owned()),
                        PeerSlot {
                            slot,
                            spi,
                            selectors: route.selectors.clone(),
                        },
                    );
                    new_peer_out.push((t, slot, sa));
                }
                Err(error) => {
                    if let Some(o) = old {
                        next.peers.insert((t, key.to_owned()), o.clone());
                    }
                    failed.push(Failure {
                        tunnel: t,
                        spi: route.outbound.spi(),
                        direction: Direction::Outbound,
                        error,
                    });
                }
            }
        }
        let peer_policies_changed = {
            let sel = |i: &Installed| -> Vec<(u32, Vec<Selector>)> {
                i.peers
                    .values()
                    .map(|p| (p.slot, p.selectors.clone()))
                    .collect()
            };
            sel(&self.installed) != sel(&next)
        };

        let mut plan = Plan {
            msgs: Vec::new(),
            failed,
            notes: Vec::new(),
            next: Installed::default(),
            peer_policies_changed,
        };
        for (t, sa) in new_in {
            let owner = self.owner_of(t);
            let spi = sa.config().spi;
            plan.notes.push((t, "install inbound SA", spi, Some(owner)));
            plan.msgs.push((owner, ControlMsg::InstallInbound(sa)));
            self.to_all(&mut plan.msgs, || ControlMsg::InboundOwner {
                spi,
                worker: Some(owner),
            });
        }
        for (t, sa) in new_out {
            let owner = self.owner_of(t);
            let slot = SaRef(t as u32);
            plan.notes
                .push((t, "install outbound SA", sa.config().spi, Some(owner)));
            plan.msgs
                .push((owner, ControlMsg::InstallOutbound { slot, sa }));
            self.to_all(&mut plan.msgs, || ControlMsg::OutboundOwner {
                slot,
                worker: Some(owner),
            });
        }
        for (t, slot, sa) in new_peer_out {
            let owner = self.owner_of(t);
            let slot = SaRef(slot);
            plan.notes
                .push((t, "install peer outbound SA", sa.config().spi, Some(owner)));
            plan.msgs
                .push((owner, ControlMsg::InstallOutbound { slot, sa }));
            self.to_all(&mut plan.msgs, || ControlMsg::OutboundOwner {
                slot,
                worker: Some(owner),
            });
        }
        for (k, p) in &self.installed.peers {
            if next.peers.get(k).is_some_and(|n| n.slot == p.slot) {
                continue;
            }
            let slot = SaRef(p.slot);
            if let Ok(spi) = Spi::new(p.spi) {
                plan.notes.push((k.0, "remove peer route", spi, None));
            }
            plan.msgs
                .push((self.owner_of(k.0), ControlMsg::RemoveOutbound { slot }));
            self.to_all(&mut plan.msgs, || ControlMsg::OutboundOwner {
                slot,
                worker: None,
            });
        }
        for (&t, &spi) in &self.installed.outbound {
            if next.outbound.contains_key(&t) {
                continue;
            }
            let slot = SaRef(t as u32);
            if let Ok(spi) = Spi::new(spi) {
                plan.notes.push((t, "empty outbound slot", spi, None));
            }
            plan.msgs
                .push((self.owner_of(t), ControlMsg::RemoveOutbound { slot }));
            self.to_all(&mut plan.msgs, || ControlMsg::OutboundOwner {
                slot,
                worker: None,
            });
        }
        for (&spi, &t) in &self.installed.inbound {
            let now = next.inbound.get(&spi).copied();
            if now == Some(t) {
                continue;
            }
            let Ok(spi) = Spi::new(spi) else { continue };
            let owner = self.owner_of(t);
            match now {
                // Gone: nobody owns it any more.
                None => {
                    plan.notes.push((t, "delete inbound SA", spi, None));
                    plan.msgs.push((owner, ControlMsg::RemoveInbound(spi)));
                    self.to_all(&mut plan.msgs, || ControlMsg::InboundOwner {
                        spi,
                        worker: None,
                    });
                }
                // Moved to another tunnel: its new owner has it (the
                // install above replaced it if the owner is the same).
                Some(moved) => {
                    if self.owner_of(moved) != owner {
                        plan.msgs.push((owner, ControlMsg::RemoveInbound(spi)));
                    }
                }
            }
        }
        plan.next = next;
        plan
    }

    /// Records `plan` as sent and hands its messages over to be sent in
    /// order.
    pub fn commit(&mut self, plan: Plan) -> Vec<(u16, ControlMsg)> {
        for (t, what, spi, worker) in &plan.notes {
            let tunnel = self.names.get(*t).map_or("?", String::as_str);
            tracing::info!(tunnel, spi = %spi, worker = ?worker, "{what}");
        }
        self.installed = plan.next;
        plan.msgs
    }

    fn to_all(&self, msgs: &mut Vec<(u16, ControlMsg)>, make: impl Fn() -> ControlMsg) {
        for w in 0..self.workers {
            msgs.push((w as u16, make()));
        }
    }
}
