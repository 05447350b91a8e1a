//! Virtual IP pools for remote-access clients (RFC 7296 §2.19, §3.15):
//! the addresses handed out in CFG_REPLY, and who holds which.
//!
//! A pool is pure state (no I/O, time is an input). Several tunnels'
//! engines may hand out addresses of one pool, so it is shared as a
//! [`SharedPool`]; the driver persists [`Pool::snapshot`] whenever
//! [`Pool::generation`] moves and feeds it back with [`Pool::restore`]
//! after a restart, so that no address is handed to two clients.
//!
//! Leases are keyed by the peer's IKE identity:
//! - an identity holds at most one address per family; more IKE SAs of the
//!   same identity share it (the holder count);
//! - an address whose last IKE SA went stays reserved for its identity
//!   ("offline"): the identity gets it back when it reconnects; others get
//!   it only when nothing else is left, oldest release first;
//! - an address restored after a restart is not given to anyone else for
//!   a grace period, whatever the pressure.
//!
//! Allocation and release are O(log n): never-used addresses come from a
//! cursor through the ranges, returned ones from an ordered free set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use super::sa::Timestamp;

/// A pool shared by the engines handing out its addresses (all on the
/// control thread; the lock is never contended).
pub type SharedPool = Arc<Mutex<Pool>>;

/// Most offline reservations one family of a pool keeps; beyond, the
/// oldest is forgotten (its address becomes free). Bounds the memory a
/// stream of distinct identities can make the pool hold.
pub const MAX_OFFLINE: usize = 65_536;

/// Address family of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(f: Family, v: u128) -> IpAddr {
    match f {
        // Only values that came from an IPv4 address are ever turned back.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

/// Why a pool definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error(
        "`{0}` is neither a prefix (10.3.0.0/24), a range (10.3.0.10-10.3.0.99) nor an address"
    )]
    Syntax(String),
    #[error("range `{0}` ends before it starts or mixes address families")]
    BadRange(String),
    #[error("ranges `{0}` and `{1}` overlap")]
    Overlap(String, String),
    #[error("pool has no addresses")]
    Empty,
}

impl AddrRange {
    /// Parses `10.3.0.0/24`, `fd00:3::/112`, `10.3.0.10-10.3.0.99` or one
    /// address. A prefix leaves out its network address and, for IPv4,
    /// its broadcast address (unless it is a /31 or /32, RFC 3021), as
    /// strongSwan does: no client gets an address its peers would take
    /// for the whole subnet.
    pub fn parse(s: &str) -> Result<Self, PoolError> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| PoolError::Syntax(s.into()))?;
            let b: IpAddr = b.trim().parse().map_err(|_| PoolError::Syntax(s.into()))?;
            if Family::of(a) != Family::of(b) || to_u128(a) > to_u128(b) {
                return Err(PoolError::BadRange(s.into()));
            }
            return Ok(Self { start: a, end: b });
        }
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Self { start: a, end: a });
        }
        let net: ipnet::IpNet = s.parse().map_err(|_| PoolError::Syntax(s.into()))?;
        let (lo, hi) = (to_u128(net.network()), to_u128(net.broadcast()));
        let (lo, hi) = match net {
            ipnet::IpNet::V4(n) if n.prefix_len() < 31 => (lo + 1, hi - 1),
            ipnet::IpNet::V6(n) if n.prefix_len() < 127 => (lo + 1, hi),
            _ => (lo, hi),
        };
        let f = Family::of(net.addr());
        Ok(Self {
            start: from_u128(f, lo),
            end: from_u128(f, hi),
        })
    }

    pub fn family(&self) -> Family {
        Family::of(self.start)
    }

    fn bounds(&self) -> (u128, u128) {
        (to_u128(self.start), to_u128(self.end))
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, o: &AddrRange) -> bool {
        let ((a, b), (c, d)) = (self.bounds(), o.bounds());
        self.family() == o.family() && a <= d && c <= b
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        let (lo, hi) = self.bounds();
        Family::of(a) == self.family() && (lo..=hi).contains(&to_u128(a))
    }
}

