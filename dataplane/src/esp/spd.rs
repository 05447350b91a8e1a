//! Security Policy Database (RFC 4301 §4.4.1).
//!
//! Each [`Policy`] pairs a [`Selector`] (source and destination prefixes,
//! next-layer protocol, port ranges) with an [`Action`]: PROTECT with an SA,
//! BYPASS or DISCARD. RFC 4301 §4.4.1 orders the SPD: the first matching
//! entry wins. Here the order is explicit: lower [`Policy::priority`] first,
//! ties broken by insertion order.
//!
//! # Lookup: a compiled classifier
//!
//! [`Spd::lookup`] is not a walk over the policies. The policies, in rank
//! order (priority, then insertion order), are compiled into a byte-wise
//! decision automaton ([`Classifier`], see [`super::classifier`]): a lookup
//! reads the packet's key (addresses, protocol, ports) a byte at a time,
//! at most two nodes per key byte and usually stopping well before the end
//! (6 to 7 steps for 10,000 IPv4 policies), whatever the number of policies
//! and however many distinct prefix lengths they use. (The tuple space
//! search it replaced probed one hash table per distinct pair of prefix
//! lengths: ~625 probes, about 3 µs, for 10,000 random prefixes.)
//!
//! Building ([`Spd::insert`], [`Spd::remove`], [`Spd::compile`]) allocates
//! and belongs to the control path: a change invalidates the automaton and
//! [`Spd::compile`] (or, failing that, the next lookup) rebuilds it whole.
//! The control plane compiles before it ships an SPD to the workers, whose
//! lookups then do not allocate.
//!
//! The same [`Selector`] type serves the inbound check of RFC 4301 §5.2
//! step 4: after decapsulation, the inner packet must match the SA's traffic
//! selectors ([`Selector::matches`]).

use core::fmt;
use core::ops::RangeInclusive;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use thiserror::Error;

use super::classifier::Classifier;
use super::flow_cache::SpdCache;

/// An IPv4 or IPv6 prefix: an address whose bits past `len` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why an [`IpPrefix`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The address part does not parse.
    #[error("invalid address {0:?}")]
    BadAddress(String),
    /// The length is not a number or exceeds 32 (IPv4) / 128 (IPv6).
    #[error("invalid prefix length {0:?}")]
    BadLength(String),
    /// Bits past the prefix length are set, e.g. `10.0.0.1/24`.
    #[error("address has bits set past the prefix length (did you mean {0}?)")]
    HostBitsSet(IpPrefix),
}

impl IpPrefix {
    /// `addr/len`; refuses a length past the address width and set host
    /// bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let width = family_width(&addr);
        if len > width {
            return Err(PrefixError::BadLength(len.to_string()));
        }
        let truncated = Self::truncating(addr, len);
        if truncated.addr != addr {
            return Err(PrefixError::HostBitsSet(truncated));
        }
        Ok(truncated)
    }

    /// `addr/len` with the host bits cleared; `len` is capped at the
    /// address width.
    pub fn truncating(addr: IpAddr, len: u8) -> Self {
        let len = len.min(family_width(&addr));
        let bits = addr_bits(&addr) & prefix_mask(len, family_width(&addr));
        Self {
            addr: bits_addr(bits, addr.is_ipv4()),
            len,
        }
    }

    /// A single address (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        Self {
            len: family_width(&addr),
            addr,
        }
    }

    /// `0.0.0.0/0`.
    pub const ANY_V4: Self = Self {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        len: 0,
    };

    /// `::/0`.
    pub const ANY_V6: Self = Self {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        len: 0,
    };

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this prefix is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `addr` lies in this prefix. Always false across families.
    #[inline]
    pub fn contains(&self, addr: &IpAddr) -> bool {
        if self.addr.is_ipv4() != addr.is_ipv4() {
            return false;
        }
        let mask = prefix_mask(self.len, family_width(addr));
        addr_bits(addr) & mask == addr_bits(&self.addr)
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    /// `"10.0.0.0/24"`, `"2001:db8::/32"`, or a bare address (a host
    /// prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_s, len_s) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_s
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_s.to_owned()))?;
        match len_s {
            None => Ok(Self::host(addr)),
            Some(l) => {
                let len: u8 = l
                    .parse()
                    .map_err(|_| PrefixError::BadLength(l.to_owned()))?;
                Self::new(addr, len)
            }
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn family_width(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The address as an integer (IPv4 in the low 32 bits).
#[inline]
fn addr_bits(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn bits_addr(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// The top `len` bits of a `width`-bit address.
#[inline]
fn prefix_mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - u32::from(width))
    }
}

/// A packet's 5-tuple, as the SPD sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Next-layer protocol (IPv4 protocol / IPv6 last next header).
    pub proto: u8,
    /// Source port; 0 unless [`FlowKey::proto_has_ports`].
    pub sport: u16,
    /// Destination port; 0 unless [`FlowKey::proto_has_ports`].
    pub dport: u16,
}

