//! Criterion benches of the ESP engine against the bare crypto transforms.
//!
//! For each algorithm and inner packet size (tunnel mode, IPv4 in IPv4):
//! `OutboundSa::encapsulate` and `InboundSaTable::decapsulate` with and
//! without UDP encapsulation, the bare `seal`/`open` of every backend on a
//! payload of the same length as the engine's ESP payload, and the reload
//! copy alone. Inbound SAs have anti-replay disabled, so the same ESP
//! packet is decapsulated again and again; each burst of 32 packets is
//! reloaded from a pristine copy outside the timed region (criterion's
//! `iter_custom`), so neither allocation nor the copy is in a figure.
//! Throughput is per packet. `esp_report` prints the same cases as ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::crypto::{available_backends, default_backend};
use espresso_benches::fixtures::{esp_payload_len, BareBench, EngineBench, ALGORITHMS, SIZES};
use espresso_benches::measure::criterion_iters;
use espresso_benches::BURST;

fn esp(c: &mut Criterion) {
    for (name, alg) in ALGORITHMS {
        let mut g = c.benchmark_group(format!("esp/{name}"));
        for size in SIZES {
            g.throughput(Throughput::Elements(1));
            let backend = default_backend(alg);
            for (udp, kind) in [(true, "udp"), (false, "esp")] {
                let mut e = EngineBench::new(alg, size, udp, backend, backend);
                g.bench_function(BenchmarkId::new(format!("encap-{kind}"), size), |b| {
                    b.iter_custom(|iters| criterion_iters(iters, BURST, |t| e.encap_burst(t)))
                });
                g.bench_function(BenchmarkId::new(format!("decap-{kind}"), size), |b| {
                    b.iter_custom(|iters| criterion_iters(iters, BURST, |t| e.decap_burst(t)))
                });
                if udp {
                    g.bench_function(BenchmarkId::new("reload-inner", size), |b| {
                        b.iter_custom(|iters| {
                            criterion_iters(iters, BURST, |t| e.load_inner_burst(t))
                        })
                    });
                    g.bench_function(BenchmarkId::new("reload-esp", size), |b| {
                        b.iter_custom(|iters| {
                            criterion_iters(iters, BURST, |t| e.load_esp_burst(t))
                        })
                    });
                }
            }
            let payload_len = esp_payload_len(alg, size);
            for backend in available_backends(alg) {
                let mut bare = BareBench::new(alg, backend, payload_len);
                g.bench_function(BenchmarkId::new(format!("seal-{backend}"), size), |b| {
                    b.iter_custom(|iters| criterion_iters(iters, BURST, |t| bare.seal_burst(t)))
                });
                g.bench_function(BenchmarkId::new(format!("open-{backend}"), size), |b| {
                    b.iter_custom(|iters| criterion_iters(iters, BURST, |t| bare.open_burst(t)))
                });
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // Short runs: `make bench` must stay within a few minutes on 2 cores.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = esp
}
criterion_main!(benches);
