//! A per-worker cache of SPD decisions by 5-tuple.
//!
//! The SPD's tuple space search costs one hash probe per distinct pair of
//! prefix lengths in the policy set, so its cost grows with the variety of
//! the policies. Traffic, though, is made of flows: the first packet of a
//! flow pays for the search and the rest find the decision here in one
//! probe, whatever the number and shape of the policies (the idea of VPP's
//! IPsec SPD flow cache). Direct-mapped and fixed-size: no allocation after
//! construction, no lock (one writer, the worker); a colliding flow simply
//! replaces the entry. Replacing the SPD clears it.

use super::spd::{Action, FlowKey, Spd};

#[derive(Clone, Copy)]
struct Slot {
    key: FlowKey,
    action: Option<Action>,
    valid: bool,
}

/// Cached SPD decisions (including "no policy").
pub struct SpdCache {
    slots: Box<[Slot]>,
    mask: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the SPD.
    pub misses: u64,
}

impl std::fmt::Debug for SpdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdCache")
            .field("slots", &self.slots.len())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl Default for SpdCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SLOTS)
    }
}

impl SpdCache {
    /// Default size: 16,384 flows (about 0.8 MB per worker).
    pub const DEFAULT_SLOTS: usize = 1 << 14;

    /// A cache of `slots` entries (rounded up to a power of two).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        let empty = Slot {
            key: FlowKey {
                src: std::net::Ipv4Addr::UNSPECIFIED.into(),
                dst: std::net::Ipv4Addr::UNSPECIFIED.into(),
                proto: 0,
                sport: 0,
                dport: 0,
            },
            action: None,
            valid: false,
        };
        Self {
            slots: vec![empty; n].into_boxed_slice(),
            mask: n - 1,
            hits: 0,
            misses: 0,
        }
    }

    /// Forgets every decision (the SPD changed).
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.valid = false;
        }
    }

    /// The SPD's decision for `key`: from the cache, or from `spd` (then
    /// remembered). Must be cleared whenever `spd` changes.
    #[inline]
    pub fn lookup(&mut self, spd: &Spd, key: &FlowKey) -> Option<Action> {
        let i = (hash(key) as usize) & self.mask;
        let slot = &mut self.slots[i];
        if slot.valid && slot.key == *key {
            self.hits += 1;
            return slot.action;
        }
        self.misses += 1;
        let action = spd.lookup(key).map(|p| p.action);
        *slot = Slot {
            key: *key,
            action,
            valid: true,
        };
        action
    }
}

#[inline]
fn hash(k: &FlowKey) -> u64 {
    let addr = |a: &std::net::IpAddr| -> u64 {
        match a {
            std::net::IpAddr::V4(v) => u64::from(u32::from(*v)),
            std::net::IpAddr::V6(v) => {
                let x = u128::from(*v);
                (x as u64) ^ ((x >> 64) as u64)
            }
        }
    };
    let mut h = addr(&k.src).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= addr(&k.dst).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= (u64::from(k.sport) << 24 | u64::from(k.dport) << 8 | u64::from(k.proto))
        .wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::super::spd::{IpPrefix, Policy, SaRef, Selector};
    use super::*;
    use proptest::prelude::*;

    fn spd() -> Spd {
        let mut spd = Spd::new();
        for i in 0..200u32 {
            let l: IpPrefix = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
            let r: IpPrefix = format!("172.16.{}.0/{}", i % 256, 16 + i % 9)
                .parse()
                .unwrap_or(IpPrefix::ANY_V4);
            spd.insert(Policy {
                selector: Selector::new(l, r),
                action: if i % 3 == 0 {
                    Action::Bypass
                } else {
                    Action::Protect(SaRef(i))
                },
                priority: i % 7,
            })
            .unwrap();
        }
        spd
    }

    proptest! {
        /// Cached answers always equal the SPD's own, through collisions and
        /// repeats (a tiny cache forces both).
        #[test]
        fn cached_answers_equal_the_spd(keys in proptest::collection::vec((0u8..2, any::<u8>(), 0u8..3, any::<u8>(), any::<u16>()), 1..300)) {
            let spd = spd();
            let mut cache = SpdCache::new(8);
            for (a, b, c, d, port) in keys {
                let key = FlowKey {
                    src: std::net::Ipv4Addr::new(10, a, b, 1).into(),
                    dst: std::net::Ipv4Addr::new(172, 16, c, d).into(),
                    proto: 17,
                    sport: port,
                    dport: 53,
                };
                for _ in 0..2 {
                    prop_assert_eq!(cache.lookup(&spd, &key), spd.lookup(&key).map(|p| p.action));
                }
            }
            prop_assert!(cache.hits > 0);
        }
    }

    #[test]
    fn clear_forgets() {
        let spd = spd();
        let mut cache = SpdCache::new(64);
        let key = FlowKey {
            src: std::net::Ipv4Addr::new(10, 0, 5, 1).into(),
            dst: std::net::Ipv4Addr::new(172, 16, 5, 9).into(),
            proto: 6,
            sport: 1,
            dport: 2,
        };
        let first = cache.lookup(&spd, &key);
        assert_eq!(cache.lookup(&spd, &key), first);
        assert_eq!((cache.hits, cache.misses), (1, 1));
        cache.clear();
        assert_eq!(cache.lookup(&spd, &key), first);
        assert_eq!(cache.misses, 2);
    }
}
