//! The per-worker ESP engine: the SPD, the outbound SAs and the inbound SA
//! table. Its two packet entry points are the ones the gateway's node
//! calls and the fuzzers drive: [`EspEngine::encapsulate`] with the SA a
//! PROTECT policy names ([`EspEngine::packet_action`]), and
//! [`EspEngine::decapsulate`] with the ESP header the node's classify pass
//! located.
//!
//! Nothing in them allocates, locks or formats per packet. Failures are
//! small `Copy` reasons that index the counters. The engine is owned by one
//! worker; the control plane changes it only through messages the worker
//! applies between bursts (see the gateway), so every sequence counter and
//! replay window has exactly one writer.

use crate::buf::PacketBuf;
use crate::crypto::CryptoError;

use super::counters::{DropReason, SaCounters};
use super::flow_cache::{FlowHint, SpdCache};
use super::inbound::{Deferral, EspLocation, InboundOutcome, InboundSa, InboundSaTable, Opening};
use super::outbound::{OutboundSa, PacketKey, Sealing};
use super::sa::{SaEvent, Spi};
use super::slot_vec::SlotVec;
use super::spd::{Action, FlowKey, OpaqueMatch, SaRef, Spd};

/// An SA event for the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// An outbound SA (by slot and SPI) raised an event.
    Outbound(SaRef, Spi, SaEvent),
    /// An inbound SA raised an event.
    Inbound(Spi, SaEvent),
}

/// Per-worker ESP state.
#[derive(Debug, Default)]
pub struct EspEngine {
    spd: Spd,
    spd_cache: SpdCache,
    /// Boxed: installing or removing an SA moves a pointer, and the
    /// control thread's allocation goes back to it to be freed (see the
    /// gateway's `Retired`).
    outbound: SlotVec<Box<OutboundSa>>,
    /// Occupied slots of `outbound` (its capacity grows in chunks).
    outbound_len: usize,
    inbound: InboundSaTable,
    /// Outbound drops that belong to no SA (no policy, discard, malformed).
    pub outbound_counters: SaCounters,
}

impl EspEngine {
    /// An empty engine: no policies (so everything outbound is dropped as
    /// `NoPolicy`) and no SAs.
    pub fn new() -> Self {
        Self {
            spd: Spd::new(),
            spd_cache: SpdCache::default(),
            outbound: SlotVec::new(),
            outbound_len: 0,
            inbound: InboundSaTable::new(),
            outbound_counters: SaCounters::default(),
        }
    }

    /// The security policy database (outbound).
    pub fn spd(&self) -> &Spd {
        &self.spd
    }

    /// Replaces the SPD (control path) and returns the old one, so that a
    /// worker can hand it back to the control thread to be freed there
    /// (freeing a large SPD takes milliseconds). Ship it compiled
    /// ([`Spd::compile`], as the gateway's control thread does): an SPD
    /// that is not gets compiled here, between bursts, rather than on its
    /// first packet.
    pub fn set_spd(&mut self, mut spd: Spd) -> Spd {
        spd.compile();
        // A fresh cache of the right size shipped with the SPD (see
        // `Spd::with_flow_cache`) replaces ours, which goes back with the
        // old SPD; else ours is reset (and, if it must change size,
        // reallocated) here.
        let shipped = spd
            .take_flow_cache()
            .filter(|c| c.capacity() == SpdCache::slots_for(spd.len()));
        let retired = match shipped {
            Some(mut fresh) => {
                (fresh.hits, fresh.misses) = (self.spd_cache.hits, self.spd_cache.misses);
                std::mem::swap(&mut *fresh, &mut self.spd_cache);
                Some(fresh)
            }
            None => {
                self.spd_cache.reset_for(spd.len());
                None
            }
        };
        let mut old = std::mem::replace(&mut self.spd, spd);
        if let Some(c) = retired {
            old.put_flow_cache(c);
        }
        old
    }

    /// The SPD's action for `key`, through the worker's flow cache.
    #[inline]
    pub fn policy_action(&mut self, key: &FlowKey) -> Option<Action> {
        self.spd_cache.lookup(&self.spd, key)
    }

