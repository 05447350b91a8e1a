//! The neighbour table: IPv4 ARP (RFC 826) and IPv6 neighbour discovery
//! (RFC 4861) results, per worker, keyed by interface and address.
//!
//! Entries follow the reachability states of RFC 4861 §7.3.2, for ARP as
//! well as for neighbour discovery:
//! - INCOMPLETE: we asked (broadcast ARP request, multicast solicitation);
//!   packets wait for the answer.
//! - REACHABLE: an answer to one of our requests confirmed the address less
//!   than [`Timers::reachable_ms`] ago; used as it is.
//! - STALE: learned without confirmation (a request addressed to us, RFC
//!   4861 §7.2.3) or confirmed too long ago; still used, and its first use
//!   starts probing. RFC 4861's DELAY state waits for upper-layer hints
//!   (TCP acknowledgements) that a gateway never has, so a used STALE entry
//!   goes straight to PROBE.
//! - PROBE: unicast requests to the cached address (RFC 4861 §7.3.3, RFC
//!   1122 §2.3.2.1), one per [`Timers::retrans_ms`], up to
//!   [`Timers::unicast_probes`]; the address is used meanwhile. Left
//!   unanswered the entry goes back to INCOMPLETE and is resolved afresh.
//! - static: configured, never replaced and never aged.
//!
//! Who may write an entry (RFC 4861 §7.2.5 for advertisements, the same
//! discipline for ARP):
//! - only an answer to one of our requests (an INCOMPLETE or PROBE entry
//!   here, or a request another worker sent, see [`SolicitLog`]) or a
//!   request addressed to us may create an entry; unsolicited answers are
//!   refused;
//! - a different link-layer address for an entry that has one is never
//!   used on the word of the packet that claims it: the entry is probed at
//!   the address it has, and only if that stays silent is it resolved
//!   afresh;
//! - a learned entry never replaces a static one.
//!
//! Checking that a claimed address belongs on the receiving interface is
//! the caller's (the node knows the interfaces' prefixes).
//!
//! Memory and time are bounded: at most [`NeighbourTable::MAX_LEARNED`]
//! learned entries in storage allocated up front; a full table evicts the
//! entry that has been unconfirmed longest (INCOMPLETE, STALE or PROBE,
//! never a REACHABLE or static one), found in constant time from a list
//! kept in that order. Keys are hashed with a per-table secret, so that
//! addresses chosen by whoever sends requests cannot pile up in one probe
//! sequence.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The timers of RFC 4861 §10, applied to ARP too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// How long a confirmation keeps an entry REACHABLE (REACHABLE_TIME;
    /// Linux's base_reachable_time).
    pub reachable_ms: u64,
    /// Interval between two requests for one entry (RETRANS_TIMER).
    pub retrans_ms: u64,
    /// Unicast probes before a silent neighbour is resolved afresh
    /// (MAX_UNICAST_SOLICIT).
    pub unicast_probes: u8,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            reachable_ms: 30_000,
            retrans_ms: 1_000,
            unicast_probes: 3,
        }
    }
}

/// Reachability state (RFC 4861 §7.3.2), plus configured entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Asked, no answer yet; no address.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Not confirmed (recently); probed when used.
    Stale,
    /// Being probed by unicast requests; still used.
    Probe,
    /// Configured.
    Static,
}

/// One neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Link-layer address (zero while INCOMPLETE).
    pub mac: [u8; 6],
    /// Interface index it was learned on (or configured for).
    pub iface: u16,
    /// Reachability state.
    pub state: State,
    /// When it entered the state (ms, the caller's clock): for a REACHABLE
    /// entry, when it was confirmed.
    pub since_ms: u64,
    /// Requests sent in this state (broadcast while INCOMPLETE, unicast
    /// while PROBE).
    pub requests: u8,
    /// When the last of them was sent.
    pub requested_ms: u64,
}

/// Why a received ARP packet or neighbour solicitation / advertisement
/// taught the table nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Refused {
    /// An address no neighbour can have: unspecified, multicast,
    /// broadcast, one of ours, or a group / zero link-layer address.
    BadAddress,
    /// The address is on none of our interfaces' subnets.
    OffSubnet,
    /// The address belongs on another interface's subnet.
    WrongInterface,
    /// An answer we did not ask for, for an address we have no entry for
    /// (RFC 4861 §7.2.5), or one that confirms nothing.
    Unsolicited,
    /// No room: every learned entry is reachable.
    TableFull,
    /// The address has a configured entry.
    StaticEntry,
    /// A different link-layer address for an entry that has one: the
    /// entry keeps its address and is probed there first.
    MacChange,
    /// A solicitation or advertisement RFC 4861 §7.1 says to discard
    /// (hop limit not 255, missing link-layer option).
    Invalid,
}

