//! The gateway on what real hardware set-ups use: DPDK's telemetry socket,
//! hugepages, several RX queues with traffic spread over the workers, and
//! the PCI allow-list. Each test starts `espresso run` in a network
//! namespace of its own on an AF_PACKET port over a veth pair.
//!
//! There is no physical NIC to drive here: the PCI path is exercised with
//! an address that has no device (EAL scans the bus with it on the
//! allow-list, and the gateway refuses to start naming the interface).
//!
//! Skipped without root, DPDK or `ip`; failed under `ESPRESSO_TEST_FULL`.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::{require, Need, Netns, Reaper};

/// One gateway at a time: the machine has two cores, and the hugepage
/// test changes the host's reservation.
static SERIAL: Mutex<()> = Mutex::new(());

const ESPRESSO: &str = env!("CARGO_BIN_EXE_espresso");

macro_rules! require_gateway {
    () => {
        require!(Need::Root, Need::Dpdk(cfg!(have_dpdk)), Need::Program("ip"));
    };
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("espresso-hw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A namespace with a veth pair: the gateway's end `g0`, the peer's `p0`
/// (10.77.0.2/24; the gateway is 10.77.0.1).
fn world(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.veth("g0", "p0");
    ns.exec("ip", &["addr", "add", "10.77.0.2/24", "dev", "p0"]);
    ns
}

/// `espresso run` in a namespace, its log in a file; killed on drop if
/// it was not stopped.
struct Gateway {
    child: Option<Reaper>,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Gateway {
    /// Writes `config` to `dir` and starts the gateway; returns once the
    /// control socket is up, or the log if it exited first.
    fn start(ns: &Netns, dir: &Path, config: &str) -> Result<Gateway, String> {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("gateway.log");
        let child = ns
            .command(ESPRESSO)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn espresso");
        let mut gw = Gateway {
            child: Some(Reaper(child)),
            config: path,
            socket: dir.join("gw.sock"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gw.socket.exists() {
            if let Some(r) = gw.child.as_mut() {
                if let Ok(Some(status)) = r.0.try_wait() {
                    gw.child = None;
                    return Err(format!("espresso exited ({status}):\n{}", gw.log()));
                }
            }
            assert!(
                Instant::now() < deadline,
                "no control socket:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(gw)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `espresso stats` as a map.
    fn stats(&self) -> std::collections::HashMap<String, u64> {
        let out = Command::new(ESPRESSO)
            .args(["stats", "-c"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// SIGTERM, then waits for a clean exit; returns the final report.
    fn stop(mut self) -> String {
        let mut r = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(r.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = r.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "espresso did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut report = String::new();
        if let Some(mut out) = r.0.stdout.take() {
            out.read_to_string(&mut report).unwrap();
        }
        assert!(
            status.success(),
            "espresso failed ({status}):\n{}",
            self.log()
        );
        report
    }
}

/// A minimal gateway configuration on `g0`; `dataplane` and `interface`
/// add keys to those tables.
fn config(dir: &Path, dataplane: &str, device: &str, interface: &str) -> String {
    format!(
        "[dataplane]\nmemory_mb = 64\nmbufs = 2047\n{dataplane}\n\
         [control]\nsocket = \"{}\"\n\
         [[interface]]\nname = \"lan\"\ndevice = \"{device}\"\nrole = \"lan\"\naddresses = [\"10.77.0.1/24\"]\n{interface}\n",
        dir.join("gw.sock").display()
    )
}

/// Sends `command` on DPDK's telemetry socket and returns the JSON reply
/// (after the greeting every connection starts with).
fn telemetry(path: &Path, command: &str) -> serde_json::Value {
    use nix::sys::socket::{
        connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    let hello: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert!(hello.get("version").is_some(), "greeting {hello}");
    send(fd.as_raw_fd(), command.as_bytes(), MsgFlags::empty()).unwrap();
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    serde_json::from_slice(&buf[..n]).unwrap()
}

/// Telemetry is on by default; its socket is linked into the runtime
/// directory (here the control socket's; a dead link there is replaced),
/// answers `/ethdev/list` with the
/// one port, and neither the link nor EAL's runtime directory outlives the
/// gateway.
#[test]
fn telemetry_socket_in_the_runtime_directory() {
    require_gateway!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("tm");
    let ns = world("hwtm");
    // A link left by a gateway that was killed: its socket has no listener.
    let stale = dir.0.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    std::os::unix::fs::symlink(&stale, dir.0.join("dpdk_telemetry.v2")).unwrap();
    let gw = Gateway::start(
        &ns,
        &dir.0,
        &config(&dir.0, "hugepages = \"off\"", "net_af_packet0,iface=g0", ""),
    )
    .unwrap();
    let link = dir.0.join("dpdk_telemetry.v2");
    let log = gw.log();
    assert!(
        log.contains(&format!("socket={}", link.display())),
        "the log names the socket:\n{log}"
    );
    let target = std::fs::read_link(&link).expect("a link to DPDK's socket");
    assert!(
        target.ends_with("dpdk_telemetry.v2"),
        "{}",
        target.display()
    );
    let list = telemetry(&link, "/ethdev/list");
    assert_eq!(list, serde_json::json!({ "/ethdev/list": [0] }));
    let info = telemetry(&link, "/ethdev/info,0");
    assert_eq!(info["/ethdev/info"]["name"], "net_af_packet0", "{info}");
    gw.stop();
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "link left behind"
    );
    let runtime = target.parent().unwrap();
    assert!(!runtime.exists(), "{} left behind", runtime.display());
}

/// The host's 2 MiB hugepage reservation, put back on drop (also when the
/// test fails).
struct HugepageReservation {
    nr: PathBuf,
    original: u64,
}

impl HugepageReservation {
    const NR: &'static str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

    fn add(pages: u64) -> Result<HugepageReservation, String> {
        let nr = PathBuf::from(Self::NR);
        let original: u64 = std::fs::read_to_string(&nr)
            .map_err(|e| format!("{}: {e}", nr.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))?;
        let guard = HugepageReservation { nr, original };
        std::fs::write(&guard.nr, (original + pages).to_string())
            .map_err(|e| format!("reserving hugepages: {e}"))?;
        Ok(guard)
    }
}

impl Drop for HugepageReservation {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.nr, self.original.to_string());
    }
}

fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == field).then(|| v.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{field} not in /proc/meminfo"))
}

/// With 2 MiB hugepages reserved, `hugepages = "on"` runs EAL on them: the
/// log says so, and the host's free hugepages drop by at least memory_mb
/// while the gateway runs and come back after. The reservation is undone.
#[test]
fn gateway_runs_on_hugepages() {
    require_gateway!();
    if !Path::new(HugepageReservation::NR).exists() {
        testkit::skip("no 2 MiB hugepages in this kernel");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // memory_mb = 64 is 32 pages; a few more for the pool's growth.
    let reservation = match HugepageReservation::add(48) {
        Ok(r) => r,
        Err(e) => {
            testkit::skip(&e);
            return;
        }
    };
    let free_before = meminfo("HugePages_Free");
    if free_before < 40 {
        testkit::skip(&format!(
            "the kernel gave only {free_before} free hugepages"
        ));
        return;
    }
    let dir = TempDir::new("hp");
    let ns = world("hwhp");
    let gw = Gateway::start(
        &ns,
        &dir.0,
        &config(&dir.0, "hugepages = \"on\"", "net_af_packet0,iface=g0", ""),
    )
    .unwrap();
    let free_running = meminfo("HugePages_Free");
    let log = gw.log();
    let report = gw.stop();
    let free_after = meminfo("HugePages_Free");
    drop(reservation);
    assert!(log.contains("hugepages=true"), "{log}");
    assert!(log.contains("--in-memory"), "{log}");
    assert!(
        free_running + 32 <= free_before,
        "free hugepages {free_before} before, {free_running} while running"
    );
    assert_eq!(free_after, free_before, "hugepages not given back");
    assert!(report.contains("mempool.free_after"), "{report}");
}

/// `hugepages = "on"` without enough free hugepages refuses to start and
/// says why.
#[test]
fn hugepages_on_without_pages_is_refused() {
    require_gateway!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let free_mb = meminfo("HugePages_Free") * meminfo("Hugepagesize") / 1024;
    let dir = TempDir::new("hn");
    let ns = world("hwhn");
    let memory = free_mb + 64;
    let text = config(&dir.0, "hugepages = \"on\"", "net_af_packet0,iface=g0", "")
        .replace("memory_mb = 64", &format!("memory_mb = {memory}"));
    let e = Gateway::start(&ns, &dir.0, &text).err().expect("refused");
    assert!(e.contains("dataplane.hugepages"), "{e}");
    assert!(e.contains(&format!("memory_mb = {memory} needs")), "{e}");
}

/// Two workers, an AF_PACKET port with two queue pairs (the kernel's
/// fanout spreads flows over them): 256 UDP flows from the peer reach
/// both workers.
#[test]
fn two_rx_queues_feed_two_workers() {
    require_gateway!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("mq");
    let ns = world("hwmq");
    let gw = Gateway::start(
        &ns,
        &dir.0,
        &config(
            &dir.0,
            "workers = 2\nhugepages = \"off\"",
            "net_af_packet0,iface=g0,qpairs=2",
            "rx_desc = 512",
        ),
    )
    .unwrap();
    let log = gw.log();
    assert!(log.contains("rx_queues=2"), "{log}");
    assert!(log.contains("rx_desc=512"), "{log}");
    let link = ns.exec("cat", &["/sys/class/net/g0/address"]);
    let mac = String::from_utf8_lossy(&link.stdout).trim().to_string();
    ns.exec(
        "ip",
        &["neigh", "replace", "10.77.0.1", "lladdr", &mac, "dev", "p0"],
    );

    let before = gw.stats();
    let nsname = ns.name().to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{nsname}")).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        for flow in 0..256u16 {
            let s = std::net::UdpSocket::bind("10.77.0.2:0").unwrap();
            for _ in 0..4 {
                s.send_to(b"espresso flow", ("10.77.0.1", 20000 + flow))
                    .unwrap();
            }
            // Paced, so that a loaded machine's workers keep up with the
            // rings.
            std::thread::sleep(Duration::from_micros(500));
        }
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rx = |s: &std::collections::HashMap<String, u64>, w: u32| {
        s.get(&format!("worker.{w}.rx")).copied().unwrap_or(0)
    };
    let (w0, w1) = loop {
        let s = gw.stats();
        let got = (rx(&s, 0) - rx(&before, 0), rx(&s, 1) - rx(&before, 1));
        if got.0 + got.1 >= 1024 || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    gw.stop();
    // Frames can be lost in the rings on a loaded machine; most must
    // arrive, and both workers must have some.
    assert!(w0 + w1 >= 768, "received {w0} + {w1} of 1024");
    assert!(w0 > 0 && w1 > 0, "one worker got everything: {w0} / {w1}");
}

/// A PCI interface goes to EAL on the allow-list (`-a`, with the PCI bus
/// on); an address with no device behind it stops the start with a
/// message naming the interface and the address.
#[test]
fn pci_interface_reaches_eal_and_a_missing_device_is_named() {
    require_gateway!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let absent = "0000:ff:1f.7";
    if Path::new(&format!("/sys/bus/pci/devices/{absent}")).exists() {
        testkit::skip(&format!("{absent} exists on this host"));
        return;
    }
    let dir = TempDir::new("pci");
    let ns = world("hwpci");
    let e = Gateway::start(
        &ns,
        &dir.0,
        &config(&dir.0, "hugepages = \"off\"", absent, ""),
    )
    .err()
    .expect("refused");
    assert!(e.contains(&format!("-a {absent}")), "{e}");
    assert!(!e.contains("--no-pci"), "{e}");
    assert!(
        e.contains(&format!(
            "interface lan: DPDK has no port for PCI device {absent}"
        )),
        "{e}"
    );
    // EAL's runtime directory goes with the failed start too.
    let prefix = e
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--file-prefix="))
        .expect("the EAL arguments are logged");
    assert!(
        !Path::new("/var/run/dpdk").join(prefix).exists(),
        "{prefix} left behind"
    );
}

/// `espresso check` looks PCI interfaces up in sysfs: a present device is
/// reported with its driver, an absent one is an error naming the field.
/// Needs no root and no DPDK.
#[test]
fn check_reports_pci_devices_and_their_drivers() {
    let dir = TempDir::new("chk");
    let present = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let check = |device: &str, interface: &str| {
        let path = dir.0.join("check.toml");
        std::fs::write(
            &path,
            config(&dir.0, "hugepages = \"off\"", device, interface),
        )
        .unwrap();
        let out = Command::new(ESPRESSO)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = check("0000:ff:1f.7", "");
    assert!(!ok);
    assert!(
        err.contains("interface[0].device (lan): no PCI device 0000:ff:1f.7"),
        "{err}"
    );
    let (ok, _, err) = check("net_af_packet0,iface=g0", "rx_queues = 0");
    assert!(!ok);
    assert!(err.contains("interface[0].rx_queues"), "{err}");
    let Some(addr) = present else {
        testkit::skip("no PCI devices in sysfs");
        return;
    };
    let (ok, out, err) = check(&addr, "");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("interface[0].device (lan): PCI {addr}")),
        "{out}"
    );
    assert!(
        out.contains("bound to") || out.contains("no driver bound"),
        "{out}"
    );
    assert!(
        out.contains("hugepages: not used (hugepages = \"off\")"),
        "{out}"
    );
}
