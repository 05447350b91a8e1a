//! Prints Espresso's performance summary as markdown: the ESP engine
//! against the bare crypto transform of each backend, the crypto backends
//! against DPDK's `dpdk-test-crypto-perf`, and the per-packet tables
//! against their smallest size. Every figure is measured in this run.
//!
//! ```text
//! esp_report [--quick] [--no-cperf] [--tables]
//! esp_report --profile encap|decap [--alg N] [--size BYTES] [--esp] [--iters N]
//! esp_report --profile spd-24|spd-random [--policies N] [--iters N]
//! ```
//!
//! `--tables` prints only the per-packet tables (replay window, SPD, SA
//! lookup). `--profile` runs one engine case in a plain loop with nothing else (for
//! `valgrind --tool=callgrind`); `--alg` indexes the algorithm list below
//! (0 = AES-128-GCM) and `--esp` drops the UDP encapsulation.

use std::cell::RefCell;
use std::time::SystemTime;

use dataplane::crypto::{available_backends, Backend};
use dataplane::esp::ClassifierStats;
use espresso_benches::clock::{cpu_model, Clock};
use espresso_benches::cperf;
use espresso_benches::fixtures::{esp_payload_len, BareBench, EngineBench, ALGORITHMS, SIZES};
use espresso_benches::measure::{measure_interleaved, Config, Routine, Stats, Timer};
use espresso_benches::tables::{
    Arrival, ReplayBench, SaTableBench, SpdBench, SpdShape, LOOKUPS_PER_CALL, REPLAY_SIZES,
    SA_TABLE_SIZES, SPD_SIZES,
};
use espresso_benches::BURST;

/// Goals for the engine/bare ratio by inner size.
fn goal(size: usize) -> Option<f64> {
    match size {
        64 => Some(1.5),
        1400 => Some(1.15),
        _ => None,
    }
}

/// Goal for the ratio of our fastest backend to DPDK's cryptodev.
const CPERF_GOAL: f64 = 1.10;
/// Goal for the largest table against the smallest.
const TABLE_GOAL: f64 = 1.10;

struct Options {
    cfg: Config,
    cperf: bool,
    /// Only the per-packet tables section.
    tables_only: bool,
    profile: Option<Profile>,
}