impl Refused {
    /// Every reason in index order.
    pub const ALL: [Refused; 8] = [
        Refused::BadAddress,
        Refused::OffSubnet,
        Refused::WrongInterface,
        Refused::Unsolicited,
        Refused::TableFull,
        Refused::StaticEntry,
        Refused::MacChange,
        Refused::Invalid,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Name for statistics.
    pub const fn name(self) -> &'static str {
        match self {
            Refused::BadAddress => "bad_address",
            Refused::OffSubnet => "off_subnet",
            Refused::WrongInterface => "wrong_interface",
            Refused::Unsolicited => "unsolicited",
            Refused::TableFull => "table_full",
            Refused::StaticEntry => "static_entry",
            Refused::MacChange => "mac_change",
            Refused::Invalid => "invalid",
        }
    }
}

/// What a received packet says about a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A request addressed to us (ARP request for our address, neighbour
    /// solicitation with a source link-layer option): may create a STALE
    /// entry.
    Request,
    /// An answer (ARP reply, gratuitous ARP, neighbour advertisement).
    Answer {
        /// We asked: an INCOMPLETE or PROBE entry, or a logged request.
        asked: bool,
        /// The advertisement's S flag (true for ARP): a solicited answer
        /// confirms reachability.
        solicited: bool,
        /// The advertisement's O flag (true for ARP).
        override_flag: bool,
    },
}

/// What an accepted claim changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// A new entry with its address.
    New,
    /// An INCOMPLETE entry got its address: packets waiting may leave.
    Resolved,
    /// The entry's address was confirmed (now REACHABLE).
    Confirmed,
    /// Nothing changed.
    Unchanged,
}

impl Claimed {
    /// The entry now has an address it did not have.
    pub fn resolved(self) -> bool {
        matches!(self, Claimed::New | Claimed::Resolved)
    }
}

/// The answer to "where do I send a packet for this neighbour".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Send to `mac`; the answer stays good until `until` (ms) unless the
    /// table's generation changes. With `probe`, also send a unicast
    /// request to `mac` now.
    Use {
        /// Link-layer address.
        mac: [u8; 6],
        /// When to ask again.
        until: u64,
        /// Send a unicast probe now.
        probe: bool,
    },
    /// Not resolved: the packet waits. With `solicit`, send a broadcast /
    /// multicast request now.
    Wait {
        /// Send a request now.
        solicit: bool,
    },
    /// No room for a new entry.
    Full,
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    iface: u16,
    ip: IpAddr,
}

impl Key {
    fn words(&self) -> (u64, u64) {
        let o = match self.ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&o[..8]);
        lo.copy_from_slice(&o[8..]);
        (
            u64::from_le_bytes(hi) ^ (u64::from(self.iface) << 48),
            u64::from_le_bytes(lo),
        )
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.words();
        state.write_u64(a);
        state.write_u64(b);
    }
}

/// 64x64 multiplication folded to 64 bits: every input bit reaches the
/// low bits the hash table indexes with.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A hasher keyed with two random secrets.
#[derive(Debug, Clone, Copy)]
struct Secret(u64, u64);

impl Secret {
    fn random() -> Self {
        let s = RandomState::new();
        Self(s.hash_one(1u64), s.hash_one(2u64) | 1)
    }

    fn hash(&self, k: &Key) -> u64 {
        self.hash_one(k)
    }
}

impl BuildHasher for Secret {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(self.0, self.1)
    }
}

#[derive(Debug)]
struct Mix(u64, u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = fold(self.0 ^ x, self.1);
    }
}

/// Which ordered list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListId {
    /// Static entries and free slots.
    None,
    /// REACHABLE, oldest confirmation first.
    Reach,
    /// INCOMPLETE, STALE and PROBE, longest unconfirmed first.
    Loose,
}

#[derive(Debug, Clone)]
struct Slot {
    key: Key,
    n: Neighbour,
    prev: u32,
    next: u32,
    list: ListId,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
}

