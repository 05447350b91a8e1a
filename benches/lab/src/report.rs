//! Results: per-case records (medians over the repetitions, each next to
//! its baseline from the same run), the table and `latest.json`.

use serde::{Deserialize, Serialize};

use super::case::RunSample;
use super::spec::CaseSpec;

/// One figure set: a rate and what follows from it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    /// Million packets per wall-clock second.
    pub mpps: f64,
    /// Gigabits per second of inner (plaintext) IP bytes.
    pub gbps: f64,
    /// TSC cycles the forwarding thread ran per packet (its on-CPU time
    /// times the TSC frequency, over the packets).
    pub cycles_per_packet: f64,
    /// Million packets per second the forwarding thread was on a CPU.
    pub oncpu_mpps: f64,
}

/// The median of some values (the mean of the middle two for an even
/// count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Rate {
    /// The figures of one run; `mean_ip_len` is the average plaintext IP
    /// packet length of the pcap.
    pub fn of(s: &RunSample, mean_ip_len: f64) -> Self {
        let pps = s.packets as f64 / s.wall_s;
        Self {
            mpps: pps / 1e6,
            gbps: pps * mean_ip_len * 8.0 / 1e9,
            cycles_per_packet: s.cpu_s * s.tsc_hz as f64 / s.packets as f64,
            oncpu_mpps: s.packets as f64 / s.cpu_s / 1e6,
        }
    }

    /// Field-wise medians of several runs.
    pub fn median_of(rates: &[Rate]) -> Self {
        let m = |f: fn(&Rate) -> f64| median(&rates.iter().map(f).collect::<Vec<_>>());
        Self {
            mpps: m(|r| r.mpps),
            gbps: m(|r| r.gbps),
            cycles_per_packet: m(|r| r.cycles_per_packet),
            oncpu_mpps: m(|r| r.oncpu_mpps),
        }
    }
}

/// One case's record in `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseRecord {
    /// `encrypt` or `decrypt`.
    pub direction: String,
    /// strongSwan-style suite name.
    pub algorithm: String,
    /// The crypto backend the gateway used.
    pub backend: String,
    /// `64`, `512`, `1420` or `imix` (RFC 2544 frame sizes, FCS included).
    pub frame_size: String,
    /// ESP in UDP port 4500.
    pub udp_encap: bool,
    /// SAs (and policies), traffic spread over all.
    pub sa_count: u32,
    /// Frames in the pcap (the case and its baseline replay the same).
    #[serde(default)]
    pub pcap_frames: usize,
    /// Nonzero for the SA-count series, whose cases all replay pcaps of
    /// the same length (see [`CaseSpec::scale_frames`]).
    #[serde(default)]
    pub scale_frames: u32,
    /// Gateway: median million packets per second (wall clock).
    pub mpps: f64,
    /// Gateway: median Gbit/s of inner IP bytes.
    pub gbps: f64,
    /// Gateway: median TSC cycles per packet of worker on-CPU time.
    pub cycles_per_packet: f64,
    /// Gateway: median million packets per on-CPU second.
    pub oncpu_mpps: f64,
    /// testpmd io forwarding on the same pcap: median Mpps.
    pub baseline_mpps: f64,
    /// Baseline median Gbit/s (same inner-IP-byte accounting).
    pub baseline_gbps: f64,
    /// Baseline median cycles per packet.
    pub baseline_cycles_per_packet: f64,
    /// Baseline median Mpps per on-CPU second.
    pub baseline_oncpu_mpps: f64,
    /// `mpps / baseline_mpps`.
    pub ratio: f64,
    /// `oncpu_mpps / baseline_oncpu_mpps`.
    pub oncpu_ratio: f64,
    /// Frames dropped in the gateway's windows (all repetitions).
    pub dropped: u64,
    /// Median TSC cycles of the bare AEAD call on one frame's ESP payload
    /// (same backend and core, measured after the windows of the case's
    /// process); fixed sizes only.
    #[serde(default)]
    pub aead_cycles_per_packet: Option<f64>,
    /// `aead_cycles_per_packet / (cycles_per_packet −
    /// baseline_cycles_per_packet)`: the AEAD's share of the gateway's own
    /// cycles (the target at 1420 B, docs/performance.md: at least 0.80).
    #[serde(default)]
    pub aead_share: Option<f64>,
    /// Share of outbound SPD lookups the worker's flow cache answered (all
    /// repetitions; NaN when there were none, as in decrypt cases).
    #[serde(default)]
    pub spd_cache_hit_rate: f64,
    /// Cache lines of per-SA state per packet ([`RunSample::sa_lines`]):
    /// with more SAs than the cache holds, the misses each packet brings.
    #[serde(default)]
    pub sa_lines_per_packet: Option<f64>,
    /// Every gateway run.
    pub runs: Vec<Rate>,
    /// Every baseline run.
    pub baseline_runs: Vec<Rate>,
    /// The physical limit of this case on this core: the testpmd-io
    /// baseline's cycles per packet plus the bare AEAD call's on the same
    /// payload (`None` where the AEAD was not measured).
    #[serde(default)]
    pub limit_cycles_per_packet: Option<f64>,
    /// `cycles_per_packet / limit_cycles_per_packet`: how far the gateway
    /// is from moving packets and encrypting them and nothing else.
    #[serde(default)]
    pub distance_to_limit: Option<f64>,
    /// The product: `espresso run` with a generated config file on the
    /// same traffic ([`super::product`]).
    #[serde(default)]
    pub product: Option<SystemRecord>,
    /// DPDK's `ipsec-secgw` on the same traffic and SAs
    /// ([`super::secgw`]).
    #[serde(default)]
    pub secgw: Option<SystemRecord>,
}