impl FlowKey {
    /// TCP, UDP and SCTP carry ports; for every other protocol the key's
    /// ports are 0.
    pub const fn proto_has_ports(proto: u8) -> bool {
        matches!(proto, 6 | 17 | 132)
    }
}

/// Traffic selector (RFC 4301 §4.4.1.1): which packets a policy or SA
/// covers. The port ranges match the key's ports, which are 0 for protocols
/// without ports; `0..=65535` matches any.
///
/// Not implemented: ICMP type/code selectors, the OPAQUE value, and
/// selector lists within one entry (use several policies instead).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Source prefix.
    pub src: IpPrefix,
    /// Destination prefix, same family as `src`.
    pub dst: IpPrefix,
    /// Next-layer protocol; `None` for ANY.
    pub protocol: Option<u8>,
    /// Source ports, inclusive.
    pub src_ports: RangeInclusive<u16>,
    /// Destination ports, inclusive.
    pub dst_ports: RangeInclusive<u16>,
}

/// Why a [`Selector`] or [`Policy`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// `src` and `dst` are of different address families.
    #[error("selector source {src} and destination {dst} are of different address families")]
    MixedFamilies {
        /// The source prefix.
        src: IpPrefix,
        /// The destination prefix.
        dst: IpPrefix,
    },
    /// A port range whose start is past its end.
    #[error("empty {which} port range {start}..={end}")]
    EmptyPortRange {
        /// `"source"` or `"destination"`.
        which: &'static str,
        /// Range start.
        start: u16,
        /// Range end.
        end: u16,
    },
    /// The SPD has handed out 2^32 policy ids; rebuild it.
    #[error("policy ids exhausted")]
    IdsExhausted,
}

impl Selector {
    /// All traffic from `src` to `dst`: any protocol, any ports.
    pub fn new(src: IpPrefix, dst: IpPrefix) -> Self {
        Self {
            src,
            dst,
            protocol: None,
            src_ports: 0..=u16::MAX,
            dst_ports: 0..=u16::MAX,
        }
    }

    /// Restrict to one next-layer protocol.
    pub fn with_protocol(mut self, proto: u8) -> Self {
        self.protocol = Some(proto);
        self
    }

    /// Restrict the source ports.
    pub fn with_src_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.src_ports = ports;
        self
    }

    /// Restrict the destination ports.
    pub fn with_dst_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.dst_ports = ports;
        self
    }

    /// Whether `src`/`dst` are IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.src.is_ipv4()
    }

    /// Refuse mixed families and empty port ranges.
    pub fn validate(&self) -> Result<(), SelectorError> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(SelectorError::MixedFamilies {
                src: self.src,
                dst: self.dst,
            });
        }
        for (which, r) in [
            ("source", &self.src_ports),
            ("destination", &self.dst_ports),
        ] {
            if r.start() > r.end() {
                return Err(SelectorError::EmptyPortRange {
                    which,
                    start: *r.start(),
                    end: *r.end(),
                });
            }
        }
        Ok(())
    }

    /// Whether the packet matches every field.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.src.contains(&key.src)
            && self.dst.contains(&key.dst)
            && (self.protocol.is_none() || self.protocol == Some(key.proto))
            && self.src_ports.contains(&key.sport)
            && self.dst_ports.contains(&key.dport)
    }
}

/// Which SA (or SA bundle / tunnel) a PROTECT policy uses: an index into the
/// worker's SA table, assigned by the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaRef(pub u32);

/// What to do with a matching packet (RFC 4301 §4.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Apply IPsec with this SA.
    Protect(SaRef),
    /// Pass without IPsec.
    Bypass,
    /// Drop.
    Discard,
}

/// One SPD entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Which packets.
    pub selector: Selector,
    /// What to do with them.
    pub action: Action,
    /// Lower is tried first; ties go to the earlier insertion.
    pub priority: u32,
}

/// Handle of an inserted policy, for [`Spd::remove`]. Ids increase with
/// insertion order and are never reused by the same [`Spd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

/// A policy with its rank.
#[derive(Clone, Debug)]
struct Entry {
    /// `priority << 32 | insertion order`: lower wins.
    rank: u64,
    id: PolicyId,
    policy: Policy,
}

/// The security policy database of one direction.
///
/// Cloning is cheap for the compiled classifier (shared, immutable), so
/// shipping one SPD to several workers shares one automaton.
#[derive(Clone, Debug, Default)]
pub struct Spd {
    /// Sorted by rank: the classifier's rule `i` is `entries[i]`.
    entries: Vec<Entry>,
    next_order: u32,
    /// Built on the first lookup after a change, or by [`Spd::compile`].
    compiled: OnceLock<Arc<Compiled>>,
    /// A worker's flow cache travelling with the SPD: an empty one sized
    /// for it ([`Spd::with_flow_cache`], built on the control thread), or
    /// on the way back the one it replaced (freed on the control thread).
    flow_cache: ShippedCache,
}

