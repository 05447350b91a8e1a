//! The `espresso` command line, as a clap definition in the library so
//! that the man page and the shell completions are generated from the same
//! source as the parser.

use clap::{Args, Parser, Subcommand};

/// The `espresso` command line.
#[derive(Parser, Debug)]
#[command(name = "espresso", version, about = "Userspace IPsec gateway on DPDK")]
pub struct Cli {
    /// The running gateway's control socket (default: `[control] socket`
    /// of the file given with -c, else /run/espresso/espresso.sock).
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub socket: Option<std::path::PathBuf>,
    /// Read the control socket's path from this configuration file.
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Print the command's result as JSON (the API's `result`) rather than
    /// as text.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `-c CONFIG` after a client command, as earlier versions took it.
#[derive(Args, Debug, Default, Clone)]
pub struct ConfigAfter {
    /// The running gateway's configuration file (for its socket).
    #[arg(short = 'c', long = "config", value_name = "CONFIG", hide = true)]
    pub config: Option<std::path::PathBuf>,
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
    /// Show the running gateway's program and control protocol versions.
    Version {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show every tunnel (manual and IKE): state, peer, IKE SA and Child
    /// SAs with SPIs, algorithms and ages.
    Tunnels {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the IKE SAs and the Child SAs (with packet and byte counters).
    Sas {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the IKE SAs: SPIs, role, algorithms, addresses, age.
    IkeSas {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the Child SAs: SPIs in and out, algorithm, tunnel, age,
    /// packets and bytes.
    ChildSas {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the security policy database as configured.
    Policies {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the routing table (connected and static routes).
    Routes {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Show the static and learned neighbours (ARP/ND).
    Neighbours {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Print the counters of a running gateway (ports, workers, every drop
    /// reason, every SA), one `name value` per line.
    Stats {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Rekey the Child SAs of an IKE tunnel of a running gateway now.
    Rekey {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name.
        tunnel: String,
    },
    /// Send the established clients of an IKE tunnel to another gateway
    /// (RFC 5685 redirect, e.g. before maintenance); clients that did not
    /// announce REDIRECT_SUPPORTED stay.
    Redirect {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name.
        tunnel: String,
        /// The gateway: an IP address or a host name.
        gateway: String,
    },
    /// Make a running gateway re-read its configuration file and apply SA
    /// and policy changes without stopping traffic (as SIGHUP does).
    Reload {
        #[command(flatten)]
        c: ConfigAfter,
    },
    /// Add a tunnel from the configuration file to the running gateway, or
    /// update it, leaving every other tunnel as it runs.
    Load {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name in the file.
        tunnel: String,
    },
    /// Remove a tunnel from the running gateway (IKE: DELETE sent to the
    /// peer), leaving every other tunnel as it runs.
    Unload {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name.
        tunnel: String,
    },
    /// Start IKE for a tunnel now.
    Initiate {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name.
        tunnel: String,
    },
    /// Delete a tunnel's IKE SA and its Child SAs (DELETE sent to the
    /// peer); `initiate` brings it back.
    Terminate {
        #[command(flatten)]
        c: ConfigAfter,
        /// The tunnel's name.
        tunnel: String,
    },
    /// Show the running gateway's log filter, or set it.
    Log {
        #[command(flatten)]
        c: ConfigAfter,
        /// The new filter (`tracing` env-filter syntax, e.g.
        /// `info,control::ike_driver=debug`).
        filter: Option<String>,
    },
    /// Print the running gateway's events (tunnels up and down, SAs
    /// established, rekeyed, expired and deleted, DPD timeouts,
    /// authentication failures, reloads), one per line, until
    /// interrupted.
    Events {
        #[command(flatten)]
        c: ConfigAfter,
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