/// Another system measured on a case, in the same run as the lab's
/// gateway and its testpmd baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemRecord {
    /// `espresso run` or `ipsec-secgw`.
    pub system: String,
    /// Median figures over the windows (none when not measured).
    pub rate: Option<Rate>,
    /// Frames the system dropped in its windows (all repetitions).
    pub dropped: u64,
    /// Every run.
    pub runs: Vec<Rate>,
    /// How its output was checked before its speed counted (e.g.
    /// "2048 frames decrypted by scapy"), or why it was not.
    pub verified: String,
    /// Why there is no figure (the system cannot run this case), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl SystemRecord {
    /// The record of a measured system.
    pub fn measured(system: &str, spec: &CaseSpec, runs: &[RunSample], verified: String) -> Self {
        let ip = spec.frame.mean_ip_len();
        let r: Vec<Rate> = runs.iter().map(|s| Rate::of(s, ip)).collect();
        Self {
            system: system.into(),
            rate: Some(Rate::median_of(&r)),
            dropped: runs.iter().map(|s| s.dropped).sum(),
            runs: r,
            verified,
            unavailable: None,
        }
    }

    /// The record of a system that cannot run the case, and why.
    pub fn unavailable(system: &str, why: String) -> Self {
        Self {
            system: system.into(),
            rate: None,
            dropped: 0,
            runs: Vec::new(),
            verified: String::new(),
            unavailable: Some(why),
        }
    }

    /// Whether it has figures.
    pub fn is_measured(&self) -> bool {
        self.unavailable.is_none() && self.rate.is_some()
    }
}

impl CaseRecord {
    /// The lab's gateway against ipsec-secgw, CPU-normalised (on-CPU Mpps
    /// over on-CPU Mpps: both poll, so wall-clock rates would compare the
    /// machine's other load); `None` without a secgw figure.
    pub fn vs_secgw(&self) -> Option<f64> {
        let s = self.secgw.as_ref()?.rate?;
        Some(self.oncpu_mpps / s.oncpu_mpps)
    }

    /// The product (`espresso run`) against ipsec-secgw, CPU-normalised.
    pub fn product_vs_secgw(&self) -> Option<f64> {
        let s = self.secgw.as_ref()?.rate?;
        let p = self.product.as_ref()?.rate?;
        Some(p.oncpu_mpps / s.oncpu_mpps)
    }

    /// The product's cycles per packet; `None` without a figure.
    pub fn product_cycles(&self) -> Option<f64> {
        Some(self.product.as_ref()?.rate?.cycles_per_packet)
    }

    /// The product against the lab's in-process gateway (1.0: no gap).
    pub fn product_vs_lab(&self) -> Option<f64> {
        let p = self.product.as_ref()?.rate?;
        Some(p.oncpu_mpps / self.oncpu_mpps)
    }
}

