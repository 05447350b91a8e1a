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
//! 12 flows per set, 0.06 at 24); with fewer flows than entries the
//! policy does not matter. A
//! direct-mapped table of the same size loses a flow whenever two share a
//! slot (with 4096 flows in 16,384 slots, about one flow in nine), and those
//! flows then pay the classifier on every packet. With 8 ways and one set
//! per 8 entries, the default 32,768 entries hold 4096 flows at one flow per
//! set on average; a set overflows only when more than 8 of them land in it
//! (Poisson(1): about 1 in a million sets), so 4096 flows all stay cached.
//!
//! Sized to the SPD ([`SpdCache::slots_for`]): at least
//! [`SpdCache::DEFAULT_SLOTS`], and two entries per policy up to
//! [`SpdCache::MAX_SLOTS`], so that a gateway with one flow per tunnel
//! (100,000 tunnels: 262,144 entries, about 3 flows per set, a set
//! overflowing for one flow in a few hundred) keeps them all; before,
//! 100,000 flows in a fixed 32,768 entries hit about 6 % of the time and
//! every miss paid the classifier.
//!
//! Layout, for the burst pipeline's prefetches: a set is six cache lines,
//! the first holding the eight signatures and the eight actions (so a
//! probe reads one line to learn the way and its decision) and the other
//! five the eight keys, ten words each. The storage is one zeroed array of
//! words (all-zero is an empty cache), allocated with `calloc`, so a large
//! cache costs no page until a flow lands in it, and replacing the SPD
//! takes a fresh array instead of clearing every set on the worker.
//!
//! Only packets whose ports are known come here: a non-initial fragment's
//! key (ports 0) is not its flow's 5-tuple, and a decision stored or found
//! under it would answer for a different flow, so such packets go to
//! [`Spd::lookup_opaque`] every time (`EspEngine::packet_action`).
//!
//! Replacing the SPD clears the cache. A flood of new flows (say random
//! source ports) misses on every packet; it then costs one classifier
//! lookup plus the fill, which is why the classifier's own cost must not
//! depend on the policy set.

use std::net::IpAddr;

use super::spd::{Action, FlowKey, SaRef, Spd};
use cpu::prefetch::prefetch;

/// Ways per set.
pub const WAYS: usize = 8;
/// Words (u32) of an encoded key.
const KEY_WORDS: usize = 10;
/// Words of a set: signatures, actions, keys (six cache lines).
const SET_WORDS: usize = 2 * WAYS + WAYS * KEY_WORDS;
/// Words per cache line.
const LINE_WORDS: usize = 16;
/// 32-bit words in a 4 KiB page (the smallest page the cache can sit on).
const PAGE_WORDS: usize = 1024;

/// Cached SPD decisions (including "no policy").
pub struct SpdCache {
    /// `base` words of padding (to a cache line), then the sets.
    words: Box<[u32]>,
    base: usize,
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

/// The probe of one packet's flow, from [`SpdCache::hint`]: where its set
/// is and what it was hashed to.
#[derive(Clone, Copy, Debug)]
pub struct FlowHint {
    set: usize,
    sig: u32,
}

impl SpdCache {
    /// Default and smallest size: 32,768 flows in 4096 sets of 8 (1.5 MB
    /// per worker).
    pub const DEFAULT_SLOTS: usize = 1 << 15;
    /// Largest size chosen by [`SpdCache::slots_for`]: 524,288 flows
    /// (24 MB per worker).
    pub const MAX_SLOTS: usize = 1 << 19;

    /// The size for an SPD of `policies` policies: two entries per policy
    /// (one flow per policy then fills a set to 3 of 8 on average),
    /// between [`Self::DEFAULT_SLOTS`] and [`Self::MAX_SLOTS`].
    pub fn slots_for(policies: usize) -> usize {
        policies
            .saturating_mul(2)
            .min(Self::MAX_SLOTS)
            .next_power_of_two()
            .max(Self::DEFAULT_SLOTS)
    }

