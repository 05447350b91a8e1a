//! ESP glue: protecting with an outbound SA (through the cached tunnel
//! egress), decapsulating with the inbound table, and the hand-off to the
//! worker that owns an SA.

use super::*;
use crate::crypto::CryptoError;
use crate::esp::{Deferral, Opening, Sealing};

/// Where a tunnel-mode SA's packets leave, resolved once: in tunnel mode
/// every packet of an SA has the same outer destination, so the route and
/// neighbour lookups (a fifth of a 64-byte packet's cost before this cache)
/// are done for its first packet and reused until a route, neighbour or
/// SA change makes them stale (`epoch`, `neigh_gen`). ipsec-secgw and VPP
/// likewise resolve a tunnel's adjacency once rather than per packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Egress {
    /// `egress_epoch` and the neighbour table's generation, truncated so
    /// that the line stays one cache line (a stale egress would be taken
    /// for current only after exactly a multiple of 2^32 changes).
    epoch: u32,
    neigh_gen: u32,
    /// When the neighbour entry needs looking at again (it ages).
    until: u64,
    out_if: u16,
    mac: [u8; 6],
    mtu: u16,
    mss: Option<u16>,
    outer_v4: bool,
}

/// What happens to a sealed packet whose crypto was deferred.
#[derive(Debug, Clone, Copy)]
pub(super) enum Then {
    /// Out of the tunnel's cached egress.
    Send(Egress),
    /// Routed to this outer destination through this hop.
    Route(IpAddr, crate::route::NextHop),
}

/// A packet whose crypto waits for the burst's batch.
#[derive(Debug, Clone, Copy)]
pub(super) enum Job {
    /// Prepared for sealing with the SA in `slot`.
    Seal {
        slot: SaRef,
        sealing: Sealing,
        then: Then,
    },
    /// Checked for opening; received on `in_if`.
    Open { in_if: u16, opening: Opening },
}

/// A deferred packet and, once queued, its index in the batch.
pub(super) struct Deferred<B> {
    pkt: B,
    job: Job,
    idx: Option<usize>,
}

/// What the node keeps per outbound slot, in one cache line (with many
/// tunnels the burst pipeline prefetches it per packet): the tunnel's
/// egress and where its SA's hot data is.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(super) struct SlotLine {
    pub(super) egress: Option<Egress>,
    pub(super) hint: SaHint,
}

const _: () = assert!(std::mem::size_of::<SlotLine>() == 64);

/// Entries of the node's [`Adjacency`] cache (a power of two).
pub(super) const ADJACENCY_SETS: usize = 64;

/// Where decapsulated packets for one inner destination leave, resolved
/// once: the route and neighbour lookups (with the inner header's parse,
/// about a fifth of a decapsulated 64-byte packet's instructions) are done
/// for the destination's first packet and reused, like a tunnel's
/// [`Egress`], until a route, neighbour or SA change makes them stale
/// (`epoch`, `neigh_gen`) or the neighbour entry ages (`until`). Only
/// neighbours usable without a state change are cached (static,
/// reachable, probed and not yet due), so a hit skips nothing that
/// `NeighbourTable::resolve` would have done. A direct-mapped table: a
/// destination that collides with another replaces it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Adjacency {
    dst: DstBits,
    epoch: u32,
    neigh_gen: u32,
    until: u64,
    out_if: u16,
    mac: [u8; 6],
    mtu: u16,
    mss: Option<u16>,
}

/// A destination address as the [`Adjacency`] cache keys it: the
/// address's bits (IPv4 in the low 32) and whether it is IPv6. Read from
/// the packet as integers rather than built as an `IpAddr`, which the
/// compiler assembled on the stack with narrow stores and read back with
/// wide loads (a store-forwarding stall per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DstBits {
    bits: u128,
    v6: bool,
}

