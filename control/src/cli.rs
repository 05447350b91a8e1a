//! The `espresso` command line, as a clap definition in the library so
//! that the man page and the shell completions are generated from the same
//! source as the parser.

use clap::{Parser, Subcommand};

/// The `espresso` command line.
#[derive(Parser, Debug)]
#[command(name = "espresso", version, about = "Userspace IPsec gateway on DPDK")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Validate a configuration file on the host that will run it: print
    /// every error and warning as `FILE:LINE:COL: error: FIELD: MESSAGE`,
    /// then `FILE: ok` and a summary, or exit with status 1 on errors.
    Check {
        /// The TOML configuration file.
        #[arg(short = 'c', long = "config")]
        config: std::path::PathBuf,
    },
}
