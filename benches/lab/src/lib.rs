//! `espresso-lab bench`: the benchmark lab.
//!
//! No NIC is needed: for each case the lab writes a pcap ([`traffic`]),
//! replays it in a loop into the gateway's data path through DPDK's
//! `net_pcap` PMD and lets `net_null` swallow what comes out, on one
//! worker core ([`case`], a child process per case). In the same run it
//! measures `dpdk-testpmd --forward-mode=io` on the same pcap, vdevs, pool
//! and core ([`testpmd`]): the cost of the I/O alone, and DPDK's
//! `ipsec-secgw` ([`secgw`]), the reference gateway on the same DPDK, with
//! the same SAs (its output checked with scapy before its speed counts).
//! Each process warms
//! up once and then measures `repetitions` windows back to back (EAL's
//! start-up, which faults in its 1 GB without hugepages, took about as
//! long as a window: a process per window made `make bench` half start-up);
//! the case's process and then its baseline's run one after the other, and
//! the figures are medians over the windows ([`report`]), printed as a
//! table, written to `latest.json` and drawn ([`plot`]).
//!
//! After the throughput and reconfiguration cases come the IKE flood
//! cases ([`ike_flood`]): the control thread's IKE code under a spoofed
//! IKE_SA_INIT flood while legitimate peers set up, rekey and probe
//! tunnels.
//!
//! Then, unless told not to, the latency lab ([`latency`]): a generator
//! and sink ([`loadgen`]) in their own process drive the gateway and then
//! testpmd io over `net_memif` for one-way latency percentiles at 10, 50
//! and 90 % load and an RFC 2544 zero-loss rate. The full run ends with
//! Espresso against strongSwan through the two-site namespace topology
//! ([`strongswan`]).
#![cfg(have_dpdk)]

pub mod aead;
pub mod case;
pub mod cpu;
pub mod external;
pub mod ike_flood;
pub mod latency;
pub mod latency_plot;
pub mod loadgen;
pub mod pcap;
pub mod plot;
pub mod product;
pub mod reconf;
pub mod report;
pub mod secgw;
pub mod spec;
pub mod strongswan;
pub mod telemetry;
pub mod testpmd;
pub mod traffic;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use case::{CaseRequest, RunSample};
use report::{CaseRecord, Report};
use spec::{CaseSpec, Direction};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How to run the lab.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The cases.
    pub cases: Vec<CaseSpec>,
    /// The reconfiguration cases (run after the others).
    pub reconf: Vec<reconf::ReconfSpec>,
    /// The IKE flood cases (after the reconfiguration cases).
    pub ike_flood: Vec<ike_flood::IkeFloodSpec>,
    /// Measured windows per case and per baseline (runs per
    /// reconfiguration case).
    pub repetitions: usize,
    /// Seconds of traffic before each measurement.
    pub warmup_s: f64,
    /// Seconds measured per window.
    pub duration_s: f64,
    /// Where `latest.json` and the plots go.
    pub out_dir: PathBuf,
    /// The core the worker (and testpmd's forwarding lcore) runs on.
    pub worker_core: usize,
    /// The testpmd binary.
    pub testpmd: PathBuf,
    /// DPDK's ipsec-secgw (`make secgw`), measured on every case after
    /// testpmd; none: not run.
    pub secgw: Option<PathBuf>,
    /// The `espresso` binary (for the per-run child processes).
    pub espresso: PathBuf,
    /// The gateway binary whose `espresso run` is measured on every case
    /// after the lab's in-process gateway ([`product`]); none: not
    /// measured.
    pub product: Option<PathBuf>,
    /// Draw the PNG plots.
    pub plots: bool,
    /// The command line, for the record.
    pub command: String,
    /// Espresso against strongSwan through the two-site topology, after
    /// the cases (none: not run).
    pub strongswan: Option<strongswan::Options>,
    /// The latency lab, if it runs.
    pub latency: Option<latency::LatencyOptions>,
}

/// Removes the pcaps when the run ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pcap a case replays: plaintext ones are shared by every suite.
fn pcap_key(spec: &CaseSpec) -> String {
    match spec.direction {
        Direction::Encrypt => format!(
            "plain-{}-{}-{}",
            spec.frame.label(),
            spec.sa_count,
            traffic::frame_count(spec)
        ),
        Direction::Decrypt => format!(
            "esp-{}-{}-{}-{}-{}",
            spec.algorithm.name(),
            spec.frame.label(),
            if spec.udp_encap { "udp" } else { "raw" },
            spec.sa_count,
            traffic::frame_count(spec)
        ),
    }
}

