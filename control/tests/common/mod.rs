//! Shared by the scenario tests: runs one scenario of a namespace script
//! in `scripts/` and checks that it passed.

use std::process::Command;
use std::sync::Mutex;

/// The scenarios share the machine's two cores badly, so one runs at a
/// time (per test binary; cargo runs the binaries one after the other).
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `bash scripts/SCRIPT NAME` with this build's `espresso` and
/// asserts that it exited 0 and printed `NAME: all checks passed`.
pub fn scenario(script: &str, name: &str, espresso: &str) {
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