    /// The SPD's action for a packet: [`policy_action`](Self::policy_action)
    /// when its ports are known; when they are not, the SPD's
    /// [`lookup_opaque`](Spd::lookup_opaque), which the flow cache never
    /// answers (its entries are by 5-tuple, and a key whose ports are
    /// unknown is not its flow's 5-tuple). `Err` is the drop reason.
    #[inline]
    pub fn packet_action(&mut self, k: &PacketKey) -> Result<Action, DropReason> {
        if !k.opaque {
            return self.policy_action(&k.key).ok_or(DropReason::NoPolicy);
        }
        match self.spd.lookup_opaque(&k.key) {
            OpaqueMatch::Policy(p) => Ok(p.action),
            OpaqueMatch::NoPolicy => Err(DropReason::NoPolicy),
            OpaqueMatch::PortSpecific => Err(DropReason::OpaquePorts),
        }
    }

    /// First stage of the burst pipeline for an outbound packet: hashes
    /// its flow and prefetches the flow-cache line that decides it.
    #[inline]
    pub fn flow_hint(&self, key: &FlowKey) -> FlowHint {
        self.spd_cache.hint(key)
    }

    /// Second stage: the decision the flow cache probably holds for the
    /// flow of `hint` (see [`SpdCache::peek`]); with a slot, prefetches the
    /// slot's entry of the SA table.
    #[inline]
    pub fn peek_flow(&self, hint: FlowHint) -> Option<SaRef> {
        match self.spd_cache.peek(hint)? {
            Some(Action::Protect(slot)) => {
                self.outbound.prefetch(slot.0 as usize);
                Some(slot)
            }
            _ => None,
        }
    }

    /// The number of outbound and inbound SAs.
    pub fn sa_count(&self) -> usize {
        self.outbound_len + self.inbound.len()
    }

    /// The flow cache (hit and miss counters).
    pub fn spd_cache(&self) -> &SpdCache {
        &self.spd_cache
    }

    /// Puts `sa` in outbound slot `slot` (which `Action::Protect(slot)`
    /// policies point at), returning the SA it replaces. Switching the SA
    /// of a slot is how traffic moves to a rekeyed SA.
    pub fn install_outbound(
        &mut self,
        slot: SaRef,
        sa: impl Into<Box<OutboundSa>>,
    ) -> Option<Box<OutboundSa>> {
        let old = self.outbound.insert(slot.0 as usize, sa.into());
        if old.is_none() {
            self.outbound_len += 1;
        }
        old
    }

    /// Empties outbound slot `slot`.
    pub fn remove_outbound(&mut self, slot: SaRef) -> Option<Box<OutboundSa>> {
        let old = self.outbound.take(slot.0 as usize);
        if old.is_some() {
            self.outbound_len -= 1;
        }
        old
    }

    /// The SA in outbound slot `slot`.
    pub fn outbound(&self, slot: SaRef) -> Option<&OutboundSa> {
        self.outbound.get(slot.0 as usize).map(|s| &**s)
    }