/// Runs `espresso SUBCOMMAND --request JSON` and parses the last JSON line
/// (object or array)
/// it prints; `what` names the run in an error.
fn run_json_child<T: serde::de::DeserializeOwned>(
    espresso: &Path,
    subcommand: &str,
    request: String,
    what: &str,
) -> Result<T, Error> {
    let out = Command::new(espresso)
        .arg(subcommand)
        .arg("--request")
        .arg(request)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['));
    match (out.status.success(), line) {
        (true, Some(l)) => Ok(serde_json::from_str(l)?),
        _ => Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into()),
    }
}

fn run_child(espresso: &Path, req: &CaseRequest) -> Result<Vec<RunSample>, Error> {
    run_json_child(
        espresso,
        "bench-case",
        serde_json::to_string(req)?,
        &req.spec.name(),
    )
}

fn run_reconf_child(
    espresso: &Path,
    req: &reconf::ReconfRequest,
) -> Result<reconf::ReconfSample, Error> {
    run_json_child(
        espresso,
        "bench-reconf",
        serde_json::to_string(req)?,
        &format!("reconf {}", req.case.spec.name()),
    )
}

fn run_ike_flood_child(
    espresso: &Path,
    spec: &ike_flood::IkeFloodSpec,
) -> Result<ike_flood::IkeFloodSample, Error> {
    run_json_child(
        espresso,
        "bench-ike-flood",
        serde_json::to_string(spec)?,
        &spec.name(),
    )
}

fn check_sample(what: &str, s: &RunSample) -> Result<(), Error> {
    if s.packets == 0 || s.wall_s <= 0.0 || s.cpu_s <= 0.0 {
        return Err(format!(
            "{what}: no traffic measured ({} packets in {:.3} s, {:.3} s on CPU)",
            s.packets, s.wall_s, s.cpu_s
        )
        .into());
    }
    Ok(())
}

/// The pcap of `spec` (path, frames), written into `dir` the first time a
/// case needs it and shared by every case with the same traffic.
fn pcap_for(
    pcaps: &mut HashMap<String, (PathBuf, usize)>,
    dir: &Path,
    spec: &CaseSpec,
) -> Result<(PathBuf, usize), Error> {
    let key = pcap_key(spec);
    if let Some(p) = pcaps.get(&key) {
        return Ok(p.clone());
    }
    let path = dir.join(format!("{key}.pcap"));
    let info = traffic::write_pcap(spec, &path)?;
    pcaps.insert(key, (path.clone(), info.frames));
    Ok((path, info.frames))
}

/// ipsec-secgw's record of a case: unavailable when it cannot do the case
/// or its output fails the check, else its windows.
fn secgw_record(s: &secgw::Secgw, spec: &CaseSpec) -> report::SystemRecord {
    if let Some(why) = secgw::unavailable(spec) {
        return report::SystemRecord::unavailable(secgw::SYSTEM, why);
    }
    let verified = match secgw::verify(s, spec) {
        Ok(v) => v,
        Err(why) => {
            return report::SystemRecord::unavailable(
                secgw::SYSTEM,
                format!("output check failed: {why}"),
            )
        }
    };
    match secgw::run(s, spec).and_then(|runs| {
        for r in &runs {
            check_sample(&format!("ipsec-secgw on {}", spec.name()), r)?;
        }
        Ok(runs)
    }) {
        Ok(runs) => report::SystemRecord::measured(secgw::SYSTEM, spec, &runs, verified),
        Err(e) => report::SystemRecord::unavailable(secgw::SYSTEM, format!("run failed: {e}")),
    }
}

