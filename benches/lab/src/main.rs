//! `espresso-lab`: Espresso's benchmark lab. `make bench` runs
//! `espresso-lab bench`; the hidden subcommands are the lab's own child
//! processes (one measured run each), so the gateway binary links no lab
//! code.
#![forbid(unsafe_code)]

#[cfg(have_dpdk)]
use clap::{Parser, Subcommand};

#[cfg(have_dpdk)]
#[derive(Parser, Debug)]
#[command(
    name = "espresso-lab",
    version,
    about = "Espresso's benchmark lab: the gateway side by side with testpmd, the bare AEAD and strongSwan"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[cfg(have_dpdk)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the data path: encrypt and decrypt throughput per suite,
    /// frame size, UDP encapsulation and SA count, each next to
    /// `dpdk-testpmd --forward-mode=io` on the same traffic. Needs no NIC
    /// (DPDK's net_pcap and net_null) and two cores. Prints a table and
    /// writes OUT/latest.json and PNG plots.
    Bench {
        /// A few cases with short runs (a smoke test, not figures).
        #[arg(long)]
        quick: bool,
        /// Measured windows per case and per baseline, back to back after
        /// one warm-up in one process (figures are medians); runs of each
        /// reconfiguration case.
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Seconds of traffic before each measurement (default 0.5, quick
        /// 0.2).
        #[arg(long)]
        warmup: Option<f64>,
        /// Seconds measured per window (default 1.0, quick 0.3).
        #[arg(long)]
        duration: Option<f64>,
        /// Only the cases whose name contains this (e.g. `decrypt`,
        /// `chacha`, `100000SA`, `ike-flood`); alternatives separated by
        /// `|` (`aes128gcm16|aes128-sha256`).
        #[arg(long)]
        filter: Option<String>,
        /// Output directory.
        #[arg(long, default_value = "bench-results")]
        out: std::path::PathBuf,
        /// The core the worker and testpmd's forwarding lcore run on.
        #[arg(long, default_value_t = 1)]
        worker_core: usize,
        /// The testpmd binary.
        #[arg(long, default_value = "dpdk-testpmd")]
        testpmd: std::path::PathBuf,
        /// Skip the PNG plots.
        #[arg(long)]
        no_plots: bool,
        /// Skip Espresso against strongSwan through the two-site topology
        /// (run by default after the full matrix; not with --quick or
        /// --filter).
        #[arg(long, conflicts_with = "strongswan_only")]
        no_strongswan: bool,
        /// Only Espresso against strongSwan, no cases.
        #[arg(long)]
        strongswan_only: bool,
        /// Seconds of iperf3 TCP, and again of UDP, per system in the
        /// strongSwan comparison.
        #[arg(long, default_value_t = 10)]
        strongswan_seconds: u32,
        /// The comparison's script.
        #[arg(long, default_value = lab::strongswan::default_script().as_os_str())]
        strongswan_script: std::path::PathBuf,
        /// Skip the latency and zero-loss lab (gateway and testpmd io
        /// driven over net_memif by a generator on the other core, then
        /// the zero-loss search again over veth pairs with net_af_packet,
        /// which needs root).
        #[arg(long)]
        no_latency: bool,
        /// DPDK's ipsec-secgw, measured on every case next to testpmd
        /// (default: the build `make secgw` caches for the installed
        /// DPDK, `target/ipsec-secgw-<version>/ipsec-secgw`).
        #[arg(long, conflicts_with = "no_secgw")]
        secgw: Option<std::path::PathBuf>,
        /// Do not run ipsec-secgw.
        #[arg(long)]
        no_secgw: bool,
        /// The `espresso` gateway binary: `espresso run` is measured on
        /// every case with a generated configuration file, and the
        /// strongSwan comparison runs it (default: `espresso` next to this
        /// binary).
        #[arg(long)]
        gateway: Option<std::path::PathBuf>,
        /// Skip `espresso run` (the product with a generated configuration
        /// file, measured after the lab's in-process gateway on every
        /// case).
        #[arg(long)]
        no_product: bool,
    },
    /// One measured run for `espresso-lab bench` (internal).
    #[command(hide = true)]
    BenchCase {
        /// The run, as JSON.
        #[arg(long)]
        request: String,
    },
    /// One reconfiguration run for `espresso-lab bench` (internal).
    #[command(hide = true)]
    BenchReconf {
        /// The run, as JSON.
        #[arg(long)]
        request: String,
    },
    /// One IKE flood run for `espresso-lab bench` (internal).
    #[command(hide = true)]
    BenchIkeFlood {
        /// The case, as JSON.
        #[arg(long)]
        request: String,
    },
    /// The latency lab's generator and sink for `espresso-lab bench`
    /// (internal): trials as JSON lines on stdin, results on stdout.
    #[command(hide = true)]
    BenchLoadgen {
        /// The generator's set-up, as JSON.
        #[arg(long)]
        request: String,
    },
}

#[cfg(not(have_dpdk))]
fn main() -> std::process::ExitCode {
    eprintln!("espresso-lab: built without DPDK (libdpdk-dev was not found at build time): install it (make deps) and rebuild");
    std::process::ExitCode::FAILURE
}

#[cfg(have_dpdk)]
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("espresso-lab: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(have_dpdk)]
fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Bench {
            quick,
            repetitions,
            warmup,
            duration,
            filter,
            out,
            worker_core,
            testpmd,
            no_plots,
            no_strongswan,
            strongswan_only,
            strongswan_seconds,
            strongswan_script,
            no_latency,
            secgw,
            no_secgw,
            gateway,
            no_product,
        } => {
            use lab as bench;
            let mut cases = if strongswan_only {
                Vec::new()
            } else if quick {
                bench::spec::quick_matrix()
            } else {
                bench::spec::standard_matrix()
            };
            let mut reconf = if strongswan_only {
                Vec::new()
            } else if quick {
                bench::reconf::quick()
            } else {
                bench::reconf::standard()
            };
            let mut ike_flood = if strongswan_only {
                Vec::new()
            } else if quick {
                bench::ike_flood::quick()
            } else {
                bench::ike_flood::standard()
            };
            let matches = |name: String| {
                filter
                    .as_deref()
                    .is_none_or(|f| f.split('|').any(|p| name.contains(p)))
            };
            cases.retain(|c| matches(c.name()));
            reconf.retain(|c| matches(c.name()));
            ike_flood.retain(|c| matches(c.name()));
            let mut latency = (!no_latency && !strongswan_only).then(|| {
                if quick {
                    bench::latency::LatencyOptions::quick()
                } else {
                    bench::latency::LatencyOptions::standard()
                }
            });
            if let Some(l) = &mut latency {
                l.cases.retain(|c| matches(c.name()));
            }
            let latency = latency.filter(|l| !l.cases.is_empty());
            if cases.is_empty()
                && reconf.is_empty()
                && ike_flood.is_empty()
                && latency.is_none()
                && !strongswan_only
            {
                return Err("no case matches --filter".into());
            }
            if strongswan_seconds == 0 {
                return Err("--strongswan-seconds must be at least 1".into());
            }
            // The lab's measured runs are its own child processes; the
            // strongSwan comparison runs the gateway binary itself.
            let espresso = std::env::current_exe()?;
            let gateway = match gateway {
                Some(g) => g,
                None => espresso.with_file_name("espresso"),
            };
            let product = (!no_product).then(|| gateway.clone());
            let strongswan = (strongswan_only || !(quick || filter.is_some() || no_strongswan))
                .then(|| bench::strongswan::Options {
                    script: strongswan_script,
                    espresso: gateway,
                    tcp_s: strongswan_seconds,
                    udp_s: strongswan_seconds,
                    out: out.join("strongswan.json"),
                });
            // ipsec-secgw runs with the cases; without it the comparison
            // the lab exists for is missing, so only an explicit
            // --no-secgw skips it.
            let secgw = if no_secgw || cases.is_empty() {
                None
            } else {
                let path = match secgw {
                    Some(p) => p,
                    None => bench::secgw::default_binary(&espresso)
                        .map_err(|e| format!("ipsec-secgw: {e}"))?,
                };
                if !path.is_file() {
                    return Err(format!(
                        "ipsec-secgw not found at {}: run `make secgw` (make bench builds it), \
                         give --secgw PATH, or --no-secgw",
                        path.display()
                    )
                    .into());
                }
                Some(path)
            };
            if repetitions == 0 {
                return Err("--repetitions must be at least 1".into());
            }
            let opts = bench::BenchOptions {
                cases,
                reconf,
                ike_flood,
                repetitions,
                warmup_s: warmup.unwrap_or(if quick { 0.2 } else { 0.5 }),
                duration_s: duration.unwrap_or(if quick { 0.3 } else { 1.0 }),
                out_dir: out.clone(),
                worker_core,
                testpmd,
                secgw,
                espresso,
                product,
                plots: !no_plots,
                command: std::env::args().collect::<Vec<_>>().join(" "),
                strongswan,
                latency,
            };
            eprintln!(
                "espresso-lab bench: {} cases x {} runs, each with its testpmd baseline{}; {} reconfiguration cases; {} IKE flood cases; {} latency cases{}",
                opts.cases.len(),
                opts.repetitions,
                opts.secgw
                    .as_ref()
                    .map(|p| format!(" and ipsec-secgw ({})", p.display()))
                    .unwrap_or_default(),
                opts.reconf.len(),
                opts.ike_flood.len(),
                opts.latency.as_ref().map_or(0, |l| l.cases.len()),
                if opts.strongswan.is_some() {
                    "; then Espresso against strongSwan"
                } else {
                    ""
                }
            );
            let report = bench::run(&opts).map_err(|e| e.to_string())?;
            println!(
                "\n{} | commit {} | {} | {}\n",
                report.date, report.commit, report.cpu, report.command
            );
            if !report.cases.is_empty() {
                print!("{}", bench::report::table(&report.cases));
                let refs = bench::report::reference_table(&report.cases);
                if !refs.is_empty() {
                    println!("\nAgainst the references (Mpps wall clock, cycles/packet on CPU; Espresso/secgw and run/secgw: on-CPU Mpps ratios; limit: testpmd + bare AEAD):");
                    print!("{refs}");
                }
            }
            print!(
                "{}",
                bench::latency::table(&report.latency, &report.zero_loss)
            );
            if !report.reconf.is_empty() {
                println!("\nSA installs and deletes while forwarding:");
                print!("{}", bench::reconf::table(&report.reconf));
            }
            if !report.ike_flood.is_empty() {
                println!(
                    "\nIKE_SA_INIT flood against the control thread while peers set up, rekey and probe tunnels ({}, commit {}):",
                    report.date, report.commit
                );
                print!("{}", bench::ike_flood::table(&report.ike_flood));
            }
            if let Some(c) = &report.strongswan {
                println!();
                print!("{}", bench::strongswan::table(c));
            }
            println!(
                "\n{} cases{} in {:.0} s; results: {}/latest.json (and latest.md){}",
                report.cases.len() + report.reconf.len() + report.ike_flood.len(),
                if report.strongswan.is_some() {
                    " and the strongSwan comparison"
                } else {
                    ""
                },
                report.elapsed_s,
                out.display(),
                if no_plots || report.cases.is_empty() {
                    ""
                } else {
                    ", plots: *.png"
                }
            );
            Ok(())
        }
        Command::BenchCase { request } => {
            let req: lab::case::CaseRequest = serde_json::from_str(&request)?;
            let sample = lab::case::run(&req).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchReconf { request } => {
            let req: lab::reconf::ReconfRequest = serde_json::from_str(&request)?;
            let sample = lab::reconf::run(&req).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchIkeFlood { request } => {
            let spec: lab::ike_flood::IkeFloodSpec = serde_json::from_str(&request)?;
            let sample = lab::ike_flood::run(&spec).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchLoadgen { request } => {
            let req: lab::loadgen::LoadgenRequest = serde_json::from_str(&request)?;
            lab::loadgen::serve(&req).map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}
