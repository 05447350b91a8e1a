//! The forwarding table: longest-prefix match over IPv4 and IPv6 routes.
//!
//! Built on `prefix-trie` (a compressed binary trie): lookups walk at most
//! the prefix length in nodes and never allocate. Each worker holds its own
//! copy, replaced by the control thread's messages.

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
            IpNet::V4(p) => self.v4.insert(p, hop),
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
            IpNet::V4(p) => self.v4.remove(&p),
            IpNet::V6(p) => self.v6.remove(&p),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The most specific route covering `dst`.
    pub fn lookup(&self, dst: IpAddr) -> Option<(IpNet, NextHop)> {
        match dst {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(p, h)| (IpNet::V4(p), *h)),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(p, h)| (IpNet::V6(p), *h)),
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
            t.lookup(a.parse().unwrap())
                .map(|(p, h)| (p.to_string(), h))
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
}
