//! Shared by the DPDK layer's integration tests: EAL arguments for a test
//! process. The namespace and process guards are `testkit`'s.
#![allow(dead_code)]

use std::sync::OnceLock;

use dpdk::Eal;
#[allow(unused_imports)]
pub use testkit::{Netns, Reaper};

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

/// Path of a file under tests/support.
pub fn support_file(name: &str) -> String {
    format!("{}/tests/support/{name}", env!("CARGO_MANIFEST_DIR"))
}