    /// A cache of at least `slots` entries (rounded up to a power of two
    /// number of sets of [`WAYS`], at most 2^24 sets).
    pub fn new(slots: usize) -> Self {
        let sets = slots.div_ceil(WAYS).clamp(1, 1 << 24).next_power_of_two();
        // Zeroed words come from `calloc`: fresh pages for a large cache,
        // which fault in when first written. One word of each page is
        // written here, where the cache is built (the control thread, for
        // an SPD it ships), so that a worker's first packets after
        // `SetSpd` do not take those faults: 24 MB of cache for 200,000
        // policies is 6,000 pages, and faulting them in on the worker
        // stalled forwarding polls for over a millisecond on this VM.
        let mut words = vec![0u32; sets * SET_WORDS + LINE_WORDS].into_boxed_slice();
        // One random line per packet over tens of megabytes (100,000
        // tunnels): in huge pages, a TLB hit.
        cpu::huge::advise_huge_pages(&words);
        for w in words.iter_mut().step_by(PAGE_WORDS) {
            // `black_box` keeps the store: a zero written over calloc's
            // zero could otherwise be optimised away.
            *w = std::hint::black_box(0);
        }
        let misalign = words.as_ptr() as usize % (LINE_WORDS * 4);
        let base = (LINE_WORDS * 4 - misalign) % (LINE_WORDS * 4) / 4;
        Self {
            words,
            base,
            set_bits: sets.trailing_zeros(),
            hits: 0,
            misses: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            epoch: 0,
        }
    }

    /// Number of flows the cache can hold.
    pub fn capacity(&self) -> usize {
        WAYS << self.set_bits
    }

    /// Forgets every decision (the SPD changed), in constant time: a new
    /// epoch changes every signature. Writing the 4096 sets' signatures
    /// instead touched a cache line in each of 400 pages of a 1.6 MB
    /// table, 0.1-0.9 ms of worker time per `SetSpd`. Once in 2^31
    /// clears, when the epoch wraps, the signatures are wiped after all.
    pub fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(2);
        if self.epoch == 0 {
            for s in 0..1usize << self.set_bits {
                let start = self.base + s * SET_WORDS;
                self.words[start..start + WAYS].fill(0);
            }
        }
    }

    /// Forgets every decision and takes the size for an SPD of `policies`
    /// policies: a fresh (lazily zeroed) array when the size changes or
    /// the cache is large, else the sets cleared in place.
    pub fn reset_for(&mut self, policies: usize) {
        let slots = Self::slots_for(policies);
        if slots != self.capacity() || slots > Self::DEFAULT_SLOTS {
            let (hits, misses) = (self.hits, self.misses);
            *self = Self::new(slots);
            (self.hits, self.misses) = (hits, misses);
        } else {
            self.clear();
        }
    }

    #[inline]
    fn set_start(&self, set: usize) -> usize {
        self.base + set * SET_WORDS
    }

    /// Hashes `key` and prefetches the line of its set that a lookup
    /// reads first (signatures and actions): the first stage of the burst
    /// pipeline.
    #[inline]
    pub fn hint(&self, key: &FlowKey) -> FlowHint {
        let h = hash(key);
        let hint = FlowHint {
            set: (h >> 32 >> (32 - self.set_bits)) as usize,
            sig: (signature(h) ^ self.epoch) | 1,
        };
        prefetch(self.words.as_ptr().wrapping_add(self.set_start(hint.set)));
        hint
    }

    /// The decision the cache probably holds for the flow of `hint`
    /// (matched by signature only, the key is not compared: good for
    /// prefetching, not for forwarding), prefetching the key's lines.
    #[inline]
    pub fn peek(&self, hint: FlowHint) -> Option<Option<Action>> {
        let start = self.set_start(hint.set);
        let set: &[u32; SET_WORDS] = self.words[start..start + SET_WORDS].try_into().ok()?;
        let w = (0..WAYS).find(|&w| set[w] == hint.sig)?;
        let key = start + 2 * WAYS + w * KEY_WORDS;
        prefetch(self.words.as_ptr().wrapping_add(key));
        prefetch(self.words.as_ptr().wrapping_add(key + KEY_WORDS - 1));
        Some(decode_action(set[WAYS + w]))
    }