/// `espresso run` on a case ([`product`]), after the lab's gateway: its
/// record, or why there is none (a failed check or start gives no figure).
#[allow(clippy::too_many_arguments)]
fn run_product(
    opts: &BenchOptions,
    gateway: &Path,
    spec: &CaseSpec,
    pcap: &Path,
    frames: usize,
    lab_runs: &[RunSample],
    tmp: &Path,
    n: usize,
) -> report::SystemRecord {
    let dir = TempDir(tmp.join(format!("product-{n}")));
    let backend = lab_runs.first().map_or("", |r| r.backend.as_str());
    let r = product::run(&product::ProductRun {
        gateway,
        spec,
        pcap,
        pcap_frames: frames,
        dir: &dir.0,
        warmup_s: opts.warmup_s,
        duration_s: opts.duration_s,
        windows: opts.repetitions,
        worker_core: opts.worker_core,
        tsc_hz: lab_runs.first().map_or(0, |r| r.tsc_hz),
        backend,
    })
    .and_then(|r| {
        for s in &r.runs {
            check_sample(&format!("espresso run on {}", spec.name()), s)?;
        }
        Ok(r)
    });
    match r {
        Ok(r) => report::SystemRecord::measured(
            product::SYSTEM,
            spec,
            &r.runs,
            format!(
                "{}; loaded {} SAs from a {:.1} MB file in {:.2} s",
                r.verified,
                spec.sa_count,
                r.config_bytes as f64 / 1e6,
                r.load_s
            ),
        ),
        Err(e) => report::SystemRecord::unavailable(product::SYSTEM, e.to_string()),
    }
}

