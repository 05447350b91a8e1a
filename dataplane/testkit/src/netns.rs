//! Network namespaces and veth pairs for tests and the lab.
//!
//! The conventions, shared with the shell scenarios' `scripts/lib.sh`:
//!
//! - a namespace is named `esp-<role>-<pid>` (or `esp-<role>-<pid>-<n>`
//!   when one process makes several), where `<pid>` is the process that
//!   owns it: two runs on one machine never collide, and a namespace
//!   whose owner is gone is known to be stale ([`remove_stale`]);
//! - it comes with `lo` up and IPv6 off unless asked, so the kernel sends
//!   nothing of its own on test links;
//! - cleanup kills every process left inside, then deletes it (veths go
//!   with it); a guard does it on drop, so also when a test panics.
//!
//! Everything here runs `ip` and needs root; tests check that first with
//! [`crate::require!`].

use std::fmt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A command that could not run or exited non-zero, with its output.
#[derive(Debug)]
pub struct CommandError(String);

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommandError {}

/// Runs `cmd args`, returning its output if it exited 0.
pub fn try_run(cmd: &str, args: &[&str]) -> Result<Output, CommandError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| CommandError(format!("cannot run {cmd}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError(format!(
            "{cmd} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs a command, panicking with its output if it fails.
#[track_caller]
pub fn run(cmd: &str, args: &[&str]) -> Output {
    try_run(cmd, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The prefix of every namespace this module names.
pub const PREFIX: &str = "esp-";

/// `esp-<role>-<pid of this process>`, plus `-<n>` if given.
pub fn name_for(role: &str, n: Option<usize>) -> String {
    let pid = std::process::id();
    match n {
        Some(n) => format!("{PREFIX}{role}-{pid}-{n}"),
        None => format!("{PREFIX}{role}-{pid}"),
    }
}

/// Deletes the `esp-<role>-<pid>…` namespaces whose owning process is
/// gone (a run that was killed before it could clean up).
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete(&name);
        }
    }
}

/// Kills every process in namespace `name` (except this one) and deletes
/// it; errors are ignored, as in `netns_cleanup` of `scripts/lib.sh`.
fn delete(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.parse::<u32>().is_ok_and(|p| p != std::process::id()) {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// A network namespace that exists for the guard's lifetime: deleted, with
/// every process in it killed, on drop (also when the test panics).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `esp-<role>-<pid>`, for a test: panics if it cannot be made.
    #[track_caller]
    pub fn new(role: &str) -> Netns {
        Self::create(name_for(role, None)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates namespace `name` (an old one of that name is removed
    /// first), with `lo` up and IPv6 off.
    pub fn create(name: String) -> Result<Netns, CommandError> {
        delete(&name);
        try_run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.try_exec("ip", &["link", "set", "lo", "up"])?;
        for key in ["all", "default"] {
            ns.try_exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
            )?;
        }
        Ok(ns)
    }

    /// Its name, for `ip netns exec` and `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace and waits for it.
    pub fn try_exec(&self, cmd: &str, args: &[&str]) -> Result<Output, CommandError> {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        try_run("ip", &full)
    }

    /// [`Netns::try_exec`], panicking if the command fails.
    #[track_caller]
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        self.try_exec(cmd, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A `Command` that will run `program` inside the namespace (`ip netns
    /// exec` execs it, so the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Creates a veth pair with both ends `a` and `b` in this namespace,
    /// both up.
    #[track_caller]
    pub fn veth(&self, a: &str, b: &str) {
        self.veth_to(a, self, b).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Creates a veth pair from `a` here to `b` in `peer` (which may be
    /// this namespace), both ends up.
    pub fn veth_to(&self, a: &str, peer: &Netns, b: &str) -> Result<(), CommandError> {
        try_run(
            "ip",
            &[
                "-n", &self.name, "link", "add", a, "type", "veth", "peer", "name", b, "netns",
                &peer.name,
            ],
        )?;
        try_run("ip", &["-n", &self.name, "link", "set", a, "up"])?;
        try_run("ip", &["-n", &peer.name, "link", "set", b, "up"])?;
        Ok(())
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
        delete(&self.name);
    }
}

/// A child process that is killed and reaped when the guard drops, so a
/// failing test never leaves it behind.
#[derive(Debug)]
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_role_and_owner() {
        let pid = std::process::id();
        assert_eq!(name_for("fwd", None), format!("esp-fwd-{pid}"));
        assert_eq!(name_for("zd", Some(3)), format!("esp-zd-{pid}-3"));
    }

    #[test]
    fn a_namespace_is_made_and_removed() {
        crate::require!(crate::Need::Root, crate::Need::Program("ip"));
        let ns = Netns::new("tk");
        ns.veth("tk0", "tk1");
        let links = ns.exec("ip", &["-o", "link"]);
        assert!(String::from_utf8_lossy(&links.stdout).contains("tk0"));
        let name = ns.name().to_string();
        drop(ns);
        assert!(!Path::new(&format!("/run/netns/{name}")).exists());
    }

    /// A killed run's namespaces are deleted by the next one; a live
    /// run's are not.
    #[test]
    fn stale_namespaces_are_removed() {
        crate::require!(crate::Need::Root, crate::Need::Program("ip"));
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
        // No process ever has the PID pid_max.
        let dead = format!("{PREFIX}zd-{}-0", pid_max.trim());
        let live = name_for("zd", Some(99));
        let exists = |n: &str| Path::new(&format!("/run/netns/{n}")).exists();
        for n in [&dead, &live] {
            run("ip", &["netns", "add", n]);
        }
        remove_stale();
        let (dead_gone, live_kept) = (!exists(&dead), exists(&live));
        for n in [&dead, &live] {
            delete(n);
        }
        assert!(dead_gone && live_kept, "{dead_gone} {live_kept}");
    }
}
