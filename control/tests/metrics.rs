//! The metrics endpoint end to end, scraped by a real Prometheus server:
//! one `espresso` in a network namespace between a host (LAN) and a peer
//! (WAN) with a manually keyed tunnel, `[metrics] listen` on the
//! namespace's loopback, and Debian's `prometheus` in the same namespace
//! scraping it every second. Pings from the host go into the tunnel; the
//! outbound SA's packet counter must reach Prometheus and grow by what was
//! sent.
//!
//! Needs root, DPDK, `ip`, `ping`, `curl` and `prometheus`; skipped without
//! them (failed under `ESPRESSO_TEST_FULL`). Everything it creates is
//! removed at the end, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{require, Need};

/// Where the gateway serves metrics and Prometheus its API, both on the
/// gateway namespace's loopback (a fresh namespace: every port is free).
const METRICS: &str = "127.0.0.1:9469";
const PROMETHEUS: &str = "127.0.0.1:9090";
/// Echo requests sent into the tunnel.
const PINGS: u64 = 30;

/// The namespaces, processes and files of one run; dropping it removes
/// them all.
struct World {
    id: u32,
    dir: PathBuf,
    gateway: Option<Child>,
    prometheus: Option<Child>,
}

impl World {
    fn ns(&self, which: &str) -> String {
        format!("esp-m{which}-{}", self.id)
    }

    fn new() -> Self {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("espresso-metrics-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            id,
            dir,
            gateway: None,
            prometheus: None,
        }
    }

