//! The product measured: `espresso run` with a generated configuration
//! file, on the same traffic, vdevs, pool, EAL memory and core as the lab's
//! in-process gateway ([`super::case`]).
//!
//! The lab builds the gateway's `Worker`/`Node` itself and installs SAs
//! through the control queue; users run `espresso run -c FILE`, which
//! reads and validates the file, opens the ports through its port planner,
//! starts its control thread (control socket, IKE driver, planner) and
//! installs the same SAs through the same queue. This module writes the
//! file a user would write for a case ([`config_toml`]: the case's
//! addresses, static neighbours, one tunnel per SA with its policy and its
//! manually keyed SA pair, the lab's keys and SPIs), starts the gateway
//! binary on it ([`Gateway`]), waits until the control socket answers
//! (which the gateway does only after every worker has applied every SA,
//! see `control::gateway::run`), and measures it like any external DPDK
//! program ([`super::external`]: DPDK telemetry port counters and the
//! worker thread's on-CPU time).
//!
//! Before its speed counts, each case is checked ([`verify`]): a finite
//! replay of the case's first frames with the output port writing a pcap,
//! which scapy (an independent ESP implementation) decrypts (encrypt) or
//! parses (decrypt) and compares with the plaintext the lab generated.
//!
//! One thing differs from the lab's pcap: `espresso run` takes each
//! interface's MAC address from its port, and DPDK's `net_pcap` has a fixed
//! one ([`PCAP_PMD_MAC`]), so the product replays a copy of the case's pcap
//! addressed to it ([`retarget_pcap`]). Everything else in the frames is
//! the same.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::case::{RunSample, EAL_MEMORY_MB, WORKING_MBUFS};
use super::external;
use super::spec::{CaseSpec, Direction};
use super::traffic;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The name the report gives the product.
pub const SYSTEM: &str = "espresso run";

/// The MAC address DPDK 22.11's `net_pcap` gives the first pcap port a
/// process opens (`02:70:63:61:70:<n>`, "\x02pcap" and the count of pcap
/// ports before it: drivers/net/pcap/pcap_ethdev.c, `eth_addr`). The input
/// port is always opened first. [`Gateway::start`] checks it against what
/// the gateway logs.
pub const PCAP_PMD_MAC: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];

/// Frames the correctness check replays and checks (the first ones of the
/// case's pcap: every SA up to this many).
pub const VERIFY_FRAMES: usize = 1200;

/// The worker thread of `espresso run`'s single worker.
pub const WORKER_THREAD: &str = "espresso-w0";

/// What the generated file describes besides the case.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The case.
    pub spec: &'a CaseSpec,
    /// DPDK device string of port 0 (where traffic enters).
    pub input: String,
    /// DPDK device string of port 1 (where it leaves).
    pub output: String,
    /// Directory of the control socket and the runtime files.
    pub dir: &'a Path,
    /// The worker's core (the control thread takes core 0, as the lab's
    /// does, or 1 if the worker is on 0).
    pub worker_core: usize,
    /// Mbuf pool size.
    pub mbufs: u32,
}

/// The devices of a measured run: the pcap replayed in a loop into
/// `net_null`, as the lab's.
pub fn measured_ports(pcap: &Path) -> Result<(String, String), Error> {
    Ok((
        format!("net_pcap0,rx_pcap={},infinite_rx=1", utf8(pcap)?),
        "net_null0,no-rx=1".to_string(),
    ))
}

/// The devices of a checked run: the pcap replayed once, the output
/// written to `out`.
pub fn verify_ports(pcap: &Path, out: &Path) -> Result<(String, String), Error> {
    Ok((
        format!("net_pcap0,rx_pcap={}", utf8(pcap)?),
        format!("net_pcap1,tx_pcap={}", utf8(out)?),
    ))
}

