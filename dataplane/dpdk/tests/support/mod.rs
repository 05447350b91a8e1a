//! Shared helpers for the data plane's integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::OnceLock;

use dpdk::Eal;

/// EAL arguments for a test process: no hugepages, no PCI, nothing on disk.
pub fn eal_args(memory_mb: u32, vdevs: &[&str]) -> Vec<String> {
    let mut args = vec![
        "espresso-test".to_string(),
        "-l".into(),
        "0".into(),
        "--no-huge".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        format!("--file-prefix=espresso-test-{}", std::process::id()),
        "--no-telemetry".into(),
        "-m".into(),
        memory_mb.to_string(),
        "--log-level=lib.eal:warning".into(),
    ];
    for v in vdevs {
        args.push("--vdev".into());
        args.push((*v).to_string());
    }
    args
}

/// One EAL per test process, shared by the tests in it.
pub fn shared_eal() -> &'static Eal {
    static EAL: OnceLock<Eal> = OnceLock::new();
    EAL.get_or_init(|| Eal::init(eal_args(128, &[])).expect("EAL init"))
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace that exists for the guard's lifetime: deleted, with
/// every process in it killed, on drop (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        // No IPv6 autoconfiguration chatter on the test links.
        ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// Runs a command inside the namespace and waits for it.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A `Command` that will run inside the namespace.
    pub fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, cmd]);
        c
    }

    /// Creates a veth pair inside the namespace, both ends up.
    pub fn veth(&self, a: &str, b: &str) {
        self.exec("ip", &["link", "add", a, "type", "veth", "peer", "name", b]);
        self.exec("ip", &["link", "set", a, "up"]);
        self.exec("ip", &["link", "set", b, "up"]);
    }

    /// Moves the calling thread into the namespace (threads and processes
    /// it starts afterwards inherit it).
    pub fn enter(&self) {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.name)).expect("open netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if pid.parse::<u32>().is_ok_and(|p| p != std::process::id()) {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Path of a file under tests/support.
pub fn support_file(name: &str) -> String {
    format!("{}/tests/support/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A child process that is killed and reaped when the guard drops, so a
/// failing test never leaves it behind.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