struct Profile {
    /// The SPD classifier instead of the engine, in this shape.
    spd: Option<SpdShape>,
    /// Policies in the profiled SPD.
    policies: usize,
    decap: bool,
    alg: usize,
    size: usize,
    udp: bool,
    iters: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        cfg: Config::NORMAL,
        cperf: true,
        tables_only: false,
        profile: None,
    };
    let mut p = Profile {
        spd: None,
        policies: 10_000,
        decap: false,
        alg: 0,
        size: 64,
        udp: true,
        iters: 200_000,
    };
    let mut profiling = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.cfg = Config::QUICK,
            "--no-cperf" => o.cperf = false,
            "--tables" => o.tables_only = true,
            "--profile" => {
                profiling = true;
                match value("--profile")?.as_str() {
                    "encap" => p.decap = false,
                    "decap" => p.decap = true,
                    "spd-24" => p.spd = Some(SpdShape::Distinct24),
                    "spd-random" => p.spd = Some(SpdShape::RandomPrefixes),
                    other => {
                        return Err(format!(
                            "--profile encap|decap|spd-24|spd-random, not {other}"
                        ))
                    }
                };
            }
            "--alg" => p.alg = value("--alg")?.parse().map_err(|e| format!("--alg: {e}"))?,
            "--size" => {
                p.size = value("--size")?
                    .parse()
                    .map_err(|e| format!("--size: {e}"))?
            }
            "--iters" => {
                p.iters = value("--iters")?
                    .parse()
                    .map_err(|e| format!("--iters: {e}"))?
            }
            "--esp" => p.udp = false,
            "--policies" => {
                p.policies = value("--policies")?
                    .parse::<usize>()
                    .map_err(|e| format!("--policies: {e}"))?
                    .max(1)
            }
            "-h" | "--help" => {
                return Err(
                    "usage: esp_report [--quick] [--no-cperf] [--tables] | --profile encap|decap \
                            [--alg N] [--size BYTES] [--esp] [--iters N] | \
                            --profile spd-24|spd-random [--policies N] [--iters N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if p.alg >= ALGORITHMS.len() {
        return Err(format!("--alg must be below {}", ALGORITHMS.len()));
    }
    if profiling {
        o.profile = Some(p);
    }
    Ok(o)
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Some(p) = opts.profile {
        profile(&p);
        return;
    }
    let clock = Clock::get();
    let command: Vec<String> = std::env::args().collect();
    println!("## Performance\n");
    println!("- date: {}", utc_now());
    println!("- CPU: {} ({} online CPUs)", cpu_model(), online_cpus());
    match clock.tsc_ghz() {
        Some(ghz) => println!(
            "- clock: TSC at {ghz:.3} GHz (calibrated); \"c\" = TSC reference cycles per packet"
        ),
        None => println!("- clock: `Instant` (no invariant TSC: nanoseconds only)"),
    }
    println!(
        "- method: bursts of {BURST} packets; each burst is reloaded from a pristine copy \
         outside the timed region; {} samples of {} ms per case after {} ms warm-up, samples of \
         the cases of one row interleaved; median reported; `±` is the interquartile range of \
         the samples",
        opts.cfg.samples,
        opts.cfg.sample_time.as_millis(),
        opts.cfg.warmup.as_millis()
    );
    println!(
        "- command: `cargo run --release -p espresso-benches --bin esp_report{}`",
        command
            .iter()
            .skip(1)
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    println!();

    if opts.tables_only {
        tables_section(opts.cfg);
        return;
    }
    let esp = esp_section(opts.cfg);
    tables_section(opts.cfg);
    if opts.cperf {
        cperf_section(&esp);
    }
    summary(&esp);
}

/// Online CPUs, from `/sys`.
fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One measured (algorithm, size) case.
struct EspRow {
    alg: &'static str,
    size: usize,
    payload_len: usize,
    /// Per backend, in `available_backends` order.
    backends: Vec<BackendResult>,
    load_inner: Stats,
    load_esp: Stats,
}

/// One backend's figures in one row.
struct BackendResult {
    backend: Backend,
    seal: Stats,
    open: Stats,
    encap_udp: Stats,
    decap_udp: Stats,
    encap_esp: Stats,
    decap_esp: Stats,
}

impl EspRow {
    /// The backend with the fastest bare seal (encap) or open (decap).
    fn fastest(&self, decap: bool) -> &BackendResult {
        let bare = |b: &BackendResult| if decap { b.open.ns } else { b.seal.ns };
        self.backends
            .iter()
            .min_by(|a, b| bare(a).total_cmp(&bare(b)))
            .expect("at least one backend")
    }
}

impl BackendResult {
    /// (bare, full UDP-encap, full plain ESP) in one direction.
    fn dir(&self, decap: bool) -> (Stats, Stats, Stats) {
        if decap {
            (self.open, self.decap_udp, self.decap_esp)
        } else {
            (self.seal, self.encap_udp, self.encap_esp)
        }
    }
}

/// The benches of one backend in one row.
struct Case {
    bare: BareBench,
    udp: EngineBench,
    esp: EngineBench,
}

fn esp_section(cfg: Config) -> Vec<EspRow> {
    let mut rows = Vec::new();
    for (name, alg) in ALGORITHMS {
        for size in SIZES {
            eprintln!("measuring {name} {size} B ...");
            let payload_len = esp_payload_len(alg, size);
            let backends = available_backends(alg);
            let cases: Vec<RefCell<Case>> = backends
                .iter()
                .map(|&b| {
                    RefCell::new(Case {
                        bare: BareBench::new(alg, b, payload_len),
                        udp: EngineBench::new(alg, size, true, b, b),
                        esp: EngineBench::new(alg, size, false, b, b),
                    })
                })
                .collect();
            // Everything of this row, interleaved: per backend the bare
            // seal and open and the engine both ways with and without UDP,
            // then the reload copies. The closures of one backend share its
            // benches through a RefCell; they never run at the same time.
            let mut routines: Vec<Routine<'_>> = Vec::new();
            for c in &cases {
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().bare.seal_burst(t)
                }));
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().bare.open_burst(t)
                }));
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().udp.encap_burst(t)
                }));
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().udp.decap_burst(t)
                }));
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().esp.encap_burst(t)
                }));
                routines.push(Box::new(move |t: &mut Timer| {
                    c.borrow_mut().esp.decap_burst(t)
                }));
            }
            let c0 = &cases[0];
            routines.push(Box::new(move |t: &mut Timer| {
                c0.borrow_mut().udp.load_inner_burst(t)
            }));
            routines.push(Box::new(move |t: &mut Timer| {
                c0.borrow_mut().udp.load_esp_burst(t)
            }));
            let stats = measure_interleaved(cfg, BURST, &mut routines);
            drop(routines);
            let n = backends.len();
            rows.push(EspRow {
                alg: name,
                size,
                payload_len,
                backends: backends
                    .iter()
                    .zip(stats[..6 * n].chunks(6))
                    .map(|(&backend, s)| BackendResult {
                        backend,
                        seal: s[0],
                        open: s[1],
                        encap_udp: s[2],
                        decap_udp: s[3],
                        encap_esp: s[4],
                        decap_esp: s[5],
                    })
                    .collect(),
                load_inner: stats[6 * n],
                load_esp: stats[6 * n + 1],
            });
        }
    }
    print_esp(&rows);
    rows
}