/// The classifiers of an SPD.
#[derive(Debug)]
struct Compiled {
    /// Over every policy: rule `i` is `entries[i]`.
    main: Classifier,
    /// For keys whose ports are unknown, when some policy has specific
    /// ports (else `main` answers those too: see [`Spd::lookup_opaque`]).
    opaque: Option<OpaqueClassifier>,
}

/// The classifiers of [`Spd::lookup_opaque`] when some policy names ports:
/// one over the ANY-port policies, one over the PROTECT and DISCARD
/// policies with specific ports widened to ANY ports (the guards), each in
/// rank order. BYPASS policies with specific ports are in neither.
#[derive(Debug)]
struct OpaqueClassifier {
    any_port: Classifier,
    /// Per rule of `any_port`: its entry.
    any_port_entries: Vec<u32>,
    guards: Classifier,
    /// Per rule of `guards`: its entry.
    guard_entries: Vec<u32>,
}

/// What the SPD says about a packet whose ports are unknown
/// ([`Spd::lookup_opaque`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpaqueMatch<'a> {
    /// This policy, whose ports are ANY, decides.
    Policy(&'a Policy),
    /// No policy matches (RFC 4301 §5.1: discard).
    NoPolicy,
    /// A PROTECT or DISCARD policy with specific ports may cover the
    /// packet's flow, and the ANY-port policy that would decide (ranked
    /// after it) is a BYPASS, or there is none: the packet is dropped.
    PortSpecific,
}

/// Whether both port ranges of `s` are ANY.
pub(crate) fn any_ports(s: &Selector) -> bool {
    s.src_ports == (0..=u16::MAX) && s.dst_ports == (0..=u16::MAX)
}

/// An optional boxed [`SpdCache`] that is not cloned with its SPD (each
/// worker needs its own) and prints as its size.
#[derive(Default)]
struct ShippedCache(Option<Box<SpdCache>>);

impl Clone for ShippedCache {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for ShippedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "{} entries", c.capacity()),
            None => f.write_str("none"),
        }
    }
}

impl Spd {
    /// An empty SPD (every lookup misses: RFC 4301 §5.1 says discard).
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from policies in order, and compile.
    pub fn from_policies(
        policies: impl IntoIterator<Item = Policy>,
    ) -> Result<Self, SelectorError> {
        let mut spd = Self::new();
        for p in policies {
            spd.insert(p)?;
        }
        spd.compile();
        Ok(spd)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct (family, source prefix length, destination prefix
    /// length) tuples among the policies. The classifier's cost does not
    /// depend on it; it describes the policy set (a tuple space search would
    /// probe once per tuple). Control path.
    pub fn tuple_count(&self) -> usize {
        let mut t: Vec<(bool, u8, u8)> = self
            .entries
            .iter()
            .map(|e| {
                let s = &e.policy.selector;
                (s.is_ipv4(), s.src.len, s.dst.len)
            })
            .collect();
        t.sort_unstable();
        t.dedup();
        t.len()
    }

    /// Add a policy after all existing ones of the same priority.
    /// Control path: allocates; the classifier is rebuilt by the next
    /// [`compile`](Self::compile) or lookup.
    pub fn insert(&mut self, policy: Policy) -> Result<PolicyId, SelectorError> {
        policy.selector.validate()?;
        let order = self.next_order;
        self.next_order = order.checked_add(1).ok_or(SelectorError::IdsExhausted)?;
        let id = PolicyId(order);
        let rank = u64::from(policy.priority) << 32 | u64::from(order);
        let at = self.entries.partition_point(|e| e.rank < rank);
        self.entries.insert(at, Entry { rank, id, policy });
        self.compiled = OnceLock::new();
        Ok(id)
    }

    /// Remove a policy. Control path.
    pub fn remove(&mut self, id: PolicyId) -> Option<Policy> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        self.compiled = OnceLock::new();
        Some(self.entries.remove(at).policy)
    }

    /// The policy with this id.
    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.entries.iter().find(|e| e.id == id).map(|e| &e.policy)
    }

    /// All policies with their ids, in rank order (lookup order).
    pub fn iter(&self) -> impl Iterator<Item = (PolicyId, &Policy)> {
        self.entries.iter().map(|e| (e.id, &e.policy))
    }