impl core::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// What a pool hands out besides addresses (§3.15.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolAttributes {
    /// DNS servers (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS).
    pub dns: Vec<IpAddr>,
    /// Networks reachable through the tunnel (INTERNAL_IP4_SUBNET /
    /// INTERNAL_IP6_SUBNET).
    pub subnets: Vec<ipnet::IpNet>,
}

/// Counters of one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Addresses handed to an identity that had none.
    pub allocated: u64,
    /// An identity got back the address it held before.
    pub reused: u64,
    /// A requested address was given as asked.
    pub requested_honoured: u64,
    /// A requested address was outside the pool or taken: another given.
    pub requested_replaced: u64,
    /// Another identity's offline reservation was taken over (the pool
    /// had nothing else left).
    pub reclaimed: u64,
    /// No address left.
    pub exhausted: u64,
    /// An IKE SA gave its address back.
    pub released: u64,
    /// Restored leases dropped (outside the pool's ranges now, or the
    /// address already restored for another identity).
    pub restore_dropped: u64,
}

/// One address's owner.
#[derive(Debug, Clone)]
struct Holder {
    identity: String,
    /// IKE SAs holding it; 0 = offline (reserved for `identity`).
    holders: u32,
    /// While offline: its place in the reclaim order.
    offline_seq: Option<u64>,
    /// Not reclaimed by others before this time (restored leases).
    not_before: Timestamp,
}

/// The addresses of one family.
#[derive(Debug, Default)]
struct FamilyPool {
    /// Sorted, disjoint inclusive ranges.
    ranges: Vec<(u128, u128)>,
    /// Next never-used address: range index and address. Addresses at or
    /// after it are free unless in `held`.
    cursor: Option<(usize, u128)>,
    /// Addresses before the cursor that are free again.
    free: BTreeSet<u128>,
    held: BTreeMap<u128, Holder>,
    by_identity: HashMap<String, u128>,
    /// Offline addresses by the order they went offline.
    offline: BTreeMap<u64, u128>,
}

impl FamilyPool {
    fn new(mut ranges: Vec<(u128, u128)>) -> Self {
        ranges.sort();
        let cursor = ranges.first().map(|r| (0, r.0));
        Self {
            ranges,
            cursor,
            ..Default::default()
        }
    }

    fn contains(&self, a: u128) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < a);
        self.ranges.get(i).is_some_and(|r| r.0 <= a)
    }

    fn size(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |n, r| n.saturating_add(r.1 - r.0).saturating_add(1))
    }

    /// Whether `a` (in the ranges) is free for anyone.
    fn is_free(&self, a: u128) -> bool {
        if self.held.contains_key(&a) {
            return false;
        }
        match self.cursor {
            Some((_, c)) if a >= c => true,
            _ => self.free.contains(&a),
        }
    }

    fn take_free(&mut self, a: u128) {
        self.free.remove(&a);
    }

    /// The next never-used address, skipping those taken out of order.
    fn next_unused(&mut self) -> Option<u128> {
        while let Some((i, c)) = self.cursor {
            let (_, hi) = self.ranges[i];
            self.cursor = if c < hi {
                Some((i, c + 1))
            } else {
                self.ranges.get(i + 1).map(|r| (i + 1, r.0))
            };
            if !self.held.contains_key(&c) {
                return Some(c);
            }
        }
        None
    }

    /// The oldest offline reservation that may be taken now. Restored
    /// reservations still in their grace period come first in the order
    /// and are stepped over: at most the leases of one state file.
    fn reclaim(&mut self, now: Timestamp) -> Option<u128> {
        let (seq, a) = self
            .offline
            .iter()
            .map(|(s, a)| (*s, *a))
            .find(|(_, a)| self.held.get(a).is_some_and(|h| h.not_before <= now))?;
        self.offline.remove(&seq);
        if let Some(h) = self.held.remove(&a) {
            self.by_identity.remove(&h.identity);
        }
        Some(a)
    }

    /// Makes `a` free again (no owner).
    fn forget(&mut self, a: u128) {
        if let Some(h) = self.held.remove(&a) {
            self.by_identity.remove(&h.identity);
            if let Some(s) = h.offline_seq {
                self.offline.remove(&s);
            }
        }
        if !matches!(self.cursor, Some((_, c)) if a >= c) {
            self.free.insert(a);
        }
    }
}

