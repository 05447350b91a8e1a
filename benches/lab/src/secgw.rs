//! DPDK's `ipsec-secgw` on a lab case: the reference IPsec gateway built
//! on the same DPDK, doing the same job as the lab's in-process gateway on
//! the same pcap, SAs, keys, addresses, vdevs, pool size and core.
//!
//! `make secgw` (scripts/build-secgw.sh) builds it from the source package
//! of the installed DPDK with one change (no RX checksum offload, which
//! the software PMDs lack and the application never reads) and caches it
//! under `target/ipsec-secgw-<version>/`.
//!
//! Per case, [`config`] writes secgw's SA file (`sp`/`sa`/`rt`/`neigh`
//! lines, DPDK's doc/guides/sample_app_ug/ipsec_secgw.rst): one policy
//! and one tunnel-mode SA per lab SA with the lab's SPI, keys and tunnel
//! endpoints, a route to the peer (encrypt) or to the local hosts
//! (decrypt) through port 1 and the hosts' MAC as port 1's neighbour.
//! Before its speed counts, [`verify`] runs it once over the finite pcap
//! with port 1 a `tx_pcap` and has `scripts/secgw_check.py` check the
//! output with scapy's own ESP; then [`run`] measures it with
//! [`super::external::measure`] (telemetry port counters and the polling
//! thread's on-CPU time).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::crypto::SaKeys;

use super::case::{RunSample, EAL_MEMORY_MB, WORKING_MBUFS};
use super::pcap::PcapWriter;
use super::spec::{BenchAlgorithm, CaseSpec, Direction};
use super::telemetry::Telemetry;
use super::traffic;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The name the records give it.
pub const SYSTEM: &str = "ipsec-secgw";

/// Why a case has no secgw figure, if it has none. Every SA count of the
/// lab runs: DPDK 22.11's ipsec-secgw loaded 100,000 tunnels (policies,
/// SAs, a crypto session each) in about 2 s and forwarded every frame of
/// a 100,000-flow pcap through them.
pub fn unavailable(spec: &CaseSpec) -> Option<String> {
    if spec.udp_encap {
        // 22.11's sa.c refuses it for lookaside-none (software crypto)
        // sessions at start-up.
        return Some(
            "ipsec-secgw 22.11: UDP encapsulation not supported for security session type 0 \
             (software crypto)"
                .into(),
        );
    }
    None
}

/// EAL memory (MiB, no hugepages) for secgw: the lab's, except above
/// 10,000 SAs, where its pool (the lab's size), 100,000 crypto sessions,
/// its ACL of 100,000 rules and its LPM tables do not fit in it (`LPM
/// memory allocation failed` at start-up; 1536 MiB was enough).
pub fn memory_mb(spec: &CaseSpec) -> u32 {
    if spec.sa_count > 10_000 {
        2 * EAL_MEMORY_MB
    } else {
        EAL_MEMORY_MB
    }
}

/// secgw's MTU (`--mtu`): its default, 1500, drops the ESP packet of
/// every 1518-byte IMIX frame (the lab's gateway has [`traffic::MTU`],
/// 9000). 2000 lets them all through and still fits one mbuf (secgw
/// needs multi-segment mbufs above about 2030, which it only supports on
/// its library path).
pub const MTU: u16 = 2000;

/// The software crypto device secgw uses for a suite.
pub fn crypto_vdev(alg: BenchAlgorithm) -> &'static str {
    match alg {
        BenchAlgorithm::AesGcm128 | BenchAlgorithm::AesGcm256 => "crypto_aesni_gcm",
        BenchAlgorithm::ChaCha20Poly1305 => "crypto_chacha20_poly1305",
        BenchAlgorithm::AesCbc128HmacSha256 => "crypto_aesni_mb",
    }
}

/// Whether secgw runs a suite on its librte_ipsec path (`-l`) rather than
/// its legacy one: 22.11's legacy ESP code has no ChaCha20-Poly1305
/// (`IPSEC_ESP: unsupported cipher algorithm 0` on every packet, nothing
/// forwarded); librte_ipsec has it. (The library path leaves the inner
/// TTL alone; the legacy path decrements it.)
pub fn library_path(alg: BenchAlgorithm) -> bool {
    alg == BenchAlgorithm::ChaCha20Poly1305
}

