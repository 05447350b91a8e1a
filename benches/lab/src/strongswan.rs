//! Espresso against strongSwan through the two-site topology, in the same
//! run: `scripts/vs-strongswan.sh` builds hostA - gwA - WAN - gwB - hostB in
//! network namespaces once per system (strongSwan 5.9 with kernel-libipsec
//! on both gateways, then Espresso on both, then the kernel forwarding
//! without IPsec as the topology's ceiling), measures iperf3 TCP and
//! 64-byte UDP host to host, and writes a JSON result; this module runs it,
//! reads the result into [`Comparison`] (its own record in `latest.json`)
//! and prints it.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The system that is Espresso, and the one it is compared with.
pub const ESPRESSO: &str = "espresso";
/// strongSwan with kernel-libipsec on both gateways.
pub const STRONGSWAN: &str = "strongswan";

/// How to run the comparison.
#[derive(Debug, Clone)]
pub struct Options {
    /// `scripts/vs-strongswan.sh`.
    pub script: PathBuf,
    /// The `espresso` binary the gateways run.
    pub espresso: PathBuf,
    /// Seconds of iperf3 TCP per system.
    pub tcp_s: u32,
    /// Seconds of iperf3 UDP per system.
    pub udp_s: u32,
    /// Where the script writes its JSON.
    pub out: PathBuf,
}

/// One system's figures, host to host through both of its gateways.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemRecord {
    /// `strongswan`, `espresso` or `plain` (kernel forwarding, no IPsec).
    pub system: String,
    /// Its version string.
    pub version: String,
    /// The ESP algorithm (none for `plain`).
    pub esp: Option<String>,
    /// ESP in UDP 4500 (RFC 3948).
    pub udp_encap: bool,
    /// Seconds of the TCP run.
    pub tcp_seconds: f64,
    /// The TCP receiver's goodput, Gbit/s.
    pub tcp_gbps: f64,
    /// TCP retransmissions (the sender's count).
    pub tcp_retransmits: u64,
    /// Packets gwA sent on the WAN during the TCP run.
    pub tcp_wan_packets: u64,
    /// CPU seconds both gateway processes used during the TCP run (none
    /// when the kernel forwards).
    pub tcp_gateway_cpu_s: Option<f64>,
    /// UDP payload bytes per datagram.
    pub udp_payload_bytes: u32,
    /// Seconds of the UDP run (the receiver's).
    pub udp_seconds: f64,
    /// Datagrams sent.
    pub udp_sent_packets: u64,
    /// Datagrams that did not arrive.
    pub udp_lost_packets: u64,
    /// Datagrams sent per second.
    pub udp_sent_pps: f64,
    /// Datagrams received per second.
    pub udp_received_pps: f64,
    /// Lost, percent of sent.
    pub udp_loss_percent: f64,
    /// Packets gwA sent on the WAN during the UDP run.
    pub udp_wan_packets: u64,
}

impl SystemRecord {
    /// Gateway CPU seconds per gigabit delivered over TCP.
    pub fn cpu_s_per_gbit(&self) -> Option<f64> {
        let gbit = self.tcp_gbps * self.tcp_seconds;
        self.tcp_gateway_cpu_s
            .filter(|_| gbit > 0.0)
            .map(|cpu| cpu / gbit)
    }
}

/// The comparison's record in `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// When the script started (RFC 3339 UTC).
    pub date: String,
    /// The topology, in words.
    pub topology: String,
    /// Seconds of TCP per system.
    pub tcp_seconds: f64,
    /// Seconds of UDP per system.
    pub udp_seconds: f64,
    /// UDP payload bytes per datagram.
    pub udp_payload_bytes: u32,
    /// One record per system, in the order they ran.
    pub systems: Vec<SystemRecord>,
    /// Espresso's TCP Gbit/s over strongSwan's.
    pub tcp_ratio: Option<f64>,
    /// Espresso's received UDP packets per second over strongSwan's.
    pub udp_ratio: Option<f64>,
}

impl Comparison {
    /// The record of a system.
    pub fn system(&self, name: &str) -> Option<&SystemRecord> {
        self.systems.iter().find(|s| s.system == name)
    }