    /// The SPD's decision for `key`: from the cache, or from `spd` (then
    /// remembered). Must be cleared whenever `spd` changes.
    #[inline]
    pub fn lookup(&mut self, spd: &Spd, key: &FlowKey) -> Option<Action> {
        let h = hash(key);
        // Set from the high bits, signature from both halves and the
        // epoch (never 0).
        let start = self.set_start((h >> 32 >> (32 - self.set_bits)) as usize);
        let sig = (signature(h) ^ self.epoch) | 1;
        let enc = encode_key(key);
        let set: &mut [u32; SET_WORDS] = (&mut self.words[start..start + SET_WORDS])
            .try_into()
            .expect("a set is SET_WORDS long");
        for w in 0..WAYS {
            let k = 2 * WAYS + w * KEY_WORDS;
            if set[w] == sig && same_key(&set[k..k + KEY_WORDS], &enc) {
                self.hits += 1;
                return decode_action(set[WAYS + w]);
            }
        }
        self.misses += 1;
        let action = spd.lookup(key).map(|p| p.action);
        let Some(code) = encode_action(action) else {
            // A slot number too large to encode: not cached.
            return action;
        };
        let w = match set[..WAYS].iter().position(|&s| s == 0) {
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
        set[w] = sig;
        set[WAYS + w] = code;
        let k = 2 * WAYS + w * KEY_WORDS;
        set[k..k + KEY_WORDS].copy_from_slice(&enc);
        action
    }
}

/// A key as ten words: source and destination (IPv4 in the first word of
/// four), protocol and family, ports.
#[inline]
fn encode_key(k: &FlowKey) -> [u32; KEY_WORDS] {
    let mut w = [0u32; KEY_WORDS];
    let mut v6 = 0;
    // By reference: an array of the two `IpAddr`s copied all 17 bytes of
    // each, wider loads than the stores that had just built an IPv4 key (a
    // store-forwarding stall per packet).
    for (i, a) in [&k.src, &k.dst].into_iter().enumerate() {
        match a {
            IpAddr::V4(v) => w[4 * i] = u32::from(*v),
            IpAddr::V6(v) => {
                let x = u128::from(*v);
                for j in 0..4 {
                    w[4 * i + j] = (x >> (32 * j)) as u32;
                }
                v6 |= 1 << (8 + i);
            }
        }
    }
    w[8] = u32::from(k.proto) | v6;
    w[9] = u32::from(k.sport) << 16 | u32::from(k.dport);
    w
}

/// Word-wise, without a `memcmp` call.
#[inline]
fn same_key(a: &[u32], b: &[u32; KEY_WORDS]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// 0 no policy, 1 bypass, 2 discard, 3 + n protect with slot n.
#[inline]
fn encode_action(a: Option<Action>) -> Option<u32> {
    Some(match a {
        None => 0,
        Some(Action::Bypass) => 1,
        Some(Action::Discard) => 2,
        Some(Action::Protect(SaRef(n))) => n.checked_add(3)?,
    })
}

#[inline]
fn decode_action(code: u32) -> Option<Action> {
    match code {
        0 => None,
        1 => Some(Action::Bypass),
        2 => Some(Action::Discard),
        n => Some(Action::Protect(SaRef(n - 3))),
    }
}

/// Three multiplies in parallel, one per field, and no final avalanche:
/// the set comes from the top bits of the products, which depend on every
/// bit of their field (Fibonacci hashing), and the signature folds the
/// high half into the low. A final multiply and two shift-xors after the
/// three (a "finaliser") put about 7 cycles on the path every packet
/// waits on (hash, set line, signature, key, then the SA), where the
/// worker's samples piled up; the signature only picks which keys to
/// compare, so a weaker one costs at worst a key comparison, never a wrong
/// answer.
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
    addr(&k.src).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ addr(&k.dst).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (u64::from(k.sport) << 24 | u64::from(k.dport) << 8 | u64::from(k.proto))
            .wrapping_mul(0x1656_67B1_9E37_79F9)
}

/// The signature of hash `h` (never 0 once `| 1`): both halves, so that
/// fields whose low bits agree still differ here.
#[inline]
fn signature(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
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

    #[test]
    fn sized_to_the_spd_and_keeps_one_flow_per_policy() {
        assert_eq!(SpdCache::slots_for(1), SpdCache::DEFAULT_SLOTS);
        assert_eq!(SpdCache::slots_for(100_000), 1 << 18);
        assert_eq!(SpdCache::slots_for(usize::MAX), SpdCache::MAX_SLOTS);
        let spd = spd();
        let mut cache = SpdCache::default();
        cache.reset_for(100_000);
        assert_eq!(cache.capacity(), 1 << 18);
        let keys: Vec<FlowKey> = (0..100_000u32)
            .map(|i| FlowKey {
                src: std::net::Ipv4Addr::new(10, 0, (i % 200) as u8, 1).into(),
                dst: std::net::Ipv4Addr::from(0xac10_0000 + i).into(),
                proto: 17,
                sport: 1000,
                dport: 2000,
            })
            .collect();
        for k in &keys {
            cache.lookup(&spd, k);
        }
        let first = cache.misses;
        for k in &keys {
            let hint = cache.hint(k);
            let peeked = cache.peek(hint);
            let got = cache.lookup(&spd, k);
            assert_eq!(got, spd.lookup(k).map(|p| p.action));
            if let Some(p) = peeked {
                assert_eq!(p, got);
            }
        }
        // A set overflows for a few flows in a thousand at most.
        assert!(
            cache.misses - first < 500,
            "{} misses",
            cache.misses - first
        );
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