/// scapy's names (`crypt_algo`, `auth_algo`) of a suite.
pub fn scapy_names(alg: BenchAlgorithm) -> (&'static str, &'static str) {
    match alg {
        BenchAlgorithm::AesGcm128 | BenchAlgorithm::AesGcm256 => ("AES-GCM", "NULL"),
        BenchAlgorithm::ChaCha20Poly1305 => ("CHACHA20-POLY1305", "NULL"),
        BenchAlgorithm::AesCbc128HmacSha256 => ("AES-CBC", "SHA2-256-128"),
    }
}

/// Bytes as secgw's keys are written: `5a:79:...`.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The algorithm part of an `sa` line. For AEADs the key is the lab's
/// KEYMAT as is: the cipher key and then the 4-byte salt (RFC 4106 §8.1,
/// RFC 7634 §4), which is what secgw's parser takes off the end.
pub fn sa_algo(alg: BenchAlgorithm, keys: &SaKeys) -> String {
    match alg {
        BenchAlgorithm::AesGcm128
        | BenchAlgorithm::AesGcm256
        | BenchAlgorithm::ChaCha20Poly1305 => {
            let name = match alg {
                BenchAlgorithm::AesGcm128 => "aes-128-gcm",
                BenchAlgorithm::AesGcm256 => "aes-256-gcm",
                _ => "chacha20-poly1305",
            };
            format!("aead_algo {name} aead_key {}", colon_hex(&keys.enc_key))
        }
        BenchAlgorithm::AesCbc128HmacSha256 => format!(
            "cipher_algo aes-128-cbc cipher_key {} auth_algo sha256-hmac auth_key {}",
            colon_hex(&keys.enc_key),
            colon_hex(&keys.auth_key)
        ),
    }
}

/// SPI of the one SA of the direction the case does not exercise: secgw
/// refuses an unprotected port without an inbound SA (and the converse),
/// so it gets one tunnel in that direction that no traffic selects
/// (TEST-NET-3, RFC 5737).
pub const IDLE_SPI: u32 = traffic::SPI_BASE - 1;

fn mac(m: [u8; 6]) -> String {
    colon_hex(&m)
}

fn sp_line(
    out: &mut String,
    dir: &str,
    spi: u32,
    src: impl std::fmt::Display,
    dst: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "sp ipv4 {dir} esp protect {spi} pri 1 src {src}/32 dst {dst}/32 sport 0:65535 dport 0:65535"
    );
}

/// secgw's configuration file for `spec`: policy `i` selects exactly flow
/// `i`'s addresses (as the lab's SPD does) and protects it with SA `i`
/// (SPI, keys and tunnel endpoints of the lab's SA `i`).
pub fn config(spec: &CaseSpec) -> String {
    let alg = spec.algorithm;
    let (wan, peer) = (traffic::WAN_ADDR, traffic::PEER_ADDR);
    let mut s = format!(
        "# ipsec-secgw configuration for the lab case `{}` (espresso-lab)\n",
        spec.name()
    );
    let idle_keys = SaKeys::new(
        &vec![0; alg.algorithm().encryption.key_len()],
        &vec![0; alg.algorithm().integrity.key_len()],
    );
    match spec.direction {
        Direction::Encrypt => {
            for i in 0..spec.sa_count {
                let spi = traffic::SPI_BASE + i;
                sp_line(
                    &mut s,
                    "out",
                    spi,
                    traffic::local_host(i),
                    traffic::remote_host(i),
                );
                let _ = writeln!(
                    s,
                    "sa out {spi} {} mode ipv4-tunnel src {wan} dst {peer}",
                    sa_algo(alg, &traffic::keys(spec, i))
                );
            }
            sp_line(&mut s, "in", IDLE_SPI, "203.0.113.2", "203.0.113.1");
            let _ = writeln!(
                s,
                "sa in {IDLE_SPI} {} mode ipv4-tunnel src {peer} dst {wan}",
                sa_algo(alg, &idle_keys)
            );
            let _ = writeln!(s, "rt ipv4 dst {peer}/32 port 1");
        }
        Direction::Decrypt => {
            for i in 0..spec.sa_count {
                let spi = traffic::SPI_BASE + i;
                sp_line(
                    &mut s,
                    "in",
                    spi,
                    traffic::remote_host(i),
                    traffic::local_host(i),
                );
                let _ = writeln!(
                    s,
                    "sa in {spi} {} mode ipv4-tunnel src {peer} dst {wan}",
                    sa_algo(alg, &traffic::keys(spec, i))
                );
            }
            sp_line(&mut s, "out", IDLE_SPI, "203.0.113.1", "203.0.113.2");
            let _ = writeln!(
                s,
                "sa out {IDLE_SPI} {} mode ipv4-tunnel src {wan} dst {peer}",
                sa_algo(alg, &idle_keys)
            );
            // The local hosts, 198.18.0.0/16 (traffic::local_host).
            let _ = writeln!(s, "rt ipv4 dst 198.18.0.0/16 port 1");
        }
    }
    let _ = writeln!(s, "neigh port 1 {}", mac(traffic::HOST_MAC));
    s
}

