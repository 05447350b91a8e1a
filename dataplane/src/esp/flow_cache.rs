//! A per-worker cache of SPD decisions by 5-tuple.
//!
//! Traffic is made of flows: the first packet of a flow pays for the
//! classifier ([`Spd::lookup`]) and the rest find the decision here in one
//! probe (the idea of VPP's IPsec SPD flow cache). Fixed-size: no allocation
//! after construction, no lock (one writer, the worker).
//!
//! Set-associative, [`WAYS`] ways per set. Each set keeps the 32-bit
//! signatures of its ways together (one cache line to scan) in front of the
//! entries; a miss fills a free way, or else replaces a way picked at
//! random. Random rather than in turn (or least recently used): when more
//! flows than the cache holds recur in a fixed order (a pcap replayed in a
//! loop, or steady round-robin over many tunnels), replacing in turn
//! evicts every flow just before it comes back and nothing ever hits
//! (0.5 % hits with 100,000 flows in 32,768 entries), while random
//! replacement keeps a share that falls with the overload (the fixed point
//! of h = (7/8)^((f - 1)(1 - h)) for f flows per 8-way set: about 0.4 at
//! 12 flows per set, 0.06 at 24, as with 100,000 flows); with fewer flows
//! than entries the policy does not matter. Traffic with that many flows
//! needs a larger cache (`SpdCache::new`), which is left to do. A
//! direct-mapped table of the same size loses a flow whenever two share a
//! slot (with 4096 flows in 16,384 slots, about one flow in nine), and those
//! flows then pay the classifier on every packet. With 8 ways and one set
//! per 8 entries, the default 32,768 entries hold 4096 flows at one flow per
//! set on average; a set overflows only when more than 8 of them land in it
//! (Poisson(1): about 1 in a million sets), so 4096 flows all stay cached.
//!
//! Replacing the SPD clears the cache. A flood of new flows (say random
//! source ports) misses on every packet; it then costs one classifier
//! lookup plus the fill, which is why the classifier's own cost must not
//! depend on the policy set.

use std::net::{IpAddr, Ipv4Addr};

use super::spd::{Action, FlowKey, Spd};

/// Ways per set.
pub const WAYS: usize = 8;

#[derive(Clone, Copy)]
struct Way {
    key: FlowKey,
    action: Option<Action>,
}

#[derive(Clone, Copy)]
struct Set {
    /// Signature of each way; 0 = empty.
    sigs: [u32; WAYS],
    ways: [Way; WAYS],
}

/// Cached SPD decisions (including "no policy").
pub struct SpdCache {
    sets: Box<[Set]>,
    /// log2 of the number of sets.
    set_bits: u32,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the SPD.
    pub misses: u64,
    /// xorshift64 state for picking victims (not a secret: an attacker
    /// who could steer evictions could as well send new flows).
    rng: u64,
    /// Mixed into every signature; [`clear`](SpdCache::clear) moves it on
    /// (by 2, so bit 0, which every signature has set, never hides a
    /// change), which makes every remembered decision unmatchable at once.
    epoch: u32,
}

impl std::fmt::Debug for SpdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdCache")
            .field("entries", &self.capacity())
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
    /// Default size: 32,768 flows in 4096 sets of 8 (about 1.6 MB per
    /// worker).
    pub const DEFAULT_SLOTS: usize = 1 << 15;

    /// A cache of at least `slots` entries (rounded up to a power of two
    /// number of sets of [`WAYS`], at most 2^24 sets).
    pub fn new(slots: usize) -> Self {
        let sets = slots.div_ceil(WAYS).clamp(1, 1 << 24).next_power_of_two();
        let empty_way = Way {
            key: FlowKey {
                src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                proto: 0,
                sport: 0,
                dport: 0,
            },
            action: None,
        };
        let empty = Set {
            sigs: [0; WAYS],
            ways: [empty_way; WAYS],
        };
        Self {
            sets: vec![empty; sets].into_boxed_slice(),
            set_bits: sets.trailing_zeros(),
            hits: 0,
            misses: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            epoch: 0,
        }
    }

    /// Number of flows the cache can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Forgets every decision (the SPD changed), in constant time: a new
    /// epoch changes every signature. Writing the 4096 sets' signatures
    /// instead touched a cache line in each of 400 pages of a 1.6 MB
    /// table, 0.1-0.9 ms of worker time per `SetSpd`. Once in 2^31
    /// clears, when the epoch wraps, the signatures are wiped after all.
    pub fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(2);
        if self.epoch == 0 {
            for s in self.sets.iter_mut() {
                s.sigs = [0; WAYS];
            }
        }
    }

    /// The SPD's decision for `key`: from the cache, or from `spd` (then
    /// remembered). Must be cleared whenever `spd` changes.
    #[inline]
    pub fn lookup(&mut self, spd: &Spd, key: &FlowKey) -> Option<Action> {
        let h = hash(key);
        // Set from the high bits, signature from the low ones and the
        // epoch (never 0).
        let set = &mut self.sets[(h >> 32 >> (32 - self.set_bits)) as usize];
        let sig = ((h as u32) ^ self.epoch) | 1;
        for w in 0..WAYS {
            if set.sigs[w] == sig && set.ways[w].key == *key {
                self.hits += 1;
                return set.ways[w].action;
            }
        }
        self.misses += 1;
        let action = spd.lookup(key).map(|p| p.action);
        let w = match set.sigs.iter().position(|&s| s == 0) {
            Some(free) => free,
            None => {
                let mut x = self.rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.rng = x;
                (x >> 61) as usize % WAYS
            }
        };
        set.sigs[w] = sig;
        set.ways[w] = Way { key: *key, action };
        action
    }
}