impl CaseRecord {
    /// Builds the record from the runs of a case and of its baseline.
    pub fn new(spec: &CaseSpec, runs: &[RunSample], baseline: &[RunSample]) -> Self {
        let ip = spec.frame.mean_ip_len();
        let g: Vec<Rate> = runs.iter().map(|s| Rate::of(s, ip)).collect();
        let b: Vec<Rate> = baseline.iter().map(|s| Rate::of(s, ip)).collect();
        let gm = Rate::median_of(&g);
        let bm = Rate::median_of(&b);
        let aead_runs: Vec<f64> = runs.iter().filter_map(|r| r.aead_cycles).collect();
        // The bare call the lab times is one packet's seal or open. For an
        // AEAD that is the crypto the gateway runs per packet; CBC + HMAC
        // runs a burst's packets through ipsec-mb's multi-buffer manager
        // at once, whose cost per packet a one-packet call (a batch of one,
        // its lanes empty) overstates several times. So no limit, share or
        // distance is derived for non-AEAD suites.
        let aead = (!aead_runs.is_empty() && spec.algorithm.algorithm().is_aead())
            .then(|| median(&aead_runs));
        Self {
            direction: spec.direction.name().into(),
            algorithm: spec.algorithm.name().into(),
            backend: runs.first().map(|r| r.backend.clone()).unwrap_or_default(),
            frame_size: spec.frame.label(),
            udp_encap: spec.udp_encap,
            sa_count: spec.sa_count,
            pcap_frames: super::traffic::frame_count(spec),
            scale_frames: spec.scale_frames,
            mpps: gm.mpps,
            gbps: gm.gbps,
            cycles_per_packet: gm.cycles_per_packet,
            oncpu_mpps: gm.oncpu_mpps,
            baseline_mpps: bm.mpps,
            baseline_gbps: bm.gbps,
            baseline_cycles_per_packet: bm.cycles_per_packet,
            baseline_oncpu_mpps: bm.oncpu_mpps,
            ratio: gm.mpps / bm.mpps,
            oncpu_ratio: gm.oncpu_mpps / bm.oncpu_mpps,
            dropped: runs.iter().map(|r| r.dropped).sum(),
            aead_cycles_per_packet: aead,
            aead_share: super::aead::share(aead, gm.cycles_per_packet, bm.cycles_per_packet),
            spd_cache_hit_rate: {
                let hits: u64 = runs.iter().map(|r| r.spd_cache_hits).sum();
                let misses: u64 = runs.iter().map(|r| r.spd_cache_misses).sum();
                hits as f64 / (hits + misses) as f64
            },
            sa_lines_per_packet: runs.iter().find_map(|r| r.sa_lines),
            runs: g,
            baseline_runs: b,
            limit_cycles_per_packet: aead.map(|a| a + bm.cycles_per_packet),
            distance_to_limit: aead.map(|a| gm.cycles_per_packet / (a + bm.cycles_per_packet)),
            product: None,
            secgw: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// UTC date and time of the run (RFC 3339).
    pub date: String,
    /// The commit the run was made from (`git describe --always --dirty`).
    #[serde(default)]
    pub commit: String,
    /// `lscpu`'s model name.
    pub cpu: String,
    /// The command line.
    pub command: String,
    /// TSC frequency in Hz.
    pub tsc_hz: u64,
    /// Repetitions per case (the figures are medians).
    pub repetitions: usize,
    /// Warm-up seconds per process.
    pub warmup_s: f64,
    /// Measured seconds per window.
    pub duration_s: f64,
    /// Wall-clock seconds the whole run took.
    pub elapsed_s: f64,
    /// How the figures were taken, in one paragraph.
    pub method: String,
    /// One record per case.
    pub cases: Vec<CaseRecord>,
    /// Espresso against strongSwan through the two-site topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strongswan: Option<super::strongswan::Comparison>,
    /// One record per reconfiguration case.
    #[serde(default)]
    pub reconf: Vec<super::reconf::ReconfRecord>,
    /// One record per IKE flood case.
    #[serde(default)]
    pub ike_flood: Vec<super::ike_flood::IkeFloodRecord>,
    /// How the latency and zero-loss figures were taken (empty if they
    /// were not).
    #[serde(default)]
    pub latency_method: String,
    /// One-way latency per case, DUT and load point.
    #[serde(default)]
    pub latency: Vec<super::latency::LatencyRecord>,
    /// Maximum and zero-loss rate per case and DUT.
    #[serde(default)]
    pub zero_loss: Vec<super::latency::ZeroLossRecord>,
}

/// The table, one line per case.
pub fn table(cases: &[CaseRecord]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<8} {:<17} {:>5} {:>4} {:>6} {:>6} | {:>7} {:>7} {:>8} {:>7} {:>5} | {:>7} {:>7} {:>8} | {:>6} {:>6} | {:>5} {:>5} | {:>8} {:>6}\n",
        "dir", "algorithm", "frame", "udp", "SAs", "frames", "Mpps", "Gbps", "cyc/pkt", "cpuMpps",
        "lines", "tpMpps", "tpGbps", "tpcyc/p", "ratio", "cpu-r", "aead", "share", "runcyc/p", "run/lab"
    ));
    for c in cases {
        s.push_str(&format!(
            "{:<8} {:<17} {:>5} {:>4} {:>6} {:>6} | {:>7.3} {:>7.2} {:>8.0} {:>7.3} {:>5} | {:>7.3} {:>7.2} {:>8.0} | {:>6.3} {:>6.3} | {:>5} {:>5} | {:>8} {:>6}\n",
            c.direction,
            c.algorithm,
            c.frame_size,
            if c.udp_encap { "yes" } else { "no" },
            c.sa_count,
            c.pcap_frames,
            c.mpps,
            c.gbps,
            c.cycles_per_packet,
            c.oncpu_mpps,
            opt(c.sa_lines_per_packet, 1),
            c.baseline_mpps,
            c.baseline_gbps,
            c.baseline_cycles_per_packet,
            c.ratio,
            c.oncpu_ratio,
            opt(c.aead_cycles_per_packet, 0),
            opt(c.aead_share, 2),
            opt(c.product_cycles(), 0),
            opt(c.product_vs_lab(), 3),
        ));
    }
    s
}