fn fmt_ns(s: &Stats) -> String {
    match s.cycles {
        Some(c) => format!("{:.0} ns / {:.0} c ±{:.0}%", s.ns, c, s.spread * 100.0),
        None => format!("{:.0} ns ±{:.0}%", s.ns, s.spread * 100.0),
    }
}

fn fmt_ratio(r: f64, goal: Option<f64>) -> String {
    match goal {
        Some(g) if r <= g => format!("{r:.2}× ✓ (≤{g})"),
        Some(g) => format!("**{r:.2}× ✗** (≤{g})"),
        None => format!("{r:.2}×"),
    }
}

fn print_esp(rows: &[EspRow]) {
    println!("### ESP engine against the bare crypto transform\n");
    println!(
        "Tunnel mode, IPv4 in IPv4, no ESN. \"size\" is the inner IP packet; \"ESP payload\" \
         is what gets encrypted (inner packet, padding, pad length, next header). \"bare\" is \
         one `EspTransform::seal`/`open` call on ESP-shaped buffers of the ESP payload's \
         length. \"full\" is `OutboundSa::encapsulate` / `InboundSaTable::decapsulate` on an \
         mbuf-like buffer (SPI lookup, replay check and update with anti-replay disabled so \
         the same packet can be decapsulated again, outer IPv4 (+UDP) header, trailer, ECN, \
         inner header and selector checks), on the same backend as the fastest bare call. \
         ratio = full / fastest bare; \"engine\" = full (UDP) − bare, the engine's own cost \
         per packet. Every backend also ran the full path; only the fastest is shown. \
         \"reload\" is the copy that puts a pristine packet back into the buffer before each \
         full run, measured alone; it is in no other figure.\n"
    );
    let all = Backend::ALL;
    print!(
        "| algorithm | size | ESP payload | dir | fastest bare | full, UDP-encap | ratio | \
         full, plain ESP | ratio | engine |"
    );
    for b in all {
        print!(" bare {b} |");
    }
    println!(" reload |");
    print!("|---|---:|---:|---|---|---:|---:|---:|---:|---:|");
    for _ in all {
        print!("---:|");
    }
    println!("---:|");
    for r in rows {
        for decap in [false, true] {
            let f = r.fastest(decap);
            let (bare, udp, esp) = f.dir(decap);
            let g = goal(r.size);
            print!(
                "| {} | {} | {} | {} | {} {} | {} | {} | {} | {} | {:.0} ns |",
                r.alg,
                r.size,
                r.payload_len,
                if decap { "decap" } else { "encap" },
                f.backend,
                fmt_ns(&bare),
                fmt_ns(&udp),
                fmt_ratio(udp.ratio_to(&bare), g),
                fmt_ns(&esp),
                fmt_ratio(esp.ratio_to(&bare), g),
                udp.ns - bare.ns,
            );
            for b in all {
                match r.backends.iter().find(|x| x.backend == b) {
                    Some(x) => print!(" {} |", fmt_ns(&x.dir(decap).0)),
                    None => print!(" n/a |"),
                }
            }
            let reload = if decap { &r.load_esp } else { &r.load_inner };
            println!(" {:.0} ns |", reload.ns);
        }
    }
    println!();
}