/// Neighbour cache.
#[derive(Debug, Clone)]
pub struct NeighbourTable {
    map: HashMap<Key, u32, Secret>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    reach: List,
    loose: List,
    learned: usize,
    statics: usize,
    /// Bumped whenever an entry gains, loses or changes its address or
    /// starts being probed, so that answers cached elsewhere (the node's
    /// per-SA egress) can tell they are stale.
    generation: u64,
    timers: Timers,
}

impl Default for NeighbourTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NeighbourTable {
    /// Most learned entries kept.
    pub const MAX_LEARNED: usize = 4096;
    /// REACHABLE entries aged to STALE per eviction at most (bounded work
    /// per packet; each entry ages once per confirmation).
    const AGE_PER_EVICTION: usize = 32;

    /// An empty table with the default timers.
    pub fn new() -> Self {
        Self::with_timers(Timers::default())
    }

    /// An empty table. Everything learning needs is allocated here: the
    /// hash map gets twice the entries it will hold, so that it never
    /// grows (it rehashes in place instead).
    pub fn with_timers(timers: Timers) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(2 * Self::MAX_LEARNED, Secret::random()),
            slots: Vec::with_capacity(Self::MAX_LEARNED),
            free: Vec::with_capacity(Self::MAX_LEARNED),
            reach: List::EMPTY,
            loose: List::EMPTY,
            learned: 0,
            statics: 0,
            generation: 0,
            timers: timers.sanitized(),
        }
    }

    /// The timers.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Adds a static entry (replacing a learned one).
    pub fn insert_static(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        self.generation += 1;
        let key = Key { iface, ip };
        let n = Neighbour {
            mac,
            iface,
            state: State::Static,
            since_ms: 0,
            requests: 0,
            requested_ms: 0,
        };
        if let Some(&i) = self.map.get(&key) {
            if self.slots[i as usize].n.state != State::Static {
                self.learned -= 1;
                self.statics += 1;
            }
            self.unlink(i);
            self.slots[i as usize].n = n;
            return;
        }
        self.statics += 1;
        // Configuration time: keep the map at most half full.
        let want = 2 * (Self::MAX_LEARNED + self.statics);
        if self.map.capacity() < want {
            self.map.reserve(want - self.map.len());
        }
        let i = self.new_slot(key, n);
        self.map.insert(key, i);
    }

    /// Removes the static entry for `ip` on `iface` (a reload dropped it
    /// from the configuration): the address is resolved afresh when next
    /// needed. False if there is no static entry.
    pub fn remove_static(&mut self, iface: u16, ip: IpAddr) -> bool {
        let key = Key { iface, ip };
        let Some(&i) = self.map.get(&key) else {
            return false;
        };
        if self.slots[i as usize].n.state != State::Static {
            return false;
        }
        self.unlink(i);
        self.map.remove(&key);
        self.free.push(i);
        self.statics -= 1;
        // Cached egress decisions may hold its address.
        self.generation += 1;
        true
    }

    /// The static entries, `(address, link-layer address, interface)`.
    pub fn statics(&self) -> impl Iterator<Item = (IpAddr, [u8; 6], u16)> + '_ {
        self.map.iter().filter_map(|(k, &i)| {
            let n = &self.slots[i as usize].n;
            (n.state == State::Static).then_some((k.ip, n.mac, k.iface))
        })
    }

    /// The entry for `ip` on `iface`.
    pub fn get(&self, iface: u16, ip: IpAddr) -> Option<&Neighbour> {
        let i = *self.map.get(&Key { iface, ip })?;
        Some(&self.slots[i as usize].n)
    }

    /// The link-layer address of `ip` on `iface`, if it has one.
    pub fn lookup(&self, iface: u16, ip: IpAddr) -> Option<[u8; 6]> {
        self.get(iface, ip)
            .filter(|n| n.state != State::Incomplete)
            .map(|n| n.mac)
    }

    /// Whether we are waiting for an answer about `ip` on `iface`
    /// (INCOMPLETE or PROBE).
    pub fn awaiting(&self, iface: u16, ip: IpAddr) -> bool {
        self.get(iface, ip)
            .is_some_and(|n| matches!(n.state, State::Incomplete | State::Probe))
    }

    /// The address of `ip` on `iface` and until when it may be used without
    /// asking the table again, if the entry needs nothing now (static,
    /// REACHABLE, or PROBE between two probes); without side effects.
    pub fn usable(&self, iface: u16, ip: IpAddr, now_ms: u64) -> Option<([u8; 6], u64)> {
        let n = self.get(iface, ip)?;
        let until = match n.state {
            State::Static => u64::MAX,
            State::Reachable => n.since_ms.saturating_add(self.timers.reachable_ms),
            State::Probe if n.requests > 0 => n.requested_ms.saturating_add(self.timers.retrans_ms),
            _ => return None,
        };
        (now_ms < until).then_some((n.mac, until))
    }

    /// Where to send a packet for `ip` on `iface` at `now_ms`: advances the
    /// entry through its states (RFC 4861 §7.3.3) and creates an
    /// INCOMPLETE one if there is none.
    pub fn resolve(&mut self, iface: u16, ip: IpAddr, now_ms: u64) -> Resolve {
        let key = Key { iface, ip };
        let t = self.timers;
        let Some(&i) = self.map.get(&key) else {
            let n = Neighbour {
                mac: [0; 6],
                iface,
                state: State::Incomplete,
                since_ms: now_ms,
                requests: 1,
                requested_ms: now_ms,
            };
            return match self.insert_learned(key, n, now_ms) {
                Ok(_) => Resolve::Wait { solicit: true },
                Err(_) => Resolve::Full,
            };
        };
        let n = self.slots[i as usize].n;
        match n.state {
            State::Static => Resolve::Use {
                mac: n.mac,
                until: u64::MAX,
                probe: false,
            },
            State::Reachable if now_ms < n.since_ms.saturating_add(t.reachable_ms) => {
                Resolve::Use {
                    mac: n.mac,
                    until: n.since_ms.saturating_add(t.reachable_ms),
                    probe: false,
                }
            }
            State::Reachable | State::Stale => {
                self.set_state(i, State::Probe, now_ms);
                self.generation += 1;
                let e = &mut self.slots[i as usize].n;
                e.requests = 1;
                e.requested_ms = now_ms;
                Resolve::Use {
                    mac: n.mac,
                    until: now_ms.saturating_add(t.retrans_ms),
                    probe: true,
                }
            }
            State::Probe => {
                let due = n.requested_ms.saturating_add(t.retrans_ms);
                if n.requests > 0 && now_ms < due {
                    return Resolve::Use {
                        mac: n.mac,
                        until: due,
                        probe: false,
                    };
                }
                if n.requests < t.unicast_probes {
                    let e = &mut self.slots[i as usize].n;
                    e.requests += 1;
                    e.requested_ms = now_ms;
                    return Resolve::Use {
                        mac: n.mac,
                        until: now_ms.saturating_add(t.retrans_ms),
                        probe: true,
                    };
                }
                // Silent at its address: resolve it afresh.
                self.restart(i, now_ms);
                Resolve::Wait { solicit: true }
            }
            State::Incomplete => {
                if now_ms >= n.requested_ms.saturating_add(t.retrans_ms) {
                    let e = &mut self.slots[i as usize].n;
                    e.requests = e.requests.saturating_add(1);
                    e.requested_ms = now_ms;
                    Resolve::Wait { solicit: true }
                } else {
                    Resolve::Wait { solicit: false }
                }
            }
        }
    }

    /// Applies what a received packet claims: `ip` on `iface` is at `mac`.
    /// The caller has checked that `ip` belongs on `iface` and that `mac`
    /// is a unicast address.
    pub fn claim(
        &mut self,
        iface: u16,
        ip: IpAddr,
        mac: [u8; 6],
        claim: Claim,
        now_ms: u64,
    ) -> Result<Claimed, Refused> {
        let key = Key { iface, ip };
        let Some(&i) = self.map.get(&key) else {
            let state = match claim {
                // RFC 4861 §7.2.3 (and RFC 826's merge for a request to us).
                Claim::Request => State::Stale,
                Claim::Answer {
                    asked: true,
                    solicited,
                    ..
                } => {
                    if solicited {
                        State::Reachable
                    } else {
                        State::Stale
                    }
                }
                // RFC 4861 §7.2.5: no entry, not asked: discard.
                Claim::Answer { asked: false, .. } => return Err(Refused::Unsolicited),
            };
            let n = Neighbour {
                mac,
                iface,
                state,
                since_ms: now_ms,
                requests: 0,
                requested_ms: 0,
            };
            self.insert_learned(key, n, now_ms)?;
            return Ok(Claimed::New);
        };
        let n = self.slots[i as usize].n;
        match n.state {
            State::Static if n.mac == mac => Ok(Claimed::Unchanged),
            State::Static => Err(Refused::StaticEntry),
            State::Incomplete => {
                // We asked; a request from the neighbour itself also tells
                // (RFC 4861 §7.2.3: record it, STALE).
                let state = match claim {
                    Claim::Answer {
                        solicited: true, ..
                    } => State::Reachable,
                    _ => State::Stale,
                };
                self.set_state(i, state, now_ms);
                self.generation += 1;
                let e = &mut self.slots[i as usize].n;
                e.mac = mac;
                e.requests = 0;
                Ok(Claimed::Resolved)
            }
            _ if n.mac == mac => match claim {
                Claim::Answer {
                    asked: true,
                    solicited: true,
                    ..
                } => {
                    if n.state == State::Probe {
                        self.generation += 1;
                    }
                    self.set_state(i, State::Reachable, now_ms);
                    self.slots[i as usize].n.requests = 0;
                    Ok(Claimed::Confirmed)
                }
                Claim::Answer { .. } => Err(Refused::Unsolicited),
                Claim::Request => Ok(Claimed::Unchanged),
            },
            // A different address for an entry that has one. RFC 4861
            // §7.2.5 would take it on the advertisement's word (override
            // flag); here the entry keeps its address and is probed there:
            // a live neighbour answers and keeps it, a silent one is
            // resolved afresh once its probes run out.
            _ => {
                if let Claim::Answer {
                    override_flag: false,
                    ..
                } = claim
                {
                    return Err(Refused::MacChange);
                }
                if n.state != State::Probe {
                    self.set_state(i, State::Probe, now_ms);
                    self.generation += 1;
                    let e = &mut self.slots[i as usize].n;
                    e.requests = 0;
                    e.requested_ms = 0;
                }
                Err(Refused::MacChange)
            }
        }
    }

    /// Forgets the address of the learned entry for `ip` on `iface` (or
    /// creates an entry) so that it is resolved afresh: the entry becomes
    /// INCOMPLETE with a request due now. False for a static entry or a
    /// full table (nothing to send).
    pub fn flush(&mut self, iface: u16, ip: IpAddr, now_ms: u64) -> bool {
        let key = Key { iface, ip };
        let Some(&i) = self.map.get(&key) else {
            return matches!(
                self.resolve(iface, ip, now_ms),
                Resolve::Wait { solicit: true }
            );
        };
        if self.slots[i as usize].n.state == State::Static {
            return false;
        }
        self.restart(i, now_ms);
        true
    }

    /// Entry `i` loses its address and becomes INCOMPLETE, with the
    /// request the caller sends now counted.
    fn restart(&mut self, i: u32, now_ms: u64) {
        self.set_state(i, State::Incomplete, now_ms);
        self.generation += 1;
        let e = &mut self.slots[i as usize].n;
        e.mac = [0; 6];
        e.requests = 1;
        e.requested_ms = now_ms;
    }

    /// Changes whenever an entry gains, loses or changes its address, or
    /// starts being probed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &Neighbour)> {
        self.map
            .iter()
            .map(|(k, &i)| (k.ip, &self.slots[i as usize].n))
    }

    /// Number of entries (static ones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of learned entries.
    pub fn learned_len(&self) -> usize {
        self.learned
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn insert_learned(&mut self, key: Key, n: Neighbour, now_ms: u64) -> Result<u32, Refused> {
        if self.learned >= Self::MAX_LEARNED && !self.evict(now_ms) {
            return Err(Refused::TableFull);
        }
        let i = self.new_slot(key, n);
        self.map.insert(key, i);
        self.learned += 1;
        let list = Self::list_of(n.state);
        self.push_tail(list, i);
        Ok(i)
    }

    fn new_slot(&mut self, key: Key, n: Neighbour) -> u32 {
        let slot = Slot {
            key,
            n,
            prev: NIL,
            next: NIL,
            list: ListId::None,
        };
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Drops the entry unconfirmed longest, after aging the REACHABLE
    /// entries whose confirmation ran out (a bounded number). False if
    /// every learned entry is REACHABLE.
    fn evict(&mut self, now_ms: u64) -> bool {
        for _ in 0..Self::AGE_PER_EVICTION {
            let h = self.reach.head;
            if h == NIL {
                break;
            }
            let n = self.slots[h as usize].n;
            if now_ms < n.since_ms.saturating_add(self.timers.reachable_ms) {
                break;
            }
            let aged = n.since_ms.saturating_add(self.timers.reachable_ms);
            self.set_state(h, State::Stale, aged);
        }
        let victim = self.loose.head;
        if victim == NIL {
            return false;
        }
        self.unlink(victim);
        let key = self.slots[victim as usize].key;
        self.map.remove(&key);
        self.free.push(victim);
        self.learned -= 1;
        // Only a PROBE entry's address may be cached elsewhere.
        if self.slots[victim as usize].n.state == State::Probe {
            self.generation += 1;
        }
        true
    }

    fn list_of(state: State) -> ListId {
        match state {
            State::Static => ListId::None,
            State::Reachable => ListId::Reach,
            State::Incomplete | State::Stale | State::Probe => ListId::Loose,
        }
    }

    /// Moves entry `i` into `state` (and to the tail of its list).
    fn set_state(&mut self, i: u32, state: State, now_ms: u64) {
        self.unlink(i);
        let e = &mut self.slots[i as usize].n;
        e.state = state;
        e.since_ms = now_ms;
        self.push_tail(Self::list_of(state), i);
    }

    fn list_mut(&mut self, id: ListId) -> Option<&mut List> {
        match id {
            ListId::None => None,
            ListId::Reach => Some(&mut self.reach),
            ListId::Loose => Some(&mut self.loose),
        }
    }

    fn push_tail(&mut self, id: ListId, i: u32) {
        let Some(list) = self.list_mut(id) else {
            return;
        };
        let old_tail = list.tail;
        list.tail = i;
        if old_tail == NIL {
            list.head = i;
        }
        if old_tail != NIL {
            self.slots[old_tail as usize].next = i;
        }
        let s = &mut self.slots[i as usize];
        s.prev = old_tail;
        s.next = NIL;
        s.list = id;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, id) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next, s.list)
        };
        if id == ListId::None {
            return;
        }
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        if let Some(list) = self.list_mut(id) {
            if list.head == i {
                list.head = next;
            }
            if list.tail == i {
                list.tail = prev;
            }
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
        s.list = ListId::None;
    }
}