/// `v` with `decimals`, or `-`.
fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

/// The same table in Markdown (for README.md).
pub fn markdown_table(cases: &[CaseRecord]) -> String {
    let mut s = String::from(
        "| direction | algorithm | frame | UDP | SAs | pcap frames | Mpps | Gbps | cycles/pkt | on-CPU Mpps | per-SA lines/pkt | testpmd Mpps | testpmd Gbps | testpmd cycles/pkt | ratio | on-CPU ratio | AEAD cycles | AEAD share | espresso run cycles/pkt | espresso run / lab (on-CPU) |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cases {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.2} | {:.0} | {:.3} | {} | {:.3} | {:.2} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} |\n",
            c.direction,
            c.algorithm,
            c.frame_size,
            if c.udp_encap { "yes" } else { "no" },
            c.sa_count,
            c.pcap_frames,
            c.mpps,
            c.gbps,
            c.cycles_per_packet,
            c.oncpu_mpps,
            opt(c.sa_lines_per_packet, 1),
            c.baseline_mpps,
            c.baseline_gbps,
            c.baseline_cycles_per_packet,
            c.ratio,
            c.oncpu_ratio,
            opt(c.aead_cycles_per_packet, 0),
            opt(c.aead_share, 2),
            opt(c.product_cycles(), 0),
            opt(c.product_vs_lab(), 3),
        ));
    }
    s
}

/// The columns of the table against the references.
const REFERENCE_HEAD: [&str; 17] = [
    "dir",
    "algorithm",
    "frame",
    "UDP",
    "SAs",
    "Espresso Mpps",
    "cyc/pkt",
    "espresso run Mpps",
    "cyc/pkt",
    "ipsec-secgw Mpps",
    "cyc/pkt",
    "testpmd Mpps",
    "cyc/pkt",
    "Espresso/secgw",
    "run/secgw",
    "limit cyc/pkt",
    "to limit",
];

/// A system's (Mpps, cycles/packet) cells: `-` when not run, `n/a` when
/// it could not do the case.
fn system_cells(r: Option<&SystemRecord>) -> [String; 2] {
    match r {
        None => ["-".into(), "-".into()],
        Some(r) => match (&r.rate, &r.unavailable) {
            (Some(x), None) => [
                format!("{:.3}", x.mpps),
                format!("{:.0}", x.cycles_per_packet),
            ],
            _ => ["n/a".into(), "n/a".into()],
        },
    }
}

fn reference_rows(cases: &[CaseRecord]) -> Vec<[String; 17]> {
    cases
        .iter()
        .map(|c| {
            let [rm, rc] = system_cells(c.product.as_ref());
            let [sm, sc] = system_cells(c.secgw.as_ref());
            [
                c.direction.clone(),
                c.algorithm.clone(),
                c.frame_size.clone(),
                if c.udp_encap { "yes" } else { "no" }.into(),
                c.sa_count.to_string(),
                format!("{:.3}", c.mpps),
                format!("{:.0}", c.cycles_per_packet),
                rm,
                rc,
                sm,
                sc,
                format!("{:.3}", c.baseline_mpps),
                format!("{:.0}", c.baseline_cycles_per_packet),
                opt(c.vs_secgw(), 2),
                opt(c.product_vs_secgw(), 2),
                opt(c.limit_cycles_per_packet, 0),
                opt(c.distance_to_limit, 2),
            ]
        })
        .collect()
}