    /// host h0 10.1.0.10 -- lan0 [gateway] wan0 -- p0 peer (02:..:b0:02)
    fn setup_network(&self) {
        let (h, g, p) = (self.ns("h"), self.ns("g"), self.ns("p"));
        for ns in [&h, &g, &p] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", "h0", "netns", &h, "type", "veth", "peer", "name", "lan0", "netns", &g,
        ]);
        ip(&[
            "link", "add", "wan0", "netns", &g, "type", "veth", "peer", "name", "p0", "netns", &p,
        ]);
        // The gateway's kernel stays out of the way: no IPv6 on its ports.
        for l in ["all", "default", "lan0", "wan0"] {
            run(Command::new("ip")
                .args(["netns", "exec", &g, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{l}.disable_ipv6=1")));
        }
        ip(&[
            "-n",
            &g,
            "link",
            "set",
            "lan0",
            "address",
            "02:00:00:00:a0:01",
        ]);
        ip(&[
            "-n",
            &g,
            "link",
            "set",
            "wan0",
            "address",
            "02:00:00:00:a0:02",
        ]);
        ip(&[
            "-n",
            &p,
            "link",
            "set",
            "p0",
            "address",
            "02:00:00:00:b0:02",
        ]);
        for (ns, l) in [(&g, "lan0"), (&g, "wan0"), (&h, "h0"), (&p, "p0")] {
            ip(&["-n", ns, "link", "set", l, "up"]);
        }
        ip(&["-n", &h, "addr", "add", "10.1.0.10/24", "dev", "h0"]);
        ip(&["-n", &h, "route", "add", "default", "via", "10.1.0.1"]);
        ip(&["-n", &p, "addr", "add", "192.0.2.2/24", "dev", "p0"]);
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("gw.toml")
    }

    fn write_config(&self) {
        let key_in = format!("0x{}", "11".repeat(36));
        let key_out = format!("0x{}", "22".repeat(36));
        let text = format!(
            r#"[dataplane]
workers = 1
memory_mb = 256
mbufs = 4095
[control]
socket = "{dir}/gw.sock"
log = "info"
[metrics]
listen = "{METRICS}"
[[interface]]
name = "lan"
device = "net_af_packet0,iface=lan0,framecnt=2048"
role = "lan"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "wan"
device = "net_af_packet1,iface=wan0,framecnt=2048"
role = "wan"
addresses = ["192.0.2.1/24"]
[[route]]
prefix = "10.2.0.0/24"
via = "192.0.2.2"
interface = "wan"
[[neighbour]]
address = "192.0.2.2"
mac = "02:00:00:00:b0:02"
interface = "wan"
[[tunnel]]
name = "site-b"
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
mode = "tunnel"
  [[tunnel.policy]]
  local_ts = "10.1.0.0/24"
  remote_ts = "10.2.0.0/24"
  [[tunnel.sa]]
  spi_in = 0x1001
  spi_out = 0x2001
  algorithm = "aes256gcm16"
  key_in = "{key_in}"
  key_out = "{key_out}"
"#,
            dir = self.dir.display()
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    fn start_gateway(&mut self) {
        let log = self.dir.join("gw.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("g")])
            .arg(env!("CARGO_BIN_EXE_espresso"))
            .arg("run")
            .arg("-c")
            .arg(self.config_path())
            .stdout(std::fs::File::create(self.dir.join("gw.out")).expect("gw.out"))
            .stderr(std::fs::File::create(&log).expect("gw.log"))
            .spawn()
            .expect("start espresso");
        self.gateway = Some(child);
        wait_for(Duration::from_secs(30), "espresso running", || {
            std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("espresso running"))
                .then_some(())
        });
    }

    fn start_prometheus(&mut self) {
        let config = self.dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: espresso\n    static_configs:\n      - targets: ['{METRICS}']\n"
            ),
        )
        .expect("prometheus.yml");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("g"), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        self.prometheus = Some(child);
        wait_for(Duration::from_secs(60), "Prometheus ready", || {
            self.curl(&format!("http://{PROMETHEUS}/-/ready"))
                .filter(|r| r.contains("Ready"))
        });
    }

    /// GET from inside the gateway's namespace; `None` if it fails.
    fn curl(&self, url: &str) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("g"),
                "curl",
                "-sf",
                "-m",
                "5",
                url,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value of the one series `query` selects in Prometheus now.
    fn query(&self, query: &str) -> Option<f64> {
        let url = format!(
            "http://{PROMETHEUS}/api/v1/query?query={}",
            query
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        );
        let body = self.curl(&url)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        assert_eq!(v["status"], "success", "{body}");
        let result = v["data"]["result"].as_array()?;
        assert!(
            result.len() <= 1,
            "{query} selects {}: {body}",
            result.len()
        );
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    fn espresso_stat(&self, key: &str) -> Option<u64> {
        let out = Command::new(env!("CARGO_BIN_EXE_espresso"))
            .arg("stats")
            .arg("-c")
            .arg(self.config_path())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
    }

    fn ping(&self, count: u64) {
        // Nobody answers behind the peer: only the requests are counted.
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("h"),
                "ping",
                "-q",
                "-i",
                "0.05",
                "-W",
                "1",
            ])
            .args(["-c", &count.to_string(), "10.2.0.20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut p) = self.prometheus.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(mut g) = self.gateway.take() {
            let pid = nix::unistd::Pid::from_raw(g.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(g.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = g.kill();
            let _ = g.wait();
        }
        for which in ["h", "g", "p"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(which)])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            for f in ["gw.log", "prometheus.log"] {
                let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("--- {f} (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn no_process_left(dir: &Path) -> bool {
    // Both were started with their files under `dir`: none may be running.
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .all(|c| !String::from_utf8_lossy(&c).contains(&needle))
}

#[test]
fn prometheus_scrapes_the_gateway() {
    require!(
        Need::Root,
        Need::Dpdk(cfg!(have_dpdk)),
        Need::Program("ip"),
        Need::Program("ping"),
        Need::Program("curl"),
        Need::Program("prometheus"),
    );
    let mut w = World::new();
    let dir = w.dir.clone();
    w.setup_network();
    w.write_config();
    w.start_gateway();
    w.start_prometheus();

    let out_sa = r#"espresso_sa_packets_total{tunnel="site-b",direction="out",spi="0x00002001"}"#;
    // The first scrapes land: the target is up and the tunnel counted.
    let before = wait_for(Duration::from_secs(30), "the first scrape", || {
        w.query(out_sa)
    });
    assert_eq!(w.query(r#"up{job="espresso"}"#), Some(1.0));
    assert_eq!(
        w.query(r#"espresso_tunnels{state="configured"}"#),
        Some(1.0)
    );
    assert_eq!(w.query(r#"espresso_tunnels{state="up"}"#), Some(1.0));
    assert_eq!(w.query(r#"espresso_tunnel_up{tunnel="site-b"}"#), Some(1.0));

    w.ping(PINGS);
    let sent = w
        .espresso_stat("sa.out.0x00002001.packets")
        .expect("espresso stats answers");
    assert!(
        sent >= before as u64 + PINGS,
        "the gateway counted {sent} packets on the SA after {PINGS} pings (before: {before})"
    );
    // Prometheus sees what the gateway counted within a few scrapes.
    let after = wait_for(Duration::from_secs(20), "the counter to grow", || {
        w.query(out_sa).filter(|&v| v >= sent as f64)
    });
    println!("espresso_sa_packets_total (out): {before} before, {after} after {PINGS} pings");
    let rate = w.query(&format!("increase({out_sa}[1m])"));
    println!("increase over 1m: {rate:?}");
    assert!(rate.is_some_and(|r| r > 0.0), "{rate:?}");
    let rx = w
        .query(r#"espresso_port_rx_packets_total{port="lan"}"#)
        .expect("port counters");
    assert!(rx >= PINGS as f64, "{rx}");
    let scrapes = w
        .query(r#"espresso_metrics_requests_total{result="served"}"#)
        .expect("the endpoint's own counters");
    assert!(scrapes >= 1.0, "{scrapes}");
    assert_eq!(
        w.query(r#"espresso_metrics_requests_total{result="unavailable"}"#),
        Some(0.0)
    );

    // A sample for the documentation.
    if let Some(text) = w.curl(&format!("http://{METRICS}/metrics")) {
        println!("--- GET /metrics (excerpt) ---");
        for l in text.lines().filter(|l| {
            l.contains("site-b")
                || l.contains("espresso_tunnels")
                || l.contains("reason=\"replay\"")
                || l.starts_with("espresso_port_rx_packets")
                || l.starts_with("espresso_metrics_requests")
                || l.starts_with("# EOF")
        }) {
            println!("{l}");
        }
    }
    drop(w);
    assert!(
        no_process_left(&dir),
        "a process of the test is still running"
    );
}