impl Timers {
    /// At least one probe, and intervals of at least a millisecond.
    fn sanitized(self) -> Self {
        Self {
            reachable_ms: self.reachable_ms.max(1),
            retrans_ms: self.retrans_ms.max(1),
            unicast_probes: self.unicast_probes.max(1),
        }
    }
}

/// The requests every worker sent recently, shared between workers: an
/// answer lands on whichever worker the NIC gives it to (every ARP frame on
/// the first queue), not necessarily the one that asked. A fixed array of
/// slots, each the hash tag of an (interface, address) and when it was
/// asked; written and read with relaxed atomics (a lost race costs one more
/// request), never locked or grown.
#[derive(Debug)]
pub struct SolicitLog {
    slots: Box<[AtomicU64]>,
    secret: Secret,
}

impl Default for SolicitLog {
    fn default() -> Self {
        Self::new()
    }
}

impl SolicitLog {
    const SLOTS: usize = 4096;
    /// How long after a request an answer counts as asked for (ms).
    pub const WINDOW_MS: u64 = 3_000;

    /// An empty log.
    pub fn new() -> Self {
        Self {
            slots: (0..Self::SLOTS).map(|_| AtomicU64::new(0)).collect(),
            secret: Secret::random(),
        }
    }

    fn slot_and_tag(&self, iface: u16, ip: IpAddr) -> (usize, u64) {
        let h = self.secret.hash(&Key { iface, ip });
        // The tag is never zero, so an empty slot matches nothing.
        ((h as usize) % Self::SLOTS, (h >> 32).max(1))
    }