/// The cached build `make secgw` makes for the installed DPDK:
/// `target/ipsec-secgw-<libdpdk-dev version>/ipsec-secgw`, next to the
/// directory of `exe` (`target/release/espresso-lab`).
pub fn default_binary(exe: &Path) -> Result<PathBuf, Error> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libdpdk-dev"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() {
        return Err("libdpdk-dev is not installed (make deps)".into());
    }
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot place the target directory")?;
    Ok(target
        .join(format!("ipsec-secgw-{}", cache_version(&version)))
        .join("ipsec-secgw"))
}

/// The Debian version as scripts/build-secgw.sh names its cache directory
/// (an epoch's `:` and a `~` replaced by `_`).
pub fn cache_version(version: &str) -> String {
    version.replace([':', '~'], "_")
}

/// How to run secgw for one case.
#[derive(Debug, Clone)]
pub struct Secgw<'a> {
    /// The binary.
    pub binary: &'a Path,
    /// The case's pcap.
    pub pcap: &'a Path,
    /// Frames in it.
    pub pcap_frames: usize,
    /// Seconds of traffic before measuring.
    pub warmup_s: f64,
    /// Seconds per window.
    pub duration_s: f64,
    /// Windows.
    pub windows: usize,
    /// The core it polls on (its only lcore).
    pub worker_core: usize,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Distinguishes its runtime files from other runs'.
    pub run_id: u64,
    /// Where its configuration and the check's files go.
    pub dir: &'a Path,
}

/// The polling thread's name: secgw's main lcore, the only one, is the
/// process's main thread, named after the binary (15 bytes at most).
fn thread_name(binary: &Path) -> String {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.chars().take(15).collect()
}

/// A secgw process; SIGTERM (secgw's own clean exit: it stops the ports,
/// which flushes a tx_pcap) and then SIGKILL when dropped, and its runtime
/// directory removed.
struct Process {
    child: Child,
    runtime_dir: PathBuf,
}