/// Why some systems have no figure for some cases: one line per system
/// and reason, naming the cases (or their count).
fn reference_notes(cases: &[CaseRecord]) -> Vec<String> {
    let mut notes: Vec<(String, String, Vec<String>)> = Vec::new();
    for c in cases {
        for r in [c.secgw.as_ref(), c.product.as_ref()].into_iter().flatten() {
            let Some(why) = &r.unavailable else { continue };
            let name = format!(
                "{} {} {}{}{}{}",
                c.direction,
                c.algorithm,
                c.frame_size,
                if c.udp_encap { " udp" } else { "" },
                if c.sa_count != 1 {
                    format!(" {}SA", c.sa_count)
                } else {
                    String::new()
                },
                if c.scale_frames != 0 {
                    format!(" {}fr", c.scale_frames)
                } else {
                    String::new()
                }
            );
            match notes.iter_mut().find(|n| n.0 == r.system && &n.1 == why) {
                Some(n) => n.2.push(name),
                None => notes.push((r.system.clone(), why.clone(), vec![name])),
            }
        }
    }
    notes
        .into_iter()
        .map(|(system, why, names)| {
            let which = if names.len() <= 4 {
                names.join(", ")
            } else {
                format!("{} cases", names.len())
            };
            format!("{system} n/a ({which}): {why}")
        })
        .collect()
}

fn has_references(cases: &[CaseRecord]) -> bool {
    cases
        .iter()
        .any(|c| c.secgw.is_some() || c.product.is_some())
}

/// Espresso (the lab's in-process gateway), the product (`espresso run`),
/// DPDK's ipsec-secgw and testpmd io side by side: Mpps (wall clock) and
/// cycles per packet of each, Espresso and the product against secgw
/// (on-CPU Mpps ratios: above 1 is faster than secgw per CPU second), the
/// physical limit (testpmd + bare AEAD cycles) and Espresso's distance to
/// it. Empty when no reference ran.
pub fn reference_table(cases: &[CaseRecord]) -> String {
    if !has_references(cases) {
        return String::new();
    }
    let mut s = text_table(&REFERENCE_HEAD, &reference_rows(cases));
    for n in reference_notes(cases) {
        s.push_str(&format!("  {n}\n"));
    }
    s
}

/// The same in Markdown, with its notes.
pub fn reference_markdown(cases: &[CaseRecord]) -> String {
    if !has_references(cases) {
        return String::new();
    }
    let mut s = String::from(
        "Against the references (Mpps wall clock; cycles/packet of the polling thread's on-CPU time; \
         Espresso/secgw and run/secgw are on-CPU Mpps ratios; limit = testpmd + bare AEAD cycles):\n\n",
    );
    s.push_str(&md_table(&REFERENCE_HEAD, &reference_rows(cases)));
    let notes = reference_notes(cases);
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    s
}

