//! `espresso`: the gateway's command line.
#![forbid(unsafe_code)]

#[cfg(have_dpdk)]
use std::sync::atomic::AtomicBool;
#[cfg(have_dpdk)]
use std::sync::Arc;
#[cfg(have_dpdk)]
use std::time::Duration;

use clap::Parser;

use control::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // Text on stderr until `run` has read its configuration (control::logging).
    control::logging::init();
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
    if let Some(r) = control::client::run(&cli) {
        return Ok(r?);
    }
    match cli.command {
        Command::Run {
            config,
            idle_sleep_us,
        } => run_gateway(config, idle_sleep_us),
        Command::Check { config } => {
            // Every error and warning (stderr), then the host's checks (PCI
            // devices and their drivers, hugepages), then `ok` or exit 1.
            let checked = control::config::GatewayConfig::check(&config);
            for p in &checked.problems {
                eprintln!("{p}");
            }
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            match &checked.config {
                Some(gateway) => {
                    let (errors, notes) = control::host::check_report(gateway);
                    if !errors.is_empty() {
                        let at = |e: &String| format!("{}: error: {e}", config.display());
                        return Err(errors
                            .iter()
                            .map(at)
                            .collect::<Vec<_>>()
                            .join(
                                "
",
                            )
                            .into());
                    }
                    let warnings = checked.warnings().count();
                    if warnings == 0 {
                        println!("{}: ok", config.display());
                    } else {
                        println!("{}: ok, {}", config.display(), plural(warnings, "warning"));
                    }
                    println!("{}", gateway.summary());
                    notes.iter().for_each(|n| println!("{n}"));
                    Ok(())
                }
                None => Err(format!(
                    "{}: {}, {}",
                    config.display(),
                    plural(checked.errors().count(), "error"),
                    plural(checked.warnings().count(), "warning")
                )
                .into()),
            }
        }
        Command::Forward {
            ports,
            duration,
            report_every,
            lcores,
            memory,
            eal,
        } => forward(ports, duration, report_every, lcores, memory, eal),
        // Answered by `control::client` above.
        _ => Ok(()),
    }
}

/// Why `run` and `forward` fail in a build without DPDK.
#[cfg(not(have_dpdk))]
const NO_DPDK: &str = "this espresso was built without DPDK (libdpdk-dev was not found at build time): install it (make deps) and rebuild";

#[cfg(have_dpdk)]
fn run_gateway(
    config: std::path::PathBuf,
    idle_sleep_us: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let gateway = control::config::GatewayConfig::load(&config)?;
    let logging = control::logging::init();
    logging.apply_config(&gateway);
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
    let report = control::gateway::run(
        gateway,
        control::gateway::RunOptions {
            config_path: config,
            idle_sleep: Duration::from_micros(idle_sleep_us),
            log_filter: Some(Arc::new(logging.clone())),
            reload_signal: Some(reload),
        },
        stop,
    )
    .map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

#[cfg(not(have_dpdk))]
fn run_gateway(_: std::path::PathBuf, _: u64) -> Result<(), Box<dyn std::error::Error>> {
    Err(NO_DPDK.into())
}

#[cfg(have_dpdk)]
fn forward(
    ports: Vec<String>,
    duration: Option<f64>,
    report_every: Option<f64>,
    lcores: String,
    memory: u32,
    eal: Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    if ports.len() != 2 {
        return Err(format!("--port must be given exactly twice (got {})", ports.len()).into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let eal = dpdk::Eal::init(control::eal_args::eal_args(
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

#[cfg(not(have_dpdk))]
fn forward(
    _: Vec<String>,
    _: Option<f64>,
    _: Option<f64>,
    _: String,
    _: u32,
    _: Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    Err(NO_DPDK.into())
}
