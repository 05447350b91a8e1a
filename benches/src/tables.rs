//! Fixtures for the per-packet table operations: the anti-replay window,
//! the SPD lookup and the inbound SA lookup by SPI.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use dataplane::crypto::{available_backends, new_transform, Algorithm};
use dataplane::esp::{
    Action, ClassifierStats, Direction, FlowKey, InboundSa, InboundSaTable, IpPrefix, Mode, Policy,
    ReplayWindow, SaConfig, SaRef, Selector, Spd, SpdCache, Spi, TunnelEndpoints,
};

use crate::fixtures::keys_for;
use crate::measure::Timer;

/// Lookups per timed call.
pub const LOOKUPS_PER_CALL: usize = 256;

/// A small deterministic PRNG (SplitMix64), so every run builds the same
/// tables.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Anti-replay window sizes benchmarked.
pub const REPLAY_SIZES: [u32; 3] = [64, 4096, 65_536];

/// How packets arrive at the replay window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// 1, 2, 3, ...
    InOrder,
    /// Each run of 64 numbers shuffled (packets from several queues or
    /// paths): every packet is new, many land below the top of the window.
    Reordered,
}

impl Arrival {
    /// The name printed.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InOrder => "in order",
            Self::Reordered => "reordered (shuffled runs of 64)",
        }
    }
}

/// A replay window being fed sequence numbers: `check` then `update` for
/// each, as the inbound path does around authentication.
#[derive(Debug)]
pub struct ReplayBench {
    window: ReplayWindow,
    /// The order of arrival within one period of `pattern.len()` numbers.
    pattern: Vec<u32>,
    base: u32,
    pos: usize,
}

impl ReplayBench {
    /// A window of `size` fed as `arrival` says.
    pub fn new(size: u32, arrival: Arrival) -> ReplayBench {
        const PERIOD: u32 = 64 * 1024;
        let mut pattern: Vec<u32> = (1..=PERIOD).collect();
        if arrival == Arrival::Reordered {
            let mut rng = SplitMix::new(0x5eed);
            for run in pattern.chunks_mut(64) {
                for i in (1..run.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    run.swap(i, j);
                }
            }
        }
        ReplayBench {
            window: ReplayWindow::new(size).expect("window size"),
            pattern,
            base: 0,
            pos: 0,
        }
    }

    /// Times `LOOKUPS_PER_CALL` check+update pairs.
    #[inline]
    pub fn run(&mut self, timer: &mut Timer) {
        if self.pos + LOOKUPS_PER_CALL > self.pattern.len() {
            self.pos = 0;
            self.base += self.pattern.len() as u32;
            if u64::from(self.base) + self.pattern.len() as u64 >= u64::from(u32::MAX) {
                self.window.reset();
                self.base = 0;
            }
        }
        let seqs = &self.pattern[self.pos..self.pos + LOOKUPS_PER_CALL];
        timer.start();
        for &s in seqs {
            let seq = self.window.check(self.base + s).expect("fresh number");
            self.window.update(seq).expect("update");
        }
        timer.stop();
        self.pos += LOOKUPS_PER_CALL;
    }
}

/// SPD sizes benchmarked.
pub const SPD_SIZES: [usize; 3] = [1, 100, 10_000];

/// How the SPD's selectors are shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpdShape {
    /// Site-to-site: policy `i` is 10.a.b.0/24 → 172.16.0.0/12-ish /24
    /// number `i`, all distinct, one prefix-length pair.
    Distinct24,
    /// Source and destination prefixes of random lengths (8..=32) and
    /// random addresses: many prefix-length pairs.
    RandomPrefixes,
}

impl SpdShape {
    /// The name printed.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Distinct24 => "distinct /24 pairs",
            Self::RandomPrefixes => "random prefixes /8../32",
        }
    }
}

/// An SPD and a stream of flow keys that hit its policies at random.
#[derive(Debug)]
pub struct SpdBench {
    spd: Spd,
    cache: SpdCache,
    keys: Vec<FlowKey>,
    pos: usize,
    rng: SplitMix,
}