    /// Espresso's gateway CPU per gigabit over strongSwan's: how many times
    /// less CPU Espresso's gateways spend per bit.
    pub fn cpu_efficiency_ratio(&self) -> Option<f64> {
        let e = self.system(ESPRESSO)?.cpu_s_per_gbit()?;
        let s = self.system(STRONGSWAN)?.cpu_s_per_gbit()?;
        (e > 0.0).then(|| s / e)
    }
}

/// Runs the script (its progress goes to stderr) and reads its result.
pub fn run(opts: &Options) -> Result<Comparison, Error> {
    // A result left by an earlier run must not pass for this one's.
    match std::fs::remove_file(&opts.out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let progress = std::io::stderr().as_fd().try_clone_to_owned()?;
    let status = Command::new("bash")
        .arg(&opts.script)
        .arg(&opts.out)
        .env("ESPRESSO_BIN", &opts.espresso)
        .env("TCP_S", opts.tcp_s.to_string())
        .env("UDP_S", opts.udp_s.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(progress))
        .status()?;
    let text = std::fs::read_to_string(&opts.out).map_err(|e| {
        format!(
            "{} ({status}) wrote no result to {}: {e}",
            opts.script.display(),
            opts.out.display()
        )
    })?;
    let comparison = parse(&text)?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}): a system did not carry the traffic through its gateways",
            opts.script.display()
        )
        .into());
    }
    Ok(comparison)
}

/// Reads the script's JSON; both IPsec systems must be in it.
pub fn parse(text: &str) -> Result<Comparison, Error> {
    let c: Comparison = serde_json::from_str(text)?;
    for name in [STRONGSWAN, ESPRESSO] {
        if c.system(name).is_none() {
            return Err(format!("the comparison has no {name} record").into());
        }
    }
    Ok(c)
}

/// The default script path, relative to the repository root.
pub fn default_script() -> &'static Path {
    Path::new("scripts/vs-strongswan.sh")
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

fn ratios(c: &Comparison) -> String {
    format!(
        "Espresso / strongSwan: TCP {}x, UDP {}x (received packets per second); gateway CPU per bit: {}x less",
        fmt_opt(c.tcp_ratio, 2),
        fmt_opt(c.udp_ratio, 2),
        fmt_opt(c.cpu_efficiency_ratio(), 1)
    )
}

/// The comparison as a text table.
pub fn table(c: &Comparison) -> String {
    let mut s = format!(
        "Through the two-site netns topology (iperf3 host to host, TCP {:.0} s, UDP {} B datagrams {:.0} s):\n",
        c.tcp_seconds, c.udp_payload_bytes, c.udp_seconds
    );
    s.push_str(&format!(
        "{:<11} {:<26} | {:>8} {:>8} {:>11} | {:>9} {:>9} {:>6}\n",
        "system", "version", "TCP Gb/s", "retrans", "CPU s/Gbit", "UDP kpps", "sent kpps", "loss %"
    ));
    for r in &c.systems {
        s.push_str(&format!(
            "{:<11} {:<26} | {:>8.3} {:>8} {:>11} | {:>9.1} {:>9.1} {:>6.1}\n",
            r.system,
            r.version,
            r.tcp_gbps,
            r.tcp_retransmits,
            fmt_opt(r.cpu_s_per_gbit(), 2),
            r.udp_received_pps / 1e3,
            r.udp_sent_pps / 1e3,
            r.udp_loss_percent
        ));
    }
    s.push_str(&ratios(c));
    s.push('\n');
    s
}

