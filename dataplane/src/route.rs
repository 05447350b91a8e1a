//! The forwarding table: longest-prefix match over IPv4 and IPv6 routes.
//!
//! The routes themselves live in `prefix-trie` maps (compressed binary
//! tries), which are easy to change but cost a walk of up to one node per
//! prefix bit: about 85 cycles per IPv4 lookup, a fifth of a 64-byte
//! packet's whole budget in the gateway (measured with `perf` on
//! `espresso-lab bench`). So for IPv4 [`RouteTable::compile`] also builds a
//! DIR-16-8-8 index (`Dir4`), the multibit layout of DPDK's `rte_lpm`
//! (which uses 24-8) and of Gupta, Lin and McKeown's "Routing lookups in
//! hardware at memory access speeds" (INFOCOM 1998): a 65,536-entry table
//! indexed by the first 16 bits, whose entries either hold the answer or
//! point at a 256-entry group for the next 8 bits, and once more for the
//! last 8. A lookup is one to three array reads, whatever the number of
//! routes. 16 rather than 24 bits for the first level keeps the table at
//! 256 KiB (it stays in L2) instead of 64 MiB.
//!
//! Changing the table ([`RouteTable::insert`], [`RouteTable::remove`])
//! marks the index stale; lookups on a stale table fall back to the trie,
//! so they are always correct, and [`RouteTable::compile`] (called by the
//! gateway's node whenever it takes a new table, on the control path)
//! brings the fast path back. Lookups never allocate. Each worker holds
//! its own copy, replaced by the control thread's messages.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Where a route sends packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// The gateway's interface index (the order of interfaces in the config).
    pub interface: u16,
    /// The next router, or `None` when the destination is on-link (then the
    /// packet's own destination is resolved to a MAC address).
    pub via: Option<IpAddr>,
}

impl NextHop {
    /// The address to resolve to a link-layer address for `dst`.
    pub fn neighbour(&self, dst: IpAddr) -> IpAddr {
        self.via.unwrap_or(dst)
    }
}

/// Longest-prefix-match routing table.
#[derive(Clone, Default)]
pub struct RouteTable {
    v4: PrefixMap<Ipv4Net, NextHop>,
    v6: PrefixMap<Ipv6Net, NextHop>,
    len: usize,
    /// The compiled IPv4 index, `None` while stale.
    v4_index: Option<Box<Dir4>>,
}

/// A DIR-16-8-8 index over IPv4 prefixes (see the module docs).
///
/// Every entry is a `u32`: 0 means no route, an entry with [`Dir4::GROUP`]
/// set points at a 256-entry group of the next level, and any other value
/// is one plus an index into `hops`.
#[derive(Clone)]
struct Dir4 {
    /// Indexed by the address's first 16 bits.
    l16: Box<[u32]>,
    /// Groups for bits 16..24, 256 entries each.
    l24: Vec<u32>,
    /// Groups for bits 24..32, 256 entries each.
    l32: Vec<u32>,
    hops: Vec<(Ipv4Net, NextHop)>,
}

impl Dir4 {
    const GROUP: u32 = 1 << 31;

    /// The index of every route in `map`.
    fn build(map: &PrefixMap<Ipv4Net, NextHop>) -> Self {
        let mut d = Dir4 {
            l16: vec![0u32; 1 << 16].into_boxed_slice(),
            l24: Vec::new(),
            l32: Vec::new(),
            hops: Vec::new(),
        };
        // Shorter prefixes first: each longer one then overwrites exactly
        // the addresses it covers, and a group created for a long prefix
        // starts out with the best shorter route of its range.
        let mut routes: Vec<(Ipv4Net, NextHop)> = map.iter().map(|(p, h)| (p, *h)).collect();
        routes.sort_by_key(|(p, _)| p.prefix_len());
        for (net, hop) in routes {
            d.hops.push((net, hop));
            let value = d.hops.len() as u32;
            let addr = u32::from(net.network());
            let len = u32::from(net.prefix_len());
            if len <= 16 {
                let first = (addr >> 16) as usize;
                let count = 1usize << (16 - len);
                d.l16[first..first + count].fill(value);
                continue;
            }
            let g24 = Self::group(&mut d.l16[(addr >> 16) as usize], &mut d.l24);
            let at24 = g24 * 256 + ((addr >> 8) & 0xff) as usize;
            if len <= 24 {
                let count = 1usize << (24 - len);
                d.l24[at24..at24 + count].fill(value);
                continue;
            }
            let g32 = Self::group(&mut d.l24[at24], &mut d.l32);
            let at32 = g32 * 256 + (addr & 0xff) as usize;
            let count = 1usize << (32 - len);
            d.l32[at32..at32 + count].fill(value);
        }
        d
    }

