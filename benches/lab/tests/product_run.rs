//! `espresso run` measured through the lab's harness ([`lab::product`]):
//! the generated configuration is loaded by the real gateway binary, its
//! output on a finite replay is decrypted by scapy and compared with the
//! plaintext, and one short window is measured over DPDK telemetry. No
//! figure is asserted (the machine is shared). Needs root, DPDK, scapy
//! and the gateway binary built (`espresso` next to this test's
//! `espresso-lab`, or `target/release/espresso`); skipped with the reason
//! otherwise.
#![cfg(have_dpdk)]

use std::path::PathBuf;

use lab::spec::{BenchAlgorithm, CaseSpec, Direction, FrameSize};
use testkit::{require, Need};

/// The gateway binary: next to `espresso-lab` (same profile), else the
/// release build.
fn gateway() -> Option<PathBuf> {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_espresso-lab"));
    let beside = lab.with_file_name("espresso");
    let release = lab.parent()?.parent()?.join("release").join("espresso");
    [beside, release].into_iter().find(|p| p.is_file())
}

#[test]
fn product_case_is_checked_and_measured() {
    require!(
        Need::Root,
        Need::PythonModule("scapy.layers.ipsec"),
        Need::Program("/usr/bin/python3")
    );
    let Some(gateway) = gateway() else {
        println!("skipped: needs the gateway binary (cargo build -p espresso-control)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("espresso-product-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // ESP in UDP through the encrypt path: scapy decrypts what leaves.
    let spec = CaseSpec {
        direction: Direction::Encrypt,
        algorithm: BenchAlgorithm::AesGcm128,
        frame: FrameSize::Imix,
        udp_encap: true,
        sa_count: 3,
        scale_frames: 0,
    };
    let pcap = dir.join("case.pcap");
    let info = lab::traffic::write_pcap(&spec, &pcap).unwrap();
    let result = lab::product::run(&lab::product::ProductRun {
        gateway: &gateway,
        spec: &spec,
        pcap: &pcap,
        pcap_frames: info.frames,
        dir: &dir,
        warmup_s: 0.2,
        duration_s: 0.3,
        windows: 1,
        worker_core: 1,
        tsc_hz: 1_000_000_000,
        backend: "auto",
    });
    let leftover = std::fs::read_dir(dir.join("measure").join("run"))
        .map(|d| d.count())
        .unwrap_or(0);
    std::fs::remove_dir_all(&dir).unwrap();
    let r = result.unwrap();
    println!("{r:?}");
    assert!(
        r.verified.contains("decrypted and compared by scapy"),
        "{}",
        r.verified
    );
    assert!(
        r.verified
            .starts_with(&format!("{} frames", lab::product::VERIFY_FRAMES)),
        "{}",
        r.verified
    );
    assert_eq!(r.runs.len(), 1);
    assert!(
        r.runs[0].packets > 0 && r.runs[0].cpu_s > 0.0,
        "{:?}",
        r.runs
    );
    assert!(r.load_s > 0.0);
    // The gateway removed its telemetry link when it stopped.
    assert_eq!(leftover, 0, "runtime files left behind");
}
