//! Shared by the scenario tests: runs one scenario of a namespace script
//! in `scripts/` and checks that it passed.

use std::process::Command;
use std::sync::Mutex;

use testkit::Need;

/// What every namespace scenario needs: root for the namespaces, DPDK in
/// the `espresso` under test, `ip`, `tshark` for the WAN captures and
/// Debian's Python for the helper scripts.
pub const SCENARIO_NEEDS: [Need; 5] = [
    Need::Root,
    Need::Dpdk(cfg!(have_dpdk)),
    Need::Program("ip"),
    Need::Program("tshark"),
    Need::Program(testkit::PYTHON),
];

/// The scenarios share the machine's two cores badly, so one runs at a
/// time (per test binary; cargo runs the binaries one after the other).
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `bash scripts/SCRIPT NAME` with this build's `espresso` and
/// asserts that it exited 0 and printed `NAME: all checks passed`; skips
/// (see `testkit::skip`) unless [`SCENARIO_NEEDS`] and `needs` are met.
pub fn scenario(script: &str, name: &str, espresso: &str, needs: &[Need]) {
    let all: Vec<Need> = SCENARIO_NEEDS.iter().chain(needs).copied().collect();
    if let Some(reason) = testkit::missing(&all) {
        testkit::skip(&reason);
        return;
    }
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = format!("{}/../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&path)
        .arg(name)
        .env("ESPRESSO_BIN", espresso)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "scenario {name} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{name}: all checks passed")),
        "{text}"
    );
}