impl Process {
    fn stop(&mut self, within: Duration) -> Result<std::process::ExitStatus, Error> {
        if self.child.try_wait()?.is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Some(s) = self.child.try_wait()? {
                    return Ok(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
        // Ours alone: the prefix names this process and run.
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

fn spawn(
    s: &Secgw,
    spec: &CaseSpec,
    prefix: &str,
    input: &str,
    output: &str,
    log: &Path,
) -> Result<Process, Error> {
    let cfg = s.dir.join(format!("{prefix}.cfg"));
    std::fs::write(&cfg, config(spec))?;
    let core = s.worker_core;
    // Port 0 is where traffic enters; the other port is the unprotected
    // one when it leaves encrypted, and the converse.
    let unprotected = match spec.direction {
        Direction::Encrypt => "0x2",
        Direction::Decrypt => "0x1",
    };
    let child = Command::new(s.binary)
        .args(["-l", &core.to_string()])
        .args(["--no-huge", "--no-pci", "-m", &memory_mb(spec).to_string()])
        .arg(format!("--file-prefix={prefix}"))
        .arg("--log-level=lib.eal:warning")
        .args(["--vdev", input, "--vdev", output])
        .args(["--vdev", crypto_vdev(spec.algorithm)])
        .args(["--", "-p", "0x3", "-P", "-u", unprotected])
        .args(library_path(spec.algorithm).then_some("-l"))
        // Its one lcore polls both ports (with port 0 alone the library
        // path aborts).
        .args(["--config", &format!("(0,0,{core}),(1,0,{core})")])
        .args(["--mtu", &MTU.to_string()])
        // The lab's pool: the working mbufs plus the pcap, which net_pcap
        // keeps in mbufs.
        .args(["-s", &(WORKING_MBUFS + s.pcap_frames as u32).to_string()])
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()
        .map_err(|e| format!("{}: {e}", s.binary.display()))?;
    Ok(Process {
        child,
        runtime_dir: PathBuf::from(format!("/var/run/dpdk/{prefix}")),
    })
}

fn telemetry_path(prefix: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/dpdk/{prefix}/dpdk_telemetry.v2"))
}

/// The tail of secgw's output, for an error.
fn log_tail(log: &Path) -> String {
    let mut t = String::new();
    for p in [log.to_path_buf(), log.with_extension("err")] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
            t.push_str(&lines[lines.len().saturating_sub(6)..].join(" / "));
            t.push(' ');
        }
    }
    t.trim().to_string()
}

/// Waits until secgw forwards: its output port has sent a frame (its
/// telemetry answers from EAL's start, long before it has loaded its SAs
/// and started the ports; its own "entering main loop" line sits in a
/// stdio buffer), or fails with its last words.
fn wait_up(
    p: &mut Process,
    prefix: &str,
    log: &Path,
    within: Duration,
) -> Result<Telemetry, Error> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = p.child.try_wait()? {
            return Err(format!("ipsec-secgw exited ({st}): {}", log_tail(log)).into());
        }
        if let Ok(mut t) = Telemetry::connect(&telemetry_path(prefix)) {
            if t.port_stats(1).is_ok_and(|p| p.opackets > 0) {
                return Ok(t);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "ipsec-secgw did not start within {within:?}: {}",
                log_tail(log)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The measured windows of one case (a process of its own).
pub fn run(s: &Secgw, spec: &CaseSpec) -> Result<Vec<RunSample>, Error> {
    let prefix = format!("espresso-secgw-{}-{}", std::process::id(), s.run_id);
    let pcap = s.pcap.to_str().ok_or("pcap path is not UTF-8")?;
    let log = s.dir.join(format!("{prefix}.log"));
    let mut p = spawn(
        s,
        spec,
        &prefix,
        &format!("net_pcap0,rx_pcap={pcap},infinite_rx=1"),
        "net_null0,no-rx=1",
        &log,
    )?;
    drop(wait_up(&mut p, &prefix, &log, Duration::from_secs(60))?);
    let names = [thread_name(s.binary)];
    let tel = telemetry_path(&prefix);
    let samples = super::external::measure(&super::external::Windows {
        pid: p.child.id(),
        thread_names: &names,
        telemetry: &tel,
        out_port: 1,
        in_port: 0,
        warmup_s: s.warmup_s,
        duration_s: s.duration_s,
        windows: s.windows,
        tsc_hz: s.tsc_hz,
        backend: SYSTEM,
    });
    let alive = p.child.try_wait()?.is_none();
    p.stop(Duration::from_secs(10))?;
    if !alive {
        return Err(format!("ipsec-secgw stopped while measured: {}", log_tail(&log)).into());
    }
    let mut samples = samples?;
    for x in &mut samples {
        x.backend = format!(
            "{SYSTEM} {}{}",
            crypto_vdev(spec.algorithm),
            if library_path(spec.algorithm) {
                " librte_ipsec"
            } else {
                ""
            }
        );
    }
    Ok(samples)
}

/// Frames fully decrypted and compared per check (every frame is
/// counted): a fixed pseudo-random sample of the output.
pub const CHECK_SAMPLE: usize = 2048;

/// The checker (run with Debian's /usr/bin/python3, which has scapy).
const CHECK_SCRIPT: &str = include_str!("../scripts/secgw_check.py");

/// The original plaintext of a decrypt case's pcap, frame for frame (as
/// [`traffic::write_pcap`] built it before encrypting it).
fn write_plaintext_reference(spec: &CaseSpec, path: &Path) -> Result<(), Error> {
    let mut w = PcapWriter::create(path)?;
    for j in 0..traffic::frame_count(spec) {
        let i = (j % spec.sa_count as usize) as u32;
        let ip_len = spec.frame.size_of(j) - 18;
        let inner = traffic::udp_packet(
            traffic::remote_host(i),
            traffic::local_host(i),
            ip_len,
            j as u16,
        );
        w.write(&traffic::ethernet(
            traffic::WAN_MAC,
            traffic::HOST_MAC,
            &inner,
        ))?;
    }
    w.finish()?;
    Ok(())
}

/// The checker's request file (see scripts/secgw_check.py).
pub fn check_request(spec: &CaseSpec, reference: &Path, output: &Path, sample: usize) -> String {
    let (crypt, auth) = scapy_names(spec.algorithm);
    let (local, peer) = match spec.direction {
        Direction::Encrypt => (traffic::WAN_ADDR, traffic::PEER_ADDR),
        Direction::Decrypt => (traffic::PEER_ADDR, traffic::WAN_ADDR),
    };
    let mut s = format!(
        "direction={}\tcrypt={crypt}\tauth={auth}\treference={}\toutput={}\tlocal={local}\tpeer={peer}\tmac={}\tsample={sample}\n",
        spec.direction.name(),
        reference.display(),
        output.display(),
        mac(traffic::HOST_MAC),
    );
    for i in 0..spec.sa_count {
        let k = traffic::keys(spec, i);
        let (src, dst) = match spec.direction {
            Direction::Encrypt => (traffic::local_host(i), traffic::remote_host(i)),
            Direction::Decrypt => (traffic::remote_host(i), traffic::local_host(i)),
        };
        let _ = writeln!(
            s,
            "spi={}\tenc={}\tauth={}\tsrc={src}\tdst={dst}",
            traffic::SPI_BASE + i,
            hex::encode(&*k.enc_key),
            hex::encode(&*k.auth_key)
        );
    }
    s
}

/// Runs secgw once over the case's pcap (not looped), its output port a
/// `tx_pcap`, and checks what it sent with scapy. `Ok(what was checked)`,
/// or `Err(why the output is wrong or could not be checked)`.
pub fn verify(s: &Secgw, spec: &CaseSpec) -> Result<String, String> {
    let prefix = format!("espresso-secgw-check-{}-{}", std::process::id(), s.run_id);
    let pcap = s.pcap.to_str().ok_or("pcap path is not UTF-8")?;
    let out = s.dir.join(format!("{prefix}.out.pcap"));
    let log = s.dir.join(format!("{prefix}.log"));
    let e = |x: Error| x.to_string();
    let mut p = spawn(
        s,
        spec,
        &prefix,
        &format!("net_pcap0,rx_pcap={pcap}"),
        &format!("net_pcap1,tx_pcap={}", out.display()),
        &log,
    )
    .map_err(e)?;
    let mut tel = wait_up(&mut p, &prefix, &log, Duration::from_secs(60)).map_err(e)?;
    // Until every frame went out, or nothing moved for a second once
    // something had, or a minute passed.
    let want = s.pcap_frames as u64;
    let started = Instant::now();
    let mut last = (1, Instant::now());
    loop {
        let sent = tel.port_stats(1).map_err(e)?.opackets;
        if sent >= want || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        if sent != last.0 {
            last = (sent, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tel);
    let status = p.stop(Duration::from_secs(10)).map_err(e)?;
    drop(p);
    if !status.success() {
        return Err(format!(
            "ipsec-secgw exited with {status}: {}",
            log_tail(&log)
        ));
    }
    let reference = match spec.direction {
        Direction::Encrypt => s.pcap.to_path_buf(),
        Direction::Decrypt => {
            let r = s.dir.join(format!("{prefix}.plain.pcap"));
            write_plaintext_reference(spec, &r).map_err(e)?;
            r
        }
    };
    let req = s.dir.join(format!("{prefix}.check"));
    let script = s.dir.join("secgw_check.py");
    let run = (|| -> Result<std::process::Output, Error> {
        std::fs::write(&req, check_request(spec, &reference, &out, CHECK_SAMPLE))?;
        std::fs::write(&script, CHECK_SCRIPT)?;
        Ok(Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&req)
            .output()?)
    })();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&req);
    if spec.direction == Direction::Decrypt {
        let _ = std::fs::remove_file(&reference);
    }
    let o = run.map_err(|x| format!("running the scapy check: {x}"))?;
    let said = String::from_utf8_lossy(&o.stdout).trim().to_string();
    match said.strip_prefix("ok: ") {
        Some(ok) if o.status.success() => Ok(format!("scapy check: {ok}")),
        _ => Err(format!(
            "{}{}",
            said.strip_prefix("failed: ").unwrap_or(&said),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FrameSize;

    fn spec(direction: Direction, algorithm: BenchAlgorithm, sa_count: u32) -> CaseSpec {
        CaseSpec {
            direction,
            algorithm,
            frame: FrameSize::Fixed(64),
            udp_encap: false,
            sa_count,
            scale_frames: 0,
        }
    }

    /// An `sa` line's fields after the SPI, by keyword.
    fn sa_fields(line: &str) -> std::collections::HashMap<String, String> {
        let t: Vec<&str> = line.split_whitespace().collect();
        t[3..]
            .chunks(2)
            .map(|c| (c[0].to_string(), c.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    fn key_bytes(s: &str) -> Vec<u8> {
        s.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn gcm_encrypt_config_is_the_lab_tunnel() {
        let sp = spec(Direction::Encrypt, BenchAlgorithm::AesGcm128, 1);
        let cfg = config(&sp);
        let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines[0],
            "sp ipv4 out esp protect 4096 pri 1 src 198.18.0.1/32 dst 198.19.0.0/32 sport 0:65535 dport 0:65535"
        );
        assert!(lines[1].starts_with("sa out 4096 aead_algo aes-128-gcm aead_key "));
        let f = sa_fields(lines[1]);
        // The lab's KEYMAT: 16 key bytes, then the 4-byte salt.
        assert_eq!(key_bytes(&f["aead_key"]), *traffic::keys(&sp, 0).enc_key);
        assert_eq!(f["aead_key"].split(':').count(), 20);
        assert_eq!(
            (f["mode"].as_str(), f["src"].as_str(), f["dst"].as_str()),
            ("ipv4-tunnel", "192.0.2.1", "192.0.2.2")
        );
        assert!(!f.contains_key("auth_algo"));
        // The idle inbound tunnel, the route to the peer and its MAC.
        assert!(lines[2].starts_with("sp ipv4 in esp protect 4095 "));
        assert!(lines[3].starts_with("sa in 4095 aead_algo aes-128-gcm "));
        assert_eq!(lines[4], "rt ipv4 dst 192.0.2.2/32 port 1");
        assert_eq!(lines[5], "neigh port 1 02:00:00:00:00:fe");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn aead_keys_carry_the_salt() {
        for (alg, name, len) in [
            (BenchAlgorithm::AesGcm256, "aes-256-gcm", 36),
            (BenchAlgorithm::ChaCha20Poly1305, "chacha20-poly1305", 36),
        ] {
            let sp = spec(Direction::Encrypt, alg, 1);
            let cfg = config(&sp);
            let sa = cfg.lines().find(|l| l.starts_with("sa out 4096")).unwrap();
            let f = sa_fields(sa);
            assert_eq!(f["aead_algo"], name);
            assert_eq!(key_bytes(&f["aead_key"]).len(), len);
        }
    }

    #[test]
    fn cbc_hmac_decrypt_config() {
        let sp = spec(Direction::Decrypt, BenchAlgorithm::AesCbc128HmacSha256, 2);
        let cfg = config(&sp);
        let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines[2],
            "sp ipv4 in esp protect 4097 pri 1 src 198.19.0.1/32 dst 198.18.0.1/32 sport 0:65535 dport 0:65535"
        );
        let f = sa_fields(lines[3]);
        assert!(lines[3].starts_with("sa in 4097 "));
        assert_eq!(f["cipher_algo"], "aes-128-cbc");
        assert_eq!(f["auth_algo"], "sha256-hmac");
        let k = traffic::keys(&sp, 1);
        assert_eq!(key_bytes(&f["cipher_key"]), *k.enc_key);
        assert_eq!(key_bytes(&f["auth_key"]), *k.auth_key);
        assert_eq!(key_bytes(&f["auth_key"]).len(), 32);
        assert_eq!(
            (f["src"].as_str(), f["dst"].as_str()),
            ("192.0.2.2", "192.0.2.1")
        );
        assert!(cfg.contains("sa out 4095 cipher_algo aes-128-cbc "));
        assert!(cfg.contains("\nrt ipv4 dst 198.18.0.0/16 port 1\n"));
        assert_eq!(crypto_vdev(sp.algorithm), "crypto_aesni_mb");
        assert!(!library_path(sp.algorithm));
        assert!(library_path(BenchAlgorithm::ChaCha20Poly1305));
    }

    #[test]
    fn many_sas_are_distinct_tunnels() {
        let sp = spec(Direction::Encrypt, BenchAlgorithm::AesGcm128, 10_000);
        let cfg = config(&sp);
        let sas: Vec<&str> = cfg.lines().filter(|l| l.starts_with("sa out ")).collect();
        let sps: Vec<&str> = cfg
            .lines()
            .filter(|l| l.starts_with("sp ipv4 out "))
            .collect();
        assert_eq!((sas.len(), sps.len()), (10_000, 10_000));
        let spis: std::collections::HashSet<&str> = sas
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(spis.len(), 10_000);
        let flows: std::collections::HashSet<(&str, &str)> = sps
            .iter()
            .map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                (t[9], t[11])
            })
            .collect();
        assert_eq!(flows.len(), 10_000);
        // SA 9999: SPI 0x1000 + 9999 for flow 9999.
        assert!(cfg.contains(&format!(
            "sp ipv4 out esp protect {} pri 1 src 198.18.0.1/32 dst {}/32 ",
            0x1000 + 9999,
            traffic::remote_host(9999)
        )));
    }

    #[test]
    fn unavailable_cases_say_why() {
        let mut sp = spec(Direction::Encrypt, BenchAlgorithm::AesGcm128, 1);
        assert_eq!(unavailable(&sp), None);
        sp.sa_count = 100_000;
        assert_eq!(unavailable(&sp), None);
        assert_eq!(memory_mb(&sp), 2 * EAL_MEMORY_MB);
        sp.sa_count = 10_000;
        assert_eq!(memory_mb(&sp), EAL_MEMORY_MB);
        sp.udp_encap = true;
        assert!(unavailable(&sp).unwrap().contains("UDP encapsulation"));
    }

    #[test]
    fn cache_directory_matches_the_build_script() {
        // scripts/build-secgw.sh: safe_version=${version//[:~]/_}
        assert_eq!(cache_version("22.11.11-0+deb12u1"), "22.11.11-0+deb12u1");
        assert_eq!(cache_version("1:23.11~rc1-1"), "1_23.11_rc1-1");
        let script = include_str!("../../../scripts/build-secgw.sh");
        assert!(script.contains("safe_version=${version//[:~]/_}"));
        assert!(script.contains("target/ipsec-secgw-$safe_version"));
        assert_eq!(
            default_binary(Path::new("/x/target/release/espresso-lab"))
                .ok()
                .map(|p| p.starts_with("/x/target") && p.ends_with("ipsec-secgw")),
            // Without libdpdk-dev installed there is no default.
            default_binary(Path::new("/x/target/release/espresso-lab"))
                .ok()
                .map(|_| true)
        );
    }

    /// Whether Debian's python3 has scapy (the checker's only need).
    fn have_scapy() -> bool {
        let ok = Command::new("/usr/bin/python3")
            .args(["-c", "import scapy.layers.ipsec, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            println!("skipped: /usr/bin/python3 has no scapy or cryptography (python3-scapy)");
        }
        ok
    }

    /// Runs the checker on `output` for `spec` (whose pcap is `input`).
    fn check(spec: &CaseSpec, dir: &Path, input: &Path, output: &Path) -> String {
        let reference = match spec.direction {
            Direction::Encrypt => input.to_path_buf(),
            Direction::Decrypt => {
                let r = dir.join("plain.pcap");
                write_plaintext_reference(spec, &r).unwrap();
                r
            }
        };
        let req = dir.join("req");
        std::fs::write(&req, check_request(spec, &reference, output, 100)).unwrap();
        let script = dir.join("secgw_check.py");
        std::fs::write(&script, CHECK_SCRIPT).unwrap();
        let o = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&req)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )
    }

    /// Rewrites a pcap frame by frame.
    fn rewrite(from: &Path, to: &Path, f: &mut dyn FnMut(usize, &[u8]) -> Vec<u8>) {
        let bytes = std::fs::read(from).unwrap();
        let mut w = PcapWriter::create(to).unwrap();
        let (mut off, mut j) = (24, 0);
        while off + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
            w.write(&f(j, &bytes[off + 16..off + 16 + len])).unwrap();
            off += 16 + len;
            j += 1;
        }
        w.finish().unwrap();
    }

    /// The checker accepts ESP that decrypts to the input (here made by
    /// Espresso's own engine with the lab's SAs, as secgw must make it)
    /// and refuses plaintext, a wrong key's ESP and altered packets.
    #[test]
    fn the_scapy_check_tells_right_from_wrong() {
        if !have_scapy() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("espresso-secgw-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut enc = spec(Direction::Encrypt, BenchAlgorithm::AesCbc128HmacSha256, 3);
        enc.frame = FrameSize::Imix;
        let input = dir.join("in.pcap");
        traffic::write_pcap(&enc, &input).unwrap();
        let esp = |spec: &CaseSpec, key_of: u32, out: &Path| {
            // Flow i under SA i + key_of (its SPI and keys).
            let mut sas: Vec<_> = (0..spec.sa_count)
                .map(|i| traffic::gateway_outbound(spec, (i + key_of) % spec.sa_count).unwrap())
                .collect();
            rewrite(&input, out, &mut |j, frame| {
                let i = j % spec.sa_count as usize;
                let mut buf = dataplane::buf::HeapBuf::new(128, &frame[14..], 128);
                sas[i].encapsulate(&mut buf, &mut |_| {}).unwrap();
                traffic::ethernet(
                    traffic::HOST_MAC,
                    traffic::WAN_MAC,
                    dataplane::buf::PacketBuf::data(&buf),
                )
            });
        };
        let good = dir.join("good.pcap");
        esp(&enc, 0, &good);
        let r = check(&enc, &dir, &input, &good);
        assert!(r.starts_with("ok: 1200 of 1200 frames forwarded"), "{r}");
        assert!(r.contains("TTL -0") && r.contains("3 SPIs"), "{r}");
        // Plaintext where ESP should be.
        let r = check(&enc, &dir, &input, &input);
        assert!(
            r.starts_with("failed: frame ") && r.contains("destination MAC"),
            "{r}"
        );
        // Each flow under the next flow's SPI and keys.
        let wrong = dir.join("wrong.pcap");
        esp(&enc, 1, &wrong);
        let r = check(&enc, &dir, &input, &wrong);
        assert!(
            r.starts_with("failed: frame ") && r.contains("carried by SPI"),
            "{r}"
        );
        // A frame missing: the file without its last record.
        let short = dir.join("short.pcap");
        let bytes = std::fs::read(&good).unwrap();
        let (mut off, mut last) = (24, 24);
        while off + 16 <= bytes.len() {
            last = off;
            off += 16 + u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        }
        std::fs::write(&short, &bytes[..last]).unwrap();
        let r = check(&enc, &dir, &input, &short);
        assert_eq!(r, "failed: secgw sent 1199 frames for 1200 in");

        // Decrypt: the plaintext with its TTL decremented (and checksum
        // fixed) passes; a changed payload byte does not.
        let dec = spec(Direction::Decrypt, BenchAlgorithm::AesGcm256, 2);
        let dec_in = dir.join("dec-in.pcap");
        traffic::write_pcap(&dec, &dec_in).unwrap();
        let plain = dir.join("dec-plain.pcap");
        write_plaintext_reference(&dec, &plain).unwrap();
        let forwarded = |corrupt: bool, out: &Path| {
            rewrite(&plain, out, &mut |_, f| {
                let mut f = f.to_vec();
                f[..6].copy_from_slice(&traffic::HOST_MAC);
                f[14 + 8] -= 1;
                f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
                let c = !dataplane_checksum(&f[14..34]);
                f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
                if corrupt {
                    let n = f.len();
                    f[n - 1] ^= 1;
                }
                f
            });
        };
        let out = dir.join("dec-out.pcap");
        forwarded(false, &out);
        let r = check(&dec, &dir, &dec_in, &out);
        assert!(
            r.starts_with("ok: 1200 of 1200") && r.contains("TTL -1"),
            "{r}"
        );
        forwarded(true, &out);
        let r = check(&dec, &dir, &dec_in, &out);
        assert!(r.contains("differs from the original"), "{r}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The one's-complement sum of RFC 1071 (not yet inverted).
    fn dataplane_checksum(b: &[u8]) -> u16 {
        let mut sum: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn check_request_lists_every_sa() {
        let sp = spec(Direction::Decrypt, BenchAlgorithm::AesGcm128, 3);
        let r = check_request(&sp, Path::new("/r.pcap"), Path::new("/o.pcap"), 10);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("direction=decrypt\tcrypt=AES-GCM\tauth=NULL\t"));
        assert!(lines[0].contains("local=192.0.2.2\tpeer=192.0.2.1"));
        assert_eq!(
            lines[3],
            format!(
                "spi=4098\tenc={}\tauth=\tsrc=198.19.0.2\tdst=198.18.0.1",
                hex::encode(&*traffic::keys(&sp, 2).enc_key)
            )
        );
    }
}