/// Runs every case, prints progress on stderr, writes `latest.json` and
/// the plots, and returns the report.
pub fn run(opts: &BenchOptions) -> Result<Report, Error> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out_dir)?;
    let tmp = TempDir(std::env::temp_dir().join(format!("espresso-bench-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0)?;
    let total = opts.cases.len() + opts.reconf.len() + opts.ike_flood.len();
    let mut pcaps: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut baselines: HashMap<String, Vec<RunSample>> = HashMap::new();
    let mut records = Vec::new();
    let mut tsc_hz = 0;
    let mut run_id = 0u64;
    let mut err = std::io::stderr();
    // Progress: a line rewritten per run on a terminal, one per case else.
    let tty = std::io::IsTerminal::is_terminal(&err);
    // What case `n` is doing now, on a line the next one overwrites.
    let progress = |n: usize, name: &str, what: &str| {
        if tty {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r[{:>3}/{total}] {name:<44} {what:<10} ", n + 1);
            let _ = e.flush();
        }
    };
    for (n, spec) in opts.cases.iter().enumerate() {
        let key = pcap_key(spec);
        let (path, frames) = pcap_for(&mut pcaps, &tmp.0, spec)?;
        let req = CaseRequest {
            spec: *spec,
            pcap: path.clone(),
            pcap_frames: frames,
            warmup_s: opts.warmup_s,
            duration_s: opts.duration_s,
            windows: opts.repetitions,
            worker_core: opts.worker_core,
            serve_ports: None,
        };
        progress(n, &spec.name(), "espresso");
        let runs = run_child(&opts.espresso, &req)?;
        for s in &runs {
            check_sample(&spec.name(), s)?;
            tsc_hz = s.tsc_hz;
        }
        // The baseline for this pcap, unless an earlier case measured it.
        let have = baselines.get(&key).map_or(0, Vec::len);
        if have < opts.repetitions {
            progress(n, &spec.name(), "testpmd");
            run_id += 1;
            let b = testpmd::run(&testpmd::Baseline {
                testpmd: &opts.testpmd,
                pcap: &path,
                pcap_frames: frames,
                warmup_s: opts.warmup_s,
                duration_s: opts.duration_s,
                windows: opts.repetitions - have,
                worker_core: opts.worker_core,
                tsc_hz,
                run_id,
            })?;
            for s in &b {
                check_sample(&format!("testpmd on {key}"), s)?;
            }
            baselines.entry(key.clone()).or_default().extend(b);
        }
        let mut record = CaseRecord::new(spec, &runs, &baselines[&key]);
        if let Some(gateway) = &opts.product {
            progress(n, &spec.name(), "espresso run");
            record.product = Some(run_product(
                opts, gateway, spec, &path, frames, &runs, &tmp.0, n,
            ));
        }
        if let Some(binary) = &opts.secgw {
            progress(n, &spec.name(), "secgw");
            run_id += 1;
            record.secgw = Some(secgw_record(
                &secgw::Secgw {
                    binary,
                    pcap: &path,
                    pcap_frames: frames,
                    warmup_s: opts.warmup_s,
                    duration_s: opts.duration_s,
                    windows: opts.repetitions,
                    worker_core: opts.worker_core,
                    tsc_hz,
                    run_id,
                    dir: &tmp.0,
                },
                spec,
            ));
        }
        let _ = writeln!(
            err,
            "{}[{:>3}/{total}] {:<44} {:>7.3} Mpps ({:.3} on CPU), testpmd {:>7.3} Mpps, ratio {:.3}{}",
            if tty { "\r" } else { "" },
            n + 1,
            spec.name(),
            record.mpps,
            record.oncpu_mpps,
            record.baseline_mpps,
            record.ratio,
            match &record.secgw {
                Some(s) => match (&s.rate, &s.unavailable) {
                    (Some(r), None) => format!(
                        "; ipsec-secgw {:.3} Mpps ({:.3} on CPU), Espresso/secgw {:.3}",
                        r.mpps,
                        r.oncpu_mpps,
                        record.vs_secgw().unwrap_or(f64::NAN)
                    ),
                    (_, Some(why)) => format!("; ipsec-secgw n/a: {why}"),
                    _ => String::new(),
                },
                None => String::new(),
            }
        );
        if let Some(p) = &record.product {
            let _ = match (&p.rate, &p.unavailable) {
                (Some(r), _) => writeln!(
                    err,
                    "      espresso run: {:>7.3} Mpps ({:.3} on CPU), {:.0} cycles/packet (lab {:.0}), on-CPU rate {:.3} of the lab's; {}",
                    r.mpps,
                    r.oncpu_mpps,
                    r.cycles_per_packet,
                    record.cycles_per_packet,
                    record.product_vs_lab().unwrap_or(f64::NAN),
                    p.verified
                ),
                (None, why) => writeln!(
                    err,
                    "      espresso run: no figure: {}",
                    why.as_deref().unwrap_or("?")
                ),
            };
        }
        records.push(record);
    }
    let mut reconf_records = Vec::new();
    for (k, spec) in opts.reconf.iter().enumerate() {
        let n = opts.cases.len() + k;
        let (path, frames) = pcap_for(&mut pcaps, &tmp.0, &spec.traffic)?;
        let req = reconf::ReconfRequest {
            case: CaseRequest {
                spec: spec.traffic,
                pcap: path,
                pcap_frames: frames,
                warmup_s: opts.warmup_s,
                duration_s: opts.duration_s,
                windows: 1,
                worker_core: opts.worker_core,
                serve_ports: None,
            },
            churn: spec.churn,
        };
        let mut runs = Vec::new();
        for r in 0..opts.repetitions {
            progress(
                n,
                &spec.name(),
                &format!("run {}/{}", r + 1, opts.repetitions),
            );
            let sample = run_reconf_child(&opts.espresso, &req)?;
            let _ = writeln!(
                err,
                "{}      run {}: longest stall {} us: {}; longest message of each kind (us): {:?}",
                if tty { "\r" } else { "" },
                r + 1,
                sample.max_gap_us,
                sample.slowest_poll(),
                sample.max_msg_us
            );
            runs.push(sample);
        }
        let record = reconf::ReconfRecord::new(spec, &runs);
        let _ = writeln!(
            err,
            "{}[{:>3}/{total}] {:<44} {:>8.0} installs/s, {:>8.0} deletes/s, longest stall {:.0} us (quiet {:.0} us)",
            if tty { "\r" } else { "" },
            n + 1,
            spec.name(),
            record.installs_per_s,
            record.deletes_per_s,
            record.max_stall_us,
            record.quiet_max_stall_us
        );
        reconf_records.push(record);
    }
    let mut ike_flood_records = Vec::new();
    for (k, spec) in opts.ike_flood.iter().enumerate() {
        let n = opts.cases.len() + opts.reconf.len() + k;
        progress(n, &spec.name(), "flooding");
        let sample = run_ike_flood_child(&opts.espresso, spec)?;
        let r = ike_flood::IkeFloodRecord::new(spec, sample);
        let _ = writeln!(
            err,
            "{}[{:>3}/{total}] {:<44} flood {:.0}/s offered, {:.0}/s handled (saturation {:.0}/s); {:.1} % of {} peers up, rekey p99 {:.1} ms, DPD p99 {:.1} ms",
            if tty { "\r" } else { "" },
            n + 1,
            spec.name(),
            r.offered_dps,
            r.handled_dps,
            r.saturation_dps,
            r.legit_success_pct,
            r.initiators,
            r.rekey.p99_ms,
            r.dpd.p99_ms
        );
        ike_flood_records.push(r);
    }
    let mut latency_records = Vec::new();
    let mut zero_loss = Vec::new();
    let mut latency_method = String::new();
    if let Some(lat) = &opts.latency {
        let loadgen_core = usize::from(opts.worker_core == 0);
        latency_method = latency::method(lat, opts.worker_core, loadgen_core);
        let ctx = latency::LatencyContext {
            opts: lat,
            espresso: &opts.espresso,
            testpmd: &opts.testpmd,
            tmp: &tmp.0,
            worker_core: opts.worker_core,
            loadgen_core,
        };
        let total = lat.cases.len();
        for (n, spec) in lat.cases.iter().enumerate() {
            let _ = write!(
                err,
                "[lat {}/{total}] {:<40} gateway, then testpmd io ...",
                n + 1,
                spec.name()
            );
            let _ = err.flush();
            let (l, z) = latency::run_case(&ctx, spec, n, latency::loop_replay_of(spec, &records))?;
            let p99 = |dut: &str| {
                l.iter()
                    .find(|r| r.dut == dut && r.load_pct == 90)
                    .map_or(f64::NAN, |r| r.p99_us)
            };
            let _ = writeln!(
                err,
                " p99 at 90 %: {:.1} µs vs {:.1} µs; zero-loss {:.3} vs {:.3} Mpps",
                p99(latency::GATEWAY),
                p99(latency::BASELINE),
                z[0].zero_loss_mpps,
                z[1].zero_loss_mpps
            );
            latency_records.extend(l);
            zero_loss.extend(z);
            let _ = write!(
                err,
                "[lat {}/{total}] {:<40} zero-loss on veth pairs ...",
                n + 1,
                spec.name()
            );
            let _ = err.flush();
            // A namespace needs root; without one the memif figures stand
            // alone.
            match latency::VethPairs::for_case(n) {
                Ok(ns) => {
                    let z = latency::run_veth_zero_loss(
                        &ctx,
                        &ns,
                        spec,
                        n,
                        latency::loop_replay_of(spec, &records),
                    )?;
                    let _ = writeln!(
                        err,
                        " max {:.3} vs {:.3}, zero-loss {:.3} vs {:.3} Mpps",
                        z[0].max_mpps, z[1].max_mpps, z[0].zero_loss_mpps, z[1].zero_loss_mpps
                    );
                    zero_loss.extend(z);
                }
                Err(e) => {
                    let _ = writeln!(err, " skipped: {e}");
                }
            }
        }
    }
    let comparison = opts.strongswan.as_ref().map(|o| {
        let _ = writeln!(
            err,
            "Espresso against strongSwan through the two-site topology ({})",
            o.script.display()
        );
        strongswan::run(o)
    });
    let (comparison, comparison_err) = match comparison {
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let report = Report {
        date: utc_now(),
        commit: git_commit(),
        cpu: cpu_model(),
        command: opts.command.clone(),
        tsc_hz,
        repetitions: opts.repetitions,
        warmup_s: opts.warmup_s,
        duration_s: opts.duration_s,
        elapsed_s: started.elapsed().as_secs_f64(),
        method: format!(
            "One worker core ({core}). Input: DPDK net_pcap replaying a generated pcap in a loop \
             (infinite_rx); output: net_null; EAL --no-huge --no-pci -m {mem}. Pool: {mbufs} \
             mbufs plus one per pcap frame (net_pcap keeps the file in mbufs), cache {cache}, \
             bursts of 32. Gateway: espresso's Worker/Node data path with the case's SAs and \
             policies installed through its control queue. Baseline: dpdk-testpmd \
             --forward-mode=io on the same pcap, vdevs, pool and core. Each in a process of \
             its own per case: {w} s warm-up, then {reps} windows of {d} s back to back; the \
             case's process, then its baseline's; figures are medians. Gbps counts \
             inner (plaintext) IP bytes; cycles/packet = worker on-CPU time x TSC Hz / packets; \
             on-CPU Mpps = packets / worker on-CPU seconds (procfs). Frame sizes include the \
             FCS (RFC 2544); IMIX is 64/570/1518 at 7:4:1.{secgw}",
            secgw = if opts.secgw.is_some() {
                secgw_method(opts)
            } else {
                String::new()
            },
            core = opts.worker_core,
            mem = case::EAL_MEMORY_MB,
            mbufs = case::WORKING_MBUFS,
            cache = case::MBUF_CACHE,
            w = opts.warmup_s,
            d = opts.duration_s,
            reps = opts.repetitions
        ),
        cases: records,
        strongswan: comparison,
        reconf: reconf_records,
        ike_flood: ike_flood_records,
        latency_method,
        latency: latency_records,
        zero_loss,
    };
    let json = opts.out_dir.join("latest.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")?;
    let mut md = report::markdown_table(&report.cases);
    let refs = report::reference_markdown(&report.cases);
    if !refs.is_empty() {
        md.push('\n');
        md.push_str(&refs);
    }
    md.push_str(&latency::markdown(&report.latency, &report.zero_loss));
    if !report.reconf.is_empty() {
        md.push('\n');
        md.push_str(&reconf::markdown_table(&report.reconf));
    }
    if !report.ike_flood.is_empty() {
        md.push('\n');
        md.push_str(&format!(
            "IKE flood, {} (commit {}): `{}`\n\n",
            report.date, report.commit, report.command
        ));
        md.push_str(&ike_flood::markdown_table(&report.ike_flood));
    }
    if let Some(c) = &report.strongswan {
        md.push('\n');
        md.push_str(&strongswan::markdown(c));
    }
    std::fs::write(opts.out_dir.join("latest.md"), md)?;
    if opts.plots
        && (!report.cases.is_empty() || !report.reconf.is_empty() || !report.latency.is_empty())
    {
        plot::draw_all(&report, &opts.out_dir)?;
        latency_plot::latency_by_load(&report.latency, &opts.out_dir.join("latency_by_load.png"))?;
    }
    match comparison_err {
        // The cases' results are written; the failure still fails the run.
        Some(e) => Err(format!("the strongSwan comparison failed: {e}").into()),
        None => Ok(report),
    }
}

/// How ipsec-secgw was run, for the report's method paragraph.
fn secgw_method(opts: &BenchOptions) -> String {
    format!(
        " Reference: DPDK's ipsec-secgw example (make secgw: built from the installed DPDK's \
         source package, RX checksum offload request removed because the software PMDs lack \
         it) after testpmd, in a process of its own per case: its one lcore on core {core} \
         polls both ports, EAL and vdevs as above (-m {big} above 10,000 SAs, where its \
         sessions, ACL and LPM tables do not fit in {mem}; MTU {mtu}: its default 1500 drops the ESP packets of \
         1518-byte frames), the crypto vdev of the suite \
         (crypto_aesni_gcm, crypto_chacha20_poly1305, crypto_aesni_mb for CBC+HMAC), its \
         packet pool set to the same {mbufs} + pcap frames mbufs (-s; its own cache of 256), \
         its legacy path (librte_ipsec, -l, for ChaCha20-Poly1305, which the legacy path \
         lacks), the case's SPIs, keys, tunnel endpoints and \
         per-flow policies (plus one idle SA the other way, which it requires), anti-replay \
         off. Before its windows it forwards the pcap once into a tx_pcap, checked with \
         scapy: every frame out, a sample of {sample} decrypted (encrypt) and compared with \
         the originals (inner TTL decremented on the legacy path); a case whose output fails has no figure. \
         Windows are bracketed by its ports' counters from DPDK telemetry and its polling \
         thread's on-CPU time from procfs. Espresso/secgw is the on-CPU Mpps ratio. ESP in \
         UDP: ipsec-secgw 22.11 refuses UDP encapsulation on software crypto sessions.",
        core = opts.worker_core,
        mbufs = case::WORKING_MBUFS,
        sample = secgw::CHECK_SAMPLE,
        mem = case::EAL_MEMORY_MB,
        big = 2 * case::EAL_MEMORY_MB,
        mtu = secgw::MTU,
    )
}

/// The commit checked out in the current directory (`git describe
/// --always --dirty`), or `unknown`.
pub fn git_commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `lscpu`'s model name, or `unknown`.
pub fn cpu_model() -> String {
    Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as RFC 3339 (`2024-05-01T12:00:00Z`).
pub fn utc_now() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `t` as RFC 3339 UTC, to the second.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn plaintext_pcaps_are_shared_by_suites() {
        let m = spec::standard_matrix();
        let enc: std::collections::HashSet<_> = m
            .iter()
            .filter(|c| c.direction == Direction::Encrypt)
            .map(pcap_key)
            .collect();
        assert_eq!(enc.len(), 4 + 4);
    }
}