    /// Records a request for `ip` on `iface` at `now_ms`.
    pub fn note(&self, iface: u16, ip: IpAddr, now_ms: u64) {
        let (s, tag) = self.slot_and_tag(iface, ip);
        self.slots[s].store(tag << 32 | (now_ms & 0xffff_ffff), Ordering::Relaxed);
    }

    /// Whether some worker asked for `ip` on `iface` within
    /// [`Self::WINDOW_MS`] of `now_ms` (workers' clocks differ by the
    /// milliseconds between their starts).
    pub fn asked(&self, iface: u16, ip: IpAddr, now_ms: u64) -> bool {
        let (s, tag) = self.slot_and_tag(iface, ip);
        let v = self.slots[s].load(Ordering::Relaxed);
        if v >> 32 != tag {
            return false;
        }
        let t = (v & 0xffff_ffff) as u32;
        let d = (now_ms as u32).wrapping_sub(t);
        u64::from(d.min(d.wrapping_neg())) < Self::WINDOW_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    const ANSWER: Claim = Claim::Answer {
        asked: true,
        solicited: true,
        override_flag: true,
    };
    const UNASKED: Claim = Claim::Answer {
        asked: false,
        solicited: true,
        override_flag: true,
    };

    #[test]
    fn static_entries_win_and_requests_are_rate_limited() {
        let mut t = NeighbourTable::new();
        let a: IpAddr = "192.0.2.2".parse().unwrap();
        t.insert_static(a, [2; 6], 1);
        assert_eq!(t.claim(1, a, [9; 6], ANSWER, 5), Err(Refused::StaticEntry));
        assert_eq!(
            t.claim(1, a, [9; 6], Claim::Request, 5),
            Err(Refused::StaticEntry)
        );
        assert!(!t.flush(1, a, 5));
        assert_eq!(t.lookup(1, a), Some([2; 6]));
        let b: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(t.resolve(1, b, 1000), Resolve::Wait { solicit: true });
        assert_eq!(t.resolve(1, b, 1100), Resolve::Wait { solicit: false });
        assert_eq!(t.resolve(1, b, 2000), Resolve::Wait { solicit: true });
        assert_eq!(t.claim(1, b, [3; 6], ANSWER, 2100), Ok(Claimed::Resolved));
        assert_eq!(t.get(1, b).unwrap().state, State::Reachable);
        // Keyed by interface: the same address elsewhere is another entry.
        assert_eq!(t.lookup(0, b), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.learned_len(), 1);
    }

    /// A static entry a reload dropped goes, and the address is learned
    /// like any other afterwards; a learned entry is not removed as static.
    #[test]
    fn static_entries_can_be_removed() {
        let mut t = NeighbourTable::new();
        let (a, b) = (v4(1), v4(2));
        t.insert_static(a, [2; 6], 1);
        let gen = t.generation();
        assert_eq!(t.statics().collect::<Vec<_>>(), vec![(a, [2; 6], 1)]);
        assert!(t.remove_static(1, a));
        assert!(t.generation() > gen);
        assert!(t.get(1, a).is_none());
        assert!(!t.remove_static(1, a));
        assert_eq!(t.statics().count(), 0);
        assert!(matches!(t.resolve(1, b, 0), Resolve::Wait { .. }));
        assert!(!t.remove_static(1, b), "a learned entry is not static");
        assert!(t.get(1, b).is_some());
        t.insert_static(a, [3; 6], 1);
        assert_eq!(t.lookup(1, a), Some([3; 6]));
    }

    #[test]
    fn only_requests_to_us_and_answers_we_asked_for_create_entries() {
        let mut t = NeighbourTable::new();
        assert_eq!(
            t.claim(0, v4(1), [2; 6], UNASKED, 0),
            Err(Refused::Unsolicited)
        );
        assert!(t.is_empty());
        assert_eq!(t.claim(0, v4(1), [2; 6], ANSWER, 0), Ok(Claimed::New));
        assert_eq!(t.get(0, v4(1)).unwrap().state, State::Reachable);
        assert_eq!(
            t.claim(0, v4(2), [2; 6], Claim::Request, 0),
            Ok(Claimed::New)
        );
        assert_eq!(t.get(0, v4(2)).unwrap().state, State::Stale);
        // An unsolicited answer with the same address confirms nothing.
        assert_eq!(
            t.claim(0, v4(2), [2; 6], UNASKED, 1),
            Err(Refused::Unsolicited)
        );
        assert_eq!(t.get(0, v4(2)).unwrap().state, State::Stale);
    }

    #[test]
    fn reachable_ages_to_stale_then_probes_then_resolves_afresh() {
        let mut t = NeighbourTable::new();
        let tm = t.timers();
        let a = v4(5);
        t.claim(0, a, [5; 6], ANSWER, 0).unwrap();
        assert_eq!(
            t.resolve(0, a, 10),
            Resolve::Use {
                mac: [5; 6],
                until: tm.reachable_ms,
                probe: false
            }
        );
        let mut now = tm.reachable_ms;
        let g = t.generation();
        assert!(matches!(
            t.resolve(0, a, now),
            Resolve::Use {
                mac: [5, 5, 5, 5, 5, 5],
                probe: true,
                ..
            }
        ));
        assert_eq!(t.get(0, a).unwrap().state, State::Probe);
        assert_ne!(t.generation(), g);
        for _ in 1..tm.unicast_probes {
            now += tm.retrans_ms;
            assert!(matches!(
                t.resolve(0, a, now),
                Resolve::Use { probe: true, .. }
            ));
        }
        now += tm.retrans_ms;
        assert_eq!(t.resolve(0, a, now), Resolve::Wait { solicit: true });
        assert_eq!(t.lookup(0, a), None);
        // Answered while probing: REACHABLE again.
        let b = v4(6);
        t.claim(0, b, [6; 6], Claim::Request, 0).unwrap();
        assert!(matches!(
            t.resolve(0, b, 1),
            Resolve::Use { probe: true, .. }
        ));
        assert_eq!(t.claim(0, b, [6; 6], ANSWER, 2), Ok(Claimed::Confirmed));
        assert_eq!(t.get(0, b).unwrap().state, State::Reachable);
    }

    #[test]
    fn a_changed_address_is_probed_at_the_old_one_first() {
        let mut t = NeighbourTable::new();
        let a = v4(7);
        t.claim(0, a, [7; 6], ANSWER, 0).unwrap();
        assert_eq!(t.claim(0, a, [8; 6], ANSWER, 1), Err(Refused::MacChange));
        assert_eq!(t.get(0, a).unwrap().state, State::Probe);
        assert!(matches!(
            t.resolve(0, a, 2),
            Resolve::Use {
                mac: [7, 7, 7, 7, 7, 7],
                probe: true,
                ..
            }
        ));
        // The old address answers: it stays.
        assert_eq!(t.claim(0, a, [7; 6], ANSWER, 3), Ok(Claimed::Confirmed));
        assert_eq!(t.lookup(0, a), Some([7; 6]));
    }

    #[test]
    fn a_full_table_evicts_the_oldest_unconfirmed_entry_never_a_reachable_one() {
        let mut t = NeighbourTable::new();
        let max = NeighbourTable::MAX_LEARNED as u32;
        t.insert_static(v4(0), [9; 6], 0);
        // Half reachable, half stale.
        for i in 1..=max {
            let c = if i % 2 == 0 { ANSWER } else { Claim::Request };
            t.claim(0, v4(i), [2; 6], c, u64::from(i)).unwrap();
        }
        assert_eq!(t.learned_len(), NeighbourTable::MAX_LEARNED);
        for i in 0..10 * max {
            let _ = t.claim(0, v4(max + 1 + i), [3; 6], Claim::Request, 10_000);
        }
        assert_eq!(t.learned_len(), NeighbourTable::MAX_LEARNED);
        assert_eq!(t.lookup(0, v4(0)), Some([9; 6]));
        for i in (2..=max).step_by(2) {
            assert_eq!(t.get(0, v4(i)).unwrap().state, State::Reachable);
        }
        // Only reachable entries left besides the newest: a new one still
        // fits once they age.
        let later = 10_000 + t.timers().reachable_ms;
        assert_eq!(
            t.resolve(0, v4(99_999), later),
            Resolve::Wait { solicit: true }
        );
        assert_eq!(
            t.claim(0, v4(99_999), [4; 6], ANSWER, later),
            Ok(Claimed::Resolved)
        );
        assert_eq!(t.lookup(0, v4(0)), Some([9; 6]));
    }

    #[test]
    fn a_table_of_reachable_entries_refuses_rather_than_evicts() {
        let mut t = NeighbourTable::new();
        for i in 0..NeighbourTable::MAX_LEARNED as u32 {
            t.claim(0, v4(i), [2; 6], ANSWER, 0).unwrap();
        }
        assert_eq!(
            t.claim(0, v4(1 << 20), [2; 6], Claim::Request, 1),
            Err(Refused::TableFull)
        );
        assert_eq!(t.resolve(0, v4(1 << 20), 1), Resolve::Full);
    }

    #[test]
    fn the_solicit_log_remembers_requests_for_a_while() {
        let log = SolicitLog::new();
        let a = v4(1);
        assert!(!log.asked(0, a, 100));
        log.note(0, a, 100);
        assert!(log.asked(0, a, 100));
        assert!(log.asked(0, a, 90));
        assert!(!log.asked(1, a, 100));
        assert!(!log.asked(0, v4(2), 100));
        assert!(!log.asked(0, a, 100 + SolicitLog::WINDOW_MS));
    }
}