/// A plain-text table: columns padded to their widest cell, numbers
/// right-aligned after the first three columns (which are labels).
pub(crate) fn text_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut l = String::new();
        for (k, (c, w)) in cells.iter().zip(width).enumerate() {
            let numeric = c.starts_with(|ch: char| ch.is_ascii_digit()) && k > 2;
            if numeric {
                l.push_str(&format!("{c:>w$}  "));
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut s = line(head.to_vec());
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// The same as a Markdown table.
pub(crate) fn md_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut s = format!("| {} |\n|", head.join(" | "));
    s.push_str(&"---|".repeat(N));
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    fn sample(packets: u64, cpu_s: f64) -> RunSample {
        RunSample {
            packets,
            received: packets,
            dropped: 0,
            wall_s: 1.0,
            cpu_s,
            tsc_hz: 1_000_000_000,
            backend: "x".into(),
            setup_s: 0.0,
            aead_cycles: None,
            spd_cache_hits: 0,
            spd_cache_misses: 0,
            sa_lines: None,
        }
    }

    #[test]
    fn the_limit_is_derived_for_aead_suites_only() {
        use crate::spec::{BenchAlgorithm, Direction, FrameSize};
        let with_aead = |cycles: f64| RunSample {
            aead_cycles: Some(cycles),
            ..sample(2_000_000, 0.5)
        };
        let spec = |algorithm| CaseSpec {
            direction: Direction::Encrypt,
            algorithm,
            frame: FrameSize::Fixed(1420),
            udp_encap: false,
            sa_count: 1,
            scale_frames: 0,
        };
        // 250 cycles/packet; testpmd 100; the bare call 100.
        let gcm = CaseRecord::new(
            &spec(BenchAlgorithm::AesGcm128),
            &[with_aead(100.0)],
            &[sample(10_000_000, 1.0)],
        );
        assert_eq!(gcm.limit_cycles_per_packet, Some(200.0));
        assert_eq!(gcm.distance_to_limit, Some(1.25));
        assert!(gcm.aead_share.is_some());
        // A one-packet CBC + HMAC call is not what a burst costs.
        let cbc = CaseRecord::new(
            &spec(BenchAlgorithm::AesCbc128HmacSha256),
            &[with_aead(3000.0)],
            &[sample(10_000_000, 1.0)],
        );
        assert_eq!(cbc.limit_cycles_per_packet, None);
        assert_eq!(cbc.distance_to_limit, None);
        assert_eq!(cbc.aead_share, None);
    }

    #[test]
    fn the_reference_table_puts_the_systems_side_by_side() {
        use crate::spec::{BenchAlgorithm, Direction, FrameSize};
        let mut spec = CaseSpec {
            direction: Direction::Encrypt,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Fixed(64),
            udp_encap: false,
            sa_count: 1,
            scale_frames: 0,
        };
        // Espresso: 2 Mpps on 0.5 s of CPU (250 cycles/packet at 1 GHz),
        // testpmd 10 Mpps, secgw 1 Mpps on 0.5 s (500 cycles/packet).
        let mut a = CaseRecord::new(&spec, &[sample(2_000_000, 0.5)], &[sample(10_000_000, 1.0)]);
        assert!(reference_table(&[a.clone()]).is_empty(), "no reference ran");
        a.secgw = Some(SystemRecord::measured(
            "ipsec-secgw",
            &spec,
            &[sample(1_000_000, 0.5)],
            "scapy check: ok".into(),
        ));
        spec.udp_encap = true;
        spec.frame = FrameSize::Imix;
        let mut b = CaseRecord::new(&spec, &[sample(2_000_000, 1.0)], &[sample(10_000_000, 1.0)]);
        b.secgw = Some(SystemRecord::unavailable("ipsec-secgw", "no UDP".into()));
        assert_eq!(a.vs_secgw(), Some(2.0));
        assert_eq!(b.vs_secgw(), None);
        let t = reference_table(&[a.clone(), b.clone()]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("dir") && lines[0].contains("ipsec-secgw Mpps"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "encrypt",
                "aes128gcm16",
                "64",
                "no",
                "1",
                "2.000",
                "250",
                "-",
                "-",
                "1.000",
                "500",
                "10.000",
                "100",
                "2.00",
                "-",
                "-",
                "-"
            ]
        );
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&cells[7..11], ["-", "-", "n/a", "n/a"]);
        assert_eq!(
            lines[3].trim(),
            "ipsec-secgw n/a (encrypt aes128gcm16 imix udp): no UDP"
        );
        let md = reference_markdown(&[a, b]);
        assert!(md.contains(
            "| encrypt | aes128gcm16 | 64 | no | 1 | 2.000 | 250 | - | - | 1.000 | 500 |"
        ));
        assert!(md.contains("- ipsec-secgw n/a (encrypt aes128gcm16 imix udp): no UDP"));
    }

    #[test]
    fn rate_from_a_run() {
        let s = RunSample {
            packets: 2_000_000,
            received: 2_000_000,
            dropped: 0,
            wall_s: 1.0,
            cpu_s: 0.5,
            tsc_hz: 2_000_000_000,
            backend: "x".into(),
            setup_s: 0.0,
            aead_cycles: None,
            spd_cache_hits: 0,
            spd_cache_misses: 0,
            sa_lines: None,
        };
        let r = Rate::of(&s, 46.0);
        assert!((r.mpps - 2.0).abs() < 1e-9);
        assert!((r.gbps - 2e6 * 46.0 * 8.0 / 1e9).abs() < 1e-9);
        assert!((r.cycles_per_packet - 500.0).abs() < 1e-9);
        assert!((r.oncpu_mpps - 4.0).abs() < 1e-9);
    }
}