fn tables_section(cfg: Config) {
    println!("### Per-packet tables\n");
    println!(
        "Each figure is per operation, over {LOOKUPS_PER_CALL} operations per timed call; \
         ratio = against the smallest table of the same kind, measured interleaved with it.\n"
    );
    println!("| table | shape | size | per op | ratio |");
    println!("|---|---|---:|---:|---:|");

    for arrival in [Arrival::InOrder, Arrival::Reordered] {
        eprintln!("measuring replay window, {} ...", arrival.name());
        let mut benches: Vec<ReplayBench> = REPLAY_SIZES
            .iter()
            .map(|&s| ReplayBench::new(s, arrival))
            .collect();
        let stats = run_all(cfg, LOOKUPS_PER_CALL, &mut benches, |b, t| b.run(t));
        for (i, s) in stats.iter().enumerate() {
            println!(
                "| replay window check+update | {} | {} | {} | {} |",
                arrival.name(),
                REPLAY_SIZES[i],
                fmt_ns(s),
                fmt_ratio(s.ratio_to(&stats[0]), None)
            );
        }
    }
    for shape in [SpdShape::Distinct24, SpdShape::RandomPrefixes] {
        eprintln!("measuring SPD, {} ...", shape.name());
        let mut benches: Vec<SpdBench> =
            SPD_SIZES.iter().map(|&n| SpdBench::new(n, shape)).collect();
        let tuples: Vec<usize> = benches.iter().map(|b| b.tuple_count()).collect();
        let sizes: Vec<ClassifierStats> = benches.iter().map(|b| b.classifier_stats()).collect();
        let steps: Vec<f64> = benches.iter().map(|b| b.mean_steps()).collect();
        // The classifier alone: what every packet of a new flow pays. The
        // goal applies here (a flood of new flows bypasses the cache).
        let stats = run_all(cfg, LOOKUPS_PER_CALL, &mut benches, |b, t| b.run(t));
        for (i, s) in stats.iter().enumerate() {
            let goal = (i == SPD_SIZES.len() - 1).then_some(TABLE_GOAL);
            println!(
                "| SPD lookup (classifier) | {} ({} prefix-length pairs; {} nodes, {:.1} MB, {} trie; {:.1} steps) | {} policies | {} | {} |",
                shape.name(),
                tuples[i],
                sizes[i].nodes,
                sizes[i].bytes as f64 / 1e6,
                sizes[i].tries,
                steps[i],
                SPD_SIZES[i],
                fmt_ns(s),
                fmt_ratio(s.ratio_to(&stats[0]), goal)
            );
        }
        // What the data path does: the worker's flow cache in front of the
        // SPD, every flow already cached.
        for b in benches.iter_mut() {
            b.warm_cache();
        }
        let stats = run_all(cfg, LOOKUPS_PER_CALL, &mut benches, |b, t| b.run_cached(t));
        let hit_rates: Vec<f64> = benches
            .iter_mut()
            .map(|b| b.take_cache_hit_rate())
            .collect();
        for (i, s) in stats.iter().enumerate() {
            let goal = (i == SPD_SIZES.len() - 1).then_some(TABLE_GOAL);
            println!(
                "| SPD lookup, worker flow cache | {} (4096 flows, {:.2} % hits) | {} policies | {} | {} |",
                shape.name(),
                hit_rates[i] * 100.0,
                SPD_SIZES[i],
                fmt_ns(s),
                fmt_ratio(s.ratio_to(&stats[0]), goal)
            );
        }
        // A flood of new flows (random source ports): every lookup misses
        // the cache, runs the classifier and fills a way.
        let stats = run_all(cfg, LOOKUPS_PER_CALL, &mut benches, |b, t| {
            b.run_cache_flood(t)
        });
        for (i, s) in stats.iter().enumerate() {
            let goal = (i == SPD_SIZES.len() - 1).then_some(TABLE_GOAL);
            println!(
                "| SPD lookup, worker flow cache, every packet a new flow | {} (random source ports) | {} policies | {} | {} |",
                shape.name(),
                SPD_SIZES[i],
                fmt_ns(s),
                fmt_ratio(s.ratio_to(&stats[0]), goal)
            );
        }
    }
    eprintln!("measuring SA table ...");
    let mut benches: Vec<SaTableBench> = SA_TABLE_SIZES
        .iter()
        .map(|&n| SaTableBench::new(n))
        .collect();
    let stats = run_all(cfg, LOOKUPS_PER_CALL, &mut benches, |b, t| b.run(t));
    for (i, s) in stats.iter().enumerate() {
        println!(
            "| inbound SA by SPI | random SPIs, random lookups | {} SAs | {} | {} |",
            SA_TABLE_SIZES[i],
            fmt_ns(s),
            fmt_ratio(s.ratio_to(&stats[0]), None)
        );
    }
    println!();
}