    /// The SA in outbound slot `slot`, mutable (to encapsulate with it).
    pub fn outbound_mut(&mut self, slot: SaRef) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(slot.0 as usize).map(|s| &mut **s)
    }

    /// Counts an outbound drop that belongs to no SA (decided outside the
    /// engine, e.g. by a caller that looked the SPD up itself).
    pub fn count_outbound_drop(&mut self, reason: DropReason) {
        self.outbound_counters.record_drop(reason);
    }

    /// Encapsulates `pkt` (an IP packet) with the SA in outbound slot
    /// `slot` (RFC 4303 §3.3). `Err(NoPolicy)` when the slot is empty (not
    /// counted: a policy whose SA is not installed is the caller's drop);
    /// other drops are counted on the SA. Events go to `on_event`.
    #[inline]
    pub fn encapsulate<B: PacketBuf>(
        &mut self,
        slot: SaRef,
        pkt: &mut B,
        on_event: &mut impl FnMut(EngineEvent),
    ) -> Result<(), DropReason> {
        let sa = self
            .outbound
            .get_mut(slot.0 as usize)
            .ok_or(DropReason::NoPolicy)?;
        let spi = sa.spi();
        sa.encapsulate(pkt, &mut |e| on_event(EngineEvent::Outbound(slot, spi, e)))
    }

    /// Decapsulates `pkt` (an IP packet) whose ESP header is at `loc`
    /// (RFC 4303 §3.4), as the classify pass found it with
    /// [`locate_esp_header_verified`](super::inbound::locate_esp_header_verified)
    /// on a packet whose IPv4 header checksum it verified. Drops are
    /// counted (see [`InboundSaTable::decapsulate_located`]); events go to
    /// `on_event`.
    #[inline]
    pub fn decapsulate<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        loc: Result<EspLocation, DropReason>,
        on_event: &mut impl FnMut(EngineEvent),
    ) -> Result<InboundOutcome, DropReason> {
        self.inbound.decapsulate_located(pkt, loc, &mut |spi, e| {
            on_event(EngineEvent::Inbound(spi, e))
        })
    }

    /// [`encapsulate`](Self::encapsulate) for a caller that batches the
    /// crypto of SAs whose transform offers batch keys
    /// ([`OutboundSa::batch_keys`]): for such an SA the packet is
    /// prepared ([`OutboundSa::prepare_batched`]) and `Ok(Some(..))` says
    /// what to seal in the batch; otherwise it is encapsulated now,
    /// `Ok(None)`. Finish with [`finish_sealed`](Self::finish_sealed).
    #[inline]
    pub fn encapsulate_or_defer<B: PacketBuf>(
        &mut self,
        slot: SaRef,
        pkt: &mut B,
        on_event: &mut impl FnMut(EngineEvent),
    ) -> Result<Option<Sealing>, DropReason> {
        let sa = self
            .outbound
            .get_mut(slot.0 as usize)
            .ok_or(DropReason::NoPolicy)?;
        let spi = sa.spi();
        let on_event = &mut |e| on_event(EngineEvent::Outbound(slot, spi, e));
        if !sa.is_batched() {
            return sa.encapsulate(pkt, on_event).map(|()| None);
        }
        sa.prepare_batched(pkt, on_event).map(Some)
    }

    /// Finishes a packet [`encapsulate_or_defer`](Self::encapsulate_or_defer)
    /// deferred, with the batch's result for it.
    #[inline]
    pub fn finish_sealed<B: PacketBuf>(
        &mut self,
        slot: SaRef,
        pkt: &mut B,
        sealing: &Sealing,
        sealed: Result<(), CryptoError>,
    ) -> Result<(), DropReason> {
        let sa = self
            .outbound
            .get_mut(slot.0 as usize)
            .ok_or(DropReason::NoPolicy)?;
        sa.finish_batched(pkt, sealing, sealed)
    }

    /// [`decapsulate`](Self::decapsulate) for a caller that batches (see
    /// [`InboundSaTable::decapsulate_or_defer`]).
    #[inline]
    pub fn decapsulate_or_defer<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        loc: Result<EspLocation, DropReason>,
        on_event: &mut impl FnMut(EngineEvent),
    ) -> Deferral {
        self.inbound.decapsulate_or_defer(pkt, loc, &mut |spi, e| {
            on_event(EngineEvent::Inbound(spi, e))
        })
    }

    /// Finishes a packet [`decapsulate_or_defer`](Self::decapsulate_or_defer)
    /// deferred (see [`InboundSaTable::finish_deferred`]).
    #[inline]
    pub fn finish_opened<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        opening: &Opening,
        opened: Result<(), CryptoError>,
        on_event: &mut impl FnMut(EngineEvent),
    ) -> Result<InboundOutcome, DropReason> {
        self.inbound
            .finish_deferred(pkt, opening, opened, &mut |spi, e| {
                on_event(EngineEvent::Inbound(spi, e))
            })
    }

    /// All outbound SAs with their slots.
    pub fn outbound_sas(&self) -> impl Iterator<Item = (SaRef, &OutboundSa)> {
        self.outbound.iter().map(|(i, s)| (SaRef(i as u32), &**s))
    }

    /// Outbound slots allocated (every slot index below this may hold an
    /// SA).
    pub fn outbound_slots(&self) -> usize {
        self.outbound.capacity()
    }

    /// Installs an inbound SA, returning one it replaces (same SPI).
    pub fn install_inbound(&mut self, sa: impl Into<Box<InboundSa>>) -> Option<Box<InboundSa>> {
        self.inbound.insert(sa)
    }

    /// Removes an inbound SA.
    pub fn remove_inbound(&mut self, spi: Spi) -> Option<Box<InboundSa>> {
        self.inbound.remove(spi)
    }

    /// The inbound SA table.
    pub fn inbound(&self) -> &InboundSaTable {
        &self.inbound
    }

    /// The inbound SA table, mutable (its growth's spare tables).
    pub fn inbound_mut(&mut self) -> &mut InboundSaTable {
        &mut self.inbound
    }

    /// Bounded background work between bursts: moves a few inbound SAs
    /// along while their table grows.
    #[inline]
    pub fn step(&mut self) {
        self.inbound.step();
    }

    /// True while [`step`](Self::step) has work to do.
    #[inline]
    pub fn is_stepping(&self) -> bool {
        self.inbound.is_stepping()
    }
}