impl DstBits {
    /// The destination of an IP packet whose header the engine checked.
    #[inline(always)]
    fn of(data: &[u8]) -> Option<DstBits> {
        match data.first()? >> 4 {
            4 => {
                let a: [u8; 4] = data.get(16..20)?.try_into().ok()?;
                Some(DstBits {
                    bits: u128::from(u32::from_be_bytes(a)),
                    v6: false,
                })
            }
            6 => {
                let a: [u8; 16] = data.get(24..40)?.try_into().ok()?;
                Some(DstBits {
                    bits: u128::from_be_bytes(a),
                    v6: true,
                })
            }
            _ => None,
        }
    }

    fn from_ip(a: IpAddr) -> DstBits {
        match a {
            IpAddr::V4(a) => DstBits {
                bits: u128::from(u32::from(a)),
                v6: false,
            },
            IpAddr::V6(a) => DstBits {
                bits: u128::from(a),
                v6: true,
            },
        }
    }

    /// The cache entry: Fibonacci hashing of the low 32 bits, whose top
    /// bits depend on every bit of them, so hosts of one subnet spread
    /// over the sets.
    #[inline(always)]
    fn set(self) -> usize {
        ((self.bits as u32).wrapping_mul(0x9E37_79B1) >> (32 - ADJACENCY_SETS.trailing_zeros()))
            as usize
    }
}

impl<B: PacketBuf> Node<B> {
    pub(super) fn engine_outbound_drop(&mut self, r: DropReason) {
        self.drop_esp(r);
        self.engine.count_outbound_drop(r);
    }

    /// Outbound through a tunnel: hand off to the owner, or encapsulate.
    /// `local`: a packet the gateway originated ([`Self::send_local`]),
    /// whose TTL is not decremented and about which no ICMP error is sent
    /// (too big and not fragmentable, it is dropped).
    pub(super) fn protect(
        &mut self,
        in_if: u16,
        slot: SaRef,
        mut pkt: B,
        pool: &mut impl PacketPool<B>,
        local: bool,
    ) {
        if self.engine.outbound(slot).is_none() {
            // The owner only matters for a slot whose SA is elsewhere.
            match self.slot_owner.get(slot.0 as usize).copied() {
                Some(w) if w != self.id => {
                    self.counters.handoffs_out += 1;
                    self.out.handoffs.push((
                        w,
                        Handoff {
                            packet: pkt,
                            in_iface: in_if,
                            kind: if local {
                                HandoffKind::Local(slot)
                            } else {
                                HandoffKind::Outbound(slot)
                            },
                        },
                    ));
                }
                // A policy whose SA is not installed (RFC 4301 would
                // trigger IKE): drop.
                _ if local => self.drop_gw(GwDrop::LocalPolicy),
                _ => self.drop_esp(DropReason::NoPolicy),
            }
            return;
        }
        if !local && !self.ttl_ok(&mut pkt) {
            return self.ttl_exceeded(in_if, pkt, pool);
        }
        if let Some(e) = self.cached_egress(slot) {
            if let Some(m) = e.mss {
                self.clamp_mss(&mut pkt, m);
            }
            let sa = self.engine.outbound(slot).expect("checked above");
            if pkt.len() + sa.overhead(pkt.len()) <= usize::from(e.mtu) {
                return self.seal_and_send(slot, pkt, &e);
            }
            // Too big: the slow path below sends the ICMP or fragments.
        }
        let (remote, mode_transport) = {
            let sa = self.engine.outbound(slot).expect("checked above");
            (
                sa.config().endpoints.remote,
                sa.config().mode == crate::esp::Mode::Transport,
            )
        };
        // The egress interface of the outer packet decides MTU and MSS.
        let outer_dst = if mode_transport {
            crate::esp::inbound::packet_dst(pkt.data()).unwrap_or(remote)
        } else {
            remote
        };
        let Some(&hop) = self.routes.next_hop(outer_dst) else {
            return self.drop_gw(GwDrop::NoRoute);
        };
        let egress = &self.ifaces[usize::from(hop.interface)];
        let (mtu, mss) = (usize::from(egress.mtu), egress.mss_clamp);
        if !mode_transport {
            let nh = hop.neighbour(outer_dst);
            if let Some((mac, until)) = self.neigh.usable(hop.interface, nh, self.now_ms) {
                let i = slot.0 as usize;
                self.slots.grow_to(i).egress = Some(Egress {
                    epoch: self.egress_epoch as u32,
                    neigh_gen: self.neigh.generation() as u32,
                    until,
                    outer_v4: outer_dst.is_ipv4(),
                    out_if: hop.interface,
                    mac,
                    mtu: egress.mtu,
                    mss,
                });
            }
        }
        if let Some(m) = mss {
            self.clamp_mss(&mut pkt, m);
        }
        let len = pkt.len();
        let overhead = self.engine.outbound(slot).expect("checked").overhead(len);
        if len + overhead > mtu {
            // PMTU discovery through the tunnel: tell the sender the inner
            // MTU that fits (RFC 4301 §8.2, RFC 1191, RFC 8201).
            let sa = self.engine.outbound(slot).expect("checked");
            let fits = largest_fitting(mtu, |l| l + sa.overhead(l));
            if may_fragment(pkt.data()) {
                // IPv4 without DF: fragment the inner packet, then protect
                // each fragment (RFC 4301 §8.1 allows fragmenting before
                // encapsulation; the destination host reassembles, so the
                // peer gateway needs no reassembly state).
                match fragment_v4(&pkt, fits, pool) {
                    Some(frags) => {
                        drop(pkt);
                        for f in frags {
                            self.seal_and_route(slot, f, outer_dst, hop, pool);
                        }
                    }
                    None => self.drop_gw(GwDrop::TooBig),
                }
                return;
            }
            self.drop_gw(GwDrop::TooBig);
            if local {
                return;
            }
            return self.icmp_too_big(in_if, pkt, fits as u16, pool);
        }
        self.seal_and_route(slot, pkt, outer_dst, hop, pool)
    }

