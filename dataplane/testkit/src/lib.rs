//! Test support shared by every test crate of the workspace and by the
//! benchmark lab.
//!
//! Two tiers of tests run from the same sources:
//!
//! - `cargo test --workspace` must pass on any machine with Rust: a test
//!   that needs root, DPDK, scapy, strongSwan or another outside tool
//!   checks for it with [`require!`] and, when it is missing, prints
//!   `skipped: <reason>` and returns;
//! - `make test` sets `ESPRESSO_TEST_FULL=1`, and there a missing
//!   prerequisite fails the test instead ([`skip`] panics), so a CI
//!   machine that lost a package cannot turn green by skipping.
//!
//! [`netns`] is the one Rust home of the network namespace and veth
//! helpers (the shell scenarios' home is `scripts/lib.sh`, with the same
//! naming and cleanup rules).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

pub mod netns;

pub use netns::{run, Netns, Reaper};

/// The environment variable that turns every skip into a failure.
pub const FULL_ENV: &str = "ESPRESSO_TEST_FULL";

/// Whether this run must have every prerequisite (`ESPRESSO_TEST_FULL`
/// set to anything but empty or `0`).
pub fn full_tier() -> bool {
    std::env::var(FULL_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Gives up on the calling test for `reason`: prints `skipped: <test>:
/// <reason>` (the caller then returns), or panics with it when
/// [`full_tier`] is on.
///
/// The line goes to the process's standard error directly, not through
/// `eprintln!`, which the test harness captures and shows only for
/// failing tests: a skip must be seen in a passing run.
#[track_caller]
pub fn skip(reason: &str) {
    assert!(
        !full_tier(),
        "{FULL_ENV} is set and a prerequisite is missing: {reason}"
    );
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
}

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective user id 0 (network namespaces, raw sockets, DPDK ports).
    Root,
    /// A program on `PATH`, or at this path if it contains a `/`.
    Program(&'static str),
    /// A module that `/usr/bin/python3` can import.
    PythonModule(&'static str),
    /// DPDK found when the crate was built (the `have_dpdk` cfg of the
    /// calling crate, passed in as the bool).
    Dpdk(bool),
}

impl Need {
    /// Why the test cannot run, or `None` if this need is met.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Root => (!nix::unistd::geteuid().is_root()).then(|| "needs root".to_string()),
            Need::Program(p) => (!program_exists(p)).then(|| format!("needs `{p}`")),
            Need::PythonModule(m) => {
                let ok = Command::new(PYTHON)
                    .args(["-c", &format!("import {m}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!ok).then(|| format!("needs the Python module `{m}` for {PYTHON}"))
            }
            Need::Dpdk(found) => (!found).then(|| {
                "needs DPDK (not found at build time, or ESPRESSO_WITHOUT_DPDK=1)".to_string()
            }),
        }
    }
}

/// The interpreter the tests' Python helpers run under: Debian's, which
/// has `python3-scapy`; the `python3` first on `PATH` may be another one.
pub const PYTHON: &str = "/usr/bin/python3";

/// Every reason among `needs` why the test cannot run, joined, or `None`.
pub fn missing(needs: &[Need]) -> Option<String> {
    let reasons: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

fn program_exists(p: &str) -> bool {
    if p.contains('/') {
        return Path::new(p).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(p).is_file()))
}

/// Returns from the calling test (after [`skip`]) unless every [`Need`]
/// is met:
///
/// ```
/// use testkit::{require, Need};
/// fn needs_ip() {
///     require!(Need::Root, Need::Program("ip"));
///     // ... builds namespaces ...
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if let Some(reason) = $crate::missing(&[$($need),+]) {
            $crate::skip(&reason);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_needs_have_no_reason() {
        assert_eq!(missing(&[Need::Dpdk(true), Need::Program("sh")]), None);
    }

    #[test]
    fn unmet_needs_are_all_named() {
        let r = missing(&[
            Need::Dpdk(false),
            Need::Program("no-such-program-espresso"),
            Need::Program("/no/such/path/espresso"),
        ])
        .expect("all missing");
        assert!(r.contains("needs DPDK"), "{r}");
        assert!(r.contains("`no-such-program-espresso`"), "{r}");
        assert!(r.contains("`/no/such/path/espresso`"), "{r}");
        if Need::Program(PYTHON).missing().is_none() {
            let m = Need::PythonModule("espresso_no_such_module").missing();
            assert!(m.is_some_and(|m| m.contains("espresso_no_such_module")));
        }
    }
}
