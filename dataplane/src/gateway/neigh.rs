//! The neighbour table: IPv4 ARP (RFC 826) and IPv6 neighbour discovery
//! (RFC 4861) results, per worker. Static entries from the configuration
//! win over learned ones. Learned entries reach every worker through the
//! control thread, so a reply received by one worker resolves packets
//! queued by another.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;

use crate::esp::inbound::SpiHasher;

/// Neighbour addresses are few and ours to learn (a packet cannot insert
/// one without an ARP/ND exchange we take part in), so a cheap multiplicative
/// hash replaces SipHash on this per-packet lookup.
type FastMap<V> = HashMap<IpAddr, V, BuildHasherDefault<SpiHasher>>;

/// One neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Link-layer address.
    pub mac: [u8; 6],
    /// Interface index it was learned on (or configured for).
    pub iface: u16,
    /// Configured, never replaced by learning.
    pub is_static: bool,
    /// When it was learned (ms, the caller's clock).
    pub updated_ms: u64,
}

/// Neighbour cache plus the bookkeeping for resolution requests.
#[derive(Debug, Default, Clone)]
pub struct NeighbourTable {
    entries: FastMap<Neighbour>,
    last_request_ms: FastMap<u64>,
    /// Bumped whenever an entry is added or changes, so that answers
    /// cached elsewhere (the node's per-SA egress) can tell they are stale.
    generation: u64,
}

impl NeighbourTable {
    /// Minimum interval between two resolution requests for one address.
    pub const REQUEST_INTERVAL_MS: u64 = 200;
    /// Most learned entries kept: anyone on a link can send ARP requests
    /// with made-up sender addresses, so learning is bounded.
    pub const MAX_LEARNED: usize = 4096;

    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a static entry.
    pub fn insert_static(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16) {
        self.generation += 1;
        self.entries.insert(
            ip,
            Neighbour {
                mac,
                iface,
                is_static: true,
                updated_ms: 0,
            },
        );
    }

    /// Records a learned address; returns true if it is new or changed.
    /// Static entries are kept.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], iface: u16, now_ms: u64) -> bool {
        let full = self.entries.len() >= Self::MAX_LEARNED;
        match self.entries.get_mut(&ip) {
            Some(e) if e.is_static => false,
            Some(e) => {
                let changed = e.mac != mac || e.iface != iface;
                if changed {
                    self.generation += 1;
                }
                e.mac = mac;
                e.iface = iface;
                e.updated_ms = now_ms;
                changed
            }
            None if full => false,
            None => {
                self.generation += 1;
                self.entries.insert(
                    ip,
                    Neighbour {
                        mac,
                        iface,
                        is_static: false,
                        updated_ms: now_ms,
                    },
                );
                self.last_request_ms.remove(&ip);
                true
            }
        }
    }

    /// Changes whenever an entry is added or its address changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The link-layer address of `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.entries.get(&ip).map(|e| e.mac)
    }

    /// Whether a resolution request for `ip` may be sent now (rate limit);
    /// records the request if so.
    pub fn should_request(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        match self.last_request_ms.get(&ip) {
            Some(&t) if now_ms.saturating_sub(t) < Self::REQUEST_INTERVAL_MS => false,
            None if self.last_request_ms.len() >= Self::MAX_LEARNED => {
                // Forget old request times rather than grow without bound.
                self.last_request_ms
                    .retain(|_, t| now_ms.saturating_sub(*t) < Self::REQUEST_INTERVAL_MS);
                self.last_request_ms.insert(ip, now_ms);
                true
            }
            _ => {
                self.last_request_ms.insert(ip, now_ms);
                true
            }
        }
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Neighbour)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_entries_win_and_requests_are_rate_limited() {
        let mut t = NeighbourTable::new();
        let a: IpAddr = "192.0.2.2".parse().unwrap();
        t.insert_static(a, [2; 6], 1);
        assert!(!t.learn(a, [9; 6], 1, 5));
        assert_eq!(t.lookup(a), Some([2; 6]));
        let b: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(t.should_request(b, 1000));
        assert!(!t.should_request(b, 1100));
        assert!(t.should_request(b, 1200));
        assert!(t.learn(b, [3; 6], 1, 1300));
        assert!(!t.learn(b, [3; 6], 1, 1400));
        assert!(t.learn(b, [4; 6], 1, 1500));
        assert_eq!(t.lookup(b), Some([4; 6]));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn learning_is_bounded() {
        let mut t = NeighbourTable::new();
        for i in 0..(NeighbourTable::MAX_LEARNED as u32 + 100) {
            t.learn(
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                [2; 6],
                0,
                1,
            );
        }
        assert_eq!(t.len(), NeighbourTable::MAX_LEARNED);
        // Static entries are still accepted.
        t.insert_static("192.0.2.9".parse().unwrap(), [9; 6], 1);
        assert_eq!(t.lookup("192.0.2.9".parse().unwrap()), Some([9; 6]));
    }
}