/// A pool of virtual IPs.
#[derive(Debug)]
pub struct Pool {
    name: String,
    ranges: Vec<AddrRange>,
    attributes: PoolAttributes,
    v4: FamilyPool,
    v6: FamilyPool,
    next_seq: u64,
    generation: u64,
    stats: PoolStats,
}

/// A lease as persisted: who holds which address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseRecord {
    pub identity: String,
    pub addr: IpAddr,
}

impl Pool {
    /// A pool of `ranges` (disjoint; IPv4 and IPv6 may be mixed).
    pub fn new(
        name: &str,
        ranges: Vec<AddrRange>,
        attributes: PoolAttributes,
    ) -> Result<Self, PoolError> {
        if ranges.is_empty() {
            return Err(PoolError::Empty);
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(PoolError::Overlap(a.to_string(), b.to_string()));
            }
        }
        let of = |f: Family| {
            ranges
                .iter()
                .filter(|r| r.family() == f)
                .map(|r| r.bounds())
                .collect::<Vec<_>>()
        };
        Ok(Self {
            name: name.to_owned(),
            v4: FamilyPool::new(of(Family::V4)),
            v6: FamilyPool::new(of(Family::V6)),
            ranges,
            attributes,
            next_seq: 0,
            generation: 0,
            stats: PoolStats::default(),
        })
    }

    /// Parses the ranges and makes a pool.
    pub fn parse(
        name: &str,
        ranges: &[&str],
        attributes: PoolAttributes,
    ) -> Result<Self, PoolError> {
        let r = ranges
            .iter()
            .map(|s| AddrRange::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(name, r, attributes)
    }

    pub fn shared(self) -> SharedPool {
        Arc::new(Mutex::new(self))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    pub fn attributes(&self) -> &PoolAttributes {
        &self.attributes
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Whether the pool has addresses of family `f`.
    pub fn has(&self, f: Family) -> bool {
        !self.fam_ref(f).ranges.is_empty()
    }

    /// Addresses of family `f` (saturating).
    pub fn size(&self, f: Family) -> u128 {
        self.fam_ref(f).size()
    }

    /// Addresses held by IKE SAs now.
    pub fn online(&self) -> usize {
        [&self.v4, &self.v6]
            .iter()
            .map(|p| p.held.values().filter(|h| h.holders > 0).count())
            .sum()
    }

    /// Addresses reserved for an identity with no IKE SA.
    pub fn offline(&self) -> usize {
        self.v4.offline.len() + self.v6.offline.len()
    }

    /// Moves on every change of who holds what: the driver persists the
    /// snapshot when it differs from the last one written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn fam(&mut self, f: Family) -> &mut FamilyPool {
        match f {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    fn fam_ref(&self, f: Family) -> &FamilyPool {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The address `identity` holds or had of family `f`, if any.
    pub fn lease_of(&self, identity: &str, f: Family) -> Option<IpAddr> {
        self.fam_ref(f)
            .by_identity
            .get(identity)
            .map(|a| from_u128(f, *a))
    }

    /// An address of family `f` for one more IKE SA of `identity`: the one
    /// it holds or held, else `requested` if that is in the pool and free,
    /// else a free one, else the oldest offline reservation past its
    /// grace. `None` when the pool has nothing left (or no such family).
    pub fn allocate(
        &mut self,
        identity: &str,
        f: Family,
        requested: Option<IpAddr>,
        now: Timestamp,
    ) -> Option<IpAddr> {
        let requested = requested.filter(|a| Family::of(*a) == f).map(to_u128);
        let p = self.fam(f);
        if let Some(&a) = p.by_identity.get(identity) {
            if let Some(h) = p.held.get_mut(&a) {
                h.holders = h.holders.saturating_add(1);
                if let Some(s) = h.offline_seq.take() {
                    p.offline.remove(&s);
                }
                self.stats.reused += 1;
                self.generation += 1;
                return Some(from_u128(f, a));
            }
        }
        let wanted = requested.filter(|a| p.contains(*a) && p.is_free(*a));
        let (a, honoured, reclaimed) = if let Some(a) = wanted {
            p.take_free(a);
            (a, true, false)
        } else if let Some(a) = p.free.pop_first().or_else(|| p.next_unused()) {
            (a, false, false)
        } else if let Some(a) = p.reclaim(now) {
            (a, false, true)
        } else {
            self.stats.exhausted += 1;
            return None;
        };
        p.held.insert(
            a,
            Holder {
                identity: identity.to_owned(),
                holders: 1,
                offline_seq: None,
                not_before: now,
            },
        );
        p.by_identity.insert(identity.to_owned(), a);
        self.stats.allocated += 1;
        if reclaimed {
            self.stats.reclaimed += 1;
        }
        match (requested.is_some(), honoured) {
            (true, true) => self.stats.requested_honoured += 1,
            (true, false) => self.stats.requested_replaced += 1,
            _ => {}
        }
        self.generation += 1;
        Some(from_u128(f, a))
    }

    /// One IKE SA of `identity` gave `addr` back. When it was the last,
    /// the address stays reserved for `identity` (offline).
    pub fn release(&mut self, identity: &str, addr: IpAddr) {
        let f = Family::of(addr);
        let a = to_u128(addr);
        // Sequence numbers only order releases; gaps do not matter.
        let seq = self.next_seq;
        self.next_seq += 1;
        let p = self.fam(f);
        let Some(h) = p.held.get_mut(&a) else {
            return;
        };
        if h.identity != identity || h.holders == 0 {
            return;
        }
        h.holders -= 1;
        if h.holders == 0 {
            h.offline_seq = Some(seq);
            p.offline.insert(seq, a);
            if p.offline.len() > MAX_OFFLINE {
                if let Some((_, old)) = p.offline.pop_first() {
                    if let Some(h) = p.held.get_mut(&old) {
                        h.offline_seq = None;
                    }
                    p.forget(old);
                }
            }
        }
        self.stats.released += 1;
        self.generation += 1;
    }

    /// Every lease, online or offline, to persist.
    pub fn snapshot(&self) -> Vec<LeaseRecord> {
        let mut v: Vec<LeaseRecord> = [(Family::V4, &self.v4), (Family::V6, &self.v6)]
            .iter()
            .flat_map(|(f, p)| {
                p.held.iter().map(|(a, h)| LeaseRecord {
                    identity: h.identity.clone(),
                    addr: from_u128(*f, *a),
                })
            })
            .collect();
        v.sort();
        v
    }

    /// Reserves leases written before a restart: each address stays
    /// `identity`'s (offline) and is not reclaimed by anyone else before
    /// `now + grace_ms`. Call before any allocation. Leases outside the
    /// ranges now, or whose address or identity (per family) was already
    /// restored, are dropped and counted.
    pub fn restore(&mut self, leases: &[LeaseRecord], now: Timestamp, grace_ms: u64) {
        for l in leases {
            let f = Family::of(l.addr);
            let a = to_u128(l.addr);
            let seq = self.next_seq;
            self.next_seq += 1;
            let p = self.fam(f);
            if !p.contains(a) || !p.is_free(a) || p.by_identity.contains_key(&l.identity) {
                self.stats.restore_dropped += 1;
                continue;
            }
            p.take_free(a);
            p.held.insert(
                a,
                Holder {
                    identity: l.identity.clone(),
                    holders: 0,
                    offline_seq: Some(seq),
                    not_before: now.plus(grace_ms),
                },
            );
            p.by_identity.insert(l.identity.clone(), a);
            p.offline.insert(seq, a);
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const T: Timestamp = Timestamp(0);

    #[test]
    fn ike_pool_parses_prefixes_and_ranges() {
        let r = AddrRange::parse("10.3.0.0/24").unwrap();
        assert_eq!((r.start, r.end), (ip("10.3.0.1"), ip("10.3.0.254")));
        let r = AddrRange::parse("10.3.0.10-10.3.0.12").unwrap();
        assert_eq!((r.start, r.end), (ip("10.3.0.10"), ip("10.3.0.12")));
        let r = AddrRange::parse("10.3.0.8/31").unwrap();
        assert_eq!((r.start, r.end), (ip("10.3.0.8"), ip("10.3.0.9")));
        let r = AddrRange::parse("fd00:3::/120").unwrap();
        assert_eq!((r.start, r.end), (ip("fd00:3::1"), ip("fd00:3::ff")));
        assert!(matches!(
            AddrRange::parse("10.3.0.9-10.3.0.1"),
            Err(PoolError::BadRange(_))
        ));
        assert!(matches!(
            AddrRange::parse("10.3.0.1-fd00::1"),
            Err(PoolError::BadRange(_))
        ));
        assert!(matches!(
            AddrRange::parse("nonsense"),
            Err(PoolError::Syntax(_))
        ));
        assert!(matches!(
            Pool::parse(
                "p",
                &["10.0.0.0/24", "10.0.0.200-10.0.1.5"],
                Default::default()
            ),
            Err(PoolError::Overlap(..))
        ));
        assert_eq!(
            Pool::parse("p", &[], Default::default()).unwrap_err(),
            PoolError::Empty
        );
    }

    #[test]
    fn ike_pool_same_identity_gets_its_address_back() {
        let mut p = Pool::parse("p", &["10.3.0.0/30", "fd00::/126"], Default::default()).unwrap();
        let a = p.allocate("alice", Family::V4, None, T).unwrap();
        assert_eq!(a, ip("10.3.0.1"));
        let b = p.allocate("bob", Family::V4, None, T).unwrap();
        assert_eq!(b, ip("10.3.0.2"));
        // A second IKE SA of alice shares the address.
        assert_eq!(p.allocate("alice", Family::V4, None, T), Some(a));
        p.release("alice", a);
        assert_eq!(p.online(), 2);
        p.release("alice", a);
        assert_eq!((p.online(), p.offline()), (1, 1));
        // Offline, the address is still alice's: she gets it back.
        assert_eq!(p.allocate("alice", Family::V4, None, T), Some(a));
        assert_eq!(p.stats().reused, 2);
        p.release("alice", a);
        // The pool (2 addresses) has nothing else left: carol takes
        // alice's reservation over.
        assert_eq!(p.allocate("carol", Family::V4, None, T), Some(a));
        assert_eq!((p.stats().exhausted, p.stats().reclaimed), (0, 1));
        assert_eq!(p.allocate("dave", Family::V4, None, T), None);
        assert_eq!(p.stats().exhausted, 1);
        assert_eq!(p.lease_of("alice", Family::V4), None);
        // IPv6: the network address is left out.
        assert_eq!(
            p.allocate("alice", Family::V6, None, T),
            Some(ip("fd00::1"))
        );
    }

    #[test]
    fn ike_pool_requests_honoured_only_when_free_and_inside() {
        let mut p = Pool::parse("p", &["10.3.0.1-10.3.0.3"], Default::default()).unwrap();
        assert_eq!(
            p.allocate("a", Family::V4, Some(ip("10.3.0.3")), T),
            Some(ip("10.3.0.3"))
        );
        // Taken: another address instead.
        assert_eq!(
            p.allocate("b", Family::V4, Some(ip("10.3.0.3")), T),
            Some(ip("10.3.0.1"))
        );
        // Outside the pool: one from the pool.
        assert_eq!(
            p.allocate("c", Family::V4, Some(ip("192.168.1.1")), T),
            Some(ip("10.3.0.2"))
        );
        assert_eq!(p.allocate("d", Family::V4, None, T), None);
        assert_eq!(p.stats().requested_honoured, 1);
        assert_eq!(p.stats().requested_replaced, 2);
        // No IPv6 in this pool.
        assert_eq!(p.allocate("a", Family::V6, None, T), None);
    }

    #[test]
    fn ike_pool_restored_leases_wait_for_their_identity() {
        let mut p = Pool::parse("p", &["10.3.0.1-10.3.0.2"], Default::default()).unwrap();
        p.allocate("alice", Family::V4, None, T).unwrap();
        p.allocate("bob", Family::V4, None, T).unwrap();
        let snap = p.snapshot();
        let mut q = Pool::parse("p", &["10.3.0.1-10.3.0.2"], Default::default()).unwrap();
        q.restore(&snap, Timestamp(100), 60_000);
        assert_eq!(q.offline(), 2);
        // Within the grace period nobody else gets them.
        assert_eq!(q.allocate("carol", Family::V4, None, Timestamp(200)), None);
        assert_eq!(
            q.allocate("bob", Family::V4, None, Timestamp(300)),
            Some(ip("10.3.0.2"))
        );
        // After it, alice's old reservation goes to carol.
        assert_eq!(
            q.allocate("carol", Family::V4, None, Timestamp(60_100)),
            Some(ip("10.3.0.1"))
        );
        assert_eq!(q.stats().exhausted, 1);
        // Leases outside the ranges are dropped.
        let mut r = Pool::parse("p", &["10.9.0.1-10.9.0.2"], Default::default()).unwrap();
        r.restore(&snap, T, 1);
        assert_eq!(r.stats().restore_dropped, 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u8, Option<u8>),
        Release(u8, u8),
        Restart(u64),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, proptest::option::of(0u8..16)).prop_map(|(i, r)| Op::Alloc(i, r)),
            3 => (0u8..12, 0u8..16).prop_map(|(i, a)| Op::Release(i, a)),
            1 => (0u64..5_000).prop_map(Op::Restart),
            1 => (0u64..5_000).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever the sequence of allocations, releases and restarts, an
        /// address held by an IKE SA, or held before a restart and still
        /// in its grace period, is never given to another identity; an
        /// identity never holds two addresses; every address is in the pool.
        #[test]
        fn ike_pool_never_gives_one_address_to_two_identities(ops in proptest::collection::vec(op(), 1..200)) {
            let ranges = ["10.0.0.1-10.0.0.5", "10.0.0.9-10.0.0.11"];
            let mut p = Pool::parse("p", &ranges, Default::default()).unwrap();
            let mut now = Timestamp(0);
            // IKE SAs holding each address, as the test counts them.
            let mut online: HashMap<IpAddr, (String, u32)> = HashMap::new();
            // Leases written before the last restart, until their grace ends.
            let mut reserved: HashMap<IpAddr, (String, Timestamp)> = HashMap::new();
            for o in ops {
                match o {
                    Op::Alloc(i, r) => {
                        let id = format!("id{i}");
                        let req = r.map(|r| IpAddr::V4(Ipv4Addr::new(10, 0, 0, r)));
                        if let Some(a) = p.allocate(&id, Family::V4, req, now) {
                            prop_assert!(p.ranges().iter().any(|r| r.contains(a)));
                            if let Some((o, n)) = online.get(&a) {
                                prop_assert!(*n == 0 || *o == id, "{} held by {} given to {}", a, o, id);
                            }
                            if let Some((o, until)) = reserved.get(&a) {
                                prop_assert!(*o == id || now >= *until, "{} reserved for {} given to {}", a, o, id);
                            }
                            for (x, (o, n)) in &online {
                                prop_assert!(*x == a || *o != id || *n == 0, "{} holds {} and {}", id, x, a);
                            }
                            let e = online.entry(a).or_insert((id.clone(), 0));
                            if e.0 != id { *e = (id, 0); }
                            e.1 += 1;
                        }
                    }
                    Op::Release(i, a) => {
                        let id = format!("id{i}");
                        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, a));
                        p.release(&id, a);
                        if let Some((o, n)) = online.get_mut(&a) {
                            if *o == id && *n > 0 { *n -= 1; }
                        }
                    }
                    Op::Restart(grace) => {
                        let snap = p.snapshot();
                        p = Pool::parse("p", &ranges, Default::default()).unwrap();
                        p.restore(&snap, now, grace);
                        prop_assert_eq!(p.stats().restore_dropped, 0);
                        online.clear();
                        reserved = snap.into_iter().map(|l| (l.addr, (l.identity, now.plus(grace)))).collect();
                    }
                    Op::Tick(ms) => now = now.plus(ms),
                }
                // The pool's own view: one identity per address and back.
                let snap = p.snapshot();
                let mut ids = std::collections::HashSet::new();
                let mut addrs = std::collections::HashSet::new();
                for l in &snap {
                    prop_assert!(ids.insert(l.identity.clone()));
                    prop_assert!(addrs.insert(l.addr));
                    prop_assert_eq!(p.lease_of(&l.identity, Family::V4), Some(l.addr));
                }
                prop_assert!(snap.len() <= 8);
            }
        }
    }
}