    /// Builds the classifier now if a change left it stale. The control
    /// path calls this before shipping an SPD to workers, so that no worker
    /// builds it on its first packet. Idempotent.
    pub fn compile(&self) -> &Classifier {
        &self.compiled().main
    }

    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            let main = Classifier::build(self.entries.iter().map(|e| &e.policy.selector));
            let opaque = self
                .entries
                .iter()
                .any(|e| !any_ports(&e.policy.selector))
                .then(|| {
                    let (mut any_port, mut any_port_entries) = (Vec::new(), Vec::new());
                    let (mut guards, mut guard_entries) = (Vec::new(), Vec::new());
                    for (i, e) in self.entries.iter().enumerate() {
                        let s = &e.policy.selector;
                        if any_ports(s) {
                            any_port.push(s);
                            any_port_entries.push(i as u32);
                        } else if e.policy.action != Action::Bypass {
                            guards.push(
                                s.clone()
                                    .with_src_ports(0..=u16::MAX)
                                    .with_dst_ports(0..=u16::MAX),
                            );
                            guard_entries.push(i as u32);
                        }
                    }
                    OpaqueClassifier {
                        any_port: Classifier::build(any_port),
                        any_port_entries,
                        guards: Classifier::build(&guards),
                        guard_entries,
                    }
                });
            Arc::new(Compiled { main, opaque })
        })
    }

    /// This SPD with an empty flow cache of the size a worker needs for it
    /// ([`SpdCache::slots_for`]), allocated and zeroed here, on the
    /// control thread, rather than on the worker between two bursts (a
    /// 12 MB cache for 100,000 policies took the worker 5 ms). Ship one
    /// per worker: clones do not carry it.
    pub fn with_flow_cache(mut self) -> Self {
        self.flow_cache = ShippedCache(Some(Box::new(SpdCache::new(SpdCache::slots_for(
            self.len(),
        )))));
        self
    }

    /// The flow cache this SPD carries, if any.
    pub fn take_flow_cache(&mut self) -> Option<Box<SpdCache>> {
        self.flow_cache.0.take()
    }

    /// Gives this SPD a flow cache to carry (the one it replaced in a
    /// worker, to be freed with it).
    pub fn put_flow_cache(&mut self, cache: Box<SpdCache>) {
        self.flow_cache = ShippedCache(Some(cache));
    }

    /// Whether the classifier is built (lookups will not allocate).
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The first policy (lowest priority, then earliest inserted) whose
    /// selector matches the packet. Does not allocate once compiled (see
    /// [`compile`](Self::compile)).
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&Policy> {
        self.lookup_entry(key).map(|e| &e.policy)
    }

    /// [`lookup`](Self::lookup), also returning the policy's id (e.g. to
    /// index per-policy counters).
    #[inline]
    pub fn lookup_with_id(&self, key: &FlowKey) -> Option<(PolicyId, &Policy)> {
        self.lookup_entry(key).map(|e| (e.id, &e.policy))
    }

    /// The decision for a packet whose ports are unknown (a
    /// [`PacketKey`](super::PacketKey) that is `opaque`): `key`'s ports
    /// are ignored. Does not allocate once compiled.
    ///
    /// RFC 4301 §7.1: a non-initial fragment is matched "only against SPD
    /// entries with ANY port selectors" (an OPAQUE port matches ANY only,
    /// §4.4.1.1), so the first ANY-port policy matching its addresses and
    /// protocol decides, and a BYPASS policy with specific ports never
    /// passes one. But a PROTECT or DISCARD policy with specific ports
    /// ranked before that policy may be the one the whole datagram falls
    /// under: then the packet must not be bypassed (a broader BYPASS would
    /// carry a fragment of a protected flow in clear). It is
    /// [`OpaqueMatch::PortSpecific`], dropped, if the deciding policy is a
    /// BYPASS or there is none; a PROTECT or DISCARD decides as usual
    /// (sealed, the fragment shows nothing on the wire).
    ///
    /// Reassembling on the protected side first (so that every packet has
    /// its ports) would decide such fragments exactly, at the price of
    /// per-datagram state that any LAN host can fill; RFC 4301 §7.3 makes
    /// that a local choice. Dropping costs only flows that are fragmented
    /// and fall under a port-specific PROTECT or DISCARD policy with a
    /// broader BYPASS behind it.
    pub fn lookup_opaque(&self, key: &FlowKey) -> OpaqueMatch<'_> {
        let c = self.compiled();
        let Some(o) = &c.opaque else {
            // Every policy has ANY ports: the key's ports do not matter.
            return match self.lookup_entry(key) {
                Some(e) => OpaqueMatch::Policy(&e.policy),
                None => OpaqueMatch::NoPolicy,
            };
        };
        let rule = |cl: &Classifier, entries: &[u32]| {
            cl.classify(key)
                .and_then(|r| entries.get(r))
                .map(|&i| i as usize)
        };
        let decider = rule(&o.any_port, &o.any_port_entries);
        let guard = rule(&o.guards, &o.guard_entries);
        match decider.and_then(|i| self.entries.get(i).map(|e| (i, &e.policy))) {
            Some((i, p)) if p.action != Action::Bypass || guard.is_none_or(|g| g > i) => {
                OpaqueMatch::Policy(p)
            }
            _ if guard.is_some() => OpaqueMatch::PortSpecific,
            _ => OpaqueMatch::NoPolicy,
        }
    }

    #[inline]
    fn lookup_entry(&self, key: &FlowKey) -> Option<&Entry> {
        self.compile()
            .classify(key)
            .and_then(|i| self.entries.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn key(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport,
            dport,
        }
    }

    fn policy(sel: Selector, action: Action, priority: u32) -> Policy {
        Policy {
            selector: sel,
            action,
            priority,
        }
    }

    #[test]
    fn prefix_parse_and_contains() {
        let net = p("10.0.0.0/24");
        assert_eq!(net.prefix_len(), 24);
        assert!(net.contains(&"10.0.0.255".parse().unwrap()));
        assert!(!net.contains(&"10.0.1.0".parse().unwrap()));
        assert!(!net.contains(&"::a00:1".parse().unwrap()));
        assert_eq!(net.to_string(), "10.0.0.0/24");

        assert_eq!(p("192.0.2.7"), IpPrefix::host("192.0.2.7".parse().unwrap()));
        assert_eq!(p("192.0.2.7").prefix_len(), 32);
        assert!(p("0.0.0.0/0").contains(&"255.255.255.255".parse().unwrap()));
        assert_eq!(p("0.0.0.0/0"), IpPrefix::ANY_V4);
        assert_eq!(p("::/0"), IpPrefix::ANY_V6);

        let v6 = p("2001:db8::/32");
        assert!(v6.contains(&"2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains(&"2001:db9::1".parse().unwrap()));
        assert!(p("2001:db8::1/128").contains(&"2001:db8::1".parse().unwrap()));
        assert!(p("8000::/1").contains(&"ffff::".parse().unwrap()));
        assert!(!p("8000::/1").contains(&"7fff::".parse().unwrap()));

        assert_eq!(
            "10.0.0.1/24".parse::<IpPrefix>(),
            Err(PrefixError::HostBitsSet(p("10.0.0.0/24")))
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<IpPrefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<IpPrefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<IpPrefix>(),
            Err(PrefixError::BadAddress(_))
        ));
        assert!(matches!(
            "::/129".parse::<IpPrefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert_eq!(
            IpPrefix::truncating("10.1.2.3".parse().unwrap(), 16),
            p("10.1.0.0/16")
        );
    }

    #[test]
    fn selector_matches_fields() {
        let s = Selector::new(p("10.0.0.0/8"), p("192.168.1.0/24"))
            .with_protocol(6)
            .with_src_ports(1024..=65535)
            .with_dst_ports(443..=443);
        assert!(s.matches(&key("10.1.2.3", "192.168.1.9", 6, 5000, 443)));
        assert!(!s.matches(&key("10.1.2.3", "192.168.1.9", 17, 5000, 443)));
        assert!(!s.matches(&key("10.1.2.3", "192.168.1.9", 6, 80, 443)));
        assert!(!s.matches(&key("10.1.2.3", "192.168.1.9", 6, 5000, 444)));
        assert!(!s.matches(&key("11.1.2.3", "192.168.1.9", 6, 5000, 443)));
        assert!(!s.matches(&key("10.1.2.3", "192.168.2.9", 6, 5000, 443)));
        assert!(s.validate().is_ok());

        let mixed = Selector::new(p("10.0.0.0/8"), p("::/0"));
        assert!(matches!(
            mixed.validate(),
            Err(SelectorError::MixedFamilies { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let empty = Selector::new(p("10.0.0.0/8"), p("10.0.0.0/8")).with_dst_ports(10..=9);
        assert_eq!(
            empty.validate(),
            Err(SelectorError::EmptyPortRange {
                which: "destination",
                start: 10,
                end: 9
            })
        );
        assert!(FlowKey::proto_has_ports(132));
        assert!(!FlowKey::proto_has_ports(1));
    }

    #[test]
    fn empty_spd_misses() {
        let spd = Spd::new();
        assert!(spd.is_empty());
        assert_eq!(spd.lookup(&key("10.0.0.1", "10.0.0.2", 6, 1, 2)), None);
        assert_eq!(spd.lookup(&key("::1", "::2", 6, 1, 2)), None);
        assert_eq!(spd.tuple_count(), 0);
    }

    #[test]
    fn priorities_overlaps_and_ties() {
        let mut spd = Spd::new();
        let any = Selector::new(IpPrefix::ANY_V4, IpPrefix::ANY_V4);
        let site = Selector::new(p("10.1.0.0/16"), p("10.2.0.0/16"));
        let web = site.clone().with_protocol(6).with_dst_ports(80..=443);
        let d = spd
            .insert(policy(any.clone(), Action::Discard, 100))
            .unwrap();
        let prot = spd
            .insert(policy(site.clone(), Action::Protect(SaRef(7)), 50))
            .unwrap();
        let byp = spd.insert(policy(web, Action::Bypass, 10)).unwrap();
        // Same priority as `prot`, inserted later: loses the tie.
        let tie = spd
            .insert(policy(site, Action::Protect(SaRef(8)), 50))
            .unwrap();
        assert_eq!(spd.len(), 4);

        let k_web = key("10.1.1.1", "10.2.2.2", 6, 40000, 443);
        let k_ssh = key("10.1.1.1", "10.2.2.2", 6, 40000, 22);
        let k_out = key("10.9.1.1", "10.2.2.2", 6, 40000, 443);
        assert_eq!(spd.lookup_with_id(&k_web).map(|x| x.0), Some(byp));
        assert_eq!(
            spd.lookup(&k_ssh).map(|x| x.action),
            Some(Action::Protect(SaRef(7)))
        );
        assert_eq!(spd.lookup_with_id(&k_out).map(|x| x.0), Some(d));
        // IPv6 traffic is not covered by IPv4 policies.
        assert_eq!(spd.lookup(&key("::1", "::2", 6, 1, 443)), None);
        // A mixed-family key matches nothing.
        assert_eq!(spd.lookup(&key("10.1.1.1", "::2", 6, 1, 443)), None);

        // Removing the tie winner promotes the later one.
        assert_eq!(spd.remove(prot).map(|p| p.priority), Some(50));
        assert_eq!(spd.lookup_with_id(&k_ssh).map(|x| x.0), Some(tie));
        assert_eq!(spd.remove(prot), None);
        assert_eq!(spd.remove(byp).map(|p| p.action), Some(Action::Bypass));
        assert_eq!(spd.lookup_with_id(&k_web).map(|x| x.0), Some(tie));
        assert!(spd.get(d).is_some());
        assert_eq!(spd.iter().count(), 2);
        assert_eq!(spd.len(), 2);
    }

    #[test]
    fn port_ranges_and_protocol_less_packets() {
        let base = Selector::new(p("0.0.0.0/0"), p("0.0.0.0/0"));
        let spd = Spd::from_policies([
            policy(
                base.clone().with_protocol(17).with_dst_ports(500..=500),
                Action::Bypass,
                1,
            ),
            policy(
                base.clone().with_protocol(17).with_dst_ports(4500..=4500),
                Action::Bypass,
                1,
            ),
            policy(
                base.clone().with_dst_ports(1..=1023),
                Action::Protect(SaRef(1)),
                2,
            ),
            policy(base, Action::Discard, 3),
        ])
        .unwrap();
        let act = |k: FlowKey| spd.lookup(&k).map(|p| p.action);
        assert_eq!(
            act(key("1.1.1.1", "2.2.2.2", 17, 500, 500)),
            Some(Action::Bypass)
        );
        assert_eq!(
            act(key("1.1.1.1", "2.2.2.2", 17, 9, 4500)),
            Some(Action::Bypass)
        );
        assert_eq!(
            act(key("1.1.1.1", "2.2.2.2", 6, 9, 500)),
            Some(Action::Protect(SaRef(1)))
        );
        assert_eq!(
            act(key("1.1.1.1", "2.2.2.2", 6, 9, 1024)),
            Some(Action::Discard)
        );
        // ICMP: ports are 0, outside 1..=1023.
        assert_eq!(
            act(key("1.1.1.1", "2.2.2.2", 1, 0, 0)),
            Some(Action::Discard)
        );
    }

    #[test]
    fn ipv6_policies() {
        let spd = Spd::from_policies([
            policy(
                Selector::new(p("2001:db8:1::/48"), p("2001:db8:2::/48")),
                Action::Protect(SaRef(3)),
                5,
            ),
            policy(
                Selector::new(p("2001:db8:1::5/128"), p("::/0")),
                Action::Bypass,
                1,
            ),
            policy(
                Selector::new(p("10.0.0.0/8"), p("10.0.0.0/8")),
                Action::Discard,
                0,
            ),
        ])
        .unwrap();
        let act = |k: FlowKey| spd.lookup(&k).map(|p| p.action);
        assert_eq!(
            act(key("2001:db8:1::1", "2001:db8:2::1", 58, 0, 0)),
            Some(Action::Protect(SaRef(3)))
        );
        assert_eq!(
            act(key("2001:db8:1::5", "2001:db8:2::1", 58, 0, 0)),
            Some(Action::Bypass)
        );
        assert_eq!(act(key("2001:db8:3::1", "2001:db8:2::1", 58, 0, 0)), None);
        assert_eq!(spd.tuple_count(), 3);
    }

    #[test]
    fn many_policies_one_tuple() {
        // 10 000 /24-to-/24 policies share one tuple: one probe per lookup.
        let mut spd = Spd::new();
        for i in 0..10_000u32 {
            let src = IpPrefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i << 8)), 24).unwrap();
            let dst = IpPrefix::new(IpAddr::V4(Ipv4Addr::from(0xac00_0000 | i << 8)), 24).unwrap();
            spd.insert(policy(
                Selector::new(src, dst),
                Action::Protect(SaRef(i)),
                10,
            ))
            .unwrap();
        }
        assert_eq!(spd.tuple_count(), 1);
        for i in [0u32, 1, 4999, 9999] {
            let k = FlowKey {
                src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i << 8 | 7)),
                dst: IpAddr::V4(Ipv4Addr::from(0xac00_0000 | i << 8 | 9)),
                proto: 17,
                sport: 1,
                dport: 2,
            };
            assert_eq!(
                spd.lookup(&k).map(|p| p.action),
                Some(Action::Protect(SaRef(i)))
            );
        }
    }

    /// Small address space so that random rules and keys overlap often.
    fn prefix_strategy(v6: bool) -> impl Strategy<Value = IpPrefix> {
        (
            any::<u8>(),
            any::<u8>(),
            prop::sample::select(vec![0u8, 4, 8, 15, 16, 24, 32]),
        )
            .prop_map(move |(a, b, len)| {
                let addr = if v6 {
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        u16::from(a & 3),
                        u16::from(b & 7),
                        0,
                        0,
                        0,
                        1,
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, a & 3, b & 7, 1))
                };
                // IPv6 lengths are shifted into the varying part.
                let len = if v6 {
                    len.saturating_mul(2).min(128) + 32
                } else {
                    len
                };
                IpPrefix::truncating(addr, len)
            })
    }

    fn ports_strategy() -> impl Strategy<Value = RangeInclusive<u16>> {
        prop_oneof![
            Just(0..=u16::MAX),
            Just(0..=0),
            (0u16..8, 0u16..8).prop_map(|(a, b)| a.min(b)..=a.max(b)),
        ]
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        (
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![1u8, 6, 17])),
            ports_strategy(),
            ports_strategy(),
            0u32..4,
            0u32..3,
        )
            .prop_flat_map(|(v6, proto, sp, dp, prio, act)| {
                (prefix_strategy(v6), prefix_strategy(v6)).prop_map(move |(src, dst)| Policy {
                    selector: Selector {
                        src,
                        dst,
                        protocol: proto,
                        src_ports: sp.clone(),
                        dst_ports: dp.clone(),
                    },
                    action: match act {
                        0 => Action::Bypass,
                        1 => Action::Discard,
                        _ => Action::Protect(SaRef(prio)),
                    },
                    priority: prio,
                })
            })
    }

    fn key_strategy() -> impl Strategy<Value = FlowKey> {
        (
            any::<bool>(),
            any::<[u8; 4]>(),
            prop::sample::select(vec![1u8, 6, 17, 50]),
            0u16..9,
            0u16..9,
        )
            .prop_map(|(v6, [a, b, c, d], proto, sport, dport)| {
                let (src, dst) = if v6 {
                    (
                        IpAddr::V6(Ipv6Addr::new(
                            0x2001,
                            0xdb8,
                            u16::from(a & 3),
                            u16::from(b & 7),
                            0,
                            0,
                            0,
                            1,
                        )),
                        IpAddr::V6(Ipv6Addr::new(
                            0x2001,
                            0xdb8,
                            u16::from(c & 3),
                            u16::from(d & 7),
                            0,
                            0,
                            0,
                            2,
                        )),
                    )
                } else {
                    (
                        IpAddr::V4(Ipv4Addr::new(10, a & 3, b & 7, 1)),
                        IpAddr::V4(Ipv4Addr::new(10, c & 3, d & 7, 2)),
                    )
                };
                let (sport, dport) = if FlowKey::proto_has_ports(proto) {
                    (sport, dport)
                } else {
                    (0, 0)
                };
                FlowKey {
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                }
            })
    }

    /// Linear reference: the first of the lowest priority among matches.
    fn linear(rules: &[(PolicyId, Policy)], key: &FlowKey) -> Option<PolicyId> {
        rules
            .iter()
            .filter(|(_, p)| p.selector.matches(key))
            .min_by_key(|(id, p)| (p.priority, *id))
            .map(|(id, _)| *id)
    }

    /// Linear reference of [`Spd::lookup_opaque`]: in rank order, the
    /// first ANY-port policy that matches decides, unless it is a BYPASS
    /// and a port-specific PROTECT or DISCARD that could match came first.
    fn linear_opaque<'a>(rules: &'a [(PolicyId, Policy)], key: &FlowKey) -> OpaqueMatch<'a> {
        let mut sorted: Vec<&(PolicyId, Policy)> = rules.iter().collect();
        sorted.sort_by_key(|(id, p)| (p.priority, *id));
        let mut guarded = false;
        for (_, p) in sorted {
            let wide = p
                .selector
                .clone()
                .with_src_ports(0..=u16::MAX)
                .with_dst_ports(0..=u16::MAX);
            if !wide.matches(key) {
                continue;
            }
            if any_ports(&p.selector) {
                if guarded && p.action == Action::Bypass {
                    return OpaqueMatch::PortSpecific;
                }
                return OpaqueMatch::Policy(p);
            }
            guarded |= p.action != Action::Bypass;
        }
        if guarded {
            OpaqueMatch::PortSpecific
        } else {
            OpaqueMatch::NoPolicy
        }
    }

    #[test]
    fn opaque_ports_match_any_port_policies_only() {
        let site = Selector::new(p("10.1.0.0/16"), p("10.2.0.0/16"));
        let dns = site.clone().with_protocol(17).with_dst_ports(53..=53);
        let web = site.clone().with_protocol(6).with_dst_ports(443..=443);
        let other = Selector::new(p("10.1.0.0/16"), p("10.3.0.0/16"));
        let spd = Spd::from_policies([
            policy(dns, Action::Bypass, 1),
            policy(web, Action::Protect(SaRef(1)), 2),
            policy(other, Action::Protect(SaRef(2)), 3),
            policy(site, Action::Bypass, 4),
        ])
        .unwrap();
        let action = |k: FlowKey| match spd.lookup_opaque(&k) {
            OpaqueMatch::Policy(p) => Ok(p.action),
            m => Err(m),
        };
        // UDP: the port-specific BYPASS is skipped, the broad one decides.
        assert_eq!(
            action(key("10.1.0.9", "10.2.0.9", 17, 0, 0)),
            Ok(Action::Bypass)
        );
        // TCP might be the protected web flow: never bypassed.
        assert_eq!(
            action(key("10.1.0.9", "10.2.0.9", 6, 0, 0)),
            Err(OpaqueMatch::PortSpecific)
        );
        assert_eq!(
            action(key("10.1.0.9", "10.3.0.9", 6, 0, 0)),
            Ok(Action::Protect(SaRef(2)))
        );
        assert_eq!(
            action(key("10.9.0.9", "10.2.0.9", 6, 0, 0)),
            Err(OpaqueMatch::NoPolicy)
        );
        // A port-specific DISCARD before an ANY-port PROTECT: protected.
        let telnet = Selector::new(p("10.1.0.0/16"), p("10.2.0.0/16"))
            .with_protocol(6)
            .with_dst_ports(23..=23);
        let spd = Spd::from_policies([
            policy(telnet, Action::Discard, 1),
            policy(
                Selector::new(p("10.1.0.0/16"), p("10.2.0.0/16")),
                Action::Protect(SaRef(4)),
                2,
            ),
        ])
        .unwrap();
        assert!(matches!(
            spd.lookup_opaque(&key("10.1.0.9", "10.2.0.9", 6, 0, 0)),
            OpaqueMatch::Policy(p) if p.action == Action::Protect(SaRef(4))
        ));
        assert_eq!(
            spd.lookup_opaque(&key("10.1.0.9", "10.3.0.9", 6, 0, 0)),
            OpaqueMatch::NoPolicy
        );
        // Without port-specific policies the main classifier answers.
        let plain = Spd::from_policies([policy(
            Selector::new(p("10.1.0.0/16"), p("10.2.0.0/16")),
            Action::Protect(SaRef(3)),
            1,
        )])
        .unwrap();
        assert!(matches!(
            plain.lookup_opaque(&key("10.1.0.9", "10.2.0.9", 6, 0, 0)),
            OpaqueMatch::Policy(p) if p.action == Action::Protect(SaRef(3))
        ));
        assert_eq!(
            Spd::new().lookup_opaque(&key("10.1.0.9", "10.2.0.9", 6, 0, 0)),
            OpaqueMatch::NoPolicy
        );
    }

    proptest! {
        /// `lookup_opaque` answers what the linear reference does, and a
        /// packet it lets bypass matches a BYPASS policy with ANY ports
        /// that no PROTECT or DISCARD policy ranked before it could
        /// pre-empt, whatever the packet's real ports are.
        #[test]
        fn lookup_opaque_matches_linear_model(
            policies in prop::collection::vec(policy_strategy(), 0..60),
            keys in prop::collection::vec(key_strategy(), 1..60),
        ) {
            let spd = Spd::from_policies(policies.iter().cloned()).unwrap();
            let model: Vec<(PolicyId, Policy)> = spd.iter().map(|(id, p)| (id, p.clone())).collect();
            for k in &keys {
                let got = spd.lookup_opaque(k);
                prop_assert_eq!(got, linear_opaque(&model, k));
                if let OpaqueMatch::Policy(p) = got {
                    if p.action == Action::Bypass {
                        for port in [0u16, 1, 7, 53, u16::MAX] {
                            let real = FlowKey { sport: port, dport: port.wrapping_add(3), ..*k };
                            if FlowKey::proto_has_ports(k.proto) {
                                prop_assert_eq!(spd.lookup(&real).map(|p| p.action), Some(Action::Bypass));
                            }
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn lookup_matches_linear_model(
            policies in prop::collection::vec(policy_strategy(), 0..60),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            keys in prop::collection::vec(key_strategy(), 1..60),
        ) {
            let mut spd = Spd::new();
            let mut model = Vec::new();
            for p in policies {
                let id = spd.insert(p.clone()).unwrap();
                model.push((id, p));
            }
            for k in &keys {
                prop_assert_eq!(spd.lookup_with_id(k).map(|x| x.0), linear(&model, k));
            }
            for r in removals {
                if model.is_empty() {
                    break;
                }
                let (id, p) = model.remove(r.index(model.len()));
                prop_assert_eq!(spd.remove(id), Some(p));
            }
            prop_assert_eq!(spd.len(), model.len());
            for k in &keys {
                prop_assert_eq!(spd.lookup_with_id(k).map(|x| x.0), linear(&model, k));
            }
        }
    }
}