impl SpdBench {
    /// An SPD of `n` policies shaped as `shape`, and 4096 keys each
    /// matching a random policy.
    pub fn new(n: usize, shape: SpdShape) -> SpdBench {
        let mut rng = SplitMix::new(0x5bd0 + n as u64);
        let mut selectors = Vec::with_capacity(n);
        for i in 0..n as u32 {
            let (src, dst) = match shape {
                SpdShape::Distinct24 => (
                    IpPrefix::truncating(v4(0x0A00_0000 | (i << 8)), 24),
                    IpPrefix::truncating(v4(0xAC10_0000u32.wrapping_add(i << 8)), 24),
                ),
                SpdShape::RandomPrefixes => (
                    IpPrefix::truncating(v4(rng.next_u64() as u32), 8 + rng.below(25) as u8),
                    IpPrefix::truncating(v4(rng.next_u64() as u32), 8 + rng.below(25) as u8),
                ),
            };
            selectors.push(Selector::new(src, dst));
        }
        let spd = Spd::from_policies(selectors.iter().enumerate().map(|(i, s)| Policy {
            selector: s.clone(),
            action: Action::Protect(SaRef(i as u32)),
            priority: 0,
        }))
        .expect("valid policies");
        let keys = (0..4096)
            .map(|_| {
                let s = &selectors[rng.below(n as u64) as usize];
                FlowKey {
                    src: fill_host(&s.src, rng.next_u64() as u32),
                    dst: fill_host(&s.dst, rng.next_u64() as u32),
                    proto: 17,
                    sport: rng.next_u64() as u16,
                    dport: rng.next_u64() as u16,
                }
            })
            .collect::<Vec<_>>();
        for k in &keys {
            assert!(spd.lookup(k).is_some(), "every key hits a policy");
        }
        SpdBench {
            spd,
            cache: SpdCache::default(),
            keys,
            pos: 0,
            rng,
        }
    }

    /// Times `LOOKUPS_PER_CALL` lookups through the worker's flow cache
    /// (`SpdCache`), as the data path does them: the 4096 flows are cached
    /// after the first pass.
    #[inline]
    pub fn run_cached(&mut self, timer: &mut Timer) {
        if self.pos + LOOKUPS_PER_CALL > self.keys.len() {
            self.pos = 0;
        }
        let keys = &self.keys[self.pos..self.pos + LOOKUPS_PER_CALL];
        timer.start();
        for k in keys {
            black_box(self.cache.lookup(&self.spd, black_box(k)));
        }
        timer.stop();
        self.pos += LOOKUPS_PER_CALL;
    }

    /// Times `LOOKUPS_PER_CALL` lookups through the flow cache where every
    /// packet is a new flow (the keys' source ports are rewritten at random
    /// outside the timed region): a random-source-port flood, every lookup
    /// a miss that goes to the classifier and replaces a cached flow.
    #[inline]
    pub fn run_cache_flood(&mut self, timer: &mut Timer) {
        if self.pos + LOOKUPS_PER_CALL > self.keys.len() {
            self.pos = 0;
        }
        let keys = &mut self.keys[self.pos..self.pos + LOOKUPS_PER_CALL];
        let mut saved = [0u16; LOOKUPS_PER_CALL];
        for (k, s) in keys.iter_mut().zip(saved.iter_mut()) {
            *s = k.sport;
            k.sport = self.rng.next_u64() as u16;
        }
        timer.start();
        for k in keys.iter() {
            black_box(self.cache.lookup(&self.spd, black_box(k)));
        }
        timer.stop();
        for (k, s) in keys.iter_mut().zip(saved) {
            k.sport = s;
        }
        self.pos += LOOKUPS_PER_CALL;
    }

    /// Number of distinct (prefix length, prefix length) tuples in the
    /// policy set (what a tuple space search would probe).
    pub fn tuple_count(&self) -> usize {
        self.spd.tuple_count()
    }

    /// Size of the compiled classifier.
    pub fn classifier_stats(&self) -> ClassifierStats {
        self.spd.compile().stats()
    }