/// Measures `run` on every bench, interleaved.
fn run_all<T>(
    cfg: Config,
    ops_per_call: usize,
    benches: &mut [T],
    run: impl Fn(&mut T, &mut Timer),
) -> Vec<Stats> {
    let run = &run;
    let mut routines: Vec<Routine<'_>> = benches
        .iter_mut()
        .map(|b| Box::new(move |t: &mut Timer| run(b, t)) as Routine<'_>)
        .collect();
    measure_interleaved(cfg, ops_per_call, &mut routines)
}

fn cperf_section(rows: &[EspRow]) {
    println!(
        "### Crypto backends against DPDK's cryptodev (`{}`)\n",
        cperf::BINARY
    );
    println!(
        "DPDK's `crypto_aesni_gcm` PMD (ipsec-mb underneath), throughput test, bursts of 32, \
         buffer sizes = our ESP payload lengths, 8-byte AAD, 12-byte nonce, 16-byte tag; \
         3 runs of 1,000,000 operations per size, median. Its figure includes the cryptodev \
         enqueue/dequeue around each operation. ratio = our fastest bare transform / DPDK.\n"
    );
    let mut commands = Vec::new();
    let mut table = Vec::new();
    for (alg_name, key_len) in [("AES-128-GCM", 16), ("AES-256-GCM", 32)] {
        let ours: Vec<&EspRow> = rows.iter().filter(|r| r.alg == alg_name).collect();
        let sizes: Vec<usize> = ours.iter().map(|r| r.payload_len).collect();
        for (op, dir) in [("encrypt", "seal"), ("decrypt", "open")] {
            eprintln!("running {} {alg_name} {op} ...", cperf::BINARY);
            let args = cperf::gcm_args(key_len, op, &sizes, 1_000_000);
            let mut runs = Vec::new();
            for _ in 0..3 {
                match cperf::run(&args) {
                    Ok(r) => runs.push(r),
                    Err(e) => {
                        println!("`{}` failed: {e}\n", cperf::BINARY);
                        return;
                    }
                }
            }
            commands.push(runs[0].command.clone());
            for r in &ours {
                let mut v: Vec<cperf::CperfRow> = runs
                    .iter()
                    .filter_map(|run| run.rows.iter().find(|x| x.buf_size == r.payload_len))
                    .copied()
                    .collect();
                if v.is_empty() {
                    continue;
                }
                v.sort_by(|a, b| b.mops.total_cmp(&a.mops));
                let dpdk = v[v.len() / 2];
                let f = r.fastest(dir == "open");
                let (b, s) = (f.backend, f.dir(dir == "open").0);
                table.push(format!(
                    "| {alg_name} | {op} | {} | {:.0} ns / {:.0} c ({:.2} Mops) | {} ({b}) | {} |",
                    r.payload_len,
                    dpdk.ns(),
                    dpdk.cycles_per_buf,
                    dpdk.mops,
                    fmt_ns(&s),
                    fmt_ratio(s.ns / dpdk.ns(), Some(CPERF_GOAL)),
                ));
            }
        }
    }
    println!("| algorithm | op | bytes | DPDK cryptodev | our fastest bare | ratio |");
    println!("|---|---|---:|---:|---:|---:|");
    for l in table {
        println!("{l}");
    }
    println!("\nCommands (the `--file-prefix` carries the report's process id):\n");
    for c in commands {
        println!("    {c}");
    }
    println!();
}

fn summary(rows: &[EspRow]) {
    println!("### Goals\n");
    for size in SIZES {
        let Some(g) = goal(size) else { continue };
        let mut worst: Option<(f64, String)> = None;
        let mut met = 0;
        let mut total = 0;
        for r in rows.iter().filter(|r| r.size == size) {
            for decap in [false, true] {
                let (bare, udp, esp) = r.fastest(decap).dir(decap);
                for (f, kind) in [(udp, "UDP-encap"), (esp, "plain ESP")] {
                    let ratio = f.ratio_to(&bare);
                    total += 1;
                    if ratio <= g {
                        met += 1;
                    }
                    if worst.as_ref().is_none_or(|(w, _)| ratio > *w) {
                        let dir = if decap { "decap" } else { "encap" };
                        worst = Some((ratio, format!("{} {dir} {kind}", r.alg)));
                    }
                }
            }
        }
        if let Some((w, what)) = worst {
            println!(
                "- {size} B: full/bare ≤ {g}× in {met} of {total} cases; worst {w:.2}× ({what})"
            );
        }
    }
    println!();
}

fn profile(p: &Profile) {
    if let Some(shape) = p.spd {
        let n = p.policies;
        let b = SpdBench::new(n, shape);
        eprintln!(
            "profiling SPD lookups, {}, {n} policies, {} passes over 4096 keys",
            shape.name(),
            p.iters
        );
        let mut hits = 0;
        for _ in 0..p.iters {
            hits += b.lookup_pass();
        }
        eprintln!("{hits} matched");
        return;
    }
    let (name, alg) = ALGORITHMS[p.alg];
    let backends = available_backends(alg);
    let b = backends[0];
    let mut e = EngineBench::new(alg, p.size, p.udp, b, b);
    eprintln!(
        "profiling {} {name} {} B {} on {b}, {} iterations",
        if p.decap { "decap" } else { "encap" },
        p.size,
        if p.udp { "UDP-encap" } else { "plain ESP" },
        p.iters
    );
    // Bursts, as the measurement runs them (loads, then the whole burst
    // processed), so the profile shows what the figures measure.
    let mut timer = espresso_benches::measure::Timer::new();
    for _ in 0..p.iters.div_ceil(e.burst_len() as u64) {
        if p.decap {
            e.decap_burst(&mut timer);
        } else {
            e.encap_burst(&mut timer);
        }
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    // `2026-11-27T18:56:04Z` -> `2026-11-27 18:56 UTC`.
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    format!("{} {} UTC", &t[..10], &t[11..16])
}
