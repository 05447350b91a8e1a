//! Criterion benches of the per-packet tables: the anti-replay window
//! (check then update, in order and reordered) for window sizes 64, 4096
//! and 65536; the SPD lookup with 1, 100 and 10,000 policies (distinct /24
//! pairs, and random prefixes): the classifier alone, through the worker's
//! flow cache with 4096 cached flows, and through the flow cache when every
//! packet is a new flow (random source ports); the inbound SA lookup by SPI with 1, 1000
//! and 100,000 SAs. Throughput is per operation.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use espresso_benches::measure::criterion_iters;
use espresso_benches::tables::{
    Arrival, ReplayBench, SaTableBench, SpdBench, SpdShape, LOOKUPS_PER_CALL, REPLAY_SIZES,
    SA_TABLE_SIZES, SPD_SIZES,
};

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay-window");
    g.throughput(Throughput::Elements(1));
    for (arrival, name) in [
        (Arrival::InOrder, "in-order"),
        (Arrival::Reordered, "reordered"),
    ] {
        for size in REPLAY_SIZES {
            let mut r = ReplayBench::new(size, arrival);
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| criterion_iters(iters, LOOKUPS_PER_CALL, |t| r.run(t)))
            });
        }
    }
    g.finish();
}

fn spd(c: &mut Criterion) {
    let mut g = c.benchmark_group("spd-lookup");
    g.throughput(Throughput::Elements(1));
    for (shape, name) in [
        (SpdShape::Distinct24, "distinct-24"),
        (SpdShape::RandomPrefixes, "random-prefixes"),
    ] {
        for n in SPD_SIZES {
            let mut s = SpdBench::new(n, shape);
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| criterion_iters(iters, LOOKUPS_PER_CALL, |t| s.run(t)))
            });
            s.warm_cache();
            g.bench_function(BenchmarkId::new(format!("{name}-flow-cache"), n), |b| {
                b.iter_custom(|iters| criterion_iters(iters, LOOKUPS_PER_CALL, |t| s.run_cached(t)))
            });
            g.bench_function(
                BenchmarkId::new(format!("{name}-flow-cache-new-flows"), n),
                |b| {
                    b.iter_custom(|iters| {
                        criterion_iters(iters, LOOKUPS_PER_CALL, |t| s.run_cache_flood(t))
                    })
                },
            );
        }
    }
    g.finish();
}

fn sa_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("sa-by-spi");
    g.throughput(Throughput::Elements(1));
    for n in SA_TABLE_SIZES {
        let mut s = SaTableBench::new(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| criterion_iters(iters, LOOKUPS_PER_CALL, |t| s.run(t)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = replay, spd, sa_table
}
criterion_main!(benches);
