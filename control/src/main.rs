//! `espresso`: the gateway's command line.
#![forbid(unsafe_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dataplane::dpdk::Eal;

#[derive(Parser, Debug)]
#[command(name = "espresso", version, about = "Userspace IPsec gateway on DPDK")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forward frames between two DPDK ports (0 <-> 1) on one lcore and
    /// print the port counters when stopped (SIGINT/SIGTERM or --duration).
    Forward {
        /// DPDK device strings, exactly two, e.g.
        /// `net_af_packet0,iface=veth0`.
        #[arg(long = "port", num_args = 1, required = true)]
        ports: Vec<String>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Print progress every this many seconds.
        #[arg(long)]
        report_every: Option<f64>,
        /// EAL lcore list.
        #[arg(long, default_value = "0")]
        lcores: String,
        /// EAL memory in MiB (no hugepages).
        #[arg(long, default_value_t = 256)]
        memory: u32,
        /// Extra EAL arguments (after `--`).
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Run the gateway described by a configuration file until SIGINT or
    /// SIGTERM; then print the final counters.
    Run {
        /// The TOML configuration file.
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
        /// Microseconds a worker sleeps after a poll that found nothing
        /// (0 spins, as a dedicated core should; the default suits cores
        /// shared with other programs).
        #[arg(long, default_value_t = 20)]
        idle_sleep_us: u64,
    },
    /// Print the counters of a running gateway (ports, workers, every drop
    /// reason, every SA).
    Stats {
        /// The running gateway's configuration file (for its socket).
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
    },
    /// Show a running gateway's IKE tunnels: state, IKE SPIs and
    /// algorithms, Child SA SPIs and algorithms, ages.
    Tunnels {
        /// The running gateway's configuration file (for its socket).
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
    },
    /// Rekey the Child SAs of an IKE tunnel of a running gateway now.
    Rekey {
        /// The running gateway's configuration file (for its socket).
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
        /// The tunnel's name.
        tunnel: String,
    },
    /// Make a running gateway re-read its configuration file and apply SA
    /// and policy changes without stopping traffic.
    Reload {
        /// The running gateway's configuration file.
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
    },
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
        /// `chacha`, `100000SA`, `ike-flood`).
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
        #[arg(long, default_value = control::bench::strongswan::default_script().as_os_str())]
        strongswan_script: std::path::PathBuf,
        /// Skip the latency and zero-loss lab (gateway and testpmd io
        /// driven over net_memif by a generator on the other core, then
        /// the zero-loss search again over veth pairs with net_af_packet,
        /// which needs root).
        #[arg(long)]
        no_latency: bool,
    },
    /// One measured run for `espresso bench` (internal).
    #[command(hide = true)]
    BenchCase {
        /// The run, as JSON.
        #[arg(long)]
        request: String,
    },
    /// One reconfiguration run for `espresso bench` (internal).
    #[command(hide = true)]
    BenchReconf {
        /// The run, as JSON.
        #[arg(long)]
        request: String,
    },
    /// One IKE flood run for `espresso bench` (internal).
    #[command(hide = true)]
    BenchIkeFlood {
        /// The case, as JSON.
        #[arg(long)]
        request: String,
    },
    /// The latency lab's generator and sink for `espresso bench`
    /// (internal): trials as JSON lines on stdin, results on stdout.
    #[command(hide = true)]
    BenchLoadgen {
        /// The generator's set-up, as JSON.
        #[arg(long)]
        request: String,
    },
    /// Validate a configuration file: print `FILE: ok` and a summary, or
    /// the first problem (exit status 1).
    Check {
        /// The TOML configuration file.
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
    },
}

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
            eprintln!("espresso: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run {
            config,
            idle_sleep_us,
        } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
            signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
            let report = control::gateway::run(
                gateway,
                control::gateway::RunOptions {
                    config_path: config,
                    idle_sleep: Duration::from_micros(idle_sleep_us),
                },
                stop,
            )
            .map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }
        Command::Stats { config } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            print!(
                "{}",
                control::gateway::query(&gateway.control.socket, "stats")
                    .map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Command::Tunnels { config } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            print!(
                "{}",
                control::gateway::query(&gateway.control.socket, "tunnels")
                    .map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Command::Rekey { config, tunnel } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            let answer =
                control::gateway::query(&gateway.control.socket, &format!("rekey {tunnel}"))
                    .map_err(|e| e.to_string())?;
            print!("{answer}");
            if answer.starts_with("error") {
                return Err("rekey failed".into());
            }
            Ok(())
        }
        Command::Reload { config } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            let answer = control::gateway::query(&gateway.control.socket, "reload")
                .map_err(|e| e.to_string())?;
            print!("{answer}");
            if answer.starts_with("error") {
                return Err("reload failed".into());
            }
            Ok(())
        }
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
        } => {
            use control::bench;
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
            if let Some(f) = &filter {
                cases.retain(|c| c.name().contains(f.as_str()));
                reconf.retain(|c| c.name().contains(f.as_str()));
                ike_flood.retain(|c| c.name().contains(f.as_str()));
            }
            let mut latency = (!no_latency && !strongswan_only).then(|| {
                if quick {
                    bench::latency::LatencyOptions::quick()
                } else {
                    bench::latency::LatencyOptions::standard()
                }
            });
            if let (Some(l), Some(f)) = (&mut latency, &filter) {
                l.cases.retain(|c| c.name().contains(f.as_str()));
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
            let espresso = std::env::current_exe()?;
            let strongswan = (strongswan_only || !(quick || filter.is_some() || no_strongswan))
                .then(|| bench::strongswan::Options {
                    script: strongswan_script,
                    espresso: espresso.clone(),
                    tcp_s: strongswan_seconds,
                    udp_s: strongswan_seconds,
                    out: out.join("strongswan.json"),
                });
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
                espresso,
                plots: !no_plots,
                command: std::env::args().collect::<Vec<_>>().join(" "),
                strongswan,
                latency,
            };
            eprintln!(
                "espresso bench: {} cases x {} runs, each with its testpmd baseline; {} reconfiguration cases; {} IKE flood cases; {} latency cases{}",
                opts.cases.len(),
                opts.repetitions,
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
            let req: control::bench::case::CaseRequest = serde_json::from_str(&request)?;
            let sample = control::bench::case::run(&req).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchReconf { request } => {
            let req: control::bench::reconf::ReconfRequest = serde_json::from_str(&request)?;
            let sample = control::bench::reconf::run(&req).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchIkeFlood { request } => {
            let spec: control::bench::ike_flood::IkeFloodSpec = serde_json::from_str(&request)?;
            let sample = control::bench::ike_flood::run(&spec).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&sample)?);
            Ok(())
        }
        Command::BenchLoadgen { request } => {
            let req: control::bench::loadgen::LoadgenRequest = serde_json::from_str(&request)?;
            control::bench::loadgen::serve(&req).map_err(|e| e.to_string())?;
            Ok(())
        }
        Command::Check { config } => {
            let gateway = control::config::GatewayConfig::load(&config)?;
            println!("{}: ok", config.display());
            println!("{}", gateway.summary());
            Ok(())
        }
        Command::Forward {
            ports,
            duration,
            report_every,
            lcores,
            memory,
            eal,
        } => {
            if ports.len() != 2 {
                return Err(
                    format!("--port must be given exactly twice (got {})", ports.len()).into(),
                );
            }
            let stop = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
            signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
            let eal = Eal::init(control::eal_args::eal_args(
                "espresso", &lcores, memory, &eal,
            ))?;
            let report = control::forward::run(
                &eal,
                [&ports[0], &ports[1]],
                duration.map(Duration::from_secs_f64),
                report_every.map(Duration::from_secs_f64),
                stop,
            )?;
            println!("{report}");
            if report.pool_free_before != report.pool_free_after {
                return Err("mbufs leaked".into());
            }
            Ok(())
        }
    }
}