    /// The still-valid egress of tunnel-mode slot `slot`.
    #[inline]
    pub(super) fn cached_egress(&self, slot: SaRef) -> Option<Egress> {
        let e = self.slots.get(slot.0 as usize)?.egress?;
        (e.epoch == self.egress_epoch as u32
            && e.neigh_gen == self.neigh.generation() as u32
            && self.now_ms < e.until)
            .then_some(e)
    }

    /// Encapsulates `pkt` with the slot's SA: the ESP packet, or `None`
    /// after counting the drop.
    #[inline(always)]
    pub(super) fn seal(&mut self, slot: SaRef, mut pkt: B) -> Option<B> {
        let events = &mut self.out.events;
        match self
            .engine
            .encapsulate(slot, &mut pkt, &mut |e| events.push(e))
        {
            Ok(()) => {
                self.counters.encapsulated += 1;
                Some(pkt)
            }
            Err(r) => {
                self.drop_esp(r);
                None
            }
        }
    }

    /// Encapsulates with the slot's SA and sends the frame out of the
    /// cached egress.
    pub(super) fn seal_and_send(&mut self, slot: SaRef, pkt: B, e: &Egress) {
        if let Some(pkt) = self.seal_or_defer(slot, pkt, Then::Send(*e)) {
            self.send_sealed(pkt, e)
        }
    }