/// The comparison in Markdown (for README.md).
pub fn markdown(c: &Comparison) -> String {
    let mut s = format!(
        "| system | version | TCP Gbit/s | TCP retransmits | gateway CPU s per Gbit | UDP {} B received kpps | sent kpps | loss % |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
        c.udp_payload_bytes
    );
    for r in &c.systems {
        s.push_str(&format!(
            "| {} | {} | {:.3} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            r.system,
            r.version,
            r.tcp_gbps,
            r.tcp_retransmits,
            fmt_opt(r.cpu_s_per_gbit(), 2),
            r.udp_received_pps / 1e3,
            r.udp_sent_pps / 1e3,
            r.udp_loss_percent
        ));
    }
    s.push('\n');
    s.push_str(&ratios(c));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result vs-strongswan.sh wrote on the development machine
    /// (shortened to the two IPsec systems).
    const RESULT: &str = r#"{
  "date": "2026-11-27T17:35:19Z",
  "topology": "hostA - gwA - WAN - gwB - hostB",
  "tcp_seconds": 10.0, "udp_seconds": 10.0, "udp_payload_bytes": 64,
  "systems": [
    {"system": "strongswan", "version": "Linux strongSwan 5.9.8", "esp": "aes128gcm16",
     "udp_encap": true, "tcp_seconds": 10.00009, "tcp_gbps": 0.5838926609223294,
     "tcp_retransmits": 65831, "tcp_wan_packets": 607725, "tcp_gateway_cpu_s": 13.21,
     "udp_payload_bytes": 64, "udp_seconds": 10.212163, "udp_sent_packets": 2333710,
     "udp_lost_packets": 2056768, "udp_sent_pps": 228522.59604551943,
     "udp_received_pps": 27118.838584930538, "udp_loss_percent": 88.1329728201019,
     "udp_wan_packets": 798357},
    {"system": "espresso", "version": "espresso 0.1.0", "esp": "aes128gcm16",
     "udp_encap": true, "tcp_seconds": 10.0, "tcp_gbps": 1.501, "tcp_retransmits": 0,
     "tcp_wan_packets": 1354481, "tcp_gateway_cpu_s": 7.39, "udp_payload_bytes": 64,
     "udp_seconds": 10.0, "udp_sent_packets": 2263000, "udp_lost_packets": 1673000,
     "udp_sent_pps": 226300.0, "udp_received_pps": 59000.0, "udp_loss_percent": 73.9,
     "udp_wan_packets": 1959737}
  ],
  "tcp_ratio": 2.5706, "udp_ratio": 2.1756
}"#;

    #[test]
    fn reads_the_scripts_result() {
        let c = parse(RESULT).unwrap();
        assert_eq!(c.systems.len(), 2);
        let s = c.system(STRONGSWAN).unwrap();
        assert_eq!(s.tcp_retransmits, 65831);
        assert_eq!(s.esp.as_deref(), Some("aes128gcm16"));
        assert!((c.tcp_ratio.unwrap() - 2.5706).abs() < 1e-9);
    }

    #[test]
    fn cpu_per_gigabit() {
        let c = parse(RESULT).unwrap();
        let s = c.system(STRONGSWAN).unwrap().cpu_s_per_gbit().unwrap();
        let e = c.system(ESPRESSO).unwrap().cpu_s_per_gbit().unwrap();
        assert!((s - 13.21 / (0.5838926609223294 * 10.00009)).abs() < 1e-9);
        assert!((e - 7.39 / 15.01).abs() < 1e-9);
        assert!((c.cpu_efficiency_ratio().unwrap() - s / e).abs() < 1e-9);
        let mut plain = c.systems[0].clone();
        plain.tcp_gateway_cpu_s = None;
        assert_eq!(plain.cpu_s_per_gbit(), None);
    }

    #[test]
    fn a_result_without_espresso_is_refused() {
        let mut c = parse(RESULT).unwrap();
        c.systems.retain(|s| s.system != ESPRESSO);
        let text = serde_json::to_string(&c).unwrap();
        assert!(parse(&text)
            .unwrap_err()
            .to_string()
            .contains("no espresso"));
    }

    #[test]
    fn tables_carry_every_system_and_the_ratios() {
        let c = parse(RESULT).unwrap();
        for t in [table(&c), markdown(&c)] {
            assert!(t.contains("Linux strongSwan 5.9.8"), "{t}");
            assert!(t.contains("| 1.501 |") || t.contains("   1.501 "), "{t}");
            assert!(t.contains("TCP 2.57x, UDP 2.18x"), "{t}");
        }
    }
}