    /// Looks every key up once, untimed (for profilers); returns how many
    /// matched.
    pub fn lookup_pass(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| self.spd.lookup(black_box(k)).is_some())
            .count()
    }

    /// Average number of classifier nodes a lookup of the bench's keys
    /// visits.
    pub fn mean_steps(&self) -> f64 {
        let c = self.spd.compile();
        let total: usize = self.keys.iter().map(|k| c.steps(k)).sum();
        total as f64 / self.keys.len() as f64
    }

    /// Looks every key up once through the flow cache (so that all 4096
    /// flows are cached) and resets its counters.
    pub fn warm_cache(&mut self) {
        for k in &self.keys {
            black_box(self.cache.lookup(&self.spd, k));
        }
        self.cache.hits = 0;
        self.cache.misses = 0;
    }

    /// Share of flow cache lookups answered from the cache so far, and
    /// resets the counters.
    pub fn take_cache_hit_rate(&mut self) -> f64 {
        let (h, m) = (self.cache.hits, self.cache.misses);
        self.cache.hits = 0;
        self.cache.misses = 0;
        if h + m == 0 {
            0.0
        } else {
            h as f64 / (h + m) as f64
        }
    }

    /// Times `LOOKUPS_PER_CALL` lookups.
    #[inline]
    pub fn run(&mut self, timer: &mut Timer) {
        if self.pos + LOOKUPS_PER_CALL > self.keys.len() {
            self.pos = 0;
        }
        let keys = &self.keys[self.pos..self.pos + LOOKUPS_PER_CALL];
        timer.start();
        for k in keys {
            black_box(self.spd.lookup(black_box(k)));
        }
        timer.stop();
        self.pos += LOOKUPS_PER_CALL;
    }
}

fn v4(bits: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(bits))
}

/// An address inside `p` with random host bits.
fn fill_host(p: &IpPrefix, random: u32) -> IpAddr {
    let IpAddr::V4(a) = p.addr() else {
        unreachable!("IPv4 fixtures only")
    };
    let host_mask = u32::MAX.checked_shr(u32::from(p.prefix_len())).unwrap_or(0);
    v4(u32::from(a) | (random & host_mask))
}

/// SA table sizes benchmarked.
pub const SA_TABLE_SIZES: [usize; 3] = [1, 1000, 100_000];

/// An inbound SA table and a stream of SPIs present in it.
#[derive(Debug)]
pub struct SaTableBench {
    table: InboundSaTable,
    spis: Vec<Spi>,
    pos: usize,
}

impl SaTableBench {
    /// `n` AES-128-GCM SAs with random SPIs, and 8192 lookups of random
    /// ones among them.
    pub fn new(n: usize) -> SaTableBench {
        let alg = Algorithm::AES_GCM_128;
        let backend = available_backends(alg)[0];
        let keys = keys_for(alg, 3);
        let mut rng = SplitMix::new(0x5a + n as u64);
        let mut table = InboundSaTable::new();
        let mut installed = Vec::with_capacity(n);
        while installed.len() < n {
            let Ok(spi) = Spi::new(rng.next_u64() as u32) else {
                continue;
            };
            if table.get(spi).is_some() {
                continue;
            }
            let mut cfg = SaConfig::new(
                spi,
                Direction::Inbound,
                Mode::Tunnel,
                TunnelEndpoints {
                    local: v4(0xC000_0202),
                    remote: v4(0xC000_0201),
                },
            );
            cfg.replay_window = 0;
            cfg.traffic_selectors = vec![Selector::new(IpPrefix::ANY_V4, IpPrefix::ANY_V4)];
            let t = new_transform(backend, alg, &keys).expect("transform");
            table.insert(InboundSa::new(cfg, t).expect("SA"));
            installed.push(spi);
        }
        let spis = (0..8192)
            .map(|_| installed[rng.below(n as u64) as usize])
            .collect();
        SaTableBench {
            table,
            spis,
            pos: 0,
        }
    }

    /// Times `LOOKUPS_PER_CALL` lookups by SPI.
    #[inline]
    pub fn run(&mut self, timer: &mut Timer) {
        if self.pos + LOOKUPS_PER_CALL > self.spis.len() {
            self.pos = 0;
        }
        let spis = &self.spis[self.pos..self.pos + LOOKUPS_PER_CALL];
        timer.start();
        for &s in spis {
            let sa = self.table.get_mut(black_box(s));
            black_box(sa.map(|sa| sa.replay_top()));
        }
        timer.stop();
        self.pos += LOOKUPS_PER_CALL;
    }
}