#[inline]
fn hash(k: &FlowKey) -> u64 {
    let addr = |a: &IpAddr| -> u64 {
        match a {
            IpAddr::V4(v) => u64::from(u32::from(*v)),
            IpAddr::V6(v) => {
                let x = u128::from(*v);
                (x as u64) ^ ((x >> 64) as u64).rotate_left(29)
            }
        }
    };
    let mut h = addr(&k.src).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= addr(&k.dst).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= (u64::from(k.sport) << 24 | u64::from(k.dport) << 8 | u64::from(k.proto))
        .wrapping_mul(0x1656_67B1_9E37_79F9);
    // Final avalanche (the low bits feed the signature, the high the set).
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
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
    fn default_size_keeps_4096_flows() {
        let spd = spd();
        let mut cache = SpdCache::default();
        let mut x = 0x1234_5678_9abc_def0u64;
        let keys: Vec<FlowKey> = (0..4096)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                FlowKey {
                    src: std::net::Ipv4Addr::new(10, 0, (i % 200) as u8, 1).into(),
                    dst: std::net::Ipv4Addr::new(172, 16, (x >> 40) as u8, (x >> 48) as u8).into(),
                    proto: 17,
                    sport: (x >> 16) as u16,
                    dport: 4500,
                }
            })
            .collect();
        for k in &keys {
            cache.lookup(&spd, k);
        }
        let first = cache.misses;
        assert!(first <= 4096);
        for _ in 0..3 {
            for k in &keys {
                assert_eq!(cache.lookup(&spd, k), spd.lookup(k).map(|p| p.action));
            }
        }
        // Every flow stayed: no miss after the first pass.
        assert_eq!(cache.misses, first);
        assert_eq!(cache.hits, 3 * 4096);
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
        // Through an epoch wrap as well.
        cache.epoch = u32::MAX - 1;
        cache.clear();
        assert_eq!(cache.epoch, 0);
        assert_eq!(cache.lookup(&spd, &key), first);
        assert_eq!(cache.misses, 3);
        assert_eq!(cache.lookup(&spd, &key), first);
        assert_eq!(cache.misses, 3);
    }

    /// More flows than entries, recurring in a fixed order (what a looped
    /// pcap or round-robin over many tunnels does): replacing in turn
    /// would never hit; random replacement keeps a share.
    #[test]
    fn cyclic_traffic_larger_than_the_cache_still_hits() {
        let spd = spd();
        let mut cache = SpdCache::new(1024);
        let keys: Vec<FlowKey> = (0..3 * 1024u32)
            .map(|i| FlowKey {
                src: std::net::Ipv4Addr::new(10, 0, (i % 200) as u8, 1).into(),
                dst: std::net::Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8).into(),
                proto: 17,
                sport: i as u16,
                dport: 4500,
            })
            .collect();
        for _ in 0..20 {
            for k in &keys {
                assert_eq!(cache.lookup(&spd, k), spd.lookup(k).map(|p| p.action));
            }
        }
        let rate = cache.hits as f64 / (cache.hits + cache.misses) as f64;
        // About 0.06 expected for 3 flows per entry, 24 per set (the fixed
        // point of h = (7/8)^(23 (1 - h))); in turn it would be 0.
        assert!(rate > 0.03, "hit rate {rate}");
    }
}