    /// Sends a sealed packet out of the cached egress.
    fn send_sealed(&mut self, pkt: B, e: &Egress) {
        let ethertype = if e.outer_v4 {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        self.send_eth(e.out_if, pkt, e.mac, ethertype)
    }

    /// [`Self::seal`], or, while a burst is batched and the SA's
    /// transform batches, the packet prepared and deferred to the batch
    /// (with `then`, what to do once sealed): `None` then.
    #[inline(always)]
    fn seal_or_defer(&mut self, slot: SaRef, mut pkt: B, then: Then) -> Option<B> {
        // The AEADs take the one-packet path exactly as outside a batch.
        if !self.batching
            || !self
                .engine
                .outbound(slot)
                .is_some_and(OutboundSa::is_batched)
        {
            return self.seal(slot, pkt);
        }
        let events = &mut self.out.events;
        match self
            .engine
            .encapsulate_or_defer(slot, &mut pkt, &mut |e| events.push(e))
        {
            Ok(None) => {
                self.counters.encapsulated += 1;
                Some(pkt)
            }
            Ok(Some(sealing)) => {
                self.defer(Deferred {
                    pkt,
                    job: Job::Seal {
                        slot,
                        sealing,
                        then,
                    },
                    idx: None,
                });
                None
            }
            Err(r) => {
                self.drop_esp(r);
                None
            }
        }
    }

    /// Encapsulates with the slot's SA and sends the result towards
    /// `outer_dst` through `hop` (looked up once by the caller).
    pub(super) fn seal_and_route(
        &mut self,
        slot: SaRef,
        pkt: B,
        outer_dst: IpAddr,
        hop: crate::route::NextHop,
        pool: &mut impl PacketPool<B>,
    ) {
        if let Some(pkt) = self.seal_or_defer(slot, pkt, Then::Route(outer_dst, hop)) {
            self.deliver(pkt, outer_dst, hop, pool, false)
        }
    }

    /// ESP arriving for us or, for a transport-mode SA we hold, through
    /// us; `loc` and `spi` from the classify pass.
    pub(super) fn esp_input(
        &mut self,
        in_if: u16,
        pkt: B,
        loc: Result<EspLocation, DropReason>,
        spi: Option<u32>,
        pool: &mut impl PacketPool<B>,
    ) {
        // Hand off to the SA's owner, so its replay window has one writer.
        if let (Some(&w), Ok(loc)) = (
            spi.filter(|_| self.foreign_spis > 0)
                .and_then(|spi| self.spi_owner.get(spi)),
            loc,
        ) {
            if w != self.id {
                self.counters.handoffs_out += 1;
                self.out.handoffs.push((
                    w,
                    Handoff {
                        packet: pkt,
                        in_iface: in_if,
                        kind: HandoffKind::Inbound(loc),
                    },
                ));
                return;
            }
        }
        self.open_or_defer(in_if, pkt, loc, pool)
    }

    /// The still-valid adjacency of inner destination `dst`.
    #[inline(always)]
    fn cached_adjacency(&self, dst: DstBits) -> Option<Adjacency> {
        let a = self.adjacency[dst.set()]?;
        (a.dst == dst
            && a.epoch == self.egress_epoch as u32
            && a.neigh_gen == self.neigh.generation() as u32
            && self.now_ms < a.until)
            .then_some(a)
    }

    /// Records where packets for `dst` leave through `hop`, if its
    /// neighbour can be used as it is.
    fn learn_adjacency(&mut self, dst: IpAddr, hop: crate::route::NextHop) {
        let nh = hop.neighbour(dst);
        let Some((mac, until)) = self.neigh.usable(hop.interface, nh, self.now_ms) else {
            return;
        };
        let egress = &self.ifaces[usize::from(hop.interface)];
        let dst = DstBits::from_ip(dst);
        self.adjacency[dst.set()] = Some(Adjacency {
            dst,
            epoch: self.egress_epoch as u32,
            neigh_gen: self.neigh.generation() as u32,
            until,
            out_if: hop.interface,
            mac,
            mtu: egress.mtu,
            mss: egress.mss_clamp,
        });
    }

    /// Decapsulates now, or, while a burst is batched and the SA's
    /// transform batches, defers the packet's crypto to the batch.
    #[inline(always)]
    fn open_or_defer(
        &mut self,
        in_if: u16,
        mut pkt: B,
        loc: Result<EspLocation, DropReason>,
        pool: &mut impl PacketPool<B>,
    ) {
        let events = &mut self.out.events;
        // Without a batched SA, exactly the path outside a batch.
        if !self.batching || !self.engine.inbound().has_batched() {
            let r = self
                .engine
                .decapsulate(&mut pkt, loc, &mut |e| events.push(e));
            return self.after_decap(in_if, pkt, r, pool);
        }
        match self
            .engine
            .decapsulate_or_defer(&mut pkt, loc, &mut |e| events.push(e))
        {
            Deferral::Done(r) => self.after_decap(in_if, pkt, r, pool),
            Deferral::Deferred(opening) => self.defer(Deferred {
                pkt,
                job: Job::Open { in_if, opening },
                idx: None,
            }),
        }
    }

    #[inline(always)]
    pub(super) fn after_decap(
        &mut self,
        in_if: u16,
        mut pkt: B,
        r: Result<InboundOutcome, DropReason>,
        pool: &mut impl PacketPool<B>,
    ) {
        match r {
            Ok(InboundOutcome::Decrypted(_)) => {
                self.counters.decapsulated += 1;
                if let Some(a) = DstBits::of(pkt.data()).and_then(|d| self.cached_adjacency(d)) {
                    // What the lookups below would do, from the cache.
                    if !self.ttl_ok(&mut pkt) {
                        return self.ttl_exceeded(a.out_if, pkt, pool);
                    }
                    if let Some(m) = a.mss {
                        self.clamp_mss(&mut pkt, m);
                    }
                    if pkt.len() <= usize::from(a.mtu) {
                        let ethertype = if a.dst.v6 {
                            EtherType::IPV6
                        } else {
                            EtherType::IPV4
                        };
                        return self.send_eth(a.out_if, pkt, a.mac, ethertype);
                    }
                    // Too big: `deliver` sends the ICMP error or fragments.
                    let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
                        return self.drop_gw(GwDrop::BadFrame);
                    };
                    let Some(&hop) = self.routes.next_hop(dst) else {
                        return self.drop_gw(GwDrop::NoRoute);
                    };
                    return self.deliver(pkt, dst, hop, pool, true);
                }
                let Some(dst) = crate::esp::inbound::packet_dst(pkt.data()) else {
                    return self.drop_gw(GwDrop::BadFrame);
                };
                // Routed once, for both the MSS clamp of the egress
                // interface and the delivery.
                let Some(&hop) = self.routes.next_hop(dst) else {
                    return self.drop_gw(GwDrop::NoRoute);
                };
                self.learn_adjacency(dst, hop);
                if !self.ttl_ok(&mut pkt) {
                    // The error goes back into the tunnel: from the
                    // protected side's address (the interface the packet
                    // was headed for), which the reverse flow's policy can
                    // cover, rather than from the WAN address, which only
                    // a policy for the gateway itself would (RFC 4301
                    // §6.2; `send_local` refuses it if none matches).
                    return self.ttl_exceeded(hop.interface, pkt, pool);
                }
                if let Some(m) = self.ifaces[usize::from(hop.interface)].mss_clamp {
                    self.clamp_mss(&mut pkt, m);
                }
                self.deliver(pkt, dst, hop, pool, true)
            }
            Ok(InboundOutcome::Punt) => self.punt(in_if, pkt),
            Ok(InboundOutcome::NotEsp) => self.drop_gw(GwDrop::NotForUs),
            Err(r) => self.drop_esp(r),
        }
    }