    /// The group `entry` points at, creating it (filled with the route the
    /// entry held) if it holds a route instead.
    fn group(entry: &mut u32, level: &mut Vec<u32>) -> usize {
        if *entry & Self::GROUP != 0 {
            return (*entry & !Self::GROUP) as usize;
        }
        let g = level.len() / 256;
        level.extend(std::iter::repeat_n(*entry, 256));
        *entry = Self::GROUP | g as u32;
        g
    }

    /// The most specific route covering `a`.
    #[inline]
    fn lookup(&self, a: u32) -> Option<&(Ipv4Net, NextHop)> {
        let mut e = self.l16[(a >> 16) as usize];
        if e & Self::GROUP != 0 {
            e = self.l24[(e & !Self::GROUP) as usize * 256 + ((a >> 8) & 0xff) as usize];
            if e & Self::GROUP != 0 {
                e = self.l32[(e & !Self::GROUP) as usize * 256 + (a & 0xff) as usize];
            }
        }
        // 0 (no route) wraps to usize::MAX, which `get` refuses.
        self.hops.get((e as usize).wrapping_sub(1))
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the route for `prefix` (host bits are cleared).
    pub fn insert(&mut self, prefix: IpNet, hop: NextHop) -> Option<NextHop> {
        let old = match prefix.trunc() {
            IpNet::V4(p) => {
                self.v4_index = None;
                self.v4.insert(p, hop)
            }
            IpNet::V6(p) => self.v6.insert(p, hop),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the route for exactly `prefix`.
    pub fn remove(&mut self, prefix: IpNet) -> Option<NextHop> {
        let old = match prefix.trunc() {
            IpNet::V4(p) => {
                self.v4_index = None;
                self.v4.remove(&p)
            }
            IpNet::V6(p) => self.v6.remove(&p),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Builds the IPv4 lookup index (control path: it allocates and takes
    /// time in proportion to the routes). Until the next change, IPv4
    /// lookups take one to three array reads.
    pub fn compile(&mut self) {
        if self.v4_index.is_none() {
            self.v4_index = Some(Box::new(Dir4::build(&self.v4)));
        }
    }

    /// Whether IPv4 lookups use the compiled index.
    pub fn is_compiled(&self) -> bool {
        self.v4_index.is_some()
    }

    /// The most specific route covering `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<(IpNet, NextHop)> {
        match dst {
            IpAddr::V4(a) => match &self.v4_index {
                Some(d) => d.lookup(u32::from(a)).map(|(p, h)| (IpNet::V4(*p), *h)),
                None => self
                    .v4
                    .get_lpm(&Ipv4Net::from(a))
                    .map(|(p, h)| (IpNet::V4(p), *h)),
            },
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(p, h)| (IpNet::V6(p), *h)),
        }
    }

    /// The next hop of the most specific route covering `dst`, by
    /// reference: the forwarding path's lookup. Returning the prefix and
    /// the hop by value (`lookup`) went through a stack slot the callee
    /// wrote field by field and the caller read back in wider words, a
    /// store-forwarding stall on every forwarded packet (`perf annotate`
    /// of the decrypting worker: half of `after_decap`'s samples).
    #[inline]
    pub fn next_hop(&self, dst: IpAddr) -> Option<&NextHop> {
        match dst {
            IpAddr::V4(a) => match &self.v4_index {
                Some(d) => d.lookup(u32::from(a)).map(|(_, h)| h),
                None => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, h)| h),
            },
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, h)| h),
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All routes, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, NextHop)> + '_ {
        self.v4
            .iter()
            .map(|(p, h)| (IpNet::V4(p), *h))
            .chain(self.v6.iter().map(|(p, h)| (IpNet::V6(p), *h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(interface: u16, via: Option<&str>) -> NextHop {
        NextHop {
            interface,
            via: via.map(|v| v.parse().unwrap()),
        }
    }

    #[test]
    fn longest_prefix_wins_for_both_families() {
        let mut t = RouteTable::new();
        t.insert("0.0.0.0/0".parse().unwrap(), hop(1, Some("192.0.2.1")));
        t.insert("10.0.0.0/8".parse().unwrap(), hop(0, Some("10.255.0.1")));
        t.insert("10.1.2.0/24".parse().unwrap(), hop(0, None));
        t.insert("2001:db8::/32".parse().unwrap(), hop(2, None));
        t.insert("::/0".parse().unwrap(), hop(1, Some("fe80::1")));
        let l = |a: &str| {
            let r = t
                .lookup(a.parse().unwrap())
                .map(|(p, h)| (p.to_string(), h));
            assert_eq!(t.next_hop(a.parse().unwrap()), r.as_ref().map(|r| &r.1));
            r
        };
        assert_eq!(l("10.1.2.3"), Some(("10.1.2.0/24".into(), hop(0, None))));
        assert_eq!(
            l("10.9.9.9"),
            Some(("10.0.0.0/8".into(), hop(0, Some("10.255.0.1"))))
        );
        assert_eq!(
            l("8.8.8.8"),
            Some(("0.0.0.0/0".into(), hop(1, Some("192.0.2.1"))))
        );
        assert_eq!(
            l("2001:db8::5"),
            Some(("2001:db8::/32".into(), hop(2, None)))
        );
        assert_eq!(l("2002::1"), Some(("::/0".into(), hop(1, Some("fe80::1")))));
        assert_eq!(t.len(), 5);
        let dst: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(t.lookup(dst).unwrap().1.neighbour(dst), dst);
    }

    #[test]
    fn insert_truncates_host_bits_and_remove_is_exact() {
        let mut t = RouteTable::new();
        assert!(t.lookup("10.0.0.1".parse().unwrap()).is_none());
        t.insert("10.0.0.77/24".parse().unwrap(), hop(0, None));
        assert_eq!(
            t.insert("10.0.0.0/24".parse().unwrap(), hop(3, None)),
            Some(hop(0, None))
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("10.0.0.0/25".parse().unwrap()), None);
        assert_eq!(t.remove("10.0.0.0/24".parse().unwrap()), Some(hop(3, None)));
        assert!(t.is_empty());
        assert!(t.lookup("10.0.0.1".parse().unwrap()).is_none());
    }

    /// Both lookup paths of `t` for `a`: the trie's and the index's.
    fn both(t: &RouteTable, a: &str) -> Option<(String, NextHop)> {
        let a: IpAddr = a.parse().unwrap();
        let mut c = t.clone();
        c.compile();
        assert!(c.is_compiled());
        let fast = c.lookup(a).map(|(p, h)| (p.to_string(), h));
        let slow = t.lookup(a).map(|(p, h)| (p.to_string(), h));
        assert_eq!(fast, slow, "index and trie disagree for {a}");
        // The forwarding path's lookup gives the same hop either way.
        let hop = fast.as_ref().map(|f| f.1);
        assert_eq!(c.next_hop(a).copied(), hop, "index, {a}");
        assert_eq!(t.next_hop(a).copied(), hop, "trie, {a}");
        fast
    }

    #[test]
    fn index_covers_every_level_and_its_edges() {
        let mut t = RouteTable::new();
        t.insert("10.0.0.0/8".parse().unwrap(), hop(0, None));
        t.insert("10.1.0.0/16".parse().unwrap(), hop(1, None));
        t.insert("10.1.2.0/23".parse().unwrap(), hop(2, None));
        t.insert("10.1.2.128/25".parse().unwrap(), hop(3, None));
        t.insert("10.1.2.200/32".parse().unwrap(), hop(4, None));
        t.insert("192.0.2.0/31".parse().unwrap(), hop(5, None));
        let at = |a| both(&t, a).map(|(p, _)| p);
        assert_eq!(at("9.255.255.255"), None);
        assert_eq!(at("10.0.0.0").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(at("10.255.255.255").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(at("10.1.0.0").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(at("10.1.1.255").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(at("10.1.2.0").as_deref(), Some("10.1.2.0/23"));
        assert_eq!(at("10.1.3.255").as_deref(), Some("10.1.2.0/23"));
        assert_eq!(at("10.1.4.0").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(at("10.1.2.127").as_deref(), Some("10.1.2.0/23"));
        assert_eq!(at("10.1.2.128").as_deref(), Some("10.1.2.128/25"));
        assert_eq!(at("10.1.2.199").as_deref(), Some("10.1.2.128/25"));
        assert_eq!(at("10.1.2.200").as_deref(), Some("10.1.2.200/32"));
        assert_eq!(at("10.1.2.201").as_deref(), Some("10.1.2.128/25"));
        assert_eq!(at("192.0.2.1").as_deref(), Some("192.0.2.0/31"));
        assert_eq!(at("192.0.2.2"), None);
        t.insert("0.0.0.0/0".parse().unwrap(), hop(9, None));
        let at = |a| both(&t, a).map(|(p, _)| p);
        assert_eq!(at("192.0.2.2").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(at("255.255.255.255").as_deref(), Some("0.0.0.0/0"));
    }

    #[test]
    fn a_change_makes_the_index_stale_and_lookups_stay_right() {
        let mut t = RouteTable::new();
        t.insert("10.0.0.0/8".parse().unwrap(), hop(0, None));
        t.compile();
        assert!(t.is_compiled());
        t.insert("10.1.0.0/16".parse().unwrap(), hop(1, None));
        assert!(!t.is_compiled());
        let a: IpAddr = "10.1.0.1".parse().unwrap();
        assert_eq!(t.lookup(a).unwrap().1, hop(1, None));
        t.compile();
        assert_eq!(t.lookup(a).unwrap().1, hop(1, None));
        t.remove("10.1.0.0/16".parse().unwrap());
        assert!(!t.is_compiled());
        assert_eq!(t.lookup(a).unwrap().1, hop(0, None));
        t.compile();
        assert_eq!(t.lookup(a).unwrap().1, hop(0, None));
    }

    proptest::proptest! {
        /// The index answers exactly as the trie for any set of prefixes
        /// and any address (addresses are drawn near the prefixes so that
        /// group edges are hit).
        #[test]
        fn index_equals_trie(
            routes in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 0..60),
            probes in proptest::collection::vec((0usize..64, proptest::prelude::any::<u32>(), 0u32..4), 1..200),
        ) {
            let mut t = RouteTable::new();
            for (i, (a, len)) in routes.iter().enumerate() {
                let net = Ipv4Net::new(std::net::Ipv4Addr::from(*a), *len).unwrap().trunc();
                t.insert(IpNet::V4(net), hop(i as u16, None));
            }
            let mut c = t.clone();
            c.compile();
            for (which, raw, mode) in probes {
                let a = match (routes.get(which), mode) {
                    // The network address, the last address and one past it.
                    (Some((base, len)), 0) => base & !(u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0)),
                    (Some((base, len)), 1) => base | u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0),
                    (Some((base, len)), 2) => (base | u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0)).wrapping_add(1),
                    _ => raw,
                };
                let a = IpAddr::V4(std::net::Ipv4Addr::from(a));
                proptest::prop_assert_eq!(c.lookup(a), t.lookup(a));
            }
        }
    }
}