fn utf8(p: &Path) -> Result<&str, Error> {
    let s = p.to_str().ok_or("path is not UTF-8")?;
    // A device string is split at commas by EAL.
    if s.contains(',') {
        return Err(format!("{s}: a DPDK device path cannot contain a comma").into());
    }
    Ok(s)
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn toml_str(s: &str) -> String {
    // Paths and device strings: quote the two characters a basic string
    // cannot hold as they are.
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The control socket under `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("espresso.sock")
}

/// The runtime directory (telemetry link) under `dir`.
pub fn runtime_dir(dir: &Path) -> PathBuf {
    dir.join("run")
}

/// The configuration file of a case: what `espresso run` needs to do what
/// the lab's in-process case does (see [`super::case`] and
/// [`super::traffic`] for the addressing plan, SPIs and keys).
pub fn config_toml(plan: &Plan) -> Result<String, Error> {
    let spec = plan.spec;
    let control_core = usize::from(plan.worker_core == 0);
    let mut s = String::with_capacity(256 * spec.sa_count as usize + 4096);
    let _ = writeln!(
        s,
        "# Generated by espresso-lab for the case `{}`.",
        spec.name()
    );
    let _ = writeln!(s, "[dataplane]");
    let _ = writeln!(s, "workers = 1");
    let _ = writeln!(s, "lcores = \"{control_core},{}\"", plan.worker_core);
    let _ = writeln!(s, "memory_mb = {EAL_MEMORY_MB}");
    let _ = writeln!(s, "mbufs = {}", plan.mbufs);
    let _ = writeln!(s, "burst = 32");
    let _ = writeln!(s, "hugepages = \"off\"");
    let _ = writeln!(s, "telemetry = true");
    let _ = writeln!(
        s,
        "runtime_dir = {}",
        toml_str(utf8(&runtime_dir(plan.dir))?)
    );
    let _ = writeln!(s, "eal_args = [\"--log-level=pmd.net.pcap:warning\"]");
    let _ = writeln!(s, "\n[control]");
    let _ = writeln!(s, "socket = {}", toml_str(utf8(&socket_path(plan.dir))?));
    let _ = writeln!(s, "log = \"info\"");
    let _ = writeln!(s, "log_format = \"text\"");
    let lan = format!(
        "[[interface]]\nname = \"lan\"\nrole = \"lan\"\naddresses = [\"{}/16\"]\nmtu = {}\n",
        traffic::LAN_ADDR,
        traffic::MTU
    );
    let wan = format!(
        "[[interface]]\nname = \"wan\"\nrole = \"wan\"\naddresses = [\"{}/24\"]\nmtu = {}\n",
        traffic::WAN_ADDR,
        traffic::MTU
    );
    // Port 0 (the first interface) is where traffic enters.
    let (first, second) = match spec.direction {
        Direction::Encrypt => (lan, wan),
        Direction::Decrypt => (wan, lan),
    };
    let _ = writeln!(s, "\n{first}device = {}", toml_str(&plan.input));
    let _ = writeln!(s, "\n{second}device = {}", toml_str(&plan.output));
    // Static neighbours: no ARP, as in the lab.
    let _ = writeln!(
        s,
        "\n[[neighbour]]\naddress = \"{}\"\nmac = \"{}\"\ninterface = \"wan\"",
        traffic::PEER_ADDR,
        mac(traffic::HOST_MAC)
    );
    for h in 0..traffic::local_hosts(spec.sa_count) {
        let _ = writeln!(
            s,
            "\n[[neighbour]]\naddress = \"{}\"\nmac = \"{}\"\ninterface = \"lan\"",
            traffic::local_host(h << 16),
            mac(traffic::HOST_MAC)
        );
    }
    let algorithm = spec.algorithm.name();
    let aead = spec.algorithm.algorithm().is_aead();
    // One tunnel per SA, written compactly (inline tables) so that 100,000
    // of them stay a file of tens of MB.
    for i in 0..spec.sa_count {
        let spi = traffic::SPI_BASE + i;
        let keys = traffic::keys(spec, i);
        // The case uses one direction of the pair, with the lab's keys;
        // the other gets their complement (the gateway refuses an AEAD key
        // used both ways: nonce reuse).
        let hex_of = |k: &[u8]| format!("0x{}", hex::encode(k));
        let not = |k: &[u8]| k.iter().map(|b| !b).collect::<Vec<u8>>();
        let (key_in, key_out, auth_in, auth_out) = match spec.direction {
            Direction::Encrypt => (
                hex_of(&not(&keys.enc_key)),
                hex_of(&keys.enc_key),
                hex_of(&not(&keys.auth_key)),
                hex_of(&keys.auth_key),
            ),
            Direction::Decrypt => (
                hex_of(&keys.enc_key),
                hex_of(&not(&keys.enc_key)),
                hex_of(&keys.auth_key),
                hex_of(&not(&keys.auth_key)),
            ),
        };
        let _ = write!(
            s,
            "\n[[tunnel]]\nname = \"t{i}\"\nlocal_addrs = \"{}\"\nremote_addrs = \"{}\"\n",
            traffic::WAN_ADDR,
            traffic::PEER_ADDR
        );
        if spec.udp_encap {
            s.push_str("udp_encap = true\n");
        }
        if spec.direction == Direction::Decrypt {
            // The pcap loops and repeats its sequence numbers.
            s.push_str("replay_window = 0\n");
        }
        let _ = writeln!(
            s,
            "policy = [{{ local_ts = \"{}/32\", remote_ts = \"{}/32\" }}]",
            traffic::local_host(i),
            traffic::remote_host(i)
        );
        let _ = write!(
            s,
            "sa = [{{ spi_in = {spi:#x}, spi_out = {spi:#x}, algorithm = \"{algorithm}\", key_in = \"{key_in}\", key_out = \"{key_out}\""
        );
        if !aead {
            let _ = write!(
                s,
                ", auth_key_in = \"{auth_in}\", auth_key_out = \"{auth_out}\""
            );
        }
        s.push_str(" }]\n");
    }
    Ok(s)
}

/// Copies the pcap at `src` to `dst` with every frame's destination MAC
/// set to `to` (at most `limit` frames); returns the frames copied.
pub fn retarget_pcap(src: &Path, dst: &Path, to: [u8; 6], limit: usize) -> Result<usize, Error> {
    let mut r = BufReader::new(std::fs::File::open(src)?);
    let mut w = std::io::BufWriter::new(std::fs::File::create(dst)?);
    let mut header = [0u8; 24];
    r.read_exact(&mut header)?;
    if header[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err(format!("{}: not a little-endian pcap", src.display()).into());
    }
    w.write_all(&header)?;
    let mut n = 0;
    let mut rec = [0u8; 16];
    let mut frame = Vec::new();
    while n < limit {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(rec[8..12].try_into()?) as usize;
        frame.resize(len, 0);
        r.read_exact(&mut frame)?;
        if len >= 6 {
            frame[..6].copy_from_slice(&to);
        }
        w.write_all(&rec)?;
        w.write_all(&frame)?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// A running `espresso run`, stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    /// The telemetry socket's link.
    pub telemetry: PathBuf,
    /// Seconds from the start until the control socket answered: the
    /// file read and validated, EAL and the ports up and every SA applied
    /// by the worker.
    pub load_s: f64,
}

/// One request on the control socket; the reply's `result`.
pub fn api(socket: &Path, cmd: &str, timeout: Duration) -> Result<serde_json::Value, Error> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    writeln!(s, "{{\"v\":1,\"id\":1,\"cmd\":\"{cmd}\"}}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let mut v: serde_json::Value = serde_json::from_str(&line)?;
    if v["ok"] != serde_json::Value::Bool(true) {
        return Err(format!("`{cmd}`: {}", v["error"]).into());
    }
    Ok(v["result"].take())
}

impl Gateway {
    /// Starts `gateway run -c config` (its log in `dir/espresso.log`) and
    /// waits up to `within` until it answers on its control socket with
    /// `tunnels` tunnels installed.
    pub fn start(
        gateway: &Path,
        config: &Path,
        dir: &Path,
        tunnels: usize,
        within: Duration,
    ) -> Result<Self, Error> {
        let log = dir.join("espresso.log");
        let started = Instant::now();
        let child = Command::new(gateway)
            .arg("run")
            .arg("-c")
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("{}: {e}", gateway.display()))?;
        let mut gw = Self {
            child: Some(child),
            socket: socket_path(dir),
            log,
            telemetry: runtime_dir(dir).join("dpdk_telemetry.v2"),
            load_s: 0.0,
        };
        let deadline = started + within;
        loop {
            if let Some(status) = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                gw.child = None;
                return Err(format!("espresso run exited ({status}): {}", gw.log_tail()).into());
            }
            // The socket answers once the control loop runs, after every
            // worker applied the SAs and policies.
            if api(&gw.socket, "version", Duration::from_secs(5)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "espresso run did not answer within {} s: {}",
                    within.as_secs(),
                    gw.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        gw.load_s = started.elapsed().as_secs_f64();
        let t = api(&gw.socket, "tunnels", Duration::from_secs(60))?;
        let list = t.as_array().ok_or("`tunnels`: not a list")?;
        let installed = list.iter().filter(|t| t["state"] == "installed").count();
        if installed != tunnels || list.len() != tunnels {
            return Err(format!(
                "espresso run has {installed} of {} tunnels installed, expected {tunnels}",
                list.len()
            )
            .into());
        }
        gw.check_input_mac()?;
        Ok(gw)
    }

    /// The pcap is addressed to [`PCAP_PMD_MAC`]: the input port must
    /// have it, or every frame is dropped as not for us.
    fn check_input_mac(&self) -> Result<(), Error> {
        let log = std::fs::read_to_string(&self.log)?;
        let want = format!("{:?}", PCAP_PMD_MAC);
        let port0 = log
            .lines()
            .find(|l| l.contains("port up") && l.contains("net_pcap0"));
        match port0 {
            Some(l) if l.contains(&want) => Ok(()),
            Some(l) => Err(format!(
                "the input port's MAC is not {} (net_pcap's address changed?): {l}",
                mac(PCAP_PMD_MAC)
            )
            .into()),
            None => {
                Err(format!("no `port up` line for net_pcap0 in {}", self.log.display()).into())
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last lines of the gateway's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Stops the gateway (SIGTERM, as systemd does) and waits for it;
    /// SIGKILL after `within`. Errors if it did not exit cleanly.
    pub fn stop(mut self, within: Duration) -> Result<(), Error> {
        self.terminate(within)
    }

    fn terminate(&mut self, within: Duration) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("espresso run stopped with {status}: {}", self.log_tail()).into())
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "espresso run did not stop within {} s of SIGTERM (killed)",
                    within.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.terminate(Duration::from_secs(10));
    }
}

/// How to run the product on one case.
#[derive(Debug, Clone)]
pub struct ProductRun<'a> {
    /// The gateway binary.
    pub gateway: &'a Path,
    /// The case.
    pub spec: &'a CaseSpec,
    /// The case's pcap (as the lab wrote it).
    pub pcap: &'a Path,
    /// Frames in it.
    pub pcap_frames: usize,
    /// A directory of its own for this run's files (removed by the
    /// caller).
    pub dir: &'a Path,
    /// Seconds of traffic before the first window.
    pub warmup_s: f64,
    /// Seconds per window.
    pub duration_s: f64,
    /// Windows.
    pub windows: usize,
    /// The worker's core.
    pub worker_core: usize,
    /// TSC frequency (from the lab's run).
    pub tsc_hz: u64,
    /// The crypto backend the lab's run used (`espresso run` picks with
    /// the same function, `crypto_backend = "auto"`).
    pub backend: &'a str,
}

/// What the product did on a case.
#[derive(Debug, Clone)]
pub struct ProductResult {
    /// One sample per window.
    pub runs: Vec<RunSample>,
    /// How the output was checked.
    pub verified: String,
    /// Seconds from start until the gateway answered with every SA
    /// installed (measured run).
    pub load_s: f64,
    /// Size of the generated configuration file.
    pub config_bytes: usize,
}

/// Writes the configuration of `run` with these ports into `dir`.
fn write_config(
    run: &ProductRun,
    dir: &Path,
    ports: (String, String),
    frames: usize,
) -> Result<(PathBuf, usize), Error> {
    std::fs::create_dir_all(dir)?;
    let text = config_toml(&Plan {
        spec: run.spec,
        input: ports.0,
        output: ports.1,
        dir,
        worker_core: run.worker_core,
        mbufs: WORKING_MBUFS + frames as u32,
    })?;
    let path = dir.join("espresso.toml");
    std::fs::write(&path, &text)?;
    Ok((path, text.len()))
}

/// Seconds `espresso run` may take to come up with `sa_count` SAs.
fn load_timeout(sa_count: u32) -> Duration {
    Duration::from_secs(60 + u64::from(sa_count) / 500)
}

/// Seconds `espresso run` may take to stop after SIGTERM: with 100,000
/// SAs it took more than 30 s on a loaded machine (its final report
/// collects and prints every SA's counters).
fn stop_timeout(sa_count: u32) -> Duration {
    Duration::from_secs(30 + u64::from(sa_count) / 500)
}

/// Checks the case, then measures it.
pub fn run(run: &ProductRun) -> Result<ProductResult, Error> {
    let verified = verify(run)?;
    let pcap = run.dir.join("product.pcap");
    let frames = retarget_pcap(run.pcap, &pcap, PCAP_PMD_MAC, usize::MAX)?;
    let dir = run.dir.join("measure");
    let (config, config_bytes) = write_config(run, &dir, measured_ports(&pcap)?, frames)?;
    let gw = Gateway::start(
        run.gateway,
        &config,
        &dir,
        run.spec.sa_count as usize,
        load_timeout(run.spec.sa_count),
    )?;
    let names = [WORKER_THREAD.to_string()];
    let runs = external::measure(&external::Windows {
        pid: gw.pid(),
        thread_names: &names,
        telemetry: &gw.telemetry,
        out_port: 1,
        in_port: 0,
        warmup_s: run.warmup_s,
        duration_s: run.duration_s,
        windows: run.windows,
        tsc_hz: run.tsc_hz,
        backend: run.backend,
    });
    let load_s = gw.load_s;
    let stopped = gw.stop(stop_timeout(run.spec.sa_count));
    let mut runs = runs?;
    stopped?;
    for s in &mut runs {
        s.setup_s = load_s;
    }
    Ok(ProductResult {
        runs,
        verified,
        load_s,
        config_bytes,
    })
}

/// The scapy side of [`verify`].
const CHECK_SCRIPT: &str = include_str!("product_check.py");

/// The check: the case's first [`VERIFY_FRAMES`] frames replayed once
/// through `espresso run`, its output written to a pcap and compared by
/// scapy with the plaintext the lab generated (encrypt: scapy decrypts
/// each ESP packet with the SA its SPI names, from the tunnel's outer
/// addresses and UDP ports; decrypt: the plaintext as it leaves). Returns
/// what was checked; an error when anything differs.
pub fn verify(run: &ProductRun) -> Result<String, Error> {
    let spec = run.spec;
    let dir = run.dir.join("verify");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");
    let frames = retarget_pcap(run.pcap, &input, PCAP_PMD_MAC, VERIFY_FRAMES)?;
    let (config, _) = write_config(run, &dir, verify_ports(&input, &output)?, frames)?;
    let gw = Gateway::start(
        run.gateway,
        &config,
        &dir,
        spec.sa_count as usize,
        load_timeout(spec.sa_count),
    )?;
    // The input is read once: wait until the output stops growing.
    let mut tel =
        super::telemetry::Telemetry::connect_within(&gw.telemetry, Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (u64::MAX, Instant::now());
    loop {
        let sent = tel.port_stats(1)?.opackets;
        if sent as usize >= frames {
            break;
        }
        if sent != last.0 {
            last = (sent, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(tel);
    // What went wrong, if anything did: the gateway's nonzero drop and
    // port counters.
    let counters = api(&gw.socket, "stats", Duration::from_secs(30))
        .map(|v| {
            v["counters"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, v)| {
                            (k.starts_with("drop.") || k.starts_with("port."))
                                && v.as_u64().is_some_and(|n| n > 0)
                        })
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        })
        .unwrap_or_else(|e| format!("no stats: {e}"));
    // Closing the port at stop flushes the output pcap.
    gw.stop(stop_timeout(spec.sa_count))?;

    let request = dir.join("check.tsv");
    std::fs::write(&request, check_request(spec, frames))?;
    let script = dir.join("product_check.py");
    std::fs::write(&script, CHECK_SCRIPT)?;
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(&request)
        .arg(&output)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{PYTHON}: {e} (python3-scapy is needed for the check)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{}: the output of espresso run is wrong: {}{} (its counters: {counters})",
            spec.name(),
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(stdout.trim().to_string())
}

/// Debian's python3, which has scapy (a `python3` earlier on `PATH` may
/// not).
const PYTHON: &str = "/usr/bin/python3";

/// scapy's names of the case's suite (encryption, integrity).
fn scapy_names(spec: &CaseSpec) -> (&'static str, &'static str) {
    use super::spec::BenchAlgorithm as A;
    match spec.algorithm {
        A::AesGcm128 | A::AesGcm256 => ("AES-GCM", "NULL"),
        A::ChaCha20Poly1305 => ("CHACHA20-POLY1305", "NULL"),
        A::AesCbc128HmacSha256 => ("AES-CBC", "SHA2-256-128"),
    }
}

/// The check's request: the case, every SA's keys, and the plaintext IP
/// packet each of the first `frames` frames carries, in order (one worker
/// keeps the order).
pub fn check_request(spec: &CaseSpec, frames: usize) -> String {
    let (crypt, auth) = scapy_names(spec);
    let mut s = format!(
        "case\tdirection={}\tcrypt={crypt}\tauth={auth}\tudp={}\tlocal={}\tpeer={}\tgw_lan_mac={}\thost_mac={}\n",
        spec.direction.name(),
        u8::from(spec.udp_encap),
        traffic::WAN_ADDR,
        traffic::PEER_ADDR,
        mac(PCAP_PMD_MAC),
        mac(traffic::HOST_MAC),
    );
    let used = (spec.sa_count as usize).min(frames);
    for i in 0..used as u32 {
        let k = traffic::keys(spec, i);
        let _ = writeln!(
            s,
            "sa\tspi={}\tenc_key={}\tauth_key={}",
            traffic::SPI_BASE + i,
            hex::encode(&*k.enc_key),
            hex::encode(&*k.auth_key)
        );
    }
    for j in 0..frames {
        let i = (j % spec.sa_count as usize) as u32;
        let ip_len = spec.frame.size_of(j) - 18;
        let (src, dst) = match spec.direction {
            Direction::Encrypt => (traffic::local_host(i), traffic::remote_host(i)),
            Direction::Decrypt => (traffic::remote_host(i), traffic::local_host(i)),
        };
        let p = traffic::udp_packet(src, dst, ip_len, j as u16);
        let _ = writeln!(
            s,
            "frame\tspi={}\tinner={}",
            traffic::SPI_BASE + i,
            hex::encode(p)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BenchAlgorithm, FrameSize};

    fn spec(direction: Direction, algorithm: BenchAlgorithm, sa_count: u32) -> CaseSpec {
        CaseSpec {
            direction,
            algorithm,
            frame: FrameSize::Imix,
            udp_encap: direction == Direction::Decrypt,
            sa_count,
            scale_frames: 0,
        }
    }

    fn plan<'a>(spec: &'a CaseSpec, dir: &'a Path) -> Plan<'a> {
        Plan {
            spec,
            input: "net_pcap0,rx_pcap=/tmp/x.pcap,infinite_rx=1".into(),
            output: "net_null0,no-rx=1".into(),
            dir,
            worker_core: 1,
            mbufs: WORKING_MBUFS + 1200,
        }
    }

    /// The generated file passes the gateway's own reader and validator
    /// and describes exactly the lab's SAs, policies, neighbours and
    /// devices.
    #[test]
    fn generated_config_is_valid_and_matches_the_lab() {
        let dir = Path::new("/tmp/espresso-lab-product-test");
        for direction in Direction::ALL {
            for algorithm in BenchAlgorithm::ALL {
                let spec = spec(direction, algorithm, 3);
                let text = config_toml(&plan(&spec, dir)).unwrap();
                let checked = control::config::GatewayConfig::check_str(&text, "case.toml");
                let problems: Vec<String> =
                    checked.problems.iter().map(ToString::to_string).collect();
                assert!(problems.is_empty(), "{problems:?}\n{text}");
                let c = checked.config.expect("valid");
                assert_eq!(c.dataplane.workers, 1);
                assert_eq!(c.dataplane.lcores, "0,1");
                assert_eq!(c.dataplane.memory_mb, EAL_MEMORY_MB);
                assert_eq!(c.dataplane.mbufs, WORKING_MBUFS + 1200);
                assert!(c.dataplane.telemetry);
                assert_eq!(c.dataplane.runtime_dir, dir.join("run"));
                assert_eq!(c.control.socket, dir.join("espresso.sock"));
                assert_eq!(c.interfaces[0].device, plan(&spec, dir).input);
                assert_eq!(
                    c.interfaces[0].role,
                    match direction {
                        Direction::Encrypt => control::config::Role::Lan,
                        Direction::Decrypt => control::config::Role::Wan,
                    }
                );
                assert_eq!(c.neighbours.len(), 2);
                assert_eq!(c.tunnels.len(), 3);
                for (i, t) in c.tunnels.iter().enumerate() {
                    let i = i as u32;
                    let lab_out = traffic::gateway_outbound(&spec, i).unwrap();
                    let lab_in = traffic::gateway_inbound(&spec, i).unwrap();
                    assert_eq!(t.sas.len(), 1);
                    let pair = &t.sas[0];
                    assert_eq!(pair.algorithm, spec.algorithm.algorithm());
                    assert_eq!(pair.outbound.config.spi, lab_out.config().spi);
                    assert_eq!(pair.inbound.config.spi, lab_in.config().spi);
                    assert_eq!(pair.outbound.config.endpoints, lab_out.config().endpoints);
                    assert_eq!(pair.outbound.config.udp_encap, lab_out.config().udp_encap);
                    let keys = traffic::keys(&spec, i);
                    let used = match direction {
                        Direction::Encrypt => &pair.outbound.keys,
                        Direction::Decrypt => &pair.inbound.keys,
                    };
                    assert_eq!(*used.enc_key, *keys.enc_key);
                    assert_eq!(*used.auth_key, *keys.auth_key);
                    if direction == Direction::Decrypt {
                        assert_eq!(pair.inbound.config.replay_window, 0);
                        assert_eq!(
                            pair.inbound.config.traffic_selectors,
                            lab_in.config().traffic_selectors
                        );
                    }
                    let lab_spd = traffic::outbound_spd(3).unwrap();
                    let (_, lab_policy) = lab_spd.iter().nth(i as usize).unwrap();
                    assert_eq!(t.policies.len(), 1);
                    assert_eq!(t.policies[0].selector, lab_policy.selector);
                    assert_eq!(t.policies[0].action, lab_policy.action);
                }
            }
        }
    }

    #[test]
    fn many_sas_get_a_neighbour_per_local_host() {
        let dir = Path::new("/tmp/espresso-lab-product-test");
        let spec = spec(Direction::Encrypt, BenchAlgorithm::AesGcm128, 70_000);
        let text = config_toml(&plan(&spec, dir)).unwrap();
        let c = control::config::GatewayConfig::from_str(&text, "case.toml").unwrap();
        assert_eq!(c.tunnels.len(), 70_000);
        assert_eq!(c.neighbours.len(), 1 + 2);
    }

    #[test]
    fn retargeting_rewrites_only_the_destination_mac() {
        let dir = std::env::temp_dir().join(format!("espresso-retarget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = spec(Direction::Encrypt, BenchAlgorithm::AesGcm128, 2);
        let src = dir.join("a.pcap");
        let dst = dir.join("b.pcap");
        traffic::write_pcap(&spec, &src).unwrap();
        assert_eq!(retarget_pcap(&src, &dst, PCAP_PMD_MAC, 5).unwrap(), 5);
        let a = std::fs::read(&src).unwrap();
        let b = std::fs::read(&dst).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&b[..24], &a[..24]);
        let (mut oa, mut n) = (24, 0);
        while oa < b.len() {
            let len = u32::from_le_bytes(b[oa + 8..oa + 12].try_into().unwrap()) as usize;
            let (fa, fb) = (&a[oa + 16..oa + 16 + len], &b[oa + 16..oa + 16 + len]);
            assert_eq!(&fb[..6], &PCAP_PMD_MAC);
            assert_eq!(&fb[6..], &fa[6..]);
            oa += 16 + len;
            n += 1;
        }
        assert_eq!(n, 5);
    }
}