    /// A packet another worker handed to us (we own its SA).
    pub fn handoff_in(&mut self, h: Handoff<B>, pool: &mut impl PacketPool<B>) {
        self.counters.handoffs_in += 1;
        match h.kind {
            HandoffKind::Outbound(slot) => {
                if self.engine.outbound(slot).is_none() {
                    // Ownership moved meanwhile; do not bounce it around.
                    return self.drop_esp(DropReason::NoPolicy);
                }
                self.protect(h.in_iface, slot, h.packet, pool, false)
            }
            HandoffKind::Local(slot) => {
                if self.engine.outbound(slot).is_none() {
                    return self.drop_gw(GwDrop::LocalPolicy);
                }
                self.protect(h.in_iface, slot, h.packet, pool, true)
            }
            HandoffKind::Inbound(loc) => self.open_or_defer(h.in_iface, h.packet, Ok(loc), pool),
        }
    }

    /// Packets other workers handed to us, as [`Self::handoff_in`] does
    /// each, with their crypto batched as [`Self::rx_burst`] batches.
    pub fn handoffs_in(
        &mut self,
        handoffs: impl IntoIterator<Item = Handoff<B>>,
        pool: &mut impl PacketPool<B>,
    ) {
        self.batching = true;
        for h in handoffs {
            self.handoff_in(h, pool);
        }
        self.run_deferred(pool);
        self.batching = false;
    }

    /// Queues a packet for the batch; a full batch runs at once.
    fn defer(&mut self, d: Deferred<B>) {
        self.deferred.push(d);
        if self.deferred.len() >= crate::crypto::BATCH_CAPACITY {
            self.batch_full = true;
        }
    }

    /// Runs the batch of deferred packets: their crypto in one
    /// [`CryptoBatch`](crate::crypto::CryptoBatch), then each finished in
    /// the order it was deferred (the outer headers and the send; the
    /// replay window and the rest of decapsulation), as if it had been
    /// processed alone at that point. Finishing may defer more (an ICMP
    /// error sent through a batched tunnel): those run next.
    pub(super) fn run_deferred(&mut self, pool: &mut impl PacketPool<B>) {
        self.batch_full = false;
        while !self.deferred.is_empty() {
            let mut list = std::mem::take(&mut self.deferred);
            self.crypt(&mut list);
            for d in list.drain(..) {
                self.finish_deferred(d, pool);
            }
            if self.deferred.is_empty() {
                // Keep the allocation.
                self.deferred = list;
            }
        }
    }

    /// Queues every deferred packet in one batch and runs it; the results
    /// go to `batch_results`, by the index each packet keeps.
    fn crypt(&mut self, list: &mut [Deferred<B>]) {
        let mut results = std::mem::take(&mut self.batch_results);
        results.clear();
        {
            let mut batch = self.batch.batch();
            for d in list.iter_mut() {
                let Deferred { pkt, job, idx } = d;
                let len = pkt.len();
                *idx = match job {
                    Job::Seal { slot, sealing, .. } => self
                        .engine
                        .outbound(*slot)
                        .and_then(OutboundSa::batch_keys)
                        .and_then(|k| {
                            let esp = &mut pkt.data_mut()[sealing.esp_range(len)];
                            batch.seal(k, esp, sealing.esn_high()).ok()
                        }),
                    Job::Open { opening, .. } => {
                        match (
                            opening.esp_range(),
                            self.engine.inbound().batch_keys(opening.spi()),
                        ) {
                            (Some(r), Some(k)) => batch
                                .open(k, &mut pkt.data_mut()[r], opening.esn_high())
                                .ok(),
                            _ => None,
                        }
                    }
                };
            }
            batch.run();
            results.extend((0..batch.len()).map(|i| batch.result(i)));
        }
        self.batch_results = results;
    }

    fn finish_deferred(&mut self, d: Deferred<B>, pool: &mut impl PacketPool<B>) {
        let crypto = match d.idx {
            Some(i) => self.batch_results[i],
            // Refused by the batch (lengths), or nothing to queue.
            None => Err(CryptoError::BadLength),
        };
        let mut pkt = d.pkt;
        match d.job {
            Job::Seal {
                slot,
                sealing,
                then,
            } => match self.engine.finish_sealed(slot, &mut pkt, &sealing, crypto) {
                Ok(()) => {
                    self.counters.encapsulated += 1;
                    match then {
                        Then::Send(e) => self.send_sealed(pkt, &e),
                        Then::Route(dst, hop) => self.deliver(pkt, dst, hop, pool, false),
                    }
                }
                Err(r) => self.drop_esp(r),
            },
            Job::Open { in_if, opening } => {
                let events = &mut self.out.events;
                let r = self
                    .engine
                    .finish_opened(&mut pkt, &opening, crypto, &mut |e| events.push(e));
                self.after_decap(in_if, pkt, r, pool)
            }
        }
    }
}
